"""Where the scope check's last-sentence retry fires (``Settings.scope_final_sentence``), without an LLM.

The default scope check (subject-relation) needs only the embedder, so every scope decision of a run can be
replayed here: the evaluator's knowledge base for each probe set (every case's memory fact), each probe decided
with the retry off and on. A probe the retry changes is one the whole query left out of scope and its last
sentence brought in. For in-scope kinds that is a gain; for locality probes and general-benchmark contexts it is
a fact injected where none belongs (damage, the measure that matters there).

    python evals/final_sentence.py            # -> evals/results/final_sentence.md (about 10 minutes on 2 cores)

Probe sets: KnowEdit ZsRE test and WikiData_counterfact train and test (the evaluator's probes), the contexts of
the retention suite's general benchmarks with the 1000-fact CounterFact stream stored (its N = 1000 stage), and
MQuAKE-hard's multi-hop questions with every case's edits stored. DocTER's gain needs the LLM (its facts are
document sentences) and is measured by ``scr eval-docter`` (evals/results/docter_dev, docter).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from scr.config import Settings
from scr.evaluation import general
from scr.evaluation.data import load_cases, resolve_data
from scr.evaluation.mquake import load_mquake
from scr.kb import FactInput, KnowledgeBase
from scr.kb.embed import Embedder
from scr.models import set_offline_env
from scr.pipeline import SCRPipeline
from scr.scope import build_scope_checker, final_sentence

OUT = Path(__file__).resolve().parent / "results" / "final_sentence.md"
RETENTION = {"stream": 1000, "items": 200, "seed": 1234,
             "benchmarks": ["arc_easy", "hellaswag", "piqa", "winogrande", "knowns"]}  # evals/retention.toml


def decisions(facts: list[dict], questions: list[str], embedder: Embedder) -> tuple[list[bool], list[bool]]:
    """In scope or not, per question, with the retry off and on, over a knowledge base holding ``facts``."""
    with tempfile.TemporaryDirectory() as folder:
        kb = KnowledgeBase(Path(folder) / "kb", embedder=embedder, store="faiss", create=True)
        kb.add([FactInput(**f) for f in facts])
        pipeline = SCRPipeline(kb, None, build_scope_checker(Settings(), None, embedder))
        unique = list(dict.fromkeys(questions))
        hits = kb.search(unique, pipeline.k)
        pipeline.scope_final_sentence = False
        off = dict(zip(unique, (d.in_scope for d in pipeline.decide(unique, hits)[1])))
        pipeline.scope_final_sentence = True
        on = dict(zip(unique, (d.in_scope for d in pipeline.decide(unique, hits)[1])))
        kb.close()
    return [off[q] for q in questions], [on[q] for q in questions]


def knowedit_rows(name: str, rel: str, embedder: Embedder) -> list[list]:
    cases = load_cases(resolve_data(rel, None))
    probes = [(p.kind if p.kind != "locality" else f"locality ({p.sub})", p.prompt) for c in cases for p in c.probes]
    off, on = decisions([c.fact() for c in cases], [q for _, q in probes], embedder)
    rows = []
    for kind in sorted({k for k, _ in probes}):
        idx = [i for i, (k, _) in enumerate(probes) if k == kind]
        rows.append(row(name, kind, [probes[i][1] for i in idx], [off[i] for i in idx], [on[i] for i in idx]))
    return rows


def retention_rows(embedder: Embedder) -> list[list]:
    stream = load_cases(resolve_data("counterfact/counterfact_train.json", None), None, RETENTION["stream"])
    facts = [c.fact() for c in stream]
    rows = []
    for name in RETENTION["benchmarks"]:
        exclude = {c.subject for c in stream if c.subject} if name == "knowns" else frozenset()
        bench = general.load_benchmark(name, None, RETENTION["items"], RETENTION["seed"], exclude_subjects=exclude)
        contexts = list(dict.fromkeys(ctx for item in bench.items for ctx in item.contexts))
        off, on = decisions(facts, contexts, embedder)
        rows.append(row(f"retention N={RETENTION['stream']}", f"{name} contexts (damage)", contexts, off, on))
    return rows


def mquake_rows(embedder: Embedder) -> list[list]:
    cases = load_mquake(resolve_data("multihop/MQuAKE-hard.json", None))
    facts = list({e.fact()["text"]: e.fact() for c in cases for e in c.edits}.values())
    questions = [q for c in cases for q in c.questions]
    off, on = decisions(facts, questions, embedder)
    return [row("MQuAKE-hard", "multi-hop questions", questions, off, on)]


def row(split: str, kind: str, questions: list[str], off: list[bool], on: list[bool]) -> list:
    tried = sum(final_sentence(q) is not None for q in questions)
    gained = sum(b and not a for a, b in zip(off, on))
    return [split, kind, len(questions), tried, sum(off), sum(on), gained]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    set_offline_env()
    started = time.time()
    embedder = Embedder(Settings().embedder)
    rows = []
    for name, rel in (("ZsRE test", "knowedit/zsre_test.json"),
                      ("WikiData_counterfact train", "knowedit/wiki_counterfact_train.json"),
                      ("WikiData_counterfact test", "knowedit/wiki_counterfact_test.json")):
        rows += knowedit_rows(name, rel, embedder)
        print(f"{name}: done ({time.time() - started:.0f} s)", file=sys.stderr)
    rows += retention_rows(embedder)
    print(f"retention contexts: done ({time.time() - started:.0f} s)", file=sys.stderr)
    rows += mquake_rows(embedder)
    seconds = time.time() - started
    changed = Counter()
    for r in rows:  # locality probes and benchmark contexts should stay out of scope; the rest should not
        changed["out of scope" if r[1].startswith("locality") or "contexts" in r[1] else "in scope"] += r[6]
    lines = [
        "# The scope check's last-sentence retry: where it fires",
        "",
        f"Command: `python evals/final_sentence.py`; embedder {Settings().embedder}, the default scope check "
        f"(subject-relation) with its shipped thresholds, no LLM; {seconds:.0f} s on the 2-core CPU machine. "
        "Each probe set is decided over the evaluator's knowledge base for it (every case's memory fact; the "
        "retention stream's first 1000 updates; every MQuAKE-hard edit), once with the retry off, once on.",
        "",
        "*tried*: the query has a last sentence after other text (`scr.scope.final_sentence`); *in scope*: decided "
        "in scope with the retry off / on; *gained*: out of scope without the retry, in scope with it. For "
        "locality probes and benchmark contexts a gain is a fact injected where none belongs.",
        "",
        "| split | probes | n | tried | in scope, off | in scope, on | gained |",
        "|---|---|---:|---:|---:|---:|---:|",
        *[f"| {' | '.join(str(x) for x in r)} |" for r in rows],
        "",
        f"In all: {changed['in scope']} in-scope probes gained, {changed['out of scope']} out-of-scope probes or "
        "contexts brought into scope.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
