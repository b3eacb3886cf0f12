"""Alembic environment for the ``trading`` and ``audit`` schemas.

- The URL comes from :class:`alpha_models.settings.Settings` (``POSTGRES_*`` or
  ``ALPHA_DATABASE_URL``), or ``-x url=...``; a caller may hand over a connection in
  ``config.attributes["connection"]`` (the tests do).
- Autogenerate sees only modelled objects of ``trading`` and ``audit``; the version table
  lives in ``public`` so it is never proposed for dropping.
- Every run sets ``lock_timeout`` (``SET LOCAL``: safe behind PgBouncer) so a migration
  never hangs behind an idle-in-transaction client.
- All revisions of one command run in one transaction: a failed adoption changes nothing.
"""

from __future__ import annotations

import os
import sys

from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from alembic import context

sys.path.insert(0, os.path.dirname(__file__))

import alpha_models
from alpha_models.settings import Settings

config = context.config
target_metadata = alpha_models.Base.metadata
MODELLED_SCHEMAS = {"trading", "audit"}
VERSION_TABLE_SCHEMA = "public"
LOCK_TIMEOUT = os.environ.get("ALPHA_MIGRATION_LOCK_TIMEOUT", "10s")


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    if type_ == "schema":
        return name in MODELLED_SCHEMAS
    if type_ == "table":
        schema = parent_names.get("schema_name") if isinstance(parent_names, dict) else None
        return f"{schema}.{name}" in target_metadata.tables
    return True


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        include_name=include_name,
        version_table_schema=VERSION_TABLE_SCHEMA,
        compare_type=True,
        compare_server_default=True,
        autogenerate_plugins=["alembic.autogenerate.*", "alembic.ext.checkconstraint_byname"],
        transaction_per_migration=False,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        context.run_migrations()


def _url() -> str:
    x_url = context.get_x_argument(as_dictionary=True).get("url")
    if x_url:
        return x_url
    return Settings().sqlalchemy_url.render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        include_schemas=True,
        include_name=include_name,
        version_table_schema=VERSION_TABLE_SCHEMA,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    engine = create_engine(
        _url(), poolclass=pool.NullPool, connect_args={"application_name": "alpha-migrate"}
    )
    with engine.connect() as connection:
        _run(connection)
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
