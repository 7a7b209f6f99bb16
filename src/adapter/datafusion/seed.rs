//! Seeds: CSV files read with arrow-csv (types inferred over the whole file, empty strings as
//! NULL, `column_types` overrides applied with SQL casts), ready to be written as Delta.

use std::fs::File;
use std::io::{BufReader, Seek};
use std::sync::Arc;

use datafusion::arrow::csv::ReaderBuilder;
use datafusion::arrow::csv::reader::Format;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;

use crate::adapter::AdapterError;
use crate::jinja::quote;
use crate::materialize::SeedSpec;

pub fn read(ctx: &SessionContext, seed: &SeedSpec) -> Result<DataFrame, AdapterError> {
    let fail = |msg: String| AdapterError(format!("{}: {msg}", seed.display_path));
    let mut file = File::open(&seed.path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let null = regex::Regex::new("^$").expect("static regex");
    let format = Format::default()
        .with_header(true)
        .with_delimiter(seed.delimiter)
        .with_null_regex(null.clone());
    let (inferred, _) = format
        .infer_schema(BufReader::new(&file), None)
        .map_err(|e| {
            fail(format!(
                "{e} (check the header and that every row has the same number of fields)"
            ))
        })?;
    // Overridden columns are read as text and cast in SQL, so any SQL type name works.
    let overridden = |name: &str| {
        seed.column_types
            .iter()
            .any(|(c, _)| c.eq_ignore_ascii_case(name))
    };
    let fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|f| {
            // A column with no values at all is text, as dbt's adapters load it.
            if overridden(f.name()) || f.data_type() == &DataType::Null {
                Field::new(f.name(), DataType::Utf8, true)
            } else {
                f.as_ref().clone().with_nullable(true)
            }
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    file.rewind().map_err(|e| fail(e.to_string()))?;
    let reader = ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_delimiter(seed.delimiter)
        .with_null_regex(null)
        .build(BufReader::new(file))
        .map_err(|e| fail(e.to_string()))?;
    let mut batches = Vec::new();
    for b in reader {
        // arrow counts lines from the first data row; say so in the message.
        batches.push(b.map_err(|e| {
            fail(format!(
                "{e} (line numbers count data rows after the header)"
            ))
        })?);
    }
    // A header-only file is an empty table with the header's columns.
    if batches.is_empty() {
        batches.push(datafusion::arrow::record_batch::RecordBatch::new_empty(
            schema.clone(),
        ));
    }
    for (col, _) in &seed.column_types {
        if !schema
            .fields()
            .iter()
            .any(|f| f.name().eq_ignore_ascii_case(col))
        {
            return Err(fail(format!(
                "column_types names column '{col}', which the file does not have"
            )));
        }
    }
    let df = ctx.read_batches(batches).map_err(|e| fail(e.to_string()))?;
    if seed.column_types.is_empty() {
        return Ok(df);
    }
    let select: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            match seed
                .column_types
                .iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(f.name()))
            {
                Some((_, ty)) => {
                    // PostgreSQL's `float` is double precision (DataFusion's is 4 bytes).
                    let ty = if ty.trim().eq_ignore_ascii_case("float") {
                        "double"
                    } else {
                        ty.as_str()
                    };
                    format!("cast({} as {ty}) as {}", quote(f.name()), quote(f.name()))
                }
                None => quote(f.name()),
            }
        })
        .collect();
    let exprs: Vec<&str> = select.iter().map(String::as_str).collect();
    df.select_exprs(&exprs)
        .map_err(|e| fail(format!("column_types: {e}")))
}
