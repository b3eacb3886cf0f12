"""Running the Alembic migrations from code (the CLI, the embedded stack, the demo)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from alembic import command
from alpha_models.errors import ConfigurationError


def alembic_ini() -> Path:
    """``alembic.ini`` of this checkout (``ALPHA_ALEMBIC_INI`` overrides)."""
    configured = os.environ.get("ALPHA_ALEMBIC_INI")
    path = (
        Path(configured) if configured else Path(__file__).resolve().parent.parent / "alembic.ini"
    )
    if not path.exists():
        raise ConfigurationError(
            f"alembic.ini not found at {path}: install the project editable (pip install -e .) "
            "or set ALPHA_ALEMBIC_INI"
        )
    return path


def config(url: str, *x_args: str) -> Config:
    cfg = Config(str(alembic_ini()))
    cfg.cmd_opts = argparse.Namespace(x=[f"url={url}", *x_args])
    return cfg


def head_revision() -> str:
    ini = alembic_ini()
    scripts = str(ini.parent / "alembic")
    if scripts not in sys.path:  # revisions import their helpers, as env.py arranges
        sys.path.insert(0, scripts)
    heads = ScriptDirectory.from_config(Config(str(ini))).get_heads()
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table_schema": "public"})
        return ctx.get_current_revision()


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(config(url), revision)


def check(url: str) -> None:
    command.check(config(url))
