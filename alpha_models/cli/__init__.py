"""``alpha-db``: one command-line tool for every task of the data layer.

Each subcommand lives in a module of this package that defines
``register(subparsers) -> None`` (discovered automatically, sorted by name). Conventions,
enforced by :mod:`alpha_models.cli.common`:

- ``--help`` on every command, with an example in its epilog;
- ``--json`` for machine output (one JSON document on stdout), human tables otherwise;
- exit codes: 0 ok, 1 discrepancies or action needed, 2 usage, and each
  :class:`~alpha_models.errors.AlphaModelsError` class has its own code;
- errors as one clear line on stderr (a traceback only with ``--debug``); secrets never
  printed; control characters in data neutralised before they reach the terminal;
- progress bars only on a terminal (stderr), never when output is piped.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from alpha_models.cli.common import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alpha-db",
        description="Alpha platform data layer: migrations, ingestion, cache, P&L, analytics.",
        epilog="Example: alpha-db doctor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
