//! Static analysis before a run: wrong column names, missing tables and type errors in the
//! selected models are diagnostics on the model's file before any table is written; a correct
//! project reports none, even on an empty warehouse (upstream schemas are planned).

use crate::harness::Project;

fn tables(p: &Project) -> usize {
    std::fs::read_dir(p.path().join("warehouse/main"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_correct_project_reports_nothing_and_builds() {
    let p = Project::fixture("check_shop");
    // Nothing is built yet: the models are planned against the seeds' columns.
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(!out.stdout.contains("Static analysis"), "{}", out.stdout);
    assert!(!out.stderr.contains("static-analysis"), "{}", out.stderr);
}

#[test]
fn mistakes_are_reported_before_anything_runs() {
    let cases = [
        // A renamed column used under its old name, with the right one suggested.
        (
            "select c.name, sum(o.amount) as total from {{ ref('stg_orders') }} o join {{ ref('customers') }} c on c.customer_id = o.customer_id group by c.name",
            "No field named o.amount",
            Some("did you mean `order_amount`?"),
        ),
        // A table that does not exist.
        (
            "select * from main.customer_list",
            "table 'warehouse.main.customer_list' not found",
            None,
        ),
        // A type error: arithmetic on text.
        (
            "select name, name * 2 as doubled from {{ ref('customers') }}",
            "Cannot coerce arithmetic expression",
            None,
        ),
        // An aggregate over text.
        (
            "select sum(name) as total from {{ ref('customers') }}",
            "model 'customer_totals':",
            None,
        ),
    ];
    for (sql, message, hint) in cases {
        let p = Project::fixture("check_shop");
        p.write(
            "models/customer_totals.sql",
            &format!("{{{{ config(materialized='table') }}}}\n{sql}\n"),
        );
        let out = p.rsdbt(&["build"]).expect(2);
        assert!(
            out.stderr.contains("error[static-analysis]"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(message), "{message}: {}", out.stderr);
        assert!(
            out.stderr.contains("models/customer_totals.sql"),
            "{}",
            out.stderr
        );
        if let Some(h) = hint {
            assert!(out.stderr.contains(h), "{}", out.stderr);
        }
        assert_eq!(tables(&p), 0, "nothing was written: {}", out.stdout);
        // Off: the run starts, and the model fails at run time instead.
        let out = p.rsdbt(&["build", "--static-analysis", "off"]).expect(1);
        assert!(
            out.stdout
                .contains("ERROR creating sql table model main.customer_totals"),
            "{}",
            out.stdout
        );
    }
}

#[test]
fn sql_the_planner_cannot_judge_is_a_notice_or_strict_error() {
    let p = Project::fixture("check_shop");
    // A PostgreSQL-only function: DataFusion cannot plan it; `on` only says so.
    p.write(
        "models/pg_only.sql",
        "select to_tsvector('english', name) as doc from {{ ref('customers') }}\n",
    );
    let out = p
        .rsdbt(&[
            "build",
            "-s",
            "customers",
            "pg_only",
            "--static-analysis",
            "on",
        ])
        .expect(1);
    assert!(
        out.stdout.contains("Static analysis: pg_only: not checked"),
        "{}",
        out.stdout
    );
    let out = p
        .rsdbt(&["build", "-s", "pg_only", "--static-analysis", "strict"])
        .expect(2);
    assert!(
        out.stderr.contains("--static-analysis strict"),
        "{}",
        out.stderr
    );
}

#[test]
fn compile_checks_too() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/customer_totals.sql",
        "select c.nme from {{ ref('customers') }} c\n",
    );
    let out = p.rsdbt(&["compile"]).expect(2);
    assert!(
        out.stderr.contains("No field named c.nme") && out.stderr.contains("did you mean `name`?"),
        "{}",
        out.stderr
    );
    // The compiled SQL is still written, and `off` compiles without planning.
    assert!(
        p.read("target/compiled/check_shop/models/customer_totals.sql")
            .contains("c.nme")
    );
    p.rsdbt(&["compile", "--static-analysis", "off"]).expect(0);
}

/// Column lineage from the analysis plans, through a rename, a join with an aggregate, and a
/// `select *` with a CASE, checked against the expected origins.
#[test]
fn column_lineage_is_written() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/tiers.sql",
        "select *, case when total > 10 then 'big' else 'small' end as tier, upper(name) as shout from {{ ref('customer_totals') }}\n",
    );
    p.rsdbt(&["build"]).expect(0);
    let l: serde_json::Value = serde_json::from_str(&p.read("target/lineage.json")).unwrap();
    let from = |model: &str, col: &str| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            l["models"][format!("model.check_shop.{model}")]["columns"][col]
                .as_array()
                .unwrap_or_else(|| panic!("{model}.{col}: {l}"))
                .iter()
                .map(|o| {
                    (
                        o["node"].as_str().unwrap_or("?").to_string(),
                        o["column"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
        v.sort();
        v
    };
    let o = |node: &str, col: &str| (node.to_string(), col.to_string());
    // A rename.
    assert_eq!(
        from("stg_orders", "order_amount"),
        vec![o("seed.check_shop.orders", "amount")]
    );
    // A join and an aggregate.
    assert_eq!(
        from("customer_totals", "total"),
        vec![o("model.check_shop.stg_orders", "order_amount")]
    );
    assert_eq!(
        from("customer_totals", "name"),
        vec![o("seed.check_shop.customers", "name")]
    );
    // select * and CASE.
    assert_eq!(
        from("tiers", "name"),
        vec![o("model.check_shop.customer_totals", "name")]
    );
    assert_eq!(
        from("tiers", "tier"),
        vec![o("model.check_shop.customer_totals", "total")]
    );
    assert_eq!(
        from("tiers", "shout"),
        vec![o("model.check_shop.customer_totals", "name")]
    );
}

/// On the PostgreSQL target the models are planned as PostgreSQL SQL against its catalog:
/// a wrong column stops the run before anything is created; a function DataFusion does not
/// know is a notice, and the model runs.
#[test]
fn postgres_models_are_checked_against_its_catalog() {
    let Some(p) = Project::fixture_pg("check_shop") else {
        return;
    };
    p.rsdbt(&["seed"]).expect(0);
    let schema = p
        .read("profiles.yml")
        .split("schema: ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    p.write(
        "models/customer_totals.sql",
        "{{ config(materialized='table') }}\nselect c.name, sum(o.amount) as total from {{ ref('stg_orders') }} o join {{ ref('customers') }} c on c.customer_id = o.customer_id group by c.name\n",
    );
    let out = p.rsdbt(&["run"]).expect(2);
    assert!(
        out.stderr.contains("No field named o.amount")
            && out.stderr.contains("did you mean `order_amount`?")
            && out.stderr.contains("models/customer_totals.sql"),
        "{}",
        out.stderr
    );
    let exists = |name: &str| {
        crate::harness::pg_exec(&format!("select to_regclass('{schema}.{name}')::text"))[0][0]
            .is_some()
    };
    assert!(
        !exists("stg_orders") && !exists("customer_totals"),
        "nothing ran"
    );

    // PostgreSQL's own function: not judged, and the model builds.
    p.write(
        "models/customer_totals.sql",
        "{{ config(materialized='table') }}\nselect c.name, pg_typeof(c.name)::text as t, o.order_amount from {{ ref('stg_orders') }} o join {{ ref('customers') }} c on c.customer_id = o.customer_id\n",
    );
    let out = p.rsdbt(&["run"]).expect(0);
    assert!(
        out.stdout
            .contains("Static analysis: customer_totals: not checked"),
        "{}",
        out.stdout
    );
    assert!(exists("customer_totals"));

    // Time travel needs Delta or Iceberg: refused before anything runs.
    p.write(
        "models/customer_totals.sql",
        "select * from {{ ref('stg_orders').at_version(1) }}\n",
    );
    let out = p.rsdbt(&["run"]).expect(2);
    assert!(
        out.stderr.contains("reads a pinned version (time travel)"),
        "{}",
        out.stderr
    );
}

/// A construct the planner lacks says nothing about the model: a notice, never exit 2 before
/// anything runs; the model then fails on its own.
#[test]
fn a_planner_limitation_is_a_notice() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/numbered.sql",
        "select * from unnest([10, 20]) with ordinality\n",
    );
    let out = p.rsdbt(&["build", "-s", "customers", "numbered"]).expect(1);
    assert!(
        out.stdout.contains("Static analysis: numbered: not checked (This feature is not implemented: UNNEST with ordinality"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("PASS=1"), "{}", out.stdout);
}

/// A model that reads an unjudged model through an ephemeral one is not judged either (its
/// input's columns are unknown), rather than reported as reading a missing table.
#[test]
fn an_unjudged_input_behind_an_ephemeral_model_is_a_notice() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/numbered.sql",
        "{{ config(materialized='table') }}\nselect * from unnest([10, 20]) with ordinality\n",
    );
    p.write(
        "models/numbered_eph.sql",
        "{{ config(materialized='ephemeral') }}\nselect * from {{ ref('numbered') }}\n",
    );
    p.write(
        "models/numbered_top.sql",
        "select * from {{ ref('numbered_eph') }}\n",
    );
    let out = p.rsdbt(&["compile", "-s", "numbered_top"]).expect(0);
    assert!(
        out.stdout.contains(
            "Static analysis: numbered_top: not checked, as its input model.check_shop.numbered_eph could not be"
        ),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// Sixty models on one DAG level are planned on both cores: each level-two model reads a
/// column its level-one input only has in the planned schema (nothing is built), the wrong
/// ones are reported in DAG order, and a child of a wrong one is a notice.
#[test]
fn a_wide_level_is_planned_in_parallel_and_reported_in_order() {
    let p = Project::fixture("check_shop");
    let wrong = [7, 31, 52];
    for i in 0..60 {
        let column = if wrong.contains(&i) {
            "amont"
        } else {
            "order_amount"
        };
        p.write(
            &format!("models/wide/w_{i:02}.sql"),
            &format!("select customer_id, {column} * {i} as amount_{i} from {{{{ ref('stg_orders') }}}}\n"),
        );
        p.write(
            &format!("models/wide/top_{i:02}.sql"),
            &format!("select sum(amount_{i}) as total from {{{{ ref('w_{i:02}') }}}}\n"),
        );
    }
    let out = p.rsdbt(&["compile"]).expect(2);
    let at: Vec<usize> = wrong
        .iter()
        .map(|i| {
            out.stderr
                .find(&format!("model 'w_{i:02}'"))
                .unwrap_or_else(|| panic!("w_{i:02}: {}", out.stderr))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("error[static-analysis]").count(),
        3,
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("top_31: not checked, as its input model.check_shop.w_31 could not be"),
        "{}",
        out.stdout
    );
    let lineage: serde_json::Value = serde_json::from_str(&p.read("target/lineage.json")).unwrap();
    for i in (0..60).filter(|i| !wrong.contains(i)) {
        assert_eq!(
            lineage["models"][format!("model.check_shop.top_{i:02}")]["columns"]["total"][0]["column"],
            format!("amount_{i}"),
            "top_{i:02}"
        );
    }
}

/// A model whose SQL is made from a query of its input (a pivot over the input's distinct
/// values, as Fivetran's Zendesk does) is not judged from what the warehouse holds before the
/// run rebuilds that input: its children's check would fail on columns the run will make.
#[test]
fn models_built_from_queries_of_rebuilt_inputs_are_not_judged_early() {
    let p = Project::fixture("check_shop");
    p.write("models/keys.sql", "select 'y' as k");
    p.write(
        "models/pivot.sql",
        "{% set src = ref('keys') %}{% set ks = run_query('select distinct k from ' ~ src).columns[0].values() if execute else [] %}\n\
         select {% for k in ks %}1 as c_{{ k }}{{ ',' if not loop.last }}{% endfor %}{% if not ks %}0 as nothing{% endif %}",
    );
    p.write(
        "models/reads_pivot.sql",
        "select c_y from {{ ref('pivot') }}",
    );
    p.rsdbt(&["run", "-s", "keys", "pivot", "reads_pivot"])
        .expect(0);
    // The input will hold 'x' after this run, and the child reads the column that makes.
    p.write("models/keys.sql", "select 'x' as k");
    p.write(
        "models/reads_pivot.sql",
        "select c_x from {{ ref('pivot') }}",
    );
    p.rsdbt(&["run", "-s", "keys", "pivot", "reads_pivot"])
        .expect(0);
    assert_eq!(
        p.query("select c_x from {{ ref('reads_pivot') }}"),
        vec![serde_json::json!({"c_x": 1})]
    );
}
