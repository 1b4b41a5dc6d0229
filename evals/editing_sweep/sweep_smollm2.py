"""Choose SmolLM2-135M's editing layers on the KnowEdit wiki_counterfact TRAIN split (never the test split).

Single-edit protocol: for each sampled train record, apply one edit, score, restore. Teacher-forced scores
(EasyEdit style, fraction of answer tokens that are the argmax):
  efficacy      target_new after the edit prompt
  alias         target_new after the Subject_Aliasing portability prompts (the same fact, the subject renamed:
                the train split has no rephrase prompts, so this is our generalisation proxy)
  locality      argmax tokens on the Relation_Specificity prompts + their answer, unchanged from the unedited model
and `gen` = the greedy 8-token answer to the edit prompt contains target_new.

    python evals/editing_sweep/sweep_smollm2.py --method memit --layers 2-6 3-7 4-8 6-10 8-12 --n 24
    python evals/editing_sweep/sweep_smollm2.py --method balancedit --codebook-layers 10 15 20 25 --n 24
Appends one JSON line per configuration to evals/editing_sweep/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from scr.editing import EditRequest, make_editor
from scr.editing.covariance import shared_data_dir
from scr.models import load_causal_lm, set_offline_env

HERE = Path(__file__).resolve().parent


def load_train(n: int, seed: int) -> list[dict]:
    records = json.loads((shared_data_dir() / "knowedit" / "wiki_counterfact_train.json").read_text())
    return random.Random(seed).sample(records, n)


def answer_of(item: dict) -> str:
    gt = item["ground_truth"]
    while isinstance(gt, list):
        gt = gt[0]
    return str(gt)


@torch.no_grad()
def argmax_tokens(model, tok, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    prompt_ids = tok(prompt)["input_ids"]
    answer_ids = tok(" " + answer.strip(), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + answer_ids])
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]
    return logits.argmax(-1).tolist(), answer_ids


def tf_accuracy(model, tok, prompt: str, answer: str) -> float:
    predicted, answer_ids = argmax_tokens(model, tok, prompt, answer)
    return sum(p == a for p, a in zip(predicted, answer_ids)) / len(answer_ids)


@torch.no_grad()
def greedy(model, tok, prompt: str, n: int = 8) -> str:
    ids = tok(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def locality_probes(record: dict) -> list[tuple[str, str]]:
    items = record.get("locality", {}).get("Relation_Specificity", []) or []
    return [(it["prompt"], answer_of(it)) for it in items]


def alias_probes(record: dict) -> list[str]:
    return [it["prompt"] for it in record.get("portability", {}).get("Subject_Aliasing", []) or []]


def run(method: str, overrides: dict, records: list[dict], model, tok) -> dict:
    editor = make_editor(method, model, tok, **overrides)
    baseline = {r["prompt"]: [argmax_tokens(model, tok, p, a)[0] for p, a in locality_probes(r)] for r in records}
    scores = {"efficacy": [], "alias": [], "locality": [], "gen": []}
    seconds = []
    for record in records:
        request = EditRequest.from_record(record)
        report = editor.apply([request])
        seconds.append(report.seconds)
        scores["efficacy"].append(tf_accuracy(model, tok, request.prompt, request.target_new))
        scores["gen"].append(float(request.target_new.lower() in greedy(model, tok, request.prompt).lower()))
        for p in alias_probes(record):
            scores["alias"].append(tf_accuracy(model, tok, p, request.target_new))
        for (p, a), before in zip(locality_probes(record), baseline[record["prompt"]]):
            after, _ = argmax_tokens(model, tok, p, a)
            scores["locality"].append(sum(x == y for x, y in zip(before, after)) / len(before))
        editor.restore()
        print(f"  {len(seconds)}/{len(records)} {report.seconds:.1f}s eff={scores['efficacy'][-1]:.2f}", flush=True)
    summary = {k: round(100 * statistics.mean(v), 1) if v else None for k, v in scores.items()}
    summary["n_alias"], summary["n_locality"] = len(scores["alias"]), len(scores["locality"])
    summary["seconds_per_edit"] = round(statistics.mean(seconds), 2)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="memit")
    parser.add_argument("--layers", nargs="*", default=[], help="locate-then-edit windows, e.g. 3-7")
    parser.add_argument("--codebook-layers", nargs="*", type=int, default=[])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides key=value (python literals)")
    args = parser.parse_args()
    set_offline_env()
    model, tok = load_causal_lm()
    records = load_train(args.n, args.seed)
    extra = {}
    for item in args.set:
        key, value = item.split("=", 1)
        try:
            extra[key] = eval(value, {})  # numbers and tuples from the command line
        except Exception:
            extra[key] = value
    configs = [dict(layers=tuple(range(int(w.split("-")[0]), int(w.split("-")[1]) + 1))) for w in args.layers]
    configs += [dict(layer=l) for l in args.codebook_layers]
    for config in configs or [{}]:
        overrides = {**config, **extra}
        start = time.time()
        summary = run(args.method, overrides, records, model, tok)
        line = {"method": args.method, "overrides": {k: str(v) for k, v in overrides.items()},
                "n": args.n, "seed": args.seed, "split": "wiki_counterfact_train", **summary,
                "wall_s": round(time.time() - start, 1)}
        print(json.dumps(line), flush=True)
        with open(HERE / "results.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
