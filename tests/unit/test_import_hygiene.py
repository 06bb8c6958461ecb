"""The engine never pulls in the UI or the agent-side heavyweights.

Checked in a fresh interpreter (this test process has long imported everything).
"""

from __future__ import annotations

import json
import subprocess
import sys

ENGINE = [
    "auren_core",
    "auren_core.state",
    "auren_core.state.registry",
    "auren_core.streams.reader",
    "auren_core.streams.publisher",
]
FORBIDDEN = ["textual", "rich", "crewai", "chromadb"]

_PROBE = """
import json, sys
for m in {modules!r}:
    __import__(m)
loaded = sorted({{n.split('.')[0] for n in sys.modules}})
print(json.dumps(loaded))
"""


def _loaded_after(modules: list[str]) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(modules=modules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_engine_imports_no_ui_nor_agent_side_packages() -> None:
    loaded = _loaded_after(ENGINE)
    assert "auren_core" in loaded and "msgspec" in loaded  # the probe did import the engine
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_probe_detects_a_forbidden_import() -> None:
    # the same probe does see them when they are imported (so the test above can fail)
    loaded = _loaded_after([*ENGINE, "rich"])
    assert "rich" in loaded


# --------------------------------------------------------------------------- auren top (issue 14)
# `auren top`'s start-up: make_app spawns the worker process first, then this process
# imports Textual and the panes; nothing that only a later screen, a server or the agent
# side needs is imported before the first painted frame.

# never on the way to auren top's first frame (imported later, where they are needed)
HEAVY = [
    "auren_core.analytics",  # the analytics screen / the worker's tip, after the backfill
    "auren_core.pricing",  # the pricing tables (genai-prices)
    "genai_prices",
    "asyncpg",  # persist, the PostgreSQL sink
    "psycopg",
    "plotext",  # the charts: agent screen, forecast chart
    "textual_plotext",
    "prometheus_client",  # serve-ws /metrics
    "websockets",
    "crewai",
    "chromadb",
    "opentelemetry",
    "grpc",
    "pydantic",
]
# the app's side also never needs the reader's client (the worker process reads)
UI_HEAVY = [*HEAVY, "redis", "auren_core.state.build", "auren_core.streams.reader"]


def _loaded_modules(modules: list[str], pre: str = "") -> set[str]:
    """Every module name (not just the top package) loaded after importing ``modules``."""
    code = pre + (
        "import json, sys\n"
        f"for m in {modules!r}:\n"
        "    __import__(m)\n"
        "print(json.dumps(sorted(n for n, m in sys.modules.items() if m is not None)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _hits(loaded: set[str], heavy: list[str]) -> list[str]:
    return sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in heavy))


def test_make_app_module_imports_no_textual() -> None:
    # `from auren_tui.app import make_app` is nearly free, so that the worker process is
    # spawned before this process spends ~0.25 s importing Textual and the panes
    loaded = _loaded_modules(["auren_tui.app"])
    assert "auren_tui.app" in loaded
    assert not _hits(loaded, ["textual", "rich", "auren_tui.top_app", *UI_HEAVY])


def test_top_app_imports_nothing_heavy_before_first_paint() -> None:
    # what the app's process imports to build and paint the main screen
    loaded = _loaded_modules(["auren_tui.app", "auren_tui.top_app", "auren_tui.process"])
    assert "textual.app" in loaded and "auren_tui.screens.main" in loaded  # the probe worked
    assert not _hits(loaded, UI_HEAVY), _hits(loaded, UI_HEAVY)
    # the drill-down, analytics and help screens load when first opened
    assert not _hits(loaded, ["auren_tui.screens.agent", "auren_tui.screens.analytics"])
    assert "auren_tui.screens.help" not in loaded


def test_worker_process_imports_no_ui_nor_heavy() -> None:
    # the child process (auren_tui.process.child_main): the reader and the reducer, no
    # Textual (its messages are auren_tui.wire's), no OpenTelemetry SDK (redis-py's
    # optional metrics; child_main marks it absent first, as done here), no analytics
    # until the backfill is in
    pre = "from auren_tui.process import _without_otel_sdk\n_without_otel_sdk()\n"
    mods = ["auren_tui.process", "auren_tui.worker", "auren_core.state"]
    loaded = _loaded_modules([*mods, "auren_core.streams.sharded_reader"], pre)
    assert "redis" in loaded and "auren_core.state.build" in loaded  # the probe worked
    # (redis-py still imports the small OpenTelemetry *API* package, not the SDK)
    heavy = ["textual", "rich", "opentelemetry.sdk", *(h for h in HEAVY if h != "opentelemetry")]
    assert not _hits(loaded, heavy), _hits(loaded, heavy)


def test_the_heavy_probe_sees_heavy_modules() -> None:
    # negative control: the same probe reports them once imported
    loaded = _loaded_modules(["auren_tui.app", "auren_core.analytics", "textual_plotext"])
    assert _hits(loaded, UI_HEAVY) and "textual_plotext" in _hits(loaded, HEAVY)
