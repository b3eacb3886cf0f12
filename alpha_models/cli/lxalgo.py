"""``alpha-db import-lxalgo``: LXAlgo's trade logs (``trade_log.json`` and its copies) -> the
write path, ``strategy_trades`` and ``audit.system_events`` (see
:mod:`alpha_models.lxalgo_import`). Idempotent: a second run adds nothing."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from alpha_models.cli.common import (
    EXIT_ACTION_NEEDED,
    EXIT_OK,
    Context,
    add_json_flag,
    command,
    print_json,
    print_table,
    progress,
    safe_text,
)
from alpha_models.lxalgo_import import BOT_ID, REDIS_DB, Classification, import_logs
from alpha_models.runtime import build_write_path

_ROWS = (
    ("opened", Classification.OPENED),
    ("closed, paired", Classification.PAIRED),
    ("closed, repeat", Classification.REPEAT),
    ("closed, unpaired (reported)", Classification.UNPAIRED),
    ("rejected (reported)", Classification.REJECTED),
)


def _bar(items: Iterable[Any], total: int) -> Iterable[Any]:
    return progress(items, total=total, label="import-lxalgo")


def _import(args: argparse.Namespace, ctx: Context) -> int:
    write_path = None
    if not args.dry_run:
        write_path = build_write_path(ctx.settings, ctx.engine, redis_db=REDIS_DB)
        write_path.validate_bot(BOT_ID)
    try:
        summary = import_logs(args.files, engine=ctx.engine, write_path=write_path, progress=_bar)
    finally:
        if write_path is not None:
            write_path.close()
    failed = bool(summary.rejected or summary.problems)
    if args.json:
        print_json(summary.as_dict())
        return EXIT_ACTION_NEEDED if failed else EXIT_OK
    title = "dry run, nothing written" if summary.dry_run else "imported"
    print(f"import-lxalgo ({title}): {summary.events} event(s) in {len(summary.files)} file(s)")
    for f in summary.files:
        span = f"{f.first_timestamp or '-'} .. {f.last_timestamp or '-'}"
        state = "" if f.complete else "  [incomplete]"
        print(f"  {safe_text(f.path)}: {f.events} event(s), {span}{state}")
    rows = [
        (label, summary.outcomes[f"{c}:new"], summary.outcomes[f"{c}:already"])
        for label, c in _ROWS
    ]
    rows.append(("total", summary.new, summary.accounted - summary.new))
    verb = "would be new" if summary.dry_run else "new"
    print_table(rows, ["event", verb, "already recorded"])
    fills = ", ".join(f"{n} {k}" for k, n in sorted(summary.fills.items())) or "none"
    print(f"entry/exit fills: {fills}")
    if summary.unpaired:
        print("closes without an opened trade (kept in audit.system_events):")
        for u in summary.unpaired:
            print(
                f"  {safe_text(u['file'])} #{u['index']} line {u['line'] or '-'}: "
                f"{safe_text(u['symbol'])} {safe_text(u['rule_id'])} "
                f"{safe_text(u['reason'])} at {safe_text(u['timestamp'])}"
            )
    if summary.rejected:
        print("rejected events (skipped, kept in audit.system_events):")
        for r in summary.rejected:
            print(
                f"  {safe_text(r['file'])} #{r['index']} line {r['line'] or '-'}: "
                f"{safe_text(r['error'])}"
            )
    if summary.problems:
        print("unreadable parts (skipped):")
        for path, p in summary.problems:
            print(f"  {safe_text(path)} line {p.line or '-'}: {p.kind}: {safe_text(p.message)}")
    if summary.accounted != summary.events:  # pragma: no cover (an invariant)
        print(f"WARNING: {summary.events - summary.accounted} event(s) not accounted for")
        return EXIT_ACTION_NEEDED
    return EXIT_ACTION_NEEDED if failed else EXIT_OK


def register(sub: Any) -> None:
    p = command(
        sub,
        "import-lxalgo",
        help="import LXAlgo trade logs (trade_log.json and its copies); idempotent",
        example="alpha-db import-lxalgo /app/trade_log.json /backups/trade_log_*.json --dry-run",
        handler=_import,
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="trade log files; a directory stands for its trade_log*.json files",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="report what would be imported; write nothing (the database is only read)",
    )
    add_json_flag(p)
