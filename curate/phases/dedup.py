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

from curate.phases.ingest import STAGED
from curate.phases.rejects import rejects_from
from curate.storage import RunDir, read_parquet_dir, write_parquet_atomic
from filters.dedup import deduplicate
from filters.mih import band_layout, masks, mih_pairs, plan
from schemas.job import Job
from schemas.record import INGESTED

HASHES = pa.schema([("key", pa.string()), ("sha256", pa.string()), ("phash", pa.uint64()), ("pixels", pa.int64()),
                    ("aesthetic", pa.float32()), ("run", pa.string())])


def staged_rows(run: RunDir, embeddings: bool = False) -> pa.Table:
    """Staged ingest rows; the (large) embedding column only when asked for."""
    columns = [c for c in INGESTED.names if embeddings or c != "embedding"]
    table = read_parquet_dir(run.ingest, INGESTED, columns)
    return table.filter(pc.equal(table["status"], STAGED)).sort_by("key")


def prior_hashes(paths: list[str]) -> pa.Table:
    """Hash indexes of earlier runs (folders holding hashes.parquet, or the files)."""
    tables = []
    for p in paths:
        path = Path(p) / "hashes.parquet" if Path(p).is_dir() else Path(p)
        tables.append(pq.read_table(path, schema=HASHES))
    return pa.concat_tables(tables) if tables else HASHES.empty_table()


def emit_band_records(batch: dict, m: int, r: int) -> dict:
    """Per hash and band: an owner record at its band value, a query record at each value
    within r bits of it. Grouping by (band, value) brings every candidate pair together."""
    idx, h = batch["idx"], batch["hash"].astype(np.uint64)
    out = {"band": [], "value": [], "idx": [], "hash": [], "owner": []}
    for b, (shift, width) in enumerate(band_layout(m)):
        vals = (h >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        for mask in masks(width, r):
            out["band"].append(np.full(len(h), b, np.int16))
            out["value"].append((vals ^ mask).astype(np.uint64))
            out["idx"].append(idx)
            out["hash"].append(h)
            out["owner"].append(np.full(len(h), mask == 0))
    return {k: np.concatenate(v) for k, v in out.items()}


def verify_group(group: dict, k: int) -> dict:
    owners = np.flatnonzero(group["owner"])
    h, idx = group["hash"].astype(np.uint64), group["idx"]
    if len(owners) == 0:
        return {"i": np.empty(0, np.int64), "j": np.empty(0, np.int64)}
    a, b = np.meshgrid(np.arange(len(h)), owners, indexing="ij")
    a, b = a.ravel(), b.ravel()
    close = (idx[a] != idx[b]) & (np.bitwise_count(h[a] ^ h[b]) <= k)
    i, j = idx[a][close], idx[b][close]
    return {"i": np.minimum(i, j), "j": np.maximum(i, j)}


def ray_mih_pairs(hashes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The same pairs as `mih_pairs`, with the band grouping done by a Ray Data shuffle."""
    import ray.data

    n = len(hashes)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    m, r = plan(n, k)
    ds = ray.data.from_arrow(pa.table({"idx": np.arange(n, dtype=np.int64), "hash": np.asarray(hashes, np.uint64)}))
    pairs = (ds.repartition(max(1, min(64, n // 50_000 + 1)))
             .map_batches(emit_band_records, fn_kwargs={"m": m, "r": r}, batch_format="numpy")
             .groupby(["band", "value"])
             .map_groups(verify_group, fn_kwargs={"k": k}, batch_format="numpy"))
    got = [b for b in pairs.iter_batches(batch_format="numpy", batch_size=None) if len(b["i"])]
    if not got:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    key = np.unique(np.concatenate([b["i"] for b in got]) * n + np.concatenate([b["j"] for b in got]))
    return key // n, key % n


def run_dedup(job: Job, run: RunDir) -> dict:
    if run.is_done(run.marker("dedup")):
        return {"skipped": True}
    cfg = job.dedup
    staged = staged_rows(run, embeddings=cfg.semantic.enabled)
    prior = prior_hashes(cfg.against)
    n = prior.num_rows + staged.num_rows
    engine = cfg.engine if cfg.engine != "auto" else ("local" if n <= cfg.local_max else "ray")

    def col(name: str) -> np.ndarray:
        return np.concatenate([prior[name].to_numpy(zero_copy_only=False), staged[name].to_numpy(zero_copy_only=False)])

    pixels = np.concatenate([prior["pixels"].to_numpy(zero_copy_only=False),
                             (pc.multiply(staged["width"].cast(pa.int64()), staged["height"].cast(pa.int64()))).to_numpy(zero_copy_only=False)])
    embeddings = None
    if cfg.semantic.enabled and staged.num_rows:
        if prior.num_rows:
            raise ValueError("dedup.semantic with dedup.against is not supported: earlier runs keep no embeddings")
        embeddings = np.stack(staged["embedding"].to_numpy(zero_copy_only=False))
    decisions = deduplicate(
        col("key"), col("sha256"), col("phash"), pixels, col("aesthetic"), exact=cfg.exact, near=cfg.near,
        k=cfg.max_distance, embeddings=embeddings, semantic_threshold=cfg.semantic.threshold if cfg.semantic.enabled else None,
        prior=prior.num_rows, pair_finder=mih_pairs if engine == "local" else ray_mih_pairs,
    )
    write_parquet_atomic(run.dedup, decisions)
    dropped = decisions.filter(pc.invert(decisions["keep"]))
    dropped = staged.select(["unit", "key", "source", "uri"]).join(
        dropped.select(["key", "reason", "dup_cluster", "near_duplicate_of"]), "key", join_type="inner")
    if prior.num_rows:
        runs = dict(zip(prior["key"].to_pylist(), prior["run"].to_pylist()))
        details = [f"duplicate of {d} from earlier run {runs[d]}" if d in runs else None for d in dropped["near_duplicate_of"].to_pylist()]
        dropped = dropped.append_column("detail", pa.array(details, pa.string()))
    write_parquet_atomic(run.rejects / "dedup.parquet", rejects_from(dropped.sort_by("key"), "dedup", reason_column="reason"))
    run.mark(run.marker("dedup"))
    return {"staged": staged.num_rows, "dropped": dropped.num_rows, "engine": engine}
