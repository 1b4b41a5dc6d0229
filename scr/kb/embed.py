"""Sentence embeddings (unit-normalised, so inner product = cosine), usable as a langchain-core Embeddings."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from langchain_core.embeddings import Embeddings

from scr.models import loading, resolve_embedder, set_offline_env


class Embedder(Embeddings):
    def __init__(self, name: str, device: str = "cpu", batch_size: int = 64):
        set_offline_env()
        from sentence_transformers import SentenceTransformer

        from scr.models import quiet_loading

        quiet_loading()

        self.name = name
        self.batch_size = batch_size
        with loading("embedder", name):
            self._model = SentenceTransformer(resolve_embedder(name), device=device)
        self.dim = int(self._model.get_embedding_dimension())

    def embed(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """float32 array [len(texts), dim]; ``progress(done, total)`` is called after each batch."""
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            chunks.append(
                self._model.encode(batch, batch_size=self.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
            )
            if progress:
                progress(min(start + self.batch_size, len(texts)), len(texts))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), dtype=np.float32)

    # langchain-core Embeddings interface
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0].tolist()
