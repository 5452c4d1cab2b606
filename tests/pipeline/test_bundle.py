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

from cardscore.core.days import resolve_days
from cardscore.core.runner import build_parser, stage_options
from cardscore.jobs.nightly.pipeline import NIGHTLY

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


def test_nightly_tasks_follow_the_pipeline_steps_in_order(bundle: dict) -> None:
    tasks = nightly_tasks(bundle)
    assert [t["task_key"] for t in tasks] == [s.name for s in NIGHTLY.steps]
    for previous, task in itertools.pairwise(tasks):
        assert task["depends_on"] == [{"task_key": previous["task_key"]}], task["task_key"]


def test_each_task_runs_its_step_with_the_days_and_options_of_the_nightly(bundle: dict) -> None:
    """Every task's real argument list through the stage's real parser (the one its entry file
    and `cardscore run` use): the same entry, days and options as the nightly composition's
    step, so a scheduled night does what `cardscore nightly` does."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)  # the job parameter's default
    for task, step in zip(nightly_tasks(bundle), NIGHTLY.steps, strict=True):
        spec = task["spark_python_task"]
        script = (REPO / "resources" / spec["python_file"]).resolve()
        assert script.is_file(), f"{task['task_key']}: {script} does not exist"
        package = step.spec.run.__module__.rsplit(".", 1)[0]  # cardscore.jobs.<stage>
        assert f"from {package}.stage import SPEC" in script.read_text(), f"{script} does not run {package}"
        assert script.parent.name == package.rsplit(".", 1)[-1]
        args = build_parser(step.spec).parse_args([substitute(a, bundle) for a in spec["parameters"]])
        assert args.config == bundle["variables"]["cardscore_config"]["default"]
        days = resolve_days(args.date, args.start, args.end, args.shift_days)
        assert days == list(step.days_for(yesterday)), task["task_key"]
        assert stage_options(args) == step.call_options(), task["task_key"]


def test_the_nightly_builds_tomorrows_snapshot_and_online_store() -> None:
    """The night of D prepares D+1 for the next day's stream (the bug the bundle once had: the
    entries ignored --shift-days); everything else works on D."""
    day = datetime(2018, 5, 1).date()
    shifted = {s.name for s in NIGHTLY.steps if s.days_for(day) == (day + timedelta(days=1),)}
    assert shifted == {"features", "materialize"}


def test_schedule_runs_once_a_night_in_utc(bundle: dict) -> None:
    job = bundle["resources"]["jobs"]["cardscore_nightly"]
    assert job["schedule"]["timezone_id"] == "UTC"
    assert job["max_concurrent_runs"] == 1  # two nights must not publish the same tables at once
    fields = job["schedule"]["quartz_cron_expression"].split()
    assert len(fields) in (6, 7) and fields[3:5] == ["*", "*"]
