"""``alpha-db doctor``: is everything the data layer needs in place? (exit 1 if not)."""

from __future__ import annotations

import argparse
from typing import Any

from alpha_models.cli.common import Context, add_json_flag, command, print_json, safe_text
from alpha_models.doctor import run_checks


def _doctor(args: argparse.Namespace, ctx: Context) -> int:
    checks = run_checks(ctx.settings, ctx.engine)
    if args.json:
        print_json(checks)
    else:
        for check in checks:
            print(f"{check.status.upper():5} {check.name:11} {safe_text(check.detail)}")
    return 1 if any(c.needs_action for c in checks) else 0


def register(sub: Any) -> None:
    p = command(
        sub,
        "doctor",
        help="check PostgreSQL, PgBouncer, migrations, Redis, spool and bots, one line each",
        example="alpha-db doctor --json",
        handler=_doctor,
    )
    add_json_flag(p)
