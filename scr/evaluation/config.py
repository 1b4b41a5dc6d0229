"""What one evaluation run is: dataset, methods, protocol, N, scoring mode and generation settings.

A suite file (``evals/*.toml``) holds the same fields in an ``[eval]`` table and, optionally, library settings
(``scr.config.Settings`` fields such as ``scope_threshold`` or ``llm``) in a ``[settings]`` table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scr.config import read_toml, validation_message


class EvalConfigError(ValueError):
    pass


def split_names(value) -> list[str]:
    """A list of names from a comma-separated string or a list (blank entries dropped)."""
    if isinstance(value, str):
        value = value.split(",")
    return [v.strip() for v in value if v and v.strip()]


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="dataset file (absolute, relative to the working directory, or to the data dir)")
    format: Literal["knowedit", "counterfact", "jsonl"] | None = Field(None, description="default: detected")
    data_dir: str | None = Field(None, description="where relative dataset paths live (default $SCR_DATA_DIR "
                                                   "or ../shared/data beside the repository)")
    methods: list[str] = Field(default_factory=lambda: ["base", "context-oracle", "scr"])
    protocol: Literal["single", "sequential"] = "sequential"
    n: list[int | Literal["all"]] = Field(default_factory=lambda: ["all"],
                                          description="sequential: updates applied together (1, 10, 100, all)")
    limit: int | None = Field(None, ge=1, description="only the first LIMIT cases")
    mode: Literal["generation", "teacher-forced"] = "generation"
    max_new_tokens: int = Field(24, ge=1, le=512, description="answer length in generation mode")
    batch_size: int = Field(64, ge=1, description="generation batch size")
    chunk_cases: int = Field(32, ge=1, description="cases answered per batch call (and per saved chunk)")
    edit_batch_size: int | None = Field(None, ge=1, description="editing methods: edits per apply() call "
                                                                "(default: all N at once)")
    editing: dict[str, Any] = Field(default_factory=dict, description="overrides passed to make_editor")
    seed: int = 0
    judge_url: str | None = Field(None, description="OpenAI-compatible base URL of an LLM judge (optional)")
    judge_model: str | None = None
    judge_api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the judge's key")
    base_from: str | None = Field(None, description="another run directory whose base records seed the memo of "
                                                    "the unmodified model's answers (used where the hash matches)")
    out: str = Field(description="run directory (report.json, report.md, plots, resumable records)")
    title: str | None = None

    @field_validator("methods", mode="before")
    @classmethod
    def _split_methods(cls, value):
        return split_names(value)

    @field_validator("n", mode="before")
    @classmethod
    def _split_n(cls, value):
        if isinstance(value, (str, int)):
            value = str(value).split(",")
        out = []
        for v in value:
            v = str(v).strip().lower()
            if not v:
                continue
            if v == "all":
                out.append("all")
            else:
                try:
                    number = int(v)
                except ValueError:
                    raise ValueError(f"N must be a positive number or 'all', got {v!r}") from None
                if number < 1:
                    raise ValueError(f"N must be a positive number or 'all', got {v!r}")
                out.append(number)
        return out or ["all"]

    def sizes(self, n_cases: int) -> list[int]:
        """The group sizes actually run (``all`` = every case; single = 1), without repeats, ascending."""
        if self.protocol == "single":
            return [1]
        return sorted({n_cases if v == "all" else min(int(v), n_cases) for v in self.n})


def load_suite(path: str | Path, table: str = "eval") -> tuple[dict[str, Any], dict[str, Any]]:
    """(runner fields, settings fields) from a suite TOML file: the ``table`` its runner reads (``eval`` for
    ``scr eval``, ``retention``, ``multihop``, ...) and the optional ``[settings]``."""
    path = Path(path)
    data = read_toml(path, "suite file", EvalConfigError)
    unknown = set(data) - {table, "settings"}
    if unknown:
        raise EvalConfigError(f"suite {path}: unknown table(s) {sorted(unknown)} (this command reads [{table}] "
                              f"and [settings])")
    return dict(data.get(table, {})), dict(data.get("settings", {}))


def validated(model: type[BaseModel], what: str, fields: dict):
    """``model(**fields)`` (None values left out), with validation errors as one EvalConfigError line."""
    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise EvalConfigError(f"invalid {what} settings: {validation_message(exc, whole='settings')}") from None


def make_config(**fields) -> EvalConfig:
    return validated(EvalConfig, "evaluation", fields)
