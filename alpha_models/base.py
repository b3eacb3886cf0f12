"""The declarative base: naming convention and the shared column types.

Money and quantities are one ``Decimal`` annotation mapped to ``Numeric(20, 8)``; times
are one aware ``datetime`` annotation mapped to ``timestamptz`` through :class:`UTCDateTime`,
which refuses naive values and always returns UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, MetaData, Numeric
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

#: Production's own names: ``<table>_pkey``, ``<table>_<col>_key``, ``<table>_<col>_fkey``,
#: ``idx_<table>_<cols>``. Checks must be named explicitly (by meaning, as production does):
#: an unnamed check raises at table definition time.
NAMING_CONVENTION: dict[str, str] = {
    "pk": "%(table_name)s_pkey",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "fk": "%(table_name)s_%(column_0_name)s_fkey",
    "ix": "idx_%(table_name)s_%(column_0_N_name)s",
    "ck": "%(constraint_name)s",
}

MONEY = Numeric(20, 8, asdecimal=True)


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz`` that accepts only aware datetimes and returns them in UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: pass an aware time")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Base of every model; its metadata is the contract Alembic compares against."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a plain dict)
        Decimal: MONEY,
        datetime: UTCDateTime(),
    }
