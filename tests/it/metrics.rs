//! Prometheus metrics: a file for node_exporter's textfile collector, and a push to a real
//! Pushgateway scraped by a real Prometheus (started by scripts/test.sh), where every query of
//! the committed Grafana dashboard and the alert rules are run.

use serde_json::Value;

use crate::harness::{Project, repo_root};

/// The Pushgateway and Prometheus URLs; outside CI a missing server skips with a notice.
fn prometheus() -> Option<(String, String)> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("RSDBT_TEST_PUSHGATEWAY"), var("RSDBT_TEST_PROMETHEUS")) {
        (Some(g), Some(p)) => Some((g, p)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI must provide Prometheus: run the tests through scripts/test.sh")
        }
        _ => {
            eprintln!(
                "NOTICE: skipping a Prometheus test: no server (run scripts/test.sh, which starts one)"
            );
            None
        }
    }
}

fn get(url: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::get(url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .text()
            .await
            .map(|t| serde_json::from_str::<Value>(&t).unwrap())
            .unwrap()
    })
}

/// The series a PromQL query returns now.
fn query(prom: &str, promql: &str) -> Vec<Value> {
    let mut url = reqwest::Url::parse(&format!("{prom}/api/v1/query")).unwrap();
    url.query_pairs_mut().append_pair("query", promql);
    let v = get(url.as_str());
    assert_eq!(v["status"], "success", "{promql}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Waits (up to 30 s: Prometheus scrapes every second) until `promql` returns series.
fn eventually(prom: &str, promql: &str) -> Vec<Value> {
    for _ in 0..150 {
        let r = query(prom, promql);
        if !r.is_empty() {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("no series for {promql} after 30 s");
}

/// A project whose one singular test fails on 2 rows.
fn failing_project() -> Project {
    let p = Project::fixture("ok_shop");
    p.write(
        "tests/two_bad_rows.sql",
        "select 1 as id union all select 2 as id",
    );
    p
}

#[test]
fn a_metrics_file_describes_the_run() {
    let p = Project::example();
    p.rsdbt(&["build", "--metrics-file", "metrics/rsdbt.prom"])
        .expect(0);
    let text = p.read("metrics/rsdbt.prom");
    let value = |prefix: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        value(
            r#"rsdbt_node_duration_seconds{project="pinboard",target="dev",node="model.pinboard.gld_top_posters",resource_type="model",status="success"}"#
        ) > 0.0
    );
    assert_eq!(
        value(
            r#"rsdbt_node_rows_affected{project="pinboard",target="dev",node="seed.pinboard.users",resource_type="seed"}"#
        ),
        p.query("select count(*) as n from {{ ref('users') }}")[0]["n"]
            .as_f64()
            .unwrap()
    );
    assert_eq!(
        value(r#"rsdbt_run_success{project="pinboard",target="dev",command="build"}"#),
        1.0
    );
    // Bytes: the data files the table's build wrote (its only version so far).
    let parquet_bytes: u64 =
        std::fs::read_dir(p.path().join("warehouse/main_gold/gld_top_posters"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
    assert!(parquet_bytes > 0);
    assert_eq!(
        value(
            r#"rsdbt_node_bytes_written{project="pinboard",target="dev",node="model.pinboard.gld_top_posters",resource_type="model"}"#
        ),
        parquet_bytes as f64
    );
    assert!(!text.contains(r#"rsdbt_node_bytes_written{project="pinboard",target="dev",node="model.pinboard.brz_pins""#), "views write no data");
    assert!(text.contains("# TYPE rsdbt_test_failures gauge"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("rsdbt_test_failures{") && l.ends_with(" 0.0"))
    );

    // A failing test: its failures, and the run marked failed.
    let f = failing_project();
    f.rsdbt(&["build", "--metrics-file", "m.prom"]).expect(1);
    let text = f.read("m.prom");
    assert!(
        text.lines().any(|l| l.starts_with(
            r#"rsdbt_test_failures{project="shop",target="dev",node="test.shop.two_bad_rows""#
        ) && l.ends_with(" 2.0")),
        "{text}"
    );
    assert!(text.contains(r#"rsdbt_run_success{project="shop",target="dev",command="build"} 0.0"#));

    // An unreachable gateway is a warning; the run keeps its exit code.
    let out = p
        .rsdbt(&[
            "run",
            "-s",
            "gld_top_posters",
            "--metrics-push",
            "http://127.0.0.1:9",
        ])
        .expect(0);
    assert!(
        out.stderr.contains("cannot push metrics to http://127.0.0.1:9/metrics/job/rsdbt/project/pinboard/target/dev/command/run"),
        "{}",
        out.stderr
    );
}

#[test]
fn pushed_metrics_answer_the_dashboard_and_the_alerts() {
    let Some((gateway, prom)) = prometheus() else {
        return;
    };
    // The example's build, a failing build of another project, and a freshness check.
    let p = Project::example();
    p.rsdbt(&["build", "--metrics-push", &gateway]).expect(0);
    let f = failing_project();
    f.rsdbt(&["build", "--metrics-push", &gateway]).expect(1);
    f.write(
        "models/fresh.yml",
        "version: 2\nsources:\n  - name: raw\n    schema: raw\n    freshness: {warn_after: {count: 1, period: day}}\n    tables:\n      - name: orders\n",
    );
    f.rsdbt(&["source", "freshness", "--metrics-push", &gateway])
        .expect(0);

    let durations = eventually(
        &prom,
        r#"rsdbt_node_duration_seconds{project="pinboard",resource_type="model"}"#,
    );
    let nodes: Vec<&str> = durations
        .iter()
        .filter_map(|s| s["metric"]["node"].as_str())
        .collect();
    assert!(
        nodes.contains(&"model.pinboard.gld_top_posters"),
        "{nodes:?}"
    );
    let failures = eventually(&prom, r#"rsdbt_test_failures{project="shop"} > 0"#);
    assert_eq!(failures[0]["metric"]["node"], "test.shop.two_bad_rows");
    assert_eq!(failures[0]["value"][1], "2");
    eventually(&prom, r#"rsdbt_source_age_seconds{project="shop"}"#);

    // Every panel of the dashboard answers.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("examples/grafana/rsdbt.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$project", ".*")
                .replace("$target", ".*");
            // Scrapes are every second; a series may land a scrape after the others.
            let answered = (0..50).any(|_| {
                let found = !query(&prom, &expr).is_empty();
                if !found {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                found
            });
            assert!(answered, "panel '{}' has no series: {expr}", panel["title"]);
        }
    }

    // The alert rules load, and the failed run fires RsdbtRunFailed.
    let rules = get(&format!("{prom}/api/v1/rules"));
    let names: Vec<&str> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["RsdbtRunFailed", "RsdbtRunSlow"]);
    let firing = eventually(
        &prom,
        r#"ALERTS{alertname="RsdbtRunFailed",project="shop",alertstate="firing"}"#,
    );
    assert_eq!(firing[0]["metric"]["command"], "build");
    assert!(
        query(
            &prom,
            r#"ALERTS{alertname="RsdbtRunFailed",project="pinboard"}"#
        )
        .is_empty()
    );
}

#[test]
fn watch_serves_metrics_of_each_pass() {
    let p = Project::fixture("check_shop");
    p.rsdbt(&["seed"]).expect(0);
    let mut w =
        crate::harness::Running::start(&p, &["run", "--watch", "--metrics-listen", "127.0.0.1:0"]);
    let line = w.wait_for("Serving metrics at ");
    let url = line
        .split("Serving metrics at ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    w.wait_for("Watching for changes");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scrape = || rt.block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() });
    let body = scrape();
    assert!(
        body.lines().any(|l| l.starts_with(r#"rsdbt_node_duration_seconds{project="check_shop",target="dev",node="model.check_shop.stg_orders""#)),
        "{body}"
    );
    assert!(
        body.contains(r#"rsdbt_run_success{project="check_shop",target="dev",command="run"} 1.0"#)
    );
    // A save whose model fails at run time: the next pass's failure is what /metrics says.
    p.write(
        "models/stg_orders.sql",
        "{{ config(materialized='table') }}\nselect order_id, customer_id, amount as order_amount, ordered_at, cast('x' || order_id as int) as bad from {{ ref('orders') }}\n",
    );
    w.wait_for("Watching for changes");
    let mut body = scrape();
    for _ in 0..50 {
        if body.contains(r#"command="run"} 0.0"#) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        body = scrape();
    }
    assert!(
        body.contains(r#"rsdbt_run_success{project="check_shop",target="dev",command="run"} 0.0"#),
        "{body}"
    );
    w.child.kill().unwrap();
}
