"""Bulk ingestion gives exactly what recording the same fills one by one gives."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import text

from alpha_models.bulk import BulkResult
from alpha_models.errors import ValidationError
from alpha_models.inputs import FillInput
from alpha_models.writepath import RECORD_FILL_SQL
from tests.builders import T0, fill
from tests.conftest import Database, Writer, make_writer
from tests.integration.test_durability import assert_consistent, stream
from tests.integration.test_self_reports import BOT, LINK, execution, self_report


def _state(w: Writer) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with w.engine.connect() as conn:
        lots = conn.execute(
            text(
                "SELECT bot_id, symbol, entry_id, side, entry_price, original_qty, remaining_qty, "
                "entry_commission, status FROM trading.position_entries ORDER BY entry_id"
            )
        ).all()
        positions = conn.execute(
            text(
                "SELECT bot_id, symbol, side, size, avg_entry_price, last_exec_time "
                "FROM trading.positions ORDER BY bot_id, symbol"
            )
        ).all()
    return [tuple(r) for r in lots], [tuple(r) for r in positions]


@pytest.fixture
def other(db: Database, tmp_path: Path) -> Iterator[Writer]:
    """A second write path on its own copy of the template, to compare with ``writer``."""
    name = f"{db.name}_b"
    db.stack.create_database(name, template="alpha_template")
    w = make_writer(Database(name, db.stack), tmp_path / "b", db.stack.redis_url())
    try:
        yield w
    finally:
        w.engine.dispose()
        db.stack.drop_database(name)


def _one_by_one(w: Writer, fills: list[FillInput]) -> None:
    for f in fills:
        w.path.record_fill(f)


def _count(w: Writer, table: str) -> int:
    with w.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM trading.{table}")).scalar_one())


def test_bulk_equals_one_by_one(writer: Writer, other: Writer) -> None:
    fills = stream(600, tag="bulk")
    _one_by_one(writer, fills)
    first, second = fills[:250], fills[200:]  # overlapping batches
    result = other.path.ingest_bulk(first)
    assert (result.new, result.staged) == (250, False)
    result = other.path.ingest_bulk(second)
    assert (result.new, result.duplicate, result.staged) == (350, 50, True)
    assert _state(other) == _state(writer)
    assert_consistent(other, 600)
    assert other.path.ingest_bulk(fills).new == 0  # idempotent


def test_new_fills_of_stored_pairs_go_direct(writer: Writer, other: Writer) -> None:
    """A batch of new executions for pairs that hold fills already: COPY straight in, then
    each pair rebuilt from all its stored fills."""
    fills = stream(600, tag="next")
    _one_by_one(writer, fills)
    assert other.path.ingest_bulk(fills[:300]).staged is False
    result = other.path.ingest_bulk(fills[300:])
    assert (result.new, result.staged) == (300, False)
    assert _state(other) == _state(writer)
    assert_consistent(other, 600)


def test_out_of_order_batch(writer: Writer, other: Writer) -> None:
    fills = stream(400, tag="shuf")
    random.Random(3).shuffle(fills)
    _one_by_one(writer, fills)
    assert other.path.ingest_bulk(fills).new == 400
    assert _state(other) == _state(writer)
    assert_consistent(other, 400)


def test_execution_stored_late_in_batch_falls_back(writer: Writer, other: Writer) -> None:
    """The first chunk is new, a later execution is stored: the direct COPY hits the unique
    key, the transaction restarts staged and gives the one-by-one result."""
    fills = stream(2500, tag="late")
    _one_by_one(writer, fills)
    other.path.record_fill(fills[2400])
    result = other.path.ingest_bulk(fills)
    assert (result.new, result.duplicate, result.staged) == (2499, 1, True)
    assert _state(other) == _state(writer)
    assert_consistent(other, 2500)


def test_concurrent_writer_of_an_execution(writer: Writer, other: Writer) -> None:
    """Another connection records one of the batch's executions after the check: the COPY
    waits for it, fails when it commits, and the batch is stored the staged way."""
    fills = stream(600, tag="race")
    _one_by_one(writer, fills)
    contested = fills[300]
    dsn = other.db.url.replace("postgresql+psycopg2", "postgresql")
    rival = psycopg2.connect(dsn)
    try:
        with rival.cursor() as cur:  # a transaction left open: the row is not visible yet
            cur.execute(
                RECORD_FILL_SQL,
                {
                    "exec_id": contested.exec_id,
                    "bot_id": contested.bot_id,
                    "symbol": contested.symbol,
                    "order_id": contested.order_id,
                    "client_order_id": contested.client_order_id,
                    "side": str(contested.side),
                    "exec_price": contested.exec_price,
                    "exec_qty": contested.exec_qty,
                    "exec_time": contested.exec_time,
                    "close_reason": contested.close_reason,
                    "commission": contested.commission,
                    "exec_type": str(contested.exec_type),
                    "source": contested.source,
                },
            )
        results: list[BulkResult | BaseException] = []

        def ingest() -> None:
            try:
                results.append(other.path.ingest_bulk(fills))
            except BaseException as exc:  # reported by the assertion below
                results.append(exc)

        worker = threading.Thread(target=ingest)
        worker.start()
        watcher = psycopg2.connect(dsn)
        watcher.autocommit = True  # each query sees pg_stat_activity afresh
        try:  # wait until the bulk COPY waits on the rival's row
            deadline = time.monotonic() + 60
            with watcher.cursor() as watch:
                while True:
                    watch.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database() AND query LIKE 'COPY trading.fills%'"
                    )
                    if watch.fetchone()[0] or not worker.is_alive():
                        break
                    assert time.monotonic() < deadline, "the bulk COPY never waited on the rival"
                    time.sleep(0.02)
        finally:
            watcher.close()
        rival.commit()
        worker.join(60)
    finally:
        rival.close()
    assert len(results) == 1 and isinstance(results[0], BulkResult), results
    assert (results[0].new, results[0].duplicate, results[0].staged) == (599, 1, True)
    assert _state(other) == _state(writer)
    assert_consistent(other, 600)


def test_rejected_fill_mid_batch_stores_nothing(other: Writer) -> None:
    """The batch is consumed while it is sent: a fill rejected after thousands of others
    raises its own typed error and leaves every table as it was."""
    good = stream(2500, tag="rej")

    def batch() -> Iterator[FillInput]:
        yield from good
        values = {k: getattr(good[0], k) for k in ("symbol", "side", "order_id", "source")}
        yield FillInput(
            exec_id="rej-bad",
            bot_id="not_a_bot",
            exec_price="1",
            exec_qty="1",
            exec_time=good[-1].exec_time,
            commission="0",
            **values,
        )

    with pytest.raises(ValidationError) as info:
        other.path.ingest_bulk(batch())
    assert info.value.field == "bot_id"
    assert [_count(other, t) for t in ("fills", "position_entries", "positions")] == [0, 0, 0]


# One execution, one row (step 3 of alpha_models.bulk): as record_fill, whichever came first.


def _quarantined(w: Writer) -> list[tuple[object, ...]]:
    with w.engine.connect() as conn:
        rows = conn.execute(text("SELECT exec_id, reason FROM audit.quarantined_fills ORDER BY id"))
        return [tuple(r) for r in rows]


def _fills(w: Writer) -> list[tuple[object, ...]]:
    with w.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT exec_id, bot_id, client_order_id, close_reason, source, exec_qty "
                "FROM trading.fills ORDER BY exec_id"
            )
        )
        return [tuple(r) for r in rows]


def test_a_batch_folds_its_own_self_report(writer: Writer, other: Writer) -> None:
    batch = [
        self_report(at=1),
        self_report(at=2, n=2, link="momentum_001:entry:other"),
        execution("1", "ex-b1", at=3),
    ]
    _one_by_one(writer, batch)
    result = other.path.ingest_bulk(batch)
    assert (result.new, result.folded) == (3, 1)
    assert _fills(other) == _fills(writer)
    assert [row[0] for row in _fills(other)] == ["ex-b1", "momentum_001:SOLUSDT_2:entry"]
    assert _state(other) == _state(writer)  # size 2: the report and its execution count once
    assert _quarantined(other) == _quarantined(writer)


def test_a_batch_execution_supersedes_a_stored_self_report(other: Writer) -> None:
    other.path.record_fill(self_report(at=1))
    result = other.path.ingest_bulk(
        [execution("0.4", "ex-b2", at=2), execution("0.6", "ex-b3", at=3)]
    )
    assert (result.new, result.folded, result.staged) == (2, 1, False)
    assert [(e, q) for e, *_, q in _fills(other)] == [
        ("ex-b2", Decimal("0.4")),
        ("ex-b3", Decimal("0.6")),
    ]
    assert _state(other)[1] == [
        (
            "momentum_001",
            "SOLUSDT",
            "Buy",
            Decimal("1"),
            Decimal("100.2"),
            T0 + timedelta(seconds=3),
        )
    ]
    assert [e for e, _ in _quarantined(other)] == ["momentum_001:SOLUSDT_1:entry"]


def test_a_batch_self_report_of_a_stored_execution_is_not_counted(
    writer: Writer, other: Writer
) -> None:
    for w in (writer, other):
        w.path.record_fill(execution("1", "ex-b4", at=1))
    writer.path.record_fill(self_report(at=2))  # a duplicate: not stored
    result = other.path.ingest_bulk([self_report(at=2)])  # stored, then moved at once
    assert (result.new, result.folded) == (1, 1)
    assert _fills(other) == _fills(writer)
    assert _state(other) == _state(writer)
    assert "ex-b4" in str(_quarantined(other)[0][1])


def test_staged_reattribution_matches_record_fill(writer: Writer, other: Writer) -> None:
    """An 'unknown' copy (no link) re-attributed by a batch gets the link and reason too."""
    unknown = fill(
        "Buy",
        "1",
        "100",
        bot_id="unknown",
        symbol="SOLUSDT",
        exec_id="ex-b5",
        source="listener",
        at=1,
    )
    attributed = fill(
        "Buy",
        "1",
        "100",
        bot_id=BOT,
        symbol="SOLUSDT",
        exec_id="ex-b5",
        source="listener",
        client_order_id=LINK,
        close_reason="",
        at=1,
    )
    for w in (writer, other):
        w.path.record_fill(unknown)
    writer.path.record_fill(attributed)
    assert other.path.ingest_bulk([attributed]).staged is True
    assert _fills(other) == _fills(writer)
    assert _fills(other)[0][:3] == ("ex-b5", BOT, LINK)
    assert _state(other) == _state(writer)
