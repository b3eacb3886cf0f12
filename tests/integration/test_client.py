"""``AlphaDBClient`` (the drop-in for ``shared/alpha_db_client.py``) against real PostgreSQL,
PgBouncer and Redis, called the way the platform's integrations call it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import Engine

from alpha_models.bots import register_bots
from alpha_models.client import (
    SOURCE_ADAPTER,
    SOURCE_TRACKER,
    AlphaDBClient,
    create_client_order_id,
    parse_client_order_id,
)
from alpha_models.db import make_engine
from alpha_models.devstack import DevStack, free_port
from alpha_models.errors import (
    ConstraintViolationError,
    DatabaseUnavailableError,
    ValidationError,
)
from alpha_models.keys import content_exec_id
from alpha_models.settings import Settings
from alpha_models.writepath import WritePath
from tests.conftest import Database

MakeClient = Callable[..., AlphaDBClient]

# Naive UTC, as the bots pass them (datetime.utcnow() style).
T1 = datetime(2025, 11, 5, 10, 0, 0)
T2 = datetime(2025, 11, 5, 10, 5, 0, 250000)
T3 = datetime(2025, 11, 5, 11, 0, 0)


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


def settings_for(db: Database, stack: DevStack, spool: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "ALPHA_DATABASE_URL": db.url,
        "ALPHA_REDIS_URL": stack.redis_url(),
        "ALPHA_SPOOL_DIR": str(spool),
        "ALPHA_CONNECT_TIMEOUT": 2,
        **extra,
    }
    return Settings(**values)


@pytest.fixture
def engine(db: Database) -> Iterator[Engine]:
    eng = db.engine()
    register_bots(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def make_client(
    db: Database, devstack: DevStack, tmp_path: Path, engine: Engine, redis_client: redis.Redis
) -> Iterator[MakeClient]:
    made: list[AlphaDBClient] = []

    def make(bot_id: str = "lxalgo_001", redis_db: int = 1, **extra: Any) -> AlphaDBClient:
        settings = settings_for(db, devstack, tmp_path / "spool", **extra)
        client = AlphaDBClient(bot_id, redis_db, settings=settings)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def lx(make_client: MakeClient) -> AlphaDBClient:
    return make_client("lxalgo_001", 1)


@pytest.fixture
def ss(make_client: MakeClient) -> AlphaDBClient:
    return make_client("shortseller_001", 0)


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def fill_count(engine: Engine, bot: str | None = None) -> int:
    sql = "SELECT count(*) FROM trading.fills" + (" WHERE bot_id = :b" if bot else "")
    return int(rows(engine, sql, b=bot)[0][0])


def open_lots(engine: Engine, bot: str, symbol: str) -> list[tuple[str, Decimal, Decimal]]:
    return [
        (r.side, r.entry_price, r.remaining_qty)
        for r in rows(
            engine,
            "SELECT side, entry_price, remaining_qty FROM trading.position_entries "
            "WHERE bot_id = :b AND symbol = :s AND remaining_qty > 0 ORDER BY entry_time, id",
            b=bot,
            s=symbol,
        )
    ]


def position(engine: Engine, bot: str, symbol: str) -> tuple[str, Decimal]:
    row = rows(
        engine,
        "SELECT side, size FROM trading.positions WHERE bot_id = :b AND symbol = :s",
        b=bot,
        s=symbol,
    )[0]
    return row.side, row.size


# ------------------------------------------------------------------------------ write_fill


def test_write_fill_stores_once_and_returns_the_fill_id(lx: AlphaDBClient, engine: Engine) -> None:
    # LXAlgo's entry call: positional, synthetic order id with a space, naive exec_time.
    args = (
        "AI16ZUSDT",
        "Buy",
        0.1,
        3.0,
        "lxalgo_001_AI16ZUSDT_Rule 8_1762380301",
        "lxalgo_001:entry:1762380301",
        "entry",
        0.0,
    )
    fill_id = lx.write_fill(*args, exec_time=T1)
    assert fill_id > 0
    assert lx.write_fill(*args, exec_time=T1) == fill_id  # the same report twice: one row
    assert fill_count(engine) == 1
    row = rows(engine, "SELECT * FROM trading.fills")[0]
    assert (row.bot_id, row.symbol, row.side, row.source) == (
        "lxalgo_001",
        "AI16ZUSDT",
        "Buy",
        SOURCE_ADAPTER,
    )
    assert row.exec_price == Decimal("0.1")  # Decimal(str(0.1)), not 0.1000000000000000055
    assert row.exec_qty == Decimal("3")
    assert row.exec_time == utc(T1)  # naive means UTC
    assert row.order_id == "lxalgo_001_AI16ZUSDT_Rule 8_1762380301"
    assert row.exec_id == content_exec_id(
        bot_id="lxalgo_001",
        symbol="AI16ZUSDT",
        order_id=row.order_id,
        client_order_id="lxalgo_001:entry:1762380301",
        side="Buy",
        exec_price=Decimal("0.1"),
        exec_qty=Decimal("3"),
        exec_time=utc(T1),
        commission=Decimal("0"),
    )
    # The write path derived the lot and the position from the fill.
    assert open_lots(engine, "lxalgo_001", "AI16ZUSDT") == [("Buy", Decimal("0.1"), Decimal("3"))]
    assert position(engine, "lxalgo_001", "AI16ZUSDT") == ("Buy", Decimal("3"))


def test_write_fill_without_exec_time_is_now_in_utc(ss: AlphaDBClient, engine: Engine) -> None:
    before = datetime.now(UTC)
    fill_id = ss.write_fill(
        symbol="BTCUSDT",
        side="Sell",
        exec_price=101000.5,
        exec_qty=0.047,
        order_id="bybit-uuid-1",
        client_order_id="",
        close_reason="entry",
        commission=0.0,
    )
    after = datetime.now(UTC)
    (row,) = rows(engine, "SELECT id, exec_time, bot_id FROM trading.fills")
    assert row.id == fill_id and row.bot_id == "shortseller_001"
    assert before <= row.exec_time <= after
    # A short opened by a Sell: a Sell lot (the original tracked longs only).
    assert open_lots(engine, "shortseller_001", "BTCUSDT") == [
        ("Sell", Decimal("101000.5"), Decimal("0.047"))
    ]


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("side", {"side": "buy"}),  # LXAlgo passed "buy" before its capitalize() fix
        ("exec_price", {"exec_price": 0.0}),
        ("exec_qty", {"exec_qty": float("nan")}),
        ("exec_price", {"exec_price": float("inf")}),
        ("close_reason", {"close_reason": "x" * 51}),
        ("symbol", {"symbol": "btcusdt"}),
        ("exec_time", {"exec_time": datetime(2009, 1, 3)}),
    ],
)
def test_write_fill_rejects_garbage_with_a_typed_error(
    lx: AlphaDBClient, engine: Engine, field: str, overrides: dict[str, Any]
) -> None:
    kwargs: dict[str, Any] = {
        "symbol": "SOLUSDT",
        "side": "Buy",
        "exec_price": 150.0,
        "exec_qty": 1.0,
        "order_id": "o-1",
        "client_order_id": "",
        "close_reason": "entry",
        "commission": 0.0,
        "exec_time": T1,
        **overrides,
    }
    with pytest.raises(ValidationError) as caught:
        lx.write_fill(**kwargs)
    assert caught.value.field == field
    assert fill_count(engine) == 0


def test_write_fill_of_an_unregistered_bot_is_refused(
    make_client: MakeClient, engine: Engine
) -> None:
    ghost = make_client("ghost_bot")
    with pytest.raises(ValidationError) as caught:
        ghost.write_fill("BTCUSDT", "Buy", 1.0, 1.0, "o", "", None, 0.0, T1)
    assert caught.value.field == "bot_id"
    assert fill_count(engine) == 0


def test_get_recent_fills_newest_first_with_decimals_and_utc(
    lx: AlphaDBClient, ss: AlphaDBClient
) -> None:
    a = lx.write_fill("SOLUSDT", "Buy", 150.25, 2.0, "o-a", "", "entry", 0.01, T1)
    b = lx.write_fill("ETHUSDT", "Buy", 3387.06, 0.5, "o-b", "", "entry", 0.0, T2)
    c = lx.write_fill("SOLUSDT", "Sell", 151.0, 1.0, "o-c", "", "take_profit", 0.02, T3)
    ss.write_fill("SOLUSDT", "Sell", 1.0, 1.0, "o-ss", "", "entry", 0.0, T3)  # another bot
    got = lx.get_recent_fills()
    assert [f["id"] for f in got] == [c, b, a]
    assert lx.get_recent_fills(symbol="SOLUSDT") == [got[0], got[2]]
    assert [f["id"] for f in lx.get_recent_fills(limit=1)] == [c]
    newest = got[0]
    assert {
        "id",
        "bot_id",
        "symbol",
        "order_id",
        "client_order_id",
        "side",
        "exec_price",
        "exec_qty",
        "exec_time",
        "close_reason",
        "commission",
        "created_at",
        "exec_id",
        "exec_type",
        "source",
    } <= set(newest)
    assert newest["exec_price"] == Decimal("151") and isinstance(newest["exec_qty"], Decimal)
    assert newest["commission"] == Decimal("0.02")
    assert newest["exec_time"] == utc(T3) and newest["exec_time"].tzinfo is UTC
    assert newest["close_reason"] == "take_profit" and newest["bot_id"] == "lxalgo_001"


# ------------------------------------------------------------------------------ completed trades


def test_record_completed_trade_long_formulas_and_conflict_update(
    lx: AlphaDBClient, engine: Engine
) -> None:
    trade_pk = lx.record_completed_trade(
        "BTCUSDT",
        "Buy",
        100.0,
        2.0,
        T1,
        "entry",
        "Sell",
        110.0,
        2.0,
        datetime(2025, 11, 5, 10, 30, 15, 900000),
        "take_profit",
        entry_order_id="o-in",
        exit_order_id="o-out",
        entry_commission=0.1,
        exit_commission=0.2,
    )
    (row,) = rows(engine, "SELECT * FROM trading.completed_trades")
    assert row.id == trade_pk
    t_in = int(utc(T1).timestamp())
    t_out = int(utc(datetime(2025, 11, 5, 10, 30, 15)).timestamp())
    assert row.trade_id == f"lxalgo_001:BTCUSDT:{t_in}:{t_out}"
    assert row.gross_pnl == Decimal("20")  # (110 - 100) * 2
    assert row.net_pnl == Decimal("19.7")  # 20 - 0.1 - 0.2
    assert row.total_commission == Decimal("0.3")  # exact: not 0.30000000000000004
    assert row.pnl_pct == Decimal("9.85")  # 19.7 / (100 * 2) * 100
    assert row.holding_duration_seconds == 1815  # whole seconds of 30 min 15.9 s
    assert row.entry_client_order_id is None and row.exit_client_order_id is None
    assert (row.source, row.entry_order_id, row.exit_order_id) == ("bybit_api", "o-in", "o-out")
    assert row.entry_time == utc(T1)
    # Same trade_id again: exit fields and P&L are updated, fees are not.
    again = lx.record_completed_trade(
        "BTCUSDT",
        "Buy",
        100.0,
        2.0,
        T1,
        "entry",
        "Sell",
        111.0,
        2.0,
        datetime(2025, 11, 5, 10, 30, 15, 950000),
        "take_profit",
        entry_commission=0.5,
        exit_commission=0.5,
    )
    assert again == trade_pk
    (row,) = rows(engine, "SELECT * FROM trading.completed_trades")
    assert (row.exit_price, row.gross_pnl, row.net_pnl) == (
        Decimal("111"),
        Decimal("22"),
        Decimal("21"),
    )
    assert row.pnl_pct == Decimal("10.5")
    assert (row.entry_commission, row.exit_commission) == (Decimal("0.1"), Decimal("0.2"))


def test_record_completed_trade_short_and_refusals(ss: AlphaDBClient, engine: Engine) -> None:
    ss.record_completed_trade(
        "ETHUSDT", "Sell", 3845.62, 1.36, T1, "entry", "Buy", 3800.0, 1.36, T3, "take_profit"
    )
    (row,) = rows(engine, "SELECT gross_pnl, net_pnl, pnl_pct FROM trading.completed_trades")
    assert row.gross_pnl == Decimal("62.0432")  # (3845.62 - 3800) * 1.36
    assert row.net_pnl == Decimal("62.0432")
    assert row.pnl_pct == Decimal("1.186285")  # 62.0432 / 5230.0432 * 100 = 1.18628466
    with pytest.raises(ValidationError, match="exit_time"):
        ss.record_completed_trade("ETHUSDT", "Sell", 1.0, 1.0, T3, None, "Buy", 1.0, 1.0, T1, None)
    with pytest.raises(ValidationError, match="exit_side"):
        ss.record_completed_trade("ETHUSDT", "Sell", 1.0, 1.0, T1, None, "Sell", 1.0, 1.0, T3, None)
    assert len(rows(engine, "SELECT id FROM trading.completed_trades")) == 1


def test_record_completed_trade_for_an_unregistered_bot_raises_typed(
    make_client: MakeClient,
) -> None:
    ghost = make_client("ghost_bot")
    with pytest.raises(ConstraintViolationError) as caught:
        ghost.record_completed_trade(
            "BTCUSDT", "Buy", 1.0, 1.0, T1, None, "Sell", 2.0, 1.0, T3, None
        )
    assert caught.value.constraint == "completed_trades_bot_id_fkey"


# ------------------------------------------------------------------------------ lots


def test_create_position_entry_after_write_fill_writes_nothing(
    lx: AlphaDBClient, engine: Engine
) -> None:
    # LXAlgo: entry fill first, then the lot with the fill's id.
    order = "lxalgo_001_SOONUSDT_Rule 6_1762380301"
    fid = lx.write_fill(
        "SOONUSDT", "Buy", 0.55, 100.0, order, "lxalgo_001:entry:1", "entry", 0.0, T1
    )
    entry_id = lx.create_position_entry(
        symbol="SOONUSDT",
        entry_price=0.55,
        quantity=100.0,
        entry_time=T1,
        entry_order_id=order,
        entry_fill_id=fid,
        commission=0.0,
    )
    (exec_id,) = rows(engine, "SELECT exec_id FROM trading.fills WHERE id = :i", i=fid)[0]
    assert entry_id == exec_id  # the lot's entry_id is its entry fill's exec_id
    # Without entry_fill_id the same entry is found by its content.
    assert lx.create_position_entry("SOONUSDT", 0.55, 100.0, T1, order) == entry_id
    assert fill_count(engine) == 1
    assert open_lots(engine, "lxalgo_001", "SOONUSDT") == [("Buy", Decimal("0.55"), Decimal("100"))]
    lots = lx.get_open_position_entries("SOONUSDT")
    assert [lot["entry_id"] for lot in lots] == [entry_id]
    assert lots[0]["entry_fill_id"] == fid


def test_create_position_entry_alone_records_a_synthetic_buy_once(
    lx: AlphaDBClient, engine: Engine
) -> None:
    first = lx.create_position_entry("PIPPINUSDT", 0.025, 1000.0, T2, commission=0.01)
    assert lx.create_position_entry("PIPPINUSDT", 0.025, 1000.0, T2, commission=0.01) == first
    (row,) = rows(engine, "SELECT * FROM trading.fills")
    assert (row.side, row.source, row.close_reason, row.client_order_id) == (
        "Buy",
        SOURCE_TRACKER,
        "entry",
        "",
    )
    assert row.order_id.startswith("synthetic:lxalgo_001:PIPPINUSDT:")
    assert (row.exec_price, row.exec_qty, row.commission) == (
        Decimal("0.025"),
        Decimal("1000"),
        Decimal("0.01"),
    )
    assert row.exec_time == utc(T2)
    (lot,) = lx.get_open_position_entries()
    assert lot["entry_id"] == first == row.exec_id
    assert (lot["side"], lot["remaining_qty"], lot["status"]) == ("Buy", Decimal("1000"), "open")
    assert lot["entry_commission"] == Decimal("0.01") and lot["entry_time"] == utc(T2)


def test_close_position_fifo_on_a_long(lx: AlphaDBClient, engine: Engine) -> None:
    e1 = lx.create_position_entry("SOLUSDT", 100.0, 1.0, T1, commission=0.1)
    e2 = lx.create_position_entry("SOLUSDT", 110.0, 2.0, T2, commission=0.2)
    result = lx.close_position_fifo("SOLUSDT", 120.0, 2.5, T3, "take_profit", "exit-1", 0.25)
    # Hand-computed: lot 1 q=1: gross 20, fees 0.1 + 0.25*1/2.5 -> net 19.8, 19.8/100.
    # lot 2 q=1.5: gross 15, fees 0.2*1.5/2 + 0.25*1.5/2.5 = 0.3 -> net 14.7, 14.7/165*100.
    assert result == [
        {
            "entry_id": e1,
            "trade_id": None,
            "entry_price": 100.0,
            "exit_price": 120.0,
            "quantity": 1.0,
            "gross_pnl": 20.0,
            "net_pnl": 19.8,
            "pnl_pct": 19.8,
        },
        {
            "entry_id": e2,
            "trade_id": None,
            "entry_price": 110.0,
            "exit_price": 120.0,
            "quantity": 1.5,
            "gross_pnl": 15.0,
            "net_pnl": 14.7,
            "pnl_pct": 8.909091,
        },
    ]
    exits = rows(engine, "SELECT * FROM trading.fills WHERE side = 'Sell'")
    assert [(r.exec_qty, r.exec_price, r.close_reason, r.order_id, r.source) for r in exits] == [
        (Decimal("2.5"), Decimal("120"), "take_profit", "exit-1", SOURCE_TRACKER)
    ]
    statuses = rows(
        engine, "SELECT status, remaining_qty FROM trading.position_entries ORDER BY entry_time"
    )
    assert [tuple(r) for r in statuses] == [
        ("closed", Decimal("0")),
        ("partially_closed", Decimal("0.5")),
    ]
    assert position(engine, "lxalgo_001", "SOLUSDT") == ("Buy", Decimal("0.5"))
    # A retry of the same call records nothing and reports the same.
    assert (
        lx.close_position_fifo("SOLUSDT", 120.0, 2.5, T3, "take_profit", "exit-1", 0.25) == result
    )
    assert fill_count(engine) == 3


def test_close_position_fifo_on_a_short_uses_the_short_formula(
    ss: AlphaDBClient, engine: Engine
) -> None:
    ss.write_fill("BTCUSDT", "Sell", 100000.0, 0.02, "o-1", "", "entry", 0.0, T1)
    ss.write_fill("BTCUSDT", "Sell", 103000.0, 0.01, "o-2", "", "entry", 0.0, T2)
    e1, e2 = (lot["entry_id"] for lot in ss.get_open_position_entries("BTCUSDT"))
    result = ss.close_position_fifo("BTCUSDT", 99000.0, 0.025, T3, "take_profit", None, 0.5)
    # lot 1 q=0.02: (100000 - 99000) * 0.02 = 20, exit fee 0.5 * 0.02/0.025 = 0.4 -> 19.6,
    #   19.6 / 2000 * 100 = 0.98; lot 2 q=0.005: (103000 - 99000) * 0.005 = 20, fee 0.1 ->
    #   19.9, 19.9 / 515 * 100 = 3.864078. The long formula would have booked -20 and -20.
    assert result == [
        {
            "entry_id": e1,
            "trade_id": None,
            "entry_price": 100000.0,
            "exit_price": 99000.0,
            "quantity": 0.02,
            "gross_pnl": 20.0,
            "net_pnl": 19.6,
            "pnl_pct": 0.98,
        },
        {
            "entry_id": e2,
            "trade_id": None,
            "entry_price": 103000.0,
            "exit_price": 99000.0,
            "quantity": 0.005,
            "gross_pnl": 20.0,
            "net_pnl": 19.9,
            "pnl_pct": 3.864078,
        },
    ]
    (cover,) = rows(
        engine, "SELECT side, exec_qty, commission FROM trading.fills WHERE side = 'Buy'"
    )
    assert tuple(cover) == ("Buy", Decimal("0.025"), Decimal("0.5"))
    assert open_lots(engine, "shortseller_001", "BTCUSDT") == [
        ("Sell", Decimal("103000"), Decimal("0.005"))
    ]


def test_close_position_fifo_without_open_lots_writes_nothing(
    lx: AlphaDBClient, engine: Engine
) -> None:
    assert lx.close_position_fifo("XRPUSDT", 2.5, 10.0, T3, "stop_loss") == []
    assert fill_count(engine) == 0


def test_close_position_fifo_caps_an_excess_close_instead_of_flipping(
    lx: AlphaDBClient, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    entry = lx.create_position_entry("DOGEUSDT", 0.2, 100.0, T1)
    with caplog.at_level(logging.WARNING, logger="alpha_models.client"):
        result = lx.close_position_fifo("DOGEUSDT", 0.25, 300.0, T3, "external_close")
    assert "exceeds the open long" in caplog.text
    assert result == [
        {
            "entry_id": entry,
            "trade_id": None,
            "entry_price": 0.2,
            "exit_price": 0.25,
            "quantity": 100.0,
            "gross_pnl": 5.0,
            "net_pnl": 5.0,
            "pnl_pct": 25.0,
        },
    ]
    (sell,) = rows(engine, "SELECT exec_qty FROM trading.fills WHERE side = 'Sell'")
    assert sell.exec_qty == Decimal("100")
    assert position(engine, "lxalgo_001", "DOGEUSDT") == ("", Decimal("0"))  # flat, no short


def test_exit_written_with_write_fill_then_close_position_fifo_is_booked_once(
    lx: AlphaDBClient, engine: Engine
) -> None:
    """The platform's close path: the exit fill, then FIFO (here a partial exit, and then
    LXAlgo's "qty/2 for dual instances" on the rest)."""
    entry = lx.create_position_entry("SUIUSDT", 2.0, 30.0, T1)
    lx.write_fill("SUIUSDT", "Sell", 2.5, 10.0, "bybit-1", "lxalgo_001:tp:x", "take_profit", 0.0)
    result = lx.close_position_fifo(
        "SUIUSDT", 2.5, 10.0, datetime.now(UTC).replace(tzinfo=None), "take_profit", "bybit-1"
    )
    assert result == [
        {
            "entry_id": entry,
            "trade_id": None,
            "entry_price": 2.0,
            "exit_price": 2.5,
            "quantity": 10.0,
            "gross_pnl": 5.0,
            "net_pnl": 5.0,
            "pnl_pct": 25.0,
        },
    ]
    assert fill_count(engine) == 2  # entry + the caller's exit: no second exit
    assert open_lots(engine, "lxalgo_001", "SUIUSDT") == [("Buy", Decimal("2"), Decimal("20"))]
    lx.write_fill("SUIUSDT", "Sell", 1.8, 20.0, "bybit-2", "lxalgo_001:sl:y", "stop_loss", 0.0)
    result = lx.close_position_fifo("SUIUSDT", 1.8, 10.0, datetime.now(UTC), "stop_loss")
    assert [(r["quantity"], round(r["gross_pnl"], 8)) for r in result] == [(20.0, -4.0)]
    assert fill_count(engine) == 3
    assert position(engine, "lxalgo_001", "SUIUSDT") == ("", Decimal("0"))


def test_back_dated_exit_and_late_retry_report_from_a_replay(
    lx: AlphaDBClient, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alpha_models.client")
    first = lx.create_position_entry("LINKUSDT", 10.0, 1.0, T1)
    lx.create_position_entry("LINKUSDT", 11.0, 1.0, T3)
    # Dated between the two entries: the write path rebuilds the lots in time order, so the
    # exit can only have closed the first lot.
    back = lx.close_position_fifo("LINKUSDT", 12.0, 1.0, T2, "take_profit", "exit-b")
    assert [(r["entry_id"], r["quantity"], r["gross_pnl"]) for r in back] == [(first, 1.0, 2.0)]
    assert "was rebuilt" in caplog.text
    assert open_lots(engine, "lxalgo_001", "LINKUSDT") == [("Buy", Decimal("11"), Decimal("1"))]
    lx.create_position_entry("LINKUSDT", 9.0, 1.0, T3 + timedelta(hours=1))
    # The same call again, after more activity: stored once, same report.
    assert lx.close_position_fifo("LINKUSDT", 12.0, 1.0, T2, "take_profit", "exit-b") == back
    assert "was duplicate" in caplog.text
    assert fill_count(engine) == 4
    assert open_lots(engine, "lxalgo_001", "LINKUSDT") == [
        ("Buy", Decimal("11"), Decimal("1")),
        ("Buy", Decimal("9"), Decimal("1")),
    ]


def test_open_entries_and_position_summary(lx: AlphaDBClient) -> None:
    lx.create_position_entry("SOLUSDT", 100.0, 1.0, T1, commission=0.1)
    lx.create_position_entry("SOLUSDT", 130.0, 3.0, T2, commission=0.3)
    lx.create_position_entry("ADAUSDT", 0.5, 10.0, T1)
    lx.create_position_entry("ETHUSDT", 3000.0, 1.0, T3)
    lx.close_position_fifo("ETHUSDT", 3100.0, 1.0, T3 + timedelta(hours=1), "take_profit")
    assert [(e["symbol"], e["entry_price"]) for e in lx.get_open_position_entries()] == [
        ("ADAUSDT", Decimal("0.5")),
        ("SOLUSDT", Decimal("100")),
        ("SOLUSDT", Decimal("130")),
    ]
    summary = lx.get_current_position_summary("SOLUSDT")
    assert summary is not None
    assert summary["total_qty"] == Decimal("4") and summary["num_entries"] == 2
    assert summary["avg_entry_price"] == Decimal("122.5")  # (100 + 390) / 4
    assert summary["total_entry_commission"] == Decimal("0.4")
    assert summary["side"] == "Buy" and summary["first_entry_time"] == utc(T1)
    assert lx.get_current_position_summary("ETHUSDT") is None  # closed
    assert lx.get_current_position_summary("BTCUSDT") is None


# ------------------------------------------------------------------------------ Redis


def test_position_keys_are_written_together_and_read_by_todays_readers(
    lx: AlphaDBClient, devstack: DevStack, redis_client: redis.Redis
) -> None:
    r1 = redis.Redis.from_url(devstack.redis_url(1), decode_responses=True)
    try:
        redis_client.config_resetstat()
        lx.update_position_redis("SOLUSDT", 33.1, "Buy", 150.25, 0.0)
        stats = redis_client.info("commandstats")
        assert stats["cmdstat_multi"]["calls"] == 1 and stats["cmdstat_exec"]["calls"] == 1
        # Today's readers, in the bot's DB (1): float(GET) and HGETALL.
        assert float(r1.get("position:lxalgo_001:SOLUSDT")) == 33.1  # type: ignore[arg-type]
        details: dict[str, str] = r1.hgetall("position:lxalgo_001:SOLUSDT:details")  # type: ignore[assignment]
        assert (details["size"], details["side"], details["avg_price"]) == ("33.1", "Buy", "150.25")
        assert details["unrealized_pnl"] == "0.0"
        assert datetime.fromisoformat(details["last_update"]).tzinfo is None  # naive UTC
        assert redis_client.exists("position:lxalgo_001:SOLUSDT") == 0  # not DB 0
        assert lx.get_position_redis("SOLUSDT") == {
            "size": 33.1,
            "side": "Buy",
            "avg_price": 150.25,
            "unrealized_pnl": 0.0,
            "last_update": details["last_update"],
        }
        # Flat, as LXAlgo writes it; the hash is replaced, so no stale field survives.
        lx.update_position_redis("SOLUSDT", 0.0, None)
        assert r1.get("position:lxalgo_001:SOLUSDT") == "0.0"
        details = r1.hgetall("position:lxalgo_001:SOLUSDT:details")  # type: ignore[assignment]
        assert details["side"] == "None" and "avg_price" not in details
        got = lx.get_position_redis("SOLUSDT")
        assert got is not None and (got["size"], got["side"], got["avg_price"]) == (0.0, None, None)
        assert lx.get_position_redis("BTCUSDT") is None
        with pytest.raises(ValidationError):
            lx.update_position_redis("SOLUSDT", -1.0, "Sell")
        with pytest.raises(ValidationError):
            lx.update_position_redis("SOLUSDT", 1.0, "long")
    finally:
        r1.close()


def test_redis_db_argument_wins_over_redis_db_setting(
    make_client: MakeClient, devstack: DevStack
) -> None:
    client = make_client(
        "momentum_001",
        2,
        ALPHA_REDIS_URL=None,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=devstack.redis.port,
        REDIS_DB=7,
    )
    client.set_redis_key("probe", "x", ex=60)
    r2 = redis.Redis.from_url(devstack.redis_url(2), decode_responses=True)
    r7 = redis.Redis.from_url(devstack.redis_url(7), decode_responses=True)
    try:
        assert r2.get("probe") == "x" and 0 < r2.ttl("probe") <= 60
        assert r7.get("probe") is None
        assert client.get_redis_key("probe") == "x"
        assert client.get_redis_key("missing") is None
    finally:
        r2.close()
        r7.close()


# ------------------------------------------------------------------------------ bot row, analytics


def test_heartbeat_and_equity(ss: AlphaDBClient, engine: Engine) -> None:
    (before_row,) = rows(
        engine, "SELECT updated_at FROM trading.bots WHERE bot_id = :b", b="shortseller_001"
    )
    start = datetime.now(UTC)
    ss.update_heartbeat()
    (row,) = rows(
        engine,
        "SELECT last_heartbeat, updated_at FROM trading.bots WHERE bot_id = :b",
        b="shortseller_001",
    )
    assert start <= row.last_heartbeat <= datetime.now(UTC)
    assert row.updated_at == before_row.updated_at  # untouched, as the original
    ss.update_equity(7574.47402771)
    (row,) = rows(
        engine,
        "SELECT current_equity, updated_at FROM trading.bots WHERE bot_id = :b",
        b="shortseller_001",
    )
    assert row.current_equity == Decimal("7574.47402771")
    assert start <= row.updated_at <= datetime.now(UTC)
    with pytest.raises(ValidationError):
        ss.update_equity(float("nan"))


def test_daily_cash_flow_and_todays_count(ss: AlphaDBClient, lx: AlphaDBClient) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    ss.write_fill("BTCUSDT", "Sell", 500.0, 1.0, "o-old", "", "entry", 0.0, now - timedelta(days=2))
    ss.write_fill("BTCUSDT", "Buy", 500.0, 1.0, "o-old2", "", "tp", 0.0, now - timedelta(days=2))
    ss.write_fill("ETHUSDT", "Buy", 100.0, 1.0, "o-1", "", "entry", 0.1, now - timedelta(hours=3))
    ss.write_fill("ETHUSDT", "Sell", 110.0, 1.0, "o-2", "", "tp", 0.11, now - timedelta(hours=1))
    lx.write_fill("ETHUSDT", "Sell", 999.0, 1.0, "o-lx", "", "tp", 0.0, now)  # another bot
    assert ss.get_daily_pnl() == pytest.approx(9.79)  # 110 - 100 - 0.21: cash flow
    assert ss.get_daily_pnl(days=3) == pytest.approx(9.79)  # the old pair nets to 0
    ss.write_fill("SOLUSDT", "Sell", 10.0, 2.0, "o-3", "", "entry", 0.0, now - timedelta(days=2))
    assert ss.get_daily_pnl(3) == pytest.approx(29.79)
    start_of_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    ss.write_fill(
        "SOLUSDT", "Buy", 10.0, 1.0, "o-4", "", "x", 0.0, start_of_day - timedelta(minutes=1)
    )
    ss.write_fill("SOLUSDT", "Buy", 10.0, 1.0, "o-5", "", "x", 0.0, start_of_day)
    expected = sum(1 for f in ss.get_recent_fills(limit=100) if f["exec_time"] >= start_of_day)
    assert ss.get_trade_count_today() == expected >= 1


def test_reads_leave_no_transaction_open(lx: AlphaDBClient, engine: Engine) -> None:
    lx.create_position_entry("SOLUSDT", 100.0, 1.0, T1)
    lx.get_recent_fills()
    lx.get_open_position_entries()
    lx.get_current_position_summary("SOLUSDT")
    lx.get_daily_pnl()
    lx.get_trade_count_today()
    lx.update_heartbeat()
    (row,) = rows(
        engine,
        "SELECT count(*) FILTER (WHERE state LIKE 'idle in transaction%') AS stuck, "
        "count(*) FILTER (WHERE application_name = 'alpha-models') AS ours "
        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    assert row.ours >= 1 and row.stuck == 0


def test_through_pgbouncer(make_client: MakeClient, db: Database) -> None:
    client = make_client("shortseller_001", 0, ALPHA_DATABASE_URL=db.bouncer_url)
    fid = client.write_fill("BTCUSDT", "Sell", 100.0, 1.0, "o-1", "", "entry", 0.0, T1)
    assert [f["id"] for f in client.get_recent_fills()] == [fid]
    assert (
        client.close_position_fifo("BTCUSDT", 90.0, 1.0, T3, "take_profit")[0]["gross_pnl"] == 10.0
    )
    client.update_heartbeat()
    assert client.get_daily_pnl(days=10_000) == pytest.approx(10.0)


# ------------------------------------------------------------------------------ unreachable servers


def test_unreachable_servers_do_not_raise_and_fills_are_spooled(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    db: Database,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pg_secret, redis_secret = "Pg5ecretValue", "Rd5ecretValue"
    spool = tmp_path / "spool"
    monkeypatch.setenv(
        "ALPHA_DATABASE_URL",
        f"postgresql://trading_user:{pg_secret}@127.0.0.1:{free_port()}/trading_db",
    )
    monkeypatch.setenv("ALPHA_REDIS_URL", f"redis://:{redis_secret}@127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("ALPHA_SPOOL_DIR", str(spool))
    monkeypatch.setenv("ALPHA_CONNECT_TIMEOUT", "1")
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        client = AlphaDBClient("lxalgo_001", redis_db=1)  # no exception: nothing connects
        args = ("SOLUSDT", "Buy", 150.0, 2.0, "o-1", "lxalgo_001:entry:1", "entry", 0.0, T1)
        assert client.write_fill(*args) == 0  # spooled
        assert client.write_fill(*args) == 0  # spooled again: delivered once (same exec_id)
        # The lot of the spooled fill is known from memory: nothing more is spooled.
        entry_id = client.create_position_entry("SOLUSDT", 150.0, 2.0, T1, "o-1", 0)
        assert entry_id.startswith("legacy:")
        assert client.get_recent_fills() == []
        assert client.get_open_position_entries() == []
        assert client.get_current_position_summary("SOLUSDT") is None
        assert client.get_daily_pnl() == 0.0 and client.get_trade_count_today() == 0
        client.update_heartbeat()
        client.update_equity(1000.0)
        client.update_position_redis("SOLUSDT", 2.0, "Buy", 150.0)
        assert client.get_position_redis("SOLUSDT") is None
        client.set_redis_key("k", "v")
        assert client.get_redis_key("k") is None
        for call in (
            lambda: client.record_completed_trade(
                "SOLUSDT", "Buy", 1.0, 1.0, T1, None, "Sell", 2.0, 1.0, T3, None
            ),
            lambda: client.close_position_fifo("SOLUSDT", 160.0, 2.0, T3, "take_profit"),
            # An entry fill this client never saw cannot be checked: refused, nothing spooled.
            lambda: client.create_position_entry("SOLUSDT", 151.0, 2.0, T1, entry_fill_id=42),
        ):
            with pytest.raises(DatabaseUnavailableError) as caught:
                call()
            errors.append(str(caught.value))
        client.close()
    texts = [*errors, caplog.text]
    assert "PostgreSQL unavailable" in errors[0]
    assert "Redis" not in errors[0] and "get_position_redis failed" in caplog.text
    for secret in (pg_secret, redis_secret):
        assert all(secret not in t for t in texts), secret
    # PostgreSQL is back: the spool is delivered into the real database, exactly once.
    settings = Settings(ALPHA_DATABASE_URL=db.url, ALPHA_SPOOL_DIR=str(spool))
    writer = WritePath(make_engine(settings), settings=settings)
    assert writer.flush() == 2
    stored = rows(engine, "SELECT exec_id, bot_id, exec_time FROM trading.fills")
    assert [(r.exec_id, r.bot_id, r.exec_time) for r in stored] == [
        (entry_id, "lxalgo_001", utc(T1))
    ]
    lots = rows(engine, "SELECT entry_id FROM trading.position_entries")
    assert [r.entry_id for r in lots] == [entry_id]
    writer.engine.dispose()


def test_context_manager_and_close_are_safe(make_client: MakeClient, db: Database) -> None:
    client = make_client("momentum_001", 2)
    with client as c:
        assert c.write_fill("ETHUSDT", "Buy", 3000.0, 0.1, "o", "", "entry", 0.0, T1) > 0
    client.close()  # idempotent


# ------------------------------------------------------------------------------ helpers


def test_parse_client_order_id_keeps_the_original_semantics() -> None:
    assert parse_client_order_id("shortseller_001:take_profit:1762391400000") == {
        "bot_id": "shortseller_001",
        "close_reason": "take_profit",
        "timestamp": "1762391400000",
    }
    assert parse_client_order_id("manual_override:close") == {
        "bot_id": "manual_override",
        "close_reason": "close",
        "timestamp": "",
    }
    assert parse_client_order_id("892bba4db2b44a42") == {
        "bot_id": "892bba4db2b44a42",
        "close_reason": "unknown",
        "timestamp": "",
    }
    assert parse_client_order_id("") == {"bot_id": "", "close_reason": "unknown", "timestamp": ""}
    assert parse_client_order_id(None) == {  # type: ignore[arg-type]
        "bot_id": "unknown",
        "close_reason": "unknown",
        "timestamp": "",
    }
    assert AlphaDBClient.parse_client_order_id("a:b:c:d")["timestamp"] == "c"


def test_create_client_order_id_is_compact_unique_and_parses_back() -> None:
    ids = {create_client_order_id("shortseller_001", "take_profit") for _ in range(200)}
    assert len(ids) == 200
    for link in ids:
        assert len(link) <= 36 and link.startswith("shortseller_001:tp:")
        parsed = parse_client_order_id(link)
        assert parsed["bot_id"] == "shortseller_001" and parsed["close_reason"] == "take_profit"
    momentum = AlphaDBClient.create_client_order_id("momentum_001", "Exchange Stop Loss")
    assert parse_client_order_id(momentum)["close_reason"] == "Exchange Stop Loss"
    with pytest.raises(ValidationError):
        create_client_order_id("a_bot_id_longer_than_15", "tp")
