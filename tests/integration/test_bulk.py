"""Bulk ingestion gives exactly what recording the same fills one by one gives."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from tests.conftest import Database, Writer, make_writer
from tests.integration.test_durability import assert_consistent, stream


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


def test_bulk_equals_one_by_one(writer: Writer, db: Database, tmp_path: Path) -> None:
    fills = stream(600, tag="bulk")
    for f in fills:
        writer.path.record_fill(f)

    other_name = f"{db.name}_b"
    db.stack.create_database(other_name, template="alpha_template")
    other = make_writer(Database(other_name, db.stack), tmp_path / "b", db.stack.redis_url())
    try:
        first, second = fills[:250], fills[200:]  # overlapping batches
        assert other.path.ingest_bulk(first).new == 250
        result = other.path.ingest_bulk(second)
        assert (result.new, result.duplicate) == (350, 50)
        assert _state(other) == _state(writer)
        assert_consistent(other, 600)
        assert other.path.ingest_bulk(fills).new == 0  # idempotent
    finally:
        other.engine.dispose()
        db.stack.drop_database(other_name)
