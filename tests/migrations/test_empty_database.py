"""A fresh database: upgrade head -> check clean -> downgrade base -> upgrade head again."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from alpha_models.schema_version import HEAD_REVISION
from tests import stack as tb
from tests.conftest import Database

VIEWS = {"trades_pnl", "daily_performance", "current_positions", "completed_trades_summary"}
TABLES = {
    "trading": {
        "bots",
        "fills",
        "orders",
        "positions",
        "position_entries",
        "completed_trades",
        "sync_status",
        "funding_settlements",
        "exchange_positions",
        "equity_snapshots",
        "strategy_trades",
        "db_roles",
    },
    "audit": {
        "system_events",
        "risk_events",
        "quarantined_fills",
        "quarantined_funding_settlements",
    },
}


def _relations(url: str) -> dict[str, set[str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname IN ('trading', 'audit') AND c.relkind IN ('r', 'v')"
            )
        ).all()
    engine.dispose()
    out: dict[str, set[str]] = {"trading": set(), "audit": set(), "views": set()}
    for schema, name, kind in rows:
        out["views" if kind == "v" else schema].add(name)
    return out


@pytest.mark.parametrize("via_pgbouncer", [False, True], ids=["direct", "pgbouncer"])
def test_upgrade_check_downgrade_upgrade(empty_db: Database, via_pgbouncer: bool) -> None:
    url = empty_db.bouncer_url if via_pgbouncer else empty_db.url

    tb.upgrade(url)
    rel = _relations(url)
    assert rel["trading"] == TABLES["trading"]
    assert rel["audit"] == TABLES["audit"]
    assert rel["views"] == VIEWS
    tb.check(url)  # models and migrations agree

    tb.downgrade(url)
    assert _relations(url) == {"trading": set(), "audit": set(), "views": set()}

    tb.upgrade(url)
    assert _relations(url)["views"] == VIEWS
    tb.check(url)


def test_trigger_maintains_position_entries_updated_at(db: Database) -> None:
    engine = db.engine()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO trading.bots (bot_id, bot_name, bot_type, strategy_name, "
                "deployment_mode, initial_capital) VALUES ('b1', 'B', 't', 's', 'demo', 100)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO trading.position_entries (bot_id, symbol, entry_id, entry_price, "
                "original_qty, remaining_qty, entry_time, updated_at) VALUES ('b1', 'BTCUSDT', "
                "'e1', 100, 1, 1, now(), '2000-01-01T00:00:00Z')"
            )
        )
    with engine.begin() as conn:
        conn.execute(text("UPDATE trading.position_entries SET remaining_qty = 0.5"))
        updated = conn.execute(text("SELECT updated_at FROM trading.position_entries")).scalar()
    assert updated.year > 2000
    engine.dispose()


def test_downgrade_refuses_when_tables_hold_rows(db: Database) -> None:
    engine = db.engine()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO trading.bots (bot_id, bot_name, bot_type, strategy_name, "
                "deployment_mode, initial_capital) VALUES ('b1', 'B', 't', 's', 'demo', 100)"
            )
        )
    with pytest.raises(
        RuntimeError, match=r"refusing to downgrade.*trading\.bots.*allow-data-loss"
    ):
        tb.downgrade(db.url)
    with engine.connect() as conn:  # nothing was dropped
        assert conn.execute(text("SELECT count(*) FROM trading.bots")).scalar() == 1
        assert conn.execute(text("SELECT version_num FROM public.alembic_version")).scalar()

    tb.downgrade(db.url, "base", "allow-data-loss=yes")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('trading.bots')")).scalar() is None
    engine.dispose()


def test_code_expects_the_latest_migration() -> None:
    from alembic.script import ScriptDirectory

    from alpha_models.schema_version import HEAD_REVISION

    script = ScriptDirectory.from_config(tb.alembic_config("postgresql://unused/x"))
    assert script.get_heads() == [HEAD_REVISION]  # one linear head, and the code knows it


def test_downgrade_keeps_a_quarantine_that_holds_rows(db: Database) -> None:
    engine = db.engine()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit.quarantined_funding_settlements (id, exec_id, bot_id, symbol, "
                "side, position_qty, mark_price, fee, exec_time, reason) VALUES (7, 'f-1', "
                "'shortseller_001', 'BTCUSDT', 'Buy', 1, 100, 0.01, now(), 'test')"
            )
        )
    with pytest.raises(
        RuntimeError, match=r"refusing to downgrade.*audit\.quarantined_funding_settlements"
    ):
        tb.downgrade(db.url, "0017")
    with engine.connect() as conn:  # nothing was dropped, nothing downgraded
        assert conn.execute(text("SELECT version_num FROM public.alembic_version")).scalar() == (
            HEAD_REVISION
        )
    tb.downgrade(db.url, "0017", "allow-data-loss=yes")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT to_regclass('audit.quarantined_fills')")).scalar() is None
        assert conn.execute(text("SELECT version_num FROM public.alembic_version")).scalar() == (
            "0017"
        )
    engine.dispose()
