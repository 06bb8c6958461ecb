"""Shared fixtures: real Redis (configured, else a private server process)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from servers import PrivateRedis, shared_redis_url

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")


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
