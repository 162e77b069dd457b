"""Phase 4, report: one self-contained HTML page a user checks before training.

The page (``report/index.html``) needs no network: thumbnails are inline base64 JPEG data URIs,
charts are inline SVG drawn here, CSS and JS are inline. It holds the run summary and the
accounting (inputs = written + rejected + failed), distributions, the worst captions per bucket
and per source (by hallucination score, suspect spans highlighted), and a sortable, filterable
table of samples. Work is capped for big runs (the table holds the worst rows plus a random
sample; thumbnails are made only for rows shown) and the page says what was capped.

All text that comes from data (captions, keys, sources, reasons, OCR text) is escaped."""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.outputs import LocalOutput, run_output
from curate.report import duplicates
from curate.report.charts import fmt_number, svg_bars, svg_histogram
from curate.report.highlight import HIGHLIGHTS, align_spans, caption_spans, fmt_score, highlight
from curate.report.thumbnails import OpenShard, ReadRange, Thumb, load_thumbnails
from curate.storage import RunDir, read_index, read_parquet_dir, write_bytes_atomic
from schemas.record import REJECTS

MAX_TABLE_ROWS = 2000     # samples table: the worst half by hallucination score + a random sample
WORST_PER_GROUP = 3       # worst captions shown per bucket and per source
MAX_GROUPS = 30           # buckets / sources with worst captions shown
MAX_REJECT_ROWS = 500     # rejected/failed examples listed (spread over reasons)


class ReportError(RuntimeError):
    """The folder does not hold a finished run the report can be built from."""


def write_report(run: RunDir, manifest: dict, index: pa.Table, rejects: pa.Table,
                 hallucinations: pa.Table | None = None, open_shard: OpenShard | None = None, *,
                 max_rows: int = MAX_TABLE_ROWS, workers: int = 4, read_range: ReadRange | None = None,
                 read_input: duplicates.ReadInput | None = None) -> Path:
    """Write ``run.report / "index.html"`` atomically and return its path.

    ``open_shard(rel)`` opens the shard tar at ``rel`` (an index row's ``shard``) for reading and
    ``read_range(rel, offset, size)`` reads one member by the index's offsets; both may be called
    from several threads at once. Default: the files under ``run.root``. ``read_input(key)``
    reads a dropped duplicate's bytes from where ingest found it (none: placeholders).
    """
    if open_shard is None:
        local = LocalOutput(run.root)
        open_shard, read_range = local.open_read, read_range or local.read_range
    distances = _dedup_distances(run)
    page = render_html(manifest, index, rejects, hallucinations, open_shard, max_rows=max_rows, workers=workers,
                       read_range=read_range, read_input=read_input, distances=distances)
    path = run.report / "index.html"
    write_bytes_atomic(path, page.encode("utf-8"))
    return path


def rebuild_report(run_dir: Path, open_shard: OpenShard | None = None) -> Path:
    """Rebuild a finished run's report from its files (manifest, index, rejects, evidence).

    Shards are read with ``open_shard`` when given, else from where the run published them
    (``curate.outputs.run_output``: the folder itself or its job's s3:// prefix); an image that
    cannot be read gets a placeholder.
    """
    run = RunDir(run_dir)
    if not run.root.is_dir():
        raise ReportError(f"{run_dir}: no such folder")
    if not run.manifest.exists():
        raise ReportError(f"{run_dir}: not a finished curate run (no manifest.json; try `curate status {run_dir}`)")
    try:
        manifest = json.loads(run.manifest.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{run.manifest}: unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("status") != "complete":
        status = manifest.get("status") if isinstance(manifest, dict) else None
        raise ReportError(f"{run_dir}: the run is not finished (manifest status {status!r}, expected 'complete')")
    evidence = run.report / "hallucinations.parquet"
    try:
        index = read_index(run)
        rejects = read_parquet_dir(run.rejects, REJECTS)
        hallucinations = pq.read_table(evidence) if evidence.exists() else None
    except (OSError, pa.ArrowException) as exc:  # FileNotFoundError included
        raise ReportError(f"{run_dir}: cannot read the run's tables ({exc})") from None
    output = run_output(run.root)
    return write_report(run, manifest, index, rejects, hallucinations, open_shard or output.open_read,
                        read_range=None if open_shard else output.read_range, read_input=_input_reader(run))


def _input_reader(run: RunDir) -> duplicates.ReadInput | None:
    """Reads a rejected input back through the run's own job (its `_work/config.json`), if kept."""
    stamp = run.work / "config.json"
    if not stamp.exists():
        return None
    from curate.sources import rejected_input_bytes
    from schemas.job import Job

    job = Job.model_validate(json.loads(stamp.read_text())["job"])
    return lambda row: rejected_input_bytes(row, job, run)


def _dedup_distances(run: RunDir) -> dict[str, int | None]:
    """pHash distance of each dropped duplicate to the sample it was merged into (from the dedup
    decisions, while the run's `_work` folder exists)."""
    if not run.dedup.exists():
        return {}
    table = pq.read_table(run.dedup, columns=["key", "distance"])
    return dict(zip(table["key"].to_pylist(), table["distance"].to_pylist()))


def bucket_counts(index: pa.Table) -> dict[str, int]:
    """Written samples per bucket, in bucket (h/w) order."""
    counts = pc.value_counts(index["bucket"]).to_pylist() if index.num_rows else []
    return dict(sorted(((c["values"], c["counts"]) for c in counts), key=lambda kv: _bucket_sort_key(kv[0])))


def _column(table: pa.Table, name: str, type_: pa.DataType | None = None) -> pa.ChunkedArray:
    if name in table.column_names:
        return table[name]
    return pa.chunked_array([pa.nulls(table.num_rows, type_ or pa.null())])


def _floats(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64 with NaN for nulls (all NaN when the column is absent)."""
    if name not in table.column_names or table.num_rows == 0:
        return np.full(table.num_rows, np.nan)
    col = table[name]
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        return np.full(table.num_rows, np.nan)
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _codes(table: pa.Table, name: str) -> tuple[np.ndarray, list[str]]:
    """A column as dictionary codes (int64 per row) and the labels they index; null -> "(none)"."""
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.int64), []
    col = _column(table, name, pa.string())
    col = col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
    enc = pc.dictionary_encode(pc.fill_null(col, "(none)")).combine_chunks()
    return np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64), enc.dictionary.to_pylist()


@dataclass
class Scores:
    score: np.ndarray            # per index row, NaN where not scored
    flags: pa.ChunkedArray       # list<string> per index row (null where none)
    evidence_pos: pa.Array       # per index row: the row of `hallucinations` (null where none)


def _scores(index: pa.Table, hallucinations: pa.Table | None) -> Scores:
    n = index.num_rows
    score = np.full(n, np.nan)
    flags = pa.chunked_array([pa.nulls(n, pa.list_(pa.string()))])
    if "hallucination" in index.column_names and pa.types.is_struct(index["hallucination"].type):
        h = index["hallucination"]
        names = [h.type.field(i).name for i in range(h.type.num_fields)]
        if "score" in names:
            score = np.asarray(pc.cast(pc.struct_field(h, "score"), pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
        if "flags" in names:
            flags = pc.struct_field(h, "flags")
    pos = pa.nulls(n, pa.int32())
    if hallucinations is not None and hallucinations.num_rows and "key" in hallucinations.column_names and n:
        pos = pc.index_in(index["key"], value_set=hallucinations["key"].combine_chunks())
        pos = pos.combine_chunks() if isinstance(pos, pa.ChunkedArray) else pos
        if "score" in hallucinations.column_names:
            ev = np.asarray(pc.cast(hallucinations["score"].take(pos), pa.float64()).to_numpy(zero_copy_only=False),
                            dtype=np.float64)
            score = np.where(np.isnan(ev), score, ev)
        if "flags" in hallucinations.column_names:
            ev_flags = hallucinations["flags"].take(pos)
            try:
                flags = pc.coalesce(ev_flags, flags.cast(ev_flags.type))
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
                flags = ev_flags
    return Scores(score, flags, pos)


def _order_worst_first(rows: np.ndarray, score: np.ndarray) -> np.ndarray:
    """``rows`` by score, highest first, unscored last; ties keep row order."""
    if rows.size == 0:
        return rows
    s = score[rows]
    return rows[np.argsort(np.where(np.isnan(s), np.inf, -s), kind="stable")]


def _table_rows(score: np.ndarray, max_rows: int) -> tuple[np.ndarray, str]:
    """Rows for the samples table (worst first) and a note about the cap ("" when uncapped)."""
    n = score.size
    if n <= max_rows:
        return _order_worst_first(np.arange(n), score), ""
    scored = np.flatnonzero(~np.isnan(score))
    n_worst = min(scored.size, max_rows // 2)
    worst = _order_worst_first(scored, score)[:n_worst]
    rest = np.setdiff1d(np.arange(n), worst, assume_unique=True)
    sample = np.random.default_rng(0).choice(rest, size=max_rows - n_worst, replace=False)
    rows = _order_worst_first(np.concatenate([worst, sample]), score)
    note = (f"The table shows {max_rows:,} of {n:,} written samples: the {n_worst:,} with the highest "
            f"hallucination score and a random sample of {max_rows - n_worst:,} others. "
            "Filters and sorting apply to these rows only.")
    return rows, note


def _first_k_per_group(codes: np.ndarray, rows: np.ndarray, k: int) -> list[tuple[int, list[int]]]:
    """For each group code among ``rows`` (in their order): (code, its first k rows)."""
    if rows.size == 0:
        return []
    by_group = rows[np.argsort(codes[rows], kind="stable")]   # grouped, each group in the order given
    g = codes[by_group]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], g.size]
    return [(int(g[s]), by_group[s:min(s + k, e)].tolist()) for s, e in zip(starts.tolist(), ends.tolist())]


def _worst_by(codes: np.ndarray, labels: list[str], score: np.ndarray, k: int,
              max_groups: int) -> tuple[list[tuple[str, int, list[int]]], int]:
    """Per group: (label, group size, its top-k scored rows, worst first); groups ordered by their
    worst score, at most ``max_groups``. Also returns how many groups have a scored row."""
    scored = _order_worst_first(np.flatnonzero(~np.isnan(score)), score)
    sizes = np.bincount(codes, minlength=len(labels)) if codes.size else np.zeros(0, dtype=np.int64)
    groups = [(labels[c], int(sizes[c]), rows) for c, rows in _first_k_per_group(codes, scored, k)]
    groups.sort(key=lambda x: (-score[x[2][0]], _bucket_sort_key(x[0])))
    return groups[:max_groups], len(groups)


def _bucket_sort_key(b) -> tuple:
    try:
        return (0, float(b), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(b))


def _esc(x) -> str:
    return html.escape("" if x is None else str(x))


def _score_cell(s) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return '<span class="muted">\u2013</span>'
    level = "hi" if s >= 0.6 else "mid" if s >= 0.3 else "lo"
    return f'<span class="score {level}">{s:.2f}</span>'


def _count(v) -> str:
    return f"{v:,}" if isinstance(v, int) else _esc(v)


def _flag_badges(flags: list[str] | None) -> str:
    return " ".join(f'<span class="flag">{_esc(f)}</span>' for f in (flags or []))


def _kv_table(rows: list[tuple[str, object]]) -> str:
    return "<table class=kv>" + "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows) + "</table>"


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        elif isinstance(v, list):
            out.append((f"{prefix}{k}", ", ".join(map(str, v))))
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _reason_counts(rejects: pa.Table) -> dict[str, Counter]:
    """{"rejected": {reason: n}, "failed": {reason: n}} from the rejects table (as the accounting
    counts: any outcome other than "failed" is a rejection)."""
    out: dict[str, Counter] = {"rejected": Counter(), "failed": Counter()}
    if not rejects.num_rows:
        return out
    t = pa.table({"outcome": pc.fill_null(_column(rejects, "outcome", pa.string()), ""),
                  "reason": pc.fill_null(_column(rejects, "reason", pa.string()), "(none)")})
    for r in t.group_by(["outcome", "reason"]).aggregate([([], "count_all")]).to_pylist():
        out["failed" if r["outcome"] == "failed" else "rejected"][r["reason"]] += r["count_all"]
    return out


def _summary(manifest: dict, index: pa.Table, rejects: pa.Table, scores: Scores) -> str:
    c = manifest.get("counts") or {}
    from_rejects = _reason_counts(rejects)
    rejected = c.get("rejected") if isinstance(c.get("rejected"), dict) else dict(from_rejects["rejected"])
    failed = c.get("failed") if isinstance(c.get("failed"), dict) else dict(from_rejects["failed"])
    written = c.get("written", index.num_rows)
    n_rej, n_fail = sum(rejected.values()), sum(failed.values())
    inputs = c.get("inputs", written + n_rej + n_fail)
    balance = written + n_rej + n_fail
    ok = inputs == balance
    warnings = []
    if written != index.num_rows:
        warnings.append(f"the manifest counts {written:,} written samples but the index has {index.num_rows:,} rows")
    if (dict(from_rejects["rejected"]), dict(from_rejects["failed"])) != (
            {k: v for k, v in rejected.items() if v}, {k: v for k, v in failed.items() if v}):
        warnings.append("the manifest's per-reason counts differ from the rejects table")
    scored = int(np.count_nonzero(~np.isnan(scores.score)))
    flagged = int(pc.sum(pc.greater(pc.fill_null(pc.list_value_length(scores.flags), 0), 0)).as_py() or 0) if index.num_rows else 0
    four_k = c.get("is_4k", int(pc.sum(_column(index, "is_4k", pa.bool_())).as_py() or 0) if index.num_rows else 0)
    cards = [("inputs", inputs), ("written", written), ("rejected", n_rej), ("failed", n_fail), ("4K written", four_k),
             ("shards", manifest["shards"] if "shards" in manifest else pc.count_distinct(_column(index, "shard", pa.string())).as_py()),
             ("captions scored", scored), ("captions flagged", flagged)]
    card_html = "".join(f'<div class="card stat" data-stat="{_esc(k)}"><div class="n">{_count(v)}</div><div>{_esc(k)}</div></div>'
                        for k, v in cards)
    eq = (f'<p class="accounting {"ok" if ok else "bad"}" id="accounting">inputs <b>{inputs:,}</b> = written <b>{written:,}</b> '
          f'+ rejected <b>{n_rej:,}</b> + failed <b>{n_fail:,}</b> '
          + ("<span class=badge-ok>\u2713 balanced</span>" if ok else
             f"<span class=badge-bad>\u2717 off by {inputs - balance:+,}</span>") + "</p>")
    warn = "".join(f'<p class="warn">\u26a0 {_esc(w)}</p>' for w in warnings)
    reason_rows = [("rejected", k, v) for k, v in rejected.items()] + [("failed", k, v) for k, v in failed.items()]
    reason_rows.sort(key=lambda r: (-r[2], r[0], r[1]))
    rtable = ("<table class=reasons><thead><tr><th>outcome</th><th>reason</th><th class=num>count</th>"
              "<th class=num>share of inputs</th></tr></thead><tbody>"
              + "".join(f'<tr><td class="{_esc(o)}">{_esc(o)}</td><td>{_esc(r)}</td><td class=num>{v:,}</td>'
                        f"<td class=num>{100 * v / inputs if inputs else 0:.1f}%</td></tr>" for o, r, v in reason_rows)
              + "</tbody></table>") if reason_rows else "<p class=muted>nothing rejected or failed</p>"
    skip = {"counts", "buckets", "units", "outputs"}
    meta = _kv_table([(k, v) for k, v in _flatten({k: v for k, v in manifest.items() if k not in skip})])
    units = manifest.get("units") or {}
    unit_note = ""
    if isinstance(units, dict) and units:
        bad = [u for u, x in units.items() if isinstance(x, dict)
               and x.get("inputs", 0) != x.get("written", 0) + x.get("rejected", 0) + x.get("failed", 0)]
        unit_note = (f"<p>{len(units):,} input units; " + (f'<span class=badge-bad>{len(bad)} unbalanced: {_esc(", ".join(bad[:10]))}</span>'
                     if bad else "all balanced") + ".</p>")
    return (f'<section id="summary"><h2>Summary and accounting</h2><div class="cards">{card_html}</div>{eq}{warn}{unit_note}'
            f'<div class="cols"><div><h3>Not written, by reason</h3>{rtable}</div>'
            f'<div><h3>Run</h3>{meta}</div></div></section>')


# Scores read from the ingest CLIP embedding besides the aesthetic one: (column, title, axis range).
EMBEDDING_SCORES = [("nsfw", "NSFW score (higher: less safe)", None, None),
                    ("watermark", "Watermark score (higher: more likely watermarked)", None, None),
                    ("clip_alt", "Image\u2013alt text agreement (CLIP cosine)", None, None)]


def _distributions(manifest: dict, index: pa.Table, scores: Scores) -> str:
    w, h = _floats(index, "width"), _floats(index, "height")
    mp = w * h / 1e6
    short = np.minimum(w, h)
    buckets = bucket_counts(index) if "bucket" in index.column_names else manifest.get("buckets") or {}
    src_codes, src_labels = _codes(index, "source")
    sources = dict(zip(src_labels, np.bincount(src_codes, minlength=len(src_labels)).tolist()))
    flag_counts: dict[str, int] = {}
    if index.num_rows:
        flat = pc.list_flatten(scores.flags)
        if len(flat):
            vc = pc.value_counts(flat)
            flag_counts = {(x["values"] if x["values"] is not None else "(none)"): x["counts"] for x in vc.to_pylist()}
    charts = [
        svg_histogram(mp, "Resolution (megapixels)", unit=" MP"),
        svg_histogram(short, "Shorter side (px)", integer=True),
        svg_bars(buckets, "Aspect-ratio buckets (h/w)"),
        svg_bars(sources, "Sources", sort=True),
        svg_histogram(_floats(index, "aesthetic"), "Aesthetic score"),
        *[svg_histogram(v, title, lo=lo, hi=hi) for name, title, lo, hi in EMBEDDING_SCORES
          if np.isfinite(v := _floats(index, name)).any()],   # only the scores the run computed
        svg_histogram(_floats(index, "caption_tokens"), "Caption tokens", integer=True),
        svg_histogram(scores.score, "Hallucination score (0 clean \u2026 1 worst)", bins=20, lo=0.0, hi=1.0),
        svg_bars(flag_counts, "Hallucination flags", sort=True),
    ]
    return f'<section id="distributions"><h2>Distributions</h2><div class="charts">{"".join(charts)}</div></section>'


def _legend() -> str:
    items = "".join(f'<span class="legend-item"><mark class="{c}" title="{_esc(t)}">example</mark> {_esc(t)}</span>'
                    for c, t in HIGHLIGHTS.items())
    return f'<p class="legend" id="legend">{items} <span class="legend-item">hover a mark for its score</span></p>'


@dataclass
class Row:
    i: int
    d: dict
    evidence: dict | None
    score: float
    flags: list[str]
    thumb: Thumb

    def caption_html(self) -> str:
        caption = self.d.get("caption")
        spans, dropped = align_spans(caption, caption_spans(self.evidence))
        note = (f' <span class="cut" title="the evidence names text that is not in this caption">'
                f"[{dropped} span(s) not in the caption]</span>") if dropped else ""
        return highlight(caption, spans) + note

    def img(self) -> str:
        key = self.d.get("key") or ""
        title = self.thumb.note or f"{key} ({self.d.get('width')}\u00d7{self.d.get('height')})"
        cls = "thumb" if self.thumb.ok else "thumb missing"
        return f'<img class="{cls}" src="{self.thumb.uri}" alt="{_esc(key)}" title="{_esc(title)}">'


def _signals_note(signals: list[dict]) -> str:
    """Each signal of the score as value x confidence: how bad, and how sure the check is."""
    parts = [f'<span class="signal" title="value (how bad) \u00d7 confidence (how sure the check is)">'
             f'{_esc(s.get("name"))} {fmt_score(s.get("value"), 2)} \u00d7 {fmt_score(s.get("confidence"), 2)}</span>'
             for s in signals if s and s.get("value")]
    return "signals: " + (", ".join(parts) if parts else "none above 0")


def _worst_section(groups: list[tuple[str, int, list[int]]], n_groups: int, rows: dict[int, Row], what: str,
                   anchor: str) -> str:
    if not groups:
        return f'<section id="{anchor}"><h3>Worst captions per {what}</h3><p class="muted">no hallucination scores in this run</p></section>'
    cap = f'<p class="muted">showing the {len(groups)} {what}s with the worst scores of {n_groups}</p>' if n_groups > len(groups) else ""
    parts = []
    for label, size, idx in groups:
        cards = []
        for i in idx:
            r = rows[i]
            d = r.d
            ocr = (r.evidence or {}).get("ocr_text")
            extra = []
            if (r.evidence or {}).get("boilerplate"):
                extra.append(f'boilerplate \u201c{_esc(r.evidence["boilerplate"])}\u201d')
            if ocr:
                extra.append(f"OCR: \u201c{_esc(ocr[:200])}\u201d")
            if (r.evidence or {}).get("signals"):
                extra.append(_signals_note(r.evidence["signals"]))
            cards.append(
                f'<div class="worst" data-key="{_esc(d.get("key"))}">{r.img()}<div class="body">'
                f'<div class="meta"><code>{_esc(d.get("key"))}</code> · score {_score_cell(r.score)} · '
                f'bucket {_esc(d.get("bucket"))} · {_esc(d.get("source"))} · {_esc(d.get("width"))}\u00d7{_esc(d.get("height"))} '
                f'{_flag_badges(r.flags)}</div><p class="caption">{r.caption_html()}</p>'
                + (f'<div class="muted small">{" · ".join(extra)}</div>' if extra else "") + "</div></div>")
        parts.append(f'<div class="group"><h4>{_esc(label)} <span class="muted">({size:,} sample{"" if size == 1 else "s"})</span></h4>{"".join(cards)}</div>')
    return f'<section id="{anchor}"><h3>Worst captions per {what}</h3>{cap}{"".join(parts)}</section>'


def _samples_table(order: list[int], rows: dict[int, Row], note: str, total: int) -> str:
    buckets = sorted({str(rows[i].d.get("bucket")) for i in order}, key=_bucket_sort_key)
    flags = sorted({f for i in order for f in rows[i].flags})
    trs = []
    for i in order:
        r = rows[i]
        d = r.d
        w, h = d.get("width") or 0, d.get("height") or 0
        mp = w * h / 1e6
        search = " ".join(str(x) for x in (d.get("key"), d.get("source"), d.get("bucket"), d.get("caption"), *r.flags) if x)
        cut = d.get("caption_cut") or ""
        cut_html = f' <span class="cut" title="{_esc(cut)}">[+{len(cut)} chars cut]</span>' if cut else ""
        aest = d.get("aesthetic")
        trs.append(
            f'<tr data-bucket="{_esc(d.get("bucket"))}" data-flags="{_esc(json.dumps(r.flags))}" '
            f'data-search="{_esc(search.lower())}">'
            f'<td data-v="{_esc(d.get("key"))}"><code>{_esc(d.get("key"))}</code></td>'
            f"<td>{r.img()}</td>"
            f'<td data-v="{mp:.6f}">{w}\u00d7{h}<br><span class=muted>{fmt_number(mp) if mp else 0} MP</span>{" <span class=flag4k>4K</span>" if d.get("is_4k") else ""}</td>'
            f'<td data-v="{_esc(d.get("bucket"))}">{_esc(d.get("bucket"))}</td>'
            f'<td data-v="{_esc(d.get("source"))}">{_esc(d.get("source"))}</td>'
            f'<td data-v="{"" if aest is None else f"{aest:.6f}"}" class=num>{fmt_score(aest, 2) if aest is not None else ""}</td>'
            f'<td data-v="{_esc(d.get("caption_tokens"))}" class=num>{_esc(d.get("caption_tokens"))}</td>'
            f'<td data-v="{"" if math.isnan(r.score) else f"{r.score:.6f}"}" class=num>{_score_cell(r.score)}</td>'
            f'<td data-v="{_esc(" ".join(r.flags))}">{_flag_badges(r.flags)}</td>'
            f'<td class="caption">{r.caption_html()}{cut_html}</td></tr>')
    opts_b = "".join(f'<option value="{_esc(b)}">{_esc(b)}</option>' for b in buckets)
    opts_f = "".join(f'<option value="{_esc(f)}">{_esc(f)}</option>' for f in flags)
    head = "".join(f'<th data-type="{t}"{" aria-sort=descending" if name == "halluc." else ""}>{name}</th>' for name, t in (
        ("key", "str"), ("image", "none"), ("size", "num"), ("bucket", "num"), ("source", "str"), ("aesthetic", "num"),
        ("tokens", "num"), ("halluc.", "num"), ("flags", "str"), ("caption", "str")))
    cap = f'<p class="cap-note">{_esc(note)}</p>' if note else ""
    return (f'<section id="samples-section"><h2>Written samples</h2>{cap}'
            f'<div class="filters"><input id="filter-text" type="search" placeholder="filter: key, caption, source, flag\u2026" '
            f'aria-label="filter text"> <select id="filter-bucket" aria-label="bucket"><option value="">all buckets</option>{opts_b}</select> '
            f'<select id="filter-flag" aria-label="flag"><option value="">any flags or none</option>'
            f'<option value="(flagged)">(flagged)</option><option value="(none)">(no flags)</option>{opts_f}</select> '
            f'<span id="shown-count">{len(order)}</span> of {len(order):,} rows shown'
            + (f" ({total:,} written in all)" if total != len(order) else "")
            + f'</div><p class="muted small">Click a column header to sort.</p>'
            f'<table id="samples" class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(trs)}</tbody></table>'
            f'<p id="no-rows" class="muted" hidden>no rows match the filters</p></section>')


def _rejects_table(rejects: pa.Table) -> str:
    n = rejects.num_rows
    if not n:
        return '<section id="rejects"><h2>Rejected and failed</h2><p class="muted">none</p></section>'
    codes, labels = _codes(rejects, "reason")
    per = max(5, MAX_REJECT_ROWS // max(1, len(labels)))
    pick = sorted(i for _, rows in _first_k_per_group(codes, np.arange(n), per) for i in rows)[:MAX_REJECT_ROWS]
    cols = [c for c in ("key", "source", "phase", "outcome", "reason", "detail", "near_duplicate_of", "uri")]
    sub = rejects.take(pa.array(pick, pa.int64())) if pick else rejects.slice(0, 0)
    data = [{c: (row.get(c) if c in sub.column_names else None) for c in cols} for row in sub.to_pylist()]
    body = "".join("<tr>" + "".join(f'<td data-v="{_esc(row[c])}">' + (f"<code>{_esc(row[c])}</code>" if c == "key" else _esc(row[c]))
                                    + "</td>" for c in cols) + "</tr>" for row in data)
    note = (f'<p class="cap-note">showing {len(data):,} of {n:,} (up to {per} per reason)</p>' if len(data) < n else "")
    head = "".join(f'<th data-type="str">{_esc(c)}</th>' for c in cols)
    return (f'<section id="rejects"><h2>Rejected and failed</h2>{note}'
            f'<table id="rejects-table" class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>')


def render_html(manifest: dict, index: pa.Table, rejects: pa.Table, hallucinations: pa.Table | None = None,
                open_shard: OpenShard | None = None, *, max_rows: int = MAX_TABLE_ROWS, workers: int = 4,
                read_range: ReadRange | None = None, read_input: duplicates.ReadInput | None = None,
                distances: dict[str, int | None] | None = None) -> str:
    """The report page as a string (see the module docstring)."""
    scores = _scores(index, hallucinations)
    order, cap_note = _table_rows(scores.score, max_rows)
    by_bucket, nb = _worst_by(*_codes(index, "bucket"), scores.score, WORST_PER_GROUP, MAX_GROUPS)
    by_source, ns = _worst_by(*_codes(index, "source"), scores.score, WORST_PER_GROUP, MAX_GROUPS)
    needed = sorted(set(order.tolist()) | {i for _, _, idx in by_bucket + by_source for i in idx})
    take = pa.array(needed, pa.int64())
    groups = duplicates.merged_groups(rejects, distances or {})
    kept_keys = {k for k, _ in groups}
    if kept_keys:   # the kept side of each merge shown (vectorised: the index may hold millions of rows)
        found = pc.indices_nonzero(pc.is_in(index["key"], value_set=pa.array(sorted(kept_keys), pa.string())))
        needed = sorted(set(needed) | set(found.to_pylist()))
    take = pa.array(needed, pa.int64())
    cols = [c for c in ("key", "source", "url", "width", "height", "is_4k", "bucket", "aesthetic", "caption",
                        "caption_tokens", "caption_cut", "shard", "member", "member_offset", "member_bytes") if c in index.column_names]
    data = index.select(cols).take(take).to_pylist() if needed else []
    flags = scores.flags.take(take).to_pylist() if needed else []
    evidence: list[dict | None] = [None] * len(needed)
    if hallucinations is not None and needed:
        pos = scores.evidence_pos.take(take)
        valid = [j for j, p in enumerate(pos.to_pylist()) if p is not None]
        if valid:
            ev_rows = hallucinations.take(pc.drop_null(pos)).to_pylist()
            for j, ev in zip(valid, ev_rows):
                evidence[j] = ev
    located = {(d["shard"], d["member"]): (d["member_offset"], d["member_bytes"]) for d in data
               if d.get("member_offset") is not None and d.get("member_bytes")}
    thumbs = load_thumbnails({(d.get("shard"), d.get("member")) for d in data}, open_shard or _no_shards, workers,
                             read_range=read_range, located=located)
    by_key = {d["key"]: thumbs[(d.get("shard"), d.get("member"))] for d in data}
    copies = duplicates.input_thumbnails([c for _, cs in groups for c in cs], read_input, workers)
    kept_thumbs = {k: by_key.get(k) or duplicates.placeholder(f"{k} is not in this run's index (an earlier run's sample)")
                   for k in kept_keys}
    rows = {i: Row(i, d, ev, float(scores.score[i]), list(f or []), thumbs[(d.get("shard"), d.get("member"))])
            for i, d, ev, f in zip(needed, data, evidence, flags)}
    job = str(manifest.get("job") or "?")
    missing = sum(1 for r in rows.values() if not r.thumb.ok)
    miss_note = f'<p class="warn">\u26a0 {missing:,} image(s) could not be read from their shard (placeholder shown; hover it for why)</p>' if missing else ""
    caps = [cap_note] if cap_note else []
    if nb > len(by_bucket) or ns > len(by_source):
        caps.append(f"Worst captions: the {MAX_GROUPS} buckets/sources with the worst scores are shown.")
    if rejects.num_rows > MAX_REJECT_ROWS:
        caps.append(f"Rejected and failed: {MAX_REJECT_ROWS:,} of {rejects.num_rows:,} listed.")
    caps_html = ("<p class='cap-note'>Capped for size: " + " ".join(_esc(c) for c in caps) + " Charts and counts cover all rows.</p>") if caps else ""
    body = (
        f"<header><h1>curate run: {_esc(job)}</h1><nav><a href='#summary'>summary</a> · <a href='#distributions'>distributions</a> · "
        f"<a href='#worst'>worst captions</a> · <a href='#samples-section'>samples</a> · <a href='#duplicates'>duplicates</a> · <a href='#rejects'>rejected</a></nav>{caps_html}{miss_note}</header>"
        + _summary(manifest, index, rejects, scores)
        + _distributions(manifest, index, scores)
        + f'<section id="worst"><h2>Worst captions</h2><p class="muted">Top {WORST_PER_GROUP} by hallucination score. '
          "Suspect spans are marked:</p>" + _legend()
        + _worst_section(by_bucket, nb, rows, "bucket", "worst-bucket")
        + _worst_section(by_source, ns, rows, "source", "worst-source") + "</section>"
        + _samples_table(order.tolist(), rows, cap_note, index.num_rows)
        + duplicates.section(groups, kept_thumbs, copies, duplicates.count_groups(rejects))
        + _rejects_table(rejects)
        + f"<details><summary>manifest.json</summary><pre>{_esc(_manifest_text(manifest))}</pre></details>"
    )
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
            f'<link rel="icon" href="data:,"><title>curate report: {_esc(job)}</title><style>{_CSS}</style></head>'
            f"<body>{body}<script>{_JS}</script></body></html>")


def _no_shards(rel: str) -> BinaryIO:
    raise FileNotFoundError(f"no shard opener given for {rel}")


def _manifest_text(manifest: dict, limit: int = 200_000) -> str:
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + f"\n\u2026 ({len(text) - limit:,} more characters)"


_CSS = """
:root{--fg:#1d1f23;--muted:#6b7280;--line:#e3e5e8;--bar:#4a7bd0;--bg:#fff;--card:#f6f7f9}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);margin:0 auto;padding:1.2em 2em 4em;max-width:1500px}
h1{font-size:1.7em;margin:.2em 0}h2{margin-top:1.8em;border-bottom:2px solid var(--line);padding-bottom:.2em}h3{margin:.8em 0 .3em}
nav a{color:var(--bar)}code{font-size:.92em}
.muted{color:var(--muted)}.small{font-size:.88em}
.warn{background:#fff4e5;border-left:4px solid #f59e0b;padding:.4em .8em}
.cap-note{background:#eef4ff;border-left:4px solid var(--bar);padding:.4em .8em}
.cards{display:flex;flex-wrap:wrap;gap:.6em}.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.5em .9em;min-width:8em}
.card .n{font-size:1.5em;font-weight:600}
.accounting{font-size:1.1em}.badge-ok{background:#dcfce7;color:#166534;border-radius:4px;padding:0 .4em;margin-left:.5em}
.badge-bad{background:#fee2e2;color:#991b1b;border-radius:4px;padding:0 .4em;margin-left:.5em}
.cols{display:flex;flex-wrap:wrap;gap:2em}.cols>div{flex:1 1 420px;min-width:0}
table{border-collapse:collapse;margin:.4em 0 1em}td,th{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:var(--card);position:sticky;top:0;z-index:1}
table.kv th{position:static;font-weight:500;color:var(--muted);white-space:nowrap}table.kv td{word-break:break-all}
.num{text-align:right}td.failed{color:#991b1b}td.rejected{color:#92400e}
.charts{display:flex;flex-wrap:wrap;gap:1em 2em}figure.chart{margin:0;flex:0 0 auto}figure.chart figcaption{color:var(--muted);font-size:.85em;max-width:440px}
svg text{font-size:11px;fill:#374151}svg .bar{fill:var(--bar)}svg .bar:hover{fill:#1e40af}svg .axis{stroke:#9ca3af}
mark{background:none;color:inherit;padding:0 1px;border-radius:2px}
mark.h-weak{background-color:#ffe58a}
mark.h-ungrounded{text-decoration:underline wavy #d0312d;text-decoration-thickness:1.5px;text-underline-offset:3px}
mark.h-claim{outline:2px dashed #8a4fff;outline-offset:-1px}
mark.h-unsure{outline:2px dotted #9ca3af;outline-offset:-1px}
mark.h-repeat{box-shadow:inset 0 -.45em 0 rgba(37,140,255,.35)}
.legend-item{margin-right:1.2em;white-space:nowrap}
.group{margin-bottom:1em}.group h4{margin:.6em 0 .3em}
.worst{display:flex;gap:1em;align-items:flex-start;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.6em;margin:.4em 0}
.worst .body{flex:1;min-width:0}.worst .caption{margin:.3em 0;white-space:pre-wrap;overflow-wrap:anywhere}
img.thumb{max-width:192px;max-height:192px;display:block;border-radius:4px;background:#eee}
#samples img.thumb{max-width:120px;max-height:120px}img.missing{opacity:.7}
.score{font-weight:600;border-radius:4px;padding:0 .35em}.score.hi{background:#fee2e2;color:#991b1b}.score.mid{background:#fef3c7;color:#92400e}.score.lo{background:#dcfce7;color:#166534}
.flag{display:inline-block;background:#eef2ff;color:#3730a3;border-radius:4px;padding:0 .35em;margin:1px;font-size:.85em}
.flag4k{background:#111;color:#fff;border-radius:3px;padding:0 .3em;font-size:.8em}
.filters{position:sticky;top:0;background:var(--bg);padding:.4em 0;z-index:2}.filters input{width:22em;padding:.3em}
#samples th[data-type]:not([data-type=none]){cursor:pointer;user-select:none}
#samples th[aria-sort=ascending]::after,.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
#samples th[aria-sort=descending]::after,.sortable th[aria-sort=descending]::after{content:" \\25BC"}
.sortable th{cursor:pointer}
#samples td.caption{max-width:560px;white-space:pre-wrap;overflow-wrap:anywhere}
.cut{color:var(--muted);font-size:.85em}
tr[hidden]{display:none}
pre{background:var(--card);padding:1em;overflow:auto;max-height:30em}
"""

_JS = r"""
(function () {
  "use strict";
  function cellValue(tr, i, type) {
    var c = tr.cells[i];
    var v = c.hasAttribute("data-v") ? c.getAttribute("data-v") : c.textContent;
    if (type === "num") { var x = parseFloat(v); return isNaN(x) ? null : x; }
    return v === "" ? null : v.toLowerCase();
  }
  function sortTable(table, i, th) {
    var type = th.getAttribute("data-type");
    var asc = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (tr, k) { return [cellValue(tr, i, type), k, tr]; });
    rows.sort(function (a, b) {
      if (a[0] === null || b[0] === null) { return a[0] === b[0] ? a[1] - b[1] : (a[0] === null ? 1 : -1); }
      var d = a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
      return (asc ? d : -d) || a[1] - b[1];
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r[2]); });
    body.appendChild(frag);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead) { return; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      if (th.getAttribute("data-type") === "none") { return; }
      th.addEventListener("click", function () { sortTable(table, i, th); });
    });
  });
  var table = document.getElementById("samples");
  if (!table) { return; }
  var text = document.getElementById("filter-text"), bucket = document.getElementById("filter-bucket"),
      flag = document.getElementById("filter-flag"), shown = document.getElementById("shown-count"),
      none = document.getElementById("no-rows");
  function applyFilter() {
    var q = text.value.trim().toLowerCase(), b = bucket.value, f = flag.value, n = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (tr) {
      var ok = (!q || tr.getAttribute("data-search").indexOf(q) >= 0) && (!b || tr.getAttribute("data-bucket") === b);
      if (ok && f) {
        var flags = JSON.parse(tr.getAttribute("data-flags") || "[]");
        ok = f === "(flagged)" ? flags.length > 0 : f === "(none)" ? flags.length === 0 : flags.indexOf(f) >= 0;
      }
      tr.hidden = !ok;
      if (ok) { n += 1; }
    });
    shown.textContent = String(n);
    none.hidden = n > 0;
  }
  text.addEventListener("input", applyFilter);
  bucket.addEventListener("change", applyFilter);
  flag.addEventListener("change", applyFilter);
})();
"""
