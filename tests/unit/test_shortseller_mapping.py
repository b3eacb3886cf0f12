"""ShortSeller's objects -> the write path's inputs, without any server.

The adapter runs with its writer stopped: what a hook did is read back from its spool.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.shortseller import HookOutcome, ShortSellerAdapter, fold_records, wallet_balance
from alpha_models.errors import ValidationError
from alpha_models.inputs import ExecType
from alpha_models.order_link import LINK_ID_MAX, canonical_reason, parse_order_link_id
from alpha_models.settings import Settings
from alpha_models.shortseller_store import TradeState
from tests import stack as tb

TRACE = tb.FIXTURES / "shortseller" / "shortseller_events.jsonl"
NOW = datetime(2025, 10, 1, 12, 0, tzinfo=UTC)


def trace_fills() -> list[dict[str, Any]]:
    with TRACE.open(encoding="utf-8") as fh:
        lines = [json.loads(line) for line in fh if line.strip()]
    return [e for e in lines if e["kind"] == "fill"]


def first_fill(**match: str) -> dict[str, Any]:
    for event in trace_fills():
        if all(event["data"].get(k) == v for k, v in match.items()):
            return dict(event["data"])
    raise AssertionError(match)


def make_adapter(tmp_path: Path, **env: Any) -> ShortSellerAdapter:
    settings = Settings(
        ALPHA_DATABASE_URL="postgresql://nobody@127.0.0.1:1/nothing",
        ALPHA_SPOOL_DIR=str(tmp_path / "spool"),
        **env,
    )
    return ShortSellerAdapter(settings, start=False)


@pytest.fixture
def adapter(tmp_path: Path) -> Iterator[ShortSellerAdapter]:
    a = make_adapter(tmp_path, ALPHA_REDIS_URL="redis://127.0.0.1:1/0")
    yield a
    a.abort()


def spooled(adapter: ShortSellerAdapter) -> list[dict[str, Any]]:
    assert adapter.spool is not None
    return [e.record for e in adapter.spool.pending()]


# ------------------------------------------------------------------------------ executions


def test_exchange_take_profit_is_the_bots_fill_with_the_exchange_values(
    adapter: ShortSellerAdapter,
) -> None:
    wire = first_fill(stopOrderType="TakeProfit")
    fill = adapter.map_execution(wire)
    assert (fill.bot_id, fill.close_reason, fill.client_order_id) == (
        "shortseller_001",
        "take_profit",
        "",
    )
    assert (fill.exec_id, fill.order_id, fill.side) == (wire["execId"], wire["orderId"], "Buy")
    assert fill.exec_price == Decimal(wire["execPrice"])
    assert fill.exec_qty == Decimal(wire["execQty"])
    assert fill.commission == Decimal(wire["execFee"])
    assert fill.exec_time == datetime.fromtimestamp(int(wire["execTime"]) / 1000, UTC)


@pytest.mark.parametrize(
    ("stop_order_type", "reason"),
    [("StopLoss", "stop_loss"), ("TrailingStop", "trailing_stop"), ("TakeProfit", "take_profit")],
)
def test_exchange_exit_reasons_come_from_stop_order_type(
    adapter: ShortSellerAdapter, stop_order_type: str, reason: str
) -> None:
    assert adapter.map_execution(first_fill(stopOrderType=stop_order_type)).close_reason == reason


def test_bot_order_fill_takes_the_reason_of_its_order_link_id(
    adapter: ShortSellerAdapter,
) -> None:
    wire = first_fill(execType="Trade", side="Buy", createType="CreateByUser")
    assert adapter.map_execution(wire).close_reason == canonical_reason(
        wire["orderLinkId"].split(":")[1]
    )


def test_manual_close_without_a_link_id_is_the_bots_marked_manual(
    adapter: ShortSellerAdapter,
) -> None:
    fill = adapter.map_execution(first_fill(createType="CreateByClosing"))
    assert (fill.bot_id, fill.close_reason) == ("shortseller_001", "manual")


def test_funding_is_kept_apart_from_fills(adapter: ShortSellerAdapter) -> None:
    wire = first_fill(execType="Funding")
    assert adapter.on_execution(wire) is HookOutcome.QUEUED
    [record] = spooled(adapter)
    assert record["data"]["fill"]["exec_type"] == str(ExecType.FUNDING)
    assert record["data"]["order"] is None  # a settlement is no order either


def test_a_fully_filled_order_is_recorded_filled_with_the_fill(
    adapter: ShortSellerAdapter,
) -> None:
    wire = first_fill(execType="Trade", leavesQty="0.0")
    adapter.on_execution(wire)
    [record] = spooled(adapter)
    assert record["data"]["order"]["status"] == "Filled"
    assert record["data"]["order"]["order_id"] == wire["orderId"]


BAD_EXECUTIONS = [
    ("orderLinkId", {"orderLinkId": "lxalgo_001:entry:1759569305321"}),
    ("orderLinkId", {"orderLinkId": "9f86d081884c7d65"}),  # LXAlgo's hex ids
    ("symbol", {"symbol": "XRPUSDT"}),
    ("execId", {"execId": ""}),
    ("side", {"side": "buy"}),
    ("execQty", {"execQty": "0"}),
    ("execPrice", {"execPrice": "-203.5"}),
    ("execFee", {"execFee": "NaN"}),
    ("execTime", {"execTime": "2025-10-01"}),
]


@pytest.mark.parametrize(
    ("field_name", "change"),
    BAD_EXECUTIONS,
    ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_EXECUTIONS)],
)
def test_bad_executions_get_a_typed_error_and_nothing_is_kept(
    adapter: ShortSellerAdapter, field_name: str, change: dict[str, str]
) -> None:
    wire = {**first_fill(execType="Trade"), **change}
    with pytest.raises(ValidationError) as err:
        adapter.map_execution(wire)
    assert err.value.field == field_name
    assert adapter.on_execution(wire) is HookOutcome.REJECTED  # logged, never raised
    assert spooled(adapter) == []


def test_a_redelivered_execution_is_kept_once(adapter: ShortSellerAdapter) -> None:
    wire = first_fill(execType="Trade")
    assert adapter.on_execution(wire) is HookOutcome.QUEUED
    assert adapter.on_execution(dict(wire)) is HookOutcome.DUPLICATE
    assert len(spooled(adapter)) == 1


_positive = st.decimals(
    min_value=Decimal("0.00000001"), max_value=Decimal("999999"), places=8, allow_nan=False
).map(lambda d: format(d, "f"))
_fee = st.decimals(
    min_value=Decimal("-1000"), max_value=Decimal("1000"), places=8, allow_nan=False
).map(lambda d: format(d, "f"))
_garbage = st.one_of(
    _fee, st.text(max_size=12), st.none(), st.integers(), st.floats(allow_nan=True)
)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    price=_positive,
    qty=_positive,
    fee=_fee,
    side=st.sampled_from(["Buy", "Sell"]),
    link=st.sampled_from(["", "shortseller_001:tp:mhmqc3eo0a1", "shortseller_001:entry:1"]),
    n=st.integers(min_value=0, max_value=10**9),
)
def test_valid_executions_are_kept_with_their_exact_values(
    adapter: ShortSellerAdapter, price: str, qty: str, fee: str, side: str, link: str, n: int
) -> None:
    wire = {
        **first_fill(execType="Trade"),
        "execPrice": price,
        "execQty": qty,
        "execFee": fee,
        "side": side,
        "orderLinkId": link,
        "execId": f"prop-{n}",
    }
    outcome = adapter.on_execution(wire)
    assert outcome in (HookOutcome.QUEUED, HookOutcome.DUPLICATE)
    if outcome is HookOutcome.QUEUED:
        fill = spooled(adapter)[-1]["data"]["fill"]
        assert (fill["exec_id"], fill["bot_id"], fill["side"]) == (
            f"prop-{n}",
            "shortseller_001",
            side,
        )
        assert Decimal(fill["exec_price"]) == Decimal(price)
        assert Decimal(fill["exec_qty"]) == Decimal(qty)
        assert Decimal(fill["commission"]) == Decimal(fee)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    price=_garbage,
    qty=_garbage,
    fee=_garbage,
    side=st.sampled_from(["Buy", "Sell", "buy", "", None, 1]),
    link=st.one_of(st.sampled_from(["momentum_001:ma:1", "x" * 40]), st.text(max_size=40)),
    symbol=st.sampled_from(["SOLUSDT", "solusdt", "XRPUSDT", None]),
)
def test_any_execution_is_queued_or_rejected_never_raised(
    adapter: ShortSellerAdapter,
    price: Any,
    qty: Any,
    fee: Any,
    side: Any,
    link: str,
    symbol: Any,
) -> None:
    wire = {
        **first_fill(execType="Trade"),
        "execPrice": price,
        "execQty": qty,
        "execFee": fee,
        "side": side,
        "orderLinkId": link,
        "symbol": symbol,
    }
    wire["execId"] = f"g-{price!r}-{qty!r}-{fee!r}-{side!r}-{link!r}-{symbol}"[:64]
    before = len(spooled(adapter))
    outcome = adapter.on_execution(wire)
    assert outcome in (HookOutcome.QUEUED, HookOutcome.REJECTED, HookOutcome.DUPLICATE)
    if outcome is not HookOutcome.QUEUED:
        assert len(spooled(adapter)) == before


# ------------------------------------------------------------------------------ orders


@pytest.mark.parametrize(
    "reason",
    [
        "entry",
        "Regime Change (INACTIVE)",
        "Time Limit (24h)",
        "Take Profit",
        "Stop Loss",
        "Cooldown Expired (Unfavorable Conditions)",
    ],
)
def test_proposed_order_link_ids_fit_bybit_and_name_bot_and_reason(
    adapter: ShortSellerAdapter, reason: str
) -> None:
    first = adapter.propose_order_link_id(reason, at=NOW)
    second = adapter.propose_order_link_id(reason, at=NOW)  # same millisecond
    assert first != second
    assert len(first) <= LINK_ID_MAX
    parsed = parse_order_link_id(first)
    assert (parsed.bot_id, parsed.reason) == ("shortseller_001", canonical_reason(reason))


def test_order_placed_stores_the_exchange_order_id_and_request(
    adapter: ShortSellerAdapter,
) -> None:
    request = {
        "category": "linear",
        "symbol": "SOLUSDT",
        "side": "Sell",
        "orderType": "Market",
        "qty": "33.8",
        "orderLinkId": "shortseller_001:entry:mhmqc3eo0a1",
    }
    response = {"orderId": "5107893f", "orderLinkId": request["orderLinkId"]}
    assert adapter.on_order_placed(request, response, at=NOW) is HookOutcome.QUEUED
    [record] = spooled(adapter)
    order = record["data"]
    assert (order["order_id"], order["qty"], order["side"], order["status"]) == (
        "5107893f",
        "33.80000000",
        "Sell",
        "New",
    )
    assert order["client_order_id"] == request["orderLinkId"]


# ------------------------------------------------------------------------------ strategy


def entry_position() -> dict[str, Any]:
    return {
        "in_position": True,
        "entry_price": 203.59818927361007,
        "asset_amount": 33.8,
        "leveraged_value": 6892.42,
        "entry_time": NOW,
    }


def test_position_opened_keeps_the_strategys_own_values_exactly(
    adapter: ShortSellerAdapter,
) -> None:
    levels = {"stop_loss": 206.6521621127142, "trailing_stop": 4.071963785472201}
    adapter.on_position_opened(
        "SOL", entry_position(), {"orderId": "5107893f", "orderLinkId": ""}, levels, at=NOW
    )
    [record] = spooled(adapter)
    params, details = record["data"]["params"], record["data"]["details"]
    assert params["trade_key"] == "5107893f"
    assert params["entry_price"] == "203.59818927"  # numeric(20,8) column
    assert float(details["entry_price"]) == 203.59818927361007  # the exact float, restorable
    assert float(details["stop_loss"]) == 206.6521621127142
    assert datetime.fromisoformat(params["entry_time"]) == NOW


def test_position_closed_records_the_strategys_short_pnl(adapter: ShortSellerAdapter) -> None:
    snapshot = entry_position()
    later = NOW + timedelta(hours=4, seconds=1)
    adapter.on_position_closed(
        "SOL", snapshot, 203.49518263920984, "Regime Change (INACTIVE)", None, at=later
    )
    [record] = spooled(adapter)
    params = record["data"]["params"]
    pnl = (Decimal("203.59818927361007") - Decimal("203.49518263920984")) * Decimal("33.8")
    assert Decimal(params["pnl_usd"]) == pnl.quantize(Decimal("1E-8"))  # short: entry - exit
    assert params["exit_reason"] == "regime_exit"
    assert params["holding_seconds"] == 4 * 3600 + 1


def test_the_strategys_own_fill_reports_are_never_fills(adapter: ShortSellerAdapter) -> None:
    """B3: bar close as price, commission 0, order id ``exit_order``."""
    assert adapter.record_fill(
        "SOLUSDT",
        "Buy",
        exec_price=203.49,
        exec_qty=33.8,
        order_id="exit_order",
        close_reason="Stop Loss",
        commission=0.0,
    )
    assert adapter.record_fill("SOLUSDT", "Sell", price=203.5, quantity=33.8, fee=0.0)
    assert adapter.update_position("SOLUSDT", 33.8, "Sell", 203.5, 0)
    assert spooled(adapter) == []


@pytest.mark.parametrize(
    "balance",
    [{"walletBalance": "100000"}, math.nan, "-5", 0, {"list": []}, True],
    ids=["fake-100000", "nan", "negative", "zero", "no-usdt", "bool"],
)
def test_unusable_balances_are_refused(adapter: ShortSellerAdapter, balance: Any) -> None:
    assert adapter.on_equity(balance, at=NOW) is HookOutcome.REJECTED
    assert spooled(adapter) == []


def test_balance_shapes_the_strategy_has_are_read() -> None:
    nested = {
        "list": [
            {
                "coin": [
                    {"coin": "BTC", "walletBalance": "1"},
                    {"coin": "USDT", "walletBalance": "9846.31275004"},
                ]
            }
        ]
    }
    assert wallet_balance(nested) == Decimal("9846.31275004")
    assert wallet_balance({"walletBalance": "10224.77128678"}) == Decimal("10224.77128678")
    assert wallet_balance(10000.5) == Decimal("10000.5")


@pytest.mark.parametrize(
    ("hook", "args"),
    [
        ("on_position_opened", ("DOGE", entry_position())),
        ("on_position_opened", ("SOL", {**entry_position(), "asset_amount": 0})),
        ("on_position_closed", ("SOL", entry_position(), 203.4, "")),
        (
            "on_position_synced",
            (
                "SOL",
                {
                    "symbol": "SOLUSDT",
                    "side": "Sell",
                    "size": "-30.5",
                    "positionIdx": 0,
                    "updatedTime": "1759571981350",
                },
            ),
        ),
        ("on_cooldown", ("SOL", {"end_time": "tomorrow"})),
    ],
    ids=["unknown-asset", "zero-amount", "no-reason", "negative-size", "bad-cooldown"],
)
def test_bad_strategy_objects_are_rejected_never_raised(
    adapter: ShortSellerAdapter, hook: str, args: tuple[Any, ...]
) -> None:
    assert getattr(adapter, hook)(*args, at=NOW) is HookOutcome.REJECTED
    assert spooled(adapter) == []


def test_settings_are_the_platforms_and_redis_db_is_honoured(tmp_path: Path) -> None:
    a = make_adapter(
        tmp_path, REDIS_HOST="cache.internal", REDIS_PORT=6380, REDIS_DB=3, POSTGRES_HOST="pg"
    )
    try:
        assert a.settings is not None and a.settings.postgres_host == "pg"
        pool = a._redis.connection_pool if a._redis is not None else None
        assert pool is not None
        assert (pool.connection_kwargs["host"], pool.connection_kwargs["db"]) == (
            "cache.internal",
            3,
        )
    finally:
        a.abort()


# ------------------------------------------------------------------------------ wrappers


class FakeClient:
    """``BybitClient`` as SHORTSELLER.md describes it (the new ``order_link_id`` included)."""

    def __init__(self) -> None:
        self.links: list[str | None] = []
        self.fail_next = False

    def place_order(
        self,
        symbol: str,
        side: str,
        order_type: str,
        qty: float,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing_stop: float | None = None,
        trailing_activation: float | None = None,
        reduce_only: bool = False,
        order_link_id: str | None = None,
    ) -> dict[str, str]:
        self.links.append(order_link_id)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("HTTP client error: TimeoutError()")
        return {"orderId": f"oid-{len(self.links)}", "orderLinkId": order_link_id or ""}

    def close_position(self, symbol: str) -> dict[str, str]:
        return {"status": "no_position"}

    def get_account_balance(self) -> dict[str, Any]:
        return {"list": [{"coin": [{"coin": "USDT", "walletBalance": "100000"}]}]}

    def get_positions(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return []


class FakeEngine:
    """The strategy engine's mutators, as ShortSeller implements them."""

    def __init__(self) -> None:
        self.asset_positions = {
            a: {
                "in_position": False,
                "entry_price": 0,
                "asset_amount": 0,
                "leveraged_value": 0,
                "entry_time": None,
            }
            for a in ("BTC", "ETH", "SOL")
        }
        self.asset_cooldowns: dict[str, Any] = dict.fromkeys(self.asset_positions)

    def update_position(
        self,
        asset: str,
        in_position: bool,
        entry_price: float = 0,
        asset_amount: float = 0,
        leveraged_value: float = 0,
    ) -> None:
        self.asset_positions[asset].update(
            in_position=in_position,
            entry_price=entry_price,
            asset_amount=asset_amount,
            leveraged_value=leveraged_value,
            entry_time=datetime.now(UTC) if in_position else None,
        )

    def should_exit_position(
        self, asset: str, current_price: float, current_time: datetime, current_regime: Any
    ) -> tuple[bool, str]:
        return True, "Take Profit"

    def apply_trade_execution_cooldown(self, asset: str) -> None:
        now = datetime.now(UTC)
        self.asset_cooldowns[asset] = {
            "end_time": now + timedelta(hours=1),
            "reason": "Trade Execution",
            "started_at": now,
            "duration_hours": 1,
        }


class FakeSystem:
    def __init__(self) -> None:
        self.bybit_client = FakeClient()
        self.strategy_engine = FakeEngine()


def test_attached_wrappers_turn_the_strategys_calls_into_records(
    adapter: ShortSellerAdapter,
) -> None:
    system = FakeSystem()
    adapter.attach(system)
    client, engine = system.bybit_client, system.strategy_engine
    client.fail_next = True  # an accepted-but-timed-out order: the retry must reuse the id
    with pytest.raises(RuntimeError):
        client.place_order("SOLUSDT", "Sell", "Market", 33.8, stop_loss=206.65)
    result = client.place_order("SOLUSDT", "Sell", "Market", 33.8, stop_loss=206.65)
    assert client.links[0] == client.links[1] and client.links[0] is not None
    assert parse_order_link_id(client.links[0]).reason == "entry"
    engine.update_position("SOL", True, 203.59818927361007, 33.8, 6892.42)
    engine.apply_trade_execution_cooldown("SOL")
    client.get_account_balance()  # the fake 100,000: refused, not an equity reading
    engine.should_exit_position("SOL", 197.1, datetime.now(UTC), None)
    client.close_position("SOLUSDT")
    engine.update_position("SOL", False)  # zeroes the dict the strategy aliases (B1)
    kinds = [r["kind"] for r in spooled(adapter)]
    assert kinds == ["event", "order", "trade_open", "cooldown", "trade_close"]
    records = spooled(adapter)
    assert records[2]["data"]["params"]["trade_key"] == result["orderId"]
    close = records[4]["data"]
    assert close["params"]["quantity"] == "33.80000000"  # the snapshot, not the zeroed alias
    assert (close["params"]["exit_price"], close["params"]["exit_reason"]) == (
        "197.10000000",
        "take_profit",
    )
    assert close["details"]["close_status"] == "no_position"


# ------------------------------------------------------------------------------ restore


def test_spooled_trade_records_fold_onto_the_stored_state() -> None:
    stored = {
        "SOLUSDT": TradeState(
            "SOLUSDT",
            "old",
            NOW - timedelta(days=1),
            NOW - timedelta(hours=20),
            Decimal("200"),
            Decimal("30"),
            Decimal("6000"),
            {},
        )
    }
    opened = {
        "kind": "trade_open",
        "data": {
            "params": {
                "symbol": "SOLUSDT",
                "trade_key": "new",
                "entry_time": NOW.isoformat(),
                "entry_price": "234.46859428",
                "quantity": "30.5",
                "notional": "7160.09",
            },
            "details": {"entry_price": "234.46859427590195"},
        },
    }
    cooldown = {
        "kind": "cooldown",
        "data": {
            "params": {"symbol": "SOLUSDT", "trade_key": "new"},
            "details": {"cooldown_until": (NOW + timedelta(hours=1)).isoformat()},
        },
    }
    state = fold_records(stored, [opened, cooldown])["SOLUSDT"]
    assert state.trade_key == "new" and state.open_at(NOW + timedelta(minutes=1))
    assert state.details["cooldown_until"] == (NOW + timedelta(hours=1)).isoformat()
    closed = {
        "kind": "trade_close",
        "data": {
            "params": {
                "symbol": "SOLUSDT",
                "trade_key": "new",
                "exit_time": (NOW + timedelta(hours=2)).isoformat(),
            },
            "details": {},
        },
    }
    assert not fold_records(stored, [opened, closed])["SOLUSDT"].open_at(NOW + timedelta(hours=3))
