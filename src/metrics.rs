//! Prometheus metrics of a command, made from the artifact it wrote (`run_results.json`, or
//! `sources.json` for `source freshness`), so a file for node_exporter's textfile collector,
//! a push to a Pushgateway and `docs serve`'s `/metrics` all say the same thing. dbt has no
//! metrics; the names follow Prometheus' conventions (`rsdbt_` prefix, base units, one series
//! per node: cardinality grows with the project, never with time).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value as Json;

type Labels = Vec<(String, String)>;
type Gauges = Family<Labels, Gauge<f64, AtomicU64>>;

/// Who ran: labels on every series, and the Pushgateway's grouping key.
pub struct Origin<'a> {
    pub project: &'a str,
    pub target: &'a str,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn time(v: &Json) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(v.as_str()?).ok()?;
    Some(t.timestamp_micros() as f64 / 1e6)
}

fn is_freshness(artifact: &Json) -> bool {
    artifact["metadata"]["dbt_schema_version"]
        .as_str()
        .is_some_and(|v| v.contains("/sources/"))
}

/// The command that wrote the artifact (dbt's `which`).
pub fn command(artifact: &Json) -> String {
    if is_freshness(artifact) {
        "freshness".into()
    } else {
        artifact["args"]["which"].as_str().unwrap_or("run").into()
    }
}

/// The metric families, registered once, filled from each artifact.
struct Families {
    start: Gauges,
    end: Gauges,
    duration: Gauges,
    success: Gauges,
    nodes: Gauges,
    source_age: Gauges,
    node_duration: Gauges,
    rows: Gauges,
    bytes: Gauges,
    failures: Gauges,
}

impl Families {
    fn register(reg: &mut Registry) -> Families {
        let mut family = |name: &str, help: &str| {
            let g = Gauges::default();
            reg.register(name, help, g.clone());
            g
        };
        Families {
            start: family(
                "run_start_timestamp_seconds",
                "When the last run started (Unix time)",
            ),
            end: family(
                "run_end_timestamp_seconds",
                "When the last run ended (Unix time)",
            ),
            duration: family("run_duration_seconds", "Wall time of the last run"),
            success: family(
                "run_success",
                "1 when the last run had no error or failure, else 0",
            ),
            nodes: family("run_nodes", "Nodes of the last run by status"),
            source_age: family(
                "source_age_seconds",
                "Age of each source's newest load at the last freshness check",
            ),
            node_duration: family(
                "node_duration_seconds",
                "Execution time of each node in the last run",
            ),
            rows: family(
                "node_rows_affected",
                "Rows each model, seed or snapshot wrote in the last run",
            ),
            bytes: family(
                "node_bytes_written",
                "Bytes of data files each model, seed or snapshot wrote in the last run",
            ),
            failures: family(
                "test_failures",
                "Failing rows of each data test (and unit test) in the last run",
            ),
        }
    }

    fn fill(&self, artifact: &Json) {
        let results = artifact["results"].as_array().cloned().unwrap_or_default();
        let command = command(artifact);
        let command = command.as_str();
        let elapsed = artifact["elapsed_time"].as_f64().unwrap_or(0.0);
        let started = results
            .iter()
            .flat_map(|r| r["timing"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| time(&t["started_at"]))
            .reduce(f64::min)
            .or_else(|| time(&artifact["metadata"]["generated_at"]).map(|g| g - elapsed))
            .unwrap_or(0.0);
        let cmd = labels(&[("command", command)]);
        self.start.get_or_create(&cmd).set(started);
        self.end.get_or_create(&cmd).set(started + elapsed);
        self.duration.get_or_create(&cmd).set(elapsed);
        let failed = |s: &str| matches!(s, "error" | "fail" | "runtime error" | "partial success");
        let statuses: Vec<&str> = results
            .iter()
            .map(|r| r["status"].as_str().unwrap_or("unknown"))
            .collect();
        let ok = !statuses.iter().any(|s| failed(s));
        self.success
            .get_or_create(&cmd)
            .set(if ok { 1.0 } else { 0.0 });
        for s in &statuses {
            self.nodes
                .get_or_create(&labels(&[("command", command), ("status", s)]))
                .inc_by(1.0);
        }
        for r in &results {
            let id = r["unique_id"].as_str().unwrap_or("");
            let kind = id.split('.').next().unwrap_or("");
            let status = r["status"].as_str().unwrap_or("");
            if is_freshness(artifact) {
                if let Some(a) = r["max_loaded_at_time_ago_in_s"].as_f64() {
                    self.source_age
                        .get_or_create(&labels(&[("node", id), ("status", status)]))
                        .set(a);
                }
                continue;
            }
            if kind == "operation" {
                continue;
            }
            self.node_duration
                .get_or_create(&labels(&[
                    ("node", id),
                    ("resource_type", kind),
                    ("status", status),
                ]))
                .set(r["execution_time"].as_f64().unwrap_or(0.0));
            if let Some(n) = r["adapter_response"]["rows_affected"].as_f64() {
                self.rows
                    .get_or_create(&labels(&[("node", id), ("resource_type", kind)]))
                    .set(n);
            }
            if let Some(n) = r["adapter_response"]["bytes_written"].as_f64() {
                self.bytes
                    .get_or_create(&labels(&[("node", id), ("resource_type", kind)]))
                    .set(n);
            }
            if matches!(kind, "test" | "unit_test")
                && let Some(n) = r["failures"].as_f64()
            {
                self.failures
                    .get_or_create(&labels(&[("node", id), ("status", status)]))
                    .set(n);
            }
        }
    }
}

/// The text exposition of one or more artifacts (each command's last report).
pub fn exposition(artifacts: &[&Json], origin: &Origin) -> String {
    let mut reg = Registry::with_prefix_and_labels(
        "rsdbt",
        [
            ("project".into(), origin.project.to_string().into()),
            ("target".into(), origin.target.to_string().into()),
        ]
        .into_iter(),
    );
    let families = Families::register(&mut reg);
    for a in artifacts {
        families.fill(a);
    }
    text(&reg)
}

/// What a long-running command (`docs serve`, `--watch`) answers on `/metrics`: the latest
/// `run_results.json` and `sources.json` in the target folder, read at each scrape (another
/// process, an Airflow task say, may have written them).
pub fn from_target_dir(target_dir: &std::path::Path, origin: &Origin) -> String {
    let read = |name: &str| -> Option<Json> {
        serde_json::from_str(&std::fs::read_to_string(target_dir.join(name)).ok()?).ok()
    };
    let artifacts: Vec<Json> = ["run_results.json", "sources.json"]
        .into_iter()
        .filter_map(read)
        .collect();
    exposition(&artifacts.iter().collect::<Vec<_>>(), origin)
}

fn text(reg: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, reg).expect("writing to a String cannot fail");
    out
}

/// The Pushgateway URL of this origin's and command's group: pushing replaces the group's
/// previous metrics, so a node that no longer runs leaves no stale series behind, and a
/// `test` does not wipe what the last `build` reported.
pub fn push_url(gateway: &str, origin: &Origin, artifact: &Json) -> String {
    let seg = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "{}/metrics/job/rsdbt/project/{}/target/{}/command/{}",
        gateway.trim_end_matches('/'),
        seg(origin.project),
        seg(origin.target),
        seg(&command(artifact))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn run_results_become_gauges() {
        let rr = json!({
            "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json", "generated_at": "2024-01-01T00:00:10Z"},
            "args": {"which": "build"},
            "elapsed_time": 4.5,
            "results": [
                {"unique_id": "model.p.orders", "status": "success", "execution_time": 1.25,
                 "adapter_response": {"rows_affected": 42},
                 "timing": [{"name": "execute", "started_at": "2024-01-01T00:00:05Z", "completed_at": "2024-01-01T00:00:06Z"}]},
                {"unique_id": "test.p.not_null_orders_id.abc", "status": "fail", "execution_time": 0.5,
                 "failures": 3, "adapter_response": {}, "timing": []},
            ],
        });
        let text = exposition(
            &[&rr],
            &Origin {
                project: "p",
                target: "dev",
            },
        );
        for line in [
            r#"rsdbt_node_duration_seconds{project="p",target="dev",node="model.p.orders",resource_type="model",status="success"} 1.25"#,
            r#"rsdbt_node_rows_affected{project="p",target="dev",node="model.p.orders",resource_type="model"} 42.0"#,
            r#"rsdbt_test_failures{project="p",target="dev",node="test.p.not_null_orders_id.abc",status="fail"} 3.0"#,
            r#"rsdbt_run_success{project="p",target="dev",command="build"} 0.0"#,
            r#"rsdbt_run_start_timestamp_seconds{project="p",target="dev",command="build"} 1704067205.0"#,
            r#"rsdbt_run_nodes{project="p",target="dev",command="build",status="fail"} 1.0"#,
            "# TYPE rsdbt_node_duration_seconds gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn push_url_escapes_the_grouping_key() {
        assert_eq!(
            push_url(
                "http://gw:9091/",
                &Origin {
                    project: "shop",
                    target: "prod eu"
                },
                &json!({"args": {"which": "build"}})
            ),
            "http://gw:9091/metrics/job/rsdbt/project/shop/target/prod%20eu/command/build"
        );
    }
}
