"""Existing webdataset shards as a source: each tar is one work unit, read as a stream.

A sample's image member becomes the input; its `txt` member becomes the alt text (a source
caption) and its `json` member the source metadata. Member names are only used as identity
strings, never as paths, so hostile names cannot write anywhere.
"""

from __future__ import annotations

import glob
import json
import tarfile
from collections.abc import Iterator

import pyarrow as pa

from curate.sources import s3
from curate.sources.base import (
    SIDECAR_MAX_BYTES,
    Datasource,
    Input,
    MemoryReader,
    key_for,
    printable,
)
from schemas.job import WebdatasetSource
from schemas.reasons import InputError, Reason
from schemas.record import INPUTS

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


class WebdatasetTars(Datasource):
    """Tar shards: `list()` lists the tars (each planned as one unit), `stream` reads one."""

    type = "webdataset"
    streams = True

    def list(self) -> pa.Table:
        return pa.Table.from_pylist([{"row": n, "uri": tar} for n, tar in enumerate(list_tars(self.cfg))], schema=INPUTS)

    def stream(self, uri: str, limit: int | None) -> Iterator[Input]:
        return iter_samples(uri, self.cfg, self.max_bytes, limit)


def list_tars(src: WebdatasetSource) -> list[str]:
    tars: list[str] = []
    for p in src.paths:
        if p.startswith("s3://") and p.endswith("/"):
            tars += [u for u, _ in s3.list_objects(p, src.s3) if u.endswith(".tar")]
        elif p.startswith("s3://"):
            tars.append(p)
        else:
            tars += sorted(glob.glob(p))
    return sorted(dict.fromkeys(tars))


def split_member(name: str) -> tuple[str, str]:
    """webdataset's rule: key = path up to the first dot of the file name, the rest is the field."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def iter_samples(tar_uri: str, src: WebdatasetSource, max_bytes: int, limit: int | None) -> Iterator[Input]:
    """Inputs of one tar, streamed; a tar that breaks part-way yields one failed input for the rest.

    Only the members a sample uses are read (its first image, `txt`, `json`), each under its
    cap, so a sample holds at most max_bytes plus two small members in memory whatever the
    tar holds; a sample with more than MAX_MEMBERS members fails as too_many_members.
    """
    ordinal = 0
    try:
        fileobj = s3.open_stream(tar_uri, src.s3) if tar_uri.startswith("s3://") else open(tar_uri, "rb")  # noqa: SIM115
    except Exception as exc:
        yield Input(key_for(f"{tar_uri}#unreadable"), tar_uri, None, error=InputError(Reason.READ_ERROR, f"cannot open tar: {exc}"))
        return
    try:
        current, sample = None, None
        with tarfile.open(fileobj=fileobj, mode="r|*") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                key, ext = split_member(member.name)
                if key != current and current is not None:
                    yield sample.to_input(max_bytes)
                    ordinal += 1
                    if limit is not None and ordinal >= limit:
                        return
                if key != current:
                    current, sample = key, Sample(tar_uri, ordinal, key)
                sample.add(tf, member, ext, max_bytes)
        if current is not None and (limit is None or ordinal < limit):
            yield sample.to_input(max_bytes)
    except Exception as exc:  # a broken or hostile tar fails its remaining samples, not the unit
        yield Input(key_for(f"{tar_uri}#broken@{ordinal}"), f"{tar_uri}#broken@{ordinal}", None,
                    error=InputError(Reason.READ_ERROR, f"tar unreadable after {ordinal} samples: {exc}"))
    finally:
        fileobj.close()


MAX_MEMBERS = 64            # members of one sample (a webdataset sample has a handful)
MAX_JSON_BYTES = 64 << 10   # a sample's json member
MAX_JSON_DEPTH = 32


class Sample:
    """The members of one sample as they stream past; only the used ones are read."""

    def __init__(self, tar_uri: str, ordinal: int, key: str):
        self.tar_uri, self.ordinal, self.key = tar_uri, ordinal, key
        self.exts: list[str] = []
        self.image: tuple[str, bytes | None] | None = None
        self.small: dict[str, bytes | None] = {}   # txt, json: None when over their cap

    def add(self, tf: tarfile.TarFile, member: tarfile.TarInfo, ext: str, max_bytes: int) -> None:
        self.exts.append(ext)
        if len(self.exts) > MAX_MEMBERS:
            return
        if self.image is None and ext.rsplit(".", 1)[-1] in IMAGE_EXTS:
            self.image = (ext, tf.extractfile(member).read() if member.size <= max_bytes else None)
        elif ext in ("txt", "json") and ext not in self.small:
            cap = SIDECAR_MAX_BYTES if ext == "txt" else MAX_JSON_BYTES
            self.small[ext] = tf.extractfile(member).read() if member.size <= cap else None

    def to_input(self, max_bytes: int) -> Input:
        inp = Input(key_for(f"{self.tar_uri}#{self.ordinal}:{self.key}"), printable(f"{self.tar_uri}#{self.key}"), None)
        try:
            inp.alt, inp.note = self._alt()
            inp.meta = self._meta()
        except InputError as exc:
            inp.error = exc
            return inp
        if len(self.exts) > MAX_MEMBERS:
            inp.error = InputError(Reason.TOO_MANY_MEMBERS, f"{len(self.exts)} members > {MAX_MEMBERS}")
        elif self.image is None:
            inp.error = InputError(Reason.NOT_AN_IMAGE, f"sample has no image member (has: {', '.join(sorted(set(self.exts))) or 'nothing'})")
        elif self.image[1] is None:
            inp.error = InputError(Reason.TOO_MANY_BYTES, f"image member > max_bytes {max_bytes}")
        else:
            inp.reader = MemoryReader(self.image[1], max_bytes)
        return inp

    def _alt(self) -> tuple[str | None, str | None]:
        if "txt" in self.small and self.small["txt"] is None:
            return None, f"alt text refused (too_many_bytes): txt member > {SIDECAR_MAX_BYTES} bytes"
        alt = self.small.get("txt")
        return (alt.decode(errors="replace").strip() or None) if alt else None, None

    def _meta(self) -> dict:
        if "json" not in self.small:
            return {}
        raw = self.small["json"]
        if raw is None:
            raise InputError(Reason.BAD_METADATA, f"json member > {MAX_JSON_BYTES} bytes")
        try:
            meta = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise InputError(Reason.BAD_METADATA, f"json member unreadable: {type(exc).__name__}: {str(exc)[:200]}") from None
        if depth(meta) > MAX_JSON_DEPTH:
            raise InputError(Reason.BAD_METADATA, f"json member nested deeper than {MAX_JSON_DEPTH}")
        return meta if isinstance(meta, dict) else {"value": meta}


def depth(value, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a parsed JSON value, counted without recursion (stops past `limit`)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, d)
            if d > limit:
                return d
            stack += [(v, d + 1) for v in (node.values() if isinstance(node, dict) else node)]
    return deepest
