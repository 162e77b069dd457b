"""The run folder's layout and atomic writes: no reader ever sees a partial file.

Every file is written to a hidden temporary name in the same folder, then renamed into
place. A unit's `.done` marker is written last, so a marker implies its files are complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.record import INDEX, INGESTED, STAGED

TMP_SUFFIX = ".tmp"


def tmp_name(path: Path) -> Path:
    """A hidden temporary name beside `path` (`sweep` finds those left by killed writers)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


@contextmanager
def open_atomic(path: Path) -> Iterator[BinaryIO]:
    """A file that appears at `path` whole when the block ends, or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with open_atomic(path) as fh:
        fh.write(data)


def write_json_atomic(path: Path, obj) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    with open_atomic(path) as fh:
        pq.write_table(table, fh)


def read_parquet_dir(folder: Path, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """Concatenate every committed parquet file under `folder` (hidden temporaries excluded)."""
    files = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith(".")) if folder.exists() else []
    if not files:
        return schema.empty_table().select(columns) if columns else schema.empty_table()
    return pa.concat_tables(pq.read_table(f, schema=schema, columns=columns) for f in files)


def write_partitioned_atomic(folder: Path, table: pa.Table, by: str) -> None:
    """`folder/<value>/part-0.parquet` per value of column `by` (the column stays in the files,
    so every file reads alone). The folder is built beside and swapped in whole."""
    tmp = tmp_name(folder)
    for value in sorted(set(table[by].to_pylist()), key=str):
        part = table.filter(pc.equal(table[by], value))
        (tmp / str(value)).mkdir(parents=True)
        pq.write_table(part, tmp / str(value) / "part-0.parquet")
    tmp.mkdir(parents=True, exist_ok=True)
    replace_folder(tmp, folder)


def replace_folder(new: Path, folder: Path) -> None:
    """Put folder `new` at `folder` so that a reader sees the old folder or the new one, never
    none: an atomic exchange (Linux renameat2 RENAME_EXCHANGE), else the old one moved aside
    first (a reader can then find no folder for a moment, never a mix)."""
    if not folder.exists():
        os.replace(new, folder)
        return
    if not _exchange(new, folder):
        aside = tmp_name(folder)
        os.replace(folder, aside)
        os.replace(new, folder)
        new = aside
    shutil.rmtree(new)


def _exchange(a: Path, b: Path) -> bool:
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


class RunDir:
    """Paths of one run's output folder. `_work/` holds phase staging and commit markers."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.work = self.root / "_work"
        self.plan = self.work / "plan.parquet"
        self.ingest = self.work / "ingest"
        self.dedup = self.work / "dedup.parquet"
        self.caption = self.work / "caption"
        self.rejects = self.root / "rejects"
        self.index = self.root / "index"       # index/<bucket>/part-0.parquet
        self.hashes = self.root / "hashes.parquet"
        self.manifest = self.root / "manifest.json"
        self.report = self.root / "report"

    def done(self, phase_dir: Path, unit: str) -> Path:
        return phase_dir / f"{unit}.done"

    def marker(self, name: str) -> Path:
        return self.work / f"{name}.done"

    def is_done(self, path: Path) -> bool:
        return path.exists()

    def mark(self, path: Path) -> None:
        write_bytes_atomic(path, b"")

    def sweep(self) -> int:
        """Delete hidden temporaries (files and folders) that killed writers left in the run
        folder; a resumed run calls this before it commits anything. Returns how many."""
        stale = sorted(self.root.rglob(f".*{TMP_SUFFIX}"), key=lambda p: len(p.parts)) if self.root.exists() else []
        gone = 0
        for p in stale:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists() or p.is_symlink():
                p.unlink(missing_ok=True)
            else:
                continue   # inside a folder already removed
            gone += 1
        return gone

    def looks_like_run(self) -> bool:
        return self.manifest.exists() or self.work.exists()

    def clear(self) -> None:
        """Remove a previous run's output (only a folder that holds one; refuse anything else)."""
        if not self.root.exists():
            return
        if any(self.root.iterdir()) and not self.looks_like_run():
            raise RuntimeError(f"{self.root} is not empty and holds no curate run; refusing to delete it")
        shutil.rmtree(self.root)


def staged_rows(run: RunDir, embeddings: bool = False) -> pa.Table:
    """Staged ingest rows (the ones dedup, caption and write read), in key order; the (large)
    embedding column only when asked for."""
    columns = [c for c in INGESTED.names if embeddings or c != "embedding"]
    table = read_parquet_dir(run.ingest, INGESTED, columns)
    return table.filter(pc.equal(table["status"], STAGED)).sort_by("key")


def read_index(run: RunDir, columns: list[str] | None = None) -> pa.Table:
    """The run's index (all bucket partitions), in key order."""
    if not run.index.is_dir():
        raise FileNotFoundError(f"{run.root}: no index/ (is the run complete? try `curate status {run.root}`)")
    table = read_parquet_dir(run.index, INDEX, columns if columns is None or "key" in columns else [*columns, "key"])
    table = table.sort_by("key")
    return table.select(columns) if columns else table
