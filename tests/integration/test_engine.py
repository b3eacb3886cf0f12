"""The engine against the real servers: PgBouncer-safe, UTC, secrets hidden."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from alpha_models.db import check_connection, make_engine, make_session_factory, session_scope
from alpha_models.errors import DatabaseUnavailableError
from alpha_models.settings import Settings
from alpha_models.trading import Bot
from tests.conftest import Database


def _settings(url: str, **env: str) -> Settings:
    return Settings(ALPHA_DATABASE_URL=url, ALPHA_APPLICATION_NAME="alpha-test", **env)


def test_application_name_and_no_leaked_session_state_through_pgbouncer(db: Database) -> None:
    engine = make_engine(_settings(db.bouncer_url))
    with engine.connect() as conn:
        name = conn.execute(text("SHOW application_name")).scalar()
        timeout = conn.execute(text("SHOW statement_timeout")).scalar()
        conn.rollback()
    assert name == "alpha-test"
    assert timeout == "30s"  # set by SET LOCAL in the transaction
    # A fresh transaction on a pooled server connection carries no state from the last one
    # except what it sets itself, and no server-side prepared statement was left behind.
    with engine.connect() as conn:
        prepared = conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
    assert prepared == 0
    engine.dispose()


def test_check_connection_reports_the_version(db: Database) -> None:
    engine = make_engine(_settings(db.url))
    assert check_connection(engine).startswith("15.")
    engine.dispose()


def test_wrong_password_error_hides_the_password(db: Database) -> None:
    wrong = "definitely-not-the-password-42"
    url = db.url.replace(db.stack.app_password, wrong)
    engine = make_engine(_settings(url))
    with pytest.raises(DatabaseUnavailableError) as caught:
        check_connection(engine)
    assert wrong not in str(caught.value)
    assert "password authentication failed" in str(caught.value)
    engine.dispose()


def test_money_is_exact_decimal_and_times_come_back_utc(db: Database) -> None:
    engine = make_engine(_settings(db.url))
    factory = make_session_factory(engine)
    plus3 = timezone(timedelta(hours=3))
    with session_scope(factory) as s:
        s.add(
            Bot(
                bot_id="b1",
                bot_name="B",
                bot_type="t",
                strategy_name="s",
                deployment_mode="demo",
                initial_capital=Decimal("0.1") + Decimal("0.2"),
                last_heartbeat=datetime(2025, 1, 1, 3, 0, tzinfo=plus3),
            )
        )
    with session_scope(factory) as s:
        bot = s.execute(select(Bot)).scalar_one()
    assert bot.initial_capital == Decimal("0.30000000")
    assert bot.last_heartbeat == datetime(2025, 1, 1, 0, 0, tzinfo=UTC)
    assert bot.last_heartbeat.utcoffset() == timedelta(0)
    engine.dispose()


def test_naive_datetime_is_refused_and_nothing_is_written(db: Database) -> None:
    engine = make_engine(_settings(db.url))
    factory = make_session_factory(engine)
    with pytest.raises(Exception, match="naive datetime"), session_scope(factory) as s:
        s.add(
            Bot(
                bot_id="b2",
                bot_name="B",
                bot_type="t",
                strategy_name="s",
                deployment_mode="demo",
                initial_capital=Decimal(1),
                last_heartbeat=datetime(2025, 1, 1),
            )
        )
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM trading.bots")).scalar() == 0
    engine.dispose()
