//! The command line: settings are resolved first, then one command runs the pipeline stages
//! it needs. Exit codes as dbt: 0 success, 1 a node failed, 2 the run could not start.

pub mod args;
mod clean;
mod compile;
mod debug;
mod deps;
mod docs;
mod execute;
mod init;
#[cfg(feature = "datafusion")]
mod lock;
mod ls;
#[cfg(feature = "datafusion")]
mod metrics;
pub mod printer;
mod retry;
mod run_operation;
mod show;
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

use clean::clean;
use compile::compile;
use debug::debug;
use docs::{docs_generate, docs_serve};
use execute::*;
use retry::retry;
use run_operation::run_operation;
use show::show;
#[cfg(feature = "datafusion")]
use watch::{serve_metrics, watched, watched_folders};

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
    let empty = matches!(
        cli.command,
        Command::Run { empty: true, .. } | Command::Build { empty: true, .. }
    );
    json!({
        "WHICH": which, "FULL_REFRESH": full_refresh, "WARN_ERROR": cli.global.warnings_are_errors(),
        "FAIL_FAST": cli.global.fail_fast, "EMPTY": empty, "STORE_FAILURES": false,
        "PARTIAL_PARSE": !cli.global.no_partial_parse, "QUIET": cli.global.quiet,
        "STATIC_PARSER": !cli.global.no_static_parser,
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

/// The project's settings and files; its warnings shown.
fn load_project(settings: &Settings) -> Result<Project, Diagnostics> {
    let project = project::load(settings)?;
    show_warnings(&project.warnings);
    Ok(project)
}

fn show_warnings(warnings: &Diagnostics) {
    if !warnings.is_empty() {
        printer::warnings(warnings);
    }
}

/// Everything up to the DAG: what most commands start with.
struct Loaded {
    project: Project,
    manifest: Manifest,
    dag: Dag,
}

fn load(cli: &Global, invocation: &Invocation) -> Result<Loaded, Diagnostics> {
    let t = std::time::Instant::now();
    let project = load_project(&settings(cli, true)?)?;
    printer::timing("load project", t);
    load_manifest(project, invocation, t)
}

/// [`load`] of a project already read.
fn load_manifest(
    project: Project,
    invocation: &Invocation,
    t: std::time::Instant,
) -> Result<Loaded, Diagnostics> {
    let manifest = manifest::build(&project, invocation)?;
    show_warnings(&manifest.warnings);
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
    // One pass: a large project's 50,000 nodes, each behind a pointer.
    let mut counts = std::collections::HashMap::new();
    for n in m.nodes.values() {
        *counts.entry(n.resource_type).or_insert(0usize) += 1;
    }
    let count = |t: ResourceType| counts.get(&t).copied().unwrap_or(0);
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

/// The nodes of `types` the selection picks, in DAG order; empty files are left out, as dbt
/// does everywhere but `ls`.
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
            .get(id.as_str())
            .is_some_and(|n| types.contains(&n.resource_type) && !n.is_empty())
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
    let (ids, warnings) = select::eval(&l.manifest, &l.dag, &req)?;
    show_warnings(&warnings);
    Ok(ids)
}

fn run(cli: Cli, printer: &Printer, invocation: Invocation) -> Result<i32, Diagnostics> {
    match &cli.command {
        Command::Init { name } => init::run(name, printer),
        Command::Clean => {
            let project = load_project(&settings(&cli.global, false)?)?;
            clean(&project, printer)
        }
        Command::Parse => {
            let started = std::time::Instant::now();
            let project = load_project(&settings(&cli.global, true)?)?;
            printer::timing("load project", started);
            let inputs = manifest::partial::inputs(&project);
            printer::timing("partial-parse inputs hashed", started);
            if let Some(found) = manifest::partial::unchanged(&project, &inputs) {
                printer.info(&found);
                printer.info(&format!(
                    "Parsed in {:.3}s; nothing changed since the last parse, {}/manifest.json stands",
                    started.elapsed().as_secs_f64(),
                    project.target_path
                ));
                return Ok(0);
            }
            let l = load_manifest(project, &invocation, started)?;
            // The counts (~7 ms of one core for a large project) beside writing the manifest.
            // (The DAG is built before: beside the writing, its transient allocations raised
            // the parse's peak by ~8 MB.)
            let (found, written) = crate::parallel::beside(
                || found_line(&l.manifest),
                || write_manifest(&l, &BTreeMap::new()),
            );
            written?;
            printer::timing("manifest.json", started);
            manifest::partial::stamp(&l.project, &inputs, &found, !l.manifest.warnings.is_empty());
            printer::timing("partial-parse stamp", started);
            printer.info(&found);
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
                return watch::watch(printer, selection, &root, &target_dir, None, &|sel| {
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
            watch_sources,
            watch_interval,
            static_analysis,
            skip_unchanged,
            full_refresh,
            event_time_start,
            event_time_end,
            empty,
        } => {
            let flags = Flags {
                full_refresh: *full_refresh,
                event_time: event_times(event_time_start, event_time_end)?,
                static_analysis: *static_analysis,
                skip_unchanged: *skip_unchanged,
                empty: *empty,
            };
            execute_or_watch(
                &cli,
                printer,
                &invocation,
                selection,
                &[ResourceType::Model],
                "run",
                flags,
                Watching::new(*watch, *watch_sources, *watch_interval)?,
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
            Watching::new(*watch, false, 1.0)?,
        ),
        Command::Build {
            selection,
            watch,
            watch_sources,
            watch_interval,
            static_analysis,
            skip_unchanged,
            full_refresh,
            event_time_start,
            event_time_end,
            empty,
            resource_type,
            exclude_resource_type,
        } => {
            let flags = Flags {
                full_refresh: *full_refresh,
                event_time: event_times(event_time_start, event_time_end)?,
                static_analysis: *static_analysis,
                skip_unchanged: *skip_unchanged,
                empty: *empty,
            };
            let all = [
                ResourceType::Seed,
                ResourceType::Model,
                ResourceType::Snapshot,
                ResourceType::Test,
                ResourceType::UnitTest,
            ];
            let named = |list: &[String], t: ResourceType| {
                list.iter()
                    .any(|n| n == t.as_str() || n == "all" || n == "default")
            };
            let types: Vec<ResourceType> = all
                .into_iter()
                .filter(|t| resource_type.is_empty() || named(resource_type, *t))
                .filter(|t| !named(exclude_resource_type, *t))
                .collect();
            execute_or_watch(
                &cli,
                printer,
                &invocation,
                selection,
                &types,
                "build",
                flags,
                Watching::new(*watch, *watch_sources, *watch_interval)?,
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
                let target = load_project(&settings(&cli.global, false)?)?.target_dir();
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
            let project = load_project(&settings(&cli.global, false)?)?;
            deps::run(&project, printer)
        }
        Command::RunOperation { r#macro, args } => {
            run_operation(&cli, printer, &invocation, r#macro, args.as_deref())
        }
    }
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
        #[cfg(feature = "spark")]
        "spark" => runtime()
            .block_on(crate::adapter::spark::SparkAdapter::connect(t))
            .map(|a| AnyAdapter::Spark(Box::new(a)))
            .map_err(|e| Diagnostic::error("connection", e.0).hint("check the target's host (sc://host:port) and port in profiles.yml, and that the Spark Connect server runs (`rsdbt debug` tests the connection)").into()),
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
            .hint("use `type: datafusion` (embedded), `type: postgres` or `type: spark`")
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

#[cfg(not(feature = "datafusion"))]
fn no_engine() -> Diagnostics {
    Diagnostic::error("build", "this rsdbt was built without an engine")
        .hint("rebuild with the default features: cargo build")
        .into()
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
