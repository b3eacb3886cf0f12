"""The FIFO P&L engine: hand-worked cases with exact values, then properties over random tapes."""

from __future__ import annotations

import dataclasses
import gc
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alpha_models.errors import ValidationError
from alpha_models.pnl import (
    TRADE_ID_MAX_LEN,
    FifoBook,
    OpenLot,
    PnlFill,
    PnlResult,
    PositionState,
    Realization,
    RoundTrip,
    SortedFifo,
    fill_order_key,
    make_trade_id,
    rebuild,
    sort_fills,
    sorted_round_trips,
    unrealized_pnl,
)

D = Decimal
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
BOT = "bot1"
SYM = "BTCUSDT"


class Tape:
    """Builds fills one second apart with exec ids e1, e2, ... (fill_id = sequence number)."""

    def __init__(self, bot_id: str = BOT, symbol: str = SYM) -> None:
        self.bot_id = bot_id
        self.symbol = symbol
        self.fills: list[PnlFill] = []

    def add(
        self,
        side: str,
        qty: str,
        price: str,
        fee: str = "0",
        *,
        at: timedelta | None = None,
        reason: str | None = None,
        bot_id: str | None = None,
        symbol: str | None = None,
    ) -> PnlFill:
        n = len(self.fills) + 1
        fill = PnlFill(
            fill_id=n,
            exec_id=f"e{n}",
            bot_id=bot_id or self.bot_id,
            symbol=symbol or self.symbol,
            side=side,
            price=D(price),
            qty=D(qty),
            fee=D(fee),
            exec_time=T0 + (at if at is not None else timedelta(seconds=n)),
            order_id=f"o{n}",
            client_order_id=f"c{n}",
            reason=reason,
        )
        self.fills.append(fill)
        return fill

    def rebuild(self) -> PnlResult:
        return rebuild(self.fills)


def net_total(result: PnlResult) -> Decimal:
    return sum((r.net for r in result.realizations), D(0))


def gross_total(result: PnlResult) -> Decimal:
    return sum((r.gross for r in result.realizations), D(0))


def only_trip(result: PnlResult) -> RoundTrip:
    assert len(result.round_trips) == 1
    return result.round_trips[0]


def position(result: PnlResult, bot_id: str = BOT, symbol: str = SYM) -> PositionState:
    pos = result.position(bot_id, symbol)
    assert pos is not None
    return pos


def assert_flat(pos: PositionState) -> None:
    assert (pos.side, pos.size, pos.avg_entry_price, pos.lots) == ("", D(0), None, ())


# --------------------------------------------------------------------------- hand-worked cases


def test_long_round_trip_with_fees_on_both_legs() -> None:
    tape = Tape()
    tape.add("Buy", "1", "100", "0.1", at=timedelta(0), reason="breakout")
    tape.add("Sell", "1", "110", "0.11", at=timedelta(seconds=3600.999999), reason="take_profit")
    result = tape.rebuild()

    (r,) = result.realizations
    assert (r.direction, r.qty, r.entry_price, r.exit_price) == ("long", D(1), D(100), D(110))
    assert (r.gross, r.entry_fee, r.exit_fee, r.net) == (D("10"), D("0.1"), D("0.11"), D("9.79"))
    assert (r.entry_exec_id, r.exit_exec_id, r.exit_reason) == ("e1", "e2", "take_profit")
    assert r.exit_time == tape.fills[1].exec_time  # dated when realized
    assert r.entry_time == T0

    trip = only_trip(result)
    assert trip == RoundTrip(
        trade_id="bot1:BTCUSDT:e1",
        bot_id=BOT,
        symbol=SYM,
        entry_side="Buy",
        exit_side="Sell",
        entry_price=D("100.00000000"),
        entry_qty=D("1"),
        entry_time=T0,
        entry_reason="breakout",
        entry_commission=D("0.1"),
        entry_order_id="o1",
        entry_client_order_id="c1",
        exit_price=D("110.00000000"),
        exit_qty=D("1"),
        exit_time=tape.fills[1].exec_time,
        exit_reason="take_profit",
        exit_commission=D("0.11"),
        exit_order_id="o2",
        exit_client_order_id="c2",
        gross_pnl=D("10"),
        total_commission=D("0.21"),
        net_pnl=D("9.79"),
        pnl_pct=D("9.790000"),
        holding_duration_seconds=3600,  # floored, not rounded
        n_entries=1,
        n_exits=1,
    )
    assert str(trip.entry_price) == "100.00000000"  # 8 dp, as stored
    assert str(trip.pnl_pct) == "9.790000"  # 6 dp, as stored
    assert r.trade_id == trip.trade_id
    assert_flat(position(result))


def test_short_round_trip_s1() -> None:
    tape = Tape()
    tape.add("Sell", "1", "100")
    tape.add("Buy", "1", "90")
    result = tape.rebuild()
    (r,) = result.realizations
    assert (r.direction, r.gross, r.net) == ("short", D(10), D(10))
    trip = only_trip(result)
    assert (trip.entry_side, trip.exit_side, trip.net_pnl, trip.pnl_pct) == (
        "Sell",
        "Buy",
        D(10),
        D("10.000000"),
    )
    assert_flat(position(result))


def test_two_short_round_trips_s2() -> None:
    tape = Tape()
    tape.add("Sell", "1", "100")
    tape.add("Buy", "1", "90")
    tape.add("Sell", "1", "95")
    tape.add("Buy", "1", "97")
    result = tape.rebuild()
    assert [t.net_pnl for t in result.round_trips] == [D(10), D(-2)]
    assert [t.trade_id for t in result.round_trips] == ["bot1:BTCUSDT:e1", "bot1:BTCUSDT:e3"]
    assert net_total(result) == D(8)


def test_two_entries_one_exit_s3() -> None:
    tape = Tape()
    tape.add("Buy", "0.4", "100")
    tape.add("Buy", "0.6", "100")
    tape.add("Sell", "1", "110")
    result = tape.rebuild()
    assert [(r.qty, r.entry_exec_id, r.gross) for r in result.realizations] == [
        (D("0.4"), "e1", D("4.0")),
        (D("0.6"), "e2", D("6.0")),
    ]
    trip = only_trip(result)
    assert (trip.entry_qty, trip.exit_qty, trip.net_pnl) == (D(1), D(1), D(10))
    assert (trip.n_entries, trip.n_exits) == (2, 1)
    assert (trip.entry_order_id, trip.exit_order_id) == ("o1", "o3")


def test_one_entry_two_exits_s4() -> None:
    tape = Tape()
    tape.add("Buy", "1", "100")
    tape.add("Sell", "0.5", "110", reason="tp1")
    tape.add("Sell", "0.5", "120", reason="tp2")
    result = tape.rebuild()
    assert [r.gross for r in result.realizations] == [D(5), D(10)]
    assert [r.exit_reason for r in result.realizations] == ["tp1", "tp2"]
    trip = only_trip(result)
    assert (trip.net_pnl, trip.exit_price, trip.n_exits) == (D(15), D("115.00000000"), 2)
    assert (trip.exit_reason, trip.exit_time) == ("tp2", tape.fills[2].exec_time)


def test_scale_in_then_one_exit_s5() -> None:
    tape = Tape()
    tape.add("Buy", "1", "100")
    tape.add("Buy", "1", "120")
    tape.add("Sell", "2", "110")
    result = tape.rebuild()
    assert [(r.entry_price, r.gross) for r in result.realizations] == [
        (D(100), D(10)),
        (D(120), D(-10)),
    ]
    trip = only_trip(result)
    assert (trip.gross_pnl, trip.net_pnl, trip.pnl_pct) == (D(0), D(0), D(0))
    assert (trip.entry_price, trip.exit_price, trip.entry_qty) == (D(110), D(110), D(2))


def test_one_entry_three_partial_exits_splits_the_entry_fee_without_dust() -> None:
    tape = Tape()
    tape.add("Buy", "3", "100", "0.1")
    tape.add("Sell", "1", "101")
    tape.add("Sell", "1", "102")
    tape.add("Sell", "1", "103")
    result = tape.rebuild()
    assert [r.gross for r in result.realizations] == [D(1), D(2), D(3)]
    # 0.1 / 3 quantized to 8 dp (half-even); the last piece takes the exact remainder.
    assert [r.entry_fee for r in result.realizations] == [
        D("0.03333333"),
        D("0.03333333"),
        D("0.03333334"),
    ]
    assert [r.net for r in result.realizations] == [
        D("0.96666667"),
        D("1.96666667"),
        D("2.96666666"),
    ]
    trip = only_trip(result)
    assert (trip.entry_commission, trip.net_pnl, trip.n_exits) == (D("0.1"), D("5.9"), 3)


def test_partial_exit_leaves_the_rest_of_the_entry_fee_on_the_open_lot() -> None:
    tape = Tape()
    tape.add("Buy", "3", "100", "0.1")
    tape.add("Sell", "1", "101")
    result = tape.rebuild()
    pos = position(result)
    (lot,) = pos.lots
    assert (lot.original_qty, lot.remaining_qty) == (D(3), D(2))
    assert lot.remaining_entry_fee == D("0.06666667")
    assert result.realizations[0].entry_fee + lot.remaining_entry_fee == D("0.1")
    assert result.round_trips == ()


def test_an_exit_spanning_lots_splits_its_fee_pro_rata() -> None:
    tape = Tape()
    tape.add("Buy", "1", "100")
    tape.add("Buy", "2", "100")
    tape.add("Sell", "3", "100", "0.1")
    result = tape.rebuild()
    assert [r.exit_fee for r in result.realizations] == [D("0.03333333"), D("0.06666667")]
    assert only_trip(result).exit_commission == D("0.1")


def test_flip_from_long_to_short_in_one_fill() -> None:
    tape = Tape()
    tape.add("Buy", "1", "100", "0.1")
    flip = tape.add("Sell", "3", "110", "0.1")
    result = tape.rebuild()

    (r,) = result.realizations
    assert (r.qty, r.gross, r.entry_fee, r.net) == (D(1), D(10), D("0.1"), D("9.86666667"))
    assert r.exit_fee == D("0.03333333")  # 0.1 * 1/3, quantized

    trip = only_trip(result)  # the long round trip is closed by the flip
    assert (trip.entry_side, trip.exit_qty, trip.exit_commission) == ("Buy", D(1), r.exit_fee)
    assert trip.net_pnl == D("9.86666667")

    pos = position(result)
    assert (pos.side, pos.size, pos.avg_entry_price) == ("Sell", D(2), D("110.00000000"))
    (lot,) = pos.lots
    assert lot == OpenLot(
        bot_id=BOT,
        symbol=SYM,
        side="Sell",
        entry_exec_id=flip.exec_id,
        entry_time=flip.exec_time,
        price=D(110),
        original_qty=D(2),
        remaining_qty=D(2),
        remaining_entry_fee=D("0.06666667"),  # the rest of the flip fill's fee, exactly
        entry_fill_id=2,
        entry_order_id="o2",
    )

    # Closing the short: a second round trip, which started with the flip fill.
    tape.add("Buy", "2", "105", "0.05", reason="stop")
    result = tape.rebuild()
    second = result.round_trips[1]
    assert (second.trade_id, second.entry_side, second.entry_time) == (
        "bot1:BTCUSDT:e2",
        "Sell",
        flip.exec_time,
    )
    assert (second.entry_qty, second.gross_pnl, second.total_commission) == (
        D(2),
        D(10),
        D("0.11666667"),
    )
    assert second.net_pnl == D("9.88333333")
    assert (second.entry_reason, second.exit_reason) == (None, "stop")
    assert_flat(position(result))
    # Fees charged == fees booked: 0.1 + 0.1 + 0.05.
    assert sum(t.total_commission for t in result.round_trips) == D("0.25")


def test_flip_from_short_to_long() -> None:
    tape = Tape()
    tape.add("Sell", "1", "100")
    tape.add("Buy", "1.5", "90")
    result = tape.rebuild()
    assert only_trip(result).net_pnl == D(10)
    pos = position(result)
    assert (pos.side, pos.size, pos.avg_entry_price) == ("Buy", D("0.5"), D("90.00000000"))


def test_negative_fee_rebate_increases_net() -> None:
    tape = Tape()
    tape.add("Buy", "1", "100", "-0.01")
    tape.add("Sell", "1", "100", "-0.01")
    trip = only_trip(tape.rebuild())
    assert (trip.gross_pnl, trip.total_commission, trip.net_pnl) == (D(0), D("-0.02"), D("0.02"))


def test_open_remainder_position_state_and_unrealized_pnl() -> None:
    tape = Tape()
    tape.add("Buy", "1", "100", "0.01")
    tape.add("Buy", "1", "102", "0.02")
    tape.add("Sell", "0.5", "101")
    result = tape.rebuild()
    (r,) = result.realizations
    assert (r.qty, r.entry_price, r.gross, r.entry_fee) == (D("0.5"), D(100), D("0.5"), D("0.005"))

    pos = position(result)
    assert (pos.side, pos.size) == ("Buy", D("1.5"))
    assert pos.avg_entry_price == D("101.33333333")  # 152 / 1.5, quantized to 8 dp
    assert [(lot.remaining_qty, lot.remaining_entry_fee) for lot in pos.lots] == [
        (D("0.5"), D("0.005")),
        (D(1), D("0.02")),
    ]
    assert unrealized_pnl(pos, D(103)) == D("2.5")
    assert unrealized_pnl(pos.lots, D(99)) == D("-3.5")
    assert unrealized_pnl(result.open_lots, D("101.5")) == D("0.25")
    assert result.round_trips == ()


def test_unrealized_pnl_of_a_short_and_of_flat() -> None:
    tape = Tape()
    tape.add("Sell", "2", "50")
    pos = position(tape.rebuild())
    assert unrealized_pnl(pos, D(45)) == D(10)
    assert unrealized_pnl([], D(45)) == 0
    with pytest.raises(ValidationError) as exc:
        unrealized_pnl(pos, D("NaN"))
    assert exc.value.field == "mark_price"


def test_symbols_and_bots_are_independent_books() -> None:
    tape = Tape()
    tape.add("Buy", "1", "100", symbol="BTCUSDT")
    tape.add("Sell", "1", "10", symbol="ETHUSDT")
    tape.add("Buy", "1", "100", bot_id="bot2")
    tape.add("Sell", "1", "105", symbol="BTCUSDT")
    result = tape.rebuild()
    assert only_trip(result).net_pnl == D(5)
    assert [(p.bot_id, p.symbol, p.side, p.size) for p in result.positions] == [
        ("bot1", "BTCUSDT", "", D(0)),
        ("bot1", "ETHUSDT", "Sell", D(1)),
        ("bot2", "BTCUSDT", "Buy", D(1)),
    ]


def test_pnl_pct_rounds_half_even_to_six_places() -> None:
    # net = 0.0000025 on a notional of 100 -> 0.0000025 % -> 0.000002 (half-even, not up)
    tape = Tape()
    tape.add("Buy", "1", "100", "-0.00000125")
    tape.add("Sell", "1", "100", "-0.00000125")
    assert only_trip(tape.rebuild()).pnl_pct == D("0.000002")
    # net = 0.0000035 -> 0.000004
    tape = Tape()
    tape.add("Buy", "1", "100", "-0.00000175")
    tape.add("Sell", "1", "100", "-0.00000175")
    assert only_trip(tape.rebuild()).pnl_pct == D("0.000004")


def test_averages_are_qty_weighted_and_quantized() -> None:
    tape = Tape()
    tape.add("Buy", "1", "100")
    tape.add("Buy", "2", "101")
    tape.add("Sell", "3", "102")
    trip = only_trip(tape.rebuild())
    assert trip.entry_price == D("100.66666667")  # 302 / 3
    assert trip.gross_pnl == D(4)  # exact: from the lots, not from the rounded average
    assert trip.pnl_pct == D("1.324503")  # 4 / 302 * 100 = 1.32450331...


def test_large_values_stay_exact_whatever_the_callers_decimal_context() -> None:
    tape = Tape()
    tape.add("Buy", "12345678.12345678", "123456789012.12345678")
    tape.add("Sell", "12345678.12345678", "123456789013.87654321")
    with localcontext() as ctx:
        ctx.prec = 6  # an engine using the ambient context would round everything here
        result = tape.rebuild()
    expected = D("1.75308643") * D("12345678.12345678")  # evaluated at the default prec 28
    assert result.realizations[0].gross == expected == D("21643040.7873799457094954")


def test_trade_id_is_deterministic_and_fits_the_column() -> None:
    assert make_trade_id("bot1", "BTCUSDT", "abc") == "bot1:BTCUSDT:abc"
    long_exec = "x" * 64
    tid = make_trade_id("b" * 50, "SYMBOLUSDT", long_exec)
    assert len(tid) <= TRADE_ID_MAX_LEN
    assert tid.startswith("sha1:")
    assert tid == make_trade_id("b" * 50, "SYMBOLUSDT", long_exec)
    assert tid != make_trade_id("b" * 50, "SYMBOLUSDT", "y" * 64)
    assert len(make_trade_id("b" * 40, "S" * 20, "e" * 38)) == TRADE_ID_MAX_LEN  # not hashed

    tape = Tape(bot_id="b" * 50)
    tape.add("Buy", "1", "1")
    tape.add("Sell", "1", "2")
    tape.fills = [dataclasses.replace(f, exec_id=f.exec_id * 40) for f in tape.fills]
    trip = only_trip(tape.rebuild())
    assert trip.trade_id == make_trade_id("b" * 50, SYM, "e1" * 40)
    assert len(trip.trade_id) <= TRADE_ID_MAX_LEN


# --------------------------------------------------------------------------- ordering, duplicates


def mixed_tape() -> list[PnlFill]:
    tape = Tape()
    same_time = timedelta(seconds=30)
    tape.add("Buy", "1", "100", "0.1")
    tape.add("Buy", "0.5", "101", "0.05", at=same_time)
    tape.add("Buy", "0.25", "102", "0.01", at=same_time)  # same instant: fill_id decides
    tape.add("Sell", "1", "20", "0.02", symbol="ETHUSDT")
    tape.add("Sell", "2", "103", "0.3", reason="flip")
    tape.add("Buy", "0.5", "19", symbol="ETHUSDT")
    tape.add("Buy", "0.3", "99", bot_id="bot2")
    tape.add("Buy", "1", "98", "0.01")
    tape.add("Sell", "0.3", "97", bot_id="bot2")
    tape.add("Sell", "0.7", "104")
    return tape.fills


def test_rebuild_is_independent_of_input_order() -> None:
    fills = mixed_tape()
    reference = rebuild(fills)
    assert rebuild(fills) == reference  # twice gives the same result
    rng = random.Random(7)
    for _ in range(20):
        shuffled = fills[:]
        rng.shuffle(shuffled)
        assert rebuild(shuffled) == reference
    assert rebuild(reversed(fills)) == reference  # any iterable


def test_same_instant_fills_follow_fill_id_then_exec_id() -> None:
    t = T0 + timedelta(seconds=5)
    a = PnlFill(2, "zzz", BOT, SYM, "Buy", D(100), D(1), D(0), t)
    b = PnlFill(1, "yyy", BOT, SYM, "Buy", D(101), D(1), D(0), t)
    c = PnlFill(None, "xxx", BOT, SYM, "Buy", D(102), D(1), D(0), t)
    c_other_tz = dataclasses.replace(c, exec_time=t.astimezone(timezone(timedelta(hours=2))))
    expected = [c, b, a]
    assert sort_fills([a, b, c]) == sorted([a, b, c], key=fill_order_key) == expected
    assert sort_fills([a, c_other_tz, b]) == [c_other_tz, b, a]  # same instant, other zone
    lots = rebuild([a, b, c]).open_lots
    assert [lot.entry_exec_id for lot in lots] == ["xxx", "yyy", "zzz"]


def test_incremental_apply_matches_rebuild() -> None:
    fills = mixed_tape()
    book = FifoBook()
    produced: list[Realization] = []
    for fill in sorted(fills, key=fill_order_key):
        produced.extend(book.apply(fill))
    assert book.result() == rebuild(fills)
    assert tuple(produced) == book.realizations()
    assert book.open_lots() == rebuild(fills).open_lots
    assert book.positions() == rebuild(fills).positions


def test_apply_returns_the_realizations_of_that_fill() -> None:
    tape = Tape()
    book = FifoBook()
    assert book.apply(tape.add("Buy", "1", "100")) == []
    assert book.apply(tape.add("Buy", "1", "110")) == []
    out = book.apply(tape.add("Sell", "1.5", "120"))
    assert [(r.entry_exec_id, r.qty, r.gross) for r in out] == [
        ("e1", D(1), D(20)),
        ("e2", D("0.5"), D("5.0")),
    ]
    assert book.round_trips() == ()
    position_ = book.position(BOT, SYM)
    assert position_ is not None and position_.size == D("0.5")
    assert book.position(BOT, "NOPE") is None


def test_duplicate_exec_id_is_ignored() -> None:
    tape = Tape()
    entry = tape.add("Buy", "1", "100", "0.1")
    exit_ = tape.add("Sell", "1", "110", "0.1")
    book = FifoBook()
    book.apply(entry)
    assert len(book.apply(exit_)) == 1
    assert book.apply(exit_) == []  # the same fill again
    stored_copy = dataclasses.replace(entry, fill_id=None, reason="from the db", order_id="x")
    assert book.apply(stored_copy) == []  # same exec_id, same economics, other metadata
    assert len(book.realizations()) == 1
    assert len(book.round_trips()) == 1
    assert rebuild([entry, exit_, exit_, entry, exit_]) == rebuild([entry, exit_])


def test_conflicting_duplicate_exec_id_is_rejected() -> None:
    tape = Tape()
    entry = tape.add("Buy", "1", "100")
    book = FifoBook()
    book.apply(entry)
    with pytest.raises(ValidationError) as exc:
        book.apply(dataclasses.replace(entry, qty=D(2)))
    assert exc.value.field == "exec_id"
    with pytest.raises(ValidationError):
        rebuild([entry, dataclasses.replace(entry, price=D(101))])


def test_incremental_apply_rejects_an_older_fill_and_keeps_its_state() -> None:
    tape = Tape()
    first = tape.add("Buy", "1", "100", at=timedelta(seconds=10))
    late = tape.add("Sell", "1", "110", at=timedelta(seconds=5))
    book = FifoBook()
    book.apply(first)
    before = book.result()
    with pytest.raises(ValidationError) as exc:
        book.apply(late)
    assert exc.value.field == "exec_time"
    assert "older than the last fill" in str(exc.value)
    assert book.result() == before
    # Another (bot, symbol) has its own clock; and rebuild sorts, so it accepts the pair.
    assert book.apply(dataclasses.replace(late, exec_id="e9", symbol="ETHUSDT")) == []
    trip = only_trip(rebuild([first, late]))  # sorted: Sell 1 @110 then Buy 1 @100
    assert (trip.entry_side, trip.net_pnl) == ("Sell", D(10))


def test_incremental_apply_rejects_a_smaller_fill_id_at_the_same_instant() -> None:
    t = T0 + timedelta(seconds=1)
    book = FifoBook()
    book.apply(PnlFill(5, "a", BOT, SYM, "Buy", D(1), D(1), D(0), t))
    with pytest.raises(ValidationError):
        book.apply(PnlFill(4, "b", BOT, SYM, "Buy", D(1), D(1), D(0), t))
    assert book.apply(PnlFill(None, "c", BOT, SYM, "Buy", D(1), D(1), D(0), t)) == []
    assert book.apply(PnlFill(6, "d", BOT, SYM, "Buy", D(1), D(1), D(0), t)) == []


def test_rebuild_restores_the_garbage_collector_state() -> None:
    fills = mixed_tape()
    assert gc.isenabled()
    rebuild(fills)
    assert gc.isenabled()
    gc.disable()
    try:
        rebuild(fills)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_output_records_are_frozen_and_equal_to_publicly_built_ones() -> None:
    tape = Tape()
    tape.add("Buy", "1", "100", "0.1")
    tape.add("Sell", "1", "110", "0.1")
    tape.add("Buy", "1", "100")
    result = tape.rebuild()
    records: list[object] = [
        result.realizations[0],
        result.round_trips[0],
        result.open_lots[0],
        tape.fills[0],
    ]
    for record in records:
        rebuilt = dataclasses.replace(record)  # type: ignore[type-var]  # via public __init__
        assert rebuilt == record and hash(rebuilt) == hash(record)
        assert repr(rebuilt) == repr(record)
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.bot_id = "other"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- validation


def make_fill(**overrides: object) -> PnlFill:
    values: dict[str, object] = {
        "fill_id": 1,
        "exec_id": "e1",
        "bot_id": BOT,
        "symbol": SYM,
        "side": "Buy",
        "price": D("100"),
        "qty": D("1"),
        "fee": D("0.01"),
        "exec_time": T0,
    }
    values.update(overrides)
    return PnlFill(**values)  # type: ignore[arg-type]


def test_a_valid_fill_is_accepted() -> None:
    fill = make_fill(fee=D("-0.5"), fill_id=None, reason="tp", exec_time=T0.astimezone())
    assert (fill.fee, fill.order_id, fill.client_order_id, fill.reason) == (D("-0.5"), "", "", "tp")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("side", "buy"),
        ("side", "BUY"),
        ("side", "long"),
        ("side", ""),
        ("price", D("NaN")),
        ("price", D("sNaN")),
        ("price", D("Infinity")),
        ("price", D("-Infinity")),
        ("price", D("0")),
        ("price", D("-0")),
        ("price", D("-1")),
        ("price", 100.0),
        ("price", 100),
        ("price", D(0.1)),  # a float that went through Decimal(): 55 decimal places
        ("price", D("1E+20")),
        ("qty", D("NaN")),
        ("qty", D("Infinity")),
        ("qty", D("0")),
        ("qty", D("-0.5")),
        ("fee", D("NaN")),
        ("fee", D("Infinity")),
        ("fee", D("-Infinity")),
        ("fee", 0.01),
        ("exec_time", datetime(2024, 3, 1, 12, 0)),  # naive
        ("exec_time", "2024-03-01T12:00:00Z"),
        ("exec_id", ""),
        ("bot_id", ""),
        ("symbol", None),
        ("fill_id", True),
        ("reason", 3),
    ],
)
def test_invalid_fill_is_rejected_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as exc:
        make_fill(**{field: value})
    assert exc.value.field == field


def test_zero_fee_is_valid() -> None:
    assert make_fill(fee=D("0")).fee == 0


# --------------------------------------------------------------------------- properties

KEYS = [(BOT, "BTCUSDT"), (BOT, "ETHUSDT"), ("bot2", "BTCUSDT")]

# (key index, side, qty in 1e-8 units, price in 1e-8 units, fee in 1e-8 units)
steps = st.tuples(
    st.integers(0, len(KEYS) - 1),
    st.sampled_from(["Buy", "Sell"]),
    st.integers(1, 5 * 10**8),
    st.integers(1, 10**12),
    st.integers(-(10**5), 10**7),
)
tapes = st.lists(steps, min_size=1, max_size=40)


def e8(units: int) -> Decimal:
    return Decimal(units).scaleb(-8)


def to_fills(
    tape: Sequence[tuple[int, str, int, int, int]], *, with_fees: bool = True
) -> list[PnlFill]:
    fills = []
    for i, (k, side, qty, price, fee) in enumerate(tape):
        bot_id, symbol = KEYS[k]
        fills.append(
            PnlFill(
                fill_id=i + 1,
                exec_id=f"x{i:04d}",
                bot_id=bot_id,
                symbol=symbol,
                side=side,
                price=e8(price),
                qty=e8(qty),
                fee=e8(fee) if with_fees else D(0),
                exec_time=T0 + timedelta(seconds=i),
            )
        )
    return fills


def signed(fill: PnlFill) -> Decimal:
    return fill.qty if fill.side == "Buy" else -fill.qty


def closing_fills(fills: Sequence[PnlFill], price_units: int, fee_units: int) -> list[PnlFill]:
    """One fill per (bot, symbol) that brings the tape back to flat."""
    net: dict[tuple[str, str], Decimal] = {}
    for f in fills:
        net[(f.bot_id, f.symbol)] = net.get((f.bot_id, f.symbol), D(0)) + signed(f)
    out = []
    for j, ((bot_id, symbol), pos) in enumerate(sorted(net.items())):
        if pos:
            out.append(
                PnlFill(
                    fill_id=None,
                    exec_id=f"close{j}",
                    bot_id=bot_id,
                    symbol=symbol,
                    side="Sell" if pos > 0 else "Buy",
                    price=e8(price_units),
                    qty=abs(pos),
                    fee=e8(fee_units),
                    exec_time=T0 + timedelta(days=1),
                )
            )
    return out


def total(values: Iterable[Decimal]) -> Decimal:
    return sum(values, D(0))


def fees_booked(result: PnlResult) -> Decimal:
    return total(r.entry_fee + r.exit_fee for r in result.realizations) + total(
        lot.remaining_entry_fee for lot in result.open_lots
    )


PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(tapes)
def test_quantity_is_conserved(tape: list[tuple[int, str, int, int, int]]) -> None:
    fills = to_fills(tape)
    result = rebuild(fills)
    for bot_id, symbol in {(f.bot_id, f.symbol) for f in fills}:
        mine = [f for f in fills if (f.bot_id, f.symbol) == (bot_id, symbol)]
        realized = total(
            r.qty for r in result.realizations if (r.bot_id, r.symbol) == (bot_id, symbol)
        )
        pos = position(result, bot_id, symbol)
        open_qty = total(lot.remaining_qty for lot in pos.lots)
        # every realized unit used one unit of an opening fill and one of a closing fill
        assert total(f.qty for f in mine) == 2 * realized + open_qty
        assert pos.size == open_qty
        direction = {"Buy": 1, "Sell": -1, "": 0}[pos.side]
        assert total(signed(f) for f in mine) == direction * open_qty
        assert all(lot.side == pos.side for lot in pos.lots)
    for trip in result.round_trips:
        assert trip.entry_qty == trip.exit_qty
    # fees: every unit charged is either realized or still on an open lot
    assert fees_booked(result) == total(f.fee for f in fills)


@PROPERTY
@given(tapes, st.integers(1, 10**12), st.integers(-(10**5), 10**7))
def test_a_tape_that_ends_flat_realizes_exactly_its_cash_flow(
    tape: list[tuple[int, str, int, int, int]], close_price: int, close_fee: int
) -> None:
    fills = to_fills(tape)
    fills += closing_fills(fills, close_price, close_fee)
    result = rebuild(fills)

    sells = total(f.price * f.qty for f in fills if f.side == "Sell")
    buys = total(f.price * f.qty for f in fills if f.side == "Buy")
    fees = total(f.fee for f in fills)
    assert gross_total(result) == sells - buys
    assert net_total(result) == sells - buys - fees
    assert total(t.net_pnl for t in result.round_trips) == sells - buys - fees
    assert total(t.total_commission for t in result.round_trips) == fees
    for pos in result.positions:
        assert_flat(pos)
    for trip in result.round_trips:
        pieces = [r for r in result.realizations if r.trade_id == trip.trade_id]
        assert trip.net_pnl == total(r.net for r in pieces)
        assert trip.gross_pnl == total(r.gross for r in pieces)
        assert trip.net_pnl == trip.gross_pnl - trip.total_commission
        assert trip.exit_qty == trip.entry_qty == total(r.qty for r in pieces)
        assert trip.exit_time >= trip.entry_time
        assert trip.holding_duration_seconds >= 0
    assert len({t.trade_id for t in result.round_trips}) == len(result.round_trips)


@st.composite
def tape_and_split(
    draw: st.DrawFn,
) -> tuple[list[tuple[int, str, int, int, int]], int, list[int], list[int]]:
    tape = draw(tapes)
    index = draw(st.integers(0, len(tape) - 1))
    _, _, qty, _, fee = tape[index]
    cuts: list[int] = []
    if qty >= 2:
        cuts = sorted(draw(st.lists(st.integers(1, qty - 1), min_size=1, max_size=3, unique=True)))
    qtys = [b - a for a, b in zip([0, *cuts], [*cuts, qty], strict=True)]
    # any exact split of the fee (pieces need not be proportional, may have either sign)
    fee_parts = [draw(st.integers(-(10**5), 10**6)) for _ in qtys[1:]]
    fees = [fee - sum(fee_parts), *fee_parts]
    return tape, index, qtys, fees


def split_fill(fills: list[PnlFill], index: int, qtys: list[int], fees: list[int]) -> list[PnlFill]:
    """The same tape with fill ``index`` replaced by pieces at the same price, side and time."""
    fill = fills[index]
    pieces = [
        dataclasses.replace(fill, exec_id=f"{fill.exec_id}.{j}", qty=e8(q), fee=e8(fee))
        for j, (q, fee) in enumerate(zip(qtys, fees, strict=True))
    ]
    return fills[:index] + pieces + fills[index + 1 :]


def open_exposure(result: PnlResult) -> list[tuple[str, str, str, Decimal, Decimal]]:
    return [
        (p.bot_id, p.symbol, p.side, p.size, total(lot.price * lot.remaining_qty for lot in p.lots))
        for p in result.positions
    ]


@PROPERTY
@given(tape_and_split())
def test_splitting_a_fill_without_fees_changes_nothing_realized(
    case: tuple[list[tuple[int, str, int, int, int]], int, list[int], list[int]],
) -> None:
    tape, index, qtys, _ = case
    fills = to_fills(tape, with_fees=False)
    whole = rebuild(fills)
    split = rebuild(split_fill(fills, index, qtys, [0] * len(qtys)))
    assert gross_total(split) == gross_total(whole)
    assert net_total(split) == net_total(whole) == gross_total(whole)
    assert open_exposure(split) == open_exposure(whole)
    assert [t.net_pnl for t in split.round_trips] == [t.net_pnl for t in whole.round_trips]


@PROPERTY
@given(tape_and_split(), st.integers(1, 10**12))
def test_splitting_a_fill_with_fees_keeps_gross_and_every_fee_unit(
    case: tuple[list[tuple[int, str, int, int, int]], int, list[int], list[int]],
    close_price: int,
) -> None:
    tape, index, qtys, fees = case
    fills = to_fills(tape)
    pieces = split_fill(fills, index, qtys, fees)
    whole, split = rebuild(fills), rebuild(pieces)
    # Gross is exact and independent of the split; fees are re-allocated between realized
    # and open (8-dp pro-rata quantization) but no fee unit is lost or created.
    assert gross_total(split) == gross_total(whole)
    assert fees_booked(split) == fees_booked(whole) == total(f.fee for f in fills)
    assert open_exposure(split) == open_exposure(whole)
    # Once both end flat, realized net is exactly the same.
    closers = closing_fills(fills, close_price, 0)
    assert net_total(rebuild(pieces + closers)) == net_total(rebuild(fills + closers))


@PROPERTY
@given(tapes, st.randoms(use_true_random=False))
def test_rebuild_ignores_input_order_and_matches_incremental_apply(
    tape: list[tuple[int, str, int, int, int]], rng: random.Random
) -> None:
    fills = to_fills(tape)
    reference = rebuild(fills)
    shuffled = fills[:]
    rng.shuffle(shuffled)
    assert rebuild(shuffled) == reference
    book = FifoBook()
    for fill in fills:
        book.apply(fill)
    assert book.result() == reference


@PROPERTY
@given(tapes, st.integers(1, 5))
def test_the_sorted_fast_path_derives_the_reference_round_trips_and_positions(
    tape: list[tuple[int, str, int, int, int]], batches: int
) -> None:
    fills = to_fills(tape)  # in fill_order_key order, unique exec_ids: the rebuild's input
    reference = rebuild(fills)
    assert sorted_round_trips(fills) == (reference.round_trips, reference.positions)

    # Fed in several batches, the state carries over: the same trips, in the same order.
    def feed(fifo: SortedFifo, part: list[PnlFill]) -> list[tuple[object, ...]]:
        return fifo.feed(
            [(f.bot_id, f.symbol) for f in part],
            [f.side == "Buy" for f in part],
            [f.price for f in part],
            [f.qty for f in part],
            [f.fee for f in part],
            part,
        )

    whole, batched = SortedFifo(), SortedFifo()
    size = -(-len(fills) // batches)
    in_batches = [c for k in range(0, len(fills), size) for c in feed(batched, fills[k : k + size])]
    assert in_batches == feed(whole, fills)
    assert [c[3].exec_time for c in in_batches] == [t.exit_time for t in reference.round_trips]
    assert batched.open_runs() == whole.open_runs()


def test_the_sorted_fast_path_splits_fees_like_the_reference_on_a_flip_and_open_lots() -> None:
    tape = Tape()
    tape.add("Buy", "0.3", "100", fee="0.03")
    tape.add("Buy", "0.2", "101", fee="0.07")
    tape.add("Sell", "0.1", "102", fee="0.011")  # a piece of the first lot: its fee is split
    tape.add("Sell", "0.7", "103", fee="0.0777")  # empties both lots and flips to short 0.3
    tape.add("Buy", "0.1", "99", fee="0.001")  # a piece of the flip's lot
    reference = rebuild(tape.fills)
    trips, positions = sorted_round_trips(tape.fills)

    assert (trips, positions) == (reference.round_trips, reference.positions)
    (trip,) = trips
    # the flip fill's fee: 0.4 of its 0.7 closes (0.0444), 0.3 opens the short (0.0333)
    assert trip.exit_commission == D("0.011") + D("0.0444")
    (lot,) = positions[0].lots
    assert (lot.side, lot.remaining_qty, lot.remaining_entry_fee) == ("Sell", D("0.2"), D("0.0222"))
