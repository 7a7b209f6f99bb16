//! Arrow rows as PostgreSQL binary COPY values, for publishing a model built on the embedded
//! engine to a PostgreSQL table. Each Arrow type maps to the PostgreSQL type that holds it
//! exactly; types without one are sent as text.

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::adapter::AdapterError;

/// Microseconds and days between 1970-01-01 (Arrow) and 2000-01-01 (PostgreSQL).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const PG_EPOCH_DAYS: i32 = 10_957;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Bool,
    I16,
    I32,
    I64,
    F32,
    F64,
    Numeric,
    Date,
    Timestamp,
    Text,
}

#[derive(Debug, Clone)]
pub struct PubColumn {
    pub name: String,
    pub sql_type: String,
    pub pg_type: Type,
    pub kind: Kind,
    /// The Arrow type the column is cast to before encoding.
    arrow: DataType,
}

pub fn columns(schema: &SchemaRef) -> Vec<PubColumn> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let (sql_type, pg_type, kind, arrow) = match f.data_type() {
                DataType::Boolean => ("boolean".into(), Type::BOOL, Kind::Bool, DataType::Boolean),
                DataType::Int8 | DataType::Int16 | DataType::UInt8 => {
                    ("smallint".into(), Type::INT2, Kind::I16, DataType::Int16)
                }
                DataType::Int32 | DataType::UInt16 => {
                    ("integer".into(), Type::INT4, Kind::I32, DataType::Int32)
                }
                DataType::Int64 | DataType::UInt32 => {
                    ("bigint".into(), Type::INT8, Kind::I64, DataType::Int64)
                }
                DataType::UInt64 => (
                    "numeric(20,0)".into(),
                    Type::NUMERIC,
                    Kind::Numeric,
                    DataType::Decimal128(20, 0),
                ),
                DataType::Float16 | DataType::Float32 => {
                    ("real".into(), Type::FLOAT4, Kind::F32, DataType::Float32)
                }
                DataType::Float64 => (
                    "double precision".into(),
                    Type::FLOAT8,
                    Kind::F64,
                    DataType::Float64,
                ),
                DataType::Decimal32(p, s)
                | DataType::Decimal64(p, s)
                | DataType::Decimal128(p, s)
                | DataType::Decimal256(p, s) => {
                    let (p, s) = if *s < 0 {
                        ((*p as i16 - *s as i16).min(38) as u8, 0)
                    } else {
                        ((*p).min(38), *s)
                    };
                    (
                        format!("numeric({p},{s})"),
                        Type::NUMERIC,
                        Kind::Numeric,
                        DataType::Decimal128(p, s),
                    )
                }
                DataType::Date32 | DataType::Date64 => {
                    ("date".into(), Type::DATE, Kind::Date, DataType::Date32)
                }
                DataType::Timestamp(_, None) => (
                    "timestamp".into(),
                    Type::TIMESTAMP,
                    Kind::Timestamp,
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                ),
                DataType::Timestamp(_, Some(_)) => (
                    "timestamptz".into(),
                    Type::TIMESTAMPTZ,
                    Kind::Timestamp,
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                ),
                _ => ("text".into(), Type::TEXT, Kind::Text, DataType::Utf8),
            };
            PubColumn {
                name: f.name().clone(),
                sql_type,
                pg_type,
                kind,
                arrow,
            }
        })
        .collect()
}

/// `batch` with each column cast to the type its encoder reads.
pub fn canonical(batch: &RecordBatch, columns: &[PubColumn]) -> Result<RecordBatch, AdapterError> {
    let arrays = batch
        .columns()
        .iter()
        .zip(columns)
        .map(|(a, c)| {
            datafusion::arrow::compute::cast(a, &c.arrow)
                .map_err(|e| AdapterError(format!("column {}: {e}", c.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(
        columns
            .iter()
            .map(|c| datafusion::arrow::datatypes::Field::new(&c.name, c.arrow.clone(), true))
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(schema, arrays).map_err(|e| AdapterError(e.to_string()))
}

/// One column of a batch.
pub struct Cell<'a> {
    array: &'a ArrayRef,
    kind: Kind,
}

impl<'a> Cell<'a> {
    pub fn new(array: &'a ArrayRef, kind: Kind) -> Self {
        Self { array, kind }
    }

    pub fn at(&self, row: usize) -> At<'a> {
        At {
            array: self.array,
            kind: self.kind,
            row,
        }
    }
}

/// One value, encoded straight from the Arrow array.
#[derive(Debug)]
pub struct At<'a> {
    array: &'a ArrayRef,
    kind: Kind,
    row: usize,
}

impl ToSql for At<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let (a, i) = (self.array, self.row);
        if a.is_null(i) {
            return Ok(IsNull::Yes);
        }
        match self.kind {
            Kind::Bool => out.put_u8(a.as_boolean().value(i) as u8),
            Kind::I16 => out.put_i16(a.as_primitive::<Int16Type>().value(i)),
            Kind::I32 => out.put_i32(a.as_primitive::<Int32Type>().value(i)),
            Kind::I64 => out.put_i64(a.as_primitive::<Int64Type>().value(i)),
            Kind::F32 => out.put_f32(a.as_primitive::<Float32Type>().value(i)),
            Kind::F64 => out.put_f64(a.as_primitive::<Float64Type>().value(i)),
            Kind::Date => out.put_i32(a.as_primitive::<Date32Type>().value(i) - PG_EPOCH_DAYS),
            Kind::Timestamp => {
                out.put_i64(a.as_primitive::<TimestampMicrosecondType>().value(i) - PG_EPOCH_MICROS)
            }
            Kind::Text => out.put_slice(a.as_string::<i32>().value(i).as_bytes()),
            Kind::Numeric => {
                let scale = match a.data_type() {
                    DataType::Decimal128(_, s) => *s,
                    _ => 0,
                };
                numeric(a.as_primitive::<Decimal128Type>().value(i), scale, out);
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// PostgreSQL's binary `numeric`: base-10000 digits with a weight (the power of 10000 of the
/// first digit), a sign and the display scale.
fn numeric(value: i128, scale: i8, out: &mut BytesMut) {
    let scale = scale.max(0) as usize;
    let mut text = value.unsigned_abs().to_string();
    if text.len() <= scale {
        text = format!("{}{text}", "0".repeat(scale + 1 - text.len()));
    }
    let (int, frac) = text.split_at(text.len() - scale);
    let int = int.trim_start_matches('0');
    let int = format!("{}{int}", "0".repeat((4 - int.len() % 4) % 4));
    let frac = format!("{frac}{}", "0".repeat((4 - frac.len() % 4) % 4));
    let group = |c: &[u8]| {
        std::str::from_utf8(c)
            .unwrap_or("0")
            .parse::<i16>()
            .unwrap_or(0)
    };
    let mut digits: Vec<i16> = int.as_bytes().chunks(4).map(group).collect();
    let mut weight = digits.len() as i16 - 1;
    digits.extend(frac.as_bytes().chunks(4).map(group));
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    weight -= leading as i16;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    out.put_i16(digits.len() as i16);
    out.put_i16(weight);
    out.put_u16(if value < 0 && !digits.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_u16(scale as u16);
    for d in digits {
        out.put_i16(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: i128, s: i8) -> Vec<i16> {
        let mut b = BytesMut::new();
        numeric(v, s, &mut b);
        b.chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numeric_encoding() {
        // ndigits, weight, sign, dscale, digits...
        assert_eq!(enc(1050, 2), vec![2, 0, 0, 2, 10, 5000]); // 10.50
        assert_eq!(enc(5, 2), vec![1, -1, 0, 2, 500]); // 0.05
        assert_eq!(enc(-123456789, 0), vec![3, 2, 0x4000, 0, 1, 2345, 6789]);
        assert_eq!(enc(0, 3), vec![0, 0, 0, 3]);
        assert_eq!(enc(100000000, 0), vec![1, 2, 0, 0, 1]); // 1e8
        assert_eq!(enc(1, 9), vec![1, -3, 0, 9, 1000]); // 0.000000001
    }
}
