"""Exact Hamming-radius search over 64-bit hashes by multi-index hashing (Norouzi et al. 2012).

Split the 64 bits into m bands. If two hashes differ in at most k bits, some band differs
in at most r = floor(k / m) bits (pigeonhole). So: index each band, probe every hash's band
value XOR each mask of at most r bits, verify each candidate pair on all 64 bits. With
m = k + 1 (r = 0) a pair is a candidate when it shares a whole band; for large inputs fewer,
wider bands with r >= 1 keep buckets small. `plan` picks m from a cost model of the input
size; every returned pair is verified, and no pair within k is missed.
"""

from __future__ import annotations

import itertools
from math import comb, log2

import numpy as np


def band_layout(m: int) -> list[tuple[int, int]]:
    """(shift, width) of each of m bands covering 64 bits as evenly as possible."""
    widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
    shifts = [sum(widths[:i]) for i in range(m)]
    return list(zip(shifts, widths))


def probes(width: int, r: int) -> int:
    return sum(comb(width, i) for i in range(r + 1))


def plan(n: int, k: int) -> tuple[int, int]:
    """(m, r) minimising estimated work: probes (lookups) plus random candidates to verify."""
    best = None
    for m in range(1, min(k + 1, 64) + 1):
        r = k // m
        widths = [w for _, w in band_layout(m)]
        lookups = sum(probes(w, r) for w in widths) * n
        candidates = sum(probes(w, r) * n * n / 2 ** w for w in widths) / 2
        cost = lookups * (1 + 0.1 * log2(max(n, 2))) + 4 * candidates
        if best is None or cost < best[0]:
            best = (cost, m, r)
    return best[1], best[2]


def masks(width: int, r: int) -> np.ndarray:
    """Every `width`-bit mask with at most r bits set."""
    out = [0]
    for d in range(1, r + 1):
        out += [sum(1 << b for b in bits) for bits in itertools.combinations(range(width), d)]
    return np.array(out, dtype=np.uint64)


def mih_pairs(hashes: np.ndarray, k: int, m: int | None = None, chunk: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i < j) with Hamming distance <= k, each once."""
    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(h)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if m is None:
        m, r = plan(n, k)
    else:
        r = k // m
    found_i, found_j = [], []
    for shift, width in band_layout(m):
        vals = (h >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        # work in band-sorted order: buckets are contiguous, so candidate reads stay local
        order = np.argsort(vals, kind="stable")
        vals_s, h_s = vals[order], h[order]
        span = _bucket_span(vals_s, width)
        per_query = max(1.0, n / 2 ** width)  # expected bucket size: bounds the arrays of one chunk
        step = int(min(chunk, max(4096, 2e7 / per_query)))
        for mask in masks(width, r):
            for start in range(0, n, step):
                p = np.arange(start, min(start + step, n), dtype=np.int64)
                probe = vals_s[p] ^ mask
                if mask:  # a pair of different band values is found from its smaller side only
                    up = probe > vals_s[p]
                    p, probe = p[up], probe[up]
                lo, cnt = span(probe)
                total = int(cnt.sum())
                if total == 0:
                    continue
                a = np.repeat(p, cnt)
                b = np.repeat(lo, cnt) + (np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt))
                ha = np.repeat(h_s[p], cnt)
                if not mask:  # within one bucket: each pair once, not with itself
                    keep = a < b
                    a, b, ha = a[keep], b[keep], ha[keep]
                close = np.bitwise_count(ha ^ h_s[b]) <= k
                i, j = order[a[close]], order[b[close]]
                found_i.append(np.minimum(i, j))
                found_j.append(np.maximum(i, j))
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    pair = np.unique(i * n + j)  # a pair can surface in several bands
    return pair // n, pair % n


def _bucket_span(sorted_vals: np.ndarray, width: int):
    """probe values -> (first position, count) of equal values in `sorted_vals`."""
    if width <= 24:  # direct addressing
        counts = np.bincount(sorted_vals.astype(np.int64), minlength=1 << width)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))

        def span(probe):
            q = probe.astype(np.int64)
            return starts[q], counts[q]
    else:
        def span(probe):
            lo = np.searchsorted(sorted_vals, probe, "left")
            return lo, np.searchsorted(sorted_vals, probe, "right") - lo
    return span
