//! Kafka topics as DataFusion tables: each partition is a stream of record batches over a
//! range of offsets chosen when the query is planned (see [`super::streams`] for which range),
//! decoded (see [`super::records`]), with where each record came from (`_topic`,
//! `_partition`, `_offset`, `_timestamp`, `_key`).
//!
//! The client is rskafka (pure Rust, maintained by InfluxData): it fetches by partition and
//! offset without consumer groups, which is what reading ranges recorded in Delta commits
//! needs; no C library (librdkafka) to install.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use datafusion::arrow::array::{
    Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
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

use super::{records, streams};
use crate::adapter::external::{ExternalSource, KafkaSource, RecordFormat};

/// Bytes asked of the broker per fetch: a batch of records decoded at a time.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;
/// How long a fetch may wait for its bytes. A range is only ever read up to records the
/// broker already has, so there is nothing to wait for; some brokers (Tansu) wait this long
/// whenever a fetch returns less than its maximum.
const FETCH_WAIT_MS: i32 = 5;
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
        let start = offset(if k.records.start_latest {
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
    let columns = match (k.records.format, k.records.columns.is_empty()) {
        (RecordFormat::Raw, _) => vec![Field::new("value", DataType::Utf8, true)],
        (RecordFormat::Json, true) => infer(&parts).await.map_err(|e| plan_err(s, e))?,
        _ => records::declared(state, &k.records.columns).map_err(|e| plan_err(s, e))?,
    };
    let mut fields = columns.clone();
    fields.extend(meta_fields());
    fields.extend(records::error_fields());
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let decode = Arc::new(Decode {
        topic: k.topic.clone(),
        decoder: records::Decoder {
            source: s.unique_id.clone(),
            format: k.records.format,
            columns: Arc::new(Schema::new(columns)),
            fail_on_error: k.records.fail_on_error,
        },
        schema: schema.clone(),
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

/// Columns of JSON records nobody declared: inferred from the first records of the range.
async fn infer(parts: &[Partition]) -> std::result::Result<Vec<Field>, String> {
    let mut sample: Vec<Vec<u8>> = Vec::new();
    for p in parts {
        let mut offset = p.from;
        while offset < p.to && sample.len() < records::INFER_SAMPLE {
            let fetched = p.fetch(offset).await?;
            let Some(last) = fetched.last() else { break };
            offset = last.offset + 1;
            sample.extend(fetched.into_iter().filter_map(|r| r.record.value));
        }
    }
    records::infer(sample.iter().map(Vec::as_slice), &meta_fields())
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
            .fetch_records(offset, 1..FETCH_BYTES, FETCH_WAIT_MS)
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
    topic: String,
    decoder: records::Decoder,
    schema: SchemaRef,
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
    fn batch(&self, partition: i32, fetched: &[RecordAndOffset]) -> Result<RecordBatch> {
        let n = fetched.len();
        let values: Vec<Option<&[u8]>> =
            fetched.iter().map(|r| r.record.value.as_deref()).collect();
        let place = |i: usize| {
            format!(
                "offset {} of partition {partition} of topic '{}'",
                fetched[i].offset, self.topic
            )
        };
        let (mut columns, errors) = self.decoder.decode(&values, &place)?;
        columns.push(Arc::new(StringArray::from(vec![self.topic.as_str(); n])));
        columns.push(Arc::new(Int32Array::from(vec![partition; n])));
        columns.push(Arc::new(Int64Array::from_iter_values(
            fetched.iter().map(|r| r.offset),
        )));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                fetched
                    .iter()
                    .map(|r| r.record.timestamp.timestamp_micros()),
            )
            .with_timezone("UTC"),
        ));
        columns.push(Arc::new(
            fetched
                .iter()
                .map(|r| r.record.key.as_deref().map(String::from_utf8_lossy))
                .collect::<StringArray>(),
        ));
        columns.extend(errors);
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}
