"""Ingest and the caption feed on generated 4K JPEGs (photo-like grain, ~1.5 MB each), one core.

- header probe vs a full decode;
- ingest's hashing (`imaging.decode_working` + `imaging.content_hashes`: sha256, pHash, dHash,
  border-trimmed and mirrored hashes) against two baselines: `imagehash.phash(Image.open(p))`
  on the full image (naive), and the honest one, imagehash's pHash of a draft-decoded image;
- the hashes the ingest phase stores (its per-input function, `ingest._fetch_and_hash`, on the
  same files) must equal the ones measured here;
- the captioners' CPU feed: read + decode + resize to `image_side` 1344
  (`imaging.decode_for_model`) vs a plain full decode + resize, and vs the strongest Pillow
  feed (draft decode + the same OpenCV resize), in CPU seconds of this one thread (images/s per
  core). Target >= 40/s.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from bench.common import rate, table
from curate import imaging

WORKING_SIDE, CAPTION_SIDE = 512, 1344


def make_4k(folder: Path, n: int) -> list[Path]:
    from bench.crawl import _jpeg, _picture

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 4, (2160, 3840)).astype(np.int16)
    paths = []
    for i in range(n):
        p = folder / f"uhd_{i}.jpg"
        p.write_bytes(_jpeg(_picture(rng, noise, 3840, 2160), 92))
        paths.append(p)
    return paths


def ours_hashes(path: Path) -> dict:
    data = path.read_bytes()
    return imaging.content_hashes(data, imaging.decode_working(data, WORKING_SIDE))


def stored_hashes(paths: list[Path]) -> list[dict]:
    """What the ingest phase stores for each file: its own per-input function, default job."""
    from curate.phases.ingest import _fetch_and_hash
    from curate.sources.base import Input, LocalReader
    from curate.staging import store_for
    from schemas.job import Job

    job = Job.model_validate({"name": "bench", "out": "/nonexistent", "sources": [{"type": "folder", "path": str(paths[0].parent)}],
                              "filters": {"aesthetics": {"enabled": False}},
                              "caption": {"captioners": [{"name": "c", "model": "unused"}]}})

    async def one(p: Path, staged) -> dict:
        reader = LocalReader(p.parent, p, job.ingest.max_bytes)
        try:
            return await _fetch_and_hash(reader, job, Input(p.name, str(p), reader), staged, 0)
        finally:
            await reader.close()

    with tempfile.TemporaryDirectory() as work:
        staged = store_for(job, work).writer("bench")   # ingest stages what it keeps; the bench discards it
        try:
            return [asyncio.run(one(p, staged)) for p in paths]
        finally:
            staged.abort()


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
                ours_hashes(p)

        def naive_hash():
            for p in paths:
                imagehash.phash(Image.open(p))

        def draft_hash():
            for p in paths:
                img = Image.open(p)
                img.draft("RGB", (WORKING_SIDE // 2, WORKING_SIDE // 2))
                imagehash.phash(img)

        def feed():
            for p in paths:
                imaging.decode_for_model(p.read_bytes(), CAPTION_SIDE)

        def feed_full():
            for p in paths:
                img = Image.open(io.BytesIO(p.read_bytes()))
                img.load()
                img.resize(imaging.fit_within(*img.size, CAPTION_SIDE), Image.Resampling.BILINEAR)

        def feed_draft():   # the strongest Pillow feed: DCT-scaled (draft) decode, then the same OpenCV resize
            import cv2

            for p in paths:
                img = Image.open(io.BytesIO(p.read_bytes()))
                size = imaging.fit_within(*img.size, CAPTION_SIDE)
                img.draft("RGB", size)
                Image.fromarray(cv2.resize(np.asarray(img.convert("RGB")), size, interpolation=cv2.INTER_LINEAR))

        rows = [
            ("header probe vs full decode (4K JPEG)", rate(probe_all, n), rate(full_decode_all, n)),
            ("ingest hashes vs imagehash full decode", rate(ours_hash, n), rate(naive_hash, n)),
            ("ingest hashes vs imagehash pHash of draft", rate(ours_hash, n), rate(draft_hash, n)),
            ("caption feed 1344 vs full decode+resize*", rate(feed, n, clock=time.process_time),
             rate(feed_full, n, clock=time.process_time)),
            ("caption feed 1344 vs Pillow draft+resize*", rate(feed, n, clock=time.process_time),
             rate(feed_draft, n, clock=time.process_time)),
        ]
        stored = stored_hashes(paths)
        measured = [ours_hashes(p) for p in paths]
        same = all({k: s[k] for k in m} == m for s, m in zip(stored, measured, strict=True))
    print(f"{n} JPEGs of 3840x2160 (~{sum(map(len, blobs)) / n / 1e6:.1f} MB each), one core "
          f"(* CPU seconds of this thread: images/s per core; target >= 40/s)")
    table(rows, "/s")
    print(f"hashes stored by the ingest phase == hashes measured here: {same} ({n} images, "
          f"{len(measured[0])} hashes each)")
    if not same:
        raise SystemExit("the bench measured other hashes than the pipeline stores")


if __name__ == "__main__":
    main()
