"""Server counters and the business metrics, exposed through ``prometheus-client``.

The server's own counters are plain integers bumped on the event loop (one thread), so no
locks; ``events_per_s`` is a rate over a sliding window of per-second buckets. The business
metrics (:class:`BusinessMetrics`: tokens, cost, LLM and tool calls, memory tiers) count
the events read *live* by :mod:`auren_core.rules` (the startup backfill is not counted, so
a restart does not count the window twice); the gauges (active agents, publisher drops,
lag) are read from the reducer at scrape time. Label values are bounded: the first
``max_agents`` agents (and ``max_models`` models, ``max_tools`` tools) seen get their own
label value, every later one is ``other`` - a series never changes meaning once created.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .. import rules
from ..events import Event, Malformed

__all__ = ["CONTENT_TYPE", "BusinessMetrics", "Metrics", "RateWindow"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER = "other"
# tier latency buckets, seconds: 0.1 ms to 10 s
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
LLM_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _Bounded:
    """Label values for one label: the first ``limit`` distinct ones, then ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.known: set[str] = set()

    def __call__(self, v: Any) -> str:
        name = rules.name(v, 100)
        if name in self.known:
            return name
        if len(self.known) < self.limit and name != OTHER:
            self.known.add(name)
            return name
        return OTHER


class BusinessMetrics:
    """Counters and histograms of what the agents do, fed with the events read live."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        tool_costs: Mapping[str, float] | None = None,
        tier_model: rules.TierCostModel = rules.NO_TIER_COSTS,
        max_agents: int = 20,
        max_models: int = 20,
        max_tools: int = 30,
    ) -> None:
        self.tool_prices = rules.tool_prices(tool_costs)
        self.tier_model = tier_model
        self.agent = _Bounded(max_agents)
        self.model = _Bounded(max_models)
        self.tool = _Bounded(max_tools)
        r = registry
        am = ("agent", "model")
        self.tokens = Counter(
            "auren_llm_tokens", "LLM tokens (kind: input, output, cached)",
            ("agent", "model", "kind"), registry=r,
        )  # fmt: skip
        self.llm_cost = Counter("auren_llm_cost_usd", "USD of priced LLM calls", am, registry=r)
        self.llm_calls = Counter("auren_llm_calls", "LLM calls", am, registry=r)
        self.llm_errors = Counter("auren_llm_errors", "LLM calls that failed", am, registry=r)
        self.llm_unpriced = Counter(
            "auren_llm_unpriced_calls", "LLM calls without a known price", am, registry=r
        )
        self.llm_latency = Histogram(
            "auren_llm_latency_seconds", "LLM call latency", am,
            buckets=LLM_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.tool_calls = Counter("auren_tool_calls", "tool calls", ("agent", "tool"), registry=r)
        self.tool_errors = Counter(
            "auren_tool_errors", "tool calls that failed", ("agent", "tool"), registry=r
        )
        self.tool_cost = Counter(
            "auren_tool_cost_usd", "USD of tool calls ([tool_costs] applied)", ("agent",),
            registry=r,
        )  # fmt: skip
        self.loads = Counter(
            "auren_memory_loads", "memory loads (outcome: hit, miss)", ("outcome",), registry=r
        )
        self.tier_lookups = Counter(
            "auren_tier_lookups", "loads that reached the tier", ("tier",), registry=r
        )
        self.tier_hits = Counter("auren_tier_hits", "loads the tier served", ("tier",), registry=r)
        self.tier_errors = Counter(
            "auren_tier_errors", "tier errors reported by loads", ("tier",), registry=r
        )
        self.tier_cost = Counter(
            "auren_tier_cost_usd", "USD of memory loads charged to the tier", ("tier",),
            registry=r,
        )  # fmt: skip
        self.tier_latency = Histogram(
            "auren_tier_latency_seconds", "latency reported per tier (latency_by_tier)",
            ("tier",), buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.collaborations = Counter(
            "auren_collaborations", "delegations, questions and hand-offs", ("kind",),
            registry=r,
        )  # fmt: skip
        self.hypotheses = Counter(
            "auren_hypotheses", "hypothesis events by status", ("status",), registry=r
        )
        for t in rules.TIERS:  # every tier series exists from the start (rate() over 0)
            for c in (self.tier_lookups, self.tier_hits, self.tier_errors, self.tier_cost):
                c.labels(tier=t)
            self.tier_latency.labels(tier=t)
        for o in ("hit", "miss"):
            self.loads.labels(outcome=o)

    def observe(self, items: Iterable[Event | Malformed]) -> None:
        for ev in items:
            if not isinstance(ev, Event):
                continue
            t = ev.type
            if t == "llm_call":
                self._llm(ev)
            elif t == "tool_used":
                p = ev.payload
                agent, tool = self.agent(ev.agent), self.tool(p.get("tool"))
                self.tool_calls.labels(agent, tool).inc()
                if p.get("ok", True) is False:
                    self.tool_errors.labels(agent, tool).inc()
                cost = rules.tool_cost(
                    p.get("cost_usd"), rules.name(p.get("tool")), self.tool_prices
                )
                if cost:
                    self.tool_cost.labels(agent).inc(cost)
            elif t == "memory_tier_access":
                self._load(ev.payload)
            elif t == "collaboration":
                kind = ev.payload.get("kind")
                self.collaborations.labels(
                    kind if kind in ("delegate", "ask", "a2a") else OTHER
                ).inc()
            elif t == "hypothesis":
                st = ev.payload.get("status")
                self.hypotheses.labels(st if st in rules.HYPOTHESIS_STATUSES else OTHER).inc()

    def _llm(self, ev: Event) -> None:
        p = ev.payload
        c = rules.llm_call(p)
        labels = (self.agent(ev.agent), self.model(p.get("model")))
        self.llm_calls.labels(*labels).inc()
        for kind, n in (("input", c.input_tokens), ("output", c.output_tokens),
                        ("cached", c.cached_tokens)):  # fmt: skip
            if n:
                self.tokens.labels(*labels, kind).inc(n)
        if c.failed:
            self.llm_errors.labels(*labels).inc()
        if c.cost is None:
            self.llm_unpriced.labels(*labels).inc()
        elif c.cost:
            self.llm_cost.labels(*labels).inc(c.cost)
        lat = p.get("latency_ms")
        if isinstance(lat, int | float) and not isinstance(lat, bool) and 0 <= lat < 1e9:
            self.llm_latency.labels(*labels).observe(lat / 1000.0)

    def _load(self, p: dict[str, Any]) -> None:
        acc = rules.tier_access(p)
        if acc.costs is None and self.tier_model.active:
            modelled = rules.modelled_tier_costs(acc, p, self.tier_model)
            if modelled is not None:
                acc = acc._replace(costs=modelled[0])
        served, lats, errors, costs = acc
        tried = {i for i, _ in lats}
        if served >= 0:
            tried.add(served)
            self.tier_hits.labels(rules.TIERS[served]).inc()
        self.loads.labels("hit" if served >= 0 else "miss").inc()
        for i in tried:
            self.tier_lookups.labels(rules.TIERS[i]).inc()
        for i, ms in lats:
            self.tier_latency.labels(rules.TIERS[i]).observe(ms / 1000.0)
        for i in errors:
            self.tier_errors.labels(rules.TIERS[i]).inc()
        for i, c in costs or ():
            if c:
                self.tier_cost.labels(rules.TIERS[i]).inc(c)


class RateWindow:
    """Events per second over the last ``span`` seconds (per-second buckets)."""

    def __init__(self, span: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.span = span
        self.clock = clock
        self._buckets: deque[tuple[int, int]] = deque()
        self._started = clock()

    def add(self, n: int) -> None:
        sec = int(self.clock())
        if self._buckets and self._buckets[-1][0] == sec:
            self._buckets[-1] = (sec, self._buckets[-1][1] + n)
        else:
            self._buckets.append((sec, n))
        self._trim(sec)

    def _trim(self, sec: int) -> None:
        while self._buckets and self._buckets[0][0] <= sec - self.span:
            self._buckets.popleft()

    def rate(self) -> float:
        now = self.clock()
        self._trim(int(now))
        elapsed = min(float(self.span), max(now - self._started, 1e-9))
        return sum(n for _, n in self._buckets) / elapsed


@dataclass
class Metrics:
    events_in: int = 0  # stream entries read (including malformed)
    malformed: int = 0
    frames_sent: int = 0  # events frames handed to connections
    deliveries: int = 0  # events delivered (one event to one client = one delivery)
    drops: int = 0  # frames discarded because a client was cut off for being slow
    slow_disconnects: int = 0
    connections_total: int = 0
    rejected_auth: int = 0
    rejected_full: int = 0
    rejected_rate: int = 0
    protocol_errors: int = 0
    lag: int = 0  # entries between the reader and the stream head, when known
    reader_connected: bool = False
    clients: int = 0
    queued_frames: int = 0
    rate: RateWindow = field(default_factory=RateWindow)

    business: BusinessMetrics | None = None
    # reads the reducer at scrape time: (active agents, publisher drops), or None
    state_gauges: Callable[[], tuple[int, int]] | None = None
    _registry: CollectorRegistry | None = None

    def enable_business(
        self,
        *,
        tool_costs: Mapping[str, float] | None = None,
        tier_model: rules.TierCostModel = rules.NO_TIER_COSTS,
        state_gauges: Callable[[], tuple[int, int]] | None = None,
        max_agents: int = 20,
    ) -> None:
        """Count the business metrics from now on (serve-ws calls this once)."""
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.business = BusinessMetrics(
            self.registry(), tool_costs=tool_costs, tier_model=tier_model, max_agents=max_agents
        )
        self.state_gauges = state_gauges

    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(_ServerCollector(self))
        return self._registry

    def observe(self, items: Iterable[Event | Malformed]) -> None:
        """Events read live (not the backfill): into the business metrics."""
        if self.business is not None:
            self.business.observe(items)

    def rows(self) -> list[tuple[str, str, str, float]]:
        """The server's own metrics: (name, counter|gauge, help, value)."""
        return [
            ("auren_ws_events_total", "counter", "stream entries read", self.events_in),
            (
                "auren_ws_events_per_second",
                "gauge",
                "entries read per second (10 s)",
                round(self.rate.rate(), 3),
            ),
            ("auren_ws_malformed_total", "counter", "malformed entries skipped", self.malformed),
            ("auren_ws_clients", "gauge", "subscribed WebSocket clients", self.clients),
            ("auren_ws_connections_total", "counter", "WebSocket connections accepted",
             self.connections_total),
            ("auren_ws_frames_sent_total", "counter", "events frames sent", self.frames_sent),
            ("auren_ws_deliveries_total", "counter", "events delivered to clients",
             self.deliveries),
            ("auren_ws_drops_total", "counter", "frames dropped for slow clients", self.drops),
            ("auren_ws_slow_disconnects_total", "counter", "clients cut off for reading slowly",
             self.slow_disconnects),
            ("auren_ws_rejected_auth_total", "counter", "connections refused: auth",
             self.rejected_auth),
            ("auren_ws_rejected_full_total", "counter", "connections refused: max clients",
             self.rejected_full),
            ("auren_ws_rejected_rate_total", "counter", "connections refused: rate limit",
             self.rejected_rate),
            ("auren_ws_protocol_errors_total", "counter", "connections closed for bad messages",
             self.protocol_errors),
            ("auren_ws_queued_frames", "gauge", "frames waiting in client queues",
             self.queued_frames),
            ("auren_ws_lag_entries", "gauge", "entries behind the stream head", self.lag),
            ("auren_stream_lag_entries", "gauge",
             "stream entries after the position serve-ws has read", self.lag),
            ("auren_ws_reader_connected", "gauge", "1 when the stream reader is connected",
             1 if self.reader_connected else 0),
        ]  # fmt: skip

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4 (prometheus-client)."""
        return generate_latest(self.registry()).decode("utf-8")


class _ServerCollector:
    """The server counters and the reducer's gauges, read at scrape time."""

    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m = self.m
        for name, kind, help_, value in m.rows():
            if kind == "counter":
                yield CounterMetricFamily(name, help_, value=value)
            else:
                yield GaugeMetricFamily(name, help_, value=value)
        if m.state_gauges is not None:
            active, dropped = m.state_gauges()
            yield GaugeMetricFamily(
                "auren_active_agents", "agents active within the active window", value=active
            )
            yield GaugeMetricFamily(
                "auren_publisher_dropped",
                "events the publishers report they dropped (latest report of each)",
                value=dropped,
            )
