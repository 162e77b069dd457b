"""Read samples back from a shard, an index or a run folder (for `curate inspect`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from curate.storage import RunDir, read_index


def load_samples(path: Path, n: int) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    if path.is_dir() and path.name != "index":
        return read_index(RunDir(path)).slice(0, n).to_pylist()
    if path.is_dir() or path.suffix == ".parquet":
        return pq.read_table(path).slice(0, n).to_pylist()
    if path.suffix == ".tar":
        import webdataset as wds

        rows = []
        for sample in wds.WebDataset(str(path), shardshuffle=False, empty_check=False):
            rows.append(json.loads(sample["json"]))
            if len(rows) >= n:
                break
        return rows
    raise ValueError(f"{path}: expected a .tar shard, an index (.parquet file or index/ folder) or a run folder")
