"""``alpha-db reconcile``: saved Bybit pages for a bot and window against the database;
``alpha-db reconcile-restore``: put a fill that ``--apply`` voided back.

Exit status: 0 when the window is clean, 1 while discrepancies remain (after ``--apply``: the
ones it cannot fix), so a scheduler can alert on it; invalid pages or arguments exit with
the error's own code (65) and the run is recorded as failed. ``reconcile-restore`` exits 0
when the row is back, 65 when nothing with that exec_id is quarantined or it is stored
again.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from alpha_models.cache import PositionCache
from alpha_models.cli.common import (
    Context,
    add_json_flag,
    command,
    print_json,
    print_table,
    safe_text,
)
from alpha_models.errors import ValidationError
from alpha_models.inputs import to_utc
from alpha_models.reconcile import (
    QUARANTINE_TABLES,
    SYNC_TYPES,
    Discrepancy,
    Kind,
    ReconcileReport,
    pnl_rebuild_hint,
    reconcile,
    restore_quarantined,
)
from alpha_models.runtime import build_write_path, make_redis


def _when(option: str, value: str) -> datetime:
    try:
        return to_utc(option, value)
    except ValidationError as exc:
        raise ValidationError(
            option, value, f"{exc.reason} (ISO-8601 with an offset, e.g. 2025-11-06T00:00:00Z)"
        ) from None


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 <= seconds <= 86_400:
        raise argparse.ArgumentTypeError("must be between 0 and 86400 seconds")
    return seconds


def _detail(d: Discrepancy) -> str:
    if d.differences:
        return "; ".join(
            f"{f.field}: exchange {_value(f.exchange)}, db {_value(f.stored)}"
            for f in d.differences
        )
    if d.stored is None:
        return ""
    where = f"row {d.stored.row_id}, source {d.stored.source or '-'}"
    if d.kind is Kind.MISATTRIBUTED:
        return f"stored under {d.stored.bot_id} ({where})"
    if d.blocked is not None:
        return f"{where}; not voided: {d.blocked}"
    return where


def _value(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return safe_text(value)


def _print_human(report: ReconcileReport) -> None:
    ex = report.exchange
    res = report.result
    print(
        f"reconcile {report.bot_id}  {report.window_start.isoformat()} .. "
        f"{report.window_end.isoformat()}  (sync #{report.sync_id}, {report.sync_type}, "
        f"{report.status})"
    )
    print(
        f"exchange: {ex.pages} page(s): {res.exchange_executions} execution(s) and "
        f"{res.exchange_funding} funding settlement(s) in the window, {ex.closed_pnl} closed-P&L "
        f"record(s); left out: {ex.outside_window} outside the window, {ex.other_bots} of other "
        f"bots, {ex.other_symbols} of other symbols"
    )
    print(
        f"database: {res.stored_fills} fill(s) and {res.stored_funding} funding settlement(s) "
        f"of the bot in the window; {res.matched} matched by exec_id, "
        f"{len(res.content_matches)} by content"
    )
    if report.corrections:
        print()
        print_table(
            [
                (c.action, "yes" if c.applied else "no", c.outcome, c.exec_id, c.symbol, c.row_id)
                for c in report.corrections
            ],
            ["correction", "applied", "outcome", "exec_id", "symbol", "row"],
        )
    if res.discrepancies:
        print()
        print_table(
            [
                (
                    f"{d.kind}{' (funding)' if d.funding else ''}",
                    d.exec_id,
                    d.subject.symbol,
                    d.subject.side,
                    d.subject.qty.normalize(),
                    d.subject.price.normalize(),
                    d.subject.exec_time,
                    _detail(d),
                )
                for d in res.discrepancies
            ],
            ["kind", "exec_id", "symbol", "side", "qty", "price", "exec_time", "detail"],
        )
    if res.content_matches:
        print()
        print_table(
            [
                (
                    m.stored.row_id,
                    m.stored.order_id,
                    len(m.exchange),
                    "; ".join(
                        f"{f.field}: exchange {_value(f.exchange)}, db {_value(f.stored)}"
                        for f in m.differences
                    )
                    or "-",
                )
                for m in res.content_matches
            ],
            ["row (no exchange id)", "order_id", "executions", "differences"],
        )
    if res.closed_pnl:
        print()
        print_table(
            [
                (
                    c.symbol,
                    c.exchange_records,
                    c.exchange_qty,
                    c.exchange_pnl,
                    c.stored_trades,
                    c.stored_qty,
                    c.stored_pnl,
                    "yes" if c.agrees else "NO",
                )
                for c in res.closed_pnl
            ],
            [
                "symbol",
                "closed-P&L records",
                "closed qty",
                "closed P&L",
                "trades",
                "exit qty",
                "net P&L",
                "qty agrees",
            ],
        )
    for warning in report.warnings:
        print(f"warning: {safe_text(warning)}")
    if report.pnl_rebuild_needed:
        print(f"note: {safe_text(pnl_rebuild_hint(report.bot_id))}")
    print()
    counts = {k: n for k, n in res.counts().items() if n}
    if report.clean:
        print("clean: no discrepancy remains" + (f" ({_counts(counts)})" if counts else ""))
    else:
        print(f"{report.remaining_count} discrepancy(ies) remain: {_counts(counts)}")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items())


def _reconcile(args: argparse.Namespace, ctx: Context) -> int:
    since = _when("--since", args.since)
    until = _when("--until", args.until)
    write_path = build_write_path(ctx.settings, ctx.engine)
    report = reconcile(
        ctx.engine,
        write_path,
        args.bot,
        since,
        until,
        args.pages,
        apply=args.apply,
        sync_type=args.sync_type,
        symbols=args.symbol or None,
        time_tolerance=timedelta(seconds=args.time_tolerance),
        trade_sources=args.trade_source or None,
        strict=args.strict,
    )
    if args.json:
        print_json(report.to_dict())
    else:
        _print_human(report)
    return report.exit_code


def _restore(args: argparse.Namespace, ctx: Context) -> int:
    cache = PositionCache(make_redis(ctx.settings, args.redis_db))
    result = restore_quarantined(ctx.engine, args.exec_id, cache=cache)
    if args.json:
        print_json(result.to_dict())
        return 0
    what = "funding settlement" if result.funding else "fill"
    print(
        f"restored {what} {safe_text(result.exec_id)} ({safe_text(result.bot_id)} "
        f"{safe_text(result.symbol)}) from {QUARANTINE_TABLES[result.funding]}: row "
        f"{result.quarantined_id} when voided, row {result.row_id} now ({result.outcome})"
        + ("" if result.funding else "; lots and position rebuilt")
    )
    for warning in result.warnings:
        print(f"warning: {safe_text(warning)}")
    if result.pnl_rebuild_needed:
        print(f"note: {safe_text(pnl_rebuild_hint(result.bot_id))}")
    return 0


def register(sub: Any) -> None:
    p = command(
        sub,
        "reconcile",
        help="compare saved Bybit execution-list / closed-P&L pages with the database",
        example=(
            "alpha-db reconcile --bot shortseller_001 --since 2025-11-05T00:00:00Z "
            "--until 2025-11-06T00:00:00Z pages/ --apply"
        ),
        handler=_reconcile,
    )
    p.add_argument("pages", nargs="+", help="page files (JSON, JSON array, JSON lines) or folders")
    p.add_argument("--bot", required=True, help="the bot whose account the pages are from")
    p.add_argument("--since", required=True, help="window start, ISO-8601 with offset (inclusive)")
    p.add_argument("--until", required=True, help="window end, ISO-8601 with offset (exclusive)")
    p.add_argument(
        "--apply",
        action="store_true",
        help="make the database agree with the exchange: record the missing executions, "
        "re-attribute 'unknown' copies, correct mismatched rows, and move unexpected rows to "
        "the quarantine (only when the pages are complete and cover the row's time; "
        "alpha-db reconcile-restore puts one back). Correcting and voiding need the owner role",
    )
    p.add_argument(
        "--sync-type",
        choices=SYNC_TYPES,
        default="manual",
        help="sync_status.sync_type of this run (default: manual)",
    )
    p.add_argument("--symbol", action="append", help="only this symbol (repeatable; default: all)")
    p.add_argument(
        "--time-tolerance",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how far a report without exchange id may be from its execution (default: 5)",
    )
    p.add_argument(
        "--trade-source",
        action="append",
        help="compare closed P&L only with completed_trades of this source (repeatable)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="count unverifiable rows (no exchange id, no match) as discrepancies",
    )
    add_json_flag(p)

    r = command(
        sub,
        "reconcile-restore",
        help="put a fill (or funding settlement) that reconcile --apply voided back from the "
        "quarantine, rebuilding its position",
        example="alpha-db reconcile-restore 5b0e8a3c-9d1f-4e27-b6a4-0c3d2e1f9a88",
        handler=_restore,
    )
    r.add_argument("exec_id", help="the exec_id of the voided row")
    r.add_argument("--redis-db", type=int, default=None, help="Redis DB (default REDIS_DB)")
    add_json_flag(r)
