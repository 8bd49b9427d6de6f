//! SQL functions shared with the rest of the pipeline, so that SQL stages and ad-hoc inspection
//! compute keys exactly as Rust code does (`lrem_schemas::query_id`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::datatypes::UInt64Type;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

/// Registers `lrem_normalize(text)`, `lrem_query_id(text)` and `lrem_bucket(query_id, seed)`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(bucket_udf());
    ctx.register_udf(string_udf("lrem_normalize", DataType::Utf8, |texts| {
        Arc::new(texts.iter().map(|t| t.map(lrem_schemas::normalize_query)).collect::<StringArray>())
    }));
    ctx.register_udf(string_udf("lrem_query_id", DataType::UInt64, |texts| {
        Arc::new(texts.iter().map(|t| t.map(lrem_schemas::query_id)).collect::<UInt64Array>())
    }));
}

fn string_udf(name: &str, returns: DataType, f: fn(&StringArray) -> ArrayRef) -> ScalarUDF {
    let body = move |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let texts = cast(&arrays[0], &DataType::Utf8)?;
        let out = f(texts.as_string::<i32>());
        Ok(if scalar && out.len() == 1 {
            ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    };
    create_udf(name, vec![DataType::Utf8], returns, Volatility::Immutable, Arc::new(body))
}

/// `lrem_bucket(query_id, seed)`: a uniform number in [0, 1) fixed by the query and the seed,
/// for splitting by query (XXH3-64 of the two, scaled).
pub fn bucket(query_id: u64, seed: u64) -> f64 {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..].copy_from_slice(&query_id.to_le_bytes());
    (xxhash_rust::xxh3::xxh3_64(&bytes) >> 11) as f64 / (1u64 << 53) as f64
}

fn bucket_udf() -> ScalarUDF {
    let body = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let ids = cast(&arrays[0], &DataType::UInt64)?;
        let seeds = cast(&arrays[1], &DataType::UInt64)?;
        let (ids, seeds) = (ids.as_primitive::<UInt64Type>(), seeds.as_primitive::<UInt64Type>());
        let out: Float64Array = ids.iter().zip(seeds.iter()).map(|(id, seed)| Some(bucket(id?, seed?))).collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    };
    create_udf(
        "lrem_bucket",
        vec![DataType::UInt64, DataType::UInt64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(body),
    )
}
