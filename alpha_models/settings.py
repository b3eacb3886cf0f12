"""Runtime settings, read from the environment variables every container already has.

The ``POSTGRES_*`` and ``REDIS_*`` names and defaults are those of today's platform code
(CONTRACT.md). ``ALPHA_DATABASE_URL`` / ``ALPHA_REDIS_URL`` override them as a whole.
Passwords are :class:`~pydantic.SecretStr`: they never appear in a repr, a log line or an
error message; ``*_PASSWORD_FILE`` (the Docker-secrets convention) is read when set.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from urllib.parse import quote

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from alpha_models.errors import ConfigurationError


def _read_secret_file(path: Path, variable: str) -> SecretStr:
    try:
        return SecretStr(path.read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as exc:
        raise ConfigurationError(f"{variable}: cannot read {path}: {exc.strerror}") from None


class Settings(BaseSettings):
    """All configuration of the data layer; construct with ``Settings()`` to read the env."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    postgres_host: str = Field(default="pgbouncer", alias="POSTGRES_HOST")
    postgres_port: int = Field(default=6432, alias="POSTGRES_PORT", ge=1, le=65535)
    postgres_db: str = Field(default="trading_db", alias="POSTGRES_DB")
    postgres_user: str = Field(default="trading_user", alias="POSTGRES_USER")
    postgres_password: SecretStr | None = Field(default=None, alias="POSTGRES_PASSWORD")
    postgres_password_file: Path | None = Field(default=None, alias="POSTGRES_PASSWORD_FILE")
    database_url: SecretStr | None = Field(default=None, alias="ALPHA_DATABASE_URL")

    redis_host: str = Field(default="redis", alias="REDIS_HOST")
    redis_port: int = Field(default=6379, alias="REDIS_PORT", ge=1, le=65535)
    redis_db: int = Field(default=0, alias="REDIS_DB", ge=0, le=15)
    redis_username: str | None = Field(default=None, alias="REDIS_USERNAME")
    redis_password: SecretStr | None = Field(default=None, alias="REDIS_PASSWORD")
    redis_password_file: Path | None = Field(default=None, alias="REDIS_PASSWORD_FILE")
    redis_url: SecretStr | None = Field(default=None, alias="ALPHA_REDIS_URL")

    application_name: str = Field(
        default="alpha-models", alias="ALPHA_APPLICATION_NAME", max_length=63
    )
    connect_timeout_s: int = Field(default=5, alias="ALPHA_CONNECT_TIMEOUT", ge=1, le=300)
    statement_timeout_ms: int = Field(default=30_000, alias="ALPHA_STATEMENT_TIMEOUT_MS", ge=0)
    pool_size: int = Field(default=5, alias="ALPHA_POOL_SIZE", ge=1, le=100)
    pool_max_overflow: int = Field(default=5, alias="ALPHA_POOL_MAX_OVERFLOW", ge=0, le=100)
    pool_timeout_s: float = Field(default=10.0, alias="ALPHA_POOL_TIMEOUT", gt=0)
    pool_recycle_s: int = Field(default=1800, alias="ALPHA_POOL_RECYCLE", ge=-1)

    spool_dir: Path = Field(default=Path(".alpha/spool"), alias="ALPHA_SPOOL_DIR")
    spool_max_bytes: int = Field(default=256 * 1024 * 1024, alias="ALPHA_SPOOL_MAX_BYTES", gt=0)

    @model_validator(mode="after")
    def _password_files(self) -> Settings:
        if self.postgres_password is None and self.postgres_password_file is not None:
            secret = _read_secret_file(self.postgres_password_file, "POSTGRES_PASSWORD_FILE")
            object.__setattr__(self, "postgres_password", secret)
        if self.redis_password is None and self.redis_password_file is not None:
            secret = _read_secret_file(self.redis_password_file, "REDIS_PASSWORD_FILE")
            object.__setattr__(self, "redis_password", secret)
        return self

    @cached_property
    def sqlalchemy_url(self) -> URL:
        """The database URL; ``str()`` of it masks the password (SQLAlchemy 2 behaviour)."""
        if self.database_url is not None:
            try:
                url = make_url(self.database_url.get_secret_value())
            except Exception:  # the text may hold a password: never echo it
                raise ConfigurationError("ALPHA_DATABASE_URL is not a valid URL") from None
            if url.drivername in ("postgres", "postgresql"):
                url = url.set(drivername="postgresql+psycopg2")
            return url
        password = self.postgres_password.get_secret_value() if self.postgres_password else None
        return URL.create(
            "postgresql+psycopg2",
            username=self.postgres_user,
            password=password,
            host=self.postgres_host,
            port=self.postgres_port,
            database=self.postgres_db,
        )

    def redis_connection_url(self) -> str:
        """A ``redis://`` URL including credentials: pass it to redis-py, never log it."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        auth = ""
        if self.redis_password is not None and self.redis_password.get_secret_value():
            user = quote(self.redis_username or "", safe="")
            auth = f"{user}:{quote(self.redis_password.get_secret_value(), safe='')}@"
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    def secrets(self) -> list[str]:
        """Every configured secret value, for scrubbing error text."""
        values = [self.postgres_password, self.redis_password]
        out = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        if self.sqlalchemy_url.password:
            out.append(str(self.sqlalchemy_url.password))
        return out

    def scrub(self, text: str) -> str:
        """``text`` with every configured secret replaced by ``***``."""
        for secret in sorted(set(self.secrets()), key=len, reverse=True):
            text = text.replace(secret, "***")
            quoted = quote(secret, safe="")
            if quoted != secret:
                text = text.replace(quoted, "***")
        return text
