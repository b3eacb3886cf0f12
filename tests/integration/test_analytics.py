"""Analytics, charts and their CLI commands over round trips rebuilt from real fills."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from alpha_models import analytics, charts
from alpha_models.cli import main as cli_main
from alpha_models.errors import ValidationError
from alpha_models.pnl_store import rebuild_completed_trades
from tests.builders import fill
from tests.conftest import Writer

D = Decimal
SS = "shortseller_001"
LX = "lxalgo_001"
DAY1 = datetime(2025, 11, 3, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY1 + timedelta(days=2)
NOW = DAY3 + timedelta(hours=12)


def h(day: datetime, hours: float) -> datetime:
    return day + timedelta(hours=hours)


@pytest.fixture
def book(writer: Writer) -> Iterator[Writer]:
    """Two bots' round trips over three UTC days, open positions, and one bybit_api row.

    shortseller (shorts): +9.8 (fees 0.2, take_profit, day 1), -5 (stop_loss, exits day 2),
    0 (breakeven, day 2), +20 (take_profit, day 3); then an open short 0.3 BTC @ 100.
    lxalgo (longs): +2 (day 1), -3 (day 2); then an open long 0.5 BTC @ 20.
    """
    wp = writer.path
    tape = [
        fill("Sell", "1", "100", at=h(DAY1, 10), fee="0.1", close_reason="ema_cross"),
        fill("Buy", "1", "90", at=h(DAY1, 11), fee="0.1", close_reason="take_profit"),
        fill("Sell", "1", "100", at=h(DAY1, 12)),
        fill("Buy", "1", "105", at=h(DAY2, 1), close_reason="stop_loss"),
        fill("Sell", "2", "50", at=h(DAY2, 2)),
        fill("Buy", "2", "50", at=h(DAY2, 3), close_reason="signal"),
        fill("Sell", "1", "100", at=h(DAY3, 1)),
        fill("Buy", "1", "80", at=h(DAY3, 2), close_reason="take_profit"),
        fill("Sell", "0.3", "100", at=h(DAY3, 3)),
        fill("Buy", "1", "10", bot_id=LX, at=h(DAY1, 9)),
        fill("Sell", "1", "12", bot_id=LX, at=h(DAY1, 10), close_reason="take_profit"),
        fill("Buy", "1", "10", bot_id=LX, at=h(DAY2, 4)),
        fill("Sell", "1", "7", bot_id=LX, at=h(DAY2, 5), close_reason="stop_loss"),
        fill("Buy", "0.5", "20", bot_id=LX, at=h(DAY3, 4)),
    ]  # fmt: skip
    for f in tape:
        wp.record_fill(f)
    with writer.engine.begin() as conn:  # the closed-P&L sync's view of one of the trades
        conn.execute(
            text(
                "INSERT INTO trading.completed_trades (trade_id, bot_id, symbol, entry_side, "
                "entry_price, entry_qty, entry_time, exit_side, exit_price, exit_qty, "
                "exit_time, gross_pnl, net_pnl, total_commission, source) VALUES "
                "('shortseller_001_BTCUSDT_x', 'shortseller_001', 'BTCUSDT', 'Buy', 80, 1, "
                ":e, 'Sell', 100, 1, :x, 20, 20, 0, 'bybit_api')"
            ),
            {"e": h(DAY3, 2), "x": h(DAY3, 2) + timedelta(seconds=1)},
        )
    rebuild_completed_trades(writer.engine)
    yield writer


def test_bot_summary_keeps_breakeven_apart_and_measures_the_drawdown(book: Writer) -> None:
    s = analytics.bot_summary(book.engine, SS)

    assert (s.round_trips, s.wins, s.losses, s.breakeven) == (4, 2, 1, 1)
    assert s.win_rate_pct == D("50.00")
    assert (s.gross_pnl, s.fees, s.net_pnl) == (D(25), D("0.2"), D("24.8"))
    assert (s.gross_profit, s.gross_loss, s.profit_factor) == (D("29.8"), D(-5), D("5.9600"))
    assert (s.avg_win, s.avg_loss, s.avg_net) == (D("14.9"), D(-5), D("6.2"))
    assert s.max_drawdown == D(5)  # 9.8 -> 4.8
    assert s.avg_holding_seconds == D("14400.00")  # 1 h, 13 h, 1 h, 1 h
    assert s.best_trade is not None and s.best_trade.net_pnl == D(20)
    assert s.worst_trade is not None and s.worst_trade.net_pnl == D(-5)
    reasons = {r.exit_reason: (r.round_trips, r.net_pnl) for r in s.by_exit_reason}
    assert reasons == {"take_profit": (2, D("29.8")), "signal": (1, D(0)), "stop_loss": (1, D(-5))}
    assert s.by_exit_reason[0].exit_reason == "take_profit"  # best reason first


def test_a_window_is_half_open_on_exit_time(book: Writer) -> None:
    s = analytics.bot_summary(book.engine, SS, start=DAY2, end=DAY3)

    assert (s.round_trips, s.wins, s.losses, s.breakeven) == (2, 0, 1, 1)
    assert (s.net_pnl, s.max_drawdown, s.win_rate_pct) == (D(-5), D(5), D("0.00"))
    assert s.profit_factor == D(0)
    empty = analytics.bot_summary(book.engine, SS, start=NOW, end=NOW + timedelta(days=1))
    assert (empty.round_trips, empty.win_rate_pct, empty.best_trade) == (0, None, None)
    assert empty.max_drawdown == D(0)


def test_other_sources_are_out_by_default_and_in_on_request(book: Writer) -> None:
    every = analytics.bot_summary(book.engine, SS, source=None)
    only_sync = analytics.bot_summary(book.engine, SS, source="bybit_api")

    assert every.round_trips == 5  # the same trade counted twice: why 'fills' is the default
    assert (only_sync.round_trips, only_sync.net_pnl) == (1, D(20))


def test_comparison_and_portfolio_total(book: Writer) -> None:
    c = analytics.compare_bots(book.engine)
    by_bot = {s.bot_id: s for s in c.bots}

    assert set(by_bot) == {SS, LX, "momentum_001"}
    assert (by_bot[LX].net_pnl, by_bot[LX].max_drawdown) == (D(-1), D(3))
    assert by_bot["momentum_001"].round_trips == 0
    p = c.portfolio
    assert (p.bot_id, p.round_trips, p.wins, p.losses, p.breakeven) == ("portfolio", 6, 3, 2, 1)
    assert p.net_pnl == D("23.8")
    # combined curve by exit time: +2, +9.8, -5, 0, -3, +20 -> peak 11.8, trough 3.8
    assert p.max_drawdown == D(8)
    assert p.best_trade is not None and p.best_trade.bot_id == SS
    assert {r.exit_reason: r.round_trips for r in p.by_exit_reason}["take_profit"] == 3


def test_daily_pnl_per_bot_and_utc_day(book: Writer) -> None:
    days = analytics.daily_pnl(book.engine, days=3, now=NOW)

    got = {(d.day, d.bot_id): (d.round_trips, d.net_pnl) for d in days}
    assert got == {
        (DAY1.date(), LX): (1, D(2)),
        (DAY1.date(), SS): (1, D("9.8")),
        (DAY2.date(), LX): (1, D(-3)),
        (DAY2.date(), SS): (2, D(-5)),
        (DAY3.date(), SS): (1, D(20)),
    }
    assert analytics.daily_pnl(book.engine, days=1, now=NOW, bot_id=LX) == ()
    whole = analytics.daily_pnl(book.engine, bot_id=SS)  # no window: every day
    assert [d.day for d in whole] == [date(2025, 11, 3), date(2025, 11, 4), date(2025, 11, 5)]


def test_open_positions_and_exposure_across_bots(book: Writer) -> None:
    marks = {"BTCUSDT": D(90)}
    positions = {p.bot_id: p for p in analytics.open_positions(book.engine, marks=marks)}

    short = positions[SS]
    assert (short.side, short.size, short.avg_entry_price, short.lots) == (
        "Sell",
        D("0.3"),
        D(100),
        1,
    )
    assert (short.unrealized_pnl, short.notional, short.notional_basis) == (D(3), D(27), "mark")
    assert short.position_row_size == D("0.3")  # the write path's positions row agrees
    long = positions[LX]
    assert (long.side, long.size, long.unrealized_pnl) == ("Buy", D("0.5"), D(35))

    (btc,) = analytics.exposure_by_symbol(book.engine, marks=marks)
    assert (btc.long_size, btc.short_size, btc.net_size) == (D("0.5"), D("0.3"), D("0.2"))
    assert (btc.gross_notional, btc.net_notional) == (D(72), D(18))
    assert btc.bots == (LX, SS)
    assert btc.unrealized_pnl == D(38)
    (at_entry,) = analytics.exposure_by_symbol(book.engine)  # no mark: cost, never a guess
    assert (at_entry.notional_basis, at_entry.gross_notional, at_entry.unrealized_pnl) == (
        "entry",
        D(40),
        None,
    )


def test_legacy_summary_reproduces_todays_telegram_semantics(book: Writer) -> None:
    legacy = analytics.legacy_summary(book.engine, bot="alpha", days=7, now=NOW)

    assert legacy.bot_id == SS
    assert legacy.closed_trades == 5  # every source: the bybit_api copy counts too
    assert (legacy.wins, legacy.losses) == (3, 2)  # breakeven counted as a loss
    assert legacy.total_pnl == D("44.80")
    assert (legacy.max_win, legacy.max_loss) == (D("20.00"), D("-5.00"))
    assert legacy.win_rate == D("60.0")
    assert legacy.open_trades == 0  # long-only: the open short is invisible to it
    assert (legacy.bot_name, legacy.capital, legacy.return_pct) == ("ShortSeller", D(10000), None)
    everyone = analytics.legacy_summary(book.engine, days=7, now=NOW)
    assert (everyone.bot_id, everyone.bots_total, everyone.bots_active) == (None, 3, 3)


def test_bad_arguments_are_typed_errors(book: Writer) -> None:
    with pytest.raises(ValidationError, match="start"):
        analytics.bot_summary(book.engine, SS, start=datetime(2025, 11, 1))  # naive
    with pytest.raises(ValidationError, match="end"):
        analytics.bot_summary(book.engine, SS, start=DAY2, end=DAY1)
    with pytest.raises(ValidationError, match="marks"):
        analytics.open_positions(book.engine, marks={"BTCUSDT": 90.5})  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match="days"):
        analytics.daily_pnl(book.engine, days=0)


def test_charts_are_written_under_fixed_names_and_are_reproducible(
    book: Writer, tmp_path: Path
) -> None:
    first = charts.write_charts(book.engine, tmp_path / "a", end=NOW)
    second = charts.write_charts(book.engine, tmp_path / "b", end=NOW)

    assert [p.name for p in (first.cumulative_png, first.daily_png, first.html)] == [
        "pnl_cumulative.png",
        "pnl_daily.png",
        "pnl_report.html",
    ]
    assert (first.round_trips, first.days) == (6, 3)
    for a, b in zip(
        (first.cumulative_png, first.daily_png, first.html),
        (second.cumulative_png, second.daily_png, second.html),
        strict=True,
    ):
        assert a.read_bytes() == b.read_bytes()
    assert first.cumulative_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = first.html.read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "shortseller_001" in page and "24.80" in page


def run_cli(monkeypatch: pytest.MonkeyPatch, url: str, *argv: str) -> int:
    monkeypatch.setenv("ALPHA_DATABASE_URL", url)
    return cli_main(list(argv))


def test_cli_commands_print_tables_and_json(
    book: Writer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    url = book.db.url
    assert run_cli(monkeypatch, url, "analytics", "--bot", SS, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["net_pnl"], summary["breakeven"]) == ("24.80000000", 1)  # strings, exact

    assert run_cli(monkeypatch, url, "compare") == 0
    out = capsys.readouterr().out
    assert "portfolio" in out and "shortseller_001" in out

    assert run_cli(monkeypatch, url, "positions", "--mark", "BTCUSDT=90", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["bot_id"]: r["unrealized_pnl"] for r in rows} == {LX: "35", SS: "3"}

    assert run_cli(monkeypatch, url, "exposure", "--mark", "btcusdt=90") == 0
    assert "BTCUSDT" in capsys.readouterr().out

    assert run_cli(monkeypatch, url, "daily", "--bot", "bravo", "--days", "3650", "--json") == 0
    assert [d["net_pnl"] for d in json.loads(capsys.readouterr().out)] == [
        "2.00000000",
        "-3.00000000",
    ]

    assert run_cli(monkeypatch, url, "analytics", "--bot", SS, "--legacy", "--days", "3650") == 0
    assert "counted as losses" in capsys.readouterr().out

    assert run_cli(monkeypatch, url, "chart", "--out", str(tmp_path / "c")) == 0
    assert "pnl_report.html" in capsys.readouterr().out
    assert (tmp_path / "c" / "pnl_report.html").exists()

    assert run_cli(monkeypatch, url, "pnl-rebuild", "--json") == 0
    rebuilt = json.loads(capsys.readouterr().out)
    assert (rebuilt["stats"]["inserted"], rebuilt["stats"]["unchanged"]) == (0, 6)


def test_cli_rejects_a_bad_mark_with_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["positions", "--mark", "BTCUSDT=-1"])
    assert exc.value.code == 2
    assert "must be > 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", ["pnl-rebuild", "analytics", "compare", "daily", "positions", "exposure", "chart"]
)
def test_every_command_has_help_with_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Example:" in out and f"alpha-db {command}" in out
