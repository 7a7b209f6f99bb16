//! `state:` selection, `--defer` and `retry`: the CI workflow of building only what changed
//! against production tables, and re-running only what failed.

use serde_json::json;

use crate::harness::Project;

fn copy_state(p: &Project) {
    let old = p.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    for f in ["manifest.json", "run_results.json"] {
        std::fs::copy(p.path().join("target").join(f), old.join(f)).unwrap();
    }
}

fn names(p: &Project, args: &[&str]) -> Vec<String> {
    let mut a = vec!["ls", "--output", "name", "--state", "old"];
    a.extend_from_slice(args);
    let mut v: Vec<String> = p
        .rsdbt(&a)
        .expect(0)
        .stdout
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn state_modified_and_defer_build_only_what_changed_against_prod() {
    let p = Project::fixture("state_shop");
    p.rsdbt(&["build", "--target", "prod"]).expect(0);
    copy_state(&p);
    assert!(
        names(&p, &["-s", "state:modified"]).is_empty(),
        "nothing changed yet"
    );

    // One model's SQL and another model's config change; a model is added.
    p.write(
        "models/stg_customers.sql",
        "select id, upper(name) as name from {{ ref('customers') }}\n",
    );
    p.write(
        "models/schema.yml",
        &format!(
            "{}  - name: orders_count\n    config:\n      tags: [ops]\n",
            p.read("models/schema.yml")
        ),
    );
    p.write("models/new_model.sql", "select 1 as one\n");

    assert_eq!(
        names(&p, &["-s", "state:modified"]),
        ["new_model", "orders_count", "stg_customers"]
    );
    assert_eq!(names(&p, &["-s", "state:modified.body"]), ["stg_customers"]);
    assert_eq!(
        names(&p, &["-s", "state:modified.configs"]),
        ["orders_count"]
    );
    assert_eq!(names(&p, &["-s", "state:new"]), ["new_model"]);
    assert_eq!(
        names(&p, &["-s", "state:modified+", "--resource-type", "model"]),
        [
            "customer_totals",
            "new_model",
            "orders_count",
            "stg_customers",
            "top_customer"
        ]
    );
    assert_eq!(
        names(&p, &["-s", "state:modified+", "--resource-type", "test"]),
        ["unique_customer_totals_customer_id"]
    );
    assert_eq!(
        names(&p, &["-s", "result:success", "--resource-type", "seed"]),
        ["customers", "orders"]
    );

    // CI: build only the changed models in dev, reading the others from prod.
    let out = p
        .rsdbt(&[
            "run",
            "--target",
            "dev",
            "-s",
            "state:modified+",
            "--defer",
            "--state",
            "old",
        ])
        .expect(0);
    assert!(
        out.stdout.contains("Done. PASS=5 WARN=0 ERROR=0 SKIP=0"),
        "{}",
        out.stdout
    );
    assert!(
        !p.path().join("warehouse/dev/stg_orders.view.sql").exists(),
        "unmodified models are not built"
    );
    let compiled = p.read("target/compiled/state_shop/models/marts/customer_totals.sql");
    assert!(
        compiled.contains("\"warehouse\".\"dev\".\"stg_customers\"")
            && compiled.contains("\"warehouse\".\"prod\".\"stg_orders\""),
        "{compiled}"
    );
    assert_eq!(
        p.query("select name, total from \"dev\".\"customer_totals\" order by customer_id"),
        vec![
            json!({"name": "ADA", "total": 15.0}),
            json!({"name": "GRACE", "total": 2.5})
        ]
    );

    // A macro change marks the models that call it.
    p.write(
        "macros/money.sql",
        "{% macro to_dollars(column) %}({{ column }} / 100.00){% endmacro %}\n",
    );
    assert_eq!(names(&p, &["-s", "state:modified.macros"]), ["stg_orders"]);

    // So does a change in a macro that macro calls.
    p.write(
        "macros/money.sql",
        "{% macro to_dollars(column) %}{{ scale(column) }}{% endmacro %}\n{% macro scale(column) %}({{ column }} / 100.0){% endmacro %}\n",
    );
    p.rsdbt(&["parse"]).expect(0);
    copy_state(&p);
    assert!(names(&p, &["-s", "state:modified"]).is_empty());
    p.write(
        "macros/money.sql",
        "{% macro to_dollars(column) %}{{ scale(column) }}{% endmacro %}\n{% macro scale(column) %}({{ column }} / 100.00){% endmacro %}\n",
    );
    assert_eq!(names(&p, &["-s", "state:modified.macros"]), ["stg_orders"]);
}

#[test]
fn retry_reruns_only_failed_and_skipped_nodes_with_the_same_flags() {
    let p = Project::fixture("err_sql_runtime");
    p.write("models/totals.sql", "{{ config(materialized='table') }}\nselect 1 as id, 10 * {{ var('mult', 1) }} as amount from no_such_table\n");
    p.write("models/other.sql", "select 1 as x\n");
    // Static analysis off: the failure must happen at run time to be retried.
    let out = p
        .rsdbt(&["run", "--vars", "{mult: 3}", "--static-analysis", "off"])
        .expect(1);
    assert!(
        out.stdout.contains("Done. PASS=1 WARN=0 ERROR=1 SKIP=1"),
        "{}",
        out.stdout
    );
    // Fix the model; retry re-runs totals and downstream only, with --vars from the first run.
    p.write(
        "models/totals.sql",
        "{{ config(materialized='table') }}\nselect 1 as id, 10 * {{ var('mult', 1) }} as amount\n",
    );
    let out = p.rsdbt(&["retry"]).expect(0);
    assert!(
        out.stdout
            .contains("Done. PASS=2 WARN=0 ERROR=0 SKIP=0 NO-OP=0 TOTAL=2"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("main.other"), "{}", out.stdout);
    assert_eq!(
        p.query("select total from {{ ref('downstream') }}"),
        vec![json!({"total": 30})]
    );
    let out = p.rsdbt(&["retry"]).expect(0);
    assert!(out.stdout.contains("Nothing to retry"), "{}", out.stdout);
}
