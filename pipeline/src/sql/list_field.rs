//! `lrem_list_field(list_of_structs, 'name')`: the `name` field of every struct of a list, as a
//! list (Spark's `array.field`, DuckDB's `list_transform(l, lambda s: s.name)`).
//!
//! With `array_sort` it orders an aggregated list by several keys:
//! `lrem_list_field(array_sort(array_agg(named_struct('k', …, 'item_id', …))), 'item_id')` runs on
//! DataFusion's vectorised group accumulator, where `array_agg(… ORDER BY …)` keeps one
//! `ScalarValue` per row (five times slower on the `queries` stage).

use std::sync::Arc;

use arrow::array::{Array, AsArray, ListArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ListField {
    signature: Signature,
}

impl ListField {
    pub fn new() -> Self {
        Self { signature: Signature::any(2, Volatility::Immutable) }
    }
}

/// The struct field `name` of a list-of-structs type.
fn child(list: &DataType, name: Option<&ScalarValue>) -> Result<(FieldRef, usize)> {
    let Some(ScalarValue::Utf8(Some(name)) | ScalarValue::Utf8View(Some(name))) = name else {
        return plan_err!("lrem_list_field: the second argument must be a field name literal");
    };
    let DataType::List(item) = list else {
        return plan_err!("lrem_list_field: the first argument must be a list of structs, got {list}");
    };
    let DataType::Struct(fields) = item.data_type() else {
        return plan_err!("lrem_list_field: the list's items must be structs, got {}", item.data_type());
    };
    match fields.find(name) {
        Some((index, field)) => Ok((Arc::clone(field), index)),
        None => plan_err!("lrem_list_field: the structs have no field `{name}`"),
    }
}

impl ScalarUDFImpl for ListField {
    fn name(&self) -> &str {
        "lrem_list_field"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        exec_err!("lrem_list_field: return_field_from_args is used instead")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let (field, _) = child(args.arg_fields[0].data_type(), args.scalar_arguments[1])?;
        let list = DataType::List(Arc::new(field.as_ref().clone().with_name("item")));
        Ok(Arc::new(Field::new(self.name(), list, args.arg_fields[0].is_nullable())))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = match &args.args[1] {
            ColumnarValue::Scalar(s) => s.clone(),
            ColumnarValue::Array(_) => return exec_err!("lrem_list_field: the field name must be a literal"),
        };
        let (field, index) = child(args.arg_fields[0].data_type(), Some(&name))?;
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let lists = args.args[0].to_array(args.number_rows)?;
        let lists = lists.as_list::<i32>();
        let values = Arc::clone(lists.values().as_struct().column(index));
        let item = Arc::new(field.as_ref().clone().with_name("item"));
        let out = ListArray::try_new(item, lists.offsets().clone(), values, lists.nulls().cloned())?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(out))
        })
    }
}
