//! Query results as an aligned table, CSV, JSON (one array) or JSON Lines.

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
    Jsonl,
}

pub fn render(batches: &[RecordBatch], format: OutputFormat) -> Result<String, Error> {
    let mut out = Vec::new();
    match format {
        OutputFormat::Table => {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            out.extend(pretty_format_batches(batches)?.to_string().into_bytes());
            out.extend(format!("\n{rows} row{}\n", if rows == 1 { "" } else { "s" }).into_bytes());
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
            for b in batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            w.write_batches(&batches.iter().collect::<Vec<_>>())?;
            w.finish()?;
            drop(w);
            out.push(b'\n');
        }
        OutputFormat::Jsonl => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
            w.write_batches(&batches.iter().collect::<Vec<_>>())?;
            w.finish()?;
        }
    }
    String::from_utf8(out).map_err(|e| Error::Internal(e.to_string()))
}
