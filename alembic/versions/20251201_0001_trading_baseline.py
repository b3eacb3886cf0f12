"""trading baseline: production's schema as it is (state c), built or adopted

Builds the ``trading`` schema on an empty database, exactly as production has it: tables,
sequences, constraints and indexes with production's names, the position_entries trigger,
the four views and the comments. On a database that already holds the schema (any of the
states a, b, c of CONTRACT.md, restored from a dump, no Alembic history) it compares each
existing table with this DDL built in a scratch schema, stops with a description if a
column differs, adds only what is missing, and never touches a row or a sequence value.

Revision ID: 0001
Revises:
Create Date: 2025-12-01
"""

from collections.abc import Sequence

from migration_helpers import (
    TableDDL,
    adopt_or_create,
    function_exists,
    refuse_data_loss,
    relation_exists,
    trigger_exists,
)

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = "DEFAULT CURRENT_TIMESTAMP"

TABLES = [
    TableDDL(
        "bots",
        [
            f"""CREATE TABLE {{s}}.bots (
    bot_id character varying(50) NOT NULL,
    bot_name character varying(100) NOT NULL,
    bot_type character varying(50) NOT NULL,
    strategy_name character varying(100) NOT NULL,
    status character varying(20) DEFAULT 'active'::character varying,
    deployment_mode character varying(20) NOT NULL,
    initial_capital numeric(20,8) NOT NULL,
    current_equity numeric(20,8),
    created_at timestamp with time zone {NOW},
    updated_at timestamp with time zone {NOW},
    last_heartbeat timestamp with time zone,
    CONSTRAINT bots_pkey PRIMARY KEY (bot_id),
    CONSTRAINT valid_mode CHECK (deployment_mode IN ('live', 'demo')),
    CONSTRAINT valid_status CHECK (status IN ('active', 'paused', 'stopped'))
)""",
            "COMMENT ON TABLE {s}.bots IS 'Registry of all trading bots'",
            "CREATE INDEX idx_bots_status ON {s}.bots USING btree (status)",
            "CREATE INDEX idx_bots_type ON {s}.bots USING btree (bot_type)",
        ],
    ),
    TableDDL(
        "fills",
        [
            f"""CREATE TABLE {{s}}.fills (
    id bigserial NOT NULL,
    bot_id character varying(50) NOT NULL,
    symbol character varying(20) NOT NULL,
    order_id character varying(100) NOT NULL,
    client_order_id character varying(100) NOT NULL,
    side character varying(10) NOT NULL,
    exec_price numeric(20,8) NOT NULL,
    exec_qty numeric(20,8) NOT NULL,
    exec_time timestamp with time zone NOT NULL,
    close_reason character varying(50),
    commission numeric(20,8) NOT NULL,
    created_at timestamp with time zone {NOW},
    CONSTRAINT fills_pkey PRIMARY KEY (id),
    CONSTRAINT positive_price CHECK (exec_price > 0),
    CONSTRAINT positive_qty CHECK (exec_qty > 0),
    CONSTRAINT valid_side CHECK (side IN ('Buy', 'Sell'))
)""",
            "CREATE INDEX idx_fills_bot_symbol ON {s}.fills "
            "USING btree (bot_id, symbol, exec_time DESC)",
            "CREATE INDEX idx_fills_client_id ON {s}.fills USING btree (client_order_id)",
            "CREATE INDEX idx_fills_close_reason ON {s}.fills USING btree (close_reason)",
            "CREATE INDEX idx_fills_exec_time ON {s}.fills USING btree (exec_time DESC)",
            "CREATE INDEX idx_fills_order_id ON {s}.fills USING btree (order_id)",
        ],
    ),
    TableDDL(
        "orders",
        [
            f"""CREATE TABLE {{s}}.orders (
    id bigserial NOT NULL,
    bot_id character varying(50) NOT NULL,
    symbol character varying(20) NOT NULL,
    order_id character varying(100) NOT NULL,
    client_order_id character varying(100) NOT NULL,
    order_type character varying(20) NOT NULL,
    side character varying(10) NOT NULL,
    quantity numeric(20,8) NOT NULL,
    price numeric(20,8),
    status character varying(20) NOT NULL,
    created_at timestamp with time zone {NOW},
    updated_at timestamp with time zone {NOW},
    CONSTRAINT orders_pkey PRIMARY KEY (id),
    CONSTRAINT orders_order_id_key UNIQUE (order_id),
    CONSTRAINT positive_qty CHECK (quantity > 0),
    CONSTRAINT valid_order_side CHECK (side IN ('Buy', 'Sell'))
)""",
            "CREATE INDEX idx_orders_bot_id ON {s}.orders USING btree (bot_id)",
            "CREATE INDEX idx_orders_client_id ON {s}.orders USING btree (client_order_id)",
            "CREATE INDEX idx_orders_status ON {s}.orders USING btree (status)",
        ],
    ),
    TableDDL(
        "positions",
        [
            f"""CREATE TABLE {{s}}.positions (
    id serial NOT NULL,
    bot_id character varying(50) NOT NULL,
    symbol character varying(20) NOT NULL,
    size numeric(20,8) NOT NULL,
    side character varying(10),
    avg_entry_price numeric(20,8),
    updated_at timestamp with time zone {NOW},
    CONSTRAINT positions_pkey PRIMARY KEY (id),
    CONSTRAINT unique_bot_symbol UNIQUE (bot_id, symbol)
)""",
            "CREATE INDEX idx_positions_bot_id ON {s}.positions USING btree (bot_id)",
            "CREATE INDEX idx_positions_symbol ON {s}.positions USING btree (symbol)",
        ],
    ),
    TableDDL(
        "completed_trades",
        [
            f"""CREATE TABLE {{s}}.completed_trades (
    id bigserial NOT NULL,
    trade_id character varying(100) NOT NULL,
    bot_id character varying(50) NOT NULL,
    symbol character varying(20) NOT NULL,
    entry_order_id character varying(100),
    entry_client_order_id character varying(100),
    entry_side character varying(10) NOT NULL,
    entry_price numeric(20,8) NOT NULL,
    entry_qty numeric(20,8) NOT NULL,
    entry_time timestamp with time zone NOT NULL,
    entry_reason character varying(50),
    entry_commission numeric(20,8) DEFAULT 0,
    exit_order_id character varying(100),
    exit_client_order_id character varying(100),
    exit_side character varying(10) NOT NULL,
    exit_price numeric(20,8) NOT NULL,
    exit_qty numeric(20,8) NOT NULL,
    exit_time timestamp with time zone NOT NULL,
    exit_reason character varying(50),
    exit_commission numeric(20,8) DEFAULT 0,
    gross_pnl numeric(20,8),
    net_pnl numeric(20,8),
    pnl_pct numeric(10,6),
    total_commission numeric(20,8),
    holding_duration_seconds integer,
    source character varying(20) DEFAULT 'bybit_api'::character varying,
    synced_at timestamp with time zone {NOW},
    created_at timestamp with time zone {NOW},
    updated_at timestamp with time zone {NOW},
    CONSTRAINT completed_trades_pkey PRIMARY KEY (id),
    CONSTRAINT completed_trades_trade_id_key UNIQUE (trade_id),
    CONSTRAINT unique_trade UNIQUE (bot_id, symbol, entry_time, exit_time),
    CONSTRAINT completed_trades_bot_id_fkey FOREIGN KEY (bot_id) REFERENCES {{s}}.bots(bot_id),
    CONSTRAINT completed_trades_source_check
        CHECK (source IN ('bybit_api', 'websocket', 'manual')),
    CONSTRAINT valid_sides CHECK (
        (entry_side = 'Buy' AND exit_side = 'Sell') OR (entry_side = 'Sell' AND exit_side = 'Buy')
    ),
    CONSTRAINT valid_times CHECK (exit_time > entry_time)
)""",
            "COMMENT ON TABLE {s}.completed_trades IS 'Stores completed trades synced from Bybit "
            "API every hour with execution reasons preserved'",
            "COMMENT ON COLUMN {s}.completed_trades.entry_client_order_id IS "
            "'Format: bot_id:reason:timestamp - contains entry execution reason'",
            "COMMENT ON COLUMN {s}.completed_trades.exit_client_order_id IS "
            "'Format: bot_id:reason:timestamp - contains exit/close reason "
            "(e.g., take_profit, stop_loss, trailing_stop)'",
            "COMMENT ON COLUMN {s}.completed_trades.source IS "
            "'Data source: bybit_api (hourly sync), websocket (real-time), manual (admin)'",
            "CREATE INDEX idx_completed_trades_bot ON {s}.completed_trades "
            "USING btree (bot_id, exit_time DESC)",
            "CREATE INDEX idx_completed_trades_entry_reason ON {s}.completed_trades "
            "USING btree (entry_reason) WHERE (entry_reason IS NOT NULL)",
            "CREATE INDEX idx_completed_trades_exit_reason ON {s}.completed_trades "
            "USING btree (exit_reason) WHERE (exit_reason IS NOT NULL)",
            "CREATE INDEX idx_completed_trades_pnl ON {s}.completed_trades "
            "USING btree (bot_id, net_pnl DESC)",
            "CREATE INDEX idx_completed_trades_symbol ON {s}.completed_trades "
            "USING btree (symbol, exit_time DESC)",
            "CREATE INDEX idx_completed_trades_sync ON {s}.completed_trades "
            "USING btree (synced_at DESC)",
            "CREATE INDEX idx_completed_trades_trade_id ON {s}.completed_trades "
            "USING btree (trade_id)",
        ],
    ),
    TableDDL(
        "sync_status",
        [
            f"""CREATE TABLE {{s}}.sync_status (
    id serial NOT NULL,
    bot_id character varying(50) NOT NULL,
    sync_type character varying(20) NOT NULL,
    start_time timestamp with time zone NOT NULL,
    end_time timestamp with time zone NOT NULL,
    trades_synced integer DEFAULT 0,
    status character varying(20) DEFAULT 'running'::character varying,
    error_message text,
    sync_started_at timestamp with time zone {NOW},
    sync_completed_at timestamp with time zone,
    duration_seconds integer,
    CONSTRAINT sync_status_pkey PRIMARY KEY (id),
    CONSTRAINT unique_sync_window UNIQUE (bot_id, sync_type, start_time, end_time),
    CONSTRAINT sync_status_bot_id_fkey FOREIGN KEY (bot_id) REFERENCES {{s}}.bots(bot_id),
    CONSTRAINT sync_status_status_check
        CHECK (status IN ('running', 'completed', 'failed', 'partial')),
    CONSTRAINT sync_status_sync_type_check CHECK (sync_type IN ('backfill', 'hourly', 'manual'))
)""",
            "COMMENT ON TABLE {s}.sync_status IS "
            "'Tracks sync job execution for monitoring and debugging'",
            "CREATE INDEX idx_sync_status_bot ON {s}.sync_status "
            "USING btree (bot_id, sync_started_at DESC)",
            "CREATE INDEX idx_sync_status_type ON {s}.sync_status USING btree (sync_type, status)",
        ],
    ),
    TableDDL(
        "position_entries",
        [
            f"""CREATE TABLE {{s}}.position_entries (
    id serial NOT NULL,
    bot_id character varying(50) NOT NULL,
    symbol character varying(20) NOT NULL,
    entry_id character varying(100) NOT NULL,
    entry_price numeric(20,8) NOT NULL,
    original_qty numeric(20,8) NOT NULL,
    remaining_qty numeric(20,8) NOT NULL,
    entry_time timestamp with time zone NOT NULL,
    entry_fill_id bigint,
    entry_order_id character varying(100),
    entry_commission numeric(20,8) DEFAULT 0,
    status character varying(20) DEFAULT 'open'::character varying,
    created_at timestamp with time zone {NOW},
    updated_at timestamp with time zone {NOW},
    CONSTRAINT position_entries_pkey PRIMARY KEY (id),
    CONSTRAINT position_entries_entry_id_key UNIQUE (entry_id),
    CONSTRAINT fk_position_entries_bot FOREIGN KEY (bot_id) REFERENCES {{s}}.bots(bot_id),
    CONSTRAINT fk_position_entries_fill FOREIGN KEY (entry_fill_id) REFERENCES {{s}}.fills(id),
    CONSTRAINT chk_quantities CHECK (remaining_qty >= 0 AND remaining_qty <= original_qty),
    CONSTRAINT chk_status CHECK (status IN ('open', 'partially_closed', 'closed'))
)""",
            "CREATE INDEX idx_position_entries_bot_symbol ON {s}.position_entries "
            "USING btree (bot_id, symbol, status)",
            "CREATE INDEX idx_position_entries_entry_time ON {s}.position_entries "
            "USING btree (entry_time)",
            "CREATE INDEX idx_position_entries_status ON {s}.position_entries "
            "USING btree (status) WHERE ((status)::text <> 'closed'::text)",
        ],
    ),
]

TIMESTAMP_FUNCTION = """CREATE FUNCTION trading.update_position_entries_timestamp()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$$"""

TIMESTAMP_TRIGGER = """CREATE TRIGGER trigger_update_position_entries_timestamp
BEFORE UPDATE ON trading.position_entries
FOR EACH ROW EXECUTE FUNCTION trading.update_position_entries_timestamp()"""

# Production's view definitions, verbatim in meaning (other tools select from them).
VIEWS = {
    "trades_pnl": """CREATE VIEW trading.trades_pnl AS
 WITH fills_numbered AS (
         SELECT fills.id, fills.bot_id, fills.symbol, fills.order_id, fills.client_order_id,
            fills.side, fills.exec_price, fills.exec_qty, fills.exec_time, fills.close_reason,
            fills.commission, fills.created_at,
            row_number() OVER (PARTITION BY fills.bot_id, fills.symbol ORDER BY fills.exec_time)
              AS fill_num
           FROM trading.fills
        ), buy_fills AS (
         SELECT * FROM fills_numbered WHERE ((fills_numbered.side)::text = 'Buy'::text)
        ), sell_fills AS (
         SELECT * FROM fills_numbered WHERE ((fills_numbered.side)::text = 'Sell'::text)
        )
 SELECT b.bot_id,
    b.symbol,
    b.exec_time AS entry_time,
    s.exec_time AS exit_time,
    b.exec_price AS entry_price,
    s.exec_price AS exit_price,
    b.exec_qty AS quantity,
    ((s.exec_price - b.exec_price) * b.exec_qty) AS gross_pnl,
    (b.commission + s.commission) AS total_fees,
    (((s.exec_price - b.exec_price) * b.exec_qty) - (b.commission + s.commission)) AS net_pnl,
    s.close_reason,
    EXTRACT(epoch FROM (s.exec_time - b.exec_time)) AS holding_seconds
   FROM (buy_fills b
     JOIN sell_fills s ON ((((b.bot_id)::text = (s.bot_id)::text)
       AND ((b.symbol)::text = (s.symbol)::text) AND (s.fill_num = (b.fill_num + 1)))))""",
    "daily_performance": """CREATE VIEW trading.daily_performance AS
 SELECT date(fills.exec_time) AS trade_date,
    fills.bot_id,
    count(*) AS total_fills,
    sum(CASE WHEN ((fills.side)::text = 'Buy'::text) THEN 1 ELSE 0 END) AS buy_fills,
    sum(CASE WHEN ((fills.side)::text = 'Sell'::text) THEN 1 ELSE 0 END) AS sell_fills,
    sum(fills.commission) AS total_fees,
    count(DISTINCT fills.symbol) AS symbols_traded
   FROM trading.fills
  GROUP BY (date(fills.exec_time)), fills.bot_id
  ORDER BY (date(fills.exec_time)) DESC""",
    "completed_trades_summary": """CREATE VIEW trading.completed_trades_summary AS
 SELECT completed_trades.bot_id,
    completed_trades.symbol,
    date_trunc('day'::text, completed_trades.exit_time) AS trade_date,
    count(*) AS total_trades,
    count(*) FILTER (WHERE (completed_trades.net_pnl > (0)::numeric)) AS winning_trades,
    count(*) FILTER (WHERE (completed_trades.net_pnl < (0)::numeric)) AS losing_trades,
    count(*) FILTER (WHERE (completed_trades.net_pnl = (0)::numeric)) AS breakeven_trades,
    sum(completed_trades.net_pnl) AS total_pnl,
    avg(completed_trades.net_pnl) AS avg_pnl,
    max(completed_trades.net_pnl) AS max_win,
    min(completed_trades.net_pnl) AS max_loss,
    sum(completed_trades.total_commission) AS total_fees,
    avg(completed_trades.holding_duration_seconds) AS avg_holding_seconds,
    avg(completed_trades.pnl_pct) AS avg_pnl_pct
   FROM trading.completed_trades
  GROUP BY completed_trades.bot_id, completed_trades.symbol,
    (date_trunc('day'::text, completed_trades.exit_time))""",
    "current_positions": """CREATE VIEW trading.current_positions AS
 SELECT position_entries.bot_id,
    position_entries.symbol,
    sum(position_entries.remaining_qty) AS total_qty,
    (sum(position_entries.remaining_qty * position_entries.entry_price)
      / NULLIF(sum(position_entries.remaining_qty), (0)::numeric)) AS avg_entry_price,
    count(*) AS num_entries,
    min(position_entries.entry_time) AS first_entry_time,
    max(position_entries.entry_time) AS last_entry_time,
    sum(position_entries.entry_commission) AS total_entry_commission
   FROM trading.position_entries
  WHERE (((position_entries.status)::text <> 'closed'::text)
    AND (position_entries.remaining_qty > (0)::numeric))
  GROUP BY position_entries.bot_id, position_entries.symbol""",
}


def upgrade() -> None:
    adopt_or_create("trading", TABLES, "Core trading operations schema")
    if not function_exists("trading", "update_position_entries_timestamp"):
        op.execute(TIMESTAMP_FUNCTION)
    if not trigger_exists(
        "trading", "position_entries", "trigger_update_position_entries_timestamp"
    ):
        op.execute(TIMESTAMP_TRIGGER)
    for name, ddl in VIEWS.items():
        if not relation_exists("trading", name):
            op.execute(ddl)


def downgrade() -> None:
    refuse_data_loss("trading", [t.name for t in TABLES])
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS trading.{name}")
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE IF EXISTS trading.{table.name}")
    op.execute("DROP FUNCTION IF EXISTS trading.update_position_entries_timestamp()")
    op.execute("DROP SCHEMA IF EXISTS trading")
