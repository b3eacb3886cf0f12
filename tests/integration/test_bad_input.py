"""Bad input gets a typed error naming the field, and nothing is written anywhere."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from alpha_models.bybit_stream import parse_message
from alpha_models.errors import ValidationError
from alpha_models.inputs import FillInput, OrderUpdate, PositionUpdate
from tests.conftest import Writer

TABLES = [
    "trading.fills",
    "trading.orders",
    "trading.positions",
    "trading.position_entries",
    "trading.funding_settlements",
    "trading.exchange_positions",
]

GOOD_FILL: dict[str, Any] = {
    "exec_id": "bad-input-0001",
    "bot_id": "shortseller_001",
    "symbol": "BTCUSDT",
    "side": "Sell",
    "exec_price": "100000.5",
    "exec_qty": "0.01",
    "exec_time": "2025-11-01T00:00:00+00:00",
    "order_id": "o-1",
    "commission": "0.055",
    "source": "adapter",
}

FILL_CASES: list[tuple[str, str, Any]] = [
    ("nan-price", "exec_price", float("nan")),
    ("nan-text", "exec_price", "NaN"),
    ("inf-price", "exec_price", float("inf")),
    ("minus-inf-qty", "exec_qty", float("-inf")),
    ("zero-qty", "exec_qty", 0),
    ("negative-qty", "exec_qty", "-0.01"),
    ("negative-price", "exec_price", -1),
    ("huge-price", "exec_price", 1e30),
    ("huge-qty-text", "exec_qty", "1e30"),
    ("dust-qty", "exec_qty", "0.000000001"),
    ("nan-fee", "commission", float("nan")),
    ("inf-fee", "commission", "Infinity"),
    ("bool-qty", "exec_qty", True),
    ("side-lower", "side", "buy"),
    ("side-long", "side", "long"),
    ("side-empty", "side", ""),
    ("naive-time", "exec_time", "2025-11-01T00:00:00"),
    ("seconds-as-ms", "exec_time", 1_762_000_000),
    ("long-symbol", "symbol", "X" * 10_000),
    ("sql-symbol", "symbol", "BTCUSDT'; DROP TABLE trading.fills;--"),
    ("lower-symbol", "symbol", "btcusdt"),
    ("unknown-bot", "bot_id", "ghost_bot"),
    ("sql-bot", "bot_id", "x'); DELETE FROM trading.bots;--"),
    ("long-bot", "bot_id", "a" * 51),
    ("empty-exec-id", "exec_id", ""),
    ("long-exec-id", "exec_id", "e" * 65),
    ("newline-order-id", "order_id", "o-1\nINFO forged log line"),
    ("ansi-reason", "close_reason", "\x1b[31mred\x1b[0m"),
    ("nul-link-id", "client_order_id", "a\x00b"),
    ("long-reason", "close_reason", "r" * 51),
    ("bad-exec-type", "exec_type", "Gift"),
    ("bad-source", "source", "Robert'); --"),
]


def counts(w: Writer) -> dict[str, int]:
    with w.engine.connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES
        }


@pytest.mark.parametrize(
    ("field", "value"), [c[1:] for c in FILL_CASES], ids=[c[0] for c in FILL_CASES]
)
def test_bad_fill_is_a_typed_error_and_writes_nothing(
    writer: Writer, field: str, value: Any
) -> None:
    before = counts(writer)
    with pytest.raises(ValidationError) as caught:
        writer.path.record_fill(FillInput(**{**GOOD_FILL, field: value}))
    assert caught.value.field == field
    assert counts(writer) == before


MESSAGE_CASES: list[tuple[str, str]] = [
    ("truncated-json", '{"topic": "execution", "data": [{"execId": "x"'),
    ("not-json", "hello"),
    ("unknown-topic", json.dumps({"topic": "wallet", "data": []})),
    ("data-not-list", json.dumps({"topic": "execution", "data": "x"})),
    ("element-not-dict", json.dumps({"topic": "execution", "data": [1]})),
    ("missing-exec-id", json.dumps({"topic": "execution", "data": [{"symbol": "BTCUSDT"}]})),
    ("nan-token", '{"topic": "execution", "data": [{"execPrice": NaN}]}'),
]


@pytest.mark.parametrize("raw", [c[1] for c in MESSAGE_CASES], ids=[c[0] for c in MESSAGE_CASES])
def test_bad_stream_message_is_a_typed_error(writer: Writer, raw: str) -> None:
    before = counts(writer)
    with pytest.raises(ValidationError):
        for event in parse_message(raw, known_bots=writer.path.known_bots()):
            writer.path.record_fill(event)  # type: ignore[arg-type]
    assert counts(writer) == before


def test_bad_order_and_position_updates(writer: Writer) -> None:
    before = counts(writer)
    good_order: dict[str, Any] = {
        "order_id": "o-9",
        "bot_id": "shortseller_001",
        "symbol": "BTCUSDT",
        "side": "Sell",
        "order_type": "Market",
        "status": "New",
        "qty": "0.01",
        "updated_time": 1_762_000_000_000,
    }
    for field, value in [
        ("status", "Exploded"),
        ("qty", "-1"),
        ("order_id", ""),
        ("updated_time", "2025-11-01T00:00:00"),
    ]:
        with pytest.raises(ValidationError) as caught:
            writer.path.record_order(OrderUpdate(**{**good_order, field: value}))
        assert caught.value.field == field
    with pytest.raises(ValidationError):
        writer.path.record_position(
            PositionUpdate(
                bot_id="shortseller_001",
                symbol="BTCUSDT",
                side="",
                size="1",
                updated_time=1_762_000_000_000,
            )
        )
    assert counts(writer) == before


def test_corpus_is_at_least_thirty_cases() -> None:
    assert len(FILL_CASES) + len(MESSAGE_CASES) >= 30
