"""Why BalancEdit leaves MQuAKE-hard single-hop answers unchanged: codebook radii against the distances of the
case's edit prompts and single-hop questions to each entry (first case; chat rendering, as the evaluator asks).

    python evals/balancedit_mquake_check.py
"""
import torch
from scr.editing import make_editor
from scr.evaluation.data import resolve_data
from scr.evaluation.mquake import load_mquake
from scr.models import load_causal_lm, set_offline_env

set_offline_env()
torch.set_num_threads(1)
case = load_mquake(resolve_data("multihop/MQuAKE-hard.json"), limit=1)[0]
model, tok = load_causal_lm()
editor = make_editor("balancedit", model, tok, prompt_format="chat")
requests = [e.edit_request() for e in case.edits]
editor.apply(requests)
print("entries", len(editor.entries), "radii", [round(float(r), 2) for r in editor.radii])
edit_prompts = [r.prompt for r in requests]
hops = [h.question for h in case.single_hops]
for name, prompts in (("edit prompts", edit_prompts), ("single-hop questions", hops)):
    print(name, "->", editor.matches(prompts, "chat"))
    for i, q in enumerate(prompts):
        d = [round(float(editor.distances([q], e)[0]), 2) for e in range(len(editor.entries))]
        print("  ", q[:70], "| distances to entries:", d)
