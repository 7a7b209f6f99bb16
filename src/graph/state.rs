//! An earlier run's artifacts (`--state <folder>`): its `manifest.json` for `state:` selection
//! and `--defer`, its `run_results.json` for `result:` selection. Works with manifests written
//! by rsdbt or by dbt (the compared fields are the same).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::diag::Diagnostic;
use crate::jinja::Relation;
use crate::manifest::{Manifest, Node};

/// A node as the older manifest recorded it.
#[derive(Debug, Clone)]
pub struct OldNode {
    pub checksum: String,
    pub unrendered_config: Json,
    pub database: String,
    pub schema: String,
    pub alias: String,
    pub resource_type: String,
    pub materialized: String,
    pub macros: Vec<String>,
    pub description: String,
    pub column_descriptions: BTreeMap<String, String>,
}

/// The loaded `--state` folder.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub dir: PathBuf,
    pub nodes: BTreeMap<String, OldNode>,
    /// Sources as JSON (compared whole for `state:modified`).
    pub sources: BTreeMap<String, Json>,
    /// Macro unique_id → macro_sql.
    pub macros: BTreeMap<String, String>,
    /// unique_id → status in the older run_results.json (when there is one).
    pub results: BTreeMap<String, String>,
    /// Source freshness in the older `sources.json` and in this project's current one
    /// (`source_status:fresher`): unique_id → (status, max_loaded_at).
    pub freshness_before: Option<BTreeMap<String, (String, String)>>,
    pub freshness_now: Option<BTreeMap<String, (String, String)>>,
}

/// The results of a `sources.json`, when the file is there and readable.
pub fn read_freshness(path: &Path) -> Option<BTreeMap<String, (String, String)>> {
    let doc: Json = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some(
        doc.get("results")?
            .as_array()?
            .iter()
            .map(|r| (s(r, "unique_id"), (s(r, "status"), s(r, "max_loaded_at"))))
            .collect(),
    )
}

impl State {
    /// `source_status:fresher`: a source whose freshness query succeeded now and found newer
    /// data than the earlier `sources.json` did, or that the earlier one did not check.
    pub fn fresher(&self, unique_id: &str) -> bool {
        let Some((status, now)) = self.freshness_now.as_ref().and_then(|f| f.get(unique_id)) else {
            return false;
        };
        if status == "runtime error" {
            return false;
        }
        let time = |t: &str| crate::freshness::timestamp(&Json::String(t.to_string()));
        match self
            .freshness_before
            .as_ref()
            .and_then(|f| f.get(unique_id))
        {
            None => true,
            Some((_, before)) => time(now) > time(before),
        }
    }
}

fn s(v: &Json, key: &str) -> String {
    v.get(key).and_then(Json::as_str).unwrap_or("").to_string()
}

/// Reads `<dir>/manifest.json` (required) and `<dir>/run_results.json` (optional).
pub fn load(dir: &Path) -> Result<State, Diagnostic> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Diagnostic::error("state", format!("cannot read {}: {e}", path.display()))
            .hint("--state must be a folder holding the manifest.json of an earlier run (e.g. a copy of target/ from production)")
    })?;
    let doc: Json = serde_json::from_str(&text).map_err(|e| {
        Diagnostic::error(
            "state",
            format!("{} is not a valid manifest: {e}", path.display()),
        )
    })?;
    let mut state = State {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    let nodes = doc
        .get("nodes")
        .and_then(Json::as_object)
        .into_iter()
        .flatten();
    let unit_tests = doc
        .get("unit_tests")
        .and_then(Json::as_object)
        .into_iter()
        .flatten();
    for (id, n) in nodes.chain(unit_tests) {
        let cols = n
            .get("columns")
            .and_then(Json::as_object)
            .map(|c| {
                c.iter()
                    .map(|(k, v)| (k.clone(), s(v, "description")))
                    .collect()
            })
            .unwrap_or_default();
        state.nodes.insert(
            id.clone(),
            OldNode {
                checksum: n
                    .get("checksum")
                    .map(|c| s(c, "checksum"))
                    .unwrap_or_default(),
                unrendered_config: n.get("unrendered_config").cloned().unwrap_or(Json::Null),
                database: s(n, "database"),
                schema: s(n, "schema"),
                alias: n
                    .get("alias")
                    .and_then(Json::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| s(n, "name")),
                resource_type: s(n, "resource_type"),
                materialized: n
                    .get("config")
                    .map(|c| s(c, "materialized"))
                    .unwrap_or_default(),
                macros: n
                    .pointer("/depends_on/macros")
                    .and_then(Json::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|m| m.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                description: s(n, "description"),
                column_descriptions: cols,
            },
        );
    }
    for (id, src) in doc
        .get("sources")
        .and_then(Json::as_object)
        .into_iter()
        .flatten()
    {
        state.sources.insert(id.clone(), src.clone());
    }
    for (id, m) in doc
        .get("macros")
        .and_then(Json::as_object)
        .into_iter()
        .flatten()
    {
        state.macros.insert(id.clone(), s(m, "macro_sql"));
    }
    state.freshness_before = read_freshness(&dir.join("sources.json"));
    if let Ok(text) = std::fs::read_to_string(dir.join("run_results.json"))
        && let Ok(rr) = serde_json::from_str::<Json>(&text)
    {
        for r in rr
            .get("results")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            state.results.insert(s(r, "unique_id"), s(r, "status"));
        }
    }
    Ok(state)
}

impl State {
    /// The relation a node had in the older manifest (for `--defer`).
    pub fn relation(&self, unique_id: &str) -> Option<Relation> {
        let n = self.nodes.get(unique_id)?;
        if n.materialized == "ephemeral"
            || !matches!(n.resource_type.as_str(), "model" | "seed" | "snapshot")
        {
            return None;
        }
        Some(Relation::new(&n.database, &n.schema, &n.alias))
    }

    /// Whether `state:<selector>` matches the node or source `id` of the current manifest.
    /// `selector` is `new`, `modified`, `modified.body`, `modified.configs`,
    /// `modified.relation`, `modified.macros`, `modified.persisted_descriptions`,
    /// `modified.contract` or `unmodified` / `old`.
    pub fn matches(&self, m: &Manifest, id: &str, selector: &str) -> bool {
        if let Some(src) = m.sources.get(id) {
            let old = self.sources.get(id);
            return match selector {
                "new" => old.is_none(),
                "old" => old.is_some(),
                "modified" | "modified.configs" | "modified.relation" | "modified.body" => {
                    match old {
                        None => selector == "modified",
                        Some(o) => source_changed(src, o),
                    }
                }
                "unmodified" => old.is_some_and(|o| !source_changed(src, o)),
                _ => false,
            };
        }
        let Some(node) = m.nodes.get(id) else {
            return false;
        };
        let old = self.nodes.get(id);
        match selector {
            "new" => old.is_none(),
            "old" => old.is_some(),
            "modified" => old.is_none_or(|o| {
                self.body(node, o)
                    || self.configs(node, o)
                    || self.relation_changed(node, o)
                    || self.macros_changed(m, node, o)
                    || persisted(node, o)
            }),
            "unmodified" => old.is_some_and(|o| {
                !(self.body(node, o)
                    || self.configs(node, o)
                    || self.relation_changed(node, o)
                    || self.macros_changed(m, node, o)
                    || persisted(node, o))
            }),
            "modified.body" => old.is_some_and(|o| self.body(node, o)),
            "modified.configs" => old.is_some_and(|o| self.configs(node, o)),
            "modified.relation" => old.is_some_and(|o| self.relation_changed(node, o)),
            "modified.macros" => old.is_some_and(|o| self.macros_changed(m, node, o)),
            "modified.persisted_descriptions" => old.is_some_and(|o| persisted(node, o)),
            "modified.contract" => false,
            _ => false,
        }
    }

    fn body(&self, n: &Node, o: &OldNode) -> bool {
        // Generic tests have no file of their own: their definition is their config and kwargs.
        !(n.checksum().is_empty() && o.checksum.is_empty()) && n.checksum() != o.checksum
    }

    fn configs(&self, n: &Node, o: &OldNode) -> bool {
        let now = n.unrendered_config.to_json();
        let before = if o.unrendered_config.is_null() {
            Json::Object(Default::default())
        } else {
            o.unrendered_config.clone()
        };
        now != before
    }

    /// Like dbt: the configured `database` / `schema` / `alias` are compared, not the rendered
    /// relation, so building with another target does not mark every node modified.
    fn relation_changed(&self, n: &Node, o: &OldNode) -> bool {
        if n.is_ephemeral() || n.test.is_some() || n.unit_test().is_some() {
            return false;
        }
        ["database", "schema", "alias"]
            .iter()
            .any(|k| n.unrendered_config.get(k) != o.unrendered_config.get(k))
    }

    /// Whether a macro the node calls, or one those call in turn, is new or changed.
    fn macros_changed(&self, m: &Manifest, n: &Node, o: &OldNode) -> bool {
        if n.depends_on_macros
            .iter()
            .any(|id| !o.macros.iter().any(|m| m == id))
        {
            return true;
        }
        let mut seen: std::collections::BTreeSet<String> = Default::default();
        let mut todo: Vec<String> = n
            .depends_on_macros
            .iter()
            .map(|id| id.to_string())
            .collect();
        while let Some(id) = todo.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if self.macros.get(&id).map(String::as_str) != Some(m.jinja.macro_sql(&id)) {
                return true;
            }
            todo.extend(m.jinja.macro_deps(&id));
        }
        false
    }
}

fn persisted(n: &Node, o: &OldNode) -> bool {
    let pd = n.config.get("persist_docs");
    let rel = pd
        .and_then(|p| p.get("relation"))
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let cols = pd
        .and_then(|p| p.get("columns"))
        .and_then(Json::as_bool)
        .unwrap_or(false);
    (rel && n.description != o.description)
        || (cols
            && n.columns.iter().any(|c| {
                o.column_descriptions.get(&c.name).map(String::as_str)
                    != Some(c.description.as_str())
            }))
}

fn source_changed(src: &crate::manifest::Source, old: &Json) -> bool {
    let d = &src.def;
    s(old, "identifier") != d.identifier
        || s(old, "schema") != src.relation.schema
        || s(old, "database") != src.relation.database
        || s(old, "description") != d.description
        || old.get("loaded_at_field").and_then(Json::as_str) != d.loaded_at_field.as_deref()
        || old.get("freshness").cloned().unwrap_or(Json::Null) != d.freshness
}
