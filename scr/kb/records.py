"""Fact records: what operators ingest and what the knowledge base keeps, with their history."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FactStatus = Literal["active", "superseded", "retracted"]
MAX_FACT_CHARS = 4000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def normalize_text(text: str) -> str:
    """The form used to detect exact duplicates: whitespace collapsed, case kept (case can change meaning)."""
    return re.sub(r"\s+", " ", text).strip()


def fact_key(text: str, subject: str | None, relation: str | None, obj: str | None) -> str:
    """The fact without its answer (subject + relation): what a question in scope of the fact asks about.

    "The capital of Freedonia is Sylvania." with object "Sylvania" -> "The capital of Freedonia is".
    """
    if obj:
        at = text.lower().rfind(obj.lower())
        if at > 0:
            return (text[:at] + text[at + len(obj):]).strip().rstrip(".!?;:,").strip()
    if subject and relation:
        return f"{subject} {relation}"
    return text


class FactInput(BaseModel):
    """One fact as an operator supplies it (a JSONL line, a CSV row, a sentence of a document)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: str = Field(min_length=1, max_length=MAX_FACT_CHARS)
    id: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
    subject: str | None = None
    relation: str | None = None
    object: str | None = None
    source: str | None = None
    valid_from: datetime | None = None
    supersedes: str | None = None

    @field_validator("valid_from")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value

    @field_validator("subject", "relation", "object", "source", "supersedes", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if isinstance(value, str) and not value.strip() else value


class Fact(BaseModel):
    """A stored fact. Superseded and retracted facts stay in the store (history) but not in retrieval."""

    id: str
    text: str
    key: str
    subject: str | None = None
    relation: str | None = None
    object: str | None = None
    source: str | None = None
    created_at: datetime
    valid_from: datetime | None = None
    status: FactStatus = "active"
    supersedes: str | None = None
    superseded_by: str | None = None


class FactEvent(BaseModel):
    fact_id: str
    at: datetime
    event: Literal["added", "superseded", "retracted", "restored"]
    detail: str | None = None


class FactHit(BaseModel):
    """A retrieved fact with its similarity to the question (text) and to the fact's key."""

    id: str
    text: str
    score: float
    key_score: float
    # What a scope check may compare the question with; kept out of serialised answers.
    key: str | None = Field(None, exclude=True)
    subject: str | None = Field(None, exclude=True)
    relation: str | None = Field(None, exclude=True)
    object: str | None = Field(None, exclude=True)


def fact_object(hit: FactHit) -> str | None:
    """The fact's object as stored, else its text after its key where it has one, e.g. "Madonna" for
    "Hey Jude was performed by Madonna." with key "Hey Jude was performed by"."""
    if hit.object:
        return hit.object
    if not hit.key or hit.key == hit.text or not hit.text.lower().startswith(hit.key.lower()):
        return None
    rest = hit.text[len(hit.key):].strip().rstrip(".!?").strip()
    return rest or None
