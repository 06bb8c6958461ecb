"""Pane 2: active agents in a sortable ``DataTable``; Enter opens the agent screen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from rich.text import Text
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable

from ..sanitize import clean, safe_text
from .format import fmt_ago, fmt_usd

if TYPE_CHECKING:
    from auren_core.state import AgentView, DashboardState

__all__ = ["SORT_KEYS", "AgentsTable"]

# (sort key, column label); numbers sort descending first, names and status ascending
SORT_KEYS: Final[tuple[tuple[str, str], ...]] = (
    ("cost", "Cost"),
    ("rate", "$/h"),
    ("tokens", "Tok in/out"),
    ("last", "Last"),
    ("load", "Load"),
    ("status", "Status"),
    ("agent", "Agent"),
)
_LABEL = dict(SORT_KEYS)
_ASCENDING: Final = frozenset({"status", "agent"})
_STATUS_ORDER: Final = {"waiting_human": 0, "failed": 1, "running": 2, "idle": 3}
_STATUS_STYLE = {
    "running": "bold green",
    "idle": "dim",
    "failed": "bold red",
    "waiting_human": "bold black on yellow",
}
# shown in the 7-wide status column; the JSON keeps the full status
_STATUS_LABEL = {"waiting_human": "⚑ human"}


def _wider(old: Any, new: Any) -> bool:
    """Whether a cell grew (only then is the column width worth re-measuring)."""
    return len(str(new)) > len(str(old))


def fmt_tokens(n: int) -> str:
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1e3:.1f}k"
    return f"{n / 1e6:.1f}M"


def _sort_value(a: AgentView, key: str) -> Any:
    if key == "cost":
        return a.cost_usd
    if key == "rate":
        return a.usd_per_hour
    if key == "tokens":
        return a.input_tokens + a.output_tokens
    if key == "last":
        return a.last_activity
    if key == "load":
        return a.current_load
    if key == "status":
        return _STATUS_ORDER.get(a.status, 4)
    return (a.role or a.id).casefold()


class AgentsTable(DataTable[Any]):
    """Rows keyed by agent id, so the cursor stays on its agent across updates."""

    class Open(Message):
        """The user asked to drill into ``agent_id``."""

        def __init__(self, agent_id: str) -> None:
            super().__init__()
            self.agent_id = agent_id

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self.sort_key = "cost"
        self.sort_reverse = False  # flips the default direction
        self.state: DashboardState | None = None
        self._order: list[str] = []
        self._rows: list[tuple[Any, ...]] = []
        self._widths_used: tuple[int, int] | None = None

    def on_mount(self) -> None:
        for key, label in (
            ("agent", "Agent"),
            ("status", "Status"),
            ("last", "Last"),
            ("load", "Load"),
            ("tokens", "Tok in/out"),
            ("cost", "Cost"),
            ("rate", "$/h"),
            ("caps", "Capabilities"),
        ):
            self.add_column(label, key=key)
        self._title()

    def _title(self) -> None:
        arrow = "▲" if (self.sort_key in _ASCENDING) != self.sort_reverse else "▼"
        self.border_title = "2 Active agents"
        self.border_subtitle = f"sort: {_LABEL[self.sort_key]} {arrow} (s)"

    @property
    def selected_agent(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    def sort_by(self, key: str | None = None) -> None:
        """Sort by ``key`` (same key again flips the order); ``None`` cycles the keys."""
        keys = [k for k, _ in SORT_KEYS]
        if key is None:
            key = keys[(keys.index(self.sort_key) + 1) % len(keys)]
            self.sort_reverse = False
        elif key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_reverse = False
        self.sort_key = key
        self._title()
        if self.state is not None:
            self.set_state(self.state, force=True)

    def _row(self, a: AgentView, now: float, name_w: int, caps_w: int) -> tuple[Any, ...]:
        name = safe_text(a.role or a.id, name_w - 2 if a.last_error else name_w)
        if a.last_error:
            name.append(" !", style="bold red")
        status = Text(_STATUS_LABEL.get(a.status, a.status), style=_STATUS_STYLE.get(a.status, ""))
        caps = safe_text(", ".join(clean(c, 30) for c in a.capabilities) or "—", caps_w, "dim")
        tokens = Text(
            f"{fmt_tokens(a.input_tokens)}/{fmt_tokens(a.output_tokens)}", justify="right"
        )
        cost = Text(fmt_usd(a.cost_usd), justify="right")
        if a.unpriced_llm_calls:
            cost.append("*", style="yellow")
        rate = Text(fmt_usd(a.usd_per_hour), justify="right", style="dim")
        load = Text(str(a.current_load), justify="right", style="bold" if a.current_load else "dim")
        last = fmt_ago(a.last_activity, now)
        return (name, status, last, load, tokens, cost, rate, caps)

    def set_state(self, state: DashboardState, *, force: bool = False) -> None:
        self.state = state
        agents = sorted(state.agents, key=lambda a: ((a.role or a.id).casefold(), a.id))
        agents.sort(
            key=lambda a: _sort_value(a, self.sort_key),
            reverse=(self.sort_key not in _ASCENDING) != self.sort_reverse,
        )
        order = [a.id for a in agents]
        widths = self._widths()
        if widths is None:  # not laid out yet: on_resize renders
            return
        self._widths_used = widths
        rows = [self._row(a, state.generated_at, *widths) for a in agents]
        keep = self.selected_agent
        if force or not self.columns:
            self.clear()
            self._rows = []
        # rows are positional ("0", "1", ...): a re-sort rewrites the cells that changed
        # instead of clearing the table, which keeps a frame cheap with many agents
        old_rows = self._rows
        for i, new in enumerate(rows):
            if i >= len(old_rows):
                self.add_row(*new, key=str(i))
                continue
            old = old_rows[i]
            for j, value in enumerate(new):
                if old[j] != value:
                    self.update_cell_at(Coordinate(i, j), value, update_width=_wider(old[j], value))
        for i in range(len(old_rows) - 1, len(rows) - 1, -1):
            self.remove_row(str(i))
        self._order, self._rows = order, rows
        if keep in order and order.index(keep) != self.cursor_row:
            self.move_cursor(row=order.index(keep), animate=False)

    @property
    def order(self) -> list[str]:
        """Agent ids in display order."""
        return list(self._order)

    def _widths(self) -> tuple[int, int] | None:
        """(name, capabilities) widths: the name gets what the fixed columns leave.

        From the outer region (layout only), not the content size, which moves with the
        scrollbars the rows themselves cause."""
        width = self.region.width - 4  # border and padding
        if width <= 0:
            return None
        name_w = max(12, min(32, width - 57))
        return name_w, max(12, width - 59 - name_w)

    def on_resize(self) -> None:
        if self.state is not None and self._widths() != self._widths_used:
            self.set_state(self.state, force=True)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key in _LABEL:
            self.sort_by(key)
        event.stop()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self._order):
            self.post_message(self.Open(self._order[event.cursor_row]))
