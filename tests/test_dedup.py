"""Duplicate clustering: equals a brute-force all-pairs computation; the representative rule."""

import itertools

import numpy as np
import pytest

from filters.dedup import deduplicate, near_pairs


def planted(rng, n_clusters: int, size: int, k: int, noise: int) -> list[int]:
    hashes = []
    for _ in range(n_clusters):
        base = int(rng.integers(0, 2**63)) << 1 | int(rng.integers(0, 2))
        hashes.append(base)
        for _ in range(size - 1):
            flips = rng.choice(64, size=int(rng.integers(0, k + 1)), replace=False)
            hashes.append(base ^ sum(1 << int(b) for b in flips))
    hashes += [int(rng.integers(0, 2**63)) << 1 for _ in range(noise)]
    return hashes


def brute_force_clusters(hashes: list[int], k: int) -> set[frozenset[int]]:
    parent = list(range(len(hashes)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for i, j in itertools.combinations(range(len(hashes)), 2):
        if (hashes[i] ^ hashes[j]).bit_count() <= k:
            parent[find(i)] = find(j)
    groups = {}
    for i in range(len(hashes)):
        groups.setdefault(find(i), set()).add(i)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("k", [0, 3, 8, 12])
def test_clusters_equal_brute_force(k):
    rng = np.random.default_rng(k)
    hashes = planted(rng, n_clusters=30, size=4, k=k, noise=200)
    keys = [f"k{i:04d}" for i in range(len(hashes))]
    decisions = deduplicate(keys, [f"sha{i}" for i in range(len(hashes))], hashes, [1] * len(hashes), [None] * len(hashes), k=k)
    got = {}
    for i, d in enumerate(decisions):
        got.setdefault(d.dup_cluster or d.key, set()).add(i)
    assert {frozenset(g) for g in got.values()} == brute_force_clusters(hashes, k)
    assert all(d.distance is None or d.distance <= 64 for d in decisions)


def test_near_pairs_chunking_is_exact():
    rng = np.random.default_rng(1)
    hashes = np.array(planted(rng, 20, 3, 6, 100), dtype=np.uint64)
    a, b = near_pairs(hashes, 6, budget=97)  # tiny budget forces many chunks
    got = set(zip(a.tolist(), b.tolist()))
    want = {(i, j) for i, j in itertools.combinations(range(len(hashes)), 2) if (int(hashes[i]) ^ int(hashes[j])).bit_count() <= 6}
    assert got == want


def test_representative_is_most_pixels_then_aesthetic_then_key():
    h = 0b1011 << 40
    keys = ["a", "b", "c", "d"]
    d = deduplicate(keys, ["1", "2", "3", "4"], [h, h ^ 1, h ^ 2, h ^ 4], [100, 400, 400, 400], [None, 5.0, 6.0, 6.0], k=4)
    assert [x.keep for x in d] == [False, False, True, False]
    assert {x.near_duplicate_of for x in d if not x.keep} == {"c"}
    assert all(x.dup_cluster == "c" for x in d)


def test_exact_duplicates_point_at_the_kept_copy():
    d = deduplicate(["b", "a", "c"], ["same", "same", "other"], [1, 1, 2**40], [10, 10, 10], [None] * 3, near=False)
    assert [x.keep for x in d] == [False, True, True]
    assert d[0].reason == "exact_duplicate" and d[0].near_duplicate_of == "a"
