//! `rsdbt init <name>`: a new project folder with a runnable example.

use std::path::Path;

use crate::cli::printer::Printer;
use crate::diag::{Diagnostic, Diagnostics};

const FILES: &[(&str, &str)] = &[
    (
        "project.yml",
        "name: {name}\nversion: \"1.0.0\"\nprofile: {name}\n\nmodel-paths: [\"models\"]\nseed-paths: [\"seeds\"]\nmacro-paths: [\"macros\"]\ntest-paths: [\"data-tests\"]\ntarget-path: \"target\"\nclean-targets: [\"target\"]\n\nmodels:\n  {name}:\n    +materialized: view\n    marts:\n      +materialized: table\n",
    ),
    (
        "profiles.yml",
        "{name}:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: warehouse\n      schema: main\n      threads: 4\n",
    ),
    (
        "models/staging/stg_customers.sql",
        "select id as customer_id, name from {{ ref('customers') }}\n",
    ),
    (
        "models/marts/customer_count.sql",
        "select count(*) as customers from {{ ref('stg_customers') }}\n",
    ),
    ("seeds/customers.csv", "id,name\n1,Ada\n2,Grace\n"),
    ("macros/.gitkeep", ""),
    (".gitignore", "target/\nwarehouse/\nlogs/\n"),
];

pub fn run(name: &str, printer: &Printer) -> Result<i32, Diagnostics> {
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(
            Diagnostic::error("init", format!("'{name}' is not a valid project name"))
                .hint(
                    "use letters, digits and underscores, starting with a letter (e.g. my_project)",
                )
                .into(),
        );
    }
    let root = Path::new(name);
    if root.exists() {
        return Err(
            Diagnostic::error("init", format!("a folder named '{name}' already exists"))
                .hint("choose another name, or remove the folder")
                .into(),
        );
    }
    for (path, text) in FILES {
        let p = root.join(path);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Diagnostic::error("io", format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        std::fs::write(&p, text.replace("{name}", name))
            .map_err(|e| Diagnostic::error("io", format!("cannot write {}: {e}", p.display())))?;
    }
    printer.info(&format!(
        "Created project '{name}'. Next: cd {name} && rsdbt build"
    ));
    Ok(0)
}
