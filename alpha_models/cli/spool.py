"""``alpha-db spool``: the local spool of fills kept while PostgreSQL was down."""

from __future__ import annotations

import argparse
from typing import Any

from alpha_models.cli.common import Context, add_json_flag, command, print_json
from alpha_models.runtime import build_write_path
from alpha_models.spool import Spool


def _status(args: argparse.Namespace, ctx: Context) -> int:
    stats = Spool(ctx.settings.spool_dir, ctx.settings.spool_max_bytes).stats()
    if args.json:
        print_json(stats)
    else:
        print(
            f"spool {ctx.settings.spool_dir}: {stats.pending_count} pending, "
            f"{stats.bytes} bytes, {stats.corrupt_lines} corrupt line(s)"
        )
    return 0 if stats.pending_count == 0 else 1


def _flush(args: argparse.Namespace, ctx: Context) -> int:
    wp = build_write_path(ctx.settings, ctx.engine)
    delivered = wp.flush()
    left = len(wp.spool)
    if args.json:
        print_json({"delivered": delivered, "pending": left})
    else:
        print(f"delivered {delivered}, still pending {left}")
    return 0 if left == 0 else 1


def register(sub: Any) -> None:
    p = command(
        sub,
        "spool-status",
        help="show the spool backlog (exit 1 while records are pending)",
        example="ALPHA_SPOOL_DIR=/var/lib/alpha/spool alpha-db spool-status",
        handler=_status,
    )
    add_json_flag(p)
    f = command(
        sub,
        "spool-flush",
        help="deliver the spooled records to PostgreSQL now",
        example="alpha-db spool-flush --json",
        handler=_flush,
    )
    add_json_flag(f)
