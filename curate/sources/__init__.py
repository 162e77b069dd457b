"""Sources: plan work units on the driver, expand a unit into `Input`s in a worker.

Listable sources (folder, S3 prefix, URL list) are listed once into
`_work/inputs/sNN.parquet` and cut into slices of `units.size`; a webdataset tar is one unit
whose inputs are discovered while it is read.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from curate.jobs import JobError
from curate.sources import s3, wds
from curate.sources.base import (
    SIDECAR_MAX_BYTES,
    Input,
    InputError,
    LocalReader,
    file_kind,
    key_for,
    local_path,
    open_inside,
    read_fd,
)
from curate.sources.http import HttpReader, HttpSession
from curate.sources.netsafety import MAX_URL_CHARS, redact
from curate.storage import write_parquet_atomic
from schemas.job import Job, UrlListSource

INPUTS = pa.schema([("row", pa.int64()), ("uri", pa.string()), ("size", pa.int64()), ("alt", pa.string()), ("alt_uri", pa.string()),
                    ("error", pa.string()), ("error_detail", pa.string())])   # error: a listed entry refused unread
UNITS = pa.schema([("unit", pa.string()), ("source", pa.int32()), ("kind", pa.string()), ("path", pa.string()),
                   ("start", pa.int64()), ("stop", pa.int64())])
UNITS_LISTED = UNITS.append(pa.field("listing", pa.binary()))   # with_listing's rows


def _wanted(name: str, exts: list[str]) -> bool:
    return Path(name).suffix.lower() in {"." + e.lower().lstrip(".") for e in exts}


def walk_folder(root: Path, exts: list[str]) -> Iterator[tuple[Path, str | None, str | None]]:
    """(path, refusal reason, detail) of every entry under `root` whose name has an image
    extension, refused or not: dot-files, FIFOs and devices, dangling or looping symlinks
    and symlinks that leave `root` are listed with their reason (never opened). Dot-folders
    and symlinked folders are not entered (a link may loop or leave the folder)."""
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            path = Path(e.path)
            if e.is_dir(follow_symlinks=False):
                if not e.name.startswith("."):
                    stack.append(path)
                continue
            if not _wanted(e.name, exts):
                continue
            yield (path, *_refusal(root, path, e))


def _refusal(root: Path, path: Path, entry: os.DirEntry) -> tuple[str | None, str | None]:
    if entry.name.startswith("."):
        return "hidden_file", "a dot-file (hidden) is not an input"
    if entry.is_file(follow_symlinks=False):   # from the directory entry: no stat call
        return None, None
    mode = entry.stat(follow_symlinks=False).st_mode
    if stat.S_ISLNK(mode):
        real = os.path.realpath(path)
        if not os.path.exists(real):
            return "broken_link", "a dangling symlink or a symlink loop"
        if os.path.commonpath([real, root]) != str(root):
            return "unsafe_path", "a symlink to a path outside the source folder"
        mode = os.stat(real).st_mode
    if not stat.S_ISREG(mode):
        return "not_a_file", f"not a regular file ({file_kind(mode)})"
    return None, None


def list_inputs(job: Job, i: int) -> pa.Table:
    src = job.sources[i]
    if src.type == "folder":
        root = Path(src.path).resolve()
        entries = [(p.as_uri(), 0, why, detail) for p, why, detail in walk_folder(root, src.extensions)]
        texts: set[str] = set()
    elif src.type == "s3":
        objects = s3.list_objects(src.prefix, src.s3)
        entries = [(u, n, None, None) for u, n in objects if _wanted(u, src.extensions) and not Path(u).name.startswith(".")]
        texts = {u for u, _ in objects if u.endswith(".txt")}
    else:
        return read_url_list(src, f"sources.{i}")
    rows = []
    for n, (uri, size, why, detail) in enumerate(sorted(entries)):
        sidecar = uri.rsplit(".", 1)[0] + ".txt"
        has_sidecar = src.alt_text == "sidecar" and why is None and (src.type == "folder" or sidecar in texts)
        rows.append({"row": n, "uri": uri, "size": size, "alt": None, "alt_uri": sidecar if has_sidecar else None,
                     "error": why, "error_detail": detail})
    return pa.Table.from_pylist(rows, schema=INPUTS)


def read_url_list(src: UrlListSource, field: str) -> pa.Table:
    """Any supported list format -> (row, uri, alt). Missing columns are a job error."""
    fmt = src.format
    if fmt == "auto":
        name = src.path.lower().removesuffix(".gz")
        fmt = next((f for f, ends in (("parquet", ".parquet"), ("csv", ".csv"), ("tsv", ".tsv"), ("jsonl", ".jsonl"), ("jsonl", ".json"))
                    if name.endswith(ends)), None)
        if fmt is None:
            raise JobError(f"{field}.format: cannot tell the format of {src.path} from its name; set format: parquet|csv|tsv|jsonl")
    data = io.BytesIO(s3.get_bytes(src.path, src.s3)) if src.path.startswith("s3://") else src.path
    try:
        if fmt == "parquet":
            table = pq.read_table(data)
        elif fmt in ("csv", "tsv"):
            table = pacsv.read_csv(data, parse_options=pacsv.ParseOptions(delimiter="," if fmt == "csv" else "\t", newlines_in_values=True),
                                   convert_options=pacsv.ConvertOptions(column_types={src.url_column: pa.string()}))
        else:
            table = pajson.read_json(data)
    except (pa.ArrowInvalid, OSError) as exc:
        raise JobError(f"{field}.path: {src.path}: not a readable {fmt} URL list: {exc}") from None
    for col, name in ((src.url_column, "url_column"), (src.caption_column, "caption_column")):
        if col is not None and col not in table.column_names:
            raise JobError(f"{field}.{name}: column {col!r} not in {src.path} (columns: {', '.join(table.column_names)})")
    urls = _blank_to_null(table[src.url_column])
    alts = _blank_to_null(table[src.caption_column]) if src.caption_column else pa.nulls(table.num_rows, pa.string())
    nulls = pa.nulls(table.num_rows, pa.string())
    return pa.table({"row": pa.array(range(table.num_rows), pa.int64()), "uri": urls, "size": pa.nulls(table.num_rows, pa.int64()),
                     "alt": alts, "alt_uri": nulls, "error": nulls, "error_detail": nulls}, schema=INPUTS)


def _blank_to_null(column) -> pa.ChunkedArray:
    """CSV has no null: an empty cell and a missing value read alike in every format."""
    column = pc.utf8_trim_whitespace(column.cast(pa.string()))
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)


def plan_units(job: Job, work: Path, limit: int | None = None) -> pa.Table:
    """List every source, store the listings under `work/inputs/`, return the work units."""
    units, budget = [], limit
    for i, src in enumerate(job.sources):
        if src.type == "webdataset":
            for n, tar in enumerate(wds.list_tars(src)):
                units.append({"unit": f"s{i:02d}t{n:06d}", "source": i, "kind": "tar", "path": tar, "start": 0, "stop": limit if limit is not None else -1})
            continue
        table = list_inputs(job, i)
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
    src = job.sources[unit["source"]]
    max_bytes = job.ingest.max_bytes
    if unit["kind"] == "tar":
        yield from wds.iter_samples(unit["path"], src, max_bytes, None if unit["stop"] < 0 else unit["stop"])
        return
    rows = unit_listing(unit).to_pylist()
    root = Path(src.path).resolve() if src.type == "folder" else None
    for r in rows:
        if src.type == "url_list":
            url = (r["uri"] or "").strip()
            inp = Input(key_for(f"{src.path}#{r['row']}"), redact(url), None, alt=r["alt"])
            if len(url) > MAX_URL_CHARS:  # refused unread, and not copied whole into every report
                inp.uri = f"{redact(url[:200])}... ({len(url)} characters)"
                inp.error = InputError("bad_url", f"URL of {len(url)} characters > {MAX_URL_CHARS}")
            else:
                inp.reader = HttpReader(session, url)
            yield inp
            continue
        inp = Input(key_for(r["uri"]), r["uri"], None, alt_uri=r["alt_uri"])
        if r["error"]:
            inp.error = InputError(r["error"], r["error_detail"])
            yield inp
            continue
        try:
            inp.reader = LocalReader(root, local_path(r["uri"]), max_bytes) if root else s3.S3Reader(r["uri"], r["size"], src.s3, max_bytes)
        except InputError as exc:
            inp.error = exc
        except OSError as exc:
            inp.error = InputError("read_error", f"{type(exc).__name__}: {exc.strerror}")
        yield inp


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


def read_local(path: Path, folder: str, limit: int) -> bytes:
    """A file of a folder source, read with the same rules as its images (see `open_inside`)."""
    fd = open_inside(Path(folder).resolve(), path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise InputError("too_many_bytes", f"{size} bytes > {limit}")
        return read_fd(fd, size, limit)
    finally:
        os.close(fd)


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


def stored_bytes(row: dict, job: Job, root: Path) -> bytes:
    """An ingested input's bytes for later phases: one ranged read of its staged copy (a row of a
    run from before staging covered every source has none: its source is read again)."""
    from curate.staging import store_for

    if row.get("blob"):
        return store_for(job, root).read(row["blob"])
    return reread(row["uri"], job, int(row["source"].split(":")[1]))
