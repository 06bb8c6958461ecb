"""``auren top`` from the command line: --once --json end to end, replay, errors, imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import redis
from textual.pilot import Pilot

from auren_core.config import ConfigError
from auren_core.events import encode, encode_fields, make_event
from auren_core.streams.publisher import Publisher
from auren_core.streams.replay import ReplaySpec
from auren_tui.app import TopApp, make_app
from auren_tui.commands.top import parse_replay

PY = sys.executable


def run_top(
    *args: str, redis_url: str | None = None, stream: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if redis_url:
        env["AUREN_REDIS_URL"] = redis_url
    if stream:
        env["AUREN_STREAM"] = stream
    return subprocess.run(
        [PY, "-m", "auren_tui", "top", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- --once --json


def test_once_json_end_to_end(redis_url: str, stream: str) -> None:
    pub = Publisher(redis_url, stream, stats_interval=3600)
    pub.emit("crew_started", {"crew": "auren"}, run="k1")
    pub.emit(
        "agent_registered",
        {
            "role": "Neuroscientist",
            "model": "gpt-4o-mini",
            "capabilities": ["hrv"],
            "tools": ["pubmed"],
        },
        agent="neuro",
        run="k1",
    )
    pub.emit(
        "agent_registered",
        {"role": "Sleep Specialist", "model": "gpt-4o-mini", "capabilities": ["sleep"]},
        agent="sleep",
        run="k1",
    )
    want = {"neuro": [0, 0, 0.0], "sleep": [0, 0, 0.0]}
    for i in range(30):
        aid = "neuro" if i % 3 else "sleep"
        tin, tout, cost = 100 + i, 10 + i, 0.0001 * (i + 1)
        want[aid][0] += tin
        want[aid][1] += tout
        want[aid][2] += cost
        pub.emit(
            "llm_call",
            {
                "model": "gpt-4o-mini",
                "input_tokens": tin,
                "output_tokens": tout,
                "cost_usd": cost,
                "cost_source": "test",
            },
            agent=aid,
            run="k1",
        )
    pub.emit("collaboration", {"to_agent": "sleep", "kind": "delegate"}, agent="neuro", run="k1")
    pub.emit(
        "memory_tier_access",
        {"tier_accessed": "redis_immediate", "query": "q", "latency_by_tier": {"redis": 0.5}},
        agent="neuro",
        run="k1",
    )
    redis.Redis.from_url(redis_url).xadd(stream, {"e": b"{not json"})
    assert pub.flush(10)
    pub.close()

    proc = run_top("--once", "--json", "--since", "1h", redis_url=redis_url, stream=stream)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("backends: redis configured")
    snap = json.loads(proc.stdout)
    for key in ("generated_at", "window_s", "totals", "agents", "tiers", "collaboration", "health"):
        assert key in snap
    agents = {a["id"]: a for a in snap["agents"]}
    assert set(agents) == {"neuro", "sleep"}
    assert agents["neuro"]["role"] == "Neuroscientist"
    for aid, (tin, tout, cost) in want.items():
        assert agents[aid]["input_tokens"] == tin
        assert agents[aid]["output_tokens"] == tout
        assert agents[aid]["cost_usd"] == pytest.approx(cost, rel=1e-6)
    assert snap["totals"]["llm_calls"] == 30
    assert snap["totals"]["cost_usd"] == pytest.approx(sum(c for _, _, c in want.values()))
    assert {"from": "neuro", "to": "sleep", "kind": "delegate", "count": 1} in [
        {k: c[k] for k in ("from", "to", "kind", "count")} for c in snap["collaboration"]
    ]
    assert snap["tiers"]["redis"]["hits"] == 1
    assert snap["health"]["malformed"] == 1


def test_once_since_limits_the_backfill(redis_url: str, stream: str) -> None:
    r = redis.Redis.from_url(redis_url)
    old_ms = int((time.time() - 7200) * 1000)
    old = make_event(
        "llm_call",
        {"model": "m", "input_tokens": 5, "cost_usd": 1.0},
        agent="old",
        ts=old_ms / 1000,
    )
    r.xadd(stream, {"e": encode(old)}, id=f"{old_ms}-0")
    r.xadd(stream, {"e": encode_fields("llm_call", {"model": "m", "input_tokens": 7}, "new", None)})
    snap = json.loads(
        run_top("--once", "--json", "--since", "30m", redis_url=redis_url, stream=stream).stdout
    )
    assert snap["totals"]["llm_calls"] == 1 and snap["totals"]["input_tokens"] == 7


def test_top_never_imports_crewai_or_chromadb(redis_url: str, stream: str) -> None:
    code = (
        "import sys\n"
        "from auren_tui.cli import main\n"
        f"rc = main(['top', '--once', '--json', '--since', '1m', '--redis-url', {redis_url!r},"
        f" '--stream', {stream!r}])\n"
        "import auren_tui.app, auren_tui.worker\n"
        "app = auren_tui.app.make_app(redis_url='redis://x', stream='s')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('crewai', 'chromadb'))\n"
        "assert rc == 0 and not bad, (rc, bad)\n"
    )
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "soon"], "Invalid value for '--since': 'soon' is not a duration"),
        (["--active-window", "0"], "Invalid value for '--active-window'"),
        (["--json"], "--json goes with --once"),
        (["--replay", "yesterday-ish"], "bad replay time"),
        (["--replay", "2h..3h"], "FROM is after TO"),
        (["--speed", "-1"], "--speed must be >= 0"),
        (["--budget-usd-per-hour", "-5"], "invalid setting budget_usd_per_hour"),
    ],
)
def test_user_mistakes_are_one_line(args: list[str], message: str, redis_url: str) -> None:
    proc = run_top(*args, redis_url=redis_url, timeout=30)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("auren: ")


def test_unreachable_redis_is_a_clear_error() -> None:
    for args in (["--once", "--json"], []):
        proc = run_top(*args, redis_url="redis://127.0.0.1:1/0", timeout=30)
        assert proc.returncode == 2, proc.stderr
        assert "cannot reach Redis at redis://127.0.0.1:1/0" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_parse_replay() -> None:
    now = 1_800_000_000.0
    assert parse_replay("-", now) == ("-", "+")
    assert parse_replay("2h", now) == (f"{int((now - 7200) * 1000)}-0", "+")
    assert parse_replay("1h30m ago..30m", now) == (
        f"{int((now - 5400) * 1000)}-0",
        f"{int((now - 1800) * 1000)}-18446744073709551615",
    )
    with pytest.raises(ConfigError, match="bad replay time"):
        parse_replay("1y", now)
    assert parse_replay("1700000000000-5..1700000000999", now) == (
        "1700000000000-5",
        "1700000000999",
    )
    start, end = parse_replay("2026-01-01T00:00:00..2026-01-01T01:00:00+00:00", now)
    assert start == "1767225600000-0" and end.startswith("1767229200000-")


# --------------------------------------------------------------------------- replay


def _history(url: str, stream: str, n: int, span_s: float, t0: float) -> None:
    r = redis.Redis.from_url(url)
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        ts = t0 + span_s * i / max(1, n - 1)
        ev = make_event(
            "llm_call",
            {"model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 1, "cost_usd": 0.01},
            agent=f"a{i % 3}",
            run="r",
            ts=ts,
        )
        pipe.xadd(stream, {"e": encode(ev)}, id=f"{int(ts * 1000)}-{i}")
    pipe.execute()


async def _until(pilot: Pilot[None], app: TopApp, cond: object, timeout: float = 20) -> float:
    t0 = time.monotonic()
    while not cond():  # type: ignore[operator]
        assert time.monotonic() - t0 < timeout, "replay never got there"
        await pilot.pause(0.02)
    return time.monotonic() - t0


async def test_replay_flat_out_uses_event_time(redis_url: str, stream: str) -> None:
    t0 = time.time() - 86400  # yesterday: outside any live window
    _history(redis_url, stream, 300, 600, t0)
    app = make_app(redis_url=redis_url, stream=stream, replay=ReplaySpec("-", "+", 0.0))
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(
            pilot, app, lambda: app.shown is not None and app.shown.totals.llm_calls == 300
        )
        state = app.shown
        assert state is not None
        # the clock is the replay's: the last event's time, so the agents are active "now"
        assert state.generated_at == pytest.approx(t0 + 600, abs=0.01)
        assert {a.id for a in state.agents} == {"a0", "a1", "a2"}
        assert state.totals.cost_usd == pytest.approx(3.0)
        assert "replay" in str(app.screen.query_one("#title").render())


async def test_replay_range_and_speed(redis_url: str, stream: str) -> None:
    t0 = time.time() - 3600
    _history(redis_url, stream, 41, 20.0, t0)  # one event every 0.5 s of event time
    start = f"{int((t0 + 5) * 1000)}-0"
    end = f"{int((t0 + 15) * 1000)}-99"
    app = make_app(redis_url=redis_url, stream=stream, replay=ReplaySpec(start, end, 10.0))
    async with app.run_test(size=(120, 40)) as pilot:
        took = await _until(
            pilot, app, lambda: app.shown is not None and app.shown.totals.llm_calls == 21
        )
        # 10 s of history at x10 is about 1 s: paced, not dumped at once
        assert 0.6 < took < 8
        await pilot.pause(0.5)  # idle on purpose: nothing after TO may arrive meanwhile
        assert app.shown is not None and app.shown.totals.llm_calls == 21  # stops at TO
