"""`alpha-db doctor` against the real servers: fine, PostgreSQL down, behind, Redis down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from alpha_models.cli import main
from alpha_models.devstack import DevStack, free_port
from tests.conftest import Writer


def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, tuple[str, str]]]:
    code = main(["doctor", "--json"])
    checks = json.loads(capsys.readouterr().out)
    return code, {c["name"]: (c["status"], c["detail"]) for c in checks}


@pytest.fixture
def env(writer: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Writer:
    monkeypatch.setenv("ALPHA_DATABASE_URL", writer.db.bouncer_url)
    monkeypatch.setenv("ALPHA_REDIS_URL", writer.db.stack.redis_url())
    monkeypatch.setenv("ALPHA_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("ALPHA_CONNECT_TIMEOUT", "2")
    writer.path.rebuild_cache()
    return writer


def test_everything_fine(env: Writer, capsys: pytest.CaptureFixture[str]) -> None:
    code, checks = doctor(capsys)
    assert code == 0, checks
    assert checks["postgresql"][0] == "ok" and "15." in checks["postgresql"][1]
    assert checks["pgbouncer"] == ("ok", checks["pgbouncer"][1])
    assert "pool_mode=transaction" in checks["pgbouncer"][1]
    assert checks["migrations"][0] == "ok"
    assert checks["bots"][0] == "ok"
    assert checks["redis"] == ("ok", "reachable, cache valid")
    assert checks["spool"] == ("ok", "empty")


def test_postgres_down(
    env: Writer,
    devstack: DevStack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "ALPHA_DATABASE_URL", env.db.url.replace(f":{devstack.postgres.port}/", f":{free_port()}/")
    )
    code, checks = doctor(capsys)
    assert code == 1
    assert checks["postgresql"][0] == "fail" and "unavailable" in checks["postgresql"][1]
    assert devstack.app_password not in json.dumps(checks)


def test_migrations_behind(env: Writer, capsys: pytest.CaptureFixture[str]) -> None:
    with env.engine.begin() as conn:
        conn.execute(text("UPDATE public.alembic_version SET version_num = '0010'"))
    code, checks = doctor(capsys)
    assert code == 1
    assert checks["migrations"][0] == "fail" and "alpha-db migrate" in checks["migrations"][1]


def test_redis_down(
    env: Writer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPHA_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    code, checks = doctor(capsys)
    assert code == 1
    assert checks["redis"][0] == "fail"
    assert checks["postgresql"][0] == "ok"  # the rest still reported
