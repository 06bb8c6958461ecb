"""``auren demo``."""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from ._duration import METAVAR, as_duration

if TYPE_CHECKING:
    from auren_core.backends import Backend

# USD per operation of each tier for the demo's loads (when [tier_costs] sets none):
# assumed managed-service orders of magnitude, labelled as such in docs/http-api.md
DEMO_TIER_COSTS = {"redis": 2e-7, "postgresql": 2e-6, "chromadb": 1e-5}


def command(
    headless: Annotated[
        bool, typer.Option("--headless", help="No dashboard: run the crews and exit.")
    ] = False,
    duration: Annotated[
        float | None,
        typer.Option(
            parser=as_duration(allow_zero=True),
            metavar=METAVAR,
            help="Stop after this long, e.g. 90s, 5m (default: run until quit).",
        ),
    ] = None,
    rate: Annotated[
        float, typer.Option(help="Scale the traffic (2 = twice as busy).", min=0.01)
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the traffic plan.")] = 7,
    model: Annotated[
        str | None,
        typer.Option(
            envvar="AUREN_DEMO_MODEL",
            help="A real LLM (e.g. gpt-4o-mini, with OPENAI_API_KEY set) instead of the script.",
        ),
    ] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (else AUREN_REDIS_URL).")] = None,
    stream: Annotated[str | None, typer.Option(help="Stream name (else AUREN_STREAM).")] = None,
    shards: Annotated[
        int | None,
        typer.Option(min=1, max=1024, help="Stream shards (else AUREN_STREAM_SHARDS; 1)."),
    ] = None,
    pg_dsn: Annotated[str | None, typer.Option(help="PostgreSQL DSN (else AUREN_PG_DSN).")] = None,
    budget_usd_per_hour: Annotated[
        float | None, typer.Option(help="Budget for the dashboard's alerts.", min=0)
    ] = None,
) -> None:
    """A real CrewAI crew of AUREN specialists on a scripted offline LLM, with the dashboard."""
    os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    # CrewAI keeps its first-run state per storage dir: the demo's own, not the user's projects'
    os.environ.setdefault("CREWAI_STORAGE_DIR", "auren-demo")
    import auren_core
    from auren_core import emitter as api
    from auren_core.backends import (
        describe_backends,
        resolve_chroma,
        resolve_postgres,
        resolve_redis,
    )
    from auren_core.config import ConfigError, load_settings

    try:
        import chromadb  # noqa: F401
        import crewai  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"the demo needs the agent-side extras: pip install 'auren[crewai,memory]' ({exc})"
        ) from None
    from auren_core.demo.runner import DemoRunner, quiet_crewai
    from auren_core.memory import TieredMemory

    quiet_crewai()
    settings = load_settings(
        redis_url=redis_url,
        stream=stream,
        pg_dsn=pg_dsn,
        budget_usd_per_hour=budget_usd_per_hour,
        stream_shards=shards,
    )
    rb, pb, cb = resolve_redis(settings), resolve_postgres(settings), resolve_chroma(settings)
    line = describe_backends(rb, pb, cb)
    print(f"auren demo: {line}; stream {settings.stream!r}", file=sys.stderr)

    from auren_core.demo.failures import FailureCountingPublisher

    # the closing line's failures are counted from the events this publisher sends
    publisher = FailureCountingPublisher(
        redis_url=rb.url, stream=settings.stream, shards=settings.stream_shards
    )
    api.set_publisher(publisher)
    # the demo's lab-API tool has a price unless auren.toml sets tool costs
    auren_core.instrument(
        publisher=publisher, tool_costs=settings.tool_costs or {"biomarker_lookup": 0.002}
    )
    is_url = cb.url.startswith(("http://", "https://"))
    # the demo's memory prices its loads per tier tried unless auren.toml sets [tier_costs]:
    # illustrative managed-service orders of magnitude (docs/http-api.md), not measurements
    tc = settings.tier_costs
    tier_prices = {t: c for t in ("redis", "postgresql", "chromadb") if (c := getattr(tc, t))}
    memory = TieredMemory(
        rb.url,
        pb.url,
        chroma_path=None if is_url else cb.url,
        chroma_url=cb.url if is_url else None,
        publisher=publisher,
        redact_queries=settings.redact_queries,
        tier_costs_usd=tier_prices or DEMO_TIER_COSTS,
    )
    runner = DemoRunner(memory, rate=rate, seed=seed, model=model)
    runner.seed_knowledge()

    stop = threading.Event()
    worker = threading.Thread(
        target=runner.run, args=(stop, duration), name="auren-demo", daemon=True
    )
    worker.start()
    try:
        if headless:
            while worker.is_alive():
                worker.join(0.5)
        else:
            from auren_tui.app import make_app

            app = make_app(
                redis_url=rb.url,
                stream=settings.stream,
                since_s=3600.0,
                budget_usd_per_hour=settings.budget_usd_per_hour,
                active_window_s=settings.active_window_s,
                backends_line=line,
                tier_costs=settings.tier_costs.model_dump(),
                recommendations=settings.recommendations.model_dump(),
                shards=settings.stream_shards,
            )
            app.run()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        worker.join(30)
        publisher.flush(5.0)
        c = publisher.counters()
        memory.close()
        s = runner.stats
        print(
            f"auren demo: {s.queries} user queries, {publisher.failures.summary()} "
            f"({s.failed} crews raised), {c.sent} events sent, {c.dropped} dropped"
            + _still_running(rb, pb),
            file=sys.stderr,
        )


def _still_running(*backends: Backend) -> str:
    """The closing line's last words: the embedded servers keep running (the next ``auren``
    command finds them, with the history) and how to stop them."""
    embedded = [b for b in backends if b.kind == "embedded"]
    if not embedded:
        return ""
    from urllib.parse import urlsplit

    names = " and ".join(
        ("Valkey" if b.name == "redis" else "PostgreSQL")
        + f" (port {urlsplit(b.url).port})"
        for b in embedded
    )
    return f"; the embedded {names} keep running: `auren embedded stop` stops them"
