//! SQL functions shared with the rest of the pipeline, so that SQL stages and ad-hoc inspection
//! compute keys exactly as Rust code does (`lrem_schemas::query_id`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringBuilder, UInt64Array};
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::DataType;
use arrow::datatypes::{Int32Type, UInt64Type};
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;

/// Registers `lrem_normalize(text)`, `lrem_query_id(text)`, `lrem_bucket(query_id, seed)`,
/// `lrem_holdout(need_id, phrasing, phrasings, seed)` and `lrem_list_field(list_of_structs, 'name')`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(bucket_udf());
    ctx.register_udf(holdout_udf());
    ctx.register_udf(ScalarUDF::from(super::list_field::ListField::new()));
    ctx.register_udf(string_udf("lrem_normalize", DataType::Utf8, |texts| {
        let mut out = StringBuilder::with_capacity(texts.len(), texts.len() * 16);
        let mut buffer = String::new();
        for text in texts {
            match text {
                Some(t) => {
                    lrem_schemas::normalize_query_into(t, &mut buffer);
                    out.append_value(&buffer);
                }
                None => out.append_null(),
            }
        }
        Arc::new(out.finish())
    }));
    ctx.register_udf(string_udf("lrem_query_id", DataType::UInt64, |texts| {
        let mut buffer = String::new();
        Arc::new(texts.map(|t| t.map(|t| lrem_schemas::query_id_with(t, &mut buffer))).collect::<UInt64Array>())
    }));
}

/// A text column as an iterator of optional `&str`, whichever string type DataFusion hands over
/// (Parquet strings arrive as `Utf8View`; casting them would copy every row).
type Texts<'a> = Box<dyn ExactSizeIterator<Item = Option<&'a str>> + 'a>;

fn texts(array: &ArrayRef) -> Result<Texts<'_>> {
    Ok(match array.data_type() {
        DataType::Utf8View => Box::new(array.as_string_view().iter()),
        DataType::Utf8 => Box::new(array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => Box::new(array.as_string::<i64>().iter()),
        other => return datafusion::common::exec_err!("expected a text argument, got {other}"),
    })
}

fn string_udf(name: &str, returns: DataType, f: fn(Texts<'_>) -> ArrayRef) -> ScalarUDF {
    let body = move |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let out = f(texts(&arrays[0])?);
        Ok(if scalar && out.len() == 1 {
            ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    };
    let accepts = vec![DataType::Utf8View, DataType::Utf8, DataType::LargeUtf8];
    let signature = Signature::uniform(1, accepts, Volatility::Immutable);
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(name, signature, returns, Arc::new(body)))
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

/// `lrem_holdout(need_id, phrasing, phrasings, seed)`: where a phrasing of a need of the sample
/// world goes (`train`, `validation`, `unseen_need`, `unseen_phrasing`), computed as the trainer
/// computes it (`lrem_schemas::holdout`), so a query log can be cut to the training needs in SQL.
fn holdout_udf() -> ScalarUDF {
    let body = |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let strict = CastOptions { safe: false, ..Default::default() };
        let int = |i: usize, to: &DataType| cast_with_options(&arrays[i], to, &strict);
        let (needs, phrasings, counts) =
            (int(0, &DataType::Int32)?, int(1, &DataType::Int32)?, int(2, &DataType::Int32)?);
        let seeds = int(3, &DataType::UInt64)?;
        let (needs, phrasings, counts, seeds) = (
            needs.as_primitive::<Int32Type>(),
            phrasings.as_primitive::<Int32Type>(),
            counts.as_primitive::<Int32Type>(),
            seeds.as_primitive::<UInt64Type>(),
        );
        let mut out = StringBuilder::with_capacity(needs.len(), needs.len() * 8);
        for i in 0..needs.len() {
            if [needs.is_null(i), phrasings.is_null(i), counts.is_null(i), seeds.is_null(i)].contains(&true) {
                out.append_null();
                continue;
            }
            let split =
                lrem_schemas::holdout::holdout(needs.value(i), phrasings.value(i), counts.value(i), seeds.value(i));
            out.append_value(split.as_str());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    };
    // Any integer types (a literal is Int64, `count(*)` too): the body casts, and a value out of
    // range fails there.
    let signature = Signature::any(4, Volatility::Immutable);
    ScalarUDF::from(SimpleScalarUDF::new_with_signature("lrem_holdout", signature, DataType::Utf8, Arc::new(body)))
}
