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

from curate.sources import s3
from curate.sources.base import Input, InputError, MemoryReader, key_for
from schemas.job import WebdatasetSource

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


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
    """Inputs of one tar, streamed; a tar that breaks part-way yields one failed input for the rest."""
    ordinal = 0
    try:
        fileobj = s3.open_stream(tar_uri, src.s3) if tar_uri.startswith("s3://") else open(tar_uri, "rb")  # noqa: SIM115
    except Exception as exc:
        yield Input(key_for(f"{tar_uri}#unreadable"), tar_uri, None, error=InputError("read_error", f"cannot open tar: {exc}"))
        return
    try:
        current, members = None, {}
        with tarfile.open(fileobj=fileobj, mode="r|*") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                key, ext = split_member(member.name)
                if key != current and current is not None:
                    yield _sample(tar_uri, ordinal, current, members, max_bytes)
                    ordinal += 1
                    members = {}
                    if limit is not None and ordinal >= limit:
                        return
                current = key
                members[ext] = tf.extractfile(member).read() if member.size <= max_bytes else None
        if current is not None and (limit is None or ordinal < limit):
            yield _sample(tar_uri, ordinal, current, members, max_bytes)
    except (tarfile.TarError, OSError, EOFError) as exc:
        yield Input(key_for(f"{tar_uri}#broken@{ordinal}"), f"{tar_uri}#broken@{ordinal}", None,
                    error=InputError("read_error", f"tar unreadable after {ordinal} samples: {exc}"))
    finally:
        fileobj.close()


def _sample(tar_uri: str, ordinal: int, key: str, members: dict[str, bytes | None], max_bytes: int) -> Input:
    uri = f"{tar_uri}#{key}"
    ident = key_for(f"{tar_uri}#{ordinal}:{key}")
    image_ext = next((e for e in members if e.rsplit(".", 1)[-1] in IMAGE_EXTS), None)
    alt = members.get("txt")
    meta = {}
    if members.get("json"):
        try:
            meta = json.loads(members["json"])
        except ValueError:
            meta = {"_unparsed": members["json"][:1000].decode(errors="replace")}
    inp = Input(ident, uri, None, alt=alt.decode(errors="replace").strip() if alt else None, meta=meta if isinstance(meta, dict) else {"value": meta})
    if image_ext is None:
        inp.error = InputError("not_an_image", f"sample has no image member (has: {', '.join(sorted(members)) or 'nothing'})")
    elif members[image_ext] is None:
        inp.error = InputError("too_many_bytes", f"image member > max_bytes {max_bytes}")
    else:
        inp.reader = MemoryReader(members[image_ext], max_bytes)
    return inp
