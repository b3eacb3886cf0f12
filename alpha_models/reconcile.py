"""Reconciliation: the exchange's record of a bot's executions against ``trading.fills``.

:func:`reconcile` takes saved Bybit v5 pages (:mod:`alpha_models.bybit_pages`) for one bot
and a half-open window ``[window_start, window_end)`` and reports what differs. The exchange
is the book of record for what was executed: with ``apply=True`` the database is made to
agree with it, so that a second run over the same pages reports clean. Nothing is ever
lost: a changed row keeps its before-image in the audit trail, a voided row is *moved* to a
quarantine table from which :func:`restore_quarantined` (``alpha-db reconcile-restore``)
puts it back.

Scope
-----
* **Exchange side.** The pages are the record of the account behind the bot's API key, so an
  execution belongs to the bot unless its ``orderLinkId`` names *another* registered bot (then
  it is left out and counted in ``other_bots``: bots may share an account). ``symbols``
  narrows both sides. Executions outside the window are left out (``outside_window``), but are
  still used to recognise a stored row whose time was shifted out of it.
* **Database side.** The bot's fills with ``exec_time`` in the window, plus any row (any bot,
  any time) holding one of the window's exchange ``exec_id`` values.

Buckets (:class:`Kind`) and what ``apply`` does
-----------------------------------------------
* ``missing``: on the exchange, no row has its ``exec_id``. ``apply`` records it through the
  write path (source ``reconcile``; lots and position follow).
* ``misattributed``: the row exists under another bot. ``apply`` re-attributes it when that
  bot is ``unknown`` (the listener's copy of an execution with no link id; the write path
  does it when the same ``exec_id`` arrives with the real bot); a row under another
  *registered* bot, or a row of this bot whose execution the pages give to another bot (by
  its link id), is reported only.
* ``mismatched``: same ``exec_id``, different symbol, order id, side, price, quantity, fee,
  time or execType. ``apply`` **corrects** the stored row to the exchange's values (only the
  differing columns) and rebuilds the (bot, symbol) pair's lots and position in the same
  transaction (both pairs when the symbol changed).
* ``unexpected``: a row of the bot in the window whose ``exec_id`` is on no page. ``apply``
  **voids** it, only when the pages can prove the execution did not happen: the record looks
  complete (a page with an empty ``nextPageCursor``) and the row's time lies within the time
  span the pages' executions cover (pages fetched for a narrower window than the one given
  cannot speak for the rest). Otherwise the row stays reported (:attr:`Discrepancy.blocked`
  says why) with a warning. Voiding moves the row, in one transaction, from ``trading.fills``
  to ``audit.quarantined_fills`` (every column, plus when, why, by which role and sync run):
  the pair's lots (which reference fills by ``entry_fill_id``, the only foreign key to
  ``trading.fills``) are deleted first, then the fill, then the pair is rebuilt.
* **Rows without an exchange id** (``exec_id`` ``legacy:...``: adopted history and bots'
  self-reports; or source ``tracker``) cannot be matched by id and are never corrected or
  voided. Each is matched by content to
  an execution of the same ``order_id``, side and symbol within ``time_tolerance``: one
  execution of the same quantity, else all such executions of the order when their
  quantities add up to it (a bot reports an order, the exchange splits it). A match *accounts*
  for those executions (reported in ``content_matches`` with any price/fee/time differences;
  inserting them as well would count them twice). A self-report matching an execution that
  is already stored under the bot by its exchange id is a ``duplicate`` (counted twice in the
  bot's position; reported only). A self-report matching nothing is ``unverifiable``: shown,
  but not a discrepancy for the exit status unless ``strict`` (synthetic order ids and
  bot-clock times can never match, and no correction exists for them).
* **Funding** settlements are compared with ``trading.funding_settlements`` by ``exec_id``
  (whatever bot they are stored under: funding belongs to the account): ``missing`` (apply
  records it), ``mismatched`` (apply corrects it) and ``unexpected`` (the bot's settlements in
  the window that are on no page; apply voids them into
  ``audit.quarantined_funding_settlements`` under the same conditions as fills), each flagged
  ``funding``. Funding never touches lots.
* **Closed P&L** pages are compared per symbol with ``trading.completed_trades`` of the bot
  (``exit_time`` in the window; records by ``updatedTime``), optionally only rows of
  ``trade_sources``: count, closed quantity and net P&L side by side. Report only; a symbol
  whose closed quantity differs is a discrepancy. P&L differences are shown, not judged:
  Bybit's ``closedPnl`` includes funding.

Correcting and voiding rewrite or delete rows of ``trading.fills``, which no service role may
do (docs/security.md): they need the owner. Under the listener's role they fail, are
reported as not applied and say so; inserting and re-attributing work under either.

Bookkeeping
-----------
Every run is a row of ``trading.sync_status`` (unique per bot, sync_type and window: a re-run
of the same window updates that row): ``running`` at the start, then ``completed``,
``partial`` (a correction could not be applied, a row was not voided, or no page was the last
of its fetch) or ``failed`` (invalid pages, database error; the error is re-raised).
``trades_synced`` is the number of corrections applied. Each correction attempt is an
``audit.system_events`` row (``RECONCILE_CORRECTION``, ``WARNING``; ``ERROR`` when it failed)
with ``before`` / ``after`` in ``details``; for a correction or a void, in the same
transaction as the change, and ``before`` / ``after`` are then the whole stored row (every
column) before and after. Each run ends with one ``RECONCILE_RUN`` event (``INFO``;
``WARNING`` when partial, ``ERROR`` when failed) holding the counts. After ``apply`` the
comparison is run again, so the report shows what *remains*.

After a change the Redis position cache follows: each rebuilt pair is written to it with the
position's new version (an older update never overwrites a newer one); when Redis cannot be
reached the cache is marked stale and the report says to run ``alpha-db cache-rebuild``.
Round trips in ``trading.completed_trades`` are derived from the fills and are not rebuilt
here: :attr:`ReconcileReport.pnl_rebuild_needed` (and the run's summary) say when fills
changed, so that ``alpha-db pnl-rebuild --bot BOT`` should follow.

:func:`restore_quarantined` puts a voided row back through the write path's own function
(``trading.record_fill``, or the same idempotent insert for funding), rebuilds the pair,
removes the quarantine row and records a ``RECONCILE_RESTORE`` event, all in one
transaction; a later run over the same pages reports the row unexpected again.

Argument errors (bad window, unregistered bot) raise before a run is recorded. Concurrent
runs are safe: the write path is idempotent on ``exec_id``, and a correction locks the
pair's position and the row, and is skipped when the row changed since it was compared.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from alpha_models.bybit_pages import ExchangeRecord, PageSource, parse_pages
from alpha_models.cache import PositionCache, PositionSnapshot
from alpha_models.db import translate_error
from alpha_models.errors import (
    AlphaModelsError,
    CacheUnavailableError,
    SchemaBehindError,
    ValidationError,
)
from alpha_models.inputs import (
    UNKNOWN_BOT,
    FillInput,
    to_utc,
    validate_bot_id,
    validate_symbol,
)
from alpha_models.keys import LEGACY_PREFIX
from alpha_models.schema_version import HEAD_REVISION
from alpha_models.writepath import Outcome, WritePath

__all__ = [
    "COMPONENT",
    "DEFAULT_TIME_TOLERANCE",
    "EVENT_CORRECTION",
    "EVENT_RESTORE",
    "EVENT_RUN",
    "QUARANTINE_TABLES",
    "SOURCE",
    "SYNC_TYPES",
    "ClosedPnlComparison",
    "Comparison",
    "ContentMatch",
    "Correction",
    "Discrepancy",
    "ExchangeSummary",
    "Execution",
    "FieldDifference",
    "Kind",
    "ReconcileReport",
    "RestoreResult",
    "pnl_rebuild_hint",
    "reconcile",
    "restore_quarantined",
]

log = logging.getLogger(__name__)

SOURCE: Final = "reconcile"
"""``fills.source`` of rows inserted by reconciliation."""
COMPONENT: Final = "reconcile"
EVENT_CORRECTION: Final = "RECONCILE_CORRECTION"
EVENT_RUN: Final = "RECONCILE_RUN"
EVENT_RESTORE: Final = "RECONCILE_RESTORE"
QUARANTINE_TABLES: Final = {
    False: "audit.quarantined_fills",
    True: "audit.quarantined_funding_settlements",
}
"""Where a voided row goes, by ``funding``."""
SYNC_TYPES: Final = ("backfill", "hourly", "manual")
DEFAULT_TIME_TOLERANCE: Final = timedelta(seconds=5)
_TRACKER_SOURCE: Final = "tracker"
_ERROR_TEXT_MAX: Final = 1000
_INSUFFICIENT_PRIVILEGE: Final = "42501"
_Q8: Final = Decimal("1E-8")


class Kind(StrEnum):
    MISSING = "missing"
    UNEXPECTED = "unexpected"
    MISMATCHED = "mismatched"
    MISATTRIBUTED = "misattributed"
    DUPLICATE = "duplicate"
    UNVERIFIABLE = "unverifiable"


# ------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution as either side holds it (exchange element or stored row).

    For funding, ``price`` is the mark price, ``qty`` the position size and ``fee`` the
    funding paid (negative = received). ``row_id`` / ``source`` are set for stored rows.
    """

    exec_id: str
    bot_id: str
    symbol: str
    order_id: str
    side: str
    price: Decimal
    qty: Decimal
    fee: Decimal
    exec_time: datetime
    exec_type: str
    row_id: int | None = None
    source: str | None = None

    @classmethod
    def of(cls, fill: FillInput) -> Execution:
        return cls(
            exec_id=fill.exec_id,
            bot_id=fill.bot_id,
            symbol=fill.symbol,
            order_id=fill.order_id,
            side=str(fill.side),
            price=fill.exec_price,
            qty=fill.exec_qty,
            fee=fill.commission,
            exec_time=fill.exec_time,
            exec_type=str(fill.exec_type),
        )

    @property
    def has_exchange_id(self) -> bool:
        return not self.exec_id.startswith(LEGACY_PREFIX) and self.source != _TRACKER_SOURCE


@dataclass(frozen=True, slots=True)
class FieldDifference:
    field: str
    exchange: Any
    stored: Any


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: Kind
    funding: bool
    exchange: Execution | None
    stored: Execution | None
    differences: tuple[FieldDifference, ...] = ()
    blocked: str | None = None
    """Why ``apply`` leaves this one alone although its kind is corrected (an ``unexpected``
    row the pages cannot prove wrong); None otherwise."""

    @property
    def subject(self) -> Execution:
        subject = self.exchange or self.stored
        assert subject is not None
        return subject

    @property
    def exec_id(self) -> str:
        return self.subject.exec_id

    @property
    def fixable(self) -> bool:
        """True if ``apply`` corrects it: insert a missing one, re-attribute an ``unknown``
        copy, correct a mismatched row, void an unexpected one (unless :attr:`blocked`)."""
        if self.blocked is not None:
            return False
        if self.kind is Kind.MISSING:
            return True
        if self.kind is Kind.MISATTRIBUTED:
            return (
                not self.funding and self.stored is not None and self.stored.bot_id == UNKNOWN_BOT
            )
        if self.kind in (Kind.MISMATCHED, Kind.UNEXPECTED):
            return (
                self.stored is not None
                and self.stored.row_id is not None
                and self.stored.has_exchange_id
            )
        return False


@dataclass(frozen=True, slots=True)
class ContentMatch:
    """A stored row without an exchange id that accounts for these exchange executions."""

    stored: Execution
    exchange: tuple[Execution, ...]
    differences: tuple[FieldDifference, ...]
    note: str = ""


@dataclass(frozen=True, slots=True)
class ClosedPnlComparison:
    symbol: str
    exchange_records: int
    exchange_qty: Decimal
    exchange_pnl: Decimal
    stored_trades: int
    stored_qty: Decimal
    stored_pnl: Decimal

    @property
    def agrees(self) -> bool:
        return self.exchange_qty == self.stored_qty

    @property
    def pnl_difference(self) -> Decimal:
        return self.exchange_pnl - self.stored_pnl


@dataclass(frozen=True, slots=True)
class Comparison:
    """One comparison pass of both sides."""

    discrepancies: tuple[Discrepancy, ...]
    content_matches: tuple[ContentMatch, ...]
    closed_pnl: tuple[ClosedPnlComparison, ...]
    exchange_executions: int
    exchange_funding: int
    stored_fills: int
    stored_funding: int
    matched: int

    def counts(self) -> dict[str, int]:
        """Discrepancies by bucket (``funding_<kind>`` for funding), every bucket present."""
        out = {str(k): 0 for k in Kind}
        out.update({f"funding_{k}": 0 for k in (Kind.MISSING, Kind.UNEXPECTED, Kind.MISMATCHED)})
        for d in self.discrepancies:
            key = f"funding_{d.kind}" if d.funding else str(d.kind)
            out[key] = out.get(key, 0) + 1
        out["closed_pnl_mismatched"] = sum(not c.agrees for c in self.closed_pnl)
        return out


@dataclass(frozen=True, slots=True)
class Correction:
    """One correction attempt. ``action``: ``inserted`` / ``reattributed`` (through the write
    path), ``corrected`` (a mismatched row set to the exchange's values) or ``voided`` (an
    unexpected row moved to its quarantine table, where ``row_id`` is its id)."""

    action: str
    funding: bool
    exec_id: str
    symbol: str
    order_id: str
    outcome: str  # the write path's outcome, "corrected", "voided", "changed" or "error"
    applied: bool
    row_id: int | None
    before: Execution | None
    after: Execution | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ExchangeSummary:
    pages: int
    executions: int
    funding: int
    closed_pnl: int
    outside_window: int
    other_bots: int
    other_symbols: int
    repeated: int
    looks_complete: bool


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    bot_id: str
    window_start: datetime
    window_end: datetime
    sync_type: str
    sync_id: int
    status: str
    apply: bool
    strict: bool
    exchange: ExchangeSummary
    result: Comparison
    """The state after the run (after the corrections when ``apply``)."""
    before: Comparison | None
    """The first pass, when corrections were attempted."""
    corrections: tuple[Correction, ...]
    warnings: tuple[str, ...]

    @property
    def remaining(self) -> tuple[Discrepancy, ...]:
        """Discrepancies that count for the exit status."""
        return tuple(
            d for d in self.result.discrepancies if self.strict or d.kind is not Kind.UNVERIFIABLE
        )

    @property
    def remaining_count(self) -> int:
        return len(self.remaining) + sum(not c.agrees for c in self.result.closed_pnl)

    @property
    def clean(self) -> bool:
        return self.remaining_count == 0

    @property
    def applied(self) -> int:
        return sum(c.applied for c in self.corrections)

    @property
    def exit_code(self) -> int:
        """0 when clean, 1 while discrepancies remain (for schedulers)."""
        return 0 if self.clean else 1

    @property
    def pnl_rebuild_needed(self) -> bool:
        """True when this run changed ``trading.fills``: the round trips derived from them
        (``completed_trades``, source ``fills``) are out of date until
        ``alpha-db pnl-rebuild --bot BOT`` (``pnl_store.rebuild_completed_trades``) runs."""
        return any(c.applied and not c.funding for c in self.corrections)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (Decimals as strings, times as ISO-8601)."""
        out = {
            "bot_id": self.bot_id,
            "window": {"start": self.window_start, "end": self.window_end},
            "sync_id": self.sync_id,
            "sync_type": self.sync_type,
            "status": self.status,
            "apply": self.apply,
            "strict": self.strict,
            "clean": self.clean,
            "remaining": self.remaining_count,
            "counts": self.result.counts(),
            "before": None if self.before is None else self.before.counts(),
            "exchange": self.exchange,
            "database": {
                "fills": self.result.stored_fills,
                "funding": self.result.stored_funding,
                "matched": self.result.matched,
                "matched_by_content": len(self.result.content_matches),
            },
            "discrepancies": [_discrepancy_dict(d) for d in self.result.discrepancies],
            "content_matches": list(self.result.content_matches),
            "closed_pnl": [
                {**_jsonable(c), "agrees": c.agrees, "pnl_difference": c.pnl_difference}
                for c in self.result.closed_pnl
            ],
            "corrections": list(self.corrections),
            "applied": self.applied,
            "pnl_rebuild_needed": self.pnl_rebuild_needed,
            "warnings": list(self.warnings),
        }
        result: dict[str, Any] = _jsonable(out)
        return result


def _discrepancy_dict(d: Discrepancy) -> dict[str, Any]:
    return {
        "kind": str(d.kind),
        "funding": d.funding,
        "exec_id": d.exec_id,
        "symbol": d.subject.symbol,
        "order_id": d.subject.order_id,
        "fixable": d.fixable,
        "blocked": d.blocked,
        "exchange": d.exchange,
        "stored": d.stored,
        "differences": list(d.differences),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


# ----------------------------------------------------------------------------- the scope


@dataclass(frozen=True, slots=True)
class _Scope:
    bot_id: str
    start: datetime
    end: datetime
    symbols: frozenset[str] | None
    tolerance: timedelta
    trade_sources: tuple[str, ...] | None

    def in_window(self, when: datetime) -> bool:
        return self.start <= when < self.end

    def wants(self, symbol: str) -> bool:
        return self.symbols is None or symbol in self.symbols


@dataclass(slots=True)
class _ExchangeSide:
    trades: dict[str, Execution] = field(default_factory=dict)
    """Every execution of the bot on the pages (in and out of the window), by exec_id."""
    funding: dict[str, Execution] = field(default_factory=dict)
    fills: dict[str, FillInput] = field(default_factory=dict)
    """The bot-attributed inputs the write path would record, by exec_id."""
    other_bots: dict[str, Execution] = field(default_factory=dict)
    """Executions whose link id names another registered bot (left out), by exec_id."""
    outside_window: int = 0
    other_symbols: int = 0


def _attributed(fill: FillInput, bot_id: str) -> FillInput:
    return FillInput(
        exec_id=fill.exec_id,
        bot_id=bot_id,
        symbol=fill.symbol,
        side=fill.side,
        exec_price=fill.exec_price,
        exec_qty=fill.exec_qty,
        exec_time=fill.exec_time,
        order_id=fill.order_id,
        commission=fill.commission,
        source=SOURCE,
        client_order_id=fill.client_order_id,
        close_reason=fill.close_reason,
        exec_type=fill.exec_type,
        known_bots={bot_id},
    )


def _exchange_side(record: ExchangeRecord, scope: _Scope) -> _ExchangeSide:
    side = _ExchangeSide()
    for fill in (*record.executions, *record.funding):
        if not scope.wants(fill.symbol):
            side.other_symbols += 1
            continue
        if fill.bot_id not in (scope.bot_id, UNKNOWN_BOT):
            side.other_bots[fill.exec_id] = Execution.of(fill)
            continue
        mine = _attributed(fill, scope.bot_id)
        side.fills[mine.exec_id] = mine
        target = side.funding if fill.is_funding else side.trades
        target[mine.exec_id] = Execution.of(mine)
        if not scope.in_window(mine.exec_time):
            side.outside_window += 1
    return side


# -------------------------------------------------------------------------------- reading

_FILL_COLUMNS = (
    "id, exec_id, bot_id, symbol, order_id, side, exec_price AS price, exec_qty AS qty, "
    "commission AS fee, exec_time, exec_type, source"
)
_FUNDING_COLUMNS = (
    "id, exec_id, bot_id, symbol, '' AS order_id, side, mark_price AS price, "
    "position_qty AS qty, fee, exec_time, 'Funding' AS exec_type, source"
)
_FILLS_BY_ID = text(
    f"SELECT {_FILL_COLUMNS} FROM trading.fills "  # noqa: S608 - constant column list
    "WHERE exec_id = ANY(CAST(:ids AS text[]))"
)
_FILLS_OF_BOT = text(
    f"SELECT {_FILL_COLUMNS} FROM trading.fills "  # noqa: S608
    "WHERE bot_id = :bot AND exec_time >= :start AND exec_time < :end ORDER BY exec_time, id"
)
_FUNDING_BY_ID = text(
    f"SELECT {_FUNDING_COLUMNS} FROM trading.funding_settlements "  # noqa: S608
    "WHERE exec_id = ANY(CAST(:ids AS text[]))"
)
_FUNDING_OF_BOT = text(
    f"SELECT {_FUNDING_COLUMNS} FROM trading.funding_settlements "  # noqa: S608
    "WHERE bot_id = :bot AND exec_time >= :start AND exec_time < :end ORDER BY exec_time, id"
)
_TRADES_BY_SYMBOL = (
    "SELECT symbol, count(*) AS n, coalesce(sum(exit_qty), 0) AS qty, "
    "coalesce(sum(net_pnl), 0) AS pnl FROM trading.completed_trades "
    "WHERE bot_id = :bot AND exit_time >= :start AND exit_time < :end {sources}"
    "GROUP BY symbol"
)


def _row_execution(row: Any) -> Execution:
    return Execution(
        exec_id=row.exec_id,
        bot_id=row.bot_id,
        symbol=row.symbol,
        order_id=row.order_id,
        side=row.side,
        price=row.price,
        qty=row.qty,
        fee=row.fee,
        exec_time=row.exec_time.astimezone(UTC),
        exec_type=row.exec_type,
        row_id=int(row.id),
        source=row.source,
    )


@dataclass(slots=True)
class _StoredSide:
    trades_by_id: dict[str, Execution]
    trades_of_bot: list[Execution]
    funding_by_id: dict[str, Execution]
    funding_of_bot: list[Execution]
    trades_by_symbol: dict[str, tuple[int, Decimal, Decimal]]


def _read_stored(
    conn: Connection, exchange: _ExchangeSide, scope: _Scope, closed_pnl: bool
) -> _StoredSide:
    window = {"bot": scope.bot_id, "start": scope.start, "end": scope.end}

    def fetch(stmt: Any, params: Mapping[str, Any]) -> list[Execution]:
        rows = [_row_execution(r) for r in conn.execute(stmt, params)]
        return [r for r in rows if scope.wants(r.symbol)]

    trade_ids = [i for i, x in exchange.trades.items() if scope.in_window(x.exec_time)]
    funding_ids = [i for i, x in exchange.funding.items() if scope.in_window(x.exec_time)]
    trades_by_symbol: dict[str, tuple[int, Decimal, Decimal]] = {}
    if closed_pnl:
        sources = ""
        params: dict[str, Any] = dict(window)
        if scope.trade_sources is not None:
            sources = "AND source = ANY(CAST(:sources AS text[])) "
            params["sources"] = list(scope.trade_sources)
        stmt = text(_TRADES_BY_SYMBOL.format(sources=sources))  # constant fragments only
        for row in conn.execute(stmt, params):
            if scope.wants(row.symbol):
                trades_by_symbol[row.symbol] = (int(row.n), row.qty, row.pnl)
    return _StoredSide(
        trades_by_id={r.exec_id: r for r in fetch(_FILLS_BY_ID, {"ids": trade_ids})},
        trades_of_bot=fetch(_FILLS_OF_BOT, window),
        funding_by_id={r.exec_id: r for r in fetch(_FUNDING_BY_ID, {"ids": funding_ids})},
        funding_of_bot=fetch(_FUNDING_OF_BOT, window),
        trades_by_symbol=trades_by_symbol,
    )


# ------------------------------------------------------------------------------ comparing

_TRADE_FIELDS = ("symbol", "order_id", "side", "price", "qty", "fee", "exec_time", "exec_type")
_FUNDING_FIELDS = ("symbol", "side", "price", "qty", "fee", "exec_time")


def _differences(
    exchange: Execution, stored: Execution, fields: Sequence[str]
) -> tuple[FieldDifference, ...]:
    return tuple(
        FieldDifference(name, getattr(exchange, name), getattr(stored, name))
        for name in fields
        if getattr(exchange, name) != getattr(stored, name)
    )


def _vwap(executions: Sequence[Execution]) -> Decimal:
    with localcontext(prec=60):
        notional = sum((x.price * x.qty for x in executions), Decimal(0))
        qty = sum((x.qty for x in executions), Decimal(0))
        return (notional / qty).quantize(_Q8)


class _Pool:
    """Exchange executions a row without exchange id may stand for, indexed by order."""

    def __init__(self, executions: Iterable[Execution]) -> None:
        self.live: dict[str, Execution] = {}
        self._by_order: dict[tuple[str, str, str], list[Execution]] = {}
        for x in executions:
            self.live[x.exec_id] = x
            self._by_order.setdefault((x.order_id, x.side, x.symbol), []).append(x)

    def match(self, row: Execution, tolerance: timedelta) -> tuple[Execution, ...] | None:
        """Take and return the executions ``row`` stands for: one of the same quantity
        (the nearest in time), else all of its order within tolerance if they add up."""
        if not row.order_id:
            return None
        near = [
            x
            for x in self._by_order.get((row.order_id, row.side, row.symbol), ())
            if x.exec_id in self.live and abs(x.exec_time - row.exec_time) <= tolerance
        ]
        same_qty = [x for x in near if x.qty == row.qty]
        if same_qty:
            group: tuple[Execution, ...] = (
                min(same_qty, key=lambda x: (abs(x.exec_time - row.exec_time), x.exec_id)),
            )
        elif near and sum((x.qty for x in near), Decimal(0)) == row.qty:
            group = tuple(near)
        else:
            return None
        for x in group:
            del self.live[x.exec_id]
        return group


def _match_differences(row: Execution, group: Sequence[Execution]) -> tuple[FieldDifference, ...]:
    diffs = []
    price = group[0].price if len(group) == 1 else _vwap(group)
    if price != row.price:
        diffs.append(FieldDifference("price", price, row.price))
    fee = sum((x.fee for x in group), Decimal(0))
    if fee != row.fee:
        diffs.append(FieldDifference("fee", fee, row.fee))
    if group[0].exec_time != row.exec_time:
        diffs.append(FieldDifference("exec_time", group[0].exec_time, row.exec_time))
    return tuple(diffs)


def _compare_trades(
    exchange: _ExchangeSide, stored: _StoredSide, scope: _Scope
) -> tuple[list[Discrepancy], list[ContentMatch], int]:
    out: list[Discrepancy] = []
    matches: list[ContentMatch] = []
    matched = 0
    missing: list[Execution] = []
    misattributed: dict[str, tuple[Execution, Execution, tuple[FieldDifference, ...]]] = {}
    present: list[Execution] = []
    handled: set[str] = set()
    for x in exchange.trades.values():
        if not scope.in_window(x.exec_time):
            continue
        row = stored.trades_by_id.get(x.exec_id)
        if row is None:
            missing.append(x)
            continue
        handled.add(x.exec_id)
        diffs = _differences(x, row, _TRADE_FIELDS)
        if row.bot_id != scope.bot_id:
            misattributed[x.exec_id] = (x, row, diffs)
        elif diffs:
            out.append(Discrepancy(Kind.MISMATCHED, False, x, row, diffs))
        else:
            matched += 1
            present.append(x)
    self_reports: list[Execution] = []
    for row in stored.trades_of_bot:
        if row.exec_id in handled:
            continue
        twin = exchange.trades.get(row.exec_id)
        if twin is not None:  # on the pages, but outside the window
            diffs = _differences(twin, row, _TRADE_FIELDS)
            if diffs:
                out.append(Discrepancy(Kind.MISMATCHED, False, twin, row, diffs))
            else:
                matched += 1
        elif row.exec_id in exchange.other_bots:  # the link id names another bot
            x = exchange.other_bots[row.exec_id]
            out.append(
                Discrepancy(Kind.MISATTRIBUTED, False, x, row, _differences(x, row, _TRADE_FIELDS))
            )
        elif row.has_exchange_id:
            out.append(Discrepancy(Kind.UNEXPECTED, False, None, row))
        else:
            self_reports.append(row)
    missing_pool = _Pool(missing)
    misattributed_pool = _Pool(m[0] for m in misattributed.values())
    present_pool = _Pool(present)
    for row in self_reports:
        group = missing_pool.match(row, scope.tolerance)
        note = ""
        if group is None:
            group = misattributed_pool.match(row, scope.tolerance)
            if group is not None:
                bots = sorted({misattributed.pop(x.exec_id)[1].bot_id for x in group})
                note = f"the exchange's copy is also stored under {', '.join(bots)}"
        if group is not None:
            matches.append(ContentMatch(row, group, _match_differences(row, group), note))
            continue
        group = present_pool.match(row, scope.tolerance)
        if group is not None:
            out.append(
                Discrepancy(Kind.DUPLICATE, False, group[0], row, _match_differences(row, group))
            )
        else:
            out.append(Discrepancy(Kind.UNVERIFIABLE, False, None, row))
    out.extend(Discrepancy(Kind.MISSING, False, x, None) for x in missing_pool.live.values())
    out.extend(
        Discrepancy(Kind.MISATTRIBUTED, False, x, r, d) for x, r, d in misattributed.values()
    )
    return out, matches, matched


def _compare_funding(
    exchange: _ExchangeSide, stored: _StoredSide, scope: _Scope
) -> tuple[list[Discrepancy], int]:
    out: list[Discrepancy] = []
    matched = 0
    handled: set[str] = set()
    for x in exchange.funding.values():
        if not scope.in_window(x.exec_time):
            continue
        row = stored.funding_by_id.get(x.exec_id)
        if row is None:
            out.append(Discrepancy(Kind.MISSING, True, x, None))
            continue
        handled.add(x.exec_id)
        diffs = _differences(x, row, _FUNDING_FIELDS)
        if diffs:
            out.append(Discrepancy(Kind.MISMATCHED, True, x, row, diffs))
        else:
            matched += 1
    for row in stored.funding_of_bot:
        if row.exec_id in handled:
            continue
        twin = exchange.funding.get(row.exec_id)
        if twin is None:
            out.append(Discrepancy(Kind.UNEXPECTED, True, None, row))
            continue
        diffs = _differences(twin, row, _FUNDING_FIELDS)
        if diffs:
            out.append(Discrepancy(Kind.MISMATCHED, True, twin, row, diffs))
        else:
            matched += 1
    return out, matched


def _compare_closed_pnl(
    record: ExchangeRecord, stored: _StoredSide, scope: _Scope
) -> list[ClosedPnlComparison]:
    exchange: dict[str, tuple[int, Decimal, Decimal]] = {}
    for r in record.closed_pnl:
        if scope.in_window(r.updated_time) and scope.wants(r.symbol):
            n, qty, pnl = exchange.get(r.symbol, (0, Decimal(0), Decimal(0)))
            exchange[r.symbol] = (n + 1, qty + r.closed_size, pnl + r.closed_pnl)
    zero = (0, Decimal(0), Decimal(0))
    return [
        ClosedPnlComparison(
            symbol, *exchange.get(symbol, zero), *stored.trades_by_symbol.get(symbol, zero)
        )
        for symbol in sorted(exchange.keys() | stored.trades_by_symbol.keys())
    ]


def _sort_key(d: Discrepancy) -> tuple[datetime, str, str]:
    return d.subject.exec_time, str(d.kind), d.exec_id


def _compare(
    engine: Engine, record: ExchangeRecord, scope: _Scope
) -> tuple[Comparison, _ExchangeSide]:
    exchange = _exchange_side(record, scope)
    with_fills = record.execution_pages > 0 or record.closed_pnl_pages == 0
    with_closed = record.closed_pnl_pages > 0
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        stored = _read_stored(conn, exchange, scope, with_closed)
        conn.rollback()
    discrepancies: list[Discrepancy] = []
    matches: list[ContentMatch] = []
    matched = 0
    if with_fills:
        trade_d, matches, trade_matched = _compare_trades(exchange, stored, scope)
        funding_d, funding_matched = _compare_funding(exchange, stored, scope)
        discrepancies = trade_d + funding_d
        matched = trade_matched + funding_matched
    closed = _compare_closed_pnl(record, stored, scope) if with_closed else []
    comparison = Comparison(
        discrepancies=tuple(sorted(discrepancies, key=_sort_key)),
        content_matches=tuple(
            sorted(matches, key=lambda m: (m.stored.exec_time, m.stored.exec_id))
        ),
        closed_pnl=tuple(closed),
        exchange_executions=sum(scope.in_window(x.exec_time) for x in exchange.trades.values())
        if with_fills
        else 0,
        exchange_funding=sum(scope.in_window(x.exec_time) for x in exchange.funding.values())
        if with_fills
        else 0,
        stored_fills=len(stored.trades_of_bot) if with_fills else 0,
        stored_funding=len(stored.funding_of_bot) if with_fills else 0,
        matched=matched,
    )
    return comparison, exchange


# ------------------------------------------------------------------------ the bookkeeping

_BEGIN_RUN = text(
    """INSERT INTO trading.sync_status AS s (bot_id, sync_type, start_time, end_time,
        trades_synced, status, sync_started_at)
    VALUES (:bot, :sync_type, :start, :end, 0, 'running', now())
    ON CONFLICT ON CONSTRAINT unique_sync_window DO UPDATE SET
        trades_synced = 0, status = 'running', error_message = NULL, sync_started_at = now(),
        sync_completed_at = NULL, duration_seconds = NULL
    RETURNING id"""
)
_FINISH_RUN = text(
    """UPDATE trading.sync_status SET status = :status, trades_synced = :applied,
        error_message = :error, sync_completed_at = now(),
        duration_seconds = greatest(0, round(extract(epoch FROM now() - sync_started_at)))::int
    WHERE id = :id"""
)
_EVENT = text(
    """INSERT INTO audit.system_events (event_type, event_level, bot_id, component, message,
        details, symbol, order_id, error_code)
    VALUES (:event_type, :level, :bot, :component, :message, CAST(:details AS jsonb),
        :symbol, :order_id, :error_code)"""
)


def _event(
    conn: Connection,
    *,
    event_type: str,
    level: str,
    bot_id: str,
    message: str,
    details: Mapping[str, Any],
    symbol: str | None = None,
    order_id: str | None = None,
    error_code: str | None = None,
) -> None:
    conn.execute(
        _EVENT,
        {
            "event_type": event_type,
            "level": level,
            "bot": bot_id,
            "component": COMPONENT,
            "message": message,
            "details": json.dumps(_jsonable(details), ensure_ascii=False),
            "symbol": symbol,
            "order_id": order_id[:100] if order_id else None,
            "error_code": error_code,
        },
    )


def _check_schema(conn: Connection) -> None:
    current = conn.execute(
        text(
            "SELECT version_num FROM public.alembic_version "
            "WHERE to_regclass('public.alembic_version') IS NOT NULL"
        )
    ).scalar()
    if current != HEAD_REVISION:
        raise SchemaBehindError(
            f"database is at migration {current or 'none'}, this code needs "
            f"{HEAD_REVISION}: run `alpha-db migrate`"
        )


def _window_text(scope: _Scope) -> str:
    return f"{scope.start.isoformat()} .. {scope.end.isoformat()}"


def _summary_text(counts: Mapping[str, int]) -> str:
    parts = [f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n]
    return ", ".join(parts) or "no discrepancy"


# ------------------------------------------------------------------ what may be voided

_BLOCK_INCOMPLETE: Final = "the record may be incomplete"
_BLOCK_SPAN: Final = "outside the time span of the pages"
_BLOCK_EXPLAINED: Final = {
    _BLOCK_INCOMPLETE: "no page has an empty nextPageCursor, so the exchange record may be cut "
    "short and the execution on a page not given",
    _BLOCK_SPAN: "earlier than the first or later than the last execution on the pages, "
    "which may have been fetched for a narrower window than the one given",
}


def _guard_voids(comparison: Comparison, record: ExchangeRecord) -> Comparison:
    """Mark the ``unexpected`` rows that the pages cannot prove wrong (module docstring)."""
    times = [f.exec_time for f in (*record.executions, *record.funding)]
    first, last = (min(times), max(times)) if times else (None, None)

    def blocked(row: Execution) -> str | None:
        if not record.looks_complete:
            return _BLOCK_INCOMPLETE
        if first is None or last is None or not first <= row.exec_time <= last:
            return _BLOCK_SPAN
        return None

    out = [
        replace(d, blocked=blocked(d.stored))
        if d.kind is Kind.UNEXPECTED and d.stored is not None
        else d
        for d in comparison.discrepancies
    ]
    return replace(comparison, discrepancies=tuple(out))


def _not_voided_warnings(comparison: Comparison) -> list[str]:
    by_reason: dict[str, int] = {}
    for d in comparison.discrepancies:
        if d.kind is Kind.UNEXPECTED and d.blocked is not None:
            by_reason[d.blocked] = by_reason.get(d.blocked, 0) + 1
    return [
        f"{n} unexpected row(s) not voided ({why}): {_BLOCK_EXPLAINED.get(why, why)}"
        for why, n in by_reason.items()
    ]


# ------------------------------------------------------------------------------ applying

# Columns of the tables a correction writes, by the Execution field they hold (constants:
# the only names that ever reach the SQL text).
_TRADE_COLUMNS: Final = {
    "symbol": "symbol",
    "order_id": "order_id",
    "side": "side",
    "price": "exec_price",
    "qty": "exec_qty",
    "fee": "commission",
    "exec_time": "exec_time",
    "exec_type": "exec_type",
}
_FUNDING_COLUMNS_BY_FIELD: Final = {
    "symbol": "symbol",
    "side": "side",
    "price": "mark_price",
    "qty": "position_qty",
    "fee": "fee",
    "exec_time": "exec_time",
}
_FILL_TABLE_COLUMNS: Final = (
    "id, bot_id, symbol, order_id, client_order_id, side, exec_price, exec_qty, exec_time, "
    "close_reason, commission, created_at, exec_id, exec_type, source"
)
"""Every column of ``trading.fills`` (a test keeps the quarantine table holding all)."""
_FUNDING_TABLE_COLUMNS: Final = (
    "id, exec_id, bot_id, symbol, side, position_qty, mark_price, fee, exec_time, source, "
    "created_at"
)
_LOCK_POSITION = text("SELECT 1 FROM trading.lock_position(:bot, :symbol)")
_REBUILD_POSITION = text("SELECT * FROM trading.rebuild_position(:bot, :symbol)")
_PAIRS_OF_LOTS = text(
    "SELECT DISTINCT bot_id, symbol FROM trading.position_entries WHERE entry_fill_id = :id"
)
_DELETE_LOTS = text("DELETE FROM trading.position_entries WHERE bot_id = :bot AND symbol = :symbol")


class _RowChanged(Exception):
    """The stored row is no longer what the comparison saw (another writer changed it)."""


@dataclass(frozen=True, slots=True)
class _Done:
    outcome: str
    row_id: int
    before: dict[str, Any]
    after: dict[str, Any] | None
    rebuilt: tuple[str, ...]
    snapshots: tuple[PositionSnapshot, ...]


def _snapshot(row: Any) -> PositionSnapshot | None:
    """The cache entry of a ``trading.positions`` row (None if it cannot be one)."""
    if row is None or row.version is None:
        return None
    try:
        return PositionSnapshot(
            bot_id=row.bot_id,
            symbol=row.symbol,
            side=row.side or "",
            size=row.size,
            avg_entry_price=row.avg_entry_price,
            unrealized_pnl=None,
            version=int(row.version),
            updated_at=row.updated_at.astimezone(UTC),
        )
    except ValidationError as exc:
        log.warning("position %s %s not cached: %s", row.bot_id, row.symbol, exc.reason)
        return None


def _rebuild_pairs(conn: Connection, pairs: Iterable[tuple[str, str]]) -> list[PositionSnapshot]:
    out = []
    for bot, symbol in pairs:
        snap = _snapshot(conn.execute(_REBUILD_POSITION, {"bot": bot, "symbol": symbol}).first())
        if snap is not None:
            out.append(snap)
    return out


def _locked_row(conn: Connection, d: Discrepancy) -> dict[str, Any] | None:
    """The stored row (every column), locked; None if it is gone; :class:`_RowChanged` if
    it is no longer what was compared."""
    stored = d.stored
    assert stored is not None and stored.row_id is not None
    table, columns = (
        ("trading.funding_settlements", _FUNDING_COLUMNS)
        if d.funding
        else ("trading.fills", _FILL_COLUMNS)
    )
    params = {"id": stored.row_id}
    seen = conn.execute(
        text(f"SELECT {columns} FROM {table} WHERE id = :id FOR UPDATE"),  # noqa: S608
        params,
    ).first()
    if seen is None:
        return None
    if _row_execution(seen) != stored:
        raise _RowChanged
    image = conn.execute(text(f"SELECT * FROM {table} WHERE id = :id"), params).mappings().one()  # noqa: S608
    return dict(image)


def _lock_pairs(conn: Connection, pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    ordered = tuple(sorted(set(pairs)))
    for bot, symbol in ordered:  # in one order, as every writer locks positions first
        conn.execute(_LOCK_POSITION, {"bot": bot, "symbol": symbol})
    return ordered


def _correct(conn: Connection, d: Discrepancy) -> _Done | None:
    """Set the differing columns of the stored row to the exchange's values; rebuild."""
    stored, exchange = d.stored, d.exchange
    assert stored is not None and exchange is not None and stored.row_id is not None
    pairs: tuple[tuple[str, str], ...] = ()
    if not d.funding:
        pairs = _lock_pairs(
            conn, [(stored.bot_id, stored.symbol), (stored.bot_id, exchange.symbol)]
        )
    before = _locked_row(conn, d)
    if before is None:
        return None  # gone meanwhile: the next run reports it missing
    table = "trading.funding_settlements" if d.funding else "trading.fills"
    names = _FUNDING_COLUMNS_BY_FIELD if d.funding else _TRADE_COLUMNS
    values = {names[f.field]: f.exchange for f in d.differences}
    assignments = ", ".join(f"{column} = :{column}" for column in values)
    after = (
        conn.execute(
            text(f"UPDATE {table} SET {assignments} WHERE id = :id RETURNING *"),  # noqa: S608
            {**values, "id": stored.row_id},
        )
        .mappings()
        .one()
    )
    snapshots = _rebuild_pairs(conn, pairs)
    return _Done(
        "corrected",
        stored.row_id,
        before,
        dict(after),
        tuple(s for _, s in pairs),
        tuple(snapshots),
    )


def _void(
    conn: Connection, d: Discrepancy, reason: str, sync_id: int, context: Mapping[str, Any]
) -> _Done | None:
    """Move the stored row to its quarantine table; delete and rebuild the pair's lots."""
    stored = d.stored
    assert stored is not None and stored.row_id is not None
    pairs: tuple[tuple[str, str], ...] = ()
    if not d.funding:
        # Lots reference fills (entry_fill_id, the only foreign key to trading.fills): the
        # lots of every pair with a lot of this fill go first, then the fill.
        referencing = [tuple(r) for r in conn.execute(_PAIRS_OF_LOTS, {"id": stored.row_id})]
        pairs = _lock_pairs(conn, [(stored.bot_id, stored.symbol), *referencing])
    before = _locked_row(conn, d)
    if before is None:
        return None  # voided meanwhile by another run
    for bot, symbol in pairs:
        conn.execute(_DELETE_LOTS, {"bot": bot, "symbol": symbol})
    source, quarantine, columns = (
        ("trading.funding_settlements", QUARANTINE_TABLES[True], _FUNDING_TABLE_COLUMNS)
        if d.funding
        else ("trading.fills", QUARANTINE_TABLES[False], _FILL_TABLE_COLUMNS)
    )
    moved = conn.execute(
        text(
            f"WITH gone AS (DELETE FROM {source} WHERE id = :id RETURNING *) "  # noqa: S608
            f"INSERT INTO {quarantine} ({columns}, reason, sync_id, details) "
            f"SELECT {columns}, :reason, :sync_id, CAST(:details AS jsonb) FROM gone "
            "RETURNING id"
        ),
        {
            "id": stored.row_id,
            "reason": reason,
            "sync_id": sync_id,
            "details": json.dumps(_jsonable(context), ensure_ascii=False),
        },
    ).scalar_one()
    snapshots = _rebuild_pairs(conn, pairs)
    return _Done("voided", int(moved), before, None, tuple(s for _, s in pairs), tuple(snapshots))


def _failure_text(exc: BaseException, settings: Any) -> str:
    if isinstance(exc, DBAPIError):
        if getattr(exc.orig, "pgcode", None) == _INSUFFICIENT_PRIVILEGE:
            return (
                "this database role may not rewrite or delete fills (docs/security.md): "
                "correcting and voiding need the owner"
            )
        exc = translate_error(exc, settings)
    text_: str = settings.scrub(str(exc) or type(exc).__name__)
    return text_[:_ERROR_TEXT_MAX]


def _fix_stored(
    engine: Engine,
    d: Discrepancy,
    scope: _Scope,
    sync_id: int,
    settings: Any,
    record_context: Mapping[str, Any],
) -> tuple[Correction | None, tuple[PositionSnapshot, ...]]:
    """Correct a mismatched row or void an unexpected one, with its audit event, in one
    transaction. None when there is nothing left to do (the row is gone)."""
    stored = d.stored
    assert stored is not None
    action = "corrected" if d.kind is Kind.MISMATCHED else "voided"
    what = "funding settlement" if d.funding else "fill"
    subject = d.exchange if d.exchange is not None else stored
    pending = Correction(
        action=action,
        funding=d.funding,
        exec_id=stored.exec_id,
        symbol=subject.symbol,
        order_id=subject.order_id,
        outcome="pending",
        applied=False,
        row_id=stored.row_id,
        before=stored,
        after=d.exchange if action == "corrected" else None,
    )
    window = {"start": scope.start, "end": scope.end}
    reason = (
        f"unexpected: on no page of the exchange's complete record of {scope.bot_id} for "
        f"{_window_text(scope)} (sync #{sync_id})"
    )
    changes = "; ".join(
        f"{f.field} {_plain(f.stored)} -> {_plain(f.exchange)}" for f in d.differences
    )
    try:
        with engine.begin() as conn:
            if action == "corrected":
                done = _correct(conn, d)
            else:
                context = {
                    "discrepancy": str(d.kind),
                    "bot_id": scope.bot_id,
                    "window": window,
                    "exchange_record": record_context,
                }
                done = _void(conn, d, reason, sync_id, context)
            if done is None:
                return None, ()
            correction = replace(pending, outcome=done.outcome, applied=True, row_id=done.row_id)
            if action == "corrected":
                message = (
                    f"reconcile corrected {what} {stored.exec_id} to the exchange's values: "
                    f"{changes}"
                )
            else:
                message = (
                    f"reconcile voided {what} {stored.exec_id}: {stored.symbol} {stored.side} "
                    f"{_plain(stored.qty)} @ {_plain(stored.price)} is on no page of the "
                    f"exchange's record; moved to {QUARANTINE_TABLES[d.funding]} (restore: "
                    f"alpha-db reconcile-restore {stored.exec_id})"
                )
            _event(
                conn,
                event_type=EVENT_CORRECTION,
                level="WARNING",
                bot_id=scope.bot_id,
                message=message,
                details={
                    "sync_id": sync_id,
                    "action": action,
                    "funding": d.funding,
                    "exec_id": stored.exec_id,
                    "outcome": done.outcome,
                    "applied": True,
                    "row_id": stored.row_id,
                    "before": done.before,
                    "after": done.after,
                    "differences": list(d.differences),
                    "quarantine": None
                    if action == "corrected"
                    else {"table": QUARANTINE_TABLES[d.funding], "id": done.row_id},
                    "rebuilt": list(done.rebuilt),
                    "error": None,
                    "window": window,
                },
                symbol=subject.symbol,
                order_id=subject.order_id or None,
            )
        return correction, done.snapshots
    except _RowChanged:
        correction = replace(
            pending,
            outcome="changed",
            error="the stored row changed after it was compared: run reconcile again",
        )
    except (DBAPIError, AlphaModelsError) as exc:
        correction = replace(pending, outcome="error", error=_failure_text(exc, settings))
    with engine.begin() as conn:
        _event(
            conn,
            event_type=EVENT_CORRECTION,
            level="ERROR",
            bot_id=scope.bot_id,
            message=(
                f"reconcile could not {'correct' if action == 'corrected' else 'void'} {what} "
                f"{stored.exec_id}: "
                f"{correction.error}"
            ),
            details={
                "sync_id": sync_id,
                "action": action,
                "funding": d.funding,
                "exec_id": stored.exec_id,
                "outcome": correction.outcome,
                "applied": False,
                "row_id": stored.row_id,
                "before": stored,
                "after": d.exchange if action == "corrected" else None,
                "differences": list(d.differences),
                "error": correction.error,
                "window": window,
            },
            symbol=subject.symbol,
            order_id=subject.order_id or None,
            error_code="CORRECTION_FAILED",
        )
    return correction, ()


def _plain(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _apply(
    engine: Engine,
    write_path: WritePath,
    comparison: Comparison,
    exchange: _ExchangeSide,
    scope: _Scope,
    sync_id: int,
    corrections: list[Correction],
    record_context: Mapping[str, Any],
) -> list[PositionSnapshot]:
    """Apply each fixable discrepancy, appending to ``corrections`` (so a run that fails
    half-way still knows what it applied). Stored rows are corrected and voided first, then
    the missing executions go through the write path (which updates the cache itself).
    Returns the positions the corrections and voids rebuilt, for the cache."""
    snapshots: list[PositionSnapshot] = []
    fixable = [d for d in comparison.discrepancies if d.fixable]
    for d in fixable:
        if d.kind not in (Kind.MISMATCHED, Kind.UNEXPECTED):
            continue
        correction, snaps = _fix_stored(
            engine, d, scope, sync_id, write_path.settings, record_context
        )
        if correction is not None:
            corrections.append(correction)
            snapshots.extend(snaps)
    for d in fixable:
        if d.kind in (Kind.MISMATCHED, Kind.UNEXPECTED):
            continue
        fill = exchange.fills[d.exec_id]
        action = "inserted" if d.kind is Kind.MISSING else "reattributed"
        after = Execution.of(fill)
        pending = Correction(
            action=action,
            funding=d.funding,
            exec_id=fill.exec_id,
            symbol=fill.symbol,
            order_id=fill.order_id,
            outcome="pending",
            applied=False,
            row_id=None,
            before=d.stored,
            after=after,
        )
        try:
            result = write_path.record_fill(fill)
        except AlphaModelsError as exc:
            error = write_path.settings.scrub(str(exc))[:_ERROR_TEXT_MAX]
            correction = replace(pending, outcome="error", error=error)
        else:
            if result.outcome is Outcome.DUPLICATE and d.kind is Kind.MISSING:
                continue  # stored meanwhile by another writer: nothing to correct
            correction = replace(
                pending, outcome=str(result.outcome), applied=result.is_new, row_id=result.row_id
            )
            if result.outcome is Outcome.DUPLICATE:  # the unknown copy was not re-attributed
                correction = replace(
                    correction,
                    error="the database role may not re-attribute 'unknown' rows (row "
                    "security): run as the listener's role or the owner",
                )
        corrections.append(correction)
        what = "funding settlement" if d.funding else "fill"
        verb = {"inserted": "inserted missing", "reattributed": "re-attributed"}[action]
        status = "" if correction.applied else f" (not applied: {correction.outcome})"
        with engine.begin() as conn:
            _event(
                conn,
                event_type=EVENT_CORRECTION,
                level="WARNING" if correction.outcome != "error" else "ERROR",
                bot_id=scope.bot_id,
                message=(
                    f"reconcile {verb} {what} {fill.exec_id}: {fill.symbol} {fill.side} "
                    f"{fill.exec_qty.normalize():f} @ {fill.exec_price.normalize():f}{status}"
                ),
                details={
                    "sync_id": sync_id,
                    "action": action,
                    "funding": d.funding,
                    "exec_id": fill.exec_id,
                    "outcome": correction.outcome,
                    "applied": correction.applied,
                    "row_id": correction.row_id,
                    "before": d.stored,
                    "after": after,
                    "error": correction.error,
                    "window": {"start": scope.start, "end": scope.end},
                },
                symbol=fill.symbol,
                order_id=fill.order_id or None,
                error_code=None if correction.outcome != "error" else "CORRECTION_FAILED",
            )
    return snapshots


def _update_cache(
    cache: PositionCache | None, snapshots: Sequence[PositionSnapshot], warnings: list[str]
) -> None:
    """Write the rebuilt pairs to Redis (versioned: a newer update is never overwritten);
    when Redis cannot be reached, mark the cache stale and say so."""
    if cache is None or not snapshots:
        return
    try:
        for snap in snapshots:
            cache.apply(snap)
    except CacheUnavailableError as exc:
        cache.mark_stale()
        warnings.append(
            f"Redis position cache not updated ({exc}): marked stale; run `alpha-db "
            "cache-rebuild` once Redis answers"
        )


# ------------------------------------------------------------------------------- the run


def _validate(
    bot_id: str,
    window_start: datetime | str | int,
    window_end: datetime | str | int,
    sync_type: str,
    symbols: Collection[str] | None,
    time_tolerance: timedelta,
    trade_sources: Collection[str] | None,
    write_path: WritePath,
) -> _Scope:
    start = to_utc("window_start", window_start)
    end = to_utc("window_end", window_end)
    if end <= start:
        raise ValidationError("window_end", window_end, "must be after window_start")
    if sync_type not in SYNC_TYPES:
        raise ValidationError("sync_type", sync_type, f"must be one of {', '.join(SYNC_TYPES)}")
    if bot_id == UNKNOWN_BOT:
        raise ValidationError("bot_id", bot_id, "reconcile a registered bot, not 'unknown'")
    try:
        known = write_path.known_bots()
        if bot_id not in known:
            known = write_path.known_bots(refresh=True)
    except DBAPIError as exc:
        raise translate_error(exc, write_path.settings) from None
    validate_bot_id(bot_id, known)
    if not isinstance(time_tolerance, timedelta) or time_tolerance < timedelta(0):
        raise ValidationError("time_tolerance", time_tolerance, "must be a timedelta >= 0")
    if isinstance(symbols, str) or isinstance(trade_sources, str):
        raise ValidationError("symbols", symbols, "expected a collection, not one string")
    return _Scope(
        bot_id=bot_id,
        start=start,
        end=end,
        symbols=None if symbols is None else frozenset(validate_symbol(s) for s in symbols),
        tolerance=time_tolerance,
        trade_sources=None if trade_sources is None else tuple(trade_sources),
    )


def reconcile(
    engine: Engine,
    write_path: WritePath,
    bot_id: str,
    window_start: datetime | str | int,
    window_end: datetime | str | int,
    pages: ExchangeRecord | PageSource | Iterable[PageSource],
    apply: bool = False,
    *,
    sync_type: str = "manual",
    symbols: Collection[str] | None = None,
    time_tolerance: timedelta = DEFAULT_TIME_TOLERANCE,
    trade_sources: Collection[str] | None = None,
    strict: bool = False,
) -> ReconcileReport:
    """Compare the exchange's record in ``pages`` with the database for ``bot_id`` over
    ``[window_start, window_end)``; with ``apply``, record the fixable corrections.

    ``pages``: an :class:`ExchangeRecord`, or anything :func:`~alpha_models.bybit_pages.read_pages`
    accepts (page dicts, files, directories). Raises :class:`ValidationError` for bad
    arguments (no run recorded) or bad pages (the run is recorded as ``failed``), and the
    package's database errors. See the module docstring for the buckets and bookkeeping.
    """
    scope = _validate(
        bot_id,
        window_start,
        window_end,
        sync_type,
        symbols,
        time_tolerance,
        trade_sources,
        write_path,
    )
    settings = write_path.settings
    try:
        with engine.begin() as conn:
            _check_schema(conn)
            sync_id = int(
                conn.execute(
                    _BEGIN_RUN,
                    {"bot": bot_id, "sync_type": sync_type, "start": scope.start, "end": scope.end},
                ).scalar_one()
            )
    except DBAPIError as exc:
        raise translate_error(exc, settings) from None
    corrections: list[Correction] = []
    try:
        record = (
            pages
            if isinstance(pages, ExchangeRecord)
            else parse_pages(pages, known_bots=write_path.known_bots(), source=SOURCE)
        )
        if record.pages == 0:
            raise ValidationError("pages", None, "no page given")
        first, exchange = _compare(engine, record, scope)
        first = _guard_voids(first, record)
        final, before = first, None
        warnings: list[str] = []
        if apply and any(d.fixable for d in first.discrepancies):
            snapshots = _apply(
                engine,
                write_path,
                first,
                exchange,
                scope,
                sync_id,
                corrections,
                _record_context(record),
            )
            _update_cache(write_path.cache, snapshots, warnings)
            final, _ = _compare(engine, record, scope)
            final = _guard_voids(final, record)
            before = first
        if not record.looks_complete:
            warnings.append(
                "no page has an empty nextPageCursor: the exchange record may be cut short "
                "(unexpected fills may be on pages not given)"
            )
        if apply:
            warnings.extend(_not_voided_warnings(final))
        failed = [c for c in corrections if not c.applied]
        if failed:
            warnings.append(f"{len(failed)} correction(s) not applied")
        report = ReconcileReport(
            bot_id=bot_id,
            window_start=scope.start,
            window_end=scope.end,
            sync_type=sync_type,
            sync_id=sync_id,
            status="partial" if warnings else "completed",
            apply=apply,
            strict=strict,
            exchange=ExchangeSummary(
                pages=record.pages,
                executions=len(record.executions),
                funding=len(record.funding),
                closed_pnl=len(record.closed_pnl),
                outside_window=exchange.outside_window,
                other_bots=len(exchange.other_bots),
                other_symbols=exchange.other_symbols,
                repeated=record.repeated,
                looks_complete=record.looks_complete,
            ),
            result=final,
            before=before,
            corrections=tuple(corrections),
            warnings=tuple(warnings),
        )
        _finish(engine, report, scope)
        return report
    except Exception as exc:
        error = translate_error(exc, settings) if isinstance(exc, DBAPIError) else exc
        _record_failure(engine, sync_id, scope, sync_type, corrections, error, settings.scrub)
        if error is exc:
            raise
        raise error from None


def _record_context(record: ExchangeRecord) -> dict[str, Any]:
    """What the exchange record was, for a quarantine row's ``details``."""
    times = [f.exec_time for f in (*record.executions, *record.funding)]
    return {
        "pages": record.pages,
        "executions": len(record.executions),
        "funding": len(record.funding),
        "looks_complete": record.looks_complete,
        "first_exec_time": min(times) if times else None,
        "last_exec_time": max(times) if times else None,
    }


def pnl_rebuild_hint(bot_id: str) -> str:
    return (
        f"fills of {bot_id} changed: completed_trades (source 'fills') is out of date until "
        f"`alpha-db pnl-rebuild --bot {bot_id}` runs"
    )


def _finish(engine: Engine, report: ReconcileReport, scope: _Scope) -> None:
    counts = report.result.counts()
    message = (
        f"reconcile {report.bot_id} {_window_text(scope)}: {_summary_text(counts)}; "
        f"{report.applied} correction(s) applied"
    )
    if report.pnl_rebuild_needed:
        message += f"; {pnl_rebuild_hint(report.bot_id)}"
    with engine.begin() as conn:
        conn.execute(
            _FINISH_RUN,
            {
                "id": report.sync_id,
                "status": report.status,
                "applied": report.applied,
                "error": "; ".join(report.warnings) or None,
            },
        )
        _event(
            conn,
            event_type=EVENT_RUN,
            level="INFO" if report.status == "completed" else "WARNING",
            bot_id=report.bot_id,
            message=message,
            details={
                "sync_id": report.sync_id,
                "sync_type": report.sync_type,
                "status": report.status,
                "window": {"start": scope.start, "end": scope.end},
                "apply": report.apply,
                "counts": counts,
                "before": None if report.before is None else report.before.counts(),
                "remaining": report.remaining_count,
                "applied": report.applied,
                "pnl_rebuild_needed": report.pnl_rebuild_needed,
                "exchange": report.exchange,
                "matched": report.result.matched,
                "matched_by_content": len(report.result.content_matches),
                "warnings": list(report.warnings),
            },
        )


def _record_failure(
    engine: Engine,
    sync_id: int,
    scope: _Scope,
    sync_type: str,
    corrections: Sequence[Correction],
    error: BaseException,
    scrub: Any,
) -> None:
    """Best effort: mark the run failed (the original error is what the caller sees)."""
    text_ = scrub(str(error) or type(error).__name__)[:_ERROR_TEXT_MAX]
    applied = sum(c.applied for c in corrections)
    try:
        with engine.begin() as conn:
            conn.execute(
                _FINISH_RUN, {"id": sync_id, "status": "failed", "applied": applied, "error": text_}
            )
            _event(
                conn,
                event_type=EVENT_RUN,
                level="ERROR",
                bot_id=scope.bot_id,
                message=f"reconcile {scope.bot_id} {_window_text(scope)} failed: {text_}",
                details={
                    "sync_id": sync_id,
                    "sync_type": sync_type,
                    "status": "failed",
                    "window": {"start": scope.start, "end": scope.end},
                    "applied": applied,
                    "error": text_,
                },
                error_code=type(error).__name__[:50],
            )
    except (DBAPIError, AlphaModelsError) as exc:
        log.error("could not record the failed reconcile run %s: %s", sync_id, scrub(str(exc)))


# ------------------------------------------------------------------------------ restoring


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """A quarantined row put back by :func:`restore_quarantined`."""

    exec_id: str
    funding: bool
    bot_id: str
    symbol: str
    quarantined_id: int
    """The row's id when it was voided (the quarantine row's id)."""
    row_id: int
    """The id of the row put back."""
    outcome: str
    """``trading.record_fill``'s outcome (``new``, ``rebuilt``, ``reattributed``), or
    ``new`` for funding."""
    warnings: tuple[str, ...] = ()

    @property
    def pnl_rebuild_needed(self) -> bool:
        return not self.funding

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _jsonable(self)
        out["pnl_rebuild_needed"] = self.pnl_rebuild_needed
        return out


_QUARANTINED = (
    "SELECT * FROM {table} WHERE exec_id = :exec_id "
    "ORDER BY quarantined_at DESC, id DESC LIMIT 1 FOR UPDATE"
)
_RESTORE_FILL = text(
    "SELECT * FROM trading.record_fill(:exec_id, :bot_id, :symbol, :order_id, "
    ":client_order_id, :side, :exec_price, :exec_qty, :exec_time, :close_reason, :commission, "
    ":exec_type, :source)"
)
_RESTORE_FUNDING = text(
    "INSERT INTO trading.funding_settlements (exec_id, bot_id, symbol, side, position_qty, "
    "mark_price, fee, exec_time, source) VALUES (:exec_id, :bot_id, :symbol, :side, "
    ":position_qty, :mark_price, :fee, :exec_time, :source) "
    "ON CONFLICT (exec_id) DO NOTHING RETURNING id"
)
_FILL_PARAMS: Final = (
    "exec_id",
    "bot_id",
    "symbol",
    "order_id",
    "client_order_id",
    "side",
    "exec_price",
    "exec_qty",
    "exec_time",
    "close_reason",
    "commission",
    "exec_type",
    "source",
)
_FUNDING_PARAMS: Final = (
    "exec_id",
    "bot_id",
    "symbol",
    "side",
    "position_qty",
    "mark_price",
    "fee",
    "exec_time",
    "source",
)


def _put_back(
    conn: Connection, quarantined: Mapping[str, Any], *, funding: bool
) -> tuple[int | None, str, str]:
    """Insert a quarantined row again as the write path does: ``(new id or None, outcome,
    table)``, outcome ``duplicate`` when its ``exec_id`` is stored again meanwhile."""
    if funding:
        new_id = conn.execute(
            _RESTORE_FUNDING, {k: quarantined[k] for k in _FUNDING_PARAMS}
        ).scalar()
        return new_id, "new" if new_id is not None else "duplicate", "trading.funding_settlements"
    if quarantined["bot_id"] != UNKNOWN_BOT:
        conn.execute(
            _LOCK_POSITION, {"bot": quarantined["bot_id"], "symbol": quarantined["symbol"]}
        )
    recorded = conn.execute(_RESTORE_FILL, {k: quarantined[k] for k in _FILL_PARAMS}).one()
    return recorded.fill_id, str(recorded.outcome), "trading.fills"


def restore_quarantined(
    engine: Engine,
    exec_id: str,
    *,
    cache: PositionCache | None = None,
) -> RestoreResult:
    """Put the most recently voided row with ``exec_id`` back, in one transaction: through
    ``trading.record_fill`` (the write path's function: idempotent, lots applied) for a
    fill, then the pair's lots and position are rebuilt; the same idempotent insert as the
    write path for funding. The quarantine row is deleted and a ``RECONCILE_RESTORE`` event
    keeps both images. ``cache``: the Redis position cache to update afterwards.

    Raises :class:`ValidationError` when nothing with ``exec_id`` is quarantined, or when
    ``exec_id`` is stored again meanwhile (nothing restored, the quarantined copy is kept),
    and the package's database errors. Needs the owner role (the quarantine tables are
    written by no service role).
    """
    if not isinstance(exec_id, str) or not exec_id or len(exec_id) > 64:
        raise ValidationError("exec_id", exec_id, "expected an exec_id of 1 to 64 characters")
    settings = getattr(engine, "info_settings", None)
    try:
        with engine.begin() as conn:
            _check_schema(conn)
            for funding in (False, True):  # a fill first, as the exec_id most likely is
                row = (
                    conn.execute(
                        text(_QUARANTINED.format(table=QUARANTINE_TABLES[funding])),
                        {"exec_id": exec_id},
                    )
                    .mappings()
                    .first()
                )
                if row is not None:
                    break
            else:
                raise ValidationError(
                    "exec_id", exec_id, "no quarantined fill or funding settlement has it"
                )
            quarantined = dict(row)
            bot_id, symbol = quarantined["bot_id"], quarantined["symbol"]
            snapshots: list[PositionSnapshot] = []
            new_id, outcome, table = _put_back(conn, quarantined, funding=funding)
            if outcome == "duplicate":
                raise ValidationError(
                    "exec_id",
                    exec_id,
                    f"already in {table} again (row {new_id}): nothing restored, the "
                    f"quarantined copy stays in {QUARANTINE_TABLES[funding]}",
                )
            assert new_id is not None
            row_id = int(new_id)
            if not funding and bot_id != UNKNOWN_BOT:
                snapshots = _rebuild_pairs(conn, [(bot_id, symbol)])
            after = (
                conn.execute(
                    text(f"SELECT * FROM {table} WHERE id = :id"),  # noqa: S608
                    {"id": row_id},
                )
                .mappings()
                .one()
            )
            conn.execute(
                text(f"DELETE FROM {QUARANTINE_TABLES[funding]} WHERE id = :id"),  # noqa: S608
                {"id": quarantined["id"]},
            )
            what = "funding settlement" if funding else "fill"
            _event(
                conn,
                event_type=EVENT_RESTORE,
                level="WARNING",
                bot_id=bot_id,
                message=(
                    f"reconcile restored {what} {exec_id} from {QUARANTINE_TABLES[funding]} "
                    f"(row {quarantined['id']} when voided) as row {row_id}"
                ),
                details={
                    "action": "restored",
                    "funding": funding,
                    "exec_id": exec_id,
                    "outcome": outcome,
                    "quarantine": {"table": QUARANTINE_TABLES[funding], "id": quarantined["id"]},
                    "row_id": row_id,
                    "before": quarantined,
                    "after": dict(after),
                    "rebuilt": [] if funding or bot_id == UNKNOWN_BOT else [symbol],
                },
                symbol=symbol,
                order_id=quarantined.get("order_id") or None,
            )
    except DBAPIError as exc:
        raise translate_error(exc, settings) from None
    warnings: list[str] = []
    _update_cache(cache, snapshots, warnings)
    return RestoreResult(
        exec_id=exec_id,
        funding=funding,
        bot_id=bot_id,
        symbol=symbol,
        quarantined_id=int(quarantined["id"]),
        row_id=row_id,
        outcome=outcome,
        warnings=tuple(warnings),
    )
