"""The durable spool: order, restarts, torn writes, limits, replay and several processes."""

from __future__ import annotations

import errno
import json
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from alpha_models.errors import AlphaModelsError, SpoolFullError
from alpha_models.settings import Settings
from alpha_models.spool import QUARANTINE_FILE, Spool, SpoolEntry

BIG = 64 * 1024 * 1024


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.log"))


def _records(spool: Spool) -> list[tuple[int, dict[str, Any]]]:
    return [(e.seq, e.record) for e in spool.pending()]


def _fill(i: int) -> dict[str, Any]:
    return {"exec_id": f"e{i}", "price": "65000.50000000", "qty": "0.001", "side": "Buy"}


# --------------------------------------------------------------------------- basics


def test_round_trip_keeps_order_and_survives_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    seqs = [spool.append(_fill(i)) for i in range(10)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 10
    assert [e.record for e in spool.pending()] == [_fill(i) for i in range(10)]
    assert [e.seq for e in spool.pending(limit=3)] == seqs[:3]
    assert spool.pending(limit=0) == []
    assert len(spool) == 10

    spool.ack(seqs[3])
    assert [e.seq for e in spool.pending()] == seqs[4:]
    spool.close()

    restarted = Spool(tmp_path, BIG)  # a restart
    assert [e.seq for e in restarted.pending()] == seqs[4:]
    assert [e.record for e in restarted.pending()] == [_fill(i) for i in range(4, 10)]
    assert restarted.append(_fill(10)) == seqs[-1] + 1
    stats = restarted.stats()
    assert (stats.pending_count, stats.oldest_seq, stats.newest_seq) == (7, seqs[4], seqs[-1] + 1)
    assert stats.acked_seq == seqs[3] and stats.corrupt_lines == 0
    assert (
        stats.bytes == restarted.bytes_used() == sum(p.stat().st_size for p in _segments(tmp_path))
    )


def test_acked_records_never_come_back_and_numbering_continues(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    for i in range(5):
        spool.append(_fill(i))
    spool.ack(5)
    assert spool.pending() == [] and len(spool) == 0
    assert _segments(tmp_path) == []  # fully acknowledged segments are removed
    spool.close()
    restarted = Spool(tmp_path, BIG)
    assert restarted.pending() == []
    assert restarted.append({"n": 1}) == 6  # from the ack file: numbers are never reused
    assert Spool(tmp_path, BIG).pending() == [SpoolEntry(6, {"n": 1})]


def test_ack_rules(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    for i in range(3):
        spool.append(_fill(i))
    with pytest.raises(ValueError, match="newest"):
        spool.ack(4)
    spool.ack(2)
    spool.ack(1)  # lower than what is acknowledged: no-op
    spool.ack(0)
    assert [e.seq for e in spool.pending()] == [3]
    assert Spool(tmp_path, BIG).stats().acked_seq == 2


def test_two_spool_objects_see_each_others_records(tmp_path: Path) -> None:
    a, b = Spool(tmp_path, BIG), Spool(tmp_path, BIG)
    assert a.append({"w": "a"}) == 1
    assert b.append({"w": "b"}) == 2
    assert a.append({"w": "a2"}) == 3
    assert [e.record["w"] for e in a.pending()] == ["a", "b", "a2"]
    b.ack(2)
    assert [e.seq for e in a.pending()] == [3]
    assert len(a) == len(b) == 1


def test_segments_rotate_and_are_removed_when_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG, segment_bytes=1000)
    seqs = [spool.append(_fill(i)) for i in range(60)]
    assert len(_segments(tmp_path)) > 3
    assert all(p.stat().st_size <= 1000 for p in _segments(tmp_path))
    spool.ack(seqs[29])
    assert [e.seq for e in spool.pending()] == seqs[30:]
    remaining = _segments(tmp_path)
    spool.ack(seqs[-1])
    assert _segments(tmp_path) == [] and remaining
    assert spool.bytes_used() == 0
    assert Spool(tmp_path, BIG).append({"x": 1}) == seqs[-1] + 1


def test_pending_in_batches_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG, segment_bytes=700)
    seqs = [spool.append({"i": i}) for i in range(100)]
    seen: list[int] = []
    while batch := spool.pending(limit=7):
        seen += [e.seq for e in batch]
        spool.ack(batch[-1].seq)
    assert seen == seqs


@pytest.mark.parametrize(
    "bad",
    [
        {"price": Decimal("1.5")},
        {"x": math.nan},
        {"x": math.inf},
        {"x": (1, 2)},
        {1: "int key"},
        {"x": {1, 2}},
        {"x": b"bytes"},
        ["not", "a", "dict"],
    ],
    ids=["decimal", "nan", "inf", "tuple", "int-key", "set", "bytes", "list"],
)
def test_non_json_records_are_rejected_before_writing(tmp_path: Path, bad: Any) -> None:
    spool = Spool(tmp_path, BIG)
    with pytest.raises(TypeError):
        spool.append(bad)
    assert _segments(tmp_path) == [] and len(spool) == 0
    assert spool.append({"ok": True}) == 1  # the rejected record used no number


def test_circular_record_is_rejected(tmp_path: Path) -> None:
    record: dict[str, Any] = {}
    record["self"] = record
    with pytest.raises(TypeError):
        Spool(tmp_path, BIG).append(record)


def test_unicode_newlines_and_lone_surrogates_round_trip(tmp_path: Path) -> None:
    record = {"t": "a\nb\r\x00\x1f\u2028\u0085 é 🚀", "s": "\ud800x", "k\n": ["\udfff"]}
    spool = Spool(tmp_path, BIG)
    spool.append(record)
    assert Spool(tmp_path, BIG).pending() == [SpoolEntry(1, record)]
    assert len(_segments(tmp_path)[0].read_bytes().splitlines()) == 1


# --------------------------------------------------------------------------- torn and corrupt lines


@pytest.mark.parametrize(
    "garbage",
    [
        b'3f2a00c1 3 {"exec_id":"e',  # crash mid-write: no newline
        b'00000000 3 {"exec_id":"e2"}\n',  # complete line, bad crc
        b"\x00" * 300,  # file extended with zeros by the crash
    ],
    ids=["no-newline", "bad-crc", "zeros"],
)
def test_torn_last_line_is_ignored_reported_and_next_append_is_clean(
    tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, BIG)
    for i in range(2):
        spool.append(_fill(i))
    spool.close()
    with _segments(tmp_path)[-1].open("ab") as f:
        f.write(garbage)

    with caplog.at_level(logging.WARNING, logger="alpha_models.spool"):
        restarted = Spool(tmp_path, BIG)
        assert [e.record for e in restarted.pending()] == [_fill(0), _fill(1)]
    assert "torn or corrupt last line" in caplog.text
    assert restarted.stats().corrupt_lines == 1
    assert garbage in (tmp_path / QUARANTINE_FILE).read_bytes()  # moved aside, not dropped

    assert restarted.append(_fill(2)) == 3
    again = Spool(tmp_path, BIG)
    assert [e.record for e in again.pending()] == [_fill(0), _fill(1), _fill(2)]
    assert again.stats().corrupt_lines == 0


def test_torn_tail_written_behind_an_open_spool_is_truncated_before_append(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, BIG)
    spool.append(_fill(0))
    with _segments(tmp_path)[-1].open("ab") as f:
        f.write(b"deadbeef 2 {")  # another process died mid-write
    assert spool.append(_fill(1)) == 2
    assert [e.record for e in Spool(tmp_path, BIG).pending()] == [_fill(0), _fill(1)]
    assert spool.stats().corrupt_lines == 1


def test_corrupt_middle_line_is_quarantined_and_the_rest_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, BIG)
    for i in range(3):
        spool.append(_fill(i))
    spool.close()
    seg = _segments(tmp_path)[0]
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"e1", b"E1")  # bit rot: the crc no longer matches
    seg.write_bytes(b"".join(lines))

    with caplog.at_level(logging.WARNING, logger="alpha_models.spool"):
        restarted = Spool(tmp_path, BIG)
    assert "corrupt line" in caplog.text
    assert _records(restarted) == [(1, _fill(0)), (3, _fill(2))]
    stats = restarted.stats()
    assert (stats.pending_count, stats.corrupt_lines) == (2, 1)
    assert lines[1] in (tmp_path / QUARANTINE_FILE).read_bytes()
    header = json.loads((tmp_path / QUARANTINE_FILE).read_bytes().splitlines()[0])
    assert header["segment"] == seg.name and header["lines"] == 1
    assert [p.name for p in _segments(tmp_path)] == [seg.name.replace("-000000.", "-000001.")]
    assert restarted.append(_fill(3)) == 4
    assert [e.seq for e in Spool(tmp_path, BIG).pending()] == [1, 3, 4]


def test_interrupted_rewrite_leftovers_are_resolved(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    for i in range(3):
        spool.append(_fill(i))
    spool.close()
    old = _segments(tmp_path)[0]
    # A crash after the new generation was renamed into place, before the old was removed,
    # and one before a temp file was renamed.
    newer = old.with_name(old.name.replace("-000000.", "-000001."))
    newer.write_bytes(b"".join(old.read_bytes().splitlines(keepends=True)[1:]))
    (tmp_path / (old.name.replace("-000000.", "-000002.") + ".tmp")).write_bytes(b"partial")
    restarted = Spool(tmp_path, BIG)
    assert [e.seq for e in restarted.pending()] == [2, 3]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("seg-")] == [newer.name]


def test_a_repeated_line_is_quarantined_not_delivered_twice(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    for i in range(3):
        spool.append(_fill(i))
    spool.close()
    seg = _segments(tmp_path)[0]
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join([*lines, lines[1], *lines]))  # e.g. a backup pasted back
    restarted = Spool(tmp_path, BIG)
    assert [e.seq for e in restarted.pending()] == [1, 2, 3]
    assert restarted.stats().corrupt_lines == 4
    assert restarted.stats().quarantined_bytes > 4 * len(lines[0])
    assert restarted.append({"next": 1}) == 4


def test_on_disk_framing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    spool.append({"b": "é\n", "a": [1, 2.5, None, True]})
    spool.ack(1)
    spool.append({"x": 1})
    line = _segments(tmp_path)[0].read_bytes()
    crc, rest = line.rstrip(b"\n").split(b" ", 1)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert int(crc, 16) == zlib.crc32(rest) and len(crc) == 8
    assert rest == b'2 {"x":1}'
    assert (tmp_path / "ack").read_bytes() == b"%08x 1\n" % zlib.crc32(b"1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ack",
        "lock",
        "seg-00000000000000000002-000000.log",
    ]


def test_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHA_SPOOL_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("ALPHA_SPOOL_MAX_BYTES", "12345")
    with Spool.from_settings(Settings()) as spool:
        assert spool.directory == tmp_path / "s" and spool.max_bytes == 12345
        assert spool.append({"a": 1}) == 1


def test_a_deleted_lock_file_is_recreated(tmp_path: Path) -> None:
    a, b = Spool(tmp_path, BIG), Spool(tmp_path, BIG)
    (tmp_path / "lock").unlink()
    a.append({"a": 1})
    b.append({"b": 1})
    assert (tmp_path / "lock").exists()
    assert [e.seq for e in a.pending()] == [1, 2]


def test_an_empty_spool_is_still_truthy(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    assert len(spool) == 0 and bool(spool)
    assert (spool or None) is spool


def test_closed_spool_refuses_work(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    spool.close()
    spool.close()
    with pytest.raises(ValueError, match="closed"):
        spool.append({"a": 1})


def test_corrupt_ack_file_is_loud(tmp_path: Path) -> None:
    Spool(tmp_path, BIG).append({"a": 1})
    (tmp_path / "ack").write_bytes(b"garbage\n")
    with pytest.raises(AlphaModelsError, match="ack file"):
        Spool(tmp_path, BIG)


# --------------------------------------------------------------------------- limits and I/O errors


def test_spool_full_is_loud_and_writes_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1000)
    while True:
        try:
            spool.append(_fill(len(spool)))
        except SpoolFullError as exc:
            message = str(exc)
            break
    used = spool.bytes_used()
    assert used <= 1000
    assert f"{used} bytes used" in message and "limit of 1000 bytes" in message
    before = _segments(tmp_path)[0].read_bytes()
    count = len(spool)
    with pytest.raises(SpoolFullError):
        spool.append(_fill(99))
    assert _segments(tmp_path)[0].read_bytes() == before and len(spool) == count
    assert Spool(tmp_path, 1000).stats().pending_count == count


def test_a_full_spool_reclaims_acknowledged_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1000, segment_bytes=10_000)  # one segment, partly acknowledged
    seqs: list[int] = []
    with pytest.raises(SpoolFullError):
        while True:
            seqs.append(spool.append(_fill(len(seqs))))
    spool.ack(seqs[len(seqs) // 2])
    new = spool.append(_fill(99))  # fits once the acknowledged prefix is dropped
    assert [e.seq for e in spool.pending()] == [*seqs[len(seqs) // 2 + 1 :], new]
    assert spool.bytes_used() <= 1000
    assert [e.seq for e in Spool(tmp_path, 1000).pending()] == [*seqs[len(seqs) // 2 + 1 :], new]


def test_record_larger_than_the_limit(tmp_path: Path) -> None:
    with pytest.raises(SpoolFullError, match="limit of 100 bytes"):
        Spool(tmp_path, 100).append({"x": "y" * 200})
    assert _segments(tmp_path) == []


@pytest.mark.parametrize(
    ("code", "error"), [(errno.EIO, AlphaModelsError), (errno.ENOSPC, SpoolFullError)]
)
def test_failed_fsync_leaves_no_partial_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, error: type[Exception]
) -> None:
    spool = Spool(tmp_path, BIG)
    spool.append(_fill(0))
    size = _segments(tmp_path)[0].stat().st_size

    def failing_fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(error):
        spool.append(_fill(1))
    monkeypatch.undo()
    assert _segments(tmp_path)[0].stat().st_size == size
    assert spool.append(_fill(2)) == 2
    assert [e.record for e in Spool(tmp_path, BIG).pending()] == [_fill(0), _fill(2)]


# --------------------------------------------------------------------------- replay


def test_replay_stops_at_the_first_failure_and_resumes_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    seqs = [spool.append(_fill(i)) for i in range(10)]
    delivered: list[int] = []

    def flaky(entry: SpoolEntry) -> None:
        if entry.seq == seqs[4]:
            raise ConnectionError("database down again")
        delivered.append(entry.seq)

    with pytest.raises(ConnectionError):
        spool.replay(flaky, batch=3)
    assert delivered == seqs[:4]
    assert [e.seq for e in Spool(tmp_path, BIG).pending()] == seqs[4:]  # durable ack

    second = Spool(tmp_path, BIG)
    assert second.replay(lambda e: delivered.append(e.seq)) == 6
    assert delivered == seqs and second.pending() == []
    assert second.replay(lambda e: delivered.append(e.seq)) == 0


def test_replay_failing_on_the_first_record_acks_nothing(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    spool.append({"a": 1})

    def fail(entry: SpoolEntry) -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        spool.replay(fail)
    assert spool.stats().acked_seq == 0 and len(spool) == 1


def test_replay_is_exclusive(tmp_path: Path) -> None:
    spool, other = Spool(tmp_path, BIG), Spool(tmp_path, BIG)
    for i in range(3):
        spool.append(_fill(i))
    nested: list[int] = []

    def deliver(entry: SpoolEntry) -> None:
        nested.append(other.replay(lambda e: None))  # another "process" tries meanwhile
        nested.append(spool.replay(lambda e: None))  # and another thread of this one

    assert spool.replay(deliver) == 3
    assert nested == [0] * 6


def test_threads_appending_to_one_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)

    def work(tag: int) -> None:
        for i in range(50):
            spool.append({"t": tag, "i": i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = spool.pending()
    assert [e.seq for e in entries] == list(range(1, 201))
    for tag in range(4):
        assert [e.record["i"] for e in entries if e.record["t"] == tag] == list(range(50))


# --------------------------------------------------------------------------- several processes


def _append_worker(directory: str, tag: int, count: int, start: Any) -> None:
    start.wait()
    with Spool(Path(directory), BIG, segment_bytes=16 * 1024) as spool:
        for i in range(count):
            spool.append({"p": tag, "i": i, "pad": "x" * 40})


def _replay_worker(directory: str, log: str, start: Any) -> None:
    start.wait()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def deliver(entry: SpoolEntry) -> None:
        os.write(fd, f"{os.getpid()} {entry.seq}\n".encode())
        time.sleep(0.0002)

    with Spool(Path(directory), BIG) as spool:
        deadline = time.monotonic() + 60
        while len(spool) and time.monotonic() < deadline:
            if spool.replay(deliver, batch=7) == 0:
                time.sleep(0.001)
    os.close(fd)


def _run(ctx: Any, target: Callable[..., None], args_list: list[tuple[Any, ...]]) -> None:
    start = ctx.Event()
    procs = [ctx.Process(target=target, args=(*args, start)) for args in args_list]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_two_processes_append_to_one_directory(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    _run(ctx, _append_worker, [(str(tmp_path), 0, 500), (str(tmp_path), 1, 500)])
    entries = Spool(tmp_path, BIG).pending()
    assert [e.seq for e in entries] == list(range(1, 1001))
    for tag in (0, 1):
        assert [e.record["i"] for e in entries if e.record["p"] == tag] == list(range(500))


def test_concurrent_replays_deliver_each_record_once_in_order(tmp_path: Path) -> None:
    spool_dir, log = tmp_path / "spool", tmp_path / "delivered.log"
    spool = Spool(spool_dir, BIG)
    for i in range(200):
        spool.append({"i": i})
    ctx = multiprocessing.get_context("spawn")
    _run(ctx, _replay_worker, [(str(spool_dir), str(log)), (str(spool_dir), str(log))])
    seqs = [int(line.split()[1]) for line in log.read_text().splitlines()]
    assert seqs == list(range(1, 201))  # each once, and in order across both processes
    assert len(spool) == 0


def test_forked_children_use_an_inherited_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path, BIG)
    spool.append({"p": -1, "i": -1})

    def child(tag: int) -> None:
        for i in range(100):
            spool.append({"p": tag, "i": i})

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=child, args=(t,)) for t in range(2)]
    for p in procs:
        p.start()
    for i in range(100):
        spool.append({"p": 9, "i": i})
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    entries = spool.pending()
    assert [e.seq for e in entries] == list(range(1, 302))
    for tag in (0, 1, 9):
        assert [e.record["i"] for e in entries if e.record["p"] == tag] == list(range(100))


# --------------------------------------------------------------------------- properties

_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_record_values = st.dictionaries(_text, _json, max_size=5)


def _exact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(_record_values, max_size=6))
def test_any_json_records_round_trip_exactly(records: list[dict[str, Any]]) -> None:
    directory = Path(tempfile.mkdtemp(prefix="spool-prop-"))
    try:
        with Spool(directory, BIG) as spool:
            seqs = [spool.append(r) for r in records]
        with Spool(directory, BIG) as spool:
            entries = spool.pending()
        assert [e.seq for e in entries] == seqs == list(range(1, len(records) + 1))
        assert [e.record for e in entries] == records
        assert [_exact(e.record) for e in entries] == [_exact(r) for r in records]  # -0.0, order
    finally:
        shutil.rmtree(directory)


class SpoolModel(RuleBasedStateMachine):
    """Appends, acks, restarts, failing replays and crash debris against a list model."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="spool-model-"))
        self.spool = Spool(self.directory, BIG, segment_bytes=400)
        self.model: list[tuple[int, dict[str, Any]]] = []
        self.last_seq = 0

    @rule(record=_record_values)
    def append(self, record: dict[str, Any]) -> None:
        seq = self.spool.append(record)
        assert seq > self.last_seq
        self.last_seq = seq
        self.model.append((seq, record))

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.model) - 1))
        self.spool.ack(self.model[i][0])
        del self.model[: i + 1]

    @rule(fail_after=st.integers(0, 5), batch=st.integers(1, 4))
    def replay(self, fail_after: int, batch: int) -> None:
        delivered: list[SpoolEntry] = []

        def deliver(entry: SpoolEntry) -> None:
            if len(delivered) == fail_after:
                raise ConnectionError
            delivered.append(entry)

        try:
            count = self.spool.replay(deliver, batch=batch)
            assert count == len(delivered)
        except ConnectionError:
            pass
        assert [(e.seq, e.record) for e in delivered] == self.model[: len(delivered)]
        del self.model[: len(delivered)]

    @rule()
    def restart(self) -> None:
        self.spool.close()
        self.spool = Spool(self.directory, BIG, segment_bytes=400)

    @rule(garbage=st.binary(min_size=1, max_size=40), which=st.integers(0, 3))
    def crash_debris(self, garbage: bytes, which: int) -> None:
        segments = _segments(self.directory)
        if segments:
            with segments[-1 - which % len(segments)].open("ab") as f:
                f.write(garbage)

    @invariant()
    def pending_matches_model(self) -> None:
        assert _records(self.spool) == self.model
        assert len(self.spool) == len(self.model)
        stats = self.spool.stats()
        assert stats.oldest_seq == (self.model[0][0] if self.model else None)
        assert stats.newest_seq == (self.model[-1][0] if self.model else None)

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.directory)


SpoolModel.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_spool_model = SpoolModel.TestCase
