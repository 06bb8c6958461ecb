"""Snapshot tests of ``auren top`` (pytest-textual-snapshot) from recorded events.

Fixed terminal sizes, a frozen clock, UTC, no cursor blink: the SVGs are identical on
every run. The accepted snapshots are copied to ``screenshots/`` (used by the README).
Update with ``pytest tests/snapshot/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from recorded_events import frozen_clock, recorded
from textual.pilot import Pilot

from auren_core.streams.replay import RecordedSource
from auren_tui.app import TopApp, make_app
from auren_tui.screens.agent import AgentScreen
from auren_tui.screens.analytics import AnalyticsScreen
from auren_tui.screens.help import HelpScreen

SIZES = [(80, 24), (160, 48)]
ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).parent / "__snapshots__" / Path(__file__).stem
SCREENSHOTS = ROOT / "screenshots"


@pytest.fixture(autouse=True)
def _utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture(scope="module", autouse=True)
def _copy_screenshots() -> Iterator[None]:
    """After the module: the accepted SVGs become ``screenshots/<screen>-<WxH>.svg``."""
    yield
    SCREENSHOTS.mkdir(exist_ok=True)
    for svg in SNAPSHOTS.glob("*.svg"):
        # test_main_screen[80x24].svg -> main-80x24.svg
        name = svg.stem.removeprefix("test_").replace("_screen", "").replace("[", "-")
        target = SCREENSHOTS / (name.rstrip("]") + ".svg")
        if not target.exists() or target.read_bytes() != svg.read_bytes():
            shutil.copyfile(svg, target)


def app() -> TopApp:
    return make_app(
        redis_url="redis://unused",
        stream="auren:events",
        source=RecordedSource.of(recorded()),
        clock=frozen_clock,
        budget_usd_per_hour=0.5,
        backends_line="backends: redis local redis://127.0.0.1:6379/0",
    )


async def loaded(pilot: Pilot[None]) -> None:
    a = pilot.app
    assert isinstance(a, TopApp)
    want = len(recorded())
    deadline = time.monotonic() + 15
    # the first analysis too (token economics' top recommendation, the agent's learning)
    while (
        a.shown is None or a.shown.health.events_total < want or a.frames < 2 or a.analytics is None
    ):
        assert time.monotonic() < deadline, "recorded events never shown"
        await pilot.pause(0.02)
    await pilot.pause(0.1)


def then(
    *steps: Callable[[Pilot[None]], Awaitable[None]],
) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run(pilot: Pilot[None]) -> None:
        for step in steps:
            await step(pilot)

    return run


async def drill(pilot: Pilot[None]) -> None:
    a = pilot.app
    assert isinstance(a, TopApp)
    a.action_drill("neuro")
    while not isinstance(a.screen, AgentScreen):
        await pilot.pause(0.02)
    await pilot.pause(0.3)


async def help_screen(pilot: Pilot[None]) -> None:
    await pilot.press("question_mark")
    assert isinstance(pilot.app.screen, HelpScreen)
    await pilot.pause(0.1)


async def analytics_screen(pilot: Pilot[None]) -> None:
    a = pilot.app
    assert isinstance(a, TopApp)
    await pilot.press("a")
    assert isinstance(a.screen, AnalyticsScreen)
    deadline = time.monotonic() + 15
    while a.analytics is None:
        assert time.monotonic() < deadline, "no analytics result"
        await pilot.pause(0.02)
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare: Callable[..., bool], size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_agent_screen(snap_compare: Callable[..., bool], size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, run_before=then(loaded, drill))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare: Callable[..., bool], size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, run_before=then(loaded, help_screen))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_analytics_screen(snap_compare: Callable[..., bool], size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, run_before=then(loaded, analytics_screen))
