//! Data tests on real rows: statuses, failure counts, thresholds, stored failures, selection,
//! exit codes, and `build` skipping what depends on a failed test.

use serde_json::{Value, json};

use crate::harness::Project;

fn results(p: &Project) -> Vec<(String, String, Option<u64>)> {
    let rr: serde_json::Value = serde_json::from_str(&p.read("target/run_results.json")).unwrap();
    rr["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["unique_id"].as_str().unwrap();
            // test.<project>.<name>.<hash> / unit_test.<project>.<model>.<name>: keep the name
            let part = if id.starts_with("unit_test.") { 3 } else { 2 };
            let name = id.split('.').nth(part).unwrap().to_string();
            (
                name,
                r["status"].as_str().unwrap().to_string(),
                r["failures"].as_u64(),
            )
        })
        .collect()
}

fn status_of(all: &[(String, String, Option<u64>)], name: &str) -> (String, Option<u64>) {
    let r = all
        .iter()
        .find(|r| r.0 == name)
        .unwrap_or_else(|| panic!("no result for {name}: {all:?}"));
    (r.1.clone(), r.2)
}

#[test]
fn test_command_reports_failures_with_counts() {
    let p = Project::fixture("tests_shop");
    p.rsdbt(&["seed"]).expect(0);
    p.rsdbt(&["run"]).expect(0);
    let out = p.rsdbt(&["test"]).expect(1);
    let all = results(&p);
    assert_eq!(all.len(), 9, "{all:?}");
    let s = |n: &str| status_of(&all, n);
    assert_eq!(s("unique_stg_customers_id"), ("fail".into(), Some(1)));
    assert_eq!(s("not_null_stg_customers_id"), ("pass".into(), Some(0)));
    assert_eq!(s("not_null_stg_customers_name"), ("fail".into(), Some(1)));
    assert_eq!(
        s("accepted_values_stg_customers_tier__gold__silver__bronze"),
        ("warn".into(), Some(1))
    );
    assert_eq!(
        s("relationships_stg_orders_customer_id__id__ref_stg_customers_"),
        ("fail".into(), Some(1))
    );
    // Two statuses other than 'paid': above warn_if (>1), not above error_if (>2).
    assert_eq!(
        s("accepted_values_stg_orders_status__paid"),
        ("warn".into(), Some(2))
    );
    // `where` keeps only paid orders: the null amount is a refund.
    assert_eq!(s("not_null_stg_orders_amount"), ("pass".into(), Some(0)));
    assert_eq!(s("amount_always_present"), ("fail".into(), Some(1)));
    assert_eq!(s("no_negative_amounts"), ("pass".into(), Some(0)));

    let o = &out.stdout;
    assert!(o.contains("FAIL 1 unique_stg_customers_id"), "{o}");
    assert!(
        o.contains("WARN 2 accepted_values_stg_orders_status__paid"),
        "{o}"
    );
    assert!(
        o.contains("Failure in test unique_stg_customers_id (models/schema.yml)\n"),
        "{o}"
    );
    assert!(
        o.contains("Got 1 result, configured to fail if != 0"),
        "{o}"
    );
    assert!(
        o.contains("Warning in test accepted_values_stg_orders_status__paid (models/schema.yml)"),
        "{o}"
    );
    assert!(o.contains("Got 2 results, configured to warn if >1"), "{o}");
    assert!(
        o.contains("Done. PASS=3 WARN=2 ERROR=4 SKIP=0 NO-OP=0 TOTAL=9"),
        "{o}"
    );
    // The compiled query is where dbt puts it, runnable by hand.
    let compiled =
        p.read("target/compiled/tests_shop/models/schema.yml/unique_stg_customers_id.sql");
    assert!(
        compiled.contains("from \"warehouse\".\"main\".\"stg_customers\"")
            && compiled.contains("having count(*) > 1"),
        "{compiled}"
    );
}

#[test]
fn store_failures_keeps_exactly_the_failing_rows() {
    let p = Project::fixture("tests_shop");
    p.rsdbt(&["seed"]).expect(0);
    p.rsdbt(&["run"]).expect(0);
    p.rsdbt(&["test", "-s", "stg_customers"]).expect(1);
    let rows = p.query("select * from \"main_dbt_test__audit\".\"not_null_stg_customers_name\"");
    assert_eq!(
        rows,
        vec![json!({"id": 4, "name": null, "tier": "platinum"})]
    );
    let m: serde_json::Value = serde_json::from_str(&p.read("target/manifest.json")).unwrap();
    let id = m["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .find(|k| k.starts_with("test.tests_shop.not_null_stg_customers_name."))
        .unwrap()
        .clone();
    assert_eq!(
        m["nodes"][&id]["relation_name"],
        "\"warehouse\".\"main_dbt_test__audit\".\"not_null_stg_customers_name\""
    );
}

#[test]
fn thresholds_switch_status_at_the_right_counts() {
    let p = Project::fixture("tests_shop");
    p.rsdbt(&["seed"]).expect(0);
    p.rsdbt(&["run", "-s", "stg_orders"]).expect(0);
    let run = |warn: &str, error: &str| -> String {
        let yml = p.read("models/schema.yml");
        let start = yml.find("warn_if:").unwrap();
        let end = yml[start..].find("\n      - name: amount").unwrap() + start;
        p.write(
            "models/schema.yml",
            &format!(
                "{}warn_if: \"{warn}\"\n                error_if: \"{error}\"\n{}",
                &yml[..start],
                &yml[end..]
            ),
        );
        p.rsdbt(&["test", "-s", "test_name:accepted_values,stg_orders"]);
        status_of(&results(&p), "accepted_values_stg_orders_status__paid").0
    };
    // The test finds 2 bad values.
    assert_eq!(run(">2", ">3"), "pass");
    assert_eq!(run(">1", ">3"), "warn");
    assert_eq!(run(">1", ">=2"), "fail");
    assert_eq!(run("!= 0", "!= 0"), "fail");
    // A severity written as Jinja, rendered then upper-cased as dbt does.
    let yml = p.read("models/schema.yml");
    p.write(
        "models/schema.yml",
        &yml.replace(
            "              values: [paid]\n",
            "              values: [paid]\n              severity: \"{{ 'warn' if target.name == 'dev' else 'error' }}\"\n",
        ),
    );
    assert_eq!(run("!= 0", "!= 0"), "warn");
}

#[test]
fn selection_of_tests() {
    let p = Project::fixture("tests_shop");
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ls", "--output", "name", "--resource-type", "test"];
        a.extend_from_slice(args);
        p.rsdbt(&a)
            .expect(0)
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        names(&["-s", "test_type:singular"]),
        vec!["no_negative_amounts"]
    );
    // Eager: a test runs when any parent is selected; cautious: only when all are.
    let eager = names(&["-s", "stg_orders"]);
    assert!(
        eager.contains(&"relationships_stg_orders_customer_id__id__ref_stg_customers_".to_string()),
        "{eager:?}"
    );
    assert_eq!(eager.len(), 5, "{eager:?}");
    let cautious = names(&["-s", "stg_orders", "--indirect-selection", "cautious"]);
    assert_eq!(cautious.len(), 4, "{cautious:?}");
    assert!(names(&["-s", "stg_orders", "--indirect-selection", "empty"]).is_empty());
    let excluded = names(&["-s", "stg_orders", "--exclude", "test_name:not_null"]);
    assert_eq!(excluded.len(), 3, "{excluded:?}");
}

#[test]
fn build_skips_what_depends_on_a_failed_test() {
    let p = Project::fixture("tests_shop");
    let out = p.rsdbt(&["build"]).expect(1);
    let all = results(&p);
    assert_eq!(
        status_of(&all, "customer_revenue").0,
        "skipped",
        "{}",
        out.stdout
    );
    assert_eq!(status_of(&all, "unique_stg_customers_id").0, "fail");
    assert!(
        out.stdout.contains("SKIP relation main.customer_revenue"),
        "{}",
        out.stdout
    );
    assert!(
        !p.path().join("warehouse/main/customer_revenue").exists(),
        "the skipped model must not be built"
    );
    // Warn-only tests do not block: with the failing tests disabled, everything builds.
    let yml = p.read("models/schema.yml")
        .replace("data_tests: [unique, not_null]", "data_tests: [not_null]")
        .replace("      - name: name\n        data_tests:\n          - not_null:\n              config:\n                store_failures: true\n", "")
        .replace("          - relationships:\n              to: ref('stg_customers')\n              field: id\n", "          - not_null\n")
        .replace("          - not_null:\n              name: amount_always_present\n", "");
    p.write("models/schema.yml", &yml);
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(
        out.stdout.contains("Completed with 2 warnings:"),
        "{}",
        out.stdout
    );
    assert_eq!(
        p.query("select count(*) as n from {{ ref('customer_revenue') }}"),
        vec![json!({"n": 4})]
    );
}

#[test]
fn project_configs_overrides_views_and_sql_fixtures() {
    let p = Project::fixture("tests_shop");
    // Project-wide test config, as in dbt_project.yml.
    p.write("project.yml", "name: tests_shop\nprofile: fixture\ntest-paths: [\"data-tests\"]\ndata_tests:\n  tests_shop:\n    +severity: warn\n");
    // A project test named like a built-in replaces it.
    p.write("macros/lenient_unique.sql", "{% test unique(model, column_name) %}\nselect {{ column_name }} from {{ model }} where false\n{% endtest %}\n");
    // config() inside a singular test, and failing rows kept as a view.
    p.write(
        "data-tests/no_negative_amounts.sql",
        "{{ config(severity='error', store_failures_as='view') }}\nselect * from {{ ref('stg_orders') }} where amount > 60\n",
    );
    p.write(
        "models/more_unit_tests.yml",
        "version: 2\nunit_tests:\n  - name: sql_fixture\n    model: customer_revenue\n    given:\n      - input: ref('stg_customers')\n        format: sql\n        rows: \"select 1 as id, 'ada' as name\"\n      - input: ref('stg_orders')\n        format: sql\n        rows: \"select 1 as customer_id, 10 as amount union all select 1, 5\"\n    expect:\n      rows: [{id: 1, name: ada, revenue: 15}]\n",
    );
    p.rsdbt(&["seed"]).expect(0);
    p.rsdbt(&["run"]).expect(0);
    p.rsdbt(&["test"]).expect(1);
    let all = results(&p);
    // The project-wide severity turns failures into warnings...
    assert_eq!(
        status_of(&all, "not_null_stg_customers_name"),
        ("warn".into(), Some(1))
    );
    // ...the project's `unique` passes where the built-in would fail...
    assert_eq!(
        status_of(&all, "unique_stg_customers_id"),
        ("pass".into(), Some(0))
    );
    // ...config() in the file wins over the project file.
    assert_eq!(
        status_of(&all, "no_negative_amounts"),
        ("fail".into(), Some(1))
    );
    assert_eq!(status_of(&all, "sql_fixture"), ("pass".into(), Some(0)));
    assert!(
        p.path()
            .join("warehouse/main_dbt_test__audit/no_negative_amounts.view.sql")
            .is_file()
    );
    assert_eq!(
        p.query("select order_id from \"main_dbt_test__audit\".\"no_negative_amounts\""),
        vec![json!({"order_id": 10})]
    );
}

/// `config()` inside a generic test's definition sets defaults (dbt_utils' `equal_rowcount`
/// sets `fail_calc`), which the yml entry overrides.
#[test]
fn config_in_a_generic_test_definition() {
    let p = Project::fixture("check_shop");
    p.write(
        "macros/same_count.sql",
        "{% test same_count(model, other) %}\n{{ config(fail_calc = 'sum(diff)') }}\nselect abs((select count(*) from {{ model }}) - (select count(*) from {{ other }})) as diff\n{% endtest %}\n",
    );
    p.write(
        "models/counts.yml",
        "models:\n  - name: customer_totals\n    data_tests:\n      - same_count:\n          other: ref('customers')\n      - same_count:\n          name: strict_count\n          other: ref('customers')\n          config: {fail_calc: 'count(*)'}\n",
    );
    let out = p.rsdbt(&["build"]).expect(1);
    assert!(
        out.stdout
            .contains("PASS same_count_customer_totals_ref_customers_"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("FAIL 1 strict_count"), "{}", out.stdout);
}

/// `helpers.nonneg` in yml is the package's test even when the project defines a `nonneg` of
/// its own, and dispatching through the project's search order does not land on that one (only
/// `<adapter>__` / `default__` names count there, as in dbt).
#[test]
fn package_qualified_generic_tests_and_dispatch_search_order() {
    let p = Project::fixture("check_shop");
    p.write(
        "dbt_packages/helpers/dbt_project.yml",
        "name: helpers\nversion: '1.0'\nconfig-version: 2\n",
    );
    p.write(
        "dbt_packages/helpers/macros/nonneg.sql",
        "{% test nonneg(model, column_name, strict=true) %}{{ return(adapter.dispatch('test_nonneg', 'helpers')(model, column_name, strict)) }}{% endtest %}\n\
         {% macro default__test_nonneg(model, column_name, strict) %}select * from {{ model }} where {{ column_name }} < {{ 0 if strict else -100 }}{% endmacro %}\n",
    );
    p.write(
        "packages.yml",
        "packages:\n  - local: dbt_packages/helpers\n",
    );
    p.write(
        "macros/own_tests.sql",
        "{% test nonneg(model, column_name) %}select 1 as always_fails{% endtest %}\n",
    );
    p.write(
        "project.yml",
        &format!(
            "{}dispatch:\n  - macro_namespace: helpers\n    search_order: [check_shop, helpers]\n",
            p.read("project.yml")
        ),
    );
    p.write(
        "models/nonneg.yml",
        "seeds:\n  - name: orders\n    columns:\n      - name: amount\n        data_tests:\n          - helpers.nonneg:\n              strict: false\n",
    );
    let out = p.rsdbt(&["build", "-s", "orders"]).expect(0);
    assert!(
        out.stdout
            .contains("PASS helpers_nonneg_orders_amount__False"),
        "{}",
        out.stdout
    );
}

/// A relationships test's dependencies in the manifest, as dbt records them: the `to:` model,
/// then the tested one; dbt's test macro and `get_where_subquery`. A project's own
/// `test_relationships` is rendered to find what it calls (here, one more ref).
#[test]
fn relationships_tests_depend_on_both_models() {
    let p = Project::fixture("tests_shop");
    let relationships = |p: &Project| -> Value {
        p.rsdbt(&["parse"]).expect(0);
        let m: Value = serde_json::from_str(&p.read("target/manifest.json")).unwrap();
        m["nodes"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.starts_with("test.") && k.contains("relationships"))
            .map(|(_, n)| n.clone())
            .expect("a relationships test")
    };
    let ref_names = |n: &Value| -> Vec<String> {
        n["refs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    let n = relationships(&p);
    let refs = ref_names(&n);
    assert_eq!(refs.len(), 2, "{n}");
    assert_eq!(
        n["depends_on"]["macros"],
        serde_json::json!([
            "macro.dbt.get_where_subquery",
            "macro.dbt.test_relationships"
        ])
    );
    assert_eq!(n["depends_on"]["nodes"].as_array().unwrap().len(), 2, "{n}");
    p.write(
        "macros/my_relationships.sql",
        "{% test relationships(model, column_name, to, field) %}\nselect * from {{ model }} where {{ column_name }} not in (select {{ field }} from {{ to }}) and 1 = (select 1 from {{ ref('orders') }} limit 1)\n{% endtest %}\n",
    );
    let refs = ref_names(&relationships(&p));
    assert!(
        refs.iter().any(|r| r == "orders") && refs.len() == 3,
        "{refs:?}"
    );
}

#[test]
fn not_null_tests_on_one_model_keep_their_own_counts_and_statuses() {
    let p = Project::fixture("tests_shop");
    p.write(
        "models/wide.sql",
        "select 1 as id, 'a' as name, cast(null as varchar) as note, cast(null as int) as score\n\
         union all select 2, cast(null as varchar) as name, cast(null as varchar) as note, 5\n\
         union all select 3, cast(null as varchar) as name, 'x', 6\n",
    );
    let yml = |extra: &str| {
        format!(
            "version: 2\nmodels:\n  - name: wide\n    columns:\n      - name: id\n        data_tests: [not_null]\n      - name: name\n        data_tests: [not_null]\n      - name: note\n        data_tests:\n          - not_null:\n              config: {{warn_if: '>1', error_if: '>2'}}\n      - name: score\n        data_tests:\n          - not_null:\n              config: {{severity: warn}}\n{extra}"
        )
    };
    p.write("models/wide.yml", &yml(""));
    p.rsdbt(&["run", "-s", "wide"]).expect(0);
    let check = |p: &Project, out: &crate::harness::Output| {
        let all = results(p);
        let s = |n: &str| status_of(&all, n);
        assert_eq!(s("not_null_wide_id"), ("pass".into(), Some(0)));
        assert_eq!(s("not_null_wide_name"), ("fail".into(), Some(2)));
        assert_eq!(s("not_null_wide_note"), ("warn".into(), Some(2)));
        assert_eq!(s("not_null_wide_score"), ("warn".into(), Some(1)));
        let o = &out.stdout;
        assert!(
            o.contains("Got 2 results, configured to fail if != 0"),
            "{o}"
        );
        assert!(o.contains("Got 2 results, configured to warn if >1"), "{o}");
        assert!(
            o.contains("Got 1 result, configured to warn if != 0"),
            "{o}"
        );
        let sql = p.read("target/compiled/tests_shop/models/wide.yml/not_null_wide_name.sql");
        assert!(sql.contains("where name is null"), "{sql}");
    };
    let out = p.rsdbt(&["test", "-s", "wide"]).expect(1);
    check(&p, &out);
    assert_eq!(results(&p).len(), 4);

    // A test on a missing column errors on its own; the others keep their results.
    p.write(
        "models/wide.yml",
        &yml("      - name: missing\n        data_tests: [not_null]\n"),
    );
    let out = p.rsdbt(&["test", "-s", "wide"]).expect(1);
    check(&p, &out);
    let all = results(&p);
    assert_eq!(status_of(&all, "not_null_wide_missing").0, "error");
    assert!(out.stdout.contains("missing"), "{}", out.stdout);
}
