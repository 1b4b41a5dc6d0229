"""Seconds per edit of each editing method on the embedded model (SmolLM2-135M, CPU), and C0's one-off cost.

    python benchmarks/bench_editing.py                       # every method, preset hyper-parameters
    python benchmarks/bench_editing.py --methods memit grace --cov-samples 250

Edits come from the KnowEdit wiki_counterfact TRAIN split. Batch 1 = one apply() of one request; batch 10 =
one apply() of ten (MEMIT/AlphaEdit/CoME solve them together; BalancEdit/GRACE add them one by one).
The covariance cost is measured without the disk cache (it is a one-off: later runs load it in milliseconds);
with --cov-samples below the preset it is also extrapolated linearly to the preset sample count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import torch

from scr.editing import METHODS, EditRequest, default_hparams, detect_architecture, make_editor
from scr.editing.covariance import compute_key_covariances, key_covariances, shared_data_dir
from scr.models import load_causal_lm, set_offline_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=[m for m in METHODS if m != "come-memit"])
    parser.add_argument("--cov-samples", type=int, default=None, help="chunks for the timed C0 (default: preset)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    set_offline_env()
    if args.threads:
        torch.set_num_threads(args.threads)  # a shared, busy CPU runs far faster with 1 thread
    model, tok = load_causal_lm()
    arch = detect_architecture(model)
    records = json.loads((shared_data_dir() / "knowedit" / "wiki_counterfact_train.json").read_text())
    requests = [EditRequest.from_record(r) for r in records[:11]]
    print(f"torch threads: {torch.get_num_threads()}, cpu count: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f}")

    hp = default_hparams("alphaedit", model)
    settings = hp.covariance
    if args.cov_samples:
        settings = dataclasses.replace(settings, n_samples=args.cov_samples)
    settings = dataclasses.replace(settings, show_progress=False)
    start = time.perf_counter()
    _, n_tokens = compute_key_covariances(model, tok, arch, hp.layers, settings)
    seconds = time.perf_counter() - start
    scale = hp.covariance.n_samples / settings.n_samples
    print(f"C0 layers {list(hp.layers)}: {seconds:.1f} s for {n_tokens} tokens ({n_tokens / seconds:.0f} tok/s)"
          + (f"; extrapolated to the preset {hp.covariance.n_samples} chunks: {seconds * scale:.0f} s"
             if scale != 1 else ""))
    key_covariances(model, tok, arch, hp.layers, hp.covariance)  # make sure the preset one is cached

    print(f"{'method':<12} {'s/edit (batch 1)':>17} {'s/edit (batch 10)':>18}")
    for method in args.methods:
        editor = make_editor(method, model, tok, show_progress=False) if method not in ("balancedit", "grace") \
            else make_editor(method, model, tok)
        for warm_up in ("context_templates", "covariances", "projections"):  # one-off, timed above
            if hasattr(editor, warm_up):
                getattr(editor, warm_up)()
        one = editor.apply([requests[0]]).seconds_per_edit
        editor.restore()
        ten = editor.apply(requests[1:11]).seconds_per_edit
        editor.restore()
        print(f"{method:<12} {one:>17.2f} {ten:>18.2f}", flush=True)


if __name__ == "__main__":
    main()
