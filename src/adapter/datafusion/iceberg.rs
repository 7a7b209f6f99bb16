//! Iceberg tables in the warehouse folder (`table_format: iceberg`).
//!
//! The table pointers live in iceberg-rust's SQL catalog on SQLite, `<warehouse>/iceberg.db`
//! (catalog name `rsdbt`, one namespace per schema) — the catalog layout pyiceberg's
//! `SqlCatalog` reads too. A warehouse on S3 keeps that file on the local disk (the target's
//! `iceberg_catalog:`), as pyiceberg's SqlCatalog does with an `s3://` warehouse: SQLite needs
//! a file system. Each build of a table gets its own location,
//! `<warehouse>/<schema>/<table>.iceberg/<build id>/` (`metadata/`, `data/`); the
//! `<table>.iceberg` folder also tells the synchronous parts of DataFusion's catalog API that
//! the name is an Iceberg table without opening the catalog.
//!
//! iceberg-rust 0.10 can only append to a table. So a build (first run, full refresh, `table`
//! materialization, snapshot) writes a complete new table under a temporary name and swaps it
//! in by renaming — the old table stays whole until the new one is committed — and an
//! incremental run appends one snapshot (nothing for an empty increment).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{Expr, cast, col};
use datafusion::parquet::file::properties::WriterProperties;
use futures::StreamExt;
use iceberg::spec::DataFileFormat;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalog, SqlCatalogBuilder};
use tokio::sync::OnceCell;

use super::store::Store;
use crate::adapter::AdapterError;

/// The catalog file in the warehouse folder.
pub const CATALOG_FILE: &str = "iceberg.db";
/// The name rows of the SQL catalog are stored under (pyiceberg: `load_catalog("rsdbt", ...)`).
pub const CATALOG_NAME: &str = "rsdbt";
const TMP_SUFFIX: &str = "__rsdbt_tmp";
const BACKUP_SUFFIX: &str = "__rsdbt_backup";

fn err(e: impl std::fmt::Display) -> AdapterError {
    AdapterError(format!("Iceberg: {e}"))
}

/// The name of the folder, in its schema's folder, that holds every build of an Iceberg table.
pub fn dir_name(name: &str) -> String {
    format!("{name}.iceberg")
}

/// The table whose builds folder `dir` is, if it is one.
pub fn table_of_dir(dir: &str) -> Option<&str> {
    dir.strip_suffix(".iceberg")
}

#[derive(Debug)]
pub struct Lake {
    store: Arc<Store>,
    /// The SQLite file of the catalog; None: `<warehouse>/iceberg.db` (local warehouses only).
    catalog_file: Option<PathBuf>,
    catalog: OnceCell<Arc<SqlCatalog>>,
    namespaces: tokio::sync::Mutex<()>,
}

impl Lake {
    pub fn new(store: Arc<Store>, catalog_file: Option<PathBuf>) -> Self {
        Self {
            store,
            catalog_file,
            catalog: OnceCell::new(),
            namespaces: tokio::sync::Mutex::new(()),
        }
    }

    /// The SQLite file of the catalog.
    fn catalog_path(&self) -> Result<PathBuf, AdapterError> {
        match (&self.catalog_file, self.store.as_ref()) {
            (Some(file), _) => Ok(file.clone()),
            (None, Store::Local(root)) => Ok(root.join(CATALOG_FILE)),
            (None, _) => Err(err(format!(
                "the warehouse {} is on object storage, so its Iceberg catalog needs a local file: set `iceberg_catalog: <path>.db` in the target in profiles.yml",
                self.store.display()
            ))),
        }
    }

    /// The catalog, opened (and created) on first use: a warehouse with no Iceberg table
    /// never gets a catalog file.
    async fn catalog(&self) -> Result<&Arc<SqlCatalog>, AdapterError> {
        self.catalog
            .get_or_try_init(|| async {
                let db = self.catalog_path()?;
                let builder = SqlCatalogBuilder::default();
                let builder = if self.store.is_local() {
                    builder.with_storage_factory(Arc::new(iceberg::io::LocalFsStorageFactory))
                } else {
                    builder.with_storage_factory(Arc::new(super::s3::IcebergS3Factory))
                };
                if let Some(dir) = db.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        err(format!(
                            "cannot create the catalog's folder {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let catalog = builder
                    .uri(format!("sqlite:{}?mode=rwc", db.display()))
                    .warehouse_location(self.store.url(&[]))
                    .sql_bind_style(SqlBindStyle::QMark)
                    .load(CATALOG_NAME, HashMap::new())
                    .await
                    .map_err(|e| err(format!("cannot open the catalog {}: {e}", db.display())))?;
                Ok(Arc::new(catalog))
            })
            .await
    }

    fn ident(schema: &str, name: &str) -> TableIdent {
        TableIdent::new(NamespaceIdent::new(schema.to_string()), name.to_string())
    }

    /// Whether `schema.name` is an Iceberg table: the catalog has it. Its folder alone is not
    /// one (a first build killed before its commit to the catalog leaves files there).
    pub async fn exists(&self, schema: &str, name: &str) -> bool {
        if !self.store.is_iceberg(schema, name).await {
            return false;
        }
        match self.catalog().await {
            Ok(catalog) => catalog
                .table_exists(&Self::ident(schema, name))
                .await
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// The current version of table `schema.name`, if it is an Iceberg table.
    pub async fn load(&self, schema: &str, name: &str) -> Result<Option<Table>, AdapterError> {
        if !self.store.is_iceberg(schema, name).await {
            return Ok(None);
        }
        let catalog = self.catalog().await?;
        let ident = Self::ident(schema, name);
        if !catalog.table_exists(&ident).await.map_err(err)? {
            return Ok(None);
        }
        catalog.load_table(&ident).await.map(Some).map_err(err)
    }

    /// Replaces (or creates) table `schema.name` with the rows of `df`. Returns the row count.
    pub async fn replace(
        &self,
        schema: &str,
        name: &str,
        df: DataFrame,
    ) -> Result<u64, AdapterError> {
        let catalog = self.catalog().await?;
        let ns = NamespaceIdent::new(schema.to_string());
        if !catalog.namespace_exists(&ns).await.map_err(err)? {
            // Builds of one run create a schema's namespace one at a time; another process
            // may still win the race, which is fine as long as the namespace exists after.
            let _one_at_a_time = self.namespaces.lock().await;
            if !catalog.namespace_exists(&ns).await.map_err(err)?
                && let Err(e) = catalog.create_namespace(&ns, HashMap::new()).await
                && !catalog.namespace_exists(&ns).await.unwrap_or(false)
            {
                return Err(err(e));
            }
        }
        let tmp = Self::ident(schema, &format!("{name}{TMP_SUFFIX}"));
        self.purge(&tmp).await?;
        // What a run of an older rsdbt, which swapped by two renames, may have left: the old
        // table under its backup name, put back if it never got its new version.
        let backup = Self::ident(schema, &format!("{name}{BACKUP_SUFFIX}"));
        if catalog.table_exists(&backup).await.map_err(err)? {
            let target = Self::ident(schema, name);
            if catalog.table_exists(&target).await.map_err(err)? {
                self.purge(&backup).await?;
            } else {
                catalog.rename_table(&backup, &target).await.map_err(err)?;
            }
        }
        let df = storable(df)?;
        // Every column optional (see `storable`), whatever the plan says of its nulls.
        let nullable = datafusion::arrow::datatypes::Schema::new(
            df.schema()
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        let iceberg_schema =
            iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&nullable).map_err(err)?;
        let build = uuid::Uuid::new_v4().to_string();
        let location = self.store.url(&[schema, &dir_name(name), &build]);
        let creation = TableCreation::builder()
            .name(tmp.name().to_string())
            .location(location.clone())
            .schema(iceberg_schema)
            .build();
        let table = catalog.create_table(&ns, creation).await.map_err(err)?;
        let rows = match append(catalog.as_ref(), &table, df).await {
            Ok(rows) => rows,
            Err(e) => {
                let _ = self.purge(&tmp).await;
                let _ = self.store.delete_url(&location).await;
                return Err(e);
            }
        };
        // The swap, in one transaction of the catalog: a reader, or a run killed at any moment,
        // sees the old table or the new one, never neither. Then the old build's files go.
        let old = match self.swap(schema, &tmp, name).await {
            Ok(old) => old,
            Err(e) => {
                let _ = self.purge(&tmp).await;
                return Err(e);
            }
        };
        if let Some(old) = old
            && let Some((build, _)) = old.rsplit_once("/metadata/")
            && build != location.trim_end_matches('/')
        {
            let _ = self.store.delete_url(build).await;
        }
        Ok(rows)
    }

    /// Points table `schema.name` at the build table `tmp` holds and removes `tmp`, in one
    /// transaction of the catalog's SQLite database (iceberg-rust's catalog has no atomic
    /// replace, and two renames leave a moment with no table). Returns the metadata location
    /// the table had, if it existed.
    async fn swap(
        &self,
        schema: &str,
        tmp: &TableIdent,
        name: &str,
    ) -> Result<Option<String>, AdapterError> {
        use sqlx::{Connection, Executor};
        let db = self.catalog_path()?;
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .busy_timeout(std::time::Duration::from_secs(30));
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .map_err(err)?;
        // IMMEDIATE: the write lock is taken first (waiting for other writers), so the reads
        // below are never upgraded to a write another connection blocks (SQLITE_BUSY at once).
        conn.execute("begin immediate").await.map_err(err)?;
        let result = swap_in(&mut conn, schema, tmp.name(), name).await;
        let end = if result.is_ok() { "commit" } else { "rollback" };
        conn.execute(end).await.map_err(err)?;
        result
    }

    /// Appends the rows of `df` to table `schema.name` as one snapshot, cast to the table's
    /// columns (columns the table lacks are dropped, missing ones NULL). Returns the row count.
    pub async fn append(
        &self,
        schema: &str,
        name: &str,
        df: DataFrame,
    ) -> Result<u64, AdapterError> {
        let catalog = self.catalog().await?;
        let table = catalog
            .load_table(&Self::ident(schema, name))
            .await
            .map_err(err)?;
        let target = iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
            .map_err(err)?;
        let df = super::conform(df, &target)?;
        append(catalog.as_ref(), &table, df).await
    }

    /// Drops table `schema.name` with its files (when a view or a Delta table replaces it).
    pub async fn remove(&self, schema: &str, name: &str) -> Result<(), AdapterError> {
        if !self.store.is_iceberg(schema, name).await {
            return Ok(());
        }
        self.purge(&Self::ident(schema, name)).await?;
        self.store
            .delete(&[schema, &dir_name(name)])
            .await
            .map_err(err)
    }

    /// Removes a table from the catalog and deletes the folder of its build.
    async fn purge(&self, ident: &TableIdent) -> Result<(), AdapterError> {
        let catalog = self.catalog().await?;
        if !catalog.table_exists(ident).await.map_err(err)? {
            return Ok(());
        }
        let table = catalog.load_table(ident).await.map_err(err)?;
        catalog.drop_table(ident).await.map_err(err)?;
        let _ = self.store.delete_url(table.metadata().location()).await;
        Ok(())
    }
}

/// [`Lake::swap`]'s statements, inside its transaction: `name` takes the metadata of `tmp`'s
/// build (or `tmp`'s entry takes the name, when `name` is new) and `tmp`'s entry goes.
async fn swap_in(
    tx: &mut sqlx::SqliteConnection,
    schema: &str,
    tmp: &str,
    name: &str,
) -> Result<Option<String>, AdapterError> {
    let new = metadata_location(tx, schema, tmp).await?.ok_or_else(|| {
        err(format!(
            "the new build {schema}.{tmp} is not in the catalog"
        ))
    })?;
    let old = metadata_location(tx, schema, name).await?;
    if old.is_some() {
        on_row(
            tx,
            "update iceberg_tables set metadata_location = ?, previous_metadata_location = null",
            &new,
            schema,
            name,
        )
        .await?;
        on_row(tx, "delete from iceberg_tables", "", schema, tmp).await?;
    } else {
        on_row(
            tx,
            "update iceberg_tables set table_name = ?",
            name,
            schema,
            tmp,
        )
        .await?;
    }
    Ok(old)
}

/// The catalog row of table `schema.table`, as SQL.
const CATALOG_ROW: &str = " where catalog_name = ? and table_namespace = ? and table_name = ?";

async fn metadata_location(
    tx: &mut sqlx::SqliteConnection,
    schema: &str,
    table: &str,
) -> Result<Option<String>, AdapterError> {
    use sqlx::Row;
    let sql = format!("select metadata_location from iceberg_tables{CATALOG_ROW}");
    sqlx::query(&sql)
        .bind(CATALOG_NAME)
        .bind(schema)
        .bind(table)
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(err)
}

/// Runs `statement` on the catalog row of `schema.table`; `value` fills the statement's own
/// `?` when it has one.
async fn on_row(
    tx: &mut sqlx::SqliteConnection,
    statement: &str,
    value: &str,
    schema: &str,
    table: &str,
) -> Result<(), AdapterError> {
    let sql = format!("{statement}{CATALOG_ROW}");
    let mut query = sqlx::query(&sql);
    if statement.contains('?') {
        query = query.bind(value);
    }
    query
        .bind(CATALOG_NAME)
        .bind(schema)
        .bind(table)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    Ok(())
}

/// Writes the rows of `df` (already in the table's column types) as data files and commits
/// them to `table` as one appended snapshot. An empty input commits nothing.
async fn append(catalog: &dyn Catalog, table: &Table, df: DataFrame) -> Result<u64, AdapterError> {
    let schema = table.metadata().current_schema().clone();
    // The written batches must carry Iceberg's field ids.
    let arrow_schema = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).map_err(err)?);
    let files = RollingFileWriterBuilder::new_with_default_file_size(
        ParquetWriterBuilder::new(WriterProperties::default(), schema),
        table.file_io().clone(),
        DefaultLocationGenerator::new(table.metadata()).map_err(err)?,
        DefaultFileNameGenerator::new(
            "rsdbt".into(),
            Some(uuid::Uuid::new_v4().to_string()),
            DataFileFormat::Parquet,
        ),
    );
    let mut writer = DataFileWriterBuilder::new(files)
        .build(None)
        .await
        .map_err(err)?;
    let mut stream = df.execute_stream().await.map_err(err)?;
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(err)?;
        if batch.num_rows() == 0 {
            continue;
        }
        rows += batch.num_rows() as u64;
        let batch =
            RecordBatch::try_new(arrow_schema.clone(), batch.columns().to_vec()).map_err(err)?;
        writer.write(batch).await.map_err(err)?;
    }
    let files = writer.close().await.map_err(err)?;
    if rows == 0 || files.is_empty() {
        return Ok(0);
    }
    let tx = Transaction::new(table);
    let tx = tx
        .fast_append()
        .add_data_files(files)
        .apply(tx)
        .map_err(err)?;
    tx.commit(catalog).await.map_err(err)?;
    Ok(rows)
}

/// `df` with every column cast to a type Iceberg stores (strings as `string`, timestamps in
/// microseconds, small and unsigned integers widened) and nullable: dbt tables carry no NOT
/// NULL constraints, and a nullable column accepts what any later append brings.
fn storable(df: DataFrame) -> Result<DataFrame, AdapterError> {
    let exprs: Vec<Expr> = df
        .schema()
        .fields()
        .iter()
        .map(|f| {
            cast(
                col(datafusion::common::Column::new_unqualified(f.name())),
                storable_type(f.data_type()),
            )
            .alias(f.name())
        })
        .collect();
    df.select(exprs).map_err(err)
}

fn storable_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => DataType::Int32,
        DataType::UInt32 | DataType::UInt64 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        DataType::Date64 => DataType::Date32,
        // Iceberg's timestamptz is UTC; the instants are unchanged.
        DataType::Timestamp(_, tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, tz.as_ref().map(|_| "+00:00".into()))
        }
        DataType::Dictionary(_, v) => storable_type(v),
        DataType::Null => DataType::Utf8,
        other => other.clone(),
    }
}

/// The profile's named Iceberg catalogs that sources read tables through
/// (`iceberg_catalogs: {lakehouse: {uri: "sqlite:///path/catalog.db", warehouse: ...}}`): SQL
/// catalogs on SQLite, the kind pyiceberg's `SqlCatalog` writes. Each is opened on first use.
#[derive(Debug, Default)]
pub struct Catalogs(super::warehouse::Named<SqlCatalog>);

impl Catalogs {
    pub fn set(&self, settings: serde_json::Map<String, serde_json::Value>) {
        self.0.set(settings)
    }

    /// Table `namespace.table` of catalog `name`, as the catalog has it now.
    pub async fn table(&self, name: &str, namespace: &str, table: &str) -> Result<Table, String> {
        let catalog = self.get(name).await?;
        let ident = TableIdent::new(
            NamespaceIdent::new(namespace.to_string()),
            table.to_string(),
        );
        catalog
            .load_table(&ident)
            .await
            .map_err(|e| format!("catalog '{name}' cannot load {namespace}.{table}: {e}"))
    }

    async fn get(&self, name: &str) -> Result<Arc<SqlCatalog>, String> {
        self.0
            .get(name, ("Iceberg catalog", "iceberg_catalogs"), |fields| async move {
                let field = |k: &str| fields.get(k).and_then(|v| v.as_str());
                let uri = field("uri").ok_or_else(|| {
                    format!("Iceberg catalog '{name}' needs a `uri` (sqlite:///path/to/catalog.db)")
                })?;
                if !uri.starts_with("sqlite:") {
                    return Err(format!(
                        "Iceberg catalog '{name}': only SQL catalogs on SQLite (uri: sqlite:///path.db) can be read, not {uri}"
                    ));
                }
                let warehouse = field("warehouse").ok_or_else(|| {
                    format!("Iceberg catalog '{name}' needs its `warehouse` (the location its tables are under: a folder, file:// or s3://)")
                })?;
                let builder = SqlCatalogBuilder::default();
                let builder = if warehouse.starts_with("s3://") {
                    builder.with_storage_factory(Arc::new(super::s3::IcebergS3Factory))
                } else {
                    builder.with_storage_factory(Arc::new(iceberg::io::LocalFsStorageFactory))
                };
                // `mode=rw`: a wrong path is an error, not a new empty catalog.
                let sep = if uri.contains('?') { '&' } else { '?' };
                let catalog = builder
                    .uri(format!("{uri}{sep}mode=rw"))
                    .warehouse_location(warehouse.to_string())
                    .sql_bind_style(SqlBindStyle::QMark)
                    .load(field("catalog_name").unwrap_or(name), HashMap::new())
                    .await
                    .map_err(|e| format!("cannot open Iceberg catalog '{name}' ({uri}): {e}"))?;
                Ok(catalog)
            })
            .await
    }
}
