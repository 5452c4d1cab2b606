"""The Delta jars (deploy/jvm/delta/pom.xml), the engine's Delta constants and the pinned
pyspark agree; nothing needs the PyPI delta-spark package (README "Run it on a real cluster")."""

from __future__ import annotations

import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pyspark

from cardscore.core.engine import DELTA_PACKAGE, DELTA_SPARK_MINOR, DELTA_VERSION

REPO = Path(__file__).resolve().parents[2]
POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def test_the_delta_jars_are_built_for_the_pinned_pysparks_minor() -> None:
    properties = ET.parse(REPO / "deploy" / "jvm" / "delta" / "pom.xml").getroot().find("m:properties", POM_NS)
    assert properties.findtext("m:delta.version", namespaces=POM_NS) == DELTA_VERSION
    assert properties.findtext("m:spark.minor", namespaces=POM_NS) == DELTA_SPARK_MINOR
    assert pyspark.__version__.rsplit(".", 1)[0] == DELTA_SPARK_MINOR
    assert DELTA_PACKAGE.split(":")[1:] == [f"delta-spark_{DELTA_SPARK_MINOR}_2.13", DELTA_VERSION]


def test_no_code_needs_the_pypi_delta_spark_package() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in dependencies if d.startswith("delta-spark")]
    assert "delta-spark" not in (REPO / "requirements.lock").read_text()
    importing = re.compile(r"^\s*(from|import)\s+delta(\.|\s|$)", re.M)
    sources = [p for folder in ("cardscore", "jobs", "features", "streaming", "schemas", "expectations", "bench",
                                "notebooks", "tests") for p in (REPO / folder).rglob("*.py")]
    assert sources and not [str(p) for p in sources if importing.search(p.read_text())]
