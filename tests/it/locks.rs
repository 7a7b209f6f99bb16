//! The run lock: a second run on the same target stops with a message naming the first (or
//! waits with --wait-for-lock), a killed run's lock never blocks the next, read-only commands
//! are not blocked, and two runs started together both finish.

use std::io::Write;

use serde_json::json;

use crate::harness::{Project, Running, pg, pg_exec};

/// Holds the warehouse's lock as another run would, with its description.
fn hold(p: &Project) -> std::fs::File {
    let dir = p.path().join("warehouse");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join(".rsdbt.lock"))
        .unwrap();
    f.lock().unwrap();
    let other = json!({"pid": 4242, "host": "elsewhere", "command": "rsdbt build --full-refresh", "started_at": "2026-01-01T00:00:00Z"});
    f.write_all(other.to_string().as_bytes()).unwrap();
    f
}

#[test]
fn a_second_run_names_the_first_and_writes_nothing() {
    let p = Project::fixture("check_shop");
    let held = hold(&p);
    let out = p.rsdbt(&["seed"]).expect(2);
    assert!(
        out.stderr.contains("another rsdbt run is writing to target 'dev': pid 4242 on elsewhere, `rsdbt build --full-refresh`, started 2026-01-01T00:00:00Z"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--wait-for-lock"));
    assert!(!p.path().join("warehouse/main").exists(), "nothing written");
    // Reading is not writing: ls, compile and show run while the lock is held.
    p.rsdbt(&["ls"]).expect(0);
    p.rsdbt(&["compile", "--static-analysis", "off"]).expect(0);
    p.rsdbt(&["show", "--inline", "select 1 as x"]).expect(0);

    // --wait-for-lock waits, then runs once the other run is done.
    let mut waiting = Running::start(&p, &["seed", "--wait-for-lock"]);
    waiting.wait_for("Waiting for the run holding target 'dev' to finish: pid 4242");
    drop(held);
    waiting.wait_for("Completed successfully");
    assert!(waiting.child.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(p.path().join("warehouse/.rsdbt.lock")).unwrap(),
        "",
        "a finished run leaves no holder behind"
    );
}

#[test]
fn a_killed_runs_lock_is_taken_over() {
    let p = Project::fixture("check_shop");
    // What a run killed with SIGKILL leaves: its description, and no lock (the kernel
    // released it with the process).
    drop(hold(&p));
    let out = p.rsdbt(&["seed"]).expect(0);
    assert!(
        out.stdout
            .contains("The last run on target 'dev' (pid 4242 on elsewhere"),
        "{}",
        out.stdout
    );
    // And a real SIGKILL in the middle of a run.
    let mut run = Running::start(&p, &["build"]);
    run.wait_for("START");
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    p.rsdbt(&["build"]).expect(0);
}

#[test]
fn two_runs_started_together_both_finish() {
    let p = Project::fixture("check_shop");
    let bin = env!("CARGO_BIN_EXE_rsdbt");
    let start = || {
        std::process::Command::new(bin)
            .args(["build", "--wait-for-lock"])
            .current_dir(p.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        p.query("select name, total from {{ ref('customer_totals') }} order by name"),
        vec![
            json!({"name": "Ada", "total": 12.5}),
            json!({"name": "Grace", "total": 7.25})
        ]
    );
}

#[test]
fn postgres_runs_lock_with_an_advisory_lock() {
    let Some(p) = Project::fixture_pg("check_shop") else {
        return;
    };
    let (host, port, user) = pg().unwrap();
    let schema = p
        .read("profiles.yml")
        .lines()
        .find_map(|l| l.trim().strip_prefix("schema: ").map(str::to_string))
        .unwrap();
    // Another session holds the target's lock.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let other = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(
            &format!(
                "host={host} port={port} user={user} dbname=postgres application_name=nightly-build"
            ),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        client
            .execute(
                "select pg_advisory_lock(hashtext('rsdbt'), hashtext($1))",
                &[&format!("postgres.{schema}")],
            )
            .await
            .unwrap();
        client
    });
    let out = p.rsdbt(&["seed"]).expect(2);
    assert!(
        out.stderr
            .contains("another rsdbt run is writing to target 'pg': session 'nightly-build'"),
        "{}",
        out.stderr
    );
    drop(other);
    drop(rt);
    p.rsdbt(&["build"]).expect(0);
    // The run released its lock: a session can take it at once.
    let got = pg_exec(&format!(
        "select pg_try_advisory_lock(hashtext('rsdbt'), hashtext('postgres.{schema}'))"
    ));
    assert_eq!(got[0][0].as_deref(), Some("t"));
}

#[test]
fn a_warehouse_on_s3_locks_with_a_conditional_write() {
    let Some((endpoint, python)) = crate::harness::s3() else {
        return;
    };
    let p = Project::fixture("check_shop");
    let bucket = format!("rsdbt-lock-{}", std::process::id());
    let keys = |create: bool| crate::harness::s3_keys(&python, &endpoint, &bucket, create);
    keys(true);
    p.write(
        "profiles.yml",
        &format!(
            "fixture:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: s3://{bucket}/lake/\n      schema: main\n      threads: 2\n      s3: {{endpoint: \"{endpoint}\", allow_http: true, region: us-east-1, access_key_id: test, secret_access_key: test}}\n"
        ),
    );
    p.rsdbt(&["seed"]).expect(0);
    assert!(
        !keys(false).iter().any(|k| k.ends_with(".rsdbt.lock")),
        "a finished run removes its lock"
    );
    // Another run's lock, as it writes it: refused while its heartbeat is fresh.
    let put = |heartbeat_age: i64| {
        let script = r#"
import boto3, json, sys, time
endpoint, bucket, age = sys.argv[1], sys.argv[2], int(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
body = {"pid": 4242, "host": "elsewhere", "command": "rsdbt build --full-refresh",
        "started_at": "2026-01-01T00:00:00Z", "heartbeat": int(time.time()) - age}
s3.put_object(Bucket=bucket, Key="lake/.rsdbt.lock", Body=json.dumps(body).encode())
"#;
        crate::harness::run_python(
            &python,
            script,
            &[
                endpoint.as_ref(),
                bucket.as_ref(),
                heartbeat_age.to_string().as_ref(),
            ],
        );
    };
    put(0);
    let out = p.rsdbt(&["seed"]).expect(2);
    assert!(
        out.stderr
            .contains("another rsdbt run is writing to target 'dev': pid 4242 on elsewhere"),
        "{}",
        out.stderr
    );
    // A lock whose heartbeat stopped an hour ago belonged to a run that died: taken over.
    put(3600);
    let out = p.rsdbt(&["seed"]).expect(0);
    assert!(
        out.stdout
            .contains("The last run on target 'dev' (pid 4242 on elsewhere"),
        "{}",
        out.stdout
    );
    assert!(!keys(false).iter().any(|k| k.ends_with(".rsdbt.lock")));
}
