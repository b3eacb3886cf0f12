"""Least privilege, enforced by PostgreSQL: each service's login role may write only what its
group role allows, directly and through PgBouncer (transaction pooling).

The test bed's ``trading_user`` has no CREATEROLE; these tests grant it (as a production
operator would once, see docs/security.md), create login roles with passwords, and add them
to PgBouncer's auth file (then SIGHUP).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from alembic import command
from alpha_models import roles
from alpha_models.bots import register_bots
from alpha_models.client import AlphaDBClient
from alpha_models.db import make_engine
from alpha_models.devstack import DevStack
from alpha_models.errors import ConfigurationError, DatabaseError, ValidationError
from alpha_models.inputs import OrderUpdate, PositionUpdate
from alpha_models.settings import Settings
from alpha_models.writepath import Outcome, WritePath
from tests import stack as tb
from tests.builders import T0, fill
from tests.conftest import Database, unique_name
from tests.migrations.test_adopt_production import snapshot

INSUFFICIENT_PRIVILEGE = "42501"
SECURED = 13  # tables with a bot_id, each with four policies

GROUPS = {
    "shortseller": "alpha_bot_shortseller_001",
    "lxalgo": "alpha_bot_lxalgo_001",
    "listener": "alpha_listener",
    "analytics": "alpha_analytics",
}


@dataclass
class Logins:
    """Login roles of this module (cluster-wide), one per group, with their passwords."""

    names: dict[str, str]
    passwords: dict[str, str]
    stack: DevStack

    def url(self, db: Database, who: str, *, via_pgbouncer: bool = False) -> str:
        port = self.stack.pgbouncer.port if via_pgbouncer else self.stack.postgres.port
        return (
            f"postgresql+psycopg2://{self.names[who]}:{self.passwords[who]}"
            f"@127.0.0.1:{port}/{db.name}"
        )

    def engine(self, db: Database, who: str, *, via_pgbouncer: bool = False) -> Engine:
        return create_engine(self.url(db, who, via_pgbouncer=via_pgbouncer))


def _userlist(stack: DevStack) -> Path:
    return stack.root / "pgbouncer" / "userlist.txt"


def _reload_pgbouncer(stack: DevStack) -> None:
    os.kill(stack.pgbouncer.pid, signal.SIGHUP)


def _wait_for_login(url: str) -> None:
    """PgBouncer rereads its auth file asynchronously after SIGHUP: wait until it has."""
    engine = create_engine(url)
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except DBAPIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def createrole(devstack: DevStack) -> Iterator[None]:
    """What docs/security.md asks of production once: the owner may create roles."""
    devstack.psql("ALTER ROLE trading_user CREATEROLE")
    try:
        yield
    finally:
        devstack.psql("ALTER ROLE trading_user NOCREATEROLE")


@pytest.fixture(scope="module")
def logins(devstack: DevStack, template_db: str, createrole: None) -> Iterator[Logins]:
    tag = secrets.token_hex(4)
    names = {who: f"sec_{tag}_{who}" for who in GROUPS}
    passwords = {who: f"pw-{who}-{secrets.token_urlsafe(18)}" for who in GROUPS}
    setup = unique_name("sec")
    devstack.create_database(setup, template=template_db)
    original_userlist = _userlist(devstack).read_bytes()
    engine = create_engine(devstack.url(setup))
    try:
        with engine.begin() as conn:
            roles.sync_roles(conn)  # the group roles exist cluster-wide from here on
            for who, group in GROUPS.items():
                verifier, created = roles.set_login_password(
                    conn, names[who], passwords[who], group=group
                )
                assert created
                roles.update_pgbouncer_userlist(_userlist(devstack), names[who], verifier)
        engine.dispose()
        devstack.drop_database(setup)
        _reload_pgbouncer(devstack)
        handle = Logins(names, passwords, devstack)
        yield handle
    finally:
        engine.dispose()
        devstack.drop_database(setup)
        _userlist(devstack).write_bytes(original_userlist)
        _reload_pgbouncer(devstack)
        for name in names.values():
            devstack.psql(f"DROP ROLE IF EXISTS {name}")


@pytest.fixture
def sdb(db: Database, logins: Logins) -> Database:
    """A fresh database whose group roles hold their grants (``alpha-db roles-sync``)."""
    engine = db.engine()
    register_bots(engine)
    with engine.begin() as conn:
        roles.sync_roles(conn)
    engine.dispose()
    _wait_for_login(logins.url(db, "shortseller", via_pgbouncer=True))
    return db


def write_path(logins: Logins, db: Database, who: str, spool: Path, bouncer: bool) -> WritePath:
    settings = Settings(
        ALPHA_DATABASE_URL=logins.url(db, who, via_pgbouncer=bouncer),
        ALPHA_SPOOL_DIR=str(spool),
        ALPHA_CONNECT_TIMEOUT=2,
    )
    return WritePath(make_engine(settings), settings=settings)


def refused(conn: Connection, sql: str, params: dict[str, Any] | None = None) -> str:
    """Run ``sql`` in a savepoint; return the SQLSTATE it failed with (the test fails if it
    succeeds)."""
    savepoint = conn.begin_nested()
    try:
        conn.execute(text(sql), params or {})
    except DBAPIError as exc:
        savepoint.rollback()
        return str(getattr(exc.orig, "pgcode", ""))
    savepoint.rollback()
    raise AssertionError(f"the database accepted: {sql}")


def owner_rows(db: Database, sql: str, **params: Any) -> list[Any]:
    engine = db.engine()
    with engine.connect() as conn:
        rows = list(conn.execute(text(sql), params).all())
    engine.dispose()
    return rows


VIA = pytest.mark.parametrize("bouncer", [False, True], ids=["direct", "pgbouncer"])


@VIA
def test_a_bot_role_records_its_fills_with_fifo_lots_and_position(
    sdb: Database, logins: Logins, tmp_path: Path, bouncer: bool
) -> None:
    wp = write_path(logins, sdb, "shortseller", tmp_path, bouncer)
    outcomes = [
        wp.record_fill(fill("Sell", "0.02", price="100000")).outcome,
        wp.record_fill(fill("Sell", "0.01", price="101000")).outcome,
        wp.record_fill(fill("Buy", "0.025", price="99000")).outcome,  # consumes FIFO
    ]
    wp.close()
    wp.engine.dispose()
    assert outcomes == [Outcome.NEW] * 3
    assert owner_rows(
        sdb,
        "SELECT side, remaining_qty, status FROM trading.position_entries "
        "WHERE bot_id = 'shortseller_001' ORDER BY entry_time, id",
    ) == [("Sell", Decimal("0E-8"), "closed"), ("Sell", Decimal("0.00500000"), "partially_closed")]
    assert owner_rows(
        sdb, "SELECT side, size FROM trading.positions WHERE bot_id = 'shortseller_001'"
    ) == [("Sell", Decimal("0.00500000"))]


def test_a_bot_role_folds_its_own_report_into_the_exchange_execution(
    sdb: Database, logins: Logins, tmp_path: Path
) -> None:
    """The bot's role may not delete fills; the fold (a SECURITY DEFINER function that can
    only supersede a self-report by a stored exchange execution) still works for it."""
    wp = write_path(logins, sdb, "shortseller", tmp_path, False)
    link = "shortseller_001:entry:mh2x0a1c"
    own = fill("Sell", "0.02", order_id="synthetic:shortseller_001:1", client_order_id=link)
    exchange = fill("Sell", "0.02", exec_id="ex-sec-fold", client_order_id=link, fee="0.01")
    outcomes = [wp.record_fill(own).outcome, wp.record_fill(exchange).outcome]
    wp.close()
    wp.engine.dispose()
    assert outcomes == [Outcome.NEW, Outcome.NEW]
    assert owner_rows(sdb, "SELECT exec_id FROM trading.fills") == [("ex-sec-fold",)]
    assert owner_rows(sdb, "SELECT size FROM trading.positions") == [(Decimal("0.02"),)]
    assert owner_rows(sdb, "SELECT exec_id FROM audit.quarantined_fills") == [(own.exec_id,)]
    # Called directly with nothing to fold, it does nothing.
    engine = logins.engine(sdb, "shortseller")
    with engine.begin() as conn:
        assert (
            conn.execute(
                text("SELECT trading.fold_self_reports('shortseller_001', 'BTCUSDT', :l, 'x')"),
                {"l": link},
            ).scalar()
            is None
        )
    engine.dispose()
    assert owner_rows(sdb, "SELECT count(*) FROM trading.fills") == [(1,)]


@VIA
def test_a_bot_role_writing_another_bots_rows_is_refused_by_the_database(
    sdb: Database, logins: Logins, tmp_path: Path, bouncer: bool
) -> None:
    owner = sdb.engine()
    with owner.begin() as conn:
        theirs = conn.execute(
            text(
                "INSERT INTO trading.fills (exec_id, bot_id, symbol, order_id, client_order_id, "
                "side, exec_price, exec_qty, exec_time, commission) VALUES ('theirs', "
                "'lxalgo_001', 'ETHUSDT', 'o1', '', 'Buy', 3000, 1, now(), 0) RETURNING id"
            )
        ).scalar_one()
    owner.dispose()

    wp = write_path(logins, sdb, "shortseller", tmp_path, bouncer)
    mine = wp.record_fill(fill("Sell", "0.01")).row_id
    with pytest.raises(DatabaseError, match="row-level security"):
        wp.record_fill(fill("Buy", "1", bot_id="lxalgo_001", symbol="ETHUSDT"))
    order = OrderUpdate(
        order_id="ord-x", bot_id="lxalgo_001", symbol="ETHUSDT", side="Buy",
        order_type="Market", status="New", qty="1", updated_time=T0,
    )  # fmt: skip
    with pytest.raises(DatabaseError, match="row-level security"):
        wp.record_order(order)
    seen = PositionUpdate(
        bot_id="lxalgo_001", symbol="ETHUSDT", side="Buy", size="1", updated_time=T0
    )
    with pytest.raises(DatabaseError, match="row-level security"):
        wp.record_position(seen)
    wp.close()
    wp.engine.dispose()

    engine = logins.engine(sdb, "shortseller", via_pgbouncer=bouncer)
    with engine.begin() as conn:
        # Other bots' rows are invisible to UPDATE and DELETE: nothing changes.
        gone = conn.execute(
            text("UPDATE trading.fills SET close_reason = 'mine now' WHERE id = :i"),
            {"i": theirs},
        )
        assert gone.rowcount == 0
        assert refused(conn, "UPDATE trading.fills SET bot_id = 'lxalgo_001' WHERE id = :i",
                       {"i": mine}) == INSUFFICIENT_PRIVILEGE  # fmt: skip
        assert refused(conn, "UPDATE trading.fills SET exec_price = 1 WHERE id = :i",
                       {"i": mine}) == INSUFFICIENT_PRIVILEGE  # fmt: skip
        assert refused(conn, "DELETE FROM trading.fills") == INSUFFICIENT_PRIVILEGE
        assert (
            refused(
                conn,
                "INSERT INTO audit.risk_events (bot_id, risk_type, current_value, limit_value, "
                "action_taken) VALUES ('lxalgo_001', 'drawdown', 1, 1, 'none')",
            )
            == INSUFFICIENT_PRIVILEGE
        )
        assert (
            refused(
                conn,
                "INSERT INTO audit.system_events (event_type, event_level, message) "
                "VALUES ('x', 'INFO', 'a platform event, no bot')",
            )
            == INSUFFICIENT_PRIVILEGE
        )
        # A session variable is no identity: setting one changes nothing.
        conn.execute(text("SELECT set_config('app.bot_id', 'lxalgo_001', false)"))
        assert refused(conn, "SELECT * FROM trading.rebuild_position('lxalgo_001', 'ETHUSDT')")
        with pytest.raises(ConfigurationError, match="may not write rows of bot lxalgo_001"):
            roles.check_write_scope(conn, "lxalgo_001")
        assert roles.check_write_scope(conn, "shortseller_001").bot_ids == {"shortseller_001"}
        # The bot's own rows are writable, and reads are open.
        conn.execute(
            text(
                "INSERT INTO audit.system_events (event_type, event_level, bot_id, message) "
                "VALUES ('start', 'INFO', 'shortseller_001', 'started')"
            )
        )
        assert conn.execute(text("SELECT count(*) FROM trading.fills")).scalar() == 2
    engine.dispose()

    assert owner_rows(sdb, "SELECT bot_id, close_reason FROM trading.fills WHERE id = :i",
                      i=theirs) == [("lxalgo_001", None)]  # fmt: skip
    assert owner_rows(sdb, "SELECT count(*) FROM trading.fills WHERE bot_id = 'lxalgo_001'") == [
        (1,)
    ]
    assert owner_rows(sdb, "SELECT count(*) FROM trading.orders") == [(0,)]


@VIA
def test_a_bot_role_cannot_alter_drop_or_change_identity(
    sdb: Database, logins: Logins, bouncer: bool
) -> None:
    engine = logins.engine(sdb, "shortseller", via_pgbouncer=bouncer)
    with engine.begin() as conn:
        for sql in (
            "ALTER TABLE trading.fills ADD COLUMN evil int",
            "ALTER TABLE trading.fills DISABLE ROW LEVEL SECURITY",
            "DROP POLICY alpha_insert ON trading.fills",
            "CREATE POLICY evil ON trading.fills FOR ALL USING (true)",
            "DROP TABLE trading.fills",
            "DROP VIEW trading.trades_pnl",
            "TRUNCATE trading.position_entries",
            "CREATE TABLE trading.evil (x int)",
            "CREATE INDEX evil ON trading.fills (symbol)",
            "CREATE OR REPLACE FUNCTION trading.may_write(p_bot_id varchar) RETURNS boolean "
            "LANGUAGE sql AS 'SELECT true'",
            "SET ROLE alpha_listener",
            "SET ROLE trading_user",
            "SET SESSION AUTHORIZATION trading_user",
            "INSERT INTO trading.db_roles (role_name, kind) VALUES (current_user, 'listener')",
            "UPDATE trading.db_roles SET kind = 'listener'",
            "SELECT * FROM trading.sync_roles()",
        ):
            assert refused(conn, sql), sql
    engine.dispose()
    assert owner_rows(
        sdb,
        "SELECT count(*) FILTER (WHERE c.relrowsecurity AND NOT c.relforcerowsecurity), "
        "(SELECT count(*) FROM pg_policies WHERE schemaname IN ('trading', 'audit')) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname IN ('trading', 'audit') AND c.relkind = 'r'",
    ) == [(SECURED, SECURED * 4)]
    columns = owner_rows(
        sdb,
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_schema = 'trading' AND table_name = 'fills' AND column_name = 'evil'",
    )
    assert columns == [(0,)]


@VIA
def test_the_analytics_role_reads_everything_and_can_change_nothing(
    sdb: Database, logins: Logins, tmp_path: Path, bouncer: bool
) -> None:
    writer = write_path(logins, sdb, "shortseller", tmp_path, False)
    writer.record_fill(fill("Sell", "0.01"))
    writer.close()
    writer.engine.dispose()
    relations = owner_rows(
        sdb,
        "SELECT n.nspname || '.' || c.relname, c.relkind, "
        "(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = 1) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname IN ('trading', 'audit') AND c.relkind IN ('r', 'v') ORDER BY 1",
    )
    tables = [(name, col) for name, kind, col in relations if kind == "r"]
    assert len(tables) == SECURED + 3  # and trading.db_roles and the two reconcile quarantines

    engine = logins.engine(sdb, "analytics", via_pgbouncer=bouncer)
    with engine.begin() as conn:
        assert conn.execute(text("SHOW default_transaction_read_only")).scalar() == "on"
        # The read-only default is only a seat belt (a client may lift it): privileges hold.
        conn.execute(text("SET TRANSACTION READ WRITE"))
        for name, _kind, _col in relations:
            conn.execute(text(f"SELECT count(*) FROM {name}")).scalar()
        assert conn.execute(text("SELECT count(*) FROM trading.fills")).scalar() == 1
        for name, col in tables:
            for sql in (
                f"INSERT INTO {name} DEFAULT VALUES",
                f"UPDATE {name} SET {col} = {col}",
                f"DELETE FROM {name}",
                f"TRUNCATE {name}",
                f"SELECT 1 FROM {name} FOR UPDATE",
                f"LOCK TABLE {name} IN EXCLUSIVE MODE",
            ):
                assert refused(conn, sql) == INSUFFICIENT_PRIVILEGE, sql
        assert refused(conn, "SELECT nextval('trading.fills_id_seq')") == INSUFFICIENT_PRIVILEGE
        assert (
            refused(
                conn,
                "SELECT * FROM trading.record_fill('x', 'shortseller_001', 'BTCUSDT', 'o', '', "
                "'Buy', 1, 1, now(), NULL, 0, 'Trade', 'adapter')",
            )
            == INSUFFICIENT_PRIVILEGE
        )
    engine.dispose()
    assert owner_rows(sdb, "SELECT count(*) FROM trading.fills") == [(1,)]


def test_the_listener_writes_for_every_bot_and_alone_reattributes_unknown_copies(
    sdb: Database, logins: Logins, tmp_path: Path
) -> None:
    listener = write_path(logins, sdb, "listener", tmp_path / "l", True)
    bot = write_path(logins, sdb, "shortseller", tmp_path / "b", True)
    bot.record_fill(fill("Sell", "0.03", exec_id="open-1"))
    first = listener.record_fill(fill("Buy", "0.01", bot_id="unknown", exec_id="exit-1"))
    assert first.outcome is Outcome.NEW

    # The bot claims the listener's unknown copy: row security keeps it unknown.
    claim = bot.record_fill(fill("Buy", "0.01", exec_id="exit-1"))
    assert (claim.outcome, claim.row_id) == (Outcome.DUPLICATE, first.row_id)
    assert owner_rows(sdb, "SELECT bot_id FROM trading.fills WHERE exec_id = 'exit-1'") == [
        ("unknown",)
    ]
    # The listener attributes it: the bot's lots are rebuilt with the exit.
    repaired = listener.record_fill(fill("Buy", "0.01", exec_id="exit-1"))
    assert repaired.outcome is Outcome.REATTRIBUTED
    assert repaired.position is not None and repaired.position.size == Decimal("0.02")
    assert listener.record_fill(fill("Sell", "1", bot_id="lxalgo_001")).outcome is Outcome.NEW
    for wp in (listener, bot):
        wp.close()
        wp.engine.dispose()
    engine = logins.engine(sdb, "listener", via_pgbouncer=True)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit.system_events (event_type, event_level, message) "
                "VALUES ('reconnect', 'WARNING', 'stream reconnected')"
            )
        )
        assert refused(conn, "DELETE FROM trading.fills") == INSUFFICIENT_PRIVILEGE
    engine.dispose()
    assert owner_rows(sdb, "SELECT bot_id, side, size FROM trading.positions ORDER BY 1") == [
        ("lxalgo_001", "Sell", Decimal("1.00000000")),
        ("shortseller_001", "Sell", Decimal("0.02000000")),
    ]


def test_reconcile_as_the_listener_inserts_but_leaves_rewriting_and_voiding_to_the_owner(
    sdb: Database, logins: Logins, tmp_path: Path
) -> None:
    from alpha_models.reconcile import reconcile
    from tests.integration import test_reconcile as rc

    listener = write_path(logins, sdb, "listener", tmp_path, False)
    trades = rc.trades()
    for f in trades:
        listener.record_fill(f)
    extra = fill("Sell", "0.001", "112000", symbol="BTCUSDT", exec_id=rc.EXTRA_ID,
                 at=datetime(2025, 10, 1, 12, tzinfo=UTC))  # fmt: skip
    listener.record_fill(extra)
    engine = sdb.engine()
    with engine.begin() as conn:  # as the owner: one price altered
        conn.execute(
            text("UPDATE trading.fills SET exec_price = exec_price + 1 WHERE exec_id = :x"),
            {"x": trades[10].exec_id},
        )
    engine.dispose()
    before = owner_rows(sdb, "SELECT * FROM trading.fills ORDER BY id")

    report = reconcile(
        listener.engine, listener, rc.BOT, rc.START, rc.END, rc.exchange_pages(), apply=True
    )
    by_action: dict[str, list[Any]] = {}
    for c in report.corrections:
        by_action.setdefault(c.action, []).append(c)
    assert {a: len(cs) for a, cs in by_action.items()} == {
        "corrected": 1, "voided": 1, "inserted": 30
    }  # fmt: skip
    assert all(c.applied for c in by_action["inserted"])  # the missing funding: allowed
    for c in (*by_action["corrected"], *by_action["voided"]):
        assert not c.applied and c.outcome == "error" and c.error and "owner" in c.error
    assert report.status == "partial" and report.exit_code == 1
    assert owner_rows(sdb, "SELECT * FROM trading.fills ORDER BY id") == before
    assert owner_rows(sdb, "SELECT count(*) FROM audit.quarantined_fills") == [(0,)]
    assert owner_rows(
        sdb,
        "SELECT count(*) FROM audit.system_events WHERE event_type = 'RECONCILE_CORRECTION' "
        "AND event_level = 'ERROR'",
    ) == [(2,)]
    listener.close()
    listener.engine.dispose()
    engine = logins.engine(sdb, "listener")
    with engine.begin() as conn:  # readable, never writable by a service role
        assert conn.execute(text("SELECT count(*) FROM audit.quarantined_fills")).scalar() == 0
        for sql in (
            "INSERT INTO audit.quarantined_fills (id, bot_id, symbol, order_id, "
            "client_order_id, side, exec_price, exec_qty, exec_time, commission, exec_id, "
            "exec_type, reason) VALUES (1, 'shortseller_001', 'BTCUSDT', 'o', '', 'Buy', 1, 1, "
            "now(), 0, 'x', 'Trade', 'r')",
            "DELETE FROM audit.quarantined_funding_settlements",
        ):
            assert refused(conn, sql) == INSUFFICIENT_PRIVILEGE, sql
    engine.dispose()


@VIA
def test_alpha_db_client_works_under_its_bots_role_and_only_for_that_bot(
    sdb: Database, logins: Logins, devstack: DevStack, tmp_path: Path, bouncer: bool
) -> None:
    def client(bot_id: str, spool: str) -> AlphaDBClient:
        settings = Settings(
            ALPHA_DATABASE_URL=logins.url(sdb, "shortseller", via_pgbouncer=bouncer),
            ALPHA_REDIS_URL=devstack.redis_url(),
            ALPHA_SPOOL_DIR=str(tmp_path / spool),
            ALPHA_CONNECT_TIMEOUT=2,
        )
        return AlphaDBClient(bot_id, settings=settings)

    with client("shortseller_001", "own") as c:
        assert c.write_fill("BTCUSDT", "Sell", 100000.0, 0.02, "o-1", "", "entry", 0.0, T0) > 0
        closed = c.close_position_fifo("BTCUSDT", 99000.0, 0.02, T0.replace(hour=1), "tp")
        assert [piece["gross_pnl"] for piece in closed] == [20.0]
        trade = c.record_completed_trade(
            "BTCUSDT", "Sell", 100000.0, 0.02, T0, "entry", "Buy", 99000.0, 0.02,
            T0.replace(hour=1), "tp",
        )  # fmt: skip
        assert trade > 0
        c.update_heartbeat()
        c.update_equity(10020.5)
    with client("lxalgo_001", "other") as c, pytest.raises(DatabaseError, match="row-level"):
        c.write_fill("ETHUSDT", "Buy", 3000.0, 1.0, "o-2", "", "entry", 0.0, T0)
    with client("lxalgo_001", "other2") as c:
        c.update_equity(1.0)  # refused by row security: logged, nothing changes
    assert owner_rows(
        sdb,
        "SELECT bot_id, current_equity, last_heartbeat IS NOT NULL FROM trading.bots "
        "WHERE bot_id IN ('shortseller_001', 'lxalgo_001') ORDER BY 1",
    ) == [("lxalgo_001", None, False), ("shortseller_001", Decimal("10020.50000000"), True)]


def test_the_migration_creates_the_roles_and_reruns_cleanly(
    empty_db: Database, devstack: DevStack, createrole: None, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"m{secrets.token_hex(3)}"
    names = [f"{prefix}_{s}" for s in ("listener", "analytics")] + [
        f"{prefix}_bot_{b}" for b in ("shortseller_001", "lxalgo_001", "momentum_001")
    ]

    def upgrade(revision: str = "head") -> None:
        command.upgrade(tb.alembic_config(empty_db.url, f"roles-prefix={prefix}"), revision)

    def acl() -> list[Any]:
        return owner_rows(
            empty_db,
            "SELECT c.relname, c.relacl::text, c.relrowsecurity FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('trading', 'audit') ORDER BY 1",
        ) + owner_rows(empty_db, "SELECT defaclobjtype, defaclacl::text FROM pg_default_acl "
                                 "ORDER BY 1, 2")  # fmt: skip

    def existing() -> list[str]:
        return [
            r[0]
            for r in owner_rows(
                empty_db,
                "SELECT rolname FROM pg_roles WHERE rolname LIKE :p AND NOT rolcanlogin ORDER BY 1",
                p=f"{prefix}_%",
            )
        ]

    try:
        # Without CREATEROLE (the test bed's default): row security is on, roles reported.
        devstack.psql("ALTER ROLE trading_user NOCREATEROLE")
        with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
            upgrade()
        assert "roles not created (this connection lacks CREATEROLE)" in caplog.text
        assert existing() == []
        devstack.psql("ALTER ROLE trading_user CREATEROLE")
        engine = empty_db.engine()
        with engine.begin() as conn:
            actions = roles.sync_roles(conn, roles.RoleNames(prefix=prefix))
        assert sorted(a.role_name for a in actions if a.action == "created") == sorted(names)
        assert existing() == sorted(names)
        secured = acl()
        with engine.begin() as conn:  # converges: running it again changes nothing
            assert {a.action for a in roles.sync_roles(conn, roles.RoleNames(prefix=prefix))} == {
                "granted"
            }
        assert acl() == secured
        assert owner_rows(
            empty_db,
            "SELECT has_table_privilege(:b, 'trading.fills', 'INSERT'), "
            "has_table_privilege(:b, 'trading.fills', 'DELETE'), "
            "has_table_privilege(:a, 'trading.fills', 'INSERT'), "
            "has_table_privilege(:a, 'trading.completed_trades_summary', 'SELECT'), "
            "has_sequence_privilege(:b, 'trading.fills_id_seq', 'USAGE'), "
            "has_table_privilege(:b, 'trading.completed_trades', 'DELETE'), "
            "has_table_privilege(:l, 'trading.completed_trades', 'DELETE'), "
            "has_table_privilege(:l, 'trading.fills', 'DELETE')",
            b=f"{prefix}_bot_lxalgo_001",
            a=f"{prefix}_analytics",
            l=f"{prefix}_listener",
        ) == [(True, False, False, True, True, False, True, False)]

        # Future tables are readable by every role through the default privileges.
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE trading.later_table (id int)"))
        assert owner_rows(
            empty_db, "SELECT has_table_privilege(:a, 'trading.later_table', 'SELECT')",
            a=f"{prefix}_analytics",
        ) == [(True,)]  # fmt: skip
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE trading.later_table"))

        tb.downgrade(empty_db.url, "0015")
        assert owner_rows(
            empty_db,
            "SELECT count(*) FROM pg_policies WHERE schemaname IN ('trading', 'audit')",
        ) == [(0,)]
        assert all(all(name not in str(cell) for name in names) for row in acl() for cell in row)
        assert existing() == sorted(names)  # cluster objects: kept, holding nothing here
        upgrade()  # the roles exist now: the upgrade grants again, as before
        assert acl() == secured
        engine.dispose()
    finally:
        devstack.psql("ALTER ROLE trading_user CREATEROLE")
        left = existing()
        if left:
            devstack.psql(f"DROP OWNED BY {', '.join(left)}", empty_db.name)
            for name in left:
                devstack.psql(f"DROP ROLE {name}")


def test_upgrading_a_restored_production_dump_changes_no_row_and_keeps_trading_user(
    devstack: DevStack, logins: Logins, tmp_path: Path
) -> None:
    name = unique_name("secdump")
    tb.restore_dump(devstack, tb.DUMPS[-1], name)
    try:
        url = devstack.url(name)
        before = snapshot(url)
        tb.upgrade(url)
        columns = before["columns"]
        assert isinstance(columns, dict)
        after = snapshot(url, columns)
        for key, value in before.items():
            if key != "columns":
                assert after[key] == value, key
        dump = Database(name, devstack)
        assert owner_rows(
            dump,
            "SELECT count(*), count(*) FILTER (WHERE c.relrowsecurity "
            "AND NOT c.relforcerowsecurity AND pg_get_userbyid(c.relowner) = 'trading_user') "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('trading', 'audit') AND c.relkind = 'r' "
            "AND c.relname NOT IN ('db_roles', 'quarantined_fills', "
            "'quarantined_funding_settlements')",  # owner-only tables: no row security
        ) == [(SECURED, SECURED)]
        assert owner_rows(dump, "SELECT count(*) FROM pg_policies") == [(SECURED * 4,)]

        # trading_user, the owner every service uses today, writes for every bot as before.
        wp = WritePath(
            make_engine(Settings(ALPHA_DATABASE_URL=url)),
            settings=Settings(ALPHA_DATABASE_URL=url, ALPHA_SPOOL_DIR=str(tmp_path)),
        )
        for bot in ("lxalgo_001", "shortseller_001", "unknown"):
            assert wp.record_fill(fill("Buy", "0.01", bot_id=bot)).outcome is Outcome.NEW
        wp.close()
        wp.engine.dispose()
        owner = create_engine(url)
        with owner.begin() as conn:  # the legacy listener's positions upsert, one per bot
            changed = conn.execute(text("UPDATE trading.positions SET updated_at = now()"))
            total = conn.execute(text("SELECT count(*) FROM trading.positions")).scalar_one()
            assert changed.rowcount == total >= 66
        owner.dispose()

        # A bot's login sees the history, and cannot touch another bot's legacy rows.
        engine = logins.engine(dump, "shortseller")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM trading.fills")).scalar() == 125
            hidden = conn.execute(
                text("UPDATE trading.fills SET close_reason = 'x' WHERE bot_id <> :b"),
                {"b": "shortseller_001"},
            )
            assert hidden.rowcount == 0
        engine.dispose()
    finally:
        devstack.drop_database(name)


def test_role_names_are_checked_before_they_reach_sql(sdb: Database) -> None:
    for bad in ("Robert'); DROP TABLE trading.fills;--", "pg_admin", "trading", "a" * 64, ""):
        with pytest.raises(ValidationError, match="role"):
            roles.validate_role_name(bad)
    engine = sdb.engine()
    with engine.begin() as conn:
        with pytest.raises(ConfigurationError, match="group role"):
            roles.set_login_password(conn, "alpha_listener", "a-long-enough-password")
        with pytest.raises(ValidationError, match="login"):
            roles.set_login_password(conn, "x'; DROP ROLE trading_user; --", "long-password-1")
        with pytest.raises(ValidationError, match="password"):
            roles.set_login_password(conn, "fine_name", "short")
    engine.dispose()


def test_bulk_ingest_under_a_bot_role_is_refused_up_front_and_record_fills_works(
    sdb: Database, logins: Logins, tmp_path: Path
) -> None:
    """PostgreSQL refuses COPY under row security: a typed error before any fill is read,
    nothing written; one by one, the same fills are stored."""
    wp = write_path(logins, sdb, "shortseller", tmp_path, False)
    fills = [fill("Sell", "0.02"), fill("Buy", "0.01")]
    read: list[Any] = []

    def batch() -> Iterator[Any]:
        for f in fills:
            read.append(f)
            yield f

    with pytest.raises(ConfigurationError, match="row security"):
        wp.ingest_bulk(batch())
    assert read == []
    assert owner_rows(sdb, "SELECT count(*) FROM trading.fills") == [(0,)]
    assert [r.outcome for r in wp.record_fills(fills)] == [Outcome.NEW, Outcome.NEW]
    wp.close()
    wp.engine.dispose()
    assert owner_rows(sdb, "SELECT size FROM trading.positions") == [(Decimal("0.01"),)]
