"""One exception hierarchy for the whole data layer.

Driver errors are translated into these at the boundary (see ``alpha_models.db``), so no
``psycopg2`` or ``sqlalchemy`` exception leaks to a strategy. The CLI maps each class to an
exit code and prints one line.
"""

from __future__ import annotations

from typing import Any

_MAX_VALUE_REPR = 80


def _short_repr(value: Any) -> str:
    """A bounded, single-line repr so that hostile input cannot flood a log line."""
    text = repr(value)
    if len(text) > _MAX_VALUE_REPR:
        text = f"{text[:_MAX_VALUE_REPR]}...<{len(text)} chars>"
    return text


class AlphaModelsError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1


class ValidationError(AlphaModelsError, ValueError):
    """An input value was rejected before anything touched a database.

    ``field`` names the offending input field and ``value`` holds the rejected value.
    """

    exit_code = 65  # EX_DATAERR

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field}={_short_repr(value)}: {reason}")


class ConfigurationError(AlphaModelsError):
    """Settings are missing or inconsistent."""

    exit_code = 78  # EX_CONFIG


class DatabaseUnavailableError(AlphaModelsError):
    """PostgreSQL could not be reached (the message never contains a password)."""

    exit_code = 69  # EX_UNAVAILABLE


class SchemaBehindError(AlphaModelsError):
    """The database is not at the latest migration; run ``alpha-db migrate``."""

    exit_code = 75  # EX_TEMPFAIL


class SpoolFullError(AlphaModelsError):
    """The local fill spool reached its size limit: fills cannot be kept safely."""

    exit_code = 74  # EX_IOERR


class ConstraintViolationError(AlphaModelsError):
    """The database refused a row (a check, unique or foreign-key constraint)."""

    exit_code = 65

    def __init__(self, message: str, constraint: str | None = None) -> None:
        self.constraint = constraint
        super().__init__(message)


class DatabaseError(AlphaModelsError):
    """Any other database failure (already translated, secrets removed)."""


class CacheUnavailableError(AlphaModelsError):
    """Redis could not be reached."""

    exit_code = 69
