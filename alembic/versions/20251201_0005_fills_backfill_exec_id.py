"""fills: derive a deterministic exec_id for the rows that predate it (data migration)

The key is ``legacy:`` + md5 of the row's content (bot, symbol, order and link ids, side,
price, qty, UTC exec time to the microsecond, commission), the same function
``alpha_models.keys.legacy_exec_id`` computes, so re-importing the same history finds
these rows. Rows with identical content are all kept: the second and later copies get
``:2``, ``:3``... and ``alpha-db fills duplicates`` lists them. No row is deleted.
Set-based, in batches of 10,000 ids. One-way in meaning: the downgrade clears the keys.

Revision ID: 0005
Revises: 0004
Create Date: 2025-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000

CONTENT_KEY = """'legacy:' || md5(concat_ws('|', f.bot_id, f.symbol, f.order_id,
    f.client_order_id, f.side, f.exec_price::text, f.exec_qty::text,
    to_char(f.exec_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
    f.commission::text))"""


def upgrade() -> None:
    conn = op.get_bind()
    op.execute(
        f"""CREATE TEMP TABLE alpha_legacy_keys ON COMMIT DROP AS
        SELECT f.id, {CONTENT_KEY} AS k,
               row_number() OVER (PARTITION BY {CONTENT_KEY} ORDER BY f.id) AS n
        FROM trading.fills f WHERE f.exec_id IS NULL"""
    )
    op.execute("CREATE INDEX ON alpha_legacy_keys (id)")
    bounds = conn.exec_driver_sql("SELECT min(id), max(id) FROM alpha_legacy_keys").one()
    if bounds[0] is None:
        return
    low, high = int(bounds[0]), int(bounds[1])
    for start in range(low, high + 1, BATCH):
        op.execute(
            f"""UPDATE trading.fills f
            SET exec_id = CASE WHEN k.n = 1 THEN k.k ELSE k.k || ':' || k.n END
            FROM alpha_legacy_keys k
            WHERE f.id = k.id AND k.id >= {start} AND k.id < {start + BATCH}"""
        )


def downgrade() -> None:
    op.execute("UPDATE trading.fills SET exec_id = NULL WHERE exec_id LIKE 'legacy:%'")
