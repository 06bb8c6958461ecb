"""Pluggable embeddings. The default needs no model download and no network.

An :class:`Embedder` is any callable ``texts -> list of vectors``. The default,
:class:`HashingEmbedder`, hashes word unigrams and bigrams into 384 signed buckets
and L2-normalises them (the "hashing trick"): deterministic across processes and
machines, offline, about 10 us per short text. It measures *lexical* overlap with
OR semantics (PostgreSQL full-text search uses AND semantics), so paraphrases that
share some words are found; true synonyms need a real model.

Plugging in a real model::

    from sentence_transformers import SentenceTransformer

    class STEmbedder:
        name = "st:all-MiniLM-L6-v2"          # recorded on the Chroma collection
        def __init__(self) -> None:
            self.model = SentenceTransformer("all-MiniLM-L6-v2")
        def __call__(self, texts):
            return self.model.encode(list(texts), normalize_embeddings=True).tolist()

    mem = TieredMemory(redis_url, pg_dsn, embedder=STEmbedder(), namespace="auren-st")

or an API (OpenAI shown; any provider works the same way)::

    class OpenAIEmbedder:
        name = "openai:text-embedding-3-small"
        def __init__(self) -> None:
            from openai import OpenAI
            self.client = OpenAI()
        def __call__(self, texts):
            r = self.client.embeddings.create(model="text-embedding-3-small", input=list(texts))
            return [d.embedding for d in r.data]

Vectors of different embedders are not comparable: a Chroma collection remembers
the embedder ``name`` it was built with and refuses another one (use a different
``namespace`` or re-index). ``chroma_max_distance`` (cosine distance) should be
re-tuned for a real model (give the embedder a ``max_distance`` attribute or pass
``chroma_max_distance``): 0.35-0.5 is typical for MiniLM.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections.abc import Sequence
from typing import Any, Final, Protocol, runtime_checkable

__all__ = ["Embedder", "HashingEmbedder", "chroma_embedding_function", "embedder_name"]


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to vectors of one fixed dimension. An optional ``name`` attribute
    identifies the model (stored on the Chroma collection to catch mix-ups)."""

    def __call__(self, texts: Sequence[str]) -> list[list[float]]: ...


def embedder_name(embedder: Embedder) -> str:
    name = getattr(embedder, "name", None)
    return name if isinstance(name, str) and name else type(embedder).__qualname__


_TOKEN: Final = re.compile(r"[a-z0-9]+")
_STOPWORDS: Final = (
    "a an and are as at be been but by can could did do does for from had has have how i if in "
    "into is it its me my no not of on or our so than that the their them then there these they "
    "this those to was we were what when where which while who why will with would you your"
)
_STOP: Final = frozenset(_STOPWORDS.split())


def _stem(tok: str) -> str:
    """A deliberately crude suffix stripper: enough to match sleep/sleeps/sleeping."""
    for suf, rep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if tok.endswith(suf) and len(tok) - len(suf) >= 3 and not tok.endswith("ss"):
            return tok[: -len(suf)] + rep
    return tok


def tokens(text: str) -> list[str]:
    return [_stem(t) for t in _TOKEN.findall(text.lower()) if t not in _STOP]


class HashingEmbedder:
    """Feature hashing of unigrams (weight 1) and bigrams (``bigram_weight``), signed
    by one hash bit, L2-normalised. Deterministic: crc32, never Python's salted hash.

    ``max_distance`` is the Chroma hit threshold suited to it: cosine similarity
    >= 0.25, about two shared content words of a short query.
    """

    max_distance: float = 0.75

    def __init__(self, dims: int = 384, bigram_weight: float = 0.5) -> None:
        if dims < 8:
            raise ValueError("dims must be >= 8")
        self.dims = dims
        self.bigram_weight = bigram_weight
        self.name = f"auren-hashing-{dims}"

    def embed(self, text: str) -> list[float]:
        dims = self.dims
        toks = tokens(text)
        sparse: dict[int, float] = {}
        feats: list[tuple[str, float]] = [(t, 1.0) for t in toks]
        if self.bigram_weight:
            bw = self.bigram_weight
            feats += [(f"{a} {b}", bw) for a, b in itertools.pairwise(toks)]
        for feat, w in feats:
            h = zlib.crc32(feat.encode())
            i = h % dims
            sparse[i] = sparse.get(i, 0.0) + (w if h & 0x80000000 else -w)
        vec = [0.0] * dims
        norm = math.sqrt(sum(x * x for x in sparse.values()))
        if norm:
            inv = 1.0 / norm
            for i, x in sparse.items():
                vec[i] = x * inv
        return vec

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.embed(t) for t in texts]


_EF_CLASS: Any = None


def chroma_embedding_function(embedder: Embedder) -> Any:
    """Wrap ``embedder`` as a chromadb ``EmbeddingFunction`` (registered as "auren").

    Giving Chroma an explicit function is what keeps it from loading its default
    ONNX model (a download on first use). The class is built on first call so that
    importing this module never imports chromadb.
    """
    global _EF_CLASS
    if _EF_CLASS is None:
        _EF_CLASS = _build_ef_class()
    return _EF_CLASS(embedder)


def _build_ef_class() -> Any:
    import numpy as np
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from chromadb.utils.embedding_functions import register_embedding_function

    class _Unavailable:
        """Stands in when a collection built with another embedder is opened
        without it; calling it explains what to pass instead."""

        def __init__(self, name: str) -> None:
            self.name = name

        def __call__(self, texts: Sequence[str]) -> list[list[float]]:
            raise RuntimeError(f"collection was built with embedder {self.name!r}; pass it")

    class AurenEmbeddingFunction(EmbeddingFunction[Documents]):
        def __init__(self, embedder: Embedder) -> None:
            self._embedder = embedder

        def __call__(self, input: Documents) -> Embeddings:
            return [np.asarray(v, dtype=np.float32) for v in self._embedder(list(input))]

        @staticmethod
        def name() -> str:
            return "auren"

        def get_config(self) -> dict[str, Any]:
            return {"embedder": embedder_name(self._embedder)}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> AurenEmbeddingFunction:
            name = str(config.get("embedder", ""))
            m = re.fullmatch(r"auren-hashing-(\d+)", name)
            emb: Embedder = HashingEmbedder(int(m.group(1))) if m else _Unavailable(name)
            return AurenEmbeddingFunction(emb)

        def default_space(self) -> Any:
            return "cosine"

        def supported_spaces(self) -> Any:
            return ["cosine", "l2", "ip"]

    register_embedding_function(AurenEmbeddingFunction)  # type: ignore[no-untyped-call]
    return AurenEmbeddingFunction
