"""LXAlgo's tracker adapter driven exactly as the strategy's call sites drive the original
(LXALGO.md section 2), against real PostgreSQL and Redis: the JSON log stays byte-identical to
the original's, every event reaches the database once, restarts recover from the database,
and a process killed between the JSON write and the database write loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from adapters.lxalgo import ExchangeFill, TradeTracker
from alpha_models.db import make_engine
from alpha_models.devstack import free_port
from alpha_models.inputs import FillInput
from alpha_models.lxalgo_import import BOT_ID, import_logs
from alpha_models.settings import Settings
from alpha_models.writepath import Outcome, WritePath
from tests.conftest import Writer, make_writer
from tests.unit.test_lxalgo_json import REAL, SYNTHETIC, Clock, ReferenceTracker

T0 = datetime(2025, 11, 6, 18, 35, 1, 25539, tzinfo=UTC)
NOVEMBER = REAL[-1]
HUGE = 24 * 365 * 10  # hours: recovery windows reach the old fixtures


class Strategy:
    """LXAlgo's call sites (LXALGO.md 2.1), on a simulated clock."""

    def __init__(self, tracker: Any, clock: Clock) -> None:
        self.tracker, self.clock = tracker, clock

    def wait(self, **delta: float) -> None:
        self.clock.now += timedelta(**delta)

    def initialize(self) -> dict[Any, Any]:  # trading_engine.py:283
        result: dict[Any, Any] = self.tracker.get_active_trades_from_log(max_age_hours=168)
        return result

    def enter(self, symbol: str, rule_id: str, price: float, qty: float) -> None:
        """trading_engine.py:215: the time is taken before the order is sent; the tracker is
        called once ``executor.open_trade`` returned retCode 0."""
        entry_timestamp = self.clock.now
        self.wait(seconds=0.8)
        self.tracker.log_trade_opened(
            symbol=symbol,
            rule_id=rule_id,
            entry_price=price,
            position_size=qty,
            entry_timestamp=entry_timestamp,
        )

    def close_trade(self, symbol: str, rule_id: str | None = None, reason: str = "manual") -> None:
        """order_manager.py:304: after the close order returned retCode 0, only with a rule."""
        if rule_id:
            self.tracker.log_trade_closed(symbol, rule_id, reason)

    def reconcile(self, *keys: tuple[str, str]) -> None:
        """order_manager.py:725: tracked keys whose symbol has no exchange position."""
        for symbol, rule_id in keys:
            self.tracker.log_trade_closed(symbol, rule_id, "external_close")
            self.wait(seconds=0.002)

    def daily_cleanup(self) -> int:  # src/main.py:445-451
        removed: int = self.tracker.cleanup_closed_trades()
        self.tracker.cleanup_old_events(max_age_days=30)
        return removed


def trading_day(s: Strategy, *, restart: Any = None) -> None:
    """One day with every path of LXALGO.md 2.1-2.3 that reaches the tracker."""
    s.enter("SOONUSDT", "Rule 6", 2.5955, 77.0)
    s.wait(minutes=3)
    s.reconcile(("SOONUSDT", "Rule 6"))  # TP/SL hit on the exchange
    s.wait(minutes=10)
    s.enter("HIPPOUSDT", "Rule 6", 0.00909, 22000.0)
    s.wait(minutes=5)
    s.enter("HIPPOUSDT", "Rule 6", 0.008463, 23630.0)  # key in active and breakeven dicts
    s.wait(minutes=3)
    s.reconcile(("HIPPOUSDT", "Rule 6"))  # once per dict
    s.wait(seconds=1)
    s.reconcile(("HIPPOUSDT", "Rule 6"))
    s.wait(minutes=2)
    s.enter("AIAUSDT", "Rule 6", 6.059, 33.0)
    s.enter("ICPUSDT", "Rule 8", 5.549, 36.0)
    s.wait(hours=1)
    for symbol, rule_id in [("AIAUSDT", "Rule 6"), ("ICPUSDT", "Rule 8"), ("KASUSDT", None)]:
        s.close_trade(symbol, rule_id, "risk_management")  # close_all_positions on a copy
    s.wait(minutes=2, seconds=24)
    s.reconcile(("AIAUSDT", "Rule 6"), ("ICPUSDT", "Rule 8"))  # the copy bug
    s.enter("COAIUSDT", "Rule 8", 1.131, 176.0)
    s.wait(hours=8, minutes=3)
    s.close_trade("COAIUSDT", "Rule 8", "8h_negative_pnl")  # src/main.py:412
    s.enter("SOONUSDT", "Rule 6", 1.4979, 133.0)  # reopened after its close
    s.enter("MMTUSDT", "Rule 8", 0.80286, 249.0)
    s.wait(minutes=30)
    s.close_trade("MMTUSDT", "Rule 8")  # the default reason
    if restart is not None:
        restart()
    s.reconcile(("LABUSDT", "untracked_startup"))  # adopted at start-up, never logged opened


def rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def table_counts(engine: Engine) -> dict[str, int]:
    tables = ["trading.fills", "trading.strategy_trades", "audit.system_events"]
    return {t: rows(engine, f"SELECT count(*) FROM {t}")[0][0] for t in tables}


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


def test_the_strategys_calls_give_the_originals_log_and_the_trades_in_the_database(
    writer: Writer, tmp_path: Path, clock: Clock
) -> None:
    log = tmp_path / "trade_log.json"
    reference_clock = Clock(T0)
    reference = Strategy(
        ReferenceTracker(tmp_path / "reference.json", reference_clock), reference_clock
    )
    live = Strategy(TradeTracker(str(log), write_path=writer.path, clock=clock), clock)
    assert live.initialize() == {} == reference.initialize()
    recovered: list[dict[Any, Any]] = []

    def restart() -> None:  # the process restarts: a new tracker, recovery at initialize()
        live.tracker = TradeTracker(str(log), write_path=writer.path, clock=clock)
        recovered.append(live.initialize())
        recovered.append(ReferenceTracker(log, clock).get_active_trades_from_log(168))

    trading_day(live, restart=restart)
    trading_day(reference, restart=lambda: None)
    assert log.read_bytes() == (tmp_path / "reference.json").read_bytes()

    # The database has the trade the original's recovery loses (reopened after its close).
    from_db, from_log = recovered
    assert from_log == {}
    reopened = ("SOONUSDT", "Rule 6")
    assert list(from_db) == [reopened]
    assert from_db[reopened] == {
        "entry_timestamp": from_db[reopened]["entry_timestamp"],
        "entry_price": 1.4979,
        "position_size": 133.0,
        "rule_id": "Rule 6",
        "expiry_time": from_db[reopened]["entry_timestamp"] + timedelta(hours=72),
    }
    warnings = rows(
        writer.engine,
        "SELECT event_level, details->'only_in_database', details->'only_in_log' "
        "FROM audit.system_events WHERE event_type = 'lxalgo_recovery_mismatch'",
    )
    assert [(w[0], [x[:2] for x in w[1]], w[2]) for w in warnings] == [
        ("WARNING", [["SOONUSDT", "Rule 6"]], [])
    ]

    trades = rows(
        writer.engine,
        "SELECT symbol, rule_id, exit_reason, jsonb_array_length(coalesce(details->"
        "'repeat_closes', '[]')), source FROM trading.strategy_trades ORDER BY entry_time",
    )
    assert trades == [
        ("SOONUSDT", "Rule 6", "external_close", 0, "tracker"),
        ("HIPPOUSDT", "Rule 6", "external_close", 0, "tracker"),  # one close ends both
        ("HIPPOUSDT", "Rule 6", "external_close", 1, "tracker"),  # the second dict's close
        ("AIAUSDT", "Rule 6", "risk_management", 1, "tracker"),  # + the copy bug's close
        ("ICPUSDT", "Rule 8", "risk_management", 1, "tracker"),
        ("COAIUSDT", "Rule 8", "8h_negative_pnl", 0, "tracker"),
        ("SOONUSDT", "Rule 6", None, 0, "tracker"),
        ("MMTUSDT", "Rule 8", "manual", 0, "tracker"),
    ]
    fills = rows(
        writer.engine,
        "SELECT f.symbol, f.side, f.exec_price, f.exec_qty, f.close_reason, f.source, "
        "f.exec_time = t.entry_time FROM trading.fills f JOIN trading.strategy_trades t "
        "ON t.entry_exec_id = f.exec_id ORDER BY f.exec_time",
    )
    assert [f[:3] for f in fills][:2] == [
        ("SOONUSDT", "Buy", Decimal("2.5955")),
        ("HIPPOUSDT", "Buy", Decimal("0.00909")),
    ]
    assert {f[4:] for f in fills} == {("entry", "tracker", True)}
    assert rows(writer.engine, "SELECT count(*) FROM trading.fills") == [(len(trades),)]
    unpaired = rows(
        writer.engine,
        "SELECT event_level, symbol, details->>'rule_id', details->>'reason' "
        "FROM audit.system_events WHERE event_type = 'lxalgo_unpaired_close'",
    )
    assert unpaired == [("WARNING", "LABUSDT", "untracked_startup", "external_close")]
    by_rule_and_reason = rows(
        writer.engine,
        "SELECT rule_id, exit_reason, count(*) FROM trading.strategy_trades "
        "WHERE exit_time IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
    )
    assert by_rule_and_reason == [
        ("Rule 6", "external_close", 3),
        ("Rule 6", "risk_management", 1),
        ("Rule 8", "8h_negative_pnl", 1),
        ("Rule 8", "manual", 1),
        ("Rule 8", "risk_management", 1),
    ]

    # The daily cleanup rewrites the log exactly like the original; the database keeps all.
    before = table_counts(writer.engine)
    assert live.daily_cleanup() == reference.daily_cleanup()
    assert log.read_bytes() == (tmp_path / "reference.json").read_bytes()
    again = TradeTracker(str(log), write_path=writer.path, clock=clock)
    assert list(again.get_active_trades_from_log(max_age_hours=168)) == [reopened]
    assert table_counts(writer.engine) == before  # agreeing again: no new warning
    # An import of the same log afterwards finds everything already there.
    summary = import_logs([log], engine=writer.engine, write_path=writer.path)
    assert summary.new == 0 and table_counts(writer.engine) == before


def test_the_exchanges_fill_when_the_strategy_has_it(
    writer: Writer, tmp_path: Path, clock: Clock
) -> None:
    tracker = TradeTracker(str(tmp_path / "trade_log.json"), write_path=writer.path, clock=clock)
    entry_at = clock.now
    tracker.log_trade_opened(
        symbol="SOONUSDT",
        rule_id="Rule 6",
        entry_price=2.5955,
        position_size=77.0,
        entry_timestamp=entry_at,
        exchange=ExchangeFill(
            exec_id="e-entry-1",
            order_id="o-entry-1",
            exec_price="2.5961",
            exec_qty="77",
            fee="0.10992",
            exec_time=entry_at + timedelta(seconds=0.6),
        ),
    )
    listener_copy = FillInput(  # the listener sees the same execution, unattributed
        exec_id="e-entry-1",
        bot_id="unknown",
        symbol="SOONUSDT",
        side="Buy",
        exec_price="2.5961",
        exec_qty="77",
        exec_time=entry_at + timedelta(seconds=0.6),
        order_id="o-entry-1",
        client_order_id="9f1c0e3a5b7d2468",
        commission="0.10992",
        source="listener",
    )
    assert writer.path.record_fill(listener_copy).outcome is Outcome.DUPLICATE
    clock.now += timedelta(hours=2)
    tracker.log_trade_closed(
        "SOONUSDT",
        "Rule 6",
        "risk_management",
        exchange=ExchangeFill(exec_id="e-exit-1", order_id="o-exit-1", exec_price="2.71"),
    )
    tracker.log_trade_opened(
        symbol="AIAUSDT", rule_id="Rule 6", entry_price=6.059, position_size=33.0
    )
    tracker.log_trade_closed("AIAUSDT", "Rule 6", exchange=ExchangeFill(order_id="o-exit-2"))
    tracker.log_trade_opened(
        symbol="ICPUSDT", rule_id="Rule 8", entry_price=5.549, position_size=36.0
    )
    tracker.log_trade_closed("ICPUSDT", "Rule 8", exchange=ExchangeFill(exec_price=5.61))

    fills = rows(
        writer.engine,
        "SELECT symbol, side, exec_id, order_id, exec_price, exec_qty, commission, source, "
        "close_reason FROM trading.fills ORDER BY exec_time, id",
    )
    icp_close = rows(
        writer.engine, "SELECT exit_exec_id FROM trading.strategy_trades WHERE symbol = 'ICPUSDT'"
    )[0][0]
    assert [f[:2] + f[3:] for f in fills] == [
        (
            "SOONUSDT",
            "Buy",
            "o-entry-1",
            Decimal("2.5961"),
            Decimal("77"),
            Decimal("0.10992"),
            "adapter",
            "entry",
        ),
        (
            "SOONUSDT",
            "Sell",
            "o-exit-1",
            Decimal("2.71"),
            Decimal("77"),
            Decimal("0"),
            "adapter",
            "risk_management",
        ),
        ("AIAUSDT", "Buy", "", Decimal("6.059"), Decimal("33"), Decimal("0"), "tracker", "entry"),
        ("ICPUSDT", "Buy", "", Decimal("5.549"), Decimal("36"), Decimal("0"), "tracker", "entry"),
        ("ICPUSDT", "Sell", "", Decimal("5.61"), Decimal("36"), Decimal("0"), "tracker", "manual"),
    ]
    assert [f[2] for f in fills][:2] == ["e-entry-1", "e-exit-1"] and fills[4][2] == icp_close
    trades = rows(
        writer.engine,
        "SELECT symbol, entry_price, entry_exec_id, details->>'entry_order_id', exit_price, "
        "exit_exec_id, details->'close'->>'exit_order_id' FROM trading.strategy_trades "
        "ORDER BY entry_time",
    )
    assert trades[0] == (
        "SOONUSDT",
        Decimal("2.5955"),
        "e-entry-1",
        "o-entry-1",
        Decimal("2.71"),
        "e-exit-1",
        "o-exit-1",
    )
    assert trades[1][4:] == (None, None, "o-exit-2")  # no price: no exit fill, the order id kept
    positions = rows(
        writer.engine,
        "SELECT symbol, size FROM trading.positions WHERE bot_id = :b ORDER BY symbol",
        b=BOT_ID,
    )
    assert positions == [
        ("AIAUSDT", Decimal("33")),
        ("ICPUSDT", Decimal("0")),
        ("SOONUSDT", Decimal("0")),
    ]


def test_restart_recovers_from_the_database_and_logs_the_difference(
    writer: Writer, tmp_path: Path
) -> None:
    """November's log at its commit time: the original recovered 7 keys; the database knows
    the trades reopened after a close as well (LXALGO.md 1.6). HIPPOUSDT Rule 6, which a FIFO
    count leaves open, was closed: its symbol's position was gone at 22:23:03 and again at
    01:54:36 (reconciliation found no exchange position)."""
    log = tmp_path / "trade_log.json"
    log.write_bytes(NOVEMBER.read_bytes())
    clock = Clock(datetime(2025, 11, 7, 5, 16, 19, tzinfo=UTC))
    from_log = TradeTracker(str(log), database=False, clock=clock).get_active_trades_from_log()
    tracker = TradeTracker(str(log), write_path=writer.path, clock=clock)
    from_db = tracker.get_active_trades_from_log()
    reopened = {
        ("AIAUSDT", "Rule 6"),
        ("COAIUSDT", "Rule 8"),
        ("ICPUSDT", "Rule 8"),
        ("LABUSDT", "Rule 8"),
        ("RESOLVUSDT", "Rule 8"),
        ("SAPIENUSDT", "Rule 6"),
        ("SOONUSDT", "Rule 6"),
        ("SOONUSDT", "Rule 8"),
    }
    assert len(from_log) == 7 and set(from_db) == set(from_log) | reopened
    assert {k: from_db[k] for k in from_log} == from_log  # same values, same types
    assert log.read_bytes() == NOVEMBER.read_bytes()  # recovery never writes the log
    ((only_db, only_log, different),) = rows(
        writer.engine,
        "SELECT details->'only_in_database', details->'only_in_log', "
        "details->'different_entry' FROM audit.system_events "
        "WHERE event_type = 'lxalgo_recovery_mismatch'",
    )
    assert {tuple(x[:2]) for x in only_db} == reopened and only_log == different == []
    assert tracker.database_in_sync


def test_at_the_end_of_the_simulation_the_database_knows_the_engines_trades(
    writer: Writer, tmp_path: Path
) -> None:
    """The synthetic log's simulation ended with 4 trades in the engine; the original's
    recovery returns 3 of them. The database returns all 4, plus ETHFIUSDT Rule 8, whose
    position was adopted after a restart and closed as (ETHFIUSDT, untracked_startup): that
    close is reported as unpaired, and the next start-up reconciliation closes the trade."""
    manifest = json.loads((SYNTHETIC.parent / "MANIFEST.json").read_text())
    log = tmp_path / "trade_log.json"
    log.write_bytes(SYNTHETIC.read_bytes())
    clock = Clock(datetime.fromisoformat(manifest["period_utc"][1]))
    trades = TradeTracker(
        str(log), write_path=writer.path, clock=clock
    ).get_active_trades_from_log()
    engine = manifest["engine_state_at_end"]
    in_engine = {tuple(k) for k in engine["active"] + engine["breakeven"]}
    assert {tuple(k) for k in manifest["tracker_active_at_end_168h"]} < in_engine
    assert set(trades) == in_engine | {("ETHFIUSDT", "Rule 8")}
    unpaired = rows(
        writer.engine,
        "SELECT symbol FROM audit.system_events WHERE event_type = 'lxalgo_unpaired_close' "
        "ORDER BY (details->>'index')::int",
    )
    assert unpaired == [("COAIUSDT",), ("LAUSDT",), ("ETHFIUSDT",)]


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def unreachable(spool_dir: Path) -> Iterator[WritePath]:
    """A write path whose PostgreSQL is down (nothing listens), sharing the spool directory
    the next process will use."""
    settings = Settings(
        ALPHA_DATABASE_URL=f"postgresql://trading_user:x@127.0.0.1:{free_port()}/trading_db",
        ALPHA_SPOOL_DIR=str(spool_dir),
        ALPHA_CONNECT_TIMEOUT=1,
    )
    path = WritePath(make_engine(settings), settings=settings)
    yield path
    path.engine.dispose()


def test_database_down_the_log_serves_and_the_database_catches_up_once(
    db: Any,
    unreachable: WritePath,
    spool_dir: Path,
    tmp_path: Path,
    clock: Clock,
    redis_client: Any,
) -> None:
    log = tmp_path / "trade_log.json"
    down = Strategy(TradeTracker(str(log), write_path=unreachable, clock=clock), clock)
    assert down.initialize() == {}
    down.enter("SOONUSDT", "Rule 6", 2.5955, 77.0)
    down.enter("AIAUSDT", "Rule 6", 6.059, 33.0)
    down.reconcile(("SOONUSDT", "Rule 6"))
    assert list(down.initialize()) == [("AIAUSDT", "Rule 6")]  # from the log
    assert not down.tracker.database_in_sync
    written = log.read_bytes()

    up = make_writer(db, spool_dir, db.stack.redis_url())  # restarted, PostgreSQL back
    try:
        restarted = Strategy(TradeTracker(str(log), write_path=up.path, clock=clock), clock)
        assert list(restarted.initialize()) == [("AIAUSDT", "Rule 6")]  # from the database
        assert restarted.tracker.database_in_sync
        counts = table_counts(up.engine)
        assert counts["trading.fills"] == counts["trading.strategy_trades"] == 2
        assert rows(
            up.engine, "SELECT symbol, exit_reason FROM trading.strategy_trades ORDER BY 1"
        ) == [
            ("AIAUSDT", None),
            ("SOONUSDT", "external_close"),
        ]
        assert len(up.path.spool) == 0  # the spooled entry fills were delivered, once
        assert log.read_bytes() == written
        TradeTracker(str(log), write_path=up.path, clock=clock).get_active_trades_from_log()
        assert table_counts(up.engine) == counts
    finally:
        up.engine.dispose()


CHILD = """
import os, signal, sys
from adapters.lxalgo import TradeTracker
from alpha_models import lxalgo_store

log, crash = sys.argv[1], sys.argv[2]
tracker = TradeTracker(log)  # the write path comes from the environment, as in production
tracker.get_active_trades_from_log(max_age_hours=168)
tracker.log_trade_opened(
    symbol="SOONUSDT", rule_id="Rule 6", entry_price=2.5955, position_size=77.0
)

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if crash == "after_json":  # the JSON is written, the database write has not started
    tracker._record = die
elif crash == "after_entry_fill":  # the fill is committed, the trade row is not
    lxalgo_store.insert_trade = die
elif crash == "during_close":  # the close is in the JSON, the trade is not closed yet
    lxalgo_store.close_trades = die
if crash == "during_close":
    tracker.log_trade_closed("SOONUSDT", "Rule 6", "external_close")
else:
    tracker.log_trade_opened(
        symbol="AIAUSDT", rule_id="Rule 6", entry_price=6.059, position_size=33.0
    )
print("survived")
"""


@pytest.mark.parametrize(
    ("crash", "open_after"),
    [
        ("after_json", [("AIAUSDT", "Rule 6"), ("SOONUSDT", "Rule 6")]),
        ("after_entry_fill", [("AIAUSDT", "Rule 6"), ("SOONUSDT", "Rule 6")]),
        ("during_close", []),
    ],
)
def test_killed_between_the_json_and_the_database_the_restart_catches_up_once(
    writer: Writer, tmp_path: Path, crash: str, open_after: list[tuple[str, str]]
) -> None:
    log = tmp_path / "trade_log.json"
    env = {
        **os.environ,
        "ALPHA_DATABASE_URL": writer.db.url,
        "ALPHA_REDIS_URL": writer.db.stack.redis_url(),
        "ALPHA_SPOOL_DIR": str(tmp_path / "child-spool"),
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(log), crash],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    logged = json.loads(log.read_text())["trade_events"]
    assert len(logged) == 2  # the last event reached the JSON before the kill
    trades_before = rows(
        writer.engine, "SELECT symbol, exit_time IS NULL FROM trading.strategy_trades"
    )
    assert trades_before == [("SOONUSDT", True)]  # ... and not the database

    restarted = TradeTracker(str(log), write_path=writer.path)
    recovered = restarted.get_active_trades_from_log(max_age_hours=168)
    assert sorted(recovered) == open_after
    counts = table_counts(writer.engine)
    expected_fills = 1 if crash == "during_close" else 2
    assert counts == {
        "trading.fills": expected_fills,
        "trading.strategy_trades": expected_fills,
        "audit.system_events": 0,
    }
    assert rows(writer.engine, "SELECT count(DISTINCT exec_id) FROM trading.fills") == [
        (expected_fills,)
    ]
    TradeTracker(str(log), write_path=writer.path).get_active_trades_from_log(max_age_hours=168)
    assert table_counts(writer.engine) == counts  # a second restart adds nothing
    summary = import_logs([log], engine=writer.engine, write_path=writer.path)
    assert summary.new == 0 and table_counts(writer.engine) == counts


def test_an_unreadable_log_is_kept_aside_its_events_recorded_and_reported(
    writer: Writer, tmp_path: Path, clock: Clock
) -> None:
    """Another writer (a second instance, a full disk) left half a log: before the next event
    starts a new file, the readable half reaches the database and the operator is told."""
    log = tmp_path / "trade_log.json"
    text = NOVEMBER.read_text()
    log.write_text(text[: len(text) // 2])  # 54 whole events, then a cut
    tracker = TradeTracker(str(log), write_path=writer.path, clock=clock)
    tracker.log_trade_closed("SOONUSDT", "Rule 8", "external_close")
    assert [e["symbol"] for e in json.loads(log.read_text())["trade_events"]] == ["SOONUSDT"]
    (kept,) = tmp_path.glob("trade_log_unreadable_*.json")
    assert kept.read_text() == text[: len(text) // 2]
    reports = rows(
        writer.engine,
        "SELECT event_level, details->>'kept_as', details->'readable_events', "
        "details->'problems'->0->>'kind' FROM audit.system_events "
        "WHERE event_type = 'lxalgo_log_unreadable'",
    )
    assert reports == [("WARNING", str(kept), 54, "truncated")]
    summary = import_logs([kept], engine=writer.engine, write_path=writer.path)
    assert summary.events == 54 and summary.new == 0  # already recorded from the copy
