"""General-ability retention: benchmark loaders, lm-eval-style scoring checked by hand, and the runner end to end
on the real embedded model (SCR's scope decision on benchmark contexts, resume, reports)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from scr.config import Settings
from scr.evaluation import general
from scr.evaluation.config import EvalConfigError
from scr.evaluation.data import DatasetError, resolve_data
from scr.evaluation.methods import BaseMethod
from scr.evaluation.retention import RetentionRunner, make_retention_config


@pytest.mark.data
@pytest.mark.parametrize("name,count", [("arc_easy", 2376), ("piqa", 1838), ("hellaswag", 10042),
                                        ("winogrande", 1267), ("knowns", 1209), ("arc_challenge", 1172),
                                        ("boolq", 3270), ("mmlu", 14042), ("bbh", 5507), ("gsm8k", 1319)])
def test_every_record_of_each_benchmark_loads(name, count):
    bench = general.load_benchmark(name, None, items=0, seed=0)
    assert len(bench.items) == count
    for item in bench.items[:50]:
        assert len(item.contexts) == len(item.continuations) >= 1
        assert 0 <= item.gold < len(item.contexts)


@pytest.mark.data
def test_prompt_shapes_follow_lm_evaluation_harness():
    arc = general.load_benchmark("arc_easy", None, items=0, seed=0).items[0]
    assert arc.contexts[0].startswith("Question: ") and arc.contexts[0].endswith("\nAnswer:")
    assert all(c.startswith(" ") for c in arc.continuations) and len(set(arc.contexts)) == 1
    wino = general.load_benchmark("winogrande", None, items=0, seed=0).items[0]
    assert len(set(wino.contexts)) == 2 and len(set(wino.continuations)) == 1  # partial scoring
    hs = general.load_benchmark("hellaswag", None, items=0, seed=0).items[0]
    assert hs.contexts[0].startswith("Roof shingle removal: A man is sitting on a roof.") and hs.gold == 3


@pytest.mark.data
def test_bbh_is_multiple_choice_over_each_item_s_options_and_gsm8k_keeps_the_reference_number():
    bbh = general.load_benchmark("bbh", None, items=0, seed=0)
    by_id = {item.item_id: item for item in bbh.items}
    boolean = by_id["bbh-boolean_expressions-0"]
    assert boolean.contexts[0] == "Q: not ( True ) and ( True ) is\nA:" and boolean.continuations == (" False", " True")
    assert boolean.continuations[boolean.gold] == " False"
    date = by_id["bbh-date_understanding-0"]
    assert date.continuations == (" (A)", " (B)", " (C)", " (D)", " (E)", " (F)") and "\nOptions:\n(A) " in date.contexts[0]
    # Open-answer tasks are left out, and so are the items whose target is none of their options.
    assert not any(i.item_id.startswith(("bbh-word_sorting", "bbh-object_counting")) for i in bbh.items)
    assert "bbh-movie_recommendation-163" not in by_id and "bbh-snarks-88" not in by_id
    assert "3 items" not in bbh.note and "4 items without two options" in bbh.note
    gsm = general.load_benchmark("gsm8k", None, items=0, seed=0)
    assert gsm.kind == "generation" and gsm.items[0].continuations == ("18",)
    assert gsm.items[0].contexts[0].startswith("Janet\u2019s ducks lay 16 eggs per day.")


def test_generated_answers_are_right_when_their_last_number_is_the_reference(tmp_path):
    from scr.evaluation.methods import Response

    assert general.last_number("She makes $1,250.50 a day.") == 1250.5 and general.last_number("none") is None
    items = [general.Item("a", ("How many?",), ("18",)), general.Item("b", ("How much?",), ("1250.5",)),
             general.Item("c", ("Which?",), ("3",))]
    answers = {"How many?": Response("9 * 2 = 18", in_scope=True), "How much?": Response("So $1,250.50."),
               "Which?": Response("I cannot tell.")}
    bench = general.Benchmark("g", "generation", items, "hand")
    result = general.score_benchmark(bench, score=None, answer=lambda contexts: [answers[c] for c in contexts])
    assert [(r["pred"], r["right"], r["injected"]) for r in result["items"]] == \
           [(18.0, True, True), (1250.5, True, False), (None, False, False)]
    assert result["metrics"]["acc"] == pytest.approx(2 / 3) and result["metrics"]["injected"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="generated answers"):
        general.score_benchmark(bench, score=None)
    bad = tmp_path / "gsm8k.jsonl"
    bad.write_text('{"question": "q?", "answer": "so #### 1,234,567"}\n')
    assert general.load_gsm8k(bad)[0].continuations == ("1234567",)  # every digit of a large reference kept
    bad.write_text('{"question": "q?", "answer": "no marker"}\n')
    with pytest.raises(DatasetError, match="gsm8k.jsonl record 0: the answer does not end with '#### <number>'"):
        general.load_gsm8k(bad)
    (tmp_path / "bbh").mkdir()
    with pytest.raises(DatasetError, match="no BBH task files"):
        general.load_bbh(tmp_path / "bbh")
    (tmp_path / "bbh" / "t.json").write_text('{"rows": []}')
    with pytest.raises(DatasetError, match="t.json: not a BBH task file"):
        general.load_bbh(tmp_path / "bbh")


@pytest.mark.data
def test_sampling_is_fixed_by_the_seed_and_knowns_drop_rewritten_subjects():
    a = general.load_benchmark("piqa", None, items=30, seed=7)
    b = general.load_benchmark("piqa", None, items=30, seed=7)
    c = general.load_benchmark("piqa", None, items=30, seed=8)
    assert [i.item_id for i in a.items] == [i.item_id for i in b.items] != [i.item_id for i in c.items]
    assert "30 items sampled with seed 7" in a.note
    knowns = general.load_benchmark("knowns", None, items=0, seed=0, exclude_subjects={"vinson massif"})
    assert len(knowns.items) == 1208 and knowns.items[0].contexts[0] != "Vinson Massif is located in the continent of"


def test_malformed_records_are_named(tmp_path):
    bad = tmp_path / "arc.jsonl"
    bad.write_text('{"query": "Question: a?", "choices": ["x", "y"], "gold": 0}\n'
                   '{"query": "Question: b?", "choices": ["x", "y"], "gold": 5}\n')
    with pytest.raises(DatasetError, match="arc.jsonl record 1: gold 5 is not an index"):
        general.load_mosaic_choice(bad, "arc")
    bad.write_text('{"query": "Question: a?", "choices": ["x"]}\n')
    with pytest.raises(DatasetError, match="record 0: missing field 'gold'"):
        general.load_mosaic_choice(bad, "arc")
    bad.write_text("{not json\n")
    with pytest.raises(DatasetError, match="arc.jsonl:1: not valid JSON"):
        general.load_mosaic_choice(bad, "arc")
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        general.load_benchmark("nope", None, 1, 0)
    with pytest.raises(EvalConfigError, match="unknown benchmark 'arc'"):
        make_retention_config(benchmarks="arc,piqa")
    with pytest.raises(EvalConfigError, match="N must be a whole number"):
        make_retention_config(n="0,ten")


def _model_logprob(backend, context: str, continuation: str) -> float:
    """Summed log-probability of the continuation's tokens, straight from the model (no backend code)."""
    tok = backend.tokenizer
    ctx_ids = tok(context)["input_ids"]
    cont_ids = tok(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx_ids + cont_ids])
    with torch.no_grad():
        logp = torch.log_softmax(backend.model(input_ids=ids).logits[0].float(), -1)
    return sum(float(logp[len(ctx_ids) - 1 + j, t]) for j, t in enumerate(cont_ids))


def test_choice_scoring_and_perplexity_match_values_computed_by_hand(smol_backend):
    method = BaseMethod(smol_backend)
    score = RetentionRunner._score_fn(method)
    items = [general.Item("a", ("Question: What do plants need to make food?\nAnswer:",) * 3,
                          (" sunlight", " darkness and cold rocks", " plastic"), gold=0),
             general.Item("b", ("The capital of France is",) * 2, (" Paris", " a small blue teapot"), gold=1)]
    result = general.score_benchmark(general.Benchmark("t", "choice", items, "hand"), score)
    for item, row in zip(items, result["items"]):
        by_hand = [_model_logprob(smol_backend, c, x) for c, x in zip(item.contexts, item.continuations)]
        normed = [v / len(x.encode()) for v, x in zip(by_hand, item.continuations)]
        assert row["pred"] == max(range(len(by_hand)), key=by_hand.__getitem__)
        assert row["pred_norm"] == max(range(len(normed)), key=normed.__getitem__)
    assert result["items"][1]["pred"] == 0  # " Paris" wins, so the item whose gold is 1 is wrong
    assert result["metrics"]["acc"] == (result["items"][0]["pred"] == 0) / 2

    text = " The tower is 324 metres tall, about the same height as an 81-storey building."
    window = general.Item("w", ("The Eiffel Tower",), (text,))
    ppl = general.score_benchmark(general.Benchmark("p", "perplexity", [window], "hand"), score)["metrics"]
    n_tokens = len(smol_backend.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert ppl["tokens"] == n_tokens
    assert ppl["ppl"] == pytest.approx(math.exp(-_model_logprob(smol_backend, "The Eiffel Tower", text) / n_tokens),
                                       rel=1e-4)


@pytest.mark.data
def test_runner_end_to_end_scr_injects_facts_into_matching_contexts_and_resumes(tmp_path, smol_backend, embedder):
    arc = general.load_benchmark("arc_easy", None, items=4, seed=3)
    question = arc.items[0].contexts[0]
    # An update stream whose second fact is keyed on an ARC question: SCR must put it into that item's context.
    updates = tmp_path / "updates.jsonl"
    rows = [{"prompt": "The mother tongue of Danielle Darrieux is", "target_new": "English",
             "subject": "Danielle Darrieux"},
            {"prompt": question, "target_new": "none of these", "subject": "ARC"},
            {"prompt": "The capital of Freedonia is", "target_new": "Sylvania", "subject": "Freedonia"}]
    updates.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = make_retention_config(updates=str(updates), stream=3, methods="base,scr", n="0,1,2",
                                   benchmarks="arc_easy,winogrande,wikitext2,knowns", items=4, seed=3,
                                   ppl_tokens=200, ppl_window=100, ppl_context=20, out=str(tmp_path / "run"))
    logs: list[str] = []
    report = RetentionRunner(config, Settings(), log=logs.append, backend=smol_backend, embedder=embedder).run()
    base = report["methods"]["base"]["stages"]["0"]["benchmarks"]
    scr = report["methods"]["scr"]["stages"]
    assert set(report["methods"]["base"]["stages"]) == {"0"} and set(scr) == {"1", "2"}
    assert base["wikitext2"]["items"] == 2 and base["arc_easy"]["items"] == 4
    # One fact about an actress: nothing in the benchmarks is in its scope, so SCR scores exactly as the model.
    assert scr["1"]["benchmarks"]["arc_easy"]["injected"] == 0
    assert {b: v["acc" if b != "wikitext2" else "ppl"] for b, v in scr["1"]["benchmarks"].items()} == \
           {b: v["acc" if b != "wikitext2" else "ppl"] for b, v in base.items()}
    # The ARC-keyed fact is injected into (at least) its own item: the honest measure of a wrong scope decision.
    assert scr["2"]["benchmarks"]["arc_easy"]["injected"] >= 0.25
    out = tmp_path / "run"
    md = (out / "report.md").read_text()
    assert "## arc_easy: acc" in md and "| scr |" in md and (out / "retention.png").stat().st_size > 0

    lines = {p.name: p.read_text() for p in (out / "records").glob("*.jsonl") if p.name != "_sessions.jsonl"}
    logs.clear()
    RetentionRunner(config, Settings(), log=logs.append, backend=smol_backend, embedder=embedder).run()
    after = {p.name: p.read_text() for p in (out / "records").glob("*.jsonl") if p.name != "_sessions.jsonl"}
    assert all(after[k].startswith(v) for k, v in lines.items())
    assert not any('"type": "score"' in after[k][len(v):] for k, v in lines.items())  # nothing scored again
    assert any("scr N=2: done" in m for m in logs)

    # A run restricted to one method and shorter N (how a long run is finished method by method) rebuilds a
    # report that still holds every method's recorded stages.
    narrow = config.model_copy(update={"methods": ["base"], "n": [0, 1]})
    rebuilt = RetentionRunner(narrow, Settings(), log=logs.append, backend=smol_backend, embedder=embedder).run()
    assert set(rebuilt["methods"]) == {"base", "scr"} and set(rebuilt["methods"]["scr"]["stages"]) == {"1", "2"}
    assert rebuilt["run"]["n"] == [0, 1, 2] and "| scr | " in (out / "report.md").read_text()
    # Rebuilding the report with an N that has no records adds no empty column.
    probe = config.model_copy(update={"n": [0, 1, 2, 3]})
    again = RetentionRunner(probe, Settings(), log=logs.append, backend=smol_backend, embedder=embedder)
    assert again.run(report_only=True)["run"]["n"] == [0, 1, 2] and "N=3" not in (out / "report.md").read_text()


@pytest.mark.data
def test_gsm8k_is_answered_through_each_method_and_scr_answers_with_a_fact_keyed_on_a_problem(tmp_path, smol_backend,
                                                                                              embedder):
    gsm = general.load_benchmark("gsm8k", None, items=2, seed=5)
    question = gsm.items[0].contexts[0]
    updates = tmp_path / "updates.jsonl"
    updates.write_text(json.dumps({"prompt": question, "target_new": "4242", "subject": "Beverly Hills Bakery"}) + "\n")
    config = make_retention_config(updates=str(updates), stream=1, methods="base,scr", n="0,1", benchmarks="gsm8k",
                                   items=2, seed=5, gen_tokens=12, out=str(tmp_path / "run"))
    report = RetentionRunner(config, Settings(), log=lambda m: None, backend=smol_backend, embedder=embedder).run()
    base = report["methods"]["base"]["stages"]["0"]["benchmarks"]["gsm8k"]
    scr = report["methods"]["scr"]["stages"]["1"]["benchmarks"]["gsm8k"]
    assert base["items"] == scr["items"] == 2 and base["injected"] == 0
    assert scr["injected"] == 0.5  # the problem the fact is keyed on, and only that one
    rows = [json.loads(l) for l in (tmp_path / "run/records/scr.jsonl").read_text().splitlines()]
    scored = next(r for r in rows if r["type"] == "score")
    assert scored["generation"] == {"gen_tokens": 12}
    for item in scored["items"]:
        assert item["pred"] == general.last_number(item["answer"]) and item["right"] == (item["pred"] == item["gold"])
    # Another answer length is another measurement: it is scored again, not read from the records.
    longer = config.model_copy(update={"gen_tokens": 16, "methods": ["base"]})
    logs: list[str] = []
    RetentionRunner(longer, Settings(), log=logs.append, backend=smol_backend, embedder=embedder).run()
    assert not any("base N=0: done" in m for m in logs) and any("base N=0 gsm8k" in m for m in logs)


def test_n_beyond_the_stream_is_refused(tmp_path, smol_backend, embedder):
    config = make_retention_config(updates=str(resolve_data("counterfact/counterfact_train.json")), stream=5,
                                   n="0,10", out=str(tmp_path / "x"))
    with pytest.raises(EvalConfigError, match="beyond the stream of 5 updates"):
        RetentionRunner(config, Settings(), backend=smol_backend, embedder=embedder).run()
