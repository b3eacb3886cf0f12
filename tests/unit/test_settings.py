"""Settings: today's defaults, overrides, and a password that never shows."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from alpha_models.db import check_connection, make_engine
from alpha_models.devstack import free_port
from alpha_models.errors import ConfigurationError, DatabaseUnavailableError
from alpha_models.settings import Settings

SECRET = "s3cr3t-P@ss:w/rd"


def test_defaults_are_todays_platform_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DB", "POSTGRES_USER", "REDIS_HOST"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert (s.postgres_host, s.postgres_port, s.postgres_db, s.postgres_user) == (
        "pgbouncer",
        6432,
        "trading_db",
        "trading_user",
    )
    assert (s.redis_host, s.redis_port, s.redis_db) == ("redis", 6379, 0)


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "postgres")
    monkeypatch.setenv("POSTGRES_PORT", "5432")
    monkeypatch.setenv("REDIS_DB", "1")
    s = Settings()
    assert s.sqlalchemy_url.host == "postgres" and s.sqlalchemy_url.port == 5432
    assert s.redis_connection_url().endswith("/1")


def test_url_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHA_DATABASE_URL", f"postgresql://u:{quote(SECRET, safe='')}@h:1/d")
    s = Settings()
    assert s.sqlalchemy_url.drivername == "postgresql+psycopg2"
    assert s.sqlalchemy_url.database == "d"
    assert s.sqlalchemy_url.password == SECRET
    assert SECRET not in repr(s) and quote(SECRET, safe="") not in repr(s)


def test_password_never_in_repr_or_url_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_PASSWORD", SECRET)
    monkeypatch.setenv("REDIS_PASSWORD", SECRET)
    s = Settings()
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    assert SECRET not in str(s.sqlalchemy_url)
    assert SECRET not in repr(s.sqlalchemy_url)
    assert s.sqlalchemy_url.password == SECRET  # but it is used


def test_password_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "pg_password"
    secret_file.write_text(SECRET + "\n")
    monkeypatch.delenv("POSTGRES_PASSWORD", raising=False)
    monkeypatch.setenv("POSTGRES_PASSWORD_FILE", str(secret_file))
    assert Settings().sqlalchemy_url.password == SECRET


def test_unreadable_password_file_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("POSTGRES_PASSWORD", raising=False)
    monkeypatch.setenv("POSTGRES_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="POSTGRES_PASSWORD_FILE"):
        Settings()


def test_connection_error_text_has_no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv(
        "ALPHA_DATABASE_URL",
        f"postgresql://trading_user:{quote(SECRET, safe='')}@127.0.0.1:{port}/x",
    )
    engine = make_engine(Settings())
    with pytest.raises(DatabaseUnavailableError) as caught:
        check_connection(engine)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None  # the driver error is not chained
    assert "PostgreSQL unavailable" in str(caught.value)


def test_scrub_removes_plain_and_url_encoded_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_PASSWORD", SECRET)
    s = Settings()
    assert s.scrub(f"failed for {SECRET} and s3cr3t-P%40ss%3Aw%2Frd") == "failed for *** and ***"
