"""The SQL behind LXAlgo's trade tracker: its trades in ``trading.strategy_trades`` and its
warnings in ``audit.system_events``.

Fills go through the write path, never through here. Every function takes a
:class:`~sqlalchemy.engine.Connection` inside the caller's transaction (the caller commits,
or rolls back for a dry run) and never commits itself.

How a tracker event is kept (see :mod:`alpha_models.lxalgo_import`):

- ``opened``: one ``strategy_trades`` row, ``trade_key`` = the event id, ``rule_id`` = the
  rule, ``entry_exec_id`` = the entry fill, ``details.log`` = the event's values exactly as
  the JSON log holds them (JSON text, so a float stays the float the strategy wrote);
- ``closed`` paired with open trades: their ``exit_time``/``exit_reason``/``holding_seconds``,
  ``details.close.event_id`` = the event id;
- a repeated ``closed`` (second close of a key already closed moments before): appended to
  that trade's ``details.repeat_closes``;
- a ``closed`` without an ``opened`` and a rejected event: one WARNING in
  ``audit.system_events`` with ``details.event_id``.

So every event id is findable, which makes replays and re-imports idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.engine import Connection, Row

__all__ = [
    "COMPONENT",
    "LOG_UNREADABLE",
    "RECOVERY_MISMATCH",
    "REJECTED_EVENT",
    "UNPAIRED_CLOSE",
    "TradeRow",
    "active_trades",
    "add_repeat_close",
    "close_recorded",
    "close_trades",
    "fill_exists",
    "insert_trade",
    "known_events",
    "last_closed_trade",
    "lock_key",
    "log_event",
    "open_trades",
    "open_trades_on_symbol",
    "report_once",
]

COMPONENT: Final = "lxalgo_tracker"
"""``system_events.component`` of every event written here."""
UNPAIRED_CLOSE: Final = "lxalgo_unpaired_close"
REJECTED_EVENT: Final = "lxalgo_rejected_event"
RECOVERY_MISMATCH: Final = "lxalgo_recovery_mismatch"
LOG_UNREADABLE: Final = "lxalgo_log_unreadable"

_TRADE_COLUMNS: Final = (
    "id, trade_key, symbol, rule_id, entry_time, entry_price, quantity, exit_time, "
    "exit_reason, details"
)


@dataclass(frozen=True, slots=True)
class TradeRow:
    """One LXAlgo trade as stored (times in UTC)."""

    id: int
    trade_key: str
    symbol: str
    rule_id: str | None
    entry_time: datetime
    entry_price: Decimal
    quantity: Decimal
    exit_time: datetime | None
    exit_reason: str | None
    details: Mapping[str, Any]


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def _trade(row: Row[Any]) -> TradeRow:
    entry = _utc(row.entry_time)
    assert entry is not None
    return TradeRow(
        id=int(row.id),
        trade_key=row.trade_key,
        symbol=row.symbol,
        rule_id=row.rule_id,
        entry_time=entry,
        entry_price=row.entry_price,
        quantity=row.quantity,
        exit_time=_utc(row.exit_time),
        exit_reason=row.exit_reason,
        details=row.details or {},
    )


def _json(value: Mapping[str, Any]) -> str:
    # allow_nan=False: a NaN would make invalid jsonb; callers pass text, never floats.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


# ------------------------------------------------------------------------------ trades

_INSERT_TRADE: Final = text(
    """INSERT INTO trading.strategy_trades (bot_id, trade_key, symbol, side, rule_id,
        entry_time, entry_price, quantity, notional_usd, entry_exec_id, details, source)
    VALUES (:bot_id, :trade_key, :symbol, 'Buy', :rule_id, :entry_time, :entry_price,
        :quantity, :notional_usd, :entry_exec_id, CAST(:details AS jsonb), :source)
    ON CONFLICT (bot_id, trade_key) DO NOTHING
    RETURNING id"""
)


def insert_trade(
    conn: Connection,
    *,
    bot_id: str,
    trade_key: str,
    symbol: str,
    rule_id: str,
    entry_time: datetime,
    entry_price: Decimal,
    quantity: Decimal,
    notional_usd: Decimal,
    entry_exec_id: str,
    details: Mapping[str, Any],
    source: str,
) -> bool:
    """Store an opened trade; False when ``trade_key`` is already there (nothing changed)."""
    row_id = conn.execute(
        _INSERT_TRADE,
        {
            "bot_id": bot_id,
            "trade_key": trade_key,
            "symbol": symbol,
            "rule_id": rule_id,
            "entry_time": entry_time,
            "entry_price": entry_price,
            "quantity": quantity,
            "notional_usd": notional_usd,
            "entry_exec_id": entry_exec_id,
            "details": _json(details),
            "source": source,
        },
    ).scalar()
    return row_id is not None


def lock_key(conn: Connection, bot_id: str, symbol: str, rule_id: str) -> None:
    """Serialise writers of one (symbol, rule_id) key until the transaction ends."""
    conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
        {"k": f"lxalgo|{bot_id}|{symbol}|{rule_id}"},
    )


_OPEN_TRADES: Final = text(
    f"SELECT {_TRADE_COLUMNS} FROM trading.strategy_trades "  # noqa: S608 (constant columns)
    "WHERE bot_id = :b AND symbol = :s AND rule_id = :r AND exit_time IS NULL "
    "AND entry_time <= :at AND entry_time >= :since ORDER BY entry_time, id FOR UPDATE"
)


def open_trades(
    conn: Connection, *, bot_id: str, symbol: str, rule_id: str, at: datetime, since: datetime
) -> list[TradeRow]:
    """Open trades of the key entered in [since, at], oldest first (locked)."""
    rows = conn.execute(
        _OPEN_TRADES, {"b": bot_id, "s": symbol, "r": rule_id, "at": at, "since": since}
    ).all()
    return [_trade(r) for r in rows]


_OPEN_ON_SYMBOL: Final = text(
    f"SELECT {_TRADE_COLUMNS} FROM trading.strategy_trades "  # noqa: S608 (constant columns)
    "WHERE bot_id = :b AND symbol = :s AND exit_time IS NULL AND entry_time <= :at "
    "AND entry_time >= :since ORDER BY entry_time, id"
)


def open_trades_on_symbol(
    conn: Connection, *, bot_id: str, symbol: str, at: datetime, since: datetime
) -> list[TradeRow]:
    """Open trades of any rule on ``symbol`` (context for an unpaired close)."""
    rows = conn.execute(_OPEN_ON_SYMBOL, {"b": bot_id, "s": symbol, "at": at, "since": since})
    return [_trade(r) for r in rows]


_LAST_CLOSED: Final = text(
    f"SELECT {_TRADE_COLUMNS} FROM trading.strategy_trades "  # noqa: S608 (constant columns)
    "WHERE bot_id = :b AND symbol = :s AND rule_id = :r AND exit_time IS NOT NULL "
    "AND exit_time <= :at AND exit_time >= :since "
    "ORDER BY exit_time DESC, id DESC LIMIT 1 FOR UPDATE"
)


def last_closed_trade(
    conn: Connection, *, bot_id: str, symbol: str, rule_id: str, at: datetime, since: datetime
) -> TradeRow | None:
    """The key's trade closed most recently in [since, at] (locked), if any."""
    row = conn.execute(
        _LAST_CLOSED, {"b": bot_id, "s": symbol, "r": rule_id, "at": at, "since": since}
    ).first()
    return None if row is None else _trade(row)


_CLOSE_TRADES: Final = text(
    """UPDATE trading.strategy_trades SET
        exit_time = CAST(:t AS timestamptz),
        exit_reason = :reason,
        exit_price = :price,
        exit_exec_id = :exec_id,
        holding_seconds = CAST(floor(extract(epoch FROM CAST(:t AS timestamptz) - entry_time))
                               AS integer),
        details = coalesce(details, '{}'::jsonb)
                  || jsonb_build_object('close', CAST(:close AS jsonb)),
        updated_at = now()
    WHERE id = ANY(CAST(:ids AS bigint[])) AND exit_time IS NULL"""
)


def close_trades(
    conn: Connection,
    ids: Collection[int],
    *,
    exit_time: datetime,
    exit_reason: str,
    exit_price: Decimal | None,
    exit_exec_id: str | None,
    close: Mapping[str, Any],
) -> int:
    """Mark open trades closed by one event; returns how many were updated."""
    result = conn.execute(
        _CLOSE_TRADES,
        {
            "ids": list(ids),
            "t": exit_time,
            "reason": exit_reason,
            "price": exit_price,
            "exec_id": exit_exec_id,
            "close": _json(close),
        },
    )
    return int(result.rowcount)


_ADD_REPEAT: Final = text(
    """UPDATE trading.strategy_trades SET
        details = jsonb_set(coalesce(details, '{}'::jsonb), '{repeat_closes}',
                  coalesce(details->'repeat_closes', '[]'::jsonb)
                  || jsonb_build_array(CAST(:entry AS jsonb))),
        updated_at = now()
    WHERE id = :id"""
)


def add_repeat_close(conn: Connection, trade_id: int, entry: Mapping[str, Any]) -> None:
    """Keep a repeated close (``entry`` holds its ``event_id``) on the trade it repeats."""
    conn.execute(_ADD_REPEAT, {"id": trade_id, "entry": _json(entry)})


_CLOSE_RECORDED: Final = text(
    """SELECT CASE WHEN details->'close'->>'event_id' = :e THEN 'paired' ELSE 'repeat' END
    FROM trading.strategy_trades
    WHERE bot_id = :b AND exit_time >= :since AND exit_time <= :at
      AND (details->'close'->>'event_id' = :e
           OR details->'repeat_closes' @> jsonb_build_array(jsonb_build_object('event_id', :e)))
    UNION ALL
    SELECT CASE event_type WHEN :unpaired THEN 'unpaired' ELSE 'rejected' END
    FROM audit.system_events
    WHERE bot_id = :b AND event_type IN (:unpaired, :rejected) AND details->>'event_id' = :e
    LIMIT 1"""
)


def close_recorded(
    conn: Connection, *, bot_id: str, event_id: str, at: datetime, since: datetime
) -> str | None:
    """How a close event was recorded (``paired``, ``repeat``, ``unpaired``, ``rejected``), or
    None if it was not. ``[since, at]`` bounds the exit times a repeat can be attached to."""
    kind = conn.execute(
        _CLOSE_RECORDED,
        {
            "b": bot_id,
            "e": event_id,
            "at": at,
            "since": since,
            "unpaired": UNPAIRED_CLOSE,
            "rejected": REJECTED_EVENT,
        },
    ).scalar()
    return None if kind is None else str(kind)


_KNOWN_EVENTS: Final = text(
    """SELECT trade_key AS event_id, 'opened' AS kind FROM trading.strategy_trades
        WHERE bot_id = :b AND trade_key = ANY(CAST(:ids AS varchar[]))
    UNION ALL
    SELECT details->'close'->>'event_id', 'paired' FROM trading.strategy_trades
        WHERE bot_id = :b AND details->'close'->>'event_id' = ANY(CAST(:ids AS varchar[]))
    UNION ALL
    SELECT r->>'event_id', 'repeat' FROM trading.strategy_trades t,
        jsonb_array_elements(coalesce(t.details->'repeat_closes', '[]'::jsonb)) r
        WHERE t.bot_id = :b AND r->>'event_id' = ANY(CAST(:ids AS varchar[]))
    UNION ALL
    SELECT details->>'event_id',
           CASE event_type WHEN :unpaired THEN 'unpaired' ELSE 'rejected' END
        FROM audit.system_events
        WHERE bot_id = :b AND event_type IN (:unpaired, :rejected)
          AND details->>'event_id' = ANY(CAST(:ids AS varchar[]))"""
)


def known_events(conn: Connection, bot_id: str, event_ids: Collection[str]) -> dict[str, str]:
    """Which of ``event_ids`` are already recorded, and how (``opened``, ``paired``,
    ``repeat``, ``unpaired``, ``rejected``)."""
    if not event_ids:
        return {}
    rows = conn.execute(
        _KNOWN_EVENTS,
        {
            "b": bot_id,
            "ids": list(event_ids),
            "unpaired": UNPAIRED_CLOSE,
            "rejected": REJECTED_EVENT,
        },
    ).all()
    return {str(r.event_id): str(r.kind) for r in rows}


_ACTIVE: Final = text(
    f"SELECT {_TRADE_COLUMNS} FROM trading.strategy_trades "  # noqa: S608 (constant columns)
    "WHERE bot_id = :b AND exit_time IS NULL AND entry_time >= :since "
    "ORDER BY entry_time, id"
)


def active_trades(conn: Connection, bot_id: str, since: datetime) -> list[TradeRow]:
    """Open trades entered at or after ``since``, oldest first."""
    return [_trade(r) for r in conn.execute(_ACTIVE, {"b": bot_id, "since": since})]


def fill_exists(conn: Connection, exec_id: str) -> bool:
    """True if a fill with ``exec_id`` is stored (dry runs predict the write path with it)."""
    found = conn.execute(
        text("SELECT 1 FROM trading.fills WHERE exec_id = :e"), {"e": exec_id}
    ).first()
    return found is not None


# ------------------------------------------------------------------------------ audit

_LOG_EVENT: Final = text(
    """INSERT INTO audit.system_events (event_type, event_level, bot_id, component, message,
        details, symbol)
    VALUES (:type, :level, :bot, :component, :message, CAST(:details AS jsonb), :symbol)
    RETURNING id"""
)

_REPORT_ONCE: Final = text(
    """INSERT INTO audit.system_events (event_type, event_level, bot_id, component, message,
        details, symbol)
    SELECT :type, :level, :bot, :component, :message, CAST(:details AS jsonb), :symbol
    WHERE NOT EXISTS (SELECT 1 FROM audit.system_events
                      WHERE bot_id = :bot AND event_type = :type
                        AND details->>'event_id' = :event_id)
    RETURNING id"""
)


def log_event(
    conn: Connection,
    *,
    event_type: str,
    bot_id: str,
    message: str,
    details: Mapping[str, Any],
    level: str = "WARNING",
    symbol: str | None = None,
) -> int:
    """Append one system event; returns its id."""
    row_id = conn.execute(
        _LOG_EVENT,
        {
            "type": event_type,
            "level": level,
            "bot": bot_id,
            "component": COMPONENT,
            "message": message,
            "details": _json(details),
            "symbol": symbol,
        },
    ).scalar_one()
    return int(row_id)


def report_once(
    conn: Connection,
    *,
    event_type: str,
    bot_id: str,
    event_id: str,
    message: str,
    details: Mapping[str, Any],
    symbol: str | None = None,
) -> bool:
    """A WARNING about one tracker event, written once per ``event_id``; True if new."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"lxalgo|{event_id}"})
    row_id = conn.execute(
        _REPORT_ONCE,
        {
            "type": event_type,
            "level": "WARNING",
            "bot": bot_id,
            "component": COMPONENT,
            "message": message,
            "details": _json({**details, "event_id": event_id}),
            "symbol": symbol,
            "event_id": event_id,
        },
    ).scalar()
    return row_id is not None
