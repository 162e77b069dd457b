"""Text a caption claims is written in the image, checked against what OCR reads there.

VLMs readily invent shop names and sign text; OCR finds real text reliably enough that a
claimed word absent from everything OCR read is good evidence of a hallucination.
OCR is RapidOCR (PP-OCR models shipped inside the `rapidocr` wheel, run by onnxruntime).
"""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Sequence

from PIL import Image

from curate.hallucination.phrases import (
    CONJUNCTIONS,
    COPULAS,
    DETERMINERS,
    PREPOSITIONS,
    PRONOUNS,
    VERBS,
    Span,
    quoted,
)

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
