"""`cardscore ...` command lines written in deployment files and runbooks, and whether the real
CLI accepts them: parsed by the Typer application itself (every level's options, types,
required values and sub-commands), without running anything."""

from __future__ import annotations

import re
import shlex
from typing import Any

# Shell variables the runbooks use in commands, with a value of the right shape.
EXAMPLES = {"DAY": "2018-05-01", "FIRST": "2018-04-01", "LAST": "2018-04-30", "VERSION": "7",
            "STAGE": "score", "REASON": "rollback after drift alert", "CARDSCORE_CONFIG": "/etc/cardscore/cardscore.yaml"}


def command_lines(text: str) -> list[str]:
    """Lines that run cardscore (`cardscore ...`, also after `$ ` or `exec `), continuations
    joined, trailing comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        line = re.sub(r"^\s*(?:\$\s+|exec\s+)?", "", line)
        if line.startswith("cardscore "):
            found.append(re.sub(r"\s+#.*$", "", line).strip())
    return found


def argv_of(line: str) -> list[str]:
    expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: EXAMPLES.get(m.group(1), m.group(0)), line)
    words = shlex.split(expanded)
    assert words[0] == "cardscore", line
    return words[1:]


def parse(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """(sub-command path, parameters) as the CLI parses `cardscore <argv>`; the CLI's own
    UsageError if it refuses them. A stage command's arguments go through the stage's own
    parser, as the runner does (cardscore/cli/stages.py). Nothing runs."""
    import typer.main

    from cardscore.cli import app
    from cardscore.cli.stages import FORWARDED

    command = typer.main.get_command(app)
    context = command.make_context("cardscore", list(argv))
    current, path = command, []
    while hasattr(current, "resolve_command"):
        rest = [*getattr(context, "_protected_args", []), *context.args]
        if not rest:
            break
        name, current, rest = current.resolve_command(context, rest)
        path.append(name)
        context = current.make_context(name, rest, parent=context)
    if tuple(path) in FORWARDED:
        return path, _stage_arguments(FORWARDED[tuple(path)], [*context.args], " ".join(path))
    return path, context.params


def _stage_arguments(target: Any, argv: list[str], name: str) -> dict[str, Any]:
    import argparse
    import contextlib
    import io

    from cardscore.core.runner import build_parser

    parser = build_parser(target, prog=f"cardscore {name}")
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return vars(parser.parse_args(argv))
    except SystemExit:
        raise argparse.ArgumentError(None, f"invalid option for cardscore {name}: {errors.getvalue().strip()}") from None


def markdown_commands(text: str) -> list[str]:
    """`cardscore ...` commands of a markdown page: lines of its code blocks and inline code."""
    blocks = "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, re.S))
    inline = re.findall(r"(?<!`)`(cardscore [^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return command_lines(blocks) + [c.strip() for c in inline]
