//! Exactly-once reads of stream sources (Kafka topics) and of landed files.
//!
//! A table written from a stream records, in the same Delta commit as its rows, how far it
//! has read each partition: one application transaction (`txn` action, the mechanism Spark's
//! Delta sink uses) per partition, whose version is the next offset to read. Reading and
//! committing are one step: a write that fails or is killed commits neither rows nor offsets,
//! so the next run reads the same records again; a commit that lands is never read twice.
//!
//! The write that is being planned is passed to the scans as a task-local [`Reading`]: the
//! table whose offsets an incremental run resumes from, and the ranges its scans chose (one
//! per partition, fixed when first planned, so a query that reads a topic twice sees the same
//! records in both places).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;

tokio::task_local! {
    static READING: Arc<Reading>;
}

/// What the write being planned reads from streams.
pub struct Reading {
    mode: Mode,
    /// Application id → (first offset, next offset after the range); for a landed file
    /// (`i64::MIN`, its modification time).
    ranges: Mutex<BTreeMap<String, (i64, i64)>>,
}

enum Mode {
    /// Read from each source's `start` (a new table, a full refresh).
    FromStart,
    /// Resume after the offsets this table committed (an incremental run).
    ResumeFrom(DeltaTable),
    /// The table cannot record offsets (Iceberg, Parquet): reading a stream is refused.
    Refused(&'static str),
}

impl Reading {
    fn new(mode: Mode) -> Arc<Self> {
        Arc::new(Reading {
            mode,
            ranges: Mutex::new(BTreeMap::new()),
        })
    }
}

/// Runs `f` as a write of a new table (or a full refresh) that records the offsets it reads.
pub async fn from_start<F: Future>(f: F) -> F::Output {
    READING.scope(Reading::new(Mode::FromStart), f).await
}

/// Runs `f` as an incremental write to `table`, reading streams after its committed offsets.
pub async fn resuming<F: Future>(table: DeltaTable, f: F) -> F::Output {
    READING
        .scope(Reading::new(Mode::ResumeFrom(table)), f)
        .await
}

/// Runs `f` as a write to a table in `format`, which cannot record offsets.
pub async fn refused<F: Future>(format: &'static str, f: F) -> F::Output {
    READING.scope(Reading::new(Mode::Refused(format)), f).await
}

/// The application id under which a table records how far it read a Kafka partition.
pub fn kafka_app_id(topic: &str, partition: i32) -> String {
    format!("rsdbt/kafka/{topic}/{partition}")
}

/// The offsets `[from, to)` a scan of `app_id` reads in the current write, chosen once per
/// write: `committed` (the table's own record) or `start` gives the first, `end` the last.
/// Outside a write (a query, a view, a test), `start`..`end` and nothing is recorded.
pub async fn range<S, E>(app_id: &str, start: S, end: E) -> Result<(i64, i64), String>
where
    S: Future<Output = Result<i64, String>>,
    E: Future<Output = Result<i64, String>>,
{
    let Ok(reading) = READING.try_with(Arc::clone) else {
        return Ok((start.await?, end.await?));
    };
    if let Some(r) = reading
        .ranges
        .lock()
        .ok()
        .and_then(|r| r.get(app_id).copied())
    {
        return Ok(r);
    }
    let from = match &reading.mode {
        Mode::Refused(format) => {
            return Err(format!(
                "a model that reads a stream must be written as a Delta table, whose commits record the offsets it has read; this one is {format} (set `table_format: delta`)"
            ));
        }
        Mode::ResumeFrom(table) => match committed(table, app_id).await? {
            Some(next) => next,
            None => start.await?,
        },
        Mode::FromStart => start.await?,
    };
    let to = end.await?.max(from);
    let mut ranges = reading.ranges.lock().map_err(|e| e.to_string())?;
    Ok(*ranges.entry(app_id.to_string()).or_insert((from, to)))
}

/// Landed files: the version (modification time) under which the current write's table
/// committed `app_id`, if it resumes and did; `Ok(None)` outside a write (read everything).
/// `Err` when the write cannot record what it reads.
pub async fn ingested(app_id: &str) -> Result<Option<i64>, String> {
    let Ok(reading) = READING.try_with(Arc::clone) else {
        return Ok(None);
    };
    match &reading.mode {
        Mode::Refused(format) => Err(format!(
            "a model that ingests landed files must be written as a Delta table, whose commits record the files it has read; this one is {format} (set `table_format: delta`)"
        )),
        Mode::ResumeFrom(table) => committed(table, app_id).await,
        Mode::FromStart => Ok(None),
    }
}

/// Records that the current write reads `app_id` at `version` (a landed file and its
/// modification time); nothing outside a write.
pub fn ingest(app_id: &str, version: i64) {
    let _ = READING.try_with(|r| {
        if let Ok(mut ranges) = r.ranges.lock() {
            ranges.insert(app_id.to_string(), (i64::MIN, version));
        }
    });
}

async fn committed(table: &DeltaTable, app_id: &str) -> Result<Option<i64>, String> {
    let snapshot = table.snapshot().map_err(|e| e.to_string())?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| format!("reading the offsets committed in the table: {e}"))
}

/// The commit properties of the current write: its rows and the offsets it read, together.
pub fn commit_properties() -> CommitProperties {
    CommitProperties::default().with_application_transactions(transactions())
}

/// Whether the current write read any new stream records (a run whose model filtered them all
/// out must still commit that it read them).
pub fn advanced() -> bool {
    READING
        .try_with(|r| {
            r.ranges
                .lock()
                .is_ok_and(|m| m.values().any(|(from, to)| to > from))
        })
        .unwrap_or(false)
}

fn transactions() -> Vec<Transaction> {
    let now = chrono::Utc::now().timestamp_millis();
    READING
        .try_with(|r| {
            r.ranges
                .lock()
                .map(|m| {
                    m.iter()
                        .map(|(id, (_, to))| Transaction::new_with_last_update(id, *to, Some(now)))
                        .collect()
                })
                .unwrap_or_default()
        })
        .unwrap_or_default()
}
