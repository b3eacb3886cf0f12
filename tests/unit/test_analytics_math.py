"""Pure pieces of the P&L store and the analytics: COPY text, drawdown, CLI value parsing."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import accumulate

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alpha_models.analytics import _max_drawdown
from alpha_models.cli.analytics import parse_time
from alpha_models.cli.pnl import parse_mark
from alpha_models.pnl import PnlFill
from alpha_models.pnl_store import _TEXT_ESCAPES, _copy_unescape, _parse_chunk

PROPERTY = settings(max_examples=300, deadline=None)


def pg_copy_escape(value: str) -> str:
    """What PostgreSQL's COPY TO (text format) writes for a text value."""
    out = []
    for ch in value:
        out.append(
            {
                "\\": "\\\\",
                "\t": "\\t",
                "\n": "\\n",
                "\r": "\\r",
                "\b": "\\b",
                "\f": "\\f",
                "\v": "\\v",
            }.get(ch, ch)
        )
    return "".join(out)


@PROPERTY
@given(st.text())
def test_copy_text_decoding_inverts_postgres_escaping(value: str) -> None:
    assert _copy_unescape(pg_copy_escape(value)) == value


@PROPERTY
@given(st.text())
def test_copy_text_encoding_is_decoded_back_by_postgres_rules(value: str) -> None:
    # what we send with COPY FROM is read back with the same rules
    assert _copy_unescape(value.translate(_TEXT_ESCAPES)) == value


def test_octal_and_hex_escapes_are_decoded() -> None:
    assert _copy_unescape("a\\101\\x42c\\") == "aABc\\"


def naive_drawdown(units: list[int]) -> int:
    cum = [0, *accumulate(units)]
    return max((cum[i] - cum[j] for i in range(len(cum)) for j in range(i, len(cum))), default=0)


@PROPERTY
@given(st.lists(st.integers(-(10**12), 10**12), max_size=60))
def test_max_drawdown_is_the_largest_fall_below_a_running_peak(units: list[int]) -> None:
    assert _max_drawdown(np.array(units, dtype=np.int64)) == naive_drawdown(units)


def test_max_drawdown_beyond_int64_falls_back_to_exact_integers() -> None:
    units = [2**62, -(2**62), -(2**62)]  # the running sum leaves int64 on the way
    assert _max_drawdown(np.array(units, dtype=np.int64)) == 2**63


line_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.integers(1, 10**12),
            line_text.filter(bool),
            st.sampled_from(["Buy", "Sell"]),
            st.integers(1, 10**16),
            st.integers(1, 10**16),
            st.integers(-(10**10), 10**10),
            st.datetimes(
                min_value=datetime(2000, 1, 1),
                max_value=datetime(2100, 1, 1),
                timezones=st.just(UTC),
            ),
            line_text,
            line_text,
        ),
        min_size=1,
        max_size=8,
    )
)
def test_copy_rows_become_the_same_fills_as_the_validating_constructor(
    rows: list[tuple[int, str, str, int, int, int, datetime, str, str]],
) -> None:
    lines = []
    expected = []
    for fid, exec_id, side, price, qty, fee, when, order_id, reason in rows:
        p, q, f = (Decimal(v).scaleb(-8) for v in (price, qty, fee))
        stamp = when.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00"
        cells = [str(fid), exec_id, "bot_1", "BTCUSDT", side, f"{p:f}", f"{q:f}", f"{f:f}", stamp]
        cells += [order_id, "", reason]
        lines.append(
            (
                "\t".join(pg_copy_escape(c) if i in (1, 9, 11) else c for i, c in enumerate(cells))
                + "\n"
            ).encode()
        )
        expected.append(
            PnlFill(
                fid, exec_id, "bot_1", "BTCUSDT", side, p, q, f, when, order_id, "", reason or None
            )
        )
    out: list[PnlFill] = []
    _parse_chunk(lines, out)
    assert out == expected


def test_mark_and_time_arguments() -> None:
    assert parse_mark("btcusdt=97000.5") == ("BTCUSDT", Decimal("97000.5"))
    for bad in ("BTCUSDT", "=1", "BTCUSDT=abc", "BTCUSDT=0", "BTCUSDT=nan", "X=-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_mark(bad)
    assert parse_time("2025-11-01") == datetime(2025, 11, 1, tzinfo=UTC)
    assert parse_time("2025-11-01T02:00:00+02:00") == datetime(2025, 11, 1, tzinfo=UTC)
    assert parse_time("2025-11-01T00:00:00Z") - parse_time("2025-10-31") == timedelta(days=1)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time("yesterday")
