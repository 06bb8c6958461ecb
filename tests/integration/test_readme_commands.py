"""The README's two commands, as written: `make demo` (in a terminal) and `make test`.

`make test` is this very suite, run by CI through .ci/run. `make demo` is run here in a
pseudo-terminal: the dashboard must come up with live agents, and `q` must quit cleanly.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## Two commands", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


def test_readme_names_two_commands() -> None:
    assert readme_commands() == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


@pytest.mark.slow
def test_make_demo_in_a_terminal(redis_url: str, tmp_path: Path) -> None:
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("make demo installs into .venv first; run `make test` (CI does)")
    stream = f"auren:test:demo:{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, AUREN_STREAM=stream, AUREN_REDIS_URL=redis_url, TERM="xterm-256color")
    env.update(COLUMNS="120", LINES="40", HOME=str(tmp_path))
    env.pop("CREWAI_TESTING", None)
    primary, secondary = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        ["make", "-s", "demo"],
        cwd=ROOT,
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,
    )
    os.close(secondary)
    seen = b""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(primary, 65536)
                except OSError:
                    break
            if b"AUREN top" in seen and redis.Redis.from_url(redis_url).xlen(stream) > 50:
                break
        assert b"AUREN top" in seen, seen[-2000:]
        end = time.monotonic() + 2  # a few refreshes with live data
        while time.monotonic() < end:
            if select.select([primary], [], [], 0.2)[0]:
                seen += os.read(primary, 65536)
        os.write(primary, b"q")
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:  # keep draining the pty
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(primary, 65536)
                except OSError:
                    break
        rc = proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            while select.select([primary], [], [], 0.2)[0]:
                chunk = os.read(primary, 65536)
                if not chunk:
                    break
                seen += chunk
        assert rc == 0, seen[-2000:]
        assert b"user queries" in seen
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(primary)
        redis.Redis.from_url(redis_url).delete(stream)
