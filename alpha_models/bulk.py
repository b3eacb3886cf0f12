# ruff: noqa: S608  (the only interpolated text is the constant column lists)
"""Bulk ingestion: many fills at COPY speed, with the same result as one-by-one recording.

All in one transaction: the batch is stored completely or not at all.

1. **Fills.** The input is consumed lazily, while it is sent: ``COPY trading.fills FROM
   STDIN`` reads from a file-like object whose ``read()`` pulls the next fills from the
   caller's iterator (validating them, when the iterator validates) and formats them, so
   Python works on the next chunk while the server stores the previous one. Ids come from
   the column default, in input order, as ``nextval`` called up front would give them; they
   are then known from the first row's id and ``currval`` (one query), or read back when
   another writer took ids from the sequence meanwhile.

   When an execution of the batch is already stored the batch goes the *staged* way: COPY
   into a temporary table, one ``INSERT ... SELECT ... ON CONFLICT (exec_id) DO NOTHING``,
   and re-attribution of stored ``unknown`` copies to the batch's bot. The first chunk is
   read ahead and looked up before the COPY starts (a re-run or an overlapping batch
   repeats its first executions: staged at once, nothing wasted). A stored execution
   further on, or one a concurrent writer commits meanwhile, makes the COPY fail on the
   ``exec_id`` key: the transaction is rolled back and restarts staged, with the same rows
   except the ids, which then skip the sequence values the failed COPY used.
2. **Lots and positions.** Every (bot, symbol) pair that received a new fill gets its lots
   rebuilt in (exec_time, id) order: the same FIFO as ``trading.record_fill`` (an opposite
   fill consumes the oldest open lots, a larger one flips; closed lots are kept with
   remaining 0), from the batch alone for a pair without a position row, from all its
   stored fills otherwise. All pairs' lots go in **one** COPY, built pair by pair while the
   server stores the previous pair's, and all positions are updated by one statement
   (``open_qty`` and ``open_cost`` set NULL: unknown, the next ``record_fill`` sums the
   lots once).
3. **One execution, one row** (as ``trading.record_fill`` since migration 0019): when a new
   fill of the batch has a ``client_order_id``, a bot's own report of that order (exec_id
   ``legacy:...``, order id ``synthetic:...`` or source ``tracker``; adopted history, with
   no source, excepted) and the exchange's execution of it (same bot, symbol and link) are
   not both kept: the self-report moves to ``audit.quarantined_fills`` (every column, with
   the reason) before its pair's lots are rebuilt, whichever of the two came first. (One by
   one, a self-report arriving after the exchange's copy is not stored at all; the batch
   stores it and moves it at once: the same fills, positions and lots, and the report kept.)

The server's share is bounded by what it must store: each fill row with its 7 indexes (as
a plain COPY of the same rows) and each lot row with its 5 indexes and 2 foreign-key checks
(``bots`` and ``fills``, run per row), which costs the server 1.2-1.7x a fill row. A
history where every fill opens a lot therefore needs well over twice a plain COPY's server
time (``benchmarks/bench_writepath.py`` prints that bound).
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from itertools import islice
from typing import Any, NamedTuple, Protocol

import psycopg2.errors
from sqlalchemy.engine import Engine

from alpha_models.inputs import UNKNOWN_BOT, ExecType, FillInput
from alpha_models.pnl import gc_paused

_Q8 = Decimal("1E-8")
_ZERO = Decimal(0)
_NULL = "\\N"
_CHUNK = 1000  # fills per read() of the COPY stream (~140 kB of text)
_EXEC_ID_KEY = "fills_exec_id_key"

# Column orders of the COPY texts: a lot's columns that come from its fill first, in the
# order they open the fill's line, so a lot's line starts with the same text (its "head").
_HEAD_COLUMNS = "bot_id, symbol, exec_id, side, exec_price, exec_time, order_id"
_FILL_COLUMNS = (
    f"{_HEAD_COLUMNS}, client_order_id, exec_qty, close_reason, commission, exec_type, source"
)
_LOT_COLUMNS = (
    "bot_id, symbol, entry_id, side, entry_price, entry_time, entry_order_id, "
    "entry_fill_id, original_qty, remaining_qty, entry_commission, status"
)

Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class BulkResult:
    received: int
    new: int
    duplicate: int
    funding: int
    pairs_rebuilt: int
    #: True when a stored execution sent the batch the staged way (see the module docstring).
    staged: bool = False
    #: Self-reports moved to ``audit.quarantined_fills`` (step 3 of the module docstring).
    folded: int = 0


def _esc(text: str) -> str:
    """COPY text escaping for validated strings (printable: only a backslash can occur)."""
    return text.replace("\\", "\\\\") if "\\" in text else text


def _head(
    bot_id: str, symbol: str, exec_id: str, side: str, price: Decimal, time: datetime, order_id: str
) -> str:
    """The text a fill's line and its lot's line both start with (``_HEAD_COLUMNS``)."""
    return (
        f"{bot_id}\t{symbol}\t{_esc(exec_id)}\t{side}\t{price!s}\t{time.isoformat()}\t"
        f"{_esc(order_id)}\t"
    )


def _fill_tail(f: FillInput) -> str:
    """The rest of a fill's line, after its head."""
    reason = _NULL if f.close_reason is None else _esc(f.close_reason)
    return (
        f"{_esc(f.client_order_id)}\t{f.exec_qty!s}\t{reason}\t{f.commission!s}\t"
        f"{f.exec_type}\t{f.source}\n"
    )


class _FillReader:
    """The batch as a file for ``copy_expert``: each ``read()`` takes the next fills.

    Keeps what the later steps need: the trades (first occurrence of each ``exec_id``, in
    input order) with the head of their line, their positions per pair, and the funding
    settlements. An exception from the caller's iterator (a rejected fill) is kept in
    :attr:`error` and re-raised: psycopg2 would otherwise replace it by a ``QueryCanceled``.
    """

    def __init__(self, fills: Iterable[FillInput]) -> None:
        self._fills = iter(fills)
        self.received = 0
        self.trades: list[FillInput] = []
        self.heads: list[str] = []
        self.by_pair: dict[Pair, list[int]] = {}
        self.funding: list[FillInput] = []
        #: Indexes in ``trades`` of the fills with a ``client_order_id`` (step 3).
        self.linked: list[int] = []
        self.error: BaseException | None = None
        self._seen: set[str] = set()
        self._ahead: str | None = None

    def peek(self) -> list[str]:
        """Read the first chunk ahead (``read()`` returns it first): its ``exec_id`` values."""
        self._ahead = self.read()
        return [f.exec_id for f in self.trades]

    def read(self, size: int = -1) -> str:
        if self._ahead is not None:
            text, self._ahead = self._ahead, None
            return text
        try:
            while True:
                chunk = list(islice(self._fills, _CHUNK))
                if not chunk:
                    return ""
                self.received += len(chunk)
                text = self._lines(chunk)
                if text:
                    return text
        except BaseException as exc:
            self.error = exc
            raise

    def _lines(self, chunk: list[FillInput]) -> str:
        lines: list[str] = []
        trades, heads, by_pair, seen = self.trades, self.heads, self.by_pair, self._seen
        for f in chunk:
            if f.exec_type is ExecType.FUNDING:
                self.funding.append(f)
                continue
            if f.exec_id in seen:
                continue
            seen.add(f.exec_id)
            if f.bot_id != UNKNOWN_BOT:
                pair = (f.bot_id, f.symbol)
                indexes = by_pair.get(pair)
                if indexes is None:
                    by_pair[pair] = [len(trades)]
                else:
                    indexes.append(len(trades))
                if f.client_order_id:
                    self.linked.append(len(trades))
            trades.append(f)
            head = _head(
                f.bot_id, f.symbol, f.exec_id, f.side, f.exec_price, f.exec_time, f.order_id
            )
            heads.append(head)
            lines.append(head + _fill_tail(f))
        return "".join(lines)

    def drain(self) -> None:
        """Consume the rest of the input (the COPY may have stopped reading on an error)."""
        while self.read():
            pass


class _Chunks:
    """A file for ``copy_expert`` over text chunks produced on demand."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks

    def read(self, size: int = -1) -> str:
        return next(self._chunks, "")


class _Fill(Protocol):
    @property
    def side(self) -> str: ...
    @property
    def exec_price(self) -> Decimal: ...
    @property
    def exec_qty(self) -> Decimal: ...
    @property
    def exec_time(self) -> datetime: ...
    @property
    def commission(self) -> Decimal: ...


class _StoredFill(NamedTuple):
    side: str
    exec_price: Decimal
    exec_qty: Decimal
    exec_time: datetime
    commission: Decimal


@dataclass(slots=True)
class _Lot:
    fill_id: int
    head: str
    fill: _Fill
    original: Decimal
    remaining: Decimal
    fee: Decimal


def build_lots(fills: Iterable[tuple[int, str, _Fill]]) -> list[_Lot]:
    """FIFO lots of one pair from its ``(id, head, fill)`` in (exec_time, id) order; closed
    lots are kept with remaining 0."""
    lots: list[_Lot] = []
    open_lots: deque[_Lot] = deque()
    book_side = ""  # the side of the open lots
    for fill_id, head, fill in fills:
        qty = fill.exec_qty
        left = qty
        if open_lots and book_side != fill.side:
            while open_lots:
                lot = open_lots[0]
                if lot.remaining > left:
                    lot.remaining -= left
                    left -= left  # zero, at the scale of the quantities
                    break
                left -= lot.remaining
                lot.remaining -= lot.remaining
                open_lots.popleft()
                if not left:
                    break
        if left > 0:
            fee = fill.commission
            if left != qty:
                fee = (fee * left / qty).quantize(_Q8, ROUND_HALF_UP)
            lot = _Lot(fill_id, head, fill, left, left, fee)
            lots.append(lot)
            open_lots.append(lot)
            book_side = fill.side
    return lots


def _position(lots: list[_Lot]) -> tuple[str, Decimal, Decimal | None]:
    open_lots = [lot for lot in lots if lot.remaining > 0]
    size = sum((lot.remaining for lot in open_lots), _ZERO)
    if size == 0:
        return "", _ZERO, None
    avg = sum((lot.remaining * lot.fill.exec_price for lot in open_lots), _ZERO) / size
    return str(open_lots[0].fill.side), size, avg.quantize(_Q8, ROUND_HALF_UP)


def _lot_text(lots: list[_Lot]) -> str:
    lines = []
    for lot in lots:
        remaining = lot.remaining
        if remaining == 0:
            status = "closed"
        elif remaining == lot.original:
            status = "open"
        else:
            status = "partially_closed"
        lines.append(
            f"{lot.head}{lot.fill_id}\t{lot.original!s}\t{remaining!s}\t{lot.fee!s}\t{status}\n"
        )
    return "".join(lines)


@dataclass(slots=True)
class _Stored:
    """What step 1 stored: the id of each trade and which pairs must be rebuilt."""

    ids: Sequence[int]
    inserted: set[int] | None  # None: every trade was inserted
    moved: set[Pair]  # pairs that received a re-attributed 'unknown' copy
    staged: bool


def ingest_bulk(engine: Engine, fills: Iterable[FillInput]) -> BulkResult:
    """Store ``fills`` (validated) in one transaction; see the module docstring.

    ``fills`` is consumed once, while the COPY runs: an exception it raises (a rejected
    fill) rolls the whole batch back and is re-raised as is.
    """
    reader = _FillReader(fills)
    # A batch keeps a few tracked objects per fill alive; a full collection would walk them
    # all again (up to a second per 200,000 fills) and find nothing.
    with gc_paused():
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            stored = _store_fills(raw, cur, reader)
            pairs = sorted(set(_new_pairs(reader, stored)) | stored.moved)
            folded = _rebuild_pairs(cur, reader, stored, pairs) if pairs else 0
            funding_new = _insert_funding(cur, reader.funding)
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()
    new = len(reader.trades) if stored.inserted is None else len(stored.inserted)
    duplicate = reader.received - len(reader.funding) - new
    return BulkResult(
        reader.received, new, duplicate, funding_new, len(pairs), stored.staged, folded
    )


def _store_fills(raw: Any, cur: Any, reader: _FillReader) -> _Stored:
    """Step 1: direct when no execution of the batch is stored yet, else staged."""
    first = reader.peek()
    if not first:  # no trade in the batch
        return _Stored([], None, set(), staged=False)
    # A re-run or an overlapping batch usually repeats its first executions: staged at once.
    cur.execute("SELECT EXISTS (SELECT FROM trading.fills WHERE exec_id = ANY(%s))", (first,))
    if cur.fetchone()[0]:
        reader.drain()
        return _stage_fills(cur, reader.trades, reader.heads)
    try:
        return _copy_fills(cur, reader)
    except psycopg2.errors.UniqueViolation as exc:
        # Stored later in the batch, or by a concurrent writer since the check.
        if exc.diag.constraint_name != _EXEC_ID_KEY:
            raise
        raw.rollback()  # nothing else was written yet
        reader.drain()
        return _stage_fills(cur, reader.trades, reader.heads)


def _copy_fills(cur: Any, reader: _FillReader) -> _Stored:
    """Step 1, direct: COPY the batch straight into ``trading.fills``."""
    try:
        cur.copy_expert(f"COPY trading.fills ({_FILL_COLUMNS}) FROM STDIN", reader, size=1 << 16)
    except psycopg2.Error:
        if reader.error is not None:
            raise reader.error from None
        raise
    n = len(reader.trades)
    # COPY evaluates the id default row by row, in input order: if nobody else took ids
    # from the sequence meanwhile, the batch holds first..currval.
    cur.execute(
        "SELECT id, currval('trading.fills_id_seq') FROM trading.fills WHERE exec_id = %s",
        (reader.trades[0].exec_id,),
    )
    first, last = cur.fetchone()
    if last - first + 1 == n:
        return _Stored(range(first, last + 1), None, set(), staged=False)
    cur.execute("SELECT exec_id, id FROM trading.fills WHERE id BETWEEN %s AND %s", (first, last))
    by_exec = dict(cur.fetchall())
    return _Stored([by_exec[f.exec_id] for f in reader.trades], None, set(), staged=False)


def _stage_fills(cur: Any, trades: list[FillInput], heads: list[str]) -> _Stored:
    """Step 1, staged: some executions are stored already (see the module docstring)."""
    cur.execute(
        f"CREATE TEMP TABLE alpha_stage ON COMMIT DROP AS "
        f"SELECT id, {_FILL_COLUMNS} FROM trading.fills WITH NO DATA"
    )
    # Ids in input order, as the direct COPY gives them.
    cur.execute(
        "ALTER TABLE alpha_stage ALTER COLUMN id SET DEFAULT nextval('trading.fills_id_seq')"
    )
    text = (
        "".join([heads[k] + _fill_tail(trades[k]) for k in range(i, min(i + _CHUNK, len(trades)))])
        for i in range(0, len(trades), _CHUNK)
    )
    cur.copy_expert(f"COPY alpha_stage ({_FILL_COLUMNS}) FROM STDIN", _Chunks(text), size=1 << 16)
    cur.execute("SELECT exec_id, id FROM alpha_stage")
    by_exec = dict(cur.fetchall())
    cur.execute(
        f"INSERT INTO trading.fills (id, {_FILL_COLUMNS}) SELECT id, {_FILL_COLUMNS} "
        "FROM alpha_stage ON CONFLICT (exec_id) DO NOTHING RETURNING id"
    )
    inserted = {row[0] for row in cur.fetchall()}
    # An 'unknown' copy of an execution the batch attributes to a bot: re-attribute it,
    # as trading.record_fill does.
    cur.execute(
        "UPDATE trading.fills f SET bot_id = s.bot_id, "
        "client_order_id = CASE WHEN f.client_order_id = '' THEN s.client_order_id "
        "ELSE f.client_order_id END, "
        "close_reason = coalesce(nullif(s.close_reason, ''), f.close_reason), "
        "source = coalesce(f.source, s.source) "
        "FROM alpha_stage s WHERE f.exec_id = s.exec_id AND f.bot_id = %s "
        "AND s.bot_id <> %s RETURNING f.bot_id, f.symbol",
        (UNKNOWN_BOT, UNKNOWN_BOT),
    )
    moved = {(b, sym) for b, sym in cur.fetchall()}
    return _Stored([by_exec[f.exec_id] for f in trades], inserted, moved, staged=True)


def _new_pairs(reader: _FillReader, stored: _Stored) -> Iterator[Pair]:
    """Pairs that received at least one new fill."""
    if stored.inserted is None:
        yield from reader.by_pair
        return
    for pair, indexes in reader.by_pair.items():
        if any(stored.ids[i] in stored.inserted for i in indexes):
            yield pair


def _rebuild_pairs(cur: Any, reader: _FillReader, stored: _Stored, pairs: list[Pair]) -> int:
    """Steps 2 and 3: fold self-reports, replace the lots and position of ``pairs`` (sorted:
    the lock order); returns the number of self-reports folded."""
    bots = [bot for bot, _ in pairs]
    symbols = [symbol for _, symbol in pairs]
    unnest = "unnest(%s::varchar[], %s::varchar[]) WITH ORDINALITY AS t(bot_id, symbol, n)"
    # A pair with a position row has fills stored before this batch: it is rebuilt from
    # all its fills. So is one whose row another writer created before we locked it.
    cur.execute(
        f"SELECT p.bot_id, p.symbol FROM trading.positions p JOIN {unnest} "
        "ON p.bot_id = t.bot_id AND p.symbol = t.symbol",
        (bots, symbols),
    )
    from_db = {(bot, symbol) for bot, symbol in cur.fetchall()} | stored.moved
    cur.execute(
        f"SELECT p.version, p.last_exec_time FROM {unnest} "
        "CROSS JOIN LATERAL trading.lock_position(t.bot_id, t.symbol) p ORDER BY t.n",
        (bots, symbols),
    )
    for pair, (version, last) in zip(pairs, cur.fetchall(), strict=True):
        if version != 0 or last is not None:
            from_db.add(pair)
    cur.execute(
        f"DELETE FROM trading.position_entries e USING {unnest} "
        "WHERE e.bot_id = t.bot_id AND e.symbol = t.symbol",
        (bots, symbols),
    )
    folded = _fold_self_reports(cur, reader, stored)
    from_db |= folded.keys()  # their batch rows may be gone: rebuilt from what is stored
    fills_of: dict[Pair, list[tuple[int, str, _Fill]]] = {}
    for bot_id, symbol in pairs:
        if (bot_id, symbol) in from_db:
            cur.execute(
                "SELECT id, exec_id, order_id, side, exec_price, exec_qty, exec_time, commission "
                "FROM trading.fills WHERE bot_id = %s AND symbol = %s ORDER BY exec_time, id",
                (bot_id, symbol),
            )
            fills_of[bot_id, symbol] = [
                (
                    fill_id,
                    _head(bot_id, symbol, exec_id, side, price, time, order_id),
                    _StoredFill(side, price, qty, time, fee),
                )
                for fill_id, exec_id, order_id, side, price, qty, time, fee in cur.fetchall()
            ]
    positions: list[tuple[Any, ...]] = []

    def lots_text() -> Iterator[str]:
        # Built pair by pair while the server stores the previous pair's lots.
        ids, trades, heads, inserted = stored.ids, reader.trades, reader.heads, stored.inserted
        for pair in pairs:
            rows = fills_of.get(pair)
            if rows is None:  # a new pair: the batch alone, in (exec_time, id) order
                indexes = reader.by_pair[pair]
                if inserted is not None:
                    indexes = [i for i in indexes if ids[i] in inserted]
                times = [trades[i].exec_time for i in indexes]
                if any(map(operator.gt, times, times[1:])):
                    # ids grow with the input order: a stable sort on the time is (time, id).
                    indexes.sort(key=lambda i: trades[i].exec_time)
                last: datetime | None = trades[indexes[-1]].exec_time
                lots = build_lots(
                    zip(
                        map(ids.__getitem__, indexes),
                        map(heads.__getitem__, indexes),
                        map(trades.__getitem__, indexes),
                        strict=True,
                    )
                )
            else:
                last = rows[-1][2].exec_time if rows else None
                lots = build_lots(rows)
            side, size, avg = _position(lots)
            positions.append((*pair, size, side, avg, last))
            if lots:
                yield _lot_text(lots)

    cur.copy_expert(
        f"COPY trading.position_entries ({_LOT_COLUMNS}) FROM STDIN", _Chunks(lots_text())
    )
    cur.execute(
        "UPDATE trading.positions p SET size = u.size, side = u.side, avg_entry_price = u.avg, "
        "open_qty = NULL, open_cost = NULL, version = p.version + 1, "
        "last_exec_time = greatest(p.last_exec_time, u.last), updated_at = now() "
        "FROM unnest(%s::varchar[], %s::varchar[], %s::numeric[], %s::varchar[], "
        "%s::numeric[], %s::timestamptz[]) AS u(bot_id, symbol, size, side, avg, last) "
        "WHERE p.bot_id = u.bot_id AND p.symbol = u.symbol",
        tuple(list(column) for column in zip(*positions, strict=True)),
    )
    return sum(folded.values())


# Self-reports and the exchange's executions of an order, told apart as trading.record_fill
# does (migration 0019); %% is psycopg2's literal %.
_FOLD_SQL = """
WITH links AS (
    SELECT DISTINCT * FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[])
        AS l(bot_id, symbol, link)
), superseded AS (
    SELECT f.id, (SELECT min(x.exec_id) FROM trading.fills x
                   WHERE x.bot_id = f.bot_id AND x.symbol = f.symbol
                     AND x.client_order_id = f.client_order_id
                     AND x.exec_id NOT LIKE 'legacy:%%' AND x.order_id NOT LIKE 'synthetic:%%'
                     AND x.source IS DISTINCT FROM 'tracker') AS by_exec_id
      FROM trading.fills f JOIN links l
        ON f.bot_id = l.bot_id AND f.symbol = l.symbol AND f.client_order_id = l.link
     WHERE f.source IS NOT NULL
       AND (f.exec_id LIKE 'legacy:%%' OR f.order_id LIKE 'synthetic:%%' OR f.source = 'tracker')
), gone AS (
    DELETE FROM trading.fills f USING superseded s
     WHERE f.id = s.id AND s.by_exec_id IS NOT NULL
    RETURNING f.*, s.by_exec_id
)
INSERT INTO audit.quarantined_fills (
    id, bot_id, symbol, order_id, client_order_id, side, exec_price, exec_qty, exec_time,
    close_reason, commission, created_at, exec_id, exec_type, source, reason, details)
SELECT g.id, g.bot_id, g.symbol, g.order_id, g.client_order_id, g.side, g.exec_price,
       g.exec_qty, g.exec_time, g.close_reason, g.commission, g.created_at, g.exec_id,
       g.exec_type, g.source,
       'superseded by the exchange''s execution ' || g.by_exec_id,
       jsonb_build_object('superseded_by', g.by_exec_id, 'client_order_id', g.client_order_id,
                          'caller', session_user::text, 'path', 'bulk ingest')
  FROM gone g
RETURNING bot_id, symbol
"""


def _fold_self_reports(cur: Any, reader: _FillReader, stored: _Stored) -> dict[Pair, int]:
    """Step 3: move the self-reports of orders that also have an exchange execution stored
    (either of the two may be the batch's) to ``audit.quarantined_fills``; per pair, how many.

    Only the links of the batch's new fills are looked up (``idx_fills_client_id``): a batch
    without links runs no query here.
    """
    trades, ids, inserted = reader.trades, stored.ids, stored.inserted
    links = {
        (trades[i].bot_id, trades[i].symbol, trades[i].client_order_id)
        for i in reader.linked
        if inserted is None or ids[i] in inserted
    }
    if not links:
        return {}
    cur.execute(_FOLD_SQL, tuple(list(column) for column in zip(*links, strict=True)))
    folded: dict[Pair, int] = {}
    for bot_id, symbol in cur.fetchall():
        folded[bot_id, symbol] = folded.get((bot_id, symbol), 0) + 1
    return folded


def _insert_funding(cur: Any, funding: list[FillInput]) -> int:
    """Funding settlements, in input order; the first of a repeated ``exec_id`` wins."""
    if not funding:
        return 0
    columns = [
        [f.exec_id for f in funding],
        [f.bot_id for f in funding],
        [f.symbol for f in funding],
        [str(f.side) for f in funding],
        [f.exec_qty for f in funding],
        [f.exec_price for f in funding],
        [f.commission for f in funding],
        [f.exec_time for f in funding],
        [f.source for f in funding],
    ]
    cur.execute(
        "INSERT INTO trading.funding_settlements (exec_id, bot_id, symbol, side, position_qty, "
        "mark_price, fee, exec_time, source) "
        "SELECT exec_id, bot_id, symbol, side, qty, price, fee, exec_time, source "
        "FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], "
        "%s::numeric[], %s::numeric[], %s::numeric[], %s::timestamptz[], %s::varchar[]) "
        "WITH ORDINALITY AS u(exec_id, bot_id, symbol, side, qty, price, fee, exec_time, "
        "source, n) ORDER BY n ON CONFLICT (exec_id) DO NOTHING",
        columns,
    )
    return int(cur.rowcount)
