"""A real Prometheus scrapes a real ``auren serve-ws`` and answers every PromQL expression
of the provisioned Grafana dashboard (deploy/grafana/dashboards/auren.json).

Debian's ``prometheus`` package (``prometheus`` and ``promtool``) is needed; the test skips
saying so where it is not installed (``.ci/run`` installs it where it can)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from auren_core.streams.publisher import Publisher

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "auren.json"
PROM_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DATASOURCE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")

needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="prometheus/promtool not installed (Debian: apt-get install prometheus)",
)

AGENTS = ("neuroscientist", "sleep_specialist", "nutritionist")
MODELS = ("gpt-4o-mini", "claude-3-5-haiku")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


def _wait(url: str, deadline: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"{what} exited {proc.returncode}: {out[-2000:]}")
        with contextlib.suppress(OSError):
            _get(url, 1.0)
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not ready at {url}")


@contextlib.contextmanager
def _process(args: list[str], **kw: Any) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) of every target of the dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            out.append((panel["title"], t["expr"]))
    return out


def as_query(expr: str) -> str:
    """The expression as Grafana sends it with the 'All' agent selection and a 1 s scrape."""
    return expr.replace("$__rate_interval", "15s").replace("$agent", ".*").replace("[1h]", "[5m]")


def publish_round(pub: Publisher, n: int) -> None:
    """One round of known traffic: six LLM calls (one failed), three tool calls, four
    loads per agent (one served by each tier, one miss), a publisher's report of 3 drops."""
    for i, agent in enumerate(AGENTS):
        pub.emit("agent_started", {}, agent=agent, run="run-1")
        for j, model in enumerate(MODELS):
            pub.emit(
                "llm_call",
                {
                    "model": model, "provider": "openai", "input_tokens": 100 + n,
                    "output_tokens": 20 + i, "cached_tokens": 5, "cost_usd": 0.01 * (j + 1),
                    "cost_source": "test", "latency_ms": 300.0 + 100 * i, "ok": not (i == j == 0),
                },
                agent=agent, run="run-1",
            )  # fmt: skip
        pub.emit(
            "tool_used",
            {"tool": "web_search", "duration_ms": 12.0, "ok": i != 1, "cost_usd": 0.002},
            agent=agent,
            run="run-1",
        )
        for tier, lat in (
            ("redis_immediate", {"redis": 0.4}),
            ("postgresql_structured", {"redis": 0.3, "postgresql": 4.0}),
            ("chromadb_semantic", {"redis": 0.3, "postgresql": 3.0, "chromadb": 40.0}),
            ("miss", {"redis": 0.3, "postgresql": 3.0, "chromadb": 35.0}),
        ):
            pub.emit(
                "memory_tier_access",
                {"tier_accessed": tier, "query": f"q{i}", "latency_by_tier": lat,
                 "items_retrieved": 0 if tier == "miss" else 1},
                agent=agent, run="run-1",
            )  # fmt: skip
    pub.emit("publisher_stats", {"sent": 100, "dropped": 3, "queued": 0, "publisher": "p1"})
    assert pub.flush(5.0)


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    doc = json.loads(_get(url, 5.0))
    assert doc["status"] == "success", doc
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def finite(result: list[dict[str, Any]]) -> list[float]:
    vals = [float(r["value"][1]) for r in result]
    return [v for v in vals if not math.isnan(v) and not math.isinf(v)]


def test_dashboard_and_provisioning_files_are_consistent() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ds = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    assert ds["type"] == "prometheus"
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == ds["uid"], panel["title"]
    text = " ".join(e for _, e in exprs)
    for metric in (
        "auren_llm_tokens_total", "auren_llm_cost_usd_total", "auren_llm_calls_total",
        "auren_llm_errors_total", "auren_tool_calls_total", "auren_tier_lookups_total",
        "auren_tier_hits_total", "auren_tier_latency_seconds_bucket", "auren_active_agents",
        "auren_stream_lag_entries", "auren_publisher_dropped",
    ):  # fmt: skip
        assert metric in text, metric
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"prometheus", "grafana"} <= set(compose)
    targets = yaml.safe_load(PROM_CONFIG.read_text())["scrape_configs"][0]["static_configs"]
    assert targets[0]["targets"] == ["auren-ws:8765"]  # the compose service name and port


@needs_prometheus
def test_promtool_checks_the_shipped_config() -> None:
    assert PROMTOOL is not None
    res = subprocess.run(
        [PROMTOOL, "check", "config", str(PROM_CONFIG)], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stdout + res.stderr


@contextlib.contextmanager
def scraped_serve_ws(
    redis_url: str, stream: str, tmp_path: Path, deadline: float
) -> Iterator[tuple[str, int]]:
    """A real ``auren serve-ws`` on ``stream`` and a real Prometheus scraping it every second
    with the shipped scrape config; yields (Prometheus URL, serve-ws port) once both answer."""
    assert PROMETHEUS is not None and PROMTOOL is not None
    ws_port, prom_port = _free_port(), _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    serve = [
        sys.executable, "-m", "auren_tui", "serve-ws", "--auth", "none", "--port", str(ws_port),
        "--redis-url", redis_url, "--stream", stream,
    ]  # fmt: skip
    # the shipped scrape config, aimed at this serve-ws and scraping every second
    cfg = yaml.safe_load(PROM_CONFIG.read_text())
    cfg["global"]["scrape_interval"] = cfg["global"]["evaluation_interval"] = "1s"
    job = cfg["scrape_configs"][0]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["static_configs"][0]["targets"] = [f"127.0.0.1:{ws_port}"]
    conf = tmp_path / "prometheus.yml"
    conf.write_text(yaml.safe_dump(cfg))
    check = subprocess.run([PROMTOOL, "check", "config", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    prom_args = [
        PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
    ]  # fmt: skip
    prom = f"http://127.0.0.1:{prom_port}"
    with _process(serve, env=env) as ws, _process(prom_args) as pp:
        _wait(f"http://127.0.0.1:{ws_port}/healthz", deadline, "auren serve-ws", ws)
        _wait(f"{prom}/-/ready", deadline, "prometheus", pp)
        health = json.loads(_get(f"http://127.0.0.1:{ws_port}/healthz"))
        while not health.get("ready") and time.monotonic() < deadline:
            time.sleep(0.1)
            health = json.loads(_get(f"http://127.0.0.1:{ws_port}/healthz"))
        yield prom, ws_port


def dashboard_without_data(prom: str, deadline: float, alive: Callable[[], None]) -> dict[str, str]:
    """Poll every dashboard expression until each returns a finite value (or the deadline);
    what still has none, expression -> panel title."""
    missing: dict[str, str] = {}
    while time.monotonic() < deadline:
        alive()
        missing = {}
        for title, expr in dashboard_exprs():
            if not finite(query(prom, as_query(expr))):
                missing[expr] = title
        if not missing:
            break
        time.sleep(0.5)
    return missing


@needs_prometheus
def test_real_prometheus_answers_every_dashboard_query(
    redis_url: str, stream: str, tmp_path: Path
) -> None:
    t_start = time.monotonic()
    deadline = t_start + 50
    with scraped_serve_ws(redis_url, stream, tmp_path, deadline) as (prom, ws_port):
        # steady traffic (a round every 0.7 s, as the demo's) while the dashboard is queried:
        # a rate over the last seconds, and a ratio of two, has data to show
        pub = Publisher(redis_url, stream, stats_interval=3600)
        stop, rounds = threading.Event(), [0]

        def feed() -> None:
            while not stop.is_set():
                publish_round(pub, rounds[0])
                rounds[0] += 1
                stop.wait(0.7)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            missing = dashboard_without_data(prom, deadline, lambda: None)
            assert not missing, f"dashboard queries without data: {missing}"
        finally:
            stop.set()
            feeder.join(10)
            pub.close(2.0)
        n = rounds[0]
        assert n >= 2
        # promtool check metrics on the live exposition (lint: names, units, help)
        body = _get(f"http://127.0.0.1:{ws_port}/metrics")
        lint = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True)
        assert lint.returncode == 0, (lint.stdout + lint.stderr).decode()

        # and the figures are the events': agents, models, tiers, the publisher's drops
        def q(e: str) -> dict[tuple[tuple[str, str], ...], float]:
            return {
                tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in query(prom, e)
            }

        calls = 3.0 * n * len(MODELS)  # three agents, each calling every model, per round

        def all_scraped() -> bool:  # the last round's calls and loads
            return q("sum(auren_llm_calls_total)") == {(): calls} and q(
                "sum(auren_tier_hits_total)"
            ) == {(): 9.0 * n}

        while not all_scraped() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert q("sum(auren_llm_calls_total)") == {(): calls}
        agents = {dict(k).get("agent") for k in q("sum by (agent) (auren_llm_calls_total)")}
        assert agents == set(AGENTS)
        models = {dict(k).get("model") for k in q("sum by (model) (auren_llm_calls_total)")}
        assert models == set(MODELS)
        assert q("sum(auren_llm_errors_total)") == {(): float(n)}
        assert q("max(auren_publisher_dropped)") == {(): 3.0}
        assert q("max(auren_active_agents)") == {(): float(len(AGENTS))}
        hits = {dict(k)["tier"]: v for k, v in q("sum by (tier) (auren_tier_hits_total)").items()}
        assert hits == {"redis": 3.0 * n, "postgresql": 3.0 * n, "chromadb": 3.0 * n}
        cost = sum(q("sum(auren_llm_cost_usd_total)").values())
        assert cost == pytest.approx(n * len(AGENTS) * 0.03)
    assert time.monotonic() - t_start < 60


@needs_prometheus
def test_real_prometheus_on_demo_traffic(redis_url: str, stream: str, tmp_path: Path) -> None:
    """The issue's own check: ``auren demo`` (a real crew on the scripted LLM) publishes, a
    real Prometheus scrapes serve-ws, and every expression of the dashboard has data, also
    the error ones on traffic where nothing failed (their series exist at 0 from the first
    call) and the tier shares and latency quantiles."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), HOME=str(home), CREWAI_DISABLE_TELEMETRY="true",
        AUREN_REDIS_URL=redis_url, AUREN_STREAM=stream,
    )  # fmt: skip
    env.pop("CREWAI_TESTING", None)
    demo_args = [
        sys.executable, "-m", "auren_tui", "demo", "--headless", "--rate", "10",
        "--duration", "90s", "--redis-url", redis_url, "--stream", stream,
    ]  # fmt: skip
    deadline = time.monotonic() + 80
    with (
        scraped_serve_ws(redis_url, stream, tmp_path, deadline) as (prom, _),
        _process(demo_args, env=env) as demo,
    ):

        def alive() -> None:
            if demo.poll() is not None:
                out = demo.stdout.read().decode(errors="replace") if demo.stdout else ""
                raise AssertionError(f"demo exited {demo.returncode}: {out[-2000:]}")

        missing = dashboard_without_data(prom, deadline, alive)
        assert not missing, f"dashboard queries without data on demo traffic: {missing}"
        # the figures are the demo's: its agents called LLMs, its loads were served by tiers
        agents = {
            r["metric"]["agent"] for r in query(prom, "sum by (agent) (auren_llm_calls_total)")
        }
        assert {"neuroscientist", "sleep_specialist", "nutritionist"} <= agents, agents
        tiers = {r["metric"]["tier"] for r in query(prom, "auren_tier_hits_total > 0")}
        assert "redis" in tiers, tiers
