"""The agent registry: who is there, what they can do, what they are doing.

Built from events so that ``auren top``, ``serve-ws`` and ``export`` agree: an
agent appears with its first event, takes its capabilities from
``agent_registered``, and its load and status from task/agent start, completion
and failure events (ordered by event time, so out-of-order delivery from
CrewAI's thread pool does not leave phantom work in flight).

Also usable in-process: :meth:`AgentRegistry.register_agent` reads a CrewAI
``Agent`` by duck typing; crewai is never imported here.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..events import (
    AgentEnded,
    AgentRegistered,
    AgentStarted,
    Event,
    HumanInput,
    TaskEnded,
    TaskStarted,
)
from ..events.codec import coerce_payload, typed_event

__all__ = ["AgentInfo", "AgentRecord", "AgentRegistry", "agent_capabilities"]

Status = Literal["running", "idle", "failed", "waiting_human"]
_FINISHED_KEEP = 256  # recently finished task ids per agent (for out-of-order starts)
# ... and over all agents: the oldest go first (10,000 agents x 256 UUID keys held ~400 MB
# for a whole day; a late start arrives within seconds of its end, not 50,000 ends later)
MAX_FINISHED = 50_000
_MAX_IN_FLIGHT = 1024
_EVICT_SCAN = 16  # the least recently touched agents compared by event time on eviction


@dataclass(frozen=True, slots=True)
class AgentInfo:
    id: str
    role: str
    status: Status
    last_activity: float
    current_load: int
    capabilities: tuple[str, ...]
    goal: str | None
    model: str | None
    tools: tuple[str, ...]
    allow_delegation: bool
    first_seen: float
    last_error: str | None
    waiting_since: float | None = None
    waiting_message: str | None = None


@dataclass(slots=True)
class AgentRecord:
    """Mutable per-agent bookkeeping (internal; read :class:`AgentInfo`)."""

    id: str
    first_seen: float
    last_activity: float
    role: str | None = None
    goal: str | None = None
    model: str | None = None
    tools: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    allow_delegation: bool = False
    in_flight: dict[str, float] = field(default_factory=dict)  # task key -> start ts
    finished: dict[str, float] = field(default_factory=dict)  # task key -> end ts
    anon_in_flight: int = 0
    last_start: float = float("-inf")
    last_fail: float = float("-inf")
    last_error: str | None = None
    # human waits (``human_input`` requested / received), by event time
    wait_open: float = float("-inf")
    wait_close: float = float("-inf")
    wait_message: str | None = None

    @property
    def load(self) -> int:
        return len(self.in_flight) + self.anon_in_flight

    @property
    def waiting(self) -> bool:
        """A ``human_input`` it requested is unanswered (and nothing ended it since)."""
        return self.wait_open > self.wait_close

    @property
    def status(self) -> Status:
        if self.wait_open > self.wait_close and self.wait_open >= self.last_fail:
            return "waiting_human"
        if self.last_fail >= self.last_start and self.last_fail != float("-inf"):
            return "failed"
        return "running" if self.load > 0 else "idle"

    def info(self) -> AgentInfo:
        return AgentInfo(
            id=self.id,
            role=self.role or self.id,
            status=self.status,
            last_activity=self.last_activity,
            current_load=self.load,
            capabilities=self.capabilities,
            goal=self.goal,
            model=self.model,
            tools=self.tools,
            allow_delegation=self.allow_delegation,
            first_seen=self.first_seen,
            last_error=self.last_error,
            waiting_since=self.wait_open if self.waiting else None,
            waiting_message=self.wait_message if self.waiting else None,
        )

    # ------------------------------------------------------------------ load
    def start(self, key: str | None, ts: float) -> None:
        if ts > self.last_start:
            self.last_start = ts
        if key is None:
            self.anon_in_flight += 1
            return
        ended = self.finished.get(key)
        if ended is not None and ended >= ts:
            return  # its end arrived first: already done
        if len(self.in_flight) < _MAX_IN_FLIGHT:
            self.in_flight.setdefault(key, ts)

    def human(self, requested: bool, ts: float, message: Any) -> None:
        if requested:
            if ts > self.wait_open:
                self.wait_open = ts
                self.wait_message = None if message is None else str(message)[:500]
        elif ts > self.wait_close:
            self.wait_close = ts

    def end(self, key: str | None, ts: float, *, failed: bool, error: str | None) -> bool:
        """Apply an end; True when ``key`` was remembered as finished (at ``ts``)."""
        if ts > self.wait_close:  # an agent that finished (or failed) waits for nobody
            self.wait_close = ts
        if failed and ts >= self.last_fail:
            self.last_fail = ts
            self.last_error = error or "failed"
        if key is None:
            if self.anon_in_flight > 0:
                self.anon_in_flight -= 1
            return False
        started = self.in_flight.get(key)
        if started is not None and started <= ts:
            del self.in_flight[key]
        fin = self.finished
        if key not in fin or fin[key] < ts:
            fin.pop(key, None)
            fin[key] = ts
            if len(fin) > _FINISHED_KEEP:
                del fin[next(iter(fin))]
            return True
        return False


def _str_list(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list | tuple):
        return ()
    return tuple(str(x) for x in v if x is not None)


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def agent_capabilities(agent: Any) -> AgentRegistered:
    """An ``agent_registered`` payload read from a CrewAI ``Agent`` (duck typed).

    ``capabilities`` lists the tool names, plus ``delegation`` when the agent may delegate.
    """
    role = str(getattr(agent, "role", "") or "")
    tools: list[str] = []
    for t in getattr(agent, "tools", None) or ():
        name = getattr(t, "name", None)
        tools.append(str(name) if name else type(t).__name__)
    llm = getattr(agent, "llm", None)
    if isinstance(llm, str) or llm is None:
        model = llm
    else:
        model = getattr(llm, "model", None) or getattr(llm, "model_name", None)
    allow = bool(getattr(agent, "allow_delegation", False))
    caps = [*tools, "delegation"] if allow else list(tools)
    return AgentRegistered(
        role=role,
        goal=_opt_str(getattr(agent, "goal", None)),
        tools=tools,
        model=_opt_str(model),
        capabilities=caps,
        allow_delegation=allow,
    )


def _task_key(payload: AgentStarted | AgentEnded | TaskStarted | TaskEnded) -> str | None:
    tid = payload.task_id
    return None if tid is None else str(tid)


class AgentRegistry:
    """Agents seen in the event stream (and/or registered in-process)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_agents: int = 10_000,
        max_finished: int = MAX_FINISHED,
    ):
        # least recently active first: an agent moves to the end when its activity advances
        self._agents: OrderedDict[str, AgentRecord] = OrderedDict()
        self._clock = clock
        self.max_agents = max_agents
        self.evicted = 0
        # every finished-task id remembered, oldest first: (agent id, task key, end ts); an
        # entry whose agent since forgot or re-ended the key is skipped when it comes out
        self.max_finished = max(1, max_finished)
        self._finished: deque[tuple[str, str, float]] = deque()

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._agents)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._agents

    def get(self, agent_id: str) -> AgentInfo | None:
        rec = self._agents.get(agent_id)
        return None if rec is None else rec.info()

    def record(self, agent_id: str) -> AgentRecord | None:
        return self._agents.get(agent_id)

    def all(self) -> list[AgentInfo]:
        return [r.info() for r in self._agents.values()]

    def active_records(
        self, window: float, now: float, waiting_window: float | None = None
    ) -> list[AgentRecord]:
        """Agents with an event in the last ``window`` s; with ``waiting_window``, also
        those waiting for a human since at most that long (a wait is no inactivity)."""
        since = now - window
        if waiting_window is None:
            return [r for r in self._agents.values() if r.last_activity >= since]
        wsince = now - waiting_window
        return [
            r
            for r in self._agents.values()
            if r.last_activity >= since or (r.wait_open > r.wait_close and r.wait_open >= wsince)
        ]

    def active(self, window: float = 300.0, now: float | None = None) -> list[AgentInfo]:
        """Agents with an event in ``[now - window, ...]``, most recently active first."""
        if now is None:
            now = self._clock()
        recs = self.active_records(window, now)
        recs.sort(key=lambda r: (-r.last_activity, r.id))
        return [r.info() for r in recs]

    # ------------------------------------------------------------------ writing
    def _get_or_create(self, agent_id: str, ts: float) -> AgentRecord:
        rec = self._agents.get(agent_id)
        if rec is None:
            if len(self._agents) >= self.max_agents:
                self._evict()
            rec = self._agents[agent_id] = AgentRecord(agent_id, ts, ts)
        return rec

    def _touch(self, rec: AgentRecord, ts: float) -> None:
        if ts > rec.last_activity:
            rec.last_activity = ts
            self._agents.move_to_end(rec.id)

    def _evict(self) -> None:
        """Forget the least recently active agent, one for each new one over the cap
        (bounded memory with hostile agent ids; an active agent is never dropped while a
        less recently active one remains). The order is by arrival of the newest event; the
        first few are compared by event time, so a late, out-of-order event does not
        protect an agent that is older by the clock."""
        agents = self._agents
        it = iter(agents.values())
        oldest = next(it)
        for _, rec in zip(range(_EVICT_SCAN - 1), it, strict=False):
            if rec.last_activity < oldest.last_activity:
                oldest = rec
        del agents[oldest.id]
        self.evicted += 1

    def observe(self, ev: Event) -> AgentRecord | None:
        """Apply one event; returns the agent's record (None for events without an agent)."""
        aid = ev.agent
        if not aid:
            return None
        ts = ev.ts
        rec = self._agents.get(aid)
        if rec is None:
            rec = self._get_or_create(aid, ts)
        else:
            if ts > rec.last_activity:
                rec.last_activity = ts
                self._agents.move_to_end(aid)
            if ts < rec.first_seen:
                rec.first_seen = ts
        t = ev.type
        if t in _LIFECYCLE:
            p = typed_event(ev).payload  # the struct of a lifecycle type
            if isinstance(p, AgentStarted | TaskStarted):
                rec.start(_task_key(p), ts)
            elif isinstance(p, AgentRegistered):
                self._apply_registered(rec, p)
            elif isinstance(p, HumanInput):
                state = p.state
                if state == "requested" or state == "received":
                    rec.human(state == "requested", ts, p.message)
            elif isinstance(p, AgentEnded | TaskEnded):
                err = p.error
                key = _task_key(p)
                failed = t.endswith("_failed")
                done = rec.end(key, ts, failed=failed, error=None if err is None else str(err))
                if done and key is not None:
                    self._remember_finished(aid, key, ts)
        return rec

    def _remember_finished(self, aid: str, key: str, ts: float) -> None:
        """Bound the finished-task ids over all agents: past ``max_finished`` the oldest are
        forgotten (amortised O(1); idle agents' ids go too, not only a busy agent's own)."""
        q = self._finished
        q.append((aid, key, ts))
        if len(q) > self.max_finished:
            agents = self._agents
            while len(q) > self.max_finished:
                old_aid, old_key, old_ts = q.popleft()
                rec = agents.get(old_aid)
                if rec is None:
                    continue
                fin = rec.finished
                if fin.get(old_key) == old_ts:
                    del fin[old_key]
                    if len(fin) <= 8:  # a dict keeps its table when emptied: a small one
                        rec.finished = dict(fin)

    def observe_all(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.observe(ev)

    @staticmethod
    def _apply_registered(rec: AgentRecord, p: AgentRegistered) -> None:
        role = p.role
        if role:
            rec.role = str(role)
        rec.goal = _opt_str(p.goal)
        rec.model = _opt_str(p.model)
        rec.tools = _str_list(p.tools)
        rec.allow_delegation = bool(p.allow_delegation)
        caps = _str_list(p.capabilities)
        if not caps:
            caps = rec.tools + (("delegation",) if rec.allow_delegation else ())
        rec.capabilities = caps

    def register(
        self, agent_id: str, payload: AgentRegistered | dict[str, Any], ts: float | None = None
    ) -> AgentInfo:
        """Register from an ``agent_registered`` payload (in-process use; a dict is typed
        once, as the reducer types one)."""
        ts = self._clock() if ts is None else ts
        rec = self._get_or_create(agent_id, ts)
        self._touch(rec, ts)
        p: AgentRegistered = (
            payload
            if isinstance(payload, AgentRegistered)
            else coerce_payload("agent_registered", payload)
        )
        self._apply_registered(rec, p)
        return rec.info()

    def register_agent(
        self, agent: Any, *, agent_id: str | None = None, ts: float | None = None
    ) -> AgentInfo:
        """Register a CrewAI ``Agent`` (or anything with its attributes).

        The id defaults to the role, which is how collaboration events name agents.
        """
        payload = agent_capabilities(agent)
        aid = agent_id or payload.role or str(getattr(agent, "id", "") or id(agent))
        return self.register(aid, payload, ts)


_LIFECYCLE = frozenset(
    {
        "agent_registered",
        "task_started",
        "agent_started",
        "task_completed",
        "task_failed",
        "agent_completed",
        "agent_failed",
        "human_input",
    }
)
