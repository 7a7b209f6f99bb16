//! Materializations in Rust: a node and what exists in the warehouse become a short list of
//! [`Operation`]s. Pure — no database is touched here — so every strategy is unit-tested.

use crate::jinja::Relation;

/// One step an adapter applies.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Replace `relation` with a table holding the rows of `sql`; atomic.
    CreateTableAs { relation: Relation, sql: String },
    /// Replace `relation` with a view over `sql`; atomic.
    CreateView { relation: Relation, sql: String },
    /// Load a CSV file into a table; atomic.
    LoadSeed { relation: Relation, seed: SeedSpec },
    /// Run a statement (hooks).
    RunSql { sql: String },
}

/// How to read a seed file.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedSpec {
    /// Absolute path of the CSV.
    pub path: std::path::PathBuf,
    /// Path as shown to the user (`seeds/users.csv`).
    pub display_path: String,
    pub delimiter: u8,
    /// Column → SQL type overrides.
    pub column_types: Vec<(String, String)>,
}

/// What the materialization sees of the node.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub materialized: &'a str,
    pub relation: Relation,
    pub sql: String,
    pub pre_hooks: Vec<String>,
    pub post_hooks: Vec<String>,
}

/// The operations that build the node, or a message for a materialization that cannot run.
pub fn plan(req: Request<'_>) -> Result<Vec<Operation>, String> {
    let build = match req.materialized {
        "table" => Operation::CreateTableAs {
            relation: req.relation,
            sql: req.sql,
        },
        // Until incremental strategies land, an incremental model is rebuilt in full: its SQL is
        // compiled with is_incremental() = false, so the rows are what a full refresh gives.
        "incremental" => Operation::CreateTableAs {
            relation: req.relation,
            sql: req.sql,
        },
        "view" => Operation::CreateView {
            relation: req.relation,
            sql: req.sql,
        },
        "ephemeral" => return Ok(vec![]),
        other => {
            return Err(format!(
                "unknown materialization '{other}' (supported: table, view, ephemeral, incremental, seed)"
            ));
        }
    };
    let mut ops: Vec<Operation> = req
        .pre_hooks
        .into_iter()
        .map(|sql| Operation::RunSql { sql })
        .collect();
    ops.push(build);
    ops.extend(
        req.post_hooks
            .into_iter()
            .map(|sql| Operation::RunSql { sql }),
    );
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(m: &str) -> Request<'_> {
        Request {
            materialized: m,
            relation: Relation::new("db", "main", "orders"),
            sql: "select 1 as id".into(),
            pre_hooks: vec!["select 'pre'".into()],
            post_hooks: vec![],
        }
    }

    #[test]
    fn table_view_ephemeral_operations() {
        let ops = plan(req("table")).unwrap();
        assert_eq!(ops.len(), 2);
        assert!(matches!(&ops[0], Operation::RunSql { sql } if sql == "select 'pre'"));
        assert!(
            matches!(&ops[1], Operation::CreateTableAs { relation, .. } if relation.identifier == "orders")
        );
        assert!(matches!(
            plan(req("view")).unwrap()[1],
            Operation::CreateView { .. }
        ));
        assert!(plan(req("ephemeral")).unwrap().is_empty());
        let err = plan(req("materialized_view")).unwrap_err();
        assert!(err.contains("unknown materialization 'materialized_view'"));
    }
}
