"""The database refuses rows that break the contract, with a clear typed error."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from alpha_models.db import make_engine, make_session_factory, session_scope
from alpha_models.errors import AlphaModelsError, ConstraintViolationError
from alpha_models.settings import Settings
from alpha_models.trading import Fill
from tests.conftest import Database


def _fill(**overrides: Any) -> Fill:
    values: dict[str, Any] = {
        "bot_id": "shortseller_001",
        "symbol": "BTCUSDT",
        "order_id": "o-1",
        "client_order_id": "",
        "side": "Sell",
        "exec_price": Decimal("100000.5"),
        "exec_qty": Decimal("0.001"),
        "exec_time": datetime(2025, 11, 1, tzinfo=UTC),
        "commission": Decimal("0.055"),
        "exec_id": f"exec-{overrides.get('order_id', 'o-1')}",
    }
    values.update(overrides)
    return Fill(**values)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"exec_qty": Decimal("-1")}, "positive_qty"),
        ({"exec_price": Decimal("0")}, "positive_price"),
        ({"side": "buy"}, "valid_side"),
        ({"bot_id": "x" * 51}, "value too long"),
    ],
    ids=["negative-qty", "zero-price", "lowercase-side", "51-char-bot-id"],
)
def test_bad_row_raises_clear_error_and_leaves_nothing(
    db: Database, overrides: dict[str, Any], expected: str
) -> None:
    engine = make_engine(Settings(ALPHA_DATABASE_URL=db.bouncer_url))
    factory = make_session_factory(engine)
    with pytest.raises(AlphaModelsError, match=expected) as caught, session_scope(factory) as s:
        s.add(_fill())  # a good row in the same unit of work is rolled back too
        s.add(_fill(order_id="o-2", **overrides))
    if expected != "value too long":
        assert isinstance(caught.value, ConstraintViolationError)
        assert caught.value.constraint == expected
    with session_scope(factory) as s:
        assert s.execute(select(func.count()).select_from(Fill)).scalar() == 0
    engine.dispose()
