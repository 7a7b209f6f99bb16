//! SQL functions dbt projects call that DataFusion lacks under that name, with the semantics of
//! the warehouses those projects were written for (DuckDB, PostgreSQL, Snowflake):
//! `mod(a, b)`; `datediff(part, start, end)` / `date_diff` (boundaries crossed, DuckDB's
//! rules), and the two-argument `datediff(end, start)` of Spark and MySQL (days);
//! `any_value`, `min_by`/`max_by` (`arg_min`/`arg_max`), and `listagg` (DataFusion's
//! `string_agg`); and `coalesce` that takes a string literal beside a date or timestamp as
//! that type (PostgreSQL's reading of `coalesce(valid_to, '2099-01-01')`).

use std::any::Any;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::{SortOptions, sort_to_indices};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit, TimestampMicrosecondType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::scalar::ScalarValue;

/// Registers the functions on a session.
pub fn register(ctx: &SessionContext) {
    let exact = |t: DataType| TypeSignature::Exact(vec![t.clone(), t]);
    ctx.register_udf(ScalarUDF::new_from_impl(Mod {
        signature: Signature::one_of(
            vec![exact(DataType::Int64), exact(DataType::Float64)],
            Volatility::Immutable,
        ),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(DateDiff {
        signature: Signature::user_defined(Volatility::Immutable),
        aliases: vec!["date_diff".into()],
    }));
    ctx.register_udaf(AggregateUDF::new_from_impl(AnyValue {
        signature: Signature::any(1, Volatility::Immutable),
    }));
    for (name, max, alias) in [("min_by", false, "arg_min"), ("max_by", true, "arg_max")] {
        ctx.register_udaf(AggregateUDF::new_from_impl(By {
            name,
            max,
            aliases: vec![alias.into()],
            signature: Signature::any(2, Volatility::Immutable),
        }));
    }
    let inner = datafusion::functions::core::coalesce();
    ctx.register_udf(ScalarUDF::new_from_impl(Coalesce {
        inner: inner.as_ref().clone(),
    }));
    let string_agg = datafusion::functions_aggregate::string_agg::string_agg_udaf();
    ctx.register_udaf(string_agg.as_ref().clone().with_aliases(["listagg"]));
}

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

/// DataFusion's `coalesce`, with one more coercion: text (a literal) beside one date or
/// timestamp type becomes that type, as PostgreSQL types an unknown literal by its context.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Coalesce {
    inner: ScalarUDF,
}

impl ScalarUDFImpl for Coalesce {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn simplify(
        &self,
        args: Vec<datafusion::logical_expr::Expr>,
        info: &datafusion::logical_expr::simplify::SimplifyContext,
    ) -> Result<datafusion::logical_expr::simplify::ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [datafusion::logical_expr::Expr],
    ) -> Option<(
        Vec<&'a datafusion::logical_expr::Expr>,
        Vec<&'a datafusion::logical_expr::Expr>,
    )> {
        self.inner.inner().conditional_arguments(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let temporal: Vec<&DataType> = args.iter().filter(|t| t.is_temporal()).collect();
        let texty = |t: &DataType| {
            matches!(
                t,
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null
            )
        };
        if let Some(first) = temporal.first()
            && temporal.iter().all(|t| t == first)
            && args.iter().all(|t| t == *first || texty(t))
            && args.iter().any(|t| !t.is_null() && texty(t))
        {
            return Ok(vec![(*first).clone(); args.len()]);
        }
        self.inner.coerce_types(args)
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DateDiff {
    signature: Signature,
    aliases: Vec<String>,
}

const MICROS: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

impl ScalarUDFImpl for DateDiff {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "datediff"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args.len() {
            2 => Ok(vec![MICROS, MICROS]),
            3 => Ok(vec![DataType::Utf8, MICROS, MICROS]),
            n => Err(DataFusionError::Plan(format!(
                "datediff takes (part, start, end) or (end, start), not {n} arguments"
            ))),
        }
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (parts, start, end) = match arrays.as_slice() {
            [end, start] => (None, start, end),
            [part, start, end] => (Some(part.as_string::<i32>()), start, end),
            _ => unreachable!("coerce_types admits two or three arguments"),
        };
        let start = start.as_primitive::<TimestampMicrosecondType>();
        let end = end.as_primitive::<TimestampMicrosecondType>();
        let mut out = Vec::with_capacity(start.len());
        for i in 0..start.len() {
            if start.is_null(i) || end.is_null(i) || parts.is_some_and(|p| p.is_null(i)) {
                out.push(None);
                continue;
            }
            let part = parts.map_or("day", |p| p.value(i));
            out.push(Some(boundaries(part, start.value(i), end.value(i))?));
        }
        Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
    }
}

/// How many `part` boundaries lie between two instants (microseconds since the epoch), as
/// DuckDB counts them: whole calendar units for years to days and hours to microseconds,
/// and weeks as whole seven-day spans of the day count.
fn boundaries(part: &str, start: i64, end: i64) -> Result<i64> {
    let at = |us: i64| -> NaiveDateTime {
        DateTime::from_timestamp_micros(us)
            .map(|d| d.naive_utc())
            .unwrap_or_default()
    };
    let (a, b) = (at(start), at(end));
    let months = |d: NaiveDateTime| i64::from(d.year()) * 12 + i64::from(d.month0());
    let years = |d: NaiveDateTime| i64::from(d.year());
    let days = (b.date() - a.date()).num_days();
    let per = |unit: i64| end.div_euclid(unit) - start.div_euclid(unit);
    Ok(match part.trim().to_ascii_lowercase().as_str() {
        "millennium" | "millennia" | "millenniums" | "mil" => years(b) / 1000 - years(a) / 1000,
        "century" | "centuries" | "cent" => years(b) / 100 - years(a) / 100,
        "decade" | "decades" | "dec" => years(b) / 10 - years(a) / 10,
        "year" | "years" | "y" | "yr" | "yrs" | "yy" | "yyyy" => years(b) - years(a),
        "quarter" | "quarters" | "q" | "qtr" | "qtrs" => months(b) / 3 - months(a) / 3,
        "month" | "months" | "mon" | "mons" | "mm" => months(b) - months(a),
        "week" | "weeks" | "w" | "wk" | "wks" => days / 7,
        "day" | "days" | "d" | "dd" | "dayofmonth" => days,
        "hour" | "hours" | "h" | "hr" | "hrs" | "hh" => per(3_600_000_000),
        "minute" | "minutes" | "m" | "min" | "mins" | "mi" => per(60_000_000),
        "second" | "seconds" | "s" | "sec" | "secs" | "ss" => per(1_000_000),
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => per(1_000),
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" => end - start,
        other => {
            return Err(DataFusionError::Execution(format!(
                "datediff: unknown date part '{other}' (use year, quarter, month, week, day, hour, minute, second, millisecond or microsecond)"
            )));
        }
    })
}

/// `any_value(x)`: some non-null `x` of the group (the first one met), as DuckDB and
/// Snowflake.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AnyValue {
    signature: Signature,
}

impl AggregateUDFImpl for AnyValue {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "any_value"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(AnyValueAcc(ScalarValue::try_from(
            args.return_field.data_type(),
        )?)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![state_field(args.name, "value", args.return_type())])
    }
}

fn state_field(name: &str, part: &str, t: &DataType) -> FieldRef {
    Arc::new(Field::new(format_state_name(name, part), t.clone(), true))
}

#[derive(Debug)]
struct AnyValueAcc(ScalarValue);

impl Accumulator for AnyValueAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if self.0.is_null()
            && let Some(i) = (0..values[0].len()).find(|&i| values[0].is_valid(i))
        {
            self.0 = ScalarValue::try_from_array(&values[0], i)?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.0.clone())
    }

    fn size(&self) -> usize {
        self.0.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.0.clone()])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }
}

/// `min_by(x, key)` / `max_by(x, key)`: `x` of the row with the least (greatest) non-null
/// `key`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct By {
    name: &'static str,
    max: bool,
    aliases: Vec<String>,
    signature: Signature,
}

impl AggregateUDFImpl for By {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let key = args.expr_fields[1].data_type();
        Ok(Box::new(ByAcc {
            max: self.max,
            value: ScalarValue::try_from(args.return_field.data_type())?,
            key: ScalarValue::try_from(key)?,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            state_field(args.name, "value", args.return_type()),
            state_field(args.name, "key", args.input_fields[1].data_type()),
        ])
    }
}

#[derive(Debug)]
struct ByAcc {
    max: bool,
    value: ScalarValue,
    key: ScalarValue,
}

impl Accumulator for ByAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (value, key) = (&values[0], &values[1]);
        let order = SortOptions {
            descending: self.max,
            nulls_first: false,
        };
        let best = sort_to_indices(key, Some(order), Some(1))?;
        if best.is_empty() {
            return Ok(());
        }
        let i = best.value(0) as usize;
        if key.is_null(i) {
            return Ok(());
        }
        let candidate = ScalarValue::try_from_array(key, i)?;
        let better = self.key.is_null()
            || match candidate.partial_cmp(&self.key) {
                Some(std::cmp::Ordering::Less) => !self.max,
                Some(std::cmp::Ordering::Greater) => self.max,
                _ => false,
            };
        if better {
            self.key = candidate;
            self.value = ScalarValue::try_from_array(value, i)?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        self.value.size() + self.key.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.value.clone(), self.key.clone()])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }
}

#[cfg(test)]
mod tests {
    use super::boundaries;

    fn us(text: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    #[test]
    fn datediff_counts_boundaries_as_duckdb() {
        let d = |p, a, b| boundaries(p, us(a), us(b)).unwrap();
        // Each figure is what DuckDB 1.4 returns for the same call.
        assert_eq!(d("week", "2024-01-06 00:00:00", "2024-01-08 00:00:00"), 0);
        assert_eq!(d("week", "2024-01-01 10:00:00", "2024-01-08 09:00:00"), 1);
        assert_eq!(d("week", "2024-01-07 00:00:00", "2024-01-01 00:00:00"), 0);
        assert_eq!(d("week", "2024-01-08 00:00:00", "2024-01-01 00:00:00"), -1);
        assert_eq!(d("hour", "2024-01-01 10:59:00", "2024-01-01 11:01:00"), 1);
        assert_eq!(d("day", "2024-01-01 23:59:00", "2024-01-02 00:01:00"), 1);
        assert_eq!(d("days", "2024-01-05 00:00:00", "2024-01-01 00:00:00"), -4);
        assert_eq!(d("month", "2024-01-31 00:00:00", "2024-02-01 00:00:00"), 1);
        assert_eq!(d("mon", "2024-01-05 00:00:00", "2024-03-01 00:00:00"), 2);
        assert_eq!(
            d("quarter", "2024-03-31 00:00:00", "2024-04-01 00:00:00"),
            1
        );
        assert_eq!(d("year", "2024-12-31 00:00:00", "2025-01-01 00:00:00"), 1);
        assert_eq!(d("decade", "2019-01-01 00:00:00", "2020-01-01 00:00:00"), 1);
        assert_eq!(d("minute", "2024-01-01 10:00:59", "2024-01-01 10:01:00"), 1);
        assert_eq!(
            d("second", "2024-01-01 10:00:00.9", "2024-01-01 10:00:01.1"),
            1
        );
        assert!(
            boundaries("fortnight", 0, 0)
                .unwrap_err()
                .to_string()
                .contains("unknown date part 'fortnight'")
        );
    }
}
