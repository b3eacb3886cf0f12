"""Momentum's drop-in ``TradeDatabase`` against real PostgreSQL, PgBouncer and Redis.

Every public method is called the way trading_system.py calls it (MOMENTUM.md section 5)
and the results are checked against answers computed by hand.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine

from adapters.momentum import TradeDatabase, sqlite_limit
from alpha_models.bots import register_bots
from alpha_models.bybit_stream import parse_execution
from alpha_models.errors import ConstraintViolationError, DatabaseError, ValidationError
from alpha_models.momentum_import import legacy_time
from alpha_models.momentum_store import number
from alpha_models.order_link import parse_order_link_id
from alpha_models.pnl import PnlFill, rebuild
from alpha_models.settings import Settings
from tests.conftest import Database

BOT = "momentum_001"
TRADE_KEYS = [
    "id",
    "trade_id",
    "mode",
    "symbol",
    "side",
    "entry_time",
    "entry_price",
    "exit_time",
    "exit_price",
    "quantity",
    "position_size_usd",
    "stop_loss",
    "take_profit",
    "pnl_usd",
    "pnl_pct",
    "exit_reason",
    "holding_time_seconds",
    "signal_strength",
    "created_at",
]
STATS_KEYS = [
    "total_trades",
    "wins",
    "losses",
    "win_rate",
    "total_pnl",
    "avg_pnl_pct",
    "avg_win_pct",
    "avg_loss_pct",
    "best_trade",
    "worst_trade",
    "avg_holding_hours",
]


def make_db(database: Database, folder: Path, *, via_pgbouncer: bool = False) -> TradeDatabase:
    settings = Settings(
        ALPHA_DATABASE_URL=database.bouncer_url if via_pgbouncer else database.url,
        ALPHA_REDIS_URL=database.stack.redis_url(),
        ALPHA_CONNECT_TIMEOUT=2,
    )
    return TradeDatabase(str(folder / "data" / "trading.db"), settings=settings)


@pytest.fixture
def engine(db: Database) -> Iterator[Engine]:
    eng = db.engine()
    register_bots(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def tdb(db: Database, engine: Engine, tmp_path: Path, redis_client: redis.Redis) -> Iterator[Any]:
    trade_db = make_db(db, tmp_path)
    yield trade_db
    trade_db.close()


def count(engine: Engine, table: str, where: str = "true") -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one())


def all_counts(engine: Engine) -> dict[str, int]:
    return {
        t: count(engine, t)
        for t in (
            "trading.strategy_trades",
            "trading.fills",
            "trading.equity_snapshots",
            "audit.system_events",
            "audit.risk_events",
        )
    }


def fills_of(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id, exec_id, bot_id, symbol, side, exec_price, exec_qty, exec_time, "
                    "commission, close_reason, client_order_id, source FROM trading.fills "
                    "WHERE bot_id = :b ORDER BY exec_time, id"
                ),
                {"b": BOT},
            )
        )


def enter(tdb: Any, trade_id: str, symbol: str, price: float, qty: float, **extra: Any) -> int:
    """trading_system.py line 375: keywords, no take_profit."""
    result: int = tdb.log_trade_entry(
        trade_id=trade_id,
        mode=extra.pop("mode", "demo"),
        symbol=symbol,
        side="Buy",
        entry_price=np.float64(price),  # the last kline close
        quantity=qty,
        position_size_usd=extra.pop("size", price * qty),
        stop_loss=price * 0.9,
        signal_strength=np.float64(extra.pop("signal", 0.75)),
    )
    return result


def leave(
    tdb: Any, trade_id: str, exit_price: float, entry_price: float, size: float, **kw: Any
) -> None:
    """trading_system.py line 504: keywords; pnl_pct = exit/entry - 1, pnl_usd = size * pct."""
    pnl_pct = exit_price / entry_price - 1
    tdb.log_trade_exit(
        trade_id=trade_id,
        exit_price=exit_price,
        pnl_usd=size * pnl_pct,
        pnl_pct=pnl_pct,
        exit_reason=kw.get("reason", "MA Exit"),
        holding_time_seconds=kw.get("holding", 3600),
    )


# ------------------------------------------------------------------------------ shape


def test_constructor_is_the_original_and_always_truthy(
    db: Database, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trade_db = TradeDatabase(
        str(tmp_path / "data" / "trading.db"),
        settings=Settings(ALPHA_DATABASE_URL=db.url, ALPHA_REDIS_URL=db.stack.redis_url()),
    )
    try:
        assert bool(trade_db) is True  # `if self.db:` guards every call site
        assert trade_db.db_path == tmp_path / "data" / "trading.db"
        assert (tmp_path / "data" / "trading.db.spool" / "records").is_dir()
        assert not trade_db.db_path.exists()  # the adapter never writes a SQLite file
        assert "✓ Database initialized" in capsys.readouterr().out
    finally:
        trade_db.close()
    assert bool(trade_db) is True


def test_a_trading_session_as_trading_system_makes_it(tdb: Any, engine: Engine) -> None:
    tdb.log_event("SYSTEM_START", "INFO", "Trading system started in demo mode")
    tdb.log_risk_event("DAILY_LOSS_LIMIT", -0.041156280209767464, 0.03, "No new positions today")
    btc_id = enter(tdb, "BTCUSDT_1762000000", "BTCUSDT", 100000.0, 0.002, signal=0.9148148148148149)
    enter(tdb, "ETHUSDT_1762000001", "ETHUSDT", 4000.0, 0.05)
    assert isinstance(btc_id, int) and btc_id > 0
    leave(tdb, "BTCUSDT_1762000000", 105000.0, 100000.0, 200.0, holding=7200)
    leave(tdb, "ETHUSDT_1762000001", 3840.0, 4000.0, 200.0, reason="Exchange Stop Loss")
    tdb.log_event("ERROR", "ERROR", "Trading loop error: boom")

    stats = tdb.get_performance_stats(mode="demo")  # line 719
    tdb.log_event("SYSTEM_STOP", "INFO", "Trading system stopped", stats)  # line 720

    # By hand: +10.0 (BTC +5 % of 200) and -8.0 (ETH -4 % of 200), held 2 h and 1 h.
    assert list(stats) == STATS_KEYS
    assert stats == {
        "total_trades": 2,
        "wins": 1,
        "losses": 1,
        "win_rate": 0.5,
        "total_pnl": 2.0,
        "avg_pnl_pct": 0.005,
        "avg_win_pct": 0.05,
        "avg_loss_pct": -0.04,
        "best_trade": 10.0,
        "worst_trade": -8.0,
        "avg_holding_hours": 1.5,
    }
    assert all(type(v) in (int, float) for v in stats.values())

    recent = tdb.get_recent_trades()
    assert [t["trade_id"] for t in recent] == ["ETHUSDT_1762000001", "BTCUSDT_1762000000"]
    btc = recent[1]
    assert list(btc) == TRADE_KEYS
    assert btc["id"] == btc_id
    assert (btc["mode"], btc["symbol"], btc["side"]) == ("demo", "BTCUSDT", "Buy")
    assert (btc["entry_price"], btc["exit_price"], btc["quantity"]) == (100000.0, 105000.0, 0.002)
    assert (btc["position_size_usd"], btc["stop_loss"], btc["take_profit"]) == (
        200.0,
        90000.0,
        None,
    )
    assert (btc["pnl_usd"], btc["pnl_pct"], btc["holding_time_seconds"]) == (10.0, 0.05, 7200)
    assert btc["signal_strength"] == 0.91481481  # numeric(20,8); exact text kept in details
    assert btc["exit_reason"] == "MA Exit"
    assert isinstance(btc["entry_time"], str) and len(btc["entry_time"]) in (19, 26)
    assert len(btc["created_at"]) == 19
    assert tdb.get_open_trades() == []

    events = tdb.get_recent_events()
    assert [e["event_type"] for e in events] == ["SYSTEM_STOP", "ERROR", "SYSTEM_START"]
    assert list(events[0]) == [
        "id",
        "event_time",
        "event_type",
        "event_level",
        "message",
        "details",
        "created_at",
    ]
    assert json.loads(events[0]["details"]) == stats
    assert events[1]["details"] is None and events[1]["event_level"] == "ERROR"
    assert [e["event_type"] for e in tdb.get_recent_events(level="ERROR")] == ["ERROR"]

    # Each entry and exit is a fill of momentum_001; the round trips are in the FIFO P&L.
    fills = fills_of(engine)
    assert [(f.symbol, f.side, f.exec_id) for f in fills] == [
        ("BTCUSDT", "Buy", "momentum_001:BTCUSDT_1762000000:entry"),
        ("ETHUSDT", "Buy", "momentum_001:ETHUSDT_1762000001:entry"),
        ("BTCUSDT", "Sell", "momentum_001:BTCUSDT_1762000000:exit"),
        ("ETHUSDT", "Sell", "momentum_001:ETHUSDT_1762000001:exit"),
    ]
    assert [f.close_reason for f in fills] == ["entry", "entry", "MA Exit", "Exchange Stop Loss"]
    result = rebuild(
        PnlFill(
            fill_id=f.id,
            exec_id=f.exec_id,
            bot_id=f.bot_id,
            symbol=f.symbol,
            side=f.side,
            price=f.exec_price,
            qty=f.exec_qty,
            fee=f.commission,
            exec_time=f.exec_time,
        )
        for f in fills
    )
    assert sorted(t.net_pnl for t in result.round_trips) == [Decimal("-8"), Decimal("10")]
    with engine.connect() as conn:
        sizes = conn.execute(
            text("SELECT symbol, size FROM trading.positions WHERE bot_id = :b"), {"b": BOT}
        ).all()
        risk = conn.execute(
            text(
                "SELECT risk_type, current_value, limit_value, action_taken FROM audit.risk_events"
            )
        ).one()
    assert all(size == 0 for _, size in sizes) and len(sizes) == 2
    assert tuple(risk) == (
        "DAILY_LOSS_LIMIT",
        Decimal("-0.04115628"),
        Decimal("0.03000000"),
        "No new positions today",
    )


def test_stats_edge_types_follow_the_original(tdb: Any) -> None:
    empty = tdb.get_performance_stats()
    assert empty == dict.fromkeys(STATS_KEYS, 0) | {"avg_holding_hours": 0.0}
    assert type(empty["win_rate"]) is int and type(empty["avg_holding_hours"]) is float
    # Trades but no wins: win_rate is the float 0.0; a total of exactly 0.0 is the int 0.
    enter(tdb, "SOLUSDT_1", "SOLUSDT", 100.0, 1.0)
    enter(tdb, "SOLUSDT_2", "SOLUSDT", 100.0, 1.0)
    leave(tdb, "SOLUSDT_1", 100.0, 100.0, 100.0)  # pnl 0.0: neither a win nor a loss
    stats = tdb.get_performance_stats()
    assert stats["total_trades"] == 1 and stats["wins"] == 0 and stats["losses"] == 0
    assert type(stats["win_rate"]) is float and stats["win_rate"] == 0.0
    assert type(stats["total_pnl"]) is int and stats["total_pnl"] == 0
    assert stats["avg_holding_hours"] == 1.0


def test_stats_filters_by_mode_and_days(tdb: Any) -> None:
    enter(tdb, "XRPUSDT_1", "XRPUSDT", 2.0, 100.0, mode="demo")
    enter(tdb, "XRPUSDT_2", "XRPUSDT", 2.0, 100.0, mode="live")
    leave(tdb, "XRPUSDT_1", 2.2, 2.0, 200.0)
    leave(tdb, "XRPUSDT_2", 1.8, 2.0, 200.0)
    assert tdb.get_performance_stats(mode="demo")["total_pnl"] == 20.0
    assert tdb.get_performance_stats(mode="live")["total_pnl"] == -20.0
    assert tdb.get_performance_stats()["total_trades"] == 2
    assert tdb.get_performance_stats(days=1)["total_trades"] == 2
    assert tdb.get_performance_stats(days="7")["total_trades"] == 2
    assert tdb.get_performance_stats(days=0.5)["total_trades"] == 2
    assert tdb.get_performance_stats(days=-1)["total_trades"] == 0  # as the original
    with pytest.raises(ValidationError):
        tdb.get_performance_stats(days="1') OR 1=1 OR datetime('now")
    assert [t["mode"] for t in tdb.get_recent_trades(mode="live")] == ["live"]
    assert tdb.get_recent_trades(mode="") == tdb.get_recent_trades()  # falsy: no filter


def test_limits_have_sqlite_semantics(tdb: Any) -> None:
    for i in range(4):
        enter(tdb, f"ADAUSDT_{i}", "ADAUSDT", 1.0, 10.0)
        leave(tdb, f"ADAUSDT_{i}", 1.1, 1.0, 10.0)
    assert len(tdb.get_recent_trades(limit=-1)) == 4
    assert tdb.get_recent_trades(limit=0) == []
    assert len(tdb.get_recent_trades(limit="3")) == 3
    assert len(tdb.get_recent_trades(limit=True)) == 1
    assert [t["trade_id"] for t in tdb.get_recent_trades(limit=2)] == ["ADAUSDT_3", "ADAUSDT_2"]
    for bad in (None, 2.5, "two"):
        with pytest.raises(ValidationError):
            tdb.get_recent_trades(limit=bad)


_limit_values = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(alphabet="0123456789+-.eE \t\nx", max_size=8),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(allow_nan=False, width=32).map(repr),
)


@given(_limit_values)
@settings(max_examples=400, deadline=None)
def test_sqlite_limit_matches_sqlite_itself(value: Any) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(5)])
    try:
        expected: int | None = len(conn.execute("SELECT x FROM t LIMIT ?", (value,)).fetchall())
    except (sqlite3.Error, OverflowError):
        expected = None
    finally:
        conn.close()
    try:
        n = sqlite_limit(value)
        got: int | None = 5 if n is None else min(n, 5)
    except ValidationError:
        got = None
    assert got == expected, value


@given(st.floats(min_value=-1e11, max_value=1e11, allow_nan=False, allow_infinity=False))
@settings(max_examples=500, deadline=None)
def test_a_strategy_float_is_stored_to_8_dp_and_kept_exactly(value: float) -> None:
    stored, exact = number("pnl_usd", value)
    assert stored == Decimal(repr(value)).quantize(Decimal("1E-8"), ROUND_HALF_UP)
    assert float(exact if exact is not None else stored) == value  # nothing is lost
    assert (exact is None) == (Decimal(repr(value)) == stored)


@given(st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2099, 12, 31)))
@settings(max_examples=300, deadline=None)
def test_times_come_back_in_the_originals_text_form(moment: datetime) -> None:
    aware = moment.replace(tzinfo=UTC)
    shown = legacy_time(aware)
    assert shown == moment.isoformat(" ")  # sqlite3's adapter: fraction omitted when 0
    assert datetime.fromisoformat(shown).replace(tzinfo=UTC) == aware


# ------------------------------------------------------------------------------ bad calls


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"quantity": -0.5}, "quantity"),
        ({"quantity": 1e-9}, "quantity"),  # rounds to 0 at 8 dp
        ({"stop_loss": math.nan}, "stop_loss"),
        ({"entry_price": 0.0}, "entry_price"),
        ({"entry_price": math.inf}, "entry_price"),
        ({"side": "buy"}, "side"),
        ({"mode": "paper"}, "mode"),
        ({"symbol": "btc-usdt"}, "symbol"),
        ({"position_size_usd": -10.0}, "position_size_usd"),
        ({"trade_id": None}, "trade_id"),
        ({"entry_price": None}, "entry_price"),
    ],
)
def test_bad_entries_are_rejected_and_write_nothing(
    tdb: Any, engine: Engine, change: dict[str, Any], field: str
) -> None:
    before = all_counts(engine)
    call = {
        "trade_id": "BTCUSDT_1",
        "mode": "demo",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "entry_price": 100000.0,
        "quantity": 0.002,
        "position_size_usd": 200.0,
        "stop_loss": 90000.0,
    } | change
    with pytest.raises(ValidationError) as err:
        tdb.log_trade_entry(**call)
    assert err.value.field == field
    assert all_counts(engine) == before


def test_bad_exits_events_and_snapshots_are_rejected(tdb: Any, engine: Engine) -> None:
    enter(tdb, "DOTUSDT_1", "DOTUSDT", 5.0, 10.0)
    before = all_counts(engine)
    bad_calls = [
        lambda: tdb.log_trade_exit("DOTUSDT_1", math.nan, 1.0, 0.02, "MA Exit", 60),
        lambda: tdb.log_trade_exit("DOTUSDT_1", None, 1.0, 0.02, "MA Exit", 60),
        lambda: tdb.log_trade_exit("DOTUSDT_1", 5.1, math.inf, 0.02, "MA Exit", 60),
        lambda: tdb.log_trade_exit("DOTUSDT_1", 5.1, 1.0, 0.02, "x" * 51, 60),
        lambda: tdb.log_trade_exit("DOTUSDT_1", 5.1, 1.0, 0.02, "MA Exit", -5),
        lambda: tdb.log_event("ERROR", "info", "lower-case level"),
        lambda: tdb.log_event("ERROR", "ERROR", None),
        lambda: tdb.log_event("X", "INFO", "m", {"when": object()}),
        lambda: tdb.log_risk_event("DAILY_LOSS_LIMIT", math.nan, 0.03, "No new positions today"),
        lambda: tdb.save_daily_snapshot("2025-13-01", "demo", 1, 1, 0, 0, 0, 0, 0, 0),
        lambda: tdb.save_daily_snapshot("2025-10-01", "demo", 1, 1, 0, 0, None, 0, 0, 0),
    ]
    for call in bad_calls:
        with pytest.raises(ValidationError):
            call()
    assert all_counts(engine) == before


def test_duplicate_trade_id_is_rejected_like_the_original(tdb: Any, engine: Engine) -> None:
    enter(tdb, "LINKUSDT_1", "LINKUSDT", 20.0, 10.0)
    with pytest.raises(ConstraintViolationError) as err:
        enter(tdb, "LINKUSDT_1", "LINKUSDT", 21.0, 5.0)
    assert err.value.constraint == "strategy_trades_bot_id_trade_key_key"
    assert count(engine, "trading.strategy_trades") == 1
    assert [f.exec_price for f in fills_of(engine)] == [Decimal("20")]


def test_exit_for_unknown_trade_is_a_no_op_with_a_warning(tdb: Any, engine: Engine) -> None:
    assert tdb.log_trade_exit("NOPE_1", 1.0, 0.0, 0.0, "MA Exit", 10) is None
    assert count(engine, "trading.fills") == 0
    assert count(engine, "trading.strategy_trades") == 0
    warnings = tdb.get_recent_events(level="WARNING")
    assert [w["event_type"] for w in warnings] == ["UNKNOWN_TRADE_EXIT"]
    assert "NOPE_1" in warnings[0]["message"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT trade_id FROM audit.system_events")).scalar() == "NOPE_1"


def test_a_second_exit_keeps_the_first(tdb: Any, engine: Engine) -> None:
    enter(tdb, "AVAXUSDT_1", "AVAXUSDT", 30.0, 10.0)
    leave(tdb, "AVAXUSDT_1", 27.0, 30.0, 300.0, reason="Exchange Stop Loss")
    leave(tdb, "AVAXUSDT_1", 26.0, 30.0, 300.0, reason="Exchange Stop Loss")  # the retry
    (trade,) = tdb.get_recent_trades()
    assert trade["exit_price"] == 27.0 and trade["pnl_usd"] == -30.0
    assert [f.side for f in fills_of(engine)] == ["Buy", "Sell"]
    assert [w["event_type"] for w in tdb.get_recent_events(level="WARNING")] == [
        "DUPLICATE_TRADE_EXIT"
    ]


# ------------------------------------------------------------------------------ snapshots


def test_daily_snapshots(tdb: Any, engine: Engine) -> None:
    tdb.save_daily_snapshot("2025-10-01", "demo", 1000.0, 1010.0, 10.0, 0.01, 3, 2, 1, 1)
    tdb.save_daily_snapshot("20251002", "demo", 1010.0, 1000.0, -10.0, -0.0099, 2, 0, 2, 0)
    tdb.save_daily_snapshot("2025-10-02", "demo", 1010.0, 990.0, -20.0, -0.0198, 2, 0, 2, 0)
    tdb.save_daily_snapshot("2025-10-02", "live", 500.0, 505.0, 5.0, 0.01, 1, 1, 0, 0)
    assert count(engine, "trading.equity_snapshots") == 3  # (date, mode) is the key
    rows = tdb.get_daily_snapshots(days=2)  # a row count, not a calendar window
    assert [(r["date"], r["mode"]) for r in rows] == [
        ("2025-10-02", "live"),
        ("2025-10-02", "demo"),
    ]
    assert list(rows[1]) == [
        "id",
        "date",
        "mode",
        "starting_equity",
        "ending_equity",
        "daily_pnl",
        "daily_pnl_pct",
        "trades_count",
        "wins_count",
        "losses_count",
        "open_positions",
        "created_at",
    ]
    assert (rows[1]["ending_equity"], rows[1]["daily_pnl_pct"], rows[1]["losses_count"]) == (
        990.0,
        -0.0198,
        2,
    )
    assert [r["date"] for r in tdb.get_daily_snapshots(mode="demo")] == ["2025-10-02", "2025-10-01"]


# ------------------------------------------------------------------------------ concurrency


def test_eight_threads_sharing_one_instance_lose_nothing(tdb: Any, engine: Engine) -> None:
    per_thread = 25
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def trade(k: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                key = f"T{k}_{i}"
                symbol = f"SYM{k}USDT"
                enter(tdb, key, symbol, 10.0 + i, 1.0)
                tdb.log_event("TICK", "INFO", f"thread {k} trade {i}")
                leave(tdb, key, 11.0 + i, 10.0 + i, 10.0 + i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=trade, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = 8 * per_thread
    assert count(engine, "trading.strategy_trades", "exit_time IS NOT NULL") == total
    assert count(engine, "trading.fills") == 2 * total
    assert count(engine, "audit.system_events", "event_type = 'TICK'") == total
    assert count(engine, "trading.positions", "size <> 0") == 0
    stats = tdb.get_performance_stats()
    assert (stats["total_trades"], stats["wins"]) == (total, total)
    assert stats["total_pnl"] == pytest.approx(8 * per_thread * 1.0)


@pytest.mark.parametrize("where", ["holding the trade-row connection", "before the fill"])
def test_signal_handler_stop_in_the_middle_of_a_call(
    tdb: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """SIGTERM arrives half-way through log_trade_entry (with the connection lock held, or
    between the trade row and its fill); the handler's stop() logs an exit, reads the
    stats and logs SYSTEM_STOP, as trading_system.stop() does."""
    enter(tdb, "BNBUSDT_1", "BNBUSDT", 600.0, 1.0)
    seen: dict[str, Any] = {}

    def stop(signum: int, frame: object) -> None:  # trading_system.stop(), lines 700-720
        leave(tdb, "BNBUSDT_1", 660.0, 600.0, 600.0, reason="System Shutdown")
        seen["stats"] = tdb.get_performance_stats(mode="demo")
        tdb.log_event("SYSTEM_STOP", "INFO", "Trading system stopped", seen["stats"])

    def interrupting(original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if "stats" not in seen and not seen.get("fired"):
                seen["fired"] = True
                os.kill(os.getpid(), signal.SIGUSR1)  # runs at the next bytecode, here
            return original(*args, **kwargs)

        return call

    if where == "before the fill":
        monkeypatch.setattr(tdb.write_path, "record_fill", interrupting(tdb.write_path.record_fill))
    else:
        hot = tdb._store._hot
        monkeypatch.setattr(hot, "_connection", interrupting(hot._connection))
    previous = signal.signal(signal.SIGUSR1, stop)
    try:
        entry_id = enter(tdb, "TRXUSDT_1", "TRXUSDT", 0.3, 1000.0)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert seen.get("fired") and "stats" in seen
    assert entry_id > 0  # the interrupted entry completed normally
    # The handler's stats already count the exit it logged (queued behind the entry).
    assert seen["stats"]["total_trades"] == 1 and seen["stats"]["total_pnl"] == 60.0
    assert [t["trade_id"] for t in tdb.get_open_trades()] == ["TRXUSDT_1"]
    assert [t["trade_id"] for t in tdb.get_recent_trades()] == ["BNBUSDT_1"]
    (stop_event,) = [e for e in tdb.get_recent_events() if e["event_type"] == "SYSTEM_STOP"]
    assert json.loads(stop_event["details"]) == seen["stats"]
    assert [f.exec_id for f in fills_of(engine)] == [
        "momentum_001:BNBUSDT_1:entry",
        "momentum_001:TRXUSDT_1:entry",
        "momentum_001:BNBUSDT_1:exit",
    ]


# ------------------------------------------------------------------------------ attribution


def test_client_order_id_attributes_listener_fills_to_momentum(
    tdb: Any, engine: Engine, db: Database, tmp_path: Path
) -> None:
    link = tdb.client_order_id("entry", "BTCUSDT")  # the one line in place_order
    assert len(link) <= 36 and link.startswith("momentum_001:entry:")
    enter(tdb, "BTCUSDT_9", "BTCUSDT", 100000.0, 0.001)
    exit_link = tdb.client_order_id("System Shutdown", "BTCUSDT")
    assert parse_order_link_id(exit_link).reason == "System Shutdown"
    leave(tdb, "BTCUSDT_9", 101000.0, 100000.0, 100.0, reason="System Shutdown")
    # The adapter's own fills carry the ids sent with the orders...
    assert [f.client_order_id for f in fills_of(engine)] == [link, exit_link]
    # ...and the listener attributes the exchange's execution carrying it to momentum_001.
    wire = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "execId": "5b0e0e0e-aaaa-4bbb-8ccc-000000000001",
        "orderId": "1b2c3d4e-0000-4000-8000-000000000001",
        "orderLinkId": link,
        "side": "Buy",
        "orderType": "Market",
        "execType": "Trade",
        "execPrice": "100000.5",
        "execQty": "0.001",
        "execFee": "0.055",
        "execTime": "1762400000000",
    }
    fill = parse_execution(wire, known_bots=tdb.write_path.known_bots())
    assert (fill.bot_id, fill.close_reason) == (BOT, "entry")
    assert tdb.write_path.record_fill(fill).is_new
    with engine.connect() as conn:
        owner = conn.execute(
            text("SELECT bot_id FROM trading.fills WHERE exec_id = :e"), {"e": wire["execId"]}
        ).scalar()
    assert owner == BOT
    # One execution, one row: the exchange's copy supersedes the adapter's own entry fill
    # (kept in the quarantine), so the position is not counted twice.
    assert [f.exec_id for f in fills_of(engine)] == [wire["execId"], f"{BOT}:BTCUSDT_9:exit"]
    assert count(engine, "audit.quarantined_fills", f"exec_id = '{BOT}:BTCUSDT_9:entry'") == 1
    assert count(engine, "trading.positions", "size <> 0") == 0
    # A restart does not book the superseded entry again as a fill "owed" by the crash path.
    restarted = make_db(db, tmp_path)
    try:
        assert restarted.get_open_trades() == []
    finally:
        restarted.close()
    assert [f.exec_id for f in fills_of(engine)] == [wire["execId"], f"{BOT}:BTCUSDT_9:exit"]


# ------------------------------------------------------------------------------ outages


def test_calls_during_an_outage_are_kept_and_delivered(
    db: Database, engine: Engine, tmp_path: Path, redis_client: redis.Redis
) -> None:
    trade_db = make_db(db, tmp_path, via_pgbouncer=True)
    try:
        enter(trade_db, "OPUSDT_1", "OPUSDT", 2.0, 50.0)
        db.stack.pgbouncer.kill()
        try:
            # The strategy keeps running: nothing raises, nothing is lost.
            assert enter(trade_db, "OPUSDT_2", "OPUSDT", 2.1, 50.0) == 0
            leave(trade_db, "OPUSDT_1", 2.2, 2.0, 100.0)
            trade_db.log_event("ERROR", "ERROR", "Trading loop error: network")
            trade_db.log_risk_event("WEEKLY_LOSS_LIMIT", -0.081, 0.08, "Position size reduced 50%")
        finally:
            db.stack.pgbouncer.start()
        assert trade_db.flush() == 0
    finally:
        trade_db.close()
    assert count(engine, "trading.strategy_trades") == 2
    assert count(engine, "trading.strategy_trades", "exit_time IS NOT NULL") == 1
    assert count(engine, "trading.fills") == 3
    assert count(engine, "audit.system_events", "event_type = 'ERROR'") == 1
    assert count(engine, "audit.risk_events") == 1


def test_a_fill_lost_after_its_trade_row_is_booked_at_the_next_start(
    db: Database, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the trade row and its fill leaves the row alone; the next start
    books the missing fill from it."""
    first = make_db(db, tmp_path)

    def crash(fill: Any) -> Any:
        raise DatabaseError("the process died here")

    monkeypatch.setattr(first.write_path, "record_fill", crash)
    enter(first, "ARBUSDT_1", "ARBUSDT", 0.5, 400.0)
    monkeypatch.undo()
    first.close()
    assert count(engine, "trading.strategy_trades") == 1
    assert count(engine, "trading.fills") == 0
    second = make_db(db, tmp_path)
    try:
        ((exec_id, qty),) = [(f.exec_id, f.exec_qty) for f in fills_of(engine)]
        assert (exec_id, qty) == ("momentum_001:ARBUSDT_1:entry", Decimal("400"))
        leave(second, "ARBUSDT_1", 0.55, 0.5, 200.0)
        assert count(engine, "trading.positions", "size <> 0") == 0
    finally:
        second.close()


# ------------------------------------------------------------------------------ backup


def test_backup_writes_the_original_schema(tdb: Any, tmp_path: Path) -> None:
    enter(tdb, "DOGEUSDT_1", "DOGEUSDT", 0.17078, 5855.486590935707, size=1000.0)
    leave(tdb, "DOGEUSDT_1", 0.17332, 0.17078, 1000.0, holding=429623)
    tdb.log_event("SYSTEM_START", "INFO", "Trading system started in demo mode")
    target = str(tmp_path / "copy.db")
    assert tdb.backup(target) == target
    conn = sqlite3.connect(target)
    try:
        conn.row_factory = sqlite3.Row
        (row,) = conn.execute("SELECT * FROM trades").fetchall()
        assert row["quantity"] == 5855.486590935707  # the exact double, from details
        assert row["pnl_pct"] == 0.17332 / 0.17078 - 1
        assert conn.execute("SELECT count(*) FROM system_events").fetchone()[0] == 1
    finally:
        conn.close()
    with pytest.raises(FileNotFoundError):
        tdb.backup(str(tmp_path / "missing" / "x.db"))
