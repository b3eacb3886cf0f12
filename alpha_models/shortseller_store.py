# ruff: noqa: S608
"""The SQL behind the ShortSeller adapter: the strategy's own trade records, its equity and
heartbeat, and the queries that restore its memory after a restart.

The adapter (``adapters.shortseller``) holds no SQL; its background writer calls these
functions inside one transaction each (``engine.begin()``), after the write path has stored
the fills. What lives where:

* ``trading.strategy_trades``: one row per ShortSeller entry, keyed by the entry's Bybit
  ``orderId`` (``trade_key``). Columns hold the strategy's own figures (entry price = the
  signal's bar close, not a fill; ``pnl_usd`` = its (entry - exit) x amount).
  ``details`` (JSONB, strings only) keeps what the columns cannot: the exact float text of
  the strategy's values (so a restore gives back *exactly* the float it had), the unrounded
  SL/TP/trailing levels, the cooldown end, the close result, and, once the fills are known,
  the exchange's reason for the fill that really closed the position (``exit_fill_reason``).
* ``trading.equity_snapshots`` / ``trading.bots.current_equity`` / ``last_heartbeat``.
* ``audit.system_events``: reconciliation and order-failure events.

Every write is idempotent (the adapter's spool delivers at least once). The statements
are built once from constant fragments, never from input (the file-level S608 waiver).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.engine import Connection

__all__ = [
    "TradeState",
    "close_trade",
    "link_fills",
    "load_trade_states",
    "open_trade",
    "reconcile_trade",
    "record_equity",
    "record_event",
    "record_heartbeat",
    "set_cooldown",
    "state_stamp",
]

_JSON: Final = "CAST(:details AS jsonb)"

_OPEN_TRADE: Final = text(
    "INSERT INTO trading.strategy_trades (bot_id, trade_key, mode, symbol, side, rule_id, "
    "entry_time, entry_price, quantity, notional_usd, stop_loss, take_profit, details, "
    "source) VALUES (:bot_id, :trade_key, :mode, :symbol, 'Sell', :rule_id, :entry_time, "
    f":entry_price, :quantity, :notional, :stop_loss, :take_profit, {_JSON}, 'adapter') "
    "ON CONFLICT (bot_id, trade_key) DO UPDATE SET "
    "mode = EXCLUDED.mode, symbol = EXCLUDED.symbol, entry_time = EXCLUDED.entry_time, "
    "entry_price = EXCLUDED.entry_price, quantity = EXCLUDED.quantity, "
    "notional_usd = EXCLUDED.notional_usd, stop_loss = EXCLUDED.stop_loss, "
    "take_profit = EXCLUDED.take_profit, "
    "details = coalesce(trading.strategy_trades.details, '{}'::jsonb) || EXCLUDED.details, "
    "updated_at = clock_timestamp() "
    "RETURNING id"
)

# The trade a close, a cooldown or a reconciliation applies to: by key when the adapter
# knows it, else the newest still-open trade of the symbol (a close after a restart that
# had no restore), else the newest trade of the symbol (a cooldown).
_TARGET: Final = (
    "(SELECT t.id FROM trading.strategy_trades t WHERE t.bot_id = :bot_id "
    "AND t.symbol = :symbol AND (t.trade_key = :trade_key OR (CAST(:trade_key AS varchar) "
    "IS NULL AND {extra})) ORDER BY t.entry_time DESC, t.id DESC LIMIT 1)"
)

_CLOSE_TRADE: Final = text(
    "UPDATE trading.strategy_trades s SET exit_time = :exit_time, exit_price = :exit_price, "
    "exit_reason = :exit_reason, pnl_usd = :pnl_usd, pnl_pct = :pnl_pct, "
    f"holding_seconds = :holding_seconds, details = coalesce(s.details, '{{}}'::jsonb) || "
    f"{_JSON}, updated_at = clock_timestamp() "
    f"WHERE s.id = {_TARGET.format(extra='t.exit_time IS NULL')} RETURNING s.id"
)

_INSERT_CLOSED: Final = text(
    "INSERT INTO trading.strategy_trades (bot_id, trade_key, mode, symbol, side, rule_id, "
    "entry_time, entry_price, quantity, notional_usd, exit_time, exit_price, exit_reason, "
    "pnl_usd, pnl_pct, holding_seconds, details, source) VALUES (:bot_id, :new_key, :mode, "
    ":symbol, 'Sell', :rule_id, :entry_time, :entry_price, :quantity, :notional, :exit_time, "
    f":exit_price, :exit_reason, :pnl_usd, :pnl_pct, :holding_seconds, {_JSON}, 'adapter') "
    "ON CONFLICT (bot_id, trade_key) DO NOTHING"
)

_SET_COOLDOWN: Final = text(
    "UPDATE trading.strategy_trades s SET details = coalesce(s.details, '{}'::jsonb) || "
    f"{_JSON}, updated_at = clock_timestamp() "
    f"WHERE s.id = {_TARGET.format(extra='TRUE')} RETURNING s.id"
)

_RECONCILE: Final = text(
    "UPDATE trading.strategy_trades s SET exit_time = :exit_time, exit_reason = :exit_reason, "
    f"details = coalesce(s.details, '{{}}'::jsonb) || {_JSON}, "
    "updated_at = clock_timestamp() "
    f"WHERE s.id = {_TARGET.format(extra='t.exit_time IS NULL')} AND s.exit_time IS NULL "
    "RETURNING s.id"
)

_LATEST_PER_SYMBOL: Final = text(
    "SELECT DISTINCT ON (t.symbol) t.symbol, t.trade_key, t.entry_time, t.entry_price, "
    "t.quantity, t.notional_usd, t.exit_time, t.details "
    "FROM trading.strategy_trades t WHERE t.bot_id = :bot_id "
    "AND t.entry_time <= coalesce(CAST(:as_of AS timestamptz), 'infinity') "
    "ORDER BY t.symbol, t.entry_time DESC, t.id DESC"
)

_STAMP: Final = text(
    "SELECT max(t.updated_at) FROM trading.strategy_trades t WHERE t.bot_id = :bot_id"
)

# Links each trade to its fills, from the stored fills alone (so the order in which fills,
# opens and closes were delivered does not matter): the entry fill is the first execution
# of the entry order; the exit fill is the last Buy between this entry and the next one,
# once that window is closed (a next entry exists, or the bot's position is flat).
_LINK_FILLS: Final = text(
    """
WITH t AS (
    SELECT s.id, s.symbol, s.trade_key, s.entry_time,
           lead(s.trade_key) OVER w AS next_key, lead(s.entry_time) OVER w AS next_time
      FROM trading.strategy_trades s
     WHERE s.bot_id = :bot_id
    WINDOW w AS (PARTITION BY s.symbol ORDER BY s.entry_time, s.id)
), bounds AS (
    SELECT t.*,
           (SELECT f.exec_time FROM trading.fills f
             WHERE f.bot_id = :bot_id AND f.order_id = t.trade_key
             ORDER BY f.exec_time, f.id LIMIT 1) AS entry_fill_time,
           (SELECT f.exec_id FROM trading.fills f
             WHERE f.bot_id = :bot_id AND f.order_id = t.trade_key
             ORDER BY f.exec_time, f.id LIMIT 1) AS entry_exec,
           (SELECT f.exec_time FROM trading.fills f
             WHERE f.bot_id = :bot_id AND f.order_id = t.next_key
             ORDER BY f.exec_time, f.id LIMIT 1) AS next_fill_time
      FROM t
), links AS (
    SELECT b.id, b.entry_exec, x.exec_id AS exit_exec, x.close_reason AS exit_reason
      FROM bounds b
      LEFT JOIN LATERAL (
            SELECT f.exec_id, f.close_reason FROM trading.fills f
             WHERE f.bot_id = :bot_id AND f.symbol = b.symbol AND f.side = 'Buy'
               AND f.exec_time > coalesce(b.entry_fill_time, b.entry_time - interval '10 s')
               AND (b.next_time IS NULL
                    OR f.exec_time < coalesce(b.next_fill_time, b.next_time - interval '1 s'))
               AND (b.next_time IS NOT NULL OR EXISTS (
                    SELECT 1 FROM trading.positions p
                     WHERE p.bot_id = :bot_id AND p.symbol = b.symbol AND p.size = 0))
             ORDER BY f.exec_time DESC, f.id DESC LIMIT 1) x ON TRUE
)
UPDATE trading.strategy_trades s
   SET entry_exec_id = l.entry_exec,
       exit_exec_id = l.exit_exec,
       details = CASE WHEN l.exit_reason IS NULL
                      THEN coalesce(s.details, '{}'::jsonb) - 'exit_fill_reason'
                      ELSE coalesce(s.details, '{}'::jsonb)
                           || jsonb_build_object('exit_fill_reason', l.exit_reason) END
  FROM links l
 WHERE s.id = l.id
   AND (s.entry_exec_id IS DISTINCT FROM l.entry_exec
        OR s.exit_exec_id IS DISTINCT FROM l.exit_exec
        OR s.details ->> 'exit_fill_reason' IS DISTINCT FROM l.exit_reason)
"""
)

_EQUITY_BOT: Final = text(
    "UPDATE trading.bots SET current_equity = :equity, updated_at = now() WHERE bot_id = :bot_id"
)

_EQUITY_SNAPSHOT: Final = text(
    """
INSERT INTO trading.equity_snapshots AS s (bot_id, snapshot_date, mode, starting_equity,
    ending_equity, daily_pnl, daily_pnl_pct, trades_count, open_positions, source)
SELECT :bot_id, :day, :mode, o.opening, :equity, :equity - o.opening,
       round((:equity - o.opening) / nullif(o.opening, 0), 8),
       coalesce(CAST(:trades AS integer), 0), coalesce(CAST(:open AS integer), 0), 'adapter'
  FROM (SELECT coalesce(
            (SELECT p.ending_equity FROM trading.equity_snapshots p
              WHERE p.bot_id = :bot_id AND p.mode = :mode AND p.snapshot_date < :day
              ORDER BY p.snapshot_date DESC LIMIT 1),
            CAST(:equity AS numeric)) AS opening) o
ON CONFLICT (bot_id, snapshot_date, mode) DO UPDATE SET
    ending_equity = EXCLUDED.ending_equity,
    daily_pnl = EXCLUDED.ending_equity - s.starting_equity,
    daily_pnl_pct = round((EXCLUDED.ending_equity - s.starting_equity)
                          / nullif(s.starting_equity, 0), 8),
    trades_count = coalesce(CAST(:trades AS integer), s.trades_count),
    open_positions = coalesce(CAST(:open AS integer), s.open_positions),
    updated_at = now()
"""
)

_HEARTBEAT: Final = text(
    "UPDATE trading.bots SET last_heartbeat = greatest(last_heartbeat, :at) WHERE bot_id = :bot_id"
)

_EVENT: Final = text(
    "INSERT INTO audit.system_events (event_time, event_type, event_level, bot_id, component, "
    f"message, details, symbol, order_id) VALUES (:at, :event_type, :level, :bot_id, "
    f"'shortseller_adapter', :message, {_JSON}, :symbol, :order_id)"
)


def _details(values: Mapping[str, Any]) -> str:
    """JSON text for a ``details`` column: strings, ints, bools, nested dicts and None
    only (the adapter never puts a float in JSON)."""
    return json.dumps(values, separators=(",", ":"), sort_keys=True, allow_nan=False)


def open_trade(conn: Connection, params: Mapping[str, Any], details: Mapping[str, Any]) -> None:
    """Insert (or refresh) the trade opened by one ShortSeller entry."""
    conn.execute(_OPEN_TRADE, {**params, "details": _details(details)})


def close_trade(conn: Connection, params: Mapping[str, Any], details: Mapping[str, Any]) -> None:
    """Record the strategy's exit on its trade; a close with no trade to match (a position
    the adapter never saw open) is stored as a closed trade of its own."""
    values = {**params, "details": _details(details)}
    if conn.execute(_CLOSE_TRADE, values).first() is None and params.get("entry_price"):
        conn.execute(_INSERT_CLOSED, values)


def set_cooldown(conn: Connection, params: Mapping[str, Any], details: Mapping[str, Any]) -> None:
    conn.execute(_SET_COOLDOWN, {**params, "details": _details(details)})


def reconcile_trade(
    conn: Connection, params: Mapping[str, Any], details: Mapping[str, Any]
) -> None:
    """Close a trade the exchange no longer holds (found flat at a restart)."""
    conn.execute(_RECONCILE, {**params, "details": _details(details)})


def link_fills(conn: Connection, bot_id: str) -> int:
    """Set ``entry_exec_id``/``exit_exec_id``/``exit_fill_reason`` from the stored fills;
    returns the number of trades changed (idempotent, order-independent)."""
    return int(conn.execute(_LINK_FILLS, {"bot_id": bot_id}).rowcount or 0)


def record_equity(conn: Connection, params: Mapping[str, Any]) -> None:
    """``bots.current_equity`` and the day's ``equity_snapshots`` row (opening equity = the
    previous day's closing one, or the first reading)."""
    conn.execute(_EQUITY_BOT, params)
    conn.execute(_EQUITY_SNAPSHOT, params)


def record_heartbeat(conn: Connection, bot_id: str, at: datetime) -> None:
    conn.execute(_HEARTBEAT, {"bot_id": bot_id, "at": at})


def record_event(conn: Connection, params: Mapping[str, Any], details: Mapping[str, Any]) -> None:
    conn.execute(_EVENT, {**params, "details": _details(details)})


#: ``audit.system_events.event_type`` of the strategy's ``daily_cross_count`` (details: the
#: UTC ``day`` and ``counts``, asset -> int).
CROSS_COUNT_EVENT: Final = "daily_cross_count"
_CROSS_COUNTS: Final = text(
    "SELECT details -> 'counts' FROM audit.system_events WHERE bot_id = :bot_id "
    "AND event_type = :event_type AND details ->> 'day' = :day AND event_time <= :as_of "
    "ORDER BY event_time DESC, id DESC LIMIT 1"
)


def latest_cross_counts(
    conn: Connection, bot_id: str, day: str, as_of: datetime
) -> dict[str, Any] | None:
    """The counts last recorded for the UTC ``day`` (ISO date) by ``as_of``; None if none."""
    params = {"bot_id": bot_id, "event_type": CROSS_COUNT_EVENT, "day": day, "as_of": as_of}
    value = conn.execute(_CROSS_COUNTS, params).scalar()
    return dict(value) if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class TradeState:
    """The newest trade of one symbol, as restore needs it (the strategy's own values)."""

    symbol: str
    trade_key: str
    entry_time: datetime
    exit_time: datetime | None
    entry_price: Decimal
    quantity: Decimal
    notional: Decimal | None
    details: dict[str, Any]

    def open_at(self, moment: datetime) -> bool:
        """Whether the strategy held this trade at ``moment`` (entered, not yet exited)."""
        return self.entry_time <= moment and (self.exit_time is None or self.exit_time > moment)

    def to_redis(self) -> dict[str, str]:
        """Flat string fields for a Redis hash (exact text, never a float)."""
        return {
            "symbol": self.symbol,
            "trade_key": self.trade_key,
            "entry_time": self.entry_time.isoformat(),
            "exit_time": "" if self.exit_time is None else self.exit_time.isoformat(),
            "entry_price": format(self.entry_price, "f"),
            "quantity": format(self.quantity, "f"),
            "notional": "" if self.notional is None else format(self.notional, "f"),
            "details": _details(self.details),
        }

    @classmethod
    def from_redis(cls, fields: Mapping[str, str]) -> TradeState:
        """The inverse of :meth:`to_redis`; raises ``KeyError``/``ValueError`` on a bad hash."""
        notional = fields["notional"]
        exit_time = fields["exit_time"]
        details = json.loads(fields["details"])
        if not isinstance(details, dict):
            raise ValueError("details is not an object")
        return cls(
            symbol=fields["symbol"],
            trade_key=fields["trade_key"],
            entry_time=datetime.fromisoformat(fields["entry_time"]).astimezone(UTC),
            exit_time=datetime.fromisoformat(exit_time).astimezone(UTC) if exit_time else None,
            entry_price=Decimal(fields["entry_price"]),
            quantity=Decimal(fields["quantity"]),
            notional=Decimal(notional) if notional else None,
            details=details,
        )


def load_trade_states(
    conn: Connection, bot_id: str, as_of: datetime | None = None
) -> dict[str, TradeState]:
    """The newest trade per symbol entered by ``as_of`` (default: any time), open or not (a
    closed one may still carry a cooldown). ``as_of`` makes a replay over a database that
    already holds later trades restore what the strategy had at that moment."""
    out: dict[str, TradeState] = {}
    for row in conn.execute(_LATEST_PER_SYMBOL, {"bot_id": bot_id, "as_of": as_of}):
        out[row.symbol] = TradeState(
            symbol=row.symbol,
            trade_key=row.trade_key,
            entry_time=row.entry_time.astimezone(UTC),
            exit_time=None if row.exit_time is None else row.exit_time.astimezone(UTC),
            entry_price=row.entry_price,
            quantity=row.quantity,
            notional=row.notional_usd,
            details=dict(row.details or {}),
        )
    return out


def state_stamp(conn: Connection, bot_id: str) -> datetime | None:
    """When the bot's trade records last changed (what a Redis copy must not be older than)."""
    value = conn.execute(_STAMP, {"bot_id": bot_id}).scalar()
    return None if value is None else value.astimezone(UTC)


def day_of(moment: datetime) -> date:
    """The UTC calendar day of ``moment`` (equity snapshots are per UTC day)."""
    return moment.astimezone(UTC).date()
