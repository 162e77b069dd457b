"""Sources list their inputs (cheaply, on the driver) and read one input's bytes (in workers).

An input's identity is its URI; its key is a digest of that URI, so keys are stable across
runs and plain `[0-9a-z]` (webdataset splits member names at the first dot).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa

from schemas.job import FolderSource, Job
from schemas.record import PLAN


def key_for(uri: str) -> str:
    return hashlib.blake2b(uri.encode(), digest_size=10).hexdigest()


def list_folder(src: FolderSource) -> list[str]:
    root = Path(src.path).resolve()
    exts = {"." + e.lower().lstrip(".") for e in src.extensions}
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")]
    return sorted(p.as_uri() for p in files)


def plan_units(job: Job, limit: int | None = None) -> pa.Table:
    """Every input of every source, cut into work units of `units.size` (deterministic order)."""
    rows = []
    for s, src in enumerate(job.sources):
        uris = list_folder(src)
        for i, uri in enumerate(uris):
            rows.append({"unit": f"s{s:02d}u{i // job.units.size:06d}", "key": key_for(uri), "source": f"{src.type}:{s}", "uri": uri})
    if limit is not None:
        rows = rows[:limit]
    return pa.Table.from_pylist(rows, schema=PLAN)


def local_path(uri: str) -> Path:
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(uri).path))


def read_bytes(uri: str, max_bytes: int) -> bytes:
    """The input's bytes; raises TooLarge past `max_bytes` without reading the rest."""
    path = local_path(uri)
    size = path.stat().st_size
    if size > max_bytes:
        raise TooLarge(f"{size} bytes > max_bytes {max_bytes}")
    return path.read_bytes()


def read_alt_text(uri: str, mode: str) -> str | None:
    if mode != "sidecar":
        return None
    sidecar = local_path(uri).with_suffix(".txt")
    try:
        return sidecar.read_text(errors="replace").strip() or None
    except OSError:
        return None


class TooLarge(Exception):
    pass
