//! `rsdbt clean`.

use super::*;

pub(super) fn clean(project: &Project, printer: &Printer) -> Result<i32, Diagnostics> {
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
