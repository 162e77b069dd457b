"""Exports for training stacks that do not read webdataset: PixArt-sigma's own layout.

`<dir>/InternImgs/<key>.<ext>` holds the images (the shards' members, upright) and
`<dir>/InternData/data_info.json` lists {width, height, ratio (h/w), path, prompt, sharegpt4v}.
Paths are flat: PixArt looks pre-extracted features up by path with '/' replaced by '_', which
only agrees with its extractor for paths without a folder.
"""

from __future__ import annotations

import functools
import tarfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from curate.outputs import run_output
from curate.storage import RunDir, read_index, write_bytes_atomic, write_json_atomic


def select(index, only_4k: bool = False, buckets: list[str] | None = None, min_aesthetic: float | None = None):
    """The index rows an export keeps: the 4K subset, some buckets, an aesthetic floor."""
    keep = []
    if only_4k:
        keep.append(pc.fill_null(index["is_4k"], False))
    if buckets:
        keep.append(pc.is_in(index["bucket"], value_set=pa.array(buckets, pa.string())))
    if min_aesthetic is not None:
        keep.append(pc.fill_null(pc.greater_equal(index["aesthetic"], min_aesthetic), False))
    return index.filter(functools.reduce(pc.and_, keep)) if keep else index


def export_pixart(run: Path, out: Path, dense: str | None = None, prompt: str = "alt", prompt_fallback: str | None = None,
                  only_4k: bool = False, buckets: list[str] | None = None, min_aesthetic: float | None = None,
                  progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Write the PixArt layout for the selected samples of `run`; returns the number exported.

    `sharegpt4v` is the captioner `dense` (default: the run's training caption). `prompt` is the
    captioner (or `alt`) used as the original caption; a sample without it gets `prompt_fallback`'s
    text (default: the run's training caption), so PixArt never trains on an empty prompt.
    Images are the shards' members as stored: already upright, as PixArt's loader needs.
    `progress(done, total)` is called after each sample.
    """
    rows = select(read_index(RunDir(run)), only_4k, buckets, min_aesthetic).to_pylist()
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
                write_bytes_atomic(out / "InternImgs" / row["member"], tf.extractfile(info).read())
                captions = dict(row["captions"] or [])
                entries.append({
                    "width": row["member_width"], "height": row["member_height"], "ratio": row["member_height"] / row["member_width"],
                    "path": row["member"],
                    "prompt": captions.get(prompt) or (captions.get(prompt_fallback) if prompt_fallback else None) or row["caption"],
                    # PixArt asserts a non-empty sharegpt4v: fall back to the training caption
                    "sharegpt4v": (captions.get(dense) if dense else None) or row["caption"],
                })
                progress(len(entries), len(rows))
    missing = len(rows) - len(entries)
    if missing:
        raise RuntimeError(f"{missing} indexed samples were not found in their shards")
    entries.sort(key=lambda e: e["path"])
    write_json_atomic(out / "InternData" / "data_info.json", entries)
    return len(entries)
