//! Parquet tables on the embedded target (`table_format: parquet`): plain Parquet files in
//! `<schema>/<table>.parquet/`, replaced whole by each build and appended to by incremental
//! runs, read back by rsdbt and by pyarrow (another reader).

use serde_json::json;

use crate::harness::Project;

fn ids(p: &Project, model: &str) -> Vec<serde_json::Value> {
    p.query(&format!(
        "select order_id from {{{{ ref('{model}') }}}} order by order_id"
    ))
}

#[test]
fn parquet_tables_build_append_switch_and_keep_their_rows_on_failure() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/pq_orders.sql",
        "{{ config(materialized='incremental', table_format='parquet') }}\n\
         select order_id, order_amount, ordered_at from {{ ref('stg_orders') }}\n\
         {% if is_incremental() %}where order_id > (select max(order_id) from {{ this }}){% endif %}\n",
    );
    p.write(
        "models/pq_none.sql",
        "{{ config(materialized='table', table_format='parquet') }}\nselect order_id, order_amount from {{ ref('stg_orders') }} where false\n",
    );
    p.rsdbt(&["build"]).expect(0);
    assert_eq!(
        ids(&p, "pq_orders"),
        vec![json!({"order_id": 1}), json!({"order_id": 2})]
    );
    // An empty table still has its columns.
    assert_eq!(
        p.query("select count(*) as n, sum(order_amount) as s from {{ ref('pq_none') }}"),
        vec![json!({"n": 0, "s": null})]
    );
    // New rows arrive: the next run appends them as one more folder, an idle run adds nothing.
    p.append("seeds/orders.csv", "3,10,1.75,2024-01-03\n");
    p.rsdbt(&["seed"]).expect(0);
    let out = p.rsdbt(&["run", "-s", "pq_orders"]).expect(0);
    assert!(out.stdout.contains("[INSERT 1 in"), "{}", out.stdout);
    let out = p.rsdbt(&["run", "-s", "pq_orders"]).expect(0);
    assert!(out.stdout.contains("[INSERT 0 in"), "{}", out.stdout);
    let current = p.read("warehouse/main/pq_orders.parquet/_current");
    assert_eq!(current.lines().count(), 2, "{current}");
    assert_eq!(
        ids(&p, "pq_orders"),
        vec![
            json!({"order_id": 1}),
            json!({"order_id": 2}),
            json!({"order_id": 3})
        ]
    );
    // Another reader: pyarrow reads the folders `_current` names, with the columns and rows.
    if let Some(python) = crate::harness::pyiceberg() {
        let read = r#"
import sys, pyarrow.parquet as pq, pyarrow as pa
root = sys.argv[1]
folders = open(root + "/_current").read().split()
t = pa.concat_tables([pq.read_table(root + "/" + f) for f in folders])
print(t.schema.names, sorted(t.column("order_id").to_pylist()), sorted(t.column("order_amount").to_pylist()))
"#;
        let table = p.path().join("warehouse/main/pq_orders.parquet");
        let out = crate::harness::run_python(&python, read, &[table.as_ref()]);
        assert_eq!(
            out.trim(),
            "['order_id', 'order_amount', 'ordered_at'] [1, 2, 3] [1.75, 7.25, 12.5]"
        );
    }
    // A full refresh rebuilds the table as one folder and deletes the others.
    p.rsdbt(&["run", "-s", "pq_orders", "--full-refresh"])
        .expect(0);
    let dirs = std::fs::read_dir(p.path().join("warehouse/main/pq_orders.parquet"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(dirs, 1);
    assert_eq!(ids(&p, "pq_orders").len(), 3);
    // A failing build leaves the table it had.
    p.write(
        "models/pq_orders.sql",
        "{{ config(materialized='table', table_format='parquet') }}\nselect cast('x' || order_id as int) as order_id from {{ ref('stg_orders') }}\n",
    );
    p.rsdbt(&["run", "-s", "pq_orders"]).expect(1);
    assert_eq!(ids(&p, "pq_orders").len(), 3);
    // Switching formats removes the other one.
    p.write(
        "models/pq_orders.sql",
        "{{ config(materialized='table') }}\nselect order_id from {{ ref('stg_orders') }} where order_id < 3\n",
    );
    p.rsdbt(&["run", "-s", "pq_orders"]).expect(0);
    assert!(!p.path().join("warehouse/main/pq_orders.parquet").exists());
    assert_eq!(
        ids(&p, "pq_orders"),
        vec![json!({"order_id": 1}), json!({"order_id": 2})]
    );
    p.write(
        "models/pq_orders.sql",
        "{{ config(materialized='table', table_format='parquet') }}\nselect order_id from {{ ref('stg_orders') }} where order_id = 3\n",
    );
    p.rsdbt(&["run", "-s", "pq_orders"]).expect(0);
    assert!(
        !p.path()
            .join("warehouse/main/pq_orders/_delta_log")
            .exists()
    );
    assert_eq!(ids(&p, "pq_orders"), vec![json!({"order_id": 3})]);
    // Parquet files cannot delete rows: merge is refused before anything runs.
    p.write(
        "models/pq_orders.sql",
        "{{ config(materialized='incremental', table_format='parquet', unique_key='order_id') }}\nselect order_id from {{ ref('stg_orders') }}\n",
    );
    let out = p.rsdbt(&["run", "-s", "pq_orders"]).expect(2);
    assert!(
        out.stderr.contains("incremental_strategy 'merge' (the default with a unique_key) is not supported by table_format 'parquet', which can only append"),
        "{}",
        out.stderr
    );
}
