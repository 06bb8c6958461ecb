"""`auren demo` on a machine with nothing configured, as a newcomer runs it.

No AUREN_* servers configured and localhost probing off: the demo starts the embedded
Valkey and PostgreSQL and a local ChromaDB directory; `auren top --once --json` in another
process finds the same embedded Valkey and shows the crew's activity.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from auren_core.backends import stop_embedded
from auren_core.config import load_settings

AUREN = [sys.executable, "-m", "auren_tui"]


@pytest.fixture
def fresh_env() -> Iterator[dict[str, str]]:
    # Not pytest's tmp_path: as root, the embedded PostgreSQL runs as another user, which
    # must traverse every parent directory, and pytest resets its own base to 0700 whenever
    # another pytest session starts on the machine.
    tmp_path = Path(tempfile.mkdtemp(prefix="auren-demo-test-"))
    tmp_path.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUREN_")}
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_DATA_HOME=str(tmp_path / "data"),
        AUREN_PROBE_LOCAL="false",
        AUREN_CONFIG=str(tmp_path / "none.toml"),
    )
    env.pop("CREWAI_TESTING", None)  # the demo must not hang on CrewAI's first-run prompt
    try:
        yield env
    finally:
        stop_embedded(load_settings(data_dir=str(tmp_path / "data" / "auren")))
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.slow
def test_demo_then_top_once_json(fresh_env: dict[str, str]) -> None:
    demo = subprocess.run(
        [*AUREN, "demo", "--headless", "--duration", "10", "--rate", "3"],
        env=fresh_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    first = next(ln for ln in demo.stderr.splitlines() if "backends:" in ln)
    assert "redis embedded" in first and "postgresql embedded" in first, first
    assert "chromadb embedded" in first
    # on the newest CrewAI: no warnings from CrewAI on the console (call scope, token
    # estimates, executor-flow error logs of the scripted failures)
    # (as root, the embedded PostgreSQL's one-line notice: auren_core.backends.root_notice)
    noise = [
        ln
        for ln in demo.stderr.splitlines()
        if not ln.startswith(("auren demo:", "auren: running as root")) and ln.strip()
    ]
    assert not noise, noise[:5]

    top = subprocess.run(
        [*AUREN, "top", "--once", "--json", "--since", "1h"],
        env=fresh_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert top.returncode == 0, top.stderr[-3000:]
    assert "redis embedded" in top.stderr
    snap = orjson.loads(top.stdout)
    agents = {a["id"] for a in snap["agents"]}
    assert {"auren_coordinator"} < agents and len(agents) >= 3, agents
    t = snap["totals"]
    assert t["llm_calls"] > 10 and t["input_tokens"] > 0 and t["tool_calls"] > 5
    assert t["cost_usd"] > 0  # gpt-4o-mini is a priced model
    assert sum(c["count"] for c in snap["collaboration"]) >= 3
    assert {c["kind"] for c in snap["collaboration"]} <= {"delegate", "ask"}
    for tier in ("redis", "postgresql", "chromadb"):
        assert snap["tiers"][tier]["hits"] > 0, (tier, snap["tiers"])
        assert snap["tiers"][tier]["cost_usd"] > 0, (tier, snap["tiers"])  # priced per op
    assert t["memory_cost_usd"] > 0 and snap["tiers"]["cost_note"] == ""
    assert snap["health"]["malformed"] == 0

    # recommendations fire on the demo's own traffic within its first seconds: the lead
    # runs on gpt-4o for short routing notes, which the cheaper-model rule catches
    import redis

    from auren_core.analytics import analyze
    from auren_core.backends import resolve_redis
    from auren_core.events import Event
    from auren_core.streams.entries import decode_entry

    settings = load_settings(data_dir=str(Path(fresh_env["XDG_DATA_HOME"]) / "auren"))
    url = resolve_redis(settings, start=False, probe_local=False).url
    entries = redis.Redis.from_url(url).xrange(settings.stream)
    evs = [e for e in (decode_entry(sid, f) for sid, f in entries) if isinstance(e, Event)]
    recs = analyze(evs, now=max(e.ts for e in evs))["recommendations"]
    model = [r for r in recs if r["kind"] == "cheaper_model"]
    assert model and model[0]["target"] == "auren_coordinator:gpt-4o", recs
    assert model[0]["evidence"]["suggested_model"] == "gpt-4o-mini"
    assert model[0]["estimated_saving"]["usd"] > 0
    assert not [r for r in recs if r["kind"] == "stop_loop"], recs  # delegations differ
    hyp = snap["hypotheses"]
    assert len(hyp) >= 2 and len({h["agent"] for h in hyp}) >= 2
    assert {h["status"] for h in hyp} <= {"formed", "updated", "validated", "rejected"}
    assert len(snap["knowledge"]["items"]) >= 3
