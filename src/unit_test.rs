//! Unit tests (dbt 1.8): a model's SQL runs on fixture rows instead of its upstream tables, fully
//! offline, and its output is compared with the expected rows as a multiset. A failure prints a
//! row diff: `---` rows expected but missing, `+++` rows produced but not expected.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::adapter::{Adapter, AdapterError};
use crate::compile::inject_ctes;
use crate::data_test::Outcome;
use crate::exec::Status;
use crate::jinja::{Overrides, Phase, RefCall, Relation, Resolve, quote};
use crate::manifest::{Manifest, Node, ResourceType};
use crate::project::properties::Fixture;

/// Rows of a fixture: column names (in first-seen order) and values.
#[derive(Debug, Clone, Default)]
struct Rows {
    columns: Vec<String>,
    rows: Vec<BTreeMap<String, Json>>,
}

/// A fixture's rows, or the SQL that produces them (`format: sql`).
enum FixtureData {
    Rows(Rows),
    Sql(String),
}

fn read_fixture(f: &Fixture) -> Result<FixtureData, String> {
    match f.format.as_str() {
        "dict" => {
            let mut out = Rows::default();
            for r in f.rows.as_array().into_iter().flatten() {
                let Some(obj) = r.as_object() else {
                    return Err(format!("dict rows must be mappings, got {r}"));
                };
                for k in obj.keys() {
                    if !out.columns.contains(k) {
                        out.columns.push(k.clone());
                    }
                }
                out.rows
                    .push(obj.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
            }
            Ok(FixtureData::Rows(out))
        }
        "csv" => {
            let text = f
                .rows
                .as_str()
                .ok_or("csv rows must be text (a header line, then one line per row)")?;
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            let columns: Vec<String> = reader
                .headers()
                .map_err(|e| e.to_string())?
                .iter()
                .map(str::to_string)
                .collect();
            let mut rows = Vec::new();
            for rec in reader.records() {
                let rec = rec.map_err(|e| format!("csv fixture: {e}"))?;
                rows.push(
                    columns
                        .iter()
                        .cloned()
                        .zip(rec.iter().map(csv_value))
                        .collect(),
                );
            }
            Ok(FixtureData::Rows(Rows { columns, rows }))
        }
        "sql" => Ok(FixtureData::Sql(
            f.rows
                .as_str()
                .ok_or("sql rows must be a query")?
                .to_string(),
        )),
        other => Err(format!(
            "unknown fixture format '{other}' (use dict, csv or sql)"
        )),
    }
}

/// A csv cell typed the way a person reads it: empty → null, numbers, booleans, else text.
fn csv_value(s: &str) -> Json {
    if s.is_empty() || s.eq_ignore_ascii_case("null") {
        Json::Null
    } else if let Ok(i) = s.parse::<i64>() {
        Json::from(i)
    } else if let Some(n) = s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
        Json::Number(n)
    } else if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
        Json::Bool(s.eq_ignore_ascii_case("true"))
    } else {
        Json::String(s.to_string())
    }
}

fn literal(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => format!("'{}'", other.to_string().replace('\'', "''")),
    }
}

/// `select ... union all select ...` for rows; columns the upstream documents but the fixture
/// leaves out are NULL, and documented `data_type`s are applied with casts.
fn rows_sql(rows: &Rows, types: &[(String, Option<String>)]) -> Result<String, String> {
    let mut columns: Vec<String> = rows.columns.clone();
    for (c, _) in types {
        if !columns.iter().any(|x| x.eq_ignore_ascii_case(c)) {
            columns.push(c.clone());
        }
    }
    if columns.is_empty() {
        return Err(
            "the fixture has no rows and its input documents no columns: give at least one row"
                .into(),
        );
    }
    let ty = |c: &str| {
        types
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(c))
            .and_then(|(_, t)| t.clone())
    };
    let select = |row: Option<&BTreeMap<String, Json>>| {
        let items: Vec<String> = columns
            .iter()
            .map(|c| {
                let lit = literal(row.and_then(|r| r.get(c)).unwrap_or(&Json::Null));
                let expr = match ty(c) {
                    Some(t) => format!("cast({lit} as {t})"),
                    None => lit,
                };
                format!("{expr} as {}", quote(c))
            })
            .collect();
        format!("select {}", items.join(", "))
    };
    if rows.rows.is_empty() {
        return Ok(format!("{} where false", select(None)));
    }
    Ok(rows
        .rows
        .iter()
        .map(|r| select(Some(r)))
        .collect::<Vec<_>>()
        .join("\nunion all\n"))
}

/// What a `given` input refers to.
#[derive(Debug, Clone, PartialEq)]
enum Input {
    Ref(String),
    Source(String, String),
    This,
}

fn parse_input(s: &str) -> Option<Input> {
    let s = s.trim();
    if s == "this" {
        return Some(Input::This);
    }
    let args = |prefix: &str| -> Option<Vec<String>> {
        let inner = s
            .strip_prefix(prefix)?
            .trim_start()
            .strip_prefix('(')?
            .strip_suffix(')')?;
        Some(
            inner
                .split(',')
                .map(|a| a.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
                .filter(|a| !a.is_empty() && !a.contains('='))
                .collect(),
        )
    };
    if let Some(a) = args("ref") {
        return a.last().map(|n| Input::Ref(n.clone()));
    }
    if let Some(a) = args("source")
        && let [s, t] = a.as_slice()
    {
        return Some(Input::Source(s.clone(), t.clone()));
    }
    None
}

fn cte_name(input: &Input) -> String {
    match input {
        Input::Ref(n) => format!("__dbt__unit_test__{n}"),
        Input::Source(s, t) => format!("__dbt__unit_test__{s}_{t}"),
        Input::This => "__dbt__unit_test__this".into(),
    }
}

/// Refs and sources of the model resolve to the fixtures' CTEs.
struct FixtureResolver {
    inputs: Vec<Input>,
    test: String,
}

impl Resolve for FixtureResolver {
    fn resolve_ref(&self, _from: &str, call: &RefCall) -> Result<Relation, String> {
        let input = Input::Ref(call.name.clone());
        if !self.inputs.contains(&input) {
            return Err(format!(
                "unit test '{}': the model refs '{}', which has no fixture: add `- input: ref('{}')` with rows under `given:`",
                self.test, call.name, call.name
            ));
        }
        let mut rel = Relation::new("", "", &call.name);
        rel.cte_name = Some(cte_name(&input));
        Ok(rel)
    }
    fn resolve_source(&self, _from: &str, source: &str, table: &str) -> Result<Relation, String> {
        let input = Input::Source(source.into(), table.into());
        if !self.inputs.contains(&input) {
            return Err(format!(
                "unit test '{}': the model reads source('{source}', '{table}'), which has no fixture under `given:`",
                self.test
            ));
        }
        let mut rel = Relation::new("", "", table);
        rel.cte_name = Some(cte_name(&input));
        Ok(rel)
    }
}

/// The relation an input stands for in the warehouse (none for an ephemeral model).
fn input_relation<'m>(m: &'m Manifest, input: &Input, model: &'m Node) -> Option<&'m Relation> {
    match input {
        Input::Ref(n) => m
            .nodes
            .values()
            .find(|x| {
                x.name == n
                    && !matches!(x.resource_type, ResourceType::Test | ResourceType::UnitTest)
            })
            .filter(|x| !x.is_ephemeral())
            .map(|x| &x.relation),
        Input::Source(s, t) => m
            .sources
            .values()
            .find(|x| &x.def.source_name == s && &x.def.name == t)
            .map(|x| &x.relation),
        Input::This => Some(&model.relation),
    }
}

/// Each input's columns and types as the warehouse has them, by the input as written
/// (`ref('orders')`): fixtures give only some columns, and dbt fills the others with NULLs and
/// casts every value to its column's type. Inputs not built yet are left out.
pub async fn warehouse_columns<A: Adapter>(
    adapter: &A,
    m: &Manifest,
    test: &Node,
) -> BTreeMap<String, Vec<(String, Option<String>)>> {
    let mut out = BTreeMap::new();
    let (Some(def), Some(model)) = (
        test.unit_test(),
        test.depends_on_nodes.first().and_then(|id| m.nodes.get(id)),
    ) else {
        return out;
    };
    for g in &def.given {
        let raw = g.input.as_deref().unwrap_or("");
        let Some(rel) = parse_input(raw).and_then(|i| input_relation(m, &i, model)) else {
            continue;
        };
        let sql = format!("select * from {} limit 0", rel.render());
        if let Ok(r) = adapter.query(&sql, Some(0)).await {
            let cols = r.columns.into_iter().zip(r.types.into_iter().map(Some));
            out.insert(raw.to_string(), cols.collect());
        }
    }
    out
}

/// Documented columns (name, data_type) of what an input refers to, for casts and NULL fill.
fn documented_columns(m: &Manifest, input: &Input, model: &Node) -> Vec<(String, Option<String>)> {
    let node = match input {
        Input::Ref(n) => m
            .nodes
            .values()
            .find(|x| {
                x.name == n
                    && x.resource_type != ResourceType::Test
                    && x.resource_type != ResourceType::UnitTest
            })
            .map(|x| &**x),
        Input::This => Some(model),
        Input::Source(s, t) => {
            let src = m
                .sources
                .values()
                .find(|x| &x.def.source_name == s && &x.def.name == t);
            return src
                .map(|s| {
                    s.def
                        .columns
                        .iter()
                        .map(|c| (c.name.clone(), c.data_type.clone()))
                        .collect()
                })
                .unwrap_or_default();
        }
    };
    let Some(node) = node else { return vec![] };
    let mut cols: Vec<(String, Option<String>)> = node
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.data_type.clone()))
        .collect();
    if let Some(Json::Object(types)) = node.config.get("column_types") {
        for (c, t) in types {
            match cols.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(c)) {
                Some(e) => e.1 = t.as_str().map(str::to_string),
                None => cols.push((c.clone(), t.as_str().map(str::to_string))),
            }
        }
    }
    cols
}

/// The SQL a unit test runs: fixture CTEs, then the model compiled against them.
/// `warehouse`: the inputs' columns as built ([`warehouse_columns`]), after the documented ones.
pub fn compile(
    m: &Manifest,
    test: &Node,
    warehouse: &BTreeMap<String, Vec<(String, Option<String>)>>,
) -> Result<String, String> {
    let def = test.unit_test().ok_or("internal error: not a unit test")?;
    let model = m
        .nodes
        .get(&test.depends_on_nodes[0])
        .ok_or("internal error: unit test without its model")?;
    let mut ctes = Vec::new();
    let mut inputs = Vec::new();
    for g in &def.given {
        let raw = g.input.as_deref().unwrap_or("");
        let input = parse_input(raw).ok_or_else(|| {
            format!(
                "unit test '{}': input `{raw}` must be ref('...'), source('...', '...') or this",
                def.name
            )
        })?;
        let sql = match read_fixture(g)
            .map_err(|e| format!("unit test '{}', input {raw}: {e}", def.name))?
        {
            FixtureData::Rows(rows) => {
                let mut columns = documented_columns(m, &input, model);
                for (c, t) in warehouse.get(raw).into_iter().flatten() {
                    match columns.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(c)) {
                        // The type the warehouse has wins over a documented one (as dbt reads
                        // it from the relation): a documented `varchar` is no Spark type.
                        Some(known) if t.is_some() || known.1.is_none() => known.1 = t.clone(),
                        Some(_) => {}
                        None => columns.push((c.clone(), t.clone())),
                    }
                }
                rows_sql(&rows, &columns)
                    .map_err(|e| format!("unit test '{}', input {raw}: {e}", def.name))?
            }
            FixtureData::Sql(sql) => sql,
        };
        ctes.push((cte_name(&input), sql));
        inputs.push(input);
    }
    let overrides = Overrides {
        vars: def
            .overrides
            .get("vars")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default(),
        env_vars: def
            .overrides
            .get("env_vars")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default(),
        macros: def
            .overrides
            .get("macros")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default(),
    };
    let mut info = model.info();
    if inputs.contains(&Input::This) {
        info.this.cte_name = Some(cte_name(&Input::This));
    }
    let resolver = Arc::new(FixtureResolver {
        inputs,
        test: def.name.clone(),
    });
    let phase = Phase::Compile {
        resolver,
        incremental: false,
    };
    let (sql, _) = m
        .jinja
        .render_node_with(info, phase, Arc::new(overrides))
        .map_err(|d| d.render(false))?;
    Ok(inject_ctes(&sql, &ctes))
}

/// Runs the unit test whose compiled SQL is `sql` and compares with the expected rows.
pub async fn run<A: Adapter>(adapter: &A, test: &Node, sql: &str) -> Result<Outcome, AdapterError> {
    let def = test.unit_test().expect("unit test node");
    let fixture = read_fixture(&def.expect).map_err(AdapterError)?;
    let expected_rows = match &fixture {
        FixtureData::Rows(rows) => Some(rows.clone()),
        FixtureData::Sql(_) => None,
    };
    let (columns, mut expected) = match fixture {
        FixtureData::Rows(rows) => {
            let values: Vec<Vec<Json>> = rows
                .rows
                .iter()
                .map(|r| {
                    rows.columns
                        .iter()
                        .map(|c| r.get(c).cloned().unwrap_or(Json::Null))
                        .collect()
                })
                .collect();
            (rows.columns, values)
        }
        FixtureData::Sql(q) => {
            let r = adapter.query(&q, None).await?;
            (r.columns, r.rows)
        }
    };
    // Only the expected columns are compared, as dbt does.
    let projection = if columns.is_empty() {
        "*".to_string()
    } else {
        columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let actual_sql = format!(
        "select {projection} from (\n{}\n) dbt_internal_unit_test_actual",
        sql.trim().trim_end_matches(';')
    );
    let actual = adapter.query(&actual_sql, None).await?;
    let columns = if columns.is_empty() {
        actual.columns.clone()
    } else {
        columns
    };
    // As dbt: the expected values are cast to the types of the model's columns, so `2024-01-01`
    // equals a timestamp at midnight and `1` equals `1.0`.
    if let Some(rows) = expected_rows.filter(|r| !r.rows.is_empty()) {
        let types: Vec<(String, Option<String>)> = actual
            .columns
            .iter()
            .cloned()
            .zip(actual.types.iter().cloned().map(Some))
            .collect();
        if let Ok(sql) = rows_sql(&rows, &types)
            && let Ok(cast) = adapter.query(&sql, None).await
        {
            expected = cast
                .rows
                .into_iter()
                .map(|r| {
                    columns
                        .iter()
                        .map(|c| {
                            cast.columns
                                .iter()
                                .position(|x| x == c)
                                .and_then(|i| r.get(i).cloned())
                                .unwrap_or(Json::Null)
                        })
                        .collect()
                })
                .collect();
        }
    }
    let mut missing: Vec<&Vec<Json>> = Vec::new();
    let mut extra: Vec<&Vec<Json>> = actual.rows.iter().collect();
    for row in &expected {
        let key = canonical_row(row);
        match extra.iter().position(|a| canonical_row(a) == key) {
            Some(i) => {
                extra.remove(i);
            }
            None => missing.push(row),
        }
    }
    if missing.is_empty() && extra.is_empty() {
        return Ok(Outcome {
            status: Status::Pass,
            failures: 0,
            message: None,
        });
    }
    let failures = (missing.len() + extra.len()) as u64;
    Ok(Outcome {
        status: Status::Fail,
        failures,
        message: Some(diff_table(&columns, &missing, &extra)),
    })
}

fn canonical_row(row: &[Json]) -> Vec<String> {
    row.iter().map(canonical).collect()
}

/// Values compared by meaning: 1 = 1.0 = "1.00", timestamps with or without `T`.
fn canonical(v: &Json) -> String {
    match v {
        Json::Null => "NULL".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.as_f64().map(number_key).unwrap_or_else(|| n.to_string()),
        Json::String(s) => match s.trim().parse::<f64>() {
            Ok(f) if !s.trim().is_empty() => number_key(f),
            _ => {
                let t = s.replacen('T', " ", 1);
                let looks_like_ts =
                    s.len() >= 19 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T';
                if looks_like_ts {
                    t.trim_end_matches('Z').trim_end_matches(".000").to_string()
                } else {
                    s.clone()
                }
            }
        },
        other => other.to_string(),
    }
}

fn number_key(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn display(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The rows that differ, as a table with a marker column.
fn diff_table(columns: &[String], missing: &[&Vec<Json>], extra: &[&Vec<Json>]) -> String {
    let mut lines: Vec<Vec<String>> = vec![
        std::iter::once("@@".to_string())
            .chain(columns.iter().cloned())
            .collect(),
    ];
    for (mark, rows) in [("---", missing), ("+++", extra)] {
        for r in rows.iter() {
            lines.push(
                std::iter::once(mark.to_string())
                    .chain(r.iter().map(display))
                    .collect(),
            );
        }
    }
    let widths: Vec<usize> = (0..=columns.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l.get(i).map(|c| c.chars().count()).unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let body: Vec<String> = lines
        .iter()
        .map(|l| {
            l.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join(" | ")
                .trim_end()
                .to_string()
        })
        .collect();
    format!(
        "actual differs from expected ({} expected row{} missing, {} unexpected row{}):\n\n{}\n\n(--- expected but not in the actual result; +++ in the actual result but not expected)",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" },
        extra.len(),
        if extra.len() == 1 { "" } else { "s" },
        body.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_and_values() {
        assert_eq!(
            parse_input("ref('stg_orders')"),
            Some(Input::Ref("stg_orders".into()))
        );
        assert_eq!(
            parse_input("ref(\"pkg\", \"m\")"),
            Some(Input::Ref("m".into()))
        );
        assert_eq!(
            parse_input("source('raw', 'orders')"),
            Some(Input::Source("raw".into(), "orders".into()))
        );
        assert_eq!(parse_input("this"), Some(Input::This));
        assert_eq!(parse_input("orders"), None);
        assert_eq!(canonical(&json!(1)), canonical(&json!("1.00")));
        assert_eq!(
            canonical(&json!("2024-01-01T10:00:00")),
            canonical(&json!("2024-01-01 10:00:00"))
        );
        assert_ne!(canonical(&json!(null)), canonical(&json!("")));
        let rows = Rows {
            columns: vec!["id".into(), "name".into()],
            rows: vec![[("id".to_string(), json!(1))].into_iter().collect()],
        };
        let sql = rows_sql(&rows, &[("id".into(), Some("bigint".into()))]).unwrap();
        assert_eq!(sql, "select cast(1 as bigint) as \"id\", null as \"name\"");
    }
}
