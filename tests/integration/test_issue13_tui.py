"""Issue 13 items 8, 10, 11 and the TUI half of 3: the user's question on per-query cost,
process RSS / CPU per agent, learning velocity, display names in the analytics, a real
events_per_s, one sparkline column per minute, [recommendations] thresholds, the top tip."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import msgspec
import pytest

from auren_core import rules
from auren_core.analytics import analysis, analyze
from auren_core.events import Event, make_event
from auren_core.export.tables import Accumulator
from auren_core.server.metrics import Metrics
from auren_core.state import make_reducer
from auren_core.streams.publisher import process_usage

T0 = 1_700_000_000.0


def _ev(type_: str, payload: dict[str, Any], *, agent: str | None = None,
        run: str | None = None, ts: float = T0, eid: str | None = None) -> Event:
    ev = make_event(type_, payload, agent=agent, run=run, ts=ts)
    return msgspec.structs.replace(ev, id=eid) if eid else ev


def _reduce(events: list[Event], now: float) -> Any:
    r = make_reducer(clock=lambda: now)
    r.apply_batch(events)
    return r.state(now)


# ---------------------------------------------------------------- item 8: the question
def test_run_cost_carries_the_question_from_inputs_else_the_first_task() -> None:
    evs = [
        _ev("crew_started", {"crew": "c", "inputs": {"topic": "Is HRV low after travel?"}},
            run="r1", ts=T0),
        _ev("llm_call", {"model": "gpt-4o", "input_tokens": 10, "output_tokens": 5,
                         "cost_usd": 0.01}, agent="a", run="r1", ts=T0 + 1),
        _ev("crew_started", {"crew": "c"}, run="r2", ts=T0 + 2),
        _ev("task_started", {"task_id": "t", "description": "Compare sleep\n   and HRV " * 20},
            agent="a", run="r2", ts=T0 + 3),
    ]
    st = _reduce(evs, T0 + 10)
    by_run = {x.run: x for x in st.costs.runs}
    assert by_run["r1"].query == "Is HRV low after travel?"
    assert by_run["r2"].query.startswith("Compare sleep and HRV")
    assert len(by_run["r2"].query) == rules.QUERY_LABEL_CHARS  # truncated, one line
    assert "\n" not in by_run["r2"].query
    rows = {x["run"]: x for x in st.to_dict()["costs"]["runs"]}
    assert rows["r1"]["query"] == "Is HRV low after travel?"

    acc = Accumulator({"costs"})
    acc.feed(evs)
    labels = {r["key"]: r["label"] for r in acc.table("costs") if r["dimension"] == "query"}
    assert labels["r1"] == "Is HRV low after travel?"
    # r2 has no cost row (no call); its label is still known
    assert acc.labels["r2"].startswith("Compare sleep and HRV")


def test_redacted_crew_query_is_a_stable_stand_in() -> None:
    from auren_core.integrations.crewai.convert import Converter

    sent: list[bytes] = []
    pub = types.SimpleNamespace(enqueue_raw=sent.append)
    conv = Converter(pub, tap=None, redact_queries=True)  # type: ignore[arg-type]
    source = types.SimpleNamespace(
        agents=[], process=None, tasks=[types.SimpleNamespace(description="secret question")]
    )
    event = types.SimpleNamespace(crew_name="c", inputs=None)
    meta = types.SimpleNamespace(seq=None, eid="e1", ts=T0, parent=None, run="r1",
                                 flow_run=None, duration_ms=None)
    conv._crew_started(source, event, meta)  # type: ignore[arg-type]
    conv._crew_started(source, event, meta)  # type: ignore[arg-type]
    payloads = [msgspec.json.decode(b)["payload"] for b in sent]
    assert payloads[0]["query"].startswith("sha256:")
    assert "secret" not in payloads[0]["query"]
    assert payloads[0]["query"] == payloads[1]["query"]
    conv.redact_queries = False
    sent.clear()
    conv._crew_started(source, event, meta)  # type: ignore[arg-type]
    assert msgspec.json.decode(sent[0])["payload"]["query"] == "secret question"


# ---------------------------------------------------------------- item 11
def test_events_per_s_is_a_rate_not_the_count_after_a_backfill() -> None:
    # 600 events over 600 s, all read at once (what --once --json does)
    evs = [_ev("tool_used", {"tool": "t", "duration_ms": 1.0, "ok": True}, agent="a",
               ts=T0 + i) for i in range(600)]
    st = _reduce(evs, T0 + 600)
    assert st.health.events_per_s == pytest.approx(1.0, rel=0.05)


def test_analytics_name_agents_by_their_role() -> None:
    evs = [_ev("agent_registered", {"role": "AUREN Coordinator"}, agent="auren_coordinator",
               ts=T0)]
    evs += [_ev("tool_used", {"tool": "lookup", "duration_ms": 1.0, "ok": True, "args": "x"},
                agent="auren_coordinator", run="r", ts=T0 + i) for i in range(1, 6)]
    res = analyze(evs, now=T0 + 10)
    assert res["agent_names"] == {"auren_coordinator": "AUREN Coordinator"}
    for al in res["alerts"]:
        if al["kind"] == "loop":
            assert al["text"].startswith("AUREN Coordinator")
    from auren_tui.widgets.analytics import shown_name

    assert shown_name(res, "auren_coordinator") == "AUREN Coordinator"
    assert shown_name(res, "other") == "other"


def test_sparkline_is_one_column_per_minute() -> None:
    from auren_tui.widgets.format import minute_columns

    vals = tuple(float(i) for i in range(60))
    cols, caption = minute_columns(vals, 20)
    assert list(cols) == [float(i) for i in range(40, 60)]  # the newest 20 minutes, unsqueezed
    assert caption == "1 col = 1 min, last 20 min"
    cols, caption = minute_columns(vals, 100)
    assert len(cols) == 60 and caption.endswith("last 60 min")


# ---------------------------------------------------------------- item 10
def test_publisher_reports_rss_and_cpu_and_agents_get_their_process() -> None:
    usage = process_usage()
    assert usage["rss_bytes"] > 1 << 20 and usage["cpu_seconds"] > 0
    evs = [
        _ev("llm_call", {"model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.0},
            agent="a", ts=T0, eid="aaaa-1"),
        _ev("llm_call", {"model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.0},
            agent="b", ts=T0, eid="bbbb-1"),
        _ev("publisher_stats", {"sent": 1, "dropped": 0, "queued": 0, "publisher": "h:1:0001",
                                "rss_bytes": 50 << 20, "cpu_seconds": 2.5}, ts=T0 + 1,
            eid="aaaa-2"),
    ]
    st = _reduce(evs, T0 + 5)
    p = st.process_of("a")
    assert p is not None and p.rss_bytes == 50 << 20 and p.cpu_seconds == 2.5
    assert p.publisher == "h:1:0001" and p.agents == ("a",)
    assert st.process_of("b") is None
    assert st.to_dict()["processes"][0]["rss_bytes"] == 50 << 20

    m = Metrics()
    m.process_gauges = lambda: [(x.publisher, x.rss_bytes, x.cpu_seconds) for x in st.processes]
    text = m.render()
    assert 'auren_process_rss_bytes{publisher="h:1:0001"} 5.24288e+07' in text
    assert 'auren_process_cpu_seconds_total{publisher="h:1:0001"} 2.5' in text


def test_process_metrics_labels_are_bounded() -> None:
    m = Metrics()
    m.max_processes = 3
    m.process_gauges = lambda: [(f"h:{i}:0", 10, 1.0) for i in range(10)]
    text = m.render()
    rows = [ln for ln in text.splitlines() if ln.startswith("auren_process_rss_bytes{")]
    assert len(rows) == 4 and 'auren_process_rss_bytes{publisher="other"} 70.0' in text


def _hyp(agent: str, hid: str, status: str, ts: float) -> Event:
    return _ev("hypothesis", {"hypothesis_id": hid, "status": status, "statement": "s"},
               agent=agent, ts=ts)


def test_learning_velocity_in_the_tui_sections() -> None:
    from rich.console import Console

    from auren_tui.widgets.analytics import LearningSection

    evs = [_ev("agent_registered", {"role": "Sleep Analyst"}, agent="sleep", ts=T0)]
    evs += [_hyp("sleep", f"h{i}", "formed", T0 + i) for i in range(4)]
    evs += [_hyp("sleep", "h0", "validated", T0 + 10), _hyp("sleep", "h1", "rejected", T0 + 11)]
    res = analysis(evs, now=T0 + 3600)
    out = LearningSection().build(res, 100)
    con = Console(width=100, record=True)
    con.print(out)
    text = con.export_text()
    assert "Sleep Analyst" in text and "4.0" in text and "50%" in text

    from auren_tui.screens.agent import _learning_line

    line = _learning_line(types.SimpleNamespace(result=res), "sleep").plain
    assert "4.0 formed/h" in line and "validation 50%" in line


# ---------------------------------------------------------------- item 3 (TUI half)
def test_recommendation_thresholds_from_auren_toml(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from auren_core.config import ConfigError, load_settings

    cfg = tmp_path / "auren.toml"
    cfg.write_text("[recommendations]\nmin_slow_serves = 2\ntogether_share = 0.5\n")
    monkeypatch.setenv("AUREN_CONFIG", str(cfg))
    s = load_settings()
    th = s.recommendations.thresholds()
    assert th.min_slow_serves == 2 and th.together_share == 0.5 and th.min_runs == 3
    loads = [_ev("memory_tier_access", {"tier_accessed": "postgresql_structured",
                                         "query": "q", "latency_by_tier": {"redis": 1.0,
                                                                           "postgresql": 9.0},
                                         "items_retrieved": 1}, agent="a", ts=T0 + i)
             for i in range(2)]
    assert analysis(loads, now=T0 + 5)["recommendations"] == []
    recs = analysis(loads, now=T0 + 5, thresholds=s.recommendations.model_dump())
    assert recs["recommendations"][0]["kind"] == "cache_in_redis"
    cfg.write_text("[recommendations]\ntogether_share = 2\n")
    with pytest.raises(ConfigError, match=r"recommendations\.together_share"):
        load_settings()


def test_economics_top_tip() -> None:
    from auren_tui.widgets.economics import top_tip

    assert top_tip(None) == "tip: press a for analytics"
    msg = types.SimpleNamespace(result={
        "recommendations": [{"kind": "cache_in_redis", "text": "cache 'q' in Redis",
                             "estimated_saving": {"usd": 1.5}}],
        "counts": {"recommendations": 3},
    })
    assert top_tip(msg) == "tip: cache 'q' in Redis (saves ~$1.50) [+2 more: a]"
    assert top_tip(types.SimpleNamespace(result={"recommendations": []})).startswith("tip: no")
