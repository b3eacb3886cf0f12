"""completed_trades.source: add 'fills' for round trips the P&L engine derives from fills

Revision ID: 0013
Revises: 0012
Create Date: 2025-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(
        "completed_trades_source_check", "completed_trades", schema="trading", type_="check"
    )
    op.create_check_constraint(
        "completed_trades_source_check",
        "completed_trades",
        "source IN ('bybit_api', 'websocket', 'manual', 'fills')",
        schema="trading",
    )


def downgrade() -> None:
    from migration_helpers import data_loss_allowed

    conn = op.get_bind()
    derived = conn.exec_driver_sql(
        "SELECT count(*) FROM trading.completed_trades WHERE source = 'fills'"
    ).scalar()
    if derived and not data_loss_allowed():
        raise RuntimeError(
            f"refusing to downgrade: {derived} completed_trades rows have source 'fills'; "
            "rerun with `-x allow-data-loss=yes` to delete them (they are rebuilt from fills)"
        )
    op.execute("DELETE FROM trading.completed_trades WHERE source = 'fills'")
    op.drop_constraint(
        "completed_trades_source_check", "completed_trades", schema="trading", type_="check"
    )
    op.create_check_constraint(
        "completed_trades_source_check",
        "completed_trades",
        "source IN ('bybit_api', 'websocket', 'manual')",
        schema="trading",
    )
