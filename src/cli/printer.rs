//! The only place that prints. Text lines in dbt's shape (`HH:MM:SS  1 of 5 OK created ...`),
//! or one JSON object per line with `--log-format json`. Colors honour NO_COLOR.

use std::io::Write;
use std::sync::OnceLock;

use serde_json::json;

use crate::diag::Diagnostics;
use crate::exec::{NodeResult, RunResults, Status};
use crate::manifest::{Node, ResourceType};

static GLOBAL: OnceLock<Printer> = OnceLock::new();

#[derive(Debug, Clone)]
pub struct Printer {
    pub json: bool,
    pub color: bool,
    pub invocation_id: String,
    /// Events below this level are not printed (`--quiet`, `--log-level`).
    pub min_level: super::args::LogLevel,
    /// `print()` output is shown (`--no-print` hides it).
    pub show_print: bool,
}

/// A finished node, for its result line.
pub struct NodeLine<'a> {
    pub index: usize,
    pub total: usize,
    pub node: &'a Node,
    pub result: &'a NodeResult,
}

const WIDTH: usize = 80;

impl Printer {
    pub fn new(json: bool, no_color: bool) -> Self {
        let color = !json
            && !no_color
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && is_terminal();
        Self {
            json,
            color,
            invocation_id: String::new(),
            min_level: super::args::LogLevel::Info,
            show_print: true,
        }
    }

    /// A line `log()` or `print()` wrote: `print()`'s bypass `--quiet`, as in dbt.
    pub fn logged(&self, line: &crate::jinja::Logged) {
        if !line.printed {
            self.info(&line.text);
        } else if self.show_print {
            if self.json {
                self.write_event("info", "PrintEvent", &line.text, json!({}));
            } else {
                self.raw(&line.text);
            }
        }
    }

    /// Makes this printer the one used by code that has no handle (warnings during parse).
    pub fn install(&self) {
        let _ = GLOBAL.set(self.clone());
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    /// One informational line.
    pub fn info(&self, msg: &str) {
        self.event("info", "Note", msg, json!({}));
    }

    fn event(&self, level: &str, name: &str, msg: &str, data: serde_json::Value) {
        use super::args::LogLevel;
        let rank = match level {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            _ => LogLevel::Error,
        };
        if rank >= self.min_level && self.min_level != LogLevel::None {
            self.write_event(level, name, msg, data);
        }
    }

    fn write_event(&self, level: &str, name: &str, msg: &str, data: serde_json::Value) {
        let msg = &*crate::secrets::scrub(msg);
        let now = chrono::Utc::now();
        let mut out = std::io::stdout().lock();
        if self.json {
            let line = json!({
                "info": {"name": name, "level": level, "msg": msg, "ts": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), "invocation_id": self.invocation_id},
                "data": data,
            });
            let _ = writeln!(out, "{}", crate::secrets::scrub(&line.to_string()));
        } else {
            let ts = chrono::Local::now().format("%H:%M:%S");
            for l in msg.lines() {
                let _ = writeln!(out, "{ts}  {l}");
            }
            if msg.is_empty() {
                let _ = writeln!(out, "{ts}");
            }
        }
    }

    /// Plain output (ls, show, compile --inline): never timestamped.
    pub fn raw(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", crate::secrets::scrub(text));
    }

    /// Diagnostics go to stderr.
    pub fn diagnostics(&self, d: &Diagnostics) {
        if self.json {
            for diag in &d.0 {
                let loc = diag
                    .location
                    .as_ref()
                    .map(|l| json!({"path": l.path, "line": l.line()}));
                let line = json!({
                    "info": {"name": "Diagnostic", "level": if diag.severity == crate::diag::Severity::Error { "error" } else { "warn" }, "msg": diag.message, "invocation_id": self.invocation_id},
                    "data": {"code": diag.code, "location": loc, "hint": diag.hint},
                });
                eprintln!("{}", crate::secrets::scrub(&line.to_string()));
            }
        } else {
            eprintln!("{}", crate::secrets::scrub(&d.render(self.color)));
        }
    }

    fn describe(node: &Node) -> String {
        let rel = format!("{}.{}", node.relation.schema, node.relation.identifier);
        match node.resource_type {
            ResourceType::Seed => format!("seed file {rel}"),
            ResourceType::Snapshot => format!("snapshot {rel}"),
            ResourceType::Test => format!("test {}", node.name),
            ResourceType::UnitTest => format!("unit_test {}", display_name(node)),
            _ => format!("sql {} model {rel}", node.materialized()),
        }
    }

    fn dots(left: &str, right: &str) -> String {
        let visible = |s: &str| strip_ansi(s).chars().count();
        let n = WIDTH
            .saturating_sub(visible(left) + visible(right) + 2)
            .max(1);
        format!("{left} {} {right}", ".".repeat(n))
    }

    /// The opening lines of a command that runs nodes: the version, then the adapter (dbt's
    /// `MainReportVersion` and `AdapterRegistered` events).
    pub fn running(&self, adapter_type: &str) {
        let v = env!("CARGO_PKG_VERSION");
        self.event(
            "info",
            "MainReportVersion",
            &format!("Running with rsdbt={v}"),
            json!({"version": format!("={v}"), "dbt_compat_version": crate::artifacts::DBT_COMPAT_VERSION, "log_version": 3}),
        );
        self.event(
            "info",
            "AdapterRegistered",
            &format!("Registered adapter: {adapter_type}={v}"),
            json!({"adapter_name": adapter_type, "adapter_version": format!("={v}")}),
        );
    }

    /// dbt's `node_info` of a log event (what orchestrators such as astronomer-cosmos read).
    fn node_info(
        node: &Node,
        status: &str,
        started: Option<chrono::DateTime<chrono::Utc>>,
        finished: Option<chrono::DateTime<chrono::Utc>>,
    ) -> serde_json::Value {
        let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false))
                .unwrap_or_default()
        };
        json!({
            "node_path": node.path, "node_name": node.name, "unique_id": node.unique_id,
            "resource_type": node.resource_type.as_str(), "materialized": node.materialized(),
            "node_status": status, "node_started_at": ts(started), "node_finished_at": ts(finished),
            "meta": node.config.get("meta").cloned().unwrap_or_else(|| json!({})),
            "node_relation": {
                "database": node.relation.database, "schema": node.relation.schema,
                "alias": node.relation.identifier, "relation_name": node.relation.render(),
            },
        })
    }

    pub fn node_start(&self, index: usize, total: usize, node: &Node) {
        let left = format!("{index} of {total} START {}", Self::describe(node));
        let info = Self::node_info(node, "started", Some(chrono::Utc::now()), None);
        let data = json!({"node_info": info, "index": index, "total": total});
        self.event("info", "NodeStart", &Self::dots(&left, "[RUN]"), data);
    }

    pub fn node_skipped(&self, index: usize, total: usize, node: &Node) {
        let what = match node.resource_type {
            ResourceType::Test => format!("test {}", node.name),
            _ => format!(
                "relation {}.{}",
                node.relation.schema, node.relation.identifier
            ),
        };
        let left = format!("{index} of {total} SKIP {what}");
        let right = self.paint("33", "[SKIP]");
        let info = Self::node_info(node, "skipped", None, None);
        let data = json!({"node_info": info, "index": index, "total": total});
        self.event("info", "NodeFinished", &Self::dots(&left, &right), data);
    }

    /// A project hook's line, dbt's `1 of 2 START hook: shop.on-run-start.0 ... [RUN]`; `done`
    /// is the outcome and its time once the hook ran.
    pub fn hook_line(&self, index: usize, total: usize, name: &str, done: Option<(bool, f64)>) {
        let (verb, right, level) = match done {
            None => ("START".to_string(), "[RUN]".to_string(), "info"),
            Some((true, secs)) => (
                self.paint("32", "OK"),
                self.paint("32", &format!("[OK in {secs:.2}s]")),
                "info",
            ),
            Some((false, secs)) => (
                self.paint("31", "ERROR"),
                self.paint("31", &format!("[ERROR in {secs:.2}s]")),
                "error",
            ),
        };
        let left = format!("{index} of {total} {verb} hook: {name}");
        let data = json!({"node_info": {"unique_id": name}, "index": index, "total": total});
        self.event(level, "LogHookEndLine", &Self::dots(&left, &right), data);
    }

    pub fn node_done(&self, line: &NodeLine) {
        let r = line.result;
        let node = line.node;
        let secs = r.execution_time;
        let failures = r.failures.unwrap_or(0);
        let (verb, right, level) = match r.status {
            Status::Success => {
                let what = match node.resource_type {
                    ResourceType::Seed => format!("loaded {}", Self::describe(node)),
                    ResourceType::Snapshot => format!(
                        "snapshotted {}.{}",
                        node.relation.schema, node.relation.identifier
                    ),
                    _ => format!("created {}", Self::describe(node)),
                };
                let msg = r.message.clone().unwrap_or_default();
                (
                    self.paint("32", "OK") + " " + &what,
                    self.paint("32", &format!("[{msg} in {secs:.2}s]")),
                    "info",
                )
            }
            Status::Pass => (
                self.paint("32", "PASS") + " " + &display_name(node),
                self.paint("32", &format!("[PASS in {secs:.2}s]")),
                "info",
            ),
            Status::Warn => (
                self.paint("33", &format!("WARN {failures}")) + " " + &display_name(node),
                self.paint("33", &format!("[WARN {failures} in {secs:.2}s]")),
                "warn",
            ),
            Status::Fail => (
                self.paint("31", &format!("FAIL {failures}")) + " " + &display_name(node),
                self.paint("31", &format!("[FAIL {failures} in {secs:.2}s]")),
                "error",
            ),
            _ => {
                let what = match node.resource_type {
                    ResourceType::Test | ResourceType::UnitTest => display_name(node),
                    _ => format!("creating {}", Self::describe(node)),
                };
                (
                    self.paint("31", "ERROR") + " " + &what,
                    self.paint("31", &format!("[ERROR in {secs:.2}s]")),
                    "error",
                )
            }
        };
        let left = format!("{} of {} {verb}", line.index, line.total);
        let started = r.timing.first().map(|t| t.started_at);
        let finished = r.timing.last().map(|t| t.completed_at);
        let data = json!({
            "node_info": Self::node_info(node, r.status.as_str(), started, finished),
            "index": line.index, "total": line.total, "execution_time": r.execution_time,
            "message": r.message, "failures": r.failures,
        });
        self.event(level, "NodeFinished", &Self::dots(&left, &right), data);
    }

    /// A source's freshness line: `START` before the query (`outcome` None), then its status,
    /// in dbt's words (`PASS`, `WARN`, `ERROR STALE`, `ERROR` for a runtime error).
    pub fn freshness_line(
        &self,
        index: usize,
        total: usize,
        name: &str,
        unique_id: &str,
        outcome: Option<&crate::freshness::Outcome>,
    ) {
        use crate::freshness::Status as F;
        let Some(o) = outcome else {
            let left = format!("{index} of {total} START freshness of {name}");
            let data = json!({"node_info": {"unique_id": unique_id, "node_status": "started", "resource_type": "source"}, "index": index, "total": total});
            self.event("info", "LogStartLine", &Self::dots(&left, "[RUN]"), data);
            return;
        };
        let secs = o.execution_time();
        let (word, color, level) = match o.status {
            F::Pass => ("PASS", "32", "info"),
            F::Warn => ("WARN", "33", "warn"),
            F::Error => ("ERROR STALE", "31", "error"),
            F::RuntimeError => ("ERROR", "31", "error"),
        };
        let left = format!(
            "{index} of {total} {} freshness of {name}",
            self.paint(color, word)
        );
        let right = self.paint(color, &format!("[{word} in {secs:.2}s]"));
        let ts = |t: &chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        let data = json!({
            "node_info": {"unique_id": unique_id, "node_status": o.status.as_str(), "resource_type": "source",
                          "node_started_at": ts(&o.started_at), "node_finished_at": ts(&o.completed_at)},
            "index": index, "total": total, "execution_time": secs, "status": o.status.as_str(),
        });
        self.event(
            level,
            "LogFreshnessResult",
            &Self::dots(&left, &right),
            data,
        );
        if let Some(e) = &o.error {
            self.event(
                level,
                "Note",
                &format!("  Runtime Error in source {name}\n  {e}"),
                json!({}),
            );
        }
    }

    /// The end of `source freshness`: elapsed time and the counts.
    pub fn freshness_summary(&self, outcomes: &[crate::freshness::Outcome], secs: f64) {
        use crate::freshness::Status as F;
        let n = outcomes.len();
        self.info("");
        self.info(&format!(
            "Finished running {n} source{} in {} hours {} minutes and {:.2} seconds ({secs:.2}s).",
            if n == 1 { "" } else { "s" },
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64,
            secs % 60.0
        ));
        let count = |s: F| outcomes.iter().filter(|o| o.status == s).count();
        let (pass, warn) = (count(F::Pass), count(F::Warn));
        let err = count(F::Error) + count(F::RuntimeError);
        self.event(
            "info",
            "EndOfRunSummary",
            &format!("Done. PASS={pass} WARN={warn} ERROR={err} SKIP=0 NO-OP=0 TOTAL={n}"),
            json!({"pass": pass, "warn": warn, "error": err, "skip": 0, "total": n}),
        );
    }

    /// The closing summary: counts, problems repeated with their messages, and the totals line.
    pub fn summary(
        &self,
        results: &RunResults,
        nodes: &std::collections::BTreeMap<smol_str::SmolStr, Box<Node>>,
        what: &str,
    ) {
        let secs = results.elapsed;
        self.info("");
        self.info(&format!(
            "Finished running {what} in {} hours {} minutes and {:.2} seconds ({secs:.2}s).",
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64,
            secs % 60.0
        ));
        self.info("");
        let errors: Vec<&NodeResult> = results
            .results
            .iter()
            .filter(|r| {
                matches!(
                    r.status,
                    Status::Error | Status::Fail | Status::PartialSuccess
                )
            })
            .collect();
        let warns: Vec<&NodeResult> = results
            .results
            .iter()
            .filter(|r| r.status == Status::Warn)
            .collect();
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        if errors.is_empty() && warns.is_empty() {
            self.info(&self.paint("32", "Completed successfully"));
        } else if errors.is_empty() {
            self.event(
                "warn",
                "Note",
                &self.paint(
                    "33",
                    &format!("Completed with {}:", plural(warns.len(), "warning")),
                ),
                json!({}),
            );
        } else {
            self.event(
                "error",
                "Note",
                &self.paint(
                    "31",
                    &format!(
                        "Completed with {} and {}:",
                        plural(errors.len(), "error"),
                        plural(warns.len(), "warning")
                    ),
                ),
                json!({}),
            );
        }
        for r in errors.iter().chain(&warns) {
            // With --quiet the problems are still told, as dbt does.
            let level = if r.status == Status::Warn {
                "warn"
            } else {
                "error"
            };
            let say = |msg: &str| self.event(level, "Note", msg, json!({}));
            say("");
            let node = &nodes[r.unique_id.as_str()];
            let msg = r.message.as_deref().unwrap_or("error");
            let what = if node.resource_type == ResourceType::UnitTest {
                "unit_test"
            } else {
                "test"
            };
            let name = display_name(node);
            match r.status {
                Status::Fail => say(&format!(
                    "Failure in {what} {name} ({})\n  {msg}",
                    node.original_file_path
                )),
                Status::Warn => say(&format!(
                    "Warning in {what} {name} ({})\n  {msg}",
                    node.original_file_path
                )),
                _ => say(msg),
            }
        }
        self.info("");
        let pass = results.count(Status::Success) + results.count(Status::Pass);
        let warn = results.count(Status::Warn);
        let err = results.count(Status::Error)
            + results.count(Status::Fail)
            + results.count(Status::PartialSuccess);
        let skip = results.count(Status::Skipped);
        self.event(
            "info",
            "EndOfRunSummary",
            &format!("Done. PASS={pass} WARN={warn} ERROR={err} SKIP={skip} NO-OP=0 TOTAL={}", results.results.len()),
            json!({"pass": pass, "warn": warn, "error": err, "skip": skip, "total": results.results.len()}),
        );
    }
}

/// How a node is named in result lines: unit tests as `model::test`.
fn display_name(node: &Node) -> String {
    match node.unit_test() {
        Some(u) => format!("{}::{}", u.model, u.name),
        None => node.name.to_string(),
    }
}

/// Text without ANSI color codes (for measuring the width of a line).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

fn is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}

/// Prints warnings collected during parsing through the installed printer.
pub fn warnings(d: &Diagnostics) {
    match GLOBAL.get() {
        // `--quiet` / `--log-level error`: only errors, as dbt.
        Some(p) if p.min_level > super::args::LogLevel::Warn => {}
        Some(p) => p.diagnostics(d),
        None => eprintln!("{}", d.render(false)),
    }
}

/// With `RSDBT_TIMINGS=1`, records how long a phase took and prints (to stderr) what the
/// stages recorded since, this phase last.
pub fn timing(label: &str, since: std::time::Instant) {
    crate::timings::phase(label, since);
    for line in crate::timings::take() {
        eprintln!("{line}");
    }
}
