"""The README's "Run it on a real cluster" > "Spark" commands are the ones the tests run, as
written: `make jars`, `cardscore engine start|status --classic` run here literally (against the
session's cluster, its ports given through the environment); the two nightly commands are,
token for token, the ones `engine_runs` ran on (b) and (c), once the placeholders a user's
machine fills (ports, the jar list, $PWD, the config and the date) are filled with the test's;
`cardscore engine stop --classic` is how the session's cluster is stopped."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from tests.cluster import commands, world
from tests.cluster.commands import CLUSTER_TIMEOUT

pytestmark = [pytest.mark.classic, pytest.mark.timeout(CLUSTER_TIMEOUT)]

README = commands.REPO / "README.md"
README_MASTER, README_CONNECT = "spark://127.0.0.1:7077", "sc://127.0.0.1:15003"
README_DATE = "2018-06-14"
README_CONFIG = ".cardscore/demo/cardscore.yaml"


def spark_commands() -> list[str]:
    """The commands of the first bash block of the Spark subsection, continuation lines
    joined, comments dropped."""
    text = README.read_text()
    section = text.split("## Run it on a real cluster", 1)[1].split("\n## ", 1)[0]
    spark = section.split("### Spark", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", spark, re.S).group(1)
    joined = block.replace("\\\n", " ")
    lines = [line.split("  #", 1)[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def filled(command: str, cluster) -> list[str]:
    """The command's argv with the user's placeholders replaced by the test's values."""
    state = cluster.state
    command = (command.replace('"$(cardscore engine jars)"', ",".join(state.jars))
               .replace('"$PWD/.venv/bin/python"', sys.executable)
               .replace(README_MASTER, state.master_url).replace(README_CONNECT, state.connect_url)
               .replace(README_DATE, world.TINY.night.isoformat()))
    return shlex.split(command)


def test_the_readme_spark_commands_are_the_tested_ones(classic_cluster, engine_runs) -> None:
    lines = spark_commands()
    assert lines[0] == "make jars"
    made = subprocess.run(["make", "jars"], cwd=commands.REPO, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr

    env = classic_cluster.cli_env()
    for line, argv in ((lines[1], commands.ENGINE_START), (lines[2], commands.ENGINE_STATUS)):
        assert shlex.split(line) == argv
        done = subprocess.run(shlex.split(line), env=env, cwd=commands.REPO, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr

    assert lines[3] == f"export CARDSCORE_CONFIG={README_CONFIG}"
    submit = engine_runs["submit"]
    assert filled(lines[4], classic_cluster) == commands.spark_submit_argv(
        classic_cluster.submit_args(), commands.NIGHTLY_ENTRY, commands.nightly_args(world.TINY.night))
    assert submit.results["nightly"].returncode in commands.NIGHTLY_OK

    remote, *argv = filled(lines[5], classic_cluster)
    assert remote == f"SPARK_REMOTE={classic_cluster.state.connect_url}"
    assert argv == commands.connect_argv(commands.NIGHTLY_ENTRY, commands.nightly_args(world.TINY.night))

    assert shlex.split(lines[6]) == commands.ENGINE_STOP  # the session cluster's teardown runs it
    assert len(lines) == 7
