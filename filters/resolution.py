"""The resolution gate and the 4K tag, on EXIF-corrected dimensions."""

from __future__ import annotations

from schemas.job import ResolutionConfig
from schemas.reasons import Reason, Verdict


def resolution_verdict(width: int, height: int, rule: ResolutionConfig) -> Verdict | None:
    """None to keep, else (reason, detail). Checks run cheapest-to-explain first."""
    short, long = min(width, height), max(width, height)
    if short < rule.min_side:
        return Verdict(Reason.TOO_SMALL, f"short side {short} < min_side {rule.min_side}")
    if width * height < rule.min_pixels:
        return Verdict(Reason.TOO_FEW_PIXELS, f"{width * height} pixels < min_pixels {rule.min_pixels}")
    if long / short > rule.max_aspect:
        return Verdict(Reason.EXTREME_ASPECT, f"aspect {long / short:.2f} > max_aspect {rule.max_aspect}")
    if rule.require_4k and not is_4k(width, height, rule):
        return Verdict(Reason.NOT_4K, f"{width}x{height} is not 4K (short side >= {rule.fourk.min_short}, long side >= {rule.fourk.min_long})")
    return None


def is_4k(width: int, height: int, rule: ResolutionConfig) -> bool:
    return min(width, height) >= rule.fourk.min_short and max(width, height) >= rule.fourk.min_long
