//! SQL functions shared with the rest of the pipeline, so that SQL stages and ad-hoc inspection
//! compute keys exactly as Rust code does (`lrem_schemas::query_id`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

/// Registers `lrem_normalize(text)` and `lrem_query_id(text)`.
pub fn register(ctx: &SessionContext) {
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
