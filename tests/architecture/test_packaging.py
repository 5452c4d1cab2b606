"""The wheel ships one top-level package, `cardscore`, with every module of the repository's
package folders inside it (jobs/, features/, ... as cardscore.jobs, cardscore.features, ...),
plus the data files the code reads (suites, contract snapshots, the Feast repo's YAML)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.architecture.imports import FOLDERS, REPO, modules

pytestmark = pytest.mark.engine  # builds the wheel with the build backend (pip, setuptools)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    [built] = out.glob("cardscore-*.whl")
    return zipfile.ZipFile(built)


def test_one_top_level_package(wheel: zipfile.ZipFile) -> None:
    tops = {Path(n).parts[0] for n in wheel.namelist() if not Path(n).parts[0].endswith((".dist-info", ".data"))}
    assert tops == {"cardscore"}
    top_level = next(n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt"))
    assert wheel.read(top_level).decode().split() == ["cardscore"]


def test_every_module_and_data_file_is_inside(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for module, path in modules().items():
        expected = "/".join(module.split(".")) + ("/__init__.py" if path.name == "__init__.py" else ".py")
        assert expected in names, f"{module} ({path.relative_to(REPO)}) is not in the wheel"
    data = [*(FOLDERS["cardscore.expectations"] / "suites").glob("*.json"),
            *(FOLDERS["cardscore.schemas"] / "snapshots").glob("*.json"),
            FOLDERS["cardscore.features"] / "feature_store.yaml"]
    for path in data:
        package = next(p for p, folder in FOLDERS.items() if p != "cardscore" and folder in path.parents)
        inside = "/".join(package.split(".")) + "/" + path.relative_to(FOLDERS[package]).as_posix()
        assert inside in names, f"{path.relative_to(REPO)} is not in the wheel"
