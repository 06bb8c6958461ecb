"""The OTLP receiver: HTTP (``POST /v1/traces``) and gRPC (``TraceService/Export``).

Both transports hand decoded requests to one :class:`OtlpReceiver`, which validates the
spans, passes them through the per-trace buffer (``buffer.TraceBuffer``), maps the
spans that leave it to v1 events (``mapping.Mapper``) and enqueues those on the normal
:class:`~auren_core.streams.publisher.Publisher`. Decoding runs outside the receiver's lock; the
buffer and the mapping run under it (they are quick and keep per-trace state).

Answers follow the OTLP specification: 200 with an ``ExportTraceServiceResponse`` (its
``partial_success`` counts rejected spans and says why), 400 with a ``google.rpc.Status``
for an undecodable body, 413 over the size limit (compressed or not), 415 for another
content type, 401 without the token when auth is on, 503 with ``Retry-After`` while the
publisher's buffer is nearly full (retryable: the exporter sends again, nothing is
dropped here). gRPC uses the matching status codes.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

import msgspec
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ..events import SCHEMA_VERSION, PublisherStats, new_event_id
from ..streams.publisher import Publisher
from .buffer import Ready, TraceBuffer
from .mapping import Mapper, OtlpEvent
from .spans import BadRequest, extract, parse_json, parse_protobuf

__all__ = ["Busy", "OtlpReceiver", "OtlpServer", "ReceiverConfig"]

log = logging.getLogger("auren.otlp")

DEFAULT_MAX_BODY: Final = 16 * 1024 * 1024
_DRAIN_LIMIT: Final = 256 * 1024 * 1024  # read and discard an oversized body up to this
_PROTO = "application/x-protobuf"
_JSON = "application/json"


def tune_gc() -> None:
    """For a serve-otlp process: the buffer keeps up to ``max_spans`` small objects alive,
    and CPython's default thresholds then run full collections over all of them every
    few requests (measured: 100+ ms pauses). Collect young objects less often and move
    what exists at start-up out of the collector's way."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class Busy(Exception):
    """The publisher's buffer is nearly full: retry later (503 / UNAVAILABLE)."""


def _status_pb(code: int, message: str) -> bytes:
    """A ``google.rpc.Status`` (code, message) encoded by hand: two fields."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    msg = message.encode("utf-8", "replace")
    return b"\x08" + varint(code) + b"\x12" + varint(len(msg)) + msg


class ReceiverConfig(msgspec.Struct, kw_only=True):
    max_wait: float = 15.0
    max_spans: int = 200_000
    max_traces: int = 20_000
    max_body: int = DEFAULT_MAX_BODY
    token: str | None = None  # None: no auth
    stats_interval: float = 10.0
    busy_fraction: float = 0.8


class OtlpReceiver:
    """Transport-independent core (thread-safe)."""

    def __init__(
        self,
        publisher: Publisher,
        config: ReceiverConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publisher = publisher
        self.config = config or ReceiverConfig()
        c = self.config
        self.clock = clock
        self.buffer = TraceBuffer(max_wait=c.max_wait, max_spans=c.max_spans,
                                  max_traces=c.max_traces)
        self.mapper = Mapper(clock=clock)
        self._lock = threading.Lock()
        self._encoder = msgspec.json.Encoder()
        self.received = 0  # spans in requests that were decoded
        self.converted = 0  # spans mapped (released by the buffer)
        self.events = 0  # events enqueued
        self.rejected: Counter[str] = Counter()  # spans, by reason
        self.requests: Counter[str] = Counter()  # by transport and outcome
        self.bad_requests: Counter[str] = Counter()  # whole requests refused, by reason
        self.bytes = 0
        self.identity = f"otlp:{publisher.identity}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_stats = clock() + c.stats_interval

    # ------------------------------------------------------------------ auth
    def authorized(self, header: str | None) -> bool:
        token = self.config.token
        if token is None:
            return True
        if not header:
            return False
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), token.encode())

    # ------------------------------------------------------------------ core
    def _check_busy(self) -> None:
        pub = self.publisher
        if pub.counters().queued >= pub.buffer_size * self.config.busy_fraction:
            raise Busy("the event publisher is behind (Redis slow or down): retry later")

    def export(self, req: ExportTraceServiceRequest) -> tuple[int, str]:
        """Take one decoded request; returns (rejected spans, message)."""
        self._check_busy()
        rejected: Counter[str] = Counter()
        spans, total = extract(req, rejected)
        now = self.clock()
        with self._lock:
            self.received += total
            self.rejected.update(rejected)
            ready = self.buffer.add(spans, now)
            self._emit(ready)
        n = sum(rejected.values())
        if not n:
            return 0, ""
        why = ", ".join(f"{k}: {v}" for k, v in sorted(rejected.items()))
        return n, f"{n} of {total} spans rejected ({why})"

    def _emit(self, ready: list[Ready]) -> None:
        if not ready:
            return
        evs = self.mapper.events(ready)
        for r in ready:
            self.buffer.release(r)
        self.converted += len(ready)
        self._publish(evs)

    def _publish(self, evs: list[OtlpEvent]) -> None:
        enc = self._encoder.encode
        enqueue = self.publisher.enqueue_raw
        for ts, typ, agent, run, payload in evs:
            enqueue(
                enc(
                    {
                        "v": SCHEMA_VERSION,
                        "id": new_event_id(),
                        "ts": ts,
                        "type": typ,
                        "agent": agent,
                        "run": run,
                        "payload": payload,
                    }
                )
            )
        self.events += len(evs)

    def tick(self) -> None:
        """Release spans past their maximum wait; emit the periodic stats event."""
        now = self.clock()
        with self._lock:
            self._emit(self.buffer.expire(now))
            if now >= self._next_stats:
                self._next_stats = now + self.config.stats_interval
                self._publish([(time.time(), "publisher_stats", None, None, self.stats_payload())])

    def flush_all(self) -> None:
        with self._lock:
            self._emit(self.buffer.flush_all())
            self._publish([(time.time(), "publisher_stats", None, None, self.stats_payload())])

    # ------------------------------------------------------------------ HTTP body
    def handle_http(
        self, body: bytes, content_type: str, encoding: str
    ) -> tuple[int, bytes, str, dict[str, str]]:
        """(status, response body, response content type, extra headers)."""
        ctype = content_type.split(";")[0].strip().lower()
        json_mode = ctype == _JSON
        out_ct = _JSON if json_mode else _PROTO
        if ctype not in (_PROTO, _JSON):
            self.requests["http_415"] += 1
            self.bad_requests["unsupported_content_type"] += 1
            msg = f"unsupported Content-Type {ctype[:60]!r}: use {_PROTO} or {_JSON}"
            return 415, self._error_body(3, msg, False), _PROTO, {}
        enc = encoding.strip().lower()
        if enc in ("gzip", "x-gzip"):
            try:
                d = zlib.decompressobj(wbits=31)
                body = d.decompress(body, self.config.max_body + 1)
                if len(body) > self.config.max_body:
                    self.requests["http_413"] += 1
                    self.bad_requests["too_large"] += 1
                    msg = f"decompressed body over the limit of {self.config.max_body} bytes"
                    return 413, self._error_body(8, msg, json_mode), out_ct, {}
                if not d.eof:
                    raise zlib.error("truncated gzip stream")
            except zlib.error as exc:
                self.requests["http_400"] += 1
                self.bad_requests["bad_gzip"] += 1
                return 400, self._error_body(3, f"bad gzip body: {exc}", json_mode), out_ct, {}
        elif enc not in ("", "identity"):
            self.requests["http_415"] += 1
            self.bad_requests["unsupported_encoding"] += 1
            msg = f"unsupported Content-Encoding {enc[:40]!r}: use gzip or none"
            return 415, self._error_body(3, msg, json_mode), out_ct, {}
        self.bytes += len(body)
        try:
            req = parse_json(body) if json_mode else parse_protobuf(body)
            n, msg = self.export(req)
        except BadRequest as exc:
            self.requests["http_400"] += 1
            self.bad_requests["undecodable"] += 1
            return 400, self._error_body(3, str(exc), json_mode), out_ct, {}
        except Busy as exc:
            self.requests["http_503"] += 1
            return 503, self._error_body(14, str(exc), json_mode), out_ct, {"Retry-After": "1"}
        self.requests["http_ok" if not n else "http_partial"] += 1
        if json_mode:
            doc: dict[str, Any] = {}
            if n:
                doc = {"partialSuccess": {"rejectedSpans": str(n), "errorMessage": msg}}
            return 200, self._encoder.encode(doc), _JSON, {}
        resp = ExportTraceServiceResponse()
        if n:
            resp.partial_success.rejected_spans = n
            resp.partial_success.error_message = msg
        return 200, resp.SerializeToString(), _PROTO, {}

    def _error_body(self, code: int, message: str, json_mode: bool) -> bytes:
        if json_mode:
            return self._encoder.encode({"code": code, "message": message})
        return _status_pb(code, message)

    # ------------------------------------------------------------------ health
    def stats_payload(self) -> PublisherStats:
        """A ``publisher_stats`` payload (the dashboard's health line counts ``dropped``:
        here the spans rejected), with the receiver's own counters (``kind: "otlp"``)."""
        rejected = sum(self.rejected.values())
        return PublisherStats(
            sent=self.events,
            dropped=rejected,
            queued=self.buffer.pending,
            errors=sum(self.bad_requests.values()),
            publisher=self.identity,
            kind="otlp",
            received=self.received,
            converted=self.converted,
            rejected=rejected,
            rejected_by_reason=dict(self.rejected),
            evicted=self.buffer.evicted_traces,
            evicted_spans=self.buffer.evicted_spans,
            expired=self.buffer.expired,
            duplicates=self.buffer.duplicates,
            buffered=self.buffer.pending,
            traces=self.buffer.traces,
        )

    def render_metrics(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        b = self.buffer
        pc = self.publisher.counters()
        rows: list[tuple[str, str, str, list[tuple[str, float]]]] = [
            ("auren_otlp_spans_received_total", "counter", "spans in decoded requests",
             [("", self.received)]),
            ("auren_otlp_spans_converted_total", "counter", "spans mapped to events",
             [("", self.converted)]),
            ("auren_otlp_events_total", "counter", "events handed to the publisher",
             [("", self.events)]),
            ("auren_otlp_spans_rejected_total", "counter", "spans rejected, by reason",
             [(f'{{reason="{k}"}}', v) for k, v in sorted(self.rejected.items())]
             or [('{reason="none"}', 0)]),
            ("auren_otlp_requests_total", "counter", "requests, by transport and outcome",
             [(f'{{outcome="{k}"}}', v) for k, v in sorted(self.requests.items())]),
            ("auren_otlp_requests_refused_total", "counter", "whole requests refused, by reason",
             [(f'{{reason="{k}"}}', v) for k, v in sorted(self.bad_requests.items())]),
            ("auren_otlp_traces_evicted_total", "counter",
             "traces dropped from the buffer with spans still waiting", [("", b.evicted_traces)]),
            ("auren_otlp_spans_evicted_total", "counter",
             "waiting spans released by an eviction", [("", b.evicted_spans)]),
            ("auren_otlp_spans_expired_total", "counter",
             "spans released at the maximum wait", [("", b.expired)]),
            ("auren_otlp_spans_duplicate_total", "counter", "spans received twice (retries)",
             [("", b.duplicates)]),
            ("auren_otlp_buffer_spans", "gauge", "spans waiting for an ancestor",
             [("", b.pending)]),
            ("auren_otlp_buffer_traces", "gauge", "traces remembered", [("", b.traces)]),
            ("auren_otlp_bytes_total", "counter", "request bytes decoded", [("", self.bytes)]),
            ("auren_otlp_publisher_sent_total", "counter", "events written to the stream",
             [("", pc.sent)]),
            ("auren_otlp_publisher_dropped_total", "counter", "events the publisher dropped",
             [("", pc.dropped)]),
            ("auren_otlp_publisher_queued", "gauge", "events waiting to be written",
             [("", pc.queued)]),
        ]
        lines: list[str] = []
        for name, kind, help_, samples in rows:
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, v in samples:
                lines.append(f"{name}{labels} {v}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="auren-otlp-tick", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.tick()
            except Exception:  # keep ticking whatever one span did
                log.exception("otlp tick failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self.flush_all()


# --------------------------------------------------------------------------- HTTP
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "auren-otlp"
    sys_version = ""
    receiver: OtlpReceiver  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None,
              close: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/metrics":
            body = self.receiver.render_metrics().encode()
            self._send(200, body, "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _read_body(self, limit: int) -> bytes | None:
        """The body, or None when it is over ``limit`` (then drained or the connection
        closed). Raises ValueError on a malformed length or chunk."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(100)
                n = int(line.split(b";")[0].strip() or b"x", 16)
                if n == 0:
                    while self.rfile.readline(1000) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                size += n
                if size > limit:
                    self.close_connection = True
                    return None
                parts.append(self.rfile.read(n))
                self.rfile.readline(10)
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or "0")
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            if length <= _DRAIN_LIMIT:  # read and discard, so the client sees the 413
                left = length
                while left > 0:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    left -= len(chunk)
            else:
                self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        r = self.receiver
        path = self.path.split("?")[0]
        if path != "/v1/traces":
            self._send(404, _status_pb(5, f"no such path {path[:100]!r}: POST /v1/traces"),
                       _PROTO, close=True)
            return
        json_mode = (self.headers.get("Content-Type") or "").lower().startswith(_JSON)
        out_ct = _JSON if json_mode else _PROTO
        if not r.authorized(self.headers.get("Authorization")):
            r.requests["http_401"] += 1
            r.bad_requests["unauthorized"] += 1
            try:
                self._read_body(r.config.max_body)
            except ValueError:
                self.close_connection = True
            self._send(401, r._error_body(16, "missing or invalid bearer token", json_mode),
                       out_ct, {"WWW-Authenticate": "Bearer"})
            return
        try:
            body = self._read_body(r.config.max_body)
        except (ValueError, OSError):
            r.requests["http_400"] += 1
            r.bad_requests["bad_length"] += 1
            self._send(400, r._error_body(3, "bad Content-Length or chunked body", json_mode),
                       out_ct, close=True)
            return
        if body is None:
            r.requests["http_413"] += 1
            r.bad_requests["too_large"] += 1
            msg = f"body over the limit of {r.config.max_body} bytes"
            self._send(413, r._error_body(8, msg, json_mode), out_ct, close=True)
            return
        try:
            code, resp, ctype, extra = r.handle_http(
                body,
                self.headers.get("Content-Type") or "",
                self.headers.get("Content-Encoding") or "",
            )
        except Exception as exc:  # a bug must not take the server down: 500, counted
            log.exception("otlp request failed")
            r.requests["http_500"] += 1
            self._send(500, r._error_body(13, f"internal error: {type(exc).__name__}",
                                          json_mode), out_ct)
            return
        self._send(code, resp, ctype, extra)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


# --------------------------------------------------------------------------- gRPC
class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.r = receiver

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> Any:
        import grpc

        r = self.r
        if r.config.token is not None:
            md = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
            if not r.authorized(md.get("authorization")):
                r.requests["grpc_unauthenticated"] += 1
                r.bad_requests["unauthorized"] += 1
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        try:
            n, msg = r.export(request)
        except Busy as exc:
            r.requests["grpc_unavailable"] += 1
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        r.requests["grpc_ok" if not n else "grpc_partial"] += 1
        resp = ExportTraceServiceResponse()
        if n:
            resp.partial_success.rejected_spans = n
            resp.partial_success.error_message = msg
        return resp


class OtlpServer:
    """HTTP on ``port`` (0: any free port) and gRPC on ``grpc_port`` (None: off)."""

    def __init__(
        self,
        receiver: OtlpReceiver,
        host: str = "127.0.0.1",
        port: int = 4318,
        grpc_port: int | None = 4317,
    ) -> None:
        self.receiver = receiver
        self.host = host
        handler = type("Handler", (_Handler,), {"receiver": receiver})
        self._http = _HTTPServer((host, port), handler)
        self.port = int(self._http.server_address[1])
        self._http_thread: threading.Thread | None = None
        self._grpc: Any = None
        self.grpc_port: int | None = None
        if grpc_port is not None:
            import grpc

            server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="auren-otlp-grpc"),
                options=[
                    ("grpc.max_receive_message_length", receiver.config.max_body),
                    ("grpc.max_send_message_length", 4 * 1024 * 1024),
                ],
                maximum_concurrent_rpcs=64,
            )
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
                _TraceService(receiver), server
            )
            bound = server.add_insecure_port(f"{_grpc_host(host)}:{grpc_port}")
            if bound == 0:
                self._http.server_close()
                raise OSError(f"cannot bind gRPC on {host}:{grpc_port}")
            self._grpc = server
            self.grpc_port = bound

    def start(self) -> None:
        self.receiver.start()
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.2},
            name="auren-otlp-http", daemon=True,
        )
        self._http_thread.start()
        if self._grpc is not None:
            self._grpc.start()

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait(2.0)
        self._http.shutdown()
        self._http.server_close()
        self.receiver.stop()


def _grpc_host(host: str) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host
