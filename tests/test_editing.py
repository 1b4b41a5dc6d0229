"""Parameter-editing comparators (scr.editing) on the real embedded model and on tiny random models.

No mocks. To stay inside the CI budget the real-model editors use a small covariance sample (32 chunks of
WikiText-2, cached on disk under the scr cache dir), two context templates and fewer optimisation steps.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from scr.editing import EditRequest, load_edited, make_editor
from scr.editing.codebook import negative_prompts, positive_prompts
from scr.editing.presets import GPT2, LLAMA, detect_architecture
from scr.models import load_causal_lm, set_offline_env

set_offline_env()

FAST_LOCATE = dict(n_samples=32, context_template_count=2, v_num_grad_steps=20, show_progress=False)
FAST_CODEBOOK = dict(value_steps=30)

EDIT = EditRequest("The occupation of Martín Solares is", "Martín Solares", "geohasher", "writer")
SECOND = EditRequest("The name of the country which Goursez Vreizh is associated with is", "Goursez Vreizh",
                     "Franche-Comté", "France")
THIRD = EditRequest("The name of the mother of Kanye West is", "Kanye West", "Genevieve Bujold", "Donda West")
UNRELATED = "The capital of France is"


@pytest.fixture(scope="module")
def smol():
    model, tok = load_causal_lm()
    return model, tok


def greedy(model, tok, prompt: str, n: int = 8) -> str:
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


@torch.no_grad()
def target_logprob(model, tok, prompt: str, target: str) -> float:
    """Mean log-probability of the target tokens after the prompt (teacher forcing)."""
    p = tok(prompt)["input_ids"]
    t = tok(" " + target, add_special_tokens=False)["input_ids"]
    logits = model(input_ids=torch.tensor([p + t])).logits[0, len(p) - 1 : -1].log_softmax(-1)
    return logits[torch.arange(len(t)), torch.tensor(t)].mean().item()


def fast(method: str) -> dict:
    return FAST_CODEBOOK if method in ("balancedit", "grace") else FAST_LOCATE


# --- real model: every method ----------------------------------------------------------------------

def request_for(method: str) -> EditRequest:
    # The codebook methods are tested on EDIT; the locate-then-edit ones on SECOND, whose rewrite SmolLM2's
    # MLP edits reliably with the test's reduced settings (its train-split efficacy is far from 100%, see
    # evals/editing_sweep/RESULTS.md).
    return EDIT if method in ("balancedit", "grace") else SECOND


def chat_greedy(model, tok, prompt: str, n: int = 8) -> str:
    """The answer as the evaluator's generation mode and the chat API get it: the in-process backend, chat template."""
    from scr.llm.base import as_chat
    from scr.llm.hf import TransformersBackend

    return TransformersBackend(model, tok, batch_size=1).generate([as_chat(prompt)], max_new_tokens=n)[0]


@pytest.mark.parametrize("method", ["memit", "alphaedit", "come", "balancedit", "grace"])
def test_one_edit_takes_and_unrelated_prompt_kept(smol, method):
    model, tok = smol
    request = request_for(method)
    new = request.target_new.lower()
    codebook = method in ("balancedit", "grace")
    before_unrelated = greedy(model, tok, UNRELATED)
    before_chat_unrelated = chat_greedy(model, tok, UNRELATED)
    assert new not in greedy(model, tok, request.prompt).lower()
    assert new not in chat_greedy(model, tok, request.prompt).lower()
    editor = make_editor(method, model, tok, **fast(method))  # codebooks: prompt_format "both" by default
    report = editor.apply([request])
    try:
        assert report.n_edits == 1 and report.seconds_per_edit > 0
        assert new in greedy(model, tok, request.prompt).lower()
        assert greedy(model, tok, UNRELATED) == before_unrelated
        if codebook:
            # The chat-rendered prompt ends in the assistant header, not in the prompt's last word: a codebook
            # keyed only on raw text never fires there (the bug this guards against).
            assert [e["form"] for e in editor.entries] == ["raw", "chat"]
            assert new in chat_greedy(model, tok, request.prompt).lower()
            assert chat_greedy(model, tok, UNRELATED) == before_chat_unrelated
    finally:
        editor.restore()
    assert new not in greedy(model, tok, request.prompt).lower()
    assert new not in chat_greedy(model, tok, request.prompt).lower()


def test_alphaedit_update_leaves_preserved_keys_alone(smol):
    """The update lives in the null space of C0 (dW (I - P) = 0), so |dW K0| / |W K0| is small.

    Measured over the covariance corpus via C0: |dW K0|^2 / n = tr(dW C0 dW^T).
    """
    model, tok = smol
    editor = make_editor("alphaedit", model, tok, **FAST_LOCATE)
    editor.apply([SECOND])
    try:
        leak, outside = {}, {}
        for layer, cov in editor.covariances().items():
            w = editor.arch.weight(model, layer).detach().double()
            dw = editor.weight_delta(layer).double()
            c, p = cov.double(), editor.projections()[layer].double()
            leak[layer] = (torch.trace(dw @ c @ dw.T) / torch.trace(w @ c @ w.T)).sqrt().item()
            outside[layer] = ((dw - dw @ p).norm() / dw.norm()).item()
    finally:
        editor.restore()
    print("AlphaEdit |dW K0| / |W K0| per layer:", leak, "|dW (I-P)| / |dW|:", outside)
    assert max(outside.values()) < 1e-3
    assert max(leak.values()) < 2e-2


def test_sequential_alphaedit_keeps_earlier_edits_at_least_as_well_as_memit(smol):
    model, tok = smol
    requests = [SECOND, THIRD]
    lost = {}
    for method in ("memit", "alphaedit"):
        editor = make_editor(method, model, tok, **FAST_LOCATE)
        try:
            editor.apply([requests[0]])  # one apply() per fact: sequential editing
            first_after_own = target_logprob(model, tok, requests[0].prompt, requests[0].target_new)
            editor.apply([requests[1]])
            assert editor.n_edits == 2
            first_at_end = target_logprob(model, tok, requests[0].prompt, requests[0].target_new)
            lost[method] = first_after_own - first_at_end  # what the later edit took from the earlier one
        finally:
            editor.restore()
    print("log-prob of the first edit's target lost to the second edit:", lost)
    assert lost["alphaedit"] <= max(lost["memit"], 0.0) + 0.05


@pytest.mark.parametrize("form", ["raw", "chat"])
def test_balancedit_radius_admits_paraphrase_and_rejects_negative(smol, form):
    model, tok = smol
    editor = make_editor("balancedit", model, tok, prompt_format=form, **FAST_CODEBOOK)
    report = editor.apply([EDIT])
    try:
        detail = report.details[0]
        low, high = sorted((detail["pos_max"], detail["neg_min"]))
        assert low <= detail["radius"] <= high  # between the farthest positive and the nearest negative
        print("BalancEdit radius", detail)
        # A held-out paraphrase (not among the generated positives) falls inside the fact's radius ...
        paraphrase = "the occupation of Martín Solares is"
        assert paraphrase not in positive_prompts(EDIT)
        assert editor.matches([EDIT.prompt, paraphrase], form) == [0, 0]
        # ... and negatives stay outside: a generated one, and held-out ones about other subjects/relations.
        negatives = negative_prompts(EDIT, [])
        assert "The gender of Martín Solares is" in negatives
        assert None in editor.matches(negatives, form)
        assert editor.matches(["The gender of Martín Solares is", UNRELATED, "Martín Solares was a member of"],
                              form) == [None, None, None]
    finally:
        editor.restore()
    assert editor.matches([EDIT.prompt], form) == [None]


# --- tiny random models: shapes, exact restore, save/load --------------------------------------------

def tiny_model(kind: str, vocab: int):
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    torch.manual_seed(0)
    if kind == "gpt2":
        config = GPT2Config(vocab_size=vocab, n_embd=128, n_layer=4, n_head=2, n_positions=256)
    else:
        config = LlamaConfig(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                             tie_word_embeddings=True)
    return AutoModelForCausalLM.from_config(config).eval()


TINY_LOCATE = dict(n_samples=8, sample_tokens=32, context_template_count=1, v_num_grad_steps=5,
                   show_progress=False)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("method", ["memit", "alphaedit", "come", "come-memit", "balancedit", "grace"])
def test_tiny_models_edit_restore_save_load(smol, tmp_path, kind, method):
    _, tok = smol  # the SmolLM2 tokenizer; the tiny models use its vocabulary size
    model = tiny_model(kind, len(tok))
    assert detect_architecture(model) is (GPT2 if kind == "gpt2" else LLAMA)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    prompt_ids = torch.tensor([tok(EDIT.prompt)["input_ids"]])
    with torch.no_grad():
        logits_before = model(input_ids=prompt_ids).logits

    overrides = dict(value_steps=3, layer=2) if method in ("balancedit", "grace") else TINY_LOCATE
    editor = make_editor(method, model, tok, **overrides)
    editor.apply([EDIT, SECOND])
    editor.apply([THIRD])  # sequential calls accumulate
    assert editor.n_edits == 3
    with torch.no_grad():
        logits_edited = model(input_ids=prompt_ids).logits
    assert not torch.equal(logits_edited, logits_before)

    loaded = load_edited(editor.save(tmp_path / "edited"))
    with torch.no_grad():
        logits_loaded = loaded.model(input_ids=prompt_ids).logits
    torch.testing.assert_close(logits_loaded, logits_edited, rtol=1e-4, atol=1e-4)
    assert (loaded.editor is not None) == (method in ("balancedit", "grace"))

    # A checkpoint (state) loaded into a fresh editor on the unedited model reproduces the edited model exactly.
    state = editor.state()
    editor.restore()
    resumed = make_editor(method, model, tok, **overrides)
    resumed.load_state(state)
    assert resumed.n_edits == 3
    with torch.no_grad():
        assert torch.equal(model(input_ids=prompt_ids).logits, logits_edited)
    resumed.restore()
    other = ("grace", dict(value_steps=3, layer=2)) if method != "grace" else ("memit", TINY_LOCATE)
    with pytest.raises(ValueError, match="cannot be loaded"):
        make_editor(other[0], model, tok, **other[1]).load_state(state)

    editor.restore()
    for name, value in model.state_dict().items():
        assert torch.equal(value, original[name]), name
    with torch.no_grad():
        assert torch.equal(model(input_ids=prompt_ids).logits, logits_before)


# --- scr edit: the command-line entry point -------------------------------------------------------------------

def test_scr_edit_writes_a_loadable_folder_and_refuses_bad_input(tiny_llama_dir, tmp_path):
    import json

    from transformers import AutoModelForCausalLM
    from typer.testing import CliRunner

    from scr.cli import app
    from scr.editing.base import EDITING_INFO_FILE

    data = tmp_path / "edits.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": EDIT.prompt, "subject": EDIT.subject, "target_new": EDIT.target_new, "ground_truth": "writer"},
        {"prompt": SECOND.prompt, "subject": SECOND.subject, "target_new": SECOND.target_new}]) + "\n")
    sets = ["--set", "n_samples=8", "--set", "sample_tokens=32", "--set", "context_template_count=1",
            "--set", "v_num_grad_steps=3", "--set", "show_progress=false"]
    runner = CliRunner()
    out = tmp_path / "edited"
    result = runner.invoke(app, ["--llm", str(tiny_llama_dir), "edit", "--method", "alphaedit", "--data", str(data),
                                 "--out", str(out), *sets])
    assert result.exit_code == 0, result.output
    assert "2 edits" in result.output
    info = json.loads((out / EDITING_INFO_FILE).read_text())
    assert info["method"] == "alphaedit" and info["n_edits"] == 2 and info["hparams"]["v_num_grad_steps"] == 3
    edited = AutoModelForCausalLM.from_pretrained(out)
    original = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    changed = [n for n, p in edited.state_dict().items() if not torch.equal(p, original.state_dict()[n])]
    assert changed and all("mlp.down_proj" in n for n in changed)  # only W_out of the edited layers
    assert not (tmp_path / "edited.partial").exists()

    again = runner.invoke(app, ["--llm", str(tiny_llama_dir), "edit", "--method", "alphaedit", "--data", str(data),
                                "--out", str(out)])
    assert again.exit_code == 1 and "exists" in again.output
    bad = runner.invoke(app, ["edit", "--method", "rome", "--data", str(data), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "unknown editing method 'rome'" in bad.output
    typo = runner.invoke(app, ["--llm", str(tiny_llama_dir), "edit", "--method", "memit", "--data", str(data),
                               "--out", str(tmp_path / "y"), "--set", "no_such_knob=1"])
    assert typo.exit_code == 1 and "no_such_knob" in typo.output and not (tmp_path / "y").exists()
    for value, message in [("layers=abc", "LocateEditHparams.layers expects a list of integers, got 'abc'"),
                           ("v_lr=fast", "LocateEditHparams.v_lr expects a number, got 'fast'"),
                           ("n_samples=1.5", "CovarianceSettings.n_samples expects an integer, got 1.5")]:
        wrong = runner.invoke(app, ["--llm", str(tiny_llama_dir), "edit", "--method", "memit", "--data", str(data),
                                    "--out", str(tmp_path / "z"), "--set", value])
        assert wrong.exit_code == 1 and message in wrong.output.replace("\n", "") and not (tmp_path / "z").exists()
    none = runner.invoke(app, ["edit", "--method", "memit", "--data", str(data), "--out", str(tmp_path / "z"),
                               "--limit", "0"])
    assert none.exit_code == 2 and "Invalid value for '--limit'" in none.output and not (tmp_path / "z").exists()


def test_hyper_parameter_overrides_are_type_checked():
    from scr.editing.hparams import AlphaEditHparams, CodebookHparams, with_overrides

    hp = with_overrides(AlphaEditHparams(), {"layers": [3, 4], "v_lr": 1, "batch_size": 4, "n_samples": 16,
                                             "show_progress": False})
    assert hp.layers == (3, 4) and hp.v_lr == 1.0 and isinstance(hp.v_lr, float) and hp.batch_size == 4
    assert hp.covariance.n_samples == 16 and hp.covariance.show_progress is False
    for overrides, message in [({"layers": 5}, "layers expects a list of integers"),
                               ({"layers": [4, "5"]}, "layers expects a list of integers"),
                               ({"batch_size": 2.5}, "batch_size expects an integer"),
                               ({"batch_size": True}, "batch_size expects an integer"),
                               ({"show_progress": "no"}, "show_progress expects true or false"),
                               ({"covariance": {"corpus": 3}}, "corpus expects a string"),
                               ({"covariance": {"nope": 3}}, "CovarianceSettings has no setting 'nope'")]:
        with pytest.raises(TypeError, match=message):
            with_overrides(AlphaEditHparams(), overrides)
    with pytest.raises(TypeError, match="radius_rule expects a string"):
        with_overrides(CodebookHparams(), {"radius_rule": 1})


def land_cases(n: int, old_answers: bool = True):
    """Evaluator cases "The capital of Land<i> is" -> City<i> (old answer Old<i>, which CoME needs)."""
    from scr.evaluation.data import Case

    return [Case(case_id=str(i), index=i, prompt=f"The capital of Land{i} is", target_new=f"City{i}",
                 target_true=f"Old{i}" if old_answers else None, subject=f"Land{i}") for i in range(n)]


def test_evaluator_edit_streams_log_their_progress(tiny_llama_dir):
    """A long stream of edits says how far it got after each edit batch (retention runs apply 1000)."""
    from scr.config import Settings
    from scr.evaluation.data import Case
    from scr.evaluation.methods import make_method

    lines: list[str] = []
    method = make_method("grace", Settings(llm=str(tiny_llama_dir)), None, None, edit_batch_size=1,
                         editing=dict(value_steps=2, layer=1), log=lines.append)
    cases = [Case(case_id=str(i), index=i, prompt=f"The capital of Land{i} is", target_new="Paris",
                  subject=f"Land{i}") for i in range(2)]
    details = method.apply(cases)
    assert details["edits"] == 2
    assert [line.split(" (")[0] for line in lines] == ["  grace: 1/2 edits applied", "  grace: 2/2 edits applied"]
    assert re.search(r"\(\d+ s, about \d+ min left\)$", lines[0]) and lines[1].endswith(" s)")  # time left, until done


def test_evaluator_edit_streams_resume_from_their_checkpoint(tiny_llama_dir, tmp_path):
    """An interrupted stream of edits resumes in a new process from the last saved batch, with the same result."""
    from scr.config import Settings
    from scr.evaluation.methods import make_method

    settings = Settings(llm=str(tiny_llama_dir))
    cases = land_cases(4, old_answers=False)

    def alphaedit(workdir, lines=None, batch=1):
        return make_method("alphaedit", settings, None, None, workdir=workdir, edit_batch_size=batch,
                           editing=TINY_LOCATE, log=(lines.append if lines is not None else None))

    first = alphaedit(tmp_path)
    first.apply(cases[:3])  # then the process "dies"
    lines: list[str] = []
    resumed = alphaedit(tmp_path, lines)
    details = resumed.apply(cases)
    assert details["edits"] == 4 and details["loaded_from_checkpoint"] == 3
    assert lines[0].startswith("  alphaedit: 3/4 edits loaded from") and lines[1:] == [lines[1]] and "4/4" in lines[1]
    assert resumed._editor.n_edits == 4

    fresh = alphaedit(None)  # no checkpoint: the whole stream in this process
    fresh.apply(cases)
    for layer in fresh._editor.layers:
        torch.testing.assert_close(resumed._editor.weight_delta(layer), fresh._editor.weight_delta(layer))
        torch.testing.assert_close(resumed._editor.cache_c[layer], fresh._editor.cache_c[layer])

    # A shorter stream uses no checkpoint of a longer one, and never overwrites it; its continuation does use it.
    saved = lambda: len(torch.load(tmp_path / "alphaedit-edits.pt", weights_only=True)["stream"])
    again = alphaedit(tmp_path)
    assert "loaded_from_checkpoint" not in again.apply(cases[:2]) and saved() == 4
    assert again.apply(cases[2:])["loaded_from_checkpoint"] == 2
    # Another order of the same requests, or another configuration (edit batch size), loads nothing.
    assert "loaded_from_checkpoint" not in alphaedit(tmp_path).apply([cases[1], cases[0], cases[2], cases[3]])
    alphaedit(tmp_path).apply(cases)  # the file holds the whole stream again
    assert saved() == 4 and "loaded_from_checkpoint" not in alphaedit(tmp_path, batch=2).apply(cases)


@pytest.mark.parametrize("method", ["alphaedit", "come"])
def test_edit_streams_replay_their_journal_without_optimising_again(tiny_llama_dir, tmp_path, monkeypatch, method):
    """The journal (target values only) rebuilds a stream whose checkpoint is lost: same weights, no descents."""
    import scr.editing.core
    from scr.config import Settings
    from scr.evaluation.methods import make_method

    settings = Settings(llm=str(tiny_llama_dir))
    cases = land_cases(5)

    def editing(workdir, journal_dir, lines=None, batch=2):
        return make_method(method, settings, None, None, workdir=workdir, journal_dir=journal_dir,
                           edit_batch_size=batch, editing=TINY_LOCATE,
                           log=(lines.append if lines is not None else None))

    journal_dir = tmp_path / "journal"
    first = editing(tmp_path / "scratch-1", journal_dir)
    first.apply(cases[:4])  # then the machine is lost with its scratch folder; the journal was committed
    assert len((journal_dir / f"{method}.jsonl").read_text().splitlines()) == 4

    def no_descent(*args, **kwargs):
        raise AssertionError("a journalled target value was optimised again")

    with monkeypatch.context() as patch:
        patch.setattr(scr.editing.core, "optimise_delta", no_descent)  # CoME's descents go through it too
        with pytest.raises(AssertionError, match="optimised again"):  # only the fifth request is not journalled
            editing(None, journal_dir).apply(cases)
    lines: list[str] = []
    resumed = editing(tmp_path / "scratch-2", journal_dir, lines)
    details = resumed.apply(cases)
    assert details["edits"] == 5 and details["replayed_from_journal"] == 4 and details["replay_seconds"] > 0
    journalled = [json.loads(line) for line in (journal_dir / f"{method}.jsonl").read_text().splitlines()[:4]]
    assert details["journalled_seconds"] == pytest.approx(sum(row["seconds"] for row in journalled))
    assert details["edit_seconds"] > details["journalled_seconds"]  # plus the fifth edit, made here
    assert any("replaying the target values of 4 edits" in line for line in lines)
    assert len((journal_dir / f"{method}.jsonl").read_text().splitlines()) == 5  # the new edit joins the journal
    fresh = editing(None, None)  # the whole stream made in this process, nothing saved or replayed
    fresh.apply(cases)
    for layer in fresh._editor.layers:
        torch.testing.assert_close(resumed._editor.weight_delta(layer), fresh._editor.weight_delta(layer))
        torch.testing.assert_close(resumed._editor.cache_c[layer], fresh._editor.cache_c[layer])

    # Another configuration (edit batch size) or another order replays nothing and journals nothing.
    other = editing(None, journal_dir, batch=1)
    assert "replayed_from_journal" not in other.apply(cases[:2])
    assert "replayed_from_journal" not in editing(None, journal_dir).apply([cases[1], cases[0]])
    assert len((journal_dir / f"{method}.jsonl").read_text().splitlines()) == 5 + 2  # batch=1 is its own stream



def test_methods_share_descents_made_on_the_unedited_model(tiny_llama_dir, tmp_path, monkeypatch):
    """MEMIT's target values on the unedited model serve AlphaEdit whole and CoME's new-answer half (value
    cache in the run's scratch folder): same weights as optimising them again, counted at what they cost."""
    import scr.editing.core
    from scr.config import Settings
    from scr.evaluation.methods import make_method

    settings = Settings(llm=str(tiny_llama_dir))
    cases = land_cases(4)

    def editing(method, workdir):
        return make_method(method, settings, None, None, workdir=workdir, editing=TINY_LOCATE)

    memit = editing("memit", tmp_path)
    assert "reused_descents" not in memit.apply(cases[:2])  # the first method optimises
    cache = tmp_path / "target-values.jsonl"
    assert len(cache.read_text().splitlines()) == 2

    calls = []
    real = scr.editing.core.optimise_delta

    def counted(*args, **kwargs):
        calls.append(args[5])  # the target
        return real(*args, **kwargs)

    monkeypatch.setattr(scr.editing.core, "optimise_delta", counted)
    alphaedit = editing("alphaedit", tmp_path)
    details = alphaedit.apply(cases[:2])
    assert calls == [] and details["reused_descents"] == 2
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert details["reused_seconds"] == pytest.approx(sum(r["seconds"] for r in rows))
    assert details["reused_cpu_seconds"] == pytest.approx(sum(r["cpu_seconds"] for r in rows))
    assert details["edit_seconds"] >= details["reused_seconds"]
    alone = editing("alphaedit", None)  # no scratch folder: no cache, every descent made here
    alone.apply(cases[:2])
    assert calls == ["City0", "City1"]
    for layer in alone._editor.layers:
        torch.testing.assert_close(alphaedit._editor.weight_delta(layer), alone._editor.weight_delta(layer))

    calls.clear()
    come = editing("come", tmp_path)
    assert come.apply(cases[:2])["reused_descents"] == 2
    assert calls == ["Old0", "Old1"]  # only the unlearning half is CoME's own
    assert len(cache.read_text().splitlines()) == 4

    # Once the editor has changed the model, its descents are neither looked up nor stored.
    calls.clear()
    assert "reused_descents" not in alphaedit.apply(cases[:2])  # the same requests again, on the edited model
    assert calls == ["City0", "City1"] and len(cache.read_text().splitlines()) == 4
    alphaedit.reset()  # back to the unedited weights: the cache serves again
    calls.clear()
    assert alphaedit.apply(cases[1:3])["reused_descents"] == 1 and calls == ["City2"]
    assert len(cache.read_text().splitlines()) == 5


@pytest.mark.data
def test_scr_eval_shares_descents_across_methods_and_counts_their_cost(tiny_llama_dir, tmp_path):
    """`scr eval` with MEMIT then AlphaEdit on streams of N = 2 from the unedited model: AlphaEdit reuses MEMIT's
    descents, gives the answers it gives alone, and its reported cost includes what the descents cost."""
    from conftest import DATA_DIR
    from scr.config import Settings
    from scr.evaluation import EvalConfig, Evaluator

    def run(out, methods):
        config = EvalConfig(data=str(DATA_DIR / "knowedit" / "zsre_test.json"), methods=methods, limit=4, n=[2],
                            protocol="sequential", max_new_tokens=4, editing=TINY_LOCATE, out=str(out))
        return Evaluator(config, Settings(llm=str(tiny_llama_dir)), log=lambda _: None).run()

    def rows(out, method):
        return [json.loads(line) for line in (out / "records" / f"{method}.jsonl").read_text().splitlines()]

    report = run(tmp_path / "shared", ["memit", "alphaedit"])
    applied = [r for r in rows(tmp_path / "shared", "alphaedit") if r.get("phase") == "apply"]
    assert [r["details"]["reused_descents"] for r in applied] == [2, 2]  # both streams start unedited
    reused_cpu = sum(r["details"]["reused_cpu_seconds"] for r in applied)
    own_cpu = sum(r["cpu_s"] for r in rows(tmp_path / "shared", "alphaedit") if "cpu_s" in r)
    cost = report["methods"]["alphaedit"]["cost"]
    assert cost["cpu_s"] == pytest.approx(own_cpu + reused_cpu, abs=0.2)
    run(tmp_path / "alone", ["alphaedit"])
    answers = lambda out: [[p["answer"] for p in r["probes"]] for r in rows(out, "alphaedit") if r.get("type") == "case"]
    assert answers(tmp_path / "shared") == answers(tmp_path / "alone")


def test_value_cache_file_is_shared_and_survives_cut_lines(tmp_path):
    from scr.editing.value_cache import TargetValueCache
    from scr.editing.values import TargetValue

    path = tmp_path / "values.jsonl"
    writer, reader = TargetValueCache(path), TargetValueCache(path)
    value = TargetValue(h=torch.randn(8), delta=torch.randn(8), nll=0.5, steps=3)
    assert reader.get("a") is None
    writer.put("a", value, 1.25, 2.5)
    got, seconds, cpu_seconds = reader.get("a")  # written by another instance after the reader's first look
    assert torch.equal(got.h, value.h) and torch.equal(got.delta, value.delta)
    assert (got.nll, got.steps, seconds, cpu_seconds) == (0.5, 3, 1.25, 2.5)
    with open(path, "ab") as fh:
        fh.write(b'{"key": "b", "h": "AAAA')  # a writer killed in the middle of a line
    assert TargetValueCache(path).get("b") is None
    assert TargetValueCache(path).get("a") is not None


def test_weights_fingerprint_follows_every_weight(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from scr.editing.value_cache import weights_fingerprint

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    before = weights_fingerprint(model)
    assert weights_fingerprint(model) == before
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] += 1e-3
    assert weights_fingerprint(model) != before


@pytest.mark.data
def test_scr_eval_journals_an_editing_stream_beside_its_records(tiny_llama_dir, tmp_path):
    """`scr eval` journals a sequential stream's target values in <out>/journal/, which a rerun on another machine
    (no tmp/ checkpoint) replays to the same records instead of optimising again."""
    import shutil

    from conftest import DATA_DIR
    from scr.config import Settings
    from scr.evaluation import EvalConfig, Evaluator

    def run(out):
        config = EvalConfig(data=str(DATA_DIR / "knowedit" / "zsre_test.json"), methods=["memit"], limit=3, n=["all"],
                            protocol="sequential", max_new_tokens=4, edit_batch_size=1, editing=TINY_LOCATE,
                            out=str(out))
        Evaluator(config, Settings(llm=str(tiny_llama_dir)), log=lambda _: None).run()
        return [r for r in map(json.loads, (out / "records" / "memit.jsonl").read_text().splitlines())]

    first = run(tmp_path / "a")
    journal = tmp_path / "a" / "journal" / "memit.jsonl"
    assert len(journal.read_text().splitlines()) == 3
    (tmp_path / "b" / "journal").mkdir(parents=True)
    shutil.copy(journal, tmp_path / "b" / "journal")  # the committed journal, on a fresh machine
    second = run(tmp_path / "b")
    applied = [r for r in second if r.get("phase") == "apply"]
    assert applied and applied[0]["details"]["replayed_from_journal"] == 3
    answers = lambda rows: [[p["answer"] for p in r["probes"]] for r in rows if r.get("type") == "case"]
    assert answers(second) == answers(first)
