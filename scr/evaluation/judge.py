"""Optional LLM judge over any OpenAI-compatible endpoint.

The judge answers with one letter; the verdict is parsed exactly (``metrics.parse_verdict``): "A" = correct,
"B" = incorrect, anything else is unparsed and left out of the judge score (and counted). Never a substring
test: "INCORRECT" contains "CORRECT".
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from scr.evaluation.metrics import parse_verdict

JUDGE_PROMPT = (
    "You grade answers to questions about facts.\n\n"
    "Question: {question}\n"
    "Reference answer(s): {references}\n"
    "Answer to grade: {answer}\n\n"
    "Does the answer to grade state the reference answer (or one of them, or an equivalent name)? "
    "Reply with exactly one letter: A if it does, B if it does not."
)


def judge_prompt(question: str, references: Sequence[str], answer: str) -> str:
    return JUDGE_PROMPT.format(question=question, references=" | ".join(references[:10]), answer=answer)


class Judge:
    def __init__(self, base_url: str, model: str | None, api_key: str | None = None, workers: int = 8,
                 timeout_s: float = 60.0, client=None):
        if client is None:
            from openai import OpenAI

            client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout_s)
        self.client = client
        self.model = model
        self.workers = workers

    def _model(self) -> str:
        if self.model is None:
            self.model = self.client.models.list().data[0].id
        return self.model

    def _one(self, item) -> tuple[bool | None, str | None]:
        question, references, answer = item
        try:
            reply = self.client.chat.completions.create(
                model=self._model(), temperature=0, max_tokens=2,
                messages=[{"role": "user", "content": judge_prompt(question, list(references), answer)}])
            text = reply.choices[0].message.content
        except Exception as exc:  # a judge failure must not lose the run: the probe stays unjudged
            return None, f"error: {exc}"
        return parse_verdict(text), text

    def judge(self, items: Sequence[tuple[str, Sequence[str], str]]) -> list[tuple[bool | None, str | None]]:
        """(verdict, raw reply) per (question, references, answer)."""
        if not items:
            return []
        self._model()
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(self._one, items))
