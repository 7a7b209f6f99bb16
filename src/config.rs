//! Node configs and dbt's precedence: `config()` in the node > properties yml > folder config in
//! the project file (deeper folders win) > defaults.
//!
//! A config is an ordered JSON map. Merging follows dbt's per-key behaviour: hooks and tags
//! append, `meta`/`docs`/`column_types`/`quoting`/`persist_docs` update key by key, `grants`
//! merges lists per privilege, everything else is replaced.

use std::sync::OnceLock;

use serde_json::{Map, Value as Json};

use crate::small_map::SmallMap;

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

/// Applies `overlay` on top of `base` with dbt's merge behaviour.
pub fn merge<'a>(base: &mut Config, overlay: impl IntoIterator<Item = (&'a String, &'a Json)>) {
    for (k, v) in overlay {
        let key = canonical_key(k);
        let v = normalise(&key, v.clone());
        if APPEND.contains(&key.as_str()) {
            let entry = base.get_or_insert_with(key.clone(), || Json::Array(vec![]));
            if let (Json::Array(dst), Json::Array(src)) = (entry, v) {
                for item in src {
                    if key != "tags" || !dst.contains(&item) {
                        dst.push(item);
                    }
                }
            }
        } else if UPDATE.contains(&key.as_str()) {
            match (base.get_mut(&key), v) {
                (Some(Json::Object(dst)), Json::Object(src)) => {
                    for (sk, sv) in src {
                        dst.insert(sk, sv);
                    }
                }
                (_, v) => {
                    base.insert(key, v);
                }
            }
        } else if key == "grants" {
            match (base.get_mut(&key), v) {
                (Some(Json::Object(dst)), Json::Object(src)) => {
                    for (priv_, grantees) in src {
                        // dbt: a leading '+' on the privilege appends instead of replacing
                        if let Some(p) = priv_.strip_prefix('+') {
                            let e = dst
                                .entry(p.to_string())
                                .or_insert_with(|| Json::Array(vec![]));
                            if let (Json::Array(a), Json::Array(b)) = (e, grantees) {
                                a.extend(b);
                            }
                        } else {
                            dst.insert(priv_, grantees);
                        }
                    }
                }
                (_, v) => {
                    base.insert(key, v);
                }
            }
        } else {
            base.insert(key, v);
        }
    }
}

/// The configs a project-file tree (`models:`, `seeds:` ...) gives the node with this fqn.
///
/// The first fqn part is the package name; each further part descends one folder (the last
/// one is the node's own name, so `models: {proj: {orders: {+materialized: table}}}` targets
/// one model). At each level `+key` is a config; a plain key is a config when it is a known
/// config name and not the next fqn part.
pub fn from_tree<S: AsRef<str>>(tree: Option<&Json>, fqn: &[S]) -> Config {
    let mut out = Config::new();
    let Some(Json::Object(top)) = tree else {
        return out;
    };
    // Configs at the very top apply to every package.
    apply_level(&mut out, top, None);
    let Some(first) = fqn.first() else { return out };
    let Some(Json::Object(package_level)) = top.get(first.as_ref()) else {
        return out;
    };
    let mut level = package_level;
    apply_level(&mut out, level, fqn.get(1).map(AsRef::as_ref));
    for (i, part) in fqn.iter().enumerate().skip(1) {
        match level.get(part.as_ref()) {
            Some(Json::Object(next)) => {
                level = next;
                apply_level(&mut out, level, fqn.get(i + 1).map(AsRef::as_ref));
            }
            _ => break,
        }
    }
    out
}

fn apply_level(out: &mut Config, level: &Map<String, Json>, next_part: Option<&str>) {
    let mut cfg = Config::new();
    for (k, v) in level {
        if let Some(stripped) = k.strip_prefix('+') {
            cfg.insert(stripped.to_string(), v.clone());
        } else if Some(k.as_str()) != next_part
            && KNOWN_KEYS.contains(&canonical_key(k).as_str())
            // mapping-valued configs are configs too; other mappings are sub-folders
            && (!v.is_object() || MAP_KEYS.contains(&k.as_str()))
        {
            cfg.insert(k.clone(), v.clone());
        }
    }
    merge(out, &cfg);
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
}
