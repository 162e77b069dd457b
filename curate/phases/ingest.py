"""Phase 1, ingest: each work unit's inputs -> first bytes -> magic-byte sniff + header probe ->
resolution gate -> (only now) the whole content -> one working-size decode -> sha256 +
pHash/dHash -> a staged row, or a reject with its reason.

A Ray task ingests a whole unit with bounded async concurrency (HTTP fetches overlap); the
driver commits each unit (staged rows + rejects) once all its rows are in.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from curate import failpoint, imaging
from curate.engine import actor_resources, commit_by_unit
from curate.phases.embed import EmbedActor
from curate.phases.rejects import rejects_from
from curate.sources import UNITS_LISTED, expand_unit, read_alt_sidecar, with_listing
from curate.sources.base import Input, printable
from curate.sources.http import HttpSession
from curate.sources.netsafety import scrub
from curate.staging import UnitWriter, store_for
from curate.storage import RunDir, write_parquet_atomic
from filters import gates
from filters.quality import signals
from filters.resolution import is_4k
from schemas.job import Job
from schemas.reasons import InputError, Reason
from schemas.record import INGESTED, STAGED, WITH_PIXELS, rows_to_table


def base_row(inp: Input, job: Job, unit: dict) -> dict:
    return {"unit": unit["unit"], "key": inp.key, "source": f"{job.sources[unit['source']].type}:{unit['source']}",
            "uri": inp.uri, "alt": inp.alt, "meta": json.dumps(inp.meta) if inp.meta else None, "detail": inp.note}


async def ingest_input(inp: Input, job: Job, unit: dict, staged: UnitWriter) -> dict:
    row = base_row(inp, job, unit)
    if inp.error:
        return {**row, "status": inp.error.reason.value, "detail": inp.error.detail}
    reader = inp.reader
    try:
        return {**row, **await _fetch_and_hash(reader, job, inp, staged, unit["source"])}
    except InputError as exc:
        return {**row, "status": exc.reason.value, "detail": exc.detail, "received": reader.received}
    finally:
        await reader.close()


async def _read_header(reader, cap: int) -> tuple[imaging.Header, bytes | None]:
    """The header from as few bytes as it takes: FIRST_HEADER_BYTES, doubled while the probe
    finds the header incomplete, up to `cap` (fetch.header_bytes), then the whole content.
    Returns the header and the whole content when it was read (else None)."""
    n = min(imaging.FIRST_HEADER_BYTES, cap)
    head = await reader.head(n)
    imaging.sniff(head)
    while True:
        whole = reader.size is not None and len(head) >= reader.size
        try:
            return imaging.probe(head, partial=not whole), (head if whole else None)
        except InputError:
            if whole:
                raise
        if n >= cap:
            break
        n = min(2 * n, cap)
        head = await reader.head(n)
    data = await reader.rest()  # the header lies beyond `cap` (or the bytes are no image)
    return imaging.probe(data), data


async def _fetch_and_hash(reader, job: Job, inp: Input, staged: UnitWriter, source: int) -> dict:
    header, data = await _read_header(reader, job.fetch.header_bytes)
    decodes = imaging.Decodes()   # probes decode no pixels, so counting starts here
    rule = job.filters.resolution
    out = {"format": header.format, "width": header.width, "height": header.height, "exif_rotated": header.rotated,
           "is_4k": is_4k(header.width, header.height, rule), "bytes": reader.size}
    if gates.apply(gates.gates_for(job, gates.HEADER), out):   # before the rest of the bytes is fetched
        avoided = reader.size - reader.received if reader.size is not None and data is None else 0
        return {**out, "received": reader.received, "avoided": max(avoided, 0), "decodes": decodes.count}
    if data is None:
        data = await reader.rest()
    # from here to the end: one decode, shared by hashing, quality and (as pixels) the embedding actor
    try:
        img = imaging.decode_working(data, job.ingest.working_side, decodes)
    except InputError as exc:
        return {**out, "status": exc.reason.value, "detail": exc.detail, "received": reader.received,
                "decodes": decodes.count}
    quality = {**signals(img), "jpeg_quality": header.jpeg_quality}
    out.update(bytes=len(data), **imaging.content_hashes(data, img), quality=quality, status=STAGED,
               received=reader.received, avoided=0)
    if job.filters.aesthetics.enabled:
        out.update(pixels=img.tobytes(), pixels_shape=[img.height, img.width])
    out["decodes"] = decodes.count
    if gates.apply(gates.gates_for(job, gates.PIXELS), out):
        out["pixels"] = None
        return out
    if inp.alt is None and inp.alt_uri:
        out["alt"], refused = await asyncio.to_thread(read_alt_sidecar, inp.alt_uri, job, source)
        if refused:  # the image stays; why its alt text is missing is kept with its row
            out["detail"] = refused
    out["blob"] = staged.put(inp.key, data)   # the only copy later phases read: the source is not read again
    return out


async def ingest_unit(unit: dict, job: Job, root: Path) -> list[dict]:
    """All inputs of one unit, at most `fetch.concurrency` in flight, rows in input order."""
    session = HttpSession(job.fetch, job.ingest.max_bytes) if job.sources[unit["source"]].type == "url_list" else None
    staged = store_for(job, root).writer(unit["unit"])
    gate = asyncio.Semaphore(job.fetch.concurrency)
    tasks: list[asyncio.Task] = []

    async def one(inp: Input) -> dict:
        try:
            failpoint.hit("ingest.input")
            if session is not None and inp.reader is not None:
                async with session.host_slot(inp.reader.url), asyncio.timeout(job.fetch.total_timeout_s):
                    return await ingest_input(inp, job, unit, staged)
            return await ingest_input(inp, job, unit, staged)
        except TimeoutError:
            return {**base_row(inp, job, unit), "status": Reason.TIMEOUT.value,
                    "detail": f"longer than total_timeout_s {job.fetch.total_timeout_s}"}
        except Exception as exc:  # one input's surprise must not lose the unit
            return {**base_row(inp, job, unit), "status": Reason.WORKER_ERROR.value, "detail": f"{type(exc).__name__}: {exc}"}
        finally:
            gate.release()

    try:
        for inp in expand_unit(unit, job, session):
            await gate.acquire()
            tasks.append(asyncio.create_task(one(inp)))
        rows = list(await asyncio.gather(*tasks))
    except BaseException:
        staged.abort()
        raise
    finally:
        if session is not None:
            await session.aclose()
    staged.close()
    for r in rows:
        r["unit_total"] = len(rows)
    return rows


def ingest_block(batch: pa.Table, job_json: str, root: str) -> pa.Table:
    job = Job.model_validate_json(job_json)
    rows = []
    for unit in batch.to_pylist():
        rows += asyncio.run(ingest_unit(unit, job, Path(root)))
    for r in rows:  # text from strangers' names and errors: no credentials, no undecodable bytes
        for col in ("uri", "detail", "alt"):
            if r.get(col) is not None:
                r[col] = printable(scrub(r[col]) if col == "detail" else r[col])
    # working-size pixels travel on to the embedding actor (no second decode) when it runs
    return rows_to_table(rows, WITH_PIXELS if job.filters.aesthetics.enabled else INGESTED)


def run_ingest(job: Job, run: RunDir, units: pa.Table, progress) -> dict:
    """Ingest every unit without a done-marker."""
    import ray.data

    pending = [u for u in units.to_pylist() if not run.is_done(run.done(run.ingest, u["unit"]))]
    if not pending:
        return {"units": 0}
    ds = ray.data.from_arrow([pa.Table.from_pylist([u], schema=UNITS_LISTED) for u in with_listing(pending)]).map_batches(
        ingest_block, batch_size=1, batch_format="pyarrow", fn_kwargs={"job_json": job.model_dump_json(), "root": str(run.root)}
    )
    aes = job.filters.aesthetics
    if aes.enabled:
        num_cpus, num_gpus = actor_resources("aesthetics", aes.num_cpus, aes.num_gpus, 1)
        ds = ds.map_batches(EmbedActor, fn_constructor_kwargs={"filters_json": job.filters.model_dump_json(),
                                                               "gates": gates.gates_for(job, gates.EMBEDDING)}, batch_size=aes.batch_size,
                            batch_format="pyarrow", num_cpus=num_cpus, num_gpus=num_gpus,
                            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=aes.concurrency))
    # listed sources know their size; a tar's inputs are only known once it is read
    total = None if any(u["kind"] == "tar" for u in pending) else sum(u["stop"] - u["start"] for u in pending)
    task = progress.add_task("ingest", total=total)

    def commit(unit: str, rows: pa.Table) -> None:
        write_parquet_atomic(run.ingest / f"{unit}.parquet", rows)
        rejected = rows.filter(pc.not_equal(rows["status"], STAGED))
        write_parquet_atomic(run.rejects / "ingest" / f"{unit}.parquet", rejects_from(rejected, "ingest"))
        failpoint.hit("ingest.commit")
        run.mark(run.done(run.ingest, unit))

    commit_by_unit(ds, None, commit, on_rows=lambda n: progress.advance(task, n))
    for u in pending:  # units that turned out to hold no input at all (an empty tar)
        if not run.is_done(run.done(run.ingest, u["unit"])):
            commit(u["unit"], INGESTED.empty_table())
    return {"units": len(pending)}
