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
    let row = result.rows.first().map(Vec::as_slice).unwrap_or_default();
    Ok(outcome(node, row))
}

/// The outcome read from the count query's `failures, should_warn, should_error` columns.
fn outcome(node: &Node, row: &[Json]) -> Outcome {
    let failures = row
        .first()
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
        .unwrap_or(0);
    let flag = |i: usize| row.get(i).and_then(Json::as_bool).unwrap_or(false);
    let (should_warn, should_error) = (flag(1), flag(2));
    let severity = cfg_str(node, "severity", "ERROR").to_ascii_uppercase();
    let results = if failures == 1 { "result" } else { "results" };
    if severity == "ERROR" && should_error {
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
    }
}

/// The node a `not_null` test can be counted with others on, in one scan: dbt's built-in test
/// with its default failure count, no `limit`, no stored failures and no SQL header, on one
/// relation. Other tests run their own query.
pub fn merge_key(node: &Node) -> Option<&str> {
    let generic = node.test.as_ref()?.generic.as_ref()?;
    if generic.name != "not_null"
        || generic.namespace.is_some()
        || store_failures_as(node).is_some()
        || cfg(node, "limit").is_some()
        || cfg(node, "sql_header").is_some()
        || cfg_str(node, "fail_calc", "count(*)").replace(' ', "") != "count(*)"
    {
        return None;
    }
    match node.depends_on_nodes.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// `(column, relation)` of a compiled query of the built-in `not_null` form,
/// `select <column> from <relation> where <column> is null`; `None` for any other query (an
/// overridden `test_not_null`, say), which then runs on its own.
pub fn not_null_parts(sql: &str) -> Option<(&str, &str)> {
    let s = sql.trim().trim_end_matches(';').trim_end();
    let s = strip_keyword_suffix(strip_keyword_suffix(s, "null")?, "is")?;
    let s = strip_keyword_prefix(s, "select")?;
    let (select_from, column) = split_keyword(s, "where", true)?;
    let (selected, relation) = split_keyword(select_from, "from", false)?;
    (selected.trim() == column.trim() && selected.trim() != "*")
        .then(|| (column.trim(), relation.trim()))
}

fn strip_keyword_prefix<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let head = s.get(..kw.len())?;
    let rest = &s[kw.len()..];
    (head.eq_ignore_ascii_case(kw) && rest.starts_with(char::is_whitespace)).then_some(rest)
}

fn strip_keyword_suffix<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(kw.len())?;
    let (rest, tail) = (s.get(..cut)?, &s[cut..]);
    (tail.eq_ignore_ascii_case(kw) && rest.ends_with(char::is_whitespace)).then(|| rest.trim_end())
}

/// `s` split around the first (or last) `kw` standing between whitespace.
fn split_keyword<'a>(s: &'a str, kw: &str, last: bool) -> Option<(&'a str, &'a str)> {
    let lower = s.to_ascii_lowercase();
    let at = |i: usize| {
        let before = lower[..i].ends_with(char::is_whitespace);
        let after = lower[i + kw.len()..].starts_with(char::is_whitespace);
        before && after
    };
    let mut found = lower.match_indices(kw).map(|(i, _)| i).filter(|&i| at(i));
    let i = if last { found.last() } else { found.next() }?;
    Some((&s[..i], &s[i + kw.len()..]))
}

/// Runs `not_null` tests on one relation as one query: each test's failures are the rows
/// where its column is null, counted in a single scan, and each test keeps its own
/// `warn_if` / `error_if` / `severity`. `tests` are `(node, column)`.
pub async fn run_not_null_group<A: Adapter>(
    adapter: &A,
    relation: &str,
    tests: &[(&Node, &str)],
) -> Result<Vec<Outcome>, AdapterError> {
    let mut counts = Vec::new();
    let mut flags = Vec::new();
    for (i, (node, column)) in tests.iter().enumerate() {
        let f = format!("rsdbt_failures_{i}");
        counts.push(format!("count(*) filter (where {column} is null) as {f}"));
        flags.push(format!(
            "{f}, ({f}) {} as rsdbt_warn_{i}, ({f}) {} as rsdbt_error_{i}",
            cfg_str(node, "warn_if", "!= 0"),
            cfg_str(node, "error_if", "!= 0")
        ));
    }
    let sql = format!(
        "select\n  {}\nfrom (\nselect\n  {}\nfrom {relation}\n) dbt_internal_test",
        flags.join(",\n  "),
        counts.join(",\n  ")
    );
    let result = adapter.query(&sql, Some(1)).await?;
    let row = result.rows.first().map(Vec::as_slice).unwrap_or_default();
    Ok(tests
        .iter()
        .enumerate()
        .map(|(i, (node, _))| outcome(node, row.get(3 * i..3 * i + 3).unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::not_null_parts;

    #[test]
    fn not_null_queries_are_recognised_only_in_the_built_in_form() {
        assert_eq!(
            not_null_parts("select label\nfrom \"w\".\"m\".\"t\"\nwhere label is null"),
            Some(("label", "\"w\".\"m\".\"t\""))
        );
        assert_eq!(
            not_null_parts(
                "SELECT \"Order Id\" FROM (select * from t where x > 1) dbt_subquery WHERE \"Order Id\" IS NULL;"
            ),
            Some(("\"Order Id\"", "(select * from t where x > 1) dbt_subquery"))
        );
        // dbt's form with stored failures, other columns, other filters: not merged.
        assert_eq!(not_null_parts("select * from t where a is null"), None);
        assert_eq!(not_null_parts("select a from t where b is null"), None);
        assert_eq!(
            not_null_parts("select a from t where a is null or b is null"),
            None
        );
        assert_eq!(not_null_parts("select a from t where a is not null"), None);
        assert_eq!(
            not_null_parts("select extract(year from d) from t where extract(year from d) is null"),
            None
        );
    }
}
