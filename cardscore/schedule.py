"""Scheduler plans from the Databricks bundle: the job definitions are config, written once.

The bundle (databricks.yml + its `include`d resources/*.yml) is the one place that says which
tasks make up a scheduled job, what each runs and in which order: a `spark_python_task`
(python_file + parameters) or a `python_wheel_task` (a console script of the wheel +
parameters), and `depends_on`. Other schedulers derive their tasks from it, so they follow
whatever the bundle says when entry points move: the Airflow DAGs in deploy/airflow call

    <cardscore's python> -m cardscore.schedule --job cardscore_nightly [--bundle PATH] [--config F]

and get the plan as JSON. Each task's argv starts with this interpreter (the scheduler's own
Python never imports cardscore); bundle placeholders are left for the scheduler to map:
`{{job.parameters.NAME}}` (a run parameter) and `${var.NAME}` (a deployment variable).

Retries come from the pipeline settings, the policy `cardscore nightly` applies in-process:
`pipeline.stage_retry[<task key>]`, else `pipeline.retry` (attempts - 1 retries, the first
delay, its growth factor, the longest delay). The bundle's own `max_retries` stay Databricks'.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "databricks.yml"


class PlanError(ValueError):
    """The bundle cannot be turned into a plan (names the job, task or key at fault)."""


@dataclass(frozen=True)
class TaskPlan:
    key: str
    argv: list[str]
    depends_on: list[str]
    retries: int
    retry_delay_seconds: float
    retry_backoff: float  # the delay's growth factor per retry (1: constant)
    max_retry_delay_seconds: float


@dataclass(frozen=True)
class JobPlan:
    job: str
    name: str
    cron: str | None  # 5-field cron in `timezone`, from the bundle's quartz expression
    timezone: str
    max_concurrent_runs: int
    parameters: dict[str, str]  # run parameter -> default
    variables: dict[str, str]  # bundle variable -> default
    workdir: str  # the bundle's folder: tasks run from there
    tasks: list[TaskPlan] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_bundle(bundle: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The bundle with its includes merged, and for each job the file that defines it (its
    relative paths are relative to that file)."""
    root = yaml.safe_load(bundle.read_text()) or {}
    origins: dict[str, Path] = {}
    files = [bundle, *sorted(p for pattern in root.get("include", []) for p in bundle.parent.glob(pattern))]
    for path in files:
        data = root if path == bundle else (yaml.safe_load(path.read_text()) or {})
        for kind, items in (data.get("resources") or {}).items():
            if path != bundle:
                root.setdefault("resources", {}).setdefault(kind, {}).update(items)
            if kind == "jobs":
                origins.update(dict.fromkeys(items, path))
    return root, origins


def quartz_to_cron(expression: str) -> str:
    """Databricks' quartz `sec min hour day month weekday [year]` -> 5-field cron."""
    fields = expression.split()
    if len(fields) not in (6, 7) or fields[0] != "0" or (len(fields) == 7 and fields[6] not in ("*", "?")):
        raise PlanError(f"quartz expression {expression!r}: only whole minutes, any year, are supported")
    return " ".join("*" if f == "?" else f for f in fields[1:6])


def task_argv(task: dict[str, Any], origin: Path, python: str) -> list[str]:
    if "spark_python_task" in task:
        spec = task["spark_python_task"]
        script = (origin.parent / spec["python_file"]).resolve()
        if not script.is_file():
            raise PlanError(f"task {task['task_key']}: {script} does not exist")
        return [python, str(script), *map(str, spec.get("parameters", []))]
    if "python_wheel_task" in task:
        spec = task["python_wheel_task"]
        script = Path(python).parent / spec["entry_point"]
        command = [str(script)] if script.is_file() else [python, "-m", f"{spec['package_name']}.cli"]
        return [*command, *map(str, spec.get("parameters", []))]
    raise PlanError(f"task {task.get('task_key')}: only spark_python_task and python_wheel_task are supported")


def plan(job: str, bundle: Path = DEFAULT_BUNDLE, settings: Any = None, python: str = sys.executable) -> JobPlan:
    """The plan of bundle job `job`; retries from `settings` (loaded the usual way if None)."""
    if settings is None:
        from cardscore.core.config import load_settings

        settings = load_settings()
    root, origins = load_bundle(bundle)
    jobs = (root.get("resources") or {}).get("jobs") or {}
    if job not in jobs:
        raise PlanError(f"no job {job!r} in {bundle}; jobs: {sorted(jobs)}")
    spec = jobs[job]
    schedule = spec.get("schedule") or {}
    tasks = []
    for task in spec.get("tasks", []):
        policy = settings.pipeline.retry_for(task["task_key"])
        tasks.append(TaskPlan(
            key=task["task_key"],
            argv=task_argv(task, origins[job], python),
            depends_on=[d["task_key"] for d in task.get("depends_on", [])],
            retries=policy.max_attempts - 1,
            retry_delay_seconds=policy.backoff_seconds,
            retry_backoff=policy.backoff_multiplier,
            max_retry_delay_seconds=policy.max_backoff_seconds,
        ))
    return JobPlan(
        job=job,
        name=spec.get("name", job),
        cron=quartz_to_cron(schedule["quartz_cron_expression"]) if schedule else None,
        timezone=schedule.get("timezone_id", "UTC"),
        max_concurrent_runs=int(spec.get("max_concurrent_runs", 1)),
        parameters={p["name"]: str(p.get("default", "")) for p in spec.get("parameters", [])},
        variables={name: str(v.get("default", "")) for name, v in (root.get("variables") or {}).items()},
        workdir=str(bundle.parent.resolve()),
        tasks=tasks,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cardscore.schedule", description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="bundle job key, e.g. cardscore_nightly")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="databricks.yml (default: the repository's)")
    parser.add_argument("--config", help="settings file for the retry policy (default: $CARDSCORE_CONFIG, ./cardscore.yaml)")
    args = parser.parse_args(argv)
    from cardscore.core.config import ConfigError, load_settings

    try:
        print(json.dumps(plan(args.job, args.bundle, load_settings(args.config)).to_dict(), indent=2))
    except (PlanError, ConfigError, OSError, KeyError) as exc:
        print(f"cardscore.schedule: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
