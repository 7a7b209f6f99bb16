//! Selector conformance: expressions against a project with nested folders, tags, configs,
//! sources, seeds, ephemeral/incremental/disabled models, data and unit tests, compared with
//! the sets dbt's documented semantics give (eager indirect selection unless stated).

use std::collections::BTreeSet;

use crate::harness::Project;

const REL: &str = "relationships_fct_revenue_customer_id__customer_id__ref_dim_customers_";
const SRC_TEST: &str = "source_unique_erp_orders_id";
const UNIQUE_DIM: &str = "unique_dim_customers_customer_id";
const NOT_NULL_DIM: &str = "not_null_dim_customers_customer_id";
const SINGULAR: &str = "assert_revenue_positive";
const UNIT: &str = "dim_customers_adds_country";
const STAGING: [&str; 4] = [
    "stg_orders",
    "stg_payments",
    "stg_customers",
    "stg_countries",
];
const DIM_TESTS: [&str; 4] = [UNIQUE_DIM, NOT_NULL_DIM, UNIT, REL];
const REV_TESTS: [&str; 2] = [REL, SINGULAR];

fn set<'a>(groups: &[&[&'a str]]) -> BTreeSet<&'a str> {
    groups.iter().flat_map(|g| g.iter().copied()).collect()
}

#[test]
fn selector_conformance_table() {
    let p = Project::fixture("sel_shop");
    let all_nodes = set(&[
        &STAGING,
        &[
            "raw_customers",
            "countries",
            "int_order_payments",
            "fct_revenue",
            "fct_refunds",
            "dim_customers",
            "erp.orders",
            "erp.payments",
        ],
        &DIM_TESTS,
        &[SINGULAR, SRC_TEST],
    ]);
    let upstream_of_revenue = [
        "fct_revenue",
        "int_order_payments",
        "stg_orders",
        "stg_payments",
        "erp.orders",
        "erp.payments",
        "stg_customers",
        "raw_customers",
    ];
    let cases: Vec<(Vec<&str>, BTreeSet<&str>)> = vec![
        (vec!["-s", "stg_orders"], set(&[&["stg_orders"]])),
        // fqn matches sources too: theirs is [project, yml folders..., source, table].
        (
            vec!["-s", "staging"],
            set(&[&STAGING, &["erp.orders", "erp.payments", SRC_TEST]]),
        ),
        (
            vec!["-s", "staging.erp"],
            set(&[&[
                "stg_orders",
                "stg_payments",
                "erp.orders",
                "erp.payments",
                SRC_TEST,
            ]]),
        ),
        (
            vec!["-s", "sel.staging.crm"],
            set(&[&["stg_customers", "stg_countries"]]),
        ),
        (
            vec!["-s", "marts"],
            set(&[
                &["fct_revenue", "fct_refunds", "dim_customers", SINGULAR],
                &DIM_TESTS,
            ]),
        ),
        (
            vec!["-s", "marts.finance"],
            set(&[&["fct_revenue", "fct_refunds"], &REV_TESTS]),
        ),
        (vec!["-s", "stg_*"], set(&[&STAGING])),
        (vec!["-s", "*"], all_nodes.clone()),
        (vec!["-s", "sel"], all_nodes.clone()),
        (vec!["-s", "package:sel"], all_nodes.clone()),
        (
            vec!["-s", "fqn:sel.marts.core.dim_customers"],
            set(&[&["dim_customers"], &DIM_TESTS]),
        ),
        (
            vec!["-s", "+stg_orders"],
            set(&[&["stg_orders", "erp.orders", SRC_TEST]]),
        ),
        (
            vec!["-s", "stg_orders+"],
            set(&[
                &[
                    "stg_orders",
                    "int_order_payments",
                    "fct_revenue",
                    "fct_refunds",
                    "dim_customers",
                    SINGULAR,
                ],
                &DIM_TESTS,
            ]),
        ),
        (
            vec!["-s", "1+fct_revenue"],
            set(&[
                &["fct_revenue", "int_order_payments", "stg_customers"],
                &REV_TESTS,
            ]),
        ),
        (
            vec!["-s", "fct_revenue+1"],
            set(&[&["fct_revenue", "dim_customers", SINGULAR], &DIM_TESTS]),
        ),
        (
            vec!["-s", "+int_order_payments"],
            set(&[&[
                "int_order_payments",
                "stg_orders",
                "stg_payments",
                "erp.orders",
                "erp.payments",
                SRC_TEST,
            ]]),
        ),
        (
            vec!["-s", "2+fct_refunds"],
            set(&[&[
                "fct_refunds",
                "int_order_payments",
                "stg_orders",
                "stg_payments",
            ]]),
        ),
        (
            vec!["-s", "3+fct_refunds"],
            set(&[&[
                "fct_refunds",
                "int_order_payments",
                "stg_orders",
                "stg_payments",
                "erp.orders",
                "erp.payments",
                SRC_TEST,
            ]]),
        ),
        (
            vec!["-s", "countries+"],
            set(&[&["countries", "stg_countries", "dim_customers"], &DIM_TESTS]),
        ),
        (
            vec!["-s", "@stg_customers"],
            all_nodes
                .iter()
                .copied()
                .filter(|n| *n != "fct_refunds")
                .collect(),
        ),
        (
            vec!["-s", "+fct_revenue,+dim_customers"],
            set(&[&upstream_of_revenue, &[SRC_TEST, REL, SINGULAR]]),
        ),
        (vec!["-s", "tag:staging"], set(&[&STAGING])),
        (
            vec!["-s", "tag:erp"],
            set(&[&["stg_orders", "stg_payments"]]),
        ),
        (
            vec!["-s", "tag:nightly"],
            set(&[&["fct_revenue"], &REV_TESTS]),
        ),
        (
            vec!["-s", "tag:finance"],
            set(&[&["fct_revenue", "fct_refunds"], &REV_TESTS]),
        ),
        (
            vec!["-s", "tag:raw"],
            set(&[&["erp.orders", "erp.payments", SRC_TEST]]),
        ),
        (
            vec!["-s", "tag:staging,tag:erp"],
            set(&[&["stg_orders", "stg_payments"]]),
        ),
        (
            vec!["-s", "tag:staging tag:finance"],
            set(&[&STAGING, &["fct_revenue", "fct_refunds"], &REV_TESTS]),
        ),
        (
            vec!["-s", "tag:staging", "-s", "tag:finance"],
            set(&[&STAGING, &["fct_revenue", "fct_refunds"], &REV_TESTS]),
        ),
        (
            vec!["-s", "tag:fin*"],
            set(&[&["fct_revenue", "fct_refunds"], &REV_TESTS]),
        ),
        (
            vec!["-s", "config.materialized:table"],
            set(&[&["fct_revenue", "dim_customers", SINGULAR], &DIM_TESTS]),
        ),
        (
            vec!["-s", "config.materialized:incremental"],
            set(&[&["fct_refunds"]]),
        ),
        (
            vec!["-s", "config.materialized:ephemeral"],
            set(&[&["int_order_payments"]]),
        ),
        (vec!["-s", "config.materialized:view"], set(&[&STAGING])),
        // A data test's materialization is its type's default, `test` (unit tests have none).
        (
            vec!["-s", "config.materialized:test"],
            set(&[&[SRC_TEST, UNIQUE_DIM, NOT_NULL_DIM, REL, SINGULAR]]),
        ),
        (
            vec!["-s", "config.meta.owner:finance"],
            set(&[&["fct_revenue"], &REV_TESTS]),
        ),
        (
            vec!["-s", "config.tags:nightly"],
            set(&[&["fct_revenue"], &REV_TESTS]),
        ),
        (
            vec!["-s", "resource_type:seed"],
            set(&[&["raw_customers", "countries"]]),
        ),
        (
            vec!["-s", "resource_type:source"],
            set(&[&["erp.orders", "erp.payments", SRC_TEST]]),
        ),
        (
            vec!["-s", "resource_type:test"],
            set(&[&[SRC_TEST, UNIQUE_DIM, NOT_NULL_DIM, REL, SINGULAR]]),
        ),
        (vec!["-s", "resource_type:unit_test"], set(&[&[UNIT]])),
        (
            vec!["-s", "resource_type:model"],
            set(&[
                &STAGING,
                &[
                    "int_order_payments",
                    "fct_revenue",
                    "fct_refunds",
                    "dim_customers",
                    SINGULAR,
                ],
                &DIM_TESTS,
            ]),
        ),
        (
            vec!["-s", "source:erp"],
            set(&[&["erp.orders", "erp.payments", SRC_TEST]]),
        ),
        (
            vec!["-s", "source:erp.orders"],
            set(&[&["erp.orders", SRC_TEST]]),
        ),
        (
            vec!["-s", "source:sel.erp.payments"],
            set(&[&["erp.payments"]]),
        ),
        (
            vec!["-s", "source:erp.orders+"],
            set(&[
                &[
                    "erp.orders",
                    SRC_TEST,
                    "stg_orders",
                    "int_order_payments",
                    "fct_revenue",
                    "fct_refunds",
                    "dim_customers",
                    SINGULAR,
                ],
                &DIM_TESTS,
            ]),
        ),
        (
            vec!["-s", "path:models/staging/erp"],
            set(&[&["stg_orders", "stg_payments"]]),
        ),
        (
            vec!["-s", "path:models/marts/finance/fct_revenue.sql"],
            set(&[&["fct_revenue"], &REV_TESTS]),
        ),
        (
            vec!["-s", "path:models/staging/*/stg_c*"],
            set(&[&["stg_customers", "stg_countries"]]),
        ),
        (
            vec!["-s", "path:seeds"],
            set(&[&["raw_customers", "countries"]]),
        ),
        (vec!["-s", "path:seeds/lookups"], set(&[&["countries"]])),
        // A model is also at the yml that describes it (its patch path).
        (
            vec!["-s", "path:models/marts/schema.yml"],
            set(&[&["fct_revenue", "dim_customers"], &DIM_TESTS, &REV_TESTS]),
        ),
        // `*` stays within a folder name, `**` spans folders (pathlib's glob, as dbt).
        (
            vec!["-s", "path:models/**/fct_revenue.sql"],
            set(&[&["fct_revenue"], &REV_TESTS]),
        ),
        (
            vec!["-s", "path:models/*/erp"],
            set(&[&["stg_orders", "stg_payments"]]),
        ),
        // Without a method: a path if it has a slash, a file if it ends in .sql/.csv/.py.
        (
            vec!["-s", "models/staging/erp"],
            set(&[&["stg_orders", "stg_payments"]]),
        ),
        (vec!["-s", "stg_orders.sql"], set(&[&["stg_orders"]])),
        (vec!["-s", "countries.csv"], set(&[&["countries"]])),
        (vec!["-s", "file:fct_refunds.sql"], set(&[&["fct_refunds"]])),
        (vec!["-s", "file:stg_orders"], set(&[&["stg_orders"]])),
        (
            vec!["-s", "test_type:generic"],
            set(&[&[SRC_TEST, UNIQUE_DIM, NOT_NULL_DIM, REL]]),
        ),
        (vec!["-s", "test_type:singular"], set(&[&[SINGULAR]])),
        (vec!["-s", "test_type:unit"], set(&[&[UNIT]])),
        (
            vec!["-s", "test_type:data"],
            set(&[&[SRC_TEST, UNIQUE_DIM, NOT_NULL_DIM, REL, SINGULAR]]),
        ),
        (
            vec!["-s", "test_name:unique"],
            set(&[&[SRC_TEST, UNIQUE_DIM]]),
        ),
        (vec!["-s", "test_name:not_null"], set(&[&[NOT_NULL_DIM]])),
        (
            vec!["-s", "dim_customers,test_type:generic"],
            set(&[&[UNIQUE_DIM, NOT_NULL_DIM, REL]]),
        ),
        (
            vec!["-s", "fct_revenue,test_type:singular"],
            set(&[&[SINGULAR]]),
        ),
        (
            vec!["-s", "+dim_customers,resource_type:seed"],
            set(&[&["raw_customers", "countries"]]),
        ),
        (
            vec!["-s", "marts", "--exclude", "fct_refunds"],
            set(&[&["fct_revenue", "dim_customers", SINGULAR], &DIM_TESTS]),
        ),
        (
            vec!["-s", "marts", "--exclude", "dim_customers"],
            set(&[&["fct_revenue", "fct_refunds", SINGULAR]]),
        ),
        (
            vec!["-s", "stg_orders+", "--exclude", "tag:nightly"],
            set(&[&[
                "stg_orders",
                "int_order_payments",
                "fct_refunds",
                "dim_customers",
                UNIQUE_DIM,
                NOT_NULL_DIM,
                UNIT,
            ]]),
        ),
        // A seed's fqn has no "seeds" part: `seeds` matches nothing (and warns).
        (
            vec!["--exclude", "staging", "marts", "seeds"],
            set(&[&["raw_customers", "countries", "int_order_payments"]]),
        ),
        (
            vec!["-s", "fct_revenue", "--indirect-selection", "cautious"],
            set(&[&["fct_revenue", SINGULAR]]),
        ),
        (
            vec![
                "-s",
                "fct_revenue dim_customers",
                "--indirect-selection",
                "cautious",
            ],
            set(&[&["fct_revenue", "dim_customers", SINGULAR], &DIM_TESTS]),
        ),
        (
            vec!["-s", "dim_customers", "--indirect-selection", "buildable"],
            set(&[&["dim_customers"], &DIM_TESTS]),
        ),
        (
            vec!["-s", "dim_customers", "--indirect-selection", "empty"],
            set(&[&["dim_customers"]]),
        ),
        (
            vec![
                "-s",
                "fct_revenue,tag:nightly",
                "--indirect-selection",
                "cautious",
            ],
            set(&[&["fct_revenue", SINGULAR]]),
        ),
        (vec!["-s", "dim_customers_legacy"], set(&[])),
        (vec!["-s", "exposure:*"], set(&[])),
        (
            vec!["--selector", "finance_nightly"],
            set(&[&upstream_of_revenue, &[REL, SINGULAR, SRC_TEST]]),
        ),
        (
            vec!["--selector", "core_and_parents_1"],
            set(&[
                &[
                    "dim_customers",
                    "stg_customers",
                    "stg_countries",
                    "fct_revenue",
                ],
                &DIM_TESTS,
                &[SINGULAR],
            ]),
        ),
        (
            vec!["--selector", "via_other"],
            set(&[
                &[
                    "dim_customers",
                    "stg_customers",
                    "stg_countries",
                    "fct_revenue",
                ],
                &DIM_TESTS,
                &[SINGULAR],
            ]),
        ),
        (vec![], set(&[&STAGING])),
    ];
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (args, expected) in &cases {
        let mut a = vec!["ls", "--output", "name"];
        a.extend(args.iter().copied());
        let out = p.rsdbt(&a);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        let got: BTreeSet<&str> = out.stdout.lines().collect();
        if &got != expected {
            let missing: Vec<_> = expected.difference(&got).collect();
            let extra: Vec<_> = got.difference(expected).collect();
            failures.push(format!("{args:?}: missing {missing:?}, extra {extra:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} selector cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn selector_errors_are_clear() {
    let p = Project::fixture("sel_shop");
    let err = p.rsdbt(&["ls", "-s", "tags:nightly"]).expect(2).stderr;
    assert!(
        err.contains("unknown selector method 'tags'") && err.contains("did you mean 'tag'?"),
        "{err}"
    );
    let err = p
        .rsdbt(&["ls", "-s", "stg_orders fct_(revenue"])
        .expect(2)
        .stderr;
    assert!(err.contains("unexpected character '('"), "{err}");
    // The caret points into the whole --select value.
    assert!(
        err.contains("--> --select:1:16") && err.contains("1 │ stg_orders fct_(revenue"),
        "{err}"
    );
    let err = p.rsdbt(&["ls", "-s", "state:modified"]).expect(2).stderr;
    assert!(err.contains("no --state was given"), "{err}");
    let err = p.rsdbt(&["ls", "--selector", "finance"]).expect(2).stderr;
    assert!(
        err.contains("no selector named 'finance'")
            && err.contains("did you mean 'finance_nightly'?"),
        "{err}"
    );
    let out = p.rsdbt(&["ls", "-s", "stg_orderz"]).expect(0);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr
            .contains("The selection criterion 'stg_orderz' does not match any enabled nodes"),
        "{}",
        out.stderr
    );
}

#[test]
fn ls_output_keys() {
    let p = Project::fixture("sel_shop");
    let out = p
        .rsdbt(&[
            "ls",
            "-s",
            "fct_refunds",
            "--output",
            "json",
            "--output-keys",
            "resource_type",
            "name",
        ])
        .expect(0)
        .stdout;
    // As dbt prints it (Python's json.dumps, keys in the node's order).
    assert_eq!(
        out.trim(),
        r#"{"name": "fct_refunds", "resource_type": "model"}"#
    );
}

#[test]
fn ls_output_keys_takes_any_manifest_key() {
    // What astronomer-cosmos asks for: keys beyond dbt's default set, for nodes and sources.
    let p = Project::fixture("ok_shop");
    p.write(
        "models/raw.yml",
        "version: 2\nsources:\n  - name: raw\n    description: landed\n    loaded_at_field: ts\n    freshness: {warn_after: {count: 1, period: hour}}\n    tables:\n      - name: payments\n        meta: {owner: ops}\n",
    );
    let keys = [
        "name",
        "unique_id",
        "resource_type",
        "depends_on",
        "original_file_path",
        "tags",
        "config",
        "freshness",
        "fqn",
        "path",
        "schema",
        "description",
        "meta",
    ];
    let mut args = vec![
        "ls",
        "-s",
        "customers",
        "source:raw",
        "--output",
        "json",
        "--output-keys",
    ];
    args.extend(keys);
    let out = p.rsdbt(&args).expect(0).stdout;
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let source = lines
        .iter()
        .find(|l| l["resource_type"] == "source")
        .expect("the source is listed");
    assert_eq!(
        source["fqn"],
        serde_json::json!(["shop", "raw", "payments"])
    );
    assert_eq!(source["meta"], serde_json::json!({"owner": "ops"}));
    assert_eq!(
        source["freshness"]["warn_after"],
        serde_json::json!({"count": 1, "period": "hour"})
    );
    assert_eq!(source["config"]["enabled"], true);
    let model = lines
        .iter()
        .find(|l| l["resource_type"] == "model")
        .expect("the model is listed");
    assert_eq!(
        model["fqn"],
        serde_json::json!(["shop", "marts", "customers"])
    );
    assert_eq!(model["schema"], "marts");
    assert_eq!(model["path"], "marts/customers.sql");
    assert_eq!(model["config"]["materialized"], "table");
    // Keys in dbt's order: the manifest entry's.
    assert!(
        out.lines().any(|l| l.starts_with(
            r#"{"schema": "marts", "name": "customers", "resource_type": "model", "path": "marts/customers.sql", "original_file_path""#
        )),
        "{out}"
    );
    // A key the resource does not have is left out, as dbt does.
    let out = p
        .rsdbt(&[
            "ls",
            "-s",
            "customers",
            "--output",
            "json",
            "--output-keys",
            "name",
            "no_such_key",
        ])
        .expect(0)
        .stdout;
    assert_eq!(out.trim(), r#"{"name": "customers"}"#);
}

#[test]
fn exposures_are_graph_nodes_for_selection() {
    let p = Project::example();
    let ls = |args: &[&str]| -> BTreeSet<String> {
        let mut all = vec!["ls"];
        all.extend(args);
        p.rsdbt(&all)
            .expect(0)
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        ls(&["-s", "exposure:content_dashboard"]),
        BTreeSet::from(["exposure:pinboard.content_dashboard".to_string()])
    );
    let upstream = ls(&[
        "-s",
        "+exposure:pinboard.content_dashboard",
        "--resource-type",
        "model",
        "--output",
        "name",
    ]);
    let expected: BTreeSet<String> = [
        "brz_geo",
        "brz_pins",
        "brz_users",
        "slv_geo",
        "slv_pins",
        "slv_users",
        "int_pins_enriched",
        "gld_category_by_country",
        "gld_posts_by_year",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(upstream, expected);
    // gold+ reaches the exposure; the manifest records it with its parents.
    assert!(ls(&["-s", "gld_posts_by_year+"]).contains("exposure:pinboard.content_dashboard"));
    p.rsdbt(&["parse"]).expect(0);
    let m: serde_json::Value = serde_json::from_str(&p.read("target/rsdbt/manifest.json")).unwrap();
    let e = &m["exposures"]["exposure.pinboard.content_dashboard"];
    assert_eq!(e["type"], "dashboard");
    assert_eq!(e["owner"]["name"], "Analytics");
    assert_eq!(
        m["parent_map"]["exposure.pinboard.content_dashboard"],
        serde_json::json!([
            "model.pinboard.gld_category_by_country",
            "model.pinboard.gld_posts_by_year"
        ])
    );

    // Mistakes name the file.
    p.write(
        "models/exposures.yml",
        "exposures:\n  - name: d\n    type: dashboard\n    owner: {name: A}\n    depends_on: [ref('gld_top_poster')]\n",
    );
    let out = p.rsdbt(&["parse"]).expect(2);
    assert!(
        out.stderr
            .contains("exposure 'd' depends on ref('gld_top_poster'), which was not found")
            && out.stderr.contains("models/exposures.yml")
            && out.stderr.contains("gld_top_posters"),
        "{}",
        out.stderr
    );
    p.write(
        "models/exposures.yml",
        "exposures:\n  - name: d\n    type: report\n    owner: {name: A}\n",
    );
    let out = p.rsdbt(&["parse"]).expect(2);
    assert!(
        out.stderr.contains("exposure 'd' needs a `type`"),
        "{}",
        out.stderr
    );
}

/// dbt 1.8's `--empty`: every ref and source reads as zero rows, so the whole DAG runs and its
/// tables get their columns without reading input; seeds load as usual.
#[test]
fn empty_runs_the_dag_on_no_rows() {
    let p = Project::fixture("ok_shop");
    p.write(
        "models/staging/schema_tests.yml",
        "version: 2\nmodels:\n  - name: stg_orders\n    columns:\n      - name: customer\n        data_tests: [not_null]\n",
    );
    let out = p.rsdbt(&["build", "--empty"]).expect(0);
    assert!(
        out.stdout.contains("PASS not_null_stg_orders_customer"),
        "{}",
        out.stdout
    );
    assert_eq!(p.query("select count(*) as n from raw.orders")[0]["n"], 4);
    assert_eq!(
        p.query("select count(*) as n from marts.customers")[0]["n"],
        0
    );
    let compiled = p.read("target/compiled/shop/models/marts/customers.sql");
    assert!(
        compiled.contains(r#"(select * from "warehouse"."main"."stg_orders" where false limit 0) _dbt_limit_subq_stg_orders"#),
        "{compiled}"
    );
    // Without it the same build reads the rows.
    p.rsdbt(&["build"]).expect(0);
    assert_eq!(
        p.query("select count(*) as n from marts.customers")[0]["n"],
        2
    );
}

/// dbt 1.8's `build --resource-type` / `--exclude-resource-type`.
#[test]
fn build_by_resource_type() {
    let p = Project::fixture("ok_shop");
    p.write(
        "models/staging/schema_tests.yml",
        "version: 2\nmodels:\n  - name: stg_orders\n    columns:\n      - name: customer\n        data_tests: [not_null]\n",
    );
    let out = p.rsdbt(&["build", "--resource-type", "seed"]).expect(0);
    assert!(out.stdout.contains("Done. PASS=1 "), "{}", out.stdout);
    let out = p
        .rsdbt(&["build", "--exclude-resource-type", "test", "seed"])
        .expect(0);
    assert!(
        !out.stdout.contains("not_null_stg_orders_customer"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("seed file"), "{}", out.stdout);
    assert!(
        out.stdout.contains("table model marts.customers"),
        "{}",
        out.stdout
    );
    let out = p.rsdbt(&["build", "--resource-type", "test"]).expect(0);
    assert!(out.stdout.contains("Done. PASS=1 "), "{}", out.stdout);
    let out = p.rsdbt(&["build", "--resource-type", "modle"]).expect(2);
    assert!(
        out.stderr.contains("invalid value 'modle'"),
        "{}",
        out.stderr
    );
}
