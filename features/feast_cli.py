"""What Feast's own CLI (`feast plan`, `feast apply`, `feast ui`, run from features/) needs to
build the same store as cardscore: the variables `cardscore features env` exports, and the
settings `feature_repo.py` builds its objects from.

Feast runs the repo from features/, so nothing may depend on the shell's working directory:
every location is exported as an absolute path or URI. `feature_store.yaml` expands
CARDSCORE_FEAST_PROJECT / _REGISTRY / _SQLITE_PATH (and _REDIS); `feature_repo.py` reads the
cardscore settings ($CARDSCORE_CONFIG, exported absolute when a file was used) with the lake of
CARDSCORE_FEAST_LAKE_ROOT, and refuses to start, naming the path, when the gold tables are not
there (Feast would otherwise fail deep in the engine, e.g. Sail's "No commit files found in
_delta_log").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cardscore.core import catalog
from cardscore.core.config.settings import join_uri

if TYPE_CHECKING:
    from cardscore.core.config import Settings

LAKE_ROOT_ENV = "CARDSCORE_FEAST_LAKE_ROOT"
GOLD_TABLES = (catalog.CUSTOMER_FEATURES, catalog.TERMINAL_FEATURES)
ENV_HINT = 'eval "$(cardscore --config <your config> features env)"'


class FeatureRepoError(RuntimeError):
    """The feature repo cannot be built for Feast's CLI; the message says which path and why."""


def exports(settings: Settings, config: Path | None) -> dict[str, str]:
    """Variable -> value for `cardscore features env` (secrets left out by the caller)."""
    values = {
        "CARDSCORE_FEAST_PROJECT": settings.feast.project,
        "CARDSCORE_FEAST_REGISTRY": settings.feast_registry,
        "CARDSCORE_FEAST_SQLITE_PATH": settings.feast_sqlite_path,
        LAKE_ROOT_ENV: settings.lake_root,
    }
    if config is not None:
        values["CARDSCORE_CONFIG"] = str(config.resolve())
    return values


def repo_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The cardscore settings of the repo as Feast's CLI loads it, with the exported lake; a
    missing variable or a lake without the gold tables is a `FeatureRepoError` naming the path."""
    from deltalake import DeltaTable

    from cardscore.core.config import load_settings

    env = dict(os.environ if environ is None else environ)
    lake_root = env.get(LAKE_ROOT_ENV)
    settings = load_settings(environ=env, overrides={"lake": {"root": lake_root}} if lake_root else None)
    source = f"{LAKE_ROOT_ENV}={lake_root}" if lake_root else \
        f"{LAKE_ROOT_ENV} is not set, so the settings' default lake {settings.lake_root} was used"
    for table in GOLD_TABLES:
        layer, name = table.split(".")
        uri = join_uri(settings.lake_root, layer, name)
        if not DeltaTable.is_deltatable(uri, storage_options=settings.lake.storage_options or None):
            raise FeatureRepoError(
                f"the feature table {table} is not a Delta table at {uri} ({source}): run {ENV_HINT} "
                "in this shell so that Feast reads your workspace's lake, and build the features "
                "there first (cardscore run features) if it is new"
            )
    return settings
