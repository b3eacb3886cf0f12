"""position_entries.side (shorts are first-class); positions.version and last_exec_time

Existing lots were all longs (production's lots are LXAlgo Buy fills), so they get 'Buy'.
``positions.version`` orders cache updates (an older one never overwrites a newer one);
``last_exec_time`` lets the write path detect an out-of-order fill and rebuild.

Revision ID: 0008
Revises: 0007
Create Date: 2025-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "position_entries",
        sa.Column(
            "side",
            sa.String(10),
            nullable=False,
            server_default=sa.text("'Buy'"),
            comment="Buy = long lot, Sell = short lot",
        ),
        schema="trading",
    )
    op.create_check_constraint(
        "valid_entry_side", "position_entries", "side IN ('Buy', 'Sell')", schema="trading"
    )
    op.add_column(
        "positions",
        sa.Column("version", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        schema="trading",
    )
    op.add_column(
        "positions",
        sa.Column("last_exec_time", sa.DateTime(timezone=True), nullable=True),
        schema="trading",
    )


def downgrade() -> None:
    op.drop_column("positions", "last_exec_time", schema="trading")
    op.drop_column("positions", "version", schema="trading")
    op.drop_constraint("valid_entry_side", "position_entries", schema="trading", type_="check")
    op.drop_column("position_entries", "side", schema="trading")
