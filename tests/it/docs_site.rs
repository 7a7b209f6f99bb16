//! The docs page: `docs serve` with live reload, and the page itself in headless Chromium
//! (graph, click, columns, compiled SQL, column lineage, selector box, search; the 10,000-model
//! figures).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Project, Running, repo_root};

fn get(url: &str, path: &str) -> (u16, String) {
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
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

fn json_of(url: &str, path: &str) -> Value {
    let (status, body) = get(url, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Starts `docs serve` on a free port; returns the process and its URL.
fn serve(p: &Project) -> (Running, String) {
    let mut s = Running::start(p, &["docs", "serve", "--port", "0", "--no-browser"]);
    let lines = s.wait_for("Serving docs at ");
    let url = lines
        .split("Serving docs at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (s, url)
}

#[test]
fn an_unknown_doc_block_is_an_error_naming_the_file() {
    let p = Project::example();
    let yml = p
        .read("models/schema.yml")
        .replace("{{ doc('follower_count') }}", "{{ doc('follower_cnt') }}");
    p.write("models/schema.yml", &yml);
    let out = p.rsdbt(&["parse"]).expect(2);
    assert!(
        out.stderr.contains("doc('follower_cnt')") && out.stderr.contains("schema.yml"),
        "{}",
        out.stderr
    );
}

#[test]
fn docs_serve_reloads_when_a_description_changes() {
    let p = Project::example();
    p.rsdbt(&["build"]).expect(0);
    let out = p.rsdbt(&["docs", "generate", "--static"]).expect(0);
    assert!(
        out.stdout
            .contains("Docs page written to target/rsdbt/index.html"),
        "{}",
        out.stdout
    );
    // dbt's --static file is the same self-contained page.
    assert_eq!(
        p.read("target/rsdbt/static_index.html"),
        p.read("target/rsdbt/index.html")
    );
    // The page opens from disk: data and script are inside it.
    let html = p.read("target/rsdbt/index.html");
    assert!(html.contains("\"id\":\"model.pinboard.gld_top_posters\""));
    assert!(!html.contains("src=\"http"), "no network resource");

    let (mut server, url) = serve(&p);
    let (status, page) = get(&url, "/");
    assert_eq!(status, 200);
    assert!(page.contains("<canvas id=\"graph\""));
    let v1 = json_of(&url, "/api/version")["version"].as_u64().unwrap();
    let node = json_of(&url, "/api/nodes/model.pinboard.slv_pins");
    assert!(
        node["desc"]
            .as_str()
            .unwrap()
            .contains("latest ingested version")
    );
    assert_eq!(
        json_of(&url, "/api/run_results")["results"]
            .as_array()
            .unwrap()
            .len(),
        28
    );
    assert!(json_of(&url, "/api/lineage")["models"]["model.pinboard.slv_pins"].is_object());
    // `{{ doc('follower_count') }}` is the docs block of models/docs.md, as Markdown.
    let follower = node["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "follower_count")
        .unwrap();
    assert!(
        follower["desc"]
            .as_str()
            .unwrap()
            .contains("<strong>when the pin was ingested</strong>"),
        "{follower}"
    );
    assert_eq!(get(&url, "/../project.yml").0, 404);
    assert_eq!(get(&url, "/%2e%2e/project.yml").0, 404);

    // A save regenerates the docs; the version open pages poll moves on.
    let yml = p.read("models/schema.yml").replace(
        "One row per pin, latest ingested version",
        "One row per *pin*, <b>newest</b> version",
    );
    p.write("models/schema.yml", &yml);
    server.wait_for("Docs regenerated");
    let deadline = Instant::now() + Duration::from_secs(30);
    while json_of(&url, "/api/version")["version"].as_u64().unwrap() == v1 {
        assert!(Instant::now() < deadline, "version did not change");
        std::thread::sleep(Duration::from_millis(100));
    }
    let desc = json_of(&url, "/api/nodes/model.pinboard.slv_pins")["desc"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        desc.contains("<em>pin</em>") && desc.contains("&lt;b&gt;newest&lt;/b&gt;"),
        "Markdown rendered, HTML escaped: {desc}"
    );
    // A broken save keeps the last good generation.
    p.write("models/schema.yml", "models: [\n");
    // The diagnostic (stderr) and the note (stdout) arrive on two pipes, in either order.
    server.wait_for_all(&["keeps the last good generation", "models/schema.yml"]);
    assert!(
        json_of(&url, "/api/nodes/model.pinboard.slv_pins")["desc"]
            .as_str()
            .unwrap()
            .contains("<em>pin</em>")
    );
}

/// playwright-core's folder and the browser, or None (outside CI) when they are not here.
fn browser() -> Option<PathBuf> {
    let modules = std::env::var_os("RSDBT_TEST_PLAYWRIGHT").map(PathBuf::from);
    let chromium =
        std::env::var_os("CHROMIUM").map_or(PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    match modules {
        Some(m) if m.join("playwright-core").is_dir() && chromium.exists() => Some(m),
        _ if std::env::var_os("CI").is_some() => panic!(
            "the browser test needs Chromium ({}) and playwright-core (RSDBT_TEST_PLAYWRIGHT); scripts/test.sh installs both",
            chromium.display()
        ),
        _ => {
            eprintln!(
                "NOTICE: skipping the headless Chromium test: run it through scripts/test.sh, which installs Chromium and playwright-core"
            );
            None
        }
    }
}

fn drive(modules: &PathBuf, args: &[&str], edit: Option<Value>) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(repo_root().join("tests/e2e/docs.mjs"))
        .args(args)
        .env("RSDBT_TEST_PLAYWRIGHT", modules);
    if let Some(e) = edit {
        cmd.env("RSDBT_E2E_EDIT", e.to_string());
    }
    let out = cmd.output().expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser script failed\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["errors"], serde_json::json!([]), "errors on the page");
    v
}

fn ids(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn docs_page_in_headless_chromium() {
    let Some(modules) = browser() else { return };
    let p = Project::example();
    p.rsdbt(&["build"]).expect(0);
    p.rsdbt(&["docs", "generate"]).expect(0);
    let (_server, url) = serve(&p);
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("docs-example.png");
    let selectors = [
        "gold+",
        "+slv_pins",
        "tag:silver,config.materialized:table",
        "@slv_users",
        "+exposure:content_dashboard",
        "bronze.brz_*",
        "test_type:singular",
        "test_name:unique,tag:silver",
        // Paths as dbt: a model at the yml that describes it; `*` within one folder name.
        "path:models/schema.yml",
        "models/*/slv_*.sql",
        "slv_geo.sql",
        // The page's result: is the last run's, as `--state target/rsdbt` gives ls.
        "result:success",
        "result:pass+",
    ];
    let mut args = vec![
        "example",
        &url,
        shot.to_str().unwrap(),
        "model.pinboard.gld_category_by_country",
        "category",
        "gold+",
        "follower",
    ];
    args.extend(selectors);
    // The page open on slv_pins updates when its description is saved.
    let edit = serde_json::json!({
        "file": p.path().join("models/schema.yml"),
        "from": "One row per pin, latest ingested version",
        "to": "One row per pin, newest version",
        "node": "model.pinboard.slv_pins",
    });
    let v = drive(&modules, &args, Some(edit));

    // The graph shows every seed, model, snapshot and exposure (tests are a toggle, off at
    // first).
    let m: Value = serde_json::from_str(&p.read("target/rsdbt/manifest.json")).unwrap();
    let expected: BTreeSet<String> = m["nodes"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, n)| n["resource_type"] != "test")
        .map(|(id, _)| id.clone())
        .chain(m["exposures"].as_object().unwrap().keys().cloned())
        .collect();
    assert!(expected.contains("exposure.pinboard.content_dashboard"));
    assert_eq!(ids(&v["graph"]), expected);

    // Clicking the model's box opens its page: columns with the catalog's types, compiled SQL.
    assert_eq!(v["title"], "gld_category_by_country");
    let c: Value = serde_json::from_str(&p.read("target/rsdbt/catalog.json")).unwrap();
    let mut catalog_cols: Vec<(i64, String, String)> =
        c["nodes"]["model.pinboard.gld_category_by_country"]["columns"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| {
                (
                    c["index"].as_i64().unwrap(),
                    c["name"].as_str().unwrap().to_string(),
                    c["type"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    catalog_cols.sort();
    let shown: Vec<(String, String)> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        catalog_cols
            .into_iter()
            .map(|(_, n, t)| (n, t))
            .collect::<Vec<_>>()
    );
    assert!(
        v["compiled"]
            .as_str()
            .unwrap()
            .contains("row_number() over (partition by country"),
        "{}",
        v["compiled"]
    );
    assert_eq!(v["upstream"], serde_json::json!(["int_pins_enriched"]));

    // The category column comes from the pins seed through bronze and silver (the ephemeral
    // int_pins_enriched is inlined, so lineage passes through it).
    assert_eq!(
        ids(&v["lineage"]["upstream"]),
        BTreeSet::from([
            "seed.pinboard.pins.category".to_string(),
            "model.pinboard.brz_pins.category".to_string(),
            "model.pinboard.slv_pins.category".to_string(),
        ])
    );
    assert!(
        v["followed"]
            .as_str()
            .unwrap()
            .ends_with("/column/category"),
        "{}",
        v["followed"]
    );

    // The selector box focuses the graph on what `rsdbt ls` selects.
    let ls = |expr: &str| -> BTreeSet<String> {
        let mut args = vec!["ls", "--select", expr, "--output", "json"];
        if expr.contains("result:") {
            args.extend(["--state", "target/rsdbt"]);
        }
        p.rsdbt(&args)
            .expect(0)
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|n| n["resource_type"] != "unit_test")
            .map(|n| n["unique_id"].as_str().unwrap().to_string())
            .collect()
    };
    let gold = ls("gold+");
    let shown: BTreeSet<String> = ids(&v["select"]["visible"]);
    assert_eq!(
        shown,
        gold.iter()
            .filter(|id| !id.starts_with("test."))
            .cloned()
            .collect()
    );
    for expr in selectors {
        assert_eq!(ids(&v["selections"][expr]), ls(expr), "--select {expr}");
    }

    // Search finds columns.
    assert!(
        ids(&v["search"]["first"]).contains("model.pinboard.slv_pins"),
        "{}",
        v["search"]
    );
    assert!(shot.metadata().unwrap().len() > 10_000);
    assert!(v["reloads"].as_u64().unwrap() >= 1, "{v}");
    println!(
        "live reload: the open page showed the saved description {} ms after the save",
        v["reloadedMs"]
    );
    println!("screenshot: {}", shot.display());
}

/// The 10,000-model synthetic project: prints first render, selection and search times
/// (figures, not assertions — timing is a benchmark's job).
#[test]
fn docs_page_scale_figures() {
    let Some(modules) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("p");
    let status = Command::new("python3")
        .arg(repo_root().join("scripts/gen_synthetic_project.py"))
        .arg("10000")
        .arg(&project)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_rsdbt"))
        .args(["docs", "generate", "--empty-catalog"])
        .current_dir(&project)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = format!("file://{}", project.join("target/index.html").display());
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("docs-10k.png");
    let v = drive(
        &modules,
        &[
            "scale",
            &page,
            shot.to_str().unwrap(),
            "silver+",
            "+gold_00042",
            "tag:gold",
            "*",
        ],
        None,
    );
    assert_eq!(v["nodes"], 10_000);
    assert_eq!(v["selects"][0]["nodes"], 8_000);
    assert!(v["selects"][1]["nodes"].as_u64().unwrap() > 2);
    assert_eq!(v["searches"][0]["hits"], 1);
    println!(
        "docs page, 10,000 models: first render {:.0} ms (painted {:.0} ms, load to ready {} ms)",
        v["open"]["firstRenderMs"].as_f64().unwrap(),
        v["open"]["paintedMs"].as_f64().unwrap(),
        v["open"]["wallMs"]
    );
    for s in v["selects"].as_array().unwrap() {
        println!(
            "  select {:<14} {:>6.1} ms ({} nodes)",
            s["expr"].as_str().unwrap(),
            s["ms"].as_f64().unwrap(),
            s["nodes"]
        );
    }
    for s in v["searches"].as_array().unwrap() {
        println!(
            "  search {:<22} {:>6.1} ms ({} hits)",
            s["q"].as_str().unwrap(),
            s["ms"].as_f64().unwrap(),
            s["hits"]
        );
    }
    println!("screenshot: {}", shot.display());
}
