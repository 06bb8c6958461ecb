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
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from .. import rules
from ..events import Collaboration, Event, Hypothesis, LlmCall, Malformed, ToolUsed
from ..events.codec import coerce_payload

__all__ = ["CONTENT_TYPE", "BusinessMetrics", "Metrics", "RateWindow"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OTHER = "other"
# the types observe() counts
_COUNTED = frozenset(
    {
        "llm_call",
        "tool_used",
        "memory_tier_access",
        "memory_tier_storage",
        "collaboration",
        "hypothesis",
    }
)
# tier latency buckets, seconds: 0.1 ms to 10 s
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
LLM_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _Histograms:
    """A labelled histogram counted in plain lists (one ``bisect`` and an increment per
    value, no lock: the event loop is the only writer) and exposed by prometheus-client's
    ``HistogramMetricFamily`` at scrape time."""

    def __init__(self, name: str, help_: str, label: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.label = name, help_, label
        self.bounds = buckets
        self.series: dict[str, list[Any]] = {}  # label -> [counts per bucket + inf, sum]

    def add(self, label: str, values: list[float]) -> None:
        row = self.series.get(label)
        if row is None:
            row = self.series[label] = [[0] * (len(self.bounds) + 1), 0.0]
        counts, bounds = row[0], self.bounds
        for v in values:
            counts[bisect_left(bounds, v)] += 1
        row[1] += sum(values)

    def family(self, labels: Callable[[str], list[str]], names: list[str]) -> Metric:
        fam = HistogramMetricFamily(self.name, self.help, labels=names)
        for label, (counts, total) in sorted(self.series.items()):
            acc, buckets = 0, []
            for b, n in zip((*map(floatToGoString, self.bounds), "+Inf"), counts, strict=True):
                acc += n
                buckets.append((b, acc))
            fam.add_metric(labels(label), buckets, total)
        return fam


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
        storage: Callable[[], rules.TierStorage] | None = None,
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
        # latency histograms: (agent, model) and tier series, exposed by collect()
        self.llm_latency = _Histograms(
            "auren_llm_latency_seconds", "LLM call latency", "agent_model", LLM_LATENCY_BUCKETS
        )
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
        self.tier_latency = _Histograms(
            "auren_tier_latency_seconds",
            "latency reported per tier (latency_by_tier)",
            "tier",
            LATENCY_BUCKETS,
        )
        self._llm_labels: dict[str, tuple[str, str]] = {}
        self.storage = rules.TierStorage()  # fed by observe() when no ``storage`` is given
        self._storage_of = storage
        registry.register(self)
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
            self.tier_latency.add(t, [])
        for o in ("hit", "miss"):
            self.loads.labels(outcome=o)

    def collect(self) -> Iterator[Metric]:
        """The histograms (a prometheus-client collector: the counters are its own)."""
        yield self.llm_latency.family(lambda k: list(self._llm_labels[k]), ["agent", "model"])
        yield self.tier_latency.family(lambda k: [k], ["tier"])
        size = GaugeMetricFamily(
            "auren_tier_storage_bytes",
            "bytes each tier's stores hold (latest memory_tier_storage; absent: never reported)",
            labels=["tier"],
        )
        rate = GaugeMetricFamily(
            "auren_tier_storage_usd_per_month",
            "monthly storage rate of each tier ([tier_costs] <tier>_gb_month x its bytes)",
            labels=["tier"],
        )
        sizes = self.storage if self._storage_of is None else self._storage_of()
        for i, tier in enumerate(rules.TIERS):
            nbytes = sizes.bytes(i)
            usd = rules.storage_usd_per_month(nbytes, self.tier_model.per_gb_month[i])
            if nbytes is not None and usd is not None:
                size.add_metric([tier], float(nbytes))
                rate.add_metric([tier], usd)
        yield size
        yield rate

    def observe(self, items: Iterable[Event | Malformed]) -> None:
        """Count a batch: summed per label set first, then one ``inc`` per series (the
        per-event cost stays a fraction of the reducer's)."""
        llm: dict[tuple[Any, Any], list[float]] = {}  # calls, in, out, cached, err, unp, usd
        llm_lat: dict[tuple[Any, Any], list[float]] = {}
        tools: dict[tuple[Any, str], list[int]] = {}  # calls, errors
        tool_usd: dict[Any, float] = {}
        tiers = [[0, 0, 0, 0.0] for _ in rules.TIERS]  # lookups, hits, errors, usd
        tier_lat: tuple[list[float], list[float], list[float]] = ([], [], [])
        loads = [0, 0]  # hit, miss
        other: dict[tuple[str, str], int] = {}  # (counter, label) for collaborations, hypotheses
        llm_call, tier_access, model = rules.llm_call, rules.tier_access, self.tier_model
        for ev in items:
            if not isinstance(ev, Event):
                continue
            t = ev.type
            if t not in _COUNTED:
                continue
            p = ev.payload
            if type(p) is dict:  # handed over in process: typed once (codec.typed_event)
                p = coerce_payload(t, p)
            if t == "llm_call":
                lc: LlmCall = p
                c = llm_call(lc)
                key = (ev.agent, lc.model)
                row = llm.get(key)
                if row is None:
                    row = llm[key] = [0, 0, 0, 0, 0, 0, 0.0]
                row[0] += 1
                row[1] += c.input_tokens
                row[2] += c.output_tokens
                row[3] += c.cached_tokens
                if c.failed:
                    row[4] += 1
                if c.cost is None:
                    row[5] += 1
                else:
                    row[6] += c.cost
                lat = lc.latency_ms
                if isinstance(lat, int | float) and not isinstance(lat, bool) and 0 <= lat < 1e9:
                    llm_lat.setdefault(key, []).append(lat / 1000.0)
            elif t == "tool_used":
                tu: ToolUsed = p
                name = rules.name(tu.tool)
                tkey = (ev.agent, name)
                trow = tools.get(tkey)
                if trow is None:
                    trow = tools[tkey] = [0, 0]
                trow[0] += 1
                if tu.ok is False:
                    trow[1] += 1
                cost = rules.tool_cost(tu.cost_usd, name, self.tool_prices)
                if cost:
                    tool_usd[ev.agent] = tool_usd.get(ev.agent, 0.0) + cost
            elif t == "memory_tier_access":
                acc = tier_access(p)
                if acc.costs is None and model.active:
                    modelled = rules.modelled_tier_costs(acc, p, model)
                    if modelled is not None:
                        acc = acc._replace(costs=modelled[0])
                served, lats, errors, costs = acc
                tried = {i for i, _ in lats}
                if served >= 0:
                    tried.add(served)
                    tiers[served][1] += 1
                    loads[0] += 1
                else:
                    loads[1] += 1
                for i in tried:
                    tiers[i][0] += 1
                for i, ms in lats:
                    tier_lat[i].append(ms / 1000.0)
                for i in errors:
                    tiers[i][2] += 1
                for i, usd in costs or ():
                    tiers[i][3] += usd
            elif t == "memory_tier_storage":
                self.storage.observe(p)
            elif t == "collaboration":
                co: Collaboration = p
                kind = co.kind
                k = ("collab", kind if kind in ("delegate", "ask", "a2a") else OTHER)
                other[k] = other.get(k, 0) + 1
            elif t == "hypothesis":
                hy: Hypothesis = p
                st = hy.status
                k = ("hyp", st if st in rules.HYPOTHESIS_STATUSES else OTHER)
                other[k] = other.get(k, 0) + 1
        self._flush(llm, llm_lat, tools, tool_usd, tiers, tier_lat, loads, other)

    def _flush(
        self,
        llm: dict[tuple[Any, Any], list[float]],
        llm_lat: dict[tuple[Any, Any], list[float]],
        tools: dict[tuple[Any, str], list[int]],
        tool_usd: dict[Any, float],
        tiers: list[list[Any]],
        tier_lat: tuple[list[float], list[float], list[float]],
        loads: list[int],
        other: dict[tuple[str, str], int],
    ) -> None:
        for (a, m), (calls, inp, out, cached, err, unp, usd) in llm.items():
            labels = (self.agent(a), self.model(m))
            self.llm_calls.labels(*labels).inc(calls)
            for kind, n in (("input", inp), ("output", out), ("cached", cached)):
                if n:
                    self.tokens.labels(*labels, kind).inc(n)
            # every series of a label set exists from its first call, at 0 where nothing
            # happened: a rate or a ratio over it has data (Prometheus' advice on
            # initialising label sets), e.g. errors of a model that never failed
            self.llm_errors.labels(*labels).inc(err)
            self.llm_unpriced.labels(*labels).inc(unp)
            self.llm_cost.labels(*labels).inc(usd)
        for (a, m), values in llm_lat.items():
            agent, model = self.agent(a), self.model(m)
            key = f"{agent}\x00{model}"
            self._llm_labels[key] = (agent, model)
            self.llm_latency.add(key, values)
        for (a, tool), (calls, errors) in tools.items():
            labels2 = (self.agent(a), self.tool(tool))
            self.tool_calls.labels(*labels2).inc(calls)
            self.tool_errors.labels(*labels2).inc(errors)  # 0: the series exists (above)
        for a, usd in tool_usd.items():
            self.tool_cost.labels(self.agent(a)).inc(usd)
        for i, (lookups, hits, errs, usd) in enumerate(tiers):
            name = rules.TIERS[i]
            if lookups:
                self.tier_lookups.labels(name).inc(lookups)
            if hits:
                self.tier_hits.labels(name).inc(hits)
            if errs:
                self.tier_errors.labels(name).inc(errs)
            if usd:
                self.tier_cost.labels(name).inc(usd)
            if tier_lat[i]:
                self.tier_latency.add(name, tier_lat[i])
        if loads[0]:
            self.loads.labels("hit").inc(loads[0])
        if loads[1]:
            self.loads.labels("miss").inc(loads[1])
        for (which, label), n in other.items():
            (self.collaborations if which == "collab" else self.hypotheses).labels(label).inc(n)


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
    bad_messages: int = 0  # closed 4400: malformed, nested, hostile or out-of-order messages
    sessions_expired: int = 0  # closed 4401 "token expired" while open
    sessions_revoked: int = 0  # closed 4401 "revoked" while open
    sessions_renewed: int = 0  # open sessions that authenticated again with a fresh token
    stream_unavailable: int = 0  # closed 1013: Redis unreachable or no pool connection in time
    internal_errors: int = 0  # closed 1011 by an unexpected server error (a bug)
    lag: int = 0  # entries between the reader and the stream head, when known
    reader_connected: bool = False
    clients: int = 0
    queued_frames: int = 0
    # ``auren persist`` maintenance (rollups, retention), from the Redis hash it publishes
    # (:func:`auren_core.store.schema.maintenance_key`); -1 while none was seen
    maintenance_failing: int = -1
    maintenance_failures_total: int = 0
    maintenance_last_run: float = 0.0
    maintenance_last_ok: float = 0.0
    rate: RateWindow = field(default_factory=RateWindow)

    business: BusinessMetrics | None = None
    # reads the reducer at scrape time: (active agents, publisher drops), or None
    state_gauges: Callable[[], tuple[int, int]] | None = None
    # the alert webhook's sender (auren_core.alerts.WebhookSender) when one is configured
    alerts: Any = None
    # reads the reducer at scrape time: (publisher, rss bytes, cpu seconds) of each
    # publishing process that reports them, at most ``max_processes`` (bounded labels)
    process_gauges: Callable[[], list[tuple[str, int | None, float | None]]] | None = None
    max_processes: int = 20
    _registry: CollectorRegistry | None = None

    def enable_business(
        self,
        *,
        tool_costs: Mapping[str, float] | None = None,
        tier_model: rules.TierCostModel = rules.NO_TIER_COSTS,
        state_gauges: Callable[[], tuple[int, int]] | None = None,
        max_agents: int = 20,
        storage: Callable[[], rules.TierStorage] | None = None,
    ) -> None:
        """Count the business metrics from now on (serve-ws calls this once). ``storage``:
        the reducer's tier sizes (backfill included: a gauge is the latest value, not a
        count since start); without it the live events' own."""
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series
        self.business = BusinessMetrics(
            self.registry(), tool_costs=tool_costs, tier_model=tier_model, max_agents=max_agents,
            storage=storage,
        )  # fmt: skip
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
            (
                "auren_ws_slow_disconnects_total",
                "counter",
                "clients cut off for reading slowly",
                self.slow_disconnects,
            ),
            (
                "auren_ws_rejected_auth_total",
                "counter",
                "connections refused: auth",
                self.rejected_auth,
            ),
            (
                "auren_ws_rejected_full_total",
                "counter",
                "connections refused: max clients",
                self.rejected_full,
            ),
            (
                "auren_ws_rejected_rate_total",
                "counter",
                "connections refused: rate limit",
                self.rejected_rate,
            ),
            (
                "auren_ws_protocol_errors_total",
                "counter",
                "connections closed for bad messages",
                self.protocol_errors,
            ),
            (
                "auren_ws_bad_messages_total",
                "counter",
                "connections closed 4400: malformed, nested or hostile messages",
                self.bad_messages,
            ),
            (
                "auren_ws_sessions_expired_total",
                "counter",
                "open sessions closed 4401: token expired",
                self.sessions_expired,
            ),
            (
                "auren_ws_sessions_revoked_total",
                "counter",
                "open sessions closed 4401: token family revoked",
                self.sessions_revoked,
            ),
            (
                "auren_ws_sessions_renewed_total",
                "counter",
                "open sessions renewed with a fresh token",
                self.sessions_renewed,
            ),
            (
                "auren_ws_stream_unavailable_total",
                "counter",
                "connections closed 1013: Redis unavailable or busy",
                self.stream_unavailable,
            ),
            (
                "auren_ws_internal_errors_total",
                "counter",
                "connections closed 1011 by an unexpected server error",
                self.internal_errors,
            ),
            (
                "auren_ws_queued_frames",
                "gauge",
                "frames waiting in client queues",
                self.queued_frames,
            ),
            ("auren_ws_lag_entries", "gauge", "entries behind the stream head", self.lag),
            ("auren_stream_lag_entries", "gauge",
             "stream entries after the position serve-ws has read", self.lag),
            ("auren_ws_reader_connected", "gauge", "1 when the stream reader is connected",
             1 if self.reader_connected else 0),
            ("auren_persist_maintenance_failing", "gauge",
             "auren persist maintenance steps that failed in the latest run (-1: no run seen)",
             self.maintenance_failing),
            ("auren_persist_maintenance_failures_total", "counter",
             "auren persist maintenance steps that failed", self.maintenance_failures_total),
            ("auren_persist_maintenance_last_run_timestamp_seconds", "gauge",
             "unix time of the latest maintenance run (0: none)", self.maintenance_last_run),
            ("auren_persist_maintenance_last_success_timestamp_seconds", "gauge",
             "unix time of the latest maintenance run without a failure (0: none)",
             self.maintenance_last_ok),
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
        if m.alerts is not None:
            for what, help_ in (
                ("sent", "alerts the webhook accepted"),
                ("failed", "alerts given up after every retry (or refused with a 4xx)"),
                ("retries", "webhook requests retried (5xx, 429, network error)"),
                ("dropped", "alerts dropped because the send queue was full"),
            ):
                yield CounterMetricFamily(
                    f"auren_alerts_{what}_total", help_, value=getattr(m.alerts, what)
                )
        if m.process_gauges is not None:
            yield from _process_metrics(m.process_gauges(), m.max_processes)


def _process_metrics(
    procs: list[tuple[str, int | None, float | None]], limit: int
) -> Iterator[Metric]:
    """RSS and CPU of each publishing process (``publisher`` = host:pid:instance), the
    first ``limit`` by name; the rest summed under ``other`` (bounded label values)."""
    rss = GaugeMetricFamily(
        "auren_process_rss_bytes",
        "resident memory of each instrumented process (its latest publisher_stats)",
        labels=["publisher"],
    )
    cpu = CounterMetricFamily(
        "auren_process_cpu_seconds",
        "CPU seconds (user + system) of each instrumented process (latest publisher_stats)",
        labels=["publisher"],
    )
    rest_rss, rest_cpu, rest = 0, 0.0, False
    for i, (pub, r, c) in enumerate(sorted(procs, key=lambda x: x[0])):
        if i >= limit:
            rest = True
            rest_rss += r or 0
            rest_cpu += c or 0.0
            continue
        if r is not None:
            rss.add_metric([pub], r)
        if c is not None:
            cpu.add_metric([pub], c)
    if rest:
        rss.add_metric([OTHER], rest_rss)
        cpu.add_metric([OTHER], rest_cpu)
    yield rss
    yield cpu
