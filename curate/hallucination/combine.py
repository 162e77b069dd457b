"""One hallucination score per caption from the evidence, with the flags that produced it.

Each signal is a number in 0..1; the score is their weighted mean over the signals that were
measured (no alt text, no OCR claims or no CLIP: that signal is left out, not counted as 0):

- weak_sentences: share of sentences CLIP does not place above unrelated text;
- ungrounded_phrases: share of object noun phrases not grounded in the image;
- text_not_found: share of text claims ("a sign reading 'OPEN'") OCR did not find;
- degeneration: 1 for a loop or the wrong language, else the largest of 2 x the share of
  repeated 3-grams, 0.5 for truncation, 0.3 for a boilerplate opener;
- alt_disagreement: 1 - cosine(caption, alt text), clipped to 0..1.
Weights come from the job (`hallucination.weights`).
"""

from __future__ import annotations

from schemas.job import HallucinationWeights

REPETITION_FLAG = 0.2       # share of repeated 3-grams worth a flag
ALT_DISAGREEMENT_FLAG = 0.2  # agreement below this is flagged


def signals(ev: dict, expected_language: str) -> dict[str, float]:
    out: dict[str, float] = {}
    if ev["sentences"] and ev["sentences"][0]["clip"] is not None:
        out["weak_sentences"] = sum(s["weak"] for s in ev["sentences"]) / len(ev["sentences"])
    if ev["phrases"] and ev["phrases"][0]["clip"] is not None:
        out["ungrounded_phrases"] = sum(not p["grounded"] for p in ev["phrases"]) / len(ev["phrases"])
    if ev["text_claims"] and ev["text_claims"][0]["found"] is not None:
        out["text_not_found"] = sum(not c["found"] for c in ev["text_claims"]) / len(ev["text_claims"])
    wrong_language = ev["language"] not in (expected_language, "und")
    out["degeneration"] = 1.0 if ev["loop"] or wrong_language else max(
        min(1.0, 2 * ev["repeated_ngrams"]), 0.5 * ev["truncated"], 0.3 * bool(ev["boilerplate"]))
    if ev["alt_agreement"] is not None:
        out["alt_disagreement"] = min(1.0, max(0.0, 1.0 - ev["alt_agreement"]))
    return out


def flags(ev: dict, expected_language: str) -> list[str]:
    found = [
        ("weak_sentences", any(s["weak"] for s in ev["sentences"] if s["weak"] is not None)),
        ("ungrounded_phrases", any(p["grounded"] is False for p in ev["phrases"])),
        ("text_not_found", any(c["found"] is False for c in ev["text_claims"])),
        ("loop", ev["loop"]),
        ("repetition", ev["repeated_ngrams"] >= REPETITION_FLAG),
        ("truncated", ev["truncated"]),
        ("boilerplate", bool(ev["boilerplate"])),
        ("language", ev["language"] not in (expected_language, "und")),
        ("alt_disagreement", ev["alt_agreement"] is not None and ev["alt_agreement"] < ALT_DISAGREEMENT_FLAG),
    ]
    return [name for name, hit in found if hit]


def combine(ev: dict, weights: HallucinationWeights, expected_language: str) -> tuple[float, list[str]]:
    """(score 0..1, flags) of one caption's evidence row (HALLUCINATION fields)."""
    sig = signals(ev, expected_language)
    w = weights.model_dump()
    total = sum(w[k] for k in sig)
    score = sum(w[k] * v for k, v in sig.items()) / total if total else 0.0
    return round(score, 4), flags(ev, expected_language)
