//! Running a data test: wrap the test's query (its failing rows) in dbt's count query, apply
//! `fail_calc` / `warn_if` / `error_if` / `limit` / `severity`, optionally store the failing
//! rows in the audit schema, and decide PASS / WARN / FAIL.

use serde_json::Value as Json;

use crate::adapter::{Adapter, AdapterError};
use crate::config;
use crate::exec::Status;
use crate::manifest::Node;
use crate::materialize::Operation;

/// What a test run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub failures: u64,
    /// `Got 3 results, configured to fail if != 0`, or `None` when it passed.
    pub message: Option<String>,
}

fn cfg<'a>(node: &'a Node, key: &str) -> Option<&'a Json> {
    node.config
        .get(key)
        .or_else(|| config::defaults("test").get(key))
        .filter(|v| !v.is_null())
}

fn cfg_str<'a>(node: &'a Node, key: &str, default: &'a str) -> &'a str {
    cfg(node, key).and_then(Json::as_str).unwrap_or(default)
}

/// The relation kind failing rows are stored as, if any (`store_failures` / `store_failures_as`).
pub fn store_failures_as(node: &Node) -> Option<&str> {
    match cfg(node, "store_failures_as").and_then(Json::as_str) {
        Some("ephemeral") => None,
        Some(kind) => Some(kind),
        None => cfg(node, "store_failures")
            .and_then(Json::as_bool)
            .unwrap_or(false)
            .then_some("table"),
    }
}

/// dbt's wrapper around a test's query.
pub fn wrap(node: &Node, main_sql: &str) -> String {
    let fail_calc = cfg_str(node, "fail_calc", "count(*)");
    let warn_if = cfg_str(node, "warn_if", "!= 0");
    let error_if = cfg_str(node, "error_if", "!= 0");
    let limit = match cfg(node, "limit") {
        Some(Json::Number(n)) => format!("\n  limit {n}"),
        _ => String::new(),
    };
    let main = main_sql.trim().trim_end_matches(';');
    format!(
        "select\n  {fail_calc} as failures,\n  ({fail_calc}) {warn_if} as should_warn,\n  ({fail_calc}) {error_if} as should_error\nfrom (\n{main}{limit}\n) dbt_internal_test"
    )
}

/// Runs the test whose compiled query is `main_sql`.
pub async fn run<A: Adapter>(
    adapter: &A,
    node: &Node,
    main_sql: &str,
) -> Result<Outcome, AdapterError> {
    let mut main = main_sql.to_string();
    if let Some(kind) = store_failures_as(node) {
        let relation = node.relation.clone();
        let sql = main_sql.trim().trim_end_matches(';').to_string();
        let op = match kind {
            "view" => Operation::CreateView { relation, sql },
            _ => Operation::CreateTableAs {
                relation,
                sql,
                format: Default::default(),
                options: Default::default(),
            },
        };
        adapter.apply(&op).await?;
        main = format!("select * from {}", node.relation.render());
    }
    let result = adapter.query(&wrap(node, &main), Some(1)).await?;
    let row = result.rows.first().cloned().unwrap_or_default();
    let failures = row
        .first()
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
        .unwrap_or(0);
    let flag = |i: usize| row.get(i).and_then(Json::as_bool).unwrap_or(false);
    let (should_warn, should_error) = (flag(1), flag(2));
    let severity = cfg_str(node, "severity", "ERROR").to_ascii_uppercase();
    let results = if failures == 1 { "result" } else { "results" };
    let outcome = if severity == "ERROR" && should_error {
        let msg = format!(
            "Got {failures} {results}, configured to fail if {}",
            cfg_str(node, "error_if", "!= 0")
        );
        Outcome {
            status: Status::Fail,
            failures,
            message: Some(msg),
        }
    } else if should_warn {
        let msg = format!(
            "Got {failures} {results}, configured to warn if {}",
            cfg_str(node, "warn_if", "!= 0")
        );
        Outcome {
            status: Status::Warn,
            failures,
            message: Some(msg),
        }
    } else {
        Outcome {
            status: Status::Pass,
            failures,
            message: None,
        }
    };
    Ok(outcome)
}
