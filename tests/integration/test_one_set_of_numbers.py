"""One recording, one set of numbers: ``auren top --once --json``, a real ``auren serve-ws``
(its HTTP API and WebSocket snapshot) and every ``auren export`` report (CLI, JSON and CSV,
and the same export over HTTP) agree, number for number, on a recording full of edge cases.

The recording goes into a real Redis stream; the commands run as subprocesses with an
``auren.toml`` (``AUREN_CONFIG``) that configures tool prices. Edge cases: token counts that
are negative, huge, missing, a string, a float, a bool or null; unpriced models, a negative
and an absurd price; failed calls with and without tokens; tools with a price, without one,
with a configured price, with an invalid configured price, failing; every memory tier under
every alias (latency, cost and error maps), a tier alias where the schema wants the event
name, misses with and without a query, costs by tier and by load; knowledge hits and misses;
delegations, questions and an A2A hand-off; a flow; an undecodable entry.

The expected figures are written out by hand from the rules (auren_core.rules), so the
outputs agree on the *right* numbers, not merely with each other.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from server_helpers import http_get
from websockets.asyncio.client import connect

from auren_core import rules
from auren_core.events import encode, make_event
from auren_core.export import ALL, render

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-9  # USD: every output rounds to 10 decimals; sums may differ in the last bit

# --------------------------------------------------------------------------- the recording
TOOL_COSTS_TOML = """
[tool_costs]
web_search = 0.005
sleep_log = -3.0   # not a price: ignored (the call costs 0)
"""


def recording(now: float) -> tuple[list[bytes], int]:
    """Encoded stream entries, oldest first, and how many of them are malformed."""
    out: list[bytes] = []
    bad = 0
    t = [now - 200.0]

    def add(type_: str, payload: dict[str, Any], agent: str | None, run: str | None) -> None:
        t[0] += 1.0
        out.append(encode(make_event(type_, payload, agent=agent, run=run, ts=t[0])))

    def llm(agent: str | None, run: str | None, **p: Any) -> None:
        add("llm_call", {"model": "gpt-4o-mini", "provider": "openai", **p}, agent, run)

    for aid, role in (("neuro", "Neuroscientist"), ("sleep", "Sleep Specialist"),
                      ("nutri", "Nutritionist"), ("coach", "Training Coach")):  # fmt: skip
        add("agent_registered", {"role": role, "model": "gpt-4o-mini", "capabilities": [aid]},
            aid, None)  # fmt: skip
    add("crew_started", {"crew": "auren", "inputs": {"query": "sleep plan"}}, None, "r1")
    add("crew_started", {"crew": "auren", "inputs": {"query": "diet plan"}}, None, "r2")

    # LLM calls
    llm("neuro", "r1", input_tokens=100, output_tokens=20, cached_tokens=10,
        reasoning_tokens=5, cost_usd=0.002)  # fmt: skip
    llm("neuro", "r1", input_tokens=-50, output_tokens=30, cost_usd=0.001)  # negative: 0
    llm("neuro", "r1", input_tokens=10**12, output_tokens=7, cost_usd=0.0005)  # absurd: 0
    llm("sleep", "r1", cost_usd=0.003)  # no token counts at all: 0
    for odd in ("120", 12.7, True, None):  # not a JSON integer: malformed everywhere
        llm("sleep", "r1", input_tokens=odd, output_tokens=3, cost_usd=0.1)
        bad += 1
    llm("nutri", "r2", model="mystery-model", input_tokens=40, output_tokens=4, cost_usd=None)
    llm("nutri", "r2", input_tokens=60, output_tokens=6, cost_usd=-1.0)  # not a price: unknown
    llm("nutri", "r2", input_tokens=0, output_tokens=0, cost_usd=None, ok=False,
        error="refused")  # failed before a token: costs 0  # fmt: skip
    llm("coach", "r2", input_tokens=30, output_tokens=0, cost_usd=None, ok=False,
        error="timeout")  # failed after using tokens: unpriced  # fmt: skip
    llm("coach", "r2", input_tokens=5, output_tokens=5, cost_usd=5_000_000.0)  # absurd: unknown
    llm(None, None, input_tokens=11, output_tokens=1, cost_usd=0.0001)  # no agent, no run

    # tools
    add("tool_used", {"tool": "web_search", "duration_ms": 100.0}, "neuro", "r1")  # configured
    add("tool_used", {"tool": "pubmed", "cost_usd": 0.01}, "neuro", "r1")
    add("tool_used", {"tool": "sleep_log"}, "sleep", "r1")  # invalid configured price: 0
    add("tool_used", {"tool": "web_search", "ok": False, "error": "503"}, "sleep", "r1")
    add("tool_used", {"tool": "web_search", "cost_usd": -0.2}, "nutri", "r2")  # -> configured
    add("tool_used", {"tool": "food_db", "cost_usd": 0.0}, "nutri", "r2")

    # memory loads: every tier, every alias
    def load(agent: str, run: str, tier: str, lat: dict[str, float], **p: Any) -> None:
        add("memory_tier_access", {"tier_accessed": tier, "latency_by_tier": lat,
                                   "items_retrieved": 0 if tier == "miss" else 2, **p},
            agent, run)  # fmt: skip

    load("neuro", "r1", "redis_immediate", {"redis": 0.5}, query="hrv baseline", cost_usd=0.0001)
    load("neuro", "r1", "postgresql_structured", {"redis_immediate": 0.4, "postgres": 6.0},
         query="sleep debt", cost_by_tier={"redis": 0.00002, "postgresql_structured": 0.0003},
         cost_usd=0.00032)  # fmt: skip
    load("sleep", "r1", "chromadb_semantic",
         {"redis": 0.3, "postgresql_structured": 4.0, "chroma": 30.0}, query="melatonin",
         errors={"postgres": "timeout"})  # fmt: skip
    load(
        "sleep",
        "r1",
        "miss",
        {"redis": 0.3, "postgresql": 5.0, "chromadb_semantic": 40.0},
        query="ferritin range",
        cost_usd=0.0004,
    )  # miss: charged to the deepest tier tried
    load("nutri", "r2", "miss", {"redis": 0.2}, query="ferritin range")
    load("nutri", "r2", "miss", {}, cost_usd=0.0002)  # no query, no tier named: chromadb
    load("neuro", "r1", "chromadb_semantic", {"redis": 0.7, "postgresql": 3.0, "chromadb": 25.0},
         query="hrv baseline", errors={"chroma": "slow"})  # fmt: skip
    load("sleep", "r1", "redis", {"redis": 0.9}, query="alias")  # schema wants redis_immediate
    bad += 1

    # knowledge
    add("knowledge_access", {"item": "hrv-norms", "source": "chromadb"}, "neuro", "r1")
    add("knowledge_access", {"item": "sleep-stages", "hit": True}, "sleep", "r1")
    add("knowledge_access", {"item": "sleep-stages", "hit": False, "query": "REM norms"},
        "sleep", "r1")  # fmt: skip
    add("knowledge_access", {"item": "macro-table", "hit": False}, "nutri", "r2")
    add("knowledge_access", {"item": "hrv-norms"}, "neuro", "r1")

    # collaboration
    add("collaboration", {"to_agent": "sleep", "kind": "delegate"}, "neuro", "r1")
    add("collaboration", {"to_agent": "sleep", "kind": "delegate"}, "neuro", "r1")
    add("collaboration", {"to_agent": "neuro", "kind": "ask"}, "sleep", "r1")
    add("collaboration", {"to_agent": "remote-lab", "kind": "a2a", "ok": True}, "neuro", "r2")

    # a flow, and the runs' ends
    add("flow_started", {"flow": "PlanFlow"}, None, "fl-1")
    add("flow_step", {"flow": "PlanFlow", "method": "draft", "phase": "started"}, None, "fl-1")
    add("flow_step", {"flow": "PlanFlow", "method": "draft", "phase": "completed",
                      "duration_ms": 900.0, "ok": True}, None, "fl-1")  # fmt: skip
    add("flow_completed", {"flow": "PlanFlow", "duration_ms": 1000.0}, None, "fl-1")
    add("crew_completed", {"crew": "auren", "duration_ms": 9000.0}, None, "r1")
    add("crew_completed", {"crew": "auren", "ok": False, "error": "x"}, None, "r2")
    out.append(b"{not json")
    bad += 1
    return out, bad


# the figures, by hand, from the rules
TOTALS = {
    "llm_calls": 10,
    "input_tokens": 100 + 0 + 0 + 0 + 40 + 60 + 0 + 30 + 5 + 11,
    "output_tokens": 20 + 30 + 7 + 0 + 4 + 6 + 0 + 0 + 5 + 1,
    "cached_tokens": 10,
    "reasoning_tokens": 5,
    "unpriced_llm_calls": 4,
    "llm_errors": 2,
    "tool_calls": 6,
    "tool_errors": 1,
    "llm_cost_usd": 0.002 + 0.001 + 0.0005 + 0.003 + 0.0001,
    "tool_cost_usd": 0.005 + 0.01 + 0.0 + 0.005 + 0.005 + 0.0,
    "memory_cost_usd": 0.0001 + 0.00032 + 0.0004 + 0.0002,
}
TOTALS["cost_usd"] = TOTALS["llm_cost_usd"] + TOTALS["tool_cost_usd"] + TOTALS["memory_cost_usd"]
AGENTS = {  # id: input, output, llm calls, tool calls, unpriced, cost (LLM + tools + memory)
    "neuro": (100, 57, 3, 2, 0, 0.0035 + 0.015 + 0.00042),
    "sleep": (0, 0, 1, 2, 0, 0.003 + 0.005 + 0.0004),
    "nutri": (100, 10, 3, 2, 2, 0.0 + 0.005 + 0.0002),
    "coach": (35, 5, 2, 0, 2, 0.0),  # every call unpriced: the exports say null (unknown)
}
TIER_COUNTS = {  # tier: tried, hits, errors, cost
    "redis": (6, 1, 0, 0.00012),
    "postgresql": (4, 1, 1, 0.0003),
    "chromadb": (3, 2, 1, 0.0006),
}
MEMORY_GAPS = {"ferritin range": (2, ["nutri", "sleep"]), rules.NO_QUERY: (1, ["nutri"])}
KNOWLEDGE_GAPS = {"REM norms": (1, ["sleep"]), "macro-table": (1, ["nutri"])}
EDGES = {("neuro", "sleep", "delegate"): 2, ("sleep", "neuro", "ask"): 1,
         ("neuro", "remote-lab", "a2a"): 1}  # fmt: skip


# --------------------------------------------------------------------------- running it all
def _env(redis_url: str, stream: str, config: Path) -> dict[str, str]:
    return {**os.environ, "AUREN_REDIS_URL": redis_url, "AUREN_STREAM": stream,
            "AUREN_CONFIG": str(config)}  # fmt: skip


def _auren(env: dict[str, str], *args: str) -> bytes:
    p = subprocess.run([sys.executable, "-m", "auren_tui", *args], cwd=ROOT, env=env,
                       capture_output=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve_ws(redis_url: str, stream: str, tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    config = tmp_path / "auren.toml"
    config.write_text(TOOL_COSTS_TOML)
    env = _env(redis_url, stream, config)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "auren_tui", "serve-ws", "--auth", "none", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield port, env
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _get_json(port: int, path: str) -> Any:
    status, _, body = http_get(port, path)
    assert status == 200, body[:300]
    return json.loads(body)


def _wait_for(port: int, entries: int, deadline_s: float = 30.0) -> None:
    """Until the server's reducer has read every entry of the recording."""
    end = time.monotonic() + deadline_s
    seen = None
    while time.monotonic() < end:
        try:
            status, _, body = http_get(port, "/healthz")
        except OSError:
            status, body = 0, b""
        if status == 200:
            seen = json.loads(body)
            snap = asyncio.run(_ws_snapshot(port))
            if snap["health"]["events_total"] >= entries:
                return
        time.sleep(0.2)
    raise AssertionError(f"serve-ws never read the whole recording ({seen})")


async def _ws_snapshot(port: int) -> dict[str, Any]:
    async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "since": "now"}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert frame["type"] == "snapshot"
    return frame["state"]  # type: ignore[no-any-return]


def _csv_tables(data: bytes) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    name = None
    for row in csv.reader(io.StringIO(data.decode())):
        if row and row[0].startswith("# report: "):
            name = row[0].removeprefix("# report: ")
            out[name] = []
        elif row and name is not None:
            out[name].append(row)
    return out


# --------------------------------------------------------------------------- the comparisons
def _num(x: Any) -> float:
    return 0.0 if x is None else float(x)


def _check_snapshot(snap: dict[str, Any], malformed: int, where: str) -> None:
    """One snapshot (top, WebSocket) against the figures by hand."""
    t = snap["totals"]
    for k, want in TOTALS.items():
        assert t[k] == pytest.approx(want, abs=TOL), (where, k)
    agents = {a["id"]: a for a in snap["agents"]}
    assert set(agents) == set(AGENTS), where
    for aid, (inp, out, calls, tools, unp, cost) in AGENTS.items():
        a = agents[aid]
        got = (a["input_tokens"], a["output_tokens"], a["llm_calls"], a["tool_calls"],
               a["unpriced_llm_calls"])  # fmt: skip
        assert got == (inp, out, calls, tools, unp), (where, aid)
        assert a["cost_usd"] == pytest.approx(cost, abs=TOL), (where, aid)
    ti = snap["tiers"]
    for name, (tried, hits, errors, cost) in TIER_COUNTS.items():
        v = ti[name]
        assert (v["tried"], v["hits"], v["errors"]) == (tried, hits, errors), (where, name)
        assert v["cost_usd"] == pytest.approx(cost, abs=TOL), (where, name)
    assert (ti["queries"], ti["misses"]) == (7, 3), where
    assert {g["query"]: (g["count"], g["agents"]) for g in ti["gaps"]} == MEMORY_GAPS, where
    k = snap["knowledge"]
    assert (k["accesses"], k["hit_rate"]) == (5, 0.6), where
    assert {g["query"]: (g["count"], g["agents"]) for g in k["gaps"]} == KNOWLEDGE_GAPS, where
    assert {(e["from"], e["to"], e["kind"]): e["count"] for e in snap["collaboration"]} == EDGES
    assert snap["health"]["malformed"] == malformed, where


def _same_numbers(a: dict[str, Any], b: dict[str, Any], where: str) -> None:
    """Two snapshots of the same events: every number that does not depend on when it was
    taken is equal."""
    assert a["totals"] == b["totals"], where
    timeless = ("usd_per_hour", "cost_per_minute", "status", "current_load")
    strip = lambda xs: sorted(({k: v for k, v in x.items() if k not in timeless}  # noqa: E731
                               for x in xs), key=lambda x: x["id"])  # fmt: skip
    assert strip(a["agents"]) == strip(b["agents"]), where
    assert a["tiers"] == b["tiers"], where
    assert a["knowledge"] == b["knowledge"], where
    assert a["collaboration"] == b["collaboration"], where
    runs = lambda s: {r["run"]: r for r in s["costs"]["runs"]}  # noqa: E731
    assert runs(a) == runs(b), where
    flows = lambda s: [{k: f[k] for k in ("run", "flow", "status", "duration_ms", "cost_usd",  # noqa: E731
                                          "steps_completed")} for f in s["flows"]]  # fmt: skip
    assert flows(a) == flows(b), where
    for k in ("malformed", "unknown_types", "events_total"):
        assert a["health"][k] == b["health"][k], (where, k)


def _check_exports_against_snapshot(tables: dict[str, Any], snap: dict[str, Any]) -> None:
    t = snap["totals"]
    # tokens: LLM calls per agent and day (summed over days: a run may cross midnight)
    tok: dict[str, list[Any]] = defaultdict(lambda: [0] * 7 + [0.0])
    for r in tables["tokens"]:
        acc = tok[r["agent"]]
        for j, key in enumerate(("llm_calls", "input_tokens", "output_tokens", "cached_tokens",
                                 "reasoning_tokens", "unpriced_calls", "llm_errors")):  # fmt: skip
            acc[j] += r[key]
        acc[7] += _num(r["llm_cost_usd"])
    summed = [sum(v[j] for v in tok.values()) for j in range(8)]
    assert summed[:7] == [t["llm_calls"], t["input_tokens"], t["output_tokens"],
                          t["cached_tokens"], t["reasoning_tokens"], t["unpriced_llm_calls"],
                          t["llm_errors"]]  # fmt: skip
    assert summed[7] == pytest.approx(t["llm_cost_usd"], abs=TOL)
    # costs: per dimension; cost_usd = LLM + tools + memory everywhere
    costs = {(r["dimension"], r["key"]): r for r in tables["costs"]}
    by_agent = [r for r in tables["costs"] if r["dimension"] == "agent"]
    for key, part in (
        ("cost_usd", "cost_usd"),
        ("llm_cost_usd", "llm_cost_usd"),
        ("tool_cost_usd", "tool_cost_usd"),
        ("memory_cost_usd", "memory_cost_usd"),
    ):
        assert sum(_num(r[key]) for r in by_agent) == pytest.approx(t[part], abs=TOL), key
    assert sum(r["tool_calls"] for r in by_agent) == t["tool_calls"]
    assert sum(r["tool_calls"] for r in tables["costs"] if r["dimension"] == "tool") == 6
    assert sum(_num(r["tool_cost_usd"]) for r in tables["costs"] if r["dimension"] == "tool") == (
        pytest.approx(t["tool_cost_usd"], abs=TOL)
    )
    for a in snap["agents"]:
        row = costs[("agent", a["id"])]
        assert (row["llm_calls"], row["tool_calls"], row["input_tokens"],
                row["output_tokens"], row["unpriced_calls"]) == (
            a["llm_calls"], a["tool_calls"], a["input_tokens"], a["output_tokens"],
            a["unpriced_llm_calls"])  # fmt: skip
        if row["cost_usd"] is None:  # unknown: only unpriced calls, nothing else priced
            assert a["cost_usd"] == 0 and a["unpriced_llm_calls"] == a["llm_calls"] > 0
            assert a["tool_calls"] == 0
        else:
            assert row["cost_usd"] == pytest.approx(a["cost_usd"], abs=TOL), a["id"]
        trow = tok[a["id"]]
        assert trow[:3] == [a["llm_calls"], a["input_tokens"], a["output_tokens"]], a["id"]
        used = {u["tool"]: u["count"] for u in a["tools_used"]}
        exported = {k: r["tool_calls"] for (d, k), r in costs.items() if d == "tool"}
        assert all(exported[tool] >= n for tool, n in used.items())
    assert costs[("agent", "coach")]["cost_usd"] is None
    for name in rules.TIERS:
        assert costs[("tier", name)]["memory_cost_usd"] == pytest.approx(
            snap["tiers"][name]["cost_usd"], abs=TOL
        )
    for run in snap["costs"]["runs"]:
        row = costs.get(("query", run["run"]))
        if row is None:  # a run with no call (the flow's own run here)
            assert run["llm_calls"] == 0 and run["cost_usd"] == 0
            continue
        keys = ("llm_calls", "input_tokens", "output_tokens")
        assert [row[k] for k in keys] == [run[k] for k in keys]
        assert row["unpriced_calls"] == run["unpriced_llm_calls"]
        assert _num(row["cost_usd"]) == pytest.approx(run["cost_usd"], abs=TOL)
    # tiers: every figure of the snapshot's, by the same rules and percentile method
    tiers = {r["tier"]: r for r in tables["tiers"]}
    for name in rules.TIERS:
        s, e = snap["tiers"][name], tiers[name]
        assert (e["served"], e["tried"], e["errors"]) == (s["hits"], s["tried"], s["errors"])
        for ek, sk in (("share", "share"), ("hit_rate", "hit_rate"),
                       ("fall_through_rate", "fall_through_rate"), ("p50_ms", "p50_ms"),
                       ("p95_ms", "p95_ms"), ("mean_ms", "mean_ms")):  # fmt: skip
            assert e[ek] == s[sk], (name, ek)
        assert e["cost_usd"] == pytest.approx(s["cost_usd"], abs=TOL)
    assert tiers["miss"]["served"] == snap["tiers"]["misses"]
    assert tiers["miss"]["share"] == snap["tiers"]["miss_rate"]
    # knowledge gaps: one definition
    for source, snap_gaps in (("memory", snap["tiers"]["gaps"]),
                              ("knowledge", snap["knowledge"]["gaps"])):  # fmt: skip
        got: dict[str, list[Any]] = defaultdict(lambda: [0, set()])
        for r in tables["gaps"]:
            if r["source"] == source:
                got[r["query"]][0] += r["count"]
                got[r["query"]][1].add(r["agent"])
        assert {q: (n, sorted(a)) for q, (n, a) in got.items()} == {
            g["query"]: (g["count"], g["agents"]) for g in snap_gaps
        }, source
    # knowledge: accesses, hits per item and agent
    items = [r for r in tables["knowledge"] if r["kind"] == "item"]
    k = snap["knowledge"]
    assert sum(r["accesses"] for r in items) == k["accesses"]
    assert round(sum(r["hits"] for r in items) / k["accesses"], 6) == k["hit_rate"]
    hits: dict[str, int] = defaultdict(int)
    for r in items:
        hits[r["item"]] += r["hits"]
    assert {i: n for i, n in zip(k["items"], k["item_totals"], strict=True)} == {
        i: n for i, n in hits.items() if n
    }
    memory = [r for r in tables["knowledge"] if r["kind"] == "query"]
    assert sum(r["accesses"] for r in memory) == snap["tiers"]["queries"]
    assert sum(r["misses"] for r in memory) == snap["tiers"]["misses"]
    # collaboration
    assert {(r["from_agent"], r["to_agent"], r["kind"]): r["count"]
            for r in tables["collaboration"]} == {
        (e["from"], e["to"], e["kind"]): e["count"] for e in snap["collaboration"]
    }  # fmt: skip
    # flows: outcomes and durations of the same records
    (flow,) = [r for r in tables["flows"] if r["level"] == "flow"]
    (sflow,) = snap["flows"]
    assert (flow["flow"], flow["runs"], flow["completed"]) == (sflow["flow"], 1, 1)
    assert flow["mean_duration_ms"] == sflow["duration_ms"]
    assert flow["steps_completed"] == sflow["steps_completed"]


def test_top_serve_ws_api_and_every_export_agree(
    redis_url: str, stream: str, serve_ws: tuple[int, dict[str, str]], tmp_path: Path
) -> None:
    port, env = serve_ws
    entries, malformed = recording(time.time())
    r = redis.Redis.from_url(redis_url)
    pipe = r.pipeline(transaction=False)
    for raw in entries:
        pipe.xadd(stream, {"e": raw})
    pipe.execute()

    # auren top --once --json
    top = json.loads(_auren(env, "top", "--once", "--json", "--since", "1h"))
    _check_snapshot(top, malformed, "top")

    # auren serve-ws: the WebSocket snapshot and the HTTP API
    _wait_for(port, len(entries))
    ws = asyncio.run(_ws_snapshot(port))
    _check_snapshot(ws, malformed, "websocket")
    _same_numbers(top, ws, "top vs websocket")
    active = _get_json(port, "/api/v2/agents/active")
    assert active["count"] == len(AGENTS)
    assert active["active_count"] == active["count"] == len(top["agents"])
    # the API writes last_activity in ISO 8601 (the epoch seconds as last_activity_ts)
    api_agents = []
    for a in active["agents"]:
        assert a["last_activity"].endswith("Z"), a["last_activity"]
        api_agents.append({**{k: v for k, v in a.items() if k != "last_activity_ts"},
                           "last_activity": a["last_activity_ts"]})  # fmt: skip
    _same_numbers(top, {**ws, "agents": api_agents}, "top vs /api/v2/agents/active")
    stats = _get_json(port, "/api/v2/memory/tier-stats")
    for name in rules.TIERS:
        s = top["tiers"][name]
        assert stats["tier_hit_rates"][name] == s["share"]
        assert stats["local_hit_rates"][name] == s["hit_rate"]
        assert stats["hits"][name] == s["hits"] and stats["tried"][name] == s["tried"]
        assert stats["p50_latencies_ms"][name] == s["p50_ms"]
        assert stats["p95_latencies_ms"][name] == s["p95_ms"]
        assert stats["average_latencies_ms"][name] == s["mean_ms"]
        assert stats["cost_by_tier"][name] == s["cost_usd"]
        assert stats["fall_through_rates"][name] == s["fall_through_rate"]
    assert (stats["queries"], stats["misses"], stats["miss_rate"]) == (
        top["tiers"]["queries"], top["tiers"]["misses"], top["tiers"]["miss_rate"])  # fmt: skip
    # another window: a fresh reducer over XRANGE, the same rules
    stats24 = _get_json(port, "/api/v2/memory/tier-stats?window_hours=24")
    for key in ("tier_hit_rates", "local_hit_rates", "p50_latencies_ms", "p95_latencies_ms",
                "cost_by_tier", "hits", "tried"):  # fmt: skip
        assert stats24[key] == stats[key], key
    flows = _get_json(port, "/api/v2/flows")
    assert [(f["run"], f["status"]) for f in flows["flows"]] == [
        (f["run"], f["status"]) for f in top["flows"]
    ]

    # auren export, every report, JSON and CSV; and the same over HTTP
    exported = json.loads(_auren(env, "export", "--report", "all", "--format", "json",
                                 "--since", "1h", "--source", "stream"))  # fmt: skip
    assert set(exported) == set(ALL)  # every report but analytics
    _check_exports_against_snapshot(exported, top)
    # CSV: one file per report in -o DIR, each the same numbers, cell for cell
    csv_dir = tmp_path / "csv"
    _auren(env, "export", "--report", "all", "--format", "csv", "--since", "1h",
           "--source", "stream", "-o", str(csv_dir))  # fmt: skip
    assert sorted(p.name for p in csv_dir.iterdir()) == sorted(f"{r}.csv" for r in ALL)
    for name, rows in exported.items():
        assert (csv_dir / f"{name}.csv").read_bytes() == render({name: rows}, "csv")
    as_csv = render(exported, "csv")
    sections = _csv_tables(as_csv)
    assert set(sections) == set(ALL)
    assert sections["tokens"][0][8] == "llm_cost_usd"  # renamed: LLM-only, not cost_usd
    status, _, body = http_get(port, "/api/v2/export/analytics?format=json&report=all")
    assert status == 200 and json.loads(body) == exported
    status, _, body = http_get(port, "/api/v2/export/analytics?format=csv&report=all")
    assert status == 200 and body == as_csv


def test_postgresql_rollups_count_by_the_same_rules(pg_dsn: str) -> None:
    """The daily rollups (SQL) of the same recording give the export the same tokens and
    costs as its detailed events: token coercion, unknown prices, the failed-call rule,
    tool prices applied to unpriced tool calls, memory costs by tier."""
    import uuid

    import asyncpg

    from auren_core.events import Event, decode
    from auren_core.export import build_reports
    from auren_core.store import ensure_schema, rollup_day
    from auren_core.store.queries import fetch_aggregates
    from auren_core.store.writer import Writer

    day0 = 1_767_225_600.0 + 12 * 3600  # noon UTC: the recording stays inside one day
    items = [decode(raw, f"{i + 1}-0") for i, raw in enumerate(recording(day0)[0])]
    events = [e for e in items if isinstance(e, Event)]  # what the sink stores
    schema = f"t_rules_{uuid.uuid4().hex[:10]}"
    prices = {"web_search": 0.005, "sleep_log": -3.0}

    async def rolled_up() -> list[dict[str, Any]]:
        import datetime as dt

        c = await asyncpg.connect(pg_dsn)
        try:
            await ensure_schema(c, schema)
            await Writer(c, schema).write(events)
            await rollup_day(c, schema, dt.datetime.fromtimestamp(day0, dt.UTC).date())
            return await fetch_aggregates(c, schema)
        finally:
            await c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await c.close()

    aggs = asyncio.run(rolled_up())
    detail = build_reports(events, ["tokens", "costs"], tool_costs=prices)
    rolled = build_reports([], ["tokens", "costs"], aggregates=aggs, tool_costs=prices)
    assert rolled["tokens"] == [{**r, "reasoning_tokens": 0} for r in detail["tokens"]]
    # rollups keep no run (no query rows), and a day's memory cost goes to the tier that
    # served the loads (a cost_by_tier split is not kept): tiers are compared as a sum
    keep = ("agent", "model", "tool")
    mem = [sum(_num(r["memory_cost_usd"]) for r in t["costs"] if r["dimension"] == "tier")
           for t in (detail, rolled)]  # fmt: skip
    assert mem[0] == pytest.approx(mem[1], abs=TOL) and mem[0] == pytest.approx(
        TOTALS["memory_cost_usd"], abs=TOL
    )
    want = {(r["dimension"], r["key"]): r for r in detail["costs"] if r["dimension"] in keep}
    got = {(r["dimension"], r["key"]): r for r in rolled["costs"] if r["dimension"] in keep}
    assert set(got) == set(want)
    for k, w in want.items():
        g = got[k]
        for col in ("llm_calls", "tool_calls", "input_tokens", "output_tokens", "unpriced_calls"):
            assert g[col] == w[col], (k, col)
        for col in ("cost_usd", "llm_cost_usd", "tool_cost_usd", "memory_cost_usd"):
            assert (g[col] is None) == (w[col] is None), (k, col)
            assert _num(g[col]) == pytest.approx(_num(w[col]), abs=TOL), (k, col)
    assert sum(_num(r["cost_usd"]) for r in rolled["costs"] if r["dimension"] == "agent") == (
        pytest.approx(TOTALS["cost_usd"], abs=TOL)
    )
