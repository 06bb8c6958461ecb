"""JSON shapes of the dashboard state: the DESIGN.md snapshot and the tier-stats body.

Every value is a plain str/int/float/bool/None/list/dict (orjson-ready) and the
output depends only on the state, so a frozen clock gives identical bytes. Rounding is
the one of every output (:mod:`auren_core.rules`): USD to 10 decimals, rates to 6,
milliseconds to 3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..rules import round_usd as _usd

if TYPE_CHECKING:
    from .model import AgentView, DashboardState, FlowView, Gap, TierView

__all__ = ["flow_to_dict", "state_to_dict", "tier_stats"]


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(x, nd)


def _agent(a: AgentView) -> dict[str, Any]:
    return {
        # DESIGN.md keys first
        "id": a.id,
        "role": a.role,
        "status": a.status,
        "last_activity": a.last_activity,
        "current_load": a.current_load,
        "capabilities": list(a.capabilities),
        "input_tokens": a.input_tokens,
        "output_tokens": a.output_tokens,
        "cost_usd": _usd(a.cost_usd),
        # extras
        "cached_tokens": a.cached_tokens,
        "unpriced_llm_calls": a.unpriced_llm_calls,
        "usd_per_hour": _usd(a.usd_per_hour),
        "llm_calls": a.llm_calls,
        "tool_calls": a.tool_calls,
        "goal": a.goal,
        "model": a.model,
        "tools": list(a.tools),
        "allow_delegation": a.allow_delegation,
        "first_seen": a.first_seen,
        "tools_used": [{"tool": t, "count": n} for t, n in a.tools_used],
        "collaborators": list(a.collaborators),
        "hypotheses": list(a.hypotheses),
        "cost_per_minute": list(a.cost_per_minute),
        "last_error": a.last_error,
        "reasoning_tokens": a.reasoning_tokens,
        "waiting_since": a.waiting_since,
        "waiting_message": a.waiting_message,
    }


def flow_to_dict(f: FlowView) -> dict[str, Any]:
    return {
        "run": f.run,
        "flow": f.flow,
        "status": f.status,
        "current_step": f.current_step,
        "step_started": f.step_started,
        "started": f.started,
        "last_activity": f.last_activity,
        "ended": f.ended,
        "duration_ms": _r(f.duration_ms, 3),
        "steps_completed": f.steps_completed,
        "steps_failed": f.steps_failed,
        "steps_running": f.steps_running,
        "last_step": f.last_step,
        "waiting_since": f.waiting_since,
        "waiting_message": f.waiting_message,
        "human_waits": f.human_waits,
        "error": f.error,
        "flow_id": f.flow_id,
        "agents": list(f.agents),
        "crews": list(f.crews),
        "cost_usd": _usd(f.cost_usd),
        "llm_calls": f.llm_calls,
        "unpriced_llm_calls": f.unpriced_llm_calls,
    }


def _tier(t: TierView) -> dict[str, Any]:
    return {
        "hits": t.hits,
        # hit_rate (DESIGN.md key, kept): the *local* hit rate, hits / lookups that reached
        # the tier, the same value as local_hit_rate; share: hits / all lookups
        "hit_rate": _r(t.hit_rate),
        "local_hit_rate": _r(t.hit_rate),
        "p50_ms": _r(t.p50_ms, 3),
        "p95_ms": _r(t.p95_ms, 3),
        "tried": t.tried,
        "share": _r(t.share),
        "mean_ms": _r(t.mean_ms, 3),
        "errors": t.errors,
        "fall_through_rate": _r(t.fall_through_rate),
        "cost_usd": _usd(t.cost_usd),
        # latest memory_tier_storage size and its monthly rate ([tier_costs] <tier>_gb_month):
        # null when never reported; not part of cost_usd (a rate, not the window's spend)
        "storage_bytes": t.storage_bytes,
        "storage_usd_per_month": _opt_usd(t.storage_usd_per_month),
    }


def _opt_usd(x: float | None) -> float | None:
    return None if x is None else _usd(x)


def _gap(g: Gap) -> dict[str, Any]:
    return {"query": g.query, "count": g.count, "last_ts": g.last_ts, "agents": list(g.agents)}


def state_to_dict(s: DashboardState) -> dict[str, Any]:
    t = s.totals
    ti = s.tiers
    h = s.health
    c = s.costs
    k = s.knowledge
    return {
        "generated_at": s.generated_at,
        "window_s": s.window_s,
        "active_window_s": s.active_window_s,
        "totals": {
            "events": t.events,
            "llm_calls": t.llm_calls,
            "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens,
            "cost_usd": _usd(t.cost_usd),
            "tool_calls": t.tool_calls,
            "cached_tokens": t.cached_tokens,
            "reasoning_tokens": t.reasoning_tokens,
            "llm_cost_usd": _usd(t.llm_cost_usd),
            "unpriced_llm_calls": t.unpriced_llm_calls,
            "unpriced_input_tokens": t.unpriced_input_tokens,
            "unpriced_output_tokens": t.unpriced_output_tokens,
            "llm_errors": t.llm_errors,
            "tool_errors": t.tool_errors,
            "tool_cost_usd": _usd(t.tool_cost_usd),
            "memory_cost_usd": _usd(t.memory_cost_usd),
            "embedding_cost_usd": _usd(t.embedding_cost_usd),
            "includes_embedding_cost": t.includes_embedding_cost,
        },
        "agents": [_agent(a) for a in s.agents],
        "tiers": {
            "redis": _tier(ti.redis),
            "postgresql": _tier(ti.postgresql),
            "chromadb": _tier(ti.chromadb),
            "misses": ti.misses,
            "queries": ti.queries,
            "miss_rate": _r(ti.miss_rate),
            "gaps": [_gap(g) for g in ti.gaps],
            "cost_note": ti.cost_note,
            "priced_loads": ti.priced_loads,
            "modelled_loads": ti.modelled_loads,
            "embedding_cost_usd": _usd(ti.embedding_cost_usd),
            "embedding_model": ti.embedding_model,
        },
        "collaboration": [
            {"from": e.from_agent, "to": e.to_agent, "kind": e.kind, "count": e.count}
            for e in s.collaboration
        ],
        "flows": s.flows_to_dict(),
        "processes": [
            {
                "publisher": p.publisher,
                "ts": p.ts,
                "rss_bytes": p.rss_bytes,
                "cpu_seconds": _r(p.cpu_seconds, 3),
                "agents": list(p.agents),
            }
            for p in s.processes
        ],
        "health": {
            "malformed": h.malformed,
            "unknown_types": h.unknown_types,
            "publisher_dropped": h.publisher_dropped,
            "lag": h.lag,
            "malformed_reasons": list(h.malformed_reasons),
            "unknown_type_names": [{"type": n, "count": x} for n, x in h.unknown_type_names],
            "publishers": h.publishers,
            "events_per_s": _r(h.events_per_s, 3),
            "connection": h.connection,
            "connection_detail": h.connection_detail,
            "last_id": h.last_id,
            "events_total": h.events_total,
            "out_of_window": h.out_of_window,
        },
        "costs": {
            "window_cost_usd": _usd(c.window_cost_usd),
            "span_s": _r(c.span_s, 3),
            "burn_usd_per_hour": _usd(c.burn_usd_per_hour),
            "projected_day_usd": _usd(c.projected_day_usd),
            "projected_month_usd": _usd(c.projected_month_usd),
            "budget_usd_per_hour": c.budget_usd_per_hour,
            "budget_used": _r(c.budget_used),
            "budget_status": c.budget_status,
            "cost_per_run_usd": _usd(c.cost_per_run_usd),
            "unpriced_llm_calls": c.unpriced_llm_calls,
            "cost_per_minute": list(c.cost_per_minute),
            "runs": [
                {
                    "run": x.run,
                    "query": x.query,
                    "started": x.started,
                    "ended": x.ended,
                    "status": x.status,
                    "cost_usd": _usd(x.cost_usd),
                    "llm_calls": x.llm_calls,
                    "input_tokens": x.input_tokens,
                    "output_tokens": x.output_tokens,
                    "unpriced_llm_calls": x.unpriced_llm_calls,
                }
                for x in c.runs
            ],
        },
        "knowledge": {
            "items": list(k.items),
            "agents": list(k.agents),
            "counts": [list(row) for row in k.counts],
            "item_totals": list(k.item_totals),
            "gaps": [_gap(g) for g in k.gaps],
            "accesses": k.accesses,
            "hit_rate": _r(k.hit_rate),
        },
        "hypotheses": [
            {
                "id": hv.id,
                "status": hv.status,
                "agent": hv.agent,
                "ts": hv.ts,
                "confidence": hv.confidence,
                "statement": hv.statement,
                "run": hv.run,
                "updates": hv.updates,
            }
            for hv in s.hypotheses
        ],
        "log": [
            {
                "sid": e.sid,
                "id": e.id,
                "ts": e.ts,
                "type": e.type,
                "agent": e.agent,
                "run": e.run,
                "summary": e.summary,
                "malformed": e.malformed,
            }
            for e in s.log
        ],
    }


def tier_stats(s: DashboardState) -> dict[str, Any]:
    ti = s.tiers
    tiers = ti.by_name()
    return {
        "window_s": s.window_s,
        "generated_at": s.generated_at,
        # DESIGN.md: tier_hit_rates = the share of all lookups each tier served;
        # local_hit_rates = hits / lookups that reached the tier (the snapshot's hit_rate)
        "tier_hit_rates": {n: _r(t.share) for n, t in tiers.items()},
        "local_hit_rates": {n: _r(t.hit_rate) for n, t in tiers.items()},
        "average_latencies_ms": {n: _r(t.mean_ms, 3) for n, t in tiers.items()},
        "p50_latencies_ms": {n: _r(t.p50_ms, 3) for n, t in tiers.items()},
        "p95_latencies_ms": {n: _r(t.p95_ms, 3) for n, t in tiers.items()},
        "cost_by_tier": {n: _usd(t.cost_usd) for n, t in tiers.items()},
        # beside cost_by_tier: the monthly storage rate (not part of the window's cost)
        "storage_usd_per_month": {n: _opt_usd(t.storage_usd_per_month) for n, t in tiers.items()},
        "storage_bytes": {n: t.storage_bytes for n, t in tiers.items()},
        "hits": {n: t.hits for n, t in tiers.items()},
        "tried": {n: t.tried for n, t in tiers.items()},
        "fall_through_rates": {n: _r(t.fall_through_rate) for n, t in tiers.items()},
        "queries": ti.queries,
        "misses": ti.misses,
        "miss_rate": _r(ti.miss_rate),
        "cost_note": ti.cost_note,
        "total_cost_usd": _usd(sum(t.cost_usd for t in tiers.values())),
        "embedding_cost_usd": _usd(ti.embedding_cost_usd),
        "includes_embedding_cost": s.totals.includes_embedding_cost,
        "embedding_model": ti.embedding_model,
        "priced_loads": ti.priced_loads,
        "modelled_loads": ti.modelled_loads,
    }
