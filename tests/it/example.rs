//! The example project at the repository root: the pipeline the README's first command builds.

use serde_json::json;

use crate::harness::Project;

#[test]
fn example_pipeline_builds_and_cleans_the_data() {
    let p = Project::example();
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(
        out.stdout.contains("Done. PASS=28 WARN=0 ERROR=0 SKIP=0"),
        "{}",
        out.stdout
    );
    // 3 seeds, 10 models, 12 data tests (built-in, custom generic, singular), 2 unit tests.
    assert!(
        out.stdout
            .contains("PASS within_range_slv_geo_latitude__90___90"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("PASS assert_one_top_category_per_country"),
        "{}",
        out.stdout
    );

    // Seeds arrive with duplicates and late re-ingestions; silver keeps one row per key.
    let rows =
        p.query("select count(*) as n, count(distinct pin_id) as ids from {{ ref('slv_pins') }}");
    assert_eq!(rows, vec![json!({"n": 6000, "ids": 6000})]);
    let rows = p.query("select count(*) as n from {{ ref('pins') }}");
    assert_eq!(rows, vec![json!({"n": 6350})]);
    // Follower counts like "12k" become integers; every timestamp format parses.
    let rows = p.query(
        "select count(*) as unparsed from {{ ref('brz_pins') }} b join {{ ref('slv_pins') }} s using (pin_id) \
         where s.created_at is null and b.created_at_raw is not null",
    );
    assert_eq!(rows, vec![json!({"unparsed": 0})]);
    let rows = p.query(
        "select follower_count_raw as raw, s.follower_count as parsed from {{ ref('brz_pins') }} b \
         join {{ ref('slv_pins') }} s on s.pin_id = b.pin_id and s.ingested_at = b.ingested_at \
         where follower_count_raw like '%k' order by s.pin_id limit 1",
    );
    let raw = rows[0]["raw"].as_str().unwrap();
    let expected = raw.trim_end_matches('k').parse::<i64>().unwrap() * 1000;
    assert_eq!(rows[0]["parsed"], json!(expected));
    // Broken GPS fixes are dropped, blank countries become the `unknown_country` var.
    let rows = p.query("select count(*) as bad from {{ ref('slv_geo') }} where latitude > 90");
    assert_eq!(rows, vec![json!({"bad": 0})]);
    let rows = p.query(
        "select count(*) as n from {{ ref('gld_category_by_country') }} where country = 'Unknown'",
    );
    assert_eq!(rows, vec![json!({"n": 1})]);
    // Gold: one row per country, counts add up to the enriched pins with a country.
    let rows = p.query("select count(*) as countries from {{ ref('gld_category_by_country') }}");
    assert_eq!(rows, vec![json!({"countries": 15})]);
    let rows = p.query("select sum(user_count) as users from {{ ref('gld_user_cohorts') }}");
    assert_eq!(rows, vec![json!({"users": 2000})]);

    // Artifacts in dbt's shape.
    assert!(
        out.stdout
            .contains("PASS slv_pins::latest_version_wins_and_counts_parse"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("PASS gld_user_cohorts::cohorts_count_users_per_year_and_age_group"),
        "{}",
        out.stdout
    );
    let rr: serde_json::Value =
        serde_json::from_str(&p.read("target/rsdbt/run_results.json")).unwrap();
    assert_eq!(rr["results"].as_array().unwrap().len(), 28);
    assert!(
        rr["metadata"]["dbt_schema_version"]
            .as_str()
            .unwrap()
            .ends_with("run-results/v6.json")
    );
    let first = &rr["results"][0];
    for key in [
        "status",
        "timing",
        "thread_id",
        "execution_time",
        "adapter_response",
        "message",
        "unique_id",
        "relation_name",
    ] {
        assert!(first.get(key).is_some(), "run_results result lacks {key}");
    }
    let m: serde_json::Value = serde_json::from_str(&p.read("target/rsdbt/manifest.json")).unwrap();
    assert_eq!(
        m["nodes"]["model.pinboard.slv_pins"]["config"]["materialized"],
        "incremental"
    );
    assert_eq!(
        m["nodes"]["model.pinboard.slv_pins"]["schema"],
        "main_silver"
    );
    assert!(
        m["nodes"]["model.pinboard.slv_pins"]["compiled_code"]
            .as_str()
            .unwrap()
            .contains("to_timestamp(")
    );
}

#[test]
fn run_select_gold_plus_only_touches_gold() {
    let p = Project::example();
    p.rsdbt(&["build"]).expect(0);
    let out = p.rsdbt(&["run", "--select", "gold+"]).expect(0);
    assert!(
        out.stdout.contains("Done. PASS=4 WARN=0 ERROR=0 SKIP=0"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("slv_"), "{}", out.stdout);
    let shown = p
        .rsdbt(&["show", "--select", "gld_top_posters", "--limit", "3"])
        .expect(0)
        .stdout;
    assert!(shown.contains("| user_name"), "{shown}");
    assert_eq!(
        shown
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains("---"))
            .count(),
        4,
        "{shown}"
    );
}

#[test]
fn views_persist_across_processes_and_clean_keeps_cargo_target() {
    let p = Project::example();
    p.rsdbt(&["seed"]).expect(0);
    p.rsdbt(&["run", "-s", "brz_users"]).expect(0);
    assert!(
        p.path()
            .join("warehouse/main_bronze/brz_users.view.sql")
            .is_file()
    );
    // A later process reads the view through its persisted definition.
    assert_eq!(
        p.query("select count(*) as n from {{ ref('brz_users') }}"),
        vec![json!({"n": 2050})]
    );
    std::fs::create_dir_all(p.path().join("target/debug")).unwrap();
    p.rsdbt(&["clean"]).expect(0);
    assert!(!p.path().join("target/rsdbt").exists());
    assert!(
        p.path().join("target/debug").exists(),
        "rsdbt clean must not touch cargo's target/"
    );
}

#[test]
fn silver_pins_merge_late_arriving_rows_incrementally() {
    let p = Project::example();
    p.rsdbt(&["build"]).expect(0);
    // A re-export arrives later: pin 7 updated (a new follower count), pin 90001 is new.
    let pins = p.read("seeds/pins.csv");
    p.write("seeds/pins.csv", &format!("{pins}7,1,art,Pin 7,99k,image,2024-01-01 10:00:00,2031-01-01 00:00:00\n90001,2,art,Pin 90001,5,video,2024-01-02 10:00:00,2031-01-02 00:00:00\n"));
    let out = p.rsdbt(&["build", "-s", "pins+"]).expect(0);
    assert!(out.stdout.contains("[MERGE 2 in"), "{}", out.stdout);
    let rows = p.query("select pin_id, follower_count from {{ ref('slv_pins') }} where pin_id in (7, 90001) order by pin_id");
    assert_eq!(
        rows,
        vec![
            json!({"pin_id": 7, "follower_count": 99000}),
            json!({"pin_id": 90001, "follower_count": 5})
        ]
    );
    assert_eq!(
        p.query("select count(*) as n from {{ ref('slv_pins') }}"),
        vec![json!({"n": 6001})]
    );
}
