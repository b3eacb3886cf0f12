"""``alpha-db analytics | compare | daily | positions | exposure | chart``: the read side.

Round trips are those derived from fills (``source = 'fills'``, see ``alpha-db
pnl-rebuild``) unless ``--source`` says otherwise. Times are UTC; an ISO time without an
offset is taken as UTC.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from alpha_models import analytics, charts
from alpha_models.cli.common import (
    Context,
    add_json_flag,
    command,
    print_json,
    print_table,
    safe_text,
)
from alpha_models.cli.pnl import add_mark_option

SOURCES = ("fills", "bybit_api", "websocket", "manual", "all")


def parse_time(text: str) -> datetime:
    """ISO-8601 date or time (argparse type); no offset means UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date/time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _add_window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", type=parse_time, help="round trips exiting at or after (ISO)")
    parser.add_argument("--until", type=parse_time, help="round trips exiting before (ISO)")
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="fills",
        help="completed_trades source (default: fills, the FIFO round trips; all: every row)",
    )


def _source(args: argparse.Namespace) -> str | None:
    return None if args.source == "all" else str(args.source)


def _trade(t: analytics.TradeRef | None) -> str:
    return "-" if t is None else f"{t.net_pnl} {t.symbol} {t.exit_time:%Y-%m-%d %H:%M} UTC"


def _summary_rows(s: analytics.PnlSummary) -> list[tuple[str, Any]]:
    return [
        ("round trips", s.round_trips),
        ("wins / losses / breakeven", f"{s.wins} / {s.losses} / {s.breakeven}"),
        ("win rate %", s.win_rate_pct),
        ("gross P&L", s.gross_pnl),
        ("fees", s.fees),
        ("net P&L", s.net_pnl),
        ("profit factor", s.profit_factor),
        ("average win", s.avg_win),
        ("average loss", s.avg_loss),
        ("average holding (s)", s.avg_holding_seconds),
        ("max drawdown", s.max_drawdown),
        ("best trade", _trade(s.best_trade)),
        ("worst trade", _trade(s.worst_trade)),
    ]


def _window_text(args: argparse.Namespace) -> str:
    since = args.since.isoformat() if args.since else "first trade"
    until = args.until.isoformat() if args.until else "now"
    return f"{since} .. {until}, source {args.source}"


def _analytics(args: argparse.Namespace, ctx: Context) -> int:
    bot = analytics.resolve_bot(args.bot)
    if args.legacy:
        legacy = analytics.legacy_summary(ctx.engine, bot=bot, days=args.days)
        corrected = (
            analytics.bot_summary(ctx.engine, bot, start=legacy.start)
            if bot is not None
            else analytics.compare_bots(ctx.engine, start=legacy.start).portfolio
        )
        if args.json:
            print_json({"legacy": legacy, "corrected": corrected})
            return 0
        since = f"{legacy.start:%Y-%m-%d %H:%M} UTC"
        print(f"{bot or 'all bots'}: last {legacy.days} day(s), since {since}")
        print_table(
            [
                ("closed trades", legacy.closed_trades, corrected.round_trips),
                ("wins", legacy.wins, corrected.wins),
                ("losses", legacy.losses, corrected.losses),
                ("breakeven", "(counted as losses)", corrected.breakeven),
                ("win rate %", legacy.win_rate, corrected.win_rate_pct),
                ("total P&L", legacy.total_pnl, corrected.net_pnl),
                ("average P&L", legacy.avg_pnl, corrected.avg_net),
                ("max win", legacy.max_win, _trade(corrected.best_trade)),
                ("max loss", legacy.max_loss, _trade(corrected.worst_trade)),
                ("fees", legacy.fees, corrected.fees),
                ("open trades", legacy.open_trades, "see alpha-db positions"),
            ],
            ["figure", "today's /analytics (all sources)", "corrected (FIFO from fills)"],
        )
        return 0
    if bot is None:
        summary = analytics.compare_bots(
            ctx.engine, start=args.since, end=args.until, source=_source(args)
        ).portfolio
    else:
        summary = analytics.bot_summary(
            ctx.engine, bot, start=args.since, end=args.until, source=_source(args)
        )
    if args.json:
        print_json(summary)
        return 0
    print(f"{summary.bot_id}: {_window_text(args)}")
    print_table(_summary_rows(summary), ["figure", "value"])
    if summary.by_exit_reason:
        print()
        print_table(
            [
                (r.exit_reason or "(none)", r.round_trips, r.wins, r.losses, r.breakeven, r.net_pnl)
                for r in summary.by_exit_reason
            ],
            ["exit reason", "trips", "wins", "losses", "breakeven", "net P&L"],
        )
    return 0


def _compare(args: argparse.Namespace, ctx: Context) -> int:
    result = analytics.compare_bots(
        ctx.engine, start=args.since, end=args.until, source=_source(args)
    )
    if args.json:
        print_json(result)
        return 0
    print(_window_text(args))
    print_table(
        [
            (
                s.bot_id,
                s.round_trips,
                s.wins,
                s.losses,
                s.breakeven,
                s.win_rate_pct,
                s.gross_pnl,
                s.fees,
                s.net_pnl,
                s.profit_factor,
                s.max_drawdown,
            )
            for s in (*result.bots, result.portfolio)
        ],
        ["bot", "trips", "wins", "losses", "BE", "win %", "gross", "fees", "net", "PF", "max DD"],
    )
    return 0


def _daily(args: argparse.Namespace, ctx: Context) -> int:
    days = analytics.daily_pnl(
        ctx.engine, bot_id=analytics.resolve_bot(args.bot), days=args.days, source=_source(args)
    )
    if args.json:
        print_json(days)
        return 0
    print_table(
        [
            (d.day, d.bot_id, d.round_trips, d.wins, d.losses, d.breakeven, d.fees, d.net_pnl)
            for d in days
        ],
        ["day (UTC)", "bot", "trips", "wins", "losses", "BE", "fees", "net P&L"],
    )
    totals: dict[str, Any] = {}
    for d in days:
        totals[d.bot_id] = totals.get(d.bot_id, 0) + d.net_pnl
    for bot_id, net in sorted(totals.items()):
        print(f"total {safe_text(bot_id)}: {net}")
    return 0


def _positions(args: argparse.Namespace, ctx: Context) -> int:
    rows = analytics.open_positions(
        ctx.engine, bot_id=analytics.resolve_bot(args.bot), marks=dict(args.mark)
    )
    if args.json:
        print_json(rows)
        return 0
    print_table(
        [
            (
                p.bot_id,
                p.symbol,
                "long" if p.side == "Buy" else "short",
                p.size,
                p.avg_entry_price,
                p.mark_price,
                p.unrealized_pnl,
                p.notional,
                p.notional_basis,
                p.lots,
                p.opened_at,
            )
            for p in rows
        ],
        [
            "bot",
            "symbol",
            "side",
            "size",
            "avg entry",
            "mark",
            "unrealized",
            "notional",
            "at",
            "lots",
            "opened",
        ],
    )
    mismatched = [
        p for p in rows if p.position_row_size is not None and p.position_row_size != p.size
    ]
    for p in mismatched:
        print(
            f"note: {safe_text(p.bot_id)}/{safe_text(p.symbol)}: lots hold {p.size}, "
            f"trading.positions says {p.position_row_size}"
        )
    return 0


def _exposure(args: argparse.Namespace, ctx: Context) -> int:
    rows = analytics.exposure_by_symbol(ctx.engine, marks=dict(args.mark))
    if args.json:
        print_json(rows)
        return 0
    print_table(
        [
            (
                e.symbol,
                ",".join(e.bots),
                e.long_size,
                e.short_size,
                e.net_size,
                e.mark_price,
                e.gross_notional,
                e.net_notional,
                e.notional_basis,
                e.unrealized_pnl,
            )
            for e in rows
        ],
        [
            "symbol",
            "bots",
            "long",
            "short",
            "net",
            "mark",
            "gross notional",
            "net notional",
            "at",
            "unrealized",
        ],
    )
    return 0


def _chart(args: argparse.Namespace, ctx: Context) -> int:
    files = charts.write_charts(
        ctx.engine,
        args.out,
        bot_ids=[analytics.resolve_bot(b) or b for b in args.bot] if args.bot else None,
        start=args.since,
        end=args.until,
        source=_source(args),
    )
    if args.json:
        print_json(files)
        return 0
    print(f"{files.round_trips} round trips, {files.days} day(s), bots: {', '.join(files.bots)}")
    for path in (files.cumulative_png, files.daily_png, files.html):
        print(f"wrote {path}")
    return 0


def register(sub: Any) -> None:
    p = command(
        sub,
        "analytics",
        help="performance of a bot (or of all bots) over a window: wins, P&L, drawdown...",
        example="alpha-db analytics --bot shortseller_001 --since 2025-11-01 --until 2025-11-08",
        handler=_analytics,
    )
    p.add_argument("--bot", help="bot id or Telegram alias (alpha, bravo, charlie)")
    _add_window(p)
    p.add_argument(
        "--legacy",
        action="store_true",
        help="show today's /analytics figures next to the corrected ones (uses --days)",
    )
    p.add_argument("--days", type=int, default=7, help="window of --legacy, in days (max 90)")
    add_json_flag(p)

    p = command(
        sub,
        "compare",
        help="all bots side by side, with the portfolio total",
        example="alpha-db compare --since 2025-11-01",
        handler=_compare,
    )
    _add_window(p)
    add_json_flag(p)

    p = command(
        sub,
        "daily",
        help="realized P&L per bot and UTC day",
        example="alpha-db daily --bot lxalgo_001 --days 14",
        handler=_daily,
    )
    p.add_argument("--bot", help="bot id or alias (default: every bot)")
    p.add_argument("--days", type=int, default=7, help="last N UTC days, today included")
    p.add_argument("--source", choices=SOURCES, default="fills", help="completed_trades source")
    add_json_flag(p)

    p = command(
        sub,
        "positions",
        help="open positions per bot (from the FIFO lots), unrealized P&L at given marks",
        example="alpha-db positions --bot shortseller_001 --mark BTCUSDT=97000.5",
        handler=_positions,
    )
    p.add_argument("--bot", help="bot id or alias (default: every bot)")
    add_mark_option(p)
    add_json_flag(p)

    p = command(
        sub,
        "exposure",
        help="total exposure per symbol across bots (for cross-strategy risk limits)",
        example="alpha-db exposure --mark BTCUSDT=97000 --mark ETHUSDT=3400",
        handler=_exposure,
    )
    add_mark_option(p)
    add_json_flag(p)

    p = command(
        sub,
        "chart",
        help="write PNG charts (cumulative and daily P&L) and an HTML page embedding them",
        example="alpha-db chart --out reports/ --since 2025-11-01",
        handler=_chart,
    )
    p.add_argument("--out", required=True, help="directory to write into (created if missing)")
    p.add_argument("--bot", action="append", help="only this bot (repeatable)")
    _add_window(p)
    add_json_flag(p)
