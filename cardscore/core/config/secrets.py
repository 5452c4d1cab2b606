"""Secret references (`${env:NAME}`, whole value or inside one) resolved from the environment or a dotenv secrets file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cardscore.core.config.errors import ConfigError

_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_WORDS = ("password", "secret", "token", "credential", "private", "api.key", "api_key")
REDACTED = "***"


def is_secret_key(key: str) -> bool:
    """True for keys whose values must never be written in files or printed."""
    lowered = key.lower()
    if lowered.endswith((".location", "_location", "mechanism", "mechanisms")):
        return False  # e.g. ssl.key.location is a path, sasl.mechanism a name
    return any(word in lowered for word in _SECRET_WORDS) or lowered in {"sasl.jaas.config"}


class SecretResolver:
    """Replaces `${env:NAME}` strings with values from the environment or a secrets file."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    @classmethod
    def from_environ(cls, env: dict[str, str]) -> SecretResolver:
        values: dict[str, str] = {}
        secrets_file = env.get("CARDSCORE_SECRETS_FILE")
        if secrets_file:
            values.update(read_dotenv(Path(secrets_file)))
        values.update(env)  # the environment wins over the file
        return cls(values)

    @staticmethod
    def is_reference(value: Any) -> bool:
        return isinstance(value, str) and _REFERENCE.search(value) is not None

    def resolve(self, data: Any, path: str = "") -> Any:
        if isinstance(data, dict):
            return {k: self.resolve(v, f"{path}{k}.") for k, v in data.items()}
        if isinstance(data, list):
            return [self.resolve(v, path) for v in data]
        if isinstance(data, str) and "${env:" in data:
            return _REFERENCE.sub(lambda m: self._lookup(m.group(1), path), data)
        return data

    def _lookup(self, name: str, path: str) -> str:
        if name not in self._values:
            raise ConfigError(
                f"'{path.rstrip('.')}' refers to ${{env:{name}}}, which is not set in the "
                "environment or in $CARDSCORE_SECRETS_FILE"
            )
        return self._values[name]


_URL_PASSWORD = re.compile(r"://[^/@:\s]*:([^@\s]+)@")
_KV_PASSWORD = re.compile(r"(?:^|[,;?&])\s*password=([^,;&\s]+)", re.IGNORECASE)


def has_literal_password(value: object) -> bool:
    """True for strings like redis://u:pw@h or host:6379,password=pw with a literal password."""
    if not isinstance(value, str):
        return False
    found = _URL_PASSWORD.findall(value) + _KV_PASSWORD.findall(value)
    return any(_REFERENCE.fullmatch(p) is None for p in found)


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a minimal dotenv file: NAME=value lines, # comments, optional quotes."""
    if not path.is_file():
        raise ConfigError(f"CARDSCORE_SECRETS_FILE={path} does not exist")
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" not in stripped:
            raise ConfigError(f"{path}:{number}: expected NAME=value")
        name, value = stripped.split("=", 1)
        name = name.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def redact(data: Any, key: str = "") -> Any:
    """A copy of `data` with every secret-looking value replaced by `***`."""
    if isinstance(data, dict):
        return {k: redact(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v, key) for v in data]
    if data not in (None, "") and is_secret_key(key):
        return REDACTED
    if isinstance(data, str):
        return redact_text(data)
    return data


def _redact_url_password(url: str) -> str:
    # redis://user:pass@host:6379 -> redis://user:***@host:6379
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1" + REDACTED + "@", url)


def redact_text(text: str) -> str:
    """Hide passwords inside URLs and key=value connection strings."""
    text = _redact_url_password(text) if "://" in text else text
    return re.sub(r"((?:^|[,;?&])\s*password=)[^,;&\s]+", r"\1" + REDACTED, text, flags=re.IGNORECASE)
