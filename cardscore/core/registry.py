"""MLflow model-registry access for every stage: resolve aliases, load boosters, register,
promote, roll back.

Aliases on the registered model `settings.mlflow.model_name`:

* `challenger`: the newest version that passed the validation gate (set by training);
* `champion`: the version the scorers use (`promote` moves it to the challenger);
* `previous-champion`: the champion before the last promotion (`rollback` restores it).

Every transition is recorded as tags on the model versions it touches: `<action>.by`,
`<action>.reason`, `<action>.at` for the latest such action, and one
`transition.<UTC time>.<action>` tag per event holding who, why, when and the versions
involved as JSON. Scorers call `resolve_alias` between batches (one registry query) and
`load_booster`, which caches boosters by version, so polling is cheap.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cardscore.core.errors import MissingInput, StageFailed
from cardscore.core.logs import get_logger

if TYPE_CHECKING:
    import xgboost as xgb
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from cardscore.core.config import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"

# Version tags written by training and read by the scorers and monitoring.
TAG_FEATURE_NAMES = "feature_names"  # JSON list, in the model's input order
TAG_FEATURE_SERVICE = "feature_service"
TAG_FEATURE_SET = "feature_set"  # features/feature_sets.py
TAG_GATE = "gate"  # passed | failed
TAG_GATE_SUMMARY = "gate.summary"
TAG_PREDECESSOR = "previous_champion_version"  # the champion this version replaced

STAGE = "registry"
log = get_logger("cardscore.core.registry")

_lock = threading.Lock()
_clients: dict[tuple[str, str], MlflowClient] = {}
_boosters: OrderedDict[tuple[str, str, str], xgb.Booster] = OrderedDict()
_BOOSTER_CACHE_SIZE = 4


@dataclass(frozen=True)
class ModelRef:
    """One registered model version, as the scorers need it."""

    name: str
    version: str
    run_id: str | None
    feature_names: tuple[str, ...]
    model_uri: str  # models:/<name>/<version>
    alias: str | None = None
    feature_service: str | None = None
    tags: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Transition:
    """An alias move: what happened to which version, who did it, why and when."""

    action: str  # challenger | promote | rollback
    model_name: str
    version: str
    previous_version: str | None
    actor: str
    reason: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: tuple[str, ...]
    run_id: str | None
    created: str
    gate: str | None
    metrics: dict[str, float]
    tags: dict[str, str]


# ---------------------------------------------------------------------------- set-up


def configure_mlflow(settings: Settings) -> None:
    """Point the MLflow fluent API at the configured stores; quiet its offline noise."""
    import mlflow

    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _prepare_sqlite(settings.mlflow_tracking_uri)
    _prepare_sqlite(settings.mlflow_registry_uri)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_registry_uri)


def _prepare_sqlite(uri: str) -> None:
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)


def client(settings: Settings) -> MlflowClient:
    """A registry client for the settings (cached per tracking/registry URI pair)."""
    from mlflow.tracking import MlflowClient

    key = (settings.mlflow_tracking_uri, settings.mlflow_registry_uri)
    with _lock:
        if key not in _clients:
            configure_mlflow(settings)
            _clients[key] = MlflowClient(tracking_uri=key[0], registry_uri=key[1])
        return _clients[key]


def default_actor() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------- reads


def _ref(name: str, mv: ModelVersion, alias: str | None) -> ModelRef:
    tags = dict(mv.tags or {})
    try:
        features = tuple(json.loads(tags.get(TAG_FEATURE_NAMES, "[]")))
    except json.JSONDecodeError:
        features = ()
    return ModelRef(
        name=name,
        version=str(mv.version),
        run_id=mv.run_id,
        feature_names=features,
        model_uri=f"models:/{name}/{mv.version}",
        alias=alias,
        feature_service=tags.get(TAG_FEATURE_SERVICE),
        tags=tags,
    )


def _is_missing(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") or "not found" in str(exc).lower()


def find_alias(settings: Settings, alias: str = CHAMPION) -> ModelRef | None:
    """The version the alias points to, or None if the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    name = settings.mlflow.model_name
    try:
        mv = client(settings).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise
    return _ref(name, mv, alias)


def resolve_alias(settings: Settings, alias: str = CHAMPION) -> ModelRef:
    """The version `alias` points to; `MissingInput` (exit 1) if there is none."""
    ref = find_alias(settings, alias)
    if ref is None:
        raise MissingInput(
            STAGE,
            f"model {settings.mlflow.model_name!r} has no {alias!r} version in "
            f"{settings.mlflow_registry_uri}; train one (`cardscore train`) and promote it "
            "(`cardscore promote`)",
        )
    return ref


def get_version(settings: Settings, version: str | int) -> ModelRef:
    from mlflow.exceptions import MlflowException

    name = settings.mlflow.model_name
    try:
        mv = client(settings).get_model_version(name, str(version))
    except MlflowException as exc:
        if _is_missing(exc):
            raise MissingInput(STAGE, f"model {name!r} has no version {version}") from None
        raise
    return _ref(name, mv, None)


def load_booster(settings: Settings, ref: ModelRef) -> xgb.Booster:
    """The version's native XGBoost booster with its feature names; cached by version."""
    key = (settings.mlflow_registry_uri, ref.name, ref.version)
    with _lock:
        cached = _boosters.get(key)
        if cached is not None:
            _boosters.move_to_end(key)
            return cached
    import mlflow.xgboost

    # Resolve through this settings' registry, not the process-wide fluent URIs.
    location = client(settings).get_model_version_download_uri(ref.name, ref.version)
    booster = mlflow.xgboost.load_model(location)
    if not booster.feature_names and ref.feature_names:
        booster.feature_names = list(ref.feature_names)
    if ref.feature_names and tuple(booster.feature_names or ()) != ref.feature_names:
        raise StageFailed(
            STAGE,
            f"{ref.name} v{ref.version}: the booster's features {booster.feature_names} differ "
            f"from the version's feature_names tag {list(ref.feature_names)}",
        )
    with _lock:
        _boosters[key] = booster
        while len(_boosters) > _BOOSTER_CACHE_SIZE:
            _boosters.popitem(last=False)
    log.info("registry.booster_loaded", model=ref.name, version=ref.version)
    return booster


def list_versions(settings: Settings) -> list[VersionInfo]:
    """Every version of the model, newest first, with aliases, gate result and test metrics."""
    c = client(settings)
    name = settings.mlflow.model_name
    versions = c.search_model_versions(f"name = '{name}'")
    aliases: dict[str, list[str]] = {}
    try:
        for alias, version in (c.get_registered_model(name).aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
    except Exception:  # no registered model yet
        return []
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                run_metrics = c.get_run(mv.run_id).data.metrics
                metrics = {k: v for k, v in run_metrics.items() if k.startswith("test_")}
            except Exception:
                metrics = {}
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(timespec="seconds")
        out.append(
            VersionInfo(
                version=str(mv.version),
                aliases=tuple(sorted(aliases.get(str(mv.version), []))),
                run_id=mv.run_id,
                created=created,
                gate=(mv.tags or {}).get(TAG_GATE),
                metrics=metrics,
                tags=dict(mv.tags or {}),
            )
        )
    return out


# ---------------------------------------------------------------------------- writes


def register_version(
    settings: Settings, model_uri: str, run_id: str, tags: dict[str, str] | None = None
) -> ModelRef:
    """Register the logged model as a new version of `mlflow.model_name` (no alias moves)."""
    from mlflow.exceptions import MlflowException

    c = client(settings)
    name = settings.mlflow.model_name
    try:
        c.get_registered_model(name)
    except MlflowException as exc:
        if not _is_missing(exc):
            raise
        c.create_registered_model(name, description="cardscore card-fraud scoring model (XGBoost)")
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    mv = c.create_model_version(name, source=model_uri, run_id=run_id, tags=tags or {}, model_id=model_id)
    log.info("registry.registered", model=name, version=str(mv.version), run_id=run_id)
    return _ref(name, mv, None)


def _record(
    settings: Settings, version: str, action: str, actor: str, reason: str, at: str, **extra: str | None
) -> None:
    c = client(settings)
    name = settings.mlflow.model_name
    stamp = at.replace("-", "").replace(":", "").replace(".", "")
    event = {"action": action, "by": actor, "reason": reason, "at": at, **extra}
    c.set_model_version_tag(name, version, f"transition.{stamp}.{action}", json.dumps(event, sort_keys=True))
    c.set_model_version_tag(name, version, f"{action}.by", actor)
    c.set_model_version_tag(name, version, f"{action}.reason", reason)
    c.set_model_version_tag(name, version, f"{action}.at", at)


def set_challenger(settings: Settings, version: str, actor: str | None = None, reason: str = "") -> Transition:
    """Point `challenger` at `version` (training does this when the gate passes)."""
    c = client(settings)
    name = settings.mlflow.model_name
    before = find_alias(settings, CHALLENGER)
    actor, at = actor or default_actor(), _now()
    reason = reason or "passed the validation gate"
    c.set_registered_model_alias(name, CHALLENGER, version)
    _record(settings, version, "challenger", actor, reason, at,
            replaced_version=before.version if before else None)
    log.info("registry.challenger", model=name, version=version, actor=actor)
    return Transition("challenger", name, version, before.version if before else None, actor, reason, at)


def promote(
    settings: Settings,
    actor: str | None = None,
    reason: str = "",
    version: str | None = None,
    force: bool = False,
) -> Transition:
    """Move `champion` to the challenger (or to `version`); the old champion becomes
    `previous-champion`. A version that failed the gate needs `force`."""
    c = client(settings)
    name = settings.mlflow.model_name
    target = get_version(settings, version) if version else find_alias(settings, CHALLENGER)
    if target is None:
        raise MissingInput(
            STAGE,
            f"model {name!r} has no challenger to promote; train a model that passes the gate, "
            "or name a version with --version",
        )
    if target.tags.get(TAG_GATE) != "passed" and not force:
        raise StageFailed(
            STAGE,
            f"{name} v{target.version} did not pass the validation gate "
            f"(gate={target.tags.get(TAG_GATE)!r}); use --force to promote it anyway",
        )
    current = find_alias(settings, CHAMPION)
    if current is not None and current.version == target.version:
        raise StageFailed(STAGE, f"{name} v{target.version} is already the champion")
    actor, at = actor or default_actor(), _now()
    reason = reason or "promoted"
    if current is not None:
        c.set_registered_model_alias(name, PREVIOUS_CHAMPION, current.version)
        c.set_model_version_tag(name, target.version, TAG_PREDECESSOR, current.version)
        _record(settings, current.version, "demote", actor, reason, at, replaced_by=target.version)
    c.set_registered_model_alias(name, CHAMPION, target.version)
    challenger = find_alias(settings, CHALLENGER)
    if challenger is not None and challenger.version == target.version:
        c.delete_registered_model_alias(name, CHALLENGER)
    previous = current.version if current else None
    _record(settings, target.version, "promote", actor, reason, at, replaced_version=previous)
    log.info("registry.promoted", model=name, version=target.version, previous=previous, actor=actor)
    return Transition("promote", name, target.version, previous, actor, reason, at)


def rollback(settings: Settings, actor: str | None = None, reason: str = "") -> Transition:
    """Restore `previous-champion` as `champion`. `previous-champion` then moves to the
    restored version's own predecessor (if known), so rollbacks can be repeated."""
    c = client(settings)
    name = settings.mlflow.model_name
    previous = find_alias(settings, PREVIOUS_CHAMPION)
    if previous is None:
        raise MissingInput(STAGE, f"model {name!r} has no previous champion to roll back to")
    current = find_alias(settings, CHAMPION)
    actor, at = actor or default_actor(), _now()
    reason = reason or "rolled back"
    c.set_registered_model_alias(name, CHAMPION, previous.version)
    older = previous.tags.get(TAG_PREDECESSOR)
    if older and older != (current.version if current else None):
        c.set_registered_model_alias(name, PREVIOUS_CHAMPION, older)
    else:
        c.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
    if current is not None:
        _record(settings, current.version, "rolled_back", actor, reason, at, restored_version=previous.version)
    _record(settings, previous.version, "restore", actor, reason, at,
            replaced_version=current.version if current else None)
    log.info("registry.rolled_back", model=name, version=previous.version,
             from_version=current.version if current else None, actor=actor)
    return Transition("rollback", name, previous.version, current.version if current else None, actor, reason, at)


def clear_caches() -> None:
    """Forget cached clients and boosters (tests switch registries between cases)."""
    with _lock:
        _clients.clear()
        _boosters.clear()
