"""Event-loop ownership of the tier connections, and the home of the sync face.

Connections (redis.asyncio, asyncpg) belong to one event loop: the "home" loop.
An async call from another running loop is forwarded to the home loop; a home
loop that has finished is replaced (its clients are dropped first). CrewAI runs
tools in worker threads with no event loop: the sync face runs the async core on
a private loop on a daemon thread and blocks on ``run_coroutine_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["HomeLoop", "LoopThread", "WrongLoopError"]

T = TypeVar("T")


class WrongLoopError(RuntimeError):
    """A sync method was called from the event loop that owns the connections
    (it would deadlock): use the async method there."""


class LoopThread:
    """An event loop running forever on a daemon thread."""

    def __init__(self, name: str = "auren-memory") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def stop(self, timeout: float = 2.0) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not threading.current_thread():
            self.thread.join(timeout)


def _alive(loop: asyncio.AbstractEventLoop | None) -> bool:
    return loop is not None and not loop.is_closed() and loop.is_running()


class HomeLoop:
    """Runs coroutines on the loop that owns the connections.

    ``on_rebind`` is called (under the lock) when the home moves to another loop,
    so the owner can forget clients bound to the old one.
    """

    def __init__(self, on_rebind: Callable[[], None]) -> None:
        self._on_rebind = on_rebind
        self.home: asyncio.AbstractEventLoop | None = None
        self._private: LoopThread | None = None
        self._lock = threading.Lock()

    def _bind(self, loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
        home = self.home
        if home is loop:
            return loop
        with self._lock:
            home = self.home
            if not _alive(home):
                if home is not None:
                    self._on_rebind()
                self.home = loop
                return loop
            assert home is not None
            return home

    async def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        loop = asyncio.get_running_loop()
        home = self._bind(loop)
        if home is loop:
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), home))

    def run_sync(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
        """Block until done (``concurrent.futures.TimeoutError`` after ``timeout``)."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with self._lock:
            home = self.home
            if not _alive(home):
                if self._private is None or self._private.loop.is_closed():
                    self._private = LoopThread()
                if home is not None and home is not self._private.loop:
                    self._on_rebind()
                self.home = home = self._private.loop
        if home is running:
            raise WrongLoopError("load_sync/save_sync called on the memory's own loop: await it")
        assert home is not None
        return asyncio.run_coroutine_threadsafe(make(), home).result(timeout)

    def alive(self) -> bool:
        return _alive(self.home)

    def stop_private(self) -> None:
        private, self._private = self._private, None
        if private is not None:
            private.stop()
