"""Models of schema ``trading``: exactly production's tables (CONTRACT.md), then what later
migrations add. Column names, types, nullability, defaults, checks and index names follow
the production catalog; see ``alembic/versions`` for the DDL that builds or adopts them.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    FetchedValue,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from alpha_models.base import Base

SCHEMA = "trading"
NOW = text("CURRENT_TIMESTAMP")


class Bot(Base):
    __tablename__ = "bots"
    __table_args__ = (
        CheckConstraint("deployment_mode IN ('live', 'demo')", name="valid_mode"),
        CheckConstraint("status IN ('active', 'paused', 'stopped')", name="valid_status"),
        Index("idx_bots_status", "status"),
        Index("idx_bots_type", "bot_type"),
        {"schema": SCHEMA, "comment": "Registry of all trading bots"},
    )

    bot_id: Mapped[str] = mapped_column(String(50), primary_key=True)
    bot_name: Mapped[str] = mapped_column(String(100))
    bot_type: Mapped[str] = mapped_column(String(50))
    strategy_name: Mapped[str] = mapped_column(String(100))
    status: Mapped[str | None] = mapped_column(String(20), server_default=text("'active'"))
    deployment_mode: Mapped[str] = mapped_column(String(20))
    initial_capital: Mapped[Decimal]
    current_equity: Mapped[Decimal | None]
    created_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
    #: Not maintained by a trigger: writers set it.
    updated_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
    last_heartbeat: Mapped[datetime | None]


class Fill(Base):
    """One execution: the book of record."""

    __tablename__ = "fills"
    __table_args__ = (
        CheckConstraint("exec_price > 0", name="positive_price"),
        CheckConstraint("exec_qty > 0", name="positive_qty"),
        CheckConstraint("side IN ('Buy', 'Sell')", name="valid_side"),
        Index("idx_fills_client_id", "client_order_id"),
        Index("idx_fills_close_reason", "close_reason"),
        Index("idx_fills_order_id", "order_id"),
        {"schema": SCHEMA, "comment": "Executions (fills): the book of record"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(50))
    symbol: Mapped[str] = mapped_column(String(20))
    #: Bybit ``orderId`` (or a synthetic id in old self-reported rows).
    order_id: Mapped[str] = mapped_column(String(100))
    #: Bybit ``orderLinkId``; ``''`` when the order carried none.
    client_order_id: Mapped[str] = mapped_column(String(100))
    side: Mapped[str] = mapped_column(String(10))
    exec_price: Mapped[Decimal]
    exec_qty: Mapped[Decimal]
    exec_time: Mapped[datetime]
    close_reason: Mapped[str | None] = mapped_column(String(50))
    #: Fee charged for this execution in USDT; negative is a rebate.
    commission: Mapped[Decimal]
    created_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
    exec_id: Mapped[str] = mapped_column(
        String(64),
        unique=True,
        comment="Bybit execId; legacy rows: 'legacy:' || md5 of their content",
    )
    exec_type: Mapped[str] = mapped_column(
        String(20),
        server_default=text("'Trade'"),
        comment="Bybit execType (Trade, AdlTrade, BustTrade, ...)",
    )
    source: Mapped[str | None] = mapped_column(
        String(20),
        comment="Writer of the row (listener, adapter, reconcile, import, tracker); "
        "NULL for legacy rows",
    )


Index("idx_fills_bot_symbol", Fill.bot_id, Fill.symbol, Fill.exec_time.desc())
Index("idx_fills_exec_time", Fill.exec_time.desc())


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="positive_qty"),
        CheckConstraint("side IN ('Buy', 'Sell')", name="valid_order_side"),
        CheckConstraint(
            "status IN ('Created', 'Active', 'New', 'PartiallyFilled', 'Untriggered', "
            "'Triggered', 'Rejected', 'PartiallyFilledCanceled', 'Filled', 'Cancelled', "
            "'Deactivated')",
            name="valid_order_status",
        ),
        Index("idx_orders_bot_id", "bot_id"),
        Index("idx_orders_client_id", "client_order_id"),
        Index("idx_orders_status", "status"),
        {"schema": SCHEMA, "comment": "Latest known state of each order (from the order stream)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(50))
    symbol: Mapped[str] = mapped_column(String(20))
    order_id: Mapped[str] = mapped_column(String(100), unique=True)
    client_order_id: Mapped[str] = mapped_column(String(100))
    order_type: Mapped[str] = mapped_column(String(20))
    side: Mapped[str] = mapped_column(String(10))
    quantity: Mapped[Decimal]
    #: Limit or slippage-protection price; 0 for conditional TP/SL orders.
    price: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
    updated_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
    exchange_updated_at: Mapped[datetime | None] = mapped_column(
        comment="Bybit updatedTime of the state stored; NULL for legacy rows"
    )


class Position(Base):
    __tablename__ = "positions"
    __table_args__ = (
        UniqueConstraint("bot_id", "symbol", name="unique_bot_symbol"),
        Index("idx_positions_bot_id", "bot_id"),
        Index("idx_positions_symbol", "symbol"),
        {"schema": SCHEMA, "comment": "Current position per bot and symbol"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(50))
    symbol: Mapped[str] = mapped_column(String(20))
    #: Absolute size; 0 when flat.
    size: Mapped[Decimal]
    #: ``Buy`` (long), ``Sell`` (short) or ``''`` when flat.
    side: Mapped[str | None] = mapped_column(String(10))
    avg_entry_price: Mapped[Decimal | None]
    updated_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
    #: Incremented on every change; orders cache updates (older never overwrites newer).
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    #: Exec time of the newest fill applied; an older fill triggers a rebuild.
    last_exec_time: Mapped[datetime | None]
    #: The open lots' totals, kept by the write path so that a fill does not re-sum them
    #: (migration 0019); trusted only while they agree with ``size`` and ``side``.
    open_qty: Mapped[Decimal | None] = mapped_column(
        comment="Signed sum of the open lots' remaining quantity (> 0 long, < 0 short), kept "
        "by the write path; NULL: unknown (recomputed from the lots)"
    )
    open_cost: Mapped[Decimal | None] = mapped_column(
        Numeric,
        comment="Exact sum of remaining quantity x entry price over the open lots, kept by the "
        "write path; NULL: unknown (recomputed from the lots)",
    )


class PositionEntry(Base):
    """One FIFO lot: an entry fill and how much of it is still open."""

    __tablename__ = "position_entries"
    __table_args__ = (
        CheckConstraint(
            "remaining_qty >= 0 AND remaining_qty <= original_qty", name="chk_quantities"
        ),
        CheckConstraint("status IN ('open', 'partially_closed', 'closed')", name="chk_status"),
        CheckConstraint("side IN ('Buy', 'Sell')", name="valid_entry_side"),
        ForeignKeyConstraint(["bot_id"], ["trading.bots.bot_id"], name="fk_position_entries_bot"),
        ForeignKeyConstraint(
            ["entry_fill_id"], ["trading.fills.id"], name="fk_position_entries_fill"
        ),
        Index("idx_position_entries_bot_symbol", "bot_id", "symbol", "status"),
        Index("idx_position_entries_entry_time", "entry_time"),
        Index(
            "idx_position_entries_status",
            "status",
            postgresql_where=text("status <> 'closed'"),
        ),
        {"schema": SCHEMA, "comment": "FIFO lots of open and closed positions"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(50))
    symbol: Mapped[str] = mapped_column(String(20))
    entry_id: Mapped[str] = mapped_column(String(100), unique=True)
    entry_price: Mapped[Decimal]
    original_qty: Mapped[Decimal]
    remaining_qty: Mapped[Decimal]
    entry_time: Mapped[datetime]
    entry_fill_id: Mapped[int | None] = mapped_column(BigInteger)
    entry_order_id: Mapped[str | None] = mapped_column(String(100))
    entry_commission: Mapped[Decimal | None] = mapped_column(server_default=text("0"))
    status: Mapped[str | None] = mapped_column(String(20), server_default=text("'open'"))
    created_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
    #: Maintained by trigger ``trigger_update_position_entries_timestamp``.
    updated_at: Mapped[datetime | None] = mapped_column(
        server_default=NOW, server_onupdate=FetchedValue()
    )
    side: Mapped[str] = mapped_column(
        String(10), server_default=text("'Buy'"), comment="Buy = long lot, Sell = short lot"
    )


class CompletedTrade(Base):
    """A round trip (entry and exit) with its P&L."""

    __tablename__ = "completed_trades"
    __table_args__ = (
        CheckConstraint(
            "source IN ('bybit_api', 'websocket', 'manual', 'fills')",
            name="completed_trades_source_check",
        ),
        CheckConstraint(
            "(entry_side = 'Buy' AND exit_side = 'Sell') "
            "OR (entry_side = 'Sell' AND exit_side = 'Buy')",
            name="valid_sides",
        ),
        CheckConstraint("exit_time > entry_time", name="valid_times"),
        UniqueConstraint("bot_id", "symbol", "entry_time", "exit_time", name="unique_trade"),
        Index(
            "idx_completed_trades_entry_reason",
            "entry_reason",
            postgresql_where=text("entry_reason IS NOT NULL"),
        ),
        Index(
            "idx_completed_trades_exit_reason",
            "exit_reason",
            postgresql_where=text("exit_reason IS NOT NULL"),
        ),
        Index("idx_completed_trades_trade_id", "trade_id"),
        {
            "schema": SCHEMA,
            "comment": (
                "Stores completed trades synced from Bybit API every hour with execution "
                "reasons preserved"
            ),
        },
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    trade_id: Mapped[str] = mapped_column(String(100), unique=True)
    bot_id: Mapped[str] = mapped_column(String(50), ForeignKey("trading.bots.bot_id"))
    symbol: Mapped[str] = mapped_column(String(20))
    entry_order_id: Mapped[str | None] = mapped_column(String(100))
    entry_client_order_id: Mapped[str | None] = mapped_column(
        String(100), comment="Format: bot_id:reason:timestamp - contains entry execution reason"
    )
    entry_side: Mapped[str] = mapped_column(String(10))
    entry_price: Mapped[Decimal]
    entry_qty: Mapped[Decimal]
    entry_time: Mapped[datetime]
    entry_reason: Mapped[str | None] = mapped_column(String(50))
    entry_commission: Mapped[Decimal | None] = mapped_column(server_default=text("0"))
    exit_order_id: Mapped[str | None] = mapped_column(String(100))
    exit_client_order_id: Mapped[str | None] = mapped_column(
        String(100),
        comment=(
            "Format: bot_id:reason:timestamp - contains exit/close reason "
            "(e.g., take_profit, stop_loss, trailing_stop)"
        ),
    )
    exit_side: Mapped[str] = mapped_column(String(10))
    exit_price: Mapped[Decimal]
    exit_qty: Mapped[Decimal]
    exit_time: Mapped[datetime]
    exit_reason: Mapped[str | None] = mapped_column(String(50))
    exit_commission: Mapped[Decimal | None] = mapped_column(server_default=text("0"))
    gross_pnl: Mapped[Decimal | None]
    net_pnl: Mapped[Decimal | None]
    #: Percent (not a fraction) of the entry notional.
    pnl_pct: Mapped[Decimal | None] = mapped_column(Numeric(10, 6))
    total_commission: Mapped[Decimal | None]
    holding_duration_seconds: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str | None] = mapped_column(
        String(20),
        server_default=text("'bybit_api'"),
        comment="Data source: bybit_api (hourly sync), websocket (real-time), manual (admin)",
    )
    synced_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
    created_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
    updated_at: Mapped[datetime | None] = mapped_column(server_default=NOW)


Index("idx_completed_trades_bot", CompletedTrade.bot_id, CompletedTrade.exit_time.desc())
Index("idx_completed_trades_pnl", CompletedTrade.bot_id, CompletedTrade.net_pnl.desc())
Index("idx_completed_trades_symbol", CompletedTrade.symbol, CompletedTrade.exit_time.desc())
Index("idx_completed_trades_sync", CompletedTrade.synced_at.desc())
Index(
    "idx_completed_trades_exit_time",
    CompletedTrade.exit_time,
    CompletedTrade.id,
    postgresql_include=["bot_id", "net_pnl", "source"],
)


class SyncStatus(Base):
    __tablename__ = "sync_status"
    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'completed', 'failed', 'partial')",
            name="sync_status_status_check",
        ),
        CheckConstraint(
            "sync_type IN ('backfill', 'hourly', 'manual')", name="sync_status_sync_type_check"
        ),
        UniqueConstraint(
            "bot_id", "sync_type", "start_time", "end_time", name="unique_sync_window"
        ),
        Index("idx_sync_status_type", "sync_type", "status"),
        {"schema": SCHEMA, "comment": "Tracks sync job execution for monitoring and debugging"},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(50), ForeignKey("trading.bots.bot_id"))
    sync_type: Mapped[str] = mapped_column(String(20))
    start_time: Mapped[datetime]
    end_time: Mapped[datetime]
    trades_synced: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    status: Mapped[str | None] = mapped_column(String(20), server_default=text("'running'"))
    error_message: Mapped[str | None] = mapped_column(Text)
    sync_started_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
    sync_completed_at: Mapped[datetime | None]
    duration_seconds: Mapped[int | None] = mapped_column(Integer)


Index("idx_sync_status_bot", SyncStatus.bot_id, SyncStatus.sync_started_at.desc())


class FundingSettlement(Base):
    """A funding payment (Bybit execType ``Funding``): money, but never a trade or a lot."""

    __tablename__ = "funding_settlements"
    __table_args__ = (
        CheckConstraint("side IN ('Buy', 'Sell')", name="valid_funding_side"),
        Index("idx_funding_settlements_bot_symbol", "bot_id", "symbol", "exec_time"),
        {"schema": SCHEMA, "comment": "Funding settlements (Bybit execType Funding): never trades"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    exec_id: Mapped[str] = mapped_column(String(64), unique=True)
    bot_id: Mapped[str] = mapped_column(String(50))
    symbol: Mapped[str] = mapped_column(String(20))
    side: Mapped[str] = mapped_column(String(10))
    position_qty: Mapped[Decimal]
    mark_price: Mapped[Decimal]
    fee: Mapped[Decimal] = mapped_column(
        comment="Funding paid (positive) or received (negative), USDT"
    )
    exec_time: Mapped[datetime]
    source: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime | None] = mapped_column(server_default=NOW)


class ExchangePosition(Base):
    """A position as Bybit reports it (the position stream), per owner, symbol, positionIdx."""

    __tablename__ = "exchange_positions"
    __table_args__ = (
        UniqueConstraint("bot_id", "symbol", "position_idx"),
        CheckConstraint("side IN ('Buy', 'Sell', '')", name="valid_exchange_position_side"),
        CheckConstraint("size >= 0", name="nonnegative_size"),
        {
            "schema": SCHEMA,
            "comment": "Positions as the exchange reports them (position stream), newest wins",
        },
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(50))
    symbol: Mapped[str] = mapped_column(String(20))
    position_idx: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    side: Mapped[str] = mapped_column(String(10), comment="Buy, Sell, or '' when flat")
    size: Mapped[Decimal]
    entry_price: Mapped[Decimal | None]
    mark_price: Mapped[Decimal | None]
    unrealised_pnl: Mapped[Decimal | None]
    exchange_updated_at: Mapped[datetime]
    updated_at: Mapped[datetime | None] = mapped_column(server_default=NOW)


class EquitySnapshot(Base):
    """A bot's equity at the end of a day, per trading mode."""

    __tablename__ = "equity_snapshots"
    __table_args__ = (
        UniqueConstraint("bot_id", "snapshot_date", "mode"),
        CheckConstraint("mode IN ('demo', 'live')", name="valid_snapshot_mode"),
        {"schema": SCHEMA, "comment": "Daily equity snapshot per bot and trading mode"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(50), ForeignKey("trading.bots.bot_id"))
    snapshot_date: Mapped[date] = mapped_column(Date)
    mode: Mapped[str] = mapped_column(String(10), server_default=text("'demo'"))
    starting_equity: Mapped[Decimal]
    ending_equity: Mapped[Decimal]
    daily_pnl: Mapped[Decimal]
    daily_pnl_pct: Mapped[Decimal] = mapped_column(
        comment="Fraction of starting equity (0.05 = 5%)"
    )
    trades_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    wins_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    losses_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    open_positions: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    source: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
    updated_at: Mapped[datetime | None] = mapped_column(server_default=NOW)


class StrategyTrade(Base):
    """A strategy's own record of one trade, linked to the fills it produced."""

    __tablename__ = "strategy_trades"
    __table_args__ = (
        UniqueConstraint("bot_id", "trade_key"),
        CheckConstraint("side IN ('Buy', 'Sell')", name="valid_strategy_trade_side"),
        CheckConstraint("quantity > 0", name="positive_strategy_trade_qty"),
        CheckConstraint("entry_price > 0", name="positive_strategy_trade_price"),
        Index(
            "idx_strategy_trades_open",
            "bot_id",
            "symbol",
            postgresql_where=text("exit_time IS NULL"),
        ),
        Index("idx_strategy_trades_exit_time", "bot_id", "exit_time"),
        {"schema": SCHEMA, "comment": "Strategies' own trade records, linked to their fills"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bot_id: Mapped[str] = mapped_column(String(50), ForeignKey("trading.bots.bot_id"))
    trade_key: Mapped[str] = mapped_column(String(100), comment="The strategy's own id")
    mode: Mapped[str | None] = mapped_column(String(10), comment="demo or live, when known")
    symbol: Mapped[str] = mapped_column(String(20))
    side: Mapped[str] = mapped_column(String(10))
    rule_id: Mapped[str | None] = mapped_column(String(50), comment="Entry rule or signal id")
    entry_time: Mapped[datetime]
    entry_price: Mapped[Decimal]
    quantity: Mapped[Decimal]
    notional_usd: Mapped[Decimal | None]
    stop_loss: Mapped[Decimal | None]
    take_profit: Mapped[Decimal | None]
    signal_strength: Mapped[Decimal | None]
    entry_exec_id: Mapped[str | None] = mapped_column(String(64))
    exit_time: Mapped[datetime | None]
    exit_price: Mapped[Decimal | None]
    exit_reason: Mapped[str | None] = mapped_column(String(50))
    pnl_usd: Mapped[Decimal | None] = mapped_column(comment="The strategy's own figure")
    pnl_pct: Mapped[Decimal | None] = mapped_column(comment="Fraction (0.05 = 5%)")
    holding_seconds: Mapped[int | None] = mapped_column(Integer)
    exit_exec_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | list[Any] | None] = mapped_column(JSONB)
    source: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
    updated_at: Mapped[datetime | None] = mapped_column(server_default=NOW)


class DbRole(Base):
    """A platform group role and the bot it may write for (row-level security, 0016)."""

    __tablename__ = "db_roles"
    __table_args__ = (
        CheckConstraint("kind IN ('bot', 'listener', 'analytics')", name="valid_role_kind"),
        CheckConstraint("(kind = 'bot') = (bot_id IS NOT NULL)", name="bot_role_names_its_bot"),
        {
            "schema": SCHEMA,
            "comment": (
                "Group roles of the platform and the bot each may write for (row-level "
                "security); login roles are members of them"
            ),
        },
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role_name: Mapped[str] = mapped_column(String(63), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    bot_id: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime | None] = mapped_column(server_default=NOW)
