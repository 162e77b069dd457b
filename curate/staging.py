"""The staging store: each kept input's bytes, fetched from its source once in ingest and read
back by caption and write with one ranged read, never from the source again.

Each ingest attempt of a unit appends its kept images to one file, `staged/<unit>.<attempt>.bin`,
below the store's root (the run's `_work/` folder, or an s3:// `output.work_dir` prefix that every
node of a cluster reaches). The file is published whole when the attempt ends (rename, or the S3
multipart upload completed); a crashed attempt leaves nothing or an unreferenced file. A row
holds its image's locator, `staged/<unit>.<attempt>.bin:<offset>:<length>`: one seek, or one
ranged GET, returns that image without reading any other.

The store also holds the few small files that workers read or write during a run (the shard
writer's member offsets), so a cluster without a shared file system needs nothing else.
"""

from __future__ import annotations

import shutil
import uuid
from contextlib import ExitStack
from pathlib import Path

from curate.outputs import LocalOutput, S3Output, is_remote
from schemas.job import Job

STAGED = "staged"
S3_PART_BYTES = 8 << 20


class StagingStore:
    """put through a `UnitWriter`, read(locator), remove_run(); local folder or S3 prefix."""

    def __init__(self, place: LocalOutput | S3Output):
        self.place = place

    @property
    def url(self) -> str:
        return self.place.url

    def writer(self, unit: str, rel: str | None = None) -> UnitWriter:
        """A new attempt's file for `unit` (or the file `rel`, rebuilt)."""
        return UnitWriter(self, unit, rel)

    def read(self, locator: str) -> bytes:
        rel, offset, length = parse(locator)
        data = self.place.read_range(rel, offset, length) if length else b""
        if len(data) != length:   # a cheap tie to what ingest hashed: the length it counted
            raise StagedError(f"{locator}: read {len(data)} bytes, staged {length}")
        return data

    def files(self) -> set[str]:
        """Every published staged file (relative to the store's root)."""
        return {rel for rel in self.listing(STAGED) if rel.endswith(".bin")}

    def listing(self, folder: str) -> set[str]:
        """The published files directly in `folder` (relative to the store's root; no temporaries)."""
        if isinstance(self.place, S3Output):
            return {k for k in self.place.list_keys(f"{folder}/") if "/" not in k[len(folder) + 1:]}
        path = self.place.root / folder
        return {f"{folder}/{p.name}" for p in path.iterdir() if not p.name.startswith(".")} if path.is_dir() else set()

    def remove_run(self) -> None:
        """Delete the run's staged bytes and shard member files (the run is complete)."""
        for folder in (STAGED, "shards"):
            self.remove(folder)

    def remove(self, folder: str) -> None:
        if isinstance(self.place, S3Output):
            self.place.sweep(folder)
            self.place.delete([k for k in self.place.list_keys() if k.startswith(f"{folder}/")])
        else:
            shutil.rmtree(self.place.root / folder, ignore_errors=True)

    def open_write(self, rel: str):
        """A small file below the store's root, published whole (rename or single upload)."""
        return self.place.open_write(rel)

    def exists(self, rel: str) -> bool:
        return self.place.exists(rel)

    def read_file(self, rel: str) -> bytes:
        return self.place.open_read(rel).read()


class StagedError(Exception):
    """Staged bytes that are not what ingest staged (cut short or missing)."""


class UnitWriter:
    """Appends one unit attempt's images to one staged file; `close()` publishes it, `abort()`
    discards it. Nothing is created for an attempt that stages nothing."""

    def __init__(self, store: StagingStore, unit: str, rel: str | None = None):
        self.store = store
        self.rel = rel or f"{STAGED}/{unit}.{uuid.uuid4().hex[:12]}.bin"
        self.offset = 0
        self._stack: ExitStack | None = None
        self._fh = None

    def put(self, key: str, data: bytes) -> str:
        """Append `data`; returns its locator."""
        if self._fh is None:
            self._stack = ExitStack()
            self._fh = self._stack.enter_context(self.store.place.open_write(self.rel))
        self._fh.write(data)
        locator = f"{self.rel}:{self.offset}:{len(data)}"
        self.offset += len(data)
        return locator

    def pad_to(self, offset: int) -> None:
        """Fill up to `offset` with zeros (a rebuilt file keeps its first attempt's offsets)."""
        if offset > self.offset:
            self.put("", bytes(offset - self.offset))

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = self._fh = None

    def abort(self) -> None:
        if self._stack is not None:
            self._stack.__exit__(RuntimeError, RuntimeError("staging aborted"), None)
            self._stack = self._fh = None


def parse(locator: str) -> tuple[str, int, int]:
    rel, offset, length = locator.rsplit(":", 2)
    return rel, int(offset), int(length)


def staged_file(locator: str) -> str:
    return locator.rsplit(":", 2)[0]


def store_for(job: Job, root: str | Path) -> StagingStore:
    """The run's store: `output.work_dir` when it is an s3:// prefix, else `<run folder>/_work/`."""
    where = job.output.work_dir
    if where and is_remote(where):
        return StagingStore(S3Output(where, job.output.s3, S3_PART_BYTES))
    return StagingStore(LocalOutput(Path(root) / "_work"))
