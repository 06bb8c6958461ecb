"""First run (issue 16, item 10): `make demo` shows its progress and builds with a setuptools
that accepts the pyproject; the demo's closing line counts failures from its events; CSV
`--report all` writes one file per report; every user mistake is one line naming the value."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest
import redis
from packaging.specifiers import SpecifierSet

from auren_core.events import Event, decode
from auren_tui.cli import main

ROOT = Path(__file__).resolve().parents[2]
AUREN = [sys.executable, "-m", "auren_tui"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUREN_")}
    env.update(
        AUREN_DATA_DIR=str(tmp_path / "data"),
        AUREN_PROBE_LOCAL="false",
        AUREN_CONFIG=str(tmp_path / "none.toml"),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


# --------------------------------------------------------------------------- install


def test_pyproject_builds_without_a_setuptools_error_block() -> None:
    """``license = "Apache-2.0"`` (an SPDX string, PEP 639) needs setuptools 77+; 69-76
    print a ~90-line configuration block and fail. The build requirement must exclude them."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(meta["project"]["license"], str)
    req = next(r for r in meta["build-system"]["requires"] if r.startswith("setuptools"))
    spec = SpecifierSet(req.removeprefix("setuptools"))
    assert not spec.contains("76.1.0") and not spec.contains("69.5.1")
    assert spec.contains("77.0.3")
    # no License classifier next to the SPDX string (setuptools 77+ warns about that)
    assert not any("License ::" in c for c in meta["project"].get("classifiers", []))


def test_make_install_shows_progress() -> None:
    """Each install step says one line, and the long install shows pip's own progress
    (no ``-q`` on the project install: it ran silent for about 80 s)."""
    mk = (ROOT / "Makefile").read_text()
    recipe = mk.split("$(STAMP): pyproject.toml", 1)[1].split("\n\n", 1)[0]
    install = [ln for ln in recipe.splitlines() if "pip install" in ln and "-e" in ln]
    assert install and all(" -q" not in ln for ln in install), install
    steps = [ln for ln in recipe.splitlines() if "echo" in ln and "[" in ln]
    assert len(steps) >= 3, recipe
    dry = subprocess.run(
        ["make", "-n", "-B", "-f", str(ROOT / "Makefile"), ".venv/.installed"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "[3/3]" in dry.stdout


# --------------------------------------------------------------------------- one-line mistakes


@pytest.mark.parametrize(
    ("argv", "given"),
    [
        (["demo", "--rate", "-5"], "-5"),
        (["demo", "--rate=-5"], "-5"),
        (["demo", "--rate", "abc"], "abc"),
        (["demo", "--bogus"], "--bogus"),
        (["nosuchcommand"], "nosuchcommand"),
        (["export", "--format", "xlsx"], "xlsx"),
        (["embedded", "restart"], "restart"),
    ],
)
def test_every_usage_mistake_is_one_line_naming_the_value(
    argv: list[str], given: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("auren: "), err
    assert given in err and "Usage:" not in err


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("127.0.0.1:6379", "'127.0.0.1:6379'"),
        ("localhost", "'localhost'"),
        ("http://user:s3cret@host:6379", "'http://user:***@host:6379'"),
    ],
)
def test_bad_redis_url_names_the_value(tmp_path: Path, value: str, shown: str) -> None:
    p = subprocess.run(
        [*AUREN, "top", "--once", "--json"],
        env=_env(tmp_path, AUREN_REDIS_URL=value),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1, p.stderr
    assert f"(got {shown})" in p.stderr and "got ''" not in p.stderr
    assert "s3cret" not in p.stderr


# --------------------------------------------------------------------------- export


def test_csv_report_all_writes_one_file_per_report(redis_url: str, stream: str,
                                                   tmp_path: Path) -> None:  # fmt: skip
    from auren_core.events import encode, make_event
    from auren_core.export import ALL, build_reports, render

    r = redis.Redis.from_url(redis_url)
    events = [
        make_event("llm_call", {"model": "gpt-4o-mini", "input_tokens": 3, "output_tokens": 2,
                                "ok": True}, agent=f"a{i % 3}", run="r1")
        for i in range(12)
    ]
    for e in events:
        r.xadd(stream, {"e": encode(e)})
    common = ["--redis-url", redis_url, "--stream", stream, "--source", "stream", "--since", "1h"]
    env = _env(tmp_path)

    def auren(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*AUREN, "export", *args, *common], env=env, capture_output=True,
                              timeout=60)  # fmt: skip

    out = tmp_path / "reports"
    p = auren("--format", "csv", "--report", "all", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in out.iterdir()) == sorted(f"{n}.csv" for n in ALL)
    tables = build_reports(events, ["all"])
    for name, rows in tables.items():
        body = (out / f"{name}.csv").read_bytes()
        assert body == render({name: rows}, "csv")
        assert b"# report:" not in body  # one table per file
    # to stdout, or to one file: refused in one line, before any output
    for args in ([], ["-o", str(tmp_path / "all.csv")]):
        bad = auren("--format", "csv", "--report", "all", *args)
        assert bad.returncode == 2 and bad.stdout == b""
        assert bad.stderr.count(b"\n") == 1 and b"one CSV file per report" in bad.stderr
    assert not (tmp_path / "all.csv").exists()
    # json and jsonl keep every report in one document
    js = auren("--format", "json", "--report", "all")
    assert js.returncode == 0 and set(__import__("json").loads(js.stdout)) == set(ALL)
    jl = auren("--format", "jsonl", "--report", "all")
    assert jl.returncode == 0 and jl.stdout.count(b"\n") > 0
    one = auren("--format", "csv", "--report", "tokens")
    assert one.returncode == 0 and one.stdout == render({"tokens": tables["tokens"]}, "csv")


# --------------------------------------------------------------------------- the demo


@pytest.mark.slow
def test_demo_closing_line_counts_failures_from_its_events(
    redis_url: str, pg_dsn: str, tmp_path: Path
) -> None:
    """The scripted failures (query 5 of every 11) fail a specialist, not the crew: the
    closing line said "0 ended in an error" while the dashboard showed failed agents."""
    stream = f"auren:test:demo-{uuid.uuid4().hex[:8]}"
    env = _env(tmp_path, AUREN_CHROMA_PATH=str(tmp_path / "chroma"))
    env.pop("CREWAI_TESTING", None)
    try:
        p = subprocess.run(
            [*AUREN, "demo", "--headless", "--duration", "25", "--rate", "10",
             "--redis-url", redis_url, "--stream", stream, "--pg-dsn", pg_dsn],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
        last = p.stderr.strip().splitlines()[-1]
        m = re.search(
            r"(\d+) user queries, (\d+) with a failure: (\d+) agent failures, "
            r"(\d+) failed LLM calls, (\d+) failed tool calls",
            last,
        )
        assert m, last
        queries, runs, agents, llm, tools = map(int, m.groups())
        evs = [decode(f[b"e"]) for _, f in redis.Redis.from_url(redis_url).xrange(stream)]
        evs = [e for e in evs if isinstance(e, Event)]
        failed_agents = [e for e in evs if e.type == "agent_failed"]
        failed_llm = [e for e in evs if e.type == "llm_call" and e.payload.get("ok") is False]
        failed_tools = [e for e in evs if e.type == "tool_used" and e.payload.get("ok") is False]
        assert queries >= 6 and agents > 0, last  # query 5 fails by the traffic plan
        assert agents == len(failed_agents) and llm == len(failed_llm)
        assert tools == len(failed_tools)
        assert runs == len({e.run for e in failed_agents + failed_llm + failed_tools})
        assert "keep running" not in last  # nothing embedded here: nothing to stop
    finally:
        redis.Redis.from_url(redis_url).delete(stream)


def test_demo_closing_line_says_embedded_servers_keep_running() -> None:
    from auren_core.backends import Backend
    from auren_tui.commands.demo import _still_running

    line = _still_running(
        Backend("redis", "redis://127.0.0.1:41234/0", "embedded"),
        Backend("postgresql", "postgresql://postgres@127.0.0.1:5432/test", "configured"),
    )
    assert "Valkey (port 41234)" in line and "keep running" in line
    assert "auren embedded stop" in line and "PostgreSQL" not in line
    assert _still_running(Backend("redis", "redis://h:6379/0", "configured")) == ""
