"""Train the fraud model: point-in-time training and test sets from the feature store,
XGBoost, evaluation, MLflow logging, registration and the validation gate.

    cardscore train [--train-start 2018-07-25] [--search]
    spark-submit jobs/train/main.py [--train-start 2018-07-25] [--search]
    SPARK_REMOTE=sc://127.0.0.1:15002 spark-submit jobs/train/main.py

The retraining run (jobs/retrain) calls `train(ctx, TrainingParams(...))`.
Exit codes: 0 the model passed the gate (alias `challenger` set), 1 the gate rejected it or
an input is missing (no alias moved), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from cardscore.core import catalog
from cardscore.core.days import parse_day
from cardscore.core.errors import MissingInput, StageFailed
from cardscore.core.logs import get_logger
from cardscore.core.stage import JobContext, StageCall, StageOutcome, StageSpec
from cardscore.jobs.train.report import summary
from cardscore.model.datasets import attach_features, entity_frame
from cardscore.model.evaluation import Evaluation, GateDecision, evaluate, gate_decision
from cardscore.model.protocol import Protocol, Split, days_needed, protocol_split, validation_folds
from cardscore.model.scoring import predict
from cardscore.model.training import SearchResult, fit_booster, prequential_search

if TYPE_CHECKING:
    import xgboost as xgb

    from cardscore.core.config import Settings
    from cardscore.core.config.training import ModelParams
    from cardscore.features.feature_sets import FeatureSet

STAGE = "train"
log = get_logger("jobs.train")

# (phase, done, total): the CLI draws one progress bar per phase.
PhaseProgress = Callable[[str, int, int], None]


@dataclass
class TrainingParams:
    """What may differ from run to run; everything else comes from `settings.training`."""

    train_start: date | None = None  # default: training.protocol.train_start
    search: bool | None = None  # default: training.search.enabled
    select_by: str | None = None  # default: training.search.select_by
    data_versions: dict[str, int] | None = None  # pin silver table versions (reruns)
    test_labels_as_of: datetime | None = None  # default: every label in the table version read
    register: bool = True  # register a version and run the gate (False: log the run only)
    actor: str | None = None  # recorded on alias moves; default $USER
    reason: str = ""
    progress: PhaseProgress | None = None
    version_tags: dict[str, str] = field(default_factory=dict)  # more tags on the registered version


@dataclass
class TrainingReport:
    run_id: str
    model_name: str
    version: str | None
    protocol: dict[str, Any]
    params: dict[str, Any]
    feature_names: list[str]
    data_versions: dict[str, int]
    train: Evaluation
    test: Evaluation
    gate: GateDecision | None
    challenger: bool
    search: dict[str, Any] | None = None
    sizes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model_name": self.model_name,
            "version": self.version,
            "protocol": self.protocol,
            "params": self.params,
            "feature_names": self.feature_names,
            "data_versions": self.data_versions,
            "train": self.train.to_dict(),
            "test": self.test.to_dict(),
            "gate": self.gate.to_dict() if self.gate else None,
            "challenger": self.challenger,
            "search": self.search,
            "sizes": self.sizes,
        }


class GateRejected(StageFailed):
    """The model was logged and registered but failed the validation gate; no alias moved."""

    def __init__(self, report: TrainingReport) -> None:
        assert report.gate is not None
        failed = "; ".join(c.detail for c in report.gate.failures)
        super().__init__(
            STAGE, f"{report.model_name} v{report.version} rejected by the validation gate: {failed}"
        )
        self.report = report


# ---------------------------------------------------------------------------- inputs


@dataclass
class TrainingInputs:
    transactions: pd.DataFrame  # transaction_id, customer_id, terminal_id, event_time, amount
    labels: pd.DataFrame  # transaction_id, is_fraud, reported_time (never fraud_scenario)
    tables: dict[str, dict[str, Any]]  # logical name -> {uri, version}


def _utc(series: pd.Series) -> pd.Series:
    series = pd.to_datetime(series)
    return series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")


def read_inputs(
    ctx: JobContext, first: date, end: date, versions: dict[str, int] | None = None
) -> TrainingInputs:
    """Silver transactions of [first, end) and the labels that can concern them, at pinned
    (or current) Delta versions."""
    from pyspark.sql import functions as F

    lake = ctx.lake
    tables: dict[str, dict[str, Any]] = {}
    for table in (catalog.SILVER_TRANSACTIONS, catalog.SILVER_LABELS):
        version = (versions or {}).get(table, lake.version(table))
        if version is None:
            raise MissingInput(STAGE, f"table {table} does not exist yet; run `cardscore ingest` first")
        tables[table] = {"uri": lake.uri(table), "version": int(version)}
    tx = (
        lake.read(catalog.SILVER_TRANSACTIONS, version=tables[catalog.SILVER_TRANSACTIONS]["version"])
        .where((F.col("tx_date") >= F.lit(first)) & (F.col("tx_date") < F.lit(end)))
        .select("transaction_id", "customer_id", "terminal_id", "event_time", "amount")
        .toPandas()
    )
    # A label is reported after its transaction: older report days cannot concern the window.
    # fraud_scenario is simulator ground truth for analysis: it is never selected here.
    labels = (
        lake.read(catalog.SILVER_LABELS, version=tables[catalog.SILVER_LABELS]["version"])
        .where(F.col("reported_date") >= F.lit(first))
        .select("transaction_id", "is_fraud", "reported_time")
        .toPandas()
    )
    tx["event_time"] = _utc(tx["event_time"])
    labels["reported_time"] = _utc(labels["reported_time"])
    labels["is_fraud"] = labels["is_fraud"].astype(bool)
    tx = tx.sort_values("transaction_id", kind="mergesort").reset_index(drop=True)
    log.info("train.inputs", transactions=len(tx), labels=len(labels), first=str(first), end=str(end),
             versions={k: v["version"] for k, v in tables.items()})
    return TrainingInputs(tx, labels, tables)


def _feature_api() -> tuple[str, Callable[..., pd.DataFrame]]:
    try:
        from cardscore.features.definitions import FEATURE_SERVICE_NAME
        from cardscore.features.retrieval import historical_features
    except ImportError as exc:
        raise MissingInput(
            STAGE, f"the feature store API is not available ({exc}); build features first"
        ) from None
    return str(FEATURE_SERVICE_NAME), historical_features


def configured_feature_set(settings: Settings) -> FeatureSet:
    """`training.feature_set`, a set declared in features/feature_sets.py (StageFailed if not)."""
    from cardscore.features.feature_sets import feature_set_named

    try:
        return feature_set_named(settings.training.feature_set)
    except ValueError as exc:
        raise StageFailed(STAGE, f"training.feature_set: {exc}") from None


def join_fresh(frame: pd.DataFrame, fresh: pd.DataFrame, first: date, last: date) -> pd.DataFrame:
    """`frame` with the fresh feature columns of `fresh` (transaction_id and the fresh columns,
    gold.fresh_features rows of [first, last]) joined on transaction_id; `FreshRowsMissing`,
    naming the backfill command, when a transaction has no row."""
    from cardscore.features.fresh_serving import FreshRowsMissing, build_command

    out = frame.merge(fresh, on="transaction_id", how="left", validate="one_to_one", indicator=True)
    absent = int((out["_merge"] != "both").sum())
    if absent:
        raise FreshRowsMissing(STAGE, f"{absent} of {len(frame)} transactions of {first}..{last} have no row "
                                      f"in {catalog.FRESH_FEATURES}; run {build_command(first, last)} first")
    return out.drop(columns="_merge")


def _check_split(split: Split, what: str) -> None:
    p = split.protocol
    if split.train.empty:
        raise MissingInput(STAGE, f"{what}: no transactions from {p.train_start} to {p.train_end - timedelta(days=1)} "
                                  "(the window starts at --train-start, else training.protocol.train_start)")
    if split.test.empty:
        raise MissingInput(STAGE, f"{what}: no transactions from {p.test_start} to {p.test_end - timedelta(days=1)}")
    if not split.train["label"].any():
        raise StageFailed(STAGE, f"{what}: no fraud label known at {p.cutoff.isoformat()} in the training days")


# ---------------------------------------------------------------------------- the stage


@dataclass
class TrainingSets:
    """Everything fitting needs, after the split and the feature-store join."""

    protocol: Protocol
    train: pd.DataFrame  # features + label, customer_id, day
    test: pd.DataFrame
    feature_names: list[str]
    feature_service: str
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # Delta inputs: uri, version
    folds: list[tuple[Protocol, pd.DataFrame, pd.DataFrame]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    last_label_reported: datetime | None = None  # the newest label in the table version read

    @property
    def feature_set(self) -> str:
        """The declared set (features/feature_sets.py) the features are; "undeclared" for
        another list (a benchmark's own features)."""
        from cardscore.features.feature_sets import feature_set_of

        found = feature_set_of(self.feature_names)
        return found.name if found is not None else "undeclared"


def labels_cover_test_days(protocol: Protocol, last_label_reported: datetime | None, label_delay_days: int) -> bool:
    """Whether every label of the test days can have arrived: the label feed reaches
    `label_delay_days` past the last test day. Otherwise frauds not yet reported count as
    legitimate and the test metrics understate the model."""
    if last_label_reported is None:
        return False
    last_test_day = protocol.test_end - timedelta(days=1)
    return last_label_reported.date() >= last_test_day + timedelta(days=label_delay_days)


def build_sets(ctx: JobContext, params: TrainingParams) -> TrainingSets:
    """Read silver, split by the protocol (and the validation folds), join point-in-time features."""
    cfg = ctx.settings.training
    note = params.progress or (lambda phase, done, total: None)
    protocol = Protocol.from_settings(cfg.protocol, params.train_start)
    search_on = cfg.search.enabled if params.search is None else params.search
    folds = validation_folds(protocol, cfg.search.n_folds, cfg.search.fold_shift_days) if search_on else []

    feature_set = configured_feature_set(ctx.settings)
    note("read silver", 0, 1)
    first, end = days_needed([protocol, *folds])
    inputs = read_inputs(ctx, first, end, params.data_versions)
    note("read silver", 1, 1)
    feature_service, historical_features = _feature_api()

    fresh = _read_fresh(ctx, inputs, first, end, params.data_versions) if feature_set.uses_fresh else None

    def features_for(entities: pd.DataFrame) -> pd.DataFrame:
        served = historical_features(ctx.settings, ctx.spark, entities)
        return served if fresh is None else join_fresh(served, fresh, first, end - timedelta(days=1))

    return assemble_sets(inputs, protocol, folds, features_for, feature_set.features, feature_service,
                         params.test_labels_as_of, note)


def _read_fresh(ctx: JobContext, inputs: TrainingInputs, first: date, end: date,
                versions: dict[str, int] | None) -> pd.DataFrame:
    """gold.fresh_features rows of [first, end) at a pinned (or the current) version, recorded
    with the other inputs."""
    from cardscore.features.fresh_serving import fresh_rows

    table = catalog.FRESH_FEATURES
    version = (versions or {}).get(table, ctx.lake.version(table))
    frame = fresh_rows(ctx.lake, first, end - timedelta(days=1), version, STAGE).toPandas()
    inputs.tables[table] = {"uri": ctx.lake.uri(table), "version": int(version)}
    log.info("train.fresh_inputs", rows=len(frame), version=version)
    return frame


def assemble_sets(
    inputs: TrainingInputs,
    protocol: Protocol,
    folds: Sequence[Protocol],
    features_for: Callable[[pd.DataFrame], pd.DataFrame],
    feature_names: Sequence[str],
    feature_service: str,
    test_labels_as_of: datetime | None = None,
    progress: PhaseProgress | None = None,
) -> TrainingSets:
    """Split `inputs` by the protocol and the validation folds, then join the features that
    `features_for(entity_frame)` returns (the feature store in the job; benchmarks may pass
    another definition to compare)."""
    note = progress or (lambda phase, done, total: None)
    split = protocol_split(inputs.transactions, inputs.labels, protocol, test_labels_as_of=test_labels_as_of)
    _check_split(split, "protocol")
    # Validation uses only what is known at training time: labels up to the cutoff.
    fold_splits = [
        protocol_split(inputs.transactions, inputs.labels, f,
                       train_labels_as_of=protocol.cutoff, test_labels_as_of=protocol.cutoff)
        for f in folds
    ]
    for i, fs in enumerate(fold_splits):
        _check_split(fs, f"validation fold {i}")

    note("features", 0, 1)
    frames = [split.train, split.test, *[f for fs in fold_splits for f in (fs.train, fs.test)]]
    entities = entity_frame(*frames)
    features = features_for(entities)
    names = list(feature_names)
    note("features", 1, 1)
    log.info("train.sets", entities=len(entities), **split.summary())
    return TrainingSets(
        protocol=protocol,
        train=attach_features(split.train, features, names),
        test=attach_features(split.test, features, names),
        feature_names=names,
        feature_service=feature_service,
        tables=inputs.tables,
        folds=[
            (fs.protocol, attach_features(fs.train, features, names), attach_features(fs.test, features, names))
            for fs in fold_splits
        ],
        sizes=split.summary(),
        last_label_reported=inputs.labels["reported_time"].max() if len(inputs.labels) else None,
    )


def train(ctx: JobContext, params: TrainingParams | None = None) -> TrainingReport:
    """Build the sets, (search,) fit, evaluate, log to MLflow, register and gate.

    Raises `GateRejected` (exit 1) when the gate fails, after logging and registering the
    version (tagged gate=failed, no alias).
    """
    params = params or TrainingParams()
    report = train_on_sets(ctx.settings, build_sets(ctx, params), params)
    if report.version is not None:
        # Monitoring's reference profile, saved with the run (never fails training).
        from cardscore.monitoring.reference import save_reference_of_version

        save_reference_of_version(ctx, report.version)
    return report


def train_on_sets(settings: Settings, sets: TrainingSets, params: TrainingParams | None = None) -> TrainingReport:
    """The part of `train` after the feature join: search, fit, evaluate, publish, gate."""
    params = params or TrainingParams()
    cfg = settings.training
    note = params.progress or (lambda phase, done, total: None)
    select_by = params.select_by or cfg.search.select_by
    k = cfg.protocol.top_k
    model_params = cfg.model
    search: SearchResult | None = None
    if sets.folds:
        search = prequential_search(
            [(tr, va) for _, tr, va in sets.folds], sets.feature_names, cfg.model, cfg.search.grid,
            select_by, k, progress=lambda done, total, _desc: note("search", done, total),
        )
        model_params = search.best.params
        log.info("train.search", best=search.best.changed(cfg.model), select_by=select_by,
                 score=search.best.mean(select_by))

    note("fit", 0, 1)
    booster = fit_booster(sets.train, sets.feature_names, model_params)
    train_eval = evaluate(sets.train, predict(booster, sets.train), k)
    test_scores = predict(booster, sets.test)
    test_eval = evaluate(sets.test, test_scores, k)
    note("fit", 1, 1)
    log.info("train.evaluated", **{f"test_{m}": round(v, 4) for m, v in test_eval.metrics().items()})

    note("mlflow", 0, 1)
    report = _publish(settings, params, sets, model_params, booster, test_scores, train_eval,
                      test_eval, search)
    note("mlflow", 1, 1)
    if report.gate is not None and not report.gate.passed:
        raise GateRejected(report)
    return report


def _search_summary(search: SearchResult, folds: list[Protocol]) -> dict[str, Any]:
    best = search.best
    return {
        "select_by": search.select_by,
        "n_folds": len(folds),
        "candidates": len(search.candidates),
        "best_params": best.params.model_dump(),
        "best_score": best.mean(search.select_by),
        "best_valid": {m: best.mean(m) for m in ("auc_roc", "average_precision", "card_precision_at_k")},
        "folds": [f.describe() for f in folds],
    }


def _champion_on(settings: Settings, test_set: pd.DataFrame, k: int) -> tuple[str | None, Evaluation | None]:
    """The current champion re-scored on this run's test set (None without a champion)."""
    from cardscore.core.registry import CHAMPION, find_alias, load_booster

    ref = find_alias(settings, CHAMPION)
    if ref is None:
        return None, None
    booster = load_booster(settings, ref)
    missing = [n for n in (booster.feature_names or []) if n not in test_set.columns]
    if missing:
        raise StageFailed(
            STAGE,
            f"the champion v{ref.version} needs features {missing} that this run's test set lacks; "
            "it cannot be compared on the same test set",
        )
    return ref.version, evaluate(test_set, predict(booster, test_set), k)


def _publish(
    settings: Settings,
    params: TrainingParams,
    sets: TrainingSets,
    model_params: ModelParams,
    booster: xgb.Booster,
    test_scores: Any,
    train_eval: Evaluation,
    test_eval: Evaluation,
    search: SearchResult | None,
) -> TrainingReport:
    """Log the run (params, metrics, plots, lineage, model, card), register, gate, alias."""
    import mlflow
    import mlflow.xgboost

    from cardscore.core import registry
    from cardscore.model import plots
    from cardscore.model.card import CardInputs, model_card
    from cardscore.model.tracking import (
        code_version,
        ensure_experiment,
        input_example,
        log_delta_inputs,
        model_signature,
        pip_requirements,
    )
    from cardscore.model.training import feature_importance

    protocol, feature_names, feature_service = sets.protocol, sets.feature_names, sets.feature_service
    tables, train_set, test_set = sets.tables, sets.train, sets.test
    folds = [p for p, _, _ in sets.folds]
    registry.configure_mlflow(settings)
    experiment_id = ensure_experiment(settings)
    version_of_code = code_version()
    k = test_eval.k
    label_delay = settings.monitoring.label_delay_days
    # Test labels pinned to a date are a choice (reruns); otherwise say when some cannot be in yet.
    pinned = params.test_labels_as_of is not None
    test_labels_complete = not pinned and labels_cover_test_days(protocol, sets.last_label_reported, label_delay)
    if not pinned and not test_labels_complete:
        log.warning("train.test_labels_incomplete", test_end=str(protocol.test_end - timedelta(days=1)),
                    last_label_reported=str(sets.last_label_reported), label_delay_days=label_delay,
                    advice="test an earlier week (--train-start) or ingest the later label days first")
    lineage = {
        "tables": tables,
        "protocol": protocol.describe(),
        "validation_folds": [f.describe() for f in folds],
        "test_labels_as_of": params.test_labels_as_of.isoformat() if params.test_labels_as_of else "all",
        "last_label_reported": sets.last_label_reported.isoformat() if sets.last_label_reported else None,
        "test_labels_complete": test_labels_complete,
        "feature_service": feature_service,
        "feature_set": sets.feature_set,
        "code_version": version_of_code,
    }
    search_info = _search_summary(search, folds) if search else None
    champion_version: str | None = None
    champion_eval: Evaluation | None = None
    if params.register:
        champion_version, champion_eval = _champion_on(settings, test_set, k)

    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        run_id = run.info.run_id
        mlflow.set_tags({
            "cardscore.stage": STAGE,
            "code_version": version_of_code,
            "feature_service": feature_service,
            "feature_set": sets.feature_set,
            "mlflow.source.git.commit": version_of_code.removesuffix("-dirty"),
        })
        mlflow.log_params({
            **{f"model.{k_}": v for k_, v in model_params.model_dump().items()},
            **{f"protocol.{k_}": v for k_, v in protocol.describe().items()},
            "top_k": k,
            "search": bool(search),
            "search.select_by": search.select_by if search else "",
            "features": len(feature_names),
            "feature_service": feature_service,
            "feature_set": sets.feature_set,
            **{f"data.{t}.version": m["version"] for t, m in tables.items()},
        })
        for prefix, ev in (("train", train_eval), ("test", test_eval)):
            mlflow.log_metrics({f"{prefix}_{m}": v for m, v in ev.metrics().items()})
            mlflow.log_metrics({f"{prefix}_transactions": ev.transactions, f"{prefix}_frauds": ev.frauds})
        for step, value in enumerate(test_eval.card_precision_per_day):
            mlflow.log_metric("test_card_precision_at_k_day", value, step=step)
        if search_info:
            mlflow.log_metrics({f"valid_{m}": v for m, v in search_info["best_valid"].items()})
            search.table().to_csv(out / "search.csv", index=False)  # type: ignore[union-attr]
            mlflow.log_artifact(str(out / "search.csv"))
        if champion_eval is not None:
            mlflow.log_metrics({f"champion_test_{m}": v for m, v in champion_eval.metrics().items()})
        log_delta_inputs(tables)

        y_train, y_test = train_set["label"].to_numpy(), test_set["label"].to_numpy()
        train_scores = predict(booster, train_set)
        curves = {"train": (y_train, train_scores), "test": (y_test, test_scores)}
        plots.roc_plot(curves, out / "plots" / "roc_curve.png")
        plots.pr_plot(curves, out / "plots" / "pr_curve.png")
        plots.importance_plot(feature_importance(booster, "gain"), out / "plots" / "feature_importance.png")
        plots.score_distribution_plot(y_test, test_scores, out / "plots" / "score_distribution.png")
        plots.card_precision_plot(test_eval.days, test_eval.card_precision_per_day, k,
                                  out / "plots" / "card_precision_per_day.png")
        mlflow.log_artifacts(str(out / "plots"), artifact_path="plots")
        mlflow.log_dict({"feature_names": feature_names, "feature_service": feature_service,
                         "feature_set": sets.feature_set}, "features.json")
        mlflow.log_dict(lineage, "lineage.json")
        mlflow.log_dict({"train": train_eval.to_dict(), "test": test_eval.to_dict()}, "evaluation.json")

        info = mlflow.xgboost.log_model(
            booster,
            name="model",
            signature=model_signature(feature_names),
            input_example=input_example(test_set, feature_names),
            pip_requirements=pip_requirements(),
            model_format="json",
        )

        version: str | None = None
        decision: GateDecision | None = None
        challenger = False
        if params.register:
            decision = gate_decision(test_eval, champion_eval, settings.training.gate, champion_version)
            ref = registry.register_version(
                settings, info.model_uri, run_id,
                tags={
                    registry.TAG_FEATURE_NAMES: json.dumps(feature_names),
                    registry.TAG_FEATURE_SERVICE: feature_service,
                    registry.TAG_FEATURE_SET: sets.feature_set,
                    registry.TAG_GATE: "passed" if decision.passed else "failed",
                    registry.TAG_GATE_SUMMARY: decision.summary(),
                    "code_version": version_of_code,
                    **{f"test_{m}": f"{v:.6f}" for m, v in test_eval.metrics().items()},
                    **params.version_tags,
                },
            )
            version = ref.version
            mlflow.log_dict(decision.to_dict(), "gate.json")
            mlflow.set_tag("gate", "passed" if decision.passed else "failed")
            if decision.passed:
                registry.set_challenger(settings, version, params.actor, params.reason or "passed the validation gate")
                challenger = True
            log.info("train.gate", version=version, passed=decision.passed,
                     failed=[c.name for c in decision.failures])

        card = model_card(CardInputs(
            model_name=settings.mlflow.model_name,
            run_id=run_id,
            code_version=version_of_code,
            feature_names=feature_names,
            feature_service=feature_service,
            protocol=protocol.describe(),
            lineage=lineage,
            params=model_params.model_dump(),
            train=train_eval,
            test=test_eval,
            version=version,
            search=search_info,
            gate=decision.to_dict() if decision else None,
        ))
        mlflow.log_text(card, "model_card.md")

    return TrainingReport(
        run_id=run_id,
        model_name=settings.mlflow.model_name,
        version=version,
        protocol=protocol.describe(),
        params=model_params.model_dump(),
        feature_names=feature_names,
        data_versions={t: int(m["version"]) for t, m in tables.items()},
        train=train_eval,
        test=test_eval,
        gate=decision,
        challenger=challenger,
        search=search_info,
        sizes=sets.sizes,
    )


# ---------------------------------------------------------------------------- the stage


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-start", help="first training day, YYYY-MM-DD (default: training.protocol.train_start)")
    search = parser.add_mutually_exclusive_group()
    search.add_argument("--search", dest="search", action="store_true", default=None,
                        help="run the prequential hyperparameter search first (default: training.search.enabled)")
    search.add_argument("--no-search", dest="search", action="store_false", help="use training.model as is")
    parser.add_argument("--select-by", choices=["auc_roc", "average_precision", "card_precision_at_k"],
                        help="validation metric the search maximises (default: training.search.select_by)")
    parser.add_argument("--no-register", dest="register", action="store_false",
                        help="log the run only: no version, no gate")
    parser.add_argument("--actor", help="who is training (recorded on alias moves; default $USER)")
    parser.add_argument("--reason", default="", help="why (recorded on alias moves)")


def run(call: StageCall) -> StageOutcome:
    """The stage: `train` with the call's options; a gate rejection fails it (exit 1)."""
    options = call.options
    progress = (lambda phase, done, total: call.phase(f"{phase} {done}/{total}")) if call.progress else None
    params = TrainingParams(
        train_start=parse_day(options["train_start"]) if options.get("train_start") else None,
        search=options.get("search"),
        select_by=options.get("select_by"),
        register=options.get("register", True),
        actor=options.get("actor"),
        reason=options.get("reason") or "",
        progress=progress,
    )
    return outcome_of(train(call.ctx, params))


def outcome_of(report: TrainingReport) -> StageOutcome:
    test = report.test.metrics()
    return StageOutcome(
        model_version=report.version,
        details=report.to_dict(),
        message=f"{report.model_name} v{report.version or '-'}: AUC {test['auc_roc']:.3f}, "
        f"AP {test['average_precision']:.3f}, CP@{report.test.k} {test['card_precision_at_k']:.3f}"
        + (", challenger" if report.challenger else ""),
        report=report,
    )


SPEC = StageSpec(
    name=STAGE,
    description="train, evaluate, register and gate the fraud model",
    run=run,
    dated=False,
    inputs=(catalog.SILVER_TRANSACTIONS, catalog.SILVER_LABELS, catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES,
            catalog.FRESH_FEATURES),
    outputs=("MLflow registry",),
    gates=("promotion gate",),
    add_options=add_options,
    summarize=summary,
)
