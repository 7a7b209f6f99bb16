"""rsdbt without cosmos: plain BashOperators.

`rsdbt_build` runs the whole project in one task (`rsdbt build`: seeds, models, snapshots and
tests in dependency order; a failing test skips what depends on its model). `rsdbt_layers`
runs one task per medallion layer (`--select` per folder), so a failure stops the layers
downstream of it and a retry starts from the failed layer.

Settings as in rsdbt_cosmos.py: RSDBT_BIN, RSDBT_PROJECT_DIR, RSDBT_WAREHOUSE.
"""

import os
import shutil
from datetime import datetime

from airflow import DAG
from airflow.providers.standard.operators.bash import BashOperator

# rsdbt runs one at a time per warehouse (a run lock): tasks Airflow starts in parallel wait
# for each other instead of failing.
os.environ.setdefault("RSDBT_WAIT_FOR_LOCK", "true")
PROJECT = os.environ.get("RSDBT_PROJECT_DIR", "/opt/rsdbt/project")
RSDBT = os.environ.get("RSDBT_BIN") or shutil.which("rsdbt") or "/usr/local/bin/rsdbt"
# rsdbt exits 1 when a node fails and 2 when the run cannot start: both fail the task.
base = f"{RSDBT} --project-dir {PROJECT} --profiles-dir {PROJECT}"

with DAG(
    "rsdbt_build", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["rsdbt"]
):
    BashOperator(task_id="build", bash_command=f"{base} build")

with DAG(
    "rsdbt_layers", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, tags=["rsdbt"]
):
    layers = [
        BashOperator(task_id=layer, bash_command=f"{base} build --select {selector}")
        for layer, selector in [
            ("seeds", "resource_type:seed"),
            ("bronze", "path:models/bronze"),
            ("silver", "path:models/silver"),
            ("gold", "path:models/gold"),
        ]
    ]
    for upstream, downstream in zip(layers, layers[1:]):
        upstream >> downstream
