"""Alerts that leave the terminal: budget, forecast, loops and stalls POSTed to a webhook.

Two parts (docs/alerts.md):

* the pure decision - :func:`collect` turns the reducer's cost state (``state.costs``: the
  burn rate against ``budget_usd_per_hour``) and an analytics result
  (:func:`auren_core.analytics.analysis` or its :func:`~auren_core.analytics.sections`) into
  :class:`Alert` values with a stable identity, and :class:`AlertGate` decides which to send:
  an alert goes out once, is not re-sent while it stays active, and goes out again only
  after it has *cleared* (absent from every evaluation for ``clear_s``, default 60 s) or,
  still active, after ``repeat_s`` (default 1 h);
* the thin sender - :class:`WebhookSender` POSTs each payload from a daemon thread fed
  through a bounded queue (``submit`` never blocks: a full queue drops the alert and counts
  it), retrying 5xx, 429 and network errors with exponential backoff (``tenacity``).

:class:`AlertNotifier` joins them: ``evaluate(costs, analytics, now)`` is what ``auren
serve-ws`` and ``auren top``'s worker call after each analytics run.

The body is Slack-compatible (``{"text": ...}``; Mattermost, Discord's ``/slack`` endpoint,
Rocket.Chat and most generic receivers accept it too), with the structured alert under
``"auren"``. Names from events are clipped; in ``text`` the characters Slack treats as
markup (``&``, ``<``, ``>``) are escaped, so an agent named ``<!channel>`` pings no one, and
JSON encoding keeps every name inert data.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "Alert",
    "AlertGate",
    "AlertNotifier",
    "WebhookSender",
    "check_webhook_url",
    "collect",
    "payload",
]

log = logging.getLogger("auren.alerts")

NAME_LIMIT: Final = 120  # characters of an agent name, signature or task id kept
TEXT_LIMIT: Final = 500  # characters of an alert's text


def _clip(v: Any, limit: int = NAME_LIMIT) -> str | None:
    if v is None:
        return None
    s = v if isinstance(v, str) else str(v)
    s = "".join(c if c.isprintable() else " " for c in s)  # no newlines or controls
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _slack_escape(s: str) -> str:
    """Slack's three control characters (api.slack.com: formatting, escaping text)."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert. ``key`` names the condition (the same condition keeps the same key while
    its figures move); ``level`` is part of its identity, so a budget going from warning to
    over budget is a new alert."""

    key: str
    kind: str  # budget | budget_forecast | loop | stall
    level: str  # warning | alert
    text: str
    agent: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, str]:
        return (self.key, self.level)


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _budget(costs: Any) -> list[Alert]:
    """The burn rate against the budget: ``warning`` from 80%, ``alert`` from 100% (the
    reducer's ``budget_status``, the rule of the dashboard's token-economics pane)."""
    if costs is None:
        return []
    status = _get(costs, "budget_status")
    if status not in ("warning", "alert"):
        return []
    burn = float(_get(costs, "burn_usd_per_hour") or 0.0)
    budget = float(_get(costs, "budget_usd_per_hour") or 0.0)
    used = float(_get(costs, "budget_used") or 0.0)
    what = "over budget" if status == "alert" else "at 80% of budget"
    text = (
        f"burn rate ${burn:.2f}/h is {used:.0%} of the ${budget:.2f}/h budget ({what}; "
        f"projected ${burn * 24:.2f}/day)"
    )
    return [
        Alert(
            key="budget",
            kind="budget",
            level=str(status),
            text=text,
            fields={
                "burn_usd_per_hour": round(burn, 6),
                "budget_usd_per_hour": budget,
                "budget_used": round(used, 4),
                "span_s": _get(costs, "span_s"),
            },
        )
    ]


def _section(analytics: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """``loops`` / ``stalls`` of an :func:`analysis` result or of its :func:`sections`."""
    if name in analytics:
        return list(analytics[name] or [])
    return list((analytics.get("patterns") or {}).get(name) or [])


def collect(costs: Any, analytics: Mapping[str, Any] | None) -> list[Alert]:
    """Every alert of the cost state and the analytics, each identity once."""
    out = _budget(costs)
    if analytics:
        fc = analytics.get("forecast") or {}
        for a in fc.get("alerts") or []:
            if a.get("kind") != "budget_forecast":
                continue
            out.append(Alert(
                key="budget_forecast", kind="budget_forecast", level=str(a.get("level")),
                text=_clip(a.get("text"), TEXT_LIMIT) or "",
                fields={k: a.get(k) for k in ("forecast_usd", "high_usd", "budget_usd_per_hour")},
            ))  # fmt: skip
        for lp in _section(analytics, "loops"):
            agent, sig = _clip(lp.get("agent")), _clip(lp.get("signature"))
            out.append(Alert(
                key=f"loop\x00{agent}\x00{lp.get('kind')}\x00{sig}", kind="loop",
                level="warning", agent=agent,
                text=f"{agent} repeated {lp.get('kind')} {sig!r} {lp.get('repeats')}x "
                f"(${float(lp.get('cost_usd') or 0):.4f})",
                fields={"signature": sig, "action": lp.get("kind"), "repeats": lp.get("repeats"),
                        "run": _clip(lp.get("run")), "cost_usd": lp.get("cost_usd")},
            ))  # fmt: skip
        for st in _section(analytics, "stalls"):
            agent, task = _clip(st.get("agent")), _clip(st.get("task_id"))
            out.append(Alert(
                key=f"stall\x00{agent}\x00{task}", kind="stall", level="warning", agent=agent,
                text=f"{agent} silent {float(st.get('silent_s') or 0):.0f}s with task "
                f"{task or '?'} in flight (${float(st.get('cost_usd') or 0):.4f} so far)",
                fields={"task_id": task, "run": _clip(st.get("run")),
                        "silent_s": st.get("silent_s"), "cost_usd": st.get("cost_usd")},
            ))  # fmt: skip
    seen: set[tuple[str, str]] = set()
    unique = []
    for al in out:
        if al.identity not in seen:
            seen.add(al.identity)
            unique.append(al)
    return unique


class AlertGate:
    """De-duplication: which of an evaluation's alerts to send.

    An alert is sent when first seen; while it stays active (present in evaluations no more
    than ``clear_s`` apart) it is not sent again, except every ``repeat_s`` as a reminder.
    Once absent for ``clear_s`` it has cleared, and its next appearance is sent. At most
    ``max_active`` identities are remembered (the longest unseen forgotten first)."""

    def __init__(
        self, *, clear_s: float = 60.0, repeat_s: float = 3600.0, max_active: int = 1000
    ) -> None:
        self.clear_s = clear_s
        self.repeat_s = repeat_s
        self.max_active = max(1, max_active)
        self.active: dict[tuple[str, str], list[float]] = {}  # identity -> [sent, seen]

    def update(self, alerts: Iterable[Alert], now: float) -> list[Alert]:
        for ident, (_sent, seen) in list(self.active.items()):
            if now - seen >= self.clear_s:
                del self.active[ident]
        send = []
        for al in alerts:
            st = self.active.get(al.identity)
            if st is None:
                self.active[al.identity] = [now, now]
                send.append(al)
                continue
            st[1] = now
            if now - st[0] >= self.repeat_s:
                st[0] = now
                send.append(al)
        if len(self.active) > self.max_active:
            for ident, _ in sorted(self.active.items(), key=lambda kv: kv[1][1])[
                : len(self.active) - self.max_active
            ]:
                del self.active[ident]
        return send


def payload(alert: Alert, *, source: str, now: float) -> dict[str, Any]:
    """The JSON body: Slack's ``text`` plus the structured alert under ``auren``."""
    icon = ":rotating_light:" if alert.level == "alert" else ":warning:"
    return {
        "text": f"{icon} AUREN {alert.level} ({source}): {_slack_escape(alert.text)}",
        "auren": {
            "kind": alert.kind,
            "level": alert.level,
            "key": alert.key.replace("\x00", "/"),
            "agent": alert.agent,
            "text": alert.text,
            "source": source,
            "fired_at": now,
            **dict(alert.fields),
        },
    }


class _Retry(Exception):
    """A response worth retrying (5xx, 429) or a network error."""


def check_webhook_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host, else ``ValueError``."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return url


class WebhookSender:
    """POSTs JSON bodies to ``url`` from one daemon thread.

    :meth:`submit` never blocks: the queue holds ``queue_size`` bodies, beyond that a body is
    dropped and counted (``dropped``). Each body is tried ``attempts`` times: a 5xx or 429
    answer or a network error waits ``backoff_s`` x 2^n (at most ``backoff_max_s``) and tries
    again; any other 4xx is final. Counters: ``sent``, ``failed``, ``retries``, ``dropped``."""

    def __init__(
        self,
        url: str,
        *,
        queue_size: int = 100,
        attempts: int = 4,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        timeout_s: float = 5.0,
        opener: Callable[..., Any] = urllib.request.urlopen,
    ) -> None:
        self.url = check_webhook_url(url)
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self._open = opener
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max(1, queue_size))
        self.sent = self.failed = self.retries = self.dropped = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, body: dict[str, Any]) -> bool:
        """Queue one body; ``False`` (and ``dropped`` + 1) when the queue is full."""
        self._ensure_thread()
        try:
            self._q.put_nowait(body)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="auren-alerts", daemon=True)
                self._thread.start()

    def _post_once(self, data: bytes) -> None:
        req = urllib.request.Request(  # noqa: S310 (http/https only: check_webhook_url)
            self.url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "auren-alerts"},
        )
        try:
            with self._open(req, timeout=self.timeout_s) as resp:
                resp.read(65536)
        except urllib.error.HTTPError as exc:
            if exc.code >= 500 or exc.code == 429:
                raise _Retry(f"HTTP {exc.code}") from None
            raise  # another 4xx: the receiver refuses this body, retrying will not help
        except (urllib.error.URLError, OSError) as exc:
            raise _Retry(str(exc)) from None

    def _deliver(self, body: dict[str, Any]) -> None:
        from tenacity import (
            RetryCallState,
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential,
        )

        def count(_state: RetryCallState) -> None:
            self.retries += 1

        data = json.dumps(body, ensure_ascii=True).encode()
        for attempt in Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, max=self.backoff_max_s),
            retry=retry_if_exception_type(_Retry),
            before_sleep=count,
            reraise=True,
        ):
            with attempt:
                self._post_once(data)

    def _run(self) -> None:
        while True:
            body = self._q.get()
            if body is None:
                return
            try:
                self._deliver(body)
                self.sent += 1
            except Exception as exc:  # final: count it and log one line, never raise
                self.failed += 1
                log.warning("alert webhook failed: %s", exc)
            finally:
                self._q.task_done()

    def join(self, timeout: float = 10.0) -> bool:
        """Wait until every queued body was sent or given up (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._q.unfinished_tasks

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread after what is queued (waits at most ``timeout``)."""
        t = self._thread
        if t is None:
            return
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            return
        t.join(timeout)


class AlertNotifier:
    """:func:`collect`, then :class:`AlertGate`, then :class:`WebhookSender`."""

    def __init__(
        self,
        url: str,
        *,
        source: str,
        gate: AlertGate | None = None,
        sender: WebhookSender | None = None,
    ) -> None:
        self.source = source
        self.gate = gate or AlertGate()
        self.sender = sender or WebhookSender(url)

    def evaluate(self, costs: Any, analytics: Mapping[str, Any] | None, now: float) -> int:
        """Send what is new in this evaluation (non-blocking); returns how many were queued."""
        n = 0
        for al in self.gate.update(collect(costs, analytics), now):
            n += self.sender.submit(payload(al, source=self.source, now=now))
        return n

    def close(self, timeout: float = 2.0) -> None:
        self.sender.close(timeout)
