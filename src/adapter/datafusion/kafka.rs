//! Kafka topics as DataFusion tables: each partition is a stream of record batches over a
//! range of offsets chosen when the query is planned (see [`super::streams`] for which range),
//! decoded as JSON, CSV or raw text, with where each record came from (`_topic`, `_partition`,
//! `_offset`, `_timestamp`, `_key`). A record that cannot be decoded is kept, not dropped: its
//! columns are NULL, `_error` says why and `_raw` holds its text (or, with `on_error: fail`,
//! the node stops naming its offset).
//!
//! The client is rskafka (pure Rust, maintained by InfluxData): it fetches by partition and
//! offset without consumer groups, which is what reading ranges recorded in Delta commits
//! needs; no C library (librdkafka) to install.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, new_null_array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options, nullif};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionState;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::RecordAndOffset;

use super::streams;
use crate::adapter::external::{ExternalSource, KafkaSource, RecordFormat};

/// Bytes asked of the broker per fetch: a batch of records decoded at a time.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;
/// Records read at planning to infer the columns of JSON records nobody declared.
const INFER_SAMPLE: usize = 1_000;
/// How long a broker that does not answer is retried before the source fails.
const CONNECT_DEADLINE: Duration = Duration::from_secs(8);

fn plan_err(s: &ExternalSource, msg: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Plan(format!("{} ({}): {msg}", s.unique_id, s.location))
}

/// The clients of this process, one per cluster (brokers and credentials).
fn clients() -> &'static Mutex<HashMap<String, Arc<Client>>> {
    static CLIENTS: OnceLock<Mutex<HashMap<String, Arc<Client>>>> = OnceLock::new();
    CLIENTS.get_or_init(Default::default)
}

/// A client of the source's cluster, connected once per process.
pub async fn client(k: &KafkaSource) -> std::result::Result<Arc<Client>, String> {
    let key = format!("{}|{:?}|{}", k.brokers.join(","), k.sasl, k.tls);
    if let Some(c) = clients().lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(c);
    }
    let backoff = rskafka::BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        base: 2.,
        deadline: Some(CONNECT_DEADLINE),
    };
    let mut builder = ClientBuilder::new(k.brokers.clone())
        .client_id("rsdbt")
        .backoff_config(backoff);
    if let Some((mechanism, user, password)) = &k.sasl {
        let credentials = Credentials::new(user.clone(), password.clone());
        builder = builder.sasl_config(match mechanism.as_str() {
            "SCRAM-SHA-256" => SaslConfig::ScramSha256(credentials),
            "SCRAM-SHA-512" => SaslConfig::ScramSha512(credentials),
            _ => SaslConfig::Plain(credentials),
        });
    }
    if k.tls {
        builder = builder.tls_config(tls_config()?);
    }
    let client = builder.build().await.map_err(|e| {
        format!(
            "the Kafka broker {} does not answer ({e}); check `brokers:` and that the broker runs",
            k.brokers.join(",")
        )
    })?;
    let client = Arc::new(client);
    if let Ok(mut c) = clients().lock() {
        c.insert(key, client.clone());
    }
    Ok(client)
}

fn tls_config() -> std::result::Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The partitions of the source's topic, or why it cannot be read.
pub async fn partitions(k: &KafkaSource) -> std::result::Result<Vec<i32>, String> {
    let client = client(k).await?;
    let topics = client
        .list_topics()
        .await
        .map_err(|e| format!("listing the topics of {}: {e}", k.brokers.join(",")))?;
    match topics.into_iter().find(|t| t.name == k.topic) {
        Some(t) => Ok(t.partitions.into_iter().collect()),
        None => Err(format!(
            "the broker {} has no topic '{}'; check `topic:` (topics are case-sensitive)",
            k.brokers.join(","),
            k.topic
        )),
    }
}

/// The high watermark of each partition of the source's topic, in partition order: what
/// `--watch-sources` compares between polls.
pub async fn high_watermarks(k: &KafkaSource) -> std::result::Result<Vec<i64>, String> {
    let client = client(k).await?;
    let mut marks = Vec::new();
    for p in partitions(k).await? {
        let pc = client
            .partition_client(k.topic.clone(), p, UnknownTopicHandling::Error)
            .await
            .map_err(|e| format!("partition {p}: {e}"))?;
        marks.push(end_offset(&pc).await?);
    }
    Ok(marks)
}

/// The topic as a table over the offsets this query (or write) reads.
pub async fn provider(
    state: &SessionState,
    s: &ExternalSource,
    k: &KafkaSource,
) -> Result<Arc<dyn TableProvider>> {
    let client = client(k).await.map_err(|e| plan_err(s, e))?;
    let mut parts = Vec::new();
    for p in partitions(k).await.map_err(|e| plan_err(s, e))? {
        let pc = Arc::new(
            client
                .partition_client(k.topic.clone(), p, UnknownTopicHandling::Error)
                .await
                .map_err(|e| plan_err(s, format!("partition {p}: {e}")))?,
        );
        let offset = |at| {
            let pc = pc.clone();
            async move {
                pc.get_offset(at)
                    .await
                    .map_err(|e| format!("partition {p}: {e}"))
            }
        };
        let start = offset(if k.start_latest {
            OffsetAt::Latest
        } else {
            OffsetAt::Earliest
        });
        let (from, to) =
            streams::range(&streams::kafka_app_id(&k.topic, p), start, end_offset(&pc))
                .await
                .map_err(|e| plan_err(s, e))?;
        // Records the topic no longer keeps (retention) cannot be read: start at the oldest.
        let earliest = offset(OffsetAt::Earliest)
            .await
            .map_err(|e| plan_err(s, e))?;
        parts.push(Partition {
            client: pc,
            from: from.max(earliest).min(to),
            to,
        });
    }
    let columns = match (k.format, k.columns.is_empty()) {
        (RecordFormat::Raw, _) => vec![Field::new("value", DataType::Utf8, true)],
        (RecordFormat::Json, true) => infer(&parts).await.map_err(|e| plan_err(s, e))?,
        _ => declared(state, &k.columns).map_err(|e| plan_err(s, e))?,
    };
    let mut fields = columns.clone();
    fields.extend(meta_fields());
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let decode = Arc::new(Decode {
        source: s.unique_id.clone(),
        topic: k.topic.clone(),
        format: k.format,
        columns: Arc::new(Schema::new(columns)),
        schema: schema.clone(),
        fail_on_error: k.fail_on_error,
    });
    let streams: Vec<Arc<dyn PartitionStream>> = parts
        .into_iter()
        .map(|p| {
            Arc::new(PartitionScan {
                part: p,
                decode: decode.clone(),
            }) as Arc<dyn PartitionStream>
        })
        .collect();
    Ok(Arc::new(StreamingTable::try_new(schema, streams)?))
}

fn meta_fields() -> Vec<Field> {
    vec![
        Field::new("_topic", DataType::Utf8, false),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
        Field::new(
            "_timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("_key", DataType::Utf8, true),
        Field::new("_error", DataType::Utf8, true),
        Field::new("_raw", DataType::Utf8, true),
    ]
}

/// The partition's high watermark: the offset after its last record. Asked twice, because
/// some brokers (Tansu 0.6) answer ListOffsets(latest) with the offset after the first record
/// of the last batch; a fetch of that record answers with the true high watermark.
async fn end_offset(pc: &PartitionClient) -> std::result::Result<i64, String> {
    let p = pc.partition();
    let listed = pc
        .get_offset(OffsetAt::Latest)
        .await
        .map_err(|e| format!("partition {p}: {e}"))?;
    if listed == 0 {
        return Ok(0);
    }
    Ok(match pc.fetch_records(listed - 1, 1..1024, 0).await {
        Ok((_, high_watermark)) => listed.max(high_watermark),
        Err(_) => listed,
    })
}

/// The declared columns with their SQL types, as Arrow fields.
fn declared(
    state: &SessionState,
    columns: &[(String, String)],
) -> std::result::Result<Vec<Field>, String> {
    let empty = datafusion::common::DFSchema::empty();
    columns
        .iter()
        .map(|(name, ty)| {
            let expr = state
                .create_logical_expr(&format!("cast(NULL as {ty})"), &empty)
                .map_err(|e| format!("column '{name}': data_type '{ty}' is not a type ({e})"))?;
            let t = match expr {
                datafusion::logical_expr::Expr::Cast(c) => c.data_type,
                _ => DataType::Utf8,
            };
            Ok(Field::new(name, t, true))
        })
        .collect()
}

/// Columns of JSON records nobody declared: inferred from the first records of the range.
async fn infer(parts: &[Partition]) -> std::result::Result<Vec<Field>, String> {
    let mut sample = Vec::new();
    for p in parts {
        let mut offset = p.from;
        while offset < p.to && sample.len() < INFER_SAMPLE {
            let records = p.fetch(offset).await?;
            let Some(last) = records.last() else { break };
            offset = last.offset + 1;
            sample.extend(records.into_iter().filter_map(|r| {
                let v: serde_json::Value =
                    serde_json::from_slice(r.record.value.as_deref()?).ok()?;
                v.is_object().then_some(v)
            }));
        }
    }
    let schema = datafusion::arrow::json::reader::infer_json_schema_from_iterator(
        sample.iter().take(INFER_SAMPLE).map(Ok),
    )
    .map_err(|e| format!("inferring the columns of the records: {e}"))?;
    // Names that collide with the record's own columns are the record's metadata's.
    Ok(schema
        .fields()
        .iter()
        .filter(|f| {
            !f.name().starts_with('_') || meta_fields().iter().all(|m| m.name() != f.name())
        })
        // A field only ever null in the sample is read as text, not as the Null type.
        .map(|f| match f.data_type() {
            DataType::Null => Field::new(f.name(), DataType::Utf8, true),
            _ => f.as_ref().clone().with_nullable(true),
        })
        .collect())
}

/// One partition's range of offsets.
#[derive(Debug)]
struct Partition {
    client: Arc<PartitionClient>,
    from: i64,
    to: i64,
}

impl Partition {
    /// The records from `offset` on that the range holds (at most one fetch's worth).
    async fn fetch(&self, offset: i64) -> std::result::Result<Vec<RecordAndOffset>, String> {
        let (records, _) = self
            .client
            .fetch_records(offset, 1..FETCH_BYTES, 500)
            .await
            .map_err(|e| {
                format!(
                    "partition {}: fetching offset {offset}: {e}",
                    self.client.partition()
                )
            })?;
        Ok(records
            .into_iter()
            .filter(|r| r.offset >= offset && r.offset < self.to)
            .collect())
    }
}

/// How records become rows.
#[derive(Debug)]
struct Decode {
    source: String,
    topic: String,
    format: RecordFormat,
    /// The decoded columns (without the metadata).
    columns: SchemaRef,
    schema: SchemaRef,
    fail_on_error: bool,
}

#[derive(Debug)]
struct PartitionScan {
    part: Partition,
    decode: Arc<Decode>,
}

impl PartitionStream for PartitionScan {
    fn schema(&self) -> &SchemaRef {
        &self.decode.schema
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        let part = Partition {
            client: self.part.client.clone(),
            from: self.part.from,
            to: self.part.to,
        };
        let decode = self.decode.clone();
        let state = (part, decode, self.part.from);
        let stream = futures::stream::try_unfold(state, |(part, decode, offset)| async move {
            if offset >= part.to {
                return Ok(None);
            }
            let records = part
                .fetch(offset)
                .await
                .map_err(DataFusionError::Execution)?;
            // Offsets the broker skips (transaction markers, compaction) end the range here.
            let Some(last) = records.last() else {
                return Ok(None);
            };
            let next = last.offset + 1;
            let batch = decode.batch(part.client.partition(), &records)?;
            Ok(Some((batch, (part, decode, next))))
        });
        Box::pin(RecordBatchStreamAdapter::new(
            self.decode.schema.clone(),
            stream,
        ))
    }
}

impl Decode {
    fn batch(&self, partition: i32, records: &[RecordAndOffset]) -> Result<RecordBatch> {
        let n = records.len();
        let values: Vec<Option<&[u8]>> =
            records.iter().map(|r| r.record.value.as_deref()).collect();
        let (mut columns, errors) = match self.format {
            RecordFormat::Raw => {
                let text: StringArray = values
                    .iter()
                    .map(|v| v.map(String::from_utf8_lossy))
                    .collect();
                (vec![Arc::new(text) as ArrayRef], vec![None; n])
            }
            RecordFormat::Json => self.json(&values),
            RecordFormat::Csv => self.csv(&values),
        };
        if self.fail_on_error
            && let Some((i, e)) = errors
                .iter()
                .enumerate()
                .find_map(|(i, e)| Some((i, e.as_ref()?)))
        {
            return Err(DataFusionError::Execution(format!(
                "{}: the record at offset {} of partition {partition} of topic '{}' cannot be read: {e} (`on_error: fail`; set `on_error: keep` to keep such records with their error in `_error`)",
                self.source, records[i].offset, self.topic
            )));
        }
        // A rejected record keeps no half-decoded values.
        let rejected: BooleanArray = errors.iter().map(|e| Some(e.is_some())).collect();
        if rejected.true_count() > 0 {
            columns = columns
                .into_iter()
                .map(|c| nullif(&c, &rejected))
                .collect::<std::result::Result<_, _>>()?;
        }
        let raw: StringArray = errors
            .iter()
            .zip(&values)
            .map(|(e, v)| e.as_ref().and(v.map(String::from_utf8_lossy)))
            .collect();
        let error: StringArray = errors.iter().map(Option::as_deref).collect();
        columns.push(Arc::new(StringArray::from(vec![self.topic.as_str(); n])));
        columns.push(Arc::new(Int32Array::from(vec![partition; n])));
        columns.push(Arc::new(Int64Array::from_iter_values(
            records.iter().map(|r| r.offset),
        )));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                records
                    .iter()
                    .map(|r| r.record.timestamp.timestamp_micros()),
            )
            .with_timezone("UTC"),
        ));
        columns.push(Arc::new(
            records
                .iter()
                .map(|r| r.record.key.as_deref().map(String::from_utf8_lossy))
                .collect::<StringArray>(),
        ));
        columns.push(Arc::new(error));
        columns.push(Arc::new(raw));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// JSON objects decoded by arrow-json all at once; when a value does not fit its column's
    /// type, record by record to find which.
    fn json(&self, values: &[Option<&[u8]>]) -> (Vec<ArrayRef>, Vec<Option<String>>) {
        let mut errors: Vec<Option<String>> = values
            .iter()
            .map(|v| match v {
                None => None,
                Some(v) => json_object_error(v),
            })
            .collect();
        if let Ok(columns) = self.json_rows(values, &errors) {
            return (columns, errors);
        }
        for (v, e) in values.iter().zip(errors.iter_mut()) {
            if let (Some(v), None) = (v, &e)
                && let Err(msg) = self.json_rows(&[Some(v)], &[None])
            {
                *e = Some(msg);
            }
        }
        match self.json_rows(values, &errors) {
            Ok(columns) => (columns, errors),
            Err(msg) => (self.nulls(values.len()), vec![Some(msg); values.len()]),
        }
    }

    /// One row per value: the value decoded, or NULLs where it is None or has an error.
    fn json_rows(
        &self,
        values: &[Option<&[u8]>],
        errors: &[Option<String>],
    ) -> std::result::Result<Vec<ArrayRef>, String> {
        let mut decoder = ReaderBuilder::new(self.columns.clone())
            .with_batch_size(values.len().max(1))
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(|e| e.to_string())?;
        for (v, e) in values.iter().zip(errors) {
            let bytes: &[u8] = match (v, e) {
                (Some(v), None) => v,
                _ => b"{}",
            };
            decoder.decode(bytes).map_err(|e| e.to_string())?;
            decoder.decode(b"\n").map_err(|e| e.to_string())?;
        }
        match decoder.flush().map_err(|e| e.to_string())? {
            Some(b) if b.num_rows() == values.len() => Ok(b.columns().to_vec()),
            Some(b) => Err(format!(
                "{} rows decoded from {} records",
                b.num_rows(),
                values.len()
            )),
            None if values.is_empty() => Ok(self.nulls(0)),
            None => Err("no rows decoded".into()),
        }
    }

    fn nulls(&self, n: usize) -> Vec<ArrayRef> {
        self.columns
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), n))
            .collect()
    }

    /// CSV lines, one per record, without a header: fields in the declared columns' order,
    /// read as text and cast to the declared types. An empty field is NULL.
    fn csv(&self, values: &[Option<&[u8]>]) -> (Vec<ArrayRef>, Vec<Option<String>>) {
        let width = self.columns.fields().len();
        let mut builders: Vec<StringBuilder> = (0..width).map(|_| StringBuilder::new()).collect();
        let mut errors = Vec::with_capacity(values.len());
        let mut reader_builder = csv::ReaderBuilder::new();
        reader_builder.has_headers(false).flexible(true);
        for v in values {
            let mut fields: Vec<String> = Vec::new();
            let error = match v {
                None => None,
                Some(v) => {
                    let mut rdr = reader_builder.from_reader(*v);
                    let mut rows = rdr.records();
                    match (rows.next(), rows.next()) {
                        (Some(Ok(r)), None) if r.len() == width => {
                            fields = r.iter().map(str::to_string).collect();
                            None
                        }
                        (Some(Ok(r)), None) => Some(format!(
                            "{} fields where the source declares {width} columns",
                            r.len()
                        )),
                        (Some(Err(e)), _) => Some(format!("not a CSV line: {e}")),
                        (None, _) => Some("an empty record".into()),
                        (Some(Ok(_)), Some(_)) => Some("more than one CSV line".into()),
                    }
                }
            };
            for (i, b) in builders.iter_mut().enumerate() {
                match fields.get(i).filter(|f| !f.is_empty()) {
                    Some(f) => b.append_value(f),
                    None => b.append_null(),
                }
            }
            errors.push(error);
        }
        let text: Vec<ArrayRef> = builders
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let safe = CastOptions {
            safe: true,
            ..Default::default()
        };
        let mut columns = Vec::with_capacity(width);
        for (field, text) in self.columns.fields().iter().zip(text) {
            let typed = match cast_with_options(&text, field.data_type(), &safe) {
                Ok(a) => a,
                Err(e) => {
                    errors.iter_mut().for_each(|x| {
                        x.get_or_insert_with(|| format!("column '{}': {e}", field.name()));
                    });
                    new_null_array(field.data_type(), text.len())
                }
            };
            // A value the cast turned into NULL did not fit the type.
            for (i, e) in errors.iter_mut().enumerate() {
                if e.is_none() && text.is_valid(i) && typed.is_null(i) {
                    let value = text
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .map(|s| s.value(i).to_string())
                        .unwrap_or_default();
                    *e = Some(format!(
                        "column '{}': '{value}' is not a {}",
                        field.name(),
                        field.data_type()
                    ));
                }
            }
            columns.push(typed);
        }
        (columns, errors)
    }
}

/// Why a record's value is not one JSON object, if it is not.
fn json_object_error(v: &[u8]) -> Option<String> {
    let first = v.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Some("not a JSON object".into());
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(v) {
        Ok(_) => None,
        Err(e) => Some(format!("not valid JSON: {e}")),
    }
}
