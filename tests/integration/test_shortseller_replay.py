"""The ShortSeller fixture trace replayed through the adapter into real PostgreSQL and Redis.

The trace's ``_test`` annotations and ``expected_state`` are the oracle; the adapter never
sees ``_test`` (``read_trace`` drops it).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import Engine

from adapters.shortseller import ShortSellerAdapter
from alpha_models.bybit_stream import parse_execution
from alpha_models.cache import PositionCache
from alpha_models.db import make_engine
from alpha_models.devstack import DevStack
from alpha_models.settings import Settings
from alpha_models.shortseller_replay import (
    ReplayEngine,
    TraceEvent,
    TraceReplayer,
    normalize_expected,
    read_trace,
    snapshot_state,
)
from tests import stack as tb
from tests.conftest import Database, unique_name

TRACE = tb.FIXTURES / "shortseller" / "shortseller_events.jsonl"
BOT = "shortseller_001"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
COMPARED = ("positions", "realized", "funding_total", "fills_stored", "wallet_balance")
END_STATE = ("positions", "realized", "funding_total", "fills_stored", "redis", "trades", "equity")


def oracle() -> list[dict[str, Any]]:
    """The raw trace lines, ``_test`` included (for the assertions only)."""
    with TRACE.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def trace() -> list[TraceEvent]:
    return list(read_trace(TRACE))


def initial_balance() -> Decimal:
    header = next(e for e in trace() if e.kind == "trace_header")
    return Decimal(header.data["initial_wallet_balance"])


@dataclass
class Stores:
    """One fresh database, the shared Redis and a spool folder, as the adapter sees them."""

    settings: Settings
    engine: Engine
    cache: PositionCache

    def adapter(self) -> ShortSellerAdapter:
        return ShortSellerAdapter(self.settings)

    def snapshot(self) -> dict[str, Any]:
        return snapshot_state(
            self.engine,
            bot_id=BOT,
            symbols=SYMBOLS,
            cache=self.cache,
            initial_balance=initial_balance(),
        )


def make_stores(url: str, redis_url: str, spool: Path) -> Stores:
    settings = Settings(
        ALPHA_DATABASE_URL=url,
        ALPHA_REDIS_URL=redis_url,
        ALPHA_SPOOL_DIR=str(spool),
        ALPHA_CONNECT_TIMEOUT=2,
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    return Stores(settings, make_engine(settings), PositionCache(client))


@pytest.fixture
def stores(db: Database, tmp_path: Path, redis_client: redis.Redis) -> Iterator[Stores]:
    s = make_stores(db.url, db.stack.redis_url(), tmp_path / "spool")
    yield s
    s.engine.dispose()


@dataclass
class Replayed:
    """One uninterrupted replay of the fixture: what the stores held at each marker."""

    stores: Stores
    markers: dict[int, dict[str, Any]] = field(default_factory=dict)
    memory: dict[int, dict[str, Any]] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)


def replay(
    stores: Stores,
    events: list[TraceEvent],
    on_marker: Callable[[TraceEvent, ShortSellerAdapter, ReplayEngine], None] | None = None,
) -> dict[str, int]:
    replayer = TraceReplayer(stores.adapter, on_marker=on_marker, flush_timeout=60)
    summary = replayer.run(events)
    replayer.stop(hard=False)
    return dict(summary.outcomes)


@pytest.fixture(scope="module")
def replayed(
    devstack: DevStack, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replayed]:
    """Everything is read during the replay (Redis is flushed by later tests)."""
    name = unique_name("ss")
    devstack.create_database(name, template=template_db)
    redis.Redis.from_url(devstack.redis_url()).flushall()
    stores = make_stores(devstack.url(name), devstack.redis_url(), tmp_path_factory.mktemp("ss"))
    result = Replayed(stores)

    def on_marker(event: TraceEvent, adapter: ShortSellerAdapter, engine: ReplayEngine) -> None:
        result.markers[event.seq] = stores.snapshot()
        result.memory[event.seq] = engine.memory(event.ts)

    result.outcomes = replay(stores, trace(), on_marker)
    result.final = stores.snapshot()
    try:
        yield result
    finally:
        stores.engine.dispose()
        devstack.drop_database(name)


def expected_states() -> dict[int, dict[str, Any]]:
    return {
        e["seq"]: e["data"]["expected_state"]
        for e in oracle()
        if e["kind"] in ("restart", "trace_end")
    }


# ------------------------------------------------------------------------------ the trace


def test_stores_equal_the_trace_at_every_restart_marker_and_at_the_end(
    replayed: Replayed,
) -> None:
    """Positions, FIFO lots (with their remaining entry fees), realized P&L computed by
    ``pnl.rebuild`` over the stored fills, funding, fill count and wallet balance."""
    expected = expected_states()
    assert sorted(replayed.markers) == sorted(expected) == [189, 228, 539]
    for seq, state in expected.items():
        wanted = normalize_expected(state)
        got = replayed.markers[seq]
        for key in COMPARED:
            assert got[key] == wanted[key], (seq, key)


def test_redis_live_position_equals_the_trace_at_every_marker(replayed: Replayed) -> None:
    for seq, state in expected_states().items():
        for symbol, pos in normalize_expected(state)["positions"].items():
            cached = replayed.markers[seq]["redis"][symbol]
            if pos["qty"] == 0:
                assert cached is None, (seq, symbol)
            else:
                assert cached == {
                    "side": pos["side"],
                    "qty": pos["qty"],
                    "avg_entry_price": pos["avg_entry_price"],
                }, (seq, symbol)


def test_every_accepted_trade_fill_is_stored_once_with_the_exchange_values(
    replayed: Replayed,
) -> None:
    executions = [e for e in oracle() if e["kind"] == "fill"]
    trades = {
        e["data"]["execId"]: e["data"]
        for e in executions
        if (e.get("_test") or {}).get("expect", "accept") == "accept"
    }
    funding = {
        e["data"]["execId"]
        for e in executions
        if (e.get("_test") or {}).get("expect") == "not_a_trade"
    }
    with replayed.stores.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT exec_id, order_id, exec_price, exec_qty, commission, exec_time, side, "
                "bot_id, exec_type FROM trading.fills"
            )
        ).all()
        funding_rows = conn.execute(
            text("SELECT exec_id, fee FROM trading.funding_settlements")
        ).all()
    assert len(rows) == len({r.exec_id for r in rows}) == len(trades) == 153
    assert {r.exec_id for r in rows} == set(trades)
    for row in rows:
        wire = parse_execution(trades[row.exec_id])
        assert (row.order_id, row.exec_price, row.exec_qty, row.commission) == (
            wire.order_id,
            wire.exec_price,
            wire.exec_qty,
            wire.commission,
        )
        assert (row.exec_time, row.side, row.bot_id, row.exec_type) == (
            wire.exec_time,
            wire.side,
            BOT,
            "Trade",
        )
    assert {r.exec_id for r in funding_rows} == funding and len(funding) == 31
    assert sum(r.fee for r in funding_rows) == Decimal("-14.09323330")


def test_exchange_side_exits_are_attributed_to_the_position_they_close(
    replayed: Replayed,
) -> None:
    lines = oracle()
    reasons = {
        e["data"]["execId"]: e["_test"]["reason"]
        for e in lines
        if e["kind"] == "fill" and "reason" in (e.get("_test") or {})
    }
    with replayed.stores.engine.connect() as conn:
        stored = dict(
            conn.execute(
                text("SELECT exec_id, close_reason FROM trading.fills WHERE exec_id = ANY(:ids)"),
                {"ids": list(reasons)},
            ).all()
        )
    assert stored == reasons  # take_profit / stop_loss / trailing_stop from stopOrderType
    trades = {t["trade_key"]: t for t in replayed.final["trades"]}
    opened = {e["data"]["order_id"]: e["data"] for e in lines if e["kind"] == "position_opened"}
    assert set(trades) == set(opened)  # one strategy trade per entry
    for key, data in opened.items():  # the strategy's own price, never a fill as entry
        assert trades[key]["entry_price"] == Decimal(repr(data["entry_price"])).quantize(
            Decimal("1E-8")
        )
    closes = [e["data"] for e in lines if e["kind"] == "position_closed"]
    no_position = [c for c in closes if c["close_result"].get("status") == "no_position"]
    assert len(no_position) == 28
    by_exit = {t["exit_exec_id"]: t for t in trades.values() if t["exit_exec_id"]}
    for close in no_position:
        # The strategy's "Regime Change" or "Stop Loss" on a position the exchange had
        # already closed: the trade is linked to the exchange's exit fill and its reason.
        exit_id = close["fills_realized"]["exit_exec_ids"][-1]
        trade = by_exit[exit_id]
        assert trade["symbol"] == close["symbol"]
        assert trade["exit_fill_reason"] == reasons[exit_id]
        assert trade["exit_reason"] == close["reason_code"]


def test_equity_is_the_wallet_balance_with_one_snapshot_per_day(replayed: Replayed) -> None:
    readings = [e for e in trace() if e.kind == "equity"]
    last_per_day: dict[Any, Decimal] = {}
    for e in readings:
        last_per_day[e.ts.date()] = Decimal(e.data["walletBalance"])
    equity = replayed.final["equity"]
    assert equity["current"] == Decimal(readings[-1].data["walletBalance"])
    assert equity["current"] == normalize_expected(expected_states()[539])["wallet_balance"]
    assert [(day, end) for day, _start, end in equity["days"]] == sorted(last_per_day.items())
    for (_, start, _end), (_, _, previous_end) in zip(
        equity["days"][1:], equity["days"], strict=False
    ):
        assert start == previous_end  # a day opens at the previous day's close


# ------------------------------------------------------------------------------ delivery


def _tied(events: list[TraceEvent]) -> set[tuple[str, str]]:
    """(symbol, execTime) shared by several fills: their relative order is the arrival
    order in the database (Bybit's ``seq`` is not stored), so they are not moved."""
    seen: Counter[tuple[str, str]] = Counter(
        (e.data["symbol"], e.data["execTime"]) for e in events if e.kind == "fill"
    )
    return {key for key, n in seen.items() if n > 1}


def _same_stretch(events: list[TraceEvent], a: int, b: int) -> bool:
    lo, hi = min(a, b), max(a, b)
    return not any(e.kind in ("restart", "session_start") for e in events[lo : hi + 1])


def perturbed(events: list[TraceEvent]) -> tuple[list[TraceEvent], dict[str, int]]:
    """The trace with executions re-delivered and delivered out of order, as the stream and
    the REST backfill do: a fill before its ``order_placed``, an exchange exit after the
    strategy's ``position_closed``, an entry fill after its exit, and duplicates (also
    after a restart, when the adapter's memory of seen execIds is gone)."""
    pos = {e.event_id: float(i) for i, e in enumerate(events)}
    tied = _tied(events)

    def movable(event: TraceEvent) -> bool:
        return (event.data["symbol"], event.data["execTime"]) not in tied

    counts = {"before_order": 0, "after_close": 0, "entry_after_exit": 0, "duplicates": 0}
    fills = [i for i, e in enumerate(events) if e.kind == "fill"]
    for i, e in enumerate(events):
        if e.kind == "order_placed" and counts["before_order"] < 12:
            oid = e.data["response"]["orderId"]
            j = next((k for k in fills if k > i and events[k].data["orderId"] == oid), None)
            if j is not None and _same_stretch(events, i, j) and movable(events[j]):
                pos[events[j].event_id] = i - 0.5
                counts["before_order"] += 1
        if e.kind == "position_closed" and e.data["close_result"].get("status") == "no_position":
            exit_id = e.data["fills_realized"]["exit_exec_ids"][-1]
            j = next(k for k in fills if events[k].data["execId"] == exit_id)
            if _same_stretch(events, i, j) and movable(events[j]):
                pos[events[j].event_id] = i + 0.5
                counts["after_close"] += 1
    for i, e in enumerate(events):  # an entry fill delivered after the fill that closed it
        d = e.data
        if e.kind != "fill" or d["side"] != "Sell" or d["execType"] != "Trade":
            continue
        j = next(
            (
                k
                for k in fills
                if k > i
                and events[k].data["symbol"] == d["symbol"]
                and events[k].data["side"] == "Buy"
            ),
            None,
        )
        if (
            j is not None
            and counts["entry_after_exit"] < 6
            and _same_stretch(events, i, j)
            and movable(e)
            and pos[e.event_id] == float(i)
        ):
            pos[e.event_id] = j + 0.25
            counts["entry_after_exit"] += 1
    out = list(events)
    after_restart = next(i for i, e in enumerate(events) if e.kind == "position_synced")
    for n, i in enumerate(fills):
        if n % 7 == 0:
            copy = replace(events[i], event_id=f"dup-{events[i].event_id}")
            target = min(i + 3.75, len(events) - 1.5)
            if n % 14 == 0 and i < after_restart:
                target = after_restart + 0.75  # re-delivered by a backfill after a restart
            pos[copy.event_id] = target
            out.append(copy)
            counts["duplicates"] += 1
    out.sort(key=lambda e: pos[e.event_id])
    return out, counts


def end_state(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {key: snapshot[key] for key in END_STATE}


def test_duplicate_and_out_of_order_deliveries_do_not_change_the_result(
    stores: Stores, replayed: Replayed
) -> None:
    events, counts = perturbed(trace())
    assert min(counts.values()) >= 5, counts  # the perturbations really happened
    outcomes = replay(stores, events)
    assert outcomes.get("failed", 0) == 0 and outcomes.get("rejected", 0) == 0
    assert end_state(stores.snapshot()) == end_state(replayed.final)
    # An operator replaying the recorded trace once more changes nothing either.
    replay(stores, trace())
    assert end_state(stores.snapshot()) == end_state(replayed.final)


def test_postgres_stopped_for_part_of_the_trace_ends_identical(
    stores: Stores, replayed: Replayed, devstack: DevStack
) -> None:
    """PostgreSQL is down from a third to two thirds of the trace, across both restarts:
    hooks keep returning (records wait in the spool, also across the hard kills) and the
    end state equals the uninterrupted replay's. Hook latencies: see
    ``benchmarks/bench_shortseller_hooks.py``."""
    events = trace()
    down, up = len(events) // 3, 2 * len(events) // 3
    replayer = TraceReplayer(stores.adapter, flush_timeout=60)
    try:
        for i, event in enumerate(events):
            if i == down:
                devstack.postgres.stop()
            if i == up:
                assert replayer.adapter is not None
                assert replayer.adapter.pending() > 0  # the outage was really hit
                devstack.restart_postgres()
            replayer.feed(event)
    finally:
        if not devstack.postgres.running():
            devstack.restart_postgres()
    replayer.stop(hard=False)
    assert replayer.summary.outcomes.get("failed", 0) == 0
    assert replayer.summary.sessions == 3
    assert end_state(stores.snapshot()) == end_state(replayed.final)
