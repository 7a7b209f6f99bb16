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
            // Timestamps are read as text and parsed below: arrow infers `2021-01-01 00:00`
            // as a timestamp but its parser wants the seconds.
            if overridden(f.name())
                || f.data_type() == &DataType::Null
                || matches!(f.data_type(), DataType::Timestamp(..))
            {
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
    // Inferred timestamps, and text columns `column_types` makes timestamps (cast in SQL
    // below, with the same parser).
    let timestamps: Vec<(usize, DataType)> = inferred
        .fields()
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let declared = seed
                .column_types
                .iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(f.name()))
                .map(|(_, t)| t.trim().to_ascii_lowercase());
            match declared {
                Some(t) if t.starts_with("timestamp") || t.starts_with("datetime") => {
                    Some((i, DataType::Utf8))
                }
                Some(_) => None,
                None => matches!(f.data_type(), DataType::Timestamp(..))
                    .then(|| (i, f.data_type().clone())),
            }
        })
        .collect();
    // Text that is all `YYYY-MM-DD HH:MM` is a timestamp too (arrow only infers times with
    // seconds; dbt's adapters infer these).
    let mut timestamps = timestamps;
    for (i, f) in inferred.fields().iter().enumerate() {
        if f.data_type() != &DataType::Utf8 || overridden(f.name()) {
            continue;
        }
        let mut seen = false;
        let all_minutes = batches.iter().all(|b| {
            use datafusion::arrow::array::AsArray;
            b.column(i).as_string::<i32>().iter().flatten().all(|v| {
                seen = true;
                minutes_only(v)
            })
        });
        if seen && all_minutes {
            timestamps.push((
                i,
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Second, None),
            ));
        }
    }
    if !timestamps.is_empty() {
        batches = batches
            .into_iter()
            .map(|b| parse_timestamps(b, &timestamps))
            .collect::<Result<_, _>>()
            .map_err(|e| {
                fail(format!(
                    "{e} (line numbers count data rows after the header)"
                ))
            })?;
    }
    let schema = batches.first().map_or(schema, |b| b.schema());
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

/// Text columns inferred as timestamps, parsed: a time without seconds gets `:00`.
fn parse_timestamps(
    batch: datafusion::arrow::record_batch::RecordBatch,
    columns: &[(usize, DataType)],
) -> Result<datafusion::arrow::record_batch::RecordBatch, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for (i, ty) in columns {
        let text = arrays[*i].as_string::<i32>();
        let fixed: StringArray = text
            .iter()
            .map(|v| {
                v.map(|s| {
                    if minutes_only(s) {
                        format!("{s}:00")
                    } else {
                        s.to_string()
                    }
                })
            })
            .collect();
        arrays[*i] = datafusion::arrow::compute::cast(&fixed, ty)?;
        fields[*i] = Field::new(fields[*i].name(), ty.clone(), true);
    }
    datafusion::arrow::record_batch::RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
}

/// `YYYY-MM-DD HH:MM` (or with `T`): a time without seconds.
fn minutes_only(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ' || *c == b'T',
            13 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}
