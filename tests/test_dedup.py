"""Duplicate clustering: multi-index hashing equals a brute-force all-pairs computation, the
representative rule, semantic and earlier-run dedup, and the Ray shuffle engine."""

import itertools

import numpy as np
import pytest

from filters.dedup import deduplicate, near_pairs, semantic_pairs
from filters.mih import mih_pairs, plan


def planted(rng, n_clusters: int, size: int, k: int, noise: int) -> np.ndarray:
    hashes = []
    for _ in range(n_clusters):
        base = int(rng.integers(0, 2**63)) << 1 | int(rng.integers(0, 2))
        hashes.append(base)
        for _ in range(size - 1):
            flips = rng.choice(64, size=int(rng.integers(0, k + 1)), replace=False)
            hashes.append(base ^ sum(1 << int(b) for b in flips))
    hashes += [int(rng.integers(0, 2**63)) << 1 for _ in range(noise)]
    return np.array(hashes, dtype=np.uint64)


def brute_force_clusters(hashes, k: int) -> set[frozenset[int]]:
    parent = list(range(len(hashes)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i
    for i, j in itertools.combinations(range(len(hashes)), 2):
        if (int(hashes[i]) ^ int(hashes[j])).bit_count() <= k:
            parent[find(i)] = find(j)
    groups = {}
    for i in range(len(hashes)):
        groups.setdefault(find(i), set()).add(i)
    return {frozenset(g) for g in groups.values()}


def decide(hashes, k, **kw):
    n = len(hashes)
    keys = np.array([f"k{i:05d}" for i in range(n)], dtype=object)
    shas = kw.pop("sha", np.array([f"sha{i}" for i in range(n)], dtype=object))
    return deduplicate(keys, shas, hashes, kw.pop("pixels", np.ones(n)), kw.pop("aesthetic", np.full(n, np.nan)), k=k, **kw).to_pylist()


@pytest.mark.parametrize("k", [0, 2, 5, 8, 12])
def test_clusters_equal_brute_force(k):
    rng = np.random.default_rng(k)
    hashes = planted(rng, n_clusters=40, size=4, k=k, noise=300)
    rows = decide(hashes, k)
    got = {}
    for i, r in enumerate(rows):
        got.setdefault(r["dup_cluster"] or r["key"], set()).add(i)
    assert {frozenset(g) for g in got.values()} == brute_force_clusters(hashes, k)
    for r in rows:
        if not r["keep"]:
            assert r["reason"] == "near_duplicate" and r["near_duplicate_of"] == r["dup_cluster"]


@pytest.mark.parametrize("k, m", [(3, None), (6, 2), (6, 7), (10, 3), (10, None)])
def test_multi_index_hashing_finds_exactly_the_pairs_within_k(k, m):
    rng = np.random.default_rng(100 + k)
    hashes = planted(rng, 60, 3, k, 500)
    want = set(zip(*[a.tolist() for a in near_pairs(hashes, k)]))
    got = set(zip(*[a.tolist() for a in mih_pairs(hashes, k, m=m, chunk=97)]))
    assert got == want and len(want) >= 60


def test_planner_widens_bands_as_inputs_grow():
    assert plan(1_000, 3) == (4, 0)          # k+1 bands sharing a whole band, while buckets stay small
    m, r = plan(10_000_000, 4)
    assert m < 5 and r >= 1


def test_representative_is_most_pixels_then_aesthetic_then_key():
    h = np.array([0b1011 << 40, (0b1011 << 40) ^ 1, (0b1011 << 40) ^ 2, (0b1011 << 40) ^ 4], dtype=np.uint64)
    rows = decide(h, 4, pixels=np.array([100, 400, 400, 400]), aesthetic=np.array([np.nan, 5.0, 6.0, 6.0]))
    assert [r["keep"] for r in rows] == [False, False, True, False]
    assert {r["near_duplicate_of"] for r in rows if not r["keep"]} == {"k00002"}
    assert all(r["dup_cluster"] == "k00002" for r in rows)


def test_exact_duplicates_and_earlier_runs():
    b = 0xFF << 8
    p = 0xFFFF << 48
    h = np.array([p, p ^ 1, b, b, b ^ 3, 0xFF0F << 20], dtype=np.uint64)
    sha = np.array(["old", "a", "same", "same", "d", "e"], dtype=object)
    rows = decide(h, 2, sha=sha, prior=1)
    assert len(rows) == 5  # no row for the earlier run's sample
    assert [r["keep"] for r in rows] == [False, True, False, False, True]
    assert rows[0]["reason"] == "earlier_run_duplicate" and rows[0]["near_duplicate_of"] == "k00000"
    assert rows[2]["reason"] == "exact_duplicate" and rows[2]["near_duplicate_of"] == "k00002"
    assert rows[3]["reason"] == "near_duplicate" and rows[3]["distance"] == 2


def test_semantic_pairs_match_brute_force_on_clustered_embeddings():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(30, 16))
    emb = np.concatenate([c + rng.normal(scale=0.02, size=(5, 16)) for c in centres])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sims = emb @ emb.T
    want = {(i, j) for i, j in itertools.combinations(range(len(emb)), 2) if sims[i, j] >= 0.98}
    got = set(zip(*[a.tolist() for a in semantic_pairs(emb, 0.98, partitions=6)]))
    assert got == want and len(want) >= 30 * 10 * 0.9


def test_ray_shuffle_engine_equals_the_local_engine(ray_cluster):
    from curate.phases.dedup import ray_mih_pairs

    rng = np.random.default_rng(8)
    hashes = planted(rng, 50, 4, 6, 2000)
    local = set(zip(*[a.tolist() for a in mih_pairs(hashes, 6)]))
    shuffled = set(zip(*[a.tolist() for a in ray_mih_pairs(hashes, 6)]))
    assert shuffled == local and len(local) >= 150
