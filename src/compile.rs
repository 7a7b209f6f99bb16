//! Compile: render a node's final SQL (refs resolved), inline ephemeral models as CTEs, and
//! write it under `target/compiled/`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::diag::Diagnostic;
use crate::jinja::{Phase, RefCall, Relation, Resolve};
use crate::manifest::{Manifest, RelationIndex};

/// A node's compiled SQL.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The SQL that runs: ephemeral CTEs injected.
    pub sql: String,
    /// The node's own rendered SQL, before injection (what an outer query inlines); kept for
    /// ephemeral models only.
    pub body: String,
    /// `(cte name, sql)` of every ephemeral model inlined, in dependency order.
    pub ctes: Vec<(String, String)>,
    /// `log()` / `print()` output of the render.
    pub logs: Vec<crate::jinja::Logged>,
    /// The render asked the warehouse (see `Capture::introspected`).
    pub introspected: bool,
}

/// Compiles nodes on demand, caching results (ephemeral models are compiled once per run).
pub struct Compiler<'m> {
    manifest: &'m Manifest,
    resolver: Arc<RelationIndex>,
    cache: Mutex<BTreeMap<String, Arc<Compiled>>>,
    /// `--empty`: refs and sources read as zero rows.
    empty: bool,
}

impl<'m> Compiler<'m> {
    pub fn new(manifest: &'m Manifest) -> Self {
        Self::with_deferred(manifest, &BTreeMap::new())
    }

    /// A compiler whose refs to `deferred` nodes (unique_id → relation) point at those relations.
    pub fn with_deferred(
        manifest: &'m Manifest,
        deferred: &BTreeMap<String, crate::jinja::Relation>,
    ) -> Self {
        Self {
            manifest,
            resolver: Arc::new(RelationIndex::new(manifest, deferred)),
            cache: Mutex::new(BTreeMap::new()),
            empty: false,
        }
    }

    /// With `empty`, nodes read their refs and sources as zero rows (dbt's `--empty`).
    pub fn empty(mut self, empty: bool) -> Self {
        self.empty = empty;
        self
    }

    pub fn compile(&self, unique_id: &str) -> Result<Arc<Compiled>, Diagnostic> {
        self.compile_with(unique_id, false)
    }

    /// Compiles with `is_incremental()` answering `incremental`.
    pub fn compile_with(
        &self,
        unique_id: &str,
        incremental: bool,
    ) -> Result<Arc<Compiled>, Diagnostic> {
        if let Some(c) = self.cache.lock().unwrap().get(unique_id) {
            return Ok(c.clone());
        }
        let node = &self.manifest.nodes[unique_id];
        let resolver: Arc<dyn Resolve> = match node
            .config
            .get("time_travel")
            .and_then(serde_json::Value::as_object)
        {
            Some(pins) if !pins.is_empty() => Arc::new(TimeTravel {
                inner: self.resolver.clone(),
                pins: pins.clone(),
            }),
            _ => self.resolver.clone(),
        };
        let resolver = match self.empty {
            true => Arc::new(Empty(resolver)),
            false => resolver,
        };
        let generic = node.test.as_ref().and_then(|t| t.generic.as_ref());
        // Most tests of a large project get their SQL without a render, and without a copy
        // of the node's fields for one.
        let builtin = generic.and_then(|g| {
            self.manifest.jinja.builtin_test_sql(
                &node.unique_id,
                &node.config,
                &g.name,
                g.namespace.as_deref(),
                &g.kwargs,
                resolver.as_ref(),
            )
        });
        let phase = Phase::Compile {
            resolver,
            incremental,
        };
        let (body, capture) = match (builtin, generic) {
            (Some(sql), _) => (sql, Default::default()),
            (None, Some(g)) => self.manifest.jinja.render_test_call(
                node.info(),
                &g.name,
                g.namespace.as_deref(),
                &g.kwargs,
                phase,
            )?,
            (None, None) => self.manifest.jinja.render_node(node.info(), phase)?,
        };
        let mut ctes: Vec<(String, String)> = Vec::new();
        for cte in &capture.ephemerals {
            let Some(eph) = self
                .manifest
                .nodes
                .values()
                .find(|n| n.relation.cte_name.as_deref() == Some(cte.as_str()))
            else {
                continue;
            };
            let inner = self.compile(&eph.unique_id)?;
            for c in &inner.ctes {
                if !ctes.iter().any(|(n, _)| n == &c.0) {
                    ctes.push(c.clone());
                }
            }
            if !ctes.iter().any(|(n, _)| n == cte) {
                ctes.push((cte.clone(), inner.body.clone()));
            }
        }
        let sql = inject_ctes(&body, &ctes);
        // Only ephemeral models are compiled again (into each model that refs them): cache
        // those, and keep their un-injected body; other nodes hold just their SQL.
        let reused = node.is_ephemeral();
        let body = if reused { body } else { String::new() };
        let compiled = Arc::new(Compiled {
            sql,
            body,
            ctes,
            logs: capture.logs,
            introspected: capture.introspected,
        });
        if reused {
            self.cache
                .lock()
                .unwrap()
                .insert(unique_id.to_string(), compiled.clone());
        }
        Ok(compiled)
    }

    pub fn manifest(&self) -> &'m Manifest {
        self.manifest
    }

    /// Compiles one microbatch: refs to models with an `event_time` config read only the rows
    /// of the window `[start, end)`.
    pub fn compile_batch(
        &self,
        unique_id: &str,
        start: &str,
        end: &str,
    ) -> Result<String, Diagnostic> {
        let node = &self.manifest.nodes[unique_id];
        let event_times = self
            .manifest
            .nodes
            .values()
            .filter_map(|n| {
                n.config
                    .get("event_time")
                    .and_then(|v| v.as_str())
                    .map(|c| (n.name.to_string(), c.to_string()))
            })
            .collect();
        let resolver: Arc<dyn Resolve> = Arc::new(BatchResolver {
            inner: self.resolver.clone(),
            event_times,
            start: start.to_string(),
            end: end.to_string(),
        });
        let resolver = match self.empty {
            true => Arc::new(Empty(resolver)),
            false => resolver,
        };
        let phase = Phase::Compile {
            resolver,
            incremental: true,
        };
        let (sql, _) = self.manifest.jinja.render_node(node.info(), phase)?;
        Ok(sql)
    }

    /// Renders a hook (`pre-hook` / `post-hook`) in the context of its node: `{{ this }}` works.
    pub fn render_hook(&self, unique_id: &str, hook: &str) -> Result<String, Diagnostic> {
        let node = &self.manifest.nodes[unique_id];
        let phase = Phase::Compile {
            resolver: self.resolver.clone(),
            incremental: false,
        };
        self.manifest
            .jinja
            .render_str(node.info(), hook, phase)
            .map(|(sql, _)| sql)
    }

    /// Renders a project hook (`on-run-start` / `on-run-end`), named like dbt's
    /// `<project>-on-run-start-0`; `extra` adds context such as `schemas` and `results`. Returns
    /// the SQL and the `log(..., info=True)` lines. `package` is the project the hook comes
    /// from (an installed package's hooks see its own vars, as in dbt); `None`: the project's.
    pub fn render_operation(
        &self,
        package: Option<&str>,
        name: &str,
        file: &str,
        sql: &str,
        extra: Vec<(String, minijinja::Value)>,
    ) -> Result<(String, Vec<crate::jinja::Logged>), Diagnostic> {
        let (mut info, phase) = self.operation(name, "operation", file);
        if let Some(package) = package {
            info.package = package.to_string();
            info.unique_id = format!("operation.{package}.{name}");
        }
        let (out, capture) = self
            .manifest
            .jinja
            .render_str_with(info, sql, phase, extra)?;
        Ok((out, capture.logs))
    }

    fn operation(
        &self,
        name: &str,
        resource_type: &str,
        template: &str,
    ) -> (crate::jinja::NodeInfo, Phase) {
        let info = crate::jinja::NodeInfo {
            unique_id: format!("{resource_type}.{}.{name}", self.manifest.project_name),
            name: name.into(),
            resource_type: resource_type.into(),
            package: self.manifest.project_name.clone(),
            template: template.into(),
            source: Arc::from(""),
            config: Default::default(),
            this: crate::jinja::Relation::new("", "", name),
        };
        let phase = Phase::Compile {
            resolver: self.resolver.clone(),
            incremental: false,
        };
        (info, phase)
    }

    /// Renders free SQL (for `show --inline`) in the context of the project.
    pub fn compile_inline(&self, sql: &str) -> Result<String, Diagnostic> {
        let (info, phase) = self.operation("inline_query", "sql_operation", "inline query");
        let (out, capture) = self.manifest.jinja.render_str(info, sql, phase)?;
        let mut ctes = Vec::new();
        for cte in &capture.ephemerals {
            if let Some(eph) = self
                .manifest
                .nodes
                .values()
                .find(|n| n.relation.cte_name.as_deref() == Some(cte.as_str()))
            {
                let inner = self.compile(&eph.unique_id)?;
                ctes.extend(inner.ctes.iter().cloned());
                ctes.push((cte.clone(), inner.body.clone()));
            }
        }
        Ok(inject_ctes(&out, &ctes))
    }
}

/// Resolves refs for one microbatch: upstream models with an `event_time` become a filtered
/// subquery over the batch window.
struct BatchResolver {
    inner: Arc<RelationIndex>,
    event_times: BTreeMap<String, String>,
    start: String,
    end: String,
}

impl Resolve for BatchResolver {
    fn resolve_ref(&self, from: &str, call: &RefCall) -> Result<Relation, String> {
        let mut rel = self.inner.resolve_ref(from, call)?;
        if let Some(col) = self.event_times.get(&call.name) {
            let filtered = format!(
                "(select * from {} where {c} >= cast('{}' as timestamp) and {c} < cast('{}' as timestamp)) _dbt_et_filter_subq_{}",
                rel.render(),
                self.start,
                self.end,
                call.name,
                c = crate::jinja::quote(col)
            );
            rel.cte_name = Some(filtered);
        }
        Ok(rel)
    }
    fn resolve_source(&self, from: &str, source: &str, table: &str) -> Result<Relation, String> {
        self.inner.resolve_source(from, source, table)
    }
}

/// `--empty`: each ref and source as a subquery of no rows with the relation's columns, as dbt
/// renders it (`(select * from x where false limit 0) _dbt_limit_subq_x`).
struct Empty(Arc<dyn Resolve>);

impl Empty {
    fn limited(rel: Relation) -> Relation {
        // An ephemeral model stays its CTE (it is injected by that name); its own refs are
        // empty already.
        if rel.kind.as_deref() == Some("cte") {
            return rel;
        }
        let name: String = rel
            .identifier
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Relation {
            cte_name: Some(format!(
                "(select * from {} where false limit 0) _dbt_limit_subq_{name}",
                rel.render()
            )),
            ..rel
        }
    }
}

impl Resolve for Empty {
    fn resolve_ref(&self, from: &str, call: &RefCall) -> Result<Relation, String> {
        self.0.resolve_ref(from, call).map(Self::limited)
    }
    fn resolve_source(&self, from: &str, source: &str, table: &str) -> Result<Relation, String> {
        self.0
            .resolve_source(from, source, table)
            .map(Self::limited)
    }
}

/// A model's `time_travel` config: `{model: {version: 12}, "source.table": {snapshot_id: N}}`
/// pins what its `ref()` / `source()` read to a Delta version or an Iceberg snapshot.
struct TimeTravel {
    inner: Arc<RelationIndex>,
    pins: serde_json::Map<String, serde_json::Value>,
}

impl TimeTravel {
    fn pin(&self, key: &str, rel: Relation) -> Result<Relation, String> {
        let Some(pin) = self.pins.get(key) else {
            return Ok(rel);
        };
        let get = |k: &str| pin.get(k).and_then(serde_json::Value::as_i64);
        match (get("version"), get("snapshot_id")) {
            (Some(v), None) => rel.pinned('v', v),
            (None, Some(s)) => rel.pinned('s', s),
            _ => Err(format!(
                "time_travel for '{key}' needs `version: N` (Delta) or `snapshot_id: N` (Iceberg), got {pin}"
            )),
        }
    }
}

impl Resolve for TimeTravel {
    fn resolve_ref(&self, from: &str, call: &RefCall) -> Result<Relation, String> {
        let rel = self.inner.resolve_ref(from, call)?;
        self.pin(&call.name, rel)
    }
    fn resolve_source(&self, from: &str, source: &str, table: &str) -> Result<Relation, String> {
        let rel = self.inner.resolve_source(from, source, table)?;
        self.pin(&format!("{source}.{table}"), rel)
    }
}

/// Adds `with cte as (...)` for ephemeral models, merging with an existing leading `WITH`.
pub fn inject_ctes(sql: &str, ctes: &[(String, String)]) -> String {
    if ctes.is_empty() {
        return sql.to_string();
    }
    let defs: Vec<String> = ctes
        .iter()
        .map(|(name, body)| format!("{name} as (\n{}\n)", body.trim().trim_end_matches(';')))
        .collect();
    let defs = defs.join(", ");
    let start = skip_comments(sql);
    let rest = &sql[start..];
    let is_with = rest.len() >= 4
        && rest[..4].eq_ignore_ascii_case("with")
        && rest[4..].starts_with(|c: char| c.is_whitespace());
    if is_with {
        let after = rest[4..].trim_start();
        let (recursive, after) = if after.len() > 9 && after[..9].eq_ignore_ascii_case("recursive")
        {
            ("recursive ", after[9..].trim_start())
        } else {
            ("", after)
        };
        format!("{}with {recursive}{defs}, {after}", &sql[..start])
    } else {
        format!("{}with {defs}\n{rest}", &sql[..start])
    }
}

/// Byte offset of the first token after whitespace and SQL comments.
fn skip_comments(sql: &str) -> usize {
    let mut i = 0;
    let b = sql.as_bytes();
    loop {
        while i < b.len() && (b[i] as char).is_whitespace() {
            i += 1;
        }
        if sql[i..].starts_with("--") {
            i = sql[i..].find('\n').map(|p| i + p + 1).unwrap_or(b.len());
        } else if sql[i..].starts_with("/*") {
            i = sql[i..].find("*/").map(|p| i + p + 2).unwrap_or(b.len());
        } else {
            return i;
        }
    }
}

/// Where a node's compiled SQL goes, relative to the target folder: the node's file, or for a
/// generic test `<its yml path>/<test name>.sql` (dbt's layout).
pub fn compiled_rel_path(node: &crate::manifest::Node) -> String {
    let generic = node.test.as_ref().is_some_and(|t| t.generic.is_some());
    if let Some(u) = node.unit_test() {
        format!(
            "compiled/{}/{}/{}/{}.sql",
            node.package, node.original_file_path, u.model, u.name
        )
    } else if generic {
        format!(
            "compiled/{}/{}/{}",
            node.package, node.original_file_path, node.path
        )
    } else {
        format!("compiled/{}/{}", node.package, node.original_file_path)
    }
}

/// Whether the file at `path` holds exactly `bytes`: an unchanged compiled file is not written
/// again. One read into a buffer a byte larger than `bytes` (a short read of a regular file is
/// its end), instead of `fs::read`'s size query and second read: three system calls a file
/// instead of five, for the 50,000 files of a large project's compile.
fn holds(path: &Path, bytes: &[u8]) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut buf = vec![0; bytes.len() + 1];
    file.read(&mut buf).is_ok_and(|n| &buf[..n] == bytes)
}

/// Writes compiled SQL to `<target>/compiled/<project>/<original_file_path>`.
///
/// A plain write, as dbt does: these are copies for people to read. Unchanged files are not
/// rewritten (on ext4, truncating a file forces a flush at close, which made re-compiling a
/// large project I/O-bound), and folders are created only when missing.
pub fn write_compiled(
    target_dir: &Path,
    node: &crate::manifest::Node,
    sql: &str,
) -> std::io::Result<String> {
    let rel = compiled_rel_path(node);
    let path = target_dir.join(&rel);
    if holds(&path, sql.as_bytes()) {
        return Ok(rel);
    }
    let sql = crate::secrets::scrub(sql);
    match std::fs::write(&path, sql.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, sql.as_bytes())?;
        }
        other => other?,
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_is_true_only_for_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sql");
        assert!(!holds(&path, b"select 1"));
        std::fs::write(&path, "select 1").unwrap();
        assert!(holds(&path, b"select 1"));
        for other in [&b"select 12"[..], b"select ", b"select 2", b""] {
            assert!(!holds(&path, other), "{other:?}");
        }
        std::fs::write(&path, "").unwrap();
        assert!(holds(&path, b""));
    }

    #[test]
    fn ctes_are_prepended_or_merged() {
        let ctes = vec![("__dbt__cte__a".to_string(), "select 1 as x".to_string())];
        assert_eq!(
            inject_ctes("select * from __dbt__cte__a", &ctes),
            "with __dbt__cte__a as (\nselect 1 as x\n)\nselect * from __dbt__cte__a"
        );
        assert_eq!(
            inject_ctes(
                "-- hi\nWITH b as (select 2) select * from b, __dbt__cte__a",
                &ctes
            ),
            "-- hi\nwith __dbt__cte__a as (\nselect 1 as x\n), b as (select 2) select * from b, __dbt__cte__a"
        );
        assert_eq!(inject_ctes("select 1", &[]), "select 1");
    }
}
