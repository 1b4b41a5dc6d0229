"""How often does the inverse-question rule (scr/inverse.py) fire, on which probes? (issue #6)

Each split's cases become the facts SCR stores for them (``Case.fact``: edit prompt + new target, subject, object),
all in one set as in a sequential run of N = all. Every probe of every case then meets every fact whose object it
names as whole words (what the pipeline looks up, ``KnowledgeBase.objects_named_in``), and the pipeline's check
decides (``InverseScope``: the rule, less questions that name the fact's subject). Per probe set: the share of probes that some fact answers inversely, and the share answered by their own case's fact.
Logical_Generalization probes ask a case's fact backwards (in scope); locality probes must stay out of scope. The
relation table was written from the TRAIN rows; test rows are reported, never used to choose. No model runs.

    python evals/inverse_questions.py [--data-dir ../shared/data] [--out evals/results/inverse_questions.md]
"""

from __future__ import annotations

import argparse
import collections
import re
import time
from pathlib import Path

from scr.evaluation.data import data_dir, load_cases
from scr.inverse import InverseScope
from scr.names import names_whole
from scr.kb.records import FactHit, fact_key

SPLITS = (("train", "knowedit/wiki_counterfact_train.json"), ("train", "counterfact/counterfact_train.json"),
          ("test (not used to choose)", "knowedit/wiki_counterfact_test.json"),
          ("test (not used to choose)", "knowedit/zsre_test.json"))


def split_rows(path: Path) -> tuple[list[tuple[str, int, int, int]], list[tuple[str, str, str]]]:
    """(probe set, probes, answered inversely by some fact, by its own case's fact) and a few accepted examples."""
    cases = load_cases(path)
    hits = []
    for case in cases:
        fact = case.fact()
        hits.append(FactHit(id=case.case_id, text=fact["text"], score=0.0, key_score=0.0, subject=fact["subject"],
                            object=fact["object"], key=fact_key(fact["text"], fact["subject"], None, fact["object"])))
    by_word = collections.defaultdict(list)  # a cheap index: facts by the first word of their object
    for hit in hits:
        if words := re.findall(r"\w+", (hit.object or "").lower()):
            by_word[words[0]].append(hit)
    counts = collections.defaultdict(lambda: [0, 0, 0])
    scope = InverseScope()  # what the pipeline runs on the facts whose object a question names
    examples = []
    for case in cases:
        for probe in case.probes:
            row = counts[probe.label]
            row[0] += 1
            words = set(re.findall(r"\w+", probe.prompt.lower()))
            named = [h for h in {id(h): h for w in words for h in by_word.get(w, [])}.values()
                     if names_whole(probe.prompt, h.object)]
            decision = scope.decide([probe.prompt], [named])[0]
            if decision.in_scope:
                chosen = named[decision.fact_index]
                row[1] += 1
                row[2] += chosen.id == case.case_id
                if len(examples) < 400:
                    examples.append((probe.label, probe.prompt, chosen.text))
    return [(label, *c) for label, c in sorted(counts.items())], examples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="evals/results/inverse_questions.md")
    args = ap.parse_args()
    start = time.time()
    root = data_dir(args.data_dir)
    lines = ["# Inverse questions: where the rule fires (issue #6)", "",
             "Command: `python evals/inverse_questions.py`; no model. Facts: every case of the split at once (N = all); "
             "each probe meets every fact whose object it names and the pipeline's inverse check decides (see the script's docstring). %: share of the "
             "probe set's probes.", "",
             "| split | file | probe set | probes | answered inversely | by its own case's fact |",
             "|---|---|---|---:|---:|---:|"]
    shown = []
    for split, rel in SPLITS:
        rows, examples = split_rows(root / rel)
        for label, n, any_fact, own in rows:
            lines.append(f"| {split} | {Path(rel).stem} | {label} | {n} | {100 * any_fact / n:.1f} | "
                         f"{100 * own / n:.1f} |")
        shown += [(Path(rel).stem, *e) for e in examples if not e[0].startswith("portability.Logical")][:8]
        shown += [(Path(rel).stem, *e) for e in examples if e[0].startswith("portability.Logical")][:3]
    lines += ["", "Examples (accepted probe -> the fact that answers it), out-of-scope sets first:", ""]
    lines += [f"- {f} {label}: \"{prompt}\" -> \"{fact}\"" for f, label, prompt, fact in shown]
    lines += ["", f"Wall time {time.time() - start:.0f} s."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
