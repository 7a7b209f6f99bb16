"""Loads the DAGs of AIRFLOW__CORE__DAGS_FOLDER as Airflow does and prints, as JSON, the import
errors and each DAG's tasks with their upstream tasks (for tests/it/airflow.rs)."""

import json
import os
import sys

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag

bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
out = {
    "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {
        dag_id: {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}
        for dag_id, dag in bag.dags.items()
    },
}
sys.stdout.write("@@JSON@@" + json.dumps(out) + "\n")
