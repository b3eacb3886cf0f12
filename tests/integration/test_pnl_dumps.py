"""The FIFO engine's P&L per bot on the real production dumps, next to ``trades_pnl``'s.

Each dump is restored, upgraded to head, and then:

- the old view's rows and net sum per bot are read;
- the engine runs over every trade fill of each bot (``unknown`` included), as stored: the
  figures of PLATFORM.md §8.5 ("FIFO matches" = realized pieces, "FIFO realised" = their net);
- variant B drops the funding-like rows (``unknown``, empty link id, exec time exactly on
  the hour), which legacy rows cannot otherwise tell apart from trades;
- ``rebuild_completed_trades`` stores the attributed bots' round trips without touching one
  ``bybit_api`` row, and a second run changes nothing.

``docs/pnl.md`` explains the differences by example; its table is checked against these
figures.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from alpha_models import pnl_store
from alpha_models.devstack import DevStack
from alpha_models.pnl import PnlFill, PnlResult, rebuild
from tests import stack as tb
from tests.conftest import unique_name

D = Decimal
DOCS = tb.ROOT / "docs" / "pnl.md"
BOTS = ("lxalgo_001", "shortseller_001", "unknown")

# A bot's self-reported copy of an execution the listener also stored (same order_id).
BOT_COPY = (
    "f.bot_id <> 'unknown' AND EXISTS (SELECT 1 FROM trading.fills g "
    "WHERE g.order_id = f.order_id AND g.bot_id = 'unknown' AND g.side = f.side "
    "AND g.exec_qty = f.exec_qty)"
)
FUNDING_LIKE = (
    "f.bot_id = 'unknown' AND f.client_order_id = '' "
    "AND date_trunc('hour', f.exec_time) = f.exec_time"
)


@dataclass(frozen=True)
class Figures:
    """One row of the comparison table (PLATFORM.md §8.5)."""

    view_rows: int
    view_net: Decimal
    fifo_matches: int
    fifo_realized: Decimal
    round_trips: int
    won: int
    b_fills: int
    b_realized: Decimal


# PLATFORM.md §8.5, per dump and bot.
EXPECTED: dict[str, dict[str, Figures]] = {
    "trading_db-20251025.sql.gz": {
        "lxalgo_001": Figures(0, D(0), 0, D(0), 0, 0, 17, D(0)),
        "shortseller_001": Figures(3, D("0.0479"), 7, D("1.3026"), 1, 1, 16, D("1.3026")),
        "unknown": Figures(2, D("-17.69251"), 3, D("-5.0928"), 0, 0, 7, D(0)),
    },
    "trading_db-20251105.sql.gz": {
        "lxalgo_001": Figures(0, D(0), 0, D(0), 0, 0, 32, D(0)),
        "shortseller_001": Figures(7, D("3.5976"), 18, D("-19.8318"), 5, 2, 26, D("-19.8318")),
        "unknown": Figures(11, D("-31.152193"), 15, D("-67.221245"), 4, 1, 23, D("-29.9985")),
    },
    "trading_db-20251106.sql.gz": {
        "lxalgo_001": Figures(0, D(0), 0, D(0), 0, 0, 43, D(0)),
        "shortseller_001": Figures(7, D("3.5976"), 18, D("-19.8318"), 5, 2, 29, D("-19.8318")),
        "unknown": Figures(12, D("-657.445793"), 17, D("-1449.407845"), 6, 1, 26, D("-1412.1851")),
    },
}


@pytest.fixture(scope="module", params=tb.DUMPS, ids=lambda p: Path(str(p)).name)
def dump(request: pytest.FixtureRequest, devstack: DevStack) -> Iterator[tuple[str, Engine]]:
    name = unique_name("pnl")
    tb.restore_dump(devstack, request.param, name)
    url = devstack.url(name)
    tb.upgrade(url)
    engine = create_engine(url)
    try:
        yield Path(request.param).name, engine
    finally:
        engine.dispose()
        devstack.drop_database(name)


def read_fills(engine: Engine, where: str) -> list[PnlFill]:
    """Fills through the validating constructor (small data: no shortcut needed)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT f.id, f.exec_id, f.bot_id, f.symbol, f.side, f.exec_price, f.exec_qty, "
                "f.commission, f.exec_time, f.order_id, f.client_order_id, "
                "nullif(f.close_reason, '') FROM trading.fills f "
                f"WHERE f.exec_type <> 'Funding' AND {where}"
            )
        ).all()
    return [PnlFill(*r) for r in rows]


def realized(result: PnlResult) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for r in result.realizations:
        out[r.bot_id] = out.get(r.bot_id, D(0)) + r.net
    return out


def figures(engine: Engine) -> dict[str, Figures]:
    with engine.connect() as conn:
        view = {
            r.bot_id: (int(r.n), r.net)
            for r in conn.execute(
                text(
                    "SELECT bot_id, count(*) AS n, coalesce(sum(net_pnl), 0) AS net "
                    "FROM trading.trades_pnl GROUP BY bot_id"
                )
            )
        }
    every = rebuild(read_fills(engine, "TRUE"))
    b_fills = read_fills(engine, f"NOT ({FUNDING_LIKE})")
    variant_b = rebuild(b_fills)
    matches = Counter(r.bot_id for r in every.realizations)
    trips = Counter(t.bot_id for t in every.round_trips)
    won = Counter(t.bot_id for t in every.round_trips if t.net_pnl > 0)
    b_count = Counter(f.bot_id for f in b_fills)
    net, b_net = realized(every), realized(variant_b)
    return {
        bot: Figures(
            view.get(bot, (0, D(0)))[0],
            view.get(bot, (0, D(0)))[1],
            matches[bot],
            net.get(bot, D(0)),
            trips[bot],
            won[bot],
            b_count[bot],
            b_net.get(bot, D(0)),
        )
        for bot in BOTS
    }


def test_engine_and_view_figures_per_bot_match_the_platform_analysis(
    dump: tuple[str, Engine],
) -> None:
    name, engine = dump
    assert figures(engine) == EXPECTED[name]


def _rows(engine: Engine, source: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT * FROM trading.completed_trades WHERE source = :s ORDER BY id"),
                {"s": source},
            ).all()
        )


def test_rebuild_stores_the_attributed_trips_and_leaves_the_sync_rows_alone(
    dump: tuple[str, Engine],
) -> None:
    name, engine = dump
    synced = _rows(engine, "bybit_api")
    first = pnl_store.rebuild_completed_trades(engine)
    second = pnl_store.rebuild_completed_trades(engine)

    assert _rows(engine, "bybit_api") == synced
    stored = _rows(engine, "fills")
    ss = EXPECTED[name]["shortseller_001"]
    assert [r.bot_id for r in stored] == ["shortseller_001"] * ss.round_trips
    assert first.inserted == ss.round_trips and not first.skipped
    by_bot = {r.bot_id: r for r in first.realized}
    assert by_bot["shortseller_001"].net_pnl == ss.fifo_realized
    assert sum((r.net_pnl for r in stored), D(0)) == by_bot["shortseller_001"].net_pnl_round_trips
    assert "unknown" not in by_bot  # not a bot: left out unless asked
    assert (second.inserted, second.updated, second.deleted) == (0, 0, 0)


@pytest.mark.parametrize(
    "dump",
    [p for p in tb.DUMPS if p.name == "trading_db-20251106.sql.gz"],  # the examples' dump
    indirect=True,
    ids=lambda p: Path(str(p)).name,
)
def test_the_documented_examples(dump: tuple[str, Engine]) -> None:
    _name, engine = dump
    with engine.connect() as conn:
        view = {
            (r.bot_id, r.symbol, r.entry_time, r.exit_time): r.net_pnl
            for r in conn.execute(text("SELECT * FROM trading.trades_pnl"))
        }
        at = dict(conn.execute(text("SELECT id, exec_time FROM trading.fills")).all())

    # The phantom: [73] (a cover whose short entry was never stored) paired with [118] (a new
    # short, stored twice: [117] is the bot's copy). FIFO over the same mis-stored `unknown`
    # book books it too; no bot's rebuild does, as `unknown` is not a bot.
    phantom = view[("unknown", "ETHUSDT", at[73], at[118])]
    assert phantom.quantize(D("0.01")) == D("-626.29")
    unknown = rebuild(read_fills(engine, "f.bot_id = 'unknown' AND f.symbol = 'ETHUSDT'"))
    assert [r.gross for r in unknown.realizations] == [phantom]

    # A short turned into a long: ShortSeller BTCUSDT. The view reports "longs" [75] -> [102]
    # (with the buy's qty) and [103] -> [104].
    assert view[("shortseller_001", "BTCUSDT", at[75], at[102])] == D("10.4528")
    assert view[("shortseller_001", "BTCUSDT", at[103], at[104])] == D("-2.8035")
    # With the account's BTC executions in ShortSeller's book (attribution repaired, funding
    # dropped, the bot's copy of a listener execution folded), FIFO finds the real shorts.
    btc = read_fills(engine, f"f.symbol = 'BTCUSDT' AND NOT ({FUNDING_LIKE}) AND NOT ({BOT_COPY})")
    repaired = rebuild([replace(f, bot_id="shortseller_001") for f in btc])
    by_exit = {t.exit_time: t for t in repaired.round_trips}
    assert (by_exit[at[75]].entry_side, by_exit[at[75]].gross_pnl) == ("Sell", D("-34.9116"))
    assert (by_exit[at[103]].entry_side, by_exit[at[103]].gross_pnl) == ("Sell", D("-2.5515"))

    # A funding row [55] as the entry of unknown/FUSDT; the real entry is LXAlgo's [43],
    # closed by the exchange-side exit [56]: one book, funding dropped.
    assert view[("unknown", "FUSDT", at[55], at[56])].quantize(D("0.01")) == D("41.64")
    fusdt = rebuild(
        [
            replace(f, bot_id="lxalgo_001")
            for f in read_fills(engine, f"f.symbol = 'FUSDT' AND NOT ({FUNDING_LIKE})")
        ]
    )
    (trip,) = fusdt.round_trips
    assert (trip.entry_time, trip.exit_time, trip.gross_pnl) == (at[43], at[56], D("50.421289"))


SCENARIOS: dict[str, list[tuple[str, str, str, str]]] = {
    # name: [(bot_id, side, qty, price), ...] in time order (PLATFORM.md §8.6)
    "S1": [("b", "Sell", "1", "100"), ("b", "Buy", "1", "90")],
    "S2": [
        ("b", "Sell", "1", "100"),
        ("b", "Buy", "1", "90"),
        ("b", "Sell", "1", "95"),
        ("b", "Buy", "1", "97"),
    ],
    "S3": [("b", "Buy", "0.4", "100"), ("b", "Buy", "0.6", "100"), ("b", "Sell", "1", "110")],
    "S4": [("b", "Buy", "1", "100"), ("b", "Sell", "0.5", "110"), ("b", "Sell", "0.5", "120")],
    "S5": [("b", "Buy", "1", "100"), ("b", "Buy", "1", "120"), ("b", "Sell", "2", "110")],
    "S6": [("b", "Buy", "1", "100"), ("unknown", "Sell", "1", "110")],
}
# name: (true, view, FIFO per bot, FIFO after attribution repair)
SCENARIO_FIGURES: dict[str, tuple[Decimal, Decimal | None, Decimal, Decimal]] = {
    "S1": (D(10), None, D(10), D(10)),
    "S2": (D(8), D(5), D(8), D(8)),
    "S3": (D(10), D(6), D(10), D(10)),
    "S4": (D(15), D(10), D(15), D(15)),
    "S5": (D(0), D(-10), D(0), D(0)),
    "S6": (D(10), None, D(0), D(10)),
}


def test_synthetic_scenarios_through_the_production_view_and_the_engine(db: Any) -> None:
    engine = db.engine()
    t0 = datetime(2025, 11, 1, tzinfo=UTC)
    with engine.begin() as conn:
        n = 0
        for name, steps in SCENARIOS.items():
            for bot_id, side, qty, price in steps:
                n += 1
                conn.execute(
                    text(
                        "INSERT INTO trading.fills (exec_id, bot_id, symbol, order_id, "
                        "client_order_id, side, exec_price, exec_qty, exec_time, commission) "
                        "VALUES (:e, :b, :s, :e, '', :side, :p, :q, :t, 0)"
                    ),
                    {
                        "e": f"x{n}",
                        "b": bot_id,
                        "s": f"{name}USDT",
                        "side": side,
                        "p": D(price),
                        "q": D(qty),
                        "t": t0 + timedelta(minutes=n),
                    },
                )
        view = dict(
            conn.execute(
                text("SELECT symbol, sum(net_pnl) FROM trading.trades_pnl GROUP BY symbol")
            ).all()
        )
    per_bot = rebuild(read_fills(engine, "TRUE"))
    repaired = rebuild([replace(f, bot_id="b") for f in read_fills(engine, "TRUE")])
    engine.dispose()

    def by_symbol(result: PnlResult) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for r in result.realizations:
            out[r.symbol] = out.get(r.symbol, D(0)) + r.net
        return out

    fifo, fixed = by_symbol(per_bot), by_symbol(repaired)
    for name, (true, in_view, in_fifo, in_fixed) in SCENARIO_FIGURES.items():
        symbol = f"{name}USDT"
        assert view.get(symbol) == in_view, name
        assert fifo.get(symbol, D(0)) == in_fifo, name
        assert fixed.get(symbol, D(0)) == in_fixed == true, name


def test_docs_table_shows_these_figures() -> None:
    page = DOCS.read_text(encoding="utf-8")
    for name, (true, in_view, in_fifo, in_fixed) in SCENARIO_FIGURES.items():
        cells = [name, _signed(true), "no row" if in_view is None else _signed(in_view)]
        cells += [_signed(in_fifo), _signed(in_fixed)]
        line = "| " + " | ".join(cells) + " |"
        assert line in page, line
    for dump_name, rows in EXPECTED.items():
        day = re.sub(r"trading_db-\d{4}(\d{2})(\d{2})\.sql\.gz", r"\1-\2", dump_name)
        for bot, f in rows.items():
            cells = [
                day,
                bot,
                str(f.view_rows),
                f"{f.view_net}",
                str(f.fifo_matches),
                f"{f.fifo_realized}",
                f"{f.round_trips} ({f.won})",
                str(f.b_fills),
                f"{f.b_realized}",
            ]
            line = "| " + " | ".join(cells) + " |"
            assert line in page, line


def _signed(value: Decimal) -> str:
    return f"+{value}" if value > 0 else f"{value}"
