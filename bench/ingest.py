"""Ingest on generated 4K JPEGs: header probe vs full decode, and one draft decode + pHash
vs `imagehash.phash(Image.open(p))` on the full image. Targets: >= 50x probing, >= 5x hashing."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from bench.common import rate, table
from curate import imaging


def make_4k(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = (rng.random((68, 120, 3)) * 255).astype(np.uint8)
        img = Image.fromarray(small).resize((3840, 2160), Image.BICUBIC)
        p = folder / f"uhd_{i}.jpg"
        img.save(p, "JPEG", quality=92)
        paths.append(p)
    return paths


def main(n: int = 8) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_4k(Path(tmp), n)
        blobs = [p.read_bytes() for p in paths]

        def probe_all():
            for b in blobs:
                imaging.probe(b)

        def full_decode_all():
            for b in blobs:
                Image.open(io.BytesIO(b)).load()

        def ours_hash():
            for p in paths:
                imaging.phash64(imaging.decode_working(p.read_bytes(), 512))

        def naive_hash():
            for p in paths:
                imagehash.phash(Image.open(p))

        rows = [
            ("header probe vs full decode (4K JPEG)", rate(probe_all, n), rate(full_decode_all, n)),
            ("draft decode + pHash vs imagehash full", rate(ours_hash, n), rate(naive_hash, n)),
        ]
    print(f"{n} images of 3840x2160, one core")
    table(rows, "/s")


if __name__ == "__main__":
    main()
