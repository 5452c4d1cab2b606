"""The day's HTML monitoring report: one self-contained file, matplotlib charts inlined as SVG.

Pictures: PSI per feature as bars against the threshold; the day's score histogram over the
reference's per-class histograms; delayed-label performance per scored day and model version.
Tables: alerts, freshness, drift details, notes. Chart text stays text (SVG `<text>`), so the
page is searchable and a browser test can read the axis labels.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cardscore.monitoring.alerts import Alert
from cardscore.monitoring.metrics import MetricRow
from cardscore.monitoring.profile import SCORE, Reference

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.bad{color:#b00;font-weight:bold}.ok{color:#070}
figure.chart{margin:0.5em 0}figure.chart svg{max-width:100%;height:auto;border:1px solid #eee}
"""


def _inline_svg(fig: Any) -> str:
    """The figure inlined as SVG: text stays text, no raster."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "cardscore"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML declaration and DOCTYPE: inline in HTML
    title = html.escape(fig.axes[0].get_title() if fig.axes else "chart")
    return f'<figure class="chart" role="img" aria-label="{title}">{svg}</figure>'


def psi_chart(rows: Sequence[MetricRow]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    psi = [r for r in rows if r.metric == "feature_psi" and r.value is not None]
    if not psi:
        return None
    psi.sort(key=lambda r: r.value or 0.0)
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(psi) + 1.2))
    colors = ["#c0392b" if r.violated else "#2e86c1" for r in psi]
    ax.barh([r.subject or "" for r in psi], [r.value for r in psi], color=colors)
    threshold = psi[0].threshold
    if threshold is not None:
        ax.axvline(threshold, color="#c0392b", linestyle="--", label=f"threshold {threshold:g}")
        ax.legend(loc="lower right")
    ax.set_xlabel("PSI against the reference (quantile bins)")
    ax.set_title("Feature drift")
    return _inline_svg(fig)


def score_chart(reference: Reference, current: pd.DataFrame) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = reference.profile.score_histogram
    if SCORE not in current or not len(current):
        return None
    edges = np.asarray(hist["edges"])
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    counts, _ = np.histogram(current[SCORE].to_numpy(dtype=np.float64), bins=edges)
    day_share = counts / max(counts.sum(), 1)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.bar(centers, hist["genuine"], width=width, alpha=0.45, label="reference: genuine", color="#2e86c1")
    ax.bar(centers, hist["fraud"], width=width, alpha=0.45, label="reference: fraud", color="#c0392b")
    ax.step(edges, [*day_share, day_share[-1]], where="post", color="black", label="this day (all)")
    ax.set_yscale("log")
    ax.set_xlabel("score")
    ax.set_ylabel("share of rows (log)")
    ax.set_title("Scores: reference per class vs this day")
    ax.legend()
    return _inline_svg(fig)


def performance_chart(history: pd.DataFrame) -> str | None:
    import matplotlib
    import matplotlib.dates
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = history.dropna(subset=["value"]) if len(history) else history
    if frame.empty:
        return None
    metrics = [m for m in ("average_precision", "card_precision_at_k", "auc_roc") if m in set(frame["metric"])]
    scored = pd.to_datetime(frame["scored_day"])
    span_days = int((scored.max() - scored.min()).days) + 1
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        part = frame[frame["metric"] == metric]
        for version, rows in part.groupby("model_version"):
            rows = rows.sort_values("scored_day")
            complete = rows["details"].map(lambda d: bool(json.loads(d).get("labels_complete")) if d else False)
            days = pd.to_datetime(rows["scored_day"])
            line = ax.plot(days, rows["value"], linestyle=":", alpha=0.6)[0]
            ax.plot(days[complete], rows["value"][complete], "o", color=line.get_color(),
                    label=f"v{version} (labels complete)")
            ax.plot(days[~complete], rows["value"][~complete], "o", mfc="none", color=line.get_color(),
                    label=f"v{version} (labels still arriving)")
        bound = part["threshold"].dropna()
        if len(bound):
            ax.axhline(float(bound.iloc[0]), color="#c0392b", linestyle="--", label="threshold")
        ax.set_title(metric)
        # One tick per day at most (the automatic locator puts sub-day ticks on a few days,
        # and a day-only format then repeats each label); every few days on a long window.
        ax.xaxis.set_major_locator(matplotlib.dates.DayLocator(interval=max(1, -(-span_days // 8))))
        # Half a day of margin: a single day would otherwise get matplotlib's years-wide limits.
        ax.set_xlim(scored.min() - pd.Timedelta(hours=12), scored.max() + pd.Timedelta(hours=12))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%m-%d"))
        ax.tick_params(axis="x", labelrotation=45)
        ax.legend(fontsize=8)
    fig.suptitle("Delayed-label performance per scored day, with the labels known today", y=1.04)
    return _inline_svg(fig)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], bad: Sequence[bool] | None = None) -> str:
    head = "".join(f'<th class="l">{html.escape(h)}</th>' if i == 0 else f"<th>{html.escape(h)}</th>"
                   for i, h in enumerate(headers))
    body = []
    for i, row in enumerate(rows):
        cls = ' class="bad"' if bad and bad[i] else ""
        cells = "".join(f'<td class="l">{html.escape(_fmt(v))}</td>' if j == 0 else f"<td>{html.escape(_fmt(v))}</td>"
                        for j, v in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _days(n: float | None) -> str:
    if n is None:
        return "-"
    return "none" if n == 0 else f"{int(n)} day{'' if abs(n) == 1 else 's'}"


def freshness_state(row: MetricRow) -> str:
    """A freshness row in words: "up to date", "1 day ahead", "3 days behind", "missing"."""
    if row.value is None:
        return "missing" if row.details.get("missing", True) else "not recorded"
    lag = int(row.value)
    if lag == 0:
        return "up to date"
    return f"{_days(abs(lag))} {'ahead' if lag < 0 else 'behind'}"


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_report(
    path: Path,
    day: date,
    rows: Sequence[MetricRow],
    alerts: Sequence[Alert],
    history: pd.DataFrame,
    reference: Reference | None,
    current: pd.DataFrame | None,
    model: Any | None,
    notes: Sequence[str] = (),
) -> Path:
    """Write the report of `day` to `path` (folders created) and return it."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>cardscore monitoring {day}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Monitoring {day}</h1>"]
    about = f"model {model.name} v{model.version}" if model is not None else "no model"
    if reference is not None:
        w = reference.profile.window
        about += (f"; reference: {w.get('source')} days {w.get('first')}..{w.get('last')}, "
                  f"{reference.profile.rows} rows ({reference.source})")
    parts.append(f"<p>{html.escape(about)}</p>")
    if alerts:
        parts.append(f"<h2 class='bad'>{len(alerts)} alert(s)</h2><ul>")
        parts += [f"<li>{html.escape(a.describe())}</li>" for a in alerts]
        parts.append("</ul>")
    else:
        parts.append("<h2 class='ok'>No alert</h2>")
    for note in notes:
        parts.append(f"<p><em>{html.escape(note)}</em></p>")

    chart = psi_chart(rows)
    if chart:
        parts += ["<h2>Feature drift</h2>", chart]
    drift = [r for r in rows if r.metric in ("feature_psi", "feature_ks", "score_psi", "score_ks")]
    if drift:
        parts.append(_table(["metric", "subject", "value", "threshold", "KS p-value"],
                            [(r.metric, r.subject or "score", r.value, r.threshold, r.details.get("pvalue"))
                             for r in drift], [r.violated for r in drift]))
    if reference is not None and current is not None:
        chart = score_chart(reference, current)
        if chart:
            parts += ["<h2>Scores</h2>", chart]
    day_wide = [r for r in rows if r.metric in ("rows", "unknown_customer_rate", "unknown_terminal_rate",
                                                 "score_mean", "stream_up", "stream_dlq_rate")]
    if day_wide:
        parts += ["<h2>Day</h2>", _table(["metric", "value", "threshold"],
                                         [(r.metric, r.value, r.threshold) for r in day_wide],
                                         [r.violated for r in day_wide])]
    fresh = [r for r in rows if r.metric == "freshness_lag_days"]
    if fresh:
        parts += ["<h2>Freshness</h2>",
                  "<p>The latest day of each input against the monitored day. The night of a day builds "
                  "the next day's feature snapshot and loads it into the online store, so those two "
                  "are one day ahead by design.</p>",
                  _table(["input", "latest day", "state", "lag allowed"],
                         [(r.subject, r.details.get("latest", "missing"), freshness_state(r), _days(r.threshold))
                          for r in fresh],
                         [r.violated for r in fresh])]
    parts += _release_section(rows)
    chart = performance_chart(history)
    if chart:
        parts += ["<h2>Delayed-label performance</h2>", chart]
    perf = [r for r in rows if r.metric in ("average_precision", "card_precision_at_k", "auc_roc")]
    if perf:
        by_day: dict[tuple[Any, Any], dict[str, Any]] = {}
        for r in perf:
            entry = by_day.setdefault((r.scored_day, r.model_version), {"details": r.details})
            entry[r.metric] = r.value
        table_rows = [
            (str(d), v, e.get("auc_roc"), e.get("average_precision"), e.get("card_precision_at_k"),
             e["details"].get("known_frauds"), e["details"].get("days_since_scoring"),
             "yes" if e["details"].get("labels_complete") else "no")
            for (d, v), e in sorted(by_day.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))
        ]
        bad = [any(r.violated for r in perf if (r.scored_day, r.model_version) == key) for key in
               sorted(by_day, key=lambda kv: (str(kv[0]), str(kv[1])))]
        parts.append(_table(["scored day", "version", "AUC", "AP", "CP@k", "known frauds", "days since",
                             "labels complete"], table_rows, bad))
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path


def _release_section(rows: Sequence[MetricRow]) -> list[str]:
    """Release comparison: per arm, and the candidate against the champion on the same
    transactions (`cardscore.monitoring.release`)."""
    per_arm: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.metric.startswith("release_arm_"):
            per_arm.setdefault(r.subject or "", {})[r.metric] = r.value
            per_arm[r.subject or ""].update(r.details.get("quantiles", {}))
    compared = [r for r in rows if r.metric.startswith("release_") and not r.metric.startswith("release_arm_")]
    stream = [r for r in rows if r.metric == "stream_counter" and (r.subject or "").startswith("release_")]
    if not per_arm and not stream:
        return []
    parts = ["<h2>Release: arms</h2>",
             _table(["arm", "rows", "mean score", "p10", "p50", "p90", "p99", "alert rate"],
                    [(arm, v.get("release_arm_rows"), v.get("release_arm_mean_score"), v.get("p10"), v.get("p50"),
                      v.get("p90"), v.get("p99"), v.get("release_arm_alert_rate"))
                     for arm, v in sorted(per_arm.items())])]
    if compared:
        version = compared[0].model_version
        parts += [f"<h2>Release: candidate v{html.escape(str(version))} vs champion (same transactions)</h2>",
                  _table(["metric", "bound", "value", "threshold", "paired transactions"],
                         [(r.metric, r.subject or "", r.value, r.threshold, r.details.get("pairs"))
                          for r in compared], [r.violated for r in compared])]
    if stream:
        parts += ["<h2>Release: stream scorer (since its start)</h2>",
                  _table(["counter", "value"], [(r.subject, r.value) for r in stream])]
    return parts
