"""Alerts leave the terminal (auren_core.alerts): budget at 80 % / 100 % of the burn rate,
forecast over budget, loops and stalls, POSTed to a webhook with de-duplication and retry.

The decision part is tested pure; the sender, serve-ws and ``auren top``'s worker against a
real local HTTP receiver (``http.server`` in a thread)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from recorded_events import FROZEN_NOW, LOOP_TOOL, frozen_clock, recorded
from server_helpers import publish, running

from auren_core.alerts import (
    Alert,
    AlertGate,
    AlertNotifier,
    WebhookSender,
    collect,
    payload,
)
from auren_core.analytics import analysis, analyze, sections
from auren_core.config import ConfigError, load_settings
from auren_core.events import Event, make_event
from auren_core.state.model import Costs

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = '<!channel> "},{"text":"pwned"}\n\x1b[31m&<http://evil|click>'


class Receiver:
    """A real HTTP server: records each POST body; answers ``fail`` first requests 500."""

    def __init__(self, fail: int = 0, delay_s: float = 0.0) -> None:
        self.bodies: list[bytes] = []
        self.requests = 0
        self.fail = fail
        self.delay_s = delay_s
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if rec.delay_s:
                    time.sleep(rec.delay_s)
                with rec.lock:
                    rec.requests += 1
                    failing = rec.requests <= rec.fail
                    if not failing:
                        rec.bodies.append(body)
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def docs(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(b) for b in self.bodies]

    def wait(self, cond: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond(self.docs()):
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver got {self.docs()}")
            time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kw: Any) -> Receiver:
        r = Receiver(**kw)
        r.thread.start()
        made.append(r)
        return r

    yield make
    for r in made:
        r.server.shutdown()
        r.server.server_close()


def fast_sender(url: str, **kw: Any) -> WebhookSender:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("backoff_max_s", 0.05)
    return WebhookSender(url, **kw)


def costs(status: str, burn: float, budget: float = 1.0) -> Costs:
    return Costs(
        span_s=600.0,
        burn_usd_per_hour=burn,
        budget_usd_per_hour=budget,
        budget_used=burn / budget,
        budget_status=status,  # type: ignore[arg-type]
    )


def llm(agent: str, ts: float, cost: float = 0.01, run: str = "r1") -> Event:
    return make_event(
        "llm_call",
        {"model": "gpt-4o-mini", "provider": "openai", "input_tokens": 100,
         "output_tokens": 10, "cost_usd": cost, "cost_source": "test", "ok": True},
        agent=agent, run=run, ts=ts,
    )  # fmt: skip


def tool(agent: str, ts: float, name: str = "search", run: str = "r1") -> Event:
    return make_event(
        "tool_used",
        {"tool": name, "duration_ms": 5.0, "ok": True, "args": {"q": "same"}},
        agent=agent,
        run=run,
        ts=ts,
    )


# ------------------------------------------------------------------ the pure decision


def test_budget_levels_come_from_the_reducers_cost_state() -> None:
    assert collect(costs("ok", 0.5), None) == []
    assert collect(costs("unset", 5.0), None) == []
    (warn,) = collect(costs("warning", 0.85), None)
    assert (warn.kind, warn.level) == ("budget", "warning")
    assert "85% of the $1.00/h budget" in warn.text
    (over,) = collect(costs("alert", 1.3), None)
    assert over.level == "alert" and "over budget" in over.text
    assert warn.identity != over.identity  # an escalation is a new alert
    # the reducer's own rule: 80 % of the budget is a warning, 100 % an alert
    from auren_core.state import make_reducer

    now = time.time()
    red = make_reducer(budget_usd_per_hour=1.0, clock=lambda: now)
    red.apply_batch([llm("a", now - 3600 + i, 0.0009) for i in range(1000)])  # $0.90 in 1 h
    (al,) = collect(red.state().costs, None)
    assert al.level == "warning" and al.fields["budget_used"] == pytest.approx(0.9, rel=0.02)


def test_forecast_loops_and_stalls_from_analytics() -> None:
    now = time.time()
    evs: list[Event] = [llm("coach", now - 300 + i * 5, 0.05) for i in range(50)]
    evs += [tool("coach", now - 20 + i) for i in range(4)]  # a loop: 4 identical calls
    evs.append(make_event("task_started", {"task_id": "t9"}, agent="stuck", ts=now - 400))
    result = analyze(evs, now=now, budget_usd_per_hour=0.01)
    for doc in (result, sections(analysis(evs, now=now, budget_usd_per_hour=0.01))):
        got = {a.kind: a for a in collect(None, doc)}
        assert set(got) == {"budget_forecast", "loop", "stall"}, got
        assert got["budget_forecast"].level == "alert"
        assert got["loop"].agent == "coach" and got["loop"].fields["repeats"] == 4
        assert got["stall"].agent == "stuck" and got["stall"].fields["task_id"] == "t9"
    # the same loop seen again with a higher count keeps its identity (no re-send)
    evs.append(tool("coach", now - 1))
    again = {a.kind: a for a in collect(None, analyze(evs, now=now))}
    assert again["loop"].fields["repeats"] == 5
    assert again["loop"].identity == got["loop"].identity


def test_gate_sends_once_clears_and_reminds() -> None:
    gate = AlertGate(clear_s=60, repeat_s=3600)
    a = Alert("budget", "budget", "warning", "x")
    b = Alert("budget", "budget", "alert", "y")
    assert gate.update([a, a], 0) == [a]  # the same alert twice in one evaluation: once
    assert gate.update([a], 5) == []  # still active: not re-sent
    assert gate.update([a, b], 10) == [b]  # escalation
    assert gate.update([b], 40) == []
    assert gate.update([], 69) == []  # a seen at 10: 59 s ago, not yet cleared
    assert gate.update([a], 69) == []
    assert gate.update([], 130) == []  # a cleared (61 s unseen), b too (90 s)
    assert gate.update([a], 131) == [a]  # back after clearing: sent again
    for t in range(161, 131 + 3600, 30):  # evaluated every 30 s, still active
        assert gate.update([a], float(t)) == [], t
    assert gate.update([a], 131 + 3600) == [a]  # still active after repeat_s: a reminder


def test_gate_memory_is_bounded() -> None:
    gate = AlertGate(max_active=10)
    for i in range(100):
        gate.update([Alert(f"loop{i}", "loop", "warning", "x")], float(i))
    assert len(gate.active) == 10


def test_payload_is_slack_compatible_and_inert() -> None:
    (al,) = collect(None, {"loops": [{"agent": HOSTILE, "kind": "tool", "signature": HOSTILE,
                                      "repeats": 3, "cost_usd": 0.1}]})  # fmt: skip
    body = payload(al, source="test", now=1.0)
    assert isinstance(body["text"], str) and body["text"].startswith(":warning: AUREN warning")
    assert "<!channel>" not in body["text"] and "&lt;!channel&gt;" in body["text"]
    assert "<http" not in body["text"]
    assert "\n" not in body["text"] and "\x1b" not in body["text"]
    assert body["auren"]["kind"] == "loop" and body["auren"]["repeats"] == 3
    assert body["auren"]["agent"].startswith('<!channel> "},{"text":"pwned"}')


# ------------------------------------------------------------------ against a real receiver


def test_alert_fires_once_is_deduplicated_and_retried_after_500(
    receiver: Callable[..., Receiver],
) -> None:
    rx = receiver(fail=1)  # the first POST gets a 500
    sender = fast_sender(rx.url)
    notifier = AlertNotifier(rx.url, source="test", sender=sender)
    over = costs("alert", 2.0)
    assert notifier.evaluate(over, None, 100.0) == 1
    assert notifier.evaluate(over, None, 105.0) == 0  # de-duplicated
    assert sender.join(10)
    docs = rx.docs()
    assert rx.requests == 2 and len(docs) == 1  # one 500, one retry that got through
    assert sender.retries == 1 and sender.sent == 1 and sender.failed == 0
    assert docs[0]["auren"]["kind"] == "budget" and docs[0]["auren"]["level"] == "alert"
    assert docs[0]["auren"]["burn_usd_per_hour"] == 2.0
    assert "over budget" in docs[0]["text"]
    # cleared, then back: a second POST
    notifier.evaluate(costs("ok", 0.1), None, 200.0)
    notifier.evaluate(over, None, 300.0)
    assert sender.join(10) and len(rx.docs()) == 2
    sender.close()


def test_hostile_agent_name_arrives_as_inert_json_text(
    receiver: Callable[..., Receiver],
) -> None:
    rx = receiver()
    sender = fast_sender(rx.url)
    notifier = AlertNotifier(rx.url, source="test", sender=sender)
    now = time.time()
    evs = [tool(HOSTILE, now - 10 + i, name=HOSTILE) for i in range(3)]
    assert notifier.evaluate(None, analyze(evs, now=now), now) == 1
    assert sender.join(10)
    (raw,) = rx.bodies
    doc = json.loads(raw)  # one JSON object, nothing injected beside it
    assert set(doc) == {"text", "auren"}
    assert doc["auren"]["agent"].startswith('<!channel> "},{"text":"pwned"}')
    assert doc["auren"]["kind"] == "loop"
    assert "<!channel>" not in doc["text"] and "\x1b" not in raw.decode()
    sender.close()


def test_gives_up_after_attempts_and_never_blocks(receiver: Callable[..., Receiver]) -> None:
    rx = receiver(fail=100)
    sender = fast_sender(rx.url, attempts=3)
    sender.submit({"text": "x"})
    assert sender.join(10)
    assert (rx.requests, sender.failed, sender.retries, sender.sent) == (3, 1, 2, 0)
    sender.close()
    # a receiver that hangs: submit returns at once, the bounded queue drops the excess
    slow = receiver(delay_s=1.0)
    sender = fast_sender(slow.url, queue_size=2)
    t0 = time.perf_counter()
    results = [sender.submit({"text": str(i)}) for i in range(10)]
    took = time.perf_counter() - t0
    assert took < 0.1, took
    assert results.count(False) == sender.dropped >= 7
    assert sender.join(10) and len(slow.docs()) == 10 - sender.dropped
    sender.close()


def test_unreachable_webhook_is_counted_not_raised() -> None:
    sender = fast_sender("http://127.0.0.1:9/nothing", attempts=2, timeout_s=1.0)
    sender.submit({"text": "x"})
    assert sender.join(10) and sender.failed == 1 and sender.retries == 1
    sender.close()


# ------------------------------------------------------------------ wired into the commands


async def test_serve_ws_posts_budget_and_loop_alerts(
    redis_url: str, stream: str, receiver: Callable[..., Receiver]
) -> None:
    rx = receiver()
    async with running(
        redis_url, stream, budget_usd_per_hour=0.01, analytics_every_s=0.2, alert_webhook=rx.url
    ) as srv:
        now = time.time()
        evs = [llm("coach", now - 5 + i * 0.1) for i in range(10)]
        evs += [tool("coach", now - 1 + i * 0.1) for i in range(3)]
        publish(redis_url, stream, evs)
        deadline = time.monotonic() + 15
        while {d["auren"]["kind"] for d in rx.docs()} < {"budget", "loop"}:
            assert time.monotonic() < deadline, rx.docs()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.6)  # three more analytics runs: nothing re-sent
        kinds = [d["auren"]["kind"] for d in rx.docs()]
        assert kinds.count("budget") == 1 and kinds.count("loop") == 1, kinds
        budget = next(d for d in rx.docs() if d["auren"]["kind"] == "budget")
        assert budget["auren"]["level"] == "alert" and budget["auren"]["source"] == "serve-ws"
        # $0.10 over the burn rate's 60 s minimum span: $6/h against $0.01/h
        assert budget["auren"]["burn_usd_per_hour"] == pytest.approx(6.0, rel=0.01)
        assert srv.notifier is not None and srv.notifier.sender.dropped == 0
        metrics = srv.metrics.render()
        assert "auren_alerts_sent_total 2.0" in metrics
        assert "auren_alerts_dropped_total 0.0" in metrics


async def test_top_worker_posts_alerts_while_no_screen_shows_analytics(
    receiver: Callable[..., Receiver],
) -> None:
    from auren_core.streams.replay import RecordedSource
    from auren_tui.app import make_app

    rx = receiver()
    app = make_app(
        redis_url="redis://unused",
        stream="auren:events",
        source=RecordedSource.of(recorded()),
        clock=frozen_clock,
        budget_usd_per_hour=0.15,
        alert_webhook=rx.url,
    )
    expected = analyze(recorded(), now=FROZEN_NOW, budget_usd_per_hour=0.15)
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 15
        while not any(d["auren"]["kind"] == "loop" for d in rx.docs()):
            assert time.monotonic() < deadline, rx.docs()
            await pilot.pause(0.05)
        from auren_tui.screens.analytics import AnalyticsScreen

        assert not isinstance(app.screen, AnalyticsScreen)  # sent with the screen never open
    loops = [d for d in rx.docs() if d["auren"]["kind"] == "loop"]
    assert len(loops) == len(expected["loops"]) >= 1
    assert any(LOOP_TOOL in (d["auren"]["signature"] or "") for d in loops)
    assert all(d["auren"]["source"] == "auren top" for d in rx.docs())


def test_setting_env_and_bad_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUREN_ALERT_WEBHOOK", "https://hooks.example.com/services/T/B/x")
    assert load_settings().alert_webhook == "https://hooks.example.com/services/T/B/x"
    assert load_settings(alert_webhook="http://127.0.0.1:1/h").alert_webhook == (
        "http://127.0.0.1:1/h"
    )  # the flag beats the environment
    with pytest.raises(ConfigError, match="alert_webhook: must be an http"):
        load_settings(alert_webhook="ftp://example.com/x")


def test_cli_flag_bad_url_is_one_line_error() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for cmd in ("serve-ws", "top"):
        res = subprocess.run(
            [sys.executable, "-m", "auren_tui", cmd, "--alert-webhook", "file:///etc/passwd"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert res.returncode != 0
        lines = [x for x in res.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and "alert_webhook" in lines[0], res.stderr
        assert "Traceback" not in res.stderr
