"""The analytics screen of ``auren top``: forecast, alerts, loops, gaps, collaboration and
recommendations, computed by ``analyze()`` in the stream worker from the events it read."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import redis
from recorded_events import FROZEN_NOW, GAP_QUERY, LOOP_TOOL, frozen_clock, recorded
from test_tui import screen_text
from textual.pilot import Pilot
from tui_states import show_recorded, state_app
from waiting import await_until

from auren_core.analytics import analyze
from auren_core.events import Event, encode_fields
from auren_core.streams.replay import RecordedSource
from auren_tui.app import TopApp, make_app
from auren_tui.screens.analytics import AnalyticsScreen
from auren_tui.screens.help import HelpScreen
from auren_tui.screens.main import MainScreen
from auren_tui.widgets.format import fmt_count
from auren_tui.worker import SHOWN, StreamWorker, _trim, run_analysis

os.environ["TZ"] = "UTC"
time.tzset()


def recorded_app(**kw: object) -> TopApp:
    return make_app(
        redis_url="redis://unused",
        stream="auren:events",
        source=RecordedSource.of(recorded()),
        clock=frozen_clock,
        budget_usd_per_hour=0.15,
        **kw,  # type: ignore[arg-type]
    )


async def wait_for(
    pilot: Pilot[None], cond: Callable[[], object], what: str, timeout: float = 15.0
) -> None:
    await await_until(cond, what, timeout=timeout, pause=pilot.pause)


async def open_analytics(pilot: Pilot[None], app: TopApp) -> None:
    """With the real worker: the recording read, the first analysis in, the screen open
    and its fresh analysis painted."""
    want = len(recorded())
    await wait_for(
        pilot,
        lambda: app.shown is not None and app.shown.health.events_total == want,
        "the recording shown",
    )
    # with the screen closed, one analysis after the backfill (then every 30 s) gives
    # token economics its top recommendation
    await wait_for(pilot, lambda: app.analytics is not None, "the first analysis")
    first = app.analytics
    await pilot.press("a")
    assert isinstance(app.screen, AnalyticsScreen)
    # opening asks for a fresh one
    await wait_for(pilot, lambda: app.analytics is not first, "a fresh analysis")
    await analytics_painted(pilot, app)


async def analytics_painted(pilot: Pilot[None], app: TopApp) -> None:
    """The analytics screen's status line and sections show the newest result."""
    msg = app.analytics
    assert msg is not None and msg.result is not None
    screen = app.screen
    assert isinstance(screen, AnalyticsScreen)
    await wait_for(pilot, lambda: screen.message is msg, "the result handed to the screen")
    events = fmt_count(msg.result["events"])
    await wait_for(
        pilot,
        lambda: f"{events} events since" in (t := screen_text(app)) and "Next-hour" in t,
        "the analysis painted",
    )


async def test_analytics_screen_shows_forecast_loop_gap_and_advice() -> None:
    expected = analyze(recorded(), now=FROZEN_NOW, budget_usd_per_hour=0.15)
    app = recorded_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await open_analytics(pilot, app)
        assert app.analytics is not None and app.analytics.result is not None
        got = app.analytics.result
        assert got["forecast"] == expected["forecast"]  # the worker's result is analyze()'s
        text = screen_text(app)
        # forecast per agent, with its method and backtested error
        neuro = next(a for a in expected["forecast"]["agents"] if a["agent"] == "neuro")
        assert neuro["tokens"]["method"].startswith("holt") and neuro["tokens"]["mae"]
        shown = expected["agent_names"].get("neuro", "neuro")  # the main screen's name
        row = next(line for line in text.splitlines() if f" {shown} " in line and "±" in line)
        for figure in (
            fmt_count(neuro["tokens"]["next"]),
            "±" + fmt_count(neuro["tokens"]["high"] - neuro["tokens"]["next"]),
            f"${neuro['cost_usd']['next']:.4f}",
            "holt",
            f"{neuro['tokens']['points']}h",
        ):
            assert figure in row, (figure, row)
        assert "holt = " in text and "holt linear trend" in text
        # the budget alert, from the forecast
        assert "alert" in text and "vs budget" in text and "$0.15/h" in text
        # the planted loop, with what it cost
        (loop,) = expected["loops"]
        assert loop["agent"] == "coach" and loop["repeats"] == 4
        coach = expected["agent_names"].get("coach", "coach")  # shown by its role
        line = next(x for x in text.splitlines() if f"loop  {coach}" in x)
        assert "x4" in line and f"${loop['cost_usd']:.4f}" in line and LOOP_TOOL in line
        # the planted gap
        line = next(x for x in text.splitlines() if GAP_QUERY in x and "misses" in x)
        assert "3 misses" in line and expected["agent_names"].get("nutri", "nutri") in line
        # a recommendation and its evidence
        assert expected["recommendations"][0]["kind"] == "stop_loop"  # dollars saved first
        assert f"{coach} repeats tool" in text
        rec = next(r for r in expected["recommendations"] if r["kind"] == "cache_in_redis")
        assert f"cache {rec['target']!r} in Redis" in text
        assert f"slow_tier_hits: {rec['evidence']['slow_tier_hits']}" in text
        # knowledge by hour of day: the most-read item's row, its total and the peak hour
        top_item = expected["knowledge"]["hour_matrix"]["items"][0]
        row = next(x for x in text.splitlines() if top_item["item"] in x and "·" in x)
        assert row.rstrip(" │").endswith(str(top_item["total"]))
        assert "UTC hour of day" in text
        # collaboration patterns
        names = expected["agent_names"]
        pair = f"{names.get('neuro', 'neuro')} + {names.get('nutri', 'nutri')}"
        assert pair in text and "completion rate" in text
        assert "\x1b" not in text and "\u202e" not in text
        # escape returns to the dashboard and the worker stops analysing
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        worker = app.worker
        assert isinstance(worker, StreamWorker)
        await wait_for(pilot, lambda: not worker._analytics_on, "the worker told to stop")


async def test_analytics_usable_at_80x24_and_refresh_on_demand() -> None:
    app = recorded_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_analytics(pilot, app)
        first = app.analytics
        text = screen_text(app)
        assert "Next-hour forecast" in text and "events since" in text
        assert "Analytics" in text and "esc Back" in text
        # scroll down to the recommendations (learning and hours come after them)
        await pilot.press("end")
        await pilot.wait_for_scheduled_animations()
        for _ in range(6):
            if "in Redis" in screen_text(app):
                break
            await pilot.press("up")
            await pilot.wait_for_scheduled_animations()  # the scroll, not a fixed pause
        assert "in Redis" in screen_text(app)
        await pilot.press("r")
        await wait_for(pilot, lambda: app.analytics is not first, "the analysis asked for")
        await pilot.press("a")  # the same key closes it
        assert isinstance(app.screen, MainScreen)


async def test_help_footer_and_palette_list_analytics() -> None:
    app = state_app(budget_usd_per_hour=0.15)  # no state needed: a worker posting none
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: "a Analytics" in screen_text(app), "the footer")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Analytics" in titles
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "analytics: forecast, alerts" in screen_text(app)


def test_trim_caps_lists_and_keeps_counts() -> None:
    evs: list[Event] = []
    for i in range(SHOWN + 5):  # SHOWN + 5 distinct gaps, each missed once
        evs.append(
            Event(
                id=f"g{i}",
                ts=FROZEN_NOW - 60,
                type="memory_tier_access",
                agent="a",
                run="r",
                payload={"tier_accessed": "miss", "query": f"q{i}"},
            )
        )
    full = analyze(evs, now=FROZEN_NOW)
    out = _trim(full)
    assert len(full["knowledge"]["gaps"]) == SHOWN + 5
    assert len(out["knowledge"]["gaps"]) == SHOWN and out["counts"]["gaps"] == SHOWN + 5
    assert "readers" not in out["knowledge"] and out["counts"]["items"] == 0  # none answered


def test_analysis_failure_is_reported_not_swallowed() -> None:
    msg = run_analysis(recorded(), now="not a time", budget_usd_per_hour=None)  # type: ignore[arg-type]
    assert msg.result is None and "TypeError" in msg.error and msg.buffered == len(recorded())


async def test_process_worker_analyses_on_request(redis_url: str, stream: str) -> None:
    """The live path: the worker process gets the command over its pipe and sends results."""
    r = redis.Redis.from_url(redis_url)
    for _ in range(3):
        r.xadd(stream, {"e": encode_fields("llm_call", {"model": "m"}, "coach", "r1")})
        r.xadd(
            stream,
            {"e": encode_fields("tool_used", {"tool": "t", "args": {"x": 1}}, "coach", "r1")},
        )
    app = make_app(redis_url=redis_url, stream=stream, since_s=600)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(
            pilot,
            lambda: app.shown is not None and app.shown.totals.tool_calls == 3,
            "the 3 tool calls shown",
        )
        await pilot.press("a")
        await wait_for(pilot, lambda: app.analytics is not None, "the worker's analysis")
        assert app.analytics is not None and app.analytics.result is not None
        (loop,) = app.analytics.result["loops"]
        assert loop["agent"] == "coach" and loop["repeats"] == 3
        await wait_for(pilot, lambda: "loop  coach" in screen_text(app), "the loop painted")
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


def test_sections_render_hostile_strings_inert() -> None:
    """Agent ids, queries and tool arguments from events are plain text: no escape
    sequence reaches the terminal and markup stays literal."""
    import io

    from rich.console import Console

    from auren_tui.widgets.analytics import (
        AlertsSection,
        CollabSection,
        ForecastSection,
        GapsSection,
        LoopsSection,
        RecommendationsSection,
    )

    evil = "[bold red]x[/] \x1b[2J\x1b]52;c;ZXZpbA==\x07\u202eboom"
    evs: list[Event] = []
    for n in range(5):
        for typ, payload in (
            ("llm_call", {"model": evil, "input_tokens": 10, "output_tokens": 1, "cost_usd": 0.1}),
            ("tool_used", {"tool": evil, "args": {evil: evil}}),
            ("memory_tier_access", {"tier_accessed": "miss", "query": evil}),
            ("memory_tier_access", {"tier_accessed": "chromadb_semantic", "query": evil + "2"}),
            ("collaboration", {"to_agent": evil + "b"}),
        ):
            evs.append(
                Event(
                    id=f"h{len(evs)}",
                    ts=FROZEN_NOW - 4 * 3600 + n * 3000 + len(evs),
                    type=typ,
                    agent=evil,
                    run=evil,
                    payload=payload,
                )
            )
    result = _trim(analyze(evs, now=FROZEN_NOW, budget_usd_per_hour=0.01))
    assert result["loops"] and result["knowledge"]["gaps"] and result["recommendations"]
    console = Console(width=100, file=io.StringIO(), force_terminal=True, record=True)
    for cls in (
        ForecastSection,
        AlertsSection,
        LoopsSection,
        GapsSection,
        CollabSection,
        RecommendationsSection,
    ):
        console.print(cls().build(result, 100))
    text = console.export_text(styles=False)
    assert "[bold red]x[/]" in text  # markup shown literally
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text


async def test_forecast_chart_plots_each_agents_next_hour_with_its_interval() -> None:
    """``f`` on the analytics screen: a plotext chart of the forecast, one bar per agent
    with its 95 % interval as an error bar (what the forecast table says, drawn)."""
    expected = analyze(recorded(), now=FROZEN_NOW, budget_usd_per_hour=0.15)
    # the recording's state and analysis posted as the worker's (tui_states)
    app = state_app(budget_usd_per_hour=0.15)
    async with app.run_test(size=(160, 48)) as pilot:
        await show_recorded(pilot)
        first = app.analytics
        await pilot.press("a")
        assert isinstance(app.screen, AnalyticsScreen)
        await wait_for(pilot, lambda: app.analytics is not first, "a fresh analysis")
        await analytics_painted(pilot, app)
        await pilot.press("f")
        from auren_tui.widgets.chart import ForecastChart

        await wait_for(pilot, lambda: app.screen.query(ForecastChart), "the chart screen")
        chart = app.screen.query_one(ForecastChart)
        await wait_for(
            pilot,
            lambda: "Next-hour cost forecast ($) with its 95% interval" in screen_text(app),
            "the chart painted",
        )
        want = [(a["cost_usd"]["next"], a["cost_usd"]["high"]) for a in
                expected["forecast"]["agents"]]  # fmt: skip
        assert [(n, h) for _, n, h in chart._shown] == want
        text = screen_text(app)
        assert "Next-hour cost forecast ($) with its 95% interval" in text
        await pilot.press("escape")
        assert isinstance(app.screen, AnalyticsScreen)
