"""``auren persist``: the stream -> PostgreSQL sink with rollups and retention."""

from __future__ import annotations

from typing import Annotated

import typer

from ._duration import METAVAR, as_duration


def command(
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (else AUREN_REDIS_URL).")] = None,
    stream: Annotated[str | None, typer.Option(help="Stream name (else AUREN_STREAM).")] = None,
    pg_dsn: Annotated[str | None, typer.Option(help="PostgreSQL DSN (else AUREN_PG_DSN).")] = None,
    schema: Annotated[str, typer.Option(help="PostgreSQL schema for the tables.")] = "auren",
    group: Annotated[str, typer.Option(help="Consumer group shared by sinks.")] = "auren-persist",
    consumer: Annotated[
        str | None, typer.Option(help="Consumer name, stable across restarts (default: host).")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="Entries per batch.")] = 5000,
    claim_idle_ms: Annotated[
        int, typer.Option(min=1, help="Claim other consumers' entries pending this long.")
    ] = 60_000,
    detail_days: Annotated[float, typer.Option(min=0.01, help="Keep detailed events.")] = 7.0,
    agg_days: Annotated[float, typer.Option(min=0.01, help="Keep hourly/daily rollups.")] = 90.0,
    maintain_every: Annotated[
        float,
        typer.Option(
            parser=as_duration(allow_zero=True),
            metavar=METAVAR,
            show_default=False,
            help="Time between rollup/retention runs (default 5m; 0: never).",
        ),
    ] = 300.0,
    quiet: Annotated[bool, typer.Option(help="No periodic status lines.")] = False,
) -> None:
    """Store the event stream in PostgreSQL (consumer group, exactly-once rows, retention)."""
    import asyncio
    import logging
    import signal
    import sys
    import time

    from auren_core.backends import describe_backends, resolve_postgres, resolve_redis
    from auren_core.config import ConfigError, load_settings
    from auren_core.store.retention import RetentionPolicy
    from auren_core.store.schema import validate_schema_name
    from auren_core.store.sink import run_sharded, shard_sinks, total_stats

    try:
        validate_schema_name(schema)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = load_settings(redis_url=redis_url, stream=stream, pg_dsn=pg_dsn)
    rb = resolve_redis(settings)
    pb = resolve_postgres(settings)
    print(describe_backends(rb, pb), file=sys.stderr, flush=True)
    logging.basicConfig(level=logging.WARNING, format="auren persist: %(message)s")

    sinks = shard_sinks(
        rb.url,
        settings.stream,
        pb.url,
        settings.stream_shards,
        schema=schema,
        group=group,
        consumer=consumer,
        batch_size=batch,
        claim_idle_ms=claim_idle_ms,
        policy=RetentionPolicy(detail_days=detail_days, agg_days=agg_days),
        maintain_every_s=maintain_every,
    )

    async def status() -> None:
        while True:
            await asyncio.sleep(10)
            st = total_stats(sinks)
            print(
                f"{time.strftime('%H:%M:%S')} read={st.read} stored={st.inserted} "
                f"dup={st.duplicates} dead={st.dead} acked={st.acked} claimed={st.claimed} "
                f"retries={st.retries} pg={'up' if st.pg_up else 'down'} "
                f"maintenance_failing={st.maintenance_failing}",
                file=sys.stderr,
                flush=True,
            )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        def stop_all() -> None:
            for s in sinks:
                s.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_all)
        print(  # after the handlers: from here on SIGTERM is a clean stop
            f"persist: stream {settings.stream!r}"
            + (f" ({len(sinks)} shards)" if len(sinks) > 1 else "")
            + f" group {group!r} consumer {sinks[0].consumer!r} -> schema {schema!r}",
            file=sys.stderr,
            flush=True,
        )
        task = None if quiet else asyncio.create_task(status())
        try:
            await run_sharded(sinks)
        finally:
            if task is not None:
                task.cancel()

    asyncio.run(main())
