//! Column-level lineage from DataFusion's logical plans: for each output column of a model,
//! the columns of the tables it reads that the value is derived from — through renames,
//! expressions (CASE included), joins, aggregates, windows, unions and `select *`. Computed from
//! the plans of static analysis ([`crate::check`]) and written to `target/lineage.json`.

use std::collections::BTreeSet;

use datafusion::logical_expr::{Expr, LogicalPlan};

/// A column of a scanned table: (the table as the plan names it, column).
pub type Origin = (String, String);

/// The origins of each output column of `plan`, in schema order.
pub fn columns(plan: &LogicalPlan) -> Vec<BTreeSet<Origin>> {
    let width = plan.schema().fields().len();
    match plan {
        LogicalPlan::TableScan(scan) => {
            let table = scan.table_name.to_string();
            plan.schema()
                .fields()
                .iter()
                .map(|f| BTreeSet::from([(table.clone(), f.name().clone())]))
                .collect()
        }
        LogicalPlan::Projection(p) => {
            let input = columns(&p.input);
            p.expr
                .iter()
                .map(|e| through(e, &p.input, &input))
                .collect()
        }
        LogicalPlan::Aggregate(a) => {
            let input = columns(&a.input);
            a.group_expr
                .iter()
                .chain(&a.aggr_expr)
                .map(|e| through(e, &a.input, &input))
                // Grouping sets add an internal id column.
                .chain(std::iter::repeat_with(BTreeSet::new))
                .take(width)
                .collect()
        }
        LogicalPlan::Window(w) => {
            let input = columns(&w.input);
            input
                .iter()
                .cloned()
                .chain(w.window_expr.iter().map(|e| through(e, &w.input, &input)))
                .collect()
        }
        LogicalPlan::Join(j) => {
            let mut out = columns(&j.left);
            out.extend(columns(&j.right));
            // Semi and anti joins keep one side's columns only.
            out.truncate(width);
            if out.len() < width {
                out.resize(width, BTreeSet::new());
            }
            out
        }
        LogicalPlan::Union(u) => {
            let mut out = vec![BTreeSet::new(); width];
            for input in &u.inputs {
                for (i, set) in columns(input).into_iter().enumerate().take(width) {
                    out[i].extend(set);
                }
            }
            out
        }
        other => {
            // Filters, sorts, limits, aliases, distinct, repartitions...: the same columns as
            // their (first) input; leaves without a table (VALUES, empty) have no origin.
            match other.inputs().first() {
                Some(input) if input.schema().fields().len() == width => columns(input),
                _ => vec![BTreeSet::new(); width],
            }
        }
    }
}

/// The origins of `expr`, evaluated over `input` whose columns come from `origins`.
fn through(expr: &Expr, input: &LogicalPlan, origins: &[BTreeSet<Origin>]) -> BTreeSet<Origin> {
    let mut out = BTreeSet::new();
    for col in expr.column_refs() {
        if let Ok(i) = input.schema().index_of_column(col)
            && let Some(set) = origins.get(i)
        {
            out.extend(set.iter().cloned());
        }
    }
    out
}
