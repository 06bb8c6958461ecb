"""CrewAI 1.10+: the tiered memory behind CrewAI's unified ``Memory``.

CrewAI 1.10 replaced its short-term/long-term/entity/external memories with one
``crewai.memory.Memory`` over a pluggable ``StorageBackend``. Before each task an
agent *recalls* from it; after each task the output is distilled into memories
(by the memory's LLM) and *remembered*. :class:`TieredStorageBackend` is that
backend over :class:`~auren_core.memory.TieredMemory`, and :class:`TieredCrewMemory`
is the ``Memory`` that tells it which agent is asking. Searches are tracked loads
(``memory_tier_access`` / ``knowledge_access``) attributed to the agent, exactly
as with the external-memory adapter of older releases.

Use :func:`auren_core.memory.crewai_storage.crewai_memory` (it picks this adapter
or the older one for the installed release). Details: ``docs/memory.md``.

How the protocol maps onto the tiers:

- A ``MemoryRecord`` is one item: its id is the item id, its content the text, its
  metadata the item metadata, and the rest (scope, categories, importance,
  created_at, last_accessed, source, private) travels in the metadata under
  ``"_crewai"``. Items saved without CrewAI have scope ``default_scope``
  ("/knowledge"), no categories, importance 0.5 and their save time.
- ``search`` gets a query *vector*; the tiers answer *text* (cache key, full-text
  search). The memory's embedder is the TieredMemory's own, wrapped in a
  :class:`RecordingEmbedder` that remembers which text each vector came from, so a
  search is one ``load`` of that text. Scope/category/metadata filters apply to the
  answer; the score is the cosine similarity of query and item under that embedder.
  Within one ``recall`` each distinct text is looked up once (CrewAI searches every
  child scope with the same vector).
- ``get_record`` / ``list_records`` / ``delete`` / ``update`` / scope listings use
  the stored items (PostgreSQL, else ChromaDB) and publish no tier events.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import itertools
import logging
import math
import sys
import threading
from array import array
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from crewai.memory.types import MemoryRecord, ScopeInfo
from crewai.memory.unified_memory import Memory

from ._core import MAX_LIMIT
from ._crewai_common import TierStoreError, _current_agent, role_slug
from ._health import describe
from ._types import MemoryResult, StoredItem
from .crewai_tool import current_run
from .embedding import Embedder, embedder_name
from .tiered import TieredMemory

__all__ = [
    "DEFAULT_SCOPE",
    "META_KEY",
    "RecordingEmbedder",
    "TieredCrewMemory",
    "TieredStorageBackend",
    "tiered_unified_memory",
]

log = logging.getLogger("auren.memory")

META_KEY = "_crewai"  # the record fields that are not item fields, inside the metadata
DEFAULT_SCOPE = "/knowledge"  # where items saved without CrewAI appear


def normalize_scope_path(path: str) -> str:
    """CrewAI's scope path form: leading "/", no trailing or doubled "/" ("/" for
    root). (CrewAI >= 1.11 has the same helper in ``crewai.memory.utils``.)"""
    parts = [p for p in str(path or "").split("/") if p]
    return "/" + "/".join(parts)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # CrewAI's datetimes are naive UTC


def _naive_utc(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _vector_key(vector: Sequence[float]) -> bytes:
    return hashlib.blake2b(array("d", vector).tobytes(), digest_size=16).digest()


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity clipped to [0, 1] (0 for empty, mismatched or zero vectors)."""
    if len(a) != len(b) or not a:
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    if not na or not nb:
        return 0.0
    sim = dot / (na * nb)
    return 0.0 if math.isnan(sim) else max(0.0, min(1.0, sim))


def _is_root(scope: str | None) -> bool:
    return scope is None or normalize_scope_path(scope) == "/"


def _in_scope(scope: str, prefix: str | None) -> bool:
    """Is ``scope`` the scope path ``prefix`` or below it?"""
    if _is_root(prefix):
        return True
    p = normalize_scope_path(str(prefix))
    return scope == p or scope.startswith(p + "/")


def _children(scopes: Sequence[str], parent: str) -> list[str]:
    """The immediate child scopes of ``parent`` among ``scopes``."""
    parent = normalize_scope_path(parent)
    prefix = "/" if parent == "/" else parent + "/"
    found: set[str] = set()
    for sc in scopes:
        if sc.startswith(prefix) and sc != parent:
            first = sc[len(prefix) :].split("/", 1)[0]
            if first:
                found.add(prefix + first)
    return sorted(found)


class RecordingEmbedder:
    """The TieredMemory's embedder, given to CrewAI as ``Memory(embedder=...)``,
    that also remembers which text each vector it made came from (CrewAI hands the
    storage only a query's vector; the tiers look text up) and recent texts'
    vectors (to score answers without embedding them again). Bounded LRU maps."""

    def __init__(
        self, embedder: Embedder, *, capacity: int = 4096, vector_capacity: int = 1024
    ) -> None:
        self.embedder = embedder
        self.name = embedder_name(embedder)
        self.capacity = capacity
        self.vector_capacity = vector_capacity
        self._texts: OrderedDict[bytes, str] = OrderedDict()
        self._vectors: OrderedDict[str, array[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        batch = [str(t) for t in texts]
        vectors = [[float(x) for x in v] for v in self.embedder(batch)]
        with self._lock:
            for text, vec in zip(batch, vectors, strict=False):
                self._remember(text, vec)
        return vectors

    def __deepcopy__(self, memo: dict[int, Any]) -> RecordingEmbedder:
        return self  # a handle on shared state, like the memory it embeds for

    def _remember(self, text: str, vector: Sequence[float]) -> None:
        key = _vector_key(vector)
        self._texts[key] = text
        self._texts.move_to_end(key)
        if len(self._texts) > self.capacity:
            self._texts.popitem(last=False)
        self._vectors[text] = array("d", vector)
        self._vectors.move_to_end(text)
        if len(self._vectors) > self.vector_capacity:
            self._vectors.popitem(last=False)

    def remember(self, text: str, vector: Sequence[float]) -> None:
        """Record a vector made elsewhere with this embedder (a record's embedding)."""
        with self._lock:
            self._remember(text, [float(x) for x in vector])

    def text_of(self, vector: Sequence[float]) -> str | None:
        """The text this embedder turned into ``vector`` (None if unknown or forgotten)."""
        key = _vector_key(vector)
        with self._lock:
            text = self._texts.get(key)
            if text is not None:
                self._texts.move_to_end(key)
            return text

    def vectors_of(self, texts: Sequence[str]) -> list[Sequence[float]]:
        """The vectors of ``texts``: remembered, the others embedded in one call."""
        known: dict[str, Sequence[float]] = {}
        with self._lock:
            for t in texts:
                v = self._vectors.get(t)
                if v is not None:
                    known[t] = v
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            known.update(zip(missing, self(missing), strict=False))
        return [known.get(t, ()) for t in texts]


@dataclass
class _RecallLookups:
    """The loads of one ``recall``: each distinct query text is looked up once."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    results: dict[str, tuple[int, MemoryResult]] = field(default_factory=dict)


_RECALL: ContextVar[_RecallLookups | None] = ContextVar("auren_memory_recall", default=None)


class TieredStorageBackend:
    """CrewAI's ``StorageBackend`` protocol over :class:`TieredMemory` (see the module
    doc for the mapping). Sync methods are called from CrewAI's worker threads.

    CrewAI calls ``search``, ``list_scopes``, ``list_categories`` and
    ``get_scope_info`` on its own while recalling and saving: they never raise (a
    store that cannot answer answers empty). The others raise
    :class:`~auren_core.memory.crewai_storage.TierStoreError` when no durable tier
    could carry them out.
    """

    def __init__(
        self,
        memory: TieredMemory,
        *,
        default_scope: str = DEFAULT_SCOPE,
        embedder: RecordingEmbedder | None = None,
    ) -> None:
        self.memory = memory
        self.default_scope = normalize_scope_path(default_scope)
        self.embedder = embedder if embedder is not None else RecordingEmbedder(memory.embedder)
        # CrewAI 1.10's save pipeline holds this around its delete/update/insert steps.
        self.write_lock = threading.RLock()
        self._warned_unknown_vector = False
        # Recalls and saves in progress (agent, lookups): see _ambient().
        self._active: dict[int, tuple[str | None, _RecallLookups | None]] = {}
        self._active_lock = threading.Lock()
        self._keys = itertools.count()

    def __deepcopy__(self, memo: dict[int, Any]) -> TieredStorageBackend:
        return self  # a handle on the (shared, connected) tiered memory

    # ------------------------------------------------------------------ who is asking
    @contextmanager
    def operation(self, agent: str | None, lookups: _RecallLookups | None = None) -> Iterator[None]:
        """Mark a recall or save by ``agent`` as in progress (see :meth:`_ambient`)."""
        with self._active_lock:
            key = next(self._keys)
            self._active[key] = (agent, lookups)
        try:
            yield
        finally:
            with self._active_lock:
                self._active.pop(key, None)

    def _ambient(self) -> tuple[str | None, _RecallLookups | None]:
        """The agent (and recall) a call is for: from the context, which CrewAI 1.15
        carries into its worker threads; CrewAI 1.10's thread pools drop it, so a
        call without one belongs to the recall or save in progress, if only one is."""
        agent, lookups = _current_agent.get(), _RECALL.get()
        if agent is None and lookups is None:
            with self._active_lock:
                if len(self._active) == 1:
                    agent, lookups = next(iter(self._active.values()))
        return agent, lookups

    # ------------------------------------------------------------------ mapping
    def _stored_metadata(self, record: MemoryRecord) -> dict[str, Any]:
        meta = dict(record.metadata or {})
        meta[META_KEY] = {
            "scope": normalize_scope_path(record.scope or "/"),
            "categories": list(record.categories or []),
            "importance": float(record.importance),
            "created_at": record.created_at.isoformat(),
            "last_accessed": record.last_accessed.isoformat(),
            "source": record.source,
            "private": bool(record.private),
        }
        return meta

    def _record(
        self,
        item_id: str,
        text: str,
        metadata: dict[str, Any] | None,
        saved_at: datetime | None = None,
    ) -> MemoryRecord:
        meta = dict(metadata or {})
        block = meta.pop(META_KEY, None)
        saved = _naive_utc(saved_at) or _utcnow()
        if isinstance(block, dict):
            created = _naive_utc(block.get("created_at")) or saved
            accessed = _naive_utc(block.get("last_accessed")) or created
            cats = block.get("categories")
            try:
                importance = min(1.0, max(0.0, float(block.get("importance", 0.5))))
            except (TypeError, ValueError):
                importance = 0.5
            source = block.get("source")
            return MemoryRecord(
                id=item_id,
                content=text,
                scope=normalize_scope_path(str(block.get("scope") or "/")),
                categories=[str(c) for c in cats] if isinstance(cats, list) else [],
                metadata=meta,
                importance=importance,
                created_at=created,
                last_accessed=accessed,
                source=source if isinstance(source, str) else None,
                private=bool(block.get("private", False)),
            )
        return MemoryRecord(
            id=item_id,
            content=text,
            scope=self.default_scope,
            metadata=meta,
            created_at=saved,
            last_accessed=saved,
        )

    def _from_stored(self, item: StoredItem) -> MemoryRecord:
        return self._record(item.id, item.text, item.metadata, item.updated_at)

    def _all_records(self) -> list[MemoryRecord]:
        res = self.memory.list_items_sync()
        if not res.ok:
            raise TierStoreError(f"auren memory: cannot list items: {res.errors}")
        return [self._from_stored(i) for i in res.items]

    @staticmethod
    def _matches(
        record: MemoryRecord,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        older_than: datetime | None = None,
    ) -> bool:
        if not _in_scope(record.scope, scope_prefix):
            return False
        if categories and not any(c in record.categories for c in categories):
            return False
        if metadata_filter and not all(
            record.metadata.get(k) == v for k, v in metadata_filter.items()
        ):
            return False
        cutoff = _naive_utc(older_than)
        return cutoff is None or record.created_at < cutoff

    # ------------------------------------------------------------------ writes
    def save(self, records: list[MemoryRecord]) -> None:
        """Store the records as items (PostgreSQL and ChromaDB; the cache is
        invalidated), attributed to the agent saving them."""
        if not records:
            return
        agent = self._ambient()[0]
        rows: list[tuple[str, str, dict[str, Any], str | None]] = []
        for r in records:
            if r.embedding:
                self.embedder.remember(r.content, r.embedding)
            rows.append((r.id, r.content, self._stored_metadata(r), agent))
        with self.write_lock:
            res = self.memory.save_many_sync(rows)
        if not res.written:
            raise TierStoreError(f"auren memory: save reached no tier: {res.errors}")

    def update(self, record: MemoryRecord) -> None:
        """Replace the item with the record's id (the saving agent is kept unless
        another agent is updating it)."""
        agent = self._ambient()[0]
        if agent is None:
            got = self.memory.get_items_sync([record.id])
            agent = got.items[0].agent if got.items else None
        if record.embedding:
            self.embedder.remember(record.content, record.embedding)
        with self.write_lock:
            res = self.memory.save_many_sync(
                [(record.id, record.content, self._stored_metadata(record), agent)]
            )
        if not res.written:
            raise TierStoreError(f"auren memory: update reached no tier: {res.errors}")

    def delete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        """Delete the items matching every criterion given (none given: all items)."""
        if record_ids is not None and not record_ids:
            return 0
        if (
            record_ids
            and _is_root(scope_prefix)
            and not (categories or older_than or metadata_filter)
        ):
            ids = list(record_ids)
        else:
            wanted = set(record_ids) if record_ids else None
            ids = [
                r.id
                for r in self._all_records()
                if (wanted is None or r.id in wanted)
                and self._matches(r, scope_prefix, categories, metadata_filter, older_than)
            ]
        if not ids:
            return 0
        with self.write_lock:
            res = self.memory.delete_items_sync(ids)
        if not res.tiers:
            raise TierStoreError(f"auren memory: delete reached no tier: {res.errors}")
        return res.deleted

    def reset(self, scope_prefix: str | None = None) -> None:
        """Delete every item under ``scope_prefix``; no scope (or "/"): every item of
        the namespace, in every tier (what ``crew.reset_memories("memory")`` does)."""
        if _is_root(scope_prefix):
            with self.write_lock:
                errors = self.memory.reset_sync()
            if errors:
                raise TierStoreError(f"auren memory: reset failed: {errors}")
            return
        self.delete(scope_prefix=scope_prefix)

    # ------------------------------------------------------------------ reads
    def search(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
    ) -> list[tuple[MemoryRecord, float]]:
        """One tracked load of the text behind ``query_embedding``, filtered, scored
        by cosine similarity, best first. Never raises: a failed lookup is []."""
        try:
            return self._search(
                query_embedding, scope_prefix, categories, metadata_filter, limit, min_score
            )
        except Exception as exc:
            log.warning("auren memory: CrewAI search failed: %s", describe(exc))
            return []

    def _search(
        self,
        query_embedding: list[float],
        scope_prefix: str | None,
        categories: list[str] | None,
        metadata_filter: dict[str, Any] | None,
        limit: int,
        min_score: float,
    ) -> list[tuple[MemoryRecord, float]]:
        limit = max(0, int(limit))
        if not limit or not query_embedding:
            return []
        text = self.embedder.text_of(query_embedding)
        if text is None:
            if not self._warned_unknown_vector:
                self._warned_unknown_vector = True
                log.warning(
                    "auren memory: a CrewAI search vector was not made by this storage's "
                    "embedder; give Memory embedder=storage.embedder (crewai_memory() does)"
                )
            return []
        filtered = bool(categories or metadata_filter or not _is_root(scope_prefix))
        res = self._load(text, min(MAX_LIMIT, limit * 3 if filtered else limit))
        candidates = [
            r
            for r in (self._record(i.id, i.text, i.metadata) for i in res.items)
            if self._matches(r, scope_prefix, categories, metadata_filter)
        ]
        if not candidates:
            return []
        vectors = self.embedder.vectors_of([r.content for r in candidates])
        scored: list[tuple[MemoryRecord, float]] = []
        for r, vec in zip(candidates, vectors, strict=True):
            score = _cosine(query_embedding, vec)
            if score >= min_score:
                scored.append((r.model_copy(update={"embedding": list(vec) or None}), score))
        scored.sort(key=lambda p: p[1], reverse=True)
        return scored[:limit]

    def _load(self, text: str, limit: int) -> MemoryResult:
        agent, lookups = self._ambient()
        run = current_run()
        if lookups is None:
            return self.memory.load_sync(text, limit, agent=agent, run=run)
        with lookups.lock:
            seen = lookups.results.get(text)
            if seen is not None and seen[0] >= limit:
                return seen[1]
            res = self.memory.load_sync(text, limit, agent=agent, run=run)
            lookups.results[text] = (limit, res)
            return res

    def get_record(self, record_id: str) -> MemoryRecord | None:
        res = self.memory.get_items_sync([record_id])
        if not res.ok:
            raise TierStoreError(f"auren memory: cannot read {record_id!r}: {res.errors}")
        return self._from_stored(res.items[0]) if res.items else None

    def list_records(
        self, scope_prefix: str | None = None, limit: int = 200, offset: int = 0
    ) -> list[MemoryRecord]:
        """Records under ``scope_prefix``, newest (created) first."""
        if limit <= 0 or offset < 0:
            return []
        recs = [r for r in self._all_records() if _in_scope(r.scope, scope_prefix)]
        recs.sort(key=lambda r: r.id)
        recs.sort(key=lambda r: r.created_at, reverse=True)
        return recs[offset : offset + limit]

    def count(self, scope_prefix: str | None = None) -> int:
        return sum(1 for r in self._all_records() if _in_scope(r.scope, scope_prefix))

    def _records_or_nothing(self) -> list[MemoryRecord]:
        try:
            return self._all_records()
        except Exception as exc:
            log.debug("auren memory: listing for CrewAI failed: %s", describe(exc))
            return []

    def get_scope_info(self, scope: str) -> ScopeInfo:
        path = normalize_scope_path(scope or "/")
        recs = [r for r in self._records_or_nothing() if _in_scope(r.scope, path)]
        created = [r.created_at for r in recs]
        return ScopeInfo(
            path=path,
            record_count=len(recs),
            categories=sorted({c for r in recs for c in r.categories}),
            oldest_record=min(created) if created else None,
            newest_record=max(created) if created else None,
            child_scopes=_children([r.scope for r in recs], path),
        )

    def list_scopes(self, parent: str = "/") -> list[str]:
        return _children([r.scope for r in self._records_or_nothing()], parent or "/")

    def list_categories(self, scope_prefix: str | None = None) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for r in self._records_or_nothing():
            if _in_scope(r.scope, scope_prefix):
                counts.update(r.categories)
        return dict(counts)

    # ------------------------------------------------------------------ async faces
    async def asave(self, records: list[MemoryRecord]) -> None:
        await asyncio.to_thread(self.save, records)

    async def asearch(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
    ) -> list[tuple[MemoryRecord, float]]:
        return await asyncio.to_thread(
            self.search,
            query_embedding,
            scope_prefix,
            categories,
            metadata_filter,
            limit,
            min_score,
        )

    async def adelete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        return await asyncio.to_thread(
            self.delete, scope_prefix, categories, record_ids, older_than, metadata_filter
        )

    def close(self) -> None:
        """``Memory.close()``: hand pending tier events over (the TieredMemory stays
        open: it belongs to the caller, who may share it)."""
        self.memory.flush_events()


# ---------------------------------------------------------------------- the Memory
def _is_agent(obj: Any, base: type[Any]) -> bool:
    if isinstance(obj, base):
        return True
    # LiteAgent (Agent.kickoff outside a crew in some releases) is not a BaseAgent.
    return type(obj).__name__ == "LiteAgent" and isinstance(getattr(obj, "role", None), str)


def calling_agent(max_depth: int = 64) -> Any:
    """The CrewAI agent on this thread's call stack nearest to the caller, if any.

    CrewAI 1.10+ calls ``memory.recall(task.description)`` from the agent without
    saying which agent asks; the agent (or an executor holding it) is a frame up.
    """
    try:
        from crewai.agents.agent_builder.base_agent import BaseAgent
    except ImportError:  # pragma: no cover - every supported release has it
        return None
    frame: FrameType | None = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        obj = frame.f_locals.get("self")
        if obj is not None:
            if _is_agent(obj, BaseAgent):
                return obj
            inner = getattr(obj, "__dict__", {}).get("agent")  # executors (no properties run)
            if inner is not None and _is_agent(inner, BaseAgent):
                return inner
        frame = frame.f_back
    return None


_ADOPT_LOCK = threading.Lock()  # not a private attribute: Memory's deepcopy trips on locks


class TieredCrewMemory(Memory):
    """CrewAI ``Memory`` over a :class:`TieredStorageBackend`: attributes every
    recall and save to the agent making it (``agent_role`` when CrewAI passes one,
    else the agent on the call stack, else :func:`memory_agent`'s), looks each query
    text up once per recall, and, like ``Crew(memory=True)``, uses the calling
    agent's LLM for memory analysis unless ``llm`` is given."""

    def _backend(self) -> TieredStorageBackend | None:
        storage = getattr(self, "_storage", None)
        return storage if isinstance(storage, TieredStorageBackend) else None

    @contextmanager
    def _attributed(
        self, agent_role: Any = None, lookups: _RecallLookups | None = None
    ) -> Iterator[None]:
        agent = calling_agent()
        if agent is not None:
            self._adopt_llm(agent)
        if isinstance(agent_role, str) and agent_role:
            agent_id: str | None = role_slug(agent_role)
        elif agent is not None:
            agent_id = role_slug(str(agent.role))
        else:
            agent_id = _current_agent.get()  # memory_agent(), or nobody
        token = _current_agent.set(agent_id)
        rtoken = _RECALL.set(lookups) if lookups is not None else None
        backend = self._backend()
        try:
            if backend is not None and lookups is not None:
                with backend.operation(agent_id, lookups):
                    yield
            else:
                yield
        finally:
            if rtoken is not None:
                _RECALL.reset(rtoken)
            _current_agent.reset(token)

    def _submit_save(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # The background save runs in CrewAI's save thread: it carries this context
        # (CrewAI 1.10 does not copy it) and is an operation in progress while it runs.
        ctx = contextvars.copy_context()
        agent, backend = _current_agent.get(), self._backend()

        def run(*a: Any, **kw: Any) -> Any:
            if backend is None:
                return fn(*a, **kw)
            with backend.operation(agent):
                return fn(*a, **kw)

        return super()._submit_save(ctx.run, run, *args, **kwargs)

    # Set by tiered_unified_memory() when no llm is given. (A plain underscore class
    # attribute: Memory is a pydantic model from CrewAI 1.11, a plain class before.)
    _auren_agent_llm = False

    def _adopt_llm(self, agent: Any) -> None:
        if not self._auren_agent_llm or self._llm_instance is not None:
            return
        from crewai.llms.base_llm import BaseLLM

        llm = getattr(agent, "llm", None)
        if not isinstance(llm, BaseLLM):
            return
        from crewai.memory import unified_memory

        isolate = getattr(unified_memory, "_non_streaming_analysis_llm", None)
        with _ADOPT_LOCK:
            if self._llm_instance is None:
                self._llm_instance = isolate(llm) if callable(isolate) else llm

    def recall(self, query: str, *args: Any, **kwargs: Any) -> Any:
        with self._attributed(lookups=_RECALL.get() or _RecallLookups()):
            return super().recall(query, *args, **kwargs)

    def remember(self, content: str, *args: Any, **kwargs: Any) -> Any:
        with self._attributed(kwargs.get("agent_role")):
            return super().remember(content, *args, **kwargs)

    def remember_many(self, contents: list[str], *args: Any, **kwargs: Any) -> Any:
        # The background save copies this context: the agent goes along.
        with self._attributed(kwargs.get("agent_role")):
            return super().remember_many(contents, *args, **kwargs)

    def extract_memories(self, content: str) -> list[str]:
        with self._attributed():
            return super().extract_memories(content)

    def update(self, record_id: str, *args: Any, **kwargs: Any) -> Any:
        with self._attributed():
            return super().update(record_id, *args, **kwargs)


def tiered_unified_memory(
    memory: TieredMemory,
    *,
    llm: Any = None,
    default_scope: str = DEFAULT_SCOPE,
    **options: Any,
) -> TieredCrewMemory:
    """``Crew(memory=tiered_unified_memory(mem))`` (CrewAI 1.10+).

    ``llm``: the LLM CrewAI's memory uses to distil task outputs into memories and
    to analyse long queries (default: the calling agent's). ``options``: other
    ``crewai.memory.Memory`` settings (``recency_weight``, ``read_only``,
    ``root_scope``, ...). The embedder is the TieredMemory's own (set it there).
    """
    if "embedder" in options or "storage" in options:
        raise TypeError(
            "the storage and embedder are the TieredMemory's: configure them on TieredMemory"
        )
    backend = TieredStorageBackend(memory, default_scope=default_scope)
    if llm is not None:
        options["llm"] = llm
    crew_memory = TieredCrewMemory(storage=backend, embedder=backend.embedder, **options)
    crew_memory._auren_agent_llm = llm is None
    return crew_memory
