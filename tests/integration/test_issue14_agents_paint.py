"""Issue 14: the agents table paints only what changed, and paints it as ``DataTable`` would.

The table caches painted lines and cells by each row's own content (``DataTable`` keys its
caches on one table-wide counter, so one changed cell repainted every visible cell). These
tests pin both halves: the cached painting is segment-for-segment ``DataTable``'s own, and
a frame where one agent changed repaints that agent's changed cells only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from recorded_events import recorded
from rich.text import Text
from textual.coordinate import Coordinate
from textual.pilot import Pilot
from textual.widgets import DataTable
from tui_states import show_recorded, state_app
from waiting import await_until

from auren_tui.app import TopApp
from auren_tui.widgets import AgentsTable


def _app() -> TopApp:
    return state_app()  # the recording's state, posted as the worker's message


async def _wait_for(pilot: Pilot[None], cond: Callable[[], object], what: str) -> None:
    await await_until(cond, what, timeout=15.0, pause=pilot.pause)


async def _loaded(pilot: Pilot[None], app: TopApp) -> AgentsTable:
    await show_recorded(pilot)  # painted, the table filled
    assert app.shown is not None and app.shown.health.events_total == len(recorded())
    table = app.screen.query_one(AgentsTable)
    assert table.row_count > 1
    return table


def _base_lines(table: AgentsTable) -> list[Any]:
    """Every line of the table as ``DataTable`` alone paints it (no cache of ours)."""
    table._clear_caches()
    table._render_cell = (  # type: ignore[method-assign]
        lambda *a, **kw: DataTable._render_cell(table, *a, **kw)
    )
    try:
        style = table.rich_style
        w = table.size.width
        return [
            list(DataTable._render_line(table, y, 0, w, style)) for y in range(table.size.height)
        ]
    finally:
        del table._render_cell
        table._clear_caches()


def _our_lines(table: AgentsTable) -> list[Any]:
    """Every line as the table paints it (as in ``render_lines``: the style read once)."""
    table._paint_style, table._paint_row_styles = table.rich_style, {}
    try:
        return [list(table.render_line(y)) for y in range(table.size.height)]
    finally:
        table._paint_style = None


@pytest.mark.parametrize("focused", [True, False])
async def test_cached_painting_is_datatables_own(focused: bool) -> None:
    app = _app()
    async with app.run_test(size=(160, 48)) as pilot:
        table = await _loaded(pilot, app)
        if focused:
            table.focus()
        else:
            table.blur()
        await _wait_for(pilot, lambda: table.has_focus == focused, "the focus change")
        table._pseudo_class_state = table.get_pseudo_class_state()
        # a cell wider than its column (cropped), a str cell, a right-justified one
        table.update_cell_at(Coordinate(1, 0), Text("x" * 200, style="bold"))
        table._cell_sigs["1"] = (*table._cell_sigs["1"][:0], "wide", *table._cell_sigs["1"][1:])
        table.update_cell_at(Coordinate(2, 2), "[bold]not markup?[/]")
        table._cell_sigs["2"] = (*table._cell_sigs["2"][:2], "str", *table._cell_sigs["2"][3:])
        table._sigs["1"], table._sigs["2"] = "changed 1", "changed 2"  # as set_state does
        for cursor_row in (0, 2):
            table.move_cursor(row=cursor_row, animate=False)
            ours = _our_lines(table)  # painted through our caches (and again: from them)
            assert _our_lines(table) == ours
            assert ours == _base_lines(table)
        # every body cell, cursor and hover on and off, against DataTable's cell painting
        for i in range(table.row_count):
            row_style = table._get_row_style(i, table.rich_style)
            for j, column in enumerate(table.ordered_columns):
                w = column.get_render_width(table)
                for cursor in (False, True):
                    for hover in (False, True):
                        sig = table._cell_sigs[str(i)][j]
                        mine = table._paint_cell(sig, i, j, row_style, w, cursor, hover)
                        base = DataTable._render_cell(table, i, j, row_style, w, cursor, hover)
                        assert mine == base, (i, j, cursor, hover)


async def test_one_changed_agent_repaints_only_its_changed_cells() -> None:
    app = _app()
    async with app.run_test(size=(160, 48)) as pilot:
        table = await _loaded(pilot, app)
        app.paused = True  # no frame of the app's own in between
        state = table.state
        assert state is not None and len(state.agents) >= 3
        await pilot.pause()  # what is still to paint from the first frame
        painted: list[tuple[int, int]] = []
        repaints: list[int] = []  # the table's paints (render_lines calls)
        cell = DataTable._render_cell

        def counting(self: Any, row: int, col: int, *a: Any, **kw: Any) -> Any:
            painted.append((row, col))
            return cell(self, row, col, *a, **kw)

        mp = pytest.MonkeyPatch()
        mp.setattr(DataTable, "_render_cell", counting)
        paint = AgentsTable._paint_cell

        def counting_paint(self: Any, sig: Any, row: int, col: int, *a: Any) -> Any:
            painted.append((row, col))
            return paint(self, sig, row, col, *a)

        mp.setattr(AgentsTable, "_paint_cell", counting_paint)
        lines = AgentsTable.render_lines

        def counting_lines(self: Any, crop: Any) -> Any:
            repaints.append(1)
            return lines(self, crop)

        mp.setattr(AgentsTable, "render_lines", counting_lines)
        try:
            table.set_state(state)  # the same state again: nothing to paint
            table.refresh()
            await _wait_for(pilot, lambda: repaints, "the table repainted")
            assert painted == []
            row = 1
            agent_id = table.order[row]
            agents = tuple(
                dataclasses.replace(a, current_load=a.current_load + 7) if a.id == agent_id else a
                for a in state.agents
            )
            before = len(repaints)
            table.set_state(dataclasses.replace(state, agents=agents))
            assert table.order[row] == agent_id  # load is not the sort key: no row moved
            await _wait_for(pilot, lambda: len(repaints) > before, "the table repainted")
        finally:
            mp.undo()
        load_col = [c.key.value for c in table.ordered_columns].index("load")
        assert painted and set(painted) == {(row, load_col)}, painted
