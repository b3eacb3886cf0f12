"""equity_snapshots: per-bot daily equity snapshots (all bots; Momentum's first)

One row per bot, day and trading mode (demo/live).

Revision ID: 0014
Revises: 0013
Create Date: 2025-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(20, 8)


def upgrade() -> None:
    op.create_table(
        "equity_snapshots",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("bot_id", sa.String(50), nullable=False),
        sa.Column("snapshot_date", sa.Date(), nullable=False),
        sa.Column("mode", sa.String(10), nullable=False, server_default=sa.text("'demo'")),
        sa.Column("starting_equity", MONEY, nullable=False),
        sa.Column("ending_equity", MONEY, nullable=False),
        sa.Column("daily_pnl", MONEY, nullable=False),
        sa.Column(
            "daily_pnl_pct",
            MONEY,
            nullable=False,
            comment="Fraction of starting equity (0.05 = 5%)",
        ),
        sa.Column("trades_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("wins_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("losses_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("open_positions", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("source", sa.String(20), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP")
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("CURRENT_TIMESTAMP")
        ),
        sa.PrimaryKeyConstraint("id", name="equity_snapshots_pkey"),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["trading.bots.bot_id"], name="equity_snapshots_bot_id_fkey"
        ),
        sa.UniqueConstraint(
            "bot_id", "snapshot_date", "mode", name="equity_snapshots_bot_id_snapshot_date_mode_key"
        ),
        sa.CheckConstraint("mode IN ('demo', 'live')", name="valid_snapshot_mode"),
        schema="trading",
        comment="Daily equity snapshot per bot and trading mode",
    )


def downgrade() -> None:
    from migration_helpers import refuse_data_loss

    refuse_data_loss("trading", ["equity_snapshots"])
    op.drop_table("equity_snapshots", schema="trading")
