"""Phase 4, report: one self-contained HTML page a user checks before training (page.py), with
its parts: highlighted caption spans, inline SVG charts and thumbnails read from the shards."""

from curate.report.highlight import HIGHLIGHTS, Span, align_spans, caption_spans, highlight
from curate.report.page import ReportError, bucket_counts, rebuild_report, render_html, write_report

__all__ = ["HIGHLIGHTS", "ReportError", "Span", "align_spans", "bucket_counts", "caption_spans", "highlight",
           "rebuild_report", "render_html", "write_report"]
