"""Import of a legacy Momentum SQLite file (``data/trading.db``) into the shared schema, and
the reverse export that :meth:`adapters.momentum.TradeDatabase.backup` uses.

What goes where
---------------
=================  =========================================================================
SQLite table       shared schema
=================  =========================================================================
trades             ``trading.strategy_trades`` (source ``import``; ``trade_id`` ->
                   ``trade_key``; ``position_size_usd`` -> ``notional_usd``; the SQLite id
                   and every value that had more than 8 decimals in ``details``), and each
                   entry and priced exit as a fill through the write path (exec ids from
                   :func:`~alpha_models.momentum_store.trade_exec_id`, source ``import``)
daily_snapshots    ``trading.equity_snapshots`` (source ``import``), keyed (bot, date, mode)
system_events      ``audit.system_events`` (component ``momentum``, details as jsonb)
risk_events        ``audit.risk_events``
=================  =========================================================================

Every row keeps its legacy ``created_at`` (UTC, SQLite ``CURRENT_TIMESTAMP``). The naive
``entry_time``/``exit_time``/``event_time`` are read in the operator's zone (``tz``,
default UTC) and stored aware; a local time that is ambiguous (DST fold: the first
occurrence is used) or does not exist is listed in the notes.

Idempotent: trades are keyed by (bot, trade id), snapshots by (bot, date, mode), events by
(bot, time to the microsecond, type, level, message), risk events by all their values, fills
by exec id. A second run adds nothing; a trade that was open at the first run and has an
exit in the file now gets its exit. All rows are written in one transaction (nothing is
half-imported), then the fills are booked one by one through the write path; fills that are
missing (an interrupted run) are booked by the next run or the adapter's next start.

Rows the shared schema cannot hold are never dropped silently: each is reported with its
SQLite id and the reason (a quantity that rounds to 0 at 8 decimals, a non-finite or
non-positive price, an unknown mode, side or level, text too long, a time outside
2015..2100, ...). A trade whose exit has no price is stored with its exit, but no exit fill
can be booked (noted).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

from alpha_models.errors import ValidationError
from alpha_models.momentum_store import (
    SOURCE_IMPORT,
    EventRecord,
    MissingLeg,
    MomentumStore,
    RiskRecord,
    SnapshotRecord,
    TradeClose,
    TradeOpen,
    details_json,
    exit_fill,
)
from alpha_models.writepath import Outcome, WritePath

__all__ = [
    "FillCounts",
    "ImportReport",
    "LegacyFile",
    "LegacyTrade",
    "Rejected",
    "TableCounts",
    "book_missing_fills",
    "export_sqlite",
    "file_sha256",
    "import_legacy",
    "is_legacy_sqlite",
    "read_legacy",
]

log = logging.getLogger(__name__)

Progress = Callable[[Iterable[Any], int, str], Iterable[Any]]
"""``progress(items, total, label)`` -> the same items (e.g. drawing a bar)."""

TABLES: Final = ("trades", "daily_snapshots", "system_events", "risk_events")
_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_CENT: Final = Decimal("0.005")


def _no_progress(items: Iterable[Any], total: int, label: str) -> Iterable[Any]:
    return items


# ------------------------------------------------------------------------------ report


@dataclass(frozen=True, slots=True)
class Rejected:
    """A legacy row the shared schema cannot hold."""

    table: str
    id: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Note:
    """A legacy row stored with an adjustment worth knowing."""

    table: str
    id: int | None
    note: str


@dataclass(slots=True)
class TableCounts:
    read: int = 0
    added: int = 0
    updated: int = 0
    existing: int = 0
    rejected: int = 0

    def count(self, outcome: Literal["added", "updated", "existing"]) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)


@dataclass(slots=True)
class FillCounts:
    """Fills of trade legs: ``owed`` were missing before this run; ``new`` were booked,
    ``existing`` were already there, ``spooled`` wait in the write path's spool."""

    owed: int = 0
    new: int = 0
    existing: int = 0
    spooled: int = 0


@dataclass(slots=True)
class PnlCheck:
    """Σ pnl_usd of one mode: the legacy file's own figure and the shared schema's."""

    legacy: float
    imported: Decimal | None
    trades_legacy: int
    trades_imported: int

    @property
    def matches(self) -> bool:
        """Equal to the cent."""
        got = self.imported if self.imported is not None else Decimal(0)
        return abs(got - Decimal(repr(self.legacy))) < _CENT


@dataclass(slots=True)
class ImportReport:
    file: str
    sha256: str
    bot_id: str
    tz: str
    dry_run: bool
    tables: dict[str, TableCounts] = field(default_factory=dict)
    fills: FillCounts = field(default_factory=FillCounts)
    pnl: dict[str, PnlCheck] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    already_imported: bool = False

    @property
    def rows_added(self) -> int:
        """Rows added or changed (for a dry run: that a real run would add or change)."""
        fills = self.fills.owed if self.dry_run else self.fills.new
        return sum(c.added + c.updated for c in self.tables.values()) + fills

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe (Decimals as text)."""
        out = asdict(self)
        out["pnl"] = {
            mode: {
                "legacy": check.legacy,
                "imported": None if check.imported is None else format(check.imported, "f"),
                "trades_legacy": check.trades_legacy,
                "trades_imported": check.trades_imported,
                "matches": check.matches,
            }
            for mode, check in self.pnl.items()
        }
        out["rows_added"] = self.rows_added
        return out

    def summary_line(self) -> str:
        t = self.tables
        parts = [f"{name} {c.added} added" for name, c in t.items()]
        return (
            f"{'dry run: ' if self.dry_run else ''}{self.file}: "
            + ", ".join(parts)
            + f"; fills {self.fills.new} booked; {len(self.rejected)} rejected"
        )


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True, slots=True)
class LegacyTrade:
    legacy_id: int
    open: TradeOpen
    close: TradeClose | None


@dataclass(slots=True)
class LegacyFile:
    """A legacy file read and validated (nothing written)."""

    path: Path
    sha256: str
    trades: list[LegacyTrade] = field(default_factory=list)
    snapshots: list[SnapshotRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    risks: list[RiskRecord] = field(default_factory=list)
    read: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejected] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    #: mode -> (trades, Σ pnl_usd) as SQLite computes it from the file.
    pnl: dict[str, tuple[int, float]] = field(default_factory=dict)


def is_legacy_sqlite(path: Path | str) -> bool:
    """True if ``path`` is a SQLite database file (by its header)."""
    try:
        with Path(path).open("rb") as fh:
            return fh.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return False


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Reject(Exception):
    pass


class _Reader:
    def __init__(self, legacy: LegacyFile, zone: tzinfo) -> None:
        self.legacy = legacy
        self.zone = zone

    def note(self, table: str, row_id: int | None, text: str) -> None:
        self.legacy.notes.append(Note(table, row_id, text))

    def local_time(self, table: str, row_id: int | None, name: str, value: Any) -> datetime:
        """A naive legacy time read in the operator's zone (aware values are kept)."""
        if not isinstance(value, str):
            raise _Reject(f"{name}: not a timestamp ({value!r})")
        try:
            naive = datetime.fromisoformat(value)
        except ValueError:
            raise _Reject(f"{name}: not a timestamp ({value!r})") from None
        if naive.tzinfo is not None:
            return naive.astimezone(UTC)
        first = naive.replace(tzinfo=self.zone, fold=0)
        second = naive.replace(tzinfo=self.zone, fold=1)
        if first.utcoffset() != second.utcoffset():
            back = first.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None)
            kind = "does not exist" if back != naive else "is ambiguous (first occurrence used)"
            self.note(table, row_id, f"{name} {value} {kind} in {self.zone}")
        return first.astimezone(UTC)

    @staticmethod
    def utc_time(value: Any) -> datetime | None:
        """``created_at``: SQLite ``CURRENT_TIMESTAMP``, naive UTC."""
        if not isinstance(value, str):
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    def trade(self, row: sqlite3.Row, bot_id: str) -> LegacyTrade:
        row_id = int(row["id"])
        key = row["trade_id"]
        if key is None:
            key = f"sqlite:{row_id}"
            self.note("trades", row_id, f"trade_id NULL: stored as {key!r}")
        entry_time = self.local_time("trades", row_id, "entry_time", row["entry_time"])
        opened = TradeOpen.build(
            bot_id=bot_id,
            trade_id=key,
            mode=row["mode"],
            symbol=row["symbol"],
            side=row["side"],
            entry_price=row["entry_price"],
            quantity=row["quantity"],
            position_size_usd=row["position_size_usd"],
            stop_loss=row["stop_loss"],
            take_profit=row["take_profit"],
            signal_strength=row["signal_strength"],
            entry_time=entry_time,
            source=SOURCE_IMPORT,
            created_at=self.utc_time(row["created_at"]),
            legacy_id=row_id,
        )
        close = None
        if row["exit_time"] is not None:
            close = TradeClose.build(
                bot_id=bot_id,
                trade_id=key,
                exit_price=row["exit_price"],
                pnl_usd=row["pnl_usd"],
                pnl_pct=row["pnl_pct"],
                exit_reason=row["exit_reason"],
                holding_time_seconds=row["holding_time_seconds"],
                exit_time=self.local_time("trades", row_id, "exit_time", row["exit_time"]),
                source=SOURCE_IMPORT,
                require_price=False,
            )
            if close.exit_price is None:
                self.note("trades", row_id, "exit without a price: stored, no exit fill booked")
            else:
                exit_fill(
                    symbol=opened.symbol,
                    entry_side=opened.side,
                    quantity=opened.quantity,
                    close=close,
                )
        elif any(row[c] is not None for c in ("exit_price", "pnl_usd", "exit_reason")):
            self.note("trades", row_id, "exit values without exit_time: kept open, values dropped")
        if "holding_time_seconds" in (close.exact if close else {}):
            self.note("trades", row_id, "fractional holding_time_seconds rounded (exact kept)")
        return LegacyTrade(row_id, opened, close)

    def snapshot(self, row: sqlite3.Row, bot_id: str) -> SnapshotRecord:
        return SnapshotRecord.build(
            bot_id=bot_id,
            date=row["date"],
            mode=row["mode"],
            starting_equity=row["starting_equity"],
            ending_equity=row["ending_equity"],
            daily_pnl=row["daily_pnl"],
            daily_pnl_pct=row["daily_pnl_pct"],
            trades_count=row["trades_count"],
            wins_count=row["wins_count"],
            losses_count=row["losses_count"],
            open_positions=row["open_positions"],
            source=SOURCE_IMPORT,
            created_at=self.utc_time(row["created_at"]),
        )

    def event(self, row: sqlite3.Row, bot_id: str) -> EventRecord:
        row_id = int(row["id"])
        raw = row["details"]
        details: str | None
        if raw is None or raw == "":
            details = None
        elif not isinstance(raw, str):
            details = details_json(raw)
            self.note("system_events", row_id, "details was not text: stored as its JSON value")
        else:
            try:
                strict = json.loads(raw, parse_constant=_reject_constant)
                del strict
                details = raw  # valid JSON: jsonb keeps every digit of the original text
                if "\\u0000" in raw:
                    raise _Reject("details: contains NUL characters (jsonb cannot store them)")
            except _NonFinite:
                details = details_json(json.loads(raw))
                self.note("system_events", row_id, "details NaN/Infinity stored as strings")
            except ValueError:
                details = json.dumps({"raw": raw}, ensure_ascii=False)
                self.note("system_events", row_id, "details not JSON: stored as {'raw': text}")
        return EventRecord.build(
            bot_id=bot_id,
            event_type=row["event_type"],
            level=row["event_level"],
            message=row["message"],
            details=details,
            details_is_json=True,
            event_time=self.local_time("system_events", row_id, "event_time", row["event_time"]),
            created_at=self.utc_time(row["created_at"]),
        )

    def risk(self, row: sqlite3.Row, bot_id: str) -> RiskRecord:
        row_id = int(row["id"])
        return RiskRecord.build(
            bot_id=bot_id,
            risk_type=row["risk_type"],
            current_value=row["current_value"],
            limit_value=row["limit_value"],
            action_taken=row["action_taken"],
            event_time=self.local_time("risk_events", row_id, "event_time", row["event_time"]),
            created_at=self.utc_time(row["created_at"]),
        )


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFinite(name)


def _connect_readonly(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def read_legacy(path: Path | str, *, bot_id: str, tz: tzinfo = UTC) -> LegacyFile:
    """Read and validate every row of a legacy file (read-only; nothing is written)."""
    file = Path(path)
    if not is_legacy_sqlite(file):
        raise ValidationError("file", str(file), "not a SQLite database file")
    legacy = LegacyFile(file, file_sha256(file))
    reader = _Reader(legacy, tz)
    conn = _connect_readonly(file)
    try:
        present = {
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if "trades" not in present:
            raise ValidationError("file", str(file), "no 'trades' table: not a Momentum database")
        builders: dict[str, tuple[Callable[[sqlite3.Row, str], Any], list[Any]]] = {
            "trades": (reader.trade, legacy.trades),
            "daily_snapshots": (reader.snapshot, legacy.snapshots),
            "system_events": (reader.event, legacy.events),
            "risk_events": (reader.risk, legacy.risks),
        }
        for table, (build, out) in builders.items():
            if table not in present:
                reader.note(table, None, "table absent from the file")
                continue
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY id"):  # noqa: S608
                legacy.read[table] += 1
                row_id = row["id"]
                try:
                    out.append(build(row, bot_id))
                except (_Reject, ValidationError) as exc:
                    legacy.rejected.append(Rejected(table, row_id, str(exc)))
        for mode, n, total in conn.execute(
            "SELECT mode, count(*), coalesce(sum(pnl_usd), 0.0) FROM trades GROUP BY mode"
        ):
            legacy.pnl[str(mode)] = (int(n), float(total))
    except sqlite3.Error as exc:
        raise ValidationError("file", str(file), f"unreadable SQLite file: {exc}") from None
    finally:
        conn.close()
    return legacy


# ------------------------------------------------------------------------------ import


def _tz_name(zone: tzinfo) -> str:
    return str(getattr(zone, "key", None) or zone)


def import_legacy(
    path: Path | str,
    *,
    store: MomentumStore,
    write_path: WritePath | None,
    bot_id: str = "momentum_001",
    tz: tzinfo = UTC,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a legacy file (see the module docstring); ``dry_run`` writes nothing and
    reports what a real run would add. ``write_path`` may be None only for a dry run."""
    show = progress or _no_progress
    store.check_ready(bot_id)
    legacy = read_legacy(path, bot_id=bot_id, tz=tz)
    report = ImportReport(
        file=str(legacy.path),
        sha256=legacy.sha256,
        bot_id=bot_id,
        tz=_tz_name(tz),
        dry_run=dry_run,
        tables={name: TableCounts(read=legacy.read[name]) for name in TABLES},
        rejected=list(legacy.rejected),
        notes=list(legacy.notes),
    )
    for rejected in legacy.rejected:
        report.tables[rejected.table].rejected += 1
    report.already_imported = store.was_imported(bot_id, legacy.sha256)
    keys = [t.open.trade_key for t in legacy.trades]
    legs: list[MissingLeg]
    with store.engine.connect() as conn:
        transaction = conn.begin()
        try:
            store.lock_bot(conn, bot_id)
            counts = report.tables["trades"]
            for trade in show(legacy.trades, len(legacy.trades), "trades"):
                counts.count(store.import_trade(conn, trade.open, trade.close))
            counts = report.tables["daily_snapshots"]
            for snap in show(legacy.snapshots, len(legacy.snapshots), "snapshots"):
                counts.count(store.import_snapshot(conn, snap))
            counts = report.tables["system_events"]
            for event in show(legacy.events, len(legacy.events), "events"):
                counts.count("added" if store.import_event(conn, event) else "existing")
            counts = report.tables["risk_events"]
            for risk in show(legacy.risks, len(legacy.risks), "risk events"):
                counts.count("added" if store.import_risk(conn, risk) else "existing")
            legs = store.missing_legs(bot_id, conn)
            imported = store.pnl_by_mode(conn, bot_id, keys)
            for mode, (n_legacy, pnl_legacy) in legacy.pnl.items():
                n, _closed, pnl = imported.get(mode, (0, 0, None))
                report.pnl[mode] = PnlCheck(pnl_legacy, pnl, n_legacy, n)
            if dry_run:
                transaction.rollback()
            else:
                if not report.already_imported:
                    store.mark_imported(conn, bot_id, _marker(report))
                transaction.commit()
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
            raise
    report.fills.owed = len(legs)
    if not dry_run:
        if write_path is None:
            raise ValueError("write_path is required unless dry_run")
        _book(legs, write_path, report.fills, show)
    return report


def _marker(report: ImportReport) -> dict[str, Any]:
    return {
        "file": report.file,
        "sha256": report.sha256,
        "tz": report.tz,
        "tables": {name: asdict(c) for name, c in report.tables.items()},
        "rejected": len(report.rejected),
    }


def _book(
    legs: list[MissingLeg], write_path: WritePath, counts: FillCounts, show: Progress
) -> None:
    for leg in show(legs, len(legs), "fills"):
        result = write_path.record_fill(leg.fill_input)
        if result.outcome is Outcome.SPOOLED:
            counts.spooled += 1
        elif result.is_new:
            counts.new += 1
        else:
            counts.existing += 1


def book_missing_fills(
    store: MomentumStore,
    write_path: WritePath,
    bot_id: str,
    progress: Progress | None = None,
) -> FillCounts:
    """Book every trade leg of ``bot_id`` whose fill is missing (in time order): after an
    import, or after a crash between a trade row and its fill."""
    legs = store.missing_legs(bot_id)
    counts = FillCounts(owed=len(legs))
    _book(legs, write_path, counts, progress or _no_progress)
    return counts


# ------------------------------------------------------------------------------ export

_LEGACY_DDL: Final = (
    """CREATE TABLE trades (
        id INTEGER PRIMARY KEY AUTOINCREMENT, trade_id TEXT UNIQUE, mode TEXT NOT NULL,
        symbol TEXT NOT NULL, side TEXT NOT NULL, entry_time TIMESTAMP NOT NULL,
        entry_price REAL NOT NULL, exit_time TIMESTAMP, exit_price REAL,
        quantity REAL NOT NULL, position_size_usd REAL NOT NULL, stop_loss REAL,
        take_profit REAL, pnl_usd REAL, pnl_pct REAL, exit_reason TEXT,
        holding_time_seconds INTEGER, signal_strength REAL,
        created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)""",
    """CREATE TABLE daily_snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT, date DATE UNIQUE NOT NULL, mode TEXT NOT NULL,
        starting_equity REAL NOT NULL, ending_equity REAL NOT NULL, daily_pnl REAL NOT NULL,
        daily_pnl_pct REAL NOT NULL, trades_count INTEGER DEFAULT 0,
        wins_count INTEGER DEFAULT 0, losses_count INTEGER DEFAULT 0,
        open_positions INTEGER DEFAULT 0, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)""",
    """CREATE TABLE system_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, event_time TIMESTAMP NOT NULL,
        event_type TEXT NOT NULL, event_level TEXT NOT NULL, message TEXT NOT NULL,
        details TEXT, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)""",
    """CREATE TABLE risk_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, event_time TIMESTAMP NOT NULL,
        risk_type TEXT NOT NULL, current_value REAL NOT NULL, limit_value REAL NOT NULL,
        action_taken TEXT NOT NULL, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)""",
    "CREATE INDEX idx_trades_symbol ON trades(symbol)",
    "CREATE INDEX idx_trades_entry_time ON trades(entry_time)",
    "CREATE INDEX idx_trades_mode ON trades(mode)",
    "CREATE INDEX idx_daily_date ON daily_snapshots(date)",
)


def legacy_time(value: datetime | None) -> str | None:
    """The original's text form of a time (``YYYY-MM-DD HH:MM:SS[.ffffff]``), in UTC."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


def legacy_created(value: datetime | None) -> str | None:
    """SQLite ``CURRENT_TIMESTAMP``'s form: UTC, whole seconds."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _float(value: Decimal | None, exact: str | None = None) -> float | None:
    if exact is not None:
        return float(exact)
    return None if value is None else float(value)


def export_sqlite(store: MomentumStore, bot_id: str, target: Path) -> dict[str, int]:
    """Write the bot's records to a new SQLite file in the original schema (values with
    more than 8 decimals restored from ``details -> 'exact'``); returns per-table counts.
    The target must not exist; its directory must."""
    if not target.parent.is_dir():
        raise FileNotFoundError(f"directory does not exist: {target.parent}")
    if target.exists():
        raise FileExistsError(f"refusing to overwrite {target}")
    trades = store.all_trades(bot_id)
    snapshots = store.snapshots(bot_id, None, None)
    events = store.events(bot_id, None, None)
    risks = store.risks(bot_id)
    conn = sqlite3.connect(str(target))
    try:
        with conn:
            for ddl in _LEGACY_DDL:
                conn.execute(ddl)
            conn.executemany(
                "INSERT INTO trades (id, trade_id, mode, symbol, side, entry_time, entry_price, "
                "exit_time, exit_price, quantity, position_size_usd, stop_loss, take_profit, "
                "pnl_usd, pnl_pct, exit_reason, holding_time_seconds, signal_strength, "
                "created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (_trade_tuple(r) for r in trades),
            )
            conn.executemany(
                "INSERT INTO daily_snapshots (id, date, mode, starting_equity, ending_equity, "
                "daily_pnl, daily_pnl_pct, trades_count, wins_count, losses_count, "
                "open_positions, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    (
                        r.id,
                        r.snapshot_date.isoformat(),
                        r.mode,
                        float(r.starting_equity),
                        float(r.ending_equity),
                        float(r.daily_pnl),
                        float(r.daily_pnl_pct),
                        r.trades_count,
                        r.wins_count,
                        r.losses_count,
                        r.open_positions,
                        legacy_created(r.created_at),
                    )
                    for r in sorted(snapshots, key=lambda r: r.id)
                ),
            )
            conn.executemany(
                "INSERT INTO system_events (id, event_time, event_type, event_level, message, "
                "details, created_at) VALUES (?,?,?,?,?,?,?)",
                (
                    (
                        r.id,
                        legacy_time(r.event_time),
                        r.event_type,
                        r.event_level,
                        r.message,
                        None if r.details is None else json.dumps(r.details),
                        legacy_created(r.created_at),
                    )
                    for r in sorted(events, key=lambda r: r.id)
                ),
            )
            conn.executemany(
                "INSERT INTO risk_events (id, event_time, risk_type, current_value, "
                "limit_value, action_taken, created_at) VALUES (?,?,?,?,?,?,?)",
                (
                    (
                        r.id,
                        legacy_time(r.event_time),
                        r.risk_type,
                        float(r.current_value),
                        float(r.limit_value),
                        r.action_taken,
                        legacy_created(r.created_at),
                    )
                    for r in risks
                ),
            )
    finally:
        conn.close()
    return {
        "trades": len(trades),
        "daily_snapshots": len(snapshots),
        "system_events": len(events),
        "risk_events": len(risks),
    }


def _trade_tuple(r: Any) -> tuple[Any, ...]:
    exact: dict[str, str] = (r.details or {}).get("exact", {})
    holding = exact.get("holding_time_seconds")
    return (
        r.id,
        r.trade_key,
        r.mode,
        r.symbol,
        r.side,
        legacy_time(r.entry_time),
        _float(r.entry_price, exact.get("entry_price")),
        legacy_time(r.exit_time),
        _float(r.exit_price, exact.get("exit_price")),
        _float(r.quantity, exact.get("quantity")),
        _float(r.notional_usd, exact.get("position_size_usd")),
        _float(r.stop_loss, exact.get("stop_loss")),
        _float(r.take_profit, exact.get("take_profit")),
        _float(r.pnl_usd, exact.get("pnl_usd")),
        _float(r.pnl_pct, exact.get("pnl_pct")),
        r.exit_reason,
        float(holding) if holding is not None else r.holding_seconds,
        _float(r.signal_strength, exact.get("signal_strength")),
        legacy_created(r.created_at),
    )
