"""``auren top``'s worker in a child process: :func:`child_main` runs the
:class:`~auren_tui.worker.StreamWorker` (built by the same factory as in-process) and ships
frozen states and the log tail back over a pipe (:class:`WireLog`, pickled messages);
:class:`ProcessWorker` is the app's side: it spawns, reads, shows a dead child as dead and
restarts it with backoff."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from . import wire

if TYPE_CHECKING:
    from textual.message import Message

# Nothing here imports Textual at module level: the worker process imports this module and
# must start fast (it is on the way to the app's first painted frame); its messages are
# the plain ones of auren_tui.wire. The app's side imports auren_tui.messages when it runs.

log = logging.getLogger("auren.tui.process")

__all__ = ["ProcessWorker", "WireLog", "child_main"]


class WireLog(NamedTuple):
    """A log line as shipped from the worker process (``summary`` already computed)."""

    sid: str
    id: str
    ts: float | None
    type: str
    agent: str | None
    run: str | None
    malformed: bool
    summary: str


MAX_ROWS_PER_FRAME = 500  # above ~10k ev/s at 20 Hz the tail shows a sample of the newest


def _new_rows(log: Sequence[Any], mark: tuple[str, str] | None) -> list[tuple[Any, ...]]:
    start = max(0, len(log) - MAX_ROWS_PER_FRAME)
    if mark is not None:
        for i in range(len(log) - 1, start - 1, -1):
            if (log[i].sid, log[i].id) == mark:
                start = i + 1
                break
    return [
        (e.sid, e.id, e.ts, e.type, e.agent, e.run, e.malformed, e.summary) for e in log[start:]
    ]


def _without_otel_sdk() -> None:
    """In the worker process only: redis-py (8.x) imports the OpenTelemetry metrics SDK
    when it is installed (CrewAI pulls it in), ~30-40 ms of the worker's start-up, for
    metrics it only records once someone enables them; nothing in this process does.
    Marked as absent, redis-py takes its "OTel not installed" path (it catches the
    ImportError). Never done in the app's process, nor in any process of the user's."""
    import sys

    for name in ("opentelemetry.sdk.metrics",):
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]


def child_main(argv: Sequence[str]) -> None:
    """Entry point of the worker process: config JSON in argv[1], frames on stdout."""
    import dataclasses
    import json
    import pickle
    import struct
    import sys

    _without_otel_sdk()
    cfg = json.loads(argv[1])
    out = sys.stdout.buffer
    latest: list[Any] = [None, None]  # newest state (or failure), newest analytics
    cond = threading.Condition()

    def writer() -> None:
        mark: tuple[str, str] | None = None
        while True:
            with cond:
                while latest == [None, None]:
                    cond.wait()
                slot = 0 if latest[0] is not None else 1
                msg, latest[slot] = latest[slot], None
            if isinstance(msg, wire.AnalyticsUpdated):
                body = pickle.dumps(("analytics", msg.result, msg.took_s, msg.buffered, msg.error))
            elif isinstance(msg, wire.StateUpdated):
                st = msg.state
                rows = _new_rows(st.log, mark)
                if st.log:
                    mark = (st.log[-1].sid, st.log[-1].id)
                body = pickle.dumps(("state", dataclasses.replace(st, log=()), rows, msg.stats), 5)
            else:
                body = pickle.dumps(("failed", getattr(msg, "error", "?")), 5)
            try:
                out.write(struct.pack("!I", len(body)) + body)
                out.flush()
            except OSError:  # the app has gone
                os._exit(0)

    def post(msg: Any) -> None:
        with cond:  # newest wins: a state not yet written is replaced (its rows are not lost)
            latest[1 if isinstance(msg, wire.AnalyticsUpdated) else 0] = msg
            cond.notify()

    from .worker import build_worker

    worker = build_worker(cfg, post, messages=wire.PLAIN)
    import gc

    gc.freeze()  # as in the app: the reducer holds many long-lived objects; collect rarely
    gc.set_threshold(50_000, 20, 100)

    def watch_stdin() -> None:
        for line in sys.stdin.buffer:  # commands from the app, one a line
            if line.startswith(b"analytics "):
                worker.set_analytics(line.strip().endswith(b" on"))
            elif line.startswith(b"view "):
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    v = json.loads(line[5:])
                    worker.set_view(str(v["sort"]), bool(v["reverse"]), [str(p) for p in v["pin"]])
        worker.stop(timeout=0)  # EOF: the app closed the pipe (or died)

    threading.Thread(target=writer, daemon=True).start()
    threading.Thread(target=watch_stdin, daemon=True).start()
    worker._run()
    with cond:
        while latest != [None, None]:
            cond.wait(0.05)


def _close_quietly(f: Any) -> None:
    with contextlib.suppress(Exception):
        f.close()


class ProcessWorker:
    """Runs :func:`child_main` in a child process; posts its states into the app."""

    def __init__(
        self,
        config: dict[str, Any],
        post: Callable[[Message], object] | None = None,
        log_size: int = 2000,
    ) -> None:
        self.config = config
        self.post: Callable[[Message], object] = post or (lambda _m: None)
        self._log: collections.deque[WireLog] = collections.deque(maxlen=log_size)
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # stop() vs a restart
        self._err: Any = None
        self._analytics = False
        self._view: dict[str, Any] | None = None
        self.last_id: str | None = None  # the newest entry the worker has applied
        self.restarts = 0
        self._spawned_at = 0.0

    def spawn(self) -> None:
        """Start the child now (``make_app`` does, so it boots while the UI does)."""
        import json
        import sys
        import tempfile
        import weakref

        if self._proc is not None:
            return
        if self._err is not None:
            _close_quietly(self._err)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        code = "import sys; from auren_tui.process import child_main; child_main(sys.argv)"
        # the child imports auren_tui the way this process did (a checkout, a venv, ...):
        # this process's sys.path, and -P so that ``-c`` puts no working directory first
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._proc = subprocess.Popen(
            [sys.executable, "-P", "-c", code, json.dumps(self.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=env,
        )
        self._spawned_at = time.monotonic()
        # an app that is built but never run must not leave its child behind
        weakref.finalize(self, _close_quietly, self._proc.stdin)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        self.spawn()
        self._thread = threading.Thread(target=self._read, name="auren-stream", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        """Read frames until the child exits; then, unless stopping, say so (the app shows
        the worker as dead) and start a new one after a backoff, resuming where it was."""
        from .messages import WorkerFailed
        from .worker import HEALTHY_S, restart_delay

        failures = 0
        while True:
            self._read_child()
            if self._stopping.is_set():
                return
            assert self._proc is not None
            rc = self._proc.wait()
            lived = time.monotonic() - self._spawned_at
            failures = 1 if lived >= HEALTHY_S else failures + 1
            delay = restart_delay(failures)
            why = f"stream worker process exited ({rc}): {self._stderr_tail()}"
            log.info("%s; restarting in %.1fs", why, delay)  # shown by the app, not on stderr
            self.post(WorkerFailed(why, restart_in=delay))
            if self._stopping.wait(delay):
                return
            self._restart()

    def _restart(self) -> None:
        """A new child that misses nothing: with a backfill window it reads the window
        again (a fresh reducer needs it, and it holds everything after the last id); live
        only (no window), it resumes after the last id it applied."""
        if self.last_id and not self.config.get("replay") and not self.config.get("since_s"):
            self.config = dict(self.config, start_id=self.last_id)
        else:  # the new worker reads its history again: its log lines replace ours
            self._log.clear()
        with self._lock:
            if self._stopping.is_set():
                return
            old, self._proc = self._proc, None
            if old is not None:
                _close_quietly(old.stdout)
                _close_quietly(old.stdin)
            self.restarts += 1
            self.spawn()
        if self._view is not None:
            self.set_view(self._view["sort"], self._view["reverse"], self._view["pin"])
        if self._analytics:
            self.set_analytics(True)

    def _read_child(self) -> None:
        import dataclasses
        import pickle
        import struct

        from .messages import AnalyticsUpdated, StateUpdated, WorkerFailed

        assert self._proc is not None and self._proc.stdout is not None
        f = self._proc.stdout
        while True:
            head = f.read(4)
            if len(head) < 4:
                break
            body = f.read(struct.unpack("!I", head)[0])
            try:
                msg = pickle.loads(body)  # noqa: S301 - our own child process
            except Exception as exc:  # a frame cut short by the child's death
                log.debug("bad frame from the worker: %r", exc)
                break
            if msg[0] == "state":
                _, state, rows, stats = msg
                self._log.extend(WireLog(*r) for r in rows)
                if state.health.last_id:
                    self.last_id = state.health.last_id
                self.post(StateUpdated(dataclasses.replace(state, log=tuple(self._log)), stats))
            elif msg[0] == "analytics":
                self.post(AnalyticsUpdated(*msg[1:]))
            else:
                self.post(WorkerFailed(str(msg[1])))

    def set_analytics(self, active: bool) -> None:
        """Tell the child to analyse (``True``) or stop (a line on its stdin)."""
        self._analytics = active
        self._send(b"analytics on\n" if active else b"analytics off\n")

    def set_view(self, sort: str, reverse: bool, pin: Sequence[str] = ()) -> None:
        """As :meth:`StreamWorker.set_view`, in the child."""
        import json

        self._view = {"sort": sort, "reverse": reverse, "pin": list(pin)}
        self._send(b"view " + json.dumps(self._view).encode() + b"\n")

    def _send(self, line: bytes) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        try:
            proc.stdin.write(line)
            proc.stdin.flush()
        except (OSError, ValueError) as exc:  # the child has gone: the reader reports it
            log.debug("command not sent to the worker: %s", exc)

    def _stderr_tail(self) -> str:
        if self._err is None:
            return ""
        self._err.seek(0)
        lines = self._err.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:300] if lines else "no output"

    def stop(self, timeout: float = 3.0) -> None:
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._err is not None:
            self._err.close()
