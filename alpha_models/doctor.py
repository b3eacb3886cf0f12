"""``alpha-db doctor``: one line per check of what the data layer depends on."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from alpha_models import migrations
from alpha_models.bots import PLATFORM_BOTS
from alpha_models.cache import PositionCache
from alpha_models.db import translate_error
from alpha_models.runtime import make_redis
from alpha_models.settings import Settings
from alpha_models.spool import Spool

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # ok / warn / fail
    detail: str

    @property
    def needs_action(self) -> bool:
        return self.status != OK


def _pgbouncer(settings: Settings, server_port: int | None) -> Check:
    url = settings.sqlalchemy_url
    if server_port is None or url.port in (None, server_port):
        return Check("pgbouncer", OK, "not in front (direct PostgreSQL connection)")
    try:
        conn = psycopg2.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname="pgbouncer",
            connect_timeout=settings.connect_timeout_s,
        )
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SHOW CONFIG")
        config = {row[0]: row[1] for row in cur.fetchall()}
        conn.close()
    except psycopg2.Error:
        return Check("pgbouncer", WARN, f"a proxy is in front (port {url.port}); pool mode unknown")
    mode = config.get("pool_mode", "unknown")
    status = OK if mode == "transaction" else WARN
    return Check("pgbouncer", status, f"in front on port {url.port}, pool_mode={mode}")


def run_checks(settings: Settings, engine: Engine) -> list[Check]:
    checks: list[Check] = []
    server_port = None
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar()
            server_port = conn.execute(text("SELECT inet_server_port()")).scalar()
            conn.rollback()
        major = int(str(version).split(".")[0])
        status = OK if major >= 15 else WARN
        note = "" if major == 15 else " (production runs 15)"
        checks.append(Check("postgresql", status, f"reachable, version {version}{note}"))
        reachable = True
    except DBAPIError as exc:
        checks.append(Check("postgresql", FAIL, str(translate_error(exc, settings))))
        reachable = False
    if reachable:
        checks.append(_pgbouncer(settings, server_port))
        current = migrations.current_revision(engine)
        head = migrations.head_revision()
        if current == head:
            checks.append(Check("migrations", OK, f"at head ({head})"))
        else:
            checks.append(
                Check(
                    "migrations", FAIL, f"at {current or 'none'}, head is {head}: alpha-db migrate"
                )
            )
        try:
            with engine.connect() as conn:
                bots = set(conn.execute(text("SELECT bot_id FROM trading.bots")).scalars())
                conn.rollback()
        except DBAPIError:
            bots = set()
        missing = [b.bot_id for b in PLATFORM_BOTS if b.bot_id not in bots]
        checks.append(
            Check("bots", OK, "3 platform bots registered")
            if not missing
            else Check("bots", FAIL, f"not registered: {', '.join(missing)}: alpha-db migrate")
        )
    cache = PositionCache(make_redis(settings))
    if not cache.ping():
        checks.append(Check("redis", FAIL, "unreachable (trading continues; cache stale)"))
    elif cache.is_stale():
        checks.append(Check("redis", WARN, "reachable, cache STALE: alpha-db cache-rebuild"))
    else:
        checks.append(Check("redis", OK, "reachable, cache valid"))
    stats = Spool(settings.spool_dir, settings.spool_max_bytes).stats()
    checks.append(
        Check("spool", OK, "empty")
        if stats.pending_count == 0
        else Check("spool", WARN, f"{stats.pending_count} pending: alpha-db spool-flush")
    )
    return checks
