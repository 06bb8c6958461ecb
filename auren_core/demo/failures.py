"""What the demo's closing line counts as failures: counted from the events it publishes.

A scripted model failure in a specialist rarely makes the whole crew raise (the coordinator
gets the delegation's error back and carries on), so counting only crews that raised said
"0 ended in an error" while the dashboard showed failed agents and LLM calls. The demo's
publisher is a :class:`FailureCountingPublisher`: every event it sends passes through
:class:`FailureCount`, so the line's figures are those of the events themselves.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ..events import Event, LlmCall, ToolUsed, decode
from ..events.codec import coerce_payload
from ..events.model import _Payload
from ..streams.publisher import Publisher

__all__ = ["FailureCount", "FailureCountingPublisher"]

_FAILED_TYPES = {"agent_failed": "agents", "task_failed": "tasks", "flow_failed": "flows"}
_OK_TYPES = {"llm_call": "llm_calls", "tool_used": "tool_calls"}


@dataclass
class FailureCount:
    """Failures in a sequence of events: ``agent_failed``, ``task_failed``, ``flow_failed``
    events, ``llm_call`` and ``tool_used`` events with ``ok: false``, and the runs (crew
    kickoffs: user queries) with at least one of them."""

    agents: int = 0
    tasks: int = 0
    flows: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    runs: set[str] = field(default_factory=set)
    errors: int = 0  # events the count could not read (never raised into the sender)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def feed(self, type: str, payload: Any, run: str | None) -> None:
        kind = _FAILED_TYPES.get(type)
        if kind is None:
            ok_kind = _OK_TYPES.get(type)
            if ok_kind is None:
                return
            if isinstance(payload, dict):  # handed over as a dict: typed as the reducer types it
                payload = coerce_payload(type, payload)
            if not isinstance(payload, LlmCall | ToolUsed) or payload.ok is not False:
                return
            kind = ok_kind
        with self._lock:
            setattr(self, kind, getattr(self, kind) + 1)
            if run:
                self.runs.add(run)

    def feed_event(self, event: Event) -> None:
        self.feed(event.type, event.payload, event.run)

    def feed_raw(self, data: bytes) -> None:
        # cheap test first: most events are neither failure types nor carry "ok":false
        if b"failed" not in data and b'"ok":false' not in data:
            return
        ev = decode(data)
        if isinstance(ev, Event):
            self.feed_event(ev)

    @property
    def total(self) -> int:
        return self.agents + self.tasks + self.flows + self.llm_calls + self.tool_calls

    def summary(self) -> str:
        """``2 with a failure: 2 agent failures, 3 failed LLM calls, 0 failed tool calls``."""
        parts = [
            f"{self.agents} agent failures",
            f"{self.llm_calls} failed LLM calls",
            f"{self.tool_calls} failed tool calls",
        ]
        if self.tasks:
            parts.append(f"{self.tasks} failed tasks")
        if self.flows:
            parts.append(f"{self.flows} failed flows")
        return f"{len(self.runs)} with a failure: " + ", ".join(parts)


class FailureCountingPublisher(Publisher):
    """A :class:`Publisher` that counts the failures in what it is given to send."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = FailureCount()

    def emit(
        self,
        type: str,
        payload: _Payload | dict[str, Any] | None = None,
        *,
        agent: str | None = None,
        run: str | None = None,
        seq: int | None = None,
        parent: str | None = None,
    ) -> None:
        super().emit(type, payload, agent=agent, run=run, seq=seq, parent=parent)
        try:
            self.failures.feed(type, payload, run)
        except Exception:  # counting must never break the sending
            self.failures.errors += 1

    def publish(self, event: Event) -> None:
        super().publish(event)
        try:
            self.failures.feed_event(event)
        except Exception:
            self.failures.errors += 1

    def enqueue_raw(self, data: bytes) -> None:
        super().enqueue_raw(data)
        try:
            self.failures.feed_raw(data)
        except Exception:
            self.failures.errors += 1
