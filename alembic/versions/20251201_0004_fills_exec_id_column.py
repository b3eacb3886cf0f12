"""fills: add exec_id (Bybit's execution id), nullable until the backfill

Revision ID: 0004
Revises: 0003
Create Date: 2025-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "fills",
        sa.Column(
            "exec_id",
            sa.String(64),
            nullable=True,
            comment="Bybit execId; legacy rows: 'legacy:' || md5 of their content",
        ),
        schema="trading",
    )


def downgrade() -> None:
    op.drop_column("fills", "exec_id", schema="trading")
