//! Artifacts in dbt's formats: `manifest.json` (schema v12) and `run_results.json` (v6),
//! written atomically (temp file + rename) so a reader never sees half a file.

use std::path::Path;

use std::collections::BTreeMap;

pub(crate) mod json;

use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::config::{Config, ConfigExt, WithDefaults};
use crate::exec::RunResults;
use crate::manifest::{Manifest, Node, ResourceType};
use crate::project::properties::ColumnDef;

/// The dbt version whose artifact schemas these files follow.
pub const DBT_COMPAT_VERSION: &str = "1.9.0";

/// Writes `bytes` to `path` through a temp file in the same folder put in its place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, crate::secrets::scrub_bytes(bytes))?;
    replace(&tmp, path)?;
    remove_dead_temps(path);
    Ok(())
}

pub fn metadata(m: &Manifest, schema: &str) -> Json {
    json!({
        "dbt_schema_version": format!("https://schemas.getdbt.com/dbt/{schema}.json"),
        "dbt_version": DBT_COMPAT_VERSION,
        "rsdbt_version": env!("CARGO_PKG_VERSION"),
        "generated_at": m.generated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "invocation_id": m.invocation_id,
        "env": {},
    })
}

/// A column in a node's `columns` map.
#[derive(Serialize)]
struct ColumnOut<'a> {
    name: &'a str,
    description: &'a str,
    meta: &'a Json,
    data_type: &'a Option<String>,
    constraints: &'a [Json],
    quote: Option<bool>,
    tags: &'a [String],
}

/// A node's `columns`, in the order its yml lists them (as dbt writes them); a column named
/// twice keeps its first place and its last description.
struct Columns<'a>(Vec<(&'a str, ColumnOut<'a>)>);

impl Serialize for Columns<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, col) in &self.0 {
            map.serialize_entry(name, col)?;
        }
        map.end()
    }
}

fn columns(cols: &[ColumnDef]) -> Columns<'_> {
    let mut out: Vec<(&str, ColumnOut<'_>)> = Vec::with_capacity(cols.len());
    for c in cols {
        let col = ColumnOut {
            name: &c.name,
            description: &c.description,
            meta: &c.meta,
            data_type: &c.data_type,
            constraints: &c.constraints,
            quote: None,
            tags: &c.tags,
        };
        match out.iter_mut().find(|(n, _)| *n == c.name) {
            Some(slot) => slot.1 = col,
            None => out.push((c.name.as_str(), col)),
        }
    }
    Columns(out)
}

#[derive(Serialize)]
struct Checksum<'a> {
    name: &'static str,
    checksum: &'a str,
}

#[derive(Serialize)]
struct RefOut<'a> {
    name: &'a str,
    package: &'a Option<String>,
    version: &'a Option<String>,
}

#[derive(Serialize)]
struct DependsOn<'a> {
    macros: &'a [smol_str::SmolStr],
    nodes: &'a [smol_str::SmolStr],
}

/// A node of `manifest.json` (dbt's manifest v12 keys), borrowing from the manifest.
#[derive(Serialize)]
struct NodeOut<'a> {
    database: &'a str,
    schema: &'a str,
    name: &'a str,
    resource_type: &'static str,
    package_name: &'a str,
    path: &'a str,
    original_file_path: &'a str,
    unique_id: &'a str,
    fqn: &'a [smol_str::SmolStr],
    alias: &'a str,
    checksum: Checksum<'a>,
    config: WithDefaults<'a>,
    tags: Vec<String>,
    description: &'a str,
    columns: Columns<'a>,
    meta: &'a Json,
    group: Option<&'a str>,
    docs: &'a Json,
    patch_path: Option<&'a str>,
    build_path: Option<&'a str>,
    unrendered_config: &'a Config,
    created_at: f64,
    config_call_dict: &'a Config,
    relation_name: Option<String>,
    raw_code: &'a str,
    language: &'static str,
    refs: Vec<RefOut<'a>>,
    sources: Vec<[&'a str; 2]>,
    metrics: [(); 0],
    depends_on: DependsOn<'a>,
    compiled_path: Option<String>,
    compiled: bool,
    compiled_code: Option<&'a str>,
    extra_ctes_injected: bool,
    extra_ctes: [(); 0],
    contract: &'a Json,
    access: &'a Json,
    constraints: [(); 0],
    version: Option<&'a str>,
    latest_version: Option<&'a str>,
    deprecation_date: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    test_metadata: Option<crate::manifest::test_nodes::MetadataOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_key_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attached_node: Option<&'a str>,
    /// Models only, as dbt (null: not a MetricFlow time spine); packages filter on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    time_spine: Option<&'a Json>,
}

fn node_out<'a>(m: &'a Manifest, n: &'a Node, compiled: Option<&'a str>) -> NodeOut<'a> {
    static EMPTY: Json = Json::Null;
    let defaults = crate::config::defaults(n.resource_type.as_str());
    let get = |k: &str| {
        n.config
            .get(k)
            .or_else(|| defaults.get(k))
            .unwrap_or(&EMPTY)
    };
    let test = n.test.as_ref();
    let is_test = test.is_some();
    NodeOut {
        database: &n.relation.database,
        schema: &n.relation.schema,
        name: &n.name,
        resource_type: n.resource_type.as_str(),
        package_name: &n.package,
        path: &n.path,
        original_file_path: &n.original_file_path,
        unique_id: &n.unique_id,
        fqn: &n.fqn,
        alias: &n.relation.identifier,
        checksum: Checksum {
            name: if crate::manifest::checksum_is_path(n) {
                "path"
            } else {
                "sha256"
            },
            checksum: n.checksum(),
        },
        config: WithDefaults {
            own: &n.config,
            defaults: crate::config::defaults(n.resource_type.as_str()),
        },
        tags: n.tags(),
        description: &n.description,
        columns: columns(&n.columns),
        meta: get("meta"),
        group: None,
        docs: get("docs"),
        patch_path: n.patch_path(),
        build_path: None,
        unrendered_config: &n.unrendered_config,
        created_at: m.generated_at.timestamp_micros() as f64 / 1e6,
        config_call_dict: &n.extras().config_call,
        relation_name: if is_test {
            crate::data_test::store_failures_as(n).map(|_| n.relation.render())
        } else if n.is_ephemeral() {
            None
        } else {
            Some(n.relation.render())
        },
        raw_code: if n.resource_type == ResourceType::Seed {
            ""
        } else {
            &n.raw_code
        },
        language: "sql",
        refs: n
            .refs
            .iter()
            .map(|r| RefOut {
                name: &r.name,
                package: &r.package,
                version: &r.version,
            })
            .collect(),
        sources: n
            .sources
            .iter()
            .map(|(s, t)| [s.as_str(), t.as_str()])
            .collect(),
        metrics: [],
        depends_on: DependsOn {
            macros: &n.depends_on_macros,
            nodes: &n.depends_on_nodes,
        },
        compiled_path: compiled
            .map(|_| format!("{}/{}", m.target_path, crate::compile::compiled_rel_path(n))),
        compiled: compiled.is_some(),
        compiled_code: compiled,
        extra_ctes_injected: compiled.is_some(),
        extra_ctes: [],
        contract: get("contract"),
        access: get("access"),
        constraints: [],
        version: n.version().map(|v| v.v.as_str()),
        latest_version: n.version().map(|v| v.latest_version.as_str()),
        deprecation_date: None,
        test_metadata: test
            .and_then(|t| t.generic.as_ref())
            .map(|g| g.metadata_out()),
        time_spine: (n.resource_type == ResourceType::Model)
            .then(|| n.extras().time_spine.as_ref().unwrap_or(&Json::Null)),
        column_name: test.and_then(|t| t.column_name.as_deref()),
        file_key_name: test.and_then(|t| t.file_key_name.as_deref()),
        attached_node: test.and_then(|t| t.attached_node.as_deref()),
    }
}

/// `manifest.json`'s `nodes`, most of a large project's manifest: serialized on every core a
/// batch at a time (memory stays bounded by two batches), each part of a batch into one buffer;
/// a batch is written while the next one is serialized. Unit tests have their own top-level
/// map, as in dbt's manifest.
fn write_nodes(
    w: &mut impl std::io::Write,
    m: &Manifest,
    compiled: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    // Parts of 64 nodes (~130 KB of JSON) serialized on every core and written in order as
    // they come; at most 32 parts (~4 MB) wait to be written.
    const PART: usize = 64;
    const AHEAD: usize = 32;
    let nodes = manifest_nodes(m);
    let parts: Vec<&[&Node]> = nodes.chunks(PART).collect();
    write_map_in_parts(w, &parts, AHEAD, |part, buf| {
        buf.reserve(part.len() * 2048);
        for n in part.iter() {
            buf.push(b',');
            json::write(buf, &n.unique_id)?;
            buf.push(b':');
            let sql = compiled.get(n.unique_id.as_str()).map(String::as_str);
            json::write(buf, &node_out(m, n, sql))?;
        }
        Ok(())
    })
}

/// A JSON map written from parts serialized on every core, in order (see
/// [`crate::parallel::pipeline`]): `entries` appends each entry of a part preceded by a comma.
fn write_map_in_parts<T: Sync>(
    w: &mut impl std::io::Write,
    parts: &[T],
    ahead: usize,
    entries: impl Fn(&T, &mut Vec<u8>) -> Result<(), serde_json::Error> + Sync,
) -> std::io::Result<()> {
    w.write_all(b"{")?;
    let mut first = true;
    crate::parallel::pipeline(
        parts,
        ahead,
        |part| {
            let mut buf = Vec::new();
            entries(part, &mut buf).map(|()| buf)
        },
        |part| {
            let part = part.map_err(std::io::Error::other)?;
            // The map's first entry has no comma before it.
            let skip = usize::from(!part.is_empty() && std::mem::take(&mut first));
            w.write_all(&part[skip..])
        },
    )?;
    w.write_all(b"}")
}

/// Writes `manifest.json`; `compiled` gives compiled SQL per node where known. Streamed to
/// disk (no intermediate JSON tree), compact as dbt writes it.
pub fn write_manifest(
    target_dir: &Path,
    m: &Manifest,
    compiled: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    let started = std::time::Instant::now();
    let created_at = m.generated_at.timestamp_micros() as f64 / 1e6;
    let disabled: BTreeMap<&str, [NodeOut; 1]> = m
        .disabled
        .values()
        .map(|n| (n.unique_id.as_str(), [node_out(m, n, None)]))
        .collect();
    let sources = sources_out(m);
    let macros: BTreeMap<&str, Json> = m
        .macros
        .values()
        .map(|mac| {
            (
                mac.unique_id.as_str(),
                json!({
                    "name": mac.name, "resource_type": "macro", "package_name": mac.package,
                    "path": mac.original_file_path, "original_file_path": mac.original_file_path,
                    "unique_id": mac.unique_id, "macro_sql": m.jinja.macro_sql(&mac.unique_id), "depends_on": {"macros": m.jinja.macro_deps(&mac.unique_id)},
                    "description": "", "meta": {}, "docs": {"show": true, "node_color": null},
                    "patch_path": null, "arguments": [], "created_at": created_at,
                    "supported_languages": null,
                }),
            )
        })
        .collect();
    let docs: BTreeMap<String, Json> = m
        .docs
        .iter()
        .map(|(name, text)| {
            let id = format!("doc.{}.{name}", m.project_name);
            (id.clone(), json!({"name": name, "resource_type": "doc", "package_name": m.project_name, "unique_id": id, "block_contents": text}))
        })
        .collect();
    let mut meta = metadata(m, "manifest/v12");
    meta["project_name"] = json!(m.project_name);
    meta["project_id"] = json!(format!("{:x}", md5_like(&m.project_name)));
    meta["user_id"] = Json::Null;
    meta["send_anonymous_usage_stats"] = json!(false);
    meta["adapter_type"] = json!(m.adapter_type);
    let empty = serde_json::Map::new();
    let exposures: BTreeMap<&str, Json> = m
        .exposures
        .values()
        .map(|e| (e.unique_id.as_str(), exposure_json(m, e)))
        .collect();
    let unit_tests = unit_tests(m);
    crate::timings::phase("manifest.json: other maps built", started);
    // dbt's key order; `nodes` is written by hand (see write_nodes), the rest by serde.
    let written = write_with(&target_dir.join("manifest.json"), |w| {
        fn field(
            w: &mut impl std::io::Write,
            name: &str,
            value: &impl Serialize,
        ) -> std::io::Result<()> {
            write!(w, ",\"{name}\":")?;
            let mut buf = Vec::new();
            json::write(&mut buf, value).map_err(std::io::Error::other)?;
            w.write_all(&buf)
        }
        // parent_map and child_map (50,000 entries each in a large project) in parts on every
        // core: serialized whole, each took an 8 MB buffer at the end of a parse's peak, and
        // entry by entry they were 20 ms of one core.
        fn id_map<'a>(
            w: &mut impl std::io::Write,
            name: &str,
            len: usize,
            entry: impl Fn(usize) -> (&'a str, Vec<&'a str>) + Sync,
        ) -> std::io::Result<()> {
            const PART: usize = 1024;
            write!(w, ",\"{name}\":")?;
            let parts: Vec<std::ops::Range<usize>> = (0..len)
                .step_by(PART)
                .map(|start| start..(start + PART).min(len))
                .collect();
            write_map_in_parts(w, &parts, 8, |range, buf| {
                for (id, ids) in range.clone().map(&entry) {
                    buf.push(b',');
                    json::write(buf, id)?;
                    buf.push(b':');
                    json::write(buf, &ids)?;
                }
                Ok(())
            })
        }
        use std::io::Write;
        w.write_all(b"{\"metadata\":")?;
        serde_json::to_writer(&mut *w, &meta).map_err(std::io::Error::other)?;
        w.write_all(b",\"nodes\":")?;
        write_nodes(w, m, compiled)?;
        field(w, "sources", &sources)?;
        field(w, "macros", &macros)?;
        field(w, "docs", &docs)?;
        field(w, "exposures", &exposures)?;
        field(w, "metrics", &empty)?;
        field(w, "groups", &empty)?;
        field(w, "selectors", &empty)?;
        field(w, "disabled", &disabled)?;
        // Built once the nodes are written, on both cores (the parse's peak is behind by then).
        let (parents, children) = crate::parallel::beside(|| m.parent_map(), || m.child_map());
        id_map(w, "parent_map", parents.len(), |i| {
            let (id, deps) = parents[i];
            (
                id,
                crate::manifest::sorted_ids(deps.iter().map(|d| d.as_str())),
            )
        })?;
        drop(parents);
        id_map(w, "child_map", children.size(), |i| children.entry(i))?;
        field(w, "group_map", &empty)?;
        field(w, "saved_queries", &empty)?;
        field(w, "semantic_models", &empty)?;
        field(w, "unit_tests", &unit_tests)?;
        w.write_all(b"}")
    });
    crate::timings::phase("manifest.json: written", started);
    written
}

/// The `sources` map of `manifest.json` (and of Jinja's `graph`).
fn sources_out(m: &Manifest) -> BTreeMap<&str, Json> {
    m.sources
        .values()
        .map(|s| (s.unique_id.as_str(), source_json(m, s)))
        .collect()
}

/// A node as `manifest.json` writes it (without compiled SQL).
pub fn node_json(m: &Manifest, n: &Node) -> Json {
    serde_json::to_value(node_out(m, n, None)).unwrap_or_default()
}

/// A source as `manifest.json` writes it.
pub fn source_json(m: &Manifest, s: &crate::manifest::Source) -> Json {
    let created_at = m.generated_at.timestamp_micros() as f64 / 1e6;
    let d = &s.def;
    json!({
        "database": s.relation.database, "schema": s.relation.schema, "name": d.name,
        "resource_type": "source", "package_name": s.package, "path": d.file,
        "original_file_path": d.file, "unique_id": s.unique_id, "fqn": s.fqn,
        "source_name": d.source_name, "source_description": d.source_description,
        "loader": d.loader, "identifier": d.identifier, "quoting": {},
        "loaded_at_field": d.loaded_at_field, "freshness": d.freshness,
        "external": d.external, "description": d.description, "columns": columns(&d.columns),
        "meta": d.meta, "source_meta": d.source_meta, "tags": d.tags,
        "config": {"enabled": d.config.bool_or("enabled", true), "event_time": null, "freshness": d.config.get("freshness").cloned().unwrap_or_else(|| d.freshness.clone())},
        "patch_path": null, "unrendered_config": {},
        "relation_name": s.relation.render(), "created_at": created_at,
    })
}

/// The nodes of `manifest.json`'s `nodes` (and of Jinja's `graph`): unit tests have their own
/// top-level map, as in dbt's manifest.
fn manifest_nodes(m: &Manifest) -> Vec<&Node> {
    m.nodes
        .values()
        .filter(|n| n.unit_test().is_none())
        .map(|n| &**n)
        .collect()
}

/// dbt's `graph` context variable: the manifest's nodes, sources and exposures as
/// dictionaries (what packages such as dbt-project-evaluator read).
pub fn graph_json(m: &Manifest) -> Json {
    let empty = json!({});
    let nodes = manifest_nodes(m);
    let values = crate::parallel::map(&nodes, 64, |n| node_json(m, n));
    let nodes: serde_json::Map<String, Json> = nodes
        .iter()
        .map(|n| n.unique_id.to_string())
        .zip(values)
        .collect();
    json!({
        "nodes": nodes,
        "sources": sources_out(m),
        "exposures": m
            .exposures
            .values()
            .map(|e| (e.unique_id.as_str(), exposure_json(m, e)))
            .collect::<BTreeMap<_, _>>(),
        "metrics": empty, "groups": empty, "semantic_models": empty,
        "saved_queries": empty, "unit_tests": unit_tests(m),
    })
}

/// The `unit_tests` map of `manifest.json`.
fn unit_tests(m: &Manifest) -> BTreeMap<&str, Json> {
    let created_at = m.generated_at.timestamp_micros() as f64 / 1e6;
    m.nodes
        .values()
        .filter_map(|n| n.unit_test().map(|u| (n, u)))
        .map(|(n, u)| {
            let value = json!({
                "model": u.model, "given": u.given, "expect": u.expect, "name": n.name,
                "resource_type": "unit_test", "package_name": n.package, "path": n.path,
                "original_file_path": n.original_file_path, "unique_id": n.unique_id, "fqn": n.fqn,
                "description": n.description, "overrides": u.overrides,
                "depends_on": {"macros": [], "nodes": n.depends_on_nodes},
                "config": {"tags": n.tags(), "meta": n.config.get("meta").cloned().unwrap_or(json!({})), "enabled": true},
                "checksum": null, "schema": n.relation.schema, "created_at": created_at,
                "versions": null, "version": null,
            });
            (n.unique_id.as_str(), value)
        })
        .collect()
}

/// Writes through a buffered temp file in the same folder, then renames it into place.
fn write_with(
    path: &Path,
    f: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    f(&mut w)?;
    std::io::Write::flush(&mut w)?;
    drop(w);
    replace(&tmp, path)?;
    remove_dead_temps(path);
    Ok(())
}

/// Puts `tmp` in the place of `path` atomically. Over an existing regular file, the two are
/// exchanged and the old content removed: ext4 writes a file's data to disk before a plain
/// rename replaces another (auto_da_alloc), ~80 ms for a 10,000-model manifest, and artifacts
/// are rebuilt by the next command anyway.
fn replace(tmp: &Path, path: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
        if let (Ok(from), Ok(to)) = (c(tmp), c(path)) {
            // SAFETY: two NUL-terminated paths that outlive the call.
            let swapped = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    from.as_ptr(),
                    libc::AT_FDCWD,
                    to.as_ptr(),
                    libc::RENAME_EXCHANGE,
                )
            } == 0;
            if swapped {
                return std::fs::remove_file(tmp);
            }
        }
    }
    std::fs::rename(tmp, path)
}

/// Removes the temp files a killed process left beside `path` (`<name>.tmp<pid>` of a pid that
/// no longer runs); a live process's temp file is left alone.
fn remove_dead_temps(path: &Path) {
    let (Some(dir), Some(stem)) = (path.parent(), path.file_stem().and_then(|s| s.to_str())) else {
        return;
    };
    let prefix = format!("{stem}.tmp");
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A stable 128-bit digest of the project name (dbt uses md5 for `project_id`).
fn md5_like(s: &str) -> u128 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    u128::from_be_bytes(d[..16].try_into().unwrap())
}

/// Builds `run_results.json`.
pub fn run_results_json(m: &Manifest, r: &RunResults, args: Json) -> Json {
    serde_json::to_value(run_results_out(m, r, &args)).unwrap_or_default()
}

/// Writes `run_results.json` straight from the results: a JSON tree of 40,000 test results
/// would hold a few hundred megabytes at the end of a run.
pub fn write_run_results(
    target_dir: &Path,
    m: &Manifest,
    r: &RunResults,
    args: &Json,
) -> std::io::Result<()> {
    let bytes =
        serde_json::to_vec_pretty(&run_results_out(m, r, args)).map_err(std::io::Error::other)?;
    write_atomic(&target_dir.join("run_results.json"), &bytes)
}

/// `run_results.json`, keys in the sorted order the JSON tree it replaces wrote.
#[derive(serde::Serialize)]
struct RunResultsOut<'a> {
    args: &'a Json,
    elapsed_time: f64,
    metadata: Json,
    results: Vec<ResultOut<'a>>,
}

#[derive(serde::Serialize)]
struct ResultOut<'a> {
    adapter_response: &'a Json,
    batch_results: &'a Option<Json>,
    compiled: bool,
    compiled_code: &'a Option<String>,
    execution_time: f64,
    failures: Option<u64>,
    message: &'a Option<String>,
    relation_name: &'a Option<String>,
    status: &'static str,
    thread_id: &'a str,
    timing: Vec<TimingOut>,
    unique_id: &'a str,
}

#[derive(serde::Serialize)]
struct TimingOut {
    completed_at: String,
    name: &'static str,
    started_at: String,
}

fn run_results_out<'a>(m: &Manifest, r: &'a RunResults, args: &'a Json) -> RunResultsOut<'a> {
    let time =
        |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let results = r
        .results
        .iter()
        .map(|res| ResultOut {
            adapter_response: &res.adapter_response,
            batch_results: &res.batch_results,
            compiled: res.compiled_code.is_some(),
            compiled_code: &res.compiled_code,
            execution_time: res.execution_time,
            failures: res.failures,
            message: &res.message,
            relation_name: &res.relation_name,
            status: res.status.as_str(),
            thread_id: &res.thread_id,
            timing: res
                .timing
                .iter()
                .map(|t| TimingOut {
                    completed_at: time(&t.completed_at),
                    name: t.name,
                    started_at: time(&t.started_at),
                })
                .collect(),
            unique_id: &res.unique_id,
        })
        .collect();
    RunResultsOut {
        args,
        elapsed_time: r.elapsed,
        metadata: metadata(m, "run-results/v6"),
        results,
    }
}

/// Writes a JSON artifact under the target folder.
pub fn write_json(target_dir: &Path, name: &str, value: &Json) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(&target_dir.join(name), &bytes)
}

/// [`write_json`] of a large artifact of typed values, written compact without a JSON tree.
pub fn write_compact(
    target_dir: &Path,
    name: &str,
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    json::write(&mut bytes, value).map_err(std::io::Error::other)?;
    write_atomic(&target_dir.join(name), &bytes)
}

/// One relation of `catalog.json`, as the warehouse describes it.
pub struct CatalogEntry {
    pub unique_id: String,
    pub database: String,
    pub schema: String,
    pub name: String,
    /// `BASE TABLE` or `VIEW`.
    pub kind: &'static str,
    /// Column name and the warehouse's type name, in table order.
    pub columns: Vec<(String, String)>,
    pub row_count: Option<u64>,
    /// Size of the data files, where the format says (Delta).
    pub bytes: Option<u64>,
    /// What the warehouse's catalog says beyond the columns (Spark's `DESCRIBE`).
    pub described: Described,
}

/// A relation's comment, owner and column comments, as a warehouse's catalog keeps them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Described {
    pub comment: Option<String>,
    pub owner: Option<String>,
    pub column_comments: std::collections::BTreeMap<String, String>,
    pub bytes: Option<u64>,
    pub rows: Option<u64>,
}

/// dbt's `catalog.json` (v1): every built relation with its columns and types, and the row
/// count where the engine gives it.
pub fn catalog_json(m: &Manifest, nodes: &[CatalogEntry], sources: &[CatalogEntry]) -> Json {
    let entry = |e: &CatalogEntry| {
        let columns: serde_json::Map<String, Json> = e
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| {
                (
                    name.clone(),
                    json!({"type": ty, "index": i + 1, "name": name,
                           "comment": e.described.column_comments.get(name)}),
                )
            })
            .collect();
        let mut stats = serde_json::Map::new();
        stats.insert(
            "has_stats".into(),
            json!({"id": "has_stats", "label": "Has Stats?", "value": e.row_count.is_some(),
                   "include": false, "description": "Indicates whether there are statistics for this table"}),
        );
        if let Some(b) = e.bytes {
            stats.insert(
                "bytes".into(),
                json!({"id": "bytes", "label": "Approximate Size", "value": b, "include": true,
                       "description": "Size of the table's current data files"}),
            );
        }
        if let Some(n) = e.row_count {
            stats.insert(
                "row_count".into(),
                json!({"id": "row_count", "label": "Row Count", "value": n, "include": true,
                       "description": "Number of rows in the table"}),
            );
        }
        (
            e.unique_id.clone(),
            json!({
                "metadata": {"type": e.kind, "schema": e.schema, "name": e.name,
                             "database": e.database, "comment": e.described.comment,
                             "owner": e.described.owner},
                "columns": columns,
                "stats": stats,
                "unique_id": e.unique_id,
            }),
        )
    };
    json!({
        "metadata": metadata(m, "catalog/v1"),
        "nodes": nodes.iter().map(entry).collect::<serde_json::Map<_, _>>(),
        "sources": sources.iter().map(entry).collect::<serde_json::Map<_, _>>(),
        "errors": null,
    })
}

/// An exposure as dbt's manifest (v12) writes it.
pub fn exposure_json(m: &Manifest, e: &crate::manifest::Exposure) -> Json {
    let raw = &e.def.raw;
    let get = |k: &str| raw.get(k).cloned().unwrap_or(Json::Null);
    let refs: Vec<Json> = e
        .depends_on_nodes
        .iter()
        .filter(|id| !id.starts_with("source."))
        .filter_map(|id| m.nodes.get(id))
        .map(|n| json!({"name": n.name, "package": null, "version": null}))
        .collect();
    let sources: Vec<Json> = e
        .depends_on_nodes
        .iter()
        .filter_map(|id| m.sources.get(id.as_str()))
        .map(|s| json!([s.def.source_name, s.def.name]))
        .collect();
    json!({
        "name": e.def.name,
        "resource_type": "exposure",
        "package_name": e.package,
        "path": e.def.file.split_once('/').map(|(_, p)| p).unwrap_or(&e.def.file),
        "original_file_path": e.def.file,
        "unique_id": e.unique_id,
        "fqn": e.fqn,
        "type": get("type"),
        "owner": get("owner"),
        "description": e.def.description,
        "label": get("label"),
        "maturity": get("maturity"),
        "meta": raw.get("meta").cloned().unwrap_or(json!({})),
        "tags": e.def.tags,
        "config": {"enabled": true, "tags": e.def.tags, "meta": raw.get("meta").cloned().unwrap_or(json!({}))},
        "unrendered_config": {},
        "url": get("url"),
        "depends_on": {"macros": [], "nodes": e.depends_on_nodes},
        "refs": refs,
        "sources": sources,
        "metrics": [],
        "created_at": m.generated_at.timestamp() as f64,
    })
}

#[cfg(test)]
mod tests {
    /// Parts serialized apart make one JSON map, in order, whatever parts are empty.
    #[test]
    fn a_map_written_in_parts_is_one_json_map() {
        let parts: Vec<std::ops::Range<u32>> = vec![0..0, 0..3, 3..3, 3..1000, 1000..1001];
        let mut out = Vec::new();
        super::write_map_in_parts(&mut out, &parts, 2, |range, buf| {
            for i in range.clone() {
                buf.extend_from_slice(format!(",\"k{i}\":{i}").as_bytes());
            }
            Ok(())
        })
        .unwrap();
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(map.len(), 1001);
        assert_eq!(map.keys().next().map(String::as_str), Some("k0"));
        assert_eq!(map["k1000"], 1000);
        let mut empty = Vec::new();
        super::write_map_in_parts(&mut empty, &parts[..1], 2, |_, _| Ok(())).unwrap();
        assert_eq!(empty, b"{}");
    }

    /// A file written again replaces the old one and leaves no temp file; a directory in the
    /// way is an error, not swapped with the file.
    #[test]
    fn artifacts_replace_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        for text in ["first", "second, longer"] {
            super::write_with(&path, |w| std::io::Write::write_all(w, text.as_bytes())).unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let blocked = dir.path().join("run_results.json");
        std::fs::create_dir(&blocked).unwrap();
        assert!(super::write_with(&blocked, |w| std::io::Write::write_all(w, b"x")).is_err());
        assert!(blocked.is_dir());
    }
}
