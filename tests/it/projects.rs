//! A dbt-style project (dbt_project.yml) exercising configs, macros, vars and ephemerals.

use serde_json::json;

use crate::harness::Project;

fn manifest(p: &Project) -> serde_json::Value {
    serde_json::from_str(&p.read("target/manifest.json")).unwrap()
}

#[test]
fn config_precedence_and_relation_names() {
    let p = Project::fixture("ok_shop");
    p.rsdbt(&["parse"]).expect(0);
    let m = manifest(&p);
    let revenue = &m["nodes"]["model.shop.revenue"];
    // yml (view) beats the folder (table); tags accumulate folder → config().
    assert_eq!(revenue["config"]["materialized"], "view");
    assert_eq!(revenue["config"]["tags"], json!(["shop", "finance"]));
    assert_eq!(revenue["config"]["meta"], json!({"layer": "gold"}));
    // The project's generate_schema_name uses the custom schema as is; +alias applies.
    assert_eq!(
        revenue["relation_name"],
        "\"warehouse\".\"marts\".\"fct_revenue\""
    );
    assert_eq!(
        revenue["description"],
        "Revenue per customer, tax included."
    );
    // config() in the file beats yml; meta merges key by key.
    let customers = &m["nodes"]["model.shop.customers"];
    assert_eq!(customers["config"]["materialized"], "table");
    assert_eq!(
        customers["config"]["meta"],
        json!({"layer": "gold", "owner": "finance"})
    );
    assert_eq!(
        m["nodes"]["model.shop.paid_orders"]["relation_name"],
        serde_json::Value::Null
    );
    assert_eq!(
        m["nodes"]["seed.shop.orders"]["relation_name"],
        "\"warehouse\".\"raw\".\"orders\""
    );
    // Disabled models are kept aside, and their broken ref is not an error.
    assert!(m["nodes"].get("model.shop.legacy").is_none());
    assert!(m["disabled"].get("model.shop.legacy").is_some());
    assert_eq!(
        m["parent_map"]["model.shop.revenue"],
        json!(["model.shop.paid_orders"])
    );
    assert_eq!(
        m["child_map"]["seed.shop.orders"],
        json!(["model.shop.stg_orders"])
    );
    assert_eq!(
        m["nodes"]["model.shop.stg_orders"]["depends_on"]["macros"],
        json!(["macro.shop.cents_to_dollars"])
    );
}

#[test]
fn build_runs_macros_vars_env_vars_and_ephemerals() {
    let p = Project::fixture("ok_shop");
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(
        out.stdout.contains("Done. PASS=4 WARN=0 ERROR=0 SKIP=0"),
        "{}",
        out.stdout
    );
    // tax_rate 0.5 from the project vars; amounts in dollars through a macro's return().
    let rows =
        p.query("select customer, revenue_with_tax from {{ ref('revenue') }} order by customer");
    assert_eq!(
        rows,
        vec![
            json!({"customer": "ada", "revenue_with_tax": 52.5}),
            json!({"customer": "alan", "revenue_with_tax": 60.0})
        ]
    );
    let rows = p.query("select distinct region from {{ ref('stg_orders') }}");
    assert_eq!(rows, vec![json!({"region": "eu"})]);
    // Python string methods in Jinja ('paid,settled'.split(',')).
    let compiled = p.read("target/compiled/shop/models/staging/stg_orders.sql");
    assert!(
        compiled.contains("status in ('paid', 'settled') as is_paid"),
        "{compiled}"
    );
    // The ephemeral model is inlined as a CTE in the compiled SQL.
    let compiled = p.read("target/compiled/shop/models/marts/customers.sql");
    assert!(compiled.starts_with("\nwith __dbt__cte__paid_orders as (\nselect * from \"warehouse\".\"main\".\"stg_orders\" where status = 'paid'\n), paid as"), "{compiled}");
    // --vars overrides the project var.
    p.rsdbt(&["run", "-s", "revenue", "--vars", "{tax_rate: 0}"])
        .expect(0);
    let rows = p.query("select revenue_with_tax from {{ ref('revenue') }} where customer = 'ada'");
    assert_eq!(rows, vec![json!({"revenue_with_tax": 35.0})]);
}

#[test]
fn ls_selects_like_dbt() {
    let p = Project::fixture("ok_shop");
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
    assert_eq!(names(&["-s", "marts"]), vec!["customers", "revenue"]);
    assert_eq!(
        names(&["-s", "+revenue"]),
        vec!["orders", "stg_orders", "paid_orders", "revenue"]
    );
    assert_eq!(
        names(&["-s", "stg_orders+", "--exclude", "paid_orders"]),
        vec!["stg_orders", "customers", "revenue"]
    );
    assert_eq!(names(&["-s", "tag:finance"]), vec!["revenue"]);
    assert_eq!(
        names(&["-s", "config.materialized:table"]),
        vec!["customers"]
    );
    assert_eq!(
        names(&["-s", "marts,config.materialized:view"]),
        vec!["revenue"]
    );
    assert_eq!(names(&["--resource-type", "seed"]), vec!["orders"]);
    let paths = p
        .rsdbt(&["ls", "-s", "path:models/staging", "--output", "path"])
        .expect(0)
        .stdout;
    assert_eq!(
        paths,
        "models/staging/stg_orders.sql\nmodels/staging/paid_orders.sql\n"
    );
    let err = p.rsdbt(&["ls", "-s", "tags:finance"]).expect(2).stderr;
    assert!(
        err.contains("unknown selector method 'tags'") && err.contains("did you mean 'tag'?"),
        "{err}"
    );
}

#[test]
fn hooks_render_this_and_a_failing_hook_fails_the_model() {
    let p = Project::fixture("ok_shop");
    p.rsdbt(&["build"]).expect(0);
    let m = manifest(&p);
    assert_eq!(
        m["nodes"]["model.shop.customers"]["config"]["post-hook"][0]["sql"],
        "select count(*) from {{ this }}"
    );
    p.write("models/marts/customers.sql", "{{ config(materialized='table', post_hook='select missing_column from {{ this }}') }}\nselect 1 as orders\n");
    let out = p.rsdbt(&["run", "-s", "customers"]).expect(1);
    assert!(
        out.stdout.contains("Database Error in model customers"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("missing_column"), "{}", out.stdout);
}

#[test]
fn sources_resolve_to_warehouse_tables() {
    let p = Project::fixture("ok_shop");
    p.rsdbt(&["seed"]).expect(0);
    p.write(
        "models/staging/sources.yml",
        "version: 2\nsources:\n  - name: shop_raw\n    schema: raw\n    description: Loaded by the seed\n    tables:\n      - name: orders_src\n        identifier: orders\n",
    );
    p.write(
        "models/staging/raw_order_count.sql",
        "select count(*) as n from {{ source('shop_raw', 'orders_src') }}\n",
    );
    let out = p.rsdbt(&["ls", "-s", "source:shop_raw+"]).expect(0).stdout;
    assert_eq!(
        out,
        "source:shop.shop_raw.orders_src\nshop.staging.raw_order_count\n"
    );
    p.rsdbt(&["run", "-s", "raw_order_count"]).expect(0);
    assert_eq!(
        p.query("select n from {{ ref('raw_order_count') }}"),
        vec![json!({"n": 4})]
    );
    let m = manifest(&p);
    let src = &m["sources"]["source.shop.shop_raw.orders_src"];
    assert_eq!(src["relation_name"], "\"warehouse\".\"raw\".\"orders\"");
    assert_eq!(
        m["nodes"]["model.shop.raw_order_count"]["depends_on"]["nodes"],
        json!(["source.shop.shop_raw.orders_src"])
    );
    // A typo in a source name is caught before anything runs.
    p.write(
        "models/staging/raw_order_count.sql",
        "select count(*) as n from {{ source('shop_raw', 'order_src') }}\n",
    );
    let err = p.rsdbt(&["run"]).expect(2).stderr;
    assert!(
        err.contains("depends on source 'shop_raw.order_src', which was not found"),
        "{err}"
    );
    assert!(err.contains("did you mean 'shop_raw.orders_src'?"), "{err}");
}

#[test]
fn on_run_start_and_end_hooks() {
    let p = Project::fixture("ok_shop");
    // A model's `log(..., info=True)` prints when it runs.
    p.write(
        "models/logged.sql",
        "{{ log('building ' ~ this.identifier, info=True) }}select 1 as x",
    );
    // A macro the hook calls sees the hook's `results` without being passed them, and each
    // result's node as dbt gives it (dbt_artifacts records runs this way).
    p.write(
        "macros/record_run.sql",
        "{% macro record_run() %}\n\
         {% set models = results | selectattr('node.resource_type', 'equalto', 'model') | list %}\n\
         {% set r = models | selectattr('node.name', 'equalto', 'customers') | first %}\n\
         {{ log('recorded ' ~ models | length ~ ' models; customers: ' ~ r.node.config.materialized\n\
            ~ ' full_refresh=' ~ (r.node.config.full_refresh is none) ~ ' thread=' ~ (r.thread_id | length > 0)\n\
            ~ ' stages=' ~ (r.timing | map(attribute='name') | join('+')) ~ ' sql=' ~ ('select' in r.node.compiled_code)\n\
            ~ ' which=' ~ invocation_args_dict.which ~ ' env=' ~ dbt_metadata_envs.get('TEAM', '-'), info=True) }}\n\
         {% endmacro %}\n",
    );
    let base = p.read("dbt_project.yml");
    p.write(
        "dbt_project.yml",
        &(base.clone()
            + r#"on-run-start: "select {{ var('tax_rate') }} as rate"
on-run-end:
  - "{% for r in results %}{{ log('ran ' ~ r.node.name ~ ' ' ~ r.status, info=True) }}{% endfor %}"
  - "{{ log('schemas ' ~ (schemas | sort | join(',')), info=True) }}"
  - "{{ record_run() }}"
"#),
    );
    let out = p
        .rsdbt_env(&["build"], &[("DBT_ENV_CUSTOM_ENV_TEAM", "data")])
        .expect(0);
    assert!(
        out.stdout.contains(
            "recorded 4 models; customers: table full_refresh=True thread=True \
             stages=compile+execute sql=True which=build env=data"
        ),
        "{}",
        out.stdout
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {}", out.stdout))
    };
    // Start hooks before the first node, end hooks after the last, with the run's results.
    assert!(at("1 of 1 OK hook: shop.on-run-start.0") < at("START seed file raw.orders"));
    assert!(at("OK created sql table model marts.customers") < at("Running 3 on-run-end hooks"));
    assert!(at("building logged") > at("START sql view model main.logged"));
    for m in ["orders", "stg_orders", "customers", "revenue", "logged"] {
        assert!(at(&format!("ran {m} success")) > at("START hook: shop.on-run-end.0"));
    }
    at("schemas main,marts,raw");
    at("2 of 3 OK hook: shop.on-run-end.1");
    let rr: serde_json::Value = serde_json::from_str(&p.read("target/run_results.json")).unwrap();
    let ids: Vec<&str> = rr["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["unique_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&"operation.shop.shop-on-run-start-0"));
    assert_eq!(
        ids[ids.len() - 3..],
        [
            "operation.shop.shop-on-run-end-0",
            "operation.shop.shop-on-run-end-1",
            "operation.shop.shop-on-run-end-2"
        ]
    );
    assert_eq!(rr["results"][0]["compiled_code"], "select 0.5 as rate");

    // A failing on-run-start skips every node and fails the run; on-run-end does not run.
    p.write(
        "dbt_project.yml",
        &(base + "on-run-start: \"select * from no_such_table\"\non-run-end: \"{{ log('end ran', info=True) }}\"\n"),
    );
    let out = p.rsdbt(&["run", "--full-refresh"]).expect(1);
    assert!(
        out.stdout
            .contains("1 of 1 ERROR hook: shop.on-run-start.0"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("end ran"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("on-run-start hook shop.on-run-start.0 failed")
            && out.stderr.contains("no_such_table"),
        "{}",
        out.stderr
    );
    let rr: serde_json::Value = serde_json::from_str(&p.read("target/run_results.json")).unwrap();
    assert_eq!(
        rr["results"][0]["unique_id"],
        "operation.shop.shop-on-run-start-0"
    );
    assert_eq!(rr["results"][0]["status"], "error");
    let statuses: Vec<&str> = rr["results"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["skipped"; 4]);
    // The tables of the first build are still there.
    assert_eq!(
        p.query("select count(*) as n from {{ ref('customers') }}")
            .len(),
        1
    );
}

/// The row `tests/fixtures/xdb_shop/models/cross_db.sql` builds on every target.
pub fn cross_db_row() -> serde_json::Value {
    json!({
        "s": "abc", "f": 1.5, "b": 2, "c": "abc", "h": "9dd4e461268c8034f5c8564e155c67a6",
        "sc": 12, "sp": "b", "dt": "2024-03-01T00:00:00", "da": "2024-03-18T10:20:00",
        "dm": "2024-01-31T00:00:00", "dd_day": 1, "dd_hour": 1, "dd_month": 3, "dd_quarter": 1,
        "dd_year": 1, "bool_text": "true", "escaped": "it's", "lit": "lit", "agg": "y|x", "agg_two": "a|b",
        "any_v": 7, "any_big": true, "has_now": true, "has_now_compat": true, "len": 4, "dd_week": 1, "dd_weeks": 2, "pos": 3, "replaced": "a+b",
        "right_two": "cd", "casted": 7, "month_end": "2024-02-29",
    })
}

#[test]
fn cross_database_macros() {
    let p = Project::fixture("xdb_shop");
    p.rsdbt(&["run"]).expect(0);
    let rows = p.query("select * from {{ ref('cross_db') }}");
    assert_eq!(rows, [cross_db_row()]);
    let out = p
        .rsdbt(&[
            "show",
            "--inline",
            "select {{ dbt.datediff('a', 'b', 'fortnight') }}",
        ])
        .expect(2);
    assert!(
        out.stderr
            .contains("datediff: unsupported datepart 'fortnight'"),
        "{}",
        out.stderr
    );
}

/// The row `tests/fixtures/introspect_shop/models/wide.sql` builds; the adapter's name and
/// its names for the seed's column types differ by target.
pub fn introspection_row(adapter_type: &str, colors_types: &str) -> serde_json::Value {
    json!({
        "c_red": "red", "c_green": "green", "c_blue": "blue", "colors_type": "table",
        "missing": "none", "colors_columns": "id,name", "n_colors": 3, "created": "s.t",
        "adapter_type": adapter_type, "colors_types": colors_types, "colors_kinds": "id:n,name:s",
    })
}

#[test]
fn introspection_in_jinja() {
    let p = Project::fixture("introspect_shop");
    p.rsdbt(&["build"]).expect(0);
    let rows = p.query("select * from {{ ref('wide') }}");
    assert_eq!(rows, [introspection_row("datafusion", "bigint,varchar")]);
    // `compile` answers the macros' queries too.
    p.rsdbt(&["compile", "-s", "wide"]).expect(0);
    let sql = p.read("target/compiled/introspect_shop/models/wide.sql");
    assert!(sql.contains("'red' as \"c_red\""), "{sql}");
}

/// What the jaffle_shop-shaped fixture's marts hold, on every target: the customers, and
/// order 7 (two payment methods) from the pivot.
pub fn jaffle_marts(p: &Project) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    (
        p.query("select * from {{ ref('customers') }} order by customer_id"),
        p.query("select * from {{ ref('orders') }} where order_id = 7"),
    )
}

pub fn jaffle_expected() -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let c = |id: i64, first: &str, last: &str, f: &str, r: &str, n: i64, v: f64| {
        let (f, r, v) = if n == 0 {
            (json!(null), json!(null), json!(null))
        } else {
            (json!(f), json!(r), json!(v))
        };
        json!({"customer_id": id, "first_name": first, "last_name": last, "first_order": f,
               "most_recent_order": r, "number_of_orders": n, "customer_lifetime_value": v})
    };
    (
        vec![
            c(1, "Ada", "L.", "2024-01-02", "2024-02-01", 3, 63.0),
            c(2, "Brendan", "E.", "2024-01-11", "2024-01-11", 1, 7.0),
            c(3, "Grace", "H.", "2024-01-04", "2024-02-14", 3, 31.5),
            c(4, "Linus", "T.", "2024-02-03", "2024-02-03", 1, 9.0),
            c(5, "Barbara", "L.", "2024-01-15", "2024-02-08", 2, 32.5),
            c(6, "Ken", "T.", "", "", 0, 0.0),
        ],
        vec![json!({
            "order_id": 7, "customer_id": 1, "order_date": "2024-02-01", "status": "completed",
            "credit_card_amount": 26.0, "coupon_amount": 0.0, "bank_transfer_amount": 0.0,
            "gift_card_amount": 4.0, "amount": 30.0,
        })],
    )
}

#[test]
fn jaffle_shop_shaped_project() {
    let p = Project::fixture("jaffle_like");
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(
        out.stdout
            .contains("Done. PASS=16 WARN=0 ERROR=0 SKIP=0 NO-OP=0 TOTAL=16"),
        "{}",
        out.stdout
    );
    assert_eq!(jaffle_marts(&p), jaffle_expected());
}

#[test]
fn run_operation_calls_a_macro_with_args() {
    let p = Project::fixture("introspect_shop");
    p.rsdbt(&["seed"]).expect(0);
    let out = p
        .rsdbt(&[
            "run-operation",
            "count_rows",
            "--args",
            "{model_name: colors}",
        ])
        .expect(0);
    assert!(out.stdout.contains("rows in colors: 3"), "{}", out.stdout);
    let rr: serde_json::Value = serde_json::from_str(&p.read("target/run_results.json")).unwrap();
    assert_eq!(
        rr["results"][0]["unique_id"],
        "operation.introspect_shop.count_rows"
    );
    assert_eq!(rr["results"][0]["status"], "success");
    let out = p
        .rsdbt(&[
            "run-operation",
            "count_rows",
            "--args",
            "{model_name: colors, minimum: 5}",
        ])
        .expect(1);
    assert!(
        out.stderr.contains("colors has only 3 rows"),
        "{}",
        out.stderr
    );
    let out = p.rsdbt(&["run-operation", "nope"]).expect(1);
    assert!(
        out.stderr.contains("no macro named 'nope'"),
        "{}",
        out.stderr
    );
}

/// Packages in dbt_packages/: their macros are callable by name and as `<package>.<macro>`,
/// `adapter.dispatch` finds their implementations, and their generic tests run; their models
/// are not loaded yet (a warning says so).
#[test]
fn installed_package_macros_and_tests() {
    let p = Project::fixture("pkg_shop");
    // `deps` links the local package into dbt_packages/, next to the one already there.
    let out = p.rsdbt(&["deps"]).expect(0);
    assert!(
        out.stdout
            .contains("Installed from vendor/toolkit: toolkit"),
        "{}",
        out.stdout
    );
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(
        out.stdout
            .contains("PASS toolkit_is_positive_payments_amount"),
        "{}",
        out.stdout
    );
    // The package's model is built like the project's; the root project's folder config
    // beats the package's own.
    assert_eq!(
        p.query("select y from {{ ref('summary') }}"),
        vec![json!({"y": 2})]
    );
    // Its vars: the root project's for the package beat the package's own defaults, which
    // may be scoped to the package (`vars: {reports: {...}}`).
    assert_eq!(
        p.query("select shift, label, scoped from {{ ref('reports', 'r') }}"),
        vec![json!({"shift": 100, "label": "from the package", "scoped": 0})]
    );
    assert_eq!(
        p.query("select * from {{ ref('payments') }} order by id"),
        vec![
            json!({"id": 1, "amount": 12.5, "amount_again": 12.5}),
            json!({"id": 2, "amount": 0.99, "amount_again": 0.99}),
        ]
    );
    let m: serde_json::Value = serde_json::from_str(&p.read("target/manifest.json")).unwrap();
    let r = &m["nodes"]["model.reports.r"];
    assert_eq!(r["package_name"], "reports");
    assert_eq!(r["original_file_path"], "models/r.sql");
    assert_eq!(r["fqn"], json!(["reports", "r"]));
    assert_eq!(r["config"]["materialized"], "table");
    assert_eq!(r["config"]["tags"], json!(["from_package"]));
    // Its property file documents it and tests it; the tests belong to the package.
    assert_eq!(r["description"], "A one-row report from the package.");
    // Its docs blocks document its columns.
    assert_eq!(
        r["columns"]["x"]["description"],
        "The report's one value, documented in the package."
    );
    assert_eq!(r["patch_path"], "reports://models/schema.yml");
    let t = m["nodes"]
        .as_object()
        .unwrap()
        .values()
        .find(|n| n["name"] == "not_null_r_x")
        .expect("the package's not_null test");
    assert!(
        t["unique_id"]
            .as_str()
            .unwrap()
            .starts_with("test.reports.not_null_r_x."),
        "{t}"
    );
    assert_eq!(t["package_name"], "reports");
    assert_eq!(t["fqn"], json!(["reports", "not_null_r_x"]));
    assert!(out.stdout.contains("PASS unique_r_x"), "{}", out.stdout);
    // Its seeds load from the package's folder.
    assert_eq!(
        m["nodes"]["seed.reports.report_codes"]["original_file_path"],
        "seeds/report_codes.csv"
    );
    assert_eq!(
        p.query("select label from {{ ref('report_codes') }} order by code"),
        vec![json!({"label": "alpha"}), json!({"label": "beta"})]
    );
    // So do its sources, and their tests.
    let s = &m["sources"]["source.reports.raw.payments_raw"];
    assert_eq!(s["package_name"], "reports");
    assert_eq!(s["original_file_path"], "models/schema.yml");
    let out = p.rsdbt(&["test", "-s", "source:raw"]).expect(0);
    assert!(
        out.stdout
            .contains("PASS source_not_null_raw_payments_raw_id"),
        "{}",
        out.stdout
    );
    assert_eq!(
        m["nodes"]["model.pkg_shop.summary"]["depends_on"]["nodes"],
        json!(["model.reports.r"])
    );
    // A project macro of the same name does not replace the package's dispatched one ...
    p.write(
        "macros/override.sql",
        "{% macro default__cents_to_dollars(column) %}(cast({{ column }} as double) / 100 + 1000){% endmacro %}",
    );
    let amounts = |p: &Project| {
        p.rsdbt(&["run", "-s", "payments"]).expect(0);
        p.query("select amount from {{ ref('payments') }} order by id")
    };
    assert_eq!(
        amounts(&p),
        vec![json!({"amount": 12.5}), json!({"amount": 0.99})]
    );
    // ... unless the project's `dispatch:` search order puts the project first.
    p.append(
        "dbt_project.yml",
        "dispatch:\n  - macro_namespace: toolkit\n    search_order: [pkg_shop, toolkit]\n",
    );
    assert_eq!(
        amounts(&p),
        vec![json!({"amount": 1012.5}), json!({"amount": 1000.99})]
    );
    // As dbt: a node depends on the macros it calls; those record what they call.
    assert_eq!(
        m["nodes"]["model.pkg_shop.payments"]["depends_on"]["macros"],
        json!(["macro.toolkit.cents_to_dollars"])
    );
    assert_eq!(
        m["macros"]["macro.toolkit.default__cents_to_dollars"]["depends_on"]["macros"],
        json!(["macro.dbt.type_float"])
    );
}

#[test]
fn deps_reports_packages_it_cannot_download() {
    let p = Project::fixture("pkg_shop");
    p.write(
        "packages.yml",
        "packages:\n  - local: vendor/toolkit\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n",
    );
    let out = p.rsdbt(&["deps"]).expect(1);
    assert!(
        out.stderr.contains(
            "cannot install hub package dbt-labs/dbt_utils: rsdbt does not download from the dbt hub"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("packages.yml:3"), "{}", out.stderr);
    // Once the folder is there (put by `dbt deps`, say), it counts as installed.
    std::fs::create_dir_all(p.path().join("dbt_packages/dbt_utils")).unwrap();
    p.rsdbt(&["deps"]).expect(0);
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Hub packages from a DBT_PACKAGE_HUB_URL folder, git packages at a revision and in a
/// subdirectory, and the packages those packages need, installed under their project names;
/// package-lock.yml records what was installed.
#[test]
fn deps_installs_hub_git_and_transitive_packages() {
    let p = Project::fixture("pkg_shop");
    let hub = tempfile::tempdir().unwrap();
    // A hub package that itself needs another hub package.
    for (name, needs) in [
        ("shared_utils", Some("acme/base_macros")),
        ("base_macros", None),
    ] {
        let dir = hub.path().join(name);
        std::fs::create_dir_all(dir.join("macros")).unwrap();
        std::fs::write(
            dir.join("dbt_project.yml"),
            format!("name: {name}\nversion: '2.1.0'\nconfig-version: 2\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("macros/{name}.sql")),
            format!("{{% macro {name}_hello() %}}'{name}'{{% endmacro %}}\n"),
        )
        .unwrap();
        if let Some(n) = needs {
            std::fs::write(
                dir.join("packages.yml"),
                format!("packages:\n  - package: {n}\n    version: [\">=1.0.0\"]\n"),
            )
            .unwrap();
        }
    }
    // A git repository whose package lives in a subdirectory; the lock pins a commit.
    let repo = tempfile::tempdir().unwrap();
    let pkg = repo.path().join("pkg");
    std::fs::create_dir_all(pkg.join("macros")).unwrap();
    std::fs::write(
        pkg.join("dbt_project.yml"),
        "name: git_pkg\nversion: '1.0.0'\nconfig-version: 2\n",
    )
    .unwrap();
    std::fs::write(
        pkg.join("macros/m.sql"),
        "{% macro git_hello() %}'v1'{% endmacro %}\n",
    )
    .unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "v1"]);
    git(repo.path(), &["tag", "1.0.0"]);
    let v1 = git(repo.path(), &["rev-parse", "HEAD"]);
    std::fs::write(
        pkg.join("macros/m.sql"),
        "{% macro git_hello() %}'v2'{% endmacro %}\n",
    )
    .unwrap();
    git(repo.path(), &["commit", "-q", "-am", "v2"]);
    p.write(
        "packages.yml",
        &format!(
            "packages:\n  - local: vendor/toolkit\n  - package: acme/shared_utils\n    version: 2.1.0\n  - git: \"{}\"\n    revision: 1.0.0\n    subdirectory: pkg\n",
            repo.path().display()
        ),
    );
    let hub_url = hub.path().to_string_lossy().into_owned();
    p.rsdbt_env(&["deps"], &[("DBT_PACKAGE_HUB_URL", &hub_url)])
        .expect(0);
    for name in ["toolkit", "shared_utils", "base_macros", "git_pkg"] {
        assert!(
            p.path()
                .join("dbt_packages")
                .join(name)
                .join("dbt_project.yml")
                .is_file(),
            "{name} not installed"
        );
    }
    let lock = p.read("package-lock.yml");
    assert!(lock.contains("- local: vendor/toolkit"), "{lock}");
    assert!(lock.contains("package: acme/shared_utils"), "{lock}");
    assert!(lock.contains("package: acme/base_macros"), "{lock}");
    assert!(lock.contains(&format!("revision: {v1}")), "{lock}");
    assert!(lock.contains("subdirectory: pkg"), "{lock}");
    p.write(
        "models/hello.sql",
        "select {{ shared_utils_hello() }} as a, {{ base_macros_hello() }} as b, {{ git_pkg.git_hello() }} as c\n",
    );
    p.rsdbt(&["run", "-s", "hello"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('hello') }}"),
        vec![json!({"a": "shared_utils", "b": "base_macros", "c": "v1"})]
    );
    // A revision that does not exist names the package and the revision.
    p.write(
        "packages.yml",
        &format!(
            "packages:\n  - git: \"{}\"\n    revision: 9.9.9\n",
            repo.path().display()
        ),
    );
    let out = p.rsdbt(&["deps"]).expect(1);
    assert!(out.stderr.contains("revision 9.9.9"), "{}", out.stderr);
}

/// A table model whose columns change (one dropped, one renamed) rebuilds in place; readers
/// see the new columns only.
#[test]
fn a_table_whose_columns_change_rebuilds() {
    let p = Project::fixture("lake_shop");
    p.rsdbt(&["run"]).expect(0);
    p.write(
        "models/customer_orders.sql",
        "{{ config(materialized='table') }}\nselect name as customer from {{ source('files', 'customers') }}\n",
    );
    p.rsdbt(&["run"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('customer_orders') }} order by customer"),
        vec![
            serde_json::json!({"customer": "Ada"}),
            serde_json::json!({"customer": "Grace"}),
            serde_json::json!({"customer": "Linus"})
        ]
    );
}

/// Folder configs in the project file are rendered per node with `target`, as dbt does.
#[test]
fn folder_configs_render_jinja_with_the_target() {
    let p = Project::fixture("lake_shop");
    p.write(
        "project.yml",
        "name: lake_shop\nprofile: fixture\nmodels:\n  lake_shop:\n    +alias: \"{{ 'co_' ~ target.name }}\"\n    +enabled: \"{{ target.name in ['dev', 'prod'] }}\"\n",
    );
    let out = p
        .rsdbt(&[
            "ls",
            "--resource-type",
            "model",
            "--output",
            "json",
            "--output-keys",
            "name config",
        ])
        .expect(0);
    let line: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["config"]["alias"], "co_dev", "{}", out.stdout);
    let profile = p
        .read("profiles.yml")
        .replace("target: dev", "target: other")
        .replace("    dev:", "    other:");
    p.write("profiles.yml", &profile);
    let out = p.rsdbt(&["ls", "--resource-type", "model"]).expect(0);
    assert!(
        !out.stdout.contains("customer_orders"),
        "disabled on this target: {}",
        out.stdout
    );
}

/// Python's mutable lists and dicts in macros, the way dbt_utils writes them
/// (`generate_surrogate_key`, `union_relations`): `set x = []` then `x.append(...)` inside a
/// loop, `d.update({k: []})` then `d[k].append(...)`, `pop`, `setdefault`, `items()`.
#[test]
fn macros_mutate_lists_and_dicts_as_in_python() {
    let p = Project::fixture("check_shop");
    p.write(
        "macros/keys.sql",
        "{% macro key_of(cols) -%}\n\
         {%- set fields = [] -%}\n\
         {%- for c in cols -%}\n\
           {%- do fields.append(\"coalesce(cast(\" ~ c ~ \" as varchar), '')\") -%}\n\
           {%- if not loop.last %}{% do fields.append(\"'-'\") %}{% endif -%}\n\
         {%- endfor -%}\n\
         concat({{ fields | join(', ') }})\n\
         {%- endmacro %}\n\
         {% macro grouped() -%}\n\
         {%- set by_kind = {} -%}\n\
         {%- for kind, col in [('id', 'order_id'), ('id', 'customer_id'), ('money', 'amount')] -%}\n\
           {%- if kind not in by_kind %}{% do by_kind.update({kind: []}) %}{% endif -%}\n\
           {%- do by_kind[kind].append(col) -%}\n\
         {%- endfor -%}\n\
         {%- do by_kind.setdefault('time', []).append('ordered_at') -%}\n\
         {%- set dropped = by_kind.pop('money') -%}\n\
         {%- for kind, cols in by_kind.items() %}{{ kind }}={{ cols | join('+') }};{% endfor %}dropped={{ dropped | length }}\n\
         {%- endmacro %}\n",
    );
    p.write(
        "models/keyed.sql",
        "select {{ key_of(['order_id', 'customer_id']) }} as k, '{{ grouped() }}' as g from {{ ref('orders') }}\n",
    );
    p.rsdbt(&["build", "-s", "+keyed"]).expect(0);
    assert_eq!(
        p.query("select k, g from {{ ref('keyed') }} order by k"),
        vec![
            serde_json::json!({"k": "1-10", "g": "id=order_id+customer_id;time=ordered_at;dropped=1"}),
            serde_json::json!({"k": "2-11", "g": "id=order_id+customer_id;time=ordered_at;dropped=1"}),
        ]
    );
}

/// adapter.dispatch on the embedded target: `datafusion__`, then packages' `postgres__` versions
/// (its SQL is PostgreSQL's in most things), then `default__`.
#[test]
fn dispatch_prefers_postgres_versions_over_default_on_the_embedded_target() {
    let p = Project::fixture("check_shop");
    p.write(
        "macros/which.sql",
        "{% macro which() %}{{ return(adapter.dispatch('which')()) }}{% endmacro %}\n\
         {% macro default__which() %}{{ return('default') }}{% endmacro %}\n\
         {% macro postgres__which() %}{{ return('postgres') }}{% endmacro %}\n",
    );
    p.write("models/w.sql", "select '{{ which() }}' as w\n");
    p.rsdbt(&["run", "-s", "w"]).expect(0);
    assert_eq!(
        p.query("select w from {{ ref('w') }}"),
        vec![serde_json::json!({"w": "postgres"})]
    );
    p.append(
        "macros/which.sql",
        "{% macro datafusion__which() %}{{ return('datafusion') }}{% endmacro %}\n",
    );
    p.rsdbt(&["run", "-s", "w"]).expect(0);
    assert_eq!(
        p.query("select w from {{ ref('w') }}"),
        vec![serde_json::json!({"w": "datafusion"})]
    );
}

/// What dbt packages lean on: `return()` ends the macro (`{% if not execute %}{{ return('') }}`
/// guards the introspection after it), `modules.re`, `flags.WHICH`, relations that are
/// mappings with `metadata.type` (dbt_utils' `_is_relation`), `load_relation`, `dbt.except()`.
#[test]
fn package_idioms() {
    let p = Project::fixture("check_shop");
    p.write(
        "macros/idioms.sql",
        "{% macro guarded(rel) %}\n\
           {%- if not execute %}{{ return('parsing') }}{% endif -%}\n\
           {%- if not (rel is mapping and rel.get('metadata', {}).get('type', '').endswith('Relation')) -%}\n\
             {{ exceptions.raise_compiler_error('not a relation: ' ~ rel) }}\n\
           {%- endif -%}\n\
           {%- set cols = adapter.get_columns_in_relation(rel) -%}\n\
           {%- if cols | length == 0 %}{{ exceptions.raise_compiler_error('no columns') }}{% endif -%}\n\
           {{ return(cols | length) }}\n\
           {{ exceptions.raise_compiler_error('after return') }}\n\
         {% endmacro %}\n",
    );
    p.write(
        "models/idioms.sql",
        "select {{ guarded(ref('orders')) }} as n_cols,\n\
         '{{ modules.re.sub('[ -]+', '_', 'a - b  c') }}' as slug,\n\
         '{{ modules.re.sub('(\\\\w+)@(\\\\w+)', '\\\\2 at \\\\1', 'me@home') }}' as swapped,\n\
         '{{ flags.WHICH }}' as which, mod(-7, 3) as m, mod(7.5, 2) as mf,\n\
         {{ (load_relation(ref('orders')) is not none) | lower }} as exists_,\n\
         {{ (load_relation(api.Relation.create(schema='main', identifier='nope')) is none) | lower }} as missing\n\
         from (select 1 as x {{ dbt.except() }} select 2 as x) t\n",
    );
    p.rsdbt(&["build", "-s", "+idioms"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('idioms') }}"),
        vec![serde_json::json!({
            "n_cols": 4, "slug": "a_b_c", "swapped": "home at me", "which": "build", "m": -1, "mf": 1.5,
            "exists_": true, "missing": true
        })]
    );
}

/// Macros that hold a relation or a column in a dict keep the object (dbt_utils'
/// `union_relations` stores columns in `column_superset`), and `dbt.dateadd` takes a date
/// written as a string.
#[test]
fn containers_keep_objects_and_dateadd_takes_string_dates() {
    let p = Project::fixture("check_shop");
    p.write(
        "macros/cols.sql",
        "{% macro typed_cols(rel) %}\n\
           {%- set by_name = {} -%}\n\
           {%- for col in adapter.get_columns_in_relation(rel) %}{% do by_name.update({col.column: col}) %}{% endfor -%}\n\
           {%- for name in by_name.keys() %}{{ by_name[name].quoted }} {{ by_name[name].data_type }} {{ by_name[name].string_size() if by_name[name].is_string() else '' }};{% endfor -%}\n\
         {% endmacro %}\n",
    );
    p.write(
        "models/cols.sql",
        "select '{{ typed_cols(ref('customers')) }}' as cols, {{ dbt.dateadd('day', 2, \"'2024-01-30'\") }} as later\n",
    );
    p.rsdbt(&["build", "-s", "+cols"]).expect(0);
    let row = &p.query("select cols, cast(later as varchar) as later from {{ ref('cols') }}")[0];
    assert_eq!(row["later"], "2024-02-01T00:00:00");
    let cols = row["cols"].as_str().unwrap();
    assert!(
        cols.contains("\"customer_id\" bigint ;") && cols.contains("\"name\" varchar 256;"),
        "{cols}"
    );
}

/// Model versions as dbt: each version's file (`<name>_v<v>.sql` or `defined_in:`) is a node
/// `model.<project>.<name>.v<v>` built as `<name>_v<v>`; `ref('m')` is the latest version
/// (`latest_version:`, else the highest), `ref('m', v=1)` a given one; `-s m` selects all.
#[test]
fn model_versions() {
    let p = Project::fixture("check_shop");
    p.write("models/dim_v1.sql", "select 1 as v\n");
    p.write("models/dim_v2.sql", "select 2 as v\n");
    p.write("models/dim_next.sql", "select 3 as v\n");
    p.write(
        "models/dim.yml",
        "models:\n  - name: dim\n    latest_version: 2\n    versions:\n      - v: 1\n      - v: 2\n      - v: 3\n        defined_in: dim_next\n        config:\n          alias: dim_preview\n",
    );
    p.write(
        "models/uses.sql",
        "select (select v from {{ ref('dim') }}) as latest, (select v from {{ ref('dim', v=1) }}) as first, (select v from {{ ref('dim', version=3) }}) as preview\n",
    );
    let out = p.rsdbt(&["run", "-s", "dim", "uses"]).expect(0);
    assert!(out.stdout.contains("PASS=4"), "{}", out.stdout);
    assert_eq!(
        p.query("select * from {{ ref('uses') }}"),
        vec![json!({"latest": 2, "first": 1, "preview": 3})]
    );
    let m = manifest(&p);
    let v1 = &m["nodes"]["model.check_shop.dim.v1"];
    assert_eq!(v1["alias"], "dim_v1");
    assert_eq!(v1["version"], "1");
    assert_eq!(v1["latest_version"], "2");
    assert_eq!(
        m["nodes"]["model.check_shop.dim.v3"]["alias"],
        "dim_preview"
    );
    let deps = m["nodes"]["model.check_shop.uses"]["depends_on"]["nodes"].clone();
    for v in ["v1", "v2", "v3"] {
        assert!(
            deps.to_string()
                .contains(&format!("model.check_shop.dim.{v}")),
            "{deps}"
        );
    }
}

/// Conventions of package projects (dbt-project-evaluator's): a var written as Jinja is
/// rendered where it is read; `var(name, default=...)`; `config()` in a generic test's
/// definition applies even when its arguments hold no Jinja; a test's `enabled` as Jinja; a
/// header-only seed is an empty table of text columns; a model's `time_spine:` reaches the
/// manifest.
#[test]
fn package_project_conventions() {
    let p = Project::fixture("check_shop");
    p.append(
        "project.yml",
        "vars:\n  batch: \"{{ 300 if target.type == 'bigquery' else 10000 }}\"\n",
    );
    p.write(
        "macros/small.sql",
        "{% test is_small(model) %}\n{{ config (severity = 'warn', fail_calc = \"n\") }}\nselect count(*) as n from {{ model }}\n{% endtest %}\n",
    );
    p.write("seeds/empty.csv", "a,b");
    // Times without seconds, inferred or declared timestamps; a declared column the file
    // lacks is ignored, as in dbt.
    p.write(
        "seeds/times.csv",
        "t,u\n2021-01-01 00:00,2021-01-01 01:00\n",
    );
    p.write(
        "seeds/times.yml",
        "seeds:\n  - name: times\n    config:\n      column_types:\n        u: timestamp\n        canceled_at: timestamp\n",
    );
    p.write(
        "models/m.sql",
        "select {{ var('batch') | int }} as batch, {{ var('missing', default=5) }} as d\n",
    );
    p.write(
        "models/m.yml",
        "models:\n  - name: m\n    time_spine:\n      standard_granularity_column: batch\n    columns:\n      - name: batch\n        constraints:\n          - type: not_null\n    data_tests:\n      - is_small\n      - is_small:\n          name: never_here\n          config:\n            enabled: \"{{ target.name == 'prod' }}\"\n",
    );
    let out = p.rsdbt(&["build", "-s", "m", "empty", "times"]).expect(0);
    assert_eq!(
        p.query("select cast(t as varchar) as t, cast(u as varchar) as u from {{ ref('times') }}"),
        vec![json!({"t": "2021-01-01T00:00:00", "u": "2021-01-01T01:00:00"})]
    );
    assert!(out.stdout.contains("WARN 1 is_small_m"), "{}", out.stdout);
    assert!(!out.stdout.contains("never_here"), "{}", out.stdout);
    assert_eq!(
        p.query("select * from {{ ref('m') }}"),
        vec![json!({"batch": 10000, "d": 5})]
    );
    assert_eq!(
        p.query(
            "select (select count(*) from {{ ref('empty') }}) as n, arrow_typeof(e.a) as t \
             from (select 1 as one) o left join {{ ref('empty') }} e on true"
        ),
        // Columns without values are integers, as dbt's type inference makes them.
        vec![json!({"n": 0, "t": "Int64"})]
    );
    let m = manifest(&p);
    assert_eq!(
        m["nodes"]["model.check_shop.m"]["time_spine"],
        json!({"standard_granularity_column": "batch"})
    );
    assert!(m["disabled"].to_string().contains("never_here"));
    assert_eq!(
        m["nodes"]["model.check_shop.m"]["columns"]["batch"]["constraints"],
        json!([{"type": "not_null"}])
    );
}

/// A unit test's `overrides: macros:` may name a package's macro with its package
/// (`toolkit.cents_to_dollars`), as dbt-audit-helper's unit tests do.
#[test]
fn unit_test_overrides_name_package_macros() {
    let p = Project::fixture("pkg_shop");
    p.rsdbt(&["deps"]).expect(0);
    p.write(
        "models/unit_tests.yml",
        "unit_tests:\n  - name: dollars_mocked\n    model: payments\n    overrides:\n      macros:\n        toolkit.cents_to_dollars: \"42\"\n    given:\n      - input: ref('payments_raw')\n        rows:\n          - {id: 1, amount_cents: 1250}\n    expect:\n      rows:\n        - {id: 1, amount: 42, amount_again: 42}\n",
    );
    let out = p.rsdbt(&["test", "-s", "test_type:unit"]).expect(0);
    assert!(
        out.stdout.contains("PASS payments::dollars_mocked"),
        "{}",
        out.stdout
    );
}

/// dbt parses an empty (or whitespace-only) model or singular test file — `ls` lists it — and
/// leaves it out of every other command: nothing runs, compiles or fails for it.
#[test]
fn empty_files_are_parsed_but_never_run() {
    let p = Project::fixture("micro_shop");
    p.write(
        "models/daily_events.sql",
        "select count(*) as n from {{ ref('events') }}\n",
    );
    p.write("models/placeholder.sql", "");
    p.write("models/blank.sql", "  \n\n");
    p.write("tests/todo.sql", "\n");
    let ls = p
        .rsdbt(&["ls", "--resource-type", "model", "test"])
        .expect(0);
    for name in [
        "micro_shop.placeholder",
        "micro_shop.blank",
        "micro_shop.todo",
    ] {
        assert!(ls.stdout.contains(name), "{name}: {}", ls.stdout);
    }
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(
        !out.stdout.contains("placeholder") && !out.stdout.contains("blank"),
        "{}",
        out.stdout
    );
    let results: serde_json::Value =
        serde_json::from_str(&p.read("target/run_results.json")).unwrap();
    let ran: Vec<&str> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["unique_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ran,
        vec!["seed.micro_shop.events", "model.micro_shop.daily_events"]
    );
    p.rsdbt(&["compile"]).expect(0);
    assert!(
        !p.path()
            .join("target/compiled/micro_shop/models/placeholder.sql")
            .exists()
    );
    assert!(
        p.path()
            .join("target/compiled/micro_shop/models/daily_events.sql")
            .exists()
    );
}

/// dbt's naming macros are there to call: an override of `generate_schema_name` that falls
/// back on `default__generate_schema_name` (dbt's documented pattern), a model or test asking
/// what schema a name gets (dbt-codegen's tests), and `api.Column.translate_type`
/// (dbt_artifacts).
#[test]
fn naming_macros_and_column_types_are_callable() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/named.sql",
        "select '{{ generate_schema_name('raw') }}' as s, '{{ generate_schema_name(none) }}' as d,\n\
           '{{ generate_alias_name(none, model) }}' as a, '{{ generate_database_name(none) }}' = '{{ target.database }}' as same_db,\n\
           '{{ api.Column.translate_type('string') }}' as t, '{{ api.Column.translate_type('varchar(10)') }}' as v\n",
    );
    p.rsdbt(&["run", "-s", "named"]).expect(0);
    assert_eq!(
        p.query("select * from {{ ref('named') }}"),
        vec![
            json!({"s": "main_raw", "d": "main", "a": "named", "same_db": true, "t": "text", "v": "varchar(10)"})
        ]
    );
    // A project override keeping one custom schema as written and the default for others.
    p.write(
        "macros/naming.sql",
        "{% macro generate_schema_name(custom_schema_name, node) -%}\n\
         {%- if custom_schema_name == 'keep' -%}{{ custom_schema_name }}\n\
         {%- else -%}{{ default__generate_schema_name(custom_schema_name, node) }}{%- endif -%}\n\
         {%- endmacro %}\n",
    );
    p.write(
        "models/kept.sql",
        "{{ config(schema='keep') }}\nselect 1 as one\n",
    );
    p.write(
        "models/other.sql",
        "{{ config(schema='other') }}\nselect 2 as two\n",
    );
    p.rsdbt(&["parse"]).expect(0);
    let m: serde_json::Value = serde_json::from_str(&p.read("target/manifest.json")).unwrap();
    let schema = |n: &str| {
        m["nodes"][format!(
            "model.{}.{n}",
            m["metadata"]["project_name"].as_str().unwrap()
        )]["schema"]
            .clone()
    };
    assert_eq!(schema("kept"), "keep");
    assert_eq!(schema("other"), "main_other");
}

/// What Elementary leans on: a package's own `run_query` macro calling `dbt.run_query` (the
/// `dbt` namespace is dbt's, not shadowed by a package), a package shipping a
/// `{% materialization %}` (loaded, not run), `dbt.type_timestamp or ...` (a macro is truthy),
/// `builtins.ref.config` with the packages' versions, and `make_temp_relation`.
#[test]
fn package_macros_that_wrap_dbts() {
    let p = Project::fixture("check_shop");
    p.write(
        "dbt_packages/pkgx/dbt_project.yml",
        "name: pkgx\nversion: '1.2.3'\nconfig-version: 2\n",
    );
    p.write(
        "dbt_packages/pkgx/macros/run_query.sql",
        "{% macro run_query(query) %}\n\
         {% do return(dbt.run_query(query)) %}\n\
         {% endmacro %}\n\
         {% materialization pkgx_special, default %}\n\
         {% call statement('main') %}select 1{% endcall %}\n\
         {{ return({'relations': []}) }}\n\
         {% endmaterialization %}\n",
    );
    p.write(
        "models/wrapped.sql",
        "{% set n = pkgx.run_query('select 7 as n').columns[0].values()[0] if execute else 0 %}\n\
         select {{ n }} as n,\n\
           '{{ builtins.ref.config.dependencies['pkgx'].version }}' as pkg_version,\n\
           '{{ builtins.ref.config.project_name }}' as project,\n\
           '{{ (dbt.type_timestamp or dbt.no_such_macro)() }}' as ts_type,\n\
           '{{ make_temp_relation(this).identifier }}' as tmp\n",
    );
    p.rsdbt(&["run", "-s", "wrapped"]).expect(0);
    let rows = p.query("select * from {{ ref('wrapped') }}");
    assert_eq!(rows[0]["n"], 7);
    assert_eq!(rows[0]["pkg_version"], "1.2.3");
    assert_eq!(rows[0]["ts_type"], "timestamp");
    assert_eq!(rows[0]["tmp"], "wrapped__dbt_tmp");
    assert!(
        rows[0]["project"].as_str().is_some_and(|s| !s.is_empty()),
        "{rows:?}"
    );
}

/// Installed packages' `on-run-start` / `on-run-end` hooks run as dbt runs them: the packages'
/// first (by package name), then the project's (Elementary uploads its artifacts this way).
#[test]
fn package_hooks_run_before_the_projects() {
    let p = Project::fixture("pkg_shop");
    p.rsdbt(&["deps"]).expect(0);
    p.append(
        "dbt_packages/reports/dbt_project.yml",
        "on-run-end:\n  - \"{{ log('package end, shift ' ~ var('report_shift'), info=True) }}\"\n",
    );
    p.append(
        "dbt_project.yml",
        "on-run-end: \"{{ log('project end', info=True) }}\"\n",
    );
    let out = p.rsdbt(&["build"]).expect(0);
    let at = |needle: &str| {
        out.stdout
            .find(needle)
            .unwrap_or_else(|| panic!("{needle}: {}", out.stdout))
    };
    assert!(
        out.stdout.contains("Running 2 on-run-end hooks"),
        "{}",
        out.stdout
    );
    // The package's hook sees the vars scoped to the package (the project's override here).
    assert!(at("1 of 2 START hook: reports.on-run-end.0") < at("package end, shift 100"));
    assert!(at("package end") < at("2 of 2 START hook: pkg_shop.on-run-end.0"));
    assert!(at("2 of 2 START hook: pkg_shop.on-run-end.0") < at("project end"));
    let rr: serde_json::Value = serde_json::from_str(&p.read("target/run_results.json")).unwrap();
    let ids: Vec<&str> = rr["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["unique_id"].as_str())
        .filter(|id| id.starts_with("operation."))
        .collect();
    assert_eq!(
        ids,
        [
            "operation.reports.reports-on-run-end-0",
            "operation.pkg_shop.pkg_shop-on-run-end-0"
        ]
    );
}

/// What Fivetran's Shopify package needed (504 of 504 nodes): seeds saved by Excel (a
/// byte-order mark, times with a trailing blank, a column without values, which dbt loads as
/// an integer), PostgreSQL's JSON operators on text, `file_format: parquet` beside a strategy
/// only Delta runs, and staging models reading the columns of a relation built in the same
/// run (static analysis does not judge SQL made before that relation exists).
#[test]
fn fivetran_shopify_patterns() {
    let p = Project::fixture("ok_shop");
    p.write(
        "seeds/raw_orders.csv",
        "\u{feff}id,created_at,price_set,unused\n1,2020-09-11 13:26:15.000 ,\"{\"\"shop_money\"\":{\"\"amount\"\":\"\"4.5\"\"}}\",\n2,2020-09-12 10:00:00.000 ,\"{\"\"shop_money\"\":{\"\"amount\"\":\"\"2\"\"}}\",\n",
    );
    p.append(
        "dbt_project.yml",
        "    raw_orders:\n      +column_types:\n        created_at: timestamp\n",
    );
    p.write(
        "models/shopify_tmp.sql",
        "select * from {{ ref('raw_orders') }}",
    );
    p.write(
        "models/shopify_orders.sql",
        "{{ config(materialized='incremental', unique_key='id', incremental_strategy='delete+insert', file_format='parquet') }}\n\
         {% set cols = adapter.get_columns_in_relation(ref('shopify_tmp')) %}\n\
         select id, created_at, coalesce(unused, 0) + 1 as unused_plus,\n\
           cast(price_set::json #>> '{shop_money,amount}' as double) as amount,\n\
           price_set::jsonb -> 'shop_money' ->> 'amount' as amount_text,\n\
           '{{ cols | map(attribute='name') | join(',') }}' as seen\n\
         from {{ ref('shopify_tmp') }}",
    );
    p.rsdbt(&["build", "-s", "+shopify_orders"]).expect(0);
    assert_eq!(
        p.query("select id, cast(created_at as varchar) as at, unused_plus, amount, amount_text, seen from {{ ref('shopify_orders') }} order by id"),
        vec![
            json!({"id": 1, "at": "2020-09-11T13:26:15", "unused_plus": 1, "amount": 4.5, "amount_text": "4.5", "seen": "id,created_at,price_set,unused"}),
            json!({"id": 2, "at": "2020-09-12T10:00:00", "unused_plus": 1, "amount": 2.0, "amount_text": "2", "seen": "id,created_at,price_set,unused"})
        ]
    );
    // PostgreSQL's lateral unnest of a column (Fivetran HubSpot's merged contacts).
    p.write(
        "models/split_ids.sql",
        "select o.id, part from {{ ref('raw_orders') }} as o\n\
         cross join unnest(string_to_array(cast(o.id as varchar) || ';x', ';')) as part",
    );
    p.rsdbt(&["run", "-s", "split_ids"]).expect(0);
    assert_eq!(
        p.query("select id, part from {{ ref('split_ids') }} order by id, part"),
        vec![
            json!({"id": 1, "part": "1"}),
            json!({"id": 1, "part": "x"}),
            json!({"id": 2, "part": "2"}),
            json!({"id": 2, "part": "x"})
        ]
    );
    // A Delta table (it has a log), so the next run's delete+insert works.
    assert!(
        p.path()
            .join("warehouse/main/shopify_orders/_delta_log")
            .is_dir()
    );
    p.rsdbt(&["run", "-s", "shopify_orders"]).expect(0);
    assert_eq!(
        p.query("select count(*) as n from {{ ref('shopify_orders') }}")[0]["n"],
        2
    );
}
