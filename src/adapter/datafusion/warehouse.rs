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
    views: Arc<ViewPlans>,
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
            views: Default::default(),
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
            views: self.views.clone(),
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
    views: Arc<ViewPlans>,
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
        let (table, read) = self.resolve(name).await?;
        note_read(read);
        Ok(table)
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

/// How a relation a view reads was found, to tell later whether it changed: a Delta table by
/// its log's version, a view by its definition (shared by the plans of every view above it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Stamp {
    Delta(String),
    View(Arc<str>),
}

/// A relation (schema, name) a view's plan read, directly or through other views.
type Leaf = ((String, String), Stamp);

/// What a plan read; `None` once it read something whose change cannot be told (a temporary
/// or external table, a Parquet or Iceberg table, a pinned version): such plans are not kept.
type Read = Option<Vec<Leaf>>;

tokio::task_local! {
    /// What the view being planned on this task has read so far (views plan the views they
    /// read within their own planning, so scopes nest).
    static READ: std::cell::RefCell<Read>;
}

/// Adds `read` to what the view being planned has read, if one is.
fn note_read(read: Read) {
    let _ = READ.try_with(|r| {
        let mut r = r.borrow_mut();
        match (r.as_mut(), read) {
            (Some(all), Some(read)) => all.extend(read),
            _ => *r = None,
        }
    });
}

/// Views planned in this session, by (schema, name): their definition, provider and everything
/// they read, which is checked (a listing of each Delta log, a read of each view file: no
/// planning) before a plan is reused.
#[derive(Debug, Default)]
struct ViewPlans(std::sync::Mutex<KeptViews>);

#[derive(Debug, Default)]
struct KeptViews {
    views: std::collections::HashMap<(String, String), KeptView>,
    /// The sum of the kept views' `read` lengths (each plus one).
    read: usize,
    /// Counts uses, to tell which view was used least recently.
    clock: u64,
}

#[derive(Debug, Clone)]
struct KeptView {
    sql: String,
    view: Arc<dyn TableProvider>,
    read: Arc<[Leaf]>,
    used: u64,
}

/// How many relations read (the sum of the kept views' `read`) [`ViewPlans`] keeps plans for.
/// A view's plan holds a copy of the plans of the views beneath it (DataFusion inlines a view
/// into the plans that read it, copying the nodes it rewrites), so its size grows with what it
/// reads: a chain of N kept views is N² plan nodes (~1 KB per relation read; 460 MB for a chain
/// of 1,000). The least recently used go first: a chain being built reads its newest views.
const VIEW_PLANS_READ_KEPT: usize = 50_000;

impl ViewPlans {
    /// The plan kept for view `key` while its definition was `sql`.
    fn get(&self, key: &(String, String), sql: &str) -> Option<KeptView> {
        let mut kept = self.0.lock().ok()?;
        kept.clock += 1;
        let now = kept.clock;
        let view = kept.views.get_mut(key).filter(|v| v.sql == sql)?;
        view.used = now;
        Some(view.clone())
    }

    fn keep(&self, key: (String, String), mut view: KeptView) {
        let Ok(mut kept) = self.0.lock() else {
            return;
        };
        let kept = &mut *kept;
        kept.clock += 1;
        view.used = kept.clock;
        kept.read += view.read.len() + 1;
        if let Some(old) = kept.views.insert(key, view) {
            kept.read -= old.read.len() + 1;
        }
        if kept.read > VIEW_PLANS_READ_KEPT {
            // Down to half at once, so that the sort is paid once per many plans kept.
            let mut by_use: Vec<_> = kept
                .views
                .iter()
                .map(|(k, v)| (v.used, k.clone()))
                .collect();
            by_use.sort_unstable();
            for (_, k) in by_use {
                if kept.read <= VIEW_PLANS_READ_KEPT / 2 {
                    break;
                }
                if let Some(old) = kept.views.remove(&k) {
                    kept.read -= old.read.len() + 1;
                }
            }
        }
    }

    fn forget(&self, key: &(String, String)) {
        if let Ok(mut kept) = self.0.lock()
            && let Some(old) = kept.views.remove(key)
        {
            kept.read -= old.read.len() + 1;
        }
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

/// Keeps `table`, just committed to `schema.name` by this process, for the reads that follow
/// (the table's tests, its children), when it is the log's newest version: they need not
/// replay the log (a checkpoint's Parquet and the commits after it) again.
pub async fn remember_delta(
    store: &Store,
    schema: &str,
    name: &str,
    table: &deltalake::DeltaTable,
) {
    let Ok(url) = store.delta_uri(schema, name) else {
        return;
    };
    let Some(version) = store.delta_version(schema, name).await else {
        return;
    };
    let newest = version
        .rsplit(':')
        .next()
        .and_then(|n| n.parse::<u64>().ok());
    // Another writer's commit since ours: the next read opens the table afresh.
    if newest.is_none() || newest != table.version() {
        return;
    }
    keep_delta(url.to_string(), version, table);
}

/// `schema.name`'s Delta table as of its newest commit, to read it or to write its next
/// commit, and the version of its log seen before it was opened (a commit while it opens makes
/// the table newer than that, never older): the table this process last opened or committed
/// when the log has not changed since (an incremental model reads its own table before writing
/// it, `--watch` rewrites the tables it wrote), else opened now. A location without a table
/// gives one without a version, for a first write to create.
pub async fn current_delta(
    store: &Store,
    schema: &str,
    name: &str,
) -> std::result::Result<(deltalake::DeltaTable, Option<String>), deltalake::DeltaTableError> {
    let url = store
        .delta_uri(schema, name)
        .map_err(deltalake::DeltaTableError::Generic)?;
    let version = store.delta_version(schema, name).await;
    let key = url.to_string();
    if let Some(v) = &version
        && let Ok(cache) = DELTA_TABLES.lock()
        && let Some((seen, table)) = cache.get(&key)
        && seen == v
    {
        return Ok((table.clone(), version));
    }
    let table = deltalake::DeltaTable::try_from_url(url).await?;
    // Kept only when the log did not change while it was read.
    if table.version().is_some()
        && let Some(v) = &version
        && store.delta_version(schema, name).await.as_ref() == Some(v)
    {
        keep_delta(key, v.clone(), &table);
    }
    Ok((table, version))
}

/// Puts `table`, at log version `version`, in [`DELTA_TABLES`] under `key` (its location).
fn keep_delta(key: String, version: String, table: &deltalake::DeltaTable) {
    if let Ok(mut cache) = DELTA_TABLES.lock() {
        if cache.len() >= DELTA_TABLES_KEPT {
            cache.clear();
        }
        cache.insert(key, (version, table.clone()));
    }
}

impl WarehouseSchema {
    /// `name`'s provider, and what a view planned over it would have to check to reuse its plan
    /// ([`ViewPlans`]; `None`: a relation whose plan is not kept).
    async fn resolve(&self, name: &str) -> Result<(Option<Arc<dyn TableProvider>>, Read)> {
        if let Some(table) = self.temporary(name) {
            return Ok((Some(table), None));
        }
        let assumed = self
            .planned
            .read()
            .ok()
            .and_then(|p| p.get(&(self.name.clone(), name.to_string())).cloned());
        if let Some(schema) = assumed {
            return Ok((
                Some(Arc::new(datafusion::datasource::empty::EmptyTable::new(
                    schema,
                ))),
                None,
            ));
        }
        if let Some((base, pin)) = name.rsplit_once('@') {
            return Ok((Some(self.pinned(base, pin).await?), None));
        }
        if let Some(source) = self.external(name) {
            let state = self
                .state
                .get()
                .ok_or_else(|| DataFusionError::Internal("warehouse session not ready".into()))?;
            let table = super::external::provider(state, &source, &self.externals).await?;
            return Ok((Some(table), None));
        }
        if self.store.is_delta(&self.name, name).await {
            let (table, version) = self.open_delta(name).await?;
            if let Some(state) = self.state.get() {
                table
                    .update_datafusion_session(state)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
            }
            let provider = table.table_provider().await?;
            let read = version.map(|v| vec![(self.key(name), Stamp::Delta(v))]);
            return Ok((Some(provider), read));
        }
        if let Some(sql) = self
            .store
            .read_view(&self.name, name)
            .await
            .map_err(external)?
        {
            let (view, mut read) = self.view(name, sql.clone()).await?;
            if let Some(read) = &mut read {
                read.push((self.key(name), Stamp::View(sql.into())));
            }
            return Ok((Some(view), read));
        }
        if let Some(state) = self.state.get()
            && let Some(table) =
                super::parquet::provider(state, &self.store, &self.name, name).await?
        {
            return Ok((Some(table), None));
        }
        let table = self
            .lake
            .load(&self.name, name)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        match table {
            // Pinned to the version current at planning: one query sees one snapshot.
            Some(t) => Ok((
                Some(Arc::new(
                    iceberg_datafusion::IcebergStaticTableProvider::try_new_from_table(t)
                        .await
                        .map_err(|e| DataFusionError::External(Box::new(e)))?,
                )),
                None,
            )),
            None => Ok((None, None)),
        }
    }

    /// The Delta table `name`, and the version of its log seen before it was opened (a
    /// commit while it opens makes the table newer than that, never older).
    async fn open_delta(&self, name: &str) -> Result<(deltalake::DeltaTable, Option<String>)> {
        let (table, version) = current_delta(&self.store, &self.name, name)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if table.version().is_none() {
            return Err(DataFusionError::External(Box::new(
                deltalake::DeltaTableError::not_a_table(format!("{}.{name}", self.name)),
            )));
        }
        Ok((table, version))
    }

    fn key(&self, name: &str) -> (String, String) {
        (self.name.clone(), name.to_string())
    }

    /// View `name`, whose definition is `sql`: its plan kept from an earlier read when nothing
    /// it reads changed since, else planned now (and kept, when everything it reads can be
    /// checked). Planning a view plans the views it reads, so without this a chain of N views
    /// was planned N times over by the N models reading it (quadratic in the chain's depth).
    async fn view(&self, name: &str, sql: String) -> Result<(Arc<dyn TableProvider>, Read)> {
        let key = self.key(name);
        if let Some(kept) = self.views.get(&key, &sql) {
            if self.unchanged(&kept.read).await {
                return Ok((kept.view, Some(kept.read.to_vec())));
            }
            self.views.forget(&key);
        }
        let state = self
            .state
            .get()
            .ok_or_else(|| DataFusionError::Internal("warehouse session not ready".into()))?;
        let planning = READ.scope(std::cell::RefCell::new(Some(Vec::new())), async {
            let plan = state
                .create_logical_plan(&super::rewrite::for_engine(&sql))
                .await;
            (plan, READ.with(|r| r.take()))
        });
        let (plan, mut read) = planning.await;
        let plan = plan.map_err(|e| {
            DataFusionError::Plan(format!("view {}.{} no longer plans: {e}", self.name, name))
        })?;
        // Catalogs other than this one (information_schema) are not seen by `note_read`.
        if sql.to_ascii_lowercase().contains("information_schema") {
            read = None;
        }
        let view: Arc<dyn TableProvider> = Arc::new(ViewTable::new(plan, Some(sql.clone())));
        if let Some(r) = &mut read {
            r.sort();
            r.dedup();
            let kept = KeptView {
                sql,
                view: view.clone(),
                read: r.clone().into(),
                used: 0,
            };
            self.views.keep(key, kept);
        }
        Ok((view, read))
    }

    /// Whether every relation in `read` still resolves as it did, in [`Self::resolve`]'s order.
    async fn unchanged(&self, read: &[Leaf]) -> bool {
        for ((schema, name), stamp) in read {
            let key = (schema.clone(), name.clone());
            let shadowed = self
                .externals
                .temporary
                .read()
                .map_or(true, |t| t.contains_key(&key))
                || self.planned.read().map_or(true, |p| p.contains_key(&key))
                || self.externals.sources.read().map_or(true, |s| {
                    s.iter()
                        .any(|s| &s.schema == schema && &s.identifier == name)
                });
            if shadowed {
                return false;
            }
            let now = match self.store.delta_version(schema, name).await {
                Some(v) => Some(Stamp::Delta(v)),
                None => self
                    .store
                    .read_view(schema, name)
                    .await
                    .ok()
                    .flatten()
                    .map(|sql| Stamp::View(sql.into())),
            };
            if now.as_ref() != Some(stamp) {
                return false;
            }
        }
        true
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

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(depth: usize) -> KeptView {
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
        let leaf = |i: usize| {
            (
                ("main".into(), format!("v{i}")),
                Stamp::View("select 1".into()),
            )
        };
        KeptView {
            sql: format!("select * from v{depth}"),
            view: Arc::new(datafusion::datasource::empty::EmptyTable::new(schema)),
            read: (0..depth).map(leaf).collect(),
            used: 0,
        }
    }

    fn key(i: usize) -> (String, String) {
        ("main".into(), format!("v{i}"))
    }

    /// A chain of views deeper than the budget keeps its newest plans, not all of them.
    #[test]
    fn view_plans_keep_the_recently_used_within_the_budget() {
        let plans = ViewPlans::default();
        let depth = 2_000;
        for i in 0..depth {
            plans.keep(key(i), kept(i));
            // The next view of the chain reads this one.
            assert!(plans.get(&key(i), &format!("select * from v{i}")).is_some());
        }
        let held = plans.0.lock().unwrap();
        assert!(held.read <= VIEW_PLANS_READ_KEPT, "{}", held.read);
        assert_eq!(
            held.read,
            held.views.values().map(|v| v.read.len() + 1).sum::<usize>()
        );
        assert!(held.views.contains_key(&key(depth - 1)));
        assert!(!held.views.contains_key(&key(0)));
        drop(held);
        // A changed definition is not the kept plan.
        assert!(plans.get(&key(depth - 1), "select 2").is_none());
    }
}
