"""`alpha-db up` / `down`: twice up, down while connected, up after a crash."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from alpha_models.cli import main
from alpha_models.embedded import EmbeddedStack


@pytest.fixture
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="alpha-embedded-"))
    try:
        yield root
    finally:
        EmbeddedStack(root).down()


def up(root: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    assert main(["up", "--state-dir", str(root), "--json"]) == 0
    return dict(json.loads(capsys.readouterr().out))


def connect(env: dict[str, str]) -> psycopg2.extensions.connection:
    return psycopg2.connect(
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        dbname=env["POSTGRES_DB"],
        connect_timeout=5,
    )


def test_up_twice_down_while_connected_and_data_survives(
    stack_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = up(stack_dir, capsys)
    second = up(stack_dir, capsys)  # already running: same servers, same env
    assert first == second
    conn = connect(first)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM trading.bots")
        assert cur.fetchone() == (3,)
    conn.commit()
    with conn.cursor() as cur:
        cur.execute("UPDATE trading.bots SET current_equity = 1234.5 WHERE bot_id = 'lxalgo_001'")
    conn.commit()
    assert main(["down", "--state-dir", str(stack_dir)]) == 0  # a client is still connected
    capsys.readouterr()
    with pytest.raises(psycopg2.Error):
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    again = up(stack_dir, capsys)
    assert again == first  # ports and credentials kept across down/up
    conn = connect(again)
    with conn.cursor() as cur:
        cur.execute("SELECT current_equity FROM trading.bots WHERE bot_id = 'lxalgo_001'")
        assert str(cur.fetchone()[0]) == "1234.50000000"
    conn.close()


def test_up_after_a_crash_with_stale_pid_files(
    stack_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = up(stack_dir, capsys)
    state = json.loads((stack_dir / "stack.json").read_text())
    for pid in (state["pg_pid"], state["redis_pid"]):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    # postmaster.pid and stack.json now name dead processes
    assert (stack_dir / "pgdata" / "postmaster.pid").exists()
    assert main(["stack-env", "--state-dir", str(stack_dir)]) == 1  # not running
    capsys.readouterr()
    after = up(stack_dir, capsys)
    assert after["POSTGRES_PORT"] == env["POSTGRES_PORT"]
    conn = connect(after)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM trading.bots")
        assert cur.fetchone() == (3,)
    conn.close()
