"""Engines and sessions: the only module that commits.

The engine is safe behind PgBouncer in transaction pooling mode: psycopg2 never uses
server-side prepared statements, nothing is ``SET`` at session level (per-transaction
settings use ``SET LOCAL``), and ``application_name`` travels in the startup packet, which
PgBouncer forwards. Driver errors are translated here into :mod:`alpha_models.errors`,
with every configured secret scrubbed from the text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from alpha_models.errors import (
    ConstraintViolationError,
    DatabaseError,
    DatabaseUnavailableError,
)
from alpha_models.settings import Settings


def make_engine(settings: Settings | None = None, **overrides: Any) -> Engine:
    """A pooled engine for ``settings`` (read from the environment when omitted).

    Nothing connects until first use.
    """
    settings = settings or Settings()
    connect_args: dict[str, Any] = {
        "application_name": settings.application_name,
        "connect_timeout": settings.connect_timeout_s,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    options: dict[str, Any] = {
        "pool_size": settings.pool_size,
        "max_overflow": settings.pool_max_overflow,
        "pool_timeout": settings.pool_timeout_s,
        "pool_recycle": settings.pool_recycle_s,
        "pool_pre_ping": True,
        "pool_reset_on_return": "rollback",
        "connect_args": connect_args,
        "hide_parameters": True,
    }
    options.update(overrides)
    engine = create_engine(settings.sqlalchemy_url, **options)
    engine.info_settings = settings  # type: ignore[attr-defined]
    if settings.statement_timeout_ms:
        timeout = int(settings.statement_timeout_ms)

        @event.listens_for(engine, "begin")
        def _statement_timeout(conn: Connection) -> None:
            # SET LOCAL lasts for this transaction only: safe with transaction pooling.
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {timeout}")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


def _first_line(exc: BaseException | None) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__ if exc is not None else "error"


def translate_error(exc: BaseException, settings: Settings | None = None) -> Exception:
    """Map a driver error to the package's hierarchy, with secrets removed from the text."""

    def scrub(text: str) -> str:
        return settings.scrub(text) if settings is not None else text

    if isinstance(exc, OperationalError | InterfaceError):
        return DatabaseUnavailableError(f"PostgreSQL unavailable: {scrub(_first_line(exc.orig))}")
    if isinstance(exc, IntegrityError):
        diag = getattr(exc.orig, "diag", None)
        constraint = getattr(diag, "constraint_name", None)
        return ConstraintViolationError(scrub(_first_line(exc.orig)), constraint)
    if isinstance(exc, DBAPIError):
        return DatabaseError(scrub(_first_line(exc.orig)))
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error.

    Driver errors leave as :mod:`alpha_models.errors` exceptions, secrets scrubbed.
    """
    session = factory()
    try:
        yield session
        session.commit()
    except DBAPIError as exc:
        session.rollback()
        bind = session.get_bind()
        raise translate_error(exc, getattr(bind, "info_settings", None)) from None
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def check_connection(engine: Engine) -> str:
    """The server version string; raises :class:`DatabaseUnavailableError` (scrubbed)."""
    settings: Settings | None = getattr(engine, "info_settings", None)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())
    except DBAPIError as exc:
        raise translate_error(exc, settings) from None
