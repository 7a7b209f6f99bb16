//! `run --watch` end to end: a save rebuilds the model and its children, a broken save prints
//! its diagnostic and the loop waits, a fix rebuilds, SIGINT ends the process.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::harness::{Project, Running};

fn totals(p: &Project) -> Vec<serde_json::Value> {
    p.query("select name, total from {{ ref('customer_totals') }} order by name")
}

#[test]
fn run_watch_rebuilds_on_save_and_survives_a_broken_file() {
    let p = Project::fixture("check_shop");
    p.rsdbt(&["seed"]).expect(0);
    let mut w = Running::start(&p, &["run", "--watch"]);
    w.wait_for("Watching for changes");
    assert_eq!(
        totals(&p),
        vec![
            json!({"name": "Ada", "total": 12.5}),
            json!({"name": "Grace", "total": 7.25})
        ]
    );
    // Files that are not the project's (a log) start no pass.
    p.write("notes.log", "not a model\n");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        w.lines.try_iter().all(|l| !l.contains("Running with")),
        "a log file started a pass"
    );
    // A save: the model and its child are rebuilt.
    p.write(
        "models/stg_orders.sql",
        "select order_id, customer_id, amount * 2 as order_amount, ordered_at from {{ ref('orders') }}\n",
    );
    let pass = w.wait_for("Rebuilt");
    assert!(
        pass.contains("OK created sql view model main.stg_orders"),
        "{pass}"
    );
    assert!(
        pass.contains("OK created sql table model main.customer_totals"),
        "{pass}"
    );
    w.wait_for("Watching for changes");
    assert_eq!(
        totals(&p),
        vec![
            json!({"name": "Ada", "total": 25.0}),
            json!({"name": "Grace", "total": 14.5})
        ]
    );
    // A broken save: the diagnostic, nothing rebuilt, and the loop goes on.
    p.write(
        "models/stg_orders.sql",
        "select order_id, customer_idd, amount as order_amount from {{ ref('orders') }}\n",
    );
    let pass = w.wait_for_all(&[
        "No field named customer_idd",
        "did you mean `customer_id`?",
        "Fix the file and save it again.",
        "Watching for changes",
    ]);
    assert!(pass.contains("No field named customer_idd"), "{pass}");
    assert!(pass.contains("did you mean `customer_id`?"), "{pass}");
    assert!(pass.contains("Fix the file and save it again."), "{pass}");
    assert!(!pass.contains("OK created"), "{pass}");
    // Only what changed runs: a save of the child alone does not rebuild its parent.
    p.write(
        "models/stg_orders.sql",
        "select order_id, customer_id, amount as order_amount, ordered_at from {{ ref('orders') }}\n",
    );
    w.wait_for("Rebuilt");
    w.wait_for("Watching for changes");
    p.write(
        "models/customer_totals.sql",
        "{{ config(materialized='table') }}\nselect c.name, sum(o.order_amount) + 1 as total\nfrom {{ ref('stg_orders') }} o\njoin {{ ref('customers') }} c on c.customer_id = o.customer_id\ngroup by c.name\n",
    );
    let pass = w.wait_for("Rebuilt");
    assert!(!pass.contains("main.stg_orders"), "{pass}");
    assert!(
        pass.contains("OK created sql table model main.customer_totals"),
        "{pass}"
    );
    w.wait_for("Watching for changes");
    assert_eq!(
        totals(&p),
        vec![
            json!({"name": "Ada", "total": 13.5}),
            json!({"name": "Grace", "total": 8.25})
        ]
    );
    // Ctrl-C ends it.
    Command::new("kill")
        .args(["-INT", &w.child.id().to_string()])
        .status()
        .unwrap();
    let status = w.child.wait().unwrap();
    assert!(!status.success());
}

#[test]
fn compile_watch_compiles_again_on_save() {
    let p = Project::fixture("check_shop");
    let mut w = Running::start(&p, &["compile", "--watch", "--static-analysis", "off"]);
    w.wait_for("Watching for changes");
    p.write(
        "models/stg_orders.sql",
        "select order_id, customer_id, amount * 3 as order_amount, ordered_at from {{ ref('orders') }}\n",
    );
    w.wait_for("Rebuilt");
    assert!(
        p.read("target/compiled/check_shop/models/stg_orders.sql")
            .contains("amount * 3"),
        "the compiled SQL follows the save"
    );
    w.child.kill().unwrap();
    let _ = w.child.wait();
}

/// A watching process keeps the Delta tables it wrote for its next pass; a commit another
/// process makes in between (here an operation's insert) is seen: the next pass's rebuild
/// replaces the table's rows, the inserted one among them (with the table as the watcher last
/// wrote it, the overwrite would leave the other process's file in place).
#[test]
fn run_watch_rebuilds_over_commits_made_between_passes() {
    let p = Project::fixture("check_shop");
    p.rsdbt(&["seed"]).expect(0);
    let doubled = |factor: &str| {
        p.write(
            "models/doubled.sql",
            &format!(
                "{{{{ config(materialized='table') }}}}\n\
                 select order_id, order_amount * {factor} as amount from {{{{ ref('stg_orders') }}}}\n"
            ),
        )
    };
    doubled("1");
    p.write(
        "macros/outside.sql",
        "{% macro add_order() %}{% do run_query(\"insert into main.doubled values (99, 1.5)\") %}{% endmacro %}\n",
    );
    let mut w = Running::start(&p, &["run", "--watch"]);
    w.wait_for("Watching for changes");
    // Another process commits to the table while the watcher waits.
    p.rsdbt(&["run-operation", "add_order"]).expect(0);
    assert_eq!(
        p.query("select count(*) as n from main.doubled"),
        vec![json!({"n": 3})]
    );
    doubled("2");
    let pass = w.wait_for("Rebuilt");
    assert!(
        pass.contains("OK created sql table model main.doubled"),
        "{pass}"
    );
    w.wait_for("Watching for changes");
    assert_eq!(
        p.query("select order_id, amount from main.doubled order by order_id"),
        vec![
            json!({"order_id": 1, "amount": 25.0}),
            json!({"order_id": 2, "amount": 14.5})
        ]
    );
    w.child.kill().unwrap();
    let _ = w.child.wait();
}
