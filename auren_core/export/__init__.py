"""Export reports: tokens, knowledge, gaps, tiers, costs, collaboration, flows, analytics -
as CSV, JSON or JSONL (``all``: every report but analytics).

:func:`build_reports` makes one pass over the events (the stream or the PostgreSQL store
feeds it) and returns plain tables (``list[dict]``, fixed columns per report);
:func:`render` turns tables into bytes. ``auren export`` and serve-ws's
``/api/v2/export/analytics`` both call these two functions, so the figures agree; and they
count by :mod:`auren_core.rules` over entries decoded (and validated) like every reader's, so
they agree with ``auren top`` and the snapshot too.

CSV text cells are made inert (:func:`csv_text`):

* control characters - C0 (except tab, line feed and carriage return, which CSV quotes), DEL
  and the C1 controls (U+0080..U+009F: 8-bit CSI, OSC, ...) - are written as visible
  ``\\xNN`` escapes, so no ESC sequence (a title change, an OSC 52 clipboard write) reaches a
  terminal or a viewer, and nothing is lost;
* a cell that a spreadsheet could run as a formula is prefixed with ``'``
  (:func:`neutralise`): one whose first character is in the OWASP CSV-injection list
  (``= + - @``, tab, carriage return, line feed), ``|`` or ``;`` (DDE and separator tricks), or
  their full-width or small forms (U+FF1D, U+FF0B, U+FF0D, U+FF20, ...: anything whose NFKC
  form is one of them, and the minus sign U+2212), or is invisible or blank at the start - a
  space, a no-break space, a BOM, a zero-width or other format character - behind which one
  of those may hide.

When the output is a terminal (``terminal=True``: ``auren export`` to a TTY), every format is
inert there too: in CSV, carriage returns and line feeds inside cells are escaped as well (a
bare CR can overwrite what was printed); in JSON and JSONL, which already escape C0 controls,
DEL and the C1 controls are written as ``\\u00NN`` escapes (still valid JSON, decoding to the
same text). JSON output decodes back to exactly the tables that were rendered.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import msgspec

from ..events import Event, Malformed
from .analytics_report import COLUMNS as ANALYTICS_COLUMNS
from .tables import Accumulator

__all__ = [
    "ALL",
    "COLUMNS",
    "FORMATS",
    "REPORTS",
    "build_reports",
    "csv_text",
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
        "storage_bytes", "storage_usd_per_month",
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

# OWASP CSV injection: = + - @ tab CR LF; and | ; (DDE, a separator some locales use)
_FORMULA_START: Final = frozenset("=+-@\t\r\n|;\u2212")
# C0 controls but tab/LF/CR (CSV quotes those), DEL, C1 controls
_CONTROLS: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_TTY_CONTROLS: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # ... and CR, LF
_JSON_TTY: Final = re.compile("[\x7f-\x9f]")  # what JSON leaves raw among the controls


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


def _risky_start(c: str) -> bool:
    """Whether a cell starting with ``c`` could be run as a formula (see the module doc)."""
    if c in _FORMULA_START or c.isspace():
        return True
    if c.isascii():
        return False
    if unicodedata.category(c) in ("Cf", "Cc", "Zs", "Zl", "Zp"):  # BOM, zero-width, NBSP...
        return True
    folded = unicodedata.normalize("NFKC", c)  # full-width and small forms (U+FF1D, U+FE62...)
    return bool(folded) and (folded[0] in _FORMULA_START or folded[0].isspace())


def neutralise(value: Any) -> Any:
    """The CSV-safe form of one cell (formula-looking text gets a leading quote)."""
    if isinstance(value, str) and value and _risky_start(value[0]):
        return "'" + value
    return value


def _escape(m: re.Match[str]) -> str:
    return f"\\x{ord(m.group()):02x}"


def csv_text(value: str, terminal: bool = False) -> str:
    """One CSV text cell made inert: controls escaped, then formulas neutralised."""
    value = (_TTY_CONTROLS if terminal else _CONTROLS).sub(_escape, value)
    return neutralise(value)  # type: ignore[no-any-return]


def _csv_cell(value: Any, terminal: bool = False) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return csv_text(value, terminal)
    return value


def _write_csv(
    out: io.StringIO, name: str, rows: list[dict[str, Any]], terminal: bool = False
) -> None:
    cols = COLUMNS.get(name) or (tuple(rows[0]) if rows else ())
    w = csv.writer(out, lineterminator="\r\n")  # RFC 4180; CR/LF in cells get quoted
    w.writerow(cols)
    w.writerows([_csv_cell(row.get(c), terminal) for c in cols] for row in rows)


def _json_tty(data: bytes) -> bytes:
    """JSON for a terminal: DEL and C1 controls (only ever inside strings) as ``\\u00NN``."""
    text = data.decode("utf-8")
    if not _JSON_TTY.search(text):
        return data
    return _JSON_TTY.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8")


def render(tables: dict[str, list[dict[str, Any]]], fmt: str, *, terminal: bool = False) -> bytes:
    """Bytes of ``tables`` in ``fmt``: ``csv`` (one table plain; several as ``# report: name``
    sections separated by a blank line), ``json`` (``{report: rows}``), ``jsonl``
    (one object per row with a ``report`` key first). ``terminal``: the bytes go to a TTY
    (see the module docstring)."""
    if fmt == "json":
        data = msgspec.json.format(msgspec.json.encode(tables), indent=2) + b"\n"
        return _json_tty(data) if terminal else data
    if fmt == "jsonl":
        enc = msgspec.json.Encoder()
        lines = [
            enc.encode({"report": name, **row}) for name, rows in tables.items() for row in rows
        ]
        data = b"".join(line + b"\n" for line in lines)
        return _json_tty(data) if terminal else data
    if fmt == "csv":
        out = io.StringIO()
        for i, (name, rows) in enumerate(tables.items()):
            if len(tables) > 1:
                out.write(("\r\n" if i else "") + f"# report: {name}\r\n")
            _write_csv(out, name, rows, terminal)
        return out.getvalue().encode("utf-8")
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
