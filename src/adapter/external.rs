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
//!       - name: clicks
//!         external: {kafka: {brokers: "localhost:9092", topic: clicks, format: json}}
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
    /// A Kafka topic (format `kafka`).
    pub kafka: Option<KafkaSource>,
    /// A Kinesis data stream (format `kinesis`).
    pub kinesis: Option<KinesisSource>,
    /// Files landed by another system (`incremental: files`): an incremental model reads only
    /// the files its table has not ingested yet.
    pub landed_files: bool,
}

/// A Kafka topic read as a table: its records decoded, plus where each came from.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSource {
    pub brokers: Vec<String>,
    pub topic: String,
    /// SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512 (mechanism, user, password), from env vars.
    pub sasl: Option<(String, String, String)>,
    pub tls: bool,
    pub records: Records,
}

/// A Kinesis data stream read as a table.
#[derive(Debug, Clone, PartialEq)]
pub struct KinesisSource {
    pub stream: String,
    pub region: String,
    /// The service's URL (an emulator's, or a VPC endpoint); AWS's own by default.
    pub endpoint: Option<String>,
    pub records: Records,
}

/// How a stream's records are read.
#[derive(Debug, Clone, PartialEq)]
pub struct Records {
    pub format: RecordFormat,
    /// Where a reader with no committed position starts: the oldest record kept, or the end.
    pub start_latest: bool,
    /// The decoded columns and their SQL types (the source's `columns:` with `data_type`);
    /// empty: inferred from the records (JSON only).
    pub columns: Vec<(String, String)>,
    /// Stop the node at the first record that cannot be decoded, instead of keeping it with
    /// its error in `_error`.
    pub fail_on_error: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RecordFormat {
    Json,
    Csv,
    Raw,
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
        if let Some(kafka) = ext.get("kafka") {
            match kafka_source(kafka, s) {
                Ok(k) => out.push(ExternalSource {
                    unique_id: s.unique_id.clone(),
                    schema: s.relation.schema.to_string(),
                    identifier: s.relation.identifier.to_string(),
                    location: format!("Kafka topic '{}' on {}", k.topic, k.brokers.join(",")),
                    format: "kafka".into(),
                    version: None,
                    snapshot_id: None,
                    options: BTreeMap::new(),
                    connection: None,
                    catalog: None,
                    kafka: Some(k),
                    kinesis: None,
                    landed_files: false,
                }),
                Err((msg, hint)) => diags.push(err(
                    format!("source '{}.{}': {msg}", s.def.source_name, s.def.name),
                    &hint,
                )),
            }
            continue;
        }
        if let Some(block) = ext.get("kinesis") {
            match kinesis_source(block, s) {
                Ok(k) => out.push(ExternalSource {
                    unique_id: s.unique_id.clone(),
                    schema: s.relation.schema.to_string(),
                    identifier: s.relation.identifier.to_string(),
                    location: format!("Kinesis stream '{}' in {}", k.stream, k.region),
                    format: "kinesis".into(),
                    version: None,
                    snapshot_id: None,
                    options: BTreeMap::new(),
                    connection: None,
                    catalog: None,
                    kafka: None,
                    kinesis: Some(k),
                    landed_files: false,
                }),
                Err((msg, hint)) => diags.push(err(
                    format!("source '{}.{}': {msg}", s.def.source_name, s.def.name),
                    &hint,
                )),
            }
            continue;
        }
        if let Some(connection) = ext.get("connection").and_then(Json::as_str) {
            out.push(ExternalSource {
                unique_id: s.unique_id.clone(),
                schema: s.relation.schema.to_string(),
                identifier: s.relation.identifier.to_string(),
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
                kafka: None,
                kinesis: None,
                landed_files: false,
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
                schema: s.relation.schema.to_string(),
                identifier: s.relation.identifier.to_string(),
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
                kafka: None,
                kinesis: None,
                landed_files: false,
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
        let landed_files = match ext.get("incremental").and_then(Json::as_str) {
            None => false,
            Some("files") if ["parquet", "csv", "json"].contains(&format.as_str()) => true,
            Some(other) => {
                diags.push(err(
                    format!(
                        "source '{}.{}': `incremental: {other}` is not a way to read {format} data incrementally",
                        s.def.source_name, s.def.name
                    ),
                    "`incremental: files` reads each landed file once (parquet, csv and json files)",
                ));
                continue;
            }
        };
        let is_url = location.contains("://");
        let location = if is_url || Path::new(location).is_absolute() {
            location.to_string()
        } else {
            project_root.join(location).to_string_lossy().into_owned()
        };
        out.push(ExternalSource {
            unique_id: s.unique_id.clone(),
            schema: s.relation.schema.to_string(),
            identifier: s.relation.identifier.to_string(),
            location,
            format,
            version: int("version").and_then(|v| u64::try_from(v).ok()),
            snapshot_id: int("snapshot_id"),
            options,
            connection: None,
            catalog: None,
            kafka: None,
            kinesis: None,
            landed_files,
        });
    }
    diags.into_result(out)
}

/// A string setting of a `kafka:` / `kinesis:` block (a list joined with commas).
fn setting(block: &Json, k: &str) -> Option<String> {
    match block.get(k)? {
        Json::String(v) => Some(v.clone()),
        Json::Array(items) => Some(
            items
                .iter()
                .filter_map(Json::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}

/// The `kafka:` block of a source, or (what is wrong, what to do).
fn kafka_source(
    block: &Json,
    s: &crate::manifest::Source,
) -> Result<KafkaSource, (String, String)> {
    let text = |k: &str| setting(block, k);
    let shape = "external: {kafka: {brokers: \"host:9092\", topic: orders, format: json}}";
    let brokers: Vec<String> = text("brokers")
        .unwrap_or_default()
        .split(',')
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    if brokers.is_empty() {
        return Err((
            "`kafka:` names no `brokers`".into(),
            format!("give the bootstrap brokers as host:port ({shape})"),
        ));
    }
    let Some(topic) = text("topic").filter(|t| !t.is_empty()) else {
        return Err((
            "`kafka:` names no `topic`".into(),
            format!("give the topic to read ({shape})"),
        ));
    };
    let records = records(block, s, "topic")?;
    let env = |k: &str| -> Result<Option<String>, (String, String)> {
        let Some(var) = text(k) else { return Ok(None) };
        std::env::var(&var).map(Some).map_err(|_| {
            (
                format!("`{k}` names the environment variable {var}, which is not set"),
                format!("export {var} before the run"),
            )
        })
    };
    let sasl = match text("sasl_mechanism") {
        None => None,
        Some(m) => {
            let m = m.to_ascii_uppercase();
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&m.as_str()) {
                return Err((
                    format!("unknown `sasl_mechanism: {m}`"),
                    "use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".into(),
                ));
            }
            let (Some(user), Some(password)) =
                (env("sasl_username_env")?, env("sasl_password_env")?)
            else {
                return Err((
                    "`sasl_mechanism` needs `sasl_username_env` and `sasl_password_env`".into(),
                    "name the environment variables that hold the user and the password".into(),
                ));
            };
            Some((m, user, password))
        }
    };
    let tls = block.get("tls").and_then(Json::as_bool).unwrap_or(false);
    Ok(KafkaSource {
        brokers,
        topic,
        sasl,
        tls,
        records,
    })
}

/// The `kinesis:` block of a source, or (what is wrong, what to do).
fn kinesis_source(
    block: &Json,
    s: &crate::manifest::Source,
) -> Result<KinesisSource, (String, String)> {
    let text = |k: &str| setting(block, k).filter(|v| !v.is_empty());
    let Some(stream) = text("stream") else {
        return Err((
            "`kinesis:` names no `stream`".into(),
            "give the data stream to read (external: {kinesis: {stream: clicks, region: eu-west-1}})".into(),
        ));
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let region = text("region")
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let endpoint = text("endpoint")
        .or_else(|| env("AWS_ENDPOINT_URL_KINESIS"))
        .or_else(|| env("AWS_ENDPOINT_URL"));
    Ok(KinesisSource {
        stream,
        region,
        endpoint,
        records: records(block, s, "stream")?,
    })
}

/// How a stream block's records are read (`format`, `start`, `on_error`, the source's columns).
fn records(
    block: &Json,
    s: &crate::manifest::Source,
    what: &str,
) -> Result<Records, (String, String)> {
    let text = |k: &str| setting(block, k);
    let format = match text("format")
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("json") => RecordFormat::Json,
        Some("csv") => RecordFormat::Csv,
        Some("raw") => RecordFormat::Raw,
        Some(other) => {
            return Err((
                format!("unknown record format '{other}'"),
                "set `format:` to json, csv or raw".into(),
            ));
        }
    };
    let start_latest = match text("start").as_deref() {
        None | Some("earliest") => false,
        Some("latest") => true,
        Some(other) => {
            return Err((
                format!("unknown `start: {other}`"),
                format!(
                    "set `start:` to earliest (the oldest record the {what} keeps) or latest (only records that arrive from now on)"
                ),
            ));
        }
    };
    // JSON records are typed by the declared columns only when each has a type (columns
    // listed for their descriptions and tests alone leave the types to inference); CSV
    // fields are text unless typed.
    let typed = s.def.columns.iter().all(|c| c.data_type.is_some());
    let columns: Vec<(String, String)> = if format == RecordFormat::Csv || typed {
        s.def
            .columns
            .iter()
            .map(|c| {
                let ty = c.data_type.clone().unwrap_or_else(|| "varchar".into());
                (c.name.clone(), ty)
            })
            .collect()
    } else {
        Vec::new()
    };
    if format == RecordFormat::Csv && columns.is_empty() {
        return Err((
            format!("a {what} of CSV records needs its columns declared"),
            "list the fields in order under the source table's `columns:`, each with a `data_type`"
                .into(),
        ));
    }
    let fail_on_error = match text("on_error").as_deref() {
        None | Some("keep") => false,
        Some("fail") => true,
        Some(other) => {
            return Err((
                format!("unknown `on_error: {other}`"),
                "set `on_error:` to keep (a bad record becomes a row with `_error` set) or fail (the node stops)".into(),
            ));
        }
    };
    Ok(Records {
        format,
        start_latest,
        columns,
        fail_on_error,
    })
}

fn guess_format(location: &str) -> Option<&'static str> {
    let l = location.to_ascii_lowercase();
    ["parquet", "csv", "json"]
        .into_iter()
        .find(|f| l.ends_with(&format!(".{f}")) || l.ends_with(&format!(".{f}.gz")))
        .or_else(|| l.ends_with(".ndjson").then_some("json"))
}
