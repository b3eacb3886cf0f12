"""Models of schema ``audit``: system and risk events (designed by the platform)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
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
