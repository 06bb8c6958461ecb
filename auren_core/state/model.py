"""The frozen dashboard state the reducer hands out (widgets, serve-ws and export read it).

Plain frozen dataclasses of tuples, ints, floats and strings: cheap to build
10-20 times a second, safe to share across threads, and :meth:`DashboardState.to_dict`
turns them into the JSON snapshot documented in DESIGN.md (plus extras).
Strings are kept raw; sanitising untrusted text for display is the renderer's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .. import rules
from .summary import LogEntry

__all__ = [
    "TIERS",
    "AgentView",
    "BudgetStatus",
    "CollabEdge",
    "Costs",
    "DashboardState",
    "FlowView",
    "Gap",
    "Health",
    "HypothesisView",
    "Knowledge",
    "LogEntry",
    "RunCost",
    "TierView",
    "Tiers",
    "Totals",
]

TIERS: tuple[str, str, str] = rules.TIERS
BudgetStatus = Literal["ok", "warning", "alert", "unset"]
AgentStatus = Literal["running", "idle", "failed", "waiting_human"]
FlowStatus = Literal["running", "waiting_human", "completed", "failed"]


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over the window, by the rules of :mod:`auren_core.rules`. ``cost_usd`` =
    ``llm_cost_usd`` + ``tool_cost_usd`` + ``memory_cost_usd`` (known prices only);
    ``unpriced_llm_calls`` counts the LLM calls without one (never priced as 0)."""

    events: int = 0
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0  # a part of output_tokens, where the provider reports it
    cost_usd: float = 0.0  # priced LLM calls + tool costs + memory tier costs
    llm_cost_usd: float = 0.0
    unpriced_llm_calls: int = 0
    unpriced_input_tokens: int = 0
    unpriced_output_tokens: int = 0
    llm_errors: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tool_cost_usd: float = 0.0
    memory_cost_usd: float = 0.0
    # the embedding part of memory_cost_usd ([tier_costs] embedding_model), and whether
    # the totals include embedding costs at all (a model is configured and priced)
    embedding_cost_usd: float = 0.0
    includes_embedding_cost: bool = False


@dataclass(frozen=True, slots=True)
class AgentView:
    """One active agent. Identity, load and status come from the registry; tokens,
    ``cost_usd`` (LLM + tools + memory, as in :class:`Totals`) and counts are over the
    window; ``usd_per_hour`` is its cost over the window (or over its lifetime, in 10 s
    steps, if it is younger).
    ``status`` is ``waiting_human`` while a ``human_input`` it requested is unanswered
    (``waiting_since``, ``waiting_message``)."""

    id: str
    role: str
    status: AgentStatus
    last_activity: float
    current_load: int
    capabilities: tuple[str, ...] = ()
    goal: str | None = None
    model: str | None = None
    tools: tuple[str, ...] = ()
    allow_delegation: bool = False
    first_seen: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_llm_calls: int = 0
    usd_per_hour: float = 0.0
    llm_calls: int = 0
    tool_calls: int = 0
    tools_used: tuple[tuple[str, int], ...] = ()
    collaborators: tuple[str, ...] = ()  # in the window, sorted
    hypotheses: tuple[str, ...] = ()
    cost_per_minute: tuple[float, ...] = ()  # oldest first, the last entry is the current minute
    last_error: str | None = None
    reasoning_tokens: int = 0
    waiting_since: float | None = None
    waiting_message: str | None = None


@dataclass(frozen=True, slots=True)
class TierView:
    """One memory tier over the window.

    ``tried`` counts lookups that reached this tier, ``hits`` those it served,
    ``fall_through_rate`` the share of tried lookups passed on to the next tier.
    Percentiles and tier names: :mod:`auren_core.rules` (log histogram, bins ~5% wide)."""

    name: str
    tried: int = 0
    hits: int = 0
    hit_rate: float = 0.0  # hits / tried
    share: float = 0.0  # hits / all queries
    p50_ms: float | None = None
    p95_ms: float | None = None
    mean_ms: float | None = None
    errors: int = 0
    fall_through_rate: float = 0.0
    cost_usd: float = 0.0
    # latest memory_tier_storage sizes (not windowed); None: never reported
    storage_bytes: int | None = None
    storage_usd_per_month: float | None = None  # a monthly rate, not part of cost_usd


@dataclass(frozen=True, slots=True)
class Gap:
    """A knowledge gap (:func:`auren_core.rules.gap_key`): lookups that nothing answered,
    named by what was asked; ``count`` of them in the window."""

    query: str
    count: int
    last_ts: float
    agents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Tiers:
    redis: TierView
    postgresql: TierView
    chromadb: TierView
    queries: int = 0
    misses: int = 0
    miss_rate: float = 0.0
    gaps: tuple[Gap, ...] = ()
    cost_note: str = ""
    priced_loads: int = 0  # loads whose event carried a price
    modelled_loads: int = 0  # loads priced by [tier_costs]
    embedding_cost_usd: float = 0.0
    embedding_model: str | None = None  # configured and known to the price library

    def by_name(self) -> dict[str, TierView]:
        return {"redis": self.redis, "postgresql": self.postgresql, "chromadb": self.chromadb}


@dataclass(frozen=True, slots=True)
class RunCost:
    """Cost of one user query (one crew kickoff, the event ``run``): ``cost_usd`` is
    LLM + tools + memory, as in :class:`Totals`."""

    run: str
    started: float
    ended: float | None
    status: Literal["running", "completed", "failed"]
    cost_usd: float
    llm_calls: int
    input_tokens: int
    output_tokens: int
    unpriced_llm_calls: int = 0
    query: str = ""  # the user's question (rules.query_label; "" when unknown)


@dataclass(frozen=True, slots=True)
class Costs:
    """Token economics over the window.

    ``burn_usd_per_hour`` = priced cost in the window / ``span_s`` (the window, or
    the time since the first event if that is shorter, at least 60 s); projections
    are that rate x 24 h and x 30 days. ``budget_status``: ``warning`` from 80% of
    ``budget_usd_per_hour``, ``alert`` from 100%, ``unset`` without a budget.
    ``cost_per_run_usd`` is the mean cost of the crew runs (user queries) that
    completed inside the window; calls with an unknown price are counted in
    ``unpriced_llm_calls``, never as 0.
    """

    window_cost_usd: float = 0.0
    span_s: float = 0.0  # the time the burn rate is measured over
    burn_usd_per_hour: float = 0.0
    projected_day_usd: float = 0.0
    projected_month_usd: float = 0.0
    budget_usd_per_hour: float | None = None
    budget_used: float | None = None  # burn / budget
    budget_status: BudgetStatus = "unset"
    cost_per_run_usd: float | None = None
    runs: tuple[RunCost, ...] = ()  # newest last
    cost_per_minute: tuple[float, ...] = ()  # all agents, oldest first, last hour
    unpriced_llm_calls: int = 0


@dataclass(frozen=True, slots=True)
class CollabEdge:
    from_agent: str
    to_agent: str
    kind: str
    count: int


@dataclass(frozen=True, slots=True)
class Knowledge:
    """Most-accessed items x agents: ``counts[i][j]`` = hits of ``items[i]`` by ``agents[j]``."""

    items: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    counts: tuple[tuple[int, ...], ...] = ()
    item_totals: tuple[int, ...] = ()
    gaps: tuple[Gap, ...] = ()
    accesses: int = 0
    hit_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class HypothesisView:
    id: str
    status: str
    agent: str | None
    ts: float
    confidence: float | None = None
    statement: str | None = None
    run: str | None = None
    updates: int = 1


@dataclass(frozen=True, slots=True)
class FlowView:
    """One flow execution (the event ``run`` of its ``flow_*`` events); the rules are in
    :mod:`auren_core.state.flows`. ``duration_ms`` runs on while the flow does;
    ``cost_usd``/``llm_calls`` add up the flow's own run and the crews kicked off inside it
    (priced calls; ``unpriced_llm_calls`` counts the others)."""

    run: str
    flow: str | None
    status: FlowStatus
    current_step: str | None
    step_started: float | None
    started: float
    last_activity: float
    ended: float | None = None
    duration_ms: float | None = None
    steps_completed: int = 0
    steps_failed: int = 0
    steps_running: int = 0
    last_step: str | None = None
    waiting_since: float | None = None
    waiting_message: str | None = None
    human_waits: int = 0
    error: str | None = None
    flow_id: str | None = None
    agents: tuple[str, ...] = ()
    crews: tuple[str, ...] = ()
    cost_usd: float = 0.0
    llm_calls: int = 0
    unpriced_llm_calls: int = 0


@dataclass(frozen=True, slots=True)
class Health:
    malformed: int = 0
    malformed_reasons: tuple[str, ...] = ()  # newest last
    unknown_types: int = 0
    unknown_type_names: tuple[tuple[str, int], ...] = ()
    publisher_dropped: int = 0
    publishers: int = 0
    lag: int | None = None
    events_per_s: float = 0.0
    connection: str = "connecting"
    connection_detail: str = ""
    last_id: str | None = None
    events_total: int = 0  # every entry applied since start, malformed included
    out_of_window: int = 0  # events older than the window when they arrived


@dataclass(frozen=True, slots=True)
class ProcessView:
    """One publishing process's resource use, from its newest ``publisher_stats``:
    ``rss_bytes`` (resident memory), ``cpu_seconds`` (user + system since it started),
    ``agents``: the agents whose newest event that process published (per-agent memory
    overhead and CPU are the process's: agents in one process share it)."""

    publisher: str
    ts: float
    rss_bytes: int | None
    cpu_seconds: float | None
    agents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DashboardState:
    generated_at: float
    window_s: float
    active_window_s: float
    totals: Totals
    agents: tuple[AgentView, ...]
    tiers: Tiers
    costs: Costs
    collaboration: tuple[CollabEdge, ...]
    knowledge: Knowledge
    hypotheses: tuple[HypothesisView, ...]
    log: tuple[LogEntry, ...]
    health: Health
    # running and waiting flows first (waiting first of all), then those that ended in the window
    flows: tuple[FlowView, ...] = ()
    # set when ``agents`` holds only some of the active agents (a display trim: the
    # dashboard ships the rows it can show); None: ``agents`` is all of them
    agents_total: int | None = None
    processes: tuple[ProcessView, ...] = ()

    def process_of(self, agent_id: str) -> ProcessView | None:
        """The process that published ``agent_id``'s newest event (None: unknown)."""
        for p in self.processes:
            if agent_id in p.agents:
                return p
        return None

    def agent(self, agent_id: str) -> AgentView | None:
        for a in self.agents:
            if a.id == agent_id:
                return a
        return None

    def to_dict(self) -> dict[str, Any]:
        from .json_shape import state_to_dict

        return state_to_dict(self)

    def flows_to_dict(self) -> list[dict[str, Any]]:
        """The snapshot's ``flows`` list (also ``/api/v2/flows``)."""
        from .json_shape import flow_to_dict

        return [flow_to_dict(f) for f in self.flows]

    def tier_stats(self) -> dict[str, Any]:
        """The ``/api/v2/memory/tier-stats`` body."""
        from .json_shape import tier_stats

        return tier_stats(self)


def _pickle_by_fields(cls: type) -> None:
    """Pickle ``cls`` as ``(cls, field values)``. The default of a slotted dataclass
    (``__getstate__`` calling ``dataclasses.fields`` for every object) made a 120 KB state
    cost 8-15 ms to pickle; this costs 3 ms. ``auren top``'s worker process ships a state
    up to 20 times a second."""
    from dataclasses import fields
    from operator import attrgetter

    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    values: Callable[[Any], tuple[Any, ...]]
    if len(names) == 1:
        one = names[0]

        def values(obj: Any) -> tuple[Any, ...]:  # attrgetter of one name: not a tuple
            return (getattr(obj, one),)

    else:
        values = attrgetter(*names)

    def __reduce__(self: Any) -> tuple[Any, ...]:
        return (cls, values(self))

    cls.__reduce__ = __reduce__  # type: ignore[assignment, method-assign]


for _cls in (
    Totals, AgentView, TierView, Gap, Tiers, RunCost, Costs, CollabEdge, Knowledge,
    HypothesisView, FlowView, Health, ProcessView, DashboardState,
):  # fmt: skip
    _pickle_by_fields(_cls)
