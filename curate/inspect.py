"""Read samples back from a shard, an index or a run folder (for `curate inspect`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq


def load_samples(path: Path, n: int) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    if path.is_dir():
        path = path / "index.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path.parent}: no index.parquet (is the run complete? try `curate status`)")
    if path.suffix == ".parquet":
        return pq.read_table(path).slice(0, n).to_pylist()
    if path.suffix == ".tar":
        import webdataset as wds

        rows = []
        for sample in wds.WebDataset(str(path), shardshuffle=False, empty_check=False):
            rows.append(json.loads(sample["json"]))
            if len(rows) >= n:
                break
        return rows
    raise ValueError(f"{path}: expected a .tar shard, a .parquet index or a run folder")
