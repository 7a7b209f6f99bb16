//! Load a project: the project file, the profile, and every file under the resource paths.
//!
//! Consumes the command-line [`Settings`]; produces a [`Project`] whose files are read once into
//! memory (the source map every later diagnostic points into). Nothing is rendered yet except
//! `{{ env_var() }}` / `{{ var() }}` in project and profile values, as dbt does.

pub mod profile;
pub mod properties;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;

use crate::config::ConfigTree;
use crate::diag::{Diagnostic, Diagnostics, Location};
pub use profile::Target;

/// Command-line settings that shape loading.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub project_dir: PathBuf,
    pub profiles_dir: Option<PathBuf>,
    pub target: Option<String>,
    pub threads: Option<usize>,
    /// `--vars` (YAML or JSON mapping).
    pub vars: serde_json::Map<String, Json>,
    /// Whether a profile is needed (false for `parse`/`ls` when no profile exists is still an error in dbt; kept true).
    pub need_profile: bool,
    /// Reuse the parse renders of unchanged nodes (`--no-partial-parse` turns it off).
    pub partial_parse: bool,
    /// `--profile`: the profile to use instead of the project file's `profile:`.
    pub profile: Option<String>,
    /// `--target-path` / `DBT_TARGET_PATH`: instead of the project file's `target-path`.
    pub target_path: Option<String>,
}

/// Which kind of resource a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    Model,
    Seed,
    Macro,
    Properties,
    SingularTest,
    Snapshot,
    Analysis,
    Docs,
}

/// One file of the project, read once.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub kind: FileKind,
    /// Path relative to the project root, with `/` separators (what dbt calls original_file_path).
    pub path: String,
    /// The resource path it was found under (e.g. `models`).
    pub root: String,
    pub contents: Arc<str>,
}

impl SourceFile {
    /// Path relative to its resource root (dbt's `path`).
    pub fn rel_path(&self) -> &str {
        self.path
            .strip_prefix(&self.root)
            .map(|p| p.trim_start_matches('/'))
            .unwrap_or(&self.path)
    }
    /// File name without extension.
    pub fn stem(&self) -> &str {
        let name = self.path.rsplit('/').next().unwrap_or(&self.path);
        name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name)
    }
    /// Folders between the resource root and the file.
    pub fn folders(&self) -> Vec<String> {
        let rel = self.rel_path();
        let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
        parts.pop();
        parts
    }
    pub fn location(&self) -> Location {
        Location::file(&self.path, self.contents.clone())
    }
}

/// A loaded project.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    /// `project.yml` or `dbt_project.yml`.
    pub project_file: SourceFile,
    pub name: String,
    pub version: String,
    pub profile_name: String,
    pub model_paths: Vec<String>,
    pub seed_paths: Vec<String>,
    pub macro_paths: Vec<String>,
    pub test_paths: Vec<String>,
    pub snapshot_paths: Vec<String>,
    pub analysis_paths: Vec<String>,
    pub docs_paths: Vec<String>,
    pub target_path: String,
    pub clean_targets: Vec<String>,
    /// `vars:` of the project file.
    pub vars: serde_json::Map<String, Json>,
    /// `--vars` from the command line.
    pub cli_vars: serde_json::Map<String, Json>,
    /// See [`Settings::partial_parse`].
    pub partial_parse: bool,
    /// The `models:` / `seeds:` / `sources:` / `tests:` config trees.
    pub config_trees: BTreeMap<String, ConfigTree>,
    /// The project file's own `on-run-start` / `on-run-end` hooks; [`Project::hooks`] adds the
    /// packages'.
    pub on_run_start: Vec<String>,
    pub on_run_end: Vec<String>,
    /// The whole project file, rendered.
    pub raw: Json,
    pub files: Vec<SourceFile>,
    /// Installed packages (`dbt_packages/`), whose macros join the project.
    pub packages: Vec<Package>,
    /// Where packages are installed (`packages-install-path`, default `dbt_packages`).
    pub packages_path: String,
    pub target: Option<Target>,
    /// What loading found worth a warning; the CLI shows it.
    pub warnings: Diagnostics,
}

/// An installed package: rsdbt loads its macros (and generic tests written as macros) and its
/// models.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    /// The package's folder, relative to the root project (`dbt_packages/<folder>`).
    pub dir: String,
    /// Macro files, with paths relative to the root project.
    pub macro_files: Vec<SourceFile>,
    /// Model files, with paths relative to the root project.
    pub model_files: Vec<SourceFile>,
    /// Properties (yml) files under the model paths: descriptions and data tests of its models.
    pub property_files: Vec<SourceFile>,
    /// Markdown files under the model and docs paths: its `{% docs %}` blocks.
    pub docs_files: Vec<SourceFile>,
    /// The package's own config trees (`models:`, `seeds:`); the root project's override them.
    pub config_trees: BTreeMap<String, ConfigTree>,
    /// Seed files, with paths relative to the root project.
    pub seed_files: Vec<SourceFile>,
    /// The package's own `vars:` (defaults the root project's vars override).
    pub vars: serde_json::Map<String, Json>,
    /// `version:` of its project file.
    pub version: Option<String>,
    /// Its `on-run-start` / `on-run-end` hooks (Elementary uploads its artifacts in one).
    pub on_run_start: Vec<String>,
    pub on_run_end: Vec<String>,
}

/// A project hook to run: its project's name, its index there, its (Jinja) SQL.
#[derive(Debug, Clone)]
pub struct Hook {
    pub package: String,
    pub index: usize,
    pub sql: String,
}

impl Project {
    /// The `on-run-start` or `on-run-end` hooks (`which`) of the packages and the project, in
    /// dbt's order: the packages' by package name, then the project's own.
    pub fn hooks(&self, which: &str) -> Vec<Hook> {
        let of = |p: &Package| match which {
            "on-run-start" => p.on_run_start.clone(),
            _ => p.on_run_end.clone(),
        };
        let own = match which {
            "on-run-start" => &self.on_run_start,
            _ => &self.on_run_end,
        };
        let mut packages: Vec<&Package> = self
            .packages
            .iter()
            .filter(|p| p.name != self.name)
            .collect();
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        packages
            .into_iter()
            .map(|p| (p.name.clone(), of(p)))
            .chain([(self.name.clone(), own.clone())])
            .flat_map(|(package, hooks)| {
                hooks.into_iter().enumerate().map(move |(index, sql)| Hook {
                    package: package.clone(),
                    index,
                    sql,
                })
            })
            .collect()
    }

    /// Absolute path of the target folder (dbt's `target-path`).
    pub fn target_dir(&self) -> PathBuf {
        self.root.join(&self.target_path)
    }

    pub fn files_of(&self, kind: FileKind) -> impl Iterator<Item = &SourceFile> {
        self.files.iter().filter(move |f| f.kind == kind)
    }

    /// The resolved target; a bug to ask for it when loading was told not to resolve one.
    pub fn target(&self) -> &Target {
        self.target
            .as_ref()
            .expect("project loaded without a profile")
    }
}

const PROJECT_FILES: [&str; 2] = ["project.yml", "dbt_project.yml"];

/// Loads the project at `settings.project_dir`.
pub fn load(settings: &Settings) -> Result<Project, Diagnostics> {
    let root = settings.project_dir.clone();
    let Some(file_name) = PROJECT_FILES.iter().find(|f| root.join(f).is_file()) else {
        return Err(Diagnostic::error(
            "project",
            format!("no project.yml or dbt_project.yml in {}", display_dir(&root)),
        )
        .hint("run rsdbt from a project folder, pass --project-dir, or create a project with `rsdbt init <name>`")
        .into());
    };
    let mut warnings = Diagnostics::new();
    if PROJECT_FILES.iter().all(|f| root.join(f).is_file()) {
        warnings.push(
            Diagnostic::warning(
                "project",
                format!(
                    "{} holds both project.yml and dbt_project.yml: rsdbt reads project.yml and ignores dbt_project.yml",
                    display_dir(&root)
                ),
            )
            .hint("keep one project file (dbt reads only dbt_project.yml)"),
        );
    }
    let text: Arc<str> = read(&root.join(file_name))?.into();
    let project_file = SourceFile {
        kind: FileKind::Properties,
        path: file_name.to_string(),
        root: String::new(),
        contents: text.clone(),
    };
    let doc = yaml::parse(file_name, &text)?;
    let loc = |needle: &str| Location::find(file_name, text.clone(), needle);
    let vars_raw = doc
        .get("vars")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    // Hooks and config trees keep their Jinja for the node's own render.
    let doc = render_yaml_strings(
        doc,
        &merged_vars(&vars_raw, &settings.vars),
        &|key| {
            matches!(
                key,
                "models"
                    | "seeds"
                    | "snapshots"
                    | "tests"
                    | "data_tests"
                    | "sources"
                    | "on-run-start"
                    | "on-run-end"
                    | "vars"
            )
        },
        false,
    )
    .map_err(|msg| {
        Diagnostic::error("project", format!("{file_name}: {msg}")).at(project_file.location())
    })?;
    let Some(obj) = doc.as_object() else {
        return Err(
            Diagnostic::error("project", format!("{file_name} must be a mapping of keys"))
                .at(project_file.location())
                .into(),
        );
    };
    let mut diags = Diagnostics::new();
    let name = match obj.get("name").and_then(Json::as_str) {
        Some(n) => n.to_string(),
        None => {
            diags.push(
                Diagnostic::error("project", format!("{file_name} has no `name`"))
                    .at(project_file.location())
                    .hint("add `name: my_project` (letters, digits and underscores)"),
            );
            String::from("project")
        }
    };
    let paths = |key: &str, default: &str| -> Vec<String> {
        yaml::strings_of(&doc, key)
            .unwrap_or_else(|| vec![default.to_string()])
            .into_iter()
            .map(|p| p.trim_end_matches('/').to_string())
            .collect()
    };
    let model_paths = paths("model-paths", "models");
    let seed_paths = paths("seed-paths", "seeds");
    let macro_paths = paths("macro-paths", "macros");
    let test_paths = paths("test-paths", "tests");
    let snapshot_paths = paths("snapshot-paths", "snapshots");
    let analysis_paths = paths("analysis-paths", "analyses");
    let docs_paths = yaml::strings_of(&doc, "docs-paths").unwrap_or_default();
    let target_path = settings.target_path.clone().unwrap_or_else(|| {
        yaml::str_of(&doc, "target-path")
            .unwrap_or("target")
            .to_string()
    });
    let clean_targets =
        yaml::strings_of(&doc, "clean-targets").unwrap_or_else(|| vec![target_path.clone()]);
    let profile_name = settings
        .profile
        .clone()
        .unwrap_or_else(|| yaml::str_of(&doc, "profile").unwrap_or(&name).to_string());
    let mut config_trees = BTreeMap::new();
    for key in [
        "models",
        "seeds",
        "sources",
        "snapshots",
        "tests",
        "data_tests",
    ] {
        if let Some(tree) = doc.get(key) {
            let key = if key == "data_tests" { "tests" } else { key };
            config_trees.insert(key.to_string(), ConfigTree::new(tree.clone()));
        }
    }
    let hooks = |key: &str| yaml::strings_of(&doc, key).unwrap_or_default();

    // Which kinds of file each resource folder holds; every folder is walked once.
    type Rules = Vec<(FileKind, &'static [&'static str])>;
    let mut rules: BTreeMap<&String, Rules> = BTreeMap::new();
    let groups: [(&[String], FileKind, &'static [&'static str]); 6] = [
        (&model_paths, FileKind::Model, &["sql"]),
        (&seed_paths, FileKind::Seed, &["csv"]),
        (&macro_paths, FileKind::Macro, &["sql", "jinja"]),
        (&test_paths, FileKind::SingularTest, &["sql"]),
        (&snapshot_paths, FileKind::Snapshot, &["sql"]),
        (&analysis_paths, FileKind::Analysis, &["sql"]),
    ];
    for (dirs, kind, exts) in groups {
        for dir in dirs {
            let r = rules.entry(dir).or_default();
            r.push((kind, exts));
            // Property and docs files may live under any resource path.
            r.push((FileKind::Properties, &["yml", "yaml"]));
            r.push((FileKind::Docs, &["md"]));
        }
    }
    for dir in &docs_paths {
        rules
            .entry(dir)
            .or_default()
            .push((FileKind::Docs, &["md"]));
    }
    let mut files = Vec::new();
    for (dir, r) in &rules {
        collect_files(&root, dir, r, &mut files, &mut diags);
    }
    files.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    files.dedup_by(|a, b| a.kind == b.kind && a.path == b.path);

    let packages_dir = yaml::str_of(&doc, "packages-install-path")
        .unwrap_or("dbt_packages")
        .trim_end_matches('/')
        .to_string();
    let packages = load_packages(&root, &packages_dir, &mut diags);
    let packages_path = packages_dir;

    let vars = vars_raw;
    let target = if settings.need_profile {
        let dirs = profile::search_dirs(settings.profiles_dir.as_deref(), &root);
        match profile::load(
            &dirs,
            &profile_name,
            settings.target.as_deref(),
            settings.threads,
            &merged_vars(&vars, &settings.vars),
            &loc(&format!("profile: {profile_name}")),
        ) {
            Ok(t) => Some(t),
            Err(d) => {
                diags.push(d);
                None
            }
        }
    } else {
        None
    };
    let project = Project {
        root,
        project_file,
        version: yaml::str_of(&doc, "version")
            .map(str::to_string)
            .unwrap_or_else(|| "1.0.0".into()),
        name,
        profile_name,
        model_paths,
        seed_paths,
        macro_paths,
        test_paths,
        snapshot_paths,
        analysis_paths,
        docs_paths,
        target_path,
        clean_targets,
        vars,
        cli_vars: settings.vars.clone(),
        partial_parse: settings.partial_parse,
        config_trees,
        on_run_start: hooks("on-run-start"),
        on_run_end: hooks("on-run-end"),
        raw: doc.clone(),
        files,
        packages,
        packages_path,
        target,
        warnings,
    };
    diags.into_result(project)
}

/// The packages installed under `<root>/<dir>/`: each folder with a project file.
fn load_packages(root: &Path, dir: &str, diags: &mut Diagnostics) -> Vec<Package> {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return vec![];
    };
    let mut folders: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.'))
        .collect();
    folders.sort();
    let mut packages = Vec::new();
    for folder in folders {
        let rel = format!("{dir}/{folder}");
        let Some(file) = PROJECT_FILES
            .iter()
            .find(|f| root.join(&rel).join(f).is_file())
        else {
            continue;
        };
        let path = format!("{rel}/{file}");
        let text: Arc<str> = match read(&root.join(&path)) {
            Ok(t) => t.into(),
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        let doc = match yaml::parse(&path, &text) {
            Ok(d) => d,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        let name = yaml::str_of(&doc, "name").unwrap_or(&folder).to_string();
        let dirs = |key: &str, default: &str| {
            yaml::strings_of(&doc, key).unwrap_or_else(|| vec![default.to_string()])
        };
        let mut macro_files = Vec::new();
        for d in dirs("macro-paths", "macros") {
            let d = format!("{rel}/{}", d.trim_end_matches('/'));
            collect_files(
                root,
                &d,
                &[(FileKind::Macro, &["sql", "jinja"])],
                &mut macro_files,
                diags,
            );
        }
        // Generic tests may be defined in `<test-path>/generic/`, as in the root project.
        for d in dirs("test-paths", "tests") {
            let d = format!("{rel}/{}/generic", d.trim_end_matches('/'));
            collect_files(
                root,
                &d,
                &[(FileKind::Macro, &["sql"])],
                &mut macro_files,
                diags,
            );
        }
        let mut found = Vec::new();
        for d in dirs("model-paths", "models") {
            let d = format!("{rel}/{}", d.trim_end_matches('/'));
            let rules: [(FileKind, &[&str]); 3] = [
                (FileKind::Model, &["sql"]),
                (FileKind::Properties, &["yml", "yaml"]),
                (FileKind::Docs, &["md"]),
            ];
            collect_files(root, &d, &rules, &mut found, diags);
        }
        // dbt reads docs blocks from `docs-paths` when set, else from the model paths.
        if let Some(docs) = yaml::strings_of(&doc, "docs-paths") {
            found.retain(|f| f.kind != FileKind::Docs);
            for d in docs {
                let d = format!("{rel}/{}", d.trim_end_matches('/'));
                collect_files(root, &d, &[(FileKind::Docs, &["md"])], &mut found, diags);
            }
        }
        let (docs_files, found): (Vec<SourceFile>, Vec<SourceFile>) =
            found.into_iter().partition(|f| f.kind == FileKind::Docs);
        let (models, property_files): (Vec<SourceFile>, Vec<SourceFile>) =
            found.into_iter().partition(|f| f.kind == FileKind::Model);
        let mut seed_files = Vec::new();
        for d in dirs("seed-paths", "seeds") {
            let d = format!("{rel}/{}", d.trim_end_matches('/'));
            collect_files(
                root,
                &d,
                &[(FileKind::Seed, &["csv"])],
                &mut seed_files,
                diags,
            );
        }
        packages.push(Package {
            name,
            config_trees: ["models", "seeds"]
                .iter()
                .filter_map(|k| {
                    doc.get(*k)
                        .map(|t| (k.to_string(), ConfigTree::new(t.clone())))
                })
                .collect(),
            seed_files,
            vars: doc
                .get("vars")
                .and_then(Json::as_object)
                .cloned()
                .unwrap_or_default(),
            version: doc
                .get("version")
                .map(crate::project::properties::scalar_text),
            on_run_start: yaml::strings_of(&doc, "on-run-start").unwrap_or_default(),
            on_run_end: yaml::strings_of(&doc, "on-run-end").unwrap_or_default(),
            dir: rel,
            macro_files,
            model_files: models,
            property_files,
            docs_files,
        });
    }
    packages
}

fn display_dir(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

fn read(path: &Path) -> Result<String, Diagnostic> {
    std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::error("io", format!("cannot read {}: {e}", path.display())).hint(read_hint(
            &e,
            "check that the file exists and is UTF-8 text",
        ))
    })
}

/// What to do about a file that cannot be read: `otherwise` unless the cause is its rights.
fn read_hint(e: &std::io::Error, otherwise: &str) -> String {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        "the user running rsdbt must be able to read it (check the file's and its folders' permissions)".into()
    } else {
        otherwise.into()
    }
}

/// Recursively collects the files under `root/dir` that a rule claims (by extension; for
/// each file every matching rule's kind, e.g. a `.sql` file under a folder that is both a model
/// and a macro path), sorted by path.
fn collect_files(
    root: &Path,
    dir: &str,
    rules: &[(FileKind, &[&str])],
    out: &mut Vec<SourceFile>,
    diags: &mut Diagnostics,
) {
    let base = root.join(dir);
    if !base.is_dir() {
        return;
    }
    let mut stack = vec![base];
    // (kinds, path, path relative to the root) of each file, in walk order.
    let mut found: Vec<(Vec<FileKind>, std::path::PathBuf, String)> = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        // Sorted by name: the entries of one folder, compared as whole paths, were most of
        // walking a folder of thousands of files.
        let mut entries: Vec<(std::ffi::OsString, bool)> = entries
            .flatten()
            .map(|e| (e.file_name(), e.file_type().is_ok_and(|t| t.is_dir())))
            .filter(|(name, _)| !name.as_encoded_bytes().starts_with(b"."))
            .collect();
        entries.sort_unstable();
        for (name, is_dir) in entries {
            let p = d.join(name);
            if is_dir {
                stack.push(p);
                continue;
            }
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            let kinds: Vec<FileKind> = rules
                .iter()
                .filter(|(_, exts)| exts.contains(&ext))
                .map(|(k, _)| *k)
                .collect();
            if ext == "py" && rules.iter().any(|(k, _)| *k == FileKind::Model) {
                let rel = p
                    .strip_prefix(root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                diags.push(
                    Diagnostic::error(
                        "project",
                        format!(
                            "{rel} is a Python model, which rsdbt cannot run (it runs SQL models)"
                        ),
                    )
                    .hint("rewrite the model in SQL, or move the file out of the model paths"),
                );
                continue;
            }
            if kinds.is_empty() {
                continue;
            }
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            found.push((kinds, p, rel));
        }
    }
    // Read on every core: a large project has thousands of small files.
    let contents = crate::parallel::map(&found, 64, |(kinds, p, _)| {
        // Seeds can be large: the adapter streams them; they are not kept in the source map.
        if kinds == &[FileKind::Seed] {
            Ok(Arc::from(""))
        } else {
            std::fs::read_to_string(p).map(Arc::<str>::from)
        }
    });
    for ((kinds, _, rel), contents) in found.into_iter().zip(contents) {
        let contents = match contents {
            Ok(c) => c,
            Err(e) => {
                diags.push(
                    Diagnostic::error("io", format!("cannot read {rel}: {e}")).hint(read_hint(
                        &e,
                        "files under resource paths must be UTF-8 text",
                    )),
                );
                continue;
            }
        };
        for kind in kinds {
            out.push(SourceFile {
                kind,
                path: rel.clone(),
                root: dir.to_string(),
                contents: contents.clone(),
            });
        }
    }
}

/// Project vars overlaid with `--vars`.
pub fn merged_vars(
    project: &serde_json::Map<String, Json>,
    cli: &serde_json::Map<String, Json>,
) -> serde_json::Map<String, Json> {
    let mut m = project.clone();
    for (k, v) in cli {
        m.insert(k.clone(), v.clone());
    }
    m
}

/// Renders `{{ ... }}` in every string of a YAML document (env_var, var), skipping the
/// top-level keys for which `skip` is true.
pub fn render_yaml_strings(
    doc: Json,
    vars: &serde_json::Map<String, Json>,
    skip: &dyn Fn(&str) -> bool,
    secrets: bool,
) -> Result<Json, String> {
    let walk = |v: Json| walk_yaml_strings(v, vars, secrets);
    match doc {
        Json::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let v = if skip(&k) { v } else { walk(v)? };
                out.insert(k, v);
            }
            Ok(Json::Object(out))
        }
        other => walk(other),
    }
}

fn walk_yaml_strings(
    v: Json,
    vars: &serde_json::Map<String, Json>,
    secrets: bool,
) -> Result<Json, String> {
    Ok(match v {
        Json::String(s) if s.contains("{{") || s.contains("{%") => {
            Json::String(crate::jinja::render_config_string(&s, vars, secrets)?)
        }
        Json::Array(items) => Json::Array(
            items
                .into_iter()
                .map(|i| walk_yaml_strings(i, vars, secrets))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(k, walk_yaml_strings(v, vars, secrets)?);
            }
            Json::Object(out)
        }
        other => other,
    })
}

/// Parses `--vars` text (YAML or JSON mapping).
pub fn parse_cli_vars(text: &str) -> Result<serde_json::Map<String, Json>, Diagnostic> {
    let src: Arc<str> = text.into();
    let v = yaml::parse("--vars", &src).map_err(|d| {
        d.hint("--vars takes a YAML or JSON mapping, e.g. --vars '{start_date: 2024-01-01}'")
    })?;
    match v {
        Json::Null => Ok(Default::default()),
        Json::Object(m) => Ok(m),
        _ => Err(
            Diagnostic::error("vars", format!("--vars must be a mapping, got: {text}"))
                .hint("write --vars '{key: value}'"),
        ),
    }
}
