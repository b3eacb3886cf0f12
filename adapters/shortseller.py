"""ShortSeller -> the shared data layer: fills, lots, positions, Redis, equity, restarts.

ShortSeller (``../shared/docs/SHORTSELLER.md``) keeps its positions only in memory, never
sees a fill (placing an order returns ``{orderId, orderLinkId}``) and lets Bybit close most
positions with exchange-side stops, targets and trailing stops. This adapter listens at its
hook points and maps the strategy's *own* objects onto the write path as bot
``shortseller_001``:

============================  ===========================================================
hook                          what is stored
============================  ===========================================================
:meth:`on_execution`          a Bybit execution dict: a fill with the exchange's execId,
                              orderId, execPrice, execQty and execFee (never the
                              strategy's bar close); ``execType Funding`` goes to
                              ``funding_settlements``, never to a fill or a lot. Exchange
                              exits (empty orderLinkId) are the bot's and close its lots
                              FIFO with the reason from ``stopOrderType``
                              (take_profit / stop_loss / trailing_stop).
:meth:`on_order_placed`       the ``/v5/order/create`` body and Bybit's response: an order.
:meth:`on_order_failed`       an ``audit.system_events`` row.
:meth:`on_order_update`,      the exchange's order / position stream (orders,
:meth:`on_position_update`    ``exchange_positions``).
:meth:`on_position_opened`    an ``asset_positions`` entry after ``update_position(True)``:
                              a ``strategy_trades`` row with the signal price, size,
                              notional, entry time and the SL/TP/trailing levels.
:meth:`on_cooldown`           ``asset_cooldowns[asset]``: its end time, on that trade.
:meth:`on_cross_counts`       ``daily_cross_count`` after ``detect_price_ema_crosses`` or
                              ``reset_daily_cross_counts`` changed it: an
                              ``audit.system_events`` row (``daily_cross_count``, the UTC
                              day and the counts).
:meth:`on_position_closed`    the pre-close snapshot, bar price, exit reason and the
                              (usually discarded) ``close_position`` result.
:meth:`on_equity`             ``walletBalance``: ``bots.current_equity`` and the day's
                              ``equity_snapshots`` row (the fake 100,000 is refused).
:meth:`send_heartbeat`        ``bots.last_heartbeat`` (no disk write).
============================  ===========================================================

Lots, positions and the Redis live position come from the fills, through the write path
(``WritePath.record_fill`` and its cache). The strategy's own ``record_fill`` /
``update_position`` calls (prices = bar closes) are accepted and ignored.

**Never blocks trading.** A hook validates its input (typed
:class:`~alpha_models.errors.ValidationError` on bad input: logged, counted, returned as
:attr:`HookOutcome.REJECTED`), appends one record to the adapter's durable spool (one
fsynced write) and returns; it never touches PostgreSQL or Redis and never raises. A
background thread delivers the spool in order to the write path and to
:mod:`alpha_models.shortseller_store`; while PostgreSQL is down records wait on disk (also
across a hard kill) and are delivered, exactly once thanks to the database's keys, when it
is back.

**Restarts.** :meth:`restore` rebuilds the engine's ``asset_positions`` entries (the same
five keys) and ``asset_cooldowns`` from Redis, or from PostgreSQL when Redis is empty or
older than the last write, plus whatever the spool still holds. The exchange is the judge of
whether a position exists; the database gives back what the exchange does not know: the
signal entry price, the original entry time (so the 24 h limit does not restart), the
notional and the cooldown; and ``daily_cross_count`` as last recorded on the current UTC day
(so the 12-crosses-a-day limit is not bypassed). A restart in the minute between midnight
and the strategy's daily reset (first bar >= 00:01) can give back the previous day's count,
which the strategy (``last_daily_reset`` = today) then keeps until the next reset.

Wiring (``scripts/start_trading.py``, 3 lines; see :meth:`attach`)::

    from adapters.shortseller import get_integration      # E1
    self.alpha_integration = get_integration()             # the old name keeps working
    self.alpha_integration.attach(self)                    # E2, after L82
    self.alpha_integration.restore(self.strategy_engine)   # E3, after sync_positions
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Protocol

import redis
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from alpha_models import shortseller_store as store
from alpha_models.bots import PLATFORM_BOTS, BotSpec, register_bots
from alpha_models.bybit_stream import parse_execution, parse_order, parse_position
from alpha_models.errors import (
    AlphaModelsError,
    DatabaseUnavailableError,
    SchemaBehindError,
    ValidationError,
)
from alpha_models.inputs import (
    KNOWN_BOTS,
    UNKNOWN_BOT,
    FillInput,
    OrderUpdate,
    PositionUpdate,
    to_decimal8,
    to_utc,
    validate_symbol,
)
from alpha_models.order_link import canonical_reason, make_order_link_id, parse_order_link_id
from alpha_models.runtime import build_write_path, make_redis
from alpha_models.settings import Settings
from alpha_models.spool import Spool, SpoolEntry
from alpha_models.writepath import Outcome, WritePath, fill_to_record, order_to_record

__all__ = [
    "ASSETS",
    "BOT_ID",
    "FAKE_BALANCE",
    "HookOutcome",
    "RestoreReport",
    "ShortSellerAdapter",
    "StrategyEngine",
    "get_integration",
    "wallet_balance",
]

log = logging.getLogger(__name__)

BOT_ID: Final = "shortseller_001"
ASSETS: Final[Mapping[str, str]] = {"BTC": "BTCUSDT", "ETH": "ETHUSDT", "SOL": "SOLUSDT"}
FAKE_BALANCE: Final = Decimal("100000")
"""ShortSeller's ``get_account_balance`` answers ``walletBalance '100000'`` on any error (B5)."""

COOLDOWN_REASON: Final = "Trade Execution"
_STATE_PREFIX: Final = "strategy_state"
_SEEN_MAX: Final = 20_000
_ORDERS_MAX: Final = 2_000
_IDLE_POLL_S: Final = 1.0
_MIN_BACKOFF_S: Final = 0.2
_MAX_BACKOFF_S: Final = 5.0
_RECENT_ORDER_S: Final = 120.0
_BATCH: Final = 200
_TIME_FIELDS: Final = frozenset({"entry_time", "exit_time", "at"})
_DECIMAL_FIELDS: Final = frozenset(
    {
        "entry_price",
        "quantity",
        "notional",
        "stop_loss",
        "take_profit",
        "exit_price",
        "pnl_usd",
        "pnl_pct",
        "equity",
    }
)
_CREATE_TYPE_REASONS: Final[Mapping[str, str]] = {
    "CreateByTakeProfit": "take_profit",
    "CreateByPartialTakeProfit": "take_profit",
    "CreateByStopLoss": "stop_loss",
    "CreateByPartialStopLoss": "stop_loss",
    "CreateByTrailingStop": "trailing_stop",
    "CreateByClosing": "manual",
    "CreateByLiq": "liquidation",
    "CreateByTakeOver_PassThrough": "liquidation",
    "CreateByAdl_PassThrough": "adl",
}


class HookOutcome(StrEnum):
    """What a hook did with its input (the strategy may ignore it)."""

    QUEUED = "queued"  # durably spooled; the writer will deliver it
    DUPLICATE = "duplicate"  # an execId this process already queued
    REJECTED = "rejected"  # invalid input (typed ValidationError, logged)
    IGNORED = "ignored"  # accepted, nothing to store (e.g. the strategy's own "fills")
    FAILED = "failed"  # the adapter could not keep it (spool unusable; logged)


class StrategyEngine(Protocol):
    """What :meth:`ShortSellerAdapter.restore` needs of ShortSeller's strategy engine."""

    asset_positions: dict[str, dict[str, Any]]
    asset_cooldowns: dict[str, dict[str, Any] | None]
    # ``daily_cross_count`` (asset -> int) is restored too when the engine has it.


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What :meth:`ShortSellerAdapter.restore` did.

    ``source``: where the trade records came from (``redis``, ``postgres``, ``spool`` when
    only the local spool answered, ``none``, ``error``); ``actions``: asset -> one of
    ``restored``, ``restored_exchange_unknown``, ``adopted``, ``closed_while_down``,
    ``foreign_long``, ``flat``, ``unchanged``; ``cooldowns``: asset -> end time restored;
    ``cross_counts``: asset -> today's ``daily_cross_count`` restored.
    """

    source: str
    actions: dict[str, str] = field(default_factory=dict)
    cooldowns: dict[str, datetime] = field(default_factory=dict)
    cross_counts: dict[str, int] = field(default_factory=dict)
    pending_records: int = 0


class _Unavailable(Exception):
    """PostgreSQL (or the write path's spool backlog) is not writable now: stop the round."""


class _StopRound(Exception):
    """Raised by ``_deliver`` to end a round after a record went to the write path's spool."""


# ------------------------------------------------------------------------------ values


def _now(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    return to_utc("at", at)


def _number_text(field_name: str, value: Any, *, positive: bool = False) -> str:
    """The exact text of a strategy number (float -> ``repr``, so it round-trips exactly)."""
    if isinstance(value, bool) or value is None:
        raise ValidationError(field_name, value, "expected a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(field_name, value, "not finite")
        text = repr(value)
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValidationError(field_name, value, "not finite")
        text = format(value, "f")
    elif isinstance(value, str):
        try:
            parsed = Decimal(value)
        except InvalidOperation:
            raise ValidationError(field_name, value, "not a number") from None
        if not parsed.is_finite() or value != value.strip():
            raise ValidationError(field_name, value, "not a plain finite number")
        text = value
    else:
        raise ValidationError(field_name, value, f"expected a number, got {type(value).__name__}")
    to_decimal8(field_name, text, "positive" if positive else "any")
    return text


def _optional_number_text(field_name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _number_text(field_name, value, positive=True)


def _decimal_or_none(text: str | None) -> str | None:
    return None if text is None else format(to_decimal8("value", text), "f")


def _aware(field_name: str, value: Any, default: datetime) -> datetime:
    if value is None:
        return default
    return to_utc(field_name, value)


def wallet_balance(value: Any) -> Decimal:
    """``walletBalance`` (USDT) out of what ShortSeller has: a number, a Bybit wallet coin
    dict (``{"walletBalance": ...}``) or the ``/v5/account/wallet-balance`` result
    (``list[].coin[]``). Refuses NaN, values <= 0 and the fake ``100000`` (B5)."""
    raw: Any = value
    if isinstance(value, Mapping):
        if "walletBalance" in value:
            raw = value["walletBalance"]
        else:
            accounts = value.get("list")
            if isinstance(value.get("result"), Mapping):
                accounts = value["result"].get("list")
            raw = None
            for account in accounts if isinstance(accounts, list) else []:
                coins = account.get("coin") if isinstance(account, Mapping) else None
                for coin in coins if isinstance(coins, list) else []:
                    if isinstance(coin, Mapping) and coin.get("coin") == "USDT":
                        raw = coin.get("walletBalance")
            if raw is None:
                raise ValidationError("walletBalance", value, "no USDT walletBalance found")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ValidationError("walletBalance", raw, "not finite")
    balance = to_decimal8("walletBalance", raw, "positive")
    if balance == FAKE_BALANCE:
        raise ValidationError(
            "walletBalance", raw, "the 100000 ShortSeller reports when the balance call failed"
        )
    return balance


def _is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError | InterfaceError | DatabaseUnavailableError)


def _decode(params: Mapping[str, Any]) -> dict[str, Any]:
    """Spooled text back to database values (times, Decimals, the snapshot day)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            out[key] = None
        elif key in _TIME_FIELDS:
            out[key] = datetime.fromisoformat(value)
        elif key in _DECIMAL_FIELDS:
            out[key] = Decimal(value)
        elif key == "day":
            out[key] = date.fromisoformat(value)
        else:
            out[key] = value
    return out


def _cooldown_entry(end: datetime, hours: int = 1) -> dict[str, Any]:
    """An ``asset_cooldowns`` value, shaped as ``apply_trade_execution_cooldown`` makes it."""
    return {
        "end_time": end,
        "reason": COOLDOWN_REASON,
        "started_at": end - timedelta(hours=hours),
        "duration_hours": hours,
    }


# ------------------------------------------------------------------------------ adapter


class ShortSellerAdapter:
    """See the module docstring. Create one per process (:func:`get_integration`).

    ``settings`` (default: the environment) gives PostgreSQL (``POSTGRES_*``), Redis
    (``REDIS_*`` including ``REDIS_DB``) and the spool (``ALPHA_SPOOL_DIR``): the write path
    spools in ``spool_dir``, the adapter in ``spool_dir/adapter-<bot_id>``. ``start=False``
    keeps the background writer stopped (records only accumulate in the spool).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bot_id: str = BOT_ID,
        assets: Mapping[str, str] = ASSETS,
        mode: str = "demo",
        start: bool = True,
    ) -> None:
        self.bot_id = bot_id
        self.assets: dict[str, str] = dict(assets)
        self.symbols: frozenset[str] = frozenset(self.assets.values())
        self._asset_of = {symbol: asset for asset, symbol in self.assets.items()}
        self.mode = mode if mode in ("demo", "live") else "demo"
        self.counts: dict[str, int] = {o.value: 0 for o in HookOutcome}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._orders: OrderedDict[str, str] = OrderedDict()  # orderId -> canonical reason
        self._open_keys: dict[str, str] = {}  # asset -> trade_key of the open trade
        self._recent_order: dict[str, tuple[float, dict[str, Any], dict[str, Any]]] = {}
        self._exit_context: dict[str, tuple[Any, Any]] = {}  # asset -> (price, reason)
        self._close_results: dict[str, Any] = {}  # symbol -> last close_position result
        self._synced: dict[str, Mapping[str, Any]] = {}  # asset -> exchange position
        self._retry_links: dict[tuple[str, str, bool], tuple[float, str]] = {}
        self._crosses_seen: dict[str, int] | None = None  # last daily_cross_count recorded
        self._positions_failed = False
        self._heartbeat_at: datetime | None = None
        self._cond = threading.Condition()
        self._idle = threading.Event()
        self._work = False
        self._kicked = False
        self._stopping = False
        self._backing_off = False
        self._failed_rounds = 0
        self._state_dirty = True
        self._redis_down = False
        self._link_dirty = False
        self._bot_ready = False
        self._stop_round = False
        self._thread: threading.Thread | None = None
        self._sig_cache: dict[Any, inspect.Signature | None] = {}
        self.settings: Settings | None = None
        self.write_path: WritePath | None = None
        self.spool: Spool | None = None
        self._redis: redis.Redis | None = None
        self.disabled_reason: str | None = None
        try:
            self.settings = settings or Settings()
            self.write_path = build_write_path(self.settings)
            self._redis = make_redis(self.settings)
            spool_dir = Path(self.settings.spool_dir) / f"adapter-{bot_id}"
            self.spool = Spool(spool_dir, self.settings.spool_max_bytes)
        except Exception as exc:  # never raise into the strategy: run disabled, loudly
            self.disabled_reason = f"{type(exc).__name__}: {exc}"
            log.error("shortseller adapter disabled: %s", self.disabled_reason)
            return
        if start:
            self.start()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        assert self.write_path is not None
        return self.write_path.engine

    def start(self) -> None:
        """Start the background writer (idempotent)."""
        if self.spool is None or (self._thread is not None and self._thread.is_alive()):
            return
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"alpha-writer-{self.bot_id}", daemon=True
        )
        self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is stored (True), PostgreSQL is found
        unavailable (False, records stay spooled) or ``timeout`` passes (False)."""
        if self._thread is None or not self._thread.is_alive():
            return False
        with self._cond:
            failed_before = self._failed_rounds
            self._kicked = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle.wait(0.01):
                return True
            if self._failed_rounds > failed_before:
                return False
        return self._idle.is_set()

    def pending(self) -> int:
        """Records not yet in PostgreSQL (the adapter's spool plus the write path's)."""
        try:
            own = len(self.spool) if self.spool is not None else 0
            return own + (len(self.write_path.spool) if self.write_path is not None else 0)
        except Exception:  # a closed spool
            return -1

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within ``timeout`` (E4), then stop."""
        self.flush(timeout)
        self.abort()

    def abort(self) -> None:
        """Stop at once, as a hard kill would (undelivered records stay in the spool)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self.spool is not None:
            self.spool.close()
        if self.write_path is not None:
            closer = getattr(self.write_path, "close", None)
            if callable(closer):
                closer()
            self.write_path.engine.dispose()
        if self._redis is not None:
            self._redis.close()

    # -- hook plumbing -----------------------------------------------------------------
    def _count(self, outcome: HookOutcome) -> HookOutcome:
        self.counts[outcome.value] += 1
        return outcome

    def _enqueue(self, kind: str, data: dict[str, Any]) -> HookOutcome:
        if self.spool is None:
            log.error("shortseller adapter disabled (%s): %s dropped", self.disabled_reason, kind)
            return self._count(HookOutcome.FAILED)
        try:
            with self._cond:
                self.spool.append({"kind": kind, "data": data})
                self._idle.clear()
                self._work = True
                self._cond.notify_all()
        except Exception as exc:
            log.error("shortseller adapter: cannot spool %s: %s", kind, exc)
            return self._count(HookOutcome.FAILED)
        return self._count(HookOutcome.QUEUED)

    def _guard(self, what: str, fn: Callable[[], HookOutcome]) -> HookOutcome:
        try:
            return fn()
        except ValidationError as exc:
            log.warning("shortseller adapter: %s rejected: %s", what, exc)
            return self._count(HookOutcome.REJECTED)
        except Exception:
            log.exception("shortseller adapter: %s failed", what)
            return self._count(HookOutcome.FAILED)

    def _asset(self, asset: Any) -> str:
        if not isinstance(asset, str) or asset not in self.assets:
            raise ValidationError(
                "asset", asset, f"not a ShortSeller asset ({sorted(self.assets)})"
            )
        return asset

    def _symbol(self, symbol: Any, field_name: str = "symbol") -> str:
        validate_symbol(symbol, field_name)
        if symbol not in self.symbols:
            raise ValidationError(field_name, symbol, f"not a {self.bot_id} symbol")
        return str(symbol)

    def _check_link(self, link: Any, field_name: str = "orderLinkId") -> str:
        if link is None:
            return ""
        if not isinstance(link, str):
            raise ValidationError(field_name, link, "expected a string")
        if not link:
            return ""
        parsed = parse_order_link_id(link)
        if parsed.bot_id != self.bot_id:
            # ShortSeller sends no orderLinkId or its own; a hex id is LXAlgo's, a
            # ``bot:reason:stamp`` id names its bot: either way not this bot's order.
            owner = parsed.bot_id if parsed.bot_id != UNKNOWN_BOT else f"a {parsed.form} id"
            raise ValidationError(field_name, link, f"{owner}, not an order of {self.bot_id}")
        return link

    def asset_of(self, symbol: str) -> str | None:
        """The strategy's asset name (``BTC``) of a symbol (``BTCUSDT``)."""
        return self._asset_of.get(symbol)

    # -- hooks: exchange -----------------------------------------------------------------
    def map_execution(self, execution: Mapping[str, Any]) -> FillInput:
        """A Bybit execution (stream element, ``/v5/execution/list`` item or trace ``fill``)
        as this bot's fill. Every execution of the bot's symbols on its account is the
        bot's: its own orders, exchange-side TP/SL/trailing exits, manual closes, funding."""
        if not isinstance(execution, Mapping):
            raise ValidationError("execution", execution, "expected a Bybit execution object")
        self._symbol(execution.get("symbol"))
        link = self._check_link(execution.get("orderLinkId"))
        parsed = parse_execution(execution, source="adapter")
        reason = parsed.close_reason
        if parsed.is_trade and reason is None:
            reason = self._orders.get(parsed.order_id) or _CREATE_TYPE_REASONS.get(
                str(execution.get("createType") or "")
            )
        return FillInput(
            exec_id=parsed.exec_id,
            bot_id=self.bot_id,
            symbol=parsed.symbol,
            side=parsed.side,
            exec_price=parsed.exec_price,
            exec_qty=parsed.exec_qty,
            exec_time=parsed.exec_time,
            order_id=parsed.order_id,
            client_order_id=link,
            commission=parsed.commission,
            close_reason=reason,
            exec_type=parsed.exec_type,
            source="adapter",
            known_bots=KNOWN_BOTS | {self.bot_id},
        )

    def on_execution(
        self, execution: Mapping[str, Any], *, at: datetime | None = None
    ) -> HookOutcome:
        """One Bybit execution (stream, REST backfill or the trace's ``fill``)."""

        def run() -> HookOutcome:
            fill = self.map_execution(execution)
            if fill.exec_id in self._seen:
                return self._count(HookOutcome.DUPLICATE)
            order: dict[str, Any] | None = None
            if fill.is_trade and _is_zero(execution.get("leavesQty")):
                order = self._filled_order(execution, fill)
            outcome = self._enqueue(
                "execution", {"fill": fill_to_record(fill)["data"], "order": order}
            )
            if outcome is HookOutcome.QUEUED:
                self._seen[fill.exec_id] = None
                while len(self._seen) > _SEEN_MAX:
                    self._seen.popitem(last=False)
            return outcome

        return self._guard("execution", run)

    def on_executions(self, executions: Iterable[Mapping[str, Any]]) -> list[HookOutcome]:
        """Several executions (a stream message's ``data`` list), in order."""
        return [self.on_execution(e) for e in executions]

    def _filled_order(self, execution: Mapping[str, Any], fill: FillInput) -> dict[str, Any] | None:
        try:
            order = OrderUpdate(
                order_id=fill.order_id,
                client_order_id=fill.client_order_id,
                bot_id=self.bot_id,
                symbol=fill.symbol,
                side=fill.side,
                order_type=str(execution.get("orderType") or "Market"),
                status="Filled",
                qty=execution.get("orderQty") or fill.exec_qty,
                updated_time=fill.exec_time,
                known_bots=KNOWN_BOTS | {self.bot_id},
            )
        except ValidationError:
            return None  # the fill itself is fine; only the derived order state is skipped
        data: dict[str, Any] = order_to_record(order)["data"]
        return data

    def on_order_update(
        self, order: Mapping[str, Any], *, at: datetime | None = None
    ) -> HookOutcome:
        """One element of the private ``order`` stream (or the trace's ``order_update``)."""

        def run() -> HookOutcome:
            if not isinstance(order, Mapping):
                raise ValidationError("order", order, "expected a Bybit order object")
            self._symbol(order.get("symbol"))
            link = self._check_link(order.get("orderLinkId"))
            parsed = parse_order(order, fallback_time=_now(at))
            update = OrderUpdate(
                order_id=parsed.order_id,
                client_order_id=link,
                bot_id=self.bot_id,
                symbol=parsed.symbol,
                side=parsed.side,
                order_type=parsed.order_type,
                status=parsed.status,
                qty=parsed.qty,
                price=parsed.price,
                updated_time=parsed.updated_time,
                known_bots=KNOWN_BOTS | {self.bot_id},
            )
            return self._enqueue("order", order_to_record(update)["data"])

        return self._guard("order update", run)

    def on_position_update(
        self, position: Mapping[str, Any], *, at: datetime | None = None
    ) -> HookOutcome:
        """A Bybit position (stream element or ``/v5/position/list`` item)."""

        def run() -> HookOutcome:
            if not isinstance(position, Mapping):
                raise ValidationError("position", position, "expected a Bybit position object")
            self._symbol(position.get("symbol"))
            update = parse_position(
                position,
                bot_id=self.bot_id,
                known_bots=KNOWN_BOTS | {self.bot_id},
                fallback_time=_now(at),
            )
            return self._enqueue("exchange_position", _position_record(update))

        return self._guard("position update", run)

    # -- hooks: orders -----------------------------------------------------------------
    def propose_order_link_id(self, reason: str, *, at: datetime | None = None) -> str:
        """A fresh ``orderLinkId`` (``shortseller_001:<code>:<stamp>``, <= 36 characters)
        for an order placed for ``reason`` (``entry``, ``Regime Change (INACTIVE)``, ...)."""
        return make_order_link_id(self.bot_id, reason, now=at)

    def on_order_placed(
        self,
        request: Mapping[str, Any],
        response: Mapping[str, Any],
        *,
        reason: str | None = None,
        attempt: int = 1,
        at: datetime | None = None,
    ) -> HookOutcome:
        """``place_order`` succeeded: ``request`` is the ``/v5/order/create`` body, ``response``
        what it returned (``{orderId, orderLinkId}``)."""

        def run() -> HookOutcome:
            if not isinstance(request, Mapping) or not isinstance(response, Mapping):
                raise ValidationError("request", request, "expected the order body and response")
            symbol = self._symbol(request.get("symbol"))
            link = self._check_link(response.get("orderLinkId") or request.get("orderLinkId"))
            order_id = response.get("orderId")
            when = _now(at)
            update = OrderUpdate(
                order_id=order_id if isinstance(order_id, str) else "",
                client_order_id=link,
                bot_id=self.bot_id,
                symbol=symbol,
                side=request.get("side"),  # type: ignore[arg-type]
                order_type=request.get("orderType", "Market"),
                status="New",
                qty=request.get("qty"),  # type: ignore[arg-type]
                price=request.get("price") or None,
                updated_time=when,
                known_bots=KNOWN_BOTS | {self.bot_id},
            )
            why = reason or (parse_order_link_id(link).reason if ":" in link else None)
            if why:
                self._orders[update.order_id] = canonical_reason(why)
                while len(self._orders) > _ORDERS_MAX:
                    self._orders.popitem(last=False)
            if request.get("side") == "Sell" and not request.get("reduceOnly"):  # an entry
                self._recent_order[symbol] = (time.monotonic(), dict(request), dict(response))
            return self._enqueue("order", order_to_record(update)["data"])

        return self._guard("order placed", run)

    def on_order_failed(
        self,
        request: Mapping[str, Any],
        error: str | BaseException,
        *,
        attempt: int = 1,
        at: datetime | None = None,
    ) -> HookOutcome:
        """``place_order`` raised (ShortSeller retries after 1 s): an audit event."""

        def run() -> HookOutcome:
            if not isinstance(request, Mapping):
                raise ValidationError("request", request, "expected the order body")
            symbol = self._symbol(request.get("symbol"))
            message = str(error)[:500]
            return self._event(
                "order_failed",
                "WARNING",
                f"place_order failed (attempt {attempt}): {message}",
                {
                    "attempt": attempt,
                    "error": message,
                    "side": str(request.get("side")),
                    "qty": str(request.get("qty")),
                    "order_link_id": str(request.get("orderLinkId") or ""),
                },
                symbol=symbol,
                at=at,
            )

        return self._guard("order failed", run)

    def _event(
        self,
        event_type: str,
        level: str,
        message: str,
        details: Mapping[str, Any],
        *,
        symbol: str | None = None,
        order_id: str | None = None,
        at: datetime | None = None,
    ) -> HookOutcome:
        params = {
            "bot_id": self.bot_id,
            "event_type": event_type,
            "level": level,
            "message": message,
            "symbol": symbol,
            "order_id": order_id,
            "at": _now(at).isoformat(),
        }
        return self._enqueue("event", {"params": params, "details": dict(details)})

    # -- hooks: strategy state ---------------------------------------------------------
    def on_session_start(
        self,
        *,
        version: str = "",
        cause: str = "",
        demo: bool | None = None,
        at: datetime | None = None,
    ) -> HookOutcome:
        """The strategy started (an audit event; ``demo`` sets the snapshot mode)."""
        if demo is not None:
            self.mode = "demo" if demo else "live"
        return self._guard(
            "session start",
            lambda: self._event(
                "strategy_start",
                "INFO",
                f"ShortSeller {version} started ({cause})",
                {"version": str(version), "cause": str(cause), "mode": self.mode},
                at=at,
            ),
        )

    def on_position_synced(
        self,
        asset: str,
        exchange_position: Mapping[str, Any],
        position: Mapping[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> HookOutcome:
        """``sync_positions`` adopted an exchange position at start-up (before :meth:`restore`)."""

        def run() -> HookOutcome:
            self._asset(asset)
            if not isinstance(exchange_position, Mapping):
                raise ValidationError("exchange_position", exchange_position, "expected a dict")
            self._synced[asset] = dict(exchange_position)
            return self.on_position_update(exchange_position, at=at)

        return self._guard("position synced", run)

    def on_position_sync_failed(self, *, at: datetime | None = None) -> HookOutcome:
        """``get_positions`` failed at start-up (B6: it answers ``[]``): the strategy thinks
        it is flat, so :meth:`restore` lets the database decide instead of the exchange."""
        self._positions_failed = True
        return self._guard(
            "position sync failed",
            lambda: self._event(
                "reconciliation", "WARNING", "get_positions failed at start-up", {}, at=at
            ),
        )

    def on_position_opened(
        self,
        asset: str,
        position: Mapping[str, Any],
        result: Mapping[str, Any] | None = None,
        levels: Mapping[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> HookOutcome:
        """``update_position(asset, True, ...)`` after an entry: ``position`` is the
        ``asset_positions[asset]`` entry, ``result`` the entry's ``place_order`` result,
        ``levels`` the SL/TP/trailing values sent (``stop_loss``, ``take_profit``,
        ``trailing_stop``, ``trailing_activation``; the ``*_price`` names are read too)."""

        def run() -> HookOutcome:
            self._asset(asset)
            symbol = self.assets[asset]
            record = self._trade_open_record(asset, symbol, position, result, levels, _now(at))
            self._open_keys[asset] = record["params"]["trade_key"]
            return self._enqueue("trade_open", record)

        return self._guard("position opened", run)

    def _trade_open_record(
        self,
        asset: str,
        symbol: str,
        position: Mapping[str, Any],
        result: Mapping[str, Any] | None,
        levels: Mapping[str, Any] | None,
        now: datetime,
    ) -> dict[str, Any]:
        if not isinstance(position, Mapping):
            raise ValidationError("position", position, "expected an asset_positions entry")
        price = _number_text("entry_price", position.get("entry_price"), positive=True)
        amount = _number_text("asset_amount", position.get("asset_amount"), positive=True)
        notional = _number_text("leveraged_value", position.get("leveraged_value"), positive=True)
        entry_time = _aware("entry_time", position.get("entry_time"), now)
        result = result or {}
        order_id = result.get("orderId") if isinstance(result.get("orderId"), str) else ""
        link = self._check_link(result.get("orderLinkId"))
        levels = levels or {}

        def level(*names: str) -> str | None:
            for name in names:
                if levels.get(name) not in (None, ""):
                    return _optional_number_text(name, levels[name])
            return None

        stop = level("stop_loss", "stop_loss_price", "stopLoss")
        target = level("take_profit", "take_profit_price", "takeProfit")
        trail = level("trailing_stop", "trailing_stop_distance", "trailingStop")
        activation = level("trailing_activation", "trailing_activation_price", "activePrice")
        trade_key = order_id or link or f"{symbol}:{int(entry_time.timestamp() * 1000)}"
        details = {
            "asset": asset,
            "order_id": order_id,
            "client_order_id": link,
            "entry_price": price,
            "asset_amount": amount,
            "leveraged_value": notional,
            "stop_loss": stop,
            "take_profit": target,
            "trailing_stop": trail,
            "trailing_activation": activation,
        }
        params = {
            "bot_id": self.bot_id,
            "trade_key": trade_key,
            "mode": self.mode,
            "symbol": symbol,
            "rule_id": "ema_cross_short",
            "entry_time": entry_time.isoformat(),
            "entry_price": format(to_decimal8("entry_price", price), "f"),
            "quantity": format(to_decimal8("asset_amount", amount), "f"),
            "notional": format(to_decimal8("leveraged_value", notional), "f"),
            "stop_loss": _decimal_or_none(stop),
            "take_profit": _decimal_or_none(target),
        }
        return {"params": params, "details": details}

    def on_cooldown(
        self, asset: str, cooldown: Mapping[str, Any] | None, *, at: datetime | None = None
    ) -> HookOutcome:
        """``apply_trade_execution_cooldown(asset)`` ran: ``cooldown`` is
        ``asset_cooldowns[asset]`` (``end_time``, ``started_at``, ...)."""

        def run() -> HookOutcome:
            self._asset(asset)
            if not cooldown:
                return self._count(HookOutcome.IGNORED)
            if not isinstance(cooldown, Mapping):
                raise ValidationError("cooldown", cooldown, "expected an asset_cooldowns entry")
            end = to_utc("end_time", cooldown.get("end_time"))
            params = {
                "bot_id": self.bot_id,
                "symbol": self.assets[asset],
                "trade_key": self._open_keys.get(asset),
            }
            details = {"cooldown_until": end.isoformat()}
            return self._enqueue("cooldown", {"params": params, "details": details})

        return self._guard("cooldown", run)

    def on_cross_counts(
        self, counts: Mapping[str, Any], *, at: datetime | None = None
    ) -> HookOutcome:
        """``daily_cross_count`` changed (a cross, or the daily reset): record it, with the
        UTC day, for :meth:`restore`."""

        def run() -> HookOutcome:
            if not isinstance(counts, Mapping):
                raise ValidationError("daily_cross_count", counts, "expected asset -> count")
            checked: dict[str, int] = {}
            for asset, value in counts.items():
                name = self._asset(asset)
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValidationError("daily_cross_count", value, "expected a count >= 0")
                checked[name] = value
            moment = _now(at)
            details = {"day": store.day_of(moment).isoformat(), "counts": checked}
            return self._event(
                store.CROSS_COUNT_EVENT, "INFO", "daily cross counts", details, at=moment
            )

        return self._guard("cross counts", run)

    def on_position_closed(
        self,
        asset: str,
        snapshot: Mapping[str, Any],
        current_price: Any,
        exit_reason: str,
        close_result: Mapping[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> HookOutcome:
        """The strategy closed ``asset``: ``snapshot`` is ``asset_positions[asset]`` *before*
        ``update_position(asset, False)`` zeroed it, ``current_price`` the bar close it exits
        at, ``exit_reason`` its reason, ``close_result`` what ``close_position`` returned
        (``{'status': 'no_position'}`` when the exchange had already closed it: that is no
        fill; the exchange's own exit fill tells the real price and reason)."""

        def run() -> HookOutcome:
            self._asset(asset)
            if not isinstance(snapshot, Mapping):
                raise ValidationError("snapshot", snapshot, "expected an asset_positions entry")
            if not isinstance(exit_reason, str) or not exit_reason:
                raise ValidationError("exit_reason", exit_reason, "expected the exit reason")
            now = _now(at)
            symbol = self.assets[asset]
            exit_text = _optional_number_text("current_price", current_price)
            entry_text = _optional_number_text("entry_price", snapshot.get("entry_price"))
            amount_text = _optional_number_text("asset_amount", snapshot.get("asset_amount"))
            notional_text = _optional_number_text(
                "leveraged_value", snapshot.get("leveraged_value")
            )
            entry_time = _aware("entry_time", snapshot.get("entry_time"), now)
            pnl = pnl_pct = None
            if exit_text is not None and entry_text is not None and amount_text is not None:
                exit_price = Decimal(exit_text)
                entry_price = Decimal(entry_text)
                pnl = to_decimal8("pnl", (entry_price - exit_price) * Decimal(amount_text))
                pnl_pct = to_decimal8("pnl_pct", (entry_price - exit_price) / entry_price)
            status = "order"
            close_order = ""
            if isinstance(close_result, Mapping):
                status = str(close_result.get("status") or "order")
                close_order = str(close_result.get("orderId") or "")
            elif close_result is None:
                status = "unknown"
            if status == "no_position":
                log.info(
                    "shortseller adapter: %s closed by the strategy but the exchange had no "
                    "position (exchange-side exit; the exit fill gives price and reason)",
                    symbol,
                )
            params = {
                "bot_id": self.bot_id,
                "trade_key": self._open_keys.pop(asset, None),
                "new_key": f"{symbol}:{int(entry_time.timestamp() * 1000)}",
                "mode": self.mode,
                "symbol": symbol,
                "rule_id": "ema_cross_short",
                "entry_time": entry_time.isoformat(),
                "entry_price": None
                if entry_text is None
                else format(to_decimal8("e", entry_text), "f"),
                "quantity": None
                if amount_text is None
                else format(to_decimal8("q", amount_text), "f"),
                "notional": None
                if notional_text is None
                else format(to_decimal8("n", notional_text), "f"),
                "exit_time": now.isoformat(),
                "exit_price": _decimal_or_none(exit_text),
                "exit_reason": canonical_reason(exit_reason),
                "pnl_usd": None if pnl is None else format(pnl, "f"),
                "pnl_pct": None if pnl_pct is None else format(pnl_pct, "f"),
                "holding_seconds": max(0, int((now - entry_time).total_seconds())),
            }
            details = {
                "exit_price": exit_text,
                "exit_reason_text": exit_reason[:100],
                "close_status": status,
                "close_order_id": close_order,
            }
            return self._enqueue("trade_close", {"params": params, "details": details})

        return self._guard("position closed", run)

    def on_equity(
        self,
        balance: Any,
        *,
        source: str = "balance",
        daily_pnl: Any = None,
        total_trades: int | None = None,
        active_positions: int | None = None,
        at: datetime | None = None,
    ) -> HookOutcome:
        """A wallet balance reading (start-up, pre-trade, status report)."""

        def run() -> HookOutcome:
            equity = wallet_balance(balance)
            now = _now(at)
            for name, value in (
                ("total_trades", total_trades),
                ("active_positions", active_positions),
            ):
                if value is not None and (type(value) is not int or value < 0):
                    raise ValidationError(name, value, "expected a count")
            params = {
                "bot_id": self.bot_id,
                "equity": format(equity, "f"),
                "day": store.day_of(now).isoformat(),
                "mode": self.mode,
                "trades": total_trades,
                "open": active_positions,
            }
            return self._enqueue("equity", params)

        return self._guard("equity", run)

    def send_heartbeat(self, *, at: datetime | None = None) -> bool:
        """Per bar (E5): refresh ``bots.last_heartbeat`` and deliver the spool. No disk write."""
        try:
            self._heartbeat_at = _now(at)
            with self._cond:
                self._work = True
                self._cond.notify_all()
        except Exception:
            log.exception("shortseller adapter: heartbeat failed")
        return True

    # -- the old AlphaDBClient integration surface (E1) --------------------------------
    def is_connected(self) -> bool:
        """True while the adapter can keep records (its spool works); never blocks."""
        return self.spool is not None

    def update_equity(self, balance: Any) -> bool:
        """The start-up equity hook (L109)."""
        return self.on_equity(balance, source="startup") is HookOutcome.QUEUED

    def record_fill(self, symbol: str, side: str, *args: Any, **kwargs: Any) -> bool:
        """ShortSeller's own "fill" (bar close as price, commission 0, ``exit_order``): never
        stored as a fill (B3); the real fills come from the exchange. Both keyword sets of
        the old integration are accepted; the order id is remembered for attribution."""
        order_id = kwargs.get("order_id") or (args[2] if len(args) > 2 else None)
        reason = kwargs.get("close_reason")
        if isinstance(order_id, str) and order_id and order_id != "exit_order" and reason:
            self._orders[order_id] = canonical_reason(str(reason))
        self._count(HookOutcome.IGNORED)
        return True

    def update_position(self, *args: Any, **kwargs: Any) -> bool:
        """ShortSeller's own Redis position write: ignored, the write path keeps the live
        position in Redis from the fills."""
        self._count(HookOutcome.IGNORED)
        return True

    # -- E2: wrapping the strategy's objects --------------------------------------------
    def attach(self, system: Any) -> None:
        """Wrap (original first, then notify) ``system.bybit_client``'s ``place_order``,
        ``close_position``, ``get_account_balance``, ``get_positions`` and
        ``system.strategy_engine``'s ``update_position``, ``should_exit_position``,
        ``apply_trade_execution_cooldown``, ``detect_price_ema_crosses`` and
        ``reset_daily_cross_counts``. ``place_order`` gets an ``order_link_id`` when
        it accepts one (retries of a failed call reuse it: Bybit refuses a duplicate, so a
        timed-out but accepted order is never placed twice). Never raises."""
        try:
            client = system.bybit_client
            engine = system.strategy_engine
        except AttributeError:
            log.error("shortseller adapter: attach() needs bybit_client and strategy_engine")
            return
        base_url = getattr(client, "base_url", None)
        if isinstance(base_url, str) and base_url:
            self.mode = "demo" if ("demo" in base_url or "testnet" in base_url) else "live"
        self._wrap(client, "place_order", self._around_place_order)
        self._wrap(client, "close_position", self._around_close_position)
        self._wrap(client, "get_account_balance", self._around_balance)
        self._wrap(client, "get_positions", self._around_positions)
        self._wrap(engine, "update_position", functools.partial(self._around_update, engine))
        self._wrap(engine, "should_exit_position", self._around_should_exit)
        self._wrap(
            engine,
            "apply_trade_execution_cooldown",
            functools.partial(self._around_cooldown, engine),
        )
        for name in ("detect_price_ema_crosses", "reset_daily_cross_counts"):
            self._wrap(engine, name, functools.partial(self._around_crosses, engine))

    def _wrap(self, obj: Any, name: str, around: Callable[..., Any]) -> None:
        original = getattr(obj, name, None)
        if not callable(original) or getattr(original, "__alpha_wrapped__", False):
            return

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return around(original, args, kwargs)

        wrapper.__alpha_wrapped__ = True  # type: ignore[attr-defined]
        setattr(obj, name, wrapper)

    def _bind(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        key = getattr(fn, "__func__", fn)
        if key not in self._sig_cache:
            try:
                self._sig_cache[key] = inspect.signature(fn)
            except (TypeError, ValueError):
                self._sig_cache[key] = None
        sig = self._sig_cache[key]
        if sig is None:
            return dict(kwargs)
        try:
            bound = sig.bind_partial(*args, **kwargs)
        except TypeError:
            return dict(kwargs)
        return dict(bound.arguments)

    def _accepts(self, fn: Callable[..., Any], name: str) -> bool:
        self._bind(fn, (), {})
        sig = self._sig_cache.get(getattr(fn, "__func__", fn))
        return sig is not None and name in sig.parameters

    def _around_place_order(
        self, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        call = self._bind(original, args, kwargs)
        symbol, side = str(call.get("symbol") or ""), str(call.get("side") or "")
        reduce_only = bool(call.get("reduce_only") or call.get("reduceOnly"))
        link = ""
        try:
            if self._accepts(original, "order_link_id") and not call.get("order_link_id"):
                link = self._link_for(symbol, side, reduce_only)
                kwargs = {**kwargs, "order_link_id": link}
            elif call.get("order_link_id"):
                link = str(call["order_link_id"])
        except Exception:
            log.exception("shortseller adapter: no orderLinkId proposed")
        request = _order_body(call, link)
        try:
            result = original(*args, **kwargs)
        except Exception as exc:
            if link:
                self._retry_links[(symbol, side, reduce_only)] = (time.monotonic(), link)
            self.on_order_failed(request, exc)
            raise
        self._retry_links.pop((symbol, side, reduce_only), None)
        if isinstance(result, Mapping):
            self.on_order_placed(request, result)
        return result

    def _link_for(self, symbol: str, side: str, reduce_only: bool) -> str:
        previous = self._retry_links.get((symbol, side, reduce_only))
        if previous is not None and time.monotonic() - previous[0] < 30:
            return previous[1]
        asset = self._asset_of.get(symbol, "")
        reason = "entry"
        if reduce_only or side == "Buy":
            reason = str(self._exit_context.get(asset, (None, "close"))[1] or "close")
        return self.propose_order_link_id(reason)

    def _around_close_position(
        self, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        result = original(*args, **kwargs)
        symbol = self._bind(original, args, kwargs).get("symbol")
        if isinstance(symbol, str):
            self._close_results[symbol] = result
        return result

    def _around_balance(
        self, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        result = original(*args, **kwargs)
        self.on_equity(result, source="balance")
        return result

    def _around_positions(
        self, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            result = original(*args, **kwargs)
        except Exception:
            self._positions_failed = True
            raise
        if isinstance(result, list):
            for item in result:
                if isinstance(item, Mapping) and item.get("symbol") in self.symbols:
                    self._synced[self._asset_of[item["symbol"]]] = dict(item)
                    self.on_position_update(item)
        return result

    def _around_should_exit(
        self, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        result = original(*args, **kwargs)
        try:
            call = self._bind(original, args, kwargs)
            if isinstance(result, tuple) and result and result[0]:
                self._exit_context[str(call.get("asset"))] = (call.get("current_price"), result[1])
        except Exception:
            log.exception("shortseller adapter: should_exit_position not observed")
        return result

    def _around_update(
        self,
        engine: Any,
        original: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        call = self._bind(original, args, kwargs)
        asset = call.get("asset")
        before: dict[str, Any] = {}
        try:
            before = dict(engine.asset_positions.get(asset) or {})  # B1: copy, not the alias
        except Exception:
            log.exception("shortseller adapter: no position snapshot")
        result = original(*args, **kwargs)
        try:
            after = engine.asset_positions.get(asset)
            symbol = self.assets.get(str(asset), "")
            if call.get("in_position"):
                recent = self._recent_order.pop(symbol, None)
                if recent is not None and time.monotonic() - recent[0] < _RECENT_ORDER_S:
                    self.on_position_opened(str(asset), after or {}, recent[2], recent[1])
                else:  # sync_positions() adopting an exchange position at start-up
                    self.on_position_synced(str(asset), self._synced.get(str(asset)) or {}, after)
            elif before.get("in_position"):
                price, reason = self._exit_context.pop(str(asset), (None, None))
                self.on_position_closed(
                    str(asset),
                    before,
                    price,
                    str(reason or "unknown"),
                    self._close_results.pop(symbol, None),
                )
        except Exception:
            log.exception("shortseller adapter: update_position not observed")
        return result

    def _around_cooldown(
        self,
        engine: Any,
        original: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        result = original(*args, **kwargs)
        try:
            asset = self._bind(original, args, kwargs).get("asset")
            self.on_cooldown(str(asset), engine.asset_cooldowns.get(asset))
        except Exception:
            log.exception("shortseller adapter: cooldown not observed")
        return result

    def _around_crosses(
        self,
        engine: Any,
        original: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """After a call that may change ``daily_cross_count``: record it if it did."""
        result = original(*args, **kwargs)
        try:
            counts = getattr(engine, "daily_cross_count", None)
            if isinstance(counts, Mapping):
                now = {a: counts[a] for a in self.assets if a in counts}
                if now != self._crosses_seen:
                    self._crosses_seen = dict(now)
                    self.on_cross_counts(now)
        except Exception:
            log.exception("shortseller adapter: daily cross counts not observed")
        return result

    # -- E3: restart recovery ------------------------------------------------------------
    def restore(
        self,
        engine: StrategyEngine,
        *,
        exchange_positions: Iterable[Mapping[str, Any]] | None = None,
        at: datetime | None = None,
        wait_s: float = 5.0,
    ) -> RestoreReport:
        """Give a restarted strategy back its open shorts and cooldowns (see the module
        docstring). Call it after ``sync_positions()``: the engine's ``in_position`` flags
        are then the exchange's verdict, unless ``exchange_positions`` (a
        ``get_positions()`` result) is passed, or ``get_positions`` failed (then the
        database decides). Mutates ``engine.asset_positions[asset]`` in place (aliases see
        it) and ``engine.asset_cooldowns``. Never raises."""
        try:
            return self._restore(engine, exchange_positions, _now(at), wait_s)
        except Exception:
            log.exception("shortseller adapter: restore failed; the strategy keeps its sync state")
            return RestoreReport("error")

    def _restore(
        self,
        engine: StrategyEngine,
        exchange_positions: Iterable[Mapping[str, Any]] | None,
        now: datetime,
        wait_s: float,
    ) -> RestoreReport:
        self.flush(wait_s)  # what the previous process left in the spool, first
        states, source = self.load_states(now)
        pending = self.spool.pending() if self.spool is not None else []
        states = fold_records(states, (e.record for e in pending))
        if pending and source == "none":
            source = "spool"
        exchange = self._exchange_view(engine, exchange_positions)
        report = RestoreReport(source, pending_records=len(pending))
        for asset, symbol in self.assets.items():
            entry = engine.asset_positions.get(asset)
            if entry is None:
                continue
            state = states.get(symbol)
            report.actions[asset] = self._restore_asset(
                asset, entry, state, exchange.get(asset, ("?",)), now
            )
            until = _cooldown_end(state)
            if until is not None and until > now:
                engine.asset_cooldowns[asset] = _cooldown_entry(until)
                report.cooldowns[asset] = until
        self._restore_cross_counts(engine, now, pending, report)
        log.info("shortseller adapter: restored from %s: %s", source, report.actions)
        return report

    def _restore_cross_counts(
        self, engine: Any, now: datetime, pending: list[SpoolEntry], report: RestoreReport
    ) -> None:
        """Today's last recorded ``daily_cross_count`` (the spool is newer than PostgreSQL)."""
        counts = getattr(engine, "daily_cross_count", None)
        if not isinstance(counts, dict):
            return
        day = store.day_of(now).isoformat()
        stored: Mapping[str, Any] | None = None
        for entry in pending:
            record = entry.record
            data = record.get("data") or {}
            details = data.get("details") or {}
            if (
                record.get("kind") == "event"
                and (data.get("params") or {}).get("event_type") == store.CROSS_COUNT_EVENT
                and details.get("day") == day
            ):
                stored = details.get("counts")
        if stored is None:
            try:
                with self.engine.connect() as conn:
                    stored = store.latest_cross_counts(conn, self.bot_id, day, now)
                    conn.rollback()
            except DBAPIError as exc:
                log.warning("shortseller adapter: cross counts not restored: %s", _first_line(exc))
        for asset, value in (stored or {}).items():
            if asset in counts and isinstance(value, int) and not isinstance(value, bool):
                counts[asset] = max(int(counts[asset] or 0), value)
                report.cross_counts[asset] = counts[asset]
        self._crosses_seen = {a: counts[a] for a in self.assets if a in counts}

    def _restore_asset(
        self,
        asset: str,
        entry: dict[str, Any],
        state: store.TradeState | None,
        exchange: tuple[Any, ...],
        now: datetime,
    ) -> str:
        symbol = self.assets[asset]
        is_open = state is not None and state.open_at(now)
        side = exchange[0]
        if side == "?":  # the exchange could not be asked: the database decides
            if state is not None and is_open:
                self._apply_open(asset, entry, state, None)
                return "restored_exchange_unknown"
            return "unchanged"
        if side == "Sell":
            size, avg, value = exchange[1], exchange[2], exchange[3]
            if state is not None and is_open:
                self._apply_open(asset, entry, state, size)
                return "restored"
            if not entry.get("in_position"):  # not adopted by sync_positions: do it here
                entry.update(
                    in_position=True,
                    entry_price=float(avg or 0),
                    asset_amount=float(size),
                    leveraged_value=float(value or 0),
                    entry_time=now,
                )
            self._adopt(asset, entry, now)
            return "adopted"
        if entry.get("in_position"):
            entry.update(in_position=False, entry_price=0, asset_amount=0, leveraged_value=0)
            entry["entry_time"] = None
        if side == "Buy":
            self._event(
                "reconciliation",
                "CRITICAL",
                f"{symbol}: the exchange holds a long; ShortSeller only shorts, not adopted",
                {"asset": asset},
                symbol=symbol,
                at=now,
            )
        if state is not None and is_open:
            params = {
                "bot_id": self.bot_id,
                "symbol": symbol,
                "trade_key": state.trade_key,
                "exit_time": now.isoformat(),
                "exit_reason": "external_close_during_downtime",
            }
            details = {"reconciled_at": now.isoformat(), "reconcile": "exchange flat at restart"}
            self._enqueue("reconcile", {"params": params, "details": details})
            self._event(
                "reconciliation",
                "WARNING",
                f"{symbol}: open trade {state.trade_key} but the exchange is flat: closed "
                "while the strategy was down (the exit fills tell how)",
                {"trade_key": state.trade_key},
                symbol=symbol,
                at=now,
            )
            return "foreign_long" if side == "Buy" else "closed_while_down"
        return "foreign_long" if side == "Buy" else "flat"

    def _apply_open(
        self, asset: str, entry: dict[str, Any], state: store.TradeState, size: Decimal | None
    ) -> None:
        d = state.details
        amount = float(size) if size is not None else float(d.get("asset_amount") or state.quantity)
        entry.update(
            in_position=True,
            entry_price=float(d.get("entry_price") or state.entry_price),
            asset_amount=amount,
            leveraged_value=float(d.get("leveraged_value") or state.notional or 0),
            entry_time=state.entry_time,
        )
        self._open_keys[asset] = state.trade_key

    def _adopt(self, asset: str, entry: dict[str, Any], now: datetime) -> None:
        symbol = self.assets[asset]
        try:
            record = self._trade_open_record(asset, symbol, entry, None, None, now)
        except ValidationError as exc:
            log.warning("shortseller adapter: %s not adopted: %s", symbol, exc)
            return
        record["params"]["trade_key"] = f"adopted:{symbol}:{int(now.timestamp() * 1000)}"
        record["details"]["adopted"] = True
        self._open_keys[asset] = record["params"]["trade_key"]
        self._enqueue("trade_open", record)
        self._event(
            "reconciliation",
            "WARNING",
            f"{symbol}: exchange short unknown to the database: adopted as it is",
            {"asset": asset},
            symbol=symbol,
            at=now,
        )

    def _exchange_view(
        self, engine: StrategyEngine, positions: Iterable[Mapping[str, Any]] | None
    ) -> dict[str, tuple[Any, ...]]:
        """asset -> ("Sell"|"Buy", size, avgPrice, positionValue), ("",) flat, ("?",) unknown."""
        view: dict[str, tuple[Any, ...]] = {}
        if positions is None:
            for asset in self.assets:
                entry = engine.asset_positions.get(asset) or {}
                if self._positions_failed:
                    view[asset] = ("?",)
                elif entry.get("in_position"):
                    synced = self._synced.get(asset) or {}
                    side = synced.get("side") if synced.get("side") in ("Buy", "Sell") else "Sell"
                    size = Decimal(_number_text("asset_amount", entry.get("asset_amount") or 0))
                    view[asset] = (side, size, synced.get("avgPrice"), synced.get("positionValue"))
                else:
                    view[asset] = ("",)
            return view
        view = {asset: ("",) for asset in self.assets}
        for item in positions:
            try:
                update = parse_position(
                    item,
                    bot_id=self.bot_id,
                    known_bots=KNOWN_BOTS | {self.bot_id},
                    fallback_time=datetime.now(UTC),
                )
            except ValidationError as exc:
                log.warning("shortseller adapter: exchange position ignored: %s", exc)
                bad = item.get("symbol") if isinstance(item, Mapping) else None
                if bad in self._asset_of:
                    view[self._asset_of[str(bad)]] = ("?",)
                continue
            found = self._asset_of.get(update.symbol)
            if found is None:
                continue
            asset = found
            if update.side == "":
                view[asset] = ("",)
            else:
                view[asset] = (
                    str(update.side),
                    update.size,
                    item.get("avgPrice"),
                    item.get("positionValue"),
                )
        return view

    def load_states(self, as_of: datetime) -> tuple[dict[str, store.TradeState], str]:
        """The newest trade per symbol entered by ``as_of``: from Redis when it holds a copy
        at least as new as PostgreSQL's last write (or PostgreSQL cannot be asked), else
        from PostgreSQL. A Redis copy holding a later trade (a replay over a database that
        is ahead) is not usable: PostgreSQL then answers as of ``as_of``."""
        cached = self._read_redis_state()
        if cached is not None and any(s.entry_time > as_of for s in cached[0].values()):
            cached = None
        pg_ok = True
        try:
            with self.engine.connect() as conn:
                pg_stamp = store.state_stamp(conn, self.bot_id)
                if cached is not None and (pg_stamp is None or cached[1] >= pg_stamp):
                    return cached[0], "redis"
                states = store.load_trade_states(conn, self.bot_id, as_of)
                conn.rollback()
            return states, "postgres"
        except DBAPIError as exc:
            pg_ok = False
            log.warning(
                "shortseller adapter: PostgreSQL unavailable for restore: %s", _first_line(exc)
            )
        if cached is not None and not pg_ok:
            return cached[0], "redis"
        return {}, "none"

    # -- Redis copy of the trade state -------------------------------------------------
    def _state_key(self, symbol: str | None = None) -> str:
        base = f"{_STATE_PREFIX}:{self.bot_id}"
        return base if symbol is None else f"{base}:{symbol}"

    def _read_redis_state(self) -> tuple[dict[str, store.TradeState], datetime] | None:
        if self._redis is None:
            return None
        try:
            meta = self._redis.hgetall(self._state_key())
            if not meta or "stamp" not in meta:
                return None
            symbols = [s for s in str(meta.get("symbols", "")).split(",") if s]
            pipe = self._redis.pipeline(transaction=False)
            for symbol in symbols:
                pipe.hgetall(self._state_key(symbol))
            rows = pipe.execute()
            states = {s: store.TradeState.from_redis(r) for s, r in zip(symbols, rows, strict=True)}
            return states, datetime.fromisoformat(str(meta["stamp"]))
        except (redis.exceptions.RedisError, KeyError, ValueError) as exc:
            log.warning("shortseller adapter: Redis state unusable, reading PostgreSQL: %s", exc)
            return None

    def _write_redis_state(self) -> None:
        """Copy PostgreSQL's trade state to Redis (after the commit; Redis is only a cache)."""
        if self._redis is None:
            return
        with self.engine.connect() as conn:
            stamp = store.state_stamp(conn, self.bot_id)
            states = store.load_trade_states(conn, self.bot_id)
            conn.rollback()
        if stamp is None:
            self._state_dirty = False
            return
        try:
            old = self._redis.hget(self._state_key(), "symbols") or ""
            pipe = self._redis.pipeline(transaction=True)
            for symbol in str(old).split(","):
                if symbol and symbol not in states:
                    pipe.delete(self._state_key(symbol))
            for symbol, state in states.items():
                pipe.delete(self._state_key(symbol))
                fields: dict[Any, Any] = state.to_redis()
                pipe.hset(self._state_key(symbol), mapping=fields)
            pipe.hset(
                self._state_key(),
                mapping={
                    "stamp": stamp.isoformat(),
                    "symbols": ",".join(sorted(states)),
                    "written_at": datetime.now(UTC).isoformat(),
                },
            )
            pipe.execute()
            self._state_dirty = self._redis_down = False
        except redis.exceptions.RedisError as exc:
            if not self._redis_down:
                log.warning("shortseller adapter: Redis state not written (retried): %s", exc)
            self._redis_down = True  # retried every round; restore then reads PostgreSQL

    # -- the background writer ---------------------------------------------------------
    def _run(self) -> None:
        delay = 0.0
        backoff = _MIN_BACKOFF_S
        while True:
            with self._cond:
                if self._backing_off:
                    self._cond.wait_for(lambda: self._stopping or self._kicked, timeout=delay)
                else:
                    self._cond.wait_for(
                        lambda: self._stopping or self._work or self._kicked, timeout=delay
                    )
                if self._stopping:
                    return
                self._work = self._kicked = False
            try:
                self._round()
                self._backing_off = False
                backoff = _MIN_BACKOFF_S
                delay = _IDLE_POLL_S
            except _Unavailable as exc:
                if not self._backing_off:
                    log.warning(
                        "shortseller adapter: PostgreSQL unavailable, records wait on disk: %s",
                        exc,
                    )
                self._backing_off = True
                self._failed_rounds += 1
                delay, backoff = backoff, min(backoff * 2, _MAX_BACKOFF_S)
            except Exception:
                log.exception("shortseller adapter: writer round failed; retrying")
                self._backing_off = True
                self._failed_rounds += 1
                delay, backoff = backoff, min(backoff * 2, _MAX_BACKOFF_S)

    def _round(self) -> None:
        assert self.spool is not None and self.write_path is not None
        wp = self.write_path
        if not self._bot_ready:
            self._ensure_bot()
        if len(wp.spool):
            wp.flush()
            if len(wp.spool):
                raise _Unavailable("the write path's spool is not delivered yet")
        self._stop_round = False
        try:
            self.spool.replay(self._deliver, batch=_BATCH)
        except _StopRound:
            raise _Unavailable("PostgreSQL went down during delivery") from None
        except DBAPIError as exc:
            if _is_unavailable(exc):
                raise _Unavailable(_first_line(exc)) from None
            raise
        except DatabaseUnavailableError as exc:
            raise _Unavailable(str(exc)) from None
        self._after_round()
        with self._cond:
            redis_pending = self._state_dirty and not self._redis_down
            if not len(self.spool) and not redis_pending and not self._link_dirty:
                self._idle.set()

    def _after_round(self) -> None:
        try:
            if self._link_dirty:
                with self.engine.begin() as conn:
                    store.link_fills(conn, self.bot_id)
                self._link_dirty = False
            if self._state_dirty:
                self._write_redis_state()
            if self._heartbeat_at is not None:
                at, self._heartbeat_at = self._heartbeat_at, None
                with self.engine.begin() as conn:
                    store.record_heartbeat(conn, self.bot_id, at)
        except DBAPIError as exc:
            if _is_unavailable(exc):
                raise _Unavailable(_first_line(exc)) from None
            raise

    def _ensure_bot(self) -> None:
        spec = next((b for b in PLATFORM_BOTS if b.bot_id == self.bot_id), None)
        spec = spec or BotSpec(self.bot_id, "ShortSeller", "shortseller", "EMA cross short")
        try:
            register_bots(self.engine, (spec,))
        except DBAPIError as exc:
            if _is_unavailable(exc):
                raise _Unavailable(_first_line(exc)) from None
            # A bot role may not insert bots (row security): the operator registers it.
            log.warning(
                "shortseller adapter: %s not registered here: %s", spec.bot_id, _first_line(exc)
            )
        self._bot_ready = True

    def _deliver(self, entry: SpoolEntry) -> None:
        if self._stop_round:
            raise _StopRound
        record = entry.record
        try:
            self._deliver_record(str(record.get("kind")), record.get("data") or {})
        except (_StopRound, _Unavailable):
            raise
        except DBAPIError as exc:
            if _is_unavailable(exc):
                raise
            self._reject(entry, exc)
        except (DatabaseUnavailableError, SchemaBehindError):
            raise
        except (AlphaModelsError, ValueError, KeyError, TypeError) as exc:
            self._reject(entry, exc)

    def _deliver_record(self, kind: str, data: Mapping[str, Any]) -> None:
        assert self.write_path is not None
        wp = self.write_path
        bots = KNOWN_BOTS | {self.bot_id}
        if kind == "execution":
            result = wp.record_fill(FillInput(known_bots=bots, **data["fill"]))
            if data.get("order"):
                wp.record_order(OrderUpdate(known_bots=bots, **data["order"]))
            self._link_dirty = True
            if result.outcome is Outcome.SPOOLED:
                self._stop_round = True  # kept by the write path; stop here, in order
        elif kind == "order":
            if wp.record_order(OrderUpdate(known_bots=bots, **data)).outcome is Outcome.SPOOLED:
                self._stop_round = True
        elif kind == "exchange_position":
            wp.record_position(PositionUpdate(known_bots=bots, **data))
        elif kind in ("trade_open", "trade_close", "cooldown", "reconcile"):
            action = {
                "trade_open": store.open_trade,
                "trade_close": store.close_trade,
                "cooldown": store.set_cooldown,
                "reconcile": store.reconcile_trade,
            }[kind]
            with self.engine.begin() as conn:
                action(conn, _decode(data["params"]), data.get("details") or {})
            self._state_dirty = self._link_dirty = True
        elif kind == "equity":
            with self.engine.begin() as conn:
                store.record_equity(conn, _decode(data))
        elif kind == "event":
            with self.engine.begin() as conn:
                store.record_event(conn, _decode(data["params"]), data.get("details") or {})
        else:
            raise ValueError(f"unknown record kind {kind!r}")

    def _reject(self, entry: SpoolEntry, exc: BaseException) -> None:
        """A record the database refuses for good is set aside (durably), never dropped."""
        assert self.spool is not None
        path = self.spool.directory / "rejected.jsonl"
        line = json.dumps({"seq": entry.seq, "error": str(exc)[:500], "record": entry.record})
        with path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        log.error("shortseller adapter: record %d refused, kept in %s: %s", entry.seq, path, exc)


# ------------------------------------------------------------------------------ helpers


def _is_zero(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        return Decimal(value) == 0
    except InvalidOperation:
        return False


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _position_record(update: PositionUpdate) -> dict[str, Any]:
    def text_or_none(value: Decimal | None) -> str | None:
        return None if value is None else format(value, "f")

    return {
        "bot_id": update.bot_id,
        "symbol": update.symbol,
        "side": str(update.side),
        "size": format(update.size, "f"),
        "updated_time": update.updated_time.isoformat(),
        "avg_entry_price": text_or_none(update.avg_entry_price),
        "mark_price": text_or_none(update.mark_price),
        "unrealised_pnl": text_or_none(update.unrealised_pnl),
        "position_idx": update.position_idx,
    }


def _order_body(call: Mapping[str, Any], link: str) -> dict[str, Any]:
    """The ``/v5/order/create`` body ShortSeller's ``place_order`` sends, from its arguments."""
    body: dict[str, Any] = {
        "category": "linear",
        "symbol": call.get("symbol"),
        "side": call.get("side"),
        "orderType": call.get("order_type") or call.get("orderType") or "Market",
        "qty": str(call.get("qty")),
    }
    for name, wire in (
        ("stop_loss", "stopLoss"),
        ("take_profit", "takeProfit"),
        ("trailing_stop", "trailingStop"),
        ("trailing_activation", "activePrice"),
    ):
        if call.get(name) is not None:
            body[wire] = str(call[name])
    if call.get("reduce_only"):
        body["reduceOnly"] = True
    if link:
        body["orderLinkId"] = link
    return body


def _cooldown_end(state: store.TradeState | None) -> datetime | None:
    if state is None:
        return None
    raw = state.details.get("cooldown_until")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw).astimezone(UTC)
    except ValueError:
        return None


def fold_records(
    states: Mapping[str, store.TradeState], records: Iterable[Mapping[str, Any]]
) -> dict[str, store.TradeState]:
    """``states`` with spooled (not yet stored) trade records applied, in order: what the
    database will hold once the spool is delivered."""
    out = dict(states)
    for record in records:
        kind = record.get("kind")
        data = record.get("data") or {}
        params = data.get("params") or {}
        details = dict(data.get("details") or {})
        symbol = params.get("symbol")
        if not isinstance(symbol, str):
            continue
        current = out.get(symbol)
        key = params.get("trade_key")
        if kind == "trade_open":
            out[symbol] = store.TradeState(
                symbol=symbol,
                trade_key=str(key),
                entry_time=datetime.fromisoformat(params["entry_time"]),
                exit_time=None,
                entry_price=Decimal(params["entry_price"]),
                quantity=Decimal(params["quantity"]),
                notional=Decimal(params["notional"]) if params.get("notional") else None,
                details={
                    **(current.details if current and current.trade_key == key else {}),
                    **details,
                },
            )
        elif current is not None and (
            key == current.trade_key
            or (key is None and (current.exit_time is None or kind == "cooldown"))
        ):
            exit_time = current.exit_time
            if kind in ("trade_close", "reconcile") and exit_time is None:
                exit_time = datetime.fromisoformat(params["exit_time"])
            out[symbol] = store.TradeState(
                symbol=symbol,
                trade_key=current.trade_key,
                entry_time=current.entry_time,
                exit_time=exit_time,
                entry_price=current.entry_price,
                quantity=current.quantity,
                notional=current.notional,
                details={**current.details, **details},
            )
    return out


_singleton: ShortSellerAdapter | None = None
_singleton_lock = threading.Lock()


def get_integration(bot_id: str = BOT_ID, **kwargs: Any) -> ShortSellerAdapter:
    """The process's adapter (E1), created on first use from the environment. Never raises:
    with unusable settings it returns an adapter that logs and keeps nothing."""
    global _singleton
    with _singleton_lock:
        if _singleton is None:
            _singleton = ShortSellerAdapter(None, bot_id=bot_id, **kwargs)
        return _singleton
