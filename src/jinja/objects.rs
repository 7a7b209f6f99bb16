//! Jinja values with behaviour: relations, the `config` callable, dbt's `exceptions` and
//! `context`, and the proxy that makes every project macro a global.

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value};
use minijinja::{Error, ErrorKind, State};
use smol_str::SmolStr;

use crate::config::Config;
use crate::jinja::RenderCtx;

/// A relation (`ref()`, `source()`, `this`): renders as a quoted, fully qualified name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Relation {
    pub database: SmolStr,
    pub schema: SmolStr,
    pub identifier: SmolStr,
    /// `table`, `view`, `cte` ... (`None` when unknown).
    pub kind: Option<SmolStr>,
    /// For ephemeral models: rendered as this bare CTE name instead.
    pub cte_name: Option<String>,
}

impl Relation {
    pub fn new(database: &str, schema: &str, identifier: &str) -> Self {
        Self {
            database: database.into(),
            schema: schema.into(),
            identifier: identifier.into(),
            kind: None,
            cte_name: None,
        }
    }

    /// The relation at a Delta version (`tag` 'v') or an Iceberg snapshot ('s'): the
    /// warehouse reads `name@v12` / `name@s<id>` as that version of `name`.
    pub fn pinned(&self, tag: char, n: i64) -> Result<Relation, String> {
        if self.cte_name.is_some() {
            return Err(format!(
                "{} is ephemeral: it has no stored versions to travel to",
                self.identifier
            ));
        }
        if n < 0 {
            return Err(format!(
                "a version or snapshot id is not negative (got {n})"
            ));
        }
        // A pin replaces an earlier one (the `time_travel` config's, say).
        let base = match self.identifier.rsplit_once('@') {
            Some((base, pin))
                if pin.len() > 1
                    && pin.starts_with(['v', 's'])
                    && pin[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                base
            }
            _ => &self.identifier,
        };
        Ok(Relation {
            identifier: format!("{base}@{tag}{n}").into(),
            ..self.clone()
        })
    }

    /// The SQL text of the relation.
    pub fn render(&self) -> String {
        if let Some(cte) = &self.cte_name {
            return cte.clone();
        }
        // A relation made without a database, schema or identifier, e.g. by
        // `api.Relation.create(schema=...)`, renders without it, as in dbt.
        let parts: Vec<String> = [&self.database, &self.schema, &self.identifier]
            .into_iter()
            .filter(|part| !part.is_empty())
            .map(|part| quote(part))
            .collect();
        if parts.is_empty() {
            return quote("");
        }
        parts.join(".")
    }
}

/// The error for an unknown method of a context object, e.g. `relation has no method 'x'`.
pub(crate) fn no_method(object: &str, method: &str) -> Error {
    Error::new(
        ErrorKind::UnknownMethod,
        format!("{object} has no method '{method}'"),
    )
}

/// Whether identifiers are quoted with backticks (Spark SQL) instead of double quotes: one
/// target per process, set when its profile is read, before anything renders.
static BACKTICKS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn quote_with_backticks(on: bool) {
    BACKTICKS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The SQL name of the text type generated SQL casts to (Spark's `varchar` needs a length).
pub fn text_type() -> &'static str {
    if BACKTICKS.load(std::sync::atomic::Ordering::Relaxed) {
        "string"
    } else {
        "varchar"
    }
}

/// Quotes an identifier (double quotes, or backticks on Spark), escaping embedded quotes.
pub fn quote(ident: &str) -> String {
    if BACKTICKS.load(std::sync::atomic::Ordering::Relaxed) {
        return format!("`{}`", ident.replace('`', "``"));
    }
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// A Relation's keys as a mapping (dbt's relations are dicts: packages test
/// `obj is mapping and obj.get('metadata', {}).get('type', '').endswith('Relation')`).
const RELATION_KEYS: &[&str] = &["database", "schema", "identifier", "type", "metadata"];

impl Object for Relation {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(RELATION_KEYS)
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "metadata" => Value::from_pairs([("type", Value::from("DataFusionRelation"))]),
            "database" => Value::from(self.database.as_str()),
            "schema" => Value::from(self.schema.as_str()),
            "identifier" | "name" | "table" => Value::from(self.identifier.as_str()),
            "type" => self
                .kind
                .as_deref()
                .map(Value::from)
                .unwrap_or(Value::from(())),
            "is_table" => Value::from(self.kind.as_deref() == Some("table")),
            "is_view" => Value::from(self.kind.as_deref() == Some("view")),
            "is_cte" => Value::from(self.cte_name.is_some()),
            _ => return None,
        })
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "render" => Ok(Value::from(Relation::render(self))),
            "get" => {
                let (key, default): (Value, Option<Value>) = minijinja::value::from_args(args)?;
                Ok(self.get_value(&key).or(default).unwrap_or(Value::from(())))
            }
            "include" => {
                let (_, kwargs): (&[Value], Kwargs) = minijinja::value::from_args(args)?;
                let keep = |k: &str| kwargs.get::<Option<bool>>(k).map(|v| v.unwrap_or(true));
                let (db, schema, ident) = (keep("database")?, keep("schema")?, keep("identifier")?);
                let parts: Vec<String> = [
                    (db, &self.database),
                    (schema, &self.schema),
                    (ident, &self.identifier),
                ]
                .into_iter()
                .filter(|(k, _)| *k)
                .map(|(_, v)| quote(v))
                .collect();
                Ok(Value::from_safe_string(parts.join(".")))
            }
            // dbt's `incorporate(path={'identifier': ...}, type=...)`: a copy with those parts.
            "incorporate" => {
                let (kwargs,): (Kwargs,) = minijinja::value::from_args(args)?;
                let mut rel = (**self).clone();
                if let Some(path) = kwargs.get::<Option<Value>>("path")? {
                    for (key, slot) in [
                        ("database", &mut rel.database),
                        ("schema", &mut rel.schema),
                        ("identifier", &mut rel.identifier),
                    ] {
                        // An explicit none unsets the part (dbt's temp relations on
                        // PostgreSQL: `"schema": none`), so the name renders without it.
                        match path.get_attr(key) {
                            Ok(v) if v.is_none() => *slot = SmolStr::default(),
                            Ok(v) if !v.is_undefined() => *slot = v.to_string().into(),
                            _ => {}
                        }
                    }
                }
                if let Some(kind) = kwargs.get::<Option<String>>("type")? {
                    rel.kind = Some(kind.into());
                }
                kwargs.assert_all_used()?;
                Ok(Value::from_object(rel))
            }
            // dbt's `relation.information_schema('columns')`: the database's catalog view.
            "information_schema" => {
                let (view,): (Option<String>,) = minijinja::value::from_args(args)?;
                let base = format!("{}.information_schema", quote(&self.database));
                Ok(Value::from_safe_string(match view {
                    Some(v) => format!("{base}.{v}"),
                    None => base,
                }))
            }
            // Time travel on the embedded engine: `ref('x').at_version(12)` reads Delta version
            // 12, `.at_snapshot(id)` an Iceberg snapshot.
            "at_version" | "at_snapshot" => {
                let (n,): (i64,) = minijinja::value::from_args(args)?;
                let tag = if method == "at_version" { 'v' } else { 's' };
                self.pinned(tag, n)
                    .map(Value::from_object)
                    .map_err(|m| Error::new(ErrorKind::InvalidOperation, m))
            }
            _ => Err(no_method("relation", method)),
        }
    }
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Relation::render(self))
    }
}

/// `config`: callable as `config(materialized='table')`, and `config.get('key', default)`.
#[derive(Debug)]
pub struct ConfigObject {
    pub ctx: Arc<RenderCtx>,
}

impl ConfigObject {
    fn current(&self) -> Config {
        let mut c = self.ctx.node().config.clone();
        crate::config::merge(&mut c, &self.ctx.capture.lock().unwrap().config);
        c
    }
}

impl Object for ConfigObject {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn call(self: &Arc<Self>, _state: &mut State, args: &[Value]) -> Result<Value, Error> {
        // config(**kwargs) or config({...})
        let (pos, kwargs): (&[Value], Kwargs) = minijinja::value::from_args(args)?;
        let mut cfg = Config::new();
        for v in pos {
            let json: serde_json::Value = serde_json::to_value(v)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            if let serde_json::Value::Object(m) = json {
                cfg.extend(m);
            }
        }
        for key in kwargs.args() {
            let v: Value = kwargs.get(key)?;
            let json = serde_json::to_value(&v)
                .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            cfg.insert(key.to_string(), json);
        }
        if self.ctx.phase_is_parse() {
            crate::config::merge(&mut self.ctx.capture.lock().unwrap().config, &cfg);
        }
        Ok(Value::from(""))
    }
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "get" | "require" => {
                let (key, default): (&str, Option<Value>) = minijinja::value::from_args(args)?;
                let cfg = self.current();
                let key = crate::config::canonical_key(key);
                let type_default =
                    crate::config::defaults(&self.ctx.node().resource_type).get(&key);
                match cfg.get(&key).or(type_default) {
                    Some(v) => Ok(crate::jinja::python::from_json(v)),
                    None if method == "require" && !self.ctx.phase_is_parse() => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("required config '{key}' was not set"),
                    )),
                    None => Ok(default.unwrap_or(Value::from(()))),
                }
            }
            "set" => Ok(Value::from("")),
            _ => Err(no_method("config", method)),
        }
    }
}

/// `model`: the node being rendered, read field by field.
#[derive(Debug)]
pub struct ModelObject {
    pub ctx: Arc<RenderCtx>,
}

impl Object for ModelObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let n = self.ctx.node();
        Some(match key.as_str()? {
            "unique_id" => Value::from(n.unique_id.clone()),
            "name" => Value::from(n.name.clone()),
            "resource_type" => Value::from(n.resource_type.clone()),
            "package_name" => Value::from(n.package.clone()),
            "original_file_path" | "path" => Value::from(n.template.clone()),
            "alias" | "identifier" => Value::from(n.this.identifier.as_str()),
            "schema" => Value::from(n.this.schema.as_str()),
            "database" => Value::from(n.this.database.as_str()),
            // As in dbt, the whole config: the node's own keys over its type's defaults.
            "config" => crate::jinja::python::from_json(
                &serde_json::to_value(crate::config::WithDefaults {
                    own: &n.config,
                    defaults: crate::config::defaults(&n.resource_type),
                })
                .unwrap_or_default(),
            ),
            "tags" => crate::jinja::python::from_json(
                n.config
                    .get("tags")
                    .or_else(|| crate::config::defaults(&n.resource_type).get("tags"))
                    .unwrap_or(&serde_json::Value::Null),
            ),
            _ => return None,
        })
    }
}

/// `exceptions.raise_compiler_error(msg)` and `exceptions.warn(msg)`.
#[derive(Debug)]
pub struct Exceptions;

impl Object for Exceptions {
    fn call_method(
        self: &Arc<Self>,
        state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let (msg,): (String,) = minijinja::value::from_args(args)?;
        match method {
            "raise_compiler_error" | "raise_not_implemented" => {
                Err(Error::new(ErrorKind::InvalidOperation, msg))
            }
            "warn" => {
                if let Some(ctx) = RenderCtx::from_state(state) {
                    ctx.capture.lock().unwrap().logs.push(super::Logged {
                        text: format!("[WARNING]: {msg}"),
                        printed: false,
                    });
                }
                Ok(Value::from(""))
            }
            _ => Err(no_method("exceptions", method)),
        }
    }
}

/// dbt's `context`: `context.get(name, default)` and `context.has(name)` look a variable or
/// macro up by name in the render's own scope (`context[name]` is not supported: an object's
/// item lookup does not see the render's scope).
#[derive(Debug)]
pub struct Context;

impl Object for Context {
    fn call_method(
        self: &Arc<Self>,
        state: &mut State,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "get" => {
                let (name, default): (String, Option<Value>) = minijinja::value::from_args(args)?;
                Ok(state
                    .lookup(&name)
                    .filter(|v| !v.is_undefined())
                    .or(default)
                    .unwrap_or(Value::from(())))
            }
            "__contains__" | "has" => {
                let (name,): (String,) = minijinja::value::from_args(args)?;
                Ok(Value::from(
                    state.lookup(&name).is_some_and(|v| !v.is_undefined()),
                ))
            }
            _ => Err(no_method("context", method)),
        }
    }
}

/// Macros reached through a package name (`dbt.<macro>`).
#[derive(Debug)]
pub struct Namespace(pub std::collections::BTreeMap<String, Value>);

impl Object for Namespace {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.get(key.as_str()?).cloned()
    }
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.keys().map(|k| Value::from(k.as_str())).collect())
    }
}

/// A project macro exposed as a global: calling it renders its file and calls the macro there,
/// so macros need no import, and `return(...)` values come back as values.
#[derive(Debug)]
pub struct MacroProxy {
    pub template: String,
    pub name: String,
    pub unique_id: String,
}

impl Object for MacroProxy {
    // Plain: a macro is truthy (`dbt.type_timestamp or dbt_utils.type_timestamp` picks the
    // first that exists, as Elementary does); a map with no keys would be false.
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }
    fn call(self: &Arc<Self>, state: &mut State, args: &[Value]) -> Result<Value, Error> {
        let ctx = RenderCtx::from_state(state).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "macro called outside a node render",
            )
        })?;
        // As dbt, a node depends on the macros its own code calls; what those call is the
        // macros' own `depends_on` (see `Jinja::macro_deps`).
        use std::sync::atomic::Ordering;
        if ctx.macro_depth.load(Ordering::Relaxed) == 0 {
            ctx.capture
                .lock()
                .unwrap()
                .macros
                .insert(self.unique_id.clone());
        }
        // A unit test's `overrides: macros:` names a macro plainly or with its package
        // (`audit_helper._get_comparison_bounds`).
        let qualified = self
            .unique_id
            .strip_prefix("macro.")
            .unwrap_or(&self.unique_id);
        if let Some(v) = ctx
            .overrides
            .as_ref()
            .and_then(|o| o.macros.get(&self.name).or_else(|| o.macros.get(qualified)))
        {
            return Ok(crate::jinja::python::from_json(v));
        }
        let kept = ctx.shared.templates.get(&self.template).ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownFunction,
                format!("macro file '{}' not found", self.template),
            )
        })?;
        // Each call into another file is a fresh minijinja state, whose own recursion limit
        // does not see the calls before it: without this, macros calling each other without
        // end (a package's `run_query` calling `dbt.run_query` that resolves to itself)
        // overflow the stack and abort the process.
        const MAX_DEPTH: usize = 200;
        if ctx.macro_depth.load(Ordering::Relaxed) >= MAX_DEPTH {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "macro '{}' is {MAX_DEPTH} macro calls deep: macros that call each other without end?",
                    self.name
                ),
            ));
        }
        ctx.macro_depth.fetch_add(1, Ordering::Relaxed);
        let out = crate::jinja::template::call_in_file(
            state,
            kept.template(),
            ctx.context_value(),
            &self.name,
            args,
        );
        ctx.macro_depth.fetch_sub(1, Ordering::Relaxed);
        out
    }
}
