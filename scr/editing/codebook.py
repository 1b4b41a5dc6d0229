"""BalancEdit (Guo et al., ICML 2025) and GRACE (Hartvigsen et al., 2023): a codebook adapter at one layer.

The weights never change. A forward hook on W_out at ``layer`` keeps entries (key k_i, value v_i, radius e_i):
at every position whose W_out input h satisfies  min_i |h - k_i| <= e_i  the layer's output is replaced by
v_i of the nearest entry; elsewhere the layer is untouched.

Editing one fact: k = W_out's input at the edit prompt's last token; v = W_out's output there, optimised a
few steps so the model continues the prompt with ``target_new``. The same question rendered in the chat template
has other keys (the system prompt and turn markers come first) and the answer starts after the assistant header,
so each fact gets one entry per rendering asked for (``prompt_format``: raw, chat or both), with its own key,
value and radius.

The radius is where the two methods differ:
  * GRACE: one global radius for every entry (``global_radius``);
  * BalancEdit: per fact, between the farthest *positive* (a paraphrase, must fall inside) and the nearest
    *negative* (another fact about the same subject, or the same relation for another subject, must stay
    outside): e = pos_max + balance * (neg_min - pos_max).
Positives and negatives are generated here from templates -- never from a dataset's rephrase or locality
prompts, which are what the evaluation tests.
Both rules shrink two entries with different answers to half their distance when their regions overlap
(GRACE's split rule), so a new fact never captures an older one's prompt.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from scr.editing.base import Editor
from scr.editing.hooks import StopForward, capture_inputs, frozen
from scr.editing.hparams import CodebookHparams
from scr.editing.presets import Architecture, detect_architecture
from scr.editing.prompts import encode, pad_rows, target_ids
from scr.editing.request import EditRequest

CODEBOOK_FILE = "codebook.pt"
FORMATS = ("raw", "chat", "both")

# Paraphrases of an edit prompt: the same question behind a short neutral preamble.
POSITIVE_PREFIXES = ("Question: ", "Fact: ", "Here is a fact. ", "According to Wikipedia, ",
                     "Complete the sentence. ", "Tell me: ")
# Other facts about the same subject (generic Wikidata-style relations; written here, not read from data).
SUBJECT_NEGATIVES = ("{} is a", "The gender of {} is", "{} was born in", "The occupation of {} is",
                     "The native language of {} is", "{} is located in", "The name of the father of {} is",
                     "The official website of {} is", "{} died in the year", "The religion of {} is")
# The same relation about other subjects.
OTHER_SUBJECTS = ("Paris", "Albert Einstein", "the United Nations", "Microsoft", "the Amazon River",
                  "Marie Curie", "Japan", "the Eiffel Tower")


def positive_prompts(request: EditRequest) -> list[str]:
    prompt = request.prompt
    lowered = prompt[0].lower() + prompt[1:] if prompt[:1].isupper() else prompt
    return [p + (lowered if p.endswith(", ") else prompt) for p in POSITIVE_PREFIXES]


def negative_prompts(request: EditRequest, other_subjects: list[str]) -> list[str]:
    template, subject = request.template()
    same_subject = [t.format(subject) for t in SUBJECT_NEGATIVES] if subject else []
    others = [s for s in list(OTHER_SUBJECTS) + other_subjects if s and s.lower() != subject.lower()]
    same_relation = [template.format(s) for s in others] if subject else []
    own = request.prompt.strip().lower()
    return [p for p in dict.fromkeys(same_subject + same_relation) if p.strip().lower() != own]


class CodebookEditor(Editor):
    method = "balancedit"
    hparams: CodebookHparams

    def __init__(self, model, tokenizer, hparams: CodebookHparams, arch: Architecture | None = None):
        super().__init__(model, tokenizer, hparams)
        self.arch = arch or detect_architecture(model)
        self.method = "grace" if hparams.radius_rule == "global" else "balancedit"
        if hparams.prompt_format not in FORMATS:
            raise ValueError(f"prompt_format must be one of {', '.join(FORMATS)}, got {hparams.prompt_format!r}")
        self.forms = ("raw", "chat") if hparams.prompt_format == "both" else (hparams.prompt_format,)
        if "chat" in self.forms and not getattr(tokenizer, "chat_template", None):
            if hparams.prompt_format == "chat":
                raise ValueError("prompt_format 'chat': the tokenizer has no chat template")
            self.forms = ("raw",)
        self.module = self.arch.mlp_out(model, hparams.layer)
        d_in = self.arch.key_dim(model, hparams.layer)
        d_out = self.arch.weight(model, hparams.layer).shape[0]
        param = next(model.parameters())
        self.keys = torch.empty(0, d_in, dtype=param.dtype, device=param.device)
        self.values = torch.empty(0, d_out, dtype=param.dtype, device=param.device)
        self.radii = torch.empty(0, dtype=torch.float32, device=param.device)
        self.entries: list[dict] = []  # per entry: prompt, subject, target_new, form (what it was made from)
        self._forced: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (rows, cols, value)
        self._handle = None

    # --- the adapter ---------------------------------------------------------------------------------
    def _hook(self, module, args, output):
        if self._forced is not None:  # value training: write v at the given positions
            rows, cols, value = self._forced
            return output.index_put((rows, cols), value.to(output.dtype).expand(len(rows), -1))
        if len(self.keys) == 0:
            return output
        h = args[0]
        dist = torch.cdist(h.reshape(-1, h.shape[-1]).float(), self.keys.float())  # [positions, entries]
        nearest_dist, nearest = dist.min(dim=1)
        hit = nearest_dist <= self.radii[nearest]
        if not hit.any():
            return output
        flat = output.reshape(-1, output.shape[-1])
        replaced = torch.where(hit[:, None], self.values[nearest].to(flat.dtype), flat)
        return replaced.view_as(output)

    def attach(self) -> None:
        if self._handle is None:
            self._handle = self.module.register_forward_hook(self._hook)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    # --- rendering ----------------------------------------------------------------------------------
    def prompt_ids(self, prompt: str, form: str = "raw") -> tuple[list[int], int]:
        """The prompt's tokens as the model sees it, and the position of its key: the prompt's last token.

        raw: the text itself. chat: a user turn of the chat template (the same tokens as the in-process backend's
        ``generate`` for ``as_chat(prompt)``), keyed at the question's own last token, not at the assistant header
        that ends the rendering: the header's key is nearly the same for every question, so no radius could tell
        an edited question from an unrelated one there."""
        tok = self.tokenizer
        if form == "raw":
            ids = encode(tok, prompt)
            return ids, len(ids) - 1
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        end = text.rfind(prompt)
        if end < 0:  # a template that rewrites the content: fall back to the rendering's last token
            return ids, len(ids) - 1
        # The template's end-of-turn marker follows the content, so the prefix tokenises as in the whole text.
        return ids, len(tok(text[: end + len(prompt)], add_special_tokens=False)["input_ids"]) - 1

    def answer_ids(self, target: str, form: str = "raw") -> list[int]:
        """The target's tokens as they follow the prompt: after a space in raw text, at the start of the turn."""
        if form == "raw":
            return target_ids(self.tokenizer, target)
        return self.tokenizer(target.strip(), add_special_tokens=False)["input_ids"]

    # --- measuring -----------------------------------------------------------------------------------
    @torch.no_grad()
    def prompt_keys(self, prompts: list[str], form: str = "raw") -> torch.Tensor:
        """W_out's input at each prompt's key position, [n, d_in] (the forward stops at the layer)."""
        rendered = [self.prompt_ids(p, form) for p in prompts]
        ids, mask, _ = pad_rows(self.tokenizer, [r for r, _ in rendered], self.keys.device)
        store: dict = {}
        with capture_inputs({"k": self.module}, store, stop_at=self.module):
            try:
                self.model(input_ids=ids, attention_mask=mask)
            except StopForward:
                pass
        return store["k"][torch.arange(len(prompts)), torch.tensor([k for _, k in rendered])]

    def distances(self, prompts: list[str], entry: int) -> torch.Tensor:
        """Distance of each prompt's last-token key (in the entry's rendering) to codebook entry ``entry``."""
        keys = self.prompt_keys(prompts, self.entries[entry].get("form", "raw"))
        return (keys.float() - self.keys[entry].float()).norm(dim=-1)

    def matches(self, prompts: list[str], form: str = "raw") -> list[int | None]:
        """The entry each prompt's last token falls into, or None."""
        if len(self.keys) == 0:
            return [None] * len(prompts)
        dist = torch.cdist(self.prompt_keys(prompts, form).float(), self.keys.float())
        d, nearest = dist.min(dim=1)
        return [int(n) if d_ <= self.radii[n] else None for d_, n in zip(d.tolist(), nearest.tolist())]

    # --- editing -------------------------------------------------------------------------------------
    def _train_value(self, prompts: list[str], target: str, form: str) -> tuple[torch.Tensor, float, int]:
        """v written at each prompt's key position, fitted so that ``target`` follows the prompt (teacher forcing)."""
        tok, device = self.tokenizer, self.keys.device
        answer = self.answer_ids(target, form)
        rows, ends, key_cols = [], [], []
        for p in prompts:
            ids, key_col = self.prompt_ids(p, form)
            ends.append(len(ids) - 1)  # logits at ends + j predict answer[j]
            key_cols.append(key_col)
            rows.append(ids + answer[:-1])
        input_ids, mask, _ = pad_rows(tok, rows, device)
        score_rows = torch.tensor([i for i in range(len(rows)) for _ in answer], device=device)
        score_cols = torch.tensor([e + j for e in ends for j in range(len(answer))], device=device)
        labels = torch.tensor(answer * len(rows), device=device)

        with torch.no_grad():  # start from the layer's own output at the edit prompt
            store: dict = {}

            def read_output(module, args, output):
                store["y"] = output.detach()

            handle = self.module.register_forward_hook(read_output)
            try:
                self.model.base_model(input_ids=input_ids[:1], attention_mask=mask[:1])
            finally:
                handle.remove()
        value = store["y"][0, key_cols[0]].clone().float().requires_grad_(True)
        optimizer = torch.optim.Adam([value], lr=self.hparams.value_lr)
        base, head = self.model.base_model, self.model.get_output_embeddings()
        loss_value, step = float("inf"), 0
        self._forced = (torch.arange(len(rows), device=device), torch.tensor(key_cols, device=device), value)
        try:
            with frozen(self.model):
                for step in range(1, self.hparams.value_steps + 1):
                    optimizer.zero_grad()
                    last = base(input_ids=input_ids, attention_mask=mask).last_hidden_state
                    log_probs = head(last[score_rows, score_cols]).float().log_softmax(-1)
                    loss = -log_probs[torch.arange(len(labels)), labels].mean()
                    loss_value = loss.item()
                    if loss_value < self.hparams.value_loss_stop or step == self.hparams.value_steps:
                        break
                    loss.backward()
                    optimizer.step()
        finally:
            self._forced = None
        return value.detach(), loss_value, step

    def _radius(self, key: torch.Tensor, request: EditRequest, positives: list[str], form: str) -> tuple[float, dict]:
        if self.hparams.radius_rule == "global":
            return self.hparams.global_radius, {}
        others = list(dict.fromkeys(e["subject"] for e in self.entries))
        negatives = negative_prompts(request, others)
        pos = (self.prompt_keys(positives, form).float() - key.float()).norm(dim=-1)
        neg = (self.prompt_keys(negatives, form).float() - key.float()).norm(dim=-1)
        pos_max, neg_min = pos.max().item(), neg.min().item()
        radius = pos_max + self.hparams.balance * (neg_min - pos_max)
        return radius, {"pos_max": pos_max, "neg_min": neg_min}

    def _add(self, request: EditRequest, form: str) -> dict:
        key = self.prompt_keys([request.prompt], form)[0]
        positives = positive_prompts(request)
        train_prompts = [request.prompt] + (positives if self.hparams.train_on_positives else [])
        value, loss, steps = self._train_value(train_prompts, request.target_new, form)
        radius, info = self._radius(key, request, positives, form)
        # GRACE's split: an entry with another answer whose region overlaps ours -> both shrink to d/2.
        if len(self.keys):
            dist = (self.keys.float() - key.float()).norm(dim=-1)
            for j, d in enumerate(dist.tolist()):
                if self.entries[j]["target_new"] != request.target_new and d <= radius + self.radii[j].item():
                    self.radii[j] = min(self.radii[j].item(), d / 2)
                    radius = min(radius, d / 2)
        self.keys = torch.cat([self.keys, key[None].to(self.keys.dtype)])
        self.values = torch.cat([self.values, value[None].to(self.values.dtype)])
        self.radii = torch.cat([self.radii, torch.tensor([radius], device=self.radii.device)])
        self.entries.append({"prompt": request.prompt, "subject": request.subject, "target_new": request.target_new,
                             "form": form})
        return {"form": form, "loss": loss, "steps": steps, "radius": radius, **info}

    def _apply(self, requests: list[EditRequest]) -> list[dict]:
        self.attach()
        # One entry per fact and rendering; later radii see earlier keys. The details keep one dict per fact
        # (the evaluator counts edits by them), with each form's figures.
        details = []
        for r in requests:
            per_form = [self._add(r, form) for form in self.forms]
            details.append(per_form[0] if len(per_form) == 1 else {"forms": per_form})
        return details

    def _restore(self) -> None:
        self.detach()
        self.keys, self.values = self.keys[:0], self.values[:0]
        self.radii = self.radii[:0]
        self.entries.clear()

    # --- persistence ---------------------------------------------------------------------------------
    def _save_model(self, out: Path) -> None:
        handle, self._handle = self._handle, None  # the saved weights are the untouched ones anyway
        try:
            self.model.save_pretrained(out, safe_serialization=True)
        finally:
            self._handle = handle
        torch.save({"hparams": dataclasses.asdict(self.hparams), "keys": self.keys.cpu(),
                    "values": self.values.cpu(), "radii": self.radii.cpu(), "entries": self.entries},
                   out / CODEBOOK_FILE)

    def _state(self) -> dict:
        return {"keys": self.keys.cpu(), "values": self.values.cpu(), "radii": self.radii.cpu(),
                "entries": json.dumps(self.entries)}

    def _load_state(self, state: dict) -> None:
        self._set_codebook({**state, "entries": json.loads(state["entries"])})

    def load_codebook(self, path: Path) -> None:
        self._set_codebook(torch.load(path, map_location="cpu", weights_only=True))

    def _set_codebook(self, saved: dict) -> None:
        device = self.keys.device
        self.keys = saved["keys"].to(device, self.keys.dtype)
        self.values = saved["values"].to(device, self.values.dtype)
        self.radii = saved["radii"].to(device)
        self.entries = list(saved["entries"])
        self.attach()

    def info(self) -> dict:
        return {**super().info(), "codebook_file": CODEBOOK_FILE, "entries": len(self.entries)}


def codebook_hparams_from_file(path: Path) -> CodebookHparams:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    names = {f.name for f in dataclasses.fields(CodebookHparams)}
    return CodebookHparams(**{k: v for k, v in saved["hparams"].items() if k in names})


def read_info(folder: Path) -> dict:
    from scr.editing.base import EDITING_INFO_FILE

    path = Path(folder) / EDITING_INFO_FILE
    return json.loads(path.read_text()) if path.exists() else {}
