"""Secrets: passwords from the environment or ``*_PASSWORD_FILE``, Redis AUTH (password and
ACL user), and no password in any log line or error of the connection-failure cases.

The passwords carry the characters that URLs and conninfo strings escape (``@ : / % +`` and
a space), so a leak in any encoding (raw, percent-encoded, form-encoded) is caught.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import redis
from sqlalchemy import create_engine, text

from alpha_models import migrations, roles
from alpha_models.cache import PositionCache, PositionSnapshot
from alpha_models.cli import main as cli_main
from alpha_models.client import AlphaDBClient
from alpha_models.db import check_connection, make_engine
from alpha_models.devstack import DevStack, Server, free_port, require_binary
from alpha_models.errors import ConfigurationError
from alpha_models.runtime import make_redis
from alpha_models.settings import Settings
from alpha_models.writepath import Outcome, WritePath
from tests.builders import fill
from tests.conftest import Database

TAG = secrets.token_hex(4)
PG_PASSWORD = f"pg:P@ss/w%rd+ {TAG}"
PG_WRONG = f"wrong:P@ss/w%rd+ {TAG}"
REDIS_PASSWORD = f"rd:P@ss/w%rd+ {TAG}"
ACL_USER = f"alpha_{TAG}"
ACL_PASSWORD = f"acl:P@ss/w%rd+ {TAG}"
NEW_ROLE_PASSWORD = f"new:P@ss/w%rd+ {TAG}"
SECRETS = (PG_PASSWORD, PG_WRONG, REDIS_PASSWORD, ACL_PASSWORD, NEW_ROLE_PASSWORD)
LOGIN = f"leak_{TAG}"
ROOT = Path(__file__).resolve().parents[2]


def forms(secret: str) -> set[str]:
    """The ways a secret could be written out: as is, percent- and form-encoded."""
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}


def leaks(corpus: str) -> list[str]:
    return sorted({s for secret in SECRETS for s in forms(secret) if s in corpus})


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "REDIS_", "ALPHA_"))
    }
    return {**env, **extra}


@pytest.fixture(scope="module")
def auth_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A Redis with ``requirepass`` (the default user) and an ACL user of its own."""
    workdir = tmp_path_factory.mktemp("redis-auth")
    port = free_port()
    argv = [
        require_binary("redis-server", "redis-server"),
        "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--daemonize", "no",
        "--requirepass", REDIS_PASSWORD,
        "--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all",
    ]  # fmt: skip
    server = Server("redis-auth", port, argv, workdir, None)
    server.start()
    try:
        yield port
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pg_login(devstack: DevStack) -> Iterator[str]:
    """A login role whose password is PG_PASSWORD (created from its verifier)."""
    verifier = roles.scram_sha256_verifier(PG_PASSWORD)
    devstack.psql(f"CREATE ROLE {LOGIN} LOGIN PASSWORD '{verifier}'")
    try:
        yield LOGIN
    finally:
        devstack.psql(f"DROP ROLE IF EXISTS {LOGIN}")


def test_passwords_are_read_from_the_environment_or_password_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, devstack: DevStack, pg_login: str,
    auth_redis: int,
) -> None:  # fmt: skip
    pg_file = tmp_path / "pg_password"
    pg_file.write_text(PG_PASSWORD + "\n", encoding="utf-8")
    redis_file = tmp_path / "redis_password"
    redis_file.write_text(ACL_PASSWORD + "\r\n", encoding="utf-8")
    for key in list(os.environ):
        if key.startswith(("POSTGRES_", "REDIS_", "ALPHA_")):
            monkeypatch.delenv(key)
    for key, value in {
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": str(devstack.postgres.port),
        "POSTGRES_DB": "postgres",
        "POSTGRES_USER": pg_login,
        "POSTGRES_PASSWORD_FILE": str(pg_file),
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(auth_redis),
        "REDIS_USERNAME": ACL_USER,
        "REDIS_PASSWORD_FILE": str(redis_file),
    }.items():
        monkeypatch.setenv(key, value)

    settings = Settings()
    engine = make_engine(settings)
    assert check_connection(engine).startswith("15.")  # the file's password logs in
    engine.dispose()
    client = make_redis(settings)
    assert client.ping() and client.acl_whoami() == ACL_USER
    client.close()
    assert not leaks(repr(settings) + str(settings) + str(settings.sqlalchemy_url))

    # The variable itself wins over its file (the Docker-secrets convention).
    monkeypatch.setenv("REDIS_PASSWORD", REDIS_PASSWORD)
    monkeypatch.delenv("REDIS_USERNAME")
    client = make_redis(Settings())
    assert client.ping() and client.acl_whoami() == "default"
    client.close()


def test_redis_auth_with_a_password_and_with_an_acl_user(auth_redis: int, tmp_path: Path) -> None:
    base: dict[str, Any] = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": auth_redis, "REDIS_DB": 2}
    acl = Settings(**base, REDIS_USERNAME=ACL_USER, REDIS_PASSWORD=ACL_PASSWORD)
    password_only = Settings(**base, REDIS_PASSWORD=REDIS_PASSWORD)
    as_url = Settings(ALPHA_REDIS_URL=acl.redis_connection_url())
    for settings, user in ((acl, ACL_USER), (password_only, "default"), (as_url, ACL_USER)):
        client = make_redis(settings)
        assert client.acl_whoami() == user
        client.set(f"k:{TAG}", "v")
        assert client.get(f"k:{TAG}") == "v"
        client.close()

    with AlphaDBClient(
        "momentum_001",
        2,
        settings=Settings(
            **base,
            REDIS_USERNAME=ACL_USER,
            REDIS_PASSWORD=ACL_PASSWORD,
            ALPHA_DATABASE_URL=f"postgresql://u@127.0.0.1:{free_port()}/x",
            ALPHA_SPOOL_DIR=str(tmp_path / "spool"),
        ),
    ) as c:
        c.update_position_redis("BTCUSDT", 0.5, "Buy", 100.0)
        got = c.get_position_redis("BTCUSDT")
        assert got is not None and (got["size"], got["side"]) == (0.5, "Buy")

    for wrong in (
        Settings(**base, REDIS_USERNAME=ACL_USER, REDIS_PASSWORD=REDIS_PASSWORD),
        Settings(**base, REDIS_PASSWORD=ACL_PASSWORD),
        Settings(**base),
    ):
        with pytest.raises(redis.AuthenticationError) as refused:
            make_redis(wrong).ping()
        assert not leaks(str(refused.value) + repr(refused.value))


def _collect(errors: list[str], call: Callable[[], Any]) -> Any:
    """Run ``call``; keep the text and traceback of any exception it raises."""
    try:
        return call()
    except Exception as exc:
        errors.append(f"{exc!s}\n{exc!r}\n{''.join(traceback.format_exception(exc))}")
        return None


def _library_failures(settings: Settings, errors: list[str]) -> None:
    """Every library entry point that connects, against ``settings``' failing endpoints."""
    engine = make_engine(settings)
    url = settings.sqlalchemy_url.render_as_string(hide_password=False)
    _collect(errors, lambda: check_connection(engine))
    _collect(errors, lambda: migrations.upgrade(url))
    wp = WritePath(engine, settings=settings)
    assert _collect(errors, lambda: wp.record_fill(fill()).outcome) is Outcome.SPOOLED
    wp.close()
    engine.dispose()
    cache = PositionCache(make_redis(settings))
    snap = PositionSnapshot(
        bot_id="shortseller_001", symbol="BTCUSDT", side="Buy", size=Decimal("1"),
        avg_entry_price=None, unrealized_pnl=None, version=1, updated_at=datetime.now(UTC),
    )  # fmt: skip
    _collect(errors, lambda: cache.apply(snap))
    _collect(errors, lambda: make_redis(settings).ping())
    with AlphaDBClient("shortseller_001", 1, settings=settings) as c:
        c.get_recent_fills()
        c.get_daily_pnl()
        c.update_heartbeat()
        c.update_position_redis("BTCUSDT", 1.0, "Buy")
        c.get_position_redis("BTCUSDT")
        entry, exit_ = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)
        _collect(
            errors,
            lambda: c.record_completed_trade(
                "BTCUSDT", "Buy", 1.0, 1.0, entry, "e", "Sell", 2.0, 1.0, exit_, "x"
            ),
        )


def test_no_password_in_any_log_line_or_error_of_connection_failures(
    devstack: DevStack, db: Database, pg_login: str, auth_redis: int, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    closed_pg, closed_redis = free_port(), free_port()
    pw_file = tmp_path / "pg_password"
    pw_file.write_text(PG_PASSWORD + "\n", encoding="utf-8")
    new_pw_file = tmp_path / "new_password"
    new_pw_file.write_text(NEW_ROLE_PASSWORD + "\n", encoding="utf-8")
    errors: list[str] = []
    outputs: list[str] = []

    down = {
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": str(closed_pg),
        "POSTGRES_USER": pg_login,
        "POSTGRES_PASSWORD": PG_PASSWORD,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(closed_redis),
        "REDIS_PASSWORD": REDIS_PASSWORD,
        "ALPHA_CONNECT_TIMEOUT": "1",
        "ALPHA_SPOOL_DIR": str(tmp_path / "spool"),
    }
    wrong_password = {
        **down,
        "ALPHA_DATABASE_URL": (
            f"postgresql://{pg_login}:{quote(PG_WRONG, safe='')}@127.0.0.1:"
            f"{devstack.postgres.port}/postgres"
        ),
        "REDIS_PORT": str(auth_redis),
        "REDIS_USERNAME": ACL_USER,
        "REDIS_PASSWORD": REDIS_PASSWORD,  # right server, wrong password for the ACL user
    }
    bouncer_wrong = {
        **wrong_password,
        "ALPHA_DATABASE_URL": wrong_password["ALPHA_DATABASE_URL"].replace(
            f":{devstack.postgres.port}/", f":{devstack.pgbouncer.port}/"
        ),
    }
    caplog.set_level(logging.DEBUG)
    for env in (down, wrong_password, bouncer_wrong):
        _library_failures(Settings(**env), errors)  # type: ignore[arg-type]

        # Every alpha-db command that connects, in-process, also with tracebacks.
        for key in list(os.environ):
            if key.startswith(("POSTGRES_", "REDIS_", "ALPHA_")):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        for argv in (
            ["migrate"],
            ["--debug", "migrations"],
            ["cache-status"],
            ["--debug", "cache-rebuild"],
            ["spool-flush"],
            ["fills-duplicates"],
            ["roles-sync"],
            ["--debug", "roles-list"],
            ["role-password", "someone", "--password-file", str(new_pw_file)],
        ):
            rc = cli_main(argv)
            assert rc != 0, argv
        captured = capfd.readouterr()
        outputs += [captured.out, captured.err]

    # And as a user runs it: a separate process, the password in a file or in the URL.
    for env in (
        {**down, "POSTGRES_PASSWORD_FILE": str(pw_file), "POSTGRES_PASSWORD": ""},
        wrong_password,
    ):
        for argv in (["--debug", "migrate"], ["cache-status"], ["role-password", "someone",
                     "--password-stdin"]):  # fmt: skip
            run = subprocess.run(
                [str(ROOT / ".venv" / "bin" / "alpha-db"), *argv],
                env=clean_env(**{k: v for k, v in env.items() if v}),
                input=NEW_ROLE_PASSWORD + "\n",
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode != 0
            outputs += [run.stdout, run.stderr]

    log_lines = [
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        + ("".join(traceback.format_exception(*r.exc_info)) if r.exc_info else "")
        for r in caplog.records
    ]
    corpus = "\n".join([*errors, *outputs, *log_lines])
    server_logs = "".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in (devstack.root / "postgres.log", devstack.root / "pgbouncer" / "pgbouncer.log")
        if p.exists()
    )
    # The failure paths really ran (otherwise a clean corpus would prove nothing)...
    for expected in (
        "PostgreSQL unavailable",
        "password authentication failed",
        "invalid username-password pair",
        "Connection refused",
        "spooling",
        "alpha-db: error:",
        "Traceback",
    ):
        assert expected in corpus, expected
    assert len(log_lines) > 20 and len(errors) >= 9
    # ...and no password, in any encoding, is in any of it (the detector does detect).
    assert leaks(f"x{quote_plus(PG_WRONG)}y") == [quote_plus(PG_WRONG)]
    assert leaks(corpus) == []
    assert leaks(server_logs) == []


def test_setting_a_role_password_sends_only_its_verifier_to_the_server(
    devstack: DevStack, db: Database, tmp_path: Path
) -> None:
    """Even with every statement logged, the server never sees the password itself."""
    login = f"rot_{TAG}"
    first, second = f"first-{TAG}-password", f"second-{TAG}-password"
    admin = create_engine(devstack.url(db.name, admin=True))
    log_file = devstack.root / "postgres.log"
    mark = log_file.stat().st_size
    try:
        with admin.begin() as conn:
            conn.execute(text("SET LOCAL log_statement = 'all'"))
            roles.sync_roles(conn)
            v1, created = roles.set_login_password(
                conn, login, first, group="alpha_bot_momentum_001"
            )
            v2, again = roles.set_login_password(conn, login, second)
        assert (created, again) == (True, False)

        def logs_in(password: str) -> bool:
            engine = create_engine(
                f"postgresql+psycopg2://{login}:{quote(password, safe='')}@127.0.0.1:"
                f"{devstack.postgres.port}/{db.name}"
            )
            try:
                with engine.connect() as conn:
                    return conn.execute(text("SELECT current_user")).scalar() == login
            except Exception:
                return False
            finally:
                engine.dispose()

        assert logs_in(second) and not logs_in(first)
        with log_file.open(encoding="utf-8", errors="replace") as fh:
            fh.seek(mark)
            logged = fh.read()
        assert v1.split("$")[2] in logged and v2.split("$")[2] in logged  # statements logged
        assert first not in logged and second not in logged

        # The CLI, as an operator rotates: password on stdin, PgBouncer's file updated.
        userlist = tmp_path / "userlist.txt"
        userlist.write_text(f'"other" "x"\n"{login}" "old"\n', encoding="utf-8")
        third = f"third-{TAG}-password"
        env = clean_env(ALPHA_DATABASE_URL=devstack.url(db.name, admin=True))
        run = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "alpha-db"), "role-password", login,
             "--password-stdin", "--pgbouncer-userlist", str(userlist)],
            env=env, input=third + "\n", capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        lines = userlist.read_text(encoding="utf-8").splitlines()
        verifier = lines[1].split('"')[3]
        assert third not in run.stdout + run.stderr
        assert verifier.split("$")[2] not in run.stdout + run.stderr
        assert lines[0] == '"other" "x"' and lines[1].startswith(f'"{login}" "SCRAM-SHA-256$')
        assert len(lines) == 2 and oct(userlist.stat().st_mode & 0o777) == "0o600"
        assert logs_in(third)
    finally:
        admin.dispose()
        devstack.psql(f"DROP ROLE IF EXISTS {login}")


def test_a_missing_password_file_is_one_clear_line_without_content(tmp_path: Path) -> None:
    env = clean_env(POSTGRES_PASSWORD_FILE=str(tmp_path / "absent"))
    run = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "alpha-db"), "migrations"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == ConfigurationError.exit_code
    assert run.stderr.startswith("alpha-db: error: POSTGRES_PASSWORD_FILE: cannot read")
    assert len(run.stderr.strip().splitlines()) == 1  # one clear line, no traceback
    secret = tmp_path / "not_utf8"
    secret.write_bytes(b"\xff\xfe" + PG_PASSWORD.encode())
    with pytest.raises(ConfigurationError, match="not UTF-8") as bad:
        roles.read_password(secret)
    assert not leaks(str(bad.value))
