//! `s3://` locations — AWS S3 or an S3-compatible store (MinIO, moto...) — for external
//! sources and the warehouse itself. Settings come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`...) and are overridden by the target's
//! `s3:` block in profiles.yml (`endpoint`, `region`, `access_key_id`, `secret_access_key`,
//! `session_token`, `allow_http`). DataFusion reads files through the store registered for
//! the bucket; deltalake through the `s3://` factories registered here; iceberg-rust through
//! [`IcebergS3`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionState;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig,
};
use object_store::ObjectStoreExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use url::Url;

/// The profile's `s3:` settings, as object_store's `aws_*` keys.
static SETTINGS: RwLock<Option<HashMap<String, String>>> = RwLock::new(None);

/// Takes the target's `s3:` block (a JSON object) for the stores built from now on, and makes
/// `s3://` Delta tables readable.
pub fn configure(block: Option<&serde_json::Value>) {
    let mut settings = HashMap::new();
    if let Some(obj) = block.and_then(serde_json::Value::as_object) {
        for (k, v) in obj {
            let key = match k.as_str() {
                "endpoint" | "endpoint_url" => "aws_endpoint",
                "region" => "aws_region",
                "access_key_id" => "aws_access_key_id",
                "secret_access_key" => "aws_secret_access_key",
                "session_token" => "aws_session_token",
                "allow_http" => "aws_allow_http",
                other => other,
            };
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            settings.insert(key.to_string(), value);
        }
    }
    if let Ok(mut s) = SETTINGS.write() {
        *s = Some(settings);
    }
    let scheme = Url::parse("s3://").expect("a valid URL");
    deltalake::logstore::object_store_factories().insert(scheme.clone(), Arc::new(S3Factory));
    deltalake::logstore::logstore_factories().insert(scheme, Arc::new(S3Factory));
}

/// The store for the bucket of `url`.
pub(super) fn store(
    url: &Url,
    extra: &HashMap<String, String>,
) -> std::result::Result<ObjectStoreRef, String> {
    let bucket = url
        .host_str()
        .ok_or_else(|| format!("{url} names no bucket (s3://bucket/path)"))?;
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let settings = SETTINGS
        .read()
        .ok()
        .and_then(|s| s.clone())
        .unwrap_or_default();
    for (k, v) in &settings {
        let key: AmazonS3ConfigKey = k
            .parse()
            .map_err(|_| format!("unknown S3 setting `{k}` in the profile's s3: block"))?;
        builder = builder.with_config(key, v);
    }
    // deltalake passes its own options too: only the S3 ones concern the store.
    for (k, v) in extra {
        if let Ok(key) = k.parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(key, v);
        }
    }
    builder
        .build()
        .map(|s| Arc::new(s) as ObjectStoreRef)
        .map_err(|e| e.to_string())
}

/// Lets `state` read files under `location` when it is an `s3://` URL.
pub fn register(state: &SessionState, location: &str) -> Result<()> {
    if !location.starts_with("s3://") {
        return Ok(());
    }
    let url = Url::parse(location).map_err(|e| DataFusionError::Plan(e.to_string()))?;
    let root = datafusion::execution::object_store::ObjectStoreUrl::parse(format!(
        "s3://{}",
        url.host_str().unwrap_or_default()
    ))?;
    if state.runtime_env().object_store(&root).is_ok() {
        return Ok(());
    }
    let store = store(&url, &HashMap::new()).map_err(DataFusionError::Plan)?;
    state
        .runtime_env()
        .register_object_store(root.as_ref(), store);
    Ok(())
}

/// deltalake's factories for `s3://`: object_store's S3 client and the default log store
/// (commits use S3's conditional writes, which current S3 and its emulators have).
struct S3Factory;

impl ObjectStoreFactory for S3Factory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> deltalake::DeltaResult<(ObjectStoreRef, object_store::path::Path)> {
        let store = store(url, &config.raw).map_err(deltalake::DeltaTableError::Generic)?;
        let path = object_store::path::Path::from_url_path(url.path())
            .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?;
        Ok((store, path))
    }
}

impl LogStoreFactory for S3Factory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(deltalake::logstore::default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// The store and the object path of an `s3://` URL, as iceberg-rust's errors.
fn locate(path: &str) -> iceberg::Result<(ObjectStoreRef, object_store::path::Path)> {
    let bad = |e: String| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e);
    let url = Url::parse(path).map_err(|e| bad(format!("{path}: {e}")))?;
    let store = store(&url, &HashMap::new()).map_err(bad)?;
    let key = object_store::path::Path::from_url_path(url.path())
        .map_err(|e| bad(format!("{path}: {e}")))?;
    Ok((store, key))
}

fn io_error(path: &str, e: object_store::Error) -> iceberg::Error {
    iceberg::Error::new(
        iceberg::ErrorKind::Unexpected,
        format!("cannot read {path}: {e}"),
    )
}

fn write_error(path: &str, e: object_store::Error) -> iceberg::Error {
    iceberg::Error::new(
        iceberg::ErrorKind::Unexpected,
        format!("cannot write {path}: {e}"),
    )
}

/// iceberg-rust's storage for `s3://` paths: Iceberg sources on S3 and the Iceberg tables of
/// a warehouse on S3.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct IcebergS3;

#[async_trait::async_trait]
#[typetag::serde]
impl iceberg::io::Storage for IcebergS3 {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        let (store, key) = locate(path)?;
        match store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io_error(path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<iceberg::io::FileMetadata> {
        let (store, key) = locate(path)?;
        let meta = store.head(&key).await.map_err(|e| io_error(path, e))?;
        Ok(iceberg::io::FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> iceberg::Result<bytes::Bytes> {
        let (store, key) = locate(path)?;
        let got = store.get(&key).await.map_err(|e| io_error(path, e))?;
        got.bytes().await.map_err(|e| io_error(path, e))
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn iceberg::io::FileRead>> {
        let (store, key) = locate(path)?;
        Ok(Box::new(RangeReader {
            store,
            key,
            path: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: bytes::Bytes) -> iceberg::Result<()> {
        let (store, key) = locate(path)?;
        store
            .put(&key, bs.into())
            .await
            .map(|_| ())
            .map_err(|e| write_error(path, e))
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn iceberg::io::FileWrite>> {
        let (store, key) = locate(path)?;
        Ok(Box::new(Upload {
            writer: Some(object_store::buffered::BufWriter::new(store, key)),
            path: path.to_string(),
        }))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        let (store, key) = locate(path)?;
        match store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(write_error(path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        use futures::{StreamExt, TryStreamExt};
        let (store, key) = locate(path)?;
        let found = store.list(Some(&key)).map_ok(|o| o.location).boxed();
        store
            .delete_stream(found)
            .try_collect::<Vec<_>>()
            .await
            .map(|_| ())
            .map_err(|e| write_error(path, e))
    }

    async fn delete_stream(
        &self,
        mut paths: futures::stream::BoxStream<'static, String>,
    ) -> iceberg::Result<()> {
        use futures::StreamExt;
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> iceberg::Result<iceberg::io::InputFile> {
        Ok(iceberg::io::InputFile::new(
            Arc::new(self.clone()),
            path.to_string(),
        ))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<iceberg::io::OutputFile> {
        Ok(iceberg::io::OutputFile::new(
            Arc::new(self.clone()),
            path.to_string(),
        ))
    }
}

/// A file being written to S3: object_store's buffered writer, which turns into a multipart
/// upload once the file outgrows one part, and makes the object visible only at close.
struct Upload {
    writer: Option<object_store::buffered::BufWriter>,
    path: String,
}

#[async_trait::async_trait]
impl iceberg::io::FileWrite for Upload {
    async fn write(&mut self, bs: bytes::Bytes) -> iceberg::Result<()> {
        let w = self.writer.as_mut().ok_or_else(|| {
            iceberg::Error::new(iceberg::ErrorKind::Unexpected, "write after close")
        })?;
        w.put(bs).await.map_err(|e| write_error(&self.path, e))
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        let mut w = self
            .writer
            .take()
            .ok_or_else(|| iceberg::Error::new(iceberg::ErrorKind::Unexpected, "closed twice"))?;
        std::future::poll_fn(|cx| {
            tokio::io::AsyncWrite::poll_shutdown(std::pin::Pin::new(&mut w), cx)
        })
        .await
        .map_err(|e| {
            iceberg::Error::new(
                iceberg::ErrorKind::Unexpected,
                format!("cannot write {}: {e}", self.path),
            )
        })
    }
}

struct RangeReader {
    store: ObjectStoreRef,
    key: object_store::path::Path,
    path: String,
}

#[async_trait::async_trait]
impl iceberg::io::FileRead for RangeReader {
    async fn read(&self, range: std::ops::Range<u64>) -> iceberg::Result<bytes::Bytes> {
        self.store
            .get_range(&self.key, range)
            .await
            .map_err(|e| io_error(&self.path, e))
    }
}

/// Builds [`IcebergS3`] for iceberg-rust's `FileIO`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct IcebergS3Factory;

#[typetag::serde]
impl iceberg::io::StorageFactory for IcebergS3Factory {
    fn build(
        &self,
        _: &iceberg::io::StorageConfig,
    ) -> iceberg::Result<Arc<dyn iceberg::io::Storage>> {
        Ok(Arc::new(IcebergS3))
    }
}

/// The newest `metadata/*.metadata.json` of an Iceberg table folder on S3, by `newest` (the
/// rule that picks a version from file names).
pub async fn latest_metadata(
    location: &str,
    newest: impl Fn(Vec<String>) -> Option<String>,
) -> Option<String> {
    let dir = format!("{}/metadata/", location.trim_end_matches('/'));
    let (store, key) = locate(&dir).ok()?;
    let objects: Vec<object_store::ObjectMeta> =
        futures::TryStreamExt::try_collect(store.list(Some(&key)))
            .await
            .ok()?;
    let bucket = Url::parse(location).ok()?.host_str()?.to_string();
    newest(
        objects
            .into_iter()
            .map(|o| format!("s3://{bucket}/{}", o.location))
            .collect(),
    )
}
