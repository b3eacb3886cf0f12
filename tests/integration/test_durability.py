"""No data loss: concurrent writers, PostgreSQL killed mid-stream, PgBouncer restarted."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from alpha_models.devstack import DevStack
from alpha_models.inputs import FillInput
from alpha_models.pnl import PnlFill, rebuild
from alpha_models.writepath import Outcome
from tests.builders import T0
from tests.conftest import Database, Writer, make_writer

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]


def stream(
    n: int, *, tag: str, start: int = 0, symbols: list[str] = SYMBOLS, offset_ms: int = 0
) -> list[FillInput]:
    """A deterministic fill stream; sides alternate in runs so that positions open, scale,
    reduce and flip."""
    out = []
    for i in range(start, start + n):
        side = "Sell" if (i // 3) % 2 == 0 else "Buy"
        out.append(
            FillInput(
                exec_id=f"{tag}-{i:06d}",
                bot_id="shortseller_001",
                symbol=symbols[i % len(symbols)],
                side=side,
                exec_price=str(100 + (i % 17)),
                exec_qty=str(Decimal(1 + i % 5) / 100),
                exec_time=T0 + timedelta(milliseconds=10 * i + offset_ms),
                order_id=f"o-{tag}-{i}",
                commission="0.01",
                source="adapter",
            )
        )
    return out


def assert_consistent(w: Writer, expected_fills: int) -> None:
    """Every fill once, and lots/positions equal to a FIFO replay of the stored fills."""
    with w.engine.connect() as conn:
        n, distinct = conn.execute(
            text("SELECT count(*), count(DISTINCT exec_id) FROM trading.fills")
        ).one()
        assert (n, distinct) == (expected_fills, expected_fills)
        rows = conn.execute(
            text(
                "SELECT id, exec_id, bot_id, symbol, side, exec_price, exec_qty, commission, "
                "exec_time FROM trading.fills"
            )
        ).all()
        positions = {
            (r.bot_id, r.symbol): (r.side, r.size)
            for r in conn.execute(text("SELECT bot_id, symbol, side, size FROM trading.positions"))
        }
        open_lots = conn.execute(
            text(
                "SELECT bot_id, symbol, side, remaining_qty FROM trading.position_entries "
                "WHERE remaining_qty > 0 ORDER BY bot_id, symbol, entry_time, id"
            )
        ).all()
    book = rebuild(
        PnlFill(
            fill_id=r.id,
            exec_id=r.exec_id,
            bot_id=r.bot_id,
            symbol=r.symbol,
            side=r.side,
            price=r.exec_price,
            qty=r.exec_qty,
            fee=r.commission,
            exec_time=r.exec_time,
        )
        for r in rows
    )
    for pos in book.positions:
        assert positions[(pos.bot_id, pos.symbol)] == (pos.side, pos.size), pos
    engine_lots = [
        (lot.bot_id, lot.symbol, lot.side, lot.remaining_qty)
        for lot in sorted(book.open_lots, key=lambda x: (x.bot_id, x.symbol))
    ]
    assert [tuple(r) for r in open_lots] == engine_lots


def _worker(url: str, redis_url: str, spool: str, fills: list[FillInput], barrier: object) -> None:
    db = Database.from_url(url)
    w = make_writer(db, Path(spool), redis_url)
    barrier.wait()  # type: ignore[attr-defined]
    for f in fills:
        w.path.record_fill(f)
    w.engine.dispose()


def test_four_processes_writing_overlapping_fills(writer: Writer, tmp_path: Path) -> None:
    """Four writers (say the listener, an adapter, reconciliation and an import) deliver the
    same 1,000 executions at the same time, each also 1,000 of its own."""
    shared = stream(1000, tag="shared", symbols=["BTCUSDT", "ETHUSDT"])
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = []
    for k, own_symbol in enumerate(["SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"]):
        own = stream(1000, tag=f"own{k}", symbols=[own_symbol], offset_ms=k + 1)
        mine = sorted(shared + own, key=lambda f: (f.exec_time, f.exec_id))
        procs.append(
            ctx.Process(
                target=_worker,
                args=(
                    writer.db.url,
                    writer.db.stack.redis_url(),
                    str(tmp_path / f"s{k}"),
                    mine,
                    barrier,
                ),
            )
        )
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
        assert p.exitcode == 0
    assert_consistent(writer, 1000 + 4 * 1000)


class Feeder:
    """Records a stream from a thread while the test breaks servers underneath it."""

    def __init__(self, w: Writer, fills: list[FillInput]) -> None:
        self.w, self.fills = w, fills
        self.done = 0
        self.outcomes: dict[Outcome, int] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for f in self.fills:
            result = self.w.path.record_fill(f)
            self.outcomes[result.outcome] = self.outcomes.get(result.outcome, 0) + 1
            self.done += 1

    def wait_until(self, n: int) -> None:
        deadline = time.monotonic() + 120
        while self.done < n:
            assert time.monotonic() < deadline, "feeder stalled"
            time.sleep(0.01)


@pytest.fixture
def spooling_writer(db: Database, tmp_path: Path, redis_client: object) -> Iterator[Writer]:
    w = make_writer(db, tmp_path / "spool", db.stack.redis_url(), via_pgbouncer=False)
    yield w
    w.engine.dispose()


def test_postgres_killed_mid_stream_loses_nothing(
    spooling_writer: Writer, devstack: DevStack
) -> None:
    fills = stream(5000, tag="kill")
    feeder = Feeder(spooling_writer, fills)
    feeder.thread.start()
    feeder.wait_until(1500)
    devstack.postgres.kill()  # kill -9, mid-stream
    time.sleep(1.0)
    devstack.restart_postgres()
    feeder.thread.join(timeout=300)
    assert feeder.done == 5000
    assert feeder.outcomes.get(Outcome.SPOOLED, 0) > 0  # the outage was really hit
    spooling_writer.path.flush()
    assert len(spooling_writer.path.spool) == 0
    assert_consistent(spooling_writer, 5000)


def test_pgbouncer_restarted_mid_stream_loses_nothing(
    db: Database, tmp_path: Path, devstack: DevStack, redis_client: object
) -> None:
    w = make_writer(db, tmp_path / "spool", devstack.redis_url(), via_pgbouncer=True)
    fills = stream(5000, tag="bounce")
    feeder = Feeder(w, fills)
    feeder.thread.start()
    feeder.wait_until(1500)
    devstack.pgbouncer.kill()
    time.sleep(1.0)
    devstack.pgbouncer.start()
    feeder.thread.join(timeout=300)
    assert feeder.done == 5000
    w.path.flush()
    assert len(w.path.spool) == 0
    assert_consistent(w, 5000)
    w.engine.dispose()


def test_restart_replays_the_spool_at_next_start(
    db: Database, tmp_path: Path, devstack: DevStack, redis_client: object
) -> None:
    fills = stream(50, tag="restart")
    w = make_writer(db, tmp_path / "spool", devstack.redis_url())
    devstack.postgres.stop()
    try:
        for f in fills:
            assert w.path.record_fill(f).outcome is Outcome.SPOOLED
    finally:
        devstack.restart_postgres()
    w.engine.dispose()
    del w  # the process "restarts": a new write path on the same spool directory
    again = make_writer(db, tmp_path / "spool", devstack.redis_url())
    assert again.path.flush() == 50
    assert_consistent(again, 50)
    again.engine.dispose()
