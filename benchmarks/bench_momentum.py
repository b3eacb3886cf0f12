"""Momentum adapter benchmark: a trade entry + exit through ``TradeDatabase`` against the same
two writes through raw psycopg2, on the same servers in the same run.

    .venv/bin/python benchmarks/bench_momentum.py [--trades 1000] [--no-cache]

Starts its own PostgreSQL 15 (fsync on, as production) and Redis in a temporary folder.
"The same two writes" = exactly the rows the adapter writes, with hand-written SQL on one
held connection, one transaction each:

* entry: ``INSERT INTO trading.strategy_trades ... RETURNING id`` and
  ``SELECT * FROM trading.record_fill(...)`` (the write path's function: fill, FIFO lot,
  position), then COMMIT;
* exit: ``UPDATE trading.strategy_trades ... RETURNING symbol, side, quantity`` and the exit
  fill, then COMMIT.

Also printed for scale: a bare INSERT + UPDATE of the trade row (what the SQLite original
did, no fills). Calls are interleaved so both sides see the same machine state; medians of
one round trip (entry + exit). Target (issue 5): ours <= 2x the raw time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2

from adapters.momentum import TradeDatabase
from alpha_models import migrations
from alpha_models.bots import register_bots
from alpha_models.db import make_engine
from alpha_models.devstack import DevStack
from alpha_models.settings import Settings

ENTRY_ROW = (
    "INSERT INTO trading.strategy_trades (bot_id, trade_key, mode, symbol, side, entry_time, "
    "entry_price, quantity, notional_usd, stop_loss, take_profit, signal_strength, "
    "entry_exec_id, details, source) VALUES (%(b)s, %(k)s, 'demo', %(s)s, 'Buy', %(t)s, "
    "%(p)s, %(q)s, %(n)s, %(sl)s, NULL, %(sig)s, %(x)s, NULL, 'adapter') "
    "ON CONFLICT (bot_id, trade_key) DO NOTHING RETURNING id"
)
EXIT_ROW = (
    "UPDATE trading.strategy_trades SET exit_time = %(t)s, exit_price = %(p)s, "
    "exit_reason = 'MA Exit', pnl_usd = %(pnl)s, pnl_pct = %(pct)s, holding_seconds = 3600, "
    "exit_exec_id = %(x)s, updated_at = now() WHERE bot_id = %(b)s AND trade_key = %(k)s "
    "AND exit_time IS NULL RETURNING symbol, side, quantity"
)
FILL = (
    "SELECT * FROM trading.record_fill(%(x)s, %(b)s, %(s)s, %(o)s, '', %(side)s, %(p)s, "
    "%(q)s, %(t)s, %(reason)s, 0, 'Trade', 'adapter')"
)
BARE_ENTRY = (
    "INSERT INTO trading.strategy_trades (bot_id, trade_key, mode, symbol, side, entry_time, "
    "entry_price, quantity, notional_usd, source) VALUES (%(b)s, %(k)s, 'demo', %(s)s, 'Buy', "
    "%(t)s, %(p)s, %(q)s, %(n)s, 'adapter')"
)
BARE_EXIT = (
    "UPDATE trading.strategy_trades SET exit_time = %(t)s, exit_price = %(p)s, "
    "pnl_usd = %(pnl)s, pnl_pct = %(pct)s WHERE bot_id = %(b)s AND trade_key = %(k)s"
)
BOT = "momentum_001"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def prices(i: int) -> tuple[float, float, float]:
    entry = 100.0 + (i % 37) * 0.25
    exit_ = entry * (1.02 if i % 3 else 0.97)
    qty = 200.0 / entry
    return entry, exit_, qty


def ours_round_trip(db: TradeDatabase, i: int) -> None:
    entry, exit_, qty = prices(i)
    key = f"OURSUSDT_{i}"
    db.log_trade_entry(
        trade_id=key,
        mode="demo",
        symbol="OURSUSDT",
        side="Buy",
        entry_price=entry,
        quantity=qty,
        position_size_usd=200.0,
        stop_loss=entry * 0.9,
        signal_strength=0.8123456789,
    )
    pct = exit_ / entry - 1
    db.log_trade_exit(
        trade_id=key,
        exit_price=exit_,
        pnl_usd=200.0 * pct,
        pnl_pct=pct,
        exit_reason="MA Exit",
        holding_time_seconds=3600,
    )


def raw_round_trip(conn: Any, i: int) -> None:
    entry, exit_, qty = prices(i)
    key = f"RAWUSDT_{i}"
    q = Decimal(repr(qty)).quantize(Decimal("1E-8"))
    cur = conn.cursor()
    ex_in, ex_out = f"{BOT}:{key}:entry", f"{BOT}:{key}:exit"
    now = datetime.now(UTC)
    cur.execute(
        ENTRY_ROW,
        {
            "b": BOT,
            "k": key,
            "s": "RAWUSDT",
            "t": now,
            "p": Decimal(repr(entry)),
            "q": q,
            "n": Decimal(200),
            "sl": Decimal(repr(entry * 0.9)).quantize(Decimal("1E-8")),
            "sig": Decimal("0.81234568"),
            "x": ex_in,
        },
    )
    cur.fetchone()
    cur.execute(
        FILL,
        {
            "x": ex_in,
            "b": BOT,
            "s": "RAWUSDT",
            "o": f"synthetic:{ex_in}",
            "side": "Buy",
            "p": Decimal(repr(entry)),
            "q": q,
            "t": now,
            "reason": "entry",
        },
    )
    cur.fetchone()
    conn.commit()
    pct = exit_ / entry - 1
    later = datetime.now(UTC)
    cur.execute(
        EXIT_ROW,
        {
            "t": later,
            "p": Decimal(repr(exit_)),
            "pnl": Decimal(repr(200.0 * pct)).quantize(Decimal("1E-8")),
            "pct": Decimal(repr(pct)).quantize(Decimal("1E-8")),
            "x": ex_out,
            "b": BOT,
            "k": key,
        },
    )
    symbol, _side, quantity = cur.fetchone()
    cur.execute(
        FILL,
        {
            "x": ex_out,
            "b": BOT,
            "s": symbol,
            "o": f"synthetic:{ex_out}",
            "side": "Sell",
            "p": Decimal(repr(exit_)),
            "q": quantity,
            "t": later,
            "reason": "MA Exit",
        },
    )
    cur.fetchone()
    conn.commit()
    cur.close()


def bare_round_trip(conn: Any, i: int) -> None:
    entry, exit_, qty = prices(i)
    key = f"BAREUSDT_{i}"
    cur = conn.cursor()
    params = {"b": BOT, "k": key, "s": "BAREUSDT", "p": entry, "q": qty, "n": 200.0}
    cur.execute(BARE_ENTRY, params | {"t": datetime.now(UTC)})
    conn.commit()
    pct = exit_ / entry - 1
    cur.execute(
        BARE_EXIT,
        {"b": BOT, "k": key, "t": datetime.now(UTC), "p": exit_, "pnl": 200 * pct, "pct": pct},
    )
    conn.commit()
    cur.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=1000)
    parser.add_argument("--no-cache", dest="cache", action="store_false")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="alpha-bench-momentum-"))
    stack = DevStack(root, fsync=True).start()
    try:
        stack.create_database("bench_momentum")
        url = stack.url("bench_momentum")
        migrations.upgrade(url)
        settings = Settings(
            ALPHA_DATABASE_URL=url, ALPHA_REDIS_URL=stack.redis_url(), ALPHA_STATEMENT_TIMEOUT_MS=0
        )
        engine = make_engine(settings)
        register_bots(engine)
        db = TradeDatabase(
            str(root / "data" / "trading.db"), settings=settings, engine=engine, cache=args.cache
        )
        raw = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
        for i in range(20):  # warm up both sides (connections, plans, the schema check)
            ours_round_trip(db, 10**6 + i)
            raw_round_trip(raw, 10**6 + i)
            bare_round_trip(raw, 10**6 + i)
        ours: list[float] = []
        base: list[float] = []
        bare: list[float] = []
        for i in range(args.trades):
            base.append(timed(lambda i=i: raw_round_trip(raw, i)))
            ours.append(timed(lambda i=i: ours_round_trip(db, i)))
            bare.append(timed(lambda i=i: bare_round_trip(raw, i)))
        raw.close()
        db.close()
        engine.dispose()
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)
    o, b, r = statistics.median(ours), statistics.median(base), statistics.median(bare)
    cache = "with" if args.cache else "without"
    print(f"{args.trades} round trips (entry + exit), median, {cache} the Redis cache")
    print(f"{'measure':52} {'ms':>9} {'ratio':>7} {'target':>8}")
    print(f"{'TradeDatabase: log_trade_entry + log_trade_exit':52} {o * 1e3:9.3f}")
    print(f"{'raw psycopg2: the same rows and fills':52} {b * 1e3:9.3f} {o / b:7.2f} {'<= 2x':>8}")
    print(f"{'raw psycopg2: trade row only (no fills; scale)':52} {r * 1e3:9.3f} {o / r:7.2f}")


if __name__ == "__main__":
    main()
