"""The layers of the package, checked on its real import graph (docs/architecture.md).

Top to bottom; a module may import only from its own layer's package or from a lower layer,
and packages on the same line (siblings) do not import each other:

    applications     cardscore.cli | cardscore.schedule
                     cardscore.demo | cardscore.notebook
    stages           cardscore.jobs | cardscore.streaming | cardscore.serving
    domain libraries cardscore.monitoring | cardscore.simulator
                     cardscore.model | cardscore.services
                     cardscore.features
    contracts        cardscore.expectations | cardscore.schemas
    core             cardscore.core

Stages do not import each other: only the compositions (jobs.nightly, jobs.retrain) import
stages. No module cycles at all.
"""

from __future__ import annotations

import ast

import pytest

from tests.architecture.imports import FOLDERS, Import, cycles, imports, modules, within

LAYERS: list[list[str]] = [
    ["cardscore.cli", "cardscore.schedule"],
    ["cardscore.demo", "cardscore.notebook"],
    ["cardscore.jobs", "cardscore.streaming", "cardscore.serving"],
    ["cardscore.monitoring", "cardscore.simulator"],
    ["cardscore.model", "cardscore.services"],
    ["cardscore.features"],
    ["cardscore.expectations", "cardscore.schemas"],
    ["cardscore.core"],
]
COMPOSITIONS = ("cardscore.jobs.nightly", "cardscore.jobs.retrain")



@pytest.fixture(scope="module")
def edges() -> list[Import]:
    return list(imports())


def layer_of(module: str) -> tuple[int, str] | None:
    for level, packages in enumerate(LAYERS):
        for package in packages:
            if within(module, package):
                return level, package
    return None


def describe(e: Import) -> str:
    return f"{e.importer} -> {e.imported} ({e.file.relative_to(FOLDERS['cardscore'].parent)}:{e.line})"


def test_every_module_belongs_to_a_layer() -> None:
    loose = [m for m in modules() if m != "cardscore" and layer_of(m) is None]
    assert loose == [], f"modules outside every layer (add them to LAYERS and the docs): {loose}"


def test_lower_layers_never_import_higher_ones_and_siblings_stay_apart(edges: list[Import]) -> None:
    wrong = []
    for e in edges:
        source, target = layer_of(e.importer), layer_of(e.imported)
        if source is None or target is None:
            continue
        if target[0] < source[0] or (target[0] == source[0] and target[1] != source[1]):
            wrong.append(describe(e))
    assert wrong == [], "imports against the layers:\n" + "\n".join(wrong)


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:3]) if len(parts) >= 3 and parts[1] == "jobs" else None


def test_stages_do_not_import_each_other_except_compositions(edges: list[Import]) -> None:
    wrong = [
        describe(e) for e in edges
        if stage_of(e.importer) and stage_of(e.imported) and stage_of(e.importer) != stage_of(e.imported)
        and stage_of(e.importer) not in COMPOSITIONS
    ]
    assert wrong == [], "stage-to-stage imports:\n" + "\n".join(wrong)


def test_no_module_cycles(edges: list[Import]) -> None:
    assert cycles(edges) == []


def test_the_package_never_imports_tests_or_benchmarks() -> None:
    wrong = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            wrong += [f"{module}: {n}" for n in names if n.split(".")[0] in ("tests", "bench")]
    assert wrong == []


def test_the_checker_sees_a_violation() -> None:
    """The rules above fail on a real upward import (so a passing run means something)."""
    fake = Import("cardscore.core.engine", "cardscore.jobs.ingest.stage", 1, FOLDERS["cardscore"] / "core" / "engine.py")
    source, target = layer_of(fake.importer), layer_of(fake.imported)
    assert source is not None and target is not None and target[0] < source[0]
    assert cycles([Import("a", "b", 1, fake.file), Import("b", "a", 1, fake.file)]) == [["a", "b"]]
