"""Text-only signs of a degenerate caption: repetition, loops, near-duplicate sentences,
truncation, chat boilerplate and the language it is written in. Cheap enough for every caption.

Maintained libraries do the language work: sentences come from pysbd (knows "Dr.", "No." and
numbered items), language identification from py3langid (langid.py's model, shipped in its
wheel), similarity from rapidfuzz. Loops are found as periodic word sequences that tolerate a
changed word per repetition, so "a cat on a mat, a cat on the mat, a cat on a mat" is one.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz.distance import Indel

from curate.hallucination.phrases import sentences


@dataclass
class Degeneration:
    repeated_ngrams: float = 0.0    # share of word 3-grams that repeat an earlier 3-gram
    repeated_spans: list[tuple[int, int]] = field(default_factory=list)  # char offsets
    loop: bool = False              # a 1-25 word phrase 3+ times back to back (small changes allowed)
    duplicate_sentences: list[tuple[int, int]] = field(default_factory=list)  # near-repeats of an earlier sentence
    truncated: bool = False
    boilerplate: str = ""           # the opener or chat closer found, as written ("" when none)
    language: str = "und"           # the caption's language (ISO 639-1), "und" when too short to tell
    language_confidence: float = 0.0
    other_languages: list[str] = field(default_factory=list)  # languages of parts in another language


_WORD = re.compile(r"\w+(?:['’-]\w+)*")


def degeneration(text: str) -> Degeneration:
    text = text or ""
    share, spans = repeated_ngrams(text)
    language, confidence, others = languages(text)
    return Degeneration(
        repeated_ngrams=share,
        repeated_spans=spans,
        loop=has_loop(text),
        duplicate_sentences=duplicate_sentences(text),
        truncated=is_truncated(text),
        boilerplate=boilerplate(text),
        language=language,
        language_confidence=confidence,
        other_languages=others,
    )


def repeated_ngrams(text: str, n: int = 3) -> tuple[float, list[tuple[int, int]]]:
    """Share of word n-grams already seen earlier in the text, and the merged character spans
    they cover (for highlighting)."""
    words = list(_WORD.finditer(text))
    grams = len(words) - n + 1
    if grams <= 0:
        return 0.0, []
    norm = [w.group().casefold() for w in words]
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    spans: list[tuple[int, int]] = []
    for i in range(grams):
        gram = tuple(norm[i:i + n])
        if gram not in seen:
            seen.add(gram)
            continue
        repeats += 1
        start, end = words[i].start(), words[i + n - 1].end()
        if spans and not text[spans[-1][1]:start].strip(" ,;:.!?-\n\t"):
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))  # overlapping or adjacent
        else:
            spans.append((start, end))
    return repeats / grams, spans


MAX_PERIOD = 25       # longest looping phrase, in words
LOOP_TOLERANCE = 0.2  # share of words that may differ between repetitions (phrases of 4+ words)


def has_loop(text: str) -> bool:
    """A phrase of 1-25 words said three times back to back: some stretch of 2p words equals
    the stretch p words later, word for word, with at most a fifth of the words changed for
    phrases of 4+ words (exactly for shorter ones: "very very" or "side by side" is language)."""
    words = np.array([w.casefold() for w in _WORD.findall(text)], dtype=object)
    for p in range(1, min(MAX_PERIOD, len(words) // 3) + 1):
        same = (words[p:] == words[:-p]).astype(np.int32)
        window = 2 * p
        if len(same) < window:
            break
        sums = np.convolve(same, np.ones(window, np.int32), mode="valid")
        allowed = int(LOOP_TOLERANCE * window) if p >= 4 else 0
        if sums.max() >= window - allowed:
            return True
    return False


def duplicate_sentences(text: str, word_similarity: float = 0.85, char_similarity: float = 0.9) -> list[tuple[int, int]]:
    """Spans of sentences that repeat an earlier one nearly (rapidfuzz Indel similarity): of
    their words at least `word_similarity`, or of their letters at least `char_similarity`
    ("runs on" / "runs along"); the same words exactly for sentences of 1-3 words."""
    spans = sentences(text)
    norm = [[w.casefold() for w in _WORD.findall(s.text)] for s in spans]
    out = []
    for j in range(1, len(spans)):
        for i in range(j):
            a, b = norm[i], norm[j]
            if not a or not b:
                continue
            if min(len(a), len(b)) < 4:
                same = a == b
            else:
                same = (Indel.normalized_similarity(a, b) >= word_similarity
                        or Indel.normalized_similarity(" ".join(a), " ".join(b)) >= char_similarity)
            if same:
                out.append((spans[j].start, spans[j].end))
                break
    return out


_TERMINAL = ".!?。！？"
_CLOSERS = "\"'”’)]}»」"
# Words a finished sentence does not end on (prepositions may: "a bench to sit on.").
_DANGLING = frozenset("a an the and or but nor whose because although whereas while its their "
                      "my your our very".split())


@functools.cache
def _name_abbreviations() -> frozenset[str]:
    """Abbreviations that stand before a name or a number (pysbd's English lists): a text that
    ends on one was cut ("Dr.", "No."). "St." is left out: it also ends a street name."""
    from pysbd.lang.english import English

    words = English.Abbreviation.PREPOSITIVE_ABBREVIATIONS + English.Abbreviation.NUMBER_ABBREVIATIONS
    return frozenset(words) - {"st"}


_ENUMERATOR = re.compile(r"(?:^|\s)(\d{1,3})\.\s*$")


def is_truncated(text: str) -> bool:
    """Ends mid-sentence: no terminal punctuation (so also mid-word), a trailing ellipsis, a
    dangling article or conjunction, a title or number abbreviation ("Dr.", "No."), the next
    number of a numbered list ("... 2. Milk 3."), or an unclosed quote or bracket."""
    t = text.rstrip()
    if not t:
        return False
    if (t.count('"') % 2 or t.count("“") > t.count("”") or t.count("(") > t.count(")")
            or t.count("«") > t.count("»") or t.count("「") > t.count("」")):
        return True
    core = t.rstrip(_CLOSERS)
    if not core or core[-1] not in _TERMINAL or core.endswith(".."):
        return True
    words = _WORD.findall(core)
    if not words:
        return False
    last = words[-1].casefold()
    if last in _DANGLING or (core.endswith(".") and last in _name_abbreviations()):
        return True
    m = _ENUMERATOR.search(core)
    return bool(m) and int(m.group(1)) > 1 and re.search(rf"(?:^|\s){int(m.group(1)) - 1}\.\s", core) is not None


_MEDIUM = (r"(?:image|picture|photo(?:graph)?|scene|illustration|artwork|painting|drawing"
           r"|render(?:ing)?|screenshot|snapshot|shot|frame|visual|graphic|still)")
_SHOWS = (r"(?:shows|showcases|depicts|features|displays|presents|captures|portrays|illustrates"
          r"|contains|highlights|offers|provides|reveals|is|appears to (?:show|be|depict)"
          r"|you (?:provided|shared|uploaded|sent))")
_OPENER = re.compile(
    r"^\W*(?:"
    r"(?:(?:image |detailed )?(?:description|caption)|summary)\s*:"
    r"|(?:sure|certainly|of course|absolutely|okay|ok|great question)\b[!,.]?"
    r"(?:\s*here(?:'s|’s| is| are)\b[^.:!\n]{0,80}[:.!]?)?"
    r"|(?:here|below)(?:'s|’s| is| are)\s+(?:\w+\s+){0,4}?(?:description|caption|summary|breakdown)\b[^:.\n]{0,60}[:.]?"
    r"|as an ai\b(?: language model)?"
    r"|i(?:'m|’m| am) (?:sorry|unable)\b|i can(?:not|'t|’t)\b|unfortunately,? i\b"
    rf"|(?:the|this) (?:\w+ ){{0,2}}?{_MEDIUM} {_SHOWS}\b"
    rf"|(?:in|within) (?:the|this) (?:\w+ )?{_MEDIUM}\b(?:,? (?:we|you|one) can see\b)?"
    r"|(?:we|you|one) can see\b|(?:here )?we (?:see|have)\b"
    rf"|(?:this|it) is an? (?:\w+ ){{0,2}}?{_MEDIUM} (?:of|showing|depicting|that)\b"
    r")",
    re.IGNORECASE,
)
_CLOSER = re.compile(
    r"(?:i hope (?:this|that) helps|let me know if|feel free to (?:ask|let)|if you (?:need|have|would like|want)"
    r" (?:any|more|further|anything)|is there anything else|hope (?:this|that) (?:helps|is helpful))[^.!?]*[.!?]*\W*$",
    re.IGNORECASE,
)
# A caption that says nothing but "an image".
_ONLY_MEDIUM = re.compile(rf"^\W*(?:(?:this|it) is )?(?:an? |the )?{_MEDIUM}\W*$", re.IGNORECASE)


def boilerplate(text: str) -> str:
    """The chat/caption boilerplate the text opens or closes with, as written ("" when none)."""
    t = text.strip()
    if _ONLY_MEDIUM.match(t):
        return t
    m = _OPENER.match(t)
    if m:
        return m.group(0).lstrip(" \"'“‘*-#").strip()
    m = _CLOSER.search(t)
    return m.group(0).strip() if m else ""


# The languages identification chooses among: the common caption languages (restricting the
# choice avoids rare-language confusions on short English sentences).
LANGUAGES = ("en de fr es it pt nl pl cs sk sv da no fi hu ro tr el ru uk bg zh ja ko ar he "
             "fa hi th vi id ms").split()
_MIN_LETTERS = 20      # shorter texts are "und"
_PART_LETTERS = 30     # a sentence shorter than this is not judged on its own
_PART_CONFIDENCE = 0.99
_SCRIPTS = [  # non-Latin writing systems: (first, last code point, language)
    (0x3040, 0x30FF, "ja"), (0xAC00, 0xD7AF, "ko"), (0x1100, 0x11FF, "ko"),
    (0x4E00, 0x9FFF, "zh"), (0x3400, 0x4DBF, "zh"), (0x0400, 0x04FF, "ru"),
    (0x0370, 0x03FF, "el"), (0x0600, 0x06FF, "ar"), (0x0590, 0x05FF, "he"),
    (0x0900, 0x097F, "hi"), (0x0E00, 0x0E7F, "th"),
]


@functools.cache
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ident.set_languages(LANGUAGES)
    return ident


def _script_runs(text: str) -> dict[str, int]:
    """Letters per non-Latin writing system."""
    counts: dict[str, int] = {}
    for ch in text:
        cp = ord(ch)
        if cp < 0x0370:
            continue
        for lo, hi, lang in _SCRIPTS:
            if lo <= cp <= hi:
                counts[lang] = counts.get(lang, 0) + 1
                break
    return counts


def languages(text: str) -> tuple[str, float, list[str]]:
    """(language of the whole text, its probability, languages of parts written in another
    one). A part is a sentence identified with probability >= 0.99, or a run of 4+ letters of
    another writing system (Chinese inside an English caption)."""
    letters = sum(ch.isalpha() for ch in text)
    if letters < _MIN_LETTERS:
        return "und", 0.0, []
    ident = _identifier()
    main, prob = ident.classify(text)
    others: list[str] = []
    scripts = _script_runs(text)
    if "ja" in scripts and "zh" in scripts:  # Japanese mixes kana with Han characters
        scripts["ja"] += scripts.pop("zh")
    for lang, n in scripts.items():
        if lang != main and n >= 4:
            others.append(lang)
    for s in sentences(text):
        if sum(ch.isalpha() for ch in s.text) >= _PART_LETTERS:
            lang, p = ident.classify(s.text)
            if lang != main and p >= _PART_CONFIDENCE and lang not in others:
                others.append(lang)
    return main, float(prob), others
