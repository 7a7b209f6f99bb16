//! `rsdbt show`: a model's or an inline query's first rows.

use super::*;

#[cfg(feature = "datafusion")]
pub(super) fn show(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    selection: &Selection,
    inline: Option<&str>,
    limit: i64,
    output: ShowOutput,
) -> Result<i32, Diagnostics> {
    use crate::adapter::Adapter;
    let l = load(&cli.global, invocation)?;
    let adapter = open_introspected(&l)?;
    let compiler = crate::compile::Compiler::new(&l.manifest);
    let (title, sql) = match inline {
        Some(q) => ("inline".to_string(), compiler.compile_inline(q)?),
        None => {
            let ids = selected(
                &l,
                selection,
                None,
                &[ResourceType::Model, ResourceType::Seed],
            )?;
            let [id] = ids.as_slice() else {
                return Err(Diagnostic::error(
                    "selector",
                    format!(
                        "show needs exactly one node, but the selection matched {}",
                        ids.len()
                    ),
                )
                .hint("pass --select <model name> or --inline \"select ...\"")
                .into());
            };
            let node = &l.manifest.nodes[id.as_str()];
            let sql = if node.resource_type == ResourceType::Seed {
                format!("select * from {}", node.relation.render())
            } else {
                // As `compile`: an incremental model whose table exists shows its incremental
                // query's rows, as in dbt.
                let table =
                    || runtime().block_on(adapter.relation_type(&node.relation)) == Some("table");
                let incremental = crate::exec::runs_incrementally(node, table, false);
                compiler.compile_with(id, incremental)?.sql.clone()
            };
            (node.name.to_string(), sql)
        }
    };
    let limit = if limit < 0 {
        None
    } else {
        Some(limit as usize)
    };
    let result = runtime().block_on(adapter.query(&sql, limit));
    match result {
        Ok(r) => {
            match output {
                ShowOutput::Json => {
                    let rows: Vec<serde_json::Value> = r
                        .rows
                        .iter()
                        .map(|row| {
                            serde_json::Value::Object(
                                r.columns.iter().cloned().zip(row.iter().cloned()).collect(),
                            )
                        })
                        .collect();
                    printer.raw(
                        // dbt names the node, not an inline query.
                        &serde_json::to_string_pretty(&match inline {
                            Some(_) => json!({"show": rows}),
                            None => json!({"node": title, "show": rows}),
                        })
                        .unwrap_or_default(),
                    );
                }
                ShowOutput::Text => {
                    printer.info(&format!("Previewing node '{title}':"));
                    printer.raw(&table_text(&r));
                }
            }
            Ok(0)
        }
        Err(e) => {
            printer.diagnostics(
                &Diagnostic::error("database", format!("Database Error in {title}: {}", e.0))
                    .hint("check the SQL; `rsdbt compile` writes what ran under the target folder")
                    .into(),
            );
            Ok(1)
        }
    }
}

#[cfg(not(feature = "datafusion"))]
pub(super) fn show(
    _: &Cli,
    _: &Printer,
    _: &Invocation,
    _: &Selection,
    _: Option<&str>,
    _: i64,
    _: ShowOutput,
) -> Result<i32, Diagnostics> {
    Err(no_engine())
}

/// Rows as a bordered text table.
#[cfg(feature = "datafusion")]
pub(super) fn table_text(r: &crate::adapter::QueryResult) -> String {
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| row.iter().map(cell).collect())
        .collect();
    let widths: Vec<usize> = r
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    // As dbt's (agate's) tables: numbers and dates to the right, text to the left.
    let right: Vec<bool> = (0..r.columns.len())
        .map(|i| {
            let t = r.types.get(i).map(String::as_str).unwrap_or("");
            [
                "int",
                "real",
                "double",
                "decimal",
                "float",
                "numeric",
                "date",
                "timestamp",
            ]
            .iter()
            .any(|k| t.contains(k))
        })
        .collect();
    let line = |vals: &[String], header: bool| {
        format!(
            "| {} |",
            vals.iter()
                .zip(&widths)
                .zip(&right)
                .map(|((v, w), r)| if *r && !header {
                    format!("{v:>w$}")
                } else {
                    format!("{v:<w$}")
                })
                .collect::<Vec<_>>()
                .join(" | ")
        )
    };
    let sep = format!(
        "| {} |",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let mut out = vec![line(&r.columns, true), sep];
    out.extend(cells.iter().map(|row| line(row, false)));
    out.join("\n")
}
