"""Per-probe scores and their aggregation.

Generation mode (greedy answers):
  contains   a target or any of its aliases is a case-insensitive substring of the answer (the SCR paper's metric)
  exact      the normalised answer equals a target or alias (lower case, whitespace collapsed, surrounding
             punctuation and quotes stripped)
  unchanged  locality: the answer is identical to the unmodified model's answer to the same prompt
Teacher-forced mode (EasyEdit-compatible): the prompt followed by the target, scored per token:
  token accuracy   fraction of target tokens that are the model's argmax
  locality         fraction of positions whose argmax token equals the unmodified model's argmax

Locality probes that ask an edited fact: KnowEdit's locality sets hold probes that ask the very (subject,
relation) an update of the same run changes, often the case's own ("The father of Cheyenne Brando is" beside the
update "The father of Cheyenne Brando was who? Marcel Brando."): the right answer to them changes, so
"unchanged" scores a correct update as damage. ``edited_fact_probes`` finds them without a model (the probe
names an update's subject and its expected answer is that update's original answer) and ``locality_unedited``
/ ``scope_accuracy_unedited`` are reported beside the raw figures, which stay the headline.

Conflicting updates: KnowEdit ZsRE test updates the same fact several times to different objects (307 of its
1301 cases: "What was the launch date of USA-64?" -> 3 December 1992, "The USA-64 was launched on what date?"
-> 2 March 1992, "What day was USA-64 launched?" -> 3 March 1990). Applied together, at most one of them can
be right, so reliability and generalization count the others as failures whatever the method does.
``conflicting_updates`` finds them without a model (same subject and original answer, another new object,
in the same group of N) and ``*_unconflicted`` score the remaining cases, beside the raw figures.

Aggregation: per case and kind, the mean over that kind's probes; a case's portability (locality) is the mean
of its sub-kinds; a kind's overall score is the mean over the cases that have it. ``average`` is the mean of
the four main kinds present (the SCR paper's "average score").
"""

from __future__ import annotations

import re
import statistics
from typing import Iterable, Sequence

from scr.llm.base import TokenScores

MAIN = ("reliability", "generalization", "locality", "portability")
_EDGE = " \t\r\n.,;:!?\"'`()[]{}*"


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip(_EDGE).lower()


def contains(answer: str, aliases: Iterable[str]) -> bool:
    """Any alias, as a case-insensitive substring of the answer (empty aliases never match)."""
    low = answer.lower()
    return any(a.strip() and a.strip().lower() in low for a in aliases)


def exact_match(answer: str, aliases: Iterable[str]) -> bool:
    norm = normalize(answer)
    return bool(norm) and any(norm == normalize(a) for a in aliases if a.strip())


def token_accuracy(scores: TokenScores) -> float:
    """EasyEdit's teacher-forced accuracy: the fraction of target tokens that are the argmax."""
    return scores.accuracy


def token_agreement(scores: TokenScores, reference: TokenScores) -> float:
    """EasyEdit's teacher-forced locality: the fraction of positions whose argmax equals the reference's.

    Backends that report the argmax ids compare them; otherwise (older backends) whether each position's argmax
    is the continuation token is compared, which agrees with the former whenever either side predicts it.
    """
    if scores.argmax and reference.argmax and len(scores.argmax) == len(reference.argmax):
        pairs = list(zip(scores.argmax, reference.argmax))
    else:
        pairs = list(zip(scores.greedy, reference.greedy))
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else 0.0


def parse_verdict(text: str | None) -> bool | None:
    """An LLM judge's verdict: exactly "A" (correct) or "B" (incorrect), else None (unparsed).

    Only surrounding whitespace and one trailing period are tolerated: "INCORRECT" is not read as correct,
    nor is "A or B" read as anything.
    """
    if text is None:
        return None
    t = text.strip()
    if t.endswith("."):
        t = t[:-1].strip()
    return True if t == "A" else False if t == "B" else None


def edited_fact_probes(cases, n: int) -> set[tuple[str, str]]:
    """(case_id, prompt) of the locality probes that ask a fact an update in their group of ``n`` changes.

    A probe asks an edited fact when it contains an update's subject (case-insensitive) and one of its expected
    answers is that update's original answer (``target_true``), unless it excludes the update's new object by
    name ("..., which is not Syria, is": it asks for another value). Cases without ``target_true`` never match.
    """
    from scr.scope import excludes_object

    flagged: set[tuple[str, str]] = set()
    groups: dict[int, list] = {}
    for case in cases:
        groups.setdefault(case.index // n, []).append(case)
    for members in groups.values():
        edits = [(c.subject.lower(), normalize(c.target_true), c.target_new) for c in members
                 if c.subject and c.target_true]
        for case in members:
            for probe in case.probes:
                if probe.kind != "locality":
                    continue
                prompt = probe.prompt.lower()
                expected = {normalize(a) for group in probe.answers for a in group}
                if any(subject in prompt and original in expected and not excludes_object(probe.prompt, new)
                       for subject, original, new in edits):
                    flagged.add((case.case_id, probe.prompt))
    return flagged


def conflicting_updates(cases, n: int) -> set[str]:
    """case_ids of the updates that another update in their group of ``n`` contradicts: the same subject and
    original answer (the same fact), another new object. Cases without a subject or ``target_true`` never match."""
    fact_of = {case.case_id: (case.index // n, case.subject.lower(), normalize(case.target_true))
               for case in cases if case.subject and case.target_true}  # (group, subject, original answer)
    objects: dict[tuple[int, str, str], set[str]] = {}
    for case in cases:
        if case.case_id in fact_of:
            objects.setdefault(fact_of[case.case_id], set()).add(normalize(case.target_new))
    return {case_id for case_id, fact in fact_of.items() if len(objects[fact]) > 1}


# ----- aggregation ------------------------------------------------------------------------------------------
def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def case_scores(probes: list[dict], field: str = "score") -> dict[str, float]:
    """One case's scores per kind and sub-kind from its probe records (``kind``, ``sub``, ``field``)."""
    by_label: dict[str, list[float]] = {}
    for p in probes:
        value = p.get(field)
        if value is None:
            continue
        label = f"{p['kind']}.{p['sub']}" if p.get("sub") else p["kind"]
        by_label.setdefault(label, []).append(float(value))
    out: dict[str, float] = {label: _mean(v) for label, v in by_label.items()}
    for kind in MAIN:
        subs = [v for label, v in out.items() if label.startswith(kind + ".")]
        own = out.get(kind)
        parts = subs + ([own] if own is not None else [])
        if parts:
            out[kind] = _mean(parts)
    return out


def aggregate(cases: list[dict[str, float]]) -> dict[str, float]:
    """Mean over cases of each label, over the cases that have it."""
    labels: dict[str, list[float]] = {}
    for scores in cases:
        for label, value in scores.items():
            labels.setdefault(label, []).append(value)
    out = {label: _mean(values) for label, values in labels.items()}
    main = [out[k] for k in MAIN if k in out]
    if main:
        out["average"] = _mean(main)
    return dict(sorted(out.items(), key=_order))


def _order(item):
    label = item[0]
    head = label.split(".")[0]
    rank = {"reliability": 0, "generalization": 1, "locality": 2, "portability": 3, "average": 4}.get(head, 5)
    return (rank, label.count("."), label)


def scope_metrics(probes: Iterable[dict]) -> dict[str, float]:
    """SCR's scope decisions: in-scope probes should be accepted, locality probes rejected."""
    accepted = rejected = n_in = n_out = right_fact = 0
    for p in probes:
        decision = p.get("in_scope")
        if decision is None:
            continue
        if p["kind"] == "locality":
            n_out += 1
            rejected += not decision
        else:
            n_in += 1
            if decision:
                accepted += 1
                right_fact += bool(p.get("own_fact"))
    out: dict[str, float] = {}
    if n_in:
        out["scope.accept_rate"] = accepted / n_in
        out["scope.right_fact"] = right_fact / n_in  # accepted with the case's own fact
    if n_out:
        out["scope.reject_rate"] = rejected / n_out
    if n_in and n_out:
        out["scope_accuracy"] = (out["scope.accept_rate"] + out["scope.reject_rate"]) / 2  # balanced accuracy
        out["scope.accuracy_pooled"] = (accepted + rejected) / (n_in + n_out)
    return out
