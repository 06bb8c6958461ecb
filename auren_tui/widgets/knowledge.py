"""Pane 5: knowledge heatmap, most-accessed items x agents, with gaps highlighted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.text import Text

from ..sanitize import clean
from .base import Pane
from .collab import names_for, names_key
from .format import fmt_count, fmt_pct, shade

if TYPE_CHECKING:
    from auren_core.state import DashboardState

__all__ = ["KnowledgeHeatmap"]

_HEAT = ("", "grey50", "green", "bold green", "bold yellow", "bold red")


class KnowledgeHeatmap(Pane):
    """Cells shaded by access count; items that missed (gaps) are marked in red."""

    def depends(self, state: DashboardState) -> Any:
        return state.knowledge, state.tiers.gaps, names_key(state)

    def build(self, state: DashboardState, width: int, height: int) -> RenderableType:
        k = state.knowledge
        gaps = list(k.gaps) or list(state.tiers.gaps)
        gap_keys = {g.query for g in k.gaps}
        names = names_for(state)
        lines: list[RenderableType] = []
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"{fmt_count(k.accesses)} accesses, hit {fmt_pct(k.hit_rate)}", style="dim")
        lines.append(head)
        n_gaps = min(len(gaps), max(1, (height - 3) // 3)) if gaps else 0
        if k.items:
            label_w = max(8, min(24, width // 3))
            cell_w = 5
            n_agents = max(1, min(len(k.agents), (width - label_w - 6) // cell_w))
            agents = k.agents[:n_agents]
            top = max((max(row[:n_agents], default=0) for row in k.counts), default=0)
            header = Text(" " * label_w, no_wrap=True, overflow="ellipsis")
            for a in agents:
                header.append(clean(names.get(a, a), cell_w - 1).rjust(cell_w - 1) + " ")
            header.append("  all", style="dim")
            lines.append(header)
            room = max(1, height - 2 - (n_gaps + 1 if n_gaps else 0))
            for item, row, total in list(zip(k.items, k.counts, k.item_totals, strict=False))[
                :room
            ]:
                t = Text(no_wrap=True, overflow="ellipsis")
                is_gap = item in gap_keys
                label = ("✗ " if is_gap else "") + clean(item, label_w)
                t.append(clean(label, label_w - 1).ljust(label_w), style="red" if is_gap else "")
                for n in row[:n_agents]:
                    level = 0 if n <= 0 or top <= 0 else max(1, min(5, round(n / top * 5)))
                    cell = (shade(n, top) + fmt_count(n)) if n else "·"
                    t.append(cell.rjust(cell_w - 1) + " ", style=_HEAT[level] or "dim")
                t.append(f"{fmt_count(total):>5}", style="dim")
                lines.append(t)
        else:
            lines.append(Text("no knowledge accesses in the window", style="dim"))
        if n_gaps:
            lines.append(Text("gaps (no tier or source had it):", style="bold red"))
            for g in gaps[:n_gaps]:
                t = Text(no_wrap=True, overflow="ellipsis")
                t.append(f" x{fmt_count(g.count)} ", style="red")
                t.append(clean(g.query, width))
                if g.agents:
                    who = ", ".join(clean(names.get(a, a), 16) for a in g.agents[:3])
                    t.append(f"  ({who})", style="dim")
                lines.append(t)
        return Group(*lines)
