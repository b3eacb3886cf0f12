"""``alpha-db cache``: rebuild the Redis live positions from PostgreSQL, or show their state."""

from __future__ import annotations

import argparse
from typing import Any

from alpha_models.cache import PositionCache, load_snapshots_from_db
from alpha_models.cli.common import Context, add_json_flag, command, print_json
from alpha_models.runtime import make_redis


def _rebuild(args: argparse.Namespace, ctx: Context) -> int:
    cache = PositionCache(make_redis(ctx.settings, args.redis_db))
    written = cache.rebuild(load_snapshots_from_db(ctx.engine))
    if args.json:
        print_json({"positions_written": written, "stale": cache.is_stale()})
    else:
        print(f"cache rebuilt from PostgreSQL: {written} open position(s)")
    return 0


def _status(args: argparse.Namespace, ctx: Context) -> int:
    cache = PositionCache(make_redis(ctx.settings, args.redis_db))
    reachable = cache.ping()
    stale = cache.is_stale() if reachable else True
    if args.json:
        print_json({"reachable": reachable, "stale": stale})
    else:
        state = "unreachable" if not reachable else ("STALE" if stale else "ok")
        print(f"redis cache: {state}")
    return 0 if reachable and not stale else 1


def register(sub: Any) -> None:
    p = command(
        sub,
        "cache-rebuild",
        help="make the Redis position keys exactly what PostgreSQL says",
        example="alpha-db cache-rebuild --redis-db 1",
        handler=_rebuild,
    )
    p.add_argument("--redis-db", type=int, default=None, help="Redis DB (default REDIS_DB)")
    add_json_flag(p)
    s = command(
        sub,
        "cache-status",
        help="is Redis reachable and its cache valid? (exit 1 when stale)",
        example="alpha-db cache-status --json",
        handler=_status,
    )
    s.add_argument("--redis-db", type=int, default=None, help="Redis DB (default REDIS_DB)")
    add_json_flag(s)
