"""Would "shares a relation word" rescue paraphrases the relation cosine rejects? (issue #6, measured, not adopted)

The subject-relation check (scr/scope.py) accepts a same-subject question when it holds EVERY content word of the
fact's relation, or when the relation wordings reach cosine 0.75. ZsRE's rejected paraphrases often share one
word with the fact ("What was the record label from X?" for "What label was responsible for X?"). The candidate
rule: also accept when the question shares at least one relation word with the fact (after stripping common
suffixes: "publisher" / "published") and the relation cosine reaches a lower threshold t. The thresholds of the
check were chosen so that at most 5% of same-subject other-relation prompts pass on TRAIN (WikiData_counterfact
train Relation_Specificity); the rule is adoptable only if it keeps that bound there. Test rows are reported,
never used to choose.

    python evals/shared_word_rule.py [--limit 2000] [--out evals/results/shared_word_rule.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scr.kb.embed import Embedder
from scr.models import DEFAULT_EMBEDDER
from scr.scope import relation_words

from calibrate_relation import KEY_THRESHOLD, _test_pairs, _train_pairs, accepted, features  # noqa: E402

RELATION_T, OTHER_SUBJECT_T = 0.75, 0.67  # the shipped thresholds (evals/results/scope_relation.md)
LOWER = (0.4, 0.5, 0.6, 0.7)
_SUFFIXES = ("ations", "ation", "ings", "ing", "ers", "er", "ed", "ions", "ion", "ors", "or", "es", "s", "e", "y")


def stem(word: str) -> str:
    """A crude stem: the first common suffix removed when four letters stay ("publisher" -> "publish")."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def shares_a_relation_word(question: str, key: str, subject: str) -> bool:
    return bool({stem(w) for w in relation_words(question, subject)} & {stem(w) for w in relation_words(key, subject)})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared/data"))
    ap.add_argument("--limit", type=int, default=2000, help="records per train file")
    ap.add_argument("--out", default="evals/results/shared_word_rule.md")
    args = ap.parse_args()
    start = time.time()
    data = Path(args.data_dir)
    emb = Embedder(DEFAULT_EMBEDDER)
    sets = {**{f"train | {k}": v for k, v in _train_pairs(data, args.limit).items()},
            **{f"test (not used to choose) | {k}": v for k, v in _test_pairs(data).items()}}
    rows = []
    for name, pairs in sets.items():
        f = features(emb, pairs)
        shared = np.array([shares_a_relation_word(*p) for p in pairs])
        shipped = accepted(f, RELATION_T, OTHER_SUBJECT_T)
        cells = [f"{shipped.mean():.3f}"]
        for t in LOWER:
            extra = (f["key"] >= KEY_THRESHOLD) & f["names"] & shared & (f["relation"] >= t)
            cells.append(f"{(shipped | extra).mean():.3f}")
        rows.append(f"| {name} | {len(pairs)} | {shared.mean():.3f} | " + " | ".join(cells) + " |")
    lines = ["# A shared relation word as a second route into scope (issue #6, measured, not adopted)", "",
             f"Command: `python evals/shared_word_rule.py --limit {args.limit}`; embedder `{DEFAULT_EMBEDDER}`; "
             f"{time.time() - start:.0f} s. Pairs = (probe, its own case's fact key), as in "
             "`evals/calibrate_relation.py`; no retrieval, no LLM. See the script's docstring for the rule.", "",
             "Share of pairs accepted: the shipped check, then the check plus the rule at lower cosine t:", "",
             "| split and probe set | pairs | shares a relation word | shipped check | "
             + " | ".join(f"+ rule, t = {t}" for t in LOWER) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(LOWER), *rows, "",
             "Verdict: on train the rule lets 7.3-7.6% of same-subject other-relation prompts through at every t up "
             "to 0.6 (2.0% without it), above the 5% bound the check's thresholds were chosen by, for +1 to +4 "
             "points of CounterFact rephrases. At t = 0.7 it stays within the bound (3.8%) but trades +0.3 points "
             "of rephrases for +1.8 points of other-relation prompts: a loss in balanced accuracy on train. So it is "
             "not adopted, although the test splits would have liked it (ZsRE rephrase +4 to +13 points)."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
