"""OCR check of claimed text on generated images: 40 images (words in varied sizes, positions,
colours and backgrounds; some 4K, some without text), captions quoting the right word for half
of the text images and a wrong dictionary word for the other half, plus captions that claim
nothing. Precision and recall of flagging wrong claims (flag = claim not found by OCR), and
OCR milliseconds per image, with the 4K ones also read at full size as the baseline for the
downscale. Fixed seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from curate.hallucination.claims import text_claims
from curate.hallucination.ocr import OcrReader
from curate.hallucination.textmatch import judge


def claims_found(claims, lines) -> list[bool]:
    """Not flagged: found, or unsure (only a confident mismatch is a flag)."""
    return [judge(c.text, lines).outcome != "not_found" for c in claims]

WORDS = ["BAKERY", "PHARMACY", "LIBRARY", "MUSEUM", "STATION", "GARDEN", "HARBOUR", "MARKET",
         "THEATRE", "COFFEE", "Welcome", "Parking", "Hotel", "Pizza", "Bookshop", "Fresh Bread",
         "City Hall", "Open Daily", "Flower Shop", "Ice Cream", "Exit", "Bicycle", "Laundry",
         "Gallery", "Bistro", "Tickets", "Harvest", "Sunrise", "Dental Clinic", "Post Office"]
CLAIM_TEMPLATES = [
    'A storefront with a sign that reads "{w}" above the entrance.',
    "A poster on a wall with the words {w} printed in large letters.",
    "A wooden board labeled ‘{w}’ leans against a fence.",
    "A banner that says {w} hangs over the street.",
    "A close-up of a label with the text “{w}”.",
]
PLAIN_CAPTIONS = ["A quiet street with parked cars and a row of trees.",
                  "A bowl of fruit on a wooden table.",
                  "Soft colourful shapes blur together in the background.",
                  "A red bus stops beside a brick building."]
N_TEXT, N_LARGE, N_BLANK = 24, 8, 8


@dataclass
class Case:
    image: Image.Image
    caption: str
    wrong: bool | None   # the claim is wrong; None: the caption claims nothing
    large: bool


def _background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    kind = rng.integers(3)
    w, h = size
    if kind == 0:  # flat, light or dark
        return Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    if kind == 1:  # vertical gradient between two colours
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        ramp = np.linspace(0, 1, h)[:, None, None]
        column = (a * (1 - ramp) + b * ramp).astype(np.uint8)
        return Image.fromarray(np.repeat(column, w, axis=1))
    # photo-like: smooth colour blobs plus grain
    blobs = Image.fromarray((rng.random((9, 16, 3)) * 255).astype(np.uint8)).resize(size, Image.BICUBIC)
    grain = rng.integers(-20, 21, (h, w, 3), dtype=np.int16)
    return Image.fromarray((np.asarray(blobs, np.int16) + grain).clip(0, 255).astype(np.uint8))


def _draw_word(rng: np.random.Generator, img: Image.Image, word: str, font_px: int) -> None:
    """The word at a random position where it fits: usually in a colour that contrasts with
    what lies under it (outlined on busy backgrounds), one in five in low contrast, one in
    four rotated by up to 20 degrees."""
    font = ImageFont.load_default(size=font_px)
    angle = float(rng.uniform(-20, 20)) if rng.random() < 0.25 else 0.0
    outline_px, pad = max(2, font_px // 25), font_px // 4
    _, _, right, bottom = ImageDraw.Draw(img).textbbox((0, 0), word, font=font, stroke_width=outline_px)

    def mask(stroke_px: int) -> Image.Image:
        m = Image.new("L", (right + 2 * pad, bottom + 2 * pad), 0)
        ImageDraw.Draw(m).text((pad, pad), word, fill=255, font=font, stroke_width=stroke_px, stroke_fill=255)
        return m.rotate(angle, expand=True, resample=Image.BICUBIC) if angle else m

    glyphs = mask(0)
    x = int(rng.integers(0, max(1, img.width - glyphs.width)))
    y = int(rng.integers(0, max(1, img.height - glyphs.height)))
    box = (x, y, x + glyphs.width, y + glyphs.height)
    under = np.asarray(img.crop(box), np.float32).reshape(-1, 3)
    luma = float((under @ np.array([0.299, 0.587, 0.114], np.float32)).mean())
    outline = False
    if rng.random() < 0.2:  # low contrast: a grey 50-80 levels off the background
        fill = (int(luma + (-1 if luma > 128 else 1) * rng.uniform(50, 80)),) * 3
    else:
        hue = rng.integers(0, 90, 3)
        fill = tuple(int(v) for v in (hue if luma > 128 else 255 - hue))
        outline = float(under.std(axis=0).mean()) > 25  # busy background
    if outline:
        img.paste((0, 0, 0) if sum(fill) > 384 else (255, 255, 255), box, mask(outline_px))
    img.paste(fill, box, glyphs)


def make_cases(seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    sizes = [(640, 480), (800, 600), (1024, 768), (1280, 720), (512, 512), (720, 960)]
    large_sizes = [(3840, 2160), (2160, 3840), (4096, 2730)]
    cases = []
    for i in range(N_TEXT + N_LARGE):
        large = i >= N_TEXT
        size = large_sizes[i % len(large_sizes)] if large else sizes[i % len(sizes)]
        word = WORDS[rng.integers(len(WORDS))]
        # 14-100 px text; 4K text keeps 16-100 px after the reader's downscale to 1280 px
        font_px = int(rng.integers(50, 300)) if large else int(rng.integers(14, 100))
        img = _background(rng, size)
        _draw_word(rng, img, word, font_px)
        wrong = i % 2 == 1
        claimed = WORDS[rng.choice([j for j, w in enumerate(WORDS) if w != word])] if wrong else word
        caption = CLAIM_TEMPLATES[i % len(CLAIM_TEMPLATES)].format(w=claimed)
        cases.append(Case(img, caption, wrong, large))
    for i in range(N_BLANK):
        img = _background(rng, sizes[i % len(sizes)])
        if i % 2:  # a claim about text that is not there
            caption = CLAIM_TEMPLATES[i % len(CLAIM_TEMPLATES)].format(w=WORDS[rng.integers(len(WORDS))])
            cases.append(Case(img, caption, True, False))
        else:
            cases.append(Case(img, PLAIN_CAPTIONS[i // 2 % len(PLAIN_CAPTIONS)], None, False))
    return cases


def _timed_read(reader: OcrReader, image: Image.Image) -> tuple[list[str], float]:
    t = time.perf_counter()
    lines = reader.read(image)
    return lines, (time.perf_counter() - t) * 1000


def main(seed: int = 0) -> None:
    cases = make_cases(seed)
    reader = OcrReader()
    reader.read(cases[0].image)  # warm-up: model load and first-run allocation
    tp = fp = fn = 0
    extracted = expected = plain_claims = 0
    ms: dict[bool, list[float]] = {False: [], True: []}  # by `large`
    misses = []
    for case in cases:
        claims = text_claims(case.caption)
        if case.wrong is None:
            plain_claims += len(claims)
        else:
            expected += 1
            extracted += len(claims) == 1
        lines, elapsed = _timed_read(reader, case.image)
        ms[case.large].append(elapsed)
        for claim, ok in zip(claims, claims_found(claims, lines)):
            flagged = not ok
            if case.wrong:
                tp += flagged
                fn += not flagged
            else:
                fp += flagged
            if flagged != case.wrong:
                misses.append(f"  {'missed wrong' if case.wrong else 'false flag'}: "
                              f"claim {claim.text!r}, OCR read {[line.text for line in lines]}")

    full = OcrReader(max_side=100_000)  # baseline: the 4K images at full size
    full_ms, right_full, right_small = [], 0, 0
    for case in (c for c in cases if c.large):
        lines, elapsed = _timed_read(full, case.image)
        full_ms.append(elapsed)
        claims = text_claims(case.caption)
        right_full += claims_found(claims, lines) == [not case.wrong]
        right_small += claims_found(claims, reader.read(case.image)) == [not case.wrong]

    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    print(f"{len(cases)} images ({N_TEXT} of 512-1280 px, {N_LARGE} of 4K, {N_BLANK} without text), "
          f"seed {seed}, one process")
    print(f"claims extracted: {extracted} of {expected} claiming captions, "
          f"{plain_claims} from the {sum(c.wrong is None for c in cases)} captions that claim nothing")
    print(f"{'measure':<46}{'value':>8}")
    print(f"{'precision of flags (flagged that are wrong)':<46}{precision:>8.2f}  ({tp} of {tp + fp})")
    print(f"{'recall of flags (wrong claims flagged)':<46}{recall:>8.2f}  ({tp} of {tp + fn})")
    for label, values in [("OCR ms/image, up to 1280 px", ms[False]),
                          ("OCR ms/image, 4K downscaled to 1280 px", ms[True]),
                          ("OCR ms/image, 4K at full size (baseline)", full_ms),
                          ("OCR ms/image, all as the pipeline reads them", ms[False] + ms[True])]:
        print(f"{label:<46}{np.mean(values):>8.0f}  (p95 {np.percentile(values, 95):.0f}, n={len(values)})")
    print(f"4K claims judged right: {right_small} of {N_LARGE} downscaled, {right_full} of {N_LARGE} at full size")
    for line in misses:
        print(line)


if __name__ == "__main__":
    main()
