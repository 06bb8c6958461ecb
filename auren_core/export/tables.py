"""One-pass accumulation of the export tables (pure: events in, rows out).

Kept separate from :mod:`auren_core.export` (rendering) so the dashboard or the API can build
the same tables without the CSV machinery. Every figure is counted by :mod:`auren_core.rules`
(token coercion, cost composition with the configured tool prices, tier names, percentiles,
knowledge gaps), as in the reducer behind ``auren top``, so the same events give the same
numbers. The loop is written for speed (a million events in a few seconds): one type dispatch
per event, integer day indices, tuples as keys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from .. import rules
from ..events import EVENT_TYPES, Event, FlowStep, HumanInput, Malformed, MemoryTierAccess
from ..events.codec import coerce_payload, typed_event
from ..rules import MAX_NAME, MAX_USD, TIERS, round_rate, round_usd, tier_index
from ..state import tier_model_of
from ..state.flows import FLOW_TYPES, FlowRec, joins_flow, method_key

__all__ = ["Accumulator", "run_label", "tier_name"]

UTC = dt.UTC
tier_name = rules.tier_name
_tier_access, _bin_of, _gap_key = rules.tier_access, rules.bin_of, rules.gap_key
_LOAD = "memory_tier_access"
_MAX_FLOW_RUNS = 200_000  # flow runs kept by one export (memory bound on hostile input)


def run_label(inputs: Any, description: Any = None) -> str:
    """A short human label for a run: the user's question (:func:`auren_core.rules.query_label`)."""
    return rules.query_label(inputs, description)


def _n(x: Any) -> int:
    """A count that is not a token count (items retrieved): a non-negative int, else 0."""
    return x if type(x) is int and x >= 0 else 0


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _pct(vals: Iterable[float], q: float) -> float | None:
    """The ``q`` percentile of ``vals`` by the one method (:func:`auren_core.rules.percentiles`)."""
    return _ms(rules.percentiles(vals, (q,))[0])


def _div(a: float, b: float) -> float | None:
    return round_rate(a / b) if b else None


class Accumulator:
    """Feed events (any number of times), then read tables."""

    def __init__(
        self,
        wanted: set[str],
        tool_costs: Mapping[str, float] | None = None,
        tier_costs: Mapping[str, Any] | None = None,
    ) -> None:
        self.wanted = wanted
        # the analytics report needs the events themselves (auren_core.export.analytics_report)
        self._analytics_events: list[Event] | None = [] if "analytics" in wanted else None
        self.tier_model = tier_model_of(tier_costs)
        self._want_know = "knowledge" in wanted
        self._want_gaps = "gaps" in wanted
        self.tool_prices = rules.tool_prices(tool_costs)
        # (agent, model, run, day) -> [calls, in, out, cached, cost, unpriced, reasoning, errors]
        self.llm: dict[tuple[str, str, str, int], list[Any]] = {}
        # (tool, agent, run) -> [calls, cost, errors]
        self.tools: dict[tuple[str, str, str], list[Any]] = {}
        # (tier index, agent, run) -> [priced loads, cost]
        self.mem: dict[tuple[int, str, str], list[Any]] = {}
        self.know: dict[tuple[str, str, str], list[Any]] = {}
        # (source, key, agent) -> [count, first ts, last ts]
        self.gaps: dict[tuple[str, str, str], list[Any]] = {}
        # per tier (index as in rules.TIERS): loads that reached it, served, errors, items
        # retrieved, memory cost, latency samples (binned when the table is built)
        self.tried = [0, 0, 0]
        self.hits = [0, 0, 0]
        self.errors = [0, 0, 0]
        self.items = [0, 0, 0]
        self.tier_cost = [0.0, 0.0, 0.0]
        self.lat: list[list[float]] = [[], [], []]
        self.lat_sum = [0.0, 0.0, 0.0]
        self.storage = rules.TierStorage()  # latest memory_tier_storage sizes, as the reducer's
        self.queries = 0
        self.misses = 0
        self.labels: dict[str, str] = {}
        self.collab: dict[tuple[str, str, str], list[Any]] = {}
        self.runs: set[str] = set()
        self.completed: set[str] = set()
        # flows: one FlowRec per flow run (the reducer's definitions), and per run and
        # method [completed, failed, durations ms, waits ms]; waits of the run as a whole
        self.flows: dict[str, FlowRec] = {}
        self.flow_steps: dict[str, dict[str, list[Any]]] = {}
        self.flow_waits: dict[str, list[float]] = {}

    def _tokens(self) -> dict[tuple[str, int], list[Any]]:
        out: dict[tuple[str, int], list[Any]] = {}
        for (agent, _, _, day), r in self.llm.items():
            acc = out.setdefault((agent, day), [0, 0, 0, 0, 0.0, 0, 0, 0])
            for j in range(8):
                acc[j] += r[j]
        return out

    def _costs(self) -> dict[tuple[str, str], list[Any]]:
        """(dimension, key) -> [llm calls, tool calls, input, output, llm cost, tool cost,
        memory cost, unpriced llm calls, priced items]."""
        out: dict[tuple[str, str], list[Any]] = {}

        def row(k: tuple[str, str]) -> list[Any]:
            r = out.get(k)
            if r is None:
                r = out[k] = [0, 0, 0, 0, 0.0, 0.0, 0.0, 0, 0]
            return r

        for (agent, model, run, _), r in self.llm.items():
            for k in (("agent", agent), ("model", model), ("query", run)):
                acc = row(k)
                acc[0] += r[0]
                acc[2] += r[1]
                acc[3] += r[2]
                acc[4] += r[4]
                acc[7] += r[5]
                acc[8] += r[0] - r[5]
        for (tl, agent, run), (calls, cost, _) in self.tools.items():
            for k in (("tool", tl), ("agent", agent), ("query", run)):
                acc = row(k)
                acc[1] += calls
                acc[5] += cost
                acc[8] += calls
        for (ti, agent, run), (loads, cost) in self.mem.items():
            for k in (("tier", TIERS[ti]), ("agent", agent), ("query", run)):
                acc = row(k)
                acc[6] += cost
                acc[8] += loads
        return out

    def feed(self, events: Iterable[Event | Malformed]) -> None:
        if self._analytics_events is not None:
            events = list(events)
            self._analytics_events.extend(e for e in events if isinstance(e, Event))
        want_tok = "tokens" in self.wanted
        want_cost = "costs" in self.wanted
        want_know = "knowledge" in self.wanted
        want_tier = "tiers" in self.wanted
        want_collab = "collaboration" in self.wanted
        want_flows = "flows" in self.wanted
        want_gaps = "gaps" in self.wanted
        prices = self.tool_prices
        llm_call, tool_cost, name, gap_key = (
            rules.llm_call,
            rules.tool_cost,
            rules.name,
            rules.gap_key,
        )
        lo, hi = rules.MIN_TS, rules.MAX_TS
        for ev in events:
            if type(ev) is not Event:
                continue
            if not lo <= ev.ts < hi:  # rules.timestamp_ok: malformed, like every reader's
                continue
            t = ev.type
            p = ev.payload
            if type(p) is dict and t in EVENT_TYPES:  # handed over in process: typed once
                p = coerce_payload(t, p)  # counted as the reducer counts it
            agent = ev.agent or ""
            run = ev.run
            if run is not None and want_collab:
                self.runs.add(run)
            if t == "llm_call":
                if want_tok or want_cost:  # one update per call; tables group it later
                    m = p.model
                    key = (agent, m, run or "", int(ev.ts // 86400))
                    row = self.llm.get(key)
                    if row is None:
                        row = self.llm[key] = [0, 0, 0, 0, 0.0, 0, 0, 0]
                    inp, out_, cached, reasoning, c, failed = llm_call(p)
                    row[0] += 1
                    row[1] += inp
                    row[2] += out_
                    row[3] += cached
                    if c is None:
                        row[5] += 1
                    else:
                        row[4] += c
                    row[6] += reasoning
                    if failed:
                        row[7] += 1
            elif t == "tool_used":
                if want_cost:
                    tl = name(p.tool)
                    key3 = (tl, agent, run or "")
                    trow = self.tools.get(key3)
                    if trow is None:
                        trow = self.tools[key3] = [0, 0.0, 0]
                    trow[0] += 1
                    c = p.cost_usd  # rules.tool_cost, with a fast path
                    trow[1] += (
                        c if c is not None and 0.0 <= c <= MAX_USD else tool_cost(c, tl, prices)
                    )
                    if p.ok is False:
                        trow[2] += 1
            elif t == "memory_tier_access":
                if want_tier or want_cost or want_know or want_gaps:
                    self._load(p, agent, run or "", ev.ts, want_tier, want_cost)
            elif t == "memory_tier_storage":
                if want_tier:
                    self.storage.observe(p)
            elif t == "knowledge_access":
                if want_know or want_gaps:
                    hit = p.hit is not False
                    if want_know:
                        self._know("item", name(p.item), agent, hit, ev.ts)
                    if not hit and want_gaps:
                        self._gap("knowledge", gap_key(t, p), agent, ev.ts)
            elif t == "collaboration":
                if want_collab:
                    src = ev.agent or "?"
                    key3 = (src, name(p.to_agent), name(p.kind, 40))
                    cr = self.collab.get(key3)
                    if cr is None:
                        cr = self.collab[key3] = [0, set()]
                    cr[0] += 1
                    if run is not None:
                        cr[1].add(run)
            elif t == "crew_started":
                if run is not None:
                    q = p.query  # the converter's label (redacted when configured)
                    label = run_label({"query": q} if isinstance(q, str) else p.inputs)
                    if label:  # the crew's own word beats a task description
                        self.labels[run] = label
                    else:
                        self.labels.setdefault(run, "")
            elif t == "task_started":
                if run is not None and not self.labels.get(run):
                    self.labels[run] = run_label(None, p.description)
            elif t == "crew_completed" and run is not None and p.ok is not False:
                self.completed.add(run)
            elif want_flows and (t in FLOW_TYPES or t == "human_input"):
                self._flow(ev)

    def _load(
        self, p: MemoryTierAccess, agent: str, run: str, ts: float, tiers: bool, costs: bool
    ) -> None:
        """One ``memory_tier_access``, counted by :func:`auren_core.rules.tier_access`."""
        acc = _tier_access(p)
        if acc.costs is None and self.tier_model.active:  # no price on the event
            modelled = rules.modelled_tier_costs(acc, p, self.tier_model)
            if modelled is not None:
                acc = acc._replace(costs=modelled[0])
        served, lats, errs, by_tier = acc
        if tiers:
            self.queries += 1
            tried = 0  # bit i: the load reached tier i
            for i, ms in lats:
                tried |= 1 << i
                self.lat[i].append(ms)
                self.lat_sum[i] += ms  # in event order, as the reducer adds them
            if served < 0:
                self.misses += 1
            else:
                tried |= 1 << served
                self.hits[served] += 1
                self.items[served] += _n(p.items_retrieved)
            if tried:
                t = self.tried
                for i in (0, 1, 2):
                    if tried >> i & 1:
                        t[i] += 1
            for i in errs:
                self.errors[i] += 1
        if by_tier:
            for i, c in by_tier:
                if tiers:
                    self.tier_cost[i] += c
                if costs:
                    mrow = self.mem.get((i, agent, run))
                    if mrow is None:
                        mrow = self.mem[(i, agent, run)] = [0, 0.0]
                    mrow[1] += c
            if costs:  # one priced load (counted on its first tier's row)
                self.mem[(by_tier[0][0], agent, run)][0] += 1
        if self._want_know or (served < 0 and self._want_gaps):
            q = p.query  # rules.gap_key, with a fast path
            key = q if q and len(q) <= MAX_NAME else _gap_key(_LOAD, p)
            if self._want_know:
                self._know("query", key, agent, served >= 0, ts)
            if served < 0 and self._want_gaps:
                self._gap("memory", key, agent, ts)

    def _gap(self, source: str, key: str, agent: str, ts: float) -> None:
        row = self.gaps.get((source, key, agent))
        if row is None:
            self.gaps[(source, key, agent)] = [1, ts, ts]
        else:
            row[0] += 1
            row[1] = min(row[1], ts)
            row[2] = max(row[2], ts)

    def _flow(self, ev: Event) -> None:
        run = ev.run
        fr = self.flows.get(run) if run else None
        if run is None or not joins_flow(ev, fr is not None):
            return
        if fr is None:
            if len(self.flows) >= _MAX_FLOW_RUNS:
                return
            fr = self.flows[run] = FlowRec(run, ev.ts)
        ev = typed_event(ev)
        took = fr.apply(ev)
        p = ev.payload
        if isinstance(p, FlowStep):
            phase = p.phase
            if phase not in ("completed", "failed"):
                return
            row = self._step_row(run, method_key(p.method) or "?")
            row[1 if phase == "failed" or p.ok is False else 0] += 1
            if took is not None:
                row[2].append(took)
        elif isinstance(p, HumanInput) and took is not None:
            self.flow_waits.setdefault(run, []).append(took)
            method = method_key(p.method)
            if method:
                self._step_row(run, method)[3].append(took)

    def _step_row(self, run: str, method: str) -> list[Any]:
        steps = self.flow_steps.setdefault(run, {})
        row = steps.get(method)
        if row is None:
            row = steps[method] = [0, 0, [], []]
        return row

    def feed_aggregates(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rollup rows (``agg_daily``, see :mod:`auren_core.store.retention`, whose SQL counts
        by the same rules) for days whose detailed events are gone: they extend tokens, costs
        (without the per-query split: the run is not kept in rollups) and the tiers' served
        counts; the other reports need detail. Tool calls the rollup counts as ``unpriced``
        (no ``cost_usd``) get the configured price here, as detailed events do; a day's
        memory cost goes to the tier that served the loads (a miss's: chromadb)."""
        prices = self.tool_prices
        for r in rows:
            t, agent, key = r["type"], r["agent"], r["key"]
            n = int(r["events"])
            if t == "llm_call":
                k4 = (agent, key, "", int(r["bucket"] // 86400))
                row = self.llm.setdefault(k4, [0, 0, 0, 0, 0.0, 0, 0, 0])
                row[0] += n
                row[1] += int(r["input_tokens"])
                row[2] += int(r["output_tokens"])
                row[3] += int(r["cached_tokens"])
                row[4] += float(r["cost_usd"])
                row[5] += int(r["unpriced"])
                row[7] += int(r["errors"])
            elif t == "tool_used":
                trow = self.tools.setdefault((key, agent, ""), [0, 0.0, 0])
                trow[0] += n
                trow[1] += float(r["cost_usd"]) + int(r["unpriced"]) * prices.get(key, 0.0)
                trow[2] += int(r["errors"])
            elif t == "memory_tier_access":
                i = tier_index(key)
                if i < 0:
                    self.misses += n
                else:
                    self.hits[i] += n
                self.queries += n
                priced = n - int(r["unpriced"])
                if priced > 0:
                    ti = i if i >= 0 else len(TIERS) - 1
                    mrow = self.mem.setdefault((ti, agent, ""), [0, 0.0])
                    mrow[0] += priced
                    mrow[1] += float(r["cost_usd"])
                    self.tier_cost[ti] += float(r["cost_usd"])

    def _know(self, kind: str, item: str, agent: str, hit: bool, ts: float) -> None:
        key = (kind, item, agent)
        row = self.know.get(key)
        if row is None:
            row = self.know[key] = [0, 0, 0, [0] * 24, ts, ts]
        row[0] += 1
        if hit:
            row[1] += 1
        else:
            row[2] += 1
        row[3][int(ts % 86400 // 3600)] += 1
        row[4] = min(row[4], ts)
        row[5] = max(row[5], ts)

    # ------------------------------------------------------------------ tables
    def table(self, name: str) -> list[dict[str, Any]]:
        return getattr(self, f"_t_{name}")()  # type: ignore[no-any-return]

    def _t_analytics(self) -> list[dict[str, Any]]:
        """The analytics as of the newest event exported (so a file is reproducible)."""
        from .analytics_report import analytics_rows

        evs = self._analytics_events or []
        now = max((e.ts for e in evs), default=0.0)
        return analytics_rows(evs, now=now)

    def _t_tokens(self) -> list[dict[str, Any]]:
        """LLM calls per agent and day; ``llm_cost_usd`` is their cost alone (tools and memory
        are in the costs report's ``cost_usd``)."""
        out = []
        tokens = self._tokens()
        for (agent, day), r in sorted(tokens.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            out.append({
                "agent": agent, "day": (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat(),
                "llm_calls": r[0], "input_tokens": r[1], "output_tokens": r[2],
                "cached_tokens": r[3], "reasoning_tokens": r[6], "total_tokens": r[1] + r[2],
                # None: no call was priced (unknown, never 0)
                "llm_cost_usd": round_usd(rules.known_cost(r[4], r[0] - r[5], r[5])),
                "unpriced_calls": r[5], "llm_errors": r[7],
            })  # fmt: skip
        return out

    def _t_knowledge(self) -> list[dict[str, Any]]:
        """Lookups per (kind, item, agent): ``query`` rows are memory loads (by the query
        asked), ``item`` rows ``knowledge_access`` events (by item); ``misses`` are knowledge
        gaps (see the gaps report)."""
        out = []
        for (kind, item, agent), r in sorted(self.know.items(), key=lambda kv: (-kv[1][0], kv[0])):
            hours: list[int] = r[3]
            out.append({
                "kind": kind, "item": item, "agent": agent,
                "accesses": r[0], "hits": r[1], "misses": r[2],
                "peak_hour_utc": hours.index(max(hours)),
                "first_seen": _iso(r[4]), "last_seen": _iso(r[5]),
            })  # fmt: skip
        return out

    def _t_gaps(self) -> list[dict[str, Any]]:
        """Knowledge gaps (:func:`auren_core.rules.gap_key`) per source, what was asked and
        agent: ``count`` lookups nothing answered."""
        out = []
        for (source, key, agent), (n, first, last) in sorted(
            self.gaps.items(), key=lambda kv: (-kv[1][0], kv[0])
        ):
            out.append({
                "source": source, "query": key, "agent": agent, "count": n,
                "first_seen": _iso(first), "last_seen": _iso(last),
            })  # fmt: skip
        return out

    def _t_tiers(self) -> list[dict[str, Any]]:
        """Per tier: the snapshot's tier figures; the ``miss`` row counts the loads no tier
        served (``share`` = the miss rate)."""
        q = self.queries
        out = []
        for i, name in enumerate(TIERS):
            lat, hits, tried = self.lat[i], self.hits[i], self.tried[i]
            p50, p95 = rules.percentiles(lat, (0.5, 0.95))
            out.append({
                "tier": name, "served": hits, "share": round_rate(rules.tier_share(hits, q)),
                "tried": tried, "hit_rate": round_rate(rules.local_hit_rate(hits, tried)),
                "local_hit_rate": round_rate(rules.local_hit_rate(hits, tried)),
                "fall_through_rate": _div(tried - hits, tried),
                "probes": len(lat), "p50_ms": _ms(p50), "p95_ms": _ms(p95),
                "mean_ms": _ms(self.lat_sum[i] / len(lat)) if lat else None,
                "errors": self.errors[i], "cost_usd": round_usd(self.tier_cost[i]),
                "items_retrieved": self.items[i],
                # the latest size and its monthly rate: not part of cost_usd (a window's cost)
                "storage_bytes": (sb := self.storage.bytes(i)),
                "storage_usd_per_month": round_usd(
                    rules.storage_usd_per_month(sb, self.tier_model.per_gb_month[i])
                ),
            })  # fmt: skip
        out.append({
            "tier": "miss", "served": self.misses,
            "share": round_rate(rules.tier_share(self.misses, q)),
            "tried": None, "hit_rate": None, "local_hit_rate": None, "fall_through_rate": None,
            "probes": 0,
            "p50_ms": None, "p95_ms": None, "mean_ms": None, "errors": None, "cost_usd": None,
            "items_retrieved": 0, "storage_bytes": None, "storage_usd_per_month": None,
        })  # fmt: skip
        return out

    def _t_costs(self) -> list[dict[str, Any]]:
        """Per agent, model, tool, memory tier and query (run): ``cost_usd`` = LLM + tools +
        memory of the row (None when its only calls were unpriced LLM calls)."""
        order = {"agent": 0, "model": 1, "tool": 2, "tier": 3, "query": 4}
        rows = []
        for (dim, key), r in self._costs().items():
            total = r[4] + r[5] + r[6]
            rows.append((order[dim], -total, key, {
                "dimension": dim, "key": key,
                "label": self.labels.get(key, "") if dim == "query" else "",
                "llm_calls": r[0], "tool_calls": r[1],
                "input_tokens": r[2], "output_tokens": r[3],
                "cost_usd": round_usd(rules.known_cost(total, r[8], r[7])),
                "llm_cost_usd": round_usd(rules.known_cost(r[4], r[0] - r[7], r[7])),
                "tool_cost_usd": round_usd(r[5]),
                "memory_cost_usd": round_usd(r[6]), "unpriced_calls": r[7],
            }))  # fmt: skip
        rows.sort(key=lambda x: x[:3])
        return [x[3] for x in rows]

    def _t_flows(self) -> list[dict[str, Any]]:
        """Per flow name, then per step of it: runs, outcomes, durations, human waits.
        Ended runs give the durations; a run still going at the end is ``unfinished``."""
        by_name: dict[str, list[str]] = {}
        for run, fr in self.flows.items():
            by_name.setdefault(fr.flow or "", []).append(run)
        out = []
        for name in sorted(by_name):
            runs = by_name[name]
            recs = [self.flows[r] for r in runs]
            durs = [d for f in recs if (d := f.duration_ms()) is not None]
            waits = [w for r in runs for w in self.flow_waits.get(r, ())]
            out.append({
                "level": "flow", "flow": name, "step": "", "runs": len(runs),
                "completed": sum(1 for f in recs if f.status() == "completed"),
                "failed": sum(1 for f in recs if f.status() == "failed"),
                "unfinished": sum(1 for f in recs if f.ended is None),
                "mean_duration_ms": round(sum(durs) / len(durs), 3) if durs else None,
                "p95_duration_ms": _pct(durs, 0.95),
                "steps_completed": sum(f.steps_completed for f in recs),
                "steps_failed": sum(f.steps_failed for f in recs),
                "human_waits": sum(f.human_waits for f in recs),
                "mean_wait_ms": round(sum(waits) / len(waits), 3) if waits else None,
            })  # fmt: skip
            # steps in the order they first ran
            steps: dict[str, list[Any]] = {}
            for r in runs:
                f = self.flows[r]
                seen = dict.fromkeys([*self.flow_steps.get(r, {}), *f.in_flight, *f.waits])
                for m in seen:
                    if not m:
                        continue  # a wait that named no step: counted on the flow row
                    acc = steps.setdefault(m, [set(), 0, 0, 0, [], [], 0])
                    acc[0].add(r)
                    row = self.flow_steps.get(r, {}).get(m)
                    if row is not None:
                        acc[1] += row[0]
                        acc[2] += row[1]
                        acc[4].extend(row[2])
                        acc[5].extend(row[3])
                    if f.ended is None and m in f.in_flight:
                        acc[3] += 1
                    w = f.waits.get(m)
                    if w is not None:
                        acc[6] += w[3]
            for m, (sruns, done, bad, going, sdurs, swaits, nwaits) in steps.items():
                out.append({
                    "level": "step", "flow": name, "step": m, "runs": len(sruns),
                    "completed": done, "failed": bad, "unfinished": going,
                    "mean_duration_ms": round(sum(sdurs) / len(sdurs), 3) if sdurs else None,
                    "p95_duration_ms": _pct(sdurs, 0.95),
                    "steps_completed": None, "steps_failed": None, "human_waits": nwaits,
                    "mean_wait_ms": round(sum(swaits) / len(swaits), 3) if swaits else None,
                })  # fmt: skip
        return out

    def _t_collaboration(self) -> list[dict[str, Any]]:
        n_runs = len(self.runs)
        out = []
        for (frm, to, kind), (count, runs) in sorted(
            self.collab.items(), key=lambda kv: (-kv[1][0], kv[0])
        ):
            done = len(runs & self.completed)
            out.append({
                "from_agent": frm, "to_agent": to, "kind": kind, "count": count,
                "runs": len(runs),
                "share_of_runs": round(len(runs) / n_runs, 6) if n_runs else None,
                "completed_runs": done,
                "completion_rate": round(done / len(runs), 6) if runs else None,
            })  # fmt: skip
        return out
