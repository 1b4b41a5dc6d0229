"""How many contradicting updates does ingestion report (scr/conflicts.py)? Measured on KnowEdit test splits.

Each split's edits are ingested as the evaluator stores them (one fact per case: its prompt and new object, with
the subject, no relation), in file order and in one batch, with conflict detection on. A pair of cases is a true
conflict when they update the same fact (same subject and original answer) to different objects, the
evaluator's ``conflicting_updates``; any other reported pair is a false alarm. Nothing here is tuned: the
detection uses the scope check's own thresholds.

    python evals/conflict_detection.py [--data-dir ../shared/data] [--out evals/results/conflict_detection.md]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

from scr.config import Settings
from scr.engine import Engine
from scr.evaluation.data import load_cases
from scr.evaluation.metrics import normalize

SPLITS = [("ZsRE test", "knowedit/zsre_test.json"), ("WikiData_counterfact test", "knowedit/wiki_counterfact_test.json")]


def true_pairs(cases) -> set[frozenset[str]]:
    """Pairs of cases that update the same fact (subject, original answer) to different objects."""
    by_fact: dict[tuple[str, str], list] = {}
    for case in cases:
        if case.subject and case.target_true:
            by_fact.setdefault((case.subject.lower(), normalize(case.target_true)), []).append(case)
    return {frozenset((a.case_id, b.case_id)) for group in by_fact.values() for a, b in itertools.combinations(group, 2)
            if normalize(a.target_new) != normalize(b.target_new)}


def measure(data: Path) -> dict:
    cases = load_cases(data)
    start = time.time()
    with tempfile.TemporaryDirectory() as kb_dir:
        engine = Engine(Settings(kb_dir=Path(kb_dir) / "kb"))
        facts = [{**c.fact(), "id": f"case-{c.case_id}"} for c in cases]
        report = engine.add_facts(facts)
        engine.close()
    found = {frozenset(p.removeprefix("case-") for p in pair) for pair in report.conflicts}
    truth = true_pairs(cases)
    conflicted = {c for pair in truth for c in pair}
    flagged = {c for pair in found for c in pair}
    return {"cases": len(cases), "true_pairs": len(truth), "reported": len(found), "right": len(found & truth),
            "cases_conflicted": len(conflicted), "cases_flagged": len(flagged & conflicted),
            "seconds": time.time() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared/data"))
    ap.add_argument("--out", default="evals/results/conflict_detection.md")
    args = ap.parse_args()
    lines = ["# Contradicting updates reported at ingestion", "",
             "Command: `python evals/conflict_detection.py`; embedder all-minilm-l6-v2, default scope thresholds "
             "(key 0.59, relation 0.75), k = 5. Each split's edits ingested in one batch as the evaluator stores "
             "them; true conflict = two cases updating the same fact (subject, original answer) to different "
             "objects.", "",
             "| split | cases | true conflicting pairs | pairs reported | of which true | precision | recall (pairs) "
             "| conflicted cases with at least one report | ingest + check s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for title, rel in SPLITS:
        m = measure(Path(args.data_dir) / rel)
        precision = m["right"] / m["reported"] if m["reported"] else float("nan")
        recall = m["right"] / m["true_pairs"] if m["true_pairs"] else float("nan")
        lines.append(f"| {title} | {m['cases']} | {m['true_pairs']} | {m['reported']} | {m['right']} | "
                     f"{100 * precision:.1f} | {100 * recall:.1f} | {m['cases_flagged']} of {m['cases_conflicted']} | "
                     f"{m['seconds']:.0f} |")
    lines += ["", "Reading the table (inspected on the run of 2026-11-24): ZsRE's missed pairs are paraphrased questions "
              "whose relation wordings sit below the relation threshold (\"Who found Thulium?\" beside \"The "
              "inventor of Thulium was whom?\"), the same limit as the scope check's generalization. Of "
              "WikiData_counterfact's 6 other reports, 5 pair two updates of a relation with several values, asked "
              "with the very same prompt (\"The names of the cast members of list of James Bond films are\": "
              "Daniel Craig -> X, Sean Connery -> Y; \"Soviet Union follows\" twice), which no question can tell "
              "apart either; 1 pairs the director and the screenwriter of Breaking Bad."]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
