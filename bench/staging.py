"""Staged bytes: curate.staging (one append-only file per unit attempt, one seek per image)
against the store it replaced (Parquet `key, data` files flushed in ~64 MB row groups, where
returning one image reads its whole row group) and one small file per image.

Both writes and random single-image reads are timed in the same run on the same bytes.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import rate, table
from curate.outputs import LocalOutput
from curate.staging import StagingStore

IMAGES, IMAGE_BYTES, READS = 192, 512 << 10, 64
BLOB = pa.schema([("key", pa.string()), ("data", pa.large_binary())])


def parquet_write(folder: Path, items: list[tuple[str, bytes]]) -> Path:
    """The replaced design: one Parquet file per unit attempt, a row group per ~64 MB."""
    path = folder / "unit.parquet"
    with pq.ParquetWriter(path, BLOB, compression="none") as w:
        for i in range(0, len(items), 128):   # 128 x 512 KiB = 64 MiB per row group
            chunk = items[i:i + 128]
            w.write_table(pa.table({"key": [k for k, _ in chunk], "data": pa.array([d for _, d in chunk], pa.large_binary())}, schema=BLOB))
    return path


def parquet_read(path: Path, where: dict[str, tuple[int, int]], key: str) -> bytes:
    group, row = where[key]
    return pq.ParquetFile(path).read_row_group(group, columns=["data"])["data"][row].as_py()


def main() -> None:
    rng = random.Random(0)
    items = [(f"k{i:05d}", rng.randbytes(IMAGE_BYTES)) for i in range(IMAGES)]
    picks = [rng.randrange(IMAGES) for _ in range(READS)]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        store = StagingStore(LocalOutput(tmp / "store"))
        locators: dict[str, str] = {}

        def stage() -> None:
            w = store.writer("u")
            for k, d in items:
                locators[k] = w.put(k, d)
            w.close()

        def small_files() -> None:
            (tmp / "small").mkdir(exist_ok=True)
            for k, d in items:
                (tmp / "small" / k).write_bytes(d)

        def parquet() -> None:
            parquet_write(tmp, items)

        write_rates = [rate(stage, IMAGES), rate(parquet, IMAGES), rate(small_files, IMAGES)]
        path = parquet_write(tmp, items)
        f = pq.ParquetFile(path)
        where = {k: (g, r) for g in range(f.num_row_groups) for r, k in enumerate(f.read_row_group(g, columns=["key"])["key"].to_pylist())}
        assert all(store.read(locators[items[i][0]]) == parquet_read(path, where, items[i][0]) == items[i][1] for i in picks[:4])

        def read_staged() -> None:
            for i in picks:
                store.read(locators[items[i][0]])

        def read_parquet() -> None:
            for i in picks:
                parquet_read(path, where, items[i][0])

        def read_small() -> None:
            for i in picks:
                (tmp / "small" / items[i][0]).read_bytes()

        read_rates = [rate(read_staged, READS), rate(read_parquet, READS), rate(read_small, READS)]
    print(f"{IMAGES} images of {IMAGE_BYTES >> 10} KiB, {READS} random single-image reads (page cache warm; cpu count {os.cpu_count()})")
    table([("stage (write) vs Parquet blobs", write_rates[0], write_rates[1]),
           ("stage (write) vs one small file per image", write_rates[0], write_rates[2]),
           ("read one image vs Parquet row group", read_rates[0], read_rates[1]),
           ("read one image vs one small file per image", read_rates[0], read_rates[2])], "/s")


if __name__ == "__main__":
    main()
