"""Ingestion formats: JSONL, CSV, text/Markdown, and their errors."""

from __future__ import annotations

import re

import pytest

from scr.kb.ingest import IngestError, parse_file, split_sentences


def test_jsonl_reads_fields_and_names_source(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text('{"text": "A is B.", "subject": "A", "relation": "is", "object": "B"}\n\n{"text": "C is D."}\n')
    parsed = parse_file(path)
    assert [f.text for f in parsed.facts] == ["A is B.", "C is D."]
    assert parsed.facts[0].object == "B"
    assert parsed.facts[1].source == "facts.jsonl:3"


@pytest.mark.parametrize("line, message", [
    ('{"text": "ok"', "invalid JSON"),
    ('{"subject": "no text"}', "text"),
    ('{"text": ""}', "text"),
    ('["a list"]', "expected an object"),
    ('{"text": "x", "colour": "red"}', "colour"),
    ('{"text": 42}', "text"),
])
def test_jsonl_bad_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine."}\n' + line + "\n")
    with pytest.raises(IngestError) as info:
        parse_file(path)
    assert f"{path}:2" in str(info.value)
    assert message in str(info.value)


def test_skip_invalid_keeps_valid_lines_and_reports_the_rest(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"text": "one."}\nnot json\n{"text": "two."}\n{"nope": 1}\n')
    parsed = parse_file(path, skip_invalid=True)
    assert [f.text for f in parsed.facts] == ["one.", "two."]
    assert len(parsed.errors) == 2 and ":2:" in parsed.errors[0] and ":4:" in parsed.errors[1]


def test_csv_rows_and_errors(tmp_path):
    good = tmp_path / "facts.csv"
    good.write_text("text,subject,relation,object\n\"X is Y, now.\",X,is,Y\nZ is W.,,,\n")
    parsed = parse_file(good)
    assert [f.text for f in parsed.facts] == ["X is Y, now.", "Z is W."]
    assert parsed.facts[0].subject == "X" and parsed.facts[1].subject is None

    no_text = tmp_path / "nohead.csv"
    no_text.write_text("fact,subject\nA,B\n")
    with pytest.raises(IngestError, match="'text' column"):
        parse_file(no_text)

    extra = tmp_path / "extra.csv"
    extra.write_text("text,subject\nA is B.,A\nC is D.,C,surplus\n")
    with pytest.raises(IngestError, match=r"extra.csv:3"):
        parse_file(extra)


def test_markdown_document_becomes_sentences(tmp_path):
    doc = tmp_path / "notes.md"
    doc.write_text(
        "# Company update\n\nThe CEO of Acme is Dr. Jane Roe. She joined in 2021! Acme moved to Lyon.\n\n"
        "```\ncode is ignored.\n```\n\n- The new office opened in May.\n- It has 40 desks.\n\n| a | b |\n"
    )
    sentences = [f.text for f in parse_file(doc).facts]
    assert sentences == ["The CEO of Acme is Dr. Jane Roe.", "She joined in 2021!", "Acme moved to Lyon.",
                         "The new office opened in May.", "It has 40 desks."]


def test_sentence_splitter_keeps_abbreviations_and_initials():
    assert split_sentences("J. R. R. Tolkien wrote it, e.g. The Hobbit. Then more.") == [
        "J. R. R. Tolkien wrote it, e.g. The Hobbit.", "Then more."]


@pytest.mark.parametrize("name, content, message", [
    ("facts.pdf", "x", "unsupported file type"),
    ("empty.txt", "\n\n", "no sentences"),
])
def test_unsupported_or_empty_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(IngestError, match=message):
        parse_file(path)


def test_bytes_that_are_not_utf8_name_their_line_and_lose_only_it(tmp_path):
    jsonl = tmp_path / "latin1.jsonl"
    jsonl.write_bytes(b'{"text": "one."}\n{"text": "caf\xe9 au lait."}\n{"text": "two."}\n')
    with pytest.raises(IngestError, match=re.escape(f"{jsonl}:2: not UTF-8 text (byte 0xe9)")):
        parse_file(jsonl)
    parsed = parse_file(jsonl, skip_invalid=True)
    assert [f.text for f in parsed.facts] == ["one.", "two."]
    assert parsed.errors == [f"{jsonl}:2: not UTF-8 text (byte 0xe9)"]

    table = tmp_path / "latin1.csv"
    table.write_bytes(b"text,subject\nOne is fine.,One\ncaf\xe9 is not.,Cafe\n")
    with pytest.raises(IngestError, match=re.escape(f"{table}:3: not UTF-8")):
        parse_file(table)
    parsed = parse_file(table, skip_invalid=True)
    assert [f.text for f in parsed.facts] == ["One is fine."]
    assert len(parsed.errors) == 1
    header = tmp_path / "header.csv"
    header.write_bytes(b"t\xe9xt\nOne.\n")
    with pytest.raises(IngestError, match=re.escape(f"{header}:1: not UTF-8")):
        parse_file(header, skip_invalid=True)  # no header, no rows: nothing to keep


def test_utf8_byte_order_mark_is_not_part_of_the_first_record(tmp_path):
    bom = "\ufeff".encode()
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(bom + b'{"text": "A is B."}\r\n{"text": "C is D."}\r\n')
    assert [f.text for f in parse_file(jsonl).facts] == ["A is B.", "C is D."]
    document = tmp_path / "bom.txt"
    document.write_bytes(bom + "Zoë lives in Oslo. She writes.".encode())
    assert [f.text for f in parse_file(document).facts] == ["Zoë lives in Oslo.", "She writes."]


def test_missing_file_and_binary_file(tmp_path):
    with pytest.raises(IngestError, match="file not found"):
        parse_file(tmp_path / "missing.jsonl")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(IngestError, match="not UTF-8"):
        parse_file(binary)
