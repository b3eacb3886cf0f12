"""``alpha-db import-lxalgo`` on LXAlgo's real and synthetic trade logs: every event accounted
for (imported, paired or reported), a second import adds nothing, a dry run writes nothing,
damaged logs lose only their damaged parts."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from alpha_models.cli import main
from alpha_models.inputs import to_decimal8
from alpha_models.lxalgo_import import BOT_ID, Classification, ImportSummary, import_logs
from tests.conftest import Writer
from tests.unit.test_lxalgo_json import REAL, SYNTHETIC, _damaged_log

NOVEMBER = REAL[-1]
TABLES = (
    "trading.fills",
    "trading.strategy_trades",
    "trading.position_entries",
    "audit.system_events",
)


def model(paths: list[Path]) -> dict[str, Any]:
    """A plain re-reading of the logs, independent of the importer: a close ends every open
    trade of its key entered in the week before (one-way mode sells the whole symbol; the
    engine forgets a trade after 72 h), a close of a key closed under an hour before is a
    repeat, any other close is unpaired."""
    open_trades: dict[tuple[str, str], list[datetime]] = {}
    last_close: dict[tuple[str, str], datetime] = {}
    closed: list[tuple[str, str, str]] = []  # (rule, reason, symbol) per closed trade
    kinds: Counter[str] = Counter()
    unpaired = []
    for path in paths:
        for i, e in enumerate(json.loads(path.read_bytes())["trade_events"]):
            key, at = (e["symbol"], e["rule_id"]), datetime.fromisoformat(e["timestamp"])
            recent = [t for t in open_trades.get(key, []) if at - t <= timedelta(hours=168)]
            if e["event"] == "opened":
                open_trades.setdefault(key, []).append(at)
                kinds["opened"] += 1
            elif recent:
                closed += [(key[1], e["reason"], key[0]) for _ in recent]
                open_trades[key] = [t for t in open_trades[key] if t not in recent]
                last_close[key] = at
                kinds["paired"] += 1
            elif key in last_close and at - last_close[key] <= timedelta(hours=1):
                kinds["repeat"] += 1
            else:
                kinds["unpaired"] += 1
                unpaired.append((path.name, i, key[0], key[1]))
    return {
        "kinds": kinds,
        "unpaired": unpaired,
        "closed_by_rule_and_reason": Counter((rule, reason) for rule, reason, _ in closed),
        "open": sorted(key for key, trades in open_trades.items() for _ in trades),
    }


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def kinds(summary: ImportSummary) -> Counter[str]:
    return Counter({str(c): summary.count(c) for c in Classification if summary.count(c)})


def test_real_logs_every_event_accounted_for_and_a_second_import_adds_nothing(
    writer: Writer,
) -> None:
    first = import_logs(REAL, engine=writer.engine, write_path=writer.path)
    expected = model(REAL)  # July, September, November: more than 168 h apart
    assert first.events == first.accounted == 60 + 26 + 107
    assert kinds(first) == expected["kinds"]
    assert expected["kinds"] == {"opened": 112, "paired": 68, "repeat": 11, "unpaired": 2}
    assert [
        (Path(u["file"]).name, u["index"], u["symbol"], u["rule_id"]) for u in first.unpaired
    ] == (expected["unpaired"])
    assert [u["rule_id"] for u in first.unpaired] == ["untracked_startup"] * 2
    assert first.fills == {"new": 112}
    assert first.rejected == [] and first.problems == []
    with writer.engine.connect() as conn:
        fills = conn.execute(
            text(
                "SELECT side, source, close_reason, count(*) FROM trading.fills "
                "WHERE bot_id = :b GROUP BY 1, 2, 3"
            ),
            {"b": BOT_ID},
        ).all()
        by_rule_and_reason = conn.execute(
            text(
                "SELECT rule_id, exit_reason, count(*) FROM trading.strategy_trades "
                "WHERE bot_id = :b AND exit_time IS NOT NULL GROUP BY 1, 2"
            ),
            {"b": BOT_ID},
        ).all()
        still_open = conn.execute(
            text(
                "SELECT symbol, rule_id FROM trading.strategy_trades "
                "WHERE bot_id = :b AND exit_time IS NULL ORDER BY 1, 2"
            ),
            {"b": BOT_ID},
        ).all()
        reported = conn.execute(
            text(
                "SELECT symbol, event_level, details->>'index' FROM audit.system_events "
                "WHERE event_type = 'lxalgo_unpaired_close' ORDER BY id"
            )
        ).all()
    assert fills == [("Buy", "tracker", "entry", 112)]  # provisional, for reconciliation
    assert (
        Counter({(r, x): n for r, x, n in by_rule_and_reason})
        == (expected["closed_by_rule_and_reason"])
    )
    assert [tuple(r) for r in still_open] == expected["open"]
    assert [tuple(r) for r in reported] == [
        ("COAIUSDT", "WARNING", "73"),
        ("SOONUSDT", "WARNING", "74"),
    ]

    before = counts(writer.engine)
    second = import_logs(REAL, engine=writer.engine, write_path=writer.path)
    assert counts(writer.engine) == before
    assert second.new == 0 and second.accounted == second.events == first.events
    assert kinds(second) == kinds(first)
    assert second.fills == {"duplicate": 112}
    assert len(second.unpaired) == 2 and all(u["already_reported"] for u in second.unpaired)


def test_the_entry_fills_are_the_logged_entries(writer: Writer) -> None:
    """Price = the signal close, qty = the ordered qty, time = the logged time, rule kept, for
    every opened event of the November log (LXALGO.md 5.1), including the two SOONUSDT opens
    the old integration lost to its side-case bug."""
    import_logs([NOVEMBER], engine=writer.engine, write_path=writer.path)
    opened = [
        e for e in json.loads(NOVEMBER.read_bytes())["trade_events"] if e["event"] == "opened"
    ]
    with writer.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT f.symbol, f.exec_price, f.exec_qty, f.exec_time, t.rule_id, "
                "t.entry_exec_id = f.exec_id FROM trading.fills f "
                "JOIN trading.strategy_trades t ON t.trade_key = f.exec_id "
                "ORDER BY f.exec_time, f.id"
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (
            e["symbol"],
            to_decimal8("p", e["entry_price"]),
            to_decimal8("q", e["position_size"]),
            datetime.fromisoformat(e["timestamp"]),
            e["rule_id"],
            True,
        )
        for e in sorted(opened, key=lambda e: e["timestamp"])
    ]


def test_synthetic_log_and_a_backup_copy(writer: Writer, tmp_path: Path) -> None:
    """691 events written by the original on a simulated clock, imported with an older copy
    of the same log (a manual backup): the copy adds nothing."""
    events = json.loads(SYNTHETIC.read_bytes())["trade_events"]
    backup = tmp_path / "trade_log_backup.json"
    backup.write_text(json.dumps({"trade_events": events[:200]}, indent=2))
    summary = import_logs([tmp_path, SYNTHETIC], engine=writer.engine, write_path=writer.path)
    expected = model([SYNTHETIC])
    assert expected["kinds"] == {"opened": 343, "paired": 333, "repeat": 12, "unpaired": 3}
    assert summary.events == summary.accounted == 691 + 200
    assert kinds(summary) == expected["kinds"] + model([backup])["kinds"]
    assert summary.new == 691
    assert [(u["symbol"], u["rule_id"]) for u in summary.unpaired if not u["already_reported"]] == [
        (s, r) for _f, _i, s, r in expected["unpaired"]
    ]
    with writer.engine.connect() as conn:
        still_open = conn.execute(
            text(
                "SELECT symbol, rule_id FROM trading.strategy_trades "
                "WHERE exit_time IS NULL ORDER BY 1, 2"
            )
        ).all()
    assert [tuple(r) for r in still_open] == expected["open"]


def test_dry_run_writes_nothing_and_predicts_the_import(writer: Writer) -> None:
    empty = counts(writer.engine)
    dry = import_logs([NOVEMBER], engine=writer.engine, write_path=None)
    assert counts(writer.engine) == empty
    real = import_logs([NOVEMBER], engine=writer.engine, write_path=writer.path)
    assert dry.dry_run and not real.dry_run
    assert dry.as_dict() | {"dry_run": True} == real.as_dict() | {"dry_run": True}
    again = import_logs([NOVEMBER], engine=writer.engine, write_path=None)
    assert again.new == 0 and kinds(again) == kinds(real)


@pytest.fixture
def cli_env(writer: Writer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Writer:
    monkeypatch.setenv("ALPHA_DATABASE_URL", writer.db.url)
    monkeypatch.setenv("ALPHA_REDIS_URL", writer.db.stack.redis_url())
    monkeypatch.setenv("ALPHA_SPOOL_DIR", str(tmp_path / "cli-spool"))
    return writer


def test_cli_reports_damaged_events_with_their_position_and_imports_the_rest(
    cli_env: Writer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    damaged_text, events = _damaged_log()
    damaged = tmp_path / "trade_log.json"
    damaged.write_text(damaged_text)
    assert main(["import-lxalgo", str(damaged), str(REAL[1]), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [(r["index"], r["field"], r["problem"]) for r in out["rejected"]] == [
        (2, "entry_price", "invalid_event"),
        (4, "position_size", "invalid_event"),
        (5, "event", "unknown_event"),
    ]
    lines = damaged_text.split("\n")
    starts = [n + 1 for n, line in enumerate(lines) if line == "    {"]
    assert [r["line"] for r in out["rejected"]] == [starts[2], starts[4], starts[5]]
    damaged_report = next(f for f in out["files"] if f["path"] == str(damaged))
    assert [(p["kind"], p["index"]) for p in damaged_report["problems"]] == [
        ("malformed_json", 7),
        ("malformed_json", None),
        ("truncated", 11),
    ]
    good = [events[i] for i in (0, 1, 3, 6, 8, 9, 10)]
    good_opens = [e["symbol"] for e in good if e["event"] == "opened"]
    assert out["events"] == out["accounted"] == 10 + 26  # the readable events + September's
    assert out["outcomes"]["opened:new"] == len(good_opens) + 23
    with cli_env.engine.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT symbol FROM trading.strategy_trades "
                "WHERE entry_time >= '2025-11-01' ORDER BY entry_time"
            )
        ).scalars()
        rejected = conn.execute(
            text(
                "SELECT details->>'index', details->>'field' FROM audit.system_events "
                "WHERE event_type = 'lxalgo_rejected_event' ORDER BY id"
            )
        ).all()
    assert list(stored) == good_opens
    assert [tuple(r) for r in rejected] == [
        ("2", "entry_price"),
        ("4", "position_size"),
        ("5", "event"),
    ]

    assert main(["import-lxalgo", str(damaged), str(REAL[1])]) == 1  # still damaged
    human = capsys.readouterr().out
    assert "import-lxalgo (imported): 36 event(s) in 2 file(s)" in human
    assert f"{damaged} #4 line {starts[4]}: invalid position_size=-3252.0" in human
    assert f"{damaged} line {starts[11]}: truncated" in human
    total = next(line for line in human.splitlines() if line.startswith("total"))
    assert total.split() == ["total", "0", "36"]  # second run: nothing new


def test_cli_dry_run_on_a_clean_log(cli_env: Writer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-lxalgo", str(REAL[0]), "--dry-run"]) == 0
    human = capsys.readouterr().out
    assert human.startswith("import-lxalgo (dry run, nothing written): 60 event(s) in 1 file(s)")
    assert counts(cli_env.engine)["trading.strategy_trades"] == 0
