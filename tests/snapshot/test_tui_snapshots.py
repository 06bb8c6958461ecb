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
from textual.pilot import Pilot
from tui_states import painted, show_recorded, state_app
from waiting import await_until

from auren_tui.app import TopApp
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
    """The recording's state and analysis posted as the worker's messages (no worker
    thread playing the recording: :mod:`tui_states`)."""
    return state_app(
        budget_usd_per_hour=0.5,
        backends_line="backends: redis local redis://127.0.0.1:6379/0",
    )


async def loaded(pilot: Pilot[None]) -> None:
    await show_recorded(pilot)


def then(
    *steps: Callable[[Pilot[None]], Awaitable[None]],
) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run(pilot: Pilot[None]) -> None:
        for step in steps:
            await step(pilot)

    return run


def _frames(a: TopApp) -> int:
    return len(a.painted)  # type: ignore[attr-defined]


async def drill(pilot: Pilot[None]) -> None:
    a = pilot.app
    assert isinstance(a, TopApp)
    before = _frames(a)
    a.action_drill("neuro")
    await await_until(
        lambda: isinstance(a.screen, AgentScreen), "the agent screen", pause=pilot.pause
    )
    await painted(pilot, after=before)  # the state redrawn on the agent screen
    await pilot.pause()


async def help_screen(pilot: Pilot[None]) -> None:
    await pilot.press("question_mark")
    assert isinstance(pilot.app.screen, HelpScreen)
    await pilot.pause()


async def analytics_screen(pilot: Pilot[None]) -> None:
    a = pilot.app
    assert isinstance(a, TopApp)
    first, before = a.analytics, _frames(a)
    await pilot.press("a")
    assert isinstance(a.screen, AnalyticsScreen)
    # opening asks the worker for a fresh analysis; the state is redrawn on the screen
    await await_until(lambda: a.analytics is not first, "a fresh analysis", pause=pilot.pause)
    await painted(pilot, after=before)
    await pilot.pause()


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
