"""Sharded streams: key naming, shard choice, cluster clients and resume cursors.

With ``AUREN_STREAM_SHARDS=1`` (the default) the stream is the one key ``AUREN_STREAM``
(``auren:events``), exactly as before. With ``N > 1`` the stream is N keys, one per shard::

    {auren:events:0}  {auren:events:1}  ...  {auren:events:<i>}  (or {auren:events:<i>.<k>})

The whole key is a Redis Cluster *hash tag* (``{...}``), so each shard lives in one slot and
every per-shard command (XADD, XREAD, XREADGROUP, XAUTOCLAIM) is single-slot. Shard ``i``'s
tag is ``<stream>:<i>`` when that tag's slot falls in the i-th of N equal slot ranges, else
``<stream>:<i>.<k>`` for the smallest ``k >= 1`` that does: a pure function of (stream, N, i)
that every process computes alike, and on a cluster whose slots are split evenly between its
masters (what ``--cluster create`` does) the N keys spread evenly over the masters (6 shards
on 3 masters: shards 0-1 on the first, 2-3 on the second, 4-5 on the third).

The shard of an event is a stable hash (CRC32) of its run id, so one run's events stay in
order on one shard; an event without a run is placed by its agent id, else round robin.

A resume position over N shards is a **cursor**: ``c1.`` + base64url(JSON list of each
shard's last id). It is opaque to clients; a plain stream id (``0-0``, ``1712-3``) or
``now``/``$`` applies to every shard.

URLs: ``redis+cluster://HOST:PORT`` (``rediss+cluster://`` for TLS, ``valkey+cluster://``)
names any node of a cluster (the rest are discovered; ``redis+cluster://h1:p1,h2:p2`` gives
several, so a process started while one node is down still finds the cluster); the
clients are redis-py's
``RedisCluster`` (sync and asyncio), which follow MOVED/ASK redirections and refresh the
slot map after a failover.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = [
    "CLUSTER_SCHEMES",
    "CursorError",
    "async_client",
    "decode_cursor",
    "encode_cursor",
    "is_cluster_url",
    "plain_url",
    "shard_keys",
    "shard_of",
    "sync_client",
]

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster", "valkey+cluster", "valkeys+cluster")
CURSOR_PREFIX = "c1."
MAX_SHARDS = 1024


class CursorError(ValueError):
    """A ``since`` that is neither a stream id nor a cursor for this many shards."""


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def plain_url(url: str) -> str:
    """``redis+cluster://h:p`` -> ``redis://h:p`` (what redis-py parses)."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() in CLUSTER_SCHEMES:
        base = scheme.lower().split("+", 1)[0]
        base = {"valkey": "redis", "valkeys": "rediss"}.get(base, base)
        return f"{base}{sep}{rest}"
    return url


def _tag_ok(tag: str, n: int, i: int) -> bool:
    slot = key_slot(tag.encode())
    return i * REDIS_CLUSTER_HASH_SLOTS // n <= slot < (i + 1) * REDIS_CLUSTER_HASH_SLOTS // n


def shard_keys(stream: str, n: int) -> list[str]:
    """The stream keys of ``n`` shards (``[stream]`` for one: today's key, unchanged)."""
    if n <= 1:
        return [stream]
    keys: list[str] = []
    for i in range(n):
        tag = f"{stream}:{i}"
        k = 0
        while not _tag_ok(tag, n, i) and k < 100_000:
            k += 1
            tag = f"{stream}:{i}.{k}"
        keys.append("{" + tag + "}")
    return keys


def shard_of(run: str | None, agent: str | None, n: int, counter: int) -> int:
    """Which shard an event goes to: by run, else by agent, else round robin (``counter``)."""
    if n <= 1:
        return 0
    key = run or agent
    if key:
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) % n
    return counter % n


def shard_of_entry(data: bytes, n: int, counter: int) -> int:
    """The shard of an already-encoded entry (its ``run``/``agent`` fields)."""
    if n <= 1:
        return 0
    try:
        obj = json.loads(data)
    except ValueError:
        return counter % n
    if not isinstance(obj, dict):
        return counter % n
    run, agent = obj.get("run"), obj.get("agent")
    return shard_of(
        run if isinstance(run, str) else None, agent if isinstance(agent, str) else None,
        n, counter,
    )


# --------------------------------------------------------------------------- cursors


def encode_cursor(ids: list[str]) -> str:
    """Every shard's last id as one opaque string (a plain id for one shard)."""
    if len(ids) == 1:
        return ids[0]
    raw = json.dumps(ids, separators=(",", ":")).encode()
    return CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, n: int) -> list[str]:
    """The per-shard ids of ``cursor``; a plain id (or ``$``) applies to every shard.
    Raises :class:`CursorError` for a cursor of another shard count or a malformed one."""
    if not cursor.startswith(CURSOR_PREFIX):
        return [cursor] * n
    ids = _ids(cursor)
    if len(ids) != n:
        raise CursorError(f"cursor is for {len(ids)} shards, the stream has {n}")
    from .entries import parse_stream_id

    try:
        for x in ids:
            parse_stream_id(x)
    except ValueError:
        raise CursorError("malformed cursor") from None
    return ids


def cursor_after(a: str, b: str) -> bool:
    """True when position ``a`` is after ``b`` on at least one shard (plain ids: ``a > b``).
    Both are positions of the same stream (the same shard count)."""
    from .entries import parse_stream_id

    if not a.startswith(CURSOR_PREFIX) and not b.startswith(CURSOR_PREFIX):
        return parse_stream_id(a) > parse_stream_id(b)
    ia = _ids(a)
    ib = _ids(b)
    n = max(len(ia), len(ib))
    ia = ia * n if len(ia) == 1 else ia
    ib = ib * n if len(ib) == 1 else ib
    return any(parse_stream_id(x) > parse_stream_id(y) for x, y in zip(ia, ib, strict=True))


def _ids(cursor: str) -> list[str]:
    if not cursor.startswith(CURSOR_PREFIX):
        return [cursor]
    body = cursor[len(CURSOR_PREFIX):]
    try:
        ids = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error):
        raise CursorError("malformed cursor") from None
    if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
        raise CursorError("malformed cursor")
    return list(ids)


# --------------------------------------------------------------------------- clients


def sync_client(url: str, **kw: Any) -> Any:
    """A ``redis.Redis`` or, for a cluster URL, a ``redis.cluster.RedisCluster``."""
    import redis

    if is_cluster_url(url):
        from redis.cluster import ClusterNode, RedisCluster

        kw.pop("health_check_interval", None)
        first, more = _split_nodes(url)
        if more:
            kw["startup_nodes"] = [ClusterNode(h, p) for h, p in more]  # type: ignore[no-untyped-call]
        return RedisCluster.from_url(plain_url(first), **kw)
    return redis.Redis.from_url(url, **kw)


def _split_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """``redis+cluster://h1:p1,h2:p2/`` -> (URL of h1:p1, every node as (host, port)):
    several startup nodes, so that a client made while one node is down finds the rest."""
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")
    parts = [h for h in hosts.split(",") if h]
    if len(parts) <= 1:
        return url, []
    nodes = []
    for h in parts:
        host, _, port = h.rpartition(":")
        nodes.append((host or h, int(port) if port.isdigit() else 6379))
    first = f"{scheme}://{auth}{at}{parts[0]}{slash}{path}"
    return first, nodes


def async_client(url: str, **kw: Any) -> Any:
    """A ``redis.asyncio.Redis`` or, for a cluster URL, a ``redis.asyncio.RedisCluster``."""
    import redis.asyncio as aioredis

    if is_cluster_url(url):
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        kw.pop("health_check_interval", None)
        first, more = _split_nodes(url)
        if more:
            kw["startup_nodes"] = [ClusterNode(h, p) for h, p in more]
        return RedisCluster.from_url(plain_url(first), **kw)
    return aioredis.Redis.from_url(url, **kw)
