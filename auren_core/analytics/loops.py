"""Loop and stall detection: agents repeating themselves, or silent with work in flight."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec

from .. import rules
from ..events import AgentEnded, AgentStarted, Event, LlmCall, TaskEnded, TaskStarted, ToolUsed
from ..events.codec import typed_event

__all__ = ["detect_loops", "detect_stalls"]

_enc = msgspec.json.Encoder(order="sorted")
_ARG_KEYS = ("args", "input", "tool_input", "arguments")


def _signature(ev: Event) -> tuple[str, str] | None:
    """What makes two actions "the same": tool + arguments (or their digest, ``args_hash``),
    or the prompt (hash). A tool call whose arguments are unknown is never "the same" as
    another: the same tool with unknown arguments (a delegation to different coworkers, say)
    is not a loop. The arguments and prompts are not fields of the v1 payloads: a producer's
    own fields, read from :meth:`~auren_core.events.model._Payload.extra`."""
    if ev.type == "tool_used":
        tu: ToolUsed = typed_event(ev).payload
        ex = tu.extra()
        key = next((k for k in _ARG_KEYS if ex.get(k) is not None), None)
        if key is not None:
            return ("tool", f"{tu.tool} {_enc.encode(ex[key]).decode()}")
        if digest := tu.args_hash:
            return ("tool", f"{tu.tool} args#{str(digest)[:16]}")
        return None
    if ev.type == "llm_call":
        lc: LlmCall = typed_event(ev).payload
        ex = lc.extra()
        prompt = ex.get("prompt_hash") or ex.get("prompt")
        if prompt:
            return ("prompt", str(prompt)[:200])
    return None


def _cost(ev: Event) -> float:
    """Known cost of an LLM or tool call (auren_core.rules; unknown counts 0 here)."""
    if ev.type == "llm_call":
        return rules.llm_call(typed_event(ev).payload).cost or 0.0
    tu: ToolUsed = typed_event(ev).payload
    return rules.usd(tu.cost_usd) or 0.0


def _tokens(ev: Event) -> int:
    if ev.type == "llm_call":
        c = rules.llm_call(typed_event(ev).payload)
        return c.input_tokens + c.output_tokens
    # a tool_used event counts the tokens its producer added (none of the v1 fields)
    ex = typed_event(ev).payload.extra()
    return rules.tokens(ex.get("input_tokens")) + rules.tokens(ex.get("output_tokens"))


Streak = tuple[tuple[str, str], list[Event], list[Event]]


def _streaks(evs: Sequence[Event]) -> list[Streak]:
    """Maximal runs of one signature; ``spent`` also holds the unsigned llm calls *between*
    the first and the last repeat (not those after it)."""
    out: list[Streak] = []
    cur: Streak | None = None
    between: list[Event] = []
    for ev in evs:
        s = _signature(ev)
        if s is None:
            between.append(ev)
            continue
        if cur is not None and s == cur[0]:
            cur[1].append(ev)
            cur[2].extend(between)
            cur[2].append(ev)
        else:
            if cur is not None:
                out.append(cur)
            cur = (s, [ev], [ev])
        between = []
    if cur is not None:
        out.append(cur)
    return out


def detect_loops(events: Sequence[Event], *, min_repeats: int = 3) -> list[dict[str, Any]]:
    """Runs of >= ``min_repeats`` identical consecutive actions by one agent in one run, one
    entry per (agent, kind, signature): ``repeats`` is its longest run, ``occurrences`` how
    many such runs were seen (in ``runs`` distinct crew runs), and tokens and cost what the
    agent spent from the first repeat to the last, summed over them."""
    acts: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for ev in sorted(events, key=lambda e: e.ts):
        if ev.agent and ev.type in ("tool_used", "llm_call"):
            acts[(ev.agent, ev.run or "")].append(ev)
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for (agent, run), evs in sorted(acts.items()):
        for sig, streak, spent in _streaks(evs):
            if len(streak) < min_repeats:
                continue
            key = (agent, sig[0], sig[1])
            cost = sum(_cost(e) for e in spent)
            tokens = sum(_tokens(e) for e in spent)
            f = found.get(key)
            if f is None:
                found[key] = {
                    "agent": agent, "run": run or None, "kind": sig[0], "signature": sig[1],
                    "repeats": len(streak), "occurrences": 1, "runs": {run},
                    "first_ts": streak[0].ts, "last_ts": streak[-1].ts,
                    "cost_usd": cost, "tokens": tokens,
                    "repeat_cost_usd": cost * (len(streak) - 1) / len(streak),
                }  # fmt: skip
                continue
            f["repeats"] = max(f["repeats"], len(streak))
            f["occurrences"] += 1
            f["runs"].add(run)
            f["cost_usd"] += cost
            f["tokens"] += tokens
            f["repeat_cost_usd"] += cost * (len(streak) - 1) / len(streak)
            if streak[-1].ts >= f["last_ts"]:
                f["last_ts"], f["run"] = streak[-1].ts, run or None
            f["first_ts"] = min(f["first_ts"], streak[0].ts)
    out = []
    for f in found.values():
        f["runs"] = len(f["runs"])
        f["cost_usd"] = round(f["cost_usd"], 10)
        # what the repeats after the first cost: the saving if the agent stopped at one
        f["repeat_cost_usd"] = round(f["repeat_cost_usd"], 10)
        out.append(f)
    return sorted(out, key=lambda f: (-f["cost_usd"], -f["repeats"], f["agent"]))


_START = {"agent_started", "task_started"}
_END = {"agent_completed", "agent_failed", "task_completed", "task_failed"}


def detect_stalls(
    events: Sequence[Event], *, now: float, silent_s: float = 120.0
) -> list[dict[str, Any]]:
    """Agents with a task in flight and no event for longer than ``silent_s``, with what
    they spent since the task started. Linear in the events: each agent keeps running sums
    of cost and tokens, and a task remembers the sums at its start."""
    last: dict[str, float] = {}
    # agent -> task -> (start ts, run, agent's cost and tokens before the start)
    open_tasks: dict[str, dict[str, tuple[float, str | None, float, int]]] = defaultdict(dict)
    cost: dict[str, float] = defaultdict(float)
    toks: dict[str, int] = defaultdict(int)
    for ev in sorted(events, key=lambda e: e.ts):
        if not ev.agent:
            continue
        a = ev.agent
        last[a] = max(last.get(a, ev.ts), ev.ts)
        if ev.type in _START or ev.type in _END:
            tp: TaskStarted | TaskEnded | AgentStarted | AgentEnded = typed_event(ev).payload
            task = str(tp.task_id or "")
        if ev.type in _START:
            open_tasks[a].setdefault(task, (ev.ts, ev.run, cost[a], toks[a]))
        elif ev.type in _END:
            open_tasks[a].pop(task, None)
            if not task:
                open_tasks[a].clear()
        elif (ev.type == "llm_call" or ev.type == "tool_used") and open_tasks.get(a):
            cost[a] += _cost(ev)
            toks[a] += _tokens(ev)
    stalls = []
    for a, tasks in sorted(open_tasks.items()):
        quiet = now - last[a]
        if not tasks or quiet <= silent_s:
            continue
        for task, (since, run, cost0, tok0) in sorted(tasks.items()):
            stalls.append({
                "agent": a, "run": run, "task_id": task or None, "task_started": since,
                "silent_s": round(quiet, 3), "cost_usd": round(cost[a] - cost0, 10),
                "tokens": toks[a] - tok0,
            })  # fmt: skip
    return stalls
