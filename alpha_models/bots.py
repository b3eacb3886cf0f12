"""The platform's bots and their registration in ``trading.bots``."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.engine import Engine


@dataclass(frozen=True, slots=True)
class BotSpec:
    bot_id: str
    bot_name: str
    bot_type: str
    strategy_name: str
    deployment_mode: str = "demo"
    initial_capital: Decimal = Decimal("10000")


PLATFORM_BOTS: tuple[BotSpec, ...] = (
    BotSpec("shortseller_001", "ShortSeller", "shortseller", "EMA cross short"),
    BotSpec("lxalgo_001", "LXAlgo", "lxalgo", "Pump rules long"),
    BotSpec("momentum_001", "Momentum", "momentum", "Volatility breakout"),
)


def register_bots(engine: Engine, bots: tuple[BotSpec, ...] = PLATFORM_BOTS) -> int:
    """Insert the bots that are missing; existing rows are left exactly as they are.

    Returns how many were added.
    """
    added = 0
    with engine.begin() as conn:
        for bot in bots:
            added += conn.execute(
                text(
                    "INSERT INTO trading.bots (bot_id, bot_name, bot_type, strategy_name, "
                    "status, deployment_mode, initial_capital) VALUES (:bot_id, :bot_name, "
                    ":bot_type, :strategy_name, 'active', :deployment_mode, :initial_capital) "
                    "ON CONFLICT (bot_id) DO NOTHING"
                ),
                {
                    "bot_id": bot.bot_id,
                    "bot_name": bot.bot_name,
                    "bot_type": bot.bot_type,
                    "strategy_name": bot.strategy_name,
                    "deployment_mode": bot.deployment_mode,
                    "initial_capital": bot.initial_capital,
                },
            ).rowcount
    return added
