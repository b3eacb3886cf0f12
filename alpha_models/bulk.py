# ruff: noqa: S608  (the only interpolated text is the constant column list)
"""Bulk ingestion: many fills at COPY speed, with the same result as one-by-one recording.

Fills are COPYed into a temporary table, inserted into ``trading.fills`` in one
``INSERT ... SELECT ... ON CONFLICT (exec_id) DO NOTHING``, and every (bot, symbol) pair
that received a new fill gets its lots and position rebuilt from its fills in
(exec_time, id) order: the same FIFO as ``trading.record_fill`` (an opposite fill consumes
the oldest open lots, a larger one flips), computed here in Python and written back with
COPY. All in one transaction: the batch is stored completely or not at all.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.engine import Engine

from alpha_models.inputs import UNKNOWN_BOT, FillInput

_Q8 = Decimal("1E-8")
_ZERO = Decimal(0)

_STAGE_COLUMNS = (
    "exec_id, bot_id, symbol, order_id, client_order_id, side, exec_price, exec_qty, "
    "exec_time, close_reason, commission, exec_type, source"
)


@dataclass(frozen=True, slots=True)
class BulkResult:
    received: int
    new: int
    duplicate: int
    funding: int
    pairs_rebuilt: int


def _esc(text: str) -> str:
    """COPY text escaping for validated strings (printable: only a backslash can occur)."""
    return text.replace("\\", "\\\\") if "\\" in text else text


def _stage_rows(fills: Iterable[tuple[int, FillInput]]) -> Iterator[str]:
    for fill_id, f in fills:
        reason = "\\N" if f.close_reason is None else _esc(f.close_reason)
        yield (
            f"{fill_id}\t{_esc(f.exec_id)}\t{f.bot_id}\t{f.symbol}\t{_esc(f.order_id)}\t"
            f"{_esc(f.client_order_id)}\t{f.side.value}\t{f.exec_price}\t{f.exec_qty}\t"
            f"{f.exec_time.isoformat()}\t{reason}\t{f.commission}\t{f.exec_type.value}\t"
            f"{f.source}\n"
        )


@dataclass(slots=True)
class _Lot:
    fill_id: int
    exec_id: str
    order_id: str
    side: str
    price: Decimal
    original: Decimal
    remaining: Decimal
    time: datetime
    fee: Decimal


def build_lots(fills: Iterable[tuple[Any, ...]]) -> list[_Lot]:
    """FIFO lots of one pair from its fills ``(id, exec_id, order_id, side, price, qty, time,
    commission)`` in (exec_time, id) order; closed lots are kept with remaining 0."""
    lots: list[_Lot] = []
    open_lots: deque[_Lot] = deque()
    for fill_id, exec_id, order_id, side, price, qty, when, fee in fills:
        left: Decimal = qty
        if open_lots and open_lots[0].side != side:
            while open_lots and left > 0:
                lot = open_lots[0]
                take = min(lot.remaining, left)
                lot.remaining -= take
                left -= take
                if lot.remaining == 0:
                    open_lots.popleft()
        if left > 0:
            lot_fee = fee if left == qty else (fee * left / qty).quantize(_Q8, ROUND_HALF_UP)
            lot = _Lot(fill_id, exec_id, order_id, side, price, left, left, when, lot_fee)
            lots.append(lot)
            open_lots.append(lot)
    return lots


def _position(lots: list[_Lot]) -> tuple[str, Decimal, Decimal | None]:
    open_lots = [lot for lot in lots if lot.remaining > 0]
    size = sum((lot.remaining for lot in open_lots), _ZERO)
    if size == 0:
        return "", _ZERO, None
    avg = sum((lot.remaining * lot.price for lot in open_lots), _ZERO) / size
    return open_lots[0].side, size, avg.quantize(_Q8, ROUND_HALF_UP)


def _lot_status(lot: _Lot) -> str:
    if lot.remaining == 0:
        return "closed"
    return "open" if lot.remaining == lot.original else "partially_closed"


def ingest_bulk(engine: Engine, fills: Iterable[FillInput]) -> BulkResult:
    """Store ``fills`` (validated) in one transaction; see the module docstring."""
    batch = list(fills)
    trades = list({f.exec_id: f for f in reversed([f for f in batch if f.is_trade])}.values())
    trades.reverse()  # first occurrence of each exec_id, in input order
    funding = [f for f in batch if f.is_funding]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        # Ids come from the fills sequence up front, so new lots need no read-back.
        cur.execute(
            "SELECT nextval('trading.fills_id_seq') FROM generate_series(1, %s)", (len(trades),)
        )
        ids = [row[0] for row in cur.fetchall()]
        cur.execute(
            f"CREATE TEMP TABLE alpha_stage ON COMMIT DROP AS "
            f"SELECT id, {_STAGE_COLUMNS} FROM trading.fills WITH NO DATA"
        )
        cur.copy_expert(
            f"COPY alpha_stage (id, {_STAGE_COLUMNS}) FROM STDIN",
            io.StringIO("".join(_stage_rows(zip(ids, trades, strict=True)))),
        )
        # Pairs that hold fills already need a rebuild from the database; new pairs are
        # computed from the batch alone.
        cur.execute(
            "SELECT DISTINCT s.bot_id, s.symbol FROM alpha_stage s JOIN trading.positions p "
            "ON p.bot_id = s.bot_id AND p.symbol = s.symbol"
        )
        existing_pairs = {(b, sym) for b, sym in cur.fetchall()}
        cur.execute(
            f"INSERT INTO trading.fills (id, {_STAGE_COLUMNS}) SELECT id, {_STAGE_COLUMNS} "
            "FROM alpha_stage ON CONFLICT (exec_id) DO NOTHING RETURNING id"
        )
        inserted = {row[0] for row in cur.fetchall()}
        # An 'unknown' copy of an execution the batch attributes to a bot: re-attribute it.
        cur.execute(
            "UPDATE trading.fills f SET bot_id = s.bot_id, "
            "close_reason = coalesce(nullif(s.close_reason, ''), f.close_reason) "
            "FROM alpha_stage s WHERE f.exec_id = s.exec_id AND f.bot_id = %s "
            "AND s.bot_id <> %s RETURNING f.bot_id, f.symbol",
            (UNKNOWN_BOT, UNKNOWN_BOT),
        )
        moved = {(b, sym) for b, sym in cur.fetchall()}
        by_pair: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for fill_id, f in zip(ids, trades, strict=True):
            if fill_id in inserted and f.bot_id != UNKNOWN_BOT:
                by_pair.setdefault((f.bot_id, f.symbol), []).append(
                    (
                        fill_id,
                        f.exec_id,
                        f.order_id,
                        f.side.value,
                        f.exec_price,
                        f.exec_qty,
                        f.exec_time,
                        f.commission,
                    )
                )
        pairs = sorted(set(by_pair) | moved)
        for pair in pairs:
            if pair in existing_pairs or pair in moved:
                _rebuild_pair(cur, *pair)
            else:
                rows = sorted(by_pair[pair], key=lambda r: (r[6], r[0]))
                _write_pair(cur, pair[0], pair[1], rows)
        funding_new = 0
        for f in funding:
            cur.execute(
                "INSERT INTO trading.funding_settlements (exec_id, bot_id, symbol, side, "
                "position_qty, mark_price, fee, exec_time, source) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (exec_id) DO NOTHING",
                (
                    f.exec_id,
                    f.bot_id,
                    f.symbol,
                    f.side.value,
                    f.exec_qty,
                    f.exec_price,
                    f.commission,
                    f.exec_time,
                    f.source,
                ),
            )
            funding_new += cur.rowcount
        raw.commit()
    except BaseException:
        raw.rollback()
        raise
    finally:
        raw.close()
    new = len(inserted)
    return BulkResult(len(batch), new, len(batch) - len(funding) - new, funding_new, len(pairs))


def _rebuild_pair(cur: Any, bot_id: str, symbol: str) -> None:
    cur.execute(
        "SELECT id, exec_id, order_id, side, exec_price, exec_qty, exec_time, commission "
        "FROM trading.fills WHERE bot_id = %s AND symbol = %s ORDER BY exec_time, id",
        (bot_id, symbol),
    )
    _write_pair(cur, bot_id, symbol, cur.fetchall())


def _write_pair(cur: Any, bot_id: str, symbol: str, rows: list[tuple[Any, ...]]) -> None:
    """Replace the pair's lots and position by those ``rows`` (all its fills, in order) give."""
    cur.execute("SELECT * FROM trading.lock_position(%s, %s)", (bot_id, symbol))
    lots = build_lots(rows)
    cur.execute(
        "DELETE FROM trading.position_entries WHERE bot_id = %s AND symbol = %s", (bot_id, symbol)
    )
    text_rows = [
        f"{bot_id}\t{symbol}\t{_esc(lot.exec_id)}\t{lot.side}\t{lot.price}\t{lot.original}\t"
        f"{lot.remaining}\t{lot.time.isoformat()}\t{lot.fill_id}\t{_esc(lot.order_id)}\t"
        f"{lot.fee}\t{_lot_status(lot)}\n"
        for lot in lots
    ]
    cur.copy_expert(
        "COPY trading.position_entries (bot_id, symbol, entry_id, side, entry_price, "
        "original_qty, remaining_qty, entry_time, entry_fill_id, entry_order_id, "
        "entry_commission, status) FROM STDIN",
        io.StringIO("".join(text_rows)),
    )
    side, size, avg = _position(lots)
    last = rows[-1][6] if rows else None
    cur.execute(
        # The open-lot totals are left unknown: the next record_fill sums the lots once.
        "UPDATE trading.positions SET size = %s, side = %s, avg_entry_price = %s, "
        "open_qty = NULL, open_cost = NULL, "
        "version = version + 1, last_exec_time = greatest(last_exec_time, %s), "
        "updated_at = now() WHERE bot_id = %s AND symbol = %s",
        (size, side, avg, last, bot_id, symbol),
    )
