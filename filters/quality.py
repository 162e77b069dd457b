"""Quality signals that need no model weights, computed on the one working-size decode.

sharpness      variance of the Laplacian of the grey image (scale-dependent: working size)
brightness     mean grey level, 0-255
overexposed    fraction of pixels with grey > 245;  underexposed: fraction < 10
colourfulness  Hasler & Suesstrunk (2003) M metric
flatness       standard deviation of grey levels (near 0: blank or single colour)
letterbox      fraction of the image taken by uniform bands at its edges (the larger axis)
jpeg_quality   IJG quality estimated from the luminance quantisation table (header only)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from schemas.job import QualityConfig
from schemas.reasons import Reason, Verdict

# IJG standard luminance table (JPEG spec Annex K), row-major as Pillow reports it.
_STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.float64)


def jpeg_quality(quantization: dict | None) -> int | None:
    """Estimate the IJG quality (1-100) that produced a JPEG's luminance table."""
    if not quantization or 0 not in quantization:
        return None
    table = np.asarray(quantization[0], dtype=np.float64)
    if table.size != 64:
        return None
    scale = float(np.mean(table / _STD_LUMA) * 100)
    quality = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return int(np.clip(round(quality), 1, 100))


def _uniform_band(lines: np.ndarray, tol: float = 3.0) -> int:
    """How many leading lines (rows of a 2-D grey array) are flat and alike."""
    if len(lines) == 0:
        return 0
    ref = lines[0].mean()
    n = 0
    for line in lines:
        if line.std() > tol or abs(line.mean() - ref) > tol:
            break
        n += 1
    return n


def signals(img: Image.Image) -> dict[str, float]:
    rgb = np.asarray(img, dtype=np.float32)
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    h, w = grey.shape
    vertical = _uniform_band(grey) + _uniform_band(grey[::-1])
    horizontal = _uniform_band(grey.T) + _uniform_band(grey.T[::-1])
    return {
        "sharpness": float(lap.var()) if lap.size else 0.0,
        "brightness": float(grey.mean()),
        "overexposed": float((grey > 245).mean()),
        "underexposed": float((grey < 10).mean()),
        "colourfulness": colourfulness,
        "flatness": float(grey.std()),
        "letterbox": float(min(1.0, max(vertical / h, horizontal / w))),
    }


def quality_verdict(q: dict, cfg: QualityConfig) -> Verdict | None:
    """The first gate the signals fail, or None. Gates left at null are off."""
    checks = [
        (cfg.max_flatness_for_blank is not None and q["flatness"] <= cfg.max_flatness_for_blank, Reason.BLANK,
         f"grey std {q['flatness']:.2f} <= {cfg.max_flatness_for_blank}"),
        (cfg.min_sharpness is not None and q["sharpness"] < cfg.min_sharpness, Reason.BLURRY,
         f"sharpness {q['sharpness']:.1f} < {cfg.min_sharpness}"),
        (cfg.max_overexposed is not None and q["overexposed"] > cfg.max_overexposed, Reason.OVEREXPOSED,
         f"{q['overexposed']:.0%} of pixels blown out > {cfg.max_overexposed}"),
        (cfg.max_underexposed is not None and q["underexposed"] > cfg.max_underexposed, Reason.UNDEREXPOSED,
         f"{q['underexposed']:.0%} of pixels crushed black > {cfg.max_underexposed}"),
        (cfg.min_colourfulness is not None and q["colourfulness"] < cfg.min_colourfulness, Reason.LOW_COLOURFULNESS,
         f"colourfulness {q['colourfulness']:.1f} < {cfg.min_colourfulness}"),
        (cfg.max_letterbox is not None and q["letterbox"] > cfg.max_letterbox, Reason.LETTERBOXED,
         f"borders take {q['letterbox']:.0%} > {cfg.max_letterbox}"),
        (cfg.min_jpeg_quality is not None and q.get("jpeg_quality") is not None and q["jpeg_quality"] < cfg.min_jpeg_quality,
         Reason.LOW_JPEG_QUALITY, f"JPEG quality ~{q.get('jpeg_quality')} < {cfg.min_jpeg_quality}"),
    ]
    return next((Verdict(reason, detail) for failed, reason, detail in checks if failed), None)
