"""The HTTP API: tier stats, active agents, flows, analytics export, token refresh, health,
metrics.

Every number comes from the shared reducer (``auren_core.state.Reducer``) fed with stream
events: the live one for the server's own window, a fresh one over ``XRANGE`` for other
windows (computed in a thread, cached briefly, capped at ``max_window_events``).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from websockets.http11 import Request, Response

from ..events import Event, Malformed
from ..streams.entries import decode_entries, entry_id, id_for_time
from ..streams.shards import shard_keys, sync_client
from .auth import AuthError
from .http import bearer, bytes_response, error, json_response, origin_allowed, text_response
from .metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from .app import Server

__all__ = ["Routes"]

MAX_WINDOW_HOURS = 24 * 30
DEFAULT_TIER_HOURS = 24.0  # tier-stats' window when none is asked for (DESIGN.md)
_CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
}


def _param(query: dict[str, list[str]], name: str, default: str) -> str:
    values = query.get(name)
    return values[-1] if values else default


def _hours(query: dict[str, list[str]], default: float) -> float:
    raw = _param(query, "window_hours", str(default))
    try:
        hours = float(raw)
    except ValueError:
        raise ValueError(f"window_hours must be a number, got {raw[:20]!r}") from None
    if not 0 < hours <= MAX_WINDOW_HOURS:
        raise ValueError(f"window_hours must be in (0, {MAX_WINDOW_HOURS}]")
    return hours


def iso8601(ts: Any) -> str | None:
    """An epoch timestamp as ISO 8601 UTC with milliseconds (``2026-12-04T03:03:11.250Z``)."""
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return None
    try:
        dt = datetime.fromtimestamp(float(ts), tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_agent(a: dict[str, Any]) -> dict[str, Any]:
    """An agent of the snapshot as the API shows it: ``last_activity`` in ISO 8601, the
    epoch seconds kept as ``last_activity_ts``."""
    out = dict(a)
    out["last_activity_ts"] = a.get("last_activity")
    out["last_activity"] = iso8601(a.get("last_activity"))
    return out


class Routes:
    def __init__(self, server: Server) -> None:
        self.s = server
        self._cache: dict[float, tuple[float, list[Event | Malformed], bool]] = {}
        self._lock = asyncio.Lock()

    async def handle(self, request: Request, path: str, origin: str | None) -> Response:
        cfg = self.s.config
        cors: list[tuple[str, str]] = []
        if origin is not None:
            if not origin_allowed(origin, cfg.origins):
                return error(403, "origin not allowed")
            cors = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        query = parse_qs(urlsplit(request.path).query)
        try:
            if path == "/healthz":
                return self._health(cors)
            if path == "/metrics":
                return text_response(200, self.s.metrics.render(), CONTENT_TYPE, cors)
            if path == "/api/v2/auth/refresh":
                return await self._refresh(request, cors)
            if not path.startswith("/api/v2/"):
                return error(404, "not found", cors)
            if request.method != "GET":
                return error(405, "method not allowed", cors)
            if cfg.auth == "jwt":
                token = bearer(request)
                if token is None:
                    return error(401, "Authorization: Bearer <access token> required", cors)
                try:
                    await self.s.check_access(token)
                except AuthError as exc:
                    self.s.metrics.rejected_auth += 1
                    return error(401, str(exc), cors)
            if path == "/api/v2/memory/tier-stats":
                return await self._tier_stats(query, cors)
            if path == "/api/v2/agents/active":
                return self._agents(cors)
            if path == "/api/v2/flows":
                return self._flows(cors)
            if path == "/api/v2/export/analytics":
                return await self._export(query, cors)
            if path.startswith("/api/v2/analytics/"):
                return await self._analytics(path.removeprefix("/api/v2/analytics/"), query, cors)
            return error(404, "not found", cors)
        except ValueError as exc:
            return error(400, str(exc), cors)

    # ------------------------------------------------------------------ endpoints

    def _health(self, cors: list[tuple[str, str]]) -> Response:
        m, hub = self.s.metrics, self.s.hub
        ok = m.reader_connected and hub.ready.is_set()
        doc = {
            "status": "ok" if ok else "degraded",
            "reader_connected": m.reader_connected,
            "ready": hub.ready.is_set(),
            "last_id": hub.last_id,
            "lag": m.lag,
            "clients": hub.clients,
            "events_per_s": round(m.rate.rate(), 3),
            "stream": self.s.config.stream,
            "uptime_s": round(time.monotonic() - self.s.started, 3),
        }
        return json_response(200 if ok else 503, doc, cors)

    async def _refresh(self, request: Request, cors: list[tuple[str, str]]) -> Response:
        if request.method != "POST":  # it has an effect: never a GET
            return error(405, "use POST", cors)
        store = self.s.refresh_store
        if self.s.config.auth != "jwt" or store is None or self.s.keyring is None:
            return error(404, "auth is off", cors)
        token = bearer(request)
        if token is None:
            return error(401, "Authorization: Bearer <refresh token> required", cors)
        try:
            pair = await asyncio.to_thread(store.refresh, self.s.keyring, token)
        except AuthError as exc:
            return error(401, str(exc), cors)
        return json_response(200, pair.to_dict(), cors)

    def _agents(self, cors: list[tuple[str, str]]) -> Response:
        state = self.s.live_state()
        agents = [_iso_agent(a) for a in state.get("agents", [])]
        doc = {
            "generated_at": state.get("generated_at"),
            "active_window_s": self.s.config.active_window_s,
            "active_count": len(agents),
            "count": len(agents),  # the name before active_count (kept)
            "agents": agents,
        }
        return json_response(200, doc, cors)

    def _flows(self, cors: list[tuple[str, str]]) -> Response:
        state = self.s.reducer.state()
        flows = state.flows_to_dict()
        counts = {k: 0 for k in ("running", "waiting_human", "completed", "failed")}
        for f in state.flows:
            counts[f.status] = counts.get(f.status, 0) + 1
        doc = {
            "generated_at": state.generated_at,
            "window_s": state.window_s,
            "count": len(flows),
            "active": counts["running"] + counts["waiting_human"],
            "by_status": counts,
            "flows": flows,
        }
        return json_response(200, doc, cors)

    async def _tier_stats(
        self, query: dict[str, list[str]], cors: list[tuple[str, str]]
    ) -> Response:
        hours = _hours(query, DEFAULT_TIER_HOURS)
        window_s = hours * 3600.0
        if abs(window_s - self.s.config.window_s) < 1e-6:
            stats = dict(self.s.reducer.state().tier_stats())
            truncated = False
        else:
            items, truncated = await self._window(window_s)
            reducer = self.s.new_reducer(window_s)
            reducer.apply_batch(items)
            stats = dict(reducer.state().tier_stats())
        stats.update({"window_hours": hours, "truncated": truncated})
        return json_response(200, stats, cors)

    async def _analytics(
        self, section: str, query: dict[str, list[str]], cors: list[tuple[str, str]]
    ) -> Response:
        from ..analytics import SECTIONS, analysis, sections

        if section not in SECTIONS:
            return error(404, f"unknown analytics section; one of {', '.join(SECTIONS)}", cors)
        truncated = False
        if "window_hours" in query:
            hours = _hours(query, 1.0)
            items, truncated = await self._window(hours * 3600.0)
            budget = self.s.config.budget_usd_per_hour
            th = dict(self.s.config.recommendations)
            now = time.time()
            doc = await asyncio.to_thread(
                lambda: sections(
                    analysis(items, now=now, budget_usd_per_hour=budget, thresholds=th)
                )
            )
            window_s = hours * 3600.0
        else:
            doc = await self.s.analytics()
            window_s = self.s.config.window_s
        body = {
            "section": section,
            "generated_at": doc["generated_at"],
            "window_s": window_s,
            "events": doc["events"],
            "since": doc["since"],
            "truncated": truncated,
            "counts": doc["counts"],
            section: doc[section],
        }
        return json_response(200, body, cors)

    async def _export(self, query: dict[str, list[str]], cors: list[tuple[str, str]]) -> Response:
        fmt = _param(query, "format", "csv")
        if fmt not in _CONTENT_TYPES:
            raise ValueError("format must be csv, json or jsonl")
        try:
            from .. import export
        except ImportError:
            return error(
                503,
                "analytics export is not available in this build (auren_core.export missing)",
                cors,
            )
        report = _param(query, "report", "all")
        reports = list(export.ALL) if report == "all" else report.split(",")
        bad = [r for r in reports if r not in export.REPORTS]
        if bad:
            raise ValueError(
                f"unknown report {bad[0][:30]!r}; one of {', '.join(export.REPORTS)} or all"
            )
        hours = _hours(query, 24.0)
        items, truncated = await self._window(hours * 3600.0)
        events = [it for it in items if isinstance(it, Event)]
        body = await asyncio.to_thread(
            lambda: export.render(
                export.build_reports(
                    events,
                    reports,
                    tool_costs=self.s.config.tool_costs,
                    tier_costs=self.s.config.tier_costs,
                ),
                fmt,  # type: ignore[arg-type]
            )
        )
        extra = [
            *cors,
            ("X-Auren-Truncated", "1" if truncated else "0"),
            ("Content-Disposition", f'inline; filename="auren-{report}.{fmt}"'),
        ]
        return bytes_response(200, body, _CONTENT_TYPES[fmt], extra)

    # ------------------------------------------------------------------ data

    async def _window(self, window_s: float) -> tuple[list[Event | Malformed], bool]:
        """Stream entries of the last ``window_s`` seconds (cached for 2 s)."""
        async with self._lock:
            hit = self._cache.get(window_s)
            if hit is not None and time.monotonic() - hit[0] < 2.0:
                return hit[1], hit[2]
            items, truncated = await asyncio.to_thread(self._read_window, window_s)
            self._cache = {window_s: (time.monotonic(), items, truncated)}
            return items, truncated

    def _read_window(self, window_s: float) -> tuple[list[Event | Malformed], bool]:
        cap = self.s.config.max_window_events
        keys = shard_keys(self.s.config.stream, self.s.config.shards)
        if len(keys) > 1:  # every shard's window, merged by event time
            out: list[Event | Malformed] = []
            truncated = False
            for key in keys:
                part, cut = self._read_key_window(key, window_s, cap)
                out.extend(part)
                truncated = truncated or cut
            out.sort(key=lambda it: it.ts if isinstance(it, Event) else 0.0)
            return out[:cap], truncated or len(out) > cap
        return self._read_key_window(self.s.config.stream, window_s, cap)

    def _read_key_window(
        self, key: str, window_s: float, cap: int
    ) -> tuple[list[Event | Malformed], bool]:
        client = sync_client(self.s.config.redis_url, socket_timeout=10)
        try:
            items: list[Event | Malformed] = []
            start = id_for_time(time.time() - window_s)
            while len(items) < cap:
                entries: Any = client.xrange(
                    key, min=start, max="+", count=min(10_000, cap - len(items))
                )
                if not entries:
                    break
                items.extend(decode_entries(entries))
                last = entries[-1][0]
                start = "(" + entry_id(last)
            else:
                return items, True
            return items, False
        finally:
            client.close()
