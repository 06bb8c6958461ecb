"""Flow runs (CrewAI Flows) from ``flow_*`` and ``human_input`` events (internal).

One :class:`FlowRec` per flow execution, keyed by the event envelope's ``run``: every
``flow_*`` event of one execution carries the same run id. The reducer keeps one per
live flow; the exports keep one per flow run of their window and read the same
definitions (status, current step, durations, human waits) from it.

Everything is ordered by *event* time, so out-of-order delivery (CrewAI emits from a
thread pool) never leaves a phantom step running or a wait open:

* a step is in flight from its ``phase="started"`` until a ``completed``/``failed`` of
  the same method with a later (or equal) time; an end that arrives before its start
  wins. The **current step** is the in-flight method started last; while a human wait
  is open, the method waiting.
* a **human wait** is opened by ``flow_step`` ``phase="paused"`` or ``human_input``
  ``state="requested"`` and closed by a later ``human_input`` ``received``, the end of
  the paused method, or the end of the flow. Waits are keyed by method (``""`` when the
  event names none), so parallel waits close independently.
* the flow ends with ``flow_completed``/``flow_failed`` (failed also when ``ok`` is
  false); a ``flow_started`` or step start later than the end re-opens it (a resumed
  flow). The **duration** is the end event's ``duration_ms``, else end - start.
* **status**: ``completed``/``failed`` once ended, else ``waiting_human`` while a wait is
  open, else ``running``.
"""

from __future__ import annotations

from typing import Any, Literal

from ..events import Event, FlowEnded, FlowStarted, FlowStep, HumanInput
from ..events.codec import typed_event

__all__ = [
    "FLOW_TYPES",
    "MAX_FLOW_NAME",
    "FlowRec",
    "FlowStatus",
    "joins_flow",
    "method_key",
    "opt_ms",
]

FlowStatus = Literal["running", "waiting_human", "completed", "failed"]
FLOW_TYPES = frozenset({"flow_started", "flow_step", "flow_completed", "flow_failed"})
MAX_FLOW_NAME = 200
MAX_MESSAGE = 500
_MAX_KEYS = 64  # in-flight / finished methods and waits kept per flow (hostile input)
_MAX_AGENTS = 20
_MAX_CREWS = 20
_NEG = float("-inf")
_PHASES = frozenset({"started", "completed", "failed", "paused"})


def opt_ms(v: Any) -> float | None:
    """A finite non-negative duration in ms from an untrusted payload value (else None)."""
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if 0.0 <= f < 1e15 else None


def joins_flow(ev: Event, known: bool) -> bool:
    """Whether ``ev`` (a ``flow_*`` or ``human_input`` event) belongs to the flow of its run
    (``known``: that run is already a flow). Events without a run cannot be told apart:
    never. A ``human_input`` joins when its run is a flow, or when it names a flow or no
    agent (nobody but a flow waits without an agent); else it is an agent's own wait."""
    if not ev.run:
        return False
    if ev.type != "human_input" or known:
        return True
    if not ev.agent:
        return True
    p: HumanInput = typed_event(ev).payload
    return p.flow is not None


def _name(v: Any) -> str | None:
    if v is None:
        return None
    s = v if isinstance(v, str) else str(v)
    return s[:MAX_FLOW_NAME]


def method_key(v: Any) -> str:
    """A step's key from a payload's ``method``: ``""`` when it names none."""
    return _name(v) or ""


class FlowRec:
    """One flow execution. Mutable; :meth:`status` and friends read it."""

    __slots__ = (
        "agents",
        "crews",
        "duration",
        "ended",
        "error",
        "failed",
        "finished",
        "flow",
        "flow_id",
        "has_start",
        "human_waits",
        "in_flight",
        "last_activity",
        "last_step",
        "last_step_ts",
        "run",
        "started",
        "steps_completed",
        "steps_failed",
        "version",
        "view",
        "waits",
    )

    def __init__(self, run: str, ts: float) -> None:
        self.run = run
        self.flow: str | None = None
        self.flow_id: str | None = None
        self.started = ts  # flow_started's time, or the earliest event seen without one
        self.has_start = False
        self.ended: float | None = None
        self.failed = False
        self.error: str | None = None
        self.duration: float | None = None  # ms, from the end event
        self.last_activity = ts
        self.in_flight: dict[str, float] = {}  # method -> start time
        self.finished: dict[str, float] = {}  # method -> latest end time
        self.steps_completed = 0
        self.steps_failed = 0
        self.last_step: str | None = None  # the method that ended last
        self.last_step_ts = _NEG
        # wait key (method or "") -> [opened, closed, message, waits opened];
        # open while opened > closed
        self.waits: dict[str, list[Any]] = {}
        self.human_waits = 0  # waits opened (requests and pauses, one per key and time)
        self.agents: list[str] = []  # agents seen in the flow's run and its crews
        self.crews: list[str] = []  # runs of crews kicked off inside the flow
        self.version = 0
        self.view: Any = None  # snapshot cache (reducer)

    # ------------------------------------------------------------------ reading
    def waiting(self) -> bool:
        if self.ended is not None:
            return False
        return any(w[0] > w[1] for w in self.waits.values())

    def open_wait(self) -> tuple[str, float, str | None] | None:
        """(method, since, message) of the most recent open wait, if any."""
        if self.ended is not None:
            return None
        best: tuple[str, float, str | None] | None = None
        for key, w in self.waits.items():
            if w[0] > w[1] and (best is None or w[0] > best[1]):
                best = (key, w[0], w[2])
        return best

    def status(self) -> FlowStatus:
        if self.ended is not None:
            return "failed" if self.failed else "completed"
        return "waiting_human" if self.waiting() else "running"

    def current_step(self) -> tuple[str | None, float | None]:
        """(method, since): the waiting method, else the in-flight method started last."""
        if self.ended is not None:
            return None, None
        w = self.open_wait()
        if w is not None and w[0]:
            return w[0], self.in_flight.get(w[0], w[1])
        if not self.in_flight:
            return None, None
        m = max(self.in_flight, key=self.in_flight.__getitem__)
        return m, self.in_flight[m]

    def duration_ms(self, now: float | None = None) -> float | None:
        """The run's duration: its end's ``duration_ms``, else end - start; while running,
        ``now`` - start (None without ``now``)."""
        if self.ended is not None:
            if self.duration is not None:
                return self.duration
            return max(0.0, (self.ended - self.started) * 1000.0)
        if now is None:
            return None
        return max(0.0, (now - self.started) * 1000.0)

    # ------------------------------------------------------------------ writing
    def touch(self, ts: float, agent: str | None) -> None:
        """Any event of this flow's run (or of a crew inside it)."""
        if ts > self.last_activity:
            self.last_activity = ts
        if ts < self.started and not self.has_start:
            self.started = ts
        if agent and agent not in self.agents and len(self.agents) < _MAX_AGENTS:
            self.agents.append(agent[:MAX_FLOW_NAME])
            self.version += 1

    def add_crew(self, run: str) -> bool:
        if run in self.crews or len(self.crews) >= _MAX_CREWS:
            return False
        self.crews.append(run)
        self.version += 1
        return True

    def apply(self, ev: Event) -> float | None:
        """Apply one ``flow_*`` or ``human_input`` event of this run. Returns the duration
        in ms of what it ended (a step, a wait or the flow), when known."""
        self.version += 1
        ts = ev.ts
        self.touch(ts, ev.agent)
        p: FlowStarted | FlowStep | FlowEnded | HumanInput = typed_event(ev).payload
        name = p.flow
        if name is not None and (self.flow is None or ev.type == "flow_started"):
            self.flow = _name(name)
        t = ev.type
        if isinstance(p, FlowStep):
            return self._step(ts, p)
        if isinstance(p, HumanInput):
            return self._human(ts, p)
        if isinstance(p, FlowStarted):
            fid = p.flow_id
            if fid is not None:
                self.flow_id = _name(fid)
            if not self.has_start or ts < self.started:
                self.started = ts
            self.has_start = True
            self._reopen(ts)
            return None
        # flow_completed / flow_failed: the latest end (by event time) wins
        if self.ended is not None and ts < self.ended:
            return None
        self.ended = ts
        self.failed = t == "flow_failed" or p.ok is False
        err = p.error
        self.error = None if err is None else str(err)[:MAX_MESSAGE]
        self.duration = opt_ms(p.duration_ms)
        for w in self.waits.values():
            if w[1] < ts:
                w[1] = ts
        for m in [m for m, s in self.in_flight.items() if s <= ts]:
            del self.in_flight[m]
        return self.duration_ms()

    def _reopen(self, ts: float) -> None:
        if self.ended is not None and ts > self.ended:
            self.ended = None
            self.failed = False
            self.error = None
            self.duration = None

    def _step(self, ts: float, p: FlowStep) -> float | None:
        method = method_key(p.method) or "?"
        phase = p.phase
        if phase not in _PHASES:  # a struct built in process is not validated
            return None
        if phase == "started":
            self._reopen(ts)
            self._start(method, ts)
            return None
        if phase == "paused":
            if method not in self.in_flight:
                self._start(method, ts)
            self._open(method, ts, None)
            return None
        failed = phase == "failed" or p.ok is False
        if failed:
            self.steps_failed += 1
        else:
            self.steps_completed += 1
        if ts >= self.last_step_ts:
            self.last_step, self.last_step_ts = method, ts
        started = self.in_flight.get(method)
        if started is not None and started <= ts:
            del self.in_flight[method]
        fin = self.finished
        prev = fin.get(method)
        if prev is None or prev < ts:
            fin.pop(method, None)
            fin[method] = ts
            if len(fin) > _MAX_KEYS:
                del fin[next(iter(fin))]
        w = self.waits.get(method)
        if w is not None and w[1] < ts:
            w[1] = ts
        dur = opt_ms(p.duration_ms)
        if dur is None and started is not None and started <= ts:
            dur = (ts - started) * 1000.0
        return dur

    def _start(self, method: str, ts: float) -> None:
        ended = self.finished.get(method)
        if ended is not None and ended >= ts:
            return  # its end arrived first: already done
        cur = self.in_flight.get(method)
        if cur is None:
            if len(self.in_flight) < _MAX_KEYS:
                self.in_flight[method] = ts
        elif ts > cur:
            self.in_flight[method] = ts

    def _open(self, key: str, ts: float, message: Any) -> None:
        w = self.waits.get(key)
        if w is None:
            if len(self.waits) >= _MAX_KEYS:
                return
            w = self.waits[key] = [_NEG, _NEG, None, 0]
        if ts > w[0]:
            if w[0] <= w[1]:  # a new wait, not a second report of an open one
                self.human_waits += 1
                w[3] += 1
            w[0] = ts
            if message is not None:
                w[2] = str(message)[:MAX_MESSAGE]
        elif message is not None and w[2] is None:
            w[2] = str(message)[:MAX_MESSAGE]
        # what already ended it, if that arrived first: the method's end, the flow's end
        end = self.finished.get(key) if key else None
        if self.ended is not None and (end is None or self.ended > end):
            end = self.ended
        if end is not None and end >= ts and w[1] < end:
            w[1] = end

    def _human(self, ts: float, p: HumanInput) -> float | None:
        key = method = method_key(p.method)
        if p.state == "requested":
            self._open(key, ts, p.message)
            return None
        if p.state != "received":
            return None
        w = self.waits.get(key)
        if w is None and len(self.waits) < _MAX_KEYS:
            # remembered, so that a request arriving after its reply stays answered
            w = self.waits[key] = [_NEG, _NEG, None, 0]
        opened = None
        if w is not None:
            opened = w[0] if w[0] != _NEG else None
            if w[1] < ts:
                w[1] = ts
        if not method or opened is None:
            # a reply that names no method, or none that asked, answers every earlier wait
            for w2 in self.waits.values():
                if w2[0] <= ts and w2[1] < ts:
                    if opened is None and w2[0] != _NEG:
                        opened = w2[0]
                    w2[1] = ts
        wait = opt_ms(p.wait_ms)
        if wait is None and opened is not None and opened <= ts:
            wait = (ts - opened) * 1000.0
        return wait
