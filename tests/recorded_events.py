"""A recorded event set for the dashboard's snapshot and Pilot tests.

Deterministic: fixed ids, timestamps relative to ``FROZEN_NOW`` and stream ids derived
from them, so a frozen clock gives byte-identical screens. It exercises every pane:
a crew of AUREN specialists with LLM calls (priced and unpriced), tools, delegations
and questions, hypotheses, memory-tier lookups down to misses, knowledge accesses with
gaps, publisher drops, one malformed entry, one unknown type and hostile strings.

Flows: one waiting for a human (paused in its review step, a crew kicked off inside it),
one running (an agent kicked off inside it, with reasoning tokens), one completed and one
failed (with a hostile method name); the coach waits for a human's answer too, and the
neuroscientist delegates to a remote agent over A2A.

For the analytics screen: seven hours of older LLM calls (before the dashboard's one-hour
window) give the forecast a history, a query served again and again from PostgreSQL
earns a caching recommendation, the coach repeats one tool call (a planted loop) and the
nutritionist asks three times for something no tier holds (a planted gap).
"""

from __future__ import annotations

from typing import Any

import msgspec

from auren_core.events import Event, Malformed

__all__ = [
    "AGENTS",
    "FLOW_WAITING",
    "FROZEN_NOW",
    "GAP_QUERY",
    "HOSTILE_ROLE",
    "LOOP_TOOL",
    "frozen_clock",
    "recorded",
    "to_stream",
]

FROZEN_NOW = 1_764_100_800.0  # 2025-11-25 20:00:00 UTC
HOSTILE_ROLE = "[bold red]Evil[/] \x1b[31mroot\x1b[0m \u202etxt.exe"
LOOP_TOOL = "whoop_api"  # the coach calls it with the same arguments four times running
GAP_QUERY = "ferritin range"  # asked three times, answered by no tier
FLOW_WAITING = "AthletePlanFlow"  # paused in review_plan, waiting for a human
HOSTILE_METHOD = "render_pdf\x1b[31m[red]boom[/red]"
# USD per million tokens (blended) for the history's LLM calls
_PRICE = {"gpt-4o": 5.0, "gpt-4o-mini": 0.3, "claude-3-5-haiku": 1.6}

AGENTS: tuple[tuple[str, str, str, list[str], list[str]], ...] = (
    ("neuro", "Neuroscientist", "gpt-4o", ["hrv", "cns"], ["pubmed_search", "hrv_analyzer"]),
    ("sleep", "Sleep Specialist", "gpt-4o-mini", ["sleep", "circadian"], ["sleep_log"]),
    ("nutri", "Nutritionist", "gpt-4o-mini", ["diet", "macros"], ["food_db"]),
    ("coach", "Training Coach", "claude-3-5-haiku", ["load", "recovery"], ["whoop_api"]),
    ("evil", HOSTILE_ROLE, "mystery-model-x", ["\x07bell", "[link=x]y[/link]"], ["rm -rf /"]),
)


def frozen_clock() -> float:
    return FROZEN_NOW


class _Builder:
    def __init__(self) -> None:
        self.items: list[Event | Malformed] = []
        self.n = 0

    def add(
        self,
        age_s: float,
        type: str,
        agent: str | None,
        payload: dict[str, Any],
        run: str | None = "run-1",
    ) -> None:
        self.n += 1
        ts = round(FROZEN_NOW - age_s, 3)
        sid = f"{int(ts * 1000)}-{self.n}"
        self.items.append(
            Event(
                id=f"rec-{self.n}", ts=ts, type=type, agent=agent, run=run, payload=payload, sid=sid
            )
        )


def _history(b: _Builder) -> None:
    """Hours 8 to 1 before ``FROZEN_NOW``: LLM calls with a rising trend, and one query
    fetched from PostgreSQL seven times (out of the dashboard's window, in the forecast's)."""
    for k in range(7):
        hour_age = (8 - k) * 3600
        for c in range(11):
            for j, (aid, _role, model, _caps, _tools) in enumerate(AGENTS[:4]):
                if c >= 8 + (k + j) % 4:
                    continue
                tokens_in, tokens_out = 1800 + 150 * k + 40 * j, 300 + 20 * k
                b.add(
                    hour_age - 120 - c * 300 - j * 30,
                    "llm_call",
                    aid,
                    {
                        "model": model,
                        "input_tokens": tokens_in,
                        "output_tokens": tokens_out,
                        "cost_usd": round((tokens_in + tokens_out) * _PRICE[model] / 1e6, 6),
                        "cost_source": "genai-prices",
                        "latency_ms": 700.0,
                    },
                    "run-0",
                )
        b.add(
            hour_age - 3300,
            "memory_tier_access",
            "neuro",
            {
                "tier_accessed": "postgresql_structured",
                "query": "hrv baseline",
                "latency_by_tier": {"redis": 0.4, "postgresql": 6.0 + k},
                "items_retrieved": 1,
            },
            "run-0",
        )


def _planted(b: _Builder) -> None:
    """A loop (same tool, same arguments, four times, LLM calls between) and a gap."""
    for n in range(4):
        age = 150 - n * 15
        b.add(
            age,
            "llm_call",
            "coach",
            {"model": "claude-3-5-haiku", "input_tokens": 900, "output_tokens": 40,
             "cost_usd": 0.004, "cost_source": "genai-prices", "latency_ms": 600.0},
            "run-4",
        )  # fmt: skip
        b.add(
            age - 1,
            "tool_used",
            "coach",
            {"tool": LOOP_TOOL, "args": {"athlete": "a-17", "metric": "strain"},
             "duration_ms": 80.0, "ok": True},
            "run-4",
        )  # fmt: skip
    for age in (140, 100, 65):
        b.add(
            age,
            "memory_tier_access",
            "nutri",
            {"tier_accessed": "miss", "query": GAP_QUERY, "items_retrieved": 0,
             "latency_by_tier": {"redis": 0.3, "postgresql": 4.0, "chromadb": 25.0}},
            "run-4",
        )  # fmt: skip


def _flows(b: _Builder) -> None:
    """Four flow runs: completed, failed, waiting for a human, running."""
    done, failed, waiting, running = "flow-1", "flow-2", "flow-3", "flow-4"
    b.add(1500, "flow_started", None, {"flow": "IntakeFlow", "flow_id": "st-1"}, done)
    for k, method in enumerate(("load_profile", "screen_risks", "assign_team")):
        b.add(1499 - 30 * k, "flow_step", None, {"flow": "IntakeFlow", "method": method,
              "phase": "started"}, done)  # fmt: skip
        b.add(1480 - 30 * k, "flow_step", None, {"flow": "IntakeFlow", "method": method,
              "phase": "completed", "duration_ms": 19000.0, "ok": True}, done)  # fmt: skip
    b.add(1400, "flow_completed", None, {"flow": "IntakeFlow", "duration_ms": 100000.0}, done)

    b.add(900, "flow_started", None, {"flow": "WeeklyReportFlow"}, failed)
    b.add(899, "flow_step", None, {"flow": "WeeklyReportFlow", "method": "collect",
          "phase": "started"}, failed)  # fmt: skip
    b.add(870, "flow_step", None, {"flow": "WeeklyReportFlow", "method": "collect",
          "phase": "completed", "duration_ms": 29000.0, "ok": True}, failed)  # fmt: skip
    b.add(869, "flow_step", None, {"flow": "WeeklyReportFlow", "method": HOSTILE_METHOD,
          "phase": "started"}, failed)  # fmt: skip
    b.add(850, "flow_step", None, {"flow": "WeeklyReportFlow", "method": HOSTILE_METHOD,
          "phase": "failed", "ok": False, "error": "renderer timed out"}, failed)  # fmt: skip
    b.add(849, "flow_failed", None, {"flow": "WeeklyReportFlow", "duration_ms": 51000.0,
          "ok": False, "error": "renderer timed out"}, failed)  # fmt: skip

    b.add(700, "flow_started", None, {"flow": FLOW_WAITING, "inputs": {"athlete": "a-17"}},
          waiting)  # fmt: skip
    b.add(699, "flow_step", None, {"flow": FLOW_WAITING, "method": "draft_plan",
          "phase": "started"}, waiting)  # fmt: skip
    b.add(698, "crew_started", None, {"crew": "auren", "flow_run": waiting}, "run-5")
    b.add(640, "llm_call", "coach", {"model": "claude-3-5-haiku", "input_tokens": 2400,
          "output_tokens": 500, "cost_usd": 0.0031, "cost_source": "genai-prices"},
          "run-5")  # fmt: skip
    b.add(600, "crew_completed", None, {"crew": "auren", "duration_ms": 98000.0}, "run-5")
    b.add(598, "flow_step", None, {"flow": FLOW_WAITING, "method": "draft_plan",
          "phase": "completed", "duration_ms": 101000.0, "ok": True}, waiting)  # fmt: skip
    b.add(597, "flow_step", None, {"flow": FLOW_WAITING, "method": "review_plan",
          "phase": "started"}, waiting)  # fmt: skip
    b.add(596, "flow_step", None, {"flow": FLOW_WAITING, "method": "review_plan",
          "phase": "paused"}, waiting)  # fmt: skip
    b.add(596, "human_input", None, {"state": "requested", "flow": FLOW_WAITING,
          "method": "review_plan", "message": "Approve the 4-week plan for athlete a-17?"},
          waiting)  # fmt: skip

    b.add(130, "flow_started", None, {"flow": "NightlyDigestFlow"}, running)
    b.add(129, "flow_step", None, {"flow": "NightlyDigestFlow", "method": "fetch_metrics",
          "phase": "started"}, running)  # fmt: skip
    b.add(120, "flow_step", None, {"flow": "NightlyDigestFlow", "method": "fetch_metrics",
          "phase": "completed", "duration_ms": 9000.0, "ok": True}, running)  # fmt: skip
    b.add(119, "flow_step", None, {"flow": "NightlyDigestFlow", "method": "summarize",
          "phase": "started"}, running)  # fmt: skip
    b.add(118, "llm_call", "sleep", {"model": "gpt-4o-mini", "input_tokens": 1200,
          "output_tokens": 400, "reasoning_tokens": 250, "cost_usd": 0.0006,
          "cost_source": "genai-prices"}, running)  # fmt: skip


def recorded() -> list[Event | Malformed]:
    """About 700 events: seven hours of LLM-call history, then the last 40 minutes in
    detail, oldest first."""
    b = _Builder()
    _history(b)
    b.add(2400, "crew_started", None, {"crew": "auren", "agents": [a[0] for a in AGENTS]})
    for aid, role, model, caps, tools in AGENTS:
        b.add(
            2399,
            "agent_registered",
            aid,
            {
                "role": role,
                "goal": f"help as {role}",
                "tools": tools,
                "model": model,
                "capabilities": caps,
                "allow_delegation": aid == "neuro",
            },
        )
    queries = [
        "hrv baseline",
        "sleep debt",
        "protein target",
        "deload week",
        "\x1b]0;pwned\x07title",
        "melatonin dose",
    ]
    for i in range(60):
        age = 2300 - i * 37
        aid, role, model, _caps, tools = AGENTS[i % 4]
        run = f"run-{1 + i // 20}"
        b.add(age, "agent_started", aid, {"task_id": f"t{i}"}, run)
        priced = model != "claude-3-5-haiku" or i % 8 == 3
        b.add(
            age - 1,
            "llm_call",
            aid,
            {
                "model": model,
                "provider": "openai",
                "input_tokens": 800 + 37 * i,
                "output_tokens": 120 + 11 * i,
                "cached_tokens": 100 * (i % 3),
                "cost_usd": round(0.0004 * (1 + i % 7), 6) if priced else None,
                "cost_source": "genai-prices" if priced else "unknown",
                "latency_ms": 400 + 13 * i,
                "ok": True,
            },
            run,
        )
        b.add(
            age - 2,
            "tool_used",
            aid,
            {
                "tool": tools[i % len(tools)],
                "args": {"q": queries[i % len(queries)]},
                "duration_ms": 30 + i,
                "ok": i % 11 != 5,
                "cost_usd": 0.001 if i % 3 == 0 else None,
                "from_cache": i % 4 == 0,
            },
            run,
        )
        tier = (
            "redis_immediate",
            "redis_immediate",
            "postgresql_structured",
            "chromadb_semantic",
            "miss",
        )[i % 5]
        lat = {"redis": 0.3 + (i % 5) * 0.1}
        if tier != "redis_immediate":
            lat["postgresql"] = 3.0 + (i % 7)
        if tier in ("chromadb_semantic", "miss"):
            lat["chromadb"] = 20.0 + (i % 9) * 3
        b.add(
            age - 3,
            "memory_tier_access",
            aid,
            {
                "tier_accessed": tier,
                "query": queries[i % len(queries)],
                "latency_by_tier": lat,
                "items_retrieved": 0 if tier == "miss" else 1 + i % 3,
            },
            run,
        )
        b.add(
            age - 4,
            "knowledge_access",
            aid,
            {
                "item": [
                    "hrv-norms",
                    "sleep-stages",
                    "macro-table",
                    "vo2max-curve",
                    "[bold]cortisol[/bold]",
                ][i % 5],
                "source": "chromadb",
                "hit": i % 5 < 3 or i % 2 == 0,
            },
            run,
        )
        if i % 3 == 0:
            to = AGENTS[(i // 3) % 3 + 1][0] if aid == "neuro" else "neuro"
            b.add(
                age - 5,
                "collaboration",
                aid,
                {"to_agent": to, "kind": "delegate" if i % 2 == 0 else "ask"},
                run,
            )
        if i % 10 == 0:
            b.add(
                age - 6,
                "hypothesis",
                aid,
                {
                    "hypothesis_id": f"h{i // 10}",
                    "status": ("formed", "updated", "validated", "rejected")[(i // 10) % 4],
                    "confidence": 0.5 + (i % 5) / 10,
                    "statement": f"HRV drop predicts poor sleep (cohort {i // 10})",
                },
                run,
            )
        b.add(
            age - 7,
            "agent_completed" if i % 13 != 7 else "agent_failed",
            aid,
            {
                "task_id": f"t{i}",
                "duration_ms": 1500 + i,
                **({"error": "tool timeout"} if i % 13 == 7 else {}),
            },
            run,
        )
        if i % 20 == 19:
            b.add(age - 8, "crew_completed", None, {"crew": "auren", "duration_ms": 60000.0}, run)
    _flows(b)
    b.add(
        116,
        "collaboration",
        "neuro",
        {"to_agent": "remote-lab-agent", "kind": "a2a", "ok": True},
        "run-4",
    )
    # the last minutes: busy agents, one still running, the hostile one says hello
    for j in range(12):
        aid, _r, model, _c, _t = AGENTS[j % 3]
        b.add(
            170 - j * 12,
            "llm_call",
            aid,
            {
                "model": model,
                "input_tokens": 1500,
                "output_tokens": 300,
                "cost_usd": 0.0021,
                "cost_source": "genai-prices",
                "latency_ms": 900.0,
            },
            "run-4",
        )
    _planted(b)
    b.add(90, "agent_started", "neuro", {"task_id": "t-live"}, "run-4")
    b.add(
        60,
        "llm_call",
        "evil",
        {
            "model": "mystery-model-x",
            "input_tokens": 66,
            "output_tokens": 6,
            "cost_usd": 0.5,
            "error": "\x1b[2J\x1b[H cleared?",
        },
        "run-4",
    )
    b.add(
        55,
        "tool_used",
        "evil",
        {"tool": "\x1b]52;c;Y3VybCBldmlsCg==\x07copy", "ok": False, "error": "x" * 5000},
        "run-4",
    )
    b.add(
        50,
        "human_input",
        "coach",
        {"state": "requested", "message": "Is athlete a-17 cleared to train?"},
        "run-4",
    )
    b.add(
        40,
        "publisher_stats",
        None,
        {"sent": 5000, "dropped": 17, "queued": 3, "publisher": "host:1:1"},
        None,
    )
    b.add(30, "quantum_entangled", "neuro", {"spooky": True}, "run-4")  # unknown type
    b.items.append(
        Malformed(f"{int((FROZEN_NOW - 20) * 1000)}-999", "bad envelope: not json", b"{nope")
    )
    b.add(
        10,
        "hypothesis",
        "neuro",
        {
            "hypothesis_id": "h-live",
            "status": "formed",
            "confidence": 0.61,
            "statement": "late caffeine \u202eenil siht\u202c shortens deep sleep",
        },
        "run-4",
    )
    return b.items


def to_stream(items: list[Event | Malformed]) -> list[bytes]:
    """The raw stream entries (``e`` field values) of ``items``; malformed ones stay broken."""
    out: list[bytes] = []
    enc = msgspec.json.Encoder()
    for it in items:
        if isinstance(it, Malformed):
            out.append(it.raw)
        else:
            out.append(enc.encode(msgspec.structs.replace(it, sid=msgspec.UNSET)))
    return out
