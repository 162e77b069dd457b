"""A regression corpus unlike the demo sample: real photographs from scikit-image's package data
(pictures no one here drew), folders without sidecars, one format only, every EXIF orientation
on JPEG and WebP, and the pixel modes cameras and tools write (grey, CMYK, 16-bit, palette,
alpha). Each file's upright picture is kept, so tests compare what a reader gets exactly.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# EXIF orientation -> the transpose that stores an upright picture so that applying the
# orientation (ImageOps.exif_transpose) gives it back
_STORE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
          5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_270}
_COLOUR = ["astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket"]
# an EXIF-rotated JPEG in whole blocks is turned losslessly where jpegtran is installed
TURNED = "lossless_transform" if shutil.which("jpegtran") else "reencoded"
_GREY = ["camera", "moon", "brick", "coins", "clock", "cell", "grass", "gravel", "text"]


@dataclass
class Case:
    folder: str
    name: str
    upright: Image.Image          # what a trainer must see (RGB or L), at the file's upright size
    format: str                   # the input's format: jpg | png | webp
    stored_as: str                # what the shard must hold: original | lossless_transform | reencoded
    alt: str | None = None        # the sidecar text, when the file has one
    orientation: int = 1


def photos() -> list[Image.Image]:
    """Distinct real pictures (RGB): whole colour photos and their quadrants, whole grey photos."""
    import skimage.data

    out = []
    for name in _COLOUR:
        img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        w, h = img.size
        out.append(img)
        out += [img.crop((x, y, x + w // 2, y + h // 2)) for x in (0, w // 2) for y in (0, h // 2)]
    out += [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in _GREY]
    return out


def _sized(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img.resize(size, Image.Resampling.BICUBIC)


def _encode(img: Image.Image, fmt: str, orientation: int = 1, **options) -> bytes:
    buf = io.BytesIO()
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    img.save(buf, {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt], **options)
    return buf.getvalue()


def build(root: Path) -> list[Case]:
    """Write the corpus under `root` (one folder per source) and return its cases."""
    pictures = iter(photos())
    cases: list[Case] = []

    def add(folder: str, name: str, upright: Image.Image, data: bytes, fmt: str, stored_as: str, alt: str | None = None,
            orientation: int = 1) -> None:
        path = root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if alt is not None:
            path.with_suffix(".txt").write_text(alt, encoding="utf-8")
        cases.append(Case(folder, name, upright, fmt, stored_as, alt, orientation))

    def upright_jpeg(img: Image.Image, **options) -> Image.Image:
        """The picture as a JPEG decoder returns it (what 'original' bytes show)."""
        return Image.open(io.BytesIO(_encode(img, "jpg", **options)))

    # no sidecars at all; JPEG, PNG and WebP mixed
    for i, (fmt, size) in enumerate([("jpg", (1024, 1024)), ("png", (1024, 1536)), ("webp", (1536, 1024)), ("jpg", (1280, 1024)),
                                     ("png", (1024, 1280)), ("webp", (1024, 1024)), ("jpg", (1088, 1920)), ("jpg", (1920, 1088))]):
        img = _sized(next(pictures), size)
        data = _encode(img, fmt, quality=92)
        shown = upright_jpeg(img, quality=92) if fmt == "jpg" else img
        add("plain", f"photo {i}.{fmt}", shown, data, fmt, "original" if fmt == "jpg" else "reencoded")
    # one format only (WebP), no sidecars
    for i in range(4):
        img = _sized(next(pictures), (1024 + 64 * i, 1024))
        add("webp_only", f"w{i}.webp", img, _encode(img, "webp", quality=90), "webp", "reencoded")
    # every EXIF orientation, on JPEG (sizes in whole 16 px blocks: jpegtran turns them losslessly) and WebP
    for o in range(2, 9):
        for fmt in ("jpg", "webp"):
            img = _sized(next(pictures), (1024, 1344))
            stored = img.transpose(_STORE[o])
            data = _encode(stored, fmt, o, quality=93)
            shown = ImageOps.exif_transpose(Image.open(io.BytesIO(data))) if fmt == "jpg" else img
            add("exif", f"o{o}.{fmt}", shown, data, fmt, TURNED if fmt == "jpg" else "reencoded", orientation=o)
    # a rotated JPEG whose edges are partial blocks: no exact lossless turn, so a re-encode
    img = _sized(next(pictures), (1030, 1366))
    data = _encode(img.transpose(_STORE[6]), "jpg", 6, quality=93)
    add("exif", "o6 odd.jpg", ImageOps.exif_transpose(Image.open(io.BytesIO(data))), data, "jpg", "reencoded", orientation=6)
    # pixel modes
    grey = _sized(next(pictures).convert("L"), (1024, 1088))
    add("modes", "grey.jpg", upright_jpeg(grey, quality=90), _encode(grey, "jpg", quality=90), "jpg", "reencoded")
    rgb = _sized(next(pictures), (1088, 1024))
    cmyk = rgb.convert("CMYK")
    add("modes", "cmyk.jpg", Image.open(io.BytesIO(_encode(cmyk, "jpg", quality=95))).convert("RGB"),
        _encode(cmyk, "jpg", quality=95), "jpg", "reencoded")
    deep = _sized(next(pictures).convert("L"), (1024, 1152))
    sixteen = Image.fromarray(np.asarray(deep, np.uint16) * 257)   # 16-bit grey, top byte = the 8-bit picture
    add("modes", "sixteen.png", deep, _encode(sixteen, "png"), "png", "reencoded")
    pal = _sized(next(pictures), (1152, 1024)).quantize(64)
    add("modes", "palette.png", pal.convert("RGB"), _encode(pal, "png"), "png", "reencoded")
    rgba = _sized(next(pictures), (1024, 1216)).convert("RGBA")
    alpha = np.asarray(rgba).copy()
    alpha[:, : rgba.width // 3, 3] = 0                          # a transparent band: composited on white
    rgba = Image.fromarray(alpha, "RGBA")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    add("modes", "alpha.png", flat, _encode(rgba, "png"), "png", "reencoded")
    # sidecars for every image; then some with and some without (one unit holds none)
    for i in range(4):
        img = _sized(next(pictures), (1024, 1024 + 64 * i))
        add("sidecars", f"s{i}.jpg", upright_jpeg(img, quality=90), _encode(img, "jpg", quality=90), "jpg", "original",
            alt=f"Sidecar text {i}: ünïcode and \"quotes\"")
    for i in range(6):
        img = _sized(next(pictures), (1024 + 64 * i, 1024))
        add("mixed", f"m{i}.jpg", upright_jpeg(img, quality=90), _encode(img, "jpg", quality=90), "jpg", "original",
            alt=f"alt {i}" if i in (1, 4) else None)
    return cases


def folders(cases: list[Case]) -> list[str]:
    return sorted({c.folder for c in cases})


def orientation_error(member: Image.Image, upright: Image.Image) -> tuple[float, float]:
    """(mean abs difference to the upright picture, smallest to any other orientation of it), on
    small grey copies: the first must be small and well below the second."""
    def small(img: Image.Image) -> np.ndarray:
        return np.asarray(img.convert("L").resize((64, 64), Image.Resampling.BOX), np.float32)

    got = small(member)
    right = float(np.abs(got - small(upright)).mean())
    wrong = min(float(np.abs(got - small(upright.transpose(t).resize(upright.size))).mean()) for t in _STORE.values())
    return right, wrong
