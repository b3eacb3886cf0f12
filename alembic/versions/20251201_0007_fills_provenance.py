"""fills: exec_type and source, so funding and provisional self-reports are told apart

``exec_type`` is Bybit's execType (legacy rows: 'Trade', which is what they claim to be);
``source`` names the writer (listener, adapter, reconcile, import, tracker...), NULL for
legacy rows.

Revision ID: 0007
Revises: 0006
Create Date: 2025-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "fills",
        sa.Column(
            "exec_type",
            sa.String(20),
            nullable=False,
            server_default=sa.text("'Trade'"),
            comment="Bybit execType (Trade, AdlTrade, BustTrade, ...)",
        ),
        schema="trading",
    )
    op.add_column(
        "fills",
        sa.Column(
            "source",
            sa.String(20),
            nullable=True,
            comment="Writer of the row (listener, adapter, reconcile, import, tracker); "
            "NULL for legacy rows",
        ),
        schema="trading",
    )


def downgrade() -> None:
    op.drop_column("fills", "source", schema="trading")
    op.drop_column("fills", "exec_type", schema="trading")
