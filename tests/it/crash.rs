//! Crash trials: a build (every third one with `--full-refresh`) is killed with SIGKILL at a
//! random moment, then independent readers (delta-rs' Python package, tests/crash/read_tables.py;
//! pyiceberg, tests/crash/read_iceberg.py) check that every table is readable
//! and holds either its rows from before the build or the rows the build would have written,
//! and the next build finishes with the right rows and no temporary files left behind.
//! `RSDBT_CRASH_TRIALS` sets the number of trials (10 here; scripts/crash_trials.sh runs 100+).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Project, provided};

/// The reader's Python (scripts/test.sh installs `deltalake` into a cached venv); outside CI
/// a missing reader skips the trials with a notice.
fn reader() -> Option<String> {
    provided("RSDBT_TEST_DELTALAKE", "deltalake reader")
}

/// Every Delta table under `root` (a folder or an s3:// prefix on `endpoint`), as the
/// independent reader sees it.
fn delta_tables(python: &str, root: &str, endpoint: &str) -> BTreeMap<String, Value> {
    let script = crate::harness::repo_root().join("tests/crash/read_tables.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(root)
        .env("S3_ENDPOINT", endpoint)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)))
}

/// The Delta tables of `p`'s local warehouse, and with `pyiceberg` its Iceberg tables.
fn local_tables(python: &str, pyiceberg: Option<&str>, p: &Project) -> BTreeMap<String, Value> {
    let mut tables = delta_tables(
        python,
        &p.path().join("warehouse").display().to_string(),
        "",
    );
    if let Some(pyiceberg) = pyiceberg {
        let script = crate::harness::repo_root().join("tests/crash/read_iceberg.py");
        let out = std::process::Command::new(pyiceberg)
            .arg(script)
            .arg(p.path().join("warehouse"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let iceberg: BTreeMap<String, Value> =
            serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
                panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr))
            });
        tables.extend(iceberg);
    }
    tables
}

/// Rows the seed gains in trial `n`: new events, and a later update of an earlier id.
fn new_events(n: usize) -> String {
    let id = 100 + n;
    let day = 3 + n % 20;
    format!(
        "{id},new,2024-02-{day:02},2024-02-{day:02} 08:00:00\n{},updated,2024-02-{day:02},2024-02-{day:02} 09:{:02}:00\n",
        1 + n % 3,
        n % 60
    )
}

/// Files a finished run must not leave: temporary tables, folders and artifacts.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains("rsdbt_tmp") || name.contains(".tmp") || name.starts_with(".rsdbt-") {
            out.push(e.path().display().to_string());
        }
        if e.path().is_dir() {
            out.extend(leftovers(&e.path()));
        }
    }
    out
}

/// The next pseudo-random kill moment below `max_ms`, reproducible from the seed.
fn next_delay(state: &mut u64, max_ms: u64) -> Duration {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    Duration::from_millis((*state >> 33) % max_ms)
}

/// The build of trial `n`: every third one a `--full-refresh` (tables rewritten whole), the
/// others incremental.
fn build_args(n: usize) -> &'static [&'static str] {
    if n % 3 == 2 {
        &["build", "--full-refresh"]
    } else {
        &["build"]
    }
}

/// Starts `rsdbt <args>` in `p` and kills it with SIGKILL after `delay`; whether it was still
/// running.
fn build_killed_after(p: &Project, args: &[&str], delay: Duration) -> bool {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rsdbt"))
        .args(args)
        .current_dir(p.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    running
}

/// How a set of trials reads and checks one warehouse.
struct Trials<'a> {
    /// Each table's rows, as an independent reader sees them.
    tables: &'a dyn Fn(&Project) -> BTreeMap<String, Value>,
    /// What a finished run must not have left behind.
    leftovers: &'a dyn Fn(&Project) -> Vec<String>,
    /// Kill moments are drawn below this many milliseconds.
    max_delay_ms: u64,
    /// The seed of the kill moments (reproducible).
    seed: u64,
}

/// `n` trials on `p`: add rows, kill a build at a random moment, check every table holds its
/// old or its new rows (those `reference` gets from the same history without kills), then the
/// next build finishes with the new rows and no leftovers. Returns how many kills hit a run.
fn run_trials(p: &Project, reference: &Project, n: usize, how: Trials) -> usize {
    let reference_tables = |q: &Project| (how.tables)(q);
    let mut state = how.seed;
    let mut killed_mid_run = 0;
    for n in 0..n {
        let before = (how.tables)(p);
        p.append("seeds/events.csv", &new_events(n));
        reference.append("seeds/events.csv", &new_events(n));
        reference.rsdbt(build_args(n)).expect(0);
        let after = reference_tables(reference);

        let delay = next_delay(&mut state, how.max_delay_ms);
        if build_killed_after(p, build_args(n), delay) {
            killed_mid_run += 1;
        }
        let mid = (how.tables)(p);
        // A killed build's staging table (`<name>__rsdbt_tmp`) may stand beside the others,
        // as dbt's `__dbt_tmp` relations do; the next run must remove it (checked below, as
        // the tables then must be exactly the reference's), and no real table may be missing.
        for table in before.keys().filter(|t| !t.contains("rsdbt_tmp")) {
            assert!(
                mid.contains_key(table),
                "trial {n} (killed after {delay:?}): {table} is gone"
            );
        }
        for (table, seen) in mid.iter().filter(|(t, _)| !t.contains("rsdbt_tmp")) {
            assert!(
                seen.get("error").is_none(),
                "trial {n} ({delay:?}): {table} unreadable: {seen}"
            );
            assert!(
                [before.get(table), after.get(table)].contains(&Some(seen)),
                "trial {n} (killed after {delay:?}): {table} holds neither its old nor its new rows: {seen}\nold: {:?}\nnew: {:?}",
                before.get(table),
                after.get(table)
            );
        }
        // The next run finishes, with the rows a clean build gives, and cleans up.
        let out = p.rsdbt(build_args(n));
        assert_eq!(
            out.code, 0,
            "trial {n}: the run after the kill failed\n{}\n{}",
            out.stdout, out.stderr
        );
        assert_eq!((how.tables)(p), after, "trial {n}: rows after the next run");
        let left = (how.leftovers)(p);
        assert!(left.is_empty(), "trial {n}: left behind {left:?}");
    }
    killed_mid_run
}

fn trial_count(default: usize) -> usize {
    std::env::var("RSDBT_CRASH_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

#[test]
fn killed_builds_leave_whole_tables() {
    let Some(python) = reader() else {
        return;
    };
    let trials = trial_count(10);
    let pyiceberg = crate::harness::pyiceberg();
    // Iceberg tables too, read back by pyiceberg: an incremental append and a table.
    let with_iceberg = |p: &Project| {
        if pyiceberg.is_some() {
            p.write(
                "models/ev_ice_append.sql",
                &p.read("models/ev_append.sql").replace(
                    "materialized='incremental'",
                    "materialized='incremental', table_format='iceberg'",
                ),
            );
            p.write(
                "models/ev_ice_days.sql",
                "{{ config(materialized='table', table_format='iceberg') }}\nselect day, count(*) as events from {{ ref('events') }} group by day\n",
            );
        }
    };
    let p = Project::fixture("inc_shop");
    with_iceberg(&p);
    p.rsdbt(&["build"]).expect(0);
    // The same history without kills: what each build should leave (incremental models keep
    // their past, so the reference is built step by step too, not from scratch).
    let reference = Project::fixture("inc_shop");
    with_iceberg(&reference);
    reference.rsdbt(&["build"]).expect(0);
    let killed_mid_run = run_trials(
        &p,
        &reference,
        trials,
        Trials {
            tables: &|q| local_tables(&python, pyiceberg.as_deref(), q),
            leftovers: &|q| {
                [
                    leftovers(&q.path().join("warehouse")),
                    leftovers(&q.path().join("target")),
                ]
                .concat()
            },
            max_delay_ms: 900,
            seed: 0x9E37_79B9_7F4A_7C15,
        },
    );
    eprintln!("crash trials: {trials} trials, {killed_mid_run} killed mid-run, 0 failures");
}

/// The same trials with the warehouse on S3 (the emulator): a table is its Delta log's
/// conditional commit there too, and a killed run's lock object is taken over at once by the
/// next run on the same machine.
#[test]
fn killed_builds_on_s3_leave_whole_tables() {
    let Some(python) = reader() else {
        return;
    };
    let Some((endpoint, s3_python)) = crate::harness::s3() else {
        return;
    };
    let trials = trial_count(5);
    let bucket = format!("rsdbt-crash-{}", std::process::id());
    crate::harness::s3_keys(&s3_python, &endpoint, &bucket, true);
    let p = Project::fixture("inc_shop");
    p.write(
        "profiles.yml",
        &format!(
            "fixture:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: s3://{bucket}/lake/\n      schema: main\n      threads: 2\n      s3: {{endpoint: \"{endpoint}\", allow_http: true, region: us-east-1, access_key_id: test, secret_access_key: test}}\n"
        ),
    );
    p.rsdbt(&["build"]).expect(0);
    let reference = Project::fixture("inc_shop");
    reference.rsdbt(&["build"]).expect(0);
    let root = format!("s3://{bucket}/lake");
    let killed_mid_run = run_trials(
        &p,
        &reference,
        trials,
        Trials {
            tables: &|q| {
                if q.path() == p.path() {
                    delta_tables(&python, &root, &endpoint)
                } else {
                    local_tables(&python, None, q)
                }
            },
            leftovers: &|q| {
                let mut left: Vec<String> =
                    crate::harness::s3_keys(&s3_python, &endpoint, &bucket, false)
                        .into_iter()
                        .filter(|k| {
                            k.contains("rsdbt_tmp")
                                || k.contains(".tmp")
                                || k.ends_with(".rsdbt.lock")
                        })
                        .collect();
                left.extend(leftovers(&q.path().join("target")));
                left
            },
            max_delay_ms: 2500,
            seed: 0x1234_5678_9ABC_DEF1,
        },
    );
    eprintln!("crash trials on S3: {trials} trials, {killed_mid_run} killed mid-run, 0 failures");
}

/// Every table of `schema` as PostgreSQL itself reads it: row count and a digest of its rows.
fn pg_tables(schema: &str) -> BTreeMap<String, String> {
    let names = crate::harness::pg_exec(&format!(
        "select table_name from information_schema.tables where table_schema = '{schema}' and table_type = 'BASE TABLE' order by 1"
    ));
    names
        .into_iter()
        .filter_map(|r| r[0].clone())
        .map(|t| {
            let row = crate::harness::pg_exec(&format!(
                "select count(*) || ':' || coalesce(md5(string_agg(x::text, '|' order by x::text)), '') from \"{schema}\".\"{t}\" x"
            ));
            (t, row[0][0].clone().unwrap_or_default())
        })
        .collect()
}

#[test]
fn killed_builds_on_postgres_leave_whole_tables() {
    let Some(p) = Project::fixture_pg("inc_shop") else {
        return;
    };
    let Some(reference) = Project::fixture_pg("inc_shop") else {
        return;
    };
    let schema_of = |p: &Project| {
        p.read("profiles.yml")
            .lines()
            .find_map(|l| l.trim().strip_prefix("schema: ").map(str::to_string))
            .unwrap()
    };
    // insert_overwrite is refused on PostgreSQL (as dbt-postgres): the other strategies here.
    for q in [&p, &reference] {
        std::fs::remove_file(q.path().join("models/ev_by_day.sql")).unwrap();
    }
    let trials = trial_count(5);
    p.rsdbt(&["build"]).expect(0);
    reference.rsdbt(&["build"]).expect(0);
    let rows = |q: &Project| -> BTreeMap<String, Value> {
        pg_tables(&schema_of(q))
            .into_iter()
            .map(|(t, digest)| (t, Value::String(digest)))
            .collect()
    };
    let killed_mid_run = run_trials(
        &p,
        &reference,
        trials,
        Trials {
            tables: &rows,
            leftovers: &|q| {
                rows(q)
                    .into_keys()
                    .filter(|t| t.contains("dbt_tmp") || t.contains("dbt_backup"))
                    .collect()
            },
            max_delay_ms: 250,
            seed: 0x2545_F491_4F6C_DD1D,
        },
    );
    eprintln!(
        "crash trials on PostgreSQL: {trials} trials, {killed_mid_run} killed mid-run, 0 failures"
    );
}

/// What a first build killed before its commit leaves, in each table format: for Delta, a log
/// folder without a commit (only the commit's temporary file) and data files nothing refers to;
/// for Parquet, a data folder without the list of current ones; for Iceberg, data the catalog
/// never heard of. None of it is a table: reading it says so, an incremental model builds whole
/// (its incremental branch would read `max(updated_at)` of the table), and the next build of a
/// Delta table leaves no trace of it.
#[test]
fn a_first_write_killed_before_its_commit_is_no_table() {
    let p = Project::fixture("inc_shop");
    for format in ["parquet", "iceberg"] {
        p.write(
            &format!("models/ev_{format}.sql"),
            &p.read("models/ev_append.sql").replace(
                "materialized='incremental'",
                &format!("materialized='incremental', table_format='{format}'"),
            ),
        );
    }
    p.rsdbt(&["build"]).expect(0);
    let warehouse = p.path().join("warehouse");
    let delta = warehouse.join("main/ev_merge");
    std::fs::remove_dir_all(&delta).unwrap();
    std::fs::create_dir_all(delta.join("_delta_log")).unwrap();
    std::fs::write(
        delta.join("_delta_log/_commit_0b5e.json.tmp"),
        "{\"commitInfo\":",
    )
    .unwrap();
    std::fs::write(delta.join("part-00000-killed.parquet"), "PAR1").unwrap();
    std::fs::remove_file(warehouse.join("main/ev_parquet.parquet/_current")).unwrap();
    // The only Iceberg table: without the catalog, its folder is all that is left.
    std::fs::remove_file(warehouse.join("iceberg.db")).unwrap();
    assert!(warehouse.join("main/ev_iceberg.iceberg").is_dir());

    for model in ["ev_merge", "ev_parquet", "ev_iceberg"] {
        let out = p
            .rsdbt(&[
                "show",
                "--inline",
                &format!("select id from {{{{ ref('{model}') }}}}"),
            ])
            .expect(1);
        assert!(
            out.stderr.contains(model) && !out.stderr.contains("Not a Delta table"),
            "{model}: {}",
            out.stderr
        );
    }
    let out = p
        .rsdbt(&["run", "-s", "ev_merge", "ev_parquet", "ev_iceberg"])
        .expect(0);
    assert!(!out.stdout.contains("MERGE"), "{}", out.stdout);
    for model in ["ev_merge", "ev_parquet", "ev_iceberg"] {
        assert_eq!(
            p.query(&format!(
                "select id from {{{{ ref('{model}') }}}} order by id"
            )),
            vec![
                serde_json::json!({"id": 1}),
                serde_json::json!({"id": 2}),
                serde_json::json!({"id": 3})
            ],
            "{model}"
        );
    }
    assert_eq!(leftovers(&delta), Vec::<String>::new());
    assert!(!delta.join("part-00000-killed.parquet").exists());
}
