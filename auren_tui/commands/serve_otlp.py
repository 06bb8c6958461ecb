"""``auren serve-otlp``."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer


def token_of(token_file: Path | None, data_dir: Path) -> tuple[str, Path | None, bool]:
    """(token, file it came from, created now). ``AUREN_OTLP_TOKEN`` wins; else the file
    (``--token-file``, else ``<data dir>/otlp-token``), created with a random token."""
    from auren_core.config import ConfigError

    env = os.environ.get("AUREN_OTLP_TOKEN")
    if env:
        if len(env) < 16:
            raise ConfigError("AUREN_OTLP_TOKEN must be at least 16 characters")
        return env, None, False
    path = token_file or data_dir / "otlp-token"
    try:
        tok = path.read_text().strip()
    except FileNotFoundError:
        tok = ""
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    if tok:
        if len(tok) < 16:
            raise ConfigError(f"the token in {path} must be at least 16 characters")
        return tok, path, False
    if token_file is not None:
        raise ConfigError(f"the token file {path} is empty or missing")
    tok = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(tok + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write the token file {path}: {exc.strerror or exc}") from None
    return tok, path, True


def command(
    host: Annotated[str, typer.Option(help="Address to bind (HTTP and gRPC).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="OTLP/HTTP port (POST /v1/traces, /metrics).")] = 4318,
    grpc_port: Annotated[int, typer.Option(help="OTLP/gRPC port; 0 turns gRPC off.")] = 4317,
    auth: Annotated[str, typer.Option(help="token (default) or none (loopback only).")] = "token",
    token_file: Annotated[
        Path | None,
        typer.Option(help="File with the bearer token (else AUREN_OTLP_TOKEN, else "
                     "<data dir>/otlp-token, created on first use)."),
    ] = None,
    max_wait: Annotated[
        float, typer.Option(help="Seconds a span waits for its ancestors before it is "
                            "emitted as it stands.")
    ] = 15.0,
    max_spans: Annotated[int, typer.Option(help="Spans the per-trace buffer remembers.")] = 200_000,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body (MiB).")] = 16.0,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (else AUREN_REDIS_URL).")] = None,
    stream: Annotated[str | None, typer.Option(help="Stream name (else AUREN_STREAM).")] = None,
) -> None:
    """Receive OpenTelemetry traces (OTLP/HTTP and gRPC) and write them as AUREN events."""
    import signal
    import threading

    from auren_core.backends import describe_backends, resolve_redis
    from auren_core.config import ConfigError, load_settings

    from .serve_ws import is_loopback

    if auth not in ("token", "none"):
        raise ConfigError(f"--auth must be token or none, got {auth!r}")
    if auth == "none" and not is_loopback(host):
        raise ConfigError(
            f"--auth none is refused on {host}: bind to 127.0.0.1 or use --auth token"
        )
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {port}")
    if not 0 <= grpc_port < 65536:
        raise ConfigError(f"--grpc-port must be 0-65535, got {grpc_port}")
    if grpc_port == port:
        raise ConfigError("--grpc-port must differ from --port")
    if not 0 < max_wait <= 3600:
        raise ConfigError(f"--max-wait must be in (0, 3600] seconds, got {max_wait}")
    if max_spans < 100:
        raise ConfigError("--max-spans must be >= 100")
    if not 0.01 <= max_body_mb <= 1024:
        raise ConfigError("--max-body-mb must be in [0.01, 1024]")
    settings = load_settings(redis_url=redis_url, stream=stream)
    token: str | None = None
    if auth == "token":
        token, path, created = token_of(token_file, settings.data_dir)
        where = f"{path}" if path is not None else "AUREN_OTLP_TOKEN"
        typer.echo(
            f"auth: bearer token from {where}" + (" (created now)" if created else "")
            + "; exporters send it as OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>"
        )
    backend = resolve_redis(settings)

    from auren_core.otlp import OtlpReceiver, OtlpServer, ReceiverConfig
    from auren_core.otlp.receiver import tune_gc
    from auren_core.streams.publisher import Publisher

    tune_gc()  # this process is the receiver: no 100 ms collector pauses (see bench_otlp)

    publisher = Publisher(backend.url, settings.stream, shards=settings.stream_shards)
    receiver = OtlpReceiver(
        publisher,
        ReceiverConfig(
            max_wait=max_wait,
            max_spans=max_spans,
            max_body=int(max_body_mb * 1024 * 1024),
            token=token,
        ),
    )
    try:
        server = OtlpServer(receiver, host, port, grpc_port or None)
    except OSError as exc:
        raise ConfigError(f"cannot serve on {host}: {exc.strerror or exc}") from None
    typer.echo(describe_backends(backend))
    if auth == "none":
        typer.echo("WARNING: --auth none: anyone who can reach this port can write events",
                   err=True)
    server.start()
    grpc_txt = f", grpc {host}:{server.grpc_port}" if server.grpc_port else ", grpc off"
    typer.echo(
        f"serving OTLP http://{host}:{server.port}/v1/traces{grpc_txt} -> stream "
        f"{settings.stream} (metrics http://{host}:{server.port}/metrics, auth {auth}, "
        f"max wait {max_wait:g} s)",
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    publisher.close(5.0)
