"""`python -m cardscore.streaming`: run one stream-scorer process (the same as `cardscore stream`).

    python -m cardscore.streaming --config cardscore.yaml --instance-id scorer-1 --metrics-port 9464
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cardscore.streaming.service import EXIT_USAGE, InvalidOptions, RunOptions, run_scorer


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cardscore.streaming",
        description="Kafka stream scorer: consumes transactions, scores them with the registry's "
        "champion model and Feast online features, produces scores and DLQ records "
        "(at-least-once by default). SIGTERM/SIGINT drain the batch in hand and exit 0.",
    )
    p.add_argument("--config", help="YAML settings file (default: $CARDSCORE_CONFIG, ./cardscore.yaml)")
    p.add_argument("--group-id", help="consumer group (default streaming.group_id)")
    p.add_argument("--instance-id", help="this process's stable name: its static group membership "
                   "(group.instance.id: a restart under the same name resumes at once), logs, DLQ "
                   "headers and transactional.id (default <host>-<pid>, a dynamic member)")
    p.add_argument("--batch-size", type=int, dest="batch_max_messages", help="messages per micro-batch")
    p.add_argument("--batch-wait-ms", type=int, dest="batch_max_wait_ms", help="longest wait to fill a batch")
    p.add_argument("--delivery", choices=["at_least_once", "exactly_once"])
    p.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0: off)")
    p.add_argument("--model-poll-seconds", type=float, help="registry alias poll interval")
    p.add_argument("--idle-exit", type=float, dest="idle_exit_seconds",
                   help="stop (exit 0) after this many seconds without messages")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    p.add_argument("--log-format", help="auto, json or console")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from cardscore.core.config import ConfigError, load_settings
    from cardscore.core.logs import configure_logging

    args = parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(args.log_level or settings.logging.level, args.log_format or settings.logging.format)
    options = RunOptions(
        group_id=args.group_id,
        instance_id=args.instance_id,
        batch_max_messages=args.batch_max_messages,
        batch_max_wait_ms=args.batch_max_wait_ms,
        delivery=args.delivery,
        metrics_port=args.metrics_port,
        model_poll_seconds=args.model_poll_seconds,
        idle_exit_seconds=args.idle_exit_seconds,
    )
    try:
        return run_scorer(settings, options)
    except InvalidOptions as exc:  # only the options' validation, never an error while scoring
        print(f"invalid option: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
