"""Shared plumbing of the ``alpha-db`` subcommands: output, errors, progress, context."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import traceback
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any, TextIO, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from alpha_models.db import translate_error
from alpha_models.errors import AlphaModelsError
from alpha_models.settings import Settings

T = TypeVar("T")
Handler = Callable[[argparse.Namespace, "Context"], int]

EXIT_OK = 0
EXIT_ACTION_NEEDED = 1
EXIT_USAGE = 2

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]|\x1b\[[0-9;?]*[ -/]*[@-~]")


def safe_text(value: object) -> str:
    """``value`` as one printable line: newlines become ``\\n``, escapes and other control
    characters are shown as ``\\xNN`` (log and terminal injection neutralised)."""
    text = str(value)
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")
    text = _CONTROL.sub(lambda m: "".join(f"\\x{ord(c):02x}" for c in m.group(0)), text)
    # Format characters (bidi overrides such as U+202E) reorder what a terminal shows.
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) == "Cf" else c for c in text)


def to_jsonable(value: Any) -> Any:
    """JSON-safe form: Decimal as a string (never a float), times as ISO-8601."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: to_jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


def print_json(payload: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(to_jsonable(payload), out, indent=2, sort_keys=False, ensure_ascii=False)
    out.write("\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Decimal):
        return format(value.normalize() if value == value.to_integral() else value, "f")
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return safe_text(value)


def print_table(
    rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO | None = None
) -> None:
    """A plain aligned text table (numbers right-aligned)."""
    out = out or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        all(isinstance(r[i], int | float | Decimal) or r[i] is None for r in rows) and bool(rows)
        for i in range(len(headers))
    ]

    def fmt(row: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out.write(fmt(list(headers)) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write(fmt(row) + "\n")


def progress(
    items: Iterable[T], *, total: int | None = None, label: str = "", stream: TextIO | None = None
) -> Iterator[T]:
    """Yield ``items``, drawing a bar on stderr only when stderr is a terminal."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield from items
        return
    done = 0
    width = 30
    for item in items:
        yield item
        done += 1
        if done % 50 == 0 or done == total:
            if total:
                filled = int(width * done / total)
                stream.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
            else:
                stream.write(f"\r{label} {done}")
            stream.flush()
    stream.write("\n")


@dataclass
class Context:
    """Lazily built resources shared by commands (nothing connects until used)."""

    settings: Settings = field(default_factory=Settings)

    @cached_property
    def engine(self) -> Engine:
        from alpha_models.db import make_engine

        return make_engine(self.settings)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def command(
    sub: Any, name: str, *, help: str, example: str, handler: Handler
) -> argparse.ArgumentParser:
    """Add a subcommand with the shared conventions (an example in ``--help``)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"Example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def run_command(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ctx: Context | None = None
    try:
        ctx = Context()
        handler: Handler = args.handler
        return handler(args, ctx)
    except AlphaModelsError as exc:
        _fail(exc, args, ctx)
        return exc.exit_code
    except DBAPIError as exc:
        translated = translate_error(exc, ctx.settings if ctx else None)
        _fail(translated, args, ctx)
        return translated.exit_code if isinstance(translated, AlphaModelsError) else 1
    except KeyboardInterrupt:
        print("alpha-db: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI boundary: one line, no traceback unless --debug
        _fail(exc, args, ctx)
        return EXIT_ACTION_NEEDED
    finally:
        if ctx is not None:
            ctx.close()


def _fail(exc: BaseException, args: argparse.Namespace, ctx: Context | None) -> None:
    message = str(exc) or type(exc).__name__
    if ctx is not None:
        message = ctx.settings.scrub(message)
    print(f"alpha-db: error: {safe_text(message)}", file=sys.stderr)
    if args.debug:
        text = "".join(traceback.format_exception(exc))
        print(ctx.settings.scrub(text) if ctx else text, file=sys.stderr)
