"""Issue 13 (items 1, 2, 6, 7, 9): the HTTP API's numbers as the specification means them,
over real Redis and a real serve-ws (in process, and ``auren serve-ws`` as a subprocess
with an ``auren.toml``).

* tier-stats: ``tier_hit_rates`` is the share of all lookups each tier served (with the
  ``miss_rate`` it sums to 1), ``local_hit_rates`` the conditional rate; the snapshot says
  both (``share``, ``local_hit_rate``); the default window is 24 h.
* ``[tier_costs]``: loads without a price are priced per operation and, for semantic
  lookups, by the embedding model's genai-prices price - in the API, the WebSocket
  snapshot, the export and ``/metrics`` alike, and the totals say they include it.
* ``/api/v2/analytics/{forecast,alerts,patterns,gaps,recommendations,learning}``, the
  snapshot's ``analytics`` and the ``analytics`` export report.
* ``/metrics``: business metrics with bounded agent labels.
* ``/api/v2/agents/active``: ``active_count`` and ISO 8601 ``last_activity``; the export
  API's default format is CSV.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import aget, http_get, llm, publish, running, subscribe
from servers import free_port

from auren_core import pricing, rules
from auren_core.events import Event, make_event

ROOT = Path(__file__).resolve().parents[2]


def load(agent: str, tier: str, lat: dict[str, float], ts: float, **p: Any) -> Event:
    return make_event(
        "memory_tier_access",
        {"tier_accessed": tier, "query": p.pop("query", "sleep debt"), "latency_by_tier": lat,
         "items_retrieved": 0 if tier == "miss" else 1, **p},
        agent=agent, run="r1", ts=ts,
    )  # fmt: skip


def loads(now: float) -> list[Event]:
    """10 loads: Redis serves 4, PostgreSQL 3 (after a Redis miss), ChromaDB 1 (after both),
    2 misses everywhere. Shares 0.4 / 0.3 / 0.1, miss rate 0.2; local hit rates 4/10, 3/6,
    1/3 (the values add up to 1.23, the shares with the miss rate to 1)."""
    out = []
    for i in range(4):
        out.append(load("sleep", "redis_immediate", {"redis": 1.0}, now - 50 + i))
    for i in range(3):
        out.append(load("neuro", "postgresql_structured", {"redis": 1.0, "postgresql": 10.0},
                        now - 40 + i))  # fmt: skip
    out.append(load("neuro", "chromadb_semantic", {"redis": 1.0, "postgresql": 10.0,
                                                    "chromadb": 40.0}, now - 30,
                    query="x" * 41))  # fmt: skip
    for i in range(2):
        out.append(load("sleep", "miss", {"redis": 1.0, "postgresql": 10.0, "chromadb": 40.0},
                        now - 20 + i, query="ferritin"))  # fmt: skip
    return out


def _json(port: int, path: str) -> Any:
    status, _, body = http_get(port, path)
    assert status == 200, (path, body[:300])
    return json.loads(body)


# --------------------------------------------------------------------------- item 1 and 9


async def test_tier_hit_rates_are_shares_and_the_default_window_is_24h(
    redis_url: str, stream: str
) -> None:
    now = time.time()
    old = [load("sleep", "redis_immediate", {"redis": 1.0}, now - 3 * 3600.0 + i)
           for i in range(10)]  # fmt: skip  # 3 h ago: outside a 1 h window, inside 24 h
    publish(redis_url, stream, [*old, *loads(now)])
    async with running(redis_url, stream, window_s=3600.0) as srv:
        doc = json.loads((await aget(srv.port, "/api/v2/memory/tier-stats"))[2])
        assert doc["window_hours"] == 24.0
        assert doc["queries"] == 20  # the old loads count: 24 h, not the server's 1 h
        one = json.loads((await aget(srv.port, "/api/v2/memory/tier-stats?window_hours=1"))[2])
        assert one["queries"] == 10
        shares, local = one["tier_hit_rates"], one["local_hit_rates"]
        assert shares == {"redis": 0.4, "postgresql": 0.3, "chromadb": 0.1}
        assert one["miss_rate"] == 0.2
        assert math.isclose(sum(shares.values()) + one["miss_rate"], 1.0)
        assert local == {"redis": 0.4, "postgresql": 0.5, "chromadb": 0.333333}
        # the snapshot says both, under names that say which
        _, snap = await subscribe(srv.port, since="now")
        t = snap["state"]["tiers"]
        for name in rules.TIERS:
            assert t[name]["share"] == shares[name]
            assert t[name]["local_hit_rate"] == t[name]["hit_rate"] == local[name]
        # the export's tiers report too, over the 24 h (entries chosen by stream time, so
        # all 20); the export API's default format is CSV
        status, headers, body = await aget(srv.port, "/api/v2/export/analytics?report=tiers")
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        rows = {r["tier"]: r for r in csv.DictReader(io.StringIO(body.decode()))}
        for name in rules.TIERS:
            assert float(rows[name]["share"]) == doc["tier_hit_rates"][name]
            assert float(rows[name]["local_hit_rate"]) == doc["local_hit_rates"][name]
        assert float(rows["miss"]["share"]) == doc["miss_rate"] == 0.1
        assert doc["tier_hit_rates"] == {"redis": 0.7, "postgresql": 0.15, "chromadb": 0.05}


async def test_agents_active_says_active_count_and_iso_8601(redis_url: str, stream: str) -> None:
    now = time.time()
    publish(redis_url, stream, [llm("sleep", 0, ts=now - 5), llm("neuro", 1, ts=now - 2)])
    async with running(redis_url, stream) as srv:
        doc = json.loads((await aget(srv.port, "/api/v2/agents/active"))[2])
        assert doc["active_count"] == doc["count"] == 2
        by_id = {a["id"]: a for a in doc["agents"]}
        for aid, ts in (("sleep", now - 5), ("neuro", now - 2)):
            iso = by_id[aid]["last_activity"]
            assert iso.endswith("Z") and "T" in iso
            parsed = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
            assert abs(parsed - ts) < 0.002
            assert by_id[aid]["last_activity_ts"] == pytest.approx(ts, abs=1e-3)


# --------------------------------------------------------------------------- item 6


def learning_events(now: float) -> list[Event]:
    def hyp(agent: str, hid: str, status: str, ts: float) -> Event:
        return make_event("hypothesis", {"hypothesis_id": hid, "status": status,
                                         "confidence": 0.5, "statement": f"{hid} holds"},
                          agent=agent, run="r1", ts=ts)  # fmt: skip

    return [
        hyp("neuro", "h1", "formed", now - 1800), hyp("neuro", "h1", "validated", now - 1700),
        hyp("neuro", "h2", "formed", now - 1600), hyp("neuro", "h2", "rejected", now - 1500),
        hyp("neuro", "h3", "formed", now - 1400), hyp("neuro", "h3", "formed", now - 1390),
        hyp("sleep", "h4", "formed", now - 1000), hyp("sleep", "h4", "validated", now - 900),
    ]  # fmt: skip  # h3 formed twice: counted once


async def test_analytics_over_http_websocket_and_export(redis_url: str, stream: str) -> None:
    now = time.time()
    evs = [*learning_events(now), *loads(now)]
    # a looping agent: the same tool with the same input, 4 times in a row
    evs += [make_event("tool_used", {"tool": "web_search", "input": "ferritin", "ok": True,
                                     "duration_ms": 5.0}, agent="nutri", run="r2",
                       ts=now - 100 + i) for i in range(4)]  # fmt: skip
    publish(redis_url, stream, evs)
    from auren_core.analytics import analysis  # (lazily: the old code had no such function)

    want = analysis(evs, now=now)  # what auren top's analytics screen computes
    async with running(redis_url, stream) as srv:
        docs = {}
        for section in ("forecast", "alerts", "patterns", "gaps", "recommendations",
                        "learning"):  # fmt: skip
            status, headers, body = await aget(srv.port, f"/api/v2/analytics/{section}")
            assert status == 200 and headers["Content-Type"] == "application/json", body[:200]
            doc = json.loads(body)
            assert doc["section"] == section and section in doc
            assert doc["events"] == len(evs)
            docs[section] = doc[section]
        learn = docs["learning"]
        assert (learn["formed"], learn["validated"], learn["rejected"]) == (4, 2, 1)
        assert learn["validation_rate"] == pytest.approx(2 / 3, abs=1e-6)
        span = learn["span_s"]
        assert 1800 <= span < 1900
        assert learn["formed_per_hour"] == pytest.approx(4 * 3600 / span, rel=1e-4)
        agents = {a["agent"]: a for a in learn["agents"]}
        assert (agents["neuro"]["formed"], agents["neuro"]["validation_rate"]) == (3, 0.5)
        assert (agents["sleep"]["formed"], agents["sleep"]["validation_rate"]) == (1, 1.0)
        assert {g["query"]: g["misses"] for g in docs["gaps"]} == {"ferritin": 2}
        assert [(lp["agent"], lp["repeats"]) for lp in docs["patterns"]["loops"]] == [
            (lp["agent"], lp["repeats"]) for lp in want["loops"]
        ] and want["loops"]
        assert docs["alerts"] == json.loads(json.dumps(want["alerts"]))
        assert docs["recommendations"] == json.loads(json.dumps(want["recommendations"]))
        assert "agents" in docs["forecast"]
        status, _, body = await aget(srv.port, "/api/v2/analytics/nonsense")
        assert status == 404 and b"learning" in body

        # the WebSocket snapshot carries the same analytics
        _, snap = await subscribe(srv.port, since="now")
        wire = snap["state"]["analytics"]
        assert wire is not None and wire["learning"]["formed"] == 4
        assert wire["gaps"] == docs["gaps"]

        # and the analytics export report (JSON over HTTP; CSV is the default)
        status, _, body = await aget(srv.port, "/api/v2/export/analytics?report=analytics"
                                               "&format=json")  # fmt: skip
        assert status == 200
        rows = json.loads(body)["analytics"]
        got = {(r["kind"], r["agent"]): r["value"] for r in rows if r["section"] == "learning"}
        assert got[("formed", "(all)")] == 4 and got[("validation_rate", "neuro")] == 0.5
        assert any(r["section"] == "patterns" and r["kind"] == "loop" for r in rows)
        assert any(r["section"] == "gaps" and r["target"] == "ferritin" for r in rows)


# --------------------------------------------------------------------------- item 7


def _samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _sum(samples: dict[Any, float], name: str, **match: str) -> float:
    return sum(
        v
        for (n, labels), v in samples.items()
        if n == name and all(dict(labels).get(k) == x for k, x in match.items())
    )


async def test_metrics_expose_business_metrics_with_bounded_labels(
    redis_url: str, stream: str
) -> None:
    publish(redis_url, stream, [llm("before-start", 0)])  # backfill: not counted twice
    async with running(redis_url, stream, metrics_max_agents=3) as srv:
        now = time.time()
        agents = [f"agent-{i}" for i in range(6)]
        evs = [llm(a, i, ts=now - 1) for i, a in enumerate(agents)]
        evs.append(make_event("llm_call", {"model": "mystery-model", "input_tokens": 7,
                                           "output_tokens": 1, "ok": False},
                              agent="agent-0", ts=now))  # fmt: skip
        evs += [make_event("tool_used", {"tool": "web_search", "ok": i != 1,
                                         "duration_ms": 3.0, "cost_usd": 0.01},
                           agent="agent-1", ts=now) for i in range(3)]  # fmt: skip
        evs += loads(now)
        evs.append(make_event("publisher_stats", {"publisher": "p1", "sent": 100, "dropped": 7,
                                                  "queued": 0}, ts=now))  # fmt: skip
        publish(redis_url, stream, evs)
        deadline = time.monotonic() + 10
        while srv.metrics.events_in < len(evs) + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        status, headers, body = await aget(srv.port, "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        m = _samples(body.decode())
        # tokens and cost by agent and model: the first 3 agents by name, the rest "other"
        labels = {dict(k[1])["agent"] for k in m if k[0] == "auren_llm_tokens_total"}
        assert labels == {"agent-0", "agent-1", "agent-2", "other"}
        want_in = sum(100 + i for i in range(6)) + 7
        assert _sum(m, "auren_llm_tokens_total", kind="input") == want_in
        assert _sum(m, "auren_llm_tokens_total", kind="input", agent="other") == sum(
            100 + i for i in range(3, 6)
        )
        assert _sum(m, "auren_llm_cost_usd_total", model="gpt-4o-mini") == pytest.approx(
            sum(0.001 * (i + 1) for i in range(6))
        )
        assert _sum(m, "auren_llm_calls_total") == 7
        assert _sum(m, "auren_llm_errors_total") == 1
        assert _sum(m, "auren_llm_unpriced_calls_total", model="mystery-model") == 1
        assert _sum(m, "auren_tool_calls_total", tool="web_search") == 3
        assert _sum(m, "auren_tool_errors_total") == 1
        assert _sum(m, "auren_tool_cost_usd_total") == pytest.approx(0.03)
        # memory tiers: lookups (reached), hits, latency histograms
        for name, tried, hits in (("redis", 10, 4), ("postgresql", 6, 3), ("chromadb", 3, 1)):
            assert _sum(m, "auren_tier_lookups_total", tier=name) == tried
            assert _sum(m, "auren_tier_hits_total", tier=name) == hits
            assert _sum(m, "auren_tier_latency_seconds_count", tier=name) == tried
        assert _sum(m, "auren_tier_latency_seconds_bucket", tier="redis", le="0.001") == 10
        assert _sum(m, "auren_memory_loads_total", outcome="miss") == 2
        # gauges: active agents (the reducer's), publisher drops, stream lag
        # six + the one before the start + the two of the loads
        assert _sum(m, "auren_active_agents") == 9
        assert _sum(m, "auren_publisher_dropped") == 7
        assert ("auren_stream_lag_entries", ()) in m
        assert _sum(m, "auren_ws_events_total") == len(evs) + 1


# --------------------------------------------------------------------------- item 2


@pytest.fixture
def serve_ws_priced(
    redis_url: str, stream: str, tmp_path: Path
) -> Iterator[tuple[int, dict[str, str]]]:
    config = tmp_path / "auren.toml"
    config.write_text(
        "[tier_costs]\nredis = 0.001\npostgresql = 0.01\nchromadb = 0.1\n"
        'embedding_model = "openai/text-embedding-3-small"\n'
    )
    env = {**os.environ, "AUREN_REDIS_URL": redis_url, "AUREN_STREAM": stream,
           "AUREN_CONFIG": str(config), "PYTHONPATH": str(ROOT)}  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "auren_tui", "serve-ws", "--auth", "none", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if http_get(port, "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        yield port, env
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_tier_costs_priced_alike_by_api_snapshot_export_and_metrics(
    serve_ws_priced: tuple[int, dict[str, str]], redis_url: str, stream: str
) -> None:
    port, env = serve_ws_priced
    now = time.time()
    evs = loads(now)
    priced = load("sleep", "redis_immediate", {"redis": 1.0}, now - 10, cost_usd=0.5)
    publish(redis_url, stream, [*evs, priced])  # live, after the server started
    per_million, source = pricing.price("text-embedding-3-small", "openai", 10**6, 0)
    assert per_million and source == pricing.SOURCE  # the price library's own figure
    emb_rate = per_million / 10**6
    # 10 loads reached Redis, 6 PostgreSQL, 3 ChromaDB; the priced load carries its own price
    emb = 1 * 11 * emb_rate + 2 * 2 * emb_rate  # ceil(41 / 4) tokens, then "ferritin": 2
    want = {"redis": 10 * 0.001 + 0.5, "postgresql": 6 * 0.01, "chromadb": 3 * 0.1 + emb}
    deadline = time.monotonic() + 20
    while True:
        doc = _json(port, "/api/v2/memory/tier-stats?window_hours=1")
        if doc["queries"] == 11 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert doc["queries"] == 11
    for name, usd in want.items():
        assert doc["cost_by_tier"][name] == pytest.approx(usd, abs=1e-9), name
    assert doc["includes_embedding_cost"] is True
    assert doc["embedding_cost_usd"] == pytest.approx(emb, abs=1e-12)
    assert doc["modelled_loads"] == 10 and doc["priced_loads"] == 1
    assert "[tier_costs]" in doc["cost_note"]
    live = _json(port, "/api/v2/memory/tier-stats?window_hours=24")  # the server's default
    assert live["cost_by_tier"] == doc["cost_by_tier"]

    async def snapshot() -> dict[str, Any]:
        _, snap = await subscribe(port, since="now")
        return snap["state"]  # type: ignore[no-any-return]

    state = asyncio.run(snapshot())
    assert state["totals"]["memory_cost_usd"] == pytest.approx(sum(want.values()), abs=1e-9)
    assert state["totals"]["includes_embedding_cost"] is True
    for name, usd in want.items():
        assert state["tiers"][name]["cost_usd"] == pytest.approx(usd, abs=1e-9)
    # auren export (the CLI, same auren.toml) prices them the same way
    out = subprocess.run([sys.executable, "-m", "auren_tui", "export", "--report", "tiers",
                          "--format", "json", "--since", "1h", "--source", "stream"],
                         cwd=ROOT, env=env, capture_output=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    rows = {r["tier"]: r for r in json.loads(out.stdout)["tiers"]}
    for name, usd in want.items():
        assert rows[name]["cost_usd"] == pytest.approx(usd, abs=1e-9)
    # and /metrics
    _status, _, body = http_get(port, "/metrics")
    m = _samples(body.decode())
    for name, usd in want.items():
        assert _sum(m, "auren_tier_cost_usd_total", tier=name) == pytest.approx(usd, abs=1e-9)


def test_a_bad_tier_cost_is_a_one_line_error(tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "auren.toml"
    config.write_text("[tier_costs]\nredis = -1\n")
    env = {**os.environ, "AUREN_REDIS_URL": redis_url, "AUREN_CONFIG": str(config)}
    p = subprocess.run([sys.executable, "-m", "auren_tui", "serve-ws", "--auth", "none",
                        "--port", str(free_port())], cwd=ROOT, env=env, capture_output=True,
                       timeout=60)  # fmt: skip
    err = p.stderr.decode().strip()
    assert p.returncode != 0 and "Traceback" not in err
    assert "tier_costs.redis" in err and len(err.splitlines()) == 1, err


def test_tiered_memory_prices_at_the_source_from_tier_costs(
    redis_url: str, pg_dsn: str, tmp_path: Path
) -> None:
    from auren_core.config import load_settings
    from auren_core.memory import TieredMemory

    s = load_settings(
        redis_url=redis_url,
        pg_dsn=pg_dsn,
        data_dir=str(tmp_path),
        tier_costs={"redis": 0.001, "chromadb": 0.01},
        tool_costs={"memory:chromadb": 0.02},  # the older spelling wins where both are set
    )
    mem = TieredMemory.from_settings(s)
    try:
        assert mem.tier_costs_usd == {"redis": 0.001, "chromadb": 0.02}
    finally:
        mem.close()
