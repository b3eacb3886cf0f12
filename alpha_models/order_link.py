"""Bybit ``orderLinkId``: one compact form that names the bot and the reason in <= 36
characters, and a parser for every form seen in production.

Compact grammar
---------------
::

    link_id = bot_id ":" code ":" stamp            ; len(link_id) <= 36, chars [A-Za-z0-9_:-]
    bot_id  = [a-z][a-z0-9_]{0,14}                 ; the FULL bot id, at most 15 characters
    code    = [A-Za-z0-9_-]{1,8}                   ; reason code (vocabulary, or sanitised text)
    stamp   = ms36 seq36                           ; exactly 11 characters [0-9a-z]
    ms36    = 8 base-36 digits                     ; Unix epoch milliseconds, zero-padded
    seq36   = 3 base-36 digits                     ; per-process counter, random start

Maximum length: 15 + 1 + 8 + 1 + 11 = 36. Examples (``now`` = 2025-11-06 01:10:00 UTC)::

    shortseller_001:tp:mhmqc3eo0a1     30 chars  -> shortseller_001 / take_profit
    lxalgo_001:neg8h:mhmqc3eo0a2       28 chars  -> lxalgo_001 / 8h_negative_pnl
    momentum_001:shutdown:mhmqc3eo0a3  33 chars  -> momentum_001 / System Shutdown

(``mhmqc3eo`` = 1762391400000 ms; ``0a1``.. = the counter.)

Why this shape
--------------
* Part 0 is the full bot id, so every existing reader that splits on ``:`` (the listener:
  bot = part 0, close_reason = part 1; ``AlphaDBClient.parse_client_order_id``; the hourly
  sync's ``startswith(f"{bot_id}:")``) keeps attributing the order. Those readers will see the
  short *code* (``tp``) as the reason; :func:`parse_order_link_id` maps it to the canonical
  reason (``take_profit``).
* A 13-digit ms stamp does not fit next to a 15-character bot id plus a uniqueness suffix;
  base-36 ms needs 8 characters (good until 2059-05-05). The 11-character ``[0-9a-z]`` stamp
  can never be mistaken for the legacy 10/13-digit stamps.
* Uniqueness: within a process the 3-character counter (46,656 values) makes two ids differ
  even when made in the same millisecond (thread-safe: a lock guards it; it is re-seeded in a
  forked child). Across processes of the *same* bot the counters start at random offsets, so
  two ids made in the same millisecond collide with probability 1/46,656.
* Reason codes are bot-independent and at most 8 characters (``CODE_MAX``), so
  :func:`canonical_reason` does not depend on the bot and every vocabulary code fits next to
  any bot id of <= 15 characters. Bot ids longer than 15 characters are refused by
  :func:`make_order_link_id` (there is no alias table: register short bot ids).

Reasons
-------
A reason given to :func:`make_order_link_id` may be a code (``tp``), a canonical reason
(``take_profit``) or a known alias (``Take Profit``, ``Regime Change (INACTIVE)``,
``TakeProfit``); aliases are matched case-insensitively with runs of non-alphanumerics folded
to ``_``. Any other text is *sanitised*: each run of characters outside ``[A-Za-z0-9_-]``
becomes ``_``, leading/trailing ``_``/``-`` are stripped, the result is cut to 8 characters
(and stripped again); text with nothing left becomes ``unk`` (``unknown``). The canonical
reason of unknown text is that sanitised, truncated code itself (``"Rule 8"`` -> ``Rule_8``),
unless the result spells a vocabulary code or alias, which then gives that code
(``"UNKNOWN:0"`` -> ``UNKNOWN`` -> ``unk``). Round trip, by construction::

    parse_order_link_id(make_order_link_id(bot, r)).reason == canonical_reason(r)

Parsing (any string, never raises)
----------------------------------
Reproduces the listener's attribution: with 2 or more ``:`` parts, bot = part 0 and reason =
part 1 (part 2, if present, is a timestamp when it is 13 digits = ms or 10 digits = s); with
fewer than 2 parts, bot ``unknown`` and reason = the whole id (``""`` stays ``""``, hex stays
hex). A part 0 that is not a valid bot id (``^[a-z][a-z0-9_]{0,49}$``) becomes ``unknown``.
Whether the bot is *registered* is the caller's business (see ``bybit_stream``).
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Literal, TypeAlias

from alpha_models.errors import ValidationError
from alpha_models.inputs import UNKNOWN_BOT

__all__ = [
    "BOT_PART_MAX",
    "CODE_MAX",
    "LINK_ID_MAX",
    "REASON_CODES",
    "LinkForm",
    "ParsedLinkId",
    "canonical_reason",
    "is_own_link_id",
    "make_order_link_id",
    "parse_order_link_id",
    "reason_code",
]

LINK_ID_MAX = 36
"""Bybit's documented orderLinkId limit."""
BOT_PART_MAX = 15
CODE_MAX = 8
_MS_WIDTH = 8
_SEQ_WIDTH = 3
_SEQ_SPACE = 36**_SEQ_WIDTH
_MS_SPACE = 36**_MS_WIDTH
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"

LinkForm: TypeAlias = Literal["compact", "legacy_ms", "legacy_s", "hex", "empty", "other"]

# code -> (canonical reason, aliases). Canonical reasons keep each strategy's established
# spelling (ShortSeller/LXAlgo snake_case, Momentum's "MA Exit"/"System Shutdown").
_VOCABULARY: dict[str, tuple[str, tuple[str, ...]]] = {
    "entry": ("entry", ("open",)),
    "tp": ("take_profit", ("Take Profit", "TakeProfit", "PartialTakeProfit")),
    "sl": ("stop_loss", ("Stop Loss", "StopLoss", "PartialStopLoss")),
    "trail": ("trailing_stop", ("Trailing Stop", "TrailingStop")),
    "regime": ("regime_exit", ("Regime Change (INACTIVE)", "Regime Change")),
    "tlimit": ("time_limit", ("Time Limit (24h)",)),
    "cool": ("cooldown_exit", ("Cooldown Expired (Unfavorable Conditions)", "cooldown")),
    "ma": ("MA Exit", ()),
    "shutdown": ("System Shutdown", ()),
    "xsl": ("Exchange Stop Loss", ()),
    "risk": ("risk_management", ()),
    "ext": ("external_close", ()),
    "extdt": ("external_close_during_downtime", ()),
    "neg8h": ("8h_negative_pnl", ()),
    "manual": ("manual", ()),
    "expiry": ("expiry", ()),
    "close": ("close", ()),
    "unk": ("unknown", ()),
}

REASON_CODES: Mapping[str, str] = MappingProxyType(
    {code: canon for code, (canon, _) in _VOCABULARY.items()}
)
"""Vocabulary: reason code -> canonical reason."""

_KEY_RE = re.compile(r"[^a-z0-9]+")
_SANITISE_RE = re.compile(r"[^A-Za-z0-9_-]+")


def _key(text: str) -> str:
    return _KEY_RE.sub("_", text.lower()).strip("_")


def _build_lookup() -> dict[str, str]:
    table: dict[str, str] = {}
    for code, (canon, aliases) in _VOCABULARY.items():
        for name in (code, canon, *aliases):
            key = _key(name)
            if table.setdefault(key, code) != code:  # pragma: no cover - vocabulary bug
                raise RuntimeError(f"reason alias {name!r} maps to two codes")
    return table


_LOOKUP = _build_lookup()
_FALLBACK_CODE = "unk"


def _resolve(part: str) -> tuple[str, str]:
    """(reason_code, canonical reason) for a reason part found in a link id."""
    canon = REASON_CODES.get(part)
    if canon is not None:
        return part, canon
    code = _LOOKUP.get(_key(part)) if len(part) <= 64 else None
    if code is not None:
        return code, REASON_CODES[code]
    return part, part


def reason_code(reason: str) -> str:
    """The code :func:`make_order_link_id` puts in the id for ``reason`` (<= 8 characters)."""
    if not isinstance(reason, str):
        raise ValidationError("reason", reason, "expected a string")
    code = _LOOKUP.get(_key(reason[:200]))
    if code is not None:
        return code
    text = _SANITISE_RE.sub("_", reason[:200]).strip("_-")[:CODE_MAX].strip("_-")
    # The cut text may itself spell a code or alias ("UNKNOWN:0" -> "UNKNOWN" -> "unk").
    return _resolve(text)[0] if text else _FALLBACK_CODE


def canonical_reason(reason: str) -> str:
    """The reason :func:`parse_order_link_id` will return for an id made with ``reason``.

    Write this (not the raw text) to ``close_reason`` when a bot records its own copy.
    """
    return _resolve(reason_code(reason))[1]


# ------------------------------------------------------------------------------- make

_lock = threading.RLock()  # re-entrant: a signal handler may call in
_seq = secrets.randbelow(_SEQ_SPACE)


def _reseed() -> None:
    global _seq
    _seq = secrets.randbelow(_SEQ_SPACE)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)

_BOT_PART_RE = re.compile(r"[a-z][a-z0-9_]{0,14}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _b36(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(_B36[r])
    return "".join(reversed(out))


def make_order_link_id(bot_id: str, reason: str, *, now: datetime | None = None) -> str:
    """A fresh compact orderLinkId (<= 36 chars, ``[A-Za-z0-9_:-]``, unique per call).

    Raises ``ValidationError`` for a bot id that is not ``^[a-z][a-z0-9_]{0,14}$`` (or is
    ``unknown``), a non-string reason, or a naive / out-of-range ``now``. Any reason text is
    accepted (see the module docstring).
    """
    global _seq
    if not isinstance(bot_id, str) or _BOT_PART_RE.fullmatch(bot_id) is None:
        raise ValidationError(
            "bot_id", bot_id, f"not a bot id of at most {BOT_PART_MAX} characters"
        )
    if bot_id == UNKNOWN_BOT:
        raise ValidationError("bot_id", bot_id, "'unknown' is not a bot")
    code = reason_code(reason)
    if now is None:
        now = datetime.now(UTC)
    elif not isinstance(now, datetime) or now.utcoffset() is None:
        raise ValidationError("now", now, "expected an aware datetime")
    delta = now - _EPOCH  # exact integer arithmetic (a float timestamp can lose a ms)
    ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if not 0 <= ms < _MS_SPACE:
        raise ValidationError("now", now, "outside 1970..2059 (8 base-36 digits)")
    with _lock:
        seq = _seq
        _seq = (seq + 1) % _SEQ_SPACE
    return f"{bot_id}:{code}:{_b36(ms, _MS_WIDTH)}{_b36(seq, _SEQ_WIDTH)}"


# ------------------------------------------------------------------------------ parse


@dataclass(frozen=True, slots=True)
class ParsedLinkId:
    """What an orderLinkId says.

    ``bot_id``: part 0 if it is a valid bot id, else ``unknown`` (not checked against the
    registry). ``reason``: canonical reason (``take_profit``), or the raw part when it is not
    in the vocabulary, or the whole id when there is no ``:`` (listener parity).
    ``reason_code``: vocabulary code, else the same as ``reason``. ``raw_reason``: exactly what
    the legacy listener stored as ``close_reason`` (part 1, or the whole id).
    ``timestamp``: creation time encoded in the id, if any.
    """

    bot_id: str
    reason: str
    reason_code: str
    timestamp: datetime | None
    form: LinkForm
    raw_reason: str


_EMPTY = ParsedLinkId(UNKNOWN_BOT, "", "", None, "empty", "")
_BOT_RE = re.compile(r"[a-z][a-z0-9_]{0,49}")
_CODE_RE = re.compile(r"[A-Za-z0-9_-]{1,8}")
_STAMP_RE = re.compile(r"[0-9a-z]{11}")
_HEX_RE = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")
_DIGITS13_RE = re.compile(r"[0-9]{13}")
_DIGITS10_RE = re.compile(r"[0-9]{10}")


def parse_order_link_id(s: str | None) -> ParsedLinkId:
    """Parse any orderLinkId (compact, legacy, hex, empty, manual). Never raises for a str."""
    if not s:
        return _EMPTY
    parts = s.split(":", 3)
    if len(parts) < 2:
        form: LinkForm = "hex" if _HEX_RE.fullmatch(s) else "other"
        return ParsedLinkId(UNKNOWN_BOT, s, s, None, form, s)
    raw_bot, raw_reason = parts[0], parts[1]
    bot = raw_bot if _BOT_RE.fullmatch(raw_bot) else UNKNOWN_BOT
    code, reason = _resolve(raw_reason)
    timestamp: datetime | None = None
    form = "other"
    if len(parts) >= 3:
        stamp = parts[2]
        exact = len(parts) == 3
        if (
            exact
            and len(s) <= LINK_ID_MAX
            and _STAMP_RE.fullmatch(stamp)
            and _BOT_PART_RE.fullmatch(raw_bot)
            and _CODE_RE.fullmatch(raw_reason)
        ):
            form = "compact"
            timestamp = _EPOCH + timedelta(milliseconds=int(stamp[:_MS_WIDTH], 36))
        elif _DIGITS13_RE.fullmatch(stamp):
            form = "legacy_ms" if exact else "other"
            timestamp = _EPOCH + timedelta(milliseconds=int(stamp))
        elif _DIGITS10_RE.fullmatch(stamp):
            form = "legacy_s" if exact else "other"
            timestamp = _EPOCH + timedelta(seconds=int(stamp))
    return ParsedLinkId(bot, reason, code, timestamp, form, raw_reason)


def is_own_link_id(s: str | None, bot_id: str) -> bool:
    """True if the link id names ``bot_id`` (never for ``unknown``)."""
    return bot_id != UNKNOWN_BOT and parse_order_link_id(s).bot_id == bot_id
