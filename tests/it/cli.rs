//! Command-line surfaces: init, debug, JSON logs, profile lookup, threads.

use crate::harness::Project;

#[test]
fn init_scaffolds_a_project_that_builds() {
    let p = Project::fixture("err_missing_target"); // any folder: init creates a sub-folder
    p.rsdbt(&["init", "acme"]).expect(0);
    let dir = p.path().join("acme");
    assert!(dir.join("project.yml").is_file() && dir.join("profiles.yml").is_file());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rsdbt"))
        .arg("build")
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .env("HOME", &dir)
        .env_remove("DBT_PROFILES_DIR")
        .env_remove("RSDBT_PROFILES_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("Done. PASS=3 WARN=0 ERROR=0 SKIP=0"),
        "{stdout}"
    );
    let again = p.rsdbt(&["init", "acme"]).expect(2);
    assert!(
        again
            .stderr
            .contains("a folder named 'acme' already exists"),
        "{}",
        again.stderr
    );
    let bad = p.rsdbt(&["init", "9lives"]).expect(2);
    assert!(
        bad.stderr.contains("'9lives' is not a valid project name"),
        "{}",
        bad.stderr
    );
}

#[test]
fn debug_reports_profile_and_connection() {
    let p = Project::fixture("err_missing_target");
    let out = p.rsdbt(&["debug"]).expect(0);
    assert!(
        out.stdout
            .contains("profile: fixture  target: dev  type: datafusion  schema: main  threads: 2"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Connection test: [OK]"),
        "{}",
        out.stdout
    );
    // An unwritable warehouse is reported in one line, exit 1.
    p.write("profiles.yml", "fixture:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: /proc/rsdbt-no-such-place\n");
    let out = p.rsdbt(&["debug"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("cannot create warehouse folder /proc/rsdbt-no-such-place")
            || out.stdout.contains("[ERROR]"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let p = Project::fixture("err_sql_runtime");
    let out = p.rsdbt(&["run", "--log-format", "json"]).expect(0);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let finished: Vec<_> = events
        .iter()
        .filter(|e| e["info"]["name"] == "NodeFinished")
        .collect();
    assert_eq!(finished.len(), 2);
    assert_eq!(
        finished[0]["data"]["node_info"]["unique_id"],
        "model.fixture.totals"
    );
    assert_eq!(finished[0]["data"]["node_info"]["node_status"], "success");
    let summary = events
        .iter()
        .find(|e| e["info"]["name"] == "EndOfRunSummary")
        .unwrap();
    assert_eq!(summary["data"]["pass"], 2);
    assert!(events.iter().all(|e| {
        e["info"]["invocation_id"]
            .as_str()
            .is_some_and(|s| s.len() == 36)
    }));
}

#[test]
fn profiles_dir_from_the_environment_and_threads_flag() {
    let p = Project::fixture("err_missing_target");
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::rename(
        p.path().join("profiles.yml"),
        elsewhere.path().join("profiles.yml"),
    )
    .unwrap();
    let out = p.rsdbt(&["run"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("could not find profiles.yml for profile 'fixture'"),
        "{}",
        out.stderr
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rsdbt"))
        .args(["run", "--threads", "3"])
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .env("HOME", p.path())
        .env("DBT_PROFILES_DIR", elsewhere.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("Concurrency: 3 threads (target='dev')"),
        "{stdout}"
    );
}

#[test]
fn listed_packages_are_reported_as_not_loaded() {
    let p = Project::fixture("ok_shop");
    p.write(
        "packages.yml",
        "packages:\n  - package: dbt-labs/dbt_utils\n    version: 1.3.0\n",
    );
    let out = p.rsdbt(&["parse"]).expect(0);
    assert!(
        out.stderr.contains(
            "packages.yml lists 1 package(s), but none is installed; rsdbt cannot install packages yet"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn compile_connects_only_when_a_model_queries_the_warehouse() {
    let p = Project::fixture("ok_shop");
    p.write(
        "profiles.yml",
        "fixture:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n      host: 127.0.0.1\n      port: 1\n      user: nobody\n      dbname: none\n      schema: s\n      connect_timeout: 2\n",
    );
    p.rsdbt(&["compile"]).expect(0);
    p.write(
        "models/probe.sql",
        "select {{ run_query('select 1').rows[0][0] if execute else 0 }} as one",
    );
    let out = p.rsdbt(&["compile", "-s", "probe"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("connection refused"), "{}", out.stderr);
}
