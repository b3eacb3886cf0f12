"""audit schema: system_events and risk_events, as the platform designed them

Production does not have it yet; adopting production creates it. An existing ``audit``
schema is compared and adopted like the baseline.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-01
"""

from collections.abc import Sequence

from migration_helpers import TableDDL, adopt_or_create, refuse_data_loss

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = [
    TableDDL(
        "system_events",
        [
            """CREATE TABLE {s}.system_events (
    id bigserial NOT NULL,
    event_time timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    event_type character varying(50) NOT NULL,
    event_level character varying(20) NOT NULL,
    bot_id character varying(50),
    component character varying(50),
    message text NOT NULL,
    details jsonb,
    symbol character varying(20),
    order_id character varying(100),
    trade_id character varying(100),
    error_code character varying(50),
    stack_trace text,
    created_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT system_events_pkey PRIMARY KEY (id),
    CONSTRAINT valid_event_level
        CHECK (event_level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'))
)""",
            "COMMENT ON TABLE {s}.system_events IS 'Operational events of every service and bot'",
            "CREATE INDEX idx_system_events_event_time ON {s}.system_events "
            "USING btree (event_time DESC)",
            "CREATE INDEX idx_system_events_level ON {s}.system_events USING btree (event_level)",
            "CREATE INDEX idx_system_events_bot_id ON {s}.system_events USING btree (bot_id)",
            "CREATE INDEX idx_system_events_type ON {s}.system_events USING btree (event_type)",
            "CREATE INDEX idx_system_events_bot_time ON {s}.system_events "
            "USING btree (bot_id, event_time DESC)",
            "CREATE INDEX idx_system_events_details ON {s}.system_events USING gin (details)",
        ],
    ),
    TableDDL(
        "risk_events",
        [
            """CREATE TABLE {s}.risk_events (
    id bigserial NOT NULL,
    event_time timestamp with time zone DEFAULT CURRENT_TIMESTAMP NOT NULL,
    bot_id character varying(50) NOT NULL,
    risk_type character varying(50) NOT NULL,
    current_value numeric(20,8) NOT NULL,
    limit_value numeric(20,8) NOT NULL,
    threshold_pct numeric(5,2),
    action_taken character varying(100) NOT NULL,
    positions_affected integer DEFAULT 0,
    trades_cancelled integer DEFAULT 0,
    resolved boolean DEFAULT false,
    resolved_at timestamp with time zone,
    resolution_notes text,
    created_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT risk_events_pkey PRIMARY KEY (id),
    CONSTRAINT risk_events_bot_id_fkey FOREIGN KEY (bot_id) REFERENCES trading.bots(bot_id)
)""",
            "COMMENT ON TABLE {s}.risk_events IS 'Risk limit breaches and the action taken'",
            "CREATE INDEX idx_risk_events_bot_id ON {s}.risk_events USING btree (bot_id)",
            "CREATE INDEX idx_risk_events_event_time ON {s}.risk_events "
            "USING btree (event_time DESC)",
            "CREATE INDEX idx_risk_events_risk_type ON {s}.risk_events USING btree (risk_type)",
            "CREATE INDEX idx_risk_events_resolved ON {s}.risk_events USING btree (resolved)",
        ],
    ),
]


def upgrade() -> None:
    adopt_or_create("audit", TABLES, "Audit trail: system and risk events")


def downgrade() -> None:
    refuse_data_loss("audit", [t.name for t in TABLES])
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE IF EXISTS audit.{table.name}")
    op.execute("DROP SCHEMA IF EXISTS audit")
