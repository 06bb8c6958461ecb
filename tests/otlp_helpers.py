"""Shared pieces of the OTLP tests: an in-process serve-otlp, `auren top --once --json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from auren_core.otlp import OtlpReceiver, OtlpServer, ReceiverConfig
from auren_core.streams.publisher import Publisher


@contextmanager
def otlp_server(
    redis_url: str, stream: str, *, grpc: bool = False, **cfg: Any
) -> Iterator[tuple[OtlpServer, OtlpReceiver, Publisher]]:
    pub = Publisher(redis_url, stream, stats_interval=3600)
    rec = OtlpReceiver(pub, ReceiverConfig(**cfg))
    srv = OtlpServer(rec, "127.0.0.1", 0, 0 if grpc else None)
    srv.start()
    try:
        yield srv, rec, pub
    finally:
        srv.stop()
        pub.close(5.0)


def top_json(redis_url: str, stream: str) -> dict[str, Any]:
    env = dict(os.environ, AUREN_REDIS_URL=redis_url, AUREN_STREAM=stream)
    out = subprocess.run(
        [sys.executable, "-m", "auren_tui", "top", "--once", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def agents_by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["id"]: a for a in doc["agents"]}


def collab(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(c["from"], c["to"], c["kind"]) for c in doc["collaboration"]}


def sdk_provider(exporter: Any, *, batch: bool = False) -> Any:
    """A real SDK TracerProvider (tests run with OTEL_SDK_DISABLED set: not for this one)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    saved = os.environ.pop("OTEL_SDK_DISABLED", None)  # read once, by the provider
    try:
        tp = TracerProvider(resource=Resource.create({"service.name": "otlp-test"}))
    finally:
        if saved is not None:
            os.environ["OTEL_SDK_DISABLED"] = saved
    proc = (
        BatchSpanProcessor(exporter, schedule_delay_millis=50)
        if batch
        else SimpleSpanProcessor(exporter)
    )
    tp.add_span_processor(proc)
    return tp
