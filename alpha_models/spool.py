"""Durable local spool (outbox) for events that could not reach PostgreSQL.

When the database is down the write path calls :meth:`Spool.append` for each event (a
JSON-serialisable ``dict``; the caller serialises fills/orders, ``Decimal`` -> ``str``). The
call returns a sequence number only once the record is on disk. Later :meth:`Spool.replay`
(or :meth:`Spool.pending` + :meth:`Spool.ack`) hands the records back *in append order*; the
database de-duplicates on its idempotent keys, so the spool guarantees **at-least-once, in
order, never loss**, and an acknowledged record is never handed out again, even after a
restart.

On-disk layout (one directory, e.g. ``Settings.spool_dir``)
-----------------------------------------------------------
``seg-<first seq, 20 digits>-<generation, 6 digits>.log``
    Segment files holding the records, oldest first (ordered by the two numbers). **All
    processes append to the same, last segment**, one at a time under ``lock``: this is what
    makes the sequence numbers one global order. A new segment is started when the last one
    would grow past ``segment_bytes`` (default ``max(64 KiB, max_bytes / 16)``). A segment
    is only ever appended to; when it has to change otherwise (a corrupt line moved aside,
    or an acknowledged prefix dropped to make room) it is rewritten under the *next
    generation* name and the old file removed, so a name always denotes one immutable
    prefix.
``ack``
    The highest acknowledged sequence number: ``<crc32 hex8> <seq>\\n``, replaced atomically
    (temp file + fsync + ``os.replace`` + fsync of the directory).
``quarantine``
    Bytes moved aside because they failed the framing check: per chunk, one JSON header line
    (time, segment, offset, length, lines, reason) followed by exactly ``length`` raw bytes
    and ``\\n``. Never read back by the spool; for an operator.
``lock``, ``replay.lock``
    Empty files for :func:`fcntl.flock`: ``lock`` serialises every read and write of the
    directory across processes; ``replay.lock`` makes :meth:`Spool.replay` exclusive.

Framing (one record = one line)::

    <crc32 of the rest, 8 lowercase hex> " " <seq, decimal> " " <compact JSON> "\\n"

JSON is ``json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``
(a record holding a lone surrogate is written with ``ensure_ascii=True`` instead, which
round-trips exactly too). JSON text never contains a raw ``\\n`` byte, so lines are found
by splitting on ``\\n``; a line is valid only if complete, well-formed and its CRC matches.

Durability argument
-------------------
* ``append`` writes the whole line with one ``write`` to the end of the segment and
  ``fsync``\\ s it (and the directory when it created the segment) before returning: a
  sequence number handed out is on disk. On any failure the file is truncated back.
* A crash mid-write leaves at most one torn line at the end of the last segment. It fails
  the framing check, is reported (``logging.warning``, ``stats().corrupt_lines``), copied
  to ``quarantine`` and truncated away under ``lock`` before anything else is appended, so
  it can never swallow a later record. Its sequence number was never handed out and is
  reused. A bad line anywhere else is copied to ``quarantine`` (fsync) before the segment
  is rewritten without it (new generation: write + fsync + rename + fsync directory, then
  unlink the old one): nothing is ever dropped without a copy.
* ``ack`` makes the acknowledgement durable (atomic replace) *before* any segment is
  removed; on open, segments whose records are all acknowledged are removed. The next
  sequence number is ``max(newest record, ack) + 1``, so numbering survives restarts even
  when every segment has been removed.

Concurrency
-----------
A :class:`threading.RLock` serialises threads of one ``Spool``; ``flock(lock)`` serialises
processes (and separate ``Spool`` objects) on the directory. Each operation first
re-synchronises its in-memory view cheaply (one ``listdir``, one ``stat`` per segment, the
small ``ack`` file; only bytes appended by *other* processes are read), so an append costs
one ``write`` + one ``fsync`` and never reads the spool. A forked child re-opens its lock
file (an inherited ``flock`` would be shared with the parent). The directory must be on a
local file system (``flock`` semantics).

Size limit: ``max_bytes`` bounds the segment files (bytes on disk). When an append would
exceed it, acknowledged bytes are reclaimed first (fully acknowledged segments removed, the
acknowledged prefix of the oldest segment dropped); if it still does not fit,
:class:`~alpha_models.errors.SpoolFullError` is raised and nothing is written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alpha_models.errors import AlphaModelsError, SpoolFullError

if TYPE_CHECKING:
    from alpha_models.settings import Settings

__all__ = ["Spool", "SpoolEntry", "SpoolStats"]

logger = logging.getLogger(__name__)

LOCK_FILE = "lock"
REPLAY_LOCK_FILE = "replay.lock"
ACK_FILE = "ack"
QUARANTINE_FILE = "quarantine"
_TMP_SUFFIX = ".tmp"
_FILE_MODE = 0o644

_SEGMENT_RE = re.compile(r"seg-([0-9]{20})-([0-9]{6,})\.log")
_LINE_RE = re.compile(rb"([0-9a-f]{8}) ([1-9][0-9]{0,18}) ")
_ACK_RE = re.compile(rb"([0-9a-f]{8}) (0|[1-9][0-9]{0,18})\n")
_READ_CHUNK = 1 << 20
_MIN_SEGMENT_BYTES = 64 * 1024
_MAX_HINTS = 8
_MAX_SYNC_RETRIES = 3


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled record and its sequence number (global append order)."""

    seq: int
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """A snapshot of the spool.

    ``bytes`` is the size of the segment files on disk (what ``max_bytes`` limits);
    ``oldest_seq``/``newest_seq`` are those of the pending records (``None`` when there is
    none); ``corrupt_lines`` counts the torn or corrupt lines this ``Spool`` object found
    (each also logged and copied to ``quarantine``, whose size is ``quarantined_bytes``).
    """

    pending_count: int
    bytes: int
    oldest_seq: int | None
    newest_seq: int | None
    corrupt_lines: int
    acked_seq: int
    quarantined_bytes: int


@dataclass
class _Segment:
    """What is known of one segment file (valid for as long as the name exists)."""

    name: str
    key: int  # sequence number in the name: ordering key and high-water mark
    gen: int
    ino: int = 0
    size: int = 0  # bytes in the file at the last look
    valid_end: int = 0  # end of the last valid line; bytes before it never change
    first: int | None = None
    last: int | None = None
    gaps: list[tuple[int, int]] = field(default_factory=list)  # missing seqs in first..last
    # seq s -> offset o: every line before o has a sequence number <= s
    hints: dict[int, int] = field(default_factory=dict)

    def pending_count(self, acked: int) -> int:
        if self.first is None or self.last is None or self.last <= acked:
            return 0
        lo = max(self.first, acked + 1)
        count = self.last - lo + 1
        for gap_lo, gap_hi in self.gaps:
            start = max(gap_lo, lo)
            if gap_hi >= start:
                count -= gap_hi - start + 1
        return count

    def oldest_pending(self, acked: int) -> int | None:
        if self.first is None or self.last is None or self.last <= acked:
            return None
        candidate = max(self.first, acked + 1)
        for gap_lo, gap_hi in self.gaps:  # ascending and disjoint
            if gap_lo <= candidate <= gap_hi:
                candidate = gap_hi + 1
        return candidate

    def hint_for(self, acked: int) -> int:
        return max((off for seq, off in self.hints.items() if seq <= acked), default=0)

    def add_hint(self, seq: int, offset: int) -> None:
        self.hints[seq] = max(offset, self.hints.get(seq, 0))
        while len(self.hints) > _MAX_HINTS:
            del self.hints[min(self.hints)]

    def add_valid(self, seq: int, end: int) -> None:
        if self.first is None or self.last is None:
            self.first = seq
        elif seq > self.last + 1:
            self.gaps.append((self.last + 1, seq - 1))
        self.last = seq
        self.valid_end = end


class _Changed(Exception):
    """A segment no longer matches what was scanned: re-synchronise and retry."""


def _segment_name(key: int, gen: int) -> str:
    return f"seg-{key:020d}-{gen:06d}.log"


def _encode(record: object) -> bytes:
    """The compact JSON of ``record``; ``TypeError`` if it is not exactly JSON-representable."""
    if not isinstance(record, dict):
        raise TypeError(f"a spool record must be a dict, not {type(record).__name__}")
    try:
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except TypeError as exc:
        raise TypeError(
            f"spool record is not JSON-serialisable: {exc} (convert Decimal, datetime, ... "
            "to str first)"
        ) from exc
    except (ValueError, RecursionError) as exc:  # NaN/inf, circular, huge int, too deep
        raise TypeError(f"spool record is not JSON-serialisable: {exc}") from exc
    try:
        payload = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escape it as \udXXX, still exact JSON
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
        payload = text.encode("ascii")
    if json.loads(text) != record:
        raise TypeError(
            "spool record does not round-trip through JSON exactly (tuples, non-str keys "
            "or keys that collide as strings); convert it to plain dict/list/str/int/float/"
            "bool/None first"
        )
    return payload


def _frame(seq: int, payload: bytes) -> bytes:
    body = b"%d %s" % (seq, payload)
    return b"%08x %s\n" % (zlib.crc32(body), body)


def _parse(line: bytes) -> tuple[int, bytes] | None:
    """``(seq, json bytes)`` of a framed line (without its newline), ``None`` if invalid."""
    match = _LINE_RE.match(line)
    if match is None or zlib.crc32(memoryview(line)[9:]) != int(match[1], 16):
        return None
    return int(match[2]), line[match.end() :]


def _iter_lines(fd: int, start: int, end: int) -> Iterator[tuple[int, int, bytes, bool]]:
    """``(offset, end offset, line without newline, complete)`` for the lines of fd[start:end]."""
    pos = start
    buf = b""
    buf_start = start
    while pos < end:
        data = os.pread(fd, min(_READ_CHUNK, end - pos), pos)
        if not data:
            break
        pos += len(data)
        buf = buf + data if buf else data
        i = 0
        while (j := buf.find(b"\n", i)) >= 0:
            yield buf_start + i, buf_start + j + 1, buf[i:j], True
            i = j + 1
        buf = buf[i:]
        buf_start += i
    if buf:
        yield buf_start, buf_start + len(buf), buf, False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file_durably(path: str, data: bytes) -> None:
    """Write ``data`` to a new ``path`` and fsync it (the caller fsyncs the directory)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A durable, ordered, multi-process-safe outbox in ``directory`` (see module docstring).

    ``max_bytes`` limits the segment files; ``segment_bytes`` (keyword-only) is the size at
    which a new segment is started. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self, directory: Path | str, max_bytes: int, *, segment_bytes: int | None = None
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        if segment_bytes is None:
            segment_bytes = max(_MIN_SEGMENT_BYTES, -(-max_bytes // 16))
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be > 0, got {segment_bytes}")
        self._dir = Path(directory)
        self._dir_str = str(self._dir)
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._lock = threading.RLock()
        self._replay_tlock = threading.Lock()
        self._pid = os.getpid()
        self._lock_fd = -1
        self._active_fd = -1
        self._active_name: str | None = None
        self._segments: list[_Segment] = []
        self._acked = 0
        self._next_seq = 1
        self._corrupt_lines = 0
        self._closed = False
        with self._translate("open"):
            if not self._dir.is_dir():
                self._dir.mkdir(parents=True, exist_ok=True)
                _fsync_dir(self._dir.parent)
            self._lock_fd = self._open_lock_file(LOCK_FILE)
        with self._locked("open"):
            self._sync()
            self._drop_acked()

    @classmethod
    def from_settings(cls, settings: Settings) -> Spool:
        """The spool configured by ``ALPHA_SPOOL_DIR`` / ``ALPHA_SPOOL_MAX_BYTES``."""
        return cls(settings.spool_dir, settings.spool_max_bytes)

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def __repr__(self) -> str:
        return f"Spool({str(self._dir)!r}, max_bytes={self._max_bytes})"

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Raw descriptors are not closed by the garbage collector; closing one inherited
        # over fork never unlocks the parent (no LOCK_UN here).
        for name in ("_active_fd", "_lock_fd"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def close(self) -> None:
        """Release the file descriptors (idempotent); the spool cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self._close_active()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    # ------------------------------------------------------------------ public operations

    def append(self, record: dict[str, Any]) -> int:
        """Store ``record`` durably; return its sequence number (strictly increasing).

        ``TypeError`` if it is not exactly JSON-representable, :class:`SpoolFullError` if it
        does not fit in ``max_bytes``; in both cases nothing is written.
        """
        payload = _encode(record)
        with self._locked("append"):
            self._sync()
            seq = self._next_seq
            line = _frame(seq, payload)
            if self._bytes() + len(line) > self._max_bytes:
                self._reclaim()
                used = self._bytes()
                if used + len(line) > self._max_bytes:
                    message = (
                        f"spool {self._dir} is full: {used} bytes used, a {len(line)}-byte "
                        f"record would exceed the limit of {self._max_bytes} bytes "
                        f"({self._pending_count()} records pending); the record was NOT "
                        "stored"
                    )
                    logger.error(message)
                    raise SpoolFullError(message)
            self._write_record(seq, line)
            return seq

    def pending(self, limit: int | None = None) -> list[SpoolEntry]:
        """Unacknowledged records in append order (at most ``limit``)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        with self._locked("pending"):
            for _ in range(_MAX_SYNC_RETRIES):
                self._sync()
                try:
                    return self._read_pending(limit)
                except _Changed as exc:
                    logger.warning("spool %s: %s; re-scanning", self._dir, exc)
            raise AlphaModelsError(f"spool {self._dir}: segments keep changing while read")

    def ack(self, seq: int) -> None:
        """Mark every record with sequence number <= ``seq`` delivered (durably).

        Acknowledging less than what is already acknowledged is a no-op; acknowledging a
        number that was never handed out is a ``ValueError``. Segments whose records are
        all acknowledged are removed.
        """
        with self._locked("ack"):
            self._sync()
            if seq > self._acked:
                newest = self._next_seq - 1
                if seq > newest:
                    raise ValueError(f"cannot ack {seq}: the newest sequence number is {newest}")
                self._write_ack(seq)
                self._acked = seq
            self._drop_acked()

    def replay(self, deliver: Callable[[SpoolEntry], None], batch: int = 500) -> int:
        """Deliver pending records in order; return how many were delivered.

        Exclusive across threads and processes: if another replay is running, return 0 at
        once. Records are read ``batch`` at a time and acknowledged after each batch; at the
        first exception from ``deliver`` what succeeded is acknowledged and the exception
        re-raised (the failed record and all after it stay pending, in order).
        """
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self._check_fork()
        if not self._replay_tlock.acquire(blocking=False):
            return 0
        try:
            with self._translate("replay"):
                fd = self._open_lock_file(REPLAY_LOCK_FILE)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return 0
                try:
                    return self._replay_locked(deliver, batch)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        finally:
            self._replay_tlock.release()

    def stats(self) -> SpoolStats:
        """Counts and sizes (see :class:`SpoolStats`); reads no record."""
        with self._locked("stats"):
            self._sync()
            acked = self._acked
            oldest = next(
                (s for s in (g.oldest_pending(acked) for g in self._segments) if s is not None),
                None,
            )
            newest = next(
                (g.last for g in reversed(self._segments) if g.last is not None and g.last > acked),
                None,
            )
            try:
                quarantined = os.stat(self._path(QUARANTINE_FILE)).st_size
            except FileNotFoundError:
                quarantined = 0
            return SpoolStats(
                pending_count=self._pending_count(),
                bytes=self._bytes(),
                oldest_seq=oldest,
                newest_seq=newest,
                corrupt_lines=self._corrupt_lines,
                acked_seq=acked,
                quarantined_bytes=quarantined,
            )

    def __len__(self) -> int:
        with self._locked("len"):
            self._sync()
            return self._pending_count()

    def __bool__(self) -> bool:
        # Always true, even when empty: ``spool or Spool(...)`` must not replace a spool
        # just because nothing is pending.
        return True

    def bytes_used(self) -> int:
        """Bytes of the segment files on disk (what ``max_bytes`` limits)."""
        with self._locked("bytes_used"):
            self._sync()
            return self._bytes()

    # ------------------------------------------------------------------ locking and errors

    @contextlib.contextmanager
    def _translate(self, op: str) -> Iterator[None]:
        """OS errors become package errors (a full disk is a full spool)."""
        try:
            yield
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFullError(
                    f"spool {self._dir}: {op}: the disk is full ({exc.strerror}) with "
                    f"{self._bytes()} bytes used of the {self._max_bytes}-byte limit; "
                    "nothing was stored"
                ) from exc
            raise AlphaModelsError(f"spool {self._dir}: {op} failed: {exc}") from exc

    def _check_fork(self) -> None:
        if os.getpid() == self._pid:
            return
        # A forked child shares the parent's open file descriptions, hence its flock: take
        # fresh ones. Never LOCK_UN an inherited descriptor (that would unlock the parent).
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._replay_tlock = threading.Lock()
        for fd in (self._active_fd, self._lock_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._active_fd, self._active_name, self._lock_fd = -1, None, -1
        if not self._closed:
            with self._translate("open after fork"):
                self._lock_fd = self._open_lock_file(LOCK_FILE)

    @contextlib.contextmanager
    def _locked(self, op: str) -> Iterator[None]:
        self._check_fork()
        with self._lock:
            if self._closed:
                raise ValueError(f"{self!r} is closed")
            with self._translate(op):
                self._flock()
                try:
                    yield
                finally:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _flock(self) -> None:
        """Lock ``lock``; if the file was deleted or replaced, lock the current one instead."""
        while True:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                current = os.stat(self._path(LOCK_FILE)).st_ino
            except FileNotFoundError:
                current = -1
            if current == os.fstat(self._lock_fd).st_ino:
                return
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1
            self._lock_fd = self._open_lock_file(LOCK_FILE)

    def _open_lock_file(self, name: str) -> int:
        path = self._path(name)
        existed = os.path.exists(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        if not existed:
            _fsync_dir(self._dir)
        return fd

    # ------------------------------------------------------------------ in-memory view

    def _path(self, name: str) -> str:
        return os.path.join(self._dir_str, name)

    def _bytes(self) -> int:
        return sum(seg.size for seg in self._segments)

    def _pending_count(self) -> int:
        return sum(seg.pending_count(self._acked) for seg in self._segments)

    def _close_active(self) -> None:
        if self._active_fd >= 0:
            os.close(self._active_fd)
        self._active_fd, self._active_name = -1, None

    def _read_ack(self) -> int:
        try:
            fd = os.open(self._path(ACK_FILE), os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            data = os.read(fd, 64)  # a valid one has at most 29 bytes
        finally:
            os.close(fd)
        match = _ACK_RE.fullmatch(data)
        if match is None or zlib.crc32(match[2]) != int(match[1], 16):
            # Never guess: 0 would re-deliver and could reuse sequence numbers.
            raise AlphaModelsError(
                f"spool {self._dir}: the ack file {ACK_FILE!r} is corrupt ({data[:40]!r}); "
                "repair it by hand"
            )
        return int(match[2])

    def _write_ack(self, seq: int) -> None:
        digits = b"%d" % seq
        tmp = self._path(ACK_FILE + _TMP_SUFFIX)
        _write_file_durably(tmp, b"%08x %s\n" % (zlib.crc32(digits), digits))
        os.replace(tmp, self._path(ACK_FILE))
        _fsync_dir(self._dir)

    def _sync(self) -> None:
        """Bring the in-memory view up to date with the directory (under ``lock``)."""
        self._acked = self._read_ack()
        chosen: dict[int, tuple[int, str]] = {}
        obsolete: list[str] = []
        for name in os.listdir(self._dir):
            if name == ACK_FILE + _TMP_SUFFIX or (
                name.endswith(_TMP_SUFFIX) and _SEGMENT_RE.fullmatch(name[: -len(_TMP_SUFFIX)])
            ):  # left by a crash during an ack or a rewrite
                obsolete.append(name)
                continue
            match = _SEGMENT_RE.fullmatch(name)
            if match is None:
                continue
            key, gen = int(match[1]), int(match[2])
            previous = chosen.get(key)
            if previous is None or gen > previous[0]:
                if previous is not None:
                    obsolete.append(previous[1])
                chosen[key] = (gen, name)
            else:
                obsolete.append(name)
        if obsolete:
            # A lower generation next to a higher one: the rewrite that made the higher one
            # was complete (it is renamed into place only after its fsync) but was
            # interrupted before the old file was removed.
            for name in obsolete:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(name))
            _fsync_dir(self._dir)
        known = {seg.name: seg for seg in self._segments}
        segments: list[_Segment] = []
        for key in sorted(chosen):
            gen, name = chosen[key]
            try:
                st = os.stat(self._path(name))
            except FileNotFoundError:  # removed behind the lock's back: nothing to read
                continue
            seg = known.get(name)
            if seg is None or st.st_ino != seg.ino or st.st_size < seg.valid_end:
                seg = self._scan(_Segment(name, key, gen, ino=st.st_ino), 0)
            elif st.st_size != seg.valid_end or seg.size != st.st_size:
                seg = self._scan(seg, seg.valid_end)
            if seg is not None:
                segments.append(seg)
        self._segments = segments
        if self._active_name is not None and all(s.name != self._active_name for s in segments):
            self._close_active()
        highest = max(
            [self._next_seq, self._acked + 1]
            + [seg.last + 1 for seg in segments if seg.last is not None]
            + [seg.key for seg in segments]
        )
        self._next_seq = highest

    def _scan(self, seg: _Segment, start: int) -> _Segment | None:
        """Read ``seg`` from ``start`` (a line boundary); repair what fails the framing."""
        fd = os.open(self._path(seg.name), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            bad: list[tuple[int, int, int]] = []  # (start, end, lines), merged when adjacent
            for off, end, content, complete in _iter_lines(fd, start, size):
                parsed = _parse(content) if complete else None
                if parsed is not None and seg.last is not None and parsed[0] <= seg.last:
                    parsed = None  # out of order: never hand a number out twice
                if parsed is None:
                    if bad and bad[-1][1] == off:
                        bad[-1] = (bad[-1][0], end, bad[-1][2] + 1)
                    else:
                        bad.append((off, end, 1))
                    continue
                if start == 0 and parsed[0] > self._acked and not seg.hints:
                    seg.add_hint(self._acked, off)
                seg.add_valid(parsed[0], end)
            seg.size = size
            if bad:
                return self._repair(seg, fd, bad)
            return seg
        finally:
            os.close(fd)

    def _repair(self, seg: _Segment, fd: int, bad: list[tuple[int, int, int]]) -> _Segment | None:
        lines = sum(n for _, _, n in bad)
        if len(bad) == 1 and bad[0][0] == seg.valid_end and bad[0][1] == seg.size:
            self._corrupt_lines += lines
            chunks = [(off, os.pread(fd, end - off, off), n) for off, end, n in bad]
            logger.warning(
                "spool %s: torn or corrupt last line in %s at offset %d (%d bytes, %d "
                "line(s)): ignored, copied to %s and truncated",
                self._dir,
                seg.name,
                bad[0][0],
                bad[0][1] - bad[0][0],
                lines,
                QUARANTINE_FILE,
            )
            self._quarantine(seg.name, chunks, "torn or corrupt last line")
            wfd = os.open(self._path(seg.name), os.O_WRONLY)
            try:
                os.ftruncate(wfd, seg.valid_end)
                os.fsync(wfd)
            finally:
                os.close(wfd)
            seg.size = seg.valid_end
            return seg
        logger.warning(
            "spool %s: %d corrupt line(s) inside %s (offsets %s): moved to %s",
            self._dir,
            lines,
            seg.name,
            ", ".join(str(off) for off, _, _ in bad),
            QUARANTINE_FILE,
        )
        return self._rewrite(seg, drop_upto=0, reason="corrupt line")

    def _quarantine(self, segment: str, chunks: list[tuple[int, bytes, int]], reason: str) -> None:
        path = self._path(QUARANTINE_FILE)
        existed = os.path.exists(path)
        now = datetime.now(UTC).isoformat()
        parts: list[bytes] = []
        for off, data, lines in chunks:
            header = {
                "at": now,
                "segment": segment,
                "offset": off,
                "length": len(data),
                "lines": lines,
                "reason": reason,
            }
            parts += [json.dumps(header, separators=(",", ":")).encode(), b"\n", data, b"\n"]
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _FILE_MODE)
        try:
            _write_all(fd, b"".join(parts))
            os.fsync(fd)
        finally:
            os.close(fd)
        if not existed:
            _fsync_dir(self._dir)

    def _rewrite(self, seg: _Segment, drop_upto: int, reason: str) -> _Segment | None:
        """Rewrite ``seg`` as the next generation without records <= ``drop_upto`` and
        without invalid lines (copied to quarantine first); ``None`` if nothing is left."""
        old_path = self._path(seg.name)
        new = _Segment(_segment_name(seg.key, seg.gen + 1), seg.key, seg.gen + 1)
        keep: list[bytes] = []
        bad: list[tuple[int, bytes, int]] = []
        fd = os.open(old_path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            prev: int | None = None
            bad_end = -1
            for off, end, content, complete in _iter_lines(fd, 0, size):
                parsed = _parse(content) if complete else None
                if parsed is not None and prev is not None and parsed[0] <= prev:
                    parsed = None
                if parsed is None:
                    raw = content + b"\n" if complete else content
                    if bad and bad_end == off:
                        last_off, last_data, last_n = bad[-1]
                        bad[-1] = (last_off, last_data + raw, last_n + 1)
                    else:
                        bad.append((off, raw, 1))
                    bad_end = end
                    continue
                prev = parsed[0]
                if parsed[0] <= drop_upto:
                    continue
                keep.append(content + b"\n")
                new.add_valid(parsed[0], new.valid_end + len(content) + 1)
        finally:
            os.close(fd)
        if bad:
            self._corrupt_lines += sum(n for _, _, n in bad)
            self._quarantine(seg.name, bad, reason)  # durable before the original goes
        if self._active_name == seg.name:
            self._close_active()
        result: _Segment | None = None
        if keep:
            new_path = self._path(new.name)
            tmp = self._path(new.name + _TMP_SUFFIX)
            _write_file_durably(tmp, b"".join(keep))
            os.rename(tmp, new_path)
            _fsync_dir(self._dir)
            new.size = new.valid_end
            new.ino = os.stat(new_path).st_ino
            result = new
        os.unlink(old_path)
        _fsync_dir(self._dir)
        return result

    def _drop_acked(self) -> None:
        """Remove the segments whose records are all acknowledged (or that hold none)."""
        keep: list[_Segment] = []
        removed = False
        for seg in self._segments:
            if seg.last is None or seg.last <= self._acked:
                if self._active_name == seg.name:
                    self._close_active()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(seg.name))
                removed = True
            else:
                keep.append(seg)
        self._segments = keep
        if removed:
            _fsync_dir(self._dir)

    def _reclaim(self) -> None:
        """Free acknowledged bytes: drop acknowledged segments and the oldest one's prefix."""
        self._drop_acked()
        if self._segments:
            oldest = self._segments[0]
            if oldest.first is not None and oldest.first <= self._acked:
                rewritten = self._rewrite(oldest, drop_upto=self._acked, reason="corrupt line")
                self._segments[0:1] = [rewritten] if rewritten is not None else []

    # ------------------------------------------------------------------ append / read

    def _write_record(self, seq: int, line: bytes) -> None:
        seg = self._segments[-1] if self._segments else None
        if seg is not None and seg.size > 0 and seg.size + len(line) > self._segment_bytes:
            seg = None  # start a new segment
        created = False
        if seg is None:
            seg = _Segment(_segment_name(seq, 0), seq, 0)
            self._close_active()
            self._active_fd = os.open(
                self._path(seg.name), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, _FILE_MODE
            )
            self._active_name = seg.name
            seg.ino = os.fstat(self._active_fd).st_ino
            self._segments.append(seg)
            created = True
        elif (
            self._active_name != seg.name
            or self._active_fd < 0
            or os.fstat(self._active_fd).st_ino != seg.ino
        ):
            self._close_active()
            self._active_fd = os.open(self._path(seg.name), os.O_WRONLY | os.O_APPEND)
            self._active_name = seg.name
        before = seg.size
        try:
            _write_all(self._active_fd, line)
            os.fsync(self._active_fd)
            if created:
                _fsync_dir(self._dir)
        except BaseException:
            with contextlib.suppress(OSError):  # leave no torn line behind
                os.ftruncate(self._active_fd, before)
                os.fsync(self._active_fd)
            raise
        seg.size = before + len(line)
        seg.add_valid(seq, seg.size)
        self._next_seq = seq + 1

    def _read_pending(self, limit: int | None) -> list[SpoolEntry]:
        out: list[SpoolEntry] = []
        if limit == 0:
            return out
        acked = self._acked
        for seg in self._segments:
            if seg.last is None or seg.last <= acked:
                continue
            fd = os.open(self._path(seg.name), os.O_RDONLY)
            try:
                first = True
                for off, end, content, complete in _iter_lines(
                    fd, seg.hint_for(acked), seg.valid_end
                ):
                    parsed = _parse(content) if complete else None
                    if parsed is None:
                        # Validated when scanned: the file changed under us. Forget it so
                        # that the next sync scans (and repairs) it from the start.
                        self._segments = [s for s in self._segments if s is not seg]
                        raise _Changed(f"{seg.name} changed at offset {off}")
                    seq, payload = parsed
                    if seq <= acked:
                        continue
                    if first:
                        seg.add_hint(acked, off)
                        first = False
                    try:
                        record = json.loads(payload)
                    except ValueError:
                        record = None
                    if not isinstance(record, dict):
                        raise AlphaModelsError(
                            f"spool {self._dir}: record {seq} in {seg.name} passed its CRC "
                            "but is not a JSON object"
                        )
                    out.append(SpoolEntry(seq, record))
                    if limit is not None and len(out) >= limit:
                        seg.add_hint(seq, end)
                        return out
            finally:
                os.close(fd)
        return out

    def _replay_locked(self, deliver: Callable[[SpoolEntry], None], batch: int) -> int:
        delivered = 0
        while True:
            entries = self.pending(batch)
            if not entries:
                return delivered
            done: int | None = None
            for entry in entries:
                try:
                    deliver(entry)
                except BaseException:
                    if done is not None:
                        self.ack(done)
                    raise
                done = entry.seq
                delivered += 1
            self.ack(entries[-1].seq)
