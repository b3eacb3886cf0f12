"""``alpha-db pnl-rebuild``: derive round trips from the fills (FIFO) into completed_trades."""

from __future__ import annotations

import argparse
from decimal import Decimal, InvalidOperation
from typing import Any

from alpha_models import pnl_store
from alpha_models.cli.common import Context, add_json_flag, command, print_json, print_table

_SHOWN_SKIPPED = 20


def plain(value: Decimal | None) -> Decimal | None:
    """The same number without trailing zeros, for display (exact sums carry 16 dp)."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def parse_mark(text: str) -> tuple[str, Decimal]:
    """``SYMBOL=PRICE`` (argparse type): the price must be a decimal number > 0."""
    symbol, sep, price = text.partition("=")
    if not sep or not symbol.strip():
        raise argparse.ArgumentTypeError(f"expected SYMBOL=PRICE, got {text!r}")
    try:
        value = Decimal(price.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"price of {symbol} is not a number: {price!r}") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"price of {symbol} must be > 0: {price!r}")
    return symbol.strip().upper(), value


def add_mark_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mark",
        action="append",
        type=parse_mark,
        default=[],
        metavar="SYMBOL=PRICE",
        help="mark price of a symbol for unrealized P&L (repeatable)",
    )


def _rebuild(args: argparse.Namespace, ctx: Context) -> int:
    stats = pnl_store.rebuild_completed_trades(
        ctx.engine, args.bot or None, workers=args.workers, dry_run=args.dry_run
    )
    marks = dict(args.mark)
    unrealized = pnl_store.unrealized(stats.open_positions, marks) if marks else ()
    if args.json:
        print_json(
            {
                "stats": stats,
                "skipped_by_reason": stats.skipped_by_reason(),
                "fills_per_second": round(stats.fills_per_second),
                "unrealized": unrealized,
            }
        )
        return 0
    verb = "would change" if stats.dry_run else "changed"
    print(
        f"{stats.fills_read} fills -> {stats.round_trips} round trips in "
        f"{stats.seconds:.2f}s ({stats.fills_per_second:,.0f} fills/s, {stats.workers} "
        f"process(es)); {verb}: +{stats.inserted} ~{stats.updated} -{stats.deleted}, "
        f"unchanged {stats.unchanged}"
    )
    if stats.fills_not_trades:
        print(f"{stats.fills_not_trades} fill(s) of a non-trade exec_type (Funding...) ignored")
    print_table(
        [
            (
                r.bot_id,
                r.round_trips,
                plain(r.net_pnl_round_trips),
                plain(r.net_pnl_open_trips),
                plain(r.net_pnl),
                plain(r.fees),
            )
            for r in stats.realized
        ],
        ["bot", "round trips", "net (trips)", "net (open trips)", "net realized", "fees"],
    )
    if stats.skipped:
        print(f"\n{len(stats.skipped)} round trip(s) not stored: {stats.skipped_by_reason()}")
        print_table(
            [
                (
                    s.reason,
                    s.trade_id,
                    s.symbol,
                    s.entry_time,
                    s.exit_time,
                    s.net_pnl,
                    s.other_trade_id,
                )
                for s in stats.skipped[:_SHOWN_SKIPPED]
            ],
            ["reason", "trade_id", "symbol", "entry", "exit", "net", "held by"],
        )
        if len(stats.skipped) > _SHOWN_SKIPPED:
            print(f"... and {len(stats.skipped) - _SHOWN_SKIPPED} more (see --json)")
    if unrealized:
        print()
        print_table(
            [
                (
                    u.bot_id,
                    u.symbol,
                    u.side,
                    u.size,
                    u.avg_entry_price,
                    u.mark_price,
                    u.unrealized_pnl,
                )
                for u in unrealized
            ],
            ["bot", "symbol", "side", "size", "avg entry", "mark", "unrealized"],
        )
    return 0


def register(sub: Any) -> None:
    p = command(
        sub,
        "pnl-rebuild",
        help="rebuild completed_trades (source 'fills') from the fills with FIFO; idempotent",
        example="alpha-db pnl-rebuild --bot shortseller_001 --dry-run",
        handler=_rebuild,
    )
    p.add_argument(
        "--bot",
        action="append",
        metavar="BOT_ID",
        help="rebuild only this bot (repeatable; default: every bot but 'unknown')",
    )
    p.add_argument("--dry-run", action="store_true", help="report the changes, write nothing")
    p.add_argument(
        "--workers", type=int, default=None, help="processes to use (default: automatic)"
    )
    add_mark_option(p)
    add_json_flag(p)
