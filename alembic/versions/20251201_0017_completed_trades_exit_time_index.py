"""completed_trades: an index in exit-time order for the cross-bot equity curve

The all-bots realized equity curve (analytics.compare_bots, charts) reads round trips in
exit_time order across bots; without this index the plan sorts a sequential scan (298 ms
on 222k trips in benchmarks/bench_analytics.py). Created CONCURRENTLY would need its own
transaction; the table is small enough in production (2,698 rows) for a plain build.

Revision ID: 0017
Revises: 0016
Create Date: 2025-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "idx_completed_trades_exit_time",
        "completed_trades",
        ["exit_time", "id"],
        schema="trading",
        postgresql_include=["bot_id", "net_pnl", "source"],
    )


def downgrade() -> None:
    op.drop_index("idx_completed_trades_exit_time", "completed_trades", schema="trading")
