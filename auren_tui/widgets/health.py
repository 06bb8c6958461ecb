"""Pane 7, the health line, and the title bar above the panes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from ..sanitize import clean
from .flows import WAIT_STYLE, waiting_summary
from .format import fmt_count

if TYPE_CHECKING:
    from auren_core.state import DashboardState

__all__ = ["HealthLine", "TitleBar"]

_CONN = {
    "live": ("●", "bold green"),
    "connecting": ("◌", "yellow"),
    "reconnecting": ("◌", "bold black on yellow"),
    "paused": ("❚❚", "bold yellow"),
    "dead": ("✗", "bold white on red"),
}


def _sep(t: Text) -> None:
    t.append(" │ ", style="dim")


class HealthLine(Static):
    """Connection, events/s, lag, malformed, unknown types, publisher drops; pause state."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._last: tuple[DashboardState, bool, int] | None = None
        self._text: Text | None = None

    def on_resize(self) -> None:
        if self._last is not None:
            self.show(self._last[0], paused=self._last[1], behind=self._last[2])

    def show(self, state: DashboardState, *, paused: bool = False, behind: int = 0) -> None:
        self._last = (state, paused, behind)
        h = state.health
        short = (self.size.width or 80) < 130  # before layout: on_resize shows it again
        t = Text(no_wrap=True, overflow="ellipsis")
        if paused:
            t.append(" ❚❚ PAUSED ", style="bold black on yellow")
            t.append(
                f" +{fmt_count(behind)} new" + ("" if short else ", p to resume"), style="yellow"
            )
            _sep(t)
        mark, style = _CONN.get(h.connection, ("?", "bold red"))
        t.append(f"{mark} {clean(h.connection, 20)}", style=style)
        if h.connection != "live" and h.connection_detail:
            t.append(f" ({clean(h.connection_detail, 24 if short else 60)})", style="yellow")
        _sep(t)
        t.append(f"{h.events_per_s:,.0f} ev/s")
        _sep(t)
        lag = "—" if h.lag is None else fmt_count(h.lag)
        t.append(f"lag {lag}", style="bold red" if h.lag and h.lag > 10_000 else "")
        _sep(t)
        mal = "bad" if short else "malformed"
        t.append(f"{mal} {fmt_count(h.malformed)}", style="bold red" if h.malformed else "")
        _sep(t)
        unknown = f"{'unknown' if short else 'unknown types'} {fmt_count(h.unknown_types)}"
        if h.unknown_type_names and not short:
            unknown += " (" + ", ".join(clean(n, 20) for n, _ in h.unknown_type_names[:2]) + ")"
        t.append(unknown, style="yellow" if h.unknown_types else "")
        _sep(t)
        drops = f"{'drops' if short else 'publisher drops'} {fmt_count(h.publisher_dropped)}"
        t.append(drops, style="bold red" if h.publisher_dropped else "")
        _sep(t)
        t.append(f"events {fmt_count(h.events_total)}", style="dim")
        if h.last_id and not short:
            t.append(f"  last {clean(h.last_id, 30)}", style="dim")
        if t != self._text:  # an unchanged line costs nothing to repaint
            self._text = t
            self.update(t, layout=False)  # one line high (the stylesheet): no reflow


class TitleBar(Static):
    """App name, the state's own clock (frozen in tests), who waits for a human, stream,
    window and backends."""

    def __init__(self, *, stream: str, backends: str, mode: str, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._text: Text | None = None
        self.stream = stream
        self.backends = backends
        self.mode = mode

    def show(self, state: DashboardState) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" AUREN top ", style="bold reverse")
        t.append(" " + time.strftime("%H:%M:%S", time.localtime(state.generated_at)))
        t.append(f"  {clean(self.mode, 40)}", style="bold cyan")
        waiting = waiting_summary(state)
        if waiting:  # visible at any size: the one thing here a person must act on
            t.append("  ")
            t.append(f" ⚑ waiting for a human: {waiting} ", style=WAIT_STYLE)
        t.append(f"  stream {clean(self.stream, 40)}", style="dim")
        t.append(f"  window {_dur(state.window_s)}", style="dim")
        if self.backends:
            t.append(f"  {clean(self.backends, 200)}", style="dim")
        if t != self._text:  # an unchanged line costs nothing to repaint
            self._text = t
            self.update(t, layout=False)  # one line high (the stylesheet): no reflow


def _dur(s: float) -> str:
    if s >= 86400 and s % 86400 == 0:
        return f"{s / 86400:.0f}d"
    if s >= 3600 and s % 3600 == 0:
        return f"{s / 3600:.0f}h"
    if s >= 60:
        return f"{s / 60:.0f}m"
    return f"{s:.0f}s"
