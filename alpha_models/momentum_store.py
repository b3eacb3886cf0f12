"""Momentum's records in the shared schema: validated record types and the SQL that stores
and reads them (``trading.strategy_trades``, ``trading.equity_snapshots``,
``audit.system_events``, ``audit.risk_events``).

Used by :mod:`adapters.momentum` (the drop-in ``TradeDatabase``) and by
:mod:`alpha_models.momentum_import` (the legacy SQLite import); nothing here knows about
either. Fills are not written here: a trade's entry and exit become fills through the
write path (:meth:`alpha_models.writepath.WritePath.record_fill`), built by
:func:`entry_fill` and :func:`exit_fill` with the deterministic ids of :func:`trade_exec_id`.

Values
------
* Money, prices, quantities and fractions are ``Decimal`` quantized to 8 dp
  (``numeric(20,8)``). A float is converted through its shortest ``repr`` (``0.1`` stays
  0.1); when the exact value has more than 8 decimals its text is kept in
  ``strategy_trades.details -> 'exact'`` (so no digit of a trade is ever lost).
* Times are aware UTC. Modes are ``demo`` or ``live``; sides ``Buy`` or ``Sell``; event
  levels ``DEBUG``/``INFO``/``WARNING``/``ERROR``/``CRITICAL`` (the ``audit`` CHECK).
* Every rejection is a :class:`~alpha_models.errors.ValidationError` raised before any
  database is touched.

Statements run in short transactions on the engine (``engine.begin()``), except the two of
the adapter's hot path (a trade's entry and exit row), which run on one held driver
connection in autocommit mode: one round trip each, commit included, optionally with
``synchronous_commit = off`` when the caller's next step is the trade's synchronous fill
(see :meth:`MomentumStore.open_trade`). Driver errors leave as the package's typed errors
(:func:`alpha_models.db.translate_error`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import operator
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Final, Literal, TypeAlias

import psycopg2
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import String

from alpha_models.db import translate_error
from alpha_models.errors import ConfigurationError, SchemaBehindError, ValidationError
from alpha_models.inputs import (
    EXEC_ID_MAX,
    FillInput,
    to_decimal8,
    to_utc,
    validate_bot_id,
    validate_symbol,
)
from alpha_models.order_link import canonical_reason
from alpha_models.schema_version import HEAD_REVISION
from alpha_models.settings import Settings

__all__ = [
    "COMPONENT",
    "EVENT_LEVELS",
    "IMPORT_EVENT",
    "MODES",
    "SOURCE_ADAPTER",
    "SOURCE_IMPORT",
    "CloseResult",
    "EventRecord",
    "MissingLeg",
    "MomentumStore",
    "RiskRecord",
    "SnapshotRecord",
    "TradeClose",
    "TradeOpen",
    "TradeStats",
    "entry_fill",
    "exit_fill",
    "number",
    "trade_exec_id",
]

MODES: Final = ("demo", "live")
EVENT_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SOURCE_ADAPTER: Final = "adapter"
SOURCE_IMPORT: Final = "import"
COMPONENT: Final = "momentum"
"""``audit.system_events.component`` of Momentum's own events (live and imported)."""
IMPORT_COMPONENT: Final = "alpha_import"
IMPORT_EVENT: Final = "LEGACY_IMPORT"
"""``event_type`` of the marker event an import writes (component ``alpha_import``)."""

_TRADE_KEY_MAX: Final = 100
_EXIT_REASON_MAX: Final = 50
_EVENT_TYPE_MAX: Final = 50
_RISK_TYPE_MAX: Final = 50
_ACTION_MAX: Final = 100
_INT4_MAX: Final = 2**31 - 1
_CTX: Final = Context(prec=50, rounding=ROUND_HALF_UP)
_HOUR: Final = 3600.0

_Sign: TypeAlias = Literal["positive", "nonnegative", "any"]
Leg: TypeAlias = Literal["entry", "exit"]

# ------------------------------------------------------------------------------ values


def number(field: str, value: Any, sign: _Sign = "any") -> tuple[Decimal, str | None]:
    """``value`` as an 8-dp ``Decimal`` plus, when digits were lost, the exact text.

    Accepts what the strategy passes: ``float`` (also ``numpy.float64``), ``int`` (also
    numpy integers), ``Decimal`` and plain decimal strings (``'1.5'``). ``bool``, NaN and
    infinities are rejected.
    """
    if isinstance(value, bool):
        raise ValidationError(field, value, "expected a number, not a bool")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(field, value, "not finite")
        exact = Decimal(repr(float(value)))  # numpy.float64's repr is not a number
    elif isinstance(value, int):
        exact = Decimal(int(value))
    elif isinstance(value, str):
        to_decimal8(field, value, "any")  # the text must be a plain decimal number
        exact = Decimal(value)
    elif isinstance(value, Decimal):
        exact = value
    elif hasattr(value, "__index__"):  # numpy integers
        exact = Decimal(operator.index(value))
    elif type(value).__module__ == "numpy" and hasattr(value, "__float__"):
        return number(field, float(value), sign)
    else:
        raise ValidationError(field, value, f"expected a number, got {type(value).__name__}")
    q = to_decimal8(field, exact, sign)
    return q, (None if q == exact else _exact_text(exact))


def _exact_text(d: Decimal) -> str:
    return format(d, "f") if -30 < d.adjusted() < 30 else str(d)


def optional_number(
    field: str, value: Any, sign: _Sign = "any"
) -> tuple[Decimal | None, str | None]:
    if value is None:
        return None, None
    return number(field, value, sign)


def text_value(field: str, value: Any, max_len: int, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, value, f"expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise ValidationError(field, value, f"longer than {max_len} characters")
    if not value and not allow_empty:
        raise ValidationError(field, value, "must not be empty")
    if value and not value.isprintable():
        raise ValidationError(field, value, "contains control or non-printable characters")
    return str.__str__(value)


def trade_key(value: Any) -> str:
    """The strategy's ``trade_id`` (a str, or an int stored as its text like SQLite did)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None:
        raise ValidationError("trade_id", value, "required (a trade without an id can never exit)")
    return text_value("trade_id", value, _TRADE_KEY_MAX, allow_empty=False)


def mode_value(value: Any, field: str = "mode") -> str:
    if not isinstance(value, str) or value not in MODES:
        raise ValidationError(field, value, "must be 'demo' or 'live'")
    return str.__str__(value)


def side_value(value: Any) -> str:
    if not isinstance(value, str) or value not in ("Buy", "Sell"):
        raise ValidationError("side", value, "must be exactly 'Buy' or 'Sell'")
    return str.__str__(value)


def count_value(field: str, value: Any) -> int:
    if isinstance(value, bool) or (not isinstance(value, int) and not hasattr(value, "__index__")):
        raise ValidationError(field, value, "expected an integer")
    n = operator.index(value)
    if not 0 <= n <= _INT4_MAX:
        raise ValidationError(field, value, "must be between 0 and 2147483647")
    return n


def holding_value(value: Any) -> tuple[int | None, str | None]:
    """Seconds held: an int; a float is rounded half up and its exact text kept."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        raise ValidationError("holding_time_seconds", value, "expected a number, not a bool")
    if isinstance(value, int) or (hasattr(value, "__index__") and not isinstance(value, float)):
        n, exact = operator.index(value), None
    else:
        q, exact_text = number("holding_time_seconds", value, "nonnegative")
        source = q if exact_text is None else Decimal(exact_text)
        n = int(source.to_integral_value(ROUND_HALF_UP))
        exact = None if source == n else _exact_text(source)
    if not 0 <= n <= _INT4_MAX:
        raise ValidationError("holding_time_seconds", value, "must be between 0 and 2147483647")
    return n, exact


def aware(field: str, value: datetime) -> datetime:
    """An aware UTC time inside the write path's range (2015..2100)."""
    return to_utc(field, value)


def trade_exec_id(bot_id: str, key: str, leg: Leg) -> str:
    """The ``fills.exec_id`` of a trade's entry or exit: ``<bot>:<trade_id>:<leg>``.

    Deterministic, so a retry, a spool replay, the start-up repair and a re-import all
    find the fill instead of adding it twice. An id that would exceed 64 characters (or is
    not printable) is replaced by a digest: ``<bot[:20]>:#<sha256[:32]>:<leg>``.
    """
    raw = f"{bot_id}:{key}:{leg}"
    if len(raw) <= EXEC_ID_MAX and raw.isprintable():
        return raw
    digest = hashlib.sha256(f"{bot_id}\x1f{key}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"{bot_id[:20]}:#{digest[:32]}:{leg}"


def _order_id(exec_id: str) -> str:
    return f"synthetic:{exec_id}"


def _jsonable_time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time_of(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _dec_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _dec_of(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


# ------------------------------------------------------------------------------ records


@dataclass(frozen=True, slots=True)
class TradeOpen:
    """A trade entry (``log_trade_entry``), validated. Build it with :meth:`build`."""

    bot_id: str
    trade_key: str
    mode: str
    symbol: str
    side: str
    entry_time: datetime
    entry_price: Decimal
    quantity: Decimal
    notional_usd: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    signal_strength: Decimal | None
    client_order_id: str = ""
    exact: Mapping[str, str] = field(default_factory=dict)
    source: str = SOURCE_ADAPTER
    created_at: datetime | None = None
    legacy_id: int | None = None

    @classmethod
    def build(
        cls,
        *,
        bot_id: str,
        trade_id: Any,
        mode: Any,
        symbol: Any,
        side: Any,
        entry_price: Any,
        quantity: Any,
        position_size_usd: Any,
        stop_loss: Any = None,
        take_profit: Any = None,
        signal_strength: Any = None,
        entry_time: datetime,
        client_order_id: str = "",
        source: str = SOURCE_ADAPTER,
        created_at: datetime | None = None,
        legacy_id: int | None = None,
    ) -> TradeOpen:
        exact: dict[str, str] = {}

        def keep(name: str, pair: tuple[Decimal | None, str | None]) -> Decimal | None:
            if pair[1] is not None:
                exact[name] = pair[1]
            return pair[0]

        trade = cls(
            bot_id=bot_id,
            trade_key=trade_key(trade_id),
            mode=mode_value(mode),
            symbol=validate_symbol(symbol),
            side=side_value(side),
            entry_time=aware("entry_time", entry_time),
            entry_price=_required(
                keep("entry_price", number("entry_price", entry_price, "positive"))
            ),
            quantity=_required(keep("quantity", number("quantity", quantity, "positive"))),
            notional_usd=_required(
                keep(
                    "position_size_usd",
                    number("position_size_usd", position_size_usd, "nonnegative"),
                )
            ),
            stop_loss=keep("stop_loss", optional_number("stop_loss", stop_loss, "nonnegative")),
            take_profit=keep(
                "take_profit", optional_number("take_profit", take_profit, "nonnegative")
            ),
            signal_strength=keep(
                "signal_strength", optional_number("signal_strength", signal_strength)
            ),
            client_order_id=text_value("client_order_id", client_order_id, 100),
            exact=exact,
            source=source,
            created_at=created_at,
            legacy_id=legacy_id,
        )
        entry_fill(trade)  # the fill must be possible too (nothing written otherwise)
        return trade

    @property
    def entry_exec_id(self) -> str:
        return trade_exec_id(self.bot_id, self.trade_key, "entry")

    def details(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if self.exact:
            out["exact"] = dict(self.exact)
        if self.client_order_id:
            out["entry_client_order_id"] = self.client_order_id
        if self.legacy_id is not None:
            out["legacy_id"] = self.legacy_id
        return out or None

    def to_record(self) -> dict[str, Any]:
        return {
            "bot_id": self.bot_id,
            "trade_key": self.trade_key,
            "mode": self.mode,
            "symbol": self.symbol,
            "side": self.side,
            "entry_time": _jsonable_time(self.entry_time),
            "entry_price": _dec_text(self.entry_price),
            "quantity": _dec_text(self.quantity),
            "notional_usd": _dec_text(self.notional_usd),
            "stop_loss": _dec_text(self.stop_loss),
            "take_profit": _dec_text(self.take_profit),
            "signal_strength": _dec_text(self.signal_strength),
            "client_order_id": self.client_order_id,
            "exact": dict(self.exact),
            "source": self.source,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> TradeOpen:
        return cls(
            bot_id=r["bot_id"],
            trade_key=r["trade_key"],
            mode=r["mode"],
            symbol=r["symbol"],
            side=r["side"],
            entry_time=_required(_time_of(r["entry_time"])),
            entry_price=_required(_dec_of(r["entry_price"])),
            quantity=_required(_dec_of(r["quantity"])),
            notional_usd=_required(_dec_of(r["notional_usd"])),
            stop_loss=_dec_of(r["stop_loss"]),
            take_profit=_dec_of(r["take_profit"]),
            signal_strength=_dec_of(r["signal_strength"]),
            client_order_id=r["client_order_id"],
            exact=dict(r["exact"]),
            source=r["source"],
        )


@dataclass(frozen=True, slots=True)
class TradeClose:
    """A trade exit (``log_trade_exit``), validated. ``exit_price`` is None only for an
    imported legacy exit without a price (stored, but no exit fill can be booked)."""

    bot_id: str
    trade_key: str
    exit_time: datetime
    exit_price: Decimal | None
    exit_reason: str | None
    pnl_usd: Decimal | None
    pnl_pct: Decimal | None
    holding_seconds: int | None
    client_order_id: str = ""
    exact: Mapping[str, str] = field(default_factory=dict)
    source: str = SOURCE_ADAPTER

    @classmethod
    def build(
        cls,
        *,
        bot_id: str,
        trade_id: Any,
        exit_price: Any,
        pnl_usd: Any,
        pnl_pct: Any,
        exit_reason: Any,
        holding_time_seconds: Any,
        exit_time: datetime,
        client_order_id: str = "",
        source: str = SOURCE_ADAPTER,
        require_price: bool = True,
    ) -> TradeClose:
        exact: dict[str, str] = {}

        def keep(name: str, pair: tuple[Any, str | None]) -> Any:
            if pair[1] is not None:
                exact[name] = pair[1]
            return pair[0]

        if exit_price is None and require_price:
            raise ValidationError("exit_price", exit_price, "required (the exit is a fill)")
        return cls(
            bot_id=bot_id,
            trade_key=trade_key(trade_id),
            exit_time=aware("exit_time", exit_time),
            exit_price=keep("exit_price", optional_number("exit_price", exit_price, "positive")),
            exit_reason=None
            if exit_reason is None
            else text_value("exit_reason", exit_reason, _EXIT_REASON_MAX),
            pnl_usd=keep("pnl_usd", optional_number("pnl_usd", pnl_usd)),
            pnl_pct=keep("pnl_pct", optional_number("pnl_pct", pnl_pct)),
            holding_seconds=keep("holding_time_seconds", holding_value(holding_time_seconds)),
            client_order_id=text_value("client_order_id", client_order_id, 100),
            exact=exact,
            source=source,
        )

    @property
    def exit_exec_id(self) -> str | None:
        if self.exit_price is None:
            return None
        return trade_exec_id(self.bot_id, self.trade_key, "exit")

    def to_record(self) -> dict[str, Any]:
        return {
            "bot_id": self.bot_id,
            "trade_key": self.trade_key,
            "exit_time": _jsonable_time(self.exit_time),
            "exit_price": _dec_text(self.exit_price),
            "exit_reason": self.exit_reason,
            "pnl_usd": _dec_text(self.pnl_usd),
            "pnl_pct": _dec_text(self.pnl_pct),
            "holding_seconds": self.holding_seconds,
            "client_order_id": self.client_order_id,
            "exact": dict(self.exact),
            "source": self.source,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> TradeClose:
        return cls(
            bot_id=r["bot_id"],
            trade_key=r["trade_key"],
            exit_time=_required(_time_of(r["exit_time"])),
            exit_price=_dec_of(r["exit_price"]),
            exit_reason=r["exit_reason"],
            pnl_usd=_dec_of(r["pnl_usd"]),
            pnl_pct=_dec_of(r["pnl_pct"]),
            holding_seconds=r["holding_seconds"],
            client_order_id=r["client_order_id"],
            exact=dict(r["exact"]),
            source=r["source"],
        )


def _required(value: Any) -> Any:
    if value is None:  # pragma: no cover - guarded by the validators
        raise AssertionError("required value missing")
    return value


def _finite_json(value: Any) -> Any:
    """``value`` with non-finite floats replaced by their ``json.dumps`` tokens as strings
    (jsonb has no NaN/Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(v) for v in value]
    return value


def details_json(value: Any, field: str = "details") -> str | None:
    """``log_event``'s ``details`` as JSON text for jsonb: falsy -> None (like the
    original); numpy scalars become plain numbers; NaN/Infinity become strings."""
    if not value:
        return None
    try:
        text_ = json.dumps(_finite_json(value), default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, value, f"not JSON-serializable: {exc}") from None
    if "\\u0000" in text_:
        raise ValidationError(field, value, "contains NUL characters (jsonb cannot store them)")
    return text_


def _json_default(value: Any) -> Any:
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return _finite_json(value.item())
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A system event (``log_event``)."""

    bot_id: str
    event_time: datetime
    event_type: str
    level: str
    message: str
    details: str | None  # JSON text
    component: str = COMPONENT
    trade_id: str | None = None
    symbol: str | None = None
    created_at: datetime | None = None

    @classmethod
    def build(
        cls,
        *,
        bot_id: str,
        event_type: Any,
        level: Any,
        message: Any,
        details: Any,
        event_time: datetime,
        trade_id: str | None = None,
        symbol: str | None = None,
        details_is_json: bool = False,
        created_at: datetime | None = None,
        component: str = COMPONENT,
    ) -> EventRecord:
        if not isinstance(level, str) or level not in EVENT_LEVELS:
            raise ValidationError("level", level, f"must be one of {', '.join(EVENT_LEVELS)}")
        if not isinstance(message, str):
            raise ValidationError(
                "message", message, f"expected a string, got {type(message).__name__}"
            )
        return cls(
            bot_id=bot_id,
            event_time=aware("event_time", event_time),
            event_type=text_value("event_type", event_type, _EVENT_TYPE_MAX),
            level=str.__str__(level),
            message=message.replace("\x00", "\\x00"),  # PostgreSQL text cannot hold NUL
            details=details if details_is_json else details_json(details),
            component=component,
            trade_id=trade_id,
            symbol=symbol,
            created_at=created_at,
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "bot_id": self.bot_id,
            "event_time": _jsonable_time(self.event_time),
            "event_type": self.event_type,
            "level": self.level,
            "message": self.message,
            "details": self.details,
            "component": self.component,
            "trade_id": self.trade_id,
            "symbol": self.symbol,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> EventRecord:
        return cls(
            bot_id=r["bot_id"],
            event_time=_required(_time_of(r["event_time"])),
            event_type=r["event_type"],
            level=r["level"],
            message=r["message"],
            details=r["details"],
            component=r["component"],
            trade_id=r["trade_id"],
            symbol=r["symbol"],
        )

    def params(self) -> dict[str, Any]:
        return {
            "b": self.bot_id,
            "t": self.event_time,
            "type": self.event_type,
            "level": self.level,
            "msg": self.message,
            "details": self.details,
            "component": self.component,
            "trade_id": self.trade_id,
            "symbol": self.symbol,
            "created": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class RiskRecord:
    """A risk event (``log_risk_event``): ``current_value`` is a (negative) loss fraction,
    ``limit_value`` the positive limit."""

    bot_id: str
    event_time: datetime
    risk_type: str
    current_value: Decimal
    limit_value: Decimal
    action_taken: str
    created_at: datetime | None = None

    @classmethod
    def build(
        cls,
        *,
        bot_id: str,
        risk_type: Any,
        current_value: Any,
        limit_value: Any,
        action_taken: Any,
        event_time: datetime,
        created_at: datetime | None = None,
    ) -> RiskRecord:
        return cls(
            bot_id=bot_id,
            event_time=aware("event_time", event_time),
            risk_type=text_value("risk_type", risk_type, _RISK_TYPE_MAX),
            current_value=number("current_value", current_value)[0],
            limit_value=number("limit_value", limit_value)[0],
            action_taken=text_value("action_taken", action_taken, _ACTION_MAX),
            created_at=created_at,
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "bot_id": self.bot_id,
            "event_time": _jsonable_time(self.event_time),
            "risk_type": self.risk_type,
            "current_value": _dec_text(self.current_value),
            "limit_value": _dec_text(self.limit_value),
            "action_taken": self.action_taken,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> RiskRecord:
        return cls(
            bot_id=r["bot_id"],
            event_time=_required(_time_of(r["event_time"])),
            risk_type=r["risk_type"],
            current_value=_required(_dec_of(r["current_value"])),
            limit_value=_required(_dec_of(r["limit_value"])),
            action_taken=r["action_taken"],
        )

    def params(self) -> dict[str, Any]:
        return {
            "b": self.bot_id,
            "t": self.event_time,
            "type": self.risk_type,
            "cur": self.current_value,
            "lim": self.limit_value,
            "action": self.action_taken,
            "created": self.created_at,
        }


def date_value(value: Any) -> date:
    """A snapshot date: ``datetime.date`` or ISO text (``2025-10-01``; ``20251001`` too)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and len(value) <= 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError("date", value, "expected a date or 'YYYY-MM-DD'")


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A daily snapshot (``save_daily_snapshot``), keyed by (bot, date, mode)."""

    bot_id: str
    snapshot_date: date
    mode: str
    starting_equity: Decimal
    ending_equity: Decimal
    daily_pnl: Decimal
    daily_pnl_pct: Decimal
    trades_count: int
    wins_count: int
    losses_count: int
    open_positions: int
    source: str = SOURCE_ADAPTER
    created_at: datetime | None = None

    @classmethod
    def build(
        cls,
        *,
        bot_id: str,
        date: Any,
        mode: Any,
        starting_equity: Any,
        ending_equity: Any,
        daily_pnl: Any,
        daily_pnl_pct: Any,
        trades_count: Any,
        wins_count: Any,
        losses_count: Any,
        open_positions: Any,
        source: str = SOURCE_ADAPTER,
        created_at: datetime | None = None,
    ) -> SnapshotRecord:
        return cls(
            bot_id=bot_id,
            snapshot_date=date_value(date),
            mode=mode_value(mode),
            starting_equity=number("starting_equity", starting_equity)[0],
            ending_equity=number("ending_equity", ending_equity)[0],
            daily_pnl=number("daily_pnl", daily_pnl)[0],
            daily_pnl_pct=number("daily_pnl_pct", daily_pnl_pct)[0],
            trades_count=count_value("trades_count", trades_count),
            wins_count=count_value("wins_count", wins_count),
            losses_count=count_value("losses_count", losses_count),
            open_positions=count_value("open_positions", open_positions),
            source=source,
            created_at=created_at,
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "bot_id": self.bot_id,
            "snapshot_date": self.snapshot_date.isoformat(),
            "mode": self.mode,
            "starting_equity": _dec_text(self.starting_equity),
            "ending_equity": _dec_text(self.ending_equity),
            "daily_pnl": _dec_text(self.daily_pnl),
            "daily_pnl_pct": _dec_text(self.daily_pnl_pct),
            "trades_count": self.trades_count,
            "wins_count": self.wins_count,
            "losses_count": self.losses_count,
            "open_positions": self.open_positions,
            "source": self.source,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> SnapshotRecord:
        return cls(
            bot_id=r["bot_id"],
            snapshot_date=date.fromisoformat(r["snapshot_date"]),
            mode=r["mode"],
            starting_equity=Decimal(r["starting_equity"]),
            ending_equity=Decimal(r["ending_equity"]),
            daily_pnl=Decimal(r["daily_pnl"]),
            daily_pnl_pct=Decimal(r["daily_pnl_pct"]),
            trades_count=r["trades_count"],
            wins_count=r["wins_count"],
            losses_count=r["losses_count"],
            open_positions=r["open_positions"],
            source=r["source"],
        )

    def params(self) -> dict[str, Any]:
        return {
            "b": self.bot_id,
            "d": self.snapshot_date,
            "mode": self.mode,
            "se": self.starting_equity,
            "ee": self.ending_equity,
            "pnl": self.daily_pnl,
            "pct": self.daily_pnl_pct,
            "tc": self.trades_count,
            "wc": self.wins_count,
            "lc": self.losses_count,
            "op": self.open_positions,
            "source": self.source,
            "created": self.created_at,
        }


# ------------------------------------------------------------------------------ fills


def _leg_fill(
    *,
    bot_id: str,
    trade_key: str,
    leg: Leg,
    symbol: str,
    side: str,
    price: Decimal,
    qty: Decimal,
    when: datetime,
    client_order_id: str,
    close_reason: str | None,
    source: str,
) -> FillInput:
    exec_id = trade_exec_id(bot_id, trade_key, leg)
    return FillInput(
        exec_id=exec_id,
        bot_id=bot_id,
        symbol=symbol,
        side=side,
        exec_price=price,
        exec_qty=qty,
        exec_time=when,
        order_id=_order_id(exec_id),
        client_order_id=client_order_id,
        commission=Decimal(0),  # the strategy knows no fees (its P&L has none either)
        close_reason=close_reason,
        source=source,
        known_bots=(bot_id,),  # registration is the write path's check
    )


def _opposite(side: str) -> str:
    return "Sell" if side == "Buy" else "Buy"


def entry_fill(trade: TradeOpen) -> FillInput:
    """The entry as a fill: the trade's side, price, quantity and time, commission 0,
    close_reason ``entry``, order id ``synthetic:<exec_id>``."""
    return _leg_fill(
        bot_id=trade.bot_id,
        trade_key=trade.trade_key,
        leg="entry",
        symbol=trade.symbol,
        side=trade.side,
        price=trade.entry_price,
        qty=trade.quantity,
        when=trade.entry_time,
        client_order_id=trade.client_order_id,
        close_reason="entry",
        source=trade.source,
    )


def exit_fill(
    *, symbol: str, entry_side: str, quantity: Decimal, close: TradeClose
) -> FillInput | None:
    """The exit as one fill closing the whole trade (opposite side, the entry's quantity,
    close_reason = the canonical form of the exit reason); None when the exit has no price
    (an imported legacy row)."""
    if close.exit_price is None:
        return None
    return _leg_fill(
        bot_id=close.bot_id,
        trade_key=close.trade_key,
        leg="exit",
        symbol=symbol,
        side=_opposite(entry_side),
        price=close.exit_price,
        qty=quantity,
        when=close.exit_time,
        client_order_id=close.client_order_id,
        close_reason=canonical_reason(close.exit_reason) if close.exit_reason else None,
        source=close.source,
    )


# ------------------------------------------------------------------------------ stats


@dataclass(slots=True)
class TradeStats:
    """Sums and counts over closed trades; :meth:`as_dict` gives ``get_performance_stats``'s
    11 keys with the original's types (``x or 0`` semantics, floats, no Decimal/None)."""

    n: int = 0
    wins: int = 0
    losses: int = 0
    pnl_sum: Decimal | None = None
    pct_sum: Decimal | None = None
    pct_n: int = 0
    win_pct_sum: Decimal | None = None
    win_pct_n: int = 0
    loss_pct_sum: Decimal | None = None
    loss_pct_n: int = 0
    best: Decimal | None = None
    worst: Decimal | None = None
    hold_sum: int | None = None
    hold_n: int = 0

    def add(self, pnl_usd: Decimal | None, pnl_pct: Decimal | None, holding: int | None) -> None:
        """Count one more closed trade (a deferred exit not yet in the database)."""
        self.n += 1
        if pnl_usd is not None:
            self.pnl_sum = (self.pnl_sum or Decimal(0)) + pnl_usd
            self.best = pnl_usd if self.best is None else max(self.best, pnl_usd)
            self.worst = pnl_usd if self.worst is None else min(self.worst, pnl_usd)
        win = pnl_usd is not None and pnl_usd > 0
        loss = pnl_usd is not None and pnl_usd < 0
        self.wins += win
        self.losses += loss
        if pnl_pct is not None:
            self.pct_sum = (self.pct_sum or Decimal(0)) + pnl_pct
            self.pct_n += 1
            if win:
                self.win_pct_sum = (self.win_pct_sum or Decimal(0)) + pnl_pct
                self.win_pct_n += 1
            if loss:
                self.loss_pct_sum = (self.loss_pct_sum or Decimal(0)) + pnl_pct
                self.loss_pct_n += 1
        if holding is not None:
            self.hold_sum = (self.hold_sum or 0) + holding
            self.hold_n += 1

    def as_dict(self) -> dict[str, int | float]:
        def num(value: Decimal | None) -> int | float:
            # The original's ``x or 0``: NULL and an exact 0.0 both become the int 0.
            return float(value) if value else 0

        def avg(total: Decimal | None, n: int) -> int | float:
            return num(_CTX.divide(total, n)) if total is not None and n else 0

        hold_avg = (
            float(_CTX.divide(Decimal(self.hold_sum), self.hold_n))
            if self.hold_sum is not None and self.hold_n
            else 0.0
        )
        return {
            "total_trades": self.n,
            "wins": self.wins,
            "losses": self.losses,
            "win_rate": self.wins / self.n if self.n > 0 else 0,
            "total_pnl": num(self.pnl_sum),
            "avg_pnl_pct": avg(self.pct_sum, self.pct_n),
            "avg_win_pct": avg(self.win_pct_sum, self.win_pct_n),
            "avg_loss_pct": avg(self.loss_pct_sum, self.loss_pct_n),
            "best_trade": num(self.best),
            "worst_trade": num(self.worst),
            "avg_holding_hours": (hold_avg or 0) / _HOUR,
        }


# ------------------------------------------------------------------------------ SQL

_TRADE_COLUMNS: Final = (
    "id, trade_key, mode, symbol, side, entry_time, entry_price, exit_time, exit_price, "
    "quantity, notional_usd, stop_loss, take_profit, pnl_usd, pnl_pct, exit_reason, "
    "holding_seconds, signal_strength, created_at, details"
)

# The two statements of the hot path run on one held driver connection in autocommit mode
# (pyformat parameters): one round trip each, SET LOCALs included, commit included. Both
# are idempotent, so a retry or a spool replay of a call that did land finds it:
#
# * the entry returns (id, inserted); a conflicting row that is this very entry (same time
#   and exec id) comes back with inserted = false, another trade with the id gives no row;
# * the exit returns (id, symbol, side, quantity, mode, updated, exit_time, exit_exec_id);
#   no row = unknown trade, updated = false = already closed (by this exit if the stored
#   exit_time and exit_exec_id are this exit's).
_OPEN_TRADE_SQL: Final = """
WITH ins AS (
    INSERT INTO trading.strategy_trades (bot_id, trade_key, mode, symbol, side, entry_time,
        entry_price, quantity, notional_usd, stop_loss, take_profit, signal_strength,
        entry_exec_id, details, source)
    VALUES (%(b)s, %(k)s, %(mode)s, %(symbol)s, %(side)s, %(entry_time)s, %(entry_price)s,
        %(quantity)s, %(notional)s, %(stop_loss)s, %(take_profit)s, %(signal)s,
        %(entry_exec_id)s, CAST(%(details)s AS jsonb), %(source)s)
    ON CONFLICT (bot_id, trade_key) DO NOTHING
    RETURNING id)
SELECT id, true FROM ins
UNION ALL
SELECT id, false FROM trading.strategy_trades
 WHERE bot_id = %(b)s AND trade_key = %(k)s AND entry_time = %(entry_time)s
   AND entry_exec_id = %(entry_exec_id)s AND NOT EXISTS (SELECT 1 FROM ins)"""

_CLOSE_TRADE_SQL: Final = """
WITH upd AS (
    UPDATE trading.strategy_trades t SET
        exit_time = %(exit_time)s, exit_price = %(exit_price)s, exit_reason = %(exit_reason)s,
        pnl_usd = %(pnl_usd)s, pnl_pct = %(pnl_pct)s, holding_seconds = %(holding)s,
        exit_exec_id = %(exit_exec_id)s,
        details = CASE WHEN CAST(%(extra)s AS jsonb) = '{}'::jsonb THEN t.details
                       ELSE coalesce(t.details, '{}'::jsonb) || jsonb_build_object('exact',
                            coalesce(t.details -> 'exact', '{}'::jsonb)
                            || coalesce(CAST(%(extra)s AS jsonb) -> 'exact', '{}'::jsonb))
                            || (CAST(%(extra)s AS jsonb) - 'exact') END,
        updated_at = now()
    WHERE t.bot_id = %(b)s AND t.trade_key = %(k)s AND t.exit_time IS NULL
    RETURNING t.id, t.symbol, t.side, t.quantity, t.mode)
SELECT id, symbol, side, quantity, mode, true, NULL::timestamptz, NULL::varchar FROM upd
UNION ALL
SELECT id, symbol, side, quantity, mode, false, exit_time, exit_exec_id
  FROM trading.strategy_trades
 WHERE bot_id = %(b)s AND trade_key = %(k)s AND NOT EXISTS (SELECT 1 FROM upd)"""

# ``flush=False``: committed without waiting for the WAL flush (one fsync less); the
# caller's next commit, the trade's synchronous fill, flushes the WAL up to and past it.
_ASYNC_COMMIT: Final = "SET LOCAL synchronous_commit = off; "

_MODE_FILTER: Final = "(CAST(:mode AS varchar) IS NULL OR mode = CAST(:mode AS varchar))"

_OPEN_TRADES: Final = text(
    f"SELECT {_TRADE_COLUMNS} FROM trading.strategy_trades "  # noqa: S608 (constants)
    f"WHERE bot_id = :b AND exit_time IS NULL AND {_MODE_FILTER} "
    "ORDER BY entry_time DESC, id DESC"
)

_RECENT_TRADES: Final = text(
    f"SELECT {_TRADE_COLUMNS} FROM trading.strategy_trades "  # noqa: S608 (constants)
    f"WHERE bot_id = :b AND exit_time IS NOT NULL AND {_MODE_FILTER} "
    "ORDER BY exit_time DESC, id DESC LIMIT :limit"
)

_ALL_TRADES: Final = text(
    f"SELECT {_TRADE_COLUMNS} FROM trading.strategy_trades "  # noqa: S608 (constants)
    "WHERE bot_id = :b ORDER BY id"
)

_STATS: Final = text(
    f"""SELECT count(*) AS n,
        count(*) FILTER (WHERE pnl_usd > 0) AS wins,
        count(*) FILTER (WHERE pnl_usd < 0) AS losses,
        sum(pnl_usd) AS pnl_sum,
        sum(pnl_pct) AS pct_sum, count(pnl_pct) AS pct_n,
        sum(pnl_pct) FILTER (WHERE pnl_usd > 0) AS win_pct_sum,
        count(pnl_pct) FILTER (WHERE pnl_usd > 0) AS win_pct_n,
        sum(pnl_pct) FILTER (WHERE pnl_usd < 0) AS loss_pct_sum,
        count(pnl_pct) FILTER (WHERE pnl_usd < 0) AS loss_pct_n,
        max(pnl_usd) AS best, min(pnl_usd) AS worst,
        sum(holding_seconds) AS hold_sum, count(holding_seconds) AS hold_n
    FROM trading.strategy_trades
    WHERE bot_id = :b AND exit_time IS NOT NULL AND {_MODE_FILTER}
      AND (CAST(:since AS timestamptz) IS NULL OR exit_time >= CAST(:since AS timestamptz))"""  # noqa: S608
)

_OPEN_KEYS: Final = text(
    "SELECT trade_key, mode FROM trading.strategy_trades "
    "WHERE bot_id = :b AND trade_key = ANY(:keys) AND exit_time IS NULL"
).bindparams(bindparam("keys", type_=ARRAY(String())))

_UPSERT_SNAPSHOT: Final = text(
    """INSERT INTO trading.equity_snapshots AS s (bot_id, snapshot_date, mode, starting_equity,
        ending_equity, daily_pnl, daily_pnl_pct, trades_count, wins_count, losses_count,
        open_positions, source, created_at, updated_at)
    VALUES (:b, :d, :mode, :se, :ee, :pnl, :pct, :tc, :wc, :lc, :op, :source,
        coalesce(CAST(:created AS timestamptz), now()), now())
    ON CONFLICT (bot_id, snapshot_date, mode) DO UPDATE SET
        starting_equity = EXCLUDED.starting_equity, ending_equity = EXCLUDED.ending_equity,
        daily_pnl = EXCLUDED.daily_pnl, daily_pnl_pct = EXCLUDED.daily_pnl_pct,
        trades_count = EXCLUDED.trades_count, wins_count = EXCLUDED.wins_count,
        losses_count = EXCLUDED.losses_count, open_positions = EXCLUDED.open_positions,
        source = EXCLUDED.source, updated_at = now()
    WHERE (s.starting_equity, s.ending_equity, s.daily_pnl, s.daily_pnl_pct, s.trades_count,
           s.wins_count, s.losses_count, s.open_positions)
        IS DISTINCT FROM (EXCLUDED.starting_equity, EXCLUDED.ending_equity, EXCLUDED.daily_pnl,
           EXCLUDED.daily_pnl_pct, EXCLUDED.trades_count, EXCLUDED.wins_count,
           EXCLUDED.losses_count, EXCLUDED.open_positions)
    RETURNING (xmax = 0) AS inserted"""
)

_SNAPSHOTS: Final = text(
    "SELECT id, snapshot_date, mode, starting_equity, ending_equity, daily_pnl, "  # noqa: S608
    "daily_pnl_pct, trades_count, wins_count, losses_count, open_positions, created_at "
    f"FROM trading.equity_snapshots WHERE bot_id = :b AND {_MODE_FILTER} "
    "ORDER BY snapshot_date DESC, id DESC LIMIT :limit"
)

_EVENT_VALUES: Final = (
    "(event_time, event_type, event_level, bot_id, component, message, details, trade_id, "
    "symbol, created_at)"
)
_INSERT_EVENT: Final = text(
    f"INSERT INTO audit.system_events {_EVENT_VALUES} "  # noqa: S608 (constants)
    "VALUES (:t, :type, :level, :b, :component, :msg, CAST(:details AS jsonb), :trade_id, "
    ":symbol, coalesce(CAST(:created AS timestamptz), now()))"
)
# Events have no natural unique key; an event is "the same" when bot, time (microseconds),
# type, level and message agree. Used by the import and by spool replay (at least once).
_INSERT_EVENT_IF_ABSENT: Final = text(
    f"INSERT INTO audit.system_events {_EVENT_VALUES} "  # noqa: S608 (constants)
    "SELECT :t, :type, :level, :b, :component, :msg, CAST(:details AS jsonb), :trade_id, "
    ":symbol, coalesce(CAST(:created AS timestamptz), now()) "
    "WHERE NOT EXISTS (SELECT 1 FROM audit.system_events e WHERE e.bot_id = :b "
    "AND e.event_time = :t AND e.event_type = :type AND e.event_level = :level "
    "AND e.message = :msg) RETURNING id"
)

_EVENTS: Final = text(
    "SELECT id, event_time, event_type, event_level, message, details, created_at "
    "FROM audit.system_events WHERE bot_id = :b AND component = :component "
    "AND (CAST(:level AS varchar) IS NULL OR event_level = CAST(:level AS varchar)) "
    "ORDER BY event_time DESC, id DESC LIMIT :limit"
)

_RISK_VALUES: Final = (
    "(event_time, bot_id, risk_type, current_value, limit_value, action_taken, created_at)"
)
_INSERT_RISK: Final = text(
    f"INSERT INTO audit.risk_events {_RISK_VALUES} "  # noqa: S608 (constants)
    "VALUES (:t, :b, :type, :cur, :lim, :action, coalesce(CAST(:created AS timestamptz), now()))"
)
_INSERT_RISK_IF_ABSENT: Final = text(
    f"INSERT INTO audit.risk_events {_RISK_VALUES} "  # noqa: S608 (constants)
    "SELECT :t, :b, :type, :cur, :lim, :action, coalesce(CAST(:created AS timestamptz), now()) "
    "WHERE NOT EXISTS (SELECT 1 FROM audit.risk_events r WHERE r.bot_id = :b "
    "AND r.event_time = :t AND r.risk_type = :type AND r.current_value = :cur "
    "AND r.limit_value = :lim AND r.action_taken = :action) RETURNING id"
)

_RISKS: Final = text(
    "SELECT id, event_time, risk_type, current_value, limit_value, action_taken, created_at "
    "FROM audit.risk_events WHERE bot_id = :b ORDER BY id"
)

_IMPORT_TRADE: Final = text(
    """INSERT INTO trading.strategy_trades AS t (bot_id, trade_key, mode, symbol, side,
        entry_time, entry_price, quantity, notional_usd, stop_loss, take_profit,
        signal_strength, entry_exec_id, exit_time, exit_price, exit_reason, pnl_usd, pnl_pct,
        holding_seconds, exit_exec_id, details, source, created_at, updated_at)
    VALUES (:b, :k, :mode, :symbol, :side, :entry_time, :entry_price, :quantity, :notional,
        :stop_loss, :take_profit, :signal, :entry_exec_id, :exit_time, :exit_price,
        :exit_reason, :pnl_usd, :pnl_pct, :holding, :exit_exec_id, CAST(:details AS jsonb),
        :source, coalesce(CAST(:created AS timestamptz), now()), now())
    ON CONFLICT (bot_id, trade_key) DO UPDATE SET
        exit_time = EXCLUDED.exit_time, exit_price = EXCLUDED.exit_price,
        exit_reason = EXCLUDED.exit_reason, pnl_usd = EXCLUDED.pnl_usd,
        pnl_pct = EXCLUDED.pnl_pct, holding_seconds = EXCLUDED.holding_seconds,
        exit_exec_id = EXCLUDED.exit_exec_id,
        details = coalesce(t.details, '{}'::jsonb) || coalesce(EXCLUDED.details, '{}'::jsonb),
        updated_at = now()
    WHERE t.exit_time IS NULL AND EXCLUDED.exit_time IS NOT NULL
    RETURNING (xmax = 0) AS inserted"""
)

_MISSING_LEGS: Final = text(
    """SELECT * FROM (
        SELECT t.trade_key, t.symbol, t.side, t.quantity, t.entry_time, t.entry_price,
            t.entry_exec_id, t.exit_time, t.exit_price, t.exit_reason, t.exit_exec_id,
            t.source, t.details,
            t.entry_exec_id IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM trading.fills f WHERE f.exec_id = t.entry_exec_id
            ) AND NOT EXISTS (
                SELECT 1 FROM audit.quarantined_fills q WHERE q.exec_id = t.entry_exec_id
            ) AS entry_missing,
            t.exit_exec_id IS NOT NULL AND t.exit_price IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM trading.fills f WHERE f.exec_id = t.exit_exec_id
            ) AND NOT EXISTS (
                SELECT 1 FROM audit.quarantined_fills q WHERE q.exec_id = t.exit_exec_id
            ) AS exit_missing
        FROM trading.strategy_trades t WHERE t.bot_id = :b) legs
    WHERE entry_missing OR exit_missing"""
)

_PNL_BY_MODE: Final = text(
    "SELECT mode, count(*) AS n, count(exit_time) AS closed, sum(pnl_usd) AS pnl "
    "FROM trading.strategy_trades WHERE bot_id = :b AND trade_key = ANY(:keys) GROUP BY mode"
).bindparams(bindparam("keys", type_=ARRAY(String())))

_IMPORTED: Final = text(
    "SELECT 1 FROM audit.system_events WHERE bot_id = :b AND event_type = :type "
    "AND component = :component AND details @> CAST(:probe AS jsonb) LIMIT 1"
)

_READY: Final = text(
    "SELECT (SELECT version_num FROM public.alembic_version LIMIT 1) AS version, "
    "EXISTS (SELECT 1 FROM trading.bots WHERE bot_id = :b) AS registered"
)
_HAS_VERSION_TABLE: Final = text("SELECT to_regclass('public.alembic_version') IS NOT NULL")

_ADVISORY_LOCK: Final = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


@dataclass(frozen=True, slots=True)
class CloseResult:
    """What an exit did: ``closed`` (with the open trade's symbol, side and quantity),
    ``unknown`` (no such trade) or ``already_closed`` (the first exit is kept)."""

    status: Literal["closed", "unknown", "already_closed"]
    symbol: str = ""
    side: str = ""
    quantity: Decimal = Decimal(0)
    mode: str | None = None


@dataclass(frozen=True, slots=True)
class MissingLeg:
    """A trade leg whose fill is not in ``trading.fills`` (a crash between the trade row and
    its fill, or an import); ``fill_input`` is rebuilt from the stored row."""

    bot_id: str
    trade_key: str
    leg: Leg
    fill_input: FillInput

    @property
    def exec_time(self) -> datetime:
        return self.fill_input.exec_time


def _open_params(t: TradeOpen) -> dict[str, Any]:
    details = t.details()
    return {
        "b": t.bot_id,
        "k": t.trade_key,
        "mode": t.mode,
        "symbol": t.symbol,
        "side": t.side,
        "entry_time": t.entry_time,
        "entry_price": t.entry_price,
        "quantity": t.quantity,
        "notional": t.notional_usd,
        "stop_loss": t.stop_loss,
        "take_profit": t.take_profit,
        "signal": t.signal_strength,
        "entry_exec_id": t.entry_exec_id,
        "details": None if details is None else json.dumps(details, ensure_ascii=False),
        "source": t.source,
    }


def _close_extra(c: TradeClose) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if c.exact:
        extra["exact"] = dict(c.exact)
    if c.client_order_id:
        extra["exit_client_order_id"] = c.client_order_id
    return extra


def _close_params(c: TradeClose) -> dict[str, Any]:
    return {
        "b": c.bot_id,
        "k": c.trade_key,
        "exit_time": c.exit_time,
        "exit_price": c.exit_price,
        "exit_reason": c.exit_reason,
        "pnl_usd": c.pnl_usd,
        "pnl_pct": c.pnl_pct,
        "holding": c.holding_seconds,
        "exit_exec_id": c.exit_exec_id,
        "extra": json.dumps(_close_extra(c), ensure_ascii=False),
    }


def _stats_of(row: Any) -> TradeStats:
    return TradeStats(
        n=int(row.n),
        wins=int(row.wins),
        losses=int(row.losses),
        pnl_sum=row.pnl_sum,
        pct_sum=row.pct_sum,
        pct_n=int(row.pct_n),
        win_pct_sum=row.win_pct_sum,
        win_pct_n=int(row.win_pct_n),
        loss_pct_sum=row.loss_pct_sum,
        loss_pct_n=int(row.loss_pct_n),
        best=row.best,
        worst=row.worst,
        hold_sum=None if row.hold_sum is None else int(row.hold_sum),
        hold_n=int(row.hold_n),
    )


def _leg_of(bot_id: str, row: Any, leg: Leg) -> MissingLeg:
    details = row.details or {}
    source = row.source or SOURCE_ADAPTER
    if leg == "entry":
        fill = _leg_fill(
            bot_id=bot_id,
            trade_key=row.trade_key,
            leg="entry",
            symbol=row.symbol,
            side=row.side,
            price=row.entry_price,
            qty=row.quantity,
            when=row.entry_time,
            client_order_id=details.get("entry_client_order_id", ""),
            close_reason="entry",
            source=source,
        )
    else:
        fill = _leg_fill(
            bot_id=bot_id,
            trade_key=row.trade_key,
            leg="exit",
            symbol=row.symbol,
            side=_opposite(row.side),
            price=row.exit_price,
            qty=row.quantity,
            when=row.exit_time,
            client_order_id=details.get("exit_client_order_id", ""),
            close_reason=canonical_reason(row.exit_reason) if row.exit_reason else None,
            source=source,
        )
    return MissingLeg(bot_id, row.trade_key, leg, fill)


class _HeldConnection:
    """One driver connection (from the engine's pool, kept) in autocommit mode for the
    adapter's two hot statements: each is one round trip, commit included. Serialised by
    a lock (each use is a single statement); a broken connection is replaced and the
    statement retried once (the statements are idempotent)."""

    def __init__(self, engine: Engine, settings: Settings | None, timeout_ms: int) -> None:
        self._engine = engine
        self._settings = settings
        self._prefix = f"SET LOCAL statement_timeout = {timeout_ms}; " if timeout_ms else ""
        self._conn: Any = None
        self._lock = threading.Lock()

    def run(self, sql: str, params: Mapping[str, Any], *, flush: bool) -> tuple[Any, ...] | None:
        statement = self._prefix + ("" if flush else _ASYNC_COMMIT) + sql
        with self._lock:
            for attempt in (1, 2):
                try:
                    conn = self._connection()
                    with conn.cursor() as cur:
                        cur.execute(statement, params)
                        row: tuple[Any, ...] | None = cur.fetchone()
                    return row
                except DBAPIError as exc:  # raised while connecting (the pool)
                    raise translate_error(exc, self._settings) from None
                except psycopg2.Error as exc:
                    broken = bool(getattr(self._conn, "closed", 1)) or isinstance(
                        exc, psycopg2.OperationalError | psycopg2.InterfaceError
                    )
                    self.drop(broken=broken)
                    if attempt == 1 and broken:
                        continue
                    wrapped = DBAPIError.instance(
                        "momentum trade row", None, exc, psycopg2.Error, hide_parameters=True
                    )
                    raise translate_error(wrapped, self._settings) from None
        raise AssertionError("unreachable")

    def _connection(self) -> Any:
        if self._conn is None:
            conn: Any = self._engine.raw_connection()
            conn.driver_connection.autocommit = True
            self._conn = conn
        return self._conn

    def drop(self, *, broken: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):  # the connection is being discarded anyway
            if broken:
                conn.invalidate()
            else:
                conn.driver_connection.autocommit = False
                conn.close()  # back to the pool


class MomentumStore:
    """The SQL of Momentum's records; every public method is one short transaction."""

    def __init__(self, engine: Engine, settings: Settings | None = None) -> None:
        self.engine = engine
        self.settings = settings or getattr(engine, "info_settings", None)
        timeout = self.settings.statement_timeout_ms if self.settings is not None else 0
        self._hot = _HeldConnection(engine, self.settings, int(timeout))

    def _error(self, exc: DBAPIError) -> Exception:
        return translate_error(exc, self.settings)

    # -- readiness -------------------------------------------------------------------------
    def check_ready(self, bot_id: str) -> None:
        """Raise unless the database is at the latest migration and ``bot_id`` is a
        registered bot (``trading.bots``; ``alpha-db migrate`` registers the platform's)."""
        try:
            with self.engine.connect() as conn:
                has_table = conn.execute(_HAS_VERSION_TABLE).scalar()
                row = conn.execute(_READY, {"b": bot_id}).one() if has_table else None
                conn.rollback()
        except DBAPIError as exc:
            raise self._error(exc) from None
        version = row.version if row is not None else None
        if version != HEAD_REVISION:
            raise SchemaBehindError(
                f"database is at migration {version or 'none'}, this code needs "
                f"{HEAD_REVISION}: run `alpha-db migrate`"
            )
        if row is None or not row.registered:
            raise ConfigurationError(
                f"bot {bot_id!r} is not registered in trading.bots (run `alpha-db migrate`, "
                "which registers the platform's bots)"
            )

    # -- trades ----------------------------------------------------------------------------
    def open_trade(self, trade: TradeOpen, *, flush: bool = True) -> int | None:
        """Insert the trade; its id, or None when the bot has another trade with this id.
        The same entry delivered twice (a retry, a spool replay) returns its stored id.

        ``flush=False`` commits without waiting for the WAL flush (one fsync less): only
        for a caller whose next step is a synchronous commit (the trade's fill), which
        makes this row durable too, and who re-delivers the call if that step fails.
        """
        row = self._hot.run(_OPEN_TRADE_SQL, _open_params(trade), flush=flush)
        return None if row is None else int(row[0])

    def close_trade(self, close: TradeClose, *, flush: bool = True) -> CloseResult:
        """Record the exit of an open trade; an unknown or already closed trade is left
        unchanged (the caller decides what to report). The same exit delivered twice is
        ``closed`` both times. ``flush`` as in :meth:`open_trade`."""
        row = self._hot.run(_CLOSE_TRADE_SQL, _close_params(close), flush=flush)
        if row is None:
            return CloseResult("unknown")
        _id, symbol, side, quantity, mode, updated, exit_time, exit_exec_id = row
        if updated or (exit_time == close.exit_time and exit_exec_id == close.exit_exec_id):
            return CloseResult("closed", symbol, side, quantity, mode)
        return CloseResult("already_closed", symbol, side, quantity, mode)

    def close(self) -> None:
        """Release the held connection (the store can still be used: it reconnects)."""
        self._hot.drop(broken=False)

    def open_trades(self, bot_id: str, mode: str | None) -> list[Any]:
        return self._rows(_OPEN_TRADES, {"b": bot_id, "mode": mode})

    def recent_trades(self, bot_id: str, mode: str | None, limit: int | None) -> list[Any]:
        return self._rows(_RECENT_TRADES, {"b": bot_id, "mode": mode, "limit": limit})

    def all_trades(self, bot_id: str) -> list[Any]:
        return self._rows(_ALL_TRADES, {"b": bot_id})

    def stats(self, bot_id: str, mode: str | None, since: datetime | None) -> TradeStats:
        rows = self._rows(_STATS, {"b": bot_id, "mode": mode, "since": since})
        return _stats_of(rows[0])

    def open_modes(self, bot_id: str, keys: Sequence[str]) -> dict[str, str | None]:
        """trade id -> mode, for those of ``keys`` that are open."""
        if not keys:
            return {}
        rows = self._rows(_OPEN_KEYS, {"b": bot_id, "keys": list(keys)})
        return {r.trade_key: r.mode for r in rows}

    # -- snapshots and events --------------------------------------------------------------
    def save_snapshot(self, snap: SnapshotRecord) -> None:
        self._execute(_UPSERT_SNAPSHOT, snap.params())

    def snapshots(self, bot_id: str, mode: str | None, limit: int | None) -> list[Any]:
        return self._rows(_SNAPSHOTS, {"b": bot_id, "mode": mode, "limit": limit})

    def log_event(self, event: EventRecord, *, if_absent: bool = False) -> None:
        self._execute(_INSERT_EVENT_IF_ABSENT if if_absent else _INSERT_EVENT, event.params())

    def events(self, bot_id: str, level: str | None, limit: int | None) -> list[Any]:
        return self._rows(
            _EVENTS, {"b": bot_id, "level": level, "limit": limit, "component": COMPONENT}
        )

    def log_risk(self, risk: RiskRecord, *, if_absent: bool = False) -> None:
        self._execute(_INSERT_RISK_IF_ABSENT if if_absent else _INSERT_RISK, risk.params())

    def risks(self, bot_id: str) -> list[Any]:
        return self._rows(_RISKS, {"b": bot_id})

    # -- fills that are owed ---------------------------------------------------------------
    def missing_legs(self, bot_id: str, conn: Connection | None = None) -> list[MissingLeg]:
        """Trade legs without their fill, oldest first (entry before exit at equal times).

        A leg whose fill is in ``audit.quarantined_fills`` (voided by reconciliation, or
        superseded by the exchange's own execution of the order) is not missing: recording
        it again would undo that."""
        rows: list[Any]
        if conn is not None:
            rows = list(conn.execute(_MISSING_LEGS, {"b": bot_id}))
        else:
            rows = self._rows(_MISSING_LEGS, {"b": bot_id})
        legs: list[MissingLeg] = []
        for row in rows:
            if row.entry_missing:
                legs.append(_leg_of(bot_id, row, "entry"))
            if row.exit_missing:
                legs.append(_leg_of(bot_id, row, "exit"))
        legs.sort(key=lambda leg: (leg.exec_time, leg.leg != "entry", leg.trade_key))
        return legs

    # -- import ----------------------------------------------------------------------------
    def lock_bot(self, conn: Connection, bot_id: str) -> None:
        """Serialise imports of one bot (transaction-scoped: safe behind PgBouncer)."""
        conn.execute(_ADVISORY_LOCK, {"key": f"momentum-import:{bot_id}"})

    def import_trade(
        self, conn: Connection, trade: TradeOpen, close: TradeClose | None
    ) -> Literal["added", "updated", "existing"]:
        params = _open_params(trade)
        details = trade.details() or {}
        if close is not None:
            extra = _close_extra(close)
            if "exact" in extra:
                details["exact"] = {**details.get("exact", {}), **extra.pop("exact")}
            details.update(extra)
        params.update(
            {
                "details": json.dumps(details, ensure_ascii=False) if details else None,
                "exit_time": None if close is None else close.exit_time,
                "exit_price": None if close is None else close.exit_price,
                "exit_reason": None if close is None else close.exit_reason,
                "pnl_usd": None if close is None else close.pnl_usd,
                "pnl_pct": None if close is None else close.pnl_pct,
                "holding": None if close is None else close.holding_seconds,
                "exit_exec_id": None if close is None else close.exit_exec_id,
                "created": trade.created_at,
            }
        )
        row = conn.execute(_IMPORT_TRADE, params).first()
        if row is None:
            return "existing"
        return "added" if row.inserted else "updated"

    def import_snapshot(
        self, conn: Connection, snap: SnapshotRecord
    ) -> Literal["added", "updated", "existing"]:
        row = conn.execute(_UPSERT_SNAPSHOT, snap.params()).first()
        if row is None:
            return "existing"
        return "added" if row.inserted else "updated"

    def import_event(self, conn: Connection, event: EventRecord) -> bool:
        return conn.execute(_INSERT_EVENT_IF_ABSENT, event.params()).first() is not None

    def import_risk(self, conn: Connection, risk: RiskRecord) -> bool:
        return conn.execute(_INSERT_RISK_IF_ABSENT, risk.params()).first() is not None

    def pnl_by_mode(
        self, conn: Connection, bot_id: str, keys: Sequence[str]
    ) -> dict[str, tuple[int, int, Decimal | None]]:
        """mode -> (trades, closed, Σ pnl_usd) over the given trade ids."""
        rows = conn.execute(_PNL_BY_MODE, {"b": bot_id, "keys": list(keys)})
        return {r.mode: (int(r.n), int(r.closed), r.pnl) for r in rows}

    def mark_imported(self, conn: Connection, bot_id: str, summary: Mapping[str, Any]) -> None:
        event = EventRecord(
            bot_id=bot_id,
            event_time=datetime.now(UTC),
            event_type=IMPORT_EVENT,
            level="INFO",
            message=f"Imported legacy Momentum SQLite file {summary.get('file', '')}"[:1000],
            details=json.dumps(summary, ensure_ascii=False),
            component=IMPORT_COMPONENT,
        )
        conn.execute(_INSERT_EVENT, event.params())

    def was_imported(self, bot_id: str, sha256: str) -> bool:
        params = {
            "b": bot_id,
            "type": IMPORT_EVENT,
            "component": IMPORT_COMPONENT,
            "probe": json.dumps({"sha256": sha256}),
        }
        return self._scalar(_IMPORTED, params) is not None

    # -- plumbing --------------------------------------------------------------------------
    def _rows(self, stmt: Any, params: Mapping[str, Any]) -> list[Any]:
        try:
            with self.engine.connect() as conn:
                rows = list(conn.execute(stmt, dict(params)))
                conn.rollback()
        except DBAPIError as exc:
            raise self._error(exc) from None
        return rows

    def _scalar(self, stmt: Any, params: Mapping[str, Any]) -> Any:
        try:
            with self.engine.connect() as conn:
                value = conn.execute(stmt, dict(params)).scalar()
                conn.rollback()
        except DBAPIError as exc:
            raise self._error(exc) from None
        return value

    def _execute(self, stmt: Any, params: Mapping[str, Any]) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(stmt, dict(params))
        except DBAPIError as exc:
            raise self._error(exc) from None


def since_days(days: Any, now: datetime) -> datetime | None:
    """``get_performance_stats``'s ``days``: falsy -> no window; else exits since
    ``now - days`` (fractions work; a negative value gives a future cutoff: nothing)."""
    if not days:
        return None
    value, _ = number("days", days)
    try:
        return now - timedelta(days=float(value))
    except OverflowError:
        return None if value > 0 else datetime.max.replace(tzinfo=UTC)


def validate_bot(bot_id: Any) -> str:
    """A bot id's format (registration is checked against the database when ready)."""
    return validate_bot_id(bot_id, known_bots=(bot_id,) if isinstance(bot_id, str) else ())
