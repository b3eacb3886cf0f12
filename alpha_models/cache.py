"""The Redis live-position cache: a cache of ``trading.positions`` in PostgreSQL.

Key layout (``{p}`` is the optional ``key_prefix``, empty by default):

* ``{p}position:{bot_id}:{symbol}``: string, the absolute size as Python prints a float
  (``0.047``, ``10.0``, ``1e-08``), what today's readers parse with ``float(GET)``.
* ``{p}position:{bot_id}:{symbol}:details``: hash ``size`` (same float text), ``side``
  (``Buy``/``Sell``), ``last_update`` (naive UTC ISO-8601, as today's readers expect),
  ``updated_at`` (ISO-8601 with ``+00:00``), ``avg_price`` and ``unrealized_pnl`` (exact
  decimal text, omitted when unknown), ``version``, ``size_exact`` (exact decimal text).
* ``{p}positions:{bot_id}``: set of the bot's symbols that have a (non-flat) position.
* ``{p}position_versions:{bot_id}``: hash symbol -> last applied version. :meth:`apply`
  never deletes it, so an old update arriving after a flat one cannot resurrect a position.
* ``{p}alpha:cache:valid``: JSON ``{"rebuilt_at": iso}``, written by a full :meth:`rebuild`.
  Its absence (Redis restarted, flushed, evicted, or :meth:`mark_stale`) means "do not trust
  the cache, read PostgreSQL and rebuild".

A flat position has neither key (missing = no position). :meth:`PositionCache.apply` is one
atomic Lua script (one round trip, EVALSHA, reloaded on NOSCRIPT) that drops any update whose
version is not newer than the stored one. Every Redis error leaves as
:class:`~alpha_models.errors.CacheUnavailableError` with a one-line message and no password.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, TypeVar
from urllib.parse import quote

import redis
from redis.commands.core import Script
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from alpha_models.errors import CacheUnavailableError, ValidationError

__all__ = [
    "MARKER_KEY",
    "PositionCache",
    "PositionSnapshot",
    "load_snapshots_from_db",
    "version_from_time",
]

MARKER_KEY: Final = "alpha:cache:valid"
SIDES: Final = frozenset({"Buy", "Sell"})
MAX_VERSION: Final = 2**63 - 1  # PostgreSQL bigint

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
#: Bot ids and symbols become parts of key names: no ``:`` (the separator), no glob
#: characters (SCAN patterns), no spaces or control characters.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.\-]+")
_BOT_ID_MAX: Final = 50  # varchar(50)
_SYMBOL_MAX: Final = 20  # varchar(20)
_CHUNK: Final = 500  # commands per pipelined MULTI/EXEC in rebuild()
_SCAN_COUNT: Final = 1000
_MAX_MESSAGE: Final = 300

# KEYS: 1 size string, 2 details hash, 3 symbol set, 4 versions hash
# ARGV: 1 symbol, 2 version (decimal digits), 3 size float text ("" = flat),
#       4.. field/value pairs of the details hash
_APPLY_LUA: Final = r"""
local function norm(v)
  v = (string.gsub(v, '^0+', ''))
  if v == '' then v = '0' end
  return v
end
local new = norm(ARGV[2])
local stored = redis.call('HGET', KEYS[4], ARGV[1])
if stored and string.match(stored, '^%d+$') then
  stored = norm(stored)
  if #stored > #new or (#stored == #new and stored >= new) then
    return 0
  end
end
if ARGV[3] == '' then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[3])
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], unpack(ARGV, 4))
  redis.call('SADD', KEYS[3], ARGV[1])
end
redis.call('HSET', KEYS[4], ARGV[1], new)
return 1
"""


# ------------------------------------------------------------------------------ snapshot


def _check_name(field: str, value: object, max_len: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, value, f"expected a string, got {type(value).__name__}")
    if len(value) > max_len or _NAME_RE.fullmatch(value) is None:
        raise ValidationError(field, value, f"not a key-safe name ([A-Za-z0-9_.-]{{1,{max_len}}})")
    return str.__str__(value)


def _check_decimal(field: str, value: object, *, nonnegative: bool = False) -> Decimal:
    if not isinstance(value, Decimal):
        raise ValidationError(field, value, f"expected a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValidationError(field, value, "not finite")
    if nonnegative and value < 0:
        raise ValidationError(field, value, "must not be negative")
    return value


def version_from_time(moment: datetime) -> int:
    """The version used while ``trading.positions`` has no ``version`` column: microseconds
    since the Unix epoch of ``updated_at``."""
    return (moment - _EPOCH) // _US


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """The state of one (bot, symbol) position at one version.

    ``side`` is ``"Buy"``/``"Sell"`` when ``size > 0``; a flat snapshot (``size == 0``) always
    has ``side == ""`` (a side passed with size 0 is dropped). ``version`` is the writer's
    sequence for (bot_id, symbol): a snapshot never replaces one with an equal or higher
    version. ``updated_at`` is stored as aware UTC. Invalid values raise
    :class:`~alpha_models.errors.ValidationError`.
    """

    bot_id: str
    symbol: str
    side: str
    size: Decimal
    avg_entry_price: Decimal | None
    unrealized_pnl: Decimal | None
    version: int
    updated_at: datetime

    def __post_init__(self) -> None:
        _check_name("bot_id", self.bot_id, _BOT_ID_MAX)
        _check_name("symbol", self.symbol, _SYMBOL_MAX)
        _check_decimal("size", self.size, nonnegative=True)
        if self.size and not 0 < float(self.size) < math.inf:
            raise ValidationError("size", self.size, "not representable as a float")
        if self.avg_entry_price is not None:
            _check_decimal("avg_entry_price", self.avg_entry_price)
        if self.unrealized_pnl is not None:
            _check_decimal("unrealized_pnl", self.unrealized_pnl)
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            raise ValidationError("version", self.version, "expected an int")
        if not 0 <= self.version <= MAX_VERSION:
            raise ValidationError("version", self.version, "out of range [0, 2**63-1]")
        moment = self.updated_at
        if not isinstance(moment, datetime):
            raise ValidationError("updated_at", moment, "expected a datetime")
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValidationError("updated_at", moment, "naive datetime (timezone required)")
        if moment.tzinfo is not UTC:
            object.__setattr__(self, "updated_at", moment.astimezone(UTC))
        if self.size == 0:
            if self.side not in SIDES and self.side != "":
                raise ValidationError("side", self.side, "expected 'Buy', 'Sell' or ''")
            object.__setattr__(self, "side", "")
        elif self.side not in SIDES:
            raise ValidationError("side", self.side, "expected 'Buy' or 'Sell' when size > 0")

    @property
    def is_flat(self) -> bool:
        return self.size == 0


def _float_text(value: Decimal) -> str:
    """The number as Python prints a float (``0.047``, ``10.0``, ``1e-08``)."""
    return repr(float(value))


def _decimal_text(value: Decimal) -> str:
    """Exact fixed-point text (never an exponent: ``1E+3`` -> ``1000``)."""
    return format(value, "f")


# ------------------------------------------------------------------------------ errors

_E = TypeVar("_E")


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _text_of(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _escape_glob(value: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", value)


# ------------------------------------------------------------------------------ cache


class PositionCache:
    """Live positions in Redis, kept equal to PostgreSQL (see the module docstring).

    ``client`` may decode responses or not; it is used as given (its DB number, timeouts and
    retry policy are the caller's).
    """

    def __init__(self, client: redis.Redis, *, key_prefix: str = "") -> None:
        if not isinstance(key_prefix, str) or not key_prefix.isprintable():
            raise ValidationError("key_prefix", key_prefix, "must be printable text")
        self._client = client
        self._prefix = key_prefix
        self._script: Script = client.register_script(_APPLY_LUA)

    # -- key names ------------------------------------------------------------------
    def position_key(self, bot_id: str, symbol: str) -> str:
        return f"{self._prefix}position:{bot_id}:{symbol}"

    def details_key(self, bot_id: str, symbol: str) -> str:
        return f"{self._prefix}position:{bot_id}:{symbol}:details"

    def symbols_key(self, bot_id: str) -> str:
        return f"{self._prefix}positions:{bot_id}"

    def versions_key(self, bot_id: str) -> str:
        return f"{self._prefix}position_versions:{bot_id}"

    @property
    def marker_key(self) -> str:
        return f"{self._prefix}{MARKER_KEY}"

    # -- error translation -------------------------------------------------------------
    def _secrets(self) -> list[str]:
        kwargs: dict[str, Any] = getattr(self._client.connection_pool, "connection_kwargs", {})
        password = kwargs.get("password")
        out: list[str] = []
        if password:
            secret = _text_of(password)
            out += [secret, quote(secret, safe="")]
        return sorted({s for s in out if s}, key=len, reverse=True)

    def _unavailable(self, operation: str, exc: BaseException) -> CacheUnavailableError:
        message = _one_line(exc)
        for secret in self._secrets():
            message = message.replace(secret, "***")
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE] + "..."
        return CacheUnavailableError(
            f"Redis unavailable ({operation}): {type(exc).__name__}: {message}"
        )

    def _call(self, operation: str, fn: Callable[[], _E]) -> _E:
        try:
            return fn()
        except redis.exceptions.RedisError as exc:
            raise self._unavailable(operation, exc) from None

    # -- writes --------------------------------------------------------------------------
    def _script_args(self, snap: PositionSnapshot) -> tuple[list[str], list[str]]:
        keys = [
            self.position_key(snap.bot_id, snap.symbol),
            self.details_key(snap.bot_id, snap.symbol),
            self.symbols_key(snap.bot_id),
            self.versions_key(snap.bot_id),
        ]
        args = [snap.symbol, str(snap.version)]
        if snap.is_flat:
            args.append("")
            return keys, args
        size = _float_text(snap.size)
        args.append(size)
        fields: list[tuple[str, str]] = [
            ("size", size),
            ("side", snap.side),
            ("last_update", snap.updated_at.replace(tzinfo=None).isoformat()),
            ("updated_at", snap.updated_at.isoformat()),
        ]
        if snap.avg_entry_price is not None:
            fields.append(("avg_price", _decimal_text(snap.avg_entry_price)))
        if snap.unrealized_pnl is not None:
            fields.append(("unrealized_pnl", _decimal_text(snap.unrealized_pnl)))
        fields += [("version", str(snap.version)), ("size_exact", _decimal_text(snap.size))]
        for name, value in fields:
            args += [name, value]
        return keys, args

    def apply(self, snapshot: PositionSnapshot) -> bool:
        """Store ``snapshot`` unless the stored version is >= its version (then return False).

        One atomic round trip. A flat snapshot deletes both position keys and the set member;
        the version is recorded in every case. ``False`` may also mean that a retried call
        (redis-py retries on timeouts) had already applied this very version.
        """
        if not isinstance(snapshot, PositionSnapshot):
            raise TypeError("apply() takes a PositionSnapshot")
        keys, args = self._script_args(snapshot)
        result = self._call("apply", lambda: self._script(keys=keys, args=args))
        return bool(int(result))

    def mark_stale(self) -> None:
        """Delete the validity marker so that every reader treats the cache as stale.

        Best effort: a Redis error is swallowed (a writer that could not update Redis should
        call this, and rebuild later, once Redis answers again).
        """
        try:
            self._client.delete(self.marker_key)
        except redis.exceptions.RedisError:
            pass

    def rebuild(
        self, snapshots: Iterable[PositionSnapshot], bot_ids: Iterable[str] | None = None
    ) -> int:
        """Make Redis hold exactly ``snapshots`` (PostgreSQL's current state).

        Deletes every ``position:{bot}:*`` key, ``positions:{bot}`` set and
        ``position_versions:{bot}`` hash of the affected bots (every bot found in Redis or in
        ``snapshots`` when ``bot_ids`` is None, else exactly ``bot_ids``, and then snapshots of
        other bots are ignored), then writes the snapshots with their versions (flat ones
        record only their version). Work is sent as pipelined MULTI/EXEC chunks of
        ``_CHUNK`` commands, so a rebuild of up to that many commands is atomic.

        A full rebuild (``bot_ids`` None) deletes the marker first and sets it last; a partial
        one keeps the marker's previous state (it is only restored after success). Keys of
        other formats (e.g. the listener's ``{bot}:position:{symbol}``) are never touched.
        Returns the number of (non-flat) positions written.
        """
        wanted: set[str] | None = None
        if bot_ids is not None:
            if isinstance(bot_ids, str):
                raise TypeError("bot_ids must be an iterable of bot ids, not a string")
            wanted = {_check_name("bot_ids", b, _BOT_ID_MAX) for b in bot_ids}
        latest: dict[tuple[str, str], PositionSnapshot] = {}
        for snap in snapshots:
            if not isinstance(snap, PositionSnapshot):
                raise TypeError("rebuild() takes PositionSnapshot objects")
            if wanted is not None and snap.bot_id not in wanted:
                continue
            key = (snap.bot_id, snap.symbol)
            current = latest.get(key)
            if current is None or snap.version > current.version:
                latest[key] = snap
        affected = set(wanted) if wanted is not None else {b for b, _ in latest}
        return self._call("rebuild", lambda: self._rebuild(latest, affected, wanted is None))

    def _doomed_keys(self, affected: set[str], full: bool) -> Iterator[Any]:
        prefixes = [f"{self._prefix}position:", f"{self._prefix}positions:"]
        prefixes.append(f"{self._prefix}position_versions:")
        pattern = f"{_escape_glob(self._prefix)}position*"
        for raw in self._client.scan_iter(match=pattern, count=_SCAN_COUNT):
            name = _text_of(raw)
            if full:
                if name.startswith(tuple(prefixes)):
                    yield raw
                continue
            for bot in affected:
                if (
                    name.startswith(f"{self._prefix}position:{bot}:")
                    or name == self.symbols_key(bot)
                    or name == self.versions_key(bot)
                ):
                    yield raw
                    break

    def _rebuild(
        self, latest: dict[tuple[str, str], PositionSnapshot], affected: set[str], full: bool
    ) -> int:
        client = self._client
        previous_marker: Any = None
        if full:
            client.delete(self.marker_key)
        else:
            previous_marker = client.get(self.marker_key)
            if previous_marker is not None:
                client.delete(self.marker_key)
        doomed: set[Any] = set(self._doomed_keys(affected, full))
        for bot in affected:  # also clears keys of a wrong type that would break the script
            doomed.update({self.symbols_key(bot), self.versions_key(bot)})
        for bot, symbol in latest:
            doomed.update({self.position_key(bot, symbol), self.details_key(bot, symbol)})
        deletes = sorted(doomed, key=_text_of)
        ops: list[tuple[str, Any]] = [
            ("del", deletes[i : i + 100]) for i in range(0, len(deletes), 100)
        ]
        ops += [("write", snap) for snap in latest.values()]
        written = 0
        for start in range(0, len(ops), _CHUNK):
            chunk = ops[start : start + _CHUNK]
            pipe = client.pipeline(transaction=True)
            for kind, payload in chunk:
                if kind == "del":
                    pipe.delete(*payload)
                else:
                    keys, args = self._script_args(payload)
                    self._script(keys=keys, args=args, client=pipe)
            results = pipe.execute()
            for (kind, payload), result in zip(chunk, results, strict=True):
                if kind == "write" and not payload.is_flat and int(result) == 1:
                    written += 1
        if full:
            marker = json.dumps({"rebuilt_at": datetime.now(UTC).isoformat()})
            client.set(self.marker_key, marker)
        elif previous_marker is not None:
            client.set(self.marker_key, previous_marker)
        return written

    # -- reads ---------------------------------------------------------------------------
    def get(self, bot_id: str, symbol: str) -> PositionSnapshot | None:
        """The cached position, or None when there is none (flat or unknown).

        Hashes written by today's ``AlphaDBClient`` (no ``version``/``size_exact``) are read
        too (version 0). A hash that cannot be parsed raises
        :class:`~alpha_models.errors.CacheUnavailableError`: read PostgreSQL instead.
        """
        _check_name("bot_id", bot_id, _BOT_ID_MAX)
        _check_name("symbol", symbol, _SYMBOL_MAX)
        key = self.details_key(bot_id, symbol)
        raw = self._call("get", lambda: self._client.hgetall(key))
        if not raw:
            return None
        fields = {_text_of(k): _text_of(v) for k, v in dict(raw).items()}
        try:
            return _parse_details(bot_id, symbol, fields)
        except (ValueError, ArithmeticError, KeyError, ValidationError) as exc:
            reason = exc.reason if isinstance(exc, ValidationError) else _one_line(exc)[:80]
            raise CacheUnavailableError(f"corrupt cache entry {key}: {reason}") from None

    def symbols(self, bot_id: str) -> set[str]:
        """Symbols of ``bot_id`` that have a non-flat position in the cache."""
        _check_name("bot_id", bot_id, _BOT_ID_MAX)
        members = self._call("symbols", lambda: self._client.smembers(self.symbols_key(bot_id)))
        return {_text_of(m) for m in members}

    def all_bot_ids(self) -> set[str]:
        """Bots that have at least one non-flat position in the cache."""
        head = f"{self._prefix}positions:"
        pattern = f"{_escape_glob(head)}*"

        def scan() -> set[str]:
            names = (_text_of(k) for k in self._client.scan_iter(match=pattern, count=_SCAN_COUNT))
            return {n[len(head) :] for n in names}

        return self._call("all_bot_ids", scan)

    def is_stale(self) -> bool:
        """True when the validity marker is missing: the cache must be rebuilt."""
        return not self._call("is_stale", lambda: self._client.exists(self.marker_key))

    def ping(self) -> bool:
        """True if Redis answers; never raises."""
        try:
            return bool(self._client.ping())
        except Exception:
            return False


def _parse_details(bot_id: str, symbol: str, fields: dict[str, str]) -> PositionSnapshot:
    exact = fields.get("size_exact")
    size = Decimal(exact if exact is not None else fields["size"])
    if "version" in fields:
        # Ours. Today's AlphaDBClient HSETs size/side/last_update over it and keeps our other
        # fields: such a mixed hash must not be trusted (ValueError -> CacheUnavailableError).
        moment = datetime.fromisoformat(fields["updated_at"]).astimezone(UTC)
        if fields.get("size") != _float_text(size) or fields.get("last_update") != (
            moment.replace(tzinfo=None).isoformat()
        ):
            raise ValueError("hash overwritten by another writer")
    if not size.is_finite():
        raise ValueError("size")
    side = fields.get("side", "")
    if side == "None":  # today's writer stores a falsy side as the text None
        side = ""
    updated = fields.get("updated_at")
    if updated is not None:
        moment = datetime.fromisoformat(updated)
    else:  # today's writer: naive UTC
        moment = datetime.fromisoformat(fields["last_update"])
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)

    def optional(name: str) -> Decimal | None:
        value = fields.get(name)
        if value is None or value in ("", "None"):
            return None
        return Decimal(value)

    return PositionSnapshot(
        bot_id=bot_id,
        symbol=symbol,
        side=side,
        size=size,
        avg_entry_price=optional("avg_price"),
        unrealized_pnl=optional("unrealized_pnl"),
        version=int(fields.get("version", "0")),
        updated_at=moment,
    )


# ------------------------------------------------------------------------------ PostgreSQL

_HAS_VERSION_SQL: Final = text(
    "SELECT EXISTS (SELECT 1 FROM information_schema.columns "
    "WHERE table_schema = 'trading' AND table_name = 'positions' AND column_name = 'version')"
)
_SELECT_SQL: Final = (
    "SELECT bot_id, symbol, size, side, avg_entry_price, updated_at, {version} AS version "
    "FROM trading.positions ORDER BY bot_id, symbol"
)


def load_snapshots_from_db(engine: Engine) -> list[PositionSnapshot]:
    """Every row of ``trading.positions`` as a snapshot (size 0 = flat).

    The version is the ``version`` column when the table has one and the row's value is not
    NULL, else the microseconds since the epoch of ``updated_at`` (0 when ``updated_at`` is
    NULL, which also stands in as the epoch). A row that cannot be a snapshot (negative size,
    size > 0 without a Buy/Sell side, a name unfit for a key) raises
    :class:`~alpha_models.errors.ValidationError`; database errors leave translated
    (:mod:`alpha_models.db`), without secrets.
    """
    from alpha_models.db import translate_error  # local: keeps this module import light

    try:
        with engine.connect() as conn:
            has_version = bool(conn.execute(_HAS_VERSION_SQL).scalar_one())
            sql = _SELECT_SQL.format(version="version" if has_version else "NULL::bigint")
            rows = conn.execute(text(sql)).all()
            conn.rollback()
    except DBAPIError as exc:
        raise translate_error(exc, getattr(engine, "info_settings", None)) from None
    out: list[PositionSnapshot] = []
    for bot_id, symbol, size, side, avg_price, updated_at, version in rows:
        moment: datetime = updated_at if updated_at is not None else _EPOCH
        if moment.tzinfo is None:  # a timestamp without time zone column: UTC by contract
            moment = moment.replace(tzinfo=UTC)
        if version is None:
            version = version_from_time(moment) if updated_at is not None else 0
        size = Decimal(size) if not isinstance(size, Decimal) else size
        if size == 0:
            side = ""
        try:
            snap = PositionSnapshot(
                bot_id=bot_id,
                symbol=symbol,
                side=side or "",
                size=size,
                avg_entry_price=avg_price,
                unrealized_pnl=None,
                version=int(version),
                updated_at=moment,
            )
        except ValidationError as exc:
            raise ValidationError(
                exc.field,
                exc.value,
                f"trading.positions row ({bot_id!r}, {symbol!r}): {exc.reason}",
            ) from None
        out.append(snap)
    return out
