"""`alpha-db ingest` on captured private-stream messages built from a real trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from alpha_models.cli import main
from tests import stack as tb
from tests.conftest import Writer

TRACE = tb.FIXTURES / "shortseller" / "shortseller_events.jsonl"


def captured_messages(path: Path) -> Path:
    """The trace's exchange events as the listener receives them: one message per line."""
    lines = []
    for raw in TRACE.read_text().splitlines():
        event = json.loads(raw)
        if event["kind"] == "fill":
            lines.append(json.dumps({"topic": "execution", "data": [event["data"]]}))
        elif event["kind"] == "order_update":
            lines.append(json.dumps({"topic": "order", "data": [event["data"]]}))
    lines.append('{"topic": "execution", "data": [{"execId": ')  # a truncated capture line
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def cli_env(writer: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Writer:
    monkeypatch.setenv("ALPHA_DATABASE_URL", writer.db.url)
    monkeypatch.setenv("ALPHA_REDIS_URL", writer.db.stack.redis_url())
    monkeypatch.setenv("ALPHA_SPOOL_DIR", str(tmp_path / "cli-spool"))
    return writer


def test_ingest_stores_each_execution_once_and_reports_bad_lines(
    cli_env: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = captured_messages(tmp_path / "captured.jsonl")
    assert main(["ingest", str(messages), "--json"]) == 1  # the truncated line is reported
    first = json.loads(capsys.readouterr().out)
    assert first["outcomes"]["fill:new"] + first["outcomes"].get("fill:reattributed", 0) == 153
    assert first["outcomes"]["funding:new"] == 31
    assert [r["line"] for r in first["rejected"]] == [first["lines"]]

    assert main(["ingest", str(messages), "--json"]) == 1
    second = json.loads(capsys.readouterr().out)
    assert "fill:new" not in second["outcomes"]  # nothing stored twice
    with cli_env.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM trading.fills")).scalar() == 153
        assert conn.execute(text("SELECT count(*) FROM trading.funding_settlements")).scalar() == 31
        status = conn.execute(text("SELECT status FROM trading.orders")).scalar()
    assert status == "PartiallyFilledCanceled"


def test_cli_error_is_one_line_without_password(
    cli_env: Writer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    password = cli_env.db.stack.app_password
    closed = cli_env.db.url.replace(f":{cli_env.db.stack.postgres.port}/", ":1/")
    monkeypatch.setenv("ALPHA_DATABASE_URL", closed)
    code = main(["migrations"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("alpha-db: error: PostgreSQL unavailable") and err.count("\n") == 1
    assert password not in err
