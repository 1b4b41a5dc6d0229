"""Which prompt makes the small model answer FROM the fact in its context? Measured on TRAIN splits only.

Every in-scope probe (edit prompt, rephrase, subject alias; the multi-hop ones are left out: they test more than
reading) is answered with its own case's fact in context, i.e. a perfect scope decision, so the score is the
context oracle's for that prompt form. Score = `contains` over the target and its aliases, as in the evaluator.

Variants (each one idea on top of the paper's prompt, then combined):
  paper    the SCR paper's answer prompt as the user turn (the current default)
  prefix   paper + the assistant's answer starts by restating a cloze prompt ("The gender of X is"), so the
           model's next words complete it from the fact; questions (ending in "?") get no prefix
  example  paper with one worked counterfactual example before it, showing that the fact wins over memory
  system   the fact as the system message, the question alone as the user turn
  example+prefix
  bare     "Fact: ...\nQuestion: ...\nAnswer:" without the paper's instruction line
  bare+prefix
  completion  no chat template: the fact, a newline, then the prompt for the model to continue (cloze prompts
           continue as text; questions get "Answer:")

    python evals/answer_prompt_experiment.py [--cases 150] [--out evals/results/answer_prompt]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from scr import prompts
from scr.config import Settings
from scr.evaluation.data import load_cases, resolve_data
from scr.evaluation.metrics import contains
from scr.llm import make_backend
from scr.llm.base import as_chat
from scr.models import set_offline_env

TRAIN = [("wiki_counterfact train", "knowedit/wiki_counterfact_train.json", "knowedit"),
         ("counterfact train", "counterfact/counterfact_train.json", "counterfact")]
KINDS = {"reliability", "generalization", "portability.Subject_Aliasing"}

EXAMPLE = [
    {"role": "user", "content": prompts.paper_answer("The capital of France is Rome.", "The capital of France is")},
    {"role": "assistant", "content": "The capital of France is Rome."},
]


def cloze_prefix(question: str) -> str:
    q = question.strip()
    return "" if q.endswith("?") else q


def build(variant: str, fact: str, question: str, render) -> str | list:
    """The prompt for one variant: a message list, or a rendered string when the answer is prefixed."""
    if variant == "completion":
        return f"{fact}\n{question}" if cloze_prefix(question) else f"{fact}\nQuestion: {question}\nAnswer:"
    if variant == "system":
        return as_chat(question, system=f"Use this fact, even if it contradicts what you know: {fact}")
    if variant.startswith("bare"):
        messages = as_chat(f"Fact: {fact}\nQuestion: {question}\nAnswer:")
    else:
        messages = as_chat(prompts.paper_answer(fact, question))
    if variant.startswith("example"):
        messages = EXAMPLE + messages
    if variant.endswith("prefix") and cloze_prefix(question):
        return render(messages) + cloze_prefix(question)
    return messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=150, help="cases per train split")
    parser.add_argument("--variants", default="paper,prefix,example,system,example+prefix")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default="evals/results/answer_prompt")
    args = parser.parse_args()
    set_offline_env()
    backend = make_backend(Settings(batch_size=args.batch_size))
    render = backend.render
    variants = args.variants.split(",")
    results = {}
    for name, path, fmt in TRAIN:
        cases = load_cases(resolve_data(path), fmt, limit=args.cases)
        probes = [(c, p) for c in cases for p in c.probes if p.kind in KINDS or p.label in KINDS]
        for variant in variants:
            t0 = time.perf_counter()
            batch = [build(variant, c.fact()["text"], p.prompt, render) for c, p in probes]
            answers = backend.generate(batch, args.max_new_tokens)
            # A forced prefix (or a continued cloze prompt) is part of the answer the user sees.
            answers = [f"{prefix} {a}" if isinstance(b, str) and (prefix := cloze_prefix(p.prompt)) else a
                       for (_, p), b, a in zip(probes, batch, answers)]
            by_kind: dict[str, list[float]] = {}
            for (c, p), a in zip(probes, answers):
                by_kind.setdefault(p.label, []).append(float(contains(a, p.aliases)))
            row = {k: sum(v) / len(v) for k, v in sorted(by_kind.items())}
            row["all"] = sum(sum(v) for v in by_kind.values()) / sum(len(v) for v in by_kind.values())
            row["seconds"] = round(time.perf_counter() - t0, 1)
            row["probes"] = len(probes)
            results.setdefault(name, {})[variant] = row
            print(f"{name:24s} {variant:16s} " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                          for k, v in row.items()), flush=True)
    out = Path(args.out)
    command = (f"python evals/answer_prompt_experiment.py --cases {args.cases} --variants {args.variants} "
               f"--max-new-tokens {args.max_new_tokens} --batch-size {args.batch_size}")
    out.with_suffix(".json").write_text(json.dumps({"command": command, "results": results}, indent=1))
    lines = [f"# Answer prompt on TRAIN splits (context oracle: own fact in context), {args.cases} cases each", "",
             f"Command: `{command}` (SmolLM2-135M-Instruct, greedy, `contains`).", ""]
    for name, rows in results.items():
        kinds = [k for k in next(iter(rows.values())) if k not in ("seconds", "probes")]
        lines += [f"## {name}", "", "| variant | " + " | ".join(kinds) + " | s |",
                  "|---|" + "---:|" * (len(kinds) + 1)]
        for variant, row in rows.items():
            lines.append(f"| {variant} | " + " | ".join(f"{100 * row[k]:.1f}" for k in kinds) + f" | {row['seconds']} |")
        lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
