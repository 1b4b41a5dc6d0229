"""Does reading several facts (``Settings.context_facts``) help one-fact updates? KnowEdit train, no test split.

Three sentences in context helped DocTER, where a document's sentences each hold part of an answer
(evals/results/docter_dev). Before making it the default, this checks the one-fact updates of KnowEdit
WikiData_counterfact TRAIN: every case's memory fact in one knowledge base (the evaluator's N = all setting), the
default scope check, and every reliability and portability probe that would read more than one fact with
``context_facts = 3`` answered both ways (SmolLM2-135M-Instruct, greedy, 24 tokens, `contains` as the evaluator
scores it). Other probes read the same single fact either way, so their answers cannot change.

    python evals/context_facts_knowedit.py     # -> evals/results/context_facts_knowedit.md (~5 minutes, 2 cores)
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path

from scr.config import Settings
from scr.evaluation.data import load_cases, resolve_data
from scr.evaluation.metrics import contains
from scr.kb import FactInput, KnowledgeBase
from scr.kb.embed import Embedder
from scr.llm.hf import TransformersBackend
from scr.models import set_offline_env
from scr.pipeline import SCRPipeline
from scr.scope import build_scope_checker

DATA = "knowedit/wiki_counterfact_train.json"
OUT = Path(__file__).resolve().parent / "results" / "context_facts_knowedit.md"


def main() -> None:
    set_offline_env()
    started = time.time()
    settings = Settings()
    embedder, llm = Embedder(settings.embedder), TransformersBackend.load(settings.llm)
    cases = load_cases(resolve_data(DATA, None))
    probes = [p for c in cases for p in c.probes if p.kind in ("reliability", "portability")]
    with tempfile.TemporaryDirectory() as folder:
        kb = KnowledgeBase(Path(folder) / "kb", embedder=embedder, store="faiss", create=True)
        kb.add([FactInput(**c.fact()) for c in cases])
        scope = build_scope_checker(settings, None, embedder)
        three = SCRPipeline(kb, llm, scope, context_facts=3, max_new_tokens=24)
        one = SCRPipeline(kb, llm, scope, context_facts=1, max_new_tokens=24)
        questions = list(dict.fromkeys(p.prompt for p in probes))
        hits, decisions = three.decide(questions)
        several = [q for q, h, d in zip(questions, hits, decisions) if d.in_scope and len(three.context(h, d)) > 1]
        answers = {n: {a.question: a.answer for a in pipeline.ask_batch(several)}
                   for n, pipeline in ((1, one), (3, three))}
        kb.close()
    tally = defaultdict(lambda: [0, 0, 0])
    for p in probes:
        if p.prompt in answers[3]:
            row = tally[p.kind if p.kind != "portability" else f"portability ({p.sub})"]
            row[0] += 1
            row[1] += contains(answers[1][p.prompt], p.aliases)
            row[2] += contains(answers[3][p.prompt], p.aliases)
    lines = ["# Several facts in context on one-fact updates (KnowEdit WikiData_counterfact train)", "",
             f"Command: `python evals/context_facts_knowedit.py`; {settings.llm} + {settings.embedder}, the default "
             f"scope check, {len(cases)} cases in one knowledge base; {time.time() - started:.0f} s on the 2-core "
             "CPU machine beside one other job. Probes: the reliability and portability probes that read more "
             f"than one fact with `context_facts = 3` ({len(several)} distinct questions of {len(questions)}); the "
             "others read the same one fact either way.", "",
             "| probes | n | right with 1 fact | right with 3 facts |", "|---|---:|---:|---:|",
             *[f"| {k} | {n} | {a} | {b} |" for k, (n, a, b) in sorted(tally.items())], "",
             "Not the default: on these one-fact updates the extra facts lose more answers than they win. "
             "DocTER's documents, whose sentences each hold part of an answer, are the case it is for "
             "(`scr-context3`)."]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
