"""One execution, one row: a bot's own report of a fill and the exchange's execution of the
same order (same bot, same ``client_order_id``) are never both counted (migration 0019)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text

from alpha_models.writepath import Outcome
from tests.builders import fill
from tests.conftest import Writer

BOT = "momentum_001"
LINK = "momentum_001:entry:mh2x0a1b"


def self_report(qty: str = "1", **extra: Any) -> Any:
    """What Momentum's adapter records: its own id, a synthetic order id, no fee."""
    n = extra.pop("n", 1)
    return fill(
        "Buy",
        qty,
        "100",
        bot_id=BOT,
        symbol="SOLUSDT",
        exec_id=extra.pop("exec_id", f"momentum_001:SOLUSDT_{n}:entry"),
        order_id=f"synthetic:momentum_001:SOLUSDT_{n}:entry",
        client_order_id=extra.pop("link", LINK),
        **extra,
    )


def execution(qty: str, exec_id: str, **extra: Any) -> Any:
    """What the listener records: the exchange's ids, price and fee, attributed by the link."""
    return fill(
        "Buy",
        qty,
        "100.2",
        bot_id=BOT,
        symbol="SOLUSDT",
        exec_id=exec_id,
        order_id="1f0c-order",
        client_order_id=extra.pop("link", LINK),
        fee="0.02",
        source="listener",
        **extra,
    )


def rows(w: Writer, sql: str) -> list[tuple[Any, ...]]:
    with w.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def fills(w: Writer) -> list[tuple[Any, ...]]:
    return rows(w, "SELECT exec_id, exec_qty FROM trading.fills ORDER BY id")


def position(w: Writer) -> tuple[Any, ...]:
    return rows(w, "SELECT side, size FROM trading.positions WHERE symbol = 'SOLUSDT'")[0]


def test_the_exchange_execution_supersedes_the_bots_own_report(writer: Writer) -> None:
    assert writer.path.record_fill(self_report(at=1)).outcome is Outcome.NEW
    before = rows(writer, "SELECT * FROM trading.fills")
    result = writer.path.record_fill(execution("1", "ex-1", at=2))
    assert result.outcome is Outcome.NEW
    assert fills(writer) == [("ex-1", Decimal("1"))]
    assert position(writer) == ("Buy", Decimal("1"))  # once, not twice
    assert result.position is not None and result.position.size == Decimal("1")
    assert rows(writer, "SELECT count(*) FROM trading.position_entries") == [(1,)]
    # Nothing is lost: the report is kept whole, with the reason.
    columns = (
        "id, bot_id, symbol, order_id, client_order_id, side, exec_price, exec_qty, exec_time, "
        "close_reason, commission, created_at, exec_id, exec_type, source"
    )
    kept = rows(writer, f"SELECT {columns} FROM audit.quarantined_fills")
    assert kept == before
    (reason,) = rows(writer, "SELECT reason FROM audit.quarantined_fills")[0]
    assert "ex-1" in reason


def test_the_bots_report_after_the_exchange_execution_is_a_duplicate(writer: Writer) -> None:
    writer.path.record_fill(execution("1", "ex-2", at=1))
    assert writer.path.record_fill(self_report(at=2)).outcome is Outcome.DUPLICATE
    assert fills(writer) == [("ex-2", Decimal("1"))]
    assert position(writer) == ("Buy", Decimal("1"))


def test_partial_executions_replace_one_report(writer: Writer) -> None:
    writer.path.record_fill(self_report("1", at=1))
    writer.path.record_fill(execution("0.4", "ex-3a", at=2))
    writer.path.record_fill(execution("0.6", "ex-3b", at=3))
    assert fills(writer) == [("ex-3a", Decimal("0.4")), ("ex-3b", Decimal("0.6"))]
    assert position(writer) == ("Buy", Decimal("1"))


def test_other_orders_and_reports_without_a_link_are_left_alone(writer: Writer) -> None:
    writer.path.record_fill(self_report(at=1, n=1, link="momentum_001:entry:other"))
    writer.path.record_fill(self_report(at=2, n=2, link=""))
    writer.path.record_fill(execution("1", "ex-4", at=3))
    writer.path.record_fill(execution("1", "ex-5", at=4, link=""))
    assert len(fills(writer)) == 4
    assert position(writer) == ("Buy", Decimal("4"))
    assert rows(writer, "SELECT count(*) FROM audit.quarantined_fills") == [(0,)]


def test_adopted_history_is_never_folded(writer: Writer) -> None:
    # A production row from before the write path: content key, no source.
    writer.path.record_fill(self_report(at=1, exec_id="legacy:0123", source="import"))
    with writer.engine.begin() as conn:
        conn.execute(text("UPDATE trading.fills SET source = NULL"))
    writer.path.record_fill(execution("1", "ex-6", at=2))
    assert [e for e, _ in fills(writer)] == ["legacy:0123", "ex-6"]
