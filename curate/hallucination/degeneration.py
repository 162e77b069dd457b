"""Text-only signs of a degenerate caption: repetition, loops, truncation, chat boilerplate and
the language it is written in. No model: these are cheap enough to run on every caption."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from captioners.postprocess import collapse_loops, drop_repeated_sentences, split_sentences


@dataclass
class Degeneration:
    repeated_ngrams: float = 0.0    # share of word 3-grams that repeat an earlier 3-gram
    repeated_spans: list[tuple[int, int]] = field(default_factory=list)  # char offsets
    loop: bool = False              # a 1-8 word phrase 3+ times back to back, or a repeated sentence
    truncated: bool = False
    boilerplate: str = ""           # the opener found, as written ("" when none)
    language: str = "und"


_WORD = re.compile(r"\w+(?:['’-]\w+)*")


def degeneration(text: str) -> Degeneration:
    text = text or ""
    share, spans = repeated_ngrams(text)
    return Degeneration(
        repeated_ngrams=share,
        repeated_spans=spans,
        loop=has_loop(text),
        truncated=is_truncated(text),
        boilerplate=boilerplate(text),
        language=detect_language(text),
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


def has_loop(text: str) -> bool:
    """A phrase of 1-8 words repeated 3+ times back to back, or a sentence said twice: exactly
    what `captioners.postprocess` would repair."""
    flat = " ".join(text.split())
    if collapse_loops(flat, max_n=8, min_repeats=3) != flat:
        return True
    return drop_repeated_sentences(flat) != " ".join(split_sentences(flat))


_TERMINAL = ".!?。！？"
_CLOSERS = "\"'”’)]}»」"
# Words a finished sentence does not end on.
_DANGLING = frozenset(
    "a an the and or but nor of with to from for by at into onto its their his whose which "
    "while whereas because although though than as if that this these those is are was were "
    "very such".split()
)


def is_truncated(text: str) -> bool:
    """Ends mid-sentence: no terminal punctuation (so also mid-word), a trailing ellipsis, a
    dangling article/conjunction/preposition, or an unclosed quote or bracket."""
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
    return bool(words) and words[-1].casefold() in _DANGLING


_MEDIUM = (r"(?:image|picture|photo(?:graph)?|scene|illustration|artwork|painting|drawing"
           r"|render(?:ing)?|screenshot|snapshot|shot)")
_SHOWS = (r"(?:shows|showcases|depicts|features|displays|presents|captures|portrays|illustrates"
          r"|contains|highlights|is|appears to (?:show|be|depict))")
_OPENER = re.compile(
    r"^\W*(?:"
    r"(?:sure|certainly|of course|absolutely|okay|ok)\b[!,.]?"
    r"(?:\s*here(?:'s|’s| is| are)\b[^.:!\n]{0,80}[:.!]?)?"
    r"|here(?:'s|’s| is| are)\s+(?:\w+\s+){0,4}?(?:description|caption|summary)\b[^:.\n]{0,60}[:.]?"
    r"|as an ai\b(?: language model)?"
    r"|i(?:'m|’m| am) (?:sorry|unable)\b|i can(?:not|'t|’t)\b"
    rf"|(?:the|this) {_MEDIUM} {_SHOWS}\b"
    rf"|in (?:the|this) {_MEDIUM}\b(?:,? (?:we|you) can see\b)?"
    r"|(?:we|you) can see\b"
    rf"|(?:this|it) is an? {_MEDIUM} of\b"
    r")",
    re.IGNORECASE,
)
# A caption that says nothing but "an image".
_ONLY_MEDIUM = re.compile(rf"^\W*(?:(?:this|it) is )?(?:an? |the )?{_MEDIUM}\W*$", re.IGNORECASE)


def boilerplate(text: str) -> str:
    """The chat/caption boilerplate the text opens with, as written ("" when none)."""
    t = text.strip()
    if _ONLY_MEDIUM.match(t):
        return t
    m = _OPENER.match(t)
    return m.group(0).lstrip(" \"'“‘*-#").strip() if m else ""


# Language: writing system first, then stopword counts for Latin-script languages.
_SCRIPTS = [  # (first, last code point, language)
    (0x3040, 0x30FF, "ja"), (0xAC00, 0xD7AF, "ko"), (0x1100, 0x11FF, "ko"),
    (0x4E00, 0x9FFF, "zh"), (0x3400, 0x4DBF, "zh"), (0x0400, 0x04FF, "ru"),
    (0x0370, 0x03FF, "el"), (0x0600, 0x06FF, "ar"), (0x0590, 0x05FF, "he"),
    (0x0900, 0x097F, "hi"), (0x0E00, 0x0E7F, "th"),
]
_STOPWORDS = {
    "en": "the and of with is are a an in on to this that there it its for by at from as".split(),
    "de": "der die das und ist mit ein eine einen dem den des auf im von zu sich nicht auch sind "
          "einem einer zwei sowie".split(),
    "fr": "le la les et est un une des du dans sur avec au aux qui que sont ce cette il elle "
          "deux leur".split(),
    "es": "el los las y es un una del en con por que se al sobre su sus está están dos".split(),
    "it": "il lo gli e è un una di del della con su per che sono nel nella alla due".split(),
    "pt": "o os e é um uma do da dos das em no na com por que são está dois duas".split(),
    "nl": "de het een en is van met op zijn die dat er aan voor bij twee".split(),
}
_STOP_SETS = {lang: frozenset(words) for lang, words in _STOPWORDS.items()}


def detect_language(text: str) -> str:
    """ISO 639-1 code by script and stopwords, "und" when the text is too short to tell.
    A handful of languages only; enough to catch a captioner answering in the wrong one."""
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) < 4:
        return "und"
    scripts: Counter[str] = Counter()
    for ch in letters:
        cp = ord(ch)
        for lo, hi, lang in _SCRIPTS:
            if lo <= cp <= hi:
                scripts[lang] += 1
                break
    if scripts and sum(scripts.values()) * 2 >= len(letters):
        if scripts["ja"]:  # Japanese mixes kana with Han characters
            return "ja"
        return scripts.most_common(1)[0][0]
    words = [w.casefold() for w in _WORD.findall(text)]
    if len(words) < 3:
        return "und"
    hits = {lang: sum(w in stops for w in words) for lang, stops in _STOP_SETS.items()}
    best = max(hits, key=hits.get)  # ties go to the first listed (English)
    return best if hits[best] else "und"
