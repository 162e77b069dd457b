"""Phase 3 tail, write: captioned samples -> PixArt bucket -> webdataset shards per bucket
-> the Parquet index. Shards are planned from all committed caption units at once (sorted by
bucket and key), so shard sizes and names do not depend on unit sizes or run order.
"""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from curate import failpoint
from curate.card import dataset_card
from curate.imaging import ORIENTATION_TAG, fit_within, for_training, sha256
from curate.outputs import output_for
from curate.phases.restage import restage_missing
from curate.staging import StagingStore, store_for
from curate.storage import (
    RunDir,
    read_parquet_dir,
    staged_rows,
    write_bytes_atomic,
    write_parquet_atomic,
    write_partitioned_atomic,
)
from schemas.buckets import closest_bucket
from schemas.job import Job
from schemas.record import (
    CAPTIONED,
    CAPTIONED_OK,
    DEDUP,
    DEDUP_HASHES,
    EVIDENCE,
    HALLUCINATION,
    HASHES,
    INDEX,
    MEMBERS,
    WRITE_PLAN,
    rows_to_table,
)

TAR_MTIME = 946684800  # fixed member mtime (2000-01-01) so shard bytes are reproducible


class TarSink:
    """A webdataset shard as a stream: members named `<key>.<field>`, a sample's fields in name
    order, written as webdataset's TarWriter writes them (mode 0444, owner bigdata, fixed mtime),
    so readers see the same bytes. Not TarWriter itself: importing webdataset imports torch,
    seconds in every fresh worker that writes shards."""

    def __init__(self, fileobj):
        self.tarstream = tarfile.open(fileobj=fileobj, mode="w|")  # noqa: SIM115 - closed by __exit__

    def write(self, key: str, fields: dict[str, bytes]) -> None:
        for field in sorted(fields):
            data = fields[field]
            info = tarfile.TarInfo(f"{key}.{field}")
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), TAR_MTIME, 0o444, "bigdata", "bigdata"
            self.tarstream.addfile(info, io.BytesIO(data))

    def __enter__(self) -> TarSink:
        return self

    def __exit__(self, *exc) -> None:
        self.tarstream.close()


def shard_folder(table: int) -> str:
    return f"ar{table}"


def plan_records(job: Job, run: RunDir, captioned: pa.Table, staged: pa.Table) -> pa.Table:
    """Index rows (without file checks) for every captioned sample, with shard and member."""
    captioned = captioned.filter(pc.equal(captioned["status"], CAPTIONED_OK)).drop_columns(["evidence"])
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
            "aesthetic": m["aesthetic"], "nsfw": m["nsfw"], "watermark": m["watermark"], "clip_alt": m["clip_alt"],
            "quality": m["quality"], "captions": c["captions"], "caption": c["caption"],
            "caption_tokens": c["caption_tokens"], "caption_cut": c["caption_cut"], "hallucination": c.get("hallucination"),
            "dup_cluster": clusters.get(c["key"]), "blob": m["blob"],
        })
    records.sort(key=lambda r: (float(r["bucket"]), r["key"]))
    out = job.output
    for r, shard in zip(records, assign_shards(records, out.shard_samples, out.shard_bytes)):
        r["shard"] = f"{shard_folder(out.bucket_table)}/{r['bucket']}/{shard:06d}.tar"
        r["member_width"], r["member_height"] = fit_within(r["width"], r["height"], out.max_side)
        r["member"] = f"{r['key']}.{member_format(r, job)}"
    return rows_to_table(records, WRITE_PLAN)


def member_format(row: dict, job: Job) -> str:
    return row["format"] if job.output.format == "keep" else job.output.format


def member_image(data: bytes, row: dict, job: Job) -> tuple[bytes, str]:
    """What the shard stores for `row`: upright, `member_width` x `member_height`, in the member
    format (see imaging.for_training), checked against the index before it is written."""
    size = (row["member_width"], row["member_height"])
    image, how = for_training(data, size, member_format(row, job), job.output.quality)
    with Image.open(io.BytesIO(image)) as stored:   # header only: what a reader without EXIF sees
        if stored.size != size or stored.getexif().get(ORIENTATION_TAG, 1) != 1:
            raise RuntimeError(f"{row['key']}: stored image is {stored.size}, index says {size}")
    return image, how


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


TAR_BLOCK = 512


def members_file(shard: str) -> str:
    """The staging store's file of one shard's MEMBERS rows, written just before the shard is published."""
    return f"shards/{shard.replace('/', '_')}.parquet"


def write_shard(rows: pa.Table, job: Job, store: StagingStore) -> pa.Table:
    """Write one shard (all rows share `shard`); returns MEMBERS rows. Each image is one ranged
    read of its staged copy, tied to ingest's hash by its length (and by sha256 when the job asks)."""
    output = output_for(job)
    rel = rows["shard"][0].as_py()
    done = members_file(rel)
    if output.exists(rel) and store.exists(done):
        return pq.read_table(pa.BufferReader(store.read_file(done)), schema=MEMBERS)
    members = []
    with output.open_write(rel) as fh, TarSink(fh) as sink:
        for row in rows.to_pylist():
            data = store.read(row["blob"])
            if job.output.verify_staged and sha256(data) != row["sha256"]:
                raise RuntimeError(f"{row['url']}: staged bytes differ from ingest's (sha256); re-run with --fresh")
            image, how = member_image(data, row, job)
            # the image member goes first (webdataset writes a sample's members in name order: jpg < json < txt);
            # its data ends where the stream stands after it, less the padding to whole tar blocks
            sink.write(row["key"], {row["member"].rsplit(".", 1)[1]: image})
            offset = sink.tarstream.offset - -(-len(image) // TAR_BLOCK) * TAR_BLOCK
            stored = {"key": row["key"], "stored_as": how, "member_offset": offset, "member_bytes": len(image)}
            record = {k: row.get(k) for k in INDEX.names} | stored
            sink.write(row["key"], {"txt": row["caption"].encode(), "json": record_json(record)})
            members.append(stored)
            failpoint.hit("write.member")
        table = pa.Table.from_pylist(members, schema=MEMBERS)
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        with store.open_write(done) as out:   # before the shard is published: a published shard has one
            out.write(buf.getvalue().to_pybytes())
    return table


def run_write(job: Job, run: RunDir, progress=None) -> dict:
    if run.is_done(run.marker("write")):
        return {"skipped": True}
    captioned = read_parquet_dir(run.caption, CAPTIONED)
    staged = staged_rows(run)   # read once: the plan's metadata and the next run's hash index
    index = plan_records(job, run, captioned, staged)
    changed = restage_missing(job, run, staged)   # staged copies removed by an earlier, complete run
    if any(k in changed for k in index["key"].to_pylist()):
        raise RuntimeError(f"sources changed since ingest ({next(iter(changed.values()))}); re-run with --fresh")
    shards = sorted(set(index["shard"].to_pylist()))
    output = output_for(job)
    if shards:
        from curate.phases.write_sink import (  # imports ray.data: only when shards are written
            ShardSink,
            write_watched,
        )

        stored = write_watched(ShardSink(job, str(run.root)), index, store_for(job, run.root), progress)
        if stored.num_rows != index.num_rows:
            raise RuntimeError(f"wrote {stored.num_rows} samples for {index.num_rows} planned")
        index = with_members(index, stored)
        # a writer killed mid-shard and retried by Ray left its temporary file or open upload: every
        # writer has finished now, so whatever is left in the shard folders is such a leftover
        output.sweep(shard_folder(job.output.bucket_table))
    write_partitioned_atomic(run.index, index.select(INDEX.names).sort_by("key"), "bucket")
    failpoint.hit("write.index")
    write_parquet_atomic(run.hashes, hash_index(job, index, staged))
    write_parquet_atomic(run.report / "hallucinations.parquet", evidence_table(captioned, index))
    card = dataset_card(job, index, f"{shard_folder(job.output.bucket_table)}/*/*.tar")
    write_bytes_atomic(run.root / "README.md", card.encode())
    run.mark(run.marker("write"))
    return {"samples": index.num_rows, "shards": len(shards)}


def with_members(index: pa.Table, stored: pa.Table) -> pa.Table:
    """The planned index with what write_shard stored for each member (MEMBERS columns)."""
    position = {k: i for i, k in enumerate(stored["key"].to_pylist())}
    take = pa.array([position[k] for k in index["key"].to_pylist()], pa.int64())
    for name in MEMBERS.names[1:]:
        index = index.set_column(index.column_names.index(name), name, stored[name].take(take))
    return index


def evidence_table(captioned: pa.Table, index: pa.Table) -> pa.Table:
    """report/hallucinations.parquet: the scoring evidence of every written caption."""
    captioned = captioned.filter(pc.and_(pc.is_in(captioned["key"], index["key"]), pc.is_valid(captioned["evidence"])))
    evidence = captioned["evidence"].combine_chunks()
    children = evidence.flatten() if len(evidence) else [pa.array([], f.type) for f in EVIDENCE]
    return pa.Table.from_arrays([captioned["key"], *children], schema=HALLUCINATION).sort_by("key")


def hash_index(job: Job, index: pa.Table, staged: pa.Table) -> pa.Table:
    """What a later run needs to drop duplicates of this run's samples (`dedup.against`)."""
    phash = [int(h, 16) for h in index["phash"].to_pylist()]
    pixels = pc.multiply(index["width"].cast(pa.int64()), index["height"].cast(pa.int64()))
    table = pa.table({"key": index["key"], "sha256": index["sha256"], "phash": pa.array(phash, pa.uint64()), "pixels": pixels,
                      "aesthetic": index["aesthetic"], "run": pa.array([job.name] * index.num_rows, pa.string())})
    hashes = staged.select(["key", *DEDUP_HASHES])
    return table.join(hashes, "key", join_type="left outer").select(HASHES.names).cast(HASHES).sort_by("key")
