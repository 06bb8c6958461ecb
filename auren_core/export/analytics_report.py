"""The ``analytics`` export report: forecast, alerts, patterns, gaps, recommendations and
learning velocity (:func:`auren_core.analytics.analysis`, the figures of ``auren top``'s
analytics screen and ``/api/v2/analytics/*``) as one long table, one row per finding."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

import msgspec

from ..events import Event, Malformed

__all__ = ["COLUMNS", "analytics_rows"]

COLUMNS: Final = ("section", "kind", "agent", "target", "level", "value", "text", "evidence")
SHOWN: Final = 1000  # rows per list (the export is for spreadsheets, not a terminal)


def _json(x: Any) -> str | None:
    return None if x is None else msgspec.json.encode(x).decode()


def _row(section: str, kind: str, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {c: None for c in COLUMNS}
    out.update(section=section, kind=kind, **kw)
    return out


def _forecast(fc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for a in fc.get("agents", []):
        cost, toks = a.get("cost_usd") or {}, a.get("tokens") or {}
        yield _row(
            "forecast", "next_hour_cost_usd", agent=a.get("agent"), value=cost.get("next"),
            text=f"method {cost.get('method')}, {cost.get('points')} points",
            evidence=_json(cost),
        )  # fmt: skip
        yield _row(
            "forecast", "next_hour_tokens", agent=a.get("agent"), value=toks.get("next"),
            text=f"method {toks.get('method')}, {toks.get('points')} points",
            evidence=_json(toks),
        )  # fmt: skip
    yield _row("forecast", "next_hour_cost_usd", agent="(all)", value=fc.get("total_cost_usd"))
    yield _row("forecast", "next_hour_tokens", agent="(all)", value=fc.get("total_tokens"))


def analytics_rows(
    events: Iterable[Event | Malformed], *, now: float, budget_usd_per_hour: float | None = None
) -> list[dict[str, Any]]:
    """Rows of the ``analytics`` report over ``events`` as of ``now``."""
    from ..analytics import analysis, sections

    doc = sections(analysis(events, now=now, budget_usd_per_hour=budget_usd_per_hour, shown=SHOWN))
    rows = list(_forecast(doc["forecast"]))
    for al in doc["alerts"]:
        rows.append(_row(
            "alerts", str(al.get("kind")), agent=al.get("agent"), level=al.get("level"),
            value=al.get("forecast_usd"), text=al.get("text"),
        ))  # fmt: skip
    pat = doc["patterns"]
    for lp in pat["loops"]:
        rows.append(_row(
            "patterns", "loop", agent=lp.get("agent"), target=lp.get("signature"),
            value=lp.get("repeats"), text=f"{lp.get('kind')} repeated {lp.get('repeats')}x",
            evidence=_json({k: lp.get(k) for k in ("run", "cost_usd", "tokens")}),
        ))  # fmt: skip
    for st in pat["stalls"]:
        rows.append(_row(
            "patterns", "stall", agent=st.get("agent"), target=st.get("task_id"),
            value=st.get("silent_s"), text=f"silent {st.get('silent_s')} s with a task in flight",
        ))  # fmt: skip
    for pr in pat["collaboration"].get("pairs", []):
        rows.append(_row(
            "patterns", "pair", target="+".join(pr.get("agents", [])),
            value=pr.get("share_of_runs"), text=pr.get("summary"),
            evidence=_json({k: v for k, v in pr.items() if k not in ("agents", "summary")}),
        ))  # fmt: skip
    for hour, items in sorted(pat["knowledge_by_hour"].items(), key=lambda kv: int(kv[0])):
        for it in items:
            rows.append(_row(
                "patterns", "knowledge_hour", target=it.get("item"), value=it.get("accesses"),
                text=f"hour {int(hour):02d} UTC",
            ))  # fmt: skip
    # hour of day x agent: the readers of the knowledge, when (the matrix's most-read agents)
    matrix = pat.get("knowledge_hour_matrix") or {}
    for row in matrix.get("agents", []):
        for hour, n in enumerate(row["hours"]):
            if n:
                rows.append(_row(
                    "patterns", "knowledge_hour_agent", agent=row["agent"], value=n,
                    text=f"hour {hour:02d} UTC",
                ))  # fmt: skip
    for g in doc["gaps"]:
        rows.append(_row(
            "gaps", str(g.get("source")), target=g.get("query"), value=g.get("misses"),
            text=f"answered {g.get('answered')} times elsewhere",
            evidence=_json({"agents": g.get("agents"), "first_seen": g.get("first_seen"),
                            "last_seen": g.get("last_seen")}),
        ))  # fmt: skip
    for rec in doc["recommendations"]:
        ev = rec.get("evidence") or {}
        rows.append(_row(
            "recommendations", str(rec.get("kind")), target=rec.get("target"),
            value=ev.get("estimated_saving_usd"), text=rec.get("text"), evidence=_json(ev),
        ))  # fmt: skip
    learn = doc["learning"]
    for who, r in [("(all)", learn), *((a["agent"], a) for a in learn["agents"])]:
        for key in ("formed", "updated", "validated", "rejected"):
            rows.append(_row("learning", key, agent=who, value=r.get(key)))
            rows.append(
                _row("learning", f"{key}_per_hour", agent=who, value=r.get(f"{key}_per_hour"))
            )
        rows.append(_row("learning", "validation_rate", agent=who, value=r.get("validation_rate")))
    return rows
