//! Reading training triples from a run directory (`tables/<split>/**/*.parquet`, shards included).

use std::path::{Path, PathBuf};

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

/// Reads every triple of `split` in `run_dir`, checking each file against the schema contract.
pub fn read(run_dir: &Path, split: Split) -> Result<Vec<Triple>, Error> {
    let table = split.table();
    let files = lrem_schemas::validate::input_files(&RunDir::new(run_dir).table(table), table)?;
    let expected = lrem_schemas::table(table)?.schema();
    let mut out = Vec::new();
    for path in files {
        let read_err = |message: String| Error::Read { path: path.clone(), message };
        let file = std::fs::File::open(&path).map_err(|e| read_err(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sharded_parts_as_one_table() {
        let dir = tempfile::tempdir().unwrap();
        for shard in 0..2u64 {
            let triple = Triple {
                query_id: shard,
                query: "energizing drink".into(),
                cot: "coffee, caffeine".into(),
                item_id: 10 + shard as i64,
                title: "Casa Oro dark roast ground coffee 500g".into(),
                relevance: 0.9,
            };
            let alone = dir.path().join(format!("alone-{shard}"));
            let written = write(&alone, Split::Rl, &[triple]).unwrap();
            let shard = Some(lrem_schemas::Shard { index: shard as u32, count: 2 });
            let part = RunDir::new(dir.path()).table_of("triples_rl", shard);
            std::fs::create_dir_all(&part).unwrap();
            std::fs::rename(&written, part.join(written.file_name().unwrap())).unwrap();
        }
        let triples = read(dir.path(), Split::Rl).unwrap();
        assert_eq!(triples.iter().map(|t| t.item_id).collect::<Vec<_>>(), [10, 11]);
        assert_eq!(triples[0].cot, "coffee, caffeine");
    }

    #[test]
    fn missing_split_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(dir.path(), Split::ColdStart).unwrap_err().to_string();
        assert!(err.contains("`triples_cold_start` input") && err.contains("does not exist"), "{err}");
    }
}
