"""Pane 2: active agents in a sortable ``DataTable``; Enter opens the agent screen.

At most :data:`~auren_tui.agent_order.MAX_ROWS` rows, in the chosen order, and a
"+K more" line for the rest: a frame costs the same with 10,000 agents as with 200.

Painting: ``DataTable`` keys its line, row and cell caches on one table-wide update
counter, so one changed cell re-renders every visible cell. This table keeps its own
cache of painted lines (Textual's Line API: ``render_line`` -> ``Strip``) keyed by each
row's own content signature (plus everything else the line depends on: its position,
the column widths, cursor, hover, focus, size, style), so an unchanged row is never
re-rendered. A changed row reuses its unchanged cells (cached by the cell's content and
place), and a changed or moved cell reuses its text laid out in its width (cached by
content alone): only the row's styles are applied again. The painting is ``DataTable``'s
own, segment for segment (tests/integration/test_issue14_agents_paint.py), so the
snapshots do not move; a row set_state sees unchanged is not even rebuilt."""

from __future__ import annotations

from collections.abc import Hashable
from itertools import islice
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._types import SegmentLines
from textual.cache import LRUCache
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets._data_table import RowKey, default_cell_formatter

from ..agent_order import ASCENDING as _ASCENDING
from ..agent_order import MAX_ROWS, SORT_KEYS, agents_total, order_agents
from ..sanitize import clean, safe_text
from .format import fmt_ago, fmt_usd

if TYPE_CHECKING:
    from auren_core.state import AgentView, DashboardState

__all__ = ["SORT_KEYS", "AgentsTable"]

_LABEL = dict(SORT_KEYS)
_STATUS_STYLE = {
    "running": "bold green",
    "idle": "dim",
    "failed": "bold red",
    "waiting_human": "bold black on yellow",
}
# shown in the 7-wide status column; the JSON keeps the full status
_STATUS_LABEL = {"waiting_human": "⚑ human"}


def _wider(new: Any, width: int) -> bool:
    """Whether a cell is wider than its column (only then is the width worth updating: a
    narrower one makes the table re-measure the whole column, for every such cell)."""
    return cell_len(str(new)) > width


_NULL = Style.null()
_EMPTY_TEXT = Text(no_wrap=True, end="")


def _cell_sig(value: Any) -> Hashable:
    """What a cell shows, hashable (``Text`` is not)."""
    if isinstance(value, Text):
        return (value.plain, str(value.style), value.justify, tuple(map(str, value.spans)))
    return str(value)


def fmt_tokens(n: int) -> str:
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1e3:.1f}k"
    return f"{n / 1e6:.1f}M"


class AgentsTable(DataTable[Any]):
    """Rows keyed by agent id, so the cursor stays on its agent across updates."""

    class SortChanged(Message):
        """The order changed (the worker ships the first rows of this order)."""

        def __init__(self, key: str, reverse: bool) -> None:
            super().__init__()
            self.key = key
            self.reverse = reverse

    class Open(Message):
        """The user asked to drill into ``agent_id``."""

        def __init__(self, agent_id: str) -> None:
            super().__init__()
            self.agent_id = agent_id

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        # what each row shows (by row key): rows are rebuilt, and lines repainted, only
        # when it changes (set first: the base class clears caches as it starts)
        self._sigs: dict[str, Hashable] = {}
        self._strips: LRUCache[Hashable, Strip] = LRUCache(1024)
        # and each cell (by row key): a changed row repaints only its changed cells
        self._cell_sigs: dict[str, tuple[Hashable, ...]] = {}
        self._cells: LRUCache[Hashable, SegmentLines] = LRUCache(8192)
        # and a cell's text laid out in its width, wherever the cell is (a re-sort moves
        # rows, which changes their stripes, cursor and meta, not their text)
        self._inner: LRUCache[Hashable, list[list[Segment]]] = LRUCache(4096)
        self._paint_style: Style | None = None
        self._paint_row_styles: dict[Hashable, Style] = {}
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
        self.post_message(self.SortChanged(key, self.sort_reverse))
        if self.state is not None:  # rows are positional: only the changed cells are rewritten
            self.set_state(self.state)

    @staticmethod
    def _sig(a: AgentView, now: float, widths: tuple[int, int]) -> Hashable:
        """Everything :meth:`_row` reads: equal signatures, equal rows."""
        return (
            a.role or a.id,
            bool(a.last_error),
            a.status,
            fmt_ago(a.last_activity, now),
            a.current_load,
            fmt_tokens(a.input_tokens),
            fmt_tokens(a.output_tokens),
            fmt_usd(a.cost_usd),
            bool(a.unpriced_llm_calls),
            fmt_usd(a.usd_per_hour),
            tuple(a.capabilities),
            widths,
        )

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
        agents = order_agents(state.agents, self.sort_key, self.sort_reverse)[:MAX_ROWS]
        order = [a.id for a in agents]
        widths = self._widths()
        if widths is None:  # not laid out yet: on_resize renders
            return
        self._widths_used = widths
        now = state.generated_at
        sigs: list[Hashable] = [self._sig(a, now, widths) for a in agents]
        more = agents_total(state) - len(agents)
        if more > 0:
            sigs.append(("more", more))
        keep = self.selected_agent
        if force or not self.columns:
            self.clear()
            self._rows = []
            self._sigs = {}
            self._cell_sigs = {}
        # rows are positional ("0", "1", ...): a re-sort rewrites the cells that changed
        # instead of clearing the table, which keeps a frame cheap with many agents; a row
        # whose signature is unchanged is not even rebuilt
        old_rows = self._rows
        old_sigs = self._sigs
        rows: list[tuple[Any, ...]] = []
        cols = self.ordered_columns
        for i, sig in enumerate(sigs):
            key = str(i)
            if i < len(old_rows) and old_sigs.get(key) == sig:
                rows.append(old_rows[i])
                continue
            new = self._row(agents[i], now, *widths) if i < len(agents) else self._more_row(more)
            rows.append(new)
            old_sigs[key] = sig
            self._cell_sigs[key] = tuple(map(_cell_sig, new))
            if i >= len(old_rows):
                self.add_row(*new, key=key)
                continue
            old = old_rows[i]
            for j, value in enumerate(new):
                if old[j] != value:
                    wide = _wider(value, cols[j].content_width)
                    self.update_cell_at(Coordinate(i, j), value, update_width=wide)
        for i in range(len(old_rows) - 1, len(rows) - 1, -1):
            self.remove_row(str(i))
            old_sigs.pop(str(i), None)
            self._cell_sigs.pop(str(i), None)
        self._order, self._rows = order, rows
        if keep in order and order.index(keep) != self.cursor_row:
            self.move_cursor(row=order.index(keep), animate=False)

    @staticmethod
    def _more_row(more: int) -> tuple[Any, ...]:
        return (Text(f"+{more:,} more", style="dim italic"), *(("",) * 7))

    @property
    def order(self) -> list[str]:
        """Agent ids in display order."""
        return list(self._order)

    # ------------------------------------------------------------------ painting

    def render_lines(self, crop: Region) -> list[Strip]:
        # the widget's style, once per paint, not once per line (it walks the ancestors)
        self._paint_style = self.rich_style
        self._paint_row_styles = {}
        try:
            return super().render_lines(crop)
        finally:
            self._paint_style = None

    def render_line(self, y: int) -> Strip:
        style = self._paint_style
        if style is None or self.fixed_rows:
            return super().render_line(y)
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        if y >= (self.header_height if self.show_header else 0):
            y += scroll_y
        return self._render_line(y, scroll_x, scroll_x + width, style)

    def _render_line(self, y: int, x1: int, x2: int, base_style: Style) -> Strip:
        """One painted line, from the per-row cache when the row has not changed."""
        if self.cursor_type != "row" or self.fixed_columns or self.fixed_rows:
            return super()._render_line(y, x1, x2, base_style)
        width = self.size.width
        try:
            row_key, line_no = self._get_offsets(y)
        except LookupError:
            return Strip.blank(width, base_style)
        if row_key is self._header_row_key:
            sig: Hashable = "header"
            index = -1
        else:
            value = row_key.value
            if value is None or value not in self._sigs:
                return super()._render_line(y, x1, x2, base_style)
            sig = self._sigs[value]
            located = self._row_locations.get(row_key)
            if located is None:
                return super()._render_line(y, x1, x2, base_style)
            index = located
        key = (
            sig,
            index,
            line_no,
            x1,
            x2,
            width,
            self.cursor_coordinate.row == index,
            self.hover_coordinate.row == index,
            self.show_cursor,
            self._show_hover_cursor,
            self.show_header,
            base_style,
            self._pseudo_class_state,
            tuple(c.get_render_width(self) for c in self.ordered_columns),
        )
        strip = self._strips.get(key)
        if strip is None:
            strip = super()._render_line(y, x1, x2, base_style)
            self._strips[key] = strip
        return strip

    def _render_line_in_row(
        self,
        row_key: RowKey,
        line_no: int,
        base_style: Style,
        cursor_location: Coordinate,
        hover_location: Coordinate,
    ) -> tuple[SegmentLines, SegmentLines]:
        """``DataTable``'s, for this table's shape (row cursor, no fixed columns, no row
        labels), with the row's styles looked up once per paint instead of once per line
        (each lookup merges the component's CSS). A test compares the lines painted."""
        if (
            self._paint_style is None
            or self.cursor_type != "row"
            or self.fixed_columns
            or self.fixed_rows
            or (self._labelled_row_exists and self.show_row_labels)
        ):
            return super()._render_line_in_row(
                row_key, line_no, base_style, cursor_location, hover_location
            )
        located = self._row_locations.get(row_key) if row_key in self._row_locations else None
        index = -1 if located is None else located
        style_key = (index == -1, index % 2, self.zebra_stripes, base_style)
        row_style = self._paint_row_styles.get(style_key)
        if row_style is None:
            row_style = self._paint_row_styles[style_key] = self._get_row_style(index, base_style)
        cursor = cursor_location.row == index
        hover = hover_location.row == index
        columns = self.ordered_columns
        widths = [c.get_render_width(self) for c in columns]
        render_cell = self._render_cell
        cells: list[list[Segment]] = [
            render_cell(index, j, row_style, w, cursor=cursor, hover=hover)[line_no]
            for j, w in enumerate(widths)
        ]
        remaining = max(0, self.size.width - (sum(widths) + self._row_label_column_width))
        extend, _ = self._get_styles_to_render_cell(  # type: ignore[call-arg]
            index == -1,
            False,
            False,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            False,
            False,
        )
        extend = row_style + extend
        extend += Style.from_meta({"row": index, "column": 0, "out_of_bounds": True})
        cells.append([Segment(" " * remaining, extend)])
        return [], cells

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> SegmentLines:
        """One painted cell, from the per-cell cache when the cell has not changed."""
        if row_index == -1 or column_index == -1:
            sig: Hashable = "header"
        else:
            row_key = self._row_locations.get_key(row_index)
            sigs = None if row_key is None else self._cell_sigs.get(str(row_key.value))
            if sigs is None or column_index >= len(sigs):
                return super()._render_cell(
                    row_index, column_index, base_style, width, cursor, hover
                )
            sig = sigs[column_index]
        key = (
            sig,
            row_index,
            column_index,
            base_style,
            width,
            cursor,
            hover,
            self.show_cursor,
            self._show_hover_cursor,
            self._pseudo_class_state,
        )
        lines = self._cells.get(key)
        if lines is None:
            if row_index == -1 or column_index == -1:
                lines = super()._render_cell(
                    row_index, column_index, base_style, width, cursor, hover
                )
            else:
                lines = self._paint_cell(
                    sig, row_index, column_index, base_style, width, cursor, hover
                )
            self._cells[key] = lines
        return lines

    def _paint_cell(
        self,
        sig: Hashable,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool,
        hover: bool,
    ) -> SegmentLines:
        """``DataTable._render_cell`` for a one-line body cell, segment for segment (a test
        compares the two), with the costly part, the cell's text laid out in its width,
        cached by content alone: ``Styled(Padding(cell, (0, p)), pre, post)`` is the text's
        lines between two padding segments, with the row's styles applied to all of them."""
        row_key = self._row_locations.get_key(row_index)
        if row_key is None or self.rows[row_key].height != 1 or row_index < self.fixed_rows:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        pad = self.cell_padding
        inner = self._inner.get((sig, width, pad))
        if inner is None:
            value = self.get_cell_at(Coordinate(row_index, column_index))
            cell = (
                _EMPTY_TEXT
                if value is None
                else default_cell_formatter(value, wrap=False, height=1) or _EMPTY_TEXT
            )
            options = self.app.console_options.update_dimensions(width, 1)
            options = options.update(no_wrap=True).update_width(width - 2 * pad)
            inner = self.app.console.render_lines(cell, options, style=_NULL, pad=True)
            self._inner[(sig, width, pad)] = inner
        pre = base_style + Style.from_meta({"row": row_index, "column": column_index})
        component, post = self._get_styles_to_render_cell(  # type: ignore[call-arg]
            False,
            False,
            False,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        pad_segment = Segment(" " * pad, _NULL)
        segments: list[Segment] = []
        for line in inner:
            if pad:
                segments.append(pad_segment)
                segments.extend(line)
                segments.append(pad_segment)
            else:
                segments.extend(line)
            segments.append(Segment.line())
        styled = Segment.apply_style(segments, style=pre + component, post_style=post)
        out = list(
            islice(
                Segment.split_and_crop_lines(
                    styled, width, include_new_lines=False, pad=True, style=None
                ),
                None,
                1,
            )
        )
        if not out:
            out = [[Segment(" " * width, None)]]
        return out

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._strips.clear()
        self._cells.clear()

    def notify_style_update(self) -> None:
        self._strips.clear()
        self._cells.clear()
        super().notify_style_update()

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
