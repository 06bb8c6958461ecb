"""Analytics sections: each renders one part of an ``analyze()`` result, nothing more.

The result arrives in :class:`~auren_tui.messages.AnalyticsUpdated` (computed in the
worker); every string that came from an event (agent ids, queries, tool arguments,
alert texts built from them) goes through :func:`~auren_tui.sanitize.clean` and is
drawn as plain ``Text``, never as markup.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import events
from textual.widgets import Static

from ..sanitize import clean, safe_text
from .format import fmt_count, fmt_pct, fmt_usd

__all__ = [
    "AlertsSection",
    "CollabSection",
    "ForecastSection",
    "GapsSection",
    "KnowledgeHoursSection",
    "LearningSection",
    "LoopsSection",
    "RecommendationsSection",
    "Section",
]

_LEVEL = {"alert": "bold red", "warning": "yellow"}
_METHOD = {"mean": "mean", "holt": "holt", "holt-winters": "h-w", "minute": "rate"}


def _none(text: str) -> Text:
    return Text(text, style="dim")


def shown_name(result: dict[str, Any], agent: str | None) -> str:
    """An agent as the main screen names it: its role (``agent_names`` of the result),
    else its id."""
    if not agent:
        return ""
    names = result.get("agent_names") or {}
    return str(names.get(agent) or agent)


def _more(shown: int, total: int) -> list[RenderableType]:
    return [_none(f"… {total - shown} more")] if total > shown else []


class Section(Static):
    """A bordered block rebuilt from the latest result for its own width."""

    def __init__(self, *, title: str = "", id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.border_title = title
        self.result: dict[str, Any] | None = None

    def set_result(self, result: dict[str, Any]) -> None:
        self.result = result
        self._rebuild()

    def _rebuild(self) -> None:
        width = self.content_size.width or (self.size.width - 4)
        if self.result is not None and width > 0:
            self.update(self.build(self.result, max(30, width)))

    def on_resize(self, event: events.Resize) -> None:
        self._rebuild()

    def build(self, result: dict[str, Any], width: int) -> RenderableType:
        raise NotImplementedError


def _short_method(method: str) -> str:
    key = "holt-winters" if method.startswith("holt-winters") else method.split(" ")[0]
    return _METHOD.get(key, clean(method, 8))


def _usd(v: float | None) -> str:
    """Dollars with four decimals below $1 (forecasts and loops are often cents)."""
    return fmt_usd(v) if v is None or abs(v) >= 1 or v == 0 else f"${v:.4f}"


def _explain(method: str) -> str:
    if method == "mean":
        return "mean of the completed hours (fewer than 3)"
    if method == "minute rate":
        return "60 x the mean of the last hour's complete minutes (under 3 complete hours)"
    return clean(method, 80)


def _half(f: dict[str, Any]) -> float | None:
    """The half-width of a forecast's 95 % interval (upper side), None without one."""
    high = f.get("high")
    return None if high is None else max(0.0, high - f["next"])


def _history(f: dict[str, Any]) -> str:
    return f"{f['points']}{'m' if f.get('unit') == 'minute' else 'h'}"


def _pm(value: float | None, fmt: Any) -> str:
    return "—" if value is None else f"±{fmt(value)}"


class ForecastSection(Section):
    """Next-hour tokens and cost per agent, the method and its backtested error."""

    def build(self, result: dict[str, Any], width: int) -> RenderableType:
        fc = result["forecast"]
        start = time.strftime("%H:%M", time.gmtime(fc["forecast_hour_start"]))
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"60 min from {start} UTC: ", style="dim")
        head.append(f"{fmt_count(fc['total_tokens'])} tokens  ", style="bold")
        head.append(_usd(fc["total_cost_usd"]), style="bold")
        if fc.get("total_cost_high_usd") is not None:
            head.append(
                f"  (95%: {_usd(fc['total_cost_low_usd'])} to {_usd(fc['total_cost_high_usd'])})",
                style="dim",
            )
        if not fc["agents"]:
            return Group(
                head,
                _none(
                    "no complete minute of LLM calls yet (auren top --since 24h reads more history)"
                ),
            )
        table = Table(box=None, padding=(0, 1, 0, 0), expand=False, show_edge=False)
        table.add_column("agent", style="bold", no_wrap=True, max_width=max(8, width - 52))
        for name in ("tokens", "±95%", "cost", "±95%", "method", "history"):
            table.add_column(name, justify="right", no_wrap=True, header_style="dim")
        methods: set[str] = set()
        for a in fc["agents"]:
            tok, usd = a["tokens"], a["cost_usd"]
            methods.add(tok["method"])
            table.add_row(
                safe_text(shown_name(result, a["agent"]) or "(no agent)", 40),
                fmt_count(tok["next"]),
                _pm(_half(tok), fmt_count),
                _usd(usd["next"]),
                _pm(_half(usd), _usd),
                _short_method(usd["method"]),
                _history(usd),
            )
        legend = Text(
            "±95%: upper half-width of the 95% interval (— too little history). "
            + "; ".join(f"{_short_method(m)} = {_explain(m)}" for m in sorted(methods)),
            style="dim",
        )
        return Group(head, table, legend)


class AlertsSection(Section):
    """Budget forecast alerts, loops and stalls, worst first."""

    def build(self, result: dict[str, Any], width: int) -> RenderableType:
        alerts = result["alerts"]
        if not alerts:
            return _none("no alerts")
        lines: list[RenderableType] = []
        for al in alerts:
            t = Text(no_wrap=False)
            t.append(f"{clean(al['level'], 8):<8}", style=_LEVEL.get(al["level"], ""))
            t.append(f"{clean(al['kind'], 16):<16}", style="dim")
            t.append(clean(al["text"], 300))
            lines.append(t)
        return Group(*lines, *_more(len(alerts), result["counts"]["alerts"]))


class LoopsSection(Section):
    """Repeated identical actions and silent agents with work in flight, with their cost."""

    def build(self, result: dict[str, Any], width: int) -> RenderableType:
        lines: list[RenderableType] = []
        for lp in result["loops"]:
            t = Text(no_wrap=True, overflow="ellipsis")
            t.append("loop  ", style="bold yellow")
            t.append(clean(shown_name(result, lp["agent"]), 30), style="bold")
            t.append(f"  x{lp['repeats']}  ")
            t.append(_usd(lp["cost_usd"]), style="bold")
            t.append(f"  {fmt_count(lp['tokens'])} tok  ")
            t.append(f"{clean(lp['kind'], 10)} {clean(lp['signature'], 120)}", style="dim")
            t.append(f"  {clean(lp['run'] or '', 30)}", style="dim")
            lines.append(t)
        lines += _more(len(result["loops"]), result["counts"]["loops"])
        for st in result["stalls"]:
            t = Text(no_wrap=True, overflow="ellipsis")
            t.append("stall ", style="bold red")
            t.append(clean(shown_name(result, st["agent"]), 30), style="bold")
            t.append(f"  silent {st['silent_s']:.0f}s  ")
            t.append(_usd(st["cost_usd"]), style="bold")
            t.append(f"  {fmt_count(st['tokens'])} tok  ")
            t.append(f"task {clean(st['task_id'] or '?', 40)}", style="dim")
            lines.append(t)
        lines += _more(len(result["stalls"]), result["counts"]["stalls"])
        return Group(*lines) if lines else _none("no loops or stalls")


class GapsSection(Section):
    """Knowledge gaps (lookups nothing answered), and what is read most at this hour of day."""

    def build(self, result: dict[str, Any], width: int) -> RenderableType:
        know = result["knowledge"]
        lines: list[RenderableType] = [
            _none("lookups nothing answered (no memory tier, no knowledge source), most first")
        ]
        for g in know["gaps"]:
            t = Text(no_wrap=True, overflow="ellipsis")
            t.append(f"{g['misses']:>4} misses  ", style="bold red")
            t.append(clean(g["query"], 80), style="bold")
            if g.get("answered"):
                t.append(f"  (answered {g['answered']}x)", style="yellow")
            askers = ", ".join(clean(shown_name(result, a), 20) for a in g["agents"])
            t.append("  asked by " + askers, style="dim")
            lines.append(t)
        lines += _more(len(know["gaps"]), result["counts"]["gaps"])
        if len(lines) == 1:
            lines.append(_none("none: every lookup was answered"))
        hour = int(result["generated_at"] % 86400 // 3600)
        top = know["by_hour"].get(str(hour)) or know["by_hour"].get(str((hour - 1) % 24))
        if top:
            t = Text("most read around now: ", style="dim", no_wrap=True, overflow="ellipsis")
            t.append(", ".join(f"{clean(i['item'], 30)} ({i['accesses']})" for i in top))
            lines.append(t)
        return Group(*lines)


class CollabSection(Section):
    """Pairs that work together, their share of runs and the completion rates."""

    def build(self, result: dict[str, Any], width: int) -> RenderableType:
        co = result["collaboration"]
        head = Text(no_wrap=True, overflow="ellipsis", style="dim")
        head.append(f"{co['runs']} runs, completion rate {fmt_pct(co['completion_rate'])}")
        lines: list[RenderableType] = [head]
        for p in co["pairs"]:
            a, b = (clean(shown_name(result, x), 24) for x in p["agents"])
            t = Text(no_wrap=True, overflow="ellipsis")
            t.append(f"{a} + {b}", style="bold")
            t.append(f"  {p['runs']} runs ({fmt_pct(p['share_of_runs'])})")
            t.append(f"  {p['interactions']} interactions", style="dim")
            t.append(
                f"  done {fmt_pct(p['completion_rate_with'])} with /"
                f" {fmt_pct(p['completion_rate_without'])} without",
                style="dim",
            )
            lines.append(t)
        lines += _more(len(co["pairs"]), result["counts"]["pairs"])
        if not co["pairs"]:
            lines.append(_none("no collaboration events"))
        return Group(*lines)


def _evidence(ev: dict[str, Any]) -> str:
    parts = []
    for k, v in ev.items():
        if isinstance(v, float):
            v = round(v, 6)
        elif isinstance(v, dict):
            v = ", ".join(f"{kk} {vv}" for kk, vv in v.items())
        parts.append(f"{k}: {v}")
    return clean("; ".join(parts), 400)


class RecommendationsSection(Section):
    """Each recommendation and the figures that produced it."""

    def build(self, result: dict[str, Any], width: int) -> RenderableType:
        recs = result["recommendations"]
        if not recs:
            return _none("no recommendations: nothing in the data crosses a threshold yet")
        lines: list[RenderableType] = []
        for r in recs:
            t = Text()
            t.append("• ", style="cyan")
            t.append(clean(r["text"], 200), style="bold")
            lines.append(t)
            lines.append(Text("  " + _evidence(r["evidence"]), style="dim"))
        return Group(*lines, *_more(len(recs), result["counts"]["recommendations"]))


_SHADES = " ░▒▓█"


class KnowledgeHoursSection(Section):
    """Hour of day (UTC) x item: how often each of the most-read items is read at each
    hour, shaded against the busiest cell, with each row's total."""

    ROWS = 6

    def build(self, result: dict[str, Any], width: int) -> RenderableType:
        m = result["knowledge"].get("hour_matrix") or {}
        rows = (m.get("items") or [])[: self.ROWS]
        if not rows:
            return _none("no answered knowledge lookups in the analysed history")
        peak = max(max(r["hours"]) for r in rows) or 1
        name_w = max(8, min(28, width - 24 * 2 - 10))
        head = Text(" " * (name_w + 1), style="dim", no_wrap=True)
        head.append("".join(f"{h:<6d}"[:6] if h % 3 == 0 else "" for h in range(24))[:48])
        lines: list[RenderableType] = [head]
        for r in rows:
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(safe_text(r["item"], name_w).plain.ljust(name_w)[:name_w] + " ",
                        style="bold")  # fmt: skip
            for n in r["hours"]:
                shade = _SHADES[min(4, -(-4 * n // peak))] if n else "·"
                line.append(shade * 2, style="cyan" if n else "dim")
            line.append(f" {fmt_count(r['total'])}", style="dim")
            lines.append(line)
        lines += _more(len(rows), int(m.get("items_total") or len(rows)))
        lines.append(_none(f"UTC hour of day; █ = {fmt_count(peak)} reads in one hour-of-day"))
        return Group(*lines)


def _rate(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


class LearningSection(Section):
    """Learning velocity: hypotheses formed / validated / rejected per hour, overall and
    per agent, and the validation rate (validated / (validated + rejected))."""

    def build(self, result: dict[str, Any], width: int) -> RenderableType:
        ln = result.get("learning") or {}
        span = float(ln.get("span_s") or 0.0)
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"per hour over {span / 60:.0f} min: ", style="dim")
        head.append(f"{_rate(ln.get('formed_per_hour'))} formed", style="bold")
        head.append(f"  {_rate(ln.get('validated_per_hour'))} validated", style="green")
        head.append(f"  {_rate(ln.get('rejected_per_hour'))} rejected", style="red")
        head.append(f"  validation rate {fmt_pct(ln.get('validation_rate'))}")
        agents = ln.get("agents") or []
        if not agents:
            return Group(head, _none("no hypothesis events in the analysed history"))
        table = Table(box=None, padding=(0, 1, 0, 0), expand=False, show_edge=False)
        table.add_column("agent", style="bold", no_wrap=True, max_width=max(8, width - 40))
        for name in ("formed/h", "valid/h", "reject/h", "valid %"):
            table.add_column(name, justify="right", no_wrap=True, header_style="dim")
        for a in agents[:12]:
            table.add_row(
                safe_text(shown_name(result, a["agent"]), 40),
                _rate(a.get("formed_per_hour")),
                _rate(a.get("validated_per_hour")),
                _rate(a.get("rejected_per_hour")),
                fmt_pct(a.get("validation_rate")),
            )
        return Group(head, table, *_more(min(12, len(agents)), len(agents)))
