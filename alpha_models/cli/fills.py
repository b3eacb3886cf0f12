"""``alpha-db fills-duplicates``: list fills that may be stored twice (nothing is deleted)."""

from __future__ import annotations

import argparse
from typing import Any

from alpha_models.cli.common import Context, add_json_flag, command, print_json, print_table
from alpha_models.fill_audit import find_duplicates


def _duplicates(args: argparse.Namespace, ctx: Context) -> int:
    groups = find_duplicates(ctx.engine)
    if args.json:
        print_json(groups)
    else:
        rows = [
            (g.kind, g.key, r.id, r.bot_id, r.symbol, r.side, r.exec_price, r.exec_qty, r.exec_time)
            for g in groups
            for r in g.rows
        ]
        print_table(
            rows, ["kind", "key", "id", "bot", "symbol", "side", "price", "qty", "exec_time"]
        )
        print(f"{len(groups)} group(s)")
    return 1 if groups else 0


def register(sub: Any) -> None:
    p = command(
        sub,
        "fills-duplicates",
        help="list fills stored more than once (identical rows, bot + listener copies)",
        example="alpha-db fills-duplicates --json",
        handler=_duplicates,
    )
    add_json_flag(p)
