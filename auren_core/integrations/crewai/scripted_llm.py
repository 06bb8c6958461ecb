"""An offline, deterministic LLM for real CrewAI crews (tests, demo, benchmarks).

``ScriptedLLM`` is a real ``crewai.llms.base_llm.BaseLLM``: CrewAI drives it
exactly like a native provider, and it goes through the same path as one
(``LLMCallStartedEvent``, per-call usage via ``_track_token_usage_internal``,
then ``LLMCallCompletedEvent``), so instrumentation sees what it would see with
a paid model. A *script* callable decides each answer; it may answer in
CrewAI's ReAct format to call tools (including "Delegate work to coworker" and
"Ask question to coworker") and then give a Final Answer.

Token usage is computed from the text (about 4 characters per token, the usual
rule of thumb for English; no tokenizer download). Prompt caching is simulated
the way OpenAI bills it: a prompt sharing a prefix of at least 1024 tokens with
the previous prompt of the same conversation reads that prefix, in 128-token
steps, from the cache.

Importing this module imports crewai (``auren_core`` itself never does).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import random
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from crewai.events.types.llm_events import LLMCallType
from crewai.llms import base_llm as _base_llm
from crewai.llms.base_llm import BaseLLM

# What the installed CrewAI release offers a provider (looked up, not version-compared):
# 1.10+: a call scope giving every LLM event of one call the same ``call_id``;
# 1.13+: the completed event carries the call's ``usage``.
_call_context = getattr(_base_llm, "llm_call_context", None)
_COMPLETED_TAKES_USAGE = (
    "usage" in inspect.signature(BaseLLM._emit_call_completed_event).parameters
)


@contextlib.contextmanager
def _call_scope() -> Iterator[None]:
    if _call_context is None:
        yield
        return
    with _call_context():
        yield

__all__ = [
    "Script",
    "ScriptCall",
    "ScriptedLLM",
    "Usage",
    "default_script",
    "final_answer",
    "react_action",
    "tokens_of",
    "tool_named",
]

CHARS_PER_TOKEN = 4
CACHE_MIN_TOKENS = 1024
CACHE_STEP_TOKENS = 128

_TOOL_NAME = re.compile(r"^Tool Name: (.+)$", re.MULTILINE)
_COWORKERS = re.compile(r"one of the following coworkers: (.+?)(?:\n|$)")


def tokens_of(text: str) -> int:
    """Approximate token count of ``text`` (ceil(chars / 4)); 0 for empty text."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@dataclass(frozen=True, slots=True)
class Usage:
    """What one call reported: the figures instrumentation must reproduce."""

    agent: str | None
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class ScriptCall:
    """Everything a script may base its answer on."""

    messages: list[dict[str, Any]]
    agent_role: str | None
    task: str | None
    step: int  # assistant turns already in this conversation (0 = first call)
    tool_names: tuple[str, ...]
    coworkers: tuple[str, ...]
    rng: random.Random
    agent: Any = field(default=None, repr=False)

    @property
    def prompt(self) -> str:
        return "\n".join(str(m.get("content") or "") for m in self.messages)

    @property
    def last_observation(self) -> str:
        for m in reversed(self.messages):
            text = str(m.get("content") or "")
            if "Observation:" in text:
                return text.rsplit("Observation:", 1)[1].strip()
        return ""


Script = Callable[[ScriptCall], str]


class ScriptedLLM(BaseLLM):
    """Offline LLM: answers come from ``script``, usage from the text."""

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        *,
        script: Script | None = None,
        seed: int = 0,
        provider: str = "openai",
        latency_s: float = 0.0,
        fail_every: int = 0,
        usage_via: str = "both",
        reasoning_share: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model=model, provider=provider, **kwargs)
        self.script: Script = script or default_script
        self.seed = seed
        self.latency_s = latency_s
        self.fail_every = fail_every
        # how usage reaches CrewAI: "both" (the LLM's usage tracker and, 1.13+, the
        # completed event), "event" (the event only, as some providers do) or "track"
        self.usage_via = usage_via
        # the part of output tokens reported as reasoning/thinking tokens (o-series style)
        self.reasoning_share = reasoning_share
        self.calls: list[Usage] = []  # every successful call's usage, in call order
        self.failures = 0
        self._lock = threading.Lock()
        self._last_prompt: dict[str, str] = {}

    # CrewAI asks these of every LLM
    def supports_function_calling(self) -> bool:
        return False

    def supports_stop_words(self) -> bool:
        return True

    def get_context_window_size(self) -> int:
        return 128_000

    def get_input_tokens_count(
        self, messages: Any, tools: Any = None, response_model: Any = None
    ) -> int:
        """Exact for this LLM (the same rule as its usage), so CrewAI need not estimate."""
        if isinstance(messages, str):
            return tokens_of(messages)
        return tokens_of(
            "".join(f"{m.get('role')}: {m.get('content') or ''}\n" for m in messages or ())
        )

    def reset_usage(self) -> None:
        with self._lock:
            self.calls.clear()
            self._last_prompt.clear()

    def call(
        self,
        messages: Any,
        tools: list[dict[str, Any]] | None = None,
        callbacks: list[Any] | None = None,
        available_functions: dict[str, Any] | None = None,
        from_task: Any | None = None,
        from_agent: Any | None = None,
        response_model: Any | None = None,
    ) -> str:
        with _call_scope():
            return self._call(
                messages, tools, callbacks, available_functions, from_task, from_agent
            )

    def _call(
        self,
        messages: Any,
        tools: list[dict[str, Any]] | None,
        callbacks: list[Any] | None,
        available_functions: dict[str, Any] | None,
        from_task: Any | None,
        from_agent: Any | None,
    ) -> str:
        self._emit_call_started_event(
            messages=messages,
            tools=tools,  # type: ignore[arg-type]
            callbacks=callbacks,
            available_functions=available_functions,
            from_task=from_task,
            from_agent=from_agent,
        )
        try:
            msgs: list[dict[str, Any]] = list(self._format_messages(messages))  # type: ignore[arg-type]
            call = self._script_call(msgs, from_task, from_agent)
            if self.latency_s:
                time.sleep(self.latency_s)
            with self._lock:
                n = len(self.calls) + self.failures + 1
            if self.fail_every and n % self.fail_every == 0:
                with self._lock:
                    self.failures += 1
                raise RuntimeError(f"scripted failure on call {n}")
            text = self._apply_stop_words(_presented(self.script(call), call.tool_names))
            usage = self._usage(call, msgs, text)
            usage_dict: dict[str, Any] = {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "cached_prompt_tokens": usage.cached_tokens,
            }
            if usage.reasoning_tokens:
                usage_dict["completion_tokens_details"] = {
                    "reasoning_tokens": usage.reasoning_tokens
                }
            if self.usage_via != "event":
                self._track_token_usage_internal(usage_dict)
            with self._lock:
                self.calls.append(usage)
        except Exception as exc:
            self._emit_call_failed_event(str(exc), from_task=from_task, from_agent=from_agent)
            raise
        extra: dict[str, Any] = {}
        if _COMPLETED_TAKES_USAGE and self.usage_via != "track":
            extra["usage"] = usage_dict
        self._emit_call_completed_event(
            response=text,
            call_type=LLMCallType.LLM_CALL,
            from_task=from_task,
            from_agent=from_agent,
            messages=msgs,  # type: ignore[arg-type]
            **extra,
        )
        return text

    # ------------------------------------------------------------------ helpers
    def _script_call(
        self, msgs: list[dict[str, Any]], task: Any | None, agent: Any | None
    ) -> ScriptCall:
        system = "\n".join(str(m.get("content") or "") for m in msgs if m.get("role") == "system")
        if not system and msgs:
            system = str(msgs[0].get("content") or "")
        tool_names = tuple(t.strip() for t in _TOOL_NAME.findall(system))
        cw = _COWORKERS.search(system)
        coworkers = tuple(c.strip() for c in cw.group(1).split(",") if c.strip()) if cw else ()
        step = sum(1 for m in msgs if m.get("role") == "assistant")
        role = getattr(agent, "role", None)
        desc = getattr(task, "description", None)
        # Deterministic per (seed, agent, task, step): the same crew gives the same answers.
        key = f"{self.seed}|{role}|{desc}|{step}".encode()
        rng = random.Random(zlib.crc32(key))
        return ScriptCall(msgs, role, desc, step, tool_names, coworkers, rng, agent)

    def _usage(self, call: ScriptCall, msgs: list[dict[str, Any]], text: str) -> Usage:
        prompt = "".join(f"{m.get('role')}: {m.get('content') or ''}\n" for m in msgs)
        inp = tokens_of(prompt)
        first = str(msgs[0].get("content") or "") if msgs else ""
        conv = f"{call.agent_role}|{hash(first)}"
        with self._lock:
            prev = self._last_prompt.get(conv, "")
            self._last_prompt[conv] = prompt
        cached = 0
        if prev:
            common = len(_common_prefix(prev, prompt)) // CHARS_PER_TOKEN
            if common >= CACHE_MIN_TOKENS:
                cached = min(inp, common - common % CACHE_STEP_TOKENS)
        out = tokens_of(text)
        return Usage(call.agent_role, inp, out, cached, int(out * self.reasoning_share))


def _common_prefix(a: str, b: str) -> str:
    n = min(len(a), len(b))
    lo, hi = 0, n
    while lo < hi:  # binary search on slices: C-speed comparisons
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return a[:lo]


# --------------------------------------------------------------------------- scripts
DELEGATE = "Delegate work to coworker"
ASK = "Ask question to coworker"
COLLABORATION_TOOLS = frozenset({DELEGATE, ASK})
_COLLAB_NORM = frozenset(" ".join(t.lower().split()) for t in COLLABORATION_TOOLS)


_ACTION = re.compile(r"^Action: (.+)$", re.MULTILINE)


def _presented(answer: str, tool_names: tuple[str, ...]) -> str:
    """Scripts may name a tool by any spelling; answer with the one this release shows."""

    def fix(m: re.Match[str]) -> str:
        name = m.group(1).strip()
        if name in tool_names:
            return m.group(0)
        return f"Action: {tool_named(tool_names, name) or name}"

    return _ACTION.sub(fix, answer) if "Action:" in answer else answer


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


def tool_named(tool_names: tuple[str, ...] | list[str], canonical: str) -> str | None:
    """The name a tool is presented under in this release's prompt: CrewAI 1.6 shows
    "Delegate work to coworker", later releases "delegate_work_to_coworker"."""
    want = _norm(canonical)
    for t in tool_names:
        if _norm(t) == want:
            return t
    return None


def react_action(tool: str, args: dict[str, Any], thought: str = "I should use a tool.") -> str:
    """An answer in CrewAI's ReAct format that calls ``tool`` with ``args``."""
    return (
        f"Thought: {thought}\nAction: {tool}\nAction Input: {json.dumps(args, ensure_ascii=False)}"
    )


def final_answer(text: str, thought: str = "I now know the final answer") -> str:
    return f"Thought: {thought}\nFinal Answer: {text}"


_DOMAINS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "neuro": (
        ("neuro", "brain", "cognit"),
        (
            "prefrontal executive function drops measurably after two nights under 6 h of sleep",
            "HRV-guided recovery days correlate with better working-memory scores",
            "morning light exposure advances the circadian phase and sharpens reaction time",
            "elevated evening cortisol predicts fragmented slow-wave sleep",
        ),
    ),
    "sleep": (
        ("sleep", "circadian", "rest"),
        (
            "a consistent wake time within 30 minutes stabilises sleep onset latency",
            "bedroom temperature of 17-19 C increases deep-sleep share by several points",
            "caffeine after 14:00 delays sleep onset by roughly 40 minutes",
            "a 20-minute nap before 15:00 restores alertness without hurting night sleep",
        ),
    ),
    "nutrition": (
        ("nutri", "diet", "food", "metabol"),
        (
            "protein spread over four meals (0.4 g/kg each) supports muscle protein synthesis",
            "a late high-glycaemic dinner raises nocturnal heart rate",
            "magnesium and tart cherry intake are associated with longer total sleep time",
            "hydration below 30 ml/kg/day shows up as lower training HRV",
        ),
    ),
    "training": (
        ("train", "coach", "exercis", "strength", "fitness"),
        (
            "keeping acute:chronic workload between 0.8 and 1.3 lowers injury risk",
            "zone-2 volume of 150 minutes a week improves resting HRV within six weeks",
            "heavy sessions after 20:00 shorten deep sleep that night",
            "a deload week every fourth week sustains progressive overload",
        ),
    ),
}
_GENERAL = (
    "the data support a gradual, measurable intervention with a two-week review",
    "signals across sleep, training and nutrition point to recovery as the bottleneck",
)


def domain_of(role: str | None) -> str:
    r = (role or "").lower()
    for name, (keys, _) in _DOMAINS.items():
        if any(k in r for k in keys):
            return name
    return "general"


def specialist_answer(call: ScriptCall) -> str:
    """A plausible, varied specialist answer (deterministic given the call's rng)."""
    dom = domain_of(call.agent_role)
    facts = _DOMAINS[dom][1] if dom in _DOMAINS else _GENERAL
    picked = call.rng.sample(list(facts), k=min(2, len(facts)))
    conf = round(call.rng.uniform(0.55, 0.92), 2)
    who = call.agent_role or "Specialist"
    obs = call.last_observation
    tail = f" Supporting input: {obs[:160]}" if obs else ""
    return f"{who} assessment: {picked[0]}; also, {picked[-1]}. Hypothesis confidence {conf}.{tail}"


def _tool_args(call: ScriptCall, tool: str, query: str) -> dict[str, Any]:
    m = re.search(
        rf"Tool Name: {re.escape(tool)}\nTool Arguments: (\{{.*?\}})\n", call.prompt, re.S
    )
    keys: list[str] = []
    if m:
        keys = re.findall(r"'(\w+)': \{", m.group(1)) or re.findall(r'"(\w+)": \{', m.group(1))
    return {k: query for k in keys} if keys else {"query": query}


def default_script(call: ScriptCall) -> str:
    """Coordinators delegate then ask; specialists use their first tool, then answer."""
    topic = (call.task or "the client's recovery plan").strip().splitlines()[0][:120]
    delegate = tool_named(call.tool_names, DELEGATE)
    ask = tool_named(call.tool_names, ASK)
    if call.coworkers and delegate and call.step == 0:
        to = call.rng.choice(call.coworkers)
        return react_action(
            delegate,
            {
                "task": f"Assess: {topic}",
                "context": "Client data from the last 14 days.",
                "coworker": to,
            },
            thought=f"{to} is best placed to assess this.",
        )
    if call.coworkers and ask and call.step == 1:
        to = call.coworkers[
            (call.coworkers.index(call.rng.choice(call.coworkers)) + 1) % len(call.coworkers)
        ]
        return react_action(
            ask,
            {
                "question": f"What would you add on: {topic}?",
                "context": call.last_observation[:300],
                "coworker": to,
            },
            thought=f"I want {to}'s view as well.",
        )
    own = [t for t in call.tool_names if _norm(t) not in _COLLAB_NORM]
    if own and call.step == 0:
        tool = own[call.rng.randrange(len(own))]
        return react_action(
            tool, _tool_args(call, tool, topic), thought="Let me check the knowledge store."
        )
    return final_answer(specialist_answer(call))
