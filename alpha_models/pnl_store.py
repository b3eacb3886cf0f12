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

Speed (1,000,000 fills, 222,396 round trips: ``benchmarks/bench_analytics.py``): the
fills are streamed with ``COPY ... TO STDOUT`` and handled in batches while the stream is
still arriving: parsed column-wise (their values come from ``numeric(20,8)`` /
``timestamptz`` columns with ``CHECK (> 0)`` and a unique ``exec_id``, so they already
satisfy what :class:`~alpha_models.pnl.FifoBook` checks) and run through
:class:`~alpha_models.pnl.SortedFifo`, the same arithmetic on plain columns. Each round trip
is rendered once, as the COPY text line PostgreSQL itself prints for the row it becomes.
A thread writes those lines while the next batches are derived:

- a first rebuild (no row of this source in scope) sends them with ``COPY`` straight into
  ``completed_trades``, in ``(exit_time, trade_id)`` order, the order (so the ids) the
  merge's INSERT gives; the keys of other sources' rows are checked beforehand, in memory.
  The server's index maintenance of those inserts is most of the work, and runs alongside
  the deriving (which then takes one core fewer: :func:`default_workers`);
- otherwise the stored rows are read in the same text, and only new and changed lines go
  to a temporary table, merged with three set-based statements. A rebuild that changes
  nothing writes nothing.

Large rebuilds are split by ``(bot_id, symbol)`` over worker processes that read one
exported snapshot (the FIFO books of different pairs are independent) and stream their
rows to the calling process. Everything happens in one transaction.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    InvalidOperation,
    Overflow,
    localcontext,
)
from itertools import pairwise, repeat
from typing import Any, Final

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from alpha_models.db import translate_error
from alpha_models.errors import DatabaseError, ValidationError
from alpha_models.inputs import UNKNOWN_BOT, ExecType
from alpha_models.pnl import (
    BUY,
    SELL,
    TRADE_ID_MAX_LEN,
    ClosedTrip,
    OpenLot,
    PnlFill,
    PositionState,
    SortedFifo,
    gc_paused,
    make_trade_id,
    position_state,
    unrealized_pnl,
)

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
"""Below this many fills the rebuild runs in the calling process (a worker costs ~1 s)."""

_LOCK_KEY: Final = 0x616C_7068_6101  # pg_advisory_xact_lock key: one rebuild at a time
_Q8: Final = Decimal("1E-8")
_Q6: Final = Decimal("1E-6")
_PCT_LIMIT: Final = Decimal(10_000)  # numeric(10,6): |value| < 10^4
_WIDE: Final = Context(prec=100)  # products of 8-dp values stay exact
# pnl.trip_figures' rounding: a quotient to 100 digits, then half-even at the column's scale.
_QUOTIENT: Final = Context(prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow])
_HUNDRED: Final = Decimal(100)
_CHUNK_ROWS: Final = 50_000
_STREAM_ROWS: Final = 20_000  # fills per batch of the rebuild: its trips go out as one message

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
"""The columns a derived round trip sets (with ``source``); the others take their defaults."""
_COMPARED = TRIP_COLUMNS[1:]
_ROW_COLUMNS: Final = (
    "trade_id",
    "bot_id",
    "symbol",
    "entry_order_id",
    "entry_client_order_id",
    "entry_side",
    "entry_time",
    "entry_reason",
    "exit_order_id",
    "exit_client_order_id",
    "exit_side",
    "exit_time",
    "exit_reason",
    "holding_duration_seconds",
    "source",
    "pnl_pct",
    "entry_price",
    "entry_qty",
    "entry_commission",
    "exit_price",
    "exit_qty",
    "exit_commission",
    "gross_pnl",
    "net_pnl",
    "total_commission",
)
"""One row of the rebuild in COPY text, as PostgreSQL itself prints it (see ``_Share``): the
columns of :data:`TRIP_COLUMNS` and ``source``, the ``numeric(20,8)`` ones last."""
if sorted(_ROW_COLUMNS) != sorted((*TRIP_COLUMNS, "source")):  # pragma: no cover
    raise RuntimeError("_ROW_COLUMNS must be TRIP_COLUMNS and source")

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
    exit_side varchar(10) NOT NULL,
    exit_price numeric(20,8) NOT NULL,
    exit_qty numeric(20,8) NOT NULL,
    exit_time timestamptz NOT NULL,
    exit_reason varchar(50),
    exit_commission numeric(20,8) NOT NULL,
    gross_pnl numeric(20,8) NOT NULL,
    net_pnl numeric(20,8) NOT NULL,
    pnl_pct numeric(10,6),
    total_commission numeric(20,8) NOT NULL,
    holding_duration_seconds integer NOT NULL,
    source varchar(20) NOT NULL
) ON COMMIT DROP"""

_cols = ", ".join(TRIP_COLUMNS)
_t_cols = ", ".join(f"t.{c}" for c in TRIP_COLUMNS)
_c_cols = ", ".join(f"c.{c}" for c in _ROW_COLUMNS)
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

# {scope}, {ids}, {pairs}: SQL fragments with %s placeholders (values bound by the driver).
_DELETE_SQL: Final = f"""DELETE FROM trading.completed_trades c
 WHERE c.source = '{SOURCE}' AND {{scope}}
   AND (c.trade_id = ANY({{ids}}::text[]) OR NOT {{pairs}})"""

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

_COPY_TEMP_SQL: Final = f"COPY alpha_derived_trips ({', '.join(_ROW_COLUMNS)}) FROM STDIN"
_COPY_DIRECT_SQL: Final = f"COPY trading.completed_trades ({', '.join(_ROW_COLUMNS)}) FROM STDIN"

# The (bot_id, symbol) pairs with fills, from the index on (bot_id, symbol, ...), one probe
# per pair instead of a scan of every fill.
_PAIRS_SQL: Final = """WITH RECURSIVE p(bot_id, symbol) AS (
    (SELECT f.bot_id, f.symbol FROM trading.fills f ORDER BY f.bot_id, f.symbol LIMIT 1)
  UNION ALL
    SELECT n.bot_id, n.symbol FROM p CROSS JOIN LATERAL (
        SELECT f.bot_id, f.symbol FROM trading.fills f
         WHERE (f.bot_id, f.symbol) > (p.bot_id, p.symbol)
         ORDER BY f.bot_id, f.symbol LIMIT 1) n
)
SELECT p.bot_id, p.symbol FROM p WHERE {scope} ORDER BY 1, 2"""

_ANY_STORED_SQL: Final = f"""SELECT EXISTS (SELECT 1 FROM trading.completed_trades c
 WHERE c.source = '{SOURCE}' AND {{scope}})"""

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

# The rebuild's read: the values the FIFO needs first, then the ones only the first and last
# fill of a trip (and open lots) need. {where} selects a share's fills: the rebuild's scope
# (one share: the index on exec_time gives the order, rows flow at once) or its pairs.
_STREAM_SQL: Final = f"""COPY (SELECT f.bot_id, f.symbol, f.side, f.exec_price, f.exec_qty,
       f.commission, f.exec_id, f.exec_time, f.order_id, f.client_order_id,
       coalesce(f.close_reason, '')
  FROM trading.fills f
 WHERE f.exec_type IN ({_trade_types_sql}) AND {{where}}{{since}}
 ORDER BY f.exec_time, f.id{{limit}}) TO STDOUT"""
_AHEAD: Final = 6
"""Batches of rows the deriving may be ahead of the writing: a writer that falls behind
slows the deriving down (its server process then has a core to itself), never the reverse."""
_FIRST_ROWS: Final = 100_000
"""The stream's first statement stops here: a bounded sort, so rows flow at once, and enough
trips to keep the writer busy while the rest is sorted."""
_N_STREAM: Final = 11

# The rows this rebuild owns for a share's pairs, in the text the share renders its rows in.
_STORED_SQL: Final = f"""COPY (SELECT {_c_cols} FROM trading.completed_trades c
  JOIN unnest(%s::text[], %s::text[]) AS p(b, s) ON p.b = c.bot_id AND p.s = c.symbol
 WHERE c.source = '{SOURCE}') TO STDOUT"""

# Rows of other sources: a derived trip must not take their trade_id or unique_trade key.
_OTHERS_SQL: Final = f"""COPY (SELECT c.trade_id, c.source, c.bot_id, c.symbol, c.entry_time,
       c.exit_time FROM trading.completed_trades c
 WHERE c.source IS DISTINCT FROM '{SOURCE}') TO STDOUT"""

# Text as PostgreSQL prints it: ISO dates in UTC. No JIT: compiling costs more than it saves.
# The (exec_time, id) sort of a million fills in memory (each parallel process sorts a part).
_SESSION_SQL: Final = (
    "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO'; SET LOCAL jit = off; "
    "SET LOCAL work_mem = '128MB'"
)


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


# --------------------------------------------------------------------------- rows as text
#
# A share renders each round trip as one line of COPY text exactly as PostgreSQL prints the
# row it becomes (``_ROW_COLUMNS``): numbers at their column's scale, times as the fills'
# own text (the same type, printed in the same session settings), strings escaped as COPY
# escapes them. The line is what is written, and comparing it with the printed stored row
# tells whether that row changes, without a round trip through the database.


_TEXT_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_OUT_ESCAPES: Final = str.maketrans(
    {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
)
_NULL: Final = "\\N"


def _out_text(value: str) -> str:
    """A text value as ``COPY ... TO`` prints it (and as ``COPY ... FROM`` reads it back)."""
    return value.translate(_OUT_ESCAPES)


def _scaled(value: Decimal, quantum: Decimal) -> str:
    """``numeric_out`` of ``value`` stored at the scale of ``quantum`` (PostgreSQL rounds
    half away from zero on input); zero without a sign."""
    stored = value.quantize(quantum, ROUND_HALF_UP, _WIDE)
    return format(stored.copy_abs() if not stored else stored, "f")


def _n8(value: Decimal) -> str:
    """A ``numeric(20,8)`` value as PostgreSQL prints it (``str`` already does, for the values
    read from such columns and their exact sums: exponent -8, not tiny)."""
    text = str(value)
    if text[-9:-8] != "." or "E" in text:
        return _scaled(value, _Q8)
    return text


def _n6(value: Decimal) -> str:
    """A ``numeric(10,6)`` value as PostgreSQL prints it."""
    text = str(value)
    if text[-7:-6] != "." or "E" in text:
        return _scaled(value, _Q6)
    return text


# --------------------------------------------------------------------------- deriving trips


@dataclass(frozen=True, slots=True)
class _Pair:
    """One ``(bot_id, symbol)`` of a share, with its text forms."""

    bot_id: str
    symbol: str
    bot_text: str
    symbol_text: str
    prefix: str | None  # "bot:symbol:" when neither needs an escape, else None
    registered: bool


@dataclass(slots=True)
class _ShareResult:
    """What one share derived, besides the rows it sent."""

    fills: int = 0
    trips: int = 0
    unchanged: int = 0
    skipped: list[SkippedTrip] = field(default_factory=list)
    realized: dict[str, list[Any]] = field(default_factory=dict)  # [n, net, open_net, fees]
    open_positions: list[PositionState] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)  # stored trade_ids no longer derived


_Row = tuple[str, str, str]  # (exit_time text, trade_id text, COPY line)
_Emit = Callable[[tuple[Any, ...]], None]


class _Numbers:
    """``Decimal`` of a column's strings, with a cache while values repeat (sizes, zero
    fees): parsing is dropped for good once half of a batch's values are new."""

    __slots__ = ("_cache",)
    _LIMIT = 100_000

    def __init__(self) -> None:
        self._cache: dict[str, Decimal] | None = {}

    def parse(self, values: list[str]) -> Iterable[Decimal]:
        cache = self._cache
        if cache is None:
            return map(Decimal, values)
        new = set(values).difference(cache)
        if len(new) * 2 > len(values) or len(cache) + len(new) > self._LIMIT:
            self._cache = None
            return map(Decimal, values)
        for value in new:
            cache[value] = Decimal(value)  # immutable: one object for every equal string
        return map(cache.__getitem__, values)


class _Share:
    """The fills of some ``(bot_id, symbol)`` pairs, streamed through the FIFO engine.

    :meth:`run` reads, on the given cursor, the rows of other sources (their keys must stay
    free), the stored rows of these pairs when ``compare`` (so that only new and changed
    rows leave), then the fills with ``COPY``, and handles them ``_STREAM_ROWS`` at a time
    while the stream is still arriving: each batch is parsed column-wise, run through
    :class:`~alpha_models.pnl.SortedFifo`, and its completed round trips are rendered and
    passed to ``emit`` as ``("rows", src, watermark, rows)``: ``rows`` sorted by (exit time,
    trade_id), every later row of this share exiting at or after ``watermark``.
    """

    def __init__(
        self,
        src: int,
        pairs: Sequence[tuple[str, str]],
        where: _Clause,
        registered: frozenset[str],
        *,
        compare: bool,
    ) -> None:
        self.src = src
        self._names = list(pairs)
        self._where = where  # its fills: a clause on alias f (every pair's, or the scope)
        self._pairs: dict[tuple[str, str], _Pair] = {}  # by the pair's text in COPY rows
        for bot_id, symbol in pairs:
            bot_text, symbol_text = _out_text(bot_id), _out_text(symbol)
            plain = bot_text == bot_id and symbol_text == symbol
            self._pairs[(bot_text, symbol_text)] = _Pair(
                bot_id,
                symbol,
                bot_text,
                symbol_text,
                f"{bot_text}:{symbol_text}:" if plain else None,
                bot_id in registered,
            )
        self._compare = compare
        self._stored: dict[str, str] | None = None
        self._other_ids: dict[str, str | None] = {}  # trade_id text -> source
        self._other_keys: dict[tuple[tuple[str, str], str, str], tuple[str, str | None]] = {}
        self._fifo = SortedFifo()
        self._parsers = (_Numbers(), _Numbers(), _Numbers())
        self._emit: _Emit = _discard
        self._skip = 0  # rows a statement repeats from the previous one
        # Per fill, in stream order: what only trip boundaries and open lots need (COPY text).
        self._prices: list[str] = []
        self._exec_ids: list[str] = []
        self._times: list[str] = []
        self._orders: list[str] = []
        self._links: list[str] = []
        self._reasons: list[str] = []
        self.result = _ShareResult()

    # -- reading -------------------------------------------------------------------------
    def run(self, cursor: Any, emit: _Emit) -> _ShareResult:
        """Derive this share on ``cursor`` (a psycopg2 cursor in the snapshot's transaction)."""
        self._emit = emit
        cursor.execute(_SESSION_SQL)
        self._load_others(cursor)
        if self._compare:
            self._load_stored(cursor)
        where, values = self._where
        rows: list[bytes] = []
        append = rows.append
        batch = self._batch
        limit = _STREAM_ROWS

        def write(row: bytes) -> None:  # psycopg2 calls it once per row
            append(row)
            if len(rows) >= limit:
                batch(rows)

        sink = _Sink(write)
        first = _STREAM_SQL.format(where=where, since="", limit=f" LIMIT {int(_FIRST_ROWS)}")
        cursor.copy_expert(cursor.mogrify(first, values).decode(), sink)
        batch(rows)
        if self.result.fills == _FIRST_ROWS:  # the rest: from the last instant read on
            last = self._times[-1]
            seen = 0  # rows of that instant already read (they come first, in id order)
            while seen < len(self._times) and self._times[-1 - seen] == last:
                seen += 1
            self._skip = seen
            since = " AND f.exec_time >= %s::timestamptz"
            rest = _STREAM_SQL.format(where=where, since=since, limit="")
            cursor.copy_expert(cursor.mogrify(rest, (*values, last)).decode(), sink)
            batch(rows)
        self._finish(cursor)
        return self.result

    def _load_others(self, cursor: Any) -> None:
        for tid, source, bot, symbol, entry, exit_ in _copy_lines(cursor, _OTHERS_SQL, 6):
            src = None if source == _NULL else _copy_unescape(source)
            self._other_ids[tid] = src
            if (bot, symbol) in self._pairs:
                self._other_keys.setdefault(((bot, symbol), entry, exit_), (tid, src))

    def _load_stored(self, cursor: Any) -> None:
        bots = [b for b, _ in self._names]
        symbols = [s for _, s in self._names]
        sql = cursor.mogrify(_STORED_SQL, (bots, symbols)).decode()
        chunks: list[bytes] = []
        cursor.copy_expert(sql, _Sink(chunks.append))
        lines = b"".join(chunks).decode("utf-8").split("\n")
        lines.pop()
        self._stored = {line[: line.index("\t")]: line for line in lines}

    # -- one batch -----------------------------------------------------------------------
    def _batch(self, rows: list[bytes]) -> None:
        if self._skip:
            skip = min(self._skip, len(rows))
            del rows[:skip]
            self._skip -= skip
        if not rows:
            return
        data = b"".join(rows).decode("utf-8")
        rows.clear()
        flat = data.replace("\n", "\t").split("\t")
        del data
        flat.pop()  # the empty string after the last newline
        w = _N_STREAM
        n = len(flat) // w
        if n * w != len(flat):
            raise DatabaseError("unexpected COPY output while reading fills")
        base = len(self._times)
        prices = flat[3::w]
        self._prices += prices
        self._exec_ids += flat[6::w]
        self._times += flat[7::w]
        self._orders += flat[8::w]
        self._links += flat[9::w]
        self._reasons += flat[10::w]
        parse_price, parse_qty, parse_fee = self._parsers
        closed = self._fifo.feed(
            zip(flat[0::w], flat[1::w], strict=True),  # the pair, as _pairs knows it
            [side == BUY for side in flat[2::w]],  # exactly "Buy" or "Sell": valid_side
            parse_price.parse(prices),
            parse_qty.parse(flat[4::w]),
            parse_fee.parse(flat[5::w]),
            range(base, base + n),
        )
        del flat, prices
        self.result.fills += n
        self.result.trips += len(closed)
        with localcontext(_WIDE):
            out = self._render(closed)
        out.sort()
        self._emit(("rows", self.src, self._times[-1], out))

    def _render(self, closed: list[ClosedTrip]) -> list[_Row]:
        """The rows of completed trips (skipped ones recorded instead); runs in ``_WIDE``."""
        out: list[_Row] = []
        append = out.append
        times, exec_ids, reasons = self._times, self._exec_ids, self._reasons
        orders, links, prices = self._orders, self._links, self._prices
        pairs, stored = self._pairs, self._stored
        other_ids = self._other_ids
        result = self.result
        realized = result.realized
        fromiso = datetime.fromisoformat
        quantize = Decimal.quantize
        divide = _QUOTIENT.divide
        wide, q8, null = _WIDE, _Q8, _NULL
        pct_low, pct_high = -_PCT_LIMIT, _PCT_LIMIT
        for key, long, first, last, eq, en, ef, xq, xn, xf, gross, n_in, n_out in closed:
            pair = pairs[key]
            total_fee = ef + xf
            net = gross - total_fee
            acc = realized.get(pair.bot_id)
            if acc is None:
                acc = realized[pair.bot_id] = [0, Decimal(0), Decimal(0), Decimal(0)]
            acc[0] += 1
            acc[1] += net
            acc[3] += total_fee
            exec_id = exec_ids[first]
            prefix = pair.prefix
            if prefix is not None and "\\" not in exec_id:
                trade_id = prefix + exec_id  # make_trade_id, on text that needs no escape
                if len(trade_id) > TRADE_ID_MAX_LEN:
                    trade_id = make_trade_id(pair.bot_id, pair.symbol, exec_id)
            else:
                trade_id = _out_text(
                    make_trade_id(pair.bot_id, pair.symbol, _copy_unescape(exec_id))
                )
            entry_time, exit_time = times[first], times[last]
            entry_at, exit_at = fromiso(entry_time), fromiso(exit_time)
            if exit_at <= entry_at or not pair.registered:
                reason = (
                    SkipReason.ZERO_DURATION
                    if exit_at <= entry_at
                    else SkipReason.BOT_NOT_REGISTERED
                )
                result.skipped.append(
                    SkippedTrip(
                        _copy_unescape(trade_id),
                        pair.bot_id,
                        pair.symbol,
                        entry_at,
                        exit_at,
                        net,
                        reason,
                    )
                )
                continue
            gross8 = quantize(gross, q8, ROUND_HALF_EVEN, wide)  # half-even, as the engine
            net8 = gross8 - ef - xf  # net_pnl = gross_pnl - commissions, exactly
            if other_ids:
                taken = self._taken(trade_id, key, entry_time, exit_time)
                if taken is not None:
                    reason, other_id, other_source = taken
                    result.skipped.append(
                        SkippedTrip(
                            _copy_unescape(trade_id),
                            pair.bot_id,
                            pair.symbol,
                            entry_at,
                            exit_at,
                            net8,
                            reason,
                            _copy_unescape(other_id),
                            other_source,
                        )
                    )
                    continue
            # pnl.trip_figures' values (a single entry or exit fill's price is its average)
            pct = quantize(divide(net * _HUNDRED, en), _Q6, ROUND_HALF_EVEN, wide)
            if pct_low < pct < pct_high:
                pct_text = str(pct)
                if "E" in pct_text:
                    pct_text = _scaled(pct, _Q6)
            else:
                pct_text = null
            numbers = "\t".join(
                (
                    prices[first] if n_in == 1 else str(quantize(divide(en, eq), q8)),
                    str(eq),
                    str(ef),
                    prices[last] if n_out == 1 else str(quantize(divide(xn, xq), q8)),
                    str(xq),
                    str(xf),
                    str(gross8),
                    str(net8),
                    str(total_fee),
                )
            )
            if "E" in numbers:  # tiny or zero: str() took scientific notation
                numbers = "\t".join(map(_n8, map(Decimal, numbers.split("\t"))))
            held = exit_at - entry_at
            line = "\t".join(
                (
                    trade_id,
                    pair.bot_text,
                    pair.symbol_text,
                    orders[first],
                    links[first],
                    "Buy" if long else "Sell",
                    entry_time,
                    reasons[first] or null,
                    orders[last],
                    links[last],
                    "Sell" if long else "Buy",
                    exit_time,
                    reasons[last] or null,
                    str(held.days * 86400 + held.seconds),  # floor, in whole seconds
                    SOURCE,
                    pct_text,
                    numbers,
                )
            )
            if stored is not None and stored.pop(trade_id, None) == line:
                result.unchanged += 1
                continue
            append((exit_time, trade_id, line))
        return out

    def _taken(
        self, trade_id: str, key: tuple[str, str], entry_time: str, exit_time: str
    ) -> tuple[str, str, str | None] | None:
        """Why a row of another source keeps this trip out (trade_id first, as the SQL of
        :data:`_CONFLICTS_SQL` prefers it), with that row's trade_id and source."""
        if trade_id in self._other_ids:
            return SkipReason.TRADE_ID_TAKEN, trade_id, self._other_ids[trade_id]
        other = self._other_keys.get((key, entry_time, exit_time))
        if other is not None:
            return SkipReason.UNIQUE_TRADE_TAKEN, other[0], other[1]
        return None

    def _finish(self, cursor: Any) -> None:
        """Open positions, and what their trips realized so far (partial exits)."""
        result = self.result
        realized = result.realized
        times, exec_ids, orders = self._times, self._exec_ids, self._orders
        runs = self._fifo.open_runs()
        wanted = [_copy_unescape(exec_ids[ref]) for *_, lots in runs for ref, *_ in lots]
        fill_ids: dict[str, int] = {}
        if wanted:
            cursor.execute(
                "SELECT exec_id, id FROM trading.fills WHERE exec_id = ANY(%s)", (wanted,)
            )
            fill_ids = {str(e): int(i) for e, i in cursor.fetchall()}
        with localcontext(_WIDE):
            for key, long, _, totals, lots in runs:
                pair = self._pairs[key]
                side = BUY if long else SELL
                _, _, _, _, _, _, ef, _, _, xf, gross, _, n_exits = totals
                acc = realized.get(pair.bot_id)
                if acc is None:
                    acc = realized[pair.bot_id] = [0, Decimal(0), Decimal(0), Decimal(0)]
                size = open_fees = Decimal(0)
                open_lots = []
                for ref, price, original, remaining, remaining_fee in lots:
                    size += remaining
                    open_fees += remaining_fee
                    exec_id = _copy_unescape(exec_ids[ref])
                    open_lots.append(
                        OpenLot(
                            pair.bot_id,
                            pair.symbol,
                            side,
                            exec_id,
                            datetime.fromisoformat(times[ref]),
                            price,
                            original,
                            remaining,
                            remaining_fee,
                            fill_ids[exec_id],
                            _copy_unescape(orders[ref]),
                        )
                    )
                if n_exits:  # the partial exits' pieces: gross less the fees they carried
                    acc[2] += gross - (ef - open_fees) - xf
                acc[3] += ef + xf  # every fee of the trip: realized or still on a lot
                result.open_positions.append(
                    position_state(pair.bot_id, pair.symbol, side, size, tuple(open_lots))
                )
        if self._stored is not None:
            result.vanished = [_copy_unescape(t) for t in self._stored]
            self._stored = None


def _discard(message: tuple[Any, ...]) -> None:
    """An emit that keeps nothing (before :meth:`_Share.run` sets the real one)."""


class _Sink:
    """A file for ``copy_expert(... TO STDOUT)`` that hands each row to a C-level callable."""

    __slots__ = ("write",)

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self.write = write


def _copy_lines(cursor: Any, sql: str, width: int) -> Iterator[list[str]]:
    """The rows of a small ``COPY ... TO STDOUT``, as lists of their text fields."""
    chunks: list[bytes] = []
    cursor.copy_expert(sql, _Sink(chunks.append))
    for line in b"".join(chunks).decode("utf-8").split("\n")[:-1]:
        fields_ = line.split("\t")
        if len(fields_) != width:
            raise DatabaseError("unexpected COPY output")
        yield fields_


# --------------------------------------------------------------------------- worker processes


@dataclass(frozen=True, slots=True)
class _Job:
    """One worker's share: its pairs' fills in the exported snapshot."""

    src: int
    dsn: str
    snapshot: str
    pairs: tuple[tuple[str, str], ...]
    registered: frozenset[str]
    compare: bool


def _worker_main(jobs: Any, inbox: Any) -> None:
    """Entry point of a worker process: wait for a job (None: nothing to do), derive it and
    post its messages to ``inbox``; an error is posted as text (always picklable)."""
    job: _Job | None = jobs.recv()
    jobs.close()
    if job is None:
        return
    import psycopg2  # in the worker only

    try:
        with gc_paused():
            conn = psycopg2.connect(job.dsn)
            try:
                conn.set_session(readonly=True, isolation_level="REPEATABLE READ")
                cur = conn.cursor()
                cur.execute("SET TRANSACTION SNAPSHOT %s", (job.snapshot,))
                where = _pairs(job.pairs, "f")
                share = _Share(job.src, job.pairs, where, job.registered, compare=job.compare)
                result = share.run(cur, inbox.put)
                conn.rollback()
            finally:
                conn.close()
        inbox.put(("done", job.src, result))
    except psycopg2.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        password = _dsn_password(job.dsn)
        if password:
            first = first.replace(password, "***")
        inbox.put(("error", job.src, "database", f"reading fills failed: {first}"))
    except BaseException as exc:
        inbox.put(("error", job.src, "other", f"P&L rebuild worker: {type(exc).__name__}: {exc}"))


def _dsn_password(dsn: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(dsn).password
    except Exception:
        return None


class _WorkerLost(Exception):
    """A worker process ended without delivering its share (killed, out of memory)."""


class _Crew:
    """Worker processes, spawned before their jobs are known: their start-up (imports)
    overlaps the parent's first queries. Each waits on its own pipe for a job."""

    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.inbox: Any = context.Queue()
        self.procs: list[Any] = []
        self._jobs: list[Any] = []
        try:
            for _ in range(size):
                ours, theirs = context.Pipe()
                proc = context.Process(target=_worker_main, args=(theirs, self.inbox), daemon=True)
                proc.start()
                theirs.close()
                self.procs.append(proc)
                self._jobs.append(ours)
        except BaseException:
            self.stop(kill=True)
            raise

    def assign(self, jobs: Sequence[_Job]) -> dict[int, Any]:
        """Send one job per worker (the rest get None and exit); ``{src: process}``."""
        running = {}
        for k, conn in enumerate(self._jobs):
            job = jobs[k] if k < len(jobs) else None
            try:
                conn.send(job)
            except OSError as exc:  # it died before its job (killed, out of memory)
                if job is not None:
                    raise _WorkerLost(f"worker ended before its job ({exc})") from None
            if job is not None:
                running[job.src] = self.procs[k]
        return running

    def stop(self, *, kill: bool = False) -> None:
        for conn in self._jobs:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)  # not yet assigned: exit; assigned: ignored
            conn.close()
        self._jobs = []
        for proc in self.procs:
            if kill and proc.is_alive():
                proc.kill()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.procs = []
        self.inbox.close()
        self.inbox.cancel_join_thread()


class _Relay(threading.Thread):
    """Moves the workers' messages into the writer's queue; notices a worker that died."""

    def __init__(
        self,
        inbox: Any,
        outbox: queue.Queue[Any],
        running: dict[int, Any],
        writer_done: threading.Event,
    ) -> None:
        super().__init__(name="pnl-rebuild-relay", daemon=True)
        self._inbox = inbox
        self._outbox = outbox
        self._running = dict(running)
        self._writer_done = writer_done
        self.stopping = threading.Event()

    def run(self) -> None:
        exited: dict[int, float] = {}
        while self._running and not self.stopping.is_set():
            try:
                message = self._inbox.get(timeout=0.2)
            except queue.Empty:
                now = time.monotonic()
                for src, proc in list(self._running.items()):
                    if proc.exitcode is None:
                        continue
                    # A clean exit flushes the queue first: give its last messages time.
                    if proc.exitcode != 0 or now - exited.setdefault(src, now) > 5:
                        self._running.pop(src)
                        self._pass(("lost", src, f"exit code {proc.exitcode}"))
                continue
            except (EOFError, OSError) as exc:
                self._pass(("lost", -1, f"queue closed ({exc})"))
                return
            if message[0] in ("done", "error"):
                self._running.pop(message[1], None)
            self._pass(message)

    def _pass(self, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(_Stopped):
            _offer(self._outbox, message, self._writer_done)


def _offer(box: queue.Queue[Any], message: tuple[Any, ...], writer_done: threading.Event) -> None:
    """Put ``message`` in the writer's bounded queue; :class:`_Stopped` if the writer ended
    (then nobody will take it)."""
    while True:
        try:
            box.put(message, timeout=0.2)
            return
        except queue.Full:
            if writer_done.is_set():
                raise _Stopped from None


# --------------------------------------------------------------------------- writing


class _Writer(threading.Thread):
    """Writes the shares' rows while they are still being derived.

    ``ordered`` (no stored row of this rebuild in scope): every row is new, and goes with
    ``COPY`` straight into ``completed_trades`` in ``(exit_time, trade_id)`` order, the
    order the merge's INSERT gives them (so ids and every column are the same). The shares'
    streams are merged by watermark: a row is released once every share still running has
    passed its exit time; rows with the same exit time are put in the order of the
    database's collation (one query, between two COPY statements). Otherwise the new and
    changed rows go into the temporary table, in arrival order, for the merge.
    """

    def __init__(self, cursor: Any, sources: int, inbox: queue.Queue[Any], *, ordered: bool):
        super().__init__(name="pnl-rebuild-writer", daemon=True)
        self._cur = cursor
        self._sources = sources
        self._inbox = inbox
        self._ordered = ordered
        self.results: list[_ShareResult | None] = [None] * sources
        self.copied = 0
        self.temp_table = False
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            self._write()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()

    def _write(self) -> None:
        stream = self._released()
        batch = next(stream, None)
        while batch is not None:
            if self._ordered:
                self._order_ties(batch)
                sql = _COPY_DIRECT_SQL
            else:
                if not self.temp_table:
                    self._cur.execute(_TEMP_TABLE_DDL)
                    self.temp_table = True
                sql = _COPY_TEMP_SQL
            reader = _Reader(batch, stream, self._ordered)
            try:
                self._cur.copy_expert(sql, reader, size=1 << 20)
            except Exception:
                if reader.failure is not None:  # psycopg2 reports it as a cancelled COPY
                    raise reader.failure from None
                raise
            self.copied += int(self._cur.rowcount)
            batch = reader.carry

    def _get(self) -> tuple[Any, ...]:
        while True:
            try:
                message: tuple[Any, ...] = self._inbox.get(timeout=0.2)
                return message
            except queue.Empty:
                if self.stopping.is_set():
                    raise _Stopped from None

    def _released(self) -> Iterator[list[_Row]]:
        """Batches of rows, each sorted, in order when ``ordered`` (ties not yet resolved)."""
        n = self._sources
        pending: list[list[_Row]] = [[] for _ in range(n)]
        marks = [""] * n  # nothing released before every share has sent its first batch
        done = [False] * n
        while not all(done):
            message = self._get()
            kind, src = message[0], message[1]
            if kind == "rows":
                marks[src] = message[2]
                pending[src] += message[3]
            elif kind == "done":
                done[src] = True
                self.results[src] = message[2]
            elif kind == "error":
                if message[2] == "database":
                    raise DatabaseError(message[3])
                raise RuntimeError(message[3])
            elif kind == "lost":
                raise _WorkerLost(message[2])
            running = [marks[s] for s in range(n) if not done[s]]
            limit = min(running) if running and self._ordered else None
            out: list[_Row] = []
            for rows in pending:
                if not rows:
                    continue
                cut = len(rows) if limit is None else bisect.bisect_left(rows, (limit,))
                if cut:
                    out += rows[:cut]
                    del rows[:cut]
            if out:
                out.sort()
                yield out

    def _order_ties(self, batch: list[_Row]) -> None:
        """Rows with equal exit times in the database's order of their trade_ids."""
        groups: dict[str, list[int]] = {}
        for i in range(1, len(batch)):
            if batch[i][0] == batch[i - 1][0]:
                group = groups.setdefault(batch[i][0], [i - 1])
                group.append(i)
        if not groups:
            return
        numbers: list[int] = []
        names: list[str] = []
        for g, positions in enumerate(groups.values()):
            for i in positions:
                numbers.append(g)
                names.append(_copy_unescape(batch[i][1]))
        self._cur.execute(
            "SELECT g, t FROM unnest(%s::int[], %s::varchar[]) AS u(g, t) ORDER BY g, t",
            (numbers, names),
        )
        order = [str(t) for _, t in self._cur.fetchall()]
        for positions in groups.values():
            rows = {_copy_unescape(batch[i][1]): batch[i] for i in positions}
            ranked = [rows[t] for t in order[: len(positions)]]
            del order[: len(positions)]
            for i, row in zip(positions, ranked, strict=True):
                batch[i] = row


class _Stopped(Exception):
    """The other end stopped: the writer was asked to (the calling thread failed), or the
    writer ended (an error) while a message was waiting for it."""


def _has_ties(batch: list[_Row]) -> bool:
    return any(a[0] == b[0] for a, b in pairwise(batch))


class _Reader:
    """The file ``copy_expert(... FROM STDIN)`` reads: the released batches, encoded. In
    order mode it ends the statement before a batch with ties (kept in ``carry``)."""

    def __init__(self, first: list[_Row], stream: Iterator[list[_Row]], ordered: bool) -> None:
        self._first: list[_Row] | None = first
        self._stream = stream
        self._ordered = ordered
        self.carry: list[_Row] | None = None
        self.failure: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        batch = self._first
        self._first = None
        if batch is None:
            try:
                batch = next(self._stream, None)
            except BaseException as exc:
                self.failure = exc
                raise
            if batch is None:
                return b""
            if self._ordered and _has_ties(batch):
                self.carry = batch
                return b""
        return ("\n".join([row[2] for row in batch]) + "\n").encode("utf-8")


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
    order, streamed with COPY, as :class:`~alpha_models.pnl.PnlFill` (for the full engine:
    :func:`~alpha_models.pnl.rebuild`); ``cursor`` is a psycopg2 cursor in a transaction."""
    # ISO UTC text for fromisoformat; no JIT: compiling costs more than this plain scan saves
    cursor.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO'; SET LOCAL jit = off")
    rows: list[bytes] = []
    cursor.copy_expert(_sql(cursor, _READ_SQL, scope=where).decode(), _Sink(rows.append))
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


def default_workers(n_fills: int, *, writing: bool = False) -> int:
    """Processes for a rebuild of ``n_fills``, the calling one included (1 = no others).

    ``writing``: every round trip is to be written (a first rebuild). The server process
    that inserts them (index maintenance of ``completed_trades``: most of the work) then
    needs a core of its own, so the rebuild takes one core fewer.
    """
    if n_fills < PARALLEL_MIN_FILLS:
        return 1
    cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1 if writing else cores))


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
    try:
        return _rebuild_once(engine, bot_ids, workers, dry_run)
    except _WorkerLost as exc:  # killed, out of memory: nothing was committed
        log.warning("P&L rebuild worker lost (%s); rebuilding in one process", exc)
        return _rebuild_once(engine, bot_ids, 1, dry_run)


def _rebuild_once(
    engine: Engine, bot_ids: Sequence[str] | None, workers: int | None, dry_run: bool
) -> RebuildStats:
    import psycopg2

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
    except psycopg2.Error as exc:  # from a raw cursor: the same translation
        wrapped = DBAPIError.instance(None, None, exc, psycopg2.Error)
        raise translate_error(wrapped, settings) from None


class _Clock:
    def __init__(self) -> None:
        self.started = self._last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._last
        self._last = now


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
    wcur.execute(
        "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'trading.fills'::regclass"
    )
    estimate = int(wcur.fetchone()[0])
    scope_f, scope_c = _scope(bot_ids, "f"), _scope(bot_ids, "c")
    # No stored row in scope (a first rebuild): every row is new, written in order.
    wcur.execute(_sql(wcur, _ANY_STORED_SQL, scope=scope_c))
    ordered = not bool(wcur.fetchone()[0])
    max_procs = workers if workers is not None else default_workers(estimate, writing=ordered)
    merged = _Merged()

    with ExitStack() as stack:
        crew: _Crew | None = None
        if max_procs > 1:  # started now: the workers' imports overlap the next queries
            try:
                crew = _Crew(max_procs - 1)
            except (OSError, RuntimeError, AssertionError) as exc:  # e.g. a daemonic caller
                log.warning("P&L rebuild runs in one process: cannot start workers (%s)", exc)
                max_procs = 1
            else:
                stack.push(lambda failed, *_: crew.stop(kill=failed is not None))
        clock.lap("start")

        snap_conn.begin()
        scur: Any = snap_conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        counts: list[tuple[str, str, int, int]] | None = None
        if max_procs > 1:  # the fills per pair share the work out
            counts = _count(scur, scope_f)
            pairs = [(b, s, n) for b, s, n, _ in counts if n]
            total = sum(n for *_, n in pairs)
            procs = workers if workers is not None else default_workers(total, writing=ordered)
            groups = _partitions(pairs, max(1, min(procs, max_procs, len(pairs))))
        else:  # one process: the pairs are enough now, counted while the rows are written
            scope_p = _scope(bot_ids, "p")
            scur.execute(_PAIRS_SQL.format(scope=scope_p[0]), scope_p[1])
            groups = [[(str(b), str(s)) for b, s in scur.fetchall()]]
            groups = [g for g in groups if g]
        shares = [tuple(group) for group in groups]
        clock.lap("count")

        with gc_paused():
            inbox: queue.Queue[Any] = queue.Queue(_AHEAD)
            writer = _Writer(wcur, len(shares), inbox, ordered=ordered)
            if crew is not None and len(shares) > 1:
                scur.execute("SELECT pg_export_snapshot()")
                snapshot = str(scur.fetchone()[0])
                dsn = _worker_dsn(engine)
                jobs = [
                    _Job(src, dsn, snapshot, share, registered, not ordered)
                    for src, share in enumerate(shares[1:], start=1)
                ]
                relay = _Relay(crew.inbox, inbox, crew.assign(jobs), writer.finished)
                relay.start()
                stack.callback(relay.join)
                stack.callback(relay.stopping.set)
            elif crew is not None:
                crew.assign([])
            results: list[_ShareResult] = []
            if shares:
                writer.start()

                def emit(message: tuple[Any, ...]) -> None:
                    _offer(inbox, message, writer.finished)

                try:
                    # One share: the whole scope (the exec_time index orders it, no sort).
                    where = scope_f if len(shares) == 1 else _pairs(shares[0], "f")
                    own = _Share(0, shares[0], where, registered, compare=not ordered)
                    emit(("done", 0, own.run(scur, emit)))
                except _Stopped:  # the writer failed first: its error is the one to report
                    writer.join()
                    if writer.error is not None:
                        raise writer.error from None
                    raise
                except BaseException:
                    writer.stopping.set()
                    writer.join()
                    raise
                clock.lap("derive")
                if counts is None:
                    counts = _count(scur, scope_f)
                    clock.lap("count")
                writer.join()
                clock.lap("write")
                if writer.error is not None:
                    raise writer.error
                results = [r for r in writer.results if r is not None]
            if counts is None:
                counts = _count(scur, scope_f)
            snap_conn.rollback()
            pairs = [(b, s, n) for b, s, n, _ in counts if n]
            if ordered:
                merged.inserted = writer.copied
            else:
                _merge(wcur, scope_c, pairs, results, writer.temp_table, merged, clock)
    if dry_run:
        write_conn.rollback()
    else:
        write_conn.commit()
    clock.lap("commit")
    return _stats(results, counts, merged, bot_ids, len(shares) or 1, dry_run, clock)


def _count(cursor: Any, scope: _Clause) -> list[tuple[str, str, int, int]]:
    """``(bot_id, symbol, trade fills, other fills)`` per pair in scope."""
    cursor.execute(_COUNT_SQL.format(scope=scope[0]), scope[1])
    return [(str(b), str(s), int(n), int(o)) for b, s, n, o in cursor.fetchall()]


def _merge(
    cur: Any,
    scope: _Clause,
    pairs: Sequence[tuple[str, str, int]],
    results: Sequence[_ShareResult],
    temp_table: bool,
    merged: _Merged,
    clock: _Clock,
) -> None:
    """Merge the new and changed rows (in the temporary table, if any) into
    ``completed_trades``: set-based, in the caller's transaction. A stored row is deleted
    when its trip is no longer derived (vanished, skipped, or its pair has no trade left).
    A small statistics sample of the temporary table is enough for the planner to pick hash
    joins (without one it may loop over an index for every row)."""
    gone = [trade_id for r in results for trade_id in r.vanished]
    if temp_table:
        cur.execute("SET LOCAL default_statistics_target = 10; ANALYZE alpha_derived_trips")
        # Rows of other sources committed since the snapshot: the same check, in SQL.
        cur.execute(_CONFLICTS_SQL)
        merged.conflicts.extend(SkippedTrip(*row) for row in cur.fetchall())
        gone += [s.trade_id for s in merged.conflicts]
    clock.lap("conflicts")
    # Stale rows first: the remaining ones can then never collide on unique_trade.
    derived = _pairs([(b, s) for b, s, _ in pairs], "c")
    cur.execute(_sql(cur, _DELETE_SQL, scope=scope, ids=("%s", (gone,)), pairs=derived))
    merged.deleted = int(cur.rowcount)
    if temp_table:
        cur.execute(_UPDATE_SQL)
        merged.updated = int(cur.rowcount)
        cur.execute(_INSERT_SQL)
        merged.inserted = int(cur.rowcount)
    clock.lap("merge")


def _stats(
    parts: Sequence[_ShareResult],
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
