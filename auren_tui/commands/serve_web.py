"""``auren serve-web``: the ``auren top`` dashboard in a browser (textual-serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._duration import METAVAR, as_duration
from .serve_ws import is_loopback, key_file_path


def command(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the web dashboard.")] = 8080,
    auth: Annotated[
        str, typer.Option(help="jwt (default: serve-ws tokens) or none (loopback only).")
    ] = "jwt",
    keys: Annotated[
        Path | None,
        typer.Option(help="JWT key file (else AUREN_JWT_KEYS, else <data dir>/jwt-keys.json)."),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(help="URL the browser uses (behind a reverse proxy), e.g. https://h/."),
    ] = None,
    max_sessions: Annotated[
        int, typer.Option(help="Dashboards open at once (each runs one `auren top`).")
    ] = 8,
    since: Annotated[
        float,
        typer.Option(
            parser=as_duration(allow_zero=True),
            metavar=METAVAR,
            show_default=False,
            help="Backfill window of each dashboard (default 1h).",
        ),
    ] = 3600.0,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (else AUREN_REDIS_URL).")] = None,
    stream: Annotated[str | None, typer.Option(help="Stream name (else AUREN_STREAM).")] = None,
    budget_usd_per_hour: Annotated[
        float | None, typer.Option(help="Budget: warning at 80%, alert at 100%.")
    ] = None,
) -> None:
    """Serve the live `auren top` dashboard in a browser (textual-serve), authenticated."""
    import logging
    import os
    import shlex
    import sys

    from auren_core.backends import describe_backends, resolve_redis
    from auren_core.config import ConfigError, load_settings

    if auth not in ("jwt", "none"):
        raise ConfigError(f"--auth must be jwt or none, got {auth!r}")
    if auth == "none" and not is_loopback(host):
        raise ConfigError(f"--auth none is refused on {host}: bind to 127.0.0.1 or use --auth jwt")
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {port}")
    if max_sessions < 1:
        raise ConfigError(f"--max-sessions must be >= 1, got {max_sessions}")
    if public_url is not None and not public_url.startswith(("http://", "https://")):
        raise ConfigError(f"--public-url must start with http:// or https://, got {public_url!r}")
    settings = load_settings(
        redis_url=redis_url, stream=stream, budget_usd_per_hour=budget_usd_per_hour
    )
    backend = resolve_redis(settings)
    key_file = key_file_path(keys, settings.data_dir) if auth == "jwt" else None
    if key_file is not None and not key_file.exists():
        raise ConfigError(f"no JWT key file at {key_file}: run `auren token --init` first")

    from auren_tui.web import WebConfig, WebServer

    # each dashboard is `auren top` in a child process: it gets the backend through the
    # environment (never on its command line, where `ps` shows a password)
    os.environ["AUREN_REDIS_URL"] = backend.url
    os.environ["AUREN_STREAM"] = settings.stream
    top = [sys.executable, "-m", "auren_tui", "top", "--since", f"{since:g}s"]
    if settings.budget_usd_per_hour is not None:
        top += ["--budget-usd-per-hour", f"{settings.budget_usd_per_hour:g}"]
    config = WebConfig(
        command="exec " + shlex.join(top),  # textual-serve runs it through sh: no sh left over
        host=host,
        port=port,
        auth=auth,
        key_file=key_file,
        redis_url=backend.url,
        public_url=public_url.rstrip("/") if public_url else None,
        max_sessions=max_sessions,
    )
    server = WebServer(config)
    logging.basicConfig(level=logging.WARNING, format="auren serve-web: %(message)s")
    typer.echo(describe_backends(backend))
    if auth == "none":
        typer.echo(
            "WARNING: --auth none: anyone who can reach this port sees the dashboard", err=True
        )
    shown = public_url or f"http://{host}:{port}/"
    hint = "" if auth == "none" else " (open /?token=<JWT from `auren token`> once)"
    try:
        server.run(
            lambda: typer.echo(
                f"serving auren top on {shown} (stream {settings.stream}, auth {auth}){hint}"
            )
        )
    except OSError as exc:
        raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
