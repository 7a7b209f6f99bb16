//! Incremental models on Delta across runs: every strategy's whole table is compared with the
//! expected rows after each step; an idle run writes nothing; --full-refresh rebuilds; a failed
//! run leaves the previous version.

use serde_json::json;

use crate::harness::Project;

fn rows(p: &Project, model: &str, cols: &str) -> Vec<serde_json::Value> {
    p.query(&format!(
        "select {cols} from {{{{ ref('{model}') }}}} order by {cols}"
    ))
}

fn versions(p: &Project, table: &str) -> usize {
    std::fs::read_dir(p.path().join(format!("warehouse/main/{table}/_delta_log")))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count()
}

fn ids_status(v: &[(i64, &str)]) -> Vec<serde_json::Value> {
    v.iter()
        .map(|(i, s)| json!({"id": i, "status": s}))
        .collect()
}

#[test]
fn strategies_across_runs() {
    let p = Project::fixture("inc_shop");
    p.rsdbt(&["build"]).expect(0);
    let first = ids_status(&[(1, "new"), (2, "new"), (3, "new")]);
    for m in ["ev_merge", "ev_append", "ev_delete_insert"] {
        assert_eq!(rows(&p, m, "id, status"), first, "{m}");
    }
    // Row 2 is updated, row 4 arrives, row 1 is deleted at the source.
    p.write(
        "seeds/events.csv",
        "id,status,day,updated_at\n2,shipped,2024-01-01,2024-01-03 08:00:00\n3,new,2024-01-02,2024-01-02 09:00:00\n4,new,2024-01-03,2024-01-03 09:00:00\n",
    );
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(out.stdout.contains("[MERGE 2 in"), "{}", out.stdout);
    let merged = ids_status(&[(1, "new"), (2, "shipped"), (3, "new"), (4, "new")]);
    assert_eq!(rows(&p, "ev_merge", "id, status"), merged);
    assert_eq!(rows(&p, "ev_delete_insert", "id, status"), merged);
    assert_eq!(
        rows(&p, "ev_append", "id, status"),
        vec![
            json!({"id": 1, "status": "new"}),
            json!({"id": 2, "status": "new"}),
            json!({"id": 2, "status": "shipped"}),
            json!({"id": 3, "status": "new"}),
            json!({"id": 4, "status": "new"})
        ]
    );
    // Partitions (days) seen in the new rows are replaced; older ones stay.
    assert_eq!(
        rows(&p, "ev_by_day", "day, events"),
        vec![
            json!({"day": "2024-01-01", "events": 2}),
            json!({"day": "2024-01-02", "events": 1}),
            json!({"day": "2024-01-03", "events": 1})
        ]
    );

    // An idle run changes nothing and adds no Delta version.
    let before: Vec<usize> = ["ev_merge", "ev_append", "ev_delete_insert"]
        .iter()
        .map(|t| versions(&p, t))
        .collect();
    p.rsdbt(&["run"]).expect(0);
    let after: Vec<usize> = ["ev_merge", "ev_append", "ev_delete_insert"]
        .iter()
        .map(|t| versions(&p, t))
        .collect();
    assert_eq!(before, after);
    assert_eq!(rows(&p, "ev_merge", "id, status"), merged);

    // --full-refresh rebuilds from the source as it is now (row 1 is gone).
    p.rsdbt(&["run", "--full-refresh"]).expect(0);
    assert_eq!(
        rows(&p, "ev_merge", "id, status"),
        ids_status(&[(2, "shipped"), (3, "new"), (4, "new")])
    );
    assert_eq!(
        rows(&p, "ev_append", "id, status"),
        ids_status(&[(2, "shipped"), (3, "new"), (4, "new")])
    );
}

/// dbt's `compile` asks the warehouse too: `is_incremental()` is true once the model's table
/// exists, unless its `full_refresh` config says otherwise; the compiled file, manifest.json
/// and static analysis all see that SQL.
#[test]
fn compile_gives_the_incremental_sql_once_the_table_exists() {
    let p = Project::fixture("inc_shop");
    let compiled = |p: &Project| p.read("target/compiled/inc_shop/models/ev_merge.sql");
    let in_manifest = |p: &Project| {
        let m: serde_json::Value = serde_json::from_str(&p.read("target/manifest.json")).unwrap();
        m["nodes"]["model.inc_shop.ev_merge"]["compiled_code"]
            .as_str()
            .unwrap()
            .to_string()
    };
    p.rsdbt(&["compile", "-s", "ev_merge"]).expect(0);
    assert!(
        !compiled(&p).contains("max(updated_at)"),
        "{}",
        compiled(&p)
    );
    // `show` runs the compiled query: all three rows, then none once the table holds them.
    let shown = |p: &Project| {
        let out = p
            .rsdbt(&["show", "-s", "ev_merge", "--output", "json"])
            .expect(0);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["show"].as_array().map(Vec::len)
    };
    p.rsdbt(&["seed"]).expect(0);
    assert_eq!(shown(&p), Some(3));
    p.rsdbt(&["build"]).expect(0);
    p.rsdbt(&["compile"]).expect(0);
    let sql = compiled(&p);
    assert!(
        sql.contains(
            r#"where updated_at > (select max(updated_at) from "warehouse"."main"."ev_merge")"#
        ),
        "{sql}"
    );
    assert_eq!(in_manifest(&p), sql);
    assert_eq!(shown(&p), Some(0));
    // A column the table lacks in the incremental branch only: static analysis plans that SQL.
    p.write(
        "models/ev_merge.sql",
        "{{ config(materialized='incremental', unique_key='id') }}\nselect id, status, day, updated_at from {{ ref('events') }}\n{% if is_incremental() %}\nwhere nope > 1\n{% endif %}\n",
    );
    let out = p.rsdbt(&["compile"]).expect(2);
    assert!(out.stderr.contains("No field named nope"), "{}", out.stderr);
    p.write(
        "models/ev_merge.sql",
        "{{ config(materialized='incremental', unique_key='id', full_refresh=true) }}\nselect id, status, day, updated_at from {{ ref('events') }}\n{% if is_incremental() %}\nwhere nope > 1\n{% endif %}\n",
    );
    p.rsdbt(&["compile"]).expect(0);
    assert!(!compiled(&p).contains("nope"), "{}", compiled(&p));
}

#[test]
fn a_failing_incremental_run_keeps_the_previous_version() {
    let p = Project::fixture("inc_shop");
    p.rsdbt(&["build"]).expect(0);
    p.write(
        "models/ev_merge.sql",
        "{{ config(materialized='incremental', unique_key='id') }}\nselect id, status, day, updated_at, 1 / (id - id) as boom from {{ ref('events') }}\n",
    );
    let out = p.rsdbt(&["run", "-s", "ev_merge"]).expect(1);
    assert!(
        out.stdout.contains("Database Error in model ev_merge"),
        "{}",
        out.stdout
    );
    assert_eq!(
        rows(&p, "ev_merge", "id, status"),
        ids_status(&[(1, "new"), (2, "new"), (3, "new")])
    );
}

#[test]
fn schema_changes_follow_on_schema_change() {
    let p = Project::fixture("inc_shop");
    p.rsdbt(&["build"]).expect(0);
    p.write(
        "seeds/events.csv",
        &format!(
            "{}4,new,2024-01-03,2024-01-03 09:00:00\n",
            p.read("seeds/events.csv")
        ),
    );
    p.rsdbt(&["seed"]).expect(0);
    let model = |osc: &str| {
        format!(
            "{{{{ config(materialized='incremental', unique_key='id', on_schema_change='{osc}') }}}}\nselect id, status, day, updated_at, 'web' as channel from {{{{ ref('events') }}}}\n{{% if is_incremental() %}}\nwhere updated_at > (select max(updated_at) from {{{{ this }}}})\n{{% endif %}}\n"
        )
    };
    p.write("models/ev_merge.sql", &model("fail"));
    let out = p.rsdbt(&["run", "-s", "ev_merge"]).expect(1);
    assert!(
        out.stdout
            .contains("out of sync: new columns [\"channel\"]"),
        "{}",
        out.stdout
    );
    // ignore: the new column is dropped; the new row still arrives.
    p.write("models/ev_merge.sql", &model("ignore"));
    p.rsdbt(&["run", "-s", "ev_merge"]).expect(0);
    assert_eq!(rows(&p, "ev_merge", "id").len(), 4);
    assert!(
        p.rsdbt(&[
            "show",
            "--inline",
            "select channel from {{ ref('ev_merge') }}"
        ])
        .code
            != 0
    );
    // append_new_columns: the column is added, NULL for existing rows.
    p.write(
        "seeds/events.csv",
        &format!(
            "{}5,new,2024-01-04,2024-01-04 09:00:00\n",
            p.read("seeds/events.csv")
        ),
    );
    p.rsdbt(&["seed"]).expect(0);
    p.write("models/ev_merge.sql", &model("append_new_columns"));
    p.rsdbt(&["run", "-s", "ev_merge"]).expect(0);
    assert_eq!(
        rows(&p, "ev_merge", "id, channel"),
        vec![
            json!({"id": 1, "channel": null}),
            json!({"id": 2, "channel": null}),
            json!({"id": 3, "channel": null}),
            json!({"id": 4, "channel": null}),
            json!({"id": 5, "channel": "web"})
        ]
    );
}

#[test]
fn microbatch_runs_each_batch_on_its_own() {
    let p = Project::fixture("micro_shop");
    p.rsdbt(&["seed"]).expect(0);
    let out = p
        .rsdbt(&["run", "--event-time-end", "2024-01-04"])
        .expect(0);
    assert!(
        out.stdout.contains("MICROBATCH 3 batches"),
        "{}",
        out.stdout
    );
    let days = |p: &Project| {
        p.query("select cast(event_day as varchar) as day, n from {{ ref('daily_events') }} order by event_day")
    };
    assert_eq!(
        days(&p),
        vec![
            json!({"day": "2024-01-01T00:00:00", "n": 2}),
            json!({"day": "2024-01-02T00:00:00", "n": 1}),
            json!({"day": "2024-01-03T00:00:00", "n": 1})
        ]
    );
    // Late rows for the 2nd: only that batch is reprocessed (upstream filtered by event_time).
    p.write(
        "seeds/events.csv",
        &format!(
            "{}5,2024-01-02 12:00:00\n6,2024-01-02 13:00:00\n",
            p.read("seeds/events.csv")
        ),
    );
    p.rsdbt(&["seed"]).expect(0);
    let out = p
        .rsdbt(&[
            "run",
            "--event-time-start",
            "2024-01-02",
            "--event-time-end",
            "2024-01-03",
        ])
        .expect(0);
    assert!(
        out.stdout.contains("MICROBATCH 1 batches"),
        "{}",
        out.stdout
    );
    let compiled = p.read("target/compiled/micro_shop/models/daily_events.sql");
    assert!(compiled.contains("where \"event_at\" >= cast('2024-01-02 00:00:00' as timestamp) and \"event_at\" < cast('2024-01-03 00:00:00' as timestamp)"), "{compiled}");
    assert_eq!(days(&p)[1], json!({"day": "2024-01-02T00:00:00", "n": 3}));
    // A failing batch does not undo the others: partial success, exit 1, the failed window recorded.
    p.write(
        "models/daily_events.sql",
        "{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='event_day', batch_size='day', begin='2024-01-01') }}\n\
         select cast(date_trunc('day', event_at) as timestamp) as event_day,\n\
         count(*) * 10 + max(case when cast(event_at as date) = date '2024-01-02' then 1 / (id - id) else 0 end) as n\n\
         from {{ ref('events') }}\ngroup by 1\n",
    );
    let out = p
        .rsdbt(&[
            "run",
            "--event-time-start",
            "2024-01-01",
            "--event-time-end",
            "2024-01-04",
        ])
        .expect(1);
    assert!(
        out.stdout
            .contains("1 of 3 batches of model daily_events failed"),
        "{}",
        out.stdout
    );
    let rr: serde_json::Value = serde_json::from_str(&p.read("target/run_results.json")).unwrap();
    assert_eq!(rr["results"][0]["status"], "partial success");
    assert_eq!(
        rr["results"][0]["batch_results"]["failed"],
        json!([["2024-01-02 00:00:00", "2024-01-03 00:00:00"]])
    );
    assert_eq!(
        days(&p),
        vec![
            json!({"day": "2024-01-01T00:00:00", "n": 20}),
            json!({"day": "2024-01-02T00:00:00", "n": 3}),
            json!({"day": "2024-01-03T00:00:00", "n": 10})
        ]
    );
}

/// `incremental_predicates` as dbt's docs write them (`DBT_INTERNAL_DEST.col`, upper case)
/// restrict the existing rows a merge matches: row 2 is outside them, so its new version is
/// inserted beside the old one; row 3 is updated in place.
#[test]
fn incremental_predicates_name_the_existing_rows_in_any_case() {
    let p = Project::fixture("inc_shop");
    p.write(
        "models/ev_merge.sql",
        "{{ config(materialized='incremental', unique_key='id', incremental_predicates=['DBT_INTERNAL_DEST.id > 2 and DBT_INTERNAL_SOURCE.id > 0']) }}\nselect id, status from {{ ref('events') }}\n",
    );
    p.rsdbt(&["build", "-s", "events", "ev_merge"]).expect(0);
    p.write(
        "seeds/events.csv",
        "id,status,day,updated_at\n2,shipped,2024-01-01,2024-01-03 08:00:00\n3,shipped,2024-01-02,2024-01-02 09:00:00\n",
    );
    p.rsdbt(&["build", "-s", "events", "ev_merge"]).expect(0);
    assert_eq!(
        rows(&p, "ev_merge", "id, status"),
        ids_status(&[(1, "new"), (2, "new"), (2, "shipped"), (3, "shipped")])
    );
}
