"""What the demo's scripted LLM says: a pure function of the conversation.

The demo's traffic generator writes a *plan* into each task's description, e.g.::

    Review the user's week. [[plan: lookup "slow-wave sleep and memory" | ask Sleep Specialist #1
    | delegate Nutritionist #2 | hypothesis H-7 formed 0.55 | final]] [[plan#1: lookup ...]]

and :func:`respond` follows it step by step in CrewAI's ReAct format (``Action:`` /
``Action Input:`` to use a tool, ``Final Answer:`` to finish). The step is the number of
assistant turns already in the conversation, so the function needs no state; a
delegation carries the coworker's own sub-plan in the task it hands over. Answers are
varied but deterministic: phrase banks picked by a hash of the task and the step.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PlanStep", "ScriptedFailure", "parse_plan", "respond"]

_PLAN = re.compile(r"\[\[plan(?:#(\w+))?:\s*(.*?)\]\]", re.S)


class ScriptedFailure(RuntimeError):
    """Raised by the scripted LLM where a plan says ``fail`` (an upstream API error)."""


PlanStep = tuple[str, list[str]]


def _split_args(text: str) -> list[str]:
    return [a.strip('"') for a in re.findall(r'"[^"]*"|\S+', text)]


def parse_plan(text: str) -> tuple[list[PlanStep], dict[str, str]]:
    """The main plan in ``text`` and its numbered sub-plans (raw, for handing over)."""
    main: list[PlanStep] = []
    subs: dict[str, str] = {}
    for m in _PLAN.finditer(text):
        if m.group(1):
            subs[m.group(1)] = m.group(2)
        elif not main:
            for part in m.group(2).split("|"):
                words = _split_args(part.strip())
                if words:
                    main.append((words[0], words[1:]))
    return main, subs


BANK: dict[str, list[str]] = {
    "neuro": [
        "Prefrontal fatigue markers point to cumulative sleep debt rather than overtraining",
        "Reward-circuit reactivity rises after short nights, which explains the late snacking",
        "Working-memory scores dipped 8% on days following under six hours of sleep",
        "Cortisol awakening response is blunted; stress load is the likelier driver",
    ],
    "sleep": [
        "Slow-wave sleep is fragmented after 1 a.m.; move the last screen exposure earlier",
        "Sleep onset latency averages 34 minutes; a fixed wake time will consolidate it",
        "REM share is normal, deep sleep is low: cool the room to 18 C and cut late caffeine",
        "Chronotype looks intermediate; shifting training to mornings should help",
    ],
    "nutrition": [
        "Protein is 1.1 g/kg; raise it to 1.6 g/kg spread over four meals",
        "Late high-glycaemic meals coincide with the worst nights; front-load carbohydrates",
        "Magnesium intake is marginal; add leafy greens and nuts before supplements",
        "Hydration is adequate; caffeine after 2 p.m. is the main dietary sleep disruptor",
    ],
    "training": [
        "Acute:chronic load ratio is 1.4; deload this week to avoid injury risk",
        "HRV dropped 12% after interval days; space them 72 hours apart",
        "Zone 2 volume is low; two 45-minute sessions will support recovery",
        "Strength progress stalled with the sleep debt; keep intensity, cut volume",
    ],
    "general": [
        "Combining the specialists' findings, sleep debt is the root cause to address first",
        "The plan: fixed wake time, earlier protein-rich dinner, deload week, re-test in 14 days",
        "Evidence converges on recovery, not motivation; adjust load before adding stimulus",
    ],
}


def _bank(role: str) -> list[str]:
    r = role.lower()
    for key, words in (
        ("neuro", ("neuro",)),
        ("sleep", ("sleep",)),
        ("nutrition", ("nutri", "diet")),
        ("training", ("train", "coach", "recovery")),
    ):
        if any(w in r for w in words):
            return BANK[key]
    return BANK["general"]


def _pick(options: Sequence[str], *keys: object) -> str:
    h = hashlib.blake2b(repr(keys).encode(), digest_size=4).digest()
    return options[int.from_bytes(h, "big") % len(options)]


def _action(thought: str, tool: str, args: Mapping[str, Any]) -> str:
    return f"Thought: {thought}\nAction: {tool}\nAction Input: {json.dumps(dict(args))}"


def respond(role: str, task: str, step: int) -> str:
    """The scripted answer of ``role`` working on ``task`` after ``step`` tool uses."""
    plan, subs = parse_plan(task)
    bank = _bank(role)
    if step >= len(plan) or plan[step][0] == "final":
        findings = _pick(bank, task, step)
        extra = _pick(bank, task, step, "2")
        return (
            "Thought: I now can give a great answer\n"
            f"Final Answer: {findings}. {extra if extra != findings else ''}".rstrip()
        )
    verb, args = plan[step]
    if verb == "fail":
        raise ScriptedFailure(f"upstream model error for {role} (scripted failure)")
    if verb == "lookup":
        query = " ".join(args) or "recovery"
        return _action(
            f"I should check what we already know about {query}.",
            "knowledge_lookup",
            {"query": query},
        )
    if verb == "labs":
        return _action(
            "I need the latest biomarkers.",
            "biomarker_lookup",
            {"marker": args[0] if args else "hrv"},
        )
    if verb == "hypothesis":
        hid = args[0] if args else "H-0"
        status = args[1] if len(args) > 1 else "formed"
        conf = args[2] if len(args) > 2 else "0.5"
        statement = _pick(bank, task, "h", hid)
        return _action(
            f"The evidence supports recording hypothesis {hid}.",
            "record_hypothesis",
            {
                "hypothesis_id": hid,
                "status": status,
                "confidence": float(conf),
                "statement": statement,
            },
        )
    if verb in ("ask", "delegate"):
        ref = args[-1] if args and args[-1].startswith("#") else ""
        coworker = " ".join(a for a in args if not a.startswith("#")) or "Sleep Specialist"
        sub = subs.get(ref.lstrip("#"), "final")
        if verb == "delegate":
            return _action(
                f"{coworker} is best placed to handle this part.",
                "Delegate work to coworker",
                {
                    "task": f"Assess the user's data in your specialty. [[plan: {sub}]]",
                    "context": "Weekly review for a user reporting poor sleep and low energy.",
                    "coworker": coworker,
                },
            )
        return _action(
            f"I should ask {coworker} before concluding.",
            "Ask question to coworker",
            {
                "question": f"What stands out in your specialty? [[plan: {sub}]]",
                "context": "Weekly review for a user reporting poor sleep and low energy.",
                "coworker": coworker,
            },
        )
    # unknown verb: finish rather than loop forever
    return f"Thought: I now can give a great answer\nFinal Answer: {_pick(bank, task, step)}"
