"""The report's near-duplicate section: each rejected copy beside the sample it was merged
into, with their pHash distance, so a dedup decision can be checked by eye.

The kept sample's thumbnail comes from its shard (one ranged read); a rejected copy was never
written, so its thumbnail is read from where ingest found it (the source, or the staged bytes)
through `read_input(reject row)`; when that is gone (a rebuilt report after cleanup) a placeholder
says so.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc

from curate.report.thumbnails import Thumb, placeholder, thumbnail_of

MAX_GROUPS = 24           # merges shown: the largest distances first (the ones worth a look)
MAX_COPIES = 4            # rejected copies shown per kept sample
DUPLICATE_REASONS = ("near_duplicate", "exact_duplicate", "semantic_duplicate")

ReadInput = Callable[[dict], bytes]    # a rejects row (key, unit, uri, source) -> the input's bytes


def dropped_duplicates(rejects: pa.Table) -> pa.Table:
    """The rejects that were merged into a kept sample (filtered by Arrow, not row by row)."""
    if "near_duplicate_of" not in rejects.column_names:
        return rejects.slice(0, 0)
    merged = pc.and_(pc.is_in(rejects["reason"], value_set=pa.array(DUPLICATE_REASONS, pa.string())),
                     pc.is_valid(rejects["near_duplicate_of"]))
    return rejects.filter(pc.fill_null(merged, False))


def merged_groups(rejects: pa.Table, distances: dict[str, int | None]) -> list[tuple[str, list[dict]]]:
    """(kept key, rejected copies) for the merges to show, largest distance first."""
    cols = [c for c in ("key", "unit", "reason", "near_duplicate_of", "uri", "source") if c in rejects.column_names]
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in dropped_duplicates(rejects).select(cols).to_pylist():
        if row["near_duplicate_of"]:
            distance = distances.get(row["key"])
            if distance is None and row["reason"] == "exact_duplicate":
                distance = 0   # the same bytes: the same hashes
            groups[row["near_duplicate_of"]].append({**row, "distance": distance})
    worst = lambda copies: max((c["distance"] or 0) for c in copies)  # noqa: E731
    ordered = sorted(groups.items(), key=lambda kv: (-worst(kv[1]), kv[0]))[:MAX_GROUPS]
    return [(kept, sorted(copies, key=lambda c: (-(c["distance"] or 0), c["key"]))[:MAX_COPIES]) for kept, copies in ordered]


def input_thumbnails(rows: list[dict], read_input: ReadInput | None, workers: int = 4) -> dict[str, Thumb]:
    """Thumbnails (by key) of rejected inputs, which are in no shard, read through `read_input`."""
    def one(row: dict) -> Thumb:
        if read_input is None:
            return placeholder("the input cannot be read back here (report rebuilt without the run's job)")
        try:
            return thumbnail_of(read_input(row))
        except Exception as exc:
            return placeholder(f"cannot read input {row['key']}: {type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return dict(zip([r["key"] for r in rows], pool.map(one, rows)))


def section(groups: list[tuple[str, list[dict]]], kept: dict[str, Thumb], copies: dict[str, Thumb], total: int) -> str:
    """The HTML section (all data text escaped)."""
    esc = lambda v: html.escape("" if v is None else str(v), quote=True)  # noqa: E731
    if not groups:
        return '<section id="duplicates"><h2>Duplicates</h2><p class="muted">no duplicates were dropped</p></section>'

    def img(thumb: Thumb, key: str) -> str:
        cls = "thumb" if thumb.ok else "thumb missing"
        return f'<img class="{cls}" src="{thumb.uri}" alt="{esc(key)}" title="{esc(thumb.note or key)}">'

    rows = []
    for key, rejected in groups:
        cells = "".join(
            f'<td class="dup-copy">{img(copies[c["key"]], c["key"])}<br><code>{esc(c["key"])}</code><br>'
            f'{esc(c["reason"])}, distance <b class="dup-distance">{esc("n/a" if c["distance"] is None else c["distance"])}</b></td>'
            for c in rejected)
        rows.append(f'<tr data-kept="{esc(key)}"><td class="dup-kept">{img(kept[key], key)}<br><code>{esc(key)}</code>'
                    f"<br><span class=muted>kept</span></td>{cells}</tr>")
    note = (f'<p class="cap-note">showing {len(groups)} of {total:,} kept samples with dropped copies, largest distance first</p>'
            if total > len(groups) else "")
    return (f'<section id="duplicates"><h2>Duplicates</h2><p class="muted">Each dropped copy beside the sample it was '
            f"merged into, with their pHash Hamming distance.</p>{note}"
            f'<table id="duplicates-table"><tbody>{"".join(rows)}</tbody></table></section>')


def count_groups(rejects: pa.Table) -> int:
    return pc.count_distinct(dropped_duplicates(rejects)["near_duplicate_of"]).as_py() if "near_duplicate_of" in rejects.column_names else 0
