//! The Spark Connect target (`type: spark`, `method: connect`): Apache Spark 3.4+/4.x,
//! Databricks, Sail. Everything goes to the server as Spark SQL through the ASF client's async
//! core; results come back as Arrow. Seeds travel as Arrow IPC in a local relation (no
//! row-by-row INSERTs). Writes are what dbt-spark/dbt-databricks issue: `create or replace
//! table … using <format> as`, `insert into`, Delta `merge into`, `insert overwrite`.

use std::collections::HashSet;
use std::sync::Mutex;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value as Json;
use spark_connect_core::{ChannelBuilder, SparkConnectClient, SparkError};
use spark_connect_proto as pb;

use super::{Adapter, AdapterError, Applied, QueryResult};
use crate::jinja::{Relation, quote};
use crate::materialize::{IncrementalSpec, Operation, SchemaChange, Strategy, TableOptions};
use crate::project::profile::Target;

/// Port of a Spark Connect server when the profile gives none (Spark's default).
const DEFAULT_PORT: u16 = 15002;
/// A gRPC message holds at most 128 MiB; a seed goes in local relations of at most this many
/// bytes of Arrow each.
const SEED_CHUNK_BYTES: usize = 32 << 20;
/// The folder of a schema under `location_root` that keeps its views' SQL.
const VIEWS: &str = "_rsdbt_views";

pub struct SparkAdapter {
    client: SparkConnectClient,
    /// What the user named (`host:port`), never the token.
    endpoint: String,
    /// `file_format` of the target: what a model without its own is stored as.
    file_format: String,
    location_root: Option<String>,
    /// Schemas known to exist (created once per run).
    schemas: Mutex<HashSet<String>>,
    /// The server's `version()`: Sail answers its own (0.x), Spark its (3.x, 4.x).
    version: String,
    /// Whether the tables under `location_root` are in this session's catalog.
    registered: tokio::sync::OnceCell<()>,
    /// dbt's relation cache: each schema's tables and views (lowercase name → is a view),
    /// listed once and kept up to date with what this run creates; SQL whose effect is unknown
    /// (a hook, `run_query` of a statement) empties it. Without it, each node listed its whole
    /// schema: quadratic in the project's size.
    relations: Mutex<std::collections::HashMap<String, std::collections::HashMap<String, bool>>>,
}

impl std::fmt::Debug for SparkAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparkAdapter")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

fn err(e: impl std::fmt::Display) -> AdapterError {
    AdapterError(e.to_string())
}

/// The server's message without the JVM stack trace Spark appends.
fn spark_err(e: SparkError) -> AdapterError {
    let msg = e.message();
    let first = msg
        .split("\n\tat ")
        .next()
        .unwrap_or(&msg)
        .trim()
        .to_string();
    AdapterError(first)
}

fn text(t: &Target, key: &str) -> Option<String> {
    match t.fields.get(key)? {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The Spark Connect URL of the target: `host` as a full `sc://` URL, or a host name with
/// `port`; `token` and `cluster` (Databricks' cluster id) from their own keys, so they can come
/// from `env_var` without being spelled into the URL. Returns (URL, what may be shown).
fn connection_url(t: &Target) -> Result<(String, String), String> {
    let host = text(t, "host").ok_or_else(|| {
        format!(
            "target '{}' (type spark) needs `host:` (sc://host:port, or a host name with `port:`)",
            t.name
        )
    })?;
    let mut url = if host.starts_with("sc://") {
        host.clone()
    } else {
        let port = text(t, "port").unwrap_or_else(|| DEFAULT_PORT.to_string());
        format!("sc://{host}:{port}")
    };
    let shown = url
        .split(';')
        .filter(|p| !p.starts_with("token="))
        .collect::<Vec<_>>()
        .join(";");
    if !url.contains(";") && !url.ends_with('/') {
        url.push('/');
    }
    if let Some(token) = text(t, "token") {
        url.push_str(&format!(";token={token}"));
    }
    if let Some(cluster) = text(t, "cluster") {
        url.push_str(&format!(";x-databricks-cluster-id={cluster}"));
    }
    url.push_str(";user_agent=rsdbt");
    Ok((url, shown))
}

/// A SQL statement as a command (executed eagerly, as pyspark's `spark.sql`).
fn command(sql: &str) -> pb::plan::OpType {
    pb::plan::OpType::Command(pb::Command {
        command_type: Some(pb::command::CommandType::SqlCommand(pb::SqlCommand {
            input: Some(sql_relation(sql)),
            ..Default::default()
        })),
    })
}

fn sql_relation(query: &str) -> pb::Relation {
    pb::Relation {
        common: None,
        rel_type: Some(pb::relation::RelType::Sql(pb::Sql {
            query: query.to_string(),
            ..Default::default()
        })),
    }
}

/// What one ExecutePlan returned.
#[derive(Default)]
struct Outcome {
    batches: Vec<RecordBatch>,
    /// A SQL command's result: the relation to read its rows from.
    relation: Option<pb::Relation>,
    /// The result's column names and types when no Arrow batch came (an empty result).
    schema: Option<pb::DataType>,
}

impl SparkAdapter {
    /// Connects and runs `select 1`: a wrong host or port is reported here, before anything runs.
    pub async fn connect(t: &Target) -> Result<Self, AdapterError> {
        let (url, shown) = connection_url(t).map_err(AdapterError)?;
        let builder = ChannelBuilder::parse(&url)
            .map_err(|e| AdapterError(format!("target '{}': {} ({shown})", t.name, e.message())))?;
        let client = SparkConnectClient::connect(&builder)
            .await
            .map_err(|e| AdapterError(format!("cannot connect to {shown}: {}", e.message())))?;
        let file_format = text(t, "file_format").unwrap_or_default();
        let mut adapter = SparkAdapter {
            client,
            endpoint: shown.clone(),
            file_format,
            location_root: text(t, "location_root"),
            schemas: Mutex::new(HashSet::new()),
            registered: tokio::sync::OnceCell::new(),
            relations: Mutex::default(),
            version: String::new(),
        };
        match tokio::time::timeout(
            std::time::Duration::from_secs(20),
            adapter.query("select version()", None),
        )
        .await
        {
            Ok(Ok(r)) => {
                adapter.version = r
                    .rows
                    .first()
                    .and_then(|r| r.first())
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string();
                if adapter.file_format.is_empty() {
                    adapter.file_format = adapter.default_format(&url).await.into();
                }
                Ok(adapter)
            }
            Ok(Err(e)) => Err(AdapterError(format!(
                "the Spark Connect server at {shown} did not answer: {}",
                e.0
            ))),
            Err(_) => Err(AdapterError(format!(
                "the Spark Connect server at {shown} did not answer within 20 s"
            ))),
        }
    }

    async fn execute(&self, plan: pb::plan::OpType) -> Result<Outcome, AdapterError> {
        self.registered
            .get_or_init(|| Box::pin(self.register_tables()))
            .await;
        self.send(plan).await
    }

    /// A catalog that lives per session (Sail's) forgets the tables of earlier runs; their
    /// data stays under a local `location_root`, where each table is registered again before
    /// the session's first statement (a catalog that keeps them, as Hive's or Unity's, lists
    /// them and nothing is done).
    async fn register_tables(&self) {
        let Some(root) = self.location_root.as_deref() else {
            return;
        };
        let root = root.strip_prefix("file://").unwrap_or(root);
        if root.contains("://") {
            return;
        }
        let Ok(schemas) = std::fs::read_dir(root) else {
            return;
        };
        let root_dir = root.to_string();
        for schema in schemas.flatten() {
            let Ok(tables) = std::fs::read_dir(schema.path()) else {
                continue;
            };
            let schema = schema.file_name().to_string_lossy().into_owned();
            let listed = self.tables_in(&schema).await;
            for table in tables.flatten() {
                let name = table.file_name().to_string_lossy().into_owned();
                let format = if table.path().join("_delta_log").is_dir() {
                    // A log without a commit: a first write killed before it, no table yet.
                    if !super::datafusion::is_delta_dir(&table.path()) {
                        continue;
                    }
                    "delta"
                } else if table.path().is_dir() {
                    "parquet"
                } else {
                    continue;
                };
                if listed.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                    continue;
                }
                if name == VIEWS {
                    continue;
                }
                let rel = Relation::new("", &schema, &name);
                let _ = self.ensure_schema(&schema).await;
                let _ = self
                    .send(command(&format!(
                        "create table if not exists {rel} using {format} location '{}'",
                        table.path().display()
                    )))
                    .await;
            }
        }
        self.register_views(&root_dir).await;
    }

    /// Views have no data to find again: their SQL is kept under `location_root`
    /// (`<schema>/_rsdbt_views/<name>.sql`) and they are created again, each pass creating those
    /// whose inputs exist, until a pass creates none.
    async fn register_views(&self, root: &str) {
        let mut pending: Vec<(Relation, String)> = Vec::new();
        for schema in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = schema.file_name().to_string_lossy().into_owned();
            for view in std::fs::read_dir(schema.path().join(VIEWS))
                .into_iter()
                .flatten()
                .flatten()
            {
                let file = view.file_name().to_string_lossy().into_owned();
                if let (Some(id), Ok(sql)) = (
                    file.strip_suffix(".sql"),
                    std::fs::read_to_string(view.path()),
                ) {
                    pending.push((Relation::new("", &name, id), sql));
                }
            }
        }
        loop {
            let before = pending.len();
            let mut left = Vec::new();
            for (rel, sql) in pending {
                let _ = self.ensure_schema(&rel.schema).await;
                let create = format!("create view if not exists {rel} as\n{sql}");
                if self.send(command(&create)).await.is_err() {
                    left.push((rel, sql));
                }
            }
            pending = left;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
    }

    /// Where a view's SQL is kept (a local `location_root` only).
    fn view_file(&self, rel: &Relation) -> Option<std::path::PathBuf> {
        let root = self.location_root.as_deref()?;
        let root = root.strip_prefix("file://").unwrap_or(root);
        (!root.contains("://")).then(|| {
            std::path::Path::new(root)
                .join(&rel.schema)
                .join(VIEWS)
                .join(format!("{}.sql", rel.identifier))
        })
    }

    async fn send(&self, plan: pb::plan::OpType) -> Result<Outcome, AdapterError> {
        let request = pb::ExecutePlanRequest {
            session_id: self.client.session_id().to_string(),
            user_context: Some(pb::UserContext {
                user_id: self.client.user_id().unwrap_or("rsdbt").to_string(),
                user_name: "rsdbt".into(),
                ..Default::default()
            }),
            plan: Some(pb::Plan {
                op_type: Some(plan),
            }),
            client_type: Some(format!("rsdbt/{}", env!("CARGO_PKG_VERSION"))),
            ..Default::default()
        };
        let mut stream = self.client.execute_plan(request).await.map_err(spark_err)?;
        let mut out = Outcome::default();
        while let Some(response) = stream
            .message()
            .await
            .map_err(|s| spark_err(SparkError::from_grpc_status(s)))?
        {
            use pb::execute_plan_response::ResponseType;
            if response.schema.is_some() {
                out.schema = response.schema;
            }
            match response.response_type {
                Some(ResponseType::ArrowBatch(batch)) => {
                    out.batches.extend(decode_ipc(&batch.data)?);
                }
                Some(ResponseType::SqlCommandResult(r)) => out.relation = r.relation,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Runs one statement (DDL, DML) and waits for it to finish.
    async fn run(&self, sql: &str) -> Result<(), AdapterError> {
        self.execute(command(sql)).await.map(|_| ())
    }

    /// The rows of a query (or of a command's result, as `show tables`), at most `limit`.
    async fn rows(
        &self,
        sql: &str,
        limit: Option<usize>,
    ) -> Result<(Vec<RecordBatch>, Option<pb::DataType>), AdapterError> {
        let head = first_keyword(sql);
        // A query is read directly; anything else runs as a command first (as pyspark's
        // `spark.sql` does), whose result names the relation holding its output.
        let relation = if matches!(head.as_str(), "select" | "with" | "values" | "(" | "from") {
            sql_relation(sql)
        } else {
            let out = self.execute(command(sql)).await?;
            match out.relation {
                Some(r) => r,
                None => return Ok((out.batches, out.schema)),
            }
        };
        let relation = match limit {
            Some(n) => pb::Relation {
                common: None,
                rel_type: Some(pb::relation::RelType::Limit(Box::new(pb::Limit {
                    input: Some(Box::new(relation)),
                    limit: n as i32,
                }))),
            },
            None => relation,
        };
        let out = self.execute(pb::plan::OpType::Root(relation)).await?;
        Ok((out.batches, out.schema))
    }

    async fn ensure_schema(&self, schema: &str) -> Result<(), AdapterError> {
        if schema.is_empty() || self.schemas.lock().unwrap().contains(schema) {
            return Ok(());
        }
        self.send(command(&format!(
            "create schema if not exists {}",
            quote(schema)
        )))
        .await?;
        self.schemas.lock().unwrap().insert(schema.to_string());
        Ok(())
    }

    /// dbt-databricks' default where the server has Delta (Sail, Databricks, a Spark with
    /// Delta's session extension), else dbt-spark's (Parquet).
    async fn default_format(&self, url: &str) -> &'static str {
        if self.is_sail() || url.contains("x-databricks-cluster-id") || url.contains("databricks") {
            return "delta";
        }
        let extensions = self
            .query("set spark.sql.extensions", None)
            .await
            .map(|r| format!("{:?}", r.rows))
            .unwrap_or_default();
        if extensions.contains("Delta") {
            "delta"
        } else {
            "parquet"
        }
    }

    /// Whether tables of `format` (the model's, else the target's) take row-level changes
    /// (`merge`, `delete`): Delta, Iceberg and Hudi do, plain files do not.
    fn row_level(&self, format: Option<&str>) -> bool {
        let format = format.unwrap_or(&self.file_format).to_ascii_lowercase();
        matches!(format.as_str(), "delta" | "iceberg" | "hudi")
    }

    /// Why this server cannot build a node of `materialized` with `cfg`, before anything runs
    /// (dbt-spark refuses the same at run time, midway through a build).
    pub fn cannot_build(&self, materialized: &str, cfg: &crate::config::Config) -> Option<String> {
        let options = crate::materialize::TableOptions::of(cfg);
        let format = options.file_format.as_deref().unwrap_or(&self.file_format);
        let row_level = self.row_level(Some(format));
        match materialized {
            "snapshot" if !row_level => Some(format!(
                "a snapshot merges its changes, which file_format '{format}' cannot (Spark merges into delta, iceberg and hudi tables); set file_format: delta"
            )),
            "incremental" => {
                let spec = crate::materialize::config_spec(materialized, cfg).ok()?;
                let strategy = spec.strategy;
                let keyless_merge = strategy == Strategy::Merge && spec.unique_key.is_empty();
                if !row_level
                    && matches!(
                        strategy,
                        Strategy::Merge | Strategy::DeleteInsert | Strategy::Microbatch
                    )
                    && !keyless_merge
                {
                    return Some(format!(
                        "incremental_strategy '{}' changes rows in place, which file_format '{format}' cannot on Spark (delta, iceberg and hudi can); use 'append' or 'insert_overwrite', or set file_format: delta",
                        strategy.as_str()
                    ));
                }
                None
            }
            _ => None,
        }
    }

    /// The columns of `schema.table` in the server's catalog, for static analysis (`None`: no
    /// such table).
    pub async fn table_schema(&self, schema: &str, table: &str) -> Option<SchemaRef> {
        let rel = Relation::new("", schema, table);
        self.relation_type(&rel).await?;
        let (batches, proto) = self
            .rows(&format!("select * from {rel} limit 0"), None)
            .await
            .ok()?;
        Some(arrow_schema(&batches, proto.as_ref()))
    }

    /// What `describe table extended` says of `rel` beyond its columns: the comments, the
    /// owner, and the statistics where the catalog keeps them (`Statistics: N bytes, M rows`).
    pub async fn describe(&self, rel: &Relation) -> crate::artifacts::Described {
        let rows = match self
            .query(&format!("describe table extended {rel}"), None)
            .await
        {
            Ok(r) => r.rows,
            Err(_) => return Default::default(),
        };
        let cell = |row: &[Json], i: usize| {
            row.get(i)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let mut d = crate::artifacts::Described::default();
        let mut section = "columns";
        for row in &rows {
            let (key, value, comment) = (cell(row, 0), cell(row, 1), cell(row, 2));
            if key.starts_with('#') {
                section = if key == "# Detailed Table Information" {
                    "details"
                } else {
                    "other"
                };
                continue;
            }
            match section {
                "columns" if !key.is_empty() && !comment.is_empty() => {
                    d.column_comments.insert(key, comment);
                }
                "details" => match key.as_str() {
                    "Owner" if !value.is_empty() => d.owner = Some(value),
                    "Comment" if !value.is_empty() => d.comment = Some(value),
                    "Statistics" => {
                        for part in value.split(',') {
                            let mut words = part.split_whitespace();
                            let n = words.next().and_then(|n| n.parse::<u64>().ok());
                            match words.next() {
                                Some("bytes") => d.bytes = n,
                                Some("rows") => d.rows = n,
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        // Spark records a CTAS's size but not its rows ("2296 bytes, 0 rows").
        if d.rows == Some(0) && d.bytes.is_some_and(|b| b > 0) {
            d.rows = None;
        }
        d
    }

    fn is_sail(&self) -> bool {
        self.version.starts_with("0.")
    }

    /// `using … partitioned by … clustered by … location … tblproperties …` of a new table.
    fn table_clauses(&self, rel: &Relation, o: &TableOptions) -> String {
        let format = o.file_format.as_deref().unwrap_or(&self.file_format);
        let mut s = format!(" using {format}");
        if !o.partition_by.is_empty() {
            s += &format!(" partitioned by ({})", idents(&o.partition_by));
        }
        if !o.clustered_by.is_empty() {
            s += &format!(
                " clustered by ({}) into {} buckets",
                idents(&o.clustered_by),
                o.buckets.unwrap_or(1)
            );
        }
        if let Some(root) = o.location_root.as_ref().or(self.location_root.as_ref()) {
            s += &format!(" location '{}'", table_location(root, rel));
        }
        if !o.tblproperties.is_empty() {
            let props: Vec<String> = o
                .tblproperties
                .iter()
                .map(|(k, v)| format!("'{k}' = '{}'", v.replace('\'', "\\'")))
                .collect();
            s += &format!(" tblproperties ({})", props.join(", "));
        }
        s
    }

    /// Replaces `rel` with a table of `body`'s rows. A Delta table is replaced in one commit
    /// (`create or replace`), so a failing query leaves the previous table; other formats
    /// cannot be replaced in place: the old table is dropped once the new rows are known to
    /// compute (dbt-spark drops first).
    async fn create_table(
        &self,
        rel: &Relation,
        body: &str,
        o: &TableOptions,
    ) -> Result<(), AdapterError> {
        let kind = self.relation_type(rel).await;
        if kind == Some("view") {
            self.run(&format!("drop view if exists {rel}")).await?;
            self.note(rel, None);
            if let Some(file) = self.view_file(rel) {
                let _ = std::fs::remove_file(file);
            }
        }
        let clauses = self.table_clauses(rel, o);
        let format = o.file_format.as_deref().unwrap_or(&self.file_format);
        if format.eq_ignore_ascii_case("delta") {
            self.run(&format!(
                "create or replace table {rel}{clauses} as\n{body}"
            ))
            .await?;
            self.note(rel, Some(false));
            return Ok(());
        }
        if kind == Some("table") {
            // Check that the query plans before the old table goes.
            self.rows(&format!("select * from (\n{body}\n) limit 0"), None)
                .await?;
            self.run(&format!("drop table if exists {rel}")).await?;
            self.note(rel, None);
        }
        self.run(&format!("create table {rel}{clauses} as\n{body}"))
            .await?;
        self.note(rel, Some(false));
        Ok(())
    }

    /// Records in the relation cache that `rel` is now a view (`Some(true)`), a table
    /// (`Some(false)`) or gone (`None`).
    fn note(&self, rel: &Relation, view: Option<bool>) {
        let mut cache = self.relations.lock().unwrap();
        if let Some(schema) = cache.get_mut(&rel.schema.to_lowercase()) {
            let name = rel.identifier.to_lowercase();
            match view {
                Some(v) => schema.insert(name, v),
                None => schema.remove(&name),
            };
        }
    }

    /// Forgets the relation cache: the catalog may have changed in ways this run did not see.
    fn forget_relations(&self) {
        self.relations.lock().unwrap().clear();
    }

    async fn count(&self, sql: &str) -> Result<u64, AdapterError> {
        let (batches, _) = self
            .rows(&format!("select count(*) from ({sql}) as q"), None)
            .await?;
        let rows = to_json(&batches)?;
        Ok(rows
            .first()
            .and_then(|r| r.first())
            .and_then(Json::as_u64)
            .unwrap_or(0))
    }

    async fn columns(&self, rel_or_query: &str) -> Result<Vec<(String, String)>, AdapterError> {
        let (batches, schema) = self
            .rows(&format!("select * from {rel_or_query} limit 0"), None)
            .await?;
        Ok(columns_of(&batches, schema.as_ref()))
    }

    async fn incremental(&self, spec: &IncrementalSpec) -> Result<Applied, AdapterError> {
        let rel = &spec.relation;
        let tmp = quote(&format!("{}__dbt_tmp", rel.identifier));
        let body = spec.sql.trim().trim_end_matches(';');
        self.run(&format!(
            "create or replace temporary view {tmp} as\n{body}"
        ))
        .await?;
        let result = self.merge_from(spec, &tmp).await;
        let _ = self.run(&format!("drop view if exists {tmp}")).await;
        result
    }

    async fn merge_from(&self, spec: &IncrementalSpec, tmp: &str) -> Result<Applied, AdapterError> {
        let rel = &spec.relation;
        let source = self.columns(tmp).await?;
        let existing = self.columns(&rel.render()).await?;
        let has = |cols: &[(String, String)], c: &str| cols.iter().any(|(n, _)| n == c);
        let added: Vec<&(String, String)> =
            source.iter().filter(|(c, _)| !has(&existing, c)).collect();
        let removed: Vec<&String> = existing
            .iter()
            .filter(|(c, _)| !has(&source, c))
            .map(|(c, _)| c)
            .collect();
        if !added.is_empty() || !removed.is_empty() {
            match spec.on_schema_change {
                SchemaChange::Fail => {
                    let added: Vec<&String> = added.iter().map(|(c, _)| c).collect();
                    return Err(AdapterError(format!(
                        "The source and target schemas on this incremental model are out of sync: new columns {added:?}, missing columns {removed:?}. Set on_schema_change (append_new_columns, sync_all_columns) or run with --full-refresh"
                    )));
                }
                SchemaChange::AppendNewColumns | SchemaChange::SyncAllColumns => {
                    // Sail 0.7 alters no table; Spark drops columns of v2 tables (Delta) only.
                    let cannot = |e: AdapterError| {
                        AdapterError(format!(
                            "{}: the server cannot change the table's columns as on_schema_change asks ({}); rebuild it with --full-refresh",
                            e.0,
                            if spec.on_schema_change == SchemaChange::SyncAllColumns {
                                "sync_all_columns"
                            } else {
                                "append_new_columns"
                            }
                        ))
                    };
                    if !added.is_empty() {
                        let defs: Vec<String> = added
                            .iter()
                            .map(|(c, t)| format!("{} {t}", quote(c)))
                            .collect();
                        self.run(&format!(
                            "alter table {rel} add columns ({})",
                            defs.join(", ")
                        ))
                        .await
                        .map_err(cannot)?;
                    }
                    if spec.on_schema_change == SchemaChange::SyncAllColumns && !removed.is_empty()
                    {
                        self.run(&format!(
                            "alter table {rel} drop columns ({})",
                            idents(&removed)
                        ))
                        .await
                        .map_err(cannot)?;
                    }
                }
                SchemaChange::Ignore => {}
            }
        }
        // The table's columns in its order; those the query lacks are NULL.
        let target: Vec<String> = match spec.on_schema_change {
            SchemaChange::SyncAllColumns => source.iter().map(|(c, _)| c.clone()).collect(),
            SchemaChange::AppendNewColumns => existing
                .iter()
                .map(|(c, _)| c.clone())
                .chain(added.iter().map(|(c, _)| c.clone()))
                .collect(),
            _ => existing.iter().map(|(c, _)| c.clone()).collect(),
        };
        let select: Vec<String> = target
            .iter()
            .map(|c| {
                if has(&source, c) {
                    quote(c)
                } else {
                    format!("null as {}", quote(c))
                }
            })
            .collect();
        let select = select.join(", ");
        let rows = self.count(&format!("select * from {tmp}")).await?;
        let strategy = if spec.strategy == Strategy::Merge && spec.unique_key.is_empty() {
            Strategy::Append
        } else {
            spec.strategy
        };
        let extra: String = spec
            .predicates
            .iter()
            .map(|p| format!(" and ({p})"))
            .collect();
        let code = match strategy {
            Strategy::Append => {
                if rows > 0 {
                    self.run(&format!("insert into {rel} select {select} from {tmp}"))
                        .await?;
                }
                "INSERT"
            }
            Strategy::Merge => {
                if rows > 0 {
                    let in_both: Vec<&String> = target.iter().filter(|c| has(&source, c)).collect();
                    let update: Vec<String> = in_both
                        .iter()
                        .filter(|c| match &spec.merge_update_columns {
                            Some(u) => u.contains(c),
                            None => !spec.merge_exclude_columns.contains(c),
                        })
                        .map(|c| {
                            format!(
                                "DBT_INTERNAL_DEST.{q} = DBT_INTERNAL_SOURCE.{q}",
                                q = quote(c)
                            )
                        })
                        .collect();
                    let matched = if update.is_empty() {
                        String::new()
                    } else {
                        format!("\nwhen matched then update set {}", update.join(", "))
                    };
                    let values: Vec<String> = in_both
                        .iter()
                        .map(|c| format!("DBT_INTERNAL_SOURCE.{}", quote(c)))
                        .collect();
                    self.run(&format!(
                        "merge into {rel} as DBT_INTERNAL_DEST\nusing {tmp} as DBT_INTERNAL_SOURCE\non {}{extra}{matched}\nwhen not matched then insert ({}) values ({})",
                        matching(&spec.unique_key, "="),
                        idents(&in_both),
                        values.join(", ")
                    ))
                    .await?;
                }
                "MERGE"
            }
            Strategy::InsertOverwrite
                if !spec.partition_by.is_empty()
                    && !self.row_level(spec.file_format.as_deref()) =>
            {
                // Files without row-level changes: Spark's dynamic partition overwrite replaces
                // the partitions the new rows fall in (as dbt-spark does).
                if rows > 0 {
                    self.run("set spark.sql.sources.partitionOverwriteMode=dynamic")
                        .await?;
                    self.run(&format!(
                        "insert overwrite table {rel} partition ({}) select {select} from {tmp}",
                        idents(&spec.partition_by)
                    ))
                    .await?;
                }
                "INSERT OVERWRITE"
            }
            Strategy::InsertOverwrite if !spec.partition_by.is_empty() => {
                // The partitions the new rows fall in are replaced, the others kept: a
                // delete-only merge over the distinct partition values, then the insert
                // (Sail 0.7 overwrites the whole table whatever
                // spark.sql.sources.partitionOverwriteMode says).
                if rows > 0 {
                    let parts = idents(&spec.partition_by);
                    self.delete_matching(
                        rel,
                        &format!("(select distinct {parts} from {tmp})"),
                        &matching(&spec.partition_by, "<=>"),
                    )
                    .await?;
                    self.run(&format!("insert into {rel} select {select} from {tmp}"))
                        .await?;
                }
                "INSERT OVERWRITE"
            }
            Strategy::InsertOverwrite => {
                // Without `partition_by` the whole table, as dbt-spark.
                self.run(&format!(
                    "insert overwrite table {rel} select {select} from {tmp}"
                ))
                .await?;
                "INSERT OVERWRITE"
            }
            Strategy::Microbatch => {
                let window = spec.replace_where.as_deref().unwrap_or("false");
                self.run(&format!(
                    "insert into {rel} replace where {window} select {select} from {tmp}"
                ))
                .await?;
                "MICROBATCH"
            }
            Strategy::DeleteInsert => {
                if rows > 0 {
                    self.delete_matching(
                        rel,
                        tmp,
                        &format!("{}{extra}", matching(&spec.unique_key, "=")),
                    )
                    .await?;
                    self.run(&format!("insert into {rel} select {select} from {tmp}"))
                        .await?;
                }
                "DELETE+INSERT"
            }
        };
        Ok(Applied {
            code: code.into(),
            rows_affected: Some(rows),
        })
    }

    /// Deletes the rows of `rel` that match a row of `source` on `on`: a merge that only
    /// deletes, since `delete … where (keys) in (select …)` is not planned by every server
    /// (Sail 0.7).
    async fn delete_matching(
        &self,
        rel: &Relation,
        source: &str,
        on: &str,
    ) -> Result<(), AdapterError> {
        self.run(&format!(
            "merge into {rel} as DBT_INTERNAL_DEST\nusing {source} as DBT_INTERNAL_SOURCE\non {on}\nwhen matched then delete"
        ))
        .await
    }

    /// Sends the seed's rows as Arrow (read and typed by the embedded target's seed reader)
    /// in local relations, then builds the table from them in one statement.
    async fn load_seed(
        &self,
        rel: &Relation,
        seed: &crate::materialize::SeedSpec,
        o: &TableOptions,
    ) -> Result<Applied, AdapterError> {
        let ctx = datafusion::prelude::SessionContext::new();
        let df = crate::adapter::datafusion::seed::read(&ctx, seed)?;
        let batches = df
            .collect()
            .await
            .map_err(err)?
            .into_iter()
            .map(spark_types)
            .collect::<Result<Vec<_>, _>>()?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let schema = batches
            .first()
            .map(|b| b.schema())
            .ok_or_else(|| AdapterError(format!("{}: no rows were read", seed.display_path)))?;
        // Chunks under the gRPC message limit, each a temporary view.
        let mut views = Vec::new();
        let mut chunk: Vec<RecordBatch> = Vec::new();
        let mut size = 0;
        let flush = async |chunk: &mut Vec<RecordBatch>, views: &mut Vec<String>| {
            let name = format!("{}__dbt_seed_{}", rel.identifier, views.len());
            let data = encode_ipc(&schema, chunk)?;
            self.execute(pb::plan::OpType::Command(pb::Command {
                command_type: Some(pb::command::CommandType::CreateDataframeView(
                    pb::CreateDataFrameViewCommand {
                        input: Some(pb::Relation {
                            common: None,
                            rel_type: Some(pb::relation::RelType::LocalRelation(
                                pb::LocalRelation {
                                    data: Some(data.into()),
                                    schema: None,
                                },
                            )),
                        }),
                        name: name.clone(),
                        is_global: false,
                        replace: true,
                    },
                )),
            }))
            .await?;
            views.push(name);
            chunk.clear();
            Ok::<(), AdapterError>(())
        };
        for batch in batches {
            size += batch.get_array_memory_size();
            chunk.push(batch);
            if size >= SEED_CHUNK_BYTES {
                flush(&mut chunk, &mut views).await?;
                size = 0;
            }
        }
        if !chunk.is_empty() || views.is_empty() {
            flush(&mut chunk, &mut views).await?;
        }
        let body = views
            .iter()
            .map(|v| format!("select * from {}", quote(v)))
            .collect::<Vec<_>>()
            .join("\nunion all\n");
        let result = self.create_table(rel, &body, o).await;
        for v in &views {
            let _ = self.run(&format!("drop view if exists {}", quote(v))).await;
        }
        result?;
        Ok(Applied {
            code: "INSERT".into(),
            rows_affected: Some(rows as u64),
        })
    }
}

/// Spark's timestamps are microseconds: a seed's seconds or nanoseconds are cast (Delta on the
/// server refuses the others).
fn spark_types(batch: RecordBatch) -> Result<RecordBatch, AdapterError> {
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Timestamp(u, _) if *u != TimeUnit::Microsecond))
    {
        return Ok(batch);
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, col) in schema.fields().iter().zip(batch.columns()) {
        let ty = match f.data_type() {
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            other => other.clone(),
        };
        columns.push(datafusion::arrow::compute::cast(col, &ty).map_err(err)?);
        fields.push(Field::new(f.name(), ty, f.is_nullable()));
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns).map_err(err)
}

/// Where a table lives under `location_root`: `<root>/<schema>/<identifier>` (dbt-spark puts
/// it at `<root>/<identifier>`, which two schemas' models of one name would share). It is the
/// embedded target's own layout, so either can read the other's Delta tables.
fn table_location(root: &str, rel: &Relation) -> String {
    format!(
        "{}/{}/{}",
        root.trim_end_matches('/'),
        rel.schema,
        rel.identifier
    )
}

/// `DBT_INTERNAL_SOURCE.k <op> DBT_INTERNAL_DEST.k and …` over the columns.
fn matching(cols: &[String], op: &str) -> String {
    cols.iter()
        .map(|k| {
            format!(
                "DBT_INTERNAL_SOURCE.{q} {op} DBT_INTERNAL_DEST.{q}",
                q = quote(k)
            )
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

fn idents<S: AsRef<str>>(cols: &[S]) -> String {
    cols.iter()
        .map(|c| quote(c.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statements of a hook, split at `;` outside quotes and comments (Spark runs one per call).
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                cur.push(c);
                while let Some(d) = chars.next() {
                    cur.push(d);
                    if d == '\\' && c != '`' {
                        if let Some(e) = chars.next() {
                            cur.push(e);
                        }
                    } else if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        cur.push(d);
                        break;
                    }
                }
            }
            ';' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The first word of a statement, lowercased, past comments and parentheses.
fn first_keyword(sql: &str) -> String {
    let mut s = sql.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("--") {
            s = rest
                .split_once('\n')
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest
                .split_once("*/")
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else {
            break;
        }
    }
    if s.starts_with('(') {
        return "(".into();
    }
    s.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn decode_ipc(data: &[u8]) -> Result<Vec<RecordBatch>, AdapterError> {
    let reader =
        datafusion::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(data), None)
            .map_err(err)?;
    reader.collect::<Result<Vec<_>, _>>().map_err(err)
}

fn encode_ipc(
    schema: &datafusion::arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, AdapterError> {
    let mut buf = Vec::new();
    {
        let mut w =
            datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut buf, schema).map_err(err)?;
        for b in batches {
            w.write(b).map_err(err)?;
        }
        w.finish().map_err(err)?;
    }
    Ok(buf)
}

/// Spark's name of an Arrow type (what `describe` shows; `adapter.get_columns_in_relation`).
fn spark_type(t: &DataType) -> String {
    match t {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::UInt8 => "tinyint".into(),
        DataType::Int16 | DataType::UInt16 => "smallint".into(),
        DataType::Int32 | DataType::UInt32 => "int".into(),
        DataType::Int64 | DataType::UInt64 => "bigint".into(),
        DataType::Float16 | DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp".into(),
        DataType::Timestamp(_, None) => "timestamp_ntz".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::Null => "void".into(),
        DataType::List(f) | DataType::LargeList(f) => {
            format!("array<{}>", spark_type(f.data_type()))
        }
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}:{}", f.name(), spark_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string().to_ascii_lowercase(),
    }
}

/// Column names and Spark types of a result: from its batches, or from the schema the server
/// sent when no batch came.
fn columns_of(batches: &[RecordBatch], schema: Option<&pb::DataType>) -> Vec<(String, String)> {
    arrow_schema(batches, schema)
        .fields()
        .iter()
        .map(|f| (f.name().clone(), spark_type(f.data_type())))
        .collect()
}

/// The Arrow schema of a result: its batches', or the one the server sent when no batch came.
fn arrow_schema(batches: &[RecordBatch], schema: Option<&pb::DataType>) -> SchemaRef {
    use datafusion::arrow::datatypes::{Field, Schema};
    if let Some(b) = batches.first() {
        return b.schema();
    }
    let Some(pb::data_type::Kind::Struct(st)) = schema.and_then(|s| s.kind.as_ref()) else {
        return std::sync::Arc::new(Schema::empty());
    };
    let fields: Vec<Field> = st
        .fields
        .iter()
        .map(|f| {
            let ty = f
                .data_type
                .as_ref()
                .and_then(|d| d.kind.as_ref())
                .map_or(DataType::Utf8, arrow_type);
            Field::new(&f.name, ty, f.nullable)
        })
        .collect();
    std::sync::Arc::new(Schema::new(fields))
}

/// The Arrow type of a Spark type as the protocol describes it (what has no Arrow counterpart
/// here reads as a string).
fn arrow_type(k: &pb::data_type::Kind) -> DataType {
    use datafusion::arrow::datatypes::TimeUnit;
    use pb::data_type::Kind;
    match k {
        Kind::Boolean(_) => DataType::Boolean,
        Kind::Byte(_) => DataType::Int8,
        Kind::Short(_) => DataType::Int16,
        Kind::Integer(_) => DataType::Int32,
        Kind::Long(_) => DataType::Int64,
        Kind::Float(_) => DataType::Float32,
        Kind::Double(_) => DataType::Float64,
        Kind::Date(_) => DataType::Date32,
        Kind::Timestamp(_) => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::TimestampNtz(_) => DataType::Timestamp(TimeUnit::Microsecond, None),
        Kind::Binary(_) => DataType::Binary,
        Kind::Decimal(d) => DataType::Decimal128(
            d.precision.unwrap_or(10).clamp(1, 38) as u8,
            d.scale.unwrap_or(0).clamp(0, 38) as i8,
        ),
        _ => DataType::Utf8,
    }
}

fn to_json(batches: &[RecordBatch]) -> Result<Vec<Vec<Json>>, AdapterError> {
    let columns: Vec<String> = columns_of(batches, None)
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    crate::adapter::datafusion::rows_as_json(batches, &columns).map_err(err)
}

impl Adapter for SparkAdapter {
    fn kind(&self) -> &'static str {
        "spark"
    }

    async fn apply(&self, op: &Operation) -> Result<Applied, AdapterError> {
        match op {
            Operation::CreateTableAs { relation, .. }
            | Operation::CreateView { relation, .. }
            | Operation::LoadSeed { relation, .. } => self.ensure_schema(&relation.schema).await?,
            _ => {}
        }
        match op {
            Operation::CreateTableAs {
                relation,
                sql,
                options,
                ..
            } => {
                self.create_table(relation, sql.trim().trim_end_matches(';'), options)
                    .await?;
                Ok(Applied {
                    code: "OK".into(),
                    rows_affected: None,
                })
            }
            Operation::CreateView { relation, sql } => {
                if self.relation_type(relation).await == Some("table") {
                    self.run(&format!("drop table if exists {relation}"))
                        .await?;
                }
                let body = sql.trim().trim_end_matches(';');
                self.run(&format!("create or replace view {relation} as\n{body}"))
                    .await?;
                self.note(relation, Some(true));
                if let Some(file) = self.view_file(relation) {
                    std::fs::create_dir_all(file.parent().expect("a folder"))
                        .and_then(|_| std::fs::write(&file, body))
                        .map_err(|e| AdapterError(format!("{}: {e}", file.display())))?;
                }
                Ok(Applied {
                    code: "OK".into(),
                    rows_affected: None,
                })
            }
            Operation::LoadSeed {
                relation,
                seed,
                options,
                ..
            } => self.load_seed(relation, seed, options).await,
            Operation::Incremental(spec) => self.incremental(spec).await,
            Operation::RunSql { sql } => {
                self.forget_relations();
                // Spark runs one statement per call.
                for stmt in statements(sql) {
                    self.run(&stmt).await?;
                }
                Ok(Applied {
                    code: "OK".into(),
                    rows_affected: None,
                })
            }
            Operation::Publish { relation, .. } => Err(AdapterError(format!(
                "{relation}: `publish:` copies a model of the embedded target into PostgreSQL; on a Spark target, write it from the cluster instead"
            ))),
            Operation::Grant { relation, grants } => {
                for (privilege, who) in grants {
                    for grantee in who {
                        self.run(&format!(
                            "grant {privilege} on table {relation} to `{grantee}`"
                        ))
                        .await?;
                    }
                }
                Ok(Applied {
                    code: "GRANT".into(),
                    rows_affected: None,
                })
            }
            Operation::Comment {
                relation,
                view,
                relation_comment,
                columns,
            } => {
                let literal =
                    |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
                if let Some(text) = relation_comment {
                    let kind = if *view { "view" } else { "table" };
                    self.run(&format!(
                        "alter {kind} {relation} set tblproperties ('comment' = {})",
                        literal(text)
                    ))
                    .await?;
                }
                if !*view {
                    let existing = self.columns(&relation.render()).await?;
                    for (col, text) in columns {
                        if existing.iter().any(|(c, _)| c == col) {
                            self.run(&format!(
                                "alter table {relation} alter column {} comment {}",
                                quote(col),
                                literal(text)
                            ))
                            .await?;
                        }
                    }
                }
                Ok(Applied {
                    code: "COMMENT".into(),
                    rows_affected: None,
                })
            }
        }
    }

    async fn query(&self, sql: &str, limit: Option<usize>) -> Result<QueryResult, AdapterError> {
        let sql = sql.trim().trim_end_matches(';');
        // `run_query` of a statement may create or drop anything.
        if !matches!(
            first_keyword(sql).as_str(),
            "select" | "with" | "values" | "(" | "from" | "describe" | "desc" | "show" | "set"
        ) {
            self.forget_relations();
        }
        let (batches, schema) = self.rows(sql, limit).await?;
        let cols = columns_of(&batches, schema.as_ref());
        let columns: Vec<String> = cols.iter().map(|(c, _)| c.clone()).collect();
        let rows = crate::adapter::datafusion::rows_as_json(&batches, &columns).map_err(err)?;
        Ok(QueryResult {
            columns,
            types: cols.into_iter().map(|(_, t)| t).collect(),
            rows,
        })
    }

    async fn relation_type(&self, relation: &Relation) -> Option<&'static str> {
        self.registered
            .get_or_init(|| Box::pin(self.register_tables()))
            .await;
        let schema = relation.schema.to_lowercase();
        let name = relation.identifier.to_lowercase();
        let cached = self
            .relations
            .lock()
            .unwrap()
            .get(&schema)
            .map(|s| s.get(&name).copied());
        let view = match cached {
            Some(view) => view,
            None => {
                let listed: std::collections::HashMap<String, bool> = self
                    .tables_in(&relation.schema)
                    .await
                    .into_iter()
                    .map(|(n, v)| (n.to_lowercase(), v))
                    .collect();
                let view = listed.get(&name).copied();
                self.relations.lock().unwrap().insert(schema, listed);
                view
            }
        }?;
        Some(if view { "view" } else { "table" })
    }

    /// Sail 0.7's workers lack `md5` (and `sha2`) in its local-cluster mode ("no UDF found for
    /// md5" when a write runs there): on Sail the id is two xxhash64s in hex (`lower` and
    /// `lpad` are missing there too).
    fn hash_sql(&self) -> &'static str {
        if self.is_sail() {
            "concat(hex(xxhash64({})), hex(xxhash64(concat('#', {}))))"
        } else {
            "md5({})"
        }
    }

    async fn check(&self) -> Result<String, AdapterError> {
        let server = if self.is_sail() { "Sail" } else { "Spark" };
        Ok(format!(
            "Spark Connect at {} ({server} {})",
            self.endpoint, self.version
        ))
    }
}

impl SparkAdapter {
    /// The tables and views of a schema as the server's catalog lists them (as pyspark's
    /// `spark.catalog.listTables`): (name, whether it is a view).
    async fn tables_in(&self, schema: &str) -> Vec<(String, bool)> {
        let list = pb::Relation {
            common: None,
            rel_type: Some(pb::relation::RelType::Catalog(pb::Catalog {
                cat_type: Some(pb::catalog::CatType::ListTables(pb::ListTables {
                    db_name: Some(schema.to_string()),
                    pattern: None,
                })),
            })),
        };
        let Ok(out) = self.send(pb::plan::OpType::Root(list)).await else {
            return vec![];
        };
        let Ok(rows) = to_json(&out.batches) else {
            return vec![];
        };
        let names = columns_of(&out.batches, None);
        let col = |n: &str| names.iter().position(|(c, _)| c.eq_ignore_ascii_case(n));
        // pyspark's column is `name`, Sail's `tableName`.
        let (Some(name), Some(kind)) = (col("name").or(col("tableName")), col("tableType")) else {
            return vec![];
        };
        rows.iter()
            .filter_map(|r| {
                let n = r.get(name)?.as_str()?.to_string();
                let view = r
                    .get(kind)
                    .and_then(Json::as_str)
                    .is_some_and(|k| k.eq_ignore_ascii_case("view"));
                Some((n, view))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_split_into_statements() {
        assert_eq!(
            statements("insert into t values ('a;b'); -- c;d\nselect 1;\n"),
            vec!["insert into t values ('a;b')", "select 1"]
        );
    }

    #[test]
    fn statements_are_told_from_queries() {
        assert_eq!(first_keyword("-- hi\n/* x */ SELECT 1"), "select");
        assert_eq!(first_keyword("(select 1)"), "(");
        assert_eq!(first_keyword("  show tables"), "show");
        assert_eq!(first_keyword("create table x as select 1"), "create");
    }
}
