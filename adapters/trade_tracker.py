"""LXAlgo's tracker under its original module name: the strategy can keep
``from trade_tracker import trade_tracker`` by making its ``trade_tracker.py`` the line
``from adapters.trade_tracker import *``, or import from here directly.

The names are those of :mod:`adapters.lxalgo` (the same objects: one singleton).
"""

from __future__ import annotations

from typing import Any

from adapters import lxalgo
from adapters.lxalgo import (
    MAX_EVENTS,
    TRADE_EXPIRY_HOURS,
    ExchangeFill,
    TradeTracker,
    enhance_active_trades_structure,
    get_trade_age_hours,
    get_trade_expiry,
)

__all__ = [
    "MAX_EVENTS",
    "TRADE_EXPIRY_HOURS",
    "ExchangeFill",
    "TradeTracker",
    "enhance_active_trades_structure",
    "get_trade_age_hours",
    "get_trade_expiry",
    "trade_tracker",
]

trade_tracker: TradeTracker
"""The singleton of :mod:`adapters.lxalgo`, built on first import of the name."""


def __getattr__(name: str) -> Any:
    if name == "trade_tracker":
        return lxalgo.trade_tracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
