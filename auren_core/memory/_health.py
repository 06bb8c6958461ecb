"""Per-tier failure memory: a tier that just failed is skipped for a while.

Without it a dead tier would add its full timeout to every read. After each
consecutive failure the tier is skipped for ``base * 2**(n-1)`` seconds (capped);
the next read after that window retries it (reconnecting lazily), and one success
resets it.
"""

from __future__ import annotations

import time

__all__ = ["TierHealth", "describe"]


def describe(exc: BaseException) -> str:
    """One short line for the ``errors`` map of an event (no traceback, bounded)."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text[:200]


class TierHealth:
    __slots__ = ("base", "cap", "down_until", "failures", "last_error")

    def __init__(self, base: float = 1.0, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self.down_until = 0.0
        self.last_error = ""

    def available(self) -> bool:
        return self.failures == 0 or time.monotonic() >= self.down_until

    def ok(self) -> None:
        if self.failures:
            self.failures = 0
            self.down_until = 0.0

    def failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        delay = min(self.cap, self.base * 2 ** min(self.failures - 1, 16))
        self.down_until = time.monotonic() + delay

    def skipped_reason(self) -> str:
        left = max(0.0, self.down_until - time.monotonic())
        return f"skipped: down ({self.last_error}); retry in {left:.1f}s"
