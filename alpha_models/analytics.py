# ruff: noqa: S608
"""The read side: performance, daily P&L, open positions and exposure, for the Telegram bot.

Every function takes an :class:`~sqlalchemy.engine.Engine`, runs read-only (one transaction,
rolled back), and returns frozen dataclasses holding ``Decimal`` money and aware UTC times.

Conventions (the corrected semantics):

- Round trips come from ``trading.completed_trades``; by default only ``source = 'fills'``,
  the rows :mod:`alpha_models.pnl_store` derives from the fills with FIFO (``source=None``
  reads every source: ``bybit_api`` rows are inverted and cover the same trades, so mixing
  them double counts).
- A window is half-open ``[start, end)`` on ``exit_time``: realized P&L is dated when
  realized. ``None`` leaves that side open. Days are UTC days.
- A round trip is a **win** if ``net_pnl > 0``, a **loss** if ``< 0`` and **breakeven** if
  ``= 0``; the win rate is ``wins / round_trips`` (breakeven trades count in the denominator
  but never as a loss). Profit factor is ``sum(net of wins) / |sum(net of losses)|``.
- Max drawdown is the largest fall of the realized equity curve (cumulative net P&L in
  ``(exit_time, id)`` order, starting from 0 at the window start) below its running peak;
  it is computed exactly, over every round trip of the window.
- Open positions are the open FIFO lots in ``trading.position_entries`` that the write path
  keeps in the same transaction as each fill. Unrealized P&L needs a mark price per symbol:
  without one it is ``None``, never a guess, and notional falls back to the entry cost.

:func:`legacy_summary` reproduces today's ``/analytics`` figures exactly (PLATFORM.md §5)
so the two can be shown side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from itertools import accumulate
from operator import sub
from typing import Any, Final

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from alpha_models.db import translate_error
from alpha_models.errors import DatabaseError, ValidationError

__all__ = [
    "ALIASES",
    "SOURCE_FILLS",
    "Comparison",
    "CurveArrays",
    "DailyPnl",
    "EquityPoint",
    "LegacySummary",
    "OpenPosition",
    "PnlSummary",
    "ReasonStats",
    "SymbolExposure",
    "TradeRef",
    "bot_summary",
    "compare_bots",
    "curve_arrays",
    "daily_pnl",
    "days_window",
    "equity_curves",
    "exposure_by_symbol",
    "legacy_summary",
    "open_positions",
    "resolve_bot",
]

SOURCE_FILLS: Final = "fills"
PORTFOLIO: Final = "portfolio"
ALIASES: Final = {
    "alpha": "shortseller_001",
    "bravo": "lxalgo_001",
    "charlie": "momentum_001",
}
"""Telegram's bot aliases (PLATFORM.md §5)."""

_Q8: Final = Decimal("1E-8")
_Q4: Final = Decimal("1E-4")
_Q2: Final = Decimal("0.01")
_ZERO: Final = Decimal(0)
_HUNDRED: Final = Decimal(100)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS: Final = 10**8  # numeric(20,8) as integer units, for exact streaming arithmetic
_WIDE: Final = Context(prec=100)
_WORK_MEM: Final = "64MB"  # sorts of a few hundred thousand rows stay in memory


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class TradeRef:
    """One round trip, by reference (best or worst of a window)."""

    trade_id: str
    bot_id: str
    symbol: str
    net_pnl: Decimal
    exit_time: datetime


@dataclass(frozen=True, slots=True)
class ReasonStats:
    """Round trips of one exit reason (``None``: no reason recorded)."""

    exit_reason: str | None
    round_trips: int
    wins: int
    losses: int
    breakeven: int
    net_pnl: Decimal


@dataclass(frozen=True, slots=True)
class PnlSummary:
    """Performance of one bot (or of the portfolio, ``bot_id = 'portfolio'``) in a window."""

    bot_id: str
    start: datetime | None
    end: datetime | None
    source: str | None
    round_trips: int
    wins: int
    losses: int
    breakeven: int
    win_rate_pct: Decimal | None  # wins / round_trips * 100, 2 dp; None without trips
    gross_pnl: Decimal
    net_pnl: Decimal
    fees: Decimal
    gross_profit: Decimal  # sum of net P&L of the wins
    gross_loss: Decimal  # sum of net P&L of the losses (<= 0)
    profit_factor: Decimal | None  # gross_profit / |gross_loss|, 4 dp; None without a loss
    avg_win: Decimal | None  # 8 dp
    avg_loss: Decimal | None  # 8 dp (negative)
    avg_net: Decimal | None  # 8 dp
    avg_holding_seconds: Decimal | None  # 2 dp
    max_drawdown: Decimal  # >= 0, exact
    best_trade: TradeRef | None
    worst_trade: TradeRef | None
    by_exit_reason: tuple[ReasonStats, ...]  # by net P&L, highest first


@dataclass(frozen=True, slots=True)
class Comparison:
    """Every bot side by side, and the portfolio (all of them as one account)."""

    bots: tuple[PnlSummary, ...]
    portfolio: PnlSummary


@dataclass(frozen=True, slots=True)
class DailyPnl:
    """Realized P&L of one bot on one UTC day (round trips by exit time)."""

    day: date
    bot_id: str
    round_trips: int
    wins: int
    losses: int
    breakeven: int
    gross_pnl: Decimal
    net_pnl: Decimal
    fees: Decimal


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """An open position of one bot: its open FIFO lots, aggregated."""

    bot_id: str
    symbol: str
    side: str  # "Buy" (long) or "Sell" (short)
    size: Decimal
    avg_entry_price: Decimal  # over the open lots, 8 dp
    cost: Decimal  # sum of entry price * remaining qty (exact)
    lots: int
    opened_at: datetime  # entry time of the oldest open lot
    entry_fees: Decimal  # entry commission still carried by the open lots
    mark_price: Decimal | None
    unrealized_pnl: Decimal | None  # exact, fees excluded; None without a mark
    notional: Decimal  # size * mark, or the cost when there is no mark
    notional_basis: str  # "mark" or "entry"
    position_row_size: Decimal | None  # trading.positions.size for the pair (None: no row)


@dataclass(frozen=True, slots=True)
class SymbolExposure:
    """Exposure to one symbol summed over bots: what a cross-strategy risk limit reads."""

    symbol: str
    bots: tuple[str, ...]
    long_size: Decimal
    short_size: Decimal
    net_size: Decimal  # long - short
    mark_price: Decimal | None
    long_notional: Decimal
    short_notional: Decimal
    gross_notional: Decimal  # long + short
    net_notional: Decimal  # long - short (signed)
    notional_basis: str  # "mark" or "entry"
    unrealized_pnl: Decimal | None


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """The realized equity curve after one round trip."""

    bot_id: str
    exit_time: datetime
    net_pnl: Decimal
    cumulative: Decimal


@dataclass(frozen=True, slots=True)
class LegacySummary:
    """Today's ``/analytics`` figures, computed exactly as the Telegram bot does (§5).

    Known differences from :class:`PnlSummary`: every source is counted, breakeven is a
    loss, the window is ``exit_time >= now - days`` (no end), figures are rounded to 2 dp
    by PostgreSQL (half away from zero), open trades are Buy fills with no later Sell.
    """

    bot_id: str | None  # None: every bot
    days: int
    start: datetime
    total_trades: int
    closed_trades: int
    wins: int
    losses: int  # net <= 0: breakeven is a loss
    total_pnl: Decimal
    avg_pnl: Decimal
    max_win: Decimal
    max_loss: Decimal
    fees: Decimal
    win_rate: Decimal
    open_trades: int
    filled_trades: int  # fills in the window; reported when there is no closed trade
    # header
    bot_name: str | None
    bot_type: str | None
    status: str | None
    capital: Decimal | None
    equity: Decimal | None
    return_pct: Decimal | None
    bots_total: int | None  # header for "all bots"
    bots_active: int | None


# --------------------------------------------------------------------------- plumbing


def _aware(field: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValidationError(field, value, "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, value, "must be timezone-aware (UTC)")
    return value.astimezone(UTC)


def _window(
    start: datetime | None, end: datetime | None
) -> tuple[datetime | None, datetime | None]:
    s, e = _aware("start", start), _aware("end", end)
    if s is not None and e is not None and e <= s:
        raise ValidationError("end", end, "must be later than start")
    return s, e


def _source(source: str | None) -> str | None:
    if source is not None and (not isinstance(source, str) or not source):
        raise ValidationError("source", source, "must be a non-empty str or None (all)")
    return source


_SESSION_SQL: Final = (
    f"SET LOCAL work_mem = '{_WORK_MEM}'; SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO'"
)


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction (rolled back); driver errors leave translated."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(_SESSION_SQL)
            try:
                yield conn
            finally:
                conn.rollback()
    except DBAPIError as exc:
        raise translate_error(exc, getattr(engine, "info_settings", None)) from None


@contextmanager
def _paired_reading(engine: Engine) -> Iterator[tuple[Connection, Connection]]:
    """Two read-only transactions on one snapshot, so two queries can run at once."""
    try:
        with (
            engine.connect().execution_options(isolation_level="REPEATABLE READ") as main,
            engine.connect().execution_options(isolation_level="REPEATABLE READ") as side,
        ):
            try:
                snapshot = main.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
                side.exec_driver_sql("SET TRANSACTION SNAPSHOT %s", (snapshot,))
                main.exec_driver_sql(_SESSION_SQL)
                side.exec_driver_sql(_SESSION_SQL)
                yield main, side
            finally:
                side.rollback()
                main.rollback()
    except DBAPIError as exc:
        raise translate_error(exc, getattr(engine, "info_settings", None)) from None


def _q(value: Decimal | None, quantum: Decimal) -> Decimal | None:
    return None if value is None else value.quantize(quantum, ROUND_HALF_EVEN)


def _dec(value: Any) -> Decimal:
    return _ZERO if value is None else Decimal(value)


def _trim(value: Decimal) -> Decimal:
    """The same number without trailing zeros (products of 8-dp columns carry 16 dp)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


_TRIP_FILTER: Final = """(CAST(:source AS text) IS NULL OR t.source = :source)
   AND (CAST(:start AS timestamptz) IS NULL OR t.exit_time >= :start)
   AND (CAST(:end AS timestamptz) IS NULL OR t.exit_time < :end)"""

# Aggregates per bot and exit reason (a plain GROUP BY: parallel scans); per-bot and
# portfolio totals are exact sums of these groups.
_AGG_SQL: Final = f"""SELECT t.bot_id, t.exit_reason,
       count(*) AS n,
       count(*) FILTER (WHERE t.net_pnl > 0) AS wins,
       count(*) FILTER (WHERE t.net_pnl < 0) AS losses,
       count(*) FILTER (WHERE t.net_pnl = 0) AS breakeven,
       coalesce(sum(t.gross_pnl), 0) AS gross,
       coalesce(sum(t.net_pnl), 0) AS net,
       coalesce(sum(t.total_commission), 0) AS fees,
       coalesce(sum(t.net_pnl) FILTER (WHERE t.net_pnl > 0), 0) AS profit,
       coalesce(sum(t.net_pnl) FILTER (WHERE t.net_pnl < 0), 0) AS loss,
       coalesce(sum(t.holding_duration_seconds), 0) AS held,
       count(t.holding_duration_seconds) AS n_held
  FROM trading.completed_trades t
 WHERE t.bot_id = ANY(:bots) AND {_TRIP_FILTER}
 GROUP BY t.bot_id, t.exit_reason"""

_EXTREME_SQL: Final = f"""SELECT t.trade_id, t.bot_id, t.symbol, t.net_pnl, t.exit_time
  FROM trading.completed_trades t
 WHERE t.bot_id = :bot AND t.net_pnl IS NOT NULL AND {_TRIP_FILTER}
 ORDER BY t.net_pnl {{direction}}, t.exit_time, t.id
 LIMIT 1"""

# The curve in (exit_time, id) order: the bot as its 1-based position in %(bots)s and the
# net P&L as integer 1e-8 units (exact; numeric(20,8) * 1e8 always fits a bigint or errors).
_CURVE_SQL: Final = f"""COPY (SELECT array_position(%(bots)s::text[], t.bot_id::text),
       (t.net_pnl * {_UNITS})::bigint{{time}}
  FROM trading.completed_trades t
 WHERE t.bot_id = ANY(%(bots)s) AND t.net_pnl IS NOT NULL
   AND (%(source)s::text IS NULL OR t.source = %(source)s)
   AND (%(start)s::timestamptz IS NULL OR t.exit_time >= %(start)s)
   AND (%(end)s::timestamptz IS NULL OR t.exit_time < %(end)s)
 ORDER BY t.exit_time, t.id) TO STDOUT"""
_CURVE_TIME_SQL: Final = _CURVE_SQL.format(
    time=", (extract(epoch FROM t.exit_time) * 1000000)::bigint"  # microseconds since 1970
)
_CURVE_SQL_PLAIN: Final = _CURVE_SQL.format(time="")
_INT64_SAFE: Final = float(2**62)


def _registered_bots(conn: Connection) -> list[str]:
    return list(conn.execute(text("SELECT bot_id FROM trading.bots ORDER BY bot_id")).scalars())


_I64 = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True, slots=True)
class CurveArrays:
    """Round trips in equity-curve order as arrays (bulk use: charts, exports).

    ``bot_index`` is the 1-based position of the bot in ``bots``; ``units`` the net P&L in
    integer 1e-8 USDT (exact); ``exit_us`` the exit time in microseconds since 1970 (UTC;
    empty unless asked for).
    """

    bots: tuple[str, ...]
    bot_index: _I64
    units: _I64
    exit_us: _I64

    def cumulative_units(self, bot_id: str) -> tuple[_I64, _I64]:
        """(exit times in µs, cumulative net units) of one bot's curve."""
        mask = self.bot_index == self.bots.index(bot_id) + 1
        return self.exit_us[mask] if len(self.exit_us) else self.exit_us, np.cumsum(
            self.units[mask]
        )


def _stream_curve(conn: Connection, params: dict[str, Any], *, with_time: bool) -> CurveArrays:
    cur: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    rows: list[bytes] = []
    sink = type("_Sink", (), {"write": staticmethod(rows.append)})()
    sql = _CURVE_TIME_SQL if with_time else _CURVE_SQL_PLAIN
    cur.copy_expert(cur.mogrify(sql, params).decode(), sink)
    data = b"".join(rows)
    k = 3 if with_time else 2
    numbers = np.fromstring(data, dtype=np.int64, sep=" ")
    if len(numbers) != k * data.count(b"\n"):
        raise DatabaseError("unexpected COPY output while reading the equity curve")
    empty = np.zeros(0, dtype=np.int64)
    return CurveArrays(
        tuple(params["bots"]),
        numbers[0::k],
        numbers[1::k],
        numbers[2::k] if with_time else empty,
    )


def _max_drawdown(units: _I64) -> int:
    """Largest fall of the running sum (from 0) below its running peak, in units (exact)."""
    if not len(units):
        return 0
    if float(np.abs(units).astype(np.float64).sum()) >= _INT64_SAFE:  # beyond int64: Python
        cum = list(accumulate((int(u) for u in units), initial=0))
        return int(max(map(sub, accumulate(cum, max), cum)))
    cum_arr = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(units)))
    return int((np.maximum.accumulate(cum_arr) - cum_arr).max())


def _drawdowns(curve: CurveArrays, bots: Sequence[str]) -> tuple[dict[str, int], int]:
    """Max drawdown (units) per bot, and of the combined curve."""
    total = _max_drawdown(curve.units)
    if len(bots) == 1:
        return {bots[0]: total}, total
    per_bot = {b: _max_drawdown(curve.units[curve.bot_index == i + 1]) for i, b in enumerate(bots)}
    return per_bot, total


def _units(value: int) -> Decimal:
    return Decimal(value).scaleb(-8)


def _extreme(conn: Connection, bot_id: str, params: dict[str, Any], best: bool) -> TradeRef | None:
    sql = _EXTREME_SQL.format(direction="DESC" if best else "ASC")
    row = conn.execute(text(sql), {**params, "bot": bot_id}).first()
    if row is None:
        return None
    return TradeRef(row.trade_id, row.bot_id, row.symbol, row.net_pnl, row.exit_time)


def _reason_stats(row: Any) -> ReasonStats:
    return ReasonStats(
        row.exit_reason,
        int(row.n),
        int(row.wins),
        int(row.losses),
        int(row.breakeven),
        _dec(row.net),
    )


def _merge_reasons(groups: Iterable[Iterable[ReasonStats]]) -> list[ReasonStats]:
    acc: dict[str | None, list[Any]] = {}
    for group in groups:
        for r in group:
            a = acc.setdefault(r.exit_reason, [0, 0, 0, 0, _ZERO])
            a[0] += r.round_trips
            a[1] += r.wins
            a[2] += r.losses
            a[3] += r.breakeven
            a[4] += r.net_pnl
    return [ReasonStats(k, *v) for k, v in acc.items()]


def _summary(
    bot_id: str,
    agg: _Totals,
    reasons: Iterable[ReasonStats],
    drawdown: int,
    best: TradeRef | None,
    worst: TradeRef | None,
    start: datetime | None,
    end: datetime | None,
    source: str | None,
) -> PnlSummary:
    n, wins, losses = agg.n, agg.wins, agg.losses
    profit, loss, net = agg.profit, agg.loss, agg.net
    return PnlSummary(
        bot_id=bot_id,
        start=start,
        end=end,
        source=source,
        round_trips=n,
        wins=wins,
        losses=losses,
        breakeven=agg.breakeven,
        win_rate_pct=_q(Decimal(wins) * _HUNDRED / n, _Q2) if n else None,
        gross_pnl=agg.gross,
        net_pnl=net,
        fees=agg.fees,
        gross_profit=profit,
        gross_loss=loss,
        profit_factor=_q(profit / -loss, _Q4) if loss else None,
        avg_win=_q(profit / wins, _Q8) if wins else None,
        avg_loss=_q(loss / losses, _Q8) if losses else None,
        avg_net=_q(net / n, _Q8) if n else None,
        avg_holding_seconds=_q(Decimal(agg.held) / agg.n_held, _Q2) if agg.n_held else None,
        max_drawdown=_units(drawdown),
        best_trade=best,
        worst_trade=worst,
        by_exit_reason=tuple(sorted(reasons, key=lambda r: (-r.net_pnl, r.exit_reason or ""))),
    )


@dataclass(slots=True)
class _Totals:
    """Sums of aggregate groups (duck-types an aggregate row for :func:`_summary`)."""

    n: int = 0
    wins: int = 0
    losses: int = 0
    breakeven: int = 0
    gross: Decimal = _ZERO
    net: Decimal = _ZERO
    fees: Decimal = _ZERO
    profit: Decimal = _ZERO
    loss: Decimal = _ZERO
    held: int = 0
    n_held: int = 0

    def add(self, row: Any) -> None:
        self.n += int(row.n)
        self.wins += int(row.wins)
        self.losses += int(row.losses)
        self.breakeven += int(row.breakeven)
        self.gross += _dec(row.gross)
        self.net += _dec(row.net)
        self.fees += _dec(row.fees)
        self.profit += _dec(row.profit)
        self.loss += _dec(row.loss)
        self.held += int(row.held)
        self.n_held += int(row.n_held)


def _summaries(
    engine: Engine,
    bot_ids: Sequence[str] | None,
    start: datetime | None,
    end: datetime | None,
    source: str | None,
) -> Comparison:
    start, end = _window(start, end)
    source = _source(source)
    with _paired_reading(engine) as (conn, side):
        bots = sorted(set(bot_ids)) if bot_ids is not None else _registered_bots(conn)
        params: dict[str, Any] = {"bots": bots, "source": source, "start": start, "end": end}

        def aggregates() -> tuple[list[Any], dict[str, TradeRef | None], dict[str, Any]]:
            rows = list(side.execute(text(_AGG_SQL), params).all())
            bests = {b: _extreme(side, b, params, best=True) for b in bots}
            worsts = {b: _extreme(side, b, params, best=False) for b in bots}
            return rows, bests, worsts

        # The aggregates (one scan) and the curve (another scan and a sort) run at once.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(aggregates)
            per_bot_dd, total_dd = _drawdowns(_stream_curve(conn, params, with_time=False), bots)
            rows, bests, worsts = pending.result()
    totals = {b: _Totals() for b in bots}
    grand = _Totals()
    reasons: dict[str, list[ReasonStats]] = {b: [] for b in bots}
    for r in rows:
        totals[r.bot_id].add(r)
        grand.add(r)
        reasons[r.bot_id].append(_reason_stats(r))
    summaries = tuple(
        _summary(
            b, totals[b], reasons[b], per_bot_dd.get(b, 0), bests[b], worsts[b], start, end, source
        )
        for b in bots
    )
    found = [t for t in bests.values() if t is not None]
    best = max(found, key=lambda t: (t.net_pnl, -t.exit_time.timestamp()), default=None)
    found = [t for t in worsts.values() if t is not None]
    worst = min(found, key=lambda t: (t.net_pnl, t.exit_time.timestamp()), default=None)
    portfolio = _summary(
        PORTFOLIO,
        grand,
        _merge_reasons(reasons.values()),
        total_dd,
        best,
        worst,
        start,
        end,
        source,
    )
    return Comparison(summaries, portfolio)


# --------------------------------------------------------------------------- public API


def bot_summary(
    engine: Engine,
    bot_id: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    source: str | None = SOURCE_FILLS,
) -> PnlSummary:
    """Performance of ``bot_id`` over round trips with ``start <= exit_time < end``."""
    if not isinstance(bot_id, str) or not bot_id:
        raise ValidationError("bot_id", bot_id, "must be a non-empty str")
    return _summaries(engine, [bot_id], start, end, source).bots[0]


def compare_bots(
    engine: Engine,
    *,
    bot_ids: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    source: str | None = SOURCE_FILLS,
) -> Comparison:
    """Every bot (default: those of ``trading.bots``) side by side, and the portfolio total.

    The portfolio's max drawdown is that of the combined equity curve (all bots' round trips
    in exit order), not a sum of the bots' drawdowns.
    """
    return _summaries(engine, bot_ids, start, end, source)


def days_window(days: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``[start, end)`` of the last ``days`` UTC days, today included."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValidationError("days", days, "must be an int >= 1")
    today = (_aware("now", now) or datetime.now(UTC)).date()
    first = today - timedelta(days=days - 1)
    return (
        datetime.combine(first, time(), tzinfo=UTC),
        datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC),
    )


def daily_pnl(
    engine: Engine,
    *,
    bot_id: str | None = None,
    days: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    source: str | None = SOURCE_FILLS,
    now: datetime | None = None,
) -> tuple[DailyPnl, ...]:
    """Realized P&L per bot and UTC day, oldest first.

    ``days=N``: the last N UTC days including today (``now`` defaults to the clock);
    otherwise the ``[start, end)`` window. Days without a round trip are omitted.
    """
    if days is not None:
        if start is not None or end is not None:
            raise ValidationError("days", days, "give either days or start/end, not both")
        start, end = days_window(days, now)
    start, end = _window(start, end)
    source = _source(source)
    with _reading(engine) as conn:
        bots = [bot_id] if bot_id is not None else _registered_bots(conn)
        rows = conn.execute(
            text(
                f"""SELECT (t.exit_time AT TIME ZONE 'UTC')::date AS day, t.bot_id,
                       count(*) AS n,
                       count(*) FILTER (WHERE t.net_pnl > 0) AS wins,
                       count(*) FILTER (WHERE t.net_pnl < 0) AS losses,
                       count(*) FILTER (WHERE t.net_pnl = 0) AS breakeven,
                       coalesce(sum(t.gross_pnl), 0) AS gross,
                       coalesce(sum(t.net_pnl), 0) AS net,
                       coalesce(sum(t.total_commission), 0) AS fees
                  FROM trading.completed_trades t
                 WHERE t.bot_id = ANY(:bots) AND {_TRIP_FILTER}
                 GROUP BY 1, 2 ORDER BY 1, 2"""
            ),
            {"bots": bots, "source": source, "start": start, "end": end},
        ).all()
    return tuple(
        DailyPnl(
            r.day,
            r.bot_id,
            int(r.n),
            int(r.wins),
            int(r.losses),
            int(r.breakeven),
            _dec(r.gross),
            _dec(r.net),
            _dec(r.fees),
        )
        for r in rows
    )


def curve_arrays(
    engine: Engine,
    *,
    bot_ids: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    source: str | None = SOURCE_FILLS,
) -> CurveArrays:
    """Every round trip of the window in exit order, as arrays (see :class:`CurveArrays`)."""
    start, end = _window(start, end)
    source = _source(source)
    with _reading(engine) as conn:
        bots = sorted(set(bot_ids)) if bot_ids is not None else _registered_bots(conn)
        params = {"bots": bots, "source": source, "start": start, "end": end}
        return _stream_curve(conn, params, with_time=True)


def equity_curves(
    engine: Engine,
    *,
    bot_ids: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    source: str | None = SOURCE_FILLS,
) -> dict[str, tuple[EquityPoint, ...]]:
    """The realized equity curve of each bot: cumulative net P&L after each round trip."""
    arrays = curve_arrays(engine, bot_ids=bot_ids, start=start, end=end, source=source)
    out: dict[str, list[EquityPoint]] = {b: [] for b in arrays.bots}
    cum = [0] * (len(arrays.bots) + 1)
    rows = zip(
        arrays.bot_index.tolist(), arrays.units.tolist(), arrays.exit_us.tolist(), strict=True
    )
    for i, units, us in rows:
        c = cum[i] = cum[i] + units
        bot_id = arrays.bots[i - 1]
        when = _EPOCH + timedelta(microseconds=us)
        out[bot_id].append(EquityPoint(bot_id, when, _units(units), _units(c)))
    return {b: tuple(points) for b, points in out.items()}


def _check_marks(marks: Mapping[str, Decimal] | None) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for symbol, mark in (marks or {}).items():
        if not isinstance(mark, Decimal) or not mark.is_finite() or mark <= 0:
            raise ValidationError(f"marks[{symbol}]", mark, "must be a Decimal > 0")
        out[symbol] = mark
    return out


_POSITIONS_SQL: Final = """SELECT e.bot_id, e.symbol, e.side,
       sum(e.remaining_qty) AS size,
       sum(e.remaining_qty * e.entry_price) AS cost,
       count(*) AS lots,
       min(e.entry_time) AS opened_at,
       coalesce(sum(CASE WHEN e.original_qty = 0 THEN 0
                         ELSE coalesce(e.entry_commission, 0) * e.remaining_qty / e.original_qty
                    END), 0) AS entry_fees,
       (SELECT p.size FROM trading.positions p
         WHERE p.bot_id = e.bot_id AND p.symbol = e.symbol) AS position_row_size
  FROM trading.position_entries e
 WHERE e.status <> 'closed' AND e.remaining_qty > 0
   AND (CAST(:bot AS text) IS NULL OR e.bot_id = :bot)
 GROUP BY e.bot_id, e.symbol, e.side
 ORDER BY e.bot_id, e.symbol, e.side"""


def open_positions(
    engine: Engine,
    *,
    bot_id: str | None = None,
    marks: Mapping[str, Decimal] | None = None,
) -> tuple[OpenPosition, ...]:
    """Open positions per bot from the open FIFO lots, valued at ``marks`` (symbol -> price).

    Unrealized P&L is ``(mark - entry) * qty`` summed over the lots (short: the opposite),
    i.e. ``mark * size - cost`` for a long and ``cost - mark * size`` for a short: exactly
    :func:`alpha_models.pnl.unrealized_pnl` of the same lots.
    """
    checked = _check_marks(marks)
    with _reading(engine) as conn:
        rows = conn.execute(text(_POSITIONS_SQL), {"bot": bot_id}).all()
    with localcontext(_WIDE):  # products of 8-dp values stay exact
        return tuple(_position(r, checked.get(r.symbol)) for r in rows)


def _position(r: Any, mark: Decimal | None) -> OpenPosition:
    size, cost = _dec(r.size), _trim(_dec(r.cost))
    upnl = None
    if mark is not None:
        upnl = _trim(mark * size - cost if r.side == "Buy" else cost - mark * size)
    return OpenPosition(
        bot_id=r.bot_id,
        symbol=r.symbol,
        side=r.side,
        size=size,
        avg_entry_price=(cost / size).quantize(_Q8, ROUND_HALF_EVEN),
        cost=cost,
        lots=int(r.lots),
        opened_at=r.opened_at,
        entry_fees=_dec(r.entry_fees).quantize(_Q8, ROUND_HALF_EVEN),
        mark_price=mark,
        unrealized_pnl=upnl,
        notional=_trim(size * mark) if mark is not None else cost,
        notional_basis="mark" if mark is not None else "entry",
        position_row_size=r.position_row_size,
    )


def exposure_by_symbol(
    engine: Engine,
    *,
    marks: Mapping[str, Decimal] | None = None,
    bot_ids: Sequence[str] | None = None,
) -> tuple[SymbolExposure, ...]:
    """Total exposure per symbol across bots (long, short, net, gross notional).

    Notional is at the mark when one is given for the symbol, else at entry cost
    (``notional_basis`` says which). Symbols sorted by gross notional, largest first.
    """
    positions = open_positions(engine, marks=marks)
    with localcontext(_WIDE):
        return _exposure(positions, set(bot_ids) if bot_ids is not None else None)


def _exposure(
    positions: Iterable[OpenPosition], wanted: set[str] | None
) -> tuple[SymbolExposure, ...]:
    groups: dict[str, list[OpenPosition]] = {}
    for p in positions:
        if wanted is None or p.bot_id in wanted:
            groups.setdefault(p.symbol, []).append(p)
    out = []
    for symbol, items in groups.items():
        longs = [p for p in items if p.side == "Buy"]
        shorts = [p for p in items if p.side != "Buy"]
        long_size = sum((p.size for p in longs), _ZERO)
        short_size = sum((p.size for p in shorts), _ZERO)
        long_notional = sum((p.notional for p in longs), _ZERO)
        short_notional = sum((p.notional for p in shorts), _ZERO)
        mark = items[0].mark_price
        upnls = [p.unrealized_pnl for p in items if p.unrealized_pnl is not None]
        out.append(
            SymbolExposure(
                symbol=symbol,
                bots=tuple(sorted({p.bot_id for p in items})),
                long_size=long_size,
                short_size=short_size,
                net_size=long_size - short_size,
                mark_price=mark,
                long_notional=long_notional,
                short_notional=short_notional,
                gross_notional=long_notional + short_notional,
                net_notional=long_notional - short_notional,
                notional_basis="mark" if mark is not None else "entry",
                unrealized_pnl=sum(upnls, _ZERO) if mark is not None else None,
            )
        )
    out.sort(key=lambda e: (-e.gross_notional, e.symbol))
    return tuple(out)


def resolve_bot(name: str | None) -> str | None:
    """Telegram's bot argument: an alias (alpha/bravo/charlie) or a bot id, lower-cased."""
    if name is None:
        return None
    lowered = name.strip().lower()
    return ALIASES.get(lowered, lowered) or None


_LEGACY_SQL: Final = """SELECT count(*) AS total,
       count(*) FILTER (WHERE net_pnl > 0) AS wins,
       count(*) FILTER (WHERE net_pnl <= 0) AS losses,
       ROUND(coalesce(sum(net_pnl), 0), 2) AS total_pnl,
       ROUND(coalesce(avg(net_pnl), 0), 2) AS avg_pnl,
       ROUND(coalesce(max(net_pnl), 0), 2) AS max_win,
       ROUND(coalesce(min(net_pnl), 0), 2) AS max_loss,
       ROUND(coalesce(sum(total_commission), 0), 2) AS fees
  FROM trading.completed_trades
 WHERE exit_time >= :start AND bot_id = ANY(:bots)"""
# bot_id = ANY(every bot) is the same set as no filter (completed_trades.bot_id references
# bots) but lets idx_completed_trades_bot serve the window: there is no index on exit_time.

_LEGACY_OPEN_SQL: Final = """SELECT count(*) FROM trading.fills b
 WHERE b.side = 'Buy' AND b.exec_time >= :start
   AND (CAST(:bot AS text) IS NULL OR b.bot_id = :bot)
   AND NOT EXISTS (SELECT 1 FROM trading.fills s
                    WHERE s.bot_id = b.bot_id AND s.symbol = b.symbol
                      AND s.side = 'Sell' AND s.exec_time > b.exec_time)"""

_LEGACY_FILLS_SQL: Final = """SELECT count(*) FROM trading.fills
 WHERE exec_time >= :start AND (CAST(:bot AS text) IS NULL OR bot_id = :bot)"""


def legacy_summary(
    engine: Engine, *, bot: str | None = None, days: int = 7, now: datetime | None = None
) -> LegacySummary:
    """Today's ``/analytics [bot] [days]`` figures (PLATFORM.md §5), for comparison.

    ``bot`` may be an alias; ``days`` is capped at 90 as the Telegram bot does. The window
    is ``exit_time >= now - days`` in UTC (the bot used its container's naive clock).
    """
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValidationError("days", days, "must be an int >= 1")
    days = min(days, 90)
    bot_id = resolve_bot(bot)
    start = (_aware("now", now) or datetime.now(UTC)) - timedelta(days=days)
    params: dict[str, Any] = {"start": start, "bot": bot_id}
    with _reading(engine) as conn:
        params["bots"] = [bot_id] if bot_id is not None else _registered_bots(conn)
        s = conn.execute(text(_LEGACY_SQL), params).one()
        open_trades = int(conn.execute(text(_LEGACY_OPEN_SQL), params).scalar_one())
        filled = int(conn.execute(text(_LEGACY_FILLS_SQL), params).scalar_one())
        header = None
        if bot_id is not None:
            header = conn.execute(
                text(
                    "SELECT bot_name, bot_type, status, initial_capital AS capital, "
                    "current_equity AS equity, ROUND((current_equity - initial_capital) / "
                    "nullif(initial_capital, 0) * 100, 2) AS return_pct "
                    "FROM trading.bots WHERE bot_id = :bot"
                ),
                params,
            ).first()
        counts = None
        if header is None:
            counts = conn.execute(
                text(
                    "SELECT count(DISTINCT bot_id) AS n, count(*) FILTER (WHERE status = "
                    "'active') AS active, sum(initial_capital) AS capital, "
                    "sum(current_equity) AS equity FROM trading.bots"
                )
            ).one()
    total = int(s.total)
    head: Any = header if header is not None else counts
    zero = Decimal("0.00")
    # The bot computes the win rate in Python floats: reproduced as such (a ratio, not money).
    win_rate = Decimal(str(round(int(s.wins) / total * 100, 2))) if total else zero
    return LegacySummary(
        bot_id=bot_id,
        days=days,
        start=start,
        total_trades=total,
        closed_trades=total,
        wins=int(s.wins),
        losses=int(s.losses),
        total_pnl=s.total_pnl if total else zero,
        avg_pnl=s.avg_pnl if total else zero,
        max_win=s.max_win if total else zero,
        max_loss=s.max_loss if total else zero,
        fees=s.fees if total else zero,
        win_rate=win_rate,
        open_trades=open_trades,
        filled_trades=filled,
        bot_name=header.bot_name if header is not None else None,
        bot_type=header.bot_type if header is not None else None,
        status=header.status if header is not None else None,
        capital=head.capital,
        equity=head.equity,
        return_pct=header.return_pct if header is not None else None,
        bots_total=int(counts.n) if counts is not None else None,
        bots_active=int(counts.active) if counts is not None else None,
    )
