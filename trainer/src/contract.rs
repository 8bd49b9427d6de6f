//! Reading an input table of the contract (`items`, `qrels`, `needs`): checked against its
//! schema first, so every problem is named by file, column and row, then read batch by batch.

use std::path::Path;

use arrow::array::RecordBatch;
use lrem_schemas::TableSpec;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::err;
use crate::error::Result;

/// The table `table` at `path` (a file or a directory of parts), validated, with its spec.
pub fn read(path: &Path, table: &'static str) -> Result<(TableSpec, Vec<RecordBatch>)> {
    let spec = lrem_schemas::table(table)?;
    lrem_schemas::validate(path, &spec, &Default::default())?;
    let mut batches = Vec::new();
    for file in lrem_schemas::validate::input_files(path, table)? {
        let reader =
            std::fs::File::open(&file).map_err(|e| err!("{}: cannot open: {e}", file.display())).and_then(|f| {
                ParquetRecordBatchReaderBuilder::try_new(f)
                    .and_then(|b| b.build())
                    .map_err(|e| err!("{}: {e}", file.display()))
            })?;
        for batch in reader {
            batches.push(batch.map_err(|e| err!("{}: {e}", file.display()))?);
        }
    }
    Ok((spec, batches))
}
