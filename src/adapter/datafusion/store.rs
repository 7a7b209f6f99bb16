//! Where the warehouse lives: a local folder (`path: warehouse`) or a prefix on S3
//! (`path: s3://bucket/prefix`).
//!
//! Everything the adapter does to the warehouse other than reading and writing tables through
//! deltalake and iceberg-rust goes through here: finding schemas and tables, views as
//! `<schema>/<view>.view.sql` files, deleting a table's files, a Delta table's version. The
//! layout is the same in both places, so a warehouse folder copied to S3 is a warehouse there.
//!
//! S3 has no rename: what a folder does with one rename takes copies there (see
//! [`Store::replace_dir`]), and a view is replaced by one PUT, which S3 makes atomic.

use std::future::Future;
use std::path::{Path, PathBuf};

use deltalake::logstore::ObjectStoreRef;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as Key;

const VIEW_SUFFIX: &str = ".view.sql";
const DELTA_LOG: &str = "_delta_log";

#[derive(Debug)]
pub enum Store {
    Local(PathBuf),
    S3 {
        /// `s3://bucket/prefix`, no trailing slash.
        url: String,
        store: ObjectStoreRef,
        prefix: Key,
    },
}

/// A commit (or checkpoint) file's name in a Delta log.
fn is_version(file: &str) -> bool {
    file.starts_with(|c: char| c.is_ascii_digit())
        && (file.ends_with(".json") || file.ends_with(".parquet"))
}

/// Whether the local folder `dir` is a Delta table: its log holds a commit or a checkpoint
/// (see [`Store::is_delta`]).
pub fn is_delta_dir(dir: &Path) -> bool {
    let log = dir.join(DELTA_LOG);
    // Most tables still have their first commit: one stat, not a listing (this is asked
    // several times per node).
    log.join(format!("{:020}.json", 0)).is_file()
        || std::fs::read_dir(&log)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_str().is_some_and(is_version))
}

fn io(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl Store {
    /// The warehouse at `location`: an `s3://` URL, or a local folder (created if needed).
    pub fn open(location: &str) -> Result<Self, String> {
        if location.starts_with("s3://") {
            let url = url::Url::parse(location).map_err(|e| io(location, e))?;
            let store = super::s3::store(&url, &Default::default())?;
            let prefix = Key::from_url_path(url.path()).map_err(|e| io(location, e))?;
            return Ok(Store::S3 {
                url: location.trim_end_matches('/').to_string(),
                store,
                prefix,
            });
        }
        std::fs::create_dir_all(location)
            .map_err(|e| format!("cannot create warehouse folder {location}: {e}"))?;
        let root = std::fs::canonicalize(location).map_err(|e| io(location, e))?;
        Ok(Store::Local(root))
    }

    pub fn display(&self) -> String {
        match self {
            Store::Local(root) => root.display().to_string(),
            Store::S3 { url, .. } => url.clone(),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Store::Local(_))
    }

    fn path(root: &Path, parts: &[&str]) -> PathBuf {
        parts.iter().fold(root.to_path_buf(), |p, s| p.join(s))
    }

    fn key(prefix: &Key, parts: &[&str]) -> Key {
        parts.iter().fold(prefix.clone(), |k, s| k.join(*s))
    }

    /// `parts` under the warehouse as a URL (`file://` or `s3://`).
    pub fn url(&self, parts: &[&str]) -> String {
        match self {
            Store::Local(root) => format!("file://{}", Self::path(root, parts).display()),
            Store::S3 { url, .. } => {
                let mut u = url.clone();
                for p in parts {
                    u.push('/');
                    u.push_str(p);
                }
                u
            }
        }
    }

    /// The location deltalake opens for table `schema.name`.
    pub fn delta_uri(&self, schema: &str, name: &str) -> Result<url::Url, String> {
        let location = match self {
            Store::Local(root) => Self::path(root, &[schema, name])
                .to_string_lossy()
                .to_string(),
            Store::S3 { .. } => self.url(&[schema, name]),
        };
        deltalake::ensure_table_uri(&location).map_err(|e| io(&location, e))
    }

    /// Makes the folder of `parts` (a local folder must exist before deltalake writes there;
    /// S3 has no folders).
    pub fn prepare(&self, parts: &[&str]) -> Result<(), String> {
        match self {
            Store::Local(root) => {
                let dir = Self::path(root, parts);
                std::fs::create_dir_all(&dir).map_err(|e| io(&dir.display().to_string(), e))
            }
            Store::S3 { .. } => Ok(()),
        }
    }

    /// The folder of a local warehouse (`None` on S3).
    pub fn local_root(&self) -> Option<&Path> {
        match self {
            Store::Local(root) => Some(root),
            Store::S3 { .. } => None,
        }
    }

    /// Removes the folder of `parts` when it is empty (a first write that failed before its
    /// commit leaves one); S3 has no folders.
    pub fn remove_if_empty(&self, parts: &[&str]) {
        if let Store::Local(root) = self {
            // remove_dir refuses a folder that holds anything: only an empty one goes.
            let _ = std::fs::remove_dir(Self::path(root, parts));
        }
    }

    /// Deletes the files under the table folder `parts` (not its log) changed since `since`
    /// whose names `referenced` lacks, then the folders left empty: what a write that failed
    /// before its commit (a full disk, an error mid-way) left behind. Only while this run holds
    /// the warehouse's lock, so such files can only be its own; files of older versions are
    /// older than `since`, so time travel keeps them. A local warehouse only: S3 runs out of
    /// money, not room, and its clock is not ours.
    pub fn sweep_unreferenced(
        &self,
        parts: &[&str],
        since: std::time::SystemTime,
        referenced: &std::collections::HashSet<String>,
    ) {
        fn walk(
            dir: &Path,
            since: std::time::SystemTime,
            referenced: &std::collections::HashSet<String>,
        ) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if path.is_dir() {
                    if name != "_delta_log" {
                        walk(&path, since, referenced);
                        let _ = std::fs::remove_dir(&path);
                    }
                } else if !referenced.contains(&name)
                    && e.metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t >= since)
                {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        if let Store::Local(root) = self {
            let dir = Self::path(root, parts);
            walk(&dir, since, referenced);
            let _ = std::fs::remove_dir(&dir);
        }
    }

    /// Whether any file lies under `parts`.
    pub async fn any_under(&self, parts: &[&str]) -> bool {
        match self {
            Store::Local(root) => Self::path(root, parts).is_dir(),
            Store::S3 { store, prefix, .. } => {
                let key = Self::key(prefix, parts);
                matches!(store.list(Some(&key)).next().await, Some(Ok(_)))
            }
        }
    }

    /// Whether `schema.name` is a Delta table: its log holds a commit or a checkpoint. A log
    /// folder without one is what a first write killed before its commit leaves (deltalake
    /// makes the folder, and its commit's temporary file, first): no table yet.
    pub async fn is_delta(&self, schema: &str, name: &str) -> bool {
        match self {
            Store::Local(root) => is_delta_dir(&Self::path(root, &[schema, name])),
            Store::S3 { store, prefix, .. } => {
                let log = Self::key(prefix, &[schema, name, DELTA_LOG]);
                let mut listed = store.list(Some(&log));
                while let Some(Ok(o)) = listed.next().await {
                    if o.location.filename().is_some_and(is_version) {
                        return true;
                    }
                }
                false
            }
        }
    }

    pub async fn is_iceberg(&self, schema: &str, name: &str) -> bool {
        self.any_under(&[schema, &super::iceberg::dir_name(name)])
            .await
    }

    /// Whether `schema.name` is a Parquet table: its folder names its current files. A folder
    /// without that list is what a first build killed before it wrote the list leaves.
    pub async fn is_parquet(&self, schema: &str, name: &str) -> bool {
        let current = [
            schema,
            &super::parquet::dir_name(name),
            super::parquet::CURRENT,
        ];
        match self {
            Store::Local(root) => Self::path(root, &current).is_file(),
            Store::S3 { store, prefix, .. } => {
                store.head(&Self::key(prefix, &current)).await.is_ok()
            }
        }
    }

    /// The SQL of view `schema.name`, if there is one.
    pub async fn read_view(&self, schema: &str, name: &str) -> Result<Option<String>, String> {
        self.read_text(&[schema, &format!("{name}{VIEW_SUFFIX}")])
            .await
    }

    /// Writes view `schema.name` whole, in one step: readers see the old SQL or the new.
    pub async fn write_view(&self, schema: &str, name: &str, sql: &str) -> Result<(), String> {
        self.write_file(
            &[schema, &format!("{name}{VIEW_SUFFIX}")],
            sql.as_bytes().to_vec(),
        )
        .await
    }

    pub async fn delete_view(&self, schema: &str, name: &str) -> Result<(), String> {
        self.delete_file(&[schema, &format!("{name}{VIEW_SUFFIX}")])
            .await
    }

    /// The text of the file `parts`, if it exists.
    pub async fn read_text(&self, parts: &[&str]) -> Result<Option<String>, String> {
        match self {
            Store::Local(root) => {
                let path = Self::path(root, parts);
                if !path.is_file() {
                    return Ok(None);
                }
                std::fs::read_to_string(&path)
                    .map(Some)
                    .map_err(|e| io(&path.display().to_string(), e))
            }
            Store::S3 { store, prefix, .. } => {
                let key = Self::key(prefix, parts);
                match store.get(&key).await {
                    Ok(got) => {
                        let bytes = got.bytes().await.map_err(|e| io(key.as_ref(), e))?;
                        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(io(key.as_ref(), e)),
                }
            }
        }
    }

    /// Writes the file `parts` whole, in one step: readers see the old content or the new
    /// (a rename locally; one PUT on S3).
    pub async fn write_file(&self, parts: &[&str], content: Vec<u8>) -> Result<(), String> {
        match self {
            Store::Local(root) => {
                let target = Self::path(root, parts);
                let dir = target.parent().unwrap_or(root);
                std::fs::create_dir_all(dir).map_err(|e| io(&dir.display().to_string(), e))?;
                let name = target.file_name().unwrap_or_default().to_string_lossy();
                let tmp = dir.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, content).map_err(|e| io(&tmp.display().to_string(), e))?;
                std::fs::rename(&tmp, &target).map_err(|e| io(&tmp.display().to_string(), e))
            }
            Store::S3 { store, prefix, .. } => {
                let key = Self::key(prefix, parts);
                store
                    .put(&key, content.into())
                    .await
                    .map(|_| ())
                    .map_err(|e| io(key.as_ref(), e))
            }
        }
    }

    /// Deletes the file `parts` (a missing file is fine).
    pub async fn delete_file(&self, parts: &[&str]) -> Result<(), String> {
        match self {
            Store::Local(root) => {
                let _ = std::fs::remove_file(Self::path(root, parts));
                Ok(())
            }
            Store::S3 { store, prefix, .. } => {
                let key = Self::key(prefix, parts);
                match store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(io(key.as_ref(), e)),
                }
            }
        }
    }

    /// Deletes everything under `parts` (nothing there is fine).
    pub async fn delete(&self, parts: &[&str]) -> Result<(), String> {
        match self {
            Store::Local(root) => {
                let dir = Self::path(root, parts);
                match std::fs::remove_dir_all(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(io(&dir.display().to_string(), e))
                    }
                    _ => Ok(()),
                }
            }
            Store::S3 { store, prefix, .. } => {
                delete_prefix(store, &Self::key(prefix, parts)).await
            }
        }
    }

    /// Deletes everything under `location` (a URL [`Store::url`] gave) if it lies in the
    /// warehouse.
    pub async fn delete_url(&self, location: &str) -> Result<(), String> {
        let base = self.url(&[]);
        let Some(rest) = location.strip_prefix(&base) else {
            return Ok(());
        };
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        if parts.is_empty() {
            return Ok(());
        }
        self.delete(&parts).await
    }

    /// The schemas: folders (prefixes) of the warehouse whose names do not start with `.`/`_`.
    pub async fn schemas(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .entries(&[])
            .await
            .0
            .into_iter()
            .filter(|n| !n.starts_with('.') && !n.starts_with('_'))
            .collect();
        names.sort();
        names
    }

    /// The tables and views of `schema`.
    pub async fn tables(&self, schema: &str) -> Vec<String> {
        let (dirs, files) = self.entries(&[schema]).await;
        let mut names = Vec::new();
        for d in dirs.iter().filter(|d| !d.starts_with('.')) {
            if let Some(t) = super::iceberg::table_of_dir(d) {
                names.push(t.to_string());
            } else if let Some(t) = super::parquet::table_of_dir(d) {
                if self.is_parquet(schema, t).await {
                    names.push(t.to_string());
                }
            } else if self.is_delta(schema, d).await {
                names.push(d.clone());
            }
        }
        for f in files.iter().filter(|f| !f.starts_with('.')) {
            if let Some(v) = f.strip_suffix(VIEW_SUFFIX) {
                names.push(v.to_string());
            }
        }
        names.sort();
        names
    }

    /// The folder and file names directly under `parts`.
    async fn entries(&self, parts: &[&str]) -> (Vec<String>, Vec<String>) {
        let (mut dirs, mut files) = (Vec::new(), Vec::new());
        match self {
            Store::Local(root) => {
                for e in std::fs::read_dir(Self::path(root, parts))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let n = e.file_name().to_string_lossy().to_string();
                    if e.path().is_dir() {
                        dirs.push(n)
                    } else {
                        files.push(n)
                    }
                }
            }
            Store::S3 { store, prefix, .. } => {
                let key = Self::key(prefix, parts);
                let prefix = if key.as_ref().is_empty() {
                    None
                } else {
                    Some(&key)
                };
                if let Ok(list) = store.list_with_delimiter(prefix).await {
                    dirs = list
                        .common_prefixes
                        .iter()
                        .filter_map(|p| p.filename().map(str::to_string))
                        .collect();
                    files = list
                        .objects
                        .iter()
                        .filter_map(|o| o.location.filename().map(str::to_string))
                        .collect();
                }
            }
        }
        (dirs, files)
    }

    /// A Delta table's version as text that changes with every commit: the newest commit
    /// file's number, and the creation time of the log (a rebuilt table restarts at 0).
    pub async fn delta_version(&self, schema: &str, name: &str) -> Option<String> {
        let first = format!("{:020}.json", 0);
        let version = |n: &str| n.strip_suffix(".json")?.parse::<u64>().ok();
        let (newest, born) = match self {
            Store::Local(root) => {
                let log = Self::path(root, &[schema, name, DELTA_LOG]);
                let newest = std::fs::read_dir(&log)
                    .ok()?
                    .flatten()
                    .filter_map(|e| version(e.file_name().to_str()?))
                    .max()?;
                let born = std::fs::metadata(log.join(&first))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos() as i128)
                    .unwrap_or(0);
                (newest, born)
            }
            Store::S3 { store, prefix, .. } => {
                let log = Self::key(prefix, &[schema, name, DELTA_LOG]);
                let objects: Vec<object_store::ObjectMeta> =
                    store.list(Some(&log)).try_collect().await.ok()?;
                let newest = objects
                    .iter()
                    .filter_map(|o| version(o.location.filename()?))
                    .max()?;
                let born = objects
                    .iter()
                    .find(|o| o.location.filename() == Some(first.as_str()))
                    .and_then(|o| o.last_modified.timestamp_nanos_opt())
                    .unwrap_or(0) as i128;
                (newest, born)
            }
        };
        Some(format!("delta:{born}:{newest}"))
    }

    /// The number of a Delta table's newest commit.
    pub async fn delta_newest_version(&self, schema: &str, name: &str) -> Option<u64> {
        let version = |n: &str| n.strip_suffix(".json")?.parse::<u64>().ok();
        match self {
            Store::Local(root) => std::fs::read_dir(Self::path(root, &[schema, name, DELTA_LOG]))
                .ok()?
                .flatten()
                .filter_map(|e| version(e.file_name().to_str()?))
                .max(),
            Store::S3 { store, prefix, .. } => {
                let log = Self::key(prefix, &[schema, name, DELTA_LOG]);
                let objects: Vec<object_store::ObjectMeta> =
                    store.list(Some(&log)).try_collect().await.ok()?;
                objects
                    .iter()
                    .filter_map(|o| version(o.location.filename()?))
                    .max()
            }
        }
    }

    /// The bytes of the data files a Delta table's newest commit added (its `add` actions).
    pub async fn delta_commit_bytes(&self, schema: &str, name: &str) -> Option<u64> {
        let newest = self.delta_newest_version(schema, name).await?;
        let commit = self
            .read_text(&[schema, name, DELTA_LOG, &format!("{newest:020}.json")])
            .await
            .ok()??;
        Some(
            commit
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|action| action.get("add")?.get("size")?.as_u64())
                .sum(),
        )
    }

    /// The total size of the files under `parts`.
    pub async fn size_under(&self, parts: &[&str]) -> Option<u64> {
        match self {
            Store::Local(root) => {
                fn walk(p: &Path) -> u64 {
                    match std::fs::metadata(p) {
                        Ok(m) if m.is_file() => m.len(),
                        Ok(_) => std::fs::read_dir(p)
                            .into_iter()
                            .flatten()
                            .flatten()
                            .map(|e| walk(&e.path()))
                            .sum(),
                        Err(_) => 0,
                    }
                }
                Some(walk(&Self::path(root, parts)))
            }
            Store::S3 { store, prefix, .. } => {
                let key = Self::key(prefix, parts);
                let objects: Vec<object_store::ObjectMeta> =
                    store.list(Some(&key)).try_collect().await.ok()?;
                Some(objects.iter().map(|o| o.size).sum())
            }
        }
    }

    /// When anything under `parts` last changed (the newest file's modification time): when
    /// the table was last written, for source freshness without a `loaded_at_field`.
    pub async fn newest_change(&self, parts: &[&str]) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            Store::Local(root) => newest_local_change(&Self::path(root, parts)),
            Store::S3 { store, prefix, .. } => {
                let key = Self::key(prefix, parts);
                let objects: Vec<object_store::ObjectMeta> =
                    store.list(Some(&key)).try_collect().await.ok()?;
                objects.iter().map(|o| o.last_modified).max()
            }
        }
    }

    /// Fails unless the warehouse can be listed (S3: the bucket exists, the endpoint answers
    /// and the credentials are accepted).
    pub async fn reachable(&self) -> Result<(), String> {
        match self {
            Store::Local(_) => Ok(()),
            Store::S3 { store, prefix, url } => store
                .list_with_delimiter(Some(prefix))
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot reach the warehouse {url}: {e}")),
        }
    }

    /// Fails unless a file can be written into the warehouse (and deleted again).
    pub async fn check_writable(&self) -> Result<(), String> {
        let fail = |e: String| format!("warehouse {} is not writable: {e}", self.display());
        match self {
            Store::Local(root) => {
                let probe = root.join(".rsdbt-write-check");
                std::fs::write(&probe, b"ok").map_err(|e| fail(e.to_string()))?;
                let _ = std::fs::remove_file(probe);
                Ok(())
            }
            Store::S3 { store, prefix, .. } => {
                let probe = prefix.clone().join(".rsdbt-write-check");
                store
                    .put(&probe, "ok".to_string().into())
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                store.delete(&probe).await.map_err(|e| fail(e.to_string()))
            }
        }
    }

    /// Puts the folder `schema/tmp` in the place of `schema/name`, and deletes the old one.
    /// A local folder is swapped by two renames (the old table stays whole until the new one
    /// takes its name). On S3 the new files are copied in beside the old ones first; only the
    /// Delta log is then deleted and copied, so the table is missing for the moment of that
    /// copy, not for the copy of its data.
    pub async fn replace_dir(&self, schema: &str, tmp: &str, name: &str) -> Result<(), String> {
        match self {
            Store::Local(root) => {
                let dir = Self::path(root, &[schema, name]);
                let new = Self::path(root, &[schema, tmp]);
                let old = Self::path(root, &[schema, &format!("{tmp}.old")]);
                let _ = std::fs::remove_dir_all(&old);
                std::fs::rename(&dir, &old).map_err(|e| io(&dir.display().to_string(), e))?;
                if let Err(e) = std::fs::rename(&new, &dir) {
                    let _ = std::fs::rename(&old, &dir);
                    return Err(io(&new.display().to_string(), e));
                }
                let _ = std::fs::remove_dir_all(&old);
                Ok(())
            }
            Store::S3 { store, prefix, .. } => {
                let from = Self::key(prefix, &[schema, tmp]);
                let to = Self::key(prefix, &[schema, name]);
                let fail = |k: &Key, e: object_store::Error| io(k.as_ref(), e);
                let new: Vec<Key> = store
                    .list(Some(&from))
                    .map_ok(|o| o.location)
                    .try_collect()
                    .await
                    .map_err(|e| fail(&from, e))?;
                let old: Vec<Key> = store
                    .list(Some(&to))
                    .map_ok(|o| o.location)
                    .try_collect()
                    .await
                    .map_err(|e| fail(&to, e))?;
                let moved = |k: &Key| -> Key {
                    let rest: Vec<_> = k.prefix_match(&from).into_iter().flatten().collect();
                    rest.into_iter().fold(to.clone(), |p, part| p.join(part))
                };
                let in_log = |k: &Key| k.prefix_matches(&to.clone().join(DELTA_LOG));
                let (new_log, new_data): (Vec<&Key>, Vec<&Key>) =
                    new.iter().partition(|k| in_log(&moved(k)));
                // Data files have unique names: copying them in leaves the old table whole.
                for k in &new_data {
                    store.copy(k, &moved(k)).await.map_err(|e| fail(k, e))?;
                }
                for k in old.iter().filter(|k| in_log(k)) {
                    store.delete(k).await.map_err(|e| fail(k, e))?;
                }
                for k in &new_log {
                    store.copy(k, &moved(k)).await.map_err(|e| fail(k, e))?;
                }
                let kept: std::collections::HashSet<Key> = new.iter().map(moved).collect();
                for k in old.iter().filter(|k| !in_log(k) && !kept.contains(*k)) {
                    let _ = store.delete(k).await;
                }
                delete_prefix(store, &from).await
            }
        }
    }

    /// Runs `f`'s future to its end from synchronous code (DataFusion's catalog API has
    /// synchronous methods). A local folder's futures never wait; S3's are run by the process's
    /// runtime from a helper thread, so a runtime thread may call this.
    pub fn wait<F: Future>(&self, f: impl FnOnce() -> F + Send) -> F::Output
    where
        F::Output: Send,
    {
        if self.is_local() {
            return futures::executor::block_on(f());
        }
        let handle = tokio::runtime::Handle::try_current();
        std::thread::scope(|s| {
            s.spawn(move || match handle {
                Ok(h) => h.block_on(f()),
                Err(_) => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime")
                    .block_on(f()),
            })
            .join()
            .expect("the warehouse listing thread")
        })
    }
}

async fn delete_prefix(store: &ObjectStoreRef, key: &Key) -> Result<(), String> {
    let found = store.list(Some(key)).map_ok(|o| o.location).boxed();
    store
        .delete_stream(found)
        .try_collect::<Vec<_>>()
        .await
        .map(|_| ())
        .map_err(|e| io(key.as_ref(), e))
}

/// The newest modification time of a file, or of the files under a folder (recursively), or of
/// the files a glob's folder holds.
pub fn newest_local_change(path: &Path) -> Option<chrono::DateTime<chrono::Utc>> {
    // A glob: the folder before its first wildcard.
    let text = path.to_string_lossy();
    let path = match text.find(['*', '?', '[']) {
        Some(i) => Path::new(&text[..text[..i].rfind('/').unwrap_or(0)]).to_path_buf(),
        None => path.to_path_buf(),
    };
    let meta = std::fs::metadata(&path).ok()?;
    if meta.is_file() {
        return meta.modified().ok().map(Into::into);
    }
    std::fs::read_dir(&path)
        .ok()?
        .flatten()
        .filter_map(|e| newest_local_change(&e.path()))
        .max()
}

/// The run lock of a local warehouse: `.rsdbt.lock` in its folder, locked with the system's
/// advisory file lock (released by the kernel when the process dies, so a killed run's lock
/// never blocks the next one) and holding the holder's description while it is held.
pub fn lock_local(
    root: &Path,
    holder: &crate::adapter::Holder,
) -> Result<(Option<std::fs::File>, crate::adapter::Locked), String> {
    use crate::adapter::Locked;
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(root).map_err(|e| io(&root.display().to_string(), e))?;
    let path = root.join(".rsdbt.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io(&path.display().to_string(), e))?;
    let mut previous = String::new();
    let describe = |text: &str| match serde_json::from_str::<crate::adapter::Holder>(text) {
        Ok(h) => h.describe(),
        Err(_) => format!("an unknown process ({})", path.display()),
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.read_to_string(&mut previous);
            let outcome = if previous.trim().is_empty() {
                Locked::Taken
            } else {
                Locked::TakenOver(describe(&previous))
            };
            let text = serde_json::to_string(holder).unwrap_or_default();
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| file.write_all(text.as_bytes()))
                .and_then(|_| file.sync_data())
                .map_err(|e| io(&path.display().to_string(), e))?;
            Ok((Some(file), outcome))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let _ = file.read_to_string(&mut previous);
            Ok((None, Locked::HeldBy(describe(&previous))))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path.display().to_string(), e)),
    }
}

/// Releases a lock taken by [`lock_local`]: its description is cleared first, so the next run
/// knows this one finished.
pub fn unlock_local(file: std::fs::File) {
    let _ = file.set_len(0);
    let _ = file.unlock();
}

/// How long a run's lock object on S3 stays valid without a heartbeat: a run refreshes it every
/// `S3_LOCK_HEARTBEAT`; one not refreshed for `S3_LOCK_STALE` belonged to a run that died.
pub const S3_LOCK_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(15);
pub const S3_LOCK_STALE: std::time::Duration = std::time::Duration::from_secs(60);

/// The run lock of a warehouse on S3: the object `.rsdbt.lock` under its prefix, created only
/// if absent (S3's conditional write), holding the holder and a heartbeat time. A stale one is
/// replaced by a conditional update on its ETag, so of two runs taking over only one wins.
pub async fn lock_s3(
    store: &Store,
    holder: &crate::adapter::Holder,
) -> Result<(crate::adapter::Locked, Option<object_store::UpdateVersion>), String> {
    use crate::adapter::Locked;
    use object_store::{PutMode, PutOptions, PutPayload};
    let Store::S3 { store, prefix, .. } = store else {
        return Ok((Locked::Taken, None));
    };
    let key = Store::key(prefix, &[".rsdbt.lock"]);
    let body = |h: &crate::adapter::Holder| {
        let mut v = serde_json::to_value(h).unwrap_or_default();
        v["heartbeat"] = serde_json::json!(chrono::Utc::now().timestamp());
        PutPayload::from(v.to_string().into_bytes())
    };
    let put = |mode: PutMode| PutOptions {
        mode,
        ..Default::default()
    };
    let version = |r: object_store::PutResult| object_store::UpdateVersion {
        e_tag: r.e_tag,
        version: r.version,
    };
    match store
        .put_opts(&key, body(holder), put(PutMode::Create))
        .await
    {
        Ok(r) => return Ok((Locked::Taken, Some(version(r)))),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => {}
        Err(e) => return Err(io(key.as_ref(), e)),
    }
    let got = store.get(&key).await.map_err(|e| io(key.as_ref(), e))?;
    let current = object_store::UpdateVersion {
        e_tag: got.meta.e_tag.clone(),
        version: got.meta.version.clone(),
    };
    let text = got.bytes().await.map_err(|e| io(key.as_ref(), e))?;
    let doc: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    let other = serde_json::from_value::<crate::adapter::Holder>(doc.clone()).ok();
    let died_here = other.as_ref().is_some_and(|h| h.died_here());
    let other = other
        .map(|h| h.describe())
        .unwrap_or_else(|| format!("an unknown process (s3 object {key})"));
    let beat = doc["heartbeat"].as_i64().unwrap_or(0);
    let age = chrono::Utc::now().timestamp() - beat;
    if age < S3_LOCK_STALE.as_secs() as i64 && !died_here {
        return Ok((Locked::HeldBy(other), None));
    }
    match store
        .put_opts(&key, body(holder), put(PutMode::Update(current)))
        .await
    {
        Ok(r) => Ok((Locked::TakenOver(other), Some(version(r)))),
        // Another run took it over first.
        Err(
            object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. },
        ) => Ok((Locked::HeldBy(other), None)),
        Err(e) => Err(io(key.as_ref(), e)),
    }
}

/// Refreshes the S3 lock's heartbeat (a conditional update, so a lock taken over is not
/// overwritten); returns the new version, or `None` when the lock is no longer ours.
pub async fn heartbeat_s3(
    store: &Store,
    holder: &crate::adapter::Holder,
    ours: object_store::UpdateVersion,
) -> Option<object_store::UpdateVersion> {
    use object_store::{PutMode, PutOptions, PutPayload};
    let Store::S3 { store, prefix, .. } = store else {
        return None;
    };
    let key = Store::key(prefix, &[".rsdbt.lock"]);
    let mut v = serde_json::to_value(holder).ok()?;
    v["heartbeat"] = serde_json::json!(chrono::Utc::now().timestamp());
    let opts = PutOptions {
        mode: PutMode::Update(ours),
        ..Default::default()
    };
    let r = store
        .put_opts(&key, PutPayload::from(v.to_string().into_bytes()), opts)
        .await
        .ok()?;
    Some(object_store::UpdateVersion {
        e_tag: r.e_tag,
        version: r.version,
    })
}

/// Deletes the S3 lock object.
pub async fn unlock_s3(store: &Store) {
    if let Store::S3 { store, prefix, .. } = store {
        let _ = store.delete(&Store::key(prefix, &[".rsdbt.lock"])).await;
    }
}
