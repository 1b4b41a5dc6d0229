"""Typed hyper-parameters of the editing methods.

One dataclass per method family; the per-model defaults live in ``presets.py`` and any field can be
overridden by name through ``make_editor(method, model, tok, **overrides)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class CovarianceSettings:
    """Where the preserved keys K0 come from (C0 = K0 K0^T / n).

    corpus: "wikitext2" (the shared WikiText-2 raw test file; the default, falls back to "generated" when the
    file is absent), "generated" (text sampled from the model itself, always available offline), or a path to
    any UTF-8 text file.
    """

    corpus: str = "wikitext2"
    n_samples: int = 1000  # text chunks; the papers use 100k Wikipedia samples, we have ~300k tokens in all
    sample_tokens: int = 128  # tokens per chunk
    batch_size: int = 8
    show_progress: bool = True


@dataclass
class LocateEditHparams:
    """Shared by MEMIT, AlphaEdit and CoME (the ROME/MEMIT locate-then-edit family)."""

    layers: tuple[int, ...] = (4, 5, 6, 7, 8)
    # Target value z*: gradient descent on a delta added to the residual stream at the last edited layer.
    v_num_grad_steps: int = 25
    v_lr: float = 0.5
    v_weight_decay: float = 1e-3
    clamp_norm_factor: float = 4.0  # |delta| <= factor * |h|
    kl_factor: float = 0.0625  # keeps "{subject} is a" predictions unchanged
    v_loss_stop: float = 5e-2  # stop early once the mean target NLL is below this
    # Context templates: "{}" plus model-sampled prefixes, as in MEMIT (keys and z* are averaged over them).
    context_template_tokens: int = 10
    context_template_count: int = 5
    context_template_seed: int = 0
    # MEMIT's closed form: lambda in (lambda C0 + K1 K1^T)^-1.
    mom2_update_weight: float = 15000.0
    batch_size: int = 100  # requests per closed-form solve (apply() splits larger lists)
    covariance: CovarianceSettings = field(default_factory=CovarianceSettings)


@dataclass
class AlphaEditHparams(LocateEditHparams):
    nullspace_threshold: float = 2e-2  # eigenvalues of C0 below this span the preserved keys' null space
    l2: float = 10.0  # alpha in solve(P (K1 K1^T + cache_c) + alpha I, P K1 R^T)


@dataclass
class CoMEHparams(AlphaEditHparams):
    """CoME over AlphaEdit (``base="alphaedit"``) or over MEMIT (``base="memit"``)."""

    base: str = "alphaedit"
    unlearn_weight: float = 0.1  # a in z* = h + delta - a * delta_old + proj
    top_p_dims: float = 0.2  # fraction of dimensions (largest |h + delta|) where the correction applies
    old_steps_fraction: float = 0.5  # delta_old gets half the usual optimisation steps


@dataclass
class CodebookHparams:
    """BalancEdit (per-fact radius) and GRACE (one global radius) codebook adapters."""

    layer: int = 20
    radius_rule: str = "balanced"  # "balanced" (BalancEdit) or "global" (GRACE)
    balance: float = 0.5  # radius = farthest positive + balance * (nearest negative - farthest positive)
    global_radius: float = 3.0  # GRACE's single radius (same units as the key distances)
    value_steps: int = 40
    value_lr: float = 1.0
    value_loss_stop: float = 1e-2
    train_on_positives: bool = True  # also fit the value on the generated paraphrases
    # How the keyed prompts are rendered: "raw" text (completion, teacher forcing), "chat" (the question as a user
    # turn of the model's chat template, as chat APIs and the evaluator's generation mode ask it), or "both" (one
    # entry per fact and form). A key is read at the prompt's last token, so a raw key never matches a chat prompt.
    prompt_format: str = "both"


HPARAM_CLASSES = {
    "memit": LocateEditHparams,
    "alphaedit": AlphaEditHparams,
    "come": CoMEHparams,
    "come-memit": CoMEHparams,
    "balancedit": CodebookHparams,
    "grace": CodebookHparams,
}


def _typed(owner, name: str, value):
    """``value`` checked against the type of the field's current value in ``owner`` (an int is a valid float,
    a list of ints a valid tuple of layers); a TypeError names the field, the type and the value."""
    current = getattr(owner, name)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(current, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(current, int):
        ok, kind = is_int, "an integer"
    elif isinstance(current, float):
        ok, kind = is_int or isinstance(value, float), "a number"
        value = float(value) if ok else value
    elif isinstance(current, str):
        ok, kind = isinstance(value, str), "a string"
    elif isinstance(current, tuple):
        ok, kind = isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value), "a list of integers"
        value = tuple(value) if ok else value
    else:
        ok, kind = True, ""
    if not ok:
        raise TypeError(f"{type(owner).__name__}.{name} expects {kind}, got {value!r}")
    return value


def with_overrides(hparams, overrides: dict):
    """A copy of ``hparams`` with fields replaced; ``covariance`` accepts a dict or a CovarianceSettings.

    Keys of the covariance settings may also be given flat, e.g. ``n_samples=32``.
    """
    names = {f.name for f in dataclasses.fields(hparams)}
    cov_names = {f.name for f in dataclasses.fields(CovarianceSettings)}
    direct, cov = {}, {}
    for key, value in overrides.items():
        if key == "covariance" and isinstance(value, dict):
            cov.update(value)
        elif key in names:
            direct[key] = value if key == "covariance" else _typed(hparams, key, value)
        elif key in cov_names and "covariance" in names:
            cov[key] = value
        else:
            raise TypeError(f"{type(hparams).__name__} has no hyper-parameter '{key}'")
    out = dataclasses.replace(hparams, **direct)
    if cov:
        unknown = sorted(set(cov) - cov_names)
        if unknown:
            raise TypeError(f"CovarianceSettings has no setting {unknown[0]!r}")
        cov = {key: _typed(out.covariance, key, value) for key, value in cov.items()}
        out = dataclasses.replace(out, covariance=dataclasses.replace(out.covariance, **cov))
    return out
