"""Reason codes: the one vocabulary for why a sample was not written.

`Rejected` means the input was judged (too small, duplicate, ...); `Failed` means the
pipeline could not finish it (unreadable, captioner error). Both keep a row in `rejects/`.
"""

from enum import StrEnum
from typing import NamedTuple


class Outcome(StrEnum):
    WRITTEN = "written"
    REJECTED = "rejected"
    FAILED = "failed"


class Reason(StrEnum):
    # ingest: fetching (policy verdicts are rejections; transport trouble is a failure)
    BAD_SCHEME = "bad_scheme"
    BLOCKED_ADDRESS = "blocked_address"
    OPTED_OUT = "opted_out"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    REDIRECT_LOOP = "redirect_loop"
    FETCH_ERROR = "fetch_error"
    BAD_URL = "bad_url"                    # not a usable URL (too long, no host, malformed)
    # ingest: what a source lists but never opens
    HIDDEN_FILE = "hidden_file"            # a dot-file
    NOT_A_FILE = "not_a_file"              # a FIFO, device or socket (or a link to one)
    BROKEN_LINK = "broken_link"            # a dangling symlink or a symlink loop
    UNSAFE_PATH = "unsafe_path"            # a symlink that leaves the source folder
    # ingest: a webdataset sample's members
    BAD_METADATA = "bad_metadata"          # a json member that is not a small, shallow JSON value
    TOO_MANY_MEMBERS = "too_many_members"  # more members (or member bytes) in one sample than allowed
    # ingest: bytes and header
    EMPTY_FILE = "empty_file"
    TOO_MANY_BYTES = "too_many_bytes"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    DECOMPRESSION_BOMB = "decompression_bomb"
    DECODE_ERROR = "decode_error"
    # ingest: resolution gate
    TOO_SMALL = "too_small"
    TOO_FEW_PIXELS = "too_few_pixels"
    EXTREME_ASPECT = "extreme_aspect"
    NOT_4K = "not_4k"
    # ingest: quality and aesthetics
    BLANK = "blank"
    BLURRY = "blurry"
    OVEREXPOSED = "overexposed"
    UNDEREXPOSED = "underexposed"
    LOW_COLOURFULNESS = "low_colourfulness"
    LETTERBOXED = "letterboxed"
    LOW_JPEG_QUALITY = "low_jpeg_quality"
    LOW_AESTHETIC = "low_aesthetic"
    NSFW = "nsfw"                          # filters.safety.max_nsfw
    WATERMARK = "watermark"                # filters.safety.max_watermark
    LOW_CLIP_ALT = "low_clip_alt"          # image and alt text disagree (filters.alt_text, dedup.clip_alt_top_fraction)
    # dedup
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    SEMANTIC_DUPLICATE = "semantic_duplicate"
    EARLIER_RUN_DUPLICATE = "earlier_run_duplicate"
    # caption
    EMPTY_CAPTION = "empty_caption"
    HALLUCINATION = "hallucination"
    # a re-fetch of removed staged bytes (a later re-run) found other bytes than the first read
    SOURCE_CHANGED = "source_changed"
    # failures (the pipeline's fault or the environment's, not the input's verdict)
    READ_ERROR = "read_error"
    CAPTION_FAILED = "caption_failed"
    WORKER_ERROR = "worker_error"

    @property
    def outcome(self) -> Outcome:
        return Outcome.FAILED if self in _FAILURES else Outcome.REJECTED


_FAILURES = {
    Reason.READ_ERROR, Reason.CAPTION_FAILED, Reason.WORKER_ERROR, Reason.HTTP_ERROR, Reason.TIMEOUT,
    Reason.RATE_LIMITED, Reason.TOO_MANY_REDIRECTS, Reason.REDIRECT_LOOP, Reason.FETCH_ERROR,
}


class Verdict(NamedTuple):
    """A gate's judgement of a sample (filters.gates): why it is rejected."""

    reason: Reason
    detail: str


class InputError(Exception):
    """An input that cannot go on, with its reason: raised by sources, the network rules and the
    image probe/decode alike, and caught once in ingest, where it becomes a rejects row."""

    def __init__(self, reason: Reason | str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = Reason(reason), detail
