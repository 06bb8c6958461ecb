"""Plain HTTP on the WebSocket port: responses, CORS, per-address connection rate limit.

websockets answers these through ``process_request`` before any upgrade, so ``/api/...``,
``/healthz`` and ``/metrics`` share the port (and the load balancer) with ``/ws``. Each
response closes its connection (``Connection: close``): simple and stateless.
"""

from __future__ import annotations

import email.utils
import http
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

__all__ = ["RateLimiter", "bearer", "json_response", "origin_allowed", "text_response"]

_encoder = msgspec.json.Encoder()


def _response(
    status: int, body: bytes, content_type: str, extra: Sequence[tuple[str, str]] = ()
) -> Response:
    st = http.HTTPStatus(status)
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *extra,
        ]
    )
    return Response(st.value, st.phrase, headers, body)


def json_response(status: int, doc: Any, extra: Sequence[tuple[str, str]] = ()) -> Response:
    return _response(status, _encoder.encode(doc), "application/json", extra)


def text_response(
    status: int,
    text: str,
    content_type: str = "text/plain; charset=utf-8",
    extra: Sequence[tuple[str, str]] = (),
) -> Response:
    return _response(status, text.encode(), content_type, extra)


def bytes_response(
    status: int, body: bytes, content_type: str, extra: Sequence[tuple[str, str]] = ()
) -> Response:
    return _response(status, body, content_type, extra)


def error(status: int, message: str, extra: Sequence[tuple[str, str]] = ()) -> Response:
    return json_response(status, {"error": message, "status": status}, extra)


def bearer(request: Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """``None`` (no Origin header: not a browser) is always allowed; ``*`` allows all."""
    if origin is None:
        return True
    return "*" in allowed or origin in allowed


class RateLimiter:
    """Token bucket per client address: ``rate`` connections/s with ``burst`` in hand.

    Bounded memory: at most ``max_addresses`` buckets, least recently used dropped.
    ``rate <= 0`` disables the limit.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_addresses: int = 65_536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self.max_addresses = max_addresses
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, address: str) -> bool:
        if self.rate <= 0:
            return True
        now = self.clock()
        tokens, last = self._buckets.pop(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        self._buckets[address] = (tokens, now)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
        return ok

    def retry_after(self) -> int:
        return max(1, int(1.0 / self.rate + 0.999)) if self.rate > 0 else 0
