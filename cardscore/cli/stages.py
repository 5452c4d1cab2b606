"""The stages on the command line, all through the one runner (`cardscore.core.runner.main`).

    cardscore run ingest|features|fresh_features|materialize|score|monitor|retrain|train [OPTIONS]
    cardscore nightly ...          the nightly composition
    cardscore train ...            = cardscore run train
    cardscore materialize ...      = cardscore run materialize
    cardscore monitor trigger ...  = cardscore run retrain

Each command hands its arguments to the stage's own parser, the same one its spark-submit
entry file (`jobs/<stage>/main.py`) uses, so both accept exactly the same options and
`cardscore run <stage> --help` prints them. The root options (`--config`, `--log-level`,
`--log-format`) apply.
"""

from __future__ import annotations

import typer

from cardscore.cli.app import app, run_app, settings_of
from cardscore.cli.monitoring import monitor_app
from cardscore.core.pipeline import Composition
from cardscore.core.stage import StageSpec
from cardscore.jobs.build_features.stage import SPEC as FEATURES
from cardscore.jobs.fresh_features.stage import SPEC as FRESH_FEATURES
from cardscore.jobs.ingest.stage import SPEC as INGEST
from cardscore.jobs.materialize.stage import SPEC as MATERIALIZE
from cardscore.jobs.monitor.stage import SPEC as MONITOR
from cardscore.jobs.nightly.pipeline import NIGHTLY
from cardscore.jobs.retrain.stage import SPEC as RETRAIN
from cardscore.jobs.score_batch.stage import SPEC as SCORE
from cardscore.jobs.train.stage import SPEC as TRAIN

STAGES: tuple[StageSpec, ...] = (INGEST, FEATURES, FRESH_FEATURES, MATERIALIZE, SCORE, TRAIN, MONITOR, RETRAIN)
# Command path -> what it runs (the runner's parser takes the command's arguments).
FORWARDED: dict[tuple[str, ...], StageSpec | Composition] = {}
# Forwarded arguments are the stage parser's business (its own --help included).
FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def run_target(ctx: typer.Context, target: StageSpec | Composition, prog: str) -> None:
    """Run `target` with the command's remaining arguments; exit with the runner's code."""
    from cardscore.core.runner import main

    argv = list(ctx.args)
    # The root --config (and log options) apply unless the command names its own --config.
    own = any(a in ("-h", "--help") or a == "--config" or a.startswith("--config=") for a in argv)
    settings = None if own else settings_of(ctx)
    raise typer.Exit(main(target, argv, prog=prog, settings=settings))


def _register(group: typer.Typer, name: str, target: StageSpec | Composition, prog: str) -> None:
    FORWARDED[tuple(prog.split()[1:])] = target
    help_text = f"{target.description[:1].upper()}{target.description[1:]}. Options: {prog} --help."

    @group.command(name, context_settings=FORWARD, help=help_text, add_help_option=False)
    def command(ctx: typer.Context) -> None:
        run_target(ctx, target, prog)


for _spec in STAGES:
    _register(run_app, _spec.name, _spec, f"cardscore run {_spec.name}")
_register(app, "nightly", NIGHTLY, "cardscore nightly")
_register(app, "train", TRAIN, "cardscore train")
_register(app, "materialize", MATERIALIZE, "cardscore materialize")
_register(monitor_app, "trigger", RETRAIN, "cardscore monitor trigger")
