//! `rsdbt deps`: installs the packages of `packages.yml` / `dependencies.yml` into the packages
//! folder, and theirs after them, as dbt does, then writes `package-lock.yml`.
//!
//! - `local:` packages are linked (a symbolic link to the folder, as dbt);
//! - `git:` packages are cloned with the git command line at `revision:` (a tag, branch or
//!   commit), keeping only `subdirectory:` when given; the lock records the commit;
//! - hub packages (`package: owner/name`) come from `DBT_PACKAGE_HUB_URL` when it names a
//!   folder (`<folder>/<name>` or `<folder>/<owner>/<name>`, a checkout of the package), or
//!   count as installed when their folder is already there. rsdbt does not download from
//!   hub.getdbt.com; version ranges are not resolved (the one package found is used).
//!
//! A package is installed once, under its project name, whoever asks for it first.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use crate::cli::printer::Printer;
use crate::diag::{Diagnostic, Diagnostics, Location};
use crate::project::{Project, yaml};

/// Installs what can be installed; `Ok(1)` when some package could not be.
pub fn run(project: &Project, printer: &Printer) -> Result<i32, Diagnostics> {
    let install_dir = project.root.join(&project.packages_path);
    let hub = hub_folder();
    let mut queue = VecDeque::from([project.root.clone()]);
    let mut installed = BTreeSet::new();
    let mut lock = Vec::new();
    let mut missing = Diagnostics::new();
    let mut any_file = false;
    while let Some(dir) = queue.pop_front() {
        let Some((file, text)) = packages_file(&dir) else {
            continue;
        };
        any_file = true;
        let label = file.display().to_string();
        let shown = if dir == project.root {
            file.file_name().unwrap().to_string_lossy().into_owned()
        } else {
            label.clone()
        };
        let doc = yaml::parse(&shown, &text)?;
        let entries = doc
            .get("packages")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        for raw in &entries {
            let at = |needle: &str| Location::find(&shown, text.clone(), needle);
            // `{{ env_var('DBT_ENV_SECRET_GIT_TOKEN') }}` in a git URL is rendered to clone,
            // and kept unrendered in the lock file, as dbt does.
            let entry =
                &crate::project::render_yaml_strings(raw.clone(), &project.vars, &|_| false, true)
                    .map_err(|msg| Diagnostic::error("deps", format!("{shown}: {msg}")))?;
            let step = install(entry, &dir, &install_dir, hub.as_deref(), &installed);
            match step {
                Ok(Some(mut done)) => {
                    printer.info(&done.message);
                    for key in ["git", "local", "package"] {
                        if let (Some(Json::String(r)), Some(slot)) =
                            (raw.get(key), done.lock.get_mut(key))
                            && r.contains("{{")
                        {
                            *slot = Json::String(r.clone());
                        }
                    }
                    if installed.insert(done.name.clone()) {
                        lock.push(done.lock);
                        queue.push_back(install_dir.join(&done.name));
                    }
                }
                Ok(None) => {}
                Err(Failure::Fatal(msg, needle)) => {
                    return Err(Diagnostic::error("deps", msg).at(at(&needle)).into());
                }
                Err(Failure::Missing(d, needle)) => missing.push(d.at(at(&needle))),
            }
        }
    }
    if !any_file {
        printer.info("No packages.yml or dependencies.yml: nothing to install.");
        return Ok(0);
    }
    if !lock.is_empty() {
        let text = serde_yaml::to_string(&json!({ "packages": lock }))
            .map_err(|e| Diagnostic::error("deps", format!("package-lock.yml: {e}")))?;
        std::fs::write(project.root.join("package-lock.yml"), text).map_err(|e| {
            Diagnostic::error("deps", format!("cannot write package-lock.yml: {e}"))
        })?;
    }
    if missing.is_empty() {
        Ok(0)
    } else {
        printer.diagnostics(&missing);
        Ok(1)
    }
}

/// dbt's `DBT_PACKAGE_HUB_URL`, when it is a folder (a path or `file://`).
fn hub_folder() -> Option<PathBuf> {
    let url = std::env::var("DBT_PACKAGE_HUB_URL").ok()?;
    let path = PathBuf::from(url.strip_prefix("file://").unwrap_or(&url));
    path.is_dir().then_some(path)
}

fn packages_file(dir: &Path) -> Option<(PathBuf, Arc<str>)> {
    ["packages.yml", "dependencies.yml"].iter().find_map(|f| {
        let path = dir.join(f);
        std::fs::read_to_string(&path)
            .ok()
            .map(|t| (path, Arc::<str>::from(t)))
    })
}

struct Installed {
    name: String,
    message: String,
    lock: Json,
}

enum Failure {
    /// Stops `deps` (a broken local package): message, text to point at.
    Fatal(String, String),
    /// This package only; the others still install.
    Missing(Diagnostic, String),
}

fn install(
    entry: &Json,
    dir: &Path,
    install_dir: &Path,
    hub: Option<&Path>,
    installed: &BTreeSet<String>,
) -> Result<Option<Installed>, Failure> {
    if let Some(local) = entry.get("local").and_then(Json::as_str) {
        let name = link(&dir.join(local), install_dir, installed)
            .map_err(|msg| Failure::Fatal(format!("local package {local}: {msg}"), local.into()))?;
        return Ok(Some(Installed {
            message: format!("Installed from {local}: {name}"),
            lock: json!({ "local": local }),
            name,
        }));
    }
    if let Some(url) = entry.get("git").and_then(Json::as_str) {
        let revision = entry.get("revision").map(yaml_scalar);
        let sub = entry.get("subdirectory").and_then(Json::as_str);
        return git(url, revision.as_deref(), sub, dir, install_dir, installed)
            .map(Some)
            .map_err(|msg| {
                Failure::Missing(
                    Diagnostic::error("deps", format!("git package {url}: {msg}"))
                        .hint("check the URL, `revision:` and `subdirectory:`; git must reach the repository"),
                    url.into(),
                )
            });
    }
    if let Some(source) = entry.get("package").and_then(Json::as_str) {
        let name = source.rsplit('/').next().unwrap_or(source);
        if let Some(hub) = hub {
            let found = [hub.join(name), hub.join(source)]
                .into_iter()
                .find(|p| p.is_dir());
            if let Some(path) = found {
                let name = link(&path, install_dir, installed).map_err(|msg| {
                    Failure::Fatal(format!("hub package {source}: {msg}"), source.into())
                })?;
                let version = project_field(&path, "version").unwrap_or_default();
                return Ok(Some(Installed {
                    message: format!("Installed from {}: {name} {version}", hub.display()),
                    lock: json!({ "package": source, "version": version }),
                    name,
                }));
            }
        }
        if install_dir.join(name).is_dir() {
            return Ok(Some(Installed {
                message: format!("{source}: already in {}", install_dir.join(name).display()),
                lock: json!({ "package": source, "version": entry.get("version").map(yaml_scalar) }),
                name: name.to_string(),
            }));
        }
        return Err(Failure::Missing(
            Diagnostic::error(
                "deps",
                format!("cannot install hub package {source}: rsdbt does not download from the dbt hub"),
            )
            .hint(format!(
                "set DBT_PACKAGE_HUB_URL to a folder holding {name}/ (a checkout of the package), use `git:` with the package's repository, or put it in {}",
                install_dir.join(name).display()
            )),
            source.into(),
        ));
    }
    for kind in ["tarball", "private"] {
        if let Some(source) = entry.get(kind).and_then(Json::as_str) {
            return Err(Failure::Missing(
                Diagnostic::error(
                    "deps",
                    format!(
                        "cannot install {kind} package {source}: rsdbt does not download packages"
                    ),
                )
                .hint("use `git:` or `local:`, or put the package's folder in the packages folder"),
                source.into(),
            ));
        }
    }
    Ok(None)
}

/// A YAML scalar as text (`revision: 1.0` is a number to YAML).
fn yaml_scalar(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Array(items) => items.iter().map(yaml_scalar).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// A key of the package's project file.
fn project_field(dir: &Path, key: &str) -> Option<String> {
    let file = ["dbt_project.yml", "project.yml"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())?;
    let text: Arc<str> = std::fs::read_to_string(&file).ok()?.into();
    let doc = yaml::parse(&file.to_string_lossy(), &text).ok()?;
    doc.get(key).map(yaml_scalar)
}

fn package_name(dir: &Path) -> Result<String, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    project_field(dir, "name")
        .ok_or_else(|| format!("{} has no dbt_project.yml with a name", dir.display()))
}

/// Removes what is at `path` (a link or a folder).
fn clear(path: &Path) -> Result<(), String> {
    if path.symlink_metadata().is_err() {
        return Ok(());
    }
    let removed = if path.is_dir() && !path.is_symlink() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// Links `<install_dir>/<package name>` to `source`; returns the name.
fn link(source: &Path, install_dir: &Path, installed: &BTreeSet<String>) -> Result<String, String> {
    let name = package_name(source)?;
    if installed.contains(&name) {
        return Ok(name);
    }
    std::fs::create_dir_all(install_dir)
        .map_err(|e| format!("cannot create {}: {e}", install_dir.display()))?;
    let target = std::fs::canonicalize(source).map_err(|e| e.to_string())?;
    let dest = install_dir.join(&name);
    if std::fs::canonicalize(&dest).ok().as_deref() == Some(target.as_path()) {
        return Ok(name);
    }
    clear(&dest)?;
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, &dest)
        .map_err(|e| format!("cannot link {}: {e}", dest.display()))?;
    #[cfg(not(unix))]
    return Err("local packages are linked with symbolic links, which need a Unix system".into());
    Ok(name)
}

/// Clones `url` at `revision` into the packages folder, under the package's name.
fn git(
    url: &str,
    revision: Option<&str>,
    sub: Option<&str>,
    dir: &Path,
    install_dir: &Path,
    installed: &BTreeSet<String>,
) -> Result<Installed, String> {
    std::fs::create_dir_all(install_dir)
        .map_err(|e| format!("cannot create {}: {e}", install_dir.display()))?;
    let scratch = Scratch(install_dir.join(format!(".rsdbt-git-{}", std::process::id())));
    clear(&scratch.0)?;
    let clone = scratch.0.join("repo");
    // A relative path is the project's (dbt runs git from the project folder).
    let source = if Path::new(url).is_relative() && !url.contains("://") && !url.contains('@') {
        dir.join(url).to_string_lossy().into_owned()
    } else {
        url.to_string()
    };
    run_git(
        &["clone", "--quiet", &source, &clone.to_string_lossy()],
        None,
    )?;
    if let Some(rev) = revision {
        run_git(&["checkout", "--quiet", rev], Some(&clone))
            .map_err(|e| format!("revision {rev}: {e}"))?;
    }
    let commit = run_git(&["rev-parse", "HEAD"], Some(&clone))?;
    let root = match sub {
        Some(s) => clone.join(s),
        None => clone.clone(),
    };
    let name = package_name(&root)?;
    if !installed.contains(&name) {
        let dest = install_dir.join(&name);
        clear(&dest)?;
        let _ = std::fs::remove_dir_all(root.join(".git"));
        std::fs::rename(&root, &dest)
            .map_err(|e| format!("cannot move into {}: {e}", dest.display()))?;
    }
    let mut lock = json!({ "git": url, "revision": commit });
    if let Some(s) = sub {
        lock["subdirectory"] = json!(s);
    }
    Ok(Installed {
        message: format!(
            "Installed from {url}@{}: {name}",
            revision.unwrap_or("HEAD")
        ),
        lock,
        name,
    })
}

/// A clone's folder, removed whatever happens.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_git(args: &[&str], cwd: Option<&Path>) -> Result<String, String> {
    let mut cmd = Command::new("git");
    cmd.args(args).env("GIT_TERMINAL_PROMPT", "0");
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run git (is it installed?): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
