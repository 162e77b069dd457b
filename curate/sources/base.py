"""What every source hands to ingest: `Input`s, each with a reader that can fetch the first
bytes (for the header probe) and then the whole content.

An input's key is a digest of its identity (path, object, list row, tar member), so keys are
stable across runs and plain `[0-9a-f]` (webdataset splits member names at the first dot).
"""

from __future__ import annotations

import hashlib
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol
from urllib.parse import unquote_to_bytes, urlparse

import pyarrow as pa

from schemas.reasons import InputError, Reason
from schemas.record import INPUTS

if TYPE_CHECKING:
    from curate.sources.http import HttpSession
    from schemas.job import Job

SIDECAR_MAX_BYTES = 16 << 10   # alt text longer than this is not alt text (sidecar or txt member)


def key_for(identity: str) -> str:
    # surrogateescape: names that are not UTF-8 (tar members, file names) still get a stable key
    return hashlib.blake2b(identity.encode(errors="surrogateescape"), digest_size=10).hexdigest()


def printable(name: str) -> str:
    """A name safe to store as UTF-8 text: undecodable bytes shown as \\xNN escapes."""
    return name.encode(errors="surrogateescape").decode(errors="backslashreplace")


class Reader(Protocol):
    """`head(n)`: the first n bytes (all of them when the file is shorter). Called again with a
    larger n it transfers only the bytes not read yet, so a header probe can start small and
    grow. `rest()`: the whole content, reusing what `head` read."""

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
    note: str | None = None                    # kept in the row's detail (e.g. why its alt text was refused)


class Datasource(ABC):
    """One configured source, shaped like Ray Data's Datasource or img2dataset's reader:
    `list()` runs on the driver and says what the source holds (an INPUTS table, in a stable
    order); `open(row)` runs in a worker and turns one listed row into an `Input` whose reader
    fetches the bytes, or which carries the reason it cannot be read. A source whose rows are
    containers (`streams`: a webdataset tar) is planned one unit per row and expanded by
    `stream(uri, limit)` instead, since its inputs are known only once it is read."""

    type: ClassVar[str]
    streams: ClassVar[bool] = False

    def __init__(self, job: Job, index: int, session: HttpSession | None = None):
        self.job, self.index, self.cfg = job, index, job.sources[index]
        self.max_bytes = job.ingest.max_bytes
        self.session = session   # the ingest task's HTTP session (URL lists only)

    @abstractmethod
    def list(self) -> pa.Table:
        """Every input (or container, for streaming sources) as INPUTS rows, on the driver."""

    def open(self, row: dict) -> Input:
        """A listed file or object: refused when listed (`error`), else opened by `reader(row)`."""
        inp = Input(key_for(row["uri"]), row["uri"], None, alt_uri=row["alt_uri"])
        if row["error"]:
            inp.error = InputError(row["error"], row["error_detail"])
            return inp
        try:
            inp.reader = self.reader(row)
        except InputError as exc:
            inp.error = exc
        except OSError as exc:
            inp.error = InputError(Reason.READ_ERROR, f"{type(exc).__name__}: {exc.strerror}")
        return inp

    def reader(self, row: dict) -> Reader:
        """The reader of one listed file or object (sources whose rows are inputs)."""
        raise TypeError(f"{type(self).__name__} lists containers: its inputs come from stream(), not open()")

    def stream(self, uri: str, limit: int | None) -> Iterator[Input]:
        """The inputs of one listed container (streaming sources only), at most `limit`."""
        raise TypeError(f"{type(self).__name__} lists its inputs: open() them, there is no container to stream")


def wanted(name: str, exts: list[str]) -> bool:
    """A name with one of the source's image extensions."""
    return Path(name).suffix.lower() in {"." + e.lower().lstrip(".") for e in exts}


def listing(entries: list[tuple[str, int, str | None, str | None]], sidecars: bool, has_text) -> pa.Table:
    """The INPUTS table of (uri, size, refusal reason, detail) entries, in URI order; with
    `sidecars`, each readable entry whose `<stem>.txt` exists (`has_text(uri)`) points at it."""
    rows = []
    for n, (uri, size, why, detail) in enumerate(sorted(entries)):
        sidecar = uri.rsplit(".", 1)[0] + ".txt"
        has_sidecar = sidecars and why is None and has_text(sidecar)
        rows.append({"row": n, "uri": uri, "size": size, "alt": None, "alt_uri": sidecar if has_sidecar else None,
                     "error": why, "error_detail": detail})
    return pa.Table.from_pylist(rows, schema=INPUTS)


def local_path(uri: str) -> Path:
    """The path of a file:// URI, byte for byte (names that are not UTF-8 included)."""
    return Path(os.fsdecode(unquote_to_bytes(urlparse(uri).path)))


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_inside(root: Path, path: Path) -> int:
    """A read-only fd of the regular file `path`, which must lie inside `root` once every
    symlink is resolved. Each component is opened relative to the last with O_NOFOLLOW, so a
    link swapped in after the check is refused rather than followed; O_NONBLOCK keeps a FIFO
    from blocking the open, and the fd itself is checked to be a regular file.
    Raises InputError (unsafe_path, not_a_file, broken_link)."""
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise InputError(Reason.BROKEN_LINK, "a dangling symlink or a symlink loop")
    rel = os.path.relpath(real, root)
    if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        raise InputError(Reason.UNSAFE_PATH, "resolves to a path outside the source folder")
    parts = rel.split(os.sep)
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        try:
            nxt = os.open(parts[-1], _OPEN_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise InputError(Reason.UNSAFE_PATH, f"changed while being opened: {exc.strerror}") from None
    finally:
        os.close(fd)
    mode = os.fstat(nxt).st_mode
    if not stat.S_ISREG(mode):
        os.close(nxt)
        raise InputError(Reason.NOT_A_FILE, f"not a regular file ({file_kind(mode)})")
    return nxt


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symlink")):
        if test(mode):
            return name
    return "special file"


def read_fd(fd: int, size: int, limit: int) -> bytes:
    """The whole file behind `fd` (its fstat size `size`), refusing one that holds more than
    its size says (a /proc or sysfs file reports 0 or 4096) or more than `limit`."""
    if size > limit:
        raise InputError(Reason.TOO_MANY_BYTES, f"{size} bytes > max_bytes {limit}")
    data = os.pread(fd, size + 1, 0)
    if len(data) != size:
        raise InputError(Reason.READ_ERROR, f"file holds {'more' if len(data) > size else 'fewer'} bytes than its size ({size}) says")
    return data


class LocalReader:
    """A file of a folder source, opened once (safely, see `open_inside`) and read by fd."""

    rereadable = True

    def __init__(self, root: Path, path: Path, max_bytes: int):
        self.fd = open_inside(root, path)
        self.size = os.fstat(self.fd).st_size
        self.max_bytes = max_bytes
        self.received = 0
        self._head = b""
        self._data: bytes | None = None
        if self.size > max_bytes:
            os.close(self.fd)
            self.fd = -1
            raise InputError(Reason.TOO_MANY_BYTES, f"{self.size} bytes > max_bytes {max_bytes}")

    async def head(self, n: int) -> bytes:
        if min(n, self.size) > len(self._head):
            more = os.pread(self.fd, min(n, self.size) - len(self._head), len(self._head))
            self._head += more
            self.received += len(more)
        return self._head

    async def rest(self) -> bytes:
        if self._data is None:
            self._data = read_fd(self.fd, self.size, self.max_bytes)
            self.received = len(self._data)
        return self._data

    async def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class MemoryReader:
    """Bytes already in hand (a tar member): nothing to fetch, nothing to re-read later."""

    rereadable = False

    def __init__(self, data: bytes, max_bytes: int):
        self.data, self.size, self.received = data, len(data), len(data)
        if self.size > max_bytes:
            raise InputError(Reason.TOO_MANY_BYTES, f"{self.size} bytes > max_bytes {max_bytes}")

    async def head(self, n: int) -> bytes:
        return self.data[:n]

    async def rest(self) -> bytes:
        return self.data

    async def close(self) -> None:
        pass
