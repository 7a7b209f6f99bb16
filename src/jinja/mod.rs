//! Jinja rendering with dbt's context (minijinja, unforked).
//!
//! One [`Jinja`] environment per invocation holds every node's template and every macro file.
//! Each project macro becomes a global through a proxy object, so macros are callable anywhere
//! without an import. A node is rendered twice: in the **parse** phase `ref`/`source`/`config`
//! only record what they see (no database is touched), and in the **compile** phase they
//! resolve to real relations through a [`Resolve`] implementation.

mod datetime;
pub mod introspect;
pub mod objects;
pub(crate) mod python;
mod re;
mod static_parse;
pub(crate) mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use minijinja::value::{Kwargs, Object, Rest, Value};
use minijinja::{Environment, Error, ErrorKind, State};
use serde_json::Value as Json;

use crate::config::Config;
use crate::diag::{Diagnostic, Location};
pub use objects::{Relation, quote, quote_with_backticks, text_type};
/// A generic test's arguments (dbt's `test_metadata.kwargs`), sorted by name.
pub type TestArgs = crate::small_map::SmallMap;

/// Template name of the built-in macros (dbt's global project).
const BUILTIN_MACROS: &str = "dbt/builtin_macros.sql";
/// dbt's cross-database macros: a template of their own, because calling a macro renders its
/// whole file, and the generic tests (one call per test node) should not pay for these.
const CROSS_DB_MACROS: &str = "dbt/cross_db_macros.sql";

/// A `ref()` call as written: `ref('m')`, `ref('pkg', 'm')`, `ref('m', v=2)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct RefCall {
    pub name: String,
    pub package: Option<String>,
    pub version: Option<String>,
}

/// Resolves references during the compile phase.
pub trait Resolve: Send + Sync {
    fn resolve_ref(&self, from: &str, call: &RefCall) -> Result<Relation, String>;
    fn resolve_source(&self, from: &str, source: &str, table: &str) -> Result<Relation, String>;
}

/// Which render this is.
#[derive(Clone)]
pub enum Phase {
    /// Dependency discovery: refs return placeholders and are recorded.
    Parse,
    /// Final SQL: refs resolve to relations; `is_incremental()` answers `incremental`.
    Compile {
        resolver: Arc<dyn Resolve>,
        incremental: bool,
    },
}

/// A line `log()`, `print()` or `exceptions.warn()` wrote while rendering.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Logged {
    pub text: String,
    /// From `print()`: shown even with `--quiet`, hidden by `--no-print` (as dbt).
    pub printed: bool,
}

/// What a render recorded.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Capture {
    pub refs: Vec<RefCall>,
    pub sources: Vec<(String, String)>,
    /// Merged `config()` calls.
    pub config: Config,
    /// Unique ids of the project macros called.
    pub macros: BTreeSet<String>,
    /// `log()` / `print()` / warnings, in order.
    pub logs: Vec<Logged>,
    /// Ephemeral relations referenced (their CTE names), in order of first use.
    pub ephemerals: Vec<String>,
    pub env_vars: BTreeSet<String>,
    /// The render asked the warehouse (`run_query`, `statement`, `adapter.get_relation`,
    /// `get_columns_in_relation`...): its SQL is made from what the warehouse holds now, which
    /// the nodes built before it in a run may change.
    pub introspected: bool,
}

/// The node being rendered, as Jinja sees it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub unique_id: String,
    pub name: String,
    pub resource_type: String,
    pub package: String,
    /// Template name (the file path), for messages.
    pub template: String,
    /// The template text; compiled on each render instead of being kept compiled, which
    /// costs little and saves ~7 KB per node on large projects.
    pub source: Arc<str>,
    /// Config known before this render (project tree + yml; plus `config()` in compile).
    pub config: Config,
    pub this: Relation,
}

/// What a unit test overrides while its model renders.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub vars: serde_json::Map<String, Json>,
    pub env_vars: serde_json::Map<String, Json>,
    /// Macro name → the value it returns (e.g. `is_incremental: true`).
    pub macros: serde_json::Map<String, Json>,
}

/// Per-render state, reachable from global functions through the `__rsdbt__` variable.
pub struct RenderCtx {
    phase: Phase,
    node: NodeInfo,
    pub(crate) capture: Mutex<Capture>,
    /// Project macro calls in flight (a node depends on the macros its own code calls).
    pub(crate) macro_depth: std::sync::atomic::AtomicUsize,
    pub(crate) overrides: Option<Arc<Overrides>>,
    /// Variables of this render beyond dbt's context (`results`, `schemas` of `on-run-end`),
    /// seen by the macros it calls too, as in dbt.
    extra: Vec<(String, Value)>,
    /// Results of `statement` blocks, for `load_result`.
    pub(crate) statements: Mutex<BTreeMap<String, Value>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RenderCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderCtx")
            .field("node", &self.node.unique_id)
            .finish()
    }
}

impl Object for RenderCtx {}

impl RenderCtx {
    pub(crate) fn from_state(state: &State) -> Option<Arc<RenderCtx>> {
        state
            .lookup("__rsdbt__")
            .and_then(|v| v.downcast_object::<RenderCtx>())
    }

    pub(crate) fn phase_is_parse(&self) -> bool {
        matches!(self.phase, Phase::Parse)
    }

    /// The warehouse for introspection; none while parsing or when no run installed one.
    /// The warehouse, for a question of this render (none while parsing); the render is
    /// then known to depend on what the warehouse holds (see [`Capture::introspected`]).
    pub(crate) fn warehouse(&self) -> Option<Arc<dyn introspect::Warehouse>> {
        if self.phase_is_parse() {
            return None;
        }
        let w = self.shared.warehouse.get().map(|w| w.0.clone());
        if w.is_some() {
            self.capture.lock().unwrap().introspected = true;
        }
        w
    }

    /// The render context: what a model (and every macro it calls) sees as variables, with
    /// this render's extra ones (`schemas`, `results` in `on-run-end`).
    pub(crate) fn context_value(self: &Arc<Self>) -> Value {
        let mut ctx: BTreeMap<String, Value> = self.extra.iter().cloned().collect();
        ctx.insert("__rsdbt__".into(), Value::from_dyn_object(self.clone()));
        ctx.insert("this".into(), Value::from_object(self.node.this.clone()));
        // `model` and `config` are objects that read the node lazily: most renders never
        // look at them, and a node's config is large.
        ctx.insert(
            "model".into(),
            Value::from_object(objects::ModelObject { ctx: self.clone() }),
        );
        ctx.insert(
            "config".into(),
            Value::from_object(objects::ConfigObject { ctx: self.clone() }),
        );
        ctx.insert("execute".into(), Value::from(!self.phase_is_parse()));
        let graph = match self.shared.graph.get() {
            Some(g) if !self.phase_is_parse() => g.clone(),
            _ => self
                .shared
                .empty_graph
                .get_or_init(|| {
                    python::from_json(&serde_json::json!({
                        "nodes": {}, "sources": {}, "exposures": {}, "metrics": {}, "groups": {},
                        "semantic_models": {}, "saved_queries": {}, "unit_tests": {}
                    }))
                })
                .clone(),
        };
        ctx.insert("graph".into(), graph);
        Value::from(ctx)
    }

    pub(crate) fn node(&self) -> &NodeInfo {
        &self.node
    }
}

/// Invocation-wide values shared by every render.
#[derive(Debug)]
struct Shared {
    project_name: String,
    /// Project vars (may hold per-package sub-maps) and `--vars`.
    project_vars: serde_json::Map<String, Json>,
    cli_vars: serde_json::Map<String, Json>,
    /// Each installed package's own `vars:` (defaults for its nodes).
    package_vars: BTreeMap<String, serde_json::Map<String, Json>>,
    /// The project's `dispatch:` config: macro namespace → packages to search, in order.
    pub(crate) dispatch: BTreeMap<String, Vec<String>>,
    warehouse: std::sync::OnceLock<WarehouseSlot>,
    /// dbt's `graph` (see `Jinja::set_graph`); empty while parsing.
    graph: std::sync::OnceLock<Value>,
    /// Macro files, compiled once: template name → template.
    pub(crate) templates: BTreeMap<String, template::Kept>,
    /// `{{ name(__arg0, ...) }}` of [`Jinja::call_macro`], compiled once per macro and
    /// argument count (a project's generate_schema_name is called for every node).
    calls: std::sync::RwLock<BTreeMap<(String, usize), Arc<template::Kept>>>,
    /// The empty `graph` every parse render sees.
    empty_graph: std::sync::OnceLock<Value>,
}

struct WarehouseSlot(Arc<dyn introspect::Warehouse>);

impl std::fmt::Debug for WarehouseSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Warehouse")
    }
}

/// The environment of one invocation.
pub struct Jinja {
    env: Environment<'static>,
    shared: Arc<Shared>,
    /// Macro name → (template, unique_id) of project macros.
    macros: BTreeMap<String, (String, String)>,
    /// Macro unique_id → its `{% macro %}...{% endmacro %}` text (dbt's `macro_sql`).
    macro_sql: BTreeMap<String, String>,
}

/// Inputs to build the environment.
pub struct JinjaInputs<'a> {
    /// dbt's `flags` object (`WHICH`, `FULL_REFRESH`...).
    pub flags: Json,
    pub project_name: &'a str,
    pub target: Json,
    pub project_vars: serde_json::Map<String, Json>,
    pub cli_vars: serde_json::Map<String, Json>,
    pub invocation_id: &'a str,
    pub run_started_at: chrono::DateTime<chrono::Utc>,
    /// (path, source) of each macro file.
    pub macro_files: Vec<(&'a str, Arc<str>)>,
    /// (package, path, source) of each installed package's macro file.
    pub package_macro_files: Vec<(&'a str, &'a str, Arc<str>)>,
    /// Each installed package's own `vars:`.
    pub package_vars: BTreeMap<String, serde_json::Map<String, Json>>,
    /// The project's `dispatch:` config: macro namespace → search order.
    pub dispatch: BTreeMap<String, Vec<String>>,
    /// dbt's runtime config as `builtins.ref.config` shows it: `project_name`, `version`,
    /// `vars`, `cli_vars`, `dependencies` (package name → `project_name`, `version`).
    pub runtime_config: Json,
}

impl Jinja {
    /// Builds the environment; template syntax errors come back as diagnostics (all of them).
    pub fn new(inputs: JinjaInputs) -> Result<Jinja, Vec<Diagnostic>> {
        let mut env = base_env(python::from_json(&inputs.runtime_config));
        let mut templates = BTreeMap::new();
        env.add_global(
            "target",
            Value::from(minijinja::value::Serde(&inputs.target)),
        );
        env.add_global(
            "invocation_id",
            Value::from(inputs.invocation_id.to_string()),
        );
        env.add_global("project_name", Value::from(inputs.project_name.to_string()));
        // The dbt release whose behaviour rsdbt follows (packages branch on it).
        env.add_global(
            "dbt_version",
            Value::from(crate::artifacts::DBT_COMPAT_VERSION),
        );
        env.add_global("flags", Value::from(minijinja::value::Serde(&inputs.flags)));
        // dbt's `invocation_args_dict`: the flags by lower-case name, and the command line
        // (dbt_artifacts records it).
        let mut args: serde_json::Map<String, Json> = inputs
            .flags
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        args.insert(
            "invocation_command".into(),
            Json::String(std::env::args().collect::<Vec<_>>().join(" ")),
        );
        env.add_global(
            "invocation_args_dict",
            python::from_json(&Json::Object(args)),
        );
        // dbt's `dbt_metadata_envs`: `DBT_ENV_CUSTOM_ENV_<NAME>` variables by `<NAME>`.
        let envs: serde_json::Map<String, Json> = std::env::vars()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("DBT_ENV_CUSTOM_ENV_")?;
                Some((name.to_string(), Json::String(v)))
            })
            .collect();
        env.add_global("dbt_metadata_envs", python::from_json(&Json::Object(envs)));
        env.add_global("run_started_at", datetime::utc(inputs.run_started_at));
        let mut diags = Vec::new();
        let mut macros = BTreeMap::new();
        let mut macro_sql = BTreeMap::new();
        for (template, text) in [
            (BUILTIN_MACROS, include_str!("builtin_macros.sql")),
            (CROSS_DB_MACROS, include_str!("cross_db_macros.sql")),
        ] {
            templates.insert(
                template.to_string(),
                template::Kept::compile(template, Arc::from(text))
                    .expect("built-in macros compile"),
            );
            for (name, sql) in macro_blocks(text) {
                macros.insert(
                    name.clone(),
                    (template.to_string(), format!("macro.dbt.{name}")),
                );
                macro_sql.insert(format!("macro.dbt.{name}"), sql);
            }
        }
        let builtin_macros = macros.clone();
        // Then packages' macros: callable by name and as `<package>.<macro>`.
        let mut package_macros: BTreeMap<&str, BTreeMap<String, (String, String)>> =
            BTreeMap::new();
        for (package, path, source) in &inputs.package_macro_files {
            let text = rewrite_macro_file(source);
            match template::Kept::compile(path, Arc::from(text.as_str())) {
                Ok(t) => templates.insert(path.to_string(), t),
                Err(e) => {
                    diags.push(jinja_diagnostic(&e, path, source.clone()));
                    continue;
                }
            };
            for (name, sql) in macro_blocks(&text) {
                if let Some((first, _)) = package_macros.get(*package).and_then(|m| m.get(&name)) {
                    diags.push(
                        Diagnostic::error(
                            "duplicate",
                            format!(
                                "two macros named '{name}' in package '{}': {first} and {path}",
                                *package
                            ),
                        )
                        .at(crate::diag::Location::find(path, source.clone(), &name))
                        .hint("rename or delete one of them (dbt refuses this too)"),
                    );
                    continue;
                }
                let unique_id = format!("macro.{package}.{name}");
                macro_sql.insert(unique_id.clone(), sql);
                let entry = (path.to_string(), unique_id);
                package_macros
                    .entry(package)
                    .or_default()
                    .insert(name.clone(), entry.clone());
                macros.insert(name, entry);
            }
        }
        // Project macros come last: one of the same name replaces the built-in or a package's,
        // as in dbt.
        for (path, source) in &inputs.macro_files {
            let text = rewrite_macro_file(source);
            match template::Kept::compile(path, Arc::from(text.as_str())) {
                Ok(t) => templates.insert(path.to_string(), t),
                Err(e) => {
                    diags.push(jinja_diagnostic(&e, path, source.clone()));
                    continue;
                }
            };
            for (name, sql) in macro_blocks(&text) {
                if let Some((first, _)) = package_macros
                    .get(inputs.project_name)
                    .and_then(|m| m.get(&name))
                {
                    diags.push(
                        Diagnostic::error(
                            "duplicate",
                            format!(
                                "two macros named '{name}' in package '{}': {first} and {path}",
                                inputs.project_name
                            ),
                        )
                        .at(crate::diag::Location::find(path, source.clone(), &name))
                        .hint("rename or delete one of them (dbt refuses this too)"),
                    );
                    continue;
                }
                let unique_id = format!("macro.{}.{}", inputs.project_name, name);
                macro_sql.insert(unique_id.clone(), sql);
                let entry = (path.to_string(), unique_id);
                package_macros
                    .entry(inputs.project_name)
                    .or_default()
                    .insert(name.clone(), entry.clone());
                macros.insert(name, entry);
            }
        }
        let proxy = |name: &str, (template, unique_id): &(String, String)| {
            Value::from_object(objects::MacroProxy {
                template: template.clone(),
                name: name.to_string(),
                unique_id: unique_id.clone(),
            })
        };
        for (name, entry) in &macros {
            env.add_global(name.clone(), proxy(name, entry));
        }
        // `dbt.dateadd(...)`: dbt's own macros, never a package's or the project's of the same
        // name, as in dbt (Elementary's `run_query` macro calls `dbt.run_query`), and what
        // dbt has as macros and rsdbt as functions.
        let mut namespace: BTreeMap<String, Value> = builtin_macros
            .iter()
            .map(|(name, entry)| (name.clone(), proxy(name, entry)))
            .collect();
        namespace.insert(
            "run_query".into(),
            Value::from_function(introspect::run_query),
        );
        namespace.insert(
            "is_incremental".into(),
            Value::from_function(is_incremental),
        );
        namespace.insert(
            "get_where_subquery".into(),
            Value::from_function(get_where_subquery),
        );
        env.add_global("dbt", Value::from_object(objects::Namespace(namespace)));
        // `<package>.<macro>` for each package, and the project's own name for its macros.
        for (package, own) in package_macros {
            // Never shadow a context name (`dbt`, `target`, `this`...) with a package's.
            if [
                "dbt", "target", "this", "model", "config", "adapter", "api", "modules", "context",
                "builtins",
            ]
            .contains(&package)
            {
                continue;
            }
            let members = own
                .into_iter()
                .map(|(name, (template, unique_id))| {
                    let proxy = Value::from_object(objects::MacroProxy {
                        template,
                        name: name.clone(),
                        unique_id,
                    });
                    (name, proxy)
                })
                .collect();
            env.add_global(
                package.to_string(),
                Value::from_object(objects::Namespace(members)),
            );
        }
        let shared = Arc::new(Shared {
            project_name: inputs.project_name.to_string(),
            project_vars: inputs.project_vars,
            cli_vars: inputs.cli_vars,
            package_vars: inputs.package_vars,
            dispatch: inputs.dispatch,
            warehouse: std::sync::OnceLock::new(),
            graph: std::sync::OnceLock::new(),
            templates,
            calls: Default::default(),
            empty_graph: Default::default(),
        });
        if diags.is_empty() {
            Ok(Jinja {
                env,
                shared,
                macros,
                macro_sql,
            })
        } else {
            Err(diags)
        }
    }

    /// What a parse-phase render of `source` would capture, read without rendering when its
    /// only Jinja is `ref`/`source`/`config` calls with literal arguments (dbt's static parser)
    /// and the project overrides none of the three; `None` means render it.
    pub fn parse_statically(&self, source: &str) -> Option<Capture> {
        if ["ref", "source", "config"]
            .iter()
            .any(|name| self.macros.contains_key(*name))
        {
            return None;
        }
        static_parse::capture(source)
    }

    /// Whether the project (not the built-ins) defines a macro with this name, e.g.
    /// `generate_schema_name`.
    pub fn has_project_macro(&self, name: &str) -> bool {
        self.macros
            .get(name)
            .is_some_and(|(template, _)| template != BUILTIN_MACROS && template != CROSS_DB_MACROS)
    }

    /// The unique id of the macro a call to `name` runs (a project macro wins over a built-in).
    pub fn macro_id(&self, name: &str) -> Option<&str> {
        self.macros.get(name).map(|(_, id)| id.as_str())
    }

    /// The text of a macro (for `state:modified.macros`).
    /// The macros a macro calls by name (`name(` or `<package>.name(` in its text), as dbt's
    /// static `depends_on.macros` of a macro.
    pub fn macro_deps(&self, unique_id: &str) -> Vec<String> {
        let mut out = BTreeSet::new();
        let text = self.macro_sql(unique_id);
        // Only Jinja code calls macros; `cast(` in the SQL text is SQL.
        let mut code = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            let after = &rest[start..];
            let close = if after.starts_with("{{") {
                "}}"
            } else if after.starts_with("{%") {
                "%}"
            } else {
                rest = &rest[start + 1..];
                continue;
            };
            let body = &after[2..];
            let end = body.find(close).unwrap_or(body.len());
            code.push(&body[..end]);
            rest = &body[end..];
        }
        for (first, second) in code.iter().flat_map(|c| called_names(c)) {
            let id = match second {
                Some(name) => {
                    let candidate = format!("macro.{first}.{name}");
                    self.macro_sql.contains_key(&candidate).then_some(candidate)
                }
                None => self.macros.get(first).map(|(_, id)| id.clone()),
            };
            if let Some(id) = id.filter(|id| id != unique_id) {
                out.insert(id);
            }
        }
        out.into_iter().collect()
    }

    pub fn macro_sql(&self, unique_id: &str) -> &str {
        self.macro_sql
            .get(unique_id)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Whether any macro file or `extra` text reads `graph` (building it costs a walk over
    /// the whole manifest, done only for projects that use it).
    pub fn reads_graph<'a>(&self, mut extra: impl Iterator<Item = &'a str>) -> bool {
        // Any mention: `{% set g = graph %}` reads it too (a false positive only costs time).
        let mentions = |t: &str| t.contains("graph");
        self.shared.templates.values().any(|t| mentions(t.source())) || extra.any(mentions)
    }

    /// dbt's `graph` for renders after parsing (the manifest as dictionaries).
    pub fn set_graph(&self, graph: &Json) {
        let _ = self.shared.graph.set(python::from_json(graph));
    }

    /// Lets compile-time renders query the warehouse (`run_query`, `adapter.get_relation`...);
    /// set once, when a run has opened its adapter.
    pub fn set_warehouse(&self, warehouse: Arc<dyn introspect::Warehouse>) {
        let _ = self.shared.warehouse.set(WarehouseSlot(warehouse));
    }

    /// Unique ids of all project macros, by name.
    pub fn macros(&self) -> &BTreeMap<String, (String, String)> {
        &self.macros
    }

    /// Renders a node's template with a unit test's overrides.
    pub fn render_node_with(
        &self,
        node: NodeInfo,
        phase: Phase,
        overrides: Arc<Overrides>,
    ) -> Result<(String, Capture), Diagnostic> {
        self.render(node, phase, Some(overrides))
    }

    /// Renders a node's template in the given phase.
    pub fn render_node(
        &self,
        node: NodeInfo,
        phase: Phase,
    ) -> Result<(String, Capture), Diagnostic> {
        self.render(node, phase, None)
    }

    fn render(
        &self,
        node: NodeInfo,
        phase: Phase,
        overrides: Option<Arc<Overrides>>,
    ) -> Result<(String, Capture), Diagnostic> {
        let (name, source) = (node.template.clone(), node.source.clone());
        let rewritten;
        let tmpl = match template::compile(&name, &source) {
            Ok(t) => t,
            Err(e) => match template::with_any_do(&e, &source) {
                Some(text) => {
                    rewritten = text;
                    template::compile(&name, &rewritten)
                        .map_err(|e| jinja_diagnostic(&e, &name, source.clone()))?
                }
                None => return Err(jinja_diagnostic(&e, &name, source)),
            },
        };
        let mut ctx = self.ctx(node, phase);
        Arc::get_mut(&mut ctx).expect("fresh context").overrides = overrides;
        let out = template::render(&self.env, &tmpl, ctx.context_value());
        let capture = std::mem::take(&mut *ctx.capture.lock().unwrap());
        match out {
            Ok(sql) => Ok((sql, capture)),
            Err(e) if e.name() == Some(name.as_str()) => Err(jinja_diagnostic(&e, &name, source)),
            Err(e) => Err(self.error_diag(&e, &name)),
        }
    }

    /// Renders free Jinja text (hooks, `show --inline`) as if inside `node`.
    pub fn render_str(
        &self,
        node: NodeInfo,
        text: &str,
        phase: Phase,
    ) -> Result<(String, Capture), Diagnostic> {
        self.render_str_with(node, text, phase, Vec::new())
    }

    /// [`Self::render_str`] with `extra` context variables.
    pub fn render_str_with(
        &self,
        node: NodeInfo,
        text: &str,
        phase: Phase,
        extra: Vec<(String, Value)>,
    ) -> Result<(String, Capture), Diagnostic> {
        let mut ctx = self.ctx(node, phase);
        Arc::get_mut(&mut ctx).expect("fresh context").extra = extra;
        let out = template::render_str(&self.env, &ctx.node.template, text, ctx.context_value());
        let capture = std::mem::take(&mut *ctx.capture.lock().unwrap());
        out.map(|s| (s, capture)).map_err(|e| {
            Diagnostic::error(
                "jinja",
                format!("{}: {}", ctx.node.template, jinja_message(&e)),
            )
        })
    }

    /// Calls the generic test macro `test_<name>` with dbt's kwargs for the test `node`:
    /// strings that look like `ref(...)`, `source(...)`, `var(...)`, `env_var(...)` or that are
    /// a whole `{{ expression }}` (the `model` kwarg) are evaluated as Jinja expressions, other
    /// strings with Jinja are rendered, `column_name` is passed as written.
    pub fn render_test_call(
        &self,
        node: NodeInfo,
        test_name: &str,
        namespace: Option<&str>,
        kwargs: &TestArgs,
        phase: Phase,
    ) -> Result<(String, Capture), Diagnostic> {
        let macro_name = format!("test_{test_name}");
        // `dbt_utils.not_empty_string` is the package's test, even when the project defines
        // one of the same name.
        let callee = match namespace {
            Some(ns) if ns != self.shared.project_name => format!("{ns}.{macro_name}"),
            _ => macro_name.clone(),
        };
        if !self.macros.contains_key(&macro_name) {
            return Err(Diagnostic::error("unknown-test", format!("generic test '{test_name}' is not defined"))
                .hint(format!("use a built-in test (unique, not_null, accepted_values, relationships), or define it with {{% test {test_name}(model, column_name) %}} in the macro paths or tests/generic/")));
        }
        let ctx = self.ctx(node, phase);
        let mut vars: BTreeMap<String, Value> = BTreeMap::new();
        vars.insert("__rsdbt__".into(), Value::from_dyn_object(ctx.clone()));
        let mut call_args = Vec::new();
        // dbt renders `model` last, so refs in other arguments come first in depends_on.
        let ordered = kwargs
            .iter()
            .filter(|(k, _)| *k != "model")
            .chain(kwargs.iter().filter(|(k, _)| *k == "model"));
        for (i, (key, value)) in ordered.enumerate() {
            let expr = match value {
                Json::String(s) if key != "column_name" => {
                    let trimmed = s.trim();
                    if let Some(inner) = trimmed
                        .strip_prefix("{{")
                        .and_then(|r| r.strip_suffix("}}"))
                        .filter(|i| !i.contains("{{"))
                    {
                        Some(inner.trim().to_string())
                    } else if looks_like_function(trimmed) {
                        Some(trimmed.to_string())
                    } else if s.contains("{{") || s.contains("{%") {
                        let rendered = template::render_str(
                            &self.env,
                            &ctx.node.template,
                            s,
                            ctx.context_value(),
                        )
                        .map_err(|e| self.error_diag(&e, &ctx.node.template))?;
                        vars.insert(format!("__k{i}"), Value::from(rendered));
                        None
                    } else {
                        vars.insert(format!("__k{i}"), Value::from(s.clone()));
                        None
                    }
                }
                other => {
                    // Strings inside lists and mappings are Jinja too, as dbt renders
                    // arguments deeply (`compare_columns: ["{{ 'a' if ... }}"]`).
                    let rendered = deep_render(other, &|s: &str| {
                        template::render_str(&self.env, &ctx.node.template, s, ctx.context_value())
                            .map_err(|e| self.error_diag(&e, &ctx.node.template))
                    })?;
                    vars.insert(format!("__k{i}"), python::from_json(&rendered));
                    None
                }
            };
            call_args.push(format!(
                "{key}={}",
                expr.unwrap_or_else(|| format!("__k{i}"))
            ));
        }
        let text = format!("{{{{ {callee}({}) }}}}", call_args.join(", "));
        let out = template::render_str(&self.env, &ctx.node.template, &text, Value::from(vars));
        let capture = std::mem::take(&mut *ctx.capture.lock().unwrap());
        match out {
            Ok(sql) => Ok((sql, capture)),
            Err(e) => Err(self.error_diag(&e, &ctx.node.template)),
        }
    }

    /// The compiled SQL of dbt's built-in `not_null`, `unique`, `relationships` or
    /// `accepted_values` test, written without a render when nothing the render would run is
    /// the project's own (the test macro, `get_where_subquery`, `should_store_failures`, `ref`,
    /// `source`), the test has no `where`, its relations are plain `ref`/`source` calls of
    /// relations that are not ephemeral, and its other arguments are plain text (or integers
    /// for `values`). The text is the macro's, byte for byte (a unit test renders both);
    /// `None` means render.
    pub fn builtin_test_sql(
        &self,
        unique_id: &str,
        config: &crate::config::Config,
        test_name: &str,
        namespace: Option<&str>,
        kwargs: &TestArgs,
        resolver: &dyn Resolve,
    ) -> Option<String> {
        let builtin = |name: &str| {
            self.macros
                .get(name)
                .is_some_and(|(template, _)| template == BUILTIN_MACROS)
        };
        if namespace.is_some()
            || !builtin(&format!("test_{test_name}"))
            || [
                "get_where_subquery",
                "should_store_failures",
                "ref",
                "source",
            ]
            .iter()
            .any(|m| self.macros.contains_key(*m))
            || config.get("where").is_some_and(|w| !w.is_null())
        {
            return None;
        }
        let text = |key: &str| text_value(kwargs.get(key)?);
        // `ref('x')` / `source('a', 'b')`: the relation it renders to.
        let relation = |call: &str| {
            let call = static_parse::capture(&format!("{{{{ {call} }}}}"))?;
            let relation = match (call.refs.as_slice(), call.sources.as_slice()) {
                ([r], []) if call.config.is_empty() => resolver.resolve_ref(unique_id, r),
                ([], [(s, t)]) if call.config.is_empty() => {
                    resolver.resolve_source(unique_id, s, t)
                }
                _ => return None,
            }
            .ok()?;
            relation.cte_name.is_none().then(|| relation.render())
        };
        let column = text("column_name")?;
        let model = relation(
            kwargs
                .get("model")?
                .as_str()?
                .strip_prefix("{{ get_where_subquery(")?
                .strip_suffix(") }}")?,
        )?;
        let has = |keys: &[&str]| {
            kwargs.len() == keys.len() + 2 && keys.iter().all(|k| kwargs.contains_key(k))
        };
        Some(match test_name {
            "not_null" if has(&[]) => {
                let select = if stores_failures(config) { "*" } else { column };
                format!("select {select}\nfrom {model}\nwhere {column} is null")
            }
            "unique" if has(&[]) => format!(
                "select {column} as unique_field, count(*) as n_records\nfrom {model}\nwhere {column} is not null\ngroup by {column}\nhaving count(*) > 1"
            ),
            "relationships" if has(&["to", "field"]) => {
                // A `to` the render would not call (`ref('x') ` with a space) is its text.
                let to = kwargs
                    .get("to")?
                    .as_str()
                    .filter(|t| looks_like_function(t) && !has_jinja(t))?;
                let (to, field) = (relation(to)?, text("field")?);
                format!(
                    "with child as (\n    select {column} as from_field\n    from {model}\n    where {column} is not null\n),\nparent as (\n    select {field} as to_field\n    from {to}\n)\nselect from_field\nfrom child\nleft join parent on child.from_field = parent.to_field\nwhere parent.to_field is null"
                )
            }
            "accepted_values" if has(&["values"]) || has(&["values", "quote"]) => {
                let quote = kwargs.get("quote").map_or(Some(true), Json::as_bool)?;
                let values = kwargs
                    .get("values")?
                    .as_array()?
                    .iter()
                    .map(|v| {
                        let v = match v {
                            Json::String(_) => text_value(v)?.to_string(),
                            Json::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
                            _ => return None,
                        };
                        Some(if quote { format!("'{v}'") } else { v })
                    })
                    .collect::<Option<Vec<_>>>()?
                    .join(", ");
                format!(
                    "with all_values as (\n    select {column} as value_field, count(*) as n_records\n    from {model}\n    group by {column}\n)\nselect *\nfrom all_values\nwhere value_field not in ({values})"
                )
            }
            _ => return None,
        })
    }

    /// Calls a project macro by name with plain string/JSON arguments, in parse phase.
    pub fn call_macro(
        &self,
        node: NodeInfo,
        name: &str,
        args: &[Json],
    ) -> Result<String, Diagnostic> {
        let ctx = self.ctx(node, Phase::Parse);
        let mut vars = BTreeMap::new();
        vars.insert("__rsdbt__".to_string(), Value::from_dyn_object(ctx.clone()));
        let names: Vec<String> = (0..args.len()).map(|i| format!("__arg{i}")).collect();
        for (n, a) in names.iter().zip(args) {
            vars.insert(n.clone(), python::from_json(a));
        }
        let key = (name.to_string(), args.len());
        let cached = self
            .shared
            .calls
            .read()
            .ok()
            .and_then(|c| c.get(&key).cloned());
        let call = match cached {
            Some(call) => call,
            None => {
                let text = format!("{{{{ {name}({}) }}}}", names.join(", "));
                let call = Arc::new(
                    template::Kept::compile(name, Arc::from(text))
                        .map_err(|e| self.error_diag(&e, name))?,
                );
                if let Ok(mut c) = self.shared.calls.write() {
                    c.insert(key, call.clone());
                }
                call
            }
        };
        template::render(&self.env, call.template(), Value::from(vars))
            .map_err(|e| self.error_diag(&e, name))
    }

    fn ctx(&self, node: NodeInfo, phase: Phase) -> Arc<RenderCtx> {
        Arc::new(RenderCtx {
            phase,
            node,
            capture: Mutex::new(Capture::default()),
            macro_depth: Default::default(),
            overrides: None,
            extra: Vec::new(),
            statements: Mutex::new(BTreeMap::new()),
            shared: self.shared.clone(),
        })
    }

    fn error_diag(&self, e: &Error, fallback: &str) -> Diagnostic {
        let name = e.name().unwrap_or(fallback).to_string();
        let source: Arc<str> = self
            .shared
            .templates
            .get(&name)
            .map(|t| t.source().clone())
            .unwrap_or_else(|| Arc::from(""));
        jinja_diagnostic(e, &name, source)
    }
}

/// A string test argument that renders as itself: no Jinja, not an expression.
fn text_value(v: &Json) -> Option<&str> {
    v.as_str()
        .filter(|s| !has_jinja(s) && !looks_like_function(s))
}

fn has_jinja(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// dbt renders test kwargs like `ref('x')` or `var('y')` as expressions, not text.
pub(crate) fn looks_like_function(s: &str) -> bool {
    ["env_var", "ref", "var", "source", "doc"].iter().any(|f| {
        s.strip_prefix(f)
            .map(str::trim_start)
            .is_some_and(|rest| rest.starts_with('(') && s.ends_with(')'))
    })
}

/// The message of a minijinja error without its location suffix.
fn jinja_message(e: &Error) -> String {
    let detail = e
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| e.kind().to_string());
    match e.kind() {
        ErrorKind::SyntaxError => format!("Jinja syntax error: {detail}"),
        ErrorKind::UndefinedError => format!("undefined value: {detail}"),
        ErrorKind::UnknownFunction => format!("unknown function or macro: {detail}"),
        ErrorKind::InvalidOperation => detail,
        _ => format!("{}: {detail}", e.kind()),
    }
}

/// A diagnostic for a minijinja error in template `name`.
pub fn jinja_diagnostic(e: &Error, name: &str, source: Arc<str>) -> Diagnostic {
    let message = jinja_message(e);
    let detail = e.detail().unwrap_or("");
    let quoted = detail.split('\'').nth(1).unwrap_or("x");
    let hint = match e.kind() {
        _ if detail.starts_with("Required var") => &*format!(
            "define it under `vars:` in the project file, pass --vars '{{{quoted}: ...}}', or give a default: var('{quoted}', 'value')"
        ),
        _ if detail.starts_with("Env var required") => &*format!(
            "set {quoted} in the environment, or give a default: env_var('{quoted}', 'value')"
        ),
        ErrorKind::SyntaxError => {
            "check the Jinja tags around the marked line: every `{%` needs a matching `%}` and every block (if, for, macro) its end tag"
        }
        ErrorKind::UnknownFunction => {
            "define the macro in a file under the macro paths, or check its spelling"
        }
        ErrorKind::UndefinedError => {
            "define the variable with {% set %}, pass it as a var (`var('x', default)`), or check its spelling"
        }
        _ => "fix the Jinja expression at the marked line",
    };
    let mut d = Diagnostic::error("jinja", format!("{message} (in {name})")).hint(hint);
    if source.is_empty() {
        return d;
    }
    if let Some(range) = e.range() {
        d = d.at(Location {
            path: name.to_string(),
            source,
            offset: range.start,
            len: range.len().max(1),
        });
    } else if let Some(line) = e.line() {
        d = d.at(Location::at_line_col(name, source, line, 1));
    } else {
        d = d.at(Location::file(name, source));
    }
    let label = match e.kind() {
        ErrorKind::SyntaxError => detail.to_string(),
        _ => "while rendering this".to_string(),
    };
    d.label(label)
}

/// A macro file as minijinja compiles it, lines kept: dbt's `{% test name(...) %}` blocks are
/// macros named `test_name`, and `{% materialization name, adapter %}` blocks are blanked
/// (rsdbt's materializations are Rust; a package that ships its own, as Elementary does,
/// still loads, and a model asking for one gets "unknown materialization").
fn rewrite_macro_file(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    // Inside a materialization block: its text is dropped, its line breaks kept.
    let mut skipping = false;
    let keep = |out: &mut String, text: &str, skipping: bool| {
        if skipping {
            out.extend(text.chars().filter(|&c| c == '\n'));
        } else {
            out.push_str(text);
        }
    };
    while let Some(start) = rest.find("{%") {
        keep(&mut out, &rest[..start], skipping);
        let after = &rest[start..];
        let Some(end) = after.find("%}") else {
            keep(&mut out, after, skipping);
            return out;
        };
        let tag = &after[..end + 2];
        let inner = tag[2..tag.len() - 2]
            .trim_matches(|c: char| c == '-' || c == '+')
            .trim();
        if skipping {
            keep(&mut out, tag, true);
            skipping = inner != "endmaterialization";
        } else if inner.starts_with("materialization ") {
            keep(&mut out, tag, true);
            skipping = true;
        } else if let Some(rest_of) = inner.strip_prefix("test ") {
            out.push_str(&tag.replacen(
                &format!("test {}", rest_of.trim_start()),
                &format!("macro test_{}", rest_of.trim_start()),
                1,
            ));
        } else if inner == "endtest" {
            out.push_str(&tag.replacen("endtest", "endmacro", 1));
        } else if let Some(rewritten) = late_defaults(tag) {
            out.push_str(&rewritten);
        } else {
            out.push_str(tag);
        }
        rest = &after[end + 2..];
    }
    keep(&mut out, rest, skipping);
    out
}

/// A `{% macro %}` tag whose parameter defaults read earlier parameters
/// (`name=schema_name`), made to work as in Jinja2, which evaluates a default after the
/// parameters before it: minijinja evaluates defaults before any parameter is bound, so such a
/// default becomes an unset marker, and the body starts by assigning it (on the tag's line,
/// without output). None for any other tag.
fn late_defaults(tag: &str) -> Option<String> {
    let open = tag.find('(')?;
    let close = tag.rfind(')')?;
    let head = tag[2..open].trim_start_matches(['-', '+']).trim_start();
    if !head.starts_with("macro ") || close < open {
        return None;
    }
    let params = split_top_level(&tag[open + 1..close]);
    let mut seen: Vec<&str> = Vec::new();
    let mut late: Vec<(&str, &str)> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    for param in &params {
        let (name, default) = match param.split_once('=') {
            Some((n, d)) => (n.trim(), Some(d.trim())),
            None => (param.trim(), None),
        };
        match default {
            Some(d) if identifiers(d).any(|id| seen.contains(&id)) => {
                late.push((name, d));
                kept.push(format!("{name}=__rsdbt_unset"));
            }
            _ => kept.push(param.trim().to_string()),
        }
        seen.push(name);
    }
    if late.is_empty() {
        return None;
    }
    let prologue: String = late
        .iter()
        .map(|(name, d)| {
            format!("{{% if {name} is undefined %}}{{% set {name} = ({d}) %}}{{% endif %}}")
        })
        .collect();
    Some(format!(
        "{}{}{}{prologue}",
        &tag[..open + 1],
        kept.join(", "),
        &tag[close..]
    ))
}

/// `text` split at the commas outside brackets and strings.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut quote, mut start) = (Vec::new(), 0i32, None, 0);
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !text[start..].trim().is_empty() {
        parts.push(&text[start..]);
    }
    parts
}

/// The variable names an expression reads (not attributes, not inside strings).
fn identifiers(expr: &str) -> impl Iterator<Item = &str> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut quote) = (0, None);
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if start == 0 || bytes[start - 1] != b'.' {
                    out.push(&expr[start..i]);
                }
                continue;
            }
            None => {}
        }
        i += 1;
    }
    out.into_iter()
}

/// Names of the top-level `{% macro name(...) %}` blocks of a macro file.
#[cfg(test)]
fn macro_names(source: &str) -> Vec<String> {
    macro_blocks(source)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// `(name, text)` of each top-level `{% macro name(...) %}...{% endmacro %}` block.
fn macro_blocks(source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(start) = source[pos..].find("{%").map(|i| pos + i) {
        let after = &source[start + 2..];
        let inner = after.trim_start_matches(['-', '+']).trim_start();
        let Some(def) = inner.strip_prefix("macro ") else {
            pos = start + 2;
            continue;
        };
        let name: String = def
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The block ends at the first `endmacro` tag after it (macros do not nest at top level).
        let end = source[start..]
            .find("endmacro")
            .and_then(|e| source[start + e..].find("%}").map(|c| start + e + c + 2))
            .unwrap_or(source.len());
        if !name.is_empty() {
            out.push((name, source[start..end].to_string()));
        }
        pos = end;
    }
    out
}

/// The environment shared by model rendering and YAML value rendering.
fn base_env(runtime_config: Value) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // dbt's Jinja is Python's: mutable lists and dicts, "a,b".split(","), d.items() ...
    python::install(&mut env);
    template::install(&mut env);
    env.add_function("env_var", env_var);
    env.add_function("var", var);
    env.add_function("ref", ref_fn);
    env.add_function("source", source_fn);
    env.add_function("is_incremental", is_incremental);
    env.add_function("get_where_subquery", get_where_subquery);
    env.add_function("should_store_failures", |state: &State| -> bool {
        RenderCtx::from_state(state).is_some_and(|ctx| stores_failures(&ctx.node.config))
    });
    env.add_function("log", log);
    env.add_function("print", print);
    env.add_function("return", template::return_value);
    env.add_function("fromjson", |s: &str| -> Result<Value, Error> {
        let v: Json = serde_json::from_str(s)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
        Ok(python::from_json(&v))
    });
    env.add_function("tojson", |v: Value| -> Result<String, Error> {
        serde_json::to_string(&v)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))
    });
    // dbt's `set()`/`zip()` give `default` where Python raises; the `_strict` ones raise.
    fn unique(v: &Value) -> Result<Value, Error> {
        Ok(python::set_of(v.try_iter()?.collect()))
    }
    fn zipped(lists: &[Value]) -> Result<Value, Error> {
        let cols: Vec<Vec<Value>> = lists
            .iter()
            .map(|l| l.try_iter().map(Iterator::collect))
            .collect::<Result<_, _>>()?;
        let n = cols.iter().map(Vec::len).min().unwrap_or(0);
        Ok(python::list(
            (0..n)
                .map(|i| {
                    Value::from(minijinja::value::Tuple::from(
                        cols.iter().map(|c| c[i].clone()).collect::<Vec<_>>(),
                    ))
                })
                .collect(),
        ))
    }
    env.add_function(
        "set",
        |v: Value, default: Option<Value>, kwargs: Kwargs| -> Result<Value, Error> {
            let default = default.or(kwargs.get::<Option<Value>>("default")?);
            Ok(unique(&v).unwrap_or_else(|_| default.unwrap_or_default()))
        },
    );
    env.add_function("set_strict", |v: Value| unique(&v));
    env.add_function(
        "zip",
        |lists: Rest<Value>, kwargs: Kwargs| -> Result<Value, Error> {
            let default: Option<Value> = kwargs.get("default")?;
            Ok(zipped(&lists).unwrap_or_else(|_| default.unwrap_or_default()))
        },
    );
    env.add_function("zip_strict", |lists: Rest<Value>| zipped(&lists));
    env.add_filter("as_bool", |v: Value| {
        v.is_true() || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
    });
    env.add_filter("as_number", |v: Value| -> Value {
        v.as_str()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(Value::from)
            .unwrap_or(v)
    });
    env.add_filter("as_text", |v: Value| v.to_string());
    env.add_filter("as_native", |v: Value| v);
    env.add_global("exceptions", Value::from_object(objects::Exceptions));
    env.add_global("adapter", Value::from_object(introspect::AdapterObject));
    env.add_function(
        "load_relation",
        |state: &minijinja::State, rel: Value| match rel.downcast_object_ref::<Relation>() {
            Some(r) => introspect::relation_if_built(
                state,
                Relation::new(&r.database, &r.schema, &r.identifier),
            ),
            None => Ok(Value::from(())),
        },
    );
    env.add_global("api", Value::from_object(introspect::Api));
    // dbt's `builtins` (the original `ref`/`source`/`var`... when a project overrides them)
    // and `context` (`context.get('name')` finds a macro or variable by name).
    env.add_global(
        "builtins",
        Value::from_object(objects::Namespace(
            [
                ("ref", Value::from_object(BuiltinRef(runtime_config))),
                ("source", Value::from_function(source_fn)),
                ("var", Value::from_function(var)),
                ("env_var", Value::from_function(env_var)),
                ("return", Value::from_function(template::return_value)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )),
    );
    env.add_global("context", Value::from_object(objects::Context));
    env.add_function("run_query", introspect::run_query);
    env.add_global("statement", Value::from_object(introspect::Statement));
    env.add_function("load_result", introspect::load_result);
    let mut modules = BTreeMap::new();
    modules.insert("datetime", datetime::module());
    modules.insert("pytz", datetime::pytz());
    modules.insert("re", Value::from_object(re::Module));
    env.add_global("modules", Value::from(modules));
    env
}

fn ctx_of(state: &State) -> Result<Arc<RenderCtx>, Error> {
    RenderCtx::from_state(state).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            "only available while rendering a node",
        )
    })
}

fn env_var(state: &State, name: &str, default: Option<Value>) -> Result<Value, Error> {
    if crate::secrets::is_secret_var(name)
        && !state.lookup("__secrets_ok__").is_some_and(|v| v.is_true())
    {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "Secret env vars are allowed only in profiles.yml or packages.yml: env_var('{name}') (dbt's rule: a secret must never reach compiled SQL or artifacts)"
            ),
        ));
    }
    if let Some(ctx) = RenderCtx::from_state(state) {
        ctx.capture
            .lock()
            .unwrap()
            .env_vars
            .insert(name.to_string());
        if let Some(v) = ctx.overrides.as_ref().and_then(|o| o.env_vars.get(name)) {
            return Ok(Value::from(match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            }));
        }
    }
    match std::env::var(name) {
        Ok(v) => Ok(Value::from(v)),
        Err(_) => default.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("Env var required but not provided: '{name}'"),
            )
        }),
    }
}

fn var(state: &State, name: &str, default: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    // A default of `none` is a default, as in dbt (`var('tz', none)`): taken as a plain value,
    // since minijinja reads a `none` passed for an `Option` as no argument.
    let default = match default.0.as_slice() {
        [d] => Some(d.clone()),
        [] if kwargs.has("default") => Some(kwargs.get::<Value>("default")?),
        [] => None,
        _ => return Err(Error::from(ErrorKind::TooManyArguments)),
    };
    kwargs.assert_all_used()?;
    // Outside a node (profiles/project rendering) the vars come from the context.
    let found = match RenderCtx::from_state(state) {
        Some(ctx) => match ctx.overrides.as_ref().and_then(|o| o.vars.get(name)) {
            Some(v) => Some(v.clone()),
            None => match lookup_var(&ctx.shared, &ctx.node.package, name) {
                // A var written as Jinja in a project file (`"{{ 300 if target.type ==
                // 'bigquery' else 10000 }}"`) is rendered where it is read, with the target.
                Some(Json::String(text)) if text.contains("{{") || text.contains("{%") => {
                    let out =
                        template::render_str(state.env(), "<var>", &text, ctx.context_value())?;
                    return Ok(Value::from(out));
                }
                other => other,
            },
        },
        None => state
            .lookup("__vars__")
            .and_then(|v| v.get_attr(name).ok())
            .filter(|v| !v.is_undefined())
            .map(|v| serde_json::to_value(&v).unwrap_or(Json::Null)),
    };
    match found {
        Some(v) => Ok(python::from_json(&v)),
        None => default.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("Required var '{name}' not found in config"),
            )
        }),
    }
}

/// dbt's order: `--vars`, the root project's vars for the package, its global vars, then the
/// package's own defaults.
fn lookup_var(shared: &Shared, package: &str, name: &str) -> Option<Json> {
    if let Some(v) = shared.cli_vars.get(name) {
        return Some(v.clone());
    }
    if let Some(v) = shared.project_vars.get(package).and_then(|p| p.get(name)) {
        return Some(v.clone());
    }
    shared
        .project_vars
        .get(name)
        .filter(|_| name != shared.project_name)
        .or_else(|| {
            // The package's own file: `vars: {<package>: {name: ..}}` scoped to itself, or
            // `vars: {name: ..}`.
            let own = shared.package_vars.get(package)?;
            own.get(package)
                .and_then(Json::as_object)
                .and_then(|scoped| scoped.get(name))
                .or_else(|| own.get(name))
        })
        .cloned()
}

/// `builtins.ref`: `ref` itself, and dbt's runtime config as its `config` (what packages such
/// as Elementary read the project's name, vars and package versions from).
#[derive(Debug)]
struct BuiltinRef(Value);

impl Object for BuiltinRef {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Plain
    }
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        (key.as_str()? == "config").then(|| self.0.clone())
    }
    fn call(self: &Arc<Self>, state: &mut State, args: &[Value]) -> Result<Value, Error> {
        let (names, kwargs): (Rest<Value>, Kwargs) = minijinja::value::from_args(args)?;
        ref_fn(state, names, kwargs)
    }
}

fn ref_fn(state: &State, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let ctx = ctx_of(state)?;
    let strs: Vec<String> = args
        .iter()
        .map(|a| {
            a.as_str().map(str::to_string).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "ref() takes model names as strings",
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let version: Option<Value> = kwargs.get("version").ok().or_else(|| kwargs.get("v").ok());
    let call = match strs.as_slice() {
        [name] => RefCall {
            name: name.clone(),
            package: None,
            version: None,
        },
        [package, name] => RefCall {
            name: name.clone(),
            package: Some(package.clone()),
            version: None,
        },
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "ref() takes one or two arguments: ref('model') or ref('package', 'model')",
            ));
        }
    };
    let call = RefCall {
        version: version.filter(|v| !v.is_none()).map(|v| v.to_string()),
        ..call
    };
    match &ctx.phase {
        Phase::Parse => {
            ctx.capture.lock().unwrap().refs.push(call.clone());
            let db = ctx.node.this.database.clone();
            Ok(Value::from_object(Relation::new(
                &db,
                &ctx.node.this.schema,
                &call.name,
            )))
        }
        Phase::Compile { resolver, .. } => {
            let rel = resolver
                .resolve_ref(&ctx.node.unique_id, &call)
                .map_err(|m| Error::new(ErrorKind::InvalidOperation, m))?;
            if let Some(cte) = &rel.cte_name {
                let mut cap = ctx.capture.lock().unwrap();
                if !cap.ephemerals.contains(cte) {
                    cap.ephemerals.push(cte.clone());
                }
            }
            Ok(Value::from_object(rel))
        }
    }
}

fn source_fn(state: &State, source: &str, table: &str) -> Result<Value, Error> {
    let ctx = ctx_of(state)?;
    match &ctx.phase {
        Phase::Parse => {
            ctx.capture
                .lock()
                .unwrap()
                .sources
                .push((source.to_string(), table.to_string()));
            Ok(Value::from_object(Relation::new(
                &ctx.node.this.database,
                source,
                table,
            )))
        }
        Phase::Compile { resolver, .. } => resolver
            .resolve_source(&ctx.node.unique_id, source, table)
            .map(Value::from_object)
            .map_err(|m| Error::new(ErrorKind::InvalidOperation, m)),
    }
}

/// Names followed by `(` in `text`: `name(` gives `(name, None)`, `pkg.name(` gives
/// `(pkg, Some(name))`.
fn called_names(text: &str) -> Vec<(&str, Option<&str>)> {
    let is_start = |c: u8| c.is_ascii_alphabetic() || c == b'_';
    let is_part = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = text.as_bytes();
    let ident_end = |mut i: usize| {
        while i < b.len() && is_part(b[i]) {
            i += 1;
        }
        i
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let preceded = i > 0 && (is_part(b[i - 1]) || b[i - 1] == b'.');
        if !is_start(b[i]) || preceded {
            i += 1;
            continue;
        }
        let end = ident_end(i);
        let first = &text[i..end];
        let (second, mut j) = if end + 1 < b.len() && b[end] == b'.' && is_start(b[end + 1]) {
            let e2 = ident_end(end + 1);
            (Some(&text[end + 1..e2]), e2)
        } else {
            (None, end)
        };
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < b.len() && b[j] == b'(' {
            out.push((first, second));
        }
        i = end.max(i + 1);
    }
    out
}

/// dbt's `should_store_failures()` for a test's config.
fn stores_failures(c: &Config) -> bool {
    c.get("store_failures")
        .and_then(Json::as_bool)
        .unwrap_or(false)
        || c.get("store_failures_as").is_some_and(|v| v.is_string())
}

/// A test's `model`: the relation, narrowed by the test's `where` config when it has one.
fn get_where_subquery(state: &State, relation: Value) -> Result<Value, Error> {
    let ctx = ctx_of(state)?;
    // A macro in dbt, and in dbt's `depends_on.macros` of every generic test.
    ctx.capture
        .lock()
        .unwrap()
        .macros
        .insert("macro.dbt.get_where_subquery".into());
    let Some(filter) = ctx
        .node
        .config
        .get("where")
        .and_then(Json::as_str)
        .filter(|w| !w.trim().is_empty())
    else {
        return Ok(relation);
    };
    let filter = if filter.contains("{{") {
        template::render_str(state.env(), &ctx.node.template, filter, ctx.context_value())?
    } else {
        filter.to_string()
    };
    Ok(Value::from_safe_string(format!(
        "(select * from {relation} where {filter}) dbt_subquery"
    )))
}

fn is_incremental(state: &State) -> Result<bool, Error> {
    let ctx = ctx_of(state)?;
    if let Some(v) = ctx
        .overrides
        .as_ref()
        .and_then(|o| o.macros.get("is_incremental"))
    {
        return Ok(v.as_bool().unwrap_or(false));
    }
    Ok(matches!(
        ctx.phase,
        Phase::Compile {
            incremental: true,
            ..
        }
    ))
}

fn log(state: &State, msg: Value, info: Option<bool>, kwargs: Kwargs) -> Result<String, Error> {
    let info = match info {
        Some(i) => Some(i),
        None => kwargs.get::<Option<bool>>("info")?,
    };
    kwargs.assert_all_used()?;
    if info.unwrap_or(false)
        && let Some(ctx) = RenderCtx::from_state(state)
    {
        ctx.capture.lock().unwrap().logs.push(Logged {
            text: msg.to_string(),
            printed: false,
        });
    }
    Ok(String::new())
}

fn print(state: &State, msg: Value) -> String {
    emit(state, msg.to_string());
    String::new()
}

/// Text a template prints (`print()`, agate's `print_table()`), shown by the command.
pub(crate) fn emit(state: &State, text: String) {
    if let Some(ctx) = RenderCtx::from_state(state) {
        ctx.capture.lock().unwrap().logs.push(Logged {
            text,
            printed: true,
        });
    }
}

/// `v` with every string holding Jinja rendered by `render`, however deep (dbt renders
/// test arguments, configs and source properties this way).
/// Whether [`deep_render`] would render anything in `v`.
pub fn renders_any(v: &Json) -> bool {
    match v {
        Json::String(s) => s.contains("{{") || s.contains("{%"),
        Json::Array(items) => items.iter().any(renders_any),
        Json::Object(map) => map.values().any(renders_any),
        _ => false,
    }
}

pub fn deep_render(
    v: &Json,
    render: &dyn Fn(&str) -> Result<String, Diagnostic>,
) -> Result<Json, Diagnostic> {
    Ok(match v {
        Json::String(s) if s.contains("{{") || s.contains("{%") => Json::String(render(s)?),
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|i| deep_render(i, render))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), deep_render(v, render)?)))
                .collect::<Result<_, Diagnostic>>()?,
        ),
        other => other.clone(),
    })
}

/// A JSON value as Jinja sees it: lists and dicts are Python's, mutable.
pub fn value_of(v: &Json) -> Value {
    python::from_json(v)
}

/// Renders one string from a YAML file (project, profile, packages) with `env_var()` and
/// `var()`; `secrets`: the file may read `DBT_ENV_SECRET_*` variables (profiles, packages).
pub fn render_config_string(
    text: &str,
    vars: &serde_json::Map<String, Json>,
    secrets: bool,
) -> Result<String, String> {
    thread_local! {
        static ENV: Environment<'static> = base_env(python::from_json(&Json::Object(Default::default())));
    }
    ENV.with(|env| {
        let mut ctx = BTreeMap::new();
        ctx.insert("__vars__", Value::from(minijinja::value::Serde(vars)));
        ctx.insert("__secrets_ok__", Value::from(secrets));
        template::render_str(env, "<config>", text, Value::from(ctx)).map_err(|e| jinja_message(&e))
    })
}

/// An environment with dbt's macros and `macro_files`, for tests.
#[cfg(test)]
pub(crate) fn test_env(macro_files: Vec<(&'static str, Arc<str>)>) -> Jinja {
    Jinja::new(JinjaInputs {
        flags: serde_json::json!({}),
        project_name: "p",
        target: serde_json::json!({"name": "dev", "schema": "main", "database": "warehouse", "type": "datafusion"}),
        project_vars: Default::default(),
        cli_vars: Default::default(),
        invocation_id: "i",
        run_started_at: chrono::Utc::now(),
        macro_files,
        package_macro_files: vec![],
        package_vars: Default::default(),
        dispatch: Default::default(),
        runtime_config: serde_json::json!({"project_name": "p"}),
    })
    .unwrap_or_else(|d| panic!("{d:?}"))
}

/// A node of `kind` named `name` with `source` as its text, for tests.
#[cfg(test)]
pub(crate) fn test_node(kind: &str, name: &str, source: &str) -> NodeInfo {
    NodeInfo {
        unique_id: format!("{kind}.p.{name}"),
        name: name.into(),
        resource_type: kind.into(),
        package: "p".into(),
        template: format!("models/{name}.sql"),
        source: Arc::from(source),
        config: Config::new(),
        this: Relation::new("warehouse", "main", name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Resolve for Fixed {
        fn resolve_ref(&self, _from: &str, call: &RefCall) -> Result<Relation, String> {
            let mut r = Relation::new("warehouse", "main", &call.name);
            if call.name == "eph" {
                r.cte_name = Some("__dbt__cte__eph".into());
            }
            Ok(r)
        }
        fn resolve_source(&self, _from: &str, s: &str, t: &str) -> Result<Relation, String> {
            Ok(Relation::new("warehouse", s, t))
        }
    }

    /// dbt's not_null, unique, relationships and accepted_values SQL written without a render
    /// is the render's, byte for byte; what it cannot write is rendered.
    #[test]
    fn builtin_test_sql_is_what_the_render_gives() {
        let env = test_env(vec![]);
        let phase = || Phase::Compile {
            resolver: Arc::new(Fixed),
            incremental: false,
        };
        let kwargs = |column: &str, model: &str| {
            serde_json::json!({"column_name": column, "model": format!("{{{{ get_where_subquery({model}) }}}}")})
                .as_object()
                .unwrap()
                .clone()
        };
        for (test, column, model, config) in [
            ("not_null", "id", "ref('orders')", serde_json::json!({})),
            (
                "not_null",
                "\"Id\"",
                "ref('orders')",
                serde_json::json!({"store_failures": true}),
            ),
            (
                "not_null",
                "id",
                "source('raw', 'pay')",
                serde_json::json!({"store_failures_as": "view"}),
            ),
            (
                "unique",
                "order_id",
                "ref('orders', v=2)",
                serde_json::json!({"severity": "warn"}),
            ),
            (
                "unique",
                "lower(email)",
                "ref(\"pkg\", 'users')",
                serde_json::json!({}),
            ),
        ] {
            let mut node = test_node("test", "t", "");
            node.config = config.as_object().unwrap().clone().into();
            let args = TestArgs::from(kwargs(column, model));
            let written = env
                .builtin_test_sql(&node.unique_id, &node.config, test, None, &args, &Fixed)
                .unwrap_or_else(|| panic!("{test} {column} {model}"));
            let (rendered, _) = env
                .render_test_call(node, test, None, &args, phase())
                .unwrap();
            assert_eq!(written, rendered);
        }
        let with = |column: &str, model: &str, extra: Json| {
            let mut args = kwargs(column, model);
            args.extend(extra.as_object().unwrap().clone());
            TestArgs::from(args)
        };
        for (test, args) in [
            (
                "relationships",
                with(
                    "customer_id",
                    "ref('orders')",
                    serde_json::json!({"to": "ref('customers')", "field": "id"}),
                ),
            ),
            (
                "relationships",
                with(
                    "c",
                    "source('raw', 'pay')",
                    serde_json::json!({"to": "source('raw', 'cust')", "field": "\"Key\""}),
                ),
            ),
            (
                "relationships",
                with(
                    "c",
                    "ref('orders')",
                    serde_json::json!({"to": "ref('pkg', 'customers', v=3)", "field": "id"}),
                ),
            ),
            (
                "accepted_values",
                with(
                    "status",
                    "ref('orders')",
                    serde_json::json!({"values": ["placed", "shipped", "it's"]}),
                ),
            ),
            (
                "accepted_values",
                with(
                    "n",
                    "ref('orders')",
                    serde_json::json!({"values": [1, 2, 30], "quote": false}),
                ),
            ),
            (
                "accepted_values",
                with(
                    "n",
                    "ref('orders')",
                    serde_json::json!({"values": [1, "b"], "quote": true}),
                ),
            ),
            (
                "accepted_values",
                with(
                    "n",
                    "ref('orders')",
                    serde_json::json!({"values": ["only"]}),
                ),
            ),
        ] {
            let node = test_node("test", "t", "");
            let written = env
                .builtin_test_sql(&node.unique_id, &node.config, test, None, &args, &Fixed)
                .unwrap_or_else(|| panic!("{test} {args:?}"));
            let (rendered, _) = env
                .render_test_call(node, test, None, &args, phase())
                .unwrap();
            assert_eq!(written, rendered);
        }
        let node = test_node("test", "t", "");
        for (test, args) in [
            (
                "accepted_values",
                TestArgs::from(kwargs("id", "ref('orders')")),
            ),
            ("not_null", TestArgs::from(kwargs("id", "ref('eph')"))),
            (
                "not_null",
                TestArgs::from(kwargs("{{ var('c') }}", "ref('orders')")),
            ),
            (
                "not_null",
                TestArgs::from(kwargs("ref('x')", "ref('orders')")),
            ),
            (
                "relationships",
                with(
                    "c",
                    "ref('orders')",
                    serde_json::json!({"to": "ref('eph')", "field": "id"}),
                ),
            ),
            (
                "relationships",
                with(
                    "c",
                    "ref('orders')",
                    serde_json::json!({"to": "ref('x') ", "field": "id"}),
                ),
            ),
            (
                "relationships",
                with(
                    "c",
                    "ref('orders')",
                    serde_json::json!({"to": "raw.customers", "field": "id"}),
                ),
            ),
            (
                "relationships",
                with(
                    "c",
                    "ref('orders')",
                    serde_json::json!({"to": "ref('x')", "field": "{{ var('f') }}"}),
                ),
            ),
            (
                "accepted_values",
                with("n", "ref('orders')", serde_json::json!({"values": [1.5]})),
            ),
            (
                "accepted_values",
                with("n", "ref('orders')", serde_json::json!({"values": [true]})),
            ),
            (
                "accepted_values",
                with(
                    "n",
                    "ref('orders')",
                    serde_json::json!({"values": ["{{ var('v') }}"]}),
                ),
            ),
            (
                "accepted_values",
                with(
                    "n",
                    "ref('orders')",
                    serde_json::json!({"values": ["a"], "quote": "yes"}),
                ),
            ),
            (
                "accepted_values",
                with(
                    "n",
                    "ref('orders')",
                    serde_json::json!({"values": ["a"], "other": 1}),
                ),
            ),
        ] {
            assert!(
                env.builtin_test_sql(&node.unique_id, &node.config, test, None, &args, &Fixed)
                    .is_none()
            );
        }
        let mut filtered = test_node("test", "t", "");
        filtered.config.insert("where".into(), Json::from("id > 1"));
        let args = TestArgs::from(kwargs("id", "ref('orders')"));
        assert!(
            env.builtin_test_sql(
                &filtered.unique_id,
                &filtered.config,
                "not_null",
                None,
                &args,
                &Fixed
            )
            .is_none()
        );
        assert!(
            env.builtin_test_sql(
                &node.unique_id,
                &node.config,
                "not_null",
                Some("dbt_utils"),
                &args,
                &Fixed
            )
            .is_none()
        );
        let own = test_env(vec![(
            "macros/t.sql",
            Arc::from("{% test not_null(model, column_name) %}select 1{% endtest %}"),
        )]);
        assert!(
            own.builtin_test_sql(
                &node.unique_id,
                &node.config,
                "not_null",
                None,
                &args,
                &Fixed
            )
            .is_none()
        );
    }

    #[test]
    fn test_blocks_become_macros_on_the_same_lines() {
        let src = "{% test positive(model, column_name) %}\nselect 1\n{%- endtest %}";
        let out = rewrite_macro_file(src);
        assert_eq!(
            out,
            "{% macro test_positive(model, column_name) %}\nselect 1\n{%- endmacro %}"
        );
        assert_eq!(macro_names(&out), vec!["test_positive"]);
    }

    #[test]
    fn materialization_blocks_are_blanked_on_the_same_lines() {
        let src = "{% macro a() %}1{% endmacro %}\n\
                   {% materialization non_dbt, default -%}\n\
                   {% set x = 1 %}{% call statement('main') %}select 1{% endcall %}\n\
                   {{ return({'relations': []}) }}\n\
                   {%- endmaterialization %}\n\
                   {% macro b() %}2{% endmacro %}";
        let out = rewrite_macro_file(src);
        assert_eq!(
            out,
            "{% macro a() %}1{% endmacro %}\n\n\n\n\n{% macro b() %}2{% endmacro %}"
        );
        assert_eq!(macro_names(&out), vec!["a", "b"]);
    }

    #[test]
    fn config_strings_render_env_var_with_default() {
        let vars = serde_json::Map::new();
        let out = render_config_string(
            "{{ env_var('RSDBT_SURELY_UNSET_VAR', 'fallback') }}",
            &vars,
            false,
        )
        .unwrap();
        assert_eq!(out, "fallback");
        let err = render_config_string("{{ env_var('RSDBT_SURELY_UNSET_VAR') }}", &vars, false)
            .unwrap_err();
        assert!(
            err.contains("Env var required but not provided: 'RSDBT_SURELY_UNSET_VAR'"),
            "{err}"
        );
    }
}
