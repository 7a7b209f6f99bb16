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
    let info = &finished[0]["data"]["node_info"];
    assert_eq!(info["node_status"], "success");
    // The fields orchestrators read (astronomer-cosmos): times, name, path, relation.
    assert_eq!(info["node_name"], "totals");
    assert_eq!(info["resource_type"], "model");
    assert_eq!(info["node_path"], "totals.sql");
    assert_eq!(info["node_relation"]["alias"], "totals");
    let time = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(info[k].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{k}: {e} in {info}"))
    };
    assert!(time("node_started_at") <= time("node_finished_at"));
    let named = |name: &str| {
        events
            .iter()
            .find(|e| e["info"]["name"] == name)
            .unwrap_or_else(|| panic!("no {name} event"))
    };
    assert!(
        named("MainReportVersion")["data"]["version"]
            .as_str()
            .unwrap()
            .starts_with('=')
    );
    assert_eq!(
        named("AdapterRegistered")["data"]["adapter_name"],
        "datafusion"
    );
    assert!(
        events
            .iter()
            .filter(|e| e["info"]["name"] == "NodeStart")
            .all(|e| !e["data"]["node_info"]["node_started_at"]
                .as_str()
                .unwrap()
                .is_empty())
    );
    // run_results.json records how the run was invoked, as dbt's `args`.
    let rr: serde_json::Value = serde_json::from_str(&p.read("target/run_results.json")).unwrap();
    let args = &rr["args"];
    assert_eq!(args["invocation_command"], "rsdbt run --log-format json");
    assert_eq!(args["which"], "run");
    let dir = std::fs::canonicalize(p.path()).unwrap();
    let same = |k: &str| std::fs::canonicalize(args[k].as_str().unwrap()).unwrap() == dir;
    assert!(same("project_dir") && same("profiles_dir"), "{args}");
    assert_eq!(args["log_format"], "json");
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

/// dbt's global flags, before or after the command: `--quiet` leaves only errors (and `ls`
/// results and `print()` output), `--no-print` hides `print()`, `--target-path` and
/// `--profile` override the project file, and flags with nothing to change are accepted.
#[test]
fn dbt_global_flags() {
    let p = Project::fixture("check_shop");
    let quiet = p.rsdbt(&["-q", "ls", "-s", "stg_orders"]).expect(0);
    assert_eq!(quiet.stdout, "check_shop.stg_orders\n");
    let quiet = p.rsdbt(&["ls", "--quiet", "-s", "stg_orders"]).expect(0);
    assert_eq!(quiet.stdout, "check_shop.stg_orders\n");
    let out = p.rsdbt(&["--quiet", "build"]).expect(0);
    assert_eq!(out.stdout, "", "nothing but errors: {}", out.stdout);
    // A failing test still says so with --quiet, without the other lines.
    p.write(
        "tests/no_big_orders.sql",
        "select * from {{ ref('stg_orders') }} where order_amount > 10\n",
    );
    let out = p.rsdbt(&["test", "-q"]).expect(1);
    assert!(
        out.stdout.contains("FAIL 1 no_big_orders")
            && out.stdout.contains("Failure in test no_big_orders")
            && !out.stdout.contains("PASS")
            && !out.stdout.contains("Running with"),
        "{}",
        out.stdout
    );
    // print() output survives --quiet (what `dbt -q run-operation` is used for); --no-print
    // hides it; log() is a log line.
    p.write(
        "macros/hello.sql",
        "{% macro hello() %}{{ print('printed line') }}{{ log('logged line', info=True) }}{% endmacro %}\n",
    );
    let out = p.rsdbt(&["-q", "run-operation", "hello"]).expect(0);
    assert_eq!(out.stdout, "printed line\n");
    let out = p.rsdbt(&["run-operation", "hello", "--no-print"]).expect(0);
    assert!(
        !out.stdout.contains("printed line") && out.stdout.contains("logged line"),
        "{}",
        out.stdout
    );
    // --target-path: the artifacts go there.
    p.rsdbt(&["parse", "--target-path", "elsewhere"]).expect(0);
    assert!(p.path().join("elsewhere/manifest.json").is_file());
    // --profile: another profile of profiles.yml.
    p.append(
        "profiles.yml",
        "other:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: other_wh\n      schema: other\n",
    );
    p.rsdbt(&["seed", "--profile", "other"]).expect(0);
    assert!(
        p.path()
            .join("other_wh/other/customers/_delta_log")
            .is_dir()
    );
    let out = p.rsdbt(&["ls", "--profile", "nope"]).expect(2);
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    // Flags rsdbt has nothing to do with are accepted where dbt accepts them.
    p.rsdbt(&[
        "--no-version-check",
        "--no-send-anonymous-usage-stats",
        "--use-colors",
        "-d",
        "--log-path",
        "logs",
        "--log-level-file",
        "none",
        "--printer-width",
        "100",
        "--partial-parse",
        "--no-write-json",
        "--no-populate-cache",
        "--cache-selected-only",
        "--no-introspect",
        "--static-parser",
        "--show-all-deprecations",
        "ls",
        "--print",
        "--log-level",
        "warn",
        "-s",
        "stg_orders",
    ])
    .expect(0);
}

/// `--fail-fast` skips what had not started once something fails; `--warn-error` (and
/// warn-error options that say "all") turn a warning test into a failure.
#[test]
fn fail_fast_and_warn_error() {
    let p = Project::fixture("check_shop");
    p.write(
        "tests/no_big_orders.sql",
        "{{ config(severity='warn') }}\nselect * from {{ ref('orders') }} where amount > 10\n",
    );
    let out = p.rsdbt(&["build"]).expect(0);
    assert!(
        out.stdout.contains("WARN 1 no_big_orders"),
        "{}",
        out.stdout
    );
    for flags in [
        vec!["--warn-error"],
        vec!["--warn-error-options", "{\"error\": \"all\"}"],
    ] {
        let mut args = vec!["test", "-s", "no_big_orders"];
        args.extend(flags);
        let out = p.rsdbt(&args).expect(1);
        assert!(
            out.stdout.contains("FAIL 1 no_big_orders"),
            "{}",
            out.stdout
        );
    }
    let out = p
        .rsdbt(&[
            "test",
            "-s",
            "no_big_orders",
            "--warn-error-options",
            "{\"error\": [\"Deprecations\"]}",
        ])
        .expect(0);
    assert!(
        out.stdout.contains("WARN 1 no_big_orders"),
        "{}",
        out.stdout
    );
    // One thread, so the order is the DAG's: a_broken fails before stg_orders starts, which
    // does not depend on it.
    std::fs::remove_file(p.path().join("tests/no_big_orders.sql")).unwrap();
    p.write(
        "models/a_broken.sql",
        "{{ config(materialized='table') }}\nselect cast('x' || name as int) as n from {{ ref('customers') }}\n",
    );
    let statuses = |p: &Project| -> Vec<(String, String, String)> {
        let rr: serde_json::Value =
            serde_json::from_str(&p.read("target/run_results.json")).unwrap();
        rr["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["unique_id"].as_str().unwrap().to_string(),
                    r["status"].as_str().unwrap().to_string(),
                    r["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    p.rsdbt(&["build", "--threads", "1"]).expect(1);
    let without = statuses(&p);
    assert!(
        without
            .iter()
            .any(|(id, s, _)| id == "model.check_shop.stg_orders" && s == "success"),
        "{without:?}"
    );
    p.rsdbt(&["build", "-x", "--threads", "1"]).expect(1);
    let with = statuses(&p);
    assert!(
        with.iter()
            .any(|(id, s, _)| id == "model.check_shop.a_broken" && s == "error"),
        "{with:?}"
    );
    assert!(
        with.iter()
            .any(|(id, s, m)| id == "model.check_shop.stg_orders"
                && s == "skipped"
                && m == "skipped by --fail-fast: model.check_shop.a_broken did not succeed"),
        "{with:?}"
    );
}

/// `show` prints as dbt: numbers and dates right-aligned, text left; an inline query's JSON has
/// no node name.
#[test]
fn show_output_as_dbt() {
    let p = Project::fixture("check_shop");
    let out = p
        .rsdbt(&[
            "-q",
            "show",
            "--inline",
            "select 7 as number, 'ab' as text, date '2024-01-02' as day_of_year",
        ])
        .expect(0);
    assert_eq!(
        out.stdout,
        "| number | text | day_of_year |\n| ------ | ---- | ----------- |\n|      7 | ab   |  2024-01-02 |\n"
    );
    let out = p
        .rsdbt(&["show", "--inline", "select 1 as a", "--output", "json"])
        .expect(0);
    assert_eq!(
        out.stdout,
        "{\n  \"show\": [\n    {\n      \"a\": 1\n    }\n  ]\n}\n"
    );
}

#[test]
fn two_project_files_are_a_warning() {
    let p = Project::fixture("ok_shop");
    std::fs::copy(
        p.path().join("dbt_project.yml"),
        p.path().join("project.yml"),
    )
    .unwrap();
    let out = p.rsdbt(&["parse"]).expect(0);
    assert!(
        out.stderr
            .contains("holds both project.yml and dbt_project.yml: rsdbt reads project.yml"),
        "{}",
        out.stderr
    );
}

/// A profile that sets no `threads` runs as many nodes at once as the machine has cores.
#[test]
fn threads_default_to_the_core_count() {
    let p = Project::fixture("ok_shop");
    let profiles = p.read("profiles.yml");
    let without: String = profiles
        .lines()
        .filter(|l| !l.trim_start().starts_with("threads:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, profiles, "the fixture sets threads");
    p.write("profiles.yml", &without);
    let out = p.rsdbt(&["seed"]).expect(0);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert!(
        out.stdout
            .contains(&format!("Concurrency: {cores} threads")),
        "{}",
        out.stdout
    );
}
