"""P&L rebuild and analytics benchmark (issue 4): 1,000,000 fills, ~200,000 round trips.

    .venv/bin/python benchmarks/bench_analytics.py [--fills 1000000] [--workers N] [--no-explain]

Starts its own PostgreSQL 15 (fsync on, as production; PgBouncer and Redis start too but
are unused) in a temporary folder, migrates an empty database with
``alpha_models.migrations.upgrade``, then:

1. generates N fills for the three bots (deterministic seed; ShortSeller shorts, LXAlgo
   longs, Momentum both; 1-3 entries and 1-4 exits per round trip, ~5 fills per trip),
   their FIFO lots (``position_entries``: closed and open) and ``positions`` rows, all
   loaded with COPY;
2. times the full P&L rebuild (``pnl_store.rebuild_completed_trades``: DB read, FIFO,
   write of every round trip into ``completed_trades``), first on the empty table, then
   again when nothing changed: target >= 100,000 fills/s end to end;
3. times each analytics call (median of 5 after a warm-up): target <= 300 ms each;
4. prints the figures with their ratio to the target, and the
   ``EXPLAIN (ANALYZE, BUFFERS)`` plans of the analytics queries.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy import text
from sqlalchemy.engine import Engine

from alpha_models import analytics, migrations, pnl_store
from alpha_models.bots import register_bots
from alpha_models.db import make_engine
from alpha_models.devstack import DevStack
from alpha_models.settings import Settings

SEED = 20251201
T0 = datetime(2024, 1, 1, tzinfo=UTC)
BOTS = ("shortseller_001", "lxalgo_001", "momentum_001")
SYMBOLS_PER_BOT = 20
FEE_RATE = Decimal("0.0002")
EDGE = {"shortseller_001": 12, "lxalgo_001": 10, "momentum_001": 0}  # 1/EDGE of a step
Q8 = Decimal("1E-8")
EXIT_REASONS = ("take_profit", "stop_loss", "trailing_stop", "signal_exit", "")
ENTRY_REASONS = ("breakout", "pump_rule_1", "ema_cross", "")
RATE_TARGET = 100_000.0
LATENCY_TARGET_MS = 300.0
REPEAT = 5

FILL_COLUMNS = (
    "exec_id, bot_id, symbol, order_id, client_order_id, side, exec_price, exec_qty, "
    "exec_time, close_reason, commission, exec_type, source"
)
LOT_COLUMNS = (
    "bot_id, symbol, entry_id, side, entry_price, original_qty, remaining_qty, entry_time, "
    "entry_order_id, entry_commission, status"
)


@dataclass
class Lane:
    """One (bot, symbol) tape being generated."""

    bot_id: str
    symbol: str
    price: int  # in 1e-4 units
    clock_ms: int


def _ts(ms: int) -> str:
    t = T0 + timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "+00"


def _dec4(units: int) -> str:
    return f"{units // 10_000}.{units % 10_000:04d}"


def _qty(units: int) -> str:
    return f"{units // 1000}.{units % 1000:03d}"


def generate(n_fills: int, seed: int = SEED) -> tuple[bytes, bytes, bytes, int]:
    """COPY text for fills, position_entries and positions; and the number of round trips.

    Each lane (bot, symbol) runs round trips back to back; fills of all lanes interleave in
    time because every lane spans about the same year. The last trip of two lanes in three
    is left open, so there are open lots and positions to report.
    """
    rng = random.Random(seed)
    lanes = [
        Lane(bot, f"B{b}S{s:02d}USDT", rng.randint(5_000, 5_000_000), rng.randint(0, 60_000))
        for b, bot in enumerate(BOTS)
        for s in range(SYMBOLS_PER_BOT)
    ]
    per_lane, extra = divmod(n_fills, len(lanes))
    fills: list[str] = []
    lots_out: list[str] = []
    positions: list[str] = []
    trips = 0
    seq = 0
    step = max(1_000, int(365 * 86_400_000 / max(1, per_lane) * 2))

    def new_fill(
        lane: Lane, side: str, qty: int, reason: str, favour: int = 0
    ) -> tuple[str, str, str, str]:
        nonlocal seq
        seq += 1
        lane.clock_ms += rng.randint(1, step)
        drift = max(1, lane.price // 100)
        edge = drift // EDGE[lane.bot_id] * favour if EDGE[lane.bot_id] else 0
        lane.price = max(100, lane.price + rng.randint(-drift, drift) + edge)
        exec_id = f"{seq:08x}-{rng.getrandbits(64):016x}"
        price_s, qty_s, t = _dec4(lane.price), _qty(qty), _ts(lane.clock_ms)
        fee = (Decimal(price_s) * Decimal(qty_s) * FEE_RATE).quantize(Q8, ROUND_HALF_EVEN)
        fills.append(
            f"{exec_id}\t{lane.bot_id}\t{lane.symbol}\to-{exec_id}\t\t{side}\t{price_s}\t"
            f"{qty_s}\t{t}\t{reason}\t{fee}\tTrade\tbench\n"
        )
        return exec_id, price_s, t, str(fee)

    for li, lane in enumerate(lanes):
        budget = per_lane + (1 if li < extra else 0)
        leave_open = li % 3 != 0
        while budget > 0:
            n_in, n_out = rng.randint(1, 3), rng.randint(1, 4)
            if n_in + n_out > budget:
                n_in, n_out = (budget, 0) if leave_open or budget == 1 else (1, budget - 1)
            if lane.bot_id == "shortseller_001":
                side = "Sell"
            elif lane.bot_id == "lxalgo_001":
                side = "Buy"
            else:
                side = rng.choice(("Buy", "Sell"))
            exit_side = "Sell" if side == "Buy" else "Buy"
            reason_in = rng.choice(ENTRY_REASONS)
            lots: list[list[Any]] = []  # exec_id, price, original, remaining, time, fee
            open_qty = 0
            for _ in range(n_in):
                qty = rng.randint(1, 5_000)
                exec_id, price_s, t, fee = new_fill(lane, side, qty, reason_in)
                lots.append([exec_id, price_s, qty, qty, t, fee])
                open_qty += qty
            used = n_in
            for k in range(n_out):
                last = k == n_out - 1 or open_qty == 1
                qty = open_qty if last else rng.randint(1, open_qty - 1)
                new_fill(lane, exit_side, qty, rng.choice(EXIT_REASONS), 1 if side == "Buy" else -1)
                used += 1
                open_qty -= qty
                left = qty
                for lot in lots:  # FIFO, as the write path keeps position_entries
                    take = min(lot[3], left)
                    lot[3] -= take
                    left -= take
                    if not left:
                        break
                if last:
                    break
            budget -= used
            for exec_id, price_s, original, remaining, t, fee in lots:
                status = (
                    "closed"
                    if remaining == 0
                    else "open"
                    if remaining == original
                    else "partially_closed"
                )
                lots_out.append(
                    f"{lane.bot_id}\t{lane.symbol}\t{exec_id}\t{side}\t{price_s}\t"
                    f"{_qty(original)}\t{_qty(remaining)}\t{t}\to-{exec_id}\t{fee}\t{status}\n"
                )
            if open_qty == 0:
                trips += 1
            else:
                positions.append(f"{lane.bot_id}\t{lane.symbol}\t{_qty(open_qty)}\t{side}\n")
    return (
        "".join(fills).encode(),
        "".join(lots_out).encode(),
        "".join(positions).encode(),
        trips,
    )


# --------------------------------------------------------------------------- measuring


def load(url: str, n_fills: int) -> int:
    started = time.perf_counter()
    fills, lots, positions, trips = generate(n_fills)
    generated = time.perf_counter()
    raw = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
    try:
        cur = raw.cursor()
        cur.copy_expert(f"COPY trading.fills ({FILL_COLUMNS}) FROM STDIN", io.BytesIO(fills))
        cur.copy_expert(
            f"COPY trading.position_entries ({LOT_COLUMNS}) FROM STDIN", io.BytesIO(lots)
        )
        cur.copy_expert(
            "COPY trading.positions (bot_id, symbol, size, side) FROM STDIN", io.BytesIO(positions)
        )
        raw.commit()
        raw.autocommit = True
        cur.execute("VACUUM ANALYZE")
    finally:
        raw.close()
    print(
        f"generated {n_fills:,} fills ({trips:,} round trips expected) in "
        f"{generated - started:.1f}s, loaded with COPY + VACUUM ANALYZE in "
        f"{time.perf_counter() - generated:.1f}s"
    )
    return trips


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def median_ms(call: Callable[[], object]) -> tuple[float, float]:
    call()  # warm-up (plans, caches)
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def bench_rebuild(engine: Engine, workers: int | None) -> list[tuple[str, pnl_store.RebuildStats]]:
    out = []
    for label in ("rebuild, empty table (inserts every trip)", "rebuild again (no change)"):
        before = cpu_seconds()
        stats = pnl_store.rebuild_completed_trades(engine, workers=workers)
        cpu = cpu_seconds() - before
        out.append((label, stats))
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in stats.phases)
        print(
            f"{label}: {stats.fills_read:,} fills, {stats.round_trips:,} trips, "
            f"+{stats.inserted} ~{stats.updated} -{stats.deleted} ={stats.unchanged} in "
            f"{stats.seconds:.2f}s = {stats.fills_per_second:,.0f} fills/s "
            f"({stats.workers} processes; client CPU {cpu:.1f}s; {phases})"
        )
    return out


def analytics_calls(engine: Engine) -> list[tuple[str, Callable[[], object]]]:
    with engine.connect() as conn:
        last = conn.execute(text("SELECT max(exit_time) FROM trading.completed_trades")).scalar()
        symbols = list(
            conn.execute(
                text(
                    "SELECT DISTINCT symbol FROM trading.position_entries WHERE status <> 'closed'"
                )
            ).scalars()
        )
    assert last is not None
    month = (last - timedelta(days=30), last + timedelta(seconds=1))
    marks = {s: Decimal("100.5") for s in symbols}
    bot = "lxalgo_001"
    return [
        (
            "bot_summary, last 30 days",
            lambda: analytics.bot_summary(engine, bot, start=month[0], end=month[1]),
        ),
        ("bot_summary, whole history", lambda: analytics.bot_summary(engine, bot)),
        (
            "compare_bots + portfolio, last 30 days",
            lambda: analytics.compare_bots(engine, start=month[0], end=month[1]),
        ),
        ("compare_bots + portfolio, whole history", lambda: analytics.compare_bots(engine)),
        (
            "daily_pnl, all bots, last 30 days",
            lambda: analytics.daily_pnl(engine, days=30, now=last),
        ),
        ("daily_pnl, all bots, whole history", lambda: analytics.daily_pnl(engine)),
        (
            "open_positions, all bots, with marks",
            lambda: analytics.open_positions(engine, marks=marks),
        ),
        (
            "exposure_by_symbol, with marks",
            lambda: analytics.exposure_by_symbol(engine, marks=marks),
        ),
        (
            "legacy_summary (today's /analytics), 7 days",
            lambda: analytics.legacy_summary(engine, days=7, now=last),
        ),
    ]


def explain(engine: Engine) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of each query shape the analytics run."""
    with engine.connect() as conn:
        last = conn.execute(text("SELECT max(exit_time) FROM trading.completed_trades")).scalar()
    assert last is not None
    month_start = last - timedelta(days=30)
    bots = list(BOTS)
    one = {"bots": ["lxalgo_001"], "source": "fills", "start": month_start, "end": None}
    every = {"bots": bots, "source": "fills", "start": None, "end": None}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("aggregates, one bot, last 30 days", analytics._AGG_SQL, one),
        ("aggregates, all bots, whole history", analytics._AGG_SQL, every),
        (
            "best trade, one bot, last 30 days",
            analytics._EXTREME_SQL.format(direction="DESC"),
            {**one, "bot": "lxalgo_001"},
        ),
        (
            "best trade, one bot, whole history",
            analytics._EXTREME_SQL.format(direction="DESC"),
            {**every, "bot": "lxalgo_001"},
        ),
        ("open positions", analytics._POSITIONS_SQL, {"bot": None}),
        (
            "legacy summary (7 days, every bot)",
            analytics._LEGACY_SQL,
            {"start": last - timedelta(days=7), "bots": bots},
        ),
        (
            "legacy open trades (7 days)",
            analytics._LEGACY_OPEN_SQL,
            {"start": last - timedelta(days=7), "bot": None},
        ),
    ]
    curve = analytics._CURVE_SQL_PLAIN
    curve_select = curve[curve.index("(") + 1 : curve.rindex(") TO STDOUT")]
    with engine.connect() as conn:
        conn.exec_driver_sql(analytics._SESSION_SQL)
        for label, sql, params in cases:
            plan = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql), params).scalars()
            print(f"\n--- {label}\n" + "\n".join(plan))
        cur: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        for label, params in (
            ("equity curve (drawdown), one bot, last 30 days", one),
            ("equity curve (drawdown), all bots, whole history", every),
        ):
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + cur.mogrify(curve_select, params).decode())
            print(f"\n--- {label}\n" + "\n".join(r[0] for r in cur.fetchall()))
        daily = (
            "SELECT (t.exit_time AT TIME ZONE 'UTC')::date, t.bot_id, count(*), sum(t.net_pnl) "
            "FROM trading.completed_trades t WHERE t.bot_id = ANY(:bots) AND t.source = 'fills' "
            "AND t.exit_time >= :start GROUP BY 1, 2"
        )
        plan = conn.execute(
            text("EXPLAIN (ANALYZE, BUFFERS) " + daily), {"bots": bots, "start": month_start}
        ).scalars()
        print("\n--- daily P&L, all bots, last 30 days\n" + "\n".join(plan))
        conn.exec_driver_sql(pnl_store._SESSION_SQL)
        scope = "f.bot_id <> 'unknown'"
        cut = conn.execute(
            text("SELECT exec_time FROM trading.fills ORDER BY exec_time OFFSET :n LIMIT 1"),
            {"n": pnl_store._FIRST_ROWS - 1},
        ).scalar()
        first = pnl_store._STREAM_SQL.format(
            where=scope, since="", limit=f" LIMIT {pnl_store._FIRST_ROWS}"
        )
        rest = pnl_store._STREAM_SQL.format(
            where=scope, since=" AND f.exec_time >= :since", limit=""
        )
        for label, read, params in (
            ("the first statement: the exec_time index, rows at once", first, {}),
            ("the rest, from the last instant read on", rest, {"since": cut}),
        ):
            read_select = read[read.index("(") + 1 : read.rindex(") TO STDOUT")]
            plan = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + read_select), params)
            print(f"\n--- rebuild: reading the fills, {label}\n" + "\n".join(plan.scalars()))
        conn.rollback()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=1_000_000, help="fills to generate")
    parser.add_argument("--workers", type=int, default=None, help="rebuild processes")
    parser.add_argument("--no-explain", action="store_true", help="skip the EXPLAIN plans")
    args = parser.parse_args()

    started = time.perf_counter()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    root = Path(tempfile.mkdtemp(prefix="alpha-bench-analytics-"))
    stack = DevStack(root, fsync=True)
    try:
        stack.start()
        stack.create_database("bench")
        url = stack.url("bench")
        migrations.upgrade(url)
        engine = make_engine(Settings(ALPHA_DATABASE_URL=url, ALPHA_STATEMENT_TIMEOUT_MS=120_000))
        register_bots(engine)
        load(url, args.fills)

        rebuilds = bench_rebuild(engine, args.workers)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE trading.completed_trades")
        results = [(name, *median_ms(call)) for name, call in analytics_calls(engine)]

        print("\n| measurement | figure | target | ratio to target |")
        print("|---|---|---|---|")
        for label, stats in rebuilds:
            rate = stats.fills_per_second
            print(
                f"| {label} | {rate:,.0f} fills/s ({stats.seconds:.2f} s) | >= 100,000 fills/s "
                f"| {rate / RATE_TARGET:.2f}x |"
            )
        for name, median, best in results:
            print(
                f"| {name} | {median:.0f} ms median (best {best:.0f}) | <= 300 ms "
                f"| {median / LATENCY_TARGET_MS:.2f} |"
            )
        print("(rate: higher is better, ratio >= 1 meets it; latency: ratio <= 1 meets it)")
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        if not args.no_explain:
            explain(engine)
        engine.dispose()
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
