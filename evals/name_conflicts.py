"""The scope check's name-conflict rule (scr/scope.py ``names_another``), replayed on train and test splits.

Each split is decided as the evaluator stores it: one knowledge base holding every case's memory fact
(sequential N = all), each probe retrieved and checked by the default scope check, once without the rule and
once with it; no LLM (the answer does not change a scope decision). Counted per probe set: decisions in scope
with the case's own fact, and in scope with another case's fact. For locality probes every in-scope decision
is a change of answer; "another subject" counts those whose fact is about a subject other than the probe's own
case's (another person of the same family name, another "Prince ..."), which no update should touch.
Whether the rule is on by default was decided on the train splits (KnowEdit WikiData_counterfact train,
CounterFact train): it is not (see the committed report); the test splits are reported beside them.

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
from scr.scope import build_scope_checker

SPLITS = [("train", "knowedit/wiki_counterfact_train.json"), ("train", "counterfact/counterfact_train.json"),
          ("test", "knowedit/wiki_counterfact_test.json"), ("test", "knowedit/zsre_test.json")]
COUNTERFACT_CASES = 2000  # CounterFact train: the first 2000 records (10000 facts in one store is not the point)


def decide(kb: KnowledgeBase, embedder: Embedder, questions: list[str], hits, name_conflicts: bool) -> list[str | None]:
    """The id of the fact each question is answered with, or None (out of scope)."""
    settings = Settings(scope_name_conflicts=name_conflicts)
    pipeline = SCRPipeline(kb, None, build_scope_checker(settings, None, embedder))
    pipeline.scope_final_sentence = settings.scope_final_sentence
    decisions = pipeline.decide(questions, hits)[1]
    return [hits[n][d.fact_index].id if d.in_scope else None for n, d in enumerate(decisions)]


def split_rows(split: str, rel: str, root: Path, embedder: Embedder) -> list[list]:
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
    return [[split, data, kind, *c] for kind, c in sorted(counts.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="evals/results/name_conflicts.md")
    args = parser.parse_args()
    set_offline_env()
    start = time.time()
    root = data_dir(args.data_dir)
    embedder = Embedder(DEFAULT_EMBEDDER)
    rows = []
    for split, rel in SPLITS:
        rows += split_rows(split, rel, root, embedder)
        print(f"{rel}: decided ({time.time() - start:.0f} s)", flush=True)
    lines = ["# Scope check: a question that names another entity (name-conflict rule)", "",
             f"Command: `python evals/name_conflicts.py`; embedder `{DEFAULT_EMBEDDER}`, default scope settings; "
             f"{time.time() - start:.0f} s. Knowledge base = every case's memory fact (CounterFact train: the first "
             f"{COUNTERFACT_CASES} cases); no LLM. See the script's docstring.", "",
             "In-scope decisions without the rule / with it: with the case's own fact, with another case's fact, and "
             "of those with a fact about another subject.", "",
             "| split | data | probe set | probes | own (off) | other (off) | other subject (off) | own (on) | "
             "other (on) | other subject (on) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
