//! Node configs and dbt's precedence: `config()` in the node > properties yml > folder config in
//! the project file (deeper folders win) > defaults.
//!
//! A config is an ordered JSON map. Merging follows dbt's per-key behaviour: hooks and tags
//! append, `meta`/`docs`/`column_types`/`quoting`/`persist_docs` update key by key, `grants`
//! merges lists per privilege, everything else is replaced.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value as Json};

use crate::small_map::{SmallMap, Value};

/// A config: a small map, keys in order (see [`SmallMap`] for why not serde_json's map).
pub type Config = SmallMap;

const APPEND: [&str; 3] = ["pre-hook", "post-hook", "tags"];
const UPDATE: [&str; 6] = [
    "meta",
    "docs",
    "column_types",
    "quoting",
    "persist_docs",
    "contract",
];

/// Keys that are configs even without a `+` prefix inside a project-file tree.
const KNOWN_KEYS: &[&str] = &[
    "materialized",
    "schema",
    "database",
    "alias",
    "tags",
    "enabled",
    "pre-hook",
    "post-hook",
    "docs",
    "meta",
    "persist_docs",
    "full_refresh",
    "unique_key",
    "incremental_strategy",
    "on_schema_change",
    "column_types",
    "delimiter",
    "quote_columns",
    "grants",
    "contract",
    "file_format",
    "table_format",
    "severity",
    "store_failures",
    "where",
    "limit",
    "warn_if",
    "error_if",
    "fail_calc",
    "quoting",
    "batch_size",
    "event_time",
    "lookback",
    "begin",
    "partition_by",
    "cluster_by",
    "strategy",
    "updated_at",
    "check_cols",
    "target_schema",
    "target_database",
    "invalidate_hard_deletes",
    "hard_deletes",
    "access",
    "group",
    "sql_header",
    "incremental_predicates",
    "merge_update_columns",
    "merge_exclude_columns",
    "packages",
];

/// Known configs whose value is a mapping (a plain key holding one is not a folder).
const MAP_KEYS: &[&str] = &[
    "meta",
    "docs",
    "column_types",
    "persist_docs",
    "grants",
    "quoting",
];

/// Canonical spelling of a config key (`pre_hook` → `pre-hook`, leading `+` removed).
pub fn canonical_key(key: &str) -> String {
    let k = key.trim_start_matches('+');
    match k {
        "pre_hook" => "pre-hook".into(),
        "post_hook" => "post-hook".into(),
        "data_type" => "data_type".into(),
        other => other.to_string(),
    }
}

/// Normalises a value for its key: hooks become `[{sql, transaction, index}]`, tags a list.
fn normalise(key: &str, value: Json) -> Json {
    match key {
        "pre-hook" | "post-hook" => {
            let items = match value {
                Json::Array(items) => items,
                Json::Null => vec![],
                other => vec![other],
            };
            Json::Array(
                items
                    .into_iter()
                    .map(|h| match h {
                        Json::String(sql) => {
                            serde_json::json!({"sql": sql, "transaction": true, "index": null})
                        }
                        other => other,
                    })
                    .collect(),
            )
        }
        "tags" => match value {
            Json::String(s) => Json::Array(vec![Json::String(s)]),
            Json::Null => Json::Array(vec![]),
            other => other,
        },
        _ => value,
    }
}

/// Applies `overlay` on top of `base` with dbt's merge behaviour. A value `base` takes whole is
/// shared with `overlay`, not copied.
pub fn merge(base: &mut Config, overlay: &Config) {
    for (k, value) in overlay.entries() {
        let key = canonical_key(k);
        let both_maps = || {
            matches!(
                (base.get(&key), value.json()),
                (Some(Json::Object(_)), Json::Object(_))
            )
        };
        if APPEND.contains(&key.as_str()) {
            let v = normalise(&key, value.json().clone());
            let entry = base.get_or_insert_with(key.clone(), || Json::Array(vec![]));
            if let (Json::Array(dst), Json::Array(src)) = (entry, v) {
                for item in src {
                    if key != "tags" || !dst.contains(&item) {
                        dst.push(item);
                    }
                }
            }
        } else if UPDATE.contains(&key.as_str()) && both_maps() {
            if let (Some(Json::Object(dst)), Json::Object(src)) = (base.get_mut(&key), value.json())
            {
                for (sk, sv) in src {
                    dst.insert(sk.clone(), sv.clone());
                }
            }
        } else if key == "grants" && both_maps() {
            if let (Some(Json::Object(dst)), Json::Object(src)) = (base.get_mut(&key), value.json())
            {
                for (priv_, grantees) in src {
                    // dbt: a leading '+' on the privilege appends instead of replacing
                    if let Some(p) = priv_.strip_prefix('+') {
                        let e = dst
                            .entry(p.to_string())
                            .or_insert_with(|| Json::Array(vec![]));
                        if let (Json::Array(a), Json::Array(b)) = (e, grantees) {
                            a.extend(b.iter().cloned());
                        }
                    } else {
                        dst.insert(priv_.clone(), grantees.clone());
                    }
                }
            }
        } else {
            base.insert_value(key, value.clone());
        }
    }
}

/// A project file's tree of folder configs (`models:`, `seeds:`, `tests:` ...), read once into
/// levels whose config values every node below shares: a `+meta:` or `+persist_docs:` mapping
/// near the top reaches thousands of nodes, and copied into each (twice: its config and its
/// config as written) each copy is a ~640-byte map node or more.
#[derive(Debug, Clone)]
pub struct ConfigTree {
    json: Json,
    top: Level,
}

#[derive(Debug, Clone, Default)]
struct Level {
    /// In key order: a key, its value, and whether it is written without a `+` (then it is
    /// not a config where the node's next fqn part has that name: it is that folder).
    configs: Vec<(String, Value, bool)>,
    folders: BTreeMap<String, Level>,
}

impl ConfigTree {
    pub fn new(json: Json) -> ConfigTree {
        let top = match &json {
            Json::Object(m) => Level::new(m),
            _ => Level::default(),
        };
        ConfigTree { json, top }
    }
    /// The tree as the project file has it.
    pub fn json(&self) -> &Json {
        &self.json
    }
}

impl Level {
    fn new(level: &Map<String, Json>) -> Level {
        let mut out = Level::default();
        for (k, v) in level {
            if let Some(stripped) = k.strip_prefix('+') {
                out.configs
                    .push((stripped.to_string(), Value::new(v.clone()), false));
                continue;
            }
            if KNOWN_KEYS.contains(&canonical_key(k).as_str())
                // mapping-valued configs are configs too; other mappings are sub-folders
                && (!v.is_object() || MAP_KEYS.contains(&k.as_str()))
            {
                out.configs.push((k.clone(), Value::new(v.clone()), true));
            }
            if let Json::Object(folder) = v {
                out.folders.insert(k.clone(), Level::new(folder));
            }
        }
        out
    }
    fn apply(&self, out: &mut Config, next_part: Option<&str>) {
        let mut cfg = Config::new();
        for (k, v, plain) in &self.configs {
            if !(*plain && Some(k.as_str()) == next_part) {
                cfg.insert_value(k.clone(), v.clone());
            }
        }
        merge(out, &cfg);
    }
}

impl serde::Serialize for ConfigTree {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

/// The configs a project-file tree (`models:`, `seeds:` ...) gives the node with this fqn.
///
/// The first fqn part is the package name; each further part descends one folder (the last
/// one is the node's own name, so `models: {proj: {orders: {+materialized: table}}}` targets
/// one model). At each level `+key` is a config; a plain key is a config when it is a known
/// config name and not the next fqn part.
pub fn from_tree<S: AsRef<str>>(tree: Option<&ConfigTree>, fqn: &[S]) -> Config {
    let mut out = Config::new();
    let Some(tree) = tree else { return out };
    // Configs at the very top apply to every package.
    tree.top.apply(&mut out, None);
    let mut level = &tree.top;
    for (i, part) in fqn.iter().enumerate() {
        match level.folders.get(part.as_ref()) {
            Some(next) => {
                level = next;
                level.apply(&mut out, fqn.get(i + 1).map(AsRef::as_ref));
            }
            None => break,
        }
    }
    out
}

/// dbt's default config of a resource type (`model`, `seed`, ...): what a node has for every
/// key it does not set. Shared, so a 10,000-node manifest holds one copy.
pub fn defaults(resource_type: &str) -> &'static Config {
    static MODEL: OnceLock<Config> = OnceLock::new();
    static SEED: OnceLock<Config> = OnceLock::new();
    static TEST: OnceLock<Config> = OnceLock::new();
    if resource_type == "test" || resource_type == "unit_test" {
        return TEST.get_or_init(|| {
            let c = serde_json::json!({
                "enabled": true, "alias": null, "schema": "dbt_test__audit", "database": null,
                "tags": [], "meta": {}, "group": null, "materialized": "test", "severity": "ERROR",
                "store_failures": null, "store_failures_as": null, "where": null, "limit": null,
                "fail_calc": "count(*)", "warn_if": "!= 0", "error_if": "!= 0",
            });
            Config::from(c.as_object().cloned().unwrap_or_default())
        });
    }
    let (cell, seed) = if resource_type == "seed" {
        (&SEED, true)
    } else {
        (&MODEL, false)
    };
    cell.get_or_init(|| {
        let mut c = serde_json::json!({
            "enabled": true, "alias": null, "schema": null, "database": null, "tags": [], "meta": {},
            "group": null, "materialized": if seed { "seed" } else { "view" },
            "incremental_strategy": null, "batch_size": null, "lookback": 1, "begin": null,
            "persist_docs": {}, "post-hook": [], "pre-hook": [], "quoting": {}, "column_types": {},
            "full_refresh": null, "unique_key": null, "on_schema_change": "ignore",
            "on_configuration_change": "apply", "grants": {}, "packages": [],
            "docs": {"show": true, "node_color": null},
            "contract": {"enforced": false, "alias_types": true}, "event_time": null,
            "concurrent_batches": null,
        });
        let m = c.as_object_mut().expect("object literal");
        if seed {
            m.insert("delimiter".into(), ",".into());
            m.insert("quote_columns".into(), Json::Null);
        } else {
            m.insert("access".into(), "protected".into());
        }
        Config::from(std::mem::take(m))
    })
}

/// A node's config as dbt shows it: its own keys over the type's defaults, keys sorted.
pub struct WithDefaults<'a> {
    pub own: &'a Config,
    pub defaults: &'a Config,
}

impl serde::Serialize for WithDefaults<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // Both maps iterate in key order: merged as they go (this runs for every node of a
        // manifest, so no set of keys is built).
        let mut map = ser.serialize_map(None)?;
        let (mut own, mut defaults) = (self.own.iter().peekable(), self.defaults.iter().peekable());
        loop {
            let entry = match (own.peek(), defaults.peek()) {
                (Some((a, _)), Some((b, _))) if a < b => own.next(),
                (Some((a, _)), Some((b, _))) if a == b => {
                    defaults.next();
                    own.next()
                }
                (Some(_), Some(_)) => defaults.next(),
                (Some(_), None) => own.next(),
                (None, _) => defaults.next(),
            };
            let Some((k, v)) = entry else { break };
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Typed reads of common keys.
pub trait ConfigExt {
    fn str_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str;
    fn bool_or(&self, key: &str, default: bool) -> bool;
    fn strings(&self, key: &str) -> Vec<String>;
}

impl ConfigExt for Config {
    fn str_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).and_then(Json::as_str).unwrap_or(default)
    }
    fn bool_or(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            Some(Json::Bool(b)) => *b,
            Some(Json::String(s)) => {
                matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "1")
            }
            _ => default,
        }
    }
    fn strings(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .or_else(|| i.get("sql").and_then(Json::as_str).map(str::to_string))
                })
                .collect(),
            Some(Json::String(s)) => vec![s.clone()],
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Json) -> Config {
        v.as_object().unwrap().clone().into()
    }

    #[test]
    fn deeper_folders_override_and_tags_accumulate() {
        let tree = json!({
            "+tags": ["all"],
            "shop": {
                "+materialized": "view",
                "+tags": "shop",
                "silver": {"+materialized": "table", "+schema": "silver", "orders": {"+alias": "fct_orders"}},
                "gold": {"materialized": "table"}
            }
        });
        let tree = ConfigTree::new(tree);
        let fqn = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = from_tree(Some(&tree), &fqn(&["shop", "silver", "orders"]));
        assert_eq!(c["materialized"], "table");
        assert_eq!(c["schema"], "silver");
        assert_eq!(c["alias"], "fct_orders");
        assert_eq!(c["tags"], json!(["all", "shop"]));
        let g = from_tree(Some(&tree), &fqn(&["shop", "gold", "daily"]));
        assert_eq!(g["materialized"], "table");
        let b = from_tree(Some(&tree), &fqn(&["shop", "bronze", "raw"]));
        assert_eq!(b["materialized"], "view");
        let other = from_tree(Some(&tree), &fqn(&["other_pkg", "x"]));
        assert!(other.get("materialized").is_none());
    }

    #[test]
    fn precedence_merge_behaviour() {
        let mut base = cfg(
            json!({"materialized": "view", "meta": {"a": 1, "b": 1}, "pre-hook": ["select 1"], "tags": ["x"]}),
        );
        merge(
            &mut base,
            &cfg(
                json!({"materialized": "table", "meta": {"b": 2}, "pre_hook": "select 2", "tags": ["x", "y"]}),
            ),
        );
        assert_eq!(base["materialized"], "table");
        assert_eq!(base["meta"], json!({"a": 1, "b": 2}));
        assert_eq!(base["tags"], json!(["x", "y"]));
        let hooks: Vec<_> = base.strings("pre-hook");
        assert_eq!(hooks, vec!["select 1", "select 2"]);
    }

    #[test]
    fn nodes_sharing_a_folder_mapping_change_only_their_own() {
        let tree = ConfigTree::new(json!({
            "shop": {"+meta": {"owner": "a"}, "+persist_docs": {"relation": true}, "+grants": {"select": ["x"]}}
        }));
        let mut first = from_tree(Some(&tree), &["shop", "orders"]);
        let second = from_tree(Some(&tree), &["shop", "items"]);
        let written = first.clone();
        merge(
            &mut first,
            &cfg(
                json!({"meta": {"tier": 1}, "grants": {"+select": ["y"]}, "persist_docs": {"relation": false}}),
            ),
        );
        assert_eq!(first["meta"], json!({"owner": "a", "tier": 1}));
        assert_eq!(first["grants"], json!({"select": ["x", "y"]}));
        assert_eq!(first["persist_docs"], json!({"relation": false}));
        for untouched in [&second, &written] {
            assert_eq!(untouched["meta"], json!({"owner": "a"}));
            assert_eq!(untouched["grants"], json!({"select": ["x"]}));
            assert_eq!(untouched["persist_docs"], json!({"relation": true}));
        }
        assert_eq!(tree.json()["shop"]["+meta"], json!({"owner": "a"}));
        // A config as written that ends up equal shares the node's copy; a change to one of
        // them still leaves the other as it was.
        let mut again = written.clone();
        merge(&mut again, &cfg(json!({"meta": {"tier": 1}})));
        let mut merged_apart = first.clone();
        merged_apart.get_mut("meta").unwrap()["tier"] = json!(1);
        again.share_with(&merged_apart);
        merged_apart.get_mut("meta").unwrap()["tier"] = json!(2);
        assert_eq!(again["meta"], json!({"owner": "a", "tier": 1}));
    }
}
