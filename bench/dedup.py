"""Dedup at scale: synthetic 64-bit hash sets (100k, 1M, 10M) with planted near-duplicate
clusters, through the same `deduplicate` the pipeline runs (multi-index hashing, clusters,
representatives). Seconds, peak memory, growth per 10x, and at 100k the ratio against an
all-pairs numpy baseline run in the same process. Targets: 10M < 10 min, growth < 15x per 10x.

Each size runs in its own process so its peak memory is its own.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

K = 4            # pHash Hamming radius for the scale runs (see README: cost grows steeply with k)
SIZES = [100_000, 1_000_000, 10_000_000]


def synthetic(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """n hashes: 2% in planted clusters of 4 (each member within k bits of its centre), rest random."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, np.iinfo(np.int64).max, size=n, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    clusters = n // 200
    centres = h[: clusters]
    for member in range(1, 4):
        flips = np.zeros(clusters, np.uint64)
        for _ in range(k):  # up to k distinct random bits (repeats cancel, so <= k)
            bit = rng.integers(0, 64, size=clusters).astype(np.uint64)
            flips |= np.uint64(1) << bit
        h[clusters * member: clusters * (member + 1)] = centres ^ flips
    keys = np.char.add("k", np.arange(n).astype("U12"))
    return h, keys, clusters


def run_one(n: int, k: int, baseline: bool) -> dict:
    from filters.dedup import deduplicate, near_pairs

    h, keys, clusters = synthetic(n, k)
    sha = keys  # distinct bytes: exact dedup finds nothing, near dedup does the work
    t = time.perf_counter()
    table = deduplicate(keys, sha, h, np.ones(n), np.full(n, np.nan), k=k)
    seconds = time.perf_counter() - t
    dropped = n - sum(table["keep"].to_pylist())
    out = {"n": n, "k": k, "seconds": seconds, "dropped": dropped, "planted_dropped": 3 * clusters,
           "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if baseline:
        t = time.perf_counter()
        i, _ = near_pairs(h, k)
        out["baseline_seconds"] = time.perf_counter() - t
        out["baseline_pairs"] = len(i)
    return out


def main() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_DEDUP_SIZES", ",".join(map(str, SIZES))).split(",")]
    rows = []
    for n in sizes:
        cmd = [sys.executable, "-c", f"import json, bench.dedup as b; print(json.dumps(b.run_one({n}, {K}, {n <= 100_000})))"]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"n={n:>11,}  k={K}  {r['seconds']:8.1f} s  peak {r['peak_mb']:7.0f} MB  dropped {r['dropped']:,} "
              f"(planted {r['planted_dropped']:,})", flush=True)
    for a, b in itertools.pairwise(rows):
        print(f"growth {a['n']:,} -> {b['n']:,}: time x{b['seconds'] / a['seconds']:.1f}, memory x{b['peak_mb'] / a['peak_mb']:.1f}")
    first = rows[0]
    if "baseline_seconds" in first:
        print(f"at n={first['n']:,}: curate {first['seconds']:.2f} s vs all-pairs numpy {first['baseline_seconds']:.2f} s "
              f"-> {first['baseline_seconds'] / first['seconds']:.1f}x")


if __name__ == "__main__":
    main()
