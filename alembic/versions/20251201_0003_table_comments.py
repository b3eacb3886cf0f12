"""comment the production tables that had none (fills, orders, positions, position_entries)

Metadata only: no row, column or constraint changes.

Revision ID: 0003
Revises: 0002
Create Date: 2025-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENTS = {
    "fills": "Executions (fills): the book of record",
    "orders": "Latest known state of each order (from the order stream)",
    "positions": "Current position per bot and symbol",
    "position_entries": "FIFO lots of open and closed positions",
}


def upgrade() -> None:
    for table, comment in COMMENTS.items():
        op.execute(f"COMMENT ON TABLE trading.{table} IS '{comment}'")


def downgrade() -> None:
    for table in COMMENTS:
        op.execute(f"COMMENT ON TABLE trading.{table} IS NULL")
