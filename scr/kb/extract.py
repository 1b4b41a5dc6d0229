"""Document strategies: how a free-text document becomes facts in the knowledge base.

  sentences  every prose sentence is one fact (``scr.kb.ingest.sentence_facts``), source ``<doc>#s<N>``
  atomic     the served LLM rewrites each sentence as one short, self-contained fact
             ``subject | relation | object`` (or ``none``), source ``<doc>#a<N>``: the atomic fact of sentence N

Why one sentence at a time: asked to list every fact of a whole passage (raw or chat prompt), SmolLM2-135M
repeats one line or copies the passage; given one sentence and the document's topic it writes one usable line
for most sentences. In a probe on DocTER documents 0-29, some extracted fact still carried the document's
altered target for 28 of 30 documents (23 as the object of a triple); other demonstrations kept 8-9 of 12
(one with "was born in" was copied into most lines), so these use relations the documents rarely state.
The prompt is a raw completion with made-up demonstrations (no benchmark data): small models follow a
transcript more reliably than an instruction (the chat-template version kept 5 of 12), and the
demonstrations are a prefix shared by every sentence, which the in-process backend computes once per batch.

Why a topic: sentences say "she" or "the company"; the demonstrations show the model replacing those with
the topic's name. The topic is guessed without the LLM (the most frequent proper name of the document,
``guess_topic``): asked for it, the small model answers "This text is primarily about ...".

Why the extracted facts carry no ``relation`` in the store: the store retires an older fact with the same
subject and relation (an update). Relations written by a small model are loose ("is", "was born in") and
one document legitimately states several facts with the same one, so extracted facts must not supersede each
other. The relation stays in ``AtomicFact`` (editing methods need it to build an edit prompt).

Atomicity: extraction only produces facts; nothing is written until every document has been extracted, and
then ``KnowledgeBase.add`` stores them all in one transaction. A failure (an LLM error, a document with no
usable fact) raises before any write, so the store is left unchanged.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from scr.kb.ingest import DOCUMENT_SUFFIXES, IngestError, ParsedFile, sentence_facts
from scr.kb.records import FactInput
from scr.names import find_names

DOCUMENT_STRATEGIES = ("sentences", "atomic")

# The prompt lives here rather than in scr/prompts.py because only this module parses its output format.
EXTRACT_PROMPT = (
    "Rewrite the sentence as one short fact: subject | relation | object. Use full names instead of pronouns. "
    "Write none if the sentence states no fact.\n\n"
    "Topic: Maria Lopez\nSentence: Born in Porto, she studied law before founding Acme Books.\n"
    "Fact: Maria Lopez | founded | Acme Books\n\n"
    "Topic: Acme Books\nSentence: Few people know one surprising detail about the company: its first office was "
    "in Oslo.\nFact: Acme Books | first office was in | Oslo\n\n"
    "Topic: Acme Books\nSentence: Its story is a reminder of how much passion matters.\nFact: none\n\n"
    "Topic: {topic}\nSentence: {sentence}\nFact:"
)
MAX_SENTENCE_CHARS = 600  # longer "sentences" (lists, run-ons) are cut: the fact is rarely at their end
MAX_OBJECT_WORDS = 8  # a longer object is a clause, not an answer: such a line is kept as text only

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AtomicFact:
    """One extracted fact; ``relation`` and ``object`` are None where the model wrote no usable triple."""

    text: str
    subject: str | None
    relation: str | None
    object: str | None
    source: str  # <document>#a<N>: extracted from sentence N of the document
    sentence: str  # the sentence it was extracted from

    def as_input(self) -> FactInput:
        return FactInput(text=self.text, subject=self.subject, object=self.object, source=self.source)

    @property
    def editable(self) -> bool:
        """A parameter editor needs a prompt that contains the subject and a target to continue it with."""
        return bool(self.subject and self.relation and self.object)

    @property
    def edit_prompt(self) -> str:
        return f"{self.subject} {self.relation}"


# ----- the topic --------------------------------------------------------------------------------------------------
def guess_topic(sentences: Sequence[str]) -> str:
    """The document's main name: its most frequent capitalised word, in the longest name that contains it."""
    names: collections.Counter[str] = collections.Counter()
    for sentence in sentences:
        names.update(find_names(sentence))
    if not names:
        return ""
    words: collections.Counter[str] = collections.Counter()
    for name, count in names.items():
        for word in name.split():
            if word[:1].isupper():
                words[word] += count
    if not words:
        return names.most_common(1)[0][0]
    top = words.most_common(1)[0][0]
    return max((n for n in names if top in n.split()), key=lambda n: (len(n.split()), names[n]))


# ----- parsing the model's line ---------------------------------------------------------------------------------
_TRAILING_NAME = re.compile(r"^(?P<rel>.*?[a-z].*?)\s+(?P<obj>[A-Z0-9][\w'’.&-]*(?:\s+(?:of|de|the|and)?\s*"
                            r"[A-Z0-9][\w'’.&-]*)*)$")


def _clean(part: str) -> str:
    return re.sub(r"\s+", " ", part).strip(" \t\"'`*-.,;:")


# Function words a line cut at the token limit ends with ("... of language and the"): trimmed off.
_DANGLING = set("a an and as at both by for from her his in its of on or the their to with".split())


def _trim(part: str | None) -> str | None:
    words = (part or "").split()
    while words and words[-1].lower() in _DANGLING:
        words.pop()
    return " ".join(words) or None


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2}


def parse_fact_line(output: str, topic: str, sentence: str) -> tuple[str | None, str | None, str | None] | None:
    """(subject, relation, object) from the model's output, or None where it wrote no usable fact.

    Only the first line counts (the model goes on with a new "Topic:" after it). Accepted shapes:
      ``S | R | O``  a triple; an object longer than MAX_OBJECT_WORDS makes it text-only (relation, object None)
      ``S | R O``    two parts: a trailing proper name of the predicate becomes the object (``is the twin
                     city of | Lisbon``), else the predicate is kept as text only
    Rejected: ``none``, more than three parts (the model listing words), a single part (the model rambling), and
    a subject that shares no word with the sentence or the topic (a demonstration's name copied over).
    """
    line = next((ln for ln in output.splitlines() if ln.strip()), "")
    line = re.sub(r"^\s*(?:fact:|[-*•]|\d+[.)])\s*", "", line, flags=re.I)
    parts = [_clean(p) for p in line.split("|")]
    parts = [p for p in parts if p]
    if not parts or parts[0].lower().rstrip(".") == "none" or len(parts) not in (2, 3):
        return None
    subject = parts[0]
    if len(subject) > 100 or not re.search(r"[A-Za-z]", subject):
        return None
    if not _words(subject) & (_words(sentence) | _words(topic)):
        return None
    if len(parts) == 3:
        relation, obj = _trim(parts[1]), _trim(parts[2])
    else:
        predicate = _trim(parts[1]) or ""
        match = _TRAILING_NAME.match(predicate)
        relation, obj = (match["rel"], match["obj"]) if match else (predicate, None)
    if obj is not None and len(obj.split()) > MAX_OBJECT_WORDS:
        relation, obj = f"{relation or ''} {obj}".strip(), None
    if not relation:
        return None
    return subject, relation, obj  # obj None: a text-only fact ("subject predicate."), not editable


def fact_text(subject: str, relation: str | None, obj: str | None) -> str:
    body = " ".join(p for p in (subject, relation, obj) if p)
    body = re.sub(r"\s+", " ", body).strip().rstrip(".!?;:,")
    return body[:1].upper() + body[1:] + "."


# ----- extraction -----------------------------------------------------------------------------------------------
class AtomicExtractor:
    """Rewrites documents' sentences into atomic facts with the served LLM, in batches."""

    def __init__(self, backend, max_new_tokens: int = 16, chunk: int = 64, progress: Progress | None = None):
        self.backend = backend
        self.max_new_tokens = max_new_tokens
        self.chunk = chunk  # sentences per generate() call: bounds memory and paces the progress callback
        self.progress = progress

    def prompts(self, sentences: Sequence[str]) -> list[str]:
        topic = guess_topic(sentences)
        return [EXTRACT_PROMPT.format(topic=topic, sentence=s[:MAX_SENTENCE_CHARS]) for s in sentences]

    def extract(self, documents: Sequence[tuple[str, Sequence[str]]]) -> list[list[AtomicFact]]:
        """``documents``: (name, sentences) pairs; returns each document's facts in sentence order."""
        jobs: list[tuple[int, int, str, str]] = []  # (document, sentence number, prompt, sentence)
        topics = []
        for d, (_, sentences) in enumerate(documents):
            topics.append(guess_topic(sentences))
            for n, (prompt, sentence) in enumerate(zip(self.prompts(sentences), sentences), start=1):
                jobs.append((d, n, prompt, sentence))
        outputs: list[str] = []
        for start in range(0, len(jobs), self.chunk):
            outputs += self.backend.generate([j[2] for j in jobs[start : start + self.chunk]], self.max_new_tokens)
            if self.progress:
                self.progress(len(outputs), len(jobs))
        facts: list[list[AtomicFact]] = [[] for _ in documents]
        seen: list[set[str]] = [set() for _ in documents]
        for (d, n, _, sentence), output in zip(jobs, outputs):
            parsed = parse_fact_line(output, topics[d], sentence)
            if parsed is None:
                continue
            subject, relation, obj = parsed
            text = fact_text(subject, relation, obj)
            if text.lower() in seen[d]:  # the same fact from two sentences: keep the first
                continue
            seen[d].add(text.lower())
            facts[d].append(AtomicFact(text=text, subject=subject, relation=relation if obj else None, object=obj,
                                       source=f"{documents[d][0]}#a{n}", sentence=sentence))
        return facts


def document_facts(documents: Sequence[tuple[str, str]], strategy: str, backend=None,
                   progress: Progress | None = None) -> list[list[FactInput]]:
    """Each (name, text) document's facts under ``strategy``; ``atomic`` needs the LLM ``backend``."""
    check_strategy(strategy)
    sentences = [sentence_facts(text, name) for name, text in documents]
    if strategy == "sentences":
        return sentences
    if backend is None:
        raise IngestError("the atomic document strategy needs an LLM backend")
    extracted = AtomicExtractor(backend, progress=progress).extract(
        [(name, [f.text for f in facts]) for (name, _), facts in zip(documents, sentences)])
    return [[a.as_input() for a in facts] for facts in extracted]


def check_strategy(strategy: str) -> None:
    if strategy not in DOCUMENT_STRATEGIES:
        raise IngestError(f"unknown document strategy {strategy!r} (choose {' or '.join(DOCUMENT_STRATEGIES)})")


def extract_documents(parsed: Sequence[ParsedFile], strategy: str, backend_factory: Callable[[], object],
                      progress: Progress | None = None) -> list[ParsedFile]:
    """Parsed files with their documents' facts replaced by the ``strategy``'s (JSONL/CSV files unchanged).

    The files were already split into sentences (``parse_document``); the atomic strategy rewrites those
    sentences. Raises IngestError, before anything is stored, when a document yields no fact.
    """
    check_strategy(strategy)
    if strategy == "sentences":
        return list(parsed)
    documents = [p for p in parsed if p.path.suffix.lower() in DOCUMENT_SUFFIXES]
    if not documents:
        return list(parsed)
    extracted = AtomicExtractor(backend_factory(), progress=progress).extract(
        [(p.path.name, [f.text for f in p.facts]) for p in documents])
    replaced = {}
    for p, facts in zip(documents, extracted):
        if not facts:
            raise IngestError(f"{p.path}: the atomic extraction found no fact in {len(p.facts)} sentence(s); "
                              f"nothing was stored (ingest it with --documents sentences)")
        replaced[id(p)] = ParsedFile(p.path, [a.as_input() for a in facts], list(p.errors))
    return [replaced.get(id(p), p) for p in parsed]
