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
