"""The LLM backend protocol: everything above it (scope check, answers, evaluator) talks only to this.

A prompt is either raw text (a completion prompt, used as is) or a list of chat messages (rendered with the
model's chat template, generation prompt added). A chat whose last message is the assistant's is continued:
that message is the start of the answer, and ``generate`` returns it followed by what the model wrote. Both
implementations (in-process transformers, vLLM over HTTP) give the same greedy answers for the same model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, Union, runtime_checkable

Message = dict[str, str]
Prompt = Union[str, list[Message]]


class BackendError(RuntimeError):
    """The backend cannot serve the request (server down, wrong model, bad response)."""


class BackendUnavailable(BackendError):
    """The backend could not be reached at all; callers may retry later (the API answers 503)."""


@dataclass
class TokenScores:
    """Log-probabilities of a continuation's tokens given a prompt (teacher forcing)."""

    tokens: list[str]
    logprobs: list[float]
    # Whether each continuation token is the model's own argmax at that position (EasyEdit's token accuracy).
    greedy: list[bool] = field(default_factory=list)
    # The model's argmax token id at each continuation position, where the backend reports it (EasyEdit's
    # teacher-forced locality compares these with the unmodified model's).
    argmax: list[int] = field(default_factory=list)

    @property
    def total(self) -> float:
        return float(sum(self.logprobs))

    @property
    def accuracy(self) -> float:
        return sum(self.greedy) / len(self.greedy) if self.greedy else 0.0


@runtime_checkable
class LLMBackend(Protocol):
    name: str

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int = 48) -> list[str]:
        """Greedy answers, one per prompt, without the prompt and with surrounding whitespace stripped."""
        ...

    def token_logprobs(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[TokenScores]:
        """Score each continuation (tokenised on its own, appended to the prompt's tokens)."""
        ...

    def choose(self, prompts: Sequence[Prompt], options: Sequence[Sequence[str]]) -> list[int]:
        """Constrained greedy decoding: the index of the option the model writes when it may only write one."""
        ...

    def close(self) -> None: ...


def as_chat(text: str, system: str | None = None) -> list[Message]:
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": text}]


def answer_prefix(prompt: Prompt) -> str:
    """The start of the answer a chat prompt prescribes (its final assistant message), or ""."""
    if isinstance(prompt, str) or not prompt or prompt[-1].get("role") != "assistant":
        return ""
    return prompt[-1]["content"]
