"""The position row's open-lot totals (migration 0019) against the lots themselves.

``record_fill`` reads ``open_qty``/``open_cost`` instead of re-summing the open lots; these
tests hold it to the lots: after every fill of a random sequence (shorts, partial exits,
flips, scale-ins, fees), the position equals what summing the lots gives, and equals a
rebuild from the fills. A row changed by another writer is not trusted.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from alpha_models.writepath import Outcome
from tests.builders import fill
from tests.conftest import Writer

BOT = "shortseller_001"
POSITION = (
    "SELECT side, size, avg_entry_price, open_qty, open_cost FROM trading.positions "
    "WHERE bot_id = :b AND symbol = :s"
)
FROM_LOTS = (
    "SELECT coalesce(max(side), ''), coalesce(sum(remaining_qty), 0), "
    "round(sum(remaining_qty * entry_price) / nullif(sum(remaining_qty), 0), 8), "
    "coalesce(sum(CASE side WHEN 'Sell' THEN -remaining_qty ELSE remaining_qty END), 0), "
    "coalesce(sum(remaining_qty * entry_price), 0) "
    "FROM trading.position_entries WHERE bot_id = :b AND symbol = :s "
    "AND status <> 'closed' AND remaining_qty > 0"
)
LOTS = (
    "SELECT entry_id, side, entry_price, original_qty, remaining_qty, entry_commission, status "
    "FROM trading.position_entries WHERE bot_id = :b AND symbol = :s ORDER BY id"
)


def _one(w: Writer, sql: str, symbol: str) -> tuple[Any, ...]:
    with w.engine.connect() as conn:
        return tuple(conn.execute(text(sql), {"b": BOT, "s": symbol}).one())


def _lots(w: Writer, symbol: str) -> list[tuple[Any, ...]]:
    with w.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(LOTS), {"b": BOT, "s": symbol})]


def test_totals_follow_the_lots_through_a_random_sequence(writer: Writer) -> None:
    rng = random.Random(20251201)
    symbol = "TOTUSDT"
    for step in range(160):
        side = rng.choice(("Buy", "Sell"))
        qty = Decimal(rng.randint(1, 4000)) / 1000
        price = Decimal(rng.randint(90_000, 110_000)) / 100 + Decimal("0.00000003") * step
        fee = Decimal(rng.randint(-5, 50)) / 10_000
        result = writer.path.record_fill(
            fill(side, qty, price, fee=fee, bot_id=BOT, symbol=symbol, at=step)
        )
        assert result.outcome is Outcome.NEW
        side_, size, avg, open_qty, open_cost = _one(writer, POSITION, symbol)
        assert (side_ or "", size, avg, open_qty, open_cost) == _one(writer, FROM_LOTS, symbol)
        assert result.position is not None
        assert (result.position.size, result.position.avg_entry_price) == (size, avg)
    before = (_one(writer, POSITION, symbol), _lots(writer, symbol))
    with writer.engine.begin() as conn:
        conn.execute(text("SELECT trading.rebuild_position(:b, :s)"), {"b": BOT, "s": symbol})
    assert _one(writer, POSITION, symbol) == before[0]
    assert _lots(writer, symbol) == before[1]  # the same lots, in the same order


def test_a_row_changed_by_another_writer_is_recomputed_from_the_lots(writer: Writer) -> None:
    symbol = "OUTUSDT"
    writer.path.record_fill(fill("Sell", "2", "100", bot_id=BOT, symbol=symbol, at=1))
    # A legacy writer (the old listener wrote the exchange's view here) changes the row.
    with writer.engine.begin() as conn:
        conn.execute(
            text("UPDATE trading.positions SET size = 5, side = 'Buy' WHERE symbol = :s"),
            {"s": symbol},
        )
    writer.path.record_fill(fill("Buy", "0.5", "90", bot_id=BOT, symbol=symbol, at=2))
    assert _one(writer, POSITION, symbol) == (
        "Sell",
        Decimal("1.5"),
        Decimal("100"),
        Decimal("-1.5"),
        Decimal("150"),
    )


def test_totals_unknown_after_bulk_ingest_are_recomputed(writer: Writer) -> None:
    symbol = "BLKUSDT"
    writer.path.ingest_bulk(
        [
            fill("Buy", "1", "100", bot_id=BOT, symbol=symbol, at=1),
            fill("Buy", "3", "200", bot_id=BOT, symbol=symbol, at=2),
        ]
    )
    assert _one(writer, POSITION, symbol)[3:] == (None, None)
    writer.path.record_fill(fill("Sell", "2", "150", bot_id=BOT, symbol=symbol, at=3))
    assert _one(writer, POSITION, symbol) == (
        "Buy",
        Decimal("2"),
        Decimal("200"),
        Decimal("2"),
        Decimal("400"),
    )
