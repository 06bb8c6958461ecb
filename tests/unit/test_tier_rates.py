"""Issue 13 items 1, 2, 6 (pure parts): the two tier rates and pane 1's labelled rows, the
[tier_costs] model, learning velocity's rates."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from auren_core import rules
from auren_core.events import Event, make_event
from auren_core.state import Reducer


def _load(tier: str, lat: dict[str, float], ts: float, **p: object) -> Event:
    return make_event(
        "memory_tier_access",
        {"tier_accessed": tier, "query": "q", "latency_by_tier": lat, **p},
        agent="a",
        ts=ts,
    )


def _demo_loads(now: float) -> list[Event]:
    out = [_load("redis_immediate", {"redis": 1.0}, now - 9)]
    out += [_load("postgresql_structured", {"redis": 1.0, "postgresql": 5.0}, now - 8 + i)
            for i in range(3)]  # fmt: skip
    out.append(_load("miss", {"redis": 1.0, "postgresql": 5.0, "chromadb": 30.0}, now - 4))
    return out


def test_pane_1_labels_served_share_and_local_hit_rate() -> None:
    from auren_tui.widgets.tiers import TierFlow

    now = time.time()
    r = Reducer(clock=lambda: now)
    r.apply_batch(_demo_loads(now))
    state = r.state(now)
    # 5 loads: Redis served 1 (20 % of all, 1 of 5 that reached it), PostgreSQL 3 (60 % of
    # all, 3 of the 4 that reached it: 75 %), ChromaDB 0 of 1, 1 miss (20 %)
    assert (state.tiers.redis.share, state.tiers.postgresql.share) == (0.2, 0.6)
    assert state.tiers.postgresql.hit_rate == 0.75
    out = io.StringIO()
    Console(file=out, width=70, color_system=None).print(TierFlow().build(state, 70, 10))
    rows = {ln.split()[0] if not ln.startswith("local hit") else "local hit": ln
            for ln in out.getvalue().splitlines() if ln.strip()}  # fmt: skip
    assert "served" in rows and "local hit" in rows and "hit" not in rows
    served, local = rows["served"].split(), rows["local hit"].split()
    assert [c for c in served if c.endswith("%")] == ["20%", "60%", "0%"]
    assert [c for c in local if c.endswith("%")] == ["20%", "75%", "0%"]


def test_rates_are_defined_once_and_shares_sum_to_one() -> None:
    assert rules.tier_share(3, 5) == 0.6 and rules.tier_share(1, 0) is None
    assert rules.local_hit_rate(3, 4) == 0.75 and rules.local_hit_rate(0, 0) is None
    now = time.time()
    r = Reducer(clock=lambda: now)
    r.apply_batch(_demo_loads(now))
    t = r.state(now).tiers
    assert abs(t.redis.share + t.postgresql.share + t.chromadb.share + t.miss_rate - 1) < 1e-12


def test_tier_cost_model_prices_tiers_tried_and_the_embedding() -> None:
    m = rules.tier_cost_model(
        {"redis": 0.001, "postgres": 0.01, "chroma": 0.1, "embedding_model": "m", "bogus": 5,
         "redis_immediate": -1},
        embedding_usd_per_token=1e-6,
    )  # fmt: skip  # aliases count; a negative price is not one (the earlier value stays)
    assert m.per_op == (0.001, 0.01, 0.1) and m.embedding_usd_per_token == 1e-6
    p = {"tier_accessed": "chromadb_semantic", "query": "x" * 9,
         "latency_by_tier": {"redis": 1, "postgresql": 2, "chromadb": 3}}  # fmt: skip
    costs, emb = rules.modelled_tier_costs(rules.tier_access(p), p, m) or ([], 0.0)
    assert emb == pytest.approx(3e-6)  # ceil(9 / 4) tokens
    assert dict(costs) == pytest.approx({0: 0.001, 1: 0.01, 2: 0.1 + 3e-6})
    p["embedding_tokens"] = 100  # counted at the source: used as is
    costs, emb = rules.modelled_tier_costs(rules.tier_access(p), p, m) or ([], 0.0)
    assert emb == pytest.approx(1e-4) and dict(costs)[2] == pytest.approx(0.1 + 1e-4)
    priced = {**p, "cost_usd": 0.5}  # a load with its own price is never re-priced
    assert rules.modelled_tier_costs(rules.tier_access(priced), priced, m) is None
    # no embedding model, or one the price library does not know: no embedding cost
    assert rules.tier_cost_model({"embedding_model": "m"}, None).active is False


def test_learning_rates_never_extrapolate_a_burst() -> None:
    from auren_core.analytics import learning_velocity

    now = time.time()
    evs = [make_event("hypothesis", {"hypothesis_id": f"h{i}", "status": "formed",
                                     "confidence": 0.5, "statement": "s"}, agent="a",
                      ts=now - 1) for i in range(3)]  # fmt: skip
    out = learning_velocity(evs, now=now)
    assert out["formed"] == 3 and out["formed_per_hour"] == 3 * 60  # over >= a minute
    assert out["validation_rate"] is None  # nothing decided yet
