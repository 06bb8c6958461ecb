"""Export reports: tokens, knowledge, gaps, tiers, costs, collaboration, flows, analytics -
as CSV, JSON or JSONL (``all``: every report but analytics).

:func:`build_reports` makes one pass over the events (the stream or the PostgreSQL store
feeds it) and returns plain tables (``list[dict]``, fixed columns per report);
:func:`render` turns tables into bytes. ``auren export`` and serve-ws's
``/api/v2/export/analytics`` both call these two functions, so the figures agree; and they
count by :mod:`auren_core.rules` over entries decoded (and validated) like every reader's, so
they agree with ``auren top`` and the snapshot too.

CSV cells that start with ``= + - @``, a tab or a carriage return are prefixed with ``'`` so
a spreadsheet shows them as text instead of running them as formulas. JSON output decodes
back to exactly the tables that were rendered.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import msgspec

from .analytics.report import COLUMNS as ANALYTICS_COLUMNS
from .analytics.tables import Accumulator
from .events import Event, Malformed

__all__ = [
    "ALL",
    "COLUMNS",
    "FORMATS",
    "REPORTS",
    "build_reports",
    "neutralise",
    "render",
]

REPORTS: Final = (
    "tokens", "knowledge", "gaps", "tiers", "costs", "collaboration", "flows", "analytics",
)  # fmt: skip
# what "all" means: every report but analytics (rows of another kind; ask for it by name)
ALL: Final = ("tokens", "knowledge", "gaps", "tiers", "costs", "collaboration", "flows")
FORMATS: Final = ("csv", "json", "jsonl")
Format = Literal["csv", "json", "jsonl"]

COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "tokens": (
        "agent", "day", "llm_calls", "input_tokens", "output_tokens", "cached_tokens",
        "reasoning_tokens", "total_tokens", "llm_cost_usd", "unpriced_calls", "llm_errors",
    ),
    "knowledge": (
        "kind", "item", "agent", "accesses", "hits", "misses", "peak_hour_utc",
        "first_seen", "last_seen",
    ),
    "gaps": ("source", "query", "agent", "count", "first_seen", "last_seen"),
    "tiers": (
        "tier", "served", "share", "tried", "hit_rate", "local_hit_rate", "fall_through_rate",
        "probes",
        "p50_ms", "p95_ms", "mean_ms", "errors", "cost_usd", "items_retrieved",
    ),
    "costs": (
        "dimension", "key", "label", "llm_calls", "tool_calls", "input_tokens",
        "output_tokens", "cost_usd", "llm_cost_usd", "tool_cost_usd", "memory_cost_usd",
        "unpriced_calls",
    ),
    "collaboration": (
        "from_agent", "to_agent", "kind", "count", "runs", "share_of_runs", "completed_runs",
        "completion_rate",
    ),
    "flows": (
        "level", "flow", "step", "runs", "completed", "failed", "unfinished",
        "mean_duration_ms", "p95_duration_ms", "steps_completed", "steps_failed",
        "human_waits", "mean_wait_ms",
    ),
    "analytics": ANALYTICS_COLUMNS,
}  # fmt: skip

_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def build_reports(
    events: Iterable[Event | Malformed],
    reports: Sequence[str],
    *,
    aggregates: Iterable[dict[str, Any]] = (),
    tool_costs: Mapping[str, float] | None = None,
    tier_costs: Mapping[str, Any] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Tables for ``reports`` (names from :data:`REPORTS`; ``"all"`` means every one).
    ``aggregates``: daily rollup rows for days older than the detailed events (PostgreSQL).
    ``tool_costs``: the ``[tool_costs]`` prices of the settings (a tool call without
    ``cost_usd`` costs its tool's price, as in the reducer). ``tier_costs``: the
    ``[tier_costs]`` table (loads without a price are priced by it). Figures follow
    :mod:`auren_core.rules`."""
    wanted = list(ALL) if "all" in reports else list(dict.fromkeys(reports))
    unknown = [r for r in wanted if r not in REPORTS]
    if unknown:
        raise ValueError(f"unknown report {unknown[0]!r}; choose from {', '.join(REPORTS)}")
    acc = Accumulator(set(wanted), tool_costs, tier_costs)
    acc.feed(events)
    acc.feed_aggregates(aggregates)
    return {name: acc.table(name) for name in wanted}


def neutralise(value: Any) -> Any:
    """The CSV-safe form of one cell (formula-looking text gets a leading quote)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return neutralise(value)


def _write_csv(out: io.StringIO, name: str, rows: list[dict[str, Any]]) -> None:
    cols = COLUMNS.get(name) or (tuple(rows[0]) if rows else ())
    w = csv.writer(out, lineterminator="\r\n")  # RFC 4180; CR/LF in cells get quoted
    w.writerow(cols)
    w.writerows([_csv_cell(row.get(c)) for c in cols] for row in rows)


def render(tables: dict[str, list[dict[str, Any]]], fmt: str) -> bytes:
    """Bytes of ``tables`` in ``fmt``: ``csv`` (one table plain; several as ``# report: name``
    sections separated by a blank line), ``json`` (``{report: rows}``), ``jsonl``
    (one object per row with a ``report`` key first)."""
    if fmt == "json":
        return msgspec.json.format(msgspec.json.encode(tables), indent=2) + b"\n"
    if fmt == "jsonl":
        enc = msgspec.json.Encoder()
        lines = [
            enc.encode({"report": name, **row}) for name, rows in tables.items() for row in rows
        ]
        return b"".join(line + b"\n" for line in lines)
    if fmt == "csv":
        out = io.StringIO()
        for i, (name, rows) in enumerate(tables.items()):
            if len(tables) > 1:
                out.write(("\r\n" if i else "") + f"# report: {name}\r\n")
            _write_csv(out, name, rows)
        return out.getvalue().encode("utf-8")
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
