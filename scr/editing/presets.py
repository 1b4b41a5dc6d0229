"""Architecture presets: where the blocks and the MLP output projection W_out live, and per-model defaults.

Every locate-then-edit method writes W_out, seen as a matrix [out=hidden, in=mlp_hidden]:
  * Llama family (SmolLM2, Llama-2/3, Mistral, Qwen2/3): ``model.layers[i].mlp.down_proj``, nn.Linear [out, in]
  * GPT-2: ``transformer.h[i].mlp.c_proj``, Conv1D whose weight is stored transposed, [in, out]
  * GPT-J: ``transformer.h[i].mlp.fc_out``, nn.Linear [out, in]
Layers and hyper-parameters for GPT-2 XL, GPT-J and Llama-3-8B are the papers' (MEMIT / AlphaEdit configs);
SmolLM2-135M's were chosen by the sweep in ``evals/editing_sweep/`` on the KnowEdit train split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from scr.editing.hparams import HPARAM_CLASSES, CodebookHparams, with_overrides


@dataclass(frozen=True)
class Architecture:
    family: str
    blocks_path: str  # dotted path from the model to the ModuleList of transformer blocks
    mlp_out_path: str  # dotted path from one block to W_out
    transposed: bool  # True for GPT-2's Conv1D, whose weight is [in, out]

    def blocks(self, model) -> torch.nn.ModuleList:
        return model.get_submodule(self.blocks_path)

    def block(self, model, layer: int) -> torch.nn.Module:
        return self.blocks(model)[layer]

    def mlp_out(self, model, layer: int) -> torch.nn.Module:
        return self.block(model, layer).get_submodule(self.mlp_out_path)

    def n_layers(self, model) -> int:
        return len(self.blocks(model))

    def weight(self, model, layer: int) -> torch.Tensor:
        """W_out as [out, in] (a view: writing into it writes the model)."""
        w = self.mlp_out(model, layer).weight
        return w.T if self.transposed else w

    def key_dim(self, model, layer: int) -> int:
        return self.weight(model, layer).shape[1]


LLAMA = Architecture("llama", "model.layers", "mlp.down_proj", transposed=False)
GPT2 = Architecture("gpt2", "transformer.h", "mlp.c_proj", transposed=True)
GPTJ = Architecture("gptj", "transformer.h", "mlp.fc_out", transposed=False)

_FAMILY_BY_MODEL_TYPE = {
    "gpt2": GPT2,
    "gptj": GPTJ,
    **{t: LLAMA for t in ("llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo", "olmo2", "gemma", "gemma2")},
}


def detect_architecture(model) -> Architecture:
    """The preset for a model, by ``config.model_type``, else by probing for a Llama-shaped or GPT-2 layout."""
    arch = _FAMILY_BY_MODEL_TYPE.get(getattr(model.config, "model_type", ""))
    if arch is not None:
        return arch
    for candidate in (LLAMA, GPT2, GPTJ):
        try:
            candidate.mlp_out(model, 0)
            return candidate
        except (AttributeError, IndexError):
            continue
    raise ValueError(f"unknown architecture {type(model).__name__}: no MLP output projection found")


def model_key(model) -> str:
    """A known model's preset name from its shape, or "generic"."""
    c = model.config
    mtype = getattr(c, "model_type", "")
    n_layers = getattr(c, "num_hidden_layers", None) or getattr(c, "n_layer", None)
    hidden = getattr(c, "hidden_size", None) or getattr(c, "n_embd", None)
    if mtype == "gpt2" and (n_layers, hidden) == (48, 1600):
        return "gpt2-xl"
    if mtype == "gptj" and (n_layers, hidden) == (28, 4096):
        return "gpt-j-6b"
    if mtype == "llama" and (n_layers, hidden) == (32, 4096) and getattr(c, "vocab_size", 0) == 128256:
        return "llama-3-8b"
    if mtype == "llama" and (n_layers, hidden) == (30, 576):
        return "smollm2-135m"
    return "generic"


# Per model: hyper-parameters shared by the locate-then-edit methods, then per-method extras.
# gpt2-xl / gpt-j-6b: MEMIT's released configs; llama-3-8b: AlphaEdit's released config.
_LOCATE_PRESETS = {
    "gpt2-xl": dict(layers=(13, 14, 15, 16, 17), v_num_grad_steps=20, v_lr=0.5, v_weight_decay=0.5,
                    clamp_norm_factor=0.75, mom2_update_weight=20000.0),
    "gpt-j-6b": dict(layers=(3, 4, 5, 6, 7, 8), v_num_grad_steps=25, v_lr=0.5, v_weight_decay=0.5,
                     clamp_norm_factor=0.75, mom2_update_weight=15000.0),
    "llama-3-8b": dict(layers=(4, 5, 6, 7, 8), v_num_grad_steps=25, v_lr=0.1, v_weight_decay=1e-3,
                       clamp_norm_factor=4.0, mom2_update_weight=15000.0),
    # Chosen by evals/editing_sweep/sweep_smollm2.py on KnowEdit wiki_counterfact *train* (see RESULTS.md):
    # lambda 15000 barely edits SmolLM2 (its keys are small), 2000 has the best efficacy/locality balance.
    "smollm2-135m": dict(layers=(2, 3, 4, 5, 6), v_num_grad_steps=25, v_lr=0.5, v_weight_decay=1e-3,
                         clamp_norm_factor=4.0, mom2_update_weight=2000.0),
}
_ALPHAEDIT_PRESETS = {
    "llama-3-8b": dict(nullspace_threshold=2e-2, l2=10.0),
    "gpt2-xl": dict(nullspace_threshold=2e-2, l2=10.0),
    "gpt-j-6b": dict(nullspace_threshold=2e-2, l2=10.0),
    "smollm2-135m": dict(nullspace_threshold=2e-2, l2=10.0),
}
# Codebook layer: GRACE's EasyEdit configs edit a late MLP (gpt2-xl h.35, gpt-j h.25, llama 27 of 32).
_CODEBOOK_PRESETS = {
    "gpt2-xl": dict(layer=35),
    "gpt-j-6b": dict(layer=25),
    "llama-3-8b": dict(layer=27),
    "smollm2-135m": dict(layer=20),
}


def _generic_locate(n_layers: int) -> dict:
    """Unknown model: five consecutive early-middle layers at the same depth as Llama-3-8B's 4-8 of 32."""
    first = max(0, round(n_layers * 4 / 32))
    count = min(5, n_layers - first)
    return dict(layers=tuple(range(first, first + count)))


def default_hparams(method: str, model, **overrides):
    """The preset hyper-parameters of ``method`` for ``model``, with ``overrides`` applied."""
    method = method.lower()
    if method not in HPARAM_CLASSES:
        raise ValueError(f"unknown editing method '{method}'; choose from {sorted(HPARAM_CLASSES)}")
    cls = HPARAM_CLASSES[method]
    key = model_key(model)
    n_layers = detect_architecture(model).n_layers(model)
    if cls is CodebookHparams:
        values = _CODEBOOK_PRESETS.get(key, dict(layer=max(0, round(n_layers * 27 / 32))))
        if method == "grace":
            values = {**values, "radius_rule": "global"}
    else:
        values = dict(_LOCATE_PRESETS.get(key) or _generic_locate(n_layers))
        if method != "memit":
            values.update(_ALPHAEDIT_PRESETS.get(key, {}))
        if method == "come-memit":
            values["base"] = "memit"
    names = {f.name for f in dataclasses.fields(cls)}
    hparams = cls(**{k: v for k, v in values.items() if k in names})
    return with_overrides(hparams, overrides)
