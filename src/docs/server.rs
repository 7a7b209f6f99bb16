//! `rsdbt docs serve`: the page and a small JSON API over the artifacts, from memory. Only the
//! routes below exist — no file is read by a path from the request, so no path escapes the
//! target folder.

use std::path::Path;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::site::{self, Artifacts};

/// What the server answers with: one generation of the artifacts and the page built from them.
pub struct Site {
    version: u64,
    artifacts: Artifacts,
    data: Value,
    html: String,
}

impl Site {
    /// Reads the artifacts in `target_dir`; `version` tells open pages that it changed.
    pub fn load(target_dir: &Path, version: u64) -> std::io::Result<Site> {
        let artifacts = Artifacts::read(target_dir)?;
        let mut data = site::data(&artifacts);
        data["version"] = json!(version);
        let html = site::page(&data);
        Ok(Site {
            version,
            artifacts,
            data,
            html,
        })
    }

    pub fn version(&self) -> u64 {
        self.version
    }
}

pub type Shared = Arc<RwLock<Site>>;

pub fn router(site: Shared) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/api/version", get(version))
        .route("/api/site", get(|s| artifact(s, |s| &s.data)))
        .route(
            "/api/manifest",
            get(|s| artifact(s, |s| &s.artifacts.manifest)),
        )
        .route(
            "/api/catalog",
            get(|s| artifact(s, |s| &s.artifacts.catalog)),
        )
        .route(
            "/api/run_results",
            get(|s| artifact(s, |s| &s.artifacts.run_results)),
        )
        .route(
            "/api/lineage",
            get(|s| artifact(s, |s| &s.artifacts.lineage)),
        )
        .route("/api/nodes/{id}", get(node))
        .fallback(not_found)
        .with_state(site)
}

fn with_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn json_response(status: StatusCode, body: String) -> Response {
    with_headers(
        (
            status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            body,
        )
            .into_response(),
    )
}

async fn index(State(site): State<Shared>) -> Response {
    let html = site.read().expect("site lock").html.clone();
    with_headers(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

async fn version(State(site): State<Shared>) -> Response {
    let v = site.read().expect("site lock").version;
    json_response(StatusCode::OK, json!({ "version": v }).to_string())
}

async fn artifact(State(site): State<Shared>, pick: fn(&Site) -> &Value) -> Response {
    let body = {
        let s = site.read().expect("site lock");
        let v = pick(&s);
        if v.is_null() {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"error": "not generated yet: run `rsdbt docs generate` (and `rsdbt run` for run results)"}).to_string(),
            );
        }
        v.to_string()
    };
    json_response(StatusCode::OK, body)
}

async fn node(State(site): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let s = site.read().expect("site lock");
    let found = s.data["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == id.as_str()));
    match found {
        Some(n) => json_response(StatusCode::OK, n.to_string()),
        None => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no node {id}")}).to_string(),
        ),
    }
}

async fn not_found() -> Response {
    with_headers((StatusCode::NOT_FOUND, "not found\n").into_response())
}

/// Where `/metrics` reads: the target folder's latest artifacts, labelled with the project and
/// target that wrote them.
pub struct MetricsSource {
    pub target_dir: std::path::PathBuf,
    pub project: String,
    pub target: String,
}

/// `/metrics`: Prometheus' text exposition of the latest run, read at each scrape.
pub fn metrics_router(source: Arc<MetricsSource>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let s = source.clone();
            async move {
                let origin = crate::metrics::Origin {
                    project: &s.project,
                    target: &s.target,
                };
                let body = crate::metrics::from_target_dir(&s.target_dir, &origin);
                with_headers(
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                        .into_response(),
                )
            }
        }),
    )
}

/// Serves the docs (and `/metrics`) until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    site: Shared,
    metrics: Arc<MetricsSource>,
) -> std::io::Result<()> {
    axum::serve(listener, router(site).merge(metrics_router(metrics))).await
}

/// Serves only `/metrics` (for `--watch`) until the process ends.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<MetricsSource>,
) -> std::io::Result<()> {
    axum::serve(listener, metrics_router(metrics)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A target folder with a two-node manifest and a catalog.
    fn target() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let manifest = json!({
            "metadata": {"project_name": "shop", "generated_at": "2026-01-01T00:00:00Z"},
            "nodes": {
                "model.shop.orders": {"resource_type": "model", "name": "orders", "package_name": "shop",
                    "original_file_path": "models/orders.sql", "fqn": ["shop", "orders"], "tags": [],
                    "description": "Orders <img src=x onerror=alert(1)>", "columns": {},
                    "raw_code": "select * from {{ ref('raw') }}", "compiled_code": "select * from raw",
                    "config": {"materialized": "table"}, "depends_on": {"nodes": ["seed.shop.raw"]}},
                "seed.shop.raw": {"resource_type": "seed", "name": "raw", "package_name": "shop",
                    "original_file_path": "seeds/raw.csv", "fqn": ["shop", "raw"], "tags": [],
                    "description": "", "columns": {}, "config": {"materialized": "seed"},
                    "depends_on": {"nodes": []}}
            },
            "sources": {}, "exposures": {}
        });
        let catalog = json!({"nodes": {"model.shop.orders": {"columns": {"id": {"name": "id", "type": "Int64", "index": 1}}}}, "sources": {}});
        std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
        std::fs::write(dir.path().join("catalog.json"), catalog.to_string()).unwrap();
        dir
    }

    /// Raw HTTP/1.1 requests, so the paths are sent exactly as written.
    fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text[9..12].parse().unwrap();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    #[test]
    fn routes_answer_and_nothing_else_is_served() {
        let dir = target();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let site = Arc::new(RwLock::new(Site::load(dir.path(), 7).unwrap()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(MetricsSource {
            target_dir: dir.path().to_path_buf(),
            project: "shop".into(),
            target: "dev".into(),
        });
        rt.spawn(serve(listener, site.clone(), metrics));

        let (status, html) = get(addr, "/");
        assert_eq!(status, 200);
        assert!(html.contains("<canvas id=\"graph\""), "{html}");
        assert!(html.contains("model.shop.orders"));
        // The description's HTML is text on the page.
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "escaped description"
        );
        assert!(!html.contains("<img src=x"));

        assert_eq!(get(addr, "/api/version"), (200, "{\"version\":7}".into()));
        let (status, body) = get(addr, "/api/nodes/model.shop.orders");
        assert_eq!(status, 200);
        let node: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(node["columns"][0]["name"], "id");
        assert_eq!(node["columns"][0]["type"], "Int64");
        assert_eq!(node["deps"], json!(["seed.shop.raw"]));
        let (status, body) = get(addr, "/api/manifest");
        assert_eq!(status, 200);
        assert!(body.contains("\"project_name\":\"shop\""));
        assert_eq!(get(addr, "/api/run_results").0, 404, "no run yet");
        assert_eq!(get(addr, "/api/nodes/model.shop.nope").0, 404);

        std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
        for path in [
            "/manifest.json",
            "/secret.txt",
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/api/../secret.txt",
            "/..%2f..%2fetc%2fpasswd",
            "//etc/passwd",
        ] {
            let (status, body) = get(addr, path);
            assert!(status == 404 || status == 400, "{path}: {status}");
            assert!(
                !body.contains("secret") && !body.contains("root:"),
                "{path}"
            );
        }

        // /metrics reads the latest run at each scrape, whoever wrote it.
        let (status, body) = get(addr, "/metrics");
        assert_eq!(status, 200);
        assert_eq!(body.trim(), "# EOF", "no run yet: no series");
        std::fs::write(
            dir.path().join("run_results.json"),
            json!({"args": {"which": "run"}, "elapsed_time": 1.5, "results": [
                {"unique_id": "model.shop.orders", "status": "success", "execution_time": 0.25,
                 "adapter_response": {"rows_affected": 3}, "timing": []}]})
            .to_string(),
        )
        .unwrap();
        let body = get(addr, "/metrics").1;
        assert!(
            body.contains(r#"rsdbt_node_duration_seconds{project="shop",target="dev",node="model.shop.orders",resource_type="model",status="success"} 0.25"#),
            "{body}"
        );

        // A new generation is what the page polls for.
        *site.write().unwrap() = Site::load(dir.path(), 8).unwrap();
        assert_eq!(get(addr, "/api/version").1, "{\"version\":8}");
    }
}
