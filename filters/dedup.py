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

from filters.mih import LONG_MIRROR, Hashes, Pairs, hashes_agree, near_pairs, window_pairs
from filters.windows import INSERTS, MIRRORED
from schemas.reasons import Reason
from schemas.record import DEDUP

BORDERED = 0.02        # letterbox fraction above which a copy counts as bordered
QUALITY_PLATEAU = 90   # JPEG qualities at or above this are not told apart
LONG_DISTANCE = 72     # 256-bit pHash distance at or below which a near pair is confirmed (bench/dedup)
WINDOW_LONG_DISTANCE = 72  # the same for a window match (bench/dedup)
OVERLAY_LONG_DISTANCE = 88  # farther than long_distance, a pair is still confirmed if its thumbnails
CHANGED_BLOCKS = 2          # differ in at most this many of 16 blocks (`Hashes.blocks_changed`)
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


def fine_confirmed(h: Hashes, i: np.ndarray, j: np.ndarray, mirrored: np.ndarray, kl: int) -> np.ndarray:
    """Whether pairs confirmed on both 64-bit hashes are confirmed by the finer signals: the
    256-bit pHash within kl (or unknown on a side), or, a little farther, thumbnails that differ
    in no more than CHANGED_BLOCKS of 16 blocks (a local change: an added logo or caption)."""
    fine = h.long_distance(i, j, mirrored)
    ok = fine <= kl                          # -1: a side without the 256-bit hash
    local = np.flatnonzero((fine > kl) & (fine <= OVERLAY_LONG_DISTANCE))
    changed = h.blocks_changed(i[local], j[local], mirrored[local])
    ok[local[(changed >= 0) & (changed <= CHANGED_BLOCKS)]] = True
    return ok


def confirm_directly(h: Hashes, a: np.ndarray, b: np.ndarray, k: int, kd: int, kl: int, kw: int | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confirmed, mirrored, pHash distance) of pairs of inputs a-b, computed for each pair on
    every signal (as shown, mirrored, every inserted window against every queried one), not
    found by a search: what merges a picture into a cluster whose kept copy the search did not
    pair it with."""
    best = np.full(len(a), -1, np.int64)
    flip = np.zeros(len(a), bool)
    if len(a) == 0:
        return best >= 0, flip, best
    for mirrored in (False, True):
        p_b, d_b = (h.pm[b], h.dm[b]) if mirrored and h.pm is not None else (h.p[b], h.d[b])
        pd, dd = np.bitwise_count(h.p[a] ^ p_b), np.bitwise_count(h.d[a] ^ d_b)
        m = np.full(len(a), mirrored)
        ok = hashes_agree(pd, dd, k, kd) & fine_confirmed(h, a, b, m, kl) & ((best < 0) | (pd < best))
        best, flip = np.where(ok, pd, best), np.where(ok, mirrored, flip)
    if kw is not None and h.wp is not None:     # only where the whole pictures do not match: the frames differ
        known = h.w_known[a] & h.w_known[b] & (best < 0)
        for x, y in ((a, b), (b, a)):           # x's inserted windows against y's queried ones
            pd = np.bitwise_count(h.wp[x, :len(INSERTS), None] ^ h.wp[y, None, len(INSERTS):])
            dd = np.bitwise_count(h.wd[x, :len(INSERTS), None] ^ h.wd[y, None, len(INSERTS):])
            fine = np.bitwise_count(h.wlong[x, :len(INSERTS), None] ^ h.wlong[y, None, len(INSERTS):]).sum(axis=-1)
            ok = hashes_agree(pd, dd, k, kd) & (fine <= kw) & known[:, None, None]
            closest = np.where(ok, pd, 64).reshape(len(a), -1)
            at = closest.argmin(axis=1)
            nearest = closest[np.arange(len(a)), at]
            take = (nearest < 64) & ((best < 0) | (nearest < best))
            best = np.where(take, nearest, best)
            flip = np.where(take, len(INSERTS) + at % pd.shape[2] >= MIRRORED, flip)
    return best >= 0, flip, best


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


def _to_representatives(rep: np.ndarray, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (node, representative of a neighbour's cluster) that are not edges yet."""
    n = len(rep)
    a, b = np.concatenate([i, j]), rep[np.concatenate([j, i])]
    keep = a != b
    code = np.unique(np.minimum(a[keep], b[keep]) * n + np.maximum(a[keep], b[keep]))
    have = np.minimum(i, j) * n + np.maximum(i, j)
    code = code[~np.isin(code, have)]
    return code // n, code % n


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
                pair_finder: Callable[[Hashes, int, int], Pairs] = near_pairs, window_finder: Callable[..., Pairs] = window_pairs,
                kl: int = LONG_DISTANCE,
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
    # edges between nodes: i, j, one side mirrored, pHash distance (-1: not a hash match)
    edges = [(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool), np.empty(0, np.int64))]
    if near and nodes > 1:
        found = pair_finder(hashes.take(first, fine=False), k, kd)
        ok = fine_confirmed(hashes, first[found.i], first[found.j], found.mirrored, kl)
        edges.append((found.i[ok], found.j[ok], found.mirrored[ok], found.pdist[ok].astype(np.int64)))
        if stats is not None:
            stats.update(found.stats, distinct=int(nodes), long_refused=int(np.count_nonzero(~ok)))
        if kw is not None:
            crops = window_finder(hashes, k, kd, kw, len(INSERTS), MIRRORED, of=first)
            new = ~np.isin(crops.i * nodes + crops.j, found.i[ok] * nodes + found.j[ok])  # whole-picture matches win
            edges.append((crops.i[new], crops.j[new], crops.mirrored[new], crops.pdist[new].astype(np.int64)))
            if stats is not None:
                stats.update({f"window_{name}": value for name, value in crops.stats.items()})
    if semantic_threshold is not None and embeddings is not None:
        si, sj = semantic_pairs(embeddings, semantic_threshold)
        edges.append((node[si], node[sj], np.zeros(len(si), bool), np.full(len(si), -1)))
    ei, ej, em, edist = (np.concatenate(c) for c in zip(*edges))
    apart = ei != ej
    ei, ej, em, edist = ei[apart], ej[apart], em[apart], edist[apart]
    letterbox = none if letterbox is None else letterbox
    jpeg_quality = none if jpeg_quality is None else jpeg_quality

    def cluster(off):
        nonlocal ei, ej, em, edist
        rank = best_first(keys, pixels, aesthetic, letterbox, jpeg_quality, prior, off)
        node_rank = np.full(nodes, n, np.int64)
        np.minimum.at(node_rank, node, rank)
        by_rank = np.empty(n, np.int64)
        by_rank[rank] = np.arange(n)
        rep_node = leader_clusters(nodes, ei, ej, node_rank)
        if near and len(ei):  # a node the search paired with a cluster's member, not with its kept copy: check that pair
            a, b = _to_representatives(rep_node, ei, ej)
            ok, m, pd = confirm_directly(hashes, first[a], first[b], k, kd, kl, kw)
            if ok.any():
                ei, ej, em, edist = (np.concatenate(c) for c in ((ei, a[ok]), (ej, b[ok]), (em, m[ok]), (edist, pd[ok])))
                rep_node = leader_clusters(nodes, ei, ej, node_rank)
        return by_rank[node_rank], rep_node   # best copy of each node, its representative
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
