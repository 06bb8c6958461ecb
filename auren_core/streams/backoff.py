"""The one reconnect delay policy: redis-py's exponential backoff with full jitter.

Every loop that retries a server (the publisher, the stream reader, the replay source, the
PostgreSQL sink) asks :func:`reconnect_backoff` for its policy and sleeps
``policy.compute(failures)`` after its ``failures``-th consecutive failure: 50 ms doubling
per failure, capped, times a random factor in [0, 1) so that many clients restarted by one
outage do not retry in step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.backoff import AbstractBackoff

__all__ = ["BASE_S", "reconnect_backoff"]

BASE_S = 0.05


def reconnect_backoff(cap: float = 2.0) -> AbstractBackoff:
    """A fresh policy (stateless: callers count their own failures)."""
    from redis.backoff import ExponentialWithJitterBackoff

    return ExponentialWithJitterBackoff(base=BASE_S, cap=cap)  # type: ignore[no-untyped-call]
