"""The in-process transformers backend: batched greedy generation, log-probabilities, constrained choice."""

from __future__ import annotations

import math

import pytest
import torch

from scr.llm import LLMBackend, as_chat

PROMPTS = ["The capital of France is", as_chat("Name a colour."), "One, two, three,",
           as_chat("What is the largest ocean on Earth? Answer in one word.")]


def test_backend_satisfies_protocol(tiny_backend):
    assert isinstance(tiny_backend, LLMBackend)


def test_batched_generation_equals_one_by_one(tiny_backend):
    # Prompts of different lengths in one left-padded batch must give what each gives alone.
    batched = tiny_backend.generate(PROMPTS, max_new_tokens=8)
    alone = [tiny_backend.generate([p], max_new_tokens=8)[0] for p in PROMPTS]
    assert batched == alone
    assert all(isinstance(t, str) for t in batched)


def test_generation_matches_manual_greedy_decoding(tiny_backend):
    model, tok = tiny_backend.model, tiny_backend.tokenizer
    ids = tok("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        for _ in range(6):
            nxt = model(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    expected = tok.decode(ids[0, -6:], skip_special_tokens=True).strip()
    assert tiny_backend.generate(["The capital of France is"], max_new_tokens=6)[0] == expected


def test_token_logprobs_match_a_direct_forward_pass(tiny_backend):
    model, tok = tiny_backend.model, tiny_backend.tokenizer
    scores = tiny_backend.token_logprobs(["The capital of France is", "Hi"], [" Paris", " there friend"])
    prompt_ids = tok("The capital of France is")["input_ids"]
    cont = tok(" Paris", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([prompt_ids + cont])).logits[0], -1)
    expected = [logp[len(prompt_ids) - 1 + i, t].item() for i, t in enumerate(cont)]
    assert scores[0].logprobs == pytest.approx(expected, abs=1e-4)
    assert scores[0].greedy == [int(logp[len(prompt_ids) - 1 + i].argmax()) == t for i, t in enumerate(cont)]
    assert len(scores[1].tokens) == len(tok(" there friend", add_special_tokens=False)["input_ids"])
    assert all(lp <= 0 for lp in scores[1].logprobs)


def test_choose_returns_the_option_with_best_constrained_path(tiny_backend):
    model, tok = tiny_backend.model, tiny_backend.tokenizer
    options = ["1", "2", "3", "none"]
    picked = tiny_backend.choose(["Pick one:"], [options])[0]
    ids = tok("Pick one:")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    firsts = [tok(o, add_special_tokens=False)["input_ids"][0] for o in options]
    assert picked == max(range(len(options)), key=lambda j: logits[firsts[j]].item())
    with pytest.raises(ValueError):
        tiny_backend.choose(["x"], [[]])


def test_real_model_knows_paris(smol_backend):
    scores = smol_backend.token_logprobs(["The capital of France is"], [" Paris"])[0]
    assert scores.greedy == [True]
    assert math.exp(scores.total) > 0.5
    answer = smol_backend.generate([as_chat("What is the capital of France?")], max_new_tokens=12)[0]
    assert "Paris" in answer
    assert smol_backend.choose([as_chat("Is Paris in France? Answer yes or no.")], [["yes", "no"]]) == [0]


def test_shared_prefix_loop_equals_transformers_generate(smol_backend):
    # Chat prompts share the system prompt (run once, its cache shared) and finish at different steps (rows
    # leave the batch): the answers must be exactly what transformers' own generate() gives for the same batch.
    backend = smol_backend
    prompts = [as_chat(q) for q in ("What is the capital of France?", "Say yes.",
                                    "Who wrote Hamlet? Answer with a name.", "Count from one to twenty.")]
    encoded = [backend._encode(p) for p in prompts]
    assert min(len(e) for e in encoded) > 8 and len({tuple(e[:8]) for e in encoded}) == 1
    ids, mask = backend._pad_left(encoded)
    with torch.no_grad():
        generated = backend.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=20, do_sample=False,
                                           pad_token_id=backend.tokenizer.pad_token_id)
    expected = [backend.tokenizer.decode(row[ids.shape[1]:], skip_special_tokens=True).strip() for row in generated]
    assert backend.generate(prompts, max_new_tokens=20) == expected
    # rows of different answer lengths: some finished early and left the batch
    lengths = [len(backend.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in expected]
    assert min(lengths) < 19 and max(lengths) >= 19
    # the prefix cache is reused across calls and gives the same result
    assert backend.generate(prompts[:2], max_new_tokens=20) == expected[:2]


def test_a_given_answer_start_is_continued(smol_backend):
    """A chat ending with an assistant message: the model continues it, and the answer includes it. Given the
    first words of the model's own greedy answer, the continued answer is that same answer."""
    question = as_chat("Fact: Friedrich Merz is the Chancellor of Germany.\nQuestion: Who is the Chancellor of "
                       "Germany?\nAnswer:")
    plain = smol_backend.generate([question], 16)[0]
    start = " ".join(plain.split()[:2])
    continued = smol_backend.generate([question + [{"role": "assistant", "content": start}]], 14)[0]
    assert plain.startswith(continued) and len(continued) > len(start)
    forced = smol_backend.generate([question + [{"role": "assistant", "content": "Olaf Scholz"}]], 8)[0]
    assert forced.startswith("Olaf Scholz") and len(forced) > len("Olaf Scholz")
