"""Metric names selected by PromQL expressions, with the real PromQL parser (PyPI promql-parser,
in .tools-venv: run by that interpreter, not imported by the test suite).

stdin: a JSON list of expressions; stdout: a JSON object expression -> sorted metric names.
Grafana's interval variables are replaced by a duration first; an expression that does not parse
makes the script exit 1 naming it.
"""

from __future__ import annotations

import json
import re
import sys

import promql_parser

GRAFANA_INTERVALS = re.compile(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}")


def names(expression: str) -> list[str]:
    found: set[str] = set()

    def visit(node) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(GRAFANA_INTERVALS.sub("5m", expression)), visit)
    return sorted(found)


def main() -> int:
    out = {}
    for expression in json.load(sys.stdin):
        try:
            out[expression] = names(expression)
        except Exception as exc:
            print(f"does not parse: {expression!r}: {exc}", file=sys.stderr)
            return 1
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
