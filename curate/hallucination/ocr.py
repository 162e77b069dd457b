"""What text an image holds, read by RapidOCR (PP-OCR models shipped inside the `rapidocr` wheel,
run by onnxruntime), with a confidence per character.

Two passes. The first reads the whole image (long side capped at `max_side`: OCR cost grows with
pixels). The second, run only when the caller is not satisfied with the first (a claim it did
not confirm), reads overlapping tiles enlarged `tile_zoom` times: text of 10-25 px that the
detector misses on the whole image is found on a tile, at about 4 times the first pass's cost.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class OcrLine:
    text: str
    score: float                      # RapidOCR's score of the line
    char_scores: tuple[float, ...]    # one per non-space character of `text`, in order


class OcrReader:
    """RapidOCR, loaded on first use (one per worker process). Reads are thread-safe."""

    def __init__(self, max_side: int = 1280, min_score: float = 0.5, threads: int = -1,
                 tile_grid: int = 2, tile_zoom: float = 2.0):
        self.max_side = max_side
        self.min_score = min_score
        self.threads = threads  # onnxruntime intra-op threads; -1: all cores
        self.tile_grid = tile_grid
        self.tile_zoom = tile_zoom
        self._engine = None
        self._lock = threading.Lock()

    def _load(self):
        if self._engine is None:
            from rapidocr import RapidOCR

            self._engine = RapidOCR(params={
                "Global.log_level": "error",
                "Global.text_score": self.min_score,
                "Global.return_word_box": True,
                "Global.return_single_char_box": True,   # per-character scores
                "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
            })
        return self._engine

    def read(self, image: Image.Image) -> list[OcrLine]:
        """First pass: the whole image. Lines in reading order; [] when it has no text."""
        image = _rgb(image)
        if max(image.size) > self.max_side:
            image = _scaled(image, self.max_side / max(image.size))
        return self._run(image)

    def read_tiles(self, image: Image.Image) -> list[OcrLine]:
        """Second pass: a `tile_grid` x `tile_grid` grid of tiles overlapping by a quarter of a
        tile, each enlarged `tile_zoom` times (a tile's long side stays within `max_side`).
        A line read on two tiles is kept once (its better reading)."""
        image = _rgb(image)
        if max(image.size) > self.max_side:
            image = _scaled(image, self.max_side / max(image.size))
        w, h = image.size
        n = self.tile_grid
        tw, th = round(w / (n - 0.25 * (n - 1))), round(h / (n - 0.25 * (n - 1)))
        best: dict[str, OcrLine] = {}
        for row in range(n):
            for col in range(n):
                x, y = round(col * 0.75 * tw), round(row * 0.75 * th)
                tile = image.crop((x, y, min(w, x + tw), min(h, y + th)))
                zoom = min(self.tile_zoom, self.max_side / max(tile.size))
                for line in self._run(_scaled(tile, zoom) if zoom > 1 else tile):
                    key = "".join(line.text.casefold().split())
                    if key not in best or line.score > best[key].score:
                        best[key] = line
        return list(best.values())

    def _run(self, image: Image.Image) -> list[OcrLine]:
        if min(image.size) < 8:  # too small to hold legible text
            return []
        with self._lock:
            result = self._load()(image)
        if not result.txts:
            return []
        words = result.word_results if len(result.word_results) == len(result.txts) else [None] * len(result.txts)
        lines = []
        for text, score, chars in zip(result.txts, result.scores, words):
            if text.strip() and score >= self.min_score:
                lines.append(OcrLine(text.strip(), float(score), _char_scores(text.strip(), float(score), chars)))
        return lines


def _char_scores(text: str, score: float, chars) -> tuple[float, ...]:
    """Per non-space character scores from RapidOCR's single-character results; the line score
    for each character when they do not line up with the text."""
    visible = [c for c in text if not c.isspace()]
    got = [(str(c), float(s)) for c, s, *_ in (chars or ())]
    if "".join(c for c, _ in got).replace(" ", "") == "".join(visible):
        return tuple(s for c, s in got for _ in c.replace(" ", ""))
    return (score,) * len(visible)


def _scaled(image: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    resample = Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC
    return image.resize(size, resample, reducing_gap=3.0 if factor < 1 else None)


def _rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency flattened onto white (transparent logos are mostly dark ink)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")
