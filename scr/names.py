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


def names_whole(text: str, name: str) -> bool:
    """Does ``text`` hold ``name`` as whole words, any case ("Rome" is in "Rome's", not in "Romeo")?"""
    name = name.strip().lower()
    return bool(name) and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text.lower()) is not None


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


# Words that join two names into one run ("Charles IV of Spain", "Bosnia and Herzegovina"): a text may call either
# part by itself. Particles ("van Gogh", "da Vinci") stay inside their part.
_JOINS = re.compile(r"\s+(?:of|the|and)\s+")
# Titles a text may put before a name the question gives without them ("President Obama", "Dr. Chen").
_TITLES = frozenset("""mr mrs ms miss dr sir dame lord lady president king queen prince princess pope saint st
general senator governor mayor professor prof judge""".split())


def _name_parts(text: str, openers: frozenset[str] | set[str]) -> list[list[str]]:
    """Each name of ``text`` split at joining words, as lower-cased word tokens."""
    return [re.findall(r"\w+", part.lower()) for name in find_names(text, openers) for part in _JOINS.split(name)]


def _within(short: list[str], long: list[str]) -> bool:
    """Is ``short`` a contiguous run of ``long``?"""
    n = len(short)
    return 0 < n <= len(long) and any(long[i:i + n] == short for i in range(len(long) - n + 1))


def names_the_same(question: str, text: str) -> bool:
    """Does ``text`` name something the question names, by that name or a part of it that ends in its last word,
    and not by a longer or different name? "Darrieux" and "Danielle Darrieux's" name "Danielle Darrieux";
    "Derrick Brooks" does not name "Aaron Brooks", "Nintendo DS Lite" not "Nintendo DS", "British Antarctic
    Territory" not "Australian Antarctic Territory": the last word alone (``name_heads``) lets a sentence about
    another entity answer for the question's (DocTER at 2000 documents, evals/results/docter_scale_dev). A title
    before the name ("President Obama") is allowed. A question that names nothing is named by any text."""
    questions = _name_parts(question, QUESTION_OPENERS)
    if not questions:
        return True
    mentions = []
    for tokens in _name_parts(text, _NOT_NAMES):
        while len(tokens) > 1 and tokens[0] in _TITLES:
            tokens = tokens[1:]
        mentions.append(tokens)
    for name in questions:
        for mention in mentions:
            if mention and mention[-1] == name[-1] and _within(mention, name):
                return True
    return False
