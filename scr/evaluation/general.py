"""General-ability benchmarks, scored the lm-evaluation-harness way, through any evaluator method.

Every benchmark becomes a list of (context, continuation) pairs scored by the method's teacher-forced
``score`` (``Method.score``), so a method sees each context exactly as it sees an evaluation probe: the
unmodified and edited models read it raw; SCR runs its retrieval and scope check on it and, when it decides a
stored fact is in scope, reads the fact in the paper's answer prompt first. A wrong scope decision therefore
shows up as damage, which is the honest measure of SCR's side effects.

  multiple choice  each option is a continuation of the context; ``acc`` picks the option with the highest
                   summed log-probability, ``acc_norm`` divides it by the option's UTF-8 byte length
                   (ARC-Easy, PIQA, HellaSwag, WinoGrande's partial scoring, and the off-by-default
                   ARC-Challenge, BoolQ, MMLU and BIG-Bench Hard, which sit at chance for a 135M model)
  generation       GSM8K (off by default, at the floor for a 135M model): the method ANSWERS the problem as it
                   answers users (``Method.answer``: SCR's whole pipeline, the chat template), greedy; right when
                   the answer's last number equals the reference's
  perplexity       WikiText-2 raw test, the first ``ppl_tokens`` tokens cut into windows; each window's first
                   ``ppl_context`` tokens are the context (and SCR's query), the rest is scored
  knowns           facts the model already knows (ROME's known_1000): right when every token of the
                   attribute is the greedy choice after the prompt
"""

from __future__ import annotations

import bz2
import csv
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from scr.evaluation.data import DatasetError, Probe, resolve_data

DEFAULT_BENCHMARKS = ("arc_easy", "hellaswag", "piqa", "winogrande", "wikitext2", "knowns")
EXTRA_BENCHMARKS = ("arc_challenge", "boolq", "mmlu", "bbh", "gsm8k")
GENERATION_BENCHMARKS = ("gsm8k",)
#: The headline score of each benchmark, and whether higher is better.
HEADLINE = {"arc_easy": ("acc", True), "arc_challenge": ("acc", True), "boolq": ("acc", True),
            "mmlu": ("acc", True), "bbh": ("acc", True), "gsm8k": ("acc", True), "piqa": ("acc", True),
            "hellaswag": ("acc_norm", True), "winogrande": ("acc", True), "wikitext2": ("ppl", False),
            "knowns": ("acc", True)}


@dataclass(frozen=True)
class Item:
    """One benchmark item: option ``i`` is ``continuations[i]`` after ``contexts[i]``."""

    item_id: str
    contexts: tuple[str, ...]
    continuations: tuple[str, ...]
    gold: int = 0  # multiple choice: the right option


@dataclass
class Benchmark:
    name: str
    kind: str  # choice | perplexity | knowns | generation
    items: list[Item]
    source: str
    note: str = ""
    extra: dict = field(default_factory=dict)


# ----- loaders (files described in ../shared/data/README.md) ------------------------------------------------------
def _jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
    return rows


def _field(row: dict, key: str, where: str):
    if key not in row:
        raise DatasetError(f"{where}: missing field {key!r}")
    return row[key]


def _same_context(item_id: str, context: str, options: Sequence[str], gold: int, where: str) -> Item:
    if not isinstance(gold, int) or not 0 <= gold < len(options):
        raise DatasetError(f"{where}: gold {gold!r} is not an index into its {len(options)} options")
    return Item(item_id, (context,) * len(options), tuple(" " + str(o).strip() for o in options), gold)


def load_mosaic_choice(path: Path, name: str) -> list[Item]:
    """MosaicML's ``{query, choices, gold}`` files (ARC, BoolQ): ``<query>\\nAnswer:`` + `` <option>``."""
    items = []
    for n, row in enumerate(_jsonl(path)):
        where = f"{path.name} record {n}"
        query = str(_field(row, "query", where)).rstrip()
        context = query if query.endswith("Answer:") else query + "\nAnswer:"
        items.append(_same_context(f"{name}-{n}", context, _field(row, "choices", where), _field(row, "gold", where),
                                   where))
    return items


def load_piqa(path: Path) -> list[Item]:
    labels_path = path.with_name(path.name.replace(".jsonl", "-labels.lst"))
    labels = [int(x) for x in labels_path.read_text().split()]
    rows = _jsonl(path)
    if len(labels) != len(rows):
        raise DatasetError(f"{labels_path.name} has {len(labels)} labels for {len(rows)} records of {path.name}")
    return [_same_context(f"piqa-{n}", f"Question: {_field(r, 'goal', f'{path.name} record {n}')}\nAnswer:",
                          [r["sol1"], r["sol2"]], labels[n], f"{path.name} record {n}") for n, r in enumerate(rows)]


def load_hellaswag(path: Path) -> list[Item]:
    """Six lines per item: ``activity: context``, the gold index, the four endings."""
    with bz2.open(path, "rt", encoding="utf-8") as fh:
        lines = [line.rstrip("\n") for line in fh]
    if len(lines) % 6:
        raise DatasetError(f"{path.name}: {len(lines)} lines is not a whole number of 6-line items")
    items = []
    for n in range(len(lines) // 6):
        block = lines[6 * n : 6 * n + 6]
        try:
            gold = int(block[1])
        except ValueError:
            raise DatasetError(f"{path.name} item {n}: gold line {block[1]!r} is not a number") from None
        items.append(_same_context(f"hellaswag-{n}", block[0], block[2:], gold, f"{path.name} item {n}"))
    return items


def load_winogrande(path: Path) -> list[Item]:
    """Partial scoring: the shared continuation after each option's filled-in prefix."""
    items = []
    for n, row in enumerate(_jsonl(path)):
        where = f"{path.name} record {n}"
        options = _field(row, "context_options", where)
        gold = _field(row, "gold", where)
        if not isinstance(gold, int) or not 0 <= gold < len(options):
            raise DatasetError(f"{where}: gold {gold!r} is not an index into its {len(options)} options")
        cont = " " + str(_field(row, "continuation", where)).strip()
        items.append(Item(f"winogrande-{n}", tuple(options), (cont,) * len(options), gold))
    return items


def load_mmlu(folder: Path) -> list[Item]:
    """lm-evaluation-harness's default MMLU prompt: subject header, question, lettered options, `` A``..`` D``."""
    items = []
    for path in sorted(folder.glob("*_test.csv")):
        subject = path.name[: -len("_test.csv")].replace("_", " ")
        with open(path, encoding="utf-8") as fh:
            for n, row in enumerate(csv.DictReader(fh)):
                where = f"{path.name} row {n}"
                options = [row.get(f"choice{i}") for i in range(4)]
                if None in options or row.get("answer") is None:
                    raise DatasetError(f"{where}: needs question, choice0..choice3 and answer")
                body = "\n".join(f"{letter}. {text}" for letter, text in zip("ABCD", options))
                context = (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
                           f"{row['question'].strip()}\n{body}\nAnswer:")
                items.append(_same_context(f"mmlu-{path.stem}-{n}", context, list("ABCD"), int(row["answer"]),
                                           where))
    return items


# BIG-Bench Hard tasks whose answers are free text or numbers, not a closed set of options: log-likelihood over
# options cannot score them, so the multiple-choice reading of BBH leaves them out.
BBH_OPEN_TASKS = ("dyck_languages", "multistep_arithmetic_two", "object_counting", "word_sorting")
_BBH_OPTION = re.compile(r"^\(([A-Z])\)\s*(.*)$", re.MULTILINE)


def load_bbh(folder: Path) -> tuple[list[Item], int]:
    """BIG-Bench Hard, zero-shot ``Q: <input>\nA:``, as multiple choice over an item's answers: the lettered
    options it lists (`` (A)``, `` (B)``, ...), else its task's answer words (True/False, Yes/No, valid/invalid).
    Returns the items and how many were left out: a target that is none of the item's options (the upstream
    files split three options at their commas: "(A) Monsters", "(B) Inc" for the target "Monsters, Inc"), or a
    single option (one snarks item lists only "(A) The NB")."""
    files = sorted(folder.glob("*.json"))
    if not files:
        raise DatasetError(f"{folder}: no BBH task files (*.json)")
    items, unanswerable = [], 0
    for path in files:
        task = path.stem
        if task in BBH_OPEN_TASKS:
            continue
        try:
            examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
            words = sorted({str(e["target"]).strip() for e in examples})
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DatasetError(f"{path.name}: not a BBH task file ({{\"examples\": [{{\"input\", \"target\"}}]}})") from None
        for n, example in enumerate(examples):
            where = f"{path.name} example {n}"
            text = str(_field(example, "input", where)).strip()
            target = str(_field(example, "target", where)).strip()
            lettered = _BBH_OPTION.findall(text)
            options = [f"({letter})" for letter, _ in lettered] or words
            if target not in options or len(options) < 2:
                unanswerable += 1
                continue
            items.append(_same_context(f"bbh-{task}-{n}", f"Q: {text}\nA:", options, options.index(target), where))
    return items, unanswerable


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> float | None:
    """The last number written in ``text`` ("$1,250.50." -> 1250.5), or None."""
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def load_gsm8k(path: Path) -> list[Item]:
    """GSM8K test problems, to answer by generation; the reference is the number after the answer's ``####``."""
    items = []
    for n, row in enumerate(_jsonl(path)):
        where = f"{path.name} record {n}"
        question = str(_field(row, "question", where)).strip()
        reference = re.search(r"####\s*(.+?)\s*$", str(_field(row, "answer", where)))
        gold = last_number(reference.group(1)) if reference else None
        if gold is None:
            raise DatasetError(f"{where}: the answer does not end with '#### <number>'")
        prompt = f"{question}\nSolve it step by step, then give the final answer as a number."
        items.append(Item(f"gsm8k-{n}", (prompt,), (f"{gold:.15g}",)))  # ":g" alone keeps only 6 digits
    return items


def load_wikitext_windows(path: Path, tokenizer, total_tokens: int, window: int, context: int) -> list[Item]:
    """Non-overlapping windows over the first ``total_tokens`` tokens; the first ``context`` of each are its
    context. The text is cut at token boundaries with the model's tokenizer, so each method scores the same
    strings (and re-tokenises the continuation the same way)."""
    ids = tokenizer(path.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"][:total_tokens]
    items = []
    for n, start in enumerate(range(0, len(ids) - context - 1, window)):
        chunk = ids[start : start + window]
        items.append(Item(f"wikitext2-{n}", (tokenizer.decode(chunk[:context]),), (tokenizer.decode(chunk[context:]),)))
    return items


def load_knowns(path: Path, exclude_subjects: set[str] = frozenset()) -> list[Item]:
    """ROME's known facts, minus those whose subject an update of the stream rewrites (their answer SHOULD
    change, so they cannot measure unintended damage)."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    items = []
    for n, row in enumerate(rows):
        where = f"{path.name} record {n}"
        subject = str(_field(row, "subject", where)).strip()
        if subject.lower() in exclude_subjects:
            continue
        items.append(Item(f"known-{row.get('known_id', n)}", (str(_field(row, "prompt", where)).rstrip(),),
                          (" " + str(_field(row, "attribute", where)).strip(),)))
    return items


def load_benchmark(name: str, data_dir: str | None, items: int, seed: int, tokenizer=None,
                   exclude_subjects: set[str] = frozenset(), ppl_tokens: int = 20480, ppl_window: int = 512,
                   ppl_context: int = 32) -> Benchmark:
    """A benchmark with a fixed random sample of ``items`` items (all of them when ``items`` is 0)."""
    def path(rel: str) -> Path:
        return resolve_data(rel, data_dir)

    if name in ("arc_easy", "arc_challenge", "boolq"):
        rel = {"arc_easy": "general/arc_easy_test.jsonl", "arc_challenge": "general/arc_challenge_test.jsonl",
               "boolq": "general/boolq_dev.jsonl"}[name]
        bench = Benchmark(name, "choice", load_mosaic_choice(path(rel), name), rel)
    elif name == "piqa":
        bench = Benchmark(name, "choice", load_piqa(path("general/piqa_valid.jsonl")), "general/piqa_valid.jsonl")
    elif name == "hellaswag":
        rel = "general/hellaswag_val_full.txt.bz2"
        bench = Benchmark(name, "choice", load_hellaswag(path(rel)), rel)
    elif name == "winogrande":
        rel = "general/winogrande_dev.jsonl"
        bench = Benchmark(name, "choice", load_winogrande(path(rel)), rel)
    elif name == "mmlu":
        bench = Benchmark(name, "choice", load_mmlu(path("general/mmlu/test")), "general/mmlu/test")
    elif name == "bbh":
        rel = "general/bbh"
        bbh_items, unanswerable = load_bbh(path(rel))
        bench = Benchmark(name, "choice", bbh_items, rel,
                          f"zero-shot, options scored by log-likelihood; open-answer tasks left out "
                          f"({', '.join(BBH_OPEN_TASKS)}), and {unanswerable} items without two options or whose "
                          f"target is none of them")
    elif name == "gsm8k":
        rel = "general/gsm8k_test.jsonl"
        bench = Benchmark(name, "generation", load_gsm8k(path(rel)), rel,
                          "generated answers, greedy; right when the last number is the reference")
    elif name == "wikitext2":
        if tokenizer is None:
            raise ValueError("wikitext2 needs the model's tokenizer")
        rel = "general/wikitext2_test.raw"
        windows = load_wikitext_windows(path(rel), tokenizer, ppl_tokens, ppl_window, ppl_context)
        return Benchmark(name, "perplexity", windows, rel,
                         f"first {ppl_tokens} tokens, {ppl_window}-token windows, {ppl_context} of them context")
    elif name == "knowns":
        rel = "knowns/known_1000.json"
        bench = Benchmark(name, "knowns", load_knowns(path(rel), exclude_subjects), rel,
                          f"facts whose subject an update rewrites are left out")
    else:
        raise ValueError(f"unknown benchmark {name!r} ({', '.join(DEFAULT_BENCHMARKS + EXTRA_BENCHMARKS)})")
    if items and len(bench.items) > items:
        keep = sorted(random.Random(seed).sample(range(len(bench.items)), items))
        bench.items = [bench.items[i] for i in keep]
        bench.note = (bench.note + "; " if bench.note else "") + f"{items} items sampled with seed {seed}"
    return bench


# ----- scoring ----------------------------------------------------------------------------------------------------
ScoreFn = Callable[[list[str], list[str]], tuple[list, list]]
AnswerFn = Callable[[list[str]], list]


def score_benchmark(bench: Benchmark, score: ScoreFn, batch: int = 256, progress=None,
                    answer: AnswerFn | None = None) -> dict:
    """Score every item with ``score(contexts, continuations) -> (TokenScores list, Response list)``, or, for a
    generation benchmark, ``answer(contexts) -> Response list``.

    Returns ``metrics`` and per-item rows (prediction, right or not, and whether a fact was put in context)."""
    if bench.kind == "generation":
        if answer is None:
            raise ValueError(f"{bench.name} is scored on generated answers: give answer=")
        return _score_generation(bench, answer, min(batch, 16), progress)  # answers are slow: show progress often
    pairs = [(item, i) for item in bench.items for i in range(len(item.contexts))]
    results = []
    for start in range(0, len(pairs), batch):
        part = pairs[start : start + batch]
        scores, responses = score([it.contexts[i] for it, i in part], [it.continuations[i] for it, i in part])
        results += list(zip(scores, responses))
        if progress:
            progress(min(start + batch, len(pairs)), len(pairs))
    rows, at = [], 0
    for item in bench.items:
        mine = results[at : at + len(item.contexts)]
        at += len(item.contexts)
        injected = any(bool(r.in_scope) for _, r in mine)
        if bench.kind == "choice":
            total = [sum(s.logprobs) for s, _ in mine]
            normed = [t / max(len(c.encode("utf-8")), 1) for t, c in zip(total, item.continuations)]
            pred, pred_norm = _argmax(total), _argmax(normed)
            rows.append({"id": item.item_id, "pred": pred, "pred_norm": pred_norm, "gold": item.gold,
                         "injected": injected})
        elif bench.kind == "perplexity":
            s = mine[0][0]
            rows.append({"id": item.item_id, "nll": -sum(s.logprobs), "tokens": len(s.logprobs), "injected": injected})
        else:
            s = mine[0][0]
            rows.append({"id": item.item_id, "right": bool(s.greedy) and all(s.greedy), "injected": injected})
    return {"metrics": summarise(bench.kind, rows), "items": rows}


def _score_generation(bench: Benchmark, answer: AnswerFn, batch: int, progress) -> dict:
    rows = []
    for start in range(0, len(bench.items), batch):
        part = bench.items[start : start + batch]
        for item, response in zip(part, answer([item.contexts[0] for item in part])):
            predicted, gold = last_number(response.answer), float(item.continuations[0])
            rows.append({"id": item.item_id, "answer": response.answer, "pred": predicted, "gold": gold,
                         "right": predicted is not None and math.isclose(predicted, gold),
                         "injected": bool(response.in_scope)})
        if progress:
            progress(min(start + batch, len(bench.items)), len(bench.items))
    return {"metrics": summarise(bench.kind, rows), "items": rows}


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])


def summarise(kind: str, rows: list[dict]) -> dict:
    n = len(rows)
    injected = sum(r["injected"] for r in rows) / n if n else 0.0
    if kind == "choice":
        return {"acc": sum(r["pred"] == r["gold"] for r in rows) / n, "acc_norm":
                sum(r["pred_norm"] == r["gold"] for r in rows) / n, "items": n, "injected": injected}
    if kind == "perplexity":
        tokens = sum(r["tokens"] for r in rows)
        return {"ppl": math.exp(sum(r["nll"] for r in rows) / tokens), "tokens": tokens, "items": n,
                "injected": injected}
    return {"acc": sum(r["right"] for r in rows) / n, "items": n, "injected": injected}


def as_probes(contexts: Sequence[str]) -> list[Probe]:
    """Benchmark contexts as evaluator probes (kind ``general``: no expected answer of their own)."""
    return [Probe(kind="general", prompt=c, answers=()) for c in contexts]
