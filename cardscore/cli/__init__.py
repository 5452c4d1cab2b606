"""The `cardscore` command line. Each area registers its commands from its own module."""

from __future__ import annotations

import sys

from cardscore.cli import (  # noqa: F401  (imported for their command registrations)
    config_cmd,
    contracts,
    demo,
    features,
    landing,
    monitoring,
    pipeline,
    release,
    services,
    serving,
    simulate,
    stages,
    streaming,
    training,
)
from cardscore.cli.app import app


def main() -> None:
    app(prog_name="cardscore")


if __name__ == "__main__":
    sys.exit(main())
