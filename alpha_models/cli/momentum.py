"""``alpha-db import-momentum``: a legacy Momentum SQLite file -> the shared schema."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alpha_models.cli.common import (
    EXIT_ACTION_NEEDED,
    EXIT_OK,
    Context,
    add_json_flag,
    command,
    print_json,
    print_table,
    progress,
    safe_text,
)
from alpha_models.momentum_import import ImportReport, import_legacy
from alpha_models.momentum_store import MomentumStore
from alpha_models.runtime import build_write_path

DEFAULT_BOT_ID = "momentum_001"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone {name!r}") from None


def _bar(items: Iterable[Any], total: int, label: str) -> Iterable[Any]:
    return progress(items, total=total, label=f"{label:12}")


def _print_report(report: ImportReport) -> None:
    title = "dry run (nothing written)" if report.dry_run else "imported"
    print(f"{title}: {safe_text(report.file)} -> bot {report.bot_id}, naive times in {report.tz}")
    if report.already_imported:
        print("this file was imported before: only what is missing was added")
    print_table(
        [
            (name, c.read, c.added, c.updated, c.existing, c.rejected)
            for name, c in report.tables.items()
        ],
        ["table", "read", "added", "updated", "existing", "rejected"],
    )
    verb = "to book" if report.dry_run else "booked"
    f = report.fills
    print(
        f"fills: {f.owed} {verb}"
        + ("" if report.dry_run else f" ({f.new} new, {f.existing} existing, {f.spooled} spooled)")
    )
    print_table(
        [
            (
                mode,
                p.trades_legacy,
                p.trades_imported,
                f"{p.legacy:.2f}",
                p.imported,
                "ok" if p.matches else "DIFFERS",
            )
            for mode, p in report.pnl.items()
        ],
        ["mode", "legacy trades", "shared trades", "legacy P&L", "shared P&L", "check"],
    )
    for r in report.rejected:
        print(f"rejected: {r.table} id {r.id}: {safe_text(r.reason)}")
    for n in report.notes:
        print(f"note: {n.table} id {n.id}: {safe_text(n.note)}")
    verb = "rows a real run would add" if report.dry_run else "rows added"
    print(f"{verb}: {report.rows_added}; rejected: {len(report.rejected)}")


def _import(args: argparse.Namespace, ctx: Context) -> int:
    store = MomentumStore(ctx.engine, ctx.settings)
    write_path = (
        None if args.dry_run else build_write_path(ctx.settings, ctx.engine, cache=args.cache)
    )
    report = import_legacy(
        args.file,
        store=store,
        write_path=write_path,
        bot_id=args.bot_id,
        tz=args.tz,
        dry_run=args.dry_run,
        progress=_bar,
    )
    if args.json:
        print_json(report.as_dict())
    else:
        _print_report(report)
    mismatch = any(not p.matches for p in report.pnl.values())
    return EXIT_ACTION_NEEDED if report.rejected or mismatch else EXIT_OK


def register(sub: Any) -> None:
    p = command(
        sub,
        "import-momentum",
        help="import a legacy Momentum SQLite file (trades with their fills, snapshots, "
        "events) idempotently; exit 1 when rows could not be imported",
        example="alpha-db import-momentum /app/data/trading.db --tz Europe/Berlin --dry-run",
        handler=_import,
    )
    p.add_argument("file", help="the legacy SQLite file (data/trading.db)")
    p.add_argument(
        "--dry-run", action="store_true", help="report what would be added, write nothing"
    )
    p.add_argument(
        "--tz",
        type=_zone,
        default=ZoneInfo("UTC"),
        metavar="ZONE",
        help="zone of the file's naive times (the old host's local zone; default UTC)",
    )
    p.add_argument(
        "--bot-id",
        default=os.environ.get("ALPHA_MOMENTUM_BOT_ID") or DEFAULT_BOT_ID,
        help="bot the history belongs to (default momentum_001)",
    )
    p.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="do not update the Redis position cache (rebuild it later)",
    )
    add_json_flag(p)
