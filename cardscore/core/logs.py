"""Structured logging: JSON lines for machines, a rich console for people.

Usage: `log = get_logger(__name__); log.info("ingest.done", day="2018-04-01", rows=123)`.
Events are short dotted names; fields are keyword arguments. Never pass raw payloads of
rejected records here: they belong in the quarantine table or the DLQ.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cardscore.core.config.secrets import redact

_CONFIGURED = False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        payload.update(redact(getattr(record, "fields", {})))
        if record.exc_info:
            payload["error"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class StructuredLogger(logging.LoggerAdapter):
    """Logger whose calls take an event name and keyword fields."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        std = {k: kwargs.pop(k) for k in ("exc_info", "stack_info", "stacklevel") if k in kwargs}
        std["extra"] = {"fields": kwargs}
        return msg, std

    def _log_fields(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self.isEnabledFor(level):
            msg, kw = self.process(event, fields)
            self.logger.log(level, msg, **kw)

    def debug(self, event: str, *args: Any, **fields: Any) -> None:  # type: ignore[override]
        self._log_fields(logging.DEBUG, event, fields)

    def info(self, event: str, *args: Any, **fields: Any) -> None:  # type: ignore[override]
        self._log_fields(logging.INFO, event, fields)

    def warning(self, event: str, *args: Any, **fields: Any) -> None:  # type: ignore[override]
        self._log_fields(logging.WARNING, event, fields)

    def error(self, event: str, *args: Any, **fields: Any) -> None:  # type: ignore[override]
        self._log_fields(logging.ERROR, event, fields)

    def exception(self, event: str, *args: Any, **fields: Any) -> None:  # type: ignore[override]
        fields.setdefault("exc_info", True)
        self._log_fields(logging.ERROR, event, fields)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = redact(getattr(record, "fields", {}))
        extras = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{record.getMessage()} {extras}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(
    level: str = "INFO", fmt: str = "auto", file: Path | None = None, stderr_level: str | None = None
) -> None:
    """Route the `cardscore` loggers to stderr as JSON lines or a rich console.

    `file`: also write every record at `level` as JSON lines to this file (the demo keeps its
    full log there); `stderr_level` then raises the bar for stderr (e.g. WARNING).
    """
    global _CONFIGURED
    root = logging.getLogger("cardscore")
    root.setLevel(level)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    if use_console:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, markup=False, rich_tracebacks=False)
        handler.setFormatter(ConsoleFormatter())
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    if stderr_level:
        handler.setLevel(stderr_level)
    root.addHandler(handler)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(JsonFormatter())
        root.addHandler(to_file)
    _CONFIGURED = True


def get_logger(name: str) -> StructuredLogger:
    """A structured logger under the `cardscore` hierarchy (module names are mapped into it)."""
    if not _CONFIGURED:
        configure_logging()
    logger_name = name if name.startswith("cardscore") else f"cardscore.{name}"
    return StructuredLogger(logging.getLogger(logger_name), {})
