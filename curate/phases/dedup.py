"""Phase 2, dedup: global, over keys and hashes (and embeddings) of every staged row only.

Near-duplicate pairs come from multi-index hashing, run in the driver (vectorised) or as a
Ray Data shuffle (band buckets grouped across the cluster), by `dedup.engine`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import failpoint
from curate.phases.rejects import rejects_from
from curate.storage import RunDir, staged_rows, write_parquet_atomic
from filters.dedup import deduplicate
from filters.gates import below_top_fraction
from filters.mih import (
    Hashes,
    Pairs,
    WindowRecords,
    band_keys,
    fixed_bytes,
    keyed_pairs,
    long_words,
    merge_pairs,
    near_pairs,
    plan,
    window_nodes,
    window_pairs,
    window_plan,
)
from filters.windows import unpack as windows_unpack
from schemas.job import Job
from schemas.reasons import Reason
from schemas.record import DEDUP, DEDUP_HASHES, HASHES


def prior_hashes(paths: list[str]) -> pa.Table:
    """Hash indexes of earlier runs (folders holding hashes.parquet, or the files)."""
    tables = []
    for p in paths:
        path = Path(p) / "hashes.parquet" if Path(p).is_dir() else Path(p)
        table = pq.read_table(path)
        if "dhash" not in table.column_names:
            raise ValueError(f"dedup.against: {path} has no dhash column (written before dHash confirmed pHash "
                             "matches): run that job again with this version to index it")
        for f in HASHES:  # the border-trimmed and mirrored hashes are optional: dedup falls back to phash/dhash
            if f.name not in table.column_names:
                table = table.append_column(f, pa.nulls(table.num_rows, f.type))
        tables.append(table.select(HASHES.names).cast(HASHES))
    return pa.concat_tables(tables) if tables else HASHES.empty_table()


def dedup_hashes(table: pa.Table) -> Hashes:
    """The border-trimmed (and mirrored) hashes dedup compares; rows without them (earlier
    runs' indexes from before they existed) fall back to the whole-picture pHash/dHash, and
    are not checked on the 256-bit pHash nor searched by window (crops)."""
    def col(name: str, fallback: str) -> np.ndarray:
        return pc.coalesce(table[name], table[fallback]).to_numpy(zero_copy_only=False).astype(np.uint64)
    long, known = long_words(table["phash_long"]) if "phash_long" in table.column_names else (None, None)
    windows = windows_unpack(table["windows"]) if "windows" in table.column_names else (None,) * 4
    thumb, thumb_known = fixed_bytes(table["thumb"], 256) if "thumb" in table.column_names else (None, None)
    return Hashes(col("phash_core", "phash"), col("dhash_core", "dhash"),
                  col("phash_mirror", "phash"), col("dhash_mirror", "dhash"), long, known, *windows,
                  None if thumb is None else thumb.reshape(-1, 16, 16), thumb_known)


def _partition(key: np.ndarray, table: int, parts: int) -> np.ndarray:
    """The shuffle partition of band keys of one table (a multiplicative hash: whole keys stay together)."""
    return ((key * np.uint64(0x9E3779B97F4A7C15) + np.uint64(table)) >> np.uint64(40)) % np.uint64(parts)


def emit_band_records(batch: dict, m1: int, m2: int, parts: int) -> dict:
    """Per picture, view (as shown, mirrored) and band table: one record keyed by (table, pHash
    band, dHash band), and the partition of that key. Partitions hold whole keys."""
    n = len(batch["idx"])
    p, d = np.concatenate([batch["p"], batch["pm"]]), np.concatenate([batch["d"], batch["dm"]])
    out = {"part": [], "table": [], "key": [], "idx": [], "flipped": [], "p": [], "d": []}
    for t, key in enumerate(band_keys(p.astype(np.uint64), d.astype(np.uint64), m1, m2)):
        out["part"].append(_partition(key, t, parts))
        out["table"].append(np.full(2 * n, t, np.int32))
        out["key"].append(key)
        out["idx"].append(np.tile(batch["idx"], 2))
        out["flipped"].append(np.repeat(np.array([0, 1], np.int8), n))
        out["p"].append(p)
        out["d"].append(d)
    return {name: np.concatenate(v) for name, v in out.items()}


def verify_partition(group: dict, k: int, kd: int) -> dict:
    """The confirmed pairs of one partition's keys, found as `near_pairs` finds them."""
    p, d = group["p"].astype(np.uint64), group["d"].astype(np.uint64)
    key = group["key"].astype(np.uint64)
    pairs = []
    for t in np.unique(group["table"]):
        rows = np.flatnonzero(group["table"] == t)
        pairs += keyed_pairs(key[rows], group["idx"][rows], group["flipped"][rows], p[rows], d[rows], k, kd, {})
    i, j, pd, dd, mirrored = (np.concatenate(c) for c in zip(*pairs)) if pairs else [np.empty(0)] * 5
    return {"i": i.astype(np.int64), "j": j.astype(np.int64), "pdist": pd.astype(np.int16),
            "ddist": dd.astype(np.int16), "mirrored": mirrored.astype(bool)}


def emit_window_records(batch: dict, m1: int, m2: int, parts: int) -> dict:
    """Per window record (node, slot, hashes) and band table: the record keyed by (table, pHash
    band, dHash band), and the partition of that key."""
    p, d = batch["p"].astype(np.uint64), batch["d"].astype(np.uint64)
    out = {"part": [], "table": [], "key": []}
    for t, key in enumerate(band_keys(p, d, m1, m2)):
        out["part"].append(_partition(key, t, parts))
        out["table"].append(np.full(len(p), t, np.int32))
        out["key"].append(key)
    tables = len(out["key"])
    return {**{name: np.concatenate(v) for name, v in out.items()},
            **{name: np.tile(batch[name], tables) for name in ("node", "inserted", "p", "d", "l0", "l1", "l2", "l3")}}


def _window_records(node: np.ndarray, inserted: np.ndarray, words: np.ndarray) -> WindowRecords:
    return WindowRecords(lambda r: node[r], lambda r: inserted[r],
                         lambda ra, rb: np.bitwise_count(words[ra] ^ words[rb]).sum(axis=1))


def verify_window_partition(group: dict, k: int, kd: int, kl: int) -> dict:
    """The confirmed window pairs of one partition's keys, found as `window_pairs` finds them."""
    p, d, key = (group[c].astype(np.uint64) for c in ("p", "d", "key"))
    long = np.stack([group[f"l{i}"].astype(np.uint64) for i in range(4)], axis=1)
    pairs = []
    for t in np.unique(group["table"]):
        rows = np.flatnonzero(group["table"] == t)
        records = _window_records(group["node"][rows], group["inserted"][rows], long[rows])
        pairs += records.matches(key[rows], p[rows], d[rows], k, kd, kl, {})
    i, j, pd, dd, _ = (np.concatenate(c) for c in zip(*pairs)) if pairs else [np.empty(0)] * 5
    return {"i": i.astype(np.int64), "j": j.astype(np.int64), "pdist": pd.astype(np.int16), "ddist": dd.astype(np.int16)}


def ray_window_pairs(h: Hashes, k: int, kd: int, kl: int, inserts: int, searched: int, of: np.ndarray | None = None,
                     blocks: int | None = None) -> Pairs:
    """The pairs of `window_pairs`, with the band tables spread over the cluster as in
    `ray_near_pairs`; each record carries its 256-bit hash to the partition that verifies it."""
    import ray.data

    n, nodes, src = window_nodes(h, of)
    if len(nodes) < 2:
        return merge_pairs([], n, {})
    m1, m2 = window_plan(len(nodes) * searched, k, kd)
    stats = {"m1": m1, "m2": m2, "tables": m1 * m2}
    long = h.wlong[src, :searched].reshape(-1, 4)
    records = pa.table({"node": np.repeat(nodes, searched), "inserted": np.tile(np.arange(searched) < inserts, len(nodes)),
                        "p": h.wp[src, :searched].ravel(), "d": h.wd[src, :searched].ravel(),
                        **{f"l{i}": long[:, i] for i in range(4)}})
    blocks = blocks or max(1, min(64, len(records) // 500_000 + 1))
    pairs = (ray.data.from_arrow(records).repartition(blocks)
             .map_batches(emit_window_records, fn_kwargs={"m1": m1, "m2": m2, "parts": 4 * blocks}, batch_format="numpy")
             .groupby("part")
             .map_groups(verify_window_partition, fn_kwargs={"k": k, "kd": kd, "kl": kl}, batch_format="numpy"))
    got = [(b["i"], b["j"], b["pdist"], b["ddist"], np.zeros(len(b["i"]), bool))
           for b in pairs.iter_batches(batch_format="numpy", batch_size=None) if len(b["i"])]
    return merge_pairs(got, n, stats)


def ray_near_pairs(h: Hashes, k: int, kd: int, blocks: int | None = None) -> Pairs:
    """The pairs of `near_pairs`, with the band tables spread over the cluster by a Ray Data
    shuffle: records are hash-partitioned by key, and each partition is sorted and verified
    where it lands, so no node holds more than its share of the n * tables records."""
    import ray.data

    n = len(h)
    m1, m2 = plan(n, k, kd)
    stats = {"m1": m1, "m2": m2, "tables": m1 * m2}
    if n < 2:
        return merge_pairs([], n, stats)
    blocks = blocks or max(1, min(64, n // 50_000 + 1))
    ds = ray.data.from_arrow(pa.table({"idx": np.arange(n, dtype=np.int64), "p": h.p, "d": h.d, "pm": h.pm, "dm": h.dm}))
    pairs = (ds.repartition(blocks)
             .map_batches(emit_band_records, fn_kwargs={"m1": m1, "m2": m2, "parts": 4 * blocks}, batch_format="numpy")
             .groupby("part")
             .map_groups(verify_partition, fn_kwargs={"k": k, "kd": kd}, batch_format="numpy"))
    got = [tuple(b[c] for c in ("i", "j", "pdist", "ddist", "mirrored"))
           for b in pairs.iter_batches(batch_format="numpy", batch_size=None) if len(b["i"])]
    return merge_pairs(got, n, stats)


def run_dedup(job: Job, run: RunDir) -> dict:
    if run.is_done(run.marker("dedup")):
        return {"skipped": True}
    failpoint.hit("dedup.start")
    cfg = job.dedup
    staged, misaligned = split_by_clip_alt(staged_rows(run, embeddings=cfg.semantic.enabled), cfg.clip_alt_top_fraction)
    prior = prior_hashes(cfg.against)
    n = prior.num_rows + staged.num_rows
    engine = cfg.engine if cfg.engine != "auto" else ("local" if n <= cfg.local_max else "ray")

    def col(name: str) -> np.ndarray:
        return np.concatenate([prior[name].to_numpy(zero_copy_only=False), staged[name].to_numpy(zero_copy_only=False)])

    pixels = np.concatenate([prior["pixels"].to_numpy(zero_copy_only=False),
                             (pc.multiply(staged["width"].cast(pa.int64()), staged["height"].cast(pa.int64()))).to_numpy(zero_copy_only=False)])
    hashes = prior.select(["phash", *DEDUP_HASHES]).cast(staged.select(["phash", *DEDUP_HASHES]).schema)
    hashes = dedup_hashes(pa.concat_tables([hashes, staged.select(["phash", *DEDUP_HASHES])]))
    quality = staged["quality"].combine_chunks()
    unknown = np.full(prior.num_rows, np.nan)
    letterbox = np.concatenate([unknown, quality.field("letterbox").to_numpy(zero_copy_only=False)])
    jpeg_quality = np.concatenate([unknown, quality.field("jpeg_quality").to_numpy(zero_copy_only=False)])
    colour = np.stack([np.concatenate([unknown, quality.field(f).to_numpy(zero_copy_only=False)]) for f in ("brightness", "colourfulness")],
                      axis=1).astype(np.float64)
    embeddings = None
    if cfg.semantic.enabled and staged.num_rows:
        if prior.num_rows:
            raise ValueError("dedup.semantic with dedup.against is not supported: earlier runs keep no embeddings")
        embeddings = np.stack(staged["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    decisions = deduplicate(
        col("key"), col("sha256"), hashes, pixels, col("aesthetic"), letterbox, jpeg_quality, exact=cfg.exact,
        near=cfg.near, k=cfg.max_distance, kd=cfg.confirm_distance, kl=cfg.long_distance,
        kw=cfg.window_distance if cfg.windows else None, embeddings=embeddings,
        semantic_threshold=cfg.semantic.threshold if cfg.semantic.enabled else None, prior=prior.num_rows,
        pair_finder=near_pairs if engine == "local" else ray_near_pairs,
        window_finder=window_pairs if engine == "local" else ray_window_pairs, colour=colour,
    )
    write_parquet_atomic(run.dedup, pa.concat_tables([decisions, misaligned.select(DEDUP.names).cast(DEDUP)]))
    failpoint.hit("dedup.decided")
    dropped = decisions.filter(pc.invert(decisions["keep"]))
    dropped = staged.select(["unit", "key", "source", "uri"]).join(
        dropped.select(["key", "reason", "dup_cluster", "near_duplicate_of"]), "key", join_type="inner")
    runs = dict(zip(prior["key"].to_pylist(), prior["run"].to_pylist()))
    details = [f"duplicate of {d} from earlier run {runs[d]}" if d in runs else None for d in dropped["near_duplicate_of"].to_pylist()]
    dropped = pa.concat_tables([dropped.append_column("detail", pa.array(details, pa.string())),
                                misaligned.select([*dropped.column_names, "detail"]).cast(dropped.schema.append(pa.field("detail", pa.string())))])
    write_parquet_atomic(run.rejects / "dedup.parquet", rejects_from(dropped.sort_by("key"), "dedup", reason_column="reason"))
    run.mark(run.marker("dedup"))
    return {"staged": staged.num_rows + misaligned.num_rows, "dropped": dropped.num_rows, "engine": engine,
            "low_clip_alt": misaligned.num_rows}


def split_by_clip_alt(staged: pa.Table, fraction: float | None) -> tuple[pa.Table, pa.Table]:
    """(rows that stay, rows outside the run's top `fraction` by clip_alt with their decision
    columns). The percentile needs every staged row, so it is applied here, before duplicates
    are searched: a dropped sample's duplicates with better alt text can still be kept."""
    gated = {}
    if fraction is not None and staged.num_rows:
        gated = below_top_fraction(staged["key"].to_pylist(), staged["clip_alt"].to_pylist(), fraction)
    mask = pc.is_in(staged["key"], pa.array(list(gated), pa.string()))
    out = staged.filter(mask).select(["unit", "key", "source", "uri"])
    n = out.num_rows
    out = (out.append_column("keep", pa.array([False] * n)).append_column("reason", pa.array([Reason.LOW_CLIP_ALT.value] * n))
           .append_column("dup_cluster", pa.nulls(n, pa.string())).append_column("near_duplicate_of", pa.nulls(n, pa.string()))
           .append_column("distance", pa.nulls(n, pa.int32()))
           .append_column("detail", pa.array([gated[k] for k in out["key"].to_pylist()], pa.string())))
    return staged.filter(pc.invert(mask)), out
