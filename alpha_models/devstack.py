"""Local PostgreSQL 15, PgBouncer and Redis servers on loopback, from system binaries.

Used by the test bed and the benchmarks: each server runs in a folder of its own on a free
port and is stopped (or killed, for failure tests) by the caller. Nothing here is used by
the write path.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from alpha_models.errors import ConfigurationError

PG_VERSION = "15"
ADMIN_USER = "alpha_admin"
APP_USER = "trading_user"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} during start-up")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f}s")


def pg_bin_dir() -> Path:
    """The PostgreSQL 15 binaries (``ALPHA_PG_BIN`` overrides the Debian location)."""
    candidates = [os.environ.get("ALPHA_PG_BIN", ""), f"/usr/lib/postgresql/{PG_VERSION}/bin"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    raise ConfigurationError(
        f"PostgreSQL {PG_VERSION} server binaries not found: install Debian package "
        f"postgresql-{PG_VERSION} (scripts/test.sh does) or set ALPHA_PG_BIN"
    )


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        raise ConfigurationError(f"{name} not found: install Debian package {package}")
    return path


def _service_user() -> str | None:
    """PostgreSQL and PgBouncer refuse to run as root: run them as ``postgres`` then."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "alphadb"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(["useradd", "--system", "--no-create-home", "alphadb"], check=True)
    return "alphadb"


def _ids(user: str | None) -> tuple[int | None, int | None, list[int] | None]:
    """uid, gid and supplementary groups to run a child directly as ``user`` (no wrapper
    process, so the child's pid is the server's own); all None to keep ours."""
    if user is None:
        return None, None, None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid, []


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def initdb_argv(bindir: Path, data: Path, superuser: str, pwfile: Path) -> list[str]:
    """initdb for a local cluster: trust on the socket, SCRAM over TCP, UTF-8 (shared by the
    test bed and the embedded stack)."""
    return [
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        superuser,
        "--pwfile",
        str(pwfile),
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C.UTF-8",
    ]


def _check_identifier(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


@dataclass
class Server:
    """A running server process and where it listens."""

    name: str
    port: int
    argv: list[str]
    workdir: Path
    user: str | None
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    ready_timeout: float = 60.0

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.log = self.workdir / f"{self.name}.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                user=_ids(self.user)[0],
                group=_ids(self.user)[1],
                extra_groups=_ids(self.user)[2],
            )
        _wait_port(self.port, self.ready_timeout, self.proc, self.name)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """Hard kill (SIGKILL of the whole process group), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT if self.name == "postgres" else signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class DevStack:
    """PostgreSQL 15 + PgBouncer (transaction pooling) + Redis in ``root``."""

    root: Path
    #: Fresh random passwords per stack, so a leak check in the tests means something.
    app_password: str = field(default_factory=lambda: "app-" + secrets.token_urlsafe(12))
    admin_password: str = field(default_factory=lambda: "adm-" + secrets.token_urlsafe(12))
    fsync: bool = False
    postgres: Server = field(init=False)
    pgbouncer: Server = field(init=False)
    redis: Server = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = _service_user()
        self.postgres = self._prepare_postgres()
        self.pgbouncer = self._prepare_pgbouncer()
        self.redis = self._prepare_redis()

    # -- PostgreSQL ------------------------------------------------------------------
    def _prepare_postgres(self) -> Server:
        bindir = pg_bin_dir()
        data = self.root / "pgdata"
        run = self.root / "pgrun"
        run.mkdir(exist_ok=True)
        if not (data / "PG_VERSION").exists():
            pwfile = self.root / "pwfile"
            pwfile.write_text(self.admin_password + "\n", encoding="utf-8")
            _chown_tree(self.root, self.user)
            uid, gid, groups = _ids(self.user)
            subprocess.run(
                initdb_argv(bindir, data, ADMIN_USER, pwfile),
                check=True,
                stdout=subprocess.DEVNULL,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
            pwfile.unlink()
        port = free_port()
        conf = [
            "-D",
            str(data),
            "-c",
            f"port={port}",
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={run}",
            "-c",
            "timezone=UTC",
            "-c",
            "max_connections=300",
            "-c",
            f"fsync={'on' if self.fsync else 'off'}",
            "-c",
            "shared_buffers=256MB",
        ]
        if not self.fsync:
            # Still crash-safe against kill -9 of the server (the OS keeps written WAL);
            # synchronous_commit stays on, or a killed server would lose acknowledged commits.
            conf += ["-c", "full_page_writes=off"]
        _chown_tree(self.root, self.user)
        return Server("postgres", port, [str(bindir / "postgres"), *conf], self.root, self.user)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the admin superuser through the local socket; returns stdout."""
        out = subprocess.run(
            [
                str(pg_bin_dir() / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.root / "pgrun"),
                "-p",
                str(self.postgres.port),
                "-U",
                ADMIN_USER,
                "-d",
                database,
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def psql_file(self, path: Path | None, database: str, stdin: bytes | None = None) -> None:
        """Feed a SQL script (a path, or ``stdin`` bytes) to psql as the admin user."""
        cmd = [
            str(pg_bin_dir() / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.root / "pgrun"),
            "-p",
            str(self.postgres.port),
            "-U",
            ADMIN_USER,
            "-d",
            database,
        ]
        if path is not None:
            cmd += ["-f", str(path)]
        subprocess.run(cmd, check=True, input=stdin, capture_output=True)

    def _bootstrap_roles(self) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{APP_USER}'").strip()  # noqa: S608
        verb = "ALTER" if exists else "CREATE"
        self.psql(
            f"{verb} ROLE {APP_USER} LOGIN CREATEDB CREATEROLE PASSWORD '{self.app_password}'"
        )
        self.psql(f"ALTER ROLE {ADMIN_USER} PASSWORD '{self.admin_password}'")

    # -- PgBouncer -------------------------------------------------------------------
    def _prepare_pgbouncer(self) -> Server:
        binary = require_binary("pgbouncer", "pgbouncer")
        port = free_port()
        workdir = self.root / "pgbouncer"
        workdir.mkdir(exist_ok=True)
        (workdir / "userlist.txt").write_text(
            f'"{APP_USER}" "{self.app_password}"\n"{ADMIN_USER}" "{self.admin_password}"\n',
            encoding="utf-8",
        )
        (workdir / "pgbouncer.ini").write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host=127.0.0.1 port={self.postgres.port}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {port}",
                    "unix_socket_dir =",
                    "auth_type = scram-sha-256",
                    f"auth_file = {workdir / 'userlist.txt'}",
                    "pool_mode = transaction",
                    "max_client_conn = 1000",
                    "default_pool_size = 40",
                    "max_db_connections = 120",
                    f"admin_users = {ADMIN_USER}",
                    f"stats_users = {APP_USER}",
                    "server_reset_query =",
                    "ignore_startup_parameters = extra_float_digits",
                    "",
                ]
            ),
            encoding="utf-8",
        )
        os.chmod(workdir / "userlist.txt", 0o600)
        _chown_tree(workdir, self.user)
        return Server(
            "pgbouncer", port, [binary, str(workdir / "pgbouncer.ini")], workdir, self.user
        )

    # -- Redis -----------------------------------------------------------------------
    def _prepare_redis(self) -> Server:
        binary = require_binary("redis-server", "redis-server")
        port = free_port()
        workdir = self.root / "redis"
        workdir.mkdir(exist_ok=True)
        _chown_tree(workdir, self.user)
        argv = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
        ]
        return Server("redis", port, argv, workdir, self.user)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> DevStack:
        self.postgres.start()
        self._wait_pg_ready()
        self._bootstrap_roles()
        self.pgbouncer.start()
        self.redis.start()
        return self

    def _wait_pg_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.psql("SELECT 1")
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def restart_postgres(self, hard: bool = False) -> None:
        if hard:
            self.postgres.kill()
        else:
            self.postgres.stop()
        self.postgres.start()
        self._wait_pg_ready()

    def stop(self) -> None:
        for server in (self.redis, self.pgbouncer, self.postgres):
            server.stop()

    def url(self, database: str, *, via_pgbouncer: bool = False, admin: bool = False) -> str:
        user, password = (
            (ADMIN_USER, self.admin_password) if admin else (APP_USER, self.app_password)
        )
        port = self.pgbouncer.port if via_pgbouncer else self.postgres.port
        return f"postgresql+psycopg2://{user}:{password}@127.0.0.1:{port}/{database}"

    def redis_url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/{db}"

    def create_database(self, name: str, template: str | None = None) -> None:
        _check_identifier(name)
        tmpl = f" TEMPLATE {_check_identifier(template)}" if template else ""
        self.psql(f'CREATE DATABASE "{name}" OWNER {APP_USER}{tmpl}')

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{_check_identifier(name)}" WITH (FORCE)')


@contextlib.contextmanager
def running_stack(root: Path, **kwargs: object) -> Iterator[DevStack]:
    stack = DevStack(root, **kwargs)  # type: ignore[arg-type]
    try:
        yield stack.start()
    finally:
        stack.stop()
