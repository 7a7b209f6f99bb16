//! Materializations in Rust: a node and what exists in the warehouse become a short list of
//! [`Operation`]s. Pure — no database is touched here — so every strategy is unit-tested.

pub mod snapshot;

use crate::jinja::Relation;

/// One step an adapter applies.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Replace `relation` with a table holding the rows of `sql`; atomic.
    CreateTableAs {
        relation: Relation,
        sql: String,
        format: TableFormat,
        options: TableOptions,
    },
    /// Replace `relation` with a view over `sql`; atomic.
    CreateView { relation: Relation, sql: String },
    /// Load a CSV file into a table; atomic.
    LoadSeed {
        relation: Relation,
        seed: SeedSpec,
        format: TableFormat,
        options: TableOptions,
    },
    /// Apply the rows of an incremental model's SQL to its existing table; one commit.
    Incremental(Box<IncrementalSpec>),
    /// Run a statement (hooks).
    RunSql { sql: String },
    /// Copy the rows of the freshly built `relation` into a PostgreSQL table through a
    /// connection of the profile, replacing it atomically (config `publish:`).
    Publish {
        relation: Relation,
        connection: String,
        schema: String,
        table: String,
    },
    /// dbt's `grants`: privilege → grantees, granted on the freshly built relation.
    Grant {
        relation: Relation,
        grants: Vec<(String, Vec<String>)>,
    },
    /// dbt's `persist_docs`: descriptions stored as database comments.
    Comment {
        relation: Relation,
        view: bool,
        relation_comment: Option<String>,
        columns: Vec<(String, String)>,
    },
}

impl Operation {
    /// Whether this builds the node's relation (its response is the node's message), as
    /// opposed to a hook, grant or comment around it.
    pub fn builds(&self) -> bool {
        matches!(
            self,
            Operation::CreateTableAs { .. }
                | Operation::CreateView { .. }
                | Operation::LoadSeed { .. }
                | Operation::Incremental(_)
        )
    }
}

/// The `grants` and `persist_docs` operations that follow a build of `relation`, from the
/// node's config and descriptions (`columns`: name → description).
pub fn after_build(
    relation: &Relation,
    view: bool,
    config: &crate::config::Config,
    description: &str,
    columns: &[(String, String)],
) -> Vec<Operation> {
    let mut ops = Vec::new();
    let grants: Vec<(String, Vec<String>)> = config
        .get("grants")
        .and_then(serde_json::Value::as_object)
        .map(|g| {
            g.iter()
                .map(|(privilege, who)| {
                    let who = match who {
                        serde_json::Value::String(s) => vec![s.clone()],
                        serde_json::Value::Array(a) => a
                            .iter()
                            .filter_map(|w| w.as_str().map(str::to_string))
                            .collect(),
                        _ => vec![],
                    };
                    (privilege.trim_start_matches('+').to_string(), who)
                })
                .filter(|(_, who)| !who.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !grants.is_empty() {
        ops.push(Operation::Grant {
            relation: relation.clone(),
            grants,
        });
    }
    let persist = |key: &str| {
        config
            .get("persist_docs")
            .and_then(|p| p.get(key))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    let relation_comment =
        (persist("relation") && !description.is_empty()).then(|| description.to_string());
    let columns: Vec<(String, String)> = if persist("columns") {
        columns
            .iter()
            .filter(|(_, d)| !d.is_empty())
            .cloned()
            .collect()
    } else {
        vec![]
    };
    if relation_comment.is_some() || !columns.is_empty() {
        ops.push(Operation::Comment {
            relation: relation.clone(),
            view,
            relation_comment,
            columns,
        });
    }
    ops
}

/// How the embedded target stores a table (`table_format`, or dbt-spark's `file_format`).
/// Other targets have one kind of table and ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableFormat {
    #[default]
    Delta,
    Iceberg,
    Parquet,
}

impl TableFormat {
    pub fn of(cfg: &crate::config::Config) -> Result<Self, String> {
        let text = |key: &str| {
            cfg.get(key)
                .and_then(|v| v.as_str())
                // Empty is unset: packages write `'{{ "delta" if target.name == "databricks" else "" }}'`.
                .filter(|v| !v.trim().is_empty())
                .map(str::to_ascii_lowercase)
        };
        let (value, spark) = match text("table_format") {
            Some(v) => (Some(v), false),
            None => (text("file_format"), true),
        };
        match value.as_deref() {
            None | Some("delta") => Ok(TableFormat::Delta),
            Some("iceberg") => Ok(TableFormat::Iceberg),
            // dbt-spark's `file_format: parquet` is what packages write for Spark beside a
            // strategy that other warehouses run (Fivetran's: `delete+insert` unless Databricks);
            // a Parquet table cannot, so such a model is a Delta table. `table_format` is
            // rsdbt's own and is taken at its word.
            Some("parquet") if spark && Self::needs_delta(cfg) => Ok(TableFormat::Delta),
            Some("parquet") => Ok(TableFormat::Parquet),
            Some(other) => Err(format!(
                "unknown table_format '{other}' (supported: delta, iceberg, parquet)"
            )),
        }
    }

    /// An incremental model that changes rows or columns in place: only Delta tables can.
    fn needs_delta(cfg: &crate::config::Config) -> bool {
        let text = |key: &str| cfg.get(key).and_then(|v| v.as_str()).unwrap_or("");
        if text("materialized") != "incremental" {
            return false;
        }
        let keyed = cfg.get("unique_key").is_some_and(|k| {
            !k.is_null() && k.as_str() != Some("") && k.as_array().is_none_or(|a| !a.is_empty())
        });
        let appends = match text("incremental_strategy") {
            "" => !keyed,
            s => s.eq_ignore_ascii_case("append"),
        };
        !appends
            || matches!(
                text("on_schema_change"),
                "append_new_columns" | "sync_all_columns"
            )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TableFormat::Delta => "delta",
            TableFormat::Iceberg => "iceberg",
            TableFormat::Parquet => "parquet",
        }
    }
}

/// How a Spark target lays a new table out (dbt-spark's configs). The embedded target reads
/// `partition_by` from the config itself, and PostgreSQL has none of these.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableOptions {
    /// `file_format` as the model sets it (`None`: the target's default).
    pub file_format: Option<String>,
    pub partition_by: Vec<String>,
    pub clustered_by: Vec<String>,
    pub buckets: Option<u64>,
    pub location_root: Option<String>,
    pub tblproperties: Vec<(String, String)>,
}

impl TableOptions {
    pub fn of(cfg: &crate::config::Config) -> Self {
        let text = |k: &str| cfg.get(k).and_then(|v| v.as_str()).map(str::to_string);
        TableOptions {
            file_format: text("file_format").or_else(|| text("table_format")),
            partition_by: list(cfg, "partition_by"),
            clustered_by: list(cfg, "clustered_by"),
            buckets: cfg.get("buckets").and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            }),
            location_root: text("location_root"),
            tblproperties: cfg
                .get("tblproperties")
                .and_then(|v| v.as_object())
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            let v = v.as_str().map(str::to_string).unwrap_or(v.to_string());
                            (k.clone(), v)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Whether the embedded target can build a node of this materialization and config in its
/// table format — checked for every selected node before anything runs. iceberg-rust 0.10
/// only appends to a table (no row-level delete, overwrite or schema evolution), and plain
/// Parquet files have no way to delete rows either, so their incremental models may only
/// append.
pub fn check_format(materialized: &str, cfg: &crate::config::Config) -> Result<(), String> {
    let format = TableFormat::of(cfg)?;
    if format == TableFormat::Delta || materialized != "incremental" {
        return Ok(());
    }
    let name = format.as_str();
    let spec = config_spec(materialized, cfg)?;
    if spec.strategy != Strategy::Append {
        let implied = if cfg.get("incremental_strategy").is_none() {
            " (the default with a unique_key)"
        } else {
            ""
        };
        return Err(format!(
            "incremental_strategy '{}'{implied} is not supported by table_format '{name}', which can only append; \
             the formats that support it: delta (the embedded default) and PostgreSQL tables. \
             Use incremental_strategy 'append', or table_format 'delta'",
            spec.strategy.as_str()
        ));
    }
    if matches!(
        spec.on_schema_change,
        SchemaChange::AppendNewColumns | SchemaChange::SyncAllColumns
    ) {
        return Err(format!(
            "on_schema_change '{}' is not supported by table_format '{name}' (it cannot change a table's columns in place); \
             the formats that support it: delta and PostgreSQL tables. Use 'ignore' or 'fail', or rebuild with --full-refresh",
            crate::config::ConfigExt::str_or(cfg, "on_schema_change", "")
        ));
    }
    Ok(())
}

/// The `publish:` config of a model (`{connection: app_db, schema: marts, table: orders}`;
/// schema and table default to the model's).
pub fn publish_op(
    relation: &Relation,
    cfg: &crate::config::Config,
) -> Result<Option<Operation>, String> {
    let Some(p) = cfg.get("publish").filter(|p| !p.is_null()) else {
        return Ok(None);
    };
    let field = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let connection = field("connection").ok_or(
        "`publish` needs a `connection` (a name under the target's `connections:` in profiles.yml)",
    )?;
    Ok(Some(Operation::Publish {
        relation: relation.clone(),
        connection,
        schema: field("schema").unwrap_or_else(|| relation.schema.to_string()),
        table: field("table").unwrap_or_else(|| relation.identifier.to_string()),
    }))
}

/// dbt's incremental strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Append,
    Merge,
    DeleteInsert,
    InsertOverwrite,
    /// One time window (batch) of `event_time`: its rows are replaced.
    Microbatch,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Append => "append",
            Strategy::Merge => "merge",
            Strategy::DeleteInsert => "delete+insert",
            Strategy::InsertOverwrite => "insert_overwrite",
            Strategy::Microbatch => "microbatch",
        }
    }
}

/// What to do when the new rows' columns differ from the table's (dbt's `on_schema_change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaChange {
    Ignore,
    Fail,
    AppendNewColumns,
    SyncAllColumns,
}

/// An incremental run of a model whose table exists.
#[derive(Debug, Clone, PartialEq)]
pub struct IncrementalSpec {
    pub relation: Relation,
    pub sql: String,
    pub strategy: Strategy,
    pub unique_key: Vec<String>,
    /// Extra conditions on the existing rows (`DBT_INTERNAL_DEST.col > ...`).
    pub predicates: Vec<String>,
    pub merge_update_columns: Option<Vec<String>>,
    pub merge_exclude_columns: Vec<String>,
    pub on_schema_change: SchemaChange,
    pub partition_by: Vec<String>,
    pub format: TableFormat,
    /// `file_format` as the model sets it (a Spark target's default applies when `None`).
    pub file_format: Option<String>,
    /// Microbatch: the rows this batch replaces (`event_time` within the batch's window).
    pub replace_where: Option<String>,
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
    /// For incremental models: the table exists and no full refresh applies.
    pub incremental: bool,
    pub config: &'a crate::config::Config,
    /// Grants and comments ([`after_build`]), applied between the build and the post-hooks.
    pub grants_and_docs: Vec<Operation>,
}

fn list(cfg: &crate::config::Config, key: &str) -> Vec<String> {
    match cfg.get(key) {
        Some(serde_json::Value::String(s)) => s
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        // Spark-style `partition_by: {field: x}`
        Some(serde_json::Value::Object(o)) => o
            .get("field")
            .and_then(|f| f.as_str())
            .map(|f| vec![f.to_string()])
            .unwrap_or_default(),
        _ => vec![],
    }
}

/// The incremental spec a model's config gives, for checks before anything runs (no SQL, no
/// relation).
pub fn config_spec(
    materialized: &str,
    cfg: &crate::config::Config,
) -> Result<IncrementalSpec, String> {
    incremental_spec(&Request {
        materialized,
        relation: Relation::new("", "", ""),
        sql: String::new(),
        pre_hooks: vec![],
        post_hooks: vec![],
        incremental: true,
        config: cfg,
        grants_and_docs: vec![],
    })
}

/// The incremental run's spec, or a message naming what is wrong with the config.
fn incremental_spec(req: &Request) -> Result<IncrementalSpec, String> {
    let cfg = req.config;
    let unique_key = list(cfg, "unique_key");
    let strategy = match cfg.get("incremental_strategy").and_then(|v| v.as_str()) {
        // The embedded default, as dbt-databricks: merge with a key, else append.
        None if unique_key.is_empty() => Strategy::Append,
        None => Strategy::Merge,
        Some("append") => Strategy::Append,
        Some("merge") => Strategy::Merge,
        Some("delete+insert") => Strategy::DeleteInsert,
        Some("insert_overwrite") => Strategy::InsertOverwrite,
        Some("microbatch") => Strategy::Microbatch,
        Some(other) => {
            return Err(format!(
                "unknown incremental_strategy '{other}' (supported: append, merge, delete+insert, insert_overwrite, microbatch)"
            ));
        }
    };
    if strategy == Strategy::Microbatch {
        for key in ["event_time", "batch_size", "begin"] {
            if cfg.get(key).is_none_or(|v| v.is_null()) {
                return Err(format!("incremental_strategy 'microbatch' needs `{key}`"));
            }
        }
        if !matches!(
            cfg.get("batch_size").and_then(|v| v.as_str()),
            Some("hour" | "day" | "month" | "year")
        ) {
            return Err("batch_size must be one of hour, day, month, year".into());
        }
    }
    if strategy == Strategy::DeleteInsert && unique_key.is_empty() {
        return Err("incremental_strategy 'delete+insert' needs a unique_key".into());
    }
    let on_schema_change = match cfg
        .get("on_schema_change")
        .and_then(|v| v.as_str())
        .unwrap_or("ignore")
    {
        "ignore" => SchemaChange::Ignore,
        "fail" => SchemaChange::Fail,
        "append_new_columns" => SchemaChange::AppendNewColumns,
        "sync_all_columns" => SchemaChange::SyncAllColumns,
        other => {
            return Err(format!(
                "unknown on_schema_change '{other}' (supported: ignore, fail, append_new_columns, sync_all_columns)"
            ));
        }
    };
    let update = list(cfg, "merge_update_columns");
    Ok(IncrementalSpec {
        relation: req.relation.clone(),
        sql: req.sql.clone(),
        strategy,
        unique_key,
        predicates: list(cfg, "incremental_predicates"),
        merge_update_columns: if update.is_empty() {
            None
        } else {
            Some(update)
        },
        merge_exclude_columns: list(cfg, "merge_exclude_columns"),
        on_schema_change,
        partition_by: list(cfg, "partition_by"),
        format: TableFormat::of(cfg)?,
        file_format: TableOptions::of(cfg).file_format,
        replace_where: None,
    })
}

/// The operations that build the node, or a message for a materialization that cannot run.
pub fn plan(req: Request<'_>) -> Result<Vec<Operation>, String> {
    let format = TableFormat::of(req.config)?;
    let publish = publish_op(&req.relation, req.config)?;
    let build = match req.materialized {
        "table" => Operation::CreateTableAs {
            relation: req.relation,
            sql: req.sql,
            format,
            options: TableOptions::of(req.config),
        },
        "incremental" if req.incremental => {
            Operation::Incremental(Box::new(incremental_spec(&req)?))
        }
        // First run or full refresh: build the table from scratch (validating the config now).
        "incremental" => {
            incremental_spec(&req)?;
            Operation::CreateTableAs {
                relation: req.relation,
                sql: req.sql,
                format,
                options: TableOptions::of(req.config),
            }
        }
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
    ops.extend(publish);
    ops.extend(req.grants_and_docs);
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

    #[test]
    fn table_format_from_config() {
        let of = |v: serde_json::Value| {
            TableFormat::of(&v.as_object().cloned().unwrap_or_default().into())
        };
        assert_eq!(of(serde_json::json!({})), Ok(TableFormat::Delta));
        // Empty is unset (dbt_artifacts: `"delta" if target.name == "databricks" else ""`).
        assert_eq!(
            of(serde_json::json!({"file_format": ""})),
            Ok(TableFormat::Delta)
        );
        assert_eq!(
            of(serde_json::json!({"file_format": "Iceberg"})),
            Ok(TableFormat::Iceberg)
        );
        assert_eq!(
            of(serde_json::json!({"table_format": "parquet", "file_format": "delta"})),
            Ok(TableFormat::Parquet)
        );
        assert!(of(serde_json::json!({"file_format": "orc"})).is_err());
        // dbt-spark's parquet beside a strategy only Delta runs (Fivetran's packages).
        let spark_parquet =
            serde_json::json!({"materialized": "incremental", "file_format": "parquet"});
        assert_eq!(of(spark_parquet.clone()), Ok(TableFormat::Parquet));
        let mut keyed = spark_parquet.clone();
        keyed["unique_key"] = serde_json::json!("id");
        assert_eq!(of(keyed.clone()), Ok(TableFormat::Delta));
        keyed["incremental_strategy"] = serde_json::json!("append");
        assert_eq!(of(keyed), Ok(TableFormat::Parquet));
        let mut own = spark_parquet;
        own["incremental_strategy"] = serde_json::json!("delete+insert");
        own["table_format"] = serde_json::json!("parquet");
        assert_eq!(of(own), Ok(TableFormat::Parquet));
    }

    fn req<'a>(m: &'a str, config: &'a crate::config::Config) -> Request<'a> {
        Request {
            materialized: m,
            relation: Relation::new("db", "main", "orders"),
            sql: "select 1 as id".into(),
            pre_hooks: vec!["select 'pre'".into()],
            post_hooks: vec![],
            incremental: false,
            config,
            grants_and_docs: vec![],
        }
    }

    #[test]
    fn table_view_ephemeral_operations() {
        let cfg = crate::config::Config::new();
        let req = |m| req(m, &cfg);
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

    #[test]
    fn incremental_strategies_from_config() {
        let cfg =
            |v: serde_json::Value| crate::config::Config::from(v.as_object().unwrap().clone());
        let run = |c: &crate::config::Config, incremental: bool| {
            plan(Request {
                incremental,
                ..req("incremental", c)
            })
        };
        let keyed = cfg(
            serde_json::json!({"unique_key": ["id", "day"], "incremental_predicates": ["DBT_INTERNAL_DEST.day > '2024-01-01'"]}),
        );
        // First run: a plain table build.
        assert!(matches!(
            run(&keyed, false).unwrap()[1],
            Operation::CreateTableAs { .. }
        ));
        let Operation::Incremental(spec) = &run(&keyed, true).unwrap()[1] else {
            panic!("not incremental")
        };
        assert_eq!(spec.strategy, Strategy::Merge);
        assert_eq!(spec.unique_key, vec!["id", "day"]);
        assert_eq!(spec.predicates.len(), 1);
        let plain = cfg(serde_json::json!({}));
        let Operation::Incremental(spec) = &run(&plain, true).unwrap()[1] else {
            panic!("not incremental")
        };
        assert_eq!(spec.strategy, Strategy::Append);
        let bad = cfg(serde_json::json!({"incremental_strategy": "delete+insert"}));
        assert_eq!(
            run(&bad, true).unwrap_err(),
            "incremental_strategy 'delete+insert' needs a unique_key"
        );
        let bad = cfg(serde_json::json!({"incremental_strategy": "upsert", "unique_key": "id"}));
        assert!(
            run(&bad, false)
                .unwrap_err()
                .contains("unknown incremental_strategy 'upsert'")
        );
    }

    #[test]
    fn grants_and_docs_follow_the_build() {
        let cfg = serde_json::json!({
            "grants": {"select": "reporter", "+insert": ["etl", "ops"], "update": []},
            "persist_docs": {"columns": true},
        });
        let cfg = crate::config::Config::from(cfg.as_object().unwrap().clone());
        let rel = Relation::new("db", "main", "orders");
        let cols = [
            ("id".to_string(), "Key.".to_string()),
            ("x".to_string(), String::new()),
        ];
        let ops = after_build(&rel, true, &cfg, "Orders.", &cols);
        assert_eq!(
            ops,
            vec![
                Operation::Grant {
                    relation: rel.clone(),
                    grants: vec![
                        ("insert".into(), vec!["etl".into(), "ops".into()]),
                        ("select".into(), vec!["reporter".into()]),
                    ],
                },
                // persist_docs.relation is off: only the documented column.
                Operation::Comment {
                    relation: rel.clone(),
                    view: true,
                    relation_comment: None,
                    columns: vec![("id".into(), "Key.".into())],
                },
            ]
        );
        let plan = plan(Request {
            grants_and_docs: ops,
            post_hooks: vec!["select 'post'".into()],
            ..req("view", &cfg)
        })
        .unwrap();
        assert!(plan[1].builds() && matches!(plan[2], Operation::Grant { .. }));
        assert!(matches!(&plan[4], Operation::RunSql { sql } if sql == "select 'post'"));
    }
}
