"""Seconds per generated answer: the backend's greedy loop (shared prompt prefixes, finished rows leave the batch)
against the same loop without group prefixes and against transformers' generate() on the same batches, for the
evaluator's prompt shapes.

    python benchmarks/bench_generation.py [--n 128] [--batch-size 64] [--dtype float32]

Prompts: the first N edit prompts of KnowEdit WikiData_counterfact test (../shared/data), asked plainly in the chat
template (how the unmodified model is asked), with the fact in the paper's answer prompt (SCR in scope), and raw;
and N questions of the first cases (edit prompt, rephrase, portability) each with its case's fact, as SCR asks
a case's in-scope questions (several questions per fact: the group prefixes' shape).
Prints seconds per answer for each decoder, the speed-ups, and how many of the loop's answers are identical to
the other two decoders'.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from scr import prompts
from scr.evaluation.data import load_cases, resolve_data
from scr.llm.base import as_chat
from scr.llm.hf import TransformersBackend
from scr.models import set_offline_env
from scr.pipeline import base_prompt


def reference_generate(backend: TransformersBackend, batch_prompts, max_new_tokens: int) -> list[str]:
    encoded = [backend._encode(p) for p in batch_prompts]
    out = [""] * len(encoded)
    for batch in backend._batches(len(encoded), [len(e) for e in encoded]):
        ids, mask = backend._pad_left([encoded[i] for i in batch])
        with torch.no_grad():
            generated = backend.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                               do_sample=False, pad_token_id=backend.tokenizer.pad_token_id)
        for row, i in enumerate(batch):
            out[i] = backend.tokenizer.decode(generated[row, ids.shape[1]:], skip_special_tokens=True).strip()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()
    set_offline_env()
    path = resolve_data("knowedit/wiki_counterfact_test.json")
    records = json.loads(Path(path).read_text())[: args.n]
    questions = [r["prompt"] for r in records]
    facts = [f"{r['prompt']} {r['target_new']}." for r in records]
    same_fact = []
    for case in load_cases(path, "knowedit"):
        fact = f"{case.prompt} {case.target_new}."
        same_fact += [as_chat(prompts.paper_answer(fact, p.prompt)) for p in case.probes if p.kind != "locality"]
        if len(same_fact) >= args.n:
            break
    backend = TransformersBackend.load("smollm2-135m-instruct", dtype=args.dtype, batch_size=args.batch_size)
    backend.generate(questions[:4], 4)  # warm-up
    shapes = {"chat question": [base_prompt(q) for q in questions],
              "chat fact + question": [as_chat(prompts.paper_answer(f, q)) for f, q in zip(facts, questions)],
              "raw prompt": questions,
              "same fact, 3+ questions": same_fact[: args.n]}
    print(f"SmolLM2-135M-Instruct, {args.dtype}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.n} prompts, {args.max_new_tokens} new tokens")
    print(f"{'prompt shape':<24} {'loop s/answer':>14} {'no groups':>10} {'generate()':>11} "
          f"{'x no groups':>12} {'x generate()':>13} {'= no groups':>12} {'= generate()':>13}")
    for name, batch_prompts in shapes.items():
        timings, answers = [], []
        for decoder in ("loop", "loop without groups", "generate()"):
            backend.group_prefixes = decoder == "loop"
            t0 = time.perf_counter()
            if decoder == "generate()":
                answers.append(reference_generate(backend, batch_prompts, args.max_new_tokens))
            else:
                answers.append(backend.generate(batch_prompts, args.max_new_tokens))
            timings.append((time.perf_counter() - t0) / len(batch_prompts))
        backend.group_prefixes = True
        # identical answers: the loop against the loop without groups, and against generate()
        same = [f"{sum(x == y for x, y in zip(answers[0], other))}/{len(batch_prompts)}" for other in answers[1:]]
        print(f"{name:<24} {timings[0]:>14.3f} {timings[1]:>10.3f} {timings[2]:>11.3f} "
              f"{timings[1] / timings[0]:>11.2f}x {timings[2] / timings[0]:>12.2f}x {same[0]:>12} {same[1]:>13}")


if __name__ == "__main__":
    main()
