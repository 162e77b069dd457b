"""Dedup at scale and per kind of copy, at the shipped jobs' radius (pHash k = 10, dHash 12).

1. Scale: `deduplicate` (the pipeline's own call) on hash sets of 100k, 1M, 10M:
   - uniform: random hashes, 2% in planted clusters of 4 (members within k, kd of their
     centre, and within 40 of 256 bits on the 256-bit pHash, one in three mirrored);
   - skewed: the same plus Zipf-repeated pictures (5% of inputs are copies of 2,000 pictures,
     with Zipf frequencies) and one placeholder picture repeated 100,000 times;
   - photo tiles (100k, 1M): hashes of random crops of real photographs (scikit-learn's
     china.jpg and flower.jpg), mirrored and colour-jittered: a real, far-from-uniform hash
     distribution, full of true overlaps.
   Seconds (wall, and CPU: the machine is shared, and the search is one thread), peak memory,
   growth per 10x; recall of planted pairs; chance pairs removed by the dHash and the 256-bit
   pHash confirmations. Each size runs in its own process, so its peak memory is its own.
2. Baseline (100k, uniform): all-pairs numpy over the same hashes in the same run: seconds
   and the pairs it finds (pHash alone, and pHash + dHash), against the band search's.
3. Ray engine: the same search as a Ray Data shuffle on a local multi-node cluster
   (`ray.cluster_utils.Cluster`, head + 2 nodes of 1 CPU), at the sizes in BENCH_DEDUP_RAY.
4. Kinds of copy: generated photo-like pictures (seeded), one copy of each kind per original,
   and pairs of distinct pictures sharing a background layout, through the real ingest hashing
   (JPEG bytes -> working-size decode -> hashes, quality signals) and `deduplicate`: recall and
   precision per kind, what the 256-bit pHash refuses, the ingest hashing cost it adds, and the
   share of groups that keep the clean original (and a clean copy: the original or its mirror).

The 10M runs need ~17 GB of memory (the window hashes and thumbnails are ~1 KB a picture);
BENCH_DEDUP_SIZES=100000,1000000 keeps it under 2 GB.

Environment: BENCH_DEDUP_SIZES (default 100000,1000000,10000000), BENCH_DEDUP_SETS
(uniform,skewed,tiles), BENCH_DEDUP_RAY (default 100000), BENCH_DEDUP_ORIGINALS (300),
BENCH_DEDUP_LAYOUTS (pairs sharing a layout, default twice the originals), BENCH_DEDUP_SEED (the
copy set's seed, default 0; 1 is the held-out set).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from math import comb

import numpy as np

from filters.dedup import LONG_DISTANCE, OVERLAY_LONG_DISTANCE, WINDOW_LONG_DISTANCE
from filters.mih import PHASH_SLACK

K, KD = 10, 12   # the shipped jobs' dedup.max_distance and dedup.confirm_distance
SIZES = [100_000, 1_000_000, 10_000_000]
TILE_SIZES = [100_000]  # two source photos: at 1M every tile has dozens of true overlapping copies


def _random(rng, n) -> np.ndarray:
    return rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) << np.uint64(1) | rng.integers(0, 2, n).astype(np.uint64)


def _flips(rng, n: int, most: int) -> np.ndarray:
    """n masks of 0..most distinct random bits each."""
    bits = np.argsort(rng.random((n, 64)), axis=1)[:, :most].astype(np.uint64)
    take = np.arange(most)[None, :] < rng.integers(0, most + 1, n)[:, None]
    return np.bitwise_or.reduce(np.where(take, np.uint64(1) << bits, np.uint64(0)), axis=1)


def _long_flips(rng, n: int, most: int) -> np.ndarray:
    """n masks (4 words each) of 0..most distinct random bits of 256."""
    bits = np.argsort(rng.random((n, 256)), axis=1)[:, :most]
    take = np.arange(most)[None, :] < rng.integers(0, most + 1, n)[:, None]
    mask = np.zeros((n, 256), np.uint8)
    np.put_along_axis(mask, bits, take.astype(np.uint8), axis=1)
    return np.frombuffer(np.packbits(mask, axis=1).tobytes(), np.uint64).reshape(n, 4)


def uniform(n: int, seed: int = 0):
    """Hashes (with 256-bit ones), the planted (member, centre) pairs (2% of inputs in clusters
    of 4), and the true picture of every input (its own index, or its cluster's centre)."""
    from filters.mih import LONG_MIRROR, Hashes

    rng = np.random.default_rng(seed)
    p, d, pm, dm = (_random(rng, n) for _ in range(4))
    long = rng.integers(0, 2**63, (n, 4), dtype=np.int64).astype(np.uint64) << np.uint64(1)
    clusters = n // 200
    centre = np.arange(clusters)
    members = []
    for m in range(1, 4):
        at = np.arange(clusters * m, clusters * (m + 1))
        fp, fd, fpm, fdm = (_flips(rng, clusters, r) for r in (K, KD, K, KD))
        p[at], d[at], pm[at], dm[at] = p[centre] ^ fp, d[centre] ^ fd, pm[centre] ^ fpm, dm[centre] ^ fdm
        long[at] = long[centre] ^ _long_flips(rng, clusters, 40)
        if m == 3:  # mirrored copies: their hashes as shown are the centre's mirrored ones
            p[at], pm[at], d[at], dm[at] = pm[at], p[at], dm[at], d[at]
            long[at] ^= LONG_MIRROR
        members.append(np.stack([at, centre], 1))
    planted = np.concatenate(members)
    truth = np.arange(n)
    truth[planted[:, 0]] = planted[:, 1]
    h = Hashes(p, d, pm, dm, long)
    crops = _plant_windows(h, rng, np.arange(n // 2, n))  # clear of the planted clusters and of `skewed`'s copies
    truth[crops[:, 0]] = crops[:, 1]
    return h, np.concatenate([planted, crops]), truth


def _plant_windows(h, rng, free: np.ndarray) -> np.ndarray:
    """Give every picture random window hashes and a random thumbnail (as ingest stores them),
    and plant crops: for 0.5 % of pictures, a queried window (random, not of the mirror image)
    within (k, kd) and 40 of 256 bits of an inserted window (random) of another picture, whose
    whole-picture hashes stay random. Returns the (crop, original) pairs."""
    from filters.windows import INSERTS, MIRRORED, WINDOWS

    n = len(h)
    h.wp = rng.integers(0, 2**64 - 1, (n, WINDOWS), dtype=np.uint64, endpoint=True)
    h.wd = rng.integers(0, 2**64 - 1, (n, WINDOWS), dtype=np.uint64, endpoint=True)
    h.wlong = rng.integers(0, 2**64 - 1, (n, WINDOWS, 4), dtype=np.uint64, endpoint=True)
    h.w_known = np.ones(n, bool)
    h.thumb = rng.integers(0, 256, (n, 16, 16), dtype=np.uint8)
    h.thumb_known = np.ones(n, bool)
    pick = rng.choice(free, size=2 * (n // 200), replace=False)
    crop, original = pick[0::2], pick[1::2]
    ins = rng.integers(0, len(INSERTS), len(crop))
    qry = rng.integers(len(INSERTS), MIRRORED, len(crop))  # the searched queries (not the mirror image's)
    h.wp[crop, qry] = h.wp[original, ins] ^ _flips(rng, len(crop), K)
    h.wd[crop, qry] = h.wd[original, ins] ^ _flips(rng, len(crop), KD)
    h.wlong[crop, qry] = h.wlong[original, ins] ^ _long_flips(rng, len(crop), 40)
    return np.stack([crop, original], 1)


def skewed(n: int, seed: int = 0):
    """Uniform, plus 5% of inputs copying one of 2,000 pictures (Zipf frequencies) and one
    placeholder picture 100,000 times (or n // 10 at small n): distinct bytes, same hashes."""
    h, planted, truth = uniform(n, seed)
    rng = np.random.default_rng(seed + 1)
    start = n // 50  # after the planted clusters
    zipf = int(0.05 * n)
    source = rng.zipf(1.5, zipf) % 2000 + start + zipf + min(100_000, n // 10)
    at = np.arange(start, start + zipf)
    placeholder = np.arange(start + zipf, start + zipf + min(100_000, n // 10))
    for a in (h.p, h.d, h.pm, h.dm, h.long, h.wp, h.wd, h.wlong, h.thumb):
        a[at] = a[source]
        a[placeholder] = a[placeholder[0]]
    truth[at], truth[placeholder] = source, placeholder[0]
    return h, planted, truth


def photo_tiles(n: int, seed: int = 0):
    """Hashes of n random crops (96-320 px, some mirrored, colour-jittered) of real photographs,
    computed as imagehash does (32x32 DCT pHash, 9x8 dHash), vectorised over the crops."""
    import scipy.fft
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from filters.mih import Hashes

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(a).convert("L") for a in load_sample_images().images]
    p, d, pm, dm = (np.empty(n, np.uint64) for _ in range(4))
    weights = 1 << np.arange(63, -1, -1, dtype=np.uint64)
    for start in range(0, n, 20_000):
        m = min(20_000, n - start)
        small, tiny = np.empty((m, 32, 32), np.float64), np.empty((m, 8, 9), np.float64)
        for t in range(m):
            img = photos[int(rng.integers(len(photos)))]
            side = int(rng.integers(96, 320))
            x, y = int(rng.integers(0, img.width - side)), int(rng.integers(0, img.height - side))
            box = (x, y, x + side, y + side)
            small[t] = np.asarray(img.resize((32, 32), Image.BOX, box=box), np.float64)
            tiny[t] = np.asarray(img.resize((9, 8), Image.BOX, box=box), np.float64)
        gain = rng.uniform(0.8, 1.2, (m, 1, 1))
        small, tiny = small * gain, tiny * gain
        flip = rng.random(m) < 0.3
        small[flip], tiny[flip] = small[flip, :, ::-1], tiny[flip, :, ::-1]
        for view, (s, tt) in enumerate([(small, tiny), (small[:, :, ::-1], tiny[:, :, ::-1])]):
            dct = scipy.fft.dct(scipy.fft.dct(s, axis=1, type=2), axis=2, type=2)[:, :8, :8].reshape(m, 64)
            ph = ((dct > np.median(dct, axis=1, keepdims=True)).astype(np.uint64) * weights).sum(axis=1)
            dh = ((tt[:, :, 1:] > tt[:, :, :-1]).reshape(m, 64).astype(np.uint64) * weights).sum(axis=1)
            (p if view == 0 else pm)[start:start + m], (d if view == 0 else dm)[start:start + m] = ph, dh
    return Hashes(p, d, pm, dm), np.empty((0, 2), np.int64), None


SETS = {"uniform": uniform, "skewed": skewed, "tiles": photo_tiles}


def chance(n: int, radius: int) -> float:
    """Expected pairs of n random 64-bit hashes within `radius` bits."""
    return n * (n - 1) / 2 * sum(comb(64, r) for r in range(radius + 1)) / 2**64


def run_one(kind: str, n: int, baseline: bool) -> dict:
    from filters import mih
    from filters.dedup import deduplicate

    h, planted, truth = SETS[kind](n)
    keys = np.char.add("k", np.arange(n).astype("U12"))
    stats = {}

    t, cpu = time.perf_counter(), time.process_time()
    table = deduplicate(keys, keys, h, np.ones(n), np.full(n, np.nan), k=K, kd=KD, stats=stats)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    rep = np.array([int(r[1:]) if r else i for i, r in enumerate(table["near_duplicate_of"].to_pylist())])
    dropped = rep != np.arange(n)
    crops = planted[len(planted) - n // 200:] if h.wp is not None else planted[:0]
    out = {"set": kind, "n": n, "seconds": seconds, "cpu": cpu, "dropped": int(dropped.sum()),
           "planted": len(planted), "planted_found": int(np.count_nonzero(rep[planted[:, 0]] == rep[planted[:, 1]])),
           "crops": len(crops), "crops_found": int(np.count_nonzero(rep[crops[:, 0]] == rep[crops[:, 1]])),
           "false_merges": None if truth is None else int(np.count_nonzero(dropped & (truth[rep] != truth))),
           "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **stats}
    if baseline:
        t, cpu = time.perf_counter(), time.process_time()
        i, j = mih.all_pairs(mih.Hashes(h.p, h.d), K)
        both = np.bitwise_count(h.d[i] ^ h.d[j]) <= KD
        long_ok = h.long_distance(i, j, np.zeros(len(i), bool)) <= LONG_DISTANCE if h.long is not None else both
        out["baseline_seconds"], out["baseline_cpu"] = time.perf_counter() - t, time.process_time() - cpu
        alone = np.bincount(truth, minlength=n) == 1  # a random hash, no planted copy
        randoms = alone[i] & alone[j]
        out["baseline"] = {"phash": len(i), "both": int(both.sum()), "chance_phash": int(randoms.sum()),
                           "chance_both": int((randoms & both).sum()), "chance_long": int((randoms & long_ok).sum()),
                           "chance_all": int((randoms & both & long_ok).sum())}
        found = mih.near_pairs(mih.Hashes(h.p, h.d), K, KD)
        m1, m2 = mih.plan(n, K, KD, mirror=False)
        pd, dd = np.bitwise_count(h.p[i] ^ h.p[j]), np.bitwise_count(h.d[i] ^ h.d[j])
        out["exact_region"] = [m1 - 1, m2 - 1, int(np.count_nonzero((pd <= m1 - 1) & (dd <= m2 - 1))),
                               int(np.count_nonzero((found.pdist <= m1 - 1) & (found.ddist <= m2 - 1))), len(found.i)]
    return out


def scale() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_DEDUP_SIZES", ",".join(map(str, SIZES))).split(",")]
    sets = os.environ.get("BENCH_DEDUP_SETS", "uniform,skewed,tiles").split(",")
    print(f"scale: pHash k={K}, dHash confirm {KD}, full `deduplicate` (collapse, band search, leader clusters)")
    for kind in sets:
        rows = []
        for n in sizes:
            if kind == "tiles" and n > max(TILE_SIZES):
                continue
            code = f"import json, bench.dedup as b; print(json.dumps(b.run_one({kind!r}, {n}, {kind == 'uniform' and n <= 100_000})))"
            res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
            if res.returncode:
                print(f"{kind} n={n:,} failed:\n{res.stderr[-2000:]}", flush=True)
                break
            r = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(r)
            planted = (f"planted pairs found {r['planted_found']:,}/{r['planted']:,} (crops by window: {r['crops_found']:,}/{r['crops']:,}), "
                       f"false merges {r['false_merges']:,}" if r["planted"] else "no planted truth")
            windows = (f"; window search: bands {r['window_m1']}x{r['window_m2']}, candidates {r['window_candidates']:,}, "
                       f"confirmed {r['window_confirmed']:,}" if "window_m1" in r else "")
            print(f"{kind:8} n={n:>11,}  {r['seconds']:7.1f} s (CPU {r['cpu']:.1f} s)  peak {r['peak_mb']:6.0f} MB  distinct {r['distinct']:,}  "
                  f"bands {r['m1']}x{r['m2']}  dropped {r['dropped']:,}  {planted}  candidates {r['candidates']:,}: "
                  f"pHash<={K} {r['phash_ok']:,}, dHash<={KD} {r['dhash_ok']:,}, both {r['pairs']:,}, refused by the 256-bit pHash "
                  f"{r.get('long_refused', 0):,}{windows}", flush=True)
            if kind == "uniform":
                random = n - 4 * (n // 200)
                print(f"  chance pairs expected among its {random:,} random hashes: pHash<={K} {chance(random, K):,.0f}, "
                      f"and dHash<={KD} too {chance(random, K) * chance(2, KD):.2g}", flush=True)
            if "baseline_seconds" in r:
                b, reg = r["baseline"], r["exact_region"]
                print(f"  baseline all-pairs numpy at n={n:,}: {r['baseline_seconds']:.1f} s (CPU {r['baseline_cpu']:.1f} s) vs curate "
                      f"{r['seconds']:.2f} s (CPU {r['cpu']:.2f} s) -> {r['baseline_cpu'] / r['cpu']:.0f}x in CPU time; pairs within pHash {K}: {b['phash']:,} ({b['chance_phash']:,} "
                      f"between random hashes), of which dHash within {KD}: {b['both']:,} ({b['chance_both']:,} random); random pairs "
                      f"within pHash {K} that the 256-bit pHash<={LONG_DISTANCE} alone would accept: {b['chance_long']:,}, all three: {b['chance_all']:,}; "
                      f"band search, as shown: {reg[4]:,}, inside its exact region pHash<={reg[0]}, dHash<={reg[1]}: "
                      f"{reg[3]:,} of {reg[2]:,}", flush=True)
        for a, b in itertools.pairwise(rows):
            print(f"  growth {a['n']:,} -> {b['n']:,}: time x{b['seconds'] / a['seconds']:.1f} (CPU x{b['cpu'] / a['cpu']:.1f}), "
                  f"memory x{b['peak_mb'] / a['peak_mb']:.1f}")


def ray_engine() -> None:
    import ray
    from ray.cluster_utils import Cluster

    from curate.phases.dedup import ray_near_pairs, ray_window_pairs
    from filters import mih
    from filters.windows import INSERTS, MIRRORED

    sizes = [int(s) for s in os.environ.get("BENCH_DEDUP_RAY", "100000").split(",") if s]
    if not sizes:
        return
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        for n in sizes:
            h, _, _ = uniform(n)
            t = time.perf_counter()
            local = mih.near_pairs(h, K, KD)
            local_s = time.perf_counter() - t
            t = time.perf_counter()
            shuffled = ray_near_pairs(h, K, KD)
            ray_s = time.perf_counter() - t
            same = set(zip(local.i.tolist(), local.j.tolist())) == set(zip(shuffled.i.tolist(), shuffled.j.tolist()))
            print(f"ray engine, 3-node local cluster (head 0 CPU + 2 x 1 CPU), n={n:,}: {ray_s:.1f} s vs local engine "
                  f"{local_s:.1f} s in the driver ({ray_s / local_s:.1f}x); same pairs: {same} ({len(local.i):,})", flush=True)
            t = time.perf_counter()
            local = mih.window_pairs(h, K, KD, WINDOW_LONG_DISTANCE, len(INSERTS), MIRRORED)
            local_s = time.perf_counter() - t
            t = time.perf_counter()
            shuffled = ray_window_pairs(h, K, KD, WINDOW_LONG_DISTANCE, len(INSERTS), MIRRORED)
            ray_s = time.perf_counter() - t
            same = set(zip(local.i.tolist(), local.j.tolist())) == set(zip(shuffled.i.tolist(), shuffled.j.tolist()))
            print(f"  window search: {ray_s:.1f} s vs local {local_s:.1f} s ({ray_s / local_s:.1f}x); same pairs: {same} "
                  f"({len(local.i):,})", flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()


KINDS = ["mirror", "crop5", "crop10", "rotate", "border", "overlay", "colour", "resize", "jpeg40"]


def make_copy(kind: str, img, rng):
    """A copy of `img` of one kind, and the JPEG quality it is saved with."""
    from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

    w, h = img.size
    if kind == "mirror":
        return ImageOps.mirror(img), 92
    if kind.startswith("crop"):
        left, top, right, bottom = (rng.uniform(0, int(kind[4:]) / 100, 4) * [w, h, w, h]).astype(int)
        return img.crop((left, top, w - right, h - bottom)), 92
    if kind == "rotate":  # up to 5 degrees, cropped to hide the corners
        angle = rng.uniform(1, 5) * rng.choice([-1, 1])
        margin = int(np.ceil(np.sin(np.radians(abs(angle))) * max(w, h) / 2)) + 1
        return img.rotate(angle, Image.BICUBIC).crop((margin, margin, w - margin, h - margin)), 92
    if kind == "border":  # letterbox bars or a frame, black or white
        colour = (0, 0, 0) if rng.random() < 0.5 else (255, 255, 255)
        if rng.random() < 0.5:
            bar = int(h * rng.uniform(0.08, 0.2))
            out = Image.new("RGB", (w, h + 2 * bar), colour)
            out.paste(img, (0, bar))
        else:
            bar = int(w * rng.uniform(0.04, 0.1))
            out = Image.new("RGB", (w + 2 * bar, h + 2 * bar), colour)
            out.paste(img, (bar, bar))
        return out, 92
    if kind == "overlay":  # a logo in a corner or a text watermark
        out = img.copy()
        draw = ImageDraw.Draw(out)
        font = ImageFont.load_default(size=max(12, h // 12))
        if rng.random() < 0.5:
            lw, lh = int(w * rng.uniform(0.12, 0.2)), int(h * rng.uniform(0.08, 0.14))
            x = int(w * 0.03) if rng.random() < 0.5 else w - lw - int(w * 0.03)
            y = int(h * 0.03) if rng.random() < 0.5 else h - lh - int(h * 0.03)
            draw.rectangle([x, y, x + lw, y + lh], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
            draw.text((x + 4, y + 4), "LOGO", fill=(255, 255, 255), font=font)
        else:
            draw.text((w * rng.uniform(0.05, 0.4), h * rng.uniform(0.6, 0.85)), "(c) stock photos", fill=(255, 255, 255),
                      font=font, stroke_width=2, stroke_fill=(0, 0, 0))
        return out, 92
    if kind == "colour":
        out = ImageEnhance.Brightness(ImageEnhance.Color(img).enhance(rng.uniform(0.5, 1.5))).enhance(rng.uniform(0.8, 1.2))
        return Image.fromarray((np.asarray(out, np.float32) * rng.uniform(0.85, 1.15, 3)).clip(0, 255).astype(np.uint8)), 92
    if kind == "resize":
        return img.resize((w // 2, h // 2), Image.LANCZOS), 92
    return img, 40  # jpeg40


def ingest_like(img, quality: int, cost: list | None = None) -> dict:
    """What ingest computes for dedup from a picture saved as JPEG: hashes and quality signals.
    `cost` receives (CPU s of every hash ingest computes, of those without the window hashes)."""
    from curate import imaging
    from filters.quality import signals

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    data = buf.getvalue()
    work = imaging.decode_working(data, 512)
    header = imaging.probe(data)
    t = time.process_time()
    row = {**imaging.dedup_hashes(work), "phash": imaging.phash64(work), "dhash": imaging.dhash64(work)}
    hashes_s = time.process_time() - t
    if cost is not None:
        from filters.windows import window_hashes
        t = time.process_time()
        window_hashes(work)
        cost.append((hashes_s, hashes_s - (time.process_time() - t)))
    q = signals(work)
    return {**row, "pixels": header.width * header.height, "jpeg_quality": header.jpeg_quality, "letterbox": q["letterbox"],
            "colour": (q["brightness"], q["colourfulness"])}


def copy_kinds() -> None:
    from functools import partial

    import pyarrow as pa

    from curate.phases.dedup import dedup_hashes
    from curate.sample import render
    from filters.dedup import collapse, deduplicate, fine_confirmed
    from filters.mih import Hashes, near_pairs, plan, window_pairs, window_plan
    from filters.windows import MIRRORED
    from schemas.record import DEDUP_HASHES, INGESTED

    originals = int(os.environ.get("BENCH_DEDUP_ORIGINALS", "300"))
    seed = int(os.environ.get("BENCH_DEDUP_SEED", "0"))  # another seed: a set the thresholds were not chosen on
    rng = np.random.default_rng(seed)
    rows, kind_of, original_of, cost = [], [], [], []
    t = time.perf_counter()
    for _ in range(originals):
        img, _ = render(rng, int(rng.integers(480, 800)), int(rng.integers(400, 640)))
        base = len(rows)
        rows.append(ingest_like(img, 92, cost))
        kind_of.append("original")
        original_of.append(base)
        for kind in KINDS:
            rows.append(ingest_like(*make_copy(kind, img, rng)))
            kind_of.append(kind)
            original_of.append(base)
    pairs = int(os.environ.get("BENCH_DEDUP_LAYOUTS", str(2 * originals)))  # distinct pictures sharing a background
    for q in range(pairs):
        for s in range(2):
            size = (640, 480) if q % 2 == 0 else (320, 240)
            img, _ = render(np.random.default_rng(10_000 + 2 * q + s + 100_000 * seed), *size,
                            layout=np.random.default_rng(20_000 + q + 100_000 * seed))
            original_of.append(len(rows))
            rows.append(ingest_like(img, 92))
            kind_of.append("layout")
    hashing_s = time.perf_counter() - t
    n = len(rows)
    col = {c: np.array([r[c] for r in rows]) for c in ("pixels", "letterbox", "jpeg_quality", "colour")}
    # 64-bit hashes typed on the way in: numpy makes float64 of Python ints mixing values above and below 2**63
    col.update({c: np.array([r[c] for r in rows], np.uint64) for c in ("phash", "dhash")})
    # keys in a seeded random order: the last tie-break (smallest key) must not favour originals
    keys = np.array([f"i{i:06d}" for i in range(n)])[np.random.default_rng(1).permutation(n)]
    index_of = {key: i for i, key in enumerate(keys)}
    original_of, kind_of = np.array(original_of), np.array(kind_of)

    def evaluate(name: str, hashes, plans: int | None = None, **kw) -> None:
        """`plans`: search with the band plans of a run of that many pictures."""
        found = {}
        bands = plan(plans, K, KD) if plans else (None, None)

        def finder(node_hashes, k, kd):
            found["pairs"], found["hashes"] = near_pairs(node_hashes, k, kd, *bands), node_hashes
            return found["pairs"]
        if plans:
            kw["window_finder"] = partial(window_pairs, bands=window_plan(plans * MIRRORED, K, KD))
        table = deduplicate(keys, keys, hashes, col["pixels"], np.full(n, np.nan), k=K, kd=KD, pair_finder=finder, **kw)
        rep = np.array([index_of[r] if r else i for i, r in enumerate(table["near_duplicate_of"].to_pylist())])
        print(f"{name}:")
        node = collapse(hashes, None, n)
        first = np.empty(node.max() + 1, np.int64)
        first[node[::-1]] = np.arange(n)[::-1]
        pairs = found["pairs"]
        same = original_of[first[pairs.i]] == original_of[first[pairs.j]]
        if hashes.long is not None:
            refused = ~fine_confirmed(hashes, first[pairs.i], first[pairs.j], pairs.mirrored, kw.get("kl", LONG_DISTANCE))
            print(f"  whole-picture pairs whose 64-bit hashes agree (pHash<={K} and dHash<={KD}, or pHash<={K + PHASH_SLACK} and "
                  f"dHash<={KD // 2}): {len(same):,} ({np.count_nonzero(~same)} between different pictures); the 256-bit pHash<="
                  f"{kw.get('kl', LONG_DISTANCE)} (or thumbnails, up to {OVERLAY_LONG_DISTANCE}) refuses "
                  f"{np.count_nonzero(refused & ~same)} of those and {np.count_nonzero(refused & same)} between copies of one picture")
        print(f"  {'kind':<9}{'recall':>8}{'precision':>11}   (recall: copies in their original's cluster; precision: "
              f"pairs in one cluster that are copies of one picture)")
        same_cluster = rep[:, None] == rep[None, :]
        same_picture = original_of[:, None] == original_of[None, :]
        for kind in [*KINDS, "layout"]:
            at = np.flatnonzero(kind_of == kind)
            if kind == "layout":
                apart = ~same_cluster[at[0::2], at[1::2]]
                print(f"  {'layout':<9}{'':>8}{'':>11}   distinct pictures sharing a layout kept apart: {apart.mean():.3f} ({apart.sum()}/{len(apart)})")
                continue
            recall = np.mean(rep[at] == rep[original_of[at]])
            merged = same_cluster[at] & ~np.eye(n, dtype=bool)[at]
            precision = (merged & same_picture[at]).sum() / max(merged.sum(), 1)
            print(f"  {kind:<9}{recall:8.3f}{precision:11.3f}")
        merged = np.triu(same_cluster, 1)
        print(f"  all pairs merged {merged.sum():,}: precision {(merged & same_picture).sum() / max(merged.sum(), 1):.4f}; "
              f"recall {np.mean(rep[kind_of != 'layout'] == rep[original_of[kind_of != 'layout']]):.3f}")
        groups = np.flatnonzero(kind_of == "original")
        clean = np.isin(kind_of[rep[groups]], ["original", "mirror"])
        print(f"  groups keeping a clean copy (the original or its mirror image, which no pixel tells apart): {clean.mean():.3f} "
              f"({clean.sum()}/{len(groups)})")
        print(f"  groups keeping the clean original: {np.mean(rep[groups] == groups):.3f} ({np.sum(rep[groups] == groups)}/{len(groups)}); "
              "kept copy by kind: " + ", ".join(f"{kind} {count}" for kind, count in zip(*np.unique(kind_of[rep[groups]], return_counts=True))))

    print(f"kinds of copy: {originals} generated originals (seed {seed}) x {len(KINDS)} kinds + {pairs} pairs sharing a layout, "
          f"{n:,} images hashed in {hashing_s:.0f} s")
    full, short = np.array(cost).sum(axis=0)
    print(f"  ingest hashing CPU per original: {1000 * full / len(cost):.2f} ms with the window hashes, "
          f"{1000 * short / len(cost):.2f} ms without it (+{100 * (full / short - 1):.0f}%)")
    # the hashes as the dedup phase builds them from ingest rows
    h = dedup_hashes(pa.table({c: pa.array([r[c] for r in rows], INGESTED.field(c).type) for c in ("phash", *DEDUP_HASHES)}))
    for kind in [*KINDS, "layout"]:  # 256-bit distance of the pairs both 64-bit hashes accept
        at = np.flatnonzero(kind_of == kind)
        a, b = (at[0::2], at[1::2]) if kind == "layout" else (original_of[at], at)
        mirrored = np.full(len(a), kind == "mirror")
        inside = (np.bitwise_count(h.p[a] ^ np.where(mirrored, h.pm[b], h.p[b])) <= K) & (
            np.bitwise_count(h.d[a] ^ np.where(mirrored, h.dm[b], h.d[b])) <= KD)
        dist = np.sort(h.long_distance(a, b, mirrored)[inside])
        print(f"  {kind:<8} pairs within pHash<={K} and dHash<={KD}: {inside.sum():3d} of {len(a)}; 256-bit distance "
              + (f"min {dist[0]}, median {int(np.median(dist))}, max {dist[-1]}, above {LONG_DISTANCE}: {np.count_nonzero(dist > LONG_DISTANCE)}" if len(dist) else "-"))
    evaluate(f"curate (border-trimmed pHash<={K} + dHash<={KD}, mirrored views, window hashes, 256-bit pHash<={LONG_DISTANCE} "
             f"(windows {WINDOW_LONG_DISTANCE}), "
             "leader clusters, best-copy rule)",
             h, letterbox=col["letterbox"], jpeg_quality=col["jpeg_quality"], colour=col["colour"])
    evaluate("the same, searched with the band plans of a 10M-picture run (narrower exact regions)",
             h, plans=10_000_000, letterbox=col["letterbox"], jpeg_quality=col["jpeg_quality"], colour=col["colour"])
    evaluate("without window hashes and thumbnails, 256-bit pHash<=80 (the previous session's rule)",
             Hashes(h.p, h.d, h.pm, h.dm, h.long, h.long_known),
             letterbox=col["letterbox"], jpeg_quality=col["jpeg_quality"], colour=col["colour"], kl=80, kw=None)
    evaluate(f"without the added hashes (whole-picture pHash<={K} + dHash<={KD}, no mirror, most pixels first)",
             Hashes(col["phash"], col["dhash"]))


def main() -> None:
    scale()
    copy_kinds()
    ray_engine()


if __name__ == "__main__":
    main()
