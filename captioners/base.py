"""The captioner interface: a batch of images (+ their metadata) -> one result per image.

Backends hold no Ray code, so they are tested without a cluster; the caption phase wraps
them in a Ray actor class (or, for vLLM, in Ray Data's batch-LLM stages).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

FINISH_STOP = "stop"      # the model ended the caption
FINISH_LENGTH = "length"  # cut by max_new_tokens: the text ends mid-sentence


@dataclass
class CaptionResult:
    text: str | None
    error: str | None = None
    finish: str | None = None   # FINISH_STOP or FINISH_LENGTH; None when it failed


class Captioner(Protocol):
    name: str

    def caption(self, images: list[Image.Image], metas: list[dict]) -> list[CaptionResult]:
        """Same length and order as `images`; a failed sample gets `error`, not an exception.
        Each meta holds the sample's `key` (sampling presets seed from it)."""
        ...


def split_on_failure(run: Callable[[list], list[CaptionResult]], items: list,
                     free: Callable[[], None] | None = None) -> list[CaptionResult]:
    """Run `run(items)`; if it raises, split the batch in halves and retry each half.

    The retry starts after the `except` block has ended, so the failed attempt's exception and
    traceback (and with them its tensors) are gone; `free` then returns their memory (e.g. the
    CUDA cache) before the halves run. A single item that still fails becomes a CaptionResult
    with the error, so one bad sample (or an out-of-memory batch) never loses the rest of its batch.
    """
    try:
        return run(items)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    if free is not None:
        free()
    if len(items) == 1:
        return [CaptionResult(None, error)]
    mid = len(items) // 2
    return split_on_failure(run, items[:mid], free) + split_on_failure(run, items[mid:], free)
