//! Iceberg tables on the embedded target (`table_format: iceberg`): an append-only incremental
//! model across runs, a table rebuilt by swapping in a complete new table, refs between Iceberg
//! and Delta, and strategies Iceberg cannot do rejected before anything runs. Every check reads
//! the tables back through `rsdbt show`, a fresh process that finds them in the catalog file.

use serde_json::json;

use crate::harness::Project;

fn rows(p: &Project, model: &str, cols: &str) -> Vec<serde_json::Value> {
    p.query(&format!(
        "select {cols} from {{{{ ref('{model}') }}}} order by {cols}"
    ))
}

fn ids_status(v: &[(i64, &str)]) -> Vec<serde_json::Value> {
    v.iter()
        .map(|(i, s)| json!({"id": i, "status": s}))
        .collect()
}

fn daily(p: &Project) -> Vec<serde_json::Value> {
    p.query("select cast(day as varchar) as day, events from {{ ref('daily') }} order by day")
}

/// The builds (folders) of an Iceberg table, and its metadata files (one per commit).
fn builds(p: &Project, table: &str) -> (usize, usize) {
    let dir = p.path().join(format!("warehouse/main/{table}.iceberg"));
    let builds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    let metadata = builds
        .iter()
        .map(|b| {
            std::fs::read_dir(b.join("metadata"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".metadata.json")
                })
                .count()
        })
        .sum();
    (builds.len(), metadata)
}

#[test]
fn append_across_runs_and_full_refresh() {
    let p = Project::fixture("ice_shop");
    p.rsdbt(&["build"]).expect(0);
    assert!(p.path().join("warehouse/iceberg.db").is_file());
    let first = ids_status(&[(1, "new"), (2, "new"), (3, "new")]);
    assert_eq!(rows(&p, "ev_log", "id, status"), first);
    assert_eq!(
        daily(&p),
        vec![
            json!({"day": "2024-01-01", "events": 2}),
            json!({"day": "2024-01-02", "events": 1})
        ]
    );
    // A Delta table built from an Iceberg table and a Delta seed.
    assert!(p.path().join("warehouse/main/latest/_delta_log").is_dir());
    assert_eq!(
        rows(&p, "latest", "id, events_that_day"),
        vec![
            json!({"id": 1, "events_that_day": 2}),
            json!({"id": 2, "events_that_day": 2}),
            json!({"id": 3, "events_that_day": 1})
        ]
    );

    // Row 2 is updated, row 4 arrives, row 1 is deleted at the source: the log appends the
    // new versions only.
    p.write(
        "seeds/events.csv",
        "id,status,day,updated_at\n2,shipped,2024-01-01,2024-01-03 08:00:00\n3,new,2024-01-02,2024-01-02 09:00:00\n4,new,2024-01-03,2024-01-03 09:00:00\n",
    );
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(out.stdout.contains("[INSERT 2 in"), "{}", out.stdout);
    let appended = vec![
        json!({"id": 1, "status": "new"}),
        json!({"id": 2, "status": "new"}),
        json!({"id": 2, "status": "shipped"}),
        json!({"id": 3, "status": "new"}),
        json!({"id": 4, "status": "new"}),
    ];
    assert_eq!(rows(&p, "ev_log", "id, status"), appended);
    assert_eq!(
        daily(&p),
        vec![
            json!({"day": "2024-01-01", "events": 3}),
            json!({"day": "2024-01-02", "events": 1}),
            json!({"day": "2024-01-03", "events": 1})
        ]
    );
    // The rebuilt table replaced its previous build; the log is one table with a commit more.
    assert_eq!(builds(&p, "daily").0, 1);
    let log = builds(&p, "ev_log");
    assert_eq!(log, (1, 3), "create, first append, second append");

    // The snapshot (an Iceberg table rebuilt each run) closed row 2's first version and row 1.
    assert_eq!(
        p.query("select id, status, dbt_valid_to is null as current from {{ ref('events_history') }} order by id, dbt_valid_from"),
        vec![
            json!({"id": 1, "status": "new", "current": false}),
            json!({"id": 2, "status": "new", "current": false}),
            json!({"id": 2, "status": "shipped", "current": true}),
            json!({"id": 3, "status": "new", "current": true}),
            json!({"id": 4, "status": "new", "current": true})
        ]
    );
    assert_eq!(builds(&p, "events_history").0, 1);
    assert_eq!(
        p.query("select name from {{ ref('regions') }} order by region"),
        vec![json!({"name": "Europe"}), json!({"name": "United States"})]
    );
    assert!(p.path().join("warehouse/main/regions.iceberg").is_dir());

    // An idle run appends nothing and commits nothing.
    let out = p.rsdbt(&["run", "-s", "ev_log"]).expect(0);
    assert!(out.stdout.contains("[INSERT 0 in"), "{}", out.stdout);
    assert_eq!(builds(&p, "ev_log"), log);
    assert_eq!(rows(&p, "ev_log", "id, status"), appended);

    // --full-refresh rebuilds from the source as it is now, in a new table.
    p.rsdbt(&["run", "--full-refresh"]).expect(0);
    assert_eq!(
        rows(&p, "ev_log", "id, status"),
        ids_status(&[(2, "shipped"), (3, "new"), (4, "new")])
    );
    assert_eq!(builds(&p, "ev_log"), (1, 2));
}

#[test]
fn a_failed_rebuild_keeps_the_previous_table() {
    let p = Project::fixture("ice_shop");
    p.rsdbt(&["build"]).expect(0);
    // Fails while the rows are written (the cast fails on the data, after planning).
    p.write(
        "models/silver/daily.sql",
        "{{ config(materialized='table') }}\nselect day, cast(case when id = 3 then 'x' else '1' end as int) as events from {{ ref('ev_log') }}\n",
    );
    let out = p.rsdbt(&["run", "-s", "daily"]).expect(1);
    assert!(
        out.stdout.contains("Database Error in model daily"),
        "{}",
        out.stdout
    );
    assert_eq!(
        daily(&p),
        vec![
            json!({"day": "2024-01-01", "events": 2}),
            json!({"day": "2024-01-02", "events": 1})
        ]
    );
    assert_eq!(builds(&p, "daily").0, 1, "the failed build left no files");

    // A view of the same name replaces the table.
    p.write(
        "models/silver/daily.sql",
        "{{ config(materialized='view') }}\nselect day from {{ ref('ev_log') }}\n",
    );
    p.rsdbt(&["run", "-s", "daily"]).expect(0);
    assert!(!p.path().join("warehouse/main/daily.iceberg").exists());
    assert!(p.path().join("warehouse/main/daily.view.sql").is_file());
    assert_eq!(
        p.query("select count(*) as n from {{ ref('daily') }}"),
        vec![json!({"n": 3})]
    );
}

#[test]
fn strategies_iceberg_cannot_do_fail_before_anything_runs() {
    let p = Project::fixture("ice_shop");
    p.write(
        "models/silver/ev_latest.sql",
        "{{ config(materialized='incremental', unique_key='id') }}\nselect id, status from {{ ref('events') }}\n",
    );
    let out = p.rsdbt(&["build"]).expect(2);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("model 'ev_latest': incremental_strategy 'merge' (the default with a unique_key) is not supported by table_format 'iceberg'"),
        "{text}"
    );
    assert!(
        text.contains("delta (the embedded default) and PostgreSQL"),
        "{text}"
    );
    assert!(text.contains("models/silver/ev_latest.sql"), "{text}");
    assert!(
        !p.path().join("warehouse/main/events").exists(),
        "nothing ran: {text}"
    );
}

/// Another Iceberg reader (pyiceberg, through the same SQLite catalog) sees the tables rsdbt
/// wrote, with their schema and rows. scripts/test.sh installs pyiceberg; outside CI the test
/// is skipped with a notice when it is missing.
#[test]
fn pyiceberg_reads_the_tables() {
    let Some(python) = crate::harness::pyiceberg() else {
        return;
    };
    let p = Project::fixture("ice_shop");
    p.rsdbt(&["build"]).expect(0);
    let wh = p.path().join("warehouse");
    let script = format!(
        r#"
import json
from pyiceberg.catalog.sql import SqlCatalog
cat = SqlCatalog("rsdbt", uri="sqlite:///{db}", warehouse="file://{wh}")
out = {{}}
for name in ["main.ev_log", "main.daily"]:
    t = cat.load_table(name)
    rows = t.scan().to_arrow().to_pylist()
    out[name] = {{
        "schema": [f"{{f.name}}:{{f.field_type}}:{{'optional' if f.optional else 'required'}}" for f in t.schema().fields],
        "rows": sorted(json.dumps(r, default=str, sort_keys=True) for r in rows),
    }}
print(json.dumps(out))
"#,
        db = wh.join("iceberg.db").display(),
        wh = wh.display()
    );
    let out = crate::harness::run_python(&python, &script, &[]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["main.daily"]["schema"],
        json!(["day:date:optional", "events:long:optional"])
    );
    assert_eq!(
        v["main.daily"]["rows"],
        json!([
            "{\"day\": \"2024-01-01\", \"events\": 2}",
            "{\"day\": \"2024-01-02\", \"events\": 1}"
        ])
    );
    assert_eq!(
        v["main.ev_log"]["schema"],
        json!([
            "id:long:optional",
            "status:string:optional",
            "day:date:optional",
            "updated_at:timestamp:optional"
        ])
    );
    assert_eq!(v["main.ev_log"]["rows"].as_array().unwrap().len(), 3);
}
