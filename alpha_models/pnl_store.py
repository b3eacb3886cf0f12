# ruff: noqa: S608
"""Round trips derived from ``trading.fills``, stored in ``trading.completed_trades``.

:func:`rebuild_completed_trades` reads the trade executions (every ``exec_type`` that changes
a position, i.e. all but ``Funding``: funding lives in ``trading.funding_settlements`` and
is never a trade) of the chosen bots in ``(exec_time, id)`` order, runs the FIFO engine of
:mod:`alpha_models.pnl` over them and makes the rows with ``source = 'fills'`` equal to the
engine's round trips:

- **idempotent and deterministic**: rows are compared by ``trade_id`` and only a row that
  differs is updated; rows that no longer derive from the fills are deleted; new ones are
  inserted in ``(exit_time, trade_id)`` order. A second run changes nothing (not even
  ``updated_at`` or a sequence value). Rows of other sources are never touched.
- **what the table cannot hold is reported, not forced in** (:class:`SkippedTrip`):
  a trip that opens and closes at the same instant (``valid_times`` needs
  ``exit_time > entry_time``; nudging a timestamp would falsify it), a trip whose
  ``(bot_id, symbol, entry_time, exit_time)`` or ``trade_id`` is already taken by a row of
  another source (``unique_trade``: the other row is kept; the report names it), and a trip
  of a bot missing from ``trading.bots`` (the foreign key).
- realized P&L is dated when realized: a row's ``exit_time`` is the fill that brought the
  position back to flat. P&L already realized by partial exits of a trip still open is not
  in the table (the trip has no exit yet); :class:`RebuildStats` reports it per bot.
- money is ``Decimal`` end to end. The engine's exact gross P&L (up to 16 decimals: price
  times quantity) is rounded half-even to the column's 8 decimals, and ``net_pnl`` is
  ``gross_pnl - total_commission`` exactly, as in every existing row; ``pnl_pct`` that does
  not fit ``numeric(10,6)`` (a move of 10,000 % or more) is stored as NULL. An empty
  entry or exit reason is stored as NULL.

Speed: fills are streamed with ``COPY ... TO STDOUT`` and parsed column-wise; the values
come from ``numeric(20,8)`` / ``timestamptz`` columns with ``CHECK (> 0)`` constraints, so
they already satisfy :class:`~alpha_models.pnl.PnlFill`'s validation and are built without
repeating it. Large rebuilds are split by ``(bot_id, symbol)`` over worker processes that
read one exported snapshot (the FIFO books of different pairs are independent); the round
trips are written with ``COPY`` into a temporary table and merged with three set-based
statements in one transaction.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import logging
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from itertools import repeat
from operator import attrgetter
from typing import Any, Final

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from alpha_models.db import translate_error
from alpha_models.errors import DatabaseError, ValidationError
from alpha_models.inputs import UNKNOWN_BOT, ExecType
from alpha_models.pnl import FifoBook, OpenLot, PnlFill, PositionState, RoundTrip, unrealized_pnl

__all__ = [
    "SOURCE",
    "TRADE_EXEC_TYPES",
    "RebuildStats",
    "SkipReason",
    "SkippedTrip",
    "UnrealizedLine",
    "rebuild_completed_trades",
    "unrealized",
]

log = logging.getLogger(__name__)

SOURCE: Final = "fills"
"""``completed_trades.source`` of the rows this module owns."""

TRADE_EXEC_TYPES: Final = tuple(sorted(t.value for t in ExecType if t.is_trade))
"""``fills.exec_type`` values read as trades (everything but ``Funding``)."""

PARALLEL_MIN_FILLS: Final = 200_000
"""Below this many fills the rebuild runs in the calling process (workers cost ~1 s)."""

_LOCK_KEY: Final = 0x616C_7068_6101  # pg_advisory_xact_lock key: one rebuild at a time
_Q8: Final = Decimal("1E-8")
_PCT_LIMIT: Final = Decimal(10_000)  # numeric(10,6): |value| < 10^4
_WIDE: Final = Context(prec=100)  # products of 8-dp values stay exact
_CHUNK_ROWS: Final = 50_000

TRIP_COLUMNS: Final = (
    "trade_id",
    "bot_id",
    "symbol",
    "entry_order_id",
    "entry_client_order_id",
    "entry_side",
    "entry_price",
    "entry_qty",
    "entry_time",
    "entry_reason",
    "entry_commission",
    "exit_order_id",
    "exit_client_order_id",
    "exit_side",
    "exit_price",
    "exit_qty",
    "exit_time",
    "exit_reason",
    "exit_commission",
    "gross_pnl",
    "net_pnl",
    "pnl_pct",
    "total_commission",
    "holding_duration_seconds",
)
_COMPARED = TRIP_COLUMNS[1:]
_GENERATED: Final = frozenset(
    {"exit_side", "net_pnl", "total_commission", "holding_duration_seconds"}
)
COPIED_COLUMNS: Final = tuple(c for c in TRIP_COLUMNS if c not in _GENERATED)
"""Columns sent with COPY; the temporary table computes the others (less text to format)."""

_TEMP_TABLE_DDL: Final = """CREATE TEMP TABLE alpha_derived_trips (
    trade_id varchar(100) NOT NULL,
    bot_id varchar(50) NOT NULL,
    symbol varchar(20) NOT NULL,
    entry_order_id varchar(100),
    entry_client_order_id varchar(100),
    entry_side varchar(10) NOT NULL,
    entry_price numeric(20,8) NOT NULL,
    entry_qty numeric(20,8) NOT NULL,
    entry_time timestamptz NOT NULL,
    entry_reason varchar(50),
    entry_commission numeric(20,8) NOT NULL,
    exit_order_id varchar(100),
    exit_client_order_id varchar(100),
    exit_side varchar(10) GENERATED ALWAYS AS
        (CASE entry_side WHEN 'Buy' THEN 'Sell' ELSE 'Buy' END) STORED,
    exit_price numeric(20,8) NOT NULL,
    exit_qty numeric(20,8) NOT NULL,
    exit_time timestamptz NOT NULL,
    exit_reason varchar(50),
    exit_commission numeric(20,8) NOT NULL,
    gross_pnl numeric(20,8) NOT NULL,
    net_pnl numeric(20,8) GENERATED ALWAYS AS
        (gross_pnl - entry_commission - exit_commission) STORED,
    pnl_pct numeric(10,6),
    total_commission numeric(20,8) GENERATED ALWAYS AS
        (entry_commission + exit_commission) STORED,
    holding_duration_seconds integer GENERATED ALWAYS AS
        (floor(extract(epoch FROM exit_time - entry_time))::integer) STORED
) ON COMMIT DROP"""

_cols = ", ".join(TRIP_COLUMNS)
_t_cols = ", ".join(f"t.{c}" for c in TRIP_COLUMNS)
_CONFLICTS_SQL: Final = f"""WITH conflict AS (
    SELECT t.trade_id, c.trade_id AS other_trade_id, c.source AS other_source,
           'trade_id_taken' AS reason
      FROM alpha_derived_trips t JOIN trading.completed_trades c ON c.trade_id = t.trade_id
     WHERE c.source IS DISTINCT FROM '{SOURCE}'
    UNION ALL
    SELECT t.trade_id, c.trade_id, c.source, 'unique_trade_taken'
      FROM alpha_derived_trips t JOIN trading.completed_trades c
        ON c.bot_id = t.bot_id AND c.symbol = t.symbol
       AND c.entry_time = t.entry_time AND c.exit_time = t.exit_time
     WHERE c.source IS DISTINCT FROM '{SOURCE}'
), dropped AS (
    DELETE FROM alpha_derived_trips t USING conflict x WHERE t.trade_id = x.trade_id
    RETURNING t.trade_id, t.bot_id, t.symbol, t.entry_time, t.exit_time, t.net_pnl
)
SELECT DISTINCT ON (d.trade_id) d.trade_id, d.bot_id, d.symbol, d.entry_time, d.exit_time,
       d.net_pnl, x.reason, x.other_trade_id, x.other_source
  FROM dropped d JOIN conflict x ON x.trade_id = d.trade_id
 ORDER BY d.trade_id, x.reason"""

# {scope} is an SQL fragment with %s placeholders (values bound by the driver).
_DELETE_SQL: Final = f"""DELETE FROM trading.completed_trades c
 WHERE c.source = '{SOURCE}' AND {{scope}}
   AND NOT EXISTS (SELECT 1 FROM alpha_derived_trips t WHERE t.trade_id = c.trade_id)"""

_UPDATE_SQL: Final = f"""UPDATE trading.completed_trades c
   SET ({", ".join(_COMPARED)}) = ({", ".join(f"t.{col}" for col in _COMPARED)}),
       updated_at = now(), synced_at = now()
  FROM alpha_derived_trips t
 WHERE c.trade_id = t.trade_id AND c.source = '{SOURCE}'
   AND ({", ".join(f"c.{col}" for col in _COMPARED)})
       IS DISTINCT FROM ({", ".join(f"t.{col}" for col in _COMPARED)})"""

_INSERT_SQL: Final = f"""INSERT INTO trading.completed_trades ({_cols}, source)
SELECT {_t_cols}, '{SOURCE}' FROM alpha_derived_trips t
 WHERE NOT EXISTS (SELECT 1 FROM trading.completed_trades c WHERE c.trade_id = t.trade_id)
 ORDER BY t.exit_time, t.trade_id"""

_trade_types_sql = ", ".join(f"'{t}'" for t in TRADE_EXEC_TYPES)
_COUNT_SQL: Final = f"""SELECT f.bot_id, f.symbol,
       count(*) FILTER (WHERE f.exec_type IN ({_trade_types_sql})) AS trades,
       count(*) FILTER (WHERE f.exec_type NOT IN ({_trade_types_sql})) AS others
  FROM trading.fills f WHERE {{scope}} GROUP BY f.bot_id, f.symbol ORDER BY 1, 2"""

# coalesce: no NULL reaches the text stream, so a backslash in it is always a real escape.
_READ_SQL: Final = f"""COPY (SELECT f.id, f.exec_id, f.bot_id, f.symbol, f.side, f.exec_price,
       f.exec_qty, f.commission, f.exec_time, f.order_id, f.client_order_id,
       coalesce(f.close_reason, '')
  FROM trading.fills f
 WHERE f.exec_type IN ({_trade_types_sql}) AND {{scope}}
 ORDER BY f.exec_time, f.id) TO STDOUT"""
_N_READ: Final = 12


class SkipReason:
    """Why a derived round trip is not in ``completed_trades`` (values of ``reason``)."""

    ZERO_DURATION = "zero_duration"  # opened and closed at the same instant: valid_times
    UNIQUE_TRADE_TAKEN = "unique_trade_taken"  # same bot, symbol, entry and exit time
    TRADE_ID_TAKEN = "trade_id_taken"  # a row of another source has this trade_id
    BOT_NOT_REGISTERED = "bot_not_registered"  # completed_trades.bot_id references bots


@dataclass(frozen=True, slots=True)
class SkippedTrip:
    """A derived round trip that was kept out of the table, and why.

    ``net_pnl`` is the engine's exact figure, or (``*_taken`` reasons, found by the merge)
    the 8-dp value the row would have had.
    """

    trade_id: str
    bot_id: str
    symbol: str
    entry_time: datetime
    exit_time: datetime
    net_pnl: Decimal
    reason: str
    other_trade_id: str | None = None  # the row already holding the key
    other_source: str | None = None


@dataclass(frozen=True, slots=True)
class BotRealized:
    """Realized P&L of one bot according to the engine (all fills read)."""

    bot_id: str
    round_trips: int  # completed (flat -> flat), stored or skipped
    net_pnl_round_trips: Decimal  # exact, of the completed round trips
    net_pnl_open_trips: Decimal  # exact, realized by partial exits of trips still open
    fees: Decimal  # charged on every fill read: in round trips, open trips and open lots

    @property
    def net_pnl(self) -> Decimal:
        return self.net_pnl_round_trips + self.net_pnl_open_trips


@dataclass(frozen=True, slots=True)
class RebuildStats:
    """What :func:`rebuild_completed_trades` read, derived, changed and left out."""

    bots: tuple[str, ...]
    fills_read: int
    fills_not_trades: int  # fills of another exec_type (Funding...): never trades
    round_trips: int  # derived by the engine
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    skipped: tuple[SkippedTrip, ...]
    realized: tuple[BotRealized, ...]
    open_positions: tuple[PositionState, ...]  # non-flat, by (bot_id, symbol)
    workers: int
    seconds: float
    dry_run: bool = False
    phases: tuple[tuple[str, float], ...] = ()  # (phase, seconds): where the time went

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted

    @property
    def fills_per_second(self) -> float:
        return self.fills_read / self.seconds if self.seconds > 0 else 0.0

    def skipped_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.skipped:
            out[s.reason] = out.get(s.reason, 0) + 1
        return out


@dataclass(frozen=True, slots=True)
class UnrealizedLine:
    """Unrealized P&L of one open position at a mark price (None when no mark is given)."""

    bot_id: str
    symbol: str
    side: str
    size: Decimal
    avg_entry_price: Decimal | None
    mark_price: Decimal | None
    unrealized_pnl: Decimal | None  # exact; fees excluded
    notional: Decimal | None  # size * mark


def unrealized(
    positions: Iterable[PositionState] | Iterable[OpenLot], marks: Mapping[str, Decimal]
) -> tuple[UnrealizedLine, ...]:
    """Unrealized P&L per ``(bot_id, symbol, side)`` of open lots or positions, at ``marks``.

    ``marks`` maps a symbol to its mark price (``Decimal`` > 0). A position whose symbol has
    no mark gets ``None`` values (never a guess).
    """
    with localcontext(_WIDE):
        return _unrealized(positions, marks)


def _unrealized(
    positions: Iterable[PositionState] | Iterable[OpenLot], marks: Mapping[str, Decimal]
) -> tuple[UnrealizedLine, ...]:
    groups: dict[tuple[str, str, str], list[OpenLot]] = {}
    for item in positions:
        lots: Sequence[OpenLot] = item.lots if isinstance(item, PositionState) else (item,)
        for lot in lots:
            groups.setdefault((lot.bot_id, lot.symbol, lot.side), []).append(lot)
    out = []
    for (bot_id, symbol, side), lots in sorted(groups.items()):
        size = sum((lot.remaining_qty for lot in lots), Decimal(0))
        if not size:
            continue
        cost = sum((lot.price * lot.remaining_qty for lot in lots), Decimal(0))
        avg = (cost / size).quantize(_Q8, ROUND_HALF_EVEN)
        mark = marks.get(symbol)
        if mark is None:
            out.append(UnrealizedLine(bot_id, symbol, side, size, avg, None, None, None))
            continue
        upnl = unrealized_pnl(lots, mark)  # validates the mark (Decimal > 0)
        out.append(UnrealizedLine(bot_id, symbol, side, size, avg, mark, upnl, size * mark))
    return tuple(out)


# --------------------------------------------------------------------------- reading fills

_FILL_FIELDS: Final = {f.name for f in dataclasses.fields(PnlFill)}
_consume: Final = deque[object](maxlen=0).extend
_UNESCAPE: Final = {
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}


def _copy_unescape(value: str) -> str:
    """Decode one field of PostgreSQL's COPY text format (backslash escapes)."""
    if "\\" not in value:
        return value
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch != "\\" or i + 1 == n:
            out.append(ch)
            i += 1
            continue
        nxt = value[i + 1]
        if nxt in "01234567":
            j = i + 1
            while j < n and j < i + 4 and value[j] in "01234567":
                j += 1
            out.append(chr(int(value[i + 1 : j], 8)))
            i = j
        elif nxt == "x" and i + 2 < n and value[i + 2] in "0123456789abcdefABCDEF":
            j = i + 2
            while j < n and j < i + 4 and value[j] in "0123456789abcdefABCDEF":
                j += 1
            out.append(chr(int(value[i + 2 : j], 16)))
            i = j
        else:
            out.append(_UNESCAPE.get(nxt, nxt))
            i += 2
    return "".join(out)


def _decimals(values: list[str]) -> list[Decimal] | Iterator[Decimal]:
    """``Decimal`` of each string; repeated strings (sizes, zero fees) are parsed once.

    Decimals are immutable, so sharing one object between fills is safe.
    """
    sample = values[:1000]
    if len(set(sample)) > len(sample) // 4:  # mostly distinct: parse each
        return map(Decimal, values)
    parsed = {v: Decimal(v) for v in set(values)}
    return list(map(parsed.__getitem__, values))


def _parse_chunk(chunks: list[bytes], out: list[PnlFill]) -> None:
    """Append the PnlFills of COPY text rows (complete lines) to ``out``, column by column.

    Values come from typed, constrained columns (``numeric(20,8)`` with ``CHECK (> 0)``,
    ``timestamptz``), i.e. they already pass ``PnlFill``'s checks; the slots are filled
    directly, which is ~5x cheaper than the validating constructor on a large rebuild.
    """
    if not chunks:
        return
    data = b"".join(chunks).decode("utf-8")
    flat = data.replace("\n", "\t").split("\t")
    flat.pop()  # the empty string after the last newline
    n = len(flat) // _N_READ
    if n * _N_READ != len(flat):
        raise DatabaseError("unexpected COPY output while reading fills")
    text_cols = [flat[k::_N_READ] for k in (1, 2, 3, 4, 9, 10, 11)]
    if "\\" in data:
        text_cols = [list(map(_copy_unescape, col)) for col in text_cols]
    exec_ids, bots, symbols, sides, order_ids, link_ids, reasons = text_cols
    intern = sys.intern
    columns: dict[str, Iterable[Any]] = {
        "fill_id": map(int, flat[0::_N_READ]),
        "exec_id": exec_ids,
        "bot_id": map(intern, bots),
        "symbol": map(intern, symbols),
        "side": map(intern, sides),
        "price": _decimals(flat[5::_N_READ]),
        "qty": _decimals(flat[6::_N_READ]),
        "fee": _decimals(flat[7::_N_READ]),
        "exec_time": map(datetime.fromisoformat, flat[8::_N_READ]),
        "order_id": order_ids,
        "client_order_id": link_ids,
        "reason": [intern(r) if r else None for r in reasons],
    }
    if set(columns) != _FILL_FIELDS:  # pragma: no cover - guards a change of PnlFill
        raise RuntimeError("PnlFill fields changed: update pnl_store._parse_chunk")
    objs = list(map(object.__new__, repeat(PnlFill, n)))
    for name, values in columns.items():
        _consume(map(getattr(PnlFill, name).__set__, objs, values))
    out.extend(objs)


# --------------------------------------------------------------------------- deriving trips


@dataclass(frozen=True, slots=True)
class _Job:
    """One worker's share: its pairs' fills in the exported snapshot."""

    dsn: str
    snapshot: str
    where_sql: str  # a WHERE fragment on alias f, values inlined by the driver
    registered: frozenset[str]


@dataclass(slots=True)
class _Derived:
    fills: int = 0
    trips: int = 0
    copy_rows: bytes = b""
    skipped: list[SkippedTrip] = field(default_factory=list)
    realized: dict[str, list[Any]] = field(default_factory=dict)  # [n, net, open_net, fees]
    open_positions: list[PositionState] = field(default_factory=list)


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_TEXT_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL: Final = "\\N"


def _text(values: list[str | None], *, empty_is_null: bool = False) -> list[str]:
    """A column of strings in COPY text format: escaped where needed, None as ``\\N``."""
    if empty_is_null:
        values = [v or None for v in values]
    joined = "".join([v for v in values if v] if None in values else values)  # type: ignore[arg-type]
    if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
        table = _TEXT_ESCAPES
        values = [None if v is None else v.translate(table) for v in values]
    if None in values:
        return [_NULL if v is None else v for v in values]
    return values  # type: ignore[return-value]


def _pct(values: Iterable[Decimal]) -> Iterator[str]:
    for v in values:
        yield str(v) if -_PCT_LIMIT < v < _PCT_LIMIT else "\\N"


def _q8(values: Iterable[Decimal]) -> list[Decimal]:
    quantize = Decimal.quantize
    return list(map(quantize, values, repeat(_Q8), repeat(ROUND_HALF_EVEN)))


def _copy_rows(trips: Sequence[RoundTrip]) -> bytes:
    """COPY text of the trips, in :data:`COPIED_COLUMNS` order."""
    if not trips:
        return b""

    def col(name: str) -> list[Any]:
        return list(map(attrgetter(name), trips))

    iso = datetime.isoformat
    columns: list[Iterable[str]] = [
        _text(col("trade_id")),
        _text(col("bot_id")),
        _text(col("symbol")),
        _text(col("entry_order_id")),
        _text(col("entry_client_order_id")),
        col("entry_side"),
        map(str, col("entry_price")),
        map(str, col("entry_qty")),
        map(iso, col("entry_time")),
        _text(col("entry_reason"), empty_is_null=True),
        map(str, col("entry_commission")),
        _text(col("exit_order_id")),
        _text(col("exit_client_order_id")),
        map(str, col("exit_price")),
        map(str, col("exit_qty")),
        map(iso, col("exit_time")),
        _text(col("exit_reason"), empty_is_null=True),
        map(str, col("exit_commission")),
        map(str, _q8(col("gross_pnl"))),
        _pct(col("pnl_pct")),
    ]
    lines = map("\t".join, zip(*columns, strict=True))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _derive(fills: list[PnlFill], registered: frozenset[str]) -> _Derived:
    """Run the FIFO engine over fills already in ``(exec_time, id)`` order.

    ``FifoBook.apply_all`` on that order is exactly :func:`~alpha_models.pnl.rebuild`
    without its sort (ids are unique, so ``(exec_time, id)`` is ``fill_order_key``).
    """
    book = FifoBook()
    book.apply_all(fills)
    result = book.result()
    out = _Derived(fills=len(fills), trips=len(result.round_trips))
    keep: list[RoundTrip] = []
    closed_ids = set()
    realized = out.realized
    for trip in result.round_trips:
        closed_ids.add(trip.trade_id)
        acc = realized.get(trip.bot_id)
        if acc is None:
            acc = realized[trip.bot_id] = [0, Decimal(0), Decimal(0), Decimal(0)]
        acc[0] += 1
        acc[1] += trip.net_pnl
        acc[3] += trip.total_commission
        if trip.exit_time > trip.entry_time and trip.bot_id in registered:
            keep.append(trip)
            continue
        reason = (
            SkipReason.ZERO_DURATION
            if trip.exit_time <= trip.entry_time
            else SkipReason.BOT_NOT_REGISTERED
        )
        out.skipped.append(
            SkippedTrip(
                trip.trade_id,
                trip.bot_id,
                trip.symbol,
                trip.entry_time,
                trip.exit_time,
                trip.net_pnl,
                reason,
            )
        )
    out.open_positions = [p for p in result.positions if p.lots]
    if out.open_positions:  # realized by partial exits of trips that are still open
        for r in result.realizations:
            if r.trade_id not in closed_ids:
                acc = realized.get(r.bot_id)
                if acc is None:
                    acc = realized[r.bot_id] = [0, Decimal(0), Decimal(0), Decimal(0)]
                acc[2] += r.net
                acc[3] += r.entry_fee + r.exit_fee
        for pos in out.open_positions:  # entry fees still carried by open lots
            acc = realized.get(pos.bot_id)
            if acc is None:
                acc = realized[pos.bot_id] = [0, Decimal(0), Decimal(0), Decimal(0)]
            acc[3] += sum((lot.remaining_entry_fee for lot in pos.lots), Decimal(0))
    out.copy_rows = _copy_rows(keep)
    return out


def _derive_job(job: _Job) -> _Derived:
    """Worker entry point: read one partition of the snapshot, derive its round trips."""
    import psycopg2  # in the worker only

    try:
        with _gc_paused():
            conn = psycopg2.connect(job.dsn)
            try:
                conn.set_session(readonly=True, isolation_level="REPEATABLE READ")
                cur = conn.cursor()
                cur.execute("SET TRANSACTION SNAPSHOT %s", (job.snapshot,))
                fills = read_fills(cur, (job.where_sql, ()))
                conn.rollback()
            finally:
                conn.close()
            return _derive(fills, job.registered)
    except psycopg2.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        password = _dsn_password(job.dsn)
        if password:
            first = first.replace(password, "***")
        raise DatabaseError(f"reading fills failed: {first}") from None


def _dsn_password(dsn: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(dsn).password
    except Exception:
        return None


# --------------------------------------------------------------------------- the rebuild

_Clause = tuple[str, tuple[Any, ...]]  # SQL with %s placeholders, and its values


def _scope(bot_ids: Sequence[str] | None, alias: str) -> _Clause:
    """The WHERE fragment selecting the bots of a rebuild."""
    if bot_ids is None:
        return f"{alias}.bot_id <> %s", (UNKNOWN_BOT,)
    return f"{alias}.bot_id = ANY(%s)", (list(bot_ids),)


def _pairs(pairs: Sequence[tuple[str, str]], alias: str) -> _Clause:
    """``(bot_id, symbol) IN pairs`` (an array join: one parameter whatever the count)."""
    return (
        f"EXISTS (SELECT 1 FROM unnest(%s::text[], %s::text[]) AS p(b, s) "
        f"WHERE p.b = {alias}.bot_id AND p.s = {alias}.symbol)",
        ([b for b, _ in pairs], [s for _, s in pairs]),
    )


def _sql(cursor: Any, template: str, **clauses: _Clause) -> bytes:
    """``template`` with its clauses filled in and every value bound (for COPY, too)."""
    text = template.format(**{k: c[0] for k, c in clauses.items()})
    order = sorted(clauses, key=lambda k: template.index("{" + k + "}"))
    params = tuple(v for k in order for v in clauses[k][1])
    if not params:  # already complete (values inlined): a literal % must stay as it is
        return text.encode()
    return bytes(cursor.mogrify(text, params))


def read_fills(cursor: Any, where: _Clause) -> list[PnlFill]:
    """The trade fills matching ``where`` (a clause on alias ``f``), in ``(exec_time, id)``
    order, streamed with COPY; ``cursor`` is a psycopg2 cursor inside a transaction."""
    # ISO UTC text for fromisoformat; no JIT: compiling costs more than this plain scan saves
    cursor.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO'; SET LOCAL jit = off")
    rows: list[bytes] = []
    sink = type("_Sink", (), {"write": staticmethod(rows.append)})()  # one C call per row
    cursor.copy_expert(_sql(cursor, _READ_SQL, scope=where).decode(), sink)
    fills: list[PnlFill] = []
    for i in range(0, len(rows), _CHUNK_ROWS):
        _parse_chunk(rows[i : i + _CHUNK_ROWS], fills)
        rows[i : i + _CHUNK_ROWS] = [b""] * min(_CHUNK_ROWS, len(rows) - i)  # free as we go
    return fills


def _partitions(pairs: list[tuple[str, str, int]], procs: int) -> list[list[tuple[str, str]]]:
    """Split (bot, symbol) pairs into ``procs`` groups of similar fill counts (largest first,
    each to the least loaded group): a pair's FIFO book never spans two processes."""
    groups: list[list[tuple[str, str]]] = [[] for _ in range(procs)]
    loads = [0] * procs
    for bot_id, symbol, n in sorted(pairs, key=lambda p: (-p[2], p[0], p[1])):
        k = loads.index(min(loads))
        groups[k].append((bot_id, symbol))
        loads[k] += n
    return [g for g in groups if g]


def _worker_dsn(engine: Engine) -> str:
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def default_workers(n_fills: int) -> int:
    """Processes for a rebuild of ``n_fills``, the calling one included (1 = no others)."""
    if n_fills < PARALLEL_MIN_FILLS:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def rebuild_completed_trades(
    engine: Engine,
    bot_ids: Sequence[str] | None = None,
    *,
    workers: int | None = None,
    dry_run: bool = False,
) -> RebuildStats:
    """Make the ``source = 'fills'`` rows of ``completed_trades`` equal to the FIFO round trips.

    ``bot_ids``: the bots to rebuild; ``None`` means every bot with fills except
    ``unknown`` (unattributed fills are not a bot's P&L; pass it explicitly to include it:
    its trips are then reported as ``bot_not_registered`` unless it is in ``trading.bots``).
    Rows of bots outside ``bot_ids`` are left alone. ``workers``: processes sharing the
    work, the calling one included (default: 1 below :data:`PARALLEL_MIN_FILLS` fills, else
    the CPU count up to 4); the others are spawned and read the same snapshot of
    ``trading.fills``. ``dry_run``: compute and report the changes, then roll them back.

    Raises :class:`~alpha_models.errors.ValidationError` for an empty ``bot_ids`` list or
    ``workers < 1``, and translated database errors (secrets removed).
    """
    if bot_ids is not None:
        bot_ids = sorted(set(bot_ids))
        if not bot_ids:
            raise ValidationError("bot_ids", bot_ids, "must name at least one bot, or be None")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ValidationError("workers", workers, "must be an int >= 1")
    clock = _Clock()
    settings = getattr(engine, "info_settings", None)
    try:
        with (
            engine.connect().execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            ) as snap_conn,
            engine.connect() as write_conn,
        ):
            return _rebuild(engine, snap_conn, write_conn, bot_ids, workers, dry_run, clock)
    except DBAPIError as exc:
        raise translate_error(exc, settings) from None


class _Clock:
    def __init__(self) -> None:
        self.started = self._last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._last
        self._last = now


def _warm() -> None:
    """Run in a fresh worker so that its start-up (imports) overlaps the count query."""


@dataclass
class _Merged:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    conflicts: list[SkippedTrip] = field(default_factory=list)


def _rebuild(
    engine: Engine,
    snap_conn: Connection,
    write_conn: Connection,
    bot_ids: Sequence[str] | None,
    workers: int | None,
    dry_run: bool,
    clock: _Clock,
) -> RebuildStats:
    write_conn.begin()
    wcur: Any = write_conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    # One rebuild at a time; taken before the snapshot, so the snapshot is not stale.
    wcur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    wcur.execute("SELECT bot_id FROM trading.bots")
    registered = frozenset(str(row[0]) for row in wcur.fetchall())
    wcur.execute(_TEMP_TABLE_DDL)
    wcur.execute(
        "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'trading.fills'::regclass"
    )
    max_procs = workers if workers is not None else default_workers(int(wcur.fetchone()[0]))
    scope_f, scope_c = _scope(bot_ids, "f"), _scope(bot_ids, "c")
    merged = _Merged()
    parts: list[_Derived] = []

    with ExitStack() as stack:
        pool: ProcessPoolExecutor | None = None
        if max_procs > 1:  # started now: the workers' imports overlap the count query
            try:
                context = multiprocessing.get_context("spawn")
                pool = stack.enter_context(ProcessPoolExecutor(max_procs - 1, mp_context=context))
                for _ in range(max_procs - 1):
                    pool.submit(_warm)
            except (OSError, RuntimeError, AssertionError) as exc:  # e.g. a daemonic caller
                log.warning("P&L rebuild runs in one process: cannot start workers (%s)", exc)
                pool, max_procs = None, 1

        snap_conn.begin()
        scur: Any = snap_conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        scur.execute("SET LOCAL work_mem = '64MB'")  # the (exec_time, id) sort, in memory
        scur.execute(_COUNT_SQL.format(scope=scope_f[0]), scope_f[1])
        counts = [(str(b), str(s), int(n), int(o)) for b, s, n, o in scur.fetchall()]
        pairs = [(b, s, n) for b, s, n, _ in counts if n]
        procs = workers if workers is not None else default_workers(sum(n for *_, n in pairs))
        procs = max(1, min(procs, max_procs, len(pairs)))
        groups = _partitions(pairs, procs)
        clock.lap("count")

        with _gc_paused():
            futures: list[Future[_Derived]] = []
            if pool is not None and len(groups) > 1:
                scur.execute("SELECT pg_export_snapshot()")
                snapshot = str(scur.fetchone()[0])
                dsn = _worker_dsn(engine)
                for group in groups[1:]:
                    where = _sql(scur, "{p}", p=_pairs(group, "f")).decode()
                    job = _Job(dsn, snapshot, where, registered)
                    futures.append(pool.submit(_derive_job, job))
            own = _pairs(groups[0], "f") if futures else scope_f
            # The calling process takes the first share itself, on the exporting snapshot,
            # and sends each share's trips to the temporary table as soon as it has them.
            parts.append(_derive(read_fills(scur, own), registered))
            clock.lap("derive")
            _copy_trips(wcur, parts[0])
            clock.lap("copy_trips")
            for future, group in zip(futures, groups[1:], strict=True):
                try:
                    parts.append(future.result())
                except BrokenProcessPool:  # a worker died (killed, out of memory): do it here
                    log.warning("P&L rebuild worker lost; deriving its share in process")
                    parts.append(_derive(read_fills(scur, _pairs(group, "f")), registered))
                clock.lap("wait_workers")
                _copy_trips(wcur, parts[-1])
                clock.lap("copy_trips")
            snap_conn.rollback()
            _merge(wcur, scope_c, merged, clock)
    if dry_run:
        write_conn.rollback()
    else:
        write_conn.commit()
    clock.lap("commit")
    return _stats(parts, counts, merged, bot_ids, len(groups) or 1, dry_run, clock)


_COPY_TRIPS_SQL: Final = f"COPY alpha_derived_trips ({', '.join(COPIED_COLUMNS)}) FROM STDIN"


def _copy_trips(cur: Any, part: _Derived) -> None:
    cur.copy_expert(_COPY_TRIPS_SQL, io.BytesIO(part.copy_rows))
    part.copy_rows = b""


def _merge(cur: Any, scope: _Clause, merged: _Merged, clock: _Clock) -> None:
    """Merge the temporary table into ``completed_trades``: set-based, in the caller's
    transaction. A small statistics sample of the temporary table is enough for the planner
    to pick hash joins (without one it may loop over an index for every row)."""
    cur.execute("SET LOCAL default_statistics_target = 10; ANALYZE alpha_derived_trips")
    cur.execute(_CONFLICTS_SQL)
    merged.conflicts.extend(SkippedTrip(*row) for row in cur.fetchall())
    clock.lap("conflicts")
    # Stale rows first: the remaining ones can then never collide on unique_trade.
    cur.execute(_sql(cur, _DELETE_SQL, scope=scope))
    merged.deleted = int(cur.rowcount)
    cur.execute(_UPDATE_SQL)
    merged.updated = int(cur.rowcount)
    cur.execute(_INSERT_SQL)
    merged.inserted = int(cur.rowcount)
    clock.lap("merge")


def _stats(
    parts: list[_Derived],
    counts: list[tuple[str, str, int, int]],
    merged: _Merged,
    bot_ids: Sequence[str] | None,
    n_procs: int,
    dry_run: bool,
    clock: _Clock,
) -> RebuildStats:
    realized: dict[str, list[Any]] = {}
    for p in parts:
        for bot_id, values in p.realized.items():
            acc = realized.setdefault(bot_id, [0, Decimal(0), Decimal(0), Decimal(0)])
            for k, v in enumerate(values):
                acc[k] += v
    skipped = sorted(
        [s for p in parts for s in p.skipped] + merged.conflicts,
        key=lambda s: (s.bot_id, s.symbol, s.exit_time, s.trade_id),
    )
    trips = sum(p.trips for p in parts)
    stored = trips - len(skipped)
    return RebuildStats(
        bots=tuple(sorted({b for b, _, n, _ in counts if n} | set(bot_ids or ()))),
        fills_read=sum(p.fills for p in parts),
        fills_not_trades=sum(o for _, _, _, o in counts),
        round_trips=trips,
        inserted=merged.inserted,
        updated=merged.updated,
        deleted=merged.deleted,
        unchanged=stored - merged.inserted - merged.updated,
        skipped=tuple(skipped),
        realized=tuple(BotRealized(b, a[0], a[1], a[2], a[3]) for b, a in sorted(realized.items())),
        open_positions=tuple(
            sorted(
                (pos for p in parts for pos in p.open_positions),
                key=lambda pos: (pos.bot_id, pos.symbol),
            )
        ),
        workers=n_procs,
        seconds=time.perf_counter() - clock.started,
        dry_run=dry_run,
        phases=tuple(clock.phases.items()),
    )
