"""``alpha-db up`` / ``down`` / ``stack-env``: the embedded PostgreSQL + Redis stack."""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

from alpha_models.cli.common import Context, add_json_flag, command, print_json
from alpha_models.embedded import EmbeddedStack


def _stack(args: argparse.Namespace) -> EmbeddedStack:
    return EmbeddedStack(args.state_dir or os.environ.get("ALPHA_STATE_DIR", ".alpha/stack"))


def _print_env(variables: dict[str, str], as_json: bool) -> None:
    if as_json:
        print_json(variables)
    else:
        for key, value in variables.items():
            print(f"export {key}={shlex.quote(value)}")


def _up(args: argparse.Namespace, ctx: Context) -> int:
    _print_env(_stack(args).up(), args.json)
    return 0


def _down(args: argparse.Namespace, ctx: Context) -> int:
    stopped = _stack(args).down()
    if args.json:
        print_json(stopped)
    else:
        names = ", ".join(k for k, v in stopped.items() if v)
        print(f"stopped: {names or 'nothing was running'}")
    return 0


def _env(args: argparse.Namespace, ctx: Context) -> int:
    stack = _stack(args)
    _print_env(stack.env(), args.json)
    return 0 if all(stack.running().values()) else 1


def _add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir", help="stack folder (default .alpha/stack or ALPHA_STATE_DIR)"
    )
    add_json_flag(parser)


def register(sub: Any) -> None:
    _add(
        command(
            sub,
            "up",
            help="start the embedded PostgreSQL and Redis, migrate, print the env to export",
            example='eval "$(alpha-db up)"',
            handler=_up,
        )
    )
    _add(
        command(
            sub,
            "down",
            help="stop the embedded stack (data is kept)",
            example="alpha-db down",
            handler=_down,
        )
    )
    _add(
        command(
            sub,
            "stack-env",
            help="print the env of the embedded stack (exit 1 if it is not running)",
            example='eval "$(alpha-db stack-env)"',
            handler=_env,
        )
    )
