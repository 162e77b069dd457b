"""The hallucination text checks as they were before issue 20 (claim extraction, the fuzzy
OCR matcher, RapidOCR reading and degeneration), kept verbatim here only as bench/halluc's
same-run baseline. Not used by the pipeline."""

from __future__ import annotations

import difflib
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from captioners.postprocess import collapse_loops, drop_repeated_sentences, split_sentences
from curate.hallucination.phrases import (
    CONJUNCTIONS,
    COPULAS,
    DETERMINERS,
    PREPOSITIONS,
    PRONOUNS,
    VERBS,
    Span,
)

# Quoted text: "..", “..”, «..», 「..」, and single quotes that are not apostrophes
# (an opening quote follows no letter, a closing one precedes none).
_QUOTED = re.compile(
    r'"(?P<a>[^"\n]{1,200})"'
    r"|“(?P<b>[^”\n]{1,200})”"
    r"|«(?P<c>[^»\n]{1,200})»"
    r"|「(?P<d>[^」\n]{1,200})」"
    r"|(?<!\w)'(?P<e>[^'\n]{1,120}?)'(?!\w)"
    r"|(?<!\w)‘(?P<f>[^‘\n]{1,120}?)’(?!\w)"
)


def quoted(text: str) -> list[Span]:
    """Quoted strings (without their quote marks) that contain a letter or digit."""
    spans = []
    for m in _QUOTED.finditer(text):
        group = next(g for g in "abcdef" if m.group(g) is not None)
        inner, start = m.group(group), m.start(group)
        lead = len(inner) - len(inner.lstrip())
        inner = inner.strip()
        if any(ch.isalnum() for ch in inner):
            spans.append(Span(inner, start + lead, start + lead + len(inner)))
    return spans



# Unquoted claims: a trigger word, then the claimed text. Unquoted text must look like a sign
# (Capitalised or ALL CAPS words, digits), except right after "the word", where any one word
# counts ("the word hello").
_TRIGGER = (r"(?:\bthe\s+words?|\breads|\breading|\bsays|\bsaying|\bspells(?:\s+out)?|"
            r"\bspelling(?:\s+out)?|\btext|\blabell?ed|\blogo(?:\s+(?:of|for))?)")
_SIGN_WORD = r"[A-Z0-9](?:[\w&%'’-]|\.(?=\w))*"
_CONNECTOR = r"(?:of|the|and|de|la|du|&)"  # lowercase words inside a name: "Soup of the Day"
_UNQUOTED = re.compile(
    rf"{_TRIGGER}\s*[:,]?\s+"
    rf"(?P<claim>{_SIGN_WORD}(?:[ \t]+(?:{_CONNECTOR}[ \t]+){{0,2}}{_SIGN_WORD}){{0,5}})"
)
_FUNCTION_WORDS = DETERMINERS | PREPOSITIONS | CONJUNCTIONS | COPULAS | PRONOUNS | VERBS
_THE_WORD = re.compile(r"\bthe\s+word\s+(?P<claim>\w[\w'’-]*)", re.IGNORECASE)


def text_claims(caption: str) -> list[Span]:
    """Text the caption says is written in the image: quoted strings, and unquoted text after
    "the word(s)", "reads", "says", "text", "sign saying", "labelled", "logo" ..."""
    caption = caption or ""
    claims = list(quoted(caption))
    taken = [(c.start, c.end) for c in claims]

    def add(start: int, end: int) -> None:
        text = caption[start:end].rstrip(".,;:!?'’")
        end = start + len(text)
        if text and not any(s < end and start < e for s, e in taken):
            claims.append(Span(text, start, end))
            taken.append((start, end))

    for m in _UNQUOTED.finditer(caption):
        add(m.start("claim"), m.end("claim"))
    for m in _THE_WORD.finditer(caption):
        if m.group("claim").lower() not in _FUNCTION_WORDS:  # "the word on the sign is ..."
            add(m.start("claim"), m.end("claim"))
    return sorted(claims, key=lambda c: c.start)


def _norm_words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]|_", " ", text.casefold()).split()


def claims_found(claims: Sequence[Span | str], ocr_lines: Sequence[str],
                 min_ratio: float = 0.8) -> list[bool]:
    """For each claim, whether OCR read it (both sides casefolded, punctuation dropped): the
    whole claim is a substring of the OCR text with spaces ignored (OCR merges and splits
    words), or every claimed word is an OCR word, a substring of the OCR text, or within a
    difflib ratio of `min_ratio` of an OCR word (OCR misreads letters). Substrings count from 4
    characters (any length in non-Latin scripts), so that a short wrong word is not "found"
    inside a longer real one."""
    ocr_words = [w for line in ocr_lines for w in _norm_words(line)]
    joined = "".join(ocr_words)
    vocabulary = set(ocr_words)
    found = []
    for claim in claims:
        words = _norm_words(claim.text if isinstance(claim, Span) else claim)
        key = "".join(words)
        if not words:
            found.append(True)  # nothing legible is claimed
        elif (len(key) >= 4 or not key.isascii()) and key in joined:
            found.append(True)
        else:
            found.append(all(_word_found(w, vocabulary, joined, min_ratio) for w in words))
    return found


def _word_found(word: str, vocabulary: set[str], joined: str, min_ratio: float) -> bool:
    if word in vocabulary or ((len(word) >= 4 or not word.isascii()) and word in joined):
        return True
    return any(difflib.SequenceMatcher(None, word, o).ratio() >= min_ratio for o in vocabulary)


class OcrReader:
    """RapidOCR, loaded on first use (one per worker process). `read` is thread-safe."""

    def __init__(self, max_side: int = 1280, min_score: float = 0.5, threads: int = -1):
        self.max_side = max_side
        self.min_score = min_score
        self.threads = threads  # onnxruntime intra-op threads; -1: all cores
        self._engine = None
        self._lock = threading.Lock()

    def _load(self):
        if self._engine is None:
            from rapidocr import RapidOCR

            self._engine = RapidOCR(params={
                "Global.log_level": "error",
                "Global.text_score": self.min_score,
                "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
            })
        return self._engine

    def read(self, image: Image.Image) -> list[str]:
        """Recognised text lines in reading order; [] when the image has no text."""
        image = _rgb(image)
        if max(image.size) > self.max_side:  # 4K inputs: OCR cost grows with pixels
            scale = self.max_side / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        if min(image.size) < 8:  # too small to hold legible text
            return []
        with self._lock:
            result = self._load()(image)
        if not result.txts:
            return []
        return [t.strip() for t, s in zip(result.txts, result.scores)
                if t.strip() and s >= self.min_score]


def _rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency flattened onto white (transparent logos are mostly dark ink)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def check_text(caption: str, image: Image.Image, reader: OcrReader,
               always_read: bool = False) -> tuple[list[Span], list[bool], str]:
    """(claims, found per claim, OCR text as lines joined by newlines). OCR runs only when the
    caption claims some text, unless `always_read`: it is the expensive part."""
    claims = text_claims(caption)
    if not claims and not always_read:
        return [], [], ""
    lines = reader.read(image)
    return claims, claims_found(claims, lines), "\n".join(lines)


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


def old_score(ev: dict, expected_language: str = "en") -> float:
    """The old combined score with CLIP and alt agreement off: text_not_found (0.2) and
    degeneration (0.15), a weighted mean of the measured signals."""
    sig = {}
    if ev["text_claims"]:
        sig["text_not_found"] = sum(not c for c in ev["text_claims"]) / len(ev["text_claims"])
    wrong_language = ev["language"] not in (expected_language, "und")
    sig["degeneration"] = 1.0 if ev["loop"] or wrong_language else max(
        min(1.0, 2 * ev["repeated_ngrams"]), 0.5 * ev["truncated"], 0.3 * bool(ev["boilerplate"]))
    w = {"text_not_found": 0.2, "degeneration": 0.15}
    return sum(w[k] * v for k, v in sig.items()) / sum(w[k] for k in sig)
