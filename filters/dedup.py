"""Duplicate clustering at scale, vectorised: exact (sha256), near (64-bit pHash within
Hamming distance k, by multi-index hashing), optional semantic (CLIP cosine >= t), and
against earlier runs' hash indexes.

Edges from all kinds join connected components (union-find via scipy's csgraph). Each
component keeps one representative: a prior run's sample if there is one (it is already in
the training set), else the most pixels, then the highest aesthetic, then the smallest key.
Every other member is dropped with `near_duplicate_of` = the representative's key and
`dup_cluster` = the same key (which names the cluster); its reason says how it relates to
the representative: same bytes, near pHash, near embedding, or an earlier run's sample.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from filters.mih import mih_pairs
from schemas.reasons import Reason
from schemas.record import DEDUP


def near_pairs(hashes: np.ndarray, k: int, budget: int = 1 << 24) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i < j) within distance k by comparing every pair (the exact baseline)."""
    h = hashes.astype(np.uint64)
    chunk = max(1, budget // max(len(h), 1))  # bounds the distance matrix to `budget` cells
    left, right = [], []
    for start in range(0, len(h), chunk):
        dist = np.bitwise_count(h[start:start + chunk, None] ^ h[None, :])
        i, j = np.nonzero(dist <= k)
        i = i + start
        keep = i < j
        left.append(i[keep])
        right.append(j[keep])
    if not left:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(left), np.concatenate(right)


def exact_pairs(sha256: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining every input to the first input with the same bytes."""
    _, first, inverse = np.unique(sha256, return_index=True, return_inverse=True)
    i = np.arange(len(sha256))
    j = first[inverse]
    same = i != j
    return j[same], i[same]


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


def components(n: int, edges: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    i = np.concatenate([e[0] for e in edges] + [np.empty(0, np.int64)]).astype(np.int64)
    j = np.concatenate([e[1] for e in edges] + [np.empty(0, np.int64)]).astype(np.int64)
    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def deduplicate(keys: np.ndarray, sha256: np.ndarray, phash: np.ndarray, pixels: np.ndarray, aesthetic: np.ndarray,
                *, exact: bool = True, near: bool = True, k: int = 10, embeddings: np.ndarray | None = None,
                semantic_threshold: float | None = None, prior: int = 0, pair_finder=mih_pairs) -> pa.Table:
    """Decisions for every input. The first `prior` inputs come from earlier runs: they are
    never dropped and win their clusters; rows are returned for the others only."""
    keys = np.asarray(keys).astype(str)  # fixed-width: sorts in C, not by Python comparisons
    n = len(keys)
    if n == prior:  # nothing staged in this run
        return DEDUP.empty_table()
    phash = np.asarray(phash, dtype=np.uint64)
    edges = []
    if exact:
        edges.append(exact_pairs(np.asarray(sha256).astype(str)))
    if near:
        edges.append(pair_finder(phash, k))
    labels = components(n, edges)
    if semantic_threshold is not None and embeddings is not None:
        labels_all = components(n, [*edges, semantic_pairs(embeddings, semantic_threshold)])
    else:
        labels_all = labels
    aes = np.nan_to_num(np.asarray(aesthetic, dtype=np.float64), nan=-np.inf)
    is_prior = np.arange(n) < prior
    order = np.lexsort((keys, -aes, -np.asarray(pixels, dtype=np.float64), ~is_prior))
    comp_sorted = labels_all[order]
    _, first = np.unique(comp_sorted, return_index=True)
    rep_of_comp = np.empty(labels_all.max() + 1, np.int64)
    rep_of_comp[comp_sorted[first]] = order[first]
    rep = rep_of_comp[labels_all]
    sizes = np.bincount(labels_all)
    in_cluster = sizes[labels_all] > 1
    dropped = rep != np.arange(n)
    sha = np.asarray(sha256).astype(str)
    reason = np.full(n, None, dtype=object)
    reason[dropped & (labels != labels[rep])] = Reason.SEMANTIC_DUPLICATE.value
    reason[dropped & (labels == labels[rep])] = Reason.NEAR_DUPLICATE.value
    reason[dropped & (labels == labels[rep]) & (sha == sha[rep])] = Reason.EXACT_DUPLICATE.value
    reason[dropped & is_prior[rep]] = Reason.EARLIER_RUN_DUPLICATE.value
    rep_key = keys[rep]
    own = slice(prior, n)
    return pa.table({
        "key": pa.array(keys[own].tolist(), pa.string()),
        "keep": pa.array(~dropped[own]),
        "reason": pa.array(reason[own], pa.string()),
        "dup_cluster": pa.array(np.where(in_cluster, rep_key.astype(object), None)[own], pa.string()),
        "near_duplicate_of": pa.array(np.where(dropped, rep_key.astype(object), None)[own], pa.string()),
        "distance": pa.array(np.where(dropped, np.bitwise_count(phash ^ phash[rep]), None)[own], pa.int32()),
    }, schema=DEDUP)
