"""Deterministic identities of rows that carry no exchange id.

:func:`content_exec_id` is the key migration 0005 gave to every fill that predates
``exec_id``; the same function keys a fill reported without an execution id (a bot's
self-report, a re-imported legacy row), so importing the same history twice finds the
row instead of storing it again.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal

LEGACY_PREFIX = "legacy:"
_Q8 = Decimal("1E-8")


def _num(value: Decimal) -> str:
    """``numeric(20,8)::text``: always 8 decimals."""
    return f"{value.quantize(_Q8):f}"


def content_exec_id(
    *,
    bot_id: str,
    symbol: str,
    order_id: str,
    client_order_id: str,
    side: str,
    exec_price: Decimal,
    exec_qty: Decimal,
    exec_time: datetime,
    commission: Decimal,
) -> str:
    """``legacy:`` + md5 of the content, byte-for-byte what migration 0005 computes in SQL."""
    when = exec_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    text = "|".join(
        [
            bot_id,
            symbol,
            order_id,
            client_order_id,
            side,
            _num(exec_price),
            _num(exec_qty),
            when,
            _num(commission),
        ]
    )
    return LEGACY_PREFIX + hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()
