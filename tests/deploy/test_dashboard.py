"""The Grafana dashboard and the Prometheus rules name only metrics the code exports.

A real stream scorer (a subprocess, `python -m cardscore.streaming` as in tests/streaming) scores messages
from the embedded broker and serves /metrics; the real scoring API (under uvicorn, as in
tests/serving) scores requests and serves its /metrics; a real nightly (tests/deploy/conftest.py)
wrote its metrics file. Every metric name selected by every panel query and every rule
expression (parsed by the real PromQL parser) must be in those scrapes, in that file, be a
recording rule of ours, or be Prometheus's own `up`. The scrape is taken once the scorer has published its consumer lag
(refreshed every `streaming.lag_interval_seconds`), so the lag panels and alerts are checked too.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cardscore.core.metrics_file import metrics_path
from cardscore.services.broker import free_port
from tests.deploy.tools import DEPLOY, TOOLS_VENV, explain, missing, run
from tests.streaming import world

DASHBOARD = DEPLOY / "grafana" / "cardscore.json"
RULES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
PROMETHEUS_OWN = {"up"}


def dashboard_queries() -> dict[str, str]:
    board = json.loads(DASHBOARD.read_text())
    queries = {f"panel {p['title']!r} {t['refId']}": t["expr"] for p in board["panels"] for t in p.get("targets", [])}
    queries |= {f"annotation {a['name']!r}": a["expr"] for a in board["annotations"]["list"] if "expr" in a}
    return queries


def rule_queries() -> tuple[dict[str, str], set[str]]:
    queries, recorded = {}, set()
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                queries[f"{path.name} {rule.get('alert') or rule.get('record')}"] = rule["expr"]
                if "record" in rule:
                    recorded.add(rule["record"])
    return queries, recorded


def selected_names(expressions: list[str]) -> dict[str, list[str]]:
    python = TOOLS_VENV / "bin" / "python"
    if not python.is_file():
        missing(f"{TOOLS_VENV} not found; install the PromQL parser with `make tools`")
    parsed = run([str(python), str(Path(__file__).with_name("promql_names.py"))], input=json.dumps(expressions))
    assert parsed.returncode == 0, explain(parsed)
    return json.loads(parsed.stdout)


def sample_names(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_dashboard_is_well_formed() -> None:
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in board["panels"]]
    assert len(titles) == len(set(titles)), "panel titles are unique (alerts name them)"
    graphs = [p for p in board["panels"] if p["type"] != "row"]
    assert graphs and all(p["targets"] and p["datasource"]["uid"] == "${datasource}" for p in graphs)
    for panel in graphs:
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


@pytest.fixture(scope="module")
def scrape(stream_settings, spawn, tmp_path_factory: pytest.TempPathFactory) -> str:
    """/metrics of a real scorer process after it scored 200 messages and sent one to the DLQ."""
    folder = tmp_path_factory.mktemp("scrape")
    config = world.write_config(stream_settings, folder / "cardscore.yaml")
    port = free_port()
    scorer = spawn(config, folder / "scorer.log", "--metrics-port", str(port), "--instance-id", "scorer-0")
    world.produce(stream_settings, world.transactions(200, seed=5))
    world.produce(stream_settings, [(b"x", b"{broken")])
    scorer.wait_for(lambda s: s.scored() >= 200, 120, "200 scored messages")

    def metrics() -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()

    # the lag gauge has a sample per partition once the first lag refresh ran after the scoring
    scorer.wait_for(lambda s: "cardscore_stream_consumer_lag{" in metrics(), 60, "a consumer lag sample")
    body = metrics()
    scorer.proc.terminate()
    scorer.proc.wait(30)
    return body


@pytest.fixture(scope="module")
def api_scrape(stream_world) -> str:
    """/metrics of the real scoring API (the stream world's online store and champion) after it
    scored a batch of transactions."""
    from cardscore.core.config import load_settings
    from tests.serving.conftest import SERVING_TEST_SETTINGS, RunningApi, wire

    settings = load_settings(overrides={"home": str(stream_world.home), "serving": dict(SERVING_TEST_SETTINGS)})
    with RunningApi(settings) as api:
        api.wait_ready()
        response = api.post([wire(r) for r in world.transactions(20, seed=6)])
        assert response.status_code == 200, response.text
        return api.get("/metrics").text


@pytest.fixture(scope="module")
def stream_settings(stream_world, broker):  # module scope: one scorer for the module
    import uuid

    from cardscore.core.config import load_settings
    from cardscore.services.broker import create_topics, project_topics
    from tests.streaming.conftest import STREAMING_TEST_SETTINGS

    suffix = uuid.uuid4().hex[:8]
    settings = load_settings(overrides={
        "home": str(stream_world.home),
        "kafka": {"mode": "external", "client": {"bootstrap.servers": broker.bootstrap},
                  "consumer": world.TEST_CONSUMER, "partitions": 2,
                  "topics": {"transactions": f"tx-{suffix}", "scores": f"scores-{suffix}", "dlq": f"dlq-{suffix}",
                             "labels": f"labels-{suffix}"}},
        "streaming": {**STREAMING_TEST_SETTINGS, "group_id": f"scorer-{suffix}"},
    })
    create_topics(settings.kafka_conf(), project_topics(settings))
    return settings


@pytest.fixture(scope="module")
def spawn():
    started: list[world.ScorerProcess] = []

    def start(config: Path, log: Path, *args: str) -> world.ScorerProcess:
        process = world.start_scorer(config, log, *args)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(10)


@pytest.mark.engine
@pytest.mark.kafka
def test_every_queried_metric_is_exported(scrape: str, api_scrape: str, nightly_twins) -> None:
    nightly_file = metrics_path(nightly_twins.by_nightly.settings, "nightly")
    assert nightly_file.is_file(), "the nightly runner wrote no metrics file"
    exported = sample_names(scrape) | sample_names(api_scrape) | sample_names(nightly_file.read_text())
    assert "cardscore_stream_end_to_end_latency_seconds_bucket" in exported, "the scorer scored nothing"
    assert "cardscore_serve_release_predict_seconds_bucket" in exported, "the scoring API scored nothing"
    assert "cardscore_pipeline_stage_figure" in exported and "cardscore_monitoring_alerts" in exported

    rules, recorded = rule_queries()
    queries = {**dashboard_queries(), **rules}
    names = selected_names(list(queries.values()))
    unknown = {where: sorted(set(names[expr]) - exported - recorded - PROMETHEUS_OWN)
               for where, expr in queries.items()}
    assert not {k: v for k, v in unknown.items() if v}, "queried but not exported"
    used = {n for expr in queries.values() for n in names[expr]}
    assert recorded <= used, f"recording rules nothing reads: {sorted(recorded - used)}"
