"""The bounded per-trace buffer: attribution of child-first spans to their nearest agent.

A span is exported when it ends, so children arrive before their parents, often in
earlier export requests. A span is *ready* when the walk from its parent up the trace
reaches an agent span or the trace's root through spans already seen; it then leaves
the buffer with that agent. A span that is not ready waits until the missing ancestor
arrives, but never longer than ``max_wait`` seconds after its own arrival: then it is
released as it stands (attributed to the agent its own attributes name, else none) and
counted as ``expired``.

Memory is bounded: at most ``max_spans`` spans are remembered (pending or already
released: released ones are kept, without their attributes, so that late children still
find their ancestors) over at most ``max_traces`` traces. Beyond either, the least
recently active trace is dropped; its pending spans are released as they stand and the
trace is counted as ``evicted`` (a trace that never completes). A trace idle for
``retain_s`` with nothing pending is forgotten silently.

Pure and single-threaded: the receiver calls it under its lock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..integrations.text import slug
from .spans import (
    AGENT,
    AGENT_IMPLICIT,
    CHAIN,
    LG_LOOP,
    WORKFLOW,
    SpanRec,
)

__all__ = ["Ready", "TraceBuffer"]

_MAX_DEPTH = 256
_F_AGENT_CHILD = 1  # a child is an agent span that names itself
_F_LG_LOOP_CHILD = 2  # a child is LangGraph's prebuilt agent node
_DEFAULT_GRAPH_NAME = "LangGraph"
_RELEASED: dict[str, Any] = {}  # shared, never written: a released span's attributes


@dataclass(slots=True)
class Ready:
    """A span leaving the buffer: the agent it is attributed to and, for an agent span,
    its own agent id (``self_agent``), and whether it is the trace's workflow."""

    span: SpanRec
    agent: str | None
    self_agent: str | None = None
    workflow: bool = False
    expired: bool = False


@dataclass(slots=True)
class _Trace:
    nodes: dict[str, SpanRec] = field(default_factory=dict)
    flags: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, list[SpanRec]] = field(default_factory=dict)
    pending: int = 0
    last: float = 0.0


class TraceBuffer:
    def __init__(
        self,
        *,
        max_wait: float = 15.0,
        max_spans: int = 200_000,
        max_traces: int = 20_000,
        retain_s: float = 300.0,
    ) -> None:
        self.max_wait = max_wait
        self.max_spans = max(1, max_spans)
        self.max_traces = max(1, max_traces)
        self.retain_s = max(retain_s, max_wait)
        self._traces: OrderedDict[str, _Trace] = OrderedDict()  # least recently active first
        self._pending: OrderedDict[tuple[str, str], SpanRec] = OrderedDict()  # arrival order
        self.spans = 0  # remembered spans (pending + released)
        self.expired = 0  # spans released at max_wait
        self.evicted_traces = 0
        self.evicted_spans = 0  # pending spans released by an eviction
        self.duplicates = 0

    # ------------------------------------------------------------------ queries
    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def traces(self) -> int:
        return len(self._traces)

    # ------------------------------------------------------------------ agent identity
    def agent_of(self, tr: _Trace, n: SpanRec) -> str | None:
        """The agent id ``n`` stands for, or None when it is not an agent span."""
        role = n.role
        if role == AGENT:
            name = n.agent_name or n.name
            return name[:128] if n.raw_id else slug(name)
        if role == AGENT_IMPLICIT:
            # OpenAI Agents SDK: the trace's root is AGENT-kind and wraps the named agents
            if tr.flags.get(n.sid, 0) & _F_AGENT_CHILD:
                return None
            return slug(n.name)
        if role in (CHAIN, WORKFLOW) and tr.flags.get(n.sid, 0) & _F_LG_LOOP_CHILD:
            # a LangGraph (sub)graph holding a prebuilt agent's loop: the agent, by its name
            return slug(n.name) if n.name != _DEFAULT_GRAPH_NAME else slug(n.service or n.name)
        return None

    def _walk(self, tr: _Trace, parent: str) -> tuple[bool, str | None, str]:
        """(resolved, nearest agent, the missing ancestor when unresolved)."""
        p = parent
        for _ in range(_MAX_DEPTH):
            if not p:
                return True, None, ""
            n = tr.nodes.get(p)
            if n is None:
                return False, None, p
            aid = self.agent_of(tr, n)
            if aid is not None:
                return True, aid, ""
            p = n.parent
        return True, None, ""  # a cycle or an absurd depth: stop here

    def _own(self, s: SpanRec) -> str | None:
        """The agent a non-agent span names itself (``gen_ai.agent.*`` on an LLM span)."""
        name = s.agent_name
        if not name:
            return None
        return name[:128] if s.raw_id else slug(name)

    def _ready(self, tr: _Trace, s: SpanRec, agent: str | None, expired: bool) -> Ready:
        s.done = True
        self_agent = self.agent_of(tr, s)
        workflow = False
        if self_agent is None:
            workflow = s.role == WORKFLOW or (
                not s.parent and s.role in (CHAIN, AGENT_IMPLICIT, LG_LOOP)
            )
            if agent is None and s.role != AGENT_IMPLICIT:
                own = self._own(s)
                agent = own
        return Ready(s, agent, self_agent, workflow, expired)

    def _try(self, tr: _Trace, s: SpanRec, out: list[Ready]) -> None:
        if s.done:
            return
        own = None if s.role in (AGENT, AGENT_IMPLICIT) else self._own(s)
        resolved: bool
        agent: str | None
        if own is not None:  # names its agent: no need to wait for the ancestors
            resolved, agent, missing = True, own, ""
        else:
            resolved, agent, missing = self._walk(tr, s.parent)
        if resolved:
            self._pending.pop((s.trace, s.sid), None)
            tr.pending -= 1
            out.append(self._ready(tr, s, agent, False))
        else:
            tr.waiting.setdefault(missing, []).append(s)

    # ------------------------------------------------------------------ input
    def add(self, spans: list[SpanRec], now: float) -> list[Ready]:
        """Take the spans of one request; return those ready (any trace's)."""
        out: list[Ready] = []
        traces = self._traces
        fresh: list[tuple[_Trace, SpanRec]] = []
        for s in spans:
            tr = traces.get(s.trace)
            if tr is None:
                tr = traces[s.trace] = _Trace()
            else:
                traces.move_to_end(s.trace)
            tr.last = now
            if s.sid in tr.nodes:  # an exporter retrying a batch: count once
                self.duplicates += 1
                continue
            s.arrived = now
            tr.nodes[s.sid] = s
            self.spans += 1
            tr.pending += 1
            self._pending[(s.trace, s.sid)] = s
            if s.parent:
                if s.role == AGENT:
                    tr.flags[s.parent] = tr.flags.get(s.parent, 0) | _F_AGENT_CHILD
                elif s.role == LG_LOOP:
                    tr.flags[s.parent] = tr.flags.get(s.parent, 0) | _F_LG_LOOP_CHILD
            fresh.append((tr, s))
        # children first (their ends are earlier): a parent's flags are complete when it
        # is decided, whatever the order inside the request
        fresh.sort(key=lambda x: x[1].end)
        for tr, s in fresh:
            self._try(tr, s, out)
            woken = tr.waiting.pop(s.sid, None)
            if woken:
                for w in woken:
                    self._try(tr, w, out)
        self._bound(now, out)
        return out

    # ------------------------------------------------------------------ time and memory
    def expire(self, now: float) -> list[Ready]:
        """Release spans that waited ``max_wait``; forget idle traces."""
        out: list[Ready] = []
        limit = now - self.max_wait
        pend = self._pending
        while pend:
            key, s = next(iter(pend.items()))
            if s.arrived > limit:
                break
            del pend[key]
            tr = self._traces.get(s.trace)
            if tr is None or s.done:
                continue
            tr.pending -= 1
            self.expired += 1
            resolved, agent, _ = self._walk(tr, s.parent)
            out.append(self._ready(tr, s, agent if resolved else None, True))
        idle = now - self.retain_s
        while self._traces:
            tid, tr = next(iter(self._traces.items()))
            if tr.last > idle or tr.pending > 0:
                break
            self._drop(tid, tr, out, evict=False)
        return out

    def _bound(self, now: float, out: list[Ready]) -> None:
        while self._traces and (
            self.spans > self.max_spans or len(self._traces) > self.max_traces
        ):
            tid, tr = next(iter(self._traces.items()))
            self._drop(tid, tr, out, evict=True)

    def _drop(self, tid: str, tr: _Trace, out: list[Ready], *, evict: bool) -> None:
        del self._traces[tid]
        self.spans -= len(tr.nodes)
        if tr.pending > 0:
            if evict:
                self.evicted_traces += 1
            for s in sorted(tr.nodes.values(), key=lambda x: x.end):
                if s.done:
                    continue
                self._pending.pop((s.trace, s.sid), None)
                self.evicted_spans += 1
                resolved, agent, _ = self._walk(tr, s.parent)
                out.append(self._ready(tr, s, agent if resolved else None, True))

    def flush_all(self) -> list[Ready]:
        """Release everything pending (shutdown)."""
        out: list[Ready] = []
        for tid in list(self._traces):
            tr = self._traces[tid]
            for s in sorted(tr.nodes.values(), key=lambda x: x.end):
                if not s.done:
                    resolved, agent, _ = self._walk(tr, s.parent)
                    out.append(self._ready(tr, s, agent if resolved else None, True))
            del self._traces[tid]
        self._pending.clear()
        self.spans = 0
        return out

    def release(self, r: Ready) -> None:
        """After the mapping: keep the span as an ancestor only (attributes dropped)."""
        r.span.attrs = _RELEASED
