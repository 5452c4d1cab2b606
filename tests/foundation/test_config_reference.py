"""docs/configuration.md is generated from the settings classes and must be current."""

from __future__ import annotations

from pathlib import Path

from cardscore.core.config.reference import reference_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_reference_doc_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == reference_markdown(), (
        "docs/configuration.md is stale: regenerate it with "
        "`cardscore config reference > docs/configuration.md`"
    )


def test_every_section_and_a_nested_key_are_documented() -> None:
    text = reference_markdown()
    for section in ("lake", "engine", "kafka", "feast", "mlflow", "ingest", "features", "training",
                    "scoring", "streaming", "monitoring", "pipeline"):
        assert f"`{section}." in text, section
    assert ("| `training.protocol.train_start` | date \\| None | none | first training day (UTC); "
            "unset: 115 days after simulator.start_date") in text
