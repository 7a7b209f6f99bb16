//! The command line: settings are resolved first, then one command runs the pipeline stages
//! it needs. Exit codes as dbt: 0 success, 1 a node failed, 2 the run could not start.

pub mod args;
mod deps;
mod init;
#[cfg(feature = "datafusion")]
mod lock;
mod ls;
#[cfg(feature = "datafusion")]
mod metrics;
pub mod printer;
#[cfg(feature = "datafusion")]
mod source;
#[cfg(feature = "datafusion")]
mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use serde_json::json;

use crate::diag::{Diagnostic, Diagnostics};
use crate::graph::{Dag, select};
use crate::manifest::{self, Invocation, Manifest, ResourceType};
use crate::project::{self, Project, Settings};
use args::{Cli, Command, Global, Selection, ShowOutput};
use printer::Printer;

/// Parses the process arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
    // A bug says that it is one, and exits 2 like any run that could not complete.
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "internal error: {info}\nThis is a bug in rsdbt, not in your project; please report it with the command you ran."
        );
        std::process::exit(2);
    }));
    crate::secrets::register_env();
    let cli = Cli::parse();
    let mut printer = Printer::new(
        cli.global.log_format == args::LogFormat::Json,
        cli.global.no_use_colors,
    );
    printer.min_level = cli.global.min_level();
    printer.show_print = !cli.global.no_print;
    let mut invocation = Invocation::new();
    invocation.flags = dbt_flags(&cli);
    printer.invocation_id = invocation.invocation_id.clone();
    printer.install();
    match run(cli, &printer, invocation) {
        Ok(code) => code,
        Err(d) => {
            printer.diagnostics(&d);
            2
        }
    }
}

/// dbt's `flags` as Jinja sees them: `WHICH` (dbt's name of the command), `FULL_REFRESH`,
/// `WARN_ERROR`, `FAIL_FAST`, `EMPTY`, `STORE_FAILURES`.
fn dbt_flags(cli: &Cli) -> serde_json::Value {
    let (which, full_refresh) = match &cli.command {
        Command::Init { .. } => ("init", false),
        Command::Clean => ("clean", false),
        Command::Parse => ("parse", false),
        Command::Compile { .. } => ("compile", false),
        Command::Ls { .. } => ("list", false),
        Command::Seed { full_refresh, .. } => ("seed", *full_refresh),
        Command::Run { full_refresh, .. } => ("run", *full_refresh),
        Command::Snapshot { .. } => ("snapshot", false),
        Command::Test { .. } => ("test", false),
        Command::Build { full_refresh, .. } => ("build", *full_refresh),
        Command::Show { .. } => ("show", false),
        Command::Retry => ("retry", false),
        Command::Deps => ("deps", false),
        Command::Docs { .. } => ("generate", false),
        Command::RunOperation { .. } => ("run-operation", false),
        Command::Debug => ("debug", false),
        Command::Source { .. } => ("freshness", false),
    };
    json!({
        "WHICH": which, "FULL_REFRESH": full_refresh, "WARN_ERROR": cli.global.warnings_are_errors(),
        "FAIL_FAST": cli.global.fail_fast, "EMPTY": false, "STORE_FAILURES": false,
        "PARTIAL_PARSE": !cli.global.no_partial_parse, "QUIET": cli.global.quiet,
    })
}

fn settings(cli: &Global, need_profile: bool) -> Result<Settings, Diagnostics> {
    let vars = match &cli.vars {
        Some(v) => project::parse_cli_vars(v)?,
        None => Default::default(),
    };
    Ok(Settings {
        project_dir: cli
            .project_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".")),
        profiles_dir: cli.profiles_dir.clone(),
        target: cli.target.clone(),
        threads: cli.threads,
        vars,
        need_profile,
        partial_parse: !cli.no_partial_parse,
        profile: cli.profile.clone(),
        target_path: cli.target_path.clone(),
    })
}

/// Everything up to the DAG: what most commands start with.
struct Loaded {
    project: Project,
    manifest: Manifest,
    dag: Dag,
}

fn load(cli: &Global, invocation: &Invocation) -> Result<Loaded, Diagnostics> {
    let t = std::time::Instant::now();
    let project = project::load(&settings(cli, true)?)?;
    printer::timing("load project", t);
    let manifest = manifest::build(&project, invocation)?;
    if manifest
        .jinja
        .reads_graph(manifest.nodes.values().map(|n| &*n.raw_code))
    {
        manifest
            .jinja
            .set_graph(&crate::artifacts::graph_json(&manifest));
    }
    printer::timing("manifest", t);
    let dag = Dag::build(&manifest)?;
    printer::timing("dag", t);
    Ok(Loaded {
        project,
        manifest,
        dag,
    })
}

/// The command is done with the manifest and the process is about to exit: freeing a large
/// project's hundreds of thousands of allocations one by one is wasted time (~10% of a
/// 10,000-model parse), and the OS reclaims the memory at once.
fn exit_without_teardown(l: Loaded) {
    std::mem::forget(l);
}

fn found_line(m: &Manifest) -> String {
    let count = |t: ResourceType| m.nodes.values().filter(|n| n.resource_type == t).count();
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!(
        "Found {}, {}, {}, {}, {}, {}, {}",
        plural(count(ResourceType::Model), "model"),
        plural(count(ResourceType::Seed), "seed"),
        plural(count(ResourceType::Snapshot), "snapshot"),
        plural(count(ResourceType::Test), "data test"),
        plural(count(ResourceType::UnitTest), "unit test"),
        plural(m.sources.len(), "source"),
        plural(m.macros.len(), "macro")
    )
}

fn write_manifest(l: &Loaded, compiled: &BTreeMap<String, String>) -> Result<(), Diagnostics> {
    crate::artifacts::write_manifest(&l.project.target_dir(), &l.manifest, compiled).map_err(|e| {
        Diagnostic::error(
            "io",
            format!("cannot write {}/manifest.json: {e}", l.project.target_path),
        )
        .into()
    })
}

/// `run_results.json`'s `args`: the command's own flags over what every command records (the
/// command line, the folders it resolved, the global flags), as dbt writes them.
#[cfg(feature = "datafusion")]
fn run_args(global: &Global, l: &Loaded, own: serde_json::Value) -> serde_json::Value {
    let program = std::env::args()
        .next()
        .map(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or(p)
        })
        .unwrap_or_else(|| "rsdbt".into());
    let command = std::iter::once(program)
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let absolute = |p: &std::path::Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    let target = l.project.target();
    let mut args = json!({
        "invocation_command": command,
        "project_dir": absolute(&l.project.root),
        "profiles_dir": target.profiles_path.parent().map(absolute),
        "profile": target.profile_name, "target": target.name,
        "target_path": l.project.target_path, "vars": global.vars.as_deref().and_then(|v| project::parse_cli_vars(v).ok()).unwrap_or_default(),
        "log_format": if global.log_format == args::LogFormat::Json { "json" } else { "default" },
        "quiet": global.quiet, "print": !global.no_print, "warn_error": global.warnings_are_errors(),
        "fail_fast": global.fail_fast, "partial_parse": !global.no_partial_parse,
        "use_colors": !global.no_use_colors, "write_json": true,
    });
    if let (Some(all), serde_json::Value::Object(own)) = (args.as_object_mut(), own) {
        all.extend(own);
    }
    args
}

/// The `--state` artifacts, when given.
fn load_state(
    sel: &Selection,
    l: &Loaded,
) -> Result<Option<crate::graph::state::State>, Diagnostics> {
    match &sel.state {
        Some(dir) => {
            let mut state = crate::graph::state::load(dir)?;
            // `source_status:` compares with this project's latest `source freshness`.
            state.freshness_now =
                crate::graph::state::read_freshness(&l.project.target_dir().join("sources.json"));
            Ok(Some(state))
        }
        None if sel.defer => Err(Diagnostic::error(
            "state",
            "--defer needs --state <folder with an earlier manifest.json>",
        )
        .into()),
        None => Ok(None),
    }
}

/// The nodes of `types` the selection picks, in DAG order.
fn selected(
    l: &Loaded,
    sel: &Selection,
    state: Option<&crate::graph::state::State>,
    types: &[ResourceType],
) -> Result<Vec<String>, Diagnostics> {
    let set = selection_set(l, sel, state)?;
    let ids = set.into_iter().filter(|id| {
        l.manifest
            .nodes
            .get(id)
            .is_some_and(|n| types.contains(&n.resource_type))
    });
    Ok(l.dag.sort(ids))
}

/// Everything the selection picks (nodes and sources).
fn selection_set(
    l: &Loaded,
    sel: &Selection,
    state: Option<&crate::graph::state::State>,
) -> Result<std::collections::BTreeSet<String>, Diagnostics> {
    let selectors = select::load_selectors(&l.project.root)?;
    let req = select::Request {
        select: &sel.select,
        exclude: &sel.exclude,
        selector: sel.selector.as_deref(),
        indirect: sel.indirect_selection,
        state,
        selectors: &selectors,
    };
    Ok(select::eval(&l.manifest, &l.dag, &req)?)
}

fn run(cli: Cli, printer: &Printer, invocation: Invocation) -> Result<i32, Diagnostics> {
    match &cli.command {
        Command::Init { name } => init::run(name, printer),
        Command::Clean => {
            let project = project::load(&settings(&cli.global, false)?)?;
            clean(&project, printer)
        }
        Command::Parse => {
            let started = std::time::Instant::now();
            let l = load(&cli.global, &invocation)?;
            write_manifest(&l, &BTreeMap::new())?;
            printer.info(&found_line(&l.manifest));
            printer.info(&format!(
                "Parsed in {:.3}s; wrote {}/manifest.json",
                started.elapsed().as_secs_f64(),
                l.project.target_path
            ));
            exit_without_teardown(l);
            Ok(0)
        }
        Command::Compile {
            selection,
            inline,
            static_analysis,
            watch,
        } => {
            #[cfg(feature = "datafusion")]
            if *watch && inline.is_none() {
                let (root, target_dir) = watched_folders(&cli, &invocation)?;
                return watch::watch(printer, selection, &root, &target_dir, &|sel| {
                    compile(
                        &cli,
                        printer,
                        &Invocation::new(),
                        sel,
                        None,
                        *static_analysis,
                        true,
                    )
                });
            }
            #[cfg(not(feature = "datafusion"))]
            let _ = watch;
            compile(
                &cli,
                printer,
                &invocation,
                selection,
                inline.as_deref(),
                *static_analysis,
                false,
            )
        }
        Command::Ls {
            selection,
            resource_type,
            output,
            output_keys,
        } => ls::run(
            &cli,
            printer,
            &invocation,
            selection,
            resource_type,
            *output,
            output_keys,
        ),
        Command::Seed {
            selection,
            full_refresh,
        } => {
            let flags = Flags {
                full_refresh: *full_refresh,
                ..Default::default()
            };
            execute(
                &cli,
                printer,
                &invocation,
                selection,
                &[ResourceType::Seed],
                "seed",
                flags,
            )
        }
        Command::Run {
            selection,
            watch,
            static_analysis,
            skip_unchanged,
            full_refresh,
            event_time_start,
            event_time_end,
        } => {
            let flags = Flags {
                full_refresh: *full_refresh,
                event_time: event_times(event_time_start, event_time_end)?,
                static_analysis: *static_analysis,
                skip_unchanged: *skip_unchanged,
            };
            execute_or_watch(
                &cli,
                printer,
                &invocation,
                selection,
                &[ResourceType::Model],
                "run",
                flags,
                *watch,
            )
        }
        Command::Snapshot { selection } => execute(
            &cli,
            printer,
            &invocation,
            selection,
            &[ResourceType::Snapshot],
            "snapshot",
            Flags::default(),
        ),
        Command::Test { selection, watch } => execute_or_watch(
            &cli,
            printer,
            &invocation,
            selection,
            &[ResourceType::Test, ResourceType::UnitTest],
            "test",
            Flags::default(),
            *watch,
        ),
        Command::Build {
            selection,
            watch,
            static_analysis,
            skip_unchanged,
            full_refresh,
            event_time_start,
            event_time_end,
        } => {
            let flags = Flags {
                full_refresh: *full_refresh,
                event_time: event_times(event_time_start, event_time_end)?,
                static_analysis: *static_analysis,
                skip_unchanged: *skip_unchanged,
            };
            let types = [
                ResourceType::Seed,
                ResourceType::Model,
                ResourceType::Snapshot,
                ResourceType::Test,
                ResourceType::UnitTest,
            ];
            execute_or_watch(
                &cli,
                printer,
                &invocation,
                selection,
                &types,
                "build",
                flags,
                *watch,
            )
        }
        Command::Show {
            selection,
            inline,
            limit,
            output,
        } => show(
            &cli,
            printer,
            &invocation,
            selection,
            inline.as_deref(),
            *limit,
            *output,
        ),
        #[cfg(feature = "datafusion")]
        Command::Source {
            action: args::SourceAction::Freshness { selection, output },
        } => source::freshness(&cli, printer, &invocation, selection, output.as_deref()),
        #[cfg(not(feature = "datafusion"))]
        Command::Source { .. } => Err(no_engine()),
        Command::Debug => debug(&cli, printer),
        Command::Docs {
            action:
                args::DocsAction::Generate {
                    no_compile,
                    empty_catalog,
                    static_page,
                },
        } => {
            let code = docs_generate(&cli, printer, &invocation, *no_compile, *empty_catalog)?;
            if *static_page {
                let target = project::load(&settings(&cli.global, false)?)?.target_dir();
                std::fs::copy(target.join("index.html"), target.join("static_index.html"))
                    .map_err(|e| {
                        Diagnostic::error("io", format!("cannot write static_index.html: {e}"))
                    })?;
            }
            Ok(code)
        }
        Command::Docs {
            action:
                args::DocsAction::Serve {
                    host,
                    port,
                    no_browser,
                    ..
                },
        } => docs_serve(&cli, printer, &invocation, host, *port, *no_browser),
        Command::Retry => retry(&cli, printer, &invocation),
        Command::Deps => {
            let project = project::load(&settings(&cli.global, false)?)?;
            deps::run(&project, printer)
        }
        Command::RunOperation { r#macro, args } => {
            run_operation(&cli, printer, &invocation, r#macro, args.as_deref())
        }
    }
}

/// `rsdbt docs generate`: the manifest (with compiled SQL) and `catalog.json`, which describes
/// every relation the project has built, as the warehouse sees it.
#[cfg(feature = "datafusion")]
fn docs_generate(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    no_compile: bool,
    empty_catalog: bool,
) -> Result<i32, Diagnostics> {
    use crate::adapter::Adapter;
    let l = load(&cli.global, invocation)?;
    let adapter = open_introspected(&l)?;
    let mut compiled = BTreeMap::new();
    if !no_compile {
        let compiler = crate::compile::Compiler::new(&l.manifest);
        for node in l.manifest.nodes.values() {
            if node.resource_type == ResourceType::Model
                && let Ok(c) = compiler.compile(&node.unique_id)
            {
                compiled.insert(node.unique_id.clone(), c.sql.clone());
            }
        }
    }
    write_manifest(&l, &compiled)?;
    let rt = runtime();
    let external: std::collections::BTreeSet<String> =
        crate::adapter::external::external_sources(&l.manifest, &l.project.root)?
            .into_iter()
            .map(|s| s.unique_id)
            .collect();
    let describe = |unique_id: &str, rel: &crate::jinja::Relation| {
        if empty_catalog {
            return None;
        }
        // An external source (files, a lake table by location, PostgreSQL through a
        // connection) is no relation of the warehouse, but the engine reads it: its columns are
        // described; counting its rows could mean reading it all, so it has no row count.
        let kind = rt
            .block_on(adapter.relation_type(rel))
            .or_else(|| external.contains(unique_id).then_some("external"))?;
        let shape = rt
            .block_on(adapter.query(&format!("select * from {} limit 0", rel.render()), Some(0)))
            .ok()?;
        let row_count = (kind == "table")
            .then(|| {
                rt.block_on(
                    adapter.query(&format!("select count(*) as n from {}", rel.render()), None),
                )
                .ok()
                .and_then(|r| r.rows.first()?.first()?.as_u64())
            })
            .flatten();
        Some(crate::artifacts::CatalogEntry {
            unique_id: unique_id.to_string(),
            database: rel.database.clone(),
            schema: rel.schema.clone(),
            name: rel.identifier.clone(),
            kind: match kind {
                "view" => "VIEW",
                // dbt-external-tables' sources show as external tables in catalogs.
                "external" => "EXTERNAL TABLE",
                _ => "BASE TABLE",
            },
            columns: shape.columns.into_iter().zip(shape.types).collect(),
            row_count,
            bytes: match adapter.as_ref() {
                crate::adapter::AnyAdapter::DataFusion(df) => rt.block_on(df.table_bytes(rel)),
                #[cfg(feature = "postgres")]
                _ => None,
            },
        })
    };
    let nodes: Vec<_> = l
        .manifest
        .nodes
        .values()
        .filter(|n| {
            matches!(
                n.resource_type,
                ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
            ) && !n.is_ephemeral()
        })
        .filter_map(|n| describe(&n.unique_id, &n.relation))
        .collect();
    let sources: Vec<_> = l
        .manifest
        .sources
        .values()
        .filter_map(|s| describe(&s.unique_id, &s.relation))
        .collect();
    let catalog = crate::artifacts::catalog_json(&l.manifest, &nodes, &sources);
    let target_dir = l.project.target_dir();
    crate::artifacts::write_json(&target_dir, "catalog.json", &catalog)
        .map_err(|e| Diagnostic::error("io", format!("cannot write catalog.json: {e}")))?;
    printer.info(&format!(
        "Catalog written to {}/catalog.json ({} nodes, {} sources)",
        l.project.target_path,
        nodes.len(),
        sources.len()
    ));
    // Column lineage for the page: every model planned as static analysis would; a model the
    // planner cannot judge only lacks lineage.
    let models: Vec<String> = l
        .manifest
        .nodes
        .values()
        .filter(|n| n.resource_type == ResourceType::Model)
        .map(|n| n.unique_id.clone())
        .collect();
    let flags = Flags {
        static_analysis: crate::check::Mode::On,
        ..Default::default()
    };
    if let Err(d) = static_analysis(&l, &models, flags, &adapter, printer) {
        printer.info(&format!(
            "Column lineage: {} problem{} found while planning the models (`rsdbt compile` shows them); lineage is partial",
            d.0.len(),
            if d.0.len() == 1 { "" } else { "s" }
        ));
    }
    crate::docs::write_site(&target_dir)
        .map_err(|e| Diagnostic::error("io", format!("cannot write the docs page: {e}")))?;
    printer.info(&format!(
        "Docs page written to {}/index.html (open it, or run `rsdbt docs serve`)",
        l.project.target_path
    ));
    Ok(0)
}

/// `rsdbt docs serve`: the page and its API; each save of a project file regenerates the docs
/// and open pages pick the new generation up.
#[cfg(feature = "datafusion")]
fn docs_serve(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    host: &str,
    port: u16,
    no_browser: bool,
) -> Result<i32, Diagnostics> {
    use crate::docs::server::{self, Site};
    let (root, target_dir, metrics) = watched(cli, invocation)?;
    // The page is served from memory, built from the artifacts there (as dbt's serve, which
    // does not generate); without them, they are generated first.
    if !target_dir.join("manifest.json").is_file() {
        docs_generate(cli, printer, invocation, false, false)?;
    }
    let load = |version| {
        Site::load(&target_dir, version)
            .map_err(|e| Diagnostics::from(Diagnostic::error("io", e.to_string())))
    };
    let site = std::sync::Arc::new(std::sync::RwLock::new(load(1)?));
    // Watching starts before the address is announced: a save right after it is seen.
    let saves = watch::Saves::new(&root, &target_dir, &target_dir)?;
    let rt = runtime();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind((host, port)))
        .map_err(|e| {
            Diagnostic::error("docs", format!("cannot listen on {host}:{port}: {e}"))
                .hint("choose another port with --port (0 picks a free one)")
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Diagnostic::error("docs", e.to_string()))?;
    rt.spawn(server::serve(
        listener,
        site.clone(),
        std::sync::Arc::new(metrics),
    ));
    let url = format!("http://{addr}/");
    printer.info(&format!("Serving docs at {url} (Ctrl-C to stop)"));
    if !no_browser {
        open_browser(&url);
    }
    loop {
        saves.next()?;
        match docs_generate(cli, printer, &Invocation::new(), false, false) {
            Ok(_) => {
                let next = site.read().expect("site lock").version() + 1;
                match load(next) {
                    Ok(s) => {
                        *site.write().expect("site lock") = s;
                        printer.info("Docs regenerated; open pages update");
                    }
                    Err(d) => printer.diagnostics(&d),
                }
            }
            Err(d) => {
                printer.diagnostics(&d);
                printer.info(
                    "The page keeps the last good generation; fix the file and save it again.",
                );
            }
        }
    }
}

#[cfg(not(feature = "datafusion"))]
fn docs_serve(
    _: &Cli,
    _: &Printer,
    _: &Invocation,
    _: &str,
    _: u16,
    _: bool,
) -> Result<i32, Diagnostics> {
    Err(no_engine())
}

/// Best effort, as dbt: a machine with no desktop just has no browser opened.
#[cfg(feature = "datafusion")]
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

#[cfg(not(feature = "datafusion"))]
fn docs_generate(
    _: &Cli,
    _: &Printer,
    _: &Invocation,
    _: bool,
    _: bool,
) -> Result<i32, Diagnostics> {
    Err(no_engine())
}

/// `rsdbt compile` (one pass; `watching`: part of a `--watch` loop, memory is freed).
fn compile(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    selection: &Selection,
    inline: Option<&str>,
    static_analysis: crate::check::Mode,
    watching: bool,
) -> Result<i32, Diagnostics> {
    let l = load(&cli.global, invocation)?;
    // dbt's compile runs introspective queries (run_query...); connect only if asked.
    #[cfg(feature = "datafusion")]
    {
        let (target, root) = (l.project.target().clone(), l.project.root.clone());
        l.manifest
            .jinja
            .set_warehouse(std::sync::Arc::new(crate::adapter::LazyIntrospector::new(
                Box::new(move || open_target(&target, &root).map_err(|d| d.render(false))),
                runtime().handle().clone(),
            )));
    }
    let compiler = crate::compile::Compiler::new(&l.manifest);
    if let Some(sql) = inline {
        printer.raw(&compiler.compile_inline(sql)?);
        return Ok(0);
    }
    let state = load_state(selection, &l)?;
    let ids = selected(
        &l,
        selection,
        state.as_ref(),
        &[ResourceType::Model, ResourceType::Test],
    )?;
    let t = std::time::Instant::now();
    let mut compiled = BTreeMap::new();
    let mut diags = Diagnostics::new();
    for id in &ids {
        let node = &l.manifest.nodes[id];
        match compiler.compile(id) {
            Ok(c) => {
                let _ = crate::compile::write_compiled(&l.project.target_dir(), node, &c.sql);
                compiled.insert(id.clone(), c.sql.clone());
            }
            Err(d) => diags.push(d),
        }
    }
    printer::timing("compile renders + writes", t);
    write_manifest(&l, &compiled)?;
    printer::timing("manifest.json", t);
    if !diags.is_empty() {
        return Err(diags);
    }
    #[cfg(feature = "datafusion")]
    if static_analysis != crate::check::Mode::Off && l.project.target().adapter_type == "datafusion"
    {
        let adapter = open_introspected(&l)?;
        let flags = Flags {
            static_analysis,
            ..Default::default()
        };
        self::static_analysis(&l, &ids, flags, &adapter, printer)?;
    }
    #[cfg(not(feature = "datafusion"))]
    let _ = static_analysis;
    printer.info(&found_line(&l.manifest));
    if ids.len() == 1 {
        printer.raw(&compiled[&ids[0]]);
    } else {
        printer.info(&format!(
            "Compiled {} node{} into {}/compiled/",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" },
            l.project.target_path
        ));
    }
    drop(compiler);
    if watching {
        drop(l);
    } else {
        exit_without_teardown(l);
    }
    Ok(0)
}

fn clean(project: &Project, printer: &Printer) -> Result<i32, Diagnostics> {
    let root = std::fs::canonicalize(&project.root).unwrap_or_else(|_| project.root.clone());
    for t in &project.clean_targets {
        let path = root.join(t);
        let resolved = std::fs::canonicalize(&path).unwrap_or(path.clone());
        if !resolved.starts_with(&root) || resolved == root {
            return Err(Diagnostic::error("clean", format!("clean-targets entry '{t}' is outside the project folder (or is the folder itself); refusing to delete it"))
                .at(crate::diag::Location::find(&project.project_file.path, project.project_file.contents.clone(), t))
                .hint("list only folders inside the project under clean-targets")
                .into());
        }
        if resolved.exists() {
            std::fs::remove_dir_all(&resolved)
                .map_err(|e| Diagnostic::error("io", format!("cannot delete {t}: {e}")))?;
            printer.info(&format!("Cleaned {t}/"));
        } else {
            printer.info(&format!("Nothing to clean at {t}/"));
        }
    }
    printer.info("Finished cleaning all paths.");
    Ok(0)
}

#[cfg(feature = "datafusion")]
fn open_adapter(project: &Project) -> Result<crate::adapter::AnyAdapter, Diagnostics> {
    open_target(project.target(), &project.root)
}

#[cfg(feature = "datafusion")]
fn open_target(
    t: &crate::project::profile::Target,
    root: &std::path::Path,
) -> Result<crate::adapter::AnyAdapter, Diagnostics> {
    use crate::adapter::AnyAdapter;
    if t.adapter_type == "datafusion" {
        // Before the warehouse opens: it may be on S3.
        crate::adapter::datafusion::configure_object_storage(t.fields.get("s3"));
    }
    match t.adapter_type.as_str() {
        #[cfg(feature = "postgres")]
        "postgres" => runtime()
            .block_on(crate::adapter::postgres::PostgresAdapter::connect(t))
            .map(AnyAdapter::Postgres)
            .map_err(|e| Diagnostic::error("connection", e.0).hint("check the target's host, port, user, password and dbname in profiles.yml (`rsdbt debug` tests the connection)").into()),
        // Any other URL would otherwise become a local folder named `gs:`.
        "datafusion" if t.fields.get("path").and_then(serde_json::Value::as_str).is_some_and(|p| p.contains("://") && !p.starts_with("s3://")) => Err(Diagnostic::error(
            "profile",
            format!("target '{}' puts its warehouse at {}: the warehouse must be a local folder or an s3:// location", t.name, t.fields["path"]),
        )
        .hint("set `path:` to a local folder or to s3://bucket/prefix (S3 or an S3-compatible store, see the target's `s3:` settings)")
        .into()),
        "datafusion" => {
            let memory_limit = t.memory_limit().map_err(|msg| {
                Diagnostic::error("profile", format!("target '{}': {msg}", t.name))
                    .hint("memory_limit takes a size such as 4GB, or a number of bytes")
            })?;
            let adapter = crate::adapter::datafusion::DataFusionAdapter::open(&t.warehouse_location(root), t.iceberg_catalog(root), &t.database, &t.schema, memory_limit)
                .map_err(|e| Diagnostic::error("adapter", e.0).hint("check the `path` of the target in profiles.yml"))?;
            runtime().block_on(adapter.reachable()).map_err(|e| {
                Diagnostic::error("connection", e.0).hint("check the bucket in the target's `path`, and the endpoint and credentials (the target's `s3:` block or the AWS_* variables)")
            })?;
            Ok(AnyAdapter::DataFusion(adapter))
        }
        other => Err(Diagnostic::error("profile", format!("target '{}' has type '{other}', which this build of rsdbt cannot run", t.name))
            .hint("use `type: datafusion` (embedded) or `type: postgres`")
            .into()),
    }
}

#[cfg(feature = "datafusion")]
/// The process's one runtime: connections spawned on it live as long as the command.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// [`execute`], once or (`--watch`) again after every save.
#[cfg(feature = "datafusion")]
#[allow(clippy::too_many_arguments)]
fn execute_or_watch(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    selection: &Selection,
    types: &[ResourceType],
    what: &str,
    flags: Flags,
    watch: bool,
) -> Result<i32, Diagnostics> {
    if !watch {
        return execute(cli, printer, invocation, selection, types, what, flags);
    }
    let (root, target_dir, metrics) = watched(cli, invocation)?;
    if let Some(addr) = &cli.global.metrics_listen {
        serve_metrics(printer, addr, metrics)?;
    }
    watch::watch(printer, selection, &root, &target_dir, &|sel| {
        execute(cli, printer, &Invocation::new(), sel, types, what, flags)
    })
}

/// The project folder a `--watch` loop watches and its target folder (whose writes it
/// ignores), both canonical as file events name them.
#[cfg(feature = "datafusion")]
fn watched_folders(cli: &Cli, invocation: &Invocation) -> Result<(PathBuf, PathBuf), Diagnostics> {
    let (root, target_dir, _) = watched(cli, invocation)?;
    Ok((root, target_dir))
}

/// [`watched_folders`], and where a long-running command's `/metrics` reads.
#[cfg(feature = "datafusion")]
fn watched(
    cli: &Cli,
    invocation: &Invocation,
) -> Result<(PathBuf, PathBuf, crate::docs::server::MetricsSource), Diagnostics> {
    let l = load(&cli.global, invocation)?;
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or(p.to_path_buf());
    let target_dir = canonical(&l.project.target_dir());
    let _ = std::fs::create_dir_all(&target_dir);
    let metrics = crate::docs::server::MetricsSource {
        target_dir: target_dir.clone(),
        project: l.manifest.project_name.clone(),
        target: l.project.target().name.clone(),
    };
    Ok((canonical(&l.project.root), target_dir, metrics))
}

/// `--metrics-listen` with `--watch`: `/metrics` on that address for as long as the loop runs.
#[cfg(feature = "datafusion")]
fn serve_metrics(
    printer: &Printer,
    addr: &str,
    source: crate::docs::server::MetricsSource,
) -> Result<(), Diagnostics> {
    let listener = runtime()
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| {
            Diagnostic::error("metrics", format!("cannot listen on {addr}: {e}"))
                .hint("choose another address with --metrics-listen (port 0 picks a free one)")
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| Diagnostic::error("metrics", e.to_string()))?;
    runtime().spawn(crate::docs::server::serve_metrics(
        listener,
        std::sync::Arc::new(source),
    ));
    printer.info(&format!("Serving metrics at http://{local}/metrics"));
    Ok(())
}

#[cfg(not(feature = "datafusion"))]
#[allow(clippy::too_many_arguments)]
fn execute_or_watch(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    selection: &Selection,
    types: &[ResourceType],
    what: &str,
    flags: Flags,
    _watch: bool,
) -> Result<i32, Diagnostics> {
    execute(cli, printer, invocation, selection, types, what, flags)
}

#[cfg(feature = "datafusion")]
fn execute(
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
        .filter(|id| crate::exec::is_executable(&l.manifest.nodes[id]))
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
struct Flags {
    full_refresh: bool,
    event_time: (Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>),
    /// Run and build plan their models first; other commands build no models
    /// (`Flags::default()`: on, with nothing to check).
    static_analysis: crate::check::Mode,
    /// `--skip-unchanged`: reuse models whose SQL, config and inputs did not change.
    skip_unchanged: bool,
}

/// `--event-time-start` / `--event-time-end`, parsed.
fn event_times(
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
struct RunOptions<'a> {
    selection: &'a Selection,
    state: Option<&'a crate::graph::state::State>,
    /// The command: `run`, `build`, `test`, `seed`.
    what: &'a str,
    flags: Flags,
}

/// Runs `ids` and writes the artifacts; `what` and the flags go into run_results.json (for
/// `retry`).
#[cfg(feature = "datafusion")]
/// A model whose materialization its table format cannot build fails the whole command before
/// anything runs, not halfway through a build.
fn check_formats(l: &Loaded, ids: &[String]) -> Result<(), Diagnostics> {
    if l.project.target().adapter_type != "datafusion" {
        // Time travel reads stored versions of Delta and Iceberg tables.
        let mut diags = Diagnostics::new();
        for node in ids.iter().filter_map(|id| l.manifest.nodes.get(id)) {
            let needle = ["time_travel", ".at_version(", ".at_snapshot("]
                .into_iter()
                .find(|k| node.raw_code.contains(k) || node.config.contains_key(*k));
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
    for node in ids.iter().filter_map(|id| l.manifest.nodes.get(id)) {
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
                .patch_path
                .as_deref()
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
        if let Err(msg) = crate::materialize::check_format(node.materialized(), &node.config) {
            let needle = [
                "incremental_strategy",
                "table_format",
                "file_format",
                "on_schema_change",
            ]
            .into_iter()
            .find(|k| node.raw_code.contains(k))
            .unwrap_or("");
            diags.push(
                Diagnostic::error(
                    "config",
                    format!("{} '{}': {msg}", node.resource_type.as_str(), node.name),
                )
                .at(crate::diag::Location::find(
                    &node.original_file_path,
                    node.raw_code.clone(),
                    needle,
                )),
            );
        }
    }
    diags.into_result(())
}

/// Plans the selected models before anything runs (see [`crate::check`]). On PostgreSQL the
/// tables come from its catalog and the SQL is parsed as PostgreSQL's.
#[cfg(feature = "datafusion")]
fn static_analysis(
    l: &Loaded,
    ids: &[String],
    flags: Flags,
    adapter_arc: &std::sync::Arc<crate::adapter::AnyAdapter>,
    printer: &Printer,
) -> Result<(), Diagnostics> {
    use crate::adapter::Adapter;
    let adapter: &crate::adapter::AnyAdapter = adapter_arc;
    if flags.static_analysis == crate::check::Mode::Off
        || !ids
            .iter()
            .any(|id| l.manifest.nodes[id].resource_type == ResourceType::Model)
    {
        return Ok(());
    }
    let rt = runtime();
    let exists = |rel: &crate::jinja::Relation| rt.block_on(adapter.relation_type(rel)).is_some();
    // Unselected ancestors not built yet are planned too: their schemas stand in for tables.
    let selected: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
    let mut helpers = std::collections::BTreeSet::new();
    let mut stack: Vec<&String> = ids.iter().collect();
    while let Some(id) = stack.pop() {
        for up in &l.manifest.nodes[id].depends_on_nodes {
            if let Some(n) = l.manifest.nodes.get(up)
                && !selected.contains(up)
                && !helpers.contains(up)
                && (n.is_ephemeral() || !exists(&n.relation))
            {
                helpers.insert(up.clone());
                stack.push(up);
            }
        }
    }
    let order = l.dag.sort(selected.iter().chain(helpers.iter()).cloned());
    let built: std::collections::BTreeSet<&str> = order
        .iter()
        .map(|id| &l.manifest.nodes[id])
        .filter(|n| n.materialized() == "incremental" && exists(&n.relation))
        .map(|n| n.unique_id.as_str())
        .collect();
    let analyzer = match adapter {
        crate::adapter::AnyAdapter::DataFusion(df) => df.analyzer(),
        #[cfg(feature = "postgres")]
        crate::adapter::AnyAdapter::Postgres(_) => {
            let target = l.project.target();
            crate::adapter::datafusion::Analyzer::for_postgres(
                std::sync::Arc::clone(adapter_arc),
                &target.database,
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
        run_start_hooks: !l.project.on_run_start.is_empty(),
        // DataFusion's type rules are not PostgreSQL's (implicit casts): there, a type error
        // is a notice, never the user's mistake.
        types_checked: matches!(adapter, crate::adapter::AnyAdapter::DataFusion(_)),
    };
    let report = rt.block_on(crate::check::analyze(
        &analyzer,
        &l.manifest,
        &scope,
        |id| built.contains(id),
    ));
    for n in &report.notices {
        printer.info(&format!("Static analysis: {n}"));
    }
    write_lineage(l, &report.lineage);
    if !report.diagnostics.is_empty() {
        return Err(report.diagnostics);
    }
    Ok(())
}

/// `target/lineage.json`: for each model planned, each column's origins as node ids and
/// columns (tables the project does not know keep their name).
#[cfg(feature = "datafusion")]
fn write_lineage(
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
            s.unique_id.clone(),
        );
    }
    // Models not planned this time keep their earlier entries (a run of a selection).
    let path = l.project.target_dir().join("lineage.json");
    let mut models: serde_json::Map<String, serde_json::Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("models").and_then(|m| m.as_object()).cloned())
        .unwrap_or_default();
    models.retain(|id, _| l.manifest.nodes.contains_key(id));
    models.extend(lineage.iter().map(|(id, cols)| {
        let columns: serde_json::Map<String, serde_json::Value> = cols
            .iter()
            .map(|(col, origins)| {
                let from: Vec<serde_json::Value> = origins
                    .iter()
                    .map(|(table, column)| {
                        let parts: Vec<&str> = table.rsplitn(3, '.').collect();
                        let owner = match parts.as_slice() {
                            // A time-travel read (`name@v12`) is still that node's column.
                            [name, schema, ..] => {
                                owners.get(&key(schema, name.split('@').next().unwrap_or(name)))
                            }
                            _ => None,
                        };
                        json!({"node": owner, "relation": table, "column": column})
                    })
                    .collect();
                (col.clone(), json!(from))
            })
            .collect();
        (id.clone(), json!({"columns": columns}))
    }));
    let doc = json!({
        "metadata": {"rsdbt_version": env!("CARGO_PKG_VERSION"), "generated_at": l.manifest.generated_at.to_rfc3339()},
        "models": models,
    });
    let _ = crate::artifacts::write_json(&l.project.target_dir(), "lineage.json", &doc);
}

#[cfg(feature = "datafusion")]
fn run_nodes(
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
    write_manifest(l, &BTreeMap::new())?;
    let adapter = open_introspected(l)?;
    let _lock = lock::acquire(
        &adapter,
        &l.project.target().name,
        global.wait_for_lock,
        printer,
    )?;
    let rt = runtime();
    // With --defer, refs resolve to another environment's relations: planning against this
    // one would report tables that are not missing.
    if !selection.defer {
        static_analysis(l, ids, flags, &adapter, printer)?;
    }
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
        let building: std::collections::BTreeSet<&String> = ids.iter().collect();
        for n in l
            .manifest
            .nodes
            .values()
            .filter(|n| !building.contains(&n.unique_id) && !n.is_ephemeral())
        {
            if let Some(rel) = state.relation(&n.unique_id)
                && (selection.favor_state
                    || rt.block_on(adapter.relation_type(&n.relation)).is_none())
            {
                deferred.insert(n.unique_id.clone(), rel);
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
        &l.project.on_run_start,
        Vec::new(),
    ));
    let results = match start {
        Ok(()) => rt.block_on(crate::exec::run(&*adapter, &env, ids)),
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
        let extra = crate::exec::run_end_context(&l.manifest, &results);
        let (hooks, end) = rt.block_on(crate::exec::project_hooks(
            &*adapter,
            &env,
            "on-run-end",
            &l.project.on_run_end,
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
            "threads": threads, "full_refresh": full_refresh,
        }),
    );
    // run_results.json lists the hooks around the nodes, as dbt 1.9 does.
    let recorded = crate::exec::RunResults {
        results: [start_results, results.results.clone(), end_results].concat(),
        elapsed: results.elapsed,
    };
    let rr = crate::artifacts::run_results_json(&l.manifest, &recorded, args);
    crate::artifacts::write_json(&target_dir, "run_results.json", &rr)
        .map_err(|e| Diagnostic::error("io", format!("cannot write run_results.json: {e}")))?;
    metrics::report(global, printer, l, &rr);
    // dbt's wording: "3 seeds, 4 view models, 6 table models".
    let mut counts: BTreeMap<(u8, String), usize> = BTreeMap::new();
    for id in ids {
        let n = &l.manifest.nodes[id];
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

/// `rsdbt retry`: the failed and skipped nodes of the last run, with that run's flags.
#[cfg(feature = "datafusion")]
fn retry(cli: &Cli, printer: &Printer, invocation: &Invocation) -> Result<i32, Diagnostics> {
    let project = project::load(&settings(&cli.global, false)?)?;
    let path = project.target_dir().join("run_results.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Diagnostic::error("retry", format!("cannot read {}: {e}", path.display()))
            .hint("retry re-runs the failures of the last run: run a command first")
    })?;
    let rr: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Diagnostic::error("retry", format!("{} is not valid: {e}", path.display())))?;
    let args = &rr["args"];
    let s = |k: &str| args.get(k).and_then(|v| v.as_str()).map(str::to_string);
    // The last run's flags, unless given again now.
    let mut global = cli.global.clone();
    // dbt (and rsdbt) record vars as a dict; older rsdbt runs as the flag's text.
    global.vars = global.vars.or_else(|| match args.get("vars") {
        Some(serde_json::Value::Object(v)) if !v.is_empty() => Some(args["vars"].to_string()),
        _ => s("vars"),
    });
    global.target = global.target.or_else(|| s("target"));
    global.threads = global.threads.or_else(|| {
        args.get("threads")
            .and_then(|v| v.as_u64())
            .map(|n| n as usize)
    });
    let selection = Selection {
        state: s("state").map(PathBuf::from),
        defer: args.get("defer").and_then(|v| v.as_bool()).unwrap_or(false),
        favor_state: args
            .get("favor_state")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        ..Default::default()
    };
    let which = s("which").unwrap_or_else(|| "build".into());
    let retryable = [
        "error",
        "fail",
        "skipped",
        "runtime error",
        "partial success",
    ];
    let failed: std::collections::BTreeSet<String> = rr["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["status"]
                .as_str()
                .is_some_and(|st| retryable.contains(&st))
        })
        .filter_map(|r| r["unique_id"].as_str().map(str::to_string))
        .collect();
    let l = load(&global, invocation)?;
    let ids: Vec<String> = l.dag.sort(failed.into_iter().filter(|id| {
        l.manifest
            .nodes
            .get(id)
            .is_some_and(crate::exec::is_executable)
    }));
    if ids.is_empty() {
        printer.info("Nothing to retry: the last run had no failed or skipped nodes.");
        return Ok(0);
    }
    let state = load_state(&selection, &l)?;
    let full_refresh = args
        .get("full_refresh")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let run = RunOptions {
        selection: &selection,
        state: state.as_ref(),
        what: &which,
        flags: Flags {
            full_refresh,
            ..Default::default()
        },
    };
    run_nodes(&global, printer, &l, &ids, &run)
}

#[cfg(not(feature = "datafusion"))]
fn execute(
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

#[cfg(not(feature = "datafusion"))]
fn retry(_: &Cli, _: &Printer, _: &Invocation) -> Result<i32, Diagnostics> {
    Err(no_engine())
}

#[cfg(not(feature = "datafusion"))]
fn no_engine() -> Diagnostics {
    Diagnostic::error("build", "this rsdbt was built without an engine")
        .hint("rebuild with the default features: cargo build")
        .into()
}

/// `rsdbt run-operation <macro> --args '{...}'`: renders a call of the macro in the project's
/// context with the warehouse open; the macro's output is discarded (its statements ran).
#[cfg(feature = "datafusion")]
fn run_operation(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    name: &str,
    args: Option<&str>,
) -> Result<i32, Diagnostics> {
    let l = load(&cli.global, invocation)?;
    let args: serde_json::Map<String, serde_json::Value> = match args {
        None => Default::default(),
        Some(text) => {
            let parsed = crate::project::yaml::parse("--args", &std::sync::Arc::from(text))?;
            match parsed {
                serde_json::Value::Object(m) => m,
                serde_json::Value::Null => Default::default(),
                _ => {
                    return Err(
                        Diagnostic::error("args", "--args must be a YAML or JSON dict")
                            .hint("e.g. --args '{table: orders, days: 7}'")
                            .into(),
                    );
                }
            }
        }
    };
    let adapter = open_introspected(&l)?;
    let _lock = lock::acquire(
        &adapter,
        &l.project.target().name,
        cli.global.wait_for_lock,
        printer,
    )?;
    printer.running(&l.project.target().adapter_type);
    let unique_id = format!("operation.{}.{name}", l.manifest.project_name);
    let started = std::time::Instant::now();
    let started_at = chrono::Utc::now();
    let outcome = if l.manifest.jinja.macro_id(name).is_none() {
        Err(format!("no macro named '{name}' in the project"))
    } else {
        let call_args: Vec<String> = args
            .keys()
            .map(|k| {
                format!(
                    "{k}=__rsdbt_args__[{}]",
                    serde_json::Value::from(k.as_str())
                )
            })
            .collect();
        let call = format!("{{{{ {name}({}) }}}}", call_args.join(", "));
        let extra = vec![(
            "__rsdbt_args__".to_string(),
            crate::jinja::value_of(&serde_json::Value::Object(args)),
        )];
        crate::compile::Compiler::new(&l.manifest)
            .render_operation(name, "run-operation", &call, extra)
            .map(|(_, logs)| {
                for line in logs {
                    printer.logged(&line);
                }
            })
            .map_err(|d| d.message)
    };
    let secs = started.elapsed().as_secs_f64();
    let result = crate::exec::NodeResult {
        unique_id,
        status: if outcome.is_ok() {
            crate::exec::Status::Success
        } else {
            crate::exec::Status::Error
        },
        message: outcome.as_ref().err().cloned(),
        timing: vec![crate::exec::Timing {
            name: "execute",
            started_at,
            completed_at: chrono::Utc::now(),
        }],
        thread_id: "main".into(),
        execution_time: secs,
        adapter_response: json!({}),
        failures: None,
        compiled_code: None,
        relation_name: None,
        batch_results: None,
    };
    let rr = crate::artifacts::run_results_json(
        &l.manifest,
        &crate::exec::RunResults {
            results: vec![result],
            elapsed: secs,
        },
        run_args(
            &cli.global,
            &l,
            json!({"which": "run-operation", "macro": name}),
        ),
    );
    crate::artifacts::write_json(&l.project.target_dir(), "run_results.json", &rr)
        .map_err(|e| Diagnostic::error("io", format!("cannot write run_results.json: {e}")))?;
    metrics::report(&cli.global, printer, &l, &rr);
    match outcome {
        Ok(()) => Ok(0),
        Err(msg) => {
            printer.diagnostics(
                &Diagnostic::error("operation", format!("run-operation {name} failed: {msg}"))
                    .into(),
            );
            Ok(1)
        }
    }
}

#[cfg(not(feature = "datafusion"))]
fn run_operation(
    _: &Cli,
    _: &Printer,
    _: &Invocation,
    _: &str,
    _: Option<&str>,
) -> Result<i32, Diagnostics> {
    Err(no_engine())
}

/// Opens the target's adapter and lets renders query it (`run_query`, `adapter.*`).
#[cfg(feature = "datafusion")]
fn open_introspected(
    l: &Loaded,
) -> Result<std::sync::Arc<crate::adapter::AnyAdapter>, Diagnostics> {
    let adapter = open_adapter(&l.project)?;
    let external = crate::adapter::external::external_sources(&l.manifest, &l.project.root)?;
    match &adapter {
        crate::adapter::AnyAdapter::DataFusion(a) => {
            let map = |key: &str| {
                l.project
                    .target()
                    .fields
                    .get(key)
                    .and_then(serde_json::Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            };
            a.register_external(external, map("connections"), map("iceberg_catalogs"))
        }
        #[cfg(feature = "postgres")]
        _ if !external.is_empty() => {
            return Err(Diagnostic::error(
                "source",
                format!(
                    "{} reads {} ({}), which only the embedded target can: target '{}' is {}",
                    external[0].unique_id,
                    external[0].location,
                    external[0].format,
                    l.project.target().name,
                    l.project.target().adapter_type
                ),
            )
            .hint("run with a target of `type: datafusion`, or load the data into the database and declare the source without `external:`")
            .into());
        }
        #[cfg(feature = "postgres")]
        _ => {}
    }
    let adapter = std::sync::Arc::new(adapter);
    l.manifest
        .jinja
        .set_warehouse(std::sync::Arc::new(crate::adapter::Introspector {
            adapter: adapter.clone(),
            runtime: runtime().handle().clone(),
        }));
    Ok(adapter)
}

#[cfg(feature = "datafusion")]
fn show(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    selection: &Selection,
    inline: Option<&str>,
    limit: i64,
    output: ShowOutput,
) -> Result<i32, Diagnostics> {
    use crate::adapter::Adapter;
    let l = load(&cli.global, invocation)?;
    let adapter = open_introspected(&l)?;
    let compiler = crate::compile::Compiler::new(&l.manifest);
    let (title, sql) = match inline {
        Some(q) => ("inline".to_string(), compiler.compile_inline(q)?),
        None => {
            let ids = selected(
                &l,
                selection,
                None,
                &[ResourceType::Model, ResourceType::Seed],
            )?;
            let [id] = ids.as_slice() else {
                return Err(Diagnostic::error(
                    "selector",
                    format!(
                        "show needs exactly one node, but the selection matched {}",
                        ids.len()
                    ),
                )
                .hint("pass --select <model name> or --inline \"select ...\"")
                .into());
            };
            let node = &l.manifest.nodes[id];
            let sql = if node.resource_type == ResourceType::Seed {
                format!("select * from {}", node.relation.render())
            } else {
                compiler.compile(id)?.sql.clone()
            };
            (node.name.clone(), sql)
        }
    };
    let limit = if limit < 0 {
        None
    } else {
        Some(limit as usize)
    };
    let result = runtime().block_on(adapter.query(&sql, limit));
    match result {
        Ok(r) => {
            match output {
                ShowOutput::Json => {
                    let rows: Vec<serde_json::Value> = r
                        .rows
                        .iter()
                        .map(|row| {
                            serde_json::Value::Object(
                                r.columns.iter().cloned().zip(row.iter().cloned()).collect(),
                            )
                        })
                        .collect();
                    printer.raw(
                        // dbt names the node, not an inline query.
                        &serde_json::to_string_pretty(&match inline {
                            Some(_) => json!({"show": rows}),
                            None => json!({"node": title, "show": rows}),
                        })
                        .unwrap_or_default(),
                    );
                }
                ShowOutput::Text => {
                    printer.info(&format!("Previewing node '{title}':"));
                    printer.raw(&table_text(&r));
                }
            }
            Ok(0)
        }
        Err(e) => {
            printer.diagnostics(
                &Diagnostic::error("database", format!("Database Error in {title}: {}", e.0))
                    .hint("check the SQL; `rsdbt compile` writes what ran under the target folder")
                    .into(),
            );
            Ok(1)
        }
    }
}

#[cfg(not(feature = "datafusion"))]
fn show(
    _: &Cli,
    _: &Printer,
    _: &Invocation,
    _: &Selection,
    _: Option<&str>,
    _: i64,
    _: ShowOutput,
) -> Result<i32, Diagnostics> {
    Err(no_engine())
}

/// Rows as a bordered text table.
#[cfg(feature = "datafusion")]
fn table_text(r: &crate::adapter::QueryResult) -> String {
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| row.iter().map(cell).collect())
        .collect();
    let widths: Vec<usize> = r
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    // As dbt's (agate's) tables: numbers and dates to the right, text to the left.
    let right: Vec<bool> = (0..r.columns.len())
        .map(|i| {
            let t = r.types.get(i).map(String::as_str).unwrap_or("");
            [
                "int",
                "real",
                "double",
                "decimal",
                "float",
                "numeric",
                "date",
                "timestamp",
            ]
            .iter()
            .any(|k| t.contains(k))
        })
        .collect();
    let line = |vals: &[String], header: bool| {
        format!(
            "| {} |",
            vals.iter()
                .zip(&widths)
                .zip(&right)
                .map(|((v, w), r)| if *r && !header {
                    format!("{v:>w$}")
                } else {
                    format!("{v:<w$}")
                })
                .collect::<Vec<_>>()
                .join(" | ")
        )
    };
    let sep = format!(
        "| {} |",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let mut out = vec![line(&r.columns, true), sep];
    out.extend(cells.iter().map(|row| line(row, false)));
    out.join("\n")
}

fn debug(cli: &Cli, printer: &Printer) -> Result<i32, Diagnostics> {
    printer.info(&format!("rsdbt version: {}", env!("CARGO_PKG_VERSION")));
    let project = project::load(&settings(&cli.global, true)?)?;
    let t = project.target();
    printer.info(&format!(
        "project: {} ({})",
        project.name, project.project_file.path
    ));
    printer.info(&format!("profiles.yml: {}", t.profiles_path.display()));
    printer.info(&format!(
        "profile: {}  target: {}  type: {}  schema: {}  threads: {}",
        t.profile_name, t.name, t.adapter_type, t.schema, t.threads
    ));
    #[cfg(feature = "datafusion")]
    {
        use crate::adapter::Adapter;
        let adapter = open_adapter(&project)?;
        match runtime().block_on(adapter.check()) {
            Ok(msg) => {
                printer.info(&format!("Connection test: [OK] {msg}"));
                printer.info("All checks passed!");
                Ok(0)
            }
            Err(e) => {
                printer.info(&format!("Connection test: [ERROR] {}", e.0));
                Ok(1)
            }
        }
    }
    #[cfg(not(feature = "datafusion"))]
    Err(no_engine())
}
