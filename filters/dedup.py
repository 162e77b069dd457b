"""Duplicate decisions at scale, vectorised: exact (sha256), near (pHash within k AND dHash
within kd, as shown or mirrored, found by `filters.mih`, then the 256-bit pHash within kl),
optional semantic (CLIP cosine >= t), and against earlier runs' hash indexes.

1. Inputs with the same (pHash, dHash), byte-identical ones among them, collapse into one node:
   a hash repeated 100k times costs one sort, not 100k^2 / 2 pairs.
2. Near pairs are searched among the distinct nodes and confirmed on both 64-bit hashes, then
   on the 256-bit pHash where both sides have one: it keeps apart different pictures on one
   background (layout), which the 64-bit hashes cannot tell apart. Crops and small turns,
   which move the whole-picture hashes too far, are searched the same way among window hashes
   (`filters.windows`, `filters.mih.window_pairs`) and confirmed by the same three signals.
3. Clusters are leader clusters, not connected components: nodes are visited best copy first,
   and a node joins the best already-chosen representative it is confirmed near to, else it
   becomes one. Every dropped sample is within the radius of its own representative; A~B~C
   never puts A and C together through B.

The best copy (`best_first`): an earlier run's sample (already in the training set), then no
added border or letterbox, then the highest JPEG quality (90 and above count as equal; PNG and
WebP count as 90), then the most pixels, then the copy nearest its group's consensus (the
bitwise majority of the group's 256-bit pHashes, mirrored copies turned back: `off_consensus`,
and its median brightness and colourfulness: `off_colour`), the highest aesthetic, the
smallest key. Clusters are formed once by this rule without the
consensus, then again with it (their groups are only known after the first pass).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from filters.mih import LONG_MIRROR, Hashes, Pairs, near_pairs, window_pairs
from filters.windows import INSERTS, MIRRORED
from schemas.reasons import Reason
from schemas.record import DEDUP

BORDERED = 0.02        # letterbox fraction above which a copy counts as bordered
QUALITY_PLATEAU = 90   # JPEG qualities at or above this are not told apart
LONG_DISTANCE = 72     # 256-bit pHash distance at or below which a near pair is confirmed (bench/dedup)
WINDOW_LONG_DISTANCE = 75  # the same for a window match (bench/dedup)
COLOUR_WEIGHT = 100    # bits of 256-bit pHash distance to the consensus worth a 1.0 relative colour change


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


def best_first(keys: np.ndarray, pixels, aesthetic, letterbox, jpeg_quality, prior: int,
               off: np.ndarray | None = None) -> np.ndarray:
    """Rank of every input (0 = best copy) by the rule in the module docstring; `off`: every
    input's distance to its group's consensus (`off_consensus`)."""
    n = len(keys)
    def nan_to(a, v):
        return np.nan_to_num(np.asarray(a, dtype=np.float64), nan=v)
    bordered = nan_to(letterbox, 0.0) > BORDERED
    quality = np.minimum(nan_to(jpeg_quality, QUALITY_PLATEAU), QUALITY_PLATEAU)
    off = np.zeros(n) if off is None else off
    order = np.lexsort((keys, -nan_to(aesthetic, -np.inf), off, -nan_to(pixels, 0.0), -quality, bordered,
                        np.arange(n) >= prior))
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


def off_consensus(group: np.ndarray, long: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Per input, its 256-bit pHash distance to the bitwise majority of its group's (0 when alone
    or unknown). Every copy derives from the original, so the original sits on the majority,
    while an overlay or a colour shift moves a copy off it."""
    out = np.zeros(len(group), np.int64)
    size = np.bincount(group, minlength=len(group))
    idx = np.flatnonzero((size[group] > 1) & known)
    if len(idx) == 0:
        return out
    idx = idx[np.argsort(group[idx], kind="stable")]
    bits = np.unpackbits(long[idx].view(np.uint8), axis=1)
    starts = np.flatnonzero(np.concatenate(([True], group[idx][1:] != group[idx][:-1])))
    votes = np.add.reduceat(bits, starts, axis=0, dtype=np.int32)
    count = np.diff(np.append(starts, len(idx)))
    majority = (2 * votes > count[:, None]).astype(np.uint8)
    out[idx] = np.count_nonzero(bits != np.repeat(majority, count, axis=0), axis=1)
    return out


def off_colour(group: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Per input, the relative distance of its colour (columns: brightness, colourfulness) to its
    group's median, summed over columns; 0 where unknown. A colour-shifted copy keeps nearly
    every bit of the original's pHashes but not its colour."""
    out = np.zeros(len(group))
    for values in np.asarray(colour, dtype=np.float64).T:
        order = np.lexsort((values, group))
        g = group[order]
        starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
        count = np.diff(np.append(starts, len(g)))
        median = np.repeat(values[order][starts + (count - 1) // 2], count)
        dev = np.abs(values[order] - median) / np.maximum(np.abs(median), 1.0)
        out[order] += np.nan_to_num(dev, nan=0.0)
    return out


def edge_to(rep: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Per node, the index of the edge (i-j) joining it to its representative `rep`; -1 for a
    representative itself or where no edge joins them."""
    n = len(rep)
    if len(i) == 0:
        return np.full(n, -1)
    code = np.minimum(i, j) * n + np.maximum(i, j)
    order = np.argsort(code)
    want = np.minimum(np.arange(n), rep) * n + np.maximum(np.arange(n), rep)
    at = np.clip(np.searchsorted(code[order], want), 0, len(code) - 1)
    hit = (rep != np.arange(n)) & (code[order][at] == want)
    return np.where(hit, order[at], -1)


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
                pair_finder: Callable[[Hashes, int, int], Pairs] = near_pairs, kl: int = LONG_DISTANCE,
                kw: int | None = WINDOW_LONG_DISTANCE,
                stats: dict | None = None, colour: np.ndarray | None = None) -> pa.Table:
    """Decisions for every input. The first `prior` inputs come from earlier runs: they are
    never dropped and win their clusters; rows are returned for the others only. `stats`, when
    given, receives the search's counts and how many pairs the 256-bit pHash refused; `colour`
    (n x 2: brightness, colourfulness), when given, counts in the distance to the consensus."""
    keys = np.asarray(keys).astype(str)  # fixed-width: sorts in C, not by Python comparisons
    n = len(keys)
    if n == prior:  # nothing staged in this run
        return DEDUP.empty_table()
    sha = np.asarray(sha256).astype(str)
    none = np.full(n, np.nan)
    node = collapse(hashes if near else None, sha if exact else None, n)
    nodes = node.max() + 1
    first = np.empty(nodes, np.int64)
    first[node[::-1]] = np.arange(n)[::-1]      # one input of each node stands for its hashes
    edges = [(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool), np.empty(0, np.int64))]
    if near and nodes > 1:
        found = pair_finder(node_hashes := hashes.take(first, windows=False), k, kd)
        fine = node_hashes.long_distance(found.i, found.j, found.mirrored)
        ok = fine <= kl                          # -1: a side without the 256-bit hash
        edges.append((found.i[ok], found.j[ok], found.mirrored[ok], found.pdist[ok].astype(np.int64)))
        if stats is not None:
            stats.update(found.stats, distinct=int(nodes), long_refused=int(np.count_nonzero(~ok)))
        if kw is not None:
            crops = window_pairs(hashes, k, kd, kw, len(INSERTS), MIRRORED, of=first)
            edges.append((crops.i, crops.j, crops.mirrored, crops.pdist.astype(np.int64)))
            if stats is not None:
                stats.update({f"window_{name}": value for name, value in crops.stats.items()})
    if semantic_threshold is not None and embeddings is not None:
        si, sj = semantic_pairs(embeddings, semantic_threshold)
        edges.append((node[si], node[sj], np.zeros(len(si), bool), np.full(len(si), -1)))  # -1: not a hash match
    ei, ej, em, edist = (np.concatenate(c) for c in zip(*edges))
    apart = ei != ej
    ei, ej, em, edist = ei[apart], ej[apart], em[apart], edist[apart]
    letterbox = none if letterbox is None else letterbox
    jpeg_quality = none if jpeg_quality is None else jpeg_quality

    def cluster(off):
        rank = best_first(keys, pixels, aesthetic, letterbox, jpeg_quality, prior, off)
        node_rank = np.full(nodes, n, np.int64)
        np.minimum.at(node_rank, node, rank)
        by_rank = np.empty(n, np.int64)
        by_rank[rank] = np.arange(n)
        return by_rank[node_rank], leader_clusters(nodes, ei, ej, node_rank)   # best copy of each node, rep
    leader, rep_node = cluster(None)
    if near and hashes.long is not None and len(ei):  # again, each group's copy nearest its consensus first
        at = edge_to(rep_node, ei, ej)
        flip = ((at >= 0) & np.append(em, False)[at])[node]     # matched its representative mirrored
        aligned = hashes.long ^ np.where(flip[:, None], LONG_MIRROR[None, :], np.uint64(0))
        group = rep_node[node]
        off = off_consensus(group, aligned, hashes.long_known)
        leader, rep_node = cluster(off + (COLOUR_WEIGHT * off_colour(group, colour) if colour is not None else 0))
    rep = leader[rep_node[node]]
    dropped = rep != np.arange(n)
    in_cluster = np.bincount(rep, minlength=n)[rep] > 1
    at = edge_to(rep_node, ei, ej)               # the edge that joined each node to its representative
    node_dist = np.where(at >= 0, np.append(edist, -1)[at], -1)
    pdist = np.where(node == node[rep], 0, node_dist[node])  # -1: joined by its embedding only
    near_rep = pdist >= 0
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
