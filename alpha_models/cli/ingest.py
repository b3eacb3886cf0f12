"""``alpha-db ingest``: a file of captured Bybit private-stream messages -> the write path."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from alpha_models.bybit_stream import parse_lines
from alpha_models.cli.common import Context, add_json_flag, command, print_json, progress, safe_text
from alpha_models.errors import ValidationError
from alpha_models.inputs import FillInput, OrderUpdate, PositionUpdate
from alpha_models.runtime import build_write_path


def _ingest(args: argparse.Namespace, ctx: Context) -> int:
    path = Path(args.file)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    wp = build_write_path(ctx.settings, ctx.engine)
    known = wp.known_bots()
    counts: Counter[str] = Counter()
    rejected: list[dict[str, Any]] = []
    for line_no, parsed in progress(
        parse_lines(lines, known_bots=known, account_bot_id=args.account_bot),
        total=len(lines),
        label="ingest",
    ):
        if isinstance(parsed, ValidationError):
            rejected.append({"line": line_no, "field": parsed.field, "error": str(parsed)})
            continue
        events = parsed if isinstance(parsed, list) else [parsed]
        for event in events:
            if isinstance(event, FillInput):
                kind = "funding" if event.is_funding else "fill"
                counts[f"{kind}:{wp.record_fill(event).outcome}"] += 1
            elif isinstance(event, OrderUpdate):
                counts[f"order:{wp.record_order(event).outcome}"] += 1
            elif isinstance(event, PositionUpdate):
                counts[f"position:{wp.record_position(event).outcome}"] += 1
    summary = {
        "file": str(path),
        "lines": len(lines),
        "outcomes": dict(counts),
        "rejected": rejected,
    }
    if args.json:
        print_json(summary)
    else:
        print(f"{path}: {len(lines)} lines")
        for key, n in sorted(counts.items()):
            print(f"  {key:28} {n}")
        for r in rejected:
            print(f"  line {r['line']}: rejected: {safe_text(r['error'])}")
    return 1 if rejected else 0


def register(sub: Any) -> None:
    p = command(
        sub,
        "ingest",
        help="ingest a file of captured Bybit private-stream messages (one JSON per line)",
        example="alpha-db ingest captured.jsonl --account-bot shortseller_001",
        handler=_ingest,
    )
    p.add_argument("file", help="JSON-lines file of execution/order/position messages")
    p.add_argument(
        "--account-bot",
        default="unknown",
        help="bot owning the account the messages came from (for position messages)",
    )
    add_json_flag(p)
