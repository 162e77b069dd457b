"""Phase 2, dedup: global, reads only keys, hashes and sizes of every staged row."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from curate.phases.ingest import STAGED
from curate.phases.rejects import rejects_from
from curate.storage import RunDir, read_parquet_dir, write_parquet_atomic
from filters.dedup import deduplicate
from schemas.job import Job
from schemas.record import DEDUP, INGESTED, rows_to_table


def staged_rows(run: RunDir) -> pa.Table:
    table = read_parquet_dir(run.ingest, INGESTED)
    return table.filter(pc.equal(table["status"], STAGED)).sort_by("key")


def run_dedup(job: Job, run: RunDir) -> dict:
    if run.is_done(run.marker("dedup")):
        return {"skipped": True}
    staged = staged_rows(run)
    cols = staged.select(["key", "sha256", "phash", "width", "height", "aesthetic"]).to_pydict()
    pixels = [w * h for w, h in zip(cols["width"], cols["height"])]
    decisions = deduplicate(cols["key"], cols["sha256"], cols["phash"], pixels, cols["aesthetic"],
                            exact=job.dedup.exact, near=job.dedup.near, k=job.dedup.max_distance)
    table = rows_to_table([d.__dict__ for d in decisions], DEDUP)
    write_parquet_atomic(run.dedup, table)
    dropped_keys = table.filter(pc.invert(table["keep"]))
    dropped = staged.select(["unit", "key", "source", "uri"]).join(
        dropped_keys.select(["key", "reason", "dup_cluster", "near_duplicate_of"]), "key", join_type="inner")
    write_parquet_atomic(run.rejects / "dedup.parquet", rejects_from(dropped.sort_by("key"), "dedup", reason_column="reason"))
    run.mark(run.marker("dedup"))
    return {"staged": staged.num_rows, "dropped": dropped.num_rows}
