"""Phase 4, report: the run's manifest and a self-contained HTML summary page."""

from __future__ import annotations

import html
from collections import Counter

import pyarrow as pa

from curate.storage import RunDir, write_bytes_atomic


def _bars(counts: dict[str, int], title: str) -> str:
    if not counts:
        return f"<h2>{html.escape(title)}</h2><p>none</p>"
    top = max(counts.values())
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td><div class=bar style='width:{300 * v / top:.0f}px'></div></td><td>{v}</td></tr>"
        for k, v in counts.items()
    )
    return f"<h2>{html.escape(title)}</h2><table>{rows}</table>"


def render_html(manifest: dict, index: pa.Table, rejects: pa.Table) -> str:
    c = manifest["counts"]
    summary = {
        "job": manifest["job"], "config hash": manifest["config_hash"], "inputs": c["inputs"], "written": c["written"],
        "rejected": sum(c["rejected"].values()), "failed": sum(c["failed"].values()), "4K written": c["is_4k"],
        "shards": manifest["shards"],
    }
    head = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items())
    reasons = {f"rejected: {k}": v for k, v in c["rejected"].items()} | {f"failed: {k}": v for k, v in c["failed"].items()}
    buckets = dict(sorted(manifest["buckets"].items(), key=lambda kv: float(kv[0])))
    samples = "".join(
        f"<tr><td><code>{html.escape(r['key'])}</code></td><td>{r['width']}×{r['height']}</td><td>{html.escape(r['bucket'])}</td>"
        f"<td>{'4K' if r['is_4k'] else ''}</td><td>{r['caption_tokens']}</td><td>{html.escape(r['caption'] or '')}</td></tr>"
        for r in index.slice(0, 500).to_pylist()
    )
    rejected = "".join(
        f"<tr><td><code>{html.escape(r['key'])}</code></td><td>{html.escape(r['outcome'])}</td><td>{html.escape(r['reason'])}</td>"
        f"<td>{html.escape(r['detail'] or '')}</td><td>{html.escape(r['uri'] or '')}</td></tr>"
        for r in rejects.slice(0, 500).to_pylist()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>curate report: {html.escape(manifest['job'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}}.bar{{background:#4a7bd0;height:12px}}</style></head>
<body><h1>curate run: {html.escape(manifest['job'])}</h1><table>{head}</table>
{_bars(reasons, "Not written, by reason")}{_bars(buckets, "Written samples by PixArt aspect-ratio bucket (h/w)")}
<h2>Written samples (first 500)</h2><table><tr><th>key</th><th>size</th><th>bucket</th><th></th><th>tokens</th><th>caption</th></tr>{samples}</table>
<h2>Rejected and failed (first 500)</h2><table><tr><th>key</th><th>outcome</th><th>reason</th><th>detail</th><th>source</th></tr>{rejected}</table>
</body></html>"""


def write_report(run: RunDir, manifest: dict, index: pa.Table, rejects: pa.Table) -> None:
    write_bytes_atomic(run.report / "index.html", render_html(manifest, index, rejects).encode())


def bucket_counts(index: pa.Table) -> dict[str, int]:
    return dict(sorted(Counter(index["bucket"].to_pylist()).items(), key=lambda kv: float(kv[0])))
