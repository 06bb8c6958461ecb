"""Pane 1: the memory-tier flow, Query -> Redis -> PostgreSQL -> ChromaDB -> miss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.text import Text

from .base import Pane
from .format import bar, fmt_count, fmt_ms, fmt_pct, fmt_usd, grid

if TYPE_CHECKING:
    from auren_core.state import DashboardState
    from auren_core.state.model import TierView

__all__ = ["TierFlow"]

_LABELS = (("redis", "Redis"), ("postgresql", "PostgreSQL"), ("chromadb", "ChromaDB"))
_SHORT = {"redis": "Redis", "postgresql": "PG", "chromadb": "Chroma"}


def _hit_style(rate: float, tried: int) -> str:
    if tried == 0:
        return "dim"
    return "green" if rate >= 0.6 else ("yellow" if rate >= 0.3 else "red")


class TierFlow(Pane):
    """Per tier: lookups that reached it, the share of all lookups it served ("served",
    the API's ``tier_hit_rates``), its local hit rate (served / reached, ``local_hit_rates``),
    p50/p95, fall-through to the next tier, misses and cost (rates: auren_core.rules)."""

    def depends(self, state: DashboardState) -> Any:
        return state.tiers

    def build(self, state: DashboardState, width: int, height: int) -> RenderableType:
        tiers = state.tiers
        views = tiers.by_name()
        flow = Text(no_wrap=True, overflow="ellipsis")
        flow.append("Query ", style="bold")
        flow.append(fmt_count(tiers.queries), style="bold cyan")
        short = width < 64
        for key, label in _LABELS:
            flow.append(" → " if short else " ─▶ ", style="dim")
            flow.append(_SHORT[key] if short else label, style="bold")
        flow.append(" → " if short else " ─▶ ", style="dim")
        flow.append("miss ", style="bold")
        miss_style = "red" if tiers.misses else "dim"
        flow.append(f"{fmt_count(tiers.misses)} ({fmt_pct(tiers.miss_rate)})", style=miss_style)

        col_w = max(8, min(16, (width - 10) // 3 - 1))
        served_cells: list[Text] = []
        hit_cells: list[Text] = []
        for key, _ in _LABELS:
            tv = views[key]
            cell = Text(f"{fmt_pct(tv.share) if tiers.queries else '—':>4} ")
            cell.append(bar(tv.share if tiers.queries else None, col_w - 5), style="cyan")
            served_cells.append(cell)
            cell = Text(f"{fmt_pct(tv.hit_rate) if tv.tried else '—':>4} ")
            cell.append(bar(tv.hit_rate if tv.tried else None, col_w - 5), style="blue")
            cell.stylize(_hit_style(tv.hit_rate, tv.tried), 0, 4)
            hit_cells.append(cell)
        rows: list[list[str | Text]] = [
            ["tried", *(fmt_count(views[k].tried) for k, _ in _LABELS)],
            ["served", *served_cells],
            ["local hit", *hit_cells],
            ["p50", *(fmt_ms(views[k].p50_ms) for k, _ in _LABELS)],
            ["p95", *(fmt_ms(views[k].p95_ms) for k, _ in _LABELS)],
            [
                "fall ↓",
                *(
                    fmt_pct(views[k].fall_through_rate) if views[k].tried else "—"
                    for k, _ in _LABELS
                ),
            ],
            ["cost", *(_cost_cell(views[k], col_w) for k, _ in _LABELS)],
        ]
        # a fixed-width grid (what a rich Table of these widths renders, without its
        # measuring pass: this pane is repainted with every frame that has new loads)
        table = grid(["", *(label for _, label in _LABELS)], rows, [9, col_w, col_w, col_w])
        errors = sum(views[k].errors for k, _ in _LABELS)
        parts: list[RenderableType] = [flow, table]
        if tiers.embedding_model and height >= 9:
            parts.append(
                Text(
                    f"embeddings ({tiers.embedding_model}): {fmt_usd(tiers.embedding_cost_usd)}"
                    " in ChromaDB's cost",
                    style="dim",
                    no_wrap=True,
                    overflow="ellipsis",
                )
            )
        if errors:
            parts.append(Text(f"tier errors: {fmt_count(errors)}", style="red"))
        if tiers.cost_note and height >= 10:
            parts.append(
                Text(tiers.cost_note, style="dim italic", no_wrap=True, overflow="ellipsis")
            )
        return Group(*parts)


def _size(n: int) -> str:
    """Bytes in decimal units (the GB of the GB-month price)."""
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= f:
            return f"{n / f:.1f}{unit}"
    return f"{n}B"


def _cost_cell(tv: TierView, width: int) -> str:
    """The window's cost, then the stored size and its monthly rate when a
    ``memory_tier_storage`` was reported and they fit in the column (else the cost alone:
    the layout never changes)."""
    cost = fmt_usd(tv.cost_usd)
    if tv.storage_bytes is None:
        return cost
    sized = f"{cost} {_size(tv.storage_bytes)}"
    options = [sized, cost]
    if tv.storage_usd_per_month:
        rate = f"{fmt_usd(tv.storage_usd_per_month)}/mo"
        options[:0] = [f"{sized} {rate}", f"{cost} {rate}"]
    return next(o for o in options if len(o) <= width or o is cost)
