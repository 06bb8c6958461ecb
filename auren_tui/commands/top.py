"""``auren top``: the live dashboard, a one-shot JSON snapshot, or a replay of history."""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from auren_core.config import ConfigError
from auren_core.durations import DurationError, parse_duration

from ._duration import METAVAR, as_duration

if TYPE_CHECKING:
    from auren_core.config import Settings
    from auren_core.state import DashboardState

__all__ = ["command", "parse_replay", "snapshot_once"]

_STREAM_ID = re.compile(r"\d+(-\d+)?")


def _ago(text: str) -> float | None:
    """Seconds in a duration, with or without a trailing "ago" (``2h``, ``90m ago``), or
    None; a plain number is a stream id here, never seconds."""
    t = text.lower().removesuffix("ago").strip()
    if not t or t[-1] not in "smhdw":
        return None
    try:
        return parse_duration(t, allow_zero=True)
    except DurationError:
        return None


def _point(text: str, now: float, *, end: bool) -> str:
    """One end of ``--replay``: a stream id, an ISO time, a duration ago, or -/+/now."""
    t = text.strip()
    if t in ("", "+", "now") if end else t in ("", "-"):
        return "+" if end else "-"
    if _STREAM_ID.fullmatch(t):
        return t
    secs = _ago(t)
    if secs is not None:
        return f"{int((now - secs) * 1000)}-{'18446744073709551615' if end else '0'}"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ConfigError(
            f"bad replay time {text!r}: use a stream id, an ISO time (UTC unless it has an "
            "offset), a duration ago such as 2h, or - and +"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ms = int(dt.timestamp() * 1000)
    return f"{ms}-18446744073709551615" if end else f"{ms}-0"


def parse_replay(spec: str, now: float | None = None) -> tuple[str, str]:
    """``FROM[..TO]`` -> (start id, end id), both inclusive."""
    now = time.time() if now is None else now
    start, sep, stop = spec.partition("..")
    a, b = _point(start, now, end=False), _point(stop if sep else "", now, end=True)
    if a not in ("-",) and b not in ("+",):
        from auren_core.streams.entries import parse_stream_id

        if parse_stream_id(a) > parse_stream_id(b):
            raise ConfigError(f"bad --replay {spec!r}: FROM is after TO")
    return a, b


async def snapshot_once(
    redis_url: str,
    stream: str,
    *,
    since_s: float,
    settings: Settings,
    connect_timeout: float = 5.0,
) -> DashboardState:
    """Backfill ``since_s`` seconds into a reducer and return its state (``--once``)."""
    import asyncio

    from auren_core.backends import redact_url
    from auren_core.state import make_reducer
    from auren_core.streams.sharded_reader import make_reader

    reducer = make_reducer(settings, window_s=max(3600.0, since_s))
    failure: list[str] = []

    def status(state: str, detail: str) -> None:
        if state == "reconnecting":
            failure.append(detail)
        reducer.set_connection("live" if state == "connected" else state, detail)

    reader = make_reader(
        redis_url,
        stream,
        settings.stream_shards,
        since=time.time() - since_s,
        batch_count=5000,
        on_status=status,
    )

    async def consume() -> None:
        async for batch in reader.batches():
            if batch.items:
                reducer.apply_batch(batch.items, last_id=batch.last_id)
            if not batch.backfill or not batch.items:
                return
            failure.clear()

    task = asyncio.create_task(consume())
    deadline = time.monotonic() + connect_timeout
    while not task.done():
        await asyncio.sleep(0.05)
        if failure and time.monotonic() > deadline:
            task.cancel()
            await reader.close()
            raise ConfigError(f"cannot reach Redis at {redact_url(redis_url)}: {failure[-1]}")
    await task
    await reader.close()
    return reducer.state()


def _check_redis(url: str) -> None:
    import redis

    from auren_core.backends import redact_url
    from auren_core.streams.shards import sync_client

    try:
        sync_client(url, socket_connect_timeout=2.0, socket_timeout=2.0).ping()
    except (redis.RedisError, redis.exceptions.RedisClusterException, OSError, ValueError) as exc:
        raise ConfigError(f"cannot reach Redis at {redact_url(url)}: {exc}") from None


def command(
    since: Annotated[
        float,
        typer.Option(
            parser=as_duration(allow_zero=True),
            metavar=METAVAR,
            show_default=False,
            help="Backfill window, e.g. 15m, 1h, 1d; 0 = none (default 1h).",
        ),
    ] = 3600.0,
    replay: Annotated[
        str | None,
        typer.Option(help="Play history FROM[..TO]: stream ids, ISO times, 2h (ago), - and +."),
    ] = None,
    speed: Annotated[float, typer.Option(help="Replay speed: 1 real time, 0 flat out.")] = 1.0,
    once: Annotated[bool, typer.Option(help="Print one state snapshot as JSON and exit.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="JSON output (with --once).")] = False,
    budget_usd_per_hour: Annotated[
        float | None, typer.Option(help="Budget: warning at 80%, alert at 100%.")
    ] = None,
    active_window: Annotated[
        float | None,
        typer.Option(
            parser=as_duration(),
            metavar=METAVAR,
            help="An agent is active if seen within this (default 5m).",
        ),
    ] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (else AUREN_REDIS_URL).")] = None,
    stream: Annotated[str | None, typer.Option(help="Stream name (else AUREN_STREAM).")] = None,
    alert_webhook: Annotated[
        str | None,
        typer.Option(
            help="POST alerts (budget, forecast, loops, stalls) here (else "
            "AUREN_ALERT_WEBHOOK; live mode only; docs/alerts.md)."
        ),
    ] = None,
) -> None:
    """Live terminal dashboard of agents, memory tiers, costs and collaboration."""
    import asyncio

    from auren_core.backends import describe_backends, resolve_redis
    from auren_core.config import load_settings

    since_s = since
    if speed < 0:
        raise ConfigError("--speed must be >= 0")
    if json_output and not once:
        raise ConfigError("--json goes with --once")
    if once and replay:
        raise ConfigError("--once and --replay do not mix")
    settings = load_settings(
        redis_url=redis_url,
        stream=stream,
        budget_usd_per_hour=budget_usd_per_hour,
        active_window_s=active_window,
        alert_webhook=alert_webhook,
    )
    if replay and settings.stream_shards > 1:
        raise ConfigError(
            "--replay reads one stream key: not available with AUREN_STREAM_SHARDS > 1"
        )
    span = parse_replay(replay) if replay else None
    backend = resolve_redis(settings)
    line = describe_backends(backend)
    print(line, file=sys.stderr)
    if once:
        import orjson

        state = asyncio.run(
            snapshot_once(backend.url, settings.stream, since_s=since_s, settings=settings)
        )
        sys.stdout.write(orjson.dumps(state.to_dict()).decode() + "\n")
        return
    _check_redis(backend.url)

    from auren_core.streams.replay import ReplaySpec
    from auren_tui.app import make_app

    app = make_app(
        redis_url=backend.url,
        stream=settings.stream,
        since_s=since_s,
        budget_usd_per_hour=settings.budget_usd_per_hour,
        active_window_s=settings.active_window_s,
        backends_line=line,
        replay=ReplaySpec(span[0], span[1], speed) if span else None,
        tool_costs=dict(settings.tool_costs),
        tier_costs=settings.tier_costs.model_dump(),
        alert_webhook=None if span else settings.alert_webhook,  # history fires no alerts
        recommendations=settings.recommendations.model_dump(),
        shards=settings.stream_shards,
    )
    app.run()
    if app.failure:
        raise ConfigError(f"stream worker failed: {app.failure}")
