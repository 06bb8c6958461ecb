"""Sharded streams on a real 3-master / 3-replica Valkey/Redis Cluster (tests/cluster.py)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import LocalCluster
from redis.cluster import RedisCluster
from waiting import await_until

from auren_core.streams.publisher import Publisher
from auren_core.streams.shards import (
    CursorError,
    decode_cursor,
    encode_cursor,
    shard_keys,
    shard_of,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as c:
        yield c


@pytest.fixture
def cstream(cluster: LocalCluster) -> Iterator[str]:
    name = f"auren:t:{uuid.uuid4().hex[:8]}"
    yield name
    rc = RedisCluster(host="127.0.0.1", port=cluster.alive_port())
    for k in shard_keys(name, 6):
        rc.delete(k)
    rc.close()


def rc_of(cluster: LocalCluster) -> RedisCluster:
    return RedisCluster(host="127.0.0.1", port=cluster.alive_port(), decode_responses=True)


# --------------------------------------------------------------------------- pure


def test_one_shard_is_todays_key() -> None:
    assert shard_keys("auren:events", 1) == ["auren:events"]
    assert encode_cursor(["5-1"]) == "5-1"


def test_shard_keys_spread_over_slot_ranges() -> None:
    from redis.crc import key_slot

    keys = shard_keys("auren:events", 6)
    assert len(set(keys)) == 6
    slots = [key_slot(k.encode()) for k in keys]
    assert [s * 6 // 16384 for s in slots] == list(range(6))
    assert all(k.startswith("{") and k.endswith("}") for k in keys)


def test_shard_of_is_stable_by_run() -> None:
    assert len({shard_of("run-7", f"a{i}", 6, i) for i in range(50)}) == 1
    assert len({shard_of(None, None, 6, i) for i in range(6)}) == 6


def test_cursor_round_trip_and_errors() -> None:
    ids = ["1-0", "0-0", "99-3"]
    cur = encode_cursor(ids)
    assert cur.startswith("c1.") and decode_cursor(cur, 3) == ids
    assert decode_cursor("12-4", 3) == ["12-4"] * 3
    with pytest.raises(CursorError):
        decode_cursor(cur, 6)
    with pytest.raises(CursorError):
        decode_cursor("c1.!!!", 3)


# --------------------------------------------------------------------------- cluster


def test_fixture_is_three_masters_three_replicas(cluster: LocalCluster) -> None:
    roles = Counter(n.client().info("replication")["role"] for n in cluster.nodes)
    assert roles == {"master": 3, "slave": 3}


def publish_known_set(url: str, stream: str, threads: int, per: int, shards: int) -> set[str]:
    """Several threads publish ``per`` events each, runs spread over the shards."""
    pub = Publisher(url, stream, shards=shards, stats_interval=3600)
    ids: set[str] = set()
    lock = threading.Lock()

    def work(t: int) -> None:
        mine = []
        for i in range(per):
            eid = f"t{t}-{i}"
            mine.append(eid)
            pub.emit("tool_used", {"tool": "x", "eid": eid}, agent=f"a{t}", run=f"r{t}-{i % 5}")
        with lock:
            ids.update(mine)

    ths = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    assert pub.flush(30)
    c = pub.counters()
    pub.close()
    assert c.sent == threads * per and c.dropped == 0
    return ids


def stream_eids(cluster: LocalCluster, stream: str, shards: int) -> list[str]:
    rc = rc_of(cluster)
    out = []
    for k in shard_keys(stream, shards):
        for _id, fields in rc.xrange(k):
            out.append(json.loads(fields["e"])["payload"]["eid"])
    rc.close()
    return out


def test_publisher_spreads_over_shards_and_nodes(cluster: LocalCluster, cstream: str) -> None:
    ids = publish_known_set(cluster.url, cstream, threads=4, per=500, shards=6)
    got = stream_eids(cluster, cstream, 6)
    assert sorted(got) == sorted(ids)  # every event once
    rc = rc_of(cluster)
    lens = [rc.xlen(k) for k in shard_keys(cstream, 6)]
    assert all(n > 0 for n in lens), lens
    masters = {cluster.master_of(k).port for k in shard_keys(cstream, 6)}
    assert len(masters) == 3
    # one run's events stay on one shard, in order
    for k in shard_keys(cstream, 6):
        runs: dict[str, list[int]] = {}
        for _id, f in rc.xrange(k):
            e = json.loads(f["e"])
            runs.setdefault(e["run"], []).append(int(e["payload"]["eid"].split("-")[1]))
        for seq in runs.values():
            assert seq == sorted(seq)
    rc.close()


def run_cli(cluster: LocalCluster, stream: str, shards: int, *args: str, timeout: float = 60):
    env = {
        **os.environ,
        "AUREN_REDIS_URL": cluster.url,
        "AUREN_STREAM": stream,
        "AUREN_STREAM_SHARDS": str(shards),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "auren_tui", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


PUBLISH_SCRIPT = """
import sys
from auren_core.streams.publisher import Publisher
url, stream, tag, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
pub = Publisher(url, stream, shards=6, stats_interval=3600)
for i in range(n):
    pub.emit("tool_used", {"tool": "p", "eid": f"{tag}-{i}"}, agent=tag, run=f"{tag}-{i % 7}")
assert pub.flush(30)
c = pub.counters()
pub.close()
print(c.sent, c.dropped)
"""


def publish_from_processes(cluster: LocalCluster, stream: str, procs: int, per: int) -> set[str]:
    ps = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISH_SCRIPT, cluster.url, stream, f"p{k}", str(per)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(procs)
    ]
    for p in ps:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0 and out.split() == [str(per), "0"], out
    return {f"p{k}-{i}" for k in range(procs) for i in range(per)}


def test_top_once_json_sees_every_event_once(cluster: LocalCluster, cstream: str) -> None:
    ids = publish_known_set(cluster.url, cstream, threads=3, per=400, shards=6)
    ids |= publish_from_processes(cluster, cstream, procs=2, per=300)
    assert sorted(stream_eids(cluster, cstream, 6)) == sorted(ids)
    out = run_cli(cluster, cstream, 6, "top", "--once", "--json", "--since", "1h")
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout)
    assert state["totals"]["events"] == len(ids) == 1800
    assert state["totals"]["tool_calls"] == 1800
    per_agent = {a["id"] for a in state["agents"]}
    assert {"a0", "a1", "a2", "p0", "p1"} <= per_agent
    assert "redis+cluster://" in out.stderr  # the backends line


async def collect(reader, want: int, timeout: float = 20.0) -> tuple[list, str]:
    import asyncio

    got: list = []
    last = ""

    async def go() -> None:
        nonlocal last
        async for b in reader.batches():
            got.extend(b.items)
            last = b.last_id
            if len(got) >= want:
                return

    await asyncio.wait_for(go(), timeout)
    await reader.close()
    return got, last


def test_sharded_reader_merges_and_resumes_exactly(cluster: LocalCluster, cstream: str) -> None:
    import asyncio

    from auren_core.streams.sharded_reader import ShardedReader

    ids = publish_known_set(cluster.url, cstream, threads=4, per=300, shards=6)
    first, cursor = asyncio.run(
        collect(ShardedReader(cluster.url, cstream, 6, start_id="0-0", batch_count=100), 500)
    )
    assert cursor.startswith("c1.")
    # resume from the middle: the rest, nothing twice, nothing missed
    rest, _ = asyncio.run(
        collect(ShardedReader(cluster.url, cstream, 6, start_id=cursor), len(ids) - len(first))
    )
    eids = [e.payload["eid"] for e in first + rest]
    assert Counter(eids) == Counter(ids)
    # merged by time (within the window: backfill of history is exactly ordered per step)
    ts = [e.ts for e in first]
    assert sum(1 for a, b in itertools.pairwise(ts) if b < a) < len(ts) // 10


def test_sharded_reader_live_tail(cluster: LocalCluster, cstream: str) -> None:
    import asyncio

    from auren_core.streams.sharded_reader import ShardedReader

    async def go() -> list:
        reader = ShardedReader(cluster.url, cstream, 6, start_id="$", block_ms=200)
        task = asyncio.create_task(collect(reader, 600))
        await await_until(lambda: reader.last_id is not None, 'the reader to resolve "$"')
        await asyncio.to_thread(publish_known_set, cluster.url, cstream, 2, 300, 6)
        got, _ = await task
        return got

    got = asyncio.run(go())
    assert len({e.payload["eid"] for e in got}) == 600 == len(got)


def test_persist_shares_shards_and_stores_every_event_once(
    cluster: LocalCluster, cstream: str, pg_dsn: str
) -> None:
    import asyncio
    import time

    import asyncpg

    schema = f"cl_{uuid.uuid4().hex[:8]}"
    ids = publish_known_set(cluster.url, cstream, threads=3, per=400, shards=6)
    env_args = (
        "persist",
        "--pg-dsn",
        pg_dsn,
        "--schema",
        schema,
        "--quiet",
        "--maintain-every",
        "0",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "auren_tui", *env_args, "--consumer", f"c{i}"],
            env={
                **os.environ,
                "AUREN_REDIS_URL": cluster.url,
                "AUREN_STREAM": cstream,
                "AUREN_STREAM_SHARDS": "6",
                "PYTHONPATH": str(ROOT),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(2)
    ]

    async def rows() -> tuple[int, int, list[str]]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            if not await conn.fetchval("SELECT to_regclass($1)", f"{schema}.events"):
                return 0, 0, []
            n = await conn.fetchval(f"SELECT count(*) FROM {schema}.events")
            d = await conn.fetchval(f"SELECT count(DISTINCT payload->>'eid') FROM {schema}.events")
            eids = [r[0] for r in await conn.fetch(f"SELECT payload->>'eid' FROM {schema}.events")]
            return n, d, eids
        finally:
            await conn.close()

    try:
        deadline = time.monotonic() + 60
        n = 0
        while time.monotonic() < deadline:
            n, _d, _ = asyncio.run(rows())
            if n >= len(ids):
                break
            time.sleep(0.3)
        time.sleep(1.0)  # anything extra (a duplicate) would have landed by now
        n, d, eids = asyncio.run(rows())
        assert (n, d) == (len(ids), len(ids))
        assert set(eids) == ids
        # both processes took part: each shard's group has both consumers
        rc = rc_of(cluster)
        consumers = set()
        for k in shard_keys(cstream, 6):
            for c in rc.xinfo_consumers(k, "auren-persist"):
                consumers.add(c["name"])
            assert rc.xinfo_groups(k)[0]["pending"] == 0
        assert consumers == {"c0", "c1"}
        rc.close()
        # export from the store sees every event once
        out = run_cli(
            cluster,
            cstream,
            6,
            "export",
            "--source",
            "pg",
            "--pg-dsn",
            pg_dsn,
            "--schema",
            schema,
            "--format",
            "json",
            "--report",
            "costs",
            "--since",
            "1h",
        )
        assert out.returncode == 0, out.stderr
        pg_report = json.loads(out.stdout)
        out = run_cli(
            cluster,
            cstream,
            6,
            "export",
            "--source",
            "stream",
            "--format",
            "json",
            "--report",
            "costs",
            "--since",
            "1h",
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == pg_report
        rows = pg_report["costs"] if isinstance(pg_report, dict) else pg_report
        per_agent = {r["key"]: r["tool_calls"] for r in rows if r["dimension"] == "agent"}
        assert per_agent == {"a0": 400, "a1": 400, "a2": 400}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        asyncio.run(_drop_schema(pg_dsn, schema))


async def _drop_schema(dsn: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def test_failover_publisher_and_reader_continue(cstream: str) -> None:
    """SIGKILL the master of two shards under a steady load: its replica is promoted, the
    publisher re-sends only what was not acknowledged, the reader follows the new topology."""
    import asyncio
    import time

    from auren_core.streams.sharded_reader import ShardedReader

    with LocalCluster() as c:
        key0 = shard_keys(cstream, 6)[0]
        victim = c.master_of(key0)
        pub = Publisher(c.url, cstream, shards=6, stats_interval=3600, socket_timeout=1.0)
        total = 3000

        def load() -> None:
            for i in range(total):
                pub.emit("tool_used", {"tool": "x", "eid": f"f-{i}"}, agent="a", run=f"r{i % 12}")
                if i == total // 3:
                    c.kill(victim)
                time.sleep(0.002)  # a steady load across the failover (the test)

        async def go() -> tuple[list, float]:
            reader = ShardedReader(c.url, cstream, 6, start_id="0-0", block_ms=200)
            task = asyncio.create_task(collect(reader, total, timeout=90))
            t0 = time.monotonic()
            await asyncio.to_thread(load)
            assert await asyncio.to_thread(pub.flush, 60)
            got, _ = await task
            return got, time.monotonic() - t0

        got, took = asyncio.run(go())
        counters = pub.counters()
        pub.close()
        c.wait_ok(30)
        assert victim.port != c.master_of(key0).port  # a replica was promoted
        assert counters.dropped == 0 and counters.sent >= total
        stored = Counter(stream_eids(c, cstream, 6))
        want = {f"f-{i}" for i in range(total)}
        lost = want - set(stored)
        dup = sum(n - 1 for n in stored.values() if n > 1)
        print(f"failover: {took:.1f}s, lost {len(lost)}, duplicates in stream {dup}")
        assert not lost
        # the reader delivered what the stream holds, each entry once
        assert Counter(e.payload["eid"] for e in got) == stored


def test_doctor_shows_each_shard_node_length_and_lag(cluster: LocalCluster, cstream: str) -> None:
    from auren_core.config import load_settings
    from auren_core.doctor import check_redis

    publish_known_set(cluster.url, cstream, threads=2, per=300, shards=6)
    rc = rc_of(cluster)
    keys = shard_keys(cstream, 6)
    rc.xgroup_create(keys[2], "auren-persist", id="0")
    lens = [rc.xlen(k) for k in keys]
    settings = load_settings(redis_url=cluster.url, stream=cstream, stream_shards=6)
    checks = {c.name: c for c in check_redis(settings)}
    assert checks["cluster"].ok and "3 masters, 3 replicas" in checks["cluster"].detail
    assert checks["stream"].detail.endswith(f"6 shards, {sum(lens)} entries")
    for i, k in enumerate(keys):
        d = checks[f"shard {i}"].detail
        node = rc.get_node_from_key(k)
        assert d.startswith(f"{k} on {node.host}:{node.port}: {lens[i]} entries"), d
    assert f"group auren-persist lag {lens[2]} pending 0" in checks["shard 2"].detail
    rc.close()


def test_doctor_cli_on_cluster(cluster: LocalCluster, cstream: str) -> None:
    publish_known_set(cluster.url, cstream, threads=1, per=60, shards=6)
    out = run_cli(cluster, cstream, 6, "doctor")
    assert "shard 5" in out.stdout + out.stderr, out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_demo_headless_with_shards_and_live_top_reader(redis_url: str) -> None:
    """``auren demo --shards 3`` on a plain Redis writes 3 shard keys; top --once reads them."""
    import redis as redis_mod

    stream = f"auren:demo:{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "AUREN_REDIS_URL": redis_url,
        "AUREN_STREAM": stream,
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "auren_tui",
            "demo",
            "--headless",
            "--duration",
            "4",
            "--shards",
            "3",
            "--rate",
            "5",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    r = redis_mod.Redis.from_url(redis_url)
    try:
        assert out.returncode == 0, out.stderr[-2000:]
        keys = shard_keys(stream, 3)
        lens = [r.xlen(k) for k in keys]
        assert r.xlen(stream) == 0 and sum(lens) > 0 and sum(1 for n in lens if n) >= 2, lens
        top = subprocess.run(
            [sys.executable, "-m", "auren_tui", "top", "--once", "--json"],
            env={**env, "AUREN_STREAM_SHARDS": "3"},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert top.returncode == 0, top.stderr
        assert json.loads(top.stdout)["totals"]["events"] == sum(lens)
    finally:
        r.delete(*shard_keys(stream, 3))


def test_websocket_feed_with_resume_in_the_middle(cluster: LocalCluster, cstream: str) -> None:
    """serve-ws on 6 shards: history from 0-0, a disconnect in the middle of live traffic,
    a resume with the cursor: every event exactly once; a bad cursor is refused."""
    import asyncio

    from server_helpers import collect as ws_collect
    from server_helpers import running, subscribe
    from websockets.exceptions import ConnectionClosed

    async def go() -> None:
        before = await asyncio.to_thread(publish_known_set, cluster.url, cstream, 2, 300, 6)
        async with running(cluster.url, cstream, shards=6) as srv:
            ws, snap = await subscribe(srv.port, since="0-0")
            assert snap["last_id"].startswith("c1.")
            first, cursor = await ws_collect(ws, 450)
            await ws.close()
            live, _ = await subscribe(srv.port, since="now")  # the live fan-out
            # more traffic while the client is away
            pub = Publisher(cluster.url, cstream, shards=6, stats_interval=3600)
            for i in range(600):
                pub.emit("tool_used", {"tool": "y", "eid": f"late-{i}"}, run=f"L{i % 9}")
            assert await asyncio.to_thread(pub.flush, 20)
            pub.close()
            got_live, _ = await ws_collect(live, 600)
            await live.close()
            assert sorted(e["payload"]["eid"] for e in got_live) == sorted(
                f"late-{i}" for i in range(600)
            )
            # one run's events arrive in order
            by_run: dict[str, list[int]] = {}
            for e in got_live:
                by_run.setdefault(e["run"], []).append(int(e["payload"]["eid"][5:]))
            assert all(v == sorted(v) for v in by_run.values())
            assert cursor is not None and cursor.startswith("c1.")
            ws2, _ = await subscribe(srv.port, since=cursor)
            rest, _ = await ws_collect(ws2, 600 + 600 - len(first))
            await ws2.close()
            eids = [e["payload"]["eid"] for e in first + rest]
            want = before | {f"late-{i}" for i in range(600)}
            assert Counter(eids) == Counter(want)  # every event once across the resume
            # a cursor of another shard count: a one-line protocol error
            bad = encode_cursor(["0-0", "0-0"])
            ws3 = await __import__("websockets").connect(f"ws://127.0.0.1:{srv.port}/ws")
            await ws3.send(json.dumps({"type": "subscribe", "since": bad}))
            frame = json.loads(await asyncio.wait_for(ws3.recv(), 5))
            assert frame["type"] == "error" and "2 shards" in frame["reason"], frame
            with __import__("contextlib").suppress(ConnectionClosed):
                await ws3.recv()

    asyncio.run(go())


def test_failover_persist_and_websocket_lose_nothing(cstream: str, pg_dsn: str) -> None:
    """SIGKILL a master under a steady load while `auren persist` stores and a WebSocket
    client is subscribed: the replica is promoted; persist ends with every acknowledged
    event stored once, the WebSocket client gets every event once with no gap."""
    import asyncio
    import time

    import asyncpg
    from server_helpers import running, subscribe

    schema = f"clf_{uuid.uuid4().hex[:8]}"
    total = 3000
    with LocalCluster() as c:
        url = c.all_url
        victim = c.master_of(shard_keys(cstream, 6)[0])
        persist = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "auren_tui",
                "persist",
                "--pg-dsn",
                pg_dsn,
                "--schema",
                schema,
                "--quiet",
                "--maintain-every",
                "0",
                "--claim-idle-ms",
                "1000",
            ],
            env={
                **os.environ,
                "AUREN_REDIS_URL": url,
                "AUREN_STREAM": cstream,
                "AUREN_STREAM_SHARDS": "6",
                "PYTHONPATH": str(ROOT),
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        pub = Publisher(url, cstream, shards=6, stats_interval=3600, socket_timeout=1.0)

        def load() -> None:
            for i in range(total):
                pub.emit("tool_used", {"tool": "x", "eid": f"w-{i}"}, agent="a", run=f"r{i % 12}")
                if i == total // 3:
                    c.kill(victim)
                time.sleep(0.002)  # a steady load across the failover (the test)
            assert pub.flush(60)

        async def rows() -> tuple[int, int]:
            conn = await asyncpg.connect(pg_dsn)
            try:
                if not await conn.fetchval("SELECT to_regclass($1)", f"{schema}.events"):
                    return 0, 0
                return (
                    await conn.fetchval(f"SELECT count(*) FROM {schema}.events"),
                    await conn.fetchval(
                        f"SELECT count(DISTINCT payload->>'eid') FROM {schema}.events"
                    ),
                )
            finally:
                await conn.close()

        async def go() -> list:
            async with running(url, cstream, shards=6) as srv:
                ws, _ = await subscribe(srv.port, since="now")
                got: list = []

                async def recv_all() -> None:
                    while len(got) < total:
                        frame = json.loads(await ws.recv())
                        got.extend(frame["events"])

                task = asyncio.create_task(recv_all())
                await asyncio.to_thread(load)
                with __import__("contextlib").suppress(TimeoutError):
                    await asyncio.wait_for(task, 60)
                print(f"ws got {len(got)}; hub {srv.metrics.events_in}")
                await ws.close()
                return got

        try:
            got = asyncio.run(go())
            stored = Counter(stream_eids(c, cstream, 6))
            want = {f"w-{i}" for i in range(total)}
            assert want <= set(stored)  # everything acknowledged is in the stream
            ws_eids = Counter(e["payload"]["eid"] for e in got)
            assert ws_eids == stored  # the WebSocket client: every entry once, no gap
            deadline = time.monotonic() + 90
            n = d = 0
            while time.monotonic() < deadline:
                n, d = asyncio.run(rows())
                if d >= len(stored):
                    break
                time.sleep(0.5)
            time.sleep(1.0)  # anything extra (a duplicate) would have landed by now
            n, d = asyncio.run(rows())
            print(f"failover persist: rows {n}, distinct {d}, stream {sum(stored.values())}")
            assert d == len(want) and n == sum(stored.values())
        finally:
            pub.close()
            persist.terminate()
            try:
                _, err = persist.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                persist.kill()
                _, err = persist.communicate()
            print("persist stderr:", err[-3000:])
            asyncio.run(_drop_schema(pg_dsn, schema))


def test_token_and_jwt_serve_ws_on_cluster(
    cluster: LocalCluster, cstream: str, tmp_path: Path
) -> None:
    """`auren token` stores its refresh family on the cluster; a bad cluster URL is one line."""
    env_key = str(tmp_path / "keys.json")
    out = run_cli(cluster, cstream, 6, "token", "--keys", env_key, "--init")
    assert out.returncode == 0, out.stderr
    pair = json.loads(out.stdout)
    again = run_cli(
        cluster, cstream, 6, "token", "--keys", env_key, "--refresh", pair["refresh_token"]
    )
    assert again.returncode == 0, again.stderr  # the rotate script ran on the cluster
    reuse = run_cli(
        cluster, cstream, 6, "token", "--keys", env_key, "--refresh", pair["refresh_token"]
    )
    assert reuse.returncode != 0 and "Traceback" not in reuse.stderr  # reuse detected
    bad = subprocess.run(
        [sys.executable, "-m", "auren_tui", "top", "--once", "--json"],
        env={
            **os.environ,
            "AUREN_REDIS_URL": "redis+cluster://127.0.0.1:1",
            "AUREN_STREAM_SHARDS": "6",
            "PYTHONPATH": str(ROOT),
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr, bad.stderr
