"""Seconds per generated answer: the backend's greedy loop (shared prompt prefix, finished rows leave the batch)
against transformers' generate() on the same batches, for the evaluator's three prompt shapes.

    python benchmarks/bench_generation.py [--n 128] [--batch-size 64] [--dtype float32]

Prompts: the first N edit prompts of KnowEdit WikiData_counterfact test (../shared/data), asked plainly in the chat
template (how the unmodified model is asked), with the fact in the paper's answer prompt (SCR in scope), and raw.
Prints seconds per answer for both decoders, their ratio, and how many answers are identical.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from scr import prompts
from scr.evaluation.data import resolve_data
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
    records = json.loads(Path(resolve_data("knowedit/wiki_counterfact_test.json")).read_text())[: args.n]
    questions = [r["prompt"] for r in records]
    facts = [f"{r['prompt']} {r['target_new']}." for r in records]
    backend = TransformersBackend.load("smollm2-135m-instruct", dtype=args.dtype, batch_size=args.batch_size)
    backend.generate(questions[:4], 4)  # warm-up
    shapes = {"chat question": [base_prompt(q) for q in questions],
              "chat fact + question": [as_chat(prompts.paper_answer(f, q)) for f, q in zip(facts, questions)],
              "raw prompt": questions}
    print(f"SmolLM2-135M-Instruct, {args.dtype}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.n} prompts, {args.max_new_tokens} new tokens")
    print(f"{'prompt shape':<22} {'loop s/answer':>14} {'generate() s/answer':>20} {'speed-up':>9} {'identical':>10}")
    for name, batch_prompts in shapes.items():
        t0 = time.perf_counter()
        ours = backend.generate(batch_prompts, args.max_new_tokens)
        t1 = time.perf_counter()
        ref = reference_generate(backend, batch_prompts, args.max_new_tokens)
        t2 = time.perf_counter()
        a, b = (t1 - t0) / args.n, (t2 - t1) / args.n
        same = sum(x == y for x, y in zip(ours, ref))
        print(f"{name:<22} {a:>14.3f} {b:>20.3f} {b / a:>8.2f}x {same:>6}/{args.n}")


if __name__ == "__main__":
    main()
