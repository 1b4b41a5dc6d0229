"""The scope check's name rules (scr/scope.py ``conflicting_name``, ``other_name_threshold``), replayed on train and
test splits.

Each split is decided as the evaluator stores it: one knowledge base holding every case's memory fact (sequential
N = all), each probe retrieved and checked by the default scope check, once without the name rules and once with
them as shipped; no LLM (the answer does not change a scope decision). Counted per probe set: decisions in scope
with the case's own fact, and in scope with another case's fact. For locality probes every in-scope decision is a
change of answer; "another subject" counts those whose fact is about a subject other than the probe's own case's
(another person of the same family name, another "Prince ..."), which no update should touch. Two thresholds,
chosen one after the other on KnowEdit WikiData_counterfact train by balanced accuracy (own-fact acceptance over
its in-scope probes, rejection over its locality probes): first the name threshold (cosine between a question's
name that shares a word with the fact's subject and that subject, below which the name is another entity), without
the second rule; then, that threshold in place, the other-name threshold (where the question does not name the
fact's subject, one of its names must reach this cosine to the subject). The test splits are reported beside the
train splits, not used to choose.

    python evals/name_conflicts.py [--data-dir ../shared/data] [--out evals/results/name_conflicts.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from scr.config import Settings
from scr.evaluation.data import data_dir, load_cases
from scr.kb import FactInput, KnowledgeBase
from scr.kb.embed import Embedder
from scr.models import DEFAULT_EMBEDDER, set_offline_env
from scr.pipeline import SCRPipeline
from scr.scope import NAME_THRESHOLD, OTHER_NAME_THRESHOLD, build_scope_checker

SPLITS = [("train", "knowedit/wiki_counterfact_train.json"), ("train", "counterfact/counterfact_train.json"),
          ("test", "knowedit/wiki_counterfact_test.json"), ("test", "knowedit/zsre_test.json")]
CHOOSE_ON = "knowedit/wiki_counterfact_train.json"
# (rule, name threshold, other-name threshold); None: that rule off. The first sweep's 1.01 is the word rule alone.
SHIPPED = (NAME_THRESHOLD, OTHER_NAME_THRESHOLD)
SWEEP = ([("name", t, None) for t in (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 1.01)]
         + [("other-name", NAME_THRESHOLD, t) for t in (0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8)])
COUNTERFACT_CASES = 2000  # CounterFact train: the first 2000 records (10000 facts in one store is not the point)


def decide(kb: KnowledgeBase, embedder: Embedder, questions: list[str], hits, name_conflicts: bool,
           name_threshold: float = NAME_THRESHOLD,
           other_name_threshold: float | None = OTHER_NAME_THRESHOLD) -> list[str | None]:
    """The id of the fact each question is answered with, or None (out of scope)."""
    settings = Settings(scope_name_conflicts=name_conflicts)
    checker = build_scope_checker(settings, None, embedder)
    checker.name_threshold = name_threshold
    checker.other_name_threshold = other_name_threshold
    pipeline = SCRPipeline(kb, None, checker)
    pipeline.scope_final_sentence = settings.scope_final_sentence
    decisions = pipeline.decide(questions, hits)[1]
    return [hits[n][d.fact_index].id if d.in_scope else None for n, d in enumerate(decisions)]


def balanced_accuracy(probes, chosen: dict[str, str | None]) -> tuple[float, float, float]:
    """(own-fact acceptance of in-scope probes, rejection of locality probes, their mean)."""
    inside = [chosen[p.prompt] == f"c{c.index}" for c, p in probes if p.in_scope]
    outside = [chosen[p.prompt] is None for c, p in probes if not p.in_scope]
    a, b = sum(inside) / len(inside), sum(outside) / len(outside)
    return a, b, (a + b) / 2


def split_rows(split: str, rel: str, root: Path, embedder: Embedder,
               sweep: list[tuple] = ()) -> tuple[list[list], list[list]]:
    """The table's rows for one split and, for each threshold of ``sweep`` (after "off"), its balanced accuracy."""
    cases = load_cases(root / rel)
    if "counterfact_train" in rel:
        cases = cases[:COUNTERFACT_CASES]
    subjects = {f"c{c.index}": (c.subject or "").strip().lower() for c in cases}
    probes = [(c, p) for c in cases for p in c.probes]
    questions = list(dict.fromkeys(p.prompt for _, p in probes))
    with tempfile.TemporaryDirectory() as folder:
        kb = KnowledgeBase(Path(folder) / "kb", embedder=embedder, store="faiss", create=True)
        kb.add([FactInput(id=f"c{c.index}", **c.fact()) for c in cases])
        hits = kb.search(questions, Settings().k)
        off = dict(zip(questions, decide(kb, embedder, questions, hits, False)))
        on = dict(zip(questions, decide(kb, embedder, questions, hits, True)))
        sweep_rows = [["off", "-", "-", *balanced_accuracy(probes, off)]] if sweep else []
        for rule, name_threshold, other_threshold in sweep:  # the shipped thresholds' decisions are ``on``
            chosen = on if (name_threshold, other_threshold) == SHIPPED else dict(
                zip(questions, decide(kb, embedder, questions, hits, True, name_threshold, other_threshold)))
            sweep_rows.append([rule, name_threshold, "off" if other_threshold is None else other_threshold,
                               *balanced_accuracy(probes, chosen)])
        kb.close()
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * 7)
    for case, probe in probes:
        row = counts[probe.kind + (f" ({probe.sub})" if probe.sub else "")]
        row[0] += 1
        for col, fact in ((1, off[probe.prompt]), (4, on[probe.prompt])):
            if fact is None:
                continue
            own = fact == f"c{case.index}"
            row[col] += own
            row[col + 1] += not own
            row[col + 2] += not own and subjects[fact] != (case.subject or "").strip().lower()
    data = rel.split("/")[-1].removesuffix(".json")
    return [[split, data, kind, *c] for kind, c in sorted(counts.items())], sweep_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="evals/results/name_conflicts.md")
    args = parser.parse_args()
    set_offline_env()
    start = time.time()
    root = data_dir(args.data_dir)
    embedder = Embedder(DEFAULT_EMBEDDER)
    rows, sweep_rows = [], []
    for split, rel in SPLITS:
        split_table, split_sweep = split_rows(split, rel, root, embedder, SWEEP if rel == CHOOSE_ON else ())
        rows += split_table
        sweep_rows += split_sweep
        print(f"{rel}: decided ({time.time() - start:.0f} s)", flush=True)
    lines = ["# Scope check: a question that names another entity (name rules)", "",
             f"Command: `python evals/name_conflicts.py`; embedder `{DEFAULT_EMBEDDER}`, default scope settings; "
             f"{time.time() - start:.0f} s. Knowledge base = every case's memory fact (CounterFact train: the first "
             f"{COUNTERFACT_CASES} cases); no LLM. See the script's docstring.", "",
             f"In-scope decisions without the name rules / with them as shipped (name threshold {NAME_THRESHOLD}, "
             f"other-name threshold {OTHER_NAME_THRESHOLD}): with the case's own fact, with another case's fact, and "
             "of those with a fact about another subject.", "",
             "| split | data | probe set | probes | own (off) | other (off) | other subject (off) | own (on) | "
             "other (on) | other subject (on) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    best = {rule: max((r for r in sweep_rows if r[0] == rule), key=lambda r: r[5]) for rule in ("name", "other-name")}
    lines += ["", f"Thresholds on {CHOOSE_ON}, first the name rule alone (1.01: the word rule alone, every "
              "conflicting name is another entity), then the other-name rule beside the shipped name threshold. "
              f"Best: name **{best['name'][1]}**, other-name **{best['other-name'][2]}** (shipped: {NAME_THRESHOLD}, "
              f"{OTHER_NAME_THRESHOLD}).", "",
              "| rule swept | name threshold | other-name threshold | own-fact acceptance (in-scope probes) | "
              "locality rejection | balanced accuracy |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.4f} | {r[4]:.4f} | {r[5]:.4f} |" for r in sweep_rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
