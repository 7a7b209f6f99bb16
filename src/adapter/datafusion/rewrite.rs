//! SQL DataFusion cannot plan, rewritten into SQL it can, before planning: `ROLLUP` and `CUBE`
//! over column tuples (`rollup((a, b), c)`, which DuckDB and PostgreSQL accept) become the
//! `GROUPING SETS` they stand for. Only a statement that changed is printed back; everything
//! else reaches the planner as written.

use std::borrow::Cow;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// `sql` as the engine can plan it.
pub fn for_engine(sql: &str) -> Cow<'_, str> {
    let lower = sql.to_ascii_lowercase();
    if !(lower.contains("rollup") || lower.contains("cube")) {
        return Cow::Borrowed(sql);
    }
    let Ok(mut statements) = Parser::parse_sql(&GenericDialect {}, sql) else {
        return Cow::Borrowed(sql);
    };
    let mut changed = false;
    let _ = visit_expressions_mut(&mut statements, |expr| {
        let sets = match expr {
            Expr::Rollup(items) if items.iter().any(|i| i.len() > 1) => {
                // rollup(e1, ..., en): every prefix, longest first, down to ().
                (0..=items.len())
                    .rev()
                    .map(|n| items[..n].concat())
                    .collect::<Vec<_>>()
            }
            Expr::Cube(items) if items.iter().any(|i| i.len() > 1) => {
                // cube(e1, ..., en): every subset, in the order PostgreSQL lists them.
                let n = items.len();
                (0..1u64 << n)
                    .rev()
                    .map(|mask| {
                        (0..n)
                            .filter(|i| mask & (1 << (n - 1 - i)) != 0)
                            .flat_map(|i| items[i].clone())
                            .collect()
                    })
                    .collect()
            }
            _ => return ControlFlow::<()>::Continue(()),
        };
        *expr = Expr::GroupingSets(sets);
        changed = true;
        ControlFlow::Continue(())
    });
    if !changed {
        return Cow::Borrowed(sql);
    }
    Cow::Owned(
        statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(";\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::for_engine;

    #[test]
    fn tuples_in_rollup_and_cube_become_grouping_sets() {
        assert_eq!(
            for_engine("select a, b, c, count(*) from t group by rollup((a, b), c)"),
            "SELECT a, b, c, count(*) FROM t GROUP BY GROUPING SETS ((a, b, c), (a, b), ())"
        );
        assert_eq!(
            for_engine("select a, b, count(*) from t group by cube((a, b))"),
            "SELECT a, b, count(*) FROM t GROUP BY GROUPING SETS ((a, b), ())"
        );
        // What the planner has is left as written.
        let plain = "select a, count(*) from t group by rollup(a, b)";
        assert_eq!(for_engine(plain), plain);
    }
}
