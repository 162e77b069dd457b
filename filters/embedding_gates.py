"""Gates on the scores the embedding actor computes: aesthetic, NSFW, watermark and alt-text
agreement. Each gate takes a row (its scores) and the job's settings and returns
(Reason, detail) when the row is rejected, else None; a missing score never rejects (no head,
no alt text). The run-wide alt-text percentile lives here too; dedup applies it.
"""

from __future__ import annotations

import math

from schemas.job import FiltersConfig
from schemas.reasons import Reason

Verdict = tuple[Reason, str] | None


def aesthetic_gate(row: dict, filters: FiltersConfig) -> Verdict:
    cut, score = filters.aesthetics.min_aesthetic, row.get("aesthetic")
    if cut is not None and score is not None and score < cut:
        return Reason.LOW_AESTHETIC, f"aesthetic {score:.2f} < min_aesthetic {cut}"
    return None


def nsfw_gate(row: dict, filters: FiltersConfig) -> Verdict:
    cut, score = filters.safety.max_nsfw, row.get("nsfw")
    if cut is not None and score is not None and score > cut:
        return Reason.NSFW, f"nsfw {score:.3f} > max_nsfw {cut}"
    return None


def watermark_gate(row: dict, filters: FiltersConfig) -> Verdict:
    cut, score = filters.safety.max_watermark, row.get("watermark")
    if cut is not None and score is not None and score > cut:
        return Reason.WATERMARK, f"watermark {score:.3f} > max_watermark {cut}"
    return None


def clip_alt_gate(row: dict, filters: FiltersConfig) -> Verdict:
    cut, score = filters.alt_text.min_clip_alt, row.get("clip_alt")
    if cut is not None and score is not None and score < cut:
        return Reason.LOW_CLIP_ALT, f"clip_alt {score:.3f} < min_clip_alt {cut}"
    return None


EMBEDDING_GATES = (aesthetic_gate, nsfw_gate, watermark_gate, clip_alt_gate)


def first_verdict(row: dict, filters: FiltersConfig) -> Verdict:
    """The first gate (in EMBEDDING_GATES order) that rejects the row."""
    return next((v for gate in EMBEDDING_GATES if (v := gate(row, filters))), None)


def below_top_fraction(keys: list[str], scores: list[float | None], fraction: float) -> dict[str, str]:
    """key -> detail for the samples outside the top `fraction` by score (DataComp's CLIP-score
    filter). Only samples with a score are ranked: the top ceil(fraction x n) stay, ties broken by
    key so the cut does not depend on row order; unscored samples (no alt text) always stay."""
    ranked = sorted((-s, k) for k, s in zip(keys, scores) if s is not None and not math.isnan(s))
    keep = math.ceil(fraction * len(ranked))
    if keep >= len(ranked):
        return {}
    cut = -ranked[keep - 1][0] if keep else math.inf
    return {k: f"clip_alt {-s:.3f} outside the run's top {fraction:g} (kept >= {cut:.3f}, {keep} of {len(ranked)})"
            for s, k in ranked[keep:]}
