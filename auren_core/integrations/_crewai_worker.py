"""Our own conversion thread ("tap" dispatch, the default).

The emission tap hands each event, with its ordering facts, to this worker's
queue: the agent's thread pays a few dictionary operations and a deque append
(no wake-up while the worker is active: it polls, every ``poll_s`` after
work and backing off to ``max_poll_s``, for ``linger_s`` after the last event,
then sleeps until an emitting thread wakes it). The worker converts in
emission order, off CrewAI's threads, and enqueues the encoded events on the
publisher. Measured on a scripted crew, this costs a
fraction of routing every event through CrewAI's async handler dispatch
(coroutine + cross-thread future per event), and unlike CrewAI's sync handler
pool it is not held up by CrewAI's own slow handlers (in 1.6.1 the console
listener's ``TaskStartedEvent`` handler waits up to 5 s when the crew is not
verbose, blocking a pool worker).
"""

from __future__ import annotations

import atexit
import collections
import os
import threading
import time
from typing import Any

from ._crewai_convert import Converter
from ._crewai_tap import Meta

__all__ = ["Worker"]


class Worker:
    """A bounded queue drained by one daemon thread, in order."""

    def __init__(
        self,
        converter: Converter,
        *,
        max_queue: int = 100_000,
        poll_s: float = 0.005,
        max_poll_s: float = 0.05,
        linger_s: float = 1.0,
    ) -> None:
        self.converter = converter
        self.max_queue = max_queue
        self.poll_s = poll_s  # while active: convert in batches every poll_s ...
        self.max_poll_s = max_poll_s  # ... doubling up to max_poll_s while nothing comes
        self.linger_s = linger_s  # then, after linger_s without events, sleep until woken
        self.dropped = 0
        self._q: collections.deque[tuple[Any, Any, Meta]] = collections.deque()
        self._wake = threading.Event()
        self._idle = True
        self._busy = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        atexit.register(self.drain, 2.0)

    def __len__(self) -> int:
        return len(self._q) + self._busy

    def put(self, source: Any, event: Any, meta: Meta) -> None:
        """The tap's sink: called in the emitting thread. Never raises, never blocks."""
        if self._pid != os.getpid():  # forked child: the thread did not come along
            self._pid = os.getpid()
            self._q.clear()
            self._thread = None
            self._idle, self._busy = True, False
        q = self._q
        if len(q) >= self.max_queue:
            try:
                q.popleft()
                self.dropped += 1
            except IndexError:
                pass
        q.append((source, event, meta))
        if self._thread is None:
            self._start()
        if self._idle:  # only after linger_s of silence: one wake-up per burst
            self._idle = False
            self._wake.set()

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is converted. True when empty."""
        deadline = time.monotonic() + timeout
        while self._q or self._busy:
            if time.monotonic() > deadline:
                return False
            if self._thread is None:
                self._start()
            self._wake.set()
            time.sleep(0.0005)
        return True

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                t = threading.Thread(target=self._run, name="auren-crewai", daemon=True)
                self._thread = t
                t.start()

    def _run(self) -> None:
        q = self._q
        convert = self.converter.convert
        last_work = 0.0
        poll = self.poll_s
        while True:
            if q:
                self._busy = True
                try:
                    while q:
                        source, event, meta = q.popleft()
                        convert(source, event, meta)
                finally:
                    self._busy = False
                last_work = time.monotonic()
                poll = self.poll_s
            elif time.monotonic() - last_work >= self.linger_s:
                self._idle = True
                if not q:  # re-check after publishing idleness (no lost wake-up)
                    self._wake.wait(timeout=1.0)
                self._wake.clear()
                self._idle = False
                continue
            else:  # recently active, nothing queued: back off towards max_poll_s
                poll = min(poll * 2, self.max_poll_s)
            # recently active: poll, so emitting threads never pay a wake-up
            time.sleep(poll)
