"""What one edit asks for, and how to read it from the datasets' records."""

from __future__ import annotations

import warnings
from dataclasses import dataclass


def first_answer(value) -> str | None:
    """The first string in a dataset answer: a string, a list, a list of alias lists, or a {"str": ...} dict."""
    while isinstance(value, (list, tuple)):
        if not value:
            return None
        value = value[0]
    if isinstance(value, dict):
        value = value.get("str")
    return None if value is None else str(value)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class EditRequest:
    """Edit ``prompt`` (which contains ``subject`` verbatim) so that the model continues it with ``target_new``.

    ``target_true`` (the old answer) is optional for every method but CoME, which unlearns it.
    """

    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None

    @classmethod
    def from_record(cls, record: dict) -> "EditRequest":
        """From a KnowEdit or flat CounterFact record (target/ground_truth may be str, list, nested lists)."""
        target_true = first_answer(record.get("ground_truth", record.get("target_true")))
        return cls(
            prompt=record["prompt"],
            subject=record["subject"],
            target_new=first_answer(record["target_new"]),
            target_true=target_true,
        )

    def template(self) -> tuple[str, str]:
        """(template with "{}" where the subject goes, subject) such that template.format(subject) == prompt.

        If the subject is not in the prompt we edit at the prompt's last token (subject = "") and warn.
        """
        at = self.prompt.find(self.subject) if self.subject else -1
        if at < 0 and self.subject:
            at = self.prompt.lower().find(self.subject.lower())
        if at < 0:
            warnings.warn(f"subject {self.subject!r} not in prompt {self.prompt!r}: editing at its last token")
            return _escape(self.prompt) + "{}", ""
        subject = self.prompt[at : at + len(self.subject)]
        rest = self.prompt[at + len(subject) :]
        return _escape(self.prompt[:at]) + "{}" + _escape(rest), subject
