//! Airflow 3 with astronomer-cosmos running rsdbt as its dbt executable (the DAGs shipped under
//! examples/airflow): both load modes render one task group per model with its tests in the
//! project's dependency order, `airflow dags test` builds the example, and a failing model
//! fails its task while everything downstream is not run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::{Project, provided, repo_root};

/// The bin folder of the Airflow venv (scripts/test.sh installs it); outside CI a missing
/// Airflow skips with a notice.
fn airflow() -> Option<PathBuf> {
    provided("RSDBT_TEST_AIRFLOW", "Airflow").map(PathBuf::from)
}

/// Airflow with its own SQLite metadata database, the DAGs of examples/airflow, and the
/// project of `p` (its warehouse at the folder the project's default target uses).
struct Airflow {
    bin: PathBuf,
    home: tempfile::TempDir,
    project: PathBuf,
}

impl Airflow {
    fn new(bin: PathBuf, p: &Project) -> Self {
        let a = Airflow {
            bin,
            home: tempfile::tempdir().unwrap(),
            project: p.path().to_path_buf(),
        };
        a.run(&["db", "migrate"]).expect("airflow db migrate");
        a
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        let home = self.home.path();
        c.current_dir(home)
            .env("AIRFLOW_HOME", home)
            .env(
                "AIRFLOW__CORE__DAGS_FOLDER",
                repo_root().join("examples/airflow"),
            )
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env(
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                format!("sqlite:///{}/airflow.db", home.display()),
            )
            .env("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
            .env("RSDBT_BIN", env!("CARGO_BIN_EXE_rsdbt"))
            .env("RSDBT_PROJECT_DIR", &self.project)
            .env("RSDBT_WAREHOUSE", self.project.join("warehouse"));
        c
    }

    /// `airflow <args>`: stdout on success, both streams on failure.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self.command("airflow").args(args).output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(format!(
                "airflow {args:?} failed\n{}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            ))
        }
    }

    /// Each DAG's tasks and their upstream tasks, as Airflow loads the DAG files.
    fn graphs(&self) -> Value {
        let out = self
            .command("python")
            .arg(repo_root().join("tests/airflow/dag_graph.py"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("@@JSON@@"))
            .unwrap_or_else(|| panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
        serde_json::from_str(line).unwrap()
    }

    /// The states of the tasks of the DAG's latest run.
    fn last_run_states(&self, dag: &str) -> BTreeMap<String, String> {
        let json_line = |s: String| -> Value {
            serde_json::from_str(s.lines().rfind(|l| l.starts_with('[')).unwrap()).unwrap()
        };
        let runs = json_line(self.run(&["dags", "list-runs", dag, "-o", "json"]).unwrap());
        let latest = runs
            .as_array()
            .unwrap()
            .iter()
            .max_by_key(|r| r["start_date"].as_str().unwrap_or("").to_string())
            .unwrap();
        let states = json_line(
            self.run(&[
                "tasks",
                "states-for-dag-run",
                dag,
                latest["run_id"].as_str().unwrap(),
                "-o",
                "json",
            ])
            .unwrap(),
        );
        states
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["task_id"].as_str().unwrap().to_string(),
                    t["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

/// The example with its project file under dbt's name (cosmos looks for dbt_project.yml), and
/// a package a gold model calls, so cosmos' `deps` (in each task's temporary copy) has work.
fn example_for_cosmos() -> Project {
    let p = Project::example();
    std::fs::rename(
        p.path().join("project.yml"),
        p.path().join("dbt_project.yml"),
    )
    .unwrap();
    p.write("packages.yml", "packages:\n  - local: pkgs/helpers\n");
    p.write(
        "pkgs/helpers/dbt_project.yml",
        "name: helpers\nversion: \"1.0.0\"\nconfig-version: 2\n",
    );
    p.write(
        "pkgs/helpers/macros/column.sql",
        "{% macro column(name) %}{{ name }}{% endmacro %}\n",
    );
    let model = p.read("models/gold/gld_top_posters.sql");
    p.write(
        "models/gold/gld_top_posters.sql",
        &model.replacen(
            "    user_name,",
            "    {{ helpers.column('user_name') }} as user_name,",
            1,
        ),
    );
    assert_ne!(p.read("models/gold/gld_top_posters.sql"), model);
    p
}

/// cosmos' task of a model: `<model>.run` in a group with its tests, `<model>_run` alone.
fn run_task<'a>(tasks: &'a serde_json::Map<String, Value>, model: &str) -> &'a str {
    [format!("{model}.run"), format!("{model}_run")]
        .into_iter()
        .find_map(|t| tasks.get_key_value(&t).map(|(k, _)| k.as_str()))
        .unwrap_or_else(|| panic!("no task for model {model} in {:?}", tasks.keys()))
}

fn rows(p: &Project, model: &str) -> Vec<Value> {
    p.query(&format!(
        "select * from {{{{ ref('{model}') }}}} order by 1, 2"
    ))
}

#[test]
fn cosmos_renders_and_runs_the_example_with_rsdbt() {
    let Some(bin) = airflow() else {
        return;
    };
    let p = example_for_cosmos();
    p.rsdbt(&["deps"]).expect(0);
    p.rsdbt(&["parse"]).expect(0);
    let af = Airflow::new(bin, &p);
    let graphs = af.graphs();
    assert_eq!(graphs["import_errors"], serde_json::json!({}), "{graphs}");

    // The models and their parents, as rsdbt lists them.
    let listed = p
        .rsdbt(&[
            "ls",
            "--resource-type",
            "model",
            "--output",
            "json",
            "--output-keys",
            "name",
            "depends_on",
        ])
        .expect(0)
        .stdout;
    let models: Vec<(String, Vec<String>)> = listed
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let parents = v["depends_on"]["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|n| {
                    n.as_str()?
                        .strip_prefix("model.pinboard.")
                        .map(str::to_string)
                })
                .collect();
            (v["name"].as_str().unwrap().to_string(), parents)
        })
        .collect();
    assert!(models.len() >= 10);
    for dag in ["rsdbt_cosmos_ls", "rsdbt_cosmos_manifest"] {
        let tasks = graphs["dags"][dag]
            .as_object()
            .unwrap_or_else(|| panic!("no DAG {dag} in {graphs}"));
        for (model, parents) in &models {
            let task = run_task(tasks, model);
            let upstream: Vec<&str> = tasks[task]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            for parent in parents {
                // A parent's tests run before its children (TestBehavior.AFTER_EACH).
                let after = if tasks.contains_key(&format!("{parent}.test")) {
                    format!("{parent}.test")
                } else {
                    run_task(tasks, parent).to_string()
                };
                assert!(
                    upstream.contains(&after.as_str()),
                    "{dag}: {task} runs after {upstream:?}, not after {after}"
                );
            }
            if tasks.contains_key(&format!("{model}.test")) {
                assert_eq!(tasks[&format!("{model}.test")], serde_json::json!([task]));
            }
        }
        for seed in ["geo", "pins", "users"] {
            assert!(
                tasks.contains_key(&format!("{seed}_seed")),
                "{dag}: no seed task {seed}"
            );
        }
    }
    // The same graphs from both load modes.
    assert_eq!(
        graphs["dags"]["rsdbt_cosmos_ls"],
        graphs["dags"]["rsdbt_cosmos_manifest"]
    );
    // The plain BashOperator DAGs load too.
    assert_eq!(
        graphs["dags"]["rsdbt_layers"]["gold"],
        serde_json::json!(["silver"])
    );

    // A run builds the example: the gold rows equal a plain `rsdbt build`'s.
    af.run(&["dags", "test", "rsdbt_cosmos_ls"]).unwrap();
    let states = af.last_run_states("rsdbt_cosmos_ls");
    assert!(states.values().all(|s| s == "success"), "{states:?}");
    let reference = Project::example();
    reference.rsdbt(&["build"]).expect(0);
    for gold in [
        "gld_top_posters",
        "gld_category_by_country",
        "gld_user_cohorts",
    ] {
        let built = rows(&p, gold);
        assert!(!built.is_empty());
        assert_eq!(built, rows(&reference, gold), "{gold}");
    }

    // A failing model fails its task; what depends on it does not run.
    p.write(
        "models/silver/slv_pins.sql",
        "select no_such_column from {{ ref('brz_pins') }}\n",
    );
    assert!(af.run(&["dags", "test", "rsdbt_cosmos_ls"]).is_err());
    let states = af.last_run_states("rsdbt_cosmos_ls");
    assert_eq!(states["slv_pins.run"], "failed", "{states:?}");
    for downstream in [
        "slv_pins.test",
        "int_pins_enriched_run",
        "gld_top_posters_run",
    ] {
        assert_eq!(
            states[downstream], "upstream_failed",
            "{downstream}: {states:?}"
        );
    }
    assert_eq!(states["slv_users.test"], "success");
}
