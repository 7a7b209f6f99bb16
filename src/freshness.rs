//! Source freshness (`rsdbt source freshness`), as dbt computes it: a source table with a
//! `freshness:` block is asked when it was last loaded — the newest `loaded_at_field` (through
//! the block's `filter`), or, without a field, when the warehouse last changed the table — and
//! the age is held against `warn_after` and `error_after`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Value as Json, json};

use crate::diag::Diagnostic;
use crate::manifest::Source;

/// `{count: 12, period: hour}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub count: i64,
    pub period: String,
}

impl Threshold {
    pub fn seconds(&self) -> i64 {
        let unit = match self.period.as_str() {
            "minute" => 60,
            "hour" => 3600,
            _ => 86400,
        };
        self.count * unit
    }
}

/// A table's merged `freshness:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    pub warn_after: Option<Threshold>,
    pub error_after: Option<Threshold>,
    pub filter: Option<String>,
}

/// The outcome dbt writes to `sources.json`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Status {
    Pass,
    Warn,
    Error,
    RuntimeError,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Error => "error",
            Status::RuntimeError => "runtime error",
        }
    }
}

impl Criteria {
    /// The table's criteria: `config.freshness` (dbt 1.10) or the `freshness:` property, the
    /// source's block merged under the table's. `None` when neither threshold is set (or the
    /// table says `freshness: null`): dbt does not check such a table.
    pub fn of(s: &Source) -> Result<Option<Criteria>, Diagnostic> {
        let block = match s.def.config.get("freshness") {
            Some(b) => b,
            None => &s.def.freshness,
        };
        if block.is_null() {
            return Ok(None);
        }
        let threshold = |key: &str| -> Result<Option<Threshold>, Diagnostic> {
            let Some(t) = block.get(key).filter(|t| !t.is_null()) else {
                return Ok(None);
            };
            let count = t.get("count").filter(|c| !c.is_null());
            let period = t.get("period").and_then(Json::as_str);
            let bad = || {
                Diagnostic::error(
                    "properties",
                    format!(
                        "source {}.{}: freshness {key} must be {{count: <positive integer>, period: minute | hour | day}}, not {t}",
                        s.def.source_name, s.def.name
                    ),
                )
                .at(s.def.location())
            };
            match (count, period) {
                (None, None) => Ok(None),
                (Some(c), Some(p)) if matches!(p, "minute" | "hour" | "day") => {
                    let count = c
                        .as_i64()
                        .or_else(|| c.as_str().and_then(|c| c.trim().parse().ok()))
                        .ok_or_else(bad)?;
                    Ok(Some(Threshold {
                        count,
                        period: p.to_string(),
                    }))
                }
                _ => Err(bad()),
            }
        };
        let criteria = Criteria {
            warn_after: threshold("warn_after")?,
            error_after: threshold("error_after")?,
            filter: block
                .get("filter")
                .and_then(Json::as_str)
                .filter(|f| !f.trim().is_empty())
                .map(str::to_string),
        };
        Ok((criteria.warn_after.is_some() || criteria.error_after.is_some()).then_some(criteria))
    }

    /// Error beats warn; a threshold is passed once the age exceeds it.
    pub fn status(&self, age_seconds: f64) -> Status {
        let over =
            |t: &Option<Threshold>| t.as_ref().is_some_and(|t| age_seconds > t.seconds() as f64);
        if over(&self.error_after) {
            Status::Error
        } else if over(&self.warn_after) {
            Status::Warn
        } else {
            Status::Pass
        }
    }

    /// As `sources.json` writes it (an unset threshold is `{count: null, period: null}`).
    pub fn to_json(&self) -> Json {
        let t = |t: &Option<Threshold>| match t {
            Some(t) => json!({"count": t.count, "period": t.period}),
            None => json!({"count": null, "period": null}),
        };
        json!({"warn_after": t(&self.warn_after), "error_after": t(&self.error_after), "filter": self.filter})
    }
}

/// The query dbt's `collect_freshness` runs, for a table with a `loaded_at_field`.
pub fn query(relation: &str, loaded_at_field: &str, filter: Option<&str>) -> String {
    let filter = filter.map(|f| format!("\nwhere {f}")).unwrap_or_default();
    format!(
        "select max({loaded_at_field}) as max_loaded_at, now() as snapshotted_at\nfrom {relation}{filter}"
    )
}

/// A timestamp as a query result gives it (ISO text with or without a zone, a date, or epoch
/// seconds); one without a zone is UTC, as dbt assumes.
pub fn timestamp(v: &Json) -> Option<DateTime<Utc>> {
    if let Some(n) = v.as_f64() {
        return DateTime::from_timestamp_micros((n * 1e6) as i64);
    }
    let s = v.as_str()?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// One table's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub unique_id: String,
    pub status: Status,
    pub max_loaded_at: Option<DateTime<Utc>>,
    pub snapshotted_at: Option<DateTime<Utc>>,
    pub age_seconds: f64,
    pub criteria: Criteria,
    /// The runtime error's message.
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
}

impl Outcome {
    /// The outcome of a measured load time.
    pub fn measured(
        unique_id: &str,
        criteria: Criteria,
        max_loaded_at: DateTime<Utc>,
        snapshotted_at: DateTime<Utc>,
        started_at: DateTime<Utc>,
    ) -> Outcome {
        let age_seconds = (snapshotted_at - max_loaded_at)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6;
        Outcome {
            unique_id: unique_id.to_string(),
            status: criteria.status(age_seconds),
            max_loaded_at: Some(max_loaded_at),
            snapshotted_at: Some(snapshotted_at),
            age_seconds,
            criteria,
            error: None,
            started_at,
            completed_at: Utc::now(),
        }
    }

    pub fn failed(
        unique_id: &str,
        criteria: Criteria,
        error: String,
        started_at: DateTime<Utc>,
    ) -> Outcome {
        Outcome {
            unique_id: unique_id.to_string(),
            status: Status::RuntimeError,
            max_loaded_at: None,
            snapshotted_at: None,
            age_seconds: 0.0,
            criteria,
            error: Some(error),
            started_at,
            completed_at: Utc::now(),
        }
    }

    pub fn execution_time(&self) -> f64 {
        (self.completed_at - self.started_at)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6
    }

    /// The entry of `sources.json` (dbt's v3 schema).
    pub fn to_json(&self) -> Json {
        let ts = |t: &DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
        if let Some(e) = &self.error {
            return json!({"unique_id": self.unique_id, "error": e, "status": self.status.as_str()});
        }
        json!({
            "unique_id": self.unique_id,
            "max_loaded_at": self.max_loaded_at.as_ref().map(ts),
            "snapshotted_at": self.snapshotted_at.as_ref().map(ts),
            "max_loaded_at_time_ago_in_s": self.age_seconds,
            "status": self.status.as_str(),
            "criteria": self.criteria.to_json(),
            "adapter_response": {},
            "timing": [
                {"name": "compile", "started_at": ts(&self.started_at), "completed_at": ts(&self.started_at)},
                {"name": "execute", "started_at": ts(&self.started_at), "completed_at": ts(&self.completed_at)},
            ],
            "thread_id": "Thread-1",
            "execution_time": self.execution_time(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_the_shapes_warehouses_return() {
        let t = |s: &str| timestamp(&json!(s)).map(|t| t.to_rfc3339());
        let want = Some("2024-03-01T10:30:00+00:00".to_string());
        assert_eq!(t("2024-03-01T10:30:00"), want);
        assert_eq!(t("2024-03-01 10:30:00"), want);
        assert_eq!(t("2024-03-01T12:30:00+02:00"), want);
        assert_eq!(t("2024-03-01 10:30:00+00"), want);
        assert_eq!(t("2024-03-01T10:30:00Z"), want);
        assert_eq!(
            t("2024-03-01"),
            Some("2024-03-01T00:00:00+00:00".to_string())
        );
        assert_eq!(timestamp(&Json::Null), None);
    }

    #[test]
    fn error_beats_warn() {
        let c = Criteria {
            warn_after: Some(Threshold {
                count: 1,
                period: "hour".into(),
            }),
            error_after: Some(Threshold {
                count: 1,
                period: "day".into(),
            }),
            filter: None,
        };
        assert_eq!(c.status(60.0), Status::Pass);
        assert_eq!(c.status(3601.0), Status::Warn);
        assert_eq!(c.status(86401.0), Status::Error);
    }
}
