"""Where should a walk over stored links stop? (issue #7: the tolerance of ``scr.multihop.walk_on``)

SCR's multi-hop mode walks the knowledge base's own links (scr/multihop.py, step 0): from a fact whose subject
the question names, on through facts about each link's object. A link past the first is walked only if the
chain with it stays about as like the question as without it (cosine, within a tolerance). Too strict and a
4-hop question stops halfway, where the 135M model must write the rest of the sub-questions; too loose and a
question that asks one link walks on past it, and the answer reads a fact nobody asked for.

Measured on MQuAKE-hard with every case's edits in one knowledge base (769 facts), with the walk alone (no LLM
call: ``MultiHopReasoner.walk``):
- multi-hop questions (3 per case): the walk takes exactly the case's 4 edits, in order;
- single-hop questions (new_single_hops, 4 per case, each asking one edit): the walk takes exactly that edit;
  "walks past" counts the walks that go on beyond it.
Chosen on cases 0-214 (the largest share of exact 4-hop walks whose single-hop walks go past their link at most
1% of the time); cases 215-428 are reported beside, not used to choose.

    python evals/multihop_walk.py [--out evals/results/multihop_walk.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from scr.config import Settings
from scr.engine import Engine
from scr.evaluation.data import resolve_data
from scr.evaluation.mquake import load_mquake
from scr.multihop import WALK_TOLERANCE, MultiHopReasoner

TOLERANCES = (0.0, 0.01, 0.02, 0.03, 0.05, 1.0)  # 1.0: no stop rule (walk while a stored link goes on)
DEV_CASES = 215
MAX_PAST = 0.01  # the most single-hop walks that may go past their link on the dev cases


def measure(reasoner: MultiHopReasoner, cases, tolerance: float) -> dict:
    reasoner.walk_tolerance = tolerance
    multi = [(c, q) for c in cases for q in c.questions]
    single = [(c, n, hop.question) for c in cases for n, hop in enumerate(c.single_hops)]
    walks = reasoner.walk([q for _, q in multi])
    exact = sum([f.text for f in w] == c.facts() for (c, _), w in zip(multi, walks))
    cases_exact = len({c.case_id for (c, _), w in zip(multi, walks) if [f.text for f in w] == c.facts()})
    walks = reasoner.walk([q for _, _, q in single])
    one = sum([f.text for f in w] == [c.facts()[n]] for (c, n, _), w in zip(single, walks))
    past = sum(len(w) > 1 for w in walks)
    return {"questions": len(multi), "exact": exact / len(multi), "cases_exact": cases_exact / len(cases),
            "single": len(single), "single_exact": one / len(single), "single_past": past / len(single)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="multihop/MQuAKE-hard.json")
    parser.add_argument("--out", default="evals/results/multihop_walk.md")
    args = parser.parse_args()
    started = time.time()
    cases = load_mquake(resolve_data(args.data, None))
    with tempfile.TemporaryDirectory() as kb_dir:
        engine = Engine(Settings(kb_dir=kb_dir))
        engine.add_facts([e.fact() for c in cases for e in c.edits], find_conflicts=False)
        reasoner = MultiHopReasoner(engine.pipeline, max_hops=4)
        rows = []
        for tolerance in TOLERANCES:
            dev, test = measure(reasoner, cases[:DEV_CASES], tolerance), measure(reasoner, cases[DEV_CASES:], tolerance)
            rows.append((tolerance, dev, test))
            print(f"tolerance {tolerance}: dev exact {dev['exact']:.3f} past {dev['single_past']:.3f}; "
                  f"test exact {test['exact']:.3f} past {test['single_past']:.3f}", flush=True)
        engine.close()
    allowed = [(t, dev) for t, dev, _ in rows if dev["single_past"] <= MAX_PAST]
    choice = max(allowed, key=lambda pair: pair[1]["exact"])[0]
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    lines = ["# Where a walk over stored links stops (MQuAKE-hard)", "",
             f"Command: `python evals/multihop_walk.py`; data {args.data} ({len(cases)} cases, every case's edits in "
             f"one knowledge base), embedder {engine.settings.embedder}, walk alone (no LLM call), at most 4 links; "
             f"{time.time() - started:.0f} s on 2 CPU cores.", "",
             "Tolerance: how much a link past the first may lower the chain's cosine to the question and still be "
             "walked (1.0: no stop rule). Exact 4-hop: the walk takes the case's 4 edits in order (per question; "
             "per case: for at least one of its 3 paraphrases). Single-hop exact: a question asking one edit walks "
             "that edit alone; walks past: it goes on beyond it.", "",
             f"| tolerance | dev: exact 4-hop | dev: cases | dev: single-hop exact | dev: walks past | "
             f"test: exact 4-hop | test: cases | test: single-hop exact | test: walks past |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for tolerance, dev, test in rows:
        mark = " (chosen)" if tolerance == choice else ""
        lines.append(f"| {tolerance}{mark} | " + " | ".join(
            pct(m[k]) for m in (dev, test) for k in ("exact", "cases_exact", "single_exact", "single_past")) + " |")
    lines += ["", f"Dev: cases 0-{DEV_CASES - 1}, test: cases {DEV_CASES}-{len(cases) - 1}. Chosen on dev: the most "
                  f"exact 4-hop walks with at most {pct(MAX_PAST)}% of single-hop walks going past their link. "
                  f"Shipped: `WALK_TOLERANCE = {WALK_TOLERANCE}` (scr/multihop.py)."
                  + ("" if choice == WALK_TOLERANCE else f" This run would choose {choice}: the shipped value "
                                                             f"is not this run's choice."), "",
              "Single-hop exact stays near 81% whatever the tolerance: a walk of one link must pass the single-hop "
              "scope check (subject-relation), which rejects about a fifth of MQuAKE-hard's single-hop questions "
              "against their own facts (README, \"How SCR decides scope\"); those questions then go to the LLM's "
              "sub-questions. A walk past the first link needs no such check when the question uses a word of the "
              "link's relation; the tolerance applies to the other links.", ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
