"""Deterministic activity for ``alpha-db demo``, generated from a seed (no fixture used).

Three bots trade for a few simulated days; everything the demo feeds through the real
entry points comes from :func:`generate`, and :func:`expected` gives the figures that
activity implies, computed here by plain arithmetic (so the demo can be checked against
something that is not the system under test).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal


def start_of_activity() -> datetime:
    """Eight days before today (UTC midnight): the live adapters stamp their own records
    with the current time (as the strategies do), so the generated history ends near it."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=8)


FEE_RATE = Decimal("0.00055")
_Q8 = Decimal("1E-8")
BASE = {"BTCUSDT": Decimal(100000), "ETHUSDT": Decimal(3500), "SOLUSDT": Decimal(180)}
LX_SYMBOLS = {"FUSDT": Decimal("0.027"), "HUSDT": Decimal("0.19"), "ZKCUSDT": Decimal("0.31")}
MO_SYMBOLS = {"BTCUSDT": Decimal(100000), "ETHUSDT": Decimal(3500), "SOLUSDT": Decimal(180)}


def _q(x: Decimal, step: str = "0.00000001") -> Decimal:
    return x.quantize(Decimal(step), ROUND_DOWN)


@dataclass(frozen=True, slots=True)
class Trip:
    """One round trip of a bot, as the exchange would execute it."""

    bot_id: str
    key: str  # the strategy's own id (Momentum trade_id, LXAlgo rule, ShortSeller order)
    symbol: str
    side: str  # entry side: Buy (long) or Sell (short)
    qty: Decimal
    entry_price: Decimal
    entry_time: datetime
    exit_price: Decimal | None  # None: still open at the end
    exit_time: datetime | None
    entry_fee: Decimal
    exit_fee: Decimal
    reason: str
    rule_id: str = ""
    imported: bool = False  # arrives through a legacy file instead of the live hooks
    missed_exit: bool = False  # the live hook never saw the exit: reconciliation adds it

    @property
    def closed(self) -> bool:
        return self.exit_price is not None

    @property
    def net(self) -> Decimal:
        assert self.exit_price is not None
        direction = 1 if self.side == "Buy" else -1
        return direction * (self.exit_price - self.entry_price) * self.qty - (
            self.entry_fee + self.exit_fee
        )


@dataclass
class Activity:
    trips: list[Trip] = field(default_factory=list)

    def of(self, bot_id: str) -> list[Trip]:
        return [t for t in self.trips if t.bot_id == bot_id]


def _price(rng: random.Random, base: Decimal, spread: float, step: str) -> Decimal:
    return _q(base * Decimal(str(round(1 + rng.uniform(-spread, spread), 6))), step)


def generate(seed: int = 7, start: datetime | None = None) -> Activity:
    """The activity for ``seed``; prices, sizes and outcomes depend on the seed only."""
    rng = random.Random(seed)
    act = Activity()
    T0 = start or start_of_activity()
    # ShortSeller: shorts on BTC/ETH/SOL, exchange-side exits; the last one stays open.
    when = T0
    for n in range(7):
        symbol = list(BASE)[n % 3]
        step = {"BTCUSDT": "0.1", "ETHUSDT": "0.01", "SOLUSDT": "0.01"}[symbol]
        qty_step = {"BTCUSDT": "0.001", "ETHUSDT": "0.01", "SOLUSDT": "0.1"}[symbol]
        entry = _price(rng, BASE[symbol], 0.02, step)
        qty = _q(Decimal(700) / entry, qty_step) or Decimal(qty_step)
        win = rng.random() < 0.55
        exit_ = _q(entry * (Decimal("0.97") if win else Decimal("1.012")), step)
        is_open = n == 6
        when += timedelta(hours=3, minutes=rng.randint(0, 50))
        out = when + timedelta(hours=rng.randint(1, 5))
        act.trips.append(
            Trip(
                bot_id="shortseller_001",
                key=f"ss-{n}",
                symbol=symbol,
                side="Sell",
                qty=qty,
                entry_price=entry,
                entry_time=when,
                exit_price=None if is_open else exit_,
                exit_time=None if is_open else out,
                entry_fee=_q(entry * qty * FEE_RATE),
                exit_fee=Decimal(0) if is_open else _q(exit_ * qty * FEE_RATE),
                reason="take_profit" if win else "stop_loss",
                missed_exit=n in (1, 4),
            )
        )
        when = out
    # Momentum: longs, no fees in its own records; the first two come from its legacy file.
    when = T0
    for n in range(6):
        symbol = list(MO_SYMBOLS)[n % 3]
        entry = _price(rng, MO_SYMBOLS[symbol], 0.03, "0.01")
        qty = _q(Decimal(2000) / entry, "0.00001")
        exit_ = _q(entry * Decimal(str(round(1 + rng.uniform(-0.04, 0.06), 4))), "0.01")
        is_open = n == 5
        when += timedelta(hours=4, minutes=rng.randint(0, 59))
        out = when + timedelta(hours=rng.randint(2, 20))
        act.trips.append(
            Trip(
                bot_id="momentum_001",
                key=f"{symbol}_{seed}_{n}",
                symbol=symbol,
                side="Buy",
                qty=qty,
                entry_price=entry,
                entry_time=when,
                exit_price=None if is_open else exit_,
                exit_time=None if is_open else out,
                entry_fee=Decimal(0),
                exit_fee=Decimal(0),
                reason="MA Exit" if exit_ >= entry else "Exchange Stop Loss",
                imported=n < 2,
            )
        )
        when = out
    # LXAlgo: longs after pumps; exits come from the exchange stream (listener file).
    when = T0
    for n in range(6):
        symbol = list(LX_SYMBOLS)[n % 3]
        entry = _price(rng, LX_SYMBOLS[symbol], 0.05, "0.000001")
        qty = Decimal(int(Decimal(200) / entry))
        exit_ = _q(entry * Decimal(str(round(1 + rng.uniform(-0.05, 0.08), 4))), "0.000001")
        is_open = n == 5
        when += timedelta(hours=2, minutes=rng.randint(0, 59))
        out = when + timedelta(hours=rng.randint(1, 8))
        act.trips.append(
            Trip(
                bot_id="lxalgo_001",
                key=f"{symbol}|Rule {6 + 2 * (n % 2)}",
                symbol=symbol,
                side="Buy",
                qty=qty,
                entry_price=entry,
                entry_time=when,
                exit_price=None if is_open else exit_,
                exit_time=None if is_open else out,
                # an imported tracker entry carries no fee (the log has none)
                entry_fee=Decimal(0) if n < 2 else _q(entry * qty * FEE_RATE),
                exit_fee=Decimal(0) if is_open else _q(exit_ * qty * FEE_RATE),
                reason="external_close",
                rule_id=f"Rule {6 + 2 * (n % 2)}",
                imported=n < 2,
            )
        )
        when = out
    return act


@dataclass(frozen=True, slots=True)
class BotFigures:
    bot_id: str
    round_trips: int
    wins: int
    losses: int
    net_pnl: Decimal
    open_symbols: tuple[str, ...]


def expected(seed: int = 7) -> dict[str, BotFigures]:
    """What the generated activity implies, per bot (realized P&L net of fees)."""
    act = generate(seed)
    out = {}
    for bot in ("shortseller_001", "lxalgo_001", "momentum_001"):
        trips = act.of(bot)
        closed = [t for t in trips if t.closed]
        out[bot] = BotFigures(
            bot_id=bot,
            round_trips=len(closed),
            wins=sum(1 for t in closed if t.net > 0),
            losses=sum(1 for t in closed if t.net <= 0),
            net_pnl=sum((t.net for t in closed), Decimal(0)),
            open_symbols=tuple(sorted(t.symbol for t in trips if not t.closed)),
        )
    return out
