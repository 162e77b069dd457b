"""S3 (and S3-compatible: MinIO, R2, Ceph, SeaweedFS) through boto3.

Endpoint, region and profile come from the job or the standard AWS environment; credentials
only from the environment or the profile, never from the job file.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import pyarrow as pa

from curate.sources.base import Datasource, listing, wanted
from schemas.job import S3Options
from schemas.reasons import InputError, Reason


def split_s3(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


@lru_cache(maxsize=8)
def _client(endpoint_url: str | None, region: str | None, profile: str | None):
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile, region_name=region)
    return session.client("s3", endpoint_url=endpoint_url, config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def client(opts: S3Options):
    return _client(opts.endpoint_url, opts.region, opts.profile)


def list_objects(uri: str, opts: S3Options) -> list[tuple[str, int]]:
    """(s3://bucket/key, size) of every object under the prefix, in key order (all pages)."""
    bucket, prefix = split_s3(uri)
    out = []
    for page in client(opts).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [(f"s3://{bucket}/{o['Key']}", int(o["Size"])) for o in page.get("Contents", [])]
    return sorted(out)


def get_bytes(uri: str, opts: S3Options, start: int | None = None, end: int | None = None) -> bytes:
    return get_object(uri, opts, start, end)[0]


def get_object(uri: str, opts: S3Options, start: int | None = None, end: int | None = None,
               if_match: str | None = None) -> tuple[bytes, str | None]:
    """(bytes, ETag); with `if_match`, an object changed since that ETag is a read_error."""
    bucket, key = split_s3(uri)
    kwargs = {"Range": f"bytes={start or 0}-{'' if end is None else end}"} if start is not None else {}
    if if_match:
        kwargs["IfMatch"] = if_match
    try:
        resp = client(opts).get_object(Bucket=bucket, Key=key, **kwargs)
        return resp["Body"].read(), resp.get("ETag")
    except Exception as exc:
        code = _short(exc)
        if code in ("PreconditionFailed", "412"):
            raise InputError(Reason.READ_ERROR, f"S3 GET {uri}: changed between the header read and the full read") from None
        raise InputError(Reason.READ_ERROR, f"S3 GET {uri}: {code}") from None


def open_stream(uri: str, opts: S3Options):
    """A file-like streaming body (for reading tar shards without staging them)."""
    bucket, key = split_s3(uri)
    return client(opts).get_object(Bucket=bucket, Key=key)["Body"]


def _short(exc: Exception) -> str:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    return code or f"{type(exc).__name__}: {exc}"


class S3Prefix(Datasource):
    """Objects under an S3 prefix (dot-files skipped); `<stem>.txt` objects are alt-text sidecars."""

    type = "s3"

    def list(self) -> pa.Table:
        objects = list_objects(self.cfg.prefix, self.cfg.s3)
        entries = [(u, n, None, None) for u, n in objects
                   if wanted(u, self.cfg.extensions) and not PurePosixPath(u).name.startswith(".")]
        texts = {u for u, _ in objects if u.endswith(".txt")}
        return listing(entries, self.cfg.alt_text == "sidecar", texts.__contains__)

    def reader(self, row: dict) -> S3Reader:
        return S3Reader(row["uri"], row["size"], self.cfg.s3, self.max_bytes)


class S3Reader:
    rereadable = True

    def __init__(self, uri: str, size: int, opts: S3Options, max_bytes: int):
        self.uri, self.size, self.opts = uri, size, opts
        self.received = 0
        self._head = b""
        self._etag: str | None = None
        if size > max_bytes:
            raise InputError(Reason.TOO_MANY_BYTES, f"{size} bytes > max_bytes {max_bytes}")

    async def head(self, n: int) -> bytes:
        if self.size == 0:
            return b""
        self._head, self._etag = await asyncio.to_thread(get_object, self.uri, self.opts, 0, min(n, self.size) - 1)
        self.received += len(self._head)
        return self._head

    async def rest(self) -> bytes:
        if len(self._head) >= self.size:
            return self._head
        # tied to the first read: the rest of the same object version, or an error
        tail, _ = await asyncio.to_thread(get_object, self.uri, self.opts, len(self._head), None, self._etag)
        self.received += len(tail)
        return self._head + tail

    async def close(self) -> None:
        pass
