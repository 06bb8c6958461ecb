"""auren_core.streams: one entry decoder, one lag, one backoff, for every reader."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from auren_core.events import Event, Malformed, encode, make_event
from auren_core.streams.backoff import reconnect_backoff
from auren_core.streams.entries import (
    decode_entries,
    decode_entry,
    entry_id,
    id_for_time,
    parse_stream_id,
)
from auren_core.streams.lag import LagProbe, stream_lag

ROOT = Path(__file__).resolve().parents[2]
GOOD = encode(make_event("tool_used", {"tool": "search", "ok": True}, agent="a"))
BAD_PAYLOAD = b'{"v":1,"id":"x","ts":1767225600,"type":"tool_used","payload":{"tool":["no"]}}'


# --------------------------------------------------------------------------- entries
@pytest.mark.parametrize(
    "fields",
    [
        {b"e": GOOD},  # redis-py's default reply
        {"e": GOOD.decode()},  # decode_responses=True
        [b"e", GOOD],  # a raw reply (no per-entry dict)
        [b"other", b"x", b"e", GOOD],
        ["e", GOOD.decode()],
    ],
)
def test_every_reply_shape_decodes_to_the_same_event(fields: Any) -> None:
    for sid in (b"1700000000000-3", "1700000000000-3"):
        ev = decode_entry(sid, fields)
        assert isinstance(ev, Event), ev
        assert ev.stream_id == "1700000000000-3" and ev.payload["tool"] == "search"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (None, "no 'e' field"),  # trimmed while pending
        ({}, "no 'e' field"),
        ({b"x": GOOD}, "no 'e' field"),
        ([b"e"], "no 'e' field"),  # a truncated flat list
        ({b"e": b"not json"}, "bad envelope"),
        ({b"e": GOOD.replace(b'"v":1', b'"v":2')}, "unsupported version 2"),
        ({b"e": BAD_PAYLOAD}, "bad tool_used payload"),
    ],
)
def test_bad_entries_are_malformed_never_raised(fields: Any, reason: str) -> None:
    m = decode_entry(b"5-1", fields)
    assert isinstance(m, Malformed) and m.sid == "5-1" and reason in m.reason


def test_decode_entries_keeps_order_and_ids() -> None:
    items = decode_entries([(b"1-0", {b"e": GOOD}), ("2-0", None), (b"3-0", [b"e", GOOD])])
    assert [type(i).__name__ for i in items] == ["Event", "Malformed", "Event"]
    assert [i.stream_id if isinstance(i, Event) else i.sid for i in items] == ["1-0", "2-0", "3-0"]


def test_stream_ids() -> None:
    assert entry_id(b"7-1") == entry_id("7-1") == "7-1"
    assert parse_stream_id("1700000000000-12") == (1700000000000, 12)
    assert parse_stream_id("5") == (5, 0)
    assert id_for_time(1700000000.25) == "1700000000250-0" and id_for_time(-3) == "0-0"


def test_no_reader_decodes_entries_on_its_own() -> None:
    """The entry field is read in one place (streams/entries.py); the codec defines it
    and the publisher writes it. A reader that grows its own loop fails here."""
    allowed = {
        "auren_core/events/model.py",  # defines the field
        "auren_core/events/__init__.py",  # re-exports it
        "auren_core/events/codec.py",
        "auren_core/streams/entries.py",
        "auren_core/streams/publisher.py",
    }
    pattern = re.compile(r'\bFIELD\b|b"e"|\.get\("e"\)|== "e"|\bv == 1\b')
    offenders = []
    for pkg in ("auren_core", "auren_tui"):
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in allowed and pattern.search(path.read_text()):
                offenders.append(rel)
    assert offenders == []


def test_the_guard_sees_a_hand_written_decoder() -> None:  # negative control
    assert re.search(r'\bFIELD\b|b"e"', 'raw = fields.get(b"e")')


# --------------------------------------------------------------------------- backoff
def test_one_backoff_policy_grows_and_is_capped() -> None:
    policy = reconnect_backoff(cap=2.0)
    for failures in range(1, 40):
        bound = min(2.0, 0.05 * 2**failures)
        assert all(0 <= policy.compute(failures) <= bound for _ in range(50))
    assert max(policy.compute(30) for _ in range(200)) > 1.0  # reaches the cap region


# --------------------------------------------------------------------------- lag
def _fill(url: str, stream: str, n: int) -> list[str]:
    r = redis.Redis.from_url(url)
    pipe = r.pipeline(transaction=False)
    for _ in range(n):
        pipe.xadd(stream, {"e": GOOD})
    return [entry_id(i) for i in pipe.execute()]


def test_stream_lag_counts_entries_after_a_position(redis_url: str, stream: str) -> None:
    ids = _fill(redis_url, stream, 50)

    async def go() -> list[int]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return [
                await stream_lag(client, stream, ids[-1]),  # caught up: XINFO only
                await stream_lag(client, stream, ids[39]),  # 10 behind
                await stream_lag(client, stream, "0-0"),  # everything (oldest after us)
                await stream_lag(client, stream, ids[9], cap=5),  # capped: "more than 5"
                await stream_lag(client, stream + ":missing", "0-0"),
                await stream_lag(client, stream, "99999999999999-0"),  # ahead of the head
            ]
        finally:
            await client.aclose()

    assert asyncio.run(go()) == [0, 10, 50, 6, 0, 0]


def test_stream_lag_when_the_stream_was_trimmed_past_the_position(
    redis_url: str, stream: str
) -> None:
    ids = _fill(redis_url, stream, 30)
    redis.Redis.from_url(redis_url).xtrim(stream, maxlen=12, approximate=False)

    async def go() -> int:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return await stream_lag(client, stream, ids[2])
        finally:
            await client.aclose()

    assert asyncio.run(go()) == 12  # what is left to read, not what was written


def test_lag_probe_follows_a_moving_position(redis_url: str, stream: str) -> None:
    ids = _fill(redis_url, stream, 20)
    pos: list[str | None] = [None]
    probe = LagProbe(redis_url, stream, lambda: pos[0])

    async def go() -> list[int | None]:
        out = [await probe()]
        for p in (ids[4], ids[-1]):
            pos[0] = p
            out.append(await probe())
        await probe.aclose()
        return out

    assert asyncio.run(go()) == [None, 15, 0]


def test_lag_probe_reports_an_unreachable_server_and_recovers() -> None:
    probe = LagProbe("redis://127.0.0.1:1/0", "s", lambda: "1-0", socket_timeout=0.5)

    async def go() -> None:
        with pytest.raises((redis.ConnectionError, OSError)):
            await probe()
        assert probe._client is None  # a fresh connection next time

    asyncio.run(go())
