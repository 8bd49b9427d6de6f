//! Parquet output. [`ParquetFile`]: rows go to a hidden temp file beside the target, which is
//! renamed into place only when complete, so a crash leaves only a dot-file. [`PartFile`]: a part
//! of a run directory's table, local or on an object store.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lrem_schemas::commit::FileEntry;
use lrem_schemas::store::Storage;

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

/// A part of a run directory's table being written under this attempt's name: Parquet into a
/// local file (beside its place for a local run, in the temporary directory for an object store),
/// moved into the store when finished. Until a commit marker names it, no reader sees it.
pub struct PartFile {
    file: ParquetFile,
    spill: PathBuf,
    entry: FileEntry,
    storage: Arc<Storage>,
}

impl PartFile {
    /// `path` is relative to the run's root.
    pub fn create(storage: &Arc<Storage>, table: &str, path: String, schema: SchemaRef) -> Result<Self, Error> {
        let spill = match storage.local_root() {
            Some(root) => root.join(&path),
            None => std::env::temp_dir().join("lrem-spill").join(path.replace('/', "%")),
        };
        let dir = spill.parent().expect("a part has a directory");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let file = ParquetFile::create(&spill, schema)?;
        let entry = FileEntry { table: table.to_string(), path, bytes: 0, rows: 0 };
        Ok(Self { file, spill, entry, storage: storage.clone() })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        self.entry.rows += batch.num_rows() as u64;
        self.file.write(batch)
    }

    /// Finishes the file and puts it in its place; returns what a commit marker lists of it.
    pub async fn finish(self) -> Result<FileEntry, Error> {
        let Self { file, spill, mut entry, storage } = self;
        file.finish()?;
        entry.bytes = std::fs::metadata(&spill).map_err(|e| Error::io(&spill, e))?.len();
        if storage.local_root().is_none() {
            storage.upload(&spill, &entry.path).await?;
        }
        Ok(entry)
    }
}
