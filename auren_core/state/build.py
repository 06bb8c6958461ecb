"""Snapshot building: reducer internals -> frozen :class:`DashboardState` (internal).

Costs O(active agents + top-N items): running window totals are read, never
recomputed from events.
"""

from __future__ import annotations

import heapq
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

from ..rules import local_hit_rate, storage_usd_per_month, tier_share
from .agents import MIN_SPAN_S, agents_view, minutes, top, top_of
from .flows import FlowRec
from .handlers import process_of
from .model import (
    TIERS,
    AgentView,
    BudgetStatus,
    CollabEdge,
    Costs,
    DashboardState,
    FlowView,
    Gap,
    Health,
    HypothesisView,
    Knowledge,
    LogEntry,
    ProcessView,
    RunCost,
    Tiers,
    TierView,
    Totals,
)
from .parts import AgentAcc, G, HypRec, T
from .window import KeyedCounts

if TYPE_CHECKING:
    from . import Reducer

__all__ = ["SnapshotCache", "build_state"]

TOP_ITEMS = 20
TOP_AGENTS = 12
TOP_GAPS = 20
MAX_EDGES = 500
MAX_HYPS = 200
MAX_ACTIVE_FLOWS = 50  # running and waiting flows in the snapshot
MAX_ENDED_FLOWS = 20  # flows that ended within the window, newest first
RATE_WINDOW_S = 5
_COUNT = itemgetter(1)
_HYP_ORDER = attrgetter("ts", "id")
_NO_TIER_COST = "no memory_tier_access event in the window carried cost_usd: tier costs are 0"
_NO_TIER_MODEL = (
    "no memory_tier_access event in the window carried cost_usd and [tier_costs] prices"
    " nothing: tier costs are 0"
)


class SnapshotCache:
    """What :func:`build_state` keeps between two states (its own object, held by the
    reducer as ``snapshot_cache``; nothing else writes it): the log tuple as of entry
    ``log_seq``, the collaboration edges as of the counts' version, and per agent the
    view with what it depends on (rebuilt only when that changes)."""

    __slots__ = ("edges", "log", "views")

    def __init__(self) -> None:
        self.log: tuple[int, tuple[LogEntry, ...]] = (0, ())
        self.edges: tuple[int, tuple[CollabEdge, ...], dict[Any, CollabEdge]] = (-1, (), {})
        self.views: dict[str, tuple[tuple[Any, ...], AgentView, AgentAcc]] = {}


def _div(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def _span(r: Reducer, start: float | None, now: float) -> float:
    """Seconds a rate is measured over: the window, or less if data began later."""
    if start is None:
        return r.window_s
    return max(MIN_SPAN_S, min(r.window_s, now - start))


def _totals(r: Reducer) -> Totals:
    v = r.s.g.tot
    return Totals(
        events=int(v[G.EV]),
        llm_calls=int(v[G.LLM]),
        input_tokens=int(v[G.IN]),
        output_tokens=int(v[G.OUT]),
        cached_tokens=int(v[G.CACHED]),
        reasoning_tokens=int(v[G.REASON]),
        cost_usd=max(0.0, v[G.COST]),
        llm_cost_usd=max(0.0, v[G.LLM_COST]),
        unpriced_llm_calls=int(v[G.UNP]),
        unpriced_input_tokens=int(v[G.UNP_IN]),
        unpriced_output_tokens=int(v[G.UNP_OUT]),
        llm_errors=int(v[G.LLM_ERR]),
        tool_calls=int(v[G.TOOL]),
        tool_errors=int(v[G.TOOL_ERR]),
        tool_cost_usd=max(0.0, v[G.TOOL_COST]),
        memory_cost_usd=max(0.0, v[G.MEM_COST]),
        embedding_cost_usd=max(0.0, v[G.EMB_COST]),
        includes_embedding_cost=r.tier_model.embedding_usd_per_token is not None,
    )


def _tiers(r: Reducer) -> Tiers:
    s = r.s
    v = s.tiers.tot
    views = []
    for i, name in enumerate(TIERS):
        o = T.BASE + i * T.PER
        tried = int(v[o + T.TRIED])
        hits = int(v[o + T.HITS])
        p50, p95 = s.hist[i].quantiles((0.5, 0.95))
        lat_n = v[o + T.LAT_N]
        views.append(
            TierView(
                name=name,
                tried=tried,
                hits=hits,
                hit_rate=_rate(local_hit_rate(hits, tried)),
                share=_rate(tier_share(hits, v[T.QUERIES])),
                p50_ms=p50,
                p95_ms=p95,
                mean_ms=v[o + T.LAT_SUM] / lat_n if lat_n > 0 else None,
                errors=int(v[o + T.ERRS]),
                fall_through_rate=_div(tried - hits, tried),
                cost_usd=max(0.0, v[o + T.COST]),
                storage_bytes=(sb := _storage(r, i)),
                storage_usd_per_month=storage_usd_per_month(sb, r.tier_model.per_gb_month[i]),
            )
        )
    queries = int(v[T.QUERIES])
    misses = int(v[T.MISSES])
    return Tiers(
        redis=views[0],
        postgresql=views[1],
        chromadb=views[2],
        queries=queries,
        misses=misses,
        miss_rate=_rate(tier_share(misses, queries)),
        gaps=_gaps(s.tier_gaps, s.tier_gap_meta),
        cost_note=_cost_note(r, int(v[T.COST_SEEN]), int(v[T.MODELLED])),
        priced_loads=int(v[T.COST_SEEN]),
        modelled_loads=int(v[T.MODELLED]),
        embedding_cost_usd=max(0.0, r.s.g.tot[G.EMB_COST]),
        embedding_model=r.tier_model.embedding_model
        if r.tier_model.embedding_usd_per_token is not None
        else None,
    )


def _storage(r: Reducer, tier: int) -> int | None:
    return r.storage.bytes(tier)


def _rate(x: float | None) -> float:
    return 0.0 if x is None else x


def _cost_note(r: Reducer, priced: int, modelled: int) -> str:
    """How the tier costs of the window were priced (empty: every load carried a price)."""
    model = r.tier_model
    if not model.active:
        return "" if priced > 0 else _NO_TIER_COST
    if modelled == 0:
        return "" if priced > 0 else _NO_TIER_MODEL
    per = ", ".join(f"{n} ${c:g}" for n, c in zip(TIERS, model.per_op, strict=True))
    emb = (
        f"; embeddings: {model.embedding_model} (genai-prices)"
        if model.embedding_usd_per_token is not None
        else "; embeddings not included"
    )
    return f"{modelled} loads priced by [tier_costs] per operation ({per}){emb}"


def _gaps(kc: KeyedCounts[str], meta: dict[str, tuple[float, set[str]]]) -> tuple[Gap, ...]:
    out = []
    for key, n in top(kc, TOP_GAPS):
        last, agents = meta.get(key, (0.0, set()))
        out.append(Gap(query=key, count=n, last_ts=last, agents=tuple(sorted(agents))))
    return tuple(out)


def _knowledge(r: Reducer) -> Knowledge:
    s = r.s
    know = s.know
    items = [k for k, _ in top_of(know.row_tot, TOP_ITEMS)]
    per_agent: dict[str, int] = {}
    for item in items:
        for agent, n in know.tot[item].items():
            per_agent[agent] = per_agent.get(agent, 0) + n
    agents = [a for a, _ in top_of(per_agent, TOP_AGENTS)]
    counts = tuple(tuple(know.tot[i].get(a, 0) for a in agents) for i in items)
    acc, hits = s.know_hits.tot
    return Knowledge(
        items=tuple(items),
        agents=tuple(agents),
        counts=counts,
        item_totals=tuple(know.row_tot[i] for i in items),
        gaps=_gaps(s.know_gaps, s.know_gap_meta),
        accesses=int(acc),
        hit_rate=_div(hits, acc),
    )


def _rank(kv: tuple[str, int]) -> tuple[int, str]:
    return (-kv[1], kv[0])


def _costs(r: Reducer, totals: Totals, now: float) -> Costs:
    span = _span(r, r.first_ts, now)
    burn = totals.cost_usd * 3600.0 / span
    budget = r.budget_usd_per_hour
    used = None if not budget else burn / budget
    status: BudgetStatus = "unset"
    if used is not None:
        status = "alert" if used >= 1.0 else "warning" if used >= 0.8 else "ok"
    runs = sorted(r._runs.values(), key=lambda x: (x.started, x.run))[-50:]
    since = now - r.window_s
    done = [x.cost_usd for x in r._runs.values() if x.ended is not None and x.ended >= since]
    return Costs(
        window_cost_usd=totals.cost_usd,
        span_s=span,
        burn_usd_per_hour=burn,
        projected_day_usd=burn * 24.0,
        projected_month_usd=burn * 24.0 * 30.0,
        budget_usd_per_hour=budget,
        budget_used=used,
        budget_status=status,
        cost_per_run_usd=sum(done) / len(done) if done else None,
        runs=tuple(
            RunCost(
                run=x.run,
                started=x.started,
                ended=x.ended,
                status=x.status,  # type: ignore[arg-type]
                cost_usd=x.cost_usd,
                llm_calls=x.llm_calls,
                input_tokens=x.inp,
                output_tokens=x.out,
                unpriced_llm_calls=x.unp,
                query=x.query,
            )
            for x in runs
        ),
        cost_per_minute=minutes(r.s.spark, now),
        unpriced_llm_calls=totals.unpriced_llm_calls,
    )


def _health(r: Reducer, now: float) -> Health:
    sec = int(now)
    if r.first_arrival is not None and now - r.first_arrival >= RATE_WINDOW_S:
        # live: events arrived per second over the last RATE_WINDOW_S seconds
        n = sum(c for k, c in r.arrivals.items() if sec - RATE_WINDOW_S < k <= sec)
        rate = n / float(RATE_WINDOW_S)
    else:
        # everything so far came in one burst (a backfill, ``--once``): arrivals say
        # nothing about the traffic, so the rate is over the events' own times: the
        # window's events / its span (the window, or since the first event if later)
        rate = r.s.g.tot[G.EV] / _span(r, r.first_ts, now)
    return Health(
        malformed=r.malformed,
        malformed_reasons=tuple(r.malformed_reasons),
        unknown_types=r.unknown_types,
        unknown_type_names=tuple(sorted(r.unknown_names.items(), key=_rank)),
        publisher_dropped=sum(d for _, d in r.publishers.values()),
        publishers=len(r.publishers),
        lag=r.lag,
        events_per_s=rate,
        connection=r.connection,
        connection_detail=r.connection_detail,
        last_id=r.last_id,
        events_total=r.events_total,
        out_of_window=r.out_of_window,
    )


def _log(r: Reducer) -> tuple[LogEntry, ...]:
    """The tail (entries are built at apply time, while the event is still hot in cache)."""
    cache = r.snapshot_cache
    seq, built = cache.log
    if seq != r._log_seq:
        built = tuple(r._log)
        cache.log = (r._log_seq, built)
    return built


def _hyp_view(h: HypRec) -> HypothesisView:
    key = (h.ts, h.updates)
    v = h.view
    if v is None or v[0] != key:
        v = h.view = (
            key,
            HypothesisView(
                id=h.id,
                status=h.status,
                agent=h.agent,
                ts=h.ts,
                confidence=h.confidence,
                statement=h.statement,
                run=h.run,
                updates=h.updates,
            ),
        )
    return v[1]


def _edges(r: Reducer) -> tuple[CollabEdge, ...]:
    """Busiest first; ties keep first-seen order. Rebuilt only when the counts changed,
    reusing the edge objects whose count did not."""
    kc = r.s.collab
    ver, built, objs = r.snapshot_cache.edges
    if ver == kc.ver:
        return built
    best = heapq.nlargest(MAX_EDGES, kc.tot.items(), key=_COUNT)
    new: dict[tuple[str, str, str], CollabEdge] = {}
    out = []
    for key, n in best:
        e = objs.get(key)
        if e is None or e.count != n:
            e = CollabEdge(key[0], key[1], key[2], n)
        new[key] = e
        out.append(e)
    res = tuple(out)
    r.snapshot_cache.edges = (kc.ver, res, new)
    return res


def _flow_view(r: Reducer, f: FlowRec, now: float, active: bool) -> FlowView:
    """A flow's view, rebuilt only when the flow, its runs' costs or (while it runs) the
    clock changed."""
    cost, calls, unp = 0.0, 0, 0
    runs = r._runs
    for rid in (f.run, *f.crews):
        ra = runs.get(rid)
        if ra is not None:
            cost += ra.cost_usd
            calls += ra.llm_calls
            unp += ra.unp
    key = (f.version, f.last_activity, cost, calls, unp, now if active else None)
    hit = f.view
    if hit is not None and hit[0] == key:
        return hit[1]  # type: ignore[no-any-return]
    step, step_since = f.current_step()
    wait = f.open_wait()
    view = FlowView(
        run=f.run,
        flow=f.flow,
        status=f.status(),
        current_step=step,
        step_started=step_since,
        started=f.started,
        last_activity=f.last_activity,
        ended=f.ended,
        duration_ms=f.duration_ms(now),
        steps_completed=f.steps_completed,
        steps_failed=f.steps_failed,
        steps_running=len(f.in_flight) if f.ended is None else 0,
        last_step=f.last_step,
        waiting_since=None if wait is None else wait[1],
        waiting_message=None if wait is None else wait[2],
        human_waits=f.human_waits,
        error=f.error,
        flow_id=f.flow_id,
        agents=tuple(f.agents),
        crews=tuple(f.crews),
        cost_usd=max(0.0, cost),
        llm_calls=calls,
        unpriced_llm_calls=unp,
    )
    f.view = (key, view)
    return view


def _flow_order(f: FlowRec) -> tuple[bool, float, str]:
    return (not f.waiting(), -f.started, f.run)


def _flows(r: Reducer, now: float) -> tuple[FlowView, ...]:
    """Running and waiting flows seen within the window (waiting first, then the newest),
    then the flows that ended within the window (the latest first)."""
    if not r._flows:
        return ()
    since = now - r.window_s
    active: list[FlowRec] = []
    ended: list[FlowRec] = []
    for f in r._flows.values():
        if f.ended is None:
            if f.last_activity >= since:
                active.append(f)
        elif f.ended >= since:
            ended.append(f)
    active.sort(key=_flow_order)
    ended.sort(key=lambda f: (-(f.ended or 0.0), f.run))
    out = [_flow_view(r, f, now, True) for f in active[:MAX_ACTIVE_FLOWS]]
    out += [_flow_view(r, f, now, False) for f in ended[:MAX_ENDED_FLOWS]]
    return tuple(out)


def build_state(r: Reducer, now: float) -> DashboardState:
    totals = _totals(r)
    # _hyps is kept in order of last update, so the newest are at its end
    hyps = sorted(list(r._hyps.values())[-MAX_HYPS:], key=_HYP_ORDER)
    return DashboardState(
        generated_at=now,
        window_s=r.window_s,
        active_window_s=r.active_window_s,
        totals=totals,
        agents=agents_view(r, now),
        tiers=_tiers(r),
        costs=_costs(r, totals, now),
        collaboration=_edges(r),
        knowledge=_knowledge(r),
        hypotheses=tuple(map(_hyp_view, hyps)),
        log=_log(r),
        health=_health(r, now),
        flows=_flows(r, now),
        processes=_processes(r),
    )


def _processes(r: Reducer) -> tuple[ProcessView, ...]:
    """Each process that reported RSS / CPU, with the agents it published (by event-id
    prefix), the most memory first."""
    procs = r.processes
    if not procs:
        return ()
    by_proc: dict[str, list[str]] = {}
    for aid, acc in r._accs.items():
        if acc.last_id:
            pre = process_of(acc.last_id)
            if pre in procs:
                by_proc.setdefault(pre, []).append(aid)
    out = [
        ProcessView(ident, ts, rss, cpu, tuple(sorted(by_proc.get(pre, ()))))
        for pre, (ident, ts, rss, cpu) in procs.items()
    ]
    out.sort(key=lambda p: (-(p.rss_bytes or 0), p.publisher))
    return tuple(out)
