"""The pure parts of monitoring: PSI/KS, the k-of-n trigger rule, alerts and the webhook."""

from __future__ import annotations

import socket
import threading
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from cardscore.monitoring import stats
from cardscore.monitoring.alerts import Alert, alerts_of, post_webhook
from cardscore.monitoring.metrics import MetricRow, freshness_rows
from cardscore.monitoring.profile import DistributionProfile
from cardscore.monitoring.trigger import decide, retrain_window_start

D = date(2018, 5, 20)


# ------------------------------------------------------------------------------ statistics


def test_psi_matches_the_definition_on_hand_made_bins() -> None:
    # reference 50/50, current 90/10: 0.4*ln(0.9/0.5) + (-0.4)*ln(0.1/0.5)
    assert stats.psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * np.log(1.8) + 0.4 * np.log(5))
    assert stats.psi([0.25] * 4, [0.25] * 4) == 0.0
    # An empty current bin is a large, finite shift (floored proportions).
    assert 0 < stats.psi([0.5, 0.5], [1.0, 0.0]) < 10


def test_reference_bins_are_right_closed_and_shared_by_reference_and_day() -> None:
    values = np.array([0.0] * 60 + [1.0] * 30 + [2.0] * 10)  # a discrete feature with ties
    profile = DistributionProfile.of(values, bins=10)
    assert profile.edges == [0.0, 1.0]  # deduplicated quantiles
    assert profile.proportions == pytest.approx([0.6, 0.3, 0.1])
    assert stats.bin_proportions(np.array([0.0, 1.0, 1.5, 7.0]), profile.edges) == [0.25, 0.25, 0.5]
    assert profile.null_rate == 0.0 and profile.mean == pytest.approx(0.5)


def test_psi_and_ks_separate_a_shift_from_sampling_noise() -> None:
    rng = np.random.default_rng(1)
    reference = rng.lognormal(3.5, 0.6, 5000)
    profile = DistributionProfile.of(reference, bins=10)
    same = rng.lognormal(3.5, 0.6, 2000)
    shifted = same * 1.5
    assert stats.psi(profile.proportions, stats.bin_proportions(same, profile.edges)) < 0.02
    assert stats.psi(profile.proportions, stats.bin_proportions(shifted, profile.edges)) > 0.25
    assert stats.ks(reference, same).statistic < 0.05
    assert stats.ks(reference, shifted).statistic > 0.2 and stats.ks(reference, shifted).pvalue < 1e-6
    assert np.isnan(stats.ks(reference, np.array([np.nan])).statistic)


# ------------------------------------------------------------------------------ trigger

N, K = 5, 2


@pytest.mark.parametrize(
    ("violating_days_ago", "require_latest", "fire"),
    [
        ((), True, False),  # nothing violated
        ((0,), True, False),  # only the latest: 1 < k
        ((0, 4), True, True),  # the latest and the oldest day of the window
        ((0, 1), True, True),
        ((1, 2), True, False),  # 2 of 5, but the latest is fine
        ((1, 2), False, True),  # ... which counts when the latest is not required
        ((0, 5), True, False),  # 5 days ago is outside the window of 5
        ((0, 1, 2, 3, 4), True, True),
        ((3,), False, False),
    ],
)
def test_the_trigger_fires_on_k_of_the_last_n_days(violating_days_ago, require_latest, fire) -> None:
    history = {D - timedelta(days=i): ["score_psi"] for i in violating_days_ago}
    history[D - timedelta(days=2)] = history.get(D - timedelta(days=2), [])  # an empty list is no violation
    decision = decide(D, history, K, N, require_latest)
    assert decision.fire is fire
    assert decision.window[-1] == D.isoformat() and len(decision.window) == N
    assert len(decision.violating_days) == sum(1 for i in violating_days_ago if i < N)


def test_the_trigger_rejects_impossible_rules_and_its_window_has_complete_labels() -> None:
    with pytest.raises(ValueError):
        decide(D, {}, 3, 2)
    start = retrain_window_start(D, train_days=7, delay_days=7, test_days=7, label_delay_days=7)
    # test days end 7 days before D: their labels are complete when the trigger fires
    assert start + timedelta(days=7 + 7 + 7 - 1) == D - timedelta(days=7)


# ------------------------------------------------------------------------------ alerts


def test_alerts_name_metric_feature_value_and_threshold() -> None:
    rows = [
        MetricRow("feature_psi", 0.6, "tx_amount", 0.25),
        MetricRow("feature_psi", 0.1, "tx_during_night", 0.25),
        MetricRow("average_precision", 0.05, None, 0.3, "min", D - timedelta(days=7), "3"),
        MetricRow("auc_roc", None, None, 0.7, "min"),  # NaN/None metric (one class): no alert
        *freshness_rows(D, {"silver_transactions": D - timedelta(days=2), "silver_labels": None,
                            "predictions": None}, {"silver_transactions": 0, "silver_labels": 2,
                                                   "predictions": 0}, optional={"silver_labels"}),
    ]
    alerts = alerts_of(D, rows)
    assert [(a.metric, a.subject) for a in alerts] == [
        ("feature_psi", "tx_amount"), ("average_precision", None),
        ("freshness_lag_days", "silver_transactions"), ("freshness_lag_days", "predictions"),
    ]
    assert alerts[0].feature == "tx_amount" and alerts[0].value == 0.6 and alerts[0].threshold == 0.25
    assert alerts[2].feature is None and alerts[2].value == 2.0
    assert "tx_amount" in alerts[0].describe() and "0.25" in alerts[0].describe()
    assert alerts[1].scored_day == "2018-05-13" and alerts[1].model_version == "3"


def test_the_webhook_receives_the_alert_json(webhook_server) -> None:
    url, received = webhook_server
    alert = Alert.of(D, MetricRow("feature_psi", 0.6, "tx_amount", 0.25, model_version="2"))
    ok = post_webhook(url, {"day": D.isoformat(), "alerts": [alert.to_dict()]}, timeout=5,
                      headers={"Authorization": "Bearer x"})
    assert ok
    assert [body for body, _ in received] == [{"day": "2018-05-20", "alerts": [{
        "day": "2018-05-20", "metric": "feature_psi", "feature": "tx_amount", "subject": "tx_amount",
        "value": 0.6, "threshold": 0.25, "direction": "max", "model_version": "2", "scored_day": None}]}]
    assert received[0][1]["Authorization"] == "Bearer x"
    assert received[0][1]["Content-Type"] == "application/json"


def test_a_failing_webhook_never_raises(caplog) -> None:
    # A port nobody listens on: connection refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert post_webhook(f"http://127.0.0.1:{port}/hook?token=secret", {"alerts": []}, timeout=2) is False
    # A server that accepts but never answers: the timeout ends the wait.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        assert post_webhook(url, {"alerts": []}, timeout=0.3) is False
    assert "secret" not in caplog.text  # the URL's path and query may carry a token


# ------------------------------------------------------------------------------ stream health


def test_stream_health_reads_the_scorers_prometheus_endpoint_and_skips_when_unreachable() -> None:
    from prometheus_client import generate_latest

    from cardscore.jobs.monitor.stage import stream_rows
    from cardscore.streaming.metrics import StreamMetrics

    metrics = StreamMetrics()
    metrics.messages_in.inc(200)
    metrics.dlq.labels("malformed_json").inc(12)
    metrics.dlq.labels("missing_field").inc(8)
    body = generate_latest(metrics.registry)

    class Exporter(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
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
    by_key = {(r.metric, r.subject): r for r in rows}
    assert by_key[("stream_up", None)].value == 1.0
    assert by_key[("stream_counter", "messages_in")].value == 200
    assert by_key[("stream_counter", "dlq_messages")].value == 20  # summed over reasons
    dlq = by_key[("stream_dlq_rate", None)]
    assert dlq.value == pytest.approx(0.1) and dlq.violated

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = stream_rows(f"http://127.0.0.1:{port}/metrics", 1.0, 0.05)
    assert [(r.metric, r.value, r.violated) for r in down] == [("stream_up", 0.0, False)]


def test_monitoring_settings_reject_unknown_trigger_metrics_and_k_above_n(tmp_path) -> None:
    from cardscore.core.config import ConfigError, load_settings

    home = str(tmp_path / "home")
    for bad in ({"trigger": {"metrics": ["accuracy"]}}, {"trigger": {"k": 6, "n": 5}}, {"output_table": "monitoring"}):
        with pytest.raises(ConfigError):
            load_settings(overrides={"home": home, "monitoring": bad})
    assert load_settings(overrides={"home": home}).monitoring.trigger.k == 2
