"""MQuAKE multi-hop cases: a chain of edits, multi-hop questions whose answer follows from all of them, and the
single-hop questions of each link.

Record shape (MQuAKE-CF / MQuAKE-hard JSON list):
  case_id
  requested_rewrite[]   {prompt (with "{}" for the subject), subject, target_new{str}, target_true{str}, question}
  questions[]           paraphrases of the multi-hop question
  answer, answer_alias  the answer before the edits
  new_answer, new_answer_alias
  new_single_hops[]     {question, cloze, answer, answer_alias}: one per link of the edited chain

Each rewrite becomes an evaluation :class:`~scr.evaluation.data.Case`, so SCR stores it as the paper's fact
(``prompt.format(subject) + " " + target_new + "."``) and editing methods apply it as an edit request, through
the same Method interface as every other evaluation. A record that cannot be read raises :class:`DatasetError`
naming the file, the record and its case_id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scr.evaluation.data import Case, DatasetError


@dataclass(frozen=True)
class SingleHop:
    question: str
    answers: tuple[str, ...]  # the answer and its aliases
    edit: int | None = None  # the requested rewrite this link asks about (same question), None if not edited


@dataclass
class MultiHopCase:
    case_id: str
    index: int
    edits: list[Case]  # one per requested rewrite, in chain order
    questions: list[str]  # paraphrases of the multi-hop question
    new_answers: tuple[str, ...]  # new_answer and its aliases
    old_answers: tuple[str, ...] = ()  # the answer before the edits and its aliases
    single_hops: list[SingleHop] = field(default_factory=list)

    def facts(self) -> list[str]:
        """The memory sentences SCR stores for this case's edits."""
        return [e.fact()["text"] for e in self.edits]


def _text(value: Any, where: str, name: str) -> str:
    if isinstance(value, dict) and "str" in value:
        value = value["str"]
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: '{name}' must be non-empty text, got {value!r:.60}")
    return value.strip()


def _aliases(value: Any, where: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetError(f"{where}: '{name}' must be a list of texts")
    return tuple(v.strip() for v in value if v.strip())


def _list(record: dict, name: str, where: str) -> list:
    value = record.get(name)
    if not isinstance(value, list) or not value:
        raise DatasetError(f"{where}: '{name}' must be a non-empty list")
    return value


def parse_case(record: Any, index: int, where: str) -> MultiHopCase:
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if record.get("case_id") is None:
        raise DatasetError(f"{where}: missing 'case_id'")
    case_id = str(record["case_id"])
    where = f"{where} (case_id {case_id})"
    edits, edit_questions = [], []
    for n, rw in enumerate(_list(record, "requested_rewrite", where)):
        at = f"{where}, requested_rewrite[{n}]"
        if not isinstance(rw, dict):
            raise DatasetError(f"{at}: expected an object")
        template, subject = _text(rw.get("prompt"), at, "prompt"), _text(rw.get("subject"), at, "subject")
        if template.count("{}") != 1:
            raise DatasetError(f"{at}: 'prompt' must hold exactly one '{{}}' for the subject, got {template!r}")
        true = rw.get("target_true")
        edits.append(Case(case_id=f"{case_id}/{n}", index=index, prompt=template.format(subject),
                          target_new=_text(rw.get("target_new"), at, "target_new"), subject=subject,
                          target_true=_text(true, at, "target_true") if true is not None else None))
        edit_questions.append(rw.get("question"))
    questions = [_text(q, f"{where}, questions[{n}]", "question")
                 for n, q in enumerate(_list(record, "questions", where))]
    new_answers = (_text(record.get("new_answer"), where, "new_answer"),
                   *_aliases(record.get("new_answer_alias"), where, "new_answer_alias"))
    old = record.get("answer")
    old_answers = ((_text(old, where, "answer"), *_aliases(record.get("answer_alias"), where, "answer_alias"))
                   if old is not None else ())
    hops = []
    for n, hop in enumerate(record.get("new_single_hops") or []):
        at = f"{where}, new_single_hops[{n}]"
        if not isinstance(hop, dict):
            raise DatasetError(f"{at}: expected an object")
        question = _text(hop.get("question"), at, "question")
        # Links are matched to edits by question: a case may edit only some links of its chain.
        edit = next((i for i, q in enumerate(edit_questions) if q == question), None)
        hops.append(SingleHop(question, (_text(hop.get("answer"), at, "answer"),
                                         *_aliases(hop.get("answer_alias"), at, "answer_alias")), edit))
    return MultiHopCase(case_id, index, edits, questions, new_answers, old_answers, hops)


def load_mquake(path: str | Path, limit: int | None = None) -> list[MultiHopCase]:
    """The cases of an MQuAKE JSON file (the first ``limit`` when given). Every record is read and checked, so a
    malformed record anywhere fails the load, with its position and case_id in the message."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list) or not data:
        raise DatasetError(f"{path}: expected a non-empty JSON list of MQuAKE records")
    cases = [parse_case(record, n, f"{path.name} record {n}") for n, record in enumerate(data)]
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):  # ids key the resumable results
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DatasetError(f"{path}: case_id {dup} occurs more than once")
    return cases[:limit] if limit is not None else cases
