"""funding_settlements: funding executions, kept apart from trades

Revision ID: 0009
Revises: 0008
Create Date: 2025-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "funding_settlements",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("exec_id", sa.String(64), nullable=False),
        sa.Column("bot_id", sa.String(50), nullable=False),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("side", sa.String(10), nullable=False),
        sa.Column("position_qty", sa.Numeric(20, 8), nullable=False),
        sa.Column("mark_price", sa.Numeric(20, 8), nullable=False),
        sa.Column(
            "fee",
            sa.Numeric(20, 8),
            nullable=False,
            comment="Funding paid (positive) or received (negative), USDT",
        ),
        sa.Column("exec_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(20), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP")
        ),
        sa.CheckConstraint("side IN ('Buy', 'Sell')", name="valid_funding_side"),
        sa.PrimaryKeyConstraint("id", name="funding_settlements_pkey"),
        sa.UniqueConstraint("exec_id", name="funding_settlements_exec_id_key"),
        schema="trading",
        comment="Funding settlements (Bybit execType Funding): never trades",
    )
    op.create_index(
        "idx_funding_settlements_bot_symbol",
        "funding_settlements",
        ["bot_id", "symbol", "exec_time"],
        schema="trading",
    )


def downgrade() -> None:
    from migration_helpers import refuse_data_loss

    refuse_data_loss("trading", ["funding_settlements"])
    op.drop_index("idx_funding_settlements_bot_symbol", "funding_settlements", schema="trading")
    op.drop_table("funding_settlements", schema="trading")
