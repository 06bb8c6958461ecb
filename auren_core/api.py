"""Process-wide publisher and the small emit API for agents' own code.

``emit`` and ``hypothesis`` never raise and never block on the network: they
encode and enqueue onto the process publisher (created on first use from the
environment: ``AUREN_REDIS_URL``, ``AUREN_STREAM``).
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from .publisher import Publisher

__all__ = ["configure", "emit", "get_publisher", "hypothesis", "set_publisher"]

_lock = threading.Lock()
_publisher: Publisher | None = None
_dropped_before_config = 0


def configure(
    redis_url: str | None = None, stream: str | None = None, **publisher_kw: Any
) -> Publisher:
    """Create (or replace) the process publisher. Resolution of the Redis URL follows
    flags > environment > auren.toml > embedded default (see ``auren_core.config``)."""
    from .config import load_settings
    from .embedded import resolve_redis

    settings = load_settings(redis_url=redis_url, stream=stream)
    backend = resolve_redis(settings)
    pub = Publisher(backend.url, settings.stream, **publisher_kw)
    set_publisher(pub)
    return pub


def set_publisher(pub: Publisher | None) -> None:
    global _publisher
    with _lock:
        old, _publisher = _publisher, pub
    if old is not None and old is not pub:
        old.close(timeout=1.0)


def get_publisher() -> Publisher:
    pub = _publisher
    if pub is None:
        with _lock:
            pub = _publisher
        if pub is None:
            pub = configure()
    return pub


def emit(
    type: str,
    payload: dict[str, Any] | None = None,
    *,
    agent: str | None = None,
    run: str | None = None,
) -> None:
    """Publish a custom (or standard) event. Never raises."""
    global _dropped_before_config
    try:
        get_publisher().emit(type, payload, agent=agent, run=run)
    except Exception:
        _dropped_before_config += 1


HypothesisStatus = Literal["formed", "updated", "validated", "rejected"]


def hypothesis(
    hypothesis_id: str,
    status: HypothesisStatus,
    *,
    agent: str | None = None,
    confidence: float | None = None,
    statement: str | None = None,
    run: str | None = None,
) -> None:
    """Record a hypothesis being formed, updated, validated or rejected."""
    emit(
        "hypothesis",
        {
            "hypothesis_id": hypothesis_id,
            "status": status,
            "confidence": confidence,
            "statement": statement,
        },
        agent=agent,
        run=run,
    )
