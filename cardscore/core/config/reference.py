"""The configuration reference (docs/configuration.md), generated from the typed settings so
that it cannot drift from the code: `cardscore config reference > docs/configuration.md`."""

from __future__ import annotations

import json
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from cardscore.core.config.settings import Settings

HEADER = """# Configuration reference

Generated from the settings classes by `cardscore config reference` (a test checks that this
file is current). Every key can be set in the YAML file (`--config`, `$CARDSCORE_CONFIG`,
`./cardscore.yaml`) or from the environment as `CARDSCORE__SECTION__KEY` (double underscores
nest). Secrets are `${env:NAME}` references only. See the README for the profiles.
"""


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        try:
            value: Any = info.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None:
        return "none"
    text = json.dumps(value, default=str)
    return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}...`"


def _type(info: FieldInfo) -> str:
    annotation = info.annotation
    if get_origin(annotation) is Literal:
        text = " | ".join(json.dumps(v) for v in get_args(annotation))
    else:
        text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("datetime.", "").replace("|", "\\|")


def _section_type(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _rows(model: type[BaseModel], prefix: str) -> tuple[list[str], list[tuple[str, type[BaseModel]]]]:
    rows, sections = [], []
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        key = f"{prefix}{name}"
        nested = _section_type(info)
        if nested is not None:
            sections.append((key, nested))
            continue
        description = (info.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{key}` | {_type(info)} | {_default(info)} | {description} |")
    return rows, sections


def reference_markdown() -> str:
    """The whole reference: one table per settings section, in declaration order."""
    out = [HEADER]
    pending: list[tuple[str, type[BaseModel]]] = [("", Settings)]
    while pending:
        prefix, model = pending.pop(0)
        rows, sections = _rows(model, f"{prefix}." if prefix else "")
        title = prefix or "top level"
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
        if rows:
            out.append(f"\n## `{title}`\n")
            if doc and model is not Settings:
                out.append(f"{doc}\n")
            out.append("| key | type | default | description |\n| --- | --- | --- | --- |")
            out.extend(rows)
        pending = sections + pending
    return "\n".join(out) + "\n"
