"""A claimed text compared, character by character, with what OCR read, giving one of three
outcomes a person can act on:

- found: some run of whole OCR words spells the claim (case, punctuation and spaces ignored);
- not_found: OCR read the text the claim is about, confidently, and it differs (a one-letter
  change in a confidently read word counts), or OCR read other text confidently and nothing
  like the claim;
- unsure: OCR read nothing, or the characters where claim and reading differ were read with
  low confidence (the difference may be OCR's own error).

Word boundaries are respected: a claimed "story" is not found inside a read "history" (in
scripts written without spaces, Chinese, Japanese, Thai, a claim may sit inside a reading). OCR
merging two words is allowed for where a lower-case letter meets a capital ("FreshBread");
claims spanning lines are compared with the lines joined in reading order.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

from curate.hallucination.ocr import OcrLine

SURE = 0.9            # a character read with at least this score is taken as read right
NEAR = 0.5            # normalised similarity from which a reading is "the text the claim is about"
ELSEWHERE_CONFIDENCE = 0.7  # not_found where nothing near the claim was read: the claimed text
                            # may be text OCR missed, so this is less sure than a near miss


@dataclass(frozen=True)
class Verdict:
    outcome: str        # "found" | "not_found" | "unsure"
    confidence: float   # OCR's score of the characters that decided it (0 when nothing was read)
    read: str           # the OCR words the claim was compared with ("" when nothing was read)
    distance: int       # character edits between claim and `read` (-1 when nothing was read)


@dataclass(frozen=True)
class _Word:
    text: str                      # normalised: casefolded letters and digits only
    scores: tuple[float, ...]      # one per character of `text`
    raw: str


_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_SPLIT = re.compile(r"[^\w]+|_")
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u0e00-\u0e7f]")


def normalise(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def _words(lines: Sequence[OcrLine]) -> list[_Word]:
    """Every line's words in reading order, each character with its OCR score."""
    out = []
    for line in lines:
        scores = iter(line.char_scores)
        for chunk in line.text.split():
            chunk_scores = [next(scores, line.score) for _ in chunk]
            pos = 0
            for part in _SPLIT.split(_CAMEL.sub(" ", chunk)):
                if not part:
                    continue
                at = chunk.find(part, pos)   # parts are pieces of the chunk, in order
                pos = at + len(part)
                text, part_scores = "", []
                for ch, s in zip(part, chunk_scores[at:at + len(part)]):
                    norm = normalise(ch)
                    text += norm
                    part_scores += [s] * len(norm)
                if text:
                    out.append(_Word(text, tuple(part_scores), part))
    return out


def judge(claim: str, lines: Sequence[OcrLine], sure: float = SURE) -> Verdict:
    """The outcome of one claimed text against one OCR reading."""
    key = normalise(claim)
    if not key:
        return Verdict("found", 1.0, "", 0)  # nothing legible is claimed
    words = _words(lines)
    if not words:
        return Verdict("unsure", 0.0, "", -1)
    if _UNSPACED.search(key):   # Chinese, Japanese, Thai are written without spaces between words
        inside = [w for w in words if key in w.text]
        if inside:
            return Verdict("found", min(inside[0].scores), inside[0].raw, 0)
    n_claim = len([w for w in _SPLIT.split(claim) if normalise(w)])
    best = None   # (similarity, -distance, i, j, text): the closest run of whole words
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + n_claim + 2) + 1):
            text = "".join(w.text for w in words[i:j])
            d = Levenshtein.distance(key, text)
            candidate = (1 - d / max(len(key), len(text)), -d, i, j, text)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
            if len(text) > 2 * len(key):
                break
    similarity, d, i, j, text = best
    d = -d
    window = words[i:j]
    read = " ".join(w.raw for w in window)
    scores = [s for w in window for s in w.scores]
    if d == 0:
        return Verdict("found", min(scores), read, 0)
    if similarity < NEAR:
        strongest = max(max(w.scores) for w in words)
        if strongest >= sure:
            return Verdict("not_found", min(strongest, ELSEWHERE_CONFIDENCE), read, d)
        return Verdict("unsure", strongest, read, d)
    differing = _differing_scores(key, text, scores)
    weakest = min(differing)
    return Verdict("not_found" if weakest >= sure else "unsure", weakest, read, d)


def _differing_scores(key: str, text: str, scores: list[float]) -> list[float]:
    """OCR scores of the read characters where claim and reading differ: the replaced or extra
    characters themselves, and for a claimed character OCR lacks, its read neighbours."""
    out = []
    for op in Levenshtein.editops(key, text):
        if op.tag in ("replace", "insert"):
            out.append(scores[op.dest_pos])
        else:  # delete: the claim has a character the reading lacks
            out.extend(scores[max(0, op.dest_pos - 1):op.dest_pos + 1] or scores[-1:])
    return out or scores


def judge_all(claim: str, readings: Sequence[Sequence[OcrLine]], sure: float = SURE) -> Verdict:
    """The best verdict over several readings of one image (the passes): found in any is found;
    otherwise the closest reading decides."""
    verdicts = [judge(claim, r, sure) for r in readings]
    found = [v for v in verdicts if v.outcome == "found"]
    if found:
        return max(found, key=lambda v: v.confidence)
    read = [v for v in verdicts if v.distance >= 0]
    if not read:
        return verdicts[0]
    return min(read, key=lambda v: (v.distance, -v.confidence))
