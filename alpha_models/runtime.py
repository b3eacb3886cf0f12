"""Building the write path and its cache from settings (one place for every entry point)."""

from __future__ import annotations

import redis
from sqlalchemy.engine import Engine

from alpha_models.cache import PositionCache
from alpha_models.db import make_engine
from alpha_models.settings import Settings
from alpha_models.spool import Spool
from alpha_models.writepath import WritePath


def make_redis(settings: Settings, db: int | None = None) -> redis.Redis:
    client: redis.Redis = redis.Redis.from_url(
        settings.redis_connection_url(),
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=1.0,
        **({"db": db} if db is not None else {}),
    )
    return client


def build_write_path(
    settings: Settings | None = None,
    engine: Engine | None = None,
    *,
    cache: bool = True,
    redis_db: int | None = None,
) -> WritePath:
    settings = settings or Settings()
    engine = engine or make_engine(settings)
    position_cache = PositionCache(make_redis(settings, redis_db)) if cache else None
    spool = Spool(settings.spool_dir, settings.spool_max_bytes)
    return WritePath(engine, settings=settings, cache=position_cache, spool=spool)
