//! `rsdbt debug`.

use super::*;

pub(super) fn debug(cli: &Cli, printer: &Printer) -> Result<i32, Diagnostics> {
    printer.info(&format!("rsdbt version: {}", env!("CARGO_PKG_VERSION")));
    let project = load_project(&settings(&cli.global, true)?)?;
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
