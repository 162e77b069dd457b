"""Text a caption claims is written in the image ("a sign that reads 'OPEN'").

VLMs readily invent shop names and sign text; a claim is only worth an OCR check when it is a
claim, so extraction errs on the side of precision:
- a quoted string counts when it looks like written text (a capital letter or a digit in it)
  or its sentence talks about writing (sign, label, reads, title, logo ...); lower-case scare
  quotes ('a "cozy" room') do not;
- after "reads / says / labelled / titled / the words / the text / logo", unquoted text counts
  when it looks like a sign: Capitalised or ALL CAPS words and digits ("reads OPEN DAILY");
- after "the word", one word counts unless it describes rather than quotes: a participle,
  an -ing form, an adjective, an adverb or a function word ("the word printed on the front").
"""

from __future__ import annotations

import re

from curate.hallucination.phrases import (
    ADJECTIVES,
    ADVERBS,
    CONJUNCTIONS,
    COPULAS,
    DETERMINERS,
    PREPOSITIONS,
    PRONOUNS,
    VERBS,
    Span,
    _is_adverb,
    _is_participle,
    quoted,
    sentences,
)

_TRIGGER = (r"(?:\bthe\s+words?|\breads|\breading|\bsays|\bsaying|\bspells(?:\s+out)?|"
            r"\bspelling(?:\s+out)?|\btext|\blabell?ed|\b(?:en)?titled|\blogo(?:\s+(?:of|for))?)")
_SIGN_WORD = r"[A-Z0-9](?:[\w&%'’-]|\.(?=\w))*"
_CONNECTOR = r"(?:of|the|and|de|la|du|&)"  # lowercase words inside a name: "Soup of the Day"
_UNQUOTED = re.compile(
    rf"{_TRIGGER}\s*[:,]?\s+"
    rf"(?P<claim>{_SIGN_WORD}(?:[ \t]+(?:{_CONNECTOR}[ \t]+){{0,2}}{_SIGN_WORD}){{0,5}})"
)
_THE_WORD = re.compile(r"\bthe\s+word\s+(?P<claim>\w[\w'’-]*)", re.IGNORECASE)
# A sentence that talks about writing: a quoted string in it is what is written.
_WRITING = re.compile(
    r"\b(?:sign(?:s|age|board)?|labell?(?:ed|s)?|reads?|reading|says?|saying|written|printed|"
    r"painted|engraved|embossed|stamped|emblazoned|inscri(?:bed|ption)|letter(?:s|ing|ed)|words?|"
    r"text|titled?|entitled|logo|brand(?:ed)?|banner|poster|caption(?:ed)?|headline|slogan|"
    r"plaque|menu|marquee|neon|billboard|cover|spine|tag|sticker|badge|spell(?:s|ed|ing)?|named)\b",
    re.IGNORECASE,
)
_FUNCTION_WORDS = DETERMINERS | PREPOSITIONS | CONJUNCTIONS | COPULAS | PRONOUNS | VERBS
# Words after "the word" that describe the word rather than quote it.
_DESCRIPTIONS = ADJECTIVES | ADVERBS | frozenset(
    "written printed painted drawn shown seen spelled spelt typed engraved stamped carved "
    "visible legible illegible readable unreadable faint faded blurry partial partially "
    "itself above below here there in large small bold capital lowercase uppercase".split())


def _describes(word: str) -> bool:
    w = word.casefold()
    return (w in _FUNCTION_WORDS or w in _DESCRIPTIONS or (w.endswith("ing") and len(w) > 5)
            or _is_participle(w) or _is_adverb(w))


def _looks_written(text: str) -> bool:
    return any(ch.isupper() or ch.isdigit() for ch in text) or not text.isascii()


def text_claims(caption: str) -> list[Span]:
    """Claimed written text, as spans of the caption, in order."""
    caption = caption or ""
    writing_sentences = [(s.start, s.end) for s in sentences(caption) if _WRITING.search(s.text)]
    claims: list[Span] = []
    taken: list[tuple[int, int]] = []

    def add(start: int, end: int) -> None:
        text = caption[start:end].rstrip(".,;:!?'’")
        end = start + len(text)
        if text and not any(s < end and start < e for s, e in taken):
            claims.append(Span(text, start, end))
            taken.append((start, end))

    for q in quoted(caption):
        if _looks_written(q.text) or any(a <= q.start < b for a, b in writing_sentences):
            add(q.start, q.end)
        else:
            taken.append((q.start, q.end))  # a scare-quoted description is no claim either
    for m in _UNQUOTED.finditer(caption):
        add(m.start("claim"), m.end("claim"))
    for m in _THE_WORD.finditer(caption):
        if not _describes(m.group("claim")):
            add(m.start("claim"), m.end("claim"))
    return sorted(claims, key=lambda c: c.start)
