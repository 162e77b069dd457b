"""Duplicate decisions at scale, vectorised: exact (sha256), near (pHash within k AND dHash
within kd, as shown or mirrored, found by `filters.mih`), optional semantic (CLIP cosine >= t),
and against earlier runs' hash indexes.

1. Inputs with the same (pHash, dHash), byte-identical ones among them, collapse into one node
   led by their best copy: a hash repeated 100k times costs one sort, not 100k^2 / 2 pairs.
2. Near pairs are searched among the distinct nodes and confirmed on both hashes.
3. Clusters are leader clusters, not connected components: nodes are visited best copy first,
   and a node joins the best already-chosen representative it is confirmed near to, else it
   becomes one. Every dropped sample is within the radius of its own representative; A~B~C
   never puts A and C together through B.

The best copy (`best_first`): an earlier run's sample (already in the training set), then no
added border or letterbox, then the highest JPEG quality (90 and above count as equal; PNG and
WebP count as 90), then the most pixels, the highest aesthetic, the smallest key.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from filters.mih import Hashes, Pairs, near_pairs
from schemas.reasons import Reason
from schemas.record import DEDUP

BORDERED = 0.02        # letterbox fraction above which a copy counts as bordered
QUALITY_PLATEAU = 90   # JPEG qualities at or above this are not told apart


def semantic_pairs(emb: np.ndarray, threshold: float, partitions: int | None = None, seed: int = 0,
                   iters: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Pairs with cosine similarity >= threshold, compared only within k-means partitions.

    Each embedding joins its two nearest centroids, so pairs near a partition border are still
    compared; work is about n^2 / partitions instead of n^2. Approximate by design.
    """
    n = len(emb)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
    p = partitions or max(1, int(np.sqrt(n)))
    rng = np.random.default_rng(seed)
    centroids = x[rng.choice(n, size=min(p, n), replace=False)]
    for _ in range(iters):
        assign = np.argmax(x @ centroids.T, axis=1)
        for c in range(len(centroids)):
            members = x[assign == c]
            if len(members):
                v = members.mean(axis=0)
                centroids[c] = v / max(np.linalg.norm(v), 1e-12)
    sims = x @ centroids.T
    top2 = np.argsort(-sims, axis=1)[:, :2]
    left, right = [], []
    for c in range(len(centroids)):
        idx = np.flatnonzero((top2 == c).any(axis=1))
        if len(idx) < 2:
            continue
        s = x[idx] @ x[idx].T
        a, b = np.nonzero(np.triu(s >= threshold, k=1))
        left.append(idx[a])
        right.append(idx[b])
    if not left:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    pair = np.unique(np.minimum(np.concatenate(left), np.concatenate(right)) * n + np.maximum(np.concatenate(left), np.concatenate(right)))
    return pair // n, pair % n


def best_first(keys: np.ndarray, pixels, aesthetic, letterbox, jpeg_quality, prior: int) -> np.ndarray:
    """Rank of every input (0 = best copy) by the rule in the module docstring."""
    n = len(keys)
    def nan_to(a, v):
        return np.nan_to_num(np.asarray(a, dtype=np.float64), nan=v)
    bordered = nan_to(letterbox, 0.0) > BORDERED
    quality = np.minimum(nan_to(jpeg_quality, QUALITY_PLATEAU), QUALITY_PLATEAU)
    order = np.lexsort((keys, -nan_to(aesthetic, -np.inf), -nan_to(pixels, 0.0), -quality, bordered, np.arange(n) >= prior))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    return rank


def collapse(hashes: Hashes | None, sha256: np.ndarray | None, n: int) -> np.ndarray:
    """Node of every input: one per distinct (pHash, dHash) (or sha256 without hashes)."""
    if hashes is not None:
        order = np.lexsort((hashes.d, hashes.p))
        p, d = hashes.p[order], hashes.d[order]
        new = np.concatenate(([True], (p[1:] != p[:-1]) | (d[1:] != d[:-1])))
    elif sha256 is not None:
        order = np.argsort(sha256, kind="stable")
        s = sha256[order]
        new = np.concatenate(([True], s[1:] != s[:-1]))
    else:
        return np.arange(n)
    node = np.empty(n, np.int64)
    node[order] = np.cumsum(new) - 1
    return node


def leader_clusters(n: int, i: np.ndarray, j: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Representative of each of n nodes: visited by rank, a node joins the best-ranked
    representative among its neighbours (edges i-j), or represents itself."""
    rep = np.arange(n)
    if len(i) == 0:
        return rep
    a, b = np.concatenate([i, j]), np.concatenate([j, i])
    order = np.lexsort((rank[b], a))          # neighbours of a node, best-ranked first
    a, b = a[order], b[order]
    start = np.searchsorted(a, np.arange(n + 1))
    is_rep = np.zeros(n, bool)
    nodes = np.unique(a)
    for u in nodes[np.argsort(rank[nodes])].tolist():
        for v in b[start[u]:start[u + 1]].tolist():
            if is_rep[v]:
                rep[u] = v
                break
        else:
            is_rep[u] = True
    return rep


def deduplicate(keys: np.ndarray, sha256: np.ndarray, hashes: Hashes, pixels: np.ndarray, aesthetic: np.ndarray,
                letterbox: np.ndarray | None = None, jpeg_quality: np.ndarray | None = None,
                *, exact: bool = True, near: bool = True, k: int = 10, kd: int = 12,
                embeddings: np.ndarray | None = None, semantic_threshold: float | None = None, prior: int = 0,
                pair_finder: Callable[[Hashes, int, int], Pairs] = near_pairs) -> pa.Table:
    """Decisions for every input. The first `prior` inputs come from earlier runs: they are
    never dropped and win their clusters; rows are returned for the others only."""
    keys = np.asarray(keys).astype(str)  # fixed-width: sorts in C, not by Python comparisons
    n = len(keys)
    if n == prior:  # nothing staged in this run
        return DEDUP.empty_table()
    sha = np.asarray(sha256).astype(str)
    none = np.full(n, np.nan)
    rank = best_first(keys, pixels, aesthetic, none if letterbox is None else letterbox,
                      none if jpeg_quality is None else jpeg_quality, prior)
    node = collapse(hashes if near else None, sha if exact else None, n)
    nodes = node.max() + 1
    node_rank = np.full(nodes, n, np.int64)
    np.minimum.at(node_rank, node, rank)
    by_rank = np.empty(n, np.int64)
    by_rank[rank] = np.arange(n)
    leader = by_rank[node_rank]                  # best copy of each node
    ei, ej = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    if near and nodes > 1:
        found = pair_finder(hashes.take(leader), k, kd)
        ei.append(found.i)
        ej.append(found.j)
    if semantic_threshold is not None and embeddings is not None:
        si, sj = semantic_pairs(embeddings, semantic_threshold)
        ei.append(node[si])
        ej.append(node[sj])
    ei, ej = np.concatenate(ei), np.concatenate(ej)
    apart = ei != ej
    rep_node = leader_clusters(nodes, ei[apart], ej[apart], node_rank)
    rep = leader[rep_node[node]]
    dropped = rep != np.arange(n)
    in_cluster = np.bincount(rep, minlength=n)[rep] > 1
    pdist = _phash_distance(hashes, rep) if near else np.zeros(n, np.int64)
    near_rep = (node == node[rep]) | (_confirmed(hashes, rep, k, kd) if near else False)
    reason = np.full(n, None, dtype=object)
    reason[dropped] = Reason.SEMANTIC_DUPLICATE.value
    reason[dropped & near_rep] = Reason.NEAR_DUPLICATE.value
    reason[dropped & (sha == sha[rep])] = Reason.EXACT_DUPLICATE.value
    reason[dropped & (rep < prior)] = Reason.EARLIER_RUN_DUPLICATE.value
    rep_key = keys[rep]
    own = slice(prior, n)
    return pa.table({
        "key": pa.array(keys[own].tolist(), pa.string()),
        "keep": pa.array(~dropped[own]),
        "reason": pa.array(reason[own], pa.string()),
        "dup_cluster": pa.array(np.where(in_cluster, rep_key.astype(object), None)[own], pa.string()),
        "near_duplicate_of": pa.array(np.where(dropped, rep_key.astype(object), None)[own], pa.string()),
        "distance": pa.array(np.where(dropped & near_rep, pdist, None)[own], pa.int32()),
    }, schema=DEDUP)


def _phash_distance(h: Hashes, rep: np.ndarray) -> np.ndarray:
    """pHash distance to the representative, as shown or mirrored, whichever is closer."""
    dist = np.bitwise_count(h.p ^ h.p[rep])
    if h.pm is not None:
        dist = np.minimum(dist, np.bitwise_count(h.p ^ h.pm[rep]))
    return dist.astype(np.int64)


def _confirmed(h: Hashes, rep: np.ndarray, k: int, kd: int) -> np.ndarray:
    ok = (np.bitwise_count(h.p ^ h.p[rep]) <= k) & (np.bitwise_count(h.d ^ h.d[rep]) <= kd)
    if h.pm is not None:
        ok |= (np.bitwise_count(h.p ^ h.pm[rep]) <= k) & (np.bitwise_count(h.d ^ h.dm[rep]) <= kd)
    return ok
