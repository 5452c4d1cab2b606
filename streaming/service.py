"""Running a scorer process: options, metrics endpoint, signals, exit codes.

Shared by `python -m cardscore.streaming` and `cardscore stream`. Exit codes: 0 after a clean stop
(SIGTERM/SIGINT drain the batch in hand and commit), 1 when the scorer cannot continue
(fenced transactional producer, fatal Kafka error, incompatible model), 2 for bad
configuration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cardscore.core.logs import get_logger

if TYPE_CHECKING:
    from cardscore.core.config import Settings
    from cardscore.streaming.scorer import BatchReport

log = get_logger("streaming.service")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class RunOptions:
    """Command-line choices that override settings for one process."""

    group_id: str | None = None
    instance_id: str | None = None
    batch_max_messages: int | None = None
    batch_max_wait_ms: int | None = None
    delivery: str | None = None
    metrics_port: int | None = None
    model_poll_seconds: float | None = None
    idle_exit_seconds: float | None = None

    def settings_overrides(self) -> dict[str, Any]:
        values = {
            "group_id": self.group_id,
            "batch_max_messages": self.batch_max_messages,
            "batch_max_wait_ms": self.batch_max_wait_ms,
            "delivery": self.delivery,
            "metrics_port": self.metrics_port,
            "model_poll_seconds": self.model_poll_seconds,
        }
        return {k: v for k, v in values.items() if v is not None}


class InvalidOptions(ValueError):
    """Command-line options the settings reject (exit code 2). Only these are usage errors: any
    other error raised while scoring is the scorer's own, never reported as a bad option."""


def apply_options(settings: Settings, options: RunOptions) -> Settings:
    """A copy of `settings` with the options' streaming values (validated like the file's)."""
    from pydantic import ValidationError

    from cardscore.core.config.streaming import StreamingSettings

    merged = {**settings.streaming.model_dump(), **options.settings_overrides()}
    try:
        validated = StreamingSettings.model_validate(merged)
    except ValidationError as exc:
        raise InvalidOptions(str(exc)) from None
    return settings.model_copy(update={"streaming": validated})


def run_scorer(
    settings: Settings,
    options: RunOptions | None = None,
    on_batch: Callable[[BatchReport], None] | None = None,
) -> int:
    """Run one scorer until stopped; returns the process exit code."""
    from confluent_kafka import KafkaException

    from cardscore.model.scoring import IncompatibleModel
    from cardscore.streaming.delivery import FatalDeliveryError
    from cardscore.streaming.scorer import StreamScorer

    options = options or RunOptions()
    settings = apply_options(settings, options)
    scorer = StreamScorer(
        settings,
        instance_id=options.instance_id,
        idle_exit_seconds=options.idle_exit_seconds,
        on_batch=on_batch,
    )
    if threading.current_thread() is threading.main_thread():
        scorer.install_signal_handlers()
    port = settings.streaming.metrics_port
    if port:
        try:
            bound = scorer.metrics.serve(port, settings.streaming.metrics_host)
        except OSError as exc:
            log.error("stream.metrics_port_unavailable", port=port, error=str(exc),
                      hint="set streaming.metrics_port (or --metrics-port) to a free port, or 0 for off")
            return EXIT_USAGE
        log.info("stream.metrics", url=f"http://{settings.streaming.metrics_host}:{bound}/metrics")
    try:
        return scorer.run()
    except (FatalDeliveryError, IncompatibleModel, KafkaException) as exc:
        log.error("stream.failed", error=str(exc))
        return EXIT_FAILED
