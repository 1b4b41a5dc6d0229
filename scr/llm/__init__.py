"""LLM backends behind one protocol (see base.py)."""

from __future__ import annotations

from scr.llm.base import BackendError, BackendUnavailable, LLMBackend, Prompt, TokenScores, as_chat

__all__ = ["BackendError", "BackendUnavailable", "LLMBackend", "Prompt", "TokenScores", "as_chat", "make_backend"]


def make_backend(settings) -> LLMBackend:
    """Build the backend that ``settings.backend`` names."""
    if settings.backend == "vllm":
        from scr.llm.vllm import VLLMBackend

        return VLLMBackend.from_settings(settings)
    from scr.llm.hf import TransformersBackend

    return TransformersBackend.from_settings(settings)
