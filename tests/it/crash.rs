//! Crash trials: a build is killed with SIGKILL at a random moment, then an independent reader
//! (delta-rs' Python package, tests/crash/read_tables.py) checks that every table is readable
//! and holds either its rows from before the build or the rows the build would have written,
//! and the next build finishes with the right rows and no temporary files left behind.
//! `RSDBT_CRASH_TRIALS` sets the number of trials (10 here; scripts/crash_trials.sh runs 100+).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Project, run_python};

/// The reader's Python (scripts/test.sh installs `deltalake` into a cached venv); outside CI
/// a missing reader skips the trials with a notice.
fn reader() -> Option<String> {
    match std::env::var("RSDBT_TEST_DELTALAKE")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(p) => Some(p),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI must provide the deltalake reader: run the tests through scripts/test.sh")
        }
        None => {
            eprintln!(
                "NOTICE: skipping the crash trials: no deltalake reader (run scripts/test.sh)"
            );
            None
        }
    }
}

/// Every Delta table of the project's warehouse, as the independent reader sees it.
fn tables(python: &str, p: &Project) -> BTreeMap<String, Value> {
    let script = crate::harness::repo_root().join("tests/crash/read_tables.py");
    let out = run_python(
        python,
        &std::fs::read_to_string(script).unwrap(),
        &[p.path().join("warehouse").as_os_str()],
    );
    serde_json::from_str(out.lines().last().unwrap()).unwrap()
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

/// Starts `rsdbt build` in `p` and kills it with SIGKILL after `delay`; whether it was still
/// running.
fn build_killed_after(p: &Project, delay: Duration) -> bool {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rsdbt"))
        .arg("build")
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

#[test]
fn killed_builds_leave_whole_tables() {
    let Some(python) = reader() else {
        return;
    };
    let trials: usize = std::env::var("RSDBT_CRASH_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let p = Project::fixture("inc_shop");
    p.rsdbt(&["build"]).expect(0);
    // The same history without kills: what each build should leave (incremental models keep
    // their past, so the reference is built step by step too, not from scratch).
    let reference = Project::fixture("inc_shop");
    reference.rsdbt(&["build"]).expect(0);
    // A pseudo-random kill moment per trial, reproducible from the trial's number.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut killed_mid_run = 0;
    for n in 0..trials {
        let before = tables(&python, &p);
        p.append("seeds/events.csv", &new_events(n));
        reference.append("seeds/events.csv", &new_events(n));
        reference.rsdbt(&["build"]).expect(0);
        let after = tables(&python, &reference);

        let delay = next_delay(&mut state, 900);
        if build_killed_after(&p, delay) {
            killed_mid_run += 1;
        }

        let mid = tables(&python, &p);
        for (table, seen) in &mid {
            assert!(
                seen.get("error").is_none(),
                "trial {n} ({delay:?}): {table} unreadable: {seen}"
            );
            let ok = [before.get(table), after.get(table)].contains(&Some(seen));
            assert!(
                ok,
                "trial {n} (killed after {delay:?}): {table} holds neither its old nor its new rows: {seen}\nold: {:?}\nnew: {:?}",
                before.get(table),
                after.get(table)
            );
        }
        // The next run finishes, with the rows a clean build gives, and cleans up.
        let out = p.rsdbt(&["build"]);
        assert_eq!(
            out.code, 0,
            "trial {n}: the run after the kill failed\n{}\n{}",
            out.stdout, out.stderr
        );
        assert_eq!(
            tables(&python, &p),
            after,
            "trial {n}: rows after the next run"
        );
        let left: Vec<String> = [
            leftovers(&p.path().join("warehouse")),
            leftovers(&p.path().join("target")),
        ]
        .concat();
        assert!(left.is_empty(), "trial {n}: left behind {left:?}");
    }
    eprintln!("crash trials: {trials} trials, {killed_mid_run} killed mid-run, 0 failures");
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
    let (schema, ref_schema) = (schema_of(&p), schema_of(&reference));
    let trials: usize = std::env::var("RSDBT_CRASH_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    p.rsdbt(&["build"]).expect(0);
    reference.rsdbt(&["build"]).expect(0);
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut killed_mid_run = 0;
    for n in 0..trials {
        let before = pg_tables(&schema);
        p.append("seeds/events.csv", &new_events(n));
        reference.append("seeds/events.csv", &new_events(n));
        reference.rsdbt(&["build"]).expect(0);
        let after = pg_tables(&ref_schema);
        let delay = next_delay(&mut state, 250);
        if build_killed_after(&p, delay) {
            killed_mid_run += 1;
        }
        for (table, seen) in pg_tables(&schema) {
            if let (Some(b), Some(a)) = (before.get(&table), after.get(&table)) {
                assert!(
                    seen == *b || seen == *a,
                    "trial {n} (killed after {delay:?}): {table} holds neither its old nor its new rows"
                );
            }
        }
        let out = p.rsdbt(&["build"]);
        assert_eq!(
            out.code, 0,
            "trial {n}: the run after the kill failed\n{}\n{}",
            out.stdout, out.stderr
        );
        let now = pg_tables(&schema);
        assert_eq!(now, after, "trial {n}: rows after the next run");
        assert!(
            now.keys()
                .all(|t| !t.contains("dbt_tmp") && !t.contains("dbt_backup")),
            "trial {n}: temporary relations left: {:?}",
            now.keys()
        );
    }
    eprintln!(
        "crash trials on PostgreSQL: {trials} trials, {killed_mid_run} killed mid-run, 0 failures"
    );
}
