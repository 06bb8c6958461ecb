"""``auren embedded status|stop``: the embedded servers this machine's auren processes started."""

from __future__ import annotations

from typing import Annotated

import typer

ACTIONS = ("status", "stop")


def command(
    action: Annotated[str, typer.Argument(help="status (list them) or stop (stop them).")] = (
        "status"
    ),
    data_dir: Annotated[
        str | None,
        typer.Option(help="Data directory (else AUREN_DATA_DIR, else ~/.local/share/auren)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List (status) or stop the embedded Valkey and PostgreSQL servers auren started."""
    import orjson

    from auren_core.backends import embedded_status, stop_embedded
    from auren_core.config import ConfigError, load_settings

    if action not in ACTIONS:
        raise ConfigError(f"embedded: action must be status or stop (got {action!r})")
    settings = load_settings(data_dir=data_dir)
    servers = embedded_status(settings)
    if action == "stop":
        running = [s for s in servers if s.running]
        stopped = stop_embedded(settings)
        if json_output:
            typer.echo(orjson.dumps({"stopped": stopped}).decode())
            return
        if not stopped:
            typer.echo(f"no embedded server running (data dir {settings.data_dir})")
            return
        for s in running:
            if s.name in stopped:
                typer.echo(f"stopped {s.name} pid {s.pid} port {s.port} (data {s.data_dir})")
        return
    if json_output:
        rows = [
            {
                "name": s.name,
                "pid": s.pid,
                "port": s.port,
                "data_dir": s.data_dir,
                "started_by": s.started_by,
                "running": s.running,
                "url": s.url,
            }
            for s in servers
        ]
        typer.echo(orjson.dumps({"servers": rows}).decode())
        return
    if not servers:
        typer.echo(f"no embedded server recorded (data dir {settings.data_dir})")
        return
    header = ("server", "state", "pid", "port", "data dir", "started by")
    rows_t = [
        (
            s.name,
            "running" if s.running else "stopped",
            str(s.pid or "-"),
            str(s.port or "-"),
            s.data_dir,
            s.started_by,
        )
        for s in servers
    ]
    widths = [max(len(r[i]) for r in (header, *rows_t)) for i in range(len(header) - 1)]
    for r in (header, *rows_t):
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    if any(s.running for s in servers):
        typer.echo("stop them with: auren embedded stop")
