"""Latency per query of each scope mode against the plain answer (the unmodified model asked directly).

    python benchmarks/bench_scope_latency.py [--cases 839] [--questions 40] [--modes subject-relation,relation-encoder,similarity,encoder,paper]

A mode may name an answer style after a "+" (``subject-relation+paper``, ``subject-relation+object-first``);
without one it runs with the default style (object-first since 2026-11-24). ``+no-inverse`` turns inverse
questions off (``default+no-inverse``; on by default since 2026-12-06).

A knowledge base holds the facts of the first --cases cases of KnowEdit WikiData_counterfact test (the
evaluator's sequential N = all); the questions are an even mix of those cases' edit prompts (in scope) and
locality prompts (out of scope). Each question is asked alone (batch of one, as an interactive user would), through
``Engine.ask`` for each scope mode and through ``Engine.base_answers`` for the plain answer. Prints the median
seconds per query, its ratio to the plain answer's, and the median of each pipeline stage.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from scr.config import Settings
from scr.engine import Engine
from scr.evaluation.data import load_cases, resolve_data
from scr.models import set_offline_env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=839)
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--modes", default="subject-relation,relation-encoder,similarity,encoder,paper")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    args = ap.parse_args()
    set_offline_env()
    cases = load_cases(resolve_data("knowedit/wiki_counterfact_test.json"), limit=args.cases)
    in_scope = [c.prompt for c in cases]
    locality = [p.prompt for c in cases for p in c.probes if p.kind == "locality"]
    step_in, step_out = max(1, len(in_scope) // (args.questions // 2)), max(1, len(locality) // (args.questions // 2))
    questions = in_scope[::step_in][: args.questions // 2] + locality[::step_out][: args.questions // 2]

    with tempfile.TemporaryDirectory() as tmp:
        base = Engine(Settings(kb_dir=Path(tmp) / "kb", max_new_tokens=args.max_new_tokens))
        base.add_facts([c.fact() for c in cases])
        base.base_answers(questions[:2])  # warm-up: model loading is not part of a query
        plain = []
        for q in questions:
            t = time.perf_counter()
            base.base_answers([q])
            plain.append(time.perf_counter() - t)
        plain_median = statistics.median(plain)
        print(f"{len(questions)} questions ({len(questions) // 2} in scope), KB of {len(cases)} facts, "
              f"{torch.get_num_threads()} threads, max_new_tokens {args.max_new_tokens}")
        print(f"{'configuration':<30} {'median s':>9} {'x plain':>8}  stages (median s)")
        print(f"{'plain answer':<30} {plain_median:>9.3f} {1.0:>8.2f}")
        for label in args.modes.split(","):
            mode, *options = label.split("+")
            update = {"scope_mode": mode}
            for option in options:
                update.update({"scope_inverse": False} if option == "no-inverse" else {"answer_style": option})
            engine = Engine(base.settings.model_copy(update=update), backend=base.backend, embedder=base.embedder)
            engine.ask(questions[0])  # warm-up (loads the scope encoder in the encoder mode)
            totals, stages = [], {}
            for q in questions:
                t = time.perf_counter()
                answer = engine.ask(q)
                totals.append(time.perf_counter() - t)
                for k, v in answer.timings.items():
                    stages.setdefault(k, []).append(v)
            median = statistics.median(totals)
            detail = ", ".join(f"{k[:-2]} {statistics.median(v):.3f}" for k, v in stages.items() if k != "total_s")
            print(f"{label:<30} {median:>9.3f} {median / plain_median:>8.2f}  {detail}")
            engine.kb().close()
        base.close()


if __name__ == "__main__":
    main()
