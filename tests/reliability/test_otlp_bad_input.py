"""serve-otlp under bad input: garbage, truncated protobuf, wrong JSON types, a million
attributes, 64 MB bodies, gzip bombs, hostile strings, no token. Clear OTLP errors, the
server stays up and nothing else is lost."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import redis
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from otlp_helpers import otlp_server

from auren_core.events import Event, decode
from auren_core.otlp.receiver import ReceiverConfig

pytestmark = pytest.mark.timeout(180)

PROTO = "application/x-protobuf"


def request(n_spans: int = 1, trace: bytes = b"\x01" * 16, **attrs: object) -> bytes:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i in range(n_spans):
        sp = ss.spans.add()
        sp.trace_id = trace
        sp.span_id = (i + 1).to_bytes(8, "big")
        sp.name = "chat"
        sp.start_time_unix_nano = 1_700_000_000_000_000_000
        sp.end_time_unix_nano = 1_700_000_000_500_000_000
        for k, v in {"gen_ai.operation.name": "chat", "gen_ai.agent.name": "A",
                     "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 1,
                     **attrs}.items():
            kv = sp.attributes.add(key=k)
            if isinstance(v, int):
                kv.value.int_value = v
            else:
                kv.value.string_value = str(v)
    return req.SerializeToString()


def raw(port: int, body: bytes, ctype: str = PROTO, path: str = "/v1/traces",
        headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": ctype, **(headers or {})})
        r = c.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        c.close()


def status_message(body: bytes) -> str:
    # google.rpc.Status: field 1 code, field 2 message
    from google.protobuf import descriptor_pb2  # noqa: F401  (protobuf is importable)
    from google.protobuf.internal.decoder import _DecodeVarint  # type: ignore[attr-defined]

    assert body[0] == 0x08
    _, pos = _DecodeVarint(body, 1)
    assert body[pos] == 0x12
    n, pos = _DecodeVarint(body, pos + 1)
    return body[pos : pos + n].decode()


def test_bad_input_is_refused_clearly_and_the_server_stays_up(
    redis_url: str, stream: str
) -> None:
    with otlp_server(redis_url, stream, max_body=16 * 1024 * 1024) as (srv, rec, pub):
        port = srv.port
        # garbage bytes
        code, body, _ = raw(port, os.urandom(4096) + b"\xff\xff\xff")
        assert code == 400 and "undecodable protobuf" in status_message(body)
        # truncated protobuf
        good = request(5)
        code, body, _ = raw(port, good[: len(good) // 2])
        assert code == 400 and "undecodable" in status_message(body)
        # JSON: not JSON, wrong top-level type, wrong types inside, bad hex ids
        for bad in (b"{nope", b"[1,2]", b'{"resourceSpans": 7}',
                    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}',
                    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
                    b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": {"a": 1}}]}]}]}',
                    b'{"resourceSpans": [{"scopeSpans": [{"spans": '
                    b'[{"startTimeUnixNano": "soon"}]}]}]}'):
            code, body, _ = raw(port, bad, "application/json")
            assert code == 400, bad
            err = json.loads(body)
            assert err["code"] == 3 and err["message"], bad
        # unsupported content type and encoding
        code, body, _ = raw(port, good, "text/plain")
        assert code == 415 and "Content-Type" in status_message(body)
        code, _, _ = raw(port, good, headers={"Content-Encoding": "br"})
        assert code == 415
        # a broken gzip stream, then a gzip bomb (small compressed, huge expanded)
        code, body, _ = raw(port, b"\x1f\x8b\x08\x00garbage", headers={"Content-Encoding": "gzip"})
        assert code == 400 and "gzip" in status_message(body)
        bomb = gzip.compress(b"\x00" * (64 * 1024 * 1024), compresslevel=9)
        assert len(bomb) < 16 * 1024 * 1024
        code, body, _ = raw(port, bomb, headers={"Content-Encoding": "gzip"})
        assert code == 413 and "decompressed" in status_message(body)
        # a 64 MB body: 413 (drained, so the client reads the answer)
        t0 = time.monotonic()
        code, body, _hdr = raw(port, b"\x00" * (64 * 1024 * 1024))
        assert code == 413 and "over the limit" in status_message(body)
        assert time.monotonic() - t0 < 30
        # a million attributes on one span (about 9 MB): that span is rejected
        req = ExportTraceServiceRequest.FromString(request(2))
        sp = req.resource_spans[0].scope_spans[0].spans[0]
        sp.attributes.extend(KeyValue(key="k") for _ in range(1_000_000))
        code, body, _ = raw(port, req.SerializeToString())
        assert code == 200
        resp = ExportTraceServiceResponse.FromString(body)
        assert resp.partial_success.rejected_spans == 1
        assert "too_many_attributes" in resp.partial_success.error_message
        # hostile strings: escapes, markup, control characters, huge values, RTL overrides
        hostile = "\x1b[2J\x1b]0;pwned\x07[bold red]x[/]\u202e\x00" + "A" * 100_000
        code, _, _ = raw(port, request(1, trace=b"\x02" * 16, **{
            "gen_ai.agent.name": hostile, "gen_ai.request.model": hostile,
            "gen_ai.usage.input_tokens": -5, "gen_ai.usage.output_tokens": 2**62}))
        assert code == 200
        # unknown path, GET on /v1/traces
        code, _, _ = raw(port, good, path="/v1/metrics")
        assert code == 404
        # after all that: a good request is converted, nothing else lost
        code, body, _ = raw(port, request(3, trace=b"\x03" * 16))
        assert code == 200 and ExportTraceServiceResponse.FromString(body) == (
            ExportTraceServiceResponse())
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").status == 200
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert 'auren_otlp_spans_rejected_total{reason="too_many_attributes"} 1' in metrics
        assert 'auren_otlp_requests_refused_total{reason="too_large"} 2' in metrics
        pub.flush()
        assert rec.converted == 1 + 1 + 3  # the million-attribute request's other span, ...
    r = redis.Redis.from_url(redis_url)
    evs = [decode(f[b"e"], s.decode()) for s, f in r.xrange(stream)]
    assert all(isinstance(e, Event) for e in evs)
    llm = [e for e in evs if isinstance(e, Event) and e.type == "llm_call"]
    assert len(llm) == 5
    h = next(e for e in llm if e.run == "02" * 16)
    assert h.agent is not None and len(h.agent) <= 64  # slug(): inert, bounded
    assert len(h.payload["model"]) <= 120
    assert (h.payload["input_tokens"], h.payload["output_tokens"]) == (0, 0)


def test_token_auth_http_and_grpc(redis_url: str, stream: str) -> None:
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    token = "s3cret-token-0123456789"
    with otlp_server(redis_url, stream, grpc=True, token=token) as (srv, rec, _pub):
        code, _body, hdr = raw(srv.port, request(1))
        assert code == 401 and hdr.get("WWW-Authenticate") == "Bearer"
        code, _, _ = raw(srv.port, request(1), headers={"Authorization": "Bearer nope"})
        assert code == 401
        code, _, _ = raw(srv.port, request(1), headers={"Authorization": f"Bearer {token}"})
        assert code == 200
        ch = grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}")
        stub = trace_service_pb2_grpc.TraceServiceStub(ch)
        req = ExportTraceServiceRequest.FromString(request(1, trace=b"\x05" * 16))
        with pytest.raises(grpc.RpcError) as ei:
            stub.Export(req, timeout=10)
        assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stub.Export(req, timeout=10, metadata=[("authorization", f"Bearer {token}")])
        ch.close()
        assert rec.converted == 2


def test_config_struct_defaults() -> None:
    c = ReceiverConfig()
    assert c.max_wait == 15.0 and c.max_body == 16 * 1024 * 1024 and c.token is None


# --------------------------------------------------------------------------- the CLI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_refuses_auth_none_off_loopback() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "auren_tui", "serve-otlp", "--host", "0.0.0.0", "--auth", "none"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("auren: --auth none is refused")


def test_cli_serves_and_stops(redis_url: str, stream: str, tmp_path: object) -> None:
    port = _free_port()
    env = dict(os.environ, AUREN_REDIS_URL=redis_url, AUREN_STREAM=stream)
    p = subprocess.Popen(
        [sys.executable, "-m", "auren_tui", "serve-otlp", "--port", str(port),
         "--grpc-port", "0", "--auth", "none", "--max-wait", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                assert p.poll() is None, p.stderr.read() if p.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        code, _, _ = raw(port, request(2, trace=b"\x07" * 16))
        assert code == 200
        m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert "auren_otlp_spans_received_total 2" in m
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "serving OTLP http://127.0.0.1" in out and "grpc off" in out
    r = redis.Redis.from_url(redis_url)
    types = [json.loads(f[b"e"])["type"] for _, f in r.xrange(stream)]
    assert types.count("llm_call") == 2 and "publisher_stats" in types
    # auren doctor reads the receiver's counters from its stats event
    from auren_core.doctor import check_stream

    line = next(c for c in check_stream(r, stream) if c.name.startswith("otlp "))
    assert line.ok and "spans received 2, converted 2, rejected 0" in line.detail


def test_busy_publisher_answers_503_and_unavailable(redis_url: str, stream: str) -> None:
    """Redis unreachable: the publisher's buffer fills; the receiver asks exporters to
    retry (503 + Retry-After / UNAVAILABLE) instead of accepting spans it would drop."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    from auren_core.otlp import OtlpReceiver, OtlpServer
    from auren_core.streams.publisher import Publisher

    pub = Publisher("redis://127.0.0.1:1/0", stream, buffer_size=10, stats_interval=3600)
    rec = OtlpReceiver(pub, ReceiverConfig())
    srv = OtlpServer(rec, "127.0.0.1", 0, 0)
    srv.start()
    try:
        code, _, _ = raw(srv.port, request(20))  # taken: 20 events into a 10-slot buffer
        assert code == 200
        code, body, hdr = raw(srv.port, request(1, trace=b"\x09" * 16))
        assert code == 503 and hdr["Retry-After"] == "1" and "retry" in status_message(body)
        ch = grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}")
        stub = trace_service_pb2_grpc.TraceServiceStub(ch)
        with pytest.raises(grpc.RpcError) as ei:
            stub.Export(ExportTraceServiceRequest.FromString(request(1)), timeout=10)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
        ch.close()
    finally:
        srv.stop()
        pub.close(0.1)
