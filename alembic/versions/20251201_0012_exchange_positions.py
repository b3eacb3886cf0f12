"""exchange_positions: the exchange's own view of each position (from the position stream)

``trading.positions`` holds each bot's position as its fills imply; this table holds what
Bybit reports, per account owner (bot or ``unknown``), symbol and positionIdx (hedge mode
keeps long and short apart), newest update wins. Reconciliation compares the two.

Revision ID: 0012
Revises: 0011
Create Date: 2025-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "exchange_positions",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("bot_id", sa.String(50), nullable=False),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("position_idx", sa.SmallInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("side", sa.String(10), nullable=False, comment="Buy, Sell, or '' when flat"),
        sa.Column("size", sa.Numeric(20, 8), nullable=False),
        sa.Column("entry_price", sa.Numeric(20, 8), nullable=True),
        sa.Column("mark_price", sa.Numeric(20, 8), nullable=True),
        sa.Column("unrealised_pnl", sa.Numeric(20, 8), nullable=True),
        sa.Column("exchange_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP")
        ),
        sa.PrimaryKeyConstraint("id", name="exchange_positions_pkey"),
        sa.UniqueConstraint(
            "bot_id",
            "symbol",
            "position_idx",
            name="exchange_positions_bot_id_symbol_position_idx_key",
        ),
        sa.CheckConstraint("side IN ('Buy', 'Sell', '')", name="valid_exchange_position_side"),
        sa.CheckConstraint("size >= 0", name="nonnegative_size"),
        schema="trading",
        comment="Positions as the exchange reports them (position stream), newest wins",
    )


def downgrade() -> None:
    op.drop_table("exchange_positions", schema="trading")
