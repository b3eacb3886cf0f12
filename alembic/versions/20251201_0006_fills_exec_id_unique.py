"""fills: one row per execution (exec_id NOT NULL and UNIQUE)

Revision ID: 0006
Revises: 0005
Create Date: 2025-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("fills", "exec_id", nullable=False, schema="trading")
    op.create_unique_constraint("fills_exec_id_key", "fills", ["exec_id"], schema="trading")


def downgrade() -> None:
    op.drop_constraint("fills_exec_id_key", "fills", schema="trading", type_="unique")
    op.alter_column("fills", "exec_id", nullable=True, schema="trading")
