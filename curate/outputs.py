"""Where a run's published files go: a local folder or an S3 prefix.

Both publish atomically: a reader never sees part of a file. Locally a file is written under a
hidden temporary name and renamed; on S3 it is streamed through a multipart upload, which
creates no object until it is completed (and is aborted on error). A writer killed mid-file
leaves a hidden `.tmp` file or an unfinished multipart upload; `sweep()` removes both when the
next attempt starts.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from curate.storage import TMP_SUFFIX, open_atomic
from schemas.job import Job, S3Options

MARKER = "_curate_config.json"   # on S3: which configuration's output this prefix holds


class LocalOutput:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.url = str(self.root)

    def claim(self, config_hash: str, replacing: str | None = None) -> None:
        """A local output is claimed by the run folder's own `_work/config.json`."""

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def open_write(self, rel: str):
        return open_atomic(self.root / rel)

    def open_read(self, rel: str) -> BinaryIO:
        return open(self.root / rel, "rb")

    def read_range(self, rel: str, offset: int, size: int) -> bytes:
        """`size` bytes at `offset` of a file (one member of a shard, by the index's offsets)."""
        with open(self.root / rel, "rb") as fh:
            fh.seek(offset)
            return fh.read(size)

    def sweep(self, under: str = "") -> int:
        """Delete temporaries left by killed writers below `under`; returns how many."""
        base = self.root / under
        stale = [p for p in base.rglob(f".*{TMP_SUFFIX}")] if base.exists() else []
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)


class MultipartWriter(io.RawIOBase):
    """A write-only file that streams into one S3 multipart upload, `part_size` bytes per part.
    Nothing is visible under the key until `complete()`; `abort()` discards the parts."""

    def __init__(self, client, bucket: str, key: str, part_size: int):
        self.client, self.bucket, self.key, self.part_size = client, bucket, key, part_size
        self.upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        self.parts: list[dict] = []
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.buffer += data
        while len(self.buffer) >= self.part_size:
            self._send(bytes(self.buffer[: self.part_size]))
            del self.buffer[: self.part_size]
        return len(data)

    def _send(self, body: bytes) -> None:
        n = len(self.parts) + 1
        etag = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                       PartNumber=n, Body=body)["ETag"]
        self.parts.append({"PartNumber": n, "ETag": etag})

    def complete(self) -> None:
        if self.buffer or not self.parts:
            self._send(bytes(self.buffer))
            self.buffer.clear()
        self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                              MultipartUpload={"Parts": self.parts})

    def abort(self) -> None:
        self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


class S3Output:
    def __init__(self, url: str, opts: S3Options, part_size: int):
        from curate.sources.s3 import split_s3

        self.url = url.rstrip("/")
        self.bucket, prefix = split_s3(self.url)
        self.prefix = prefix.strip("/")
        self.opts, self.part_size = opts, part_size

    @property
    def client(self):
        from curate.sources.s3 import client

        return client(self.opts)

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def claim(self, config_hash: str, replacing: str | None = None) -> None:
        """Mark the prefix as this configuration's output before anything is written, skipped,
        swept or deleted there: a prefix whose marker (or complete run's manifest) names another
        configuration, or with objects but neither, is refused (its shards are not ours to trust
        or remove). `replacing`: the configuration this run is changing from (its own earlier
        settings, found in its work folder), whose marker is taken over."""
        import json

        from curate.jobs import JobError

        found = next((self._config_hash(rel) for rel in (MARKER, "manifest.json") if self.exists(rel)), None)
        if found is None:
            base = f"{self.prefix}/" if self.prefix else ""
            if self.client.list_objects_v2(Bucket=self.bucket, Prefix=base, MaxKeys=1).get("KeyCount", 0):
                raise JobError(f"{self.url} holds objects but no {MARKER} (not this job's output); "
                               "use --fresh to replace a curate run there, or --out for a new prefix")
        elif found not in (config_hash, replacing):
            raise JobError(f"{self.url} holds a run of a different job configuration (config hash {found}, this job "
                           f"{config_hash}); use --fresh to replace it or --out for a new folder")
        if not self.exists(MARKER) or (replacing and found == replacing):
            self.client.put_object(Bucket=self.bucket, Key=self.key(MARKER), Body=json.dumps({"config_hash": config_hash}).encode())

    def _config_hash(self, rel: str) -> str | None:
        import json

        with self.open_read(rel) as fh:
            return json.loads(fh.read()).get("config_hash")

    def exists(self, rel: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(rel))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    @contextmanager
    def open_write(self, rel: str) -> Iterator[BinaryIO]:
        writer = MultipartWriter(self.client, self.bucket, self.key(rel), self.part_size)
        try:
            yield writer
            writer.complete()
        except BaseException:
            writer.abort()
            raise

    def open_read(self, rel: str) -> BinaryIO:
        return self.client.get_object(Bucket=self.bucket, Key=self.key(rel))["Body"]

    def read_range(self, rel: str, offset: int, size: int) -> bytes:
        """`size` bytes at `offset` of an object: one ranged GET."""
        body = self.client.get_object(Bucket=self.bucket, Key=self.key(rel), Range=f"bytes={offset}-{offset + size - 1}")["Body"]
        return body.read()

    def put_file(self, rel: str, local: Path) -> None:
        with self.open_write(rel) as fh, open(local, "rb") as src:
            while chunk := src.read(self.part_size):
                fh.write(chunk)

    def list_keys(self, folder: str = "") -> list[str]:
        """Every object below the prefix (and below `folder` in it), relative to the prefix."""
        base = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base + folder)
        return sorted(o["Key"][len(base):] for page in pages for o in page.get("Contents", []))

    def delete(self, rels: list[str]) -> None:
        for i in range(0, len(rels), 1000):
            chunk = [{"Key": self.key(r)} for r in rels[i:i + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})

    def pending_uploads(self, under: str = "") -> list[dict]:
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.key(under))
        return [u for page in pages for u in page.get("Uploads", [])]

    def sweep(self, under: str = "") -> int:
        """Abort the multipart uploads below `under` (left by killed writers of an earlier
        attempt); their parts are never visible, but they cost storage. Returns how many."""
        stale = self.pending_uploads(under)
        for u in stale:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"])
        return len(stale)


def is_remote(out: str) -> bool:
    return out.startswith("s3://")


def output_for(job: Job) -> LocalOutput | S3Output:
    if is_remote(job.out):
        return S3Output(job.out, job.output.s3, job.output.part_size_mb << 20)
    return LocalOutput(job.out)


def work_dir(job: Job) -> Path:
    """The driver's folder for the run: commit markers and local copies of the index and
    report. It is the output folder itself unless `out` is remote; an s3:// `work_dir` holds
    the staged bytes (curate.staging), and the driver keeps its files in .curate/<job name>."""
    if not is_remote(job.out):
        return Path(job.out)
    if job.output.work_dir and not is_remote(job.output.work_dir):
        return Path(job.output.work_dir)
    return Path(".curate") / job.name


def run_output(root: str | Path) -> LocalOutput | S3Output:
    """The output a finished run (its local folder) published to: the folder itself, or the
    s3:// prefix its job named."""
    import json

    stamp = Path(root) / "_work" / "config.json"
    if stamp.exists():
        job = Job.model_validate(json.loads(stamp.read_text())["job"])
        if is_remote(job.out):
            return output_for(job)
    return LocalOutput(root)
