"""The Databricks Asset Bundle (databricks.yml + resources/*.yml) that schedules the nightly
pipeline: parsed and checked against the code it calls. (The Databricks CLI's own
`bundle validate` needs a workspace; this checks what can be checked offline.)"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cardscore.jobs.nightly import NIGHTLY_STAGES

from cardscore.core.stage import days_from_args, job_parser

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle() -> dict:
    root = yaml.safe_load((REPO / "databricks.yml").read_text())
    for pattern in root["include"]:
        for path in sorted(REPO.glob(pattern)):
            resources = yaml.safe_load(path.read_text())["resources"]
            for kind, items in resources.items():
                root.setdefault("resources", {}).setdefault(kind, {}).update(items)
    return root


def nightly_tasks(bundle: dict) -> list[dict]:
    return bundle["resources"]["jobs"]["cardscore_nightly"]["tasks"]


def substitute(argument: str, bundle: dict) -> str:
    """Resolve the bundle's ${var.x} and the job's {{job.parameters.date}} like Databricks would."""
    job = bundle["resources"]["jobs"]["cardscore_nightly"]
    date_default = next(p["default"] for p in job["parameters"] if p["name"] == "date")
    argument = argument.replace("{{job.parameters.date}}", date_default)
    return re.sub(r"\$\{var\.(\w+)\}", lambda m: bundle["variables"][m.group(1)]["default"], argument)


def test_every_variable_and_target_is_defined(bundle: dict) -> None:
    text = "\n".join(p.read_text() for p in [REPO / "databricks.yml", *REPO.glob("resources/*.yml")])
    used = set(re.findall(r"\$\{var\.(\w+)\}", text))
    assert used <= set(bundle["variables"]), f"undefined bundle variables: {used - set(bundle['variables'])}"
    assert {"dev", "prod"} <= set(bundle["targets"])


def test_nightly_tasks_follow_the_pipeline_stages_in_order(bundle: dict) -> None:
    tasks = nightly_tasks(bundle)
    assert [t["task_key"] for t in tasks] == [s.name for s in NIGHTLY_STAGES]
    for previous, task in itertools.pairwise(tasks):
        assert task["depends_on"] == [{"task_key": previous["task_key"]}], task["task_key"]


def test_each_task_calls_an_existing_job_with_arguments_it_accepts(bundle: dict) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)  # the job parameter's default
    for task in nightly_tasks(bundle):
        spec = task["spark_python_task"]
        script = (REPO / "resources" / spec["python_file"]).resolve()
        assert script.is_file(), f"{task['task_key']}: {script} does not exist"
        assert "def main(" in script.read_text(), f"{script.name} has no main() entry point"
        args = job_parser(task["task_key"]).parse_args([substitute(a, bundle) for a in spec["parameters"]])
        days = [d + timedelta(days=args.shift_days) for d in days_from_args(args)]
        assert args.config == bundle["variables"]["cardscore_config"]["default"]
        # The night of D: snapshot and online store for D+1, everything else for D itself.
        expected_shift = 1 if task["task_key"] in ("features", "materialize") else 0
        assert days == [yesterday + timedelta(days=expected_shift)], task["task_key"]


def test_schedule_runs_once_a_night_in_utc(bundle: dict) -> None:
    job = bundle["resources"]["jobs"]["cardscore_nightly"]
    assert job["schedule"]["timezone_id"] == "UTC"
    assert job["max_concurrent_runs"] == 1  # two nights must not publish the same tables at once
    fields = job["schedule"]["quartz_cron_expression"].split()
    assert len(fields) in (6, 7) and fields[3:5] == ["*", "*"]
