//! The PostgreSQL target, against the throwaway server scripts/test.sh starts.

use serde_json::json;

use crate::harness::{Project, pg};

fn statuses(p: &Project) -> Vec<(String, String, Option<u64>)> {
    let rr: serde_json::Value = serde_json::from_str(&p.read("target/run_results.json")).unwrap();
    let mut v: Vec<_> = rr["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"]
                    .as_str()
                    .unwrap()
                    .split('.')
                    .nth(2)
                    .unwrap()
                    .to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["failures"].as_u64(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn builds_and_tests_like_the_embedded_engine() {
    let Some(p) = Project::fixture_pg("tests_shop") else {
        return;
    };
    let out = p.rsdbt(&["seed"]).expect(0);
    assert!(out.stdout.contains("[INSERT 5 in"), "{}", out.stdout);
    p.rsdbt(&["run"]).expect(0);
    assert_eq!(
        p.query("select id, name, revenue from {{ ref('customer_revenue') }} order by id"),
        vec![
            json!({"id": 1, "name": "ada", "revenue": 100}),
            json!({"id": 2, "name": "grace", "revenue": 50}),
            json!({"id": 3, "name": "alan", "revenue": null}),
            json!({"id": 4, "name": null, "revenue": 20})
        ]
    );
    p.rsdbt(&["test"]).expect(1);
    let s = statuses(&p);
    let find = |n: &str| {
        s.iter()
            .find(|r| r.0 == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n}: {s:?}"))
    };
    assert_eq!(find("unique_stg_customers_id").1, "fail");
    assert_eq!(find("unique_stg_customers_id").2, Some(1));
    assert_eq!(find("accepted_values_stg_orders_status__paid").1, "warn");
    assert_eq!(find("not_null_stg_orders_amount").1, "pass");
    // Stored failures land in the audit schema, as rows.
    let profile = p.read("profiles.yml");
    let schema = profile
        .lines()
        .find_map(|l| l.trim().strip_prefix("schema: "))
        .unwrap()
        .to_string();
    let rows = p.query(&format!(
        "select id, tier from \"{schema}_dbt_test__audit\".\"not_null_stg_customers_name\""
    ));
    assert_eq!(rows, vec![json!({"id": 4, "tier": "platinum"})]);
}

#[test]
fn a_failing_model_keeps_the_previous_relation() {
    let Some(p) = Project::fixture_pg("err_sql_runtime") else {
        return;
    };
    p.rsdbt(&["run"]).expect(0);
    p.write(
        "models/totals.sql",
        "{{ config(materialized='table') }}\nselect 1 as id, 1 / 0 as amount\n",
    );
    let out = p.rsdbt(&["run"]).expect(1);
    assert!(out.stdout.contains("division by zero"), "{}", out.stdout);
    assert!(out.stdout.contains("SKIP relation"), "{}", out.stdout);
    assert_eq!(
        p.query("select sum(amount) as total from {{ ref('totals') }}"),
        vec![json!({"total": 30})]
    );
    // A view replaces a table of the same name, and back.
    p.write("models/totals.sql", "select 7 as id, 70 as amount\n");
    p.rsdbt(&["run"]).expect(0);
    assert_eq!(
        p.query("select total from {{ ref('downstream') }}"),
        vec![json!({"total": 70})]
    );
}

#[test]
fn connection_problems_are_one_line() {
    let Some((host, port, user)) = pg() else {
        return;
    };
    let p = Project::fixture("err_sql_runtime");
    let profile = |port: &str, db: &str| {
        format!(
            "fixture:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n      host: {host}\n      port: {port}\n      user: {user}\n      dbname: {db}\n      schema: s\n      connect_timeout: 3\n"
        )
    };
    p.write("profiles.yml", &profile("1", "postgres"));
    let out = p.rsdbt(&["debug"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("connection refused: is the server running"),
        "{}",
        out.stderr
    );
    p.write("profiles.yml", &profile(&port, "no_such_db"));
    let out = p.rsdbt(&["run"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "database \"no_such_db\" does not exist; create the database or fix `dbname`"
        ),
        "{}",
        out.stderr
    );
    p.write("profiles.yml", &profile(&port, "postgres"));
    let out = p.rsdbt(&["debug"]).expect(0);
    assert!(
        out.stdout.contains("Connection test: [OK] PostgreSQL"),
        "{}",
        out.stdout
    );
}

fn ids_status(p: &Project, model: &str) -> Vec<(i64, String)> {
    p.query(&format!(
        "select id, status from {{{{ ref('{model}') }}}} order by id, status"
    ))
    .iter()
    .map(|r| {
        (
            r["id"].as_i64().unwrap(),
            r["status"].as_str().unwrap().to_string(),
        )
    })
    .collect()
}

#[test]
fn incremental_strategies_across_runs() {
    let Some(p) = Project::fixture_pg("inc_shop") else {
        return;
    };
    // insert_overwrite is not a PostgreSQL strategy (as in dbt-postgres): it fails, clearly.
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(out.stdout.contains("ev_by_day"), "{}", out.stdout);
    let first: Vec<(i64, String)> = (1..=3).map(|i| (i, "new".to_string())).collect();
    for m in ["ev_merge", "ev_append", "ev_delete_insert"] {
        assert_eq!(ids_status(&p, m), first, "{m}");
    }
    p.write(
        "seeds/events.csv",
        "id,status,day,updated_at\n2,shipped,2024-01-01,2024-01-03 08:00:00\n3,new,2024-01-02,2024-01-02 09:00:00\n4,new,2024-01-03,2024-01-03 09:00:00\n",
    );
    p.rsdbt(&["seed"]).expect(0);
    let out = p
        .rsdbt(&["run", "-s", "ev_merge", "ev_append", "ev_delete_insert"])
        .expect(0);
    assert!(out.stdout.contains("[MERGE 2 in"), "{}", out.stdout);
    let merged = vec![
        (1, "new".to_string()),
        (2, "shipped".to_string()),
        (3, "new".to_string()),
        (4, "new".to_string()),
    ];
    assert_eq!(ids_status(&p, "ev_merge"), merged);
    assert_eq!(ids_status(&p, "ev_delete_insert"), merged);
    assert_eq!(ids_status(&p, "ev_append").len(), 5);
    let out = p.rsdbt(&["run", "-s", "ev_by_day"]).expect(1);
    assert!(
        out.stdout
            .contains("'insert_overwrite' is not available on PostgreSQL"),
        "{}",
        out.stdout
    );
    // An idle run changes nothing; --full-refresh rebuilds from the source.
    p.rsdbt(&["run", "-s", "ev_merge"]).expect(0);
    assert_eq!(ids_status(&p, "ev_merge"), merged);
    p.rsdbt(&["run", "-s", "ev_merge", "--full-refresh"])
        .expect(0);
    assert_eq!(ids_status(&p, "ev_merge"), merged[1..].to_vec());
    // A model whose SQL fails mid-run leaves the previous rows untouched.
    p.write(
        "seeds/events.csv",
        "id,status,day,updated_at\n2,shipped,2024-01-01,2024-01-03 08:00:00\n3,new,2024-01-02,2024-01-02 09:00:00\n4,new,2024-01-03,2024-01-03 09:00:00\n5,new,2024-01-04,2024-01-04 09:00:00\n",
    );
    p.rsdbt(&["seed"]).expect(0);
    p.write(
        "models/ev_merge.sql",
        "{{ config(materialized='incremental', unique_key='id') }}\nselect id, case when id = 5 then cast(1 / (id - 5) as text) else status end as status, day, updated_at from {{ ref('events') }}\n",
    );
    let out = p.rsdbt(&["run", "-s", "ev_merge"]).expect(1);
    assert!(out.stdout.contains("division by zero"), "{}", out.stdout);
    assert_eq!(ids_status(&p, "ev_merge"), merged[1..].to_vec());
}

#[test]
fn snapshots_across_runs() {
    let Some(p) = Project::fixture_pg("snap_shop") else {
        return;
    };
    // target_schema is used as written: give this test its own.
    let schema = p
        .read("profiles.yml")
        .lines()
        .find_map(|l| l.trim().strip_prefix("schema: "))
        .unwrap()
        .to_string();
    for f in ["snapshots/customers_ts.sql", "snapshots/check.sql"] {
        p.write(
            f,
            &p.read(f).replace(
                "target_schema='snapshots'",
                &format!("target_schema='{schema}_snap'"),
            ),
        );
    }
    let run = |seed: Option<&str>| {
        if let Some(s) = seed {
            p.write("seeds/customers.csv", s);
        }
        p.rsdbt(&["seed"]).expect(0);
        p.rsdbt(&["snapshot"]).expect(0);
    };
    run(None);
    run(Some(
        "id,name,tier,updated_at\n1,ada,gold,2024-01-01 00:00:00\n2,grace,platinum,2024-02-01 00:00:00\n4,linus,bronze,2024-02-01 00:00:00\n",
    ));
    let rows = p.query(&format!(
        "select id, tier, cast(dbt_valid_from as varchar) as vf, cast(dbt_valid_to as varchar) as vt from \"{schema}_snap\".\"customers_ts\" order by id, dbt_valid_from"
    ));
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "tier": "gold", "vf": "2024-01-01 00:00:00", "vt": null}),
            json!({"id": 2, "tier": "silver", "vf": "2024-01-01 00:00:00", "vt": "2024-02-01 00:00:00"}),
            json!({"id": 2, "tier": "platinum", "vf": "2024-02-01 00:00:00", "vt": null}),
            json!({"id": 3, "tier": "bronze", "vf": "2024-01-01 00:00:00", "vt": null}),
            json!({"id": 4, "tier": "bronze", "vf": "2024-02-01 00:00:00", "vt": null}),
        ]
    );
    let deleted = p.query(&format!("select id, dbt_is_deleted as d from \"{schema}_snap\".\"customers_check_all\" where dbt_valid_to is null order by id"));
    assert_eq!(
        deleted,
        vec![
            json!({"id": 1, "d": "False"}),
            json!({"id": 2, "d": "False"}),
            json!({"id": 3, "d": "True"}),
            json!({"id": 4, "d": "False"})
        ]
    );
}

#[test]
fn project_hooks_run_in_postgres() {
    let Some(p) = Project::fixture_pg("inc_shop") else {
        return;
    };
    p.append("project.yml", r#"on-run-start: "create schema if not exists {{ target.schema }}; create table if not exists {{ target.schema }}.audit (event text)"
on-run-end: "insert into {{ target.schema }}.audit select '{{ invocation_id | length > 0 }} {{ results | length }} {{ schemas | join(',') }}'"
"#);
    p.rsdbt(&["seed"]).expect(0);
    p.rsdbt(&["run", "-s", "ev_merge"]).expect(0);
    let rows: Vec<String> = p
        .query("select event from {{ target.schema }}.audit order by event")
        .iter()
        .map(|r| r["event"].as_str().unwrap().to_string())
        .collect();
    let schema = p.query("select '{{ target.schema }}' as s")[0]["s"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        rows,
        [format!("True 1 {schema}"), format!("True 1 {schema}")]
    );
}

/// The example project builds on PostgreSQL (`-t pg`) and its gold tables hold the same rows as
/// the embedded build's.
#[test]
fn example_project_on_postgres_matches_the_embedded_build() {
    if crate::harness::pg().is_none() {
        return;
    }
    let p = Project::example();
    let profiles = p.read("profiles.yml");
    let (head, pg) = profiles.split_at(profiles.find("    pg:").expect("pg target"));
    p.write(
        "profiles.yml",
        &format!("{head}{}", pg.replace("schema: main", "schema: example_pg")),
    );
    p.rsdbt(&["build"]).expect(0);
    p.rsdbt(&["build", "-t", "pg"]).expect(0);
    for model in [
        "gld_category_by_country",
        "gld_posts_by_year",
        "gld_top_posters",
        "gld_user_cohorts",
    ] {
        let rows = |target: &str| {
            let sql = format!("select * from {{{{ ref('{model}') }}}} order by 1, 2, 3");
            let out = p
                .rsdbt(&[
                    "show", "-t", target, "--inline", &sql, "--limit", "-1", "--output", "json",
                ])
                .expect(0);
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            v["show"].as_array().unwrap().clone()
        };
        let embedded = rows("dev");
        assert!(!embedded.is_empty(), "{model}");
        assert_eq!(embedded, rows("pg"), "{model}");
    }
}

#[test]
fn grants_and_persist_docs() {
    let Some(p) = Project::fixture_pg("inc_shop") else {
        return;
    };
    p.append("project.yml", r#"on-run-start: "do $$ begin create role reporter; exception when duplicate_object then null; end $$"
models:
  inc_shop:
    +grants: {select: [reporter]}
    +persist_docs: {relation: true, columns: true}
"#);
    p.write(
        "models/docs.yml",
        "models:\n  - name: ev_merge\n    description: Latest status per event.\n    columns:\n      - name: status\n        description: Where the event is.\n      - name: not_a_column\n        description: Documented but absent.\n",
    );
    p.rsdbt(&["seed"]).expect(0);
    // First build (a table), then an incremental run: both end with the grant and comments.
    for _ in 0..2 {
        let out = p.rsdbt(&["run", "-s", "ev_merge"]).expect(0);
        assert!(!out.stdout.contains("[GRANT"), "{}", out.stdout);
        let row = &p.query(
            "select has_table_privilege('reporter', '{{ ref('ev_merge') }}', 'select') as granted, \
             obj_description('{{ ref('ev_merge') }}'::regclass) as doc, \
             col_description('{{ ref('ev_merge') }}'::regclass, 2) as status_doc",
        )[0];
        assert_eq!(row["granted"], true);
        assert_eq!(row["doc"], "Latest status per event.");
        assert_eq!(row["status_doc"], "Where the event is.");
    }
}

#[test]
fn cross_database_macros_on_postgres() {
    let Some(p) = Project::fixture_pg("xdb_shop") else {
        return;
    };
    p.rsdbt(&["run"]).expect(0);
    let rows = p.query("select * from {{ ref('cross_db') }}");
    assert_eq!(rows, [crate::projects::cross_db_row()]);
}

#[test]
fn introspection_in_jinja_on_postgres() {
    let Some(p) = Project::fixture_pg("introspect_shop") else {
        return;
    };
    p.rsdbt(&["build"]).expect(0);
    let rows = p.query("select * from {{ ref('wide') }}");
    assert_eq!(
        rows,
        [crate::projects::introspection_row(
            "postgres",
            "bigint,text"
        )]
    );
    // run-operation: the macro's statement runs in the database.
    p.rsdbt(&["run-operation", "make_audit_table"]).expect(0);
    assert_eq!(
        p.query("select x from {{ target.schema }}.audit_log"),
        [serde_json::json!({"x": 1})]
    );
}

/// dbt's classic example project, in shape: the same marts on PostgreSQL as on the embedded
/// engine.
#[test]
fn jaffle_shop_shaped_project_on_postgres() {
    let Some(p) = Project::fixture_pg("jaffle_like") else {
        return;
    };
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(out.stdout.contains("TOTAL=16"), "{}", out.stdout);
    assert_eq!(
        crate::projects::jaffle_marts(&p),
        crate::projects::jaffle_expected()
    );
}

#[test]
fn unit_tests_and_sources_on_postgres() {
    let Some(p) = Project::fixture_pg("unit_shop") else {
        return;
    };
    let out = p.rsdbt(&["test", "--select", "test_type:unit"]).expect(1);
    let o = &out.stdout;
    for passing in [
        "PASS stg_events::heartbeats_are_dropped",
        "PASS daily::daily_counts_with_overrides",
        "PASS daily::incremental_run_only_adds_new_days",
        "FAIL 2 daily::wrong_expectation",
        "+++ | 2024-01-02 | 1",
    ] {
        assert!(o.contains(passing), "{passing}: {o}");
    }
    // The source table (made by a hook here) feeds the models.
    p.append("project.yml", "on-run-start: \"create schema if not exists main; create table if not exists main.events as select * from (values (1, '2024-01-01 09:00:00', 'click'), (2, '2024-01-01 10:00:00', 'heartbeat'), (3, '2024-01-02 09:00:00', 'view')) t(id, event_at, kind)\"\n");
    p.rsdbt(&["run"]).expect(0);
    let rows =
        p.query("select cast(day as varchar) as day, events from {{ ref('daily') }} order by day");
    assert_eq!(
        rows,
        [
            serde_json::json!({"day": "2024-01-01", "events": 1}),
            serde_json::json!({"day": "2024-01-02", "events": 1}),
        ]
    );
}

/// sslmode as libpq: `require` encrypts without checking the certificate, `verify-full` checks
/// it against `sslrootcert`, `disable` does not encrypt. The test server's certificate is
/// self-signed (scripts/pg.sh).
#[test]
fn tls_connections() {
    let Some((host, port, user)) = pg() else {
        return;
    };
    let rootcert = std::env::var("RSDBT_TEST_PG_SSLROOTCERT")
        .expect("scripts/pg.sh exports RSDBT_TEST_PG_SSLROOTCERT");
    let p = Project::fixture("err_sql_runtime");
    let use_ssl = |extra: &str| {
        p.write(
            "profiles.yml",
            &format!(
                "fixture:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n      host: {host}\n      port: {port}\n      user: {user}\n      dbname: postgres\n      schema: tls\n{extra}"
            ),
        );
    };
    let ssl_in_use =
        || p.query("select ssl from pg_stat_ssl where pid = pg_backend_pid()")[0]["ssl"].clone();
    use_ssl("      sslmode: require\n");
    assert_eq!(ssl_in_use(), true);
    use_ssl(&format!(
        "      sslmode: verify-full\n      sslrootcert: {rootcert}\n"
    ));
    assert_eq!(ssl_in_use(), true);
    use_ssl("      sslmode: disable\n");
    assert_eq!(ssl_in_use(), false);
    use_ssl("      sslmode: verify-full\n");
    let out = p.rsdbt(&["debug"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("sslmode 'verify-full' needs `sslrootcert`"),
        "{}",
        out.stderr
    );
}

/// PostgreSQL tables as sources of the embedded engine: faithful types, one model joining them
/// with a Delta table and an Iceberg table, and the SQL PostgreSQL received shows the pushdown.
#[test]
fn postgres_sources_on_the_embedded_engine() {
    let Some((host, port, user)) = pg() else {
        return;
    };
    let p = Project::fixture("lake_shop");
    let app: String = format!(
        "app_{}",
        p.path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase()
    );
    crate::harness::pg_exec(&format!(
        "create extension if not exists pg_stat_statements;
         create schema {app};
         create table {app}.customers (id int primary key, name text, balance numeric(12,2),
           signed_up timestamptz, born date, tags text[], scores int[], profile jsonb, uid uuid,
           active bool, country text);
         insert into {app}.customers values
           (1, 'Ada', 10.50, '2024-01-01 10:00:00+02', '1815-12-10', '{{math,poetry}}', '{{1,2}}', '{{\"tier\": \"gold\"}}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 'UK'),
           (2, 'Grace', null, null, null, null, null, null, null, false, 'US'),
           (3, '', 0.05, '2024-03-01 00:00:00+00', '1969-12-28', '{{}}', '{{3}}', '[]', null, true, 'FI');
         create table {app}.orders (order_id bigint, customer_id int, amount float8);
         insert into {app}.orders select g, 1 + g % 3, g * 1.5 from generate_series(1, 30) g;"
    ));
    p.write(
        "profiles.yml",
        &format!(
            "fixture:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: warehouse\n      schema: main\n      connections:\n        app_db: {{type: postgres, host: {host}, port: {port}, user: {user}, dbname: postgres, sslmode: disable}}\n"
        ),
    );
    p.write(
        "models/app.yml",
        &format!(
            "version: 2\nsources:\n  - name: app\n    schema: {app}\n    external: {{connection: app_db}}\n    tables:\n      - name: customers\n      - name: orders\n"
        ),
    );
    // Silver: an Iceberg table from a CSV folder; gold joins PostgreSQL, Delta and Iceberg.
    p.write(
        "models/regions_ice.sql",
        "{{ config(materialized='table', table_format='iceberg') }}\nselect country, region from {{ source('files', 'regions') }}\n",
    );
    p.write(
        "models/gold_by_region.sql",
        "{{ config(materialized='table', publish={'connection': 'app_db', 'schema': var('marts'), 'table': 'by_region'}) }}\nselect r.region, count(distinct c.id) as customers, sum(o.amount) as amount, sum(c.balance) as balance, max(c.signed_up) as last_signup, min(c.born) as born, bool_or(c.active) as active\nfrom {{ source('app', 'customers') }} c\njoin {{ source('app', 'orders') }} o on o.customer_id = c.id\njoin {{ ref('regions_ice') }} r on r.country = c.country\njoin {{ ref('customer_orders') }} co on co.name = c.name\ngroup by r.region\n",
    );
    p.write(
        "models/active_customers.sql",
        "select id, name, balance, signed_up, born, tags, scores, profile, uid from {{ source('app', 'customers') }} where active = true and id >= 1\n",
    );
    crate::harness::pg_exec("select pg_stat_statements_reset()");
    p.write(
        "project.yml",
        &format!("name: lake_shop\nprofile: fixture\nvars:\n  marts: {app}_marts\n"),
    );
    p.rsdbt(&["build"]).expect(0);
    // The gold table, published to PostgreSQL with types that hold its values exactly.
    let published = |p: &Project| {
        let _ = p;
        crate::harness::pg_exec(&format!(
            "select region, customers, amount, balance, last_signup at time zone 'UTC', born, active from {app}_marts.by_region order by region"
        ))
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        published(&p),
        vec![
            vec![s("AMER"), s("1"), s("217.5"), None, None, None, s("f")],
            vec![
                s("EMEA"),
                s("1"),
                s("247.5"),
                s("105.00"),
                s("2024-01-01 08:00:00"),
                s("1815-12-10"),
                s("t")
            ],
        ]
    );
    assert_eq!(
        crate::harness::pg_exec(&format!(
            "select string_agg(column_name || ' ' || data_type, ', ' order by ordinal_position) from information_schema.columns where table_schema = '{app}_marts' and table_name = 'by_region'"
        )),
        vec![vec![s(
            "region text, customers bigint, amount double precision, balance numeric, last_signup timestamp with time zone, born date, active boolean"
        )]]
    );
    // customer_orders is a Delta table of the CSV customers (Ada and Grace match by name).
    assert_eq!(
        p.query(
            "select region, customers, amount from {{ ref('gold_by_region') }} order by region"
        ),
        vec![
            json!({"region": "AMER", "customers": 1, "amount": 217.5}),
            json!({"region": "EMEA", "customers": 1, "amount": 247.5}),
        ]
    );
    assert_eq!(
        p.query("select id, name, cast(balance as varchar) as balance, cast(signed_up as varchar) as signed_up, cast(born as varchar) as born, tags, scores, profile, uid from {{ ref('active_customers') }} order by id"),
        vec![
            json!({"id": 1, "name": "Ada", "balance": "10.50", "signed_up": "2024-01-01T08:00:00Z", "born": "1815-12-10", "tags": ["math", "poetry"], "scores": [1, 2], "profile": "{\"tier\": \"gold\"}", "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}),
            json!({"id": 3, "name": "", "balance": "0.05", "signed_up": "2024-03-01T00:00:00Z", "born": "1969-12-28", "tags": [], "scores": [3], "profile": "[]", "uid": null}),
        ]
    );
    // Only the columns used, and the filters, reached PostgreSQL; a LIMIT too.
    p.rsdbt(&[
        "show",
        "--inline",
        "select amount from {{ source('app', 'orders') }}",
        "--limit",
        "3",
    ])
    .expect(0);
    let seen = crate::harness::pg_exec(&format!(
        "select query from pg_stat_statements where query ilike 'copy (select %{app}%' order by query"
    ));
    let seen: Vec<String> = seen.into_iter().filter_map(|r| r[0].clone()).collect();
    let text = seen.join("\n");
    assert!(
        seen.iter().any(
            |q| q.contains(&format!("from \"{app}\".\"customers\" where"))
                && q.contains("\"active\"")
                && q.contains("\"id\" >=")
                && !q.contains("\"country\"")
        ),
        "a filtered scan without the unused column: {text}"
    );
    assert!(
        seen.iter().any(|q| q.starts_with(&format!(
            "copy (select \"amount\" from \"{app}\".\"orders\" limit"
        ))),
        "{text}"
    );
    // The gold table's build read only the two columns of orders it needs.
    assert!(
        seen.iter().any(|q| q.starts_with(&format!(
            "copy (select \"customer_id\", \"amount\" from \"{app}\".\"orders\")"
        ))),
        "{text}"
    );
    // A publish that PostgreSQL rejects halfway (a NUL byte in text) leaves its table as it was.
    let before = published(&p);
    p.write(
        "models/gold_by_region.sql",
        "{{ config(materialized='table', publish={'connection': 'app_db', 'schema': var('marts'), 'table': 'by_region'}) }}\nselect case when g = 3 then 'x' || chr(0) else 'ok' end as region from generate_series(1, 5) t(g)\n",
    );
    let out = p.rsdbt(&["run", "-s", "gold_by_region"]).expect(1);
    assert!(
        out.stdout.contains(&format!("publishing to {app}_marts.by_region on connection 'app_db' failed (the table there is unchanged)")),
        "{}",
        out.stdout
    );
    assert_eq!(published(&p), before);
}

/// The example project's `lake` target: a PostgreSQL source (the app database loaded from
/// scripts/app_db.sql), an Iceberg silver table appended to each run, and a gold mart joining
/// PostgreSQL, Iceberg and Delta, published back to PostgreSQL. The mart is checked against the
/// same numbers computed by PostgreSQL itself from the app tables, across two runs.
#[test]
fn example_lake_target() {
    if pg().is_none() {
        return;
    }
    let sql =
        std::fs::read_to_string(crate::harness::repo_root().join("scripts/app_db.sql")).unwrap();
    crate::harness::pg_exec(&sql);
    let p = Project::example();
    let expected = || {
        crate::harness::pg_exec(
            "select lower(trim(reason)), count(*)::text,
                    sum((select count(*) from app.reports x where x.pin_id = r.pin_id and not x.resolved))::text
             from app.reports r group by 1 order by 1",
        )
    };
    let published = || {
        crate::harness::pg_exec(
            "select reason, sum(reports)::text, sum(open_reports_on_those_pins)::text
             from marts.reported_categories group by 1 order by 1",
        )
    };
    let out = p.rsdbt(&["build", "-t", "lake"]).expect(0);
    assert!(out.stdout.contains("slv_reports"), "{}", out.stdout);
    assert_eq!(published(), expected());
    assert_eq!(
        expected()[0],
        vec![
            Some("misinformation".to_string()),
            Some("400".to_string()),
            expected()[0][2].clone()
        ]
    );
    assert!(
        std::fs::read_dir(p.path().join("warehouse/main_lake"))
            .unwrap()
            .any(|e| e.unwrap().file_name() == "slv_reports.iceberg")
    );
    // New reports arrive in the app database; the next run appends them and republishes.
    crate::harness::pg_exec(
        "insert into app.reports select g, 1 + (g * 37) % 6000, 'Spam', timestamptz '2024-06-01 00:00:00+00' + g * interval '1 minute', false from generate_series(2001, 2100) g",
    );
    let out = p.rsdbt(&["run", "-t", "lake", "-s", "tag:lake"]).expect(0);
    assert!(out.stdout.contains("[INSERT 100 in"), "{}", out.stdout);
    assert_eq!(published(), expected());
    // The default target knows nothing of the lake models and needs no server.
    let out = p.rsdbt(&["ls", "-s", "tag:lake"]).expect(0);
    assert!(!out.stdout.contains("slv_reports"), "{}", out.stdout);

    // The same project with its warehouse on S3 (the emulator): every table, view, snapshot
    // and the Iceberg silver table are written there; only the Iceberg catalog is local.
    let Some((endpoint, python)) = crate::harness::s3() else {
        return;
    };
    let bucket = format!("rsdbt-wh-{}", std::process::id());
    let keys = |create: &str| crate::harness::s3_keys(&python, &endpoint, &bucket, create == "1");
    assert!(keys("1").is_empty());
    crate::harness::pg_exec(&sql);
    std::fs::remove_dir_all(p.path().join("warehouse")).unwrap();
    let profiles = p.read("profiles.yml");
    let local = "    lake:\n      type: datafusion\n      path: \"{{ env_var('RSDBT_WAREHOUSE', 'warehouse') }}\"\n";
    assert!(profiles.contains(local));
    p.write(
        "profiles.yml",
        &profiles.replace(
            local,
            &format!(
                "    lake:\n      type: datafusion\n      path: s3://{bucket}/wh\n      iceberg_catalog: catalog/iceberg.db\n      s3: {{endpoint: \"{endpoint}\", allow_http: true, region: us-east-1, access_key_id: test, secret_access_key: test}}\n"
            ),
        ),
    );
    let out = p.rsdbt(&["build", "-t", "lake"]).expect(0);
    assert!(out.stdout.contains("PASS="), "{}", out.stdout);
    assert_eq!(published(), expected());
    assert!(!p.path().join("warehouse").exists());
    assert!(p.path().join("catalog/iceberg.db").is_file());
    let written = keys("0");
    for expected_key in [
        "wh/main_silver/slv_pins/_delta_log/00000000000000000000.json",
        "wh/main_bronze/brz_pins.view.sql",
        "wh/snapshots/users_snapshot/_delta_log/00000000000000000000.json",
        "wh/main_lake/gld_reported_categories/_delta_log/00000000000000000000.json",
    ] {
        assert!(
            written.iter().any(|k| k == expected_key),
            "{expected_key} in {written:?}"
        );
    }
    assert!(
        written
            .iter()
            .any(|k| k.starts_with("wh/main_lake/slv_reports.iceberg/")
                && k.ends_with(".metadata.json")),
        "{written:?}"
    );
    // The next run appends the new reports to the Iceberg table on S3 and republishes.
    crate::harness::pg_exec(
        "insert into app.reports select g, 1 + (g * 37) % 6000, 'Spam', timestamptz '2024-06-01 00:00:00+00' + g * interval '1 minute', false from generate_series(2001, 2100) g",
    );
    let out = p.rsdbt(&["run", "-t", "lake", "-s", "tag:lake"]).expect(0);
    assert!(out.stdout.contains("[INSERT 100 in"), "{}", out.stdout);
    assert_eq!(published(), expected());
    // Another reader: pyiceberg, through the same catalog, reads the table from S3.
    let pyiceberg = std::env::var("RSDBT_TEST_PYICEBERG")
        .expect("scripts/test.sh installs pyiceberg (RSDBT_TEST_PYICEBERG)");
    let read = r#"
import sys
from pyiceberg.catalog.sql import SqlCatalog
db, endpoint = sys.argv[1:3]
cat = SqlCatalog("rsdbt", **{"uri": f"sqlite:///{db}", "s3.endpoint": endpoint,
    "s3.access-key-id": "test", "s3.secret-access-key": "test", "s3.region": "us-east-1"})
t = cat.load_table("main_lake.slv_reports").scan().to_arrow()
print(t.num_rows, t.column("reason").to_pylist().count("spam"), t.schema.names)
"#;
    let db = p.path().join("catalog/iceberg.db");
    let out = crate::harness::run_python(&pyiceberg, read, &[db.as_ref(), endpoint.as_ref()]);
    let spam = crate::harness::pg_exec(
        "select count(*) from app.reports where lower(trim(reason)) = 'spam'",
    );
    assert_eq!(
        out.trim(),
        format!(
            "2100 {} ['report_id', 'pin_id', 'reason', 'reported_at', 'resolved']",
            spam[0][0].as_deref().unwrap()
        )
    );
}

/// A view rebuilt while its parents stay (they are not rebuilt with it, so nothing drops it
/// first), and a model switching between view and table: PostgreSQL's `drop table if exists`
/// fails on a view, so the swap drops whatever kind is there.
#[test]
fn views_rebuild_in_place_and_switch_kind() {
    let Some(p) = Project::fixture_pg("ok_shop") else {
        return;
    };
    p.rsdbt(&["build"]).expect(0);
    p.rsdbt(&["run", "-s", "stg_orders"]).expect(0);
    p.rsdbt(&["run", "-s", "stg_orders"]).expect(0);
    let sql = p.read("models/staging/stg_orders.sql");
    p.write(
        "models/staging/stg_orders.sql",
        &format!("{{{{ config(materialized='table') }}}}\n{sql}"),
    );
    p.rsdbt(&["run", "-s", "stg_orders"]).expect(0);
    p.write("models/staging/stg_orders.sql", &sql);
    p.rsdbt(&["run", "-s", "stg_orders"]).expect(0);
    p.rsdbt(&["run", "-s", "stg_orders"]).expect(0);
    assert_eq!(
        p.query("select count(*) as n from {{ ref('stg_orders') }}")[0]["n"],
        4
    );
}
