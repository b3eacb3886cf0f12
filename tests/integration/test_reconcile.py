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
from alpha_models.reconcile import Kind, ReconcileReport, reconcile
from tests import stack as tb
from tests.builders import fill
from tests.conftest import Writer

TRACE = tb.FIXTURES / "shortseller" / "shortseller_events.jsonl"
BOT = "shortseller_001"
START = datetime(2025, 9, 27, tzinfo=UTC)  # the trace's window
END = datetime(2025, 10, 11, tzinfo=UTC)
EXTRA_ID = "5b0e8a3c-9d1f-4e27-b6a4-0c3d2e1f9a88"


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


def test_apply_inserts_the_missing_fills_and_keeps_positions_consistent(writer: Writer) -> None:
    load(writer)
    clean_positions, _ = book(writer)
    t = tamper(writer)
    report = run(writer, apply=True)
    assert report.before is not None and report.before.counts()["missing"] == 3
    assert sorted(c.exec_id for c in report.corrections) == sorted(t.deleted)
    assert all(c.applied and c.action == "inserted" for c in report.corrections)
    assert nonzero(report) == {"unexpected": 1, "mismatched": 1}  # reported, never deleted
    assert report.exit_code == 1
    stored = rows(
        writer,
        "SELECT exec_id, bot_id, source FROM trading.fills WHERE exec_id = ANY(:ids) "
        "ORDER BY exec_id",
        ids=t.deleted,
    )
    assert stored == [(x, BOT, "reconcile") for x in sorted(t.deleted)]
    # Lots and positions follow the inserted fills: they equal a rebuild from the fills...
    assert book(writer) == rebuilt_book(writer)
    # ...and match the clean book, except BTC, which holds the extra short.
    positions = {r.symbol: (r.side, r.size) for r in book(writer)[0]}
    expected = {r.symbol: (r.side, r.size) for r in clean_positions}
    expected["BTCUSDT"] = ("Sell", Decimal("0.001"))
    assert positions == expected
    assert positions["ETHUSDT"] == ("Sell", Decimal("1.61"))  # the trace's own final state

    again = run(writer, apply=True)  # only what apply does not fix remains
    assert nonzero(again) == {"unexpected": 1, "mismatched": 1}
    assert again.corrections == () and again.before is None and again.exit_code == 1


def test_every_run_is_recorded_in_sync_status_and_audit(writer: Writer) -> None:
    load(writer)
    t = tamper(writer)
    first = run(writer, apply=True)
    status = rows(
        writer,
        "SELECT id, sync_type, start_time, end_time, status, trades_synced, "
        "sync_completed_at IS NOT NULL AS done FROM trading.sync_status",
    )
    assert status == [(first.sync_id, "manual", START, END, "completed", 3, True)]
    corrections = rows(
        writer,
        "SELECT event_level, component, bot_id, symbol, order_id, details "
        "FROM audit.system_events WHERE event_type = 'RECONCILE_CORRECTION' ORDER BY id",
    )
    assert len(corrections) == 3
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
    assert runs[0][1]["before"]["missing"] == 3 and runs[0][1]["applied"] == 3
    assert runs[1][1]["counts"]["unexpected"] == 1 and runs[1][1]["applied"] == 0


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
    """A bot's own copy of an execution: no exchange id, the bot's clock, no fee."""
    values = {
        "bot_id": BOT,
        "symbol": f.symbol,
        "order_id": f.order_id,
        "client_order_id": f.client_order_id,
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
    assert cli(folder, "--apply") == 1
    human = capsys.readouterr().out
    assert "inserted" in human and "2 discrepancy(ies) remain: 1 unexpected, 1 mismatched" in human
    assert EXTRA_ID in human


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
