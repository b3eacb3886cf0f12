"""Validated input models: the only way a fill, an order update or a position update reaches
the write path.

Design
------
* Plain ``@dataclass(frozen=True, slots=True)`` classes (no pydantic): building a
  :class:`FillInput` costs about 5-10 us (CPython 3.11), so validating 200k fills takes
  1-2 s.
* **The constructor is the one way in.** It is keyword-only, takes *loose* input types and
  stores *canonical* values; there is no classmethod, no ``create()`` and no unvalidated path
  (``dataclasses.replace`` calls the same constructor). Attribute types are the canonical ones,
  so readers always get ``Decimal`` / aware UTC ``datetime`` / enum members.
* Every rejection raises :class:`~alpha_models.errors.ValidationError` whose ``field`` is the
  constructor's parameter name and whose ``value`` is the rejected value. Nothing here touches a
  database.

Conversions (shared by every model)
-----------------------------------
* **Numbers** (:data:`NumberLike`): ``Decimal``, ``int``, ``str`` in plain decimal notation
  (ASCII digits, optional sign, point and exponent; no spaces, no ``_``, no ``NaN``), or
  ``float``, which is converted through ``Decimal(repr(x))`` so that ``0.1`` stays ``0.1``; a
  float is never kept. ``bool`` is rejected. The value must be finite and fit ``numeric(20,8)``
  (``abs < 1e12``); it is quantized to 8 decimal places with ``ROUND_HALF_UP`` (what
  PostgreSQL's numeric does). Prices and quantities must be > 0 *after* quantization.
* **Times** (:data:`TimeLike`): an aware ``datetime``; an ``int`` of epoch milliseconds; a
  ``str`` of ASCII digits (epoch milliseconds, Bybit's format) or ISO-8601 *with* an offset or
  ``Z``. Naive values are rejected. Stored as aware UTC. Times must lie in
  [2015-01-01, 2100-01-01), which catches seconds passed as milliseconds.
* **Sides**: exactly ``"Buy"`` or ``"Sell"`` (stored as :class:`Side`); ``"buy"``, ``"BUY"``,
  ``"long"`` are rejected.
* **Symbols**: ``^[A-Z0-9]{2,20}$`` (``BTCUSDT``, ``1000PEPEUSDT``).
* **Bot ids**: ``^[a-z][a-z0-9_]{0,49}$`` *and* either :data:`UNKNOWN_BOT` or a member of the
  known set (``known_bots=`` argument, default :data:`KNOWN_BOTS`).
* **Ids and free text** (``exec_id`` <= 64 and non-empty, ``order_id`` <= 100,
  ``client_order_id`` <= 100, ``close_reason`` <= 50): ``str`` for which ``str.isprintable()``
  holds, i.e. no C0/C1 control characters (``\\x00-\\x1f``, ``\\x7f-\\x9f``: newlines, ANSI
  escapes), no line/paragraph separators, no lone surrogates. Spaces and other printable
  Unicode are allowed (legacy ids contain spaces). Text is stored verbatim, never interpreted.
* Patterns are matched with ``fullmatch`` (``$`` would accept a trailing newline).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

from alpha_models.errors import ValidationError

__all__ = [
    "EXEC_ID_MAX",
    "KNOWN_BOTS",
    "ORDER_STATUSES",
    "UNKNOWN_BOT",
    "ExecType",
    "FillInput",
    "NumberLike",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "PositionUpdate",
    "Side",
    "TimeLike",
    "to_decimal8",
    "to_utc",
    "validate_bot_id",
    "validate_symbol",
]

NumberLike: TypeAlias = Decimal | int | float | str
TimeLike: TypeAlias = datetime | int | str

UNKNOWN_BOT = "unknown"
"""The explicit bucket for executions that cannot be attributed to a bot."""

KNOWN_BOTS: frozenset[str] = frozenset({"shortseller_001", "lxalgo_001", "momentum_001"})
"""Default set of registered bots (rows of ``trading.bots``)."""

EXEC_ID_MAX = 64
ORDER_ID_MAX = 100
CLIENT_ORDER_ID_MAX = 100
CLOSE_REASON_MAX = 50
SYMBOL_MAX = 20
BOT_ID_MAX = 50


class Side(StrEnum):
    """Bybit's order/execution side, exactly as Bybit spells it."""

    BUY = "Buy"
    SELL = "Sell"


class ExecType(StrEnum):
    """Bybit v5 ``execType``.

    Only ``Funding`` does not change the position (a funding settlement: ``execQty`` is the
    position size, ``execPrice`` the mark price, ``execFee`` the funding, positive = paid).
    ``Settle`` and ``Delivery`` *close* a position (delisting/settlement) at a price, so they
    are position-changing executions like ``AdlTrade`` and ``BustTrade``.
    """

    TRADE = "Trade"
    FUNDING = "Funding"
    ADL_TRADE = "AdlTrade"
    BUST_TRADE = "BustTrade"
    SETTLE = "Settle"
    DELIVERY = "Delivery"
    BLOCK_TRADE = "BlockTrade"
    MOVE_POSITION = "MovePosition"
    FUTURE_SPREAD = "FutureSpread"

    @property
    def is_trade(self) -> bool:
        """True if the execution changes the position (everything except ``Funding``)."""
        return self is not ExecType.FUNDING


class OrderType(StrEnum):
    """Bybit v5 ``orderType``."""

    MARKET = "Market"
    LIMIT = "Limit"


class OrderStatus(StrEnum):
    """Bybit v5 ``orderStatus``, with a rank so that a newer message never rolls a status back.

    Ordering (low to high)::

        Created 0 < Untriggered 1 < Triggered 2 < New 3 = Active 3 < PartiallyFilled 4
          < terminal 9: Filled = Cancelled = Rejected = Deactivated = PartiallyFilledCanceled

    A conditional order goes Untriggered -> Triggered -> New -> PartiallyFilled -> Filled, a
    plain one Created -> New -> .... Terminal statuses are final and share one rank: see
    :meth:`OrderUpdate.supersedes` for the replacement rule.
    """

    CREATED = "Created"
    UNTRIGGERED = "Untriggered"
    TRIGGERED = "Triggered"
    NEW = "New"
    ACTIVE = "Active"
    PARTIALLY_FILLED = "PartiallyFilled"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"
    DEACTIVATED = "Deactivated"
    PARTIALLY_FILLED_CANCELED = "PartiallyFilledCanceled"

    @property
    def rank(self) -> int:
        """Position in the lifecycle; higher never yields to lower."""
        return _STATUS_RANK[self]

    @property
    def is_terminal(self) -> bool:
        """True for Filled, Cancelled, Rejected, Deactivated, PartiallyFilledCanceled."""
        return _STATUS_RANK[self] == _TERMINAL_RANK


_TERMINAL_RANK = 9
_STATUS_RANK: dict[OrderStatus, int] = {
    OrderStatus.CREATED: 0,
    OrderStatus.UNTRIGGERED: 1,
    OrderStatus.TRIGGERED: 2,
    OrderStatus.NEW: 3,
    OrderStatus.ACTIVE: 3,
    OrderStatus.PARTIALLY_FILLED: 4,
    OrderStatus.FILLED: _TERMINAL_RANK,
    OrderStatus.CANCELLED: _TERMINAL_RANK,
    OrderStatus.REJECTED: _TERMINAL_RANK,
    OrderStatus.DEACTIVATED: _TERMINAL_RANK,
    OrderStatus.PARTIALLY_FILLED_CANCELED: _TERMINAL_RANK,
}

ORDER_STATUSES: Mapping[str, int] = MappingProxyType({str(s): r for s, r in _STATUS_RANK.items()})
"""Status -> rank, e.g. for a SQL ``CASE`` in an upsert that must not roll a status back."""

# --------------------------------------------------------------------------- validators

_SIDES: dict[str, Side] = {m.value: m for m in Side}
_EXEC_TYPES: dict[str, ExecType] = {m.value: m for m in ExecType}
_ORDER_TYPES: dict[str, OrderType] = {m.value: m for m in OrderType}
_ORDER_STATUSES: dict[str, OrderStatus] = {m.value: m for m in OrderStatus}

_SYMBOL_RE = re.compile(r"[A-Z0-9]{2,20}")
_BOT_ID_RE = re.compile(r"[a-z][a-z0-9_]{0,49}")
_SOURCE_RE = re.compile(r"[a-z_]{1,20}")
_MAX_NUMBER_TEXT = 64
_MAX_MS_DIGITS = 16
_MAX_TIME_TEXT = 40

_Q8 = Decimal("1E-8")
_MAX_ADJUSTED = 12  # abs(d) >= 1e12  <=>  d.adjusted() >= 12
_INT_LIMIT = 10**12
_ZERO8 = Decimal("0E-8")
# Local context: independent of whatever the caller did to the thread's decimal context.
_CTX = Context(prec=40, rounding=ROUND_HALF_UP)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_TIME = datetime(2015, 1, 1, tzinfo=UTC)
_MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)
_MIN_MS = (_MIN_TIME - _EPOCH) // timedelta(milliseconds=1)
_MAX_MS = (_MAX_TIME - _EPOCH) // timedelta(milliseconds=1)

_Sign = Literal["positive", "nonnegative", "any"]


def to_decimal8(field: str, value: Any, sign: _Sign = "any") -> Decimal:
    """Convert ``value`` to a finite ``Decimal`` quantized to 8 dp that fits numeric(20,8).

    ``sign`` is ``"positive"`` (> 0 after quantization), ``"nonnegative"`` or ``"any"``.
    """
    if isinstance(value, str):
        # Decimal() alone would also take " 1", "1_000", non-ASCII digits and "NaN".
        if (
            not value
            or len(value) > _MAX_NUMBER_TEXT
            or not value.isascii()
            or "_" in value
            or value[0] <= " "
            or value[-1] <= " "
        ):
            raise ValidationError(field, value, "not a plain decimal number")
        try:
            d = Decimal(value)
        except InvalidOperation:
            raise ValidationError(field, value, "not a plain decimal number") from None
    elif isinstance(value, Decimal):
        d = value
    elif isinstance(value, bool):
        raise ValidationError(field, value, "expected a number, not a bool")
    elif isinstance(value, int):
        if not -_INT_LIMIT < value < _INT_LIMIT:
            raise ValidationError(field, value, "out of range for numeric(20,8) (abs >= 1e12)")
        d = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(field, value, "not finite")
        d = Decimal(repr(value))
    else:
        raise ValidationError(field, value, f"expected a number, got {type(value).__name__}")
    if not d.is_finite():
        raise ValidationError(field, value, "not finite")
    if d and d.adjusted() >= _MAX_ADJUSTED:
        raise ValidationError(field, value, "out of range for numeric(20,8) (abs >= 1e12)")
    q = d.quantize(_Q8, ROUND_HALF_UP, _CTX)  # cannot trap: at most 20 digits < prec 40
    if not q:
        if sign == "positive":
            raise ValidationError(field, value, "must be > 0 (after rounding to 8 dp)")
        return _ZERO8  # also drops a negative zero
    if q.adjusted() >= _MAX_ADJUSTED:  # 999999999999.999999995 rounds up to 1e12
        raise ValidationError(field, value, "out of range for numeric(20,8) (abs >= 1e12)")
    if sign != "any" and q < 0:
        raise ValidationError(field, value, "must not be negative")
    return q


def _ms_to_utc(field: str, value: Any, ms: int) -> datetime:
    if not _MIN_MS <= ms < _MAX_MS:
        raise ValidationError(field, value, "epoch milliseconds out of range (2015..2100)")
    # Exact: ms / 1000 is within 0.24 us of the true value below 2^32 s, and fromtimestamp
    # rounds to the nearest microsecond (2.5x faster than timedelta arithmetic).
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_utc(field: str, value: Any) -> datetime:
    """Convert ``value`` (aware datetime, epoch-ms int or digit string, ISO-8601 with an offset)
    to an aware UTC ``datetime`` in [2015-01-01, 2100-01-01)."""
    if isinstance(value, str):
        if value.isdigit() and value.isascii() and len(value) <= _MAX_MS_DIGITS:
            return _ms_to_utc(field, value, int(value))
        if len(value) > _MAX_TIME_TEXT:
            raise ValidationError(field, value, "time text too long")
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(field, value, "not ISO-8601 or epoch milliseconds") from None
    elif isinstance(value, datetime):
        dt = value
    elif isinstance(value, bool):
        raise ValidationError(field, value, "expected a time, not a bool")
    elif isinstance(value, int):
        return _ms_to_utc(field, value, value)
    else:
        raise ValidationError(field, value, f"expected a time, got {type(value).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValidationError(field, value, "naive datetime (timezone required)")
    if dt.tzinfo is not UTC:
        try:
            dt = dt.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValidationError(field, value, "out of range") from None
    if not _MIN_TIME <= dt < _MAX_TIME:
        raise ValidationError(field, value, "out of range (2015..2100)")
    return dt


def _text(field: str, value: Any, max_len: int, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, value, f"expected a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise ValidationError(field, value, f"longer than {max_len} characters")
    if not value:
        if not allow_empty:
            raise ValidationError(field, value, "must not be empty")
        return ""
    if not value.isprintable():
        raise ValidationError(field, value, "contains control or non-printable characters")
    return value if type(value) is str else str.__str__(value)


def validate_symbol(value: Any, field: str = "symbol") -> str:
    """A Bybit symbol: ``^[A-Z0-9]{2,20}$``."""
    if not isinstance(value, str):
        raise ValidationError(field, value, f"expected a string, got {type(value).__name__}")
    if len(value) > SYMBOL_MAX:
        raise ValidationError(field, value, f"longer than {SYMBOL_MAX} characters")
    if _SYMBOL_RE.fullmatch(value) is None:
        raise ValidationError(field, value, "not a symbol (^[A-Z0-9]{2,20}$)")
    return str.__str__(value)


def validate_bot_id(
    value: Any, known_bots: Collection[str] | None = None, field: str = "bot_id"
) -> str:
    """A registered bot id (``known_bots``, default :data:`KNOWN_BOTS`) or ``"unknown"``."""
    if not isinstance(value, str):
        raise ValidationError(field, value, f"expected a string, got {type(value).__name__}")
    if len(value) > BOT_ID_MAX or _BOT_ID_RE.fullmatch(value) is None:
        raise ValidationError(field, value, "not a bot id (^[a-z][a-z0-9_]{0,49}$)")
    if value != UNKNOWN_BOT and value not in (KNOWN_BOTS if known_bots is None else known_bots):
        raise ValidationError(field, value, "not a registered bot (nor 'unknown')")
    return str.__str__(value)


def _side(field: str, value: Any) -> Side:
    side = _SIDES.get(value) if isinstance(value, str) else None
    if side is None:
        raise ValidationError(field, value, "must be exactly 'Buy' or 'Sell'")
    return side


def _member(field: str, value: Any, table: dict[str, Any]) -> Any:
    member = table.get(value) if isinstance(value, str) else None
    if member is None:
        raise ValidationError(field, value, f"must be one of {', '.join(table)}")
    return member


_set = object.__setattr__

# ------------------------------------------------------------------------------ models


@dataclass(frozen=True, slots=True, init=False)
class FillInput:
    """One Bybit execution (a ``trading.fills`` row); ``exec_id`` (Bybit ``execId``) is its key.

    Funding settlements are represented as ``FillInput`` with ``exec_type=ExecType.FUNDING``:
    consumers **must** branch on :attr:`is_trade` (False for funding) before booking a fill
    or a lot. ``commission`` is Bybit's ``execFee``: positive = paid, negative = rebate (for
    funding: positive = funding paid).
    """

    exec_id: str
    bot_id: str
    symbol: str
    side: Side
    exec_price: Decimal
    exec_qty: Decimal
    exec_time: datetime
    order_id: str
    client_order_id: str
    commission: Decimal
    close_reason: str | None
    exec_type: ExecType
    source: str

    def __init__(
        self,
        *,
        exec_id: str,
        bot_id: str,
        symbol: str,
        side: Side | str,
        exec_price: NumberLike,
        exec_qty: NumberLike,
        exec_time: TimeLike,
        order_id: str,
        commission: NumberLike,
        source: str,
        client_order_id: str = "",
        close_reason: str | None = None,
        exec_type: ExecType | str = ExecType.TRADE,
        known_bots: Collection[str] | None = None,
    ) -> None:
        _set(self, "exec_id", _text("exec_id", exec_id, EXEC_ID_MAX, allow_empty=False))
        _set(self, "bot_id", validate_bot_id(bot_id, known_bots))
        _set(self, "symbol", validate_symbol(symbol))
        _set(self, "side", _side("side", side))
        _set(self, "exec_price", to_decimal8("exec_price", exec_price, "positive"))
        _set(self, "exec_qty", to_decimal8("exec_qty", exec_qty, "positive"))
        _set(self, "exec_time", to_utc("exec_time", exec_time))
        _set(self, "order_id", _text("order_id", order_id, ORDER_ID_MAX))
        _set(
            self, "client_order_id", _text("client_order_id", client_order_id, CLIENT_ORDER_ID_MAX)
        )
        _set(self, "commission", to_decimal8("commission", commission))
        _set(
            self,
            "close_reason",
            None if close_reason is None else _text("close_reason", close_reason, CLOSE_REASON_MAX),
        )
        _set(self, "exec_type", _member("exec_type", exec_type, _EXEC_TYPES))
        if not isinstance(source, str) or _SOURCE_RE.fullmatch(source) is None:
            raise ValidationError("source", source, "not a source tag (^[a-z_]{1,20}$)")
        _set(self, "source", str.__str__(source))

    @property
    def is_trade(self) -> bool:
        """True if this execution changes the position (False for funding settlements)."""
        return self.exec_type is not ExecType.FUNDING

    @property
    def is_funding(self) -> bool:
        return self.exec_type is ExecType.FUNDING


@dataclass(frozen=True, slots=True, init=False)
class OrderUpdate:
    """One state of a Bybit order (a ``trading.orders`` row is its latest state).

    ``price`` may be 0 (conditional TP/SL orders) or None (Bybit sent ``""``).
    """

    order_id: str
    client_order_id: str
    bot_id: str
    symbol: str
    side: Side
    order_type: OrderType
    status: OrderStatus
    qty: Decimal
    price: Decimal | None
    updated_time: datetime

    def __init__(
        self,
        *,
        order_id: str,
        bot_id: str,
        symbol: str,
        side: Side | str,
        order_type: OrderType | str,
        status: OrderStatus | str,
        qty: NumberLike,
        updated_time: TimeLike,
        client_order_id: str = "",
        price: NumberLike | None = None,
        known_bots: Collection[str] | None = None,
    ) -> None:
        _set(self, "order_id", _text("order_id", order_id, ORDER_ID_MAX, allow_empty=False))
        _set(
            self, "client_order_id", _text("client_order_id", client_order_id, CLIENT_ORDER_ID_MAX)
        )
        _set(self, "bot_id", validate_bot_id(bot_id, known_bots))
        _set(self, "symbol", validate_symbol(symbol))
        _set(self, "side", _side("side", side))
        _set(self, "order_type", _member("order_type", order_type, _ORDER_TYPES))
        _set(self, "status", _member("status", status, _ORDER_STATUSES))
        _set(self, "qty", to_decimal8("qty", qty, "positive"))
        _set(self, "price", None if price is None else to_decimal8("price", price, "nonnegative"))
        _set(self, "updated_time", to_utc("updated_time", updated_time))

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def supersedes(self, current: OrderUpdate) -> bool:
        """True if this update should replace ``current`` as the stored state of the order.

        Rank first, time second: a higher-ranked status always wins (even if delivered late);
        an equal rank wins when it is not older. A terminal status is final: only the same
        status with a strictly newer ``updated_time`` replaces it.
        """
        if self.order_id != current.order_id:
            raise ValidationError("order_id", self.order_id, "not the same order as current")
        if current.status.is_terminal:
            return self.status is current.status and self.updated_time > current.updated_time
        mine, theirs = self.status.rank, current.status.rank
        return mine > theirs or (mine == theirs and self.updated_time >= current.updated_time)


@dataclass(frozen=True, slots=True, init=False)
class PositionUpdate:
    """One exchange position snapshot for (bot, symbol, position_idx).

    Flat is ``side == ""`` with ``size == 0`` (both or neither). ``position_idx`` is Bybit's
    ``positionIdx``: 0 one-way, 1 hedge-mode long (side Buy), 2 hedge-mode short (side Sell).
    """

    bot_id: str
    symbol: str
    side: Side | Literal[""]
    size: Decimal
    avg_entry_price: Decimal | None
    mark_price: Decimal | None
    unrealised_pnl: Decimal | None
    updated_time: datetime
    position_idx: int

    def __init__(
        self,
        *,
        bot_id: str,
        symbol: str,
        side: Side | str,
        size: NumberLike,
        updated_time: TimeLike,
        avg_entry_price: NumberLike | None = None,
        mark_price: NumberLike | None = None,
        unrealised_pnl: NumberLike | None = None,
        position_idx: int = 0,
        known_bots: Collection[str] | None = None,
    ) -> None:
        _set(self, "bot_id", validate_bot_id(bot_id, known_bots))
        _set(self, "symbol", validate_symbol(symbol))
        size_d = to_decimal8("size", size, "nonnegative")
        if side == "" and isinstance(side, str):
            if size_d:
                raise ValidationError("size", size, "a flat position (side '') must have size 0")
            side_v: Side | Literal[""] = ""
        else:
            side_v = _side("side", side)
            if not size_d:
                raise ValidationError("side", side, "size 0 (flat) requires side ''")
        _set(self, "side", side_v)
        _set(self, "size", size_d)
        _set(
            self,
            "avg_entry_price",
            None
            if avg_entry_price is None
            else to_decimal8("avg_entry_price", avg_entry_price, "positive"),
        )
        _set(
            self,
            "mark_price",
            None if mark_price is None else to_decimal8("mark_price", mark_price, "positive"),
        )
        _set(
            self,
            "unrealised_pnl",
            None if unrealised_pnl is None else to_decimal8("unrealised_pnl", unrealised_pnl),
        )
        _set(self, "updated_time", to_utc("updated_time", updated_time))
        if type(position_idx) is not int or position_idx not in (0, 1, 2):
            raise ValidationError("position_idx", position_idx, "must be 0, 1 or 2")
        if (position_idx == 1 and side_v == Side.SELL) or (
            position_idx == 2 and side_v == Side.BUY
        ):
            raise ValidationError(
                "position_idx", position_idx, f"hedge-mode slot {position_idx} cannot be {side_v}"
            )
        _set(self, "position_idx", position_idx)

    @property
    def is_flat(self) -> bool:
        return self.side == ""
