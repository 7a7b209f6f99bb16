//! Stream records (Kafka, Kinesis) as rows: values decoded as JSON objects, CSV lines or raw
//! text into the source's columns. A record that cannot be decoded is kept: its columns are
//! NULL, `_error` says why and `_raw` holds its text (or, with `on_error: fail`, the node stops
//! naming where the record is).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, StringArray, StringBuilder, new_null_array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options, nullif};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionState;

use crate::adapter::external::RecordFormat;

/// Records read at planning to infer the columns of JSON records nobody declared.
pub const INFER_SAMPLE: usize = 1_000;

/// The columns every stream table ends with.
pub fn error_fields() -> [Field; 2] {
    [
        Field::new("_error", DataType::Utf8, true),
        Field::new("_raw", DataType::Utf8, true),
    ]
}

/// The declared columns with their SQL types, as Arrow fields.
pub fn declared(
    state: &SessionState,
    columns: &[(String, String)],
) -> std::result::Result<Vec<Field>, String> {
    let empty = datafusion::common::DFSchema::empty();
    columns
        .iter()
        .map(|(name, ty)| {
            let expr = state
                .create_logical_expr(&format!("cast(NULL as {ty})"), &empty)
                .map_err(|e| format!("column '{name}': data_type '{ty}' is not a type ({e})"))?;
            let t = match expr {
                datafusion::logical_expr::Expr::Cast(c) => c.data_type,
                _ => DataType::Utf8,
            };
            Ok(Field::new(name, t, true))
        })
        .collect()
}

/// The columns of JSON records nobody declared, inferred from a sample of their values;
/// names of the source's own metadata columns (`meta`) are left to the metadata.
pub fn infer<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    meta: &[Field],
) -> std::result::Result<Vec<Field>, String> {
    let sample: Vec<serde_json::Value> = values
        .filter_map(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
        .filter(serde_json::Value::is_object)
        .take(INFER_SAMPLE)
        .collect();
    let schema =
        datafusion::arrow::json::reader::infer_json_schema_from_iterator(sample.iter().map(Ok))
            .map_err(|e| format!("inferring the columns of the records: {e}"))?;
    Ok(schema
        .fields()
        .iter()
        .filter(|f| {
            meta.iter()
                .chain(&error_fields())
                .all(|m| m.name() != f.name())
        })
        // A field only ever null in the sample is read as text, not as the Null type.
        .map(|f| match f.data_type() {
            DataType::Null => Field::new(f.name(), DataType::Utf8, true),
            _ => f.as_ref().clone().with_nullable(true),
        })
        .collect())
}

/// How the values of a source's records become columns.
#[derive(Debug)]
pub struct Decoder {
    /// The source's unique id, for errors.
    pub source: String,
    pub format: RecordFormat,
    /// The decoded columns (without the metadata).
    pub columns: SchemaRef,
    pub fail_on_error: bool,
}

impl Decoder {
    /// The decoded columns of `values`, then `_error` and `_raw`; `place(i)` says where the
    /// i-th record is, for `on_error: fail`.
    pub fn decode(
        &self,
        values: &[Option<&[u8]>],
        place: &dyn Fn(usize) -> String,
    ) -> Result<(Vec<ArrayRef>, [ArrayRef; 2])> {
        let n = values.len();
        let (mut columns, errors) = match self.format {
            RecordFormat::Raw => {
                let text: StringArray = values
                    .iter()
                    .map(|v| v.map(String::from_utf8_lossy))
                    .collect();
                (vec![Arc::new(text) as ArrayRef], vec![None; n])
            }
            RecordFormat::Json => self.json(values),
            RecordFormat::Csv => self.csv(values),
        };
        if self.fail_on_error
            && let Some((i, e)) = errors
                .iter()
                .enumerate()
                .find_map(|(i, e)| Some((i, e.as_ref()?)))
        {
            return Err(DataFusionError::Execution(format!(
                "{}: the record at {} cannot be read: {e} (`on_error: fail`; set `on_error: keep` to keep such records with their error in `_error`)",
                self.source,
                place(i)
            )));
        }
        // A rejected record keeps no half-decoded values.
        let rejected: BooleanArray = errors.iter().map(|e| Some(e.is_some())).collect();
        if rejected.true_count() > 0 {
            columns = columns
                .into_iter()
                .map(|c| nullif(&c, &rejected))
                .collect::<std::result::Result<_, _>>()?;
        }
        let raw: StringArray = errors
            .iter()
            .zip(values)
            .map(|(e, v)| e.as_ref().and(v.map(String::from_utf8_lossy)))
            .collect();
        let error: StringArray = errors.iter().map(Option::as_deref).collect();
        Ok((columns, [Arc::new(error), Arc::new(raw)]))
    }

    /// JSON objects decoded by arrow-json all at once; when a value does not fit its column's
    /// type, record by record to find which.
    fn json(&self, values: &[Option<&[u8]>]) -> (Vec<ArrayRef>, Vec<Option<String>>) {
        let mut errors: Vec<Option<String>> = values
            .iter()
            .map(|v| match v {
                None => None,
                Some(v) => json_object_error(v),
            })
            .collect();
        if let Ok(columns) = self.json_rows(values, &errors) {
            return (columns, errors);
        }
        for (v, e) in values.iter().zip(errors.iter_mut()) {
            if let (Some(v), None) = (v, &e)
                && let Err(msg) = self.json_rows(&[Some(v)], &[None])
            {
                *e = Some(msg);
            }
        }
        match self.json_rows(values, &errors) {
            Ok(columns) => (columns, errors),
            Err(msg) => (self.nulls(values.len()), vec![Some(msg); values.len()]),
        }
    }

    /// One row per value: the value decoded, or NULLs where it is None or has an error.
    fn json_rows(
        &self,
        values: &[Option<&[u8]>],
        errors: &[Option<String>],
    ) -> std::result::Result<Vec<ArrayRef>, String> {
        let mut decoder = ReaderBuilder::new(self.columns.clone())
            .with_batch_size(values.len().max(1))
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(|e| e.to_string())?;
        for (v, e) in values.iter().zip(errors) {
            let bytes: &[u8] = match (v, e) {
                (Some(v), None) => v,
                _ => b"{}",
            };
            decoder.decode(bytes).map_err(|e| e.to_string())?;
            decoder.decode(b"\n").map_err(|e| e.to_string())?;
        }
        match decoder.flush().map_err(|e| e.to_string())? {
            Some(b) if b.num_rows() == values.len() => Ok(b.columns().to_vec()),
            Some(b) => Err(format!(
                "{} rows decoded from {} records",
                b.num_rows(),
                values.len()
            )),
            None if values.is_empty() => Ok(self.nulls(0)),
            None => Err("no rows decoded".into()),
        }
    }

    fn nulls(&self, n: usize) -> Vec<ArrayRef> {
        self.columns
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), n))
            .collect()
    }

    /// CSV lines, one per record, without a header: fields in the declared columns' order,
    /// read as text and cast to the declared types. An empty field is NULL.
    fn csv(&self, values: &[Option<&[u8]>]) -> (Vec<ArrayRef>, Vec<Option<String>>) {
        let width = self.columns.fields().len();
        let mut builders: Vec<StringBuilder> = (0..width).map(|_| StringBuilder::new()).collect();
        let mut errors = Vec::with_capacity(values.len());
        let mut reader_builder = csv::ReaderBuilder::new();
        reader_builder.has_headers(false).flexible(true);
        for v in values {
            let mut fields: Vec<String> = Vec::new();
            let error = match v {
                None => None,
                Some(v) => {
                    let mut rdr = reader_builder.from_reader(*v);
                    let mut rows = rdr.records();
                    match (rows.next(), rows.next()) {
                        (Some(Ok(r)), None) if r.len() == width => {
                            fields = r.iter().map(str::to_string).collect();
                            None
                        }
                        (Some(Ok(r)), None) => Some(format!(
                            "{} fields where the source declares {width} columns",
                            r.len()
                        )),
                        (Some(Err(e)), _) => Some(format!("not a CSV line: {e}")),
                        (None, _) => Some("an empty record".into()),
                        (Some(Ok(_)), Some(_)) => Some("more than one CSV line".into()),
                    }
                }
            };
            for (i, b) in builders.iter_mut().enumerate() {
                match fields.get(i).filter(|f| !f.is_empty()) {
                    Some(f) => b.append_value(f),
                    None => b.append_null(),
                }
            }
            errors.push(error);
        }
        let text: Vec<ArrayRef> = builders
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let safe = CastOptions {
            safe: true,
            ..Default::default()
        };
        let mut columns = Vec::with_capacity(width);
        for (field, text) in self.columns.fields().iter().zip(text) {
            let typed = match cast_with_options(&text, field.data_type(), &safe) {
                Ok(a) => a,
                Err(e) => {
                    errors.iter_mut().for_each(|x| {
                        x.get_or_insert_with(|| format!("column '{}': {e}", field.name()));
                    });
                    new_null_array(field.data_type(), text.len())
                }
            };
            // A value the cast turned into NULL did not fit the type.
            for (i, e) in errors.iter_mut().enumerate() {
                if e.is_none() && text.is_valid(i) && typed.is_null(i) {
                    let value = text
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .map(|s| s.value(i).to_string())
                        .unwrap_or_default();
                    *e = Some(format!(
                        "column '{}': '{value}' is not a {}",
                        field.name(),
                        field.data_type()
                    ));
                }
            }
            columns.push(typed);
        }
        (columns, errors)
    }
}

/// Why a record's value is not one JSON object, if it is not.
fn json_object_error(v: &[u8]) -> Option<String> {
    let first = v.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Some("not a JSON object".into());
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(v) {
        Ok(_) => None,
        Err(e) => Some(format!("not valid JSON: {e}")),
    }
}
