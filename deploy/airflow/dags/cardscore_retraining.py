"""Airflow DAG `cardscore_retraining_trigger`: `cardscore monitor trigger --date D`.

From the bundle's `cardscore_retraining_trigger` job (resources/retraining.job.yml): at 06:00
UTC, after the nightly, for the day that closed (param `date`). It trains and gates a new model
when a counted monitoring metric broke its threshold on k of the last n days; a passing model
becomes the challenger and promotion stays a decision (`cardscore promote`). Failures and a run
still going 6 hours after it was queued (training included) alert like the nightly's.
"""

import sys
from pathlib import Path

# The helper module lives beside this file. Airflow's dag processor puts the DAG bundle's root
# on sys.path, but not every CLI path does (`dags list-import-errors --local`).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from cardscore_airflow import build_dag

dag = build_dag("cardscore_retraining_trigger", "cardscore_retraining_trigger", __doc__, deadline_hours=6,
                tags=["cardscore", "training"])
