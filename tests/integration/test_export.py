"""Export: golden files per report and format, formula neutralising, JSON round trips,
hostile filter values, and the CLI against the real stream and event store."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
import redis

from auren_core import rules
from auren_core.events import Event, Malformed, encode, make_event
from auren_core.export import REPORTS, build_reports, neutralise, render

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parents[1] / "golden"
UPDATE = os.environ.get("AUREN_UPDATE_GOLDEN") == "1"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOSTILE = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]
SQLISH = "x'; DROP TABLE events; --"


def history(t0: float = T0) -> list[Event]:
    """A small fixed history touching every report, with hostile names in it."""
    e: list[Event] = []

    def add(
        type: str, payload: dict[str, Any], agent: str | None, run: str | None, dt: float
    ) -> None:
        e.append(make_event(type, payload, agent=agent, run=run, ts=t0 + dt))

    for i, run in enumerate(("run-a", "run-b", "run-c")):
        base = i * 50000.0
        add("crew_started", {"inputs": {"query": f"how do I sleep better #{i}"}}, None, run, base)
        add("llm_call", {"model": "gpt-4o-mini", "input_tokens": 400 + i, "output_tokens": 120,
                         "cached_tokens": 10, "cost_usd": 0.000132}, "neuroscientist", run,
            base + 1)  # fmt: skip
        add("llm_call", {"model": "gpt-4o", "input_tokens": 900, "output_tokens": 40,
                         "cost_usd": 0.00265}, "sleep_specialist", run, base + 2)  # fmt: skip
        add("llm_call", {"model": "local-llm", "input_tokens": 50, "output_tokens": 5,
                         "cost_usd": None}, "nutritionist", run, base + 3)  # fmt: skip
        add("tool_used", {"tool": "web_search", "duration_ms": 120.0, "cost_usd": 0.005},
            "neuroscientist", run, base + 4)  # fmt: skip
        add("collaboration", {"to_agent": "sleep_specialist", "kind": "delegate"},
            "neuroscientist", run, base + 5)  # fmt: skip
        add("memory_tier_access", {"tier_accessed": "redis_immediate", "query": "sleep stages",
            "latency_by_tier": {"redis": 0.5 + i}, "items_retrieved": 2}, "neuroscientist", run,
            base + 6)  # fmt: skip
        add("memory_tier_access", {"tier_accessed": "chromadb_semantic", "query": "rem latency",
            "latency_by_tier": {"redis": 0.4, "postgresql": 3.0, "chromadb": 40.0 + i},
            "items_retrieved": 3}, "sleep_specialist", run, base + 7)  # fmt: skip
        add("memory_tier_access", {"tier_accessed": "miss", "query": "melatonin dosage",
            "latency_by_tier": {"redis": 0.3, "postgresql": 2.0, "chromadb": 35.0}},
            "nutritionist", run, base + 8)  # fmt: skip
        add("knowledge_access", {"item": "circadian.md", "source": "chromadb"},
            "neuroscientist", run, base + 9)  # fmt: skip
        add("crew_completed", {"ok": i != 2}, None, run, base + 10)
    for j, name in enumerate(HOSTILE):  # hostile agent names and tool names
        add("llm_call", {"model": name, "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.001},
            name, "run-x", 120000 + j)  # fmt: skip
        add("tool_used", {"tool": name, "cost_usd": 0.0}, name, "run-x", 120000 + j)
    add("llm_call", {"model": "m", "input_tokens": 7, "output_tokens": 7, "cost_usd": 0.5},
        SQLISH, "run-x", 120100)  # fmt: skip
    flows(add)
    return e


def flows(add: Any) -> None:
    """Flow runs: two completed (one with a human wait), one failed, one still waiting;
    a hostile flow name and step; events of one run out of order."""
    for k, (run, dur) in enumerate((("fl-1", 30000.0), ("fl-2", 50000.0))):
        base = 130000.0 + k * 1000
        add("flow_started", {"flow": "PlanFlow"}, None, run, base)
        add("flow_step", {"flow": "PlanFlow", "method": "draft", "phase": "started"}, None,
            run, base + 1)  # fmt: skip
        add("flow_step", {"flow": "PlanFlow", "method": "draft", "phase": "completed",
            "duration_ms": 10000.0 * (k + 1), "ok": True}, None, run, base + 11)  # fmt: skip
        if k == 1:
            add("flow_step", {"flow": "PlanFlow", "method": "review", "phase": "started"},
                None, run, base + 12)  # fmt: skip
            add("flow_step", {"flow": "PlanFlow", "method": "review", "phase": "paused"},
                None, run, base + 13)  # fmt: skip
            add("human_input", {"state": "requested", "flow": "PlanFlow", "method": "review",
                "message": "ok?"}, None, run, base + 13)  # fmt: skip
            add("human_input", {"state": "received", "flow": "PlanFlow", "method": "review",
                "wait_ms": 20000.0}, None, run, base + 33)  # fmt: skip
            add("flow_step", {"flow": "PlanFlow", "method": "review", "phase": "completed",
                "duration_ms": 22000.0}, None, run, base + 35)  # fmt: skip
        add("flow_completed", {"flow": "PlanFlow", "duration_ms": dur}, None, run, base + 50)
    # failed, its events out of order (the end first)
    add("flow_failed", {"flow": "PlanFlow", "duration_ms": 5000.0, "ok": False,
        "error": "boom"}, None, "fl-3", 133005)  # fmt: skip
    add("flow_step", {"flow": "PlanFlow", "method": "draft", "phase": "failed",
        "duration_ms": 4000.0, "ok": False}, None, "fl-3", 133004)  # fmt: skip
    add("flow_step", {"flow": "PlanFlow", "method": "draft", "phase": "started"}, None, "fl-3",
        133000)  # fmt: skip
    add("flow_started", {"flow": "PlanFlow"}, None, "fl-3", 133000)
    # still waiting at the end; a hostile flow and step name
    add("flow_started", {"flow": HOSTILE[0]}, None, "fl-4", 134000)
    add("flow_step", {"flow": HOSTILE[0], "method": HOSTILE[1], "phase": "started"}, None,
        "fl-4", 134001)  # fmt: skip
    add("human_input", {"state": "requested", "flow": HOSTILE[0], "method": HOSTILE[1]}, None,
        "fl-4", 134002)  # fmt: skip


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
@pytest.mark.parametrize("report", [*REPORTS, "all"])
def test_golden_files(report: str, fmt: str) -> None:
    data = render(build_reports(history(), [report]), fmt)
    path = GOLDEN / f"export_{report}.{fmt}"
    if UPDATE or not path.exists():
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(data)
        if not UPDATE:
            pytest.fail(f"golden file {path.name} was missing; written - review and commit it")
    assert data == path.read_bytes()


def test_tokens_report_columns_and_figures() -> None:
    rows = build_reports(history(), ["tokens"])["tokens"]
    assert list(rows[0])[:5] == ["agent", "day", "llm_calls", "input_tokens", "output_tokens"]
    neuro = [r for r in rows if r["agent"] == "neuroscientist"]
    assert [r["day"] for r in neuro] == ["2026-01-01", "2026-01-02"]  # runs a, b | run c
    assert [r["input_tokens"] for r in neuro] == [400 + 401, 402]
    # the tokens report's cost is the LLM calls' alone (llm_cost_usd; tools are in costs)
    assert [r["llm_cost_usd"] for r in neuro] == [0.000264, 0.000132]
    assert "cost_usd" not in rows[0]
    nutri = next(r for r in rows if r["day"] == "2026-01-01" and r["agent"] == "nutritionist")
    assert nutri["unpriced_calls"] == 2 and nutri["llm_cost_usd"] is None  # unknown, not 0 USD
    # the costs report's cost_usd for the same agent is LLM + tools + memory
    costs = build_reports(history(), ["costs"])["costs"]
    agent = next(r for r in costs if r["dimension"] == "agent" and r["key"] == "neuroscientist")
    assert agent["llm_cost_usd"] == pytest.approx(3 * 0.000132)
    assert agent["tool_cost_usd"] == pytest.approx(3 * 0.005)
    assert agent["cost_usd"] == pytest.approx(3 * 0.000132 + 3 * 0.005)
    assert (agent["llm_calls"], agent["tool_calls"]) == (3, 3)


def test_csv_neutralises_formulas_and_keeps_everything_else() -> None:
    tables = build_reports(history(), ["costs", "tokens"])
    text = render(tables, "csv").decode()
    cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
    for bad in HOSTILE:
        assert bad not in cells  # never raw
        assert "'" + bad in cells  # ... but present, quoted
    assert neutralise(-3) == -3 and neutralise("plain") == "plain"
    assert neutralise("=1") == "'=1"
    # numbers stay numbers (a negative number is not a formula)
    assert "0.5" in cells


def test_flows_report_uses_the_reducers_definitions() -> None:
    from auren_core.state import Reducer

    rows = build_reports(history(), ["flows"])["flows"]
    plan = next(r for r in rows if r["level"] == "flow" and r["flow"] == "PlanFlow")
    assert (plan["runs"], plan["completed"], plan["failed"], plan["unfinished"]) == (3, 2, 1, 0)
    assert plan["mean_duration_ms"] == pytest.approx((30000 + 50000 + 5000) / 3, abs=1e-3)
    # the one percentile method (auren_core.rules): nearest rank over 5 % log bins
    assert plan["p95_duration_ms"] == pytest.approx(50000.0, rel=0.025)
    assert plan["p95_duration_ms"] == round(rules.percentiles([30000, 50000, 5000], (0.95,))[0], 3)
    assert (plan["steps_completed"], plan["steps_failed"]) == (3, 1)
    assert (plan["human_waits"], plan["mean_wait_ms"]) == (1, 20000.0)
    steps = {r["step"]: r for r in rows if r["level"] == "step" and r["flow"] == "PlanFlow"}
    assert list(steps) == ["draft", "review"]  # the order they first ran
    draft, review = steps["draft"], steps["review"]
    assert (draft["runs"], draft["completed"], draft["failed"]) == (3, 2, 1)
    assert draft["mean_duration_ms"] == pytest.approx((10000 + 20000 + 4000) / 3, abs=1e-3)
    assert (review["runs"], review["human_waits"], review["mean_wait_ms"]) == (1, 1, 20000.0)
    waiting = next(r for r in rows if r["level"] == "flow" and r["flow"] == HOSTILE[0])
    assert (waiting["unfinished"], waiting["human_waits"], waiting["mean_duration_ms"]) == (
        1,
        1,
        None,
    )
    # the same events through the reducer: the same outcomes and durations
    red = Reducer(clock=lambda: T0 + 134100, window_s=30 * 86400)
    red.apply_batch(history())
    by_run = {f.run: f for f in red.state().flows}
    assert {r: by_run[r].status for r in ("fl-1", "fl-2", "fl-3", "fl-4")} == {
        "fl-1": "completed",
        "fl-2": "completed",
        "fl-3": "failed",
        "fl-4": "waiting_human",
    }
    assert [by_run[r].duration_ms for r in ("fl-1", "fl-2", "fl-3")] == [30000, 50000, 5000]
    # CSV: the hostile flow and step names are neutralised
    cells = [c for row in csv.reader(io.StringIO(render({"flows": rows}, "csv").decode()))
             for c in row]  # fmt: skip
    assert "'" + HOSTILE[0] in cells and "'" + HOSTILE[1] in cells
    assert HOSTILE[0] not in cells and HOSTILE[1] not in cells


def test_json_and_jsonl_round_trip_exactly() -> None:
    tables = build_reports(history(), ["all"])
    assert json.loads(render(tables, "json")) == tables
    back: dict[str, list[dict[str, Any]]] = {name: [] for name in tables}
    for line in render(tables, "jsonl").splitlines():
        row = json.loads(line)
        back[row.pop("report")].append(row)
    assert back == tables


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown report"):
        build_reports([], ["tokens; DROP"])
    with pytest.raises(ValueError, match="unknown format"):
        render({}, "xlsx")
    # malformed entries are skipped, never fatal
    assert build_reports([Malformed("1-0", "bad")], ["tokens"]) == {"tokens": []}


def test_export_decodes_like_every_reader_and_counts_by_the_rules() -> None:
    """Entries are decoded and validated as ``auren top`` decodes them: a wrongly typed
    payload is a malformed entry in both, never a row. In-process events with odd values are
    counted by :mod:`auren_core.rules`, as the reducer counts them."""
    from auren_core.events import decode

    raws: list[bytes | None] = [
        b"not json", None, b"x" * 2_000_000, b'{"v":2,"id":"a","ts":1,"type":"llm_call"}',
        b'{"v":1,"id":"a","ts":1767225600,"type":"llm_call","agent":"a","payload":'
        b'{"model":["x"],"input_tokens":"9","output_tokens":true,"cost_usd":"free"}}',
        b'{"v":1,"id":"b","ts":1767225600,"type":"tool_used","agent":"a","payload":'
        b'{"tool":{"n":1},"cost_usd":0.5}}',
        b'{"v":1,"id":"c","ts":1767225600,"type":"memory_tier_access","payload":'
        b'{"tier_accessed":7,"latency_by_tier":[1],"query":{"q":1}}}',
    ]  # fmt: skip
    items = [decode(r, f"{i}-0") for i, r in enumerate(raws)]
    assert [type(i).__name__ for i in items] == ["Malformed"] * len(raws)
    tables = build_reports(items, ["tokens", "costs", "tiers"])
    assert tables["tokens"] == [] and tables["costs"] == []
    assert sum(r["served"] for r in tables["tiers"]) == 0
    # handed over in process: odd values follow the rules (strings, bools, negatives: 0)
    odd = [
        make_event("llm_call", {"model": ["x"], "input_tokens": "9", "output_tokens": True,
                                "cached_tokens": -5, "reasoning_tokens": 7.9,
                                "cost_usd": "free"}, agent="a", ts=T0),
        make_event("tool_used", {"tool": {"n": 1}, "cost_usd": -0.5}, agent="a", ts=T0),
    ]  # fmt: skip
    tables = build_reports(odd, ["all"], tool_costs={"{'n': 1}": 0.25})
    (tok,) = tables["tokens"]
    assert (tok["input_tokens"], tok["output_tokens"], tok["cached_tokens"]) == (0, 0, 0)
    assert (tok["reasoning_tokens"], tok["llm_cost_usd"], tok["unpriced_calls"]) == (7, None, 1)
    tool = next(r for r in tables["costs"] if r["dimension"] == "tool")
    assert (tool["key"], tool["cost_usd"]) == ("{'n': 1}", 0.25)  # invalid cost: the price
    assert json.loads(render(tables, "json")) == tables


# --------------------------------------------------------------------------- CLI, real backends
def _auren(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "auren_tui", *args], cwd=ROOT, capture_output=True, timeout=120,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.fixture
def recent(redis_url: str, stream: str) -> list[Event]:
    """The history, shifted to the last hours, in the real stream."""
    evs = history(time.time() - 2 * 86400 + 3600)
    evs = [e for e in evs if e.ts < time.time()]
    r = redis.Redis.from_url(redis_url)
    for e in evs:
        r.xadd(stream, {"e": encode(e)})
    return evs


def test_cli_stream_export_matches_the_library_and_sql_filters_change_nothing(
    redis_url: str, stream: str, recent: list[Event], tmp_path: Path
) -> None:
    out = tmp_path / "all.json"
    common = ["--redis-url", redis_url, "--stream", stream, "--since", "3d", "--source", "stream"]
    p = _auren("export", "--format", "json", "-o", str(out), *common)
    assert p.returncode == 0, p.stderr
    assert b"backends: redis" in p.stderr
    assert json.loads(out.read_bytes()) == build_reports(recent, ["all"])
    p2 = _auren("export", "--format", "json", "--agent", SQLISH, "--report", "tokens", *common)
    assert p2.returncode == 0, p2.stderr
    (row,) = json.loads(p2.stdout)["tokens"]  # the odd name is just a name
    assert row["agent"] == SQLISH
    p3 = _auren("export", "--format", "csv", "--report", "tokens", *common)
    assert p3.stdout == render(build_reports(recent, ["tokens"]), "csv")
    bad = _auren("export", "--format", "xlsx", *common)
    assert bad.returncode == 2 and bad.stderr.count(b"\n") == 1


def test_cli_pg_export_with_hostile_filters(
    pg_dsn: str, schema: str, recent: list[Event], tmp_path: Path
) -> None:
    from auren_core.store import ensure_schema
    from auren_core.store.writer import Writer

    async def load() -> None:
        c = await asyncpg.connect(pg_dsn)
        await ensure_schema(c, schema)
        items = [msgspec.structs.replace(e, sid=f"{i + 1}-0") for i, e in enumerate(recent)]
        await Writer(c, schema).write(items)
        await c.close()

    asyncio.run(load())
    common = ["--pg-dsn", pg_dsn, "--schema", schema, "--since", "3d", "--source", "pg"]
    before = _auren("export", "--format", "json", *common)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout) == build_reports(recent, ["all"])
    for hostile in (SQLISH, "' OR '1'='1", 'x"; DELETE FROM events; --'):
        p = _auren("export", "--format", "json", "--agent", hostile, "--report", "tokens", *common)
        assert p.returncode == 0, p.stderr
        rows = json.loads(p.stdout)["tokens"]
        assert all(r["agent"] == hostile for r in rows)
    after = _auren("export", "--format", "json", *common)
    assert after.stdout == before.stdout  # nothing was dropped or deleted


def test_cli_output_to_a_fifo_is_written_in_place_and_bad_paths_are_one_line(
    redis_url: str, stream: str, recent: list[Event], tmp_path: Path
) -> None:
    """A special file (like /dev/null) must be written to, never replaced by a regular file."""
    import stat
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    common = ["--redis-url", redis_url, "--stream", stream, "--since", "3d", "--source", "stream"]
    p = _auren("export", "--report", "tokens", "-o", str(fifo), *common)
    reader.join(30)
    assert p.returncode == 0, p.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert got == [render(build_reports(recent, ["tokens"]), "csv")]
    bad = _auren("export", "--report", "tokens", "-o", str(tmp_path / "missing" / "x.csv"),
                 *common)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count(b"\n") == 2  # backends line + the error
    assert b"cannot write" in bad.stderr


def test_cli_pg_export_reaches_back_through_daily_rollups(pg_dsn: str, schema: str) -> None:
    """Detailed events older than the retention window are gone; tokens and costs for
    those days still come out of the daily rollups, with the same figures."""
    from auren_core.store import RetentionPolicy, ensure_schema, maintain
    from auren_core.store.writer import Writer

    now = time.time()
    evs = [
        msgspec.structs.replace(
            make_event("llm_call", {"model": f"m{d % 2}", "input_tokens": 10 * d + k,
                                    "output_tokens": d, "cost_usd": 0.001 * (k + 1)},
                       agent=f"a{k % 2}", run=f"r{d}", ts=now - d * 86400 - k),
            sid=f"{d + 1}-{k}",
        )
        for d in range(10)
        for k in range(4)
    ]  # fmt: skip

    async def load() -> None:
        c = await asyncpg.connect(pg_dsn)
        await ensure_schema(c, schema)
        await Writer(c, schema).write(evs)
        res = await maintain(c, schema, now=now, policy=RetentionPolicy(detail_days=3))
        assert res is not None and len(res.dropped_events) >= 6
        await c.close()

    asyncio.run(load())
    p = _auren("export", "--format", "json", "--report", "tokens", "--since", "11d",
               "--source", "pg", "--pg-dsn", pg_dsn, "--schema", schema)  # fmt: skip
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)["tokens"]
    want = build_reports(evs, ["tokens"])["tokens"]
    key = ("agent", "day", "llm_calls", "input_tokens", "output_tokens")
    assert [tuple(r[k] for k in key) for r in got] == [tuple(r[k] for k in key) for r in want]
    assert [r["llm_cost_usd"] for r in got] == pytest.approx([r["llm_cost_usd"] for r in want])
    assert len({r["day"] for r in got}) >= 10


def test_failed_call_without_usage_is_not_unpriced() -> None:
    """Same rule as the dashboard's reducer: no tokens used on a failed call costs nothing."""
    from auren_core.events import make_event
    from auren_core.export import build_reports

    ts = 1_800_000_000.0
    evs = [
        make_event(
            "llm_call",
            {
                "model": "gpt-4o-mini",
                "input_tokens": 0,
                "output_tokens": 0,
                "cost_usd": None,
                "ok": False,
            },
            agent="a",
            ts=ts,
        ),
        make_event(
            "llm_call",
            {
                "model": "mystery",
                "input_tokens": 9,
                "output_tokens": 1,
                "cost_usd": None,
                "ok": True,
            },
            agent="a",
            ts=ts,
        ),
    ]
    (row,) = build_reports(evs, ["tokens"])["tokens"]
    assert row["llm_calls"] == 2 and row["unpriced_calls"] == 1
