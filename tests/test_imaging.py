"""Header probe, EXIF orientation, working-size decode and the resolution gate."""

import functools
import io

import numpy as np
import pytest
import simplejpeg
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


def test_hashes_read_one_grey_copy_and_equal_each_hash_of_the_colour_picture():
    """content_hashes turns the picture grey once and reuses a borderless picture's own hashes as
    its core's: the values are those each hash function gives on the colour picture."""
    from PIL import ImageOps

    from filters.windows import window_hashes

    photo = imaging.decode_working(jpeg(1600, 1200), 512)
    framed = ImageOps.expand(photo, border=(24, 40, 24, 40), fill=(0, 0, 0))
    for img in (photo, framed):
        core = img.crop(imaging.content_box(img))
        mirror = ImageOps.mirror(core)
        assert imaging.content_hashes(b"x", img) == {
            "sha256": imaging.sha256(b"x"), "phash": imaging.phash64(img), "dhash": imaging.dhash64(img),
            "phash_core": imaging.phash64(core), "dhash_core": imaging.dhash64(core),
            "phash_mirror": imaging.phash64(mirror), "dhash_mirror": imaging.dhash64(mirror),
            "phash_long": imaging.phash_long(core), "thumb": core.convert("L").resize((16, 16), Image.Resampling.BOX).tobytes(),
            "windows": window_hashes(img)}
    assert imaging.content_box(framed) != (0, 0, *framed.size)   # the framed one takes the other path


@functools.cache
def _upright_4k() -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray((rng.random((34, 60, 3)) * 255).astype(np.uint8)).resize((3840, 2160), Image.BICUBIC)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_model_decode_turns_every_exif_orientation_upright(orientation):
    """The captioners' feed: the stored pixels decoded (DCT-scaled) and resized exactly as for an
    image without EXIF, then turned as the tag says; the result matches the upright picture."""
    upright = _upright_4k()
    turn = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_270}[orientation]   # what a camera stores for each tag
    stored = upright.transpose(turn) if turn is not None else upright
    plain, tagged = (io.BytesIO(), io.BytesIO())
    stored.save(plain, "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tagged, "JPEG", quality=90, exif=exif.tobytes())
    got = imaging.decode_for_model(tagged.getvalue(), 1344)
    assert got.size == (1344, 756) and got.mode == "RGB"
    undo = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}.get(orientation)
    same_pixels = imaging.decode_for_model(plain.getvalue(), 1344)
    assert got.tobytes() == (same_pixels.transpose(undo) if undo is not None else same_pixels).tobytes()
    reference = upright.resize((1344, 756), Image.BILINEAR)   # the upright picture: only JPEG and resampling noise apart
    assert np.abs(np.asarray(got, np.int16) - np.asarray(reference, np.int16)).mean() < 3
    assert np.abs(np.asarray(got.transpose(Image.Transpose.ROTATE_180), np.int16) - np.asarray(reference, np.int16)).mean() > 20


def test_model_decode_of_other_formats_and_small_images():
    rng = np.random.default_rng(4)
    big = Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).resize((2800, 2100), Image.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "PNG", compress_level=1)
    got = imaging.decode_for_model(buf.getvalue(), 1344)   # box-reduced 2x, then resized
    assert got.size == (1344, 1008)
    assert np.abs(np.asarray(got, np.int16) - np.asarray(big.resize((1344, 1008), Image.BILINEAR), np.int16)).mean() < 3
    small = jpeg(800, 600)
    assert imaging.decode_for_model(small, 1344).size == (800, 600)    # never enlarged
    with pytest.raises(InputError) as exc:
        imaging.decode_for_model(small[: len(small) // 2], 1344)
    assert exc.value.reason == "decode_error"


@pytest.mark.parametrize("mode,save", [("RGB", {"subsampling": 2}), ("RGB", {"subsampling": 0}), ("L", {}),
                                       ("RGB", {"progressive": True}), ("RGB", {"keep_rgb": True})])
def test_model_decode_in_libjpeg_turbo_gives_pillows_pixels(mode, save):
    """The caption feed decodes YCbCr, RGB (Adobe) and grey JPEGs, baseline or progressive, in
    simplejpeg (one array, no Pillow copy): the pixels are exactly what Pillow's draft decode and
    the same resize give, at every DCT scale."""
    import cv2

    rng = np.random.default_rng(7)
    picture = Image.fromarray((rng.random((40, 60, 3)) * 255).astype(np.uint8)).resize((3000, 2000), Image.BICUBIC)
    buf = io.BytesIO()
    picture.convert(mode).save(buf, "JPEG", quality=90, **save)
    assert imaging._jpeg_scaled(Image.open(buf), buf.getvalue(), (64, 43)) is not None   # not left to Pillow
    for side, size in [(5000, (3000, 2000)), (1344, (1344, 896)), (600, (600, 400)), (64, (64, 43))]:
        pillow = Image.open(io.BytesIO(buf.getvalue()))
        pillow.draft("RGB", size)
        expected = np.asarray(pillow.convert("RGB"))
        if expected.shape[1::-1] != size:
            expected = cv2.resize(expected, size, interpolation=cv2.INTER_LINEAR)
        got = imaging.decode_for_model(buf.getvalue(), side)
        assert got.mode == "RGB" and got.size == size
        assert np.array_equal(np.asarray(got), expected), side


def test_jpegs_libjpeg_turbo_warns_about_decode_as_pillow_decides():
    """Stray bytes between segments (common in web JPEGs) make simplejpeg's strict mode raise;
    Pillow accepts them, so those files decode in Pillow, to the same pixels as before. Truncated
    files are refused either way."""
    clean = jpeg(1600, 1200)
    app0_end = 4 + int.from_bytes(clean[4:6], "big")    # SOI, then APP0's marker and length
    stray = clean[:app0_end] + b"\x00\x00\x00" + clean[app0_end:]
    with pytest.raises(ValueError, match="extraneous bytes"):
        simplejpeg.decode_jpeg(stray, "RGB")
    for decode, side in [(imaging.decode_working, 512), (imaging.decode_for_model, 400)]:
        assert np.array_equal(np.asarray(decode(stray, side)), np.asarray(decode(clean, side)))
        for cut in (clean[:-2], clean[: len(clean) // 2]):
            with pytest.raises(InputError) as exc:
                decode(cut, side)
            assert exc.value.reason == "decode_error"
