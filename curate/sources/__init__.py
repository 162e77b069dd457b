"""Sources: plan work units on the driver, expand a unit into `Input`s in a worker.

Each job source type has one `Datasource` class (`DATASOURCES`): `list()` on the driver,
`open(row)` per listed row in a worker. Listed sources (folder, S3 prefix, URL list) are listed
once into `_work/inputs/sNN.parquet` and cut into slices of `units.size`; a webdataset tar is
one unit whose inputs are discovered while it is read (`stream`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.sources import s3
from curate.sources.base import SIDECAR_MAX_BYTES, Datasource, Input, key_for, local_path
from curate.sources.folder import Folder, read_local
from curate.sources.http import HttpSession
from curate.sources.s3 import S3Prefix
from curate.sources.urllist import UrlList
from curate.sources.wds import WebdatasetTars
from curate.storage import write_parquet_atomic
from schemas.job import Job
from schemas.reasons import InputError
from schemas.record import INPUTS, UNITS

__all__ = ["DATASOURCES", "datasource", "expand_unit", "key_for", "plan_units"]

UNITS_LISTED = UNITS.append(pa.field("listing", pa.binary()))   # with_listing's rows

# One Datasource class per job source type.
DATASOURCES: dict[str, type[Datasource]] = {cls.type: cls for cls in (Folder, S3Prefix, UrlList, WebdatasetTars)}


def datasource(job: Job, index: int, session: HttpSession | None = None) -> Datasource:
    return DATASOURCES[job.sources[index].type](job, index, session)


def plan_units(job: Job, work: Path, limit: int | None = None) -> pa.Table:
    """List every source, store the listings under `work/inputs/`, return the work units."""
    units, budget = [], limit
    for i in range(len(job.sources)):
        source = datasource(job, i)
        table = source.list()
        if source.streams:   # each container (tar) is one unit; its inputs are found while reading it
            for n, tar in enumerate(table["uri"].to_pylist()):
                units.append({"unit": f"s{i:02d}t{n:06d}", "source": i, "kind": "tar", "path": tar, "start": 0, "stop": limit if limit is not None else -1})
            continue
        if budget is not None:
            table = table.slice(0, budget)
            budget -= table.num_rows
        path = work / "inputs" / f"s{i:02d}.parquet"
        write_parquet_atomic(path, table)
        size = job.units.size
        for n, start in enumerate(range(0, table.num_rows, size)):
            units.append({"unit": f"s{i:02d}u{n:06d}", "source": i, "kind": "slice", "path": str(path),
                          "start": start, "stop": min(start + size, table.num_rows)})
    return pa.Table.from_pylist(units, schema=UNITS)


def with_listing(units: list[dict]) -> list[dict]:
    """The units with their slice of the listing attached (`listing`: Arrow IPC bytes), read here
    on the driver: a worker on a node without the driver's file system needs nothing else."""
    tables: dict[str, pa.Table] = {}

    def listing(u: dict) -> bytes | None:
        if u["kind"] != "slice":
            return None
        if u["path"] not in tables:
            tables[u["path"]] = pq.read_table(u["path"], schema=INPUTS)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, INPUTS) as w:
            w.write_table(tables[u["path"]].slice(u["start"], u["stop"] - u["start"]))
        return sink.getvalue().to_pybytes()

    return [{**u, "listing": listing(u)} for u in units]


def unit_listing(unit: dict) -> pa.Table:
    if unit.get("listing"):
        return pa.ipc.open_stream(unit["listing"]).read_all()
    return pq.read_table(unit["path"], schema=INPUTS).slice(unit["start"], unit["stop"] - unit["start"])


def expand_unit(unit: dict, job: Job, session: HttpSession | None) -> Iterator[Input]:
    """The inputs of one work unit, in a stable order."""
    source = datasource(job, unit["source"], session)
    if unit["kind"] == "tar":
        yield from source.stream(unit["path"], None if unit["stop"] < 0 else unit["stop"])
        return
    rows = unit_listing(unit).to_pylist()
    for row in rows:
        yield source.open(row)


def read_alt_sidecar(uri: str | None, job: Job, source: int) -> tuple[str | None, str | None]:
    """(alt text, None), (None, None) when there is no sidecar, or (None, why) when the sidecar
    is refused (unsafe, not a regular file, larger than SIDECAR_MAX_BYTES): the image is
    still ingested, without alt text."""
    if not uri:
        return None, None
    try:
        if uri.startswith("s3://"):
            data = s3.get_bytes(uri, job.sources[source].s3, 0, SIDECAR_MAX_BYTES)
        else:
            data = read_local(local_path(uri), job.sources[source].path, SIDECAR_MAX_BYTES + 1)
    except FileNotFoundError:
        return None, None
    except InputError as exc:
        if uri.startswith("s3://") and "NoSuchKey" in exc.detail:
            return None, None
        return None, f"alt sidecar refused ({exc.reason}): {exc.detail}"
    except OSError as exc:
        return None, f"alt sidecar refused (read_error): {exc.strerror}"
    if len(data) > SIDECAR_MAX_BYTES:
        return None, f"alt sidecar refused (too_many_bytes): more than {SIDECAR_MAX_BYTES} bytes"
    return data.decode(errors="replace").strip() or None, None


def reread(uri: str, job: Job, source: int) -> bytes:
    """Bytes of a re-readable input (folder file or S3 object)."""
    if uri.startswith("s3://"):
        return s3.get_bytes(uri, job.sources[source].s3)
    return read_local(local_path(uri), job.sources[source].path, job.ingest.max_bytes)


def rejected_input_bytes(row: dict, job: Job, run) -> bytes:
    """The bytes of an input that was ingested but not written (a dropped duplicate), found by its
    rejects row (unit, key): its staged blob, or the source read again."""
    staged = pq.read_table(run.ingest / f"{row['unit']}.parquet", columns=["key", "uri", "source", "blob"],
                           filters=[("key", "=", row["key"])]).to_pylist()
    if not staged:
        raise FileNotFoundError(f"{row['key']} is not among unit {row['unit']}'s ingested inputs")
    try:
        return stored_bytes(staged[0], job, run.root)
    except Exception:   # staged bytes deleted with the run complete (a rebuilt report): a folder or S3 source is read again
        if not staged[0]["uri"].startswith(("file://", "s3://")):
            raise
        return reread(staged[0]["uri"], job, int(staged[0]["source"].split(":")[1]))


def stored_bytes(row: dict, job: Job, root: Path, store=None) -> bytes:
    """An ingested input's bytes for later phases: one ranged read of its staged copy (a row of a
    run from before staging covered every source has none: its source is read again). Pass the
    run's `store` when reading many: an S3 store is one client, not one per image."""
    from curate.staging import store_for

    if row.get("blob"):
        return (store or store_for(job, root)).read(row["blob"])
    return reread(row["uri"], job, int(row["source"].split(":")[1]))
