"""Round trips derived from the fills into completed_trades, against real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from alpha_models import pnl_store
from alpha_models.errors import ValidationError
from alpha_models.pnl import PnlFill, make_trade_id, rebuild, unrealized_pnl
from alpha_models.pnl_store import SkipReason, rebuild_completed_trades
from tests.builders import T0, fill
from tests.conftest import Writer

D = Decimal
SS = "shortseller_001"
LX = "lxalgo_001"


def trips(engine: Engine, source: str | None = "fills") -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT * FROM trading.completed_trades "
                "WHERE (CAST(:s AS text) IS NULL OR source = :s) ORDER BY exit_time, trade_id"
            ),
            {"s": source},
        ).mappings()
        return [dict(r) for r in rows]


def snapshot(engine: Engine) -> tuple[list[dict[str, Any]], int]:
    with engine.connect() as conn:
        seq = conn.execute(
            text("SELECT last_value FROM trading.completed_trades_id_seq")
        ).scalar_one()
    return trips(engine, None), int(seq)


def insert_raw_fill(engine: Engine, **values: Any) -> None:
    """A fills row written without the write path (legacy rows, other writers)."""
    insert_raw_fills(engine, [values])


def test_short_round_trip_is_stored_as_a_short_with_fees_on_both_legs(writer: Writer) -> None:
    wp = writer.path
    wp.record_fill(
        fill("Sell", "1", "100", at=T0, fee="0.055", exec_id="e-open", close_reason="ema_cross")
    )
    wp.record_fill(
        fill(
            "Buy",
            "1",
            "90",
            at=T0 + timedelta(minutes=90, seconds=30),
            fee="0.0495",
            exec_id="e-close",
            close_reason="take_profit",
        )
    )
    stats = rebuild_completed_trades(writer.engine)

    assert (stats.inserted, stats.updated, stats.deleted, stats.skipped) == (1, 0, 0, ())
    (row,) = trips(writer.engine)
    assert row["trade_id"] == make_trade_id(SS, "BTCUSDT", "e-open")
    assert (row["entry_side"], row["exit_side"]) == ("Sell", "Buy")  # not inverted
    assert (row["entry_price"], row["exit_price"], row["entry_qty"], row["exit_qty"]) == (
        D(100),
        D(90),
        D(1),
        D(1),
    )
    assert (row["entry_time"], row["exit_time"]) == (T0, T0 + timedelta(minutes=90, seconds=30))
    assert row["gross_pnl"] == D(10)
    assert (row["entry_commission"], row["exit_commission"]) == (D("0.055"), D("0.0495"))
    assert row["total_commission"] == D("0.1045")
    assert row["net_pnl"] == D("9.8955")
    assert row["pnl_pct"] == D("9.8955")  # of the entry notional, 100
    assert row["holding_duration_seconds"] == 5430
    assert (row["entry_reason"], row["exit_reason"]) == ("ema_cross", "take_profit")
    assert row["source"] == "fills"
    (realized,) = stats.realized
    assert (realized.bot_id, realized.round_trips, realized.net_pnl) == (SS, 1, D("9.8955"))


def test_partial_exits_make_one_round_trip_dated_at_the_last_exit(writer: Writer) -> None:
    wp = writer.path
    wp.record_fill(fill("Buy", "0.4", "100", bot_id=LX, at=1))
    wp.record_fill(fill("Buy", "0.6", "100", bot_id=LX, at=2))
    wp.record_fill(fill("Sell", "0.5", "110", bot_id=LX, at=3))
    wp.record_fill(fill("Sell", "0.5", "120", bot_id=LX, at=4, close_reason="trailing_stop"))
    rebuild_completed_trades(writer.engine)

    (row,) = trips(writer.engine)
    assert (row["entry_side"], row["entry_qty"], row["exit_qty"]) == ("Buy", D(1), D(1))
    assert (row["entry_price"], row["exit_price"]) == (D(100), D(115))
    assert row["gross_pnl"] == row["net_pnl"] == D(15)  # S3 + S4 of PLATFORM.md §8.6
    assert row["exit_time"] == T0 + timedelta(seconds=4)
    assert row["exit_reason"] == "trailing_stop"


def test_a_second_rebuild_changes_nothing_not_even_timestamps_or_the_sequence(
    writer: Writer,
) -> None:
    wp = writer.path
    for k in range(3):
        wp.record_fill(fill("Sell", "0.01", str(100_000 + k), at=10 * k + 1))
        wp.record_fill(fill("Buy", "0.01", str(99_000 + k), at=10 * k + 2, fee="0.01"))
    first = rebuild_completed_trades(writer.engine)
    before = snapshot(writer.engine)
    second = rebuild_completed_trades(writer.engine)

    assert (first.inserted, second.inserted, second.updated, second.deleted) == (3, 0, 0, 0)
    assert second.unchanged == 3
    assert snapshot(writer.engine) == before


def test_new_changed_and_vanished_trips_are_inserted_updated_and_deleted(
    writer: Writer,
) -> None:
    wp = writer.path
    wp.record_fill(fill("Sell", "1", "100", at=1, exec_id="a1"))
    wp.record_fill(fill("Buy", "1", "90", at=2, exec_id="a2"))
    wp.record_fill(fill("Sell", "1", "100", at=10, exec_id="b1"))
    wp.record_fill(fill("Buy", "1", "95", at=11, exec_id="b2"))
    rebuild_completed_trades(writer.engine)
    ids = {r["trade_id"]: r["id"] for r in trips(writer.engine)}

    # Fills arriving late change trip "a": a scale-in before its cover, and a second cover.
    insert_raw_fill(
        writer.engine,
        exec_id="a1b",
        side="Sell",
        exec_price=D(110),
        exec_qty=D(1),
        exec_time=T0 + timedelta(seconds=1, milliseconds=500),
    )
    insert_raw_fill(
        writer.engine,
        exec_id="a3",
        side="Buy",
        exec_price=D(90),
        exec_qty=D(1),
        exec_time=T0 + timedelta(seconds=3),
    )
    with writer.engine.begin() as conn:  # a fill removed by a correction: trip "b" vanishes
        conn.execute(text("DELETE FROM trading.fills WHERE exec_id = 'b2'"))
    stats = rebuild_completed_trades(writer.engine)

    assert (stats.inserted, stats.updated, stats.deleted) == (0, 1, 1)
    (row,) = trips(writer.engine)
    assert row["trade_id"] == make_trade_id(SS, "BTCUSDT", "a1")
    assert row["id"] == ids[row["trade_id"]]  # updated in place
    assert (row["entry_qty"], row["entry_price"], row["gross_pnl"]) == (D(2), D(105), D(30))
    assert [p.symbol for p in stats.open_positions] == ["BTCUSDT"]  # b1 is open again


def test_rows_of_other_sources_are_never_touched_and_a_clash_is_reported(
    writer: Writer,
) -> None:
    wp = writer.path
    wp.record_fill(fill("Sell", "1", "100", at=1, exec_id="c1"))
    wp.record_fill(fill("Buy", "1", "90", at=2, exec_id="c2"))
    wp.record_fill(fill("Sell", "1", "100", at=5, exec_id="d1"))
    wp.record_fill(fill("Buy", "1", "99", at=6, exec_id="d2"))
    with writer.engine.begin() as conn:  # the closed-P&L sync already holds trip "d"'s key
        conn.execute(
            text(
                "INSERT INTO trading.completed_trades (trade_id, bot_id, symbol, entry_side, "
                "entry_price, entry_qty, entry_time, exit_side, exit_price, exit_qty, "
                "exit_time, net_pnl, source) VALUES ('shortseller_001_BTCUSDT_5000', "
                "'shortseller_001', 'BTCUSDT', 'Buy', 100, 1, :e, 'Sell', 99, 1, :x, -1, "
                "'bybit_api')"
            ),
            {"e": T0 + timedelta(seconds=5), "x": T0 + timedelta(seconds=6)},
        )
    other_before = trips(writer.engine, "bybit_api")
    stats = rebuild_completed_trades(writer.engine)
    again = rebuild_completed_trades(writer.engine)

    assert trips(writer.engine, "bybit_api") == other_before
    assert [r["trade_id"] for r in trips(writer.engine)] == [make_trade_id(SS, "BTCUSDT", "c1")]
    (skipped,) = stats.skipped
    assert skipped.reason == SkipReason.UNIQUE_TRADE_TAKEN
    assert skipped.trade_id == make_trade_id(SS, "BTCUSDT", "d1")
    assert (skipped.other_trade_id, skipped.other_source) == (
        "shortseller_001_BTCUSDT_5000",
        "bybit_api",
    )
    assert skipped.net_pnl == D(1)
    assert (again.inserted, again.updated, again.deleted, len(again.skipped)) == (0, 0, 0, 1)


def test_a_trip_opened_and_closed_at_the_same_instant_is_reported_not_stored(
    writer: Writer,
) -> None:
    same = T0 + timedelta(seconds=7)
    insert_raw_fill(
        writer.engine, exec_id="z1", side="Buy", exec_price=D(100), exec_qty=D(1), exec_time=same
    )
    insert_raw_fill(
        writer.engine, exec_id="z2", side="Sell", exec_price=D(101), exec_qty=D(1), exec_time=same
    )
    stats = rebuild_completed_trades(writer.engine)

    assert trips(writer.engine) == []
    (skipped,) = stats.skipped
    assert (skipped.reason, skipped.net_pnl) == (SkipReason.ZERO_DURATION, D(1))
    assert stats.realized[0].net_pnl == D(1)  # still counted as realized P&L


def test_funding_is_never_a_trade(writer: Writer) -> None:
    wp = writer.path
    wp.record_fill(fill("Sell", "1", "100", at=1))
    wp.record_fill(fill("Buy", "1", "100.5", at=3600, exec_type="Funding", fee="0.01"))
    insert_raw_fill(
        writer.engine,
        exec_id="fund-in-fills",
        side="Buy",
        exec_price=D(50),
        exec_qty=D(1),
        exec_time=T0 + timedelta(hours=2),
        exec_type="Funding",
    )
    wp.record_fill(fill("Buy", "1", "90", at=7200 + 5))
    stats = rebuild_completed_trades(writer.engine)

    (row,) = trips(writer.engine)
    assert row["gross_pnl"] == D(10)  # the funding rows opened and closed nothing
    assert (stats.fills_read, stats.fills_not_trades) == (2, 1)


def test_unknown_is_left_out_unless_asked_and_unregistered_bots_are_reported(
    writer: Writer,
) -> None:
    wp = writer.path
    wp.record_fill(fill("Buy", "1", "100", bot_id="unknown", at=1))
    wp.record_fill(fill("Sell", "1", "105", bot_id="unknown", at=2))
    assert rebuild_completed_trades(writer.engine).round_trips == 0

    stats = rebuild_completed_trades(writer.engine, ["unknown"])
    assert [s.reason for s in stats.skipped] == [SkipReason.BOT_NOT_REGISTERED]
    assert stats.realized[0].bot_id == "unknown"
    assert stats.realized[0].net_pnl == D(5)
    assert trips(writer.engine) == []


def test_rebuilding_one_bot_leaves_the_other_bots_rows_alone(writer: Writer) -> None:
    wp = writer.path
    for bot in (SS, LX):
        wp.record_fill(fill("Buy", "1", "100", bot_id=bot, at=1))
        wp.record_fill(fill("Sell", "1", "101", bot_id=bot, at=2))
    rebuild_completed_trades(writer.engine)
    with writer.engine.begin() as conn:  # LXAlgo's fills turn out not to be its own
        conn.execute(
            text("UPDATE trading.fills SET bot_id = 'unknown' WHERE bot_id = :b"), {"b": LX}
        )
    stats = rebuild_completed_trades(writer.engine, [SS])

    assert stats.deleted == 0
    assert sorted(r["bot_id"] for r in trips(writer.engine)) == [LX, SS]
    assert rebuild_completed_trades(writer.engine).deleted == 1  # a full rebuild removes it


def test_dry_run_reports_the_changes_and_writes_nothing(writer: Writer) -> None:
    writer.path.record_fill(fill("Buy", "1", "100", at=1))
    writer.path.record_fill(fill("Sell", "1", "101", at=2))
    before = snapshot(writer.engine)
    stats = rebuild_completed_trades(writer.engine, dry_run=True)

    assert (stats.inserted, stats.dry_run) == (1, True)
    assert snapshot(writer.engine) == before


def test_worker_processes_derive_exactly_what_one_process_does(writer: Writer) -> None:
    wp = writer.path
    for n, sym in enumerate(["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]):
        for k in range(4):
            side_in, side_out = ("Sell", "Buy") if (n + k) % 2 else ("Buy", "Sell")
            wp.record_fill(fill(side_in, "0.3", str(100 + k), symbol=sym, at=100 * k + n))
            wp.record_fill(fill(side_in, "0.2", str(101 + k), symbol=sym, at=100 * k + n + 10))
            wp.record_fill(
                fill(side_out, "0.5", str(102 + n), symbol=sym, at=100 * k + n + 20, fee="0.01")
            )
    wp.record_fill(fill("Buy", "0.7", "100", symbol="ADAUSDT", at=999))  # stays open
    single = rebuild_completed_trades(writer.engine, workers=1, dry_run=True)
    parallel = rebuild_completed_trades(writer.engine, workers=2)

    assert parallel.workers == 2
    assert (parallel.inserted, parallel.round_trips) == (single.inserted, single.round_trips)
    assert parallel.realized == single.realized
    assert parallel.open_positions == single.open_positions
    again = rebuild_completed_trades(writer.engine, workers=1)
    assert (again.inserted, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 16)


def test_text_with_copy_escapes_survives_the_round_trip(writer: Writer) -> None:
    weird = "tab\there back\\slash new\nline"
    insert_raw_fill(
        writer.engine,
        exec_id="w\\1",
        side="Buy",
        exec_price=D(1),
        exec_qty=D(1),
        exec_time=T0 + timedelta(seconds=1),
        close_reason=weird[:50],
        client_order_id="link\\with\ttab",
        order_id="ord\\1",
    )
    insert_raw_fill(
        writer.engine,
        exec_id="w2",
        side="Sell",
        exec_price=D(2),
        exec_qty=D(1),
        exec_time=T0 + timedelta(seconds=2),
        close_reason="\\N",
    )
    rebuild_completed_trades(writer.engine)

    (row,) = trips(writer.engine)
    assert row["trade_id"] == make_trade_id(SS, "BTCUSDT", "w\\1")
    assert (row["entry_reason"], row["exit_reason"]) == (weird[:50], "\\N")
    assert (row["entry_client_order_id"], row["entry_order_id"]) == ("link\\with\ttab", "ord\\1")


def test_fills_read_for_the_engine_equal_validated_pnl_fills(writer: Writer) -> None:
    wp = writer.path
    wp.record_fill(
        fill(
            "Buy",
            "0.12345678",
            "65432.1",
            at=1,
            fee="-0.00000001",
            close_reason="r1",
            client_order_id="lx:r1:1",
        )
    )
    wp.record_fill(fill("Sell", "0.12345678", "65500", symbol="ETHUSDT", at=2))
    with writer.engine.connect() as conn:
        cur: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        read = pnl_store.read_fills(cur, ("TRUE", ()))
        rows = conn.execute(
            text(
                "SELECT id, exec_id, bot_id, symbol, side, exec_price, exec_qty, commission, "
                "exec_time, order_id, client_order_id, close_reason FROM trading.fills "
                "ORDER BY exec_time, id"
            )
        ).all()
    assert read == [PnlFill(*r) for r in rows]
    assert rebuild(read) == rebuild([PnlFill(*r) for r in rows])


def test_unrealized_pnl_of_open_positions_at_marks(writer: Writer) -> None:
    wp = writer.path
    wp.record_fill(fill("Sell", "0.02", "100000", at=1))
    wp.record_fill(fill("Sell", "0.01", "103000", at=2))
    wp.record_fill(fill("Buy", "0.5", "3000", symbol="ETHUSDT", bot_id=LX, at=3))
    stats = rebuild_completed_trades(writer.engine)
    lines = pnl_store.unrealized(stats.open_positions, {"BTCUSDT": D("99000")})

    by_symbol = {line.symbol: line for line in lines}
    btc = by_symbol["BTCUSDT"]
    assert (btc.side, btc.size, btc.avg_entry_price) == ("Sell", D("0.03"), D(101000))
    assert btc.unrealized_pnl == D(60) == unrealized_pnl(stats.open_positions[1], D(99000))
    assert btc.notional == D(2970)
    eth = by_symbol["ETHUSDT"]
    assert (eth.mark_price, eth.unrealized_pnl) == (None, None)  # no mark: no guess
    with pytest.raises(ValidationError):
        pnl_store.unrealized(stats.open_positions, {"BTCUSDT": D(0)})


def test_bad_arguments_are_rejected_before_any_work(writer: Writer) -> None:
    with pytest.raises(ValidationError):
        rebuild_completed_trades(writer.engine, [])
    with pytest.raises(ValidationError):
        rebuild_completed_trades(writer.engine, workers=0)


def test_without_worker_processes_the_rebuild_runs_in_process(
    writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer.path.record_fill(fill("Buy", "1", "100", at=1))
    writer.path.record_fill(fill("Sell", "1", "101", at=2))

    def refuse(method: str) -> Any:
        raise AssertionError("daemonic processes are not allowed to have children")

    monkeypatch.setattr(pnl_store.multiprocessing, "get_context", refuse)
    stats = rebuild_completed_trades(writer.engine, workers=2)

    assert (stats.workers, stats.inserted) == (1, 1)


def insert_raw_fills(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Many raw fills in one transaction (fields as :func:`insert_raw_fill`)."""
    defaults = {
        "bot_id": SS,
        "symbol": "BTCUSDT",
        "order_id": "o",
        "client_order_id": "",
        "close_reason": None,
        "commission": D(0),
        "exec_type": "Trade",
    }
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO trading.fills (exec_id, bot_id, symbol, order_id, client_order_id, "
                "side, exec_price, exec_qty, exec_time, close_reason, commission, exec_type) "
                "VALUES (:exec_id, :bot_id, :symbol, :order_id, :client_order_id, :side, "
                ":exec_price, :exec_qty, :exec_time, :close_reason, :commission, :exec_type)"
            ),
            [{**defaults, **row} for row in rows],
        )


def tape(n_trips: int) -> list[dict[str, Any]]:
    """Round trips on three symbols of two bots, exiting at shared instants: partial and
    whole exits, scale-ins, a flip, zero fees and rebates, a price under 1e-6, escapes."""
    rows: list[dict[str, Any]] = []
    symbols = [(SS, "BTCUSDT"), (SS, "1000PEPEUSDT"), (LX, "ETHUSDT")]
    for k in range(n_trips):
        t = T0 + timedelta(minutes=10 * k)
        for j, (bot, symbol) in enumerate(symbols):
            entry, exit_ = ("Sell", "Buy") if (k + j) % 2 else ("Buy", "Sell")
            price = D("0.00000012") if symbol == "1000PEPEUSDT" else D(100 + k + j)
            common = {"bot_id": bot, "symbol": symbol, "exec_price": price}
            rows += [
                {
                    **common,
                    "exec_id": f"{k}-{j}-a",
                    "side": entry,
                    "exec_qty": D("0.3"),
                    "exec_time": t + timedelta(seconds=1),
                    "commission": D("0.0003"),
                    "close_reason": "break\\out" if k == 1 else None,
                },
                {
                    **common,
                    "exec_id": f"{k}-{j}-b",
                    "side": entry,
                    "exec_qty": D("0.2"),
                    "exec_time": t + timedelta(seconds=2 + j),
                    "commission": D("-0.00001"),
                },
                {
                    **common,
                    "exec_id": f"{k}-{j}-c",
                    "side": exit_,
                    "exec_qty": D("0.1"),
                    "exec_price": price * 2,
                    "exec_time": t + timedelta(seconds=5),
                },
                # every pair's last exit at the same instant: the rows tie on exit_time
                {
                    **common,
                    "exec_id": f"{k}-{j}-d",
                    "side": exit_,
                    "exec_qty": D("0.4"),
                    "exec_time": t + timedelta(seconds=9),
                    "commission": D("0.0007"),
                    "close_reason": "take\tprofit",
                },
            ]
    rows.append(  # a flip: closes 0.5 short and opens 0.5 long
        {
            "exec_id": "flip-a",
            "symbol": "SOLUSDT",
            "side": "Sell",
            "exec_price": D(20),
            "exec_qty": D("0.5"),
            "exec_time": T0,
            "commission": D("0.01"),
        }
    )
    rows.append(
        {
            "exec_id": "flip-b",
            "symbol": "SOLUSDT",
            "side": "Buy",
            "exec_price": D(19),
            "exec_qty": D("1"),
            "exec_time": T0 + timedelta(hours=1),
            "commission": D("0.03"),
        }
    )
    return rows


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    """Every column the rebuild decides, in id order (the timestamps are the clock's)."""
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT id, trade_id, bot_id, symbol, entry_order_id, entry_client_order_id, "
                    "entry_side, entry_price, entry_qty, entry_time, entry_reason, "
                    "entry_commission, exit_order_id, exit_client_order_id, exit_side, "
                    "exit_price, exit_qty, exit_time, exit_reason, exit_commission, gross_pnl, "
                    "net_pnl, pnl_pct, total_commission, holding_duration_seconds, source "
                    "FROM trading.completed_trades ORDER BY id"
                )
            )
        ]


def restart(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM trading.completed_trades"))
        conn.execute(text("ALTER SEQUENCE trading.completed_trades_id_seq RESTART WITH 1"))


def test_rows_are_written_in_exit_order_whatever_the_batches(
    writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert_raw_fills(writer.engine, tape(4))
    reference = rebuild_completed_trades(writer.engine)
    rows = stored(writer.engine)
    restart(writer.engine)
    # Batches of 2 fills, and a first statement of 3 that ends inside an instant (3 fills).
    monkeypatch.setattr(pnl_store, "_STREAM_ROWS", 2)
    monkeypatch.setattr(pnl_store, "_FIRST_ROWS", 3)
    small = rebuild_completed_trades(writer.engine)

    assert stored(writer.engine) == rows
    assert (small.inserted, small.fills_read, small.realized) == (
        reference.inserted,
        reference.fills_read,
        reference.realized,
    )
    assert small.open_positions == reference.open_positions
    with writer.engine.connect() as conn:
        by_exit = conn.execute(
            text("SELECT id FROM trading.completed_trades ORDER BY exit_time, trade_id")
        ).scalars()
        assert list(by_exit) == [r[0] for r in rows]  # ids follow (exit_time, trade_id)
    assert len({r[17] for r in rows}) < len(rows)  # the tape does have ties


def test_rows_written_straight_into_the_table_equal_the_rows_the_merge_inserts(
    writer: Writer,
) -> None:
    insert_raw_fills(writer.engine, tape(3))
    first = rebuild_completed_trades(writer.engine)  # nothing stored yet: COPY in order
    direct = stored(writer.engine)
    with writer.engine.begin() as conn:  # keep one row: the next rebuild has to merge
        conn.execute(text("DELETE FROM trading.completed_trades WHERE id > 1"))
    merged = rebuild_completed_trades(writer.engine)

    assert (first.inserted, merged.inserted, merged.unchanged) == (len(direct), len(direct) - 1, 1)
    assert [r[1:] for r in stored(writer.engine)] == [r[1:] for r in direct]
    again = rebuild_completed_trades(writer.engine)
    assert (again.inserted, again.updated, again.deleted, again.unchanged) == (0, 0, 0, len(direct))


def test_open_positions_and_realized_figures_equal_the_engines(writer: Writer) -> None:
    rows = tape(2)
    rows += [  # left open: a partly closed lot, with its entry fee split
        {
            "exec_id": "open-a",
            "symbol": "XRPUSDT",
            "side": "Buy",
            "exec_price": D("0.5"),
            "exec_qty": D(30),
            "exec_time": T0,
            "commission": D("0.07"),
        },
        {
            "exec_id": "open-b",
            "symbol": "XRPUSDT",
            "side": "Sell",
            "exec_price": D("0.6"),
            "exec_qty": D(7),
            "exec_time": T0 + timedelta(seconds=1),
            "commission": D("0.01"),
        },
    ]
    insert_raw_fills(writer.engine, rows)
    stats = rebuild_completed_trades(writer.engine)
    with writer.engine.connect() as conn:
        cur: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        result = rebuild(pnl_store.read_fills(cur, ("TRUE", ())))

    assert stats.open_positions == tuple(p for p in result.positions if p.lots)
    closed = {t.trade_id for t in result.round_trips}
    for line in stats.realized:
        mine = [r for r in result.realizations if r.bot_id == line.bot_id]
        assert line.net_pnl_round_trips == sum(
            (t.net_pnl for t in result.round_trips if t.bot_id == line.bot_id), D(0)
        )
        assert line.net_pnl_open_trips == sum(
            (r.net for r in mine if r.trade_id not in closed), D(0)
        )
