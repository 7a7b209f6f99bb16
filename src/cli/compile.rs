//! `rsdbt compile`.

use super::*;

/// `rsdbt compile` (one pass; `watching`: part of a `--watch` loop, memory is freed).
pub(super) fn compile(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    selection: &Selection,
    inline: Option<&str>,
    static_analysis: crate::check::Mode,
    watching: bool,
) -> Result<i32, Diagnostics> {
    let l = load(&cli.global, invocation)?;
    // dbt's compile runs introspective queries (run_query...); connect only if asked.
    #[cfg(feature = "datafusion")]
    let warehouse = {
        let (target, root) = (l.project.target().clone(), l.project.root.clone());
        let warehouse = std::sync::Arc::new(crate::adapter::LazyIntrospector::new(
            Box::new(move || open_target(&target, &root).map_err(|d| d.render(false))),
            runtime().handle().clone(),
        ));
        l.manifest.jinja.set_warehouse(warehouse.clone());
        warehouse
    };
    // dbt's `is_incremental()` asks the warehouse at compile too: an incremental model whose
    // table exists compiles to the SQL `run` would run.
    let incremental = |node: &crate::manifest::Node| {
        #[cfg(feature = "datafusion")]
        {
            use crate::jinja::introspect::Warehouse;
            let table = || {
                warehouse
                    .relation_type(&node.relation)
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some("table")
            };
            crate::exec::runs_incrementally(node, table, false)
        }
        #[cfg(not(feature = "datafusion"))]
        {
            let _ = node;
            false
        }
    };
    let compiler = crate::compile::Compiler::new(&l.manifest);
    if let Some(sql) = inline {
        printer.raw(&compiler.compile_inline(sql)?);
        return Ok(0);
    }
    let state = load_state(selection, &l)?;
    let ids = selected(
        &l,
        selection,
        state.as_ref(),
        &[ResourceType::Model, ResourceType::Test],
    )?;
    let t = std::time::Instant::now();
    let target_dir = l.project.target_dir();
    // Renders and file writes of tens of thousands of nodes: on every core.
    let render = |ids: &[&String]| {
        crate::parallel::map(ids, 256, |id| {
            let node = &l.manifest.nodes[id.as_str()];
            let c = compiler.compile_with(id, incremental(node))?;
            let _ = crate::compile::write_compiled(&target_dir, node, &c.sql);
            Ok::<_, Diagnostic>(c.sql.clone())
        })
    };
    let (models, others): (Vec<&String>, Vec<&String>) = ids
        .iter()
        .partition(|id| l.manifest.nodes[id.as_str()].resource_type == ResourceType::Model);
    let mut outcomes: BTreeMap<&String, Result<String, Diagnostic>> =
        models.iter().copied().zip(render(&models)).collect();
    printer::timing("compile renders + writes: models", t);
    // Static analysis plans the SQL just compiled instead of rendering the models again.
    let model_sql: Option<BTreeMap<String, String>> = outcomes
        .iter()
        .map(|(id, sql)| Some(((*id).clone(), sql.as_ref().ok()?.clone())))
        .collect();
    // Static analysis plans the models (each DAG level on every core) while the tests compile
    // and manifest.json is written (a 10,000-model compile: ~0.6 s less than one after the
    // other).
    let analyse = || -> Result<(), Diagnostics> {
        #[cfg(feature = "datafusion")]
        if let Some(model_sql) = &model_sql
            && static_analysis != crate::check::Mode::Off
            && l.project.target().adapter_type == "datafusion"
        {
            let adapter = open_introspected(&l)?;
            printer::timing("static analysis: adapter opened", t);
            let flags = Flags {
                static_analysis,
                ..Default::default()
            };
            self::static_analysis(&l, &ids, flags, &adapter, model_sql, printer)?;
        }
        #[cfg(not(feature = "datafusion"))]
        let _ = (static_analysis, &model_sql);
        Ok(())
    };
    let ((written, compiled, diags), analysed) = crate::parallel::beside(
        || {
            outcomes.extend(others.iter().copied().zip(render(&others)));
            printer::timing("compile renders + writes", t);
            let mut compiled = BTreeMap::new();
            let mut diags = Diagnostics::new();
            for id in &ids {
                match outcomes.remove(id) {
                    Some(Ok(sql)) => {
                        compiled.insert(id.clone(), sql);
                    }
                    Some(Err(d)) => diags.push(d),
                    None => {}
                }
            }
            let written = write_manifest(&l, &compiled);
            printer::timing("manifest.json", t);
            (written, compiled, diags)
        },
        analyse,
    );
    written?;
    if !diags.is_empty() {
        return Err(diags);
    }
    analysed?;
    printer.info(&found_line(&l.manifest));
    if ids.len() == 1 {
        printer.raw(&compiled[&ids[0]]);
    } else {
        printer.info(&format!(
            "Compiled {} node{} into {}/compiled/",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" },
            l.project.target_path
        ));
    }
    drop(compiler);
    if watching {
        drop(l);
    } else {
        exit_without_teardown(l);
    }
    Ok(0)
}
