//! `rsdbt deps`: installs the project's `local:` packages into the packages folder, as dbt does
//! (a symbolic link to the package's folder). Hub, git and tarball packages need a download,
//! which rsdbt does not do: they are reported, and count as installed when their folder is
//! already there.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::cli::printer::Printer;
use crate::diag::{Diagnostic, Diagnostics, Location};
use crate::project::{Project, yaml};

/// Installs what can be installed; `Ok(1)` when some package could not be.
pub fn run(project: &Project, printer: &Printer) -> Result<i32, Diagnostics> {
    let Some((file, text)) = ["packages.yml", "dependencies.yml"].iter().find_map(|f| {
        std::fs::read_to_string(project.root.join(f))
            .ok()
            .map(|t| (*f, Arc::<str>::from(t)))
    }) else {
        printer.info("No packages.yml or dependencies.yml: nothing to install.");
        return Ok(0);
    };
    let doc = yaml::parse(file, &text)?;
    let entries = doc
        .get("packages")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let install_dir = project.root.join(&project.packages_path);
    let mut missing = Diagnostics::new();
    for entry in &entries {
        if let Some(local) = entry.get("local").and_then(Json::as_str) {
            let name = install_local(&project.root, local, &install_dir).map_err(|msg| {
                Diagnostic::error("deps", msg).at(Location::find(file, text.clone(), local))
            })?;
            printer.info(&format!("Installed from {local}: {name}"));
            continue;
        }
        let what = ["package", "git", "tarball", "private"]
            .iter()
            .find_map(|k| entry.get(*k).and_then(Json::as_str).map(|v| (*k, v)));
        let Some((kind, source)) = what else {
            continue;
        };
        // hub names are `owner/name`; git URLs end in `name(.git)`.
        let name = source
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .rsplit('/')
            .next()
            .unwrap_or(source);
        if install_dir.join(name).is_dir() {
            printer.info(&format!(
                "{source}: already in {}/{name}",
                project.packages_path
            ));
        } else {
            missing.push(
                Diagnostic::error(
                    "deps",
                    format!(
                        "cannot install {} package {source}: rsdbt does not download packages",
                        if kind == "package" { "hub" } else { kind }
                    ),
                )
                .at(Location::find(file, text.clone(), source))
                .hint(format!(
                    "put the package's folder in {}/{name} (for example with `dbt deps`), or use `local:`",
                    project.packages_path
                )),
            );
        }
    }
    if missing.is_empty() {
        Ok(0)
    } else {
        printer.diagnostics(&missing);
        Ok(1)
    }
}

/// Links `<install_dir>/<package name>` to the local package folder; returns the name.
fn install_local(root: &Path, local: &str, install_dir: &Path) -> Result<String, String> {
    let source = root.join(local);
    let project_file = ["dbt_project.yml", "project.yml"]
        .iter()
        .map(|f| source.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("local package {local} has no dbt_project.yml"))?;
    let text: Arc<str> = std::fs::read_to_string(&project_file)
        .map_err(|e| format!("cannot read {}: {e}", project_file.display()))?
        .into();
    let doc = yaml::parse(&project_file.to_string_lossy(), &text).map_err(|d| d.message)?;
    let name = yaml::str_of(&doc, "name")
        .ok_or_else(|| format!("{} has no name", project_file.display()))?
        .to_string();
    std::fs::create_dir_all(install_dir)
        .map_err(|e| format!("cannot create {}: {e}", install_dir.display()))?;
    let link = install_dir.join(&name);
    if link.symlink_metadata().is_ok() {
        let removed = if link.is_dir() && !link.is_symlink() {
            std::fs::remove_dir_all(&link)
        } else {
            std::fs::remove_file(&link)
        };
        removed.map_err(|e| format!("cannot replace {}: {e}", link.display()))?;
    }
    let target =
        std::fs::canonicalize(&source).map_err(|e| format!("local package {local}: {e}"))?;
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, &link)
        .map_err(|e| format!("cannot link {}: {e}", link.display()))?;
    #[cfg(not(unix))]
    return Err("local packages are linked with symbolic links, which need a Unix system".into());
    Ok(name)
}
