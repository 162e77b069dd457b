"""A local folder as a source: listed safely (no dot-files, special files or links that leave
it), each file opened with `open_inside` and read by fd."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import pyarrow as pa

from curate.sources.base import (
    Datasource,
    LocalReader,
    Reader,
    file_kind,
    listing,
    local_path,
    open_inside,
    read_fd,
    wanted,
)
from schemas.reasons import InputError, Reason


class Folder(Datasource):
    type = "folder"

    @cached_property
    def root(self) -> Path:
        return Path(self.cfg.path).resolve()

    def list(self) -> pa.Table:
        entries = [(p.as_uri(), 0, why, detail) for p, why, detail in walk_folder(self.root, self.cfg.extensions)]
        return listing(entries, self.cfg.alt_text == "sidecar", lambda _: True)   # a missing sidecar is no alt text

    def reader(self, row: dict) -> Reader:
        return LocalReader(self.root, local_path(row["uri"]), self.max_bytes)


def walk_folder(root: Path, exts: list[str]) -> Iterator[tuple[Path, str | None, str | None]]:
    """(path, refusal reason, detail) of every entry under `root` whose name has an image
    extension, refused or not: dot-files, FIFOs and devices, dangling or looping symlinks
    and symlinks that leave `root` are listed with their reason (never opened). Dot-folders
    and symlinked folders are not entered (a link may loop or leave the folder)."""
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            path = Path(e.path)
            if e.is_dir(follow_symlinks=False):
                if not e.name.startswith("."):
                    stack.append(path)
                continue
            if not wanted(e.name, exts):
                continue
            yield (path, *_refusal(root, path, e))


def _refusal(root: Path, path: Path, entry: os.DirEntry) -> tuple[str | None, str | None]:
    if entry.name.startswith("."):
        return Reason.HIDDEN_FILE, "a dot-file (hidden) is not an input"
    if entry.is_file(follow_symlinks=False):   # from the directory entry: no stat call
        return None, None
    mode = entry.stat(follow_symlinks=False).st_mode
    if stat.S_ISLNK(mode):
        real = os.path.realpath(path)
        if not os.path.exists(real):
            return Reason.BROKEN_LINK, "a dangling symlink or a symlink loop"
        if os.path.commonpath([real, root]) != str(root):
            return Reason.UNSAFE_PATH, "a symlink to a path outside the source folder"
        mode = os.stat(real).st_mode
    if not stat.S_ISREG(mode):
        return Reason.NOT_A_FILE, f"not a regular file ({file_kind(mode)})"
    return None, None


def read_local(path: Path, folder: str, limit: int) -> bytes:
    """A file of a folder source, read with the same rules as its images (see `open_inside`)."""
    fd = open_inside(Path(folder).resolve(), path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise InputError(Reason.TOO_MANY_BYTES, f"{size} bytes > {limit}")
        return read_fd(fd, size, limit)
    finally:
        os.close(fd)
