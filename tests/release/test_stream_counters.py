"""The stream scorer's per-arm release counters reach the monitoring rows and its report
(fast tier: a real Prometheus exposition over a local HTTP server)."""

from __future__ import annotations

import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np

from cardscore.model.release import ReleaseScores
from cardscore.streaming.metrics import StreamMetrics
from cardscore.streaming.release import ReleaseMetrics


def test_per_arm_stream_counters_are_monitoring_rows_and_reported(tmp_path) -> None:
    from prometheus_client import generate_latest

    from cardscore.jobs.monitor.stage import stream_rows
    from cardscore.monitoring.report import render_report

    metrics = StreamMetrics()
    release_metrics = ReleaseMetrics(metrics.registry)
    arm = np.array(["canary"] * 30 + ["champion"] * 70, dtype=object)
    zeros = np.zeros(100)
    release_metrics.record(ReleaseScores(zeros, arm, arm, arm, zeros.astype(bool), zeros, arm,
                                         {"champion": 0.001, "canary": 0.002}, {"shadow": 100}))
    body = generate_latest(metrics.registry)

    class Exporter(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        rows = stream_rows(f"http://127.0.0.1:{server.server_port}/metrics", 5.0, 0.05)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    counters = {r.subject: r.value for r in rows if r.metric == "stream_counter"}
    assert counters["release_scores.canary"] == 30 and counters["release_scores.champion"] == 70
    assert counters["release_errors.shadow"] == 100 and counters["release_errors.canary"] == 0
    page = render_report(tmp_path / "r.html", date(2018, 4, 15), rows, [], _empty_history(), None, None, None)
    assert "Release: stream scorer" in page.read_text() and "release_scores.canary" in page.read_text()


def _empty_history():
    import pandas as pd

    return pd.DataFrame(columns=["metric", "value", "scored_day", "model_version", "day"])
