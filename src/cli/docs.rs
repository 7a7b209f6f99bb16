//! `rsdbt docs generate` and `rsdbt docs serve`.

use super::*;

/// `rsdbt docs generate`: the manifest (with compiled SQL) and `catalog.json`, which describes
/// every relation the project has built, as the warehouse sees it.
#[cfg(feature = "datafusion")]
pub(super) fn docs_generate(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    no_compile: bool,
    empty_catalog: bool,
) -> Result<i32, Diagnostics> {
    use crate::adapter::Adapter;
    let l = load(&cli.global, invocation)?;
    let adapter = open_introspected(&l)?;
    let rt = runtime();
    let mut compiled = BTreeMap::new();
    if !no_compile {
        let compiler = crate::compile::Compiler::new(&l.manifest);
        let models: Vec<&crate::manifest::Node> = l
            .manifest
            .nodes
            .values()
            .filter(|n| n.resource_type == ResourceType::Model)
            .map(|n| &**n)
            .collect();
        // As `compile`: an incremental model whose table exists shows its incremental SQL.
        let sql = crate::parallel::map(&models, 64, |node| {
            let table = || rt.block_on(adapter.relation_type(&node.relation)) == Some("table");
            let incremental = crate::exec::runs_incrementally(node, table, false);
            compiler.compile_with(&node.unique_id, incremental).ok()
        });
        for (node, c) in models.iter().zip(sql) {
            if let Some(c) = c {
                compiled.insert(node.unique_id.to_string(), c.sql.clone());
            }
        }
    }
    write_manifest(&l, &compiled)?;
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
        let described = match adapter.as_ref() {
            #[cfg(feature = "spark")]
            crate::adapter::AnyAdapter::Spark(spark) if kind != "external" => {
                rt.block_on(spark.describe(rel))
            }
            _ => Default::default(),
        };
        // A cluster's tables are not counted (a scan of each): its catalog's statistics
        // say, where it keeps them (as dbt-spark).
        let counted = !matches!(adapter.as_ref(), crate::adapter::AnyAdapter::Spark(_));
        let row_count = (kind == "table" && counted)
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
            database: rel.database.to_string(),
            schema: rel.schema.to_string(),
            name: rel.identifier.to_string(),
            kind: match kind {
                "view" => "VIEW",
                // dbt-external-tables' sources show as external tables in catalogs.
                "external" => "EXTERNAL TABLE",
                _ => "BASE TABLE",
            },
            columns: shape.columns.into_iter().zip(shape.types).collect(),
            row_count: row_count.or(described.rows),
            bytes: match adapter.as_ref() {
                crate::adapter::AnyAdapter::DataFusion(df) => rt.block_on(df.table_bytes(rel)),
                #[allow(unreachable_patterns)]
                _ => described.bytes,
            },
            described,
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
        .map(|n| n.unique_id.to_string())
        .collect();
    let flags = Flags {
        static_analysis: crate::check::Mode::On,
        ..Default::default()
    };
    if let Err(d) = static_analysis(&l, &models, flags, &adapter, &compiled, printer) {
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
pub(super) fn docs_serve(
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
pub(super) fn docs_serve(
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
pub(super) fn open_browser(url: &str) {
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
pub(super) fn docs_generate(
    _: &Cli,
    _: &Printer,
    _: &Invocation,
    _: bool,
    _: bool,
) -> Result<i32, Diagnostics> {
    Err(no_engine())
}
