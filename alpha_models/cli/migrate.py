"""``alpha-db migrate``: upgrade the database (builds it, or adopts production)."""

from __future__ import annotations

import argparse
from typing import Any

from alpha_models import migrations
from alpha_models.bots import register_bots
from alpha_models.cli.common import Context, add_json_flag, command, print_json


def _url(ctx: Context) -> str:
    return ctx.settings.sqlalchemy_url.render_as_string(hide_password=False)


def _migrate(args: argparse.Namespace, ctx: Context) -> int:
    before = migrations.current_revision(ctx.engine)
    migrations.upgrade(_url(ctx), args.revision)
    after = migrations.current_revision(ctx.engine)
    added = register_bots(ctx.engine) if args.register_bots else 0
    result = {"from": before, "to": after, "bots_registered": added}
    if args.json:
        print_json(result)
    else:
        print(f"migrated {before or 'empty'} -> {after}; bots registered: {added}")
    return 0


def _status(args: argparse.Namespace, ctx: Context) -> int:
    current = migrations.current_revision(ctx.engine)
    head = migrations.head_revision()
    result: dict[str, Any] = {"current": current, "head": head, "at_head": current == head}
    if args.json:
        print_json(result)
    else:
        print(f"current {current or 'none'}, head {head}: {'ok' if current == head else 'BEHIND'}")
    return 0 if current == head else 1


def register(sub: Any) -> None:
    p = command(
        sub,
        "migrate",
        help="upgrade the database to the latest migration (empty or production)",
        example="POSTGRES_HOST=postgres POSTGRES_PORT=5432 alpha-db migrate",
        handler=_migrate,
    )
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    p.add_argument(
        "--no-register-bots",
        dest="register_bots",
        action="store_false",
        help="do not add the three platform bots when missing",
    )
    add_json_flag(p)
    s = command(
        sub,
        "migrations",
        help="show the current and latest migration (exit 1 when behind)",
        example="alpha-db migrations --json",
        handler=_status,
    )
    add_json_flag(s)
