"""PixArt aspect-ratio bucket tables and PixArt's nearest-bucket rule.

Keys are height/width as strings, values [height, width] (PixArt-sigma,
diffusion/data/datasets/utils.py). 256/512/2048 are the 1024 table scaled.
"""

ASPECT_RATIO_1024: dict[str, list[int]] = {
    "0.25": [512, 2048], "0.26": [512, 1984], "0.27": [512, 1920], "0.28": [512, 1856],
    "0.32": [576, 1792], "0.33": [576, 1728], "0.35": [576, 1664], "0.4": [640, 1600],
    "0.42": [640, 1536], "0.48": [704, 1472], "0.5": [704, 1408], "0.52": [704, 1344],
    "0.57": [768, 1344], "0.6": [768, 1280], "0.68": [832, 1216], "0.72": [832, 1152],
    "0.78": [896, 1152], "0.82": [896, 1088], "0.88": [960, 1088], "0.94": [960, 1024],
    "1.0": [1024, 1024], "1.07": [1024, 960], "1.13": [1088, 960], "1.21": [1088, 896],
    "1.29": [1152, 896], "1.38": [1152, 832], "1.46": [1216, 832], "1.67": [1280, 768],
    "1.75": [1344, 768], "2.0": [1408, 704], "2.09": [1472, 704], "2.4": [1536, 640],
    "2.5": [1600, 640], "2.89": [1664, 576], "3.0": [1728, 576], "3.11": [1792, 576],
    "3.62": [1856, 512], "3.75": [1920, 512], "3.88": [1984, 512], "4.0": [2048, 512],
}


def _scaled(factor: float) -> dict[str, list[int]]:
    return {k: [int(h * factor), int(w * factor)] for k, (h, w) in ASPECT_RATIO_1024.items()}


TABLES: dict[int, dict[str, list[int]]] = {
    256: _scaled(0.25),
    512: _scaled(0.5),
    1024: ASPECT_RATIO_1024,
    2048: _scaled(2),
}


def closest_bucket(height: int, width: int, table: int = 1024) -> tuple[str, list[int]]:
    """Nearest key by |key - h/w|, scanning keys in ascending order so ties go to the smaller key.

    Same rule as PixArt's get_closest_ratio: no rounding, out-of-range ratios clamp to the ends.
    """
    ratios = TABLES[table]
    ratio = height / width
    best = min(sorted(ratios, key=float), key=lambda k: abs(float(k) - ratio))
    return best, list(ratios[best])
