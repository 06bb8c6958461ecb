"""Shared fixtures: real Redis (configured, else a private server process)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis
from servers import PrivateRedis, shared_redis_url

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TESTING", "true")  # no first-run "view your traces?" prompt
# CrewAI (and embedded servers' default data dir) write under $HOME: keep tests out of the real one
_TEST_HOME = tempfile.mkdtemp(prefix="auren-test-home-")
os.environ["HOME"] = _TEST_HOME
os.environ.pop("XDG_DATA_HOME", None)
# a test never picks up a developer's auren.toml
os.environ["AUREN_CONFIG"] = os.path.join(_TEST_HOME, "auren.toml")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = shared_redis_url()
    if url:
        yield url
        return
    with PrivateRedis() as srv:  # a fresh laptop: a private real server
        yield srv.url


@pytest.fixture
def stream(redis_url: str) -> Iterator[str]:
    name = f"auren:test:{uuid.uuid4().hex[:12]}"
    yield name
    redis.Redis.from_url(redis_url).delete(name)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as srv:
        yield srv


@pytest.fixture(scope="session")
def pg_dsn(request: pytest.FixtureRequest) -> str:
    """A real PostgreSQL: AUREN_TEST_PG_DSN, else 127.0.0.1:5432/test, else embedded
    (stopped at the end of the session)."""
    from auren_core.backends import _pg_answers, resolve_postgres, stop_embedded
    from auren_core.config import load_settings

    dsn = os.environ.get("AUREN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    if _pg_answers(dsn):
        return dsn
    settings = load_settings(data_dir=os.path.join(_TEST_HOME, "pg"), pg_dsn=None)
    request.addfinalizer(lambda: stop_embedded(settings))
    return resolve_postgres(settings).url


@pytest.fixture(scope="session", autouse=True)
def _stop_embedded_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests stop every server they start: any embedded Valkey or PostgreSQL still recorded
    under the test HOME or the session's temporary directories (a test's data dir, an
    ``auren`` command run by a test) is stopped when the session ends."""
    yield
    from auren_core.backends import stop_all_under

    for root in (_TEST_HOME, str(tmp_path_factory.getbasetemp())):
        left = stop_all_under(root)
        if left:
            print(f"\nstopped embedded servers left running: {', '.join(left)}")


@pytest.fixture
def schema(pg_dsn: str) -> Iterator[str]:
    """A fresh PostgreSQL schema name for one test, dropped (with everything in it) after."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name

    async def drop() -> None:
        c = await asyncpg.connect(pg_dsn)
        try:
            await c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await c.close()

    import asyncio

    asyncio.run(drop())


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(pg_dsn)
    yield c
    await c.close()
