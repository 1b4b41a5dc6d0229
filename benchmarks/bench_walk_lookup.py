"""Milliseconds per question of the multi-hop walk's subject lookups as the knowledge base grows.

    python benchmarks/bench_walk_lookup.py                      # 1000, 4000 and 16000 facts
    python benchmarks/bench_walk_lookup.py --facts 1000 50000

``KnowledgeBase.named_in`` (the facts whose subject a question names) scans the active facts' subjects in SQLite
for each question, so its cost grows with the knowledge base; ``KnowledgeBase.about`` (the facts with one exact
subject) does the same comparison on one name. Both are timed here on synthetic facts ("The capital of Entity
123 is Entity 456.") with MiniLM vectors; the question vectors are embedded once, outside the timing, so the
figures are the lookups alone. Ingest (embedding every fact) is not timed.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

from scr.kb import FactInput, KnowledgeBase
from scr.kb.embed import Embedder
from scr.models import DEFAULT_EMBEDDER, set_offline_env

RELATIONS = ("The capital of {} is", "The director of {} is", "{} is a citizen of", "{} was performed by")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--facts", type=int, nargs="*", default=[1000, 4000, 16000])
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args()
    set_offline_env()
    embedder = Embedder(DEFAULT_EMBEDDER)
    rng = random.Random(0)
    first = None
    print(f"{'facts':>7} | {'named_in ms/question':>20} | {'about ms/name':>13} | vs first")
    for n in args.facts:
        with tempfile.TemporaryDirectory() as folder:
            kb = KnowledgeBase(folder, embedder=embedder)
            facts = []
            for i in range(n):
                subject, obj = f"Entity {i}", f"Entity {rng.randrange(n)}"
                prompt = rng.choice(RELATIONS).format(subject)
                facts.append(FactInput(text=f"{prompt} {obj}.", subject=subject, object=obj))
            kb.add(facts)
            asked = [rng.randrange(n) for _ in range(args.questions)]
            questions = [f"What is the capital of the country of citizenship of Entity {i}?" for i in asked]
            vectors = embedder.embed(questions)
            start = time.perf_counter()
            named = kb.named_in(questions, vectors)
            named_ms = 1000 * (time.perf_counter() - start) / len(questions)
            start = time.perf_counter()
            kb.about([f"Entity {i}" for i in asked], vectors)
            about_ms = 1000 * (time.perf_counter() - start) / len(questions)
            assert all(any(h.subject == f"Entity {i}" for h in hits) for i, hits in zip(asked, named))
            kb.close()
        first = first or named_ms
        print(f"{n:>7} | {named_ms:>20.2f} | {about_ms:>13.2f} | {named_ms / first:.1f}x", flush=True)


if __name__ == "__main__":
    main()
