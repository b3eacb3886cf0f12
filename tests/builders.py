"""Small builders with unique ids for test data."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from alpha_models.inputs import FillInput

_seq = itertools.count(1)
T0 = datetime(2025, 11, 1, tzinfo=UTC)


def fill(
    side: str = "Sell",
    qty: str | Decimal = "0.01",
    price: str | Decimal = "100000",
    *,
    bot_id: str = "shortseller_001",
    symbol: str = "BTCUSDT",
    at: datetime | int | None = None,
    fee: str | Decimal = "0",
    exec_id: str | None = None,
    source: str = "adapter",
    **extra: Any,
) -> FillInput:
    n = next(_seq)
    when = (
        T0 + timedelta(seconds=at if isinstance(at, int) else n)
        if not isinstance(at, datetime)
        else at
    )
    return FillInput(
        exec_id=exec_id or f"exec-{n:08d}",
        bot_id=bot_id,
        symbol=symbol,
        side=side,
        exec_price=price,
        exec_qty=qty,
        exec_time=when,
        order_id=extra.pop("order_id", f"order-{n}"),
        commission=fee,
        source=source,
        **extra,
    )
