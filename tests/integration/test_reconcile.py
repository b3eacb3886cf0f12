"""Reconciliation against real PostgreSQL and Redis, on exchange pages built from a real trace.

The ShortSeller trace's `fill` events carry Bybit execution fields; paginated by 50 they are
the execution-list pages the exchange would return for the bot's account.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from alpha_models.bybit_pages import make_pages
from alpha_models.bybit_stream import parse_execution
from alpha_models.cli import main
from alpha_models.errors import ValidationError
from alpha_models.inputs import FillInput
from alpha_models.keys import content_exec_id
from alpha_models.reconcile import (
    QUARANTINE_TABLES,
    Kind,
    ReconcileReport,
    reconcile,
    restore_quarantined,
)
from tests import stack as tb
from tests.builders import fill
from tests.conftest import Writer

TRACE = tb.FIXTURES / "shortseller" / "shortseller_events.jsonl"
BOT = "shortseller_001"
START = datetime(2025, 9, 27, tzinfo=UTC)  # the trace's window
END = datetime(2025, 10, 11, tzinfo=UTC)
EXTRA_ID = "5b0e8a3c-9d1f-4e27-b6a4-0c3d2e1f9a88"
QUARANTINE_SOURCES = {
    "trading.fills": QUARANTINE_TABLES[False],
    "trading.funding_settlements": QUARANTINE_TABLES[True],
}


def wire_executions() -> list[dict[str, Any]]:
    events = (json.loads(line) for line in TRACE.read_text().splitlines())
    return [e["data"] for e in events if e["kind"] == "fill"]


def exchange_pages() -> list[dict[str, Any]]:
    return make_pages(wire_executions(), page_size=50)


def trades() -> list[FillInput]:
    """The trace's Trade executions, attributed to the bot whose account it is."""
    parsed = (parse_execution(w, source="listener") for w in wire_executions())
    return [dataclasses.replace(f, bot_id=BOT) for f in parsed if f.is_trade]


def load(w: Writer, *, as_listener: bool = False) -> None:
    """Every execution through the write path; funding as the listener stores it (unknown).

    ``as_listener``: trades with no link id stay ``unknown`` too (the listener's view).
    """
    for wire in wire_executions():
        f = parse_execution(wire, source="listener")
        if f.is_trade and not as_listener:
            f = dataclasses.replace(f, bot_id=BOT)
        w.path.record_fill(f)


def run(w: Writer, apply: bool = False, **kw: Any) -> ReconcileReport:
    return reconcile(
        w.engine, w.path, BOT, START, END, kw.pop("pages", exchange_pages()), apply, **kw
    )


def rows(w: Writer, sql: str, **params: Any) -> list[Any]:
    with w.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def book(w: Writer) -> tuple[list[Any], list[Any]]:
    positions = rows(
        w,
        "SELECT symbol, side, size, avg_entry_price FROM trading.positions "
        "WHERE bot_id = :b ORDER BY symbol",
        b=BOT,
    )
    lots = rows(
        w,
        "SELECT symbol, side, entry_id, entry_price, original_qty, remaining_qty, entry_time "
        "FROM trading.position_entries WHERE bot_id = :b ORDER BY symbol, entry_time, entry_id",
        b=BOT,
    )
    return positions, lots


def rebuilt_book(w: Writer) -> tuple[list[Any], list[Any]]:
    """The book rebuilt from the stored fills alone (rolled back afterwards)."""
    with w.engine.connect() as conn:
        for (symbol,) in conn.execute(
            text("SELECT DISTINCT symbol FROM trading.fills WHERE bot_id = :b"), {"b": BOT}
        ):
            conn.execute(text("SELECT trading.rebuild_position(:b, :s)"), {"b": BOT, "s": symbol})
        positions = conn.execute(
            text(
                "SELECT symbol, side, size, avg_entry_price FROM trading.positions "
                "WHERE bot_id = :b ORDER BY symbol"
            ),
            {"b": BOT},
        ).all()
        lots = conn.execute(
            text(
                "SELECT symbol, side, entry_id, entry_price, original_qty, remaining_qty, "
                "entry_time FROM trading.position_entries WHERE bot_id = :b "
                "ORDER BY symbol, entry_time, entry_id"
            ),
            {"b": BOT},
        ).all()
        conn.rollback()
    return list(positions), list(lots)


def delete_fills(w: Writer, exec_ids: list[str]) -> None:
    """Remove fills as an outage would have lost them, and rebuild the positions."""
    with w.engine.begin() as conn:
        symbols = (
            conn.execute(
                text("SELECT DISTINCT symbol FROM trading.fills WHERE exec_id = ANY(:ids)"),
                {"ids": exec_ids},
            )
            .scalars()
            .all()
        )
        conn.execute(
            text("DELETE FROM trading.position_entries WHERE bot_id = :b AND symbol = ANY(:s)"),
            {"b": BOT, "s": list(symbols)},
        )
        conn.execute(text("DELETE FROM trading.fills WHERE exec_id = ANY(:ids)"), {"ids": exec_ids})
        for symbol in symbols:
            conn.execute(text("SELECT trading.rebuild_position(:b, :s)"), {"b": BOT, "s": symbol})


@dataclasses.dataclass
class Tampered:
    deleted: list[str]
    altered: str


def tamper(w: Writer) -> Tampered:
    """3 fills removed, 1 extra fill that is not on the exchange, 1 price altered."""
    by_symbol: dict[str, list[FillInput]] = {}
    for f in trades():
        by_symbol.setdefault(f.symbol, []).append(f)
    deleted = [by_symbol[s][5].exec_id for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")]
    altered = by_symbol["SOLUSDT"][10].exec_id
    delete_fills(w, deleted)
    extra = fill("Sell", "0.001", "112000", symbol="BTCUSDT", exec_id=EXTRA_ID, source="listener",
                 at=datetime(2025, 10, 1, 12, tzinfo=UTC))  # fmt: skip
    assert w.path.record_fill(extra).is_new
    with w.engine.begin() as conn:
        conn.execute(
            text("UPDATE trading.fills SET exec_price = exec_price + 0.01 WHERE exec_id = :x"),
            {"x": altered},
        )
    return Tampered(deleted, altered)


def nonzero(report: ReconcileReport) -> dict[str, int]:
    return {k: n for k, n in report.result.counts().items() if n}


def of_kind(report: ReconcileReport, kind: Kind) -> list[str]:
    return sorted(d.exec_id for d in report.result.discrepancies if d.kind is kind)


# --------------------------------------------------------------------------------- tests


def test_reports_exactly_the_removed_extra_and_altered_fills(writer: Writer) -> None:
    load(writer)
    t = tamper(writer)
    report = run(writer)
    assert nonzero(report) == {"missing": 3, "unexpected": 1, "mismatched": 1}
    assert of_kind(report, Kind.MISSING) == sorted(t.deleted)
    assert of_kind(report, Kind.UNEXPECTED) == [EXTRA_ID]
    (mismatch,) = [d for d in report.result.discrepancies if d.kind is Kind.MISMATCHED]
    assert mismatch.exec_id == t.altered
    assert [(f.field, f.stored - f.exchange) for f in mismatch.differences] == [
        ("price", Decimal("0.01"))
    ]
    assert report.exit_code == 1 and report.status == "completed" and not report.corrections
    assert report.exchange.outside_window == 1  # the funding at 10-11 00:00: the end is exclusive
    assert report.result.matched == 153 - 3 - 1 + 30  # trades by exec_id, and 30 funding
    assert rows(writer, "SELECT count(*) FROM trading.fills WHERE source = 'reconcile'") == [(0,)]


def table_columns(w: Writer, table: str) -> list[str]:
    schema, name = table.split(".")
    return [
        r[0]
        for r in rows(
            w,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = :s AND table_name = :t ORDER BY ordinal_position",
            s=schema,
            t=name,
        )
    ]


def full_row(w: Writer, table: str, columns: list[str], exec_id: str) -> dict[str, Any]:
    (row,) = rows(w, f"SELECT {', '.join(columns)} FROM {table} WHERE exec_id = :x", x=exec_id)
    return dict(row._mapping)


OTHER_BOT = "lxalgo_001"


def other_bots_rows(w: Writer) -> dict[str, list[Any]]:
    """Every row of every other bot (``unknown`` included) in the tables reconcile writes."""
    return {
        table: rows(w, f"SELECT * FROM {table} WHERE bot_id <> :b ORDER BY id", b=BOT)
        for table in (
            "trading.fills",
            "trading.positions",
            "trading.position_entries",
            "trading.funding_settlements",
        )
    }


def load_other_bot(w: Writer) -> None:
    """Another bot trading the same symbols in the same window (not on the bot's pages)."""
    at = datetime(2025, 10, 1, 9, tzinfo=UTC)
    for n, (side, symbol) in enumerate([("Buy", "BTCUSDT"), ("Buy", "SOLUSDT"),
                                        ("Sell", "BTCUSDT")]):  # fmt: skip
        f = fill(side, "0.5", "100", bot_id=OTHER_BOT, symbol=symbol, at=at + timedelta(hours=n))
        assert w.path.record_fill(f).is_new


def test_apply_converges_and_a_second_run_is_clean(writer: Writer) -> None:
    """The issue's scenario: 3 fills removed, 1 extra, 1 altered."""
    load(writer)
    load_other_bot(writer)
    clean_book = book(writer)
    fill_columns = table_columns(writer, "trading.fills")
    t = tamper(writer)
    extra_before = full_row(writer, "trading.fills", fill_columns, EXTRA_ID)
    altered_before = full_row(writer, "trading.fills", fill_columns, t.altered)
    others = other_bots_rows(writer)

    first = run(writer)
    assert nonzero(first) == {"missing": 3, "unexpected": 1, "mismatched": 1}
    assert all(d.fixable for d in first.result.discrepancies) and first.exit_code == 1

    applied = run(writer, apply=True)
    assert applied.before is not None and applied.before.counts() == first.result.counts()
    actions = sorted((c.action, c.exec_id) for c in applied.corrections)
    assert actions == sorted(
        [("corrected", t.altered), ("voided", EXTRA_ID)] + [("inserted", x) for x in t.deleted]
    )
    assert all(c.applied for c in applied.corrections) and applied.applied == 5
    assert applied.clean and applied.exit_code == 0 and applied.status == "completed"
    assert applied.pnl_rebuild_needed and applied.to_dict()["pnl_rebuild_needed"] is True

    second = run(writer)
    assert second.clean and second.exit_code == 0 and nonzero(second) == {}
    assert second.corrections == () and second.result.matched == 153 + 30

    # The altered row now holds the exchange's values; its other columns are untouched.
    exchange = {f.exec_id: f for f in trades()}[t.altered]
    altered_after = full_row(writer, "trading.fills", fill_columns, t.altered)
    assert altered_after["exec_price"] == exchange.exec_price
    assert {**altered_after, "exec_price": altered_before["exec_price"]} == altered_before
    # The extra row is in quarantine with every original column, and why and when.
    assert rows(writer, "SELECT count(*) FROM trading.fills WHERE exec_id = :x", x=EXTRA_ID) == [
        (0,)
    ]
    assert full_row(writer, "audit.quarantined_fills", fill_columns, EXTRA_ID) == extra_before
    ((reason, sync_id, by, details),) = rows(
        writer,
        "SELECT reason, sync_id, quarantined_by, details FROM audit.quarantined_fills",
    )
    assert reason.startswith("unexpected") and sync_id == applied.sync_id
    assert by == writer.engine.url.username and details["exchange_record"]["looks_complete"]
    # Lots and positions equal a rebuild from the remaining fills, and the clean book.
    assert book(writer) == rebuilt_book(writer) == clean_book
    # Nothing of another bot changed.
    assert other_bots_rows(writer) == others
    # The Redis cache follows the rebuilt pairs (BTC flat again, SOL corrected).
    for symbol, side, size, _avg in book(writer)[0]:
        cached = writer.cache.get(BOT, symbol)
        if size == 0:
            assert cached is None, symbol
        else:
            assert cached is not None and (cached.side, cached.size) == (side, size), symbol
    # Each correction is an audit event with the whole row before and after.
    events = {
        e.details["exec_id"]: e
        for e in rows(
            writer,
            "SELECT event_level, message, details FROM audit.system_events "
            "WHERE event_type = 'RECONCILE_CORRECTION'",
        )
    }
    assert len(events) == 5 and {e.event_level for e in events.values()} == {"WARNING"}
    corrected = events[t.altered].details
    assert corrected["action"] == "corrected" and corrected["rebuilt"] == ["SOLUSDT"]
    assert corrected["before"]["exec_price"] == format(altered_before["exec_price"], "f")
    assert corrected["after"]["exec_price"] == format(exchange.exec_price, "f")
    assert corrected["before"]["created_at"] == corrected["after"]["created_at"]
    voided = events[EXTRA_ID].details
    assert voided["action"] == "voided" and voided["after"] is None
    assert voided["quarantine"] == {"table": "audit.quarantined_fills", "id": extra_before["id"]}
    assert voided["before"]["exec_price"] == "112000.00000000"
    assert "alpha-db reconcile-restore" in events[EXTRA_ID].message
    ((summary,),) = rows(
        writer,
        "SELECT message FROM audit.system_events WHERE event_type = 'RECONCILE_RUN' "
        "ORDER BY id LIMIT 1 OFFSET 1",
    )
    assert "pnl-rebuild --bot shortseller_001" in summary


def test_unexpected_rows_are_not_voided_when_the_record_may_be_incomplete(
    writer: Writer,
) -> None:
    load(writer)
    t = tamper(writer)
    pages = exchange_pages()
    pages[-1]["result"]["nextPageCursor"] = "200%3A0%2C200%3A0"  # the last page is not final
    report = run(writer, apply=True, pages=pages)
    assert sorted(c.action for c in report.corrections) == ["corrected"] + ["inserted"] * 3
    assert nonzero(report) == {"unexpected": 1} and report.exit_code == 1
    (d,) = report.result.discrepancies
    assert d.exec_id == EXTRA_ID and not d.fixable and d.blocked
    assert report.status == "partial"
    assert any(w.startswith("1 unexpected row(s) not voided") and "nextPageCursor" in w
               for w in report.warnings)  # fmt: skip
    assert rows(writer, "SELECT count(*) FROM trading.fills WHERE exec_id = :x", x=EXTRA_ID) == [
        (1,)
    ]
    assert rows(writer, "SELECT count(*) FROM audit.quarantined_fills") == [(0,)]
    assert book(writer) == rebuilt_book(writer)
    assert t.altered not in of_kind(report, Kind.MISMATCHED)  # corrections still happen


def test_pages_of_a_narrower_window_never_void_the_rest(writer: Writer) -> None:
    load(writer)
    wire = wire_executions()[:60]  # a complete fetch, but of a shorter span
    last = max(int(w["execTime"]) for w in wire)
    later = [f.exec_id for f in trades() if f.exec_time.timestamp() * 1000 > last]
    assert later and all(f.exec_time.timestamp() * 1000 != last for f in trades()
                         if f.exec_id in later)  # fmt: skip
    before = rows(writer, "SELECT count(*) FROM trading.fills")
    report = run(writer, apply=True, pages=make_pages(wire))
    assert of_kind(report, Kind.UNEXPECTED) == sorted(later)
    assert report.corrections == () and report.exit_code == 1
    assert {d.blocked for d in report.result.discrepancies} == {
        "outside the time span of the pages"
    }
    assert rows(writer, "SELECT count(*) FROM trading.fills") == before
    assert rows(writer, "SELECT count(*) FROM audit.quarantined_fills") == [(0,)]


def test_rows_without_exchange_id_are_never_voided(writer: Writer) -> None:
    """Legacy rows and tracker self-reports are matched by content, never corrected or voided,
    even when nothing on complete pages matches them."""
    load(writer)
    fills = trades()
    legacy = self_report(fills[60], order_id="shortseller_001_SOLUSDT_synthetic")
    tracker = FillInput(
        exec_id="9f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b", bot_id=BOT, symbol="ETHUSDT",
        side="Buy", exec_price="4400", exec_qty="0.1", exec_time=datetime(2025, 10, 2, tzinfo=UTC),
        order_id="tracker-order-1", commission="0", source="tracker",
    )  # fmt: skip
    for f in (legacy, tracker):
        assert writer.path.record_fill(f).is_new
    stored_before = rows(writer, "SELECT * FROM trading.fills ORDER BY id")
    report = run(writer, apply=True)
    assert of_kind(report, Kind.UNVERIFIABLE) == sorted([legacy.exec_id, tracker.exec_id])
    assert not any(d.fixable for d in report.result.discrepancies)
    assert report.corrections == () and report.exit_code == 0  # unverifiable: not counted
    assert rows(writer, "SELECT * FROM trading.fills ORDER BY id") == stored_before
    assert rows(writer, "SELECT count(*) FROM audit.quarantined_fills") == [(0,)]


def test_restore_puts_the_voided_fill_back_and_the_next_run_reports_it_again(
    writer: Writer,
) -> None:
    load(writer)
    fill_columns = table_columns(writer, "trading.fills")
    clean_positions = {r.symbol: (r.side, r.size) for r in book(writer)[0]}
    tamper(writer)
    extra = full_row(writer, "trading.fills", fill_columns, EXTRA_ID)
    assert run(writer, apply=True).clean

    restored = restore_quarantined(writer.engine, EXTRA_ID, cache=writer.cache)
    assert (restored.funding, restored.bot_id, restored.symbol) == (False, BOT, "BTCUSDT")
    assert restored.quarantined_id == extra["id"] and restored.row_id != extra["id"]
    assert restored.pnl_rebuild_needed and restored.warnings == ()
    back = full_row(writer, "trading.fills", fill_columns, EXTRA_ID)
    assert {**back, "id": extra["id"], "created_at": extra["created_at"]} == extra
    assert rows(writer, "SELECT count(*) FROM audit.quarantined_fills") == [(0,)]
    assert book(writer) == rebuilt_book(writer)
    positions = {r.symbol: (r.side, r.size) for r in book(writer)[0]}
    assert positions == {**clean_positions, "BTCUSDT": ("Sell", Decimal("0.001"))}
    cached = writer.cache.get(BOT, "BTCUSDT")
    assert cached is not None and (cached.side, cached.size) == ("Sell", Decimal("0.001"))
    ((details,),) = rows(
        writer, "SELECT details FROM audit.system_events WHERE event_type = 'RECONCILE_RESTORE'"
    )
    assert details["before"]["id"] == extra["id"] and details["after"]["id"] == restored.row_id

    again = run(writer)
    assert nonzero(again) == {"unexpected": 1} and of_kind(again, Kind.UNEXPECTED) == [EXTRA_ID]
    with pytest.raises(ValidationError, match="no quarantined"):
        restore_quarantined(writer.engine, EXTRA_ID)


def test_restore_refuses_an_exec_id_that_is_stored_again(writer: Writer) -> None:
    load(writer)
    tamper(writer)
    run(writer, apply=True)
    (original,) = rows(writer, "SELECT exec_price FROM audit.quarantined_fills")
    again = fill("Sell", "0.002", "111000", symbol="BTCUSDT", exec_id=EXTRA_ID, source="listener",
                 at=datetime(2025, 10, 1, 12, tzinfo=UTC))  # fmt: skip
    assert writer.path.record_fill(again).is_new  # delivered once more, e.g. by the listener
    with pytest.raises(ValidationError, match=r"already in trading\.fills"):
        restore_quarantined(writer.engine, EXTRA_ID)
    assert rows(writer, "SELECT exec_price FROM audit.quarantined_fills") == [original]
    assert rows(writer, "SELECT count(*) FROM trading.fills WHERE exec_id = :x", x=EXTRA_ID) == [
        (1,)
    ]


def test_funding_settlements_are_corrected_voided_and_restored(writer: Writer) -> None:
    load(writer)  # funding is stored under 'unknown', as the listener stores it
    funding_columns = table_columns(writer, "trading.funding_settlements")
    ((altered, fee),) = rows(
        writer, "SELECT exec_id, fee FROM trading.funding_settlements ORDER BY exec_time LIMIT 1"
    )
    with writer.engine.begin() as conn:
        conn.execute(
            text("UPDATE trading.funding_settlements SET fee = fee * 2 WHERE exec_id = :x"),
            {"x": altered},
        )
    extra = fill("Buy", "1", "4400", symbol="ETHUSDT", exec_id="funding-extra-1",
                 exec_type="Funding", at=datetime(2025, 10, 3, 8, tzinfo=UTC))  # fmt: skip
    assert writer.path.record_fill(extra).is_new
    extra_row = full_row(writer, "trading.funding_settlements", funding_columns, extra.exec_id)
    lots = book(writer)

    first = run(writer)
    assert nonzero(first) == {"funding_mismatched": 1, "funding_unexpected": 1}
    applied = run(writer, apply=True)
    assert sorted((c.action, c.funding) for c in applied.corrections) == [
        ("corrected", True),
        ("voided", True),
    ]
    assert applied.clean and not applied.pnl_rebuild_needed  # funding is never a trade
    assert run(writer).clean
    assert rows(
        writer, "SELECT fee FROM trading.funding_settlements WHERE exec_id = :x", x=altered
    ) == [(fee,)]
    quarantined = full_row(
        writer, "audit.quarantined_funding_settlements", funding_columns, extra.exec_id
    )
    assert quarantined == extra_row
    assert book(writer) == lots  # funding never touches lots

    restored = restore_quarantined(writer.engine, extra.exec_id)
    assert restored.funding and not restored.pnl_rebuild_needed
    assert nonzero(run(writer)) == {"funding_unexpected": 1}


def test_the_quarantine_keeps_every_column_and_only_lots_reference_fills(writer: Writer) -> None:
    def typed(table: str) -> list[Any]:
        schema, name = table.split(".")
        return rows(
            writer,
            "SELECT column_name, data_type, character_maximum_length, numeric_precision, "
            "numeric_scale FROM information_schema.columns WHERE table_schema = :s "
            "AND table_name = :t ORDER BY ordinal_position",
            s=schema,
            t=name,
        )

    for table, quarantine in QUARANTINE_SOURCES.items():
        original = typed(table)
        assert typed(quarantine)[: len(original)] == original, quarantine
    # A fill is voided by deleting the pair's lots first: they are the only rows that
    # reference trading.fills. A new foreign key must be handled by reconcile._void.
    assert rows(
        writer,
        "SELECT conrelid::regclass::text, conname FROM pg_constraint "
        "WHERE contype = 'f' AND confrelid = 'trading.fills'::regclass",
    ) == [("trading.position_entries", "fk_position_entries_fill")]
    assert rows(
        writer,
        "SELECT count(*) FROM pg_constraint "
        "WHERE contype = 'f' AND confrelid = 'trading.funding_settlements'::regclass",
    ) == [(0,)]


def test_every_run_is_recorded_in_sync_status_and_audit(writer: Writer) -> None:
    load(writer)
    t = tamper(writer)
    first = run(writer, apply=True)
    status = rows(
        writer,
        "SELECT id, sync_type, start_time, end_time, status, trades_synced, "
        "sync_completed_at IS NOT NULL AS done FROM trading.sync_status",
    )
    assert status == [(first.sync_id, "manual", START, END, "completed", 5, True)]
    events = rows(
        writer,
        "SELECT event_level, component, bot_id, symbol, order_id, details "
        "FROM audit.system_events WHERE event_type = 'RECONCILE_CORRECTION' ORDER BY id",
    )
    assert sorted(e[5]["action"] for e in events) == ["corrected", "inserted", "inserted",
                                                      "inserted", "voided"]  # fmt: skip
    corrections = [e for e in events if e[5]["action"] == "inserted"]
    exchange = {f.exec_id: f for f in trades()}
    for level, component, bot, symbol, order_id, details in corrections:
        original = exchange[details["exec_id"]]
        assert (level, component, bot) == ("WARNING", "reconcile", BOT)
        assert (symbol, order_id) == (original.symbol, original.order_id)
        assert details["before"] is None and details["action"] == "inserted"
        assert details["after"]["price"] == format(original.exec_price, "f")  # no float
        assert details["sync_id"] == first.sync_id and details["applied"] is True
    assert sorted(c[5]["exec_id"] for c in corrections) == sorted(t.deleted)

    second = run(writer)  # the same window again: the same row, updated
    hourly = run(writer, sync_type="hourly")  # another sync type: its own row
    status = rows(
        writer,
        "SELECT id, sync_type, status, trades_synced FROM trading.sync_status ORDER BY id",
    )
    assert second.sync_id == first.sync_id != hourly.sync_id
    assert status == [
        (first.sync_id, "manual", "completed", 0),
        (hourly.sync_id, "hourly", "completed", 0),
    ]
    runs = rows(
        writer,
        "SELECT event_level, details FROM audit.system_events "
        "WHERE event_type = 'RECONCILE_RUN' ORDER BY id",
    )
    assert [r[0] for r in runs] == ["INFO", "INFO", "INFO"]
    assert runs[0][1]["before"]["missing"] == 3 and runs[0][1]["applied"] == 5
    assert runs[0][1]["pnl_rebuild_needed"] is True and runs[0][1]["remaining"] == 0
    assert runs[1][1]["counts"]["unexpected"] == 0 and runs[1][1]["applied"] == 0
    assert runs[1][1]["pnl_rebuild_needed"] is False


def test_unknown_copies_are_reattributed_and_the_window_ends_clean(writer: Writer) -> None:
    load(writer, as_listener=True)  # exchange-side exits have no link id: stored as unknown
    report = run(writer)
    unknown = [f.exec_id for f in trades() if not f.client_order_id]
    assert nonzero(report) == {"misattributed": len(unknown)} and len(unknown) == 42
    assert all(d.fixable and d.stored and d.stored.bot_id == "unknown"
               for d in report.result.discrepancies)  # fmt: skip
    fixed = run(writer, apply=True)
    assert {c.outcome for c in fixed.corrections} == {"reattributed"}
    assert fixed.clean and fixed.exit_code == 0 and fixed.applied == 42
    assert rows(writer, "SELECT count(*) FROM trading.fills WHERE bot_id = 'unknown'") == [(0,)]
    positions = {r.symbol: (r.side, r.size, r.avg_entry_price) for r in book(writer)[0]}
    assert positions == {  # the trace's expected final state
        "BTCUSDT": ("", Decimal("0"), None),
        "ETHUSDT": ("Sell", Decimal("1.61"), Decimal("4501.44")),
        "SOLUSDT": ("", Decimal("0"), None),
    }
    audit = rows(
        writer,
        "SELECT details FROM audit.system_events WHERE event_type = 'RECONCILE_CORRECTION' "
        "ORDER BY id LIMIT 1",
    )[0][0]
    assert audit["before"]["bot_id"] == "unknown" and audit["after"]["bot_id"] == BOT


def self_report(f: FillInput, **over: Any) -> FillInput:
    """A bot's own copy of an execution: no exchange id, the bot's clock, no fee, and no
    orderLinkId (a report carrying the order's link id is folded into the exchange's copy by
    the write path itself: tests/integration/test_self_reports.py)."""
    values = {
        "bot_id": BOT,
        "symbol": f.symbol,
        "order_id": f.order_id,
        "client_order_id": "",
        "side": str(f.side),
        "exec_price": f.exec_price,
        "exec_qty": f.exec_qty,
        "exec_time": f.exec_time + timedelta(milliseconds=300),
        "commission": Decimal(0),
    }
    values.update(over)
    return FillInput(exec_id=content_exec_id(**values), source="adapter", **values)


def test_rows_without_exchange_id_are_matched_by_content(writer: Writer) -> None:
    load(writer)
    fills = trades()
    split = [f for f in fills if f.order_id == fills[0].order_id]  # one order, two executions
    assert [f.exec_qty for f in split] == [Decimal("8.9"), Decimal("24.9")]
    single = fills[20]
    delete_fills(writer, [f.exec_id for f in (*split, single)])
    order_report = self_report(split[0], exec_qty=Decimal("33.8"))
    near_copy = self_report(single, exec_price=single.exec_price + Decimal("0.05"))
    duplicate = self_report(fills[40])  # its exchange copy is stored too
    synthetic = self_report(fills[60], order_id="shortseller_001_SOLUSDT_synthetic")
    for f in (order_report, near_copy, duplicate, synthetic):
        writer.path.record_fill(f)

    report = run(writer)
    matches = {m.stored.exec_id: m for m in report.result.content_matches}
    assert [x.exec_id for x in matches[order_report.exec_id].exchange] == [f.exec_id for f in split]
    assert [d.field for d in matches[near_copy.exec_id].differences] == [
        "price",
        "fee",
        "exec_time",
    ]
    assert nonzero(report) == {"duplicate": 1, "unverifiable": 1}  # nothing reported missing
    assert of_kind(report, Kind.DUPLICATE) == [fills[40].exec_id]
    assert report.remaining_count == 1  # unverifiable is shown, not counted...
    assert run(writer, strict=True).remaining_count == 2  # ...unless strict
    applied = run(writer, apply=True)
    assert applied.corrections == ()  # a matched execution is not inserted a second time


def test_closed_pnl_pages_are_compared_per_symbol(writer: Writer) -> None:
    def record(symbol: str, size: str, pnl: str, ms: int) -> dict[str, str]:
        return {
            "symbol": symbol, "orderId": f"close-{symbol}-{ms}", "side": "Buy", "qty": size,
            "orderPrice": "0", "orderType": "Market", "execType": "Trade", "closedSize": size,
            "cumEntryValue": "100", "avgEntryPrice": "1", "cumExitValue": "99",
            "avgExitPrice": "1", "closedPnl": pnl, "fillCount": "1", "leverage": "10",
            "createdTime": str(ms), "updatedTime": str(ms + 5),
        }  # fmt: skip

    ms = int(datetime(2025, 10, 2, tzinfo=UTC).timestamp() * 1000)
    with writer.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO trading.completed_trades (trade_id, bot_id, symbol, entry_side, "
                "entry_price, entry_qty, entry_time, exit_side, exit_price, exit_qty, exit_time, "
                "net_pnl, source) VALUES ('t-eth', :b, 'ETHUSDT', 'Sell', 4000, 1.7, :t0, 'Buy', "
                "3990, 1.7, :t1, 13.5, 'fills')"
            ),
            {"b": BOT, "t0": START + timedelta(days=4), "t1": START + timedelta(days=5)},
        )
    pages = make_pages(
        [record("ETHUSDT", "1.70", "12.1", ms), record("SOLUSDT", "33.8", "-5.2", ms)]
    )
    report = run(writer, pages=pages)
    by_symbol = {c.symbol: c for c in report.result.closed_pnl}
    eth, sol = by_symbol["ETHUSDT"], by_symbol["SOLUSDT"]
    assert eth.agrees and eth.pnl_difference == Decimal("-1.4")  # funding is in closedPnl
    assert not sol.agrees and (sol.exchange_qty, sol.stored_trades) == (Decimal("33.8"), 0)
    assert nonzero(report) == {"closed_pnl_mismatched": 1} and report.exit_code == 1
    assert report.result.stored_fills == 0  # closed-P&L pages alone never judge the fills
    only_api = run(writer, pages=pages, trade_sources=["bybit_api"])
    assert {c.symbol: c.stored_trades for c in only_api.result.closed_pnl} == {
        "ETHUSDT": 0, "SOLUSDT": 0
    }  # fmt: skip


def test_an_error_page_fails_the_run_and_says_why(writer: Writer) -> None:
    load(writer)
    pages = exchange_pages()
    pages[1] = {"retCode": 10002, "retMsg": "invalid request, please check your server timestamp",
                "result": {}, "retExtInfo": {}, "time": 1759000000000}  # fmt: skip
    with pytest.raises(ValidationError, match="retCode"):
        run(writer, pages=pages)
    ((status, error),) = rows(writer, "SELECT status, error_message FROM trading.sync_status")
    assert status == "failed" and "server timestamp" in error
    assert rows(
        writer,
        "SELECT event_level, error_code FROM audit.system_events "
        "WHERE event_type = 'RECONCILE_RUN'",
    ) == [("ERROR", "ValidationError")]


# ------------------------------------------------------------------------------ the CLI


@pytest.fixture
def cli_env(writer: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Writer]:
    monkeypatch.setenv("ALPHA_DATABASE_URL", writer.db.url)
    monkeypatch.setenv("ALPHA_REDIS_URL", writer.db.stack.redis_url())
    monkeypatch.setenv("ALPHA_SPOOL_DIR", str(tmp_path / "cli-spool"))
    yield writer


def saved_pages(folder: Path) -> Path:
    """The pages as an operator saves them: a page per file, an array, JSON lines."""
    folder.mkdir()
    pages = exchange_pages()
    (folder / "01.json").write_text(json.dumps(pages[0], indent=2))
    (folder / "02.json").write_text(json.dumps(pages[1:3]))
    (folder / "03.jsonl").write_text(json.dumps(pages[3]) + "\n")
    return folder


def cli(folder: Path, *extra: str) -> int:
    return main(["reconcile", "--bot", BOT, "--since", "2025-09-27T00:00:00Z",
                 "--until", "2025-10-11T00:00:00+00:00", str(folder), *extra])  # fmt: skip


def test_cli_exit_status_follows_the_remaining_discrepancies(
    cli_env: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(cli_env)
    tamper(cli_env)
    folder = saved_pages(tmp_path / "pages")
    assert cli(folder, "--json") == 1
    out = json.loads(capsys.readouterr().out)
    assert {k: n for k, n in out["counts"].items() if n} == {
        "missing": 3, "unexpected": 1, "mismatched": 1
    }  # fmt: skip
    assert out["discrepancies"][0]["exchange"]["price"].count(".") == 1  # Decimal text
    assert cli(folder, "--apply") == 0
    human = capsys.readouterr().out
    assert all(word in human for word in ("inserted", "corrected", "voided", EXTRA_ID))
    assert "clean: no discrepancy remains" in human
    assert "alpha-db pnl-rebuild --bot shortseller_001" in human
    assert cli(folder) == 0  # the second run is clean

    assert main(["reconcile-restore", EXTRA_ID]) == 0
    human = capsys.readouterr().out
    assert f"restored fill {EXTRA_ID} (shortseller_001 BTCUSDT)" in human
    assert cli(folder) == 1  # reported unexpected again
    assert main(["reconcile-restore", EXTRA_ID, "--json"]) == 65  # nothing quarantined now
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no quarantined" in err


def test_cli_exits_0_on_a_clean_window_also_through_pgbouncer(
    cli_env: Writer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALPHA_DATABASE_URL", cli_env.db.bouncer_url)  # transaction pooling
    load(cli_env)
    assert cli(saved_pages(tmp_path / "pages")) == 0
    assert "clean: no discrepancy remains" in capsys.readouterr().out


def test_cli_truncated_file_is_one_clear_error_line(
    cli_env: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "executions.json"
    body = json.dumps(exchange_pages())
    path.write_text(body[: len(body) - 200])
    assert cli(path) == 65
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated" in err and "executions.json" in err
    assert rows(cli_env, "SELECT status FROM trading.sync_status") == [("failed",)]


def test_an_execution_the_link_id_gives_another_bot_is_reported_not_moved(writer: Writer) -> None:
    load(writer)
    wire = wire_executions()
    theirs = next(i for i, w in enumerate(wire) if w["symbol"] == "ETHUSDT" and w["orderLinkId"])
    wire[theirs] = {**wire[theirs], "orderLinkId": "lxalgo_001:entry:mgk0p2xc0a1"}
    pages = make_pages(wire, page_size=50)
    report = run(writer, pages=pages, symbols={"ETHUSDT"})
    assert report.exchange.other_bots == 1
    assert report.exchange.other_symbols == sum(w["symbol"] != "ETHUSDT" for w in wire)
    (d,) = report.result.discrepancies
    assert (d.kind, d.exchange and d.exchange.bot_id, d.stored and d.stored.bot_id) == (
        Kind.MISATTRIBUTED, "lxalgo_001", BOT
    )  # fmt: skip
    assert not d.fixable
    applied = run(writer, apply=True, pages=pages, symbols={"ETHUSDT"})
    assert applied.corrections == () and applied.exit_code == 1
