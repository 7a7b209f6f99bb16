//! Bad input: each failure kind names the file and line, says what to do, exits non-zero, and
//! leaves no partial table. Messages are snapshot-tested.

use crate::harness::Project;

/// The error summary of a run's output, without timestamps and timings (stable for snapshots).
fn error_summary(stdout: &str) -> String {
    let lines: Vec<String> = stdout
        .lines()
        .map(|l| l.get(10..).unwrap_or("").to_string())
        .skip_while(|l| !l.starts_with("Completed with"))
        .collect();
    lines.join("\n").trim().to_string()
}

/// Runs `args` on a fixture that must fail before running (exit 2) and snapshots stderr.
fn fails_to_start(fixture: &str, args: &[&str]) -> String {
    let p = Project::fixture(fixture);
    let out = p.rsdbt(args).expect(2);
    assert!(
        out.stdout.trim().is_empty() || !out.stdout.contains(" OK "),
        "nothing may run: {}",
        out.stdout
    );
    assert!(
        !p.path().join("warehouse").exists()
            || std::fs::read_dir(p.path().join("warehouse"))
                .unwrap()
                .next()
                .is_none(),
        "no table may be written"
    );
    out.stderr
}

#[test]
fn broken_yaml_points_at_the_line() {
    let err = fails_to_start("err_yaml", &["build"]);
    assert!(err.contains("models/schema.yml:5"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn jinja_syntax_error_points_at_the_file() {
    let err = fails_to_start("err_jinja_syntax", &["run"]);
    assert!(err.contains("models/a.sql"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn undefined_var_names_the_var_and_how_to_set_it() {
    let err = fails_to_start("err_undefined_var", &["compile"]);
    assert!(err.contains("Required var 'start_date' not found"), "{err}");
    assert!(err.contains("models/orders.sql:3"), "{err}");
    insta::assert_snapshot!(err);
    // Supplying it on the command line fixes it.
    let p = Project::fixture("err_undefined_var");
    let out = p
        .rsdbt(&["compile", "--vars", "{start_date: 2023-12-31}"])
        .expect(0);
    assert!(
        out.stdout.contains("where day >= '2023-12-31'"),
        "{}",
        out.stdout
    );
}

#[test]
fn unknown_ref_suggests_the_closest_model() {
    let err = fails_to_start("err_unknown_ref", &["run"]);
    assert!(err.contains("did you mean 'customers'?"), "{err}");
    assert!(err.contains("models/orders.sql:2"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn cycle_prints_the_whole_cycle() {
    let err = fails_to_start("err_cycle", &["run"]);
    assert!(
        err.contains("a (models/a.sql) → b (models/b.sql) → c (models/c.sql) → a (models/a.sql)"),
        "{err}"
    );
    insta::assert_snapshot!(err);
}

#[test]
fn duplicate_model_names_both_files() {
    let err = fails_to_start("err_duplicate", &["parse"]);
    assert!(
        err.contains("models/marts/orders.sql") && err.contains("models/staging/orders.sql"),
        "{err}"
    );
    insta::assert_snapshot!(err);
}

#[test]
fn missing_profile_lists_the_defined_ones() {
    let err = fails_to_start("err_missing_profile", &["run"]);
    assert!(
        err.contains("profile 'warehouse_prod' is not defined"),
        "{err}"
    );
    assert!(err.contains("project.yml:2"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn missing_target_lists_the_targets() {
    let err = fails_to_start("err_missing_target", &["run", "--target", "prod"]);
    assert!(
        err.contains("target 'prod' is not defined in profile 'fixture'"),
        "{err}"
    );
    insta::assert_snapshot!(err);
}

#[test]
fn bad_csv_row_fails_the_seed_and_skips_its_children() {
    let p = Project::fixture("err_bad_csv");
    let out = p.rsdbt(&["build"]).expect(1);
    assert!(
        out.stdout
            .contains("Runtime Error in seed customers (seeds/customers.csv)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Expected 3 records, found 4 records at line 4"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("SKIP relation main.customer_count"),
        "{}",
        out.stdout
    );
    insta::assert_snapshot!(error_summary(&out.stdout));
    assert!(
        !p.path()
            .join("warehouse/main/customers/_delta_log")
            .exists(),
        "no partial seed table"
    );
    let results: serde_json::Value =
        serde_json::from_str(&p.read("target/run_results.json")).unwrap();
    let statuses: Vec<_> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unique_id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("seed.fixture.customers".to_string(), "error".to_string()),
            (
                "model.fixture.customer_count".to_string(),
                "skipped".to_string()
            )
        ]
    );
}

#[test]
fn sql_error_keeps_the_previous_table() {
    let p = Project::fixture("err_sql_runtime");
    p.rsdbt(&["run"]).expect(0);
    assert_eq!(
        p.query("select total from {{ ref('downstream') }}"),
        vec![serde_json::json!({"total": 30})]
    );
    // Break the model: the run fails, and readers still see the old version. (Static analysis
    // would stop it before running: off, to test the run itself.)
    p.write("models/totals.sql", "{{ config(materialized='table') }}\nselect 1 as id, 'x' + 1 as amount from no_such_table\n");
    let out = p.rsdbt(&["run", "--static-analysis", "off"]).expect(1);
    assert!(
        out.stdout
            .contains("Database Error in model totals (models/totals.sql)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("no_such_table"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("compiled code at target/compiled/fixture/models/totals.sql"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("SKIP relation main.downstream"),
        "{}",
        out.stdout
    );
    insta::assert_snapshot!(error_summary(&out.stdout));
    assert_eq!(
        p.query("select id, amount from \"main\".\"totals\" order by id"),
        vec![
            serde_json::json!({"id": 1, "amount": 10}),
            serde_json::json!({"id": 2, "amount": 20})
        ]
    );
    // The pointer is relative to the project, whatever the target path.
    p.write(
        "project.yml",
        "name: fixture\nprofile: fixture\ntarget-path: build/out\n",
    );
    let out = p
        .rsdbt(&["run", "-s", "totals", "--static-analysis", "off"])
        .expect(1);
    assert!(
        out.stdout
            .contains("compiled code at build/out/compiled/fixture/models/totals.sql"),
        "{}",
        out.stdout
    );
}

/// A run killed (SIGKILL) while it writes a table's data files leaves the previous version of
/// the table: the new files were never committed to the Delta log.
#[test]
fn killed_run_leaves_the_previous_table() {
    let p = Project::fixture("err_sql_runtime");
    p.write(
        "models/big.sql",
        "{{ config(materialized='table') }}\nselect value as id, value * 2 as twice from generate_series(1, {{ var('rows', 10) }})\n",
    );
    p.rsdbt(&["run", "-s", "big", "--vars", "{rows: 10}"])
        .expect(0);
    let dir = p.path().join("warehouse/main/big");
    let data_files = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "parquet")
            })
            .count()
    };
    let before = data_files();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rsdbt"))
        .args(["run", "-s", "big", "--vars", "{rows: 400000000}"])
        .current_dir(p.path())
        .env("HOME", p.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a new data file is complete on disk, i.e. in the middle of the write.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while data_files() == before {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before the kill; make the table bigger");
        }
        assert!(std::time::Instant::now() < deadline, "no data file written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    assert!(data_files() > before);
    assert_eq!(
        p.query("select count(*) as n, max(id) as top from {{ ref('big') }}"),
        vec![serde_json::json!({"n": 10, "top": 10})]
    );
    // The next run starts from that state as usual.
    p.rsdbt(&["run", "-s", "big", "--vars", "{rows: 20}"])
        .expect(0);
    assert_eq!(
        p.query("select count(*) as n from {{ ref('big') }}"),
        vec![serde_json::json!({"n": 20})]
    );
}

#[test]
fn a_warehouse_url_of_an_unsupported_store_is_refused_not_made_a_local_folder() {
    let p = Project::fixture("check_shop");
    p.write(
        "profiles.yml",
        "fixture:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: \"gs://bucket/wh\"\n      schema: main\n",
    );
    let out = p.rsdbt(&["seed"]).expect(2);
    assert!(
        out.stderr.contains(
            "puts its warehouse at \"gs://bucket/wh\": the warehouse must be a local folder or an s3:// location"
        ),
        "{}",
        out.stderr
    );
    assert!(!p.path().join("gs:").exists());
}

/// A tmpfs mounted over a folder for the life of the value (root only).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: `3m`) at `dir`, or None (with a notice) where
    /// this user or machine cannot mount one.
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "NOTICE: skipping the full-disk test: cannot mount a tmpfs here (needs root)"
            );
        }
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Rows of text that compress badly, so that `n` of them take about 40·n bytes on disk too.
fn incompressible_rows(n: usize) -> String {
    let mut state: u64 = 0x243F_6A88_85A3_08D3;
    let mut csv = String::from("id,payload\n");
    for i in 0..n {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let a = state;
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        csv.push_str(&format!("{i},{a:016x}{state:016x}\n"));
    }
    csv
}

/// A full disk (the warehouse on a 3 MiB tmpfs): the seed that does not fit fails with the
/// system's reason and the file's name, exit 1; its table keeps its previous rows, the files
/// of the failed write are removed, and once the data fits again the next run succeeds.
#[test]
fn a_full_disk_fails_the_node_and_keeps_the_table() {
    let p = Project::fixture("ok_shop");
    let Some(_disk) = Tmpfs::mount(&p.path().join("warehouse"), "3m") else {
        return;
    };
    std::fs::remove_dir_all(p.path().join("models")).unwrap();
    p.write("seeds/payloads.csv", &incompressible_rows(100));
    p.rsdbt(&["seed", "-s", "payloads"]).expect(0);
    let used = || {
        fn size(d: &std::path::Path) -> u64 {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        }
        size(&p.path().join("warehouse"))
    };
    let before = used();

    p.write("seeds/payloads.csv", &incompressible_rows(200_000));
    let out = p.rsdbt(&["seed", "-s", "payloads"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("seeds/payloads.csv: ")
            && out.stdout.contains("No space left on device")
            && out.stdout.contains("keeps its previous version"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("panicked"), "{}", out.stdout);
    let count =
        |p: &Project| p.query("select count(*) as n from {{ ref('payloads') }}")[0]["n"].clone();
    assert_eq!(count(&p), serde_json::json!(100));
    let after = used();
    assert!(
        after < before + 64 * 1024,
        "the failed write's files are gone: {before} bytes before, {after} after"
    );

    p.write("seeds/payloads.csv", &incompressible_rows(20_000));
    p.rsdbt(&["seed", "-s", "payloads"]).expect(0);
    assert_eq!(count(&p), serde_json::json!(20_000));
}
