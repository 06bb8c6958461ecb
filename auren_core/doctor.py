"""``auren doctor``: check every backend and the stream, and say what to fix.

Pure-ish: :func:`run_checks` returns :class:`Check` values; the CLI prints them.
Nothing here starts a server: doctor reports what is, it does not change it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings
from .events import Event, PublisherStats
from .streams.entries import decode_entry

__all__ = ["Check", "run_checks"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    critical: bool = True


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def check_redis(settings: Settings) -> list[Check]:

    from .backends import resolve_redis

    try:
        backend = resolve_redis(settings, start=False)
    except Exception as exc:
        return [
            Check(
                "redis",
                False,
                f"no Redis: {exc}",
                "set AUREN_REDIS_URL, start redis-server, or run `auren demo` "
                "(it starts an embedded Valkey)",
            )
        ]
    from .streams.shards import is_cluster_url, sync_client

    out: list[Check] = []
    cluster = is_cluster_url(backend.url)
    try:
        r = sync_client(backend.url, socket_timeout=2, socket_connect_timeout=2)
        t0 = time.perf_counter()
        r.ping()
        rtt = (time.perf_counter() - t0) * 1000
        info: Any = r.info("server", target_nodes=r.get_default_node()) if cluster else (
            r.info("server")
        )
        out.append(
            Check(
                "redis",
                True,
                f"{backend.description}; {info.get('redis_version', '?')}, ping {rtt:.1f} ms",
            )
        )
    except Exception as exc:
        return [
            Check(
                "redis",
                False,
                f"{backend.description}: {type(exc).__name__}: {exc}",
                "check the URL, password and TLS (rediss://) in AUREN_REDIS_URL",
            )
        ]
    if cluster:
        out.append(cluster_check(r))
    if settings.stream_shards > 1:
        out.extend(shard_checks(r, settings.stream, settings.stream_shards, backend.url))
    else:
        out.extend(check_stream(r, settings.stream))
    out.extend(maintenance_hash_check(r, settings.stream))  # even while the stream is empty
    return out


def cluster_check(r: Any) -> Check:
    """State of a Redis Cluster: ok, masters and replicas as the client's slot map has them."""
    try:
        raw: Any = r.cluster_info(target_nodes=r.get_default_node())
        state = _s(raw.get("cluster_state", "?"))
        nodes: Any = r.cluster_nodes()  # {addr: {flags, ...}} from CLUSTER NODES
        flags = [_s(n.get("flags", "")) for n in nodes.values()]
        masters = sum(1 for f in flags if "master" in f and "fail" not in f)
        replicas = sum(1 for f in flags if "slave" in f and "fail" not in f)
        failed = sum(1 for f in flags if "fail" in f)
        detail = f"state {state}, {masters} masters, {replicas} replicas" + (
            f", {failed} failed" if failed else ""
        )
        return Check(
            "cluster", state == "ok", detail, "a master without a replica is down: see "
            "CLUSTER NODES on any node", critical=False,
        )
    except Exception as exc:
        return Check("cluster", False, f"{type(exc).__name__}: {exc}", "", critical=False)


def shard_checks(r: Any, stream: str, shards: int, url: str) -> list[Check]:
    """One line per shard: its key, the node serving it, its length and its groups' lag."""
    from urllib.parse import urlsplit

    from .streams.shards import is_cluster_url, plain_url, shard_keys

    out: list[Check] = []
    total = 0
    here = urlsplit(plain_url(url)).netloc.rpartition("@")[2]
    for i, key in enumerate(shard_keys(stream, shards)):
        node = here
        if is_cluster_url(url):
            with contextlib.suppress(Exception):
                node = r.get_node_from_key(key).name
        try:
            length = int(r.xlen(key))
        except Exception as exc:
            out.append(Check(f"shard {i}", False, f"{key} on {node}: {exc}",
                             "the node serving this shard does not answer", critical=False))
            continue
        total += length
        groups = []
        ok = True
        with contextlib.suppress(Exception):
            for g in r.xinfo_groups(key):
                lag, pending = g.get("lag"), int(g.get("pending", 0))
                ok = ok and (lag or 0) < 10_000 and pending < 10_000
                groups.append(f"group {_s(g['name'])} lag {lag} pending {pending}")
        detail = f"{key} on {node}: {length} entries" + (
            f"; {', '.join(groups)}" if groups else "; no consumer group"
        )
        out.append(Check(f"shard {i}", ok, detail,
                         "a shard's group is behind: is `auren persist` running?",
                         critical=False))
    out.insert(0, Check("stream", total > 0, f"{stream!r}: {shards} shards, {total} entries",
                        "no agent has published yet", critical=False))
    return out


def otlp_checks(receivers: dict[str, PublisherStats]) -> list[Check]:
    """One line per serve-otlp receiver seen in the newest entries."""
    out: list[Check] = []
    for who, p in sorted(receivers.items()):
        reasons = p.rejected_by_reason or {}
        why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) if reasons else ""
        rejected, evicted = int(p.rejected or 0), int(p.evicted or 0)
        out.append(
            Check(
                f"otlp {who.removeprefix('otlp:')}",
                rejected == 0 and evicted == 0,
                f"spans received {p.received or 0}, converted {p.converted or 0}, "
                f"rejected {rejected}{f' ({why})' if why else ''}, evicted traces {evicted}, "
                f"expired {p.expired or 0}, buffered {p.buffered or 0}",
                "an exporter sends spans serve-otlp refuses (see the reasons) or traces "
                "that never complete: see docs/otlp.md",
                critical=False,
            )
        )
    return out


def check_stream(r: Any, stream: str) -> list[Check]:
    out: list[Check] = []
    length = int(r.xlen(stream))
    if length == 0:
        return [
            Check(
                "stream",
                False,
                f"{stream!r} is empty or missing",
                "no agent has published yet: call auren_core.instrument() in your crew "
                "or run `auren demo`",
                critical=False,
            )
        ]
    last: Any = r.xrevrange(stream, count=2000)
    newest = decode_entry(*last[0])
    age = time.time() - newest.ts if isinstance(newest, Event) else None
    age_txt = f", newest event {age:.0f} s ago" if age is not None else ""
    out.append(Check("stream", True, f"{stream!r}: {length} entries{age_txt}"))
    malformed = 0
    drops: dict[str, int] = {}
    otlp: dict[str, PublisherStats] = {}  # serve-otlp receivers: their latest counters
    for sid, fields in last:
        ev = decode_entry(sid, fields)
        if not isinstance(ev, Event):
            malformed += 1
        elif ev.type == "publisher_stats":
            p: PublisherStats = ev.payload  # decoded: the struct
            who = str(p.publisher or "?")
            drops.setdefault(who, int(p.dropped or 0))
            if p.kind == "otlp":
                otlp.setdefault(who, p)
    out.append(
        Check(
            "malformed",
            malformed == 0,
            f"{malformed} malformed in the newest {len(last)} entries",
            "a producer writes entries that are not v1 events: see docs/event.schema.json",
            critical=False,
        )
    )
    dropped = sum(drops.values())
    out.append(
        Check(
            "publisher drops",
            dropped == 0,
            f"{dropped} events dropped by {len(drops)} publisher(s) (latest publisher_stats)"
            if drops
            else "no publisher_stats in the newest entries",
            "Redis was unreachable or slow for a publisher: raise buffer_size or check the network",
            critical=False,
        )
    )
    out.extend(otlp_checks(otlp))
    with contextlib.suppress(Exception):
        for g in r.xinfo_groups(stream):
            name, lag, pending = _s(g["name"]), g.get("lag"), int(g.get("pending", 0))
            ok = (lag or 0) < 10_000 and pending < 10_000
            out.append(
                Check(
                    f"group {name}",
                    ok,
                    f"lag {lag}, pending {pending}, consumers {g.get('consumers')}",
                    "the consumer group is behind: is `auren persist` running? is "
                    "PostgreSQL reachable?",
                    critical=False,
                )
            )
    return out


def maintenance_hash_check(r: Any, stream: str, now: float | None = None) -> list[Check]:
    """The latest ``auren persist`` maintenance run, as the sink published it in Redis
    (nothing when no sink ever ran maintenance on this stream)."""
    from .store.schema import maintenance_key

    try:
        raw: Any = r.hgetall(maintenance_key(stream))
    except Exception:
        return []
    if not raw:
        return []
    f = {_s(k): _s(v) for k, v in raw.items()}

    def num(k: str) -> float:
        try:
            return float(f.get(k) or 0)
        except ValueError:
            return 0.0

    now = time.time() if now is None else now
    failing, total = int(num("failing")), int(num("failures_total"))
    ago = now - num("last_run")
    ok_txt = f", last success {now - num('last_ok'):.0f} s ago" if num("last_ok") else ""
    detail = f"last run {ago:.0f} s ago{ok_txt}; {failing} failing, {total} failures in all"
    if failing and f.get("last_error"):
        detail += f": {f['last_error'][:300]}"
    return [
        Check(
            "maintenance",
            failing == 0,
            detail,
            "rollups or retention of `auren persist` fail: the days named keep their detail "
            "(and their disk) until fixed; see the persist log and `auren doctor` "
            "postgresql maintenance lines",
            critical=False,
        )
    ]


def maintenance_checks(rows: list[dict[str, Any]], now: float | None = None) -> list[Check]:
    """Checks from ``maintenance_status`` rows (:func:`auren_core.store.retention.read_status`):
    the latest run, then one line per failing step."""
    now = time.time() if now is None else now
    out: list[Check] = []
    for row in rows:
        if row["step"] == "run":
            out.append(
                Check(
                    "maintenance run",
                    bool(row["ok"]),
                    f"last run {now - row['at']:.0f} s ago, {row['failures']} step(s) failed",
                    "see the failing steps below and the `auren persist` log",
                    critical=False,
                )
            )
        elif not row["ok"]:
            out.append(
                Check(
                    f"maintenance {row['step']} {row['target']}",
                    False,
                    f"failed {row['failures']} time(s), last {now - row['at']:.0f} s ago: "
                    f"{row['error'][:300]}",
                    "the day keeps its detailed partition (and its disk) until this step "
                    "succeeds; the other days are maintained as usual",
                    critical=False,
                )
            )
    return out


def check_postgres(settings: Settings, schema: str = "auren") -> list[Check]:
    """The PostgreSQL check, then the maintenance status of the event store in ``schema``
    (:func:`maintenance_checks`)."""
    from .backends import resolve_postgres
    from .store.retention import read_status

    try:
        backend = resolve_postgres(settings, start=False)
    except Exception as exc:
        return [
            Check(
                "postgresql",
                False,
                f"no PostgreSQL: {exc}",
                "set AUREN_PG_DSN or run `auren demo` (embedded PostgreSQL); only "
                "`auren persist` and long exports need it",
                critical=False,
            )
        ]

    async def probe() -> tuple[str, list[dict[str, Any]]]:
        import asyncpg

        conn = await asyncpg.connect(backend.url, timeout=3)
        try:
            version = str(await conn.fetchval("SHOW server_version"))
            try:
                rows = await read_status(conn, schema)
            except Exception as exc:  # unreadable status: say so, the server still answers
                rows = [
                    {"step": "status", "target": schema, "ok": False, "failures": 1,
                     "at": time.time(), "error": f"{type(exc).__name__}: {exc}"}
                ]  # fmt: skip
            return version, rows
        finally:
            await conn.close()

    try:
        version, rows = asyncio.run(probe())
    except Exception as exc:
        return [
            Check(
                "postgresql",
                False,
                f"{backend.description}: {type(exc).__name__}: {exc}",
                "check AUREN_PG_DSN (host, port, user, database) and that the server runs",
                critical=False,
            )
        ]
    return [
        Check("postgresql", True, f"{backend.description}; server {version}", critical=False),
        *maintenance_checks(rows),
    ]


def check_chroma(settings: Settings) -> Check:
    if settings.chroma_url:
        url = settings.chroma_url.rstrip("/") + "/api/v2/heartbeat"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310  (http(s) only: validated in config)
                return Check("chromadb", resp.status == 200, f"{url}: HTTP {resp.status}")
        except Exception as exc:
            return Check(
                "chromadb",
                False,
                f"{url}: {exc}",
                "check AUREN_CHROMA_URL or unset it to use a local directory",
                critical=False,
            )
    from .backends import resolve_chroma

    path = Path(resolve_chroma(settings).url)
    if path.exists() and not path.is_dir():
        return Check("chromadb", False, f"{path} is not a directory", "fix AUREN_CHROMA_PATH")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    ok = parent.is_dir() and os.access(parent, os.W_OK)
    return Check(
        "chromadb",
        ok,
        f"local directory {path} ({'exists' if path.exists() else 'created on first use'})",
        "" if ok else f"create {parent} or set AUREN_CHROMA_PATH",
        critical=False,
    )


def run_checks(settings: Settings, schema: str = "auren") -> list[Check]:
    checks = check_redis(settings)
    checks.extend(check_postgres(settings, schema))
    checks.append(check_chroma(settings))
    return checks
