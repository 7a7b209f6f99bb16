//! The commands that run nodes — `run`, `build`, `test`, `seed`, `snapshot` — share one
//! implementation: settings, selection, the checks before anything runs, the run, artifacts.

use super::*;

/// `--watch`, and `--watch-sources` (which implies it) with its polling interval.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "datafusion"), allow(dead_code))]
pub(super) struct Watching {
    pub(super) files: bool,
    pub(super) sources: Option<std::time::Duration>,
}

impl Watching {
    pub(super) fn new(watch: bool, sources: bool, interval: f64) -> Result<Self, Diagnostics> {
        if !(interval.is_finite() && interval > 0.0) {
            return Err(Diagnostic::error(
                "watch",
                format!("--watch-interval {interval} is not a number of seconds above 0"),
            )
            .hint("e.g. --watch-interval 0.5")
            .into());
        }
        Ok(Watching {
            files: watch || sources,
            sources: sources.then(|| std::time::Duration::from_secs_f64(interval)),
        })
    }
}

/// [`execute`], once or (`--watch`) again after every save, and (`--watch-sources`) when a
/// stream source has new records.
#[cfg(feature = "datafusion")]
#[allow(clippy::too_many_arguments)]
pub(super) fn execute_or_watch(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    selection: &Selection,
    types: &[ResourceType],
    what: &str,
    flags: Flags,
    watching: Watching,
) -> Result<i32, Diagnostics> {
    if !watching.files {
        return execute(cli, printer, invocation, selection, types, what, flags);
    }
    let (root, target_dir, metrics) = watched(cli, invocation)?;
    if let Some(addr) = &cli.global.metrics_listen {
        serve_metrics(printer, addr, metrics)?;
    }
    let stream_sources = || -> Result<Vec<_>, Diagnostics> {
        let l = load(&cli.global, &Invocation::new())?;
        let sources = crate::adapter::external::external_sources(&l.manifest, &l.project.root)?;
        Ok(sources
            .into_iter()
            .filter_map(|s| {
                let m = l.manifest.sources.get(&s.unique_id)?;
                Some((format!("{}.{}", m.def.source_name, m.def.name), s.kafka?))
            })
            .collect())
    };
    let streams = watching.sources.map(|every| watch::Streams {
        every,
        sources: &stream_sources,
    });
    watch::watch(printer, selection, &root, &target_dir, streams, &|sel| {
        execute(cli, printer, &Invocation::new(), sel, types, what, flags)
    })
}

#[cfg(not(feature = "datafusion"))]
#[allow(clippy::too_many_arguments)]
pub(super) fn execute_or_watch(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    selection: &Selection,
    types: &[ResourceType],
    what: &str,
    flags: Flags,
    _watching: Watching,
) -> Result<i32, Diagnostics> {
    execute(cli, printer, invocation, selection, types, what, flags)
}

#[cfg(feature = "datafusion")]
pub(super) fn execute(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    selection: &Selection,
    types: &[ResourceType],
    what: &str,
    flags: Flags,
) -> Result<i32, Diagnostics> {
    let l = load(&cli.global, invocation)?;
    let state = load_state(selection, &l)?;
    let ids: Vec<String> = selected(&l, selection, state.as_ref(), types)?
        .into_iter()
        .filter(|id| crate::exec::is_executable(&l.manifest.nodes[id.as_str()]))
        .collect();
    run_nodes(
        &cli.global,
        printer,
        &l,
        &ids,
        &RunOptions {
            selection,
            state: state.as_ref(),
            what,
            flags,
        },
    )
}

/// Run flags that change what nodes do.
#[cfg_attr(not(feature = "datafusion"), allow(dead_code))]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Flags {
    pub(super) full_refresh: bool,
    pub(super) event_time: (Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>),
    /// Run and build plan their models first; other commands build no models
    /// (`Flags::default()`: on, with nothing to check).
    pub(super) static_analysis: crate::check::Mode,
    /// `--skip-unchanged`: reuse models whose SQL, config and inputs did not change.
    pub(super) skip_unchanged: bool,
    /// `--empty`: refs and sources read as zero rows.
    pub(super) empty: bool,
}

/// `--event-time-start` / `--event-time-end`, parsed.
pub(super) fn event_times(
    start: &Option<String>,
    end: &Option<String>,
) -> Result<(Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>), Diagnostics> {
    let parse =
        |flag: &str, v: &Option<String>| -> Result<Option<chrono::NaiveDateTime>, Diagnostics> {
            match v {
                None => Ok(None),
                Some(text) => crate::exec::parse_event_time(text)
                    .map(Some)
                    .ok_or_else(|| {
                        Diagnostic::error(
                            "flag",
                            format!("{flag} '{text}' is not a date or timestamp"),
                        )
                        .hint("write e.g. 2024-01-01 or 2024-01-01T10:00:00")
                        .into()
                    }),
            }
        };
    Ok((
        parse("--event-time-start", start)?,
        parse("--event-time-end", end)?,
    ))
}

/// How a run was asked for: recorded in run_results.json so `retry` can repeat it.
#[cfg(feature = "datafusion")]
#[derive(Clone, Copy)]
pub(super) struct RunOptions<'a> {
    pub(super) selection: &'a Selection,
    pub(super) state: Option<&'a crate::graph::state::State>,
    /// The command: `run`, `build`, `test`, `seed`.
    pub(super) what: &'a str,
    pub(super) flags: Flags,
}

/// The stream sources the selected nodes read must be reachable before anything runs: a
/// broker that is down stops the run (exit 2) rather than failing each node that reads it.
#[cfg(feature = "datafusion")]
fn check_streams(
    l: &Loaded,
    ids: &[String],
    adapter: &crate::adapter::AnyAdapter,
) -> Result<(), Diagnostics> {
    let crate::adapter::AnyAdapter::DataFusion(a) = adapter else {
        return Ok(());
    };
    let read: std::collections::BTreeSet<&str> = ids
        .iter()
        .filter_map(|id| l.manifest.nodes.get(id.as_str()))
        .flat_map(|n| n.depends_on_nodes.iter().map(smol_str::SmolStr::as_str))
        .filter(|d| d.starts_with("source."))
        .collect();
    if read.is_empty() {
        return Ok(());
    }
    let read: Vec<&str> = read.into_iter().collect();
    let mut diags = Diagnostics::new();
    for (id, why) in runtime().block_on(a.check_streams(&read)) {
        let mut d = Diagnostic::error("source", format!("{id} cannot be read: {why}"));
        if let Some(s) = l.manifest.sources.get(&id) {
            d = d.at(s.def.location());
        }
        diags.push(d);
    }
    diags.into_result(())
}

/// What the connected server cannot build (a Spark table format without row-level changes,
/// say) fails the command before anything runs.
#[cfg(feature = "datafusion")]
fn check_server(
    l: &Loaded,
    ids: &[String],
    adapter: &crate::adapter::AnyAdapter,
) -> Result<(), Diagnostics> {
    #[cfg(feature = "spark")]
    if let crate::adapter::AnyAdapter::Spark(spark) = adapter {
        let mut diags = Diagnostics::new();
        for node in ids
            .iter()
            .filter_map(|id| l.manifest.nodes.get(id.as_str()))
        {
            let materialized = match node.resource_type {
                ResourceType::Snapshot => "snapshot",
                _ => node.materialized(),
            };
            if let Some(why) = spark.cannot_build(materialized, &node.config) {
                diags.push(config_error(
                    node,
                    &["incremental_strategy", "file_format", "unique_key"],
                    &why,
                ));
            }
        }
        return diags.into_result(());
    }
    let _ = (l, ids, adapter);
    Ok(())
}

/// A config error on `node`, pointing at the first of `keys` its file names.
#[cfg(feature = "datafusion")]
fn config_error(node: &crate::manifest::Node, keys: &[&str], msg: &str) -> Diagnostic {
    let needle = keys
        .iter()
        .find(|k| node.raw_code.contains(**k))
        .copied()
        .unwrap_or("");
    Diagnostic::error(
        "config",
        format!("{} '{}': {msg}", node.resource_type.as_str(), node.name),
    )
    .at(crate::diag::Location::find(
        &node.original_file_path,
        node.raw_code.clone(),
        needle,
    ))
}

#[cfg(feature = "datafusion")]
/// A model whose materialization its table format cannot build fails the whole command before
/// anything runs, not halfway through a build.
pub(super) fn check_formats(l: &Loaded, ids: &[String]) -> Result<(), Diagnostics> {
    if l.project.target().adapter_type != "datafusion" {
        // Time travel reads stored versions of Delta and Iceberg tables.
        let mut diags = Diagnostics::new();
        for node in ids
            .iter()
            .filter_map(|id| l.manifest.nodes.get(id.as_str()))
        {
            let needle = ["time_travel", ".at_version(", ".at_snapshot("]
                .into_iter()
                .find(|k| node.raw_code.contains(k) || node.config.contains_key(k));
            if let Some(needle) = needle {
                diags.push(
                    Diagnostic::error(
                        "config",
                        format!(
                            "{} '{}' reads a pinned version (time travel), which only the embedded target's Delta and Iceberg tables have",
                            node.resource_type.as_str(),
                            node.name
                        ),
                    )
                    .at(crate::diag::Location::find(
                        &node.original_file_path,
                        node.raw_code.clone(),
                        needle,
                    ))
                    .hint("run it on a target of type datafusion"),
                );
            }
        }
        return diags.into_result(());
    }
    let mut diags = Diagnostics::new();
    for node in ids
        .iter()
        .filter_map(|id| l.manifest.nodes.get(id.as_str()))
    {
        if !matches!(
            node.resource_type,
            ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
        ) {
            continue;
        }
        if let Some(types) = node
            .config
            .get("column_types")
            .filter(|t| !t.is_object() && !t.is_null())
        {
            let from = node
                .patch_path()
                .map(|p| p.split_once("://").map_or(p, |(_, path)| path))
                .unwrap_or("the project file");
            diags.push(
                Diagnostic::error(
                    "config",
                    format!(
                        "{} '{}': column_types must map column names to types, not {types} (set in {from})",
                        node.resource_type.as_str(),
                        node.name
                    ),
                )
                .hint("write `column_types: {id: bigint, name: varchar}`"),
            );
            continue;
        }
        let stream = node.depends_on_nodes.iter().find(|d| {
            l.manifest.sources.get(d.as_str()).is_some_and(|s| {
                let ext = &s.def.external;
                ext.get("kafka").is_some()
                    || ext.get("kinesis").is_some()
                    || ext.get("incremental").and_then(|v| v.as_str()) == Some("files")
            })
        });
        if let Some(stream) = stream
            && node.materialized() == "incremental"
            && crate::materialize::TableFormat::of(&node.config)
                .is_ok_and(|f| f != crate::materialize::TableFormat::Delta)
        {
            diags.push(
                Diagnostic::error(
                    "config",
                    format!(
                        "model '{}' reads {stream} incrementally, which needs a Delta table: its commits record what was read (stream offsets, landed files), so that each record is read once",
                        node.name
                    ),
                )
                .at(crate::diag::Location::find(
                    &node.original_file_path,
                    node.raw_code.clone(),
                    "table_format",
                ))
                .hint("remove `table_format` (Delta is the default), or materialize the model as a table"),
            );
            continue;
        }
        if let Err(msg) = crate::materialize::check_format(node.materialized(), &node.config) {
            diags.push(config_error(
                node,
                &[
                    "incremental_strategy",
                    "table_format",
                    "file_format",
                    "on_schema_change",
                ],
                &msg,
            ));
        }
    }
    diags.into_result(())
}

/// Plans the selected models before anything runs (see [`crate::check`]). On PostgreSQL the
/// tables come from its catalog and the SQL is parsed as PostgreSQL's.
#[cfg(feature = "datafusion")]
pub(super) fn static_analysis(
    l: &Loaded,
    ids: &[String],
    flags: Flags,
    adapter_arc: &std::sync::Arc<crate::adapter::AnyAdapter>,
    compiled: &BTreeMap<String, String>,
    printer: &Printer,
) -> Result<(), Diagnostics> {
    use crate::adapter::Adapter;
    let adapter: &crate::adapter::AnyAdapter = adapter_arc;
    if flags.static_analysis == crate::check::Mode::Off
        || !ids
            .iter()
            .any(|id| l.manifest.nodes[id.as_str()].resource_type == ResourceType::Model)
    {
        return Ok(());
    }
    let t_start = std::time::Instant::now();
    let rt = runtime();
    let exists = |rel: &crate::jinja::Relation| rt.block_on(adapter.relation_type(rel)).is_some();
    // Tests are not planned (a large project's are most of its nodes).
    let ids: Vec<&String> = ids
        .iter()
        .filter(|id| l.manifest.nodes[id.as_str()].resource_type != ResourceType::Test)
        .collect();
    // Unselected ancestors not built yet are planned too: their schemas stand in for tables.
    let selected: std::collections::BTreeSet<String> = ids.iter().map(|id| (*id).clone()).collect();
    let mut helpers = std::collections::BTreeSet::new();
    let mut stack: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
    while let Some(id) = stack.pop() {
        for up in &l.manifest.nodes[id].depends_on_nodes {
            if let Some(n) = l.manifest.nodes.get(up)
                && !selected.contains(up.as_str())
                && !helpers.contains(up.as_str())
                && (n.is_ephemeral() || !exists(&n.relation))
            {
                helpers.insert(up.to_string());
                stack.push(&n.unique_id);
            }
        }
    }
    let order = l.dag.sort(selected.iter().chain(helpers.iter()).cloned());
    let built: std::collections::BTreeSet<&str> = order
        .iter()
        .filter(|id| !compiled.contains_key(*id))
        .map(|id| &l.manifest.nodes[id.as_str()])
        .filter(|n| {
            n.materialized() == "incremental"
                && rt.block_on(adapter.relation_type(&n.relation)) == Some("table")
        })
        .map(|n| n.unique_id.as_str())
        .collect();
    printer::timing("static analysis: built relations found", t_start);
    let started = std::time::Instant::now();
    let analyzer = match adapter {
        crate::adapter::AnyAdapter::DataFusion(df) => df.analyzer(),
        // A Spark catalog's two-part names resolve in the session's catalog.
        _ => {
            let target = l.project.target();
            let database = match target.database.as_str() {
                "" => "spark_catalog",
                d => d,
            };
            crate::adapter::datafusion::Analyzer::for_server(
                std::sync::Arc::clone(adapter_arc),
                database,
                &target.schema,
            )
        }
    };
    let scope = crate::check::Scope {
        order: &order,
        selected: &selected,
        project_root: &l.project.root,
        full_refresh: flags.full_refresh,
        mode: flags.static_analysis,
        run_start_hooks: !l.project.hooks("on-run-start").is_empty(),
        // DataFusion's type rules are not PostgreSQL's or Spark's (implicit casts): there, a
        // type error is a notice, never the user's mistake.
        types_checked: matches!(adapter, crate::adapter::AnyAdapter::DataFusion(_)),
        compiled,
    };
    let report = crate::check::analyze(
        &analyzer,
        &l.manifest,
        &scope,
        |id| built.contains(id),
        rt.handle(),
    );
    crate::timings::phase("static analysis: models planned", started);
    for n in &report.notices {
        printer.info(&format!("Static analysis: {n}"));
    }
    write_lineage(l, &report.lineage);
    super::printer::timing("static analysis: lineage written", started);
    if !report.diagnostics.is_empty() {
        return Err(report.diagnostics);
    }
    Ok(())
}

/// `target/lineage.json`: for each model planned, each column's origins as node ids and
/// columns (tables the project does not know keep their name).
#[cfg(feature = "datafusion")]
pub(super) fn write_lineage(
    l: &Loaded,
    lineage: &BTreeMap<String, Vec<(String, std::collections::BTreeSet<crate::lineage::Origin>)>>,
) {
    let key = |schema: &str, name: &str| (schema.to_lowercase(), name.to_lowercase());
    let mut owners = std::collections::HashMap::new();
    for n in l.manifest.nodes.values().filter(|n| {
        matches!(
            n.resource_type,
            ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
        )
    }) {
        owners.insert(
            key(&n.relation.schema, &n.relation.identifier),
            n.unique_id.clone(),
        );
    }
    for s in l.manifest.sources.values() {
        owners.insert(
            key(&s.relation.schema, &s.relation.identifier),
            s.unique_id.as_str().into(),
        );
    }
    // Models not planned this time keep their earlier entries (a run of a selection); when
    // every model was planned, there is nothing to keep.
    let path = l.project.target_dir().join("lineage.json");
    let all_planned = l
        .manifest
        .nodes
        .values()
        .filter(|n| n.resource_type == ResourceType::Model)
        .all(|n| lineage.contains_key(n.unique_id.as_str()));
    let mut models: BTreeMap<String, LineageEntry> = (!all_planned)
        .then(|| std::fs::read_to_string(&path).ok())
        .flatten()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|mut v| match v.get_mut("models")?.take() {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|(id, _)| l.manifest.nodes.contains_key(id.as_str()))
        .map(|(id, v)| (id, LineageEntry::Kept(v)))
        .collect();
    models.extend(lineage.iter().map(|(id, cols)| {
        let columns = cols
            .iter()
            .map(|(col, origins)| {
                let from = origins
                    .iter()
                    .map(|(table, column)| {
                        let parts: Vec<&str> = table.rsplitn(3, '.').collect();
                        let node = match parts.as_slice() {
                            // A time-travel read (`name@v12`) is still that node's column.
                            [name, schema, ..] => {
                                owners.get(&key(schema, name.split('@').next().unwrap_or(name)))
                            }
                            _ => None,
                        };
                        LineageFrom {
                            column,
                            node,
                            relation: table,
                        }
                    })
                    .collect();
                (col.as_str(), from)
            })
            .collect();
        (id.clone(), LineageEntry::Planned { columns })
    }));
    let doc = LineageDoc {
        metadata: LineageMeta {
            generated_at: l.manifest.generated_at.to_rfc3339(),
            rsdbt_version: env!("CARGO_PKG_VERSION"),
        },
        models,
    };
    let _ = crate::artifacts::write_compact(&l.project.target_dir(), "lineage.json", &doc);
}

/// `lineage.json`, serialized as it is built (a 10,000-model project's is ~10 MB: a JSON tree
/// of it and pretty printing took ~130 ms at the end of every compile). Fields are in
/// alphabetical order, as the JSON maps it used to be built from.
#[cfg(feature = "datafusion")]
#[derive(serde::Serialize)]
struct LineageDoc<'a> {
    metadata: LineageMeta,
    models: BTreeMap<String, LineageEntry<'a>>,
}

#[cfg(feature = "datafusion")]
#[derive(serde::Serialize)]
struct LineageMeta {
    generated_at: String,
    rsdbt_version: &'static str,
}

#[cfg(feature = "datafusion")]
#[derive(serde::Serialize)]
#[serde(untagged)]
enum LineageEntry<'a> {
    /// A model not planned this time: its entry from the file as it was.
    Kept(serde_json::Value),
    Planned {
        columns: BTreeMap<&'a str, Vec<LineageFrom<'a>>>,
    },
}

#[cfg(feature = "datafusion")]
#[derive(serde::Serialize)]
struct LineageFrom<'a> {
    column: &'a str,
    node: Option<&'a smol_str::SmolStr>,
    relation: &'a str,
}

/// Runs `ids` and writes the artifacts; `what` and the flags go into run_results.json (for
/// `retry`).
#[cfg(feature = "datafusion")]
pub(super) fn run_nodes(
    global: &Global,
    printer: &Printer,
    l: &Loaded,
    ids: &[String],
    run: &RunOptions,
) -> Result<i32, Diagnostics> {
    let RunOptions {
        selection,
        state,
        what,
        flags,
    } = *run;
    let full_refresh = flags.full_refresh;
    use crate::adapter::Adapter;
    check_formats(l, ids)?;
    // The manifest is written while the target is opened and the models planned (static
    // analysis runs on one core): a large project's manifest.json then costs no wall time.
    let adapter = match open_introspected(l) {
        Ok(a) => a,
        Err(d) => {
            write_manifest(l, &BTreeMap::new())?;
            return Err(d);
        }
    };
    let prepare = || {
        let lock = lock::acquire(
            &adapter,
            &l.project.target().name,
            global.wait_for_lock,
            printer,
        )?;
        check_streams(l, ids, &adapter)?;
        check_server(l, ids, &adapter)?;
        // With --defer, refs resolve to another environment's relations: planning against this
        // one would report tables that are not missing.
        if !selection.defer {
            static_analysis(l, ids, flags, &adapter, &BTreeMap::new(), printer)?;
        }
        Ok::<_, Diagnostics>(lock)
    };
    let (written, prepared) =
        crate::parallel::beside(|| write_manifest(l, &BTreeMap::new()), prepare);
    written?;
    let _lock = prepared?;
    let rt = runtime();
    let threads = l.project.target().threads;
    printer.running(&l.project.target().adapter_type);
    printer.info(&found_line(&l.manifest));
    printer.info("");
    if ids.is_empty() {
        printer.info("Nothing to do. Try checking your model configs and model specification args");
        return Ok(0);
    }
    // --defer: nodes this run does not build read from the --state relations, unless this
    // target has them (or --favor-state says to prefer the state's).
    let mut deferred = BTreeMap::new();
    if let (true, Some(state)) = (selection.defer, state) {
        let building: std::collections::BTreeSet<&str> = ids.iter().map(|id| id.as_str()).collect();
        for n in l
            .manifest
            .nodes
            .values()
            .filter(|n| !building.contains(n.unique_id.as_str()) && !n.is_ephemeral())
        {
            if let Some(rel) = state.relation(&n.unique_id)
                && (selection.favor_state
                    || rt.block_on(adapter.relation_type(&n.relation)).is_none())
            {
                deferred.insert(n.unique_id.to_string(), rel);
            }
        }
    }
    printer.info(&format!(
        "Concurrency: {threads} threads (target='{}')",
        l.project.target().name
    ));
    printer.info("");
    let target_dir = l.project.target_dir();
    let fingerprints = std::sync::Mutex::new(crate::reuse::load(&target_dir));
    let env = crate::exec::RunEnv {
        manifest: &l.manifest,
        dag: &l.dag,
        threads,
        target_dir: &target_dir,
        project_root: &l.project.root,
        project_file: &l.project.project_file.path,
        printer,
        deferred: &deferred,
        full_refresh,
        event_time: flags.event_time,
        fingerprints: &fingerprints,
        // A full refresh rebuilds, whatever changed.
        skip_unchanged: flags.skip_unchanged && !full_refresh,
        empty: flags.empty,
        fail_fast: global.fail_fast,
        warn_error: global.warnings_are_errors(),
    };
    // dbt: a failing on-run-start skips every node; a failing on-run-end fails the run.
    let mut hook_failed = false;
    let report_hook = |r: Result<(), String>, failed: &mut bool| {
        if let Err(msg) = r {
            *failed = true;
            printer.diagnostics(&Diagnostic::error("hook", msg).into());
        }
    };
    let (start_results, start) = rt.block_on(crate::exec::project_hooks(
        &*adapter,
        &env,
        "on-run-start",
        &l.project.hooks("on-run-start"),
        Vec::new(),
    ));
    let results = match start {
        Ok(()) => crate::exec::run(rt.handle(), &*adapter, &env, ids),
        Err(msg) => {
            let r = crate::exec::skip_all(&l.manifest, ids, &format!("skipped: {msg}"));
            report_hook(Err(msg), &mut hook_failed);
            r
        }
    };
    if let Ok(f) = fingerprints.lock() {
        crate::reuse::save(&target_dir, &f);
    }
    let mut end_results = Vec::new();
    if !hook_failed {
        // Built only for hooks to read (a node's JSON per result).
        let run_end = l.project.hooks("on-run-end");
        let extra = if run_end.is_empty() {
            Vec::new()
        } else {
            crate::exec::run_end_context(&l.manifest, &results)
        };
        let (hooks, end) = rt.block_on(crate::exec::project_hooks(
            &*adapter,
            &env,
            "on-run-end",
            &run_end,
            extra,
        ));
        end_results = hooks;
        report_hook(end, &mut hook_failed);
    }
    let mut compiled = BTreeMap::new();
    for r in &results.results {
        if let Some(c) = &r.compiled_code {
            compiled.insert(r.unique_id.clone(), c.clone());
        }
    }
    write_manifest(l, &compiled)?;
    let args = run_args(
        global,
        l,
        json!({
            "which": what, "select": selection.select, "exclude": selection.exclude,
            "selector": selection.selector, "indirect_selection": format!("{:?}", selection.indirect_selection).to_lowercase(),
            "state": selection.state, "defer": selection.defer, "favor_state": selection.favor_state,
            "threads": threads, "full_refresh": full_refresh, "empty": flags.empty,
        }),
    );
    // run_results.json lists the hooks around the nodes, as dbt 1.9 does.
    let nodes = start_results.len()..start_results.len() + results.results.len();
    let recorded = crate::exec::RunResults {
        results: [start_results, results.results, end_results].concat(),
        elapsed: results.elapsed,
    };
    crate::artifacts::write_run_results(&target_dir, &l.manifest, &recorded, &args)
        .map_err(|e| Diagnostic::error("io", format!("cannot write run_results.json: {e}")))?;
    metrics::report(global, printer, l, &|| {
        crate::artifacts::run_results_json(&l.manifest, &recorded, args.clone())
    });
    let mut results = recorded;
    results.results.truncate(nodes.end);
    results.results.drain(..nodes.start);
    // dbt's wording: "3 seeds, 4 view models, 6 table models".
    let mut counts: BTreeMap<(u8, String), usize> = BTreeMap::new();
    for id in ids {
        let n = &l.manifest.nodes[id.as_str()];
        let key = match n.resource_type {
            ResourceType::Seed => (0, "seed".to_string()),
            ResourceType::Snapshot => (8, "snapshot".to_string()),
            ResourceType::Test => (9, "data test".to_string()),
            ResourceType::UnitTest => (10, "unit test".to_string()),
            _ => {
                let m = n.materialized();
                let rank = ["view", "table", "incremental"]
                    .iter()
                    .position(|x| *x == m)
                    .unwrap_or(3) as u8
                    + 1;
                (rank, format!("{m} model"))
            }
        };
        *counts.entry(key).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .into_iter()
        .map(|((_, what), n)| format!("{n} {what}{}", if n == 1 { "" } else { "s" }))
        .collect();
    printer.summary(&results, &l.manifest.nodes, &parts.join(", "));
    // A partly failed microbatch model does not stop its children, but the run did not succeed.
    let failed = results
        .results
        .iter()
        .any(|r| r.status.blocks() || r.status == crate::exec::Status::PartialSuccess);
    Ok(if failed || hook_failed { 1 } else { 0 })
}

#[cfg(not(feature = "datafusion"))]
pub(super) fn execute(
    _: &Cli,
    _: &Printer,
    _: &Invocation,
    _: &Selection,
    _: &[ResourceType],
    _: &str,
    _: Flags,
) -> Result<i32, Diagnostics> {
    Err(no_engine())
}
