//! External sources on the embedded engine: CSV, JSON and Parquet files (a file, a folder, a
//! glob), Delta and Iceberg tables by location, with time travel, joined in one model.

use serde_json::json;

use crate::harness::Project;

#[test]
fn files_of_every_format_join_in_one_model() {
    let p = Project::fixture("lake_shop");
    p.rsdbt(&["build"]).expect(0);
    assert_eq!(
        p.query(
            "select name, region, orders, amount from {{ ref('customer_orders') }} order by name"
        ),
        vec![
            json!({"name": "Ada", "region": "EMEA", "orders": 2, "amount": 15.5}),
            json!({"name": "Grace", "region": "AMER", "orders": 1, "amount": 7.25}),
            json!({"name": "Linus", "region": "EMEA", "orders": 0, "amount": 0.0}),
        ]
    );
    // The manifest keeps the declaration, as dbt-external-tables' `external`.
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).unwrap();
    assert_eq!(
        manifest["sources"]["source.lake_shop.files.orders"]["external"],
        json!({"location": "data/orders.json", "file_format": "json"})
    );
}

#[test]
fn lake_tables_by_location_with_time_travel() {
    // A producer project writes a Delta seed and an Iceberg table, twice.
    let producer = Project::fixture("ice_shop");
    producer
        .rsdbt(&["build", "-s", "events", "ev_log"])
        .expect(0);
    producer.write(
        "seeds/events.csv",
        &format!(
            "{}4,new,2024-01-03,2024-01-03 09:00:00\n",
            producer.read("seeds/events.csv")
        ),
    );
    producer
        .rsdbt(&["build", "-s", "events", "ev_log"])
        .expect(0);
    let wh = producer.path().join("warehouse/main");
    let ice_dir = std::fs::read_dir(wh.join("ev_log.iceberg"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // The first snapshot of the Iceberg table, from its metadata (as another reader sees it).
    let newest = std::fs::read_dir(ice_dir.join("metadata"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".metadata.json"))
        .max()
        .unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(newest).unwrap()).unwrap();
    let first_snapshot = meta["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .min_by_key(|s| s["sequence-number"].as_i64())
        .unwrap()["snapshot-id"]
        .as_i64()
        .unwrap();

    let p = Project::fixture("lake_shop");
    p.write(
        "models/lake.yml",
        &format!(
            "version: 2\nsources:\n  - name: lake\n    tables:\n      - name: events\n        external: {{location: '{delta}', file_format: delta}}\n      - name: events_v0\n        external: {{location: '{delta}', file_format: delta, version: 0}}\n      - name: log\n        external: {{location: '{ice}', file_format: iceberg}}\n      - name: log_first\n        external: {{location: '{ice}', file_format: iceberg, snapshot_id: {first_snapshot}}}\n      - name: event_files\n        external: {{location: '{delta}/*.parquet', file_format: parquet}}\n",
            delta = wh.join("events").display(),
            ice = ice_dir.display(),
        ),
    );
    p.write(
        "models/counts.sql",
        "select (select count(*) from {{ source('lake', 'events') }}) as delta_now,\n  (select count(*) from {{ source('lake', 'events_v0') }}) as delta_v0,\n  (select count(*) from {{ source('lake', 'log') }}) as ice_now,\n  (select count(*) from {{ source('lake', 'log_first') }}) as ice_first,\n  (select count(*) from {{ source('lake', 'event_files') }}) as parquet_files\n",
    );
    p.rsdbt(&["run", "-s", "counts"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('counts') }}"),
        // Parquet files: the Delta table's two versions are both still on disk.
        vec![
            json!({"delta_now": 4, "delta_v0": 3, "ice_now": 4, "ice_first": 3, "parquet_files": 7})
        ]
    );
}

#[test]
fn bad_external_declarations_are_diagnostics() {
    let p = Project::fixture("lake_shop");
    p.write(
        "models/bad.yml",
        "version: 2\nsources:\n  - name: broken\n    tables:\n      - name: blob\n        external: {location: data/blob.bin}\n",
    );
    let out = p.rsdbt(&["run"]).expect(2);
    assert!(
        out.stderr
            .contains("source 'broken.blob': unknown or missing file_format for data/blob.bin"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("models/bad.yml"), "{}", out.stderr);
    // A disabled source is left out, declaration and all.
    p.write(
        "models/bad.yml",
        "version: 2\nsources:\n  - name: broken\n    config: {enabled: false}\n    tables:\n      - name: blob\n        external: {location: data/blob.bin}\n",
    );
    let out = p.rsdbt(&["run"]).expect(0);
    assert!(out.stdout.contains(", 3 sources,"), "{}", out.stdout);
    // A location with no data names the source and the path.
    p.write(
        "models/bad.yml",
        "version: 2\nsources:\n  - name: broken\n    tables:\n      - name: blob\n        external: {location: data/missing.parquet}\n",
    );
    p.write(
        "models/uses_blob.sql",
        "select * from {{ source('broken', 'blob') }}",
    );
    let out = p.rsdbt(&["run", "-s", "uses_blob"]).expect(1);
    assert!(
        out.stdout.contains("source.lake_shop.broken.blob"),
        "{}",
        out.stdout
    );
}
