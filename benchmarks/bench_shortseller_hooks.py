"""ShortSeller adapter: hook latency with PostgreSQL up and with PostgreSQL stopped.

    .venv/bin/python benchmarks/bench_shortseller_hooks.py [--rounds 3] [--trace PATH]

Starts its own PostgreSQL 15 (fsync on, as production), PgBouncer and Redis in a temporary
folder. Each round replays the fixture trace through the adapter on a fresh database, as
the live hooks receive it, with every hook call timed (wall clock, in the calling thread):

1. reference: PostgreSQL up the whole time;
2. outage: PostgreSQL stopped from a third to two thirds of the trace (across both of the
   trace's restarts, i.e. also across two hard kills of the adapter), then restarted.

Events are fed back to back (a live strategy spaces them by seconds), so the background
writer competes with the hooks harder than it would live. Prints p50 / p90 / p99 / max per
phase and whether the outage round ends in the same state as the reference.
Target (issue 7): p99 <= 50 ms while PostgreSQL is down.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis

from adapters.shortseller import ShortSellerAdapter
from alpha_models import migrations
from alpha_models.cache import PositionCache
from alpha_models.db import make_engine
from alpha_models.devstack import DevStack
from alpha_models.settings import Settings
from alpha_models.shortseller_replay import TraceEvent, TraceReplayer, read_trace, snapshot_state

TRACE = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "fixtures"
    / "shortseller"
    / "shortseller_events.jsonl"
)
END_STATE = ("positions", "realized", "funding_total", "fills_stored", "redis", "trades", "equity")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def replay(
    stack: DevStack, name: str, events: list[TraceEvent], spool: Path, *, outage: bool
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    stack.create_database(name)
    url = stack.url(name)
    migrations.upgrade(url)
    client = redis.Redis.from_url(stack.redis_url(), decode_responses=True)
    client.flushall()
    settings = Settings(
        ALPHA_DATABASE_URL=url,
        ALPHA_REDIS_URL=stack.redis_url(),
        ALPHA_SPOOL_DIR=str(spool),
        ALPHA_CONNECT_TIMEOUT=2,
    )
    timings: dict[str, list[float]] = defaultdict(list)
    phase = "up"

    def observe(hook: str, seconds: float) -> None:
        timings["restore" if hook == "restore" else phase].append(seconds)

    replayer = TraceReplayer(lambda: ShortSellerAdapter(settings), observe=observe)
    down, up = len(events) // 3, 2 * len(events) // 3
    try:
        for i, event in enumerate(events):
            if outage and i == down:
                stack.postgres.stop()
                phase = "down"
            if outage and i == up:
                stack.restart_postgres()
                phase = "after"
            replayer.feed(event)
    finally:
        if not stack.postgres.running():
            stack.restart_postgres()
    replayer.stop(hard=False)
    engine = make_engine(settings)
    snap = snapshot_state(
        engine, bot_id="shortseller_001", symbols=SYMBOLS, cache=PositionCache(client)
    )
    engine.dispose()
    client.close()
    return timings, {key: snap[key] for key in END_STATE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="outage rounds (default 3)")
    parser.add_argument("--trace", type=Path, default=TRACE)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    events = list(read_trace(args.trace))
    root = Path(tempfile.mkdtemp(prefix="alpha-bench-ss-"))
    stack = DevStack(root, fsync=True).start()
    try:
        ref_timings, reference = replay(stack, "bench_ref", events, root / "s0", outage=False)
        merged: dict[str, list[float]] = defaultdict(list)
        identical = 0
        for n in range(args.rounds):
            timings, state = replay(stack, f"bench_out{n}", events, root / f"s{n + 1}", outage=True)
            for phase, values in timings.items():
                merged[phase].extend(values)
            identical += state == reference
        print(f"trace: {args.trace.name}, {len(events)} events; {args.rounds} outage round(s)")
        print(f"{'phase':<32} {'hooks':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        rows = [("PostgreSQL up (reference)", ref_timings["up"])]
        rows += [
            ("outage round: before the stop", merged["up"]),
            ("outage round: PostgreSQL down", merged["down"]),
            ("outage round: after restart", merged["after"]),
            ("restore() at start-up (not a hook)", merged["restore"]),
        ]
        for label, values in rows:
            if not values:
                continue
            print(
                f"{label:<32} {len(values):>6} {percentile(values, 0.50) * 1e3:>8.2f} "
                f"{percentile(values, 0.90) * 1e3:>8.2f} {percentile(values, 0.99) * 1e3:>8.2f} "
                f"{max(values) * 1e3:>8.2f}"
            )
        down_p99 = percentile(merged["down"], 0.99) * 1e3
        print(
            f"p99 while PostgreSQL is down: {down_p99:.2f} ms "
            f"({'meets' if down_p99 <= 50 else 'MISSES'} the 50 ms target)"
        )
        print(f"end state identical to the reference: {identical}/{args.rounds}")
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
