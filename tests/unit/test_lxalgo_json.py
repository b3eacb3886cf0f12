"""LXAlgo's tracker adapter without a database: the JSON log is byte-for-byte what the original
``trade_tracker.py`` writes, recovery and cleanup follow its rules, and the importer's reader
keeps every readable event of a damaged log and says where the damage is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.lxalgo import TradeTracker
from alpha_models.lxalgo_import import (
    EventKind,
    ProblemKind,
    RawEntry,
    Rejected,
    TrackerEvent,
    parse_log_text,
    validate,
)
from tests import stack as tb

FIXTURES = tb.FIXTURES / "lxalgo"
REAL = sorted((FIXTURES / "real").glob("trade_log_*.json"))
SYNTHETIC = FIXTURES / "synthetic" / "trade_log.json"
MANIFEST = json.loads((FIXTURES / "real" / "MANIFEST.json").read_text())["files"]
EMPTY_LOG = b'{\n  "trade_events": []\n}'


class ReferenceTracker:
    """The original tracker's file behaviour, rebuilt from LXALGO.md section 1 (not from the
    adapter): ``json.dump(..., indent=2, default=str)`` straight into the file opened ``'w'``,
    the last 1000 events, recovery and both cleanups with their documented quirks."""

    def __init__(self, log_file: Path, now: Callable[[], datetime]) -> None:
        self.log_file = Path(log_file)
        self.now = now
        self.lock = threading.Lock()
        if not self.log_file.exists():
            self._write({"trade_events": []})

    def _write(self, data: Any) -> None:
        with open(self.log_file, "w") as f:
            json.dump(data, f, indent=2, default=str)

    def _read(self) -> Any:
        try:
            with open(self.log_file) as f:
                return json.load(f)
        except Exception:
            return {"trade_events": []}

    def _add(self, event: dict[str, Any]) -> None:
        with self.lock:
            data = self._read()
            data["trade_events"].append(event)
            data["trade_events"] = data["trade_events"][-1000:]
            self._write(data)

    def log_trade_opened(
        self,
        symbol: Any,
        rule_id: Any,
        entry_price: Any,
        position_size: Any,
        entry_timestamp: datetime | None = None,
    ) -> None:
        when = entry_timestamp if entry_timestamp is not None else self.now()
        self._add(
            {
                "timestamp": when.isoformat(),
                "event": "opened",
                "symbol": symbol,
                "rule_id": rule_id,
                "entry_price": entry_price,
                "position_size": position_size,
            }
        )

    def log_trade_closed(self, symbol: Any, rule_id: Any, reason: Any = "manual") -> None:
        self._add(
            {
                "timestamp": self.now().isoformat(),
                "event": "closed",
                "symbol": symbol,
                "rule_id": rule_id,
                "reason": reason,
            }
        )

    def get_active_trades_from_log(self, max_age_hours: int = 168) -> dict[Any, Any]:
        data = self._read()
        cutoff = self.now() - timedelta(hours=max_age_hours)
        opened: dict[Any, Any] = {}
        closed = set()
        for event in data.get("trade_events", []):
            try:
                ts = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
                if ts < cutoff:
                    continue
                key = (event["symbol"], event["rule_id"])
                if event["event"] == "opened":
                    opened[key] = {
                        "entry_timestamp": ts,
                        "entry_price": event["entry_price"],
                        "position_size": event["position_size"],
                        "rule_id": event["rule_id"],
                        "expiry_time": ts + timedelta(hours=72),
                    }
                elif event["event"] == "closed":
                    closed.add(key)
            except Exception:  # noqa: S112 (the original prints and skips)
                continue
        return {k: v for k, v in opened.items() if k not in closed}

    def cleanup_old_events(self, max_age_days: int = 30) -> None:
        with self.lock:
            data = self._read()
            cutoff = self.now() - timedelta(days=max_age_days)
            recent = []
            for event in data["trade_events"]:
                try:
                    ts = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
                    if ts >= cutoff:
                        recent.append(event)
                except Exception:  # noqa: S112 (missing, unparsable, naive: dropped)
                    continue
            data["trade_events"] = recent
            self._write(data)

    def cleanup_closed_trades(self) -> int:
        with self.lock:
            data = self._read()
            events = data["trade_events"]
            kept: list[Any] = []
            marked: set[Any] = set()
            for event in events:
                try:
                    key = (event["symbol"], event["rule_id"])
                    if event["event"] == "opened":
                        kept.append(event)
                        marked.add(key)
                    elif event["event"] == "closed":
                        if key in marked:
                            kept = [
                                e
                                for e in kept
                                if (e["symbol"], e["rule_id"], e["event"]) != (*key, "opened")
                            ]
                            marked.remove(key)
                        else:
                            kept.append(event)
                except Exception:
                    kept.append(event)
            data["trade_events"] = kept
            self._write(data)
            return (len(events) - len(kept)) // 2


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def replay(events: list[dict[str, Any]], tracker: Any, clock: Clock) -> None:
    """Drive a tracker the way the strategy produced ``events``: entries with the caller's
    time (keywords, trading_engine.py:215), closes positional at the logged time."""
    for e in events:
        ts = datetime.fromisoformat(e["timestamp"])
        if e["event"] == "opened":
            tracker.log_trade_opened(
                symbol=e["symbol"],
                rule_id=e["rule_id"],
                entry_price=e["entry_price"],
                position_size=e["position_size"],
                entry_timestamp=ts,
            )
        else:
            clock.now = ts
            tracker.log_trade_closed(e["symbol"], e["rule_id"], e["reason"])


def as_text(value: Any) -> str:
    """Comparable form of a recovery result (NaN != NaN, so compare the text)."""
    return json.dumps(sorted(value.items(), key=repr), default=str)


# ------------------------------------------------------------------------------ file bytes


def test_a_missing_log_is_created_with_the_original_bytes(tmp_path: Path) -> None:
    TradeTracker(str(tmp_path / "trade_log.json"), database=False)
    assert (tmp_path / "trade_log.json").read_bytes() == EMPTY_LOG


@pytest.mark.parametrize("fixture", [*REAL, SYNTHETIC], ids=lambda p: p.name)
def test_replaying_a_real_log_writes_the_same_bytes_as_the_original(
    fixture: Path, tmp_path: Path
) -> None:
    """The fixtures were written by the unmodified original: driving the adapter with the same
    calls must reproduce them exactly (float noise, 1e-08, timestamps and all)."""
    original = fixture.read_bytes()
    events = json.loads(original)["trade_events"]
    clock = Clock(datetime(2025, 1, 1, tzinfo=UTC))
    adapter = TradeTracker(str(tmp_path / "adapter.json"), database=False, clock=clock)
    replay(events, adapter, clock)
    reference = ReferenceTracker(tmp_path / "reference.json", clock)
    replay(events, reference, clock)
    assert (tmp_path / "adapter.json").read_bytes() == original
    assert (tmp_path / "reference.json").read_bytes() == original


def test_the_log_keeps_the_last_1000_events(tmp_path: Path) -> None:
    base = json.loads(SYNTHETIC.read_bytes())["trade_events"]
    events = (base * 2)[:998]
    clock = Clock(datetime(2025, 11, 7, tzinfo=UTC))
    trackers: list[Any] = []
    for name in ("adapter.json", "reference.json"):
        (tmp_path / name).write_text(json.dumps({"trade_events": events}, indent=2))
    trackers = [
        TradeTracker(str(tmp_path / "adapter.json"), database=False, clock=clock),
        ReferenceTracker(tmp_path / "reference.json", clock),
    ]
    for t in trackers:
        for i in range(5):
            t.log_trade_closed("BTCUSDT", "Rule 8", f"r{i}")
    adapter, reference = ((tmp_path / n).read_bytes() for n in ("adapter.json", "reference.json"))
    assert adapter == reference
    kept = json.loads(adapter)["trade_events"]
    assert len(kept) == 1000
    assert kept[0] == events[3] and kept[-1]["reason"] == "r4"


def test_a_truncated_log_is_restarted_like_the_original_but_kept_aside(tmp_path: Path) -> None:
    text = REAL[-1].read_text()
    damaged = text[: len(text) // 2]
    for name in ("adapter.json", "reference.json"):
        (tmp_path / name).write_text(damaged)
    clock = Clock(datetime(2025, 11, 7, 6, tzinfo=UTC))
    TradeTracker(str(tmp_path / "adapter.json"), database=False, clock=clock).log_trade_closed(
        "BTCUSDT", "Rule 8", "external_close"
    )
    ReferenceTracker(tmp_path / "reference.json", clock).log_trade_closed(
        "BTCUSDT", "Rule 8", "external_close"
    )
    assert (tmp_path / "adapter.json").read_bytes() == (tmp_path / "reference.json").read_bytes()
    kept = list(tmp_path.glob("adapter_unreadable_*.json"))
    assert [p.read_text() for p in kept] == [damaged]  # the original lost this history


def test_a_top_level_list_neither_raises_nor_loses_the_file(tmp_path: Path) -> None:
    """The original raised TypeError inside ``close_trade`` (after the close order was sent)."""
    log = tmp_path / "trade_log.json"
    log.write_text("[]")
    tracker = TradeTracker(str(log), database=False)
    tracker.log_trade_closed("BTCUSDT", "Rule 8", "external_close")
    assert tracker.get_active_trades_from_log() == {}
    assert [e["symbol"] for e in json.loads(log.read_text())["trade_events"]] == ["BTCUSDT"]
    assert [p.read_text() for p in tmp_path.glob("trade_log_unreadable_*.json")] == ["[]"]


def test_a_write_never_leaves_a_partial_file(tmp_path: Path) -> None:
    """The original wrote into the truncated file: a value that cannot be encoded left half a
    log behind. The adapter writes a whole file or nothing."""
    log = tmp_path / "trade_log.json"
    tracker = TradeTracker(str(log), database=False)
    tracker.log_trade_closed("BTCUSDT", "Rule 8", "manual")
    before = log.read_bytes()

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    tracker.log_trade_opened("BTCUSDT", "Rule 8", Unprintable(), 1.0)  # type: ignore[arg-type]
    assert log.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["trade_log.json"]  # no temporary file left


# ------------------------------------------------------------------------------ properties

TIMEZONES = st.sampled_from([UTC, timezone(timedelta(hours=3)), None])
MOMENTS = st.builds(
    lambda base, micros, tz: (base + timedelta(microseconds=micros)).replace(tzinfo=tz),
    st.datetimes(min_value=datetime(2025, 10, 1), max_value=datetime(2025, 11, 30)),
    st.sampled_from([0, 1, 500000]),
    TIMEZONES,
)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([77.0, 1e-08, 1.236e-05, 465.20000000000005, 0.1 + 0.2, -5.0, 0.0]),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.decimals(allow_nan=False, allow_infinity=False, places=5),
    st.sampled_from(["0.1", "abc", "", None, True]),
)
SYMBOLS = st.one_of(
    st.sampled_from(["SOONUSDT", "1000PEPEUSDT", "币安人生USDT", "HIPPOUSDT"]),
    st.text(max_size=8),
)
RULES = st.sampled_from(["Rule 6", "Rule 8", "untracked_startup", "Recovered-Unknown", ""])
REASONS = st.sampled_from(
    ["external_close", "risk_management", "8h_negative_pnl", "manual", "expiry", "ü"]
)
CALLS = st.one_of(
    st.tuples(st.just("open"), SYMBOLS, RULES, NUMBERS, NUMBERS, st.none() | MOMENTS),
    st.tuples(st.just("close"), SYMBOLS, RULES, REASONS),
    st.tuples(st.just("close_default"), SYMBOLS, RULES),
    st.tuples(st.just("recover"), st.sampled_from([1, 24, 168, 24 * 365 * 5])),
    st.tuples(st.just("cleanup_old"), st.sampled_from([0, 1, 30])),
    st.tuples(st.just("cleanup_pairs")),
    st.tuples(st.just("tick"), st.integers(min_value=0, max_value=10**6)),
)
FULL_EVENT = st.fixed_dictionaries(
    {
        "timestamp": MOMENTS.map(lambda m: m.isoformat()),
        "event": st.sampled_from(["opened", "closed"]),
        "symbol": st.sampled_from(["SOONUSDT", "AIAUSDT"]),
        "rule_id": st.sampled_from(["Rule 6", "Rule 8"]),
    }
)
#: An event missing one of the keys cleanup reads (kept by it, and it breaks later removals).
PARTIAL_EVENT = st.tuples(
    FULL_EVENT, st.sampled_from(["timestamp", "event", "symbol", "rule_id"])
).map(lambda pair: {k: v for k, v in pair[0].items() if k != pair[1]})
RAW_EVENTS = st.lists(
    st.one_of(
        FULL_EVENT,
        PARTIAL_EVENT,
        st.fixed_dictionaries(
            {
                "timestamp": st.one_of(
                    MOMENTS.map(lambda m: m.isoformat()),
                    st.just("2025-11-05T21:55:01Z"),
                    st.just("not a time"),
                    st.integers(),
                ),
                "event": st.sampled_from(["opened", "closed", "partial_close", "OPENED"]),
                "symbol": st.sampled_from(["SOONUSDT", "AIAUSDT"]),
                "rule_id": st.sampled_from(["Rule 6", "Rule 8"]),
            },
            optional={"entry_price": NUMBERS, "position_size": NUMBERS, "reason": REASONS},
        ),
        st.dictionaries(
            st.sampled_from(["timestamp", "event", "symbol", "rule_id"]),
            st.sampled_from(["opened", "closed", "SOONUSDT", "Rule 6"]),
        ),
        st.one_of(st.integers(), st.text(max_size=3), st.none()),
    ),
    max_size=12,
)


def _run(tracker: Any, call: tuple[Any, ...], clock: Clock) -> Any:
    kind = call[0]
    if kind == "open":
        tracker.log_trade_opened(
            symbol=call[1],
            rule_id=call[2],
            entry_price=call[3],
            position_size=call[4],
            entry_timestamp=call[5],
        )
        return None
    if kind == "close":
        return tracker.log_trade_closed(call[1], call[2], call[3])
    if kind == "close_default":
        return tracker.log_trade_closed(call[1], call[2])
    if kind == "recover":
        return as_text(tracker.get_active_trades_from_log(max_age_hours=call[1]))
    if kind == "cleanup_old":
        return tracker.cleanup_old_events(max_age_days=call[1])
    if kind == "cleanup_pairs":
        return tracker.cleanup_closed_trades()
    clock.now += timedelta(seconds=call[1])
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial=RAW_EVENTS, calls=st.lists(CALLS, max_size=10))
def test_any_calls_on_any_log_give_the_originals_bytes_and_answers(
    initial: list[Any], calls: list[tuple[Any, ...]]
) -> None:
    """Any value the strategy may pass (NaN, Decimal, non-ASCII, naive or offset times, bad
    sizes), on a log holding malformed events: same file, same return values."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = json.dumps({"trade_events": initial}, indent=2, default=str)
        for name in ("adapter.json", "reference.json"):
            (root / name).write_text(start)
        clock = Clock(datetime(2025, 11, 7, 5, 16, 19, tzinfo=UTC))
        adapter = TradeTracker(str(root / "adapter.json"), database=False, clock=clock)
        reference = ReferenceTracker(root / "reference.json", clock)
        for call in calls:
            assert _run(adapter, call, clock) == _run(reference, call, clock), call
            assert (root / "adapter.json").read_bytes() == (root / "reference.json").read_bytes()


def test_cleanup_follows_the_originals_quirks(tmp_path: Path) -> None:
    """Every open of a closed key goes, the count under-reports, a second close stays, other
    event kinds are dropped, and open A, close A, close A, open A hides A from recovery."""
    t = "2025-11-06T00:00:0{}+00:00"
    events: list[dict[str, Any]] = [
        {"timestamp": t.format(1), "event": "opened", "symbol": "A", "rule_id": "R"},
        {"timestamp": t.format(2), "event": "opened", "symbol": "A", "rule_id": "R"},
        {"timestamp": t.format(3), "event": "closed", "symbol": "A", "rule_id": "R"},
        {"timestamp": t.format(4), "event": "closed", "symbol": "A", "rule_id": "R"},
        {"timestamp": t.format(6), "event": "opened", "symbol": "A", "rule_id": "R"},
    ]
    for e in events:
        e.update({"entry_price": 1.0, "position_size": 2.0} if e["event"] == "opened" else {})
    log = tmp_path / "trade_log.json"
    log.write_text(json.dumps({"trade_events": events}, indent=2))
    clock = Clock(datetime(2025, 11, 6, 1, tzinfo=UTC))
    tracker = TradeTracker(str(log), database=False, clock=clock)
    assert tracker.cleanup_closed_trades() == 1  # 3 events removed, 3 // 2
    left = json.loads(log.read_text())["trade_events"]
    assert [(e["event"], e["timestamp"][-7]) for e in left] == [("closed", "4"), ("opened", "6")]
    assert tracker.get_active_trades_from_log() == {}
    other = {"timestamp": t.format(5), "event": "partial_close", "symbol": "B", "rule_id": "R"}
    log.write_text(json.dumps({"trade_events": [other]}, indent=2))
    assert tracker.cleanup_closed_trades() == 0  # dropped, and 1 // 2 == 0
    assert json.loads(log.read_text()) == {"trade_events": []}
    # A kept event lacking rule_id (even a close) makes every later removal fail: nothing goes.
    broken = [events[0], {"timestamp": t.format(2), "event": "closed", "symbol": "A"}, events[2]]
    log.write_text(json.dumps({"trade_events": broken}, indent=2))
    assert tracker.cleanup_closed_trades() == 0
    assert json.loads(log.read_text())["trade_events"] == broken


@pytest.mark.parametrize("fixture", REAL, ids=lambda p: p.name)
def test_recovery_from_the_log_is_what_the_original_returned_at_commit_time(
    fixture: Path, tmp_path: Path
) -> None:
    expected = MANIFEST[fixture.name]
    log = tmp_path / "trade_log.json"
    log.write_bytes(fixture.read_bytes())
    clock = Clock(datetime.fromisoformat(expected["commit_time_utc"]))
    trades = TradeTracker(str(log), database=False, clock=clock).get_active_trades_from_log()
    assert sorted(list(k) for k in trades) == expected["tracker_recovers_at_commit_time_168h"]
    for value in trades.values():  # the original's value: the log's own numbers, unconverted
        assert isinstance(value["entry_price"], float)
        assert value["expiry_time"] - value["entry_timestamp"] == timedelta(hours=72)


# ------------------------------------------------------------------------------ module names


def test_the_singleton_is_built_on_import_of_its_name_and_shared_by_the_shim(
    tmp_path: Path,
) -> None:
    """Like ``trade_tracker.py``: importing the name creates ``trade_log.json`` in the working
    directory and connects to nothing; importing the module alone creates nothing."""
    script = (
        "import os, adapters.lxalgo as m\n"
        "print(sorted(os.listdir('.')))\n"
        "from adapters.lxalgo import trade_tracker, enhance_active_trades_structure, "
        "get_trade_age_hours, get_trade_expiry, TradeTracker\n"
        "from adapters.trade_tracker import trade_tracker as again\n"
        "ns = {}\n"
        "exec('from adapters.trade_tracker import *', ns)\n"
        "print(sorted(os.listdir('.')), again is trade_tracker, ns['trade_tracker'] is again,\n"
        "      isinstance(trade_tracker, TradeTracker), trade_tracker.database_in_sync)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES", "ALPHA"))}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**env, "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert out == ["[]", "['trade_log.json'] True True True False"]
    assert (tmp_path / "trade_log.json").read_bytes() == EMPTY_LOG


def test_legacy_helpers() -> None:
    from adapters.lxalgo import (
        enhance_active_trades_structure,
        get_trade_age_hours,
        get_trade_expiry,
    )

    expiry = datetime.now(UTC) + timedelta(hours=24)
    enhanced = enhance_active_trades_structure({("A", "Rule 8"): expiry, ("B", "R"): {"x": 1}})
    assert enhanced[("A", "Rule 8")] == {
        "entry_timestamp": None,
        "entry_price": 0.0,
        "position_size": 0.0,
        "rule_id": "Rule 8",
        "expiry_time": expiry,
    }
    assert enhanced[("B", "R")] == {"x": 1}
    assert get_trade_age_hours(enhanced[("A", "Rule 8")]) == pytest.approx(48, abs=0.01)
    assert get_trade_age_hours({}) == 0.0
    entry = datetime.now(UTC) - timedelta(hours=5)
    assert get_trade_age_hours({"entry_timestamp": entry}) == pytest.approx(5, abs=0.01)
    assert get_trade_expiry(enhanced[("A", "Rule 8")]) == expiry
    assert get_trade_expiry({}) - datetime.now(UTC) > timedelta(hours=71)


# ------------------------------------------------------------------------------ the reader


@pytest.mark.parametrize("fixture", [*REAL, SYNTHETIC], ids=lambda p: p.name)
def test_every_fixture_event_is_read_and_valid_with_its_own_id(fixture: Path) -> None:
    parsed = parse_log_text(fixture.read_text())
    items = [validate(e) for e in parsed.entries]
    events = json.loads(fixture.read_bytes())["trade_events"]
    assert parsed.complete and parsed.problems == ()
    assert [e.value for e in parsed.entries] == events
    assert all(isinstance(i, TrackerEvent) for i in items)
    assert len({i.event_id for i in items}) == len(events)
    lines = fixture.read_text().splitlines()
    assert all(lines[e.line - 1].strip() == "{" for e in parsed.entries if e.line)


def _damaged_log() -> tuple[str, list[Any]]:
    """The November log with one event of each kind of damage, and the events it still has."""
    events = json.loads(REAL[-1].read_bytes())["trade_events"][:12]
    events[2] = {**events[2], "entry_price": None}  # missing price
    events[4] = {**events[4], "position_size": -3252.0}  # negative size
    events[5] = {**events[5], "event": "partial_close"}  # unknown kind
    text = json.dumps({"trade_events": events}, indent=2)
    lines = text.split("\n")
    start = [i for i, line in enumerate(lines) if line == "    {"]
    lines[start[7] + 2] = '      "event": opened,'  # a malformed line inside event #7
    lines.insert(start[9], "    <<< stray text >>>,")  # garbage between events #8 and #9
    text = "\n".join(lines)
    cut = text.rindex('"symbol"')  # the file ends inside event #11
    return text[:cut], events


def test_a_damaged_log_keeps_every_good_event_and_locates_each_defect() -> None:
    text, events = _damaged_log()
    parsed = parse_log_text(text)
    items = [validate(e) for e in parsed.entries]
    good = [i for i in items if isinstance(i, TrackerEvent)]
    bad = [(i.index, i.field, i.message) for i in items if isinstance(i, Rejected)]
    assert [g.index for g in good] == [0, 1, 3, 6, 8, 9, 10]
    assert [g.raw for g in good] == [events[i] for i in (0, 1, 3, 6, 8, 9, 10)]
    assert bad == [
        (2, "entry_price", "missing entry_price"),
        (4, "position_size", "invalid position_size=-3252.0: must not be negative"),
        (5, "event", "unknown event kind 'partial_close'"),
    ]
    problems = [(p.kind, p.index, p.line) for p in parsed.problems]
    lines = text.split("\n")
    starts = [n + 1 for n, line in enumerate(lines) if line == "    {"]
    assert problems == [
        (ProblemKind.MALFORMED, 7, starts[7]),
        (ProblemKind.MALFORMED, None, lines.index("    <<< stray text >>>,") + 1),
        (ProblemKind.TRUNCATED, 11, starts[11]),
    ]
    assert not parsed.complete


def _log_text(events: list[dict[str, Any]]) -> str:
    return json.dumps({"trade_events": events}, indent=2, default=str)


EVENT = st.fixed_dictionaries(
    {
        "timestamp": MOMENTS.map(lambda m: m.isoformat()),
        "event": st.sampled_from(["opened", "closed"]),
        "symbol": st.from_regex(r"[A-Z0-9]{2,12}", fullmatch=True),
        "rule_id": RULES,
        "entry_price": NUMBERS,
    }
)


@settings(max_examples=200, deadline=None)
@given(events=st.lists(EVENT, max_size=8), data=st.data())
def test_a_log_cut_anywhere_yields_exactly_the_events_before_the_cut(
    events: list[dict[str, Any]], data: st.DataObject
) -> None:
    text = _log_text(events)
    cut = data.draw(st.integers(min_value=len('{\n  "trade_events": ['), max_value=len(text)))
    parsed = parse_log_text(text[:cut])
    whole = parse_log_text(text)
    # Event i is complete when the cut keeps its closing brace: the text of a log of its first
    # i + 1 events, without the closing "\n  ]\n}".
    complete = sum(1 for i in range(len(events)) if len(_log_text(events[: i + 1])) - 6 <= cut)
    assert len(whole.entries) == len(events)
    assert [e.value for e in parsed.entries] == [e.value for e in whole.entries][:complete]
    if cut == len(text):
        assert parsed.complete and parsed.problems == ()
    else:
        assert [p.kind for p in parsed.problems] == [ProblemKind.TRUNCATED]


@given(st.text(max_size=200))
def test_the_reader_never_raises(text: str) -> None:
    parsed = parse_log_text(text)
    for entry in parsed.entries:
        validate(entry)


def entry(**fields: Any) -> RawEntry:
    base = {
        "timestamp": "2025-11-05T22:05:01.151707+00:00",
        "event": "opened",
        "symbol": "AI16ZUSDT",
        "rule_id": "Rule 8",
        "entry_price": 0.0615,
        "position_size": 3252.0,
    }
    return RawEntry(0, 1, {k: v for k, v in {**base, **fields}.items() if v is not ...})


def test_validation_accepts_the_quirks_of_real_logs() -> None:
    good = validate(entry(entry_price="0.06150", position_size=3252))
    assert isinstance(good, TrackerEvent)
    assert (good.entry_price, good.position_size) == (Decimal("0.06150000"), Decimal("3252"))
    zulu = validate(entry(timestamp="2025-11-05T22:05:01.151707Z"))
    assert isinstance(zulu, TrackerEvent) and zulu.event_id == good.event_id
    naive = validate(entry(timestamp="2025-11-05T22:05:01.151707"))
    assert isinstance(naive, TrackerEvent) and naive.naive and naive.event_id == good.event_id
    local = validate(entry(timestamp="2025-11-06T01:05:01.151707+03:00"))
    assert isinstance(local, TrackerEvent) and local.timestamp == good.timestamp
    close = validate(entry(event="closed", reason="external_close", entry_price=...))
    assert isinstance(close, TrackerEvent) and close.kind is EventKind.CLOSED
    assert close.event_id != good.event_id


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"entry_price": ...}, "entry_price", "missing entry_price"),
        ({"entry_price": float("nan")}, "entry_price", "invalid entry_price=nan: not finite"),
        ({"position_size": 0.0}, "position_size", "must be > 0"),
        ({"position_size": "many"}, "position_size", "not a plain decimal number"),
        ({"position_size": True}, "position_size", "not a bool"),
        ({"event": "OPENED"}, "event", "unknown event kind 'OPENED'"),
        ({"timestamp": "yesterday"}, "timestamp", "unparsable timestamp 'yesterday'"),
        ({"timestamp": ...}, "timestamp", "missing timestamp"),
        ({"symbol": "币安人生USDT"}, "symbol", "not a symbol"),
        ({"rule_id": ""}, "rule_id", "rule_id is not a short text"),
        ({"event": "closed", "reason": None}, "reason", "missing reason"),
    ],
)
def test_validation_rejects_with_the_field_and_reason(
    fields: dict[str, Any], field: str, message: str
) -> None:
    rejected = validate(entry(**fields))
    assert isinstance(rejected, Rejected)
    assert rejected.field == field and message in rejected.message
    assert rejected.event_id.startswith("lxalgo:event:")


def iter_fixture_ids() -> Iterator[str]:
    for fixture in [*REAL, SYNTHETIC]:
        for e in parse_log_text(fixture.read_text()).entries:
            item = validate(e)
            yield item.event_id


def test_event_ids_are_unique_across_all_fixtures_and_fit_exec_id() -> None:
    ids = list(iter_fixture_ids())
    assert len(ids) == len(set(ids)) == 107 + 26 + 60 + 691
    assert max(len(i) for i in ids) <= 64
