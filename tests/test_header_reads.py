"""Header reads sized by need: every reader starts with FIRST_HEADER_BYTES and reads more only
while the probe finds the header incomplete. Real servers, no Ray."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curate import imaging
from curate.phases.ingest import _read_header
from curate.sources.base import LocalReader, MemoryReader
from curate.sources.http import HttpReader, HttpSession
from schemas.job import FetchConfig, S3Options
from tests.servers.http_server import serve

CAP = 65536
FIRST = imaging.FIRST_HEADER_BYTES


def _noise(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


def _exif(orientation: int, comment_bytes: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\0\0\0" + b"x" * comment_bytes   # UserComment: a big EXIF block
    return exif.tobytes()


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """name -> (bytes, header reads it should take: total bytes read, reads)."""
    root = tmp_path_factory.mktemp("headers")
    small = _noise(800, 600, 0)
    data = {
        "small.jpg": _save(small, "JPEG", quality=90),
        "small.png": _save(small, "PNG"),
        "small.webp": _save(small, "WEBP", quality=90),
        # orientation 6 behind a 20 KB EXIF block: stored 2000x1200, shown 1200x2000; SOF near byte 20,500
        "exif20k.jpg": _save(_noise(2000, 1200, 1), "JPEG", quality=90, exif=_exif(6, 20_000)),
        # SOF behind 40 KB of EXIF and 100 KB of ICC profile: past the cap, so the whole file is read
        "icc100k.jpg": _save(_noise(1500, 1100, 2), "JPEG", quality=90, exif=_exif(8, 40_000), icc_profile=b"\0" * 100_000),
    }
    for name, b in data.items():
        (root / name).write_bytes(b)
    return root


# name -> (bytes the header read takes, reads); `icc100k.jpg`: 8+8+16+32 KiB ranged, then the rest
EXPECTED = {"small.jpg": (FIRST, 1), "small.png": (FIRST, 1), "small.webp": (FIRST, 1),
            "exif20k.jpg": (4 * FIRST, 3), "icc100k.jpg": (None, 5)}
SHOWN = {"small.jpg": (800, 600, 1), "small.png": (800, 600, 1), "small.webp": (800, 600, 1),
         "exif20k.jpg": (1200, 2000, 6), "icc100k.jpg": (1100, 1500, 8)}


def _check(name: str, header: imaging.Header, got: bytes | None, received: int, data: bytes) -> None:
    assert (header.width, header.height, header.orientation) == SHOWN[name]
    assert header == imaging.probe(data)              # what a probe of the whole file says
    want = EXPECTED[name][0] or len(data)
    assert received == want, name
    assert got == (data if want == len(data) else None)


def test_http_header_reads_take_the_bytes_they_need(files):
    with serve(files) as web:
        async def read_all():
            session = HttpSession(FetchConfig(allow_private_networks=True), 64 << 20)
            try:
                out = {}
                for name in EXPECTED:
                    reader = HttpReader(session, f"{web.base}/img/{name}")
                    out[name] = (*await _read_header(reader, CAP), reader.received)
                    await reader.close()
                return out
            finally:
                await session.aclose()

        results = asyncio.run(read_all())
        log = web.requests()
    for name, (header, got, received) in results.items():
        data = (files / name).read_bytes()
        _check(name, header, got, received, data)
        served = [r for r in log if r["path"] == f"/img/{name}"]
        assert sum(r["sent"] for r in served) == received      # the server sent what the reader counted
        assert len(served) == EXPECTED[name][1]
    assert all(r["status"] == 206 for r in log)               # every stretch a ranged GET, none a re-read


def test_file_and_s3_and_tar_member_readers_size_their_reads_alike(files, s3_server):
    from curate.sources.s3 import S3Reader

    s3 = s3_server.client()
    s3.create_bucket(Bucket="headers")
    for name in EXPECTED:
        s3.put_object(Bucket="headers", Key=name, Body=(files / name).read_bytes())
    opts = S3Options(endpoint_url=s3_server.endpoint)
    for name in EXPECTED:
        data = (files / name).read_bytes()
        for reader in (LocalReader(files, files / name, 64 << 20), S3Reader(f"s3://headers/{name}", len(data), opts, 64 << 20)):
            header, got, = asyncio.run(_read_header(reader, CAP))
            _check(name, header, got, reader.received, data)
            asyncio.run(reader.close())
        header, got = asyncio.run(_read_header(MemoryReader(data, 64 << 20), CAP))   # bytes in hand: probed from the first ones
        assert header == imaging.probe(data) and got == (data if EXPECTED[name][0] is None else None)
