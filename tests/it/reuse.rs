//! `--skip-unchanged`: models whose SQL, config and input data did not change since their last
//! build are reused; exactly the ones whose SQL or inputs changed are rebuilt.

use serde_json::json;

use crate::harness::Project;

/// model name → the response in its result line (`CREATE TABLE 2`, `REUSED`...).
fn responses(out: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = out
        .lines()
        .filter(|l| l.contains(" OK created sql "))
        .map(|l| {
            let model = l
                .split("model main.")
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            let response = l
                .rsplit('[')
                .next()
                .unwrap_or("")
                .split(" in ")
                .next()
                .unwrap_or("")
                .to_string();
            (model, response)
        })
        .collect();
    v.sort();
    v
}

fn r(m: &str, s: &str) -> (String, String) {
    (m.to_string(), s.to_string())
}

#[test]
fn unchanged_models_are_reused_and_changed_ones_rebuilt() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/order_count.sql",
        "{{ config(materialized='table') }}\nselect count(*) as orders from {{ ref('orders') }}\n",
    );
    p.write(
        "models/stamped.sql",
        "{{ config(materialized='table') }}\nselect now() as built_at\n",
    );
    p.rsdbt(&["build"]).expect(0);
    // Nothing changed: everything is reused, except what depends on the moment.
    let out = p.rsdbt(&["run", "--skip-unchanged"]).expect(0);
    assert_eq!(
        responses(&out.stdout),
        vec![
            r("customer_totals", "REUSED"),
            r("order_count", "REUSED"),
            r("stamped", "CREATE TABLE 1"),
            r("stg_orders", "REUSED"),
        ],
        "{}",
        out.stdout
    );
    // A model's SQL changes: it is rebuilt, the others are not.
    p.write(
        "models/customer_totals.sql",
        "{{ config(materialized='table') }}\nselect c.name, sum(o.order_amount) * 10 as total\nfrom {{ ref('stg_orders') }} o\njoin {{ ref('customers') }} c on c.customer_id = o.customer_id\ngroup by c.name\n",
    );
    let out = p
        .rsdbt(&[
            "run",
            "--skip-unchanged",
            "-s",
            "customer_totals",
            "order_count",
        ])
        .expect(0);
    assert_eq!(
        responses(&out.stdout),
        vec![
            r("customer_totals", "CREATE TABLE 2"),
            r("order_count", "REUSED")
        ],
        "{}",
        out.stdout
    );
    // An input's data changes (a seed reloaded from a new file): its readers are rebuilt.
    p.write(
        "seeds/customers.csv",
        "customer_id,name\n10,Ada L.\n11,Grace\n",
    );
    p.rsdbt(&["seed"]).expect(0);
    let out = p
        .rsdbt(&[
            "run",
            "--skip-unchanged",
            "-s",
            "customer_totals",
            "order_count",
        ])
        .expect(0);
    assert_eq!(
        responses(&out.stdout),
        vec![
            r("customer_totals", "CREATE TABLE 2"),
            r("order_count", "REUSED")
        ],
        "{}",
        out.stdout
    );
    assert_eq!(
        p.query("select name, total from {{ ref('customer_totals') }} order by name"),
        vec![
            json!({"name": "Ada L.", "total": 125.0}),
            json!({"name": "Grace", "total": 72.5})
        ]
    );
    // A table dropped behind rsdbt's back is rebuilt; --full-refresh rebuilds everything.
    std::fs::remove_dir_all(p.path().join("warehouse/main/order_count")).unwrap();
    let out = p
        .rsdbt(&["run", "--skip-unchanged", "-s", "order_count"])
        .expect(0);
    assert_eq!(
        responses(&out.stdout),
        vec![r("order_count", "CREATE TABLE 1")]
    );
    let out = p
        .rsdbt(&[
            "run",
            "--skip-unchanged",
            "--full-refresh",
            "-s",
            "order_count",
        ])
        .expect(0);
    assert_eq!(
        responses(&out.stdout),
        vec![r("order_count", "CREATE TABLE 1")]
    );
}

/// A seed above 1 MiB: checksummed by its path as dbt does (its content is not hashed on each
/// parse), loaded whole through the streaming reader — a column of times without seconds is
/// one even when the first non-matching value is near the end — and a change to it still
/// rebuilds the models over it under `--skip-unchanged` (size and time stand in for the hash).
#[test]
fn large_seeds_are_checksummed_by_path_and_still_invalidate_reuse() {
    let p = Project::fixture("check_shop");
    let rows = |n: usize, last: &str| {
        let mut csv = String::from("id,label,at\n");
        for i in 0..n {
            csv.push_str(&format!(
                "{i},label number {i} with some padding text,2024-01-{:02} {:02}:{:02}\n",
                1 + i % 28,
                i % 24,
                i % 60
            ));
        }
        csv.push_str(last);
        csv
    };
    let big = rows(25_000, "25000,last,2024-02-01 10:00\n");
    assert!(big.len() > 1024 * 1024);
    p.write("seeds/big.csv", &big);
    p.write(
        "models/big_total.sql",
        "{{ config(materialized='table') }}\nselect count(*) as n, sum(id) as ids, max(at) as latest from {{ ref('big') }}\n",
    );
    p.rsdbt(&["build", "-s", "+big_total"]).expect(0);
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("target/manifest.json")).unwrap();
    assert_eq!(
        manifest["nodes"]["seed.check_shop.big"]["checksum"],
        json!({"name": "path", "checksum": "seeds/big.csv"})
    );
    assert_eq!(
        manifest["nodes"]["seed.check_shop.customers"]["checksum"]["name"],
        "sha256"
    );
    assert_eq!(
        p.query("select n, ids, cast(latest as varchar) as latest, arrow_typeof(latest) as ty from \"main\".\"big_total\""),
        vec![json!({"n": 25001, "ids": 312_512_500, "latest": "2024-02-01T10:00:00", "ty": "Timestamp(µs)"})]
    );

    let out = p
        .rsdbt(&["run", "--skip-unchanged", "-s", "big_total"])
        .expect(0);
    assert_eq!(responses(&out.stdout), vec![r("big_total", "REUSED")]);
    // One more row: the seed's path is the same, its file is not.
    p.write(
        "seeds/big.csv",
        &rows(25_000, "25000,last,2024-02-01 10:00\n25001,x,not a time\n"),
    );
    p.rsdbt(&["seed", "-s", "big"]).expect(0);
    let out = p
        .rsdbt(&["run", "--skip-unchanged", "-s", "big_total"])
        .expect(0);
    assert_eq!(
        responses(&out.stdout),
        vec![r("big_total", "CREATE TABLE 1")]
    );
    // The last value is not a time: the column is text now.
    assert_eq!(
        p.query("select arrow_typeof(at) as ty, count(*) as n from \"main\".\"big\" group by 1"),
        vec![json!({"ty": "Utf8View", "n": 25002})]
    );
}
