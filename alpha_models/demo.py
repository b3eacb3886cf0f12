"""``alpha-db demo``: the whole platform end to end on generated activity.

Everything goes through the real entry points, as the running platform would use them:

1. **Momentum** through :class:`adapters.momentum.TradeDatabase`, which first imports a
   legacy SQLite file (written here in the original schema) and then records live trades;
2. **LXAlgo** through :class:`adapters.lxalgo.TradeTracker`, after importing an old
   ``trade_log.json`` with ``alpha_models.lxalgo_import``;
3. **ShortSeller** through :class:`adapters.shortseller.ShortSellerAdapter`'s hooks, with a
   restart (adapter dropped, state restored from the stores) in the middle; two exits are
   never seen by the hooks;
4. a file of captured **listener** messages (the exchange's stream: LXAlgo's exits, a
   manual trade, funding) ingested as ``alpha-db ingest`` does;
5. **reconciliation** of ShortSeller against generated exchange pages, which finds and
   applies the two exits the hooks missed;
6. the P&L rebuild, then the cross-bot table, open positions and the chart.

The activity is generated from a seed (:mod:`alpha_models.demo_data`); every write is
idempotent, so running the demo again on the same database changes nothing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from alpha_models.bots import register_bots
from alpha_models.bybit_stream import parse_lines
from alpha_models.demo_data import Activity, Trip, generate
from alpha_models.errors import AlphaModelsError
from alpha_models.inputs import FillInput
from alpha_models.order_link import make_order_link_id
from alpha_models.runtime import build_write_path
from alpha_models.settings import Settings
from alpha_models.writepath import WritePath

log = logging.getLogger(__name__)
Say = Callable[[str], None]


def _ms(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def _execution(
    trip: Trip,
    *,
    leg: str,
    link: str,
    stop_order_type: str = "",
) -> dict[str, Any]:
    entry = leg == "entry"
    side = trip.side if entry else ("Sell" if trip.side == "Buy" else "Buy")
    price = trip.entry_price if entry else trip.exit_price
    when = trip.entry_time if entry else trip.exit_time
    assert price is not None and when is not None
    fee = trip.entry_fee if entry else trip.exit_fee
    return {
        "category": "linear",
        "symbol": trip.symbol,
        "execId": f"demo-{trip.bot_id}-{trip.key}-{leg}".replace("|", "-").replace(" ", ""),
        "orderId": f"demo-order-{trip.bot_id}-{trip.key}-{leg}".replace("|", "-").replace(" ", ""),
        "orderLinkId": link,
        "side": side,
        "orderType": "Market",
        "execType": "Trade",
        "execPrice": str(price),
        "execQty": str(trip.qty),
        "execValue": str(price * trip.qty),
        "execFee": str(fee),
        "feeRate": "0.00055",
        "isMaker": False,
        "execTime": _ms(when),
        "orderQty": str(trip.qty),
        "leavesQty": "0",
        "closedSize": "0" if entry else str(trip.qty),
        "stopOrderType": stop_order_type,
        "createType": "CreateByUser" if entry else "CreateByStopLoss",
        "markPrice": str(price),
    }


@dataclass
class DemoResult:
    steps: list[str] = field(default_factory=list)
    reconcile_missing: int = 0
    reconcile_applied: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)
    chart: str | None = None


# ----------------------------------------------------------------------------- Momentum


def _write_legacy_momentum(path: Path, trips: list[Trip]) -> None:
    """A Momentum ``data/trading.db`` as the original class writes it (MOMENTUM.md §3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE trades (id INTEGER PRIMARY KEY AUTOINCREMENT, trade_id TEXT UNIQUE,
            mode TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL,
            entry_time TIMESTAMP NOT NULL, entry_price REAL NOT NULL, exit_time TIMESTAMP,
            exit_price REAL, quantity REAL NOT NULL, position_size_usd REAL NOT NULL,
            stop_loss REAL, take_profit REAL, pnl_usd REAL, pnl_pct REAL, exit_reason TEXT,
            holding_time_seconds INTEGER, signal_strength REAL,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
        CREATE TABLE daily_snapshots (id INTEGER PRIMARY KEY AUTOINCREMENT,
            date DATE UNIQUE NOT NULL, mode TEXT NOT NULL, starting_equity REAL NOT NULL,
            ending_equity REAL NOT NULL, daily_pnl REAL NOT NULL, daily_pnl_pct REAL NOT NULL,
            trades_count INTEGER DEFAULT 0, wins_count INTEGER DEFAULT 0,
            losses_count INTEGER DEFAULT 0, open_positions INTEGER DEFAULT 0,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
        CREATE TABLE system_events (id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_time TIMESTAMP NOT NULL, event_type TEXT NOT NULL, event_level TEXT NOT NULL,
            message TEXT NOT NULL, details TEXT,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
        CREATE TABLE risk_events (id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_time TIMESTAMP NOT NULL, risk_type TEXT NOT NULL,
            current_value REAL NOT NULL, limit_value REAL NOT NULL, action_taken TEXT NOT NULL,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
        """
    )
    for t in trips:
        assert t.exit_price is not None and t.exit_time is not None
        pnl_pct = float(t.exit_price / t.entry_price - 1)
        db.execute(
            "INSERT INTO trades (trade_id, mode, symbol, side, entry_time, entry_price, "
            "exit_time, exit_price, quantity, position_size_usd, stop_loss, pnl_usd, pnl_pct, "
            "exit_reason, holding_time_seconds, signal_strength) "
            "VALUES (?, 'demo', ?, 'Buy', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                t.key,
                t.symbol,
                t.entry_time.replace(tzinfo=None).isoformat(" "),
                float(t.entry_price),
                t.exit_time.replace(tzinfo=None).isoformat(" "),
                float(t.exit_price),
                float(t.qty),
                float(t.entry_price * t.qty),
                float(t.entry_price) * 0.9,
                float((t.exit_price - t.entry_price) * t.qty),
                pnl_pct,
                t.reason,
                int((t.exit_time - t.entry_time).total_seconds()),
                0.6,
            ),
        )
    db.execute(
        "INSERT INTO system_events (event_time, event_type, event_level, message) "
        "VALUES (?, 'SYSTEM_START', 'INFO', 'Trading system started in demo mode')",
        (trips[0].entry_time.replace(tzinfo=None).isoformat(" "),),
    )
    db.commit()
    db.close()


def _momentum(act: Activity, workdir: Path, settings: Settings, say: Say) -> None:
    from adapters.momentum import DuplicateTradeError, TradeDatabase

    trips = act.of("momentum_001")
    legacy = workdir / "momentum" / "data" / "trading.db"
    marker_dir = legacy.with_name(legacy.name + ".spool")
    if not marker_dir.exists():  # first run: the strategy's old file is there
        _write_legacy_momentum(legacy, [t for t in trips if t.imported])
    db = TradeDatabase(str(legacy), settings=settings)
    live = 0
    for t in trips:
        if t.imported:
            continue
        try:
            db.log_trade_entry(
                trade_id=t.key,
                mode="demo",
                symbol=t.symbol,
                side="Buy",
                entry_price=float(t.entry_price),
                quantity=float(t.qty),
                position_size_usd=float(t.entry_price * t.qty),
                stop_loss=float(t.entry_price) * 0.9,
                signal_strength=0.62,
            )
        except DuplicateTradeError:
            continue  # a re-run: already recorded
        if t.exit_price is not None and t.exit_time is not None:
            pnl_pct = float(t.exit_price / t.entry_price - 1)
            db.log_trade_exit(
                trade_id=t.key,
                exit_price=float(t.exit_price),
                pnl_usd=float(t.entry_price * t.qty) * pnl_pct,
                pnl_pct=pnl_pct,
                exit_reason=t.reason,
                holding_time_seconds=int((t.exit_time - t.entry_time).total_seconds()),
            )
        live += 1
    stats = db.get_performance_stats(mode="demo")
    db.log_event("SYSTEM_STOP", "INFO", "Trading system stopped", stats)
    db.flush()
    db.close()
    closed = stats["total_trades"]
    say(f"momentum: legacy file imported, {live} live trade(s); {closed} closed in its stats")


# ------------------------------------------------------------------------------- LXAlgo


def _lxalgo(act: Activity, workdir: Path, settings: Settings, wp: WritePath, say: Say) -> None:
    from adapters.lxalgo import TradeTracker
    from alpha_models.lxalgo_import import ExchangeFill, import_logs

    trips = act.of("lxalgo_001")
    folder = workdir / "lxalgo"
    folder.mkdir(parents=True, exist_ok=True)
    old_log = folder / "trade_log_20251109.json"
    events: list[dict[str, Any]] = []
    for t in (t for t in trips if t.imported):
        events.append(
            {
                "timestamp": t.entry_time.isoformat(),
                "event": "opened",
                "symbol": t.symbol,
                "rule_id": t.rule_id,
                "entry_price": float(t.entry_price),
                "position_size": float(t.qty),
            }
        )
        if t.exit_time is not None:
            events.append(
                {
                    "timestamp": t.exit_time.isoformat(),
                    "event": "closed",
                    "symbol": t.symbol,
                    "rule_id": t.rule_id,
                    "reason": t.reason,
                }
            )
    old_log.write_text(json.dumps({"trade_events": events}, indent=2))
    summary = import_logs([old_log], engine=wp.engine, write_path=wp)
    now = [trips[0].entry_time]
    tracker = TradeTracker(str(folder / "trade_log.json"), settings=settings, clock=lambda: now[0])
    for t in (t for t in trips if not t.imported):
        now[0] = t.entry_time
        entry = _execution(t, leg="entry", link=make_order_link_id("lxalgo_001", "entry"))
        tracker.log_trade_opened(
            symbol=t.symbol,
            rule_id=t.rule_id,
            entry_price=float(t.entry_price),
            position_size=float(t.qty),
            entry_timestamp=t.entry_time,
            exchange=ExchangeFill(
                exec_id=entry["execId"],
                order_id=entry["orderId"],
                exec_price=t.entry_price,
                exec_qty=t.qty,
                fee=t.entry_fee,
                exec_time=t.entry_time,
            ),
        )
        if t.exit_time is not None:
            now[0] = t.exit_time + timedelta(seconds=90)  # reconciliation notices it later
            tracker.log_trade_closed(t.symbol, t.rule_id, t.reason)
    tracker.close()
    say(f"lxalgo: old trade log imported ({summary.events} events), live tracker session done")


# -------------------------------------------------------------------------- ShortSeller

_STOP = {"take_profit": "TakeProfit", "stop_loss": "StopLoss"}


def _shortseller(act: Activity, settings: Settings, say: Say) -> list[dict[str, Any]]:
    from adapters.shortseller import ShortSellerAdapter
    from alpha_models.shortseller_replay import ReplayEngine

    trips = act.of("shortseller_001")
    executions: list[dict[str, Any]] = []
    adapter = ShortSellerAdapter(settings)
    engine = ReplayEngine()
    adapter.on_session_start(version="2.0.0", cause="initial", demo=True, at=trips[0].entry_time)
    adapter.on_equity("10000", source="startup", at=trips[0].entry_time)
    asset_of = {"BTCUSDT": "BTC", "ETHUSDT": "ETH", "SOLUSDT": "SOL"}
    for n, t in enumerate(trips):
        if n == 3:  # a deploy: the process dies, a new one restores its memory
            adapter.flush()
            adapter.close()
            adapter = ShortSellerAdapter(settings)
            engine = ReplayEngine()
            adapter.on_session_start(
                version="2.0.0", cause="restart:deploy", demo=True, at=t.entry_time
            )
            adapter.restore(engine, exchange_positions=[], at=t.entry_time)
        asset = asset_of[t.symbol]
        link = adapter.propose_order_link_id("entry", at=t.entry_time)
        entry = _execution(t, leg="entry", link=link)
        request = {
            "category": "linear",
            "symbol": t.symbol,
            "side": "Sell",
            "orderType": "Market",
            "qty": str(t.qty),
            "orderLinkId": link,
        }
        adapter.on_order_placed(
            request, {"orderId": entry["orderId"], "orderLinkId": link}, at=t.entry_time
        )
        adapter.on_execution(entry, at=t.entry_time)
        engine.update_position(
            asset,
            True,
            float(t.entry_price),
            float(t.qty),
            float(t.entry_price * t.qty),
            now=t.entry_time,
        )
        adapter.on_position_opened(asset, dict(engine.asset_positions[asset]), at=t.entry_time)
        executions.append(entry)
        if t.exit_price is None or t.exit_time is None:
            continue
        exit_ = _execution(t, leg="exit", link="", stop_order_type=_STOP[t.reason])
        executions.append(exit_)
        if not t.missed_exit:
            adapter.on_execution(exit_, at=t.exit_time)
        snapshot = dict(engine.asset_positions[asset])
        adapter.on_position_closed(
            asset,
            snapshot,
            float(t.exit_price),
            "Take Profit" if t.reason == "take_profit" else "Stop Loss",
            {"status": "no_position"},
            at=t.exit_time,
        )
        engine.update_position(asset, False, now=t.exit_time)
    adapter.flush()
    adapter.close()
    say(f"shortseller: {len(trips)} trade(s) through the hooks, one restart, 2 exits unseen")
    return executions


# ----------------------------------------------------------------------------- listener


def _listener_file(act: Activity, path: Path) -> Path:
    lines = []
    for t in act.of("lxalgo_001"):
        if t.exit_price is not None:
            link = make_order_link_id("lxalgo_001", "ext", now=t.exit_time)
            lines.append(
                json.dumps({"topic": "execution", "data": [_execution(t, leg="exit", link=link)]})
            )
    manual = Trip(
        "unknown",
        "manual-1",
        "DOGEUSDT",
        "Buy",
        Decimal(1000),
        Decimal("0.2"),
        act.trips[0].entry_time,
        Decimal("0.21"),
        act.trips[0].entry_time + timedelta(hours=2),
        Decimal("0.11"),
        Decimal("0.1155"),
        "manual",
    )
    for leg in ("entry", "exit"):
        lines.append(
            json.dumps({"topic": "execution", "data": [_execution(manual, leg=leg, link="")]})
        )
    funding = _execution(act.of("shortseller_001")[0], leg="entry", link="")
    funding.update(
        execId="demo-funding-1",
        execType="Funding",
        execFee="-0.42",
        execTime=_ms(act.trips[0].entry_time.replace(hour=8)),
    )
    lines.append(json.dumps({"topic": "execution", "data": [funding]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _ingest(path: Path, wp: WritePath) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _line, parsed in parse_lines(path.read_text().splitlines(), known_bots=wp.known_bots()):
        if isinstance(parsed, AlphaModelsError):
            counts["rejected"] = counts.get("rejected", 0) + 1
            continue
        for event in parsed:
            if isinstance(event, FillInput):
                outcome = str(wp.record_fill(event).outcome)
                counts[outcome] = counts.get(outcome, 0) + 1
    return counts


# ------------------------------------------------------------------------------ the run


def run(
    settings: Settings,
    workdir: Path,
    *,
    seed: int = 7,
    out_dir: Path | None = None,
    say: Say = print,
) -> DemoResult:
    from alpha_models.bybit_pages import make_pages
    from alpha_models.pnl_store import rebuild_completed_trades
    from alpha_models.reconcile import reconcile

    act = generate(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    result = DemoResult()
    wp = build_write_path(settings)
    engine: Engine = wp.engine
    register_bots(engine)
    _momentum(act, workdir, settings, say)
    _lxalgo(act, workdir, settings, wp, say)
    executions = _shortseller(act, settings, say)
    counts = _ingest(_listener_file(act, workdir / "listener.jsonl"), wp)
    say(f"listener: {sum(counts.values())} message element(s) ingested {counts}")
    trips = act.of("shortseller_001")
    start = min(t.entry_time for t in trips) - timedelta(minutes=1)
    end = max(t.exit_time or t.entry_time for t in trips) + timedelta(minutes=1)
    report = reconcile(
        engine, wp, "shortseller_001", start, end, make_pages(executions), apply=True
    )
    applied = sum(1 for c in report.corrections if c.applied)
    say(f"reconcile: {applied} missing fill(s) applied; clean={report.clean}")
    result.reconcile_applied = applied
    stats = rebuild_completed_trades(engine)
    say(f"pnl: {stats.round_trips} round trip(s) rebuilt from fills")
    result.rows = _summary_rows(engine)
    marks = {t.symbol: t.entry_price for t in act.trips if not t.closed}
    result.positions = _position_rows(engine, marks)
    result.chart = _chart(engine, out_dir or workdir)
    wp.close()
    return result


def _summary_rows(engine: Engine) -> list[dict[str, Any]]:
    from alpha_models.analytics import compare_bots

    comparison = compare_bots(engine)
    rows = []
    for summary in (*comparison.bots, comparison.portfolio):
        rows.append(
            {
                "bot_id": summary.bot_id,
                "round_trips": summary.round_trips,
                "wins": summary.wins,
                "losses": summary.losses,
                "win_rate_pct": summary.win_rate_pct,
                "fees": summary.fees,
                "net_pnl": summary.net_pnl,
                "max_drawdown": summary.max_drawdown,
            }
        )
    return rows


def _position_rows(engine: Engine, marks: dict[str, Decimal]) -> list[dict[str, Any]]:
    from alpha_models.analytics import open_positions

    return [
        {
            "bot_id": p.bot_id,
            "symbol": p.symbol,
            "side": p.side,
            "size": p.size,
            "avg_entry_price": p.avg_entry_price,
            "unrealized_pnl": p.unrealized_pnl,
            "notional": p.notional,
        }
        for p in open_positions(engine, marks=marks)
    ]


def _chart(engine: Engine, out_dir: Path) -> str:
    from alpha_models.charts import write_charts

    return str(write_charts(engine, out_dir).html)
