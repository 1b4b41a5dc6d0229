"""Knowledge-editing datasets as evaluation cases.

Three containers hold the same fields:
  knowedit     a JSON list of KnowEdit records (WikiData_counterfact, ZsRE, ...): nested ``portability`` and
               ``locality`` dicts of ``{kind: [{prompt, ground_truth}]}``
  counterfact  a JSON list in the flat EasyEdit form: ``rephrase_prompt``, ``locality_prompt``,
               ``locality_ground_truth``
  jsonl        one record per line, in either shape above (bring your own data)

Field shapes vary between records: an answer may be a string, a list of aliases, a list of alias lists
(several right answers, each with aliases) or ``{"str": ...}``; a rephrase may be a string or a list; any
section may be missing or empty. Every record of the shipped files loads; a record that cannot be read
raises :class:`DatasetError` naming the file and the record.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

FORMATS = ("knowedit", "counterfact", "jsonl")
# Probe kinds. The first three are in scope of the case's update, locality is out of scope.
IN_SCOPE_KINDS = ("reliability", "generalization", "portability")
KINDS = IN_SCOPE_KINDS + ("locality",)


class DatasetError(ValueError):
    pass


@dataclass(frozen=True)
class Probe:
    """One prompt to answer for a case, with what a right answer looks like."""

    kind: str  # reliability | generalization | portability | locality
    prompt: str
    answers: tuple[tuple[str, ...], ...]  # alias groups (each group: one right answer and its aliases)
    sub: str | None = None  # sub-kind (portability: Reasoning, Subject_Aliasing, ...; locality: ...)

    @property
    def in_scope(self) -> bool:
        return self.kind != "locality"

    @property
    def label(self) -> str:
        return f"{self.kind}.{self.sub}" if self.sub else self.kind

    @property
    def aliases(self) -> list[str]:
        return [a for group in self.answers for a in group]

    @property
    def target(self) -> str:
        """The canonical answer (first alias of the first group): the teacher-forced continuation."""
        return self.answers[0][0] if self.answers and self.answers[0] else ""


@dataclass
class Case:
    """One update (subject, prompt -> target_new) and the probes that test it."""

    case_id: str
    index: int
    prompt: str
    target_new: str
    subject: str | None = None
    target_true: str | None = None
    target_aliases: tuple[str, ...] = ()
    probes: list[Probe] = field(default_factory=list)

    def fact(self) -> dict:
        """The memory fact SCR stores for this update (see ``fact_text``)."""
        return {"text": fact_text(self.prompt, self.target_new), "subject": self.subject, "object": self.target_new,
                "source": f"eval:{self.case_id}"}

    def edit_request(self):
        from scr.editing import EditRequest

        if not self.subject:
            raise DatasetError(f"case {self.case_id}: parameter editing needs a 'subject'")
        return EditRequest(prompt=self.prompt, subject=self.subject, target_new=self.target_new,
                           target_true=self.target_true)


def fact_text(prompt: str, target: str) -> str:
    """``prompt + " " + target + "."``: the SCR paper's memory sentence for KnowEdit WikiData_counterfact.

    The same rule is used for question-style prompts (ZsRE): "Which family does Epaspidoceras belong to?
    Noctuidae." It keeps the fact key (the text without its object) equal to the edit prompt, which is what the
    default scope check compares questions with, and it needs no LLM rewrite (the paper rewrote ZsRE facts
    with an LLM; a rewrite would add a model's errors to the memory).
    """
    prompt, target = prompt.strip(), target.strip()
    return f"{prompt} {target}" if target.endswith((".", "!", "?")) else f"{prompt} {target}."


# ----- field normalisation ----------------------------------------------------------------------------------
def _text(value: Any, where: str, name: str, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise DatasetError(f"{where}: missing or empty '{name}'")
        return None
    if isinstance(value, dict) and "str" in value:
        value = value["str"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DatasetError(f"{where}: '{name}' must be text, got {type(value).__name__}")
    return value.strip()


def answer_groups(value: Any, where: str, name: str) -> tuple[tuple[str, ...], ...]:
    """Normalise an answer field to alias groups.

    "Paris" -> (("Paris",),); ["Paris", "Paname"] -> (("Paris", "Paname"),) (aliases of one answer);
    [["Syrian pound", "SYP"], ["Arabic"]] -> two groups; {"str": "Paris"} -> (("Paris",),).
    """
    if value is None:
        return ()
    if isinstance(value, (str, dict, int, float)) and not isinstance(value, bool):
        text = _text(value, where, name, required=False)
        return ((text,),) if text else ()
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (list, tuple)) for v in value):
            aliases = tuple(t for t in (_text(v, where, name, required=False) for v in value) if t)
            return (aliases,) if aliases else ()
        groups = []
        for item in value:
            groups.extend(answer_groups(item, where, name))
        # A list of alias lists may hold single strings beside lists; merge nothing, keep order.
        return tuple(g for g in groups if g)
    raise DatasetError(f"{where}: '{name}' has an unreadable shape ({type(value).__name__})")


def _prompts(value: Any, where: str, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out.extend(_prompts(v, where, name))
        return out
    raise DatasetError(f"{where}: '{name}' must be text or a list of texts, got {type(value).__name__}")


def _section(value: Any, kind: str, where: str, default_answers=()) -> list[Probe]:
    """A KnowEdit section ``{sub_kind: [{prompt, ground_truth}] | {prompt, ground_truth}}``."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise DatasetError(f"{where}: '{kind}' must be an object of kinds, got {type(value).__name__}")
    probes = []
    for sub, items in value.items():
        if items is None:
            continue
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            raise DatasetError(f"{where}: '{kind}.{sub}' must be a list, got {type(items).__name__}")
        for n, item in enumerate(items):
            at = f"{where}, {kind}.{sub}[{n}]"
            if not isinstance(item, dict):
                raise DatasetError(f"{at}: expected an object with 'prompt' and 'ground_truth'")
            answers = answer_groups(item.get("ground_truth", item.get("answer")), at, "ground_truth")
            # Some releases store several prompts sharing one answer.
            for prompt in _prompts(item.get("prompt"), at, "prompt"):
                probes.append(Probe(kind, prompt, answers or default_answers, sub))
    return probes


def parse_record(record: Any, index: int, where: str) -> Case:
    """One dataset record (KnowEdit or flat CounterFact shape) as a Case."""
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    prompt = _text(record.get("prompt"), where, "prompt")
    new_groups = answer_groups(record.get("target_new"), where, "target_new")
    if not new_groups:
        raise DatasetError(f"{where}: missing or empty 'target_new'")
    target_new = new_groups[0][0]
    aliases = tuple(a for g in new_groups for a in g)
    true_groups = answer_groups(record.get("ground_truth", record.get("target_true")), where, "ground_truth")
    subject = _text(record.get("subject"), where, "subject", required=False)
    raw_id = record.get("case_id", record.get("id", index))
    case = Case(case_id=str(raw_id), index=index, prompt=prompt, target_new=target_new, subject=subject,
                target_true=true_groups[0][0] if true_groups else None, target_aliases=aliases)
    target = (aliases,)
    probes = [Probe("reliability", prompt, target)]
    rephrase = record.get("rephrase", record.get("rephrase_prompt", record.get("rephrase_prompts")))
    probes += [Probe("generalization", p, target) for p in _prompts(rephrase, where, "rephrase")]
    probes += _section(record.get("portability"), "portability", where)
    probes += _section(record.get("locality"), "locality", where)
    # Flat (EasyEdit CounterFact) form.
    if record.get("locality_prompt") is not None:
        answers = answer_groups(record.get("locality_ground_truth"), where, "locality_ground_truth")
        probes += [Probe("locality", p, answers, "Neighborhood")
                   for p in _prompts(record.get("locality_prompt"), where, "locality_prompt")]
    if record.get("portability_prompt") is not None:
        answers = answer_groups(record.get("portability_ground_truth"), where, "portability_ground_truth")
        probes += [Probe("portability", p, answers, "Reasoning")
                   for p in _prompts(record.get("portability_prompt"), where, "portability_prompt")]
    case.probes = probes
    return case


def detect_format(path: Path) -> str:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if b'"locality_prompt"' in head or (b'"rephrase_prompt"' in head and b'"locality"' not in head):
        return "counterfact"
    return "knowedit"


def _records(path: Path, fmt: str) -> Iterable[tuple[Any, str]]:
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line), f"{path.name} line {line_no}"
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path.name} line {line_no}: not valid JSON ({exc.msg})") from None
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict):  # {"data": [...]} wrappers
        data = data.get("data", data.get("records"))
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of records")
    for n, record in enumerate(data):
        yield record, f"{path.name} record {n}"


def load_cases(path: str | Path, fmt: str | None = None, limit: int | None = None) -> list[Case]:
    """Every record of the file as a Case (the first ``limit`` when given)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {fmt!r} (choose from {', '.join(FORMATS)})")
    cases: list[Case] = []
    seen: set[str] = set()
    for index, (record, where) in enumerate(_records(path, fmt)):
        if limit is not None and len(cases) >= limit:
            break
        case = parse_record(record, index, where)
        if case.case_id in seen:  # ids must be unique: they key the resumable results
            case.case_id = f"{case.case_id}#{index}"
        seen.add(case.case_id)
        cases.append(case)
    if not cases:
        raise DatasetError(f"{path}: no records")
    return cases


def count_records(path: str | Path, fmt: str | None = None) -> int:
    """How many records the file holds (read, not parsed into cases): a ``--limit`` run needs the full count."""
    path = Path(path)
    return sum(1 for _ in _records(path, fmt or detect_format(path)))


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def data_dir(explicit: str | Path | None = None) -> Path:
    """$SCR_DATA_DIR, else ``../shared/data`` beside the repository root."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("SCR_DATA_DIR"):
        return Path(os.environ["SCR_DATA_DIR"]).expanduser()
    return repo_root().parent / "shared" / "data"


def resolve_data(path: str | Path, directory: str | Path | None = None) -> Path:
    """A dataset path as given if it exists, else relative to the data directory."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    candidate = data_dir(directory) / p
    return candidate if candidate.exists() else p
