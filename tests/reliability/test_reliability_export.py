"""Reliability of exports, API requests and readers against hostile entries (issue 16,
items 4 and 5).

Item 4 - no bad entry can crash an export, an API request or a reader: deeply nested
payloads, absurd timestamps (``ts=1e12``, ``ts=-1e10``), absurd durations.
Item 5 - exports to a terminal are inert, CSV cells always are, CSV formula neutralising
covers the OWASP list and its look-alikes, the TUI sanitiser removes zero-width and bidi
controls.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import os
import pty
import select
import subprocess
import sys
import time
import unicodedata
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import redis
from hypothesis import example, given, settings
from hypothesis import strategies as st

from auren_core import rules
from auren_core.events import Event, Malformed, decode, encode, make_event
from auren_core.export import ALL, build_reports, csv_text, neutralise, render
from auren_tui.sanitize import clean, is_clean

AUREN = [sys.executable, "-m", "auren_tui"]
NOW = time.time()


def _raw(
    ts: float | str, payload: str = '{"model":"m","input_tokens":1}', t: str = "llm_call"
) -> bytes:
    return (
        f'{{"v":1,"id":"{uuid.uuid4().hex}","ts":{ts},"type":"{t}","agent":"a","run":"r",'
        f'"payload":{payload}}}'
    ).encode()


def _nested(depth: int, kind: str = "[") -> str:
    """A payload whose ``x`` nests ``depth`` levels of lists (or objects)."""
    if kind == "[":
        return '{"tool":"t","x":' + "[" * depth + "]" * depth + "}"
    return '{"tool":"t","x":' + '{"a":' * depth + "1" + "}" * depth + "}"


def _at_stack_depth(n: int, fn: Any) -> Any:
    """Call ``fn`` with ``n`` more Python frames on the stack (a reader deep in its loop,
    an asyncio task, a Textual worker)."""
    if n <= 0:
        return fn()
    return _at_stack_depth(n - 1, fn)


# --------------------------------------------------------------------------- item 4


def test_a_5000_deep_payload_is_a_malformed_entry_with_a_clear_reason() -> None:
    for kind in ("[", "{"):
        out = decode(_raw(NOW, _nested(5000, kind), "tool_used"), "1-0")
        assert isinstance(out, Malformed)
        assert "nested too deep" in out.reason and out.sid == "1-0"


def test_payloads_deeper_than_the_rule_are_malformed_and_shallower_ones_kept() -> None:
    limit = rules.MAX_DEPTH
    # the payload object is level 1, so x holds limit - 1 levels at most
    ok = decode(_raw(NOW, _nested(limit - 1), "tool_used"))
    assert isinstance(ok, Event)
    for depth in (limit, 500, 900):  # msgspec itself decodes these at a shallow stack
        out = decode(_raw(NOW, _nested(depth), "tool_used"))
        assert isinstance(out, Malformed), depth
        assert f"at most {limit} levels" in out.reason
    # many brackets but shallow: a wide payload is not "deep"
    wide = '{"tool":"t","x":[' + ",".join(["[1]"] * 5000) + "]}"
    assert isinstance(decode(_raw(NOW, wide, "tool_used")), Event)


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(min_value=0, max_value=6000),
    kind=st.sampled_from(["[", "{"]),
    stack=st.integers(min_value=0, max_value=400),
    etype=st.sampled_from(["tool_used", "brand_new", "llm_call"]),
)
@example(depth=500, kind="[", stack=0, etype="tool_used")  # decoded fine before the rule
@example(depth=300, kind="{", stack=100, etype="brand_new")
@example(depth=5000, kind="[", stack=400, etype="tool_used")
def test_no_decoded_entry_can_exhaust_a_readers_stack(
    depth: int, kind: str, stack: int, etype: str
) -> None:
    """Whatever the nesting and however deep the caller already is, decode never raises,
    and everything it lets through can be encoded again (serve-ws frames, the store's
    jsonb, JSON exports) - before the depth rule a 500-deep payload decoded fine and then
    raised RecursionError in serve-ws's frame encoder."""
    from auren_core.server.protocol import encode_event

    raw = _raw(NOW, _nested(depth, kind), etype)
    out = _at_stack_depth(stack, lambda: decode(raw, "1-0"))
    assert isinstance(out, Event | Malformed)
    if isinstance(out, Event):  # re-encoded by a caller 700 frames deep
        _at_stack_depth(700, lambda: encode_event(out))
        _at_stack_depth(700, lambda: msgspec.json.encode(out.payload))


@pytest.mark.parametrize(
    "ts", ["1e12", "-1e10", "1e300", "-1e300", "1.0", "0", "946684799.9", "4102444800"]
)
def test_absurd_timestamps_are_malformed_for_every_reader(ts: str) -> None:
    out = decode(_raw(ts), "9-0")
    assert isinstance(out, Malformed)
    assert "timestamp out of range" in out.reason


def test_timestamps_inside_the_rule_are_kept() -> None:
    for ts in (rules.MIN_TS, NOW, NOW + 30 * 86400, rules.MAX_TS - 1):
        assert isinstance(decode(_raw(repr(ts))), Event)
        assert rules.timestamp_ok(ts) and rules.timestamp_problem(ts) is None
    for bad in (math.nan, math.inf, -math.inf, 1e12, -1e10, "soon", None, True):
        assert not rules.timestamp_ok(bad)
        assert rules.timestamp_problem(bad) is not None
    # the store's extra rule: not more than 2 days ahead of its clock
    assert rules.timestamp_problem(NOW + 3 * 86400, now=NOW) is not None
    assert rules.timestamp_problem(NOW + 86400, now=NOW) is None


def test_in_process_events_with_absurd_times_crash_no_report_and_no_reducer() -> None:
    """Events handed over in process (not decoded) follow the same rule: not counted."""
    from auren_core.state import make_reducer

    good = make_event("llm_call", {"model": "m", "input_tokens": 5}, agent="a", ts=NOW)
    bad = [
        make_event("llm_call", {"model": "m", "input_tokens": 7}, agent="a", ts=ts)
        for ts in (1e12, -1e10, 1.0, math.inf, math.nan)
    ]
    tables = build_reports([good, *bad], ["all"])  # before: OverflowError (date out of range)
    tokens = tables["tokens"]
    assert [(r["day"], r["input_tokens"]) for r in tokens] == [
        (time.strftime("%Y-%m-%d", time.gmtime(NOW)), 5)
    ]
    for fmt in ("csv", "json", "jsonl"):
        assert b"1653" not in render(tables, fmt)
    red = make_reducer(window_s=3600.0)
    red.apply_batch([good, *bad])
    state = red.state()
    assert state.totals.input_tokens == 5
    assert state.health.malformed == len(bad)


def _hostile_stream(redis_url: str, stream: str) -> int:
    """Good entries around every bad kind; returns how many good input tokens were sent."""
    r = redis.Redis.from_url(redis_url)
    good = 0
    for i in range(5):
        r.xadd(stream, {"e": _raw(repr(NOW - 60 + i), f'{{"model":"m","input_tokens":{10 + i}}}')})
        good += 10 + i
        r.xadd(stream, {"e": _raw("1e12")})
        r.xadd(stream, {"e": _raw("-1e10")})
        r.xadd(stream, {"e": _raw(NOW, _nested(5000), "tool_used")})
        r.xadd(stream, {"e": _raw(NOW, _nested(900), "tool_used")})
        r.xadd(stream, {"e": _raw(NOW, _nested(900), "brand_new")})
    r.close()
    return good


def test_auren_export_from_a_hostile_stream_exits_0_with_only_good_rows(
    redis_url: str, stream: str
) -> None:
    good = _hostile_stream(redis_url, stream)
    for fmt in ("csv", "json"):
        proc = subprocess.run(
            [*AUREN, "export", "--format", fmt, "--report", "all" if fmt == "json" else "tokens",
             "--since", "3650d", "--source", "stream", "--redis-url", redis_url,
             "--stream", stream],
            capture_output=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        assert b"Traceback" not in proc.stderr
        assert b"1653" not in proc.stdout and b"33658" not in proc.stdout
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(proc.stdout.decode())))
        else:
            rows = json.loads(proc.stdout)["tokens"]
            assert set(json.loads(proc.stdout)) == set(ALL)
        assert sum(int(r["input_tokens"]) for r in rows) == good
        assert {r["day"] for r in rows} == {time.strftime("%Y-%m-%d", time.gmtime(NOW))}


async def test_http_export_answers_200_for_a_window_holding_hostile_entries(
    redis_url: str, stream: str
) -> None:
    from server_helpers import aget, running

    good = _hostile_stream(redis_url, stream)
    async with running(redis_url, stream) as srv:
        for fmt in ("csv", "json", "jsonl"):
            status, _, body = await aget(
                srv.port, f"/api/v2/export/analytics?format={fmt}&report=all&window_hours=24"
            )
            assert status == 200, body[:500]  # before: 500 (OverflowError)
        status, _, body = await aget(
            srv.port, "/api/v2/export/analytics?format=json&report=tokens&window_hours=24"
        )
        assert status == 200
        assert sum(r["input_tokens"] for r in json.loads(body)["tokens"]) == good
        _, _, metrics = await aget(srv.port, "/metrics")
        # the live reader counted every hostile entry as malformed and kept reading
        assert b"auren_ws_reader_connected 1.0" in metrics
        assert b"auren_ws_malformed_total 25.0\n" in metrics
        assert srv.live_state()["totals"]["input_tokens"] == good


async def test_the_sink_dead_letters_absurd_times_and_deep_payloads(
    redis_url: str, stream: str, pg_dsn: str
) -> None:
    import asyncpg

    from auren_core.store.sink import Sink

    _hostile_stream(redis_url, stream)
    schema = f"t_relx_{uuid.uuid4().hex[:10]}"
    sink = Sink(redis_url, stream, pg_dsn, schema=schema, consumer="x", block_ms=100,
                maintain_every_s=0)  # fmt: skip
    task = asyncio.create_task(sink.run())
    deadline = time.monotonic() + 20
    while sink.stats.acked < 30 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    sink.stop()
    await task
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert sink.stats.acked == 30
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".events') == 5
        reasons = [
            r["reason"] for r in await conn.fetch(f'SELECT reason FROM "{schema}".dead_letter')
        ]
        assert len(reasons) == 25
        assert sum("timestamp out of range" in x for x in reasons) == 10
        assert sum("nested too deep" in x for x in reasons) == 15
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


@pytest.mark.parametrize("value", ["99999999999d", "1e400d", "9" * 400 + "w", "-5d"])
def test_an_absurd_export_duration_is_one_line_not_a_traceback(value: str) -> None:
    proc = subprocess.run(
        [*AUREN, "export", "--since", value, "--redis-url", "redis://127.0.0.1:1/0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("auren: Invalid value for '--since': ")
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- item 5

ESC_NAMES = [
    "\x1b]52;c;ZWNobyBwd25lZA==\x07clip",  # OSC 52: write the clipboard
    "\x1b]0;pwned title\x1b\\agent",  # window title, ST-terminated
    "\x1b[2J\x1b[31mred",  # clear screen, colour
    "\x9b31mc1-csi",  # 8-bit CSI
    "\x9d0;c1 osc\x9c",  # 8-bit OSC ... ST
    "bell\x07del\x7fnul\x00",
]
CONTROL_BYTES = [
    b"\x1b",
    b"\x07",
    b"\x00",
    b"\x7f",
    "\x9b".encode(),
    "\x9d".encode(),
    "\x9c".encode(),
]


def _escape_tables() -> dict[str, list[dict[str, Any]]]:
    evs = [
        make_event("llm_call", {"model": f"m{i}", "input_tokens": 1}, agent=name, ts=NOW)
        for i, name in enumerate(ESC_NAMES)
    ]
    return build_reports(evs, ["tokens", "costs"])


def test_csv_text_cells_never_carry_control_characters() -> None:
    data = render(_escape_tables(), "csv")
    for b in CONTROL_BYTES:
        assert b not in data, b
    text = data.decode()
    cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
    # nothing is lost: the escapes are visible text
    assert "\\x1b]52;c;ZWNobyBwd25lZA==\\x07clip" in cells
    assert "\\x9b31mc1-csi" in cells
    assert "bell\\x07del\\x7fnul\\x00" in cells


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_csv_text_is_always_inert(value: str) -> None:
    out = csv_text(value)
    assert not any((ord(c) < 0x20 and c not in "\t\n\r") or 0x7F <= ord(c) <= 0x9F for c in out), (
        repr(out)
    )
    if out:
        assert out[0] == "'" or not _formula_like(out[0]), repr(out)
    tty = csv_text(value, terminal=True)
    assert not any((ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) <= 0x9F for c in tty)


def _formula_like(c: str) -> bool:
    """What a spreadsheet might run, written independently of the implementation."""
    folded = unicodedata.normalize("NFKC", c)[:1] or c
    return (
        c in "=+-@\t\r\n|;\u2212"
        or folded in "=+-@|;"
        or c.isspace()
        or unicodedata.category(c) in ("Cf", "Cc", "Zs", "Zl", "Zp")
    )


FORMULAS = [
    "=1+1", "+1", "-1+2", "@SUM(A1)", "\t=1", "\r=1",  # OWASP
    "\n=1", " =1", "\u00a0=1", "\ufeff=1", "\u200b=1", "\u2060=1", "\u3000=1",  # hidden starts
    "\uff1d1+1", "\uff0b1", "\uff0d1", "\uff20SUM(A1)",  # full-width = + - @
    "\ufe661", "\ufe621", "\ufe631", "\ufe6bx", "\u22121",  # small forms, minus sign
    "|calc", ";x", "\uff5ccalc", "\uff1bx",  # DDE pipe, separator, and full-width forms
]  # fmt: skip


@pytest.mark.parametrize("value", FORMULAS)
def test_formula_starts_are_neutralised(value: str) -> None:
    assert neutralise(value) == "'" + value
    cell = next(csv.reader(io.StringIO(render({"x": [{"v": value}]}, "csv").decode()[3:])))[0]
    assert cell.startswith("'")


@pytest.mark.parametrize("value", ["plain", "a=b", "1", "é", "agent-1", "'=already", "", "日本"])
def test_ordinary_text_is_left_alone(value: str) -> None:
    assert neutralise(value) == value
    assert neutralise(-3) == -3 and neutralise(2.5) == 2.5


def _run_on_pty(args: list[str]) -> bytes:
    """``auren`` with its stdout on a pseudo-terminal; everything it wrote there."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            args, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
    finally:
        os.close(slave)
    out = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else b""
    if proc.stderr:
        proc.stderr.close()
    return out


@pytest.fixture
def escape_stream(redis_url: str, stream: str) -> Iterator[str]:
    r = redis.Redis.from_url(redis_url)
    for i, name in enumerate(ESC_NAMES):
        ev = make_event("llm_call", {"model": f"m{i}", "input_tokens": 1}, agent=name, ts=NOW)
        r.xadd(stream, {"e": encode(ev)})
    r.close()
    yield stream


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_export_to_a_terminal_writes_no_escape_sequence(
    redis_url: str, escape_stream: str, fmt: str
) -> None:
    args = [*AUREN, "export", "--format", fmt, "--report", "tokens", "--since", "1h",
            "--source", "stream", "--redis-url", redis_url, "--stream", escape_stream]  # fmt: skip
    out = _run_on_pty(args)
    assert b"agent" in out  # the report was written
    for b in CONTROL_BYTES:
        assert b not in out, (b, out[:300])
    assert b"clip" in out and b"c1-csi" in out
    # to a pipe, JSON stays exact (the names decode back as they were); CSV is inert anyway
    piped = subprocess.run(args, capture_output=True, timeout=120)
    assert piped.returncode == 0
    if fmt == "json":
        names = {r["agent"] for r in json.loads(piped.stdout)["tokens"]}
        assert names == set(ESC_NAMES)
        on_tty = json.loads(out.replace(b"\r\n", b"\n"))
        assert {r["agent"] for r in on_tty["tokens"]} == set(ESC_NAMES)  # still the same text
    if fmt == "csv":
        assert b"\x1b" not in piped.stdout and "\x9b".encode() not in piped.stdout


INVISIBLE = [chr(c) for c in (*range(0x200B, 0x2010), 0x2060, 0xFEFF)]
BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]


@pytest.mark.parametrize("ch", INVISIBLE + BIDI, ids=lambda c: f"U+{ord(c):04X}")
def test_tui_sanitiser_removes_zero_width_and_bidi_controls(ch: str) -> None:
    assert clean(f"adm{ch}in") == "admin"
    assert not is_clean(f"a{ch}b")


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from([*INVISIBLE, *BIDI, "a", "\x1b", "[", "]", "\u00e9"]), max_size=30
    )
)
def test_tui_sanitiser_output_never_holds_invisible_or_bidi(value: str) -> None:
    out = clean(value)
    assert not any(c in out for c in INVISIBLE + BIDI)
    assert is_clean(out)


def test_serve_otlp_refuses_spans_whose_times_break_the_rule() -> None:
    """OTLP spans become events: spans whose times every reader would call malformed are
    refused at the receiver, with the reason the exporter sees (``invalid_timestamps``)."""
    from collections import Counter

    from auren_core.otlp.spans import extract, parse_json

    def span(i: int, start: int, end: int) -> dict[str, Any]:
        return {
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "spanId": f"b7ad6b716920333{i}",
            "name": "chat",
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end),
        }

    now_ns = int(NOW * 1e9)
    spans = [
        span(1, now_ns, now_ns + 10**9),  # good
        span(2, 1, 2),  # 1970
        span(3, 5 * 10**18, 5 * 10**18 + 1),  # year 2128
        span(4, now_ns, 2**64 - 1),  # ends in 2554
    ]
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()
    rejected: Counter[str] = Counter()
    good, total = extract(parse_json(body), rejected)
    assert total == 4 and len(good) == 1
    assert rejected == Counter({"invalid_timestamps": 3})
