//! The embedded engine: DataFusion over a warehouse folder of Delta and Iceberg tables and
//! persisted views.

mod external;
mod functions;
mod iceberg;
mod incremental;
mod json;
mod kafka;
mod kinesis;
mod parquet;
#[cfg(feature = "postgres")]
mod pg_source;
mod records;
mod rewrite;
mod s3;
pub(crate) mod seed;
mod statements;
mod store;
pub use store::is_delta_dir;
mod streams;
mod warehouse;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::DeltaTable;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;

use crate::adapter::{Adapter, AdapterError, Applied, QueryResult};
use crate::jinja::Relation;
use crate::materialize::{Operation, TableFormat};
use iceberg::Lake;
pub use kafka::high_watermarks;
pub use s3::configure as configure_object_storage;
#[cfg(test)]
pub(crate) use seed::read as read_seed;
use store::Store;
use warehouse::WarehouseCatalog;

pub struct DataFusionAdapter {
    ctx: SessionContext,
    store: Arc<Store>,
    lake: Arc<Lake>,
    externals: warehouse::Externals,
    database: String,
    schema: String,
    /// The run lock's file while this process holds it (local warehouses).
    run_lock: std::sync::Mutex<Option<std::fs::File>>,
    /// The heartbeat task of the run lock on S3 while this process holds it.
    s3_heartbeat: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

/// Plans SQL against the warehouse and assumed schemas, without running anything.
pub struct Analyzer {
    ctx: SessionContext,
    /// The session's state, copied once: `SessionContext::state()` copies it on every call
    /// (its functions and settings), and nothing changes them while models are planned; the
    /// tables it reads are the shared catalog's.
    state: OnceLock<datafusion::execution::SessionState>,
    planned: warehouse::Planned,
    /// Another database's tables (PostgreSQL's, for its target): looked up by (schema,
    /// table) when the SQL names a table nothing planned yet.
    lookup: Option<SchemaLookup>,
    default_schema: String,
}

/// (schema, table) → the table's columns in another database, if it has the table.
pub type SchemaLookup = Arc<
    dyn Fn(
            String,
            String,
        )
            -> futures::future::BoxFuture<'static, Option<datafusion::arrow::datatypes::SchemaRef>>
        + Send
        + Sync,
>;

impl Analyzer {
    /// The output schema of `sql` and where each of its columns comes from
    /// ([`crate::lineage`]), or the planner's error.
    pub async fn plan_with_lineage(
        &self,
        sql: &str,
    ) -> Result<
        (
            datafusion::arrow::datatypes::SchemaRef,
            Vec<std::collections::BTreeSet<crate::lineage::Origin>>,
        ),
        String,
    > {
        if let Some(lookup) = &self.lookup {
            self.look_up_tables(lookup, sql).await;
        }
        let plan = self
            .state()
            .create_logical_plan(&rewrite::for_engine(sql))
            .await
            .map_err(|e| e.to_string())?;
        let lineage = crate::lineage::columns(&plan);
        Ok((Arc::new(plan.schema().as_arrow().clone()), lineage))
    }

    fn state(&self) -> &datafusion::execution::SessionState {
        self.state.get_or_init(|| self.ctx.state())
    }

    /// Assumes the schemas of the tables `sql` names that nothing planned yet, from the lookup.
    async fn look_up_tables(&self, lookup: &SchemaLookup, sql: &str) {
        let state = self.state();
        let dialect = state.config().options().sql_parser.dialect;
        let Ok(statement) = state.sql_to_statement(sql, &dialect) else {
            return;
        };
        let Ok(tables) = state.resolve_table_references(&statement) else {
            return;
        };
        for t in tables {
            let schema = t.schema().unwrap_or(&self.default_schema).to_string();
            let table = t.table().to_string();
            let known = self
                .planned
                .read()
                .is_ok_and(|p| p.contains_key(&(schema.clone(), table.clone())));
            if !known && let Some(columns) = lookup(schema.clone(), table.clone()).await {
                self.assume(
                    &Relation {
                        database: Default::default(),
                        schema: schema.into(),
                        identifier: table.into(),
                        kind: None,
                        cte_name: None,
                    },
                    columns,
                );
            }
        }
    }

    /// An analyzer for another database's SQL (PostgreSQL's): its tables come from `lookup`
    /// and the models planned, never from a warehouse folder.
    pub fn detached(database: &str, schema: &str, dialect: &str, lookup: SchemaLookup) -> Self {
        let planned = warehouse::Planned::default();
        // A folder that is never created: the catalog finds nothing in it.
        let root = std::env::temp_dir().join(format!("rsdbt-analysis-{}", uuid::Uuid::new_v4()));
        let store = Arc::new(Store::Local(root));
        let ctx = session(
            store.clone(),
            database,
            schema,
            Arc::new(Lake::new(store, None)),
            warehouse::Externals::default(),
            planned.clone(),
            dialect,
            None,
        );
        Analyzer {
            ctx,
            state: OnceLock::new(),
            planned,
            lookup: Some(lookup),
            default_schema: schema.to_string(),
        }
    }

    /// An analyzer for a server target's models (PostgreSQL, Spark): the server's SQL dialect,
    /// its catalog's tables.
    pub fn for_server(
        adapter: Arc<crate::adapter::AnyAdapter>,
        database: &str,
        schema: &str,
    ) -> Self {
        let dialect = match adapter.as_ref() {
            #[cfg(feature = "spark")]
            crate::adapter::AnyAdapter::Spark(_) => "databricks",
            _ => "postgresql",
        };
        let lookup: SchemaLookup = Arc::new(move |schema, table| {
            let adapter = adapter.clone();
            Box::pin(async move {
                match adapter.as_ref() {
                    #[cfg(feature = "postgres")]
                    crate::adapter::AnyAdapter::Postgres(pg) => {
                        pg_source::table_schema(pg, &schema, &table).await
                    }
                    #[cfg(feature = "spark")]
                    crate::adapter::AnyAdapter::Spark(spark) => {
                        spark.table_schema(&schema, &table).await
                    }
                    _ => None,
                }
            })
        });
        Self::detached(database, schema, dialect, lookup)
    }

    /// The columns a seed file will load as.
    pub fn seed_schema(
        &self,
        seed: &crate::materialize::SeedSpec,
    ) -> Result<datafusion::arrow::datatypes::SchemaRef, String> {
        seed::read(&self.ctx, seed)
            .map(|df| Arc::new(df.schema().as_arrow().clone()))
            .map_err(|e| e.0)
    }

    /// From now on `relation` reads as an empty table of `schema`.
    pub fn assume(&self, relation: &Relation, schema: datafusion::arrow::datatypes::SchemaRef) {
        if let Ok(mut p) = self.planned.write() {
            p.insert(
                (relation.schema.to_string(), relation.identifier.to_string()),
                schema,
            );
        }
    }
}

/// A DataFusion session over the warehouse `store` as catalog `database`.
#[allow(clippy::too_many_arguments)]
fn session(
    store: Arc<Store>,
    database: &str,
    schema: &str,
    lake: Arc<Lake>,
    externals: warehouse::Externals,
    planned: warehouse::Planned,
    dialect: &str,
    memory_limit: Option<usize>,
) -> SessionContext {
    let config = SessionConfig::new()
        .set_str("datafusion.sql_parser.dialect", dialect)
        .with_default_catalog_and_schema(database, schema)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true)
        // DataFusion rejects some aggregates over set operations whose logical and physical
        // schemas differ only in nullability ("Physical input schema should be the same as
        // the one converted from logical input schema"); dbt_utils' `equality` writes them.
        .set_bool(
            "datafusion.execution.skip_physical_aggregate_schema_check",
            true,
        )
        // delta-rs: a hash-join dynamic filter panics on dictionary keys without these.
        .set_usize("datafusion.optimizer.hash_join_inlist_pushdown_max_size", 0)
        .set_usize(
            "datafusion.optimizer.hash_join_inlist_pushdown_max_distinct_values",
            0,
        );
    let mut runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new();
    if let Some(limit) = memory_limit {
        // Spillable operators (sorts, aggregates, joins' probe sides) share the pool fairly and
        // spill to the OS temp folder; what cannot spill fails with "Resources exhausted".
        runtime = runtime.with_memory_pool(Arc::new(
            datafusion::execution::memory_pool::FairSpillPool::new(limit),
        ));
    }
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(Arc::new(runtime.build().expect("runtime environment")))
        // Writing a Delta table from a logical plan needs deltalake's planner.
        .with_query_planner(deltalake::delta_datafusion::planner::DeltaPlanner::new())
        .with_optimizer_rules(rewrite::GuardedCse::default_rules())
        .with_optimizer_rule(Arc::new(rewrite::DecorrelateScalarAggregates))
        .with_analyzer_rule(Arc::new(rewrite::PostgresTimestamps))
        .build();
    let ctx = SessionContext::new_with_state(state);
    functions::register(&ctx);
    let cell = Arc::new(OnceLock::new());
    ctx.register_catalog(
        database,
        Arc::new(WarehouseCatalog::new(
            store,
            cell.clone(),
            lake,
            externals,
            planned,
        )),
    );
    let _ = cell.set(ctx.state());
    ctx
}

/// The memory limit of the process's engine, for the message of a query that exceeds it.
static MEMORY_LIMIT: OnceLock<usize> = OnceLock::new();

fn err(e: impl std::fmt::Display) -> AdapterError {
    let msg = e.to_string();
    if msg.contains("Resources exhausted") {
        let limit = MEMORY_LIMIT.get().copied().unwrap_or(0);
        return AdapterError(format!(
            "the query needs more memory than the target's memory_limit ({} MB) allows, even spilling to disk: {msg}\n  raise `memory_limit` in profiles.yml, or make the model read less at once (an incremental model, a narrower select)",
            limit / 1_000_000
        ));
    }
    AdapterError(msg)
}

/// `df` cast to the columns of `target` (for an append): columns the target lacks are dropped,
/// missing ones NULL.
fn conform(
    df: datafusion::dataframe::DataFrame,
    target: &datafusion::arrow::datatypes::Schema,
) -> Result<datafusion::dataframe::DataFrame, AdapterError> {
    use datafusion::logical_expr::{cast, col, lit};
    let exprs: Vec<_> = target
        .fields()
        .iter()
        .map(|f| {
            let value = if df.schema().has_column_with_unqualified_name(f.name()) {
                col(datafusion::common::Column::new_unqualified(f.name()))
            } else {
                lit(datafusion::scalar::ScalarValue::Null)
            };
            cast(value, f.data_type().clone()).alias(f.name())
        })
        .collect();
    df.select(exprs).map_err(err)
}

/// The rows of `df`, each batch under `schema` (equal to the batches' but for nullability).
async fn collect_as(
    df: datafusion::dataframe::DataFrame,
    schema: datafusion::arrow::datatypes::SchemaRef,
) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>, AdapterError> {
    df.collect()
        .await
        .map_err(err)?
        .into_iter()
        .map(|b| {
            datafusion::arrow::record_batch::RecordBatch::try_new(
                schema.clone(),
                b.columns().to_vec(),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)
}

/// `df` with every column nullable (see [`functions::nullable`]), and a column of only NULLs
/// (`select null as x`, which Delta cannot store) as text, as PostgreSQL types it; `df`
/// itself when there is nothing to change.
fn nullable_columns(
    df: datafusion::dataframe::DataFrame,
) -> Result<datafusion::dataframe::DataFrame, AdapterError> {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::Expr;
    let typed = |f: &datafusion::arrow::datatypes::Field| f.data_type() != &DataType::Null;
    if df
        .schema()
        .fields()
        .iter()
        .all(|f| f.is_nullable() && typed(f))
    {
        return Ok(df);
    }
    let udf = functions::nullable();
    let exprs: Vec<Expr> = df
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(datafusion::common::Column::from((qualifier, field)));
            match (field.is_nullable(), typed(field)) {
                (_, false) => {
                    datafusion::logical_expr::cast(column, DataType::Utf8).alias(field.name())
                }
                (true, true) => column,
                (false, true) => udf.call(vec![column]).alias(field.name()),
            }
        })
        .collect();
    df.select(exprs).map_err(err)
}

impl DataFusionAdapter {
    /// The bytes of a Delta table's current data files (its log's add actions), for the
    /// catalog; None for views, Iceberg tables and anything unreadable.
    pub async fn table_bytes(&self, relation: &Relation) -> Option<u64> {
        let (schema, name) = (&relation.schema, &relation.identifier);
        if !self.store.is_delta(schema, name).await {
            return None;
        }
        let table = self.delta_at(schema, name).await.ok()?;
        let files = table.snapshot().ok()?.log_data();
        Some(files.iter().map(|f| f.size().max(0) as u64).sum())
    }

    /// Opens (creating if needed) the warehouse at `location` (a folder or an `s3://` URL) as
    /// catalog `database`, with `schema` as the default schema for unqualified names.
    /// `iceberg_catalog`: the SQLite file of the Iceberg catalog, if not `<warehouse>/iceberg.db`.
    pub fn open(
        location: &str,
        iceberg_catalog: Option<PathBuf>,
        database: &str,
        schema: &str,
        memory_limit: usize,
    ) -> Result<Self, AdapterError> {
        let _ = MEMORY_LIMIT.set(memory_limit);
        let store = Arc::new(Store::open(location).map_err(AdapterError)?);
        let lake = Arc::new(Lake::new(store.clone(), iceberg_catalog));
        let externals = warehouse::Externals::default();
        let ctx = session(
            store.clone(),
            database,
            schema,
            lake.clone(),
            externals.clone(),
            Default::default(),
            "generic",
            Some(memory_limit),
        );
        Ok(Self {
            ctx,
            store,
            lake,
            externals,
            database: database.to_string(),
            schema: schema.to_string(),
            run_lock: Default::default(),
            s3_heartbeat: Default::default(),
        })
    }

    /// Fails unless the warehouse can be reached (a bucket that is not there, an endpoint
    /// that does not answer, refused credentials).
    pub async fn reachable(&self) -> Result<(), AdapterError> {
        self.store.reachable().await.map_err(AdapterError)
    }

    /// A session for static analysis: it sees the warehouse as it is, except for the
    /// relations [`Analyzer::assume`] gives a schema (the models this run will rebuild).
    pub fn analyzer(&self) -> Analyzer {
        let planned = warehouse::Planned::default();
        Analyzer {
            ctx: session(
                self.store.clone(),
                &self.database,
                &self.schema,
                self.lake.clone(),
                self.externals.clone(),
                planned.clone(),
                "generic",
                None,
            ),
            state: OnceLock::new(),
            planned,
            lookup: None,
            default_schema: self.schema.clone(),
        }
    }

    /// Makes the project's external sources (files, Delta and Iceberg tables by location)
    /// readable under the relations `source()` renders.
    /// `connections`: the target's `connections:` (name → PostgreSQL settings);
    /// `catalogs`: its `iceberg_catalogs:` (name → SQL catalog settings).
    pub fn register_external(
        &self,
        sources: Vec<crate::adapter::external::ExternalSource>,
        connections: serde_json::Map<String, serde_json::Value>,
        catalogs: serde_json::Map<String, serde_json::Value>,
    ) {
        if let Ok(mut e) = self.externals.sources.write() {
            *e = sources;
        }
        self.externals.iceberg_catalogs.set(catalogs);
        #[cfg(feature = "postgres")]
        self.externals.connections.set(connections);
        #[cfg(not(feature = "postgres"))]
        let _ = connections;
    }

    /// Checks that the stream sources among `unique_ids` can be read (their broker answers,
    /// their topic exists), before a run starts: (source, what is wrong) of each that cannot.
    pub async fn check_streams(&self, unique_ids: &[&str]) -> Vec<(String, String)> {
        let streams: Vec<_> = self
            .externals
            .sources
            .read()
            .map(|e| {
                e.iter()
                    .filter(|s| unique_ids.contains(&s.unique_id.as_str()))
                    .filter(|s| s.kafka.is_some() || s.kinesis.is_some())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut failed = Vec::new();
        for s in streams {
            let reachable = match (&s.kafka, &s.kinesis) {
                (Some(k), _) => kafka::partitions(k).await.map(drop),
                (_, Some(k)) => match kinesis::Client::new(k) {
                    Ok(c) => c.shards().await.map(drop),
                    Err(e) => Err(e),
                },
                _ => Ok(()),
            };
            if let Err(e) = reachable {
                failed.push((s.unique_id, e));
            }
        }
        failed
    }

    /// Writes `df`'s rows as the new version of the table of `rel` in `format`; what stood
    /// under that name before (a view, a table in the other format) goes once it is written.
    async fn write_table(
        &self,
        rel: &Relation,
        df: datafusion::dataframe::DataFrame,
        format: TableFormat,
    ) -> Result<u64, AdapterError> {
        let (schema, name) = (rel.schema.as_str(), rel.identifier.as_str());
        let rows = match format {
            TableFormat::Delta => self.write_delta(rel, df).await?,
            TableFormat::Iceberg => self.lake.replace(schema, name, df).await?,
            TableFormat::Parquet => {
                parquet::replace(&self.ctx, &self.store, schema, name, df).await?
            }
        };
        self.remove_others(rel, Some(format)).await?;
        Ok(rows)
    }

    /// Removes what stood under `rel`'s name in another form than the one just written
    /// (`kept`; None: a view).
    async fn remove_others(
        &self,
        rel: &Relation,
        kept: Option<TableFormat>,
    ) -> Result<(), AdapterError> {
        let (schema, name) = (rel.schema.as_str(), rel.identifier.as_str());
        if kept.is_some() {
            self.store.delete_view(schema, name).await.map_err(err)?;
        }
        if kept != Some(TableFormat::Delta) && self.store.is_delta(schema, name).await {
            self.store.delete(&[schema, name]).await.map_err(err)?;
        }
        if kept != Some(TableFormat::Iceberg) {
            self.lake.remove(schema, name).await?;
        }
        if kept != Some(TableFormat::Parquet) {
            self.store
                .delete(&[schema, &parquet::dir_name(name)])
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    /// Writes `df`'s rows as the new version of the Delta table of `rel` (one commit).
    async fn write_delta(
        &self,
        rel: &Relation,
        df: datafusion::dataframe::DataFrame,
    ) -> Result<u64, AdapterError> {
        let (schema, name) = (rel.schema.as_str(), rel.identifier.as_str());
        if !self.store.is_delta(schema, name).await {
            // A first write killed before its commit left a folder (a log without a commit,
            // data files nothing refers to): none of it is a table, and the commit's temporary
            // file would stay in the new table's log.
            self.store.delete(&[schema, name]).await.map_err(err)?;
        }
        let table = match self.write_delta_at(schema, name, &df).await {
            Ok(t) => t,
            // deltalake 0.32 cannot overwrite a table with a schema that lacks some of its
            // columns. Then the new table is written beside it and put in its place: the old
            // table stays whole until the new one is complete (its history goes with it).
            Err(e) if e.0.contains("No field named") && self.store.is_delta(schema, name).await => {
                let tmp = format!(".{name}.rsdbt_tmp");
                self.store.delete(&[schema, &tmp]).await.map_err(err)?;
                if let Err(e) = self.write_delta_at(schema, &tmp, &df).await {
                    let _ = self.store.delete(&[schema, &tmp]).await;
                    return Err(e);
                }
                self.store
                    .replace_dir(schema, &tmp, name)
                    .await
                    .map_err(err)?;
                let url = self.store.delta_uri(schema, name).map_err(err)?;
                deltalake::open_table(url).await.map_err(err)?
            }
            Err(e) => {
                self.store.remove_if_empty(&[schema, name]);
                return Err(e);
            }
        };
        warehouse::remember_delta(&self.store, schema, name, &table).await;
        let rows = table
            .history(Some(1))
            .await
            .ok()
            .and_then(|mut h| h.next())
            .and_then(|c| {
                c.info
                    .get("operationMetrics")
                    .and_then(|m| m.get("num_added_rows"))
                    .and_then(|n| n.as_u64())
            });
        Ok(rows.unwrap_or(0))
    }

    /// Writes `df`'s rows as the new version of the Delta table `schema.name` (one commit).
    async fn write_delta_at(
        &self,
        schema: &str,
        name: &str,
        df: &datafusion::dataframe::DataFrame,
    ) -> Result<DeltaTable, AdapterError> {
        self.store.prepare(&[schema, name]).map_err(err)?;
        let table = self.delta_at(schema, name).await?;
        let df = &nullable_columns(df.clone())?;
        // Optimized here: the writer wraps the plan in its own node, which DataFusion's
        // projection pushdown does not see through, so the inputs would be read whole.
        let plan = self.ctx.state().optimize(df.logical_plan()).map_err(err)?;
        let streamed = table
            .write(Vec::new())
            .with_input_plan(plan)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .with_session_state(Arc::new(self.ctx.state()))
            .with_commit_properties(streams::commit_properties())
            .await;
        let table = match streamed {
            Ok(t) => t,
            // UNION ALL branches can yield batches whose nullability differs from the plan's
            // schema, which the Delta writer rejects before committing anything. Then the rows
            // are collected and written under the plan's schema.
            Err(e) if e.to_string().contains("Unexpected Arrow schema") => {
                let columns = Arc::new(df.schema().as_arrow().clone());
                let batches = collect_as(df.clone(), columns).await?;
                self.delta_at(schema, name)
                    .await?
                    .write(batches)
                    .with_save_mode(SaveMode::Overwrite)
                    .with_schema_mode(SchemaMode::Overwrite)
                    .with_session_state(Arc::new(self.ctx.state()))
                    .with_commit_properties(streams::commit_properties())
                    .await
                    .map_err(err)?
            }
            Err(e) => return Err(err(e)),
        };
        Ok(table)
    }

    /// The Delta table of `rel` as of its newest commit, to write the next one
    /// ([`warehouse::current_delta`]: not opened again when this process has it already).
    async fn delta(&self, rel: &Relation) -> Result<DeltaTable, AdapterError> {
        self.delta_at(&rel.schema, &rel.identifier).await
    }

    async fn delta_at(&self, schema: &str, name: &str) -> Result<DeltaTable, AdapterError> {
        let (table, _) = warehouse::current_delta(&self.store, schema, name)
            .await
            .map_err(err)?;
        Ok(table)
    }

    /// Keeps `table`, just committed to `rel`, for the reads and writes that follow.
    async fn committed(&self, rel: &Relation, table: &DeltaTable) {
        warehouse::remember_delta(&self.store, &rel.schema, &rel.identifier, table).await;
    }

    /// Copies the rows of `rel` into table `schema.table` of PostgreSQL connection
    /// `connection` (binary COPY into a new table swapped in by one transaction).
    async fn publish(
        &self,
        rel: &Relation,
        connection: &str,
        schema: &str,
        table: &str,
    ) -> Result<Applied, AdapterError> {
        #[cfg(feature = "postgres")]
        {
            let pg = self
                .externals
                .connections
                .get(connection)
                .await
                .map_err(|e| AdapterError(format!("cannot publish: {e}")))?;
            let df = self
                .ctx
                .sql(&format!("select * from {}", rel.render()))
                .await
                .map_err(err)?;
            let arrow_schema = Arc::new(df.schema().as_arrow().clone());
            let stream = df.execute_stream().await.map_err(err)?;
            let target = Relation::new("", schema, table);
            let rows = pg
                .publish(&target, arrow_schema, stream)
                .await
                .map_err(|e| {
                    AdapterError(format!(
                        "publishing to {schema}.{table} on connection '{connection}' failed (the table there is unchanged): {}",
                        e.0
                    ))
                })?;
            Ok(Applied {
                code: "PUBLISH".into(),
                rows_affected: Some(rows),
            })
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = (rel, schema, table);
            Err(AdapterError(format!(
                "cannot publish to connection '{connection}': this build of rsdbt has no PostgreSQL support"
            )))
        }
    }

    /// The rows of query `sql` (already rewritten for the engine), at most `limit`.
    async fn select(&self, sql: &str, limit: Option<usize>) -> Result<QueryResult, AdapterError> {
        let mut df = self.ctx.sql(sql).await.map_err(err)?;
        if let Some(n) = limit {
            df = df.limit(0, Some(n)).map_err(err)?;
        }
        let columns = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let types = df
            .schema()
            .fields()
            .iter()
            .map(|f| sql_type_name(f.data_type()))
            .collect();
        let batches = df.collect().await.map_err(err)?;
        let columns: Vec<String> = columns;
        let rows = rows_as_json(&batches, &columns).map_err(err)?;
        Ok(QueryResult {
            columns,
            types,
            rows,
        })
    }

    async fn create_view(&self, rel: &Relation, sql: &str) -> Result<(), AdapterError> {
        // Plan first: a view that does not plan is an error now, not at its first read.
        self.ctx
            .state()
            .create_logical_plan(&rewrite::for_engine(sql))
            .await
            .map_err(err)?;
        self.store
            .write_view(&rel.schema, &rel.identifier, sql)
            .await
            .map_err(err)?;
        self.remove_others(rel, None).await
    }
}

impl Adapter for DataFusionAdapter {
    fn kind(&self) -> &'static str {
        "datafusion"
    }

    async fn apply(&self, op: &Operation) -> Result<Applied, AdapterError> {
        let built = match op {
            Operation::CreateTableAs { relation, .. } | Operation::LoadSeed { relation, .. } => {
                Some(relation)
            }
            Operation::Incremental(spec) => Some(&spec.relation),
            _ => None,
        };
        let started = std::time::SystemTime::now();
        let applied = match self.apply_op(op).await {
            Ok(a) => a,
            Err(e) => {
                if let Some(rel) = built {
                    self.sweep_failed_write(rel, started).await;
                    if e.0.contains("No space left on device") {
                        return Err(AdapterError(format!(
                            "{}\n  The disk of the warehouse is full: {} keeps its previous version. Free some space and run again.",
                            e.0,
                            rel.render()
                        )));
                    }
                }
                return Err(e);
            }
        };
        if let Some(rel) = built {
            self.checkpoint_now_and_then(rel).await;
        }
        Ok(applied)
    }

    async fn query(&self, sql: &str, limit: Option<usize>) -> Result<QueryResult, AdapterError> {
        statements::run(self, sql, limit).await
    }

    async fn relation_type(&self, relation: &Relation) -> Option<&'static str> {
        let (schema, name) = (&relation.schema, &relation.identifier);
        if statements::temporary(self, relation).is_some()
            || self.store.is_delta(schema, name).await
            || self.lake.exists(schema, name).await
            || self.store.is_parquet(schema, name).await
        {
            Some("table")
        } else if let Ok(Some(_)) = self.store.read_view(schema, name).await {
            Some("view")
        } else {
            None
        }
    }

    async fn try_lock(
        &self,
        holder: &crate::adapter::Holder,
    ) -> Result<crate::adapter::Locked, AdapterError> {
        let Some(root) = self.store.local_root() else {
            let (outcome, version) = store::lock_s3(&self.store, holder)
                .await
                .map_err(AdapterError)?;
            if let Some(mut ours) = version {
                // The heartbeat that keeps the lock ours while the run lasts.
                let (store, holder) = (self.store.clone(), holder.clone());
                let beat = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(store::S3_LOCK_HEARTBEAT).await;
                        match store::heartbeat_s3(&store, &holder, ours.clone()).await {
                            Some(v) => ours = v,
                            None => break,
                        }
                    }
                });
                if let Ok(mut slot) = self.s3_heartbeat.lock() {
                    *slot = Some(beat.abort_handle());
                }
            }
            return Ok(outcome);
        };
        let (file, outcome) = store::lock_local(root, holder).map_err(AdapterError)?;
        if let (Some(f), Ok(mut slot)) = (file, self.run_lock.lock()) {
            *slot = Some(f);
        }
        Ok(outcome)
    }

    async fn unlock(&self) {
        if let Some(f) = self.run_lock.lock().ok().and_then(|mut s| s.take()) {
            store::unlock_local(f);
        }
        if let Some(beat) = self.s3_heartbeat.lock().ok().and_then(|mut s| s.take()) {
            beat.abort();
            store::unlock_s3(&self.store).await;
        }
    }

    async fn written_bytes(&self, relation: &Relation) -> Option<u64> {
        let (schema, name) = (relation.schema.as_str(), relation.identifier.as_str());
        if self.store.is_delta(schema, name).await {
            return self.store.delta_commit_bytes(schema, name).await;
        }
        let newest = parquet::folders(&self.store, schema, name).await.ok()??;
        self.store
            .size_under(&[schema, &parquet::dir_name(name), newest.last()?])
            .await
    }

    async fn last_modified(&self, relation: &Relation) -> Option<chrono::DateTime<chrono::Utc>> {
        let (schema, name) = (relation.schema.as_str(), relation.identifier.as_str());
        let external = self.externals.sources.read().ok().and_then(|e| {
            e.iter()
                .find(|s| s.schema == schema && s.identifier == name)
                .map(|s| s.location.clone())
        });
        if let Some(location) = external {
            // Files on a local disk; a remote location cannot be told this way.
            return (!location.contains("://"))
                .then(|| store::newest_local_change(std::path::Path::new(&location)))
                .flatten();
        }
        if self.store.is_delta(schema, name).await {
            self.store
                .newest_change(&[schema, name, "_delta_log"])
                .await
        } else if self.store.is_parquet(schema, name).await {
            self.store
                .newest_change(&[schema, &parquet::dir_name(name)])
                .await
        } else if self.store.is_iceberg(schema, name).await {
            self.store
                .newest_change(&[schema, &iceberg::dir_name(name)])
                .await
        } else {
            None
        }
    }

    async fn data_version(&self, relation: &Relation) -> Option<String> {
        if self
            .store
            .is_delta(&relation.schema, &relation.identifier)
            .await
        {
            return self
                .store
                .delta_version(&relation.schema, &relation.identifier)
                .await;
        }
        if let Ok(Some(folders)) =
            parquet::folders(&self.store, &relation.schema, &relation.identifier).await
        {
            return Some(format!("parquet:{}", folders.join(",")));
        }
        let t = self
            .lake
            .load(&relation.schema, &relation.identifier)
            .await
            .ok()??;
        t.metadata_location().map(|m| format!("iceberg:{m}"))
    }

    async fn check(&self) -> Result<String, AdapterError> {
        self.store.check_writable().await.map_err(AdapterError)?;
        self.ctx
            .sql("select 1")
            .await
            .map_err(err)?
            .collect()
            .await
            .map_err(err)?;
        Ok(format!(
            "warehouse {} (Delta and Iceberg tables, DataFusion {})",
            self.store.display(),
            datafusion::DATAFUSION_VERSION
        ))
    }
}

/// An Arrow type by its SQL name in DataFusion (what `adapter.get_columns_in_relation` reports).
/// Rows of Arrow batches as JSON values, one per column of `columns` (the PostgreSQL and Spark
/// targets' `show` and tests read results this way too).
pub(crate) fn rows_as_json(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
    columns: &[String],
) -> Result<Vec<Vec<serde_json::Value>>, datafusion::arrow::error::ArrowError> {
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::ArrayWriter::new(&mut buf);
        let refs: Vec<&_> = batches.iter().collect();
        w.write_batches(&refs)?;
        w.finish()?;
    }
    let objects: Vec<serde_json::Map<String, serde_json::Value>> = if buf.is_empty() {
        vec![]
    } else {
        serde_json::from_slice(&buf)
            .map_err(|e| datafusion::arrow::error::ArrowError::JsonError(e.to_string()))?
    };
    Ok(objects
        .into_iter()
        .map(|o| {
            columns
                .iter()
                .map(|c| o.get(c).cloned().unwrap_or(serde_json::Value::Null))
                .collect()
        })
        .collect())
}

fn sql_type_name(t: &datafusion::arrow::datatypes::DataType) -> String {
    use datafusion::arrow::datatypes::DataType as T;
    match t {
        T::Int8 | T::UInt8 => "tinyint".into(),
        T::Int16 | T::UInt16 => "smallint".into(),
        T::Int32 | T::UInt32 => "integer".into(),
        T::Int64 | T::UInt64 => "bigint".into(),
        T::Float16 | T::Float32 => "real".into(),
        T::Float64 => "double".into(),
        T::Utf8 | T::LargeUtf8 | T::Utf8View => "varchar".into(),
        T::Boolean => "boolean".into(),
        T::Date32 | T::Date64 => "date".into(),
        T::Timestamp(_, None) => "timestamp".into(),
        T::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        T::Decimal128(p, s) | T::Decimal256(p, s) => format!("decimal({p},{s})"),
        other => other.to_string(),
    }
}

impl DataFusionAdapter {
    /// Every tenth commit of a Delta table gets a checkpoint, so opening it replays a checkpoint
    /// and at most nine commits, not its whole history (delta-rs' own interval is 100: a model
    /// rebuilt a hundred times, as `--watch` does in an afternoon, read a hundred commit files
    /// at every open, and each build got slower). A failed checkpoint costs only speed.
    async fn checkpoint_now_and_then(&self, rel: &Relation) {
        let (schema, name) = (rel.schema.as_str(), rel.identifier.as_str());
        let Some(version) = self.store.delta_newest_version(schema, name).await else {
            return;
        };
        if version == 0 || version % 10 != 0 {
            return;
        }
        // The table just committed, kept by the write: no replay of the log.
        if let Ok(table) = self.delta_at(schema, name).await {
            let _ = deltalake::checkpoints::create_checkpoint(&table, None).await;
        }
    }

    /// Removes the data files a failed write of `rel`'s Delta table left (not committed, so
    /// never read, but they take room: after a full disk, the next run would find none).
    async fn sweep_failed_write(&self, rel: &Relation, since: std::time::SystemTime) {
        let (schema, name) = (rel.schema.as_str(), rel.identifier.as_str());
        let referenced: std::collections::HashSet<String> =
            if self.store.is_delta(schema, name).await {
                let Ok(url) = self.store.delta_uri(schema, name) else {
                    return;
                };
                // A table that cannot be read now is left alone: its files may be committed.
                let Ok(table) = deltalake::open_table(url).await else {
                    return;
                };
                let Ok(snapshot) = table.snapshot() else {
                    return;
                };
                snapshot
                    .log_data()
                    .iter()
                    .map(|f| {
                        let path = f.path();
                        path.rsplit('/').next().unwrap_or(&path).to_string()
                    })
                    .collect()
            } else if self.store.local_root().is_some()
                && self.store.any_under(&[schema, name]).await
                && !self.store.is_iceberg(schema, name).await
            {
                // A first write that failed: nothing of this folder is committed.
                Default::default()
            } else {
                return;
            };
        self.store
            .sweep_unreferenced(&[schema, name], since, &referenced);
    }

    async fn apply_op(&self, op: &Operation) -> Result<Applied, AdapterError> {
        match op {
            Operation::CreateTableAs {
                relation,
                sql,
                format,
                ..
            } => {
                let write = async {
                    let df = self.ctx.sql(&rewrite::for_engine(sql)).await.map_err(err)?;
                    self.write_table(relation, df, *format).await
                };
                // A Delta table records the stream offsets it read from the start.
                let rows = match format {
                    TableFormat::Delta => streams::from_start(write).await?,
                    _ => write.await?,
                };
                Ok(Applied {
                    code: "CREATE TABLE".into(),
                    rows_affected: Some(rows),
                })
            }
            Operation::CreateView { relation, sql } => {
                self.create_view(relation, sql).await?;
                Ok(Applied {
                    code: "CREATE VIEW".into(),
                    rows_affected: None,
                })
            }
            Operation::LoadSeed {
                relation,
                seed,
                format,
                ..
            } => {
                let df = seed::read(&self.ctx, seed)?;
                // The file is read as the table is written: its errors surface here.
                let rows = self
                    .write_table(relation, df, *format)
                    .await
                    .map_err(|e| AdapterError(format!("{}: {}", seed.display_path, e.0)))?;
                Ok(Applied {
                    code: "INSERT".into(),
                    rows_affected: Some(rows),
                })
            }
            Operation::Incremental(spec) => match spec.format {
                TableFormat::Delta => {
                    let table = self.delta(&spec.relation).await?;
                    streams::resuming(table, incremental::apply(self, spec)).await
                }
                TableFormat::Iceberg => {
                    streams::refused("an Iceberg table", incremental::apply(self, spec)).await
                }
                TableFormat::Parquet => {
                    streams::refused("a Parquet table", incremental::apply(self, spec)).await
                }
            },
            // The embedded engine has no users to grant to, and Delta tables no comments.
            Operation::Grant { .. } | Operation::Comment { .. } => Ok(Applied {
                code: "SKIP".into(),
                rows_affected: None,
            }),
            Operation::Publish {
                relation,
                connection,
                schema,
                table,
            } => self.publish(relation, connection, schema, table).await,
            Operation::RunSql { sql } => {
                statements::run(self, sql, None).await?;
                Ok(Applied {
                    code: "OK".into(),
                    rows_affected: None,
                })
            }
        }
    }
}
