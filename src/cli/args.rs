//! Command-line arguments (dbt's flags and names).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rsdbt",
    version,
    about = "A declarative SQL model runner in the style of dbt, with an embedded DataFusion + Delta Lake engine"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Project folder (holding project.yml or dbt_project.yml)
    #[arg(long, global = true, env = "DBT_PROJECT_DIR")]
    pub project_dir: Option<PathBuf>,
    /// Folder holding profiles.yml (else RSDBT_PROFILES_DIR, DBT_PROFILES_DIR, the project folder, ~/.rsdbt, ~/.dbt)
    #[arg(long, global = true)]
    pub profiles_dir: Option<PathBuf>,
    /// Target of the profile to use
    #[arg(short = 't', long, global = true)]
    pub target: Option<String>,
    /// Variables as a YAML or JSON mapping, e.g. '{start_date: 2024-01-01}'
    #[arg(long, global = true)]
    pub vars: Option<String>,
    /// Number of nodes to build at once (overrides the profile)
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Log format: text for people, json for machines (one JSON object per line)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "DBT_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Disable colors (NO_COLOR is honoured too)
    #[arg(long = "no-use-colors", global = true)]
    pub no_use_colors: bool,
    /// Render every node again instead of reusing unchanged parse results
    #[arg(long = "no-partial-parse", global = true)]
    pub no_partial_parse: bool,
    /// Render every model at parse, also those whose only Jinja is ref/source/config calls
    #[arg(long = "no-static-parser", global = true)]
    pub no_static_parser: bool,
    /// Only errors on stdout (print() output, ls and show results still appear)
    #[arg(short = 'q', long, global = true, env = "DBT_QUIET")]
    pub quiet: bool,
    /// The lowest level of log lines shown
    #[arg(long, global = true, value_enum, env = "DBT_LOG_LEVEL")]
    pub log_level: Option<LogLevel>,
    /// Hide the output of the print() macro
    #[arg(long = "no-print", global = true)]
    pub no_print: bool,
    /// Treat warnings (tests of severity warn) as errors
    #[arg(long, global = true, env = "DBT_WARN_ERROR")]
    pub warn_error: bool,
    /// dbt's warn-error options, e.g. '{"error": "all"}' (as --warn-error) — rsdbt's only
    /// warnings are tests', so "all"/"*" is all it distinguishes
    #[arg(long, global = true, env = "DBT_WARN_ERROR_OPTIONS")]
    pub warn_error_options: Option<String>,
    /// Stop at the first failure: nodes not started yet are skipped
    #[arg(short = 'x', long, global = true, env = "DBT_FAIL_FAST")]
    pub fail_fast: bool,
    /// Profile to use instead of the project file's `profile:`
    #[arg(long, global = true, env = "DBT_PROFILE")]
    pub profile: Option<String>,
    /// Folder for artifacts and compiled SQL, instead of the project file's target-path
    #[arg(long, global = true, env = "DBT_TARGET_PATH")]
    pub target_path: Option<String>,
    /// Write the command's Prometheus metrics to this file (text format, for node_exporter's
    /// textfile collector)
    #[arg(long, global = true, env = "RSDBT_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Push the command's Prometheus metrics to this Pushgateway (e.g. http://localhost:9091)
    #[arg(long, global = true, env = "RSDBT_METRICS_PUSH", value_name = "URL")]
    pub metrics_push: Option<String>,
    /// With --watch: serve the latest run's Prometheus metrics at http://ADDR/metrics
    /// (`docs serve` always serves /metrics next to the page)
    #[arg(long, global = true, env = "RSDBT_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// When another run holds the target's lock, wait for it instead of stopping
    #[arg(long, global = true, env = "RSDBT_WAIT_FOR_LOCK")]
    pub wait_for_lock: bool,
    #[command(flatten)]
    pub accepted: Accepted,
}

/// dbt's flags that have nothing to change in rsdbt: accepted so that dbt's command lines and
/// scripts run unchanged.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Accepted for dbt compatibility (no effect)")]
pub struct Accepted {
    /// dbt's debug logging
    #[arg(short = 'd', long, global = true)]
    pub debug: bool,
    #[arg(long, global = true)]
    pub use_colors: bool,
    #[arg(long, global = true)]
    pub print: bool,
    #[arg(long, global = true)]
    pub partial_parse: bool,
    #[arg(long, global = true, value_name = "PATH")]
    pub log_path: Option<String>,
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level_file: Option<String>,
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format_file: Option<String>,
    #[arg(long, global = true)]
    pub use_colors_file: bool,
    #[arg(long, global = true)]
    pub no_use_colors_file: bool,
    #[arg(long, global = true, value_name = "N")]
    pub printer_width: Option<String>,
    #[arg(long, global = true)]
    pub version_check: bool,
    #[arg(long, global = true)]
    pub no_version_check: bool,
    #[arg(long, global = true)]
    pub send_anonymous_usage_stats: bool,
    #[arg(long, global = true)]
    pub no_send_anonymous_usage_stats: bool,
    #[arg(long, global = true)]
    pub write_json: bool,
    #[arg(long, global = true)]
    pub no_write_json: bool,
    #[arg(long, global = true)]
    pub populate_cache: bool,
    #[arg(long, global = true)]
    pub no_populate_cache: bool,
    #[arg(long, global = true)]
    pub cache_selected_only: bool,
    #[arg(long, global = true)]
    pub no_cache_selected_only: bool,
    #[arg(long, global = true)]
    pub introspect: bool,
    #[arg(long, global = true)]
    pub no_introspect: bool,
    #[arg(long, global = true)]
    pub static_parser: bool,
    #[arg(long, global = true)]
    pub use_experimental_parser: bool,
    #[arg(long, global = true)]
    pub show_all_deprecations: bool,
    #[arg(long, global = true, value_name = "PATH")]
    pub record_timing_info: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    None,
}

impl Global {
    /// `--warn-error`, or warn-error options that make every warning an error.
    pub fn warnings_are_errors(&self) -> bool {
        self.warn_error
            || self.warn_error_options.as_deref().is_some_and(|o| {
                let v: serde_json::Value = serde_yaml::from_str(o).unwrap_or_default();
                ["error", "include"]
                    .iter()
                    .any(|k| matches!(v.get(k).and_then(|x| x.as_str()), Some("all" | "*")))
            })
    }

    /// The lowest level printed: `--log-level`, or `error` with `--quiet`.
    pub fn min_level(&self) -> LogLevel {
        match (self.quiet, self.log_level) {
            (_, Some(l)) => l,
            (true, None) => LogLevel::Error,
            (false, None) => LogLevel::Info,
        }
    }
}

#[derive(Debug, Clone, Args, Default)]
pub struct Selection {
    /// Nodes to include (dbt selector syntax: name, folder, +name, name+, tag:x, path:..., config.k:v)
    #[arg(short = 's', long = "select", alias = "models", short_alias = 'm', num_args = 1.., action = clap::ArgAction::Append)]
    pub select: Vec<String>,
    /// Nodes to leave out (same syntax)
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append)]
    pub exclude: Vec<String>,
    /// A selector defined in selectors.yml (instead of --select / --exclude)
    #[arg(long)]
    pub selector: Option<String>,
    /// Folder with the artifacts of an earlier run, for state: / result: selection and --defer
    #[arg(long, env = "DBT_STATE")]
    pub state: Option<std::path::PathBuf>,
    /// Resolve refs to unselected nodes to the relations recorded in --state when they are
    /// not built here
    #[arg(long)]
    pub defer: bool,
    /// With --defer: use the --state relations even when this target has the relation
    #[arg(long)]
    pub favor_state: bool,
    /// Which tests of the selected nodes run too
    #[arg(long, value_enum, default_value_t = crate::graph::select::Indirect::Eager, env = "DBT_INDIRECT_SELECTION")]
    pub indirect_selection: crate::graph::select::Indirect,
}

/// What `build --resource-type` takes: dbt's resource types (those `build` has no nodes of
/// select nothing), and `all` / `default`.
const BUILD_TYPES: [&str; 13] = [
    "model",
    "seed",
    "snapshot",
    "test",
    "unit_test",
    "source",
    "analysis",
    "exposure",
    "metric",
    "saved_query",
    "semantic_model",
    "all",
    "default",
];

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse the project and write target/manifest.json
    Parse,
    /// Compile models to SQL under target/compiled/
    Compile {
        #[command(flatten)]
        selection: Selection,
        /// Compile this SQL (with Jinja) instead of project nodes, and print it
        #[arg(long)]
        inline: Option<String>,
        /// Plan every selected model against its inputs' columns (embedded target)
        #[arg(long = "static-analysis", value_enum, default_value_t = crate::check::Mode::On)]
        static_analysis: crate::check::Mode,
        /// After the first pass, compile again what each save changes
        #[arg(long)]
        watch: bool,
    },
    /// List nodes
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        selection: Selection,
        /// Only these resource types (model, seed, source, ...)
        #[arg(long = "resource-type", num_args = 1.., action = clap::ArgAction::Append)]
        resource_type: Vec<String>,
        #[arg(long, short = 'o', value_enum, default_value_t = LsOutput::Selector)]
        output: LsOutput,
        /// With --output json: only these keys
        #[arg(long = "output-keys", num_args = 1.., value_delimiter = ' ')]
        output_keys: Vec<String>,
    },
    /// Load CSV seeds into tables
    Seed {
        #[command(flatten)]
        selection: Selection,
        /// Accepted for dbt compatibility (seeds are always fully reloaded)
        #[arg(long)]
        full_refresh: bool,
    },
    /// Build models
    Run {
        #[command(flatten)]
        selection: Selection,
        /// After the first pass, re-run what each save changes (and its descendants)
        #[arg(long)]
        watch: bool,
        /// With --watch (implied): also re-run the nodes that read a stream source (Kafka) and
        /// their descendants when it has new records
        #[arg(long = "watch-sources")]
        watch_sources: bool,
        /// How often --watch-sources asks the brokers for new records, in seconds
        #[arg(long = "watch-interval", default_value_t = 1.0, value_name = "SECONDS")]
        watch_interval: f64,
        /// Plan every selected model against its inputs' columns before running anything
        #[arg(long = "static-analysis", value_enum, default_value_t = crate::check::Mode::On)]
        static_analysis: crate::check::Mode,
        /// Reuse models whose compiled SQL, config and input data are unchanged since their
        /// last build (env RSDBT_SKIP_UNCHANGED=true for a project-wide default)
        #[arg(long, env = "RSDBT_SKIP_UNCHANGED")]
        skip_unchanged: bool,
        /// Rebuild incremental models from scratch
        #[arg(long)]
        full_refresh: bool,
        /// Microbatch models: process batches from this time (e.g. 2024-01-01)
        #[arg(long)]
        event_time_start: Option<String>,
        /// Microbatch models: process batches before this time
        #[arg(long)]
        event_time_end: Option<String>,
        /// Read every ref and source as zero rows: the models' SQL runs and their tables get
        /// their columns, without reading any input (a cheap check of the whole DAG)
        #[arg(long)]
        empty: bool,
    },
    /// Take snapshots (SCD type 2 history of changing rows)
    Snapshot {
        #[command(flatten)]
        selection: Selection,
    },
    /// Run data tests
    Test {
        #[command(flatten)]
        selection: Selection,
        /// After the first pass, re-run what each save changes (and its descendants)
        #[arg(long)]
        watch: bool,
    },
    /// Seeds, models and tests in DAG order; a model's tests run right after it
    Build {
        #[command(flatten)]
        selection: Selection,
        /// After the first pass, re-run what each save changes (and its descendants)
        #[arg(long)]
        watch: bool,
        /// With --watch (implied): also re-run the nodes that read a stream source (Kafka) and
        /// their descendants when it has new records
        #[arg(long = "watch-sources")]
        watch_sources: bool,
        /// How often --watch-sources asks the brokers for new records, in seconds
        #[arg(long = "watch-interval", default_value_t = 1.0, value_name = "SECONDS")]
        watch_interval: f64,
        /// Plan every selected model against its inputs' columns before running anything
        #[arg(long = "static-analysis", value_enum, default_value_t = crate::check::Mode::On)]
        static_analysis: crate::check::Mode,
        /// Reuse models whose compiled SQL, config and input data are unchanged since their
        /// last build (env RSDBT_SKIP_UNCHANGED=true for a project-wide default)
        #[arg(long, env = "RSDBT_SKIP_UNCHANGED")]
        skip_unchanged: bool,
        #[arg(long)]
        full_refresh: bool,
        /// Microbatch models: process batches from this time (e.g. 2024-01-01)
        #[arg(long)]
        event_time_start: Option<String>,
        /// Microbatch models: process batches before this time
        #[arg(long)]
        event_time_end: Option<String>,
        /// Read every ref and source as zero rows (see `run --empty`)
        #[arg(long)]
        empty: bool,
        /// Only these resource types
        #[arg(long = "resource-type", num_args = 1.., action = clap::ArgAction::Append, value_parser = BUILD_TYPES)]
        resource_type: Vec<String>,
        /// Not these resource types
        #[arg(long = "exclude-resource-type", num_args = 1.., action = clap::ArgAction::Append, value_parser = BUILD_TYPES)]
        exclude_resource_type: Vec<String>,
    },
    /// Run a model's compiled SQL (or an inline query) and print rows
    Show {
        #[command(flatten)]
        selection: Selection,
        /// A query to run instead of a model (Jinja allowed: {{ ref('m') }})
        #[arg(long)]
        inline: Option<String>,
        /// Rows to show (-1 for all)
        #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = ShowOutput::Text)]
        output: ShowOutput,
    },
    /// Source commands: `source freshness` checks when each source table was last loaded
    Source {
        #[command(subcommand)]
        action: SourceAction,
    },
    /// Re-run the nodes that failed or were skipped in the last run, with its flags
    Retry,
    /// Install the packages of packages.yml (local ones; others must already be in dbt_packages/)
    Deps,
    /// Project documentation: `docs generate` writes the catalog, column lineage and the
    /// docs page into the target folder; `docs serve` serves it
    Docs {
        #[command(subcommand)]
        action: DocsAction,
    },
    /// Call a macro (it runs its own statements with run_query / statement)
    RunOperation {
        /// The macro's name
        r#macro: String,
        /// The macro's keyword arguments, as a YAML or JSON dict
        #[arg(long)]
        args: Option<String>,
    },
    /// Check the project, the profile and the connection
    Debug,
    /// Delete the clean-targets folders (target path by default)
    Clean,
    /// Create a new project folder
    Init {
        /// Project name (a folder of that name is created)
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LsOutput {
    Selector,
    Name,
    Path,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum SourceAction {
    /// Query each source table with a `freshness:` block for its newest load time and compare
    /// it with warn_after / error_after; writes sources.json
    #[command(alias = "snapshot-freshness")]
    Freshness {
        #[command(flatten)]
        selection: Selection,
        /// Where to write the results (default: sources.json in the target folder)
        #[arg(short = 'o', long = "output", alias = "output-path")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DocsAction {
    /// Write catalog.json (every built relation's columns, types and row count), lineage.json
    /// and index.html (the docs page, which also opens from disk) next to the manifest
    Generate {
        /// Do not compile the models first (the manifest keeps no compiled SQL)
        #[arg(long)]
        no_compile: bool,
        /// Write a catalog with no relations (no warehouse queries)
        #[arg(long)]
        empty_catalog: bool,
        /// Also write static_index.html, as dbt (index.html is already self-contained)
        #[arg(long = "static")]
        static_page: bool,
    },
    /// Serve the docs page and a JSON API (manifest, catalog, run results, lineage); it is
    /// regenerated when a project file changes, and open pages update
    Serve {
        /// Address to listen on (only this machine by default)
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port to listen on (0: any free port)
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Do not open a browser
        #[arg(long, overrides_with = "browser")]
        no_browser: bool,
        /// Open a browser (the default; dbt's flag)
        #[arg(long, overrides_with = "no_browser")]
        browser: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowOutput {
    Text,
    Json,
}
