"""reconcile quarantine: where voided fills and funding settlements are kept, restorable

``alpha-db reconcile --apply`` now voids a row of the bot that is on no page of a complete
exchange record. The row is not deleted: it moves, in the same transaction, to
``audit.quarantined_fills`` (or ``audit.quarantined_funding_settlements``), which hold every
column of the original table under the same name and type (``id`` is the original row's id)
plus ``quarantined_at``, ``quarantined_by`` (the database role), ``reason``, ``sync_id`` (the
``trading.sync_status`` run) and ``details``. ``alpha-db reconcile-restore EXEC_ID`` puts a
row back.

Privileges: only the owner writes these tables. They have a ``bot_id`` but no row security
and no write grant, so ``trading.sync_roles()`` gives the platform roles SELECT only (the
default privileges of migration 0016 do the same for a new table): voiding or correcting a
fill deletes or rewrites a row of ``trading.fills``, which no service role may do.

The downgrade refuses to drop a quarantine that holds rows unless ``-x allow-data-loss=yes``.

Revision ID: 0018
Revises: 0017
Create Date: 2025-12-01
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "audit"
MONEY = sa.Numeric(20, 8)
TS = sa.DateTime(timezone=True)
TABLES = ("quarantined_fills", "quarantined_funding_settlements")


def _bookkeeping(table: str) -> list[Any]:
    return [
        sa.Column(
            "quarantined_at", TS, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")
        ),
        sa.Column(
            "quarantined_by",
            sa.String(63),
            nullable=False,
            server_default=sa.text("CURRENT_USER"),
            comment="Database role that moved it",
        ),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "sync_id",
            sa.Integer(),
            nullable=True,
            comment="trading.sync_status.id of the reconcile run",
        ),
        sa.Column("details", postgresql.JSONB(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"{table}_pkey"),
        sa.ForeignKeyConstraint(
            ["sync_id"], ["trading.sync_status.id"], name=f"{table}_sync_id_fkey"
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "quarantined_fills",
        sa.Column(
            "id",
            sa.BigInteger(),
            nullable=False,
            autoincrement=False,
            comment="trading.fills.id of the row",
        ),
        sa.Column("bot_id", sa.String(50), nullable=False),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("order_id", sa.String(100), nullable=False),
        sa.Column("client_order_id", sa.String(100), nullable=False),
        sa.Column("side", sa.String(10), nullable=False),
        sa.Column("exec_price", MONEY, nullable=False),
        sa.Column("exec_qty", MONEY, nullable=False),
        sa.Column("exec_time", TS, nullable=False),
        sa.Column("close_reason", sa.String(50), nullable=True),
        sa.Column("commission", MONEY, nullable=False),
        sa.Column("created_at", TS, nullable=True),
        sa.Column("exec_id", sa.String(64), nullable=False),
        sa.Column("exec_type", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20), nullable=True),
        *_bookkeeping("quarantined_fills"),
        schema=SCHEMA,
        comment="Fills voided by reconciliation (on no page of a complete exchange record), "
        "every column kept; alpha-db reconcile-restore puts one back",
    )
    op.create_index(
        "idx_quarantined_fills_exec_id", "quarantined_fills", ["exec_id"], schema=SCHEMA
    )
    op.create_table(
        "quarantined_funding_settlements",
        sa.Column(
            "id",
            sa.BigInteger(),
            nullable=False,
            autoincrement=False,
            comment="trading.funding_settlements.id of the row",
        ),
        sa.Column("exec_id", sa.String(64), nullable=False),
        sa.Column("bot_id", sa.String(50), nullable=False),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("side", sa.String(10), nullable=False),
        sa.Column("position_qty", MONEY, nullable=False),
        sa.Column("mark_price", MONEY, nullable=False),
        sa.Column(
            "fee",
            MONEY,
            nullable=False,
            comment="Funding paid (positive) or received (negative), USDT",
        ),
        sa.Column("exec_time", TS, nullable=False),
        sa.Column("source", sa.String(20), nullable=True),
        sa.Column("created_at", TS, nullable=True),
        *_bookkeeping("quarantined_funding_settlements"),
        schema=SCHEMA,
        comment="Funding settlements voided by reconciliation, every column kept; "
        "alpha-db reconcile-restore puts one back",
    )
    op.create_index(
        "idx_quarantined_funding_settlements_exec_id",
        "quarantined_funding_settlements",
        ["exec_id"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    from migration_helpers import refuse_data_loss

    refuse_data_loss(SCHEMA, TABLES)
    for table in reversed(TABLES):
        op.drop_table(table, schema=SCHEMA)
