"""Caption post-processing: strip chat artefacts, collapse loops and repeated sentences,
and cut to the training text encoder's token budget at a sentence boundary."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

_ROLE_PREFIX = re.compile(r"^\s*(?:<\|?\w+\|?>\s*:?|(?:assistant|bot|gpt|answer)\s*:)\s*", re.IGNORECASE)
_SPECIAL = re.compile(r"<\|[^|>]{1,40}\|>|</?s>|<(?:image|pad|unk|eos|bos)>", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_LAST_SENTENCE_END = re.compile(r"^.*[.!?][\"')\]]*(?=\s|$)", re.DOTALL)


@dataclass
class Cleaned:
    text: str
    tokens: int
    cut: str          # what the budget cut removed ("" when nothing)
    changes: list[str]  # which repairs were applied


def strip_artefacts(text: str) -> str:
    prev = None
    while prev != text:
        prev = text
        text = _ROLE_PREFIX.sub("", _SPECIAL.sub(" ", text))
    return re.sub(r"\s+", " ", text).strip().strip('"').strip()


def trim_to_last_sentence(text: str) -> str:
    """The text up to its last full sentence (a caption the token limit cut ends mid-sentence);
    "" when not one sentence ended."""
    found = _LAST_SENTENCE_END.match(text)
    return found.group(0).strip() if found else ""


def collapse_loops(text: str, max_n: int = 6, min_repeats: int = 3) -> str:
    """Replace an n-gram repeated back to back `min_repeats`+ times by a single copy."""
    words = text.split()
    for n in range(1, max_n + 1):
        norm = [re.sub(r"\W+", "", w.lower()) for w in words]
        out: list[str] = []
        i = 0
        while i < len(words):
            gram = norm[i:i + n]
            reps = 1
            while len(gram) == n and norm[i + reps * n:i + (reps + 1) * n] == gram:
                reps += 1
            if len(gram) == n and reps >= min_repeats:
                out.extend(words[i + (reps - 1) * n:i + reps * n])  # the last copy keeps its punctuation
                i += reps * n
            else:
                out.append(words[i])
                i += 1
        words = out
    return " ".join(words)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def drop_repeated_sentences(text: str) -> str:
    seen, kept = set(), []
    for s in split_sentences(text):
        norm = re.sub(r"\W+", " ", s.lower()).strip()
        if norm and norm not in seen:
            seen.add(norm)
            kept.append(s)
    return " ".join(kept)


def cut_to_budget(text: str, count: Callable[[str], int], budget: int) -> tuple[str, str]:
    """Longest prefix of whole sentences within `budget` tokens (words if one sentence is too long)."""
    if count(text) <= budget:
        return text, ""
    sentences = split_sentences(text)
    kept: list[str] = []
    for s in sentences:
        if count(" ".join([*kept, s])) > budget:
            break
        kept.append(s)
    if not kept:
        words = text.split()
        lo, hi = 0, len(words)
        while lo < hi:  # largest word prefix within budget
            mid = (lo + hi + 1) // 2
            if count(" ".join(words[:mid])) <= budget:
                lo = mid
            else:
                hi = mid - 1
        kept_text = " ".join(words[:lo])
    else:
        kept_text = " ".join(kept)
    return kept_text, text[len(kept_text):].strip()


def clean(text: str | None, count: Callable[[str], int], budget: int, cut_by_limit: bool = False) -> Cleaned:
    """`cut_by_limit`: the captioner stopped at max_new_tokens (finish reason `length`), so the
    unfinished last sentence is dropped first (when an earlier sentence ended)."""
    raw = text or ""
    changes = []
    step = strip_artefacts(raw)
    if step != raw.strip():
        changes.append("artefacts")
    if cut_by_limit:  # with no sentence ended, the text stays (marked `length`; the scorer flags it truncated)
        trimmed = trim_to_last_sentence(step) or step
        if trimmed != step:
            changes.append("length_trim")
        step = trimmed
    looped = collapse_loops(step)
    if looped != step:
        changes.append("loop")
    deduped = drop_repeated_sentences(looped)
    if deduped != looped:
        changes.append("repeated_sentences")
    final, cut = cut_to_budget(deduped, count, budget)
    if cut:
        changes.append("budget_cut")
    return Cleaned(final, count(final) if final else 0, cut, changes)


@lru_cache(maxsize=4)
def token_counter(tokenizer: str) -> Callable[[str], int]:
    """Count tokens as the training text encoder would (cached per worker process)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    return lambda s: len(tok(s, add_special_tokens=True)["input_ids"])
