"""The rules behind every number AUREN shows: one definition each, used everywhere.

The reducer behind ``auren top``, the WebSocket snapshot and the HTTP API
(:mod:`auren_core.state`), every ``auren export`` report (:mod:`auren_core.export.tables`),
the analytics and the PostgreSQL rollups (:mod:`auren_core.store.retention`, whose SQL is
written from the constants here) compute their figures through this module, so one recording
gives the same numbers in each of them. Pure functions of payload values: no I/O and no
import from the rest of ``auren_core`` (the reducer imports this module, never the reverse).

Which entries count at all is decided before these rules: every reader (top, serve-ws, the
export, the PostgreSQL sink) decodes with :func:`auren_core.events.decode`, which checks each
payload against its type. An ``llm_call`` whose token count is a string, a float, a bool or
null is a *malformed entry* there (counted in ``health.malformed``, in no total, in no report).
The rules below also cover those values for events handed over in process.

**Token counts** (:func:`tokens`): an integer from 0 to :data:`MAX_TOKENS` counts as itself;
a finite float in that range is truncated (12.9 -> 12); a missing, null, negative, boolean or
string count, NaN, and anything above :data:`MAX_TOKENS` (no call uses a billion tokens: the
value is corrupt) count as 0. The call itself still counts.

**Money** (:func:`usd`): a price is a finite number from 0 to :data:`MAX_USD`; anything else
(null, negative, a string, NaN, more than a million dollars for one event) is *unknown*.

* LLM call (:func:`llm_call_cost`): its ``cost_usd``; unknown stays unknown (the call is
  counted in ``unpriced_llm_calls``, never as $0), except a call that failed before using a
  token, which costs 0.
* tool call (:func:`tool_cost`): its ``cost_usd``; else the price configured for that tool in
  ``[tool_costs]`` (``auren.toml``); else 0 (a tool without a price is free, not unknown).
* memory load (:func:`tier_access`): ``cost_by_tier`` (per tier), else ``cost_usd`` charged
  to the tier that served the load (a miss: the deepest tier it tried; chromadb if it names
  none); a load that carries neither costs 0.
* ``cost_usd`` - in ``totals``, per agent, per run, per flow and in every export report -
  means **LLM + tools + memory**: ``llm_cost_usd`` + ``tool_cost_usd`` + ``memory_cost_usd``
  of what the row covers, known prices only. ``llm_cost_usd`` is the LLM part alone.

**Memory tiers** (:data:`TIERS`, :data:`TIER_ALIASES`): ``redis``, ``postgresql``,
``chromadb``; a ``tier_accessed`` that names none of them (``miss``, or anything unknown) is
a miss. A load *tried* the tiers it reports a latency for plus the one that served it.
Two rates per tier, never to be confused:

* ``share`` (:func:`tier_share`; the API's ``tier_hit_rates``, pane 1's "served" row) =
  loads it served / *all* loads: "45 % served from Redis". The shares of the three tiers
  plus the ``miss_rate`` (misses / all loads) sum to 1.
* ``local_hit_rate`` (:func:`local_hit_rate`; the API's ``local_hit_rates``, pane 1's
  "local hit" row) = loads it served / loads that *reached* it (tried it). The snapshot's
  ``hit_rate`` key is this rate too (a DESIGN.md key, kept with its old meaning).

Both are 0 in the snapshot (None in the export) when the denominator is 0.

**Tier costs** (:class:`TierCostModel`, :func:`modelled_tier_costs`): a load that carries a
price (``cost_by_tier`` / ``cost_usd``, priced where it ran) costs that. One that carries
none is priced by the configured ``[tier_costs]`` (``auren.toml``): each tier it *tried*
costs that tier's ``redis`` / ``postgresql`` / ``chromadb`` USD per operation, and when an
``embedding_model`` is configured and genai-prices knows it, a load that reached ChromaDB
also costs the embedding of its query (``embedding_tokens`` of the event, else an estimate
of ceil(characters / 4) tokens) at that model's input price, charged to ``chromadb``.
``embedding_cost_usd`` is that embedding part; totals say whether they include it
(``includes_embedding_cost``). Per-operation defaults are 0 (self-hosted servers bill no
request): an assumption, documented in docs/http-api.md with reference figures.

**Percentiles** (:func:`quantiles`): nearest rank (the smallest value with at least q of
the samples at or below it) over a log histogram whose bins are 5 % wide (1 us to 10^12 ms);
the value reported is the bin's geometric midpoint, so a percentile is within 2.5 % of the
exact one. The reducer (tier latencies) and the exports (tier latencies, flow durations)
use the same bins.

**Learning velocity** (:func:`per_hour`, :func:`validation_rate`): from ``hypothesis``
events; each hypothesis (``hypothesis_id``) counts once per status it reached
(``formed``, ``updated``, ``validated``, ``rejected``). A status count per hour is the count
over the span from the first event analysed to now (at least a minute); the validation
rate = validated / (validated + rejected).

**Knowledge gap** (:func:`gap_key`): one lookup that nothing answered - a
``memory_tier_access`` that no tier served, or a ``knowledge_access`` with ``hit: false`` -
named by what was asked (the query; for a ``knowledge_access`` without one, its item).
A gap's ``count`` is the number of such lookups.

**Time and shape of an entry** (:func:`timestamp_problem`, :data:`MAX_DEPTH`): an event's
``ts`` must be a finite time from :data:`MIN_TS` (2000-01-01) to before :data:`MAX_TS`
(2100-01-01), UTC; its payload may nest at most :data:`MAX_DEPTH` levels. Anything else
is a *malformed entry* for every reader - ``auren top``, serve-ws and its HTTP API, every
export, the PostgreSQL sink (which dead-letters it) - so no absurd time is ever shown,
exported under the year 1653, or breaks a date computation, and no payload is deep enough
to exhaust a reader's stack. The store also dead-letters events more than
:data:`MAX_FUTURE_S` (2 days) ahead of its clock: a day partition far in the future would
outlive retention.

**Rounding in outputs**: USD to 10 decimals (:func:`round_usd`), rates to 6, milliseconds
to 3.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:  # annotations only: no import from the rest of auren_core at run time
    from .events.model import LlmCall as LlmCallPayload
    from .events.model import MemoryTierAccess, MemoryTierStorage, _Payload

    # a payload read by key: the typed struct's mapping view, or a dict handed over in process
    PayloadLike = _Payload | Mapping[str, Any]

__all__ = [
    "CHARS_PER_TOKEN",
    "HIST_LO_MS",
    "HIST_MAX_BIN",
    "HIST_RATIO",
    "HYPOTHESIS_STATUSES",
    "MAX_DEPTH",
    "MAX_FUTURE_S",
    "MAX_NAME",
    "MAX_TOKENS",
    "MAX_TS",
    "MAX_USD",
    "MIN_RATE_SPAN_S",
    "MIN_TS",
    "MISS",
    "NO_QUERY",
    "NO_TIER_COSTS",
    "QUERY_LABEL_CHARS",
    "TIERS",
    "TIER_ALIASES",
    "LlmCall",
    "TierAccess",
    "TierCostModel",
    "bin_of",
    "bin_value",
    "embedding_tokens",
    "gap_key",
    "is_gap",
    "known_cost",
    "llm_call",
    "llm_call_cost",
    "local_hit_rate",
    "modelled_tier_costs",
    "name",
    "per_hour",
    "percentiles",
    "quantiles",
    "query_label",
    "round_rate",
    "round_usd",
    "storage_usd_per_month",
    "tier_access",
    "tier_cost_model",
    "tier_index",
    "tier_name",
    "tier_share",
    "timestamp_ok",
    "timestamp_problem",
    "tokens",
    "tool_cost",
    "tool_prices",
    "usd",
    "validation_rate",
]

# NamedTuple's own __new__ is a Python function: tuple.__new__ builds one at a third of
# the cost (these run once per event in the reducer and the exports)
_new = tuple.__new__

MAX_TOKENS: Final = 10**9  # per count of one call
MAX_USD: Final = 1e6  # per event
MAX_NAME: Final = 200  # names (tools, agents asked, queries) are clipped to this
MIN_TS: Final = 946_684_800.0  # 2000-01-01T00:00:00Z: no event is older
MAX_TS: Final = 4_102_444_800.0  # 2100-01-01T00:00:00Z: none is this far ahead
MAX_FUTURE_S: Final = 2 * 86400.0  # the store: at most this far ahead of its clock
MAX_DEPTH: Final = 64  # nesting levels of a payload (the payload object is level 1)
USD_DECIMALS: Final = 10
RATE_DECIMALS: Final = 6

# --------------------------------------------------------------------------- tokens and money


def tokens(v: Any) -> int:
    """A token count as every output counts it (see the module docstring)."""
    if type(v) is int:
        return v if 0 <= v <= MAX_TOKENS else 0
    if isinstance(v, bool):
        return 0
    if isinstance(v, int):  # an int subclass (IntEnum, ...)
        return int(v) if 0 <= v <= MAX_TOKENS else 0
    if isinstance(v, float) and 0.0 <= v <= MAX_TOKENS:  # NaN fails the comparison
        return int(v)
    return 0


def usd(v: Any) -> float | None:
    """A price in USD, or None when it is unknown (see the module docstring)."""
    if type(v) is float:
        return v if 0.0 <= v <= MAX_USD else None
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if 0.0 <= f <= MAX_USD else None


def llm_call_cost(cost: float | None, ok: bool, inp: int, out: int, cached: int) -> float | None:
    """The cost an ``llm_call`` counts for, from its valid ``cost_usd`` (:func:`usd`) and its
    counted tokens: unknown stays None (never 0), except that a call that failed before
    using any token costs 0 (an error, not an unknown price)."""
    if cost is None and not ok and not (inp or out or cached):
        return 0.0
    return cost


class LlmCall(NamedTuple):
    """One ``llm_call`` as counted: tokens by :func:`tokens`, ``cost`` None = unpriced."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost: float | None
    failed: bool


def llm_call(p: LlmCallPayload | Mapping[str, Any]) -> LlmCall:
    """The counted figures of one ``llm_call`` payload (:func:`tokens`, :func:`usd`,
    :func:`llm_call_cost`; the typed payload takes an inlined fast path to the same result,
    a dict handed over in process the rules themselves)."""
    if type(p) is not dict:
        t: LlmCallPayload = p  # type: ignore[assignment]
        v = t.input_tokens
        inp = v if 0 <= v <= MAX_TOKENS else tokens(v)
        v = t.output_tokens
        out = v if 0 <= v <= MAX_TOKENS else tokens(v)
        v = t.cached_tokens
        cached = v if 0 <= v <= MAX_TOKENS else tokens(v)
        v = t.reasoning_tokens
        reasoning = v if 0 <= v <= MAX_TOKENS else tokens(v)
        c = t.cost_usd
        cost = c if c is not None and 0.0 <= c <= MAX_USD else usd(c)
        failed = t.ok is False
        if cost is None and failed and not (inp or out or cached):
            cost = 0.0  # llm_call_cost
        return _new(LlmCall, (inp, out, cached, reasoning, cost, failed))
    return _llm_call_dict(p)


def _llm_call_dict(p: Mapping[str, Any]) -> LlmCall:
    g = p.get
    v = g("input_tokens")
    inp = v if type(v) is int and 0 <= v <= MAX_TOKENS else tokens(v)
    v = g("output_tokens")
    out = v if type(v) is int and 0 <= v <= MAX_TOKENS else tokens(v)
    v = g("cached_tokens")
    cached = v if type(v) is int and 0 <= v <= MAX_TOKENS else tokens(v)
    v = g("reasoning_tokens")
    reasoning = v if type(v) is int and 0 <= v <= MAX_TOKENS else 0 if v is None else tokens(v)
    c = g("cost_usd")
    cost = c if type(c) is float and 0.0 <= c <= MAX_USD else usd(c)
    failed = g("ok", True) is False
    if cost is None and failed and not (inp or out or cached):
        cost = 0.0  # llm_call_cost
    return _new(LlmCall, (inp, out, cached, reasoning, cost, failed))


def tool_prices(configured: Mapping[str, Any] | None) -> dict[str, float]:
    """The ``[tool_costs]`` table as prices: entries that are not a valid price are dropped."""
    out: dict[str, float] = {}
    for k, v in (configured or {}).items():
        c = usd(v)
        if c is not None and isinstance(k, str):
            out[k] = c
    return out


def tool_cost(cost_usd: Any, tool: str, prices: Mapping[str, float]) -> float:
    """What one tool call costs: its ``cost_usd``, else the configured price of ``tool``,
    else 0. ``prices`` comes from :func:`tool_prices`."""
    c = usd(cost_usd)
    if c is None:
        return prices.get(tool, 0.0)
    return c


def known_cost(total: float, priced: int, unpriced: int) -> float | None:
    """An export row's ``cost_usd``: the sum of the known costs, or None (unknown) when the
    row has unpriced LLM calls and nothing in it had a price. The snapshot shows 0 there and
    counts the calls in ``unpriced_llm_calls``."""
    if unpriced and not priced:
        return None
    return total


def round_usd(x: float | None) -> float | None:
    return None if x is None else round(x, USD_DECIMALS)


def round_rate(x: float | None) -> float | None:
    return None if x is None else round(x, RATE_DECIMALS)


# --------------------------------------------------------------------------- time


def timestamp_ok(ts: Any) -> bool:
    """Whether ``ts`` is an event time every output can place (see the module docstring)."""
    t = type(ts)
    return (t is float or t is int) and MIN_TS <= ts < MAX_TS  # NaN fails the comparison


def timestamp_problem(ts: Any, now: float | None = None) -> str | None:
    """Why ``ts`` cannot be an event time, or None: outside [MIN_TS, MAX_TS) - and, where
    ``now`` is given (the store's clock), more than :data:`MAX_FUTURE_S` after it."""
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return f"timestamp out of range: {ts!r}"
    if not MIN_TS <= ts < MAX_TS:
        return f"timestamp out of range: {ts!r} (from 2000-01-01 to 2100-01-01 UTC)"
    if now is not None and ts > now + MAX_FUTURE_S:
        return f"timestamp out of range: {ts!r} (more than 2 days ahead of the store's clock)"
    return None


# --------------------------------------------------------------------------- names


def name(v: Any, limit: int = MAX_NAME) -> str:
    """A name from a payload value: its text clipped to ``limit``; ``"?"`` when missing."""
    if type(v) is str:
        return (v if len(v) <= limit else v[:limit]) if v else "?"
    return str(v)[:limit] if v else "?"


# --------------------------------------------------------------------------- memory tiers

TIERS: Final[tuple[str, str, str]] = ("redis", "postgresql", "chromadb")
MISS: Final = "miss"
# every name a tier is known by (events use the long ones, latency maps the short ones)
TIER_ALIASES: Final[Mapping[str, int]] = {
    "redis": 0,
    "redis_immediate": 0,
    "postgresql": 1,
    "postgresql_structured": 1,
    "postgres": 1,
    "chromadb": 2,
    "chromadb_semantic": 2,
    "chroma": 2,
}


def tier_index(v: Any) -> int:
    """0/1/2 for the three tiers under any of their names; -1 for a miss or anything else."""
    return TIER_ALIASES.get(v, -1) if type(v) is str else -1


def tier_name(v: Any) -> str:
    """The canonical name of a tier, or ``"miss"`` (a miss or an unknown tier)."""
    i = tier_index(v)
    return TIERS[i] if i >= 0 else MISS


class TierAccess(NamedTuple):
    """One ``memory_tier_access`` as counted. ``served``: tier index, -1 for a miss;
    ``latencies``: (tier, ms) reported; ``errors``: tiers that reported an error;
    ``costs``: (tier, USD), None when the event carried no price at all."""

    served: int
    latencies: list[tuple[int, float]]
    errors: list[int]
    costs: list[tuple[int, float]] | None


def _ms(v: Any) -> float | None:
    if type(v) is float:
        return v if 0.0 <= v < 1e18 else None
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if 0.0 <= f < 1e18 else None


def tier_access(p: MemoryTierAccess | Mapping[str, Any]) -> TierAccess:
    """The counted figures of one ``memory_tier_access`` payload (see the module docstring;
    the typed payload's fields are read as attributes, a dict's keys with ``get``)."""
    if type(p) is dict:
        tier, lat, errs, by_tier, cost = (
            p.get("tier_accessed"),
            p.get("latency_by_tier"),
            p.get("errors"),
            p.get("cost_by_tier"),
            p.get("cost_usd"),
        )
    else:
        t: MemoryTierAccess = p  # type: ignore[assignment]
        tier, lat, errs, by_tier, cost = (
            t.tier_accessed,
            t.latency_by_tier,
            t.errors,
            t.cost_by_tier,
            t.cost_usd,
        )
    served = tier_index(tier)
    lats: list[tuple[int, float]] = []
    if type(lat) is dict:
        for k, v in lat.items():
            i = TIER_ALIASES.get(k, -1) if type(k) is str else -1
            if i >= 0:
                ms = v if type(v) is float and 0.0 <= v < 1e18 else _ms(v)
                if ms is not None:
                    lats.append((i, ms))
    errors = [i for k in errs if (i := tier_index(k)) >= 0] if errs and type(errs) is dict else []
    costs: list[tuple[int, float]] | None = None
    if by_tier and type(by_tier) is dict:
        costs = []
        for k, v in by_tier.items():
            i, c = tier_index(k), usd(v)
            if i >= 0 and c is not None:
                costs.append((i, c))
    else:
        c = None if cost is None else usd(cost)
        if c is not None:
            who = served if served >= 0 else max((i for i, _ in lats), default=len(TIERS) - 1)
            costs = [(who, c)]
    return _new(TierAccess, (served, lats, errors, costs))


def tier_share(served: float, lookups: float) -> float | None:
    """A tier's ``share``: loads it served / all loads (None without loads)."""
    return served / lookups if lookups > 0 else None


def local_hit_rate(hits: float, tried: float) -> float | None:
    """A tier's local hit rate: loads it served / loads that reached it (None if none did)."""
    return hits / tried if tried > 0 else None


class TierCostModel(NamedTuple):
    """The ``[tier_costs]`` prices (:func:`tier_cost_model`): USD per operation of each tier
    (index order of :data:`TIERS`), the embedding model and its USD per input token (None:
    no model configured, or one the price library does not know)."""

    per_op: tuple[float, float, float]
    embedding_model: str | None
    embedding_usd_per_token: float | None
    # USD per GB (1e9 bytes) per month of each tier (``<tier>_gb_month``; 0: unpriced)
    per_gb_month: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def active(self) -> bool:
        return any(self.per_op) or bool(self.embedding_usd_per_token)


NO_TIER_COSTS: Final = TierCostModel((0.0, 0.0, 0.0), None, None)
CHARS_PER_TOKEN: Final = 4  # the embedding estimate when the event has no embedding_tokens


def tier_cost_model(
    configured: Mapping[str, Any] | None, embedding_usd_per_token: float | None = None
) -> TierCostModel:
    """The ``[tier_costs]`` table as a model: ``redis``/``postgresql``/``chromadb`` (any tier
    alias) USD per operation (invalid values: 0) and ``embedding_model``; the caller prices
    that model (``auren_core.pricing.embedding_usd_per_token``: this module does no I/O)."""
    per = [0.0, 0.0, 0.0]
    gb = [0.0, 0.0, 0.0]
    model: str | None = None
    for k, v in (configured or {}).items():
        if k == "embedding_model":
            model = v if isinstance(v, str) and v.strip() else None
            continue
        if isinstance(k, str) and k.endswith(GB_MONTH_SUFFIX):
            j = tier_index(k.removesuffix(GB_MONTH_SUFFIX))
            g = usd(v)
            if j >= 0 and g is not None:
                gb[j] = g
            continue
        i = tier_index(k)
        c = usd(v)
        if i >= 0 and c is not None:
            per[i] = c
    rate = embedding_usd_per_token if model else None
    if rate is not None and not (0.0 <= rate <= MAX_USD):
        rate = None
    return TierCostModel((per[0], per[1], per[2]), model, rate, (gb[0], gb[1], gb[2]))


GB_MONTH_SUFFIX: Final = "_gb_month"


def storage_usd_per_month(nbytes: int | None, usd_per_gb_month: float) -> float | None:
    """A tier's storage rate: ``nbytes`` / 1e9 * USD per GB-month; None when the size is
    unknown (never a made-up 0)."""
    if nbytes is None:
        return None
    return nbytes / 1e9 * usd_per_gb_month


MAX_STORES: Final = 10_000  # (tier, store) sizes kept: hostile namespaces cannot grow it further
_STORAGE_FIELDS: Final = ("redis_bytes", "postgresql_bytes", "chromadb_bytes")  # TIERS' order


class TierStorage:
    """The latest known size of each tier's stores, from ``memory_tier_storage`` events:
    keyed by what was measured (a PostgreSQL table or Chroma directory shared by several
    namespaces counts once), else by the namespace. A null, negative or non-integer size
    (unknown) leaves the last known one; it never becomes 0. The reducer, ``/metrics`` and
    the ``tiers`` export report all hold one of these."""

    __slots__ = ("sizes",)

    def __init__(self) -> None:
        self.sizes: dict[tuple[int, str], int] = {}  # (tier index, store) -> latest bytes

    def observe(self, p: MemoryTierStorage | Mapping[str, Any]) -> None:
        """One ``memory_tier_storage`` payload: its struct's fields (a dict handed over in
        process: the same keys)."""
        if type(p) is not dict:
            t: MemoryTierStorage = p  # type: ignore[assignment]
            ns: Any = t.namespace
            where: tuple[Any, ...] = (ns, t.postgresql_table, t.chromadb_path)
            values: tuple[Any, ...] = (t.redis_bytes, t.postgresql_bytes, t.chromadb_bytes)
        else:
            d: Mapping[str, Any] = p
            ns = d.get("namespace")
            where = (ns, d.get("postgresql_table"), d.get("chromadb_path"))
            values = tuple(d.get(k) for k in _STORAGE_FIELDS)
        if not isinstance(ns, str):
            return
        sizes = self.sizes
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                continue
            store = where[i]
            w = store if i and isinstance(store, str) else f"ns:{ns}"
            if len(sizes) < MAX_STORES or (i, w) in sizes:
                sizes[(i, w)] = v

    def bytes(self, tier: int) -> int | None:
        """Total bytes of the tier's stores; None when none was ever reported."""
        found = [v for (i, _), v in self.sizes.items() if i == tier]
        return sum(found) if found else None


def embedding_tokens(p: PayloadLike) -> int:
    """Tokens embedded for one semantic lookup: the event's ``embedding_tokens``, else
    ceil(len(query) / :data:`CHARS_PER_TOKEN`) (at least 1)."""
    v = p.get("embedding_tokens")
    if v is not None and not isinstance(v, bool) and isinstance(v, int | float):
        return tokens(v)
    q = p.get("query")
    n = len(q) if isinstance(q, str) else 0
    return max(1, -(-n // CHARS_PER_TOKEN))


def modelled_tier_costs(
    acc: TierAccess, p: PayloadLike, model: TierCostModel
) -> tuple[list[tuple[int, float]], float] | None:
    """The costs of a load that carries no price, by ``model``: ``([(tier, USD)], the
    embedding part)``; None when the load carries a price or the model prices nothing."""
    if acc.costs is not None or not model.active:
        return None
    tried = {i for i, _ in acc.latencies}
    if acc.served >= 0:
        tried.add(acc.served)
    per = model.per_op
    costs = [(i, per[i]) for i in sorted(tried)]
    emb = 0.0
    rate = model.embedding_usd_per_token
    if rate and 2 in tried:
        emb = embedding_tokens(p) * rate
        costs = [(i, c + emb if i == 2 else c) for i, c in costs]
    return costs, emb


# --------------------------------------------------------------------------- learning

HYPOTHESIS_STATUSES: Final = ("formed", "updated", "validated", "rejected")
MIN_RATE_SPAN_S: Final = 60.0  # a per-hour rate is never measured over less than a minute


def per_hour(n: float, span_s: float) -> float:
    """``n`` events over ``span_s`` seconds as a rate per hour (the span is at least
    :data:`MIN_RATE_SPAN_S`, so a burst in the first second is not extrapolated x3600)."""
    return n * 3600.0 / max(MIN_RATE_SPAN_S, span_s)


def validation_rate(validated: int, rejected: int) -> float | None:
    """Hypotheses validated / hypotheses decided (validated + rejected); None if none was."""
    decided = validated + rejected
    return validated / decided if decided > 0 else None


# --------------------------------------------------------------------------- knowledge gaps

NO_QUERY: Final = "(no query)"


def is_gap(type_: str, p: PayloadLike) -> bool:
    """Whether a lookup event is a knowledge gap (nothing answered it)."""
    if type_ == "memory_tier_access":
        return tier_index(p.get("tier_accessed")) < 0
    if type_ == "knowledge_access":
        return p.get("hit", True) is False
    return False


def gap_key(type_: str, p: PayloadLike) -> str:
    """What a gap is named by: the query asked; a ``knowledge_access`` without one, its item."""
    q = p.get("query")
    if q:
        return name(q)
    if type_ == "knowledge_access":
        item = p.get("item")
        if item:
            return name(item)
    return NO_QUERY


# --------------------------------------------------------------------------- percentiles

HIST_LO_MS: Final = 0.001
HIST_RATIO: Final = 1.05
_INV_LO = 1.0 / HIST_LO_MS
_INV_LOG_R = 1.0 / math.log(HIST_RATIO)
_HIST_TOP_MS = 1e12
HIST_MAX_BIN: Final = int(math.log(_HIST_TOP_MS * _INV_LO) * _INV_LOG_R) + 1


def bin_of(ms: float) -> int:
    """The histogram bin of a value (0 for <= 1 us and NaN; the top bin for huge ones)."""
    if ms > HIST_LO_MS:
        if ms >= _HIST_TOP_MS:  # also inf
            return HIST_MAX_BIN
        b = int(math.log(ms * _INV_LO) * _INV_LOG_R) + 1
        return b if b < HIST_MAX_BIN else HIST_MAX_BIN
    return 0


def bin_value(b: int) -> float:
    """The value reported for a bin: its geometric midpoint."""
    if b <= 0:
        return HIST_LO_MS
    return float(HIST_LO_MS * HIST_RATIO ** (b - 0.5))


def quantiles(counts: Mapping[int, int], qs: Iterable[float]) -> tuple[float | None, ...]:
    """Nearest-rank quantiles from bin counts (``{bin: count}``); None without samples."""
    qs = tuple(qs)
    n = sum(counts.values())
    if n <= 0:
        return tuple(None for _ in qs)
    items = sorted(counts.items())
    out: list[float | None] = []
    for q in qs:
        rank = max(1, math.ceil(q * n))
        acc = 0
        val = bin_value(items[-1][0])
        for b, c in items:
            acc += c
            if acc >= rank:
                val = bin_value(b)
                break
        out.append(val)
    return tuple(out)


def percentiles(values: Iterable[float], qs: Iterable[float]) -> tuple[float | None, ...]:
    """:func:`quantiles` of raw values (binned first, like the reducer's histograms)."""
    counts: dict[int, int] = {}
    for v in values:
        b = bin_of(v)
        counts[b] = counts.get(b, 0) + 1
    return quantiles(counts, qs)


# ---------------------------------------------------------------------- user queries
QUERY_LABEL_CHARS: Final = 120
_LABEL_KEYS = ("query", "question", "topic", "input", "prompt")


def _clip(s: str, n: int = QUERY_LABEL_CHARS) -> str:
    s = " ".join(s.split())  # one line: a description's newlines and indents go
    return s if len(s) <= n else s[: n - 1] + "\u2026"


def query_label(inputs: Any, description: Any = None) -> str:
    """The user's question behind a run (one crew kickoff), for the per-query cost rows.

    The crew's ``inputs``: the value of its ``query`` / ``question`` / ``topic`` /
    ``input`` / ``prompt`` key, else its first value; a crew without inputs: the first
    task's ``description``. One line, at most :data:`QUERY_LABEL_CHARS` characters
    ("" when there is neither). Redaction (``redact_queries``) happens where the event is
    made: a redacted run carries a stable ``sha256:`` stand-in in ``crew_started.query``.
    """
    if isinstance(inputs, dict) and inputs:
        for k in _LABEL_KEYS:
            v = inputs.get(k)
            if isinstance(v, str) and v.strip():
                return _clip(v)
        first = next(iter(inputs.values()))
        if first is not None and str(first).strip():
            return _clip(str(first))
    if isinstance(description, str) and description.strip():
        return _clip(description)
    return ""
