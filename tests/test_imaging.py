"""Header probe, EXIF orientation, working-size decode and the resolution gate."""

import io

import numpy as np
import pytest
from PIL import Image

from curate import imaging
from filters.resolution import is_4k, resolution_verdict
from schemas.job import ResolutionConfig
from schemas.reasons import InputError


def jpeg(w: int, h: int, orientation: int | None = None, quality: int = 90) -> bytes:
    rng = np.random.default_rng(w * h)
    img = Image.fromarray((rng.random((h // 8 + 1, w // 8 + 1, 3)) * 255).astype(np.uint8)).resize((w, h))
    buf = io.BytesIO()
    kwargs = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    img.save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


def test_exif_rotated_4k_photo_is_measured_as_portrait():
    data = jpeg(3840, 2160, orientation=6)
    head = imaging.probe(data)
    assert (head.width, head.height, head.rotated) == (2160, 3840, True)
    img = imaging.decode_working(data, 512)
    assert img.height > img.width and max(img.size) <= 512
    assert is_4k(head.width, head.height, ResolutionConfig())


def test_draft_decode_never_decodes_full_size():
    data = jpeg(4096, 2731)
    decodes = imaging.Decodes()
    img = imaging.decode_working(data, 512, decodes)
    assert max(img.size) == 512 and decodes.count == 1


@pytest.mark.parametrize("data, reason", [
    (b"", "empty_file"), (b"hello, I am text", "not_an_image"), (b"\xff\xd8\xff\xe0garbage", "not_an_image"),
])
def test_probe_rejects_with_reason(data, reason):
    with pytest.raises(InputError) as exc:
        imaging.probe(data)
    assert exc.value.reason == reason


def test_truncated_jpeg_probes_but_fails_decode():
    data = jpeg(1600, 1200)
    cut = data[: len(data) // 2]
    assert imaging.probe(cut).width == 1600
    decodes = imaging.Decodes()
    with pytest.raises(InputError) as exc:
        imaging.decode_working(cut, 512, decodes)
    assert exc.value.reason == "decode_error" and decodes.count == 1   # the failed decode did its work
    with pytest.raises(InputError):
        imaging.decode_working(b"not an image", 512, decodes)
    assert decodes.count == 1   # nothing to decode: not counted


def test_gif_is_an_unsupported_format():
    buf = io.BytesIO()
    Image.new("RGB", (2000, 2000)).save(buf, "GIF")
    with pytest.raises(InputError) as exc:
        imaging.probe(buf.getvalue())
    assert exc.value.reason == "unsupported_format"


def test_resolution_gate_reasons():
    rule = ResolutionConfig(min_side=1024, min_pixels=1_200_000, max_aspect=4.5)
    assert resolution_verdict(1023, 4000, rule)[0] == "too_small"
    assert resolution_verdict(1024, 1100, rule)[0] == "too_few_pixels"
    assert resolution_verdict(1024, 4700, rule)[0] == "extreme_aspect"
    assert resolution_verdict(1024, 4608, rule) is None
    assert not is_4k(3839, 2160, rule) and is_4k(2160, 3840, rule)


def test_phash_survives_reencode_and_separates_different_images():
    a = jpeg(2000, 1500)
    b = jpeg(1999, 1500)  # different random content (seeded by size)
    re = io.BytesIO()
    Image.open(io.BytesIO(a)).save(re, "JPEG", quality=30)
    ha, hre, hb = (imaging.phash64(imaging.decode_working(d, 512)) for d in (a, re.getvalue(), b))
    assert imaging.hamming(ha, hre) <= 4
    assert imaging.hamming(ha, hb) > 10
