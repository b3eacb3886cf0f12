"""The legacy Momentum SQLite import (``alpha-db import-momentum``) on the real fixture.

The fixture is read in place (``../shared/fixtures``); every expected figure is computed in
the test from the SQLite file itself, with the original class's own SQL.
"""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from adapters.momentum import TradeDatabase
from alpha_models.bots import register_bots
from alpha_models.cli import main as alpha_db
from alpha_models.devstack import DevStack
from alpha_models.pnl import PnlFill, rebuild
from alpha_models.settings import Settings
from tests.conftest import Database, unique_name
from tests.stack import FIXTURES

FIXTURE = FIXTURES / "momentum_legacy_trading.db"
BOT = "momentum_001"
Q8 = Decimal("1E-8")


def q8(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(repr(value)).quantize(Q8, ROUND_HALF_UP)


def legacy() -> sqlite3.Connection:
    conn = sqlite3.connect(FIXTURE.resolve().as_uri() + "?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def legacy_stats(mode: str | None = None) -> dict[str, Any]:
    """``get_performance_stats`` exactly as the original computes it (MOMENTUM.md 2.10)."""
    where = "WHERE exit_time IS NOT NULL" + (" AND mode = ?" if mode else "")
    conn = legacy()
    try:
        row = conn.execute(
            "SELECT COUNT(*), SUM(CASE WHEN pnl_usd > 0 THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN pnl_usd < 0 THEN 1 ELSE 0 END), SUM(pnl_usd), AVG(pnl_pct), "
            "AVG(CASE WHEN pnl_usd > 0 THEN pnl_pct END), "
            "AVG(CASE WHEN pnl_usd < 0 THEN pnl_pct END), MAX(pnl_usd), MIN(pnl_usd), "
            f"AVG(holding_time_seconds) FROM trades {where}",
            (mode,) if mode else (),
        ).fetchone()
    finally:
        conn.close()
    total = row[0] or 0
    wins = row[1] or 0
    return {
        "total_trades": total,
        "wins": wins,
        "losses": row[2] or 0,
        "win_rate": wins / total if total > 0 else 0,
        "total_pnl": row[3] or 0,
        "avg_pnl_pct": row[4] or 0,
        "avg_win_pct": row[5] or 0,
        "avg_loss_pct": row[6] or 0,
        "best_trade": row[7] or 0,
        "worst_trade": row[8] or 0,
        "avg_holding_hours": (row[9] or 0) / 3600,
    }


def run_cli(database: Database, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALPHA_DATABASE_URL", database.url)
        mp.setenv("ALPHA_REDIS_URL", database.stack.redis_url())
        with contextlib.redirect_stdout(out):
            code = alpha_db(["import-momentum", *args])
    return code, out.getvalue()


def q(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


@pytest.fixture(scope="module")
def imported(devstack: DevStack, template_db: str) -> Iterator[tuple[Database, dict[str, Any]]]:
    """One database with the fixture imported once (the tests below only read it)."""
    name = unique_name("mi")
    devstack.create_database(name, template=template_db)
    database = Database(name, devstack)
    engine = database.engine()
    register_bots(engine)
    engine.dispose()
    code, out = run_cli(database, str(FIXTURE), "--json")
    assert code == 0, out
    try:
        yield database, json.loads(out)
    finally:
        devstack.drop_database(name)


@pytest.fixture
def shared(imported: tuple[Database, dict[str, Any]]) -> Iterator[Engine]:
    engine = imported[0].engine()
    yield engine
    engine.dispose()


def test_every_row_of_every_table_arrives(
    imported: tuple[Database, dict[str, Any]], shared: Engine
) -> None:
    _, report = imported
    conn = legacy()
    try:
        legacy_counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("trades", "daily_snapshots", "system_events", "risk_events")
        }
    finally:
        conn.close()
    assert legacy_counts == {
        "trades": 328,
        "daily_snapshots": 133,
        "system_events": 82,
        "risk_events": 7,
    }
    shared_counts = {
        "trades": q(
            shared, "SELECT count(*) FROM trading.strategy_trades WHERE bot_id = :b", b=BOT
        ),
        "daily_snapshots": q(
            shared, "SELECT count(*) FROM trading.equity_snapshots WHERE bot_id = :b", b=BOT
        ),
        "system_events": q(
            shared,
            "SELECT count(*) FROM audit.system_events WHERE bot_id = :b AND component = 'momentum'",
            b=BOT,
        ),
        "risk_events": q(shared, "SELECT count(*) FROM audit.risk_events WHERE bot_id = :b", b=BOT),
    }
    assert {t: rows[0][0] for t, rows in shared_counts.items()} == legacy_counts
    assert {t: c["added"] for t, c in report["tables"].items()} == legacy_counts
    assert report["rejected"] == []
    levels = q(
        shared,
        "SELECT event_type || '/' || event_level, count(*) FROM audit.system_events "
        "WHERE component = 'momentum' GROUP BY 1",
    )
    assert dict(levels) == {
        "CONFIG_CHANGE/INFO": 1,
        "CONFIG_CHANGE/WARNING": 1,
        "DEPLOY/INFO": 2,
        "ERROR/ERROR": 4,
        "MARKET/CRITICAL": 1,
        "SYSTEM_START/INFO": 34,
        "SYSTEM_STOP/INFO": 39,
    }


def test_every_trade_has_its_entry_and_exit(shared: Engine) -> None:
    conn = legacy()
    try:
        trades = conn.execute("SELECT * FROM trades ORDER BY id").fetchall()
    finally:
        conn.close()
    stored = {
        r.trade_key: r
        for r in q(shared, "SELECT * FROM trading.strategy_trades WHERE bot_id = :b", b=BOT)
    }
    fills = {
        r.exec_id: r for r in q(shared, "SELECT * FROM trading.fills WHERE bot_id = :b", b=BOT)
    }
    assert len(fills) == 328 + 322
    for t in trades:
        row = stored[t["trade_id"]]
        assert (row.mode, row.symbol, row.side) == (t["mode"], t["symbol"], t["side"])
        assert row.entry_time == datetime.fromisoformat(t["entry_time"]).replace(tzinfo=UTC)
        assert (row.entry_price, row.quantity) == (q8(t["entry_price"]), q8(t["quantity"]))
        assert row.notional_usd == q8(t["position_size_usd"])
        assert row.details["legacy_id"] == t["id"]
        entry = fills[f"{BOT}:{t['trade_id']}:entry"]
        assert (entry.side, entry.exec_price, entry.exec_qty) == (
            "Buy",
            row.entry_price,
            row.quantity,
        )
        assert entry.exec_time == row.entry_time and entry.source == "import"
        if t["exit_time"] is None:
            assert row.exit_time is None and f"{BOT}:{t['trade_id']}:exit" not in fills
            continue
        assert row.exit_time == datetime.fromisoformat(t["exit_time"]).replace(tzinfo=UTC)
        assert (row.exit_price, row.pnl_usd, row.pnl_pct) == (
            q8(t["exit_price"]),
            q8(t["pnl_usd"]),
            q8(t["pnl_pct"]),
        )
        assert (row.exit_reason, row.holding_seconds) == (
            t["exit_reason"],
            t["holding_time_seconds"],
        )
        # Lossless: every double with more than 8 decimals is kept exactly.
        exact = row.details.get("exact", {})
        for column in ("quantity", "pnl_usd", "pnl_pct", "signal_strength"):
            if column in exact:
                assert float(exact[column]) == t[column]
        exit_fill = fills[f"{BOT}:{t['trade_id']}:exit"]
        assert (exit_fill.side, exit_fill.exec_price, exit_fill.exec_qty) == (
            "Sell",
            row.exit_price,
            row.quantity,
        )
        assert exit_fill.close_reason == t["exit_reason"]


def test_total_pnl_per_mode_equals_the_files_own_figure(
    imported: tuple[Database, dict[str, Any]], shared: Engine
) -> None:
    conn = legacy()
    try:
        figures = dict(conn.execute("SELECT mode, SUM(pnl_usd) FROM trades GROUP BY mode"))
    finally:
        conn.close()
    ours = dict(
        q(
            shared,
            "SELECT mode, sum(pnl_usd) FROM trading.strategy_trades WHERE bot_id = :b "
            "GROUP BY mode",
            b=BOT,
        )
    )
    assert set(ours) == set(figures) == {"demo", "live"}
    for mode, figure in figures.items():
        assert abs(ours[mode] - Decimal(repr(figure))) < Decimal("0.005"), mode
    assert all(check["matches"] for check in imported[1]["pnl"].values())


def test_round_trips_from_the_fills_match_the_strategy(shared: Engine) -> None:
    """FIFO over the imported fills: for every symbol without an orphaned trade the
    realized P&L is the strategy's own to the cent; an orphan stays the open position."""
    fills = q(shared, "SELECT * FROM trading.fills WHERE bot_id = :b", b=BOT)
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
    trades = q(shared, "SELECT * FROM trading.strategy_trades WHERE bot_id = :b", b=BOT)
    orphaned = {t.symbol for t in trades if t.exit_time is None}
    assert len(orphaned) == 5  # 6 open trades, two of them 1000PEPEUSDT
    realized: dict[str, Decimal] = {}
    for piece in result.realizations:
        realized[piece.symbol] = realized.get(piece.symbol, Decimal(0)) + piece.gross
    for symbol in {t.symbol for t in trades} - orphaned:
        strategy = sum((t.pnl_usd for t in trades if t.symbol == symbol), Decimal(0))
        assert abs(realized[symbol] - strategy) < Decimal("0.01"), symbol
    open_qty = {
        r.symbol: r.size
        for r in q(shared, "SELECT * FROM trading.positions WHERE bot_id = :b", b=BOT)
    }
    for symbol in orphaned:
        expected = sum(t.quantity for t in trades if t.symbol == symbol and t.exit_time is None)
        assert open_qty[symbol] == expected


def test_a_second_import_adds_nothing(
    imported: tuple[Database, dict[str, Any]], shared: Engine
) -> None:
    database, _ = imported
    tables = (
        "trading.strategy_trades",
        "trading.fills",
        "trading.equity_snapshots",
        "audit.system_events",
        "audit.risk_events",
        "trading.position_entries",
    )
    before = {t: q(shared, f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    code, out = run_cli(database, str(FIXTURE), "--json")
    report = json.loads(out)
    assert code == 0
    assert report["rows_added"] == 0 and report["already_imported"] is True
    assert {t: c["existing"] for t, c in report["tables"].items()} == {
        "trades": 328,
        "daily_snapshots": 133,
        "system_events": 82,
        "risk_events": 7,
    }
    after = {t: q(shared, f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    assert after == before


@pytest.mark.parametrize("mode", [None, "demo", "live"])
def test_performance_stats_after_import_equal_the_legacy_files(
    imported: tuple[Database, dict[str, Any]], tmp_path: Path, mode: str | None
) -> None:
    database, _ = imported
    settings = Settings(ALPHA_DATABASE_URL=database.url, ALPHA_REDIS_URL=database.stack.redis_url())
    trade_db = TradeDatabase(str(tmp_path / "trading.db"), settings=settings, import_legacy=False)
    try:
        ours = trade_db.get_performance_stats(mode=mode)
    finally:
        trade_db.close()
    theirs = legacy_stats(mode)
    assert list(ours) == list(theirs)
    assert all(type(v) in (int, float) for v in ours.values())
    for key in ("total_trades", "wins", "losses", "win_rate", "avg_holding_hours"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-15, abs=0), key
    n = theirs["total_trades"]
    # Money: every value was rounded to 8 dp (|error| <= 5e-9 each), exact to the cent.
    assert abs(ours["total_pnl"] - theirs["total_pnl"]) <= n * 5e-9 + 1e-9
    for key in ("best_trade", "worst_trade"):
        assert abs(ours[key] - theirs[key]) <= 5e-9 + 1e-12, key
    for key in ("avg_pnl_pct", "avg_win_pct", "avg_loss_pct"):
        assert abs(ours[key] - theirs[key]) <= 5e-9 + 1e-12, key


def test_dry_run_reports_and_writes_nothing(db: Database) -> None:
    engine = db.engine()
    register_bots(engine)
    code, out = run_cli(db, str(FIXTURE), "--dry-run", "--json")
    report = json.loads(out)
    assert code == 0 and report["dry_run"] is True
    assert report["tables"]["trades"]["added"] == 328
    assert report["fills"]["owed"] == 650
    for table in ("trading.strategy_trades", "trading.fills", "audit.system_events"):
        assert q(engine, f"SELECT count(*) FROM {table}")[0][0] == 0
    engine.dispose()


def test_first_start_imports_the_legacy_file_once(
    db: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = db.engine()
    register_bots(engine)
    data = tmp_path / "data"
    data.mkdir()
    (data / "trading.db").symlink_to(FIXTURE)  # read in place, never copied
    settings = Settings(ALPHA_DATABASE_URL=db.url, ALPHA_REDIS_URL=db.stack.redis_url())
    with caplog.at_level("WARNING", logger="adapters.momentum"):
        first = TradeDatabase(str(data / "trading.db"), settings=settings)
    first.close()
    assert "Legacy history imported" in capsys.readouterr().out
    assert any("importing the legacy SQLite history" in r.message for r in caplog.records)
    counts = q(engine, "SELECT count(*) FROM trading.strategy_trades")[0][0]
    fills = q(engine, "SELECT count(*) FROM trading.fills")[0][0]
    assert (counts, fills) == (328, 650)
    second = TradeDatabase(str(data / "trading.db"), settings=settings)
    try:
        assert "Legacy history imported" not in capsys.readouterr().out
        assert second.get_performance_stats()["total_trades"] == 322
    finally:
        second.close()
    assert q(engine, "SELECT count(*) FROM trading.fills")[0][0] == 650
    engine.dispose()


LEGACY_DDL = """
CREATE TABLE trades (id INTEGER PRIMARY KEY AUTOINCREMENT, trade_id TEXT UNIQUE,
  mode TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, entry_time TIMESTAMP NOT NULL,
  entry_price REAL NOT NULL, exit_time TIMESTAMP, exit_price REAL, quantity REAL NOT NULL,
  position_size_usd REAL NOT NULL, stop_loss REAL, take_profit REAL, pnl_usd REAL,
  pnl_pct REAL, exit_reason TEXT, holding_time_seconds INTEGER, signal_strength REAL,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE daily_snapshots (id INTEGER PRIMARY KEY AUTOINCREMENT, date DATE UNIQUE NOT NULL,
  mode TEXT NOT NULL, starting_equity REAL NOT NULL, ending_equity REAL NOT NULL,
  daily_pnl REAL NOT NULL, daily_pnl_pct REAL NOT NULL, trades_count INTEGER DEFAULT 0,
  wins_count INTEGER DEFAULT 0, losses_count INTEGER DEFAULT 0,
  open_positions INTEGER DEFAULT 0, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE system_events (id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_time TIMESTAMP NOT NULL, event_type TEXT NOT NULL, event_level TEXT NOT NULL,
  message TEXT NOT NULL, details TEXT, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE risk_events (id INTEGER PRIMARY KEY AUTOINCREMENT, event_time TIMESTAMP NOT NULL,
  risk_type TEXT NOT NULL, current_value REAL NOT NULL, limit_value REAL NOT NULL,
  action_taken TEXT NOT NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
"""


def make_legacy_file(path: Path) -> None:
    """A small file as the original class writes it, with rows the schema cannot hold."""
    conn = sqlite3.connect(path)
    conn.executescript(LEGACY_DDL)
    trade = (
        "INSERT INTO trades (id, trade_id, mode, symbol, side, entry_time, entry_price, "
        "exit_time, exit_price, quantity, position_size_usd, stop_loss, pnl_usd, pnl_pct, "
        "exit_reason, holding_time_seconds) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    )
    rows = [
        # 1: fine; Berlin summer time (UTC+2)
        (
            1,
            "BTCUSDT_1",
            "demo",
            "BTCUSDT",
            "Buy",
            "2025-07-01 12:00:00.500000",
            100000.0,
            "2025-07-01 14:00:00",
            101000.0,
            0.001,
            100.0,
            90000.0,
            1.0,
            0.01,
            "MA Exit",
            7200,
        ),
        # 2: quantity rounds to 0 at 8 dp
        (
            2,
            "ETHUSDT_1",
            "demo",
            "ETHUSDT",
            "Buy",
            "2025-07-01 12:00:00",
            4000.0,
            None,
            None,
            1e-10,
            1.0,
            None,
            None,
            None,
            None,
            None,
        ),
        # 3: lower-case side
        (
            3,
            "SOLUSDT_1",
            "demo",
            "SOLUSDT",
            "buy",
            "2025-07-01 12:00:00",
            150.0,
            None,
            None,
            1.0,
            150.0,
            None,
            None,
            None,
            None,
            None,
        ),
        # 4: unknown mode
        (
            4,
            "XRPUSDT_1",
            "paper",
            "XRPUSDT",
            "Buy",
            "2025-07-01 12:00:00",
            2.0,
            None,
            None,
            10.0,
            20.0,
            None,
            None,
            None,
            None,
            None,
        ),
        # 5: NULL trade_id (SQLite allows many) and an exit without a price
        (
            5,
            None,
            "live",
            "ADAUSDT",
            "Buy",
            "2025-10-26 02:30:00",
            0.5,
            "2025-10-26 03:00:00",
            None,
            100.0,
            50.0,
            None,
            -1.0,
            -0.02,
            "System Shutdown",
            1800,
        ),
        # 6: negative price
        (
            6,
            "DOGEUSDT_1",
            "demo",
            "DOGEUSDT",
            "Buy",
            "2025-07-01 12:00:00",
            -0.2,
            None,
            None,
            100.0,
            20.0,
            None,
            None,
            None,
            None,
            None,
        ),
    ]
    conn.executemany(trade, rows)
    conn.execute(
        "INSERT INTO system_events (id, event_time, event_type, event_level, message, details) "
        "VALUES (1, '2025-07-01 12:00:00', 'SYSTEM_START', 'INFO', 'started', NULL), "
        "(2, '2025-07-01 12:05:00', 'NOTE', 'info', 'lower-case level', NULL), "
        "(3, '2025-07-01 12:06:00', 'NOTE', 'INFO', 'broken details', '{not json'), "
        "(4, '2025-07-01 12:07:00', 'SYSTEM_STOP', 'INFO', 'stopped', '{\"x\": NaN}')"
    )
    conn.execute(
        "INSERT INTO daily_snapshots (id, date, mode, starting_equity, ending_equity, daily_pnl, "
        "daily_pnl_pct, trades_count, wins_count, losses_count, open_positions) VALUES "
        "(1, '2025-07-01', 'demo', 1000, 1001, 1, 0.001, 1, 1, 0, 0), "
        "(2, 20250702, 'demo', 1001, 1001, 0, 0, NULL, 0, 0, 0)"
    )
    conn.execute(
        "INSERT INTO risk_events (id, event_time, risk_type, current_value, limit_value, "
        "action_taken) VALUES (1, '2025-07-01 16:00:00', 'DAILY_LOSS_LIMIT', -0.031, 0.03, "
        "'No new positions today')"
    )
    conn.commit()
    conn.close()


def test_zone_and_rows_the_schema_cannot_hold(db: Database, tmp_path: Path) -> None:
    engine = db.engine()
    register_bots(engine)
    path = tmp_path / "legacy.db"
    make_legacy_file(path)
    code, out = run_cli(db, str(path), "--tz", "Europe/Berlin", "--json")
    report = json.loads(out)
    assert code == 1  # action needed: rows were rejected
    rejected = {(r["table"], r["id"]): r["reason"] for r in report["rejected"]}
    assert set(rejected) == {
        ("trades", 2),
        ("trades", 3),
        ("trades", 4),
        ("trades", 6),
        ("system_events", 2),
        ("daily_snapshots", 2),
    }
    assert "quantity" in rejected[("trades", 2)] and "8 dp" in rejected[("trades", 2)]
    assert "side" in rejected[("trades", 3)]
    assert "mode" in rejected[("trades", 4)]
    assert "level" in rejected[("system_events", 2)]
    assert "trades_count" in rejected[("daily_snapshots", 2)]
    notes = {(n["table"], n["id"]): n["note"] for n in report["notes"]}
    assert "trade_id NULL" in notes[("trades", 5)] or "exit without a price" in notes[("trades", 5)]
    assert "not JSON" in notes[("system_events", 3)]
    assert "NaN" in notes[("system_events", 4)]
    # 2025-10-26 02:30 happened twice in Berlin (DST ended): the first one is used, and said.
    assert any("ambiguous" in n["note"] for n in report["notes"] if n["id"] == 5)
    (btc,) = q(engine, "SELECT * FROM trading.strategy_trades WHERE trade_key = 'BTCUSDT_1'")
    assert btc.entry_time == datetime(2025, 7, 1, 10, 0, 0, 500000, tzinfo=UTC)  # 12:00 CEST
    assert btc.exit_time == datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
    (ada,) = q(engine, "SELECT * FROM trading.strategy_trades WHERE trade_key = 'sqlite:5'")
    assert ada.entry_time == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)  # first 02:30 = CEST
    assert ada.exit_time is not None and ada.exit_price is None and ada.exit_exec_id is None
    # The exit without a price has no fill; every other leg has one.
    exec_ids = {r.exec_id for r in q(engine, "SELECT exec_id FROM trading.fills")}
    assert exec_ids == {
        "momentum_001:BTCUSDT_1:entry",
        "momentum_001:BTCUSDT_1:exit",
        "momentum_001:sqlite:5:entry",
    }
    (broken,) = q(
        engine, "SELECT details FROM audit.system_events WHERE message = 'broken details'"
    )
    assert broken.details == {"raw": "{not json"}
    code_again, out_again = run_cli(db, str(path), "--tz", "Europe/Berlin", "--json")
    assert json.loads(out_again)["rows_added"] == 0 and code_again == 1
    engine.dispose()
