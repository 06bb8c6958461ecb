"""The agents table's order, and the trim that keeps the UI's cost flat in the agent count.

No Textual here: the worker (thread or child process) imports it to ship only the agents
the table can show (:func:`trim_state`), the table to sort them the same way.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import add, attrgetter
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from auren_core.state import AgentView, DashboardState

__all__ = [
    "MAX_ROWS",
    "SORT_KEYS",
    "agents_total",
    "first_agents",
    "order_agents",
    "sort_value",
    "trim_state",
]

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
ASCENDING: Final = frozenset({"status", "agent"})
_STATUS_ORDER: Final = {"waiting_human": 0, "failed": 1, "running": 2, "idle": 3}
MAX_ROWS: Final = 100  # agents shown in the table; a "+K more" line counts the rest


def sort_value(a: AgentView, key: str) -> Any:
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


def order_agents(agents: Iterable[AgentView], key: str, reverse: bool) -> list[AgentView]:
    """Display order: by ``key`` (numbers descending, names and status ascending; ``reverse``
    flips), ties by name then id."""
    out = sorted(agents, key=lambda a: ((a.role or a.id).casefold(), a.id))
    out.sort(key=lambda a: sort_value(a, key), reverse=(key not in ASCENDING) != reverse)
    return out


_VALUES: Final[dict[str, Callable[[Sequence[AgentView]], Iterable[Any]]]] = {
    "cost": lambda agents: map(attrgetter("cost_usd"), agents),
    "rate": lambda agents: map(attrgetter("usd_per_hour"), agents),
    "tokens": lambda agents: map(
        add, map(attrgetter("input_tokens"), agents), map(attrgetter("output_tokens"), agents)
    ),
    "last": lambda agents: map(attrgetter("last_activity"), agents),
    "load": lambda agents: map(attrgetter("current_load"), agents),
    "status": lambda agents: map(
        _STATUS_ORDER.get, map(attrgetter("status"), agents), repeat(4, len(agents))
    ),
}


def first_agents(agents: Sequence[AgentView], key: str, reverse: bool, n: int) -> list[AgentView]:
    """``order_agents(agents, key, reverse)[:n]``, without ordering all of them: only the
    agents whose sort value reaches the ``n``-th one's are ordered (10,000 agents: ~5x
    cheaper per frame, unless most of them tie on that value)."""
    values = _VALUES.get(key)
    if values is None or n <= 0 or len(agents) <= n:
        return order_agents(agents, key, reverse)[:n]
    vals = list(values(agents))
    desc = (key not in ASCENDING) != reverse
    if desc:
        edge = heapq.nlargest(n, vals)[-1]
        near = [a for a, v in zip(agents, vals, strict=True) if v >= edge]
    else:
        edge = heapq.nsmallest(n, vals)[-1]
        near = [a for a, v in zip(agents, vals, strict=True) if v <= edge]
    return order_agents(near, key, reverse)[:n]


def agents_total(state: DashboardState) -> int:
    """Active agents in the window (the state may carry only the first of them)."""
    return len(state.agents) if state.agents_total is None else state.agents_total


def trim_state(
    state: DashboardState,
    *,
    sort: str = "cost",
    reverse: bool = False,
    pin: Sequence[str] = (),
    limit: int = MAX_ROWS,
) -> DashboardState:
    """``state`` with at most ``limit`` agents in table order, plus the ``pin``-ned ones (an
    agent screen open) and up to ``limit`` waiting for a human (the title bar counts them);
    :func:`agents_total` still gives the full count. Unchanged when it has few agents."""
    agents = state.agents
    if len(agents) <= limit:
        return state
    keep = first_agents(agents, sort, reverse, limit)
    ids = {a.id for a in keep}
    extra = [a for a in agents if a.id not in ids and (a.id in pin or a.status == "waiting_human")]
    trimmed = (*keep, *extra[:limit])
    return dataclasses.replace(state, agents=trimmed, agents_total=len(agents))
