"""Contract evolution: additive changes pass, breaking ones fail with a clear error.

Each contract version has a committed snapshot `schemas/snapshots/<name>.v<version>.json`.
Compared with the latest snapshot, the current definition may only add nullable fields,
and must bump `version` when it changes anything. Removing or renaming a field, changing
its type, making a nullable field required, adding a required field or changing the key
are breaking.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cardscore.schemas.contract import Contract

SNAPSHOT_DIR = Path(__file__).parent / "snapshots"


class BreakingChangeError(ValueError):
    """A contract change would break existing producers, consumers or stored data."""


def snapshot_path(name: str, version: int, folder: Path = SNAPSHOT_DIR) -> Path:
    return folder / f"{name}.v{version}.json"


def latest_snapshot(name: str, folder: Path = SNAPSHOT_DIR) -> dict[str, Any] | None:
    versions = sorted(
        (int(p.stem.rsplit(".v", 1)[1]), p) for p in folder.glob(f"{name}.v*.json")
    )
    return json.loads(versions[-1][1].read_text()) if versions else None


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable list of breaking differences between two snapshots."""
    problems: list[str] = []
    old_fields = {f["name"]: f for f in old["fields"]}
    new_fields = {f["name"]: f for f in new["fields"]}
    for name, before in old_fields.items():
        after = new_fields.get(name)
        if after is None:
            problems.append(f"field '{name}' was removed (or renamed)")
            continue
        if after["type"] != before["type"]:
            problems.append(f"field '{name}' changed type {before['type']} -> {after['type']}")
        if before["nullable"] and not after["nullable"]:
            problems.append(f"field '{name}' became required")
    for name, after in new_fields.items():
        if name not in old_fields and not after["nullable"]:
            problems.append(f"new field '{name}' is required; additive fields must be nullable")
    if list(old.get("key", [])) != list(new.get("key", [])):
        problems.append(f"key changed {old.get('key')} -> {new.get('key')}")
    return problems


def check_contract(contract: Contract, folder: Path = SNAPSHOT_DIR) -> None:
    """Raise BreakingChangeError unless `contract` evolves compatibly from its last snapshot."""
    previous = latest_snapshot(contract.name, folder)
    current = contract.snapshot()
    if previous is None:
        raise BreakingChangeError(
            f"contract '{contract.name}' v{contract.version} has no snapshot; "
            "run `cardscore contracts snapshot` and commit it"
        )
    same_shape = {k: v for k, v in previous.items() if k != "version"} == {
        k: v for k, v in current.items() if k != "version"
    }
    if previous["version"] == contract.version:
        if not same_shape:
            raise BreakingChangeError(
                f"contract '{contract.name}' changed but its version is still "
                f"{contract.version}; bump the version"
            )
        return
    if contract.version < previous["version"]:
        raise BreakingChangeError(
            f"contract '{contract.name}' v{contract.version} is older than its snapshot "
            f"v{previous['version']}"
        )
    problems = breaking_changes(previous, current)
    if problems:
        raise BreakingChangeError(
            f"contract '{contract.name}' v{previous['version']} -> v{contract.version} is a "
            "breaking change: " + "; ".join(problems)
        )


def write_snapshot(contract: Contract, folder: Path = SNAPSHOT_DIR) -> Path:
    """Record the current version (after check_contract passed, or for a new contract)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = snapshot_path(contract.name, contract.version, folder)
    path.write_text(json.dumps(contract.snapshot(), indent=2) + "\n")
    return path
