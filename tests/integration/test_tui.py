"""Pilot tests of ``auren top``: pause, filter, sort, drill-down, clear, reconnect, hostile text."""

from __future__ import annotations

import asyncio
import io
import os
import re
import time
from collections.abc import Callable

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recorded_events import FLOW_WAITING, FROZEN_NOW, HOSTILE_ROLE, frozen_clock, recorded
from rich.console import Console
from rich.text import Text
from servers import PrivateRedis
from textual.pilot import Pilot
from tui_states import painted, post_state, show_recorded, state_app
from waiting import await_until

from auren_core.events import Event, encode_fields
from auren_core.state import Reducer
from auren_core.streams.publisher import Publisher
from auren_tui.app import TopApp, make_app
from auren_tui.sanitize import clean, is_clean, safe_text
from auren_tui.screens.agent import AgentScreen
from auren_tui.screens.help import HelpScreen
from auren_tui.screens.main import MainScreen
from auren_tui.widgets import AgentsTable, EventLog, FlowsPane, HealthLine, LogFilter

os.environ["TZ"] = "UTC"
time.tzset()


async def wait_for(
    pilot: Pilot[None], cond: Callable[[], object], what: str, timeout: float = 15.0
) -> None:
    await await_until(cond, what, timeout=timeout, pause=pilot.pause)


async def shown_recorded(pilot: Pilot[None], app: TopApp) -> None:
    """The recording's state, posted as the worker's message (:mod:`tui_states`), painted
    into every pane and the agents table."""
    await show_recorded(pilot)
    assert app.shown is not None and app.shown.health.events_total == len(recorded())


def screen_text(app: TopApp) -> str:
    """Every character the compositor would paint (control segments excluded)."""
    console = Console(
        width=app.size.width,
        height=app.size.height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text(styles=False)


def health_text(app: TopApp) -> str:
    return str(app.screen.query_one(HealthLine).render())


# --------------------------------------------------------------------------- sanitiser


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b]8;;https://evil\x07click\x1b]8;;\x07", "click"),
        ("\x1b]52;c;ZXZpbA==\x1b\\x", "x"),
        ("nul\x00byte", "nulbyte"),
        ("\u202eexe.txt", "exe.txt"),
        ("c1\x9b31mz", "c1z"),
        ("[bold]x[/bold]", "[bold]x[/bold]"),
        ("line\nbreak\ttab", "line break tab"),
        ("\ud800lone", "lone"),
    ],
)
def test_clean_removes_escapes_and_controls(raw: str, want: str) -> None:
    assert clean(raw) == want


def test_clean_truncates_and_safe_text_is_not_markup() -> None:
    assert clean("x" * 500, 10) == "x" * 9 + "…"
    t = safe_text("[bold red]boom[/]")
    assert t.plain == "[bold red]boom[/]" and not t.spans


# --------------------------------------------------------------------------- pilot: recorded


async def test_main_screen_renders_every_pane_from_events() -> None:
    app = state_app(budget_usd_per_hour=0.5)
    async with app.run_test(size=(160, 48)) as pilot:
        await shown_recorded(pilot, app)
        text = screen_text(app)
        state = app.shown
        assert state is not None
        for title in (
            "1 Memory tiers",
            "2 Active agents",
            "3 Token economics",
            "4 Collaboration",
            "5 Knowledge",
            "6 Event log",
        ):
            assert title in text
        # figures on screen are the reducer's
        assert f"Query {state.tiers.queries}" in text
        assert "ALERT" in text and state.costs.budget_status == "alert"
        assert "Neuroscientist" in text and "running" in text
        assert "malformed 1" in text and "publisher drops 17" in text
        assert HOSTILE_ROLE[:18] in text  # markup shown literally ...
        assert "\x1b" not in text and "\u202e" not in text  # ... escapes and bidi gone


async def test_flows_pane_and_human_waits_render() -> None:
    app = state_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await shown_recorded(pilot, app)
        state = app.shown
        assert state is not None
        text = screen_text(app)
        assert app.screen.has_class("-flows") and "7 Flows" in text
        waiting = [f for f in state.flows if f.status == "waiting_human"]
        assert [f.flow for f in waiting] == [FLOW_WAITING]
        # the waiting flow: its step, how long the human has been asked, what was asked
        assert FLOW_WAITING in text and "review_plan" in text
        assert "waiting for a human 9m56s" in text and "Approve the 4-wee" in text
        assert "NightlyDigestFlow" in text and "summarize" in text  # running, current step
        assert "renderer time" in text  # the failed one shows its error
        assert "1 waiting · 1 running · 1 done · 1 failed" in text
        # an agent waiting for a human, and the title-bar marker at any size
        assert "⚑ human" in text and "waiting for a human: 1 flow, 1 agent" in text
        assert state.agent("coach").status == "waiting_human"  # type: ignore[union-attr]
        # the log is the two other columns of the bottom row
        flows, log = app.screen.query_one(FlowsPane), app.screen.query_one(EventLog)
        assert flows.region.y == log.region.y and flows.region.x < log.region.x
    app = state_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await shown_recorded(pilot, app)
        assert "waiting for a human: 1 flow" in screen_text(app)
        await pilot.press("7")  # narrow: one column; 7 jumps to the flows pane
        await wait_for(
            pilot,
            lambda: "7 Flows" in (t := screen_text(app)) and FLOW_WAITING in t,
            "the flows pane scrolled into view",
        )


async def test_flows_pane_hidden_without_flows() -> None:
    app = state_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await shown_recorded(pilot, app)
        main = app.screen
        assert isinstance(main, MainScreen) and main.has_class("-flows")
        red = Reducer(clock=frozen_clock)
        red.apply(Event(id="x", ts=FROZEN_NOW - 1, type="agent_started", agent="solo"))
        await post_state(pilot, red.state())  # the worker's next state: no flows in it
        assert not main.has_class("-flows") and not main.query_one(FlowsPane).display
        text = screen_text(app)
        assert "7 Flows" not in text and "waiting for a human" not in text
        log = main.query_one(EventLog)
        assert log.region.width > app.size.width * 0.9  # the log spans the whole row again
        await pilot.press("7")  # nothing to jump to: a notice, no error
        await pilot.pause()
        assert app.failure is None and isinstance(app.screen, MainScreen)


async def test_pause_freezes_panes_and_resume_catches_up(redis_url: str, stream: str) -> None:
    r = redis.Redis.from_url(redis_url)
    for i in range(20):
        r.xadd(
            stream,
            {
                "e": encode_fields(
                    "llm_call",
                    {
                        "model": "gpt-4o-mini",
                        "input_tokens": 10,
                        "output_tokens": 1,
                        "cost_usd": 0.001,
                    },
                    "neuro",
                    "r1",
                )
            },
        )
    app = make_app(redis_url=redis_url, stream=stream, since_s=600)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(
            pilot,
            lambda: app.shown is not None and app.shown.totals.llm_calls == 20,
            "the 20 calls shown",
        )
        await pilot.press("p")
        assert app.paused
        frozen = app.shown
        for i in range(30):
            r.xadd(stream, {"e": encode_fields("tool_used", {"tool": f"t{i}"}, "neuro", "r1")})
        # reading continues while paused: the worker's state moves on, the panes do not
        await wait_for(
            pilot,
            lambda: app.latest is not None and app.latest.totals.tool_calls == 30,
            "the worker to read the 30 tool calls",
        )
        # a frame of the new state is drawn (the health line counts it) ...
        await wait_for(pilot, lambda: "+30 new" in health_text(app), "the paused frame")
        assert app.shown is frozen  # ... while the panes stay as they were
        assert "PAUSED" in health_text(app) and "+30 new" in health_text(app)
        log = app.screen.query_one(EventLog)
        assert all(e.type == "llm_call" for e in log.shown)
        await pilot.press("p")
        assert not app.paused
        await wait_for(
            pilot, lambda: any(e.type == "tool_used" for e in log.shown), "the log caught up"
        )
        assert app.shown is not None and app.shown.totals.tool_calls == 30
        assert "PAUSED" not in health_text(app)


async def test_filter_by_type_agent_and_text() -> None:
    app = state_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await shown_recorded(pilot, app)
        log = app.screen.query_one(EventLog)
        await pilot.press("slash")
        for ch in "type:hypothesis":
            await pilot.press(ch)
        await pilot.press("enter")
        await wait_for(pilot, lambda: log.filter.types == ("hypothesis",), "the filter applied")
        # the log's lines are chosen as it renders: wait for the filtered paint
        await wait_for(
            pilot,
            lambda: log.shown and all(e.type == "hypothesis" for e in log.shown),
            "the filtered log painted",
        )
        want = [e for e in app.shown.log if e.type == "hypothesis"]  # type: ignore[union-attr]
        assert [e.id for e in log.shown] == [e.id for e in want][-len(log.shown) :]
        assert "filter: type:hypothesis" in str(log.border_subtitle)

        assert isinstance(app.screen, MainScreen)
        app.screen.apply_filter("agent:sleep llm")
        await wait_for(
            pilot,
            lambda: log.shown and all(e.agent == "sleep" and "llm" in e.type for e in log.shown),
            "the filtered log painted",
        )
        app.screen.apply_filter("type:nothing_like_this")
        await wait_for(pilot, lambda: "no events match" in screen_text(app), "the empty log")
        assert log.shown == [] and "no events match" in screen_text(app)
        await pilot.press("c")  # clear resets the filter and hides the current lines
        await wait_for(pilot, lambda: "waiting for events" in screen_text(app), "the cleared log")
        assert not log.filter.active and log.shown == []


def test_log_filter_parse() -> None:
    f = LogFilter.parse("type:llm_call t:tool agent:Neuro  deep Sleep")
    assert f.types == ("llm_call", "tool") and f.agents == ("neuro",) and f.text == "deep sleep"
    assert not LogFilter.parse("   ").active


async def test_sort_cycles_and_orders_rows() -> None:
    app = state_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await shown_recorded(pilot, app)
        table = app.screen.query_one(AgentsTable)
        state = app.shown
        assert state is not None

        def order() -> list[str]:
            return table.order

        by_cost = sorted(state.agents, key=lambda a: -a.cost_usd)
        assert order()[0] == by_cost[0].id
        await pilot.press("s")  # cost -> $/h
        await wait_for(pilot, lambda: table.sort_key == "rate", "the next sort key")
        rates = [state.agent(a).usd_per_hour for a in order()]  # type: ignore[union-attr]
        assert rates == sorted(rates, reverse=True)
        table.sort_by("agent")  # re-sorts its rows at once
        names = [(state.agent(a).role or a).casefold() for a in order()]  # type: ignore[union-attr]
        assert names == sorted(names)
        table.sort_by("agent")  # same key again: reversed
        names = [(state.agent(a).role or a).casefold() for a in order()]  # type: ignore[union-attr]
        assert names == sorted(names, reverse=True)
        assert "▼" in str(table.border_subtitle)
        # the app tells the worker the table's new order (which agents to ship)
        worker = app.worker
        await wait_for(pilot, lambda: worker.view == ("agent", True, ()), "the view sent")


async def test_drill_down_opens_agent_screen_and_back() -> None:
    app = state_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await shown_recorded(pilot, app)
        table = app.screen.query_one(AgentsTable)
        assert "neuro" in table.order
        table.focus()
        target = table.order.index("neuro")
        table.move_cursor(row=target)
        before = len(app.painted)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, AgentScreen), "the agent screen")
        await painted(pilot, app.shown, after=before)  # the state drawn on the agent screen
        screen = app.screen
        assert isinstance(screen, AgentScreen) and screen.agent_id == "neuro"
        await wait_for(pilot, lambda: screen.query_one(EventLog).shown, "its log painted")
        text = screen_text(app)
        agent = app.shown.agent("neuro")  # type: ignore[union-attr]
        assert agent is not None
        assert "Neuroscientist" in text and "pubmed_search" in text
        assert "HRV drop predicts" in text  # its hypotheses
        log = screen.query_one(EventLog)
        assert log.shown and all(e.agent == "neuro" for e in log.shown)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await pilot.press("d")  # the footer key does the same as Enter
        await wait_for(pilot, lambda: isinstance(app.screen, AgentScreen), "the agent screen")
        assert app.screen.agent_id == "neuro"  # type: ignore[attr-defined]


async def test_agent_screen_charts_cost_per_minute_with_plotext() -> None:
    """A real chart (plotext) of the agent's cost per minute, scaled to its busiest minute;
    plotext is loaded only when an agent screen opens, not by the main screen."""
    import sys

    app = state_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await shown_recorded(pilot, app)
        assert "plotext" not in sys.modules or "auren_tui.widgets.chart" in sys.modules
        table = app.screen.query_one(AgentsTable)
        assert "neuro" in table.order
        table.focus()
        table.move_cursor(row=table.order.index("neuro"))
        before = len(app.painted)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, AgentScreen), "the agent screen")
        await painted(pilot, app.shown, after=before)  # the state drawn on the agent screen
        await wait_for(
            pilot, lambda: "minutes ago" in screen_text(app), "the chart painted its axis"
        )
        from auren_tui.widgets.chart import AgentCostChart

        chart = app.screen.query_one(AgentCostChart)
        agent = app.shown.agent("neuro")  # type: ignore[union-attr]
        assert agent is not None and chart._shown == agent.cost_per_minute
        peak = max(agent.cost_per_minute)
        assert peak > 0
        text = screen_text(app)
        assert "Cost per minute ($), last hour" in text and "minutes ago" in text
        # the y axis reaches the busiest minute (plotext labels its ticks to 2 decimals)
        labels = [float(t) for t in re.findall(r"^│\s*(\d+\.\d+)┤", text, re.M)]
        assert labels and max(labels) >= round(peak, 2) * 0.9


async def test_help_and_palette_commands() -> None:
    app = state_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await shown_recorded(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "pause / resume" in screen_text(app)
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for want in (
            "Pause display",
            "Filter event log",
            "Sort agents",
            "Open selected agent",
            "Clear event log",
            "Help",
            "Quit",
        ):
            assert want in titles


# --------------------------------------------------------------------------- reconnect


async def test_reconnect_shows_reconnecting_and_loses_nothing(private_redis: PrivateRedis) -> None:
    url, stream = private_redis.url, "auren:events"
    pub = Publisher(url, stream, stats_interval=3600)
    app = make_app(redis_url=url, stream=stream, since_s=600)
    async with app.run_test(size=(100, 30)) as pilot:
        for i in range(100):
            pub.emit("tool_used", {"tool": "before", "duration_ms": i}, agent="a1", run="r")
        await wait_for(
            pilot,
            lambda: app.shown is not None and app.shown.totals.tool_calls == 100,
            "the first 100 shown",
        )
        private_redis.stop()
        await wait_for(
            pilot,
            lambda: app.shown is not None and app.shown.health.connection == "reconnecting",
            "the reconnecting status",
        )
        assert "reconnecting" in health_text(app)
        for i in range(50):  # published during the outage: buffered by the publisher
            pub.emit("tool_used", {"tool": "during", "duration_ms": i}, agent="a1", run="r")
        await wait_for(
            pilot, lambda: not pub.counters().connected, "the publisher to see the outage"
        )
        private_redis.start()
        for i in range(50):
            pub.emit("tool_used", {"tool": "after", "duration_ms": i}, agent="a1", run="r")
        await wait_for(
            pilot,
            lambda: app.shown is not None and app.shown.totals.tool_calls == 200,
            "all 200 shown",
            timeout=30,
        )
        assert app.shown is not None and app.shown.health.connection == "live"
        await wait_for(pilot, lambda: "live" in health_text(app), "the live status painted")
        assert "live" in health_text(app) and "reconnecting" not in health_text(app)
    pub.close()


# --------------------------------------------------------------------------- fuzz

_HOSTILE = st.sampled_from(
    [
        "\x1b[2J\x1b[H",
        "\x1b]0;title\x07",
        "\x1b]8;;http://x\x1b\\link",
        "\x9b31m",
        "\x00",
        "\u202e",
        "\u2066",
        "[bold]",
        "[/]",
        "[link=file:///etc/passwd]x",
        "\r\n",
        "\x7f",
        "\x1bP1$r\x1b\\",
        "\x07",
        "é",
        "漢字",
        "🙂",
        "x" * 300,
    ]
)
hostile_text = st.lists(st.one_of(_HOSTILE, st.text(max_size=20)), max_size=6).map("".join)


def _hostile_state(s: str) -> Reducer:
    red = Reducer(clock=frozen_clock)
    t = FROZEN_NOW - 5
    evs = [
        Event(
            id="f1",
            ts=t,
            type="agent_registered",
            agent=s,
            run=s,
            payload={"role": s, "goal": s, "tools": [s], "capabilities": [s], "model": s},
        ),
        Event(
            id="f2",
            ts=t,
            type="llm_call",
            agent=s,
            run=s,
            payload={"model": s, "input_tokens": 5, "cost_usd": 0.1, "error": s},
        ),
        Event(
            id="f3", ts=t, type="tool_used", agent=s, payload={"tool": s, "ok": False, "error": s}
        ),
        Event(
            id="f4",
            ts=t,
            type="memory_tier_access",
            agent=s,
            payload={"tier_accessed": "miss", "query": s},
        ),
        Event(id="f5", ts=t, type="knowledge_access", agent=s, payload={"item": s, "hit": False}),
        Event(
            id="f6",
            ts=t,
            type="collaboration",
            agent=s,
            payload={"to_agent": s + "2", "kind": "ask"},
        ),
        Event(
            id="f7",
            ts=t,
            type="hypothesis",
            agent=s,
            payload={"hypothesis_id": s, "status": "formed", "statement": s},
        ),
        Event(id="f8", ts=t, type=s or "x", agent=s, payload={"k": s}),
        Event(id="f9", ts=t, type="flow_started", run="fl", payload={"flow": s, "flow_id": s}),
        Event(
            id="f10",
            ts=t,
            type="flow_step",
            run="fl",
            payload={"flow": s, "method": s, "phase": "paused"},
        ),
        Event(
            id="f11",
            ts=t,
            type="human_input",
            agent=s,
            run="fl",
            payload={"state": "requested", "flow": s, "method": s, "message": s},
        ),
        Event(id="f12", ts=t, type="flow_started", run="fl2", payload={"flow": s}),
        Event(id="f13", ts=t, type="flow_failed", run="fl2", payload={"flow": s, "error": s}),
    ]
    red.apply_batch(evs, last_id="1-1")
    return red


def _assert_inert(text: str) -> None:
    bad = [
        c
        for c in text
        if (ord(c) < 32 and c != "\n")
        or 0x7F <= ord(c) <= 0x9F
        or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"
    ]
    assert not bad, f"escape/control chars rendered: {bad!r}"


def test_fuzz_detector_catches_unsanitised_text() -> None:
    """The check below would fail if a widget rendered raw text (proves it can fail)."""
    console = Console(file=io.StringIO(), record=True, width=40, force_terminal=True)
    console.print(Text("a\x1b[31mb"))
    with pytest.raises(AssertionError):
        _assert_inert(console.export_text(styles=False))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(s=hostile_text)
def test_fuzz_hostile_strings_render_inert(s: str) -> None:
    async def run() -> None:
        app = state_app(analytics=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await shown_recorded(pilot, app)
            state = _hostile_state(s).state()
            assert isinstance(app.screen, MainScreen)
            await post_state(pilot, state)  # the worker's next state: hostile strings
            _assert_inert(screen_text(app))
            before = len(app.painted)  # type: ignore[attr-defined]
            app.action_drill(state.agents[0].id if state.agents else "none")
            await wait_for(pilot, lambda: isinstance(app.screen, AgentScreen), "the agent screen")
            await painted(pilot, state, after=before)  # drawn on the agent screen
            _assert_inert(screen_text(app))
            assert app.failure is None

    asyncio.run(run())
    assert is_clean(clean(s))
