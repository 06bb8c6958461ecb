"""Tier 3: ChromaDB, the semantic store.

A local ``PersistentClient`` directory by default, an ``HttpClient`` when a URL is
given. chromadb is synchronous (and slow to import, ~1 s), so it is imported on
first use and every call runs in a worker thread. Only neighbours closer than
``max_distance`` (cosine distance) count as a hit: a far neighbour is a miss.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from ._types import MemoryItem, StoredItem
from .embedding import Embedder, chroma_embedding_function, embedder_name

__all__ = ["ChromaTier"]


def collection_name(namespace: str) -> str:
    """Chroma names: 3-512 chars of [A-Za-z0-9._-], alphanumeric at both ends."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{namespace}_memory").strip("._-")
    return name if len(name) >= 3 else f"mem_{name}"


class ChromaTier:
    name = "chromadb"

    def __init__(
        self,
        namespace: str,
        embedder: Embedder,
        *,
        path: str | None = None,
        url: str | None = None,
        max_distance: float = 0.6,
    ) -> None:
        if not path and not url:
            raise ValueError("ChromaTier needs a path or a url")
        self.path = path
        self.url = url
        self.embedder = embedder
        self.max_distance = max_distance
        self.collection_name = collection_name(namespace)
        self._lock = threading.Lock()
        self._collection: Any = None
        self._client: Any = None

    def _get_collection(self) -> Any:
        col = self._collection
        if col is not None:
            return col
        with self._lock:
            if self._collection is None:
                self._collection = self._open()
            return self._collection

    def _open(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        if self.url:
            u = urlsplit(self.url)
            client = chromadb.HttpClient(
                host=u.hostname or "localhost",
                port=u.port or (443 if u.scheme == "https" else 8000),
                ssl=u.scheme == "https",
                settings=settings,
            )
        else:
            client = chromadb.PersistentClient(path=str(self.path), settings=settings)
        self._client = client
        ename = embedder_name(self.embedder)
        col = client.get_or_create_collection(
            self.collection_name,
            embedding_function=chroma_embedding_function(self.embedder),
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"auren_embedder": ename},
        )
        built_with = (col.metadata or {}).get("auren_embedder")
        if built_with and built_with != ename:
            raise RuntimeError(
                f"collection {self.collection_name!r} holds vectors of embedder {built_with!r},"
                f" not {ename!r}: use another namespace or re-index"
            )
        return col

    def connect(self) -> None:
        self._get_collection()

    def search(self, query: str, limit: int) -> list[MemoryItem]:
        col = self._get_collection()
        res = col.query(
            query_texts=[query], n_results=limit, include=["documents", "metadatas", "distances"]
        )
        ids, docs = res["ids"][0], (res["documents"] or [[]])[0]
        metas, dists = (res["metadatas"] or [[]])[0], (res["distances"] or [[]])[0]
        out: list[MemoryItem] = []
        for i, doc, meta, dist in zip(ids, docs, metas, dists, strict=False):
            if not dist <= self.max_distance:  # also rejects NaN (an empty query)
                continue
            raw = (meta or {}).get("meta")
            out.append(
                MemoryItem(
                    id=i,
                    text=doc or "",
                    metadata=orjson.loads(raw) if isinstance(raw, str) else {},
                    score=round(1.0 - float(dist), 6),
                    source="chromadb",
                )
            )
        return out

    def upsert(self, items: Sequence[tuple[str, str, dict[str, Any] | None, str | None]]) -> None:
        # Chroma metadata is flat scalars: the full metadata travels as one JSON string.
        # "ts" (save time, epoch seconds) orders listings when PostgreSQL is absent.
        now = time.time()
        metas: list[Any] = []
        for _, _, meta, agent in items:
            m: dict[str, Any] = {"ts": now}
            if meta:
                m["meta"] = orjson.dumps(meta).decode()
            if agent:
                m["agent"] = agent
            metas.append(m)
        self._get_collection().upsert(
            ids=[i[0] for i in items], documents=[i[1] for i in items], metadatas=metas
        )

    @staticmethod
    def _stored(ids: list[str], docs: list[Any], metas: list[Any]) -> list[StoredItem]:
        out: list[StoredItem] = []
        for i, doc, meta in zip(ids, docs, metas, strict=False):
            m = meta or {}
            raw, ts, agent = m.get("meta"), m.get("ts"), m.get("agent")
            out.append(
                StoredItem(
                    id=i,
                    text=doc or "",
                    metadata=orjson.loads(raw) if isinstance(raw, str) else {},
                    agent=agent if isinstance(agent, str) else None,
                    updated_at=(
                        datetime.fromtimestamp(ts, UTC) if isinstance(ts, int | float) else None
                    ),
                )
            )
        return out

    def get(self, ids: Sequence[str]) -> list[StoredItem]:
        """The stored items of these ids (missing ids are left out)."""
        if not ids:
            return []
        res = self._get_collection().get(ids=list(ids), include=["documents", "metadatas"])
        return self._stored(res["ids"], res["documents"] or [], res["metadatas"] or [])

    def scan(self, limit: int, offset: int = 0) -> list[StoredItem]:
        """Items of this namespace, most recently saved first (items saved before
        save times were recorded come last)."""
        res = self._get_collection().get(include=["documents", "metadatas"])
        items = self._stored(res["ids"], res["documents"] or [], res["metadatas"] or [])
        epoch = datetime.fromtimestamp(0, UTC)
        items.sort(key=lambda i: i.id)  # ties in id order, as PostgreSQL lists them
        items.sort(key=lambda i: i.updated_at or epoch, reverse=True)
        return items[offset : offset + limit]

    def delete(self, ids: Sequence[str]) -> int:
        """Forget these items; returns how many were there."""
        if not ids:
            return 0
        col = self._get_collection()
        present = col.get(ids=list(ids), include=[])["ids"]
        if present:
            col.delete(ids=present)
        return len(present)

    def delete_all(self) -> None:
        """Delete this namespace's collection (it is recreated on next use)."""
        self._get_collection()
        with self._lock:
            self._client.delete_collection(self.collection_name)
            self._collection = None

    def storage_bytes(self) -> int | None:
        """Bytes of the PersistentClient directory (every collection in it); None for an
        HTTP client (the server's disk is not ours to see) or a missing directory."""
        if self.url or not self.path:
            return None
        root = Path(self.path)
        if not root.is_dir():
            return None
        total = 0
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                try:
                    total += (Path(dirpath) / f).lstat().st_size
                except OSError:  # removed while walking
                    continue
        return total

    def drop(self) -> None:
        """Nothing to close: clients are shared per path/URL inside chromadb."""
        self._collection = None
