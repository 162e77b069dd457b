"""Charts as inline SVG (no plotting library, no network)."""

from __future__ import annotations

import html
import math

import numpy as np

MAX_BARS = 40             # bars per bar chart


def fmt_number(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    ax = abs(x)
    if ax >= 1e6:
        return f"{x / 1e6:.3g}M"
    if ax >= 1e4:
        return f"{x / 1e3:.3g}k"
    if ax >= 100 or float(x).is_integer():
        return f"{x:.0f}"
    return f"{x:.3g}"


def svg_histogram(values: np.ndarray, title: str, *, bins: int = 30, integer: bool = False,
                  lo: float | None = None, hi: float | None = None, unit: str = "") -> str:
    """A histogram figure (inline SVG) of the finite ``values``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    head = f"<h3>{html.escape(title)}</h3>"
    if v.size == 0:
        return f'<figure class="chart">{head}<p class="muted">no data</p></figure>'
    a = float(v.min()) if lo is None else lo
    b = float(v.max()) if hi is None else hi
    if integer:
        a, b = math.floor(a), math.floor(b) + 1
        width = max(1, math.ceil((b - a) / bins))
        edges = np.arange(a, b + width, width, dtype=np.float64)
    else:
        if b <= a:
            a, b = a - 0.5, b + 0.5
        edges = np.linspace(a, b, bins + 1)
    counts, edges = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)
    step = float(edges[1] - edges[0])

    def tick(x: float, within: float = step) -> str:  # enough decimals to tell values `within` apart
        if integer or abs(x) >= 1e4 or within <= 0:
            return fmt_number(x)
        text = f"{x:.{min(8, max(0, 1 - math.floor(math.log10(within))))}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text

    half = float(edges[-1] - edges[0]) / 2
    W, H, L, B, T = 440, 170, 44, 24, 8
    pw, ph = W - L - 8, H - B - T
    top = int(counts.max()) or 1
    bw = pw / len(counts)
    bars = []
    for i, c in enumerate(counts.tolist()):
        h = ph * c / top
        rng = (f"{tick(edges[i])}\u2013{tick(edges[i + 1] - 1)}" if integer and edges[i + 1] - edges[i] > 1
               else tick(edges[i]) if integer else f"{tick(edges[i])}\u2013{tick(edges[i + 1])}")
        bars.append(f'<rect x="{L + i * bw + 0.5:.1f}" y="{T + ph - h:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                    f'height="{h:.1f}" class="bar"><title>{html.escape(rng + unit)}: {c:,}</title></rect>')
    axis = (f'<line x1="{L}" y1="{T + ph}" x2="{L + pw}" y2="{T + ph}" class="axis"/>'
            f'<line x1="{L}" y1="{T}" x2="{L}" y2="{T + ph}" class="axis"/>'
            f'<text x="{L - 4}" y="{T + 8}" text-anchor="end">{top:,}</text>'
            f'<text x="{L - 4}" y="{T + ph}" text-anchor="end">0</text>'
            f'<text x="{L}" y="{H - 6}" text-anchor="start">{html.escape(tick(edges[0], half) + unit)}</text>'
            f'<text x="{L + pw / 2:.0f}" y="{H - 6}" text-anchor="middle">{html.escape(tick((edges[0] + edges[-1]) / 2, half) + unit)}</text>'
            f'<text x="{L + pw}" y="{H - 6}" text-anchor="end">{html.escape(tick(edges[-1], half) + unit)}</text>')
    stats = (f"n {v.size:,} · min {fmt_number(v.min())} · median {fmt_number(float(np.median(v)))} · "
             f"mean {fmt_number(float(v.mean()))} · p95 {fmt_number(float(np.percentile(v, 95)))} · max {fmt_number(v.max())}")
    return (f'<figure class="chart">{head}<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
            f'aria-label="{html.escape(title)}">{axis}{"".join(bars)}</svg>'
            f'<figcaption>{html.escape(stats)}</figcaption></figure>')


def svg_bars(counts: dict[str, int] | list[tuple[str, int]], title: str, *, sort: bool = False) -> str:
    """A horizontal bar chart figure (inline SVG), one bar per label (at most MAX_BARS)."""
    items = list(counts.items()) if isinstance(counts, dict) else list(counts)
    if sort:
        items.sort(key=lambda kv: (-kv[1], str(kv[0])))
    head = f"<h3>{html.escape(title)}</h3>"
    if not items:
        return f'<figure class="chart">{head}<p class="muted">none</p></figure>'
    more = len(items) - MAX_BARS
    items = items[:MAX_BARS]
    total = sum(c for _, c in items) or 1
    top = max(c for _, c in items) or 1
    W, L, R, rowh = 440, 130, 70, 18
    H = rowh * len(items) + 4
    pw = W - L - R
    rows = []
    for i, (raw, c) in enumerate(items):
        y = 2 + i * rowh
        label = str(raw)
        short = label if len(label) <= 20 else label[:19] + "\u2026"
        w = max(pw * c / top, 1 if c else 0)
        rows.append(f'<text x="{L - 6}" y="{y + 13}" text-anchor="end"><title>{html.escape(label)}</title>{html.escape(short)}</text>'
                    f'<rect x="{L}" y="{y + 2}" width="{w:.1f}" height="{rowh - 5}" class="bar">'
                    f'<title>{html.escape(label)}: {c:,} ({100 * c / total:.1f}%)</title></rect>'
                    f'<text x="{L + w + 4:.1f}" y="{y + 13}">{c:,}</text>')
    note = f'<figcaption>and {more} more not shown</figcaption>' if more > 0 else ""
    return (f'<figure class="chart">{head}<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
            f'aria-label="{html.escape(title)}">{"".join(rows)}</svg>{note}</figure>')
