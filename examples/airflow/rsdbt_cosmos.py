"""rsdbt as astronomer-cosmos' dbt executable: one Airflow task group per model (its run, then
its tests), in the project's dependency order.

Two DAGs over the same project: `rsdbt_cosmos_ls` renders the graph from `rsdbt ls`
(LoadMode.DBT_LS), `rsdbt_cosmos_manifest` from `target/manifest.json` (LoadMode.DBT_MANIFEST;
run `rsdbt parse` after each deploy so it is there).

Settings (environment variables of the Airflow workers):
  RSDBT_BIN          the rsdbt binary (default: `rsdbt` on PATH)
  RSDBT_PROJECT_DIR  the project folder (default: /opt/rsdbt/project)
  RSDBT_WAREHOUSE    where the example's `dev` target keeps its tables; make it absolute
                     (cosmos runs each task in a temporary copy of the project)
"""

import os
import shutil
from datetime import datetime
from pathlib import Path

from cosmos import DbtDag, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

# rsdbt runs one at a time per warehouse (a run lock): tasks Airflow starts in parallel wait
# for each other instead of failing.
os.environ.setdefault("RSDBT_WAIT_FOR_LOCK", "true")
PROJECT = Path(os.environ.get("RSDBT_PROJECT_DIR", "/opt/rsdbt/project"))
RSDBT = os.environ.get("RSDBT_BIN") or shutil.which("rsdbt") or "/usr/local/bin/rsdbt"
# rsdbt's own project file is project.yml; the manifest may live under another target-path.
MANIFEST = PROJECT / os.environ.get("RSDBT_TARGET_PATH", "target/rsdbt") / "manifest.json"

profile = ProfileConfig(
    profile_name="pinboard",
    target_name="dev",
    profiles_yml_filepath=PROJECT / "profiles.yml",
)
# A subprocess per task: rsdbt is a binary, not dbt's Python runner.
execution = ExecutionConfig(
    execution_mode=ExecutionMode.LOCAL,
    invocation_mode=InvocationMode.SUBPROCESS,
    dbt_executable_path=RSDBT,
)


def rsdbt_dag(dag_id: str, load_method: LoadMode, **project) -> DbtDag:
    return DbtDag(
        dag_id=dag_id,
        project_config=ProjectConfig(dbt_project_path=PROJECT, **project),
        profile_config=profile,
        execution_config=execution,
        render_config=RenderConfig(
            load_method=load_method,
            test_behavior=TestBehavior.AFTER_EACH,
            dbt_executable_path=RSDBT,
            invocation_mode=InvocationMode.SUBPROCESS,
        ),
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        tags=["rsdbt"],
    )


rsdbt_cosmos_ls = rsdbt_dag("rsdbt_cosmos_ls", LoadMode.DBT_LS)

if MANIFEST.exists():
    rsdbt_cosmos_manifest = rsdbt_dag(
        "rsdbt_cosmos_manifest", LoadMode.DBT_MANIFEST, manifest_path=MANIFEST
    )
