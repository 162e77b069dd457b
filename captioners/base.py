"""The captioner interface: a batch of images (+ their metadata) -> one result per image.

Backends hold no Ray code, so they are tested without a cluster; the caption phase wraps
them in a Ray actor class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PIL import Image


@dataclass
class CaptionResult:
    text: str | None
    error: str | None = None


class Captioner(Protocol):
    name: str

    def caption(self, images: list[Image.Image], metas: list[dict]) -> list[CaptionResult]:
        """Same length and order as `images`; a failed sample gets `error`, not an exception."""
        ...


def split_on_failure(run, items: list) -> list[CaptionResult]:
    """Run `run(items)`; if it raises, split the batch in halves and retry each half.

    A single item that still fails becomes a CaptionResult with the error, so one bad
    sample (or an out-of-memory batch) never loses the rest of its batch.
    """
    try:
        return run(items)
    except Exception as exc:
        if len(items) == 1:
            return [CaptionResult(None, f"{type(exc).__name__}: {exc}"[:500])]
        mid = len(items) // 2
        return split_on_failure(run, items[:mid]) + split_on_failure(run, items[mid:])
