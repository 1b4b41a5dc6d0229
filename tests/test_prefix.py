"""Prompts that share a prefix (the same fact in context) run it once: the grouping, and answers unchanged."""

from __future__ import annotations

import torch

from scr import prompts
from scr.llm import as_chat
from scr.llm.prefix import MIN_GROUP_TOKENS, common_prefix_length, group_prefix_lengths


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5], [6]]) == 0
    assert common_prefix_length([[1, 2, 3]]) == 3


def test_groups_are_the_rows_that_share_a_long_prefix():
    system = [9, 9, 9]
    fact_a = [1, 2, 3, 4, 5, 6]
    fact_b = [1, 2, 7, 8, 9, 10]
    rows = [system + fact_a + [20, 21], system + [30, 31], system + fact_b + [22], system + fact_a + [23],
            system + fact_b + [24, 25], system + fact_a + [26]]
    lengths = group_prefix_lengths(rows)
    # the three rows with fact A share system + fact A; the two with fact B likewise; the plain row is alone
    assert lengths == [9, 0, 9, 9, 9, 9]
    # a prefix only MIN_GROUP_TOKENS - 1 longer than what every row shares is not worth a group
    short = [system + [1] * (MIN_GROUP_TOKENS - 1) + [k] for k in (40, 41, 42)] + [system + [50]]
    assert group_prefix_lengths(short) == [0, 0, 0, 0]


def test_a_group_leaves_every_row_a_token_of_its_own():
    rows = [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8, 9], [0]]
    lengths = group_prefix_lengths(rows)
    assert lengths[:3] == [7, 7, 7] and lengths[3] == 0
    assert group_prefix_lengths([]) == [] and group_prefix_lengths([[1, 2]]) == [0]


def test_the_grouping_saves_the_most_tokens():
    # Rows 0-3 share 12 tokens, rows 2-3 share 20; row 4 shares nothing (so nothing is common to all rows).
    # One group of four saves 3 * 12 = 36 tokens, two pairs 12 + 20 = 32: the group of four wins.
    head = list(range(100, 112))
    rows = [head + [1], head + [2], head + list(range(200, 208)) + [3], head + list(range(200, 208)) + [4], [7]]
    assert group_prefix_lengths(rows) == [12, 12, 12, 12, 0]
    # with 52 tokens shared by rows 2-3, two pairs save 12 + 52 = 64 > 36: the pairs win
    rows[2:4] = [head + list(range(200, 240)) + [3], head + list(range(200, 240)) + [4]]
    assert group_prefix_lengths(rows) == [12, 12, 52, 52, 0]


def test_grouped_generation_equals_transformers_generate_prompt_by_prompt(smol_backend):
    # The evaluator's shape: several questions answered with the same fact in context (one group per fact),
    # beside plain questions. Group prefixes are run once and their cache copied into each row, rows are padded
    # in two places, and the padding is dropped before decoding: the answers must be exactly what
    # transformers' own generate() gives for each prompt alone.
    backend = smol_backend
    facts = {"The mother tongue of Danielle Darrieux is English.": [
                 "What is the mother tongue of Danielle Darrieux?", "Danielle Darrieux's first language is",
                 "Which language did Danielle Darrieux grow up speaking?"],
             "The capital of Australia is Sydney.": ["What is the capital of Australia?",
                                                     "Which city is Australia's capital?"]}
    chats = [as_chat(prompts.paper_answer(fact, q)) for fact, questions in facts.items() for q in questions]
    chats += [as_chat("Who wrote Hamlet?"), as_chat("What is the capital of France?")]
    encoded = [backend._encode(p) for p in chats]
    lengths = group_prefix_lengths(encoded)
    system = common_prefix_length(encoded)
    assert all(g > system + MIN_GROUP_TOKENS for g in lengths[:5]) and lengths[5:] == [0, 0]
    assert lengths[0] == lengths[1] == lengths[2] != lengths[3] == lengths[4]
    expected = []
    for ids in encoded:
        with torch.no_grad():
            out = backend.model.generate(input_ids=torch.tensor([ids]), max_new_tokens=16, do_sample=False,
                                         pad_token_id=backend.tokenizer.pad_token_id)
        expected.append(backend.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip())
    assert backend.generate(chats, max_new_tokens=16) == expected
    # the fact is read: the in-context answers follow the facts, not the model's own knowledge
    assert "English" in expected[0] and "Sydney" in expected[3]


def test_a_changed_model_does_not_reuse_cached_prefix_keys(tiny_llama_dir):
    # The system prompt's keys/values are cached across calls. An edit writes the weights in place, and the edited
    # model must answer exactly as a backend that never saw the model before the edit.
    from scr.llm.hf import TransformersBackend

    chats = [as_chat("Who wrote Hamlet?"), as_chat("What is the capital of France?")]
    backend = TransformersBackend.load(str(tiny_llama_dir), batch_size=4)
    before = backend.generate(chats, max_new_tokens=8)
    assert backend._prefixes  # the shared system prompt was cached
    weight = backend.model.model.layers[0].mlp.down_proj.weight
    original = weight.detach().clone()
    with torch.no_grad():
        weight.mul_(-3.0)  # an in-place write, like an edit
    fresh = TransformersBackend(backend.model, backend.tokenizer, batch_size=4).generate(chats, max_new_tokens=8)
    assert fresh != before  # the change matters to the answers, so a stale cache would show
    assert backend.generate(chats, max_new_tokens=8) == fresh
    with torch.no_grad():
        weight.copy_(original)  # undoing the edit is a change too
    assert backend.generate(chats, max_new_tokens=8) == before
    # A change the state cannot see (what an attached hook does, not whether one is attached) needs the call.
    handle = backend.model.model.layers[0].register_forward_hook(lambda m, a, out: out)
    assert backend.generate(chats, max_new_tokens=8) == before
    handle.remove()
    backend.clear_prefix_cache()
    assert not backend._prefixes
