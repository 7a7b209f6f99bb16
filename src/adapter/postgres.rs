//! The PostgreSQL target (profile `type: postgres`, dbt-postgres' keys).
//!
//! Tables and views are built under a temporary name and swapped in with renames inside one
//! transaction, as dbt-postgres does, so a failing model leaves the old relation and readers
//! never see it missing. Seeds stream through `COPY ... FROM STDIN`.

mod publish;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use serde_json::Value as Json;
use tokio::sync::{Mutex, Semaphore};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use crate::adapter::{Adapter, AdapterError, Applied, QueryResult};
use crate::jinja::{Relation, quote};
use crate::materialize::{Operation, SeedSpec};
use crate::project::Target;

impl std::fmt::Debug for PostgresAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

/// A pool of `threads` connections.
pub struct PostgresAdapter {
    clients: Mutex<Vec<Client>>,
    permits: Semaphore,
    summary: String,
    /// Schemas known to exist: each is created once, one at a time (concurrent
    /// `create schema if not exists` race in PostgreSQL).
    schemas: Mutex<std::collections::BTreeSet<String>>,
    /// The run lock: an advisory lock held for the run on a session of its own (the pool's
    /// sessions are shared by the nodes). Boxed: it is rarely touched.
    lock: Box<LockSession>,
    /// The sessions of renders (see [`crate::adapter::Adapter::query_in_session`]), outside
    /// the pool: a render's temporary tables stay visible to its later queries.
    sessions: Mutex<std::collections::HashMap<u64, Arc<Mutex<Client>>>>,
}

struct LockSession {
    /// How to open the lock's connection.
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// One run at a time per database and target schema.
    key: String,
    session: Mutex<Option<Client>>,
}

/// The run lock's key pair is (hashtext('rsdbt'), hashtext(<database>.<schema>)).
const LOCK_SQL: &str = "select pg_try_advisory_lock(hashtext('rsdbt'), hashtext($1))";
/// Who holds the lock: the application name its session set, its backend, since when.
const LOCK_HOLDER_SQL: &str = "select a.application_name, a.pid, coalesce(a.client_addr::text, 'local socket'), a.backend_start::text \
     from pg_locks l join pg_stat_activity a on a.pid = l.pid \
     where l.locktype = 'advisory' and l.granted and l.objsubid = 2 \
       and l.classid::text::bigint = (hashtext('rsdbt')::bigint & 4294967295) \
       and l.objid::text::bigint = (hashtext($1)::bigint & 4294967295)";

fn err(e: impl std::fmt::Display) -> AdapterError {
    AdapterError(e.to_string())
}

/// A PostgreSQL error with its detail and hint, as psql shows them.
fn pg_err(e: tokio_postgres::Error) -> AdapterError {
    match e.as_db_error() {
        Some(db) => {
            let mut msg = db.message().to_string();
            if let Some(d) = db.detail() {
                msg.push_str(&format!("\n  DETAIL: {d}"));
            }
            if let Some(h) = db.hint() {
                msg.push_str(&format!("\n  HINT: {h}"));
            }
            AdapterError(msg)
        }
        None => AdapterError(e.to_string()),
    }
}

fn field<'a>(t: &'a Target, key: &str) -> Option<&'a Json> {
    t.fields.get(key).filter(|v| !v.is_null())
}

fn text(t: &Target, key: &str) -> Option<String> {
    field(t, key).map(|v| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    })
}

impl PostgresAdapter {
    /// Connects `threads` clients to the target's database; the error says in one line what is
    /// wrong (unreachable host, refused password, missing database).
    pub async fn connect(t: &Target) -> Result<Self, AdapterError> {
        let mut config = tokio_postgres::Config::new();
        let host = text(t, "host").unwrap_or_else(|| "localhost".into());
        let port: u16 = text(t, "port").and_then(|p| p.parse().ok()).unwrap_or(5432);
        let user = text(t, "user").unwrap_or_else(|| "postgres".into());
        let dbname = text(t, "dbname")
            .or_else(|| text(t, "database"))
            .unwrap_or_else(|| "postgres".into());
        config
            .host(&host)
            .port(port)
            .user(&user)
            .dbname(&dbname)
            .application_name("rsdbt");
        if let Some(p) = text(t, "password").or_else(|| text(t, "pass")) {
            config.password(p);
        }
        let timeout = text(t, "connect_timeout")
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        config.connect_timeout(Duration::from_secs(timeout));
        if let Some(k) = text(t, "keepalives_idle").and_then(|s| s.parse().ok()) {
            config.keepalives_idle(Duration::from_secs(k));
        }
        let sslmode = text(t, "sslmode").unwrap_or_else(|| "prefer".into());
        let tls = tls::connector(&sslmode, text(t, "sslrootcert").as_deref())?;
        config.ssl_mode(match sslmode.as_str() {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let mut setup = Vec::new();
        if let Some(role) = text(t, "role") {
            setup.push(format!("set role {}", quote(&role)));
        }
        if let Some(sp) = text(t, "search_path") {
            setup.push(format!("set search_path to {sp}"));
        }
        let retries = text(t, "retries")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1u32)
            .max(1);
        let where_ = format!("{user}@{host}:{port}/{dbname}");
        let mut clients = Vec::new();
        for _ in 0..t.threads.max(1) {
            let mut attempt = 0;
            let client = loop {
                attempt += 1;
                match open_client(&config, tls.as_ref()).await {
                    Ok(client) => break client,
                    Err(e) if attempt < retries => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        return Err(AdapterError(format!(
                            "cannot connect to PostgreSQL at {where_}: {}",
                            connect_reason(&e)
                        )));
                    }
                }
            };
            for s in &setup {
                client.batch_execute(s).await.map_err(pg_err)?;
            }
            clients.push(client);
        }
        let n = clients.len();
        Ok(Self {
            clients: Mutex::new(clients),
            permits: Semaphore::new(n),
            summary: format!("PostgreSQL {where_}"),
            schemas: Mutex::new(Default::default()),
            lock: Box::new(LockSession {
                config,
                tls,
                key: format!("{dbname}.{}", t.schema),
                session: Mutex::new(None),
            }),
            sessions: Mutex::new(Default::default()),
        })
    }

    async fn ensure_schema(&self, schema: &str) -> Result<(), AdapterError> {
        let mut known = self.schemas.lock().await;
        if known.contains(schema) {
            return Ok(());
        }
        let sql = format!("create schema if not exists {}", quote(schema));
        self.with_client(async |c| match c.batch_execute(&sql).await {
            // Another process created it at the same moment: it exists, which is what we want.
            Err(e) if e.code().is_some_and(|c| c.code() == "23505") => Ok(()),
            other => other.map_err(pg_err),
        })
        .await?;
        known.insert(schema.to_string());
        Ok(())
    }

    /// Builds a table or view (`kind`) of `sql` under a temporary name and swaps it in, in one
    /// transaction, so readers see the old relation or the new one, never none.
    async fn replace(
        &self,
        relation: &Relation,
        kind: &str,
        sql: &str,
    ) -> Result<Applied, AdapterError> {
        let create = format!(
            "create {kind} {} as (\n{}\n)",
            tmp_name(relation),
            sql.trim().trim_end_matches(';')
        );
        self.with_client(async |c| {
            let tx = c.transaction().await.map_err(pg_err)?;
            tx.batch_execute(&create_tmp_sql(relation, &create))
                .await
                .map_err(pg_err)?;
            tx.batch_execute(&swap_in_sql(relation, kind))
                .await
                .map_err(pg_err)?;
            let rows = if kind == "table" {
                let count = format!("select count(*) from {}", pg_name(relation));
                let n: i64 = tx.query_one(&count, &[]).await.map_err(pg_err)?.get(0);
                Some(n as u64)
            } else {
                None
            };
            tx.commit().await.map_err(pg_err)?;
            Ok(match rows {
                Some(n) => Applied {
                    code: "SELECT".into(),
                    rows_affected: Some(n),
                },
                None => Applied {
                    code: "CREATE VIEW".into(),
                    rows_affected: None,
                },
            })
        })
        .await
    }

    /// Streams the output of `copy` (a `COPY ... TO STDOUT`) into `tx`, chunk by chunk, on a
    /// pooled connection; a full channel holds the reading back (bounded memory).
    pub async fn copy_out(
        &self,
        copy: &str,
        tx: tokio::sync::mpsc::Sender<Result<Bytes, String>>,
    ) -> Result<(), AdapterError> {
        use futures::StreamExt;
        self.with_client(async |c| {
            let stream = c.copy_out(copy).await.map_err(pg_err)?;
            futures::pin_mut!(stream);
            let mut reading = true;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(pg_err)?;
                // Once the reader stops (a LIMIT above was met) the rest is drained unread, so
                // the connection goes back to the pool usable.
                if reading && tx.send(Ok(chunk)).await.is_err() {
                    reading = false;
                }
            }
            Ok(())
        })
        .await
    }

    /// Replaces table `relation` with the rows of `batches` (Arrow), sent with a binary COPY
    /// into a new table that is swapped in, all in one transaction: a failure anywhere leaves
    /// the old table. Returns the number of rows.
    pub async fn publish(
        &self,
        relation: &Relation,
        schema: datafusion::arrow::datatypes::SchemaRef,
        mut batches: datafusion::execution::SendableRecordBatchStream,
    ) -> Result<u64, AdapterError> {
        use futures::StreamExt;
        self.ensure_schema(&relation.schema).await?;
        let columns = publish::columns(&schema);
        let defs: Vec<String> = columns
            .iter()
            .map(|c| format!("{} {}", quote(&c.name), c.sql_type))
            .collect();
        let create = format!("create table {} ({})", tmp_name(relation), defs.join(", "));
        let types: Vec<Type> = columns.iter().map(|c| c.pg_type.clone()).collect();
        self.with_client(async |c| {
            let tx = c.transaction().await.map_err(pg_err)?;
            tx.batch_execute(&create_tmp_sql(relation, &create))
                .await
                .map_err(pg_err)?;
            let sink = tx
                .copy_in(&format!(
                    "copy {} from stdin with (format binary)",
                    tmp_name(relation)
                ))
                .await
                .map_err(pg_err)?;
            let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
            futures::pin_mut!(writer);
            let mut rows = 0u64;
            while let Some(batch) = batches.next().await {
                let batch = publish::canonical(&batch.map_err(err)?, &columns)?;
                let cells: Vec<publish::Cell> = (0..batch.num_columns())
                    .map(|i| publish::Cell::new(batch.column(i), columns[i].kind))
                    .collect();
                for row in 0..batch.num_rows() {
                    let values: Vec<publish::At> = cells.iter().map(|c| c.at(row)).collect();
                    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
                        .iter()
                        .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                        .collect();
                    writer.as_mut().write(&refs).await.map_err(pg_err)?;
                }
                rows += batch.num_rows() as u64;
            }
            writer.finish().await.map_err(pg_err)?;
            tx.batch_execute(&swap_in_sql(relation, "table"))
                .await
                .map_err(pg_err)?;
            tx.commit().await.map_err(pg_err)?;
            Ok(rows)
        })
        .await
    }

    /// Rows of a catalog query, every value as text.
    pub async fn query_text(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Vec<Option<String>>>, AdapterError> {
        self.with_client(async |c| {
            let rows = c.query(sql, params).await.map_err(pg_err)?;
            Ok(rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.get::<_, Option<String>>(i))
                        .collect()
                })
                .collect())
        })
        .await
    }

    /// A connection outside the pool.
    async fn open_session(&self) -> Result<Client, AdapterError> {
        open_client(&self.lock.config, self.lock.tls.as_ref())
            .await
            .map_err(|e| AdapterError(connect_reason(&e)))
    }

    /// Runs `f` with a pooled connection.
    async fn with_client<T>(
        &self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, AdapterError>,
    ) -> Result<T, AdapterError> {
        let _permit = self.permits.acquire().await.map_err(err)?;
        let mut client = self
            .clients
            .lock()
            .await
            .pop()
            .ok_or_else(|| AdapterError("internal error: connection pool empty".into()))?;
        let out = f(&mut client).await;
        self.clients.lock().await.push(client);
        out
    }
}

/// One connection, its connection task spawned on the runtime.
async fn open_client(
    config: &tokio_postgres::Config,
    tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
) -> Result<Client, tokio_postgres::Error> {
    match tls {
        None => config.connect(NoTls).await.map(|(client, connection)| {
            tokio::spawn(connection);
            client
        }),
        Some(tls) => config
            .connect(tls.clone())
            .await
            .map(|(client, connection)| {
                tokio::spawn(connection);
                client
            }),
    }
}

/// The cause of a failed connection, in words a person can act on.
fn connect_reason(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match db.code().code() {
            "28P01" | "28000" => format!(
                "authentication failed ({}); check user and password in profiles.yml",
                db.message()
            ),
            "3D000" => format!("{}; create the database or fix `dbname`", db.message()),
            _ => db.message().to_string(),
        };
    }
    let s = e.to_string();
    let source = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    if source.contains("refused") || s.contains("refused") {
        "connection refused: is the server running and listening on that host and port?".into()
    } else if source.contains("timed out") || s.contains("timeout") {
        "timed out: the host is unreachable (check host, port and firewall)".into()
    } else if source.is_empty() {
        s
    } else {
        format!("{s}: {source}")
    }
}

/// Creates the new relation under a temporary name (dropping a leftover first).
fn create_tmp_sql(rel: &Relation, create_tmp: &str) -> String {
    format!(
        "{}\n{create_tmp};",
        drop_any_sql(&rel.schema, &format!("{}__dbt_tmp", rel.identifier))
    )
}

/// Drops `schema.name` whatever kind of relation it is, if it exists: PostgreSQL's
/// `drop table if exists` fails on a view ("is not a table"), and `drop view` on a table.
fn drop_any_sql(schema: &str, name: &str) -> String {
    let target = format!("{}.{}", quote(schema), quote(name));
    let drop = |what: &str| literal(&format!("drop {what} {target} cascade"));
    format!(
        "do $$ declare k \"char\";\nbegin\n  select c.relkind into k from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = {} and c.relname = {};\n  \
         if k in ('r', 'p', 'f') then execute {};\n  elsif k = 'v' then execute {};\n  elsif k = 'm' then execute {};\n  end if;\nend $$;",
        literal(schema),
        literal(name),
        drop("table"),
        drop("view"),
        drop("materialized view"),
    )
}

/// Moves the old relation (of either kind) aside, gives the new one its name and drops the
/// old one; the caller runs it inside the same transaction as the build.
fn swap_in_sql(rel: &Relation, kind: &str) -> String {
    let schema = quote(&rel.schema);
    let backup = format!("{}__dbt_backup", rel.identifier);
    let exists = |kinds: &str| {
        format!(
            "exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = {} and c.relname = {} and c.relkind in ({kinds}))",
            literal(&rel.schema),
            literal(&rel.identifier)
        )
    };
    let rename = |what: &str| {
        format!(
            "execute {}",
            literal(&format!(
                "alter {what} {schema}.{} rename to {}",
                quote(&rel.identifier),
                quote(&backup)
            ))
        )
    };
    let drop_backup = drop_any_sql(&rel.schema, &backup);
    format!(
        "{drop_backup}\n\
         do $$ begin\n  if {} then {};\n  elsif {} then {};\n  end if;\nend $$;\n\
         alter {kind} {} rename to {};\n\
         {drop_backup}",
        exists("'r','p'"),
        rename("table"),
        exists("'v','m'"),
        rename("view"),
        tmp_name(rel),
        quote(&rel.identifier),
    )
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The relation without its database part: PostgreSQL only allows the current database.
fn pg_name(rel: &Relation) -> String {
    format!("{}.{}", quote(&rel.schema), quote(&rel.identifier))
}

/// Where a relation is built before it is swapped in.
fn tmp_name(rel: &Relation) -> String {
    format!(
        "{}.{}",
        quote(&rel.schema),
        quote(&format!("{}__dbt_tmp", rel.identifier))
    )
}

/// PostgreSQL column types for a seed, as arrow-csv infers them, and `column_types`.
fn seed_columns(seed: &SeedSpec) -> Result<Vec<(String, String)>, AdapterError> {
    use datafusion::arrow::datatypes::DataType;
    std::fs::File::open(&seed.path)
        .map_err(|e| AdapterError(format!("{}: cannot open: {e}", seed.display_path)))?;
    let schema = crate::adapter::csv_types::infer(&seed.path, seed.delimiter).map_err(|e| {
        AdapterError(format!(
            "{}: {e} (check the header and that every row has the same number of fields)",
            seed.display_path
        ))
    })?;
    Ok(schema
        .fields()
        .iter()
        .map(|f| {
            let ty = match seed
                .column_types
                .iter()
                .find(|(c, _)| c.eq_ignore_ascii_case(f.name()))
            {
                Some((_, t)) => t.clone(),
                // A column with no values is an integer, as dbt loads it.
                None => match f.data_type() {
                    DataType::Null
                    | DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64 => "bigint".into(),
                    DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                        "double precision".into()
                    }
                    DataType::Boolean => "boolean".into(),
                    DataType::Date32 | DataType::Date64 => "date".into(),
                    DataType::Timestamp(..) => "timestamp".into(),
                    _ => "text".into(),
                },
            };
            // A byte-order mark (files saved by Excel) is not part of the first column's name.
            (f.name().trim_start_matches('\u{feff}').to_string(), ty)
        })
        .collect())
}

/// Column names of a query's result.
async fn columns_of(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
) -> Result<Vec<String>, AdapterError> {
    let stmt = tx
        .prepare(&format!("select * from {sql} limit 0"))
        .await
        .map_err(pg_err)?;
    Ok(stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect())
}

/// An incremental run in one transaction: the new rows go to a temp table, then the strategy
/// moves them into the table.
async fn incremental(
    c: &mut Client,
    spec: &crate::materialize::IncrementalSpec,
) -> Result<Applied, AdapterError> {
    use crate::materialize::{SchemaChange, Strategy};
    let rel = &spec.relation;
    let target = pg_name(rel);
    let tmp = quote(&format!("{}__dbt_tmp", rel.identifier));
    let tx = c.transaction().await.map_err(pg_err)?;
    tx.batch_execute(&format!(
        "create temporary table {tmp} on commit drop as (\n{}\n)",
        spec.sql.trim().trim_end_matches(';')
    ))
    .await
    .map_err(pg_err)?;
    let source = columns_of(&tx, &tmp).await?;
    let existing = columns_of(&tx, &target).await?;
    let added: Vec<&String> = source.iter().filter(|c| !existing.contains(c)).collect();
    let removed: Vec<&String> = existing.iter().filter(|c| !source.contains(c)).collect();
    if !added.is_empty() || !removed.is_empty() {
        match spec.on_schema_change {
            SchemaChange::Fail => {
                return Err(AdapterError(format!(
                    "The source and target schemas on this incremental model are out of sync: new columns {added:?}, missing columns {removed:?}. Set on_schema_change (append_new_columns, sync_all_columns) or run with --full-refresh"
                )));
            }
            SchemaChange::AppendNewColumns | SchemaChange::SyncAllColumns => {
                for col in &added {
                    let ty: String = tx
                        .query_one("select format_type(a.atttypid, a.atttypmod) from pg_attribute a where a.attrelid = $1::regclass and a.attname = $2", &[&tmp, col])
                        .await
                        .map_err(pg_err)?
                        .get(0);
                    tx.batch_execute(&format!(
                        "alter table {target} add column {} {ty}",
                        quote(col)
                    ))
                    .await
                    .map_err(pg_err)?;
                }
                if spec.on_schema_change == SchemaChange::SyncAllColumns {
                    for col in &removed {
                        tx.batch_execute(&format!(
                            "alter table {target} drop column {}",
                            quote(col)
                        ))
                        .await
                        .map_err(pg_err)?;
                    }
                }
            }
            SchemaChange::Ignore => {}
        }
    }
    let columns: Vec<String> = match spec.on_schema_change {
        SchemaChange::Ignore | SchemaChange::Fail => source
            .iter()
            .filter(|c| existing.contains(c))
            .cloned()
            .collect(),
        _ => source.clone(),
    };
    let rows: i64 = tx
        .query_one(&format!("select count(*) from {tmp}"), &[])
        .await
        .map_err(pg_err)?
        .get(0);
    let cols = columns
        .iter()
        .map(|c| quote(c))
        .collect::<Vec<_>>()
        .join(", ");
    let insert = format!("insert into {target} ({cols}) select {cols} from {tmp}");
    let keys_match = |a: &str, b: &str| {
        spec.unique_key
            .iter()
            .map(|k| format!("{a}.{q} = {b}.{q}", q = quote(k)))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let extra: String = spec
        .predicates
        .iter()
        .map(|p| format!(" and ({p})"))
        .collect();
    let strategy = if spec.strategy == Strategy::Merge && spec.unique_key.is_empty() {
        Strategy::Append
    } else {
        spec.strategy
    };
    let code = match strategy {
        Strategy::Append => {
            if rows > 0 {
                tx.batch_execute(&insert).await.map_err(pg_err)?;
            }
            "INSERT"
        }
        Strategy::Merge => {
            if rows > 0 {
                let update_cols: Vec<&String> = match &spec.merge_update_columns {
                    Some(u) => columns.iter().filter(|c| u.contains(c)).collect(),
                    None => columns
                        .iter()
                        .filter(|c| !spec.merge_exclude_columns.contains(c))
                        .collect(),
                };
                let set: Vec<String> = update_cols
                    .iter()
                    .map(|c| format!("{q} = DBT_INTERNAL_SOURCE.{q}", q = quote(c)))
                    .collect();
                let values: Vec<String> = columns
                    .iter()
                    .map(|c| format!("DBT_INTERNAL_SOURCE.{}", quote(c)))
                    .collect();
                let matched = if set.is_empty() {
                    String::new()
                } else {
                    format!("when matched then update set {}\n", set.join(", "))
                };
                tx.batch_execute(&format!(
                    "merge into {target} as DBT_INTERNAL_DEST using {tmp} as DBT_INTERNAL_SOURCE\non {}{extra}\n{matched}when not matched then insert ({cols}) values ({})",
                    keys_match("DBT_INTERNAL_DEST", "DBT_INTERNAL_SOURCE"),
                    values.join(", ")
                ))
                .await
                .map_err(pg_err)?;
            }
            "MERGE"
        }
        Strategy::DeleteInsert => {
            if rows > 0 {
                tx.batch_execute(&format!(
                    "delete from {target} as DBT_INTERNAL_DEST using {tmp} as DBT_INTERNAL_SOURCE where {}{extra};\n{insert}",
                    keys_match("DBT_INTERNAL_DEST", "DBT_INTERNAL_SOURCE")
                ))
                .await
                .map_err(pg_err)?;
            }
            "DELETE+INSERT"
        }
        Strategy::Microbatch => {
            let window = spec.replace_where.as_deref().unwrap_or("false");
            tx.batch_execute(&format!("delete from {target} where {window};\n{insert}"))
                .await
                .map_err(pg_err)?;
            "MICROBATCH"
        }
        Strategy::InsertOverwrite => {
            return Err(AdapterError(format!(
                "model {}: incremental_strategy 'insert_overwrite' is not available on PostgreSQL (as in dbt-postgres); use delete+insert, merge or append here, or the embedded target (Delta)",
                rel.identifier
            )));
        }
    };
    tx.commit().await.map_err(pg_err)?;
    Ok(Applied {
        code: code.into(),
        rows_affected: Some(rows as u64),
    })
}

impl Adapter for PostgresAdapter {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn apply(&self, op: &Operation) -> Result<Applied, AdapterError> {
        match op {
            Operation::CreateTableAs { relation, .. }
            | Operation::CreateView { relation, .. }
            | Operation::LoadSeed { relation, .. } => self.ensure_schema(&relation.schema).await?,
            _ => {}
        }
        match op {
            // One kind of table here: `table_format` is the embedded target's.
            Operation::CreateTableAs { relation, sql, .. } => {
                self.replace(relation, "table", sql).await
            }
            Operation::CreateView { relation, sql } => self.replace(relation, "view", sql).await,
            Operation::LoadSeed { relation, seed, .. } => {
                let cols = seed_columns(seed)?;
                let defs: Vec<String> = cols
                    .iter()
                    .map(|(c, t)| format!("{} {t}", quote(c)))
                    .collect();
                let create = format!("create table {} ({})", tmp_name(relation), defs.join(", "));
                let copy = format!(
                    "copy {} from stdin with (format csv, header true, null '', delimiter {})",
                    tmp_name(relation),
                    literal(&(seed.delimiter as char).to_string())
                );
                self.with_client(async |c| {
                    let tx = c.transaction().await.map_err(pg_err)?;
                    tx.batch_execute(&create_tmp_sql(relation, &create))
                        .await
                        .map_err(pg_err)?;
                    // Stream the file: a large seed never sits in memory whole.
                    let sink = tx.copy_in(&copy).await.map_err(pg_err)?;
                    futures::pin_mut!(sink);
                    let mut file = tokio::fs::File::open(&seed.path).await.map_err(err)?;
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf)
                            .await
                            .map_err(err)?;
                        if n == 0 {
                            break;
                        }
                        sink.send(Bytes::copy_from_slice(&buf[..n]))
                            .await
                            .map_err(|e| {
                                AdapterError(format!("{}: {}", seed.display_path, pg_err(e).0))
                            })?;
                    }
                    let rows = sink.finish().await.map_err(|e| {
                        AdapterError(format!("{}: {}", seed.display_path, pg_err(e).0))
                    })?;
                    tx.batch_execute(&swap_in_sql(relation, "table"))
                        .await
                        .map_err(pg_err)?;
                    tx.commit().await.map_err(pg_err)?;
                    Ok(Applied {
                        code: "INSERT".into(),
                        rows_affected: Some(rows),
                    })
                })
                .await
            }
            Operation::RunSql { sql } => {
                self.with_client(async |c| {
                    c.batch_execute(sql).await.map_err(pg_err).map(|_| Applied {
                        code: "OK".into(),
                        rows_affected: None,
                    })
                })
                .await
            }
            Operation::Incremental(spec) => {
                self.with_client(async |c| incremental(c, spec).await).await
            }
            // The model is already a PostgreSQL table here.
            Operation::Publish { .. } => Ok(Applied {
                code: "SKIP".into(),
                rows_affected: None,
            }),
            Operation::Grant { relation, grants } => {
                let name = pg_name(relation);
                let sql: String = grants
                    .iter()
                    .map(|(privilege, who)| {
                        format!("grant {privilege} on {name} to {};\n", who.join(", "))
                    })
                    .collect();
                self.with_client(async |c| c.batch_execute(&sql).await.map_err(pg_err))
                    .await?;
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
                let name = pg_name(relation);
                self.with_client(async |c| {
                    let tx = c.transaction().await.map_err(pg_err)?;
                    let mut sql = String::new();
                    if let Some(text) = relation_comment {
                        let kind = if *view { "view" } else { "table" };
                        sql += &format!("comment on {kind} {name} is {};\n", literal(text));
                    }
                    // As dbt-postgres: only documented columns the relation has.
                    let existing = columns_of(&tx, &name).await?;
                    for (col, text) in columns {
                        if existing.iter().any(|e| e == col) {
                            sql += &format!(
                                "comment on column {name}.{} is {};\n",
                                quote(col),
                                literal(text)
                            );
                        }
                    }
                    tx.batch_execute(&sql).await.map_err(pg_err)?;
                    tx.commit().await.map_err(pg_err)
                })
                .await?;
                Ok(Applied {
                    code: "COMMENT".into(),
                    rows_affected: None,
                })
            }
        }
    }

    async fn query(&self, sql: &str, limit: Option<usize>) -> Result<QueryResult, AdapterError> {
        self.with_client(async |c| query_on(c, sql, limit).await)
            .await
    }

    async fn query_in_session(&self, session: u64, sql: &str) -> Result<QueryResult, AdapterError> {
        let client = {
            let mut sessions = self.sessions.lock().await;
            match sessions.get(&session) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(Mutex::new(self.open_session().await?));
                    sessions.insert(session, c.clone());
                    c
                }
            }
        };
        let mut client = client.lock().await;
        query_on(&mut client, sql, None).await
    }

    async fn try_lock(
        &self,
        holder: &crate::adapter::Holder,
    ) -> Result<crate::adapter::Locked, AdapterError> {
        use crate::adapter::Locked;
        let mut session = self.lock.session.lock().await;
        if session.is_none() {
            *session = Some(self.open_session().await?);
        }
        let c = session.as_ref().expect("opened above");
        // What a second run is told: PostgreSQL keeps 63 bytes of an application name.
        let mut name = format!(
            "rsdbt pid {} on {}: {}",
            holder.pid, holder.host, holder.command
        );
        while name.len() > 63 {
            name.pop();
        }
        c.execute("select set_config('application_name', $1, false)", &[&name])
            .await
            .map_err(pg_err)?;
        let got: bool = c
            .query_one(LOCK_SQL, &[&self.lock.key])
            .await
            .map_err(pg_err)?
            .get(0);
        if got {
            return Ok(Locked::Taken);
        }
        let who = c
            .query_opt(LOCK_HOLDER_SQL, &[&self.lock.key])
            .await
            .map_err(pg_err)?
            .map(|r| {
                format!(
                    "session '{}' (backend pid {}, from {}, connected {})",
                    r.get::<_, String>(0),
                    r.get::<_, i32>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3)
                )
            })
            .unwrap_or_else(|| "another session".into());
        Ok(Locked::HeldBy(who))
    }

    async fn unlock(&self) {
        if let Some(c) = self.lock.session.lock().await.take() {
            let _ = c
                .execute(
                    "select pg_advisory_unlock(hashtext('rsdbt'), hashtext($1))",
                    &[&self.lock.key],
                )
                .await;
        }
    }

    async fn relation_type(&self, relation: &Relation) -> Option<&'static str> {
        let out = self
            .with_client(async |c| {
                let row = c
                    .query_opt(
                        "select c.relkind::text from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2",
                        &[&relation.schema.as_str(), &relation.identifier.as_str()],
                    )
                    .await
                    .map_err(pg_err)?;
                Ok(row.map(|r| r.get::<_, String>(0)))
            })
            .await;
        match out.ok().flatten().as_deref() {
            Some("v") | Some("m") => Some("view"),
            Some(_) => Some("table"),
            None => None,
        }
    }

    async fn check(&self) -> Result<String, AdapterError> {
        let version: String = self
            .with_client(async |c| {
                c.query_one("select version()", &[])
                    .await
                    .map_err(pg_err)
                    .map(|r| r.get(0))
            })
            .await?;
        Ok(format!(
            "{} ({})",
            self.summary,
            version.split(',').next().unwrap_or(&version)
        ))
    }
}

/// TLS as libpq's `sslmode` means it: `prefer` / `require` encrypt without checking the server's
/// certificate; `verify-ca` / `verify-full` check it against `sslrootcert` (both also check the
/// host name, so `verify-ca` is as strict as `verify-full`).
mod tls {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use tokio_postgres_rustls::MakeRustlsConnect;

    use crate::adapter::AdapterError;

    /// The connector for `sslmode`, or none for `disable`.
    pub fn connector(
        sslmode: &str,
        rootcert: Option<&str>,
    ) -> Result<Option<MakeRustlsConnect>, AdapterError> {
        let fail = |msg: String| AdapterError(msg);
        // Both ring and aws-lc-rs are in the tree, so name the provider instead of relying on
        // a process default.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(format!("TLS setup failed: {e}")))?;
        let config = match sslmode {
            "disable" => return Ok(None),
            "allow" | "prefer" | "require" => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth(),
            "verify-ca" | "verify-full" => {
                let path = rootcert.ok_or_else(|| {
                    fail(format!(
                        "sslmode '{sslmode}' needs `sslrootcert`: the CA certificate (PEM) that signed the server's certificate"
                    ))
                })?;
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| fail(format!("cannot read sslrootcert {path}: {e}")))?;
                for cert in certs {
                    let cert = cert.map_err(|e| fail(format!("sslrootcert {path}: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| fail(format!("sslrootcert {path}: {e}")))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            other => {
                return Err(fail(format!(
                    "unknown sslmode '{other}' (disable, allow, prefer, require, verify-ca, verify-full)"
                )));
            }
        };
        Ok(Some(MakeRustlsConnect::new(config)))
    }

    /// Accepts the server's certificate unseen (libpq's `require`) but still checks that the
    /// handshake is signed by it.
    #[derive(Debug)]
    struct EncryptOnly(Arc<CryptoProvider>);

    impl ServerCertVerifier for EncryptOnly {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

/// Runs `sql` on `c`: its rows (at most `limit`), or an empty table for a statement without a
/// result set. After a failure the session's transaction is rolled back: a failed statement
/// inside `begin` would fail every later one on the session.
async fn query_on(
    c: &mut Client,
    sql: &str,
    limit: Option<usize>,
) -> Result<QueryResult, AdapterError> {
    let out = run_sql(c, sql.trim().trim_end_matches(';'), limit).await;
    if out.is_err() {
        let _ = c.batch_execute("rollback").await;
    }
    out
}

async fn run_sql(
    c: &mut Client,
    body: &str,
    limit: Option<usize>,
) -> Result<QueryResult, AdapterError> {
    let stmt = match c.prepare(body).await {
        Ok(stmt) => stmt,
        // Several statements (`begin; ...; commit;` from a macro) cannot be prepared:
        // they run as a batch and yield an empty table, as dbt's `run_query` of them.
        Err(e)
            if e.as_db_error()
                .is_some_and(|d| d.message().contains("multiple commands")) =>
        {
            c.batch_execute(body).await.map_err(pg_err)?;
            return Ok(QueryResult::default());
        }
        Err(e) => return Err(pg_err(e)),
    };
    // A statement without a result set (DDL, DML; `run_query` and `statement` blocks
    // run those too) is executed as is, and yields an empty table.
    if stmt.columns().is_empty() {
        c.execute(&stmt, &[]).await.map_err(pg_err)?;
        return Ok(QueryResult::default());
    }
    let columns: Vec<String> = stmt
        .columns()
        .iter()
        .map(|col| col.name().to_string())
        .collect();
    // information_schema's names, as dbt-postgres reports them.
    let types: Vec<String> = stmt
        .columns()
        .iter()
        .map(|col| {
            match col.type_().name() {
                "int8" => "bigint",
                "int4" => "integer",
                "int2" => "smallint",
                "float8" => "double precision",
                "float4" => "real",
                "bool" => "boolean",
                "varchar" => "character varying",
                "bpchar" => "character",
                "timestamp" => "timestamp without time zone",
                "timestamptz" => "timestamp with time zone",
                other => other,
            }
            .to_string()
        })
        .collect();
    // row_to_json writes the float 342.0 as 342; keep floats floats, as DataFusion does.
    let float: Vec<bool> = stmt
        .columns()
        .iter()
        .map(|col| matches!(*col.type_(), Type::FLOAT4 | Type::FLOAT8))
        .collect();
    let limit = limit.map(|n| format!(" limit {n}")).unwrap_or_default();
    // row_to_json keeps numbers, booleans and nulls typed.
    let rows = c
        .query(
            &format!("select row_to_json(q) from (\n{body}\n) q{limit}"),
            &[],
        )
        .await
        .map_err(pg_err)?;
    let rows = rows
        .iter()
        .map(|r| {
            let obj: Json = r.get(0);
            columns
                .iter()
                .zip(&float)
                .map(|(name, &float)| match obj.get(name) {
                    Some(Json::Number(n)) if float => {
                        n.as_f64().map(Json::from).unwrap_or(Json::Null)
                    }
                    Some(v) => v.clone(),
                    None => Json::Null,
                })
                .collect()
        })
        .collect();
    Ok(QueryResult {
        columns,
        types,
        rows,
    })
}
