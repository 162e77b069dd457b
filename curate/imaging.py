"""Image bytes -> header facts -> one working-size decode -> hashes.

The ingest phase calls `probe` on every input (header only: cheap, no pixel decode) and
`decode_working` once for those that pass the gate; every later ingest stage (hashes, and
quality or embedding stages) uses that one decoded image.
"""

from __future__ import annotations

import functools
import hashlib
import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from filters.quality import jpeg_quality
from filters.windows import window_hashes
from schemas.reasons import InputError, Reason

FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
ORIENTATION_TAG = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}

# Pillow's own bomb check would raise inside open(); we apply the job's limit ourselves.
Image.MAX_IMAGE_PIXELS = None


@dataclass
class Decodes:
    """Pixel decodes of one input, counted by the functions that decode (ingest reports them
    per input and the manifest sums them: each image passing the gate should cost exactly one)."""

    count: int = 0


@dataclass(frozen=True)
class Header:
    format: str          # "jpg" | "png" | "webp"
    width: int           # displayed, after EXIF orientation
    height: int
    orientation: int     # EXIF orientation tag, 1 when absent
    jpeg_quality: int | None = None

    @property
    def rotated(self) -> bool:
        return self.orientation in _SWAPS_AXES


# JPEG files Pillow names otherwise: MPO (a camera's multi-picture JPEG: the first image is
# a plain baseline JPEG, the rest ride in APP2 and after it)
_CAMERA_JPEG = {"MPO": "JPEG"}
_MAGIC = [(b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png")]
_OTHER_IMAGES = [b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x01\x00", b"8BPS"]


def sniff(head: bytes) -> str:
    """Format by magic bytes (never by name or Content-Type): 'jpg' | 'png' | 'webp', or raise."""
    if not head:
        raise InputError(Reason.EMPTY_FILE, "zero bytes")
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if any(head.startswith(m) for m in _OTHER_IMAGES) or head[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        raise InputError(Reason.UNSUPPORTED_FORMAT, f"image format with magic {head[:12]!r} is not JPEG, PNG or WebP")
    raise InputError(Reason.NOT_AN_IMAGE, f"unrecognised bytes starting {head[:16]!r}")


# Bytes read first for the header probe: the SOF of a typical JPEG, a PNG's IHDR, a WebP's
# VP8/VP8L/VP8X header lie in the first few hundred bytes; a big EXIF/ICC block before a JPEG's
# SOF makes the probe ask for more (doubling up to `fetch.header_bytes`, then the whole file).
FIRST_HEADER_BYTES = 8192


def probe(data: bytes, partial: bool = False) -> Header:
    """Format, EXIF-corrected size and orientation from the header, without decoding pixels.

    `partial`: `data` is only the first bytes of the file. Pillow reads a WebP whole, so a
    partial WebP is read from its RIFF header here (see `_webp_header`)."""
    if not data:
        raise InputError(Reason.EMPTY_FILE, "zero bytes")
    if partial and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_header(data)
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = _CAMERA_JPEG.get(img.format, img.format)
            w, h = img.size
            orientation = _orientation(img)
            quality = jpeg_quality(getattr(img, "quantization", None)) if fmt == "JPEG" else None
    except UnidentifiedImageError:
        raise InputError(Reason.NOT_AN_IMAGE, f"unrecognised bytes starting {data[:8]!r}") from None
    except Exception as exc:  # corrupt headers raise many types inside Pillow's plugins
        raise InputError(Reason.NOT_AN_IMAGE, f"unreadable header: {exc}") from None
    if fmt not in FORMATS:
        raise InputError(Reason.UNSUPPORTED_FORMAT, f"format {fmt}")
    if orientation in _SWAPS_AXES:
        w, h = h, w
    return Header(FORMATS[fmt], w, h, orientation, quality)


def _webp_header(head: bytes) -> Header:
    """Size of a WebP from its first chunk (RFC 9649): VP8X canvas, VP8 frame header or VP8L
    header. A VP8X file that flags EXIF keeps its EXIF (and orientation) after the pixels, so
    it raises InputError and the caller reads the whole file, as for any incomplete header."""
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30 and not head[20] & 0x08:
        w, h = 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    elif chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        w, h = int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    elif chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        w, h = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    else:
        raise InputError(Reason.NOT_AN_IMAGE, "WebP header incomplete or not readable from the first bytes")
    return Header("webp", w, h, 1)


def _orientation(img: Image.Image) -> int:
    """EXIF orientation from the EXIF block read with the header.

    Not `img.getexif()`: for PNG that decodes the whole image looking for a trailing chunk.
    """
    raw = img.info.get("exif")
    if not raw:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw)
        value = int(exif.get(ORIENTATION_TAG, 1))
    except Exception:
        return 1
    return value if value in range(1, 9) else 1


def decode_working(data: bytes, side: int, decodes: Decodes | None = None) -> Image.Image:
    """Decode once at working size: long side <= `side`, short side >= `side // 2` where the
    source is that large; EXIF-rotated, RGB.

    JPEG uses DCT scaling (libjpeg-turbo through simplejpeg, or Pillow's draft for the JPEGs
    `_jpeg_scaled` leaves to it: a 4K image decodes straight at 1/8 size, never in full), other
    formats decode then reduce. Raises InputError('decode_error') on truncated
    or corrupt pixel data. Counts one decode in `decodes` once the pixels are being read (a
    decode that fails part-way counts too: its work was done).
    """
    with _decoding(data, decodes) as img:
        pixels = _jpeg_scaled(img, data, (side // 2, side // 2))
        if pixels is not None:
            working = Image.fromarray(pixels)
            working.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return _upright(working, _orientation(img))
        if img.format == "JPEG":
            img.draft("RGB", (side // 2, side // 2))
        img.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return rgb8(ImageOps.exif_transpose(img))


@contextmanager
def _decoding(data: bytes, decodes: Decodes | None) -> Iterator[Image.Image]:
    """The opened image for one pixel decode: Pillow's warnings off, the decode counted in
    `decodes`, and any failure (truncated or corrupt pixel data) raised as InputError('decode_error')."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            if decodes is not None:
                decodes.count += 1
            yield img
    except Exception as exc:
        raise InputError(Reason.DECODE_ERROR, f"pixel data unreadable: {exc}") from None


def decode_for_model(data: bytes, side: int, decodes: Decodes | None = None) -> Image.Image:
    """The upright RGB picture with its long side at most `side`, as a model's input (the
    captioners' CPU feed). A YCbCr or grey JPEG decodes in libjpeg-turbo (simplejpeg) through DCT
    scaling at the smallest 1/2, 1/4 or 1/8 size still covering the target, straight into one
    array; other images decode in Pillow and are box-reduced to within 2x of it. The last step,
    under 2x, is a bilinear resize in OpenCV (several times Pillow's speed here); the EXIF
    orientation is applied last, to the small image.
    A 3840x2160 JPEG to 1344 px: bench/ingest. Raises InputError('decode_error')."""
    with _decoding(data, decodes) as opened:
        target = fit_within(*opened.size, side)     # as stored; the orientation turns it at the end
        pixels = _jpeg_scaled(opened, data, target)
        if pixels is not None:
            # rebinding frees the decoded array before Pillow allocates its copy, which then reuses
            # its pages: held to the end, every image paid fresh pages (~5 ms of 23 at 4K -> 1344)
            pixels = _fitted(pixels, target)
            img = Image.fromarray(pixels)
        else:
            if opened.format == "JPEG":
                opened.draft("RGB", target)
            opened.load()
            img = rgb8(opened)
            factor = min(img.width // target[0], img.height // target[1])
            if factor >= 2:
                img = img.reduce(factor)
            if img.size != target:
                img = Image.fromarray(_fitted(np.asarray(img), target))
        return _upright(img, _orientation(opened))


def _jpeg_scaled(opened: Image.Image, data: bytes, target: tuple[int, int]) -> np.ndarray | None:
    """RGB pixels of a YCbCr or grey JPEG decoded in libjpeg-turbo at the largest 1/2^k (k <= 3)
    DCT scale still covering `target`; None for other images, and for a JPEG libjpeg-turbo warns
    about (simplejpeg's strict mode), which then goes to Pillow: Pillow refuses truncated data as
    strict mode does, but accepts stray bytes between segments, as common web JPEGs need.

    Powers of two only, as Pillow's draft: libjpeg-turbo's SIMD IDCTs are the 8, 4, 2 and 1
    point ones, so its 3/8 scale, nearer 1344 px for a 4K image, decodes slower (23.5 ms vs 20.5
    at 1/2 for a 4K JPEG: bench/RESULTS.md, sixth session)."""
    if opened.format != "JPEG" or opened.mode not in _TURBO_MODES:
        return None
    import simplejpeg

    (width, height), scale = opened.size, 1
    while scale < 8 and width // (scale * 2) >= target[0] and height // (scale * 2) >= target[1]:
        scale *= 2
    try:
        return simplejpeg.decode_jpeg(data, "RGB", min_width=-(-width // scale), min_height=-(-height // scale))
    except ValueError:
        return None


def _fitted(pixels: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    if pixels.shape[1::-1] == target:
        return pixels
    return _cv2().resize(pixels, target, interpolation=_cv2().INTER_LINEAR)


# JPEGs libjpeg-turbo's RGB output takes as they are (YCbCr, RGB, grey); CMYK and YCCK go through Pillow
_TURBO_MODES = ("RGB", "L")

def _upright(img: Image.Image, orientation: int) -> Image.Image:
    """`img`, decoded as stored, turned as its EXIF orientation says (ImageOps.exif_transpose's turns)."""
    return img.transpose(_TURNS[orientation]) if orientation in _TURNS else img


# EXIF orientation -> the turn that shows the picture upright (as ImageOps.exif_transpose does)
_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_90}


@functools.cache
def _cv2():
    import cv2

    cv2.setNumThreads(1)   # one CPU per Ray task: no thread pool of its own
    return cv2


ENCODERS = {ext: fmt for fmt, ext in FORMATS.items()}

# Stored forms of a member image (the index's `stored_as`)
ORIGINAL, LOSSLESS, REENCODED = "original", "lossless_transform", "reencoded"
# jpegtran switches that apply each EXIF orientation (jpegtran rotates clockwise)
_JPEGTRAN = {2: ["-flip", "horizontal"], 3: ["-rotate", "180"], 4: ["-flip", "vertical"], 5: ["-transpose"],
             6: ["-rotate", "90"], 7: ["-transverse"], 8: ["-rotate", "270"]}


def fit_within(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled down so the longer side is at most `max_side`."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def for_training(data: bytes, size: tuple[int, int], fmt: str | None, quality: int) -> tuple[bytes, str]:
    """The bytes a trainer should get: pixels stored upright (no EXIF orientation left to apply),
    `size` (the upright size, or smaller for max_side), 8-bit RGB, in `fmt` (None: the source's).

    Returns (bytes, how): the original bytes when they already are all that; a lossless JPEG
    transform (jpegtran -perfect) when only the EXIF orientation is wrong; else a re-encode.
    """
    with Image.open(io.BytesIO(data)) as img:
        src, mode, orientation = FORMATS[_CAMERA_JPEG.get(img.format, img.format)], img.mode, _orientation(img)
        upright = img.size[::-1] if orientation in _SWAPS_AXES else img.size
    fmt = fmt or src
    same_pixels = tuple(size) == tuple(upright) and fmt == src and mode == "RGB"
    if same_pixels and orientation == 1:
        return data, ORIGINAL
    if same_pixels and fmt == "jpg":
        rotated = jpegtran(data, orientation)
        if rotated is not None:
            return rotated, LOSSLESS
    return reencode(data, size, fmt, quality), REENCODED


def jpegtran(data: bytes, orientation: int) -> bytes | None:
    """`data` (a JPEG) turned upright without re-encoding, its EXIF dropped (ICC kept); None when
    jpegtran is not installed or the transform is not exact for this image (partial edge blocks)."""
    import subprocess

    exe = _jpegtran_path()
    if exe is None or orientation not in _JPEGTRAN:
        return None
    try:
        done = subprocess.run([exe, "-perfect", "-copy", "icc", *_JPEGTRAN[orientation]], input=data,
                              capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 and done.stdout else None


@functools.cache
def _jpegtran_path() -> str | None:
    import shutil

    return shutil.which("jpegtran")


def reencode(data: bytes, size: tuple[int, int], fmt: str, quality: int) -> bytes:
    """The image upright (EXIF orientation applied, then dropped), 8-bit RGB, resized to `size`
    with Lanczos when it differs, encoded as `fmt`.
    A JPEG that is only turned keeps its quantisation tables and subsampling. Deterministic bytes."""
    with Image.open(io.BytesIO(data)) as src:
        tables = _jpeg_tables(src) if _CAMERA_JPEG.get(src.format, src.format) == "JPEG" else None
        icc = src.info.get("icc_profile") if src.mode != "CMYK" else None
        img = rgb8(ImageOps.exif_transpose(src))
    if img.size != tuple(size):
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        tables = None
    options: dict = {"icc_profile": icc} if icc else {}
    if fmt == "jpg":
        options |= tables or {"quality": quality, "subsampling": 0 if quality >= 90 else 2}
    elif fmt == "webp":
        options |= {"quality": quality, "method": 4}
    buf = io.BytesIO()
    img.save(buf, ENCODERS[fmt], **options)
    return buf.getvalue()


def _jpeg_tables(img: Image.Image) -> dict | None:
    from PIL import JpegImagePlugin

    if img.mode != "RGB" or not getattr(img, "quantization", None):
        return None
    return {"qtables": img.quantization, "subsampling": JpegImagePlugin.get_sampling(img)}


def rgb8(img: Image.Image) -> Image.Image:
    """8-bit RGB, what every trainer batches: 16-bit grey keeps its top 8 bits (not clipped),
    transparency is composited on white, grey/palette/CMYK are converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = Image.fromarray((np.asarray(img, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La"):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return img if img.mode == "RGB" else img.convert("RGB")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def phash64(img: Image.Image) -> int:
    return _bits_to_int(imagehash.phash(img).hash)


def dhash64(img: Image.Image) -> int:
    return _bits_to_int(imagehash.dhash(img).hash)


def _bits_to_int(bits: np.ndarray) -> int:
    return int("".join("1" if b else "0" for b in bits.flatten()), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def content_box(img: Image.Image, tol: float = 8.0) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the picture inside uniform borders (letterbox bars, frames).

    A band is border while each line is flat (std <= tol) and matches the first line's level;
    a border that would take half the image or more is not trimmed (the picture is flat).
    """
    grey = np.asarray(img.convert("L"), dtype=np.float32)
    h, w = grey.shape

    def band(lines: np.ndarray) -> int:
        flat = (lines.std(axis=1) <= tol) & (np.abs(lines.mean(axis=1) - lines[0].mean()) <= tol)
        return int(np.argmin(flat)) if not flat.all() else len(lines)

    top, bottom, left, right = band(grey), band(grey[::-1]), band(grey.T), band(grey.T[::-1])
    if top + bottom >= h // 2 or left + right >= w // 2:
        return 0, 0, w, h
    return left, top, w - right, h - bottom


def phash_long(img: Image.Image) -> bytes:
    """A 256-bit perceptual hash (32 bytes): the signs of the 16 x 16 lowest-frequency DCT
    coefficients of a 64 x 64 grey picture (the DC bit is always 0).

    Four times the detail of the 64-bit pHash: it tells apart different pictures on one
    background, which the 64-bit hashes see as the same. Signs (not "above the median") make the
    mirror image's hash a fixed bit flip (`filters.mih.LONG_MIRROR`), so it needs no column.
    """
    from scipy.fft import dctn

    grey = np.asarray(img.convert("L").resize((64, 64), Image.Resampling.LANCZOS), dtype=np.float32)
    bits = dctn(grey, type=2)[:16, :16] > 0
    bits[0, 0] = False
    return np.packbits(bits).tobytes()


def content_hashes(data: bytes, img: Image.Image) -> dict:
    """Every hash ingest stores for an image: sha256 of its bytes, pHash and dHash of its
    working-size decode `img`, and the border-trimmed / mirrored / 256-bit ones (`dedup_hashes`).
    Every hash reads grey levels, so the picture turns grey once (conversion commutes with crop
    and mirror: the values are the same)."""
    grey = img.convert("L")
    whole = {"phash": phash64(grey), "dhash": dhash64(grey)}
    return {"sha256": sha256(data), **whole, **dedup_hashes(grey, whole)}


def dedup_hashes(img: Image.Image, whole: dict | None = None) -> dict[str, int | bytes]:
    """pHash and dHash of the picture with its borders trimmed, as shown and mirrored left-right,
    its 256-bit pHash, a 16 x 16 grey thumbnail (tells a local change from another picture), and
    its window hashes (`filters.windows`: crops and small turns).

    Dedup compares these: an added border or letterbox leaves them unchanged, and a mirrored
    copy's hashes match the original's mirrored ones. `whole`: the untrimmed picture's phash and
    dhash, reused when it has no border (most photographs) instead of hashing the same pixels twice.
    """
    box = content_box(img)
    core = img.crop(box)
    if whole is None or box != (0, 0, img.width, img.height):
        whole = {"phash": phash64(core), "dhash": dhash64(core)}
    mirror = ImageOps.mirror(core)
    return {"phash_core": whole["phash"], "dhash_core": whole["dhash"],
            "phash_mirror": phash64(mirror), "dhash_mirror": dhash64(mirror), "phash_long": phash_long(core),
            "thumb": core.convert("L").resize((16, 16), Image.Resampling.BOX).tobytes(), "windows": window_hashes(img)}
