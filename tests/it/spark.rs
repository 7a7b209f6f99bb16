//! The Spark Connect target, against the Sail server scripts/test.sh starts in its
//! local-cluster mode (a driver and two workers). Rows are compared with the embedded target's
//! for the same models.

use serde_json::Value;

use crate::harness::{Project, apache_spark, spark};

/// The environment that points the `spark` target at the test server, its tables under the
/// project's `spark-wh` folder.
fn env(p: &Project, host: &str) -> Vec<(String, String)> {
    vec![
        ("RSDBT_SPARK_HOST".into(), host.to_string()),
        (
            "RSDBT_SPARK_LOCATION".into(),
            p.path().join("spark-wh").display().to_string(),
        ),
    ]
}

fn on_spark(p: &Project, host: &str, args: &[&str]) -> crate::harness::Output {
    let env = env(p, host);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut all = args.to_vec();
    all.extend(["--target", "spark"]);
    p.rsdbt_env(&all, &env)
}

/// Rows of a query, numbers as floats (an integer column may be `int` on one engine and
/// `bigint` on the other; both print as numbers).
fn rows(p: &Project, host: Option<&str>, sql: &str) -> Vec<Vec<Value>> {
    let args = ["show", "--inline", sql, "--limit", "-1", "--output", "json"];
    let out = match host {
        Some(h) => on_spark(p, h, &args),
        None => p.rsdbt(&args),
    }
    .expect(0);
    let v: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    v["show"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_object()
                .unwrap()
                .values()
                .map(|v| match v.as_f64() {
                    Some(f) => serde_json::json!(f),
                    None => v.clone(),
                })
                .collect()
        })
        .collect()
}

const PROFILE: &str = r#"spark_fixture:
  target: dev
  outputs:
    dev:
      type: datafusion
      path: warehouse
      schema: main
      threads: 2
    spark:
      type: spark
      method: connect
      host: "{{ env_var('RSDBT_SPARK_HOST', 'sc://127.0.0.1:15002') }}"
      location_root: "{{ env_var('RSDBT_SPARK_LOCATION', '') }}"
      schema: main
      threads: 2
"#;

/// A small project with append and merge incrementals, a timestamp snapshot, tests and a unit
/// test, buildable on both targets.
fn fixture() -> Project {
    let p = Project::fixture("tests_shop");
    for f in ["models", "seeds", "data-tests"] {
        std::fs::remove_dir_all(p.path().join(f)).unwrap();
    }
    p.write("profiles.yml", PROFILE);
    p.write(
        "project.yml",
        "name: spark_fixture\nprofile: spark_fixture\nversion: '1.0'\n",
    );
    p.write(
        "seeds/events.csv",
        "id,amount,updated_at\n1,10,2024-01-01 00:00:00\n2,20,2024-01-01 00:00:00\n",
    );
    p.write(
        "models/inc_append.sql",
        "{{ config(materialized='incremental', incremental_strategy='append') }}\nselect id, amount, updated_at from {{ ref('events') }}\n{% if is_incremental() %}where updated_at > (select max(updated_at) from {{ this }}){% endif %}\n",
    );
    p.write(
        "models/inc_merge.sql",
        "{{ config(materialized='incremental', unique_key='id', incremental_strategy='merge') }}\nselect id, amount * 2 as doubled, updated_at from {{ ref('events') }}\n{% if is_incremental() %}where updated_at > (select max(updated_at) from {{ this }}){% endif %}\n",
    );
    p.write(
        "models/inc_overwrite.sql",
        "{{ config(materialized='incremental', incremental_strategy='insert_overwrite', partition_by=['day']) }}\nselect id, amount, cast(updated_at as date) as day from {{ ref('events') }}\n{% if is_incremental() %}where updated_at > cast('2024-01-01 12:00:00' as timestamp){% endif %}\n",
    );
    p.write(
        "models/inc_delete_insert.sql",
        "{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='id') }}\nselect id, amount, updated_at from {{ ref('events') }}\n{% if is_incremental() %}where updated_at > (select max(updated_at) from {{ this }}){% endif %}\n",
    );
    p.write(
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: inc_merge\n    columns:\n      - name: id\n        data_tests: [unique, not_null]\nunit_tests:\n  - name: doubles\n    model: inc_merge\n    given:\n      - input: ref('events')\n        rows:\n          - {id: 7, amount: 4, updated_at: '2024-01-01 00:00:00'}\n    expect:\n      rows:\n        - {id: 7, doubled: 8}\n",
    );
    p.write(
        "snapshots/events_snap.sql",
        "{% snapshot events_snap %}\n{{ config(target_schema='snaps', unique_key='id', strategy='timestamp', updated_at='updated_at') }}\nselect * from {{ ref('events') }}\n{% endsnapshot %}\n",
    );
    p
}

/// The second batch: id 2 changed, id 3 new.
fn second_batch(p: &Project) {
    p.write(
        "seeds/events.csv",
        "id,amount,updated_at\n1,10,2024-01-01 00:00:00\n2,25,2024-01-02 00:00:00\n3,30,2024-01-02 00:00:00\n",
    );
}

#[test]
fn incrementals_snapshot_seeds_and_tests_over_two_runs_match_the_embedded_target() {
    let Some(host) = spark() else { return };
    let p = fixture();
    for target in [Some(host.as_str()), None] {
        let build = |p: &Project| match target {
            Some(h) => on_spark(p, h, &["build"]),
            None => p.rsdbt(&["build"]),
        };
        p.write(
            "seeds/events.csv",
            "id,amount,updated_at\n1,10,2024-01-01 00:00:00\n2,20,2024-01-01 00:00:00\n",
        );
        let out = build(&p);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("[INSERT 2 in"), "{}", out.stdout);
        second_batch(&p);
        let out = build(&p);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("PASS=9"), "{}", out.stdout);
    }
    let same = |sql: &str, expected: usize| {
        let spark_rows = rows(&p, Some(&host), sql);
        assert_eq!(spark_rows.len(), expected, "{sql}: {spark_rows:?}");
        assert_eq!(spark_rows, rows(&p, None, sql), "{sql}");
    };
    // Appended: the two first rows, then the two newer ones (id 2's old version stays).
    same(
        "select id, amount from {{ ref('inc_append') }} order by id, amount",
        4,
    );
    // Merged: id 2 updated in place, id 3 inserted.
    same(
        "select id, doubled from {{ ref('inc_merge') }} order by id",
        3,
    );
    assert_eq!(
        rows(
            &p,
            Some(&host),
            "select doubled from {{ ref('inc_merge') }} where id = 2"
        ),
        vec![vec![serde_json::json!(50.0)]]
    );
    // Overwritten: the 2024-01-02 partition added, 2024-01-01's kept as it was.
    same(
        "select id, amount, cast(day as {{ dbt.type_string() }}) as day from {{ ref('inc_overwrite') }} order by id, amount",
        4,
    );
    // Deleted and inserted by key: id 2 replaced.
    same(
        "select id, amount from {{ ref('inc_delete_insert') }} order by id",
        3,
    );
    // The snapshot: id 2 has a closed and a current version.
    same(
        "select id, amount, dbt_valid_to is null as current from {{ ref('events_snap') }} order by id, amount",
        4,
    );
}

#[test]
fn a_failing_model_keeps_its_table_and_a_bad_host_exits_2() {
    let Some(host) = spark() else { return };
    let p = fixture();
    p.write(
        "models/kept.sql",
        "{{ config(materialized='table') }}\nselect 1 as id\n",
    );
    on_spark(&p, &host, &["run", "-s", "kept"]).expect(0);
    p.write(
        "models/kept.sql",
        "{{ config(materialized='table') }}\nselect no_such_column as id\n",
    );
    // Past static analysis (which would stop it before it runs), the cluster fails it.
    let out = on_spark(
        &p,
        &host,
        &["run", "-s", "kept", "--static-analysis", "off"],
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("no_such_column"), "{}", out.stdout);
    assert_eq!(
        rows(&p, Some(&host), "select id from main.kept"),
        vec![vec![serde_json::json!(1.0)]]
    );
    let out = on_spark(&p, "sc://127.0.0.1:1", &["run", "-s", "kept"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    let text = out.stdout + &out.stderr;
    assert!(
        text.contains("the Spark Connect server at sc://127.0.0.1:1 did not answer"),
        "{text}"
    );
    let out = on_spark(&p, &host, &["debug"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("Connection test: [OK] Spark Connect at"),
        "{}",
        out.stdout
    );
}

#[test]
fn example_builds_on_sail_with_the_embedded_targets_gold_rows() {
    let Some(host) = spark() else { return };
    let p = Project::example();
    let out = on_spark(
        &p,
        &host,
        &["build", "--exclude", "tag:stream", "path:models/lake"],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("PASS=28"), "{}", out.stdout);
    p.rsdbt(&[
        "build",
        "--exclude",
        "path:models/stream",
        "path:models/lake",
    ])
    .expect(0);
    for (table, order) in [
        ("gld_category_by_country", "country"),
        ("gld_posts_by_year", "post_year, category"),
        ("gld_top_posters", "max_follower_count desc, user_name"),
        ("gld_user_cohorts", "join_year, age_group"),
    ] {
        let sql = format!("select * from {{{{ ref('{table}') }}}} order by {order}");
        let embedded = rows(&p, None, &sql);
        assert!(!embedded.is_empty(), "{table} is empty");
        assert_eq!(rows(&p, Some(&host), &sql), embedded, "{table}");
    }
    // A second run: the incremental model merges, the snapshot compares, in a new session
    // whose catalog finds the tables again under location_root.
    let out = on_spark(
        &p,
        &host,
        &["build", "--exclude", "tag:stream", "path:models/lake"],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let rr: Value = serde_json::from_str(&p.read("target/rsdbt/run_results.json")).unwrap();
    let message = |id: &str| {
        rr["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["unique_id"] == id)
            .map(|r| r["message"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("{id} did not run"))
    };
    assert!(
        message("model.pinboard.slv_pins").starts_with("MERGE"),
        "{}",
        message("model.pinboard.slv_pins")
    );
    let snap = "select count(*) as n, count(distinct dbt_scd_id) as ids, sum(case when dbt_valid_to is null then 1 else 0 end) as current from {{ ref('users_snapshot') }}";
    let r = rows(&p, Some(&host), snap);
    assert_eq!(r[0][0], r[0][1], "one id per version: {r:?}");
    assert_eq!(
        r[0][0], r[0][2],
        "nothing changed, so every version is current: {r:?}"
    );
}

/// Apache Spark 4 itself (pyspark's jars on Java 17): managed Parquet tables in a Hive catalog
/// (the target's default format without Delta's jars), a view, append and insert_overwrite
/// incrementals over two runs, seeds, data and unit tests, with the embedded target's rows; a
/// merge that Parquet cannot take is refused before anything runs.
#[test]
fn apache_spark_builds_parquet_tables_with_the_embedded_targets_rows() {
    let Some(host) = apache_spark() else { return };
    let p = fixture();
    for f in [
        "models/inc_merge.sql",
        "models/inc_delete_insert.sql",
        "snapshots/events_snap.sql",
    ] {
        std::fs::remove_file(p.path().join(f)).unwrap();
    }
    p.write(
        "models/tbl.sql",
        "{{ config(materialized='table', clustered_by=['id'], buckets=2, tblproperties={'rsdbt.origin': 'smoke'}) }}\nselect id, amount from {{ ref('events') }}\n",
    );
    p.write(
        "models/vw.sql",
        "select id, amount * 2 as doubled from {{ ref('tbl') }}\n",
    );
    p.write(
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: tbl\n    description: Amounts by id\n    config:\n      persist_docs: {relation: true, columns: true}\n    columns:\n      - name: id\n        description: The event's id\n        data_tests: [unique, not_null]\n  - name: vw\n    columns:\n      - name: id\n        data_tests:\n          - relationships: {to: ref('tbl'), field: id}\nunit_tests:\n  - name: doubles\n    model: vw\n    given:\n      - input: ref('tbl')\n        rows:\n          - {id: 7, amount: 4}\n    expect:\n      rows:\n        - {id: 7, doubled: 8}\n",
    );
    // Managed tables: no location_root.
    let apache = |p: &Project, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--target", "spark"]);
        p.rsdbt_env(
            &all,
            &[
                ("RSDBT_SPARK_HOST", host.as_str()),
                ("RSDBT_SPARK_LOCATION", ""),
            ],
        )
    };
    for target in [true, false] {
        let build = |p: &Project, args: &[&str]| {
            let mut all = vec!["build"];
            all.extend(args);
            if target {
                apache(p, &all)
            } else {
                p.rsdbt(&all)
            }
        };
        p.write(
            "seeds/events.csv",
            "id,amount,updated_at\n1,10,2024-01-01 00:00:00\n2,20,2024-01-01 00:00:00\n",
        );
        // The server's catalog outlives the test: tables of an earlier run start afresh.
        let out = build(&p, &["--full-refresh"]);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        second_batch(&p);
        let out = build(&p, &[]);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("PASS=9"), "{}", out.stdout);
    }
    let query = |p: &Project, spark: bool, sql: &str| {
        let args = ["show", "--inline", sql, "--limit", "-1", "--output", "json"];
        let out = if spark {
            apache(p, &args)
        } else {
            p.rsdbt(&args)
        }
        .expect(0);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        v["show"].to_string()
    };
    for (sql, rows) in [
        ("select id, amount from {{ ref('tbl') }} order by id", 3),
        ("select id, doubled from {{ ref('vw') }} order by id", 3),
        (
            "select id, amount from {{ ref('inc_append') }} order by id, amount",
            4,
        ),
        (
            "select id, amount, cast(day as {{ dbt.type_string() }}) as day from {{ ref('inc_overwrite') }} order by id, amount",
            4,
        ),
    ] {
        let spark_rows = query(&p, true, sql);
        assert_eq!(
            spark_rows.matches("\"id\"").count(),
            rows,
            "{sql}: {spark_rows}"
        );
        assert_eq!(spark_rows, query(&p, false, sql), "{sql}");
    }
    // The server's own catalog says what was built, and how; the docs catalog is its DESCRIBE
    // (the descriptions persisted as comments).
    let format = query(&p, true, "describe table extended main.tbl");
    assert!(
        format.contains("parquet")
            && format.contains("\"col_name\":\"Num Buckets\",\"comment\":\"\",\"data_type\":\"2\"")
            && format.contains("rsdbt.origin=smoke"),
        "{format}"
    );
    apache(&p, &["docs", "generate"]).expect(0);
    let catalog: Value = serde_json::from_str(&p.read("target/catalog.json")).unwrap();
    let tbl = &catalog["nodes"]["model.spark_fixture.tbl"];
    assert_eq!(tbl["metadata"]["comment"], "Amounts by id", "{tbl}");
    assert_eq!(tbl["columns"]["id"]["comment"], "The event's id", "{tbl}");
    assert_eq!(tbl["columns"]["amount"]["type"], "bigint", "{tbl}");
    // The catalog's Statistics: the size Spark recorded, no row count it did not.
    assert!(
        tbl["stats"]["bytes"]["value"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{tbl}"
    );
    assert!(tbl["stats"]["row_count"].is_null(), "{tbl}");
    assert_eq!(
        catalog["nodes"]["model.spark_fixture.vw"]["metadata"]["type"],
        "VIEW"
    );
    // A new column on the append model: added to the table (`alter table … add columns`), the
    // old rows' value NULL, on both targets.
    p.write(
        "models/inc_append.sql",
        "{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='append_new_columns') }}\nselect id, amount, amount * 2 as doubled, updated_at from {{ ref('events') }}\nwhere id = 3\n",
    );
    apache(&p, &["run", "-s", "inc_append"]).expect(0);
    p.rsdbt(&["run", "-s", "inc_append"]).expect(0);
    let sql = "select id, amount, doubled from {{ ref('inc_append') }} order by id, amount";
    let spark_rows = query(&p, true, sql);
    assert!(spark_rows.contains("\"doubled\":60"), "{spark_rows}");
    assert_eq!(spark_rows, query(&p, false, sql));
    // Parquet cannot merge: refused before anything runs, naming the model's file.
    p.write(
        "models/inc_merge.sql",
        "{{ config(materialized='incremental', unique_key='id', incremental_strategy='merge') }}\nselect id, amount from {{ ref('events') }}\n",
    );
    p.write(
        "seeds/events.csv",
        "id,amount,updated_at\n9,90,2024-01-03 00:00:00\n",
    );
    let out = apache(&p, &["build"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    let text = out.stdout + &out.stderr;
    assert!(
        text.contains("model 'inc_merge': incremental_strategy 'merge' changes rows in place, which file_format 'parquet' cannot on Spark")
            && text.contains("models/inc_merge.sql"),
        "{text}"
    );
    assert!(
        query(&p, true, "select id from {{ ref('events') }}").contains("\"id\":2"),
        "the seed was not reloaded"
    );
}

/// A shared warehouse folder: the embedded target's warehouse is the Spark target's
/// location_root, so a Delta table written on one side is a table on the other (Sail finds it
/// in the folder; the embedded target opens the Delta log).
#[test]
fn delta_tables_written_by_sail_and_by_the_embedded_target_read_each_other() {
    let Some(host) = spark() else { return };
    let p = fixture();
    for f in ["models", "snapshots"] {
        std::fs::remove_dir_all(p.path().join(f)).unwrap();
    }
    // The Spark target's location_root (see `env`) is the embedded target's warehouse.
    let shared = p.path().join("spark-wh");
    p.write(
        "profiles.yml",
        &PROFILE.replace("path: warehouse", &format!("path: {}", shared.display())),
    );
    p.write(
        "models/sources.yml",
        "version: 2\nsources:\n  - name: lake\n    schema: main\n    tables:\n      - name: from_spark\n      - name: from_local\n",
    );
    p.write(
        "models/from_spark.sql",
        "{{ config(materialized='table', tags=['spark']) }}\nselect id, amount * 3 as tripled from {{ ref('events') }}\n",
    );
    p.write(
        "models/from_local.sql",
        "{{ config(materialized='table', tags=['local']) }}\nselect id, amount + 1 as plus_one from {{ ref('events') }}\n",
    );
    p.write(
        "models/read_spark.sql",
        "{{ config(materialized='table', tags=['local']) }}\nselect id, tripled from {{ source('lake', 'from_spark') }}\n",
    );
    p.write(
        "models/read_local.sql",
        "{{ config(materialized='table', tags=['spark']) }}\nselect id, plus_one from {{ source('lake', 'from_local') }}\n",
    );
    on_spark(&p, &host, &["seed"]).expect(0);
    on_spark(&p, &host, &["run", "-s", "from_spark"]).expect(0);
    assert!(shared.join("main/from_spark/_delta_log").is_dir());
    // The embedded target reads the seed and the model Sail wrote.
    p.rsdbt(&["run", "-s", "from_local", "read_spark"])
        .expect(0);
    on_spark(&p, &host, &["run", "-s", "read_local"]).expect(0);
    // Each side reads what the other wrote.
    assert_eq!(
        rows(
            &p,
            None,
            "select id, tripled from {{ ref('read_spark') }} order by id"
        ),
        vec![
            vec![serde_json::json!(1.0), serde_json::json!(30.0)],
            vec![serde_json::json!(2.0), serde_json::json!(60.0)]
        ]
    );
    assert_eq!(
        rows(
            &p,
            Some(&host),
            "select id, plus_one from {{ ref('read_local') }} order by id"
        ),
        vec![
            vec![serde_json::json!(1.0), serde_json::json!(11.0)],
            vec![serde_json::json!(2.0), serde_json::json!(21.0)]
        ]
    );
}

/// Static analysis on Spark: the SQL is parsed as Spark's and planned against the tables the
/// server's catalog lists; an unknown column stops the run before anything is built, and SQL
/// the planner cannot judge (a Spark-only function) is a notice.
#[test]
fn static_analysis_on_spark_reports_an_unknown_column_before_anything_runs() {
    let Some(host) = spark() else { return };
    let p = fixture();
    on_spark(&p, &host, &["seed"]).expect(0);
    p.write(
        "models/typo.sql",
        "{{ config(materialized='table') }}\nselect id,\n  amout\nfrom {{ ref('events') }}\n",
    );
    let out = on_spark(&p, &host, &["run"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("amout") && out.stderr.contains("models/typo.sql:3"),
        "{}",
        out.stderr
    );
    assert!(
        !p.path().join("spark-wh/main/inc_append").exists(),
        "a model ran"
    );
    p.write(
        "models/typo.sql",
        "{{ config(materialized='table') }}\nselect id, xxhash64(id) as h from {{ ref('events') }}\n",
    );
    let out = on_spark(&p, &host, &["run", "-s", "typo"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("Static analysis: typo: not checked"),
        "{}",
        out.stdout
    );
}

/// Microbatch on Sail: each month's batch replaced (`insert into … replace where`) with the
/// rows of its window, the same rows as the embedded target's, over a first run and a rerun of
/// one batch.
#[test]
fn microbatch_replaces_its_batches_on_sail_as_on_the_embedded_target() {
    let Some(host) = spark() else { return };
    let p = fixture();
    for f in ["models", "snapshots"] {
        std::fs::remove_dir_all(p.path().join(f)).unwrap();
    }
    p.write(
        "seeds/props.yml",
        "version: 2\nseeds:\n  - name: events\n    config:\n      event_time: updated_at\n",
    );
    p.write(
        "models/by_month.sql",
        "{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='updated_at', batch_size='month', begin='2024-01-01') }}\nselect id, amount, updated_at from {{ ref('events') }}\n",
    );
    let sql = "select id, amount from {{ ref('by_month') }} order by id, amount";
    for spark_target in [true, false] {
        let run = |args: &[&str]| {
            if spark_target {
                on_spark(&p, &host, args)
            } else {
                p.rsdbt(args)
            }
        };
        p.write(
            "seeds/events.csv",
            "id,amount,updated_at\n1,10,2024-01-01 00:00:00\n2,20,2024-02-03 00:00:00\n",
        );
        run(&["build"]).expect(0);
        second_batch(&p);
        let out = run(&[
            "build",
            "--event-time-start",
            "2024-01-01",
            "--event-time-end",
            "2024-02-01",
        ])
        .expect(0);
        assert!(out.stdout.contains("MICROBATCH 1 batch"), "{}", out.stdout);
    }
    // January replaced (id 2 moved into it, id 3 added); February's id 2 stays as it was.
    let spark_rows = rows(&p, Some(&host), sql);
    assert_eq!(spark_rows.len(), 4, "{spark_rows:?}");
    assert_eq!(spark_rows, rows(&p, None, sql));
}

/// Hooks, `run_query` and the introspection macros are answered by the cluster, with the same
/// result as on the embedded target.
#[test]
fn hooks_and_introspection_are_answered_by_the_cluster() {
    let Some(host) = spark() else { return };
    let p = fixture();
    for f in ["models", "snapshots"] {
        std::fs::remove_dir_all(p.path().join(f)).unwrap();
    }
    p.write(
        "models/introspect.sql",
        r#"{{ config(materialized='table', post_hook="insert into {{ this }} values (0, 'hook', 0, false)") }}
{% set cols = adapter.get_columns_in_relation(ref('events')) %}
{% set top = run_query("select max(amount) as m from " ~ ref('events')) %}
{% set found = adapter.get_relation(database=this.database, schema=this.schema, identifier='events') %}
select {{ cols | length }} as n, '{{ cols | map(attribute="name") | join(",") }}' as names,
  {{ top.columns[0].values()[0] if execute else 0 }} as top_amount,
  {{ 'true' if found is not none else 'false' }} as found
"#,
    );
    let sql = "select * from {{ ref('introspect') }} order by n";
    on_spark(&p, &host, &["build"]).expect(0);
    p.rsdbt(&["build"]).expect(0);
    let spark_rows = rows(&p, Some(&host), sql);
    assert_eq!(
        spark_rows,
        vec![
            // Columns in name order: found, n, names, top_amount.
            vec![
                serde_json::json!(false),
                serde_json::json!(0.0),
                serde_json::json!("hook"),
                serde_json::json!(0.0)
            ],
            vec![
                serde_json::json!(true),
                serde_json::json!(3.0),
                serde_json::json!("id,amount,updated_at"),
                serde_json::json!(20.0)
            ],
        ]
    );
    assert_eq!(spark_rows, rows(&p, None, sql));
}

/// A merge on a two-column key that updates only `merge_update_columns` under an
/// `incremental_predicates` condition, and a `check` snapshot that invalidates deleted rows:
/// two runs on Sail, the embedded target's rows.
#[test]
fn key_lists_update_columns_and_check_snapshots_match_the_embedded_target() {
    let Some(host) = spark() else { return };
    let p = fixture();
    for f in ["models", "snapshots"] {
        std::fs::remove_dir_all(p.path().join(f)).unwrap();
    }
    p.write(
        "models/merged.sql",
        "{{ config(materialized='incremental', incremental_strategy='merge', unique_key=['id', 'part'], merge_update_columns=['amount'], incremental_predicates=['DBT_INTERNAL_DEST.part >= 0']) }}\nselect id, id % 2 as part, amount, extract(day from updated_at) as seen from {{ ref('events') }}\n",
    );
    p.write(
        "snapshots/checked.sql",
        "{% snapshot checked %}\n{{ config(target_schema='snaps', unique_key='id', strategy='check', check_cols=['amount'], hard_deletes='invalidate') }}\nselect id, amount from {{ ref('events') }}\n{% endsnapshot %}\n",
    );
    for spark_target in [true, false] {
        let build = || {
            if spark_target {
                on_spark(&p, &host, &["build"])
            } else {
                p.rsdbt(&["build"])
            }
        };
        p.write(
            "seeds/events.csv",
            "id,amount,updated_at\n1,10,2024-01-01 00:00:00\n2,20,2024-01-01 00:00:00\n",
        );
        build().expect(0);
        // id 1 gone, id 2 changed, id 3 new.
        p.write(
            "seeds/events.csv",
            "id,amount,updated_at\n2,25,2024-01-02 00:00:00\n3,30,2024-01-02 00:00:00\n",
        );
        build().expect(0);
    }
    // id 2's amount updated but not `seen` (not in merge_update_columns).
    let merged = "select id, part, amount, seen from {{ ref('merged') }} order by id";
    let spark_rows = rows(&p, Some(&host), merged);
    assert_eq!(spark_rows.len(), 3, "{spark_rows:?}");
    assert_eq!(spark_rows, rows(&p, None, merged));
    // Columns in name order: amount, id, part, seen (the day of the first version).
    assert_eq!(
        spark_rows[1],
        vec![
            serde_json::json!(25.0),
            serde_json::json!(2.0),
            serde_json::json!(0.0),
            serde_json::json!(1.0)
        ]
    );
    // id 1 invalidated, id 2 closed and reopened, id 3 new.
    let snap = "select id, amount, dbt_valid_to is null as current from {{ ref('checked') }} order by id, amount";
    let spark_rows = rows(&p, Some(&host), snap);
    assert_eq!(spark_rows.len(), 4, "{spark_rows:?}");
    assert_eq!(spark_rows, rows(&p, None, snap));
    // Columns in name order: amount, current, id.
    assert_eq!(
        spark_rows[0][1],
        serde_json::json!(false),
        "id 1 was deleted: {spark_rows:?}"
    );
}
