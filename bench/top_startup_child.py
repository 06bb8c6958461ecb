"""The start-up children of ``bench_top.py`` (phase 4), in a script of their own so that
they import nothing but what they measure. Each prints the wall time(s) of its frame(s).

    python bench/top_startup_child.py --first-frame REDIS_URL STREAM EXPECT
    python bench/top_startup_child.py --bare-frame
"""

from __future__ import annotations

import sys
import time
from typing import Any


def first_frame_child(url: str, stream: str, expect: int) -> None:
    from auren_tui.app import make_app

    app = make_app(redis_url=url, stream=stream, since_s=3600)
    first: list[float] = []

    def on_frame(t: float, st: Any) -> None:
        # first: the first painted frame with a state from the worker (with a backfill:
        # the first one showing some of it, i.e. its progress); then the one showing all
        if not first and st.health.events_total >= min(expect, 1):
            first.append(t)
        if st.health.events_total >= expect:
            print(f"{first[0]:.6f} {t:.6f}", flush=True)
            app.exit()

    app.on_frame = on_frame
    app.run(headless=True, size=(160, 48))


def bare_child() -> None:
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    class Bare(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("hello")

        def on_mount(self) -> None:
            self.call_after_refresh(self.done)

        def done(self) -> None:
            print(f"{time.time():.6f}", flush=True)
            self.exit()

    Bare().run(headless=True, size=(160, 48))


if __name__ == "__main__":
    if sys.argv[1] == "--first-frame":
        first_frame_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "--bare-frame":
        bare_child()
    else:
        sys.exit(f"unknown mode {sys.argv[1]!r}")
