"""The pure reducer: events in, a frozen :class:`DashboardState` out.

No I/O and no UI imports: ``auren top``, ``serve-ws``, the HTTP API and ``export``
feed the same :class:`Reducer`, so a number means the same thing everywhere.

Windows are over *event* time (``Event.ts``) in ``BUCKET_S``-second buckets:
an event leaves the window once its whole bucket is older than ``window_s``.
``now`` comes from the injected ``clock`` (tests freeze it). ``apply`` is O(1)
per event; ``state`` costs O(active agents + top-N), never O(events).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from .. import rules
from ..events import EVENT_TYPES, Event, Malformed
from ..events.codec import coerce_payload
from ..rules import MAX_TS, MIN_TS, tool_prices
from .build import SnapshotCache, build_state
from .flows import FlowRec
from .handlers import MAX_NAME, Handlers
from .model import (
    TIERS,
    AgentView,
    CollabEdge,
    Costs,
    DashboardState,
    FlowView,
    Gap,
    Health,
    HypothesisView,
    Knowledge,
    LogEntry,
    ProcessView,
    RunCost,
    Tiers,
    TierView,
    Totals,
)
from .parts import AgentAcc, HypRec, RunAcc, Sections
from .registry import AgentRegistry
from .summary import log_entry
from .window import BUCKET_S

_replace = msgspec.structs.replace

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "TIERS",
    "AgentView",
    "CollabEdge",
    "Costs",
    "DashboardState",
    "FlowView",
    "Gap",
    "Health",
    "HypothesisView",
    "Knowledge",
    "LogEntry",
    "ProcessView",
    "Reducer",
    "RunCost",
    "TierView",
    "Tiers",
    "Totals",
    "make_reducer",
]

_MAX_UNKNOWN_NAMES = 100
_INV_B = 1.0 / BUCKET_S
_tuple_new = tuple.__new__
_FUTURE_BUCKETS = int(300 // BUCKET_S)
# latest status wins by event time, whenever it arrives (a late end must still end its flow)
_UNWINDOWED = frozenset(
    {
        "hypothesis",
        "publisher_stats",
        "flow_started",
        "flow_step",
        "flow_completed",
        "flow_failed",
        "human_input",
    }
)


class Reducer(Handlers):
    """Folds events into rolling-window aggregates; :meth:`state` snapshots them.

    Not thread-safe: apply and snapshot from one thread (the stream worker); the
    :class:`DashboardState` it returns is immutable and can go anywhere.
    """

    def __init__(
        self,
        *,
        window_s: float = 3600.0,
        active_window_s: float = 300.0,
        budget_usd_per_hour: float | None = None,
        clock: Callable[[], float] = time.time,
        log_size: int = 2000,
        tool_costs: Mapping[str, float] | None = None,
        tier_costs: Mapping[str, Any] | None = None,
    ) -> None:
        """``tier_costs``: the ``[tier_costs]`` table (:func:`auren_core.rules.tier_cost_model`)
        pricing the memory loads whose events carry no price."""
        if not window_s > 0 or not active_window_s > 0:
            raise ValueError("window_s and active_window_s must be > 0")
        self.window_s = float(window_s)
        self.active_window_s = float(active_window_s)
        self.budget_usd_per_hour = budget_usd_per_hour
        self.clock = clock
        self.tool_costs = tool_prices(tool_costs)  # valid prices only (auren_core.rules)
        self.tier_model = tier_model_of(tier_costs)
        self.registry = AgentRegistry(clock=clock)
        self.storage = rules.TierStorage()  # latest bytes of each tier's stores
        s = self.s = Sections()
        self._exp = s.expiry
        self._g = s.g
        self._accs: dict[str, AgentAcc] = {}
        self._log: deque[LogEntry] = deque(maxlen=max(1, log_size))
        self._log_seq = 0  # entries ever appended (state() converts only the new ones)
        self._runs: dict[str, RunAcc] = {}
        self._hyps: dict[str, HypRec] = {}
        self._flows: dict[str, FlowRec] = {}  # flow run id -> its record, oldest first
        self._flow_of: dict[str, FlowRec] = {}  # flow runs and the crew runs inside them
        self._max_b = 2**62
        self.snapshot_cache = SnapshotCache()  # state()'s own: edges, views, the log tuple
        # health
        self.events_total = 0
        self.malformed = 0
        self.malformed_reasons: deque[str] = deque(maxlen=20)
        self.unknown_types = 0
        self.unknown_names: dict[str, int] = {}
        self.publishers: dict[str, tuple[float, int]] = {}
        # event-id prefix of a publishing process -> (identity, ts, rss bytes, cpu seconds)
        self.processes: dict[str, tuple[str, float, int | None, float | None]] = {}
        self.out_of_window = 0
        self.bad_payloads = 0
        self.lag: int | None = None
        self.last_id: str | None = None
        self.connection = "connecting"
        self.connection_detail = ""
        self.arrivals: dict[int, int] = {}
        self.first_arrival: float | None = None
        self.first_ts: float | None = None
        self._handlers = self.handlers()
        self.advance(clock())

    # ------------------------------------------------------------------ input
    def set_connection(self, state: str, detail: str = "") -> None:
        self.connection = state
        self.connection_detail = detail

    def apply_batch(
        self,
        items: Iterable[Event | Malformed],
        *,
        last_id: str | None = None,
        lag: int | None = None,
    ) -> None:
        """Apply a reader batch, then move the window to the clock's now."""
        now = self.clock()
        # future-timestamp clamp from this batch's now (a replay clock may have jumped)
        self._max_b = int(now // BUCKET_S) + _FUTURE_BUCKETS
        apply = self._apply
        n = 0
        for it in items:
            n += 1
            try:
                apply(it)
            except Exception as exc:  # a reducer bug must not stop the dashboard
                self._not_reducible(it, exc)
        self._arrived(now, n)
        if last_id:
            self.last_id = last_id
        if lag is not None:
            self.lag = lag
        self.advance(now)

    def apply(self, item: Event | Malformed) -> None:
        now = self.clock()
        self._max_b = int(now // BUCKET_S) + _FUTURE_BUCKETS
        try:
            self._apply(item)
        except Exception as exc:
            self._not_reducible(item, exc)
        self._arrived(now, 1)
        self.advance(now)

    def _not_reducible(self, item: object, exc: Exception) -> None:
        """Counted and shown like a malformed entry (never silently swallowed)."""
        self.bad_payloads += 1
        sid = getattr(item, "sid", "")
        reason = f"not reducible: {type(exc).__name__}: {exc}"
        self._on_malformed(Malformed(sid if isinstance(sid, str) else "", reason))

    def _arrived(self, now: float, n: int) -> None:
        if n <= 0:
            return
        if self.first_arrival is None:
            self.first_arrival = now
        sec = int(now)
        arr = self.arrivals
        arr[sec] = arr.get(sec, 0) + n
        if len(arr) > 16:
            for k in [k for k in arr if k < sec - 10]:
                del arr[k]

    def advance(self, now: float) -> None:
        """Move the window's trailing edge to ``now - window_s`` (drops expired buckets)."""
        # events from a clock running ahead land at most this far in the future
        self._max_b = int(now // BUCKET_S) + _FUTURE_BUCKETS
        cutoff = int((now - self.window_s) // BUCKET_S) - 1
        if cutoff > self._exp.cutoff:
            self._exp.advance(cutoff)
            self.s.invalidate()

    def _apply(self, item: Event | Malformed) -> None:
        self.events_total += 1
        if type(item) is not Event:
            if isinstance(item, Malformed):
                self._on_malformed(item)
            else:
                self._on_malformed(Malformed("", f"not an event: {type(item).__name__}"))
            return
        ev: Event = item
        sid = ev.sid
        if type(sid) is str and sid:
            self.last_id = sid
        ts = ev.ts
        if not MIN_TS <= ts < MAX_TS:  # rules.timestamp_ok: NaN, inf or absurd
            self._on_malformed(Malformed(ev.stream_id, f"bad ts {ts!r} in {ev.type[:40]}"))
            return
        first = self.first_ts
        if first is None or ts < first:
            self.first_ts = ts
        t = ev.type
        if type(ev.payload) is dict and t in EVENT_TYPES:
            # handed over in process as a dict: typed once here (the one accessor), as
            # decode() types what the stream holds; every reader below sees the struct
            ev = _replace(ev, payload=coerce_payload(t, ev.payload))
        # a LogEntry now, while the event is hot in cache (tuple.__new__: NamedTuple's own
        # __new__ is a Python function and doubles the cost)
        self._log.append(
            _tuple_new(
                LogEntry,
                (sid if type(sid) is str else "", ev.id, ts, t, ev.agent, ev.run, False, ev),
            )
        )
        self._log_seq += 1
        b = int(ts * _INV_B) if ts >= 0 else int(ts // BUCKET_S)
        if b > self._max_b:
            b = self._max_b
        rec = self.registry.observe(ev)
        acc: AgentAcc | None = None
        if rec is not None:
            acc = self._accs.get(rec.id)
            if acc is None:
                acc = self._accs[rec.id] = AgentAcc(self._exp)
                self._prune_accs()
            acc.version += 1
            acc.last_id = ev.id
        if t not in EVENT_TYPES:
            self._on_unknown(t)
        run = ev.run
        if run:
            racc = self._runs.get(run)
            if racc is None:
                self._new_run(run, ts)
            elif ts < racc.started:
                racc.started = ts
            if self._flow_of:
                fr = self._flow_of.get(run)
                if fr is not None:
                    fr.touch(ts, ev.agent)
        h = self._handlers.get(t)
        if b > self._exp.cutoff:
            g = self._g
            bk = g._lbk if b == g._lb else g.at(b)
            bk[0] += 1
            g.tot[0] += 1
        else:
            self.out_of_window += 1
            if t not in _UNWINDOWED:
                return
            # latest status wins by event time, whenever it arrives
        if h is not None:
            try:
                h(ev, b, acc)
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                self.bad_payloads += 1
                reason = f"bad {t} payload: {exc!r}"
                self._on_malformed(Malformed(ev.stream_id, reason[:300]))

    # ------------------------------------------------------------------ health
    def _on_malformed(self, m: Malformed) -> None:
        self.malformed += 1
        reason = m.reason if len(m.reason) <= MAX_NAME else m.reason[:MAX_NAME] + "..."
        self.malformed_reasons.append(f"{m.sid}: {reason}" if m.sid else reason)
        self._log.append(log_entry(m))
        self._log_seq += 1

    def _on_unknown(self, t: str) -> None:
        self.unknown_types += 1
        name = t[:MAX_NAME]
        names = self.unknown_names
        if name in names:
            names[name] += 1
        elif len(names) < _MAX_UNKNOWN_NAMES:
            names[name] = 1
        else:
            names["(other)"] = names.get("(other)", 0) + 1

    # ------------------------------------------------------------------ output
    def state(self, now: float | None = None) -> DashboardState:
        """A frozen snapshot at ``now`` (default: the clock)."""
        if now is None:
            now = self.clock()
        self.advance(now)
        return build_state(self, now)


def make_reducer(
    settings: Settings | None = None,
    *,
    window_s: float = 3600.0,
    clock: Callable[[], float] = time.time,
    active_window_s: float | None = None,
    budget_usd_per_hour: float | None = None,
    tool_costs: Mapping[str, float] | None = None,
    tier_costs: Mapping[str, Any] | None = None,
    log_size: int = 2000,
) -> Reducer:
    """The reducer as every consumer builds it (``top``, its worker, ``top --once``,
    serve-ws): what the numbers depend on (the active window, the budget, configured tool
    costs) comes from ``settings``; an argument given here wins over them."""
    if settings is not None:
        if active_window_s is None:
            active_window_s = settings.active_window_s
        if budget_usd_per_hour is None:
            budget_usd_per_hour = settings.budget_usd_per_hour
        if tool_costs is None:
            tool_costs = settings.tool_costs
        if tier_costs is None:
            tier_costs = settings.tier_costs.model_dump()
    return Reducer(
        window_s=window_s,
        active_window_s=300.0 if active_window_s is None else active_window_s,
        budget_usd_per_hour=budget_usd_per_hour,
        clock=clock,
        log_size=log_size,
        tool_costs=tool_costs,
        tier_costs=tier_costs,
    )


def tier_model_of(tier_costs: Mapping[str, Any] | None) -> rules.TierCostModel:
    """The ``[tier_costs]`` table as :class:`auren_core.rules.TierCostModel`, its embedding
    model priced by genai-prices (:func:`auren_core.pricing.embedding_usd_per_token`)."""
    if not tier_costs:
        return rules.NO_TIER_COSTS
    model = tier_costs.get("embedding_model")
    rate = None
    if isinstance(model, str) and model.strip():
        from ..pricing import embedding_usd_per_token

        rate = embedding_usd_per_token(model)
    return rules.tier_cost_model(tier_costs, rate)
