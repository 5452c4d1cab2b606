"""Typed settings: built-in `local` defaults, a YAML file, then environment overrides.

Resolution order (later wins):
1. built-in defaults (the `local` profile: embedded engine, broker, SQLite, MLflow sqlite),
2. the YAML file: `--config PATH`, else `$CARDSCORE_CONFIG`, else `./cardscore.yaml` if present,
3. environment variables `CARDSCORE__SECTION__KEY=value` (double underscores nest; values are
   parsed as YAML scalars). Inside pass-through client maps (`kafka.client`), single underscores
   in the last part become dots: `CARDSCORE__KAFKA__CLIENT__SASL_PASSWORD` sets `sasl.password`.

Secrets never live in the file: a secret-looking key (password, secret, token, ...) must hold an
`${env:NAME}` reference, resolved from the environment or from `$CARDSCORE_SECRETS_FILE`
(a dotenv file outside the repository). `Settings.redacted()` is the only way settings are shown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cardscore.core.config.errors import ConfigError
from cardscore.core.config.secrets import SecretResolver, has_literal_password, is_secret_key
from cardscore.core.config.settings import Settings

__all__ = ["ConfigError", "Settings", "config_file", "load_settings"]

ENV_PREFIX = "CARDSCORE__"
# Maps whose keys are a client library's own dotted option names, passed through untouched.
DOTTED_MAPS = {("kafka", "client"), ("kafka", "producer"), ("kafka", "consumer")}


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Load settings from defaults, an optional YAML file and the environment."""
    env = dict(os.environ if environ is None else environ)
    config_path = _config_path(path, env)
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if config_path is not None:
        data = _read_yaml(config_path)
        base_dir = config_path.parent
        _reject_literal_secrets(data, source=str(config_path))
    _merge(data, _env_overrides(env))
    if overrides:
        _merge(data, overrides)
    resolver = SecretResolver.from_environ(env)
    data = resolver.resolve(data)
    data.setdefault("base_dir", str(base_dir))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_path)) from None


def config_file(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Path | None:
    """The YAML file `load_settings(path)` reads (absolute), or None when only defaults and the
    environment apply."""
    return _config_path(path, dict(os.environ if environ is None else environ))


def _config_path(path: str | os.PathLike[str] | None, env: dict[str, str]) -> Path | None:
    if path is not None:
        candidate = Path(path)
    elif env.get("CARDSCORE_CONFIG"):
        candidate = Path(env["CARDSCORE_CONFIG"])
    else:
        default = Path.cwd() / "cardscore.yaml"
        return default.resolve() if default.is_file() else None
    if not candidate.is_file():
        raise ConfigError(f"config file not found: {candidate}")
    return candidate.resolve()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded


def _reject_literal_secrets(data: Any, source: str, prefix: str = "") -> None:
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _reject_literal_secrets(value, source, dotted + ".")
        elif has_literal_password(value):
            raise ConfigError(
                f"{source}: '{dotted}' contains a password; replace it with a reference such as "
                "${env:REDIS_PASSWORD} and set it in the environment or in $CARDSCORE_SECRETS_FILE"
            )
        elif is_secret_key(str(key)) and value not in (None, "") and not SecretResolver.is_reference(value):
            raise ConfigError(
                f"{source}: '{dotted}' looks like a secret and must not be written in the file; "
                f"use a reference such as '${{env:{str(key).upper().replace('.', '_')}}}' and set it "
                "in the environment or in $CARDSCORE_SECRETS_FILE"
            )


def _env_overrides(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        if len(parts) >= 3 and tuple(parts[:2]) in DOTTED_MAPS:
            parts = [*parts[:2], ".".join(parts[2:]).replace("_", ".")]
        value: Any = raw if is_secret_key(parts[-1]) else _parse_scalar(raw)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another override")
        node[parts[-1]] = value
    return out


def _parse_scalar(raw: str) -> Any:
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    # Only plain scalars: a value like "a: b" stays a string rather than becoming a mapping.
    return value if isinstance(value, str | int | float | bool) or value is None else raw


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {err['msg']}")
    return "\n".join(lines)
