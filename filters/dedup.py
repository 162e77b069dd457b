"""Duplicate clustering: exact (sha256) then near (64-bit pHash within Hamming distance k).

Representative of a cluster, the one kept: most pixels, then highest aesthetic, then
smallest key. Every other member records `near_duplicate_of` (the representative) and
`dup_cluster` (the representative's key, which names the cluster).

Near-duplicate pairs come from a chunked all-pairs comparison (vectorised XOR + popcount);
it is exact, and linear in memory but quadratic in time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.reasons import Reason


@dataclass
class Decision:
    key: str
    keep: bool
    reason: str | None = None
    dup_cluster: str | None = None
    near_duplicate_of: str | None = None
    distance: int | None = None


class UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def near_pairs(hashes: np.ndarray, k: int, budget: int = 1 << 24) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i < j) whose 64-bit hashes differ in at most k bits."""
    h = hashes.astype(np.uint64)
    chunk = max(1, budget // max(len(h), 1))  # bounds the distance matrix to `budget` cells
    left, right = [], []
    for start in range(0, len(h), chunk):
        block = h[start:start + chunk]
        dist = np.bitwise_count(block[:, None] ^ h[None, :])
        i, j = np.nonzero(dist <= k)
        i = i + start
        keep = i < j
        left.append(i[keep])
        right.append(j[keep])
    if not left:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(left), np.concatenate(right)


def rank_order(keys: list[str], pixels: list[int], aesthetic: list[float | None]) -> list[int]:
    """Indices best-first by the representative rule."""
    def rank(i: int):
        a = aesthetic[i]
        return (-pixels[i], -(a if a is not None else float("-inf")), keys[i])
    return sorted(range(len(keys)), key=rank)


def deduplicate(keys: list[str], sha256: list[str], phash: list[int], pixels: list[int],
                aesthetic: list[float | None], exact: bool = True, near: bool = True, k: int = 10) -> list[Decision]:
    n = len(keys)
    order = rank_order(keys, pixels, aesthetic)
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    decisions = {i: Decision(keys[i], True) for i in range(n)}
    survivors = list(range(n))
    if exact:
        best_by_sha: dict[str, int] = {}
        for i in order:
            rep = best_by_sha.setdefault(sha256[i], i)
            if rep != i:
                decisions[i] = Decision(keys[i], False, Reason.EXACT_DUPLICATE.value, keys[rep], keys[rep], 0)
                decisions[rep].dup_cluster = keys[rep]
        survivors = [i for i in range(n) if decisions[i].keep]
    if near and len(survivors) > 1:
        idx = np.array(survivors)
        hashes = np.array([phash[i] for i in survivors], dtype=np.uint64)
        a, b = near_pairs(hashes, k)
        uf = UnionFind(len(idx))
        for x, y in zip(a.tolist(), b.tolist()):
            uf.union(x, y)
        clusters: dict[int, list[int]] = {}
        for local in range(len(idx)):
            clusters.setdefault(uf.find(local), []).append(int(idx[local]))
        for members in clusters.values():
            if len(members) == 1:
                continue
            rep = min(members, key=lambda i: position[i])
            decisions[rep].dup_cluster = decisions[rep].dup_cluster or keys[rep]
            for i in members:
                if i != rep:
                    dist = (int(phash[i]) ^ int(phash[rep])).bit_count()
                    decisions[i] = Decision(keys[i], False, Reason.NEAR_DUPLICATE.value, decisions[rep].dup_cluster, keys[rep], dist)
            # exact duplicates of a member now belong to the merged cluster too
            member_keys = {keys[i] for i in members}
            for d in decisions.values():
                if not d.keep and d.reason == Reason.EXACT_DUPLICATE.value and d.near_duplicate_of in member_keys and d.near_duplicate_of != keys[rep]:
                    d.dup_cluster = decisions[rep].dup_cluster
    return [decisions[i] for i in range(n)]
