"""Names in text, found without a model: runs of capitalised words or numbers ("Danielle Darrieux", "Porsche 924",
"Charles IV of Spain"). Document extraction guesses a document's topic from them (``scr.kb.extract``); the scope
check asks whether a fact stored without a subject names what a question is about (``scr.scope.shares_a_name``).
"""

from __future__ import annotations

import re

# Capitalised words that start sentences or are function words, never (the start of) a name.
_NOT_NAMES = set("""a an and as at but by during for from he her his however i if in it its many my not now of on one
our she so that the their there these they this those today we what when whether which while who with yet after
although amidst according before born despite known impressed since some such then though throughout under unlike
until upon whose""".split())
# Capitalised words that open questions and requests: not names either ("Where was X born?", "Name the CEO of Y").
QUESTION_OPENERS = _NOT_NAMES | set("""where how why is are was were does do did can could should would will name tell
list give please""".split())
_WORD = r"[A-Z0-9][\w'’.&-]*"
# Lower-case words inside a name ("Charles IV of Spain"); shared by two names, they say nothing about which it is.
NAME_CONNECTIVES = ("of", "de", "von", "van", "der", "the", "la", "le", "du", "del", "da", "di", "and")
_CONNECTIVE = "(?:" + "|".join(NAME_CONNECTIVES) + ")"
_NAME = re.compile(_WORD + r"(?:\s+(?:" + _CONNECTIVE + r"\s+)?" + _WORD + ")*")


def find_names(text: str, openers: frozenset[str] | set[str] = _NOT_NAMES) -> list[str]:
    """The names a text uses: runs of capitalised words (or numbers), without a leading sentence-opening or function
    word (``openers``: "The", "However") and a trailing possessive or period."""
    names = []
    for match in _NAME.finditer(text):
        words = match.group(0).split()
        while words and words[0].lower() in openers:
            words.pop(0)
        name = re.sub(r"(?:'s|’s|[.'’])$", "", " ".join(words))
        if name:
            names.append(name)
    return names


def name_heads(text: str) -> list[set[str]]:
    """What identifies each name in ``text``: the lower-cased word tokens of the last word of each of its parts
    ("Danielle Darrieux" -> {darrieux}; "Porsche 924" -> {924}; "Charles IV of Spain" -> {iv}, {spain}). A text
    may call its subject by the last name alone, never by the first."""
    heads = []
    for name in find_names(text, QUESTION_OPENERS):
        for part in re.split(r"\s+" + _CONNECTIVE + r"\s+", name):
            words = part.split()
            tokens = set(re.findall(r"\w+", words[-1].lower())) if words else set()
            if tokens:
                heads.append(tokens)
    return heads
