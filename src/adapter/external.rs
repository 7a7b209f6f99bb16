//! Sources that are not tables of the target: files, Delta and Iceberg tables by location,
//! declared in a source's yml under `external:` (the key dbt-external-tables uses):
//!
//! ```yaml
//! sources:
//!   - name: lake
//!     tables:
//!       - name: events
//!         external: {location: data/events/*.parquet, file_format: parquet}
//!       - name: orders
//!         external: {location: lake/orders, file_format: delta, version: 12}
//!       - name: sessions
//!         external: {catalog: lakehouse}   # an Iceberg catalog of the profile
//! ```
//!
//! The embedded engine resolves `source('lake', 'events')` to such a table, so one model can
//! join files, Delta, Iceberg and warehouse tables.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;

use crate::diag::{Diagnostic, Diagnostics};
use crate::manifest::Manifest;

/// The file formats and table formats a source can be read as (and `postgres`, for tables
/// read through a connection of the profile: `external: {connection: app_db}`).
pub const FORMATS: [&str; 5] = ["parquet", "csv", "json", "delta", "iceberg"];

#[derive(Debug, Clone, PartialEq)]
pub struct ExternalSource {
    /// `source.<package>.<source>.<table>`, for messages.
    pub unique_id: String,
    /// The relation `source()` renders (its schema and identifier find this table).
    pub schema: String,
    pub identifier: String,
    /// A path (relative ones from the project folder), a glob of files, or a URL.
    pub location: String,
    pub format: String,
    /// Delta: the table version to read (time travel).
    pub version: Option<u64>,
    /// Iceberg: the snapshot to read (time travel).
    pub snapshot_id: Option<i64>,
    /// CSV: `delimiter`, `header`; files: `extension`.
    pub options: BTreeMap<String, String>,
    /// A PostgreSQL table read through this connection of the profile's `connections:`.
    pub connection: Option<String>,
    /// An Iceberg table read through this catalog of the profile's `iceberg_catalogs:`, as
    /// (catalog, namespace); the table is the identifier.
    pub catalog: Option<(String, String)>,
}

/// The external sources of the manifest, or diagnostics naming each malformed declaration.
pub fn external_sources(
    manifest: &Manifest,
    project_root: &Path,
) -> Result<Vec<ExternalSource>, Diagnostics> {
    let mut out = Vec::new();
    let mut diags = Diagnostics::new();
    for s in manifest.sources.values() {
        let Json::Object(ext) = &s.def.external else {
            continue;
        };
        let err = |msg: String, hint: &str| {
            Diagnostic::error("source", msg)
                .at(s.def.location())
                .hint(hint.to_string())
        };
        if let Some(connection) = ext.get("connection").and_then(Json::as_str) {
            out.push(ExternalSource {
                unique_id: s.unique_id.clone(),
                schema: s.relation.schema.clone(),
                identifier: s.relation.identifier.clone(),
                location: format!(
                    "PostgreSQL table {}.{} via connection '{connection}'",
                    s.relation.schema, s.relation.identifier
                ),
                format: "postgres".into(),
                version: None,
                snapshot_id: None,
                options: BTreeMap::new(),
                connection: Some(connection.to_string()),
                catalog: None,
            });
            continue;
        }
        let int = |k: &str| {
            ext.get(k).and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
        };
        if let Some(catalog) = ext.get("catalog").and_then(Json::as_str) {
            let namespace = ext
                .get("namespace")
                .and_then(Json::as_str)
                .unwrap_or(&s.relation.schema);
            out.push(ExternalSource {
                unique_id: s.unique_id.clone(),
                schema: s.relation.schema.clone(),
                identifier: s.relation.identifier.clone(),
                location: format!(
                    "Iceberg table {namespace}.{} in catalog '{catalog}'",
                    s.relation.identifier
                ),
                format: "iceberg".into(),
                version: None,
                snapshot_id: int("snapshot_id"),
                options: BTreeMap::new(),
                connection: None,
                catalog: Some((catalog.to_string(), namespace.to_string())),
            });
            continue;
        }
        let Some(location) = ext.get("location").and_then(Json::as_str) else {
            diags.push(err(
                format!(
                    "source '{}.{}' has `external:` without a `location`",
                    s.def.source_name, s.def.name
                ),
                "give the path, glob or URL of the data (`external: {location: data/events/*.parquet, file_format: parquet}`), the PostgreSQL connection of the profile it is read through (`external: {connection: app_db}`), or the Iceberg catalog of the profile (`external: {catalog: lakehouse}`)",
            ));
            continue;
        };
        let format = ext
            .get("file_format")
            .or_else(|| ext.get("format"))
            .and_then(Json::as_str)
            .map(str::to_ascii_lowercase)
            .or_else(|| guess_format(location).map(str::to_string));
        let Some(format) = format.filter(|f| FORMATS.contains(&f.as_str())) else {
            diags.push(err(
                format!(
                    "source '{}.{}': unknown or missing file_format for {location}",
                    s.def.source_name, s.def.name
                ),
                &format!("set `file_format:` to one of {}", FORMATS.join(", ")),
            ));
            continue;
        };
        let options = ext
            .get("options")
            .and_then(Json::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Json::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let is_url = location.contains("://");
        let location = if is_url || Path::new(location).is_absolute() {
            location.to_string()
        } else {
            project_root.join(location).to_string_lossy().into_owned()
        };
        out.push(ExternalSource {
            unique_id: s.unique_id.clone(),
            schema: s.relation.schema.clone(),
            identifier: s.relation.identifier.clone(),
            location,
            format,
            version: int("version").and_then(|v| u64::try_from(v).ok()),
            snapshot_id: int("snapshot_id"),
            options,
            connection: None,
            catalog: None,
        });
    }
    diags.into_result(out)
}

fn guess_format(location: &str) -> Option<&'static str> {
    let l = location.to_ascii_lowercase();
    ["parquet", "csv", "json"]
        .into_iter()
        .find(|f| l.ends_with(&format!(".{f}")) || l.ends_with(&format!(".{f}.gz")))
        .or_else(|| l.ends_with(".ndjson").then_some("json"))
}
