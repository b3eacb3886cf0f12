"""``TradeDatabase`` for Momentum: a drop-in for ``database/trade_database.py`` that keeps the
strategy's history in the shared PostgreSQL schema instead of a local SQLite file.

Momentum changes one line (trading_system.py line 28)::

    from adapters.momentum import TradeDatabase      # was: from database.trade_database ...

and, to have its real executions attributed to ``momentum_001`` instead of ``unknown``,
sends the id this returns as Bybit's ``orderLinkId`` with each order::

    orderLinkId=self.db.client_order_id("entry", symbol)        # or the exit reason

Same constructor, method names, parameter names, order and defaults, and the same return
shapes (MOMENTUM.md). Where the data goes:

* a trade (``log_trade_entry`` / ``log_trade_exit``) -> one ``trading.strategy_trades`` row
  (the strategy's own record: mode, stop, signal, its P&L) **and** one fill per entry and
  per exit through the write path (bot ``momentum_001``, source ``adapter``, exec ids
  ``momentum_001:<trade_id>:entry`` / ``:exit``), so the round trip is in the FIFO lots,
  positions, P&L and analytics like every other bot's;
* ``log_event`` -> ``audit.system_events`` (component ``momentum``); ``log_risk_event`` ->
  ``audit.risk_events``; ``save_daily_snapshot`` -> ``trading.equity_snapshots``.

Database location and ``db_path``
---------------------------------
PostgreSQL and Redis come from the ``POSTGRES_*`` / ``REDIS_*`` settings
(:class:`~alpha_models.settings.Settings`). ``db_path`` (default ``data/trading.db``, the
``momentum_data`` volume in Docker) keeps two operator-facing meanings:

* **the legacy SQLite file**: if it exists and this exact file (by SHA-256) has not been
  imported for the bot yet, the first start imports it (:mod:`alpha_models.momentum_import`:
  every trade with its fills, snapshot and event; idempotent) before serving calls, and
  says so on stdout and in the log. The file is only ever read: it stays as the
  pre-migration record. ``alpha-db import-momentum FILE`` does the same by hand.
  Naive legacy times are read in ``ALPHA_MOMENTUM_LEGACY_TZ`` (default UTC).
* **the local spool** ``<db_path>.spool/`` (on the same persisted volume): calls made while
  PostgreSQL is unreachable are kept there (fsynced, in order) and delivered when it
  answers again; fills the write path could not deliver wait in ``fills/``.

The bot id is ``momentum_001`` unless ``bot_id=`` or ``ALPHA_MOMENTUM_BOT_ID`` says otherwise;
it must be registered in ``trading.bots`` (``alpha-db migrate`` registers the platform's).

Concurrency
-----------
* **Threads**: one instance may be shared by any number of threads; nothing is lost or
  corrupted. Trade rows are written on one held connection (one statement and round trip
  each, serialised by a lock), fills by the write path (serialised by its lock), events,
  snapshots and reads on the engine's pool.
* **Durability**: when a call returns, what it wrote is committed and flushed. A trade row
  is committed with ``synchronous_commit = off`` and made durable by the synchronous commit
  of its fill right after it (one WAL flush per call instead of two); if that fill is
  spooled instead, the call is spooled too and re-delivered (the statements are
  idempotent). A crash between the trade row and its fill is repaired at the next start
  (legs without their fill are booked).
* **Re-entry from a signal handler**: a call made while another call of the same thread is
  half-way through (the SIGINT/SIGTERM handler's ``stop()`` interrupting the main loop)
  never touches the interrupted call's connection, locks or spool: its writes are validated
  at once, queued, and performed in order as soon as the interrupted call finishes (within
  milliseconds, before anything else of that thread). ``get_performance_stats`` called
  re-entrantly already counts the queued exits, so ``stop()``'s SYSTEM_STOP event carries
  the same figures the original did. A re-entrant ``log_trade_entry`` returns 0 (its id is
  not known yet).

Deliberate differences from the original (each keeps the shape the strategy relies on)
------------------------------------------------------------------------------------
**Validation** (the original validated nothing). A value the original would have stored as
garbage raises :class:`~alpha_models.errors.ValidationError` and nothing is written: a price
or quantity <= 0 (after rounding to 8 dp), NaN or infinite; a negative
``position_size_usd``, stop, target or holding time; a side other than ``Buy``/``Sell``; a
mode other than ``demo``/``live``; a symbol not ``^[A-Z0-9]{2,20}$``; an exit reason > 50
characters; a level other than DEBUG/INFO/WARNING/ERROR/CRITICAL; details that are not
JSON-serializable (the original raised ``TypeError``). What the original rejects is still
rejected: a duplicate ``trade_id`` raises ``ConstraintViolationError`` (constraint
``strategy_trades_bot_id_trade_key_key``), a missing required value raises
``ValidationError``. ``trade_id=None`` (accepted by SQLite, but such a trade could never
exit) and ``exit_price=None`` (the exit must be a fill) are rejected too.

**Exits.** An exit for an unknown ``trade_id`` is still a no-op for the caller, but leaves a
``WARNING`` event ``UNKNOWN_TRADE_EXIT`` in ``audit.system_events``. A second exit for an
already closed trade **keeps the first** (the original overwrote it: the retried
"Exchange Stop Loss" exits of MOMENTUM.md section 9 rewrote the real exit with later
prices) and leaves a ``DUPLICATE_TRADE_EXIT`` warning.

**Precision** (``numeric(20,8)``). Stored values are rounded half-up to 8 decimals; reads
return them as ``float``. The exact value of anything that had more digits (a quantity like
``5855.486590935707``, ``pnl_pct``, ``signal_strength``) is kept as text in
``strategy_trades.details -> 'exact'`` and restored by :meth:`TradeDatabase.backup`.
``get_performance_stats`` aggregates the stored decimals exactly and converts to ``float``
at the end: sums agree with the original to far better than a cent, averages of fractions
to about 5e-9. A quantity below 5e-9 rounds to 0 and is rejected. A fractional
``holding_time_seconds`` is rounded to an int (the exact value is kept in ``details``).

**Times.** Stored aware (UTC, from ``datetime.now(UTC)``); returned as strings in the
original's format (``YYYY-MM-DD HH:MM:SS[.ffffff]``) **in UTC** (the original used host-local
naive time; identical on a UTC host such as the Docker image). ``created_at`` is UTC,
whole seconds, as before. ``get_performance_stats(days=...)`` compares aware times: no
shift by the host's UTC offset; ``days`` must be a number (a string can no longer inject
SQL; a numeric string still works); a negative value still matches nothing.

**Reads.** Keys and order as the original; the ``id`` values are the shared tables' ids
(not the SQLite ids), ties in the ``DESC`` orderings go newest id first. ``LIMIT``
semantics are SQLite's (negative = all, 0 = none, ``'3'`` and ``True`` work, ``None`` or a
non-integral value raise ``ValidationError``). ``get_recent_events`` returns ``details``
as JSON text again, but PostgreSQL's ``jsonb`` does not keep key order or spacing: the text
is ``json.dumps`` of the stored value (same values, keys in jsonb's order); non-finite
floats are stored as the strings ``"NaN"``/``"Infinity"``. It lists Momentum's own events
(component ``momentum``), including the adapter's warnings.

**Snapshots** are keyed by (bot, date, mode): saving a date again in the *other* mode adds
a row instead of deleting the first (the original's ``UNIQUE(date)`` did); saving the same
date and mode updates the row in place (same id; ``updated_at`` changes). ``'20251001'`` is
read as 2025-10-01 (the original stored the integer 20251001); counts must be integers.

**Attribution.** :meth:`TradeDatabase.client_order_id` returns the platform's compact
``momentum_001:<reason code>:<stamp>`` (<= 36 characters, unique per call); the listener
(:func:`alpha_models.bybit_stream.parse_execution`) attributes executions carrying it to
``momentum_001``. Given the symbol, the adapter also puts it on its own fill of that leg,
so the listener's copy and the adapter's copy of one execution share the client order id.

**Other.** ``backup()`` writes a SQLite file in the original schema from the shared tables
(the operators' ``sqlite3`` queries keep working on it) instead of copying the live file;
the default name is unchanged. ``close()`` delivers what is spooled, then releases the
connections; later calls raise ``DatabaseError``. There is no ``conn`` attribute (the
``engine`` is public instead). Reads raise ``DatabaseUnavailableError`` while PostgreSQL is
unreachable (writes are spooled, never lost).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import Engine

from alpha_models.cache import PositionCache
from alpha_models.db import make_engine
from alpha_models.errors import (
    AlphaModelsError,
    ConfigurationError,
    ConstraintViolationError,
    DatabaseError,
    DatabaseUnavailableError,
    ValidationError,
)
from alpha_models.inputs import validate_symbol
from alpha_models.momentum_import import (
    book_missing_fills,
    export_sqlite,
    file_sha256,
    import_legacy,
    is_legacy_sqlite,
    legacy_created,
    legacy_time,
)
from alpha_models.momentum_store import (
    EventRecord,
    MomentumStore,
    RiskRecord,
    SnapshotRecord,
    TradeClose,
    TradeOpen,
    TradeStats,
    entry_fill,
    exit_fill,
    since_days,
    validate_bot,
)
from alpha_models.order_link import make_order_link_id, reason_code
from alpha_models.runtime import make_redis
from alpha_models.settings import Settings
from alpha_models.spool import Spool, SpoolEntry
from alpha_models.writepath import Outcome, WritePath

__all__ = [
    "BOT_ID_ENV",
    "DEFAULT_BOT_ID",
    "LEGACY_TZ_ENV",
    "SPOOLED_ID",
    "DuplicateTradeError",
    "TradeDatabase",
    "sqlite_limit",
]

log = logging.getLogger(__name__)

DEFAULT_BOT_ID: Final = "momentum_001"
BOT_ID_ENV: Final = "ALPHA_MOMENTUM_BOT_ID"
LEGACY_TZ_ENV: Final = "ALPHA_MOMENTUM_LEGACY_TZ"
SPOOLED_ID: Final = 0
"""What ``log_trade_entry`` returns when the entry was queued or spooled (id not known)."""

_INT64: Final = 2**63
_SQLITE_SPACE: Final = " \t\n\f\r\v"
_DUPLICATE_KEY: Final = "strategy_trades_bot_id_trade_key_key"

OpKind: TypeAlias = Literal["entry", "exit", "event", "risk", "snapshot"]
_Record: TypeAlias = TradeOpen | TradeClose | EventRecord | RiskRecord | SnapshotRecord
_RECORD_TYPES: Final[dict[str, Any]] = {
    "entry": TradeOpen,
    "exit": TradeClose,
    "event": EventRecord,
    "risk": RiskRecord,
    "snapshot": SnapshotRecord,
}
R = TypeVar("R")


# ------------------------------------------------------------------------------ helpers


def _int_text(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.isascii() and body.isdigit()


def _real_text(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    mantissa, _, exponent = body.partition("e") if "e" in body else body.partition("E")
    if exponent or body.endswith(("e", "E")):
        exp = exponent[1:] if exponent[:1] in "+-" else exponent
        if not (exp.isascii() and exp.isdigit()):
            return False
    whole, dot, frac = mantissa.partition(".")
    digits = whole + frac
    return (
        bool(digits)
        and digits.isascii()
        and digits.isdigit()
        and (bool(whole) or bool(frac))
        and (bool(dot) or bool(exponent))
    )


def sqlite_limit(value: Any, field: str = "limit") -> int | None:
    """A ``LIMIT`` value with SQLite's semantics: the number of rows, or None for "all".

    Like SQLite: a negative value means all rows; ``True``/``False`` are 1/0; numeric text
    (spaces around allowed) and integral floats work; ``None``, non-integral numbers,
    non-numeric text and values outside int64 raise
    :class:`~alpha_models.errors.ValidationError` (SQLite: "datatype mismatch").
    """
    n: int
    if isinstance(value, bool):
        n = int(value)
    elif isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not (value == value and value.is_integer() and -_INT64 <= value < _INT64):
            raise ValidationError(field, value, "not an integer")
        n = int(value)
    elif isinstance(value, str):
        text = value.strip(_SQLITE_SPACE)
        if _int_text(text):
            n = int(text)
        elif _real_text(text):
            real = float(text)
            if not (real.is_integer() and -_INT64 <= real < _INT64):
                raise ValidationError(field, value, "not an integer")
            n = int(real)
        else:
            raise ValidationError(field, value, "not an integer")
    elif hasattr(value, "__index__") and not isinstance(value, float):
        n = int(value.__index__())
    else:
        raise ValidationError(field, value, "not an integer")
    if not -_INT64 <= n < _INT64:
        raise ValidationError(field, value, "out of range for a 64-bit integer")
    return None if n < 0 else n


def _filter(value: Any, field: str) -> str | None:
    """A ``mode``/``level`` filter: falsy means none (like the original)."""
    if not value:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, value, f"expected a string, got {type(value).__name__}")
    return str.__str__(value)


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def _trade_dict(r: Any) -> dict[str, Any]:
    return {
        "id": int(r.id),
        "trade_id": r.trade_key,
        "mode": r.mode,
        "symbol": r.symbol,
        "side": r.side,
        "entry_time": legacy_time(r.entry_time),
        "entry_price": _f(r.entry_price),
        "exit_time": legacy_time(r.exit_time),
        "exit_price": _f(r.exit_price),
        "quantity": _f(r.quantity),
        "position_size_usd": _f(r.notional_usd),
        "stop_loss": _f(r.stop_loss),
        "take_profit": _f(r.take_profit),
        "pnl_usd": _f(r.pnl_usd),
        "pnl_pct": _f(r.pnl_pct),
        "exit_reason": r.exit_reason,
        "holding_time_seconds": r.holding_seconds,
        "signal_strength": _f(r.signal_strength),
        "created_at": legacy_created(r.created_at),
    }


def _snapshot_dict(r: Any) -> dict[str, Any]:
    return {
        "id": int(r.id),
        "date": r.snapshot_date.isoformat(),
        "mode": r.mode,
        "starting_equity": float(r.starting_equity),
        "ending_equity": float(r.ending_equity),
        "daily_pnl": float(r.daily_pnl),
        "daily_pnl_pct": float(r.daily_pnl_pct),
        "trades_count": r.trades_count,
        "wins_count": r.wins_count,
        "losses_count": r.losses_count,
        "open_positions": r.open_positions,
        "created_at": legacy_created(r.created_at),
    }


def _event_dict(r: Any) -> dict[str, Any]:
    return {
        "id": int(r.id),
        "event_time": legacy_time(r.event_time),
        "event_type": r.event_type,
        "event_level": r.event_level,
        "message": r.message,
        "details": None if r.details is None else json.dumps(r.details),
        "created_at": legacy_created(r.created_at),
    }


@dataclass(frozen=True, slots=True)
class _Op:
    """One write call, validated: what is queued, spooled and performed."""

    kind: OpKind
    record: _Record

    def to_spool(self) -> dict[str, Any]:
        return {"op": self.kind, "data": self.record.to_record()}

    @classmethod
    def from_spool(cls, record: dict[str, Any]) -> _Op:
        kind = record["op"]
        return cls(kind, _RECORD_TYPES[kind].from_record(record["data"]))


class _CallState(threading.local):
    """Per thread: how deep in adapter calls we are, and the calls queued meanwhile."""

    def __init__(self) -> None:
        self.depth = 0
        self.deferred: deque[_Op] = deque()


class DuplicateTradeError(ConstraintViolationError):
    """``log_trade_entry`` with a ``trade_id`` the bot already has (nothing written)."""


# ------------------------------------------------------------------------------ class


class TradeDatabase:
    """Momentum's trade database on the shared schema (see the module docstring).

    ``TradeDatabase(db_path='data/trading.db')`` as before; the keyword-only extras are for
    configuration and tests: ``bot_id`` (default ``ALPHA_MOMENTUM_BOT_ID`` or
    ``momentum_001``), ``settings``, ``engine``, ``write_path`` (to share them), ``cache``
    (update the Redis position cache, default True), ``legacy_tz`` (zone of the legacy
    file's naive times, default ``ALPHA_MOMENTUM_LEGACY_TZ`` or UTC) and
    ``import_legacy`` (default True).

    Always truthy (``if self.db:`` guards every call site).
    """

    def __init__(
        self,
        db_path: str = "data/trading.db",
        *,
        bot_id: str | None = None,
        settings: Settings | None = None,
        engine: Engine | None = None,
        write_path: WritePath | None = None,
        cache: bool = True,
        legacy_tz: str | None = None,
        import_legacy: bool = True,
    ) -> None:
        self.db_path = Path(db_path)
        self.bot_id: str = validate_bot(bot_id or os.environ.get(BOT_ID_ENV) or DEFAULT_BOT_ID)
        zone_name = legacy_tz or os.environ.get(LEGACY_TZ_ENV) or "UTC"
        try:
            self.legacy_tz = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"unknown time zone {zone_name!r}") from None
        if engine is None and write_path is not None:
            engine = write_path.engine
        self.settings: Settings = (
            settings
            or (write_path.settings if write_path is not None else None)
            or getattr(engine, "info_settings", None)
            or Settings()
        )
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else make_engine(self.settings)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.spool_dir = self.db_path.with_name(self.db_path.name + ".spool")
        self._owns_write_path = write_path is None
        if write_path is None:
            position_cache = PositionCache(make_redis(self.settings)) if cache else None
            write_path = WritePath(
                self.engine,
                settings=self.settings,
                cache=position_cache,
                spool=Spool(self.spool_dir / "fills", self.settings.spool_max_bytes),
            )
        self.write_path: WritePath = write_path
        self._store = MomentumStore(self.engine, self.settings)
        self._spool = Spool(self.spool_dir / "records", self.settings.spool_max_bytes)
        self._spooled = len(self._spool) > 0
        self._import_legacy = import_legacy
        self._state = _CallState()
        self._lock = threading.RLock()
        self._ready = False
        self._starting = False
        self._closed = False
        self._down_until = 0.0
        self._retry_after = 1.0
        self._links: dict[tuple[str, str], str] = {}
        self._symbols: dict[str, str] = {}
        self._links_lock = threading.RLock()  # a signal handler may re-enter
        try:
            self._ensure_ready()
        except DatabaseUnavailableError as exc:
            self._mark_down(exc)
            log.warning(
                "PostgreSQL unreachable at start (%s): calls are kept in %s until it answers",
                exc,
                self.spool_dir,
            )
        url = self.settings.sqlalchemy_url.render_as_string(hide_password=True)
        print(f"✓ Database initialized: {url} (bot {self.bot_id}, legacy file {self.db_path})")

    def __bool__(self) -> bool:
        return True  # never falsy: every call site is guarded by ``if self.db:``

    def __repr__(self) -> str:
        return f"TradeDatabase({str(self.db_path)!r}, bot_id={self.bot_id!r})"

    # -- attribution -----------------------------------------------------------------------
    def client_order_id(self, reason: str = "entry", symbol: str | None = None) -> str:
        """A fresh ``orderLinkId`` for the next order (``momentum_001:<code>:<stamp>``,
        <= 36 characters): ``"entry"`` for an entry, the exit reason for an exit.

        With ``symbol``, the adapter also records it as the ``client_order_id`` of its own
        fill of that leg (the next ``log_trade_entry`` / ``log_trade_exit`` of the symbol).
        """
        link = make_order_link_id(self.bot_id, reason)
        if symbol is not None:
            leg = "entry" if reason_code(reason) == "entry" else "exit"
            with self._links_lock:
                self._links[(validate_symbol(symbol), leg)] = link
        return link

    def _take_link(self, symbol: str | None, leg: str) -> str:
        if symbol is None:
            return ""
        with self._links_lock:
            return self._links.pop((symbol, leg), "")

    # -- writes ----------------------------------------------------------------------------
    def log_trade_entry(
        self,
        trade_id: str,
        mode: str,
        symbol: str,
        side: str,
        entry_price: float,
        quantity: float,
        position_size_usd: float,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        signal_strength: float | None = None,
    ) -> int:
        """Record a trade entry and its fill; returns the trade's id (0 if queued or
        spooled). Raises ``ValidationError`` for bad values and ``DuplicateTradeError``
        for a trade id the bot already has; nothing is written then."""
        self._check_open()
        trade = TradeOpen.build(
            bot_id=self.bot_id,
            trade_id=trade_id,
            mode=mode,
            symbol=symbol,
            side=side,
            entry_price=entry_price,
            quantity=quantity,
            position_size_usd=position_size_usd,
            stop_loss=stop_loss,
            take_profit=take_profit,
            signal_strength=signal_strength,
            entry_time=datetime.now(UTC),
        )
        link = self._take_link(trade.symbol, "entry")
        if link:
            trade = replace(trade, client_order_id=link)
        with self._links_lock:
            self._symbols[trade.trade_key] = trade.symbol
        result = self._submit(_Op("entry", trade))
        return int(result) if isinstance(result, int) else SPOOLED_ID

    def log_trade_exit(
        self,
        trade_id: str,
        exit_price: float,
        pnl_usd: float,
        pnl_pct: float,
        exit_reason: str,
        holding_time_seconds: int,
    ) -> None:
        """Record the exit of an open trade and its fill (the whole quantity, opposite
        side). Unknown trade id: no-op plus a WARNING event; already closed: the first exit
        is kept, plus a WARNING event."""
        self._check_open()
        close = TradeClose.build(
            bot_id=self.bot_id,
            trade_id=trade_id,
            exit_price=exit_price,
            pnl_usd=pnl_usd,
            pnl_pct=pnl_pct,
            exit_reason=exit_reason,
            holding_time_seconds=holding_time_seconds,
            exit_time=datetime.now(UTC),
        )
        with self._links_lock:
            symbol = self._symbols.pop(close.trade_key, None)
        link = self._take_link(symbol, "exit")
        if link:
            close = replace(close, client_order_id=link)
        self._submit(_Op("exit", close))

    def save_daily_snapshot(
        self,
        date: str,
        mode: str,
        starting_equity: float,
        ending_equity: float,
        daily_pnl: float,
        daily_pnl_pct: float,
        trades_count: int,
        wins_count: int,
        losses_count: int,
        open_positions: int,
    ) -> None:
        """Store the day's snapshot for (date, mode), replacing an earlier one of the same
        date and mode."""
        self._check_open()
        snap = SnapshotRecord.build(
            bot_id=self.bot_id,
            date=date,
            mode=mode,
            starting_equity=starting_equity,
            ending_equity=ending_equity,
            daily_pnl=daily_pnl,
            daily_pnl_pct=daily_pnl_pct,
            trades_count=trades_count,
            wins_count=wins_count,
            losses_count=losses_count,
            open_positions=open_positions,
        )
        self._submit(_Op("snapshot", snap))

    def log_event(
        self, event_type: str, level: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        """Store a system event (falsy ``details`` -> NULL, like the original)."""
        self._check_open()
        event = EventRecord.build(
            bot_id=self.bot_id,
            event_type=event_type,
            level=level,
            message=message,
            details=details,
            event_time=datetime.now(UTC),
        )
        self._submit(_Op("event", event))

    def log_risk_event(
        self, risk_type: str, current_value: float, limit_value: float, action_taken: str
    ) -> None:
        """Store a risk event (``current_value`` the loss fraction, ``limit_value`` the
        limit)."""
        self._check_open()
        risk = RiskRecord.build(
            bot_id=self.bot_id,
            risk_type=risk_type,
            current_value=current_value,
            limit_value=limit_value,
            action_taken=action_taken,
            event_time=datetime.now(UTC),
        )
        self._submit(_Op("risk", risk))

    # -- reads -----------------------------------------------------------------------------
    def get_open_trades(self, mode: str | None = None) -> list[dict[str, Any]]:
        """Trades without an exit, newest entry first."""
        mode_f = _filter(mode, "mode")
        rows = self._read(lambda: self._store.open_trades(self.bot_id, mode_f))
        return [_trade_dict(r) for r in rows]

    def get_recent_trades(self, limit: int = 50, mode: str | None = None) -> list[dict[str, Any]]:
        """Closed trades, newest exit first, at most ``limit`` (SQLite LIMIT semantics)."""
        n = sqlite_limit(limit)
        mode_f = _filter(mode, "mode")
        if n == 0:
            return []
        rows = self._read(lambda: self._store.recent_trades(self.bot_id, mode_f, n))
        return [_trade_dict(r) for r in rows]

    def get_daily_snapshots(self, days: int = 30, mode: str | None = None) -> list[dict[str, Any]]:
        """The newest ``days`` snapshots (a row count, not a calendar window)."""
        n = sqlite_limit(days, "days")
        mode_f = _filter(mode, "mode")
        if n == 0:
            return []
        rows = self._read(lambda: self._store.snapshots(self.bot_id, mode_f, n))
        return [_snapshot_dict(r) for r in rows]

    def get_recent_events(self, limit: int = 100, level: str | None = None) -> list[dict[str, Any]]:
        """Momentum's events, newest first; ``level`` is an exact, case-sensitive filter."""
        n = sqlite_limit(limit)
        level_f = _filter(level, "level")
        if n == 0:
            return []
        rows = self._read(lambda: self._store.events(self.bot_id, level_f, n))
        return [_event_dict(r) for r in rows]

    def get_performance_stats(
        self, mode: str | None = None, days: int | None = None
    ) -> dict[str, int | float]:
        """The 11 statistics over closed trades (optionally of one mode, and exited in the
        last ``days`` days), as plain ``int``/``float`` values."""
        mode_f = _filter(mode, "mode")
        since = since_days(days, datetime.now(UTC))
        stats = self._read(lambda: self._store.stats(self.bot_id, mode_f, since))
        if self._state.deferred:
            self._count_deferred(stats, mode_f, since)
        return stats.as_dict()

    def _count_deferred(self, stats: TradeStats, mode: str | None, since: datetime | None) -> None:
        """Add the exits queued by a re-entrant call (not in the database yet)."""
        pending = list(self._state.deferred)
        closes = [op.record for op in pending if isinstance(op.record, TradeClose)]
        if not closes:
            return
        open_in_db = self._read(
            lambda: self._store.open_modes(self.bot_id, [c.trade_key for c in closes])
        )
        queued_entries: dict[str, str] = {}
        counted: set[str] = set()
        for op in pending:
            record = op.record
            if isinstance(record, TradeOpen):
                queued_entries.setdefault(record.trade_key, record.mode)
                continue
            if not isinstance(record, TradeClose) or record.trade_key in counted:
                continue
            key = record.trade_key
            if key in open_in_db:
                trade_mode = open_in_db[key]
            elif key in queued_entries:
                trade_mode = queued_entries[key]
            else:
                continue  # unknown or already closed: the exit will change nothing
            counted.add(key)
            if (mode is None or trade_mode == mode) and (
                since is None or record.exit_time >= since
            ):
                stats.add(record.pnl_usd, record.pnl_pct, record.holding_seconds)

    # -- maintenance -----------------------------------------------------------------------
    def backup(self, backup_path: str | None = None) -> str:
        """Write the bot's records to a SQLite file in the original schema; returns the
        path (default ``<db_path>.backup_<YYYYmmdd_HHMMSS>``, local time as before)."""
        self._check_open()
        target = (
            backup_path
            if backup_path is not None
            else f"{self.db_path}.backup_{datetime.now():%Y%m%d_%H%M%S}"
        )
        self._read(lambda: export_sqlite(self._store, self.bot_id, Path(target)))
        print(f"✓ Database backed up to: {target}")
        return target

    def flush(self) -> int:
        """Deliver what is spooled now; returns how many calls are still pending."""
        self._check_open()
        with self._lock:
            self._down_until = 0.0
            self._deliver_spool()
            self.write_path.flush()
            return len(self._spool)

    def close(self) -> None:
        """Deliver what is spooled (best effort), then release connections. Idempotent;
        later calls raise ``DatabaseError``."""
        if self._closed:
            return
        with self._lock:
            try:
                self._down_until = 0.0
                self._deliver_spool()
                self.write_path.flush()
            except AlphaModelsError as exc:
                log.error("close: spooled calls stay in %s: %s", self.spool_dir, exc)
            self._closed = True
            self._spool.close()
            self._store.close()
            if self._owns_write_path:
                closer = getattr(self.write_path, "close", None)
                if callable(closer):
                    closer()
                self.write_path.spool.close()
            if self._owns_engine:
                self.engine.dispose()

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseError("TradeDatabase is closed")

    # -- readiness -------------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        """Once: check the schema and the bot, import a new legacy file, book fills owed
        by an earlier run, deliver what an earlier run spooled."""
        if self._ready:
            return
        with self._lock:
            if self._ready or self._starting:
                return
            self._starting = True
            try:
                self._store.check_ready(self.bot_id)
                if self._import_legacy:
                    self._import_if_new()
                self.write_path.flush()
                owed = book_missing_fills(self._store, self.write_path, self.bot_id)
                if owed.owed:
                    log.warning(
                        "booked %d trade fill(s) owed by an earlier run (%d already there)",
                        owed.new,
                        owed.existing,
                    )
                self._ready = True
            finally:
                self._starting = False
        if self._spooled:
            with self._lock:
                self._deliver_spool()

    def _import_if_new(self) -> None:
        if not is_legacy_sqlite(self.db_path):
            if self.db_path.exists():
                log.warning("%s is not a SQLite file: nothing imported", self.db_path)
            return
        digest = file_sha256(self.db_path)
        if self._store.was_imported(self.bot_id, digest):
            log.info("legacy file %s already imported (sha256 %s)", self.db_path, digest[:12])
            return
        log.warning("importing the legacy SQLite history %s for %s", self.db_path, self.bot_id)
        report = import_legacy(
            self.db_path,
            store=self._store,
            write_path=self.write_path,
            bot_id=self.bot_id,
            tz=self.legacy_tz,
        )
        print(f"✓ Legacy history imported: {report.summary_line()}")
        log.warning("legacy import done: %s", report.summary_line())
        for rejected in report.rejected:
            log.warning(
                "legacy %s id %s not imported: %s", rejected.table, rejected.id, rejected.reason
            )

    # -- call plumbing ---------------------------------------------------------------------
    def _submit(self, op: _Op) -> Any:
        state = self._state
        if state.depth:
            # Re-entered (a signal handler interrupting a call of this thread): never touch
            # the interrupted call's connection, locks or spool; run after it, in order.
            state.deferred.append(op)
            return None
        state.depth = 1
        try:
            return self._run(op)
        finally:
            try:
                while state.deferred:
                    queued = state.deferred.popleft()
                    try:
                        self._run(queued)
                    except AlphaModelsError as exc:
                        log.error("queued %s call failed: %s", queued.kind, exc)
            finally:
                state.depth = 0

    def _read(self, fn: Callable[[], R]) -> R:
        self._check_open()
        self._ensure_ready()
        return fn()

    def _run(self, op: _Op) -> Any:
        self._check_open()
        if self._spooled or self._down():
            with self._lock:  # keep the order: what is spooled goes first
                if not self._deliver_spool():
                    return self._spool_op(op)
        try:
            self._ensure_ready()
            return self._perform(op, replay=False)
        except DatabaseUnavailableError as exc:
            self._mark_down(exc)
            return self._spool_op(op)

    def _down(self) -> bool:
        return time.monotonic() < self._down_until

    def _mark_down(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self._retry_after
        self._retry_after = min(self._retry_after * 2, 30.0)
        log.warning("PostgreSQL unreachable (%s): spooling calls in %s", exc, self.spool_dir)

    def _spool_op(self, op: _Op) -> int:
        self._spool.append(op.to_spool())
        self._spooled = True
        return SPOOLED_ID

    def _deliver_spool(self) -> bool:
        """Deliver spooled calls in order; True when nothing is pending any more and
        PostgreSQL is not known to be down."""
        if self._down():
            return False
        if not self._spooled:
            return True
        try:
            self._ensure_ready()
            delivered = self._spool.replay(self._deliver)
        except DatabaseUnavailableError as exc:
            self._mark_down(exc)
            return False
        self._spooled = len(self._spool) > 0
        if delivered:
            log.info("delivered %d spooled call(s)", delivered)
        if not self._spooled:
            self._retry_after = 1.0
        return not self._spooled

    def _deliver(self, entry: SpoolEntry) -> None:
        try:
            op = _Op.from_spool(entry.record)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("spooled record %d unreadable, skipped: %s", entry.seq, exc)
            return
        try:
            self._perform(op, replay=True)
        except DatabaseUnavailableError:
            raise
        except AlphaModelsError as exc:
            # Refused for good: it must not block the calls behind it (logged, never silent).
            log.error("spooled %s call %d refused: %s", op.kind, entry.seq, exc)

    def _perform(self, op: _Op, *, replay: bool) -> Any:
        record = op.record
        if isinstance(record, TradeOpen):
            return self._enter(record, replay=replay)
        if isinstance(record, TradeClose):
            return self._exit(record, replay=replay)
        if isinstance(record, EventRecord):
            return self._store.log_event(record, if_absent=replay)
        if isinstance(record, RiskRecord):
            return self._store.log_risk(record, if_absent=replay)
        return self._store.save_snapshot(record)

    def _enter(self, trade: TradeOpen, *, replay: bool) -> int:
        # The row is committed without its own WAL flush: the fill's synchronous commit
        # right after flushes both. Should the fill be spooled instead (PostgreSQL went
        # away in between), the entry is spooled too, so the row is re-delivered.
        row_id = self._store.open_trade(trade, flush=False)
        if row_id is None:
            message = (
                f"log_trade_entry: trade_id {trade.trade_key!r} already exists for "
                f"{self.bot_id}: nothing recorded"
            )
            if replay:
                self._warn("DUPLICATE_TRADE_ENTRY", message, trade.trade_key, trade.symbol)
                return SPOOLED_ID
            raise DuplicateTradeError(message, _DUPLICATE_KEY)
        if not self._book(entry_fill(trade)) and not replay:
            self._spool_op(_Op("entry", trade))
        return row_id

    def _exit(self, close: TradeClose, *, replay: bool) -> None:
        result = self._store.close_trade(close, flush=False)  # flushed by the fill's commit
        if result.status == "closed":
            if not close.client_order_id:
                link = self._take_link(result.symbol, "exit")
                if link:
                    close = replace(close, client_order_id=link)
            fill = exit_fill(
                symbol=result.symbol,
                entry_side=result.side,
                quantity=result.quantity,
                close=close,
            )
            if fill is not None and not self._book(fill) and not replay:
                self._spool_op(_Op("exit", close))
        elif result.status == "unknown":
            self._warn(
                "UNKNOWN_TRADE_EXIT",
                f"log_trade_exit for unknown trade_id {close.trade_key!r}: nothing recorded",
                close.trade_key,
            )
        else:
            self._warn(
                "DUPLICATE_TRADE_EXIT",
                f"log_trade_exit for trade_id {close.trade_key!r}, already closed: the first "
                f"exit is kept (this one: price {close.exit_price}, reason "
                f"{close.exit_reason!r})",
                close.trade_key,
            )

    def _book(self, fill: Any) -> bool:
        """Record a trade leg's fill; False when it was spooled (not in PostgreSQL yet)."""
        try:
            result = self.write_path.record_fill(fill)
        except DatabaseUnavailableError:
            raise
        except AlphaModelsError as exc:
            log.error(
                "fill %s not recorded (%s); it is booked at the next start", fill.exec_id, exc
            )
            return True
        return result.outcome is not Outcome.SPOOLED

    def _warn(
        self, event_type: str, message: str, trade_id: str, symbol: str | None = None
    ) -> None:
        log.warning(message)
        self._store.log_event(
            EventRecord.build(
                bot_id=self.bot_id,
                event_type=event_type,
                level="WARNING",
                message=message,
                details=None,
                event_time=datetime.now(UTC),
                trade_id=trade_id[:100],
                symbol=symbol,
            )
        )
