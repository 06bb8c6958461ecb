"""Per-type event handlers of the reducer (internal mixin of :class:`~auren_core.state.Reducer`).

Every figure is counted by :mod:`auren_core.rules` (token coercion, costs, tier names,
knowledge gaps), the module the exports use too. Payloads are untrusted: ``decode``
validated the ones read from the stream, but in-process callers can hand anything over.
Hot values take an inlined fast path for the validated shape that gives exactly what the
rule gives (``type(v) is int and 0 <= v <= MAX_TOKENS``: ``rules.tokens(v) == v``), else
the rule itself; a handler that still fails is counted by the reducer as a bad payload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import rules
from ..events import (
    Collaboration,
    CrewCompleted,
    CrewStarted,
    Event,
    Hypothesis,
    KnowledgeAccess,
    MemoryTierAccess,
    PublisherStats,
    TaskStarted,
    ToolUsed,
)
from ..rules import tool_cost
from .flows import FlowRec, joins_flow
from .parts import AgentAcc, G, HypRec, RunAcc

if TYPE_CHECKING:
    from .parts import Sections
    from .registry import AgentRegistry
    from .window import Expiry, Sums

__all__ = ["MAX_NAME", "Handlers"]

MAX_NAME = rules.MAX_NAME
_MAX_PUBLISHERS = 1000
_MAX_RUNS = 500
_MAX_HYPOTHESES = 2000
_MAX_FLOWS = 500
# indices into the global sums vector, as module constants (hot path)
_LLM, _IN, _OUT, _CACHED, _COST, _LLM_COST = G.LLM, G.IN, G.OUT, G.CACHED, G.COST, G.LLM_COST
_UNP, _UNP_IN, _UNP_OUT, _LLM_ERR = G.UNP, G.UNP_IN, G.UNP_OUT, G.LLM_ERR
_TOOL, _TOOL_ERR, _TOOL_COST = G.TOOL, G.TOOL_ERR, G.TOOL_COST
_REASON, _MEM_COST, _EMB_COST = G.REASON, G.MEM_COST, G.EMB_COST
_tier_access, _gap_key, _name = rules.tier_access, rules.gap_key, rules.name
_modelled_costs = rules.modelled_tier_costs


def _num(v: Any) -> float:
    """A finite non-negative number from an untrusted payload value (else 0)."""
    if v is None or isinstance(v, bool):
        return 0.0
    if isinstance(v, int | float):
        f = float(v)
        return f if 0.0 <= f < 1e18 else 0.0
    return 0.0


Handler = Callable[[Event, int, "AgentAcc | None"], None]


class Handlers:
    """The ``_on_<type>`` methods; state lives on the reducer."""

    # provided by Reducer.__init__
    s: Sections
    _exp: Expiry
    _g: Sums
    _accs: dict[str, AgentAcc]
    _runs: dict[str, RunAcc]
    _hyps: dict[str, HypRec]
    _flows: dict[str, FlowRec]
    _flow_of: dict[str, FlowRec]
    tool_costs: dict[str, float]
    tier_model: rules.TierCostModel
    publishers: dict[str, tuple[float, int]]
    processes: dict[str, tuple[str, float, int | None, float | None]]
    registry: AgentRegistry
    storage: rules.TierStorage

    def handlers(self) -> dict[str, Handler]:
        return {
            "llm_call": self._on_llm,
            "tool_used": self._on_tool,
            "collaboration": self._on_collab,
            "memory_tier_access": self._on_tier,
            "memory_tier_storage": self._on_storage,
            "knowledge_access": self._on_knowledge,
            "hypothesis": self._on_hypothesis,
            "publisher_stats": self._on_pubstats,
            "crew_started": self._on_crew,
            "crew_completed": self._on_crew,
            "task_started": self._on_task_started,
            "flow_started": self._on_flow,
            "flow_step": self._on_flow,
            "flow_completed": self._on_flow,
            "flow_failed": self._on_flow,
            "human_input": self._on_flow,
        }

    def _on_pubstats(self, ev: Event, b: int, acc: AgentAcc | None) -> None:
        """Dropped counts per publisher; the process's RSS and CPU seconds (``processes``,
        keyed by :func:`process_of` of the event's id: the agents whose events share it
        were published by that process)."""
        p: PublisherStats = ev.payload
        ident = p.publisher
        key = str(ident)[:MAX_NAME] if ident else f"(agent {ev.agent})"
        dropped = int(_num(p.dropped))
        cur = self.publishers.get(key)
        if cur is None:
            if len(self.publishers) >= _MAX_PUBLISHERS:
                return
            self.publishers[key] = (ev.ts, dropped)
        elif ev.ts >= cur[0]:
            self.publishers[key] = (ev.ts, dropped)
        rss, cpu = p.rss_bytes, p.cpu_seconds
        if rss is None and cpu is None:
            return
        proc = process_of(ev.id)
        old = self.processes.get(proc)
        if old is None and len(self.processes) >= _MAX_PUBLISHERS:
            return
        if old is None or ev.ts >= old[1]:
            self.processes[proc] = (
                key,
                ev.ts,
                int(rss) if type(rss) is int and rss >= 0 else None,
                float(cpu) if isinstance(cpu, int | float) and cpu >= 0 else None,
            )

    # ------------------------------------------------------------------ economics
    def _on_llm(self, ev: Event, b: int, acc: AgentAcc | None) -> None:
        # the counted figures as every output counts them (rules.llm_call: its typed fast path)
        inp, out, cached, reason, cost, err = rules.llm_call(ev.payload)
        g = self._g
        for vec in (g.at(b), g.tot):
            vec[_LLM] += 1
            vec[_IN] += inp
            vec[_OUT] += out
            vec[_CACHED] += cached
            vec[_REASON] += reason
            if cost is None:
                vec[_UNP] += 1
                vec[_UNP_IN] += inp
                vec[_UNP_OUT] += out
            else:
                vec[_COST] += cost
                vec[_LLM_COST] += cost
            if err:
                vec[_LLM_ERR] += 1
        if cost:
            self.s.add_spark(b, cost)
        if acc is not None:
            acc.llm(b, inp, out, cached, cost, reason)
        run = self._runs.get(ev.run) if ev.run else None
        if run is not None:
            run.llm(inp, out, cost)

    def _on_tool(self, ev: Event, b: int, acc: AgentAcc | None) -> None:
        p: ToolUsed = ev.payload
        tool = rules.name(p.tool)
        cost = tool_cost(p.cost_usd, tool, self.tool_costs)
        err = p.ok is False
        g = self._g
        for vec in (g.at(b), g.tot):
            vec[_TOOL] += 1
            vec[_COST] += cost
            vec[_TOOL_COST] += cost
            if err:
                vec[_TOOL_ERR] += 1
        if cost:
            self.s.add_spark(b, cost)
        if acc is not None:
            acc.tool(b, tool, cost)
        run = self._runs.get(ev.run) if ev.run else None
        if run is not None:
            run.cost_usd += cost

    def _new_run(self, rid: str, ts: float) -> None:
        if len(self._runs) >= _MAX_RUNS:
            del self._runs[next(iter(self._runs))]
        self._runs[rid] = RunAcc(rid[:MAX_NAME], ts)

    def _on_crew(self, ev: Event, b: int, acc: AgentAcc | None) -> None:
        run = self._runs.get(ev.run) if ev.run else None
        if run is None:
            return
        if ev.type == "crew_started":
            run.started = min(run.started, ev.ts)
            p: CrewStarted = ev.payload
            q = p.query
            label = rules.query_label({"query": q} if isinstance(q, str) else p.inputs)
            if label:
                run.query = label  # the crew's own word beats a task description
            parent = p.flow_run
            if parent and ev.run and len(ev.run) <= MAX_NAME:
                fr = self._flows.get(parent)
                if fr is not None and fr.add_crew(ev.run):  # a crew kicked off inside a flow
                    self._flow_of.setdefault(ev.run, fr)
        else:
            run.ended = ev.ts
            ended: CrewCompleted = ev.payload
            run.status = "completed" if ended.ok is not False else "failed"

    def _on_task_started(self, ev: Event, b: int, acc: AgentAcc | None) -> None:
        """A crew without inputs: its first task's description is the question."""
        run = self._runs.get(ev.run) if ev.run else None
        if run is not None and not run.query:
            p: TaskStarted = ev.payload
            run.query = rules.query_label(None, p.description)

    # ------------------------------------------------------------------ flows
    def _on_flow(self, ev: Event, b: int, acc: AgentAcc | None) -> None:
        """``flow_*`` and ``human_input`` events: a flow is its run id (which events join it:
        :func:`~auren_core.state.flows.joins_flow`; an agent's own wait is the registry's)."""
        rid = ev.run
        fr = self._flows.get(rid) if rid else None
        if not joins_flow(ev, fr is not None) or not rid:
            return
        t = ev.type
        if fr is None:
            fr = self._new_flow(rid, ev.ts)
        fr.apply(ev)
        if t == "flow_completed" or t == "flow_failed":
            run = self._runs.get(rid)
            if run is not None and fr.ended is not None:
                run.ended = fr.ended
                run.status = "failed" if fr.failed else "completed"

    def _new_flow(self, rid: str, ts: float) -> FlowRec:
        flows = self._flows
        if len(flows) >= _MAX_FLOWS:
            self._evict_flows()
        fr = flows[rid] = FlowRec(rid[:MAX_NAME], ts)
        self._flow_of[rid] = fr
        return fr

    def _evict_flows(self) -> None:
        """Forget a tenth of the flows, finished ones first, oldest first (amortised O(1))."""
        flows = self._flows
        n = max(1, len(flows) // 10)
        gone = [k for k, f in flows.items() if f.ended is not None][:n]
        if len(gone) < n:
            chosen = set(gone)
            gone += [k for k in flows if k not in chosen][: n - len(gone)]
        of = self._flow_of
        for k in gone:
            f = flows.pop(k)
            of.pop(k, None)
            for crew in f.crews:
                if of.get(crew) is f:
                    del of[crew]

    # ------------------------------------------------------------------ collaboration
    def _on_collab(self, ev: Event, b: int, acc: AgentAcc | None) -> None:
        p: Collaboration = ev.payload
        src = ev.agent or "?"
        dst = _name(p.to_agent)
        kind = _name(p.kind, 40)
        self.s.collab.add(b, (src, dst, kind))
        if acc is not None:
            acc.partners.add(b, dst)
        if dst != src:
            other = self._accs.get(dst)
            if other is None:  # not seen yet: keep its side of the pair for when it shows up
                other = self._accs[dst] = AgentAcc(self._exp)
                self._prune_accs()
            other.partners.add(b, src)
            other.version += 1

    # ------------------------------------------------------------------ memory tiers
    def _on_tier(self, ev: Event, b: int, acc: AgentAcc | None) -> None:
        p: MemoryTierAccess = ev.payload
        ta = _tier_access(p)
        gap = _gap_key("memory_tier_access", p) if ta[0] < 0 else None
        emb = 0.0
        modelled = None
        if ta[3] is None and self.tier_model.active:  # no price on the event: [tier_costs]
            modelled = _modelled_costs(ta, p, self.tier_model)
            if modelled is not None:
                ta = ta._replace(costs=modelled[0])
                emb = modelled[1]
        self.s.tier_event(b, ev.ts, ta, gap, ev.agent, modelled is not None)
        costs = ta[3]
        if costs:
            cost = 0.0
            for _, c in costs:
                cost += c
            g = self._g
            for vec in (g.at(b), g.tot):
                vec[_COST] += cost
                vec[_MEM_COST] += cost
                vec[_EMB_COST] += emb
            if cost:
                self.s.add_spark(b, cost)
            if acc is not None:
                acc.memory(b, cost)
            run = self._runs.get(ev.run) if ev.run else None
            if run is not None:
                run.cost_usd += cost

    def _on_storage(self, ev: Event, b: int, acc: AgentAcc | None) -> None:
        """The latest known size of each tier's store (:class:`rules.TierStorage`)."""
        self.storage.observe(ev.payload)

    def _on_knowledge(self, ev: Event, b: int, acc: AgentAcc | None) -> None:
        p: KnowledgeAccess = ev.payload
        if p.hit is False:
            gap: str | None = _gap_key("knowledge_access", p)
            item = ""
        else:
            gap = None
            v = p.item  # rules.name, with a fast path
            item = v if v and len(v) <= MAX_NAME else _name(v)
        self.s.knowledge_event(b, ev.ts, item, ev.agent or "?", gap)

    # ------------------------------------------------------------------ hypotheses
    def _on_hypothesis(self, ev: Event, b: int, acc: AgentAcc | None) -> None:
        p: Hypothesis = ev.payload
        hid = (p.hypothesis_id or "?")[:MAX_NAME]
        # re-inserted on every update: the dict stays in update order (newest last)
        cur = self._hyps.pop(hid, None)
        if cur is None:
            if len(self._hyps) >= _MAX_HYPOTHESES:
                del self._hyps[next(iter(self._hyps))]
            cur = HypRec(hid)
        self._hyps[hid] = cur
        cur.update(ev, p)
        if acc is not None:
            acc.add_hypothesis(hid)

    # ------------------------------------------------------------------ bounds
    def _prune_accs(self) -> None:
        if len(self._accs) > self.registry.max_agents + 100:
            for aid in [a for a in self._accs if a not in self.registry]:
                del self._accs[aid]


def process_of(event_id: str) -> str:
    """The publishing process of an event: its id's per-process prefix
    (:func:`auren_core.events.new_event_id` ids are ``<prefix>-<counter>``)."""
    return event_id.rpartition("-")[0] or event_id
