//! External sources as DataFusion tables: files through a listing table (a file, a folder or a
//! glob), Delta tables by path (optionally at a version), Iceberg tables by metadata file or
//! table folder (optionally at a snapshot). Resolved at planning time, like warehouse tables.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionState;

use crate::adapter::external::ExternalSource;

fn ext(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn plan_err(s: &ExternalSource, msg: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Plan(format!("{} ({}): {msg}", s.unique_id, s.location))
}

pub async fn provider(
    state: &SessionState,
    s: &ExternalSource,
    registry: &super::warehouse::ExternalRegistry,
) -> Result<Arc<dyn TableProvider>> {
    #[cfg(not(feature = "postgres"))]
    let _ = registry;
    match s.format.as_str() {
        #[cfg(feature = "postgres")]
        "postgres" => {
            let name = s.connection.as_deref().unwrap_or_default();
            let pg = registry
                .connections
                .get(name)
                .await
                .map_err(|e| plan_err(s, e))?;
            let table = super::pg_source::PostgresTable::open(pg, &s.schema, &s.identifier)
                .await
                .map_err(|e| plan_err(s, e))?;
            Ok(Arc::new(table))
        }
        #[cfg(not(feature = "postgres"))]
        "postgres" => Err(plan_err(s, "this build of rsdbt has no PostgreSQL support")),
        "kafka" => match &s.kafka {
            Some(k) => super::kafka::provider(state, s, k).await,
            None => Err(plan_err(s, "a Kafka source without its `kafka:` block")),
        },
        "kinesis" => match &s.kinesis {
            Some(k) => super::kinesis::provider(state, s, k).await,
            None => Err(plan_err(s, "a Kinesis source without its `kinesis:` block")),
        },
        "delta" => delta(state, s).await,
        "iceberg" if s.catalog.is_some() => from_catalog(s, registry).await,
        "iceberg" => iceberg(s).await,
        _ => files(state, s).await,
    }
}

async fn files(state: &SessionState, s: &ExternalSource) -> Result<Arc<dyn TableProvider>> {
    let opt = |k: &str| s.options.get(k).map(String::as_str);
    let (format, extension): (Arc<dyn FileFormat>, &str) = match s.format.as_str() {
        "parquet" => (Arc::new(ParquetFormat::default()), ".parquet"),
        "csv" => {
            let delimiter = opt("delimiter")
                .and_then(|d| d.bytes().next())
                .unwrap_or(b',');
            let header = opt("header").is_none_or(|h| h != "false");
            (
                Arc::new(
                    CsvFormat::default()
                        .with_delimiter(delimiter)
                        .with_has_header(header),
                ),
                ".csv",
            )
        }
        _ => (Arc::new(JsonFormat::default()), ".json"),
    };
    // A single file is read whatever its name; a folder or glob keeps the format's files.
    let extension = match opt("extension") {
        Some(e) => e.to_string(),
        None if std::path::Path::new(&s.location).is_file() => String::new(),
        None => extension.to_string(),
    };
    super::s3::register(state, &s.location).map_err(|e| plan_err(s, e))?;
    let url = ListingTableUrl::parse(&s.location).map_err(|e| plan_err(s, e))?;
    let options = ListingOptions::new(format).with_file_extension(extension.clone());
    let config = ListingTableConfig::new(url.clone())
        .with_listing_options(options.clone())
        .infer_schema(state)
        .await
        .map_err(|e| plan_err(s, e))?;
    // An empty listing infers an empty schema: say so rather than read zero columns.
    if config
        .file_schema
        .as_ref()
        .is_none_or(|f| f.fields().is_empty())
    {
        return Err(plan_err(
            s,
            "no data files found there; check the location (relative paths start at the project folder)",
        ));
    }
    if s.landed_files {
        return landed_files(state, s, url, options, config, &extension).await;
    }
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// `incremental: files`: in a write, only the files its table has not ingested yet, each
/// recorded (under its modification time) in the write's commit; a file rewritten since it was
/// ingested stops the node rather than being read twice or skipped silently.
async fn landed_files(
    state: &SessionState,
    s: &ExternalSource,
    url: ListingTableUrl,
    options: ListingOptions,
    config: ListingTableConfig,
    extension: &str,
) -> Result<Arc<dyn TableProvider>> {
    use futures::TryStreamExt;
    let schema = config
        .file_schema
        .clone()
        .ok_or_else(|| plan_err(s, "no schema"))?;
    let store = state.runtime_env().object_store(url.object_store())?;
    let files: Vec<_> = url
        .list_all_files(state, store.as_ref(), extension)
        .await?
        .try_collect()
        .await?;
    let prefix = url.prefix().as_ref().to_string();
    let mut new = Vec::new();
    for f in files {
        let path = f.location.as_ref();
        let relative = path
            .strip_prefix(&prefix)
            .unwrap_or(path)
            .trim_start_matches('/');
        let app_id = format!("rsdbt/files/{}/{relative}", s.unique_id);
        let modified = f.last_modified.timestamp_millis();
        match super::streams::ingested(&app_id)
            .await
            .map_err(|e| plan_err(s, e))?
        {
            Some(v) if v == modified => continue,
            Some(v) => {
                let at = chrono::DateTime::from_timestamp_millis(v).unwrap_or_default();
                return Err(plan_err(
                    s,
                    format!(
                        "the landed file {relative} was rewritten after it was ingested (then modified {at}, now {}); files are read once: land new data under a new name, or rebuild the table with --full-refresh",
                        f.last_modified
                    ),
                ));
            }
            None => {}
        }
        super::streams::ingest(&app_id, modified);
        let file_url = format!(
            "{}{}",
            url.object_store().as_str(),
            path.trim_start_matches('/')
        );
        new.push(ListingTableUrl::parse(&file_url).map_err(|e| plan_err(s, e))?);
    }
    if new.is_empty() {
        return Ok(Arc::new(datafusion::datasource::empty::EmptyTable::new(
            schema,
        )));
    }
    let config = ListingTableConfig::new_with_multi_paths(new)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

async fn delta(state: &SessionState, s: &ExternalSource) -> Result<Arc<dyn TableProvider>> {
    let url = deltalake::ensure_table_uri(&s.location).map_err(ext)?;
    let table = match s.version {
        Some(v) => deltalake::open_table_with_version(url, v).await,
        None => deltalake::open_table(url).await,
    }
    .map_err(|e| plan_err(s, e))?;
    table.update_datafusion_session(state).map_err(ext)?;
    table.table_provider().await
}

async fn from_catalog(
    s: &ExternalSource,
    registry: &super::warehouse::ExternalRegistry,
) -> Result<Arc<dyn TableProvider>> {
    let (catalog, namespace) = s.catalog.as_ref().expect("a catalog source");
    let table = registry
        .iceberg_catalogs
        .table(catalog, namespace, &s.identifier)
        .await
        .map_err(|e| plan_err(s, e))?;
    snapshot_provider(s, table).await
}

async fn snapshot_provider(
    s: &ExternalSource,
    table: iceberg::table::Table,
) -> Result<Arc<dyn TableProvider>> {
    let provider = match s.snapshot_id {
        Some(id) => {
            iceberg_datafusion::IcebergStaticTableProvider::try_new_from_table_snapshot(table, id)
                .await
        }
        None => iceberg_datafusion::IcebergStaticTableProvider::try_new_from_table(table).await,
    }
    .map_err(|e| plan_err(s, e))?;
    Ok(Arc::new(provider))
}

async fn iceberg(s: &ExternalSource) -> Result<Arc<dyn TableProvider>> {
    let on_s3 = s.location.starts_with("s3://");
    if s.location.contains("://") && !on_s3 && !s.location.starts_with("file://") {
        return Err(plan_err(
            s,
            "Iceberg tables are read from local folders or s3:// only",
        ));
    }
    let metadata = if s.location.ends_with(".metadata.json") {
        s.location.clone()
    } else if on_s3 {
        super::s3::latest_metadata(&s.location, newest_metadata)
            .await
            .ok_or_else(|| {
                plan_err(
                    s,
                    "no Iceberg metadata file (metadata/*.metadata.json) under this location",
                )
            })?
    } else {
        latest_metadata(&s.location).ok_or_else(|| {
            plan_err(
                s,
                "no Iceberg metadata file (metadata/*.metadata.json) under this folder",
            )
        })?
    };
    let file_io = if on_s3 {
        iceberg::io::FileIOBuilder::new(Arc::new(super::s3::IcebergS3Factory)).build()
    } else {
        iceberg::io::FileIOBuilder::new(Arc::new(iceberg::io::LocalFsStorageFactory)).build()
    };
    let ident =
        iceberg::TableIdent::from_strs([s.schema.as_str(), s.identifier.as_str()]).map_err(ext)?;
    let table = iceberg::table::StaticTable::from_metadata_file(&metadata, ident, file_io)
        .await
        .map_err(|e| plan_err(s, e))?
        .into_table();
    snapshot_provider(s, table).await
}

/// The newest metadata file of an Iceberg table folder: the highest version number that
/// starts its name (`00003-<uuid>.metadata.json`, or `v3.metadata.json`).
fn latest_metadata(dir: &str) -> Option<String> {
    let dir = std::path::Path::new(dir.strip_prefix("file://").unwrap_or(dir)).join("metadata");
    let files = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path().to_string_lossy().into_owned())
        .collect();
    newest_metadata(files)
}

/// Of metadata file paths, the one with the highest version number.
fn newest_metadata(paths: Vec<String>) -> Option<String> {
    paths
        .into_iter()
        .filter_map(|p| {
            let name = p.rsplit('/').next()?;
            let stem = name.strip_suffix(".metadata.json")?;
            let digits: String = stem
                .trim_start_matches('v')
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            Some((digits.parse::<u64>().ok()?, p.clone()))
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, p)| p)
}
