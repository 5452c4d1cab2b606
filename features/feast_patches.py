"""Two small, contained fixes that make Feast's Spark offline store exact on Sail.

1. Sail's USING-join bug: `SELECT l.* FROM l JOIN r USING (k, t)` drops the key columns k and
   t (JVM Spark keeps them). Feast's point-in-time template ends each feature view's query
   with such a join, so on Sail it fails with "...entity_row_unique_id is missing from the
   schema". `apply_using_join_fix()` rewrites that one join to an explicit `ON` join, which
   means the same on every engine. It checks the template text first, so a Feast upgrade
   that changes it fails loudly instead of silently running an unpatched query.
   tests/features/test_sail_bugs.py reproduces the Sail bug itself: when Sail fixes it that
   test fails, and this fix can go.

2. Late-resolved temporary views: the template creates views with fixed names
   (`entity_dataframe`, `<view>__cleaned`) and returns a DataFrame that reads them. On Spark
   Connect (Sail included) a DataFrame resolves view names when it runs, not when it is made,
   so a second retrieval in the same session would silently change the result of a first one
   not yet consumed. `isolate_temp_views(query)` renames them per retrieval.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

_USING_JOIN = """    SELECT base.*
    FROM {{ featureview.name }}__base as base
    INNER JOIN {{ featureview.name }}__latest
    USING(
        {{featureview.name}}__entity_row_unique_id,
        event_timestamp
        {% if featureview.created_timestamp_column %}
            ,created_timestamp
        {% endif %}
    )
"""

_ON_JOIN = """    SELECT base.*
    FROM {{ featureview.name }}__base AS base
    INNER JOIN {{ featureview.name }}__latest AS latest
    ON base.{{featureview.name}}__entity_row_unique_id = latest.{{featureview.name}}__entity_row_unique_id
        AND base.event_timestamp = latest.event_timestamp
        {% if featureview.created_timestamp_column %}
        AND base.created_timestamp = latest.created_timestamp
        {% endif %}
"""

FEAST_VERSION = "0.67.0"  # the version whose template text this fix was written against


class FeastTemplateChanged(RuntimeError):
    """Feast's point-in-time template is not the one the Sail fix was written for."""


def apply_using_join_fix() -> bool:
    """Rewrite the USING join of Feast's Spark point-in-time template (idempotent).

    Returns True when the template is (now) patched; raises FeastTemplateChanged when the
    template holds neither the original nor the patched text.
    """
    from feast.infra.offline_stores.contrib.spark_offline_store import spark as spark_store

    template = spark_store.MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN
    if _ON_JOIN in template and _USING_JOIN not in template:
        return True
    if template.count(_USING_JOIN) != 1:
        import feast

        raise FeastTemplateChanged(
            f"Feast {feast.__version__}'s MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN no longer has the "
            f"USING join that features/feast_patches.py rewrites for Sail (written for Feast "
            f"{FEAST_VERSION}); check whether Sail still drops USING keys "
            "(tests/features/test_sail_bugs.py) and update or remove the fix"
        )
    spark_store.MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN = template.replace(_USING_JOIN, _ON_JOIN)
    return True


def isolate_temp_views(query: str, view_names: Iterable[str]) -> str:
    """`query` with each fixed temporary view name made unique to this retrieval."""
    suffix = uuid.uuid4().hex[:12]
    out = query
    for name in view_names:
        pattern = re.compile(rf"(?<![\w`]){re.escape(name)}(?![\w`])")
        if not pattern.search(out):
            raise FeastTemplateChanged(f"the retrieval query has no temporary view named {name}")
        out = pattern.sub(f"{name}_{suffix}", out)
    return out
