"""``auren top``: the live dashboard, a one-shot JSON snapshot, or a replay of history."""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from auren_core.config import ConfigError

if TYPE_CHECKING:
    from auren_core.config import Settings
    from auren_core.state import DashboardState

__all__ = ["command", "parse_duration", "parse_replay", "snapshot_once"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_STREAM_ID = re.compile(r"\d+(-\d+)?")
_AGO = re.compile(r"(\d+(\.\d+)?[smhdw])+(\s*ago)?")


def parse_duration(text: str, what: str = "duration") -> float:
    """``90s``, ``15m``, ``1h30m``, ``2d`` or plain seconds -> seconds."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    parts = _DURATION.findall(t)
    if not t or "".join(n + u for n, u in parts) != t:
        raise ConfigError(f"bad {what} {text!r}: use e.g. 90s, 15m, 1h, 1h30m, 2d")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _point(text: str, now: float, *, end: bool) -> str:
    """One end of ``--replay``: a stream id, an ISO time, a duration ago, or -/+/now."""
    t = text.strip()
    if t in ("", "+", "now") if end else t in ("", "-"):
        return "+" if end else "-"
    if _STREAM_ID.fullmatch(t):
        return t
    if _AGO.fullmatch(t.lower()):
        secs = parse_duration(t.lower().removesuffix("ago").strip(), "replay time")
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
        from auren_core.reader import parse_stream_id

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

    from auren_core.embedded import redact_url
    from auren_core.reader import StreamReader
    from auren_core.state import Reducer

    reducer = Reducer(
        window_s=max(3600.0, since_s),
        active_window_s=settings.active_window_s,
        budget_usd_per_hour=settings.budget_usd_per_hour,
        tool_costs=settings.tool_costs,
    )
    failure: list[str] = []

    def status(state: str, detail: str) -> None:
        if state == "reconnecting":
            failure.append(detail)
        reducer.set_connection("live" if state == "connected" else state, detail)

    reader = StreamReader(
        redis_url, stream, since=time.time() - since_s, batch_count=5000, on_status=status
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

    from auren_core.embedded import redact_url

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0).ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot reach Redis at {redact_url(url)}: {exc}") from None


def command(
    since: Annotated[str, typer.Option(help="Backfill window, e.g. 15m, 1h, 1d; 0 = none.")] = "1h",
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
        str | None, typer.Option(help="An agent is active if seen within this (default 5m).")
    ] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL (else AUREN_REDIS_URL).")] = None,
    stream: Annotated[str | None, typer.Option(help="Stream name (else AUREN_STREAM).")] = None,
) -> None:
    """Live terminal dashboard of agents, memory tiers, costs and collaboration."""
    import asyncio

    from auren_core.config import load_settings
    from auren_core.embedded import describe_backends, resolve_redis

    since_s = parse_duration(since, "--since")
    if speed < 0:
        raise ConfigError("--speed must be >= 0")
    if json_output and not once:
        raise ConfigError("--json goes with --once")
    if once and replay:
        raise ConfigError("--once and --replay do not mix")
    active_s = parse_duration(active_window, "--active-window") if active_window else None
    settings = load_settings(
        redis_url=redis_url,
        stream=stream,
        budget_usd_per_hour=budget_usd_per_hour,
        active_window_s=active_s,
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

    from auren_tui.app import make_app
    from auren_tui.worker import ReplaySpec

    app = make_app(
        redis_url=backend.url,
        stream=settings.stream,
        since_s=since_s,
        budget_usd_per_hour=settings.budget_usd_per_hour,
        active_window_s=settings.active_window_s,
        backends_line=line,
        replay=ReplaySpec(span[0], span[1], speed) if span else None,
        tool_costs=dict(settings.tool_costs),
    )
    app.run()
    if app.failure:
        raise ConfigError(f"stream worker failed: {app.failure}")
