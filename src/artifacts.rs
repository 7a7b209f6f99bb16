//! Artifacts in dbt's formats: `manifest.json` (schema v12) and `run_results.json` (v6),
//! written atomically (temp file + rename) so a reader never sees half a file.

use std::path::Path;

use serde_json::{Value as Json, json};

use crate::config::ConfigExt;
use crate::exec::RunResults;
use crate::manifest::{Manifest, Node, ResourceType};

/// The dbt version whose artifact schemas these files follow.
pub const DBT_COMPAT_VERSION: &str = "1.9.0";

/// Writes `bytes` to `path` through a temp file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn metadata(m: &Manifest, schema: &str) -> Json {
    json!({
        "dbt_schema_version": format!("https://schemas.getdbt.com/dbt/{schema}.json"),
        "dbt_version": DBT_COMPAT_VERSION,
        "rsdbt_version": env!("CARGO_PKG_VERSION"),
        "generated_at": m.generated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "invocation_id": m.invocation_id,
        "env": {},
    })
}

fn columns_json(cols: &[crate::project::properties::ColumnDef]) -> Json {
    let mut out = serde_json::Map::new();
    for c in cols {
        out.insert(
            c.name.clone(),
            json!({
                "name": c.name, "description": c.description, "meta": c.meta, "data_type": c.data_type,
                "constraints": [], "quote": null, "tags": c.tags,
            }),
        );
    }
    Json::Object(out)
}

fn node_json(m: &Manifest, n: &Node, compiled: Option<&str>) -> Json {
    let tags = n.tags();
    let mut config = n.config.clone();
    config.entry("tags".to_string()).or_insert(json!([]));
    config.entry("meta".to_string()).or_insert(json!({}));
    config.entry("pre-hook".to_string()).or_insert(json!([]));
    config.entry("post-hook".to_string()).or_insert(json!([]));
    config
        .entry("docs".to_string())
        .or_insert(json!({"show": true, "node_color": null}));
    json!({
        "database": n.relation.database,
        "schema": n.relation.schema,
        "name": n.name,
        "resource_type": n.resource_type.as_str(),
        "package_name": n.package,
        "path": n.path,
        "original_file_path": n.original_file_path,
        "unique_id": n.unique_id,
        "fqn": n.fqn,
        "alias": n.relation.identifier,
        "checksum": {"name": "sha256", "checksum": n.checksum},
        "config": config,
        "tags": tags,
        "description": n.description,
        "columns": columns_json(&n.columns),
        "meta": n.config.get("meta").cloned().unwrap_or(json!({})),
        "group": null,
        "docs": n.config.get("docs").cloned().unwrap_or(json!({"show": true, "node_color": null})),
        "patch_path": n.patch_path,
        "build_path": null,
        "unrendered_config": n.unrendered_config,
        "created_at": m.generated_at.timestamp_micros() as f64 / 1e6,
        "config_call_dict": n.config_call,
        "relation_name": if n.resource_type == ResourceType::Seed || !n.is_ephemeral() { Some(n.relation.render()) } else { None },
        "raw_code": if n.resource_type == ResourceType::Seed { "" } else { &*n.raw_code },
        "root_path": null,
        "language": "sql",
        "refs": n.refs.iter().map(|r| json!({"name": r.name, "package": r.package, "version": r.version})).collect::<Vec<_>>(),
        "sources": n.sources.iter().map(|(s, t)| json!([s, t])).collect::<Vec<_>>(),
        "metrics": [],
        "depends_on": {"macros": n.depends_on_macros, "nodes": n.depends_on_nodes},
        "compiled_path": compiled.map(|_| format!("{}/compiled/{}/{}", "target", n.package, n.original_file_path)),
        "compiled": compiled.is_some(),
        "compiled_code": compiled,
        "extra_ctes_injected": compiled.is_some(),
        "extra_ctes": [],
        "contract": {"enforced": false, "alias_types": true, "checksum": null},
        "access": "protected",
        "constraints": [],
        "version": null,
        "latest_version": null,
        "deprecation_date": null,
    })
}

/// Builds `manifest.json`; `compiled` gives compiled SQL per node where known.
pub fn manifest_json(m: &Manifest, compiled: &std::collections::BTreeMap<String, String>) -> Json {
    let nodes: serde_json::Map<String, Json> = m
        .nodes
        .values()
        .map(|n| {
            (
                n.unique_id.clone(),
                node_json(m, n, compiled.get(&n.unique_id).map(String::as_str)),
            )
        })
        .collect();
    let disabled: serde_json::Map<String, Json> = m
        .disabled
        .values()
        .map(|n| (n.unique_id.clone(), json!([node_json(m, n, None)])))
        .collect();
    let sources: serde_json::Map<String, Json> = m
        .sources
        .values()
        .map(|s| {
            let d = &s.def;
            (
                s.unique_id.clone(),
                json!({
                    "database": s.relation.database, "schema": s.relation.schema, "name": d.name,
                    "resource_type": "source", "package_name": s.package, "path": d.file,
                    "original_file_path": d.file, "unique_id": s.unique_id, "fqn": s.fqn,
                    "source_name": d.source_name, "source_description": d.source_description,
                    "loader": d.loader, "identifier": d.identifier, "quoting": {},
                    "loaded_at_field": d.loaded_at_field, "freshness": d.freshness,
                    "external": null, "description": d.description, "columns": columns_json(&d.columns),
                    "meta": d.meta, "source_meta": d.source_meta, "tags": d.tags,
                    "config": {"enabled": d.config.bool_or("enabled", true), "event_time": null},
                    "patch_path": null, "unrendered_config": {},
                    "relation_name": s.relation.render(), "created_at": m.generated_at.timestamp_micros() as f64 / 1e6,
                }),
            )
        })
        .collect();
    let macros: serde_json::Map<String, Json> = m
        .macros
        .values()
        .map(|mac| {
            (
                mac.unique_id.clone(),
                json!({
                    "name": mac.name, "resource_type": "macro", "package_name": mac.package,
                    "path": mac.original_file_path, "original_file_path": mac.original_file_path,
                    "unique_id": mac.unique_id, "macro_sql": "", "depends_on": {"macros": []},
                    "description": "", "meta": {}, "docs": {"show": true, "node_color": null},
                    "patch_path": null, "arguments": [], "created_at": m.generated_at.timestamp_micros() as f64 / 1e6,
                    "supported_languages": null,
                }),
            )
        })
        .collect();
    let docs: serde_json::Map<String, Json> = m
        .docs
        .iter()
        .map(|(name, text)| {
            let id = format!("doc.{}.{name}", m.project_name);
            (id.clone(), json!({"name": name, "resource_type": "doc", "package_name": m.project_name, "unique_id": id, "block_contents": text}))
        })
        .collect();
    let mut meta = metadata(m, "manifest/v12");
    let project_id = format!("{:x}", md5_like(&m.project_name));
    meta["project_name"] = json!(m.project_name);
    meta["project_id"] = json!(project_id);
    meta["user_id"] = Json::Null;
    meta["send_anonymous_usage_stats"] = json!(false);
    meta["adapter_type"] = json!(m.adapter_type);
    json!({
        "metadata": meta,
        "nodes": nodes,
        "sources": sources,
        "macros": macros,
        "docs": docs,
        "exposures": {},
        "metrics": {},
        "groups": {},
        "selectors": {},
        "disabled": disabled,
        "parent_map": m.parent_map(),
        "child_map": m.child_map(),
        "group_map": {},
        "saved_queries": {},
        "semantic_models": {},
        "unit_tests": {},
    })
}

/// A stable 128-bit digest of the project name (dbt uses md5 for `project_id`).
fn md5_like(s: &str) -> u128 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    u128::from_be_bytes(d[..16].try_into().unwrap())
}

/// Builds `run_results.json`.
pub fn run_results_json(m: &Manifest, r: &RunResults, args: Json) -> Json {
    let results: Vec<Json> = r
        .results
        .iter()
        .map(|res| {
            json!({
                "status": res.status.as_str(),
                "timing": res.timing.iter().map(|t| json!({
                    "name": t.name,
                    "started_at": t.started_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    "completed_at": t.completed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                })).collect::<Vec<_>>(),
                "thread_id": res.thread_id,
                "execution_time": res.execution_time,
                "adapter_response": res.adapter_response,
                "message": res.message,
                "failures": res.failures,
                "unique_id": res.unique_id,
                "compiled": res.compiled_code.is_some(),
                "compiled_code": res.compiled_code,
                "relation_name": res.relation_name,
                "batch_results": null,
            })
        })
        .collect();
    json!({
        "metadata": metadata(m, "run-results/v6"),
        "results": results,
        "elapsed_time": r.elapsed,
        "args": args,
    })
}

/// Writes a JSON artifact under the target folder.
pub fn write_json(target_dir: &Path, name: &str, value: &Json) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(&target_dir.join(name), &bytes)
}
