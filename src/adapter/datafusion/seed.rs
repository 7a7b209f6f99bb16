//! Seeds: CSV files typed by arrow-csv's inference over the whole file, in ranges on every core
//! (empty strings as NULL, `column_types` overrides applied with SQL casts), read as a
//! DataFusion scan so that a large seed streams into its table in batches instead of sitting in
//! memory whole.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::csv::ReaderBuilder;
use datafusion::arrow::csv::reader::Format;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::logical_expr::{Expr, cast, ident};
use datafusion::prelude::SessionContext;

use crate::adapter::AdapterError;
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
    let format = Format::default()
        .with_header(true)
        .with_delimiter(seed.delimiter)
        .with_null_regex(empty());
    drop(file);
    let inferred = infer_types(&seed.path, &format, seed.delimiter, 32 << 20).map_err(|e| {
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

/// The columns of the whole file as arrow-csv infers them, on every core: a file of at least two
/// `min_range`s is cut at record starts (after a newline outside quotes) into a range per core,
/// each inferred alone and the types merged as one pass over the whole would have found them
/// (on one core, inference was half of loading a 1 GB seed). Any trouble in a range: the whole
/// file again on one core, for arrow's own error.
fn infer_types(
    path: &std::path::Path,
    format: &Format,
    delimiter: u8,
    min_range: u64,
) -> Result<Schema, datafusion::arrow::error::ArrowError> {
    use std::io::{Read, Seek, SeekFrom};
    let whole = || {
        format
            .infer_schema(BufReader::new(File::open(path)?), None)
            .map(|(schema, _)| schema)
    };
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let pieces = cores.min(len / min_range.max(1));
    if pieces < 2 {
        return whole();
    }
    let Ok(cuts) = record_starts(path, len, pieces, delimiter) else {
        return whole();
    };
    let starts: Vec<u64> = std::iter::once(0).chain(cuts).collect();
    let ranges: Vec<(u64, u64)> = starts
        .iter()
        .zip(starts.iter().skip(1).chain([&len]))
        .map(|(&a, &b)| (a, b))
        .collect();
    let parts = crate::parallel::map(&ranges, 1, |&(start, end)| {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(start))?;
        let reader = BufReader::new(file.take(end - start));
        // A seed's header row is in the first range only.
        let format = format.clone().with_header(start == 0);
        format.infer_schema(reader, None).map(|(schema, _)| schema)
    });
    let mut schemas = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Ok(schema) => schemas.push(schema),
            Err(_) => return whole(),
        }
    }
    let first = &schemas[0];
    if schemas
        .iter()
        .any(|s| s.fields().len() != first.fields().len())
    {
        return whole();
    }
    Ok(Schema::new(
        first
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let ty = schemas[1..].iter().fold(f.data_type().clone(), |t, s| {
                    merge_inferred(&t, s.field(i).data_type())
                });
                f.as_ref().clone().with_data_type(ty)
            })
            .collect::<Vec<_>>(),
    ))
}

/// Where records start near each `k / pieces` of the file: after the first newline at or past
/// that point outside quotes (quotes are counted from the start; an escaped quote is doubled,
/// which keeps the count's parity). Fewer cuts where no such newline follows. A quote that
/// neither opens a field nor closes one (`12" pizza`, which a CSV reader keeps as text) would
/// make the count lie: such a file is an error here, and the caller infers it whole.
fn record_starts(
    path: &std::path::Path,
    len: u64,
    pieces: u64,
    delimiter: u8,
) -> std::io::Result<Vec<u64>> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut targets = (1..pieces).map(|k| k * len / pieces).peekable();
    let mut cuts = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut pos, mut quoted) = (0u64, false);
    // The byte before the block; none at the file's start.
    let mut before: Option<u8> = None;
    let edge = |b: u8| b == delimiter || b == b'\n' || b == b'\r' || b == b'"';
    let stray = || std::io::Error::other("a quote inside an unquoted field");
    'read: loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let block = &buf[..n];
        // Whether the quote at `q` opens or closes a field (or is half of an escaped pair).
        let fits = |q: usize, quoted: bool| {
            if quoted {
                block.get(q + 1).is_none_or(|&b| edge(b))
            } else {
                q.checked_sub(1)
                    .map_or(before, |p| Some(block[p]))
                    .is_none_or(edge)
            }
        };
        let mut i = 0;
        while i < n {
            let Some(&target) = targets.peek() else {
                break 'read;
            };
            let at = pos + i as u64;
            if at < target {
                // Before the target only the quotes matter: found with memchr.
                let upto = usize::try_from(target - pos).map_or(n, |t| t.min(n));
                while let Some(off) = memchr::memchr(b'"', &block[i..upto]) {
                    if !fits(i + off, quoted) {
                        return Err(stray());
                    }
                    quoted = !quoted;
                    i += off + 1;
                }
                i = upto;
                continue;
            }
            match block[i] {
                b'"' if !fits(i, quoted) => return Err(stray()),
                b'"' => quoted = !quoted,
                b'\n' if !quoted => {
                    cuts.push(at + 1);
                    while targets.peek().is_some_and(|&t| t <= at + 1) {
                        targets.next();
                    }
                }
                _ => {}
            }
            i += 1;
        }
        before = Some(block[n - 1]);
        pos += n as u64;
    }
    cuts.retain(|&c| c < len);
    Ok(cuts)
}

/// Two ranges' inferred types as one pass over both would infer them (arrow-csv keeps a set of
/// the kinds of values seen: no value, booleans, integers, floats, dates and timestamps of
/// rising precision; any other mix is text).
fn merge_inferred(a: &DataType, b: &DataType) -> DataType {
    let temporal = |t: &DataType| match t {
        DataType::Date32 => Some(0),
        DataType::Timestamp(TimeUnit::Second, None) => Some(1),
        DataType::Timestamp(TimeUnit::Millisecond, None) => Some(2),
        DataType::Timestamp(TimeUnit::Microsecond, None) => Some(3),
        DataType::Timestamp(TimeUnit::Nanosecond, None) => Some(4),
        _ => None,
    };
    match (a, b) {
        (DataType::Null, t) | (t, DataType::Null) => t.clone(),
        _ if a == b => a.clone(),
        (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
            DataType::Float64
        }
        _ => match (temporal(a), temporal(b)) {
            (Some(x), Some(y)) => if x >= y { a } else { b }.clone(),
            _ => DataType::Utf8,
        },
    }
}

/// The null pattern of seeds: an empty field.
fn empty() -> regex::Regex {
    regex::Regex::new("^$").expect("static regex")
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
        .with_null_regex(empty())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Cut into ranges, a file is typed as one pass over it types it: kinds seen in one range
    /// only, NULL-only ranges, times of two precisions, quoted newlines and quotes near the cuts.
    #[test]
    fn types_inferred_in_ranges_are_the_whole_files() {
        let dir = std::env::temp_dir().join(format!("rsdbt-seed-infer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.csv");
        let mut text = String::from("id,amount,maybe,at,note,flag,mixed\n");
        for i in 0..4000 {
            let first = i < 2000;
            let amount = if first {
                format!("{i}")
            } else {
                format!("{i}.5")
            };
            let maybe = if first { String::new() } else { format!("{i}") };
            let at = if first {
                "2024-01-02".to_string()
            } else {
                "2024-01-02T03:04:05".to_string()
            };
            let note = if i % 7 == 0 {
                format!("\"line one\nline \"\"two\"\", {i}\"")
            } else {
                format!("note {i}")
            };
            let mixed = if i == 3999 {
                "x".to_string()
            } else {
                i.to_string()
            };
            text += &format!("{i},{amount},{maybe},{at},{note},true,{mixed}\n");
        }
        std::fs::write(&path, &text).unwrap();
        let format = Format::default().with_header(true).with_null_regex(empty());
        let whole = format
            .infer_schema(BufReader::new(File::open(&path).unwrap()), None)
            .unwrap()
            .0;
        let cut = infer_types(&path, &format, b',', 1024).unwrap();
        assert_eq!(cut, whole);
        let types: Vec<String> = cut
            .fields()
            .iter()
            .map(|f| f.data_type().to_string())
            .collect();
        assert_eq!(
            types,
            [
                "Int64",
                "Float64",
                "Int64",
                "Timestamp(s)",
                "Utf8",
                "Boolean",
                "Utf8"
            ]
        );
        // The cuts fall at record starts, never inside the quoted notes.
        let cuts = record_starts(&path, text.len() as u64, 4, b',').unwrap();
        assert_eq!(cuts.len(), 3);
        for c in cuts {
            let before = &text[..c as usize];
            assert!(before.ends_with('\n'));
            assert_eq!(before.matches('"').count() % 2, 0);
        }
        // A quote inside an unquoted field: not cut (the file is inferred whole).
        let stray = text.replacen("note 1,", "note 1 is 12\" long,", 1);
        std::fs::write(&path, &stray).unwrap();
        assert!(record_starts(&path, stray.len() as u64, 4, b',').is_err());
        let whole = format
            .infer_schema(BufReader::new(File::open(&path).unwrap()), None)
            .unwrap()
            .0;
        assert_eq!(infer_types(&path, &format, b',', 1024).unwrap(), whole);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn merged_types_follow_arrows_inference() {
        use DataType::*;
        let ts = |u| Timestamp(u, None);
        assert_eq!(merge_inferred(&Null, &Int64), Int64);
        assert_eq!(merge_inferred(&Int64, &Float64), Float64);
        assert_eq!(merge_inferred(&Boolean, &Int64), Utf8);
        assert_eq!(
            merge_inferred(&Date32, &ts(TimeUnit::Second)),
            ts(TimeUnit::Second)
        );
        assert_eq!(
            merge_inferred(&ts(TimeUnit::Microsecond), &ts(TimeUnit::Millisecond)),
            ts(TimeUnit::Microsecond)
        );
        assert_eq!(merge_inferred(&Date32, &Int64), Utf8);
        assert_eq!(merge_inferred(&Utf8, &Null), Utf8);
    }
}
