"""Inline JPEG thumbnails read from the shards: one ranged read per image where the index has
its byte offset, else each shard streamed once (runs written before offsets); missing ->
placeholder."""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import tarfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

THUMB_PX = 192            # thumbnails' longest side
THUMB_QUALITY = 70

OpenShard = Callable[[str], BinaryIO]
ReadRange = Callable[[str, int, int], bytes]    # (shard, offset, size) -> bytes


@dataclass
class Thumb:
    uri: str
    ok: bool
    note: str = ""


@functools.cache
def _placeholder_uri() -> str:
    """A grey "no image" JPEG shown where a sample's image cannot be read."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (THUMB_PX, THUMB_PX * 2 // 3), (226, 226, 226))
    d = ImageDraw.Draw(img)
    d.line((0, 0, img.width, img.height), fill=(190, 190, 190), width=2)
    d.line((0, img.height, img.width, 0), fill=(190, 190, 190), width=2)
    d.text((img.width // 2, img.height // 2), "no image", fill=(90, 90, 90), anchor="mm")
    return _jpeg_uri(img)


def _jpeg_uri(img) -> str:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=THUMB_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def make_thumbnail(data: bytes, px: int = THUMB_PX) -> str:
    """A JPEG data URI of the image, longest side at most ``px`` (EXIF orientation applied,
    transparency flattened on white). Raises on undecodable data."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as src:
        if src.format == "JPEG":
            src.draft("RGB", (px, px))  # decode big JPEGs at a reduced scale
        img = ImageOps.exif_transpose(src)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.new("RGB", rgba.size, (255, 255, 255))
            img.paste(rgba, mask=rgba.getchannel("A"))
        elif img.mode.startswith("I;16") or img.mode == "I":
            img = img.point(lambda v: v / 256).convert("L").convert("RGB")
        elif img.mode != "RGB":
            img = img.convert("RGB")
        img.thumbnail((px, px), Image.Resampling.LANCZOS)
        return _jpeg_uri(img)


def _shard_thumbs(rel: str, members: set[str], open_shard: OpenShard) -> dict[str, Thumb]:
    """Thumbnails of ``members`` of one shard, read as a stream (works for S3 bodies too)."""
    found: dict[str, Thumb] = {}
    try:
        with contextlib.closing(open_shard(rel)) as fh, tarfile.open(fileobj=fh, mode="r|*") as tf:
            for info in tf:
                if info.name not in members or info.name in found or not info.isfile():
                    continue
                fobj = tf.extractfile(info)
                try:
                    found[info.name] = Thumb(make_thumbnail(fobj.read()), True)
                except Exception as exc:  # an undecodable image gets a placeholder
                    found[info.name] = Thumb(_placeholder_uri(), False, f"cannot decode {info.name}: {exc}")
                if len(found) == len(members):
                    break
    except Exception as exc:  # an unreadable shard: placeholders, not a failed report
        note = f"cannot read shard {rel}: {type(exc).__name__}: {exc}"
        return found | {m: Thumb(_placeholder_uri(), False, note) for m in members - found.keys()}
    return found | {m: Thumb(_placeholder_uri(), False, f"{m} not found in {rel}") for m in members - found.keys()}


def placeholder(note: str) -> Thumb:
    return Thumb(_placeholder_uri(), False, note)


def thumbnail_of(data: bytes) -> Thumb:
    """A thumbnail of image bytes; raises on undecodable data."""
    return Thumb(make_thumbnail(data), True)


def _ranged_thumb(rel: str, member: str, where: tuple[int, int], read_range: ReadRange) -> Thumb:
    try:
        return thumbnail_of(read_range(rel, *where))
    except Exception as exc:  # unreadable or undecodable: a placeholder, not a failed report
        return placeholder(f"cannot read {member} in {rel}: {type(exc).__name__}: {exc}")


def load_thumbnails(wanted: Iterable[tuple[str | None, str | None]], open_shard: OpenShard,
                    workers: int = 4, read_range: ReadRange | None = None,
                    located: dict[tuple[str, str], tuple[int, int]] | None = None) -> dict[tuple[str | None, str | None], Thumb]:
    """Thumbnails for (shard, member) pairs. A pair in `located` ((offset, size) of the member's
    data) is one ranged read; the others stream their shard once. Missing -> placeholder."""
    by_shard: dict[str, set[str]] = {}
    ranged: list[tuple[str, str]] = []
    out: dict[tuple[str | None, str | None], Thumb] = {}
    located = located or {}
    for shard, member in wanted:
        if not shard or not member:
            out[(shard, member)] = Thumb(_placeholder_uri(), False, "no shard/member in the index row")
        elif read_range is not None and (shard, member) in located:
            ranged.append((shard, member))
        else:
            by_shard.setdefault(shard, set()).add(member)
    if not by_shard and not ranged:
        return out
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for pair, thumb in zip(ranged, pool.map(lambda p: _ranged_thumb(*p, located[p], read_range), ranged)):
            out[pair] = thumb
        results = pool.map(lambda kv: (kv[0], _shard_thumbs(kv[0], kv[1], open_shard)), sorted(by_shard.items()))
        for shard, thumbs in results:
            out.update({(shard, m): t for m, t in thumbs.items()})
    return out
