"""orderLinkId: the compact form (make) and every production form (parse)."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alpha_models.errors import ValidationError
from alpha_models.inputs import KNOWN_BOTS
from alpha_models.order_link import (
    LINK_ID_MAX,
    REASON_CODES,
    canonical_reason,
    is_own_link_id,
    make_order_link_id,
    parse_order_link_id,
    reason_code,
)

NOW = datetime(2025, 11, 6, 1, 10, tzinfo=UTC)
ALLOWED = re.compile(r"[A-Za-z0-9_:-]{1,36}")
BOT_RE = re.compile(r"[a-z][a-z0-9_]{0,49}")
BOTS = sorted(KNOWN_BOTS)


def listener_attribution(link: str) -> tuple[str, str]:
    """The production listener's rule (PLATFORM.md 3.2), without the prefix check."""
    parts = link.split(":")
    if len(parts) >= 2:
        return parts[0], parts[1]
    return "unknown", link


# ----------------------------------------------------------------------------------- make


@pytest.mark.parametrize(
    ("bot", "reason", "code", "canonical", "length"),
    [
        ("shortseller_001", "take_profit", "tp", "take_profit", 30),
        ("lxalgo_001", "8h_negative_pnl", "neg8h", "8h_negative_pnl", 28),
        ("momentum_001", "System Shutdown", "shutdown", "System Shutdown", 33),
        ("shortseller_001", "Regime Change (INACTIVE)", "regime", "regime_exit", 34),
        ("momentum_001", "MA Exit", "ma", "MA Exit", 27),
        ("momentum_001", "Exchange Stop Loss", "xsl", "Exchange Stop Loss", 28),
        ("lxalgo_001", "external_close", "ext", "external_close", 26),
        ("shortseller_001", "Time Limit (24h)", "tlimit", "time_limit", 34),
    ],
)
def test_documented_examples(bot: str, reason: str, code: str, canonical: str, length: int) -> None:
    link = make_order_link_id(bot, reason, now=NOW)
    assert len(link) == length <= LINK_ID_MAX
    assert link.startswith(f"{bot}:{code}:mhmqc3eo")  # base-36 of 1762391400000 ms
    parsed = parse_order_link_id(link)
    assert (parsed.bot_id, parsed.reason, parsed.reason_code) == (bot, canonical, code)
    assert parsed.form == "compact" and parsed.timestamp == NOW
    # The legacy listener (split on ':') still attributes the order to the bot.
    assert listener_attribution(link) == (bot, code)


@pytest.mark.parametrize("bot", BOTS)
@pytest.mark.parametrize("code", sorted(REASON_CODES))
def test_every_vocabulary_reason_fits_and_round_trips(bot: str, code: str) -> None:
    for reason in (code, REASON_CODES[code]):
        link = make_order_link_id(bot, reason)
        assert len(link) <= LINK_ID_MAX and ALLOWED.fullmatch(link)
        parsed = parse_order_link_id(link)
        assert parsed.bot_id == bot
        assert parsed.reason == REASON_CODES[code] == canonical_reason(reason)
        assert parsed.reason_code == code


def test_stop_order_types_and_strategy_strings_map_to_codes() -> None:
    assert reason_code("TakeProfit") == "tp"
    assert reason_code("StopLoss") == "sl"
    assert reason_code("TrailingStop") == "trail"
    assert reason_code("Stop Loss") == "sl"
    assert reason_code("Cooldown Expired (Unfavorable Conditions)") == "cool"
    assert reason_code("RISK_MANAGEMENT") == "risk"


def test_unknown_reason_is_sanitised_and_truncated() -> None:
    assert reason_code("Rule 8") == "Rule_8"
    assert canonical_reason("Rule 8") == "Rule_8"
    assert reason_code("phase3_test") == "phase3_t"
    assert reason_code("all_bots_test") == "all_bots"
    assert reason_code("'; DROP TABLE trading.fills;--") == "DROP_TAB"
    assert reason_code("\x1b[31mred\x1b[0m") == "31mred_0m"[:8].strip("_")
    assert reason_code("") == "unk" and canonical_reason("") == "unknown"
    assert reason_code("日本語") == "unk"
    # the cut text can spell an alias: it then becomes that vocabulary code
    assert reason_code("UNKNOWN:0") == "unk" and canonical_reason("UNKNOWN:0") == "unknown"
    assert reason_code("Take_Profit!!") == "tp"
    link = make_order_link_id("shortseller_001", "x" * 10_000)
    assert len(link) <= LINK_ID_MAX and parse_order_link_id(link).reason == "x" * 8


def test_ids_made_in_the_same_millisecond_are_unique() -> None:
    links = [make_order_link_id("lxalgo_001", "entry", now=NOW) for _ in range(20_000)]
    assert len(set(links)) == len(links)


def test_uniqueness_across_threads() -> None:
    results: list[list[str]] = [[] for _ in range(8)]

    def work(out: list[str]) -> None:
        out.extend(make_order_link_id("shortseller_001", "tp", now=NOW) for _ in range(2_000))

    threads = [threading.Thread(target=work, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    links = [link for r in results for link in r]
    assert len(links) == 16_000 == len(set(links))


def test_now_defaults_to_the_clock_and_other_zones_convert() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    stamp = parse_order_link_id(make_order_link_id("momentum_001", "entry")).timestamp
    assert stamp is not None and before <= stamp <= datetime.now(UTC)
    local = NOW.astimezone(timezone(timedelta(hours=-5)))
    assert parse_order_link_id(make_order_link_id("lxalgo_001", "tp", now=local)).timestamp == NOW


MAKE_BAD = [
    ("bot too long for part 0", {"bot_id": "shortseller_0001"}, "bot_id"),
    ("bot uppercase", {"bot_id": "ShortSeller"}, "bot_id"),
    ("bot with colon", {"bot_id": "a:b"}, "bot_id"),
    ("unknown is not a bot", {"bot_id": "unknown"}, "bot_id"),
    ("bot not a string", {"bot_id": None}, "bot_id"),
    ("reason not a string", {"reason": 7}, "reason"),
    ("naive now", {"now": datetime(2025, 11, 6)}, "now"),
    ("now before 1970", {"now": datetime(1969, 12, 31, tzinfo=UTC)}, "now"),
    ("now after 2059", {"now": datetime(2060, 1, 1, tzinfo=UTC)}, "now"),
]


@pytest.mark.parametrize(("case", "over", "field"), MAKE_BAD, ids=[c[0] for c in MAKE_BAD])
def test_make_rejections(case: str, over: dict[str, object], field: str) -> None:
    kwargs: dict[str, object] = {"bot_id": "lxalgo_001", "reason": "entry", "now": NOW, **over}
    with pytest.raises(ValidationError) as exc:
        make_order_link_id(**kwargs)  # type: ignore[arg-type]
    assert exc.value.field == field


# ---------------------------------------------------------------------------------- parse

MS = datetime(2025, 10, 24, 5, 17, 17, 712000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("link", "bot", "reason", "raw_reason", "form", "timestamp"),
    [
        (
            "shortseller_001:phase3_test:1761283037712",
            "shortseller_001",
            "phase3_test",
            "phase3_test",
            "legacy_ms",
            MS,
        ),
        (
            "shortseller_001:take_profit:1761283037712",
            "shortseller_001",
            "take_profit",
            "take_profit",
            "legacy_ms",
            MS,
        ),
        (
            "shortseller_001:regime:1759047903690",
            "shortseller_001",
            "regime_exit",
            "regime",
            "legacy_ms",
            datetime(2025, 9, 28, 8, 25, 3, 690000, tzinfo=UTC),
        ),
        (
            "momentum_001:Exchange Stop Loss:1762455379",
            "momentum_001",
            "Exchange Stop Loss",
            "Exchange Stop Loss",
            "legacy_s",
            datetime(2025, 11, 6, 18, 56, 19, tzinfo=UTC),
        ),
        (
            "lxalgo_001:entry:1762391404",
            "lxalgo_001",
            "entry",
            "entry",
            "legacy_s",
            datetime(2025, 11, 6, 1, 10, 4, tzinfo=UTC),
        ),
        ("", "unknown", "", "", "empty", None),
        ("9f1c2e3d4b5a6978", "unknown", "9f1c2e3d4b5a6978", "9f1c2e3d4b5a6978", "hex", None),
        (
            "9f1c2e3d4b5a69789f1c2e3d4b5a6978",
            "unknown",
            "9f1c2e3d4b5a69789f1c2e3d4b5a6978",
            "9f1c2e3d4b5a69789f1c2e3d4b5a6978",
            "hex",
            None,
        ),
        ("my-manual-order", "unknown", "my-manual-order", "my-manual-order", "other", None),
        (
            "manual_override:close:1762391404000",
            "manual_override",
            "close",
            "close",
            "legacy_ms",
            datetime(2025, 11, 6, 1, 10, 4, tzinfo=UTC),
        ),
        ("manual_override:close:abc", "manual_override", "close", "close", "other", None),
        ("lxalgo_001:tp", "lxalgo_001", "take_profit", "tp", "other", None),
        ("Manual:close:1", "unknown", "close", "close", "other", None),
        (
            ":x:1762391404",
            "unknown",
            "x",
            "x",
            "legacy_s",
            datetime(2025, 11, 6, 1, 10, 4, tzinfo=UTC),
        ),
        (
            "a:b:1762391404000:extra",
            "a",
            "b",
            "b",
            "other",
            datetime(2025, 11, 6, 1, 10, 4, tzinfo=UTC),
        ),
    ],
)
def test_parse_production_forms(
    link: str,
    bot: str,
    reason: str,
    raw_reason: str,
    form: str,
    timestamp: datetime | None,
) -> None:
    parsed = parse_order_link_id(link)
    assert (parsed.bot_id, parsed.reason, parsed.raw_reason, parsed.form) == (
        bot,
        reason,
        raw_reason,
        form,
    )
    assert parsed.timestamp == timestamp


def test_none_is_empty() -> None:
    assert parse_order_link_id(None).form == "empty"


def test_is_own_link_id() -> None:
    mine = make_order_link_id("shortseller_001", "entry", now=NOW)
    assert is_own_link_id(mine, "shortseller_001")
    assert not is_own_link_id(mine, "lxalgo_001")
    assert is_own_link_id("lxalgo_001:entry:1761343501385", "lxalgo_001")
    assert not is_own_link_id("", "unknown")
    assert not is_own_link_id("9f1c2e3d4b5a6978", "unknown")
    assert not is_own_link_id(None, "shortseller_001")


# ----------------------------------------------------------------------------- properties

LINKISH = st.one_of(
    st.text(),
    st.text(alphabet="ab_01:Z -\x00\n", max_size=60),
    st.lists(st.text(alphabet="abc019_:TPz", max_size=15), min_size=1, max_size=5).map(":".join),
)


@given(LINKISH)
def test_parse_never_raises_and_reproduces_listener_attribution(link: str) -> None:
    parsed = parse_order_link_id(link)
    assert parsed.form in {"compact", "legacy_ms", "legacy_s", "hex", "empty", "other"}
    assert parsed.bot_id == "unknown" or BOT_RE.fullmatch(parsed.bot_id)
    listener_bot, listener_reason = listener_attribution(link)
    assert parsed.raw_reason == listener_reason
    assert parsed.bot_id == (listener_bot if BOT_RE.fullmatch(listener_bot) else "unknown")
    if ":" not in link:
        assert parsed.reason == link and parsed.timestamp is None


VALID_SHORT_BOTS = st.one_of(
    st.sampled_from(BOTS), st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True)
).filter(lambda b: b != "unknown")
AWARE = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2059, 5, 1), timezones=st.just(UTC)
)


@given(bot=VALID_SHORT_BOTS, reason=st.text(), now=AWARE)
def test_make_always_fits_and_round_trips(bot: str, reason: str, now: datetime) -> None:
    link = make_order_link_id(bot, reason, now=now)
    assert len(link) <= LINK_ID_MAX
    assert ALLOWED.fullmatch(link)
    parsed = parse_order_link_id(link)
    assert parsed.form == "compact"
    assert parsed.bot_id == bot
    assert parsed.reason == canonical_reason(reason)
    assert parsed.reason_code == reason_code(reason)
    assert parsed.timestamp == now.replace(microsecond=now.microsecond // 1000 * 1000)
    assert listener_attribution(link)[0] == bot


@given(st.sampled_from(sorted({a for c, a in REASON_CODES.items()} | set(REASON_CODES))))
def test_vocabulary_round_trips_for_every_known_bot(reason: str) -> None:
    for bot in BOTS:
        parsed = parse_order_link_id(make_order_link_id(bot, reason))
        assert parsed.bot_id == bot and parsed.reason in REASON_CODES.values()
