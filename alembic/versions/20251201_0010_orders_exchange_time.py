"""orders: Bybit's order statuses: the exchange's update time (so an out-of-order update
never rolls a status back), status widened to 30 characters (``PartiallyFilledCanceled``
has 23) and a check that status is one of Bybit's statuses

Revision ID: 0010
Revises: 0009
Create Date: 2025-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = (
    "Created",
    "Active",
    "New",
    "PartiallyFilled",
    "Untriggered",
    "Triggered",
    "Rejected",
    "PartiallyFilledCanceled",
    "Filled",
    "Cancelled",
    "Deactivated",
)


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column(
            "exchange_updated_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="Bybit updatedTime of the state stored; NULL for legacy rows",
        ),
        schema="trading",
    )
    op.alter_column(
        "orders",
        "status",
        type_=sa.String(30),
        existing_type=sa.String(20),
        existing_nullable=False,
        schema="trading",
    )
    listed = ", ".join(f"'{s}'" for s in STATUSES)
    op.create_check_constraint(
        "valid_order_status", "orders", f"status IN ({listed})", schema="trading"
    )


def downgrade() -> None:
    op.drop_constraint("valid_order_status", "orders", schema="trading", type_="check")
    op.alter_column(
        "orders",
        "status",
        type_=sa.String(20),
        existing_type=sa.String(30),
        existing_nullable=False,
        schema="trading",
    )
    op.drop_column("orders", "exchange_updated_at", schema="trading")
