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
    {
        let (target, root) = (l.project.target().clone(), l.project.root.clone());
        l.manifest
            .jinja
            .set_warehouse(std::sync::Arc::new(crate::adapter::LazyIntrospector::new(
                Box::new(move || open_target(&target, &root).map_err(|d| d.render(false))),
                runtime().handle().clone(),
            )));
    }
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
    let mut compiled = BTreeMap::new();
    let mut diags = Diagnostics::new();
    let target_dir = l.project.target_dir();
    // Renders and file writes of tens of thousands of nodes: on every core.
    let outcomes = crate::parallel::map(&ids, 256, |id| {
        let c = compiler.compile(id)?;
        let _ = crate::compile::write_compiled(&target_dir, &l.manifest.nodes[id], &c.sql);
        Ok(c.sql.clone())
    });
    for (id, outcome) in ids.iter().zip(outcomes) {
        match outcome {
            Ok(sql) => {
                compiled.insert(id.clone(), sql);
            }
            Err(d) => diags.push(d),
        }
    }
    printer::timing("compile renders + writes", t);
    // manifest.json is written while static analysis plans the models: the planning runs on
    // one core, so writing beside it costs no wall time (a 10,000-model compile: ~0.6 s less).
    let analyse = || -> Result<(), Diagnostics> {
        #[cfg(feature = "datafusion")]
        if diags.is_empty()
            && static_analysis != crate::check::Mode::Off
            && l.project.target().adapter_type == "datafusion"
        {
            let adapter = open_introspected(&l)?;
            printer::timing("static analysis: adapter opened", t);
            let flags = Flags {
                static_analysis,
                ..Default::default()
            };
            self::static_analysis(&l, &ids, flags, &adapter, printer)?;
        }
        #[cfg(not(feature = "datafusion"))]
        let _ = static_analysis;
        Ok(())
    };
    let (written, analysed) = crate::parallel::beside(
        || {
            let written = write_manifest(&l, &compiled);
            printer::timing("manifest.json", t);
            written
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
