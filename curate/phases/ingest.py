"""Phase 1, ingest: every planned input -> bytes -> header probe -> resolution gate ->
one working-size decode -> sha256 + pHash/dHash -> a staged row, or a reject with its reason.

Runs as Ray tasks over unit blocks; the driver commits each unit (staged rows + rejects).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from curate import imaging, sources
from curate.engine import commit_by_unit, unit_dataset
from curate.phases.rejects import rejects_from
from curate.storage import RunDir, write_parquet_atomic
from filters.resolution import is_4k, resolution_verdict
from schemas.job import Job
from schemas.reasons import Reason
from schemas.record import INGESTED, rows_to_table

STAGED = "staged"


def ingest_one(row: dict, job: Job) -> dict:
    out = dict(row)
    src = job.sources[int(row["source"].split(":")[1])]
    try:
        data = sources.read_bytes(row["uri"], job.ingest.max_bytes)
    except sources.TooLarge as exc:
        return {**out, "status": Reason.TOO_MANY_BYTES, "detail": str(exc)}
    except OSError as exc:
        return {**out, "status": Reason.READ_ERROR, "detail": f"{type(exc).__name__}: {exc}"}
    out["bytes"] = len(data)
    out["alt"] = sources.read_alt_text(row["uri"], src.alt_text)
    try:
        head = imaging.probe(data)
    except imaging.ProbeError as exc:
        return {**out, "status": exc.reason, "detail": exc.detail}
    rule = job.filters.resolution
    out.update(format=head.format, width=head.width, height=head.height, exif_rotated=head.rotated,
               is_4k=is_4k(head.width, head.height, rule))
    if head.width * head.height > job.ingest.max_pixels:
        return {**out, "status": Reason.DECOMPRESSION_BOMB, "detail": f"{head.width}x{head.height} > max_pixels {job.ingest.max_pixels}"}
    verdict = resolution_verdict(head.width, head.height, rule)
    if verdict:
        return {**out, "status": verdict[0], "detail": verdict[1]}
    try:
        img = imaging.decode_working(data, job.ingest.working_side)
    except imaging.ProbeError as exc:
        return {**out, "status": exc.reason, "detail": exc.detail}
    out.update(sha256=imaging.sha256(data), phash=imaging.phash64(img), dhash=imaging.dhash64(img), status=STAGED)
    return out


def ingest_block(batch: pa.Table, job_json: str) -> pa.Table:
    job = Job.model_validate_json(job_json)
    rows = []
    for row in batch.to_pylist():
        try:
            rows.append(ingest_one(row, job))
        except Exception as exc:  # one bad input must not lose the others of its unit
            rows.append({**row, "status": Reason.WORKER_ERROR, "detail": f"{type(exc).__name__}: {exc}"})
    for r in rows:
        r["status"] = str(r["status"])
    return rows_to_table(rows, INGESTED)


def run_ingest(job: Job, run: RunDir, plan: pa.Table, progress) -> dict:
    """Ingest every unit of `plan` without a done-marker. Returns {"units": n, "inputs": n}."""
    pending = [u for u in pc.unique(plan["unit"]).to_pylist() if not run.is_done(run.done(run.ingest, u))]
    expected = {u: n for u, n in zip(*_counts(plan, pending))}
    total = sum(expected.values())
    if not pending:
        return {"units": 0, "inputs": 0}
    ds = unit_dataset(plan, pending).map_batches(
        ingest_block, batch_size=None, batch_format="pyarrow", fn_kwargs={"job_json": job.model_dump_json()}
    )
    task = progress.add_task("ingest", total=total)

    def commit(unit: str, rows: pa.Table) -> None:
        write_parquet_atomic(run.ingest / f"{unit}.parquet", rows)
        rejected = rows.filter(pc.not_equal(rows["status"], STAGED))
        write_parquet_atomic(run.rejects / "ingest" / f"{unit}.parquet", rejects_from(rejected, "ingest"))
        run.mark(run.done(run.ingest, unit))

    commit_by_unit(ds, expected, commit, on_rows=lambda n: progress.advance(task, n))
    return {"units": len(pending), "inputs": total}


def _counts(plan: pa.Table, units: list[str]) -> tuple[list[str], list[int]]:
    vc = pc.value_counts(plan.filter(pc.is_in(plan["unit"], pa.array(units, pa.string())))["unit"])
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


