"""One-pass accumulation of the export tables (pure: events in, rows out).

Kept separate from :mod:`auren_core.export` (rendering) so the dashboard or the API can build
the same tables without the CSV machinery. The loop is written for speed (a million events in
a few seconds): one type dispatch per event, integer day indices, tuples as keys.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

from .._state_flows import FLOW_TYPES, FlowRec, joins_flow, method_key
from ..events import Event, Malformed, llm_call_cost

__all__ = ["Accumulator", "run_label", "tier_name"]

UTC = dt.UTC
_TIERS = {
    "redis_immediate": "redis",
    "postgresql_structured": "postgresql",
    "chromadb_semantic": "chromadb",
    "miss": "miss",
}
_LABEL_KEYS = ("query", "question", "topic", "input", "prompt")
_MAX_FLOW_RUNS = 200_000  # flow runs kept by one export (memory bound on hostile input)


def tier_name(tier_accessed: Any) -> str:
    return _TIERS.get(str(tier_accessed), str(tier_accessed))


def run_label(inputs: Any) -> str:
    """A short human label for a run from its crew inputs (the user's query, usually)."""
    if not isinstance(inputs, dict) or not inputs:
        return ""
    for k in _LABEL_KEYS:
        if isinstance(inputs.get(k), str):
            return str(inputs[k])[:200]
    first = next(iter(inputs.values()))
    return str(first)[:200]


def _n(x: Any) -> int:
    return x if type(x) is int else 0


def _f(x: Any) -> float | None:
    return float(x) if type(x) in (int, float) and math.isfinite(x) else None


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _cost(x: float) -> float:
    return round(x, 10)


def _pct(sorted_vals: list[float], q: float) -> float | None:
    if not sorted_vals:
        return None
    return round(sorted_vals[max(0, math.ceil(q * len(sorted_vals)) - 1)], 3)


class Accumulator:
    """Feed events (any number of times), then read tables."""

    def __init__(self, wanted: set[str]) -> None:
        self.wanted = wanted
        self.llm: dict[tuple[str, str, str, int], list[Any]] = {}
        self.tools: dict[tuple[str, str, str], list[Any]] = {}
        self.know: dict[tuple[str, str, str], list[Any]] = {}
        self.served: dict[str, int] = {}
        self.items: dict[str, int] = {}
        self.lat: dict[str, list[float]] = {"redis": [], "postgresql": [], "chromadb": []}
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
            acc = out.setdefault((agent, day), [0, 0, 0, 0, 0.0, 0])
            for j in range(6):
                acc[j] += r[j]
        return out

    def _costs(self) -> dict[tuple[str, str], list[Any]]:
        """(dimension, key) -> [calls, input, output, cost, unpriced]."""
        out: dict[tuple[str, str], list[Any]] = {}
        for (agent, model, run, _), r in self.llm.items():
            for k in (("agent", agent), ("model", model), ("query", run)):
                acc = out.setdefault(k, [0, 0, 0, 0.0, 0])
                acc[0] += r[0]
                acc[1] += r[1]
                acc[2] += r[2]
                acc[3] += r[4]
                acc[4] += r[5]
        for (tl, agent, run), (calls, cost) in self.tools.items():
            out.setdefault(("tool", tl), [0, 0, 0, 0.0, 0])[0] += calls
            for k in (("tool", tl), ("agent", agent), ("query", run)):
                out.setdefault(k, [0, 0, 0, 0.0, 0])[3] += cost
        return out

    def feed(self, events: Iterable[Event | Malformed]) -> None:
        want_tok = "tokens" in self.wanted
        want_cost = "costs" in self.wanted
        want_know = "knowledge" in self.wanted
        want_tier = "tiers" in self.wanted
        want_collab = "collaboration" in self.wanted
        want_flows = "flows" in self.wanted
        for ev in events:
            if type(ev) is not Event:
                continue
            t = ev.type
            p = ev.payload
            agent = ev.agent or ""
            run = ev.run
            if run is not None and want_collab:
                self.runs.add(run)
            if t == "llm_call":
                if want_tok or want_cost:  # one update per call; tables group it later
                    m = p.get("model")
                    if type(m) is not str:
                        m = "" if m is None else str(m)
                    key = (agent, m, run or "", int(ev.ts // 86400))
                    row = self.llm.get(key)
                    if row is None:
                        row = self.llm[key] = [0, 0, 0, 0, 0.0, 0]
                    row[0] += 1
                    inp, out_, cached = (
                        _n(p.get("input_tokens")),
                        _n(p.get("output_tokens")),
                        _n(p.get("cached_tokens")),
                    )
                    row[1] += inp
                    row[2] += out_
                    row[3] += cached
                    c = llm_call_cost(
                        _f(p.get("cost_usd")), p.get("ok", True) is not False, inp, out_, cached
                    )
                    if c is None:
                        row[5] += 1
                    else:
                        row[4] += c
            elif t == "tool_used":
                if want_cost:
                    tl = p.get("tool")
                    if type(tl) is not str:
                        tl = "" if tl is None else str(tl)
                    key3 = (tl, agent, run or "")
                    trow = self.tools.get(key3)
                    if trow is None:
                        trow = self.tools[key3] = [0, 0.0]
                    trow[0] += 1
                    c = _f(p.get("cost_usd"))
                    if c is not None:
                        trow[1] += c
            elif t == "memory_tier_access":
                tier = tier_name(p.get("tier_accessed"))
                if want_tier:
                    self.served[tier] = self.served.get(tier, 0) + 1
                    self.items[tier] = self.items.get(tier, 0) + _n(p.get("items_retrieved"))
                    lbt = p.get("latency_by_tier")
                    if isinstance(lbt, dict):
                        for name, vals in self.lat.items():
                            v = _f(lbt.get(name))
                            if v is not None:
                                vals.append(v)
                if want_know:
                    self._know("query", str(p.get("query") or ""), agent, tier != "miss", ev.ts)
            elif t == "knowledge_access":
                if want_know:
                    hit = p.get("hit", True) is not False
                    self._know("item", str(p.get("item") or ""), agent, hit, ev.ts)
            elif t == "collaboration":
                if want_collab:
                    key3 = (agent, str(p.get("to_agent") or ""), str(p.get("kind") or ""))
                    cr = self.collab.get(key3)
                    if cr is None:
                        cr = self.collab[key3] = [0, set()]
                    cr[0] += 1
                    if run is not None:
                        cr[1].add(run)
            elif t == "crew_started":
                if run is not None and run not in self.labels:
                    self.labels[run] = run_label(p.get("inputs"))
            elif t == "crew_completed" and run is not None and p.get("ok", True) is not False:
                self.completed.add(run)
            elif want_flows and (t in FLOW_TYPES or t == "human_input"):
                self._flow(ev)

    def _flow(self, ev: Event) -> None:
        run = ev.run
        fr = self.flows.get(run) if run else None
        if run is None or not joins_flow(ev, fr is not None):
            return
        if fr is None:
            if len(self.flows) >= _MAX_FLOW_RUNS:
                return
            fr = self.flows[run] = FlowRec(run, ev.ts)
        took = fr.apply(ev)
        t, p = ev.type, ev.payload
        if t == "flow_step":
            phase = p.get("phase", "completed")
            if phase not in ("completed", "failed"):
                return
            row = self._step_row(run, method_key(p.get("method")) or "?")
            row[1 if phase == "failed" or p.get("ok") is False else 0] += 1
            if took is not None:
                row[2].append(took)
        elif t == "human_input" and took is not None:
            self.flow_waits.setdefault(run, []).append(took)
            method = method_key(p.get("method"))
            if method:
                self._step_row(run, method)[3].append(took)

    def _step_row(self, run: str, method: str) -> list[Any]:
        steps = self.flow_steps.setdefault(run, {})
        row = steps.get(method)
        if row is None:
            row = steps[method] = [0, 0, [], []]
        return row

    def feed_aggregates(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rollup rows (``agg_daily``, see :mod:`auren_core.store.retention`) for days whose
        detailed events are gone: they extend tokens, costs (without the per-query split: the
        run is not kept in rollups) and tier counts; the other reports need detail."""
        for r in rows:
            t, agent, key = r["type"], r["agent"], r["key"]
            if t == "llm_call":
                k4 = (agent, key, "", int(r["bucket"] // 86400))
                row = self.llm.setdefault(k4, [0, 0, 0, 0, 0.0, 0])
                for j, col in enumerate(
                    ("events", "input_tokens", "output_tokens", "cached_tokens", "cost_usd",
                     "unpriced")
                ):  # fmt: skip
                    row[j] += r[col]
            elif t == "tool_used":
                trow = self.tools.setdefault((key, agent, ""), [0, 0.0])
                trow[0] += r["events"]
                trow[1] += r["cost_usd"]
            elif t == "memory_tier_access":
                tier = tier_name(key)
                self.served[tier] = self.served.get(tier, 0) + r["events"]

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

    def _t_tokens(self) -> list[dict[str, Any]]:
        out = []
        tokens = self._tokens()
        for (agent, day), r in sorted(tokens.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            out.append({
                "agent": agent, "day": (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat(),
                "llm_calls": r[0], "input_tokens": r[1], "output_tokens": r[2],
                "cached_tokens": r[3], "total_tokens": r[1] + r[2],
                "cost_usd": _cost(r[4]) if r[5] < r[0] else None,  # None: no call was priced
                "unpriced_calls": r[5],
            })  # fmt: skip
        return out

    def _t_knowledge(self) -> list[dict[str, Any]]:
        out = []
        for (kind, item, agent), r in sorted(self.know.items(), key=lambda kv: (-kv[1][0], kv[0])):
            hours: list[int] = r[3]
            gap = kind == "query" and r[1] == 0
            out.append({
                "kind": "gap" if gap else kind, "item": item, "agent": agent,
                "accesses": r[0], "hits": r[1], "misses": r[2],
                "peak_hour_utc": hours.index(max(hours)),
                "first_seen": _iso(r[4]), "last_seen": _iso(r[5]),
            })  # fmt: skip
        return out

    def _t_tiers(self) -> list[dict[str, Any]]:
        total = sum(self.served.values())
        out = []
        for tier in ("redis", "postgresql", "chromadb", "miss"):
            lat = sorted(self.lat.get(tier, []))
            out.append({
                "tier": tier, "served": self.served.get(tier, 0),
                "share": round(self.served.get(tier, 0) / total, 6) if total else None,
                "probes": len(lat), "p50_ms": _pct(lat, 0.5), "p95_ms": _pct(lat, 0.95),
                "mean_ms": round(sum(lat) / len(lat), 3) if lat else None,
                "items_retrieved": self.items.get(tier, 0),
            })  # fmt: skip
        return out

    def _t_costs(self) -> list[dict[str, Any]]:
        order = {"agent": 0, "model": 1, "tool": 2, "query": 3}
        out = []
        for (dim, key), r in sorted(
            self._costs().items(), key=lambda kv: (order[kv[0][0]], -kv[1][3], kv[0][1])
        ):
            out.append({
                "dimension": dim, "key": key,
                "label": self.labels.get(key, "") if dim == "query" else "",
                "calls": r[0], "input_tokens": r[1], "output_tokens": r[2],
                "cost_usd": _cost(r[3]) if r[4] < r[0] or not r[0] else None,
                "unpriced_calls": r[4],
            })  # fmt: skip
        return out

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
            durs = sorted(d for f in recs if (d := f.duration_ms()) is not None)
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
                sdurs = sorted(sdurs)
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
