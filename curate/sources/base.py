"""What every source hands to ingest: `Input`s, each with a reader that can fetch the first
bytes (for the header probe) and then the whole content.

An input's key is a digest of its identity (path, object, list row, tar member), so keys are
stable across runs and plain `[0-9a-f]` (webdataset splits member names at the first dot).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse


def key_for(identity: str) -> str:
    return hashlib.blake2b(identity.encode(), digest_size=10).hexdigest()


class InputError(Exception):
    """An input that cannot be read, with its reason code (schemas.reasons)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class Reader(Protocol):
    rereadable: bool        # True: later phases read the source again; False: ingest stages the bytes
    size: int | None        # total bytes when known (before or after head())
    received: int           # bytes transferred so far

    async def head(self, n: int) -> bytes: ...
    async def rest(self) -> bytes: ...
    async def close(self) -> None: ...


@dataclass
class Input:
    key: str
    uri: str                                   # shown in rows and reports (credentials redacted)
    reader: Reader | None
    alt: str | None = None
    alt_uri: str | None = None                 # an alt-text sidecar to read if the input is kept
    meta: dict = field(default_factory=dict)   # source metadata (e.g. a webdataset sample's json)
    error: InputError | None = None            # set when the input is broken before any read


def local_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


class LocalReader:
    rereadable = True

    def __init__(self, path: Path, max_bytes: int):
        self.path = path
        self.size = path.stat().st_size
        self.received = 0
        self._data: bytes | None = None
        if self.size > max_bytes:
            raise InputError("too_many_bytes", f"{self.size} bytes > max_bytes {max_bytes}")

    async def head(self, n: int) -> bytes:
        with open(self.path, "rb") as fh:
            data = fh.read(n)
        self.received += len(data)
        return data

    async def rest(self) -> bytes:
        if self._data is None:
            self._data = self.path.read_bytes()
            self.received = len(self._data)
        return self._data

    async def close(self) -> None:
        pass


class MemoryReader:
    """Bytes already in hand (a tar member): nothing to fetch, nothing to re-read later."""

    rereadable = False

    def __init__(self, data: bytes, max_bytes: int):
        self.data, self.size, self.received = data, len(data), len(data)
        if self.size > max_bytes:
            raise InputError("too_many_bytes", f"{self.size} bytes > max_bytes {max_bytes}")

    async def head(self, n: int) -> bytes:
        return self.data

    async def rest(self) -> bytes:
        return self.data

    async def close(self) -> None:
        pass
