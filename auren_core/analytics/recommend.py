"""Recommendations computed from the data, each with the evidence that produced it and an
estimated saving (``estimated_saving``: ``usd`` and/or ``latency_ms`` over the window).

Every threshold is a field of :class:`Thresholds` (``[recommendations]`` in ``auren.toml``):

* ``cache_in_redis``: a query served ``min_slow_serves`` (3) times or more by PostgreSQL or
  ChromaDB; saving = serves x (its mean latency - Redis's mean latency).
* ``precompute_embedding``: a query answered by a semantic search ``min_semantic`` (3) times
  or more; saving = the semantic latency of all but one of them.
* ``cheaper_model``: an agent with ``min_calls`` (5) priced calls on a model whose mean output
  is at most ``short_output`` (200) tokens, when another model seen in the window costs at
  most half as much per token; saving = its cost minus the same tokens at the cheaper rate.
* ``pair_always_together``: two agents that collaborate in ``together_share`` (80 %) of all
  runs or more, or in that share of the runs one of them takes part in (the
  specification's "work together 80% of the time"), over ``min_runs`` (3) runs.
* ``stop_loop``: an agent repeating the same call ``loop_repeats`` (3) times in a row; saving =
  what the repeats after the first cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import rules
from ..events import Collaboration, Event, LlmCall, MemoryTierAccess
from ..events.codec import typed_event

__all__ = ["TOP_RECS", "Thresholds", "recommendations"]

TOP_RECS = 200  # recommendations of each kind, the strongest first (input-size bound)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a recommendation fires (see the module docstring)."""

    min_slow_serves: int = 3
    min_semantic: int = 3
    min_calls: int = 5
    short_output: int = 200
    together_share: float = 0.8
    min_runs: int = 3
    loop_repeats: int = 3


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 3) if xs else None


def _tier_recs(events: Sequence[Event], th: Thresholds) -> list[dict[str, Any]]:
    served: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    lat: dict[str, list[float]] = defaultdict(list)
    redis_lat: list[float] = []
    chroma_lat: dict[str, list[float]] = defaultdict(list)
    for ev in events:
        if ev.type != "memory_tier_access":
            continue
        p: MemoryTierAccess = typed_event(ev).payload
        acc = rules.tier_access(p)  # tier names and latencies as every output reads them
        tier, q = acc.served, str(p.query or "")
        lbt = dict(acc.latencies)
        if tier == 0 and (v := lbt.get(0)) is not None:
            redis_lat.append(v)
        if tier > 0 and q:
            served[q][rules.TIERS[tier]] += 1
            if (v := lbt.get(tier)) is not None:
                lat[q].append(v)
                if tier == 2:
                    chroma_lat[q].append(v)
    out: list[dict[str, Any]] = []
    redis_ms = _mean(redis_lat)
    floor = min(th.min_slow_serves, th.min_semantic)
    for q, tiers in sorted(served.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])):
        n = sum(tiers.values())
        if n < floor or len(out) >= TOP_RECS:
            break  # sorted by n, and a query's chromadb hits are a part of n
        if n >= th.min_slow_serves:
            mean = _mean(lat[q])
            saved = round(n * (mean - redis_ms), 3) if mean is not None and redis_ms else None
            out.append({
                "kind": "cache_in_redis", "target": q,
                "text": f"cache {q!r} in Redis (or keep it longer): served {n} times from "
                        "slower tiers",
                "evidence": {"slow_tier_hits": n, "by_tier": dict(sorted(tiers.items())),
                             "mean_latency_ms": mean, "redis_mean_latency_ms": redis_ms,
                             "latency_saved_ms": saved},
                "estimated_saving": {"latency_ms": saved},
            })  # fmt: skip
        nc = tiers.get("chromadb", 0)
        if nc >= th.min_semantic:
            cmean = _mean(chroma_lat[q])
            saved = round((nc - 1) * cmean, 3) if cmean is not None else None
            out.append({
                "kind": "precompute_embedding", "target": q,
                "text": f"pre-compute the embedding of {q!r}: {nc} semantic searches",
                "evidence": {"chromadb_hits": nc, "mean_latency_ms": cmean},
                "estimated_saving": {"latency_ms": saved},
            })  # fmt: skip
    return out


def _model_recs(
    events: Sequence[Event], th: Thresholds, names: Mapping[str, str]
) -> list[dict[str, Any]]:
    min_count, short_output = th.min_calls, th.short_output
    # (agent, model) -> [calls, input tokens, output tokens, cost]: sums, not every call
    calls: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for ev in events:
        if ev.type != "llm_call":
            continue
        p: LlmCall = typed_event(ev).payload
        call = rules.llm_call(p)
        c, i, o = call.cost, call.input_tokens, call.output_tokens
        if c is None or i + o <= 0:
            continue
        row = calls[(ev.agent or "", str(p.model or ""))]
        row[0] += 1
        row[1] += i
        row[2] += o
        row[3] += c
    rate: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # model -> cost, tokens
    for (_, model), (_, ti, to, tc) in calls.items():
        rate[model][0] += tc
        rate[model][1] += ti + to
    per_1k = {m: 1000 * c / t for m, (c, t) in rate.items() if t and c > 0}
    if not per_1k:
        return []
    cheapest = min(per_1k, key=lambda m: (per_1k[m], m))
    out: list[dict[str, Any]] = []
    for (agent, model), (ncalls, ti, to, cost) in sorted(calls.items()):
        n = int(ncalls)
        mean_out = to / n
        if n < min_count or mean_out > short_output or model == cheapest:
            continue
        if model not in per_1k or per_1k[model] < 2 * per_1k[cheapest]:
            continue
        if len(out) >= TOP_RECS:
            break
        toks = ti + to
        out.append({
            "kind": "cheaper_model", "target": f"{agent}:{model}",
            "text": f"{names.get(agent, agent)} gets short answers from {model} "
                    f"(mean {mean_out:.0f} output tokens): try {cheapest}",
            "evidence": {"calls": n, "mean_output_tokens": round(mean_out, 1),
                         "cost_usd": round(cost, 6), "usd_per_1k_tokens": round(per_1k[model], 6),
                         "suggested_model": cheapest,
                         "suggested_usd_per_1k_tokens": round(per_1k[cheapest], 6),
                         "estimated_saving_usd": round(cost - toks * per_1k[cheapest] / 1000, 6)},
            "estimated_saving": {"usd": round(cost - toks * per_1k[cheapest] / 1000, 6)},
        })  # fmt: skip
    return out


def _partner_share(events: Sequence[Event]) -> dict[tuple[str, str], float]:
    """(a, b) -> the share of the runs ``a`` took part in where ``a`` and ``b``
    collaborated (either way): "a works with b x% of the time"."""
    active: dict[str, set[str]] = defaultdict(set)
    together: dict[tuple[str, str], set[str]] = defaultdict(set)
    for ev in events:
        if ev.run is None or not ev.agent:
            continue
        active[ev.agent].add(ev.run)
        if ev.type == "collaboration":
            cp: Collaboration = typed_event(ev).payload
            to = str(cp.to_agent or "")
            if to and to != ev.agent:
                together[(ev.agent, to)].add(ev.run)
                together[(to, ev.agent)].add(ev.run)
    return {k: len(runs) / len(active[k[0]]) for k, runs in together.items() if active[k[0]]}


def _pair_recs(
    events: Sequence[Event], pairs: Sequence[dict[str, Any]], th: Thresholds
) -> list[dict[str, Any]]:
    shares = _partner_share(events)
    out = []
    for pr in pairs:
        a, b = pr["agents"]
        if pr["runs"] < th.min_runs:
            continue
        lead = max(((x, y) for x, y in ((a, b), (b, a)) if (x, y) in shares),
                   key=lambda k: (shares[k], k), default=None)  # fmt: skip
        partner = shares[lead] if lead else 0.0
        if pr["share_of_runs"] < th.together_share and partner < th.together_share:
            continue
        if pr["share_of_runs"] >= th.together_share:
            why = pr["summary"]
        else:
            assert lead is not None
            why = f"{lead[0]} works with {lead[1]} {partner:.0%} of the time"
        out.append({
            "kind": "pair_always_together", "target": f"{a}+{b}",
            "text": f"{why}: keep them in one crew or merge their hand-off",
            "evidence": {**{k: pr[k] for k in ("runs", "share_of_runs", "interactions",
                                                "completion_rate_with",
                                                "completion_rate_without")},
                         "partner_share": round(partner, 6),
                         "lead": lead[0] if lead else None},
            "estimated_saving": {"handoffs": pr["interactions"]},
        })  # fmt: skip
    return out


def _loop_recs(
    loops: Sequence[dict[str, Any]], th: Thresholds, names: Mapping[str, str]
) -> list[dict[str, Any]]:
    out = []
    for lp in loops:
        if lp["repeats"] < th.loop_repeats:
            continue
        out.append({
            "kind": "stop_loop", "target": f"{lp['agent']}:{lp['signature'][:80]}",
            "text": f"{names.get(lp['agent'], lp['agent'])} repeats {lp['kind']} "
                    f"{lp['signature'][:50]!r} "
                    f"{lp['repeats']}x: cap its iterations or cache the result",
            "evidence": {k: lp[k] for k in ("repeats", "occurrences", "runs", "cost_usd",
                                            "tokens")},
            "estimated_saving": {"usd": lp["repeat_cost_usd"]},
        })  # fmt: skip
    return out


def recommendations(
    events: Sequence[Event],
    *,
    pairs: Sequence[dict[str, Any]] = (),
    loops: Sequence[dict[str, Any]] = (),
    thresholds: Thresholds | None = None,
    names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Caching, embedding, model, team-shape and loop recommendations (``pairs`` from
    :func:`collaboration_patterns`, ``loops`` from :func:`detect_loops`), the biggest
    dollar saving first, then the biggest latency saving. ``names``: agent id -> the
    display name (role) the texts use (``target`` and ``evidence`` keep the ids)."""
    th = thresholds or Thresholds()
    nm = names or {}
    out = (_tier_recs(events, th) + _model_recs(events, th, nm) + _pair_recs(events, pairs, th)
           + _loop_recs(loops, th, nm))  # fmt: skip

    def rank(r: dict[str, Any]) -> tuple[float, float]:
        s = r.get("estimated_saving") or {}
        return (-(s.get("usd") or 0.0), -(s.get("latency_ms") or 0.0))

    return sorted(out, key=rank)
