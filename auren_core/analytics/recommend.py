"""Recommendations computed from the data, each with the evidence that produced it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from .. import rules
from ..events import Event

__all__ = ["TOP_RECS", "recommendations"]

TOP_RECS = 200  # recommendations of each kind, the strongest first (input-size bound)


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 3) if xs else None


def _tier_recs(events: Sequence[Event], min_count: int) -> list[dict[str, Any]]:
    served: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    lat: dict[str, list[float]] = defaultdict(list)
    redis_lat: list[float] = []
    chroma_lat: dict[str, list[float]] = defaultdict(list)
    for ev in events:
        if ev.type != "memory_tier_access":
            continue
        p = ev.payload
        acc = rules.tier_access(p)  # tier names and latencies as every output reads them
        tier, q = acc.served, str(p.get("query") or "")
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
    for q, tiers in sorted(served.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])):
        n = sum(tiers.values())
        if n < min_count or len(out) >= TOP_RECS:
            break  # sorted by n, and a query's chromadb hits are a part of n
        if n >= min_count:
            mean = _mean(lat[q])
            saved = round(n * (mean - redis_ms), 3) if mean is not None and redis_ms else None
            out.append({
                "kind": "cache_in_redis", "target": q,
                "text": f"cache {q!r} in Redis: served {n} times from slower tiers",
                "evidence": {"slow_tier_hits": n, "by_tier": dict(sorted(tiers.items())),
                             "mean_latency_ms": mean, "redis_mean_latency_ms": redis_ms,
                             "latency_saved_ms": saved},
            })  # fmt: skip
        nc = tiers.get("chromadb", 0)
        if nc >= min_count:
            out.append({
                "kind": "precompute_embedding", "target": q,
                "text": f"pre-compute the embedding of {q!r}: {nc} semantic searches",
                "evidence": {"chromadb_hits": nc, "mean_latency_ms": _mean(chroma_lat[q])},
            })  # fmt: skip
    return out


def _model_recs(events: Sequence[Event], min_count: int, short_output: int) -> list[dict[str, Any]]:
    # (agent, model) -> [calls, input tokens, output tokens, cost]: sums, not every call
    calls: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for ev in events:
        if ev.type != "llm_call":
            continue
        p = ev.payload
        call = rules.llm_call(p)
        c, i, o = call.cost, call.input_tokens, call.output_tokens
        if c is None or i + o <= 0:
            continue
        row = calls[(ev.agent or "", str(p.get("model") or ""))]
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
            "text": f"{agent} gets short answers from {model} (mean {mean_out:.0f} output "
                    f"tokens): try {cheapest}",
            "evidence": {"calls": n, "mean_output_tokens": round(mean_out, 1),
                         "cost_usd": round(cost, 6), "usd_per_1k_tokens": round(per_1k[model], 6),
                         "suggested_model": cheapest,
                         "suggested_usd_per_1k_tokens": round(per_1k[cheapest], 6),
                         "estimated_saving_usd": round(cost - toks * per_1k[cheapest] / 1000, 6)},
        })  # fmt: skip
    return out


def recommendations(
    events: Sequence[Event],
    *,
    pairs: Sequence[dict[str, Any]] = (),
    min_count: int = 5,
    short_output: int = 200,
    together_share: float = 0.9,
    min_runs: int = 3,
) -> list[dict[str, Any]]:
    """Caching, embedding, model and team-shape recommendations (``pairs`` from
    :func:`collaboration_patterns`)."""
    out = _tier_recs(events, min_count) + _model_recs(events, min_count, short_output)
    for pr in pairs:
        if pr["share_of_runs"] >= together_share and pr["runs"] >= min_runs:
            a, b = pr["agents"]
            out.append({
                "kind": "pair_always_together", "target": f"{a}+{b}",
                "text": f"{pr['summary']}: keep them in one crew or merge their hand-off",
                "evidence": {k: pr[k] for k in ("runs", "share_of_runs", "interactions",
                                                "completion_rate_with", "completion_rate_without")},
            })  # fmt: skip
    return out
