//! Unit tests: offline runs on fixture rows, overrides, fixture files, a readable diff on
//! failure, selection, and `build` running a model's unit tests before the model.

use crate::harness::Project;

#[test]
fn unit_tests_run_offline_and_report_a_row_diff() {
    let p = Project::fixture("unit_shop");
    let out = p.rsdbt(&["test", "--select", "test_type:unit"]).expect(1);
    let o = &out.stdout;
    assert!(o.contains("PASS stg_events::heartbeats_are_dropped"), "{o}");
    assert!(o.contains("PASS daily::daily_counts_with_overrides"), "{o}");
    assert!(
        o.contains("PASS daily::incremental_run_only_adds_new_days"),
        "{o}"
    );
    assert!(o.contains("FAIL 2 daily::wrong_expectation"), "{o}");
    assert!(
        o.contains("Failure in unit_test daily::wrong_expectation (models/unit_tests.yml)"),
        "{o}"
    );
    assert!(
        o.contains("actual differs from expected (1 expected row missing, 1 unexpected row)"),
        "{o}"
    );
    let diff: Vec<&str> = o
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, r)| r.trim_end()))
        .collect();
    assert!(diff.contains(&"@@  | day        | events"), "{o}");
    assert!(diff.contains(&"--- | 2024-01-02 | 5"), "{o}");
    assert!(diff.contains(&"+++ | 2024-01-02 | 1"), "{o}");
    // Nothing was built or needed: no upstream table exists.
    assert!(!p.path().join("warehouse/main/events").exists());
    let rr: serde_json::Value = serde_json::from_str(&p.read("target/run_results.json")).unwrap();
    let wrong = rr["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unique_id"] == "unit_test.unit_shop.daily.wrong_expectation")
        .unwrap();
    assert_eq!(wrong["status"], "fail");
    assert_eq!(wrong["failures"], 2);
    // The compiled SQL is written where a person can run it.
    let compiled = p.read("target/compiled/unit_shop/models/unit_tests.yml/daily/incremental_run_only_adds_new_days.sql");
    assert!(
        compiled.contains("__dbt__unit_test__this")
            && compiled.contains(
                "where cast(event_at as date) > (select max(day) from __dbt__unit_test__this)"
            ),
        "{compiled}"
    );
    let m: serde_json::Value = serde_json::from_str(&p.read("target/manifest.json")).unwrap();
    assert_eq!(
        m["unit_tests"]["unit_test.unit_shop.daily.wrong_expectation"]["model"],
        "daily"
    );
    assert!(
        m["nodes"]
            .get("unit_test.unit_shop.daily.wrong_expectation")
            .is_none()
    );
}

#[test]
fn selection_and_build_order() {
    let p = Project::fixture("unit_shop");
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ls", "--output", "name"];
        a.extend_from_slice(args);
        p.rsdbt(&a)
            .expect(0)
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        names(&["-s", "test_type:unit", "--exclude", "daily"]),
        vec!["heartbeats_are_dropped"]
    );
    assert_eq!(
        names(&["-s", "stg_events", "--resource-type", "unit_test"]),
        vec!["heartbeats_are_dropped"]
    );
    // In build, a failing unit test skips its model (and what depends on it).
    p.write(
        "seeds/events.csv",
        "id,event_at,kind\n1,2024-01-01 08:00:00,click\n",
    );
    // The source reads the seed's table, which the DAG does not know: load it first.
    p.rsdbt(&["seed"]).expect(0);
    let out = p.rsdbt(&["build"]).expect(1);
    let o = &out.stdout;
    assert!(
        o.contains("OK created sql view model main.stg_events"),
        "{o}"
    );
    assert!(o.contains("SKIP relation main.daily"), "{o}");
    let start_unit = o.find("START unit_test daily::wrong_expectation").unwrap();
    assert!(
        o.find("SKIP relation main.daily").unwrap() > start_unit,
        "{o}"
    );
    // Fix the expectation: the model is built after its unit tests pass.
    p.write(
        "models/unit_tests.yml",
        &p.read("models/unit_tests.yml")
            .replace("events: 5}", "events: 1}"),
    );
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(
        out.stdout
            .contains("OK created sql incremental model main.daily"),
        "{}",
        out.stdout
    );
}

#[test]
fn missing_fixture_and_unknown_model_are_reported_before_running() {
    let p = Project::fixture("unit_shop");
    let yml = p
        .read("models/unit_tests.yml")
        .replacen("fixture: two_days", "fixture: three_days", 1)
        .replace("model: stg_events", "model: stg_event");
    p.write("models/unit_tests.yml", &yml);
    let err = p.rsdbt(&["test"]).expect(2).stderr;
    assert!(err.contains("unit test 'daily_counts_with_overrides' uses fixture 'three_days', but no three_days.csv was found"), "{err}");
    assert!(
        err.contains(
            "unit test 'heartbeats_are_dropped' tests model 'stg_event', which was not found"
        ),
        "{err}"
    );
    assert!(err.contains("did you mean 'stg_events'?"), "{err}");
}

/// As dbt: a fixture may leave out columns the input has in the warehouse (they are NULL, of
/// the column's type), every value is cast to its column's type, and expected values are cast
/// to the model's column types (a date equals a timestamp at midnight).
#[test]
fn fixtures_take_their_types_and_missing_columns_from_the_warehouse() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/order_times.sql",
        "select order_id, cast(ordered_at as timestamp) as at, coalesce(amount, 0) as amount,\n\
         customer_id + 1 as next_customer\nfrom {{ ref('orders') }}\n",
    );
    p.write(
        "models/order_times.yml",
        "unit_tests:\n  - name: partial_rows\n    model: order_times\n    given:\n      - input: ref('orders')\n        rows:\n          - {order_id: 1, ordered_at: '2024-01-02', customer_id: '41'}\n    expect:\n      rows:\n        - {order_id: 1, at: '2024-01-02', amount: 0, next_customer: 42}\n",
    );
    let out = p.rsdbt(&["build", "-s", "+order_times"]).expect(0);
    assert!(
        out.stdout.contains("PASS order_times::partial_rows"),
        "{}",
        out.stdout
    );
    // The unit test ran after its input was built, before its model.
    let at = |s: &str| {
        out.stdout
            .find(s)
            .unwrap_or_else(|| panic!("{s}: {}", out.stdout))
    };
    assert!(
        at("OK loaded seed file main.orders") < at("START unit_test order_times::partial_rows")
    );
    assert!(at("PASS order_times::partial_rows") < at("START sql view model main.order_times"));
}
