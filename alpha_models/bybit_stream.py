"""Pure parser: a Bybit v5 private-stream message -> validated input events. No I/O.

Message shape (``execution``, ``order``, ``position``; also ``execution.linear`` etc.)::

    {"id": "...", "topic": "execution", "creationTime": 1672364174455, "data": [{...}, ...]}

* Control frames (``{"op": "auth" | "subscribe" | "pong", ...}`` without a topic) give ``[]``.
* Other topics (``wallet``, ``execution.fast``, spot/inverse/option suffixes) are rejected, and
  so is an element whose ``category`` is present and not ``linear``: the platform trades USDT
  perpetuals only.
* Wire types are strict: numbers and times inside ``data`` must be JSON strings (as Bybit
  sends them), ``positionIdx`` an integer, ``creationTime`` an integer. Every rejection is a
  :class:`ValidationError` whose ``field`` names the wire location: ``message`` (undecodable,
  not JSON, not an object), ``topic``, ``creationTime``, ``data``, ``data[0]``,
  ``data[0].execPrice``; the functions for single elements use bare names (``execPrice``).

Mapping
-------
* ``execution`` -> :class:`FillInput`: ``execId`` -> exec_id (the key), ``execTime`` (ms) ->
  exec_time, ``execFee`` -> commission, ``execType`` -> exec_type. **Funding settlements are
  FillInputs with ``exec_type=Funding`` and ``is_trade == False``**: one model for every
  execution, and a consumer must branch on ``is_trade`` before booking a fill or a lot.
  bot_id comes from ``orderLinkId`` (:func:`parse_order_link_id`); a prefix not in
  ``known_bots`` becomes ``unknown``, keeping the reason. close_reason: the link id's
  canonical reason when the id has ``:`` parts; otherwise (``""``, hex, other) the exchange
  cause from ``stopOrderType`` (TakeProfit/StopLoss/TrailingStop and their Partial variants ->
  take_profit/stop_loss/trailing_stop); otherwise None. It is cut to 50 characters (the full
  id stays in client_order_id).
* ``order`` -> :class:`OrderUpdate`: ``orderStatus`` -> status, ``price`` ``""`` -> None,
  ``updatedTime`` -> updated_time (falling back to the envelope's ``creationTime``, then to
  ``received_at``).
* ``position`` -> :class:`PositionUpdate`: an account position carries no link id, so its
  bot_id is ``account_bot_id`` (the bot whose API key the stream belongs to; default
  ``unknown``). avg_entry_price = ``entryPrice`` (the stream field), falling back to
  ``avgPrice`` (REST/trace); ``""`` or zero -> None. Flat: size 0 -> side ``""`` whatever
  the side said (Bybit sends ``""``, or ``"None"`` on classic accounts). ``markPrice``
  ``""``/0 -> None, ``unrealisedPnl`` ``""`` -> None.

The ShortSeller trace's ``fill``, ``order_update`` and ``position_updated`` ``data`` dicts use
the same names: pass them to :func:`parse_execution`, :func:`parse_order`,
:func:`parse_position`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeAlias

from alpha_models.errors import ValidationError
from alpha_models.inputs import (
    KNOWN_BOTS,
    UNKNOWN_BOT,
    FillInput,
    OrderUpdate,
    PositionUpdate,
    to_utc,
)
from alpha_models.order_link import parse_order_link_id

__all__ = [
    "MAX_MESSAGE_CHARS",
    "Event",
    "parse_execution",
    "parse_lines",
    "parse_message",
    "parse_message_items",
    "parse_order",
    "parse_position",
]

Event: TypeAlias = FillInput | OrderUpdate | PositionUpdate

MAX_MESSAGE_CHARS = 1_000_000
"""A larger message is rejected unparsed (Bybit's are a few kB)."""

_TOPICS = {
    "execution": "execution",
    "execution.linear": "execution",
    "order": "order",
    "order.linear": "order",
    "position": "position",
    "position.linear": "position",
}
_CATEGORY = "linear"
_STOP_REASONS = {
    "TakeProfit": "take_profit",
    "PartialTakeProfit": "take_profit",
    "StopLoss": "stop_loss",
    "PartialStopLoss": "stop_loss",
    "TrailingStop": "trailing_stop",
}
_LINK_REASON_FORMS = frozenset({"compact", "legacy_ms", "legacy_s", "other"})
_CLOSE_REASON_MAX = 50
_MS_RE = re.compile(r"[0-9]{1,16}")
_ZERO_RE = re.compile(r"[+-]?(?:0+(?:\.0*)?|\.0+)(?:[eE][+-]?[0-9]+)?")

_EXEC_FIELDS = {
    "exec_id": "execId",
    "bot_id": "orderLinkId",
    "symbol": "symbol",
    "side": "side",
    "exec_price": "execPrice",
    "exec_qty": "execQty",
    "exec_time": "execTime",
    "order_id": "orderId",
    "client_order_id": "orderLinkId",
    "commission": "execFee",
    "close_reason": "orderLinkId",
    "exec_type": "execType",
}
_ORDER_FIELDS = {
    "order_id": "orderId",
    "client_order_id": "orderLinkId",
    "bot_id": "orderLinkId",
    "symbol": "symbol",
    "side": "side",
    "order_type": "orderType",
    "status": "orderStatus",
    "qty": "qty",
    "price": "price",
    "updated_time": "updatedTime",
}
_EXEC_REQUIRED = (
    "execId",
    "symbol",
    "side",
    "execPrice",
    "execQty",
    "execTime",
    "orderId",
    "execFee",
    "execType",
)
_ORDER_REQUIRED = ("orderId", "symbol", "side", "orderType", "orderStatus", "qty")
_POSITION_FIELDS = {
    "symbol": "symbol",
    "side": "side",
    "size": "size",
    "mark_price": "markPrice",
    "unrealised_pnl": "unrealisedPnl",
    "updated_time": "updatedTime",
    "position_idx": "positionIdx",
}


# ----------------------------------------------------------------------------- helpers


def _req_str(data: Mapping[str, Any], key: str, prefix: str) -> str:
    try:
        value = data[key]
    except KeyError:
        raise ValidationError(prefix + key, None, "missing required field") from None
    if not isinstance(value, str):
        raise ValidationError(prefix + key, value, f"expected a string, got {_tname(value)}")
    return value


def _opt_str(data: Mapping[str, Any], key: str, prefix: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(prefix + key, value, f"expected a string, got {_tname(value)}")
    return value


def _ms(value: str, field: str) -> int:
    if _MS_RE.fullmatch(value) is None:
        raise ValidationError(field, value, "expected epoch milliseconds (a digit string)")
    return int(value)


def _tname(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _rename(err: ValidationError, prefix: str, names: Mapping[str, str]) -> ValidationError:
    return ValidationError(prefix + names.get(err.field, err.field), err.value, err.reason)


def _check_mapping(data: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError(field or "data", data, f"expected an object, got {_tname(data)}")
    return data


def _check_category(data: Mapping[str, Any], prefix: str) -> None:
    category = data.get("category")
    if category is not None and category != _CATEGORY:
        raise ValidationError(prefix + "category", category, "only 'linear' is supported")


def _fallback_time(
    data: Mapping[str, Any], prefix: str, fallback: datetime | int | None
) -> datetime | int:
    raw = _opt_str(data, "updatedTime", prefix)
    if raw is not None:
        return _ms(raw, prefix + "updatedTime")
    if fallback is None:
        raise ValidationError(prefix + "updatedTime", None, "missing required field")
    return fallback


# ---------------------------------------------------------------------------- elements


def parse_execution(
    data: Mapping[str, Any],
    *,
    known_bots: Collection[str] = KNOWN_BOTS,
    source: str = "listener",
    field_prefix: str = "",
) -> FillInput:
    """One ``execution`` element (or a ShortSeller trace ``fill`` ``data``) -> FillInput."""
    p = field_prefix
    data = _check_mapping(data, p.rstrip("."))
    _check_category(data, p)
    wire = {key: _req_str(data, key, p) for key in _EXEC_REQUIRED}
    exec_time = _ms(wire["execTime"], p + "execTime")
    link = _opt_str(data, "orderLinkId", p) or ""
    stop_order_type = _opt_str(data, "stopOrderType", p) or ""
    parsed = parse_order_link_id(link)
    close_reason: str | None = None
    if parsed.form in _LINK_REASON_FORMS and ":" in link:
        close_reason = parsed.reason[:_CLOSE_REASON_MAX] or None
    if close_reason is None:
        close_reason = _STOP_REASONS.get(stop_order_type)
    try:
        return FillInput(
            exec_id=wire["execId"],
            bot_id=parsed.bot_id if parsed.bot_id in known_bots else UNKNOWN_BOT,
            symbol=wire["symbol"],
            side=wire["side"],
            exec_price=wire["execPrice"],
            exec_qty=wire["execQty"],
            exec_time=exec_time,
            order_id=wire["orderId"],
            client_order_id=link,
            commission=wire["execFee"],
            close_reason=close_reason,
            exec_type=wire["execType"],
            source=source,
            known_bots=known_bots,
        )
    except ValidationError as err:
        if err.field == "source":  # the caller's argument, not wire data
            raise
        raise _rename(err, p, _EXEC_FIELDS) from err


def parse_order(
    data: Mapping[str, Any],
    *,
    known_bots: Collection[str] = KNOWN_BOTS,
    fallback_time: datetime | int | None = None,
    field_prefix: str = "",
) -> OrderUpdate:
    """One ``order`` element (or a trace ``order_update`` ``data``) -> OrderUpdate.

    ``fallback_time`` (aware datetime or epoch ms) is used when ``updatedTime`` is absent.
    """
    p = field_prefix
    data = _check_mapping(data, p.rstrip("."))
    _check_category(data, p)
    wire = {key: _req_str(data, key, p) for key in _ORDER_REQUIRED}
    link = _opt_str(data, "orderLinkId", p) or ""
    price = _opt_str(data, "price", p)
    updated_time = _fallback_time(data, p, fallback_time)
    parsed = parse_order_link_id(link)
    try:
        return OrderUpdate(
            order_id=wire["orderId"],
            client_order_id=link,
            bot_id=parsed.bot_id if parsed.bot_id in known_bots else UNKNOWN_BOT,
            symbol=wire["symbol"],
            side=wire["side"],
            order_type=wire["orderType"],
            status=wire["orderStatus"],
            qty=wire["qty"],
            price=price or None,
            updated_time=updated_time,
            known_bots=known_bots,
        )
    except ValidationError as err:
        raise _rename(err, p, _ORDER_FIELDS) from err


def _price_or_none(value: str | None) -> str | None:
    return None if not value or _ZERO_RE.fullmatch(value) else value


def parse_position(
    data: Mapping[str, Any],
    *,
    bot_id: str = UNKNOWN_BOT,
    known_bots: Collection[str] = KNOWN_BOTS,
    fallback_time: datetime | int | None = None,
    field_prefix: str = "",
) -> PositionUpdate:
    """One ``position`` element (or a trace ``position_updated`` ``data``) -> PositionUpdate.

    ``bot_id`` is the bot the account belongs to (positions carry no link id).
    """
    p = field_prefix
    data = _check_mapping(data, p.rstrip("."))
    _check_category(data, p)
    symbol = _req_str(data, "symbol", p)
    size = _req_str(data, "size", p)
    side = _req_str(data, "side", p)
    if side == "None" or _ZERO_RE.fullmatch(size):
        # Flat: Bybit sends side "" (UTA) or "None" (classic); a zero size is authoritative.
        side = ""
    entry_field = "entryPrice" if data.get("entryPrice") not in (None, "") else "avgPrice"
    avg_entry_price = _price_or_none(_opt_str(data, entry_field, p))
    mark_price = _price_or_none(_opt_str(data, "markPrice", p))
    unrealised_pnl = _opt_str(data, "unrealisedPnl", p) or None
    idx = data.get("positionIdx")
    if idx is None:
        raise ValidationError(p + "positionIdx", None, "missing required field")
    if type(idx) is not int:
        raise ValidationError(p + "positionIdx", idx, f"expected an integer, got {_tname(idx)}")
    updated_time = _fallback_time(data, p, fallback_time)
    try:
        return PositionUpdate(
            bot_id=bot_id,
            symbol=symbol,
            side=side,
            size=size,
            avg_entry_price=avg_entry_price,
            mark_price=mark_price,
            unrealised_pnl=unrealised_pnl,
            updated_time=updated_time,
            position_idx=idx,
            known_bots=known_bots,
        )
    except ValidationError as err:
        if err.field == "bot_id":  # the caller's account_bot_id, not wire data
            raise
        raise _rename(err, p, {**_POSITION_FIELDS, "avg_entry_price": entry_field}) from err


# ---------------------------------------------------------------------------- messages


def _load(raw: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, bytes | bytearray):
        if len(raw) > MAX_MESSAGE_CHARS:
            raise ValidationError("message", raw, "message too large")
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError("message", raw, f"not UTF-8: {exc.reason}") from None
    elif isinstance(raw, str):
        text = raw
    else:
        raise ValidationError("message", raw, f"expected str, bytes or dict, got {_tname(raw)}")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ValidationError("message", text, "message too large")
    try:
        msg = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ValidationError("message", text, f"invalid JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ValidationError("message", text, f"expected a JSON object, got {_tname(msg)}")
    return msg


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_message_items(
    raw: str | bytes | Mapping[str, Any],
    *,
    known_bots: Collection[str] = KNOWN_BOTS,
    account_bot_id: str = UNKNOWN_BOT,
    received_at: datetime | None = None,
    source: str = "listener",
) -> list[Event | ValidationError]:
    """Like :func:`parse_message`, but one result per ``data`` element, in order: an event,
    or the ``ValidationError`` of that element (so one bad element does not hide the others).

    Envelope errors (message, topic, creationTime, data not a list) still raise.
    """
    msg = _load(raw)
    topic = msg.get("topic")
    if topic is None:
        if "op" in msg:
            return []  # auth / subscribe / pong acknowledgement
        raise ValidationError("topic", None, "missing required field")
    kind = _TOPICS.get(topic) if isinstance(topic, str) else None
    if kind is None:
        raise ValidationError("topic", topic, "unsupported topic")
    fallback: datetime | int | None = None
    if received_at is not None:
        fallback = to_utc("received_at", received_at)
    creation = msg.get("creationTime")
    if creation is not None:
        if type(creation) is not int:
            raise ValidationError("creationTime", creation, "expected integer milliseconds")
        fallback = to_utc("creationTime", creation)
    data = msg.get("data")
    if not isinstance(data, list):
        raise ValidationError("data", data, f"expected a list, got {_tname(data)}")
    out: list[Event | ValidationError] = []
    for i, element in enumerate(data):
        prefix = f"data[{i}]."
        try:
            if kind == "execution":
                out.append(
                    parse_execution(
                        element, known_bots=known_bots, source=source, field_prefix=prefix
                    )
                )
            elif kind == "order":
                out.append(
                    parse_order(
                        element,
                        known_bots=known_bots,
                        fallback_time=fallback,
                        field_prefix=prefix,
                    )
                )
            else:
                out.append(
                    parse_position(
                        element,
                        bot_id=account_bot_id,
                        known_bots=known_bots,
                        fallback_time=fallback,
                        field_prefix=prefix,
                    )
                )
        except ValidationError as err:
            out.append(err)
    return out


def parse_message(
    raw: str | bytes | Mapping[str, Any],
    *,
    known_bots: Collection[str] = KNOWN_BOTS,
    account_bot_id: str = UNKNOWN_BOT,
    received_at: datetime | None = None,
    source: str = "listener",
) -> list[Event]:
    """Parse one private-stream message into validated events (all or nothing).

    Raises the first ``ValidationError`` (envelope, or the first bad ``data`` element).
    """
    events: list[Event] = []
    for item in parse_message_items(
        raw,
        known_bots=known_bots,
        account_bot_id=account_bot_id,
        received_at=received_at,
        source=source,
    ):
        if isinstance(item, ValidationError):
            raise item
        events.append(item)
    return events


def parse_lines(
    lines: Iterable[str],
    *,
    known_bots: Collection[str] = KNOWN_BOTS,
    account_bot_id: str = UNKNOWN_BOT,
    source: str = "listener",
) -> Iterator[tuple[int, list[Event] | ValidationError]]:
    """Parse captured messages, one JSON message per line; never stops at a bad line.

    Yields ``(line_number, events)`` (1-based; blank lines skipped), or
    ``(line_number, error)`` for a bad line. A line whose message has both good and bad
    elements yields its good events first, then one ``(line_number, error)`` per bad element.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            items = parse_message_items(
                line, known_bots=known_bots, account_bot_id=account_bot_id, source=source
            )
        except ValidationError as err:
            yield number, err
            continue
        events = [item for item in items if not isinstance(item, ValidationError)]
        errors = [item for item in items if isinstance(item, ValidationError)]
        if events or not errors:
            yield number, events
        for error in errors:
            yield number, error
