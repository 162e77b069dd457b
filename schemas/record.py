"""Arrow schemas of the tables the phases hand to each other, and of the outputs.

The index row and the `{key}.json` in the tar carry the same field names (the record contract).
"""

import pyarrow as pa

# Row status values beside the Reason codes (schemas.reasons): what a phase hands on.
STAGED = "staged"          # an ingest row that passed every gate (dedup and caption read these)
CAPTIONED_OK = "captioned"  # a caption row that write turns into a sample

# The listing of a listable source (folder, S3 prefix, URL list): _work/inputs/sNN.parquet.
INPUTS = pa.schema([("row", pa.int64()), ("uri", pa.string()), ("size", pa.int64()), ("alt", pa.string()), ("alt_uri", pa.string()),
                    ("error", pa.string()), ("error_detail", pa.string())])   # error: a listed entry refused unread
# The work units: _work/plan.parquet (a slice of a listing, or one webdataset tar).
UNITS = pa.schema([("unit", pa.string()), ("source", pa.int32()), ("kind", pa.string()), ("path", pa.string()),
                   ("start", pa.int64()), ("stop", pa.int64())])

QUALITY = pa.struct([
    ("sharpness", pa.float32()), ("brightness", pa.float32()), ("overexposed", pa.float32()),
    ("underexposed", pa.float32()), ("colourfulness", pa.float32()), ("flatness", pa.float32()),
    ("letterbox", pa.float32()), ("jpeg_quality", pa.int16()),
])

# Ingest output for every input, whatever its fate.
INGESTED = pa.schema([
    ("unit", pa.string()),
    ("key", pa.string()),
    ("source", pa.string()),
    ("uri", pa.string()),
    ("status", pa.string()),          # "staged" or a Reason value
    ("detail", pa.string()),
    ("format", pa.string()),
    ("bytes", pa.int64()),
    ("width", pa.int32()),            # after EXIF rotation
    ("height", pa.int32()),
    ("exif_rotated", pa.bool_()),
    ("is_4k", pa.bool_()),
    ("sha256", pa.string()),
    ("phash", pa.uint64()),
    ("dhash", pa.uint64()),
    ("phash_core", pa.uint64()),      # pHash / dHash of the picture inside uniform borders (dedup)
    ("dhash_core", pa.uint64()),
    ("phash_mirror", pa.uint64()),    # the same, of its left-right mirror image
    ("dhash_mirror", pa.uint64()),
    ("phash_long", pa.binary(32)),    # 256-bit pHash of the picture inside its borders (confirms near pairs)
    ("thumb", pa.binary(256)),          # 16 x 16 grey of the picture inside its borders (confirms near pairs)
    ("windows", pa.binary(672)),      # hashes of 14 windows of the picture, 48 bytes each (filters.windows: crops, turns)
    ("aesthetic", pa.float32()),
    ("nsfw", pa.float32()),           # heads on the same embedding (filters.safety), when set
    ("watermark", pa.float32()),
    ("clip_alt", pa.float32()),       # CLIP cosine of image and alt text (filters.alt_text; null without alt text)
    ("quality", QUALITY),
    ("embedding", pa.list_(pa.float16())),  # L2-normalised CLIP image embedding, when kept (float16: 2 bytes a value)
    ("decodes", pa.int8()),           # pixel decodes this input cost in ingest (1 when it was decoded)
    ("alt", pa.string()),
    ("meta", pa.string()),            # source metadata as JSON (e.g. a webdataset sample's json)
    ("blob", pa.string()),            # staged bytes (run-relative file) when the source is not re-read
    ("received", pa.int64()),         # bytes transferred from the source
    ("avoided", pa.int64()),          # bytes not downloaded thanks to the header-first gate
    ("unit_total", pa.int32()),       # inputs in this unit (known once the unit is expanded)
])

# Ingest rows on their way to the embedding actor: working-size pixels travel along (no second decode).
WITH_PIXELS = INGESTED.append(pa.field("pixels", pa.binary())).append(pa.field("pixels_shape", pa.list_(pa.int32())))

# The hashes dedup compares, and hashes.parquet (the next run's dedup.against).
DEDUP_HASHES = ["dhash", "phash_core", "dhash_core", "phash_mirror", "dhash_mirror", "phash_long", "thumb", "windows"]
HASHES = pa.schema([("key", pa.string()), ("sha256", pa.string()), ("phash", pa.uint64()), ("pixels", pa.int64()),
                    ("aesthetic", pa.float32()), ("run", pa.string()),
                    *[INGESTED.field(c) for c in DEDUP_HASHES]])

# Dedup decision for every staged sample.
DEDUP = pa.schema([
    ("key", pa.string()),
    ("keep", pa.bool_()),
    ("reason", pa.string()),
    ("dup_cluster", pa.string()),
    ("near_duplicate_of", pa.string()),
    ("distance", pa.int32()),
])


# The index's digest of report/hallucinations.parquet.
HALLUCINATION_SUMMARY = pa.struct([("score", pa.float32()), ("flags", pa.list_(pa.string()))])

# The final index: one row per written sample.
INDEX = pa.schema([
    ("key", pa.string()),
    ("source", pa.string()),
    ("url", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("format", pa.string()),
    ("bytes", pa.int64()),
    ("is_4k", pa.bool_()),
    ("ratio", pa.float64()),          # height / width, as PixArt's data_info
    ("bucket", pa.string()),
    ("bucket_hw", pa.list_(pa.int32())),
    ("sha256", pa.string()),
    ("phash", pa.string()),           # 16 hex digits
    ("aesthetic", pa.float32()),
    ("nsfw", pa.float32()),           # NSFW head score (filters.safety.nsfw_head; null when none)
    ("watermark", pa.float32()),      # watermark head score (filters.safety.watermark_head)
    ("clip_alt", pa.float32()),       # CLIP cosine of the image and its alt text (null: no alt text or off)
    ("quality", QUALITY),
    ("captions", pa.map_(pa.string(), pa.string())),
    ("caption", pa.string()),
    ("caption_tokens", pa.int32()),
    ("caption_cut", pa.string()),     # text the token budget cut off ("" when none)
    ("dup_cluster", pa.string()),
    ("hallucination", HALLUCINATION_SUMMARY),
    ("shard", pa.string()),           # path relative to the output (folder or s3:// prefix)
    ("member", pa.string()),          # image member name inside the shard
    ("member_width", pa.int32()),     # the stored image's size: width/height unless output.max_side
    ("member_height", pa.int32()),    # downscaled it; stored pixels are always upright (no EXIF orientation)
    ("stored_as", pa.string()),       # original | lossless_transform (jpegtran, EXIF-rotated JPEG) | reencoded
    ("member_offset", pa.int64()),    # byte offset of the image member's data in its tar: one ranged read
    ("member_bytes", pa.int64()),     # size of the stored image member
])

# Spans of a caption (character offsets into it) and how each was judged.
SENTENCE = pa.struct([("text", pa.string()), ("start", pa.int32()), ("end", pa.int32()),
                      ("clip", pa.float32()), ("weak", pa.bool_())])
PHRASE = pa.struct([("text", pa.string()), ("start", pa.int32()), ("end", pa.int32()),
                    ("clip", pa.float32()), ("grounded", pa.bool_())])
# A claimed text checked by OCR: outcome found | not_found | unsure (null: not checked); `found`
# is true, false, or null for unsure and unchecked; `confidence` is OCR's score of the
# characters that decided it; `read` the OCR words it was compared with.
TEXT_CLAIM = pa.struct([("text", pa.string()), ("start", pa.int32()), ("end", pa.int32()), ("found", pa.bool_()),
                        ("outcome", pa.string()), ("confidence", pa.float32()), ("read", pa.string())])
SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32())])
# One signal of the combined score: how bad (value) and how sure the check is (confidence), 0..1.
SIGNAL = pa.struct([("name", pa.string()), ("value", pa.float32()), ("confidence", pa.float32())])

# report/hallucinations.parquet: the evidence behind each written caption's score.
HALLUCINATION = pa.schema([
    ("key", pa.string()),
    ("captioner", pa.string()),       # whose text was scored (the training caption's captioner)
    ("score", pa.float32()),          # 0 (clean) .. 1 (worst); weights in curate/hallucination/combine.py
    ("flags", pa.list_(pa.string())),
    ("sentences", pa.list_(SENTENCE)),
    ("phrases", pa.list_(PHRASE)),
    ("text_claims", pa.list_(TEXT_CLAIM)),
    ("ocr_text", pa.string()),        # what OCR read in the image
    ("repeated_ngrams", pa.float32()),  # share of word 3-grams that repeat an earlier one
    ("repeated_spans", pa.list_(SPAN)),
    ("loop", pa.bool_()),
    ("duplicate_sentences", pa.list_(SPAN)),  # sentences that nearly repeat an earlier one
    ("truncated", pa.bool_()),
    ("boilerplate", pa.string()),     # the boilerplate opener or chat closer found ("" when none)
    ("language", pa.string()),
    ("language_confidence", pa.float32()),
    ("other_languages", pa.list_(pa.string())),  # languages of parts written in another language
    ("alt_agreement", pa.float32()),  # cosine of caption and alt text embeddings (null without alt)
    ("signals", pa.list_(SIGNAL)),    # what the score was made of
])

# The same evidence inside the caption phase's rows.
EVIDENCE = pa.struct([f for f in HALLUCINATION if f.name != "key"])

# What the caption phase's CPU tasks hand the captioners: typed Arrow, so a column that is null in
# every row of a batch stays a typed null (numpy object batches come back from Ray Data as NaN or bytes).
PREPARED = pa.schema([("unit", pa.string()), ("key", pa.string()), ("alt", pa.string()),
                      ("pixels", pa.large_binary()), ("pixels_shape", pa.list_(pa.int32())), ("prep_error", pa.string()),
                      ("prep_reason", pa.string()),   # the Reason of prep_error (read_error, or source_changed on a re-fetch)
                      ("embedding", INGESTED.field("embedding").type)])   # ingest's CLIP image embedding, for the scorer

# Caption phase output for every kept sample.
CAPTIONED = pa.schema([
    ("unit", pa.string()),
    ("key", pa.string()),
    ("captions", pa.map_(pa.string(), pa.string())),
    ("caption", pa.string()),
    ("caption_tokens", pa.int32()),
    ("caption_cut", pa.string()),
    ("finish_reasons", pa.map_(pa.string(), pa.string())),  # per captioner: stop | length (cut by
                                      # max_new_tokens, then trimmed to its last full sentence if one ended)
    ("status", pa.string()),          # "captioned" or a Reason value
    ("detail", pa.string()),
    ("hallucination", HALLUCINATION_SUMMARY),
    ("evidence", EVIDENCE),           # the row of report/hallucinations.parquet (without key)
    ("raw", pa.map_(pa.string(), pa.string())),   # each captioner's text before cleaning (reused when its settings stay)
])

# The write plan: the index plus where staged bytes are.
WRITE_PLAN = INDEX.append(pa.field("blob", pa.string()))

# Per shard, what was stored for each member; written before the shard is published, so a
# published shard always has one (a resumed run reads it instead of the shard).
MEMBERS = pa.schema([("key", pa.string()), ("stored_as", pa.string()), ("member_offset", pa.int64()), ("member_bytes", pa.int64())])

# rejects/: one row per input that was not written.
REJECTS = pa.schema([
    ("unit", pa.string()),
    ("key", pa.string()),
    ("source", pa.string()),
    ("uri", pa.string()),
    ("phase", pa.string()),
    ("outcome", pa.string()),         # "rejected" or "failed"
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("dup_cluster", pa.string()),
    ("near_duplicate_of", pa.string()),
])


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Build a typed table; missing fields become nulls."""
    return pa.Table.from_pylist([{f: r.get(f) for f in schema.names} for r in rows], schema=schema)
