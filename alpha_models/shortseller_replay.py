"""Replaying a recorded ShortSeller event trace through the adapter, as the live hooks would.

A trace (``../shared/docs/SHORTSELLER.md`` §8) is JSON lines: session starts and restarts,
orders with Bybit's responses, executions with fees, position and equity updates, in
``seq`` order. :class:`TraceReplayer` turns each event into the call the running strategy
makes at that hook, with the strategy's own objects:

* ``fill`` -> :meth:`~adapters.shortseller.ShortSellerAdapter.on_execution` with the Bybit
  execution dict as delivered (a fill may precede its ``order_placed``: it is fed then);
* ``order_placed`` / ``order_failed`` / ``order_update`` / ``position_updated`` -> the
  order and position hooks with the ``/v5/order/create`` body, the response, the stream
  objects;
* ``position_opened`` / ``position_closed`` / ``position_synced``: a stand-in of the
  strategy engine (:class:`ReplayEngine`, the same ``asset_positions`` /
  ``asset_cooldowns`` structure) is updated exactly as ``update_position`` and
  ``apply_trade_execution_cooldown`` do, and the adapter gets the entry (a snapshot taken
  *before* the close);
* ``session_start``: a new adapter and a fresh engine (memory lost), then
  :meth:`~adapters.shortseller.ShortSellerAdapter.restore` after the start-up events
  (``sync_positions``), as E3 places it; ``restart``: the adapter is dropped as a hard kill
  would (its spool stays on disk); ``trace_end``: flushed and closed.

``_test`` (the trace's oracle) is never read here. Markers (``restart``, ``trace_end``)
call ``on_marker`` after a flush, so a caller can compare the stores with the trace's
``expected_state`` (:func:`snapshot_state`, :func:`normalize_expected`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.engine import Engine

from adapters.shortseller import ASSETS, HookOutcome, RestoreReport, ShortSellerAdapter
from alpha_models.cache import PositionCache
from alpha_models.errors import CacheUnavailableError, ValidationError
from alpha_models.inputs import to_utc
from alpha_models.pnl import PnlFill, rebuild

__all__ = [
    "MARKER_KINDS",
    "ReplayEngine",
    "ReplaySummary",
    "TraceEvent",
    "TraceReplayer",
    "exchange_positions_from_events",
    "normalize_expected",
    "read_trace",
    "snapshot_state",
]

MARKER_KINDS: Final = frozenset({"restart", "trace_end"})
_STARTUP_KINDS: Final = frozenset({"position_synced", "position_sync_failed"})
_Q8: Final = Decimal("1E-8")
_ZERO: Final = Decimal(0)

HookObserver = Callable[[str, float], None]
MarkerCallback = Callable[["TraceEvent", ShortSellerAdapter, "ReplayEngine"], None]
RestoreCallback = Callable[[RestoreReport, "ReplayEngine", datetime], None]


# ------------------------------------------------------------------------------ trace


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One trace line without its ``_test`` oracle."""

    seq: int
    event_id: str
    kind: str
    ts: datetime
    source: str
    session: int | None
    data: dict[str, Any]


def parse_event(raw: Mapping[str, Any], line: int = 0) -> TraceEvent:
    """A trace line (decoded JSON) as a :class:`TraceEvent`; ``ValidationError`` if the
    envelope is malformed."""
    where = f"line {line}: " if line else ""
    if not isinstance(raw, Mapping):
        raise ValidationError("event", raw, f"{where}expected a JSON object")
    seq, kind, data = raw.get("seq"), raw.get("kind"), raw.get("data")
    if type(seq) is not int or seq < 1:
        raise ValidationError("seq", seq, f"{where}expected a positive integer")
    if not isinstance(kind, str) or not kind:
        raise ValidationError("kind", kind, f"{where}expected the event kind")
    if not isinstance(data, dict):
        raise ValidationError("data", data, f"{where}expected an object")
    session = raw.get("session")
    if session is not None and type(session) is not int:
        raise ValidationError("session", session, f"{where}expected an integer or null")
    return TraceEvent(
        seq=seq,
        event_id=str(raw.get("event_id") or f"seq-{seq}"),
        kind=kind,
        ts=to_utc("ts", raw.get("ts")),
        source=str(raw.get("source") or ""),
        session=session,
        data=data,
    )


def read_trace(path: Path | str) -> Iterator[TraceEvent]:
    """The events of a JSON-lines trace, in file order (blank lines skipped)."""
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except ValueError as exc:
                raise ValidationError("line", number, f"not JSON: {exc}") from None
            yield parse_event(raw, number)


# ------------------------------------------------------------------------------ engine


class ReplayEngine:
    """A stand-in for ShortSeller's strategy engine: the same per-asset structures, mutated
    as its ``update_position`` and ``apply_trade_execution_cooldown`` do (times given)."""

    def __init__(self, assets: Iterable[str] = ASSETS) -> None:
        self.asset_positions: dict[str, dict[str, Any]] = {
            asset: {
                "in_position": False,
                "entry_price": 0,
                "asset_amount": 0,
                "leveraged_value": 0,
                "entry_time": None,
            }
            for asset in assets
        }
        self.asset_cooldowns: dict[str, dict[str, Any] | None] = dict.fromkeys(self.asset_positions)

    def update_position(
        self,
        asset: str,
        in_position: bool,
        entry_price: float = 0,
        asset_amount: float = 0,
        leveraged_value: float = 0,
        *,
        now: datetime,
    ) -> None:
        entry = self.asset_positions.get(asset)
        if entry is None:
            return  # the strategy ignores unknown assets silently
        entry.update(
            in_position=in_position,
            entry_price=entry_price,
            asset_amount=asset_amount,
            leveraged_value=leveraged_value,
            entry_time=now if in_position else None,
        )

    def apply_trade_execution_cooldown(
        self, asset: str, *, now: datetime, end: datetime | None = None
    ) -> None:
        self.asset_cooldowns[asset] = {
            "end_time": end or now + timedelta(hours=1),
            "reason": "Trade Execution",
            "started_at": now,
            "duration_hours": 1,
        }

    def memory(self, at: datetime) -> dict[str, dict[str, Any]]:
        """What a restart would lose: the five position fields and the active cooldown."""
        out: dict[str, dict[str, Any]] = {}
        for asset, entry in self.asset_positions.items():
            cooldown = self.asset_cooldowns.get(asset)
            end = cooldown.get("end_time") if cooldown else None
            out[asset] = {
                "in_position": bool(entry["in_position"]),
                "entry_price": entry["entry_price"] if entry["in_position"] else 0,
                "asset_amount": entry["asset_amount"] if entry["in_position"] else 0,
                "leveraged_value": entry["leveraged_value"] if entry["in_position"] else 0,
                "entry_time": entry["entry_time"] if entry["in_position"] else None,
                "cooldown_until": end if isinstance(end, datetime) and end > at else None,
            }
        return out


# ------------------------------------------------------------------------------ replay


@dataclass
class ReplaySummary:
    """Counts of one replay."""

    events: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    sessions: int = 0
    restores: list[RestoreReport] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)


def _time(value: Any) -> datetime | None:
    return None if value in (None, "") else to_utc("time", value)


class TraceReplayer:
    """Feeds trace events through adapters made by ``make_adapter`` (one per session).

    ``observe(hook, seconds)`` is called after every adapter call (for latency figures);
    ``on_marker(event, adapter, engine)`` at each ``restart`` / ``trace_end`` after the
    adapter was flushed (``flush_timeout``; a flush that cannot finish, e.g. PostgreSQL
    down, leaves the records spooled); ``on_restore(report, engine, at)`` after each
    restore. A restore runs at the time of the last start-up event (``sync_positions``),
    where E3 places it, not at the next event's.
    """

    def __init__(
        self,
        make_adapter: Callable[[], ShortSellerAdapter],
        *,
        on_marker: MarkerCallback | None = None,
        on_restore: RestoreCallback | None = None,
        observe: HookObserver | None = None,
        flush_timeout: float = 30.0,
    ) -> None:
        self._make_adapter = make_adapter
        self._on_marker = on_marker
        self._on_restore = on_restore
        self._startup_at: datetime | None = None
        self._observe = observe
        self._flush_timeout = flush_timeout
        self.adapter: ShortSellerAdapter | None = None
        self.engine: ReplayEngine | None = None
        self._restore_pending = False
        self._resume_positions: list[dict[str, Any]] | None = None
        self.summary = ReplaySummary()

    # -- sessions ----------------------------------------------------------------------
    def start_session(
        self,
        at: datetime,
        *,
        exchange_positions: Sequence[Mapping[str, Any]] | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """A (re)started strategy: new adapter, empty memory. With ``exchange_positions``
        (what ``get_positions`` returns) ``sync_positions`` is simulated as the strategy
        does it (entry price = avgPrice, entry time = now) and :meth:`restore` runs at
        once; otherwise it runs before the first event after the start-up ones."""
        if self.adapter is not None:
            self.stop(hard=True)
        self.adapter = self._make_adapter()
        self.engine = ReplayEngine(self.adapter.assets)
        self.summary.sessions += 1
        data = data or {}
        self._call(
            "session_start",
            self.adapter.on_session_start,
            version=str(data.get("version", "")),
            cause=str(data.get("cause", "resume")),
            demo=data.get("demo") if isinstance(data.get("demo"), bool) else None,
            at=at,
        )
        self._restore_pending = True
        self._startup_at = at
        if exchange_positions is not None:
            for position in exchange_positions:
                asset = self.adapter.asset_of(str(position.get("symbol")))
                if asset is None or Decimal(str(position.get("size") or 0)) == 0:
                    continue
                self.engine.update_position(
                    asset,
                    True,
                    float(position["avgPrice"]),
                    float(position["size"]),
                    float(position.get("positionValue") or 0),
                    now=at,
                )
                self._call(
                    "position_synced",
                    self.adapter.on_position_synced,
                    asset,
                    position,
                    self.engine.asset_positions[asset],
                    at=at,
                )
            self._restore(at, exchange_positions)

    def _restore(
        self, at: datetime, exchange_positions: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        assert self.adapter is not None and self.engine is not None
        self._restore_pending = False
        started = time.perf_counter()
        report = self.adapter.restore(
            self.engine, exchange_positions=exchange_positions, at=at, wait_s=self._flush_timeout
        )
        if self._observe is not None:
            self._observe("restore", time.perf_counter() - started)
        self.summary.restores.append(report)
        if self._on_restore is not None:
            self._on_restore(report, self.engine, at)

    def stop(self, *, hard: bool = True) -> None:
        """Drop the adapter: ``hard`` as a kill (no flush), else flushed and closed."""
        if self.adapter is None:
            return
        if hard:
            self.adapter.abort()
        else:
            self.adapter.close(self._flush_timeout)
        self.adapter = None
        self.engine = None

    # -- events ------------------------------------------------------------------------
    def _call(self, hook: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        if self._observe is not None:
            self._observe(hook, time.perf_counter() - started)
        if isinstance(result, HookOutcome):
            self.summary.outcomes[result.value] += 1
        return result

    def run(
        self,
        events: Iterable[TraceEvent],
        *,
        resume_positions: Sequence[Mapping[str, Any]] | None = None,
    ) -> ReplaySummary:
        """Feed ``events`` in order. If they do not begin with a session start (a trace cut
        in the middle), a restarted session is simulated first with ``resume_positions``
        as the exchange's positions."""
        for event in events:
            self.feed(event, resume_positions=resume_positions)
        return self.summary

    def feed(
        self,
        event: TraceEvent,
        *,
        resume_positions: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.summary.events += 1
        self.summary.by_kind[event.kind] += 1
        kind, data, at = event.kind, event.data, event.ts
        if kind == "trace_header":
            self.summary.header = dict(data)
            return
        if kind == "session_start":
            self.start_session(at, data=data)
            return
        if self.adapter is None:
            if kind in MARKER_KINDS:
                return
            self.start_session(at, exchange_positions=list(resume_positions or []))
        startup = kind in _STARTUP_KINDS or (kind == "equity" and data.get("source") == "startup")
        if self._restore_pending and startup:
            self._startup_at = at
        elif self._restore_pending:
            self._restore(self._startup_at or at)
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(event)

    def _on_fill(self, event: TraceEvent) -> None:
        assert self.adapter is not None
        self._call("execution", self.adapter.on_execution, event.data, at=event.ts)

    def _on_order_placed(self, event: TraceEvent) -> None:
        assert self.adapter is not None
        d = event.data
        self._call(
            "order_placed",
            self.adapter.on_order_placed,
            d.get("request") or {},
            d.get("response") or {},
            reason=d.get("reason_code"),
            attempt=int(d.get("attempt") or 1),
            at=event.ts,
        )

    def _on_order_failed(self, event: TraceEvent) -> None:
        assert self.adapter is not None
        d = event.data
        self._call(
            "order_failed",
            self.adapter.on_order_failed,
            d.get("request") or {},
            str(d.get("error") or ""),
            attempt=int(d.get("attempt") or 1),
            at=event.ts,
        )

    def _on_order_update(self, event: TraceEvent) -> None:
        assert self.adapter is not None
        self._call("order_update", self.adapter.on_order_update, event.data, at=event.ts)

    def _on_position_updated(self, event: TraceEvent) -> None:
        assert self.adapter is not None
        position = {k: v for k, v in event.data.items() if k != "change"}  # trace annotation
        self._call("position_update", self.adapter.on_position_update, position, at=event.ts)

    def _on_equity(self, event: TraceEvent) -> None:
        assert self.adapter is not None
        d = event.data
        self._call(
            "equity",
            self.adapter.on_equity,
            d,
            source=str(d.get("source") or "balance"),
            daily_pnl=d.get("daily_pnl"),
            total_trades=d.get("total_trades"),
            active_positions=d.get("active_positions"),
            at=event.ts,
        )

    def _on_position_synced(self, event: TraceEvent) -> None:
        assert self.adapter is not None and self.engine is not None
        d = event.data
        asset = str(d.get("asset"))
        state = d.get("strategy_state") or {}
        self.engine.update_position(
            asset,
            True,
            state.get("entry_price", 0),
            state.get("asset_amount", 0),
            state.get("leveraged_value", 0),
            now=_time(state.get("entry_time")) or event.ts,
        )
        self._call(
            "position_synced",
            self.adapter.on_position_synced,
            asset,
            d.get("exchange_position") or {},
            self.engine.asset_positions.get(asset),
            at=event.ts,
        )

    def _on_position_sync_failed(self, event: TraceEvent) -> None:
        assert self.adapter is not None
        self.adapter.on_position_sync_failed()

    def _on_position_opened(self, event: TraceEvent) -> None:
        assert self.adapter is not None and self.engine is not None
        d = event.data
        asset = str(d.get("asset"))
        self.engine.update_position(
            asset,
            True,
            d.get("entry_price", 0),
            d.get("asset_amount", 0),
            d.get("leveraged_value", 0),
            now=_time(d.get("entry_time")) or event.ts,
        )
        levels = {
            "stop_loss": d.get("stop_loss_price"),
            "take_profit": d.get("take_profit_price"),
            "trailing_stop": d.get("trailing_stop_distance"),
            "trailing_activation": d.get("trailing_activation_price"),
        }
        result = {"orderId": d.get("order_id"), "orderLinkId": d.get("client_order_id") or ""}
        self._call(
            "position_opened",
            self.adapter.on_position_opened,
            asset,
            self.engine.asset_positions.get(asset, {}),
            result,
            levels,
            at=event.ts,
        )
        until = _time(d.get("cooldown_until"))
        if until is not None and asset in self.engine.asset_cooldowns:
            self.engine.apply_trade_execution_cooldown(asset, now=event.ts, end=until)
            self._call(
                "cooldown",
                self.adapter.on_cooldown,
                asset,
                self.engine.asset_cooldowns[asset],
                at=event.ts,
            )

    def _on_position_closed(self, event: TraceEvent) -> None:
        assert self.adapter is not None and self.engine is not None
        d = event.data
        asset = str(d.get("asset"))
        snapshot = {
            "in_position": True,
            "entry_price": d.get("entry_price"),
            "asset_amount": d.get("asset_amount"),
            "leveraged_value": d.get("leveraged_value"),
            "entry_time": _time(d.get("entry_time")),
        }
        self._call(
            "position_closed",
            self.adapter.on_position_closed,
            asset,
            snapshot,
            d.get("exit_price"),
            str(d.get("exit_reason") or ""),
            d.get("close_result"),
            at=event.ts,
        )
        self.engine.update_position(asset, False, now=event.ts)

    def _marker(self, event: TraceEvent) -> None:
        assert self.adapter is not None and self.engine is not None
        self.adapter.flush(self._flush_timeout)
        if self._on_marker is not None:
            self._on_marker(event, self.adapter, self.engine)

    def _on_restart(self, event: TraceEvent) -> None:
        self._marker(event)
        self.stop(hard=True)

    def _on_trace_end(self, event: TraceEvent) -> None:
        self._marker(event)
        self.stop(hard=False)


# ------------------------------------------------------------------------------ state


def exchange_positions_from_events(events: Iterable[TraceEvent]) -> list[dict[str, Any]]:
    """The exchange's positions after ``events`` (net of their Trade executions), shaped as
    ``/v5/position/list`` items: what ``get_positions`` would return at that point."""
    fills: dict[str, PnlFill] = {}
    for event in events:
        d = event.data
        if event.kind != "fill" or d.get("execType") != "Trade" or not d.get("execId"):
            continue
        try:
            fills.setdefault(
                str(d["execId"]),
                PnlFill(
                    None,
                    str(d["execId"]),
                    "exchange",
                    str(d["symbol"]),
                    str(d["side"]),
                    Decimal(str(d["execPrice"])),
                    Decimal(str(d["execQty"])),
                    Decimal(str(d.get("execFee") or "0")),
                    to_utc("execTime", d["execTime"]),
                ),
            )
        except (KeyError, ValueError, ArithmeticError, ValidationError):
            continue
    out: list[dict[str, Any]] = []
    for pos in rebuild(fills.values()).positions:
        if pos.size == 0 or pos.avg_entry_price is None:
            continue
        out.append(
            {
                "symbol": pos.symbol,
                "side": pos.side,
                "positionIdx": 0,
                "size": format(pos.size, "f"),
                "avgPrice": format(pos.avg_entry_price, "f"),
                "positionValue": format((pos.size * pos.avg_entry_price).quantize(_Q8), "f"),
            }
        )
    return out


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else _ZERO


def normalize_expected(expected: Mapping[str, Any]) -> dict[str, Any]:
    """A trace ``expected_state`` with numbers as Decimals (comparable to
    :func:`snapshot_state`)."""
    positions: dict[str, Any] = {}
    for symbol, pos in (expected.get("positions") or {}).items():
        positions[symbol] = {
            "side": pos.get("side", ""),
            "qty": _dec(pos.get("qty")),
            "avg_entry_price": _dec(pos.get("avg_entry_price")),
            "lots": [
                {
                    "exec_id": lot["exec_id"],
                    "order_id": lot["order_id"],
                    "exec_time": int(lot["exec_time"]),
                    "price": _dec(lot["price"]),
                    "qty_remaining": _dec(lot["qty_remaining"]),
                    "entry_fee_remaining": _dec(lot["entry_fee_remaining"]),
                }
                for lot in pos.get("lots") or []
            ],
        }
    realized = {
        key: {name: _dec(value.get(name)) for name in ("gross", "fees", "net", "closed_qty")}
        for key, value in (expected.get("realized") or {}).items()
    }
    out: dict[str, Any] = {"positions": positions, "realized": realized}
    for name in ("funding_total", "wallet_balance"):
        if name in expected:
            out[name] = _dec(expected[name])
    if "fills_stored" in expected:
        out["fills_stored"] = int(expected["fills_stored"])
    return out


def _ms(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def snapshot_state(
    engine: Engine,
    *,
    bot_id: str,
    symbols: Iterable[str],
    cache: PositionCache | None = None,
    initial_balance: Decimal | None = None,
) -> dict[str, Any]:
    """What the shared stores hold for ``bot_id``, in the shape of a trace
    ``expected_state`` (numbers as Decimals): PostgreSQL positions and open lots, realized
    P&L by :func:`alpha_models.pnl.rebuild` over the stored fills, funding, the Redis live
    position (``redis``), the strategy's trade records (``trades``), equity (``equity``)
    and the newest stored fill's time (``latest_exec_time``).
    """
    symbols = sorted(symbols)
    params = {"bot": bot_id}
    with engine.connect() as conn:
        fills = conn.execute(
            text(
                "SELECT id, exec_id, symbol, side, exec_price, exec_qty, commission, exec_time, "
                "order_id FROM trading.fills WHERE bot_id = :bot AND exec_type <> 'Funding'"
            ),
            params,
        ).all()
        lots = conn.execute(
            text(
                "SELECT symbol, entry_id, entry_order_id, entry_time, entry_price, remaining_qty "
                "FROM trading.position_entries WHERE bot_id = :bot AND remaining_qty > 0 "
                "ORDER BY symbol, entry_time, id"
            ),
            params,
        ).all()
        positions = {
            r.symbol: r
            for r in conn.execute(
                text(
                    "SELECT symbol, side, size, avg_entry_price FROM trading.positions "
                    "WHERE bot_id = :bot"
                ),
                params,
            )
        }
        funding = conn.execute(
            text(
                "SELECT coalesce(sum(fee), 0) FROM trading.funding_settlements WHERE bot_id = :bot"
            ),
            params,
        ).scalar_one()
        trades = conn.execute(
            text(
                "SELECT trade_key, symbol, entry_time, entry_price, quantity, notional_usd, "
                "exit_time, exit_price, exit_reason, entry_exec_id, exit_exec_id, "
                "details ->> 'exit_fill_reason' AS exit_fill_reason, "
                "details ->> 'cooldown_until' AS cooldown_until "
                "FROM trading.strategy_trades WHERE bot_id = :bot ORDER BY entry_time, trade_key"
            ),
            params,
        ).all()
        equity = conn.execute(
            text("SELECT current_equity FROM trading.bots WHERE bot_id = :bot"), params
        ).scalar()
        days = conn.execute(
            text(
                "SELECT snapshot_date, starting_equity, ending_equity "
                "FROM trading.equity_snapshots WHERE bot_id = :bot ORDER BY snapshot_date"
            ),
            params,
        ).all()
        conn.rollback()
    result = rebuild(
        PnlFill(
            r.id,
            r.exec_id,
            bot_id,
            r.symbol,
            r.side,
            r.exec_price,
            r.exec_qty,
            r.commission,
            r.exec_time,
            r.order_id,
        )
        for r in fills
    )
    fee_left = {lot.entry_exec_id: lot.remaining_entry_fee for lot in result.open_lots}
    out_positions: dict[str, Any] = {}
    for symbol in symbols:
        row = positions.get(symbol)
        size = row.size if row is not None else _ZERO
        out_positions[symbol] = {
            "side": (row.side or "") if row is not None and size else "",
            "qty": size,
            "avg_entry_price": (row.avg_entry_price if row is not None and size else None) or _ZERO,
            "lots": [
                {
                    "exec_id": lot.entry_id,
                    "order_id": lot.entry_order_id,
                    "exec_time": _ms(lot.entry_time),
                    "price": lot.entry_price,
                    "qty_remaining": lot.remaining_qty,
                    "entry_fee_remaining": fee_left.get(lot.entry_id),
                }
                for lot in lots
                if lot.symbol == symbol
            ],
        }
    realized: dict[str, dict[str, Decimal]] = {
        s: dict.fromkeys(("gross", "fees", "net", "closed_qty"), _ZERO) for s in symbols
    }
    total = dict.fromkeys(("gross", "fees", "net", "closed_qty"), _ZERO)
    for piece in result.realizations:
        for bucket in (realized.setdefault(piece.symbol, dict(total)), total):
            bucket["gross"] += piece.gross
            bucket["fees"] += piece.entry_fee + piece.exit_fee
            bucket["net"] += piece.net
            bucket["closed_qty"] += piece.qty
    realized["total"] = total
    redis_view: dict[str, Any] = {}
    if cache is not None:
        for symbol in symbols:
            try:
                snap = cache.get(bot_id, symbol)
            except CacheUnavailableError as exc:
                redis_view[symbol] = f"unavailable: {exc}"
                continue
            redis_view[symbol] = (
                None
                if snap is None
                else {"side": snap.side, "qty": snap.size, "avg_entry_price": snap.avg_entry_price}
            )
    out: dict[str, Any] = {
        "positions": out_positions,
        "realized": realized,
        "funding_total": funding,
        "fills_stored": len(fills),
        "latest_exec_time": max((r.exec_time for r in fills), default=None),
        "redis": redis_view,
        "trades": [dict(r._mapping) for r in trades],
        "equity": {
            "current": equity,
            "days": [(r.snapshot_date, r.starting_equity, r.ending_equity) for r in days],
        },
    }
    if initial_balance is not None:
        all_fees = sum((r.commission for r in fills), _ZERO)
        out["wallet_balance"] = initial_balance + total["gross"] - all_fees - funding
    return out
