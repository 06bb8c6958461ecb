"""PostgreSQL event store: schema and migrations, the consumer-group sink, rollups and
retention, and queries for export. Imports asyncpg and redis lazily through submodules."""

from __future__ import annotations

from .retention import MaintenanceResult, RetentionPolicy, maintain, rollup_day
from .schema import ensure_schema, list_partitions, validate_schema_name

__all__ = [
    "MaintenanceResult",
    "RetentionPolicy",
    "ensure_schema",
    "list_partitions",
    "maintain",
    "rollup_day",
    "validate_schema_name",
]
