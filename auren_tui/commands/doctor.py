"""``auren doctor``."""

from __future__ import annotations

from typing import Annotated

import typer


def command(
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (else AUREN_REDIS_URL).")] = None,
    stream: Annotated[str | None, typer.Option(help="Stream name (else AUREN_STREAM).")] = None,
    pg_dsn: Annotated[str | None, typer.Option(help="PostgreSQL DSN (else AUREN_PG_DSN).")] = None,
    schema: Annotated[
        str, typer.Option(help="PostgreSQL schema of the event store (as `auren persist`).")
    ] = "auren",
    json_output: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check each backend, the stream's length and lag, publisher drops; print what to fix."""
    import orjson

    from auren_core.config import load_settings
    from auren_core.doctor import run_checks
    from auren_core.store.schema import validate_schema_name

    settings = load_settings(redis_url=redis_url, stream=stream, pg_dsn=pg_dsn)
    try:
        validate_schema_name(schema)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--schema") from None
    checks = run_checks(settings, schema)
    failed = [c for c in checks if not c.ok and c.critical]
    if json_output:
        rows = [
            {"name": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix, "critical": c.critical}
            for c in checks
        ]
        typer.echo(orjson.dumps({"ok": not failed, "checks": rows}).decode())
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.critical else "warn")
            typer.echo(f"[{mark}] {c.name.ljust(width)}  {c.detail}")
            if not c.ok and c.fix:
                typer.echo(f"       {' ' * width}  fix: {c.fix}")
    raise typer.Exit(1 if failed else 0)
