"""write-path functions: record a fill with its lots and position in one statement

``trading.record_fill(...)`` inserts a fill idempotently (ON CONFLICT (exec_id) DO
NOTHING) and, for an attributed bot, applies it to the bot's FIFO lots (an opposite-side
fill consumes the oldest open lots, a larger one flips the position) and refreshes the
``positions`` row, all inside the caller's transaction. It reports the outcome: ``new``,
``duplicate``, ``reattributed`` (an ``unknown`` copy now attributed) or ``rebuilt`` (an
out-of-order fill: the pair's lots were rebuilt from its fills in (exec_time, id) order).
Doing this server-side keeps one fill at three round trips (BEGIN, SELECT, COMMIT), like a
plain INSERT.

Revision ID: 0011
Revises: 0010
Create Date: 2025-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPLY_TO_LOTS = """
CREATE FUNCTION trading.apply_fill_to_lots(
    p_bot_id varchar, p_symbol varchar, p_exec_id varchar, p_fill_id bigint,
    p_order_id varchar, p_side varchar, p_price numeric, p_qty numeric,
    p_exec_time timestamptz, p_commission numeric
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_left numeric := p_qty;
    v_open_side varchar;
    v_lot record;
    v_take numeric;
BEGIN
    SELECT e.side INTO v_open_side FROM trading.position_entries e
     WHERE e.bot_id = p_bot_id AND e.symbol = p_symbol
       AND e.status <> 'closed' AND e.remaining_qty > 0
     LIMIT 1;
    IF v_open_side IS NOT NULL AND v_open_side <> p_side THEN
        FOR v_lot IN
            SELECT e.id, e.remaining_qty FROM trading.position_entries e
             WHERE e.bot_id = p_bot_id AND e.symbol = p_symbol
               AND e.status <> 'closed' AND e.remaining_qty > 0
             ORDER BY e.entry_time, e.id
             FOR UPDATE
        LOOP
            v_take := least(v_lot.remaining_qty, v_left);
            UPDATE trading.position_entries
               SET remaining_qty = remaining_qty - v_take,
                   status = CASE WHEN remaining_qty - v_take = 0 THEN 'closed'
                                 ELSE 'partially_closed' END
             WHERE id = v_lot.id;
            v_left := v_left - v_take;
            EXIT WHEN v_left = 0;
        END LOOP;
    END IF;
    IF v_left > 0 THEN
        INSERT INTO trading.position_entries (
            bot_id, symbol, entry_id, side, entry_price, original_qty, remaining_qty,
            entry_time, entry_fill_id, entry_order_id, entry_commission)
        VALUES (
            p_bot_id, p_symbol, p_exec_id, p_side, p_price, v_left, v_left,
            p_exec_time, p_fill_id, p_order_id,
            CASE WHEN v_left = p_qty THEN p_commission
                 ELSE round(p_commission * v_left / p_qty, 8) END);
    END IF;
END $$
"""

REFRESH_POSITION = """
CREATE FUNCTION trading.refresh_position(
    p_bot_id varchar, p_symbol varchar, p_last_exec_time timestamptz
) RETURNS trading.positions LANGUAGE plpgsql AS $$
DECLARE
    v_size numeric;
    v_side varchar;
    v_avg numeric;
    v_row trading.positions;
BEGIN
    SELECT coalesce(sum(e.remaining_qty), 0), max(e.side),
           round(sum(e.remaining_qty * e.entry_price) / nullif(sum(e.remaining_qty), 0), 8)
      INTO v_size, v_side, v_avg
      FROM trading.position_entries e
     WHERE e.bot_id = p_bot_id AND e.symbol = p_symbol
       AND e.status <> 'closed' AND e.remaining_qty > 0;
    UPDATE trading.positions p
       SET size = v_size,
           side = CASE WHEN v_size = 0 THEN '' ELSE v_side END,
           avg_entry_price = v_avg,
           version = p.version + 1,
           last_exec_time = greatest(p.last_exec_time, p_last_exec_time),
           updated_at = now()
     WHERE p.bot_id = p_bot_id AND p.symbol = p_symbol
    RETURNING p.* INTO v_row;
    RETURN v_row;
END $$
"""

LOCK_POSITION = """
CREATE FUNCTION trading.lock_position(p_bot_id varchar, p_symbol varchar)
RETURNS trading.positions LANGUAGE plpgsql AS $$
DECLARE
    v_row trading.positions;
BEGIN
    SELECT * INTO v_row FROM trading.positions p
     WHERE p.bot_id = p_bot_id AND p.symbol = p_symbol FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO trading.positions (bot_id, symbol, size, side)
        VALUES (p_bot_id, p_symbol, 0, '')
        ON CONFLICT (bot_id, symbol) DO NOTHING;
        SELECT * INTO v_row FROM trading.positions p
         WHERE p.bot_id = p_bot_id AND p.symbol = p_symbol FOR UPDATE;
    END IF;
    RETURN v_row;
END $$
"""

REBUILD_POSITION = """
CREATE FUNCTION trading.rebuild_position(p_bot_id varchar, p_symbol varchar)
RETURNS trading.positions LANGUAGE plpgsql AS $$
DECLARE
    v_fill record;
    v_last timestamptz;
BEGIN
    PERFORM trading.lock_position(p_bot_id, p_symbol);
    DELETE FROM trading.position_entries e
     WHERE e.bot_id = p_bot_id AND e.symbol = p_symbol;
    FOR v_fill IN
        SELECT f.id, f.exec_id, f.order_id, f.side, f.exec_price, f.exec_qty, f.exec_time,
               f.commission
          FROM trading.fills f
         WHERE f.bot_id = p_bot_id AND f.symbol = p_symbol
         ORDER BY f.exec_time, f.id
    LOOP
        PERFORM trading.apply_fill_to_lots(
            p_bot_id, p_symbol, v_fill.exec_id, v_fill.id, v_fill.order_id, v_fill.side,
            v_fill.exec_price, v_fill.exec_qty, v_fill.exec_time, v_fill.commission);
        v_last := v_fill.exec_time;
    END LOOP;
    RETURN trading.refresh_position(p_bot_id, p_symbol, v_last);
END $$
"""

RECORD_FILL = """
CREATE FUNCTION trading.record_fill(
    p_exec_id varchar, p_bot_id varchar, p_symbol varchar, p_order_id varchar,
    p_client_order_id varchar, p_side varchar, p_price numeric, p_qty numeric,
    p_exec_time timestamptz, p_close_reason varchar, p_commission numeric,
    p_exec_type varchar, p_source varchar
) RETURNS TABLE (
    fill_id bigint, outcome text, pos_side varchar, pos_size numeric, pos_avg numeric,
    pos_version bigint, pos_updated timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    v_fill_id bigint;
    v_existing_bot varchar;
    v_pos trading.positions;
BEGIN
    INSERT INTO trading.fills (
        exec_id, bot_id, symbol, order_id, client_order_id, side, exec_price, exec_qty,
        exec_time, close_reason, commission, exec_type, source)
    VALUES (
        p_exec_id, p_bot_id, p_symbol, p_order_id, p_client_order_id, p_side, p_price, p_qty,
        p_exec_time, p_close_reason, p_commission, p_exec_type, p_source)
    ON CONFLICT (exec_id) DO NOTHING
    RETURNING id INTO v_fill_id;

    IF v_fill_id IS NULL THEN
        SELECT f.id, f.bot_id INTO v_fill_id, v_existing_bot
          FROM trading.fills f WHERE f.exec_id = p_exec_id;
        fill_id := v_fill_id;
        IF v_existing_bot = 'unknown' AND p_bot_id <> 'unknown' THEN
            UPDATE trading.fills f
               SET bot_id = p_bot_id,
                   client_order_id = CASE WHEN f.client_order_id = '' THEN p_client_order_id
                                          ELSE f.client_order_id END,
                   close_reason = coalesce(nullif(p_close_reason, ''), f.close_reason),
                   source = coalesce(f.source, p_source)
             WHERE f.id = v_fill_id;
            v_pos := trading.rebuild_position(p_bot_id, p_symbol);
            outcome := 'reattributed';
        ELSE
            outcome := 'duplicate';
            RETURN NEXT;
            RETURN;
        END IF;
    ELSIF p_bot_id = 'unknown' THEN
        fill_id := v_fill_id;
        outcome := 'new';
        RETURN NEXT;
        RETURN;
    ELSE
        fill_id := v_fill_id;
        v_pos := trading.lock_position(p_bot_id, p_symbol);
        IF v_pos.last_exec_time IS NOT NULL AND p_exec_time < v_pos.last_exec_time THEN
            v_pos := trading.rebuild_position(p_bot_id, p_symbol);
            outcome := 'rebuilt';
        ELSE
            PERFORM trading.apply_fill_to_lots(
                p_bot_id, p_symbol, p_exec_id, v_fill_id, p_order_id, p_side, p_price, p_qty,
                p_exec_time, p_commission);
            v_pos := trading.refresh_position(p_bot_id, p_symbol, p_exec_time);
            outcome := 'new';
        END IF;
    END IF;
    pos_side := v_pos.side;
    pos_size := v_pos.size;
    pos_avg := v_pos.avg_entry_price;
    pos_version := v_pos.version;
    pos_updated := v_pos.updated_at;
    RETURN NEXT;
END $$
"""

FUNCTIONS = [
    (
        "apply_fill_to_lots",
        APPLY_TO_LOTS,
        "varchar, varchar, varchar, bigint, varchar, varchar, numeric, numeric, timestamptz, "
        "numeric",
    ),
    ("refresh_position", REFRESH_POSITION, "varchar, varchar, timestamptz"),
    ("lock_position", LOCK_POSITION, "varchar, varchar"),
    ("rebuild_position", REBUILD_POSITION, "varchar, varchar"),
    (
        "record_fill",
        RECORD_FILL,
        "varchar, varchar, varchar, varchar, varchar, varchar, numeric, numeric, timestamptz, "
        "varchar, numeric, varchar, varchar",
    ),
]


def upgrade() -> None:
    for _name, ddl, _args in FUNCTIONS:
        op.execute(ddl)


def downgrade() -> None:
    for name, _ddl, args in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION IF EXISTS trading.{name}({args})")
