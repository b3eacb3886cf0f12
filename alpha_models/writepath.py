# ruff: noqa: S608
"""The one write path every producer uses: adapters, the listener, reconciliation, imports.

- A fill is recorded with its lots and the bot's position in **one transaction**: one
  statement, ``SELECT * FROM trading.record_fill(...)`` (migrations 0011, 0019), sent on a
  held connection in autocommit mode, so the statement is its own transaction (one round
  trip, committed when it returns, rolled back entirely if it fails): idempotent on
  ``exec_id``; the caller learns whether it was new.
- Input is validated before anything touches a database (:mod:`alpha_models.inputs`).
- When PostgreSQL cannot be reached the fill goes to the durable local spool (fsynced
  before the call returns) and is replayed in order, exactly once thanks to ``exec_id``,
  as soon as the database answers again and at the next start.
- Redis is written after the commit and is only a cache: a Redis failure never fails the
  write; the cache is then marked stale and rebuilt from PostgreSQL when Redis is back.
- The write path refuses a database that is not at the latest migration.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum
from typing import Any

import psycopg2
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from alpha_models.bulk import BulkResult, ingest_bulk
from alpha_models.cache import PositionCache, PositionSnapshot, load_snapshots_from_db
from alpha_models.db import translate_error
from alpha_models.errors import (
    AlphaModelsError,
    CacheUnavailableError,
    ConfigurationError,
    DatabaseUnavailableError,
    SchemaBehindError,
    ValidationError,
)
from alpha_models.inputs import (
    ORDER_STATUSES,
    UNKNOWN_BOT,
    FillInput,
    OrderUpdate,
    PositionUpdate,
)
from alpha_models.schema_version import HEAD_REVISION
from alpha_models.settings import Settings
from alpha_models.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)

NUMERIC_OUT_OF_RANGE = "22003"  # SQLSTATE numeric_value_out_of_range


class Outcome(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    REATTRIBUTED = "reattributed"
    REBUILT = "rebuilt"  # new, but older than the newest applied fill: lots rebuilt in order
    SPOOLED = "spooled"  # kept locally; delivered when PostgreSQL is back
    STALE = "stale"  # an order update older than the stored state: ignored


@dataclass(frozen=True, slots=True)
class WriteResult:
    outcome: Outcome
    row_id: int | None = None
    position: PositionSnapshot | None = None

    @property
    def is_new(self) -> bool:
        """True when this call stored something that was not there before."""
        return self.outcome in (Outcome.NEW, Outcome.REBUILT, Outcome.REATTRIBUTED)


CURRENT_REVISION_SQL = (
    "SELECT version_num FROM public.alembic_version "
    "WHERE to_regclass('public.alembic_version') IS NOT NULL"
)

# Driver-level statements (pyformat) for the hot path.
RECORD_FILL_SQL = (
    "SELECT * FROM trading.record_fill(%(exec_id)s, %(bot_id)s, %(symbol)s, %(order_id)s, "
    "%(client_order_id)s, %(side)s, %(exec_price)s, %(exec_qty)s, %(exec_time)s, "
    "%(close_reason)s, %(commission)s, %(exec_type)s, %(source)s)"
)

ROW_SECURITY_SQL = text(
    "SELECT row_security_active('trading.fills') OR row_security_active('trading.position_entries')"
)

RECORD_FUNDING_SQL = (
    "INSERT INTO trading.funding_settlements (exec_id, bot_id, symbol, side, position_qty, "
    "mark_price, fee, exec_time, source) VALUES (%(exec_id)s, %(bot_id)s, %(symbol)s, "
    "%(side)s, %(exec_qty)s, %(exec_price)s, %(commission)s, %(exec_time)s, %(source)s) "
    "ON CONFLICT (exec_id) DO NOTHING RETURNING id"
)

_RANK_SQL = (
    "CASE {col} "
    + " ".join(f"WHEN '{status}' THEN {rank}" for status, rank in ORDER_STATUSES.items())
    + " ELSE 9 END"
)

# The rank CASE is built from the constant status table above, never from input
# (file-level S608 waiver at the top of this module is for this statement only).
RECORD_ORDER = text(
    f"""INSERT INTO trading.orders AS o (bot_id, symbol, order_id, client_order_id, order_type,
        side, quantity, price, status, exchange_updated_at)
    VALUES (:bot_id, :symbol, :order_id, :client_order_id, :order_type, :side, :qty, :price,
        :status, :updated_time)
    ON CONFLICT (order_id) DO UPDATE SET
        status = EXCLUDED.status,
        quantity = EXCLUDED.quantity,
        price = coalesce(EXCLUDED.price, o.price),
        order_type = EXCLUDED.order_type,
        client_order_id = CASE WHEN o.client_order_id = '' THEN EXCLUDED.client_order_id
                               ELSE o.client_order_id END,
        bot_id = CASE WHEN o.bot_id = 'unknown' THEN EXCLUDED.bot_id ELSE o.bot_id END,
        exchange_updated_at = EXCLUDED.exchange_updated_at,
        updated_at = now()
    WHERE o.exchange_updated_at IS NULL
       OR ({_RANK_SQL.format(col="o.status")} < 9
           AND ({_RANK_SQL.format(col="EXCLUDED.status")}
                  > {_RANK_SQL.format(col="o.status")}
                OR ({_RANK_SQL.format(col="EXCLUDED.status")}
                      = {_RANK_SQL.format(col="o.status")}
                    AND EXCLUDED.exchange_updated_at >= o.exchange_updated_at)))
       OR ({_RANK_SQL.format(col="o.status")} = 9 AND EXCLUDED.status = o.status
           AND EXCLUDED.exchange_updated_at > o.exchange_updated_at)
    RETURNING id, (xmax = 0) AS inserted"""
)

RECORD_EXCHANGE_POSITION = text(
    """INSERT INTO trading.exchange_positions AS p (bot_id, symbol, position_idx, side, size,
        entry_price, mark_price, unrealised_pnl, exchange_updated_at)
    VALUES (:bot_id, :symbol, :position_idx, :side, :size, :avg_entry_price, :mark_price,
        :unrealised_pnl, :updated_time)
    ON CONFLICT (bot_id, symbol, position_idx) DO UPDATE SET
        side = EXCLUDED.side, size = EXCLUDED.size, entry_price = EXCLUDED.entry_price,
        mark_price = EXCLUDED.mark_price, unrealised_pnl = EXCLUDED.unrealised_pnl,
        exchange_updated_at = EXCLUDED.exchange_updated_at, updated_at = now()
    WHERE EXCLUDED.exchange_updated_at >= p.exchange_updated_at
    RETURNING id"""
)


def fill_params(fill: FillInput) -> dict[str, Any]:
    return {
        "exec_id": fill.exec_id,
        "bot_id": fill.bot_id,
        "symbol": fill.symbol,
        "order_id": fill.order_id,
        "client_order_id": fill.client_order_id,
        "side": str(fill.side),
        "exec_price": fill.exec_price,
        "exec_qty": fill.exec_qty,
        "exec_time": fill.exec_time,
        "close_reason": fill.close_reason,
        "commission": fill.commission,
        "exec_type": str(fill.exec_type),
        "source": fill.source,
    }


def fill_to_record(fill: FillInput) -> dict[str, Any]:
    """A JSON-safe spool record (Decimals and times as text)."""
    p = fill_params(fill)
    for key in ("exec_price", "exec_qty", "commission"):
        p[key] = str(p[key])
    p["exec_time"] = fill.exec_time.isoformat()
    return {"kind": "fill", "data": p}


def order_to_record(order: OrderUpdate) -> dict[str, Any]:
    return {
        "kind": "order",
        "data": {
            "order_id": order.order_id,
            "client_order_id": order.client_order_id,
            "bot_id": order.bot_id,
            "symbol": order.symbol,
            "side": str(order.side),
            "order_type": str(order.order_type),
            "status": str(order.status),
            "qty": str(order.qty),
            "price": None if order.price is None else str(order.price),
            "updated_time": order.updated_time.isoformat(),
        },
    }


def _is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError | InterfaceError | DatabaseUnavailableError)


class WritePath:
    """Records fills, order updates and position updates; see the module docstring.

    Thread-safe: calls are serialised by a lock (one writer per process keeps the spool
    in order).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        settings: Settings | None = None,
        cache: PositionCache | None = None,
        spool: Spool | None = None,
        retry_after_s: float = 1.0,
        max_retry_after_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.settings = settings or getattr(engine, "info_settings", None) or Settings()
        self.cache = cache
        self.spool = (
            spool
            if spool is not None
            else Spool(self.settings.spool_dir, self.settings.spool_max_bytes)
        )
        self._spool_dirty = True  # checked once; afterwards only our own appends dirty it
        self._lock = threading.RLock()
        self._known_bots: frozenset[str] | None = None
        self._schema_checked = False
        self._down_until = 0.0
        self._retry_after = retry_after_s
        self._min_retry = retry_after_s
        self._max_retry = max_retry_after_s
        self._cache_stale = False
        self._conn: Any = None

    # -- bots and schema -----------------------------------------------------------------
    def known_bots(self, *, refresh: bool = False) -> frozenset[str]:
        """Bots registered in ``trading.bots`` (cached); ``unknown`` is always accepted."""
        if self._known_bots is None or refresh:
            with self.engine.connect() as conn:
                bots = conn.execute(text("SELECT bot_id FROM trading.bots")).scalars().all()
                conn.rollback()
            self._known_bots = frozenset(bots) | {UNKNOWN_BOT}
        return self._known_bots

    def _check_schema(self, conn: Connection) -> None:
        if not self._schema_checked:
            self._require_head(conn.execute(text(CURRENT_REVISION_SQL)).scalar())

    def _require_head(self, current: str | None) -> None:
        """Refuse a database that is not at the migration this code is written for."""
        if current != HEAD_REVISION:
            raise SchemaBehindError(
                f"database is at migration {current or 'none'}, this code needs "
                f"{HEAD_REVISION}: run `alpha-db migrate`"
            )
        self._schema_checked = True

    def validate_bot(self, bot_id: str) -> None:
        """Raise :class:`~alpha_models.errors.ValidationError` unless ``bot_id`` is known."""
        from alpha_models.inputs import validate_bot_id

        known = self._known_bots
        if known is None:
            try:
                known = self.known_bots()
            except DBAPIError:
                return  # database down: the input model already checked the format
        if bot_id not in known:
            try:
                known = self.known_bots(refresh=True)
            except DBAPIError:
                return
            validate_bot_id(bot_id, known)

    # -- fills -------------------------------------------------------------------------
    def record_fill(self, fill: FillInput) -> WriteResult:
        """Record one execution (validated input); never raises for an unreachable database.

        Funding settlements go to ``trading.funding_settlements`` and never touch lots.
        """
        self.validate_bot(fill.bot_id)
        with self._lock:
            if self._database_down():
                return self._spool_fill(fill)
            self._drain_spool()
            if self._database_down():
                return self._spool_fill(fill)
            try:
                result = self._write_fill(fill)
            except AlphaModelsError:
                raise
            except DBAPIError as exc:
                if not _is_unavailable(exc):
                    raise translate_error(exc, self.settings) from None
                self._mark_down(exc)
                return self._spool_fill(fill)
        self._update_cache(result.position)
        return result

    def _write_fill(self, fill: FillInput) -> WriteResult:
        """One statement, hence one transaction, on the write path's own driver connection
        (autocommit: a single round trip), retried once on a fresh connection if the held
        one died with the server: safe, since a commit that did land makes the retry a
        duplicate, never a second row."""
        for attempt in (1, 2):
            conn: Any = None
            try:
                conn = self._raw_connection()
                return self._write_fill_raw(conn, fill)
            except DBAPIError:
                self._drop_connection(rollback=False)
                raise
            except psycopg2.Error as exc:
                if getattr(exc, "pgcode", None) == NUMERIC_OUT_OF_RANGE:
                    # The fill fits numeric(20,8) (validated) but the position it builds
                    # does not: refuse the fill, as any other out-of-range value.
                    self._drop_connection(rollback=True)
                    raise ValidationError(
                        "exec_qty", fill.exec_qty, "the position would exceed numeric(20,8)"
                    ) from None
                if conn is None:  # could not even connect
                    raise DBAPIError.instance(
                        "connect", None, exc, psycopg2.Error, hide_parameters=True
                    ) from None
                broken = bool(getattr(conn, "closed", 0)) or isinstance(
                    exc, psycopg2.OperationalError | psycopg2.InterfaceError
                )
                self._drop_connection(rollback=not broken)
                if attempt == 1 and broken:
                    continue
                raise DBAPIError.instance(
                    "trading.record_fill", None, exc, psycopg2.Error, hide_parameters=True
                ) from None
        raise AssertionError("unreachable")

    def _raw_connection(self) -> Any:
        if self._conn is None:
            conn: Any = self.engine.raw_connection()
            try:
                cur = conn.cursor()
                self._check_schema_raw(cur)
                cur.close()
                conn.rollback()
                # Every statement on this connection is one write-path call, complete in
                # itself: autocommit makes it its own transaction without BEGIN/COMMIT.
                conn.driver_connection.autocommit = True
            except BaseException:
                conn.invalidate()
                raise
            self._conn = conn
        return self._conn

    def _drop_connection(self, *, rollback: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if rollback:
                conn.rollback()
                conn.driver_connection.autocommit = False  # the pool's other users expect it
                conn.close()
            else:
                conn.invalidate()
        except Exception:  # the connection is gone anyway
            log.debug("discarding a broken connection", exc_info=True)

    def close(self) -> None:
        """Release the write path's connection (the spool stays on disk)."""
        with self._lock:
            self._drop_connection(rollback=True)

    def _check_schema_raw(self, cur: Any) -> None:
        if not self._schema_checked:
            cur.execute(CURRENT_REVISION_SQL)
            row = cur.fetchone()
            self._require_head(row[0] if row else None)

    def _write_fill_raw(self, conn: Any, fill: FillInput) -> WriteResult:
        params = fill_params(fill)
        with conn.cursor() as cur:
            if fill.is_funding:
                cur.execute(RECORD_FUNDING_SQL, params)
                got = cur.fetchone()
                row_id = got[0] if got else None
                return WriteResult(Outcome.NEW if row_id else Outcome.DUPLICATE, row_id)
            cur.execute(RECORD_FILL_SQL, params)
            fill_id, outcome, side, size, avg, version, updated = cur.fetchone()
        position = None
        if version is not None:
            position = PositionSnapshot(
                bot_id=fill.bot_id,
                symbol=fill.symbol,
                side=side or "",
                size=size,
                avg_entry_price=avg,
                unrealized_pnl=None,
                version=int(version),
                updated_at=updated.astimezone(UTC),
            )
        return WriteResult(Outcome(outcome), int(fill_id), position)

    def record_fills(self, fills: Iterable[FillInput]) -> list[WriteResult]:
        """Record many fills in order; each is its own transaction (see ``ingest_bulk``)."""
        return [self.record_fill(f) for f in fills]

    def ingest_bulk(self, fills: Iterable[FillInput]) -> BulkResult:
        """Store a large batch at COPY speed in one transaction (imports, backfills).

        Unlike :meth:`record_fill` it does not spool: an unreachable database raises
        :class:`~alpha_models.errors.DatabaseUnavailableError` and the batch can be rerun
        (it is idempotent). ``fills`` is consumed while it is sent: a fill with an unknown
        bot (or any exception from ``fills``) rolls the whole batch back and is raised. The
        Redis cache is rebuilt for the touched bots afterwards.

        It needs a role that row security does not apply to (the owner, as for imports):
        PostgreSQL refuses ``COPY`` into a table under row security. Under a bot's or the
        listener's role it raises :class:`~alpha_models.errors.ConfigurationError` before
        reading ``fills``; :meth:`record_fills` works for every role.
        """
        bots: set[str] = set()

        def checked() -> Iterator[FillInput]:
            for fill in fills:
                if fill.bot_id not in bots:
                    self.validate_bot(fill.bot_id)
                    bots.add(fill.bot_id)
                yield fill

        try:
            with self.engine.connect() as conn:
                self._check_schema(conn)
                secured = conn.execute(ROW_SECURITY_SQL).scalar()
                conn.rollback()
            if secured:
                raise ConfigurationError(
                    "bulk ingest needs a role without row security (the owner): PostgreSQL "
                    "refuses COPY under row security; use record_fills under this role"
                )
            result = ingest_bulk(self.engine, checked())
        except DBAPIError as exc:
            raise translate_error(exc, self.settings) from None
        if self.cache is not None and result.pairs_rebuilt:
            self.rebuild_cache(bots)
        return result

    # -- orders and exchange positions -------------------------------------------------
    def record_order(self, order: OrderUpdate) -> WriteResult:
        """Store an order update; the newest state wins and a status never rolls back."""
        self.validate_bot(order.bot_id)
        with self._lock:
            if self._database_down():
                return self._spool(order_to_record(order))
            try:
                with self.engine.begin() as conn:
                    self._check_schema(conn)
                    row = conn.execute(RECORD_ORDER, self._order_params(order)).first()
            except DBAPIError as exc:
                if not _is_unavailable(exc):
                    raise translate_error(exc, self.settings) from None
                self._mark_down(exc)
                return self._spool(order_to_record(order))
        if row is None:
            return WriteResult(Outcome.STALE)
        return WriteResult(Outcome.NEW if row.inserted else Outcome.REATTRIBUTED, int(row.id))

    @staticmethod
    def _order_params(order: OrderUpdate) -> dict[str, Any]:
        return {
            "bot_id": order.bot_id,
            "symbol": order.symbol,
            "order_id": order.order_id,
            "client_order_id": order.client_order_id,
            "order_type": str(order.order_type),
            "side": str(order.side),
            "qty": order.qty,
            "price": order.price,
            "status": str(order.status),
            "updated_time": order.updated_time,
        }

    def record_position(self, update: PositionUpdate) -> WriteResult:
        """Store the exchange's view of a position (newest update wins)."""
        params = {
            "bot_id": update.bot_id,
            "symbol": update.symbol,
            "position_idx": update.position_idx,
            "side": str(update.side),
            "size": update.size,
            "avg_entry_price": update.avg_entry_price,
            "mark_price": update.mark_price,
            "unrealised_pnl": update.unrealised_pnl,
            "updated_time": update.updated_time,
        }
        try:
            with self.engine.begin() as conn:
                self._check_schema(conn)
                row_id = conn.execute(RECORD_EXCHANGE_POSITION, params).scalar()
        except DBAPIError as exc:
            # The exchange view is re-sent on every change: losing one is harmless.
            raise translate_error(exc, self.settings) from None
        return WriteResult(Outcome.NEW if row_id else Outcome.STALE, row_id)

    # -- spool -------------------------------------------------------------------------
    def _spool(self, record: dict[str, Any]) -> WriteResult:
        self.spool.append(record)
        self._spool_dirty = True
        return WriteResult(Outcome.SPOOLED)

    def _spool_fill(self, fill: FillInput) -> WriteResult:
        return self._spool(fill_to_record(fill))

    def _deliver(self, entry: SpoolEntry) -> None:
        try:
            self._deliver_record(entry.record)
        except DBAPIError as exc:
            if _is_unavailable(exc):
                raise
            self._reject(entry, translate_error(exc, self.settings))
        except (AlphaModelsError, ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, DatabaseUnavailableError | SchemaBehindError):
                raise
            # A record the database refuses for good must not block the ones behind it:
            # it is set aside (durably) and reported, never dropped silently.
            self._reject(entry, exc)

    def _reject(self, entry: SpoolEntry, exc: BaseException) -> None:
        path = self.spool.directory / "rejected.jsonl"
        line = json.dumps(
            {"seq": entry.seq, "error": str(exc), "record": entry.record}, ensure_ascii=False
        )
        with path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        log.error("spooled record %d refused by the database, kept in %s: %s", entry.seq, path, exc)

    def _deliver_record(self, record: dict[str, Any]) -> None:
        if record["kind"] == "fill":
            fill = FillInput(known_bots=self._known_bots, **record["data"])
            result = self._write_fill(fill)
            self._update_cache(result.position)
        elif record["kind"] == "order":
            order = OrderUpdate(known_bots=self._known_bots, **record["data"])
            with self.engine.begin() as conn:
                conn.execute(RECORD_ORDER, self._order_params(order))
        else:
            raise ValueError(f"unknown spool record kind {record['kind']!r}")

    def _drain_spool(self) -> int:
        if not self._spool_dirty:
            return 0
        if not len(self.spool):
            self._spool_dirty = False
            return 0
        try:
            delivered = self.spool.replay(self._deliver)
        except DBAPIError as exc:
            if _is_unavailable(exc):
                self._mark_down(exc)
                return 0
            raise translate_error(exc, self.settings) from None
        if delivered:
            log.info("replayed %d spooled record(s)", delivered)
        if not len(self.spool):
            self._spool_dirty = False
        return delivered

    def flush(self) -> int:
        """Deliver the spool now (at start-up, on a timer, at shutdown); returns the count."""
        with self._lock:
            self._down_until = 0.0
            return self._drain_spool()

    def _database_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _mark_down(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self._retry_after
        self._retry_after = min(self._retry_after * 2, self._max_retry)
        log.warning(
            "PostgreSQL unreachable, spooling for %.1fs: %s",
            self._down_until - time.monotonic(),
            translate_error(exc, self.settings),
        )

    def _mark_up(self) -> None:
        self._retry_after = self._min_retry

    # -- cache -------------------------------------------------------------------------
    def _update_cache(self, snapshot: PositionSnapshot | None) -> None:
        self._mark_up()
        if self.cache is None or snapshot is None:
            return
        try:
            if self._cache_stale and not self.rebuild_cache():
                return
            self.cache.apply(snapshot)
        except CacheUnavailableError as exc:
            if not self._cache_stale:
                log.warning("Redis unavailable, cache marked stale: %s", exc)
            self._cache_stale = True

    def rebuild_cache(self, bot_ids: Collection[str] | None = None) -> bool:
        """Make Redis equal to PostgreSQL; False if Redis is still unreachable."""
        if self.cache is None:
            return True
        try:
            self.cache.rebuild(load_snapshots_from_db(self.engine), bot_ids)
        except CacheUnavailableError:
            return False
        self._cache_stale = False
        return True

    @property
    def cache_stale(self) -> bool:
        return self._cache_stale
