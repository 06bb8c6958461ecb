"""The base pane: a ``Static`` that rebuilds its renderable from the latest state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from textual import events
from textual.widgets import Static

if TYPE_CHECKING:
    from auren_core.state import DashboardState

__all__ = ["Pane"]


class Pane(Static):
    """Holds the last state; :meth:`build` turns it into a renderable for the pane's size.

    ``markup=False``: nothing in a pane is ever parsed as Rich markup, so a string such
    as ``"[bold]"`` from an event stays literal.
    """

    def __init__(self, *, title: str = "", id: str | None = None, classes: str | None = None):
        super().__init__("", id=id, classes=classes, markup=False)
        self.border_title = title
        self.state: DashboardState | None = None
        self._built: tuple[Any, ...] | None = None

    def depends(self, state: DashboardState) -> Any:
        """The part of the state this pane shows: when it is equal to last frame's (and
        the size is too), the pane is not rebuilt or repainted. Default: everything."""
        return state

    def set_state(self, state: DashboardState) -> None:
        self.state = state
        self._rebuild()

    def _rebuild(self, *, force: bool = False) -> None:
        if self.state is None:
            return
        size = self.content_size
        if size.width <= 0 or size.height <= 0:
            return  # not laid out yet: on_resize renders at the real size
        key = (size, self.depends(self.state))
        if key == self._built and not force:
            return
        self._built = key
        # layout=False: every pane's size comes from the stylesheet, never from its content,
        # so a new frame repaints the pane without a reflow of the whole screen
        self.update(self.build(self.state, max(20, size.width), size.height), layout=False)

    def on_resize(self, event: events.Resize) -> None:
        self._rebuild()

    def build(self, state: DashboardState, width: int, height: int) -> RenderableType:
        raise NotImplementedError
