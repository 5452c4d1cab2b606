"""`python -m cardscore.serving`: run the online scoring API (the same as `cardscore serve`).

    python -m cardscore.serving --config cardscore.yaml --port 8080
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cardscore.serving.server import EXIT_OK, EXIT_USAGE, ServeOptions, run_server


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cardscore.serving",
        description="Online scoring API: POST /v1/score scores one transaction or a small batch with "
        "the champion model and the online features, and says which features drove each score. "
        "GET /healthz, /readyz, /metrics, /openapi.json. SIGTERM/SIGINT finish the requests in "
        "flight and exit 0.",
    )
    p.add_argument("--config", help="YAML settings file (default: $CARDSCORE_CONFIG, ./cardscore.yaml)")
    p.add_argument("--host", help="address to bind (default serving.host)")
    p.add_argument("--port", type=int, help="port (default serving.port; 0: any free port)")
    p.add_argument("--reader", choices=["snapshot", "direct", "feast"],
                   help="online feature reader (default features.online_reader)")
    p.add_argument("--model-poll-seconds", type=float, help="registry alias poll interval")
    p.add_argument("--openapi", action="store_true", help="print the OpenAPI document and exit")
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
    if args.openapi:
        from cardscore.serving.openapi import openapi_document, openapi_text

        print(openapi_text(openapi_document(settings.serving.max_batch, settings.serving.top_contributions)), end="")
        return EXIT_OK
    configure_logging(args.log_level or settings.logging.level, args.log_format or settings.logging.format)
    options = ServeOptions(host=args.host, port=args.port, model_poll_seconds=args.model_poll_seconds,
                           reader=args.reader)
    try:
        return run_server(settings, options)
    except ValueError as exc:  # pydantic validation of the options
        print(f"invalid option: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
