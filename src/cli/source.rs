//! `rsdbt source freshness`: the selected source tables with a `freshness:` block, each asked
//! when it was last loaded; `sources.json` as dbt writes it. Exit 1 when a table is past its
//! `error_after` or could not be asked (or past `warn_after` with `--warn-error`).

use std::path::Path;

use serde_json::json;

use super::args::{Cli, Selection};
use super::printer::Printer;
use crate::adapter::Adapter;
use crate::diag::{Diagnostic, Diagnostics};
use crate::freshness::{self, Criteria, Outcome, Status};
use crate::manifest::{Invocation, Source};

pub(super) fn freshness(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    selection: &Selection,
    output: Option<&Path>,
) -> Result<i32, Diagnostics> {
    let started = std::time::Instant::now();
    let l = super::load(&cli.global, invocation)?;
    let state = super::load_state(selection, &l)?;
    let set = super::selection_set(&l, selection, state.as_ref())?;
    let mut checks: Vec<(&Source, Criteria)> = Vec::new();
    let mut problems = Diagnostics::default();
    for s in set.iter().filter_map(|id| l.manifest.sources.get(id)) {
        match Criteria::of(s) {
            Ok(Some(c)) => checks.push((s, c)),
            Ok(None) => {}
            Err(d) => problems.0.push(d),
        }
    }
    if !problems.0.is_empty() {
        return Err(problems);
    }
    printer.running(&l.project.target().adapter_type);
    printer.info(&super::found_line(&l.manifest));
    printer.info("");
    if checks.is_empty() {
        printer.info("Nothing to do: no selected source has a freshness block with warn_after or error_after");
        return Ok(0);
    }
    let adapter = super::open_introspected(&l)?;
    let total = checks.len();
    let mut outcomes = Vec::with_capacity(total);
    for (i, (s, criteria)) in checks.into_iter().enumerate() {
        let name = format!("{}.{}", s.def.source_name, s.def.name);
        printer.freshness_line(i + 1, total, &name, &s.unique_id, None);
        let outcome = super::runtime().block_on(check(&adapter, s, criteria));
        printer.freshness_line(i + 1, total, &name, &s.unique_id, Some(&outcome));
        outcomes.push(outcome);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let doc = json!({
        "metadata": crate::artifacts::metadata(&l.manifest, "sources/v3"),
        "results": outcomes.iter().map(Outcome::to_json).collect::<Vec<_>>(),
        "elapsed_time": elapsed,
    });
    let path = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| l.project.target_dir().join("sources.json"));
    let bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    crate::artifacts::write_atomic(&path, &bytes)
        .map_err(|e| Diagnostic::error("io", format!("cannot write {}: {e}", path.display())))?;
    super::metrics::report(&cli.global, printer, &l, &|| doc.clone());
    printer.freshness_summary(&outcomes, elapsed);
    let warn_error = cli.global.warnings_are_errors();
    let failed = outcomes.iter().any(|o| {
        matches!(o.status, Status::Error | Status::RuntimeError)
            || (warn_error && o.status == Status::Warn)
    });
    Ok(i32::from(failed))
}

/// One table: the newest `loaded_at_field` (dbt's `collect_freshness` query), or without one,
/// when the warehouse last wrote the table.
async fn check(adapter: &crate::adapter::AnyAdapter, s: &Source, criteria: Criteria) -> Outcome {
    let started = chrono::Utc::now();
    let field = s
        .def
        .config
        .get("loaded_at_field")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .or_else(|| s.def.loaded_at_field.clone());
    let relation = s.relation.render();
    let Some(field) = field else {
        return match adapter.last_modified(&s.relation).await {
            Some(t) => Outcome::measured(&s.unique_id, criteria, t, chrono::Utc::now(), started),
            None => Outcome::failed(
                &s.unique_id,
                criteria,
                format!(
                    "Could not compute freshness for source {}: no 'loaded_at_field' provided and the {} target cannot tell when {relation} last changed. Set `loaded_at_field:` on the source table.",
                    s.def.name,
                    adapter.kind()
                ),
                started,
            ),
        };
    };
    let sql = freshness::query(&relation, &field, criteria.filter.as_deref());
    let row = match adapter.query(&sql, None).await {
        Ok(r) => r.rows.into_iter().next().unwrap_or_default(),
        Err(e) => return Outcome::failed(&s.unique_id, criteria, e.0, started),
    };
    let cell = |i: usize| row.get(i).and_then(freshness::timestamp);
    match (cell(0), cell(1)) {
        (Some(max), Some(now)) => Outcome::measured(&s.unique_id, criteria, max, now, started),
        (None, _) => {
            let msg = format!(
                "Expected a timestamp value when querying field '{field}' of table {relation} but received value '{}'. This can happen when querying an empty table.",
                row.first()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "null".into())
            );
            Outcome::failed(&s.unique_id, criteria, msg, started)
        }
        (Some(max), None) => {
            Outcome::measured(&s.unique_id, criteria, max, chrono::Utc::now(), started)
        }
    }
}
