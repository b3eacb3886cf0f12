"""The Redis live-position cache against a real redis-server (and PostgreSQL for rebuild)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

import pytest
import redis
from sqlalchemy import text

from alpha_models.cache import (
    MARKER_KEY,
    PositionCache,
    PositionSnapshot,
    load_snapshots_from_db,
    version_from_time,
)
from alpha_models.devstack import DevStack, free_port
from alpha_models.errors import CacheUnavailableError, ValidationError
from tests.conftest import Database

T0 = datetime(2025, 11, 6, 1, 25, 4, 488571, tzinfo=UTC)
BOT = "shortseller_001"


def snap(
    version: int,
    size: str = "0.047",
    *,
    side: str = "Sell",
    bot_id: str = BOT,
    symbol: str = "BTCUSDT",
    avg: str | None = "101234.5",
    upnl: str | None = "-1.25",
    at: datetime = T0,
) -> PositionSnapshot:
    return PositionSnapshot(
        bot_id=bot_id,
        symbol=symbol,
        side=side if Decimal(size) else "",
        size=Decimal(size),
        avg_entry_price=None if avg is None else Decimal(avg),
        unrealized_pnl=None if upnl is None else Decimal(upnl),
        version=version,
        updated_at=at,
    )


@pytest.fixture
def cache(redis_client: redis.Redis) -> PositionCache:
    return PositionCache(redis_client)


def hgetall(r: redis.Redis, key: str) -> dict[str, str]:
    return cast(dict[str, str], r.hgetall(key))


def read_like_today(r: redis.Redis, bot: str, symbol: str) -> tuple[float | None, dict[str, str]]:
    """What today's ``get_position_redis`` reads: ``float(GET)`` and the details hash."""
    raw = r.get(f"position:{bot}:{symbol}")
    details = hgetall(r, f"position:{bot}:{symbol}:details")
    return (None if raw is None else float(raw)), details


def assert_keys_agree(r: redis.Redis, s: PositionSnapshot) -> None:
    size, details = read_like_today(r, s.bot_id, s.symbol)
    if s.is_flat:
        assert size is None
        assert details == {}
        assert s.symbol not in r.smembers(f"positions:{s.bot_id}")
        return
    assert size == float(s.size)
    assert r.get(f"position:{s.bot_id}:{s.symbol}") == details["size"]
    assert float(details["size"]) == size
    assert Decimal(details["size_exact"]) == s.size
    assert details["side"] == s.side
    assert details["version"] == str(s.version)
    assert datetime.fromisoformat(details["last_update"]).tzinfo is None
    assert datetime.fromisoformat(details["last_update"]).replace(tzinfo=UTC) == s.updated_at
    assert datetime.fromisoformat(details["updated_at"]) == s.updated_at
    if s.avg_entry_price is None:
        assert "avg_price" not in details
    else:
        assert Decimal(details["avg_price"]) == s.avg_entry_price
    if s.unrealized_pnl is None:
        assert "unrealized_pnl" not in details
    else:
        assert Decimal(details["unrealized_pnl"]) == s.unrealized_pnl
    assert s.symbol in r.smembers(f"positions:{s.bot_id}")


# ----------------------------------------------------------------------------- apply


def test_apply_writes_both_keys_the_way_todays_readers_read_them(
    cache: PositionCache, redis_client: redis.Redis
) -> None:
    s = snap(1, "0.04700000")
    assert cache.apply(s) is True
    assert redis_client.get("position:shortseller_001:BTCUSDT") == "0.047"
    assert redis_client.hgetall("position:shortseller_001:BTCUSDT:details") == {
        "size": "0.047",
        "side": "Sell",
        "last_update": "2025-11-06T01:25:04.488571",
        "updated_at": "2025-11-06T01:25:04.488571+00:00",
        "avg_price": "101234.5",
        "unrealized_pnl": "-1.25",
        "version": "1",
        "size_exact": "0.04700000",
    }
    assert redis_client.smembers("positions:shortseller_001") == {"BTCUSDT"}
    assert redis_client.hgetall("position_versions:shortseller_001") == {"BTCUSDT": "1"}
    assert cache.get(BOT, "BTCUSDT") == s
    assert cache.symbols(BOT) == {"BTCUSDT"}
    assert cache.all_bot_ids() == {BOT}


@pytest.mark.parametrize(
    ("size", "text_"),
    [
        ("0.04700000", "0.047"),
        ("10", "10.0"),
        ("0.00000001", "1e-08"),
        ("1E+3", "1000.0"),
        ("744.80000000", "744.8"),
        ("123456789012.12345678", "123456789012.12346"),
    ],
)
def test_size_text_is_what_python_prints_for_the_float_and_exact_text_is_kept(
    cache: PositionCache, redis_client: redis.Redis, size: str, text_: str
) -> None:
    s = snap(1, size, avg=None, upnl=None)
    cache.apply(s)
    assert redis_client.get("position:shortseller_001:BTCUSDT") == text_
    assert_keys_agree(redis_client, s)
    got = cache.get(BOT, "BTCUSDT")
    assert got is not None and got.size == Decimal(size)


def test_replacing_the_hash_leaves_no_stale_field(
    cache: PositionCache, redis_client: redis.Redis
) -> None:
    redis_client.hset("position:shortseller_001:BTCUSDT:details", "junk", "old")
    cache.apply(snap(1, avg="100", upnl="5"))
    cache.apply(snap(2, "0.01", side="Buy", avg=None, upnl=None))
    details = redis_client.hgetall("position:shortseller_001:BTCUSDT:details")
    assert "avg_price" not in details and "unrealized_pnl" not in details and "junk" not in details
    assert_keys_agree(redis_client, snap(2, "0.01", side="Buy", avg=None, upnl=None))


def test_older_or_equal_version_is_ignored(cache: PositionCache, redis_client: redis.Redis) -> None:
    newer = snap(10, "0.05")
    assert cache.apply(newer)
    assert cache.apply(snap(9, "0.9")) is False
    assert cache.apply(snap(10, "0.8")) is False
    assert_keys_agree(redis_client, newer)
    assert cache.get(BOT, "BTCUSDT") == newer


def test_versions_compare_as_integers_beyond_double_precision(
    cache: PositionCache, redis_client: redis.Redis
) -> None:
    big = 2**62 + 1  # not exactly representable as a Lua double
    assert cache.apply(snap(big, "1"))
    assert cache.apply(snap(big - 1, "2")) is False
    assert cache.apply(snap(big + 1, "3")) is True
    assert cache.apply(snap(9, "4")) is False  # fewer digits
    assert redis_client.get("position:shortseller_001:BTCUSDT") == "3.0"


def test_flat_removes_both_keys_and_the_member_and_old_update_cannot_resurrect(
    cache: PositionCache, redis_client: redis.Redis
) -> None:
    cache.apply(snap(1, "0.05", symbol="BTCUSDT"))
    cache.apply(snap(1, "1.3", symbol="ETHUSDT"))
    flat = snap(5, "0", symbol="BTCUSDT")
    assert flat.side == ""
    assert cache.apply(flat)
    assert_keys_agree(redis_client, flat)
    assert redis_client.exists("position:shortseller_001:BTCUSDT") == 0
    assert redis_client.exists("position:shortseller_001:BTCUSDT:details") == 0
    assert redis_client.smembers("positions:shortseller_001") == {"ETHUSDT"}
    assert cache.get(BOT, "BTCUSDT") is None
    # a delayed older non-flat update arrives after the flat one
    assert cache.apply(snap(4, "0.05", symbol="BTCUSDT")) is False
    assert redis_client.exists("position:shortseller_001:BTCUSDT") == 0
    assert redis_client.hget("position_versions:shortseller_001", "BTCUSDT") == "5"
    # a newer one reopens it
    reopened = snap(6, "0.002", side="Buy", symbol="BTCUSDT")
    assert cache.apply(reopened)
    assert_keys_agree(redis_client, reopened)


def test_keys_always_agree_over_random_out_of_order_updates(
    cache: PositionCache, redis_client: redis.Redis
) -> None:
    rng = random.Random(42)
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        updates = []
        for version in range(1, 60):
            size = rng.choice(["0", "0.001", "33.1", "744.80000000", "0.00000001", "12"])
            updates.append(
                snap(
                    version,
                    size,
                    side=rng.choice(["Buy", "Sell"]),
                    symbol=symbol,
                    avg=rng.choice([None, "1.5", "99999.12345678"]),
                    upnl=rng.choice([None, "0", "-3.2"]),
                    at=T0 + timedelta(seconds=version),
                )
            )
        latest = updates[-1]
        rng.shuffle(updates)
        best = 0
        for u in updates:
            assert cache.apply(u) is (u.version > best)
            best = max(best, u.version)
            current = cache.get(BOT, symbol)
            if current is not None:
                assert_keys_agree(redis_client, current)
        assert_keys_agree(redis_client, latest)
        assert cache.get(BOT, symbol) == (None if latest.is_flat else latest)


def test_concurrent_writers_converge_on_the_highest_version(
    devstack: DevStack, redis_client: redis.Redis
) -> None:
    versions = list(range(1, 401))
    random.Random(7).shuffle(versions)
    errors: list[BaseException] = []

    def worker(part: list[int]) -> None:
        client = redis.Redis.from_url(devstack.redis_url(), decode_responses=True)
        try:
            c = PositionCache(client)
            for v in part:
                c.apply(snap(v, str(Decimal(v) / 1000), side="Buy" if v % 2 else "Sell"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(versions[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = PositionCache(redis_client).get(BOT, "BTCUSDT")
    assert final is not None and final.version == 400 and final.size == Decimal("0.4")
    assert_keys_agree(redis_client, final)


def _commandstats(r: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = r.info("commandstats")
    return {name: int(value["calls"]) for name, value in stats.items()}


class CountingRedis(redis.Redis):
    """A client that counts the commands it sends (each is one round trip here)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]))
        return cast(Any, super()).execute_command(*args, **options)


def test_apply_is_one_round_trip_of_one_evalsha(
    devstack: DevStack, redis_client: redis.Redis
) -> None:
    client = CountingRedis(host="127.0.0.1", port=devstack.redis.port, decode_responses=True)
    try:
        c = PositionCache(client)
        c.apply(snap(1))  # first call may load the script (NOSCRIPT -> SCRIPT LOAD)
        client.sent.clear()
        before = _commandstats(redis_client)
        assert c.apply(snap(2, "0.5"))
        after = _commandstats(redis_client)
        assert client.sent == ["EVALSHA"]
        assert after["cmdstat_evalsha"] - before["cmdstat_evalsha"] == 1
        for name in ("cmdstat_eval", "cmdstat_script|load", "cmdstat_multi", "cmdstat_exec"):
            assert after.get(name, 0) == before.get(name, 0)
        # the script cache is lost (restart, SCRIPT FLUSH): reloaded transparently
        redis_client.script_flush()
        client.sent.clear()
        assert c.apply(snap(3, "0.6"))
        assert client.sent == ["EVALSHA", "SCRIPT LOAD", "EVALSHA"]
        assert redis_client.get("position:shortseller_001:BTCUSDT") == "0.6"
    finally:
        client.close()


def test_key_prefix_applies_to_every_key(redis_client: redis.Redis) -> None:
    plain = PositionCache(redis_client)
    prefixed = PositionCache(redis_client, key_prefix="t[1]*:")
    plain.apply(snap(1, "1"))
    prefixed.apply(snap(1, "2"))
    assert redis_client.get("t[1]*:position:shortseller_001:BTCUSDT") == "2.0"
    assert redis_client.get("position:shortseller_001:BTCUSDT") == "1.0"
    assert prefixed.rebuild([]) == 0  # glob characters in the prefix are escaped
    assert redis_client.get("position:shortseller_001:BTCUSDT") == "1.0"
    assert redis_client.exists("t[1]*:position:shortseller_001:BTCUSDT") == 0
    assert not prefixed.is_stale() and plain.is_stale()


def test_reads_hashes_written_by_todays_alpha_db_client(
    cache: PositionCache, redis_client: redis.Redis
) -> None:
    redis_client.set("position:lxalgo_001:SOLUSDT", "33.1")
    redis_client.hset(
        "position:lxalgo_001:SOLUSDT:details",
        mapping={"size": "33.1", "side": "Sell", "last_update": "2025-11-06T01:25:04.488571"},
    )
    got = cache.get("lxalgo_001", "SOLUSDT")
    assert got == PositionSnapshot(
        bot_id="lxalgo_001",
        symbol="SOLUSDT",
        side="Sell",
        size=Decimal("33.1"),
        avg_entry_price=None,
        unrealized_pnl=None,
        version=0,
        updated_at=T0,
    )
    redis_client.hset("position:lxalgo_001:SOLUSDT:details", "size", "not-a-number")
    with pytest.raises(CacheUnavailableError, match="corrupt cache entry"):
        cache.get("lxalgo_001", "SOLUSDT")


def test_a_hash_mixed_by_todays_writer_is_not_trusted(
    cache: PositionCache, redis_client: redis.Redis
) -> None:
    cache.apply(snap(3, "0.05"))
    # today's update_position_redis: SET then HSET of size/side/last_update only
    redis_client.set("position:shortseller_001:BTCUSDT", "0.02")
    redis_client.hset(
        "position:shortseller_001:BTCUSDT:details",
        mapping={"size": "0.02", "side": "Sell", "last_update": "2025-11-06T02:00:00.000001"},
    )
    with pytest.raises(CacheUnavailableError, match="another writer"):
        cache.get(BOT, "BTCUSDT")
    assert cache.apply(snap(4, "0.03"))  # the next versioned update repairs it
    got = cache.get(BOT, "BTCUSDT")
    assert got is not None and got.size == Decimal("0.03")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"size": Decimal("-1")}, "size"),
        ({"size": Decimal("NaN")}, "size"),
        ({"size": 1.5}, "size"),
        ({"side": ""}, "side"),
        ({"side": "buy"}, "side"),
        ({"bot_id": "a:b"}, "bot_id"),
        ({"symbol": "BTC*"}, "symbol"),
        ({"version": -1}, "version"),
        ({"version": True}, "version"),
        ({"version": 2**63}, "version"),
        ({"updated_at": datetime(2025, 1, 1)}, "updated_at"),
        ({"avg_entry_price": Decimal("Infinity")}, "avg_entry_price"),
    ],
)
def test_snapshot_rejects_bad_values(overrides: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {
        "bot_id": BOT,
        "symbol": "BTCUSDT",
        "side": "Buy",
        "size": Decimal("1"),
        "avg_entry_price": None,
        "unrealized_pnl": None,
        "version": 1,
        "updated_at": T0,
    }
    values.update(overrides)
    with pytest.raises(ValidationError) as caught:
        PositionSnapshot(**values)
    assert caught.value.field == field


def test_snapshot_normalises_time_to_utc_and_flat_side() -> None:
    s = snap(1, "0", side="Buy", at=T0.astimezone(timezone(timedelta(hours=3))))
    assert s.updated_at.tzinfo is UTC and s.updated_at == T0 and s.side == ""


# ----------------------------------------------------------------------------- rebuild

ROWS = [
    # bot_id, symbol, size, side, avg_entry_price, updated_at
    ("shortseller_001", "BTCUSDT", "0.05100000", "Sell", None, "2025-11-06 01:20:03.916245+00"),
    (
        "shortseller_001",
        "SOLUSDT",
        "33.10000000",
        "Sell",
        "182.34",
        "2025-11-06 01:25:04.505389+00",
    ),
    ("shortseller_001", "APRUSDT", "0.00000000", "", None, "2025-10-24 22:11:07.271597+00"),
    ("lxalgo_001", "BTCUSDT", "0.05100000", "Sell", None, "2025-11-06 01:20:03.916245+00"),
    ("lxalgo_001", "ZKCUSDT", "744.80000000", "Buy", "0.00012345", "2025-10-25 04:00:00.879321+00"),
    ("momentum_001", "HUSDT", "0.00000000", "", None, "2025-10-25 00:11:10.060239+00"),
]


def _insert_rows(db: Database) -> None:
    engine = db.engine()
    with engine.begin() as conn:
        for bot, symbol, size, side, avg, at in ROWS:
            conn.execute(
                text(
                    "INSERT INTO trading.positions "
                    "(bot_id, symbol, size, side, avg_entry_price, updated_at) "
                    "VALUES (:b, :s, CAST(:z AS numeric), :d, CAST(:a AS numeric), "
                    "CAST(:t AS timestamptz))"
                ),
                {"b": bot, "s": symbol, "z": size, "d": side, "a": avg, "t": at},
            )
        conn.execute(text("UPDATE trading.positions SET version = 3 WHERE symbol = 'BTCUSDT'"))
        conn.execute(text("UPDATE trading.positions SET version = 12 WHERE symbol = 'HUSDT'"))
    engine.dispose()


def _pg_positions(db: Database) -> list[Any]:
    engine = db.engine()
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT bot_id, symbol, size, side, avg_entry_price, updated_at, version "
                "FROM trading.positions"
            )
        ).all()
    engine.dispose()
    return list(rows)


def _listener_keys(r: redis.Redis) -> dict[str, str]:
    keys = {}
    for bot in ("shortseller_001", "lxalgo_001", "momentum_001"):
        value = json.dumps(
            {
                "symbol": "BTCUSDT",
                "size": "0.051",
                "side": "Sell",
                "avgPrice": "0",
                "unrealisedPnl": "1.2",
                "updatedTime": "1762392003916",
            }
        )
        r.set(f"{bot}:position:BTCUSDT", value)
        keys[f"{bot}:position:BTCUSDT"] = value
    return keys


def test_flush_then_rebuild_from_postgresql_makes_redis_equal_to_it(
    db: Database, redis_client: redis.Redis, cache: PositionCache
) -> None:
    _insert_rows(db)
    engine = db.engine()
    snapshots = load_snapshots_from_db(engine)
    assert cache.rebuild(snapshots) == 4
    assert not cache.is_stale()

    redis_client.flushdb()  # Redis restarted without persistence, or evicted everything
    assert cache.is_stale()
    listener = _listener_keys(redis_client)
    # stale state of today's writer: a bot PostgreSQL does not know, a position PG says is flat
    redis_client.set("position:ghost_bot:BTCUSDT", "1.0")
    redis_client.hset("position:ghost_bot:BTCUSDT:details", mapping={"size": "1.0"})
    redis_client.sadd("positions:ghost_bot", "BTCUSDT")
    redis_client.set("position:shortseller_001:APRUSDT", "5.0")
    redis_client.hset("position:shortseller_001:APRUSDT:details", mapping={"size": "5.0"})
    redis_client.hset("position_versions:momentum_001", "HUSDT", str(2**62))

    written = cache.rebuild(load_snapshots_from_db(engine))
    engine.dispose()
    assert written == 4
    assert not cache.is_stale()
    marker = json.loads(redis_client.get(MARKER_KEY) or "")
    assert set(marker) == {"rebuilt_at"}
    assert datetime.fromisoformat(marker["rebuilt_at"]).tzinfo is not None

    # every key is what PostgreSQL says, field by field
    expected_keys = set(listener) | {MARKER_KEY}
    pg = _pg_positions(db)
    assert {r.version for r in pg} == {0, 3, 12}
    for bot, symbol, size, side, avg, at, version in pg:
        versions = redis_client.hgetall(f"position_versions:{bot}")
        assert versions[symbol] == str(version)
        expected_keys.add(f"position_versions:{bot}")
        if size == 0:
            assert redis_client.exists(f"position:{bot}:{symbol}") == 0
            assert redis_client.exists(f"position:{bot}:{symbol}:details") == 0
            continue
        expected_keys |= {f"position:{bot}:{symbol}", f"position:{bot}:{symbol}:details"}
        expected_keys.add(f"positions:{bot}")
        assert redis_client.get(f"position:{bot}:{symbol}") == repr(float(size))
        details = hgetall(redis_client, f"position:{bot}:{symbol}:details")
        want = {
            "size": repr(float(size)),
            "side": side,
            "last_update": at.astimezone(UTC).replace(tzinfo=None).isoformat(),
            "updated_at": at.astimezone(UTC).isoformat(),
            "version": str(version),
            "size_exact": str(size),
        }
        if avg is not None:
            want["avg_price"] = str(avg)
        assert details == want
        assert Decimal(details["size_exact"]) == size
        if avg is not None:
            assert Decimal(details["avg_price"]) == avg
    assert redis_client.smembers("positions:shortseller_001") == {"BTCUSDT", "SOLUSDT"}
    assert redis_client.smembers("positions:lxalgo_001") == {"BTCUSDT", "ZKCUSDT"}
    assert redis_client.exists("positions:momentum_001") == 0
    assert cache.all_bot_ids() == {"shortseller_001", "lxalgo_001"}
    assert set(redis_client.keys("*")) == expected_keys  # nothing else: the ghost bot is gone
    for key, value in listener.items():  # the listener's JSON keys are untouched
        assert redis_client.get(key) == value

    # the versions came back too: an update not newer than PostgreSQL's state is ignored
    assert cache.apply(snap(3, "9", symbol="BTCUSDT")) is False
    assert redis_client.get("position:shortseller_001:BTCUSDT") == "0.051"
    assert cache.apply(snap(12, "9", bot_id="momentum_001", symbol="HUSDT")) is False
    assert cache.get("momentum_001", "HUSDT") is None
    assert cache.apply(snap(4, "0.06", symbol="BTCUSDT")) is True


def test_without_a_version_column_the_version_comes_from_updated_at(
    db: Database, redis_client: redis.Redis, cache: PositionCache
) -> None:
    """A database before migration 0008 (no ``positions.version``)."""
    _insert_rows(db)
    engine = db.engine()
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE trading.positions DROP COLUMN version"))
        conn.execute(
            text(
                "INSERT INTO trading.positions (bot_id, symbol, size, side, updated_at) "
                "VALUES ('momentum_001', 'ETHUSDT', 1.3, 'Sell', NULL)"
            )
        )
    snapshots = {(s.bot_id, s.symbol): s for s in load_snapshots_from_db(engine)}
    engine.dispose()
    zkc = snapshots[("lxalgo_001", "ZKCUSDT")]
    assert zkc.version == version_from_time(zkc.updated_at) == 1761364800879321
    assert zkc.updated_at == datetime(2025, 10, 25, 4, 0, 0, 879321, tzinfo=UTC)
    assert zkc.avg_entry_price == Decimal("0.00012345") and zkc.side == "Buy"
    assert snapshots[("momentum_001", "HUSDT")].is_flat
    eth = snapshots[("momentum_001", "ETHUSDT")]  # NULL updated_at: version 0, epoch time
    assert eth.version == 0 and eth.updated_at == datetime(1970, 1, 1, tzinfo=UTC)
    assert cache.rebuild(snapshots.values()) == 5
    assert redis_client.hget("position:lxalgo_001:ZKCUSDT:details", "version") == str(zkc.version)
    assert cache.apply(snap(zkc.version + 1, "700", bot_id="lxalgo_001", symbol="ZKCUSDT"))


def test_load_rejects_a_row_that_cannot_be_a_position(db: Database) -> None:
    engine = db.engine()
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO trading.positions (bot_id, symbol, size, side) "
                "VALUES ('lxalgo_001', 'BTCUSDT', 0.5, '')"
            )
        )
    with pytest.raises(ValidationError, match=r"trading\.positions row"):
        load_snapshots_from_db(engine)
    engine.dispose()


def test_partial_rebuild_touches_only_the_given_bots(
    cache: PositionCache, redis_client: redis.Redis
) -> None:
    cache.rebuild([snap(1, "1", bot_id="lxalgo_001"), snap(1, "2")])
    marker = redis_client.get(MARKER_KEY)
    cache.apply(snap(2, "3", bot_id="lxalgo_001", symbol="ETHUSDT"))
    written = cache.rebuild(
        [snap(5, "4", bot_id="lxalgo_001", symbol="SOLUSDT"), snap(9, "9")],
        bot_ids=["lxalgo_001"],
    )
    assert written == 1
    assert cache.symbols("lxalgo_001") == {"SOLUSDT"}
    assert redis_client.exists("position:lxalgo_001:ETHUSDT") == 0
    assert redis_client.hgetall("position_versions:lxalgo_001") == {"SOLUSDT": "5"}
    got = cache.get(BOT, "BTCUSDT")  # the other bot is untouched (its snapshot ignored)
    assert got is not None and got.version == 1
    assert redis_client.get(MARKER_KEY) == marker
    # a partial rebuild of a stale cache does not make it valid
    cache.mark_stale()
    cache.rebuild([], bot_ids=["lxalgo_001"])
    assert cache.is_stale()


def test_rebuild_keeps_the_highest_version_of_duplicates_and_chunks(
    cache: PositionCache, redis_client: redis.Redis
) -> None:
    many = [
        snap(v, str(v), bot_id=f"bot_{i % 7}", symbol=f"SYM{i}USDT")
        for i in range(1200)
        for v in (2, 1)
    ]
    assert cache.rebuild(many) == 1200
    assert cache.all_bot_ids() == {f"bot_{i}" for i in range(7)}
    assert sum(len(cache.symbols(f"bot_{i}")) for i in range(7)) == 1200
    assert redis_client.get("position:bot_3:SYM3USDT") == "2.0"
    assert cache.rebuild([]) == 0
    assert redis_client.keys("*") == [MARKER_KEY]


def test_mark_stale_and_missing_marker(cache: PositionCache, redis_client: redis.Redis) -> None:
    assert cache.is_stale()  # fresh Redis: never rebuilt
    cache.rebuild([])
    assert not cache.is_stale()
    cache.mark_stale()
    assert cache.is_stale()
    cache.rebuild([])
    redis_client.delete(MARKER_KEY)  # evicted under allkeys-lru
    assert cache.is_stale()


# ----------------------------------------------------------------------------- errors


@pytest.fixture
def dead_client() -> Iterator[redis.Redis]:
    url = f"redis://alpha:s3cr%40t-pa55@127.0.0.1:{free_port()}/1"
    client = redis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=0.5, socket_timeout=0.5
    )
    try:
        yield client
    finally:
        client.close()


def test_unreachable_redis_raises_cache_unavailable_without_the_password(
    dead_client: redis.Redis,
) -> None:
    cache = PositionCache(dead_client)
    assert cache.ping() is False
    cache.mark_stale()  # best effort: does not raise
    calls: list[Any] = [
        lambda: cache.apply(snap(1)),
        lambda: cache.get(BOT, "BTCUSDT"),
        lambda: cache.symbols(BOT),
        cache.all_bot_ids,
        cache.is_stale,
        lambda: cache.rebuild([snap(1)]),
    ]
    for call in calls:
        with pytest.raises(CacheUnavailableError) as caught:
            call()
        message = str(caught.value)
        assert "\n" not in message
        assert "s3cr" not in message and "pa55" not in message
        assert message.startswith("Redis unavailable")
        assert caught.value.exit_code == 69


def test_wrong_password_is_not_echoed(devstack: DevStack, redis_client: redis.Redis) -> None:
    redis_client.config_set("requirepass", "right-horse-battery")
    try:
        url = f"redis://:wrong-horse-battery@127.0.0.1:{devstack.redis.port}/0"
        client = redis.Redis.from_url(url, decode_responses=True)
        cache = PositionCache(client)
        with pytest.raises(CacheUnavailableError) as caught:
            cache.apply(snap(1))
        assert "wrong-horse" not in str(caught.value)
        assert "right-horse" not in str(caught.value)
        client.close()
    finally:
        redis_client.auth("right-horse-battery")
        redis_client.config_set("requirepass", "")
