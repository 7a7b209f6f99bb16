//! Time travel on reads: a model pins what `ref()` reads to a Delta version or an Iceberg
//! snapshot, with the `time_travel` config or `ref(...).at_version(n)` / `.at_snapshot(id)`.

use serde_json::json;

use crate::harness::Project;

#[test]
fn refs_read_pinned_delta_versions() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/orders_t.sql",
        "{{ config(materialized='table') }}\nselect * from {{ ref('orders') }}\n",
    );
    p.rsdbt(&["build", "-s", "orders", "orders_t"]).expect(0);
    // Version 1 of orders_t has one more row.
    p.append("seeds/orders.csv", "3,10,1.00,2024-01-03\n");
    p.rsdbt(&["build", "-s", "orders", "orders_t"]).expect(0);
    p.write(
        "models/orders_then.sql",
        "{{ config(materialized='table', time_travel={'orders_t': {'version': 0}}) }}\n\
         select (select count(*) from {{ ref('orders_t') }}) as then_n,\n\
                (select count(*) from {{ ref('orders_t').at_version(1) }}) as now_n\n",
    );
    let out = p.rsdbt(&["run", "-s", "orders_then"]).expect(0);
    assert!(!out.stdout.contains("not checked"), "{}", out.stdout);
    assert_eq!(
        p.query("select then_n, now_n from {{ ref('orders_then') }}"),
        vec![json!({"then_n": 2, "now_n": 3})]
    );
    let compiled = p.rsdbt(&["compile", "-s", "orders_then"]).expect(0).stdout;
    assert!(
        compiled.contains("\"orders_t@v0\"") && compiled.contains("\"orders_t@v1\""),
        "{compiled}"
    );

    // A version the table never had: the model fails with the reason; nothing else breaks.
    p.write(
        "models/orders_then.sql",
        "select count(*) as n from {{ ref('orders_t').at_version(42) }}\n",
    );
    let out = p.rsdbt(&["run", "-s", "orders_then"]).expect(1);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("cannot read version 42 of orders_t"), "{all}");
    // A bad config is an error naming the model.
    p.write(
        "models/orders_then.sql",
        "{{ config(time_travel={'orders_t': {'at': 3}}) }}\nselect * from {{ ref('orders_t') }}\n",
    );
    let out = p.rsdbt(&["compile", "-s", "orders_then"]).expect(2);
    assert!(
        out.stderr
            .contains("time_travel for 'orders_t' needs `version: N`")
            && out.stderr.contains("orders_then.sql"),
        "{}",
        out.stderr
    );
}

/// The snapshot ids of an Iceberg table folder, oldest first (from its newest metadata file).
fn snapshots(p: &Project, schema: &str, table: &str) -> Vec<i64> {
    let dir = p.path().join(format!("warehouse/{schema}/{table}.iceberg"));
    let mut newest: Option<std::path::PathBuf> = None;
    for build in std::fs::read_dir(&dir).unwrap().flatten() {
        for f in std::fs::read_dir(build.path().join("metadata"))
            .unwrap()
            .flatten()
        {
            let path = f.path();
            if path.to_string_lossy().ends_with(".metadata.json")
                && newest.as_ref().is_none_or(|n| {
                    f.metadata().unwrap().modified().unwrap()
                        > n.metadata().unwrap().modified().unwrap()
                })
            {
                newest = Some(path);
            }
        }
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(newest.unwrap()).unwrap()).unwrap();
    let mut snaps: Vec<(i64, i64)> = meta["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["timestamp-ms"].as_i64().unwrap(),
                s["snapshot-id"].as_i64().unwrap(),
            )
        })
        .collect();
    snaps.sort();
    snaps.into_iter().map(|(_, id)| id).collect()
}

#[test]
fn refs_read_pinned_iceberg_snapshots() {
    let p = Project::fixture("ice_shop");
    p.rsdbt(&["build", "-s", "events", "ev_log"]).expect(0);
    let first: i64 = p.query("select count(*) as n from {{ ref('ev_log') }}")[0]["n"]
        .as_i64()
        .unwrap();
    p.append(
        "seeds/events.csv",
        "99,new,2024-02-01,2024-02-01 10:00:00\n",
    );
    p.rsdbt(&["build", "-s", "events", "ev_log"]).expect(0);
    let ids = snapshots(&p, "main", "ev_log");
    assert_eq!(ids.len(), 2, "{ids:?}");
    p.write(
        "models/gold/ev_then.sql",
        &format!(
            "{{{{ config(materialized='table', time_travel={{'ev_log': {{'snapshot_id': {}}}}}) }}}}\n\
             select (select count(*) from {{{{ ref('ev_log') }}}}) as then_n,\n\
                    (select count(*) from {{{{ ref('ev_log').at_snapshot({}) }}}}) as now_n\n",
            ids[0], ids[1]
        ),
    );
    p.rsdbt(&["run", "-s", "ev_then"]).expect(0);
    assert_eq!(
        p.query("select then_n, now_n from {{ ref('ev_then') }}"),
        vec![json!({"then_n": first, "now_n": first + 1})]
    );
}

#[test]
fn rebuilt_tables_get_checkpoints_and_keep_their_history() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/orders_t.sql",
        "{{ config(materialized='table') }}\nselect * from {{ ref('orders') }}\n",
    );
    p.rsdbt(&["seed"]).expect(0);
    for n in 0..11 {
        p.append(
            "seeds/orders.csv",
            &format!("{},10,1.00,2024-02-01\n", 100 + n),
        );
        p.rsdbt(&["build", "-s", "orders", "orders_t"]).expect(0);
    }
    // Version 10 got a checkpoint: opening the table replays it, not eleven commit files.
    let log = p.path().join("warehouse/main/orders_t/_delta_log");
    assert!(log.join("_last_checkpoint").exists());
    assert!(log.join("00000000000000000010.checkpoint.parquet").exists());
    // The newest rows, and an old version still readable (time travel keeps working).
    p.write(
        "models/orders_then.sql",
        "select (select count(*) from {{ ref('orders_t') }}) as now_n,\n\
                (select count(*) from {{ ref('orders_t').at_version(2) }}) as then_n\n",
    );
    p.rsdbt(&["run", "-s", "orders_then"]).expect(0);
    assert_eq!(
        p.query("select now_n, then_n from {{ ref('orders_then') }}"),
        vec![json!({"now_n": 13, "then_n": 5})]
    );
    // Early commits cleaned up (the checkpoint stands for them): still a table, not a first
    // write that never committed.
    for v in 0..10 {
        std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
    }
    assert_eq!(
        p.query("select count(*) as n from {{ ref('orders_t') }}"),
        vec![json!({"n": 13})]
    );
}
