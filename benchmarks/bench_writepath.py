"""Write-path benchmark against the raw baselines, on the same servers in the same run.

    .venv/bin/python benchmarks/bench_writepath.py [--single 2000] [--bulk 200000] [--redis 5000]
        [--repeat 3]

Starts its own PostgreSQL 15 (fsync on, as production), PgBouncer and Redis in a
temporary folder, then measures and prints ratios (targets from issue 3):

- one fill (validated, with position update, committed) vs a raw psycopg2 INSERT+COMMIT of
  the same row: target <= 1.5x the raw time;
- bulk ingest of N fills (``WritePath.ingest_bulk``, FillInput validation included) vs
  PostgreSQL COPY of the same rows into ``trading.fills``, each on a fresh database, for
  two shapes of data:

  * **history** (the measure the target applies to: >= 0.5x COPY's rate): round trips of
    1-3 entries and 1-4 exits per (bot, symbol) that return the pair to flat, 60 pairs,
    fixed seed (:func:`history_rows`); about 2 fills in 5 open a lot;
  * **every fill a lot** (the worst case, no target): each pair only ever trades one side,
    so every fill opens a lot. Bulk ingest must store one lot per fill as well, and a lot
    row (5 indexes, foreign keys to ``bots`` and ``fills`` checked per row) costs the
    server more than a fill row: the server's work alone is over twice COPY's, so the
    ratio stays below ~0.45x however fast the Python side is.

  Each shape runs ``--repeat`` times (COPY and ingest back to back, alternating which goes
  first, each on a fresh database after a CHECKPOINT); the ratio printed is the median of
  the runs' ratios, each run's ratio is listed too. After each run the fills and lots that
  ingest wrote are COPYed again from prepared text into a fresh database, in one
  transaction: that time is the server's share alone, and COPY's time divided by it is
  about the best ratio any implementation could reach (printed as "bound");
- the Redis position update vs raw redis-py writing the same keys: target <= 1.2x.

The machine is shared: run it twice; the ratios of one run compare like with like.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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
HISTORY_SEED = 20251101
EXIT_REASONS = ("take_profit", "stop_loss", "trailing_stop", "signal_exit")
FILL_COLUMNS = (
    "exec_id, bot_id, symbol, order_id, client_order_id, side, exec_price, exec_qty, "
    "exec_time, close_reason, commission, exec_type, source"
)
LOT_COLUMNS = (
    "bot_id, symbol, entry_id, side, entry_price, original_qty, remaining_qty, entry_time, "
    "entry_fill_id, entry_order_id, entry_commission, status"
)


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


def history_rows(n: int, tag: str, seed: int = HISTORY_SEED) -> list[dict[str, object]]:
    """``n`` fills shaped like trading history: round trips that return each pair to flat.

    60 pairs (3 bots x 20 symbols). A round trip has 1-3 entries and 1-4 exits whose sizes
    add up to the entries' (ShortSeller enters with Sell, LXAlgo with Buy, Momentum either);
    trips of all pairs interleave in time, each pair's fills stay in order. The last trip
    of a pair may be cut short by ``n`` and stay open. About 4.5 fills per trip, so about 2
    fills in 5 open a lot; exits carry a close reason.
    """
    rng = random.Random(seed)
    pairs = [(bot, f"H{b}S{s:02d}USDT") for b, bot in enumerate(BOTS) for s in range(20)]
    tapes: dict[tuple[str, str], list[tuple[str, int, str | None]]] = {p: [] for p in pairs}
    planned = 0
    while planned < n:
        pair = pairs[rng.randrange(len(pairs))]
        bot = pair[0]
        if bot == "shortseller_001":
            side = "Sell"
        elif bot == "lxalgo_001":
            side = "Buy"
        else:
            side = rng.choice(("Buy", "Sell"))
        exit_side = "Buy" if side == "Sell" else "Sell"
        entries = [rng.randint(1, 500) for _ in range(rng.randint(1, 3))]  # units of 0.001
        total = sum(entries)
        n_exits = min(rng.randint(1, 4), total)
        cuts = sorted(rng.sample(range(1, total), n_exits - 1))
        exits = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
        tapes[pair] += [(side, q, None) for q in entries]
        tapes[pair] += [(exit_side, q, rng.choice(EXIT_REASONS)) for q in exits]
        planned += len(entries) + len(exits)
    order = [pair for pair in pairs for _ in tapes[pair]]
    rng.shuffle(order)  # interleave the pairs; each pair's own tape keeps its order
    cursor = dict.fromkeys(pairs, 0)
    price = {pair: rng.randint(1_000, 500_000) for pair in pairs}  # units of 0.01
    rows: list[dict[str, object]] = []
    ms = 0
    for i, pair in enumerate(order[:n]):
        side, qty, reason = tapes[pair][cursor[pair]]
        cursor[pair] += 1
        ms += rng.randint(1, 2_000)
        step = price[pair] // 200
        price[pair] = max(10, price[pair] + rng.randint(-step, step))
        rows.append(
            {
                "exec_id": f"{tag}-{i:08d}",
                "bot_id": pair[0],
                "symbol": pair[1],
                "side": side,
                "exec_price": str(Decimal(price[pair]) / 100),
                "exec_qty": str(Decimal(qty) / 1000),
                "exec_time": T0 + timedelta(milliseconds=ms),
                "order_id": f"o-{tag}-{i}",
                "commission": str(Decimal(rng.randint(1, 99_999)) / 100_000),
                "close_reason": reason,
                "source": "adapter",
            }
        )
    return rows


def _copy_text(rows: list[dict[str, object]]) -> str:
    lines = [
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
                "\\N" if r.get("close_reason") is None else str(r["close_reason"]),
                str(r["commission"]),
                "Trade",
                str(r["source"]),
            ]
        )
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def _copy_in(url: str, statements: list[tuple[str, str]]) -> float:
    """Seconds to COPY each ``(statement, text)`` in one transaction, then commit."""
    raw = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
    cur = raw.cursor()

    def copy() -> None:
        for sql, payload in statements:
            cur.copy_expert(sql, io.StringIO(payload))
        raw.commit()

    seconds = timed(copy)
    raw.close()
    return seconds


def _copy_out(url: str, sql: str) -> str:
    raw = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
    buf = io.StringIO()
    raw.cursor().copy_expert(sql, buf)
    raw.close()
    return buf.getvalue()


@dataclass
class BulkFigures:
    """Seconds per repetition, each on fresh databases, for ``n`` fills."""

    n: int
    lots: int
    ours_s: list[float]  # ingest_bulk, FillInput validation included
    copy_s: list[float]  # a plain COPY of the same rows into trading.fills
    floor_s: list[float]  # COPY of the fills and lots ingest wrote, from prepared text

    @property
    def ratios(self) -> list[float]:
        """Ingest's rate over COPY's, per repetition (the two ran back to back)."""
        return sorted(c / o for c, o in zip(self.copy_s, self.ours_s, strict=True))

    @property
    def bounds(self) -> list[float]:
        return sorted(c / f for c, f in zip(self.copy_s, self.floor_s, strict=True))


def make_template(stack: DevStack, rows: list[dict[str, object]]) -> str:
    """A migrated database with the bots, copied for each run; and one unmeasured COPY into
    a copy of it, so that no measured run pays for a cold cluster (new WAL segments, empty
    caches)."""
    stack.create_database("bench_template")
    url = stack.url("bench_template")
    migrations.upgrade(url)
    engine = make_engine(Settings(ALPHA_DATABASE_URL=url))
    register_bots(engine)
    engine.dispose()
    stack.create_database("bench_warm", template="bench_template")
    sql = f"COPY trading.fills ({FILL_COLUMNS}) FROM STDIN"
    _copy_in(stack.url("bench_warm"), [(sql, _copy_text(rows))])
    stack.drop_database("bench_warm")
    return "bench_template"


def bench_bulk(
    stack: DevStack, template: str, rows: list[dict[str, object]], name: str, repeat: int
) -> BulkFigures:
    """Bulk ingest of ``rows`` vs a plain COPY of the same rows, ``repeat`` times.

    Each run gets a fresh database and starts after a CHECKPOINT (none inherits another's
    dirty pages); ingest and COPY alternate which goes first.
    """
    figures = BulkFigures(len(rows), 0, [], [], [])
    copy_text = _copy_text(rows)
    for rep in range(repeat):
        copy_db, bulk_db, floor_db = f"{name}_copy", f"{name}_bulk", f"{name}_floor"
        for db in (copy_db, bulk_db, floor_db):
            stack.create_database(db, template=template)

        def copy(db: str = copy_db) -> float:
            stack.psql("CHECKPOINT")
            sql = f"COPY trading.fills ({FILL_COLUMNS}) FROM STDIN"
            return _copy_in(stack.url(db), [(sql, copy_text)])

        def ingest(db: str = bulk_db) -> float:
            settings = Settings(ALPHA_DATABASE_URL=stack.url(db), ALPHA_STATEMENT_TIMEOUT_MS=0)
            engine = make_engine(settings)
            spool = Spool(Path(tempfile.mkdtemp()), 1 << 30)
            wp = WritePath(engine, settings=settings, spool=spool)
            stack.psql("CHECKPOINT")
            seconds = timed(lambda: wp.ingest_bulk(FillInput(**r) for r in rows))  # type: ignore[arg-type]
            engine.dispose()
            return seconds

        if rep % 2:
            figures.ours_s.append(ingest())
            figures.copy_s.append(copy())
        else:
            figures.copy_s.append(copy())
            figures.ours_s.append(ingest())

        # The server's share alone: the fills and the lots ingest wrote, COPYed from
        # prepared text in one transaction (no Python work, nothing to compute).
        url = stack.url(bulk_db)
        fills_text = _copy_out(url, f"COPY trading.fills (id, {FILL_COLUMNS}) TO STDOUT")
        lots_text = _copy_out(url, f"COPY trading.position_entries ({LOT_COLUMNS}) TO STDOUT")
        figures.lots = lots_text.count("\n")
        stack.psql("CHECKPOINT")
        figures.floor_s.append(
            _copy_in(
                stack.url(floor_db),
                [
                    (f"COPY trading.fills (id, {FILL_COLUMNS}) FROM STDIN", fills_text),
                    (f"COPY trading.position_entries ({LOT_COLUMNS}) FROM STDIN", lots_text),
                ],
            )
        )
        for db in (copy_db, bulk_db, floor_db):
            stack.drop_database(db)
    return figures


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
    parser.add_argument("--repeat", type=int, default=3, help="bulk runs per shape (median)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="alpha-bench-"))
    stack = DevStack(root, fsync=True).start()
    try:
        ours, base = bench_single(stack, args.single)
        worst_rows = [raw_fill(i, "bulk") for i in range(args.bulk)]
        template = make_template(stack, worst_rows)
        hist_rows = history_rows(args.bulk, "hist")
        history = bench_bulk(stack, template, hist_rows, "bench_hist", args.repeat)
        worst = bench_bulk(stack, template, worst_rows, "bench_worst", args.repeat)
        r_ours, r_base = bench_redis(stack, args.redis)
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'measure':52} {'ours':>12} {'raw baseline':>13} {'ratio':>7} {'target':>9}")
    print(
        f"{'one fill, median (ms)':52} {ours * 1e3:12.3f} {base * 1e3:13.3f} "
        f"{ours / base:7.2f} {'<= 1.5x':>9}"
    )
    for label, figures, target in (
        (f"bulk ingest {args.bulk} fills, history (fills/s)", history, ">= 0.5x"),
        (f"bulk ingest {args.bulk}, every fill a lot (fills/s)", worst, "none"),
    ):
        ours_rate = figures.n / statistics.median(figures.ours_s)
        copy_rate = figures.n / statistics.median(figures.copy_s)
        print(
            f"{label:52} {ours_rate:12,.0f} {copy_rate:13,.0f} "
            f"{statistics.median(figures.ratios):7.2f} {target:>9}"
        )
    print(
        f"{'redis position update, median (ms)':52} {r_ours * 1e3:12.3f} {r_base * 1e3:13.3f} "
        f"{r_ours / r_base:7.2f} {'<= 1.2x':>9}"
    )
    print()
    print(f"bulk, {args.repeat} runs per shape, COPY and ingest back to back in each (rates from")
    print("the median seconds, ratio = median of the runs' ratios). bound = COPY's time over the")
    print("time the server takes to store the same fills and lots from prepared text in one")
    print("transaction, no Python work: about the best ratio any implementation can reach.")
    for label, figures in (("history", history), ("every fill a lot", worst)):
        print(
            f"  {label:17} {figures.lots:8,} lots   ratio per run "
            f"{' '.join(f'{r:.2f}' for r in figures.ratios):16}   "
            f"bound {statistics.median(figures.bounds):.2f} "
            f"({' '.join(f'{r:.2f}' for r in figures.bounds)})"
        )


if __name__ == "__main__":
    main()
