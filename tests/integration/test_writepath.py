"""The write path against real PostgreSQL, PgBouncer and Redis."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import text

from alpha_models.bybit_stream import parse_execution
from alpha_models.errors import SchemaBehindError, ValidationError
from alpha_models.inputs import OrderUpdate
from alpha_models.writepath import Outcome, WritePath
from tests.builders import T0, fill
from tests.conftest import Writer


def lots(
    w: Writer, bot: str = "shortseller_001", symbol: str = "BTCUSDT"
) -> list[tuple[str, Decimal, Decimal]]:
    with w.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT side, entry_price, remaining_qty FROM trading.position_entries "
                "WHERE bot_id = :b AND symbol = :s AND remaining_qty > 0 ORDER BY entry_time, id"
            ),
            {"b": bot, "s": symbol},
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def position(
    w: Writer, bot: str = "shortseller_001", symbol: str = "BTCUSDT"
) -> tuple[str, Decimal, Decimal | None]:
    with w.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT side, size, avg_entry_price FROM trading.positions "
                "WHERE bot_id = :b AND symbol = :s"
            ),
            {"b": bot, "s": symbol},
        ).one()
    return row[0], row[1], row[2]


def count(w: Writer, table: str) -> int:
    with w.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_short_opens_with_sell_and_fifo_covers_it(writer: Writer) -> None:
    wp = writer.path
    assert wp.record_fill(fill("Sell", "0.02", "100000", at=1)).outcome is Outcome.NEW
    assert wp.record_fill(fill("Sell", "0.01", "103000", at=2)).outcome is Outcome.NEW
    assert position(writer) == ("Sell", Decimal("0.03"), Decimal("101000"))
    wp.record_fill(fill("Buy", "0.025", "99000", at=3))  # consumes the oldest lot first
    assert lots(writer) == [("Sell", Decimal("103000"), Decimal("0.005"))]
    assert position(writer) == ("Sell", Decimal("0.005"), Decimal("103000"))


def test_a_fill_larger_than_the_position_flips_it(writer: Writer) -> None:
    wp = writer.path
    wp.record_fill(fill("Buy", "1", "100", symbol="ETHUSDT", bot_id="lxalgo_001", at=1))
    wp.record_fill(fill("Sell", "1.5", "110", symbol="ETHUSDT", bot_id="lxalgo_001", at=2))
    assert lots(writer, "lxalgo_001", "ETHUSDT") == [("Sell", Decimal("110"), Decimal("0.5"))]
    assert position(writer, "lxalgo_001", "ETHUSDT") == ("Sell", Decimal("0.5"), Decimal("110"))


def test_same_execution_from_listener_adapter_and_reconciliation_is_one_row(writer: Writer) -> None:
    wire = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "execId": "e7c3-0001",
        "orderId": "o-77",
        "orderLinkId": "",
        "side": "Sell",
        "orderType": "Market",
        "execType": "Trade",
        "execPrice": "101000.5",
        "execQty": "0.004",
        "execValue": "404.002",
        "execFee": "0.22220110",
        "feeRate": "0.00055",
        "isMaker": False,
        "execTime": str(int(T0.timestamp() * 1000)),
        "stopOrderType": "",
    }
    listener = parse_execution(wire, source="listener")  # no link id: bucket unknown
    adapter = parse_execution(wire, source="adapter")
    adapter = fill(
        "Sell",
        "0.004",
        "101000.5",
        exec_id="e7c3-0001",
        at=T0,
        order_id="o-77",
        fee="0.22220110",
    )
    reconcile = parse_execution(wire, source="reconcile")
    assert listener.bot_id == "unknown"
    assert writer.path.record_fill(listener).outcome is Outcome.NEW
    assert writer.path.record_fill(adapter).outcome is Outcome.REATTRIBUTED
    assert writer.path.record_fill(reconcile).outcome is Outcome.DUPLICATE
    assert writer.path.record_fill(adapter).outcome is Outcome.DUPLICATE
    with writer.engine.connect() as conn:
        rows = conn.execute(text("SELECT bot_id, exec_qty FROM trading.fills")).all()
    assert rows == [("shortseller_001", Decimal("0.004"))]
    assert position(writer) == ("Sell", Decimal("0.004"), Decimal("101000.5"))


def test_out_of_order_fill_rebuilds_lots_in_time_order(writer: Writer) -> None:
    wp = writer.path
    wp.record_fill(fill("Sell", "1", "100", at=10))
    wp.record_fill(fill("Buy", "1", "90", at=30))
    late = wp.record_fill(fill("Sell", "1", "95", at=20))  # happened between the two
    assert late.outcome is Outcome.REBUILT
    # In time order: Sell@100, Sell@95, Buy@90 closes the oldest: the 95 lot stays open.
    assert lots(writer) == [("Sell", Decimal("95"), Decimal("1"))]


def test_funding_is_kept_apart_from_trades(writer: Writer) -> None:
    funding = fill("Sell", "0.02", "100000", exec_type="Funding", fee="-0.5")
    assert writer.path.record_fill(funding).outcome is Outcome.NEW
    assert writer.path.record_fill(funding).outcome is Outcome.DUPLICATE
    assert count(writer, "trading.fills") == 0
    assert count(writer, "trading.position_entries") == 0
    assert count(writer, "trading.funding_settlements") == 1


def test_redis_is_written_after_commit_and_flat_removes_keys(writer: Writer) -> None:
    r = writer.cache._client if hasattr(writer.cache, "_client") else None
    wp = writer.path
    wp.record_fill(fill("Sell", "0.047", "100000", at=1))
    snap = writer.cache.get("shortseller_001", "BTCUSDT")
    assert snap is not None and snap.size == Decimal("0.047") and snap.side == "Sell"
    assert writer.cache.symbols("shortseller_001") == {"BTCUSDT"}
    wp.record_fill(fill("Buy", "0.047", "99000", at=2))
    assert writer.cache.get("shortseller_001", "BTCUSDT") is None
    assert writer.cache.symbols("shortseller_001") == set()
    del r


def test_redis_flushed_then_rebuilt_equals_postgres(writer: Writer) -> None:
    wp = writer.path
    for i, sym in enumerate(["BTCUSDT", "ETHUSDT", "SOLUSDT"]):
        wp.record_fill(fill("Sell", "1", str(100 + i), symbol=sym, at=i + 1))
    wp.record_fill(fill("Buy", "2", "50", symbol="ETHUSDT", bot_id="lxalgo_001", at=9))
    client = writer.cache._client
    client.flushall()
    assert writer.cache.is_stale()
    assert wp.rebuild_cache()
    assert not writer.cache.is_stale()
    with writer.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT bot_id, symbol, side, size, avg_entry_price FROM trading.positions "
                "WHERE size > 0"
            )
        ).all()
    assert len(rows) == 4
    for bot, sym, side, size, avg in rows:
        assert float(client.get(f"position:{bot}:{sym}")) == float(size)
        details = client.hgetall(f"position:{bot}:{sym}:details")
        assert details["side"] == side and Decimal(details["avg_price"]) == avg


def test_order_status_never_rolls_back(writer: Writer) -> None:
    def update(status: str, ms: int) -> OrderUpdate:
        return OrderUpdate(
            order_id="ord-1",
            bot_id="shortseller_001",
            symbol="BTCUSDT",
            side="Sell",
            order_type="Market",
            status=status,
            qty="0.01",
            updated_time=1_762_000_000_000 + ms,
        )

    wp = writer.path
    assert wp.record_order(update("New", 0)).outcome is Outcome.NEW
    assert wp.record_order(update("Filled", 20)).is_new
    assert wp.record_order(update("PartiallyFilled", 10)).outcome is Outcome.STALE  # late
    assert wp.record_order(update("Deactivated", 5)).outcome is Outcome.STALE
    with writer.engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM trading.orders")).scalar() == "Filled"


def test_unknown_bot_is_refused_and_nothing_written(writer: Writer) -> None:
    with pytest.raises(ValidationError) as caught:
        writer.path.record_fill(fill(bot_id="ghost_bot", known_bots={"ghost_bot"}))
    assert caught.value.field == "bot_id"
    assert count(writer, "trading.fills") == 0


def test_refuses_a_database_behind_head(writer: Writer) -> None:
    with writer.engine.begin() as conn:
        conn.execute(text("UPDATE public.alembic_version SET version_num = '0003'"))
    fresh = WritePath(writer.engine, settings=writer.path.settings)
    with pytest.raises(SchemaBehindError, match="alpha-db migrate"):
        fresh.record_fill(fill())
    assert count(writer, "trading.fills") == 0
    json.dumps({})
