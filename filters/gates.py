"""Gates: one small protocol for every keep-or-reject check, applied by one loop (`apply`).

A gate reads the fields it needs from a row (a dict) and returns None to pass it, or a
`Verdict` (a Reason and a detail). Each gate names the stage whose fields it reads, because the
fields arrive at different times and the cheap checks must run before the expensive work:
`header` (size from the header, before the rest of the bytes is fetched), `pixels` (quality
signals of the one working-size decode), `embedding` (the CLIP actor's scores: aesthetic, NSFW,
watermark, alt-text agreement).
A new gate is one class here plus its line in `gates_for`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

from filters.quality import quality_verdict
from filters.resolution import resolution_verdict
from schemas.job import FiltersConfig, Job, QualityConfig, ResolutionConfig
from schemas.reasons import Reason, Verdict

HEADER, PIXELS, EMBEDDING = "header", "pixels", "embedding"


class Gate(Protocol):
    name: ClassVar[str]
    stage: ClassVar[str]   # HEADER | PIXELS | EMBEDDING: when the fields it reads exist

    def check(self, row: dict) -> Verdict | None: ...


@dataclass(frozen=True)
class MaxPixels:
    """Decompression-bomb guard: a header claiming more pixels than `ingest.max_pixels` is never decoded."""

    limit: int
    name: ClassVar[str] = "max_pixels"
    stage: ClassVar[str] = HEADER

    def check(self, row: dict) -> Verdict | None:
        if row["width"] * row["height"] > self.limit:
            return Verdict(Reason.DECOMPRESSION_BOMB, f"{row['width']}x{row['height']} > max_pixels {self.limit}")
        return None


@dataclass(frozen=True)
class Resolution:
    """filters.resolution (min side, min pixels, max aspect, require_4k) on EXIF-corrected sizes."""

    rule: ResolutionConfig
    name: ClassVar[str] = "resolution"
    stage: ClassVar[str] = HEADER

    def check(self, row: dict) -> Verdict | None:
        return resolution_verdict(row["width"], row["height"], self.rule)


@dataclass(frozen=True)
class Quality:
    """filters.quality: the weight-free signals of the working-size decode."""

    cfg: QualityConfig
    name: ClassVar[str] = "quality"
    stage: ClassVar[str] = PIXELS

    def check(self, row: dict) -> Verdict | None:
        return quality_verdict(row["quality"], self.cfg)


@dataclass(frozen=True)
class MinScore:
    """A floor on a score of the embedding: filters.aesthetics.min_aesthetic, or
    filters.alt_text.min_clip_alt (CLIP cosine of the image and its alt text). A sample without
    the score (no alt text) passes."""

    column: str       # "aesthetic" | "clip_alt"
    threshold: float
    reason: Reason
    digits: int = 3   # shown in the detail
    stage: ClassVar[str] = EMBEDDING

    @property
    def name(self) -> str:
        return f"min_{self.column}"

    def check(self, row: dict) -> Verdict | None:
        score = row.get(self.column)
        if score is not None and score < self.threshold:
            return Verdict(self.reason, f"{self.column} {score:.{self.digits}f} < {self.name} {self.threshold}")
        return None


@dataclass(frozen=True)
class MaxScore:
    """filters.safety.max_nsfw / max_watermark on a head's score of the embedding. A sample
    without the score (no head) passes."""

    column: str       # "nsfw" | "watermark"
    limit: float
    reason: Reason
    name: ClassVar[str] = "max_score"
    stage: ClassVar[str] = EMBEDDING

    def check(self, row: dict) -> Verdict | None:
        score = row.get(self.column)
        if score is not None and score > self.limit:
            return Verdict(self.reason, f"{self.column} {score:.3f} > max_{self.column} {self.limit}")
        return None


def embedding_gates(filters: FiltersConfig) -> list[Gate]:
    """The gates on the embedding actor's scores (aesthetic, NSFW, watermark, alt-text agreement)."""
    aes, safety, alt = filters.aesthetics, filters.safety, filters.alt_text
    every: list[Gate] = []
    if aes.enabled and aes.min_aesthetic is not None:
        every.append(MinScore("aesthetic", aes.min_aesthetic, Reason.LOW_AESTHETIC, digits=2))
    if safety.max_nsfw is not None:
        every.append(MaxScore("nsfw", safety.max_nsfw, Reason.NSFW))
    if safety.max_watermark is not None:
        every.append(MaxScore("watermark", safety.max_watermark, Reason.WATERMARK))
    if alt.enabled and alt.min_clip_alt is not None:
        every.append(MinScore("clip_alt", alt.min_clip_alt, Reason.LOW_CLIP_ALT))
    return every


def gates_for(job: Job, stage: str) -> list[Gate]:
    """The job's gates of one stage, in the order they run."""
    every: list[Gate] = [MaxPixels(job.ingest.max_pixels), Resolution(job.filters.resolution), Quality(job.filters.quality),
                         *embedding_gates(job.filters)]
    return [g for g in every if g.stage == stage]


def apply(gates: list[Gate], row: dict) -> Verdict | None:
    """The one gate loop: the first gate the row fails sets its status (the reason) and detail,
    which the unit's commit turns into a rejects row; None when the row passes them all."""
    for gate in gates:
        verdict = gate.check(row)
        if verdict is not None:
            row.update(status=verdict.reason.value, detail=verdict.detail)
            return verdict
    return None


def below_top_fraction(keys: list[str], scores: list[float | None], fraction: float) -> dict[str, str]:
    """The run-wide alt-text gate (DataComp's CLIP-score filter; dedup applies it, as it needs
    every score): key -> detail for the samples outside the top `fraction` by score. Only samples
    with a score are ranked: the top ceil(fraction x n) stay, ties broken by key so the cut does
    not depend on row order; unscored samples (no alt text) always stay."""
    ranked = sorted((-s, k) for k, s in zip(keys, scores) if s is not None and not math.isnan(s))
    keep = math.ceil(fraction * len(ranked))
    if keep >= len(ranked):
        return {}
    cut = -ranked[keep - 1][0] if keep else math.inf
    return {k: f"clip_alt {-s:.3f} outside the run's top {fraction:g} (kept >= {cut:.3f}, {keep} of {len(ranked)})"
            for s, k in ranked[keep:]}
