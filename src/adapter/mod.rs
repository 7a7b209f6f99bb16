//! Adapters apply [`Operation`]s to a warehouse and run queries. Static dispatch: each engine is
//! behind a cargo feature, and the compiler side builds without any.

#[cfg(feature = "datafusion")]
pub(crate) mod csv_types;
#[cfg(feature = "datafusion")]
pub mod datafusion;
pub mod external;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "spark")]
pub mod spark;

use std::future::Future;

use crate::materialize::Operation;

/// What applying an operation reports (dbt's `adapter_response`).
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// `CREATE TABLE`, `CREATE VIEW`, `INSERT` ...
    pub code: String,
    pub rows_affected: Option<u64>,
}

/// Rows of a query, as JSON values (for `show`, and tests).
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    /// Each column's type as the warehouse names it (`bigint`, `varchar`, `text`...).
    pub types: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// A failure in the warehouse: the message is shown to the user as is.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AdapterError(pub String);

/// Who holds a target's run lock: what a second run is told.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    pub started_at: String,
    /// The holder's process namespace (`/proc/self/ns/pid`): with the host, it says whether
    /// `pid` can be looked up from here (containers share host names less often than pids).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pid_namespace: String,
}

impl Holder {
    /// This process.
    pub fn this_process() -> Holder {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "unknown host".into());
        Holder {
            pid: std::process::id(),
            host,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            pid_namespace: pid_namespace(),
        }
    }

    /// Whether the holder was a process of this machine (and process namespace) that no
    /// longer runs: its lock can be taken over at once, without waiting for it to go stale.
    pub fn died_here(&self) -> bool {
        let here = Holder::this_process();
        !self.pid_namespace.is_empty()
            && self.pid_namespace == here.pid_namespace
            && self.host == here.host
            && self.pid != here.pid
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    pub fn describe(&self) -> String {
        format!(
            "pid {} on {}, `{}`, started {}",
            self.pid, self.host, self.command, self.started_at
        )
    }
}

fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The outcome of asking for a target's run lock.
#[derive(Debug, Clone, PartialEq)]
pub enum Locked {
    /// This run holds it.
    Taken,
    /// This run holds it; the run described had held it and died without releasing it.
    TakenOver(String),
    /// Another live run holds it.
    HeldBy(String),
}

/// The engine-facing interface: small on purpose.
pub trait Adapter: Send + Sync + 'static {
    /// The adapter type as in profiles.yml.
    fn kind(&self) -> &'static str;
    /// Applies one operation; atomic per operation.
    fn apply(&self, op: &Operation) -> impl Future<Output = Result<Applied, AdapterError>> + Send;
    /// Runs a query and returns at most `limit` rows.
    fn query(
        &self,
        sql: &str,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<QueryResult, AdapterError>> + Send;
    /// Runs a statement of a render (`run_query`, `statement`, `adapter.*`) in the session
    /// `session` stands for, one per rendering thread as dbt has one connection per thread: a
    /// temporary table a macro creates is there for its next query. Targets without sessions
    /// run it as [`Adapter::query`].
    fn query_in_session(
        &self,
        session: u64,
        sql: &str,
    ) -> impl Future<Output = Result<QueryResult, AdapterError>> + Send {
        let _ = session;
        self.query(sql, None)
    }
    /// What the relation is in the warehouse: `Some("table")`, `Some("view")`, or `None` when it
    /// does not exist (for `--defer` and incremental models).
    fn relation_type(
        &self,
        relation: &crate::jinja::Relation,
    ) -> impl Future<Output = Option<&'static str>> + Send;
    /// An identifier of the table's current contents (a Delta version, an Iceberg metadata
    /// file) that changes with every write; `None` when the warehouse cannot say.
    fn data_version(
        &self,
        _relation: &crate::jinja::Relation,
    ) -> impl Future<Output = Option<String>> + Send {
        async { None }
    }
    /// The bytes of data files the relation's latest write added (a Delta table's newest
    /// commit, a Parquet table's newest folder); `None` when the warehouse cannot say.
    fn written_bytes(
        &self,
        _relation: &crate::jinja::Relation,
    ) -> impl Future<Output = Option<u64>> + Send {
        async { None }
    }
    /// When the warehouse last changed the relation's data (source freshness without a
    /// `loaded_at_field`); `None` when it cannot say.
    fn last_modified(
        &self,
        _relation: &crate::jinja::Relation,
    ) -> impl Future<Output = Option<chrono::DateTime<chrono::Utc>>> + Send {
        async { None }
    }
    /// Takes the target's run lock for this process, so two runs never write the same
    /// warehouse at once (released by [`Adapter::unlock`], or by the system when the process
    /// dies). A target without a lock always grants it.
    fn try_lock(
        &self,
        _holder: &Holder,
    ) -> impl Future<Output = Result<Locked, AdapterError>> + Send {
        async { Ok(Locked::Taken) }
    }
    fn unlock(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// The SQL that hashes a text to an id (snapshots' `dbt_scd_id`), `{}` standing for it.
    fn hash_sql(&self) -> &'static str {
        "md5({})"
    }
    /// Checks that the warehouse is reachable and usable (for `debug`).
    fn check(&self) -> impl Future<Output = Result<String, AdapterError>> + Send;
}

/// The adapter of the profile's target, dispatched statically.
#[cfg(feature = "datafusion")]
pub enum AnyAdapter {
    DataFusion(datafusion::DataFusionAdapter),
    #[cfg(feature = "postgres")]
    Postgres(postgres::PostgresAdapter),
    // The gRPC client is large and there is one adapter per command.
    #[cfg(feature = "spark")]
    Spark(Box<spark::SparkAdapter>),
}

#[cfg(feature = "datafusion")]
macro_rules! each {
    ($self:ident, $a:ident => $e:expr) => {
        match $self {
            AnyAdapter::DataFusion($a) => $e,
            #[cfg(feature = "postgres")]
            AnyAdapter::Postgres($a) => $e,
            #[cfg(feature = "spark")]
            AnyAdapter::Spark($a) => $e,
        }
    };
}

#[cfg(feature = "datafusion")]
impl Adapter for AnyAdapter {
    fn kind(&self) -> &'static str {
        each!(self, a => a.kind())
    }
    async fn apply(&self, op: &Operation) -> Result<Applied, AdapterError> {
        each!(self, a => a.apply(op).await)
    }
    async fn query(&self, sql: &str, limit: Option<usize>) -> Result<QueryResult, AdapterError> {
        each!(self, a => a.query(sql, limit).await)
    }
    async fn query_in_session(&self, session: u64, sql: &str) -> Result<QueryResult, AdapterError> {
        each!(self, a => a.query_in_session(session, sql).await)
    }
    async fn relation_type(&self, relation: &crate::jinja::Relation) -> Option<&'static str> {
        each!(self, a => a.relation_type(relation).await)
    }
    async fn data_version(&self, relation: &crate::jinja::Relation) -> Option<String> {
        each!(self, a => a.data_version(relation).await)
    }
    async fn written_bytes(&self, relation: &crate::jinja::Relation) -> Option<u64> {
        each!(self, a => a.written_bytes(relation).await)
    }
    async fn last_modified(
        &self,
        relation: &crate::jinja::Relation,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        each!(self, a => a.last_modified(relation).await)
    }
    async fn try_lock(&self, holder: &Holder) -> Result<Locked, AdapterError> {
        each!(self, a => a.try_lock(holder).await)
    }
    async fn unlock(&self) {
        each!(self, a => a.unlock().await)
    }
    fn hash_sql(&self) -> &'static str {
        each!(self, a => a.hash_sql())
    }
    async fn check(&self) -> Result<String, AdapterError> {
        each!(self, a => a.check().await)
    }
}

/// The adapter as Jinja's [`Warehouse`](crate::jinja::introspect::Warehouse): renders are
/// synchronous, so each call runs the query to completion on the runtime from its own thread
/// (the rendering thread may be the one driving the runtime). A node compiles before it takes a
/// pooled connection, so while one renders at most `threads - 1` connections are taken and the
/// query always gets one.
#[cfg(feature = "datafusion")]
pub struct Introspector {
    pub adapter: std::sync::Arc<AnyAdapter>,
    pub runtime: tokio::runtime::Handle,
}

#[cfg(feature = "datafusion")]
impl crate::jinja::introspect::Warehouse for Introspector {
    fn query(&self, sql: &str) -> Result<crate::jinja::introspect::TableData, String> {
        let (adapter, rt, sql) = (self.adapter.clone(), self.runtime.clone(), sql.to_string());
        // The rendering thread's session, taken here: the query runs on a thread of its own.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        thread_local! {
            static SESSION: u64 = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let session = SESSION.with(|s| *s);
        let result =
            std::thread::spawn(move || rt.block_on(adapter.query_in_session(session, &sql)))
                .join()
                .map_err(|_| "internal error: the query thread panicked".to_string())?;
        result
            .map(|r| crate::jinja::introspect::TableData {
                columns: r.columns,
                types: r.types,
                rows: r.rows,
            })
            .map_err(|e| e.0)
    }

    fn relation_type(&self, relation: &crate::jinja::Relation) -> Result<Option<String>, String> {
        let (adapter, rt, rel) = (self.adapter.clone(), self.runtime.clone(), relation.clone());
        std::thread::spawn(move || rt.block_on(adapter.relation_type(&rel)))
            .join()
            .map(|k| k.map(str::to_string))
            .map_err(|_| "internal error: the query thread panicked".to_string())
    }
}

/// An [`Introspector`] whose adapter opens on the first question, so a command that rarely
/// needs the warehouse (`compile`) connects only for models that query it.
#[cfg(feature = "datafusion")]
pub struct LazyIntrospector {
    open: Box<dyn Fn() -> Result<AnyAdapter, String> + Send + Sync>,
    runtime: tokio::runtime::Handle,
    opened: std::sync::OnceLock<Result<Introspector, String>>,
}

#[cfg(feature = "datafusion")]
impl LazyIntrospector {
    pub fn new(
        open: Box<dyn Fn() -> Result<AnyAdapter, String> + Send + Sync>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            open,
            runtime,
            opened: std::sync::OnceLock::new(),
        }
    }

    fn get(&self) -> Result<&Introspector, String> {
        self.opened
            .get_or_init(|| {
                (self.open)().map(|a| Introspector {
                    adapter: std::sync::Arc::new(a),
                    runtime: self.runtime.clone(),
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

#[cfg(feature = "datafusion")]
impl crate::jinja::introspect::Warehouse for LazyIntrospector {
    fn query(&self, sql: &str) -> Result<crate::jinja::introspect::TableData, String> {
        self.get()?.query(sql)
    }

    fn relation_type(&self, relation: &crate::jinja::Relation) -> Result<Option<String>, String> {
        self.get()?.relation_type(relation)
    }
}
