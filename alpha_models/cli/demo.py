"""``alpha-db demo``: the whole platform end to end, on the embedded stack by default."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from alpha_models.cli.common import Context, add_json_flag, command, print_json, print_table
from alpha_models.settings import Settings


def _demo(args: argparse.Namespace, ctx: Context) -> int:
    from alpha_models import demo
    from alpha_models.embedded import EmbeddedStack

    started = time.monotonic()
    state = Path(args.state_dir)
    quiet = args.json

    def say(message: str) -> None:
        if not quiet:
            print(f"- {message}")

    if not args.use_env:
        variables = EmbeddedStack(state / "stack").up()
        os.environ.update(variables)
        say(f"embedded stack up (PostgreSQL on port {variables['POSTGRES_PORT']})")
    settings = Settings()
    result = demo.run(settings, state / "work", seed=args.seed, out_dir=Path(args.out), say=say)
    elapsed = time.monotonic() - started
    if args.json:
        print_json(
            {
                "bots": result.rows,
                "positions": result.positions,
                "chart": result.chart,
                "reconcile_applied": result.reconcile_applied,
                "seconds": round(elapsed, 1),
            }
        )
        return 0
    print()
    print("Cross-bot P&L (round trips from fills, FIFO, net of fees)")
    print_table(
        [
            (r["bot_id"], r["round_trips"], r["wins"], r["losses"], r["fees"], r["net_pnl"])
            for r in result.rows
        ],
        ["bot", "round trips", "wins", "losses", "fees", "net P&L"],
    )
    print()
    print("Open positions")
    print_table(
        [
            (p["bot_id"], p["symbol"], p["side"], p["size"], p["avg_entry_price"])
            for p in result.positions
        ],
        ["bot", "symbol", "side", "size", "avg entry"],
    )
    if result.chart:
        print(f"\nchart: {result.chart}")
    print(f"demo finished in {elapsed:.1f}s")
    return 0


def register(sub: Any) -> None:
    p = command(
        sub,
        "demo",
        help="run the platform end to end on generated activity (embedded stack by default)",
        example="alpha-db demo --seed 7",
        handler=_demo,
    )
    p.add_argument("--seed", type=int, default=7, help="activity seed (default 7)")
    p.add_argument("--use-env", action="store_true", help="use the configured POSTGRES_*/REDIS_*")
    p.add_argument("--state-dir", default=".alpha/demo", help="demo folder (default .alpha/demo)")
    p.add_argument("--out", default=".alpha/demo/out", help="where the chart is written")
    add_json_flag(p)
