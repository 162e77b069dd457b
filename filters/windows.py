"""Window hashes: what finds a crop (up to 10 % per side) or a small rotation of a picture,
which moves its whole-picture hashes about as far as a different picture's.

A crop of B from A is a window of A. Enumerating A's windows finely enough (trims of 0, 5 and
10 % on four sides: 81) costs too much at 10M pictures, so the windows are split in two sets
whose differences cover the trims, as in baby-step giant-step: every picture *inserts* windows
that vary the left and right trims (2.5 % or 7.5 %, top and bottom 7.5 %) and *queries* windows
of itself that vary the top and bottom trims (0 or 5 %, left and right 0). If B is A cropped by
(l, r, t, b), each within 10 %, one inserted window of A and one queried window of B frame the
same part of the picture to within 2.5 % per side, which a 64-bit pHash tolerates. Two more
inserted windows, turned by -3 and +3 degrees (5 % trims), meet a copy turned by up to 5 degrees.
The queries are taken again from the mirror image (the inserts are symmetric), so a crop meets
its original's mirrored copy too: that copy may be the one a cluster keeps.

Each window has a 64-bit pHash, a 64-bit dHash and a 256-bit pHash (`curate.imaging.phash_long`'s
kind), computed from one grey working copy with batched DCTs. Windows are taken from the picture
as decoded, borders included: a crop can expose a flat band (a bar along an edge) that border
trimming would cut from one copy and not the other.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dct

A, B, TURN = 0.025, 0.075, 3.0
# (left, top, right, bottom) trims as fractions of the side, and a turn in degrees
INSERTS = [(left, B, right, B, 0.0) for left in (A, B) for right in (A, B)] + \
          [(0.05, 0.05, 0.05, 0.05, angle) for angle in (-TURN, TURN)]
QUERIES = [(0.0, top, 0.0, bottom, 0.0) for top in (0.0, B - A) for bottom in (0.0, B - A)]
WINDOWS = len(INSERTS) + 2 * len(QUERIES)   # the queries again on the mirror image
MIRRORED = len(INSERTS) + len(QUERIES)      # the first mirrored query window
WINDOW_BYTES = 48               # per window: pHash (8), dHash (8), 256-bit pHash (32)
BASE_SIDE = 256                 # the grey working copy's long side


def window_hashes(img: Image.Image) -> bytes:
    """Every window's hashes, inserts, queries, mirrored queries, packed as WINDOWS x (pHash, dHash big-endian
    64-bit words, then 32 bytes of 256-bit pHash)."""
    grey = img.convert("L")
    grey.thumbnail((BASE_SIDE, BASE_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    turned = {0.0: grey}
    p64, d98 = [], []
    for left, top, right, bottom, angle in INSERTS + QUERIES:
        if angle not in turned:
            turned[angle] = grey.rotate(angle, Image.Resampling.BILINEAR)
        w, h = turned[angle].size
        box = (round(left * w), round(top * h), w - round(right * w), h - round(bottom * h))
        window = turned[angle].resize((64, 64), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
        p64.append(np.asarray(window, np.float64))
        d98.append(np.asarray(window.resize((9, 8), Image.Resampling.BILINEAR), np.int16))
    # the queries trim left and right alike, so the mirror image's windows are theirs flipped
    p64 += [a[:, ::-1] for a in p64[len(INSERTS):]]
    d98 += [a[:, ::-1] for a in d98[len(INSERTS):]]
    p64 = np.stack(p64)
    p32 = p64.reshape(WINDOWS, 32, 2, 32, 2).mean(axis=(2, 4))
    low = dct(dct(p32, axis=1), axis=2)[:, :8, :8].reshape(WINDOWS, 64)
    phash = low > np.median(low, axis=1, keepdims=True)
    d = np.stack(d98)
    dhash = (d[:, :, 1:] > d[:, :, :-1]).reshape(WINDOWS, 64)
    long = dct(dct(p64, axis=1), axis=2)[:, :16, :16] > 0
    long[:, 0, 0] = False
    return np.concatenate([np.packbits(phash, axis=1), np.packbits(dhash, axis=1),
                           np.packbits(long.reshape(WINDOWS, 256), axis=1)], axis=1).tobytes()


def unpack(values) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pHash n x WINDOWS, dHash n x WINDOWS, 256-bit n x WINDOWS x 4 words, known n) from packed
    window hashes (`filters.mih.fixed_bytes`: an Arrow column or a list, None where missing)."""
    from filters.mih import fixed_bytes

    raw, known = fixed_bytes(values, WINDOWS * WINDOW_BYTES)
    raw = raw.reshape(-1, WINDOWS, WINDOW_BYTES)
    p, d = (raw[:, :, at:at + 8].copy().view(">u8")[..., 0].astype(np.uint64) for at in (0, 8))
    return p, d, raw[:, :, 16:].copy().view(np.uint64), known
