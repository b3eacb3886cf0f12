"""Hostile input into every public write function: random unicode, control characters and
SQL fragments either come back from the database exactly as given, or are refused with the
typed ``ValidationError``; nothing else may happen (no driver error, no encoding error).

Also: what the CLI prints from stored text is one inert line (no newline or escape
injection). The database is real, so example counts stay modest.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from alpha_models.bulk import ingest_bulk
from alpha_models.cli import main as cli_main
from alpha_models.cli.common import safe_text
from alpha_models.client import AlphaDBClient
from alpha_models.errors import ValidationError
from alpha_models.inputs import FillInput, OrderUpdate, PositionUpdate
from alpha_models.settings import Settings
from alpha_models.writepath import Outcome
from tests.conftest import Writer

FRAGMENTS = [
    "'", "''", '"', "\\", "\\'", ";", "--", "/*", "*/", "$$", "$x$", "%s", "%(exec_id)s", "%%",
    ":bot_id", "?", "'; DROP TABLE trading.fills; --", "' OR '1'='1", "'); DELETE FROM x;--",
    "\\N", "E'\\x41'", "NULL", "{}", '{"a": [1]}', "${jndi:ldap://x}", "<script>", "\x00",
    "\n", "\r\n", "\t", "\x1b[31m", "\x1b]0;title\x07", "\x7f", "\x85", "\u2028", "\u202e",
    "\ufeff", "\u200b", "\ud800", "\U0001d518\U0001d52b", "日本語", "Ω", " ", "Rule 1",
]  # fmt: skip
_PRINTABLE = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
_RAW = st.one_of(
    st.text(max_size=70),
    st.sampled_from(FRAGMENTS),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=12)), max_size=8).map("".join),
)
# Printable text with SQL in it: what validation lets through, so it must round-trip.
_PRINTABLE_SQL = st.lists(
    st.one_of(
        st.sampled_from([f for f in FRAGMENTS if f.isprintable()]),
        st.text(alphabet=_PRINTABLE, max_size=12),
    ),
    min_size=1,
    max_size=6,
).map("".join)
_NUMBERS = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.decimals(min_value=-(10**9), max_value=10**9, places=10).map(str),
    st.datetimes(timezones=st.sampled_from([UTC, None])).map(datetime.isoformat),
    st.sampled_from(["1e3", "-0", "0.000000001", " 1", "1 ", "1_000", "0x10", "\u0661", "NaN",
                     "Infinity", "1e12", "999999999999.99999999", "1;DROP", "+1", ".5", "5."]),
    st.integers(min_value=1420070400000, max_value=4102444800000).map(str),  # epoch ms
)  # fmt: skip
HOSTILE = st.one_of(_RAW, _PRINTABLE_SQL, _NUMBERS)
FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
T0 = datetime(2025, 6, 1, tzinfo=UTC)
_n = itertools.count(1)


def _one(writer: Writer, sql: str, **params: Any) -> Any:
    with writer.engine.connect() as conn:
        row = conn.execute(text(sql), params).one()
        conn.rollback()
    return row


def stored_or_refused(call: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, result) when ``call`` succeeded, (False, None) for a ValidationError; any other
    exception fails the test."""
    try:
        result = call()
    except ValidationError:
        event("refused")
        return False, None
    event("stored")
    return True, result


@pytest.fixture
def client(writer: Writer, tmp_path: Path) -> Iterator[Callable[[str], AlphaDBClient]]:
    """One client per bot for the whole test (each holds a connection of the shared pool)."""
    made: dict[str, AlphaDBClient] = {}

    def make(bot_id: str) -> AlphaDBClient:
        if bot_id not in made:
            made[bot_id] = AlphaDBClient(
                bot_id,
                settings=Settings(
                    ALPHA_DATABASE_URL=writer.db.url,
                    ALPHA_REDIS_URL=writer.db.stack.redis_url(),
                    ALPHA_SPOOL_DIR=str(tmp_path / f"spool-{bot_id}"),
                ),
                engine=writer.engine,
            )
        return made[bot_id]

    yield make
    for c in made.values():
        c.close()
        c.write_path.close()  # AlphaDBClient.close() leaves it open on a shared engine


FILL_FIELDS = [
    "exec_id", "order_id", "client_order_id", "close_reason", "symbol", "bot_id", "side",
    "source", "exec_type", "exec_price", "exec_qty", "commission", "exec_time",
]  # fmt: skip
TEXT_FILL_FIELDS = {"exec_id", "order_id", "client_order_id", "close_reason", "symbol", "bot_id"}


def _fill_values(n: int, field: str, value: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "exec_id": f"fz-{n}",
        "bot_id": "shortseller_001",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "exec_price": "100",
        "exec_qty": "0.001",
        "exec_time": T0 + timedelta(seconds=n),
        "order_id": f"o-{n}",
        "client_order_id": "",
        "close_reason": None,
        "commission": "0",
        "source": "fuzz",
        "exec_type": "Trade",
    }
    values[field] = value
    return values


def _check_fill_row(writer: Writer, values: dict[str, Any], fill: FillInput) -> None:
    table = "funding_settlements" if fill.is_funding else "fills"
    price = "mark_price" if fill.is_funding else "exec_price"
    row = _one(
        writer,
        f"SELECT * , {price} AS price FROM trading.{table} WHERE exec_id = :e",
        e=fill.exec_id,
    )
    for name in TEXT_FILL_FIELDS - ({"order_id", "client_order_id", "close_reason"}
                                    if fill.is_funding else set()):  # fmt: skip
        assert getattr(row, name) == values[name], name  # verbatim
    assert row.price == fill.exec_price and row.exec_time == fill.exec_time


@FUZZ
@given(field=st.sampled_from(FILL_FIELDS), value=HOSTILE)
def test_write_path_record_fill(writer: Writer, field: str, value: str) -> None:
    n = next(_n)
    values = _fill_values(n, field, value)
    ok, fill = stored_or_refused(lambda: FillInput(**values))
    if not ok:
        return
    result = writer.path.record_fill(fill)
    if result.outcome is Outcome.DUPLICATE:  # hypothesis repeated an exec_id
        assert field == "exec_id"
        return
    assert result.outcome in (Outcome.NEW, Outcome.REBUILT)
    _check_fill_row(writer, values, fill)


@FUZZ
@given(field=st.sampled_from(FILL_FIELDS), value=HOSTILE)
def test_bulk_ingest(writer: Writer, field: str, value: str) -> None:
    n = next(_n)
    values = _fill_values(n, field, value)
    ok, fill = stored_or_refused(lambda: FillInput(**values))
    if not ok:
        return
    result = ingest_bulk(writer.engine, [fill])
    if result.new + result.funding == 0:
        assert field == "exec_id"
        return
    _check_fill_row(writer, values, fill)


ORDER_FIELDS = [
    "order_id", "client_order_id", "bot_id", "symbol", "side", "order_type", "status", "qty",
    "price", "updated_time",
]  # fmt: skip


@FUZZ
@given(field=st.sampled_from(ORDER_FIELDS), value=HOSTILE)
def test_write_path_record_order(writer: Writer, field: str, value: str) -> None:
    n = next(_n)
    values: dict[str, Any] = {
        "order_id": f"ord-{n}",
        "client_order_id": f"link-{n}",
        "bot_id": "lxalgo_001",
        "symbol": "ETHUSDT",
        "side": "Sell",
        "order_type": "Limit",
        "status": "New",
        "qty": "2",
        "price": "3000",
        "updated_time": T0 + timedelta(seconds=n),
    }
    values[field] = value
    ok, order = stored_or_refused(lambda: OrderUpdate(**values))
    if not ok:
        return
    assert writer.path.record_order(order).outcome is not Outcome.STALE
    row = _one(writer, "SELECT * FROM trading.orders WHERE order_id = :o", o=order.order_id)
    for name in ("order_id", "client_order_id", "bot_id", "symbol", "side", "order_type"):
        assert getattr(row, name) == values[name], name
    assert (row.status, row.quantity, row.price) == (order.status, order.qty, order.price)


POSITION_FIELDS = [
    "bot_id", "symbol", "side", "size", "avg_entry_price", "mark_price", "unrealised_pnl",
    "updated_time",
]  # fmt: skip


@FUZZ
@given(field=st.sampled_from(POSITION_FIELDS), value=HOSTILE)
def test_write_path_record_position(writer: Writer, field: str, value: str) -> None:
    n = next(_n)
    values: dict[str, Any] = {
        "bot_id": "momentum_001",
        "symbol": f"FZ{n}USDT",
        "side": "Buy",
        "size": "1.5",
        "avg_entry_price": "10",
        "mark_price": "11",
        "unrealised_pnl": "1.5",
        "updated_time": T0 + timedelta(seconds=n),
    }
    values[field] = value
    ok, update = stored_or_refused(lambda: PositionUpdate(**values))
    if not ok:
        return
    assert writer.path.record_position(update).outcome is Outcome.NEW
    row = _one(
        writer,
        "SELECT * FROM trading.exchange_positions WHERE bot_id = :b AND symbol = :s",
        b=update.bot_id,
        s=update.symbol,
    )
    assert (row.bot_id, row.symbol, row.side) == (values["bot_id"], values["symbol"], update.side)
    assert (row.size, row.entry_price, row.unrealised_pnl) == (
        update.size,
        update.avg_entry_price,
        update.unrealised_pnl,
    )


CLIENT_FILL_ARGS = [
    "symbol", "side", "exec_price", "exec_qty", "order_id", "client_order_id", "close_reason",
    "commission",
]  # fmt: skip


@FUZZ
@given(field=st.sampled_from(CLIENT_FILL_ARGS), value=HOSTILE)
def test_client_write_fill(
    client: Callable[[str], AlphaDBClient], writer: Writer, field: str, value: str
) -> None:
    n = next(_n)
    args: dict[str, Any] = {
        "symbol": "SOLUSDT",
        "side": "Sell",
        "exec_price": 150.25,
        "exec_qty": 2.0,
        "order_id": f"cw-{n}",
        "client_order_id": "",
        "close_reason": "entry",
        "commission": 0.0,
        "exec_time": T0 + timedelta(seconds=n),
    }
    args[field] = value
    ok, fill_id = stored_or_refused(lambda: client("shortseller_001").write_fill(**args))
    if not ok:
        return
    row = _one(writer, "SELECT * FROM trading.fills WHERE id = :i", i=fill_id)
    for name in ("symbol", "side", "order_id", "client_order_id", "close_reason"):
        assert getattr(row, name) == args[name], name


# Text arguments (the numeric ones: see the pnl_pct overflow case below).
TRADE_ARGS = ["symbol", "entry_side", "entry_reason", "exit_reason", "entry_order_id",
              "exit_order_id"]  # fmt: skip


@FUZZ
@given(field=st.sampled_from(TRADE_ARGS), value=HOSTILE)
def test_client_record_completed_trade(
    client: Callable[[str], AlphaDBClient], writer: Writer, field: str, value: str
) -> None:
    n = next(_n)
    args: dict[str, Any] = {
        "symbol": "XRPUSDT",
        "entry_side": "Buy",
        "entry_price": 0.5,
        "entry_qty": 100.0,
        "entry_time": T0 + timedelta(hours=n),
        "entry_reason": "signal",
        "exit_side": "Sell",
        "exit_price": 0.55,
        "exit_qty": 100.0,
        "exit_time": T0 + timedelta(hours=n, minutes=5),
        "exit_reason": "tp",
        "entry_order_id": f"e-{n}",
        "exit_order_id": f"x-{n}",
    }
    args[field] = value
    if field == "entry_side" and value == "Sell":
        args["exit_side"] = "Buy"
    ok, trade = stored_or_refused(lambda: client("lxalgo_001").record_completed_trade(**args))
    if not ok:
        return
    row = _one(writer, "SELECT * FROM trading.completed_trades WHERE id = :i", i=trade)
    for name in ("symbol", "entry_side", "entry_reason", "exit_reason", "entry_order_id",
                 "exit_order_id"):  # fmt: skip
        assert getattr(row, name) == args[name], name


def test_client_record_completed_trade_refuses_a_pnl_pct_that_does_not_fit(
    client: Callable[[str], AlphaDBClient],
) -> None:
    with pytest.raises(ValidationError):
        client("lxalgo_001").record_completed_trade(
            "XRPUSDT", "Buy", 0.001, 100.0, T0, "signal", "Sell", 0.55, 100.0,
            T0 + timedelta(minutes=5), "tp",
        )  # fmt: skip


@FUZZ
@given(field=st.sampled_from(["entry_order_id", "exit_order_id", "exit_reason"]), value=HOSTILE)
def test_client_lot_methods(
    client: Callable[[str], AlphaDBClient], writer: Writer, field: str, value: str
) -> None:
    n = next(_n)
    symbol = f"LOT{n}USDT"
    args: dict[str, Any] = {"entry_order_id": f"le-{n}", "exit_order_id": f"lx-{n}",
                            "exit_reason": "stop_loss"}  # fmt: skip
    args[field] = value
    c = client("momentum_001")
    when = T0 + timedelta(minutes=n)
    ok, _entry = stored_or_refused(
        lambda: c.create_position_entry(
            symbol, 10.0, 3.0, when, entry_order_id=args["entry_order_id"]
        )
    )
    if not ok:
        assert field == "entry_order_id"
        return
    ok, closed = stored_or_refused(
        lambda: c.close_position_fifo(
            symbol,
            9.0,
            3.0,
            when + timedelta(seconds=30),
            args["exit_reason"],
            exit_order_id=args["exit_order_id"],
        )
    )
    if not ok:
        return
    assert [piece["quantity"] for piece in closed] == [3.0]
    with writer.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT side, order_id, close_reason FROM trading.fills "
                "WHERE bot_id = 'momentum_001' AND symbol = :s ORDER BY exec_time, id"
            ),
            {"s": symbol},
        ).all()
    assert [tuple(r) for r in rows] == [
        ("Buy", args["entry_order_id"], "entry"),
        ("Sell", args["exit_order_id"], args["exit_reason"]),
    ]


@FUZZ
@given(
    field=st.sampled_from(["symbol", "side", "size", "avg_price", "equity"]),
    value=HOSTILE | st.floats(allow_nan=True, allow_infinity=True),
)
def test_client_redis_and_bot_row_writes(
    client: Callable[[str], AlphaDBClient], writer: Writer, field: str, value: Any
) -> None:
    c = client("shortseller_001")
    if field == "equity":
        ok, _ = stored_or_refused(lambda: c.update_equity(value))
        if ok:
            got = _one(writer, "SELECT current_equity FROM trading.bots "
                               "WHERE bot_id = 'shortseller_001'")  # fmt: skip
            assert got.current_equity is not None
        return
    args: dict[str, Any] = {"symbol": "ADAUSDT", "size": 1.25, "side": "Sell", "avg_price": 0.4}
    args[field] = value
    ok, _ = stored_or_refused(lambda: c.update_position_redis(**args))
    if not ok:
        return
    got = c.get_position_redis(args["symbol"])
    assert got is not None and got["side"] == (args["side"] or None)
    assert got["size"] == float(args["size"])


@FUZZ
@given(key=HOSTILE.filter(lambda s: "\ud800" not in s), value=HOSTILE.filter(
    lambda s: "\ud800" not in s))  # fmt: skip
def test_client_redis_pass_through_keeps_any_text(
    client: Callable[[str], AlphaDBClient], key: str, value: str
) -> None:
    c = client("lxalgo_001")
    c.set_redis_key(f"fuzz:{key}", value)
    assert c.get_redis_key(f"fuzz:{key}") == value


def test_client_redis_pass_through_refuses_text_it_cannot_encode(
    client: Callable[[str], AlphaDBClient],
) -> None:
    with pytest.raises(ValidationError):
        client("lxalgo_001").set_redis_key("fuzz:surrogate", "\ud800")


# ----------------------------------------------------------------- printing by the CLI

_INERT = {chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


@given(st.text() | st.lists(st.sampled_from(FRAGMENTS)).map("".join))
def test_safe_text_prints_one_inert_line(value: str) -> None:
    shown = safe_text(value)
    assert not _INERT & set(shown)  # no newline, carriage return, ESC or other control
    assert not any(unicodedata.category(c) == "Cf" for c in shown)  # no bidi/format chars
    if not _INERT & set(value) and not any(unicodedata.category(c) == "Cf" for c in value):
        assert shown == value  # harmless text is shown unchanged


def test_safe_text_neutralises_bidi_overrides() -> None:
    assert "\u202e" not in safe_text("fill \u202egnol\u202c ok")


def test_the_cli_prints_hostile_stored_text_as_inert_lines(
    writer: Writer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows written outside the validated path (legacy data, a psql session) can hold
    anything; ``alpha-db`` must still print one line per row, with no escape sequence."""
    evil = "o-\x1b[2J\x1b[31mFAKE\nalpha-db: error: all fills deleted\r\u2028"
    with writer.engine.begin() as conn:
        for n, bot in ((1, "unknown"), (2, "shortseller_001")):
            conn.execute(
                text(
                    "INSERT INTO trading.fills (exec_id, bot_id, symbol, order_id, "
                    "client_order_id, side, exec_price, exec_qty, exec_time, commission) "
                    "VALUES (:e, :b, 'BTCUSDT', :o, '', 'Buy', 1, 1, :t, 0)"
                ),
                {"e": f"evil-{n}", "b": bot, "o": evil, "t": T0 + timedelta(seconds=n)},
            )
    monkeypatch.setenv("ALPHA_DATABASE_URL", writer.db.url)
    assert cli_main(["fills-duplicates"]) == 1  # two bots' rows share an order id
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\u2028" not in out
    assert "\\x1b[2J" in out  # shown, escaped
    assert not any(line.startswith("alpha-db: error") for line in out.splitlines())
    assert len(out.splitlines()) == 2 + 2 + 1  # header, rule, one line per row, summary
