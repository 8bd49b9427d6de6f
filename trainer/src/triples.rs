//! Reading training triples from a run directory, local or on an object store, shards included.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use lrem_schemas::commit;
use lrem_schemas::store::Storage;
use lrem_schemas::{Part, RunDir};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// One `<query, CoT, item>` training example.
pub use lrem_schemas::Triple;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Schema(#[from] lrem_schemas::Error),
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] lrem_schemas::store::StoreError),
}

/// Which split to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    ColdStart,
    Rl,
}

impl Split {
    pub fn table(self) -> &'static str {
        match self {
            Split::ColdStart => "triples_cold_start",
            Split::Rl => "triples_rl",
        }
    }
}

/// Reads every triple of `split` in `run_dir` (a path or an `s3://` URL), checking each file
/// against the schema contract. A run the pipeline wrote is read through its commit markers
/// (only the files its done stages name); a directory without a manifest, put together by hand,
/// is read as the Parquet files below `tables/<split>/`.
pub fn read(run_dir: &Path, split: Split) -> Result<Vec<Triple>, Error> {
    let table = split.table();
    let storage = Storage::open(&run_dir.to_string_lossy())?;
    let run = storage.run_dir();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Read { path: run_dir.to_owned(), message: e.to_string() })?;
    let files: Vec<(String, Bytes)> = runtime.block_on(async {
        let Some(mut committed) = commit::committed_files(&storage, &run).await? else {
            if storage.local_root().is_none() {
                return Err(Error::Read {
                    path: run_dir.to_owned(),
                    message: "no manifest.json: not a run directory".into(),
                });
            }
            let files = lrem_schemas::validate::input_files(&run.table(table), table)?;
            return files
                .into_iter()
                .map(|p| {
                    let bytes =
                        std::fs::read(&p).map_err(|e| Error::Read { path: p.clone(), message: e.to_string() })?;
                    Ok((p.display().to_string(), Bytes::from(bytes)))
                })
                .collect();
        };
        let named = committed.remove(table).unwrap_or_default();
        if named.is_empty() {
            return Err(Error::Read {
                path: run_dir.to_owned(),
                message: format!("the run has no committed `{table}` table (is its `triples` stage done?)"),
            });
        }
        let mut files = Vec::with_capacity(named.len());
        for file in named {
            let bytes = storage.read(&file.path).await?.ok_or_else(|| Error::Read {
                path: PathBuf::from(storage.display(&file.path)),
                message: "a commit names this file but it is gone".into(),
            })?;
            files.push((storage.display(&file.path), bytes));
        }
        Ok(files)
    })?;
    let expected = lrem_schemas::table(table)?.schema();
    let mut out = Vec::new();
    for (path, bytes) in files {
        let read_err = |message: String| Error::Read { path: PathBuf::from(&path), message };
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| read_err(e.to_string()))?
            .build()
            .map_err(|e| read_err(e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| read_err(e.to_string()))?;
            for field in expected.fields() {
                let found = batch.schema().field_with_name(field.name()).map(|f| f.data_type().clone()).ok();
                if found.as_ref() != Some(field.data_type()) {
                    return Err(read_err(format!(
                        "column \"{}\" is {found:?}, expected {}",
                        field.name(),
                        field.data_type()
                    )));
                }
            }
            out.extend(Triple::from_batch(&batch).map_err(read_err)?);
        }
    }
    Ok(out)
}

/// Writes `triples` as the one part of table `split` under `run_dir` (the contract's schema):
/// fixtures for tests, and small hand-made training sets.
pub fn write(run_dir: &Path, split: Split, triples: &[Triple]) -> Result<PathBuf, Error> {
    use parquet::arrow::ArrowWriter;

    let dir = RunDir::new(run_dir).table(split.table());
    let path = dir.join(Part { writer: 0, seq: 0 }.file_name());
    let err = |message: String| Error::Read { path: path.clone(), message };
    std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
    let batch = Triple::to_batch(split.table(), triples)?;
    let schema = batch.schema();
    let file = std::fs::File::create(&path).map_err(|e| err(e.to_string()))?;
    let mut w = ArrowWriter::try_new(file, schema, None).map_err(|e| err(e.to_string()))?;
    w.write(&batch).map_err(|e| err(e.to_string()))?;
    w.close().map_err(|e| err(e.to_string()))?;
    Ok(path)
}
