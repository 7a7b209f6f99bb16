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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
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
