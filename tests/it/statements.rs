//! SQL that writes, sent by macros and hooks (`run_query`, `statement`, `adapter.*`), on the
//! embedded engine: dbt-codegen's and Elementary's setup macros, audit tables kept by hooks.

use crate::harness::Project;

fn project() -> Project {
    let p = Project::fixture("ok_shop");
    p.write(
        "macros/ops.sql",
        r#"{% macro ddl_dml() %}
{% do run_query("create table if not exists main.audit (id int, label varchar)") %}
{% do run_query("insert into main.audit values (1, 'one')") %}
{% do run_query("insert into main.audit (label) values ('two'), ('three')") %}
{# already there: nothing happens #}
{% do run_query("create table if not exists main.audit (id int)") %}
{% do run_query("update main.audit set id = 2 where label = 'two'") %}
{% do run_query("delete from main.audit where label = 'three'") %}
{% do run_query("begin; create table main.copy as select id * 10 as id from main.audit; commit;") %}
{% do run_query("alter table main.copy rename to copied") %}
{% do run_query("create or replace view main.v as select max(id) as biggest from main.copied") %}
{% do run_query("create schema if not exists scratch") %}
{% do run_query("create table scratch.gone as select 1 as x") %}
{% do run_query("drop schema scratch cascade") %}
{% do run_query("drop table if exists main.never_was") %}
{% endmacro %}

{% macro temporary() %}
{% do run_query("create temporary table tmp as select 1 as id, 'a' as label") %}
{% do run_query("insert into tmp (label) values ('b')") %}
{% do run_query("update tmp set id = 2 where label = 'b'") %}
{% do run_query("create table main.from_tmp as select * from tmp") %}
{% do run_query("drop table tmp") %}
{{ print('tmp left: ' ~ (load_relation(api.Relation.create(schema='main', identifier='tmp')) is none)) }}
{% endmacro %}

{% macro helpers() %}
{% set rel = api.Relation.create(database=target.database, schema=target.schema ~ '_side', identifier='t') %}
{% do adapter.create_schema(rel) %}
{{ print('exists: ' ~ adapter.check_schema_exists(target.database, rel.schema)) }}
{% do run_query("create table " ~ rel ~ " as select 1 as x union all select 2") %}
{% set response, table = adapter.execute("select sum(x) as total from " ~ rel, fetch=True) %}
{{ print('total: ' ~ table.rows[0]['total'] ~ ' rows: ' ~ response.rows_affected) }}
{% do adapter.truncate_relation(rel) %}
{{ print('after truncate: ' ~ run_query("select count(*) as n from " ~ rel).rows[0][0]) }}
{% set renamed = api.Relation.create(database=target.database, schema=rel.schema, identifier='t2') %}
{% do adapter.rename_relation(rel, renamed) %}
{{ print('renamed: ' ~ (adapter.get_relation(target.database, rel.schema, 't2') is not none)) }}
{% do adapter.drop_relation(renamed) %}
{{ print('dropped: ' ~ (adapter.get_relation(target.database, rel.schema, 't2') is none)) }}
{% do run_query("begin; create table " ~ rel.schema ~ ".batch as select 1 as x; commit;") %}
{{ print('batch: ' ~ run_query("select count(*) from " ~ rel.schema ~ ".batch").rows[0][0]) }}
{% do adapter.drop_schema(rel) %}
{{ print('schema gone: ' ~ (not adapter.check_schema_exists(target.database, rel.schema))) }}
{% endmacro %}

{% macro committed() %}
{% do adapter.create_schema(api.Relation.create(database=target.database, schema=target.schema)) %}
{% do run_query("begin") %}
{% do run_query("create table " ~ target.schema ~ ".committed as select 1 as x") %}
{% do adapter.commit() %}
{% endmacro %}

{% macro exists_already() %}
{% do run_query("create table main.audit as select 1 as id") %}
{% endmacro %}

{% macro drop_missing() %}
{% do run_query("drop table main.nowhere") %}
{% endmacro %}
"#,
    );
    p
}

#[test]
fn macros_create_change_and_drop_tables() {
    let p = project();
    p.rsdbt(&["run-operation", "ddl_dml"]).expect(0);
    let rows = p.query("select id, label from main.audit order by id");
    assert_eq!(
        rows,
        vec![
            serde_json::json!({"id": 1, "label": "one"}),
            serde_json::json!({"id": 2, "label": "two"})
        ]
    );
    assert_eq!(
        p.query("select biggest from main.v"),
        vec![serde_json::json!({"biggest": 20})]
    );
    // Renamed: the old name is gone; the dropped schema's folder too.
    assert!(!p.path().join("warehouse/main/copy").exists());
    assert!(!p.path().join("warehouse/scratch").exists());

    // Errors name the relation and what to write instead; the table is unchanged.
    let out = p.rsdbt(&["run-operation", "exists_already"]).expect(1);
    assert!(
        out.stderr.contains("\"main\".\"audit\" already exists")
            && out.stderr.contains("create or replace table"),
        "{}",
        out.stderr
    );
    let out = p.rsdbt(&["run-operation", "drop_missing"]).expect(1);
    assert!(
        out.stderr.contains("\"main\".\"nowhere\" does not exist"),
        "{}",
        out.stderr
    );
    assert_eq!(p.query("select count(*) as n from main.audit")[0]["n"], 2);
}

#[test]
fn temporary_tables_live_for_the_command() {
    let p = project();
    let out = p.rsdbt(&["run-operation", "temporary"]).expect(0);
    assert!(out.stdout.contains("tmp left: True"), "{}", out.stdout);
    assert_eq!(
        p.query("select id, label from main.from_tmp order by id"),
        vec![
            serde_json::json!({"id": 1, "label": "a"}),
            serde_json::json!({"id": 2, "label": "b"})
        ]
    );
    // Nothing of it was written to the warehouse.
    assert!(!p.path().join("warehouse/main/tmp").exists());
}

#[test]
fn adapter_ddl_helpers() {
    helpers_work(&project());
}

/// The same macro on PostgreSQL, where the SQL runs as written.
#[test]
fn adapter_ddl_helpers_on_postgres() {
    let Some(p) = Project::fixture_pg("ok_shop") else {
        return;
    };
    p.write("macros/ops.sql", &project().read("macros/ops.sql"));
    helpers_work(&p);
    // A transaction a macro opens on its session is ended by `adapter.commit()`: the table is
    // there for the next command (an open one is rolled back when the session closes).
    p.rsdbt(&["run-operation", "committed"]).expect(0);
    assert_eq!(
        p.query("select x from {{ target.schema }}.committed"),
        vec![serde_json::json!({"x": 1})]
    );
}

fn helpers_work(p: &Project) {
    let out = p.rsdbt(&["run-operation", "helpers"]).expect(0);
    for line in [
        "exists: True",
        "total: 3 rows: 1",
        "after truncate: 0",
        "renamed: True",
        "dropped: True",
        "schema gone: True",
        "batch: 1",
    ] {
        assert!(out.stdout.contains(line), "{line}: {}", out.stdout);
    }
}

/// The audit-table pattern: a start hook creates the table, each model's post-hook appends.
#[test]
fn hooks_keep_an_audit_table() {
    let p = Project::fixture("ok_shop");
    p.append(
        "dbt_project.yml",
        "on-run-start: \"create table if not exists main.audit_log (model varchar, at timestamp)\"\n",
    );
    p.write(
        "models/audited.sql",
        "{{ config(post_hook=\"insert into main.audit_log select '{{ this.name }}', now()\") }}\nselect 1 as x",
    );
    p.rsdbt(&["run", "-s", "audited"]).expect(0);
    p.rsdbt(&["run", "-s", "audited"]).expect(0);
    assert_eq!(
        p.query("select model, count(*) as n from main.audit_log group by model"),
        vec![serde_json::json!({"model": "audited", "n": 2})]
    );
}

/// A table's columns take NULLs later even when the query that made it had none (a literal):
/// the next incremental run appends one.
#[test]
fn columns_from_literals_take_nulls_later() {
    let p = Project::fixture("ok_shop");
    p.write(
        "models/grows.sql",
        "{{ config(materialized='incremental') }}\n\
         {% if is_incremental() %}select 2 as id, cast(null as varchar) as label\n\
         {% else %}select 1 as id, 'first' as label{% endif %}\n",
    );
    p.rsdbt(&["run", "-s", "grows"]).expect(0);
    p.rsdbt(&["run", "-s", "grows"]).expect(0);
    assert_eq!(
        p.query("select id, label from main.grows order by id"),
        vec![
            serde_json::json!({"id": 1, "label": "first"}),
            serde_json::json!({"id": 2, "label": null})
        ]
    );
}

/// Views' plans are kept between reads within a run (a chain of views is planned once, not
/// once per reader), yet a read after a write to a table beneath them sees the write.
#[test]
fn kept_view_plans_see_writes_beneath_them() {
    let p = Project::fixture("ok_shop");
    p.write(
        "models/chain_0.sql",
        "{{ config(materialized='table') }}\nselect 1 as id",
    );
    for i in 1..=30 {
        p.write(
            &format!("models/chain_{i}.sql"),
            &format!(
                "{{{{ config(materialized='view') }}}}\nselect id from {{{{ ref('chain_{}') }}}}",
                i - 1
            ),
        );
    }
    // Each model reads the chain's top; `before` then appends to the table beneath it, `middle`
    // redefines a view in the middle.
    let reader = |name: &str, after: &str, hook: &str| {
        let hook = match hook {
            "" => String::new(),
            hook => format!(", post_hook=\"{hook}\""),
        };
        p.write(
            &format!("models/{name}.sql"),
            &format!(
                "{{{{ config(materialized='table'{hook}) }}}}\n{after}\n\
                 select count(*) as n, sum(id) as s from {{{{ ref('chain_30') }}}}"
            ),
        )
    };
    reader("before", "", "insert into {{ ref('chain_0') }} values (2)");
    reader(
        "middle",
        "-- depends_on: {{ ref('before') }}",
        "create or replace view {{ ref('chain_15') }} as select id * 10 as id from {{ ref('chain_14') }}",
    );
    reader("after", "-- depends_on: {{ ref('middle') }}", "");
    p.rsdbt(&["run", "-s", "chain_0+"]).expect(0);
    let read = |name: &str| p.query(&format!("select n, s from main.{name}"));
    assert_eq!(read("before"), vec![serde_json::json!({"n": 1, "s": 1})]);
    assert_eq!(read("middle"), vec![serde_json::json!({"n": 2, "s": 3})]);
    assert_eq!(read("after"), vec![serde_json::json!({"n": 2, "s": 30})]);
}
