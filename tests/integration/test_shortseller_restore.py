"""Restart recovery: ShortSeller's memory rebuilt from Redis, PostgreSQL and the spool.

The trace's two restarts (a deploy with SOL open; an OOM kill while SOL's take-profit
fires) and a cut at an arbitrary point in the middle of the trace.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text

from adapters.shortseller import HookOutcome, RestoreReport, ShortSellerAdapter
from alpha_models.devstack import DevStack
from alpha_models.shortseller_replay import (
    ReplayEngine,
    TraceEvent,
    TraceReplayer,
    exchange_positions_from_events,
    normalize_expected,
)
from tests.conftest import unique_name
from tests.integration.test_shortseller_replay import (
    Stores,
    end_state,
    make_stores,
    oracle,
    trace,
)
from tests.unit.test_shortseller_mapping import FakeEngine

DEPLOY, CRASH = 189, 228  # seq of the two restart markers
MEMORY_KEYS = ("in_position", "entry_price", "asset_amount", "leveraged_value", "entry_time")


def lost_memory(seq: int) -> dict[str, dict[str, Any]]:
    """What the trace says the strategy lost at a restart, as ``ReplayEngine.memory``."""
    marker = next(e for e in oracle() if e["seq"] == seq)
    out = {}
    for asset, mem in marker["data"]["strategy_memory_lost"].items():
        entry_time, until = mem["entry_time"], mem["cooldown_until"]
        out[asset] = {
            **{key: mem[key] for key in MEMORY_KEYS if key != "entry_time"},
            "entry_time": datetime.fromisoformat(entry_time) if entry_time else None,
            "cooldown_until": datetime.fromisoformat(until) if until else None,
        }
    return out


def at_seq(events: list[TraceEvent], seq: int) -> int:
    return next(i for i, e in enumerate(events) if e.seq == seq)


@dataclass
class Run:
    stores: Stores
    restores: list[tuple[RestoreReport, dict[str, Any]]] = field(default_factory=list)
    states: list[tuple[Any, Any] | None] = field(default_factory=list)  # engine after event i
    final: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def full_run(
    devstack: DevStack, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    """One uninterrupted replay, with the engine's memory after every event."""
    name = unique_name("ssr")
    devstack.create_database(name, template=template_db)
    redis.Redis.from_url(devstack.redis_url()).flushall()
    stores = make_stores(devstack.url(name), devstack.redis_url(), tmp_path_factory.mktemp("r"))
    run = Run(stores)
    replayer = TraceReplayer(
        stores.adapter,
        on_restore=lambda report, engine, at: run.restores.append((report, engine.memory(at))),
        flush_timeout=60,
    )
    for event in trace():
        replayer.feed(event)
        engine = replayer.engine
        run.states.append(
            None
            if engine is None
            else (copy.deepcopy(engine.asset_positions), copy.deepcopy(engine.asset_cooldowns))
        )
    run.final = stores.snapshot()
    try:
        yield run
    finally:
        stores.engine.dispose()
        devstack.drop_database(name)


def memory(state: tuple[Any, Any], at: datetime) -> dict[str, Any]:
    engine = ReplayEngine()
    engine.asset_positions, engine.asset_cooldowns = copy.deepcopy(state)
    return engine.memory(at)


# ------------------------------------------------------------------------------ restarts


def test_deploy_restart_gets_back_the_original_entry_size_time_and_cooldown(
    full_run: Run,
) -> None:
    """``sync_positions`` alone would take avgPrice as entry price and *now* as entry time
    (restarting the 24 h limit) and lose the cooldown; after restore the memory is what the
    strategy had before the kill."""
    report, restored = full_run.restores[1]  # session 2
    assert report.source == "redis"
    assert report.actions["SOL"] == "restored"
    assert restored == lost_memory(DEPLOY)
    synced = next(e for e in trace() if e.kind == "position_synced").data["strategy_state"]
    assert restored["SOL"]["entry_price"] != synced["entry_price"]  # 234.468.. not 234.51


def test_crash_while_the_exchange_closes_the_position_restores_flat(full_run: Run) -> None:
    """SOL's take-profit fired while the strategy was down: the exchange is flat, so the
    memory stays flat (no phantom, no re-entry guard lost); the open trade is closed as
    reconciled, and the late exit fill is linked to it with the exchange's reason."""
    report, restored = full_run.restores[2]  # session 3
    assert report.actions["SOL"] == "closed_while_down"
    assert not any(m["in_position"] for m in restored.values())
    late = next(e for e in oracle() if (e.get("_test") or {}).get("late") and e["kind"] == "fill")
    sol = [t for t in full_run.final["trades"] if t["symbol"] == "SOLUSDT"]
    trade = next(t for t in sol if t["exit_exec_id"] == late["data"]["execId"])
    assert trade["exit_reason"] == "external_close_during_downtime"
    assert trade["exit_fill_reason"] == "take_profit"
    with full_run.stores.engine.connect() as conn:
        events = conn.execute(
            text(
                "SELECT count(*) FROM audit.system_events WHERE bot_id = 'shortseller_001' "
                "AND event_type = 'reconciliation' AND symbol = 'SOLUSDT'"
            )
        ).scalar_one()
    assert events == 1


def cut_point(events: list[TraceEvent], run: Run) -> int:
    """The first event after the middle where the strategy holds a position and memory and
    exchange agree (the trace was recorded by a strategy that never restarted there)."""
    for k in range(len(events) // 2, len(events)):
        state = run.states[k - 1]
        if state is None or events[k].kind in ("session_start", "restart", "trace_end"):
            continue
        exchange = {
            p["symbol"]: Decimal(p["size"]) for p in exchange_positions_from_events(events[:k])
        }
        positions = state[0]
        held = {a: p for a, p in positions.items() if p["in_position"]}
        symbols = {f"{a}USDT" for a in held}
        if (
            held
            and symbols == set(exchange)
            and all(
                Decimal(repr(p["asset_amount"])) == exchange[f"{a}USDT"] for a, p in held.items()
            )
        ):
            return k
    raise AssertionError("no cut point")


def test_interrupted_replay_ends_identical_to_an_uninterrupted_one(
    full_run: Run, db: Any, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """Replay half, drop the adapter and all memory (a hard kill: undelivered records stay in
    the spool), restart with only what the exchange says, restore, replay the rest."""
    events = trace()
    k = cut_point(events, full_run)
    stores = make_stores(db.url, db.stack.redis_url(), tmp_path / "spool")
    first = TraceReplayer(stores.adapter, flush_timeout=60)
    first.run(events[:k])
    first.stop(hard=True)
    restored: list[dict[str, Any]] = []
    second = TraceReplayer(
        stores.adapter,
        on_restore=lambda report, engine, at: restored.append(engine.memory(at)),
        flush_timeout=60,
    )
    second.run(events[k:], resume_positions=exchange_positions_from_events(events[:k]))
    second.stop(hard=False)
    state = full_run.states[k - 1]
    assert state is not None
    assert restored[0] == memory(state, events[k].ts)
    assert any(m["in_position"] for m in restored[0].values())
    assert end_state(stores.snapshot()) == end_state(full_run.final)
    stores.engine.dispose()


# ------------------------------------------------------------------------------ sources


def replay_to_deploy_restart(stores: Stores) -> None:
    events = trace()
    replayer = TraceReplayer(stores.adapter, flush_timeout=60)
    replayer.run(events[: at_seq(events, DEPLOY) + 1])  # the marker drops the adapter


def synced_engine(adapter: ShortSellerAdapter) -> tuple[ReplayEngine, datetime]:
    """Session 2's engine after ``sync_positions`` adopted SOL the way the strategy does."""
    event = next(e for e in trace() if e.kind == "position_synced")
    state = event.data["strategy_state"]
    engine = ReplayEngine()
    engine.update_position(
        "SOL",
        True,
        state["entry_price"],
        state["asset_amount"],
        state["leveraged_value"],
        now=event.ts,
    )
    adapter.on_position_synced("SOL", event.data["exchange_position"], at=event.ts)
    return engine, event.ts


@pytest.fixture
def stores(db: Any, tmp_path: Path, redis_client: redis.Redis) -> Iterator[Stores]:
    s = make_stores(db.url, db.stack.redis_url(), tmp_path / "spool")
    yield s
    s.engine.dispose()


@pytest.mark.parametrize("redis_copy", ["fresh", "empty", "stale"])
def test_restore_reads_redis_first_and_postgres_when_redis_is_empty_or_stale(
    stores: Stores, redis_client: redis.Redis, redis_copy: str
) -> None:
    replay_to_deploy_restart(stores)
    if redis_copy == "empty":
        redis_client.flushdb()
    elif redis_copy == "stale":  # a copy older than PostgreSQL's last write
        redis_client.hset("strategy_state:shortseller_001", "stamp", "2000-01-01T00:00:00+00:00")
    adapter = ShortSellerAdapter(stores.settings, start=False)
    engine, at = synced_engine(adapter)
    report = adapter.restore(engine, at=at)
    adapter.abort()
    assert report.source == ("redis" if redis_copy == "fresh" else "postgres")
    assert engine.memory(at) == lost_memory(DEPLOY)


def test_restore_lets_the_database_decide_when_get_positions_failed(stores: Stores) -> None:
    """B6: ``get_positions`` answered ``[]`` on an error, so nothing was adopted; the open
    short is restored from the database instead of being orphaned."""
    replay_to_deploy_restart(stores)
    adapter = ShortSellerAdapter(stores.settings)
    engine = ReplayEngine()  # sync adopted nothing
    at = next(e for e in trace() if e.kind == "position_synced").ts
    adapter.on_position_sync_failed(at=at)
    report = adapter.restore(engine, at=at)
    adapter.close()
    assert report.actions["SOL"] == "restored_exchange_unknown"
    assert engine.memory(at) == lost_memory(DEPLOY)


def test_restore_while_postgres_is_down_uses_redis_and_the_spool(
    stores: Stores, devstack: DevStack
) -> None:
    """PostgreSQL goes down just before the SOL entry and stays down across the deploy
    restart: the entry only exists in the killed process's spool, and restore still gets
    it back; once PostgreSQL is up, the stores equal the trace's state at the restart."""
    events = trace()
    entry = at_seq(events, 184)  # SOL order_placed (attempt 2)
    deploy = at_seq(events, DEPLOY)
    reports: list[tuple[RestoreReport, dict[str, Any]]] = []
    replayer = TraceReplayer(
        stores.adapter,
        on_restore=lambda report, engine, at: reports.append((report, engine.memory(at))),
        flush_timeout=60,
    )
    try:
        replayer.run(events[:entry])
        assert replayer.adapter is not None and replayer.adapter.flush(60)
        devstack.postgres.stop()
        replayer.run(events[entry : deploy + 5])  # through the restore of session 2
        report, restored = reports[-1]
        assert report.source == "redis" and report.pending_records > 0
        assert restored == lost_memory(DEPLOY)
    finally:
        if not devstack.postgres.running():
            devstack.restart_postgres()
    replayer.stop(hard=False)
    wanted = normalize_expected(
        next(e for e in oracle() if e["seq"] == DEPLOY)["data"]["expected_state"]
    )
    got = stores.snapshot()
    for key in ("positions", "realized", "fills_stored", "funding_total"):
        assert got[key] == wanted[key], key


# daily_cross_count: the 12-crosses-a-day entry limit survives a restart (SHORTSELLER.md §4).


class CrossingEngine(FakeEngine):
    """The strategy engine's cross bookkeeping: +1 per cross, zeroed by the daily reset."""

    def __init__(self) -> None:
        super().__init__()
        self.daily_cross_count = dict.fromkeys(self.asset_positions, 0)

    def detect_price_ema_crosses(self, market_data: Any) -> list[Any]:
        self.daily_cross_count[market_data] += 1
        return []

    def reset_daily_cross_counts(self) -> None:
        self.daily_cross_count = dict.fromkeys(self.daily_cross_count, 0)


@dataclass
class System:
    strategy_engine: CrossingEngine
    bybit_client: object = field(default_factory=object)


def restarted(stores: Stores, at: datetime | None = None) -> tuple[CrossingEngine, RestoreReport]:
    adapter = ShortSellerAdapter(stores.settings)
    engine = CrossingEngine()
    report = adapter.restore(engine, exchange_positions=[], at=at)
    adapter.close()
    return engine, report


def test_the_days_cross_counts_survive_a_restart(stores: Stores) -> None:
    adapter = ShortSellerAdapter(stores.settings)
    system = System(CrossingEngine())
    adapter.attach(system)
    for asset in ("BTC", "BTC", "ETH", "BTC"):
        system.strategy_engine.detect_price_ema_crosses(asset)
    assert adapter.flush(30)
    adapter.close()
    engine, report = restarted(stores)
    assert engine.daily_cross_count == {"BTC": 3, "ETH": 1, "SOL": 0}
    assert report.cross_counts == {"BTC": 3, "ETH": 1, "SOL": 0}
    with stores.engine.connect() as conn:  # one row per change, not per call
        rows = conn.execute(
            text("SELECT count(*) FROM audit.system_events WHERE event_type = 'daily_cross_count'")
        ).scalar_one()
    assert rows == 4


def test_cross_counts_of_another_day_or_before_the_reset_are_not_restored(stores: Stores) -> None:
    day1 = datetime.fromisoformat("2025-10-04T10:00:00+00:00")
    day2 = datetime.fromisoformat("2025-10-05T00:00:40+00:00")
    adapter = ShortSellerAdapter(stores.settings)
    adapter.on_cross_counts({"BTC": 5, "ETH": 2, "SOL": 0}, at=day1)
    adapter.on_cross_counts({"BTC": 6, "ETH": 2, "SOL": 0}, at=day2)  # before the reset
    adapter.on_cross_counts({"BTC": 0, "ETH": 0, "SOL": 0}, at=day2.replace(minute=1))
    assert adapter.flush(30)
    adapter.close()
    assert restarted(stores, day1.replace(hour=23))[0].daily_cross_count["BTC"] == 5
    assert restarted(stores, day2.replace(hour=2))[0].daily_cross_count == dict.fromkeys(
        ("BTC", "ETH", "SOL"), 0
    )


@pytest.mark.parametrize("counts", [{"BTC": -1}, {"BTC": True}, {"BTC": 1.5}, {"DOGE": 1}, [3]])
def test_bad_cross_counts_are_rejected(stores: Stores, counts: Any) -> None:
    adapter = ShortSellerAdapter(stores.settings, start=False)
    assert adapter.on_cross_counts(counts) is HookOutcome.REJECTED
    assert adapter.pending() == 0
    adapter.abort()
