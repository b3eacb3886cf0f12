"""``AlphaDBClient``: a drop-in for the platform's ``shared/alpha_db_client.py``, built on the
write path.

Integration code switches by changing one import::

    from alpha_models.client import AlphaDBClient, create_client_order_id, parse_client_order_id

The class has the original's name, constructor, method names, parameter names, order and
defaults (PLATFORM.md section 4). Every deliberate difference is listed in the docstring of
:class:`AlphaDBClient`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias, cast
from urllib.parse import quote

import redis
from redis.connection import ConnectionPool, parse_url
from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql import Executable

from alpha_models.cache import version_from_time
from alpha_models.db import make_engine, translate_error
from alpha_models.errors import (
    AlphaModelsError,
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    ValidationError,
)
from alpha_models.inputs import (
    FillInput,
    NumberLike,
    Side,
    TimeLike,
    to_decimal8,
    to_utc,
    validate_bot_id,
    validate_symbol,
)
from alpha_models.keys import content_exec_id
from alpha_models.order_link import make_order_link_id, parse_order_link_id
from alpha_models.pnl import PnlFill, rebuild
from alpha_models.settings import Settings
from alpha_models.trading import Fill, PositionEntry
from alpha_models.writepath import Outcome, WritePath, WriteResult

__all__ = [
    "SAME_EXIT_WINDOW",
    "SOURCE_ADAPTER",
    "SOURCE_TRACKER",
    "SPOOLED_FILL_ID",
    "AlphaDBClient",
    "create_client_order_id",
    "parse_client_order_id",
]

log = logging.getLogger(__name__)

SOURCE_ADAPTER: Final = "adapter"
"""``fills.source`` of the fills :meth:`AlphaDBClient.write_fill` records."""
SOURCE_TRACKER: Final = "tracker"
"""``fills.source`` of the fills the lot methods synthesise (``create_position_entry``,
``close_position_fifo``)."""
SPOOLED_FILL_ID: Final = 0
"""What :meth:`AlphaDBClient.write_fill` returns when the fill went to the local spool."""
SAME_EXIT_WINDOW: Final = timedelta(seconds=60)
"""How far apart the caller's own exit fill and ``close_position_fifo``'s ``exit_time`` may be
for the exit to be recognised as already recorded."""

_RECENT_MAX: Final = 256
_TEXT_MAX: Final = 50  # close_reason, entry_reason, exit_reason: varchar(50)
_ORDER_ID_MAX: Final = 100
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_Q8: Final = Decimal("1E-8")
_Q6: Final = Decimal("1E-6")
_HUNDRED: Final = Decimal(100)
_ZERO: Final = Decimal(0)
_PCT_LIMIT: Final = Decimal(10000)  # completed_trades.pnl_pct is numeric(10,6)
# Products and quotients of numeric(20,8) values: 50 digits is exact for products and leaves
# ample guard digits for the quotients before they are quantized.
_CTX: Final = Context(prec=50, rounding=ROUND_HALF_UP)

_Sign: TypeAlias = Literal["positive", "nonnegative", "any"]
_parse_redis_url = cast(Callable[[str], dict[str, Any]], parse_url)

# ------------------------------------------------------------------------------ SQL

_UPSERT_TRADE: Final = text(
    """INSERT INTO trading.completed_trades AS t (
        trade_id, bot_id, symbol, entry_order_id, entry_client_order_id, entry_side,
        entry_price, entry_qty, entry_time, entry_reason, entry_commission, exit_order_id,
        exit_client_order_id, exit_side, exit_price, exit_qty, exit_time, exit_reason,
        exit_commission, gross_pnl, net_pnl, pnl_pct, total_commission,
        holding_duration_seconds, source)
    VALUES (
        :trade_id, :bot_id, :symbol, :entry_order_id, NULL, :entry_side,
        :entry_price, :entry_qty, :entry_time, :entry_reason, :entry_commission,
        :exit_order_id, NULL, :exit_side, :exit_price, :exit_qty, :exit_time, :exit_reason,
        :exit_commission, :gross_pnl, :net_pnl, :pnl_pct, :total_commission,
        :holding_duration_seconds, 'bybit_api')
    ON CONFLICT (trade_id) DO UPDATE SET
        exit_price = EXCLUDED.exit_price,
        exit_qty = EXCLUDED.exit_qty,
        exit_time = EXCLUDED.exit_time,
        gross_pnl = EXCLUDED.gross_pnl,
        net_pnl = EXCLUDED.net_pnl,
        pnl_pct = EXCLUDED.pnl_pct,
        updated_at = now()
    RETURNING id"""
)

_LOT_COLUMNS: Final = (
    "id, entry_id, side, entry_price, original_qty, remaining_qty, "
    "coalesce(entry_commission, 0) AS entry_commission, created_at"
)

_OPEN_LOTS: Final = text(
    f"SELECT {_LOT_COLUMNS} FROM trading.position_entries "  # noqa: S608 (constants)
    "WHERE bot_id = :b AND symbol = :s AND status <> 'closed' AND remaining_qty > 0 "
    "ORDER BY entry_time, id"
)

# Lots a fill updated: the trigger sets updated_at = CURRENT_TIMESTAMP, which is the start of
# the fill's transaction, exactly like fills.created_at (its column default).
_TOUCHED_LOTS: Final = text(
    f"SELECT {_LOT_COLUMNS} FROM trading.position_entries "  # noqa: S608 (constants)
    "WHERE bot_id = :b AND symbol = :s AND updated_at = :at AND side <> :side "
    "AND entry_fill_id IS DISTINCT FROM :fid ORDER BY entry_time, id"
)

_OWN_LOT_QTY: Final = text(
    "SELECT coalesce(sum(original_qty), 0) FROM trading.position_entries WHERE entry_fill_id = :fid"
)

_FILL_COLUMNS: Final = (
    "id, exec_id, side, exec_price, exec_qty, exec_time, commission, created_at, source, "
    "order_id, client_order_id, close_reason"
)

_LATEST_FILL: Final = text(
    f"SELECT {_FILL_COLUMNS} FROM trading.fills WHERE bot_id = :b AND symbol = :s "  # noqa: S608
    "ORDER BY id DESC LIMIT 1"
)

_FILL_BY_ID: Final = text(
    f"SELECT {_FILL_COLUMNS} FROM trading.fills "  # noqa: S608 (constants)
    "WHERE id = :fid AND bot_id = :b AND symbol = :s"
)

_PAIR_FILLS: Final = text(
    f"SELECT {_FILL_COLUMNS} FROM trading.fills WHERE bot_id = :b AND symbol = :s "  # noqa: S608
    "ORDER BY exec_time, id"
)

_LOT_OF_FILL: Final = text(
    "SELECT entry_id FROM trading.position_entries "
    "WHERE entry_fill_id = :fid AND bot_id = :b AND symbol = :s ORDER BY id LIMIT 1"
)

_MATCH_ENTRY: Final = (
    "SELECT f.exec_id, e.entry_id FROM trading.fills f "
    "LEFT JOIN trading.position_entries e ON e.entry_fill_id = f.id "
    "WHERE f.bot_id = :b AND f.symbol = :s AND f.side = 'Buy' AND f.exec_price = :p "
    "AND f.exec_qty = :q AND f.exec_time = :t{order} ORDER BY f.id, e.id LIMIT 1"
)
_MATCH_ENTRY_ANY_ORDER: Final = text(_MATCH_ENTRY.format(order=""))
_MATCH_ENTRY_SAME_ORDER: Final = text(_MATCH_ENTRY.format(order=" AND f.order_id = :oid"))

_SUMMARY: Final = text(
    """SELECT cp.bot_id, cp.symbol, cp.total_qty, cp.avg_entry_price, cp.num_entries,
        cp.first_entry_time, cp.last_entry_time, cp.total_entry_commission,
        (SELECT max(e.side) FROM trading.position_entries e
          WHERE e.bot_id = cp.bot_id AND e.symbol = cp.symbol
            AND e.status <> 'closed' AND e.remaining_qty > 0) AS side
    FROM trading.current_positions cp WHERE cp.bot_id = :b AND cp.symbol = :s"""
)

_HEARTBEAT: Final = text("UPDATE trading.bots SET last_heartbeat = :now WHERE bot_id = :b")
_EQUITY: Final = text(
    "UPDATE trading.bots SET current_equity = :equity, updated_at = :now WHERE bot_id = :b"
)

_DAILY_CASH_FLOW: Final = text(
    """SELECT coalesce(sum(CASE WHEN side = 'Sell' THEN exec_price * exec_qty ELSE 0 END), 0)
            - coalesce(sum(CASE WHEN side = 'Buy' THEN exec_price * exec_qty ELSE 0 END), 0)
            - coalesce(sum(commission), 0)
    FROM trading.fills
    WHERE bot_id = :b AND exec_time >= now() - CAST(:days AS double precision) * interval '1 day'"""
)

_COUNT_TODAY: Final = text(
    "SELECT count(*) FROM trading.fills WHERE bot_id = :b "
    "AND exec_time >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
)

# ------------------------------------------------------------------------------ helpers


def _as_utc(value: Any) -> Any:
    """A naive ``datetime`` is UTC (what the original's readers assume); others unchanged."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _time(field: str, value: Any) -> datetime:
    return to_utc(field, _as_utc(value))


def _decimal(field: str, value: Any, sign: _Sign = "any") -> Decimal:
    """``float`` -> ``Decimal(str(x))`` (``0.1`` stays 0.1), then validated and quantized."""
    if isinstance(value, float):
        value = Decimal(str(value))
    return to_decimal8(field, value, sign)


def _side(field: str, value: Any) -> Side:
    if isinstance(value, str) and value in (Side.BUY.value, Side.SELL.value):
        return Side(value)
    raise ValidationError(field, value, "must be exactly 'Buy' or 'Sell'")


def _optional_text(field: str, value: Any, max_len: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, value, f"expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise ValidationError(field, value, f"longer than {max_len} characters")
    if value and not value.isprintable():
        raise ValidationError(field, value, "contains control or non-printable characters")
    return str.__str__(value)


def _finite_float(field: str, value: Any, *, nonnegative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValidationError(field, value, f"expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValidationError(field, value, "not finite")
    if nonnegative and number < 0:
        raise ValidationError(field, value, "must not be negative (sizes are absolute)")
    return number


def _optional_float(value: str | None) -> float | None:
    if value is None or value in ("", "None"):
        return None
    return float(value)


def _utc_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as a plain dict, every aware datetime converted to UTC."""
    return {
        key: value.astimezone(UTC)
        if isinstance(value, datetime) and value.tzinfo is not None
        else value
        for key, value in row.items()
    }


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _synthetic_order_id(bot_id: str, symbol: str, moment: datetime) -> str:
    """A deterministic order id for a fill the caller gave no order id for (<= 98 chars)."""
    return f"synthetic:{bot_id}:{symbol}:{version_from_time(moment)}"


@dataclass(frozen=True, slots=True)
class _Lot:
    """An open lot as read before a close (``trading.position_entries``)."""

    entry_id: str
    side: str
    entry_price: Decimal
    original_qty: Decimal
    remaining_qty: Decimal
    entry_commission: Decimal

    @classmethod
    def of(cls, row: Row[Any]) -> _Lot:
        return cls(
            entry_id=row.entry_id,
            side=row.side,
            entry_price=row.entry_price,
            original_qty=row.original_qty,
            remaining_qty=row.remaining_qty,
            entry_commission=row.entry_commission,
        )


_Piece: TypeAlias = tuple[_Lot, Decimal]


def _fifo(lots: Sequence[_Lot], qty: Decimal) -> list[_Piece]:
    """The pieces ``qty`` takes from ``lots`` (oldest first), as ``trading.record_fill`` does."""
    pieces: list[_Piece] = []
    left = qty
    for lot in lots:
        if left <= 0:
            break
        take = min(lot.remaining_qty, left)
        pieces.append((lot, take))
        left -= take
    return pieces


def _report(
    entry_id: str,
    entry_price: Decimal,
    exit_price: Decimal,
    qty: Decimal,
    gross: Decimal,
    net: Decimal,
) -> dict[str, Any]:
    """One consumed lot piece in the original's result shape (floats, like the original)."""
    cost = _CTX.multiply(entry_price, qty)
    pct = (
        _CTX.multiply(_CTX.divide(net, cost), _HUNDRED).quantize(_Q6, ROUND_HALF_UP)
        if cost > 0
        else _ZERO
    )
    return {
        "entry_id": entry_id,
        "trade_id": None,
        "entry_price": float(entry_price),
        "exit_price": float(exit_price),
        "quantity": float(qty),
        "gross_pnl": float(gross),
        "net_pnl": float(net),
        "pnl_pct": float(pct),
    }


def _piece_report(
    lot: _Lot, qty: Decimal, exit_price: Decimal, exit_fee: Decimal, exit_qty: Decimal
) -> dict[str, Any]:
    """Long formula for a ``Buy`` lot, short formula for a ``Sell`` lot; fees pro-rated (entry
    fee on the lot's original qty, exit fee on the exit fill's qty), 8 dp."""
    move = exit_price - lot.entry_price if lot.side == Side.BUY else lot.entry_price - exit_price
    gross = _CTX.multiply(move, qty).quantize(_Q8, ROUND_HALF_UP)
    entry_fee = (
        _CTX.divide(_CTX.multiply(lot.entry_commission, qty), lot.original_qty).quantize(
            _Q8, ROUND_HALF_UP
        )
        if lot.original_qty
        else _ZERO
    )
    exit_part = (
        _CTX.divide(_CTX.multiply(exit_fee, qty), exit_qty).quantize(_Q8, ROUND_HALF_UP)
        if exit_qty
        else _ZERO
    )
    net = gross - entry_fee - exit_part
    return _report(lot.entry_id, lot.entry_price, exit_price, qty, gross, net)


def _consumed_by(conn: Connection, bot_id: str, symbol: str, fill: Row[Any]) -> list[_Piece] | None:
    """The lot pieces ``fill`` consumed, read from the lots its transaction updated.

    ``[]`` if it consumed nothing (it opened or added to a position); ``None`` when the lots
    cannot tell (they were rebuilt in that transaction, or changed since): replay instead.
    """
    rows = conn.execute(
        _TOUCHED_LOTS,
        {"b": bot_id, "s": symbol, "at": fill.created_at, "side": fill.side, "fid": fill.id},
    ).all()
    if not rows:
        return []
    if any(row.created_at == fill.created_at for row in rows):
        return None  # lots re-created in the fill's transaction: trading.rebuild_position ran
    lots = [_Lot.of(row) for row in rows]
    own = Decimal(conn.execute(_OWN_LOT_QTY, {"fid": fill.id}).scalar_one())
    total = fill.exec_qty - own
    # FIFO: only the oldest touched lot can have been partly consumed before this fill; every
    # later one was untouched, so this fill took original - remaining from it.
    later = [(lot, lot.original_qty - lot.remaining_qty) for lot in lots[1:]]
    first = total - sum((q for _, q in later), _ZERO)
    pieces = [(lots[0], first), *later]
    if first <= 0 or lots[0].remaining_qty + first > lots[0].original_qty:
        return None
    if any(q <= 0 for _, q in later):
        return None
    return pieces


def _replayed_report(
    conn: Connection, bot_id: str, symbol: str, exec_id: str
) -> list[dict[str, Any]]:
    """What the fill ``exec_id`` closed, by a FIFO replay of the pair's stored fills (lots that
    the write path rebuilt are exactly this replay)."""
    fills = [
        PnlFill(
            fill_id=int(r.id),
            exec_id=r.exec_id,
            bot_id=bot_id,
            symbol=symbol,
            side=r.side,
            price=r.exec_price,
            qty=r.exec_qty,
            fee=r.commission,
            exec_time=r.exec_time,
            order_id=r.order_id,
            client_order_id=r.client_order_id,
            reason=r.close_reason,
        )
        for r in conn.execute(_PAIR_FILLS, {"b": bot_id, "s": symbol})
    ]
    out: list[dict[str, Any]] = []
    for piece in rebuild(fills).realizations:
        if piece.exit_exec_id == exec_id:
            net = piece.net
            out.append(
                _report(
                    piece.entry_exec_id,
                    piece.entry_price,
                    piece.exit_price,
                    piece.qty,
                    piece.gross,
                    net,
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class _Recorded:
    """A fill this client recorded (``fill_id`` 0 = spooled): lets the lot methods find it while
    PostgreSQL is unreachable."""

    fill_id: int
    fill: FillInput


# ------------------------------------------------------------------------------ link ids


def parse_client_order_id(s: str) -> dict[str, str]:
    """``{bot_id, close_reason, timestamp}`` with the original's semantics: part 0 is the bot
    id (``''`` stays ``''``), close_reason is part 1 or ``unknown``, timestamp part 2 or
    ``''``; ``unknown``/``unknown``/``''`` when ``s`` cannot be split. A compact id's reason
    code is mapped to its canonical reason (``tp`` -> ``take_profit``)."""
    try:
        parts = s.split(":")
        close_reason = parts[1] if len(parts) > 1 else "unknown"
        parsed = parse_order_link_id(s)
        if parsed.form == "compact":
            close_reason = parsed.reason
        return {
            "bot_id": parts[0],
            "close_reason": close_reason,
            "timestamp": parts[2] if len(parts) > 2 else "",
        }
    except Exception:
        return {"bot_id": "unknown", "close_reason": "unknown", "timestamp": ""}


def create_client_order_id(bot_id: str, reason: str) -> str:
    """A fresh compact orderLinkId ``bot:code:stamp`` (<= 36 characters, unique per call);
    see :func:`alpha_models.order_link.make_order_link_id`."""
    return make_order_link_id(bot_id, reason)


_parse_link = parse_client_order_id
_create_link = create_client_order_id


# ------------------------------------------------------------------------------ client


class AlphaDBClient:
    """Drop-in for the platform's ``AlphaDBClient``, recording through the write path.

    ``AlphaDBClient(bot_id, redis_db=0)`` as today; the keyword-only extras ``settings``,
    ``engine`` and ``write_path`` exist for tests and for sharing one engine or write path.

    Deliberate differences from the original (PLATFORM.md section 4)
    ------------------------------------------------------------------
    **Construction and connections**

    * Configuration is :class:`~alpha_models.settings.Settings` (``POSTGRES_*``,
      ``REDIS_*``, ``ALPHA_DATABASE_URL``, ``ALPHA_REDIS_URL``, ``ALPHA_SPOOL_DIR``, ...).
      The Redis DB is the ``redis_db`` argument, as today: ``REDIS_DB`` (and a DB number in
      ``ALPHA_REDIS_URL``) is ignored, like the original ignores ``REDIS_DB``.
    * Nothing connects at construction, and construction **does not raise when PostgreSQL or
      Redis is down**: fills are then kept in the durable local spool (``ALPHA_SPOOL_DIR``,
      created at construction) and delivered, exactly once, when PostgreSQL answers again.
      Construction raises only :class:`~alpha_models.errors.ValidationError` for a malformed
      ``bot_id`` / ``redis_db`` and ``ConfigurationError`` for unusable settings.
    * A connection pool instead of one connection held for life: it reconnects after a
      server restart, works behind PgBouncer (transaction pooling), and every call is one
      short transaction; reads end with a rollback, so the session never sits idle in
      transaction.
    * Error messages (raised or logged) never contain a password.

    **Inputs**: floats are converted with ``Decimal(str(x))`` and quantized to 8 dp; naive
    datetimes are UTC (what the original's readers assume). Values the original would have
    stored as garbage or failed on later raise a typed
    :class:`~alpha_models.errors.ValidationError` and nothing is written: a side other than
    exactly ``Buy``/``Sell``; a price or quantity <= 0, NaN or infinite; a symbol not
    ``^[A-Z0-9]{2,20}$``; a reason longer than 50 characters; a time before 2015. An
    ``order_id`` or ``client_order_id`` of ``None`` is stored as ``''`` (the original failed
    on NOT NULL).

    **write_fill** records through :meth:`WritePath.record_fill` with ``exec_id =
    content_exec_id(...)`` and source ``adapter``: the same call twice is stored once (when it
    passes ``exec_time``; ``exec_time=None`` means now, so two such calls are two fills). It
    returns ``fills.id``, or **0 when the fill was spooled** (PostgreSQL down). The write path
    also maintains the bot's FIFO lots (longs and shorts) and ``trading.positions`` in the
    same transaction. Redis is not touched, as in the original (the ``position:`` keys belong
    to :meth:`update_position_redis`).

    **Reads** return plain dicts with ``Decimal`` numbers and aware UTC datetimes, and log
    (with the error, password-free) what they swallow. ``get_recent_fills`` also returns the
    new columns ``exec_id``, ``exec_type`` and ``source``; ties on exec_time go newest id
    first. ``get_open_position_entries`` includes the lot ``side``;
    ``get_current_position_summary`` adds ``side`` to the ``current_positions`` row (the view
    has none, and lots can now be shorts).

    **record_completed_trade**: the original's formulas, computed in Decimal, and its ON
    CONFLICT (trade_id) semantics (exit price/qty/time, gross, net, pnl_pct and updated_at
    change; fees do not), in one engine transaction. Differences: client order ids are
    **left NULL** instead of fabricated; the trade_id seconds come from UTC (the original's
    naive ``.timestamp()`` was off by the UTC offset when TZ != UTC); entry and exit sides
    must be opposite and exit_time after entry_time (ValidationError instead of a CHECK
    failure); database errors are raised as the package's typed errors (a ``unique_trade``
    clash or an unregistered bot is a ``ConstraintViolationError``; PostgreSQL down is a
    ``DatabaseUnavailableError``: completed trades are not spooled). source stays
    ``bybit_api`` (the only CHECK value the original used).

    **Lots are derived from fills.** The write path keeps ``trading.position_entries`` as the
    FIFO of the bot's fills (``trading.record_fill``), so:

    * ``create_position_entry`` writes nothing when the entry is already a fill of this bot:
      the one ``entry_fill_id`` names, or, without it, a ``Buy`` fill with the same symbol,
      price, quantity, time (and order id, when given); it returns that fill's lot
      ``entry_id``. Otherwise it records a synthetic ``Buy`` fill (source ``tracker``,
      ``close_reason`` ``entry``, order id ``entry_order_id`` or
      ``synthetic:<bot>:<symbol>:<µs>``, exec_id from ``content_exec_id``; the same call
      twice is one fill) and returns the lot it opened. New lots' ``entry_id`` is the entry
      fill's ``exec_id`` (``legacy:<md5>``), not ``bot:symbol:<float>`` (which collided);
      existing lots keep theirs. ``entry_fill_id=0`` (a spooled ``write_fill``) is resolved
      by content once the spool is delivered. While PostgreSQL is down, an entry this client
      recorded is recognised from memory; an unknown ``entry_fill_id`` then raises
      ``DatabaseUnavailableError`` (a synthetic fill could double the entry), and without
      ``entry_fill_id`` the synthetic fill is spooled and its future entry_id returned. If
      the entry fill opened no lot (it reduced a short) a warning is logged and its exec_id
      is returned.
    * ``close_position_fifo`` records the exit as one fill through the write path, on the
      side opposite the open lots (``Sell`` for a long, ``Buy`` for a short; source
      ``tracker``, ``close_reason`` = exit_reason, order id ``exit_order_id`` or synthetic).
      The lots are consumed FIFO **in that one transaction** (the original committed per
      lot). The result, in the original's shape, is computed from the open lots read just
      before (entry_time, id order, as the SQL): the long formula for ``Buy`` lots, the
      short formula ``(entry - exit) * q`` for ``Sell`` lots; entry fees pro-rated on the
      lot's original qty, the exit fee on the recorded exit qty; values are floats (as the
      original's float arithmetic), computed exactly in Decimal. ``trade_id`` is ``None``:
      completed trades are derived from fills by the P&L engine (``alpha_models.pnl``),
      not written here. ``[]`` when there is no open lot (nothing written).
      **Excess close_qty is capped** to the open quantity with a warning, never a flip: a
      legacy caller asking to "close" never means to open the other side.
      **An exit already recorded is not recorded twice**: the platform's callers write the
      exit with ``write_fill`` and then call ``close_position_fifo``; with lots derived from
      fills that fill has already consumed the lots. When the bot's newest fill of the
      symbol was not written by the lot methods, has exit_price and lies within
      :data:`SAME_EXIT_WINDOW` of exit_time, and consumed lots, nothing is recorded and the
      result describes what that fill consumed (a retry of the same call is recognised the
      same way). Its qty wins over close_qty (the "qty/2 for dual instances" hack then
      reports the whole exit). Limitation: a second, separate exit at the same price within
      the window, made right after a ``write_fill`` exit without its own ``write_fill``, is
      taken for the first. ``close_position_fifo`` needs the open lots, so it raises
      ``DatabaseUnavailableError`` when PostgreSQL is down (the original raised too).

    **Redis** (``position:{bot}:{symbol}`` string and ``:details`` hash, today's format, in
    DB ``redis_db``): written in **one MULTI/EXEC round trip**, and the hash is replaced, not
    merged, so a stale ``avg_price`` no longer survives an update without one. The hash also
    gets ``updated_at`` (ISO-8601 with offset) and ``version`` (µs since the epoch); today's
    readers ignore them. ``side=None`` is stored as the text ``None`` as before, and
    :meth:`get_position_redis` returns it as ``None`` (the original returned the text).
    A negative or non-finite size, a non-finite price, or a side other than
    ``Buy``/``Sell``/``None`` raises ValidationError. Redis errors are logged and swallowed,
    as before.

    **Bots**: ``update_heartbeat`` and ``update_equity`` store aware UTC times (``now()`` in
    UTC); a NaN/infinite equity raises ValidationError; an unregistered bot is logged.

    **get_daily_pnl(days)** keeps the original's semantics, Σ Sell notional − Σ Buy notional −
    Σ commission over the bot's fills since ``now() - days``: **cash flow, not P&L** (for
    realized P&L use ``alpha_models.pnl`` over the fills). Funding now lives in
    ``trading.funding_settlements`` and is not part of it. ``days`` must be a finite number
    >= 0. **get_trade_count_today** counts the bot's fills since 00:00 **UTC** (the original
    used the session time zone's CURRENT_DATE).

    **Helpers**: :func:`create_client_order_id` returns the compact ``bot:code:stamp`` of
    :func:`~alpha_models.order_link.make_order_link_id` (<= 36 characters, which Bybit
    accepts, unique per call) instead of ``bot:reason:<int seconds>`` (41+ characters,
    colliding within a second); bot ids longer than 15 characters are refused.
    :func:`parse_client_order_id` keeps the original's split semantics and maps the code of
    a compact id back to its canonical reason (``tp`` -> ``take_profit``).

    Thread-safe (the engine pool and the write path are); one client per bot and process is
    the intended use.
    """

    # The original exposed these as helpers too; kept reachable from the class.
    parse_client_order_id = staticmethod(_parse_link)
    create_client_order_id = staticmethod(_create_link)

    def __init__(
        self,
        bot_id: str,
        redis_db: int = 0,
        *,
        settings: Settings | None = None,
        engine: Engine | None = None,
        write_path: WritePath | None = None,
    ) -> None:
        self.bot_id: str = validate_bot_id(bot_id, known_bots=(bot_id,))
        if isinstance(redis_db, bool) or not isinstance(redis_db, int) or redis_db < 0:
            raise ValidationError("redis_db", redis_db, "must be an int >= 0")
        self.redis_db: int = redis_db
        if engine is None and write_path is not None:
            engine = write_path.engine
        self.settings: Settings = (
            settings
            or (write_path.settings if write_path is not None else None)
            or getattr(engine, "info_settings", None)
            or Settings()
        )
        self._owns_engine = engine is None
        self.engine: Engine = engine if engine is not None else make_engine(self.settings)
        self._owns_write_path = write_path is None
        self.write_path: WritePath = (
            write_path
            if write_path is not None
            else WritePath(self.engine, settings=self.settings, cache=None)
        )
        self.redis, self._redis_secrets = self._make_redis(redis_db)
        self._known_bots = frozenset({self.bot_id})
        self._recent: deque[_Recorded] = deque(maxlen=_RECENT_MAX)
        self._lock = threading.Lock()
        self._closed = False

    def _make_redis(self, db: int) -> tuple[redis.Redis, list[str]]:
        try:
            options = _parse_redis_url(self.settings.redis_connection_url())
        except ValueError:  # the text may hold a password: never echo it
            raise ConfigurationError("the Redis URL is not valid") from None
        options["db"] = db  # the argument wins, like the original (REDIS_DB ignored)
        password = options.get("password")
        secrets = [str(password), quote(str(password), safe="")] if password else []
        timeout = float(self.settings.connect_timeout_s)
        pool = ConnectionPool(
            **options,
            decode_responses=True,
            socket_connect_timeout=timeout,
            socket_timeout=max(timeout, 5.0),
        )
        return redis.Redis(connection_pool=pool), secrets

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Deliver what is spooled (best effort), then release connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_write_path:
            self._flush_spool()
            self.write_path.spool.close()
        try:
            self.redis.close()
        except redis.RedisError:  # pragma: no cover - closing never talks to the server
            pass
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> AlphaDBClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- errors ----------------------------------------------------------------------------
    def _scrub(self, message: str) -> str:
        message = self.settings.scrub(message)
        for secret in sorted(self._redis_secrets, key=len, reverse=True):
            message = message.replace(secret, "***")
        return message

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, DBAPIError):
            exc = translate_error(exc, self.settings)
        return self._scrub(f"{type(exc).__name__}: {_first_line(exc)}")

    def _raise_db(self, exc: SQLAlchemyError) -> AlphaModelsError:
        """The package error for a database failure (to ``raise ... from None``)."""
        if isinstance(exc, DBAPIError):
            err = translate_error(exc, self.settings)
            if isinstance(err, AlphaModelsError):
                return err
        return DatabaseError(self._scrub(_first_line(exc)))

    # -- plumbing --------------------------------------------------------------------------
    def _read(self, operation: str, stmt: Executable, params: Mapping[str, Any]) -> list[Any]:
        """Rows of ``stmt`` (``[]`` on error, logged); the transaction is rolled back."""
        try:
            with self.engine.connect() as conn:
                rows = list(conn.execute(stmt, dict(params)).mappings().all())
                conn.rollback()
            return rows
        except SQLAlchemyError as exc:
            log.error("%s failed: %s", operation, self._describe(exc))
            return []

    def _scalar(self, operation: str, stmt: Executable, params: Mapping[str, Any]) -> Any:
        try:
            with self.engine.connect() as conn:
                value = conn.execute(stmt, dict(params)).scalar()
                conn.rollback()
            return value
        except SQLAlchemyError as exc:
            log.error("%s failed: %s", operation, self._describe(exc))
            return None

    def _update_bot(self, operation: str, stmt: Executable, params: Mapping[str, Any]) -> None:
        try:
            with self.engine.begin() as conn:
                count = conn.execute(stmt, {"b": self.bot_id, **params}).rowcount
        except SQLAlchemyError as exc:
            log.error("%s failed: %s", operation, self._describe(exc))
            return
        if not count:
            log.warning("%s: bot %r is not registered in trading.bots", operation, self.bot_id)

    def _flush_spool(self) -> None:
        """Deliver spooled fills first, so the lot methods see every fill this bot reported."""
        try:
            if len(self.write_path.spool):
                self.write_path.flush()
        except (AlphaModelsError, SQLAlchemyError, OSError) as exc:
            log.error("delivering the spool failed: %s", self._describe(exc))

    def _fill(
        self,
        *,
        symbol: str,
        side: Side | str,
        price: NumberLike,
        qty: NumberLike,
        when: TimeLike,
        order_id: str | None,
        client_order_id: str | None,
        close_reason: str | None,
        commission: NumberLike,
        source: str,
    ) -> FillInput:
        """A validated fill keyed by ``content_exec_id`` (the report has no execution id)."""
        values: dict[str, Any] = {
            "bot_id": self.bot_id,
            "symbol": symbol,
            "side": side,
            "exec_price": _decimal("exec_price", price),
            "exec_qty": _decimal("exec_qty", qty),
            "exec_time": _as_utc(when),
            "order_id": "" if order_id is None else order_id,
            "client_order_id": "" if client_order_id is None else client_order_id,
            "close_reason": close_reason,
            "commission": _decimal("commission", commission),
            "source": source,
            "known_bots": self._known_bots,
        }
        draft = FillInput(exec_id="pending", **values)
        exec_id = content_exec_id(
            bot_id=draft.bot_id,
            symbol=draft.symbol,
            order_id=draft.order_id,
            client_order_id=draft.client_order_id,
            side=str(draft.side),
            exec_price=draft.exec_price,
            exec_qty=draft.exec_qty,
            exec_time=draft.exec_time,
            commission=draft.commission,
        )
        return FillInput(exec_id=exec_id, **values)

    def _record(self, fill: FillInput) -> WriteResult:
        result = self.write_path.record_fill(fill)
        fill_id = SPOOLED_FILL_ID if result.outcome is Outcome.SPOOLED else int(result.row_id or 0)
        with self._lock:
            self._recent.append(_Recorded(fill_id, fill))
        return result

    # -- fills -----------------------------------------------------------------------------
    def write_fill(
        self,
        symbol: str,
        side: str,
        exec_price: NumberLike,
        exec_qty: NumberLike,
        order_id: str,
        client_order_id: str,
        close_reason: str | None,
        commission: NumberLike,
        exec_time: datetime | None = None,
    ) -> int:
        """Record one fill of this bot; returns ``fills.id``, or 0 when it was spooled.

        Idempotent for the same arguments (with an explicit ``exec_time``). Raises
        ValidationError (nothing written) for invalid input, and the package's typed errors for
        a database refusal; never for PostgreSQL being unreachable.
        """
        fill = self._fill(
            symbol=symbol,
            side=side,
            price=exec_price,
            qty=exec_qty,
            when=datetime.now(UTC) if exec_time is None else exec_time,
            order_id=order_id,
            client_order_id=client_order_id,
            close_reason=close_reason,
            commission=commission,
            source=SOURCE_ADAPTER,
        )
        result = self._record(fill)
        if result.outcome is Outcome.SPOOLED:
            return SPOOLED_FILL_ID
        return int(result.row_id or 0)

    def get_recent_fills(self, symbol: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The bot's fills, newest exec_time first (``[]`` on a database error, logged)."""
        table = Fill.__table__
        stmt = select(table).where(table.c.bot_id == self.bot_id)
        if symbol is not None:
            stmt = stmt.where(table.c.symbol == symbol)
        stmt = stmt.order_by(table.c.exec_time.desc(), table.c.id.desc()).limit(int(limit))
        return [_utc_values(row) for row in self._read("get_recent_fills", stmt, {})]

    # -- completed trades ------------------------------------------------------------------
    def record_completed_trade(
        self,
        symbol: str,
        entry_side: str,
        entry_price: NumberLike,
        entry_qty: NumberLike,
        entry_time: datetime,
        entry_reason: str | None,
        exit_side: str,
        exit_price: NumberLike,
        exit_qty: NumberLike,
        exit_time: datetime,
        exit_reason: str | None,
        entry_order_id: str | None = None,
        exit_order_id: str | None = None,
        entry_commission: NumberLike = 0.0,
        exit_commission: NumberLike = 0.0,
    ) -> int:
        """Upsert one round trip into ``trading.completed_trades``; returns its id."""
        sym = validate_symbol(symbol)
        e_side = _side("entry_side", entry_side)
        x_side = _side("exit_side", exit_side)
        if e_side is x_side:
            raise ValidationError("exit_side", exit_side, "must be the opposite of entry_side")
        e_price = _decimal("entry_price", entry_price, "positive")
        e_qty = _decimal("entry_qty", entry_qty, "positive")
        x_price = _decimal("exit_price", exit_price, "positive")
        x_qty = _decimal("exit_qty", exit_qty, "positive")
        e_fee = _decimal("entry_commission", entry_commission)
        x_fee = _decimal("exit_commission", exit_commission)
        e_time = _time("entry_time", entry_time)
        x_time = _time("exit_time", exit_time)
        if x_time <= e_time:
            raise ValidationError("exit_time", exit_time, "must be after entry_time")
        move = x_price - e_price if e_side is Side.BUY else e_price - x_price
        gross = _CTX.multiply(move, x_qty).quantize(_Q8, ROUND_HALF_UP)
        net = gross - e_fee - x_fee
        cost = _CTX.multiply(e_price, e_qty)
        pnl_pct = (
            _CTX.multiply(_CTX.divide(net, cost), _HUNDRED).quantize(_Q6, ROUND_HALF_UP)
            if cost > 0
            else _ZERO
        )
        if abs(pnl_pct) >= _PCT_LIMIT:
            raise ValidationError("exit_price", exit_price, "pnl_pct does not fit numeric(10,6)")
        params = {
            "trade_id": f"{self.bot_id}:{sym}:{int(e_time.timestamp())}:{int(x_time.timestamp())}",
            "bot_id": self.bot_id,
            "symbol": sym,
            "entry_order_id": _optional_text("entry_order_id", entry_order_id, _ORDER_ID_MAX),
            "entry_side": str(e_side),
            "entry_price": e_price,
            "entry_qty": e_qty,
            "entry_time": e_time,
            "entry_reason": _optional_text("entry_reason", entry_reason, _TEXT_MAX),
            "entry_commission": e_fee,
            "exit_order_id": _optional_text("exit_order_id", exit_order_id, _ORDER_ID_MAX),
            "exit_side": str(x_side),
            "exit_price": x_price,
            "exit_qty": x_qty,
            "exit_time": x_time,
            "exit_reason": _optional_text("exit_reason", exit_reason, _TEXT_MAX),
            "exit_commission": x_fee,
            "gross_pnl": gross,
            "net_pnl": net,
            "pnl_pct": pnl_pct,
            "total_commission": e_fee + x_fee,
            "holding_duration_seconds": int((x_time - e_time).total_seconds()),
        }
        try:
            with self.engine.begin() as conn:
                trade_pk = conn.execute(_UPSERT_TRADE, params).scalar_one()
        except SQLAlchemyError as exc:
            raise self._raise_db(exc) from None
        return int(trade_pk)

    # -- lots ------------------------------------------------------------------------------
    def create_position_entry(
        self,
        symbol: str,
        entry_price: NumberLike,
        quantity: NumberLike,
        entry_time: datetime,
        entry_order_id: str | None = None,
        entry_fill_id: int | None = None,
        commission: NumberLike = 0.0,
    ) -> str:
        """The ``entry_id`` of the lot of this entry; records a ``Buy`` fill only when the
        entry is not already a fill of this bot (see the class docstring)."""
        sym = validate_symbol(symbol)
        when = _time("entry_time", entry_time)
        if entry_fill_id is not None and (
            isinstance(entry_fill_id, bool) or not isinstance(entry_fill_id, int)
        ):
            raise ValidationError("entry_fill_id", entry_fill_id, "must be an int or None")
        fill = self._fill(
            symbol=sym,
            side=Side.BUY,
            price=entry_price,
            qty=quantity,
            when=when,
            order_id=(
                entry_order_id
                if entry_order_id is not None
                else _synthetic_order_id(self.bot_id, sym, when)
            ),
            client_order_id="",
            close_reason="entry",
            commission=commission,
            source=SOURCE_TRACKER,
        )
        match_order = entry_order_id is not None
        self._flush_spool()
        try:
            found = self._find_entry(fill, entry_fill_id, match_order)
        except DatabaseUnavailableError as exc:
            found = self._find_entry_in_memory(fill, entry_fill_id, match_order)
            if found is None and entry_fill_id is not None:
                raise DatabaseUnavailableError(
                    f"create_position_entry cannot check entry_fill_id={entry_fill_id} while "
                    f"PostgreSQL is unavailable (nothing written): {exc}"
                ) from None
        if found is not None:
            return found
        result = self._record(fill)
        if result.outcome is Outcome.SPOOLED:
            return fill.exec_id  # the entry_id its lot gets when the spool is delivered
        try:
            with self.engine.connect() as conn:
                entry_id = conn.execute(
                    _LOT_OF_FILL, {"fid": result.row_id, "b": self.bot_id, "s": sym}
                ).scalar()
                conn.rollback()
        except SQLAlchemyError as exc:
            log.error("create_position_entry: reading the lot failed: %s", self._describe(exc))
            return fill.exec_id
        if entry_id is None:
            log.warning(
                "create_position_entry: the Buy fill %s opened no lot (it reduced a short "
                "position of %s %s)",
                result.row_id,
                self.bot_id,
                sym,
            )
            return fill.exec_id
        return str(entry_id)

    def _find_entry(
        self, fill: FillInput, entry_fill_id: int | None, match_order: bool
    ) -> str | None:
        """The entry_id (or, if it opened no lot, the exec_id) of the fill that already is this
        entry, or None. Raises DatabaseUnavailableError when PostgreSQL is down."""
        pair = {"b": self.bot_id, "s": fill.symbol}
        try:
            with self.engine.connect() as conn:
                found: str | None = None
                if entry_fill_id is not None:
                    entry_id = conn.execute(_LOT_OF_FILL, {"fid": entry_fill_id, **pair}).scalar()
                    if entry_id is not None:
                        found = str(entry_id)
                    else:
                        row = conn.execute(_FILL_BY_ID, {"fid": entry_fill_id, **pair}).first()
                        if row is not None:
                            log.warning(
                                "create_position_entry: fill %s opened no lot (a %s that "
                                "reduced an opposite position); nothing written",
                                entry_fill_id,
                                row.side,
                            )
                            found = str(row.exec_id)
                if found is None:
                    params = {
                        **pair,
                        "p": fill.exec_price,
                        "q": fill.exec_qty,
                        "t": fill.exec_time,
                        "oid": fill.order_id,
                    }
                    stmt = _MATCH_ENTRY_SAME_ORDER if match_order else _MATCH_ENTRY_ANY_ORDER
                    row = conn.execute(stmt, params).first()
                    if row is not None:
                        if row.entry_id is None:
                            log.warning(
                                "create_position_entry: the matching Buy fill opened no lot "
                                "(it reduced a short); nothing written"
                            )
                        found = str(row.entry_id or row.exec_id)
                conn.rollback()
        except SQLAlchemyError as exc:
            raise self._raise_db(exc) from None
        return found

    def _find_entry_in_memory(
        self, fill: FillInput, entry_fill_id: int | None, match_order: bool
    ) -> str | None:
        with self._lock:
            recent = list(self._recent)
        for rec in reversed(recent):
            other = rec.fill
            if other.symbol != fill.symbol:
                continue
            if entry_fill_id is not None and entry_fill_id > 0 and rec.fill_id == entry_fill_id:
                return other.exec_id
            if (
                entry_fill_id == SPOOLED_FILL_ID
                and rec.fill_id == SPOOLED_FILL_ID
                and other.side is Side.BUY
            ):
                return other.exec_id
            if (
                other.side is Side.BUY
                and other.exec_price == fill.exec_price
                and other.exec_qty == fill.exec_qty
                and other.exec_time == fill.exec_time
                and (not match_order or other.order_id == fill.order_id)
            ):
                return other.exec_id
        return None

    def close_position_fifo(
        self,
        symbol: str,
        exit_price: NumberLike,
        close_qty: NumberLike,
        exit_time: datetime,
        exit_reason: str | None,
        exit_order_id: str | None = None,
        exit_commission: NumberLike = 0.0,
    ) -> list[dict[str, Any]]:
        """Record the exit of the bot's open lots of ``symbol`` (FIFO, one transaction) and
        return what it closed, one dict per lot piece (see the class docstring)."""
        sym = validate_symbol(symbol)
        when = _time("exit_time", exit_time)
        order_id = (
            exit_order_id
            if exit_order_id is not None
            else _synthetic_order_id(self.bot_id, sym, when)
        )
        # Validates every argument before anything is read or written.
        draft = self._fill(
            symbol=sym,
            side=Side.SELL,
            price=exit_price,
            qty=close_qty,
            when=when,
            order_id=order_id,
            client_order_id="",
            close_reason=exit_reason,
            commission=exit_commission,
            source=SOURCE_TRACKER,
        )
        pair = {"b": self.bot_id, "s": sym}
        self._flush_spool()
        try:
            with self.engine.connect() as conn:
                latest = conn.execute(_LATEST_FILL, pair).first()
                already = self._already_recorded(conn, latest, draft)
                lots = (
                    []
                    if already is not None
                    else [_Lot.of(r) for r in conn.execute(_OPEN_LOTS, pair)]
                )
                conn.rollback()
        except SQLAlchemyError as exc:
            raise self._raise_db(exc) from None
        if already is not None:
            return already
        if not lots:
            return []
        exit_side = Side.SELL if lots[0].side == Side.BUY else Side.BUY
        open_qty = sum((lot.remaining_qty for lot in lots), _ZERO)
        qty = draft.exec_qty
        if qty > open_qty:
            log.warning(
                "close_position_fifo: close_qty %s exceeds the open %s %s of %s %s; "
                "recording an exit of %s (no flip)",
                qty,
                "long" if lots[0].side == Side.BUY else "short",
                open_qty,
                self.bot_id,
                sym,
                open_qty,
            )
            qty = open_qty
        fill = self._fill(
            symbol=sym,
            side=exit_side,
            price=draft.exec_price,
            qty=qty,
            when=when,
            order_id=order_id,
            client_order_id="",
            close_reason=draft.close_reason,
            commission=draft.commission,
            source=SOURCE_TRACKER,
        )
        result = self._record(fill)
        if result.outcome in (Outcome.NEW, Outcome.SPOOLED):
            return [
                _piece_report(lot, q, fill.exec_price, fill.commission, fill.exec_qty)
                for lot, q in _fifo(lots, qty)
            ]
        # DUPLICATE (recorded earlier, lots changed since) or REBUILT (an out-of-order exit:
        # the write path rebuilt the lots in time order): report from a replay of the fills.
        log.info("close_position_fifo: exit %s was %s", fill.exec_id, result.outcome)
        try:
            with self.engine.connect() as conn:
                out = _replayed_report(conn, self.bot_id, sym, fill.exec_id)
                conn.rollback()
        except (SQLAlchemyError, ValidationError) as exc:
            log.error("close_position_fifo: replay failed: %s", self._describe(exc))
            return []
        return out

    def _already_recorded(
        self, conn: Connection, latest: Row[Any] | None, draft: FillInput
    ) -> list[dict[str, Any]] | None:
        """If the bot's newest fill of the symbol is this exit, what it consumed; else None."""
        if latest is None or latest.exec_price != draft.exec_price:
            return None
        if latest.source == SOURCE_TRACKER:
            # Recorded by the lot methods: only a retry of this very call matches.
            same = (
                latest.exec_time == draft.exec_time
                and latest.order_id == draft.order_id
                and latest.close_reason == draft.close_reason
            )
        else:
            # The caller's own exit fill (write_fill), or the exchange's copy of it.
            same = abs(latest.exec_time - draft.exec_time) <= SAME_EXIT_WINDOW
        if not same:
            return None
        pieces = _consumed_by(conn, self.bot_id, draft.symbol, latest)
        if pieces == []:
            return None  # that fill opened or added to a position: not this exit
        log.info(
            "close_position_fifo: the exit is already recorded as fill %s (%s); not recording "
            "it again",
            latest.id,
            latest.source,
        )
        if pieces is None:
            try:
                return _replayed_report(conn, self.bot_id, draft.symbol, latest.exec_id)
            except ValidationError as exc:
                log.error("close_position_fifo: replay failed: %s", self._describe(exc))
                return []
        return [
            _piece_report(lot, q, latest.exec_price, latest.commission, latest.exec_qty)
            for lot, q in pieces
        ]

    def get_open_position_entries(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """The bot's open lots (status <> closed, remaining > 0), oldest first (by symbol
        first when no symbol is given); ``[]`` on error, logged."""
        table = PositionEntry.__table__
        stmt = select(table).where(
            table.c.bot_id == self.bot_id,
            table.c.status != "closed",
            table.c.remaining_qty > 0,
        )
        if symbol is not None:
            stmt = stmt.where(table.c.symbol == symbol).order_by(table.c.entry_time, table.c.id)
        else:
            stmt = stmt.order_by(table.c.symbol, table.c.entry_time, table.c.id)
        return [_utc_values(row) for row in self._read("get_open_position_entries", stmt, {})]

    def get_current_position_summary(self, symbol: str) -> dict[str, Any] | None:
        """The ``trading.current_positions`` row of the bot and symbol, plus ``side``; None
        when there is no open lot (or on error, logged)."""
        rows = self._read("get_current_position_summary", _SUMMARY, {"b": self.bot_id, "s": symbol})
        return _utc_values(rows[0]) if rows else None

    # -- Redis -----------------------------------------------------------------------------
    def _position_key(self, symbol: str) -> str:
        return f"position:{self.bot_id}:{validate_symbol(symbol)}"

    def update_position_redis(
        self,
        symbol: str,
        size: float | Decimal,
        side: str | None = None,
        avg_price: float | Decimal | None = None,
        unrealized_pnl: float | Decimal | None = None,
    ) -> None:
        """Write ``position:{bot}:{symbol}`` and its ``:details`` hash in one MULTI/EXEC."""
        key = self._position_key(symbol)
        size_text = str(_finite_float("size", size, nonnegative=True))
        if side is None or side == "":
            side_text = "None"  # what the original stored for a falsy side
        else:
            side_text = str(_side("side", side))
        now = datetime.now(UTC)
        details: dict[str, str] = {
            "size": size_text,
            "side": side_text,
            "last_update": now.replace(tzinfo=None).isoformat(),
            "updated_at": now.isoformat(),
            "version": str(version_from_time(now)),
        }
        if avg_price is not None:
            details["avg_price"] = str(_finite_float("avg_price", avg_price))
        if unrealized_pnl is not None:
            details["unrealized_pnl"] = str(_finite_float("unrealized_pnl", unrealized_pnl))
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(key, size_text)
            pipe.delete(f"{key}:details")
            pipe.hset(f"{key}:details", mapping=cast("Mapping[Any, Any]", details))
            pipe.execute()
        except redis.RedisError as exc:
            log.error("update_position_redis failed: %s", self._describe(exc))

    def get_position_redis(self, symbol: str) -> dict[str, Any] | None:
        """``{size, side, avg_price, unrealized_pnl, last_update}`` or None (no key, error)."""
        key = self._position_key(symbol)
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.get(key)
            pipe.hgetall(f"{key}:details")
            size_text, details = pipe.execute()
        except redis.RedisError as exc:
            log.error("get_position_redis failed: %s", self._describe(exc))
            return None
        if size_text is None:
            return None
        details = dict(details or {})
        side = details.get("side")
        try:
            return {
                "size": float(size_text),
                "side": None if side in (None, "", "None") else side,
                "avg_price": _optional_float(details.get("avg_price")),
                "unrealized_pnl": _optional_float(details.get("unrealized_pnl")),
                "last_update": details.get("last_update"),
            }
        except ValueError:
            log.error("get_position_redis: corrupt entry %s", key)
            return None

    def set_redis_key(self, key: str, value: Any, ex: int | None = None) -> None:
        """Pass-through ``SET key value [EX ex]``; errors logged."""
        for name, item in (("key", key), ("value", value)):
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValidationError(name, item, "not encodable as UTF-8") from None
        try:
            self.redis.set(key, value, ex=ex)
        except redis.RedisError as exc:
            log.error("set_redis_key failed: %s", self._describe(exc))

    def get_redis_key(self, key: str) -> str | None:
        """Pass-through ``GET key``; None when missing or on error (logged)."""
        try:
            value = self.redis.get(key)
        except redis.RedisError as exc:
            log.error("get_redis_key failed: %s", self._describe(exc))
            return None
        return None if value is None else str(value)

    # -- bot row ---------------------------------------------------------------------------
    def update_heartbeat(self) -> None:
        """``bots.last_heartbeat = now`` (aware UTC); errors logged."""
        self._update_bot("update_heartbeat", _HEARTBEAT, {"now": datetime.now(UTC)})

    def update_equity(self, current_equity: NumberLike) -> None:
        """``bots.current_equity`` and ``updated_at = now`` (aware UTC); errors logged."""
        equity = _decimal("current_equity", current_equity)
        self._update_bot("update_equity", _EQUITY, {"equity": equity, "now": datetime.now(UTC)})

    # -- analytics (legacy semantics) ------------------------------------------------------
    def get_daily_pnl(self, days: float = 1) -> float:
        """**Cash flow**, not P&L: Σ Sell notional − Σ Buy notional − Σ commission over the
        bot's fills since ``now() - days`` (0.0 on error, logged)."""
        span = _finite_float("days", days, nonnegative=True)
        value = self._scalar("get_daily_pnl", _DAILY_CASH_FLOW, {"b": self.bot_id, "days": span})
        return 0.0 if value is None else float(value)

    def get_trade_count_today(self) -> int:
        """The bot's fills since 00:00 UTC today (0 on error, logged)."""
        value = self._scalar("get_trade_count_today", _COUNT_TODAY, {"b": self.bot_id})
        return 0 if value is None else int(value)
