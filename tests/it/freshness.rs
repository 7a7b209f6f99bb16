//! `rsdbt source freshness`: statuses, sources.json, exit codes, selection, metadata-based
//! freshness on the embedded target, `source_status:fresher+`, and PostgreSQL.

use serde_json::{Value, json};

use crate::harness::{Project, pg_exec};

const SOURCES: &str = r#"version: 2
sources:
  - name: shop
    schema: raw
    loaded_at_field: loaded_at
    freshness:
      warn_after: {count: 1, period: day}
    tables:
      - name: old_events
        identifier: events
        freshness:
          error_after: {count: 100000, period: day}
      - name: stale_events
        identifier: events
        freshness:
          error_after: {count: 2, period: hour}
      - name: empty_events
        identifier: events
        freshness:
          filter: "id < 0"
      - name: built_table
        identifier: events
        loaded_at_field: null
      - name: unchecked
        identifier: events
        freshness: null
      - name: no_block
        identifier: events
        freshness: {warn_after: {count: null, period: null}}
  - name: landed
    loaded_at_field: null
    freshness:
      error_after: {count: 1, period: hour}
    tables:
      - name: drops
        external: {location: landing/drops.csv, file_format: csv}
"#;

fn project() -> Project {
    let p = Project::fixture("ok_shop");
    p.write(
        "seeds/events.csv",
        "id,loaded_at\n1,2024-01-01 10:00:00\n2,2024-03-01 12:30:00\n",
    );
    p.write("models/freshness_sources.yml", SOURCES);
    p.write(
        "models/from_events.sql",
        "select id from {{ source('shop', 'old_events') }}",
    );
    p.write("landing/drops.csv", "id\n1\n");
    p.rsdbt(&["seed", "-s", "events"]).expect(0);
    p
}

fn results(p: &Project, file: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(&p.read(file)).unwrap();
    assert_eq!(
        doc["metadata"]["dbt_schema_version"],
        "https://schemas.getdbt.com/dbt/sources/v3.json"
    );
    doc["results"].as_array().unwrap().clone()
}

fn by_id<'a>(results: &'a [Value], id: &str) -> &'a Value {
    results
        .iter()
        .find(|r| r["unique_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {results:#?}"))
}

#[test]
fn statuses_sources_json_and_exit_codes() {
    let p = project();
    let out = p.rsdbt(&["source", "freshness"]).expect(1);
    assert!(
        out.stdout.contains("START freshness of shop.old_events"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("WARN freshness of shop.old_events"));
    assert!(
        out.stdout
            .contains("ERROR STALE freshness of shop.stale_events")
    );
    assert!(out.stdout.contains("PASS freshness of shop.built_table"));
    assert!(out.stdout.contains("PASS freshness of landed.drops"));
    assert!(out.stdout.contains("ERROR freshness of shop.empty_events"));
    assert!(
        out.stdout
            .contains("This can happen when querying an empty table")
    );
    assert!(
        out.stdout.contains("Done. PASS=2 WARN=1 ERROR=2"),
        "{}",
        out.stdout
    );
    let r = results(&p, "target/sources.json");
    // Tables without a threshold (or with `freshness: null`) are not checked.
    assert_eq!(r.len(), 5, "{r:#?}");
    let old = by_id(&r, "source.shop.shop.old_events");
    assert_eq!(old["status"], "warn");
    assert_eq!(old["max_loaded_at"], "2024-03-01T12:30:00.000000+00:00");
    // The source's block merged under the table's.
    assert_eq!(
        old["criteria"],
        json!({"warn_after": {"count": 1, "period": "day"}, "error_after": {"count": 100000, "period": "day"}, "filter": null})
    );
    assert!(old["max_loaded_at_time_ago_in_s"].as_f64().unwrap() > 86400.0);
    assert_eq!(
        by_id(&r, "source.shop.shop.stale_events")["status"],
        "error"
    );
    let empty = by_id(&r, "source.shop.shop.empty_events");
    assert_eq!(empty["status"], "runtime error");
    assert!(empty["error"].as_str().unwrap().contains("loaded_at"));
    // Without a loaded_at_field: when the warehouse last wrote the table (just now).
    let built = by_id(&r, "source.shop.shop.built_table");
    assert_eq!(built["status"], "pass");
    assert!(built["max_loaded_at_time_ago_in_s"].as_f64().unwrap() < 600.0);
    assert_eq!(by_id(&r, "source.shop.landed.drops")["status"], "pass");

    // A selection, and --output.
    let out = p
        .rsdbt(&[
            "source",
            "freshness",
            "-s",
            "source:shop.old_events",
            "-o",
            "out/fresh.json",
        ])
        .expect(0);
    assert!(
        out.stdout.contains("Done. PASS=0 WARN=1 ERROR=0"),
        "{}",
        out.stdout
    );
    assert_eq!(results(&p, "out/fresh.json").len(), 1);
    // A warning is an error with --warn-error.
    p.rsdbt(&[
        "source",
        "freshness",
        "-s",
        "source:shop.old_events",
        "--warn-error",
    ])
    .expect(1);
    // dbt's older name of the command.
    p.rsdbt(&["source", "snapshot-freshness", "-s", "source:landed"])
        .expect(0);
}

#[test]
fn landed_files_age_by_modification_time() {
    let p = project();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 3600);
    std::fs::File::options()
        .write(true)
        .open(p.path().join("landing/drops.csv"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = p
        .rsdbt(&["source", "freshness", "-s", "source:landed"])
        .expect(1);
    assert!(
        out.stdout.contains("ERROR STALE freshness of landed.drops"),
        "{}",
        out.stdout
    );
    let r = results(&p, "target/sources.json");
    let age = r[0]["max_loaded_at_time_ago_in_s"].as_f64().unwrap();
    assert!(
        (3.0 * 3600.0 - 60.0..3.0 * 3600.0 + 600.0).contains(&age),
        "{age}"
    );
}

#[test]
fn a_bad_threshold_names_the_file() {
    let p = project();
    p.write(
        "models/freshness_sources.yml",
        &SOURCES.replace("{count: 1, period: day}", "{count: 1, period: fortnight}"),
    );
    let out = p.rsdbt(&["source", "freshness"]).expect(2);
    assert!(
        out.stderr.contains("freshness warn_after must be")
            && out.stderr.contains("freshness_sources.yml"),
        "{}",
        out.stderr
    );
}

#[test]
fn fresher_sources_select_their_descendants() {
    let p = project();
    p.rsdbt(&["run", "-s", "from_events"]).expect(0);
    p.rsdbt(&[
        "source",
        "freshness",
        "-s",
        "source:shop.old_events",
        "source:shop.stale_events",
    ])
    .expect(1);
    let state = p.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    for f in ["manifest.json", "sources.json"] {
        std::fs::copy(p.path().join("target").join(f), state.join(f)).unwrap();
    }
    // Without newer data nothing is fresher.
    let ls = |p: &Project| {
        p.rsdbt(&["ls", "-s", "source_status:fresher+", "--state", "state"])
            .expect(0)
            .stdout
    };
    assert_eq!(ls(&p).trim(), "", "nothing is fresher yet");
    // Newer rows arrive; only old_events is checked again.
    p.append("seeds/events.csv", "3,2024-06-01 00:00:00\n");
    p.rsdbt(&["seed", "-s", "events"]).expect(0);
    p.rsdbt(&["source", "freshness", "-s", "source:shop.old_events"])
        .expect(0);
    let listed = ls(&p);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines,
        ["source:shop.shop.old_events", "shop.from_events"],
        "{listed}"
    );
    // Without --state the method is refused with a hint.
    let out = p.rsdbt(&["ls", "-s", "source_status:fresher"]).expect(2);
    assert!(out.stderr.contains("--state"), "{}", out.stderr);
}

#[test]
fn freshness_on_postgres() {
    let Some(p) = Project::fixture_pg("ok_shop") else {
        return;
    };
    let schema = {
        let profile = p.read("profiles.yml");
        let line = profile
            .lines()
            .find(|l| l.trim_start().starts_with("schema:"))
            .unwrap()
            .to_string();
        line.split(':').nth(1).unwrap().trim().to_string()
    };
    pg_exec(&format!(
        "drop schema if exists {schema}_raw cascade; create schema {schema}_raw;
         create table {schema}_raw.orders (id int, loaded_at timestamptz);
         insert into {schema}_raw.orders values (1, now() - interval '3 hours');"
    ));
    p.write(
        "models/freshness_sources.yml",
        &format!(
            "version: 2\nsources:\n  - name: app\n    schema: {schema}_raw\n    freshness:\n      warn_after: {{count: 1, period: hour}}\n      error_after: {{count: 1, period: day}}\n    tables:\n      - name: orders\n        loaded_at_field: loaded_at\n      - name: no_field\n        identifier: orders\n"
        ),
    );
    let out = p.rsdbt(&["source", "freshness"]).expect(1);
    assert!(
        out.stdout.contains("WARN freshness of app.orders"),
        "{}",
        out.stdout
    );
    let r = results(&p, "target/sources.json");
    let age = by_id(&r, "source.shop.app.orders")["max_loaded_at_time_ago_in_s"]
        .as_f64()
        .unwrap();
    assert!(
        (3.0 * 3600.0 - 60.0..3.0 * 3600.0 + 600.0).contains(&age),
        "{age}"
    );
    let no_field = by_id(&r, "source.shop.app.no_field");
    assert_eq!(no_field["status"], "runtime error");
    assert!(
        no_field["error"]
            .as_str()
            .unwrap()
            .contains("no 'loaded_at_field' provided"),
        "{no_field}"
    );
    pg_exec(&format!("drop schema {schema}_raw cascade;"));
}
