"""Bybit v5 private-stream parser: realistic messages, the trace fixture, and bad input."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alpha_models.bybit_stream import (
    parse_execution,
    parse_lines,
    parse_message,
    parse_message_items,
    parse_order,
    parse_position,
)
from alpha_models.errors import ValidationError
from alpha_models.inputs import ExecType, FillInput, OrderStatus, OrderUpdate, PositionUpdate, Side
from alpha_models.order_link import make_order_link_id

TRACE = Path("/work/shared/fixtures/shortseller/shortseller_events.jsonl")
_ids = itertools.count(1)


def uid(prefix: str) -> str:
    return f"{prefix}{next(_ids):07d}-2f4e-4c1a-9b7d-0e6f5a4b3c2d"


def execution(**over: Any) -> dict[str, Any]:
    """An ``execution`` element shaped like the fixture's ``fill`` data (own values)."""
    el: dict[str, Any] = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "execId": uid("x"),
        "orderId": uid("o"),
        "orderLinkId": "shortseller_001:entry:1762117804166",
        "side": "Sell",
        "orderType": "Market",
        "execType": "Trade",
        "execPrice": "108872.6",
        "execQty": "0.045",
        "execValue": "4899.26700000",
        "execFee": "2.69459685",
        "feeRate": "0.00055",
        "isMaker": False,
        "execTime": "1762117804452",
        "orderQty": "0.045",
        "leavesQty": "0",
        "closedSize": "0",
        "stopOrderType": "",
        "createType": "CreateByUser",
        "markPrice": "108870.1",
        "seq": 52817134,
    }
    el.update(over)
    return el


def order(**over: Any) -> dict[str, Any]:
    el: dict[str, Any] = {
        "category": "linear",
        "orderId": uid("o"),
        "orderLinkId": "",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Market",
        "timeInForce": "IOC",
        "reduceOnly": True,
        "orderStatus": "Untriggered",
        "qty": "0.045",
        "price": "0",
        "cumExecQty": "0",
        "leavesQty": "0.045",
        "avgPrice": "",
        "stopOrderType": "StopLoss",
        "triggerPrice": "112139.9",
        "updatedTime": "1762117804460",
    }
    el.update(over)
    return el


def position(**over: Any) -> dict[str, Any]:
    el: dict[str, Any] = {
        "category": "linear",
        "symbol": "ETHUSDT",
        "side": "Sell",
        "positionIdx": 0,
        "size": "1.56",
        "entryPrice": "3387.17",
        "markPrice": "3391.02",
        "positionValue": "5283.9852",
        "unrealisedPnl": "-6.006",
        "cumRealisedPnl": "-19.8318",
        "positionStatus": "Normal",
        "updatedTime": "1762391404460",
        "seq": 52817140,
    }
    el.update(over)
    return el


def message(topic: str, *data: Any, **over: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "id": uid("m"),
        "topic": topic,
        "creationTime": 1762391404470,
        "data": list(data),
    }
    msg.update(over)
    return msg


def one(events: list[Any]) -> Any:
    assert len(events) == 1
    return events[0]


# ------------------------------------------------------------------------- executions


def test_execution_message_becomes_a_fill() -> None:
    el = execution()
    fill = one(parse_message(json.dumps(message("execution", el))))
    assert isinstance(fill, FillInput)
    assert fill.exec_id == el["execId"] and fill.order_id == el["orderId"]
    assert (fill.bot_id, fill.close_reason) == ("shortseller_001", "entry")
    assert fill.client_order_id == "shortseller_001:entry:1762117804166"
    assert fill.side is Side.SELL
    assert (fill.exec_price, fill.exec_qty) == (Decimal("108872.6"), Decimal("0.045"))
    assert fill.commission == Decimal("2.69459685")
    assert fill.exec_time == datetime(2025, 11, 2, 21, 10, 4, 452000, tzinfo=UTC)
    assert fill.exec_type is ExecType.TRADE and fill.is_trade
    assert fill.source == "listener"


@pytest.mark.parametrize("topic", ["execution", "execution.linear"])
@pytest.mark.parametrize("encode", [json.dumps, lambda m: json.dumps(m).encode(), lambda m: m])
def test_topic_suffix_and_input_types(topic: str, encode: Any) -> None:
    events = parse_message(encode(message(topic, execution(), execution())))
    assert len(events) == 2 and all(isinstance(e, FillInput) for e in events)


def test_funding_is_kept_apart_from_trades() -> None:
    el = execution(
        orderLinkId="",
        execType="Funding",
        orderType="UNKNOWN",
        stopOrderType="UNKNOWN",
        createType="",
        execPrice="3391.02",
        execQty="1.56",
        execFee="-0.04727775",
        execTime="1762416000000",
    )
    fill = one(parse_message(message("execution", el)))
    assert fill.exec_type is ExecType.FUNDING
    assert not fill.is_trade and fill.is_funding
    assert (fill.bot_id, fill.close_reason, fill.client_order_id) == ("unknown", None, "")
    assert fill.commission == Decimal("-0.04727775")  # received


@pytest.mark.parametrize(
    ("stop_order_type", "reason"),
    [("TakeProfit", "take_profit"), ("StopLoss", "stop_loss"), ("TrailingStop", "trailing_stop")],
)
def test_exchange_side_exit_reason_from_stop_order_type(stop_order_type: str, reason: str) -> None:
    el = execution(orderLinkId="", side="Buy", stopOrderType=stop_order_type)
    fill = one(parse_message(message("execution", el)))
    assert (fill.bot_id, fill.close_reason) == ("unknown", reason)


def test_compact_link_id_attributes_bot_and_canonical_reason() -> None:
    link = make_order_link_id("lxalgo_001", "8h_negative_pnl")
    fill = parse_execution(execution(orderLinkId=link, side="Sell", symbol="1000PEPEUSDT"))
    assert (fill.bot_id, fill.close_reason, fill.client_order_id) == (
        "lxalgo_001",
        "8h_negative_pnl",
        link,
    )


@pytest.mark.parametrize(
    ("link", "bot", "reason"),
    [
        ("manual_override:close:1762391404000", "unknown", "close"),  # unregistered prefix
        ("momentum_001:Exchange Stop Loss:1762455379", "momentum_001", "Exchange Stop Loss"),
        ("shortseller_001:regime:1759047903690", "shortseller_001", "regime_exit"),
        ("9f1c2e3d4b5a6978", "unknown", None),  # LXAlgo random hex
        ("9f1c2e3d4b5a69789f1c2e3d4b5a6978", "unknown", None),
    ],
)
def test_legacy_link_ids(link: str, bot: str, reason: str | None) -> None:
    fill = parse_execution(execution(orderLinkId=link))
    assert (fill.bot_id, fill.close_reason, fill.client_order_id) == (bot, reason, link)


def test_missing_order_link_id_is_empty_and_known_bots_can_be_extended() -> None:
    el = execution()
    del el["orderLinkId"]
    assert parse_execution(el).client_order_id == ""
    custom = frozenset({"scalper_002"})
    fill = parse_execution(
        execution(orderLinkId="scalper_002:entry:1762391404000"), known_bots=custom
    )
    assert fill.bot_id == "scalper_002"
    shortseller = parse_execution(execution(), known_bots=custom)
    assert shortseller.bot_id == "unknown" and shortseller.close_reason == "entry"


# ------------------------------------------------------------------------------ orders


def test_order_message_becomes_an_order_update() -> None:
    el = order(orderStatus="Deactivated", price="")
    update = one(parse_message(message("order.linear", el)))
    assert isinstance(update, OrderUpdate)
    assert update.status is OrderStatus.DEACTIVATED and update.is_terminal
    assert update.price is None and update.bot_id == "unknown"
    assert update.updated_time == datetime(2025, 11, 2, 21, 10, 4, 460000, tzinfo=UTC)
    assert one(parse_message(message("order", order(price="0")))).price == Decimal(0)


def test_order_time_falls_back_to_creation_time_then_received_at() -> None:
    el = order()
    del el["updatedTime"]
    update = one(parse_message(message("order", el)))
    assert update.updated_time == datetime(2025, 11, 6, 1, 10, 4, 470000, tzinfo=UTC)
    received = datetime(2025, 11, 6, 1, 11, tzinfo=UTC)
    msg = message("order", el)
    del msg["creationTime"]
    assert one(parse_message(msg, received_at=received)).updated_time == received
    with pytest.raises(ValidationError) as exc:
        parse_message(msg)
    assert exc.value.field == "data[0].updatedTime"


def test_partially_filled_canceled_ioc_close() -> None:
    el = order(
        orderLinkId="shortseller_001:regime:1762391400000",
        orderStatus="PartiallyFilledCanceled",
        price="3391.5",
    )
    update = parse_order(el)
    assert update.status is OrderStatus.PARTIALLY_FILLED_CANCELED
    assert update.bot_id == "shortseller_001" and update.price == Decimal("3391.5")


# --------------------------------------------------------------------------- positions


def test_position_uses_entry_price_and_account_bot() -> None:
    msg = message("position", position(avgPrice="0"))
    pos = one(parse_message(msg, account_bot_id="shortseller_001"))
    assert isinstance(pos, PositionUpdate)
    assert pos.bot_id == "shortseller_001"
    assert pos.avg_entry_price == Decimal("3387.17")  # entryPrice, not avgPrice
    assert pos.side is Side.SELL and pos.size == Decimal("1.56") and pos.position_idx == 0
    assert pos.unrealised_pnl == Decimal("-6.006")


def test_position_falls_back_to_avg_price() -> None:
    el = position(avgPrice="3387.17")
    del el["entryPrice"]
    assert parse_position(el).avg_entry_price == Decimal("3387.17")
    assert parse_position(position(entryPrice="", avgPrice="3387.2")).avg_entry_price == Decimal(
        "3387.2"
    )


@pytest.mark.parametrize("side", ["", "None", "Sell"])
def test_flat_position(side: str) -> None:
    el = position(side=side, size="0.00", entryPrice="0", markPrice="3995.07", unrealisedPnl="")
    pos = parse_position(el)
    assert pos.is_flat and pos.side == "" and pos.size == 0
    assert pos.avg_entry_price is None and pos.unrealised_pnl is None


def test_hedge_mode_slots() -> None:
    long_slot = parse_position(position(side="Buy", positionIdx=1))
    short_slot = parse_position(position(side="Sell", positionIdx=2))
    assert (long_slot.position_idx, short_slot.position_idx) == (1, 2)


# ---------------------------------------------------------------------- frames and lines


def test_control_frames_produce_no_events() -> None:
    assert parse_message('{"success":true,"ret_msg":"","op":"auth","conn_id":"c1"}') == []
    assert parse_message({"op": "pong", "args": ["1762391404470"]}) == []


def test_items_keep_good_elements_next_to_bad_ones() -> None:
    msg = message("execution", execution(), execution(execPrice="NaN"), execution())
    items = parse_message_items(msg)
    assert [type(i).__name__ for i in items] == ["FillInput", "ValidationError", "FillInput"]
    bad = items[1]
    assert isinstance(bad, ValidationError) and bad.field == "data[1].execPrice"
    with pytest.raises(ValidationError) as exc:
        parse_message(msg)
    assert exc.value.field == "data[1].execPrice"


def test_parse_lines_reports_every_line_and_never_stops() -> None:
    good = json.dumps(message("execution", execution()))
    mixed = json.dumps(message("execution", execution(), execution(execId="")))
    lines = [
        good + "\n",
        "\n",
        good[:-7],  # truncated
        "   ",
        mixed,
        json.dumps(message("wallet", {})),
        json.dumps(message("position", position())),
        '{"op":"pong"}',
    ]
    out = list(parse_lines(lines))
    summary = [
        (n, r.field if isinstance(r, ValidationError) else [type(e).__name__ for e in r])
        for n, r in out
    ]
    assert summary == [
        (1, ["FillInput"]),
        (3, "message"),
        (5, ["FillInput"]),
        (5, "data[1].execId"),
        (6, "topic"),
        (7, ["PositionUpdate"]),
        (8, []),
    ]


@pytest.mark.skipif(not TRACE.exists(), reason="shared fixture not present")
def test_shortseller_trace_parses_completely() -> None:
    kinds: Counter[str] = Counter()
    fills: list[FillInput] = []
    for line in TRACE.read_text().splitlines():
        event = json.loads(line)
        data, test = event["data"], event.get("_test", {})
        if event["kind"] == "fill":
            fill = parse_execution(data)
            fills.append(fill)
            assert fill.exec_id == data["execId"]
            assert fill.is_trade == (data["execType"] == "Trade")
            assert (test.get("expect") == "not_a_trade") == fill.is_funding
            if "reason" in test:  # canonical reason of an exchange-side exit
                assert fill.close_reason == test["reason"]
        elif event["kind"] == "order_update":
            assert parse_order(data).status is OrderStatus.PARTIALLY_FILLED_CANCELED
        elif event["kind"] == "position_updated":
            pos = parse_position(data, bot_id="shortseller_001")
            assert pos.is_flat == (data["side"] == "")
        else:
            continue
        kinds[event["kind"]] += 1
    assert kinds == {"fill": 184, "position_updated": 63, "order_update": 1}
    assert sum(f.is_funding for f in fills) == 31
    assert sum(f.is_trade for f in fills) == 153  # the trace's 153 trade fills
    assert {f.bot_id for f in fills} == {"shortseller_001", "unknown"}


# ------------------------------------------------------------------------ bad-input corpus


def without(el: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in el.items() if k != key}


STREAM_BAD: list[tuple[str, Any, str]] = [
    ("truncated json", '{"topic":"execution","data":[{"execId":"x"', "message"),
    ("not json", "hello", "message"),
    ("json array", "[]", "message"),
    ("json NaN literal", '{"topic":"execution","data":[],"x":NaN}', "message"),
    ("invalid utf-8", b'{"topic":"execution","data":[]}\xff', "message"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "message"),
    ("too large", " " * 1_000_001, "message"),
    ("not a message type", 42, "message"),
    ("missing topic", {"data": []}, "topic"),
    ("unknown topic", message("wallet", {}), "topic"),
    ("fast executions", message("execution.fast", execution()), "topic"),
    ("spot suffix", message("execution.spot", execution()), "topic"),
    ("topic not string", message(7), "topic"),  # type: ignore[arg-type]
    (
        "creationTime string",
        message("order", order(), creationTime="1762391404470"),
        "creationTime",
    ),
    ("data dict", {"topic": "execution", "data": execution()}, "data"),
    ("data missing", {"topic": "position"}, "data"),
    ("element not object", message("execution", "x"), "data[0]"),
    ("element null", message("order", None), "data[0]"),
    ("missing execId", message("execution", without(execution(), "execId")), "data[0].execId"),
    ("empty execId", message("execution", execution(execId="")), "data[0].execId"),
    ("execId number", message("execution", execution(execId=123)), "data[0].execId"),
    ("execPrice number", message("execution", execution(execPrice=1.5)), "data[0].execPrice"),
    ("execPrice NaN", message("execution", execution(execPrice="NaN")), "data[0].execPrice"),
    ("execPrice 1e30", message("execution", execution(execPrice="1e30")), "data[0].execPrice"),
    ("execQty zero", message("execution", execution(execQty="0")), "data[0].execQty"),
    ("execQty negative", message("execution", execution(execQty="-0.045")), "data[0].execQty"),
    ("execQty inf", message("execution", execution(execQty="inf")), "data[0].execQty"),
    ("missing execFee", message("execution", without(execution(), "execFee")), "data[0].execFee"),
    ("side lowercase", message("execution", execution(side="buy")), "data[0].side"),
    (
        "execTime iso",
        message("execution", execution(execTime="2025-11-02T21:10:04Z")),
        "data[0].execTime",
    ),
    (
        "execTime seconds",
        message("execution", execution(execTime="1762117804")),
        "data[0].execTime",
    ),
    ("execType unknown", message("execution", execution(execType="Rebate")), "data[0].execType"),
    (
        "missing execType",
        message("execution", without(execution(), "execType")),
        "data[0].execType",
    ),
    ("category spot", message("execution", execution(category="spot")), "data[0].category"),
    (
        "sql symbol",
        message("execution", execution(symbol="BTCUSDT'; DROP TABLE trading.fills;--")),
        "data[0].symbol",
    ),
    ("10k symbol", message("execution", execution(symbol="B" * 10_000)), "data[0].symbol"),
    (
        "newline in link id",
        message("execution", execution(orderLinkId="shortseller_001:tp\nFAKE LOG:1")),
        "data[0].orderLinkId",
    ),
    (
        "ansi in link id",
        message("execution", execution(orderLinkId="\x1b[2J\x1b[31mpwned")),
        "data[0].orderLinkId",
    ),
    ("nul in orderId", message("execution", execution(orderId="a\x00b")), "data[0].orderId"),
    ("orderLinkId number", message("execution", execution(orderLinkId=5)), "data[0].orderLinkId"),
    (
        "order status lowercase",
        message("order", order(orderStatus="filled")),
        "data[0].orderStatus",
    ),
    ("order empty id", message("order", order(orderId="")), "data[0].orderId"),
    ("order qty zero", message("order", order(qty="0")), "data[0].qty"),
    ("order price negative", message("order", order(price="-5")), "data[0].price"),
    ("order type", message("order", order(orderType="StopMarket")), "data[0].orderType"),
    ("position idx string", message("position", position(positionIdx="0")), "data[0].positionIdx"),
    ("position idx bool", message("position", position(positionIdx=False)), "data[0].positionIdx"),
    (
        "position idx missing",
        message("position", without(position(), "positionIdx")),
        "data[0].positionIdx",
    ),
    ("position size negative", message("position", position(size="-1.56")), "data[0].size"),
    ("position flat side with size", message("position", position(side="")), "data[0].size"),
    ("position entry nan", message("position", position(entryPrice="NaN")), "data[0].entryPrice"),
    (
        "position pnl inf",
        message("position", position(unrealisedPnl="-inf")),
        "data[0].unrealisedPnl",
    ),
]


@pytest.mark.parametrize(("case", "raw", "field"), STREAM_BAD, ids=[c[0] for c in STREAM_BAD])
def test_stream_rejections_name_the_wire_field(case: str, raw: Any, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_message(raw)
    assert exc.value.field == field
    assert len(str(exc.value)) < 400


def test_position_for_an_unregistered_account_bot_is_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_message(message("position", position()), account_bot_id="ghost_bot")
    assert exc.value.field == "bot_id"


def test_bad_received_at() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_message(message("order", order()), received_at=datetime(2025, 11, 6))
    assert exc.value.field == "received_at"


# ------------------------------------------------------------------------------ properties

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)  # valid JSON only
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = sorted(execution())


@given(st.one_of(st.text(), st.binary(), JSON))
def test_arbitrary_input_only_ever_raises_validation_error(raw: Any) -> None:
    try:
        parse_message(raw if isinstance(raw, str | bytes | dict) else json.dumps(raw))
    except ValidationError:
        pass


@given(
    topic=st.sampled_from(["execution", "order", "position"]),
    key=st.sampled_from([*FIELDS, "orderStatus", "qty", "price", "size", "positionIdx"]),
    value=JSON,
)
def test_any_corrupted_field_gives_an_event_or_a_located_error(
    topic: str, key: str, value: Any
) -> None:
    el = {"execution": execution, "order": order, "position": position}[topic]()
    el[key] = value
    try:
        events = parse_message(json.dumps(message(topic, el)))
    except ValidationError as err:
        assert err.field.startswith("data[0]") or err.field == "bot_id"
    else:
        assert len(events) == 1
