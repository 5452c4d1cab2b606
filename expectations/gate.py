"""The gate every stage passes before it publishes: a Great Expectations suite over a DataFrame.

Suites are plain GX JSON files in `expectations/suites/<name>.json` (the repository is their
source of truth). A gate run validates a pandas or Spark (classic or Connect) DataFrame,
updates the Data Docs site under `<home>/gx`, and either returns the result or, through
`gate()`, raises `GateFailed` naming each failed expectation. Stages call it on what they are
about to publish, before the commit that makes it visible, so downstream never sees a failed day.

Suites may use `{"$PARAMETER": "name"}` for values known only at run time (e.g. the row
count that bronze minus quarantine implies); pass them as `parameters`.

**Cheap verdicts.** A passing gate without Data Docs (`build_docs=False`) on a Spark DataFrame
is decided on a pre-aggregated frame (`expectations.aggregate`): the suite's expectations
computed in ONE engine query, one row per expectation, validated by GX with two expectations.
Only when that fails, or when the suite uses something the aggregate pass does not compute,
does the full suite run on the data (`strategy="full"`), so a failure reports exactly what it
always did (failed expectations, counts, example values, Data Docs). `GateResult.strategy`
says which decided.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cardscore.core.errors import StageFailed
from cardscore.core.logs import get_logger
from cardscore.expectations.docs import OFFLINE_INDEX, site_dir, write_offline_index

if TYPE_CHECKING:
    from cardscore.core.config import Settings

SUITES_DIR = Path(__file__).parent / "suites"
log = get_logger("expectations.gate")
_lock = threading.Lock()
_contexts: dict[str, Any] = {}
_verdict_checkpoint: list[Any] = []  # the GX checkpoint over pre-aggregated frames, built once
STRATEGIES = ("auto", "aggregate", "full")


@dataclass(frozen=True)
class FailedExpectation:
    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    observed_value: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    # Example offending values, for Data Docs and debugging; never written to logs.
    partial_unexpected_list: list[Any] = field(default_factory=list, repr=False)

    def describe(self) -> str:
        target = f"{self.expectation}({self.column})" if self.column else self.expectation
        bounds = {k: v for k, v in self.kwargs.items() if k not in ("column", "batch_id")}
        parts = [target]
        if bounds:
            parts.append(json.dumps(bounds, default=str, sort_keys=True))
        if self.unexpected_count is not None:
            parts.append(f"unexpected {self.unexpected_count} ({(self.unexpected_percent or 0):.3g}%)")
        if self.observed_value is not None:
            parts.append(f"observed {self.observed_value}")
        return " ".join(parts)


@dataclass(frozen=True)
class GateResult:
    suite: str
    success: bool
    evaluated: int
    failed: list[FailedExpectation]
    docs_index: str | None
    run_name: str
    docs_page: str | None = None  # this run's rendered page: reads without internet, unlike the index
    strategy: str = "full"  # what decided: the full suite on the data, or the aggregate pass

    def summary(self) -> str:
        if self.success:
            return f"gate {self.suite}: passed {self.evaluated} expectations"
        lines = [f"gate {self.suite}: {len(self.failed)} of {self.evaluated} expectations failed"]
        lines += [f"  - {f.describe()}" for f in self.failed]
        if self.docs_page or self.docs_index:
            lines.append(f"  Data Docs: {self.docs_page or self.docs_index}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for item in out["failed"]:
            item.pop("partial_unexpected_list", None)
        return out


class GateFailed(StageFailed):
    """A gate's suite failed; the stage published nothing."""

    def __init__(self, stage: str, result: GateResult) -> None:
        super().__init__(stage, result.summary())
        self.result = result


def suite_path(name: str) -> Path:
    return SUITES_DIR / f"{name}.json"


def load_suite_json(name: str) -> dict[str, Any]:
    path = suite_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no expectation suite {name!r} at {path}")
    data = json.loads(path.read_text())
    if data.get("name") != name:
        raise ValueError(f"{path}: suite name {data.get('name')!r} does not match the file name")
    return data


def validate(
    df: Any,
    suite: str,
    settings: Settings,
    run_name: str,
    parameters: dict[str, Any] | None = None,
    build_docs: bool = True,
    strategy: str = "auto",
) -> GateResult:
    """Validate `df` (pandas or Spark) against the named suite; never raises on failures.

    `strategy`: "auto" (the default) decides a Spark frame without Data Docs on the aggregate
    pass, and runs the full suite only when that fails or cannot compile the suite; "full"
    always runs the full suite; "aggregate" is "auto" but raises `NotCompilable` instead of
    falling back (tests and benchmarks use it to be sure which pass decided).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    started = time.perf_counter()
    if strategy != "full" and not build_docs and not _is_pandas(df):
        verdict = _aggregate_verdict(df, suite, parameters, required=strategy == "aggregate")
        if verdict is not None:
            success, evaluated = verdict
            if success:
                result = GateResult(suite, True, evaluated, [], None, run_name, strategy="aggregate")
                _log_result(result, started)
                return result
            log.info("gate.aggregate_failed", suite=suite, run=run_name,
                     seconds=round(time.perf_counter() - started, 3))
    result = _validate_full(df, suite, settings, run_name, parameters, build_docs)
    if strategy != "full" and result.success and not build_docs and not _is_pandas(df):
        # The aggregate pass failed a suite the full run passes: its semantics drifted from
        # GX's. The full run is what the suite means; say so loudly.
        log.error("gate.strategies_disagree", suite=suite, run=run_name)
    _log_result(result, started)
    return result


def _validate_full(
    df: Any,
    suite: str,
    settings: Settings,
    run_name: str,
    parameters: dict[str, Any] | None,
    build_docs: bool,
) -> GateResult:
    """The whole suite run by GX on the data (SUMMARY results, optionally Data Docs)."""
    import great_expectations as gx

    with _lock:  # GX contexts are not thread-safe; gates are short
        context = _context(settings)
        suite_obj = context.suites.add_or_update(gx.ExpectationSuite(**load_suite_json(suite)))
        asset = _asset(context, df, suite)
        batch_definition = _batch_definition(asset)
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{suite}-validation", data=batch_definition, suite=suite_obj)
        )
        actions = [gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")] if build_docs else []
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"{suite}-checkpoint",
                validation_definitions=[definition],
                actions=actions,
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 10},
            )
        )
        run = checkpoint.run(
            batch_parameters={"dataframe": df},
            expectation_parameters=parameters or {},
            run_id=_run_id(run_name),
        )
        results = [r for vr in run.run_results.values() for r in vr.results]
        docs = _docs_index(context) if build_docs else None
        page = _docs_page(context, next(iter(run.run_results), None)) if build_docs else None
        if build_docs:
            write_offline_index(Path(root_of(settings)))
    failed = [_failed(r) for r in results if not r.success]
    return GateResult(suite, bool(run.success), len(results), failed, docs, run_name, page)


def _aggregate_verdict(
    df: Any, suite: str, parameters: dict[str, Any] | None, required: bool
) -> tuple[bool, int] | None:
    """(success, expectations evaluated) from the pre-aggregated frame, validated by GX; None
    when the suite does not compile to it (then the full suite runs)."""
    from cardscore.expectations.aggregate import NotCompilable, metrics_frame

    definition = load_suite_json(suite)
    try:
        frame = metrics_frame(df, definition, parameters)
    except NotCompilable as exc:
        if required:
            raise
        log.info("gate.full_suite", suite=suite, reason=str(exc))
        return None
    with _lock:
        checkpoint = _verdict_checkpoint_of()
        run = checkpoint.run(batch_parameters={"dataframe": frame})
    return bool(run.success), len(definition.get("expectations", []))


def _verdict_checkpoint_of() -> Any:
    """GX's check of a pre-aggregated frame: low <= observed <= high on every row (a NaN
    observed fails), and one row per expectation. In an ephemeral context built once per
    process: these checks are not the suite, so they stay out of its Data Docs."""
    if _verdict_checkpoint:
        return _verdict_checkpoint[0]
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from cardscore.expectations.aggregate import HIGH, LOW, OBSERVED

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    suite = context.suites.add(gx.ExpectationSuite(name="aggregated_checks", expectations=[
        gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=OBSERVED, column_B=LOW, or_equal=True, ignore_row_if="neither"),
        gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A=HIGH, column_B=OBSERVED, or_equal=True, ignore_row_if="neither"),
    ]))
    asset = context.data_sources.add_pandas("aggregated").add_dataframe_asset("checks")
    definition = context.validation_definitions.add(gx.ValidationDefinition(
        name="aggregated_checks", data=asset.add_batch_definition_whole_dataframe("whole"), suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name="aggregated_checks", validation_definitions=[definition], actions=[],
        result_format={"result_format": "BOOLEAN_ONLY"}))
    _verdict_checkpoint.append(checkpoint)
    return checkpoint


def _is_pandas(df: Any) -> bool:
    return type(df).__module__.startswith("pandas")


def _log_result(result: GateResult, started: float) -> None:
    log.info(
        "gate.result",
        suite=result.suite,
        run=result.run_name,
        success=result.success,
        evaluated=result.evaluated,
        strategy=result.strategy,
        seconds=round(time.perf_counter() - started, 3),
        failed=[f.describe() for f in result.failed],
    )


def gate(
    df: Any,
    suite: str,
    settings: Settings,
    stage: str,
    run_name: str,
    parameters: dict[str, Any] | None = None,
) -> GateResult:
    """Validate and raise `GateFailed` (exit code 1, message naming failures) if it fails."""
    result = validate(df, suite, settings, run_name, parameters)
    if not result.success:
        raise GateFailed(stage, result)
    return result


def root_of(settings: Settings) -> Path:
    """The GX project folder of these settings."""
    return settings.home_path / "gx"


def docs_index(settings: Settings) -> Path:
    """Where the Data Docs site's index page is (after at least one gate run). GX's index loads
    its tables from CDNs; `offline_index` reads without internet."""
    return site_dir(root_of(settings)) / "index.html"


def offline_index(settings: Settings) -> Path:
    """The Data Docs index that needs no internet (written after every Data Docs build)."""
    return site_dir(root_of(settings)) / OFFLINE_INDEX


# ------------------------------------------------------------------------- GX plumbing


def _context(settings: Settings) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    root = str(settings.home_path)
    if root not in _contexts:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        Path(root).mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=root)
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
        _contexts[root] = context
    return _contexts[root]


def _asset(context: Any, df: Any, suite: str) -> Any:
    is_pandas = _is_pandas(df)
    source_name = "pandas" if is_pandas else "spark"
    if is_pandas:
        source = context.data_sources.add_or_update_pandas(source_name)
    else:
        source = context.data_sources.add_or_update_spark(source_name)
    try:
        return source.get_asset(suite)
    except LookupError:
        return source.add_dataframe_asset(suite)


def _batch_definition(asset: Any) -> Any:
    for definition in asset.batch_definitions:
        if definition.name == "whole":
            return definition
    return asset.add_batch_definition_whole_dataframe("whole")


def _run_id(run_name: str) -> Any:
    from great_expectations.core.run_identifier import RunIdentifier

    return RunIdentifier(run_name=run_name)


def _docs_page(context: Any, identifier: Any) -> str | None:
    """The rendered page of one validation result."""
    if identifier is None:
        return None
    sites = context.get_docs_sites_urls(resource_identifier=identifier)
    return sites[0]["site_url"] if sites else None


def _docs_index(context: Any) -> str | None:
    sites = context.get_docs_sites_urls()
    return sites[0]["site_url"] if sites else None


def _failed(result: Any) -> FailedExpectation:
    config = result.expectation_config
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k != "batch_id"}
    detail = result.result or {}
    return FailedExpectation(
        expectation=config.type,
        column=kwargs.get("column"),
        kwargs=kwargs,
        observed_value=_plain(detail.get("observed_value")),
        unexpected_count=detail.get("unexpected_count"),
        unexpected_percent=detail.get("unexpected_percent"),
        partial_unexpected_list=list(detail.get("partial_unexpected_list") or []),
    )


def _plain(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)
