//! Parquet tables (`table_format: parquet`): plain Parquet files that any reader opens, with no
//! table format's log — for tools that read nothing else.
//!
//! Layout: `<schema>/<table>.parquet/<folder>/*.parquet`, and `<schema>/<table>.parquet/_current`
//! naming, one per line, the folders that make up the table now. A build writes a new folder
//! and then replaces `_current` in one step (a rename locally, one PUT on S3), so readers see
//! the old rows or the new ones and a failed build leaves the old table; the old folders are
//! deleted after. An incremental `append` writes the increment as one more folder and adds it
//! to `_current` the same way. Readers other than rsdbt can read the folders `_current` names
//! (or the whole table folder when nothing is being rebuilt).

use std::sync::Arc;

use datafusion::arrow::array::UInt64Array;
use datafusion::catalog::TableProvider;
use datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionState;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::SessionContext;

use super::store::Store;
use crate::adapter::AdapterError;

pub(super) const CURRENT: &str = "_current";

fn err(e: impl std::fmt::Display) -> AdapterError {
    AdapterError(format!("Parquet table: {e}"))
}

/// The name of the folder, in its schema's folder, that holds a Parquet table.
pub fn dir_name(name: &str) -> String {
    format!("{name}.parquet")
}

/// The table whose folder `dir` is, if it is one.
pub fn table_of_dir(dir: &str) -> Option<&str> {
    dir.strip_suffix(".parquet")
}

/// The folders that make up table `schema.name` now; None if it is not a Parquet table.
pub async fn folders(
    store: &Store,
    schema: &str,
    name: &str,
) -> std::result::Result<Option<Vec<String>>, String> {
    let text = store.read_text(&[schema, &dir_name(name), CURRENT]).await?;
    Ok(text.map(|t| {
        t.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }))
}

/// Writes `df`'s rows into a new folder of table `schema.name`: (the folder, rows written).
async fn write_folder(
    ctx: &SessionContext,
    store: &Store,
    schema: &str,
    name: &str,
    df: DataFrame,
) -> std::result::Result<(String, u64), AdapterError> {
    let folder = uuid::Uuid::new_v4().to_string();
    let dir = dir_name(name);
    let location = format!("{}/", store.url(&[schema, &dir, &folder]));
    let columns = Arc::new(df.schema().as_arrow().clone());
    super::s3::register(&ctx.state(), &location).map_err(err)?;
    let rows: u64 = match df
        .write_parquet(&location, DataFrameWriteOptions::new(), None)
        .await
    {
        Ok(counts) => counts
            .iter()
            .filter_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
            .flat_map(|a| a.values().iter().copied())
            .sum(),
        Err(e) => {
            let _ = store.delete(&[schema, &dir, &folder]).await;
            return Err(err(e));
        }
    };
    if !store.any_under(&[schema, &dir, &folder]).await {
        // No rows wrote no file: an empty one still gives readers the columns.
        let mut buf = Vec::new();
        let writer = ArrowWriter::try_new(&mut buf, columns, None).map_err(err)?;
        writer.close().map_err(err)?;
        store
            .write_file(&[schema, &dir, &folder, "part-0.parquet"], buf)
            .await
            .map_err(err)?;
    }
    Ok((folder, rows))
}

/// Replaces (or creates) table `schema.name` with the rows of `df`. Returns the row count.
pub async fn replace(
    ctx: &SessionContext,
    store: &Store,
    schema: &str,
    name: &str,
    df: DataFrame,
) -> std::result::Result<u64, AdapterError> {
    let old = folders(store, schema, name)
        .await
        .map_err(err)?
        .unwrap_or_default();
    let (folder, rows) = write_folder(ctx, store, schema, name, df).await?;
    commit(store, schema, name, std::slice::from_ref(&folder), &folder).await?;
    let dir = dir_name(name);
    for f in old {
        let _ = store.delete(&[schema, &dir, &f]).await;
    }
    Ok(rows)
}

/// Appends the rows of `df` (already in the table's columns) to table `schema.name` as one
/// more folder; an empty increment adds nothing. Returns the row count.
pub async fn append(
    ctx: &SessionContext,
    store: &Store,
    schema: &str,
    name: &str,
    df: DataFrame,
) -> std::result::Result<u64, AdapterError> {
    let mut current = folders(store, schema, name)
        .await
        .map_err(err)?
        .ok_or_else(|| err(format!("{schema}.{name} is not a Parquet table")))?;
    let (folder, rows) = write_folder(ctx, store, schema, name, df).await?;
    let dir = dir_name(name);
    if rows == 0 {
        let _ = store.delete(&[schema, &dir, &folder]).await;
        return Ok(0);
    }
    current.push(folder.clone());
    commit(store, schema, name, &current, &folder).await?;
    Ok(rows)
}

/// Makes `folders` the table's current folders in one step; if that fails, the new folder
/// `written` is deleted and the table stays as it was.
async fn commit(
    store: &Store,
    schema: &str,
    name: &str,
    folders: &[String],
    written: &str,
) -> std::result::Result<(), AdapterError> {
    let dir = dir_name(name);
    if let Err(e) = store
        .write_file(&[schema, &dir, CURRENT], folders.join("\n").into_bytes())
        .await
    {
        let _ = store.delete(&[schema, &dir, written]).await;
        return Err(err(e));
    }
    Ok(())
}

/// Table `schema.name` as DataFusion reads it, if it is a Parquet table.
pub async fn provider(
    state: &SessionState,
    store: &Store,
    schema: &str,
    name: &str,
) -> Result<Option<Arc<dyn TableProvider>>> {
    let external = |e: String| DataFusionError::External(e.into());
    let Some(current) = folders(store, schema, name).await.map_err(external)? else {
        return Ok(None);
    };
    let dir = dir_name(name);
    let mut urls = Vec::with_capacity(current.len());
    for f in &current {
        let location = format!("{}/", store.url(&[schema, &dir, f]));
        super::s3::register(state, &location)?;
        urls.push(ListingTableUrl::parse(&location)?);
    }
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .infer_schema(state)
        .await?;
    Ok(Some(Arc::new(ListingTable::try_new(config)?)))
}
