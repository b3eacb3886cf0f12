"""Saved Bybit v5 REST pages: every accepted layout, strict validation, and fuzzed input."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alpha_models.bybit_pages import (
    ExchangeRecord,
    Page,
    make_pages,
    parse_closed_pnl,
    parse_pages,
    read_pages,
)
from alpha_models.errors import ValidationError
from alpha_models.inputs import ExecType, Side

TRACE = Path("/work/shared/fixtures/shortseller/shortseller_events.jsonl")


def trace_executions() -> list[dict[str, Any]]:
    """The `data` of the trace's `fill` events: Bybit execution fields."""
    events = (json.loads(line) for line in TRACE.read_text().splitlines())
    return [e["data"] for e in events if e["kind"] == "fill"]


def closed_pnl_item(**over: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "symbol": "ETHUSDT",
        "orderId": "9a3c1f2e-7b41-4d0a-8d5e-2f6c0b9e1a77",
        "side": "Buy",
        "qty": "1.70",
        "orderPrice": "4194.11",
        "orderType": "Market",
        "execType": "Trade",
        "closedSize": "1.70",
        "cumEntryValue": "6852.105",
        "avgEntryPrice": "4030.65",
        "cumExitValue": "6790.633",
        "avgExitPrice": "3994.49",
        "closedPnl": "53.9684941",
        "fillCount": "1",
        "leverage": "10",
        "openFee": "3.76865775",
        "closeFee": "3.73484815",
        "createdTime": "1758957603473",
        "updatedTime": "1758957603481",
    }
    item.update(over)
    return item


def test_the_trace_paginated_by_50_gives_every_execution_with_funding_apart() -> None:
    items = trace_executions()
    pages = make_pages(items, page_size=50)
    assert [len(p["result"]["list"]) for p in pages] == [50, 50, 50, 34]
    assert [bool(p["result"]["nextPageCursor"]) for p in pages] == [True, True, True, False]
    record = parse_pages(pages)
    assert (len(record.executions), len(record.funding)) == (153, 31)
    assert all(f.is_trade for f in record.executions)
    assert {f.exec_type for f in record.funding} == {ExecType.FUNDING}
    assert record.pages == record.execution_pages == 4 and record.looks_complete
    times = [f.exec_time for f in record.executions]
    assert times == sorted(times)
    first = next(f for f in record.executions if f.exec_id == items[0]["execId"])
    assert first.exec_price == Decimal("203.57") and first.commission == Decimal("0.99647515")
    assert first.bot_id == "shortseller_001" and first.source == "reconcile"


def test_every_layout_gives_the_same_record(tmp_path: Path) -> None:
    pages = make_pages(trace_executions(), page_size=50)
    one = tmp_path / "one"
    one.mkdir()
    (one / "p1.json").write_text(json.dumps(pages[0], indent=2))  # one pretty page
    (one / "p2.json").write_text(json.dumps(pages[1:3]))  # an array of pages
    (one / "p3.jsonl").write_text(json.dumps(pages[3]) + "\n\n")  # JSON lines
    (one / "README.txt").write_text("not a page")  # ignored: not a page file
    jsonl = tmp_path / "all.jsonl"
    jsonl.write_text("".join(json.dumps(p) + "\n" for p in pages))
    expected = parse_pages(pages)
    for source in (one, str(jsonl), [jsonl], [pages[0], tmp_path / "all.jsonl"]):
        record = parse_pages(source)  # type: ignore[arg-type]
        assert record.executions == expected.executions
        assert record.funding == expected.funding
    mixed = parse_pages([pages[0], jsonl])
    assert mixed.repeated == 50  # the first page twice: kept once
    labels = [p.label for p in read_pages(one)]
    assert labels[0].endswith("p1.json:1") and labels[1].endswith("p2.json:1[0]")


def test_an_error_page_is_reported_not_skipped() -> None:
    pages = make_pages(trace_executions(), page_size=50)
    pages[2] = {"retCode": 10006, "retMsg": "Too many visits!", "result": {}, "time": 1}
    with pytest.raises(ValidationError) as caught:
        parse_pages(pages)
    assert caught.value.field == "page pages[2] retCode"
    assert "Too many visits!" in str(caught.value) and caught.value.value == 10006


@pytest.mark.parametrize(
    ("page", "field"),
    [
        ({"retCode": "0", "result": {"list": []}}, "page pages[0] retCode"),
        ({"retMsg": "OK", "result": {"list": []}}, "page pages[0] retCode"),
        (
            {"retCode": 0, "result": {"category": "spot", "list": []}},
            "page pages[0] result.category",
        ),
        ({"retCode": 0, "result": {"list": {}}}, "page pages[0] result.list"),
        (
            {"retCode": 0, "result": {"list": [], "nextPageCursor": 5}},
            "page pages[0] result.nextPageCursor",
        ),
        (
            {"retCode": 0, "result": {"list": [{"symbol": "BTCUSDT"}]}},
            "page pages[0] result.list[0]",
        ),
        ([1, 2], "page pages[0]"),
    ],
)
def test_malformed_envelopes_name_the_page_and_field(page: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_pages([page])
    assert caught.value.field == field


def test_a_bad_element_names_its_page_index_and_wire_field() -> None:
    items = trace_executions()[:3]
    items[1] = {**items[1], "execPrice": 203.57}  # a JSON number: Bybit sends strings
    with pytest.raises(ValidationError) as caught:
        parse_pages(make_pages(items))
    assert caught.value.field == "page pages[0] result.list[1].execPrice"


def test_same_exec_id_with_different_content_is_an_error() -> None:
    items = trace_executions()[:2]
    altered = {**items[0], "execQty": "9.9"}
    with pytest.raises(ValidationError) as caught:
        parse_pages([*make_pages(items), *make_pages([altered])])
    assert "different content" in str(caught.value)


def test_a_page_mixing_executions_and_closed_pnl_is_refused() -> None:
    with pytest.raises(ValidationError, match="mixes"):
        parse_pages(make_pages([trace_executions()[0], closed_pnl_item()]))


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "executions.json"
    text = json.dumps(make_pages(trace_executions(), page_size=50), indent=1)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValidationError) as caught:
        parse_pages(path)
    message = str(caught.value)
    assert caught.value.field == "file" and str(path) in message
    assert "invalid JSON at line" in message and "truncated" in message


@pytest.mark.parametrize("content", ["", "  \n", "\x00\xff"])
def test_empty_or_binary_files_are_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ValidationError):
        parse_pages(path)


def test_missing_path_and_empty_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not found"):
        parse_pages(tmp_path / "nope.json")
    with pytest.raises(ValidationError, match=r"no \*\.json"):
        parse_pages(tmp_path)


def test_a_record_without_a_final_page_looks_cut_short() -> None:
    pages = make_pages(trace_executions(), page_size=50)
    assert not parse_pages(pages[:3]).looks_complete
    assert parse_pages(make_pages([])).looks_complete  # one empty final page


def test_closed_pnl_records_are_parsed_exactly() -> None:
    second = closed_pnl_item(orderId="c0ffee00-1111-4222-8333-444455556666", closedPnl="-5.2")
    record = parse_pages(make_pages([closed_pnl_item(), second]))
    assert record.closed_pnl_pages == 1 and record.execution_pages == 0
    first = record.closed_pnl[0]
    assert first.side is Side.BUY and first.closed_size == Decimal("1.7")
    assert first.closed_pnl == Decimal("53.9684941") and first.fill_count == 1
    assert first.updated_time == datetime(2025, 9, 27, 7, 20, 3, 481000, tzinfo=UTC)
    assert record.closed_pnl[1].closed_pnl == Decimal("-5.2")
    older = parse_closed_pnl({k: v for k, v in closed_pnl_item().items() if "Fee" not in k})
    assert older.open_fee is None and older.close_fee is None


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"fillCount": 1}, "fillCount"),
        ({"closedSize": "0"}, "closedSize"),
        ({"side": "sell"}, "side"),
        ({"updatedTime": "2025-09-27"}, "updatedTime"),
        ({"symbol": "eth"}, "symbol"),
    ],
)
def test_bad_closed_pnl_fields_are_named(over: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_closed_pnl(closed_pnl_item(**over))
    assert caught.value.field == field


# ---------------------------------------------------------------------------- properties

_execution = st.fixed_dictionaries(
    {
        "symbol": st.sampled_from(["BTCUSDT", "ETHUSDT", "1000PEPEUSDT"]),
        "execId": st.uuids().map(str),
        "orderId": st.uuids().map(str),
        "orderLinkId": st.sampled_from(["", "shortseller_001:tp:mhmqc3eo0a1", "3f9a0c2e4b6d8a1c"]),
        "side": st.sampled_from(["Buy", "Sell"]),
        "execType": st.sampled_from(["Trade", "Funding", "AdlTrade"]),
        "execPrice": st.decimals("0.0001", "200000", places=4).map(str),
        "execQty": st.decimals("0.001", "100000", places=3).map(str),
        "execFee": st.decimals("-5", "50", places=8).map(str),
        "execTime": st.integers(1_600_000_000_000, 1_900_000_000_000).map(str),
        "stopOrderType": st.sampled_from(["", "TakeProfit", "StopLoss"]),
    }
)


@given(st.lists(_execution, max_size=40, unique_by=lambda x: x["execId"]), st.integers(1, 45))
def test_pagination_does_not_change_the_record(items: list[dict[str, Any]], size: int) -> None:
    whole = parse_pages(make_pages(items, page_size=max(len(items), 1)))
    paged = parse_pages(make_pages(items, page_size=size))
    assert (paged.executions, paged.funding) == (whole.executions, whole.funding)
    assert len(paged.executions) + len(paged.funding) == len(items)
    assert paged.pages == max(1, -(-len(items) // size)) and paged.final_pages == 1


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_page_like = st.fixed_dictionaries(
    {"retCode": st.sampled_from([0, 1, "0", None])},
    optional={"result": st.fixed_dictionaries({}, optional={"list": st.lists(_json, max_size=3)})},
)


@given(st.one_of(_json, _page_like))
def test_any_json_value_is_accepted_or_refused_with_a_validation_error(page: Any) -> None:
    try:
        record = parse_pages([page])
    except ValidationError:
        return
    assert isinstance(record, ExchangeRecord)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60)
@given(st.lists(_execution, min_size=1, max_size=5, unique_by=lambda x: x["execId"]), st.data())
def test_any_truncation_of_a_page_file_is_a_validation_error(
    items: list[dict[str, Any]], data: st.DataObject
) -> None:
    text = json.dumps(make_pages(items)[0])
    cut = data.draw(st.integers(1, len(text) - 1))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "page.json"
        path.write_text(text[:cut])
        with pytest.raises(ValidationError) as caught:
            parse_pages(path)
    assert "invalid JSON at line 1" in str(caught.value)


def test_page_objects_keep_their_label() -> None:
    page = Page("fetch-2025-11-06#3", {"retCode": 7, "retMsg": "x", "result": {}})
    with pytest.raises(ValidationError) as caught:
        parse_pages([page])
    assert caught.value.field == "page fetch-2025-11-06#3 retCode"
