"""Staged bytes fetched again, for a re-run that needs images whose staged copy was removed
(a run completes by deleting its staged files unless `output.keep_staged`).

Each missing file is rebuilt under its own name with every image at its first offset (zeros
where an image is not fetched again), so every row's locator stays valid. An image is tied to
its first read by size and sha256: one that differs, or is gone, is reported back (reason
`source_changed`), never staged as silently different bytes.
"""

from __future__ import annotations

import asyncio
import hashlib

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.sources import expand_unit, with_listing
from curate.sources.base import Input
from curate.sources.http import HttpSession
from curate.staging import parse, staged_file, store_for
from curate.storage import RunDir
from schemas.job import Job
from schemas.record import UNITS

CHANGED = pa.schema([("key", pa.string()), ("detail", pa.string())])


def restage_missing(job: Job, run: RunDir, staged: pa.Table) -> dict[str, str]:
    """Fetch again every staged file that rows of `staged` point at and the store lacks;
    returns key -> why, for the images that could not be staged as they were."""
    import ray.data

    rows = staged.select(["unit", "key", "blob", "bytes", "sha256"]).filter(pc.is_valid(staged["blob"]))
    files = pa.array([staged_file(b) for b in rows["blob"].to_pylist()], pa.string())
    missing = sorted(set(files.to_pylist()) - store_for(job, run.root).files())
    if not missing:
        return {}
    rows = rows.append_column("file", files).filter(pc.is_in(files, pa.array(missing, pa.string())))
    needed = set(rows["unit"].to_pylist())
    units = {u["unit"]: u for u in with_listing([u for u in pq.read_table(run.plan, schema=UNITS).to_pylist() if u["unit"] in needed])}
    parts = [rows.filter(pc.equal(rows["file"], f)) for f in missing]
    changed = ray.data.from_arrow(parts).map_batches(
        restage_block, batch_size=None, batch_format="pyarrow",
        fn_kwargs={"job_json": job.model_dump_json(), "root": str(run.root), "units": units})
    out = pa.concat_tables([CHANGED.empty_table(), *changed.iter_batches(batch_size=None, batch_format="pyarrow")])
    return dict(zip(out["key"].to_pylist(), out["detail"].to_pylist()))


def restage_block(batch: pa.Table, job_json: str, root: str, units: dict) -> pa.Table:
    """Rebuild the staged files of a batch (rows of whole files); returns CHANGED rows."""
    job = Job.model_validate_json(job_json)
    store = store_for(job, root)
    changed = []
    for rel in sorted(set(batch["file"].to_pylist())):
        rows = sorted((r for r in batch.to_pylist() if r["file"] == rel), key=lambda r: parse(r["blob"])[1])
        fetched = asyncio.run(fetch_again(units[rows[0]["unit"]], {r["key"] for r in rows}, job))
        writer = store.writer(rows[0]["unit"], rel=rel)
        try:
            for r in rows:
                data, why = fetched.get(r["key"], (None, "not found in its source"))
                if data is not None and (len(data) != r["bytes"] or hashlib.sha256(data).hexdigest() != r["sha256"]):
                    data, why = None, f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}... differ from the first read"
                _, offset, length = parse(r["blob"])
                writer.pad_to(offset)
                if data is None:
                    changed.append({"key": r["key"], "detail": f"source changed since the first read: {why}"})
                    writer.pad_to(offset + length)
                else:
                    writer.put(r["key"], data)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    return pa.Table.from_pylist(changed, schema=CHANGED)


async def fetch_again(unit: dict, keys: set[str], job: Job) -> dict[str, tuple[bytes | None, str | None]]:
    """key -> (whole content, None) or (None, why) for the inputs of `unit` named in `keys`."""
    session = HttpSession(job.fetch, job.ingest.max_bytes) if job.sources[unit["source"]].type == "url_list" else None
    gate = asyncio.Semaphore(job.fetch.concurrency)

    async def one(inp: Input) -> tuple[bytes | None, str | None]:
        if inp.error or inp.reader is None:
            return None, _why(inp.error) if inp.error else "unreadable"
        async with gate:
            try:
                if session is not None:
                    async with session.host_slot(inp.reader.url):
                        return await _whole(inp), None
                return await _whole(inp), None
            except Exception as exc:
                return None, _why(exc)
            finally:
                await inp.reader.close()

    try:
        wanted = [inp for inp in expand_unit(unit, job, session) if inp.key in keys]
        results = await asyncio.gather(*(one(inp) for inp in wanted))
    finally:
        if session is not None:
            await session.aclose()
    return {inp.key: res for inp, res in zip(wanted, results)}


async def _whole(inp: Input) -> bytes:
    head = await inp.reader.head(1 << 16)
    if inp.reader.size is not None and len(head) >= inp.reader.size:
        return head
    return await inp.reader.rest()


def _why(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return f"{getattr(reason, 'value', reason) or type(exc).__name__}: {getattr(exc, 'detail', exc)}"
