//! The embedded engine's memory limit (`memory_limit:` in the target): a query larger than the
//! limit spills to disk and finishes; one that cannot spill fails with a message that says so
//! and leaves no table; a limit that is not a size is refused before anything runs.

use crate::harness::Project;

fn project(limit: &str) -> Project {
    let p = Project::fixture("ok_shop");
    p.write(
        "profiles.yml",
        &format!("fixture:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: warehouse\n      schema: main\n      threads: 1\n      memory_limit: {limit}\n"),
    );
    // 1,000,000 rows (16 MB of values) sorted under an 8 MB limit: the sort spills.
    p.write(
        "models/big_sort.sql",
        "{{ config(materialized='table') }}\nselect value as v, random() as r from generate_series(1, 1000000) order by r\n",
    );
    // One array of 3,000,000 values: an aggregate without groups cannot spill.
    p.write(
        "models/one_array.sql",
        "{{ config(materialized='table') }}\nselect array_agg(value) as vs from generate_series(1, 3000000)\n",
    );
    p
}

#[test]
fn large_queries_spill_and_unspillable_ones_fail_clearly() {
    let p = project("8MB");
    let out = p.rsdbt(&["run", "-s", "big_sort", "one_array"]).expect(1);
    assert!(
        out.stdout
            .contains("OK created sql table model main.big_sort"),
        "{}",
        out.stdout
    );
    assert_eq!(
        p.query("select count(*) as n, sum(v) as s from {{ ref('big_sort') }}"),
        vec![serde_json::json!({"n": 1000000, "s": 500000500000i64})]
    );
    assert!(
        out.stdout
            .contains("the query needs more memory than the target's memory_limit (8 MB) allows")
            && out.stdout.contains("raise `memory_limit` in profiles.yml"),
        "{}",
        out.stdout
    );
    assert!(!p.path().join("warehouse/main/one_array").exists());
}

#[test]
fn a_limit_that_is_not_a_size_is_refused() {
    let p = project("lots");
    let out = p.rsdbt(&["run"]).expect(2);
    assert!(
        out.stderr.contains("memory_limit 'lots' is not a size"),
        "{}",
        out.stderr
    );
}
