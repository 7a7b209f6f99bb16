//! Kinesis data streams as DataFusion tables: each shard read from where the table being
//! written last committed (or `start`) until the reader has caught up with the stream, the
//! records decoded (see [`super::records`]) with `_shard_id`, `_sequence_number`,
//! `_arrival_timestamp` and `_partition_key`.
//!
//! Kinesis has no offset a query could stop at before reading, so the records are read when the
//! query is planned and the last sequence number of each shard is recorded in the write's
//! commit then. Sequence numbers are decimals of up to 129 digits, and a Delta application
//! transaction holds a 64-bit version: each is kept as its digit count and 18-digit chunks, one
//! `txn` each, all in the same commit. A shard read with `start: latest` and no records yet
//! records the time it was read, and the next run starts from that time.
//!
//! The client is a few JSON calls (ListShards, GetShardIterator, GetRecords) over the HTTP
//! client already in the tree, signed with SigV4 by object_store's signer: the AWS SDK would
//! add hundreds of crates for three calls.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionState;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use serde_json::{Value as Json, json};

use super::{records, streams};
use crate::adapter::external::{ExternalSource, KinesisSource, RecordFormat};

/// Records asked of a shard per call (Kinesis' maximum).
const LIMIT: u64 = 10_000;
/// Digits per chunk of a sequence number kept in one application transaction.
const CHUNK: usize = 18;

fn plan_err(s: &ExternalSource, msg: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Plan(format!("{} ({}): {msg}", s.unique_id, s.location))
}

/// A signed client of one stream's region and endpoint.
pub struct Client {
    http: reqwest::Client,
    url: String,
    region: String,
    credential: AwsCredential,
    stream: String,
}

impl Client {
    pub fn new(k: &KinesisSource) -> std::result::Result<Self, String> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let (Some(key_id), Some(secret_key)) =
            (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)".into(),
            );
        };
        let url = k
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://kinesis.{}.amazonaws.com", k.region));
        Ok(Client {
            http: reqwest::Client::new(),
            url: format!("{}/", url.trim_end_matches('/')),
            region: k.region.clone(),
            credential: AwsCredential {
                key_id,
                secret_key,
                token: var("AWS_SESSION_TOKEN"),
            },
            stream: k.stream.clone(),
        })
    }

    async fn call(&self, op: &str, body: Json) -> std::result::Result<Json, String> {
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let mut request = http::Request::builder()
            .method("POST")
            .uri(&self.url)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("Kinesis_20131202.{op}"))
            .body(object_store::client::HttpRequestBody::from(body.clone()))
            .map_err(|e| e.to_string())?;
        AwsAuthorizer::new(&self.credential, "kinesis", &self.region).authorize(&mut request, None);
        let response = self
            .http
            .post(&self.url)
            .headers(request.headers().clone())
            .body(body)
            .send()
            .await
            .map_err(|e| format!("Kinesis at {} does not answer ({e})", self.url))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let v: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
            let kind = v["__type"].as_str().unwrap_or("error");
            let message = v["message"]
                .as_str()
                .or(v["Message"].as_str())
                .unwrap_or(&text);
            return Err(format!(
                "Kinesis {op} on stream '{}': {kind}: {message}",
                self.stream
            ));
        }
        serde_json::from_str(&text).map_err(|e| format!("Kinesis {op}: {e}"))
    }

    /// The stream's shards.
    pub async fn shards(&self) -> std::result::Result<Vec<String>, String> {
        let mut shards = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let body = match &next {
                Some(token) => json!({"NextToken": token}),
                None => json!({"StreamName": self.stream}),
            };
            let v = self.call("ListShards", body).await?;
            shards.extend(
                v["Shards"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["ShardId"].as_str().map(str::to_string)),
            );
            match v["NextToken"].as_str() {
                Some(t) => next = Some(t.to_string()),
                None => return Ok(shards),
            }
        }
    }

    /// The records of `shard` from `from` until the reader has caught up.
    async fn read(&self, shard: &str, from: &Start) -> std::result::Result<Vec<Record>, String> {
        let mut body = json!({"StreamName": self.stream, "ShardId": shard});
        match from {
            Start::After(seq) => {
                body["ShardIteratorType"] = json!("AFTER_SEQUENCE_NUMBER");
                body["StartingSequenceNumber"] = json!(seq);
            }
            Start::At(millis) => {
                body["ShardIteratorType"] = json!("AT_TIMESTAMP");
                body["Timestamp"] = json!(*millis as f64 / 1000.0);
            }
            Start::Oldest => body["ShardIteratorType"] = json!("TRIM_HORIZON"),
            Start::Newest => body["ShardIteratorType"] = json!("LATEST"),
        }
        let v = self.call("GetShardIterator", body).await?;
        let mut iterator = v["ShardIterator"].as_str().map(str::to_string);
        let mut out = Vec::new();
        while let Some(it) = iterator {
            let v = self
                .call("GetRecords", json!({"ShardIterator": it, "Limit": LIMIT}))
                .await?;
            let batch: Vec<Record> = v["Records"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Record::from_json)
                .collect::<std::result::Result<_, _>>()?;
            let caught_up = v["MillisBehindLatest"].as_u64().unwrap_or(0) == 0;
            let empty = batch.is_empty();
            out.extend(batch);
            if empty && caught_up {
                break;
            }
            // A closed shard (after a reshard) has no next iterator.
            iterator = v["NextShardIterator"].as_str().map(str::to_string);
        }
        Ok(out)
    }
}

struct Record {
    sequence: String,
    arrival_micros: i64,
    partition_key: String,
    data: Vec<u8>,
}

impl Record {
    fn from_json(v: &Json) -> std::result::Result<Record, String> {
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD
            .decode(v["Data"].as_str().unwrap_or_default())
            .map_err(|e| format!("a record's Data is not base64: {e}"))?;
        Ok(Record {
            sequence: v["SequenceNumber"].as_str().unwrap_or_default().to_string(),
            arrival_micros: (v["ApproximateArrivalTimestamp"].as_f64().unwrap_or(0.0) * 1e6) as i64,
            partition_key: v["PartitionKey"].as_str().unwrap_or_default().to_string(),
            data,
        })
    }
}

/// Where a shard is read from.
enum Start {
    After(String),
    At(i64),
    Oldest,
    Newest,
}

fn app_id(stream: &str, shard: &str) -> String {
    format!("rsdbt/kinesis/{stream}/{shard}")
}

/// Where the table being written resumes reading `shard`: after its committed sequence
/// number, or from the time it last read the shard empty; None outside a write that resumes.
async fn committed(app: &str) -> std::result::Result<Option<Start>, String> {
    if let Some(digits) = streams::ingested(&format!("{app}/digits")).await? {
        let mut seq = String::new();
        for i in 0..(digits as usize).div_ceil(CHUNK) {
            let chunk = streams::ingested(&format!("{app}/{i}"))
                .await?
                .ok_or_else(|| format!("the table's record of {app} is incomplete"))?;
            seq.push_str(&format!("{chunk:0CHUNK$}"));
        }
        let seq = seq[seq.len() - digits as usize..].to_string();
        return Ok(Some(Start::After(seq)));
    }
    Ok(streams::ingested(&format!("{app}/at"))
        .await?
        .map(Start::At))
}

/// Records in the current write that `shard` was read up to `seq`.
fn record_position(app: &str, seq: &str) -> std::result::Result<(), String> {
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{seq}' is not a Kinesis sequence number"));
    }
    let padded = format!("{seq:0>width$}", width = seq.len().div_ceil(CHUNK) * CHUNK);
    streams::ingest(&format!("{app}/digits"), seq.len() as i64);
    for (i, chunk) in padded.as_bytes().chunks(CHUNK).enumerate() {
        let n: i64 = std::str::from_utf8(chunk)
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        streams::ingest(&format!("{app}/{i}"), n);
    }
    Ok(())
}

fn meta_fields() -> Vec<Field> {
    vec![
        Field::new("_stream", DataType::Utf8, false),
        Field::new("_shard_id", DataType::Utf8, false),
        Field::new("_sequence_number", DataType::Utf8, false),
        Field::new(
            "_arrival_timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("_partition_key", DataType::Utf8, true),
    ]
}

/// The stream as a table of the records this query (or write) reads.
pub async fn provider(
    state: &SessionState,
    s: &ExternalSource,
    k: &KinesisSource,
) -> Result<Arc<dyn TableProvider>> {
    let client = Client::new(k).map_err(|e| plan_err(s, e))?;
    let mut shards = Vec::new();
    let started = chrono::Utc::now().timestamp_millis();
    for shard in client.shards().await.map_err(|e| plan_err(s, e))? {
        let app = app_id(&k.stream, &shard);
        let from = match committed(&app).await.map_err(|e| plan_err(s, e))? {
            Some(start) => start,
            None if k.records.start_latest => Start::Newest,
            None => Start::Oldest,
        };
        let read = client
            .read(&shard, &from)
            .await
            .map_err(|e| plan_err(s, e))?;
        match read.last() {
            Some(last) => record_position(&app, &last.sequence).map_err(|e| plan_err(s, e))?,
            // Nothing yet from the newest end: the next run starts from now.
            None if matches!(from, Start::Newest) => streams::ingest(&format!("{app}/at"), started),
            None => {}
        }
        shards.push((shard, read));
    }
    let columns = match (k.records.format, k.records.columns.is_empty()) {
        (RecordFormat::Raw, _) => vec![Field::new("value", DataType::Utf8, true)],
        (RecordFormat::Json, true) => records::infer(
            shards
                .iter()
                .flat_map(|(_, r)| r.iter().map(|r| r.data.as_slice())),
            &meta_fields(),
        )
        .map_err(|e| plan_err(s, e))?,
        _ => records::declared(state, &k.records.columns).map_err(|e| plan_err(s, e))?,
    };
    let decoder = records::Decoder {
        source: s.unique_id.clone(),
        format: k.records.format,
        columns: Arc::new(Schema::new(columns.clone())),
        fail_on_error: k.records.fail_on_error,
    };
    let mut fields = columns;
    fields.extend(meta_fields());
    fields.extend(records::error_fields());
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut batches = Vec::new();
    for (shard, read) in &shards {
        for chunk in read.chunks(8_192) {
            let values: Vec<Option<&[u8]>> =
                chunk.iter().map(|r| Some(r.data.as_slice())).collect();
            let place = |i: usize| {
                format!(
                    "sequence number {} of shard {shard} of stream '{}'",
                    chunk[i].sequence, k.stream
                )
            };
            let (mut cols, errors) = decoder.decode(&values, &place)?;
            let n = chunk.len();
            cols.push(Arc::new(StringArray::from(vec![k.stream.as_str(); n])));
            cols.push(Arc::new(StringArray::from(vec![shard.as_str(); n])));
            cols.push(Arc::new(
                chunk
                    .iter()
                    .map(|r| Some(r.sequence.as_str()))
                    .collect::<StringArray>(),
            ));
            cols.push(Arc::new(
                TimestampMicrosecondArray::from_iter_values(chunk.iter().map(|r| r.arrival_micros))
                    .with_timezone("UTC"),
            ));
            cols.push(Arc::new(
                chunk
                    .iter()
                    .map(|r| Some(r.partition_key.as_str()))
                    .collect::<StringArray>(),
            ));
            cols.extend(errors);
            batches.push(RecordBatch::try_new(schema.clone(), cols)?);
        }
    }
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}
