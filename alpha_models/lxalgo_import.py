"""LXAlgo's trade log (``trade_log.json``): read it tolerantly, validate its events, and record
them through the write path, idempotently.

One pipeline serves the live adapter (:mod:`adapters.lxalgo`: each event as it is logged,
and the catch-up after a crash or an outage) and ``alpha-db import-lxalgo`` (old logs and
their backup copies). LXALGO.md describes the file and its quirks.

Reading (:func:`parse_log_text`): the file is scanned event by event, so a truncated file
or a malformed event costs only that event: it is reported with its index (position in
``trade_events``) and line, and everything before and after it is kept. Bare ``NaN`` /
``Infinity``, string numbers and ``null`` are accepted by the reader; validation decides.

Validation (:func:`validate`): an event becomes a :class:`TrackerEvent` or a
:class:`Rejected` with the field and reason (missing price, negative or zero size, unknown
``event`` kind, unparsable timestamp, bad symbol...). A naive timestamp is taken as UTC
(the strategy always wrote UTC) and flagged.

Identity: every event gets a deterministic id from its kind, UTC timestamp, symbol and rule
(:func:`event_id`). The entry fill's ``exec_id`` and the trade's ``trade_key`` are that id, so
the same event recorded twice (a re-import, a replay after a crash, a backup copy of the log)
is stored once.

Recording (:class:`EventRecorder`), per event:

- ``opened``: a provisional Buy entry fill through the write path (price = the signal close,
  qty = the ordered qty, time = the log time, ``close_reason 'entry'``, source ``tracker``,
  or the exchange's execution when the strategy passes one: see :class:`ExchangeFill`), and a
  ``strategy_trades`` row that keeps the rule;
- ``closed``: closes every open trade of its (symbol, rule_id) entered in the preceding
  :data:`PAIR_WINDOW` (one-way mode sells the whole symbol position, so a key opened twice
  is closed by one close). The reason is kept. An exit fill is recorded only when a price
  is known (the exchange's fill, or a price the strategy passes); the tracker itself never
  knows it. A close with no open trade but a close of the same key less than
  :data:`REPEAT_WINDOW` earlier is a *repeat* (double tracking, the copy bug, startup
  reconciliation) and is kept on that trade. Any other close is *unpaired* and reported
  as a WARNING in ``audit.system_events``; no entry is ever invented;
- rejected events: a WARNING in ``audit.system_events`` with the event and the reason.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TypeAlias

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from alpha_models import lxalgo_store as store
from alpha_models.db import translate_error
from alpha_models.errors import DatabaseUnavailableError, ValidationError
from alpha_models.inputs import (
    FillInput,
    NumberLike,
    Side,
    TimeLike,
    to_decimal8,
    to_utc,
    validate_symbol,
)
from alpha_models.writepath import Outcome, WritePath

__all__ = [
    "BOT_ID",
    "ENTRY_REASON",
    "PAIR_WINDOW",
    "REDIS_DB",
    "REPEAT_WINDOW",
    "SOURCE_ADAPTER",
    "SOURCE_TRACKER",
    "Applied",
    "Classification",
    "EventKind",
    "EventRecorder",
    "ExchangeFill",
    "FileReport",
    "ImportSummary",
    "ParsedLog",
    "Problem",
    "ProblemKind",
    "RawEntry",
    "Rejected",
    "TrackerEvent",
    "event_id",
    "expand_paths",
    "import_logs",
    "json_text",
    "parse_log_text",
    "parse_log_timestamp",
    "rejected_event_id",
    "validate",
]

BOT_ID: Final = "lxalgo_001"
REDIS_DB: Final = 1
"""LXAlgo's Redis database (hard-coded by the strategy, ``REDIS_DB=1`` in compose)."""
PAIR_WINDOW: Final = timedelta(hours=168)
"""A close pairs only with opens at most this old: the engine forgets a trade 72 h after its
entry and recovers only the last 168 h, so an older open can never be the one closed."""
REPEAT_WINDOW: Final = timedelta(hours=1)
"""A close of a key closed at most this long before is a repeat (real ones: 1 s to 3 min)."""
SOURCE_TRACKER: Final = "tracker"
"""``source`` of provisional rows built from the tracker's own numbers."""
SOURCE_ADAPTER: Final = "adapter"
"""``fills.source`` of an exchange execution the strategy handed to the adapter."""
ENTRY_REASON: Final = "entry"
RULE_ID_MAX: Final = 50
REASON_MAX: Final = 50

Progress: TypeAlias = Callable[[Iterable[Any], int], Iterable[Any]]


class EventKind(StrEnum):
    OPENED = "opened"
    CLOSED = "closed"


class Classification(StrEnum):
    """What an event became."""

    OPENED = "opened"  # a trade (and its entry fill)
    PAIRED = "paired"  # a close that ended open trades
    REPEAT = "repeat"  # a close of a key already closed moments before
    UNPAIRED = "unpaired"  # a close with nothing to close: reported
    REJECTED = "rejected"  # an invalid event: reported


class ProblemKind(StrEnum):
    UNREADABLE = "unreadable"
    NOT_A_LOG = "not_a_log"
    MALFORMED = "malformed_json"
    TRUNCATED = "truncated"
    TRAILING = "trailing_data"
    INVALID = "invalid_event"
    UNKNOWN_KIND = "unknown_event"


@dataclass(frozen=True, slots=True)
class RawEntry:
    """One element of ``trade_events`` as read: its index, the line it starts on (None when
    unknown) and its value."""

    index: int
    line: int | None
    value: Any


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in a file that is not an event: a malformed fragment, a truncation."""

    kind: ProblemKind
    message: str
    line: int | None = None
    index: int | None = None


@dataclass(frozen=True, slots=True)
class ParsedLog:
    entries: tuple[RawEntry, ...]
    problems: tuple[Problem, ...]
    complete: bool  # the document reached its closing brackets


@dataclass(frozen=True, slots=True)
class TrackerEvent:
    """A valid ``opened`` or ``closed`` event."""

    event_id: str
    index: int
    line: int | None
    kind: EventKind
    timestamp: datetime  # aware UTC
    log_timestamp: str  # exactly as logged
    naive: bool  # the logged time had no offset and was taken as UTC
    symbol: str
    rule_id: str
    entry_price: Decimal | None  # opened only
    position_size: Decimal | None  # opened only
    reason: str | None  # closed only
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event that cannot be recorded, with the field at fault and why."""

    event_id: str
    index: int
    line: int | None
    kind: ProblemKind
    field: str | None
    message: str
    raw: Any
    symbol: str | None = None  # when the event names a valid symbol


@dataclass(frozen=True, slots=True)
class ExchangeFill:
    """What the exchange reported for the order behind a tracker event; every field optional.

    ``exec_id`` (Bybit ``execId``) makes the fill the exchange's own (source ``adapter``; the
    listener's copy of the same execution is then recognised, never stored twice). Without it
    the fill keeps the event's id and source ``tracker`` (provisional), with whatever the
    exchange did say (order id, price, qty, fee, time). An exit fill needs ``exec_price``.
    """

    exec_id: str | None = None
    order_id: str | None = None
    exec_price: NumberLike | None = None
    exec_qty: NumberLike | None = None
    fee: NumberLike | None = None
    exec_time: TimeLike | None = None
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    event_id: str
    classification: Classification
    new: bool  # False: it was already recorded (nothing changed)
    fill: str | None = None  # the fill's write-path outcome, if a fill was involved
    trades: tuple[str, ...] = ()  # trade keys created or closed


# ------------------------------------------------------------------------------ identity


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def event_id(bot_id: str, kind: EventKind, timestamp: datetime, symbol: str, rule_id: str) -> str:
    """The id of a valid event (<= 45 characters): the same event always gets the same id."""
    when = timestamp.astimezone(UTC).isoformat(timespec="microseconds")
    tag = "open" if kind is EventKind.OPENED else "close"
    return f"lxalgo:{tag}:{_digest(f'{bot_id}|{kind}|{when}|{symbol}|{rule_id}')}"


def rejected_event_id(bot_id: str, raw: Any) -> str:
    """The id of an invalid event: a digest of its whole content."""
    canonical = json.dumps(raw, sort_keys=True, default=str, separators=(",", ":"))
    return f"lxalgo:event:{_digest(f'{bot_id}|{canonical}')}"


def json_text(value: Any) -> str:
    """``value`` as the tracker's JSON writes it (``77.0``, ``"0.1"``, ``1e-08``)."""
    return json.dumps(value, default=str)


def parse_log_timestamp(value: str) -> datetime:
    """The tracker's own parsing (``Z`` accepted); the offset is kept, naive stays naive."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ------------------------------------------------------------------------------ reading

_PREFIX: Final = re.compile(r'\A\ufeff?\s*\{\s*"trade_events"\s*:\s*\[')
_WS: Final = re.compile(r"[ \t\n\r]*")
_RESYNC: Final = re.compile(r"\n[ \t]*\{")
_END: Final = re.compile(r"\]\s*\}\s*\Z")
_DECODER: Final = json.JSONDecoder()  # accepts bare NaN / Infinity, like json.load


class _Lines:
    def __init__(self, text: str) -> None:
        self._breaks = [m.start() for m in re.finditer("\n", text)]

    def line(self, pos: int) -> int:
        return bisect.bisect_left(self._breaks, pos) + 1


def parse_log_text(text: str) -> ParsedLog:
    """Every readable event of a trade log, and what could not be read (never raises)."""
    prefix = _PREFIX.match(text)
    if prefix is None:
        return _parse_whole(text)
    lines = _Lines(text)
    entries: list[RawEntry] = []
    problems: list[Problem] = []
    index = 0
    pos = prefix.end()
    size = len(text)
    while True:
        pos = _ws(text, pos)
        if pos >= size:
            problems.append(
                Problem(
                    ProblemKind.TRUNCATED,
                    f"file ends inside the event list after {index} event(s)",
                    line=lines.line(size),
                    index=index,
                )
            )
            return ParsedLog(tuple(entries), tuple(problems), complete=False)
        char = text[pos]
        if char == "]":
            return _finish(text, pos, lines, entries, problems)
        if char == ",":
            pos += 1
            continue
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            resync = _RESYNC.search(text, pos + 1)
            if resync is None and _END.search(text, pos) is None:
                problems.append(
                    Problem(
                        ProblemKind.TRUNCATED,
                        f"event #{index} is cut off: the file ends at line {lines.line(size)}",
                        line=lines.line(pos),
                        index=index,
                    )
                )
                return ParsedLog(tuple(entries), tuple(problems), complete=False)
            lost_event = char == "{"  # a damaged event keeps its index; stray text has none
            problems.append(
                Problem(
                    ProblemKind.MALFORMED,
                    f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                    line=lines.line(pos),
                    index=index if lost_event else None,
                )
            )
            if lost_event:
                index += 1
            if resync is None:
                return ParsedLog(tuple(entries), tuple(problems), complete=False)
            pos = resync.start() + 1
            continue
        entries.append(RawEntry(index, lines.line(pos), value))
        index += 1
        pos = end


def _ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return pos if match is None else match.end()


def _finish(
    text: str, pos: int, lines: _Lines, entries: list[RawEntry], problems: list[Problem]
) -> ParsedLog:
    end = _ws(text, pos + 1)
    if end >= len(text):
        problems.append(
            Problem(ProblemKind.TRUNCATED, "the closing '}' is missing", line=lines.line(end))
        )
        return ParsedLog(tuple(entries), tuple(problems), complete=False)
    if text[end] != "}":
        problems.append(
            Problem(ProblemKind.TRAILING, "unexpected data after the list", line=lines.line(end))
        )
        return ParsedLog(tuple(entries), tuple(problems), complete=False)
    tail = _ws(text, end + 1)
    if tail < len(text):
        problems.append(
            Problem(ProblemKind.TRAILING, "data after the end of the log", line=lines.line(tail))
        )
    return ParsedLog(tuple(entries), tuple(problems), complete=True)


def _parse_whole(text: str) -> ParsedLog:
    if not text.strip():
        return ParsedLog((), (Problem(ProblemKind.TRUNCATED, "the file is empty", line=1),), False)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = Problem(
            ProblemKind.NOT_A_LOG,
            f'not a trade log ({{"trade_events": [...]}}): {exc.msg}',
            line=exc.lineno,
        )
        return ParsedLog((), (problem,), False)
    if isinstance(doc, dict) and isinstance(doc.get("trade_events"), list):
        events = doc["trade_events"]
        return ParsedLog(tuple(RawEntry(i, None, v) for i, v in enumerate(events)), (), True)
    if isinstance(doc, list):  # a real incident: the top level became a list
        problem = Problem(
            ProblemKind.NOT_A_LOG, 'the top level is a list, not {"trade_events": [...]}', line=1
        )
        return ParsedLog(tuple(RawEntry(i, None, v) for i, v in enumerate(doc)), (problem,), True)
    problem = Problem(
        ProblemKind.NOT_A_LOG, 'not a trade log: no "trade_events" list at the top level', line=1
    )
    return ParsedLog((), (problem,), True)


# ------------------------------------------------------------------------------ validation


def _printable(value: Any, max_len: int) -> str | None:
    if isinstance(value, str) and value and len(value) <= max_len and value.isprintable():
        return value
    return None


def validate(entry: RawEntry, *, bot_id: str = BOT_ID) -> TrackerEvent | Rejected:
    """Check one raw event (see the module docstring)."""
    raw = entry.value

    def reject(kind: ProblemKind, field: str | None, message: str) -> Rejected:
        symbol = None
        if isinstance(raw, dict):
            try:
                symbol = validate_symbol(raw.get("symbol"))
            except ValidationError:
                symbol = None
        return Rejected(
            event_id=rejected_event_id(bot_id, raw),
            index=entry.index,
            line=entry.line,
            kind=kind,
            field=field,
            message=message,
            raw=raw,
            symbol=symbol,
        )

    if not isinstance(raw, dict):
        return reject(ProblemKind.INVALID, None, f"not a JSON object ({type(raw).__name__})")
    if "event" not in raw:
        return reject(ProblemKind.INVALID, "event", "missing event kind")
    kind_value = raw["event"]
    if kind_value not in ("opened", "closed"):
        return reject(ProblemKind.UNKNOWN_KIND, "event", f"unknown event kind {kind_value!r}")
    kind = EventKind(kind_value)
    stamp = raw.get("timestamp")
    if not isinstance(stamp, str):
        why = "missing timestamp" if stamp is None else "timestamp is not a string"
        return reject(ProblemKind.INVALID, "timestamp", why)
    try:
        parsed = parse_log_timestamp(stamp)
    except ValueError:
        return reject(ProblemKind.INVALID, "timestamp", f"unparsable timestamp {stamp!r}")
    naive = parsed.tzinfo is None or parsed.utcoffset() is None
    try:
        when = to_utc("timestamp", parsed.replace(tzinfo=UTC) if naive else parsed)
        symbol = validate_symbol(raw.get("symbol"))
    except ValidationError as exc:
        why = f"missing {exc.field}" if exc.value is None else str(exc)
        return reject(ProblemKind.INVALID, exc.field, why)
    rule_id = _printable(raw.get("rule_id"), RULE_ID_MAX)
    if rule_id is None:
        why = "missing rule_id" if raw.get("rule_id") is None else "rule_id is not a short text"
        return reject(ProblemKind.INVALID, "rule_id", why)
    price = size = None
    reason = None
    if kind is EventKind.OPENED:
        numbers: dict[str, Decimal] = {}
        for name in ("entry_price", "position_size"):
            if raw.get(name) is None:
                return reject(ProblemKind.INVALID, name, f"missing {name}")
            try:
                numbers[name] = to_decimal8(name, raw[name], "positive")
            except ValidationError as exc:
                return reject(ProblemKind.INVALID, name, str(exc))
        price, size = numbers["entry_price"], numbers["position_size"]
    else:
        reason = _printable(raw.get("reason"), REASON_MAX)
        if reason is None:
            why = "missing reason" if raw.get("reason") is None else "reason is not a short text"
            return reject(ProblemKind.INVALID, "reason", why)
    return TrackerEvent(
        event_id=event_id(bot_id, kind, when, symbol, rule_id),
        index=entry.index,
        line=entry.line,
        kind=kind,
        timestamp=when,
        log_timestamp=stamp,
        naive=naive,
        symbol=symbol,
        rule_id=rule_id,
        entry_price=price,
        position_size=size,
        reason=reason,
        raw=raw,
    )


# ------------------------------------------------------------------------------ recording


class EventRecorder:
    """Records validated events (see the module docstring).

    ``write_path=None`` is a dry run: fills are not written (whether each would be new is
    read from the database) and the caller rolls the connection back.
    """

    def __init__(
        self,
        write_path: WritePath | None,
        *,
        bot_id: str = BOT_ID,
        origin: str = "import",
        pair_window: timedelta = PAIR_WINDOW,
        repeat_window: timedelta = REPEAT_WINDOW,
    ) -> None:
        self.write_path = write_path
        self.bot_id = bot_id
        self.origin = origin
        self.pair_window = pair_window
        self.repeat_window = repeat_window

    @property
    def dry_run(self) -> bool:
        return self.write_path is None

    def apply(
        self,
        conn: Connection,
        item: TrackerEvent | Rejected,
        *,
        source: str,
        exchange: ExchangeFill | None = None,
    ) -> Applied:
        """Record one event inside the caller's transaction on ``conn`` (fills go through the
        write path in their own). Raises :class:`DatabaseUnavailableError` when a fill had to
        be spooled: the caller retries the event later (it is idempotent)."""
        if isinstance(item, Rejected):
            return self._rejected(conn, item, source)
        if item.kind is EventKind.OPENED:
            return self._opened(conn, item, source, exchange)
        return self._closed(conn, item, source, exchange)

    # -- fills -----------------------------------------------------------------------
    def _record_fill(self, conn: Connection, fill: FillInput) -> tuple[str, str | None]:
        """(outcome, resulting position side) of recording ``fill``."""
        if self.write_path is None:
            return ("duplicate" if store.fill_exists(conn, fill.exec_id) else "new"), None
        result = self.write_path.record_fill(fill)
        if result.outcome is Outcome.SPOOLED:
            raise DatabaseUnavailableError("PostgreSQL unavailable: the fill was spooled")
        side = result.position.side if result.position is not None else None
        return str(result.outcome), side

    def _entry_fill(
        self, ev: TrackerEvent, exchange: ExchangeFill | None
    ) -> tuple[FillInput, str | None]:
        assert ev.entry_price is not None and ev.position_size is not None
        tracker = FillInput(
            exec_id=ev.event_id,
            bot_id=self.bot_id,
            symbol=ev.symbol,
            side=Side.BUY,
            exec_price=ev.entry_price,
            exec_qty=ev.position_size,
            exec_time=ev.timestamp,
            order_id="",
            commission=0,
            close_reason=ENTRY_REASON,
            source=SOURCE_TRACKER,
        )
        if exchange is None:
            return tracker, None
        try:
            return (
                FillInput(
                    exec_id=exchange.exec_id or ev.event_id,
                    bot_id=self.bot_id,
                    symbol=ev.symbol,
                    side=Side.BUY,
                    exec_price=tracker.exec_price
                    if exchange.exec_price is None
                    else exchange.exec_price,
                    exec_qty=tracker.exec_qty if exchange.exec_qty is None else exchange.exec_qty,
                    exec_time=exchange.exec_time or ev.timestamp,
                    order_id=exchange.order_id or "",
                    client_order_id=exchange.client_order_id or "",
                    commission=exchange.fee or 0,
                    close_reason=ENTRY_REASON,
                    source=SOURCE_ADAPTER if exchange.exec_id else SOURCE_TRACKER,
                ),
                None,
            )
        except ValidationError as exc:  # keep the event; the tracker's numbers still hold
            return tracker, str(exc)

    # -- events ----------------------------------------------------------------------
    def _opened(
        self, conn: Connection, ev: TrackerEvent, source: str, exchange: ExchangeFill | None
    ) -> Applied:
        fill, exchange_error = self._entry_fill(ev, exchange)
        outcome, _side = self._record_fill(conn, fill)
        assert ev.entry_price is not None and ev.position_size is not None
        details: dict[str, Any] = {
            "log": {
                "timestamp": ev.log_timestamp,
                "entry_price": json_text(ev.raw["entry_price"]),
                "position_size": json_text(ev.raw["position_size"]),
            },
            "origin": self.origin,
            "log_file": source,
            "entry_fill_source": fill.source,
        }
        if ev.naive:
            details["naive_timestamp"] = True
        if fill.order_id:
            details["entry_order_id"] = fill.order_id
        if exchange_error is not None:
            details["exchange_error"] = exchange_error
        new = store.insert_trade(
            conn,
            bot_id=self.bot_id,
            trade_key=ev.event_id,
            symbol=ev.symbol,
            rule_id=ev.rule_id,
            entry_time=ev.timestamp,
            entry_price=ev.entry_price,
            quantity=ev.position_size,
            notional_usd=(ev.entry_price * ev.position_size).quantize(Decimal("1E-8")),
            entry_exec_id=fill.exec_id,
            details=details,
            source=SOURCE_TRACKER,
        )
        return Applied(ev.event_id, Classification.OPENED, new, outcome, (ev.event_id,))

    def _closed(
        self, conn: Connection, ev: TrackerEvent, source: str, exchange: ExchangeFill | None
    ) -> Applied:
        at = ev.timestamp
        store.lock_key(conn, self.bot_id, ev.symbol, ev.rule_id)
        prior = store.close_recorded(
            conn, bot_id=self.bot_id, event_id=ev.event_id, at=at, since=at - self.repeat_window
        )
        if prior is not None:
            return Applied(ev.event_id, Classification(prior), False)
        about: dict[str, Any] = {
            "event_id": ev.event_id,
            "timestamp": ev.log_timestamp,
            "reason": ev.reason,
            "log_file": source,
            "index": ev.index,
            "origin": self.origin,
        }
        if exchange is not None and exchange.order_id:
            about["exit_order_id"] = exchange.order_id
        trades = store.open_trades(
            conn,
            bot_id=self.bot_id,
            symbol=ev.symbol,
            rule_id=ev.rule_id,
            at=at,
            since=at - self.pair_window,
        )
        if trades:
            return self._pair(conn, ev, trades, about, exchange)
        last = store.last_closed_trade(
            conn,
            bot_id=self.bot_id,
            symbol=ev.symbol,
            rule_id=ev.rule_id,
            at=at,
            since=at - self.repeat_window,
        )
        if last is not None:
            store.add_repeat_close(conn, last.id, about)
            return Applied(ev.event_id, Classification.REPEAT, True, None, (last.trade_key,))
        on_symbol = store.open_trades_on_symbol(
            conn, bot_id=self.bot_id, symbol=ev.symbol, at=at, since=at - self.pair_window
        )
        details = {
            **about,
            "symbol": ev.symbol,
            "rule_id": ev.rule_id,
            "line": ev.line,
            "open_trades_on_symbol": [
                {"trade_key": t.trade_key, "rule_id": t.rule_id, "entry_time": t.entry_time}
                for t in on_symbol
            ],
        }
        new = store.report_once(
            conn,
            event_type=store.UNPAIRED_CLOSE,
            bot_id=self.bot_id,
            event_id=ev.event_id,
            message=(
                f"closed event without an opened trade: {ev.symbol} {ev.rule_id} "
                f"({ev.reason}) at {ev.log_timestamp}, {source} #{ev.index}"
            ),
            details=_jsonable(details),
            symbol=ev.symbol,
        )
        return Applied(ev.event_id, Classification.UNPAIRED, new)

    def _pair(
        self,
        conn: Connection,
        ev: TrackerEvent,
        trades: Sequence[store.TradeRow],
        about: dict[str, Any],
        exchange: ExchangeFill | None,
    ) -> Applied:
        assert ev.reason is not None
        exit_price: Decimal | None = None
        exit_exec_id: str | None = None
        outcome: str | None = None
        if exchange is not None and exchange.exec_price is not None:
            try:
                fill = FillInput(
                    exec_id=exchange.exec_id or ev.event_id,
                    bot_id=self.bot_id,
                    symbol=ev.symbol,
                    side=Side.SELL,
                    exec_price=exchange.exec_price,
                    exec_qty=sum((t.quantity for t in trades), Decimal(0))
                    if exchange.exec_qty is None
                    else exchange.exec_qty,
                    exec_time=exchange.exec_time or ev.timestamp,
                    order_id=exchange.order_id or "",
                    client_order_id=exchange.client_order_id or "",
                    commission=exchange.fee or 0,
                    close_reason=ev.reason,
                    source=SOURCE_ADAPTER if exchange.exec_id else SOURCE_TRACKER,
                )
            except ValidationError as exc:
                about["exchange_error"] = str(exc)
            else:
                outcome, side = self._record_fill(conn, fill)
                exit_price, exit_exec_id = fill.exec_price, fill.exec_id
                about["exit_fill_source"] = fill.source
                if side == Side.SELL:  # a long-only bot cannot be short: the qty was too big
                    store.log_event(
                        conn,
                        event_type="lxalgo_exit_exceeds_position",
                        bot_id=self.bot_id,
                        symbol=ev.symbol,
                        message=(
                            f"exit fill {fill.exec_id} on {ev.symbol} sold more than "
                            f"{self.bot_id} held: the position is now short"
                        ),
                        details={"event_id": ev.event_id, "exec_qty": str(fill.exec_qty)},
                    )
        about["trades"] = [t.trade_key for t in trades]
        store.close_trades(
            conn,
            [t.id for t in trades],
            exit_time=ev.timestamp,
            exit_reason=ev.reason,
            exit_price=exit_price,
            exit_exec_id=exit_exec_id,
            close=about,
        )
        keys = tuple(t.trade_key for t in trades)
        return Applied(ev.event_id, Classification.PAIRED, True, outcome, keys)

    def _rejected(self, conn: Connection, item: Rejected, source: str) -> Applied:
        details = {
            "log_file": source,
            "index": item.index,
            "line": item.line,
            "field": item.field,
            "problem": str(item.kind),
            "error": item.message,
            "raw": json_text(item.raw),
            "origin": self.origin,
        }
        new = store.report_once(
            conn,
            event_type=store.REJECTED_EVENT,
            bot_id=self.bot_id,
            event_id=item.event_id,
            message=f"trade log event rejected ({source} #{item.index}): {item.message}",
            details=details,
            symbol=item.symbol,
        )
        return Applied(item.event_id, Classification.REJECTED, new)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# ------------------------------------------------------------------------------ import


@dataclass
class FileReport:
    path: str
    events: int
    first_timestamp: str | None
    last_timestamp: str | None
    complete: bool
    problems: list[Problem]


@dataclass
class ImportSummary:
    """What an import did (or, for a dry run, would do)."""

    dry_run: bool
    files: list[FileReport] = field(default_factory=list)
    #: ``<classification>:new`` / ``<classification>:already`` -> number of events
    outcomes: Counter[str] = field(default_factory=Counter)
    #: write-path outcome of the fills (``new``, ``duplicate``, ...)
    fills: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    unpaired: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def events(self) -> int:
        """Events read from the files (valid or not)."""
        return sum(f.events for f in self.files)

    @property
    def accounted(self) -> int:
        """Events that were recorded, found recorded, paired or reported."""
        return sum(self.outcomes.values())

    @property
    def new(self) -> int:
        return sum(n for key, n in self.outcomes.items() if key.endswith(":new"))

    @property
    def problems(self) -> list[tuple[str, Problem]]:
        return [(f.path, p) for f in self.files for p in f.problems]

    def count(self, classification: Classification) -> int:
        return self.outcomes[f"{classification}:new"] + self.outcomes[f"{classification}:already"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "events": self.events,
            "accounted": self.accounted,
            "new": self.new,
            "outcomes": dict(sorted(self.outcomes.items())),
            "fills": dict(sorted(self.fills.items())),
            "by_rule": dict(sorted(self.by_rule.items())),
            "by_reason": dict(sorted(self.by_reason.items())),
            "files": [
                {
                    "path": f.path,
                    "events": f.events,
                    "first_timestamp": f.first_timestamp,
                    "last_timestamp": f.last_timestamp,
                    "complete": f.complete,
                    "problems": [
                        {
                            "kind": str(p.kind),
                            "line": p.line,
                            "index": p.index,
                            "message": p.message,
                        }
                        for p in f.problems
                    ],
                }
                for f in self.files
            ],
            "unpaired": self.unpaired,
            "rejected": self.rejected,
        }


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; a directory stands for its ``trade_log*.json`` files."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        out.extend(sorted(path.glob("trade_log*.json")) if path.is_dir() else [path])
    return out


@dataclass
class _Loaded:
    path: Path
    parsed: ParsedLog
    items: list[TrackerEvent | Rejected]

    @property
    def first(self) -> datetime:
        times = [i.timestamp for i in self.items if isinstance(i, TrackerEvent)]
        return min(times) if times else datetime.max.replace(tzinfo=UTC)


def _load(path: Path, bot_id: str) -> _Loaded:
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        problem = Problem(ProblemKind.UNREADABLE, f"cannot read: {exc.strerror or exc}")
        return _Loaded(path, ParsedLog((), (problem,), False), [])
    parsed = parse_log_text(text)
    return _Loaded(path, parsed, [validate(e, bot_id=bot_id) for e in parsed.entries])


def import_logs(
    paths: Iterable[str | Path],
    *,
    engine: Engine,
    write_path: WritePath | None,
    bot_id: str = BOT_ID,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import trade logs (``write_path=None``: dry run, nothing is written).

    Files are taken oldest first (by their first event), events in file order. Raises
    :class:`~alpha_models.errors.DatabaseUnavailableError` if PostgreSQL goes away; the
    import can simply be run again.
    """
    loaded = sorted((_load(p, bot_id) for p in expand_paths(paths)), key=lambda f: f.first)
    summary = ImportSummary(dry_run=write_path is None)
    for f in loaded:
        times = [i.timestamp for i in f.items if isinstance(i, TrackerEvent)]
        summary.files.append(
            FileReport(
                path=str(f.path),
                events=len(f.items),
                first_timestamp=min(times).isoformat() if times else None,
                last_timestamp=max(times).isoformat() if times else None,
                complete=f.parsed.complete,
                problems=list(f.parsed.problems),
            )
        )
    recorder = EventRecorder(write_path, bot_id=bot_id, origin="import")
    work = [(f, item) for f in loaded for item in f.items]
    steps: Iterable[tuple[_Loaded, TrackerEvent | Rejected]] = (
        progress(work, len(work)) if progress is not None else work
    )
    try:
        if write_path is None:
            with engine.connect() as conn:
                try:
                    _run(conn, None, steps, recorder, summary)
                finally:
                    conn.rollback()
        else:
            _run(None, engine, steps, recorder, summary)
    except DBAPIError as exc:
        raise translate_error(exc, getattr(engine, "info_settings", None)) from None
    return summary


def _run(
    conn: Connection | None,
    engine: Engine | None,
    steps: Iterable[tuple[_Loaded, TrackerEvent | Rejected]],
    recorder: EventRecorder,
    summary: ImportSummary,
) -> None:
    """Apply every step, in one rolled-back transaction (``conn``) or one per event."""
    known: dict[str, str] = {}
    checked: set[Path] = set()
    for f, item in steps:
        if f.path not in checked:  # one lookup per file for everything already recorded
            checked.add(f.path)
            ids = [i.event_id for i in f.items]
            if conn is not None:
                known.update(store.known_events(conn, recorder.bot_id, ids))
            else:
                assert engine is not None
                with engine.connect() as c:
                    known.update(store.known_events(c, recorder.bot_id, ids))
                    c.rollback()
        _tally_input(summary, item)
        prior = known.get(item.event_id)
        if prior is not None:
            applied = Applied(item.event_id, Classification(prior), False)
        elif conn is not None:
            applied = recorder.apply(conn, item, source=str(f.path))
        else:
            assert engine is not None
            with engine.begin() as c:
                applied = recorder.apply(c, item, source=str(f.path))
        known.setdefault(item.event_id, str(applied.classification))
        _tally(summary, f, item, applied)


def _tally_input(summary: ImportSummary, item: TrackerEvent | Rejected) -> None:
    if isinstance(item, TrackerEvent):
        if item.kind is EventKind.OPENED:
            summary.by_rule[item.rule_id] += 1
        elif item.reason is not None:
            summary.by_reason[item.reason] += 1


def _tally(
    summary: ImportSummary, f: _Loaded, item: TrackerEvent | Rejected, applied: Applied
) -> None:
    summary.outcomes[f"{applied.classification}:{'new' if applied.new else 'already'}"] += 1
    if applied.fill is not None:
        summary.fills[applied.fill] += 1
    elif applied.classification is Classification.OPENED and not applied.new:
        summary.fills["duplicate"] += 1
    where = {"file": str(f.path), "index": item.index, "line": item.line}
    if applied.classification is Classification.UNPAIRED and isinstance(item, TrackerEvent):
        summary.unpaired.append(
            {
                **where,
                "timestamp": item.log_timestamp,
                "symbol": item.symbol,
                "rule_id": item.rule_id,
                "reason": item.reason,
                "already_reported": not applied.new,
            }
        )
    elif isinstance(item, Rejected):
        summary.rejected.append(
            {
                **where,
                "field": item.field,
                "problem": str(item.kind),
                "error": item.message,
                "already_reported": not applied.new,
            }
        )
