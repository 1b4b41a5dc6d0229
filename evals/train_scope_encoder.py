"""Train the scope cross-encoder (scr/scope_encoder.py) on TRAIN splits only, and pick its threshold there.

Data: KnowEdit WikiData_counterfact train (1427 cases) and CounterFact train (the first --cf-limit cases), each
as a knowledge base holding every case's fact (the evaluator's sequential N = all). Cases whose index is a
multiple of --val-every are held out: the threshold is chosen on them, never on the pairs trained on, and the
test splits are not read at all (their scores come from the evaluator: evals/results/knowedit_*).

Training pairs, per probe of a training case: (probe, its own case's fact), labelled 1 for in-scope probes
(reliability, generalization, portability) and 0 for locality probes (the hard negatives: same subject,
another relation; or same relation, another subject); plus its --negatives best-retrieved OTHER facts,
labelled 0, so the encoder also learns to pick the right fact among candidates.

    python evals/train_scope_encoder.py [--cf-limit 2000] [--max-pairs 26000] [--out scr/data/scope_encoder.safetensors]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_scope import Split, best_threshold, build_split, decide, metrics  # noqa: E402  (the shared split builder)

from scr.kb.embed import Embedder  # noqa: E402
from scr.models import DEFAULT_EMBEDDER, set_offline_env  # noqa: E402
from scr.scope_encoder import DEFAULT_ENCODER_PATH, EncoderInfo, ScopeEncoder  # noqa: E402

TRAIN = [("wiki_counterfact train", "knowedit/wiki_counterfact_train.json", "knowedit"),
         ("counterfact train", "counterfact/counterfact_train.json", "counterfact")]


# The benchmarks' facts all read "<prompt> <object>." and their prompts are cloze statements, while users write
# "Leo XIV is the Pope." and ask "Who is the Pope?". Trained on one form only, the encoder learns the form (it
# rejected every object-first fact of the sample knowledge base). So a share of the pairs is rewritten by rule:
# the fact with its object first, the cloze prompt as a question. Labels do not change: a rewritten locality
# prompt is still about another relation.
_ARTICLES = ("The ", "A ", "An ")


def _lower_article(text: str) -> str:
    return text[0].lower() + text[1:] if text.startswith(_ARTICLES) else text


def object_first(text: str, key: str | None) -> str:
    """ "The name of the spouse of X is Y." -> "Y is the name of the spouse of X." (other shapes unchanged)"""
    if not key or not text.startswith(key):
        return text
    obj = text[len(key):].strip().rstrip(".")
    for verb in (" is", " are"):
        if key.endswith(verb) and obj:
            return f"{obj}{verb} {_lower_article(key[: -len(verb)])}."
    return text


def as_question(prompt: str) -> str:
    """ "The name of the spouse of X is" -> "What is the name of the spouse of X?" (other shapes unchanged)"""
    for verb in (" is", " are"):
        if prompt.endswith(verb):
            return f"What{verb} {_lower_article(prompt[: -len(verb)])}?"
    return prompt


def training_pairs(split: Split, cases: set[int], negatives: int, rewrite: float,
                   rng: random.Random) -> list[tuple[str, str, float]]:
    pairs = []
    for n in range(len(split.prompts)):
        if split.case_index[n] not in cases:
            continue
        q = as_question(split.prompts[n]) if rng.random() < rewrite else split.prompts[n]
        facts = [(split.own_text[n], split.own_key[n], 1.0 if split.in_scope[n] else 0.0)]
        facts += [(h.text, h.key, 0.0) for h in split.hits[n] if h.text != split.own_text[n]][:negatives]
        pairs += [(q, object_first(text, key) if rng.random() < rewrite else text, label)
                  for text, key, label in facts]
    return pairs


def held_out(split: Split, cases: set[int]) -> Split:
    keep = [n for n in range(len(split.prompts)) if split.case_index[n] in cases]
    return split.subset(keep, f"{split.name} (held out)")


def rewritten(split: Split) -> Split:
    """The split with every cloze prompt as a question and every fact object first."""
    out = split.subset(list(range(len(split.prompts))), f"{split.name}, rewritten")
    out.prompts = [as_question(p) for p in out.prompts]
    out.hits = [[h.model_copy(update={"text": object_first(h.text, h.key)}) for h in hits] for hits in out.hits]
    return out


def encoder_scores(model: ScopeEncoder, split: Split) -> list[np.ndarray]:
    """Per probe, the probability of each retrieved candidate."""
    qs = [split.prompts[n] for n, hits in enumerate(split.hits) for _ in hits]
    fs = [h.text for hits in split.hits for h in hits]
    flat = model.probabilities(qs, fs, progress=_progress(f"scoring {split.name}"))
    out, at = [], 0
    for hits in split.hits:
        out.append(flat[at : at + len(hits)])
        at += len(hits)
    return out


def _progress(label: str, every: int = 2000):
    state = {"next": every}

    def report(done: int, total: int) -> None:
        if done >= state["next"] or done == total:
            print(f"  {label}: {done}/{total}", flush=True)
            state["next"] = done + every
    return report


def train(model: ScopeEncoder, pairs: list[tuple[str, str, float]], epochs: int, batch_size: int, lr: float,
          seed: int) -> list[float]:
    rng = random.Random(seed)
    params = list(model.trainable().values())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * ((len(pairs) + batch_size - 1) // batch_size)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / max(1, steps - warmup)))
    # Positives are fewer than negatives: weight them so both classes count equally.
    pos = sum(p[2] for p in pairs)
    pos_weight = torch.tensor((len(pairs) - pos) / max(pos, 1.0))
    losses, step, started = [], 0, time.time()
    model.train()
    for _ in range(epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            batch = [pairs[i] for i in order[start : start + batch_size]]
            logits = model.logits([b[0] for b in batch], [b[1] for b in batch])
            labels = torch.tensor([b[2] for b in batch])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(float(loss.detach()))
            step += 1
            if step % 50 == 0 or step == steps:
                rate = step * batch_size / (time.time() - started)
                print(f"  step {step}/{steps}: loss {np.mean(losses[-50:]):.4f} ({rate:.0f} pairs/s)", flush=True)
    model.eval()
    return losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cf-limit", type=int, default=2000)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--negatives", type=int, default=2, help="other retrieved facts per probe, as negatives")
    ap.add_argument("--max-pairs", type=int, default=26000, help="a random subset of this many training pairs")
    ap.add_argument("--val-every", type=int, default=7)
    ap.add_argument("--rewrite", type=float, default=0.0,
                    help="share of prompts and facts rewritten (question form, object first)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(DEFAULT_ENCODER_PATH))
    ap.add_argument("--report", default="evals/results/scope_encoder")
    args = ap.parse_args()
    set_offline_env()
    torch.manual_seed(args.seed)
    started = time.time()
    embedder = Embedder(DEFAULT_EMBEDDER)
    limits = {"counterfact train": args.cf_limit}
    splits = [build_split(name, path, fmt, limits.get(name), embedder, args.k) for name, path, fmt in TRAIN]
    pairs, val, rng = [], [], random.Random(args.seed)
    for s in splits:
        n_cases = max(s.case_index) + 1
        fit_cases = {i for i in range(n_cases) if i % args.val_every}
        pairs += training_pairs(s, fit_cases, args.negatives, args.rewrite, rng)
        val.append(held_out(s, set(range(n_cases)) - fit_cases))
    # The threshold must hold for both phrasings: choose it over the held-out cases as they are and rewritten.
    val.append(rewritten(val[0]))
    rng.shuffle(pairs)
    pairs = pairs[: args.max_pairs]
    print(f"{len(pairs)} training pairs ({int(sum(p[2] for p in pairs))} positive); "
          f"held out: {', '.join(f'{len(v.prompts)} probes of {v.name}' for v in val)}", flush=True)

    model = ScopeEncoder(EncoderInfo(base=DEFAULT_EMBEDDER, rank=args.rank, alpha=2.0 * args.rank))
    t0 = time.time()
    losses = train(model, pairs, args.epochs, args.batch_size, args.lr, args.seed)
    train_s = time.time() - t0
    scores = [encoder_scores(model, v) for v in val]
    threshold = best_threshold(val, scores)
    model.info.threshold = threshold
    model.info.trained_on = (f"wiki_counterfact_train + counterfact_train[:{args.cf_limit}] minus every "
                             f"{args.val_every}th case; {len(pairs)} pairs ({args.rewrite:.0%} rewritten), "
                             f"{args.epochs} epoch(s), seed {args.seed}")
    model.save(args.out)

    rows = {}
    for v, sc in zip(val, scores):
        rows[v.name] = {"encoder": metrics(v, *decide(v, sc), threshold),
                        "similarity gate": metrics(v, *decide(v, [np.array([h.key_score for h in hits])
                                                                  for hits in v.hits]), 0.591)}
    seconds = time.time() - started
    write_report(Path(args.report), args, rows, threshold, len(pairs), train_s, seconds, losses)
    print(json.dumps(rows, indent=1))


def write_report(out: Path, args, rows: dict, threshold: float, n_pairs: int, train_s: float, seconds: float,
                 losses: list[float]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    command = (f"python evals/train_scope_encoder.py --cf-limit {args.cf_limit} --negatives {args.negatives} "
               f"--max-pairs {args.max_pairs} --epochs {args.epochs} --lr {args.lr} --rank {args.rank} "
               f"--rewrite {args.rewrite} --seed {args.seed}")
    out.with_suffix(".json").write_text(json.dumps(
        {"command": command, "threshold": threshold, "pairs": n_pairs, "train_s": round(train_s, 1),
         "seconds": round(seconds, 1), "loss_first_50": float(np.mean(losses[:50])),
         "loss_last_50": float(np.mean(losses[-50:])), "held_out": rows}, indent=2) + "\n")
    lines = [
        "# Scope cross-encoder: training on the train splits",
        "",
        f"Command: `{command}`; base all-minilm-l6-v2 with rank-{args.rank} adapters; {n_pairs} pairs, "
        f"{train_s:.0f} s training, {seconds:.0f} s in all on the 2-core CPU machine (sharing it with an "
        "evaluation run). Threshold chosen on held-out TRAIN cases: "
        f"{threshold:.4f}. Test splits are not read here; their scope accuracy is in the evaluator's reports.",
        "",
        "Held-out train cases (each probe decides among its top-5 retrieved facts; the KB holds every case's fact):",
        "",
        "| split | decision | balanced | in-scope accepted | locality rejected | right fact |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, by in rows.items():
        for label, m in by.items():
            lines.append(f"| {name} | {label} | {m['balanced']:.3f} | {m['accept_in_scope']:.3f} | "
                         f"{m['reject_locality']:.3f} | {m['right_fact_in_scope']:.3f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
