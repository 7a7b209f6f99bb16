//! Running rsdbt against a throwaway copy of a project.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const DEFAULT_PROFILE: &str = "fixture:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: warehouse\n      schema: main\n      threads: 2\n";

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with both streams when the exit code is not `code`.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Project {
    /// A copy of `tests/fixtures/<name>`, with the default profile unless it ships its own.
    pub fn fixture(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo_root().join("tests/fixtures").join(name), dir.path());
        if !dir.path().join("profiles.yml").exists() && !dir.path().join("no-profile").exists() {
            std::fs::write(dir.path().join("profiles.yml"), DEFAULT_PROFILE).unwrap();
        }
        Project { dir }
    }

    /// A copy of the example project at the repository root.
    pub fn example() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = repo_root();
        for d in ["models", "macros", "seeds", "snapshots", "data-tests"] {
            if root.join(d).is_dir() {
                copy_dir(&root.join(d), &dir.path().join(d));
            }
        }
        for f in ["project.yml", "profiles.yml"] {
            std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
        }
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Adds `text` at the end of a file of the project (a project file key, a yml entry).
    pub fn append(&self, rel: &str, text: &str) {
        let old = self.read(rel);
        self.write(rel, &(old + text));
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Runs `rsdbt <args>` in the project folder with a clean environment.
    pub fn rsdbt(&self, args: &[&str]) -> Output {
        self.rsdbt_env(args, &[])
    }

    /// [`Self::rsdbt`] with extra environment variables.
    pub fn rsdbt_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.run(Command::new(env!("CARGO_BIN_EXE_rsdbt")), args, env)
    }

    /// Opens the project folder to the user of [`Self::rsdbt_unprivileged`].
    pub fn open_to_all(&self) {
        let status = Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(self.path())
            .status()
            .expect("chmod");
        assert!(status.success());
    }

    /// [`Self::rsdbt`] as an unprivileged user (`nobody`, through util-linux's `setpriv`) when
    /// the tests run as root, whom file permissions do not stop; as the current user otherwise.
    pub fn rsdbt_unprivileged(&self, args: &[&str]) -> Output {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc_geteuid() } != 0 {
            return self.rsdbt(args);
        }
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_rsdbt"));
        self.run(cmd, args, &[])
    }

    fn run(&self, mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = cmd
            .args(args)
            .envs(env.iter().copied())
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("HOME", self.path())
            .env_remove("DBT_PROFILES_DIR")
            .env_remove("RSDBT_PROFILES_DIR")
            .env_remove("RSDBT_WAREHOUSE")
            .env_remove("DBT_PROJECT_DIR")
            .output()
            .expect("run rsdbt");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Rows of a query as JSON objects, through `rsdbt show --output json`.
    pub fn query(&self, sql: &str) -> Vec<serde_json::Value> {
        let out = self
            .rsdbt(&["show", "--inline", sql, "--limit", "-1", "--output", "json"])
            .expect(0);
        let v: serde_json::Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
        v["show"].as_array().unwrap().clone()
    }
}

/// The S3 emulator scripts/test.sh starts: (endpoint, a python with boto3), or None outside CI.
pub fn s3() -> Option<(String, String)> {
    match (
        std::env::var("RSDBT_TEST_S3_ENDPOINT"),
        std::env::var("RSDBT_TEST_S3_PYTHON"),
    ) {
        (Ok(e), Ok(p)) => Some((e, p)),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI needs the S3 emulator (RSDBT_TEST_S3_ENDPOINT); scripts/test.sh starts it")
        }
        _ => {
            eprintln!(
                "NOTICE: skipping an S3 test: no S3 emulator (run scripts/test.sh, which starts one)"
            );
            None
        }
    }
}

/// The keys in `bucket` of the S3 emulator, through `python`'s boto3; `create` makes the bucket
/// first.
pub fn s3_keys(python: &str, endpoint: &str, bucket: &str, create: bool) -> Vec<String> {
    let list = r#"
import boto3, sys
endpoint, bucket, create = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                  aws_secret_access_key="test", region_name="us-east-1")
if create == "1":
    s3.create_bucket(Bucket=bucket)
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    for o in page.get("Contents", []):
        print(o["Key"])
"#;
    let create = if create { "1" } else { "0" };
    run_python(
        python,
        list,
        &[endpoint.as_ref(), bucket.as_ref(), create.as_ref()],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// What `python -c script args...` prints; the test fails with its stderr if it fails.
pub fn run_python(python: &str, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What scripts/test.sh provides in `var` (a server's address, a tool's path), or None outside
/// CI with a notice naming `what`; in CI its absence fails the test.
pub fn provided(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI must provide {what} ({var}): run the tests through scripts/test.sh")
        }
        _ => {
            eprintln!("NOTICE: skipping a test: no {what} (run scripts/test.sh, which starts it)");
            None
        }
    }
}

/// The python with pyiceberg and pyarrow that scripts/test.sh installs.
pub fn pyiceberg() -> Option<String> {
    provided("RSDBT_TEST_PYICEBERG", "pyiceberg")
}

/// The Spark Connect server scripts/test.sh starts (`sc://host:port`, Sail in its
/// local-cluster mode).
pub fn spark() -> Option<String> {
    provided("RSDBT_TEST_SPARK", "Spark Connect server (Sail)")
}

/// Apache Spark 4's Spark Connect server (pyspark's jars on Java 17, a Hive catalog, Parquet
/// tables) that scripts/test.sh starts.
pub fn apache_spark() -> Option<String> {
    provided("RSDBT_TEST_APACHE_SPARK", "Apache Spark Connect server")
}

/// The Kafka-protocol broker scripts/test.sh starts (host:port).
pub fn kafka() -> Option<String> {
    provided("RSDBT_TEST_KAFKA", "Kafka broker")
}

/// The tests' PostgreSQL (started by scripts/test.sh). Outside CI a missing server skips the
/// test with a notice; in CI it is an error.
pub fn pg() -> Option<(String, String, String)> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("RSDBT_TEST_PG_HOST"),
        var("RSDBT_TEST_PG_PORT"),
        var("RSDBT_TEST_PG_USER"),
    ) {
        (Some(h), Some(p), Some(u)) => Some((h, p, u)),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI must provide PostgreSQL: run the tests through scripts/test.sh")
        }
        _ => {
            eprintln!(
                "NOTICE: skipping a PostgreSQL test: no server (run scripts/test.sh, which starts one)"
            );
            None
        }
    }
}

impl Project {
    /// A fixture whose profile targets the tests' PostgreSQL, in a schema of its own.
    pub fn fixture_pg(name: &str) -> Option<Self> {
        let (host, port, user) = pg()?;
        let p = Project::fixture(name);
        let tag: String = p
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let schema = format!("t_{}", tag.to_lowercase());
        let profile = format!(
            "fixture:\n  target: pg\n  outputs:\n    pg:\n      type: postgres\n      host: {host}\n      port: {port}\n      user: {user}\n      password: \"{{{{ env_var('RSDBT_TEST_PG_PASSWORD', '') }}}}\"\n      dbname: postgres\n      schema: {schema}\n      threads: 2\n"
        );
        p.write("profiles.yml", &profile);
        Some(p)
    }
}

/// Runs `sql` (several statements) on the tests' PostgreSQL, as the app database would be
/// loaded; returns the rows of the last statement as text.
pub fn pg_exec(sql: &str) -> Vec<Vec<Option<String>>> {
    let (host, port, user) = pg().expect("pg_exec without a server");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(
            &format!("host={host} port={port} user={user} dbname=postgres"),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut last = Vec::new();
        for m in client.simple_query(sql).await.unwrap() {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                last.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
            }
        }
        last
    })
}

/// A long-running rsdbt process (`--watch`, `docs serve`) and its lines, stdout and stderr
/// together.
pub struct Running {
    pub child: std::process::Child,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Running {
    pub fn start(p: &Project, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rsdbt"))
            .args(args)
            .current_dir(p.path())
            .env("NO_COLOR", "1")
            .env("HOME", p.path())
            .env_remove("DBT_PROFILES_DIR")
            .env_remove("RSDBT_PROFILES_DIR")
            .env_remove("RSDBT_WAREHOUSE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = tx.send(line);
                }
            });
        }
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `text`; returns the lines seen since the last wait.
    pub fn wait_for(&mut self, text: &str) -> String {
        self.wait_for_all(&[text])
    }

    /// Waits until each of `texts` has been seen since the last wait, in any order (stdout and
    /// stderr arrive on two pipes, so their relative order is not fixed).
    pub fn wait_for_all(&mut self, texts: &[&str]) -> String {
        let start = self.seen.len();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    self.seen.push(line);
                    let so_far = self.seen[start..].join("\n");
                    if texts.iter().all(|t| so_far.contains(t)) {
                        return so_far;
                    }
                }
                Err(_) => panic!(
                    "no lines with {texts:?} within 60 s; output:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
