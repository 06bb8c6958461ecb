"""Process-wide publisher and the small emit API for agents' own code.

``emit`` and ``hypothesis`` never raise and never block on the network: they
encode and enqueue onto the process publisher, created on first use. Where it sends
(settings: ``AUREN_REDIS_URL``, ``AUREN_STREAM``, auren.toml; else a Redis on localhost;
else an embedded Valkey an auren command started: found, never started from here) is worked
out by the publisher's own thread before its first send, never in the caller's: the first
``emit`` costs what every other one does, plus starting that thread. With nothing to send
to, events are buffered (bounded, drops counted) and stderr says once what to configure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from .events import Hypothesis
from .events.model import _Payload
from .streams.publisher import Publisher

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["NotConfigured", "configure", "emit", "get_publisher", "hypothesis", "set_publisher"]

_lock = threading.Lock()
_publisher: Publisher | None = None
_dropped_before_config = 0


_told = threading.Event()  # the "nothing configured" line is said once per process

NOT_CONFIGURED = (
    "auren: no Redis for the events (none configured, none on localhost:6379, no embedded "
    "Valkey running): buffering them (bounded; drops are counted) until one answers. "
    "Set AUREN_REDIS_URL (or redis_url in auren.toml), or run `auren demo` once to start "
    "the embedded Valkey"
)


class NotConfigured(Exception):
    """No Redis to send to (already said on stderr): the publisher buffers and retries."""

    reported = True


def _resolver(settings: Settings | None = None) -> Callable[[], tuple[str, str, int]]:
    """(Redis URL, stream) from ``settings`` (loaded then, if None): run on the
    publisher's thread, since it may probe localhost and find an embedded server.

    A library never starts a server (an agent's script is not the place for a detached
    ``valkey-server``): with nothing configured or running, this says once on stderr what
    to configure and raises, and the publisher buffers, counts and retries with backoff, so
    a server started later (``auren demo``) is found then."""

    def resolve() -> tuple[str, str, int]:
        import sys

        from .backends import resolve_redis
        from .config import ConfigError, load_settings

        s = load_settings() if settings is None else settings
        try:
            return resolve_redis(s, start=False).url, s.stream, s.stream_shards
        except ConfigError as exc:
            if s.redis_url:  # pragma: no cover - a configured URL resolves without I/O
                raise
            if not _told.is_set():
                _told.set()
                print(NOT_CONFIGURED, file=sys.stderr, flush=True)
            raise NotConfigured(str(exc)) from None

    return resolve


def configure(
    redis_url: str | None = None, stream: str | None = None, **publisher_kw: Any
) -> Publisher:
    """Create (or replace) the process publisher. Resolution of the Redis URL follows
    flags > environment > auren.toml > embedded default (see ``auren_core.config``);
    the settings are checked here (a bad value raises ``ConfigError``), the server is
    found by the publisher's thread."""
    from .config import load_settings

    settings = load_settings(redis_url=redis_url, stream=stream)
    publisher_kw.setdefault("shards", settings.stream_shards)
    pub = Publisher(stream=settings.stream, resolve=_resolver(settings), **publisher_kw)
    set_publisher(pub)
    return pub


def set_publisher(pub: Publisher | None) -> None:
    global _publisher
    with _lock:
        old, _publisher = _publisher, pub
    if old is not None and old is not pub:
        old.close(timeout=1.0)


def get_publisher() -> Publisher:
    """The process publisher, created on first use without touching the network (nor
    reading the settings: its thread does both before the first send)."""
    global _publisher
    pub = _publisher
    if pub is None:
        with _lock:
            pub = _publisher
            if pub is None:
                pub = _publisher = Publisher(resolve=_resolver())
    return pub


def emit(
    type: str,
    payload: _Payload | dict[str, Any] | None = None,
    *,
    agent: str | None = None,
    run: str | None = None,
) -> None:
    """Publish a custom (or standard) event. Never raises.

    ``payload``: a standard type's struct (``auren_core.events.LlmCall(...)`` and so on:
    field names and types checked where it is built), or a dict, sent as given (a custom
    type's payload, or extra fields of your own: readers keep what they do not know)."""
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
        Hypothesis(
            hypothesis_id=hypothesis_id,
            status=status,
            confidence=confidence,
            statement=statement,
        ),
        agent=agent,
        run=run,
    )
