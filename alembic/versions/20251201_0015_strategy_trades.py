"""strategy_trades: each strategy's own record of a trade, linked to the fills it produced

A strategy's trade (Momentum's trade_id, LXAlgo's (symbol, rule_id) opening) carries facts
no fill has: the mode, the signal and rule, stop and target, the strategy's own P&L. Fills
stay the book of record; this table keeps the strategy's view and the link
(``entry_exec_id`` / ``exit_exec_id``).

Revision ID: 0015
Revises: 0014
Create Date: 2025-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(20, 8)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "strategy_trades",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("bot_id", sa.String(50), nullable=False),
        sa.Column("trade_key", sa.String(100), nullable=False, comment="The strategy's own id"),
        sa.Column("mode", sa.String(10), nullable=True, comment="demo or live, when known"),
        sa.Column("symbol", sa.String(20), nullable=False),
        sa.Column("side", sa.String(10), nullable=False),
        sa.Column("rule_id", sa.String(50), nullable=True, comment="Entry rule or signal id"),
        sa.Column("entry_time", TS, nullable=False),
        sa.Column("entry_price", MONEY, nullable=False),
        sa.Column("quantity", MONEY, nullable=False),
        sa.Column("notional_usd", MONEY, nullable=True),
        sa.Column("stop_loss", MONEY, nullable=True),
        sa.Column("take_profit", MONEY, nullable=True),
        sa.Column("signal_strength", MONEY, nullable=True),
        sa.Column("entry_exec_id", sa.String(64), nullable=True),
        sa.Column("exit_time", TS, nullable=True),
        sa.Column("exit_price", MONEY, nullable=True),
        sa.Column("exit_reason", sa.String(50), nullable=True),
        sa.Column("pnl_usd", MONEY, nullable=True, comment="The strategy's own figure"),
        sa.Column("pnl_pct", MONEY, nullable=True, comment="Fraction (0.05 = 5%)"),
        sa.Column("holding_seconds", sa.Integer(), nullable=True),
        sa.Column("exit_exec_id", sa.String(64), nullable=True),
        sa.Column("details", postgresql.JSONB(), nullable=True),
        sa.Column("source", sa.String(20), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.Column("updated_at", TS, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.PrimaryKeyConstraint("id", name="strategy_trades_pkey"),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["trading.bots.bot_id"], name="strategy_trades_bot_id_fkey"
        ),
        sa.UniqueConstraint("bot_id", "trade_key", name="strategy_trades_bot_id_trade_key_key"),
        sa.CheckConstraint("side IN ('Buy', 'Sell')", name="valid_strategy_trade_side"),
        sa.CheckConstraint("quantity > 0", name="positive_strategy_trade_qty"),
        sa.CheckConstraint("entry_price > 0", name="positive_strategy_trade_price"),
        schema="trading",
        comment="Strategies' own trade records, linked to their fills",
    )
    op.create_index(
        "idx_strategy_trades_open",
        "strategy_trades",
        ["bot_id", "symbol"],
        schema="trading",
        postgresql_where=sa.text("exit_time IS NULL"),
    )
    op.create_index(
        "idx_strategy_trades_exit_time",
        "strategy_trades",
        ["bot_id", "exit_time"],
        schema="trading",
    )


def downgrade() -> None:
    from migration_helpers import refuse_data_loss

    refuse_data_loss("trading", ["strategy_trades"])
    op.drop_table("strategy_trades", schema="trading")
