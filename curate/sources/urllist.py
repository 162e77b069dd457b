"""A URL list (Parquet, CSV, TSV or JSON lines; local or on S3) as a source: each row's URL is
fetched over HTTP(S) by the ingest task's session (curate.sources.http)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from curate.jobs import JobError
from curate.sources import s3
from curate.sources.base import Datasource, Input, key_for
from curate.sources.http import HttpReader
from curate.sources.netsafety import MAX_URL_CHARS, redact
from schemas.job import UrlListSource
from schemas.reasons import InputError, Reason
from schemas.record import INPUTS


class UrlList(Datasource):
    type = "url_list"

    def list(self) -> pa.Table:
        return read_url_list(self.cfg, f"sources.{self.index}")

    def open(self, row: dict) -> Input:
        url = (row["uri"] or "").strip()
        inp = Input(key_for(f"{self.cfg.path}#{row['row']}"), redact(url), None, alt=row["alt"])
        if len(url) > MAX_URL_CHARS:  # refused unread, and not copied whole into every report
            inp.uri = f"{redact(url[:200])}... ({len(url)} characters)"
            inp.error = InputError(Reason.BAD_URL, f"URL of {len(url)} characters > {MAX_URL_CHARS}")
        else:
            inp.reader = HttpReader(self.session, url)
        return inp


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
