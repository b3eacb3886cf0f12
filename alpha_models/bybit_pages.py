"""Saved Bybit v5 REST pages -> validated executions and closed-P&L records. No database.

Two endpoints are understood, both in their v5 response shape::

    {"retCode": 0, "retMsg": "OK",
     "result": {"category": "linear", "list": [{...}, ...], "nextPageCursor": "..."},
     "retExtInfo": {}, "time": 1760140800123}

* ``GET /v5/execution/list``: each element is an execution with the stream's field names
  (``execId``, ``orderId``, ``orderLinkId``, ``side``, ``execPrice``, ``execQty``,
  ``execFee``, ``execTime``, ``execType``, ``stopOrderType``, ...). Elements are turned into
  :class:`~alpha_models.inputs.FillInput` by :func:`alpha_models.bybit_stream.parse_execution`
  (same attribution and close reason as the listener); **funding settlements are kept
  apart** (:attr:`ExchangeRecord.funding`), never mixed with the trades.
* ``GET /v5/position/closed-pnl``: each element is one closing order's realised P&L
  (:class:`ClosedPnlRecord`). Bybit's ``side`` there is the *closing* side.

A page's kind is recognised from its elements (``execId`` vs ``closedPnl``); an empty page
holds neither. Validation is strict and every failure is a
:class:`~alpha_models.errors.ValidationError` that names the page (``file:line`` or
``pages[i]``) and the field: ``retCode`` must be the integer 0 (an error page holds no data, so
it is reported, never skipped), ``result.list`` a list, ``result.category`` (when present)
``linear``, ``nextPageCursor`` a string; numbers and times inside elements must be JSON
strings, as Bybit sends them. The same record on two pages (overlapping fetches) is kept
once; the same id with different content is an error.

Where pages come from (:func:`read_pages`): a file holding one page, a JSON array of pages,
JSON lines (or any sequence of concatenated JSON values) of pages; a directory of such
files (``*.json``, ``*.jsonl``, ``*.ndjson``, in name order; other files are ignored); or any
iterable of page dicts, paths and :class:`Page` objects. A truncated or invalid file is an
error naming the line and column.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeAlias

from alpha_models.bybit_stream import parse_execution
from alpha_models.errors import ValidationError
from alpha_models.inputs import (
    KNOWN_BOTS,
    FillInput,
    Side,
    to_decimal8,
    to_utc,
    validate_symbol,
)

__all__ = [
    "PAGE_FILE_SUFFIXES",
    "ClosedPnlRecord",
    "ExchangeRecord",
    "Page",
    "PageSource",
    "make_pages",
    "parse_closed_pnl",
    "parse_pages",
    "read_pages",
]

PAGE_FILE_SUFFIXES = frozenset({".json", ".jsonl", ".ndjson"})
"""Files of a directory that :func:`read_pages` reads (others are ignored)."""

_CATEGORY = "linear"
_WHITESPACE = re.compile(r"\s*")
_MS_RE = re.compile(r"[0-9]{1,16}")
_COUNT_RE = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class Page:
    """One REST response and where it came from (``file:line``, ``file[k]`` or ``pages[i]``)."""

    label: str
    data: Any


PageSource: TypeAlias = "Mapping[str, Any] | str | os.PathLike[str] | Page"


@dataclass(frozen=True, slots=True)
class ClosedPnlRecord:
    """One element of ``GET /v5/position/closed-pnl``: the P&L one closing order realised.

    ``side`` is the closing order's side (``Sell`` closes a long). ``closed_pnl`` is net of
    the opening and closing fees and includes funding. ``open_fee`` / ``close_fee`` are
    ``None`` when the page predates those fields.
    """

    symbol: str
    order_id: str
    order_link_id: str
    side: Side
    qty: Decimal
    order_price: Decimal
    order_type: str
    exec_type: str
    closed_size: Decimal
    cum_entry_value: Decimal
    avg_entry_price: Decimal
    cum_exit_value: Decimal
    avg_exit_price: Decimal
    closed_pnl: Decimal
    fill_count: int
    leverage: Decimal
    created_time: datetime
    updated_time: datetime
    open_fee: Decimal | None = None
    close_fee: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ExchangeRecord:
    """Everything a set of pages says, validated and de-duplicated.

    ``executions`` are the position-changing executions and ``funding`` the funding
    settlements, each in (exec_time, exec_id) order; ``closed_pnl`` in (updated_time,
    order_id) order. ``final_pages`` counts pages with an empty ``nextPageCursor`` (the last
    page of a fetch): when pages were read but none is final, the record is probably cut
    short (:attr:`looks_complete`).
    """

    executions: tuple[FillInput, ...]
    funding: tuple[FillInput, ...]
    closed_pnl: tuple[ClosedPnlRecord, ...]
    pages: int
    execution_pages: int
    """Pages holding executions."""
    closed_pnl_pages: int
    """Pages holding closed-P&L records."""
    empty_pages: int
    final_pages: int
    repeated: int
    """Records seen on more than one page (kept once)."""

    @property
    def looks_complete(self) -> bool:
        return self.pages == 0 or self.final_pages > 0


# ------------------------------------------------------------------------------ reading


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _read_file(path: Path) -> Iterator[Page]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValidationError("file", str(path), f"cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError("file", str(path), f"not UTF-8 (byte {exc.start})") from None
    text = text.removeprefix("\ufeff")
    pos = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    if pos == len(text):
        raise ValidationError("file", str(path), "is empty: no page in it")
    while pos < len(text):
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            truncated = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated")
            hint = " (the file ends inside a JSON value: truncated?)" if truncated else ""
            raise ValidationError(
                "file",
                str(path),
                f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}",
            ) from None
        except (ValueError, RecursionError) as exc:
            line = _line_of(text, pos)
            raise ValidationError(
                "file", str(path), f"invalid JSON at line {line}: {exc}"
            ) from None
        line = _line_of(text, pos)
        if isinstance(value, list):
            for k, item in enumerate(value):
                yield Page(f"{path}:{line}[{k}]", item)
        else:
            yield Page(f"{path}:{line}", value)
        pos = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]


def _read_path(path: Path) -> Iterator[Page]:
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in PAGE_FILE_SUFFIXES and not p.name.startswith(".")
        )
        if not files:
            raise ValidationError(
                "directory", str(path), "holds no *.json, *.jsonl or *.ndjson file"
            )
        for file in files:
            yield from _read_file(file)
    elif path.exists():
        yield from _read_file(path)
    else:
        raise ValidationError("file", str(path), "not found")


def read_pages(source: PageSource | Iterable[PageSource]) -> Iterator[Page]:
    """Yield the pages of ``source`` lazily, each labelled with where it came from.

    ``source`` is a page dict, a path (file or directory; a ``str`` is always a path), a
    :class:`Page`, or an iterable of any of these.
    """
    if isinstance(source, Page):
        yield source
    elif isinstance(source, Mapping):
        yield Page("pages[0]", source)
    elif isinstance(source, str | os.PathLike):
        yield from _read_path(Path(source))
    elif isinstance(source, bytes | bytearray):
        raise ValidationError("pages", source, "expected pages or paths, not bytes")
    else:
        for i, item in enumerate(source):
            if isinstance(item, Page):
                yield item
            elif isinstance(item, Mapping):
                yield Page(f"pages[{i}]", item)
            elif isinstance(item, str | os.PathLike):
                yield from _read_path(Path(item))
            else:
                yield Page(f"pages[{i}]", item)  # rejected by parse_pages, with its label


# ------------------------------------------------------------------------------ parsing


def _tname(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _wire_str(data: Mapping[str, Any], key: str, prefix: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise ValidationError(prefix + key, None, "missing required field")
        return ""
    if not isinstance(value, str):
        raise ValidationError(prefix + key, value, f"expected a string, got {_tname(value)}")
    return value


def _ms_time(data: Mapping[str, Any], key: str, prefix: str) -> datetime:
    value = _wire_str(data, key, prefix)
    if _MS_RE.fullmatch(value) is None:
        raise ValidationError(prefix + key, value, "expected epoch milliseconds (a digit string)")
    return to_utc(prefix + key, int(value))


def parse_closed_pnl(data: Any, *, field_prefix: str = "") -> ClosedPnlRecord:
    """One ``closed-pnl`` element -> :class:`ClosedPnlRecord` (strict wire types)."""
    p = field_prefix
    if not isinstance(data, Mapping):
        raise ValidationError(
            p.rstrip(".") or "record", data, f"expected an object, got {_tname(data)}"
        )
    category = data.get("category")
    if category is not None and category != _CATEGORY:
        raise ValidationError(p + "category", category, "only 'linear' is supported")

    def num(key: str, sign: Any = "nonnegative") -> Decimal:
        return to_decimal8(p + key, _wire_str(data, key, p), sign)

    def opt_fee(key: str) -> Decimal | None:
        raw = _wire_str(data, key, p, required=False)
        return to_decimal8(p + key, raw) if raw else None

    side_raw = _wire_str(data, "side", p)
    if side_raw not in ("Buy", "Sell"):
        raise ValidationError(p + "side", side_raw, "must be exactly 'Buy' or 'Sell'")
    order_id = _wire_str(data, "orderId", p)
    if not order_id or len(order_id) > 100 or not order_id.isprintable():
        raise ValidationError(p + "orderId", order_id, "not an order id (1-100 printable chars)")
    fill_count = _wire_str(data, "fillCount", p)
    if _COUNT_RE.fullmatch(fill_count) is None:
        raise ValidationError(p + "fillCount", fill_count, "expected a count (a digit string)")
    return ClosedPnlRecord(
        symbol=validate_symbol(_wire_str(data, "symbol", p), p + "symbol"),
        order_id=order_id,
        order_link_id=_wire_str(data, "orderLinkId", p, required=False),
        side=Side(side_raw),
        qty=num("qty"),
        order_price=num("orderPrice"),
        order_type=_wire_str(data, "orderType", p),
        exec_type=_wire_str(data, "execType", p),
        closed_size=num("closedSize", "positive"),
        cum_entry_value=num("cumEntryValue"),
        avg_entry_price=num("avgEntryPrice"),
        cum_exit_value=num("cumExitValue"),
        avg_exit_price=num("avgExitPrice"),
        closed_pnl=num("closedPnl", "any"),
        fill_count=int(fill_count),
        leverage=num("leverage"),
        created_time=_ms_time(data, "createdTime", p),
        updated_time=_ms_time(data, "updatedTime", p),
        open_fee=opt_fee("openFee"),
        close_fee=opt_fee("closeFee"),
    )


def _page_items(page: Page) -> tuple[list[Any], bool, str]:
    """(elements, is_final, field prefix) of a validated page envelope."""
    where = f"page {page.label} "
    data = page.data
    if not isinstance(data, Mapping):
        raise ValidationError(
            where.rstrip(), data, f"expected a response object, got {_tname(data)}"
        )
    code = data.get("retCode")
    if code is None:
        raise ValidationError(where + "retCode", None, "missing: not a Bybit v5 response")
    if type(code) is not int:
        raise ValidationError(where + "retCode", code, f"expected an integer, got {_tname(code)}")
    if code != 0:
        message = data.get("retMsg")
        raise ValidationError(
            where + "retCode",
            code,
            f"the exchange answered an error (retMsg {message!r}): the page holds no data, "
            "fetch it again",
        )
    result = data.get("result")
    if not isinstance(result, Mapping):
        raise ValidationError(where + "result", result, f"expected an object, got {_tname(result)}")
    category = result.get("category")
    if category is not None and category != _CATEGORY:
        raise ValidationError(where + "result.category", category, "only 'linear' is supported")
    items = result.get("list")
    if not isinstance(items, list):
        raise ValidationError(where + "result.list", items, f"expected a list, got {_tname(items)}")
    cursor = result.get("nextPageCursor")
    if cursor is not None and not isinstance(cursor, str):
        raise ValidationError(
            where + "result.nextPageCursor", cursor, f"expected a string, got {_tname(cursor)}"
        )
    return items, not cursor, where + "result.list"


def _kind(item: Any, prefix: str) -> str:
    if isinstance(item, Mapping):
        if "execId" in item:
            return "execution"
        if "closedPnl" in item:
            return "closed_pnl"
    raise ValidationError(
        prefix, item, "neither an execution (execId) nor a closed-P&L record (closedPnl)"
    )


def parse_pages(
    pages: PageSource | Iterable[PageSource],
    *,
    known_bots: Collection[str] = KNOWN_BOTS,
    source: str = "reconcile",
) -> ExchangeRecord:
    """Validate every page of ``pages`` (see :func:`read_pages`) and collect their records.

    Raises :class:`ValidationError` at the first problem (nothing is skipped). Executions are
    attributed as the listener does (``orderLinkId``; ``unknown`` when it names no bot of
    ``known_bots``) and carry ``source``.
    """
    executions: dict[str, tuple[FillInput, str]] = {}
    closed: dict[tuple[str, datetime], tuple[ClosedPnlRecord, str]] = {}
    n_pages = n_exec_pages = n_closed_pages = n_empty = n_final = repeated = 0
    for page in read_pages(pages):
        items, final, prefix = _page_items(page)
        n_pages += 1
        n_final += final
        kinds = {_kind(item, f"{prefix}[{j}]") for j, item in enumerate(items)}
        if len(kinds) > 1:
            raise ValidationError(
                prefix, None, "mixes executions and closed-P&L records in one page"
            )
        kind = kinds.pop() if kinds else "empty"
        n_exec_pages += kind == "execution"
        n_closed_pages += kind == "closed_pnl"
        n_empty += kind == "empty"
        for j, item in enumerate(items):
            where = f"{prefix}[{j}]."
            if kind == "execution":
                fill = parse_execution(
                    item, known_bots=known_bots, source=source, field_prefix=where
                )
                seen = executions.get(fill.exec_id)
                if seen is None:
                    executions[fill.exec_id] = (fill, page.label)
                elif seen[0] == fill:
                    repeated += 1
                else:
                    raise ValidationError(
                        where + "execId",
                        fill.exec_id,
                        f"also on page {seen[1]} with different content",
                    )
            else:
                record = parse_closed_pnl(item, field_prefix=where)
                key = (record.order_id, record.created_time)
                earlier = closed.get(key)
                if earlier is None:
                    closed[key] = (record, page.label)
                elif earlier[0] == record:
                    repeated += 1
                else:
                    raise ValidationError(
                        where + "orderId",
                        record.order_id,
                        f"also on page {earlier[1]} with different content",
                    )
    fills = sorted((f for f, _ in executions.values()), key=lambda f: (f.exec_time, f.exec_id))
    return ExchangeRecord(
        executions=tuple(f for f in fills if f.is_trade),
        funding=tuple(f for f in fills if f.is_funding),
        closed_pnl=tuple(
            sorted((r for r, _ in closed.values()), key=lambda r: (r.updated_time, r.order_id))
        ),
        pages=n_pages,
        execution_pages=n_exec_pages,
        closed_pnl_pages=n_closed_pages,
        empty_pages=n_empty,
        final_pages=n_final,
        repeated=repeated,
    )


# ----------------------------------------------------------------------------- building


def make_pages(
    items: Sequence[Mapping[str, Any]],
    *,
    page_size: int = 50,
    category: str = _CATEGORY,
    time_ms: int = 0,
) -> list[dict[str, Any]]:
    """Wrap ``items`` (execution or closed-P&L elements) into v5 response pages of
    ``page_size``, chained by ``nextPageCursor`` as Bybit does (the last page's is ``""``).

    For fixtures and tools; ``[]`` gives one empty final page, as Bybit answers.
    """
    if type(page_size) is not int or page_size < 1:
        raise ValidationError("page_size", page_size, "must be a positive integer")
    chunks = [items[i : i + page_size] for i in range(0, len(items), page_size)] or [[]]
    pages = []
    for n, chunk in enumerate(chunks, start=1):
        cursor = "" if n == len(chunks) else f"{n * page_size}%3A0%2C{n * page_size}%3A0"
        pages.append(
            {
                "retCode": 0,
                "retMsg": "OK",
                "result": {
                    "category": category,
                    "list": [dict(item) for item in chunk],
                    "nextPageCursor": cursor,
                },
                "retExtInfo": {},
                "time": time_ms,
            }
        )
    return pages
