"""Validated input models: what is accepted, how it is normalised, and every rejection."""

from __future__ import annotations

import dataclasses
import itertools
import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alpha_models.errors import ValidationError
from alpha_models.inputs import (
    KNOWN_BOTS,
    ORDER_STATUSES,
    ExecType,
    FillInput,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionUpdate,
    Side,
    to_decimal8,
    to_utc,
)

_ids = itertools.count(1)
T0 = datetime(2025, 11, 6, 1, 10, 4, 452000, tzinfo=UTC)


def fill_kwargs(**over: Any) -> dict[str, Any]:
    n = next(_ids)
    kw: dict[str, Any] = {
        "exec_id": f"e{n:08d}-17bf-4108-a467-c94b83002189",
        "bot_id": "shortseller_001",
        "symbol": "ETHUSDT",
        "side": "Sell",
        "exec_price": "3387.17",
        "exec_qty": "1.56",
        "exec_time": "1762391404452",
        "order_id": f"o{n:08d}-6407-4bd3-a09b-a5f6032eda31",
        "client_order_id": "shortseller_001:entry:1762391404400",
        "commission": "2.90600000",
        "close_reason": "entry",
        "source": "listener",
    }
    kw.update(over)
    return kw


def make_fill(**over: Any) -> FillInput:
    return FillInput(**fill_kwargs(**over))


def order_kwargs(**over: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "order_id": f"o{next(_ids):08d}-c33f-4e8b-a2b0-1f2e3d4c5b6a",
        "client_order_id": "",
        "bot_id": "unknown",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "order_type": "Market",
        "status": "Untriggered",
        "qty": "0.045",
        "price": "0",
        "updated_time": T0,
    }
    kw.update(over)
    return kw


def make_order(**over: Any) -> OrderUpdate:
    return OrderUpdate(**order_kwargs(**over))


def position_kwargs(**over: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "bot_id": "shortseller_001",
        "symbol": "SOLUSDT",
        "side": "Sell",
        "size": "30.5",
        "avg_entry_price": "234.51",
        "mark_price": "232.68",
        "unrealised_pnl": "55.815",
        "updated_time": "1759571981350",
        "position_idx": 0,
    }
    kw.update(over)
    return kw


# ----------------------------------------------------------------------------- good path


def test_fill_stores_canonical_values() -> None:
    fill = make_fill()
    assert fill.side is Side.SELL and isinstance(fill.side, str) and f"{fill.side}" == "Sell"
    assert fill.exec_price == Decimal("3387.17") and str(fill.exec_price) == "3387.17000000"
    assert fill.exec_qty == Decimal("1.56")
    assert fill.commission == Decimal("2.906")
    assert fill.exec_time == T0 and fill.exec_time.tzinfo is UTC
    assert fill.exec_type is ExecType.TRADE and fill.is_trade and not fill.is_funding


def test_float_goes_through_its_repr_never_binary_value() -> None:
    fill = make_fill(exec_price=0.1, exec_qty=0.3, commission=-0.0001)
    assert fill.exec_price == Decimal("0.1")  # not 0.1000000000000000055511151231257827
    assert fill.exec_qty == Decimal("0.3")
    assert fill.commission == Decimal("-0.0001")  # maker rebate
    assert all(isinstance(v, Decimal) for v in (fill.exec_price, fill.exec_qty, fill.commission))


def test_quantizes_half_up_to_8dp_like_postgres_numeric() -> None:
    fill = make_fill(
        exec_price="206.6521621127142", exec_qty="0.000000005", commission="-0.000000005"
    )
    assert fill.exec_price == Decimal("206.65216211")
    assert fill.exec_qty == Decimal("0.00000001")
    assert fill.commission == Decimal("-0.00000001")


def test_zero_commission_and_negative_zero_are_plain_zero() -> None:
    assert make_fill(commission="-0").commission.is_signed() is False
    assert make_fill(commission=0).commission == 0


@pytest.mark.parametrize(
    "value",
    [
        T0,
        T0.astimezone(timezone(timedelta(hours=2))),
        "2025-11-06T01:10:04.452Z",
        "2025-11-06T03:10:04.452+02:00",
        1762391404452,
        "1762391404452",
    ],
)
def test_times_normalise_to_the_same_utc_instant(value: object) -> None:
    fill = make_fill(exec_time=value)
    assert fill.exec_time == T0
    assert fill.exec_time.utcoffset() == timedelta(0)


def test_unknown_bucket_and_custom_known_set() -> None:
    assert make_fill(bot_id="unknown").bot_id == "unknown"
    custom = frozenset({"scalper_002"})
    assert make_fill(bot_id="scalper_002", known_bots=custom).bot_id == "scalper_002"
    with pytest.raises(ValidationError) as exc:
        make_fill(bot_id="shortseller_001", known_bots=custom)
    assert exc.value.field == "bot_id"


def test_real_symbols_and_empty_client_order_id() -> None:
    fill = make_fill(symbol="1000PEPEUSDT", client_order_id="", close_reason=None)
    assert (
        fill.symbol == "1000PEPEUSDT" and fill.client_order_id == "" and fill.close_reason is None
    )


def test_legacy_ids_with_spaces_are_kept_verbatim() -> None:
    fill = make_fill(
        order_id="lxalgo_001_ETHUSDT_Rule 8_1762391404",
        client_order_id="momentum_001:Exchange Stop Loss:1762455379",
        close_reason="🔴 Stop Loss",
    )
    assert fill.order_id == "lxalgo_001_ETHUSDT_Rule 8_1762391404"
    assert fill.close_reason == "🔴 Stop Loss"


def test_funding_is_not_a_trade_but_settlement_closes_the_position() -> None:
    funding = make_fill(exec_type="Funding", client_order_id="", close_reason=None)
    assert funding.exec_type is ExecType.FUNDING and not funding.is_trade and funding.is_funding
    for kind in ("Trade", "AdlTrade", "BustTrade", "Settle", "Delivery", "BlockTrade"):
        assert make_fill(exec_type=kind).is_trade, kind


def test_frozen_and_replace_revalidates() -> None:
    fill = make_fill()
    with pytest.raises(dataclasses.FrozenInstanceError):
        fill.exec_qty = Decimal(1)  # type: ignore[misc]
    assert dataclasses.replace(fill, exec_qty=Decimal(2)).exec_qty == Decimal(2)
    with pytest.raises(ValidationError) as exc:
        dataclasses.replace(fill, exec_qty=Decimal("0.000000001"))
    assert exc.value.field == "exec_qty"


def test_equal_inputs_are_equal_and_hashable() -> None:
    kw = fill_kwargs()
    assert FillInput(**kw) == FillInput(**{**kw, "exec_price": Decimal("3387.170")})
    assert len({FillInput(**kw), FillInput(**kw)}) == 1


# ------------------------------------------------------------------------ order updates


@pytest.mark.parametrize("status", list(OrderStatus))
def test_every_bybit_order_status_is_accepted(status: OrderStatus) -> None:
    assert make_order(status=str(status)).status is status
    assert ORDER_STATUSES[str(status)] == status.rank


def test_order_price_zero_or_none_and_types() -> None:
    assert make_order(price="0").price == Decimal(0)  # conditional TP/SL
    assert make_order(price=None).price is None
    assert make_order(order_type="Limit").order_type is OrderType.LIMIT


def test_terminal_statuses_outrank_live_ones() -> None:
    live = [s for s in OrderStatus if not s.is_terminal]
    terminal = [s for s in OrderStatus if s.is_terminal]
    assert {str(s) for s in terminal} == {
        "Filled",
        "Cancelled",
        "Rejected",
        "Deactivated",
        "PartiallyFilledCanceled",
    }
    assert max(s.rank for s in live) < min(s.rank for s in terminal)
    chain = ["Created", "Untriggered", "Triggered", "New", "PartiallyFilled", "Filled"]
    ranks = [OrderStatus(s).rank for s in chain]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)


def test_newer_update_never_rolls_status_back() -> None:
    kw = order_kwargs()
    filled = OrderUpdate(**{**kw, "status": "Filled", "updated_time": T0})
    late_new = OrderUpdate(**{**kw, "status": "New", "updated_time": T0 + timedelta(seconds=5)})
    assert not late_new.supersedes(filled)
    assert filled.supersedes(late_new)  # delivered late, still wins by rank
    again = OrderUpdate(**{**kw, "status": "Filled", "updated_time": T0 + timedelta(seconds=1)})
    assert again.supersedes(filled) and not filled.supersedes(again)
    cancelled = OrderUpdate(**{**kw, "status": "Cancelled", "updated_time": T0 + timedelta(1)})
    assert not cancelled.supersedes(filled)  # terminal is final
    partial = OrderUpdate(**{**kw, "status": "PartiallyFilled", "updated_time": T0})
    partial_later = OrderUpdate(
        **{**kw, "status": "PartiallyFilled", "updated_time": T0 + timedelta(seconds=1)}
    )
    assert partial_later.supersedes(partial) and not partial.supersedes(partial_later)


def test_supersedes_refuses_another_order() -> None:
    with pytest.raises(ValidationError) as exc:
        make_order().supersedes(make_order())
    assert exc.value.field == "order_id"


# --------------------------------------------------------------------- position updates


def test_position_open_and_flat() -> None:
    pos = PositionUpdate(**position_kwargs())
    assert pos.side is Side.SELL and pos.avg_entry_price == Decimal("234.51") and not pos.is_flat
    flat = PositionUpdate(
        **position_kwargs(side="", size="0.0", avg_entry_price=None, unrealised_pnl="0")
    )
    assert flat.is_flat and flat.side == "" and flat.size == 0
    loss = PositionUpdate(**position_kwargs(unrealised_pnl="-118.1833682"))
    assert loss.unrealised_pnl == Decimal("-118.18336820")
    hedge = PositionUpdate(**position_kwargs(side="Buy", position_idx=1))
    assert hedge.position_idx == 1


# ------------------------------------------------------------------------ bad-input corpus

FILL_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("nan price", {"exec_price": float("nan")}, "exec_price"),
    ("nan text", {"exec_price": "NaN"}, "exec_price"),
    ("inf qty", {"exec_qty": float("inf")}, "exec_qty"),
    ("-inf commission", {"commission": float("-inf")}, "commission"),
    ("Infinity text", {"exec_qty": "Infinity"}, "exec_qty"),
    ("zero price", {"exec_price": 0}, "exec_price"),
    ("zero after rounding", {"exec_qty": "0.000000004"}, "exec_qty"),
    ("negative qty", {"exec_qty": "-1.5"}, "exec_qty"),
    ("negative price", {"exec_price": Decimal("-0.01")}, "exec_price"),
    ("1e30 price", {"exec_price": 1e30}, "exec_price"),
    ("1e12 qty", {"exec_qty": 10**12}, "exec_qty"),
    ("rounds up to 1e12", {"exec_price": "999999999999.999999995"}, "exec_price"),
    ("huge commission", {"commission": "-1e15"}, "commission"),
    ("bool price", {"exec_price": True}, "exec_price"),
    ("spaces in number", {"exec_qty": " 1.5"}, "exec_qty"),
    ("underscore number", {"exec_qty": "1_000"}, "exec_qty"),
    ("arabic digits", {"exec_qty": "١٢"}, "exec_qty"),
    ("list price", {"exec_price": [1]}, "exec_price"),
    ("lowercase side", {"side": "buy"}, "side"),
    ("uppercase side", {"side": "BUY"}, "side"),
    ("long side", {"side": "long"}, "side"),
    ("naive time", {"exec_time": datetime(2025, 11, 6, 1, 10)}, "exec_time"),
    ("naive iso", {"exec_time": "2025-11-06T01:10:04"}, "exec_time"),
    ("seconds as ms", {"exec_time": 1762391404}, "exec_time"),
    ("float time", {"exec_time": 1762391404.452}, "exec_time"),
    ("garbage time", {"exec_time": "yesterday"}, "exec_time"),
    ("10k symbol", {"symbol": "A" * 10_000}, "symbol"),
    ("lowercase symbol", {"symbol": "btcusdt"}, "symbol"),
    ("symbol newline", {"symbol": "BTCUSDT\n"}, "symbol"),
    ("sql symbol", {"symbol": "BTCUSDT'; DROP TABLE trading.fills;--"}, "symbol"),
    ("unregistered bot", {"bot_id": "manual_override"}, "bot_id"),
    ("bot uppercase", {"bot_id": "ShortSeller_001"}, "bot_id"),
    ("sql bot", {"bot_id": "x'; DROP TABLE trading.bots;--"}, "bot_id"),
    ("empty exec id", {"exec_id": ""}, "exec_id"),
    ("long exec id", {"exec_id": "e" * 65}, "exec_id"),
    ("nul in exec id", {"exec_id": "abc\x00def"}, "exec_id"),
    ("newline in order id", {"order_id": "abc\ndef"}, "order_id"),
    ("ansi in client id", {"client_order_id": "\x1b[31mred\x1b[0m"}, "client_order_id"),
    ("del in client id", {"client_order_id": "a\x7f"}, "client_order_id"),
    ("c1 control", {"client_order_id": "a\x85b"}, "client_order_id"),
    ("long client id", {"client_order_id": "x" * 101}, "client_order_id"),
    ("int order id", {"order_id": 12345}, "order_id"),
    ("reason newline", {"close_reason": "stop_loss\r\nINFO fake log line"}, "close_reason"),
    ("reason too long", {"close_reason": "r" * 51}, "close_reason"),
    ("reason line separator", {"close_reason": "a\u2028b"}, "close_reason"),
    ("exec type", {"exec_type": "trade"}, "exec_type"),
    ("exec type unknown", {"exec_type": "UNKNOWN"}, "exec_type"),
    ("source", {"source": "Listener"}, "source"),
    ("source long", {"source": "s" * 21}, "source"),
]


@pytest.mark.parametrize(("case", "over", "field"), FILL_BAD, ids=[c[0] for c in FILL_BAD])
def test_fill_rejections_name_field_and_value(case: str, over: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        make_fill(**over)
    assert exc.value.field == field
    value = exc.value.value
    assert (
        value is over[field]
        or value == over[field]
        or (isinstance(value, float) and math.isnan(value))
    )
    assert len(str(exc.value)) < 300  # bounded: a 10,000-char value cannot flood a log


ORDER_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("empty order id", {"order_id": ""}, "order_id"),
    ("order type", {"order_type": "market"}, "order_type"),
    ("order type stop", {"order_type": "Stop"}, "order_type"),
    ("status lowercase", {"status": "filled"}, "status"),
    ("status unknown", {"status": "Expired"}, "status"),
    ("zero qty", {"qty": "0"}, "qty"),
    ("negative price", {"price": "-1"}, "price"),
    ("nan price", {"price": "nan"}, "price"),
    ("naive updated", {"updated_time": datetime(2025, 1, 1)}, "updated_time"),
]


@pytest.mark.parametrize(("case", "over", "field"), ORDER_BAD, ids=[c[0] for c in ORDER_BAD])
def test_order_rejections(case: str, over: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        make_order(**over)
    assert exc.value.field == field


POSITION_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("flat with size", {"side": "", "size": "1"}, "size"),
    ("side with zero size", {"side": "Sell", "size": "0"}, "side"),
    ("None side", {"side": "None"}, "side"),
    ("negative size", {"size": "-30.5"}, "size"),
    ("inf size", {"size": float("inf")}, "size"),
    ("zero avg price", {"avg_entry_price": "0"}, "avg_entry_price"),
    ("negative mark", {"mark_price": "-1"}, "mark_price"),
    ("nan pnl", {"unrealised_pnl": float("nan")}, "unrealised_pnl"),
    ("idx 3", {"position_idx": 3}, "position_idx"),
    ("idx bool", {"position_idx": True}, "position_idx"),
    ("idx str", {"position_idx": "0"}, "position_idx"),
    ("hedge slot mismatch", {"position_idx": 1}, "position_idx"),
    ("naive time", {"updated_time": datetime(2025, 1, 1)}, "updated_time"),
    ("bot", {"bot_id": "unknown_bot"}, "bot_id"),
]


@pytest.mark.parametrize(("case", "over", "field"), POSITION_BAD, ids=[c[0] for c in POSITION_BAD])
def test_position_rejections(case: str, over: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        PositionUpdate(**position_kwargs(**over))
    assert exc.value.field == field


def test_validation_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="exec_qty"):
        make_fill(exec_qty="-1")


# ------------------------------------------------------------------------------ properties

IN_RANGE_8DP = st.decimals(
    min_value=Decimal("0.00000001"),
    max_value=Decimal("999999999999.99999999"),
    places=8,
    allow_nan=False,
    allow_infinity=False,
)


@given(price=IN_RANGE_8DP, qty=IN_RANGE_8DP, fee=IN_RANGE_8DP, negative=st.booleans())
def test_any_8dp_positive_decimal_in_range_is_preserved_exactly(
    price: Decimal, qty: Decimal, fee: Decimal, negative: bool
) -> None:
    fee = -fee if negative else fee
    fill = make_fill(exec_price=price, exec_qty=qty, commission=fee)
    assert (fill.exec_price, fill.exec_qty, fill.commission) == (price, qty, fee)
    assert str(fill.exec_price) == str(price)  # same digits, same exponent
    # ... and the string form round-trips identically
    assert make_fill(exec_price=str(price)).exec_price == price


@given(st.floats(min_value=1e-8, max_value=1e11, allow_nan=False))
def test_floats_convert_through_repr(x: float) -> None:
    expected = Decimal(repr(x)).quantize(Decimal("1E-8"), rounding=ROUND_HALF_UP)
    if expected == 0:
        return
    assert make_fill(exec_qty=x).exec_qty == expected


@given(
    st.one_of(
        st.text(max_size=80),
        st.floats(),
        st.integers(),
        st.decimals(),
        st.none(),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
    )
)
def test_number_conversion_only_ever_raises_validation_error(value: object) -> None:
    try:
        result = to_decimal8("x", value)
    except ValidationError as err:
        assert err.field == "x"
    else:
        assert result.is_finite() and abs(result) < Decimal("1e12")
        assert result.as_tuple().exponent == -8


@given(st.integers(min_value=1420070400000, max_value=4102444799999))
def test_epoch_ms_conversion_is_exact(ms: int) -> None:
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert to_utc("t", ms) == expected
    assert to_utc("t", str(ms)) == expected


@given(st.text(max_size=120))
def test_id_text_is_accepted_iff_printable_and_short(text: str) -> None:
    try:
        fill = make_fill(client_order_id=text)
    except ValidationError as err:
        assert err.field == "client_order_id"
        assert len(text) > 100 or not text.isprintable()
    else:
        assert fill.client_order_id == text


def test_known_bots_default() -> None:
    assert frozenset({"shortseller_001", "lxalgo_001", "momentum_001"}) == KNOWN_BOTS
