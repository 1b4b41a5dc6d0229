"""Read facts from JSONL, CSV and plain-text / Markdown documents.

Parsing is all-or-nothing per file: the first bad line raises an error naming file and line, unless
``skip_invalid`` asks to keep the valid lines and report the rest.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from scr.config import validation_message
from scr.kb.records import FactInput


class IngestError(ValueError):
    pass


@dataclass
class ParsedFile:
    path: Path
    facts: list[FactInput] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _skip_or_raise(out: ParsedFile, problem: str, skip_invalid: bool) -> None:
    if not skip_invalid:
        raise IngestError(problem) from None  # the message says it all; no chained parser exception
    out.errors.append(problem)


def _record(path: Path, line: int, data: object, out: ParsedFile, skip_invalid: bool) -> None:
    try:
        if not isinstance(data, dict):
            raise IngestError(f"expected an object with a 'text' field, got {type(data).__name__}")
        fact = FactInput(**{k: v for k, v in data.items()})
        if fact.source is None:
            fact.source = f"{path.name}:{line}"
        out.facts.append(fact)
    except (ValidationError, IngestError, TypeError) as exc:
        message = validation_message(exc) if isinstance(exc, ValidationError) else str(exc)
        _skip_or_raise(out, f"{path}:{line}: {message}", skip_invalid)


def _read_text(path: Path) -> str:
    """The file as text (a UTF-8 byte-order mark dropped). Bytes that are not UTF-8 become lone surrogates
    (``surrogateescape``), so that the line holding them is reported, or skipped, rather than the whole file."""
    return path.read_bytes().decode("utf-8-sig", errors="surrogateescape")


def _not_utf8(text: str) -> str | None:
    """A message naming the first byte of ``text`` that ``_read_text`` could not decode; None if there is none."""
    match = re.search("[\udc80-\udcff]", text)
    return None if match is None else f"not UTF-8 text (byte 0x{ord(match.group()) - 0xdc00:02x})"


def text_lines(path: Path) -> list[str]:
    """The lines of a text file (any line end; a byte-order mark dropped), all or nothing: the first byte that
    is not UTF-8 is an IngestError naming FILE:LINE."""
    if path.is_dir():
        raise IngestError(f"{path}: is a directory, expected a text file")
    lines = list(io.StringIO(_read_text(path), newline=None))
    for number, line in enumerate(lines, start=1):
        if problem := _not_utf8(line):
            raise IngestError(f"{path}:{number}: {problem}")
    return lines


def parse_jsonl(path: Path, skip_invalid: bool = False) -> ParsedFile:
    out = ParsedFile(path)
    # newline=None: lines end at \n, \r\n or \r as in a text-mode file, never inside a JSON string's U+2028.
    for number, line in enumerate(io.StringIO(_read_text(path), newline=None), start=1):
        if not line.strip():
            continue
        if problem := _not_utf8(line):
            _skip_or_raise(out, f"{path}:{number}: {problem}", skip_invalid)
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            _skip_or_raise(out, f"{path}:{number}: invalid JSON ({exc.msg})", skip_invalid)
            continue
        _record(path, number, data, out, skip_invalid)
    return out


def parse_csv(path: Path, skip_invalid: bool = False) -> ParsedFile:
    out = ParsedFile(path)
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    if problem := _not_utf8(",".join(reader.fieldnames or [])):
        raise IngestError(f"{path}:1: {problem}")
    if not reader.fieldnames or "text" not in reader.fieldnames:
        raise IngestError(f"{path}:1: CSV header must have a 'text' column (found {reader.fieldnames})")
    for row in reader:
        number = reader.line_num
        if None in row:  # more cells than header columns
            _skip_or_raise(out, f"{path}:{number}: {len(row[None])} more cell(s) than the header's columns",
                           skip_invalid)
            continue
        if problem := _not_utf8("".join(v for v in row.values() if isinstance(v, str))):
            _skip_or_raise(out, f"{path}:{number}: {problem}", skip_invalid)
            continue
        _record(path, number, {k: v for k, v in row.items() if v not in (None, "")}, out, skip_invalid)
    return out


# A sentence ends at . ! or ? followed by whitespace and an upper-case letter, digit or quote; common
# abbreviations ("Dr.", "e.g.") and initials ("J. R. R.") do not end one.
_NOT_AFTER = ["[A-Z]", "Dr", "Mr", "Ms", "Mrs", "St", "No", "e\\.g", "i\\.e", "vs", "etc"]
_SENTENCE_END = re.compile(
    r"(?<=[.!?])" + "".join(rf"(?<!\b{a}\.)" for a in _NOT_AFTER) + r"\s+(?=[\"'(\[A-Z0-9])"
)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _markdown_blocks(text: str) -> list[str]:
    """Paragraphs of prose: code blocks, headings and tables dropped, list markers and emphasis removed."""
    text = re.sub(r"```.*?```", "\n\n", text, flags=re.S)
    blocks = []
    for block in re.split(r"\n\s*\n", text):
        lines = []
        for line in block.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith(("#", "|", "<!--")) or set(stripped) <= set("-=*_ "):
                if lines and stripped.startswith("#"):
                    blocks.append(" ".join(lines))
                    lines = []
                continue
            stripped = re.sub(r"^([-*+]|\d+[.)])\s+", "", stripped)  # list item markers
            stripped = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", stripped)  # links -> their text
            stripped = re.sub(r"[*_`]{1,3}([^*_`]+)[*_`]{1,3}", r"\1", stripped)  # emphasis, inline code
            if re.match(r"^([-*+]|\d+[.)])\s", line.strip()) and lines:
                blocks.append(" ".join(lines))  # each list item is its own block
                lines = []
            lines.append(stripped)
        if lines:
            blocks.append(" ".join(lines))
    return blocks


def sentence_facts(text: str, name: str) -> list[FactInput]:
    """The ``sentences`` document strategy: every prose sentence of a text is a fact, source ``name#sN``.

    Also the input of the ``atomic`` strategy (scr/kb/extract.py), which rewrites these sentences.
    """
    facts = []
    for block in _markdown_blocks(text):
        for sentence in split_sentences(block):
            if len(sentence) < 3 or not re.search(r"[A-Za-z]", sentence):
                continue
            facts.append(FactInput(text=sentence[:4000], source=f"{name}#s{len(facts) + 1}"))
    return facts


def parse_document(path: Path) -> ParsedFile:
    out = ParsedFile(path)
    out.facts = sentence_facts("".join(text_lines(path)), path.name)  # a document is all or nothing
    if not out.facts:
        raise IngestError(f"{path}: no sentences found")
    return out


DOCUMENT_SUFFIXES = (".txt", ".md", ".markdown", ".text")


def parse_file(path: str | Path, skip_invalid: bool = False) -> ParsedFile:
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: file not found")
    if path.is_dir():
        raise IngestError(f"{path}: is a directory, expected a .jsonl, .csv, .txt or .md file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return parse_jsonl(path, skip_invalid)
    if suffix == ".csv":
        return parse_csv(path, skip_invalid)
    if suffix in DOCUMENT_SUFFIXES:
        return parse_document(path)
    raise IngestError(f"{path}: unsupported file type '{suffix}' (use .jsonl, .csv, .txt or .md)")
