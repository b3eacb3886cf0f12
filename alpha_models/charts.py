"""P&L charts: PNG files (matplotlib, Agg backend) and an HTML page that embeds them.

:func:`write_charts` writes, under fixed names in ``out_dir``:

- ``pnl_cumulative.png``: cumulative realized net P&L per bot over time (one line per bot,
  a step after each round trip, by exit time);
- ``pnl_daily.png``: net P&L per UTC day and bot (grouped bars);
- ``pnl_report.html``: both images embedded (base64, so the page is one self-contained file)
  and the per-bot summary table.

Output is deterministic for the same data: fixed names, sizes and styles, no timestamps in
the PNG metadata or the page. Money is summed exactly (integers of 1e-8 USDT / ``Decimal``);
it becomes a float only as a plotting coordinate.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")  # no display: must precede pyplot

import matplotlib.dates as mdates
import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from sqlalchemy.engine import Engine

from alpha_models import analytics
from alpha_models.errors import ValidationError

__all__ = ["CUMULATIVE_PNG", "DAILY_PNG", "REPORT_HTML", "ChartFiles", "write_charts"]

CUMULATIVE_PNG: Final = "pnl_cumulative.png"
DAILY_PNG: Final = "pnl_daily.png"
REPORT_HTML: Final = "pnl_report.html"
_SIZE: Final = (11.0, 5.0)
_DPI: Final = 100
_PNG_METADATA: Final[dict[str, Any]] = {"Software": None}  # no version string: deterministic
_MAX_POINTS: Final = 20_000  # per bot; longer curves are thinned for drawing only


@dataclass(frozen=True, slots=True)
class ChartFiles:
    """The files written, and what they show."""

    cumulative_png: Path
    daily_png: Path
    html: Path
    bots: tuple[str, ...]
    round_trips: int
    days: int


def _title(start: datetime | None, end: datetime | None, source: str | None) -> str:
    def fmt(t: datetime | None, default: str) -> str:
        return t.strftime("%Y-%m-%d %H:%M UTC") if t is not None else default

    src = f"source={source}" if source else "all sources"
    return f"{fmt(start, 'first trade')} to {fmt(end, 'last trade')} ({src})"


def _thin(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> tuple[Any, Any]:
    """At most ``_MAX_POINTS`` points, always keeping the last one (drawing only)."""
    if len(x) <= _MAX_POINTS:
        return x, y
    idx = np.unique(np.linspace(0, len(x) - 1, _MAX_POINTS).astype(np.int64))
    return x[idx], y[idx]


def _cumulative(curves: analytics.CurveArrays, subtitle: str) -> Figure:
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    drawn = False
    for bot_id in curves.bots:
        us, cum = curves.cumulative_units(bot_id)
        if not len(us):
            continue
        x = us.astype("datetime64[us]")
        y = cum / 1e8  # plotting coordinate only
        x, y = _thin(x, y)
        ax.step(x, y, where="post", label=bot_id, linewidth=1.2)
        drawn = True
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set_title(f"Cumulative realized net P&L (USDT)\n{subtitle}", fontsize=10)
    ax.set_ylabel("USDT")
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(loc="best", fontsize=8)
        locator = ax.xaxis.get_major_locator()
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    else:
        ax.text(0.5, 0.5, "no round trips", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def _daily(days: Sequence[analytics.DailyPnl], bots: Sequence[str], subtitle: str) -> Figure:
    fig, ax = plt.subplots(figsize=_SIZE, dpi=_DPI)
    dates = sorted({d.day for d in days})
    if dates:
        index = {day: i for i, day in enumerate(dates)}
        width = 0.8 / max(1, len(bots))
        for k, bot_id in enumerate(bots):
            xs = [
                index[d.day] + (k - (len(bots) - 1) / 2) * width for d in days if d.bot_id == bot_id
            ]
            ys = [float(d.net_pnl) for d in days if d.bot_id == bot_id]  # coordinate only
            if xs:
                ax.bar(xs, ys, width=width, label=bot_id)
        step = max(1, len(dates) // 12)
        ticks = list(range(0, len(dates), step))
        ax.set_xticks(ticks, [dates[i].isoformat() for i in ticks], rotation=30, ha="right")
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no round trips", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set_title(f"Daily realized net P&L per bot (USDT, UTC days)\n{subtitle}", fontsize=10)
    ax.set_ylabel("USDT")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _save(fig: Figure, path: Path) -> None:
    try:
        fig.savefig(path, format="png", metadata=_PNG_METADATA)
    finally:
        plt.close(fig)


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _html(
    comparison: analytics.Comparison, images: Sequence[tuple[str, bytes]], subtitle: str
) -> str:
    rows = []
    for s in (*comparison.bots, comparison.portfolio):
        cells = [
            s.bot_id,
            str(s.round_trips),
            f"{s.wins}/{s.losses}/{s.breakeven}",
            "-" if s.win_rate_pct is None else f"{s.win_rate_pct}%",
            _money(s.net_pnl),
            _money(s.fees),
            "-" if s.profit_factor is None else str(s.profit_factor),
            _money(s.max_drawdown),
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    header = "".join(
        f"<th>{h}</th>"
        for h in ("bot", "trips", "W/L/BE", "win rate", "net", "fees", "PF", "max DD")
    )
    imgs = "\n".join(
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode()}"></figure>'
        for alt, data in images
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Realized P&amp;L</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
img {{ max-width: 100%; }}
</style>
</head>
<body>
<h1>Realized P&amp;L</h1>
<p>{html.escape(subtitle)}. Round trips derived from fills (FIFO), by exit time.</p>
<table>
<tr>{header}</tr>
{"".join(rows)}
</table>
{imgs}
</body>
</html>
"""


def write_charts(
    engine: Engine,
    out_dir: Path | str,
    *,
    bot_ids: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    days: int | None = None,
    source: str | None = analytics.SOURCE_FILLS,
    now: datetime | None = None,
) -> ChartFiles:
    """Write the two PNG charts and the HTML page into ``out_dir`` (created if missing).

    The window is ``[start, end)`` on exit time, or the last ``days`` UTC days. Existing
    files with the same names are replaced.
    """
    if days is not None:
        if start is not None or end is not None:
            raise ValidationError("days", days, "give either days or start/end, not both")
        start, end = analytics.days_window(days, now)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValidationError("out_dir", str(out), "is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    curves = analytics.curve_arrays(engine, bot_ids=bot_ids, start=start, end=end, source=source)
    daily = analytics.daily_pnl(engine, start=start, end=end, source=source)
    daily = tuple(d for d in daily if d.bot_id in curves.bots)
    comparison = analytics.compare_bots(
        engine, bot_ids=list(curves.bots), start=start, end=end, source=source
    )
    subtitle = _title(start, end, source)
    files = ChartFiles(
        out / CUMULATIVE_PNG,
        out / DAILY_PNG,
        out / REPORT_HTML,
        curves.bots,
        len(curves.units),
        len({d.day for d in daily}),
    )
    _save(_cumulative(curves, subtitle), files.cumulative_png)
    _save(_daily(daily, curves.bots, subtitle), files.daily_png)
    page = _html(
        comparison,
        [
            ("cumulative realized P&L per bot", files.cumulative_png.read_bytes()),
            ("daily realized P&L per bot", files.daily_png.read_bytes()),
        ],
        subtitle,
    )
    files.html.write_text(page, encoding="utf-8")
    return files
