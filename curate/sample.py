"""`curate sample`: a deterministic synthetic corpus that exercises every rule of the pipeline.

It writes images (JPEG, PNG, WebP) with an alt-text sidecar `<stem>.txt` each, plus
`_corpus.json`, the ground truth tests check against: for every file its kind, its planted
duplicate group and the verdict the default job should reach.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

COLOURS = {
    "red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 200), "yellow": (230, 200, 40),
    "purple": (130, 50, 160), "orange": (240, 130, 30), "teal": (30, 150, 150), "grey": (128, 128, 128),
}
SHAPES = ["circle", "square", "triangle", "stripe"]
WORDS = ["HARBOR", "SUNRISE", "LANTERN", "MEADOW", "COBALT", "QUARTZ", "VELVET", "ORCHID"]


@dataclass
class Entry:
    name: str
    kind: str
    expect: str                      # "written" or "rejected:<reason>"
    width: int | None = None         # as displayed (after EXIF rotation)
    height: int | None = None
    group: str | None = None         # planted duplicate group
    is_4k: bool = False
    text: str | None = None          # words rendered into the image
    extra: dict = field(default_factory=dict)


def render(rng: np.random.Generator, width: int, height: int, words: str | None = None,
           layout: np.random.Generator | None = None) -> tuple[Image.Image, str]:
    """A distinct picture: gradient + low-frequency texture + shapes (+ text). Returns it and an alt text.

    `layout` (default: `rng`) draws the background; two pictures sharing it look alike but
    for their shapes.
    """
    names = list(COLOURS)
    layout = layout or rng
    c1, c2 = (np.array(COLOURS[n], dtype=np.float32) for n in layout.choice(names, 2, replace=False))
    angle = layout.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xs / width * np.cos(angle) + ys / height * np.sin(angle))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    base = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    coarse = Image.fromarray((layout.random((6, 6)) * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    base += (np.asarray(coarse, dtype=np.float32)[..., None] - 128) * 0.6
    base += rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    described = []
    for _ in range(int(rng.integers(2, 5))):
        colour = str(rng.choice(names))
        shape = str(rng.choice(SHAPES))
        cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
        r = rng.uniform(0.06, 0.22) * min(width, height)
        fill = COLOURS[colour]
        if shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif shape == "square":
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
        elif shape == "triangle":
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
        else:
            draw.rectangle([0, cy - r / 4, width, cy + r / 4], fill=fill)
        described.append(f"a {colour} {shape}")
    if words:
        font = ImageFont.load_default(size=max(12, min(width, height) // 8))
        draw.text((width * 0.08, height * 0.4), words, fill=(255, 255, 255), font=font, stroke_width=3, stroke_fill=(0, 0, 0))
    alt = "A synthetic picture of " + ", ".join(described) + " on a gradient"
    if words:
        alt += f' with the word "{words}"'
    return img, alt


class CorpusWriter:
    def __init__(self, out: Path, seed: int):
        self.out = out
        self.rng = np.random.default_rng(seed)
        self.entries: list[Entry] = []

    def save(self, img: Image.Image, entry: Entry, fmt: str = "JPEG", quality: int = 92, alt: str | None = None, exif: bytes | None = None) -> None:
        buf = io.BytesIO()
        kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
        if exif is not None:
            kwargs["exif"] = exif
        img.save(buf, fmt, **kwargs)
        self.write_bytes(entry, buf.getvalue(), alt)

    def write_bytes(self, entry: Entry, data: bytes, alt: str | None) -> None:
        (self.out / entry.name).write_bytes(data)
        if alt is not None:
            (self.out / (Path(entry.name).stem + ".txt")).write_text(alt + "\n")
        self.entries.append(entry)

    def picture(self, name: str, w: int, h: int, kind: str, expect: str, fmt: str = "JPEG", words: str | None = None, **kw) -> tuple[Image.Image, str]:
        img, alt = render(self.rng, w, h, words)
        is_4k = min(w, h) >= 2160 and max(w, h) >= 3840
        self.save(img, Entry(name, kind, expect, w, h, is_4k=is_4k, text=words, **kw), fmt, alt=alt)
        return img, alt


def make_corpus(out: str | Path, n: int = 12, seed: int = 0) -> list[Entry]:
    """Write the fixed catalogue of cases plus `n` ordinary random images into `out`."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    c = CorpusWriter(out, seed)
    ok = "written"
    # a ladder of sizes and ratios that pass the >=1K gate, in all three formats
    for i, (w, h, fmt) in enumerate([
        (1024, 1024, "JPEG"), (1280, 1024, "JPEG"), (1024, 1536, "JPEG"), (1920, 1080, "JPEG"),
        (1080, 1920, "JPEG"), (1536, 1024, "PNG"), (1200, 1600, "WEBP"),
        (4096, 1024, "JPEG"), (1024, 3072, "JPEG"), (3072, 1024, "JPEG"),
    ]):
        ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
        c.picture(f"ladder_{i:02d}_{w}x{h}.{ext}", w, h, "ladder", ok, fmt=fmt)
    # 4K
    for i, (w, h) in enumerate([(3840, 2160), (2160, 3840), (4096, 2731)]):
        c.picture(f"uhd_{i}_{w}x{h}.jpg", w, h, "4k", ok)
    # rendered text
    for i, word in enumerate(WORDS[:3]):
        c.picture(f"text_{i}.jpg", 1600, 1024, "text", ok, words=word)
    # too small, and too extreme an aspect ratio
    for i, (w, h) in enumerate([(256, 256), (640, 480), (800, 1200), (1023, 2000)]):
        c.picture(f"small_{i}_{w}x{h}.jpg", w, h, "small", "rejected:too_small")
    c.picture("extreme_5x1_5120x1024.jpg", 5120, 1024, "extreme", "rejected:extreme_aspect")
    # EXIF orientation 6: stored landscape 2048x1152, displayed portrait 1152x2048
    img, alt = render(c.rng, 1152, 2048)
    exif = Image.Exif()
    exif[0x0112] = 6
    c.save(img.transpose(Image.Transpose.ROTATE_90), Entry("exif_rot6.jpg", "exif", ok, 1152, 2048, extra={"stored": [2048, 1152]}), exif=exif.tobytes(), alt=alt)
    # near-duplicate groups: original + downscale, re-encode, crop, brightness
    for g in range(3):
        group = f"near{g}"
        img, alt = c.picture(f"{group}_orig.jpg", 2400, 1600, "near_dup", "dup", group=group)
        small = img.resize((1680, 1120), Image.LANCZOS)
        c.save(small, Entry(f"{group}_down.jpg", "near_dup", "dup", 1680, 1120, group=group), alt=alt)
        c.save(img, Entry(f"{group}_q35.jpg", "near_dup", "dup", 2400, 1600, group=group), quality=35, alt=alt)
        dx, dy = int(2400 * 0.04), int(1600 * 0.04)
        crop = img.crop((dx, dy, 2400 - dx, 1600 - dy))
        c.save(crop, Entry(f"{group}_crop.jpg", "near_dup", "dup", crop.width, crop.height, group=group), alt=alt)
        bright = ImageEnhance.Brightness(img).enhance(1.12)
        c.save(bright, Entry(f"{group}_bright.jpg", "near_dup", "dup", 2400, 1600, group=group), alt=alt)
    # look-alikes: same background and layout, different shapes: distinct images, kept apart
    for g in range(2):
        seed = int(c.rng.integers(0, 2**31))
        for v in "ab":
            img, alt = render(c.rng, 1600, 1200, layout=np.random.default_rng(seed))
            c.save(img, Entry(f"look{g}_{v}.jpg", "lookalike", ok, 1600, 1200), alt=alt)
    # exact duplicates: identical bytes under two other names
    first = c.entries[0]
    data = (out / first.name).read_bytes()
    for i in range(2):
        alt_text = (out / (Path(first.name).stem + ".txt")).read_text().strip()
        c.write_bytes(Entry(f"copy_{i}_of_{first.name}", "exact_dup", "dup", first.width, first.height, group="exact0"), data, alt_text)
    first.group, first.expect = "exact0", "dup"
    # broken files
    good = io.BytesIO()
    render(c.rng, 1600, 1200)[0].save(good, "JPEG", quality=90)
    c.write_bytes(Entry("broken_truncated.jpg", "broken", "rejected:decode_error"), good.getvalue()[: len(good.getvalue()) // 2], "a cut-off file")
    c.write_bytes(Entry("broken_empty.jpg", "broken", "rejected:empty_file"), b"", None)
    c.write_bytes(Entry("broken_text.jpg", "broken", "rejected:not_an_image"), b"this is not an image, just text named .jpg\n", None)
    # ordinary images
    for i in range(n):
        w = int(c.rng.choice([1024, 1280, 1536, 2048]))
        h = int(c.rng.choice([1024, 1152, 1344, 1536]))
        c.picture(f"plain_{i:03d}_{w}x{h}.jpg", w, h, "plain", ok)
    manifest = {"seed": seed, "n": n, "files": [e.__dict__ for e in c.entries]}
    (out / "_corpus.json").write_text(json.dumps(manifest, indent=1))
    return c.entries
