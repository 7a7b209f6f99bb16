//! Python's `datetime` and `pytz` as templates see them (`modules.datetime`, `modules.pytz`,
//! `run_started_at`): `datetime`, `date` and `timedelta` values with Python's attributes,
//! methods, `str()`, comparisons and `+` / `-`.
//!
//! minijinja has no operator overloading for objects, so the compiled templates call
//! [`add`] and [`sub`] for every `+` and `-` (see `template::pythonize`); anything that is not
//! date arithmetic is computed as minijinja computes it.
//!
//! A `datetime` is naive or aware. Aware ones carry a UTC offset, fixed when they are made
//! (pytz's `localize`, `astimezone`, an ISO string with an offset, `run_started_at`), and keep
//! it through arithmetic, as pytz's do. `datetime(..., tzinfo=zone)` for a zone other than UTC
//! stays naive: pytz would attach the zone's local mean time (`-07:53` for Los Angeles), which
//! is never what a project means, and projects call `localize` instead.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};
use std::sync::{Arc, OnceLock};

use chrono::{
    Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike,
};
use minijinja::value::{DynObject, Kwargs, Object, ObjectRepr, Rest, Value, from_args};
use minijinja::{Error, ErrorKind, State};

use super::objects::no_method;

/// `modules.datetime`.
pub fn module() -> Value {
    Value::from_object(Module)
}

/// `modules.pytz`.
pub fn pytz() -> Value {
    Value::from_object(Pytz)
}

/// `run_started_at`: an aware datetime in UTC.
pub fn utc(t: chrono::DateTime<chrono::Utc>) -> Value {
    Value::from_object(DateTime {
        local: t.naive_utc(),
        tz: Some(Zone::utc()),
    })
}

fn invalid(msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// A time zone: a pytz zone (`pytz.timezone(name)`, `pytz.utc`), or a fixed offset read from
/// an ISO string. Renders as its name, as pytz's zones do.
#[derive(Debug, Clone, PartialEq)]
struct Zone {
    name: String,
    tz: Option<chrono_tz::Tz>,
    /// For a zone read from a string (no rules): its offset.
    fixed: Option<FixedOffset>,
}

impl Zone {
    fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: Some(chrono_tz::UTC),
            fixed: None,
        }
    }
    fn named(name: &str) -> Result<Zone, Error> {
        let tz: chrono_tz::Tz = name
            .parse()
            .map_err(|_| invalid(format!("pytz: unknown time zone '{name}'")))?;
        Ok(Zone {
            name: name.into(),
            tz: Some(tz),
            fixed: None,
        })
    }
    fn fixed(offset: FixedOffset) -> Zone {
        Zone {
            name: format!("UTC{offset}"),
            tz: None,
            fixed: Some(offset),
        }
    }
    fn is_utc(&self) -> bool {
        self.tz == Some(chrono_tz::UTC) || self.fixed.is_some_and(|f| f.local_minus_utc() == 0)
    }
    /// The offset at a wall-clock time in this zone (the earlier one in a DST overlap, as
    /// pytz's `localize` by default; a time in a DST gap takes the offset before it).
    fn offset_at_local(&self, local: NaiveDateTime) -> FixedOffset {
        match (self.fixed, self.tz) {
            (Some(f), _) => f,
            (None, Some(tz)) => match tz.offset_from_local_datetime(&local) {
                chrono::LocalResult::Single(o) | chrono::LocalResult::Ambiguous(o, _) => o.fix(),
                chrono::LocalResult::None => tz
                    .offset_from_utc_datetime(&(local - chrono::TimeDelta::hours(2)))
                    .fix(),
            },
            (None, None) => FixedOffset::east_opt(0).expect("zero offset"),
        }
    }
    /// Wall-clock time in this zone at a UTC instant.
    fn local_at_utc(&self, utc: NaiveDateTime) -> NaiveDateTime {
        let offset = match (self.fixed, self.tz) {
            (Some(f), _) => f,
            (None, Some(tz)) => tz.offset_from_utc_datetime(&utc).fix(),
            (None, None) => FixedOffset::east_opt(0).expect("zero offset"),
        };
        utc + offset
    }
}

impl Object for Zone {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        (key.as_str()? == "zone").then(|| Value::from(self.name.clone()))
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            // pytz: a naive datetime as wall-clock time in this zone.
            "localize" => {
                let (dt,): (Value,) = from_args(args)?;
                let dt = datetime_arg(&dt, "localize")?;
                if dt.tz.is_some() {
                    return Err(invalid(
                        "localize: not a naive datetime (tzinfo is already set)",
                    ));
                }
                Ok(dt.with_zone(Some((**self).clone())).into_value())
            }
            // pytz: the offset is fixed when a datetime is made, so there is nothing to redo.
            "normalize" => {
                let (dt,): (Value,) = from_args(args)?;
                let dt = datetime_arg(&dt, "normalize")?;
                Ok(match &dt.tz {
                    Some(_) => DateTime {
                        local: self.local_at_utc(dt.utc()),
                        tz: Some((**self).clone()),
                    }
                    .into_value(),
                    None => dt.clone().into_value(),
                })
            }
            "utcoffset" => {
                let (dt,): (Value,) = from_args(args)?;
                let dt = datetime_arg(&dt, "utcoffset")?;
                Ok(TimeDelta::seconds(self.offset_at_local(dt.local).local_minus_utc()).into())
            }
            _ => Err(no_method("tzinfo", method)),
        }
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// `modules.pytz`: `timezone(name)`, `utc`, `UTC`.
#[derive(Debug)]
struct Pytz;

impl Object for Pytz {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        matches!(key.as_str()?, "utc" | "UTC").then(|| Value::from_object(Zone::utc()))
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "timezone" => {
                let (name,): (String,) = from_args(args)?;
                Ok(Value::from_object(Zone::named(&name)?))
            }
            _ => Err(no_method("pytz", method)),
        }
    }
}

/// A `tzinfo=` / `tz` argument: a zone object, or none.
fn zone_arg(v: Option<&Value>) -> Result<Option<Zone>, Error> {
    match v {
        None => Ok(None),
        Some(v) if v.is_none() || v.is_undefined() => Ok(None),
        Some(v) => match v.downcast_object_ref::<Zone>() {
            Some(z) => Ok(Some(z.clone())),
            None => Err(invalid(format!("not a time zone: {v}"))),
        },
    }
}

fn datetime_arg<'a>(v: &'a Value, what: &str) -> Result<&'a DateTime, Error> {
    v.downcast_object_ref::<DateTime>()
        .ok_or_else(|| invalid(format!("{what}: expected a datetime, got {v}")))
}

/// A Python `datetime`: wall-clock time, and its zone when aware.
#[derive(Debug, Clone)]
pub struct DateTime {
    local: NaiveDateTime,
    tz: Option<Zone>,
}

impl DateTime {
    fn naive(local: NaiveDateTime) -> DateTime {
        DateTime { local, tz: None }
    }
    fn into_value(self) -> Value {
        Value::from_object(self)
    }
    fn offset(&self) -> Option<FixedOffset> {
        self.tz.as_ref().map(|z| z.offset_at_local(self.local))
    }
    /// The UTC instant (a naive one is taken as UTC: only compared with other naive ones).
    fn utc(&self) -> NaiveDateTime {
        self.local
            - self.offset().map_or(chrono::TimeDelta::zero(), |o| {
                chrono::TimeDelta::seconds(o.local_minus_utc().into())
            })
    }
    fn with_zone(&self, tz: Option<Zone>) -> DateTime {
        DateTime {
            local: self.local,
            tz,
        }
    }
    /// `self - other` for two datetimes: both naive or both aware, as in Python.
    fn minus(&self, other: &DateTime) -> Result<TimeDelta, Error> {
        if self.tz.is_some() != other.tz.is_some() {
            return Err(invalid(
                "can't subtract offset-naive and offset-aware datetimes",
            ));
        }
        Ok(TimeDelta(self.utc() - other.utc()))
    }
    fn plus(&self, d: chrono::TimeDelta) -> Result<DateTime, Error> {
        let local = self
            .local
            .checked_add_signed(d)
            .ok_or_else(|| invalid("date value out of range"))?;
        Ok(DateTime {
            local,
            tz: self.tz.clone(),
        })
    }
    fn iso(&self, sep: char) -> String {
        let mut s = self
            .local
            .format(&format!("%Y-%m-%d{sep}%H:%M:%S"))
            .to_string();
        let micros = self.local.nanosecond() / 1000;
        if micros != 0 {
            let _ = write!(s, ".{micros:06}");
        }
        if let Some(o) = self.offset() {
            let _ = write!(s, "{o}");
        }
        s
    }
    fn strftime(&self, fmt: &str) -> Result<String, Error> {
        let fmt = python_format(fmt);
        let mut out = String::new();
        let written = match self.offset() {
            Some(o) => write!(out, "{}", o.from_utc_datetime(&self.utc()).format(&fmt)),
            // A naive datetime has no offset to print: `%z` and `%Z` are empty, as in Python.
            None => write!(
                out,
                "{}",
                self.local
                    .format(&fmt.replace("%z", "").replace("%:z", "").replace("%Z", ""))
            ),
        };
        written.map_err(|_| invalid(format!("strftime: invalid format '{fmt}'")))?;
        Ok(out)
    }
    fn replace(&self, kwargs: &Kwargs) -> Result<DateTime, Error> {
        let d = self.local;
        let part = |name: &str, current: u32| -> Result<u32, Error> {
            Ok(kwargs.get::<Option<u32>>(name)?.unwrap_or(current))
        };
        let date = NaiveDate::from_ymd_opt(
            kwargs.get::<Option<i32>>("year")?.unwrap_or(d.year()),
            part("month", d.month())?,
            part("day", d.day())?,
        )
        .ok_or_else(|| invalid("replace: day is out of range for month"))?;
        let time = NaiveTime::from_hms_micro_opt(
            part("hour", d.hour())?,
            part("minute", d.minute())?,
            part("second", d.second())?,
            part("microsecond", d.nanosecond() / 1000)?,
        )
        .ok_or_else(|| invalid("replace: time out of range"))?;
        let tz = if kwargs.has("tzinfo") {
            zone_arg(kwargs.get::<Option<Value>>("tzinfo")?.as_ref())?
        } else {
            self.tz.clone()
        };
        kwargs.assert_all_used()?;
        Ok(DateTime {
            local: date.and_time(time),
            tz,
        })
    }
}

impl Object for DateTime {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let d = &self.local;
        Some(Value::from(match key.as_str()? {
            "year" => d.year() as i64,
            "month" => d.month() as i64,
            "day" => d.day() as i64,
            "hour" => d.hour() as i64,
            "minute" => d.minute() as i64,
            "second" => d.second() as i64,
            "microsecond" => (d.nanosecond() / 1000) as i64,
            "tzinfo" => {
                return Some(self.tz.clone().map_or(Value::from(()), Value::from_object));
            }
            _ => return None,
        }))
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "strftime" => {
                let (fmt,): (String,) = from_args(args)?;
                Ok(Value::from(self.strftime(&fmt)?))
            }
            "isoformat" => {
                let (sep,): (Option<String>,) = from_args(args)?;
                let sep = sep.and_then(|s| s.chars().next()).unwrap_or('T');
                Ok(Value::from(self.iso(sep)))
            }
            "date" => Ok(Value::from_object(Date(self.local.date()))),
            "timestamp" => Ok(Value::from(
                self.utc().and_utc().timestamp_micros() as f64 / 1e6,
            )),
            "weekday" | "isoweekday" => Ok(weekday(self.local.date(), method)),
            "replace" => {
                let (kwargs,): (Kwargs,) = from_args(args)?;
                Ok(self.replace(&kwargs)?.into_value())
            }
            "astimezone" => {
                let (tz,): (Option<Value>,) = from_args(args)?;
                let utc = match &self.tz {
                    Some(_) => self.utc(),
                    // Python takes a naive datetime as the machine's local time.
                    None => chrono::Local
                        .from_local_datetime(&self.local)
                        .earliest()
                        .map_or(self.local, |t| t.naive_utc()),
                };
                let zone = zone_arg(tz.as_ref())?.unwrap_or_else(Zone::utc);
                Ok(DateTime {
                    local: zone.local_at_utc(utc),
                    tz: Some(zone),
                }
                .into_value())
            }
            "utcoffset" => Ok(self.offset().map_or(Value::from(()), |o| {
                TimeDelta::seconds(o.local_minus_utc()).into()
            })),
            _ => Err(no_method("datetime", method)),
        }
    }
    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<Ordering> {
        let other = other.downcast_ref::<Self>()?;
        (self.tz.is_some() == other.tz.is_some()).then(|| self.utc().cmp(&other.utc()))
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Python's str(): a space between date and time, microseconds only when there are some.
        f.write_str(&self.iso(' '))
    }
}

/// A Python `date`.
#[derive(Debug, Clone)]
pub struct Date(NaiveDate);

impl Object for Date {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(Value::from(match key.as_str()? {
            "year" => self.0.year() as i64,
            "month" => self.0.month() as i64,
            "day" => self.0.day() as i64,
            _ => return None,
        }))
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            // As Python: a date formats as its midnight, naive.
            "strftime" => {
                let (fmt,): (String,) = from_args(args)?;
                let midnight = DateTime::naive(self.0.and_time(NaiveTime::MIN));
                Ok(Value::from(midnight.strftime(&fmt)?))
            }
            "isoformat" => Ok(Value::from(self.0.to_string())),
            "weekday" | "isoweekday" => Ok(weekday(self.0, method)),
            "toordinal" => Ok(Value::from(
                self.0.num_days_from_ce(), // 0001-01-01 is day 1, as in Python
            )),
            "replace" => {
                let (kwargs,): (Kwargs,) = from_args(args)?;
                let d = NaiveDate::from_ymd_opt(
                    kwargs.get::<Option<i32>>("year")?.unwrap_or(self.0.year()),
                    kwargs
                        .get::<Option<u32>>("month")?
                        .unwrap_or(self.0.month()),
                    kwargs.get::<Option<u32>>("day")?.unwrap_or(self.0.day()),
                )
                .ok_or_else(|| invalid("replace: day is out of range for month"))?;
                kwargs.assert_all_used()?;
                Ok(Value::from_object(Date(d)))
            }
            _ => Err(no_method("date", method)),
        }
    }
    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<Ordering> {
        Some(self.0.cmp(&other.downcast_ref::<Self>()?.0))
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A Python `timedelta`: whole microseconds.
#[derive(Debug, Clone, Copy)]
pub struct TimeDelta(chrono::TimeDelta);

impl TimeDelta {
    fn seconds(s: i32) -> TimeDelta {
        TimeDelta(chrono::TimeDelta::seconds(s.into()))
    }
    fn micros(&self) -> i64 {
        self.0.num_microseconds().unwrap_or(i64::MAX)
    }
    /// Python's normalized parts: days (any sign), then 0 ≤ seconds < 86,400 and
    /// 0 ≤ microseconds < 1,000,000.
    fn parts(&self) -> (i64, i64, i64) {
        const DAY: i64 = 86_400_000_000;
        let us = self.micros();
        let days = us.div_euclid(DAY);
        let rest = us.rem_euclid(DAY);
        (days, rest / 1_000_000, rest % 1_000_000)
    }
}

impl From<TimeDelta> for Value {
    fn from(d: TimeDelta) -> Value {
        Value::from_object(d)
    }
}

impl Object for TimeDelta {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let (days, seconds, micros) = self.parts();
        Some(Value::from(match key.as_str()? {
            "days" => days,
            "seconds" => seconds,
            "microseconds" => micros,
            _ => return None,
        }))
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "total_seconds" => Ok(Value::from(self.micros() as f64 / 1e6)),
            _ => Err(no_method("timedelta", method)),
        }
    }
    fn custom_cmp(self: &Arc<Self>, other: &DynObject) -> Option<Ordering> {
        Some(self.0.cmp(&other.downcast_ref::<Self>()?.0))
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Python's str(): `10 days, 0:00:00`, `-1 day, 23:59:59`, `0:00:01.500000`.
        let (days, seconds, micros) = self.parts();
        if days != 0 {
            let plural = if days.abs() == 1 { "" } else { "s" };
            write!(f, "{days} day{plural}, ")?;
        }
        write!(
            f,
            "{}:{:02}:{:02}",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )?;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        Ok(())
    }
}

/// Python's `weekday()` (Monday 0) or `isoweekday()` (Monday 1).
fn weekday(d: NaiveDate, method: &str) -> Value {
    let from_monday = d.weekday().num_days_from_monday();
    Value::from(from_monday + u32::from(method == "isoweekday"))
}

/// Python's `strftime` directives in chrono's spelling: `%f` is microseconds (six digits).
fn python_format(fmt: &str) -> String {
    fmt.replace("%f", "%6f")
}

/// `modules.datetime`: the `datetime`, `date`, `timedelta` and `timezone` classes.
#[derive(Debug)]
struct Module;

impl Object for Module {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let class = match key.as_str()? {
            "datetime" => Class::DateTime,
            "date" => Class::Date,
            "timedelta" => Class::TimeDelta,
            "timezone" => Class::TimeZone,
            _ => return None,
        };
        Some(Value::from_object(class))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    DateTime,
    Date,
    TimeDelta,
    TimeZone,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::DateTime => "datetime",
            Class::Date => "date",
            Class::TimeDelta => "timedelta",
            Class::TimeZone => "timezone",
        }
    }
}

/// Python's signature: parameters by position or by name; `required` of them must be given.
fn numbers<const N: usize>(
    args: &[Value],
    names: [&str; N],
    required: usize,
    what: &str,
) -> Result<([f64; N], Kwargs), Error> {
    let (pos, kwargs): (Rest<Value>, Kwargs) = from_args(args)?;
    if pos.len() > N {
        return Err(invalid(format!("{what}: too many arguments")));
    }
    let mut out = [0.0; N];
    for (i, name) in names.iter().enumerate() {
        let v = match (pos.get(i), kwargs.get::<Option<Value>>(name)?) {
            (Some(v), _) => v.clone(),
            (None, Some(v)) => v,
            (None, None) if i < required => {
                return Err(Error::new(
                    ErrorKind::MissingArgument,
                    format!("{what}() needs `{name}`"),
                ));
            }
            (None, None) => continue,
        };
        out[i] = f64::try_from(v.clone())
            .map_err(|_| invalid(format!("{what}: `{name}` must be a number, got {v}")))?;
    }
    Ok((out, kwargs))
}

fn whole(x: f64, what: &str) -> Result<u32, Error> {
    if x.fract() != 0.0 || !(0.0..=u32::MAX as f64).contains(&x) {
        return Err(invalid(format!("{what}: expected a whole number, got {x}")));
    }
    Ok(x as u32)
}

impl Object for Class {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match (**self, key.as_str()?) {
            (Class::TimeZone, "utc") => Some(Value::from_object(Zone::utc())),
            _ => None,
        }
    }
    fn call(self: &Arc<Self>, _state: &mut State, args: &[Value]) -> Result<Value, Error> {
        match **self {
            Class::DateTime | Class::Date => {
                const NAMES: [&str; 7] = [
                    "year",
                    "month",
                    "day",
                    "hour",
                    "minute",
                    "second",
                    "microsecond",
                ];
                let what = self.name();
                let (p, kwargs) = numbers(args, NAMES, 3, what)?;
                let tz = zone_arg(kwargs.get::<Option<Value>>("tzinfo")?.as_ref())?;
                kwargs.assert_all_used()?;
                let date =
                    NaiveDate::from_ymd_opt(p[0] as i32, whole(p[1], what)?, whole(p[2], what)?)
                        .ok_or_else(|| invalid(format!("{what}: day is out of range for month")))?;
                if **self == Class::Date {
                    return Ok(Value::from_object(Date(date)));
                }
                let time = NaiveTime::from_hms_micro_opt(
                    whole(p[3], what)?,
                    whole(p[4], what)?,
                    whole(p[5], what)?,
                    whole(p[6], what)?,
                )
                .ok_or_else(|| invalid("datetime: time out of range"))?;
                // Only UTC is attached (see the module header).
                let tz = tz.filter(Zone::is_utc);
                Ok(DateTime {
                    local: date.and_time(time),
                    tz,
                }
                .into_value())
            }
            Class::TimeDelta => {
                const NAMES: [&str; 7] = [
                    "days",
                    "seconds",
                    "microseconds",
                    "milliseconds",
                    "minutes",
                    "hours",
                    "weeks",
                ];
                const MICROS: [f64; 7] = [86_400e6, 1e6, 1.0, 1e3, 60e6, 3_600e6, 604_800e6];
                let (p, kwargs) = numbers(args, NAMES, 0, "timedelta")?;
                kwargs.assert_all_used()?;
                let us: f64 = p.iter().zip(MICROS).map(|(v, m)| v * m).sum();
                if us.abs() > 1e17 {
                    return Err(invalid("timedelta: out of range"));
                }
                Ok(TimeDelta(chrono::TimeDelta::microseconds(us.round() as i64)).into())
            }
            Class::TimeZone => Err(invalid(
                "datetime.timezone(offset) is not supported: use modules.pytz.timezone(name)",
            )),
        }
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let date = **self == Class::Date;
        let value = match (**self, method) {
            (Class::DateTime | Class::Date, "today") => {
                let now = chrono::Local::now().naive_local();
                if date {
                    Value::from_object(Date(now.date()))
                } else {
                    DateTime::naive(now).into_value()
                }
            }
            (Class::DateTime, "now") => {
                let (tz,): (Option<Value>,) = from_args(args)?;
                match zone_arg(tz.as_ref())? {
                    Some(zone) => DateTime {
                        local: zone.local_at_utc(chrono::Utc::now().naive_utc()),
                        tz: Some(zone),
                    }
                    .into_value(),
                    None => DateTime::naive(chrono::Local::now().naive_local()).into_value(),
                }
            }
            (Class::DateTime, "utcnow") => {
                DateTime::naive(chrono::Utc::now().naive_utc()).into_value()
            }
            (Class::DateTime, "strptime") => {
                let (s, fmt): (String, String) = from_args(args)?;
                strptime(&s, &fmt)?.into_value()
            }
            (Class::DateTime | Class::Date, "fromisoformat") => {
                let (s,): (String,) = from_args(args)?;
                let dt = fromisoformat(&s)
                    .ok_or_else(|| invalid(format!("Invalid isoformat string: '{s}'")))?;
                if date {
                    Value::from_object(Date(dt.local.date()))
                } else {
                    dt.into_value()
                }
            }
            (Class::DateTime, "combine") => {
                let (d, t): (Value, Value) = from_args(args)?;
                let d = d
                    .downcast_object_ref::<Date>()
                    .ok_or_else(|| invalid("combine: expected a date"))?;
                let t = t
                    .downcast_object_ref::<DateTime>()
                    .map_or(NaiveTime::MIN, |t| t.local.time());
                DateTime::naive(d.0.and_time(t)).into_value()
            }
            _ => return Err(no_method(self.name(), method)),
        };
        Ok(value)
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<class 'datetime.{}'>", self.name())
    }
}

fn strptime(s: &str, fmt: &str) -> Result<DateTime, Error> {
    let fmt = python_format(fmt).replace("%6f", "%f");
    let err = |e: chrono::ParseError| {
        invalid(format!(
            "time data '{s}' does not match format '{fmt}' ({e})"
        ))
    };
    if fmt.contains("%z") {
        let t = chrono::DateTime::parse_from_str(s, &fmt).map_err(err)?;
        return Ok(DateTime {
            local: t.naive_local(),
            tz: Some(Zone::fixed(*t.offset())),
        });
    }
    match NaiveDateTime::parse_from_str(s, &fmt) {
        Ok(t) => Ok(DateTime::naive(t)),
        // A format without a time: midnight, as in Python.
        Err(e) if e.kind() == chrono::format::ParseErrorKind::NotEnough => {
            let d = NaiveDate::parse_from_str(s, &fmt).map_err(err)?;
            Ok(DateTime::naive(d.and_time(NaiveTime::MIN)))
        }
        Err(e) => Err(err(e)),
    }
}

/// Python's `fromisoformat`: a date, or a date and time (`T` or a space between them), with an
/// optional offset (`+05:30`, `Z`).
fn fromisoformat(s: &str) -> Option<DateTime> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(DateTime::naive(d.and_time(NaiveTime::MIN)));
    }
    let s = s.replacen(' ', "T", 1);
    let s = s
        .strip_suffix('Z')
        .map_or(s.clone(), |t| format!("{t}+00:00"));
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%dT%H%:z",
    ] {
        if let Ok(t) = chrono::DateTime::parse_from_str(&s, fmt) {
            return Some(DateTime {
                local: t.naive_local(),
                tz: Some(Zone::fixed(*t.offset())),
            });
        }
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(&s, fmt).ok())
        .map(DateTime::naive)
}

/// `a + b` where one side is a datetime, date or timedelta; `None` when neither is.
fn date_add(a: &Value, b: &Value) -> Option<Result<Value, Error>> {
    let delta = |v: &Value| v.downcast_object_ref::<TimeDelta>().copied();
    let (other, d) = match (delta(a), delta(b)) {
        (Some(x), Some(y)) => return Some(Ok(TimeDelta(x.0 + y.0).into())),
        (_, Some(d)) => (a, d),
        (Some(d), _) => (b, d),
        (None, None) => return None,
    };
    if let Some(dt) = other.downcast_object_ref::<DateTime>() {
        return Some(dt.plus(d.0).map(DateTime::into_value));
    }
    if let Some(date) = other.downcast_object_ref::<Date>() {
        // A date moves by whole days only (the timedelta's `days`), as in Python.
        let days = d.parts().0;
        return Some(
            date.0
                .checked_add_signed(chrono::TimeDelta::days(days))
                .map(|d| Value::from_object(Date(d)))
                .ok_or_else(|| invalid("date value out of range")),
        );
    }
    None
}

/// `a - b` where the left side is a datetime, date or timedelta; `None` otherwise.
fn date_sub(a: &Value, b: &Value) -> Option<Result<Value, Error>> {
    let bd = b.downcast_object_ref::<TimeDelta>();
    if let Some(d) = bd {
        let negated = Value::from(TimeDelta(-d.0));
        if a.downcast_object_ref::<TimeDelta>().is_some()
            || a.downcast_object_ref::<DateTime>().is_some()
            || a.downcast_object_ref::<Date>().is_some()
        {
            return date_add(a, &negated);
        }
        return None;
    }
    if let (Some(x), Some(y)) = (
        a.downcast_object_ref::<DateTime>(),
        b.downcast_object_ref::<DateTime>(),
    ) {
        return Some(x.minus(y).map(Value::from));
    }
    if let (Some(x), Some(y)) = (
        a.downcast_object_ref::<Date>(),
        b.downcast_object_ref::<Date>(),
    ) {
        return Some(Ok(TimeDelta(x.0 - y.0).into()));
    }
    None
}

/// `a + b` in a template.
pub fn add(a: &Value, b: &Value) -> Result<Value, Error> {
    if let (Some(x), Some(y)) = (int(a), int(b))
        && let Some(v) = x.checked_add(y)
    {
        return Ok(Value::from(v));
    }
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        return Ok(Value::from(format!("{x}{y}")));
    }
    date_add(a, b).unwrap_or_else(|| generic(Op::Add, a, b))
}

/// `a - b` in a template.
pub fn sub(a: &Value, b: &Value) -> Result<Value, Error> {
    if let (Some(x), Some(y)) = (int(a), int(b))
        && let Some(v) = x.checked_sub(y)
    {
        return Ok(Value::from(v));
    }
    date_sub(a, b).unwrap_or_else(|| generic(Op::Sub, a, b))
}

fn int(v: &Value) -> Option<i64> {
    if v.is_integer() { v.as_i64() } else { None }
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Sub,
}

/// `a + b` / `a - b` computed by minijinja itself (floats, lists, tuples, errors...), through
/// an expression compiled once in an environment of its own. Its error is re-made without
/// the expression's position, so the calling template's file and line are reported.
fn generic(op: Op, a: &Value, b: &Value) -> Result<Value, Error> {
    type Exprs = [minijinja::Expression<'static, 'static>; 2];
    static EXPRS: OnceLock<Exprs> = OnceLock::new();
    let exprs = EXPRS.get_or_init(|| {
        let env: &'static minijinja::Environment<'static> =
            Box::leak(Box::new(minijinja::Environment::new()));
        [
            env.compile_expression("a + b").expect("a valid expression"),
            env.compile_expression("a - b").expect("a valid expression"),
        ]
    });
    let expr = &exprs[op as usize];
    expr.eval(minijinja::context! { a => a.clone(), b => b.clone() })
        .map_err(|e| Error::new(e.kind(), e.detail().map(str::to_string).unwrap_or_default()))
}
