"""``auren token``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._duration import METAVAR, as_duration


def command(
    subject: Annotated[
        str, typer.Option(help="Who the token is for (the 'sub' claim).")
    ] = "dashboard",
    keys: Annotated[
        Path | None,
        typer.Option(help="JWT key file (else AUREN_JWT_KEYS, else <data dir>/jwt-keys.json)."),
    ] = None,
    init: Annotated[bool, typer.Option("--init", help="Create the key file if absent.")] = False,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Add a new signing key (old ones still verify).")
    ] = False,
    retire: Annotated[
        str | None, typer.Option(help="Remove key id KID: its tokens stop verifying.")
    ] = None,
    refresh: Annotated[
        str | None, typer.Option(help="Exchange this refresh token for a new pair (rotates it).")
    ] = None,
    revoke_family: Annotated[
        str | None, typer.Option(help="Revoke a token family (its refresh and access tokens).")
    ] = None,
    access_ttl: Annotated[
        float,
        typer.Option(
            parser=as_duration(),
            metavar=METAVAR,
            show_default=False,
            help="Access token lifetime (default 15m).",
        ),
    ] = 900.0,
    refresh_ttl: Annotated[
        float,
        typer.Option(
            parser=as_duration(),
            metavar=METAVAR,
            show_default=False,
            help="Refresh token lifetime (default 30d).",
        ),
    ] = 30 * 86400.0,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (else AUREN_REDIS_URL).")] = None,
) -> None:
    """Issue JWTs for the WebSocket feed and HTTP API (access + rotating refresh token)."""
    import json

    import redis

    from auren_core.backends import resolve_redis
    from auren_core.config import ConfigError, load_settings
    from auren_core.server.auth import AuthError, KeyRing, RefreshStore, issue_pair

    from .serve_ws import key_file_path

    settings = load_settings(redis_url=redis_url)
    path = key_file_path(keys, settings.data_dir)
    if init and not path.exists():
        KeyRing.create(path)
        typer.echo(f"created JWT key file {path}", err=True)
    ring = KeyRing.load(path)
    if rotate:
        ring = ring.rotate()
        ring.save(path)
        typer.echo(f"active key is now {ring.active}; older keys still verify", err=True)
    if retire is not None:
        if retire == ring.active:
            raise ConfigError(f"key {retire} is the active key: --rotate first")
        if retire not in ring.keys:
            raise ConfigError(f"no key {retire!r} in {path}")
        ring = KeyRing(
            {k: v for k, v in ring.keys.items() if k != retire},
            ring.active,
            ring.issuer,
            ring.audience,
        )
        ring.save(path)
        typer.echo(f"retired key {retire}", err=True)
    if rotate or retire is not None:
        return
    from auren_core.streams.shards import sync_client

    r = sync_client(resolve_redis(settings).url, decode_responses=True, socket_connect_timeout=3)
    try:
        store = RefreshStore(r)
        if revoke_family is not None:
            store.revoke(revoke_family)
            typer.echo(f"revoked family {revoke_family}", err=True)
            return
        if refresh is not None:
            try:
                pair = store.refresh(ring, refresh.strip())
            except AuthError as exc:
                raise ConfigError(f"refresh refused: {exc}") from None
        else:
            pair, jti = issue_pair(
                ring,
                subject,
                access_ttl=access_ttl,
                refresh_ttl=refresh_ttl,
            )
            store.start(pair.family, jti, refresh_ttl)
        typer.echo(json.dumps({**pair.to_dict(), "family": pair.family}, indent=2))
    except (redis.exceptions.ConnectionError, redis.exceptions.RedisClusterException) as exc:
        raise ConfigError(f"cannot reach Redis for refresh-token state: {exc}") from None
    finally:
        r.close()
