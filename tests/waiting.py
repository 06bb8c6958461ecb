"""The one way tests wait for something to happen: poll a condition until it holds.

A fixed sleep either wastes time (the thing happened long before) or flakes (on a loaded
machine it had not happened yet). :func:`wait_until` (threads, plain tests) and
:func:`await_until` (coroutines, Pilot tests) return as soon as the condition holds and
fail with what was awaited, and the last value seen, when it never does.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["await_until", "wait_until"]

T = TypeVar("T")


def _timed_out(what: str, timeout: float, last: Any) -> AssertionError:
    shown = repr(last)
    if len(shown) > 200:
        shown = shown[:200] + "…"
    return AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {shown})")


def wait_until(
    cond: Callable[[], T], what: str, *, timeout: float = 10.0, interval: float = 0.02
) -> T:
    """Call ``cond`` every ``interval`` s until it returns something true (returned), or
    fail after ``timeout`` s saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, got)
        time.sleep(interval)


async def await_until(
    cond: Callable[[], T | Awaitable[T]],
    what: str,
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    pause: Callable[[float], Awaitable[object]] | None = None,
) -> T:
    """:func:`wait_until` on the running loop: ``cond`` may be a coroutine function (an
    HTTP probe); ``pause`` replaces ``asyncio.sleep`` (``pilot.pause``: the app handles
    its messages and timers in between)."""
    sleep = pause or asyncio.sleep
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, got)
        await sleep(interval)
