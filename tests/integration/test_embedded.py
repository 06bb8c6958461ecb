"""Embedded Valkey/PostgreSQL: started once, found again by other processes, stopped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
import redis

from auren_core.backends import (
    _pg_answers,
    describe_backends,
    resolve_chroma,
    resolve_postgres,
    resolve_redis,
    stop_embedded,
)
from auren_core.config import ConfigError, load_settings

FIND = """
import sys
from auren_core.config import load_settings
from auren_core.backends import resolve_redis
s = load_settings(data_dir=sys.argv[1])
print(resolve_redis(s, probe_local=False).url)
"""


def test_embedded_valkey_shared_between_processes(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path))
    try:
        # two processes racing to start it get one server (file lock + runtime file)
        procs = [
            subprocess.Popen([sys.executable, "-c", FIND, str(tmp_path)], stdout=subprocess.PIPE)
            for _ in range(2)
        ]
        urls = {p.communicate(timeout=60)[0].decode().strip() for p in procs}
        assert len(urls) == 1, urls
        url = urls.pop()
        backend = resolve_redis(settings, probe_local=False)
        assert backend.kind == "embedded" and backend.url == url
        r = redis.Redis.from_url(url)
        r.xadd("s", {"e": "x"})
        assert r.xlen("s") == 1
        assert "redis embedded" in describe_backends(backend)
    finally:
        assert "valkey" in stop_embedded(settings)
    with pytest.raises(ConfigError, match="no Redis"):
        resolve_redis(settings, probe_local=False, start=False)


def test_configured_url_wins(tmp_path: Path) -> None:
    s = load_settings(data_dir=str(tmp_path), redis_url="redis://10.0.0.1:6379/0")
    assert resolve_redis(s).kind == "configured"
    assert resolve_chroma(s).kind == "embedded"
    assert resolve_chroma(load_settings(chroma_url="http://h:8000")).kind == "configured"


def test_embedded_refused_when_disabled(tmp_path: Path) -> None:
    s = load_settings(data_dir=str(tmp_path), embedded=False)
    with pytest.raises(ConfigError):
        resolve_redis(s, probe_local=False)


@pytest.mark.slow
async def test_embedded_postgres(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path))
    try:
        backend = resolve_postgres(settings, probe_local=False)
        assert backend.kind == "embedded"
        conn = await asyncpg.connect(backend.url)
        assert await conn.fetchval("select 1") == 1
        await conn.close()
        # a second resolution finds the running one through the runtime file
        assert resolve_postgres(settings, probe_local=False, start=False).url == backend.url
    finally:
        assert "postgresql" in stop_embedded(settings)
    assert not _pg_answers(backend.url)
