"""Vector indexes behind one protocol: FAISS (embedded default) and Chroma (persistent folder or server).

The fact database is the source of truth; an index holds the embeddings of the active facts under their
integer row ids and can always be reconciled with (or rebuilt from) the database.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Protocol, Sequence
from urllib.parse import urlparse

import numpy as np

Hits = list[list[tuple[int, float]]]
log = logging.getLogger(__name__)


class VectorIndex(Protocol):
    def ids(self) -> set[int]: ...

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None: ...

    def remove(self, ids: Sequence[int]) -> None: ...

    def search(self, vectors: np.ndarray, k: int) -> Hits:
        """Per query: (id, inner product) pairs, best first."""
        ...

    def persist(self) -> None: ...

    def reload(self) -> None:
        """Drop unsaved changes (after a failed write)."""
        ...


class FaissIndex:
    """Exact inner-product search (IndexFlatIP) with explicit ids, saved atomically to one file."""

    def __init__(self, path: Path, dim: int):
        import faiss

        self._faiss = faiss
        self.path = Path(path)
        self.dim = dim
        self.reload()

    def reload(self) -> None:
        faiss = self._faiss
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if not self.path.exists():
            return
        try:
            index = faiss.read_index(str(self.path))
        except RuntimeError as exc:  # faiss reports a damaged or foreign file as a RuntimeError
            log.warning("%s is unreadable (%s); rebuilding it from the fact database", self.path,
                        str(exc).splitlines()[-1][:200])
            return
        if index.d != self.dim:
            log.warning("%s holds %d-dimensional vectors, the embedder gives %d; rebuilding it from the fact "
                        "database", self.path, index.d, self.dim)
            return
        self.index = index

    def ids(self) -> set[int]:
        return set(self._faiss.vector_to_array(self.index.id_map).tolist())

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Sequence[int]) -> None:
        if len(ids):
            self.index.remove_ids(np.asarray(list(ids), dtype=np.int64))

    def search(self, vectors: np.ndarray, k: int) -> Hits:
        if self.index.ntotal == 0 or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        scores, ids = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, self.index.ntotal))
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
                for row_ids, row_scores in zip(ids, scores)]

    def persist(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        self._faiss.write_index(self.index, str(tmp))
        os.replace(tmp, self.path)


class ChromaIndex:
    """A Chroma collection in inner-product space: PersistentClient(path) or HttpClient(url).

    Chroma persists on every call, so ``persist`` has nothing to do; we always pass our own embeddings
    (Chroma's default embedding function would try to download a model).
    """

    def __init__(self, dim: int, path: Path | None = None, url: str | None = None, collection: str = "scr_facts"):
        os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
        import chromadb

        settings = chromadb.Settings(anonymized_telemetry=False)
        self.dim = dim
        if url:
            parsed = urlparse(url)
            if not parsed.hostname:
                raise ValueError(f"invalid Chroma URL: {url!r} (expected http://host:port)")
            try:
                self.client = chromadb.HttpClient(host=parsed.hostname, port=parsed.port or 8000,
                                                  ssl=parsed.scheme == "https", settings=settings)
                self.collection = self._collection(collection)
            except (ValueError, chromadb.errors.ChromaError) as exc:  # chromadb names no address
                raise ValueError(f"Chroma server at {url}: {exc}") from None
        else:
            try:
                self.client = chromadb.PersistentClient(path=str(path), settings=settings)
                self.collection = self._collection(collection)
            except chromadb.errors.ChromaError as exc:
                # The folder is derived from the fact database: set it aside (not deleted) and start afresh;
                # the knowledge base fills the new one from the database.
                aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
                log.warning("%s cannot be opened (%s); moved to %s, rebuilding it from the fact database", path,
                            str(exc)[:200], aside)
                from chromadb.api.client import SharedSystemClient

                SharedSystemClient.clear_system_cache()  # Chroma caches the failed client by its path
                os.replace(path, aside)
                self.client = chromadb.PersistentClient(path=str(path), settings=settings)
                self.collection = self._collection(collection)
        stored_dim = (self.collection.metadata or {}).get("dim", dim)
        if stored_dim != dim:
            raise ValueError(f"Chroma collection '{collection}' holds {stored_dim}-d vectors, embedder gives {dim}")

    def _collection(self, name: str):
        return self.client.get_or_create_collection(name, configuration={"hnsw": {"space": "ip"}},
                                                    embedding_function=None, metadata={"dim": self.dim})

    def reload(self) -> None:
        pass

    def ids(self) -> set[int]:
        return {int(i) for i in self.collection.get(include=[])["ids"]}

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        for start in range(0, len(ids), 4096):  # Chroma caps the batch size of one call
            chunk = list(ids[start : start + 4096])
            self.collection.upsert(ids=[str(i) for i in chunk], embeddings=vectors[start : start + len(chunk)])

    def remove(self, ids: Sequence[int]) -> None:
        if len(ids):
            self.collection.delete(ids=[str(i) for i in ids])

    def search(self, vectors: np.ndarray, k: int) -> Hits:
        count = self.collection.count()
        if count == 0 or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        result = self.collection.query(query_embeddings=vectors, n_results=min(k, count), include=["distances"])
        # Chroma's "ip" distance is 1 - inner product.
        return [[(int(i), 1.0 - float(d)) for i, d in zip(ids, dists)]
                for ids, dists in zip(result["ids"], result["distances"])]

    def persist(self) -> None:
        pass
