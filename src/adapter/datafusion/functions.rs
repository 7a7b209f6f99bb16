//! SQL functions dbt projects call that DataFusion lacks under that name: `mod(a, b)` (the
//! remainder, as PostgreSQL's and Snowflake's `mod`; DataFusion only has `%`).

use std::any::Any;

use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

#[derive(Debug, PartialEq, Eq, Hash)]
struct Mod {
    signature: Signature,
}

impl ScalarUDFImpl for Mod {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "mod"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rem = datafusion::arrow::compute::kernels::numeric::rem(&arrays[0], &arrays[1])?;
        Ok(ColumnarValue::Array(rem))
    }
}

/// The functions to register on every session.
pub fn all() -> Vec<ScalarUDF> {
    let exact = |t: DataType| TypeSignature::Exact(vec![t.clone(), t]);
    vec![ScalarUDF::new_from_impl(Mod {
        signature: Signature::one_of(
            vec![exact(DataType::Int64), exact(DataType::Float64)],
            Volatility::Immutable,
        ),
    })]
}
