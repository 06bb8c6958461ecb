"""OTLP receiver: OpenTelemetry traces of any agent framework -> AUREN v1 events.

``spans`` decodes and validates requests, ``buffer`` attributes child-first spans to
their nearest agent, ``mapping`` turns spans into events, ``receiver`` serves OTLP/HTTP
and OTLP/gRPC. The mapping table is in docs/otlp.md. Importing this package imports
protobuf, the OTLP message classes and grpcio (for the service stubs); ``auren_core``
itself does not import it.
"""

from __future__ import annotations

from .buffer import Ready, TraceBuffer
from .mapping import Mapper
from .receiver import Busy, OtlpReceiver, OtlpServer, ReceiverConfig
from .spans import BadRequest, SpanRec, extract, parse_json, parse_protobuf

__all__ = [
    "BadRequest",
    "Busy",
    "Mapper",
    "OtlpReceiver",
    "OtlpServer",
    "Ready",
    "ReceiverConfig",
    "SpanRec",
    "TraceBuffer",
    "extract",
    "parse_json",
    "parse_protobuf",
]
