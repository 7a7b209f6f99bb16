//! SQL functions dbt projects call that DataFusion lacks under that name, with the semantics of
//! the warehouses those projects were written for (DuckDB, PostgreSQL, Snowflake):
//! `mod(a, b)`; `datediff(part, start, end)` / `date_diff` (boundaries crossed, DuckDB's
//! rules), and the two-argument `datediff(end, start)` of Spark and MySQL (days);
//! `any_value`, `min_by`/`max_by` (`arg_min`/`arg_max`), and `listagg` (DataFusion's
//! `string_agg`); `coalesce` that takes a string literal beside a date or timestamp as that
//! type (PostgreSQL's reading of `coalesce(valid_to, '2099-01-01')`); `dateadd(part, n, ts)`,
//! `date_add(d, n | interval)`, `last_day`, `epoch`, `strftime`/`strptime` (DuckDB's names
//! for `to_char`/`to_timestamp` with a strftime format), `to_char` with PostgreSQL's patterns
//! (`'YYYY-MM-DD'`), `regexp_extract`, `regexp_matches` (DuckDB's: a boolean), and `median`
//! of integers as a double (DuckDB's; DataFusion's truncates).

use std::any::Any;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::{SortOptions, sort_to_indices};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit, TimestampMicrosecondType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::FunctionRegistry;
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
    super::json::register(ctx);
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
    for (name, imp) in [
        ("dateadd", Calendar::DateAdd),
        ("date_add", Calendar::DateAddValue),
        ("last_day", Calendar::LastDay),
        ("epoch", Calendar::Epoch),
        ("regexp_extract", Calendar::RegexpExtract),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(Extra {
            name,
            imp,
            signature: Signature::user_defined(Volatility::Immutable),
        }));
    }
    if let Ok(to_char) = ctx.udf("to_char") {
        ctx.register_udf(to_char.as_ref().clone().with_aliases(["strftime"]));
        ctx.register_udf(ScalarUDF::new_from_impl(PgToChar {
            inner: to_char.as_ref().clone(),
        }));
    }
    if let Ok(inner) = ctx.udf("date_part") {
        let aliases = inner.aliases().to_vec();
        ctx.register_udf(ScalarUDF::new_from_impl(IsoDatePart {
            inner: inner.as_ref().clone(),
            aliases,
        }));
    }
    if let Ok(f) = ctx.udf("to_timestamp") {
        ctx.register_udf(f.as_ref().clone().with_aliases(["strptime"]));
    }
    if let Ok(f) = ctx.udf("regexp_like") {
        ctx.register_udf(f.as_ref().clone().with_aliases(["regexp_matches"]));
    }
    let median = datafusion::functions_aggregate::median::median_udaf();
    ctx.register_udaf(AggregateUDF::new_from_impl(FloatMedian {
        inner: median.as_ref().clone(),
        signature: Signature::user_defined(Volatility::Immutable),
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

/// `to_char` that also reads PostgreSQL's patterns (`'YYYY-MM-DD HH24:MI'`, `'FMDay'`): a
/// format without `%` is PostgreSQL's; one with `%` goes to DataFusion's (strftime's).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgToChar {
    inner: ScalarUDF,
}

impl ScalarUDFImpl for PgToChar {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let pattern = match args.args.get(1) {
            Some(ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(f)) | ScalarValue::Utf8View(Some(f)),
            )) if !f.contains('%') => f.clone(),
            _ => return self.inner.invoke_with_args(args),
        };
        let values = args.args[0].to_array(args.number_rows)?;
        let micros = datafusion::arrow::compute::cast(&values, &MICROS)?;
        let micros = micros.as_primitive::<TimestampMicrosecondType>();
        let out: datafusion::arrow::array::StringArray = micros
            .iter()
            .map(|v| {
                v.and_then(DateTime::from_timestamp_micros)
                    .map(|t| pg_format(&t.naive_utc(), &pattern))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// A timestamp formatted with PostgreSQL's `to_char` patterns: `YYYY`, `MM`, `DD`, `HH24`,
/// `MI`, `SS`, `Month`/`Mon`/`Day`/`Dy` (in the case written; padded to 9 unless `FM`), `WW`
/// (week of the year from January 1st), `IW`, `ID`, `D`, `DDD`, `Q`, `AM`/`PM`, `"text"`.
fn pg_format(t: &NaiveDateTime, fmt: &str) -> String {
    use chrono::Timelike;
    let mut out = String::new();
    let mut rest = fmt;
    let mut fill = false;
    let cased = |word: &str, pat: &str| -> String {
        if pat.chars().all(|c| c.is_ascii_uppercase()) {
            word.to_uppercase()
        } else if pat.chars().skip(1).all(|c| c.is_ascii_lowercase()) {
            word.to_string()
        } else {
            word.to_lowercase()
        }
    };
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("FM") {
            fill = true;
            rest = r;
            continue;
        }
        if c == '"' {
            let end = rest[1..].find('"').map_or(rest.len(), |i| i + 1);
            out.push_str(&rest[1..end]);
            rest = rest.get(end + 1..).unwrap_or("");
            continue;
        }
        let upper = rest.to_ascii_uppercase();
        let token = [
            "MONTH", "MON", "DAY", "DY", "HH24", "HH12", "YYYY", "DDD", "HH", "MI", "MS", "MM",
            "DD", "SS", "US", "YY", "WW", "IW", "ID", "AM", "PM", "Q", "D",
        ]
        .into_iter()
        .find(|p| upper.starts_with(p));
        let Some(token) = token else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        let written = &rest[..token.len()];
        let pad = |s: String| if fill { s } else { format!("{s:<9}") };
        let piece = match token {
            "MONTH" => pad(cased(&t.format("%B").to_string(), written)),
            "MON" => cased(&t.format("%b").to_string(), written),
            "DAY" => pad(cased(&t.format("%A").to_string(), written)),
            "DY" => cased(&t.format("%a").to_string(), written),
            "HH24" => format!("{:02}", t.hour()),
            "HH12" | "HH" => t.format("%I").to_string(),
            "YYYY" => format!("{:04}", t.year()),
            "YY" => format!("{:02}", t.year() % 100),
            "DDD" => format!("{:03}", t.ordinal()),
            "MI" => format!("{:02}", t.minute()),
            "MS" => format!("{:03}", t.nanosecond() / 1_000_000),
            "US" => format!("{:06}", t.nanosecond() / 1_000),
            "MM" => format!("{:02}", t.month()),
            "DD" => format!("{:02}", t.day()),
            "SS" => format!("{:02}", t.second()),
            "WW" => format!("{:02}", t.ordinal0() / 7 + 1),
            "IW" => format!("{:02}", t.iso_week().week()),
            "ID" => t.weekday().number_from_monday().to_string(),
            "D" => t.weekday().number_from_sunday().to_string(),
            "Q" => (t.month0() / 3 + 1).to_string(),
            _ => t.format("%p").to_string(),
        };
        out.push_str(&piece);
        rest = &rest[token.len()..];
    }
    out
}

/// `date_part` (and `extract`) with PostgreSQL's `isodow`: Monday 1 to Sunday 7 (DataFusion's
/// counts from 0).
#[derive(Debug, PartialEq, Eq, Hash)]
struct IsoDatePart {
    inner: ScalarUDF,
    aliases: Vec<String>,
}

impl ScalarUDFImpl for IsoDatePart {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
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

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let iso = matches!(
            args.args.first(),
            Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(p)) | ScalarValue::Utf8View(Some(p))))
                if p.eq_ignore_ascii_case("isodow")
        );
        let rows = args.number_rows;
        let out = self.inner.invoke_with_args(args)?;
        if !iso {
            return Ok(out);
        }
        let values = out.to_array(rows)?;
        let one = ScalarValue::Int32(Some(1)).cast_to(values.data_type())?;
        Ok(ColumnarValue::Array(
            datafusion::arrow::compute::kernels::numeric::add(&values, &one.to_scalar()?)?,
        ))
    }
}

#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Calendar {
    /// `dateadd(part, n, ts)` (Snowflake, Redshift): a timestamp.
    DateAdd,
    /// `date_add(d, n)` (Spark: days, a date) or `date_add(ts, interval)` (DuckDB).
    DateAddValue,
    /// `last_day(d)`: the month's last date.
    LastDay,
    /// `epoch(ts)`: seconds since 1970 as a double (DuckDB).
    Epoch,
    /// `regexp_extract(s, pattern[, group])`: the first match or '' (DuckDB).
    RegexpExtract,
}

/// Small functions of other warehouses, one implementation each (see [`Calendar`]).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Extra {
    name: &'static str,
    imp: Calendar,
    signature: Signature,
}

const DAY_MICROS: i64 = 86_400_000_000;

impl ScalarUDFImpl for Extra {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let wrong = || {
            DataFusionError::Plan(format!(
                "{}: unexpected arguments ({})",
                self.name,
                args.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        Ok(match (self.imp, args) {
            (Calendar::DateAdd, [_, _, _]) => vec![DataType::Utf8, DataType::Int64, MICROS],
            (Calendar::DateAddValue, [_, DataType::Interval(_)]) => vec![
                MICROS,
                DataType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano),
            ],
            (Calendar::DateAddValue, [_, _]) => vec![DataType::Date32, DataType::Int64],
            (Calendar::LastDay, [_]) => vec![DataType::Date32],
            (Calendar::Epoch, [_]) => vec![MICROS],
            (Calendar::RegexpExtract, [_, _]) => vec![DataType::Utf8, DataType::Utf8],
            (Calendar::RegexpExtract, [_, _, _]) => {
                vec![DataType::Utf8, DataType::Utf8, DataType::Int64]
            }
            _ => return Err(wrong()),
        })
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(match (self.imp, args.get(1)) {
            (Calendar::DateAdd, _) => MICROS,
            (Calendar::DateAddValue, Some(DataType::Interval(_))) => MICROS,
            (Calendar::DateAddValue | Calendar::LastDay, _) => DataType::Date32,
            (Calendar::Epoch, _) => DataType::Float64,
            (Calendar::RegexpExtract, _) => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{
            Date32Array, Float64Array, StringArray, TimestampMicrosecondArray,
        };
        use datafusion::arrow::datatypes::{Date32Type, Int64Type};
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let n = arrays[0].len();
        let out: ArrayRef = match self.imp {
            Calendar::DateAdd => {
                let (parts, amounts) = (
                    arrays[0].as_string::<i32>(),
                    arrays[1].as_primitive::<Int64Type>(),
                );
                let ts = arrays[2].as_primitive::<TimestampMicrosecondType>();
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    if parts.is_null(i) || amounts.is_null(i) || ts.is_null(i) {
                        out.push(None);
                        continue;
                    }
                    out.push(Some(add_part(
                        parts.value(i),
                        amounts.value(i),
                        ts.value(i),
                    )?));
                }
                Arc::new(TimestampMicrosecondArray::from(out))
            }
            Calendar::DateAddValue if matches!(arrays[1].data_type(), DataType::Interval(_)) => {
                datafusion::arrow::compute::kernels::numeric::add(&arrays[0], &arrays[1])?
            }
            Calendar::DateAddValue => {
                let (d, k) = (
                    arrays[0].as_primitive::<Date32Type>(),
                    arrays[1].as_primitive::<Int64Type>(),
                );
                Arc::new(
                    (0..n)
                        .map(|i| {
                            (d.is_valid(i) && k.is_valid(i)).then(|| d.value(i) + k.value(i) as i32)
                        })
                        .collect::<Date32Array>(),
                )
            }
            Calendar::LastDay => {
                let d = arrays[0].as_primitive::<Date32Type>();
                Arc::new(
                    (0..n)
                        .map(|i| {
                            d.is_valid(i).then(|| {
                                let us = i64::from(d.value(i)) * DAY_MICROS;
                                let next = add_part("month", 1, us).unwrap_or(us);
                                let first = DateTime::from_timestamp_micros(next)
                                    .map(|t| t.date_naive().with_day(1).unwrap_or_default())
                                    .unwrap_or_default();
                                (first
                                    .and_hms_opt(0, 0, 0)
                                    .unwrap_or_default()
                                    .and_utc()
                                    .timestamp()
                                    / 86_400
                                    - 1) as i32
                            })
                        })
                        .collect::<Date32Array>(),
                )
            }
            Calendar::Epoch => {
                let ts = arrays[0].as_primitive::<TimestampMicrosecondType>();
                Arc::new(
                    (0..n)
                        .map(|i| ts.is_valid(i).then(|| ts.value(i) as f64 / 1e6))
                        .collect::<Float64Array>(),
                )
            }
            Calendar::RegexpExtract => {
                let (text, pattern) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
                let group = arrays.get(2).map(|g| g.as_primitive::<Int64Type>());
                let mut compiled: Option<(String, regex::Regex)> = None;
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    if text.is_null(i) || pattern.is_null(i) {
                        out.push(None);
                        continue;
                    }
                    let p = pattern.value(i);
                    if compiled.as_ref().is_none_or(|(q, _)| q != p) {
                        let re = regex::Regex::new(p).map_err(|e| {
                            DataFusionError::Execution(format!("regexp_extract: {e}"))
                        })?;
                        compiled = Some((p.to_string(), re));
                    }
                    let re = &compiled.as_ref().expect("compiled above").1;
                    let g = group.map_or(0, |g| g.value(i)) as usize;
                    out.push(Some(
                        re.captures(text.value(i))
                            .and_then(|c| c.get(g))
                            .map_or("", |m| m.as_str())
                            .to_string(),
                    ));
                }
                Arc::new(StringArray::from(out))
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// `ts` (microseconds) plus `n` of `part`; months and years on the calendar.
fn add_part(part: &str, n: i64, ts: i64) -> Result<i64> {
    let months = |k: i64| -> Result<i64> {
        let at = DateTime::from_timestamp_micros(ts).unwrap_or_default();
        let moved = if k >= 0 {
            at.checked_add_months(chrono::Months::new(k as u32))
        } else {
            at.checked_sub_months(chrono::Months::new((-k) as u32))
        };
        Ok(moved.unwrap_or(at).timestamp_micros())
    };
    let micros = |unit: i64| Ok(ts + n * unit);
    match part.trim().to_ascii_lowercase().as_str() {
        "year" | "years" | "y" | "yr" | "yrs" | "yy" | "yyyy" => months(12 * n),
        "quarter" | "quarters" | "q" | "qtr" | "qtrs" => months(3 * n),
        "month" | "months" | "mon" | "mons" | "mm" => months(n),
        "week" | "weeks" | "w" | "wk" | "wks" => micros(7 * DAY_MICROS),
        "day" | "days" | "d" | "dd" => micros(DAY_MICROS),
        "hour" | "hours" | "h" | "hr" | "hrs" | "hh" => micros(3_600_000_000),
        "minute" | "minutes" | "m" | "min" | "mins" | "mi" => micros(60_000_000),
        "second" | "seconds" | "s" | "sec" | "secs" | "ss" => micros(1_000_000),
        "millisecond" | "milliseconds" | "ms" => micros(1_000),
        "microsecond" | "microseconds" | "us" => micros(1),
        other => Err(DataFusionError::Execution(format!(
            "dateadd: unknown date part '{other}' (use year, quarter, month, week, day, hour, minute, second, millisecond or microsecond)"
        ))),
    }
}

/// DataFusion's `median`, taking integers as doubles: the median of 1 and 2 is 1.5, as in
/// DuckDB (DataFusion's own answers 1).
#[derive(Debug, PartialEq, Eq, Hash)]
struct FloatMedian {
    inner: AggregateUDF,
    signature: Signature,
}

impl AggregateUDFImpl for FloatMedian {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "median"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        Ok(args
            .iter()
            .map(|t| {
                if t.is_integer() || t.is_null() {
                    DataType::Float64
                } else {
                    t.clone()
                }
            })
            .collect())
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.accumulator(args)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn datafusion::logical_expr::GroupsAccumulator>> {
        self.inner.create_groups_accumulator(args)
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

/// Its argument, typed as nullable: a table column written from a query whose column never
/// holds NULL (a literal) still takes NULLs later, as every warehouse's table does. Volatile,
/// so that the optimizer does not fold it over a literal (and lose the nullability again).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Nullable {
    signature: Signature,
}

/// The function of [`Nullable`], not callable from SQL.
pub(super) fn nullable() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(Nullable {
        signature: Signature::any(1, Volatility::Volatile),
    }))
}

impl ScalarUDFImpl for Nullable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "rsdbt_nullable"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<FieldRef> {
        Ok(Arc::new(
            args.arg_fields[0].as_ref().clone().with_nullable(true),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(args.args[0].clone())
    }
}
