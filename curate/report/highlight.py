"""Suspect spans of a caption, highlighted in escaped HTML (overlaps handled)."""

from __future__ import annotations

import html
import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    cls: str          # one of HIGHLIGHTS' css classes
    tip: str          # tooltip text
    text: str | None = None  # the span's text as the evidence states it (to check the offsets)


HIGHLIGHTS = {  # css class -> legend text
    "h-weak": "weak sentence (low CLIP agreement with the image)",
    "h-ungrounded": "ungrounded phrase (not found in the image)",
    "h-claim": "text claim not found by OCR",
    "h-unsure": "text claim OCR could not confirm (unsure: read nothing, or read it with low confidence)",
    "h-repeat": "repeated span or near-duplicate sentence",
}


def fmt_score(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def caption_spans(evidence: dict | None) -> list[Span]:
    """The suspect spans of one caption's evidence row (HALLUCINATION): weak sentences,
    ungrounded phrases, text claims OCR did not find, repeated spans."""
    if not evidence:
        return []
    spans: list[Span] = []
    for s in evidence.get("sentences") or []:
        if s and s.get("weak"):
            spans.append(Span(s.get("start"), s.get("end"), "h-weak", f"weak sentence (CLIP {fmt_score(s.get('clip'))})",
                              s.get("text")))
    for p in evidence.get("phrases") or []:
        if p and p.get("grounded") is False:
            spans.append(Span(p.get("start"), p.get("end"), "h-ungrounded",
                              f"ungrounded phrase \u201c{p.get('text') or ''}\u201d (CLIP {fmt_score(p.get('clip'))})",
                              p.get("text")))
    ocr = (evidence.get("ocr_text") or "").strip()
    ocr_note = f"OCR read \u201c{ocr[:120]}\u201d" if ocr else "OCR read nothing"
    for t in evidence.get("text_claims") or []:
        if t:
            spans += _claim_span(t, ocr_note)
    for r in evidence.get("repeated_spans") or []:
        if r:
            spans.append(Span(r.get("start"), r.get("end"), "h-repeat", "repeated span"))
    for r in evidence.get("duplicate_sentences") or []:
        if r:
            spans.append(Span(r.get("start"), r.get("end"), "h-repeat", "near-duplicate of an earlier sentence"))
    return spans


def _claim_span(claim: dict, ocr_note: str) -> list[Span]:
    """A claim OCR did not find (confidently) or could not confirm (unsure), with what OCR read
    nearest to it and how sure it was; evidence from before outcomes existed has only `found`."""
    outcome = claim.get("outcome") or ("not_found" if claim.get("found") is False else None)
    if outcome not in ("not_found", "unsure"):
        return []
    text, read, conf = claim.get("text") or "", claim.get("read"), claim.get("confidence")
    nearest = f"nearest OCR reading \u201c{read}\u201d (confidence {fmt_score(conf, 2)})" if read else ocr_note
    if outcome == "not_found":
        return [Span(claim.get("start"), claim.get("end"), "h-claim", f"text claim \u201c{text}\u201d not found: {nearest}", text)]
    return [Span(claim.get("start"), claim.get("end"), "h-unsure", f"text claim \u201c{text}\u201d unsure: {nearest}", text)]


def align_spans(caption: str | None, spans: Iterable[Span]) -> tuple[list[Span], int]:
    """Check each span that states its text against the caption at its offsets. A span whose
    text is elsewhere (offsets counted differently, e.g. in bytes) is moved to the occurrence
    nearest its offset; one whose text is not in the caption is dropped. Returns the spans and
    how many were dropped."""
    caption = caption or ""
    out, dropped = [], 0
    for s in spans:
        want = (s.text or "").strip()
        if not want or s.start is None or s.end is None or caption[max(0, s.start):max(0, s.end)].strip() == want:
            out.append(s)
            continue
        hits = [m.start() for m in re.finditer(re.escape(want), caption)]
        if not hits:
            dropped += 1
            continue
        at = min(hits, key=lambda h: abs(h - s.start))
        out.append(Span(at, at + len(want), s.cls, s.tip, s.text))
    return out, dropped


def highlight(text: str | None, spans: Iterable[Span]) -> str:
    """Escaped ``text`` with each suspect span wrapped in ``<mark>``.

    Spans may overlap or nest: the text is cut at every span boundary and each piece gets one
    ``<mark>`` whose classes and tooltip are those of all spans covering it (adjacent pieces
    covered by the same spans are merged), so the markup is always well formed. Offsets are
    character offsets into ``text``; out-of-range offsets are clipped, empty spans dropped.
    """
    text = text or ""
    n = len(text)
    clean = []
    for s in spans:
        if s.start is None or s.end is None:
            continue
        a, b = max(0, min(int(s.start), n)), max(0, min(int(s.end), n))
        if b > a:
            clean.append((a, b, s))
    if not clean:
        return html.escape(text)
    cuts = sorted({0, n, *(a for a, _, _ in clean), *(b for _, b, _ in clean)})
    pieces: list[tuple[tuple[Span, ...], int, int]] = []
    for a, b in itertools.pairwise(cuts):
        cover = tuple(s for sa, sb, s in clean if sa <= a and b <= sb)
        if pieces and pieces[-1][0] == cover:
            pieces[-1] = (cover, pieces[-1][1], b)
        else:
            pieces.append((cover, a, b))
    out = []
    for cover, a, b in pieces:
        seg = html.escape(text[a:b])
        if not cover:
            out.append(seg)
            continue
        classes = " ".join(c for c in HIGHLIGHTS if any(s.cls == c for s in cover))
        tips = "\n".join(dict.fromkeys(s.tip for s in cover))
        out.append(f'<mark class="{classes}" title="{html.escape(tips)}">{seg}</mark>')
    return "".join(out)
