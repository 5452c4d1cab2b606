"""Schemathesis (the real CLI) against the API's own OpenAPI document: generated valid and
invalid requests for every operation never get a 5xx, and every response conforms to the
document (status codes, content types, schemas); invalid bodies are refused.

One check is left out, `positive_data_acceptance`: the contract is stricter than JSON Schema
can say. An integer field must be written as an integer (`12`, not `12.0`: schemas/validation),
while JSON Schema's "integer" matches 12.0; and an RFC 3339 timestamp of year 0000 is a valid
`date-time` that no timestamp type here can hold. Such requests get 422 with the reason, which
is what the contract promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine  # a started server, a registry


def test_hostile_inputs_never_give_a_server_error(serving_world, serve, tmp_path: Path) -> None:
    api = serve(serving_world.settings())
    api.wait_ready()
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert binary, "schemathesis is a dev dependency (pip install -e '.[dev]')"
    proc = subprocess.run(
        [binary, "run", f"{api.url}/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance",
         "--mode", "all", "--max-examples", "150", "--seed", "18", "--workers", "1",
         "--generation-database", "none", "--request-timeout", "30", "--no-color", "--output-truncate", "false",
         "--report", "junit", "--report-junit-path", str(tmp_path / "junit.xml")],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert api.metrics.value("cardscore_serve_transactions_scored_total") > 0  # valid ones were scored
    statuses = api.get("/metrics").text
    assert 'endpoint="/v1/score",status="500"' not in statuses
