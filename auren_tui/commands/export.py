"""``auren export``: analytics reports as CSV, JSON or JSONL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._duration import METAVAR, as_duration

if TYPE_CHECKING:
    from collections.abc import Iterator

    from auren_core.events import Event, Malformed


def _goes_to_terminal(output: str | None) -> bool:
    """Whether the export is written to a terminal (stdout or a path such as /dev/tty)."""
    import os
    import stat
    import sys

    if output is None or output == "-":
        try:
            return os.isatty(sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):
            return sys.stdout.isatty()
    try:
        if not stat.S_ISCHR(os.stat(output).st_mode):
            return False
        fd = os.open(output, os.O_WRONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def _write_output(path: str, data: bytes) -> None:
    """Regular files are replaced atomically (a reader never sees half a report); anything
    else (``/dev/null``, a FIFO, ``/dev/stdout``) is written in place, never replaced."""
    import os
    import stat

    from auren_core.config import ConfigError

    try:
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except FileNotFoundError:
            regular = True
        if not regular:
            with open(path, "wb") as fh:
                fh.write(data)
            return
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def _csv_directory(fmt: str, reports: list[str], report: str, output: str | None) -> str | None:
    """Where CSV goes one file per report (``-o DIR``), or None (one stream of bytes).

    A CSV file holds one table: several reports in CSV (``--report all``, ``a,b``) need a
    directory, which is created when missing (a path without a suffix, or ending in ``/``);
    anything else is refused in one line before any data is read. An existing directory
    given to a single CSV report gets ``DIR/<report>.csv`` too."""
    import os

    from auren_core.config import ConfigError

    if fmt != "csv":
        return None
    several = "all" in reports or len(set(reports)) > 1
    is_dir = output is not None and output != "-" and os.path.isdir(output)
    if not several:
        return output if is_dir else None
    if output is None or output == "-":
        raise ConfigError(
            f"--format csv --report {report} writes one CSV file per report: give -o DIR "
            "(or one --report, or --format json/jsonl for stdout)"
        )
    if is_dir or output.endswith("/"):
        return output
    if os.path.exists(output) or os.path.splitext(output)[1]:
        raise ConfigError(
            f"--format csv --report {report} writes one CSV file per report into a "
            f"directory: -o {output!r} is not one"
        )
    return output


def _write_csv_files(directory: str, tables: dict[str, list[dict[str, Any]]]) -> None:
    """``DIR/<report>.csv`` for each table (each replaced atomically)."""
    import os

    from auren_core.config import ConfigError
    from auren_core.export import render

    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create directory {directory}: {exc.strerror or exc}") from None
    for name, rows in tables.items():
        _write_output(os.path.join(directory, f"{name}.csv"), render({name: rows}, "csv"))


def command(
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, json or jsonl.")] = "csv",
    report: Annotated[
        str,
        typer.Option(
            help="tokens, knowledge, gaps, tiers, costs, collaboration, flows or all (a,b ok)."
        ),
    ] = "all",
    since: Annotated[
        float,
        typer.Option(
            parser=as_duration(),
            metavar=METAVAR,
            show_default=False,
            help="Window: 30m, 24h, 7d ... (default 24h).",
        ),
    ] = 86400.0,
    until: Annotated[
        float | None,
        typer.Option(
            parser=as_duration(allow_zero=True),
            metavar=METAVAR,
            help="End of window, as an age (e.g. 1h).",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="File (default stdout); for CSV with several reports, a directory "
            "(one <report>.csv each).",
        ),
    ] = None,
    source: Annotated[str, typer.Option(help="auto, stream or pg.")] = "auto",
    agent: Annotated[list[str] | None, typer.Option(help="Only these agents (repeatable).")] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (else AUREN_REDIS_URL).")] = None,
    stream: Annotated[str | None, typer.Option(help="Stream name (else AUREN_STREAM).")] = None,
    pg_dsn: Annotated[str | None, typer.Option(help="PostgreSQL DSN (else AUREN_PG_DSN).")] = None,
    schema: Annotated[str, typer.Option(help="Event store schema (auren persist).")] = "auren",
) -> None:
    """Export token, knowledge, gap, tier, cost, collaboration and flow reports (CSV/JSON/JSONL)."""
    import sys
    import time

    from auren_core.backends import describe_backends, resolve_postgres, resolve_redis
    from auren_core.config import ConfigError, load_settings
    from auren_core.export import FORMATS, REPORTS, build_reports, render
    from auren_core.export.sources import pg_events, stream_events, stream_start
    from auren_core.store.schema import validate_schema_name

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    reports = [r.strip() for r in report.split(",") if r.strip()]
    bad = [r for r in reports if r not in (*REPORTS, "all")]
    if bad or not reports:
        raise ConfigError(f"--report must be {', '.join(REPORTS)} or all (got {report!r})")
    if source not in ("auto", "stream", "pg"):
        raise ConfigError(f"--source must be auto, stream or pg (got {source!r})")
    try:
        validate_schema_name(schema)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    csv_dir = _csv_directory(fmt, reports, report, output)
    now = time.time()
    t0 = now - since
    t1 = None if until is None else now - until
    settings = load_settings(redis_url=redis_url, stream=stream, pg_dsn=pg_dsn)
    agents = list(agent or [])

    use_pg = source == "pg"
    rb = None
    if source != "pg":
        rb = resolve_redis(settings)
        held = stream_start(rb.url, settings.stream, settings.stream_shards)
        if source == "auto" and (held is None or held > t0):
            try:  # the stream does not reach back far enough: the store, if there is one
                pb = resolve_postgres(settings, start=False)
                use_pg = True
            except ConfigError:
                print("export: stream only (no PostgreSQL store found)", file=sys.stderr)
    events: list[Event] | Iterator[Event | Malformed] = []
    aggs: list[dict[str, Any]] = []
    if use_pg:
        pb = resolve_postgres(settings, start=False)
        print(describe_backends(pb) + f" (schema {schema})", file=sys.stderr)
        try:
            events, aggs = pg_events(pb.url, schema, t0, t1, agents)
        except (OSError, ConnectionError) as exc:
            if source == "pg":
                raise ConfigError(f"cannot read PostgreSQL {pb.description}: {exc}") from None
            print(f"export: PostgreSQL unavailable ({exc}); stream only", file=sys.stderr)
            use_pg = False
        except ConfigError as exc:
            if source == "pg":
                raise
            print(f"export: {exc}; stream only", file=sys.stderr)
            use_pg = False
    if not use_pg:
        assert rb is not None
        print(describe_backends(rb), file=sys.stderr)
        events = stream_events(rb.url, settings.stream, t0, t1, agents, settings.stream_shards)
    try:
        tables = build_reports(
            events,
            reports,
            aggregates=aggs,
            tool_costs=settings.tool_costs,
            tier_costs=settings.tier_costs.model_dump(),
        )
        if csv_dir is not None:  # CSV, one file per report
            _write_csv_files(csv_dir, tables)
            return
        data = render(tables, fmt, terminal=_goes_to_terminal(output))  # no escape reaches a tty
    except ConfigError:
        raise
    except Exception as exc:  # unreachable server mid-read: one line, not a traceback
        if type(exc).__module__.split(".")[0] not in ("redis", "asyncpg") and not isinstance(
            exc, OSError
        ):
            raise
        raise ConfigError(f"export failed reading events: {exc}") from None
    if output is None or output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    _write_output(output, data)
