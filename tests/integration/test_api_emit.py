"""``emit()`` never touches the network in the caller's thread, not even the first call:
the process publisher works out where to send (settings, localhost probe, embedded Valkey)
on its own thread, and events emitted meanwhile wait in its buffer.

Each case runs in a fresh interpreter (nothing resolved or imported beforehand), with an
audit hook recording which thread opens sockets or starts processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import redis

PROBE = r"""
import json, os, sys, threading, time

opened = []  # (event, thread) for every socket connect and process start
def hook(event, args):
    if event in ("socket.connect", "subprocess.Popen"):
        opened.append((event, threading.current_thread().name))
sys.addaudithook(hook)

from auren_core import backends as embedded
resolved_in = []
real_resolve = embedded.resolve_redis
def slow_resolve(settings, **kw):  # as slow as finding or starting a server can be
    resolved_in.append(threading.current_thread().name)
    time.sleep(float(os.environ["PROBE_DELAY"]))
    return real_resolve(settings, **kw)
embedded.resolve_redis = slow_resolve

from auren_core import emitter as api
payload = {"hypothesis_id": "H-1", "status": "formed"}
t0 = time.perf_counter()
api.emit("hypothesis", payload, agent="a")
first = time.perf_counter() - t0
for _ in range(99):
    api.emit("hypothesis", payload, agent="a")
hundred = time.perf_counter() - t0
in_caller = [o for o in opened if o[1] == "MainThread"]
pub = api.get_publisher()
flushed = pub.flush(float(os.environ["PROBE_FLUSH"]))
c = pub.counters()
print(json.dumps({
    "first": first, "hundred": hundred, "in_caller": in_caller, "resolved_in": resolved_in,
    "opened": sorted(set(opened)), "flushed": flushed, "produced": c.produced,
    "sent": c.sent, "stream": pub.stream,
}))
"""


def _run(env: dict[str, str], delay: float, flush: float) -> tuple[dict, str]:  # type: ignore[type-arg]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUREN_")} | env
    env |= {"PROBE_DELAY": str(delay), "PROBE_FLUSH": str(flush)}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_first_emit_returns_at_once_and_events_arrive_once_resolved(
    redis_url: str, stream: str
) -> None:
    t0 = time.monotonic()
    out, _ = _run({"AUREN_REDIS_URL": redis_url, "AUREN_STREAM": stream}, delay=1.5, flush=15)
    # 1.5 s of resolution happened on the publisher's thread, none of it in emit()
    assert out["resolved_in"] == ["auren-publisher"]
    assert out["first"] < 0.05 and out["hundred"] < 0.1, out
    assert out["in_caller"] == [], out  # no socket, no process from the caller's thread
    assert ["socket.connect", "auren-publisher"] in out["opened"]  # it did connect, there
    assert out["flushed"] and out["produced"] == out["sent"] == 100
    assert out["stream"] == stream
    r = redis.Redis.from_url(redis_url)
    assert r.xlen(stream) == 100
    assert time.monotonic() - t0 < 30


def test_local_probe_and_unreachable_backends_stay_off_the_callers_thread(tmp_path: object) -> None:
    # nothing configured, no local probe, no embedded server allowed: resolution fails,
    # on the publisher's thread; emit() neither waits nor raises, events are counted
    out, stderr = _run(
        {
            "AUREN_PROBE_LOCAL": "false",
            "AUREN_EMBEDDED": "false",
            "AUREN_DATA_DIR": str(tmp_path),
        },
        delay=0.2,
        flush=0.5,
    )
    assert out["first"] < 0.05 and out["hundred"] < 0.1, out
    assert out["in_caller"] == [] and out["resolved_in"][0] == "auren-publisher"
    assert not out["flushed"] and out["produced"] == 100 and out["sent"] == 0
    assert "no Redis" in stderr  # said once, from the publisher's thread
