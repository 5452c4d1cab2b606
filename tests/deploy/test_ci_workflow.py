"""The GitHub Actions workflow (.github/workflows/ci.yml): actionlint (the real rhysd/actionlint,
built from its Go module by `make tools`) accepts it and rejects a broken copy; it mirrors .ci/run
(its full-tests job runs .ci/run itself) and covers every stage the project's CI promises."""

from __future__ import annotations

import re

import yaml

from tests.deploy.tools import REPO, TOOLS_BIN, explain, run, tool

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def actionlint(path) -> object:
    return run([tool("actionlint", TOOLS_BIN), "-no-color", str(path)])


def test_actionlint_accepts_the_workflow() -> None:
    linted = actionlint(WORKFLOW)
    assert linted.returncode == 0 and not linted.stdout.strip(), explain(linted)


def test_actionlint_rejects_a_broken_copy(tmp_path) -> None:
    broken = tmp_path / ".github" / "workflows" / "ci.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-24.04", "runs-on: ubuntu-24.04\n    timeout-minute: 5", 1)
                      .replace("${{ github.ref }}", "${{ github.reff }}"))
    linted = actionlint(broken)
    assert linted.returncode != 0 and "timeout-minute" in linted.stdout and "reff" in linted.stdout, explain(linted)


def test_the_workflow_mirrors_ci_run_and_covers_every_stage() -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    steps = {name: "\n".join(s.get("run", "") for s in job["steps"]) for name, job in jobs.items()}
    everything = "\n".join(steps.values())
    assert "bash .ci/run" in steps["full-tests"] and "make jars" in steps["full-tests"]
    assert any(s.get("uses", "").startswith("actions/setup-java") for s in jobs["full-tests"]["steps"])
    for needed in ("make lint", 'pytest -m "not engine"', "python -m bench", "pip wheel --no-deps",
                   "hadolint deploy/docker/Dockerfile", "kubernetes-validate", "promtool test rules", "actionlint"):
        assert needed in everything, needed
    makefile = (REPO / "Makefile").read_text()
    for target in set(re.findall(r"\bmake (\w[\w-]*)", everything)):
        assert re.search(rf"^{target}:", makefile, re.M), f"make {target}: no such target"
