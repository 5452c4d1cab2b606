"""Shared by the cardscore DAGs (not a DAG itself: .airflowignore keeps the processor off it).

The DAGs run in Airflow's own virtual environment and never import cardscore: every task is a
subprocess of cardscore's interpreter, so the two sets of pins never mix. Their tasks come from
the Databricks bundle (job definitions as config) through `python -m cardscore.schedule`,
which that interpreter runs when the DAG file is parsed (~0.2 s).

Environment of the Airflow processes (dag processor, workers, triggerer):
  CARDSCORE_PYTHON   cardscore's interpreter (default: <repo>/.venv/bin/python)
  CARDSCORE_BUNDLE   the bundle's databricks.yml (default: <repo>/databricks.yml)
  CARDSCORE_CONFIG   the settings file: the default of the `cardscore_config` bundle variable,
                     and where the plan's retry policy (pipeline.retry) is read
  CARDSCORE_ALERT_WEBHOOK_URL  optional: failures and missed deadlines are POSTed there as JSON
A bundle variable `${var.name}` becomes the DAG param `name`, whose default is the environment
variable NAME (upper case) when set, else the bundle's default; `{{job.parameters.date}}`
becomes the param `date`, by default the day before the run's logical date (the day that closed).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
PYTHON = os.environ.get("CARDSCORE_PYTHON", str(REPO / ".venv" / "bin" / "python"))
BUNDLE = os.environ.get("CARDSCORE_BUNDLE", str(REPO / "databricks.yml"))
WEBHOOK_ENV = "CARDSCORE_ALERT_WEBHOOK_URL"

# The day that closed: a run's `date` param if given, else the day before its logical date
# (runs without a logical date fall back to the jobs' own `yesterday`, UTC).
DAY_TEMPLATE = ("{{ params.date if params.date else (macros.ds_add(ds, -1) "
                "if ds is defined and ds else 'yesterday') }}")

log = logging.getLogger("cardscore.airflow")
_PLACEHOLDER = re.compile(r"\{\{\s*job\.parameters\.(\w+)\s*\}\}|\$\{var\.(\w+)\}")


def load_plan(job: str) -> dict[str, Any]:
    """The bundle job's plan from cardscore's interpreter (errors become DAG import errors)."""
    result = subprocess.run(
        [PYTHON, "-m", "cardscore.schedule", "--job", job, "--bundle", BUNDLE],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{PYTHON} -m cardscore.schedule --job {job} failed ({result.returncode}): "
                           f"{result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout)


def param_defaults(plan: dict[str, Any]) -> dict[str, Any]:
    """DAG params: the run parameters (None: derived from the logical date) and the variables."""
    params: dict[str, Any] = dict.fromkeys(plan["parameters"])
    for name, default in plan["variables"].items():
        params[name] = os.environ.get(name.upper(), default)
    return params


def bash_command(argv: list[str]) -> tuple[str, dict[str, str]]:
    """A shell command for `argv` whose placeholders are environment variables (templated by
    Airflow), so a value is never re-parsed by the shell."""
    env: dict[str, str] = {}

    def word(token: str) -> str:
        parts, last = [], 0
        for match in _PLACEHOLDER.finditer(token):
            parts.append(shlex.quote(token[last:match.start()]) if match.start() > last else "")
            run_param, variable = match.groups()
            name = f"CARDSCORE_DAG_{(run_param or variable).upper()}"
            env[name] = DAY_TEMPLATE if run_param == "date" else "{{ params.%s }}" % (run_param or variable)
            parts.append(f'"${{{name}}}"')
            last = match.end()
        if last < len(token) or not parts:
            parts.append(shlex.quote(token[last:]))
        return "".join(parts)

    return "exec " + " ".join(word(t) for t in argv), env


def retry_arguments(task: dict[str, Any]) -> dict[str, Any]:
    """Airflow's retry arguments from the plan (the pipeline settings' retry policy)."""
    return {
        "retries": task["retries"],
        "retry_delay": timedelta(seconds=task["retry_delay_seconds"]),
        "retry_exponential_backoff": task["retry_backoff"] if task["retry_backoff"] != 1 else 0,
        "max_retry_delay": timedelta(seconds=task["max_retry_delay_seconds"]),
    }


# ------------------------------------------------------------------------------ callbacks


def post_alert(payload: dict[str, Any]) -> None:
    """Log the alert as one JSON line; POST it to $CARDSCORE_ALERT_WEBHOOK_URL if set. Never
    raises: an unreachable webhook must not change the task's outcome."""
    log.error("cardscore.alert %s", json.dumps(payload, sort_keys=True, default=str))
    url = os.environ.get(WEBHOOK_ENV)
    if not url:
        return
    request = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
    except Exception as exc:  # logged without the URL: it may carry a token
        log.error("cardscore.alert webhook failed: %s", type(exc).__name__)


def on_task_failure(context: dict[str, Any]) -> None:
    """Task-level on_failure_callback: runs in the worker after the last retry failed."""
    ti = context["ti"]
    exception = context.get("exception")
    post_alert({
        "source": "airflow", "event": "task_failed", "dag_id": ti.dag_id, "task_id": ti.task_id,
        "run_id": ti.run_id, "try_number": ti.try_number,
        "logical_date": str(context.get("logical_date")),
        "error": f"{type(exception).__name__}: {exception}"[:500] if exception else None,
    })


async def on_deadline_missed(**kwargs: Any) -> None:
    """The DAG's DeadlineAlert callback (Airflow 3 replaced SLAs by deadline alerts); runs in
    the triggerer."""
    context = kwargs.get("context") or {}
    dag_run = context.get("dag_run") or {}
    post_alert({
        "source": "airflow", "event": "deadline_missed", "dag_id": kwargs.get("dag_id"),
        "run_id": getattr(dag_run, "run_id", None) or (dag_run.get("run_id") if isinstance(dag_run, dict) else None),
        "deadline": kwargs.get("deadline"),
    })


def build_dag(job: str, dag_id: str, doc: str, deadline_hours: float, tags: list[str]) -> Any:
    """A DAG with one BashOperator per task of bundle job `job`, wired like its depends_on."""
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, AsyncCallback, DeadlineAlert, DeadlineReference
    from airflow.timetables.trigger import CronTriggerTimetable

    plan = load_plan(job)
    schedule = CronTriggerTimetable(plan["cron"], timezone=plan["timezone"]) if plan["cron"] else None
    dag = DAG(
        dag_id=dag_id,
        description=f"{plan['name']}: tasks of bundle job {job}",
        doc_md=doc,
        schedule=schedule,
        start_date=datetime(2018, 1, 1, tzinfo=UTC),  # catchup=False: only runs from now on
        catchup=False,
        max_active_runs=plan["max_concurrent_runs"],
        params=param_defaults(plan),
        tags=tags,
        deadline=DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=timedelta(hours=deadline_hours),
            callback=AsyncCallback(on_deadline_missed, kwargs={"dag_id": dag_id}),
        ),
        default_args={"on_failure_callback": on_task_failure},
    )
    operators = {}
    for task in plan["tasks"]:
        command, env = bash_command(task["argv"])
        operators[task["key"]] = BashOperator(
            task_id=task["key"], bash_command=command, env=env, append_env=True, cwd=plan["workdir"],
            dag=dag, **retry_arguments(task),
        )
    for task in plan["tasks"]:
        for upstream in task["depends_on"]:
            operators[upstream] >> operators[task["key"]]
    return dag
