"""Phase 3 tail, write: captioned samples -> PixArt bucket -> webdataset shards per bucket
-> the Parquet index. Shards are planned from all committed caption units at once (sorted by
bucket and key), so shard sizes and names do not depend on unit sizes or run order.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import webdataset as wds

from curate.engine import split_by
from curate.imaging import sha256
from curate.phases.caption import CAPTIONED_OK
from curate.phases.dedup import HASHES, staged_rows
from curate.sources import stored_bytes
from curate.storage import RunDir, read_parquet_dir, write_parquet_atomic
from schemas.buckets import closest_bucket
from schemas.job import Job
from schemas.record import CAPTIONED, DEDUP, INDEX, rows_to_table

WRITE_PLAN = INDEX.append(pa.field("blob", pa.string()))  # the index plus where staged bytes are
TAR_MTIME = 946684800  # fixed member mtime (2000-01-01) so shard bytes are reproducible


def shard_folder(table: int) -> str:
    return f"ar{table}"


def plan_records(job: Job, run: RunDir) -> pa.Table:
    """Index rows (without file checks) for every captioned sample, with shard and member."""
    captioned = read_parquet_dir(run.caption, CAPTIONED)
    captioned = captioned.filter(pc.equal(captioned["status"], CAPTIONED_OK))
    staged = staged_rows(run)
    dedup = pq.read_table(run.dedup, schema=DEDUP).select(["key", "dup_cluster"])
    meta = {r["key"]: r for r in staged.to_pylist()}
    clusters = dict(zip(dedup["key"].to_pylist(), dedup["dup_cluster"].to_pylist()))
    records = []
    for c in captioned.to_pylist():
        m = meta[c["key"]]
        bucket, hw = closest_bucket(m["height"], m["width"], job.output.bucket_table)
        records.append({
            "key": c["key"], "source": m["source"], "url": m["uri"], "width": m["width"], "height": m["height"],
            "format": m["format"], "bytes": m["bytes"], "is_4k": m["is_4k"], "ratio": m["height"] / m["width"],
            "bucket": bucket, "bucket_hw": hw, "sha256": m["sha256"], "phash": f"{m['phash']:016x}",
            "aesthetic": m["aesthetic"], "quality": m["quality"], "captions": c["captions"], "caption": c["caption"],
            "caption_tokens": c["caption_tokens"], "caption_cut": c["caption_cut"], "dup_cluster": clusters.get(c["key"]), "blob": m["blob"],
        })
    records.sort(key=lambda r: (float(r["bucket"]), r["key"]))
    for r, shard in zip(records, assign_shards(records, job.output.shard_samples, job.output.shard_bytes)):
        r["shard"] = f"{shard_folder(job.output.bucket_table)}/{r['bucket']}/{shard:06d}.tar"
        r["member"] = f"{r['key']}.{r['format']}"
    return rows_to_table(records, WRITE_PLAN)


def assign_shards(records: list[dict], max_samples: int, max_bytes: int | None) -> list[int]:
    """Shard number of each record (records sorted by bucket): a bucket's shard is closed when
    it holds `max_samples` samples, or when the next image would take it past `max_bytes`."""
    out, bucket, shard, count, size = [], None, 0, 0, 0
    for r in records:
        if r["bucket"] != bucket:
            bucket, shard, count, size = r["bucket"], 0, 0, 0
        elif count >= max_samples or (max_bytes is not None and size + r["bytes"] > max_bytes):
            shard, count, size = shard + 1, 0, 0
        out.append(shard)
        count += 1
        size += r["bytes"]
    return out


def record_json(row: dict) -> bytes:
    row = dict(row)
    row["captions"] = dict(row["captions"] or [])
    return json.dumps(row, ensure_ascii=False, sort_keys=True).encode()


def write_shard(batch: pa.Table, root: str, job_json: str) -> pa.Table:
    """Write one shard (all rows share `shard`) atomically; an existing shard is kept as is."""
    rel = batch["shard"][0].as_py()
    path = Path(root) / rel
    if path.exists():
        return batch.select(["key"])
    job = Job.model_validate_json(job_json)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as fh:
        with wds.TarWriter(fh, encoder=False, mtime=TAR_MTIME) as sink:
            for row in batch.to_pylist():
                data = stored_bytes({**row, "uri": row["url"]}, job, Path(root))
                if sha256(data) != row["sha256"]:
                    raise RuntimeError(f"{row['url']} changed since ingest (sha256 differs); re-run with --fresh")
                record = {k: row[k] for k in INDEX.names}
                sink.write({"__key__": row["key"], row["format"]: data, "txt": row["caption"].encode(), "json": record_json(record)})
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return batch.select(["key"])


def run_write(job: Job, run: RunDir) -> dict:
    import ray.data

    if run.is_done(run.marker("write")):
        return {"skipped": True}
    index = plan_records(job, run)
    shards = sorted(set(index["shard"].to_pylist()))
    if shards:
        ds = ray.data.from_arrow(split_by(index, "shard")).map_batches(
            write_shard, batch_size=None, batch_format="pyarrow",
            fn_kwargs={"root": str(run.root), "job_json": job.model_dump_json()},
        )
        written = sum(b.num_rows for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"))
        if written != index.num_rows:
            raise RuntimeError(f"wrote {written} samples for {index.num_rows} planned")
    write_parquet_atomic(run.index, index.select(INDEX.names).sort_by("key"))
    write_parquet_atomic(run.root / "hashes.parquet", hash_index(job, index))
    run.mark(run.marker("write"))
    return {"samples": index.num_rows, "shards": len(shards)}


def hash_index(job: Job, index: pa.Table) -> pa.Table:
    """What a later run needs to drop duplicates of this run's samples (`dedup.against`)."""
    phash = [int(h, 16) for h in index["phash"].to_pylist()]
    pixels = pc.multiply(index["width"].cast(pa.int64()), index["height"].cast(pa.int64()))
    return pa.table({"key": index["key"], "sha256": index["sha256"], "phash": pa.array(phash, pa.uint64()), "pixels": pixels,
                     "aesthetic": index["aesthetic"], "run": pa.array([job.name] * index.num_rows, pa.string())},
                    schema=HASHES).sort_by("key")
