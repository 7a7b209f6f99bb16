//! OpenTelemetry traces of a run: one span for the command and one per node, made from the
//! artifact the run wrote (its timings), so tracing never touches the scheduler. Off unless an
//! OTLP endpoint is configured with the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf` (default)
//! or `http/json`; `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`; `OTEL_SDK_DISABLED` /
//! `OTEL_TRACES_EXPORTER=none` turn it off).

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use serde_json::Value as Json;

/// Whether the environment asks for traces.
pub fn enabled() -> bool {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let endpoint =
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
    endpoint.is_some()
        && var("OTEL_SDK_DISABLED").is_none_or(|v| !v.eq_ignore_ascii_case("true"))
        && var("OTEL_TRACES_EXPORTER").is_none_or(|v| v != "none")
}

/// The exporter's HTTP client: the request runs on the process's runtime (reqwest needs one;
/// the SDK's export thread has none) and the exporter awaits it from its own thread.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let r = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .timeout(Duration::from_secs(10))
                .send()
                .await?;
            let (status, headers) = (r.status(), r.headers().clone());
            Ok::<_, reqwest::Error>((status, headers, r.bytes().await?))
        });
        let (status, headers, bytes) = sent.await??;
        let mut response = Response::builder().status(status);
        if let Some(h) = response.headers_mut() {
            *h = headers;
        }
        Ok(response.body(bytes)?)
    }
}

fn time(v: &Json) -> Option<SystemTime> {
    let t = chrono::DateTime::parse_from_rfc3339(v.as_str()?).ok()?;
    Some(SystemTime::from(t))
}

/// Sends the run's spans and waits until they are exported.
pub fn export(
    artifact: &Json,
    project: &str,
    target: &str,
    runtime: tokio::runtime::Handle,
) -> Result<(), String> {
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Ok("http/json") => Protocol::HttpJson,
        Ok("grpc") => return Err("OTEL_EXPORTER_OTLP_PROTOCOL=grpc: rsdbt exports over HTTP; use http/protobuf or http/json (port 4318)".into()),
        _ => Protocol::HttpBinary,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_http_client(OnRuntime {
            client: reqwest::Client::new(),
            runtime,
        })
        .build()
        .map_err(|e| e.to_string())?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(
                    std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "rsdbt".into()),
                )
                .with_attributes([
                    KeyValue::new("rsdbt.project", project.to_string()),
                    KeyValue::new("rsdbt.target", target.to_string()),
                ])
                .build(),
        )
        .build();
    let tracer = provider.tracer("rsdbt");
    let results = artifact["results"].as_array().cloned().unwrap_or_default();
    let command = crate::metrics::command(artifact);
    let elapsed = artifact["elapsed_time"].as_f64().unwrap_or(0.0);
    let timings = |r: &Json| r["timing"].as_array().cloned().unwrap_or_default();
    let start = results
        .iter()
        .flat_map(timings)
        .filter_map(|t| time(&t["started_at"]))
        .min()
        .unwrap_or_else(|| SystemTime::now() - Duration::from_secs_f64(elapsed));
    let end = start + Duration::from_secs_f64(elapsed);
    let failed = |s: &str| matches!(s, "error" | "fail" | "runtime error" | "partial success");
    let mut root = tracer
        .span_builder(format!("rsdbt {command}"))
        .with_kind(SpanKind::Internal)
        .with_start_time(start)
        .with_attributes([
            KeyValue::new("rsdbt.command", command.clone()),
            KeyValue::new("rsdbt.nodes", results.len() as i64),
        ])
        .start(&tracer);
    let errors = results
        .iter()
        .filter(|r| failed(r["status"].as_str().unwrap_or("")))
        .count();
    if errors > 0 {
        root.set_status(Status::error(format!("{errors} node(s) failed")));
    }
    let parent = Context::current_with_span(root);
    for r in &results {
        let id = r["unique_id"].as_str().unwrap_or("");
        let status = r["status"].as_str().unwrap_or("");
        let t = timings(r);
        let execution = Duration::from_secs_f64(r["execution_time"].as_f64().unwrap_or(0.0));
        let node_start = t
            .first()
            .and_then(|t| time(&t["started_at"]))
            .unwrap_or(start);
        let node_end = t
            .last()
            .and_then(|t| time(&t["completed_at"]))
            .unwrap_or(node_start + execution);
        let mut attributes = vec![
            KeyValue::new("rsdbt.unique_id", id.to_string()),
            KeyValue::new(
                "rsdbt.resource_type",
                id.split('.').next().unwrap_or("").to_string(),
            ),
            KeyValue::new("rsdbt.status", status.to_string()),
        ];
        if let Some(n) = r["adapter_response"]["rows_affected"].as_i64() {
            attributes.push(KeyValue::new("rsdbt.rows_affected", n));
        }
        if let Some(n) = r["failures"].as_i64() {
            attributes.push(KeyValue::new("rsdbt.failures", n));
        }
        let mut span = tracer
            .span_builder(id.to_string())
            .with_start_time(node_start)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent);
        if failed(status) {
            span.set_status(Status::error(
                r["message"].as_str().unwrap_or(status).to_string(),
            ));
        } else {
            span.set_status(Status::Ok);
        }
        span.end_with_timestamp(node_end);
    }
    parent.span().end_with_timestamp(end);
    provider.force_flush().map_err(|e| e.to_string())?;
    provider.shutdown().map_err(|e| e.to_string())
}
