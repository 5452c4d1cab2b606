"""The container image (deploy/docker/Dockerfile), without a Docker engine: hadolint lints it, and
the Dockerfile's own build steps run here.

The `wheel` and `install` stages are interpreted instruction by instruction (FROM, WORKDIR, COPY
from the build context or an earlier stage, RUN), each stage in a folder of its own standing for
its filesystem, absolute paths mapped into it; `python` is a clean Python 3.11 outside any venv.
The changes to the commands only save time: pip's `--no-cache-dir` and uv's `--no-cache` are
dropped (the test reuses the machine's caches) and `--no-compile` added (no bytecode). The result must give a working `cardscore --help` and `cardscore stream
--help`, and the image's HEALTHCHECK command must answer 0 / 1 the way the probes expect.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from cardscore.services.broker import free_port
from tests.deploy.tools import DEPLOY, REPO, TOOLS_VENV, explain, run, tool

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
BUILD_STAGES = ("wheel", "install")


@dataclass
class Instruction:
    stage: str
    keyword: str
    args: str


@dataclass
class Dockerfile:
    args: dict[str, str] = field(default_factory=dict)
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, stage: str, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.stage == stage and i.keyword == keyword]


def parse(path: Path) -> Dockerfile:
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                         if not line.lstrip().startswith("#")))
    parsed, stage = Dockerfile(), ""
    for line in filter(None, (raw.strip() for raw in text.splitlines())):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stage:
            name, _, default = args.partition("=")
            parsed.args[name] = default
        if keyword == "FROM":
            stage = args.split(" AS ")[-1].strip() if " AS " in args else args
        parsed.instructions.append(Instruction(stage, keyword, args.strip()))
    return parsed


def test_hadolint_passes() -> None:
    linted = run([tool("hadolint", TOOLS_VENV / "bin"), str(DOCKERFILE)])
    assert linted.returncode == 0 and not linted.stdout.strip(), explain(linted)


def test_the_image_is_pinned_multi_stage_and_runs_as_a_user() -> None:
    image = parse(DOCKERFILE)
    base = image.args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    stages = [i.args for i in image.instructions if i.keyword == "FROM"]
    assert len(stages) >= 3 and stages[-1].endswith(" AS runtime")
    final = [i for i in image.instructions if i.stage in ("runtime-base", "runtime")]
    assert [i.args for i in final if i.keyword == "USER"][-1] == "10001:10001"
    assert [i.args for i in final if i.keyword == "ENTRYPOINT"] == ['["cardscore"]']
    assert [i.args for i in final if i.keyword == "CMD"] == ['["stream"]']
    assert any(i.keyword == "HEALTHCHECK" for i in final)
    assert not any(i.keyword == "COPY" and "--from" not in i.args for i in final), "no source in the runtime"


class Sandbox:
    """Stage filesystems under `root`; container paths are mapped into the stage's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def fs(self, stage: str) -> Path:
        return self.root / stage

    def map(self, stage: str, text: str) -> str:
        return re.sub(r"(?<=[\s=])/(?=\w)", f"{self.fs(stage)}/", f" {text}")[1:]


def build(image: Dockerfile, sandbox: Sandbox, python_dir: Path) -> None:
    env = {**os.environ, "PATH": f"{python_dir}:{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    workdir: dict[str, Path] = {}
    stage_args: dict[str, str] = {}  # a stage's ARG defaults, for ${NAME} in its RUN lines
    for step in (i for i in image.instructions if i.stage in BUILD_STAGES):
        fs = sandbox.fs(step.stage)
        fs.mkdir(parents=True, exist_ok=True)
        cwd = workdir.get(step.stage, fs)
        if step.keyword == "ARG":
            name, _, default = step.args.partition("=")
            stage_args[name] = default
        elif step.keyword == "WORKDIR":
            workdir[step.stage] = Path(sandbox.map(step.stage, step.args))
            workdir[step.stage].mkdir(parents=True, exist_ok=True)
        elif step.keyword == "COPY":
            words = step.args.split()
            source_root = REPO
            if words[0].startswith("--from="):
                source_root = sandbox.fs(words.pop(0).split("=", 1)[1])
            *sources, dest = words
            target = Path(sandbox.map(step.stage, dest)) if dest.startswith("/") else cwd / dest
            for source in sources:
                origin = source_root / source.lstrip("/")
                if origin.is_dir():
                    shutil.copytree(origin, target, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    final = target / origin.name if dest.endswith("/") or target.is_dir() else target
                    final.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, final)
        elif step.keyword == "RUN":
            command = sandbox.map(step.stage, step.args).replace("--no-cache-dir ", "").replace("--no-cache ", "")
            command = command.replace("pip install ", "pip install --no-compile ")  # bytecode: time only
            command = re.sub(r"\$\{(\w+)\}", lambda m: stage_args[m.group(1)], command)
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=1500)
            assert done.returncode == 0, f"RUN {step.args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `install` stage's /opt/cardscore, built by the Dockerfile's own steps."""
    root = tmp_path_factory.mktemp("image")
    python_dir = root / "python-bin"
    python_dir.mkdir()
    base_python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (python_dir / "python").symlink_to(base_python)
    sandbox = Sandbox(root)
    build(parse(DOCKERFILE), sandbox, python_dir)
    venv = sandbox.fs("install") / "opt" / "cardscore"
    assert (venv / "bin" / "cardscore").is_file()
    return venv


@pytest.mark.slow
def test_the_install_steps_give_a_working_cardscore(installed: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARDSCORE", "PYTHONPATH", "VIRTUAL_ENV"))}
    for argv in (["cardscore", "--help"], ["cardscore", "stream", "--help"], ["cardscore", "nightly", "--help"]):
        done = run([str(installed / "bin" / argv[0]), *argv[1:]], env=env, cwd="/")
        assert done.returncode == 0 and "usage" in done.stdout.lower(), explain(done)
    wheel_only = run([str(installed / "bin" / "python"), "-c",
                      "import cardscore, cardscore.streaming; print(cardscore.__file__, cardscore.streaming.__file__)"], env=env, cwd="/")
    assert wheel_only.returncode == 0 and str(REPO) not in wheel_only.stdout, "the venv imports the wheel, not the tree"


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"# metrics\n")

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_the_healthcheck_command_follows_the_metrics_endpoint(installed: Path) -> None:
    instruction = next(i.args for i in parse(DOCKERFILE).instructions if i.keyword == "HEALTHCHECK")
    command = re.search(r"CMD (\[.*\])$", instruction).group(1)
    import json

    argv = json.loads(command)
    argv[0] = str(installed / "bin" / argv[0])
    server = HTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        up = run(argv, env={"CARDSCORE_HEALTH_URL": f"http://127.0.0.1:{server.server_address[1]}/metrics"})
        down = run(argv, env={"CARDSCORE_HEALTH_URL": f"http://127.0.0.1:{free_port()}/metrics"})
        job = run(argv, env={"CARDSCORE_HEALTH_URL": ""})
    finally:
        server.shutdown()
        server.server_close()
    assert up.returncode == 0, explain(up)
    assert down.returncode != 0, explain(down)
    assert job.returncode == 0, "a batch job without an endpoint is healthy"
