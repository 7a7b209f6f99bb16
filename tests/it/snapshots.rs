//! Snapshots across three runs: updates, a hard delete and a reappearance, for the timestamp
//! and check strategies and every hard_deletes mode; every SCD2 column is checked.

use serde_json::{Value, json};

use crate::harness::Project;

const SEED_2: &str = "id,name,tier,updated_at\n1,ada,gold,2024-01-01 00:00:00\n2,grace,platinum,2024-02-01 00:00:00\n4,linus,bronze,2024-02-01 00:00:00\n";
const SEED_3: &str = "id,name,tier,updated_at\n1,ada,gold,2024-01-01 00:00:00\n2,grace,platinum,2024-02-01 00:00:00\n3,alan,bronze,2024-01-01 00:00:00\n4,linus,bronze,2024-02-01 00:00:00\n";

fn snap(p: &Project, schema: &str, table: &str, cols: &str) -> Vec<Value> {
    p.query(&format!(
        "select {cols} from \"{schema}\".\"{table}\" order by id, dbt_valid_from"
    ))
}

fn run(p: &Project, seed: Option<&str>) {
    if let Some(s) = seed {
        p.write("seeds/customers.csv", s);
    }
    p.rsdbt(&["seed"]).expect(0);
    let out = p.rsdbt(&["snapshot"]).expect(0);
    assert!(
        out.stdout.contains("OK snapshotted snapshots.customers_ts"),
        "{}",
        out.stdout
    );
}

#[test]
fn timestamp_strategy_ignores_hard_deletes() {
    let p = Project::fixture("snap_shop");
    run(&p, None);
    let cols = "id, tier, cast(dbt_valid_from as varchar) as vf, cast(dbt_valid_to as varchar) as vt, cast(dbt_updated_at as varchar) as upd";
    assert_eq!(
        snap(&p, "snapshots", "customers_ts", cols),
        vec![
            json!({"id": 1, "tier": "gold", "vf": "2024-01-01T00:00:00", "vt": null, "upd": "2024-01-01T00:00:00"}),
            json!({"id": 2, "tier": "silver", "vf": "2024-01-01T00:00:00", "vt": null, "upd": "2024-01-01T00:00:00"}),
            json!({"id": 3, "tier": "bronze", "vf": "2024-01-01T00:00:00", "vt": null, "upd": "2024-01-01T00:00:00"}),
        ]
    );
    run(&p, Some(SEED_2));
    let after = snap(&p, "snapshots", "customers_ts", cols);
    assert_eq!(
        after,
        vec![
            json!({"id": 1, "tier": "gold", "vf": "2024-01-01T00:00:00", "vt": null, "upd": "2024-01-01T00:00:00"}),
            json!({"id": 2, "tier": "silver", "vf": "2024-01-01T00:00:00", "vt": "2024-02-01T00:00:00", "upd": "2024-01-01T00:00:00"}),
            json!({"id": 2, "tier": "platinum", "vf": "2024-02-01T00:00:00", "vt": null, "upd": "2024-02-01T00:00:00"}),
            json!({"id": 3, "tier": "bronze", "vf": "2024-01-01T00:00:00", "vt": null, "upd": "2024-01-01T00:00:00"}),
            json!({"id": 4, "tier": "bronze", "vf": "2024-02-01T00:00:00", "vt": null, "upd": "2024-02-01T00:00:00"}),
        ]
    );
    // Nothing changed: the third run keeps the table as it is.
    run(&p, Some(SEED_3));
    assert_eq!(snap(&p, "snapshots", "customers_ts", cols), after);
    // dbt_scd_id: one per version, never null.
    let ids = p.query("select count(distinct dbt_scd_id) as n, count(dbt_scd_id) as m from \"snapshots\".\"customers_ts\"");
    assert_eq!(ids, vec![json!({"n": 5, "m": 5})]);
}

#[test]
fn check_strategy_with_invalidate_and_new_record() {
    let p = Project::fixture("snap_shop");
    run(&p, None);
    run(&p, Some(SEED_2));
    run(&p, Some(SEED_3));
    // invalidate: 3 is closed when it disappears, and comes back as a new version.
    let cols = "id, tier, dbt_valid_to is null as current";
    assert_eq!(
        snap(&p, "snapshots", "customers_check", cols),
        vec![
            json!({"id": 1, "tier": "gold", "current": true}),
            json!({"id": 2, "tier": "silver", "current": false}),
            json!({"id": 2, "tier": "platinum", "current": true}),
            json!({"id": 3, "tier": "bronze", "current": false}),
            json!({"id": 3, "tier": "bronze", "current": true}),
            json!({"id": 4, "tier": "bronze", "current": true}),
        ]
    );
    // An updated version ends exactly when its successor starts (2); a deleted one leaves a
    // gap until the record comes back (3).
    let gaps = p.query(
        "select count(*) as n from \"snapshots\".\"customers_check\" a join \"snapshots\".\"customers_check\" b \
         on a.id = b.id and a.dbt_valid_to is not null and b.dbt_valid_from = a.dbt_valid_to",
    );
    assert_eq!(gaps, vec![json!({"n": 1})]);
    // new_record: a deletion is a version of its own, flagged in dbt_is_deleted.
    let cols = "id, tier, dbt_is_deleted as deleted, dbt_valid_to is null as current";
    assert_eq!(
        snap(&p, "snapshots", "customers_check_all", cols),
        vec![
            json!({"id": 1, "tier": "gold", "deleted": "False", "current": true}),
            json!({"id": 2, "tier": "silver", "deleted": "False", "current": false}),
            json!({"id": 2, "tier": "platinum", "deleted": "False", "current": true}),
            json!({"id": 3, "tier": "bronze", "deleted": "False", "current": false}),
            json!({"id": 3, "tier": "bronze", "deleted": "True", "current": false}),
            json!({"id": 3, "tier": "bronze", "deleted": "False", "current": true}),
            json!({"id": 4, "tier": "bronze", "deleted": "False", "current": true}),
        ]
    );
}

#[test]
fn yaml_snapshot_with_renamed_columns_and_valid_to_current() {
    let p = Project::fixture("snap_shop");
    run(&p, None);
    run(&p, Some(SEED_2));
    let rows = p.query("select id, tier, cast(valid_from as varchar) as vf, cast(valid_to as varchar) as vt from \"main_snaps\".\"customers_yaml\" order by id, valid_from");
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "tier": "gold", "vf": "2024-01-01T00:00:00", "vt": "9999-12-31T00:00:00"}),
            json!({"id": 2, "tier": "silver", "vf": "2024-01-01T00:00:00", "vt": "2024-02-01T00:00:00"}),
            json!({"id": 2, "tier": "platinum", "vf": "2024-02-01T00:00:00", "vt": "9999-12-31T00:00:00"}),
            // invalidate: closed at the run time, which is later than any data timestamp.
            json!({"id": 3, "tier": "bronze", "vf": "2024-01-01T00:00:00", "vt": rows[3]["vt"]}),
            json!({"id": 4, "tier": "bronze", "vf": "2024-02-01T00:00:00", "vt": "9999-12-31T00:00:00"}),
        ]
    );
    assert!(rows[3]["vt"].as_str().unwrap() > "2025", "{rows:?}");
    // Snapshots take part in build, in DAG order after their seed.
    let out = p.rsdbt(&["build"]).expect(0);
    let seed_at = out
        .stdout
        .find("OK loaded seed file main.customers")
        .unwrap();
    let snap_at = out
        .stdout
        .find("OK snapshotted main_snaps.customers_yaml")
        .unwrap();
    assert!(seed_at < snap_at, "{}", out.stdout);
    let err = {
        p.write("snapshots/bad.sql", "{% snapshot bad %}\n{{ config(unique_key='id', strategy='timestamp') }}\nselect 1 as id\n{% endsnapshot %}\n");
        p.rsdbt(&["snapshot"]).expect(2).stderr
    };
    assert!(
        err.contains("snapshot 'bad' uses strategy 'timestamp' without updated_at")
            && err.contains("snapshots/bad.sql"),
        "{err}"
    );
}
