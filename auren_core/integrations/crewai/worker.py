"""The conversion queue of "tap" dispatch (the default), drained by the publisher's thread.

The emission tap hands each event, with its ordering facts, to this queue: the
agent's thread pays a few dictionary operations, a deque append and, only when
the publisher's thread sleeps, one wake-up. The publisher's thread (this queue
is one of its :class:`~auren_core.streams.publisher.Source`\\ s) converts the queued
events in emission order right before each send, so one wake-up converts *and*
sends a batch: on this machine a thread wake-up costs on the order of 100 us of
CPU, more than converting a few events, and the publisher's adaptive linger
lets a crew's bursts gather into one batch. Unlike CrewAI's sync handler pool
it is not held up by CrewAI's own slow handlers (in 1.6.1 the console
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

from ...streams.publisher import Publisher
from .convert import Converter
from .tap import Meta

__all__ = ["Worker"]

PULL_MAX = 5_000  # events converted per pull (a send follows each pull)


class Worker:
    """A bounded queue of tapped events, converted by the publisher's thread, in order."""

    def __init__(self, converter: Converter, *, max_queue: int = 100_000) -> None:
        self.converter = converter
        self.max_queue = max_queue
        self.dropped = 0
        self._q: collections.deque[tuple[Any, Any, Meta]] = collections.deque()
        self._busy = False
        self._attached: Publisher | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        atexit.register(self.drain, 2.0)

    def __len__(self) -> int:
        return len(self._q) + self._busy

    @property
    def publisher(self) -> Publisher:
        """The publisher whose thread converts this queue (the converter's current one)."""
        pub = self.converter.publisher
        if pub is not self._attached:
            with self._lock:
                if self._attached is not None and self._attached is not pub:
                    self._attached.detach(self)
                pub.attach(self)
                self._attached = pub
        return pub

    def put(self, source: Any, event: Any, meta: Meta) -> None:
        """The tap's sink: called in the emitting thread. Never raises, never blocks."""
        if self._pid != os.getpid():  # forked child: the parent's queue is not ours
            self._pid = os.getpid()
            self._q.clear()
            self._busy = False
        q = self._q
        if len(q) >= self.max_queue:
            try:
                q.popleft()
                self.dropped += 1
            except IndexError:
                pass
        q.append((source, event, meta))
        self.publisher.poke()

    # ------------------------------------------------------------------ Source protocol
    def pending(self) -> bool:
        return bool(self._q)

    def pull(self) -> None:
        """Convert what is queued (in the publisher's thread), in emission order."""
        q = self._q
        convert = self.converter.convert
        self._busy = True
        try:
            for _ in range(min(len(q), PULL_MAX)):
                source, event, meta = q.popleft()
                convert(source, event, meta)
        finally:
            self._busy = False

    def detach(self) -> None:
        """Stop being pulled (the listener is uninstalled)."""
        with self._lock:
            if self._attached is not None:
                self._attached.detach(self)
                self._attached = None

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is converted. True when empty."""
        deadline = time.monotonic() + timeout
        while self._q or self._busy:
            if time.monotonic() > deadline:
                return False
            self.publisher.poke()
            time.sleep(0.0005)
        return True
