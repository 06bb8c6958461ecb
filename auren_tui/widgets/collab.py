"""Pane 4: the agent x agent collaboration matrix (delegations + questions), shaded."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.text import Text

from ..sanitize import clean
from .base import Pane
from .format import fmt_count, shade

if TYPE_CHECKING:
    from auren_core.state import DashboardState

__all__ = ["CollabMatrix"]

_INTENSITY = ("", "grey50", "cyan", "bold cyan", "bold yellow", "bold red")


def names_for(state: DashboardState) -> dict[str, str]:
    """Agent id -> display name (the role when the agent is known)."""
    return {a.id: a.role or a.id for a in state.agents}


def names_key(state: DashboardState) -> frozenset[tuple[str, str | None]]:
    """What :func:`names_for` depends on, for a pane's ``depends``: the agents' order
    (it moves with their costs on every frame) does not change a name."""
    return frozenset((a.id, a.role) for a in state.agents)


class CollabMatrix(Pane):
    """Rows delegate/ask, columns receive; the busiest pairs are named underneath."""

    def depends(self, state: DashboardState) -> Any:
        return state.collaboration, names_key(state)

    def build(self, state: DashboardState, width: int, height: int) -> RenderableType:
        edges = state.collaboration
        if not edges:
            return Text("no delegations or questions in the window", style="dim")
        names = names_for(state)
        pair: dict[tuple[str, str], int] = defaultdict(int)
        kinds: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
        volume: dict[str, int] = defaultdict(int)
        for e in edges:  # O(edges) of plain sums: only the named pairs' kinds are cleaned
            pair[(e.from_agent, e.to_agent)] += e.count
            kinds[(e.from_agent, e.to_agent)].append((e.kind, e.count))
            volume[e.from_agent] += e.count
            volume[e.to_agent] += e.count
        label_w = max(6, min(14, width // 5))
        cell_w = 6
        busiest = sorted(pair.items(), key=lambda kv: (-kv[1], kv[0]))
        n_named = 3 if height >= 10 else 1
        max_rows = max(1, height - 1 - n_named)
        fit = max(1, min((width - label_w) // cell_w, max_rows))
        agents = sorted(volume, key=lambda a: (-volume[a], a))[:fit]
        top = max(pair.values())

        lines: list[RenderableType] = []
        header = Text(" " * label_w, no_wrap=True, overflow="ellipsis")
        for a in agents:
            header.append(clean(names.get(a, a), cell_w - 1).rjust(cell_w - 1) + " ", style="bold")
        lines.append(header)
        for src in agents:
            row = Text(no_wrap=True, overflow="ellipsis")
            row.append(clean(names.get(src, src), label_w - 1).ljust(label_w), style="bold")
            for dst in agents:
                n = pair.get((src, dst), 0)
                if src == dst and not n:
                    row.append("·".rjust(cell_w - 1) + " ", style="dim")
                    continue
                level = 0 if n <= 0 else max(1, min(5, round(n / top * 5)))
                cell = (shade(n, top) + fmt_count(n)).rjust(cell_w - 1) if n else ""
                row.append(cell.rjust(cell_w - 1) + " ", style=_INTENSITY[level])
            lines.append(row)
        for (src, dst), n in busiest[:n_named]:
            t = Text(no_wrap=True, overflow="ellipsis")
            t.append("▶ ", style="yellow")
            t.append(clean(names.get(src, src), 24))
            t.append(" → ", style="dim")
            t.append(clean(names.get(dst, dst), 24))
            how = ", ".join(f"{clean(k, 12)} {c}" for k, c in kinds[(src, dst)])
            t.append(f"  {fmt_count(n)} ({how})", style="dim")
            lines.append(t)
        return Group(*lines)
