//! Database introspection for Jinja: `run_query`, `statement` / `load_result`, `adapter.*`
//! (`quote`, `dispatch`, `get_relation`, `get_columns_in_relation`) and `api.Relation.create`.
//! Queries go through a [`Warehouse`] the run installs; while parsing (`execute` is false)
//! there is none, and they return nothing, as in dbt.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, Value};
use minijinja::{Error, ErrorKind, State};
use serde_json::Value as Json;

use crate::jinja::objects::{Relation, no_method, quote};
use crate::jinja::{RenderCtx, python};

/// What a render may ask of the warehouse; blocking calls.
pub trait Warehouse: Send + Sync {
    fn query(&self, sql: &str) -> Result<TableData, String>;
    /// `table`, `view`, or `None` when the relation does not exist.
    fn relation_type(&self, relation: &Relation) -> Result<Option<String>, String>;
}

/// A query's result: column names and rows of JSON values.
#[derive(Debug, Clone, Default)]
pub struct TableData {
    pub columns: Vec<String>,
    /// Column types as the warehouse names them.
    pub types: Vec<String>,
    pub rows: Vec<Vec<Json>>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

fn cell(v: &Json) -> Value {
    super::python::from_json(v)
}

/// An agate-like table: `.rows`, `.columns` (by index or name, each with `.name` and
/// `.values()`), `.column_names`; iterating it yields rows.
#[derive(Debug)]
pub struct Table(Arc<TableData>);

impl Table {
    pub fn value(data: TableData) -> Value {
        Value::from_object(Table(Arc::new(data)))
    }
    fn row(&self, i: usize) -> Option<Value> {
        (i < self.0.rows.len()).then(|| Value::from_object(Row(self.0.clone(), i)))
    }
}

impl Object for Table {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if let Some(i) = key.as_usize() {
            return self.row(i);
        }
        match key.as_str()? {
            "rows" => Some(python::list(
                (0..self.0.rows.len()).filter_map(|i| self.row(i)).collect(),
            )),
            "columns" => Some(Value::from_object(Columns(self.0.clone()))),
            "column_names" => Some(strings(&self.0.columns)),
            "column_types" => Some(strings(&self.0.types)),
            _ => None,
        }
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.rows.len())
    }
    fn call_method(
        self: &Arc<Self>,
        state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "print_table" => {
                let (max_rows, kwargs): (Option<usize>, Kwargs) =
                    minijinja::value::from_args(args)?;
                let max_rows = match max_rows {
                    Some(n) => n,
                    None => kwargs.get::<Option<usize>>("max_rows")?.unwrap_or(20),
                };
                let max_columns = kwargs.get::<Option<usize>>("max_columns")?.unwrap_or(6);
                let _: Option<usize> = kwargs.get("max_column_width")?;
                let _: Option<Value> = kwargs.get("output")?;
                let _: Option<usize> = kwargs.get("max_precision")?;
                kwargs.assert_all_used()?;
                crate::jinja::emit(state, print_table(&self.0, max_rows, max_columns));
                Ok(Value::from(()))
            }
            "print_csv" => {
                let text = |v: &Json| match v {
                    Json::Null => String::new(),
                    Json::String(s) if s.contains([',', '"', '\n']) => {
                        format!("\"{}\"", s.replace('"', "\"\""))
                    }
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let mut lines = vec![self.0.columns.join(",")];
                lines.extend(
                    self.0
                        .rows
                        .iter()
                        .map(|r| r.iter().map(text).collect::<Vec<_>>().join(",")),
                );
                crate::jinja::emit(state, lines.join("\n"));
                Ok(Value::from(()))
            }
            "__len__" => Ok(Value::from(self.0.rows.len())),
            // agate's `rename(column_names)`: a dict old → new, or the new names in order.
            "rename" => {
                let (names, kwargs): (Option<Value>, Kwargs) = minijinja::value::from_args(args)?;
                let names = match names {
                    Some(n) => n,
                    None => kwargs.get::<Value>("column_names")?,
                };
                let _: Option<Value> = kwargs.get("row_names")?;
                kwargs.assert_all_used()?;
                let mut data = (*self.0).clone();
                for (i, column) in data.columns.iter_mut().enumerate() {
                    let new = match names.kind() {
                        minijinja::value::ValueKind::Map => {
                            names.get_item(&Value::from(column.as_str()))?
                        }
                        _ => names.get_item(&Value::from(i))?,
                    };
                    if !new.is_undefined() && !new.is_none() {
                        *column = new.to_string();
                    }
                }
                Ok(Table::value(data))
            }
            _ => Err(no_method("table", method)),
        }
    }
}

fn strings(items: &[String]) -> Value {
    python::list(items.iter().map(|s| Value::from(s.as_str())).collect())
}

/// The table as agate's `print_table` draws it: a Markdown-like grid, numbers right-aligned,
/// at most `max_rows` rows and `max_columns` columns (`...` where it cut).
fn print_table(data: &TableData, max_rows: usize, max_columns: usize) -> String {
    let shown = data.columns.len().min(max_columns);
    let more_columns = data.columns.len() > shown;
    let text = |v: &Json| match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut grid: Vec<Vec<String>> = vec![data.columns[..shown].to_vec()];
    for row in data.rows.iter().take(max_rows) {
        grid.push(row[..shown].iter().map(text).collect());
    }
    if data.rows.len() > max_rows {
        grid.push(vec!["...".to_string(); shown]);
    }
    let widths: Vec<usize> = (0..shown)
        .map(|c| {
            grid.iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
                .max(3)
        })
        .collect();
    let numeric: Vec<bool> = (0..shown)
        .map(|c| data.rows.iter().all(|r| r[c].is_number() || r[c].is_null()))
        .collect();
    let line = |cells: Vec<String>| {
        let mut l = cells.join(" | ");
        if more_columns {
            l.push_str(" | ...");
        }
        format!("| {l} |")
    };
    let mut out = Vec::new();
    for (i, row) in grid.iter().enumerate() {
        out.push(line(
            row.iter()
                .enumerate()
                .map(|(c, v)| {
                    if i > 0 && numeric[c] {
                        format!("{v:>w$}", w = widths[c])
                    } else {
                        format!("{v:<w$}", w = widths[c])
                    }
                })
                .collect(),
        ));
        if i == 0 {
            out.push(line(widths.iter().map(|w| "-".repeat(*w)).collect()));
        }
    }
    out.join("\n")
}

#[derive(Debug)]
struct Row(Arc<TableData>, usize);

/// Iterates and prints as its values (agate's `MappedSequence`); looked up by index or name.
impl Object for Row {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Seq
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let row = &self.0.rows[self.1];
        let i = match key.as_usize() {
            Some(i) => i,
            None => self
                .0
                .columns
                .iter()
                .position(|c| Some(c.as_str()) == key.as_str())?,
        };
        row.get(i).map(cell)
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.columns.len())
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let row = &self.0.rows[self.1];
        match method {
            "keys" => Ok(strings(&self.0.columns)),
            "values" => Ok(python::list(row.iter().map(cell).collect())),
            "items" => Ok(python::list(
                self.0
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| python::list(vec![Value::from(c.as_str()), cell(v)]))
                    .collect(),
            )),
            "dict" => Ok(python::dict(
                self.0
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| (Value::from(c.as_str()), cell(v))),
            )),
            "get" => {
                let (key, default): (Value, Option<Value>) = minijinja::value::from_args(args)?;
                Ok(self
                    .get_value(&key)
                    .unwrap_or_else(|| default.unwrap_or(Value::from(()))))
            }
            _ => Err(no_method("row", method)),
        }
    }
}

#[derive(Debug)]
struct Columns(Arc<TableData>);

impl Object for Columns {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let i = match key.as_usize() {
            Some(i) if i < self.0.columns.len() => i,
            Some(_) => return None,
            None => self
                .0
                .columns
                .iter()
                .position(|c| Some(c.as_str()) == key.as_str())?,
        };
        Some(Value::from_object(Column(self.0.clone(), i)))
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.0.columns.len())
    }
    // agate's columns are a mapping too: `table.columns.items()` (dbt_utils'
    // `get_query_results_as_dict`).
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let column = |i: usize| Value::from_object(Column(self.0.clone(), i));
        let n = self.0.columns.len();
        match method {
            "keys" => Ok(strings(&self.0.columns)),
            "values" => Ok(python::list((0..n).map(column).collect())),
            "items" => Ok(python::list(
                (0..n)
                    .map(|i| python::list(vec![Value::from(self.0.columns[i].as_str()), column(i)]))
                    .collect(),
            )),
            "get" => {
                let (key, default): (Value, Option<Value>) = minijinja::value::from_args(args)?;
                Ok(self
                    .get_value(&key)
                    .unwrap_or_else(|| default.unwrap_or(Value::from(()))))
            }
            _ => Err(no_method("columns", method)),
        }
    }
}

#[derive(Debug)]
struct Column(Arc<TableData>, usize);

impl Object for Column {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "name" => Some(Value::from(self.0.columns[self.1].clone())),
            "data_type" => Some(Value::from(self.0.types[self.1].clone())),
            _ => None,
        }
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "values" => Ok(python::list(
                self.0.rows.iter().map(|r| cell(&r[self.1])).collect(),
            )),
            _ => Err(no_method("column", method)),
        }
    }
}

fn warehouse(state: &State) -> Option<Arc<dyn Warehouse>> {
    RenderCtx::from_state(state).and_then(|c| c.warehouse())
}

/// `run_query(sql)`: the result table, or none while parsing.
pub fn run_query(state: &State, sql: String) -> Result<Value, Error> {
    match warehouse(state) {
        Some(w) => w.query(&sql).map(Table::value).map_err(invalid),
        None => Ok(Value::from(())),
    }
}

/// `{% call statement('name', fetch_result=True) %}sql{% endcall %}`: runs the SQL; the result
/// is kept for `load_result('name')`.
#[derive(Debug)]
pub struct Statement;

impl Object for Statement {
    fn call(self: &Arc<Self>, state: &mut State, args: &[Value]) -> Result<Value, Error> {
        let (name, kwargs): (Option<String>, Kwargs) = minijinja::value::from_args(args)?;
        statement(state, name, kwargs)
    }
}

fn statement(state: &mut State, name: Option<String>, kwargs: Kwargs) -> Result<Value, Error> {
    let caller: Value = kwargs.get("caller")?;
    let fetch: Option<bool> = kwargs.get("fetch_result")?;
    let _: Option<Value> = kwargs.get("auto_begin")?;
    let _: Option<Value> = kwargs.get("language")?;
    kwargs.assert_all_used()?;
    let sql = caller.call(state, &[])?.to_string();
    let (Some(w), Some(ctx)) = (warehouse(state), RenderCtx::from_state(state)) else {
        return Ok(Value::from(""));
    };
    let data = w.query(&sql).map_err(invalid)?;
    let name = name.unwrap_or_else(|| "statement".to_string());
    let rows = data.rows.len();
    let data_list = python::list(
        data.rows
            .iter()
            .map(|r| python::list(r.iter().map(cell).collect()))
            .collect(),
    );
    let mut result = BTreeMap::new();
    result.insert("response", response(rows));
    if fetch.unwrap_or(false) {
        result.insert("data", data_list);
        result.insert("table", Table::value(data));
    } else {
        result.insert("data", Value::from(()));
        result.insert("table", Value::from(()));
    }
    ctx.statements
        .lock()
        .unwrap()
        .insert(name, Value::from(result));
    Ok(Value::from(""))
}

/// `load_result('name')`: what a `statement` block of that name returned (none if it did not run).
pub fn load_result(state: &State, name: String) -> Value {
    RenderCtx::from_state(state)
        .and_then(|c| c.statements.lock().unwrap().get(&name).cloned())
        .unwrap_or(Value::from(()))
}

/// dbt's `adapter`: `quote`, `dispatch`, `type()`; the warehouse lookups (`get_relation`,
/// `get_columns_in_relation`) go through the invocation's query hook.
#[derive(Debug)]
pub struct AdapterObject;

fn target_type(state: &State) -> String {
    state
        .lookup("target")
        .and_then(|t| t.get_attr("type").ok())
        .and_then(|t| t.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// `rel` with its kind if the warehouse has it, else none (`adapter.get_relation`,
/// `load_relation`).
pub fn relation_if_built(state: &State, rel: Relation) -> Result<Value, Error> {
    let ctx = RenderCtx::from_state(state);
    let kind = ctx
        .as_ref()
        .and_then(|c| c.warehouse())
        .map(|w| w.relation_type(&rel))
        .transpose()
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e))?
        .flatten();
    Ok(match kind {
        Some(kind) => Value::from_object(Relation {
            kind: Some(kind.into()),
            ..rel
        }),
        None => Value::from(()),
    })
}

impl Object for AdapterObject {
    fn call_method(
        self: &Arc<Self>,
        state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "quote" => {
                let (ident,): (String,) = minijinja::value::from_args(args)?;
                Ok(Value::from(quote(&ident)))
            }
            "type" => Ok(Value::from(target_type(state))),
            // dbt searches `<adapter>__name`, its parent adapters', then `default__name` (and
            // the plain name). The embedded engine's SQL is PostgreSQL's in most things, so
            // packages' `postgres__` versions come before their `default__` ones (as for
            // dbt-redshift, whose parent is postgres). On Spark, `spark__` then `default__`,
            // as dbt-spark (packages written for dbt-databricks ship `spark__` versions too).
            "dispatch" => {
                let (name, namespace, kwargs): (String, Option<String>, Kwargs) =
                    minijinja::value::from_args(args)?;
                let namespace = match namespace {
                    Some(ns) => Some(ns),
                    None => kwargs.get::<Option<String>>("macro_namespace")?,
                };
                let kind = target_type(state);
                let mut candidates = vec![format!("{kind}__{name}")];
                if kind == "datafusion" {
                    candidates.push(format!("postgres__{name}"));
                }
                candidates.extend([format!("default__{name}"), name.clone()]);
                // The packages of the project's `dispatch:` search order for that namespace
                // (default: the namespace alone), then any macro of that name.
                let order: Vec<String> = match namespace.filter(|ns| ns != "dbt") {
                    Some(ns) => RenderCtx::from_state(state)
                        .and_then(|c| c.shared.dispatch.get(&ns).cloned())
                        .unwrap_or_else(|| vec![ns]),
                    None => vec![],
                };
                // In the search order only prefixed names count, as in dbt: a package's macro
                // named like the dispatched one is usually the dispatching macro itself.
                let prefixed = &candidates[..candidates.len() - 1];
                let in_order = order.iter().find_map(|package| {
                    let ns = state.lookup(package).filter(|v| !v.is_undefined())?;
                    prefixed
                        .iter()
                        .find_map(|c| ns.get_attr(c).ok().filter(|v| !v.is_undefined()))
                });
                in_order
                    .or_else(|| {
                        candidates
                            .iter()
                            .find_map(|c| state.lookup(c).filter(|v| !v.is_undefined()))
                    })
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::InvalidOperation,
                            format!(
                                "adapter.dispatch: no macro named '{name}' (searched {})",
                                candidates.join(", ")
                            ),
                        )
                    })
            }
            // `load_relation(relation)`: the relation if the warehouse has it, else none.
            "get_relation" | "load_relation" => {
                let (_, kwargs): (&[Value], Kwargs) = minijinja::value::from_args(args)?;
                let pos = |i: usize, k: &str| -> Result<String, Error> {
                    match args.get(i).filter(|v| !v.is_kwargs()) {
                        Some(v) => Ok(v.to_string()),
                        None => Ok(kwargs.get::<Option<String>>(k)?.unwrap_or_default()),
                    }
                };
                let rel = match args
                    .first()
                    .and_then(|v| v.downcast_object_ref::<Relation>())
                {
                    Some(r) if method == "load_relation" => {
                        Relation::new(&r.database, &r.schema, &r.identifier)
                    }
                    _ => Relation::new(
                        &pos(0, "database")?,
                        &pos(1, "schema")?,
                        &pos(2, "identifier")?,
                    ),
                };
                relation_if_built(state, rel)
            }
            "get_columns_in_relation" => {
                let (rel,): (Value,) = minijinja::value::from_args(args)?;
                let ctx = RenderCtx::from_state(state);
                let Some(w) = ctx.as_ref().and_then(|c| c.warehouse()) else {
                    return Ok(Value::from(Vec::<Value>::new()));
                };
                // Asked of the render's session (a temporary table of this render is there).
                let table = match w.query(&format!("select * from {rel} limit 0")) {
                    Ok(t) => t,
                    // A relation not built yet has no columns, as dbt's catalog query finds
                    // none (Fivetran's staging models read their `_tmp` parents' this way).
                    Err(e) => match rel.downcast_object_ref::<Relation>() {
                        Some(r)
                            if r.cte_name.is_none()
                                && relation_if_built(state, r.clone())?.is_none() =>
                        {
                            return Ok(Value::from(Vec::<Value>::new()));
                        }
                        _ => return Err(Error::new(ErrorKind::InvalidOperation, e)),
                    },
                };
                Ok(Value::from(
                    table
                        .columns
                        .iter()
                        .zip(&table.types)
                        .map(|(c, t)| {
                            Value::from_object(WarehouseColumn {
                                name: c.clone(),
                                data_type: t.clone(),
                            })
                        })
                        .collect::<Vec<_>>(),
                ))
            }
            // dbt's DDL helpers, as the SQL each target takes; the embedded engine applies
            // that SQL to its warehouse folders. While parsing nothing runs.
            "create_schema" | "drop_schema" | "drop_relation" | "truncate_relation" => {
                let (rel,): (Value,) = minijinja::value::from_args(args)?;
                let rel = relation_arg(&rel, method)?;
                let kind = target_type(state);
                let cascade = if kind == "spark" { "" } else { " cascade" };
                let sql = match method {
                    "create_schema" => {
                        format!("create schema if not exists {}", quote(&rel.schema))
                    }
                    "drop_schema" => {
                        format!("drop schema if exists {}{cascade}", quote(&rel.schema))
                    }
                    "truncate_relation" => format!("truncate table {rel}"),
                    _ => {
                        let built = relation_if_built(state, rel.clone())?;
                        let Some(built) = built.downcast_object_ref::<Relation>() else {
                            return Ok(Value::from(()));
                        };
                        let kind = built.kind.as_deref().unwrap_or("table");
                        format!("drop {kind} if exists {rel}{cascade}")
                    }
                };
                execute(state, &sql, false).map(|_| Value::from(()))
            }
            "rename_relation" => {
                let (from, to): (Value, Value) = minijinja::value::from_args(args)?;
                let (from, to) = (relation_arg(&from, method)?, relation_arg(&to, method)?);
                // PostgreSQL takes the bare new name (the schema stays); the others a full one.
                let new_name = match target_type(state).as_str() {
                    "postgres" => quote(&to.identifier),
                    _ => to.render(),
                };
                let sql = format!("alter table {from} rename to {new_name}");
                execute(state, &sql, false).map(|_| Value::from(()))
            }
            // `adapter.execute(sql, auto_begin=False, fetch=False, limit=None)`: (response, table).
            "execute" => {
                let (sql, kwargs): (String, Kwargs) = minijinja::value::from_args(args)?;
                let fetch = kwargs.get::<Option<bool>>("fetch")?.unwrap_or(false);
                let _: Option<Value> = kwargs.get("auto_begin")?;
                let limit: Option<usize> = kwargs.get("limit")?;
                kwargs.assert_all_used()?;
                let Some(mut data) = execute(state, &sql, true)? else {
                    return Ok(Value::from(()));
                };
                if let Some(n) = limit {
                    data.rows.truncate(n);
                }
                let response = response(data.rows.len());
                if !fetch {
                    data = TableData::default();
                }
                Ok(python::list(vec![response, Table::value(data)]))
            }
            "already_exists" => {
                let (schema, identifier): (String, String) = minijinja::value::from_args(args)?;
                let database = state
                    .lookup("target")
                    .and_then(|t| t.get_attr("database").ok())
                    .map(|d| d.to_string())
                    .unwrap_or_default();
                let rel = Relation::new(&database, &schema, &identifier);
                Ok(Value::from(!relation_if_built(state, rel)?.is_none()))
            }
            // `check_schema_exists(database, schema)`, `list_schemas(database)`.
            "check_schema_exists" | "list_schemas" => {
                let (_, schema): (Option<String>, Option<String>) =
                    minijinja::value::from_args(args)?;
                let sql = match target_type(state).as_str() {
                    "spark" => "show schemas".to_string(),
                    _ => "select schema_name from information_schema.schemata".to_string(),
                };
                let Some(data) = execute(state, &sql, true)? else {
                    return Ok(Value::from(()));
                };
                let names: Vec<String> = data
                    .rows
                    .iter()
                    .filter_map(|r| r.first().and_then(Json::as_str).map(str::to_string))
                    .collect();
                Ok(match (method, schema) {
                    ("check_schema_exists", Some(s)) => {
                        Value::from(names.iter().any(|n| n.eq_ignore_ascii_case(&s)))
                    }
                    _ => strings(&names),
                })
            }
            // Each statement commits on its own, but on PostgreSQL a macro may have opened a
            // transaction on its session (`run_query("begin")`): `commit()` ends it, as dbt's.
            "commit" if target_type(state) == "postgres" => {
                execute(state, "commit", false).map(|_| Value::from(()))
            }
            "commit" | "begin" => Ok(Value::from(())),
            _ => Err(no_method("adapter", method)),
        }
    }
}

/// A `Relation` argument of `adapter.<method>`.
fn relation_arg(v: &Value, method: &str) -> Result<Relation, Error> {
    v.downcast_object_ref::<Relation>()
        .cloned()
        .ok_or_else(|| invalid(format!("adapter.{method} takes a relation, not {v}")))
}

/// Runs `sql` on the warehouse (none while parsing): its rows if `rows`.
fn execute(state: &State, sql: &str, rows: bool) -> Result<Option<TableData>, Error> {
    let Some(w) = warehouse(state) else {
        return Ok(None);
    };
    let data = w.query(sql).map_err(invalid)?;
    Ok(Some(if rows { data } else { TableData::default() }))
}

/// dbt's `AdapterResponse` of a statement that returned `rows` rows.
fn response(rows: usize) -> Value {
    python::from_json(
        &serde_json::json!({"code": "SELECT", "rows_affected": rows, "_message": format!("SELECT {rows}")}),
    )
}

/// dbt's `api`: `api.Relation.create(database=, schema=, identifier=, type=)` and
/// `api.Column.translate_type(type)`.
#[derive(Debug)]
pub struct Api;

impl Object for Api {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "Relation" => Some(Value::from_object(RelationApi)),
            "Column" => Some(Value::from_object(ColumnApi)),
            _ => None,
        }
    }
}

/// `api.Column`: `translate_type(name)` gives the target's spelling of dbt's generic type
/// names (`string` is `text` on the embedded target and PostgreSQL, as dbt's base column
/// says; Spark keeps `string`); other names come back as given.
#[derive(Debug)]
struct ColumnApi;

impl Object for ColumnApi {
    fn call_method(
        self: &Arc<Self>,
        state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "translate_type" {
            return Err(no_method("api.Column", method));
        }
        let (dtype,): (String,) = minijinja::value::from_args(args)?;
        let spark = target_type(state) == "spark";
        let label = match (dtype.to_ascii_uppercase().as_str(), spark) {
            ("LONG", true) => "bigint",
            (_, true) => return Ok(Value::from(dtype)),
            ("STRING", false) => "text",
            ("TIMESTAMP", false) => "timestamp",
            ("FLOAT", false) => "float",
            ("INTEGER", false) => "int",
            ("BOOLEAN", false) => "boolean",
            _ => return Ok(Value::from(dtype)),
        };
        Ok(Value::from(label))
    }
}

#[derive(Debug)]
pub struct RelationApi;

impl Object for RelationApi {
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        if method != "create" {
            return Err(no_method("api.Relation", method));
        }
        let (kwargs,): (Kwargs,) = minijinja::value::from_args(args)?;
        let get = |k: &str| -> Result<String, Error> {
            Ok(kwargs.get::<Option<String>>(k)?.unwrap_or_default())
        };
        let mut rel = Relation::new(&get("database")?, &get("schema")?, &get("identifier")?);
        rel.kind = kwargs.get::<Option<String>>("type")?.map(Into::into);
        Ok(Value::from_object(rel))
    }
}

/// dbt's `Column`: `.name` / `.column`, `.quoted`, `.data_type` / `.dtype`, and the type tests
/// packages use (`is_string()`, `is_number()`, `is_integer()`, `is_float()`, `is_numeric()`).
#[derive(Debug)]
struct WarehouseColumn {
    name: String,
    data_type: String,
}

impl Object for WarehouseColumn {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "name" | "column" => Value::from(self.name.clone()),
            "quoted" => Value::from(quote(&self.name)),
            "data_type" | "dtype" => Value::from(self.data_type.clone()),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        let t = self.data_type.to_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| t.contains(w));
        let integer = any(&["int", "serial"]);
        let float = any(&["float", "double", "real"]);
        let numeric = any(&["numeric", "decimal"]);
        if method == "string_size" {
            // dbt: the declared length of a string column, 256 when it has none.
            let size = t
                .split_once('(')
                .and_then(|(_, rest)| rest.trim_end_matches(')').trim().parse::<u64>().ok())
                .unwrap_or(256);
            return Ok(Value::from(size));
        }
        Ok(Value::from(match method {
            "is_string" => any(&["char", "text", "string"]),
            "is_integer" => integer,
            "is_float" => float,
            "is_numeric" => numeric,
            "is_number" => integer || float || numeric,
            _ => {
                return Err(no_method("column", method));
            }
        }))
    }
}
