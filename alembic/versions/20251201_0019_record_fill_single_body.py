"""record_fill in one body, positions keep their open lots' totals, one row per execution

``trading.record_fill`` (0011, guarded in 0016) called ``lock_position``,
``apply_fill_to_lots`` and ``refresh_position`` in turn: two scans of every open lot of the
pair per fill (one for their side, one to sum them), row locks on lots that the position
row lock already protects, and three nested PL/pgSQL calls. A fill's cost grew with the
number of open lots.

This revision:

- adds ``positions.open_qty`` (signed sum of the open lots' remaining quantity: > 0 long,
  < 0 short) and ``positions.open_cost`` (exact sum of remaining quantity x entry price),
  maintained by the write path. NULL means unknown: rows written before this revision or
  by another writer. Nothing is backfilled (no existing row changes);
- states ``record_fill`` in one body: the position row is locked first (it serialises
  every writer of the pair's lots: record_fill, rebuild_position and bulk ingest all take
  it); the totals are read from it when they agree with its ``size`` and ``side``, else
  summed from the open lots once (as before); size, side and average entry then follow
  arithmetically from the lots consumed and created. Apart from the fold below, results
  are those of 0016 for every input (same rows, same numeric scales, same rounding); the
  out-of-order and re-attribution paths still rebuild through ``rebuild_position``;
- ``refresh_position`` (used by ``rebuild_position``) sets the totals too;
- **one execution, one row, even when the bot reports it too.** A bot's own report of a
  fill (a *self-report*: exec_id ``legacy:...``, order id ``synthetic:...`` or source
  ``tracker``; Momentum's adapter and the AlphaDBClient facade write them) and the
  exchange's execution of the same order (the listener attributes it to the bot by its
  ``orderLinkId``) used to be two rows, so the position counted the fill twice. Now, for the
  same bot and the same non-empty ``client_order_id``: a self-report arriving after the
  exchange's copy is not stored (``duplicate``); an exchange execution arriving after the
  self-report supersedes it: ``trading.fold_self_reports`` (SECURITY DEFINER, since the
  bots' roles may not delete fills; it acts only when that execution is stored, so it can
  do nothing else) moves the self-report to ``audit.quarantined_fills`` (every column kept,
  with the reason) and rebuilds the pair. Both checks run under the position row's lock, so
  the two copies cannot race past each other. Adopted history (source NULL) is never folded.

Revision ID: 0019
Revises: 0018
Create Date: 2025-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_QTY_COMMENT = (
    "Signed sum of the open lots' remaining quantity (> 0 long, < 0 short), kept by the "
    "write path; NULL: unknown (recomputed from the lots)"
)
OPEN_COST_COMMENT = (
    "Exact sum of remaining quantity x entry price over the open lots, kept by the write "
    "path; NULL: unknown (recomputed from the lots)"
)

RECORD_FILL = """
CREATE OR REPLACE FUNCTION trading.record_fill(
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
    v_side varchar;
    v_size numeric;
    v_notional numeric;
    v_left numeric;
    v_lot record;
    v_take numeric;
    v_self boolean := p_exec_id LIKE 'legacy:%' OR p_order_id LIKE 'synthetic:%'
                      OR p_source = 'tracker';
BEGIN
    IF v_self AND p_client_order_id <> '' AND p_bot_id <> 'unknown' THEN
        -- A bot's own report of an order whose executions the exchange's copies (same
        -- bot, same orderLinkId) already stand for: not stored. Checked under the pair's
        -- lock, which the exchange's copy takes too, so the two cannot both be stored.
        PERFORM trading.lock_position(p_bot_id, p_symbol);
        SELECT f.id INTO v_fill_id FROM trading.fills f
         WHERE f.client_order_id = p_client_order_id AND f.bot_id = p_bot_id
           AND f.exec_id NOT LIKE 'legacy:%' AND f.order_id NOT LIKE 'synthetic:%'
           AND f.source IS DISTINCT FROM 'tracker'
         ORDER BY f.id LIMIT 1;
        IF v_fill_id IS NOT NULL THEN
            fill_id := v_fill_id;
            outcome := 'duplicate';
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
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
            IF NOT FOUND THEN
                -- Row security hid the 'unknown' copy: this role may not re-attribute it.
                outcome := 'duplicate';
                RETURN NEXT;
                RETURN;
            END IF;
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
        SELECT * INTO v_pos FROM trading.positions p
         WHERE p.bot_id = p_bot_id AND p.symbol = p_symbol FOR UPDATE;
        IF NOT FOUND THEN
            v_pos := trading.lock_position(p_bot_id, p_symbol);
        END IF;
        IF v_pos.last_exec_time IS NOT NULL AND p_exec_time < v_pos.last_exec_time THEN
            v_pos := trading.rebuild_position(p_bot_id, p_symbol);
            outcome := 'rebuilt';
        ELSE
            IF v_pos.open_cost IS NOT NULL AND v_pos.size = abs(v_pos.open_qty)
               AND v_pos.side = (CASE WHEN v_pos.open_qty > 0 THEN 'Buy'
                                      WHEN v_pos.open_qty < 0 THEN 'Sell' ELSE '' END) THEN
                v_size := v_pos.size;
                v_side := v_pos.side;
                v_notional := v_pos.open_cost;
            ELSE
                SELECT coalesce(sum(e.remaining_qty), 0), max(e.side),
                       coalesce(sum(e.remaining_qty * e.entry_price), 0)
                  INTO v_size, v_side, v_notional
                  FROM trading.position_entries e
                 WHERE e.bot_id = p_bot_id AND e.symbol = p_symbol
                   AND e.status <> 'closed' AND e.remaining_qty > 0;
            END IF;
            v_left := p_qty::numeric(20, 8);
            IF v_size > 0 AND v_side <> p_side THEN
                FOR v_lot IN
                    SELECT e.id, e.remaining_qty, e.entry_price FROM trading.position_entries e
                     WHERE e.bot_id = p_bot_id AND e.symbol = p_symbol
                       AND e.status <> 'closed' AND e.remaining_qty > 0
                     ORDER BY e.entry_time, e.id
                LOOP
                    v_take := least(v_lot.remaining_qty, v_left);
                    UPDATE trading.position_entries
                       SET remaining_qty = remaining_qty - v_take,
                           status = CASE WHEN remaining_qty - v_take = 0 THEN 'closed'
                                         ELSE 'partially_closed' END
                     WHERE id = v_lot.id;
                    v_left := v_left - v_take;
                    v_size := v_size - v_take;
                    v_notional := v_notional - v_take * v_lot.entry_price;
                    EXIT WHEN v_left = 0;
                END LOOP;
            END IF;
            IF v_left > 0 THEN
                INSERT INTO trading.position_entries (
                    bot_id, symbol, entry_id, side, entry_price, original_qty, remaining_qty,
                    entry_time, entry_fill_id, entry_order_id, entry_commission)
                VALUES (
                    p_bot_id, p_symbol, p_exec_id, p_side, p_price, v_left, v_left,
                    p_exec_time, v_fill_id, p_order_id,
                    CASE WHEN v_left = p_qty THEN p_commission
                         ELSE round(p_commission * v_left / p_qty, 8) END);
                v_size := v_size + v_left;
                v_notional := v_notional + v_left * p_price::numeric(20, 8);
                v_side := p_side;
            END IF;
            UPDATE trading.positions p
               SET size = v_size,
                   side = CASE WHEN v_size = 0 THEN '' ELSE v_side END,
                   avg_entry_price = round(v_notional / nullif(v_size, 0), 8),
                   open_qty = CASE WHEN v_size = 0 THEN 0
                                   WHEN v_side = 'Sell' THEN -v_size ELSE v_size END,
                   open_cost = v_notional,
                   version = p.version + 1,
                   last_exec_time = greatest(p.last_exec_time, p_exec_time),
                   updated_at = now()
             WHERE p.id = v_pos.id
            RETURNING p.* INTO v_pos;
            outcome := 'new';
        END IF;
        -- Nested, so that a fill without a link id evaluates no query here.
        IF NOT v_self AND p_client_order_id <> '' THEN
            IF EXISTS (
                SELECT 1 FROM trading.fills f
                 WHERE f.client_order_id = p_client_order_id AND f.bot_id = p_bot_id
                   AND f.symbol = p_symbol AND f.source IS NOT NULL
                   AND (f.exec_id LIKE 'legacy:%' OR f.order_id LIKE 'synthetic:%'
                        OR f.source = 'tracker'))
            THEN
                -- The exchange's execution of an order the bot reported itself: the report
                -- gives way (kept in audit.quarantined_fills), the pair is rebuilt.
                v_pos := trading.fold_self_reports(
                    p_bot_id, p_symbol, p_client_order_id, p_exec_id);
            END IF;
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

FOLD_SELF_REPORTS = """
CREATE FUNCTION trading.fold_self_reports(
    p_bot_id varchar, p_symbol varchar, p_client_order_id varchar, p_exec_id varchar
) RETURNS trading.positions LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- Only once the exchange's execution of that order is stored for the bot: whoever
    -- calls it, the function can do nothing but this fold.
    IF NOT EXISTS (
        SELECT 1 FROM trading.fills f
         WHERE f.exec_id = p_exec_id AND f.bot_id = p_bot_id AND f.symbol = p_symbol
           AND f.client_order_id = p_client_order_id AND p_client_order_id <> ''
           AND f.exec_id NOT LIKE 'legacy:%' AND f.order_id NOT LIKE 'synthetic:%'
           AND f.source IS DISTINCT FROM 'tracker')
    THEN
        RETURN NULL;
    END IF;
    PERFORM trading.lock_position(p_bot_id, p_symbol);
    DELETE FROM trading.position_entries e WHERE e.bot_id = p_bot_id AND e.symbol = p_symbol;
    WITH gone AS (
        DELETE FROM trading.fills f
         WHERE f.bot_id = p_bot_id AND f.symbol = p_symbol
           AND f.client_order_id = p_client_order_id AND f.source IS NOT NULL
           AND (f.exec_id LIKE 'legacy:%' OR f.order_id LIKE 'synthetic:%'
                OR f.source = 'tracker')
        RETURNING f.*)
    INSERT INTO audit.quarantined_fills (
        id, bot_id, symbol, order_id, client_order_id, side, exec_price, exec_qty, exec_time,
        close_reason, commission, created_at, exec_id, exec_type, source, reason, details)
    SELECT g.id, g.bot_id, g.symbol, g.order_id, g.client_order_id, g.side, g.exec_price,
           g.exec_qty, g.exec_time, g.close_reason, g.commission, g.created_at, g.exec_id,
           g.exec_type, g.source,
           'superseded by the exchange''s execution ' || p_exec_id,
           jsonb_build_object('superseded_by', p_exec_id,
                              'client_order_id', p_client_order_id,
                              'caller', session_user::text)
      FROM gone g;
    RETURN trading.rebuild_position(p_bot_id, p_symbol);
END $$
"""
FOLD_SELF_REPORTS_ARGS = "varchar, varchar, varchar, varchar"


REFRESH_POSITION = """
CREATE OR REPLACE FUNCTION trading.refresh_position(
    p_bot_id varchar, p_symbol varchar, p_last_exec_time timestamptz
) RETURNS trading.positions LANGUAGE plpgsql AS $$
DECLARE
    v_size numeric;
    v_side varchar;
    v_cost numeric;
    v_row trading.positions;
BEGIN
    SELECT coalesce(sum(e.remaining_qty), 0), max(e.side),
           coalesce(sum(e.remaining_qty * e.entry_price), 0)
      INTO v_size, v_side, v_cost
      FROM trading.position_entries e
     WHERE e.bot_id = p_bot_id AND e.symbol = p_symbol
       AND e.status <> 'closed' AND e.remaining_qty > 0;
    UPDATE trading.positions p
       SET size = v_size,
           side = CASE WHEN v_size = 0 THEN '' ELSE v_side END,
           avg_entry_price = round(v_cost / nullif(v_size, 0), 8),
           open_qty = CASE WHEN v_size = 0 THEN 0
                           WHEN v_side = 'Sell' THEN -v_size ELSE v_size END,
           open_cost = v_cost,
           version = p.version + 1,
           last_exec_time = greatest(p.last_exec_time, p_last_exec_time),
           updated_at = now()
     WHERE p.bot_id = p_bot_id AND p.symbol = p_symbol
    RETURNING p.* INTO v_row;
    RETURN v_row;
END $$
"""

# What the downgrade restores (migrations never import each other's text).
RECORD_FILL_0016 = """
CREATE OR REPLACE FUNCTION trading.record_fill(
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
            IF NOT FOUND THEN
                -- Row security hid the 'unknown' copy: this role may not re-attribute it.
                outcome := 'duplicate';
                RETURN NEXT;
                RETURN;
            END IF;
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

REFRESH_POSITION_0011 = """
CREATE OR REPLACE FUNCTION trading.refresh_position(
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


def upgrade() -> None:
    op.add_column(
        "positions",
        sa.Column("open_qty", sa.Numeric(20, 8), nullable=True, comment=OPEN_QTY_COMMENT),
        schema="trading",
    )
    op.add_column(
        "positions",
        sa.Column("open_cost", sa.Numeric(), nullable=True, comment=OPEN_COST_COMMENT),
        schema="trading",
    )
    op.execute(REFRESH_POSITION)
    op.execute(FOLD_SELF_REPORTS)
    op.execute(RECORD_FILL)


def downgrade() -> None:
    op.execute(RECORD_FILL_0016)
    op.execute(f"DROP FUNCTION trading.fold_self_reports({FOLD_SELF_REPORTS_ARGS})")
    op.execute(REFRESH_POSITION_0011)
    op.drop_column("positions", "open_cost", schema="trading")
    op.drop_column("positions", "open_qty", schema="trading")
