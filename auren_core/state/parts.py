"""Mutable accumulators behind the reducer (internal): per agent, per run, per section."""

from __future__ import annotations

from typing import Any

from .. import rules
from ..events import Event, Hypothesis
from .window import BUCKET_S, Expiry, KeyedCounts, LogHistogram, NestedCounts, Sums

__all__ = [
    "TIER_IDX",
    "AgentAcc",
    "G",
    "HypRec",
    "RunAcc",
    "Sections",
    "T",
    "add_minute",
    "tier_index",
]

SPARK_MINUTES = 60
_MAX_AGENT_HYPS = 20


class G:
    """Indices of the global sums vector."""

    EV, LLM, IN, OUT, CACHED, COST, LLM_COST, UNP, UNP_IN, UNP_OUT = range(10)
    LLM_ERR, TOOL, TOOL_ERR, TOOL_COST, REASON, MEM_COST = range(10, 16)
    EMB_COST = 16  # the embedding part of MEM_COST ([tier_costs] embedding_model)
    N = 17


class T:
    """Indices of the tier sums vector: four globals, then ``PER`` slots per tier.
    ``COST_SEEN``: loads whose event carried a price; ``MODELLED``: loads priced by the
    configured ``[tier_costs]``."""

    QUERIES, MISSES, COST_SEEN, MODELLED = 0, 1, 2, 3
    BASE = 4
    TRIED, HITS, ERRS, LAT_SUM, LAT_N, COST = range(6)
    PER = 6
    N = BASE + 3 * PER


# the one tier table (auren_core.rules), re-exported for the reducer's modules
TIER_IDX = rules.TIER_ALIASES
tier_index = rules.tier_index


_B_PER_MIN = 60 / BUCKET_S


def add_minute(spark: dict[int, float], b: int, cost: float) -> int:
    """Add to the per-minute series (by bucket, so clamped future events stay bounded)."""
    m = int(b // _B_PER_MIN)
    spark[m] = spark.get(m, 0.0) + cost
    if len(spark) > SPARK_MINUTES + 10:
        newest = max(spark)
        for k in [k for k in spark if k <= newest - SPARK_MINUTES]:
            del spark[k]
    return m


class AgentAcc:
    """Windowed economics of one agent (identity and load live in the registry)."""

    IN, OUT, CACHED, COST, UNP, LLM, TOOL, TOOL_COST, REASON = range(9)
    __slots__ = (
        "cache",
        "hyps",
        "last_id",
        "partners",
        "spark",
        "spark_low",
        "spark_ver",
        "sums",
        "tools",
        "version",
    )

    def __init__(self, expiry: Expiry) -> None:
        self.sums = Sums(9, expiry)
        self.tools: KeyedCounts[str] = KeyedCounts(expiry, max_keys=200)
        self.partners: KeyedCounts[str] = KeyedCounts(expiry, max_keys=200)
        self.spark: dict[int, float] = {}
        self.spark_ver = 0  # bumped on every change of ``spark``
        self.spark_low = 2**62  # the oldest minute changed since the last snapshot
        self.hyps: list[str] = []
        self.version = 0
        # the id of its newest event: its prefix names the process that published it
        # (auren_core.events.new_event_id), whose publisher_stats give RSS and CPU
        self.last_id = ""
        # derived tuples for the snapshot, keyed by what they depend on
        self.cache: dict[str, tuple[Any, Any]] = {}

    def llm(
        self, b: int, inp: int, out: int, cached: int, cost: float | None, reason: int = 0
    ) -> None:
        s = self.sums
        for vec in (s.at(b), s.tot):
            vec[0] += inp
            vec[1] += out
            vec[2] += cached
            vec[5] += 1
            vec[8] += reason
            if cost is None:
                vec[4] += 1
            else:
                vec[3] += cost
        if cost:
            self._spark(b, cost)

    def tool(self, b: int, tool: str, cost: float) -> None:
        s = self.sums
        for vec in (s.at(b), s.tot):
            vec[6] += 1
            vec[3] += cost
            vec[7] += cost
        self.tools.add(b, tool)
        if cost:
            self._spark(b, cost)

    def memory(self, b: int, cost: float) -> None:
        """A memory load's tier costs (part of the agent's cost, like tools)."""
        s = self.sums
        for vec in (s.at(b), s.tot):
            vec[3] += cost
        if cost:
            self._spark(b, cost)

    def _spark(self, b: int, cost: float) -> None:
        m = add_minute(self.spark, b, cost)
        self.spark_ver += 1
        if m < self.spark_low:
            self.spark_low = m

    def add_hypothesis(self, hid: str) -> None:
        hyps = self.hyps
        if hid in hyps:
            return
        hyps.append(hid)
        if len(hyps) > _MAX_AGENT_HYPS:
            del hyps[0]


class RunAcc:
    """One crew kickoff (user query): its cost and outcome."""

    __slots__ = (
        "cost_usd", "ended", "inp", "llm_calls", "out", "query", "run", "started", "status", "unp",
    )  # fmt: skip

    def __init__(self, run: str, started: float) -> None:
        self.run = run
        self.started = started
        self.ended: float | None = None
        self.status = "running"
        self.cost_usd = 0.0
        self.llm_calls = 0
        self.inp = 0
        self.out = 0
        self.unp = 0
        # the user's question (rules.query_label): crew_started's query / inputs, else the
        # first task's description; "" until one is seen
        self.query = ""

    def llm(self, inp: int, out: int, cost: float | None) -> None:
        self.llm_calls += 1
        self.inp += inp
        self.out += out
        if cost is None:
            self.unp += 1
        else:
            self.cost_usd += cost


class HypRec:
    """Latest status of one hypothesis, by event time (late updates do not win)."""

    __slots__ = ("agent", "confidence", "id", "run", "statement", "status", "ts", "updates", "view")

    def __init__(self, hid: str) -> None:
        self.id = hid
        self.status = "?"
        self.agent: str | None = None
        self.ts = float("-inf")
        self.confidence: float | None = None
        self.statement: str | None = None
        self.run: str | None = None
        self.updates = 0
        self.view: tuple[tuple[float, int], Any] | None = None  # snapshot cache

    def update(self, ev: Event, p: Hypothesis) -> None:
        self.updates += 1
        if ev.ts < self.ts:
            return
        self.ts = ev.ts
        self.status = (p.status or "?")[:40]
        self.agent = ev.agent
        self.run = ev.run
        conf = p.confidence
        if conf is not None:
            self.confidence = conf
        st = p.statement
        if st is not None:
            self.statement = st[:2000]


class Sections:
    """The global windowed aggregates."""

    def __init__(self) -> None:
        self.expiry = e = Expiry()
        self.g = Sums(G.N, e)
        self.tiers = Sums(T.N, e)
        self.hist = tuple(LogHistogram(e) for _ in range(3))
        # knowledge gaps (rules.gap_key), per source: memory lookups, knowledge_access
        self.tier_gaps: KeyedCounts[str] = KeyedCounts(e, max_keys=2000)
        self.tier_gap_meta: dict[str, tuple[float, set[str]]] = {}
        self.know_gap_meta: dict[str, tuple[float, set[str]]] = {}
        self.collab: KeyedCounts[tuple[str, str, str]] = KeyedCounts(e, max_keys=5000)
        self.know = NestedCounts(e, max_rows=5000, max_cols=500)
        self.know_gaps: KeyedCounts[str] = KeyedCounts(e, max_keys=2000)
        self.know_hits = Sums(2, e)  # accesses, hits
        self.spark: dict[int, float] = {}
        self.version = 0

    def invalidate(self) -> None:
        self.version += 1

    def add_spark(self, b: int, cost: float) -> None:
        add_minute(self.spark, b, cost)

    @staticmethod
    def _gap_seen(
        meta_of: dict[str, tuple[float, set[str]]],
        kc: KeyedCounts[str],
        key: str,
        ts: float,
        agent: str | None,
    ) -> None:
        """Latest time and (up to 20) agents of a gap; forgotten keys are pruned now and then."""
        meta = meta_of.get(key)
        if meta is None:
            if len(meta_of) > 4 * kc.max_keys:
                live = kc.tot.keys()
                for k in [k for k in meta_of if k not in live]:
                    del meta_of[k]
            meta = meta_of[key] = (ts, set())
        elif ts > meta[0]:
            meta = meta_of[key] = (ts, meta[1])
        if agent and len(meta[1]) < 20:
            meta[1].add(agent)

    def tier_event(
        self,
        b: int,
        ts: float,
        acc: rules.TierAccess,
        gap: str | None,
        agent: str | None,
        modelled: bool = False,
    ) -> None:
        """One load (``acc`` from :func:`auren_core.rules.tier_access`); ``gap``: its gap key
        when no tier served it; ``modelled``: its costs come from ``[tier_costs]``."""
        served, lats, err_tiers, costs = acc
        tiers = self.tiers
        tried = {i for i, _ in lats}
        if served >= 0:
            tried.add(served)
        base, per = T.BASE, T.PER
        for vec in (tiers.at(b), tiers.tot):
            vec[T.QUERIES] += 1
            if served < 0:
                vec[T.MISSES] += 1
            else:
                vec[base + served * per + T.HITS] += 1
            for i in tried:
                vec[base + i * per + T.TRIED] += 1
            for i, ms in lats:
                vec[base + i * per + T.LAT_SUM] += ms
                vec[base + i * per + T.LAT_N] += 1
            for i in err_tiers:
                vec[base + i * per + T.ERRS] += 1
            if costs is not None:
                vec[T.MODELLED if modelled else T.COST_SEEN] += 1
                for i, c in costs:
                    vec[base + i * per + T.COST] += c
        for i, ms in lats:
            self.hist[i].add(b, ms)
        if gap is not None and self.tier_gaps.add(b, gap):
            self._gap_seen(self.tier_gap_meta, self.tier_gaps, gap, ts, agent)

    def knowledge_event(self, b: int, ts: float, item: str, agent: str, gap: str | None) -> None:
        """One ``knowledge_access``: a hit of ``item``, or (``gap`` set) a gap."""
        for vec in (self.know_hits.at(b), self.know_hits.tot):
            vec[0] += 1
            if gap is None:
                vec[1] += 1
        if gap is None:
            self.know.add(b, item, agent)
        elif self.know_gaps.add(b, gap):
            self._gap_seen(self.know_gap_meta, self.know_gaps, gap, ts, agent)
