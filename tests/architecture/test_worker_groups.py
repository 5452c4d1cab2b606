"""The groups `make test` splits the suite into (tests/support/xdist_groups.py): every test that
starts a JVM shares the `jvm` group, and a folder's tests share one group."""

from __future__ import annotations

import pytest

from tests.support.xdist_groups import group_of


def test_every_jvm_test_of_this_run_is_in_the_jvm_group(request: pytest.FixtureRequest) -> None:
    items = request.session.items
    classic = [i.nodeid for i in items if i.get_closest_marker("classic")]
    if not any(i.nodeid.startswith("tests/cluster/") for i in items):
        pytest.skip("run with the whole suite (a selection may hold no JVM test)")
    assert classic, "the suite has classic tests"
    assert [n for n in classic if group_of(n) != "jvm"] == []


def test_groups_are_top_level_folders_with_jvm_folders_merged() -> None:
    assert group_of("tests/cluster/test_cluster.py::test_x") == "jvm"
    assert group_of("tests/kafka/test_cluster.py::test_x[a/b]") == "jvm"
    assert group_of("tests/ingest/test_spark_validation.py::test_x") == "jvm"  # classic tests
    assert group_of("tests/streaming/test_delivery.py::test_x") == "streaming"
    assert group_of("tests/deploy/sub/test_y.py::C::test_x") == "deploy"
    assert group_of("tests/test_top.py::test_x") == "top"
