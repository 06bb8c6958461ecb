"""Headless Chromium for the browser tests, driven over the DevTools protocol.

Needs the Debian package ``chromium`` (``apt-get install -y chromium``); the tests that use
it are skipped without it (:data:`needs_chromium`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_until

__all__ = ["CHROMIUM", "chromium", "needs_chromium", "page_target"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt-get install -y chromium)"
)


@contextlib.contextmanager
def chromium(url: str = "about:blank", *, window_size: str | None = None) -> Iterator[int]:
    """Headless Chromium showing ``url`` (a private profile, killed after); yields its
    DevTools port."""
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="auren-chromium-")
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-extensions",
        *([f"--window-size={window_size}"] if window_size else []),
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        url,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        active = Path(profile) / "DevToolsActivePort"

        def port_written() -> str | None:
            if proc.poll() is not None:
                raise RuntimeError(f"Chromium exited ({proc.returncode}) before DevTools started")
            return active.read_text().strip() if active.exists() else None

        port = wait_until(port_written, "Chromium's DevTools endpoint", timeout=30, interval=0.05)
        yield int(port.split()[0])
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def page_target(devtools: int) -> dict[str, Any]:
    """The DevTools target of the browser's page (its ``webSocketDebuggerUrl``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{devtools}/json/list", timeout=10) as resp:
        targets = json.loads(resp.read())
    return next(t for t in targets if t.get("type") == "page")
