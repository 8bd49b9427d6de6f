//! Atomic Parquet output: rows go to a hidden temp file beside the target, which is renamed into
//! place only when complete. A reader never sees a half-written file, and a crash leaves only a
//! dot-file that readers skip and the next write replaces.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::Error;

/// Properties of every Parquet file the pipeline writes: zstd, and a fixed `created_by` so that
/// the bytes depend on the data alone (the sample world is checked byte for byte).
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(6).expect("valid zstd level")))
        .set_created_by(concat!("lrem-pipeline ", env!("CARGO_PKG_VERSION")).to_string())
        .build()
}

pub struct ParquetFile {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<ArrowWriter<File>>,
}

impl ParquetFile {
    pub fn create(target: &Path, schema: SchemaRef) -> Result<Self, Error> {
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("out.parquet");
        let temp = target.with_file_name(format!(".{name}.tmp"));
        let file = File::create(&temp).map_err(|e| Error::io(&temp, e))?;
        let writer = ArrowWriter::try_new(file, schema, Some(writer_properties()))?;
        Ok(Self { target: target.to_owned(), temp, writer: Some(writer) })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        self.writer.as_mut().expect("not finished").write(batch)?;
        Ok(())
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(mut self) -> Result<(), Error> {
        let writer = self.writer.take().expect("finish once");
        let file = writer.into_inner()?;
        file.sync_all().map_err(|e| Error::io(&self.temp, e))?;
        std::fs::rename(&self.temp, &self.target).map_err(|e| Error::io(&self.target, e))
    }
}

impl Drop for ParquetFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
