"""The scope cross-encoder: adapters, the shipped file, its decisions on facts it was never trained on."""

from __future__ import annotations

import pytest
import torch

from scr.kb.records import FactHit
from scr.scope import EncoderScope, SimilarityScope, make_scope_checker
from scr.scope_encoder import DEFAULT_ENCODER_PATH, EncoderInfo, ScopeEncoder, read_info


@pytest.fixture(scope="module")
def shipped():
    return ScopeEncoder.load()


def test_fresh_adapters_leave_the_base_encoder_unchanged():
    """LoRA's B starts at zero, so before training the encoder computes exactly what the base model does."""
    from transformers import AutoModel

    from scr.models import resolve_embedder

    model = ScopeEncoder(EncoderInfo(base="all-minilm-l6-v2"))
    base = AutoModel.from_pretrained(resolve_embedder("all-minilm-l6-v2")).eval()
    enc = model.tokenizer(["Who runs Northwind Labs?"], ["The CEO of Northwind Labs is Priya Natarajan."],
                          return_tensors="pt")
    with torch.no_grad():
        ours = model.bert(**enc).last_hidden_state
        theirs = base(**enc).last_hidden_state
    torch.testing.assert_close(ours, theirs)
    trainable = model.trainable()
    assert trainable and all(n.startswith("head.") or "lora_" in n for n in trainable)
    assert sum(p.numel() for p in trainable.values()) < 0.05 * sum(p.numel() for p in model.parameters())


def test_a_few_training_steps_separate_a_pair_from_its_negative():
    torch.manual_seed(0)
    model = ScopeEncoder(EncoderInfo(base="all-minilm-l6-v2", rank=4, alpha=8))
    q = ["Who is the CEO of Northwind Labs?"] * 2
    f = ["The CEO of Northwind Labs is Priya Natarajan.", "The price of the Helios-3 battery is 4,500 euros."]
    labels = torch.tensor([1.0, 0.0])
    opt = torch.optim.AdamW(model.trainable().values(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model.logits(q, f), labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    p = model.probabilities(q, f)
    assert p[0] > 0.5 > p[1]


def test_save_and_load_round_trip(tmp_path):
    model = ScopeEncoder(EncoderInfo(base="all-minilm-l6-v2", rank=2, alpha=4, threshold=0.7, trained_on="test"))
    with torch.no_grad():
        for p in model.trainable().values():
            p.normal_(0, 0.02)
    path = tmp_path / "enc.safetensors"
    model.save(path)
    again = ScopeEncoder.load(path)
    assert again.info == model.info and read_info(path).threshold == 0.7
    q, f = ["Who runs Northwind Labs?"], ["The CEO of Northwind Labs is Priya Natarajan."]
    assert again.probabilities(q, f)[0] == pytest.approx(model.probabilities(q, f)[0], abs=1e-6)


def test_bad_adapter_files_are_refused_with_the_path(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors: not a scope-encoder adapter file"):
        ScopeEncoder.load(junk)
    with pytest.raises(ValueError, match="not a scope-encoder adapter file"):
        ScopeEncoder.load(tmp_path / "missing.safetensors")
    other_rank = ScopeEncoder(EncoderInfo(base="all-minilm-l6-v2", rank=2))
    path = tmp_path / "rank2.safetensors"
    other_rank.save(path)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    tensors.pop("head.bias")
    save_file(tensors, str(tmp_path / "cut.safetensors"), metadata={"scope_encoder": '{"base": "all-minilm-l6-v2", "rank": 2}'})
    with pytest.raises(ValueError, match="do not match"):
        ScopeEncoder.load(tmp_path / "cut.safetensors")


def test_shipped_encoder_was_trained_on_train_splits_only():
    info = read_info(DEFAULT_ENCODER_PATH)
    assert info.base == "all-minilm-l6-v2" and 0.0 < info.threshold < 1.0
    assert "train" in info.trained_on and "test" not in info.trained_on


# Facts and questions written for these tests (not from any benchmark): a paraphrase must be accepted, a question
# about the same subject but another relation, or another subject, rejected.
NORTHWIND = "The CEO of Northwind Labs is Priya Natarajan."
IN_SCOPE = [("Who is the CEO of Northwind Labs?", NORTHWIND),
            ("The chief executive of Northwind Labs is", NORTHWIND),
            ("The name of the spouse of Marta Kowalczyk is", "The name of the spouse of Marta Kowalczyk is Tomasz Lis."),
            ("Which river flows through Velgrad?", "The river that flows through Velgrad is the Drava.")]
OUT_OF_SCOPE = [("Where is the headquarters of Northwind Labs?", NORTHWIND),
                ("The name of the mother of Marta Kowalczyk is", "The name of the spouse of Marta Kowalczyk is Tomasz Lis."),
                ("Who is the CEO of Apple?", NORTHWIND),
                ("What is the capital of France?", NORTHWIND)]


def test_shipped_encoder_accepts_paraphrases_and_rejects_other_relations_and_subjects(shipped):
    qs, fs = zip(*(IN_SCOPE + OUT_OF_SCOPE))
    p = shipped.probabilities(qs, fs)
    t = shipped.info.threshold
    accepted = [bool(x >= t) for x in p]
    assert accepted == [True] * len(IN_SCOPE) + [False] * len(OUT_OF_SCOPE), list(zip(qs, p.round(3)))


def hit(text, key_score=0.5):
    return FactHit(id=text[:8], text=text, score=key_score, key_score=key_score)


def test_encoder_scope_picks_the_most_probable_fact_or_none(shipped, smol_backend):
    scope = make_scope_checker("encoder", smol_backend, encoder=shipped)
    assert isinstance(scope, EncoderScope) and scope.threshold == shipped.info.threshold
    price = "The price of the Helios-3 battery is 4,500 euros."
    # The right fact ranks below an unrelated one by similarity: the encoder still picks it.
    decisions = scope.decide(["Who is the CEO of Northwind Labs?", "What is the capital of France?", "anything"],
                             [[hit(price, 0.9), hit(NORTHWIND, 0.4)], [hit(price), hit(NORTHWIND)], []])
    assert decisions[0].fact_index == 1 and decisions[0].probability >= scope.threshold
    assert not decisions[1].in_scope and decisions[1].probability < scope.threshold
    assert decisions[2].fact_index is None and decisions[2].probability is None
    strict = make_scope_checker("encoder", smol_backend, encoder=shipped, min_probability=1.0)
    assert not strict.decide(["Who is the CEO of Northwind Labs?"], [[hit(NORTHWIND)]])[0].in_scope
    assert isinstance(make_scope_checker("similarity", smol_backend, 0.5), SimilarityScope)
