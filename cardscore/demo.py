"""The end-to-end demo as library steps (`cardscore demo` adds the progress display).

A world is simulated into the landing folder; the history is backfilled the way an operator
would (ingest day by day, one feature pass over the range); a model is trained with the
handbook's protocol (moved to the end of the history when the world is shorter than the
handbook's), gated and promoted; the last nights run the real nightly pipeline (ingest,
features, materialize, score, monitor); during the last day the stream scorer scores the
replayed transactions from the online store, and that night's batch scores must equal them.

Each step returns plain data; nothing here prints. Deliberately bad records (a re-sent landing
file with broken lines, a few broken messages) show the quarantine and the DLQ at work.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cardscore.core.config import Settings, load_settings
from cardscore.core.stage import job_context
from cardscore.features.definitions import DELAY_DAYS, TERMINAL_LOOKBACK_DAYS
from cardscore.monitoring.trigger import retrain_window_start

# progress(phase, done, total)
ProgressFn = Callable[[str, int, int], None]

NIGHTLY_DAYS = 3  # the last days run through the nightly pipeline; earlier ones are a backfill
BAD_LANDING_FILE = "upstream-resend.jsonl"


def _noop(phase: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class DemoPlan:
    """Which days play which part."""

    first: date
    last: date  # the last simulated day: streamed during the day, batch-scored at night
    train_start: date
    train_days: int
    delay_days: int
    test_days: int

    @property
    def backfill_last(self) -> date:
        return self.last - timedelta(days=NIGHTLY_DAYS)

    @property
    def nightly_days(self) -> list[date]:
        return [self.backfill_last + timedelta(days=i + 1) for i in range(NIGHTLY_DAYS)]

    @property
    def test_last(self) -> date:
        return self.train_start + timedelta(days=self.train_days + self.delay_days + self.test_days - 1)

    @property
    def stream_day(self) -> date:
        return self.last


def make_plan(settings: Settings) -> DemoPlan:
    """The configured protocol if the backfilled history covers it, with every test label
    known; else the same windows moved so that the test week ends `label_delay_days` before the
    last backfilled day (labels arrive up to that late: an earlier test week would count the
    frauds not yet reported as legitimate and understate the model, as the retraining trigger
    also avoids). The protocol's default first day is placed in the configured world
    (`training.protocol.train_start`), so a world on any calendar plans by its settings alone;
    a setting that cannot fit raises a ValueError naming it and the dates in conflict."""
    sim, protocol = settings.simulator, settings.training.protocol
    first = sim.start_date
    last = first + timedelta(days=sim.n_days - 1)
    span = protocol.train_days + protocol.delay_days + protocol.test_days
    label_delay = settings.monitoring.label_delay_days
    # Terminal risk needs labels known 7 days before a snapshot: with less history than that
    # before training there is nothing to learn from. (Full windows need 37 days; fewer only
    # truncates them, as on the real world's first weeks.)
    least = DELAY_DAYS + 1
    earliest_start = first + timedelta(days=least)
    # The newest protocol window whose test labels are all in when training runs (the end of
    # the backfill): the same window the retraining trigger picks for its day.
    newest_start = retrain_window_start(last - timedelta(days=NIGHTLY_DAYS), protocol.train_days,
                                        protocol.delay_days, protocol.test_days, label_delay)
    if newest_start < earliest_start:
        raise ValueError(
            f"simulator.n_days {sim.n_days} is too short for the demo (a world from {first} to {last}): "
            f"training needs {least} days of history before it, {span} days of protocol windows, "
            f"{label_delay} days for the test days' labels to arrive (monitoring.label_delay_days) and "
            f"{NIGHTLY_DAYS} nightly days (at least {least + span + label_delay + NIGHTLY_DAYS} days)"
        )
    configured = protocol.train_start or newest_start
    train_start = min(configured, newest_start)
    if train_start < earliest_start:
        raise ValueError(
            f"training.protocol.train_start {configured} does not fit the world that starts on "
            f"simulator.start_date {first}: training needs {least} days of history before its first "
            f"day, so it can start on {earliest_start} at the earliest (and on {newest_start} at the "
            f"latest for this world's length); set it between those dates, or leave it unset to place "
            f"the handbook's protocol in the world"
        )
    return DemoPlan(first, last, train_start, protocol.train_days, protocol.delay_days, protocol.test_days)


# The default gate minimums suit a test week whose features have full windows behind them
# (30-day windows, labels 7 days old: 37 days of history before training). A world too short
# for that trains and tests on truncated windows, so its floor is lower; the default 75-day demo
# and --full keep the configured gate.
SHORT_WORLD_GATE = {"min_auc_roc": 0.75, "min_average_precision": 0.30, "min_card_precision_at_k": 0.15}


def demo_settings(config_path: Path | None, home: Path, n_days: int, extra: dict[str, Any] | None = None) -> Settings:
    """The user's settings with the demo's workspace, world length and fail-fast retries."""
    overrides: dict[str, Any] = {
        "home": str(home),
        "simulator": {"n_days": n_days},
        "pipeline": {"retry": {"max_attempts": 2, "backoff_seconds": 1.0}},
        "streaming": {"metrics_port": 0},
    }
    for key, value in (extra or {}).items():
        overrides[key] = {**overrides.get(key, {}), **value} if isinstance(value, dict) else value
    settings = load_settings(config_path, overrides=overrides)
    if short_world_gate(settings):
        overrides["training"] = {**overrides.get("training", {}), "gate": SHORT_WORLD_GATE}
        settings = load_settings(config_path, overrides=overrides)
    return settings


def short_world_gate(settings: Settings) -> bool:
    """True when the demo lowers the gate floor: training starts before the feature windows
    are full, and the gate is left at its defaults (a gate set in the user's config is kept)."""
    from cardscore.core.config.training import GateSettings

    try:
        plan = make_plan(settings)
    except ValueError:
        return False  # too short for the demo at all: the demo says so when it plans
    history_days = (plan.train_start - plan.first).days
    return history_days < TERMINAL_LOOKBACK_DAYS and settings.training.gate == GateSettings()


def write_workspace_config(home: Path, settings: Settings, plan: DemoPlan, config_path: Path | None = None) -> Path:
    """`<home>/cardscore.yaml`: the demo's settings, so that every command can be pointed at the
    demo's workspace afterwards (`cardscore --config <home>/cardscore.yaml runs --date D`): the
    user's config file as written (secrets stay `${env:...}` references), with the demo's world
    and training, whose first day is the one the demo trained on (`cardscore train` repeats it)."""
    import yaml

    from cardscore.core.config import config_file

    path = home / "cardscore.yaml"
    source = config_file(config_path)  # --config, else $CARDSCORE_CONFIG or ./cardscore.yaml
    written = (yaml.safe_load(source.read_text()) or {}) if source else {}
    training = settings.training.model_dump(mode="json")
    training["protocol"]["train_start"] = plan.train_start.isoformat()
    profile: dict[str, Any] = {**{k: v for k, v in written.items() if k not in ("profile", "home")},
                               "profile": "demo", "home": ".",
                               "simulator": settings.simulator.model_dump(mode="json"),
                               "training": training}
    text = yaml.safe_dump(profile, sort_keys=False)
    path.write_text("# written by `cardscore demo`: its workspace as a profile (paths relative to this file)\n" + text)
    return path


def table_counts(settings: Settings) -> dict[str, int]:
    """Rows per table of the pipeline (what each stage published)."""
    from cardscore.core import catalog

    ctx = job_context(settings)
    tables = [catalog.BRONZE_TRANSACTIONS, catalog.SILVER_TRANSACTIONS, catalog.SILVER_LABELS, catalog.QUARANTINE,
              catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES, settings.scoring.output_table,
              catalog.PIPELINE_RUNS]
    monitoring = getattr(catalog, "MONITORING", None)
    if monitoring:
        tables.append(monitoring)
    return {t: ctx.lake.read(t).count() for t in tables if ctx.lake.exists(t)}


def gate_tally(log_file: Path) -> dict[str, dict[str, int]]:
    """suite -> {"passed": n, "failed": n}, from the `gate.result` events of a JSON-lines log."""
    tally: dict[str, dict[str, int]] = {}
    if not log_file.exists():
        return tally
    for line in log_file.read_text(encoding="utf-8").splitlines():
        if '"gate.result"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        counts = tally.setdefault(event.get("suite", "?"), {"passed": 0, "failed": 0})
        counts["passed" if event.get("success") else "failed"] += 1
    return tally


# ---------------------------------------------------------------------------------- steps


@dataclass
class WorldSummary:
    transactions: int
    frauds: int
    labels: int
    days: int
    frauds_by_scenario: dict[int, int]
    seconds: float


def simulate(settings: Settings, progress: ProgressFn = _noop) -> WorldSummary:
    from cardscore.simulator import generate_world, write_landing

    started = time.perf_counter()
    progress("generate", 0, 1)
    world = generate_world(settings.simulator)
    progress("generate", 1, 1)
    write_landing(world, settings.landing_root, overwrite=True, progress=progress)
    tx = world.transactions
    frauds = tx[tx["tx_fraud"] == 1]
    return WorldSummary(
        transactions=len(tx), frauds=len(frauds), labels=len(world.labels), days=settings.simulator.n_days,
        frauds_by_scenario={int(k): int(v) for k, v in frauds["tx_fraud_scenario"].value_counts().sort_index().items()},
        seconds=time.perf_counter() - started,
    )


def add_bad_landing_file(settings: Settings, day: date) -> int:
    """An upstream re-send for `day` with broken lines and one good duplicate: the quarantine
    gets each with its reason, the duplicate adds nothing. Returns the number of lines."""
    from pyarrow import fs as pafs

    from cardscore.simulator import read_landing_day

    good = read_landing_day(settings.landing_root, day)[:1]
    lines = [
        *good,  # an exact duplicate of a delivered transaction: dropped, not quarantined
        b'{"transaction_id": 990000001, "event_time": "2018-13-45T99:00:00Z"',  # truncated JSON
        b'{"transaction_id": 990000002, "event_time": "%sT10:00:00Z", "customer_id": 1, '
        b'"terminal_id": 2, "amount": -40.0}' % day.isoformat().encode(),  # negative amount
        b'{"transaction_id": 990000003, "customer_id": 1, "terminal_id": 2, "amount": 12.5}',  # no time
        b'{"transaction_id": 990000004, "event_time": "%sT10:00:00Z", "customer_id": "seven", '
        b'"terminal_id": 2, "amount": 3.0}' % day.isoformat().encode(),  # wrong type
    ]
    filesystem, root = pafs.FileSystem.from_uri(settings.landing_root)
    path = f"{root.rstrip('/')}/transactions/date={day.isoformat()}/{BAD_LANDING_FILE}"
    with filesystem.open_output_stream(path) as out:
        out.write(b"\n".join(lines) + b"\n")
    return len(lines)


@dataclass
class BackfillSummary:
    days: int
    silver_transactions: int
    silver_labels: int
    quarantined: int
    quarantine_reasons: dict[str, int]
    snapshot_days: int
    seconds: float


def backfill(settings: Settings, plan: DemoPlan, progress: ProgressFn = _noop) -> BackfillSummary:
    """Ingest every day up to the backfill end, then one feature pass over the whole range."""
    from cardscore.core import catalog
    from cardscore.jobs.build_features.stage import build_features_range
    from cardscore.jobs.ingest.stage import ingest_day

    ctx = job_context(settings)
    started = time.perf_counter()
    days = [plan.first + timedelta(days=i) for i in range((plan.backfill_last - plan.first).days + 1)]
    quarantined, reasons = 0, {}
    for done, day in enumerate(days):
        progress("ingest", done, len(days))
        report = ingest_day(ctx, day)
        quarantined += sum(f.quarantined for f in report.feeds.values())
        for reason, count in report.reason_totals().items():
            reasons[reason] = reasons.get(reason, 0) + count
    progress("ingest", len(days), len(days))
    snapshots = build_features_range(
        ctx, plan.first + timedelta(days=1), plan.backfill_last + timedelta(days=1),
        progress=lambda done, total: progress("features", done, total),
    )
    return BackfillSummary(
        days=len(days),
        silver_transactions=ctx.lake.read(catalog.SILVER_TRANSACTIONS).count(),
        silver_labels=ctx.lake.read(catalog.SILVER_LABELS).count(),
        quarantined=quarantined, quarantine_reasons=reasons,
        snapshot_days=len(snapshots), seconds=time.perf_counter() - started,
    )


@dataclass
class ModelSummary:
    version: str | None
    gate_passed: bool
    gate_summary: str
    test: dict[str, float]
    train: dict[str, float]
    windows: dict[str, str]
    champion: str | None
    run_id: str
    seconds: float


def train_and_promote(settings: Settings, plan: DemoPlan, progress: ProgressFn = _noop) -> ModelSummary:
    """Train with the plan's windows; promote the version to champion if the gate passed."""
    from cardscore.core import registry
    from cardscore.jobs.train.stage import GateRejected, TrainingParams, train

    started = time.perf_counter()
    params = TrainingParams(train_start=plan.train_start, actor="cardscore-demo",
                            reason="demo: first model", progress=progress)
    try:
        report = train(job_context(settings), params)
    except GateRejected as rejected:
        report = rejected.report
    champion = None
    if report.gate is not None and report.gate.passed and report.version is not None:
        registry.promote(settings, actor="cardscore-demo", reason="demo: gate passed", version=report.version)
        champion = report.version
    return ModelSummary(
        version=report.version, gate_passed=bool(report.gate and report.gate.passed),
        gate_summary=report.gate.summary() if report.gate else "no gate (not registered)",
        test=report.test.metrics(), train=report.train.metrics(),
        windows={k: str(v) for k, v in report.protocol.items()}, champion=champion,
        run_id=report.run_id, seconds=time.perf_counter() - started,
    )


def nightly(settings: Settings, days: list[date], reporter: Any = None) -> list[Any]:
    """The real nightly pipeline (jobs/nightly) through the runner for `days`; its DayResults."""
    from cardscore.core.runner import execute
    from cardscore.jobs.nightly.pipeline import NIGHTLY

    return execute(NIGHTLY, job_context(settings), days, force=True, reporter=reporter)


@dataclass
class StreamSummary:
    day: date
    replayed: int
    bad_messages: int
    scored: int
    dlq: int
    dlq_reasons: dict[str, int]
    events_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    model_versions: list[str]
    scores: dict[int, float] = field(repr=False, default_factory=dict)
    seconds: float = 0.0


BAD_MESSAGES = (b"not json at all", b'{"transaction_id": 1}', b'{"transaction_id": -5, "amount": NaN}')


def stream_day(settings: Settings, day: date, rate: float | None, progress: ProgressFn = _noop,
               timeout: float = 600.0) -> StreamSummary:
    """Score `day` on the stream: a scorer thread consumes while the day is replayed (paced at
    `rate` messages/s) plus a few broken messages; waits until every message is accounted for."""
    from confluent_kafka import Producer

    from cardscore.services.broker import create_topics, project_topics
    from cardscore.simulator import read_landing_day
    from cardscore.simulator.kafka import read_label_day, replay_day
    from cardscore.streaming.scorer import StreamScorer

    started = time.perf_counter()
    create_topics(settings.kafka_conf(), project_topics(settings))
    expected = len(read_landing_day(settings.landing_root, day)) + len(BAD_MESSAGES)
    to_replay = expected - len(BAD_MESSAGES) + len(read_label_day(settings.landing_root, day))
    scorer = StreamScorer(settings)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            scorer.run()
        except BaseException as exc:  # surfaced below
            failure.append(exc)

    thread = threading.Thread(target=run, name="stream-scorer", daemon=True)
    thread.start()
    try:
        producer = Producer(settings.kafka_conf("producer"))
        for value in BAD_MESSAGES:
            producer.produce(settings.kafka.topics.transactions, value=value)
        producer.flush(30)
        # The scorer is up (partitions assigned, model and feature store loaded) once it has
        # handled the broken messages: only then is the day replayed, so latency is not start-up.
        deadline = time.monotonic() + timeout
        while scorer.totals.get("messages", 0) < len(BAD_MESSAGES):
            if failure:
                raise failure[0]
            if time.monotonic() > deadline:
                raise TimeoutError("the stream scorer did not start consuming")
            progress("start", 0, 1)
            thread.join(0.2)
        progress("start", 1, 1)
        produced = [0]

        def on_delivered(n: int) -> None:  # replay reports increments
            produced[0] += n
            progress("replay", produced[0], to_replay)

        # The replay also publishes the day's label reports (the scorer does not read them).
        replayed = replay_day(settings, day, rate=rate, progress=on_delivered).transactions
        deadline = time.monotonic() + timeout
        while scorer.totals.get("messages", 0) < expected:
            if failure:
                raise failure[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stream scorer handled {dict(scorer.totals)} of {expected} messages")
            progress("score", scorer.totals.get("messages", 0), expected)
            thread.join(0.2)
        progress("score", expected, expected)
    finally:
        scorer.stop()
        thread.join(60)
    summary = _read_scores(settings, day, replayed, len(BAD_MESSAGES))
    summary.seconds = time.perf_counter() - started
    return summary


def _read_scores(settings: Settings, day: date, replayed: int, bad: int) -> StreamSummary:
    """Scores, DLQ and input timestamps back from the topics (latency = score message time -
    transaction message time, both broker timestamps)."""
    import numpy as np

    topics = settings.kafka.topics
    inputs: dict[bytes, int] = {}  # transaction id (the score's key) -> input message time
    for message in read_topic(settings, topics.transactions):
        try:
            inputs[str(json.loads(message.value())["transaction_id"]).encode()] = message.timestamp()[1]
        except (ValueError, KeyError, TypeError):
            continue  # the deliberately broken messages
    scores: dict[int, float] = {}
    latencies, stamps, versions = [], [], set()
    for message in read_topic(settings, topics.scores):
        body = json.loads(message.value())
        scores[int(body["transaction_id"])] = float(body["score"])
        versions.add(str(body["model_version"]))
        stamps.append(message.timestamp()[1])
        produced = inputs.get(message.key())
        if produced is not None:
            latencies.append(message.timestamp()[1] - produced)
    reasons: dict[str, int] = {}
    for message in read_topic(settings, topics.dlq):
        reason = dict(message.headers() or []).get("dlq.reason", b"unknown")
        reason = reason.decode() if isinstance(reason, bytes) else str(reason)
        reasons[reason] = reasons.get(reason, 0) + 1
    span_s = (max(stamps) - min(stamps)) / 1000 if len(stamps) > 1 else 0.0
    return StreamSummary(
        day=day, replayed=replayed, bad_messages=bad, scored=len(scores), dlq=sum(reasons.values()),
        dlq_reasons=reasons, events_per_s=len(stamps) / span_s if span_s else float("nan"),
        latency_p50_ms=float(np.percentile(latencies, 50)) if latencies else float("nan"),
        latency_p99_ms=float(np.percentile(latencies, 99)) if latencies else float("nan"),
        model_versions=sorted(versions), scores=scores,
    )


def read_topic(settings: Settings, topic: str, timeout: float = 60.0) -> list[Any]:
    """Every message of a topic from offset 0 to the end of each partition (call it when no
    producer writes to it any more)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer({**settings.kafka_conf("consumer"), "group.id": f"demo-reader-{time.monotonic_ns()}",
                         "enable.partition.eof": "true", "enable.auto.commit": "false"})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out, at_end = [], set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} was not read to its end within {timeout:.0f}s")
            for message in consumer.consume(1000, 0.5):
                error = message.error()
                if error is None:
                    out.append(message)
                    at_end.discard(message.partition())
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
        return out
    finally:
        consumer.close()


@dataclass
class SkewCheck:
    compared: int
    missing_in_stream: int
    missing_in_batch: int
    max_abs_diff: float
    same_model_version: bool

    @property
    def equal(self) -> bool:
        return self.compared > 0 and not self.missing_in_stream and not self.missing_in_batch \
            and self.max_abs_diff < 1e-6 and self.same_model_version


def stream_equals_batch(settings: Settings, stream: StreamSummary) -> SkewCheck:
    """The night's batch predictions of the streamed day against the stream's scores."""
    ctx = job_context(settings)
    rows = (ctx.lake.read(settings.scoring.output_table)
            .where(f"tx_date = DATE'{stream.day.isoformat()}'")
            .select("transaction_id", "score", "model_version").collect())
    batch = {int(r.transaction_id): float(r.score) for r in rows}
    common = batch.keys() & stream.scores.keys()
    diff = max((abs(batch[t] - stream.scores[t]) for t in common), default=float("nan"))
    return SkewCheck(
        compared=len(common), missing_in_stream=len(batch.keys() - stream.scores.keys()),
        missing_in_batch=len(stream.scores.keys() - batch.keys()), max_abs_diff=diff,
        same_model_version={r.model_version for r in rows} == set(stream.model_versions),
    )


def where_to_look(settings: Settings, config: Path, day: date) -> dict[str, str]:
    """Commands and paths to explore what the demo produced."""
    from cardscore import features
    from cardscore.expectations.gate import offline_index

    features_dir = Path(features.__file__).parent  # the Feast repo (feature_store.yaml)
    home = settings.home_path
    cli = f"cardscore --config {config}"
    return {
        "Great Expectations Data Docs": str(offline_index(settings)),  # GX's index.html needs CDNs
        "MLflow UI": f"mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}",
        "monitoring reports": str(home / "monitoring" / day.isoformat() / "report.html"),
        "model server": f'eval "$({cli} models env)" && mlflow models serve -m '
                        '"models:/$CARDSCORE_MODEL_NAME@champion" --env-manager local --host 127.0.0.1 --port 5001',
        "Feast UI": f'eval "$({cli} features env)" && feast -c {features_dir} ui --host 127.0.0.1 --port 8888',
        "run ledger": f"{cli} runs --date {day}",
        "models": f"{cli} models list",
        "lake (Delta tables)": settings.lake_root,
        "full log": str(home / "demo.log"),
    }
