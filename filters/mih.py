"""Near-duplicate search over two 64-bit hashes (pHash, dHash) by conjunctive multi-index hashing.

A pair is a near-duplicate when its pHashes differ in at most k bits AND its dHashes in at
most kd bits (the dHash confirms the pHash: two different pictures rarely pass both), in the
pictures as shown or with one of them mirrored left-right.

Candidates: split the pHash into m1 bands and the dHash into m2 bands. Two hashes within
m1 - 1 bits share a whole pHash band (pigeonhole), and likewise for the dHash. So one table
per (pHash band, dHash band) combination, keyed on both bands, brings together every pair
within (m1 - 1, m2 - 1) bits: exactly, whatever the data. Pairs farther apart (up to k, kd)
share a key by chance, with a probability the bench measures. A table is one sort of n keys
(2n with the mirrored hashes) and wide keys keep its buckets small, so the cost grows as
n log n per table, not as n^2 (exact search at k = 10 over 64 bits would need thousands of
probes per hash at 10M, see README). `plan` picks (m1, m2) from the input size.

Every candidate is verified on both full hashes; buckets too large to compare all their pairs
(one picture in thousands of slightly different versions) are compared in a sliding window
over their pHash order, so memory and time stay bounded on skewed data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import log2

import numpy as np
import pyarrow as pa

# The bits of a 256-bit hash (`curate.imaging.phash_long`) that a left-right mirror flips: the
# signs of the odd horizontal frequencies. As four words, like `Hashes.long`.
_ODD_COLUMNS = np.zeros((16, 16), bool)
_ODD_COLUMNS[:, 1::2] = True
LONG_MIRROR = np.frombuffer(np.packbits(_ODD_COLUMNS).tobytes(), np.uint64)
PHASH_SLACK = 6


def fixed_bytes(values, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(n x width bytes, known) from values of `width` bytes each (a list, or an Arrow binary
    column), None or another length where missing (an earlier run's index)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        col = pa.concat_arrays(values.chunks) if isinstance(values, pa.ChunkedArray) else values
        if len(col) == 0 or col.type != pa.binary(width):
            return fixed_bytes(col.to_pylist(), width)
        raw = np.frombuffer(col.buffers()[1], np.uint8)[width * col.offset:width * (col.offset + len(col))]
        return raw.reshape(-1, width).copy(), col.is_valid().to_numpy(zero_copy_only=False)
    values = list(values)
    known = np.array([v is not None and len(v) == width for v in values], bool)
    raw = b"".join(v if ok else bytes(width) for v, ok in zip(values, known))
    return np.frombuffer(raw, np.uint8).reshape(-1, width).copy(), known


def long_words(values) -> tuple[np.ndarray, np.ndarray]:
    """(n x 4 words, known) from 32-byte hashes (`fixed_bytes`)."""
    raw, known = fixed_bytes(values, 32)
    return raw.view(np.uint64), known


@dataclass
class Hashes:
    """Per picture: pHash and dHash as shown (`p`, `d`) and of the mirror image (`pm`, `dm`);
    optionally the 256-bit pHash as four words (`long`, n x 4) and where it is known; optionally
    its window hashes (`filters.windows`: pHash, dHash n x W, 256-bit n x W x 4) and where known."""

    p: np.ndarray
    d: np.ndarray
    pm: np.ndarray | None = None
    dm: np.ndarray | None = None
    long: np.ndarray | None = None
    long_known: np.ndarray | None = None
    wp: np.ndarray | None = None
    wd: np.ndarray | None = None
    wlong: np.ndarray | None = None
    w_known: np.ndarray | None = None
    thumb: np.ndarray | None = None       # n x 16 x 16 grey (uint8) of the picture inside its borders
    thumb_known: np.ndarray | None = None

    def __post_init__(self):
        for name in ("p", "d", "pm", "dm", "long", "wp", "wd", "wlong"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.ascontiguousarray(value, dtype=np.uint64))
        if self.long is not None and self.long_known is None:
            self.long_known = np.ones(len(self.p), bool)
        if self.wp is not None and self.w_known is None:
            self.w_known = np.ones(len(self.p), bool)
        if self.thumb is not None and self.thumb_known is None:
            self.thumb_known = np.ones(len(self.p), bool)

    def __len__(self) -> int:
        return len(self.p)

    def take(self, idx: np.ndarray, fine: bool = True) -> Hashes:
        """The hashes of pictures `idx`; with fine=False only the 64-bit ones a search needs."""
        def pick(a):
            return None if a is None or not fine else a[idx]
        return Hashes(self.p[idx], self.d[idx], None if self.pm is None else self.pm[idx], None if self.dm is None else self.dm[idx],
                      pick(self.long), pick(self.long_known), pick(self.wp), pick(self.wd), pick(self.wlong),
                      pick(self.w_known), pick(self.thumb), pick(self.thumb_known))

    def long_distance(self, i: np.ndarray, j: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
        """256-bit pHash distance of pairs (one side mirrored where `mirrored`); -1 where either
        side's long hash is unknown (or there are none)."""
        if self.long is None:
            return np.full(len(i), -1, np.int64)
        flip = np.where(np.asarray(mirrored, bool)[:, None], LONG_MIRROR[None, :], np.uint64(0))
        dist = np.bitwise_count(self.long[i] ^ self.long[j] ^ flip).sum(axis=1).astype(np.int64)
        return np.where(self.long_known[i] & self.long_known[j], dist, -1)


    def blocks_changed(self, i: np.ndarray, j: np.ndarray, mirrored: np.ndarray, tolerance: float = 0.15) -> np.ndarray:
        """Of the 16 blocks (4 x 4) of two pictures' thumbnails, normalised to zero mean and unit
        spread, how many differ by more than `tolerance` (mean absolute difference); -1 where
        either thumbnail is unknown. A logo or a caption added to a copy changes one or two
        blocks; another picture on the same background changes most."""
        if self.thumb is None or len(i) == 0:
            return np.full(len(i), -1, np.int64)
        a, b = _normalised(self.thumb[i]), _normalised(self.thumb[j])
        b = np.where(np.asarray(mirrored, bool)[:, None, None], b[:, :, ::-1], b)
        block = np.abs(a - b).reshape(-1, 4, 4, 4, 4).mean(axis=(2, 4))
        changed = np.count_nonzero(block > tolerance, axis=(1, 2))
        return np.where(self.thumb_known[i] & self.thumb_known[j], changed, -1)


def _normalised(thumbs: np.ndarray) -> np.ndarray:
    t = thumbs.astype(np.float32)
    return (t - t.mean(axis=(1, 2), keepdims=True)) / t.std(axis=(1, 2), keepdims=True).clip(1.0)


@dataclass
class Pairs:
    """Confirmed pairs (i < j): pHash and dHash distance, and whether one side is mirrored."""

    i: np.ndarray
    j: np.ndarray
    pdist: np.ndarray
    ddist: np.ndarray
    mirrored: np.ndarray
    stats: dict


def band_layout(m: int) -> list[tuple[int, int]]:
    """(shift, width) of each of m bands covering 64 bits as evenly as possible."""
    widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
    shifts = [sum(widths[:i]) for i in range(m)]
    return list(zip(shifts, widths))


def plan(n: int, k: int, kd: int, mirror: bool = True) -> tuple[int, int]:
    """(m1, m2): the largest exact region (pHash m1 - 1, dHash m2 - 1 bits) whose keys are wide
    enough (the narrowest key >= log2(records) + 2 bits) for buckets of under one record, so
    that candidates grow about as fast as records (at 10M, 26-bit keys made 36M candidates and
    x18 growth per 10x; 28-bit keys keep it under x15)."""
    need = log2(max(2, n * (2 if mirror else 1))) + 2
    best = None
    for m1 in range(2, k + 2):
        for m2 in range(2, kd + 2):
            if 64 // m1 + 64 // m2 < need:
                continue
            score = (min(m1, m2), m1 + m2, m1)
            if best is None or score > best[0]:
                best = (score, m1, m2)
    return (best[1], best[2]) if best else (2, 2)


def _band(h: np.ndarray, shift: int, width: int) -> np.ndarray:
    return (h >> np.uint64(shift)) & np.uint64((1 << width) - 1)


def _within_runs(sorted_keys: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Position pairs (a < b) in equal-key runs of `sorted_keys`: every pair in a run of at most
    `window` + 1, and each position with the `window` next ones in a longer run."""
    n = len(sorted_keys)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    new = np.empty(n, bool)
    new[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    run_start = starts[np.cumsum(new) - 1]
    offset = np.arange(n) - run_start
    before = np.minimum(offset, window)            # partners earlier in the same run
    pos = np.flatnonzero(before)
    cnt = before[pos]
    total = int(cnt.sum())
    b = np.repeat(pos, cnt)
    a = b - 1 - (np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    return a, b


def near_pairs(h: Hashes, k: int, kd: int, m1: int | None = None, m2: int | None = None,
               window: int = 256, chunk: int = 1 << 22) -> Pairs:
    """Every confirmed pair within (m1 - 1, m2 - 1) bits, and those farther (up to k, kd) that
    share a key. Inputs should be distinct (p, d) codes: identical ones are collapsed first."""
    n = len(h)
    mirror = h.pm is not None
    if m1 is None or m2 is None:
        m1, m2 = plan(n, k, kd, mirror)
    views_p = [h.p, h.pm] if mirror else [h.p]
    views_d = [h.d, h.dm] if mirror else [h.d]
    idx = np.tile(np.arange(n, dtype=np.int64), len(views_p))
    flipped = np.repeat(np.arange(len(views_p), dtype=np.int8), n)
    all_p, all_d = np.concatenate(views_p), np.concatenate(views_d)
    stats = {"m1": m1, "m2": m2, "tables": m1 * m2}
    found = [keyed_pairs(key, idx, flipped, all_p, all_d, k, kd, stats, window, chunk, key_bits(m1, m2))
             for key in band_keys(all_p, all_d, m1, m2)]
    return merge_pairs([f for part in found for f in part], n, stats)


def hashes_agree(pd: np.ndarray, dd: np.ndarray, k: int, kd: int) -> np.ndarray:
    """Whether pHash and dHash distances confirm each other: pHash within k and dHash within kd,
    or a pHash up to PHASH_SLACK bits farther when the dHash is within half of kd (the pHash's
    median threshold flips bits of a flat spectrum that the dHash keeps)."""
    return ((pd <= k) & (dd <= kd)) | ((pd <= k + PHASH_SLACK) & (dd <= kd // 2))


def window_plan(records: int, k: int, kd: int) -> tuple[int, int]:
    """The band plan of the window search: keys one bit narrower than `plan`'s (only inserted
    windows meet queried ones, so buckets may hold two records), for a wider exact region."""
    return plan(records // 2, k, kd, mirror=False)


def window_nodes(h: Hashes, of: np.ndarray | None) -> tuple[int, np.ndarray, np.ndarray]:
    """(nodes in all, the nodes with window hashes, the input standing for each of those) of a
    window search; `of` as in `window_pairs`."""
    of = np.arange(len(h)) if of is None else of
    nodes = np.flatnonzero(h.w_known[of]) if h.wp is not None else np.empty(0, np.int64)
    return len(of), nodes, of[nodes]


def window_pairs(h: Hashes, k: int, kd: int, kl: int, inserts: int, searched: int, of: np.ndarray | None = None,
                 bands: tuple[int, int] | None = None, window: int = 256, chunk: int = 1 << 22) -> Pairs:
    """Pairs in which one picture's inserted window (`filters.windows`: the first `inserts`) and
    the other's queried window (up to `searched`: the mirror image's queries are left to the
    direct check against a cluster's kept copy) agree on their 64-bit hashes and are within kl
    on their 256-bit pHashes: one is a crop or a small turn of the other. Searched like
    `near_pairs`, with every (picture, window) as a record (`bands`: the plan, default
    `window_plan`'s). `of`: the input standing for each node (pairs are between nodes); by
    default every input is its own node."""
    n, nodes, src = window_nodes(h, of)
    stats: dict = {}
    if len(nodes) < 2:
        return merge_pairs([], n, stats)
    w = searched
    p, d = h.wp[src, :w].ravel(), h.wd[src, :w].ravel()     # record r: window r % w of node nodes[r // w]
    m1, m2 = bands or window_plan(len(p), k, kd)
    stats.update(m1=m1, m2=m2, tables=m1 * m2)
    records = WindowRecords(lambda r: nodes[r // w], lambda r: r % w < inserts,
                            lambda ra, rb: np.bitwise_count(h.wlong[src[ra // w], ra % w] ^ h.wlong[src[rb // w], rb % w]).sum(axis=1))
    found = [f for key in band_keys(p, d, m1, m2)
             for f in records.matches(key, p, d, k, kd, kl, stats, window, chunk, key_bits(m1, m2))]
    return merge_pairs(found, n, stats)


@dataclass
class WindowRecords:
    """Window records of a search: the node each belongs to, whether it is an inserted window,
    and the 256-bit distance of record pairs (functions of record positions)."""

    node: Callable[[np.ndarray], np.ndarray]
    inserted: Callable[[np.ndarray], np.ndarray]
    fine: Callable[[np.ndarray, np.ndarray], np.ndarray]

    def matches(self, key, p, d, k, kd, kl, stats, window=256, chunk=1 << 22, bits=64) -> list[tuple]:
        """Confirmed (node, node, pHash and dHash distance, mirrored: no) pairs among records
        sharing a key: an inserted window and a queried one of two nodes."""
        rec, keys = _sharing_a_key(key, p, bits)
        a, b = _within_runs(keys, window)
        found = []
        for s in range(0, len(a), chunk):
            ra, rb = rec[a[s:s + chunk]], rec[b[s:s + chunk]]
            keep = (self.node(ra) != self.node(rb)) & (self.inserted(ra) != self.inserted(rb))
            ra, rb = ra[keep], rb[keep]
            pd = np.bitwise_count(p[ra] ^ p[rb]).astype(np.int16)
            dd = np.bitwise_count(d[ra] ^ d[rb]).astype(np.int16)
            ok = np.flatnonzero(hashes_agree(pd, dd, k, kd))
            ra, rb, pd, dd = ra[ok], rb[ok], pd[ok], dd[ok]
            ok = self.fine(ra, rb) <= kl
            stats["candidates"] = stats.get("candidates", 0) + len(keep)
            stats["confirmed"] = stats.get("confirmed", 0) + int(ok.sum())
            ia, ib = self.node(ra[ok]), self.node(rb[ok])
            found.append((np.minimum(ia, ib), np.maximum(ia, ib), pd[ok], dd[ok], np.zeros(int(ok.sum()), bool)))
        return found


def band_keys(p: np.ndarray, d: np.ndarray, m1: int, m2: int):
    """One key array per table: a pHash band and a dHash band side by side."""
    for sp, wp in band_layout(m1):
        kp = _band(p, sp, wp) << np.uint64(-(-64 // m2))  # the widest dHash band
        for sd, wd in band_layout(m2):
            yield kp | _band(d, sd, wd)


def key_bits(m1: int, m2: int) -> int:
    """Bits a band key can use: the widest pHash band beside the widest dHash band."""
    return -(-64 // m1) + -(-64 // m2)


def keyed_pairs(key, idx, flipped, p, d, k, kd, stats, window=256, chunk=1 << 22, bits=64) -> list[tuple]:
    """Confirmed pairs among records sharing a key (records: picture index, whether its
    hashes are the mirrored ones, pHash, dHash); `bits`: how many bits the keys use."""
    rec, keys = _sharing_a_key(key, p, bits)
    a, b = _within_runs(keys, window)
    return [_verify(rec[a[s:s + chunk]], rec[b[s:s + chunk]], idx, flipped, p, d, k, kd, stats)
            for s in range(0, len(a), chunk)]


def _sharing_a_key(key: np.ndarray, p: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The records whose key another record shares, sorted by key then pHash (so a long run's
    window compares near pHashes), and their keys. Most records share no key: only the sort
    touches them (one sort of key and record id packed into one word, when they fit)."""
    n = len(key)
    id_bits = max(1, (n - 1).bit_length())
    if bits + id_bits <= 64:
        packed = key << np.uint64(id_bits)
        packed |= np.arange(n, dtype=np.uint64)
        packed.sort()
        keys = packed >> np.uint64(id_bits)
    else:
        order = np.argsort(key)
        keys = key[order]
    same = keys[1:] == keys[:-1]
    shared = np.zeros(n, bool)
    shared[1:] |= same
    shared[:-1] |= same
    pos = np.flatnonzero(shared)
    rec = (packed[pos] & np.uint64((1 << id_bits) - 1)).astype(np.int64) if bits + id_bits <= 64 else order[pos]
    keys = keys[pos]
    by_p = np.lexsort((p[rec], keys))
    return rec[by_p], keys[by_p]


def _verify(ra, rb, idx, flipped, all_p, all_d, k, kd, stats) -> tuple:
    ia, ib = idx[ra], idx[rb]
    keep = (ia != ib) & ~((flipped[ra] == 1) & (flipped[rb] == 1))  # mirror-mirror repeats as-shown
    ra, rb, ia, ib = ra[keep], rb[keep], ia[keep], ib[keep]
    pd = np.bitwise_count(all_p[ra] ^ all_p[rb]).astype(np.int16)
    dd = np.bitwise_count(all_d[ra] ^ all_d[rb]).astype(np.int16)
    p_ok, d_ok = pd <= k, dd <= kd
    for name, count in (("candidates", len(ra)), ("phash_ok", int(p_ok.sum())), ("dhash_ok", int(d_ok.sum()))):
        stats[name] = stats.get(name, 0) + count
    ok = hashes_agree(pd, dd, k, kd)
    mirrored = (flipped[ra] != flipped[rb])[ok]
    return np.minimum(ia, ib)[ok], np.maximum(ia, ib)[ok], pd[ok], dd[ok], mirrored


def merge_pairs(found: list[tuple], n: int, stats: dict) -> Pairs:
    """One row per pair (found in several tables, or as shown and mirrored): the closer match."""
    if not found:
        e = np.empty(0, np.int64)
        return Pairs(e, e, e.astype(np.int16), e.astype(np.int16), e.astype(bool), stats)
    i, j, pd, dd, mirrored = (np.concatenate(c) for c in zip(*found))
    order = np.argsort((i * n + j) * 64 + pd)  # by pair, the closer match first (n up to ~3e8)
    pair = (i * n + j)[order]
    first = order[np.concatenate(([True], pair[1:] != pair[:-1]))] if len(pair) else order
    stats["pairs"] = len(first)
    return Pairs(i[first], j[first], pd[first], dd[first], mirrored[first], stats)


def all_pairs(h: Hashes, k: int, kd: int | None = None, budget: int = 1 << 24) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) with pHash within k (or, with kd, whose hashes agree: `hashes_agree`) as
    shown, by comparing every pair in numpy: the exact baseline."""
    p, d = h.p, h.d
    chunk = max(1, budget // max(len(p), 1))  # bounds the distance matrix to `budget` cells
    left, right = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for start in range(0, len(p), chunk):
        pd = np.bitwise_count(p[start:start + chunk, None] ^ p[None, :])
        close = pd <= k if kd is None else hashes_agree(pd, np.bitwise_count(d[start:start + chunk, None] ^ d[None, :]), k, kd)
        i, j = np.nonzero(close)
        i = i + start
        keep = i < j
        left.append(i[keep])
        right.append(j[keep])
    return np.concatenate(left), np.concatenate(right)
