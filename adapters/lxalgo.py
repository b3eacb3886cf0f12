"""LXAlgo's ``TradeTracker`` on the shared database: a drop-in for the strategy's
``trade_tracker.py`` (LXALGO.md).

The strategy changes one import line (or replaces its ``trade_tracker.py`` with
``from adapters.trade_tracker import *``). Everything it relies on is kept:

- the names ``TradeTracker``, ``trade_tracker`` (one instance, built when first imported:
  it creates ``trade_log.json`` in the working directory), ``enhance_active_trades_structure``,
  ``get_trade_age_hours`` and ``get_trade_expiry``; the methods' signatures, defaults and
  return shapes; nothing raises for I/O or database trouble;
- the JSON log, byte for byte what the original writes for the same calls
  (``json.dump(data, f, indent=2, default=str)``, the last 1000 events), so the file stays the
  strategy's local memory and its operators' view.

In addition each event is recorded through the write path as bot ``lxalgo_001``
(:mod:`alpha_models.lxalgo_import` has the rules): ``opened`` -> a provisional Buy entry fill
(source ``tracker``) and a ``strategy_trades`` row with its rule; ``closed`` -> the trade's
exit time and reason (and an exit fill when a price is known). The JSON is written first and
is the journal: whatever the database missed (a kill between the two writes, an outage) is
caught up from the file at the next contact, exactly once (events have deterministic ids).

Recovery (:meth:`TradeTracker.get_active_trades_from_log`) returns the database's open trades
when it is reachable, the JSON's otherwise; the two are compared and a difference is logged as
a WARNING in ``audit.system_events``.

Deliberate differences from the original (all where it lost data or crashed the caller):

- the file is replaced atomically (temporary file, fsync, rename; in place when a rename is
  impossible), so a crash never leaves a truncated log;
- an unreadable log (truncated, empty, top level not ``{"trade_events": [...]}``) is kept as
  ``<name>_unreadable_<time>.json`` before the next write starts a new one (the original
  overwrote it, and raised ``TypeError``/``AttributeError`` for a top-level list);
- the cleanup methods are skipped (returning 0) while the database has not caught up, so they
  never delete events that exist nowhere else.

Extensions (keyword-only, unused by the strategy): ``exchange=ExchangeFill(...)`` on both
``log_trade_*`` methods records the exchange's own fill; :meth:`TradeTracker.sync_database`;
:attr:`TradeTracker.database_in_sync`; :meth:`TradeTracker.close`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

from alpha_models import lxalgo_store as store
from alpha_models.lxalgo_import import (
    BOT_ID,
    REDIS_DB,
    EventRecorder,
    ExchangeFill,
    ParsedLog,
    RawEntry,
    Rejected,
    TrackerEvent,
    parse_log_text,
    parse_log_timestamp,
    validate,
)
from alpha_models.runtime import build_write_path
from alpha_models.settings import Settings
from alpha_models.writepath import WritePath

__all__ = [
    "MAX_EVENTS",
    "TRADE_EXPIRY_HOURS",
    "ExchangeFill",
    "TradeTracker",
    "enhance_active_trades_structure",
    "get_trade_age_hours",
    "get_trade_expiry",
    "trade_tracker",
]

log = logging.getLogger(__name__)

MAX_EVENTS: Final = 1000
"""The original keeps the last 1000 events on every append."""
TRADE_EXPIRY_HOURS: Final = 72
"""Hard-coded by the original (its ``TRADE_EXPIRY_HOURS`` setting is not read)."""
RETRY_MIN_S: Final = 5.0
RETRY_MAX_S: Final = 300.0

TradeKey = tuple[Any, Any]
ActiveTrades = dict[TradeKey, dict[str, Any]]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)  # noqa: UP017 (the original's spelling, same object)


def _cutoff(now: datetime, span: timedelta) -> datetime:
    try:
        return now - span
    except OverflowError:  # a "huge window" reaches before year 1
        return datetime.min.replace(tzinfo=UTC)


def _roundtrip(event: Any) -> Any:
    """``event`` as the JSON log holds it (what a later read or an import sees)."""
    return json.loads(json.dumps(event, default=str))


def _is_log(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("trade_events"), list)


class _Database:
    """The tracker's link to PostgreSQL: built lazily, backs off after a failure."""

    def __init__(
        self, bot_id: str, settings: Settings | None, write_path: WritePath | None
    ) -> None:
        self.bot_id = bot_id
        self._settings = settings
        self._write_path = write_path
        self._owned = False
        self._broken: str | None = None
        self._retry_at = 0.0
        self._delay = RETRY_MIN_S
        self.needs_sync = True  # an earlier process may have died before its database write
        self.exchange: dict[str, ExchangeFill] = {}  # exchange data of events not yet recorded
        self.recorder: EventRecorder | None = None

    def path(self) -> WritePath | None:
        """The write path, or None while the database is known to be unusable."""
        if self._broken is not None or time.monotonic() < self._retry_at:
            return None
        if self._write_path is None:
            try:
                self._write_path = build_write_path(self._settings or Settings(), redis_db=REDIS_DB)
                self._owned = True
            except Exception as exc:  # configuration: will not fix itself in this process
                self._broken = str(exc) or type(exc).__name__
                log.error("LXAlgo tracker: database disabled (JSON only): %s", self._broken)
                return None
        if self.recorder is None:
            self.recorder = EventRecorder(self._write_path, bot_id=self.bot_id, origin="adapter")
        return self._write_path

    def failed(self, exc: BaseException) -> None:
        self.needs_sync = True
        self._retry_at = time.monotonic() + self._delay
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if self._write_path is not None:
            reason = self._write_path.settings.scrub(reason)
        log.warning(
            "LXAlgo tracker: database write failed, the JSON log keeps the event and the "
            "database catches up within %.0f s: %s",
            self._delay,
            reason,
        )
        self._delay = min(self._delay * 2, RETRY_MAX_S)

    def succeeded(self) -> None:
        self._delay = RETRY_MIN_S

    def close(self) -> None:
        if self._owned and self._write_path is not None:
            self._write_path.close()
            self._write_path.engine.dispose()


class TradeTracker:
    """Tracks LXAlgo's trades in ``trade_log.json`` and in the shared database.

    ``log_file`` is the original's only parameter. Keyword-only extras: ``write_path`` (built
    from the environment, Redis DB 1, on first use when omitted), ``settings``, ``bot_id``,
    ``database=False`` (JSON only, exactly the original) and ``clock`` (returns the aware
    "now"; tests freeze it).
    """

    def __init__(
        self,
        log_file: str = "trade_log.json",
        *,
        bot_id: str = BOT_ID,
        settings: Settings | None = None,
        write_path: WritePath | None = None,
        database: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.log_file = Path(log_file)
        self.pending_events: list[dict[str, Any]] = []  # unused, as in the original
        self.lock = threading.Lock()
        self._clock = clock or _utc_now
        self._serial = threading.RLock()  # one call at a time: database writes in log order
        self._db = _Database(bot_id, settings, write_path) if database else None
        self._ensure_log_file()

    # -- the original's private helpers ------------------------------------------------
    def _ensure_log_file(self) -> None:
        if not self.log_file.exists():
            self._write_to_file({"trade_events": []})

    def _write_to_file(self, data: Any) -> bool:
        """Write the log as the original does, but atomically; False (printed) on error."""
        try:
            text = json.dumps(data, indent=2, default=str)
        except Exception as e:
            print(f"⚠️ Error writing trade log: {e}")
            return False
        try:
            self._replace(text)
        except OSError:
            try:  # no rename possible (a file bind mount, a read-only directory): in place
                with open(self.log_file, "w", encoding="utf-8") as f:
                    f.write(text)
            except Exception as e:
                print(f"⚠️ Error writing trade log: {e}")
                return False
        return True

    def _replace(self, text: str) -> None:
        tmp = self.log_file.with_name(f".{self.log_file.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if self.log_file.exists():
                shutil.copymode(self.log_file, tmp)
            os.replace(tmp, self.log_file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _read_log(self) -> tuple[Any, bool]:
        """(document, readable): what the original's ``_read_from_file`` returns, and whether
        it came from the file (False: missing or unreadable, the empty log returned)."""
        try:
            with open(self.log_file, encoding="utf-8") as f:
                return json.load(f), True
        except Exception as e:
            print(f"⚠️ Error reading trade log: {e}")
            return {"trade_events": []}, False

    def _read_from_file(self) -> Any:
        return self._read_log()[0]

    def _load_for_rewrite(self) -> dict[str, Any]:
        """The document to modify; an unreadable file is first kept under another name."""
        data, readable = self._read_log()
        if readable and _is_log(data):
            assert isinstance(data, dict)
            return data
        if readable:
            print('⚠️ Error reading trade log: top level is not {"trade_events": [...]}')
        self._keep_unreadable()
        return {"trade_events": []}

    def _keep_unreadable(self) -> None:
        try:
            if not self.log_file.exists() or self.log_file.stat().st_size == 0:
                return
            stamp = self._clock().astimezone(UTC).strftime("%Y%m%dT%H%M%S%f")
            name = f"{self.log_file.stem}_unreadable_{stamp}"
            kept = self.log_file.with_name(f"{name}{self.log_file.suffix}")
            n = 1
            while kept.exists():  # never overwrite an earlier copy
                n += 1
                kept = self.log_file.with_name(f"{name}_{n}{self.log_file.suffix}")
            shutil.copy2(self.log_file, kept)
        except OSError as exc:
            print(f"⚠️ Error keeping the unreadable trade log: {exc}")
            return
        print(f"⚠️ Unreadable trade log kept as {kept.name}")
        self._catch_up_from(kept)

    def _add_event(self, event: dict[str, Any]) -> list[Any] | None:
        """Append under the lock, keep the last 1000, rewrite; the events as written."""
        with self.lock:
            data = self._load_for_rewrite()
            data["trade_events"].append(event)
            data["trade_events"] = data["trade_events"][-MAX_EVENTS:]
            return data["trade_events"] if self._write_to_file(data) else None

    # -- public methods -------------------------------------------------------------------
    def log_trade_opened(
        self,
        symbol: str,
        rule_id: str,
        entry_price: float,
        position_size: float,
        entry_timestamp: datetime | None = None,
        *,
        exchange: ExchangeFill | None = None,
    ) -> None:
        """Log a market entry (``entry_timestamp``: taken before the order was sent; None is
        now). ``exchange``: the exchange's fill of the entry, when the caller has it."""
        if entry_timestamp is None:
            entry_timestamp = self._clock()
        event = {
            "timestamp": entry_timestamp.isoformat(),
            "event": "opened",
            "symbol": symbol,
            "rule_id": rule_id,
            "entry_price": entry_price,
            "position_size": position_size,
        }
        with self._serial:
            self._record(event, self._add_event(event), exchange)

    def log_trade_closed(
        self,
        symbol: str,
        rule_id: str,
        reason: str = "manual",
        *,
        exchange: ExchangeFill | None = None,
    ) -> None:
        """Log a close, timed now. ``exchange``: the exchange's exit fill (or its order id /
        price), when the caller has it; without a price no exit fill is recorded."""
        event = {
            "timestamp": self._clock().isoformat(),
            "event": "closed",
            "symbol": symbol,
            "rule_id": rule_id,
            "reason": reason,
        }
        with self._serial:
            self._record(event, self._add_event(event), exchange)

    def get_active_trades_from_log(self, max_age_hours: int = 168) -> ActiveTrades:
        """Open trades keyed ``(symbol, rule_id)``: from the database when reachable (after it
        caught up with the log), else from the log with the original's rules."""
        with self._serial:
            from_log = self._recover_from_log(max_age_hours)
            from_db = self._recover_from_database(max_age_hours, from_log)
        return from_log if from_db is None else from_db

    def cleanup_old_events(self, max_age_days: int = 30) -> None:
        """Keep the events of the last ``max_age_days`` days (the database keeps them all)."""
        with self._serial:
            self._cleanup_old_events(max_age_days)

    def _cleanup_old_events(self, max_age_days: int) -> None:
        if not self._database_caught_up():
            print("⚠️ Trade log cleanup postponed: the database has not caught up yet")
            return
        with self.lock:
            data = self._load_for_rewrite()
            cutoff = _cutoff(self._clock(), timedelta(days=max_age_days))
            recent = [e for e in data["trade_events"] if _is_recent(e, cutoff)]
            data["trade_events"] = recent
            self._write_to_file(data)
            print(f"🧹 Cleaned trade log: kept {len(recent)} recent events")

    def cleanup_closed_trades(self) -> int:
        """Remove opened/closed pairs from the log; returns ``(before - after) // 2``."""
        with self._serial:
            return self._cleanup_closed_trades()

    def _cleanup_closed_trades(self) -> int:
        if not self._database_caught_up():
            print("⚠️ Trade log cleanup postponed: the database has not caught up yet")
            return 0
        with self.lock:
            data = self._load_for_rewrite()
            events = data["trade_events"]
            before = len(events)
            kept: list[Any] = []
            marked: set[TradeKey] = set()
            for event in events:
                try:
                    key = (event["symbol"], event["rule_id"])
                    kind = event["event"]
                    if kind == "opened":
                        kept.append(event)
                        marked.add(key)
                    elif kind == "closed":
                        if key in marked:
                            kept = [e for e in kept if not _is_open_of(e, key)]
                            marked.discard(key)
                        else:
                            kept.append(event)
                except Exception:
                    kept.append(event)
            data["trade_events"] = kept
            self._write_to_file(data)
            removed = (before - len(kept)) // 2
            if removed > 0:
                print(f"🧹 Cleaned {removed} completed trade pairs from log")
            return removed

    # -- extensions ------------------------------------------------------------------------
    @property
    def database_in_sync(self) -> bool:
        """True when every logged event is known to be in the database."""
        return self._db is not None and not self._db.needs_sync

    def sync_database(self) -> int:
        """Catch the database up with the log now; returns the events newly recorded."""
        if self._db is None:
            return 0
        with self._serial:
            if self._db.path() is None:
                return 0
            return self._guarded(lambda: self._sync(self._raw_entries())) or 0

    def close(self) -> None:
        """Release the database connection the tracker opened itself."""
        if self._db is not None:
            self._db.close()

    # -- database --------------------------------------------------------------------------
    def _guarded(self, action: Callable[[], Any]) -> Any:
        """Run a database action; on any failure log it, back off and return None."""
        assert self._db is not None
        try:
            result = action()
        except Exception as exc:  # the strategy must never see a database error
            self._db.failed(exc)
            return None
        self._db.succeeded()
        return result

    def _raw_entries(self) -> list[RawEntry]:
        data, _readable = self._read_log()
        events = data["trade_events"] if _is_log(data) else []
        return [RawEntry(i, None, v) for i, v in enumerate(events)]

    def _record(
        self, event: dict[str, Any], written: list[Any] | None, exchange: ExchangeFill | None
    ) -> None:
        if self._db is None:
            return
        index = len(written) - 1 if written else -1
        try:
            item = validate(RawEntry(index, None, _roundtrip(event)), bot_id=self._db.bot_id)
        except Exception as exc:  # not even encodable: the log write failed the same way
            log.error("LXAlgo tracker: event not recorded, it cannot be encoded: %s", exc)
            return
        with self._serial:
            if exchange is not None:
                self._db.exchange[item.event_id] = exchange
            if self._db.path() is None:
                self._db.needs_sync = True
                return
            if self._db.needs_sync:
                entries = [RawEntry(i, None, v) for i, v in enumerate(written or [])]
                if written is None:  # the file write failed: the event exists only here
                    entries = [*self._raw_entries(), RawEntry(index, None, _roundtrip(event))]
                self._guarded(lambda: self._sync(entries))
            else:
                self._guarded(lambda: self._apply(item))

    def _apply(self, item: TrackerEvent | Rejected) -> None:
        assert self._db is not None and self._db.recorder is not None
        engine = self._engine()
        exchange = self._db.exchange.get(item.event_id)
        with engine.begin() as conn:
            self._db.recorder.apply(conn, item, source=str(self.log_file), exchange=exchange)
        self._db.exchange.pop(item.event_id, None)

    def _engine(self) -> Any:
        assert self._db is not None
        path = self._db.path()
        assert path is not None
        return path.engine

    def _sync(self, entries: Sequence[RawEntry]) -> int:
        """Record every entry the database does not have yet, in file order."""
        assert self._db is not None
        items = [validate(e, bot_id=self._db.bot_id) for e in entries]
        with self._engine().connect() as conn:
            known = set(store.known_events(conn, self._db.bot_id, [i.event_id for i in items]))
            conn.rollback()
        written = 0
        for item in items:
            if item.event_id in known:
                continue
            self._apply(item)
            known.add(item.event_id)
            written += 1
        self._db.needs_sync = False
        if written:
            log.info("LXAlgo tracker: %d logged event(s) caught up in the database", written)
        return written

    def _catch_up_from(self, path: Path) -> None:
        """Record the readable events of a kept unreadable log (nothing is lost)."""
        if self._db is None:
            return
        with self._serial:
            if self._db.path() is None:
                return
            try:
                parsed = parse_log_text(path.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                return
            needs_sync = self._db.needs_sync
            self._guarded(lambda: self._sync(parsed.entries))
            self._db.needs_sync = self._db.needs_sync or needs_sync
            self._guarded(lambda: self._report_unreadable(path, parsed))

    def _report_unreadable(self, kept: Path, parsed: ParsedLog) -> None:
        assert self._db is not None
        with self._engine().begin() as conn:
            store.log_event(
                conn,
                event_type=store.LOG_UNREADABLE,
                bot_id=self._db.bot_id,
                message=(
                    f"{self.log_file} was unreadable and is kept as {kept}; a new log was "
                    f"started ({len(parsed.entries)} readable event(s) are in the database)"
                ),
                details={
                    "log_file": str(self.log_file),
                    "kept_as": str(kept),
                    "readable_events": len(parsed.entries),
                    "problems": [
                        {"kind": str(p.kind), "line": p.line, "message": p.message}
                        for p in parsed.problems
                    ],
                },
            )

    def _database_caught_up(self) -> bool:
        """True unless the database is in use and may miss events the log still has."""
        if self._db is None or not self._db.needs_sync:
            return True
        self.sync_database()
        return not self._db.needs_sync

    # -- recovery --------------------------------------------------------------------------
    def _recover_from_log(self, max_age_hours: int) -> ActiveTrades:
        """The original's recovery: events in file order, per-event age window, last open
        wins, any key with a close (anywhere) excluded."""
        data = self._read_from_file()
        if not _is_log(data):
            print('⚠️ Error reading trade log: top level is not {"trade_events": [...]}')
            return {}
        cutoff = _cutoff(self._clock(), timedelta(hours=max_age_hours))
        opened: ActiveTrades = {}
        closed: set[TradeKey] = set()
        for event in data["trade_events"]:
            try:
                ts = parse_log_timestamp(event["timestamp"])
                if ts < cutoff:
                    continue
                key = (event["symbol"], event["rule_id"])
                if event["event"] == "opened":
                    opened[key] = {
                        "entry_timestamp": ts,
                        "entry_price": event["entry_price"],
                        "position_size": event["position_size"],
                        "rule_id": event["rule_id"],
                        "expiry_time": ts + timedelta(hours=TRADE_EXPIRY_HOURS),
                    }
                elif event["event"] == "closed":
                    closed.add(key)
            except Exception as e:
                print(f"⚠️ Error parsing event: {e}")
                continue
        return {key: trade for key, trade in opened.items() if key not in closed}

    def _recover_from_database(
        self, max_age_hours: int, from_log: ActiveTrades
    ) -> ActiveTrades | None:
        if self._db is None:
            return None
        with self._serial:
            if self._db.path() is None:
                log.warning("LXAlgo tracker: database unreachable, trades recovered from the log")
                return None
            result: ActiveTrades | None = self._guarded(
                lambda: self._database_trades(max_age_hours, from_log)
            )
            if result is None:
                log.warning("LXAlgo tracker: database unreachable, trades recovered from the log")
            return result

    def _database_trades(self, max_age_hours: int, from_log: ActiveTrades) -> ActiveTrades:
        assert self._db is not None
        if self._db.needs_sync:
            self._sync(self._raw_entries())
        now = self._clock()
        engine = self._engine()
        with engine.connect() as conn:
            rows = store.active_trades(
                conn, self._db.bot_id, _cutoff(now, timedelta(hours=max_age_hours))
            )
            conn.rollback()
        trades: ActiveTrades = {}
        for row in rows:  # oldest first: the last open of a key wins, as in the log
            trades[(row.symbol, row.rule_id)] = _trade_value(row)
        differences = _differences(trades, from_log)
        if differences is not None:
            message = (
                f"active trades differ between the database and {self.log_file}: "
                f"{len(differences['only_in_database'])} only in the database, "
                f"{len(differences['only_in_log'])} only in the log, "
                f"{len(differences['different_entry'])} with another entry; "
                "the database's are used"
            )
            with engine.begin() as conn:
                store.log_event(
                    conn,
                    event_type=store.RECOVERY_MISMATCH,
                    bot_id=self._db.bot_id,
                    message=message,
                    details={
                        **differences,
                        "log_file": str(self.log_file),
                        "max_age_hours": max_age_hours,
                        "now": now.isoformat(),
                    },
                )
            log.warning("LXAlgo tracker: %s", message)
        return trades


def _is_recent(event: Any, cutoff: datetime) -> bool:
    """Cleanup's age test: an event without a parsable, aware timestamp is not recent."""
    try:
        return bool(datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")) >= cutoff)
    except Exception:
        return False


def _is_open_of(event: Any, key: TradeKey) -> bool:
    """Cleanup's removal test: reads ``symbol``, ``rule_id`` and ``event`` of every kept event,
    so one kept event missing any of them makes the removal raise (the original's behaviour:
    the close is then kept and nothing is removed)."""
    same = (event["symbol"], event["rule_id"]) == key
    return bool(event["event"] == "opened" and same)


def _trade_value(row: store.TradeRow) -> dict[str, Any]:
    """The recovery value, with the log's own values (a float stays that float)."""
    logged = row.details.get("log") if isinstance(row.details, dict) else None
    logged = logged if isinstance(logged, dict) else {}
    entry = row.entry_time
    stamp = logged.get("timestamp")
    if isinstance(stamp, str):
        try:
            parsed = parse_log_timestamp(stamp)
        except ValueError:
            parsed = entry
        if parsed.tzinfo is not None and parsed.utcoffset() is not None:
            entry = parsed

    def value(name: str, stored: Any) -> Any:
        text = logged.get(name)
        if isinstance(text, str):
            try:
                return json.loads(text)
            except ValueError:
                pass
        return float(stored)

    return {
        "entry_timestamp": entry,
        "entry_price": value("entry_price", row.entry_price),
        "position_size": value("position_size", row.quantity),
        "rule_id": row.rule_id,
        "expiry_time": entry + timedelta(hours=TRADE_EXPIRY_HOURS),
    }


def _differences(database: ActiveTrades, from_log: ActiveTrades) -> dict[str, Any] | None:
    def entry(trade: dict[str, Any]) -> str:
        stamp = trade.get("entry_timestamp")
        return stamp.isoformat() if isinstance(stamp, datetime) else str(stamp)

    def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        x, y = a.get("entry_timestamp"), b.get("entry_timestamp")
        if isinstance(x, datetime) and isinstance(y, datetime):
            try:
                return x == y
            except TypeError:
                return False
        return x == y

    only_db = [[str(k[0]), str(k[1]), entry(database[k])] for k in database if k not in from_log]
    only_log = [[str(k[0]), str(k[1]), entry(from_log[k])] for k in from_log if k not in database]
    different = [
        [str(k[0]), str(k[1]), entry(database[k]), entry(from_log[k])]
        for k in database
        if k in from_log and not same(database[k], from_log[k])
    ]
    if not (only_db or only_log or different):
        return None
    return {
        "only_in_database": sorted(only_db),
        "only_in_log": sorted(only_log),
        "different_entry": sorted(different),
    }


# ------------------------------------------------------------------------------ helpers


def enhance_active_trades_structure(active_trades: dict[Any, Any]) -> dict[Any, Any]:
    """Legacy: a bare expiry datetime becomes the dict form (no entry time, price/size 0.0)."""
    enhanced: dict[Any, Any] = {}
    for key, value in active_trades.items():
        if isinstance(value, datetime):
            rule_id = key[1] if isinstance(key, tuple) and len(key) > 1 else None
            enhanced[key] = {
                "entry_timestamp": None,
                "entry_price": 0.0,
                "position_size": 0.0,
                "rule_id": rule_id,
                "expiry_time": value,
            }
        else:
            enhanced[key] = value
    return enhanced


def get_trade_age_hours(trade_data: dict[str, Any]) -> float:
    """Hours since ``entry_timestamp``, else since ``expiry_time - 72 h``, else 0.0."""
    if not isinstance(trade_data, dict):
        return 0.0
    now = _utc_now()
    entry = trade_data.get("entry_timestamp")
    if isinstance(entry, datetime):
        return (now - entry).total_seconds() / 3600
    expiry = trade_data.get("expiry_time")
    if isinstance(expiry, datetime):
        return (now - (expiry - timedelta(hours=TRADE_EXPIRY_HOURS))).total_seconds() / 3600
    return 0.0


def get_trade_expiry(trade_data: dict[str, Any]) -> datetime:
    """``expiry_time`` (a bare datetime is one), else now + 72 h."""
    if isinstance(trade_data, datetime):
        return trade_data
    if isinstance(trade_data, dict) and isinstance(trade_data.get("expiry_time"), datetime):
        expiry: datetime = trade_data["expiry_time"]
        return expiry
    return _utc_now() + timedelta(hours=TRADE_EXPIRY_HOURS)


# ------------------------------------------------------------------------------ singleton

trade_tracker: TradeTracker
"""The shared instance, built on first import of the name (creates ``trade_log.json`` in the
working directory, connects to nothing until the first event)."""

_SINGLETON_LOCK = threading.Lock()


def __getattr__(name: str) -> Any:
    if name == "trade_tracker":
        with _SINGLETON_LOCK:
            tracker = globals().get("trade_tracker")
            if tracker is None:
                tracker = TradeTracker()
                globals()["trade_tracker"] = tracker
        return tracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
