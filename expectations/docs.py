"""An index of the Great Expectations Data Docs that reads without internet.

GX's own `index.html` builds its tables in the browser with jQuery and bootstrap-table loaded
from CDNs: offline it shows two tabs and nothing under them. The pages it links to (one per
validation run, one per suite) are rendered HTML and read fine without their CDN styles. This
module writes `offline.html` beside GX's index: one self-contained page (no script, no remote
resource) listing the newest validation results from GX's validation store, with status and
counts, linking each to its rendered page when Data Docs were built for it, and the suites'
pages. The gate runner rewrites it after every Data Docs build.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

OFFLINE_INDEX = "offline.html"
NEWEST = 500  # results listed; the store keeps every run, the page stays small

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}.failed{color:#b00;font-weight:bold}.passed{color:#070}.n{text-align:right}.t{white-space:nowrap}
"""


@dataclass(frozen=True)
class ValidationEntry:
    suite: str
    run_name: str
    run_time: str  # GX's folder name, e.g. 20240301T020304.123456Z (UTC)
    success: bool
    evaluated: int
    unsuccessful: int
    page: str | None  # href relative to the site folder, when the page was rendered


def site_dir(gx_root: Path) -> Path:
    return gx_root / "uncommitted" / "data_docs" / "local_site"


def validation_entries(gx_root: Path, newest: int = NEWEST) -> list[ValidationEntry]:
    """The newest validation results of GX's store (newest first)."""
    store = gx_root / "uncommitted" / "validations"
    site = site_dir(gx_root)
    if not store.is_dir():
        return []
    # <suite>/<run name>/<run time>/<batch>.json: the run time folder sorts chronologically.
    files = sorted(store.glob("*/*/*/*.json"), key=lambda p: p.parent.name, reverse=True)[:newest]
    entries = []
    for path in files:
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a result being written by another gate: it shows at the next rebuild
        relative = path.relative_to(store).with_suffix(".html")
        rendered = site / "validations" / relative
        stats = result.get("statistics") or {}
        entries.append(ValidationEntry(
            suite=str(result.get("suite_name") or relative.parts[0]),
            run_name=relative.parts[1],
            run_time=relative.parts[2],
            success=bool(result.get("success")),
            evaluated=int(stats.get("evaluated_expectations") or 0),
            unsuccessful=int(stats.get("unsuccessful_expectations") or 0),
            page=f"validations/{relative.as_posix()}" if rendered.is_file() else None,
        ))
    return entries


def _when(run_time: str) -> str:
    try:
        return datetime.strptime(run_time, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return run_time


def write_offline_index(gx_root: Path) -> Path:
    """Write `<site>/offline.html` from the validation store and the rendered suite pages."""
    site = site_dir(gx_root)
    entries = validation_entries(gx_root)
    rows = []
    for e in entries:
        status = '<span class="passed">passed</span>' if e.success else '<span class="failed">FAILED</span>'
        link = (f'<a href="{html.escape(e.page)}">{html.escape(e.run_name)}</a>' if e.page
                else f'{html.escape(e.run_name)} <small>(no rendered page)</small>')
        rows.append(f"<tr><td class='t'>{_when(e.run_time)}</td><td>{status}</td><td>{html.escape(e.suite)}</td>"
                    f"<td>{link}</td><td class='n'>{e.evaluated}</td><td class='n'>{e.unsuccessful}</td></tr>")
    suites = sorted((site / "expectations").glob("*.html")) if (site / "expectations").is_dir() else []
    suite_items = "".join(f'<li><a href="expectations/{html.escape(p.name)}">{html.escape(p.stem)}</a></li>'
                          for p in suites)
    failed = sum(not e.success for e in entries)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>cardscore: Great Expectations gates</title>"
        f"<style>{_CSS}</style></head><body><h1>Great Expectations gates</h1>"
        f"<p>{len(entries)} validation results (newest first, at most {NEWEST}), {failed} failed. "
        "This page needs no internet; GX's own <a href='index.html'>index.html</a> loads its tables from CDNs.</p>"
        "<table id='validations'><tr><th>run time</th><th>status</th><th>suite</th><th>run (its page)</th>"
        f"<th>evaluated</th><th>failed</th></tr>{''.join(rows)}</table>"
        f"<h2>Expectation suites</h2><ul id='suites'>{suite_items or '<li>none rendered yet</li>'}</ul>"
        "</body></html>"
    )
    site.mkdir(parents=True, exist_ok=True)
    target = site / OFFLINE_INDEX
    partial = target.with_suffix(".html.tmp")
    partial.write_text(page, encoding="utf-8")
    partial.replace(target)  # readers never see half a page
    return target
