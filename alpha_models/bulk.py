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
from datetime import UTC, datetime
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


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _stage_rows(fills: Iterable[FillInput]) -> Iterator[str]:
    for f in fills:
        yield (
            "\t".join(
                _copy_text(v)
                for v in (
                    f.exec_id,
                    f.bot_id,
                    f.symbol,
                    f.order_id,
                    f.client_order_id,
                    f.side.value,
                    f.exec_price,
                    f.exec_qty,
                    f.exec_time.isoformat(),
                    f.close_reason,
                    f.commission,
                    f.exec_type.value,
                    f.source,
                )
            )
            + "\n"
        )


class _LineReader(io.RawIOBase):
    """A file-like view of an iterator of text lines, for ``copy_expert``."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while len(self._buffer) < len(target):
            try:
                self._buffer += next(self._lines).encode("utf-8")
            except StopIteration:
                break
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


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
    trades = [f for f in batch if f.is_trade]
    funding = [f for f in batch if f.is_funding]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(
            f"CREATE TEMP TABLE alpha_stage ON COMMIT DROP AS "
            f"SELECT {_STAGE_COLUMNS} FROM trading.fills WITH NO DATA"
        )
        cur.copy_expert(
            f"COPY alpha_stage ({_STAGE_COLUMNS}) FROM STDIN",
            _LineReader(_stage_rows(trades)),
        )
        cur.execute(
            "CREATE TEMP TABLE alpha_new ON COMMIT DROP AS WITH ins AS ("
            f"INSERT INTO trading.fills ({_STAGE_COLUMNS}) SELECT DISTINCT ON (exec_id) "
            f"{_STAGE_COLUMNS} FROM alpha_stage ORDER BY exec_id "
            "ON CONFLICT (exec_id) DO NOTHING RETURNING bot_id, symbol) "
            "SELECT bot_id, symbol, count(*) AS n FROM ins GROUP BY bot_id, symbol"
        )
        # An 'unknown' copy of an execution the batch attributes to a bot: re-attribute it.
        cur.execute(
            "WITH moved AS (UPDATE trading.fills f SET bot_id = s.bot_id, "
            "close_reason = coalesce(nullif(s.close_reason, ''), f.close_reason) "
            "FROM alpha_stage s WHERE f.exec_id = s.exec_id AND f.bot_id = %s "
            "AND s.bot_id <> %s RETURNING f.bot_id, f.symbol) "
            "INSERT INTO alpha_new SELECT bot_id, symbol, 0 FROM moved",
            (UNKNOWN_BOT, UNKNOWN_BOT),
        )
        cur.execute("SELECT bot_id, symbol, sum(n) FROM alpha_new GROUP BY bot_id, symbol")
        touched = [(b, s, int(n)) for b, s, n in cur.fetchall()]
        new = sum(n for _, _, n in touched)
        pairs = [(b, s) for b, s, _ in touched if b != UNKNOWN_BOT]
        for bot_id, symbol in pairs:
            _rebuild_pair(cur, bot_id, symbol)
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
    return BulkResult(len(batch), new, len(trades) - new, funding_new, len(pairs))


def _rebuild_pair(cur: Any, bot_id: str, symbol: str) -> None:
    cur.execute("SELECT * FROM trading.lock_position(%s, %s)", (bot_id, symbol))
    cur.execute(
        "SELECT id, exec_id, order_id, side, exec_price, exec_qty, exec_time, commission "
        "FROM trading.fills WHERE bot_id = %s AND symbol = %s ORDER BY exec_time, id",
        (bot_id, symbol),
    )
    rows = cur.fetchall()
    lots = build_lots(rows)
    cur.execute(
        "DELETE FROM trading.position_entries WHERE bot_id = %s AND symbol = %s", (bot_id, symbol)
    )
    buffer = io.StringIO()
    for lot in lots:
        buffer.write(
            "\t".join(
                _copy_text(v)
                for v in (
                    bot_id,
                    symbol,
                    lot.exec_id,
                    lot.side,
                    lot.price,
                    lot.original,
                    lot.remaining,
                    lot.time.astimezone(UTC).isoformat(),
                    lot.fill_id,
                    lot.order_id,
                    lot.fee,
                    _lot_status(lot),
                )
            )
            + "\n"
        )
    buffer.seek(0)
    cur.copy_expert(
        "COPY trading.position_entries (bot_id, symbol, entry_id, side, entry_price, "
        "original_qty, remaining_qty, entry_time, entry_fill_id, entry_order_id, "
        "entry_commission, status) FROM STDIN",
        buffer,
    )
    side, size, avg = _position(lots)
    last = rows[-1][6] if rows else None
    cur.execute(
        "UPDATE trading.positions SET size = %s, side = %s, avg_entry_price = %s, "
        "version = version + 1, last_exec_time = greatest(last_exec_time, %s), "
        "updated_at = now() WHERE bot_id = %s AND symbol = %s",
        (size, side, avg, last, bot_id, symbol),
    )
