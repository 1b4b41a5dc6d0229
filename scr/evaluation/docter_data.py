"""DocTER (document-based knowledge editing) as evaluation cases: one counterfactual document per case.

Files, under the data directory (see /work/shared/data/README.md):
  docedit/docter_en_doc.json            {data: [{id, src}]}: the press-release-style edit document
  docedit/docter_edit_success_eval.json {data: [{id, original_target, altered_target, query, paraphrase_query}]}
  docedit/docter_locality_eval.json     [{id, original_target, altered_target, query: [neighbour prompts]}]
  docedit/docter_reasoning_eval.json    {data: [{id, src (yes/no question), additional_info, label}]}, some ids

The ids are CounterFact case ids: every DocTER id that is also in counterfact/counterfact_train.json (893 of
2000) has the same target_new/ground_truth there and its subject in the DocTER query (checked by
``tests/test_docter.py``). Editing methods need the subject: it comes from CounterFact where the record is
there and agrees, otherwise ``derive_subject`` reads it off the query and its paraphrases (it agrees with
CounterFact on 877 of the 893 shared records).

Every record is validated; a malformed one raises :class:`DatasetError` naming the file, the record's position
and its id.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scr.evaluation.data import Case, DatasetError, data_dir, file_digest

FILES = {
    "documents": "docedit/docter_en_doc.json",
    "edits": "docedit/docter_edit_success_eval.json",
    "locality": "docedit/docter_locality_eval.json",
    "reasoning": "docedit/docter_reasoning_eval.json",
}
COUNTERFACT = "counterfact/counterfact_train.json"


@dataclass(frozen=True)
class ReasoningItem:
    question: str
    info: str  # the extra fact needed to reason from the edit ("The official language of England is English."), or ""
    label: bool  # the answer once the document's edit holds


@dataclass(frozen=True)
class DocCase:
    id: int
    index: int
    document: str
    query: str
    paraphrases: tuple[str, ...]
    original: str
    altered: str
    neighbours: tuple[str, ...]
    reasoning: tuple[ReasoningItem, ...]
    subject: str | None
    subject_source: str  # counterfact | derived | none

    @property
    def name(self) -> str:
        """The document's name in fact sources (``docter-0#s3``)."""
        return f"docter-{self.id}"

    def upper_case(self) -> Case:
        """The benchmark's own edit (query -> altered target) as an editing case: the upper-bound request."""
        return Case(case_id=f"{self.name}#upper", index=self.index, prompt=self.query, target_new=self.altered,
                    subject=self.subject, target_true=self.original)


# ----- reading and validating ----------------------------------------------------------------------------------
def _records(path: Path, container: str) -> list:
    if not path.exists():
        raise DatasetError(f"{path}: file not found (set --data-dir or SCR_DATA_DIR)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if container == "data":
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise DatasetError(f"{path}: expected an object with a 'data' list")
        return data["data"]
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of records")
    return data


def _where(path: Path, n: int, record: Any) -> str:
    rid = record.get("id") if isinstance(record, dict) else None
    return f"{path.name}: record {n}" + (f" (id {rid})" if rid is not None else "")


def _id(record: Any, where: str) -> int:
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected an object, got {type(record).__name__}")
    value = record.get("id")
    if isinstance(value, bool) or not isinstance(value, int):
        raise DatasetError(f"{where}: 'id' must be a whole number, got {value!r}")
    return value


def _text(record: dict, name: str, where: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: missing or empty '{name}'")
    return value.strip()


def _texts(record: dict, name: str, where: str, minimum: int = 1) -> tuple[str, ...]:
    value = record.get(name)
    if not isinstance(value, list) or len(value) < minimum or not all(isinstance(v, str) and v.strip() for v in value):
        raise DatasetError(f"{where}: '{name}' must be a list of at least {minimum} non-empty string(s)")
    return tuple(v.strip() for v in value)


def _unique(out: dict, key: int, value, where: str) -> None:
    if key in out:
        raise DatasetError(f"{where}: duplicate id {key}")
    out[key] = value


def restore_paragraphs(text: str) -> str:
    """The documents' paragraphs were joined without a space ("situation.This fact"); split them again so
    that sentence splitting sees two sentences (a lower-case letter or digit, end punctuation, a capital)."""
    return re.sub(r"(?<=[a-z0-9][.!?])(?=[A-Z][a-z])|(?<=[a-z0-9][.!?][\"”])(?=[A-Z][a-z])", "\n\n", text)


def read_documents(path: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    for n, record in enumerate(_records(path, "data")):
        where = _where(path, n, record)
        _unique(out, _id(record, where), restore_paragraphs(_text(record, "src", where)), where)
    return out


def read_edits(path: Path) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for n, record in enumerate(_records(path, "data")):
        where = _where(path, n, record)
        _unique(out, _id(record, where), {
            "query": _text(record, "query", where), "paraphrases": _texts(record, "paraphrase_query", where),
            "original": _text(record, "original_target", where), "altered": _text(record, "altered_target", where),
        }, where)
    return out


def read_locality(path: Path) -> dict[int, tuple[str, ...]]:
    out: dict[int, tuple[str, ...]] = {}
    for n, record in enumerate(_records(path, "list")):
        where = _where(path, n, record)
        _text(record, "original_target", where)
        _unique(out, _id(record, where), _texts(record, "query", where), where)
    return out


def read_reasoning(path: Path) -> dict[int, list[ReasoningItem]]:
    out: dict[int, list[ReasoningItem]] = {}
    for n, record in enumerate(_records(path, "data")):
        where = _where(path, n, record)
        rid = _id(record, where)
        label = record.get("label")
        if label not in ("True", "False", True, False):
            raise DatasetError(f"{where}: 'label' must be \"True\" or \"False\", got {label!r}")
        info = record.get("additional_info", "")
        if not isinstance(info, str):  # may be empty: one question needs no extra fact
            raise DatasetError(f"{where}: 'additional_info' must be text, got {type(info).__name__}")
        item = ReasoningItem(_text(record, "src", where), info.strip(), label in ("True", True))
        out.setdefault(rid, []).append(item)
    return out


def counterfact_subjects(path: Path, edits: dict[int, dict]) -> dict[int, str]:
    """Subjects of the DocTER ids found in CounterFact, kept only where the record is the same edit."""
    if not path.exists():
        return {}
    records = _records(path, "list")
    out = {}
    for record in records:
        rid = record.get("case_id") if isinstance(record, dict) else None
        edit = edits.get(rid) if isinstance(rid, int) else None
        if edit is None:
            continue
        subject = record.get("subject")
        if (isinstance(subject, str) and subject and subject in edit["query"]
                and record.get("target_new") == edit["altered"] and record.get("ground_truth") == edit["original"]):
            out[rid] = subject
    return out


# ----- the subject of a query -----------------------------------------------------------------------------------
# Words that may sit inside a name ("Edwin of Northumbria") but neither start nor end one.
_LINKS = set("of de the and von van der du la le y da di del des & in al".split())


def _capital(word: str) -> bool:
    return word[:1].isupper() or word[:1].isdigit()


def _tidy(words: list[str]) -> str:
    text = re.sub(r"(?:'s|’s)$", "", " ".join(words))
    return text.rstrip(",?!;:\"'’").rstrip()


def derive_subject(query: str, paraphrases: tuple[str, ...] | list[str]) -> str | None:
    """The subject of a CounterFact-style query: the name the query shares with all of its paraphrases.

    Among the word spans of the query found in every paraphrase, the one with the most capitalised words and
    the fewest other words wins ("Danielle Darrieux" over "mother tongue of"); all-lower-case subjects
    ("shofar") are found less reliably.
    """
    words = query.split()
    best: tuple[tuple, str] | None = None
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            text = _tidy(words[i:j])
            if not text:
                continue
            if not all(re.search(r"(?<!\w)" + re.escape(text) + r"(?!\w)", p) for p in paraphrases):
                break  # a longer span starting at i cannot be shared either
            span = text.split()
            if any(_capital(w) and w.lower() not in _LINKS for w in span):
                while span and (not _capital(span[0]) or span[0] in ("In", "A", "An")):
                    span.pop(0)
                while span and not _capital(span[-1]):
                    span.pop()
            if not span:
                continue
            capitals = sum(_capital(w) and w.lower() not in ("the", "a", "an") for w in span)
            others = sum(not _capital(w) and w.lower() not in _LINKS for w in span)
            key = (capitals, -others, len(span)) if capitals else (0, len(span) - sum(w in _LINKS for w in span), 0)
            if best is None or key > best[0]:
                best = (key, _tidy(span))
    return best[1] if best else None


# ----- loading ------------------------------------------------------------------------------------------------
def docter_paths(directory: str | Path | None = None, counterfact: bool = True) -> dict[str, Path]:
    root = data_dir(directory)
    paths = {name: root / rel for name, rel in FILES.items()}
    if counterfact:
        paths["counterfact"] = root / COUNTERFACT
    return paths


def digests(paths: dict[str, Path]) -> dict[str, str]:
    return {name: file_digest(p)[:16] for name, p in paths.items() if p.exists()}


def load_docter(directory: str | Path | None = None, limit: int | None = None,
                counterfact: bool = True, offset: int = 0) -> list[DocCase]:
    """``limit`` documents (file order) from the ``offset``-th on, with their probes; every record of every file is
    validated."""
    paths = docter_paths(directory, counterfact)
    documents = read_documents(paths["documents"])
    edits = read_edits(paths["edits"])
    locality = read_locality(paths["locality"])
    reasoning = read_reasoning(paths["reasoning"])
    for name, table in (("edits", edits), ("locality", locality)):
        missing = [i for i in documents if i not in table]
        if missing:
            raise DatasetError(f"{paths[name].name}: no record for document id(s) {missing[:10]}")
    # Reasoning questions whose id has no document (9 of 583 in the shipped file) cannot be evaluated: left out.
    subjects = counterfact_subjects(paths["counterfact"], edits) if counterfact else {}
    cases = []
    if offset >= len(documents):
        raise DatasetError(f"offset {offset}: {paths['documents'].name} has {len(documents)} documents")
    for index, (rid, text) in enumerate(documents.items()):
        if index < offset:
            continue
        if limit is not None and index >= offset + limit:
            break
        e = edits[rid]
        subject, source = subjects.get(rid), "counterfact"
        if subject is None:
            subject, source = derive_subject(e["query"], e["paraphrases"]), "derived"
            if subject is None:
                source = "none"
        cases.append(DocCase(id=rid, index=index, document=text, query=e["query"], paraphrases=e["paraphrases"],
                             original=e["original"], altered=e["altered"], neighbours=locality[rid],
                             reasoning=tuple(reasoning.get(rid, ())), subject=subject, subject_source=source))
    return cases


# ----- the reasoning questions ------------------------------------------------------------------------------------
def reasoning_prompt(item: ReasoningItem) -> str:
    """The yes/no question with its extra fact; the question first, so that retrieval keys on its subject."""
    note = f" Note: {item.info}" if item.info else ""
    return f"{item.question}{note} Answer yes or no."


_YES_NO = re.compile(r"\b(yes|no)\b", re.I)


def parse_yes_no(answer: str) -> bool | None:
    """True for yes, False for no: the first "yes" or "no" word of the answer; None when it has neither."""
    match = _YES_NO.search(answer)
    return None if match is None else match.group(1).lower() == "yes"
