//! The warehouse (a folder, or a prefix on S3: [`super::store`]) as a DataFusion catalog:
//! schemas are folders, tables are Delta tables (`<schema>/<table>/_delta_log`) or Iceberg
//! tables (`<schema>/<table>.iceberg/`, see [`super::iceberg`]), views are
//! `<schema>/<view>.view.sql` definitions.
//!
//! Tables resolve lazily at planning time, so every query sees the newest Delta version (no
//! stale provider after a write) and views written by another process are visible.

use std::any::Any;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::ViewTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionState;

use super::iceberg::Lake;
use super::store::Store;
use crate::adapter::external::ExternalSource;

/// The external sources of the project, found by schema and identifier before the folder, and
/// the connections PostgreSQL sources are read through.
#[derive(Debug, Default)]
pub struct ExternalRegistry {
    pub sources: std::sync::RwLock<Vec<ExternalSource>>,
    #[cfg(feature = "postgres")]
    pub connections: super::pg_source::Connections,
    pub iceberg_catalogs: super::iceberg::Catalogs,
    /// Tables made by `create temporary table`, by (schema, name): in memory, gone when the
    /// command ends (the warehouse has no sessions; a command is one). They come first in
    /// name resolution, as PostgreSQL's `pg_temp`.
    pub temporary: Temporary,
}

pub type Temporary =
    std::sync::RwLock<std::collections::HashMap<(String, String), Arc<dyn TableProvider>>>;

pub type Externals = Arc<ExternalRegistry>;

/// What the target names in profiles.yml (`connections:`, `iceberg_catalogs:`): each entry's
/// settings, and what was opened from them — opened on first use, kept for the command.
pub struct Named<T> {
    settings: std::sync::RwLock<serde_json::Map<String, serde_json::Value>>,
    open: tokio::sync::Mutex<std::collections::HashMap<String, Arc<T>>>,
}

impl<T> Default for Named<T> {
    fn default() -> Self {
        Self {
            settings: Default::default(),
            open: Default::default(),
        }
    }
}

impl<T> std::fmt::Debug for Named<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .settings
            .read()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Named").field("names", &names).finish()
    }
}

impl<T> Named<T> {
    pub fn set(&self, settings: serde_json::Map<String, serde_json::Value>) {
        if let Ok(mut s) = self.settings.write() {
            *s = settings;
        }
    }

    /// Entry `name`, opened with `open` from its settings the first time. `what` and `key`
    /// (what an entry is, the profile key they are under) word the error when there is none.
    pub async fn get<F, Fut>(
        &self,
        name: &str,
        (what, key): (&str, &str),
        open: F,
    ) -> Result<Arc<T>, String>
    where
        F: FnOnce(serde_json::Map<String, serde_json::Value>) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let mut opened = self.open.lock().await;
        if let Some(t) = opened.get(name) {
            return Ok(t.clone());
        }
        let fields = self
            .settings
            .read()
            .map_err(|_| format!("internal error: {key} poisoned"))?
            .get(name)
            .and_then(|v| v.as_object())
            .cloned()
            .ok_or_else(|| format!("the profile's target has no {what} '{name}' under `{key}:`"))?;
        let t = Arc::new(open(fields).await?);
        opened.insert(name.to_string(), t.clone());
        Ok(t)
    }
}

/// Static analysis: (schema, name) → the columns a relation will have once this run builds it.
pub type Planned = Arc<
    std::sync::RwLock<
        std::collections::HashMap<(String, String), datafusion::arrow::datatypes::SchemaRef>,
    >,
>;

fn external(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::External(e.to_string().into())
}

#[derive(Debug)]
pub struct WarehouseCatalog {
    store: Arc<Store>,
    state: Arc<OnceLock<SessionState>>,
    lake: Arc<Lake>,
    externals: Externals,
    planned: Planned,
}

impl WarehouseCatalog {
    pub fn new(
        store: Arc<Store>,
        state: Arc<OnceLock<SessionState>>,
        lake: Arc<Lake>,
        externals: Externals,
        planned: Planned,
    ) -> Self {
        Self {
            store,
            state,
            lake,
            externals,
            planned,
        }
    }
}

impl CatalogProvider for WarehouseCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.store.wait(|| self.store.schemas())
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        // Unknown schemas still resolve, so that a missing table says "table not found".
        Some(Arc::new(WarehouseSchema {
            store: self.store.clone(),
            name: name.to_string(),
            state: self.state.clone(),
            lake: self.lake.clone(),
            externals: self.externals.clone(),
            planned: self.planned.clone(),
        }))
    }

    fn register_schema(
        &self,
        name: &str,
        _schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        self.store.prepare(&[name]).map_err(external)?;
        Ok(None)
    }
}

#[derive(Debug)]
pub struct WarehouseSchema {
    store: Arc<Store>,
    name: String,
    state: Arc<OnceLock<SessionState>>,
    lake: Arc<Lake>,
    externals: Externals,
    planned: Planned,
}

impl WarehouseSchema {
    fn temporary(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.externals
            .temporary
            .read()
            .ok()?
            .get(&(self.name.clone(), name.to_string()))
            .cloned()
    }

    fn external(&self, name: &str) -> Option<ExternalSource> {
        self.externals
            .sources
            .read()
            .ok()?
            .iter()
            .find(|s| s.schema == self.name && s.identifier == name)
            .cloned()
    }
}

#[async_trait]
impl SchemaProvider for WarehouseSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        self.store.wait(|| self.store.tables(&self.name))
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = self.temporary(name) {
            return Ok(Some(table));
        }
        let assumed = self
            .planned
            .read()
            .ok()
            .and_then(|p| p.get(&(self.name.clone(), name.to_string())).cloned());
        if let Some(schema) = assumed {
            return Ok(Some(Arc::new(
                datafusion::datasource::empty::EmptyTable::new(schema),
            )));
        }
        if let Some((base, pin)) = name.rsplit_once('@') {
            return self.pinned(base, pin).await.map(Some);
        }
        if let Some(source) = self.external(name) {
            let state = self
                .state
                .get()
                .ok_or_else(|| DataFusionError::Internal("warehouse session not ready".into()))?;
            return super::external::provider(state, &source, &self.externals)
                .await
                .map(Some);
        }
        if self.store.is_delta(&self.name, name).await {
            let table = self.open_delta(name).await?;
            if let Some(state) = self.state.get() {
                table
                    .update_datafusion_session(state)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
            }
            let provider = table.table_provider().await?;
            return Ok(Some(provider));
        }
        if let Some(sql) = self
            .store
            .read_view(&self.name, name)
            .await
            .map_err(external)?
        {
            let state = self
                .state
                .get()
                .ok_or_else(|| DataFusionError::Internal("warehouse session not ready".into()))?;
            let plan = state
                .create_logical_plan(&super::rewrite::for_engine(&sql))
                .await
                .map_err(|e| {
                    DataFusionError::Plan(format!(
                        "view {}.{} no longer plans: {e}",
                        self.name, name
                    ))
                })?;
            return Ok(Some(Arc::new(ViewTable::new(plan, Some(sql)))));
        }
        if let Some(state) = self.state.get()
            && let Some(table) =
                super::parquet::provider(state, &self.store, &self.name, name).await?
        {
            return Ok(Some(table));
        }
        let table = self
            .lake
            .load(&self.name, name)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        match table {
            // Pinned to the version current at planning: one query sees one snapshot.
            Some(t) => Ok(Some(Arc::new(
                iceberg_datafusion::IcebergStaticTableProvider::try_new_from_table(t)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?,
            ))),
            None => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        let name = name.split('@').next().unwrap_or(name);
        self.temporary(name).is_some()
            || self.external(name).is_some()
            || self.store.wait(|| async {
                self.store.is_delta(&self.name, name).await
                    || self.lake.exists(&self.name, name).await
                    || self.store.is_parquet(&self.name, name).await
                    || matches!(self.store.read_view(&self.name, name).await, Ok(Some(_)))
            })
    }
}

/// Delta tables opened by this process, by location, with the version each was opened at
/// ([`Store::delta_version`]): a table read by many nodes of a run (its tests, its children)
/// costs a listing of its log per read, not a replay of the log. Any commit, by this run or
/// another process, changes the version and the table is opened afresh.
static DELTA_TABLES: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, (String, deltalake::DeltaTable)>>,
> = std::sync::LazyLock::new(Default::default);

/// How many opened tables [`DELTA_TABLES`] keeps (a snapshot holds the table's file list).
const DELTA_TABLES_KEPT: usize = 4096;

impl WarehouseSchema {
    async fn open_delta(&self, name: &str) -> Result<deltalake::DeltaTable> {
        let url = self.store.delta_uri(&self.name, name).map_err(external)?;
        let version = self.store.delta_version(&self.name, name).await;
        let key = url.to_string();
        if let Some(v) = &version
            && let Ok(cache) = DELTA_TABLES.lock()
            && let Some((seen, table)) = cache.get(&key)
            && seen == v
        {
            return Ok(table.clone());
        }
        let table = deltalake::open_table(url)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        // Kept only when the log did not change while it was read.
        if let Some(v) = version
            && self.store.delta_version(&self.name, name).await.as_ref() == Some(&v)
            && let Ok(mut cache) = DELTA_TABLES.lock()
        {
            if cache.len() >= DELTA_TABLES_KEPT {
                cache.clear();
            }
            cache.insert(key, (v, table.clone()));
        }
        Ok(table)
    }

    /// `name@v12`: Delta version 12 of `name`; `name@s<id>`: Iceberg snapshot `id`.
    async fn pinned(&self, name: &str, pin: &str) -> Result<Arc<dyn TableProvider>> {
        let bad = || {
            DataFusionError::Plan(format!(
                "cannot read {name}@{pin}: write at_version(N) for a Delta version or at_snapshot(ID) for an Iceberg snapshot"
            ))
        };
        let (tag, n) = pin.split_at(1);
        let n: i64 = n.parse().ok().filter(|n| *n >= 0).ok_or_else(bad)?;
        let ext = |e: Box<dyn std::error::Error + Send + Sync>| DataFusionError::External(e);
        match tag {
            "v" if self.store.is_delta(&self.name, name).await => {
                let url = self.store.delta_uri(&self.name, name).map_err(external)?;
                let table = deltalake::open_table_with_version(url, n as u64)
                    .await
                    .map_err(|e| {
                        DataFusionError::Plan(format!("cannot read version {n} of {name}: {e}"))
                    })?;
                if let Some(state) = self.state.get() {
                    table
                        .update_datafusion_session(state)
                        .map_err(|e| ext(Box::new(e)))?;
                }
                Ok(table.table_provider().await?)
            }
            "s" => {
                let table = self
                    .lake
                    .load(&self.name, name)
                    .await
                    .map_err(|e| ext(Box::new(e)))?
                    .ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "cannot read snapshot {n} of {name}: it is not an Iceberg table"
                        ))
                    })?;
                Ok(Arc::new(
                    iceberg_datafusion::IcebergStaticTableProvider::try_new_from_table_snapshot(
                        table, n,
                    )
                    .await
                    .map_err(|e| {
                        DataFusionError::Plan(format!("cannot read snapshot {n} of {name}: {e}"))
                    })?,
                ))
            }
            "v" => Err(DataFusionError::Plan(format!(
                "cannot read version {n} of {name}: it is not a Delta table (at_snapshot(ID) reads an Iceberg snapshot)"
            ))),
            _ => Err(bad()),
        }
    }
}
