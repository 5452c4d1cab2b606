"""The Sail behaviours that features/feast_patches.py works around, reproduced on their own.

When one of these tests fails, Sail has changed: the matching fix in feast_patches.py can go
(the failure message says which)."""

from __future__ import annotations

import pytest

from cardscore.features import feast_patches


def test_sail_using_join_still_drops_the_keys_of_a_qualified_star(spark) -> None:
    spark.createDataFrame([(1, 10, "a")], "k long, t long, v string").createOrReplaceTempView("using_l")
    spark.createDataFrame([(1, 10, "b")], "k long, t long, w string").createOrReplaceTempView("using_r")
    columns = spark.sql("SELECT using_l.* FROM using_l JOIN using_r USING (k, t)").columns
    explicit = spark.sql(
        "SELECT using_l.* FROM using_l JOIN using_r ON using_l.k = using_r.k AND using_l.t = using_r.t"
    ).columns
    assert explicit == ["k", "t", "v"]  # what the patched template relies on
    assert columns == ["v"], (
        f"Sail now keeps the USING keys ({columns}), as JVM Spark does: remove "
        "apply_using_join_fix from features/feast_patches.py (and this test)"
    )


def test_sail_resolves_temporary_views_when_a_dataframe_runs(spark) -> None:
    spark.sql("CREATE OR REPLACE TEMPORARY VIEW late_view AS (SELECT 1 AS x)")
    df = spark.sql("SELECT x FROM late_view")
    spark.sql("CREATE OR REPLACE TEMPORARY VIEW late_view AS (SELECT 2 AS x)")
    assert df.collect()[0]["x"] == 2, (
        "DataFrames now bind temporary views when made: isolate_temp_views in "
        "features/feast_patches.py is no longer needed"
    )


def test_the_template_fix_is_idempotent_and_fails_loudly_on_other_text(monkeypatch) -> None:
    from feast.infra.offline_stores.contrib.spark_offline_store import spark as spark_store

    assert feast_patches.apply_using_join_fix() is True  # applied at import already
    patched = spark_store.MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN
    assert "USING(" not in patched.split("4. Once we know")[1]
    assert feast_patches.apply_using_join_fix() is True
    assert patched == spark_store.MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN
    monkeypatch.setattr(spark_store, "MULTIPLE_FEATURE_VIEW_POINT_IN_TIME_JOIN", "SELECT 1")
    with pytest.raises(feast_patches.FeastTemplateChanged, match="no longer has the USING join"):
        feast_patches.apply_using_join_fix()


def test_isolated_views_are_renamed_everywhere_and_only_as_whole_names() -> None:
    query = (
        "CREATE VIEW entity_dataframe AS (SELECT 1);\n"
        "WITH fv__entity_dataframe AS (SELECT * FROM entity_dataframe) "
        "SELECT entity_dataframe.x FROM fv__cleaned JOIN `fv__cleaned_tmp`"
    )
    out = feast_patches.isolate_temp_views(query, ["entity_dataframe", "fv__cleaned"])
    suffix = out.split("CREATE VIEW entity_dataframe_")[1].split(" ")[0]
    assert out.count(f"entity_dataframe_{suffix}") == 3
    assert "fv__entity_dataframe AS" in out and f"FROM fv__cleaned_{suffix} " in out
    assert "`fv__cleaned_tmp`" in out
    with pytest.raises(feast_patches.FeastTemplateChanged):
        feast_patches.isolate_temp_views(query, ["missing_view"])
