//! Seeds: CSV files typed as arrow-csv's inference types the whole file (`csv_types`; empty
//! strings as NULL, `column_types` overrides applied with SQL casts), read as a
//! DataFusion scan so that a large seed streams into its table in batches instead of sitting in
//! memory whole.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::csv::ReaderBuilder;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::logical_expr::{Expr, cast, ident};
use datafusion::prelude::SessionContext;

use crate::adapter::{AdapterError, csv_types};
use crate::jinja::quote;
use crate::materialize::SeedSpec;

/// How one column of the file becomes a column of the table.
enum Column {
    /// As read, with the inferred type.
    Kept,
    /// Read as text and cast in SQL to the `column_types` type (times without seconds fixed).
    Declared { ty: String, time: bool },
    /// Read as text and parsed as this timestamp type (times without seconds fixed).
    Timestamp(DataType),
}

pub fn read(ctx: &SessionContext, seed: &SeedSpec) -> Result<DataFrame, AdapterError> {
    let fail = |msg: String| AdapterError(format!("{}: {msg}", seed.display_path));
    let file = File::open(&seed.path).map_err(|e| fail(format!("cannot open: {e}")))?;
    drop(file);
    let inferred = csv_types::infer(&seed.path, seed.delimiter).map_err(|e| {
        fail(format!(
            "{e} (check the header and that every row has the same number of fields)"
        ))
    })?;
    // A byte-order mark (files saved by Excel) is not part of the first column's name.
    let inferred = Schema::new(
        inferred
            .fields()
            .iter()
            .map(|f| {
                let name = f.name().trim_start_matches('\u{feff}');
                f.as_ref().clone().with_name(name)
            })
            .collect::<Vec<_>>(),
    );
    if inferred.fields().is_empty() {
        return Err(fail(
            "the file is empty: a seed needs a header row naming its columns".into(),
        ));
    }
    // `column_types` naming a column the file lacks is ignored, as dbt does: a folder-level
    // `+column_types` applies to every seed under it (Fivetran's integration projects).
    let declared = |name: &str| {
        seed.column_types
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(name))
            .map(|(_, t)| t.clone())
    };
    // Text that is all `YYYY-MM-DD HH:MM` is a timestamp too (arrow only infers times with
    // seconds; dbt's adapters infer these).
    let text: Vec<usize> = inferred
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.data_type() == &DataType::Utf8 && declared(f.name()).is_none())
        .map(|(i, _)| i)
        .collect();
    let minutes = minutes_columns(seed, &inferred, &text).map_err(fail)?;
    let columns: Vec<Column> = inferred
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match declared(f.name()) {
            Some(ty) => {
                let lower = ty.trim().to_ascii_lowercase();
                // PostgreSQL's `float` is double precision (DataFusion's is 4 bytes).
                let ty = if lower == "float" {
                    "double".into()
                } else {
                    ty
                };
                let time = lower.starts_with("timestamp") || lower.starts_with("datetime");
                Column::Declared { ty, time }
            }
            None if matches!(f.data_type(), DataType::Timestamp(..)) => {
                Column::Timestamp(f.data_type().clone())
            }
            None if minutes.contains(&i) => {
                Column::Timestamp(DataType::Timestamp(TimeUnit::Second, None))
            }
            None => Column::Kept,
        })
        .collect();
    // A column with no values at all is an integer, as dbt's type inference (agate's first
    // type) loads it; the columns parsed or cast below are read as text.
    let fields: Vec<Field> = inferred
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| match c {
            Column::Kept if f.data_type() == &DataType::Null => {
                Field::new(f.name(), DataType::Int64, true)
            }
            Column::Kept => f.as_ref().clone().with_nullable(true),
            _ => Field::new(f.name(), DataType::Utf8, true),
        })
        .collect();
    let df = scan(ctx, seed, Arc::new(Schema::new(fields))).map_err(|e| fail(e.to_string()))?;
    if columns.iter().all(|c| matches!(c, Column::Kept)) {
        return Ok(df);
    }
    let mut exprs = Vec::new();
    for (f, c) in inferred.fields().iter().zip(&columns) {
        let name = f.name();
        // Times may carry blanks around them (`2020-09-11 13:26:15.000 `), which PostgreSQL
        // reads and arrow's parser takes for an empty time zone.
        let with_seconds = format!(
            "case when length({q}) = 16 then {q} || ':00' else {q} end",
            q = format!("trim({})", quote(name))
        );
        let e: Expr = match c {
            Column::Kept => ident(name),
            Column::Declared { ty, time } => {
                let from = if *time { with_seconds } else { quote(name) };
                df.parse_sql_expr(&format!("cast({from} as {ty})"))
                    .map_err(|e| fail(format!("column_types: {e}")))?
            }
            Column::Timestamp(ty) => cast(
                df.parse_sql_expr(&with_seconds)
                    .map_err(|e| fail(e.to_string()))?,
                ty.clone(),
            ),
        };
        exprs.push(e.alias(name));
    }
    df.select(exprs)
        .map_err(|e| fail(format!("column_types: {e}")))
}

/// The seed file as a DataFusion scan with `schema` (one partition: quoted fields may hold
/// line breaks, so the file cannot be split by line).
fn scan(
    ctx: &SessionContext,
    seed: &SeedSpec,
    schema: Arc<Schema>,
) -> datafusion::error::Result<DataFrame> {
    let path = std::path::absolute(&seed.path)?;
    let url = url::Url::from_file_path(&path).map_err(|()| {
        datafusion::error::DataFusionError::Plan(format!("not a file path: {}", path.display()))
    })?;
    // No glob: a seed's name may hold `*` or `[`.
    let url = ListingTableUrl::try_new(url, None)?;
    let format = CsvFormat::default()
        .with_has_header(true)
        .with_delimiter(seed.delimiter)
        .with_null_regex(Some("^$".into()))
        .with_newlines_in_values(true);
    // Any name: the URL is the one file.
    let options = ListingOptions::new(Arc::new(format)).with_file_extension("");
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    ctx.read_table(Arc::new(ListingTable::try_new(config)?))
}

/// Of the text columns `candidates`, those whose every value (and at least one) is a time
/// without seconds. The file is read until every candidate has shown another value, which for
/// ordinary text is its first row.
fn minutes_columns(
    seed: &SeedSpec,
    inferred: &Schema,
    candidates: &[usize],
) -> Result<Vec<usize>, String> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let text = Schema::new(
        inferred
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    let file = File::open(&seed.path).map_err(|e| format!("cannot open: {e}"))?;
    let reader = ReaderBuilder::new(Arc::new(text))
        .with_header(true)
        .with_delimiter(seed.delimiter)
        .with_null_regex(csv_types::null_pattern())
        .with_projection(candidates.to_vec())
        .build(BufReader::new(file))
        .map_err(|e| e.to_string())?;
    // (position in the projection, column, a value seen)
    let mut live: Vec<(usize, usize, bool)> = candidates
        .iter()
        .enumerate()
        .map(|(j, &i)| (j, i, false))
        .collect();
    for batch in reader {
        let batch =
            batch.map_err(|e| format!("{e} (line numbers count data rows after the header)"))?;
        live.retain_mut(|(j, _, seen)| {
            batch
                .column(*j)
                .as_string::<i32>()
                .iter()
                .flatten()
                .all(|v| {
                    *seen = true;
                    minutes_only(v)
                })
        });
        if live.is_empty() {
            break;
        }
    }
    Ok(live.into_iter().filter(|l| l.2).map(|l| l.1).collect())
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
