"""Adopting the real production dumps: every row and sequence value kept, audit created."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from alpha_models.devstack import DevStack
from tests import stack as tb
from tests.conftest import unique_name

MANIFEST = json.loads((tb.FIXTURES / "alpha_dumps" / "MANIFEST.json").read_text())
PKS = {"bots": "bot_id"}
VIEWS = ["trades_pnl", "daily_performance", "completed_trades_summary", "current_positions"]

# State (c) = state (b) plus the lots table, its trigger and view (CONTRACT.md): built from
# the 11-06 dump with production's DDL, independent of the migration's own text.
STATE_C_DDL = """
SET ROLE trading_user;
CREATE TABLE trading.position_entries (
    id serial PRIMARY KEY,
    bot_id character varying(50) NOT NULL,
    symbol character varying(20) NOT NULL,
    entry_id character varying(100) NOT NULL,
    entry_price numeric(20,8) NOT NULL,
    original_qty numeric(20,8) NOT NULL,
    remaining_qty numeric(20,8) NOT NULL,
    entry_time timestamp with time zone NOT NULL,
    entry_fill_id bigint,
    entry_order_id character varying(100),
    entry_commission numeric(20,8) DEFAULT 0,
    status character varying(20) DEFAULT 'open',
    created_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT position_entries_entry_id_key UNIQUE (entry_id),
    CONSTRAINT fk_position_entries_bot FOREIGN KEY (bot_id) REFERENCES trading.bots(bot_id),
    CONSTRAINT fk_position_entries_fill FOREIGN KEY (entry_fill_id) REFERENCES trading.fills(id),
    CONSTRAINT chk_quantities CHECK (remaining_qty >= 0 AND remaining_qty <= original_qty),
    CONSTRAINT chk_status CHECK (status IN ('open', 'partially_closed', 'closed'))
);
CREATE INDEX idx_position_entries_bot_symbol ON trading.position_entries (bot_id, symbol, status);
CREATE INDEX idx_position_entries_entry_time ON trading.position_entries (entry_time);
CREATE INDEX idx_position_entries_status ON trading.position_entries (status)
    WHERE status <> 'closed';
CREATE FUNCTION trading.update_position_entries_timestamp() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at = CURRENT_TIMESTAMP; RETURN NEW; END; $$;
CREATE TRIGGER trigger_update_position_entries_timestamp BEFORE UPDATE
    ON trading.position_entries FOR EACH ROW
    EXECUTE FUNCTION trading.update_position_entries_timestamp();
INSERT INTO trading.position_entries (bot_id, symbol, entry_id, entry_price, original_qty,
    remaining_qty, entry_time, entry_fill_id, entry_order_id)
    SELECT bot_id, symbol, bot_id || ':' || symbol || ':' || extract(epoch FROM exec_time),
           exec_price, exec_qty, exec_qty, exec_time, id, order_id
    FROM trading.fills WHERE bot_id = 'lxalgo_001' AND side = 'Buy';
CREATE VIEW trading.current_positions AS
    SELECT bot_id, symbol, sum(remaining_qty) AS total_qty, count(*) AS num_entries
    FROM trading.position_entries WHERE status <> 'closed' GROUP BY bot_id, symbol;
"""


def _tables(conn: Connection) -> list[str]:
    return list(
        conn.execute(
            text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'trading' AND c.relkind = 'r' ORDER BY 1"
            )
        ).scalars()
    )


def _column_lists(conn: Connection) -> dict[str, list[str]]:
    rows = conn.execute(
        text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'trading' ORDER BY table_name, ordinal_position"
        )
    ).all()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def snapshot(url: str, columns: dict[str, list[str]] | None = None) -> dict[str, object]:
    """Row count and md5 of the ordered rows per table (over ``columns``, default all: later
    migrations add columns, the original ones must not change), and sequence values."""
    engine = create_engine(url)
    out: dict[str, object] = {}
    with engine.connect() as conn:
        conn.execute(text("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'"))
        current = _column_lists(conn)
        out["columns"] = current
        for table in _tables(conn):
            pk = PKS.get(table, "id")
            cols = (columns or current).get(table, current[table])
            row = (
                "t" if cols == current[table] else "row(" + ", ".join(f"t.{c}" for c in cols) + ")"
            )
            out[table] = conn.execute(
                text(
                    f"SELECT count(*), md5(coalesce(string_agg({row}::text, E'\\n' "
                    f"ORDER BY t.{pk}), '')) FROM trading.{table} t"
                )
            ).one()
        for seq, last in conn.execute(
            text("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'trading'")
        ):
            out[f"seq:{seq}"] = last
    engine.dispose()
    return out


def view_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        counts = {
            v: conn.execute(text(f"SELECT count(*) FROM trading.{v}")).scalar_one() for v in VIEWS
        }
    engine.dispose()
    return counts


@pytest.fixture(params=[*tb.DUMPS, "state_c"], ids=lambda p: Path(str(p)).name)
def restored(request: pytest.FixtureRequest, devstack: DevStack) -> Iterator[tuple[str, str]]:
    name = unique_name("dump")
    dump = tb.DUMPS[-1] if request.param == "state_c" else request.param
    tb.restore_dump(devstack, dump, name)
    if request.param == "state_c":
        devstack.psql_file(None, name, stdin=STATE_C_DDL.encode())
    try:
        yield Path(dump).name, name
    finally:
        devstack.drop_database(name)


@pytest.mark.parametrize("via_pgbouncer", [False, True], ids=["direct", "pgbouncer"])
def test_adopting_a_dump_keeps_every_row(
    restored: tuple[str, str], devstack: DevStack, via_pgbouncer: bool
) -> None:
    dump_file, name = restored
    url = devstack.url(name, via_pgbouncer=via_pgbouncer)
    manifest = MANIFEST["dumps"][dump_file]["tables"]

    before = snapshot(url)
    for table, facts in manifest.items():  # the restore itself is faithful
        short = table.split(".")[1]
        assert before[short] == (facts["rows"], facts["md5_ordered_rows"]), table

    tb.upgrade(url)
    original_columns = before["columns"]
    assert isinstance(original_columns, dict)
    after_first = snapshot(url, original_columns)
    tb.upgrade(url)  # the second run is a no-op
    after_second = snapshot(url, original_columns)

    for key, value in before.items():
        if key != "columns":
            assert after_first[key] == value, key
    assert after_second == after_first
    tb.check(url)

    engine = create_engine(url)
    with engine.connect() as conn:
        audit = set(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'audit'")
            ).scalars()
        )
        assert audit == {
            "system_events",
            "risk_events",
            "quarantined_fills",
            "quarantined_funding_settlements",
        }
        assert conn.execute(text("SELECT version_num FROM public.alembic_version")).scalar()
    engine.dispose()
    counts = view_counts(url)  # the existing views are still selectable
    for view, expected in MANIFEST["dumps"][dump_file].get("views", {}).items():
        assert counts[view.split(".")[1]] == expected, view


def test_adoption_refuses_a_mismatching_table_and_changes_nothing(devstack: DevStack) -> None:
    name = unique_name("mismatch")
    tb.restore_dump(devstack, tb.DUMPS[0], name)
    try:
        devstack.psql(
            "DROP VIEW trading.trades_pnl; "
            "ALTER TABLE trading.fills ALTER COLUMN exec_qty TYPE double precision",
            name,
        )
        before = snapshot(devstack.url(name))
        with pytest.raises(
            Exception, match=r"trading\.fills\.exec_qty: expected .*numeric\(20,8\)"
        ):
            tb.upgrade(devstack.url(name))
        assert snapshot(devstack.url(name)) == before
        engine = create_engine(devstack.url(name))
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT to_regclass('public.alembic_version')")).scalar() is None
            )
            assert conn.execute(text("SELECT to_regnamespace('audit')")).scalar() is None
        engine.dispose()
    finally:
        devstack.drop_database(name)
