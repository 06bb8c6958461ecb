"""The help screen: every key, what each pane shows, the filter syntax."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["KEYS", "HelpScreen"]

KEYS: tuple[tuple[str, str], ...] = (
    ("p", "pause / resume the display (reading continues; resume catches up)"),
    ("/", "filter the event log: type:NAME agent:NAME free text"),
    ("s", "sort the agents table by the next column (click a header too)"),
    ("enter / d", "drill down into the selected agent"),
    ("c", "clear the event log (new events still appear)"),
    ("a", "analytics: forecast, alerts, loops, gaps, collaboration, recommendations"),
    ("r", "(analytics) analyse again now"),
    ("1-7", "jump to a pane"),
    ("esc", "back / close"),
    ("ctrl+p", "command palette (every action is there)"),
    ("?", "this help"),
    ("q", "quit"),
)

PANES_HELP: tuple[tuple[str, str], ...] = (
    (
        "1 Memory tiers",
        "Query -> Redis -> PostgreSQL -> ChromaDB: hit rate, p50/p95, "
        "fall-through to the next tier, misses and cost per tier",
    ),
    (
        "2 Active agents",
        "agents active in the last 5 minutes: status, load, tokens, cost, $/h; "
        "'⚑ human' = waiting for a human's answer (listed while it waits)",
    ),
    (
        "3 Token economics",
        "burn rate, projected day/month, budget (80% warning, 100% alert), "
        "cost per user query, per-minute cost sparklines",
    ),
    ("4 Collaboration", "who delegates to / asks whom, shaded by intensity"),
    ("5 Knowledge", "most-accessed knowledge items by agent; gaps in red"),
    ("6 Event log", "live tail of the stream"),
    (
        "7 Flows",
        "CrewAI Flows (shown once there is one): waiting for a human first, then running "
        "ones with their current step, then those that ended; steps done ✓ / failed ✗",
    ),
    (
        "Analytics (a)",
        "next-hour tokens and cost per agent (method, backtested error), budget alerts, "
        "loops and stalls with their cost, knowledge gaps, collaboration patterns, "
        "recommendations with their evidence; recomputed every few seconds while open",
    ),
    (
        "health line",
        "connection, events/s, lag behind the stream head, malformed entries, "
        "unknown event types, publisher drops",
    ),
)


def help_renderable() -> Group:
    keys = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
    keys.add_column(style="bold cyan", no_wrap=True)
    keys.add_column()
    for k, v in KEYS:
        keys.add_row(k, v)
    panes = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
    panes.add_column(style="bold", no_wrap=True)
    panes.add_column()
    for k, v in PANES_HELP:
        panes.add_row(k, v)
    return Group(
        Text("Keys", style="bold underline"),
        keys,
        Text(""),
        Text("Panes", style="bold underline"),
        panes,
        Text(""),
        Text("Every figure is computed from the event stream.", style="dim"),
    )


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Close"),
        Binding("question_mark", "app.pop_screen", "Close", show=False),
        Binding("q", "app.pop_screen", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "AUREN top — help"
            box.border_subtitle = "esc to close"
            yield Static(help_renderable(), id="help-text")
