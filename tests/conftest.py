"""The test bed: real PostgreSQL 15, PgBouncer (transaction pooling) and Redis on loopback.

The servers are started once per test session from the system binaries on free ports
(``scripts/test.sh`` installs them) and stopped at the end. A missing binary is an error,
never a skip. The schema is built once, by ``alembic upgrade head``, into a template
database; each test that asks for ``db`` gets a fresh copy of it.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from alpha_models.bots import register_bots
from alpha_models.cache import PositionCache
from alpha_models.db import make_engine
from alpha_models.devstack import DevStack
from alpha_models.settings import Settings
from alpha_models.writepath import WritePath
from tests import stack as tb

TEMPLATE = "alpha_template"


@pytest.fixture(scope="session")
def devstack() -> Iterator[DevStack]:
    root = Path(tempfile.mkdtemp(prefix="alpha-testbed-"))
    stack = DevStack(root)
    try:
        yield stack.start()
    finally:
        stack.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(devstack: DevStack) -> str:
    devstack.create_database(TEMPLATE)
    tb.upgrade(devstack.url(TEMPLATE))
    return TEMPLATE


@dataclass
class Database:
    """One isolated database at head, reachable directly and through PgBouncer."""

    name: str
    stack: DevStack
    _url: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Database:
        """A handle usable in a child process (no server control there)."""
        return cls(url.rsplit("/", 1)[1], None, url)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        if self._url is not None:
            return self._url
        return self.stack.url(self.name)

    @property
    def bouncer_url(self) -> str:
        return self.stack.url(self.name, via_pgbouncer=True)

    def engine(self, *, via_pgbouncer: bool = False) -> Engine:
        return create_engine(self.bouncer_url if via_pgbouncer else self.url)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def db(devstack: DevStack, template_db: str) -> Iterator[Database]:
    name = unique_name("t")
    devstack.create_database(name, template=template_db)
    try:
        yield Database(name, devstack)
    finally:
        devstack.drop_database(name)


@pytest.fixture
def empty_db(devstack: DevStack) -> Iterator[Database]:
    name = unique_name("e")
    devstack.create_database(name)
    try:
        yield Database(name, devstack)
    finally:
        devstack.drop_database(name)


@pytest.fixture
def redis_client(devstack: DevStack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(devstack.redis_url(), decode_responses=True)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@dataclass
class Writer:
    """A write path on a fresh database, with its cache and spool, for one test."""

    path: WritePath
    db: Database
    engine: Engine
    cache: PositionCache


def make_writer(
    db: Database, spool_dir: Path, redis_url: str, *, via_pgbouncer: bool = False
) -> Writer:
    settings = Settings(
        ALPHA_DATABASE_URL=db.bouncer_url if via_pgbouncer else db.url,
        ALPHA_SPOOL_DIR=str(spool_dir),
        ALPHA_CONNECT_TIMEOUT=2,
    )
    engine = make_engine(settings)
    register_bots(engine)
    cache = PositionCache(redis.Redis.from_url(redis_url, decode_responses=True))
    return Writer(WritePath(engine, settings=settings, cache=cache), db, engine, cache)


@pytest.fixture
def writer(db: Database, tmp_path: Path, redis_client: redis.Redis) -> Iterator[Writer]:
    w = make_writer(db, tmp_path / "spool", db.stack.redis_url())
    try:
        yield w
    finally:
        w.engine.dispose()
