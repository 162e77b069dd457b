"""Hallucination checks a person can act on, on a generated set (bench/halluc_data.py) unlike
bench/ocr's: text rendered in eight conditions (signs, posters, book covers, shirts, multiline,
rotated, low contrast, small text over photo-like backgrounds) with right claims, one- and
two-letter near misses, a different word, an extra word, and claims on images with no text;
claim extraction on claims and look-alike non-claims; captions with each kind of degeneration
beside clean 80-250-word dense ones. Every figure is printed beside the previous method (the
code before issue 20, kept in bench/halluc_baseline.py) measured in the same run.

Ours runs through `CaptionScorer.score` (CLIP and alt agreement off, as a job without CLIP):
claims per image are scored together, so the image is read once. `python -m bench halluc`,
or `python -m bench.halluc N` for N images per condition (default 12).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict

import numpy as np

from bench import halluc_baseline as old
from bench.halluc_data import (
    CLAIM_KINDS,
    CLAIM_SENTENCES,
    CONDITIONS,
    NON_CLAIMS,
    caption_cases,
    text_cases,
)
from curate.hallucination.claims import text_claims
from curate.hallucination.combine import DEGENERATION_FLAGS, flags
from curate.hallucination.degeneration import degeneration

PER_CONDITION = 12
THRESHOLD = 0.5


def _scorer():
    from pathlib import Path

    from curate.hallucination.scorer import CaptionScorer
    from curate.jobs import load_job

    job = load_job(Path(__file__).parents[1] / "jobs" / "demo.yaml",
                   ["filters.aesthetics.enabled=false", "hallucination.alt_agreement=false"])
    return CaptionScorer(job)


def _rate(hits: int, n: int) -> str:
    return f"{hits / n:5.2f} ({hits}/{n})" if n else "  n/a"


def text_bench(per_condition: int, seed: int) -> None:
    cases = text_cases(per_condition, seed)
    scorer = _scorer()
    reader = old.OcrReader()
    warm = cases[0].image
    scorer.ocr.read(warm), scorer.ocr.read_tiles(warm), reader.read(warm)  # model loads
    ours: dict[tuple[str, str], list[str]] = defaultdict(list)   # (condition, kind) -> outcome per claim
    base: dict[tuple[str, str], list[bool]] = defaultdict(list)  # -> flagged per claim
    sure_read: dict[int, bool] = {}   # case -> our reading of the right text was confident
    scores_ours, scores_old = [], []  # the combined score of right-claim captions
    ms_right, ms_wrong, ms_old = [], [], []
    for n, case in enumerate(cases):
        kinds, captions = list(case.claims), list(case.claims.values())
        t = time.perf_counter()
        first = scorer.score([case.image], captions[:1], [None])
        ms_right.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        rest = scorer.score([case.image] * (len(captions) - 1), captions[1:], [None] * (len(captions) - 1))
        ms_wrong.append(ms_right[-1] + (time.perf_counter() - t) * 1000)
        for kind, row in zip(kinds, first + rest):
            outcomes = [c["outcome"] for c in row["text_claims"]] or ["none"]
            outcome = "not_found" if "not_found" in outcomes else "unsure" if "unsure" in outcomes else outcomes[0]
            ours[case.condition, kind].append(outcome)
            if kind == "right":
                sure_read[n] = outcome == "found" and min(c["confidence"] for c in row["text_claims"]) >= 0.9
                scores_ours.append(row["score"])
        t = time.perf_counter()
        lines = reader.read(case.image)
        ms_old.append((time.perf_counter() - t) * 1000)
        for kind, caption in zip(kinds, captions):
            claims = old.text_claims(caption)
            found = old.claims_found(claims, lines)
            base[case.condition, kind].append(not all(found) if claims else False)
            if kind == "right":
                d = old.degeneration(caption)
                scores_old.append(old.old_score({"text_claims": found, **vars(d)}))

    print(f"{len(cases)} images: {per_condition} per condition x {len(CONDITIONS)} conditions + {per_condition} without text; "
          f"{sum(len(c.claims) for c in cases)} claiming captions; seed {seed}; one process")
    print("\nFlagged (claim not found) per kind of claim, all conditions; ours also shows 'unsure' apart.")
    print(f"{'claim kind':<22}{'ours: flagged':>16}{'ours: unsure':>16}{'previous: flagged':>20}")
    for kind in [*CLAIM_KINDS, "no_text"]:
        o = [x for (c, k), v in ours.items() if k == kind for x in v]
        b = [x for (c, k), v in base.items() if k == kind for x in v]
        print(f"{kind:<22}{_rate(o.count('not_found'), len(o)):>16}{_rate(o.count('unsure'), len(o)):>16}{_rate(sum(b), len(b)):>20}")
    one = [n for n, case in enumerate(cases) if case.condition != "no_text" and sure_read.get(n)]
    o = [ours_outcome(ours, cases, n, "one_letter") for n in one]
    b = [base_flag(base, cases, n, "one_letter") for n in one]
    print(f"{'one_letter, read surely':<22}{_rate(o.count('not_found'), len(o)):>16}{_rate(o.count('unsure'), len(o)):>16}{_rate(sum(b), len(b)):>20}"
          "   (images whose right text our OCR read at >= 0.9 per character)")

    print("\nPer text condition: false flags on right claims, and recall / precision over the four wrong kinds.")
    print(f"{'condition':<14}{'ours: false flags':>19}{'unsure':>14}{'recall':>16}{'precision':>11}"
          f"{'prev: false flags':>20}{'recall':>16}{'precision':>11}")
    for condition in CONDITIONS:
        o_right, b_right = ours[condition, "right"], base[condition, "right"]
        o_wrong = [x for k in CLAIM_KINDS[1:] for x in ours[condition, k]]
        b_wrong = [x for k in CLAIM_KINDS[1:] for x in base[condition, k]]
        o_tp, o_fp = o_wrong.count("not_found"), o_right.count("not_found")
        b_tp, b_fp = sum(b_wrong), sum(b_right)
        print(f"{condition:<14}{_rate(o_fp, len(o_right)):>19}{_rate(o_right.count('unsure'), len(o_right)):>14}"
              f"{_rate(o_tp, len(o_wrong)):>16}{o_tp / max(1, o_tp + o_fp):>11.2f}"
              f"{_rate(b_fp, len(b_right)):>20}{_rate(b_tp, len(b_wrong)):>16}{b_tp / max(1, b_tp + b_fp):>11.2f}")

    over = lambda xs: sum(x > THRESHOLD for x in xs)  # noqa: E731
    print(f"\nRight-claim captions scored above the drop threshold {THRESHOLD} (CLIP and alt text off): "
          f"ours {_rate(over(scores_ours), len(scores_ours))}, previous {_rate(over(scores_old), len(scores_old))}")
    print("\nCost per image (ms, mean / p95):")
    for label, values in [("ours, right claims only (pass 1; tiles only when unconfirmed)", ms_right),
                          ("ours, right + four wrong claims (both passes)", ms_wrong),
                          ("previous (one read at 1280 px)", ms_old)]:
        print(f"  {label:<64}{np.mean(values):>7.0f} / {np.percentile(values, 95):.0f}")


def ours_outcome(ours, cases, n, kind):
    condition = cases[n].condition
    index = sum(1 for m in range(n) if cases[m].condition == condition)
    return ours[condition, kind][index]


def base_flag(base, cases, n, kind):
    condition = cases[n].condition
    index = sum(1 for m in range(n) if cases[m].condition == condition)
    return base[condition, kind][index]


def extraction_bench() -> None:
    def measure(extract):
        right = sum([c.text for c in extract(s)] == want for s, want in CLAIM_SENTENCES.items())
        false = sum(bool(extract(s)) for s in NON_CLAIMS)
        return right, false

    o, b = measure(text_claims), measure(old.text_claims)
    print(f"\nClaim extraction: {len(CLAIM_SENTENCES)} claiming sentences, {len(NON_CLAIMS)} look-alike non-claims")
    print(f"{'measure':<44}{'ours':>14}{'previous':>14}")
    print(f"{'claims extracted exactly':<44}{_rate(o[0], len(CLAIM_SENTENCES)):>14}{_rate(b[0], len(CLAIM_SENTENCES)):>14}")
    print(f"{'non-claims taken as claims':<44}{_rate(o[1], len(NON_CLAIMS)):>14}{_rate(b[1], len(NON_CLAIMS)):>14}")


def degeneration_bench(n: int, seed: int) -> None:
    cases = caption_cases(n, seed)
    degeneration(cases[0].text), old.degeneration(cases[0].text)   # model loads
    t = time.perf_counter()
    ours = [bool(set(flags(_evidence(degeneration(c.text)), "en")) & set(DEGENERATION_FLAGS)) for c in cases]
    ms_ours = (time.perf_counter() - t) * 1000 / len(cases)
    t = time.perf_counter()
    base = []
    for c in cases:
        d = old.degeneration(c.text)
        base.append(d.loop or d.truncated or bool(d.boilerplate) or d.language not in ("en", "und")
                    or d.repeated_ngrams >= 0.2)
    ms_old = (time.perf_counter() - t) * 1000 / len(cases)
    print(f"\nDegeneration: {n} captions per kind (clean: 80-250 words), seed {seed}; flagged = any degeneration flag")
    print(f"{'kind':<18}{'ours':>14}{'previous':>14}")
    for kind in dict.fromkeys(c.kind for c in cases):
        idx = [i for i, c in enumerate(cases) if c.kind == kind]
        label = "clean (false flags)" if kind == "clean" else kind
        print(f"{label:<18}{_rate(sum(ours[i] for i in idx), len(idx)):>14}{_rate(sum(base[i] for i in idx), len(idx)):>14}")
    print(f"{'ms per caption':<18}{ms_ours:>14.2f}{ms_old:>14.2f}")


def _evidence(d) -> dict:
    return {"sentences": [], "phrases": [], "text_claims": [], "alt_agreement": None,
            "repeated_ngrams": d.repeated_ngrams, "loop": d.loop,
            "duplicate_sentences": d.duplicate_sentences, "truncated": d.truncated, "boilerplate": d.boilerplate,
            "language": d.language, "language_confidence": d.language_confidence, "other_languages": d.other_languages}


def right_claims_bench(per_condition: int, seed: int) -> None:
    """False flags on right claims only (cheaper per image: the first pass usually confirms them),
    so that more images per condition fit: `python -m bench.halluc right N [SEED]`."""
    cases = [c for c in text_cases(per_condition, seed) if c.condition != "no_text"]
    scorer, reader = _scorer(), old.OcrReader()
    ours: dict[str, list[str]] = defaultdict(list)
    base: dict[str, list[bool]] = defaultdict(list)
    for case in cases:
        caption = case.claims["right"]
        (row,) = scorer.score([case.image], [caption], [None])
        outcomes = [c["outcome"] for c in row["text_claims"]]
        ours[case.condition].append("not_found" if "not_found" in outcomes else "unsure" if "unsure" in outcomes else "found")
        claims = old.text_claims(caption)
        base[case.condition].append(not all(old.claims_found(claims, reader.read(case.image))))
    print(f"\nRight claims only: {per_condition} images per condition, seed {seed}")
    print(f"{'condition':<14}{'ours: false flags':>19}{'ours: unsure':>16}{'previous: false flags':>24}")
    for condition in CONDITIONS:
        o, b = ours[condition], base[condition]
        print(f"{condition:<14}{_rate(o.count('not_found'), len(o)):>19}{_rate(o.count('unsure'), len(o)):>16}{_rate(sum(b), len(b)):>24}")
    o, b = [x for v in ours.values() for x in v], [x for v in base.values() for x in v]
    print(f"{'all':<14}{_rate(o.count('not_found'), len(o)):>19}{_rate(o.count('unsure'), len(o)):>16}{_rate(sum(b), len(b)):>24}")


def main(per_condition: int = PER_CONDITION, seed: int = 0) -> None:
    extraction_bench()
    degeneration_bench(60, seed)
    text_bench(per_condition, seed)


if __name__ == "__main__":
    if sys.argv[1:2] == ["right"]:
        right_claims_bench(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else PER_CONDITION)
