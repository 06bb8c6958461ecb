"""Small pure formatters shared by the panes: numbers, durations, sparklines, shades.

They format figures the reducer computed; none of them derives a metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from rich.text import Text

__all__ = [
    "BLOCKS",
    "SHADES",
    "abbrev",
    "bar",
    "fmt_ago",
    "fmt_count",
    "fmt_dur",
    "fmt_ms",
    "fmt_pct",
    "fmt_usd",
    "resample",
    "shade",
    "sparkline",
]

BLOCKS: Final = " ▁▂▃▄▅▆▇█"
SHADES: Final = " ·░▒▓█"


def fmt_usd(v: float | None, *, per: str = "") -> str:
    if v is None:
        return "—"
    a = abs(v)
    if a == 0:
        s = "$0"
    elif a < 0.01:
        s = f"${v:.4f}"
    elif a < 100:
        s = f"${v:.2f}"
    elif a < 100_000:
        s = f"${v:,.0f}"
    else:
        s = f"${v / 1e6:.2f}M"
    return s + per


def fmt_count(n: float | None) -> str:
    if n is None:
        return "—"
    a = abs(n)
    if a < 10_000:
        return f"{n:,.0f}"
    if a < 1_000_000:
        return f"{n / 1e3:.1f}k"
    if a < 1_000_000_000:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e9:.1f}G"


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "—"
    if v < 1:
        return f"{v:.2f}ms"
    if v < 100:
        return f"{v:.1f}ms"
    if v < 10_000:
        return f"{v:.0f}ms"
    return f"{v / 1000:.1f}s"


def fmt_dur(seconds: float | None) -> str:
    """A duration: ``4.2s``, ``38s``, ``4m05s``, ``2h03m``, ``3d04h``."""
    if seconds is None:
        return "—"
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"


def fmt_pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.0f}%"


def fmt_ago(ts: float | None, now: float) -> str:
    if ts is None or ts <= 0:
        return "—"
    d = max(0.0, now - ts)
    if d < 1:
        return "now"
    if d < 60:
        return f"{d:.0f}s ago"
    if d < 3600:
        return f"{d / 60:.0f}m ago"
    if d < 86400:
        return f"{d / 3600:.0f}h ago"
    return f"{d / 86400:.0f}d ago"


def resample(values: Sequence[float], width: int) -> list[float]:
    """Fit ``values`` into ``width`` columns, summing neighbours (costs add up)."""
    n = len(values)
    if width <= 0 or n == 0:
        return []
    if n <= width:
        return list(values)
    out = [0.0] * width
    for i, v in enumerate(values):
        out[i * width // n] += v
    return out


def sparkline(values: Sequence[float], width: int, top: float | None = None) -> str:
    """Block-character sparkline; ``top`` shares one scale across several lines."""
    vals = resample(values, width)
    hi = top if top is not None else max(vals, default=0.0)
    if hi <= 0:
        return " " * len(vals) if vals else ""
    steps = len(BLOCKS) - 1
    return "".join(BLOCKS[0 if v <= 0 else max(1, min(steps, round(v / hi * steps)))] for v in vals)


def bar(fraction: float | None, width: int) -> str:
    if fraction is None or width <= 0:
        return " " * max(0, width)
    f = max(0.0, min(1.0, fraction))
    full = int(f * width)
    part = BLOCKS[round((f * width - full) * 8)] if full < width else ""
    return ("█" * full + part).ljust(width)[:width]


def shade(count: int, top: int) -> str:
    """One shade character for ``count`` relative to ``top`` (0 is blank)."""
    if count <= 0 or top <= 0:
        return SHADES[0]
    return SHADES[max(1, min(len(SHADES) - 1, round(count / top * (len(SHADES) - 1))))]


def abbrev(name: str, width: int) -> str:
    """A short column label: the name cut to ``width`` (no ellipsis, labels are keyed)."""
    return name[:width]


def minute_columns(values: Sequence[float], width: int) -> tuple[Sequence[float], str]:
    """Per-minute values cut to one column per minute: the newest ``width`` minutes (never
    several minutes squeezed into one cell), and a caption saying what a column is."""
    n = max(0, min(len(values), width))
    tail = values[len(values) - n :] if n else ()
    return tail, f"1 col = 1 min, last {n} min"


def grid(
    header: Sequence[str],
    rows: Sequence[Sequence[str | Text]],
    widths: Sequence[int],
    *,
    first_style: str = "dim",
    header_style: str = "bold",
) -> Text:
    """A table of fixed-width, one-line cells as one :class:`Text`: each cell cut with an
    ellipsis (or padded) to its column's width and followed by one space, the header row
    in ``header_style``, the first column (with its space) in ``first_style`` under the
    cell's own styles. The same characters and styles as a ``rich.table.Table(box=None,
    padding=(0, 1, 0, 0), show_edge=False)`` with those widths (header style "bold", first
    column style "dim"), at a fraction of its cost (no measuring pass): pane 1 is
    repainted up to 20 times a second."""
    out = Text(no_wrap=True)
    for n, cells in enumerate([header, *rows]):
        if n:
            out.append("\n")
        start = len(out)
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            t = cell.copy() if isinstance(cell, Text) else Text(cell)
            t.truncate(w, overflow="ellipsis", pad=True)
            t.append(" ")
            if i == 0 and n:
                t.stylize_before(first_style)  # a column style: under the cell's own
            out.append_text(t)
        if n == 0:
            out.stylize_before(header_style, start, len(out))
    return out
