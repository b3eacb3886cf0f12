"""Write-path benchmark against the raw baselines, on the same servers in the same run.

    .venv/bin/python benchmarks/bench_writepath.py [--single 2000] [--bulk 200000] [--redis 5000]

Starts its own PostgreSQL 15 (fsync on, as production), PgBouncer and Redis in a
temporary folder, then measures and prints ratios (targets from issue 3):

- one fill (validated, with position update, committed) vs a raw psycopg2 INSERT+COMMIT of
  the same row: target <= 1.5x the raw time;
- bulk ingest of N fills vs PostgreSQL COPY of the same rows: target >= 0.5x COPY's rate;
- the Redis position update vs raw redis-py writing the same keys: target <= 1.2x.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg2
import redis

from alpha_models import migrations
from alpha_models.bots import register_bots
from alpha_models.cache import PositionCache, PositionSnapshot
from alpha_models.db import make_engine
from alpha_models.devstack import DevStack
from alpha_models.inputs import FillInput
from alpha_models.settings import Settings
from alpha_models.spool import Spool
from alpha_models.writepath import WritePath

T0 = datetime(2025, 11, 1, tzinfo=UTC)
BOTS = ["shortseller_001", "lxalgo_001", "momentum_001"]
SYMBOLS = [f"SYM{i}USDT" for i in range(10)]


def raw_fill(i: int, tag: str, symbol: str | None = None) -> dict[str, object]:
    side = "Sell" if (i // 3) % 2 == 0 else "Buy"
    return {
        "exec_id": f"{tag}-{i:08d}",
        "bot_id": BOTS[i % 3],
        "symbol": symbol or SYMBOLS[(i // 3) % len(SYMBOLS)],
        "side": side,
        "exec_price": str(Decimal(100 + i % 17) + Decimal("0.5")),
        "exec_qty": str(Decimal(1 + i % 5) / 100),
        "exec_time": T0 + timedelta(milliseconds=10 * i),
        "order_id": f"o-{tag}-{i}",
        "commission": "0.0055",
        "source": "adapter",
    }


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_single(stack: DevStack, n: int) -> tuple[float, float]:
    name = "bench_single"
    stack.create_database(name)
    url = stack.url(name)
    migrations.upgrade(url)
    settings = Settings(ALPHA_DATABASE_URL=url, ALPHA_STATEMENT_TIMEOUT_MS=0)
    engine = make_engine(settings)
    register_bots(engine)
    spool = Spool(Path(tempfile.mkdtemp()), 1 << 30)
    wp = WritePath(engine, settings=settings, spool=spool)
    dsn = url.replace("postgresql+psycopg2", "postgresql")
    raw = psycopg2.connect(dsn)
    cur = raw.cursor()
    sql = (
        "INSERT INTO trading.fills (exec_id, bot_id, symbol, order_id, client_order_id, side, "
        "exec_price, exec_qty, exec_time, close_reason, commission, exec_type, source) VALUES "
        "(%(exec_id)s, %(bot_id)s, %(symbol)s, %(order_id)s, '', %(side)s, %(exec_price)s, "
        "%(exec_qty)s, %(exec_time)s, NULL, %(commission)s, 'Trade', %(source)s)"
    )
    ours: list[float] = []
    base: list[float] = []
    for i in range(n):  # interleaved, so both see the same machine state
        row = raw_fill(i, "raw", symbol="RAWUSDT")

        def raw_insert(row: dict[str, object] = row) -> None:
            cur.execute(sql, row)
            raw.commit()

        base.append(timed(raw_insert))
        # Both rows are built outside the timing; ours is validated (FillInput) inside it.
        mine = raw_fill(i, "ours")
        ours.append(timed(lambda mine=mine: wp.record_fill(FillInput(**mine))))
    raw.close()
    engine.dispose()
    return statistics.median(ours), statistics.median(base)


def bench_bulk(stack: DevStack, n: int) -> tuple[float, float]:
    rows = [raw_fill(i, "bulk") for i in range(n)]
    # Baseline: COPY of the same rows into trading.fills of a fresh database.
    stack.create_database("bench_copy")
    copy_url = stack.url("bench_copy")
    migrations.upgrade(copy_url)
    buf_lines = [
        "\t".join(
            [
                str(r["exec_id"]),
                str(r["bot_id"]),
                str(r["symbol"]),
                str(r["order_id"]),
                "",
                str(r["side"]),
                str(r["exec_price"]),
                str(r["exec_qty"]),
                r["exec_time"].isoformat(),  # type: ignore[attr-defined]
                "\\N",
                str(r["commission"]),
                "Trade",
                str(r["source"]),
            ]
        )
        for r in rows
    ]
    import io

    payload = "\n".join(buf_lines) + "\n"
    raw = psycopg2.connect(copy_url.replace("postgresql+psycopg2", "postgresql"))
    cur = raw.cursor()

    def copy() -> None:
        cur.copy_expert(
            "COPY trading.fills (exec_id, bot_id, symbol, order_id, client_order_id, side, "
            "exec_price, exec_qty, exec_time, close_reason, commission, exec_type, source) "
            "FROM STDIN",
            io.StringIO(payload),
        )
        raw.commit()

    copy_s = timed(copy)
    raw.close()

    stack.create_database("bench_bulk")
    url = stack.url("bench_bulk")
    migrations.upgrade(url)
    settings = Settings(ALPHA_DATABASE_URL=url, ALPHA_STATEMENT_TIMEOUT_MS=0)
    engine = make_engine(settings)
    register_bots(engine)
    wp = WritePath(engine, settings=settings, spool=Spool(Path(tempfile.mkdtemp()), 1 << 30))
    ours_s = timed(lambda: wp.ingest_bulk(FillInput(**r) for r in rows))  # type: ignore[arg-type]
    engine.dispose()
    return n / ours_s, n / copy_s


def bench_redis(stack: DevStack, n: int) -> tuple[float, float]:
    client = redis.Redis.from_url(stack.redis_url(), decode_responses=True)
    cache = PositionCache(client)
    now = datetime.now(UTC)
    ours: list[float] = []
    base: list[float] = []
    for i in range(n):
        snap = PositionSnapshot(
            bot_id="shortseller_001",
            symbol=f"S{i % 50}USDT",
            side="Sell",
            size=Decimal("0.047") + i,
            avg_entry_price=Decimal("101234.5"),
            unrealized_pnl=None,
            version=i + 1,
            updated_at=now,
        )
        ours.append(timed(lambda snap=snap: cache.apply(snap)))

        def raw_write(i: int = i) -> None:
            key = f"raw:position:shortseller_001:S{i % 50}USDT"
            pipe = client.pipeline(transaction=True)
            pipe.set(key, str(float(Decimal("0.047") + i)))
            pipe.delete(f"{key}:details")
            pipe.hset(
                f"{key}:details",
                mapping={
                    "size": str(0.047 + i),
                    "side": "Sell",
                    "last_update": now.isoformat(),
                    "avg_price": "101234.5",
                    "version": str(i + 1),
                },
            )
            pipe.sadd("raw:positions:shortseller_001", f"S{i % 50}USDT")
            pipe.execute()

        base.append(timed(raw_write))
    client.close()
    return statistics.median(ours), statistics.median(base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=2000)
    parser.add_argument("--bulk", type=int, default=200_000)
    parser.add_argument("--redis", type=int, default=5000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="alpha-bench-"))
    stack = DevStack(root, fsync=True).start()
    try:
        ours, base = bench_single(stack, args.single)
        bulk_ours, bulk_copy = bench_bulk(stack, args.bulk)
        r_ours, r_base = bench_redis(stack, args.redis)
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'measure':44} {'ours':>14} {'raw baseline':>14} {'ratio':>8} {'target':>10}")
    print(
        f"{'one fill, median (ms)':44} {ours * 1e3:14.3f} {base * 1e3:14.3f} "
        f"{ours / base:8.2f} {'<= 1.5x':>10}"
    )
    print(
        f"{f'bulk ingest {args.bulk} fills (fills/s)':44} {bulk_ours:14,.0f} {bulk_copy:14,.0f} "
        f"{bulk_ours / bulk_copy:8.2f} {'>= 0.5x':>10}"
    )
    print(
        f"{'redis position update, median (ms)':44} {r_ours * 1e3:14.3f} {r_base * 1e3:14.3f} "
        f"{r_ours / r_base:8.2f} {'<= 1.2x':>10}"
    )


if __name__ == "__main__":
    main()
