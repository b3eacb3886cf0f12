"""Models of schema ``audit``: system and risk events (designed by the platform), and the
quarantine of rows reconciliation moved out of the book of record (migration 0018)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from alpha_models.base import Base

SCHEMA = "audit"
NOW = text("CURRENT_TIMESTAMP")


class SystemEvent(Base):
    __tablename__ = "system_events"
    __table_args__ = (
        CheckConstraint(
            "event_level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')",
            name="valid_event_level",
        ),
        Index("idx_system_events_level", "event_level"),
        Index("idx_system_events_bot_id", "bot_id"),
        Index("idx_system_events_type", "event_type"),
        Index("idx_system_events_details", "details", postgresql_using="gin"),
        {"schema": SCHEMA, "comment": "Operational events of every service and bot"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_time: Mapped[datetime] = mapped_column(server_default=NOW)
    event_type: Mapped[str] = mapped_column(String(50))
    event_level: Mapped[str] = mapped_column(String(20))
    bot_id: Mapped[str | None] = mapped_column(String(50))
    component: Mapped[str | None] = mapped_column(String(50))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any] | list[Any] | None] = mapped_column(JSONB)
    symbol: Mapped[str | None] = mapped_column(String(20))
    order_id: Mapped[str | None] = mapped_column(String(100))
    trade_id: Mapped[str | None] = mapped_column(String(100))
    error_code: Mapped[str | None] = mapped_column(String(50))
    stack_trace: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(server_default=NOW)


Index("idx_system_events_event_time", SystemEvent.event_time.desc())
Index("idx_system_events_bot_time", SystemEvent.bot_id, SystemEvent.event_time.desc())


class RiskEvent(Base):
    __tablename__ = "risk_events"
    __table_args__ = (
        Index("idx_risk_events_bot_id", "bot_id"),
        Index("idx_risk_events_risk_type", "risk_type"),
        Index("idx_risk_events_resolved", "resolved"),
        {"schema": SCHEMA, "comment": "Risk limit breaches and the action taken"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_time: Mapped[datetime] = mapped_column(server_default=NOW)
    bot_id: Mapped[str] = mapped_column(String(50), ForeignKey("trading.bots.bot_id"))
    risk_type: Mapped[str] = mapped_column(String(50))
    #: The measured value (e.g. a loss fraction, negative for a loss).
    current_value: Mapped[Decimal]
    limit_value: Mapped[Decimal]
    threshold_pct: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    action_taken: Mapped[str] = mapped_column(String(100))
    positions_affected: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    trades_cancelled: Mapped[int | None] = mapped_column(Integer, server_default=text("0"))
    resolved: Mapped[bool | None] = mapped_column(Boolean, server_default=text("false"))
    resolved_at: Mapped[datetime | None]
    resolution_notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(server_default=NOW)


Index("idx_risk_events_event_time", RiskEvent.event_time.desc())


# ------------------------------------------------------------------------------ quarantine
# Rows ``alpha-db reconcile --apply`` voided: an execution the exchange's complete record does
# not have. Every column of the original row is kept, under its own name and type (``id`` is
# the original row's id), followed by when, why, by whom and in which sync run it was moved,
# so that ``alpha-db reconcile-restore EXEC_ID`` can put it back. Written only by the owner
# (no row security, no write grant: a service role may read it, never change it).

QUARANTINED_BY = text("CURRENT_USER")


class QuarantinedFill(Base):
    """A ``trading.fills`` row voided by reconciliation, exactly as it was."""

    __tablename__ = "quarantined_fills"
    __table_args__ = (
        ForeignKeyConstraint(
            ["sync_id"], ["trading.sync_status.id"], name="quarantined_fills_sync_id_fkey"
        ),
        Index("idx_quarantined_fills_exec_id", "exec_id"),
        {
            "schema": SCHEMA,
            "comment": "Fills voided by reconciliation (on no page of a complete exchange "
            "record), every column kept; alpha-db reconcile-restore puts one back",
        },
    )

    id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False, comment="trading.fills.id of the row"
    )
    bot_id: Mapped[str] = mapped_column(String(50))
    symbol: Mapped[str] = mapped_column(String(20))
    order_id: Mapped[str] = mapped_column(String(100))
    client_order_id: Mapped[str] = mapped_column(String(100))
    side: Mapped[str] = mapped_column(String(10))
    exec_price: Mapped[Decimal]
    exec_qty: Mapped[Decimal]
    exec_time: Mapped[datetime]
    close_reason: Mapped[str | None] = mapped_column(String(50))
    commission: Mapped[Decimal]
    created_at: Mapped[datetime | None]
    exec_id: Mapped[str] = mapped_column(String(64))
    exec_type: Mapped[str] = mapped_column(String(20))
    source: Mapped[str | None] = mapped_column(String(20))
    quarantined_at: Mapped[datetime] = mapped_column(server_default=NOW)
    quarantined_by: Mapped[str] = mapped_column(
        String(63), server_default=QUARANTINED_BY, comment="Database role that moved it"
    )
    reason: Mapped[str] = mapped_column(Text)
    sync_id: Mapped[int | None] = mapped_column(
        Integer, comment="trading.sync_status.id of the reconcile run"
    )
    #: The discrepancy as reconciliation saw it (window, record, row image).
    details: Mapped[dict[str, Any] | list[Any] | None] = mapped_column(JSONB)


class QuarantinedFundingSettlement(Base):
    """A ``trading.funding_settlements`` row voided by reconciliation, exactly as it was."""

    __tablename__ = "quarantined_funding_settlements"
    __table_args__ = (
        ForeignKeyConstraint(
            ["sync_id"],
            ["trading.sync_status.id"],
            name="quarantined_funding_settlements_sync_id_fkey",
        ),
        Index("idx_quarantined_funding_settlements_exec_id", "exec_id"),
        {
            "schema": SCHEMA,
            "comment": "Funding settlements voided by reconciliation, every column kept; "
            "alpha-db reconcile-restore puts one back",
        },
    )

    id: Mapped[int] = mapped_column(
        BigInteger,
        primary_key=True,
        autoincrement=False,
        comment="trading.funding_settlements.id of the row",
    )
    exec_id: Mapped[str] = mapped_column(String(64))
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
    created_at: Mapped[datetime | None]
    quarantined_at: Mapped[datetime] = mapped_column(server_default=NOW)
    quarantined_by: Mapped[str] = mapped_column(
        String(63), server_default=QUARANTINED_BY, comment="Database role that moved it"
    )
    reason: Mapped[str] = mapped_column(Text)
    sync_id: Mapped[int | None] = mapped_column(
        Integer, comment="trading.sync_status.id of the reconcile run"
    )
    details: Mapped[dict[str, Any] | list[Any] | None] = mapped_column(JSONB)
