"""``auren serve-ws``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ._duration import METAVAR, as_duration


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def key_file_path(keys: Path | None, data_dir: Path) -> Path:
    if keys is not None:
        return keys
    env = os.environ.get("AUREN_JWT_KEYS")
    return Path(env) if env else data_dir / "jwt-keys.json"


def command(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for /ws and the HTTP API.")] = 8765,
    auth: Annotated[str, typer.Option(help="jwt (default) or none (loopback only).")] = "jwt",
    keys: Annotated[
        Path | None,
        typer.Option(help="JWT key file (else AUREN_JWT_KEYS, else <data dir>/jwt-keys.json)."),
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option("--allow-origin", help="Browser origin allowed to connect (repeat; '*' any)."),
    ] = None,
    max_clients: Annotated[
        int, typer.Option(help="Connections refused beyond this (1013).")
    ] = 10_000,
    max_message_bytes: Annotated[
        int, typer.Option(help="Largest client message; larger closes with 1009.")
    ] = 65_536,
    conn_rate: Annotated[
        float, typer.Option(help="New connections per second per address (0: no limit).")
    ] = 20.0,
    trust_proxy: Annotated[
        list[str] | None,
        typer.Option("--trust-proxy", help="Proxy address whose X-Forwarded-For is believed."),
    ] = None,
    window: Annotated[
        float,
        typer.Option(
            parser=as_duration(),
            metavar=METAVAR,
            show_default=False,
            help="Window of the snapshot state (default 1h).",
        ),
    ] = 3600.0,
    compression: Annotated[
        bool, typer.Option(help="permessage-deflate (costs CPU and memory per client).")
    ] = False,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (else AUREN_REDIS_URL).")] = None,
    stream: Annotated[str | None, typer.Option(help="Stream name (else AUREN_STREAM).")] = None,
    budget_usd_per_hour: Annotated[
        float | None, typer.Option(help="Budget for the snapshot's cost status.")
    ] = None,
    alert_webhook: Annotated[
        str | None,
        typer.Option(
            help="POST alerts (budget, forecast, loops, stalls) here (else "
            "AUREN_ALERT_WEBHOOK; docs/alerts.md)."
        ),
    ] = None,
) -> None:
    """Serve the live event feed over WebSocket (/ws) and the HTTP API on one port."""
    import asyncio
    import logging
    import signal

    from auren_core.backends import describe_backends, resolve_redis
    from auren_core.config import ConfigError, load_settings
    from auren_core.server import Server, ServerConfig

    if auth not in ("jwt", "none"):
        raise ConfigError(f"--auth must be jwt or none, got {auth!r}")
    if auth == "none" and not is_loopback(host):
        raise ConfigError(f"--auth none is refused on {host}: bind to 127.0.0.1 or use --auth jwt")
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {port}")
    if max_clients < 1 or max_message_bytes < 256:
        raise ConfigError("--max-clients must be >= 1 and --max-message-bytes >= 256")
    settings = load_settings(
        redis_url=redis_url,
        stream=stream,
        budget_usd_per_hour=budget_usd_per_hour,
        alert_webhook=alert_webhook,
    )
    backend = resolve_redis(settings)
    key_file = key_file_path(keys, settings.data_dir) if auth == "jwt" else None
    if key_file is not None and not key_file.exists():
        raise ConfigError(f"no JWT key file at {key_file}: run `auren token --init` first")
    config = ServerConfig(
        redis_url=backend.url,
        stream=settings.stream,
        shards=settings.stream_shards,
        host=host,
        port=port,
        auth=auth,
        key_file=key_file,
        origins=tuple(allow_origin or ()),
        max_clients=max_clients,
        max_message_bytes=max_message_bytes,
        conn_rate=conn_rate,
        trusted_proxies=tuple(trust_proxy or ()),
        window_s=window,
        active_window_s=settings.active_window_s,
        budget_usd_per_hour=settings.budget_usd_per_hour,
        tool_costs=dict(settings.tool_costs),
        tier_costs=settings.tier_costs.model_dump(),
        recommendations=settings.recommendations.model_dump(),
        compression=compression,
        alert_webhook=settings.alert_webhook,
    )
    logging.basicConfig(level=logging.WARNING, format="auren serve-ws: %(message)s")
    typer.echo(describe_backends(backend))
    if settings.alert_webhook:
        from urllib.parse import urlsplit

        from auren_core.backends import redact_url

        hook = urlsplit(settings.alert_webhook)  # the path of a Slack hook is its secret
        typer.echo(f"alerts: POSTed to {redact_url(f'{hook.scheme}://{hook.netloc}')}/...")
    if auth == "none":
        typer.echo(
            "WARNING: --auth none: anyone who can reach this port reads every event", err=True
        )
    server = Server(config)

    async def main() -> None:
        await server.start()
        typer.echo(
            f"serving ws://{host}:{server.port}/ws and http://{host}:{server.port}/api/v2/ "
            f"(stream {settings.stream}, auth {auth}, origins {list(config.origins) or 'none'})"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    try:
        asyncio.run(main())
    except OSError as exc:
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
