"""Staged bytes of inputs that cannot be re-read cheaply (HTTP downloads, tar members).

Each ingest attempt of a unit writes one Parquet file `_work/blobs/<unit>.<attempt>.parquet`
(key, data), published by rename before the unit is committed; rows point at it. A crashed
attempt leaves an unreferenced file that nothing reads.
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

BLOB = pa.schema([("key", pa.string()), ("data", pa.large_binary())])
FLUSH_BYTES = 64 << 20


class BlobWriter:
    def __init__(self, root: Path, unit: str):
        self.rel = f"_work/blobs/{unit}.{uuid.uuid4().hex[:12]}.parquet"
        self.path = root / self.rel
        self.tmp = self.path.with_name("." + self.path.name + ".tmp")
        self._keys: list[str] = []
        self._data: list[bytes] = []
        self._pending = 0
        self._writer: pq.ParquetWriter | None = None

    def add(self, key: str, data: bytes) -> str:
        self._keys.append(key)
        self._data.append(data)
        self._pending += len(data)
        if self._pending >= FLUSH_BYTES:
            self._flush()
        return self.rel

    def _flush(self) -> None:
        if not self._keys:
            return
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.tmp, BLOB, compression="none")
        self._writer.write_table(pa.table({"key": self._keys, "data": pa.array(self._data, pa.large_binary())}, schema=BLOB))
        self._keys, self._data, self._pending = [], [], 0

    def close(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
            os.replace(self.tmp, self.path)


@lru_cache(maxsize=4)
def _blob_index(path: str) -> dict[str, tuple[int, int]]:
    """key -> (row group, row) of a blob file, read once per worker process."""
    f = pq.ParquetFile(path)
    where = {}
    for g in range(f.num_row_groups):
        for r, key in enumerate(f.read_row_group(g, columns=["key"])["key"].to_pylist()):
            where[key] = (g, r)
    return where


def read_blob(root: Path, rel: str, key: str) -> bytes:
    path = str(Path(root) / rel)
    group, row = _blob_index(path)[key]
    return pq.ParquetFile(path).read_row_group(group, columns=["data"])["data"][row].as_py()
