"""One settings object for the whole system.

Precedence, lowest to highest: defaults < settings file (TOML) < environment variables (SCR_*) < explicit
overrides (CLI flags, API arguments). The settings file is ``--config FILE``, else ``$SCR_CONFIG``, else
``scr.toml`` inside the knowledge-base directory when it exists.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scr.models import DEFAULT_EMBEDDER, DEFAULT_LLM

ScopeMode = Literal["default", "subject-relation", "relation-encoder", "encoder", "similarity", "gated-llm", "llm", "paper"]
StoreKind = Literal["faiss", "chroma"]
BackendKind = Literal["transformers", "vllm"]


class SettingsError(ValueError):
    pass


def validation_message(exc: ValidationError, prefix: str = "", whole: str = "record") -> str:
    """pydantic's errors on one line, ``field: message`` joined by "; " (its own text spans lines and links).
    ``prefix`` goes before each field's path; ``whole`` names an error about the value as a whole. The
    "Value error, " that pydantic puts before our validators' own messages is dropped."""
    return "; ".join(f"{prefix + '.'.join(map(str, e['loc'])) if e['loc'] else whole}: "
                     f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    kb_dir: Path = Field(Path("./kb"), description="knowledge-base directory")
    store: StoreKind = Field("faiss", description="vector store: faiss (embedded) or chroma")
    chroma_url: str | None = Field(None, description="Chroma server URL (http://host:port); else PersistentClient")

    llm: str = Field(DEFAULT_LLM, description="LLM name: embedded default, a Hugging Face id, or a local folder")
    embedder: str = Field(DEFAULT_EMBEDDER, description="sentence-embedding model name or folder")
    backend: BackendKind = Field("transformers", description="LLM backend: in-process transformers or vLLM")
    vllm_url: str = Field("http://127.0.0.1:8000/v1", description="vLLM OpenAI-compatible base URL")
    vllm_model: str | None = Field(None, description="model name served by vLLM (default: the server's only one)")
    vllm_api_key: str | None = Field(None, description="API key for the vLLM server, if it requires one")
    request_timeout_s: float = Field(60.0, gt=0)
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = Field(16, ge=1, description="generation batch size of the in-process backend")

    k: int = Field(5, ge=1, le=100, description="facts retrieved per question")
    scope_mode: ScopeMode = Field(
        "default", description="scope check: default (= subject-relation), relation-encoder, similarity, encoder "
                               "(the scope cross-encoder), gated-llm, llm, paper")
    scope_encoder: Path | None = Field(
        None, description="scope cross-encoder adapter file (default: the shipped scr/data/scope_encoder.safetensors)")
    scope_min_probability: float | None = Field(
        None, ge=0.0, le=1.0, description="encoder mode: probability at or above which a fact is in scope "
                                          "(default: the threshold stored with the encoder, chosen on train splits)")
    scope_threshold: float = Field(
        0.59, ge=-1.0, le=1.0,
        description="default, similarity and gated-llm modes: cosine(question, fact key) at or above which a fact is "
                    "in scope (evals/results/scope_calibration.md)",
    )
    scope_relation_threshold: float = Field(
        0.75, ge=-1.0, le=1.0,
        description="default (subject-relation) mode: cosine between the question and the fact key, both without "
                    "the subject's words, at or above which the question asks the fact's relation "
                    "(evals/results/scope_relation.md)",
    )
    scope_other_subject_threshold: float = Field(
        0.67, ge=-1.0, le=1.0,
        description="default (subject-relation) mode: cosine(question, fact key) a fact must reach when the "
                    "question does not name the fact's subject (an alias, or another subject)",
    )
    scope_relation_band: float = Field(
        0.5, ge=-1.0, le=1.0,
        description="relation-encoder mode: relation-wording cosines from this value up to the relation threshold "
                    "are decided by the scope cross-encoder (evals/results/scope_relation_band.md)",
    )
    scope_names: bool = Field(
        True, description="default (subject-relation) modes: a fact stored without a subject (a document's sentence, "
                          "free text) is in scope only when the question names nothing or the fact contains the last "
                          "word of one of the question's names (\"924\" of \"Porsche 924\"): a sentence about the "
                          "Porsche 911 does not answer questions about the 924 (evals/results/docter_dev)")
    scope_name_match: Literal["whole-name", "last-word"] = Field(
        "whole-name", description="with scope_names, how the fact must name what the question names: whole-name (by "
                                  "the name or a part of it ending in its last word, not by a longer or another name: "
                                  "\"Derrick Brooks\" does not answer for \"Aaron Brooks\"), or last-word (the "
                                  "last word anywhere, as before 2026-12-05; evals/results/docter_scale_dev)")
    scope_name_conflicts: bool = Field(
        True, description="default (subject-relation) modes: a fact is out of scope of a question that names another "
                          "entity sharing a word with the fact's subject (\"Janice Dickinson\" for a fact on Angie "
                          "Dickinson), or, when the question does not name the fact's subject, names none of which is "
                          "close to it (\"Katey Sagal\" for Kate Winslet); close means near in the embedder's "
                          "space, as most aliases are (evals/results/name_conflicts.md)")
    scope_inverse: bool = Field(
        True, description="default (subject-relation) modes: a question no fact answers that names a fact's object and "
                          "asks its relation backwards (\"Who is the child of Y?\" of \"X's father is Y\"; "
                          "kinship, marriage, sequence) is answered with the fact, its subject first "
                          "(scr/inverse.py, evals/results/inverse_questions.md)")
    answer_style: Literal["paper", "object-first"] = Field(
        "object-first", description="in-scope answers: paper (the fact in context, the model answers) or "
                                    "object-first (also, when the question asks exactly the fact's relation about its "
                                    "subject, the answer starts with the fact's object and the model continues it; "
                                    "subject-relation scope modes; evals/results/answer_style.md)")
    context_facts: int = Field(
        1, ge=1, le=20, description="facts an in-scope answer reads: the chosen one and up to this many minus one "
                                    "others that passed the scope check, best first (sentences of a document each "
                                    "hold part of an answer; evals/results/docter_dev/report.md)")
    scope_final_sentence: bool = Field(
        True, description="a question that no fact answers and whose last sentence follows other text (\"The film "
                          "came out in 2006. The mother tongue of X is\") is checked again on that sentence alone; "
                          "not in paper mode, which stays as the paper has it (evals/results/final_sentence.md)")
    answer_final_sentence: bool = Field(
        True, description="when the scope check found the fact through the question's last sentence alone, the "
                          "answer is asked that sentence alone (the text before it, which the fact does not "
                          "concern, distracts a small model: evals/results/docter_dev); generation only")
    max_new_tokens: int = Field(48, ge=1, le=4096, description="answer length limit in tokens")
    max_question_chars: int = Field(4000, ge=1, description="longer questions are rejected")

    @property
    def final_sentence_retry(self) -> bool:
        """Whether the scope check retries on a question's last sentence (``scope_final_sentence``, never in the
        paper's mode)."""
        return self.scope_final_sentence and self.scope_mode != "paper"

    @field_validator("kb_dir", "scope_encoder", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        return Path(value).expanduser() if isinstance(value, (str, Path)) else value

    @field_validator("vllm_url", "chroma_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parsed = urlparse(value)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
        return value

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> "Settings":
        """Merge file, environment and overrides (None overrides are ignored so CLI defaults don't mask)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        values: dict[str, Any] = {}
        path = config_file or os.environ.get("SCR_CONFIG")
        if path is None:
            kb_dir = overrides.get("kb_dir") or os.environ.get("SCR_KB_DIR")
            candidate = Path(kb_dir).expanduser() / "scr.toml" if kb_dir else None
            path = candidate if candidate and candidate.exists() else None
        if path is not None:
            values.update(_read_toml(Path(path)))
        values.update(_from_env())
        values.update(overrides)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError(f"invalid settings: {validation_message(exc, whole='settings')}") from None


def read_toml(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """A TOML file's contents. A missing file, a directory, bytes that are not UTF-8 or invalid TOML raise
    ``error`` with a message that names ``what`` the file is and its path."""
    if not path.exists():
        raise error(f"{what} not found: {path}")
    if path.is_dir():
        raise error(f"{what} {path} is a directory, expected a TOML file")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1  # exc.object: the bytes after a byte-order mark
        raise error(f"{what} {path}:{line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x})") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {path} is not valid TOML: {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    data = read_toml(path, "settings file", SettingsError)
    # Allow either top-level keys or an [scr] table.
    return dict(data.get("scr", data))


def settings_environment() -> dict[str, str]:
    """The ``SCR_*`` variables that set a setting (``SCR_CONFIG`` and one per field), as set now: what a command's
    results depend on besides its arguments, so reports can name them."""
    names = ["SCR_CONFIG"] + [f"SCR_{name.upper()}" for name in Settings.model_fields]
    return {name: os.environ[name] for name in names if os.environ.get(name)}


def _from_env() -> dict[str, Any]:
    env = settings_environment()
    return {name: env[f"SCR_{name.upper()}"] for name in Settings.model_fields if f"SCR_{name.upper()}" in env}
