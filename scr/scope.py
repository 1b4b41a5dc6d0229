"""Scope check: does a stored fact answer this question, and which one?

Strategies (``Settings.scope_mode``):
  default     = subject-relation (below): of the modes measured, the best scope decisions on both KnowEdit test
              splits and on the sample knowledge base's plain questions (evals/results/scr_ablation.md).
  subject-relation
              the similarity gate below, then a check that the question asks about the fact's subject AND its
              relation. One cosine over the whole key is dominated by the subject, so "The gender of X is"
              passes for the fact "The citizenship of X is Syria". Where the question names the fact's
              subject, the question must contain every content word of the key's relation, or else the two
              with the subject's words removed (the relation's wording) must be similar; where it does not
              (another subject, or an alias), the whole key must be more similar than the plain gate asks.
              A question that names another entity is not about the fact: a name sharing a word with the subject
              ("Janice Dickinson" for Angie Dickinson), or, where the question does not name the subject, names
              none of which is close to it ("Katey Sagal" for Kate Winslet); closeness is the embedder's cosine,
              which keeps most aliases ("William Bradley Pitt" for Brad Pitt) (``conflicting_name``).
              A question that excludes the fact's object by name ("X's citizenship, which is not Syria, is")
              asks for another value, so that fact is out of its scope. A fact stored without a subject (a
              document's sentence, free text) must name something the question names (``shares_a_name``):
              a sentence about the Porsche 911 does not answer "Porsche 924 is produced by".
              Rules and thresholds chosen on train splits (evals/results/scope_relation.md).
  relation-encoder
              subject-relation, except where the relation's wordings are close but below the relation threshold
              (cosine in [scope_relation_band, scope_relation_threshold)): there the scope cross-encoder (below)
              decides, reading the question with the whole fact. Paraphrases worded apart from the fact's relation
              ("What university did X take part in?" for "What university did X attend?") sit in that band.
  encoder     a cross-encoder (scr/scope_encoder.py) reads the question with each retrieved fact and gives the
              probability that the fact answers it; the most probable fact is used when that probability reaches
              the encoder's threshold (chosen on train splits). Small models never say "none" and, choosing
              among facts, follow position more than content (evals/results/scope_choice.md), and one cosine
              cannot tell "same subject, same relation" from "same subject, another relation", so neither
              decision is left to them.
  similarity  a calibrated similarity gate between the question and each fact's KEY (the fact without its
              answer); the fact with the highest key similarity is used.
  gated-llm   the similarity gate; when several facts pass, the LLM picks one by constrained choice.
  llm         constrained choice among all retrieved facts or "none": the LLM alone decides.
  paper       the SCR paper's free-text prompt and parsing, kept faithful for comparison.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from scr import prompts
from scr.names import NAME_CONNECTIVES, QUESTION_OPENERS, find_names, name_heads, names_the_same
from scr.kb.records import FactHit, fact_object
from scr.llm.base import LLMBackend, as_chat


@dataclass
class ScopeDecision:
    fact_index: int | None  # index into the question's candidates; None = out of scope
    raw: str | None = None  # the LLM's own output where it produced text (paper mode)
    probability: float | None = None  # the scope encoder's probability for the best fact (encoder mode)
    # The question names the fact's subject and asks exactly its relation (subject-relation modes), so the
    # fact's object is the answer (not a step towards it, as in "the currency of the country of X").
    asks_object: bool = False
    # The question asks the fact's relation backwards, from its object (scr/inverse.py): the fact's subject is the
    # answer ("Who is the child of Y?" of "X's father is Y").
    answers_subject: bool = False
    # The other candidates that passed the same check, best first: extra context when the answer may use several
    # facts (``Settings.context_facts``; sentences of one document, each holding part of an answer).
    others: tuple[int, ...] = ()
    # The part of the question the decision was made on when not the whole: its last sentence (``final_sentence``).
    question: str | None = None

    @property
    def in_scope(self) -> bool:
        return self.fact_index is not None


class ScopeChecker(Protocol):
    def decide(self, questions: Sequence[str], candidates: Sequence[list[FactHit]]) -> list[ScopeDecision]: ...


def _choose(backend: LLMBackend, questions, fact_lists: list[list[str]], allow_none: bool) -> list[int | None]:
    """Ask the LLM for a fact number (1-based in the prompt); returns 0-based indexes, None for "none"."""
    chat = [as_chat(prompts.choose_fact(facts, q, allow_none)) for q, facts in zip(questions, fact_lists)]
    options = [[str(i) for i in range(1, len(facts) + 1)] + (["none"] if allow_none else []) for facts in fact_lists]
    picked = backend.choose(chat, options)
    return [None if allow_none and p == len(facts) else p for p, facts in zip(picked, fact_lists)]


class SimilarityScope:
    def __init__(self, threshold: float):
        self.threshold = threshold

    def decide(self, questions, candidates):
        out = []
        for hits in candidates:
            passing = sorted((i for i, h in enumerate(hits) if h.key_score >= self.threshold),
                             key=lambda i: -hits[i].key_score)
            out.append(ScopeDecision(passing[0], others=tuple(passing[1:])) if passing else ScopeDecision(None))
        return out


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def names_subject(question: str, subject: str) -> bool:
    """Does the question name the subject: at least half of the subject's words appear in it."""
    words = _words(subject)
    return bool(words) and len(words & _words(question)) >= 0.5 * len(words)


# Cosine (name, subject) below which a conflicting name is another entity: the balanced-accuracy optimum on KnowEdit
# WikiData_counterfact train (evals/results/name_conflicts.md).
NAME_THRESHOLD = 0.75
# Cosine one of the question's names must reach to the subject of a fact accepted although the question does not
# name that subject (an alias, or another entity): the balanced-accuracy optimum on the same split, the name
# threshold above in place (evals/results/name_conflicts.md).
OTHER_NAME_THRESHOLD = 0.7


def entity_names(question: str, relation: set[str] = frozenset()) -> list[str]:
    """The question's names without the words of ``relation`` (a fact's relation words, ``relation_words``):
    capitalised roles name no entity ("Who is the Pope?"; "the current UK Prime Minister" -> "UK"; "Leonor,
    Princess of Asturias Father" -> "Leonor", "Princess of Asturias")."""
    names = (" ".join(w for w in name.split() if re.sub(r"\W", "", w.lower()).rstrip("s") not in relation)
             for name in find_names(question, QUESTION_OPENERS))
    return [name for name in names if name]


def conflicting_name(question: str, subject: str, relation: set[str] = frozenset()) -> str | None:
    """A name in the question that shares a word with the subject but is another name ("Janice Dickinson" for "Angie
    Dickinson", "Elizabeth II" for "Elizabeth Holmes"): the name and the subject each have a word the other lacks.
    A name that holds the whole subject ("President Barack Obama", "Harry Potter and the Goblet of Fire") or that
    the subject holds ("DiCaprio") is the subject. Aliases are often such names too ("William Bradley Pitt" for
    "Brad Pitt"), so the scope check drops a fact only when the name is also unlike the subject in the embedder's
    space (``SubjectRelationScope.name_threshold``; evals/results/name_conflicts.md)."""
    subject_words = _words(subject).difference(NAME_CONNECTIVES)
    for name in entity_names(question, relation):
        name_words = _words(name).difference(NAME_CONNECTIVES)
        if name_words & subject_words and name_words - subject_words and subject_words - name_words:
            return name
    return None


# How a fact without a subject must name what the question names (``Settings.scope_name_match``).
NAME_MATCHES = ("whole-name", "last-word")


def shares_a_name(question: str, fact_text: str, match: str = "whole-name") -> bool:
    """Does a fact stored without a subject name what the question asks about? Yes when the question names nothing,
    or when the fact contains what identifies one of the question's names. ``last-word``: the name's last word
    anywhere in the fact ("Darrieux" for "Danielle Darrieux", "924" for "Porsche 924"). Without it, a sentence's
    similarity alone lets it answer questions about a neighbouring subject (evals/results/docter_dev: 27 of 36
    changed neighbour answers). ``whole-name``: also, the fact must call it by that name or a part of it ending in
    that word, not by a longer or another name ("Derrick Brooks" is not "Aaron Brooks"; ``names_the_same``),
    which a knowledge base of 2000 documents needs (evals/results/docter_scale_dev)."""
    if match not in NAME_MATCHES:
        raise ValueError(f"unknown name match {match!r} (choose from {', '.join(NAME_MATCHES)})")
    if match == "whole-name":
        return names_the_same(question, fact_text)
    heads = name_heads(question)
    if not heads:
        return True
    named = _words(fact_text)  # once, not once per head
    return any(head <= named for head in heads)


# Words that carry no relation: "The name of the mother of X is" asks for {mother}.
_FUNCTION_WORDS = frozenset(
    "a an the of in on at to for by with from as is are was were be been being and or that which who whom whose what "
    "where when how why does do did has have had it its this these those there their his her name names".split())


def relation_words(text: str, subject: str) -> set[str]:
    """The content words of ``text`` that are not the subject's, crudely singular ("children" stays; the "s"
    of "X's" goes)."""
    drop = _words(subject)
    singular = (w.rstrip("s") for w in re.findall(r"\w+", text.lower()) if w not in _FUNCTION_WORDS and w not in drop)
    return {w for w in singular if len(w) > 1}


def relation_wording(text: str, subject: str) -> str:
    """``text`` with every word of ``subject`` removed: what it says about the subject, not who it is about."""
    drop = _words(subject)
    return " ".join(t for t in re.findall(r"\w+|[^\w\s]", text) if t.lower() not in drop)


# "X, which is not Syria, is", "a child of X other than Y", "besides Y": the question asks for another value.
# A bare "not" is left out: "Is the capital of France not Paris?" asks about the fact itself.
EXCLUDING = (r"(?:(?:which|that|who)\s+(?:is|are|was|were)\s+not|other than|besides|except(?:\s+for)?|"
              r"apart from|aside from|excluding)")


def excludes_object(question: str, obj: str | None) -> bool:
    """Does the question exclude this object by name ("..., which is not Syria, is")? Then the fact whose object it
    is does not answer it: the question asks for another value of the relation (a relation with several values,
    such as children or citizenships), which the model answers as before."""
    if not obj or not obj.strip():
        return False
    pattern = rf"\b{EXCLUDING}\s+(?:the\s+|a\s+|an\s+)?{re.escape(obj.strip())}(?!\w)"
    return re.search(pattern, question, flags=re.IGNORECASE) is not None


# A sentence ends at ".", "!" or "?" before a capital or a digit, or at a line break. A capitalised word of at most
# three letters before the period is taken for an initial or a title ("Herbert T. Levack", "Gov. DeSantis",
# "Mr. West"), as are dotted abbreviations ("U.S."), and ends no sentence.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\s*\n\s*")
_ABBREVIATION = re.compile(r"(?:^|\s)(?:[A-Z][a-z]{0,2}|(?:[A-Za-z]\.)+[A-Za-z])\.$")


def final_sentence(question: str, min_words: int = 2) -> str | None:
    """The question's last sentence when text comes before it, else None. A query often opens with text that is
    not the question ("The film was released in 2006. The mother tongue of X is"; a pasted passage, then the
    question); that text dilutes the similarity of the whole query to any fact, so the scope check may retry on
    the last sentence alone (``SCRPipeline``, ``Settings.scope_final_sentence``)."""
    text = question.strip()
    start = 0
    for match in _SENTENCE_BREAK.finditer(text):
        if "\n" in match.group() or not _ABBREVIATION.search(text[: match.start()]):
            start = match.end()
    last = text[start:].strip()
    return last if start and len(last.split()) >= min_words else None


# The modes that run the subject-relation check (and so its name checks, ``Settings.scope_names``).
SUBJECT_RELATION_MODES = ("default", "subject-relation", "relation-encoder")


class SubjectRelationScope:
    """The similarity gate, then the same-subject and same-relation check (module docstring).

    Same relation: every content word of the fact's relation appears in the question, or else the relation
    wordings (question and key without the subject's words) reach ``relation_threshold`` in cosine.

    ``embed(texts) -> unit vectors`` is the knowledge base's embedder, so wordings are compared in the space the
    keys were embedded in. A fact stored with a ``relation`` is also compared as the question "What is the
    <relation> of <subject>?", since a natural sentence's key carries words the question need not repeat
    ("... moved to Lisbon in 2026"). Facts stored without a subject get the plain gate and, with ``names``, the
    name check (``shares_a_name``). A question that excludes a fact's object by name ("which is not Syria") is not
    answered by that fact (``excludes_object``).
    """

    def __init__(self, embed: Callable[[list[str]], "np.ndarray"], threshold: float, relation_threshold: float,
                 other_subject_threshold: float, encoder=None, band: float = 0.5,
                 min_probability: float | None = None, names: bool = True, name_conflicts: bool = True,
                 name_threshold: float = NAME_THRESHOLD, other_name_threshold: float | None = OTHER_NAME_THRESHOLD,
                 name_match: str = "whole-name"):
        self.embed = embed
        self.names = names  # facts without a subject must share a name with the question (``shares_a_name``)
        self.name_match = name_match
        # A question naming another entity (``conflicting_name``, cosine to the subject below ``name_threshold``)
        # is not about the fact.
        self.name_conflicts = name_conflicts
        self.name_threshold = name_threshold
        # With name_conflicts, a fact accepted although the question does not name its subject (an alias, or
        # another entity: "Katey Sagal" for a fact on Kate Winslet) needs one of the question's names to reach this
        # cosine to the subject; a question that names nothing keeps it. None: key similarity alone decides.
        self.other_name_threshold = other_name_threshold
        self.threshold = threshold
        self.relation_threshold = relation_threshold
        self.other_subject_threshold = other_subject_threshold
        # Optional (relation-encoder mode): the cross-encoder settles relation cosines in [band, relation_threshold).
        self.encoder = encoder
        self.band = band
        if encoder is not None and min_probability is None:
            min_probability = encoder.info.threshold
        self.min_probability = min_probability

    @staticmethod
    def fact_wordings(hit: FactHit) -> list[str]:
        forms = [hit.key or hit.text] + ([f"What is the {hit.relation} of {hit.subject}?"] if hit.relation else [])
        return [relation_wording(form, hit.subject) for form in forms]

    @staticmethod
    def relation_word_sets(hit: FactHit) -> list[set[str]]:
        """The content words of the fact's relation, from its key and from its stored relation."""
        forms = [hit.key or hit.text] + ([hit.relation] if hit.relation else [])
        return [words for words in (relation_words(f, hit.subject) for f in forms) if words]

    @classmethod
    def asks_all_of(cls, question: str, hit: FactHit) -> bool:
        """Every content word of the fact's relation is in the question: the same relation, or a question that
        goes through it ("the currency of the country of citizenship of X" for "the citizenship of X is")."""
        asked = relation_words(question, hit.subject)
        return any(words <= asked for words in cls.relation_word_sets(hit))

    @classmethod
    def asks_exactly(cls, question: str, hit: FactHit) -> bool:
        """The question's relation words are the fact's, no more: it asks for the object itself."""
        asked = relation_words(question, hit.subject)
        return any(words == asked for words in cls.relation_word_sets(hit))

    @classmethod
    def relation_of(cls, hit: FactHit) -> set[str]:
        """Every content word of the fact's relation (key and stored relation)."""
        return set().union(*cls.relation_word_sets(hit))

    def decide(self, questions, candidates):
        passing: list[list[int]] = []
        pairs: dict[tuple[int, int], tuple[str, list[str]]] = {}  # (question, candidate) -> wordings to compare
        exact: dict[tuple[int, int], bool] = {}  # (question, candidate) -> asks exactly the fact's relation
        # Name checks: ((question, candidate), names in the question, subject, least cosine one name must reach).
        named: list[tuple[tuple[int, int], list[str], str, float]] = []
        for n, (question, hits) in enumerate(zip(questions, candidates)):
            ok = []
            for i, hit in enumerate(hits):
                if hit.key_score < self.threshold or excludes_object(question, fact_object(hit)):
                    continue
                by_key = False  # accepted on key similarity alone: the question does not name the subject
                if not hit.subject:
                    if not self.names or shares_a_name(question, hit.text, self.name_match):
                        ok.append(i)
                elif names_subject(question, hit.subject):
                    if not self.asks_all_of(question, hit):  # else the relation is settled without embeddings
                        pairs[n, i] = (relation_wording(question, hit.subject), self.fact_wordings(hit))
                    else:
                        exact[n, i] = self.asks_exactly(question, hit)
                    ok.append(i)
                elif hit.key_score >= self.other_subject_threshold:
                    ok.append(i)
                    by_key = True
                # Only a candidate with a subject still in the running is worth the names' embeddings.
                if not (self.name_conflicts and hit.subject and ok and ok[-1] == i):
                    continue
                relation = self.relation_of(hit)
                if name := conflicting_name(question, hit.subject, relation):
                    named.append(((n, i), [name], hit.subject, self.name_threshold))
                if by_key and self.other_name_threshold is not None and (names := entity_names(question, relation)):
                    named.append(((n, i), names, hit.subject, self.other_name_threshold))
            passing.append(ok)
        texts = list(dict.fromkeys([t for q, forms in pairs.values() for t in [q, *forms]]
                                   + [t for _, names, subject, _ in named for t in [*names, subject]]))
        vectors = dict(zip(texts, self.embed(texts))) if texts else {}
        if named:  # the fact is about another entity when none of the question's names is close to its subject
            other = {at for at, names, subject, least in named
                     if max(float(vectors[name] @ vectors[subject]) for name in names) < least}
            passing = [[i for i in ok if (n, i) not in other] for n, ok in enumerate(passing)]
        if pairs:
            similarity = {at: max(float(vectors[q] @ vectors[f]) for f in forms) for at, (q, forms) in pairs.items()}
            same_relation = {at: s >= self.relation_threshold for at, s in similarity.items()}
            unsure = [at for at, s in similarity.items() if self.encoder is not None
                      and self.band <= s < self.relation_threshold]
            if unsure:
                probs = self.encoder.probabilities([questions[n] for n, _ in unsure],
                                                   [candidates[n][i].text for n, i in unsure])
                same_relation.update({at: float(p) >= self.min_probability for at, p in zip(unsure, probs)})
            passing = [[i for i in ok if same_relation.get((n, i), True)] for n, ok in enumerate(passing)]
            exact.update(same_relation)  # a relation wording as close as a paraphrase asks the same relation
        decisions = []
        for n, (hits, ok) in enumerate(zip(candidates, passing)):
            ranked = sorted(ok, key=lambda i: -hits[i].key_score)
            best = ranked[0] if ranked else None
            decisions.append(ScopeDecision(best, asks_object=exact.get((n, best), False), others=tuple(ranked[1:])))
        return decisions


class EncoderScope:
    """The scope cross-encoder's decision: the most probable candidate, if probable enough."""

    def __init__(self, encoder, min_probability: float | None = None):
        self.encoder = encoder
        self.threshold = encoder.info.threshold if min_probability is None else min_probability

    def decide(self, questions, candidates):
        qs = [q for q, hits in zip(questions, candidates) for _ in hits]
        probs = self.encoder.probabilities(qs, [h.text for hits in candidates for h in hits]) if qs else []
        out, at = [], 0
        for hits in candidates:
            p = probs[at : at + len(hits)]
            at += len(hits)
            best = int(p.argmax()) if len(hits) else None
            ok = best is not None and p[best] >= self.threshold
            out.append(ScopeDecision(best if ok else None, probability=float(p[best]) if len(hits) else None))
        return out


class GatedChoiceScope:
    def __init__(self, backend: LLMBackend, threshold: float):
        self.backend = backend
        self.threshold = threshold

    def decide(self, questions, candidates):
        decisions: list[ScopeDecision] = [ScopeDecision(None) for _ in questions]
        ask, ask_q, ask_facts = [], [], []
        for n, hits in enumerate(candidates):
            eligible = [i for i, h in enumerate(hits) if h.key_score >= self.threshold]
            if len(eligible) == 1:
                decisions[n] = ScopeDecision(eligible[0])
            elif len(eligible) > 1:
                ask.append((n, eligible))
                ask_q.append(questions[n])
                ask_facts.append([hits[i].text for i in eligible])
        if ask:
            for (n, eligible), picked in zip(ask, _choose(self.backend, ask_q, ask_facts, allow_none=False)):
                decisions[n] = ScopeDecision(eligible[picked])
        return decisions


class LLMChoiceScope:
    def __init__(self, backend: LLMBackend):
        self.backend = backend

    def decide(self, questions, candidates):
        decisions = [ScopeDecision(None) for _ in questions]
        todo = [n for n, hits in enumerate(candidates) if hits]
        if todo:
            picked = _choose(self.backend, [questions[n] for n in todo],
                             [[h.text for h in candidates[n]] for n in todo], allow_none=True)
            for n, p in zip(todo, picked):
                decisions[n] = ScopeDecision(p)
        return decisions


def parse_paper_output(output: str, facts: list[str]) -> int | None:
    """The paper's parsing: a "no relevant fact" marker means out of scope; otherwise match the fact back."""
    lowered = output.lower()
    if any(marker in lowered for marker in prompts.PAPER_NONE_MARKERS):
        return None
    for i, fact in enumerate(facts):
        if fact.lower().strip(" .") in lowered:
            return i
    out_words = _words(output)
    overlaps = [len(out_words & _words(f)) / max(1, len(_words(f))) for f in facts]
    best = max(range(len(facts)), key=lambda i: overlaps[i], default=None)
    return best if best is not None and overlaps[best] > 0 else None


class PaperScope:
    def __init__(self, backend: LLMBackend, max_new_tokens: int = 50):
        self.backend = backend
        self.max_new_tokens = max_new_tokens

    def decide(self, questions, candidates):
        decisions = [ScopeDecision(None) for _ in questions]
        todo = [n for n, hits in enumerate(candidates) if hits]
        chats = [as_chat(prompts.paper_scope([h.text for h in candidates[n]], questions[n])) for n in todo]
        outputs = self.backend.generate(chats, max_new_tokens=self.max_new_tokens) if chats else []
        for n, output in zip(todo, outputs):
            decisions[n] = ScopeDecision(parse_paper_output(output, [h.text for h in candidates[n]]), raw=output)
        return decisions


def make_scope_checker(mode: str, backend: LLMBackend | Callable[[], LLMBackend], threshold: float = 0.59,
                       encoder=None, min_probability: float | None = None, embed=None,
                       relation_threshold: float = 0.75, other_subject_threshold: float = 0.67,
                       relation_band: float = 0.5, names: bool = True, name_conflicts: bool = True,
                       name_threshold: float = NAME_THRESHOLD,
                       other_name_threshold: float | None = OTHER_NAME_THRESHOLD,
                       name_match: str = "whole-name") -> ScopeChecker:
    """The scope check of ``mode``. ``backend`` may be a callable, called only by the modes that use the LLM;
    ``encoder`` is the ScopeEncoder of the encoder mode (the shipped one when None); ``embed`` is the
    knowledge base's ``embed(texts)`` for the subject-relation mode."""
    get_llm = (lambda: backend) if hasattr(backend, "generate") else backend
    if mode in ("encoder", "relation-encoder") and encoder is None:
        from scr.scope_encoder import ScopeEncoder

        encoder = ScopeEncoder.load()
    if mode in SUBJECT_RELATION_MODES:
        if embed is None:
            raise ValueError(f"scope mode {mode!r} needs the knowledge base's embedder")
        return SubjectRelationScope(embed, threshold, relation_threshold, other_subject_threshold,
                                    encoder if mode == "relation-encoder" else None, relation_band, min_probability,
                                    names, name_conflicts, name_threshold, other_name_threshold, name_match)
    if mode == "encoder":
        return EncoderScope(encoder, min_probability)
    if mode == "similarity":
        return SimilarityScope(threshold)
    if mode == "gated-llm":
        return GatedChoiceScope(get_llm(), threshold)
    if mode == "llm":
        return LLMChoiceScope(get_llm())
    if mode == "paper":
        return PaperScope(get_llm())
    raise ValueError(f"unknown scope mode {mode!r} (default, subject-relation, relation-encoder, similarity, encoder, "
                     "gated-llm, llm, paper)")


def build_scope_checker(settings, backend: LLMBackend | Callable[[], LLMBackend], embedder=None) -> ScopeChecker:
    """The scope check that ``settings`` describe (mode, thresholds, encoder file, device). ``embedder`` (or a
    callable returning it, called on first use) is the knowledge base's, for the subject-relation mode."""
    encoder = None
    if settings.scope_mode in ("encoder", "relation-encoder"):
        from scr.scope_encoder import ScopeEncoder

        encoder = ScopeEncoder.load(settings.scope_encoder, device=settings.device)

    def embed(texts):
        return (embedder if hasattr(embedder, "embed") else embedder()).embed(texts)

    return make_scope_checker(settings.scope_mode, backend, settings.scope_threshold, encoder,
                              settings.scope_min_probability, embed if embedder is not None else None,
                              settings.scope_relation_threshold, settings.scope_other_subject_threshold,
                              settings.scope_relation_band, settings.scope_names, settings.scope_name_conflicts,
                              name_match=settings.scope_name_match)
