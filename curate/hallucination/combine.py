"""One hallucination score per caption from the evidence, with the flags that produced it.

Each signal has a value (how bad, 0..1) and a confidence (how sure the check is, 0..1); the
score is the weighted mean of value x confidence over the signals measured for that caption
(no alt text, no OCR claims or no CLIP: that signal is left out, not counted as 0):

- weak_sentences: share of sentences CLIP does not place above unrelated text; confidence
  n/(n+1) for n sentences (one sentence is a coin's worth of evidence, ten are not);
- ungrounded_phrases: share of object noun phrases not grounded, confidence n/(n+1) likewise;
- text_not_found: share of text claims not found or unsure; confidence: the mean, over those
  claims, of OCR's score of the characters that differ (not_found) or UNSURE (unsure);
- degeneration: the strongest of a loop (1, sure), a near-duplicate sentence (1, 0.9), the
  wrong language (1, the language model's probability), a part in another language (1, 0.9),
  2 x the share of repeated 3-grams (sure), truncation (0.5, sure), boilerplate (0.3, sure);
- alt_disagreement: 1 - cosine(caption, alt text), confidence 0.5 (alt text is often unrelated
  to the picture: file names, SEO text).

So a drop needs agreement or confidence: with the default weights and threshold no single
uncertain signal (an unsure claim, an alt-text mismatch, CLIP on a few sentences) can cross
0.5 alone; a confidently misread claim or a loop can. Weights come from `hallucination.weights`.
"""

from __future__ import annotations

from schemas.job import HallucinationWeights

REPETITION_FLAG = 0.2        # share of repeated 3-grams worth a flag
ALT_DISAGREEMENT_FLAG = 0.2  # agreement below this is flagged
UNSURE = 0.3                 # weight of an unsure claim (OCR read nothing, or misread letters)
ALT_CONFIDENCE = 0.5
DUPLICATE_CONFIDENCE = 0.9
MIXED_LANGUAGE_CONFIDENCE = 0.9


def _counted(n: int) -> float:
    return n / (n + 1)


def _text_claims(claims: list[dict]) -> tuple[float, float] | None:
    checked = [c for c in claims if c.get("outcome")]
    if not checked:
        return None
    bad = [c for c in checked if c["outcome"] != "found"]
    if not bad:
        return 0.0, 1.0
    sure = [(c["confidence"] or 0.0) if c["outcome"] == "not_found" else UNSURE for c in bad]
    return len(bad) / len(checked), sum(sure) / len(sure)


def _wrong_language(ev: dict, expected: str) -> bool:
    return ev["language"] not in (expected, "und")


def _degeneration(ev: dict, expected: str) -> tuple[float, float]:
    parts = [(0.0, 1.0)]
    if ev["loop"]:
        parts.append((1.0, 1.0))
    if ev.get("duplicate_sentences"):
        parts.append((1.0, DUPLICATE_CONFIDENCE))
    if _wrong_language(ev, expected):
        parts.append((1.0, float(ev.get("language_confidence") or 1.0)))
    if [x for x in ev.get("other_languages") or [] if x != expected]:
        parts.append((1.0, MIXED_LANGUAGE_CONFIDENCE))
    parts += [(min(1.0, 2 * ev["repeated_ngrams"]), 1.0), (0.5 * ev["truncated"], 1.0),
              (0.3 * bool(ev["boilerplate"]), 1.0)]
    return max(parts, key=lambda p: p[0] * p[1])


def signals(ev: dict, expected_language: str) -> dict[str, tuple[float, float]]:
    """name -> (value, confidence) of every signal measured for this caption."""
    out: dict[str, tuple[float, float]] = {}
    if ev["sentences"] and ev["sentences"][0]["clip"] is not None:
        n = len(ev["sentences"])
        out["weak_sentences"] = (sum(s["weak"] for s in ev["sentences"]) / n, _counted(n))
    if ev["phrases"] and ev["phrases"][0]["clip"] is not None:
        n = len(ev["phrases"])
        out["ungrounded_phrases"] = (sum(not p["grounded"] for p in ev["phrases"]) / n, _counted(n))
    text = _text_claims(ev["text_claims"])
    if text is not None:
        out["text_not_found"] = text
    out["degeneration"] = _degeneration(ev, expected_language)
    if ev["alt_agreement"] is not None:
        out["alt_disagreement"] = (min(1.0, max(0.0, 1.0 - ev["alt_agreement"])), ALT_CONFIDENCE)
    return out


def flags(ev: dict, expected_language: str) -> list[str]:
    claims = [c.get("outcome") for c in ev["text_claims"]]
    found = [
        ("weak_sentences", any(s["weak"] for s in ev["sentences"] if s["weak"] is not None)),
        ("ungrounded_phrases", any(p["grounded"] is False for p in ev["phrases"])),
        ("text_not_found", "not_found" in claims),
        ("text_unsure", "unsure" in claims),
        ("loop", ev["loop"]),
        ("duplicate_sentences", bool(ev.get("duplicate_sentences"))),
        ("repetition", ev["repeated_ngrams"] >= REPETITION_FLAG),
        ("truncated", ev["truncated"]),
        ("boilerplate", bool(ev["boilerplate"])),
        ("language", _wrong_language(ev, expected_language)
         or bool([x for x in ev.get("other_languages") or [] if x != expected_language])),
        ("alt_disagreement", ev["alt_agreement"] is not None and ev["alt_agreement"] < ALT_DISAGREEMENT_FLAG),
    ]
    return [name for name, hit in found if hit]


DEGENERATION_FLAGS = ("loop", "duplicate_sentences", "repetition", "truncated", "boilerplate", "language")


def combine(ev: dict, weights: HallucinationWeights, expected_language: str) -> tuple[float, list[str], list[dict]]:
    """(score 0..1, flags, signals as SIGNAL rows) of one caption's evidence row (HALLUCINATION fields)."""
    sig = signals(ev, expected_language)
    w = weights.model_dump()
    total = sum(w[k] for k in sig)
    score = sum(w[k] * v * c for k, (v, c) in sig.items()) / total if total else 0.0
    rows = [{"name": k, "value": round(v, 4), "confidence": round(c, 4)} for k, (v, c) in sig.items()]
    return round(score, 4), flags(ev, expected_language), rows
