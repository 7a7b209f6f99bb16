//! Jinja with Python's semantics, wherever a value comes from (a literal, `var()`, `split()`,
//! a filter, `zip`, a macro's argument or return value, a query's result), the way dbt's
//! packages write it; Jinja in source properties; the functions projects written for DuckDB
//! or Snowflake call.

use serde_json::json;

use crate::harness::Project;

#[test]
fn lists_and_dicts_are_pythons_wherever_they_come_from() {
    let p = Project::fixture("check_shop");
    p.append("project.yml", "vars:\n  cols: [a, b]\n  max_depth: '4.0'\n");
    p.write(
        "macros/py.sql",
        "{% macro grow(xs) %}{% do xs.append('z') %}{{ return(xs) }}{% endmacro %}\n\
         {% macro kw(a) %}{{ a }}|{{ varargs | join(',') }}|{{ kwargs.get('at_least', 'none') }}{% endmacro %}\n\
         {% macro wrap() %}<{{ caller() }}>{% endmacro %}\n\
         {% macro deep() %}{% for i in [1, 2] %}{% if i == 2 %}{{ return('found ' ~ i) }}{% endif %}{% endfor %}{% endmacro %}\n",
    );
    p.write(
        "models/py.sql",
        "{%- set v = var('cols') %}{% do v.append('c') -%}\n\
         {%- set parts = 'x,y'.split(',') %}{% do parts.insert(0, 'w') -%}\n\
         {%- set grown = grow(['q']) %}{% do grown.extend(['r']) -%}\n\
         {%- set pairs = zip([1, 2], [3, 4]) | list %}{% do pairs.reverse() -%}\n\
         {%- set ordered = [3, 1, 2] | sort %}{% do ordered.append(0) -%}\n\
         {%- set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor -%}\n\
         {%- set d = {'b': 1} %}{% do d.update({'a': 2}) -%}\n\
         {%- set popped = d.pop('b') %}{% set seven = d.setdefault('c', 7) -%}\n\
         {%- set nested = {'k': []} %}{% do nested['k'].append(1) %}{% do nested.get('k').append(2) -%}\n\
         {%- set idx = ['a', 'b', 'c'].index('c') -%}\n\
         select '{{ v | join('-') }}' as from_var,\n\
           '{{ parts | join('-') }}' as from_split,\n\
           '{{ grown | join('-') }}' as from_macro,\n\
           {{ pairs[0][0] }} as from_zip,\n\
           '{{ ordered | join('') }}' as from_sort,\n\
           {{ ns.n }} as ns,\n\
           {{ var('max_depth') | int }} as depth,\n\
           {{ 'abc' | int(7) }} as bad_int,\n\
           {{ '2.5' | float }} as a_float,\n\
           '{{ kw(1, 2, 3, at_least=0.5) }}' as kw,\n\
           '{% call wrap() %}in{% endcall %}' as called,\n\
           '{{ d.keys() | list | join(',') }}:{{ popped }}:{{ seven }}' as dict_ops,\n\
           '{{ nested.k | join(',') }}' as nested,\n\
           {{ idx }} as idx,\n\
           '{{ deep() }}' as returned,\n\
           '{{ context.get('grow')(['c']) | join('') }}{{ context.get('nothing', '-') }}' as by_name,\n\
           '{{ builtins.ref('orders').identifier }}' as builtin_ref,\n\
           '{{ 1 < 2 }} {{ none }} {{ [false] }}' as printed,\n\
           {{ (set([3, 1, 3]) == set([1, 3])) | lower }} as same_sets,\n\
           '{{ 'a_b_c'.rsplit('_', 1) | join('|') }} {{ 'ab'.zfill(4) }} {{ 'a.b'.partition('.') | join('') }}' as strings\n",
    );
    p.rsdbt(&["run", "-s", "py"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('py') }}"),
        vec![json!({
            "from_var": "a-b-c", "from_split": "w-x-y", "from_macro": "q-z-r", "from_zip": 2,
            "from_sort": "1230", "ns": 6, "depth": 4, "bad_int": 7, "a_float": 2.5,
            "kw": "1|2,3|0.5", "called": "<in>", "dict_ops": "a,c:1:7", "nested": "1,2",
            "idx": 2, "returned": "found 2", "by_name": "cz-", "builtin_ref": "orders", "printed": "True None [False]", "same_sets": true, "strings": "a_b|c 00ab a.b"
        })]
    );
}

/// dbt's generic tests receive yml arguments their signature does not name through `kwargs`
/// (dbt_utils' `not_null_proportion` reads `kwargs.get('at_least')`).
#[test]
fn generic_tests_read_extra_arguments_from_kwargs() {
    let p = Project::fixture("check_shop");
    p.write(
        "macros/proportion.sql",
        "{% test filled_at_least(model, column_name) %}\n\
         {%- set at_least = kwargs.get('at_least', kwargs.get('arg', 1)) -%}\n\
         select p from (\n\
           select sum(case when {{ column_name }} is null then 0 else 1 end) * 1.0 / count(*) as p\n\
           from {{ model }}\n\
         ) t where p < {{ at_least }}\n\
         {% endtest %}\n",
    );
    p.write(
        "models/props.sql",
        "select 1 as id, 'x' as v union all select 2, null\n",
    );
    p.write(
        "models/props.yml",
        "models:\n  - name: props\n    columns:\n      - name: v\n        data_tests:\n          - filled_at_least:\n              at_least: 0.5\n          - filled_at_least:\n              name: v_full\n              at_least: 0.9\n",
    );
    let out = p.rsdbt(&["build", "-s", "props"]).expect(1);
    assert!(
        out.stdout.contains("PASS filled_at_least_props_0_5__v"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("FAIL 1 v_full"), "{}", out.stdout);
}

/// `run_query` results are agate tables: `columns[...].values()`, `rows`, `column_names`,
/// rows' `values()`/`keys()`, and `print_table()` — lists that macros then change.
#[test]
fn query_results_are_agate_tables() {
    let p = Project::fixture("check_shop");
    p.write(
        "macros/agate.sql",
        "{% macro as_dict(sql) %}\n\
         {%- set t = run_query(sql) -%}\n\
         {%- set out = {} -%}\n\
         {%- for name in t.column_names %}{% do out.update({name: t.columns[name].values()}) %}{% endfor -%}\n\
         {{ return(out) }}\n\
         {% endmacro %}\n\
         {% macro show_orders() %}\n\
         {%- set t = run_query('select order_id, amount from ' ~ ref('orders') ~ ' order by order_id') -%}\n\
         {%- do t.print_table() -%}\n\
         {%- set ids = t.columns[0].values() %}{% do ids.append(99) -%}\n\
         {%- set first = t.rows[0].values() %}{% do first.append('more') -%}\n\
         {%- for name, col in t.columns.items() %}{% do print('col ' ~ name ~ '=' ~ col.values() | join('|')) %}{% endfor -%}\n\
         {%- do print('ids=' ~ ids | join(',') ~ ' first=' ~ first | join(',') ~ ' keys=' ~ t.rows[1].keys() | join(',') ~ ' n=' ~ t.rows | length) -%}\n\
         {%- set d = as_dict('select customer_id from ' ~ ref('orders') ~ ' order by 1') -%}\n\
         {%- for vals in d.values() %}{% do vals.append(0) %}{% do print('values=' ~ vals | join(',')) %}{% endfor -%}\n\
         {% endmacro %}\n",
    );
    p.rsdbt(&["seed"]).expect(0);
    let out = p.rsdbt(&["run-operation", "show_orders"]).expect(0);
    assert!(
        out.stdout
            .contains("| order_id | amount |\n| -------- | ------ |\n|        1 |   12.5 |"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("ids=1,2,99 first=1,12.5,more keys=order_id,amount n=2"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("values=10,11,0"), "{}", out.stdout);
    assert!(out.stdout.contains("col order_id=1|2"), "{}", out.stdout);
}

/// dbt renders Jinja in source properties: a schema or identifier taken from the target or a
/// var resolves before any model reads the source.
#[test]
fn source_properties_render_jinja() {
    let p = Project::fixture("check_shop");
    p.append("project.yml", "vars:\n  orders_table: orders\n");
    p.write(
        "models/sources.yml",
        "sources:\n  - name: raw\n    schema: \"{{ target.schema }}\"\n    meta:\n      owner: \"{{ target.name }}\"\n    tables:\n      - name: orders\n        identifier: \"{{ var('orders_table') }}\"\n",
    );
    p.write(
        "models/from_source.sql",
        "select count(*) as n from {{ source('raw', 'orders') }}\n",
    );
    p.rsdbt(&["seed"]).expect(0);
    p.rsdbt(&["run", "-s", "from_source"]).expect(0);
    assert_eq!(
        p.query("select n from {{ ref('from_source') }}"),
        vec![json!({"n": 2})]
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).unwrap();
    let source = &manifest["sources"]["source.check_shop.raw.orders"];
    assert_eq!(source["schema"], "main");
    assert_eq!(source["identifier"], "orders");
    assert_eq!(source["source_meta"]["owner"], "dev");
}

/// Functions of DuckDB, Snowflake and Spark that DataFusion lacks under those names.
#[test]
fn warehouse_functions_projects_call() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/funcs.sql",
        "{{ config(materialized='table') }}\n\
         select customer_id,\n\
           datediff('day', min(ordered_at), max(ordered_at)) as span_days,\n\
           date_diff('month', date '2024-01-31', date '2024-03-01') as months,\n\
           datediff(date '2024-01-05', date '2024-01-01') as spark_days,\n\
           min_by(order_id, amount) as cheapest, max_by(order_id, amount) as dearest,\n\
           arg_max(amount, order_id) as last_amount,\n\
           any_value(customer_id) as any_customer,\n\
           listagg(cast(order_id as varchar), ',' order by order_id) as ids,\n\
           cast(coalesce(max(case when order_id > 9 then ordered_at end), '2099-01-01') as varchar) as open_until\n\
         from (select 10 as customer_id, 1 as order_id, 5.0 as amount, date '2024-01-01' as ordered_at\n\
               union all select 10, 2, 3.0, date '2024-01-09'\n\
               union all select 10, 3, null, date '2024-01-20') o\n\
         group by customer_id\n",
    );
    p.rsdbt(&["run", "-s", "funcs"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('funcs') }}"),
        vec![json!({
            "customer_id": 10, "span_days": 19, "months": 2, "spark_days": 4, "cheapest": 2,
            "dearest": 1, "last_amount": null, "any_customer": 10, "ids": "1,2,3",
            "open_until": "2099-01-01"
        })]
    );
    p.write(
        "models/more_funcs.sql",
        "{{ config(materialized='table') }}\n\
         select median(x) as med, bool_and(x > 0) as all_pos, bool_or(x > 2) as any_big,\n\
           quantile_cont(x, 0.5) as q50,\n\
           string_agg(cast(x as varchar), '-' order by x desc) as down,\n\
           min(strftime(d, '%Y/%m')) as strf, min(to_char(d, 'YYYY-MM-DD HH24:MI')) as pg_char,\n\
           min(regexp_extract('order-123-x', '[0-9]+')) as digits,\n\
           bool_and(regexp_matches('abc', 'b')) as matches,\n\
           min(regexp_replace('a.b.c', '\\.', '/', 'g')) as replaced,\n\
           min(cast(dateadd('month', 1, date '2024-01-31') as date)) as next_month,\n\
           min(date_add(d, 3)) as plus3, min(date_add(d, interval '2 hours')) as plus2h,\n\
           max(last_day(d)) as month_end, min(epoch(timestamp '1970-01-02 00:00:00')) as secs,\n\
           min(strptime('2020-01-02 03:04', '%Y-%m-%d %H:%M')) as parsed,\n\
           min(date_trunc('month', d)) as month_start, min(split_part('a-b', '-', 2)) as part,\n\
           (select count(*) from generate_series(1, 4)) as series\n\
         from (values (1, date '2024-02-15'), (2, date '2024-12-01')) t(x, d)\n",
    );
    p.rsdbt(&["run", "-s", "more_funcs"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('more_funcs') }}"),
        vec![json!({
            "med": 1.5, "all_pos": true, "any_big": false, "q50": 1.5, "down": "2-1",
            "strf": "2024/02", "pg_char": "2024-02-15 00:00", "digits": "123", "matches": true,
            "replaced": "a/b/c", "next_month": "2024-02-29", "plus3": "2024-02-18",
            "plus2h": "2024-02-15T02:00:00", "month_end": "2024-12-31", "secs": 86400.0,
            "parsed": "2020-01-02T03:04:00", "month_start": "2024-02-01T00:00:00", "part": "b",
            "series": 4
        })]
    );
    p.write(
        "models/bad_part.sql",
        "{{ config(materialized='table') }}\nselect datediff('fortnight', date '2024-01-01', date '2024-01-05') as d\n",
    );
    let out = p.rsdbt(&["run", "-s", "bad_part"]).expect(1);
    assert!(
        out.stdout.contains("unknown date part 'fortnight'"),
        "{}",
        out.stdout
    );
}

/// dbt's `graph`, read from a post-hook that inserts into the table just built (as
/// dbt-project-evaluator does), and Jinja in yml configs (a seed's `column_types`).
#[test]
fn graph_in_a_post_hook_and_jinja_in_yml_configs() {
    let p = Project::fixture("check_shop");
    p.write(
        "macros/graph.sql",
        "{% macro insert_nodes(rel) %}{% if execute %}\n\
         {%- set rows = [] -%}\n\
         {%- for n in graph.nodes.values() | sort(attribute='unique_id') -%}\n\
           {%- if n.resource_type in ['model', 'seed'] %}{% do rows.append(\"('\" ~ n.unique_id ~ \"', '\" ~ n.config.materialized ~ \"')\") %}{% endif -%}\n\
         {%- endfor -%}\n\
         {%- for s in graph.sources.values() %}{% do rows.append(\"('\" ~ s.unique_id ~ \"', '\" ~ s.loader ~ \"')\") %}{% endfor -%}\n\
         {% call statement('insert') %}insert into {{ rel }} values {{ rows | join(', ') }}{% endcall %}\n\
         {%- endif %}{% endmacro %}\n",
    );
    p.write(
        "models/nodes.sql",
        "{{ config(materialized='table', post_hook=\"{{ insert_nodes(this) }}\") }}\n\
         select cast(null as varchar) as unique_id, cast(null as varchar) as kind where false\n",
    );
    p.write(
        "models/props.yml",
        "sources:\n  - name: raw\n    loader: fivetran\n    tables:\n      - name: events\n\
         seeds:\n  - name: orders\n    config:\n      column_types:\n        amount: \"{{ 'varchar' if target.type == 'datafusion' else 'float' }}\"\n",
    );
    p.rsdbt(&["build", "-s", "orders", "nodes"]).expect(0);
    assert_eq!(
        p.query("select unique_id, kind from {{ ref('nodes') }} order by unique_id"),
        vec![
            json!({"unique_id": "model.check_shop.customer_totals", "kind": "table"}),
            json!({"unique_id": "model.check_shop.nodes", "kind": "table"}),
            json!({"unique_id": "model.check_shop.stg_orders", "kind": "view"}),
            json!({"unique_id": "seed.check_shop.customers", "kind": "seed"}),
            json!({"unique_id": "seed.check_shop.orders", "kind": "seed"}),
            json!({"unique_id": "source.check_shop.raw.events", "kind": "fivetran"}),
        ]
    );
    assert_eq!(
        p.query("select arrow_typeof(amount) as t from {{ ref('orders') }} limit 1"),
        vec![json!({"t": "Utf8View"})]
    );
}

/// `rollup` and `cube` over column tuples (DuckDB's and PostgreSQL's `rollup((a, b), c)`),
/// which DataFusion's planner lacks, run as the grouping sets they mean, in a table write and
/// under static analysis.
#[test]
fn rollup_and_cube_of_tuples() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/rolled.sql",
        "{{ config(materialized='table') }}\n\
         select customer_id, order_id, sum(amount) as total, grouping(order_id) as g\n\
         from {{ ref('orders') }} group by rollup((customer_id, order_id))\n",
    );
    p.write(
        "models/cubed.sql",
        "select customer_id, order_id, count(*) as n from {{ ref('orders') }}\n\
         group by cube((customer_id, order_id))\n",
    );
    let out = p
        .rsdbt(&["build", "-s", "orders", "rolled", "cubed"])
        .expect(0);
    assert!(!out.stdout.contains("not checked"), "{}", out.stdout);
    assert_eq!(
        p.query("select * from {{ ref('rolled') }} order by g, order_id"),
        vec![
            json!({"customer_id": 10, "order_id": 1, "total": 12.5, "g": 0}),
            json!({"customer_id": 11, "order_id": 2, "total": 7.25, "g": 0}),
            json!({"customer_id": null, "order_id": null, "total": 19.75, "g": 1}),
        ]
    );
    assert_eq!(
        p.query("select count(*) as n from {{ ref('cubed') }}"),
        vec![json!({"n": 3})]
    );
}

/// What dbt-date and dbt-audit-helper lean on: PostgreSQL's `to_char` patterns (`FMDay`,
/// `WW`), `date_part('isodow', ...)`, `modules.datetime` with keyword arguments and `date`,
/// `modules.pytz`, `relation.information_schema('columns')`, and PostgreSQL's timestamps
/// without time zone (a zone in a literal ignored; `at time zone` then a cast gives local
/// time).
#[test]
fn date_helpers_of_date_packages() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/dated.sql",
        "select to_char(date '2024-02-18', 'FMDay, DD Mon YYYY') as pg_day,\n\
           to_char(date '2024-02-18', 'Day') as padded, to_char(date '2024-02-18', 'WW') as ww,\n\
           cast(date_part('isodow', date '2024-02-18') as int) as isodow,\n\
           '{{ modules.datetime.datetime(year=1997, month=9, day=29, hour=6, minute=14, tzinfo=modules.pytz.timezone('UTC')) }}' as dt,\n\
           '{{ modules.datetime.date(1997, 9, 29) }}' as d,\n\
           (select count(*) from {{ ref('orders').information_schema('columns') }} where table_name = 'orders') as n_cols,\n\
           cast(cast('2021-06-07 07:35:20 America/Los_Angeles' as timestamp) as varchar) as zoned_literal,\n\
           cast(cast(cast('2021-06-07 14:35:20' as timestamp) at time zone 'UTC' at time zone 'America/Los_Angeles' as timestamp) as varchar) as converted\n",
    );
    p.rsdbt(&["build", "-s", "orders", "dated"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('dated') }}"),
        vec![json!({
            "pg_day": "Sunday, 18 Feb 2024", "padded": "Sunday   ", "ww": "07", "isodow": 7,
            "dt": "1997-09-29 06:14:00+00:00", "d": "1997-09-29", "n_cols": 4,
            "zoned_literal": "2021-06-07T07:35:20", "converted": "2021-06-07T07:35:20"
        })]
    );
}

/// Correlated scalar subqueries over an aggregate whose correlation is not only equalities
/// (DataFusion decorrelates equalities alone) run, in a table write: per outer row, with
/// `count(*)` 0 where no inner row matches.
#[test]
fn correlated_scalar_subqueries_with_inequalities() {
    let p = Project::fixture("check_shop");
    p.write(
        "seeds/all_orders.csv",
        "order_id,customer_id,amount\n1,10,5.0\n2,10,7.0\n3,11,2.0\n4,10,1.0\n",
    );
    p.write(
        "models/running.sql",
        "{{ config(materialized='table') }}\n\
         with o as (select * from {{ ref('all_orders') }})\n\
         select o.order_id,\n\
           (select max(o2.amount) from o o2 where o2.customer_id = o.customer_id and o2.order_id <= o.order_id) as max_so_far,\n\
           (select count(*) from o o3 where o3.order_id < o.order_id) as earlier,\n\
           (select sum(o4.amount) from o o4 where o4.order_id > o.order_id and o4.customer_id = o.customer_id) as later_total\n\
         from o\n",
    );
    let out = p.rsdbt(&["build", "-s", "all_orders", "running"]).expect(0);
    assert!(!out.stdout.contains("not checked"), "{}", out.stdout);
    assert_eq!(
        p.query("select * from {{ ref('running') }} order by order_id"),
        vec![
            json!({"order_id": 1, "max_so_far": 5.0, "earlier": 0, "later_total": 8.0}),
            json!({"order_id": 2, "max_so_far": 7.0, "earlier": 1, "later_total": 1.0}),
            json!({"order_id": 3, "max_so_far": 2.0, "earlier": 2, "later_total": null}),
            json!({"order_id": 4, "max_so_far": 7.0, "earlier": 3, "later_total": null}),
        ]
    );
}

/// An aggregate over a set operation whose branches DataFusion types with different
/// nullability (`coalesce(..., false)` beside a plain column): the shape of dbt_utils'
/// `equality` over dbt-audit-helper's results, which DataFusion's physical planner rejected.
#[test]
fn aggregates_over_set_operations_with_mixed_nullability() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/matches.sql",
        "with main as (\n\
           (select coalesce(x.customer_id = y.customer_id and x.order_id is not null, (x.customer_id is null and y.customer_id is null), false) as perfect_match, 'c' as column_name\n\
            from {{ ref('orders') }} x full outer join {{ ref('customers') }} y on x.customer_id = y.customer_id)\n\
           union all\n\
           (select coalesce(x.order_id = y.customer_id, false) as perfect_match, 'o' as column_name\n\
            from {{ ref('orders') }} x full outer join {{ ref('customers') }} y on x.customer_id = y.customer_id)\n\
         )\n\
         select column_name, perfect_match, count(*) as n from main group by 1, 2\n",
    );
    p.rsdbt(&["build", "-s", "+matches"]).expect(0);
    assert_eq!(
        p.query(
            "with a as (select * from {{ ref('matches') }}), b as (select * from {{ ref('matches') }}),\n\
             a_minus_b as (select * from a except select * from b),\n\
             b_minus_a as (select * from b except select * from a),\n\
             unioned as (select 'a' as w, a_minus_b.* from a_minus_b union all select 'b' as w, b_minus_a.* from b_minus_a)\n\
             select count(*) as failures from unioned"
        ),
        vec![json!({"failures": 0})]
    );
}

/// Python's `datetime` in templates, as dbt-expectations and real projects' date windows use
/// it: `date`/`datetime` ± `timedelta`, differences, `replace`, pytz's `localize` and
/// `astimezone`, `strptime` / `fromisoformat`, comparisons, Python's `str()` of each; `+` and
/// `-` of everything else as before.
#[test]
fn datetime_arithmetic_in_templates() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/dated.sql",
        "{% set dt = modules.datetime %}\n\
         {% set la = modules.pytz.timezone('America/Los_Angeles') %}\n\
         select '{{ dt.date(2024, 3, 1) - dt.timedelta(1) }}' as prev_day,\n\
           '{{ (dt.datetime(2024, 1, 31, 23, 30) + dt.timedelta(hours=1)).strftime('%Y-%m-%d %H:%M') }}' as plus_hour,\n\
           '{{ dt.datetime(2024, 1, 10) - dt.datetime(2024, 1, 1, 12) }}' as delta,\n\
           '{{ dt.timedelta(seconds=-1) }}' as negative,\n\
           '{{ (dt.timedelta(days=1, minutes=1) - dt.timedelta(seconds=30)).total_seconds() }}' as secs,\n\
           '{{ dt.datetime(2024, 5, 6, 7, 8, 9, 250).replace(hour=0, minute=0, second=0, microsecond=0) }}' as midnight,\n\
           '{{ la.localize(dt.datetime(2024, 7, 1, 12)) }}' as summer,\n\
           '{{ la.localize(dt.datetime(2024, 1, 1, 12)).astimezone(modules.pytz.utc).isoformat() }}' as winter_utc,\n\
           '{{ dt.datetime.strptime('03/02/2024', '%d/%m/%Y').date() }}' as parsed,\n\
           '{{ dt.datetime.fromisoformat('2024-02-03T04:05:06.5+01:00').utcoffset() }}' as utc_offset,\n\
           '{{ (dt.date(2024, 1, 2) - dt.timedelta(days=7)).strftime('%a %d %b') }}' as formatted,\n\
           '{{ dt.date(2024, 1, 7).weekday() }}{{ dt.date(2024, 1, 7).isoweekday() }}{{ dt.datetime(2024, 1, 8, 9).weekday() }}' as weekdays,\n\
           {{ dt.date(2024, 1, 2) < dt.date(2024, 1, 10) and dt.timedelta(hours=25) > dt.timedelta(days=1) }} as ordered,\n\
           {{ (run_started_at - dt.timedelta(days=1)) < run_started_at }} as run_start,\n\
           {{ 7 - 2 }} as ints, '{{ 'a' + 'b' }}' as strs, {{ 1.5 + 1 }} as floats, {{ ([1] + [2, 3]) | length }} as lists\n",
    );
    p.rsdbt(&["run", "-s", "dated"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('dated') }}"),
        vec![json!({
            "prev_day": "2024-02-29", "plus_hour": "2024-02-01 00:30",
            "delta": "8 days, 12:00:00", "negative": "-1 day, 23:59:59", "secs": "86430.0",
            "midnight": "2024-05-06 00:00:00", "summer": "2024-07-01 12:00:00-07:00",
            "winter_utc": "2024-01-01T20:00:00+00:00", "parsed": "2024-02-03",
            "utc_offset": "1:00:00", "formatted": "Tue 26 Dec", "weekdays": "670", "ordered": true,
            "run_start": true, "ints": 5, "strs": "ab", "floats": 2.5, "lists": 3
        })]
    );

    // Python's errors, at the template's line.
    p.write(
        "models/dated.sql",
        "select 1 as one,\n  '{{ modules.datetime.datetime(2024, 1, 1) - run_started_at }}' as d\n",
    );
    let out = p.rsdbt(&["run", "-s", "dated"]).expect(2);
    assert!(
        out.stderr
            .contains("can't subtract offset-naive and offset-aware datetimes")
            && out.stderr.contains("models/dated.sql:2"),
        "{}",
        out.stderr
    );
    p.write("models/dated.sql", "select\n  {{ 1 - 'a' }} as d\n");
    let out = p.rsdbt(&["run", "-s", "dated"]).expect(2);
    assert!(
        out.stderr.contains("models/dated.sql:2") && out.stderr.contains("unsupported types"),
        "{}",
        out.stderr
    );
}

/// What Fivetran's packages lean on: `var(name, none)` is a default of none (not a missing
/// var), and `{% do %}` takes any expression, as Jinja2's does (`{% do a.append(x) if c else
/// b.append(x) %}`), in models and in macro files.
#[test]
fn none_var_defaults_and_do_with_any_expression() {
    let p = Project::fixture("check_shop");
    p.write(
        "macros/collect.sql",
        "{% macro collect(flag) %}{% set acc = [] %}\
         {% do acc.append('yes') if flag else acc.append('no') %}\
         {{ return(acc) }}{% endmacro %}\n",
    );
    p.write(
        "models/vars_do.sql",
        "{% set tz = var('no_such_var', none) %}\n\
         {% set acc = [] %}\n\
         {% do acc.append(1) if tz is none else acc.append(2) %}\n\
         {%- do acc.append(3) %}\n\
         select {{ acc | length }} as n, {{ acc[0] }} as first,\n\
           {{ var('other', default=none) is none }} as by_name,\n\
           '{{ collect(true)[0] }}{{ collect(false)[0] }}' as from_macro\n",
    );
    p.rsdbt(&["run", "-s", "vars_do"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('vars_do') }}"),
        vec![json!({"n": 2, "first": 1, "by_name": true, "from_macro": "yesno"})]
    );
    // Without a default the var is still required.
    p.write(
        "models/vars_do.sql",
        "select '{{ var('no_such_var') }}' as v\n",
    );
    let out = p.rsdbt(&["run", "-s", "vars_do"]).expect(2);
    assert!(
        out.stderr.contains("Required var 'no_such_var' not found"),
        "{}",
        out.stderr
    );
}

/// Window functions that are the same once simplified (Fivetran's Stripe models count non-null
/// values of non-null columns per column) run: DataFusion 53's common subexpression
/// elimination would move them into a projection that cannot run them.
#[test]
fn window_functions_equal_after_simplification() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/windows.sql",
        "{{ config(materialized='table') }}\n\
         with t as (select id as d, 1 as a, 2 as b from (values (1), (2), (3)) v(id))\n\
         select d,\n\
           sum(case when a is null then 0 else 1 end) over (order by d rows unbounded preceding) as pa,\n\
           sum(case when b is null then 0 else 1 end) over (order by d rows unbounded preceding) as pb\n\
         from t\n",
    );
    p.rsdbt(&["run", "-s", "windows"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('windows') }} order by d"),
        vec![
            json!({"d": 1, "pa": 1, "pb": 1}),
            json!({"d": 2, "pa": 2, "pb": 2}),
            json!({"d": 3, "pa": 3, "pb": 3}),
        ]
    );
}

/// What dbt-codegen and Elementary rely on: a parameter's default read from the parameters
/// before it (`name=schema_name`, evaluated at the call as Jinja2 does), an undefined value's
/// length (0, as Jinja2's `Undefined`), query rows that iterate and print as their values,
/// agate's `rename`, `to_dict()` of dbt's objects, and `dbt_version`.
#[test]
fn what_codegen_and_elementary_rely_on() {
    let p = Project::fixture("check_shop");
    p.write(
        "macros/defaults.sql",
        "{% macro named(schema_name, name=schema_name, label=name ~ '!', fixed='x') %}\
         {{ name }} {{ label }} {{ fixed }}{% endmacro %}\n",
    );
    p.write(
        "macros/report.sql",
        "{% macro report() %}\n\
         {{ print(named('raw') ~ ' | ' ~ named('raw', 'other') ~ ' | ' ~ named('raw', none, fixed='y')) }}\n\
         {% set column = {'name': 'a'} %}{{ print('fields: ' ~ column.fields | length) }}\n\
         {% set t = run_query(\"select 1 as ID, 'x' as Label\") %}\n\
         {% set t = t.rename({'ID': 'id', 'Label': 'label'}) %}\n\
         {{ print('row: ' ~ t.rows[0] ~ ' ' ~ t.column_names ~ ' ' ~ t.rows[0]['label']) }}\n\
         {{ print('dict: ' ~ {'k': 1}.to_dict()) }}\n\
         {{ print('dbt ' ~ dbt_version.split('.')[0]) }}\n\
         {% endmacro %}\n",
    );
    let out = p.rsdbt(&["run-operation", "report"]).expect(0);
    for line in [
        "raw raw! x | other other! x | None None! y",
        "fields: 0",
        "row: [1, 'x'] ['id', 'label'] x",
        "dict: {'k': 1}",
        "dbt 1",
    ] {
        assert!(out.stdout.contains(line), "{line}: {}", out.stdout);
    }
}
