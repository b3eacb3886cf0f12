"""``alpha-db replay-shortseller TRACE``: rebuild the shared stores from a ShortSeller trace.

Feeds a recorded JSON-lines event trace (``SHORTSELLER.md`` §8) through the ShortSeller
adapter exactly as the live hooks would receive it (``alpha_models.shortseller_replay``),
with the configured PostgreSQL, Redis and spool. Replaying the same trace again changes
nothing (executions are keyed by execId, trade records by the entry order id).

At every ``restart`` and at ``trace_end`` the stores are compared with the trace's own
``expected_state`` when the marker carries one; a marker is not compared ("-") when the
stores already hold later fills (a replay over a database that is ahead of it). Exit code
0 when every comparison made matched and nothing is left in the spool, 1 otherwise.
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path
from typing import Any

from adapters.shortseller import ShortSellerAdapter
from alpha_models.cache import PositionCache
from alpha_models.cli.common import (
    EXIT_ACTION_NEEDED,
    EXIT_OK,
    Context,
    add_json_flag,
    command,
    print_json,
    print_table,
)
from alpha_models.runtime import make_redis
from alpha_models.shortseller_replay import (
    ReplayEngine,
    TraceEvent,
    TraceReplayer,
    normalize_expected,
    read_trace,
    snapshot_state,
)

_Q8 = Decimal("1E-8")
_COMPARED = ("positions", "realized", "funding_total", "fills_stored", "wallet_balance")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _replay(args: argparse.Namespace, ctx: Context) -> int:
    events = list(read_trace(Path(args.trace)))
    header = next((e.data for e in events if e.kind == "trace_header"), {})
    initial = header.get("initial_wallet_balance")
    initial_balance = Decimal(str(initial)) if initial is not None else None
    cache = PositionCache(make_redis(ctx.settings))
    timings: list[float] = []
    markers: list[dict[str, Any]] = []
    bot_id = str(header.get("bot_id") or "shortseller_001")

    def make_adapter() -> ShortSellerAdapter:
        return ShortSellerAdapter(ctx.settings, bot_id=bot_id)

    def on_marker(event: TraceEvent, adapter: ShortSellerAdapter, engine: ReplayEngine) -> None:
        delivered = adapter.flush(args.timeout)
        row: dict[str, Any] = {"seq": event.seq, "kind": event.kind, "session": event.session}
        row["delivered"] = delivered
        row["pending"] = adapter.pending()
        if not delivered:
            row["match"] = None
            row["differences"] = ["records still spooled (PostgreSQL unreachable?)"]
            markers.append(row)
            return
        snap = snapshot_state(
            adapter.engine,
            bot_id=adapter.bot_id,
            symbols=adapter.symbols,
            cache=cache,
            initial_balance=initial_balance,
        )
        row["fills_stored"] = snap["fills_stored"]
        row["open"] = {s: p["qty"].normalize() for s, p in snap["positions"].items() if p["qty"]}
        row["realized_net"] = snap["realized"]["total"]["net"].quantize(_Q8)
        expected = event.data.get("expected_state")
        latest = snap["latest_exec_time"]
        if isinstance(expected, dict) and latest is not None and latest > event.ts:
            # The stores already held later history (a replay over a filled database):
            # they are ahead of this marker, so it cannot be compared.
            row["match"] = None
            row["differences"] = ["stores hold later fills: not comparable"]
        elif isinstance(expected, dict):
            wanted = normalize_expected(expected)
            row["differences"] = [k for k in _COMPARED if k in wanted and snap.get(k) != wanted[k]]
            row["match"] = not row["differences"]
        else:
            row["match"] = None
            row["differences"] = []
        markers.append(row)

    replayer = TraceReplayer(
        make_adapter,
        on_marker=on_marker,
        observe=lambda hook, seconds: timings.append(seconds) if hook != "restore" else None,
        flush_timeout=args.timeout,
    )
    summary = replayer.run(events)
    pending = markers[-1]["pending"] if markers and markers[-1]["kind"] == "trace_end" else 0
    if replayer.adapter is not None:  # a trace without trace_end
        replayer.adapter.flush(args.timeout)
        pending = replayer.adapter.pending()
        replayer.stop(hard=False)
    ok = all(m["match"] is not False for m in markers) and all(m["delivered"] for m in markers)
    hook_ms = {
        "p50": round(_percentile(timings, 0.50) * 1000, 3),
        "p99": round(_percentile(timings, 0.99) * 1000, 3),
        "max": round(max(timings, default=0.0) * 1000, 3),
    }
    payload: dict[str, Any] = {
        "trace": str(args.trace),
        "events": summary.events,
        "sessions": summary.sessions,
        "hooks": dict(summary.outcomes),
        "hook_ms": hook_ms,
        "restores": [{"source": r.source, "actions": r.actions} for r in summary.restores],
        "markers": markers,
        "spool_pending": pending,
        "ok": ok and pending == 0,
    }
    if args.json:
        print_json(payload)
    else:
        print(
            f"{summary.events} events, {summary.sessions} session(s); hooks: "
            + ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items()))
        )
        print(
            f"hook latency: p50 {hook_ms['p50']} ms, p99 {hook_ms['p99']} ms, "
            f"max {hook_ms['max']} ms"
        )
        print_table(
            [
                (
                    m["seq"],
                    m["kind"],
                    m["session"],
                    m.get("fills_stored"),
                    " ".join(f"{s} {q:f}" for s, q in (m.get("open") or {}).items()) or None,
                    m.get("realized_net"),
                    {True: "yes", False: "NO: " + ", ".join(m["differences"]), None: "-"}[
                        m["match"]
                    ],
                )
                for m in markers
            ],
            ["seq", "marker", "session", "fills", "open", "realized net", "matches trace"],
        )
        if pending:
            print(f"{pending} record(s) still in the spool: run it again when PostgreSQL is up")
    return EXIT_OK if payload["ok"] else EXIT_ACTION_NEEDED


def register(sub: Any) -> None:
    p = command(
        sub,
        "replay-shortseller",
        help="feed a recorded ShortSeller event trace through the adapter into the stores",
        example="alpha-db replay-shortseller ../shared/fixtures/shortseller/"
        "shortseller_events.jsonl --json",
        handler=_replay,
    )
    p.add_argument("trace", help="JSON-lines event trace (SHORTSELLER.md section 8)")
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for delivery at each marker (default 60)",
    )
    add_json_flag(p)
