"""Airflow DAG `cardscore_nightly`: the nightly pipeline, one task per stage.

The tasks, their commands (the same entry points the Databricks job runs, `--shift-days 1` for
the two that prepare tomorrow), their order and the schedule (02:30 UTC) come from the bundle's
`cardscore_nightly` job (resources/nightly.job.yml); retries from the pipeline settings
(`pipeline.retry`, per stage `pipeline.stage_retry`). Each task runs the stage for the day that
closed (param `date`, by default the day before the logical date) in cardscore's own
interpreter. A task that fails after its retries calls `on_task_failure` (JSON log line and the
alert webhook); a run still going 4 hours after it was queued calls `on_deadline_missed` (an
Airflow 3 deadline alert: Airflow 3 removed SLAs). Stages re-run idempotently: clear a failed
task to resume there.

    airflow dags test cardscore_nightly 2018-05-02      # runs the night of 2018-05-01
"""

import sys
from pathlib import Path

# The helper module lives beside this file. Airflow's dag processor puts the DAG bundle's root
# on sys.path, but not every CLI path does (`dags list-import-errors --local`).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from cardscore_airflow import build_dag

dag = build_dag("cardscore_nightly", "cardscore_nightly", __doc__, deadline_hours=4,
                tags=["cardscore", "nightly"])
