"""Publisher against real Redis servers, including one that dies and comes back."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from servers import PrivateRedis
from waiting import wait_until

from auren_core.events import Event, decode
from auren_core.streams.publisher import Publisher


def read_all(url: str, stream: str) -> list[Event]:
    out = []
    for sid, fields in redis.Redis.from_url(url).xrange(stream):
        ev = decode(fields[b"e"], sid.decode())
        assert isinstance(ev, Event), ev
        out.append(ev)
    return out


def test_emits_arrive_in_order_and_valid(redis_url: str, stream: str) -> None:
    pub = Publisher(redis_url, stream, stats_interval=3600)
    for i in range(5000):
        pub.emit("tool_used", {"tool": "search", "duration_ms": float(i)}, agent="a", run="r")
    assert pub.flush(10)
    evs = read_all(redis_url, stream)
    assert [e.payload["duration_ms"] for e in evs] == [float(i) for i in range(5000)]
    c = pub.counters()
    assert (c.produced, c.sent, c.dropped, c.queued) == (5000, 5000, 0, 0)
    pub.close()


def test_many_threads(redis_url: str, stream: str) -> None:
    pub = Publisher(redis_url, stream, stats_interval=3600)

    def work(n: int) -> None:
        for i in range(2000):
            pub.emit("hypothesis", {"hypothesis_id": f"{n}-{i}", "status": "formed"})

    ts = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert pub.flush(10)
    ids = {e.payload["hypothesis_id"] for e in read_all(redis_url, stream)}
    assert len(ids) == 16_000
    assert pub.counters().produced == 16_000
    pub.close()


def test_maxlen_trims(redis_url: str, stream: str) -> None:
    pub = Publisher(redis_url, stream, maxlen=1000, stats_interval=3600)
    for _ in range(20_000):
        pub.emit("crew_started", {})
    assert pub.flush(10)
    n = redis.Redis.from_url(redis_url).xlen(stream)
    assert 1000 <= n < 5000  # approximate trimming (~) keeps whole macro-nodes
    pub.close()


def test_unreachable_redis_never_raises_and_caller_never_waits() -> None:
    pub = Publisher("redis://127.0.0.1:1/0", "s", buffer_size=100, stats_interval=3600)
    t0 = time.perf_counter()
    for _ in range(1000):
        pub.emit("crew_started", {"crew": "x"})
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5  # no network round trip in the caller

    def settled() -> bool:  # the publisher's thread has tried to connect, and buffered
        c = pub.counters()
        return c.dropped + c.queued == 1000 and not c.connected

    wait_until(settled, "the publisher's thread to buffer and drop", timeout=5)
    c = pub.counters()
    assert c.produced == 1000 and c.sent == 0
    assert c.dropped + c.queued == 1000 and c.queued <= 100 and not c.connected
    pub.close(timeout=0.2)


def test_unencodable_payload_is_counted_not_raised(redis_url: str, stream: str) -> None:
    pub = Publisher(redis_url, stream, stats_interval=3600)
    pub.emit("tool_used", {"tool": object()})  # type: ignore[dict-item]
    assert pub.counters().errors == 1
    pub.close()


def test_refused_batch_is_kept_and_sent_once_the_server_accepts(
    redis_url: str, stream: str
) -> None:
    """Every XADD of a batch refused (the key holds a string: WRONGTYPE): nothing raises
    into the caller, nothing is lost or sent twice, and the connection stays in step
    with its replies (the publisher reads every reply of a batch before raising)."""
    r = redis.Redis.from_url(redis_url)
    r.set(stream, "not a stream")
    pub = Publisher(redis_url, stream, stats_interval=3600)
    for i in range(2500):  # three batches (1000 a pipeline)
        pub.emit("tool_used", {"tool": "t", "duration_ms": float(i)})
    assert not pub.flush(0.5)
    c = pub.counters()
    assert c.sent == 0 and c.queued == 2500 and c.dropped == 0
    r.delete(stream)
    assert pub.flush(15)
    seen = [int(e.payload["duration_ms"]) for e in read_all(redis_url, stream)]
    assert seen == list(range(2500))
    c = pub.counters()
    assert (c.produced, c.sent, c.dropped, c.queued) == (2500, 2500, 0, 0)
    pub.close()


def test_server_dies_and_returns(private_redis: PrivateRedis) -> None:
    """Kill -9 Redis mid-run, restart it: no exception, sent + dropped == produced."""
    stream = "auren:events"
    pub = Publisher(private_redis.url, stream, buffer_size=3000, stats_interval=0.2)
    produced = 0
    sent_before_kill = 0

    def burst(n: int) -> None:
        nonlocal produced
        for i in range(n):
            pub.emit("tool_used", {"tool": "t", "duration_ms": float(produced)})
            produced += 1
            if i % 100 == 0:
                time.sleep(0.001)  # bursts, as a crew emits them

    burst(2000)
    assert pub.flush(5)
    sent_before_kill = redis.Redis.from_url(private_redis.url).xlen(stream)
    private_redis.stop()
    burst(5000)  # 5000 while down into a 3000 buffer: the oldest must drop
    wait_until(lambda: not pub.counters().connected, "the publisher to see the outage")
    assert not pub.counters().connected
    private_redis.start()
    burst(1000)
    assert pub.flush(15)
    c = pub.counters()
    assert c.dropped > 0
    assert c.sent + c.dropped == c.produced
    assert c.queued == 0
    # What reached the restarted server: the newest events, in order, none invented.
    evs = [e for e in read_all(private_redis.url, stream) if e.type == "tool_used"]
    seen = [int(e.payload["duration_ms"]) for e in evs]
    assert seen == sorted(seen)
    assert seen[-1] == produced - 1

    def drops_reported() -> bool:  # publisher_stats go out every 0.2 s
        stats = [e for e in read_all(private_redis.url, stream) if e.type == "publisher_stats"]
        return bool(stats) and max(s.payload["dropped"] for s in stats) > 0

    wait_until(drops_reported, "a publisher_stats event counting the drops", timeout=5)
    assert sent_before_kill >= 2000
    pub.close()


def test_hung_server_does_not_block_caller(private_redis: PrivateRedis) -> None:
    pub = Publisher(private_redis.url, "s", socket_timeout=0.3, stats_interval=3600)
    pub.emit("crew_started", {})
    assert pub.flush(5)
    private_redis.pause()
    try:
        t0 = time.perf_counter()
        for _ in range(10_000):
            pub.emit("crew_started", {})
        assert time.perf_counter() - t0 < 1.0
    finally:
        private_redis.resume()
    assert pub.flush(15)
    c = pub.counters()
    assert c.sent + c.dropped == c.produced == 10_001
    pub.close()


def test_flush_at_exit_in_subprocess(redis_url: str, stream: str) -> None:
    import subprocess
    import sys

    code = (
        "from auren_core.streams.publisher import Publisher\n"
        f"p = Publisher({redis_url!r}, {stream!r}, flush_interval=5.0, stats_interval=3600)\n"
        "for i in range(3000): p.emit('crew_started', {'crew': str(i)})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    assert redis.Redis.from_url(redis_url).xlen(stream) == 3000


def test_exit_is_bounded_when_redis_is_down() -> None:
    import subprocess
    import sys

    code = (
        "from auren_core.streams.publisher import Publisher\n"
        "p = Publisher('redis://127.0.0.1:1/0', 's', exit_flush_timeout=0.5)\n"
        "for i in range(100): p.emit('crew_started', {})\n"
    )
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    assert time.perf_counter() - t0 < 5


def test_publish_event_object(redis_url: str, stream: str) -> None:
    from auren_core.events import make_event

    pub = Publisher(redis_url, stream, stats_interval=3600)
    ev = make_event("knowledge_access", {"item": "sleep", "hit": False}, agent="a")
    pub.publish(ev)
    assert pub.flush(5)
    (back,) = read_all(redis_url, stream)
    assert back.id == ev.id and back.payload == ev.payload  # the typed struct, both sides
    pub.close()


@pytest.mark.parametrize("n", [1, 999, 1001])
def test_batches_boundaries(redis_url: str, stream: str, n: int) -> None:
    pub = Publisher(redis_url, stream, batch_size=1000, stats_interval=3600)
    for i in range(n):
        pub.emit("crew_started", {"crew": str(i)})
    assert pub.flush(5)
    assert len(read_all(redis_url, stream)) == n
    pub.close()


def test_adaptive_linger_batches_sparse_events_and_shrinks_under_load(
    redis_url: str, stream: str
) -> None:
    """Sparse bursts (a crew): the linger grows to max_linger and one pipeline carries many
    events; a busy emitter brings it back to flush_interval; delivery stays bounded."""
    p = Publisher(redis_url, stream, flush_interval=0.002, max_linger=0.02, stats_interval=3600)
    r = redis.Redis.from_url(redis_url)
    try:
        for i in range(200):  # bursts of 2 events, then a 5 ms pause: like a crew
            p.emit("tool_used", {"tool": "t", "i": i})
            if i % 2:
                time.sleep(0.005)  # the pause between bursts that linger is measured on
        assert p.flush(5)
        assert p.linger == pytest.approx(0.02)
        assert p.wakeups < 200 / 4, p.wakeups  # >= 4 events per pipeline on average
        for i in range(20_000):  # a busy emitter
            p.emit("tool_used", {"tool": "t", "i": i})
        assert p.flush(10)
        assert p.linger < 0.02
        assert r.xlen(stream) == 20_200
        # a lone event still arrives within the linger bound (plus scheduling)
        t0 = time.monotonic()
        p.emit("tool_used", {"tool": "late"})
        while r.xlen(stream) < 20_201:
            assert time.monotonic() - t0 < 1.0
            time.sleep(0.001)
    finally:
        p.close()


def test_produced_counter_is_exact_while_read_concurrently() -> None:
    # reading the counter never counts as producing, never goes backwards, and does not
    # depend on itertools.count.__reduce__ (deprecated in 3.12, removed in 3.14)
    pub = Publisher("redis://127.0.0.1:1/0", "s", buffer_size=10, stats_interval=3600)
    stop = threading.Event()
    seen: list[list[int]] = [[] for _ in range(3)]

    def read(out: list[int]) -> None:
        while not stop.is_set():
            out.append(pub.counters().produced)

    def work() -> None:
        for _ in range(5000):
            pub.emit("crew_started", {})

    readers = [threading.Thread(target=read, args=(s,)) for s in seen]
    emitters = [threading.Thread(target=work) for _ in range(4)]
    for t in [*readers, *emitters]:
        t.start()
    for t in emitters:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert all(s and s == sorted(s) and s[-1] <= 20_000 for s in seen)
    assert pub.produced() == pub.counters().produced == 20_000
    pub.close(timeout=0.2)
