"""One duration grammar for every flag (auren_core.durations), and the one-line error a
bad value gets from every command that takes one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from auren_core.durations import MAX_S, DurationError, parse_duration

AUREN = [sys.executable, "-m", "auren_tui"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("2.5", 2.5),
        ("90s", 90.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2d", 172800.0),
        ("1w2d", 777600.0),
        ("1d2h3m4s", 93784.0),
        (" 24H ", 86400.0),
    ],
)
def test_the_grammar(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", " ", "soon", "1y", "-5", "+5", "1e3", "inf", "nan", "1h-", "h", ".5", "5.", "30m1h",
     "1h1h", "1 OR 1=1", "5 ms", "١٢", "1h ago"],
)  # fmt: skip
def test_anything_else_is_refused_with_the_grammar_in_the_message(text: str) -> None:
    with pytest.raises(DurationError, match=r"is not a duration \(use 90s, 15m, 1h"):
        parse_duration(text)


def test_zero_only_where_allowed_and_a_ceiling() -> None:
    with pytest.raises(DurationError, match="more than 0"):
        parse_duration("0s")
    assert parse_duration("0", allow_zero=True) == 0.0
    assert parse_duration("3650d") == MAX_S
    with pytest.raises(DurationError, match="at most 3650d"):
        parse_duration("3651d")
    assert issubclass(DurationError, ValueError)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["top", "--since", "soon"], "--since"),
        (["top", "--active-window", "0"], "--active-window"),
        (["export", "--since", "1y"], "--since"),
        (["export", "--until", "yesterday"], "--until"),
        (["serve-ws", "--window", "-1h"], "--window"),
        (["token", "--access-ttl", "15 minutes"], "--access-ttl"),
        (["token", "--refresh-ttl", "0"], "--refresh-ttl"),
        (["demo", "--duration", "forever"], "--duration"),
        (["persist", "--maintain-every", "5x"], "--maintain-every"),
    ],
)
def test_every_duration_flag_rejects_bad_values_in_one_line(args: list[str], flag: str) -> None:
    # refused while parsing the flags: before any backend is resolved or server started
    proc = subprocess.run(
        [*AUREN, *args, "--redis-url", "redis://127.0.0.1:1/0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"auren: Invalid value for '{flag}': ")
    assert "Traceback" not in proc.stderr


def test_good_duration_values_reach_the_command() -> None:
    from auren_tui.commands._duration import as_duration

    assert as_duration()("1h30m") == 5400.0
    assert as_duration()(3600.0) == 3600.0  # a default in seconds passes through
    assert as_duration(allow_zero=True)("0") == 0.0
