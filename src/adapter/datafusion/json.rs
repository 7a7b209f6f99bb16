//! JSON held as text, read the way PostgreSQL and DuckDB read it: `json_extract_path_text(doc,
//! 'a', 'b')` and `json_extract_path(doc, 'a', 'b')` (PostgreSQL's functions), which the
//! engine's rewrite also makes of the operators `doc ->> 'a'`, `doc -> 'a'`, `doc #>> '{a,b}'`,
//! `doc #> '{a,b}'` and of DuckDB's paths (`doc ->> '$.a.b[0]'`); a cast to `json` / `jsonb`
//! keeps the text. Packages' `postgres__` JSON macros (Fivetran's `json_parse`) are written
//! this way.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

pub fn register(ctx: &SessionContext) {
    for text in [true, false] {
        ctx.register_udf(ScalarUDF::new_from_impl(ExtractPath {
            text,
            signature: Signature::variadic_any(Volatility::Immutable),
        }));
    }
}

/// The function a rewritten operator calls: `->>` / `#>>` give text, `->` / `#>` JSON.
pub fn function_name(text: bool) -> &'static str {
    if text {
        "json_extract_path_text"
    } else {
        "json_extract_path"
    }
}

/// The keys of a path as the operators take it: PostgreSQL's `'{a,b,0}'`, DuckDB's
/// `'$.a.b[0]'`, or one key.
pub fn path_keys(path: &str, array_form: bool) -> Vec<String> {
    if let Some(rest) = path.strip_prefix('$') {
        let mut keys = Vec::new();
        for part in rest.split('.').filter(|p| !p.is_empty()) {
            let mut pieces = part.split('[');
            if let Some(name) = pieces.next().filter(|n| !n.is_empty()) {
                keys.push(name.trim_matches('"').to_string());
            }
            keys.extend(pieces.map(|i| i.trim_end_matches(']').to_string()));
        }
        return keys;
    }
    match array_form {
        true => path
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .split(',')
            .map(|k| k.trim().trim_matches('"').to_string())
            .filter(|k| !k.is_empty())
            .collect(),
        false => vec![path.to_string()],
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ExtractPath {
    text: bool,
    signature: Signature,
}

impl ScalarUDFImpl for ExtractPath {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        function_name(self.text)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let texts: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| {
                let array = a.to_array(rows)?;
                Ok(datafusion::arrow::compute::cast(&array, &DataType::Utf8)?)
            })
            .collect::<Result<_>>()?;
        let texts: Vec<&datafusion::arrow::array::StringArray> = texts
            .iter()
            .map(|a| a.as_any().downcast_ref().unwrap())
            .collect();
        let Some((doc, keys)) = texts.split_first() else {
            return Err(datafusion::error::DataFusionError::Plan(format!(
                "{} needs a JSON document",
                self.name()
            )));
        };
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        for row in 0..rows {
            if doc.is_null(row) || keys.iter().any(|k| k.is_null(row)) {
                out.append_null();
                continue;
            }
            let Ok(mut value) = serde_json::from_str::<serde_json::Value>(doc.value(row)) else {
                out.append_null();
                continue;
            };
            let mut found = true;
            for k in keys {
                let key = k.value(row);
                let next = match &mut value {
                    serde_json::Value::Object(map) => map.remove(key),
                    serde_json::Value::Array(items) => key
                        .parse::<i64>()
                        .ok()
                        // A negative index counts from the end, as PostgreSQL's.
                        .map(|i| if i < 0 { items.len() as i64 + i } else { i })
                        .filter(|i| *i >= 0 && (*i as usize) < items.len())
                        .map(|i| items.swap_remove(i as usize)),
                    _ => None,
                };
                match next {
                    Some(v) => value = v,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            match (found, value) {
                (false, _) => out.append_null(),
                (true, serde_json::Value::Null) if self.text => out.append_null(),
                (true, serde_json::Value::String(s)) if self.text => out.append_value(s),
                (true, v) => out.append_value(v.to_string()),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::path_keys;

    #[test]
    fn paths_in_postgres_and_duckdb_form() {
        assert_eq!(
            path_keys("{shop_money,amount}", true),
            ["shop_money", "amount"]
        );
        assert_eq!(path_keys("$.a.b[0]", false), ["a", "b", "0"]);
        assert_eq!(path_keys("a,b", false), ["a,b"]);
    }
}
