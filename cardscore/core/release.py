"""The release state of the registered model, kept in the MLflow registry so every scorer
process (batch, stream, API) agrees without a service of its own.

One registered-model tag, `cardscore.release`, holds the whole state as JSON:

    {"shadow": "7", "canary": "7", "share": 25.0, "salt": "7", "frozen": false,
     "generation": 12, "action": "canary", "by": "alice", "reason": "...", "at": "...Z",
     "aborted": {"version": "6", "by": ..., "reason": ..., "at": ...} | null}

* `shadow`: a version that scores every transaction beside the champion; recorded, never acted on;
* `canary` and `share`: a version that serves `share` % of the cards (sticky: a card's bucket is
  a hash of its id salted with `salt`, `cardscore.model.release.card_buckets`);
* `frozen`: the kill switch: every scorer serves the rule-based fallback instead of a model.

A transition writes the tag once (one atomic registry write, so a reader never sees half a
transition), then mirrors the versions on the aliases `shadow` and `canary` for people
(`cardscore models list`, `models:/<name>@canary`; scorers read the tag, never these aliases).
Every transition is recorded who/why/when: a `cardscore.release.history.<UTC time>.<action>` tag
on the registered model and a `transition.<UTC time>.<action>` tag on the version it concerns
(what `cardscore models show` lists). Scorers read the state and the `champion` alias in ONE
registry call (`read_view`: `get_registered_model` returns aliases and tags).

Writers read, change and write the record (`generation` counts the writes); MLflow has no
compare-and-set, so two writers at the same instant could lose one write. The transitions are
idempotent (an abort sets the share to 0 whoever runs it) and an automatic abort re-reads the
state right before it writes, so the race that matters (a person ramping while the guard
aborts) ends aborted or with the person's later write, and the history tags keep both.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cardscore.core import registry
from cardscore.core.errors import MissingInput, StageFailed
from cardscore.core.logs import get_logger

if TYPE_CHECKING:
    from cardscore.core.config import Settings

RELEASE_TAG = "cardscore.release"
HISTORY_PREFIX = "cardscore.release.history."
SHADOW_ALIAS = "shadow"
CANARY_ALIAS = "canary"
STAGE = "release"
log = get_logger("cardscore.core.release")


class ReleaseError(StageFailed):
    """A release transition that cannot be made (exit code 1), with the reason."""

    def __init__(self, message: str) -> None:
        super().__init__(STAGE, message)


@dataclass(frozen=True)
class Aborted:
    """The last canary the guard or a person aborted."""

    version: str
    by: str
    reason: str
    at: str
    share: float


@dataclass(frozen=True)
class ReleaseState:
    """What every scorer serves beside the champion (see the module docstring)."""

    shadow: str | None = None
    canary: str | None = None
    share: float = 0.0
    salt: str = ""
    frozen: bool = False
    generation: int = 0
    action: str | None = None
    by: str | None = None
    reason: str | None = None
    at: str | None = None
    aborted: Aborted | None = None

    @property
    def canary_active(self) -> bool:
        return self.canary is not None and self.share > 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> ReleaseState:
        """The state a tag holds; an absent tag is the empty state. A tag that cannot be read
        is an error naming it (a scorer then keeps what it has, `read_view` callers decide)."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            aborted = raw.get("aborted")
            state = cls(
                shadow=_version_or_none(raw.get("shadow")),
                canary=_version_or_none(raw.get("canary")),
                share=float(raw.get("share") or 0.0),
                salt=str(raw.get("salt") or ""),
                frozen=bool(raw.get("frozen", False)),
                generation=int(raw.get("generation") or 0),
                action=raw.get("action"),
                by=raw.get("by"),
                reason=raw.get("reason"),
                at=raw.get("at"),
                aborted=Aborted(**aborted) if aborted else None,
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise ReleaseError(f"the registry tag {RELEASE_TAG!r} is not a release state: {exc}") from None
        if not (0.0 <= state.share <= 100.0) or math.isnan(state.share):
            raise ReleaseError(f"the registry tag {RELEASE_TAG!r} has a share outside [0, 100]: {state.share}")
        return state

    def describe(self) -> str:
        parts = []
        if self.frozen:
            parts.append("FROZEN (every scorer serves the rule-based fallback)")
        parts.append(f"shadow v{self.shadow}" if self.shadow else "no shadow")
        parts.append(f"canary v{self.canary} on {self.share:g}% of cards" if self.canary_active else "no canary")
        return ", ".join(parts)


@dataclass(frozen=True)
class ReleaseView:
    """The champion and the release state, as one registry call returned them."""

    model_name: str
    champion: str | None
    state: ReleaseState
    aliases: dict[str, str] = field(default_factory=dict)

    def versions(self) -> set[str]:
        """Every version a scorer has to load for this view."""
        out = {v for v in (self.champion, self.state.shadow) if v}
        if self.state.canary_active and self.state.canary:
            out.add(self.state.canary)
        return out


@dataclass(frozen=True)
class ReleaseEvent:
    """One transition: what changed, who did it, why and when."""

    action: str
    model_name: str
    version: str | None
    by: str
    reason: str
    at: str
    before: dict[str, Any]
    after: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        what = f" v{self.version}" if self.version else ""
        return f"{self.action}{what}: {ReleaseState.from_json(json.dumps(self.after)).describe()}; " \
               f"by {self.by} at {self.at}; reason: {self.reason}"


def _version_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


# ---------------------------------------------------------------------------- reads


def read_view(settings: Settings) -> ReleaseView:
    """The champion alias and the release state in one registry call. A model that does not
    exist yet gives no champion and the empty state. Registry errors propagate (a scorer keeps
    what it has and retries at its next poll)."""
    from mlflow.exceptions import MlflowException

    name = settings.mlflow.model_name
    try:
        model = registry.client(settings).get_registered_model(name)
    except MlflowException as exc:
        if registry._is_missing(exc):
            return ReleaseView(name, None, ReleaseState())
        raise
    aliases = {str(k): str(v) for k, v in (model.aliases or {}).items()}
    tags = dict(model.tags or {})
    return ReleaseView(name, aliases.get(registry.CHAMPION), ReleaseState.from_json(tags.get(RELEASE_TAG)), aliases)


def read_state(settings: Settings) -> ReleaseState:
    return read_view(settings).state


def history(settings: Settings, limit: int | None = None) -> list[dict[str, Any]]:
    """The release transitions recorded on the registered model, newest first."""
    from mlflow.exceptions import MlflowException

    try:
        tags = dict(registry.client(settings).get_registered_model(settings.mlflow.model_name).tags or {})
    except MlflowException as exc:
        if registry._is_missing(exc):
            return []
        raise
    events = [json.loads(v) for k, v in tags.items() if k.startswith(HISTORY_PREFIX)]
    events.sort(key=lambda e: e.get("at", ""), reverse=True)
    return events[:limit] if limit else events


# ---------------------------------------------------------------------------- writes


def _write(settings: Settings, before: ReleaseState, after: ReleaseState, action: str,
           version: str | None, actor: str, reason: str) -> ReleaseEvent:
    """Write the new state (one tag), mirror the aliases, record the event."""
    c = registry.client(settings)
    name = settings.mlflow.model_name
    at = registry._now()
    after = replace(after, generation=before.generation + 1, action=action, by=actor, reason=reason, at=at)
    c.set_registered_model_tag(name, RELEASE_TAG, after.to_json())
    for alias, target in ((SHADOW_ALIAS, after.shadow), (CANARY_ALIAS, after.canary if after.canary_active else None)):
        _mirror_alias(settings, alias, target)
    before_d, after_d = _public(before), _public(after)
    event = ReleaseEvent(action, name, version, actor, reason, at, before_d, after_d)
    stamp = at.replace("-", "").replace(":", "").replace(".", "")
    c.set_registered_model_tag(name, f"{HISTORY_PREFIX}{stamp}.{action}", json.dumps(event.to_dict(), sort_keys=True))
    if version:
        registry._record(settings, version, f"release_{action}", actor, reason, at,
                         share=f"{after.share:g}" if action in ("canary", "abort") else None)
    log.info("release.transition", action=action, model=name, version=version, by=actor,
             state=after.describe(), generation=after.generation)
    return event


def _public(state: ReleaseState) -> dict[str, Any]:
    out = asdict(state)
    for key in ("action", "by", "reason", "at"):
        out.pop(key)
    return out


def _mirror_alias(settings: Settings, alias: str, version: str | None) -> None:
    c = registry.client(settings)
    name = settings.mlflow.model_name
    current = registry.find_alias(settings, alias)
    if version is None:
        if current is not None:
            c.delete_registered_model_alias(name, alias)
    elif current is None or current.version != version:
        c.set_registered_model_alias(name, alias, version)


def _existing(settings: Settings, version: str) -> registry.ModelRef:
    try:
        return registry.get_version(settings, version)
    except MissingInput as exc:
        raise ReleaseError(str(exc)) from None


def _candidate(settings: Settings, view: ReleaseView, version: str | None, *, force: bool, what: str) -> str:
    """The version a shadow/canary transition is about: `version`, else the release's own
    candidate, else the challenger; it must exist, differ from the champion and have passed the
    validation gate (unless forced)."""
    chosen = version or (view.state.canary if what == "canary" else None) or view.state.shadow
    if chosen is None:
        challenger = registry.find_alias(settings, registry.CHALLENGER)
        chosen = challenger.version if challenger else None
    if chosen is None:
        raise ReleaseError(f"no version to {what}: name one with --version, or train a challenger")
    ref = _existing(settings, chosen)
    if view.champion == ref.version:
        raise ReleaseError(f"v{ref.version} is the champion already; {what} another version")
    if ref.tags.get(registry.TAG_GATE) != "passed" and not force:
        raise ReleaseError(f"v{ref.version} did not pass the validation gate "
                           f"(gate={ref.tags.get(registry.TAG_GATE)!r}); use --force to {what} it anyway")
    return ref.version


def _model_must_exist(view: ReleaseView) -> None:
    if view.champion is None:
        raise ReleaseError(f"model {view.model_name!r} has no champion: promote one first "
                           "(`cardscore promote`); a release compares a candidate with it")


def start_shadow(settings: Settings, version: str | None = None, actor: str | None = None,
                 reason: str = "", force: bool = False) -> ReleaseEvent:
    """Score every transaction with `version` (default the challenger) beside the champion."""
    view = read_view(settings)
    _model_must_exist(view)
    chosen = _candidate(settings, view, version, force=force, what="shadow")
    after = replace(view.state, shadow=chosen)
    return _write(settings, view.state, after, "shadow", chosen, actor or registry.default_actor(),
                  reason or "shadow started")


def stop_shadow(settings: Settings, actor: str | None = None, reason: str = "") -> ReleaseEvent:
    view = read_view(settings)
    if view.state.shadow is None:
        raise ReleaseError("no shadow version to stop")
    return _write(settings, view.state, replace(view.state, shadow=None), "shadow_off", view.state.shadow,
                  actor or registry.default_actor(), reason or "shadow stopped")


def set_canary(settings: Settings, share: float, version: str | None = None, actor: str | None = None,
               reason: str = "", force: bool = False) -> ReleaseEvent:
    """Serve `share` % of the cards with `version` (default: the canary, else the shadow, else
    the challenger). Ramping the same version keeps its salt, so the cards already in the
    canary stay in it (5 -> 25 -> 100 only adds cards); a new version gets its own salt."""
    if not (0.0 < share <= 100.0) or math.isnan(share):
        raise ReleaseError(f"--share must be in (0, 100], got {share:g}; `cardscore release abort` "
                           "takes a canary back to 0%")
    view = read_view(settings)
    _model_must_exist(view)
    if view.state.frozen:
        raise ReleaseError("the release is frozen (every scorer serves the fallback rules): "
                           "`cardscore release unfreeze` first")
    chosen = _candidate(settings, view, version, force=force, what="canary")
    salt = view.state.salt if view.state.canary == chosen and view.state.salt else chosen
    after = replace(view.state, canary=chosen, share=float(share), salt=salt)
    return _write(settings, view.state, after, "canary", chosen, actor or registry.default_actor(),
                  reason or f"canary at {share:g}%")


def abort(settings: Settings, actor: str | None = None, reason: str = "",
          only_version: str | None = None) -> ReleaseEvent | None:
    """Take the canary back to 0% (the shadow, if any, keeps scoring: recorded, never acted on).

    `only_version` (the automatic guard): abort only if that version is still the active canary,
    so a late verdict about an old canary never aborts a newer one; None when nothing was done.
    Without it, no active canary is an error."""
    view = read_view(settings)
    state = view.state
    if not state.canary_active or (only_version is not None and state.canary != only_version):
        if only_version is not None:
            return None
        raise ReleaseError("no canary to abort")
    assert state.canary is not None
    actor = actor or registry.default_actor()
    reason = reason or "canary aborted"
    aborted = Aborted(state.canary, actor, reason, registry._now(), state.share)
    after = replace(state, canary=None, share=0.0, aborted=aborted)
    return _write(settings, state, after, "abort", state.canary, actor, reason)


def freeze(settings: Settings, actor: str | None = None, reason: str = "") -> ReleaseEvent:
    """The kill switch: every scorer serves the rule-based fallback (within one model poll)."""
    view = read_view(settings)
    if view.state.frozen:
        raise ReleaseError("the release is frozen already")
    return _write(settings, view.state, replace(view.state, frozen=True), "freeze", None,
                  actor or registry.default_actor(), reason or "frozen")


def unfreeze(settings: Settings, actor: str | None = None, reason: str = "") -> ReleaseEvent:
    view = read_view(settings)
    if not view.state.frozen:
        raise ReleaseError("the release is not frozen")
    return _write(settings, view.state, replace(view.state, frozen=False), "unfreeze", None,
                  actor or registry.default_actor(), reason or "unfrozen")


def promote(settings: Settings, version: str | None = None, actor: str | None = None, reason: str = "",
            force: bool = False) -> tuple[registry.Transition, ReleaseEvent]:
    """Make the canary (default; else the shadow) the champion (`registry.promote`: the old
    champion becomes `previous-champion`, so `cardscore rollback` undoes it) and end the release
    of that version (its canary and shadow roles cleared)."""
    view = read_view(settings)
    if view.state.frozen:
        raise ReleaseError("the release is frozen: `cardscore release unfreeze` first (or "
                           "`cardscore promote --version V` to change the champion while frozen)")
    chosen = version or view.state.canary or view.state.shadow
    if chosen is None:
        raise ReleaseError("no canary or shadow version to promote; name one with --version")
    actor = actor or registry.default_actor()
    reason = reason or "released"
    moved = registry.promote(settings, actor=actor, reason=reason, version=chosen, force=force)
    state = read_view(settings).state
    after = replace(
        state,
        canary=None if state.canary == chosen else state.canary,
        share=0.0 if state.canary == chosen else state.share,
        shadow=None if state.shadow == chosen else state.shadow,
    )
    return moved, _write(settings, state, after, "promote", chosen, actor, reason)


def clear(settings: Settings, actor: str, reason: str) -> ReleaseEvent:
    """Reset the release record (no shadow, no canary, not frozen): a test and recovery tool."""
    view = read_view(settings)
    return _write(settings, view.state, ReleaseState(aborted=view.state.aborted), "clear", None, actor, reason)
