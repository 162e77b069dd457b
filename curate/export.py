"""Exports for training stacks that do not read webdataset: PixArt-sigma's own layout.

`<dir>/InternImgs/<key>.<ext>` holds the images (original bytes, read from the shards) and
`<dir>/InternData/data_info.json` lists {width, height, ratio (h/w), path, prompt, sharegpt4v}.
Paths are flat: PixArt looks pre-extracted features up by path with '/' replaced by '_', which
only agrees with its extractor for paths without a folder.
"""

from __future__ import annotations

import io
import tarfile
from collections import defaultdict
from pathlib import Path

from PIL import Image

from curate.imaging import FORMATS, ORIENTATION_TAG, reencode
from curate.outputs import run_output
from curate.storage import RunDir, read_index, write_bytes_atomic, write_json_atomic


def upright(data: bytes) -> bytes:
    """The image as PixArt will see it: its loader ignores EXIF orientation, so rotated
    images are re-encoded upright (others keep their original bytes)."""
    with Image.open(io.BytesIO(data)) as img:
        orientation = img.getexif().get(ORIENTATION_TAG, 1)
        fmt, (w, h) = FORMATS[img.format], img.size
    if orientation in (1, None):
        return data
    return reencode(data, (h, w) if orientation >= 5 else (w, h), fmt, 95)


def export_pixart(run: Path, out: Path, dense: str | None = None, prompt: str = "alt") -> int:
    """Write the PixArt layout for every sample of `run`; returns the number exported.

    `sharegpt4v` is the captioner `dense` (default: the run's training caption); `prompt` is the
    captioner (or `alt`) used as the original caption, empty when the sample has none.
    """
    rows = read_index(RunDir(run)).to_pylist()
    output = run_output(run)
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_shard[row["shard"]].append(row)
    entries = []
    for shard, members in sorted(by_shard.items()):
        wanted = {r["member"]: r for r in members}
        with output.open_read(shard) as fh, tarfile.open(fileobj=fh, mode="r|") as tf:
            for info in tf:
                row = wanted.get(info.name)
                if row is None:
                    continue
                write_bytes_atomic(out / "InternImgs" / row["member"], upright(tf.extractfile(info).read()))
                captions = dict(row["captions"] or [])
                entries.append({
                    "width": row["member_width"], "height": row["member_height"], "ratio": row["member_height"] / row["member_width"],
                    "path": row["member"], "prompt": captions.get(prompt) or "",
                    # PixArt asserts a non-empty sharegpt4v: fall back to the training caption
                    "sharegpt4v": (captions.get(dense) if dense else None) or row["caption"],
                })
    missing = len(rows) - len(entries)
    if missing:
        raise RuntimeError(f"{missing} indexed samples were not found in their shards")
    entries.sort(key=lambda e: e["path"])
    write_json_atomic(out / "InternData" / "data_info.json", entries)
    return len(entries)
