"""Reports on fills that may be stored more than once (no migration deletes a row).

- ``identical``: rows whose whole content is the same (migration 0005 kept each copy and
  gave the second and later ones ``exec_id`` ``legacy:<md5>:<n>``);
- ``same_order``: several rows with one ``order_id``, side and symbol under different bots
  or times: typically a bot's self-report and the listener's copy of one execution.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.engine import Engine


@dataclass(frozen=True, slots=True)
class SuspectRow:
    id: int
    exec_id: str
    bot_id: str
    symbol: str
    order_id: str
    side: str
    exec_price: Decimal
    exec_qty: Decimal
    exec_time: datetime


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    kind: str  # "identical" or "same_order"
    key: str
    rows: tuple[SuspectRow, ...]


_COLUMNS = "id, exec_id, bot_id, symbol, order_id, side, exec_price, exec_qty, exec_time"


def find_duplicates(engine: Engine) -> list[DuplicateGroup]:
    groups: list[DuplicateGroup] = []
    with engine.connect() as conn:
        identical = conn.execute(
            text(
                f"SELECT split_part(exec_id, ':', 2) AS k, {_COLUMNS} FROM trading.fills "  # noqa: S608
                "WHERE exec_id LIKE 'legacy:%' AND split_part(exec_id, ':', 2) IN ("
                "  SELECT split_part(exec_id, ':', 2) FROM trading.fills "
                "  WHERE exec_id LIKE 'legacy:%:%') ORDER BY k, id"
            )
        ).all()
        same_order = conn.execute(
            text(
                f"SELECT order_id || '/' || side AS k, {_COLUMNS} FROM trading.fills f "  # noqa: S608
                "WHERE order_id <> '' AND (order_id, side) IN (SELECT order_id, side "
                "FROM trading.fills GROUP BY order_id, side HAVING count(DISTINCT bot_id) > 1) "
                "ORDER BY k, id"
            )
        ).all()
        conn.rollback()
    for kind, rows in (("identical", identical), ("same_order", same_order)):
        current: list[SuspectRow] = []
        key = None
        for row in rows:
            if key is not None and row.k != key:
                groups.append(DuplicateGroup(kind, key, tuple(current)))
                current = []
            key = row.k
            current.append(SuspectRow(*row[1:]))
        if key is not None:
            groups.append(DuplicateGroup(kind, key, tuple(current)))
    return groups
