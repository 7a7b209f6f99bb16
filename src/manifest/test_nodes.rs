//! Data test nodes: generic tests declared in properties yml (on models, seeds, sources and
//! their columns) and singular tests (`.sql` files in the test paths), named as dbt names them.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value as Json, json};
use smol_str::SmolStr;

use super::test_names;
use super::{Node, ResourceType};
use crate::config::{self, Config};
use crate::diag::{Diagnostic, Diagnostics, Location};
use crate::jinja::{Jinja, Phase, Relation, TestArgs};
use crate::project::{Project, SourceFile};

/// What makes a node a test.
#[derive(Debug, Clone)]
pub struct TestInfo {
    /// `None` for a singular test.
    pub generic: Option<GenericTest>,
    pub column_name: Option<SmolStr>,
    /// The model, seed or source the test is declared on.
    pub attached_node: Option<SmolStr>,
    /// `models.orders` / `sources.raw`: where in the yml it was declared.
    pub file_key_name: Option<SmolStr>,
}

/// A generic test's macro and arguments (dbt's `test_metadata`).
#[derive(Debug, Clone)]
pub struct GenericTest {
    pub name: String,
    pub namespace: Option<String>,
    pub kwargs: TestArgs,
}

impl GenericTest {
    /// dbt's `test_metadata`, borrowed, for writing `manifest.json`.
    pub fn metadata_out(&self) -> MetadataOut<'_> {
        MetadataOut {
            kwargs: &self.kwargs,
            name: &self.name,
            namespace: &self.namespace,
        }
    }
}

/// dbt's `test_metadata`, keys in alphabetical order as dbt writes them.
#[derive(serde::Serialize)]
pub struct MetadataOut<'a> {
    kwargs: &'a TestArgs,
    name: &'a str,
    namespace: &'a Option<String>,
}

/// Keys of a test entry that are configs, not arguments (dbt's `CONFIG_ARGS`).
const CONFIG_ARGS: &[&str] = &[
    "severity",
    "tags",
    "enabled",
    "where",
    "limit",
    "warn_if",
    "error_if",
    "fail_calc",
    "store_failures",
    "store_failures_as",
    "meta",
    "database",
    "schema",
    "alias",
];

/// A node or source that carries tests in yml.
pub struct Target {
    /// `models` / `seeds` / `sources`.
    pub yaml_key: &'static str,
    /// The model name, or `<source>_<table>`.
    pub name: String,
    /// `ref('orders')` or `source('raw', 'orders')`.
    pub expr: String,
    /// The same as a dependency: a model/seed name, or a source and table.
    pub dependency: Result<String, (String, String)>,
    pub unique_id: SmolStr,
    /// The package of the tested node: the tests belong to it.
    pub package: SmolStr,
    /// The yml file (path and text), for fqn, paths and diagnostics.
    pub yml_path: SmolStr,
    pub yml_source: Arc<str>,
    /// `source_name` for sources (dbt's `file_key_name` is `sources.<source_name>`).
    pub key_name: String,
    /// Model-level tests, then per column: (column name, tests, column tags).
    pub tests: Vec<(Option<String>, Vec<Json>, Vec<String>)>,
}

/// Generic test nodes for `targets`, rendered once in the parse phase to find their refs; in
/// parts, in the targets' order.
pub fn generic(
    project: &Project,
    jinja: &Jinja,
    targets: Vec<Target>,
    database: &str,
) -> (Vec<Vec<Box<Node>>>, Diagnostics) {
    // A large project has tens of thousands: built on every core. They stay in parts so that
    // the caller, moving them into the manifest part by part, frees each part as it goes
    // (one vector of 40,000 nodes beside the manifest's map was a fifth of a parse's memory).
    // The targets are consumed part by part too: their yml entries (16 MB for 40,000 tests)
    // are freed as their nodes are built rather than all kept until the last is.
    let mut rest = targets.into_iter();
    let parts: Vec<Vec<Target>> = std::iter::from_fn(|| {
        let part: Vec<Target> = rest.by_ref().take(256).collect();
        (!part.is_empty()).then_some(part)
    })
    .collect();
    let parts =
        crate::parallel::map_owned(parts, 1, |part| generic_of(project, jinja, part, database));
    let mut out = Vec::with_capacity(parts.len());
    let mut diags = Diagnostics::new();
    for (nodes, d) in parts {
        out.push(nodes);
        diags.extend(d);
    }
    (out, diags)
}

// Boxed here, where they are built: the manifest keeps nodes boxed, so none is copied again.
#[allow(clippy::vec_box)]
fn generic_of(
    project: &Project,
    jinja: &Jinja,
    targets: Vec<Target>,
    database: &str,
) -> (Vec<Box<Node>>, Diagnostics) {
    let mut out = Vec::new();
    let mut diags = Diagnostics::new();
    // What each test macro gives its tests, found once (4-5 kinds among 40,000 tests).
    let mut macros = HashMap::new();
    for mut t in targets {
        for (column, tests, column_tags) in std::mem::take(&mut t.tests) {
            for entry in tests {
                match one_generic(
                    project,
                    jinja,
                    &t,
                    column.as_deref(),
                    &column_tags,
                    entry,
                    database,
                    &mut macros,
                ) {
                    Ok(node) => out.push(Box::new(node)),
                    Err(d) => diags.push(d),
                }
            }
        }
    }
    (out, diags)
}

#[allow(clippy::too_many_arguments)]
fn one_generic(
    project: &Project,
    jinja: &Jinja,
    t: &Target,
    column: Option<&str>,
    column_tags: &[String],
    entry: Json,
    database: &str,
    macros: &mut HashMap<String, TestMacro>,
) -> Result<Node, Diagnostic> {
    let here = || {
        Location::find(
            &t.yml_path,
            t.yml_source.clone(),
            &format!("name: {}", column.unwrap_or(t.name.as_str())),
        )
    };
    let bad = |msg: String| Diagnostic::error("test", msg).at(here());
    // `- unique`, `- accepted_values: {values: [...]}`, or `- test_name: x` + args.
    let (test_name, mut args) = match entry {
        Json::String(s) => (s, Map::new()),
        Json::Object(mut m) if m.contains_key("test_name") => {
            let name = m.remove("test_name").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            (name, m)
        }
        Json::Object(m) if m.len() == 1 => {
            let (k, v) = m.into_iter().next().unwrap();
            match v {
                Json::Object(a) => (k, a),
                Json::Null => (k, Map::new()),
                other => return Err(bad(format!("arguments of test '{k}' on {} must be a mapping, got {other}", t.name))
                    .hint("write the arguments as keys under the test name, e.g. `- accepted_values: {values: [a, b]}`")),
            }
        }
        other => return Err(bad(format!("invalid test definition on {}: {other}", t.name))
            .hint("a test is a name (`- unique`) or a mapping with one key (`- accepted_values: {values: [...]}`)")),
    };
    if let Some(Json::Object(nested)) = args.remove("arguments") {
        args.extend(nested);
    }
    if let Some(c) = column {
        args.insert("column_name".into(), Json::String(c.to_string()));
    }
    let (namespace, name) = match test_name.split_once('.') {
        Some((ns, n)) => (Some(ns.to_string()), n.to_string()),
        None => (None, test_name.clone()),
    };
    // Configs: top-level config keys, then `config:`.
    let mut test_config = Config::new();
    for key in CONFIG_ARGS {
        if let Some(v) = args.remove(*key)
            && !v.is_null()
        {
            test_config.insert(key.to_string(), v);
        }
    }
    if let Some(Json::Object(c)) = args.remove("config") {
        config::merge(&mut test_config, &Config::from(c));
    }
    // Upper case as dbt's; one written as Jinja is upper-cased once rendered.
    if let Some(Json::String(sev)) = test_config.get("severity").cloned()
        && !sev.contains("{{")
        && !sev.contains("{%")
    {
        test_config.insert("severity".into(), Json::String(sev.to_uppercase()));
    }
    let _description = args.remove("description");
    let custom_name = args
        .remove("name")
        .and_then(|n| n.as_str().map(str::to_string));
    args.insert(
        "model".into(),
        Json::String(format!("{{{{ get_where_subquery({}) }}}}", t.expr)),
    );

    let test_type = {
        let base = if t.yaml_key == "sources" {
            format!("source_{name}")
        } else {
            name.clone()
        };
        match &namespace {
            Some(ns) => format!("{ns}_{base}"),
            None => base,
        }
    };
    let (short_name, full_name) = match &custom_name {
        Some(n) => (n.clone(), n.clone()),
        None => test_names::synthesize(&test_type, &t.name, &args),
    };
    if short_name != full_name && !test_config.contains_key("alias") {
        test_config.insert("alias".into(), Json::String(short_name.clone()));
    }
    let hash = test_names::unique_id_hash(&full_name, &args, &name, namespace.as_deref());
    let generic = GenericTest {
        name,
        namespace,
        kwargs: args.into(),
    };
    let unique_id = format!("test.{}.{full_name}.{hash}", t.package);

    // fqn: the yml's folders below its resource root, then the test name.
    let name = SmolStr::from(&full_name);
    let mut fqn = vec![t.package.clone()];
    let parts: Vec<&str> = t.yml_path.split('/').collect();
    fqn.extend(
        parts[1..parts.len().saturating_sub(1)]
            .iter()
            .map(|s| SmolStr::from(*s)),
    );
    fqn.push(name.clone());

    // Only what differs from a test's defaults (`config::defaults`: enabled, materialized
    // `test`, no tags): most tests of a large project then hold no config map at all.
    let tree = config::from_tree(project.config_trees.get("tests"), &fqn);
    let mut cfg = tree.clone();
    let mut unrendered = tree;
    config::merge(&mut cfg, &test_config);
    config::merge(&mut unrendered, &test_config);
    let mut tags: Vec<String> = column_tags.to_vec();
    tags.extend(config::ConfigExt::strings(&cfg, "tags"));
    tags.sort();
    tags.dedup();
    if tags.is_empty() {
        cfg.remove("tags");
    } else {
        cfg.insert("tags".into(), json!(tags));
    }

    // Looked up before inserting: an entry would copy the name for each of 40,000 tests.
    if !macros.contains_key(&generic.name) {
        macros.insert(generic.name.clone(), TestMacro::new(jinja, &generic.name));
    }
    let test_macro = &macros[&generic.name];
    let raw_code = test_macro.raw_code.clone();
    let mut node = Node {
        unique_id: unique_id.into(),
        resource_type: ResourceType::Test,
        name,
        package: t.package.clone(),
        fqn,
        original_file_path: t.yml_path.clone(),
        path: format!("{short_name}.sql"),
        raw_code,
        config: cfg,
        unrendered_config: unrendered,
        relation: Relation::new(database, "", &short_name),
        ..Node::empty()
    };
    if !test_config.is_empty() {
        node.extras_mut().config_call = test_config;
    }
    // Like dbt, only render the call when an argument holds Jinja (e.g. `to: ref('x')`); otherwise
    // the tested node is the only dependency. This keeps large projects fast to parse.
    // A definition that calls `config()` (dbt-project-evaluator's `is_empty` sets severity)
    // gives defaults only a render finds.
    let sets_config = test_macro.sets_config;
    let needs_render = sets_config
        || generic.kwargs.iter().any(|(k, v)| {
            k != "model"
                && k != "column_name"
                && v.as_str().is_some_and(|s| {
                    crate::jinja::looks_like_function(s.trim())
                        || s.contains("{{")
                        || s.contains("{%")
                })
        });
    // dbt's own test macros with `ref('x')` arguments (a relationships test's `to:`, in
    // every other test of a large project) need no render: the refs are the arguments', then
    // the tested node's, and the macros those the render would record.
    let fast = (needs_render && !sets_config)
        .then(|| builtin_with_literal_refs(jinja, test_macro, &generic))
        .flatten();
    if let Some((refs, macros)) = fast {
        node.refs = refs
            .into_iter()
            .map(|name| crate::jinja::RefCall {
                name,
                package: None,
                version: None,
            })
            .collect();
        match &t.dependency {
            Ok(name) => node.refs.push(crate::jinja::RefCall {
                name: name.clone(),
                package: None,
                version: None,
            }),
            Err(st) => node.sources = vec![st.clone()],
        }
        node.depends_on_macros = macros;
    } else if needs_render {
        let (_, capture) = jinja
            .render_test_call(
                node.info(),
                &generic.name,
                generic.namespace.as_deref(),
                &generic.kwargs,
                Phase::Parse,
            )
            .map_err(|d| {
                if d.location.is_none() {
                    d.at(here())
                } else {
                    d
                }
            })?;
        node.refs = capture.refs;
        node.sources = capture.sources;
        node.depends_on_macros = capture.macros.into_iter().map(SmolStr::from).collect();
        // `config()` in the test's definition (dbt_utils' `equal_rowcount` sets `fail_calc`):
        // defaults that the project and the yml entry override, as in dbt.
        if !capture.config.is_empty() {
            let mut cfg = capture.config.clone();
            config::merge(&mut cfg, &node.config);
            node.config = cfg;
            config::merge(&mut node.extras_mut().config_call, &capture.config);
        }
    } else {
        let Some(macro_id) = test_macro.id.clone() else {
            return Err(Diagnostic::error("unknown-test", format!("generic test '{}' is not defined", generic.name))
                .at(here())
                .hint(format!("use a built-in test (unique, not_null, accepted_values, relationships), or define it with {{% test {}(model, column_name) %}} in the macro paths or tests/generic/", generic.name)));
        };
        node.depends_on_macros = vec![macro_id];
        match &t.dependency {
            Ok(name) => {
                node.refs = vec![crate::jinja::RefCall {
                    name: name.clone(),
                    package: None,
                    version: None,
                }]
            }
            Err(st) => node.sources = vec![st.clone()],
        }
    }
    node.test = Some(TestInfo {
        generic: Some(generic),
        column_name: column.map(SmolStr::from),
        attached_node: (t.yaml_key != "sources").then(|| t.unique_id.clone()),
        file_key_name: Some(smol_str::format_smolstr!("{}.{}", t.yaml_key, t.key_name)),
    });
    Ok(node)
}

/// For a test of dbt's own macros whose Jinja arguments are all literal `ref('name')` calls:
/// the referenced names (in argument order) and the macros a render records (the test's and
/// `get_where_subquery`, dbt's own too). `None` when a render is needed to know.
fn builtin_with_literal_refs(
    jinja: &Jinja,
    test_macro: &TestMacro,
    generic: &GenericTest,
) -> Option<(Vec<String>, Vec<SmolStr>)> {
    let test = test_macro.id.as_ref()?;
    // dbt's `get_where_subquery` is a function of ours (recorded as dbt's macro), unless the
    // project defines its own.
    let where_subquery = jinja
        .macro_id("get_where_subquery")
        .unwrap_or(WHERE_SUBQUERY);
    if generic.namespace.is_some()
        || !test.starts_with("macro.dbt.")
        || !where_subquery.starts_with("macro.dbt.")
    {
        return None;
    }
    let mut refs = Vec::new();
    for (k, v) in &generic.kwargs {
        if k == "model" || k == "column_name" {
            continue;
        }
        let Some(text) = v.as_str() else { continue };
        let text = text.trim();
        if !(crate::jinja::looks_like_function(text) || text.contains("{{") || text.contains("{%"))
        {
            continue;
        }
        refs.push(literal_ref(text)?.to_string());
    }
    // dbt's own `get_where_subquery` in every such test: one static string, no copy.
    let where_subquery = match where_subquery {
        WHERE_SUBQUERY => SmolStr::new_static(WHERE_SUBQUERY),
        other => other.into(),
    };
    let mut macros = vec![where_subquery, test.clone()];
    macros.sort();
    Some((refs, macros))
}

const WHERE_SUBQUERY: &str = "macro.dbt.get_where_subquery";

/// What a generic test's macro gives each of its tests.
struct TestMacro {
    /// The macro's unique id (`None`: not defined), shared by its tests' `depends_on`.
    id: Option<SmolStr>,
    /// Whether its definition calls `config()` (then each test is rendered to find it).
    sets_config: bool,
    /// The tests' `raw_code`, shared.
    raw_code: Arc<str>,
}

impl TestMacro {
    fn new(jinja: &Jinja, name: &str) -> Self {
        let id = jinja.macro_id(&format!("test_{name}"));
        Self {
            sets_config: id.is_some_and(|id| jinja.macro_sql(id).contains("config")),
            id: id.map(SmolStr::from),
            raw_code: format!("{{{{ test_{name}(**_dbt_generic_test_kwargs) }}}}").into(),
        }
    }
}

/// `name` of `ref('name')` / `ref("name")`, nothing else.
fn literal_ref(text: &str) -> Option<&str> {
    let inner = text.strip_prefix("ref(")?.strip_suffix(')')?.trim();
    let quote = inner.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let name = inner.strip_prefix(quote)?.strip_suffix(quote)?;
    (!name.is_empty() && !name.contains(['\'', '"', ',', '(', ')'])).then_some(name)
}

/// A singular test: a `.sql` file in the test paths; it passes when it returns no rows.
pub fn singular(project: &Project, file: &SourceFile, database: &str) -> Node {
    let name = file.stem().to_string();
    let mut fqn = vec![SmolStr::from(&project.name)];
    fqn.extend(file.folders().into_iter().map(SmolStr::from));
    fqn.push(name.as_str().into());
    let mut cfg = Config::new();
    cfg.insert("enabled".into(), Json::Bool(true));
    cfg.insert("materialized".into(), "test".into());
    let tree = config::from_tree(project.config_trees.get("tests"), &fqn);
    config::merge(&mut cfg, &tree);
    Node {
        unique_id: format!("test.{}.{name}", project.name).into(),
        resource_type: ResourceType::Test,
        name: name.as_str().into(),
        package: project.name.as_str().into(),
        fqn,
        original_file_path: file.path.as_str().into(),
        path: file.rel_path().to_string(),
        raw_code: file.contents.clone(),
        config: cfg,
        unrendered_config: tree,
        relation: Relation::new(database, "", &name),
        test: Some(TestInfo {
            generic: None,
            column_name: None,
            attached_node: None,
            file_key_name: None,
        }),
        ..Node::empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relationships test's `to: ref('x')` needs no render: the refs and macros are those a
    /// render records. A project's own `get_where_subquery` needs the render.
    #[test]
    fn dbt_tests_with_literal_refs_are_read_without_a_render() {
        let generic = GenericTest {
            name: "relationships".into(),
            namespace: None,
            kwargs: json!({"to": "ref('customers')", "field": "id", "column_name": "customer_id",
                "model": "{{ get_where_subquery(ref('orders')) }}"})
            .as_object()
            .unwrap()
            .clone()
            .into(),
        };
        let env = crate::jinja::test_env(vec![]);
        let (refs, macros) =
            builtin_with_literal_refs(&env, &TestMacro::new(&env, "relationships"), &generic)
                .expect("no render");
        let node = crate::jinja::test_node("test", "t", "");
        let (_, rendered) = env
            .render_test_call(node, "relationships", None, &generic.kwargs, Phase::Parse)
            .unwrap();
        assert_eq!(refs, ["customers"]);
        let rendered_refs: Vec<&str> = rendered.refs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(rendered_refs, ["customers", "orders"]);
        assert_eq!(macros, rendered.macros.into_iter().collect::<Vec<_>>());
        let own = crate::jinja::test_env(vec![(
            "macros/where.sql",
            Arc::from("{% macro get_where_subquery(r) %}{{ return(r) }}{% endmacro %}"),
        )]);
        let test_macro = TestMacro::new(&own, "relationships");
        assert!(builtin_with_literal_refs(&own, &test_macro, &generic).is_none());
    }
}
