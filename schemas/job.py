"""The job file: a pydantic model. Unknown keys are errors; every field has a default or is required.

Local paths are resolved against the current directory. Whether they exist is checked by
`curate.jobs.check_paths` (before any work starts), not here, so a job meant for a cluster
validates on a laptop.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SHARE_CAPTIONER_PROMPT = "Analyze the image in a comprehensive and detailed manner."
T5_TOKENIZER = "google/t5-v1_1-xxl"   # PixArt-sigma's text encoder (T5-XXL), max_length 300


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RayConfig(Strict):
    address: str | None = Field(None, description="Ray cluster address; none starts a local cluster (RAY_ADDRESS also works).")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the embedded local cluster (default: all).")
    no_progress_timeout_s: float = Field(1800, gt=0, description="Fail a phase that makes no progress for this long.")
    dashboard: bool = Field(False, description="Start Ray's dashboard with the embedded local cluster (a cluster's own is "
                            "set up with `ray start`).")


class S3Options(Strict):
    """Where S3 is (MinIO, R2, Ceph ...). Credentials come only from the environment or an AWS profile."""

    endpoint_url: str | None = Field(None, description="e.g. http://minio:9000; default: AWS_ENDPOINT_URL or AWS.")
    region: str | None = Field(None, description="default: AWS_REGION / the profile's region.")
    profile: str | None = Field(None, description="AWS profile name (~/.aws/credentials).")


class FolderSource(Strict):
    type: Literal["folder"]
    path: str = Field(description="Folder of images; scanned recursively.")
    extensions: list[str] = Field(["jpg", "jpeg", "png", "webp"], min_length=1, description="File name endings taken as image inputs (case-insensitive).")
    alt_text: Literal["sidecar", "none"] = Field("sidecar", description="'sidecar': read <stem>.txt beside the image as its alt text.")


class S3Source(Strict):
    type: Literal["s3"]
    prefix: str = Field(pattern=r"^s3://[^/]+(/.*)?$", description="s3://bucket/prefix; every object below it with an image extension is an input.")
    extensions: list[str] = Field(["jpg", "jpeg", "png", "webp"], min_length=1)
    alt_text: Literal["sidecar", "none"] = Field("sidecar", description="'sidecar': the object <stem>.txt beside the image.")
    s3: S3Options = Field(default_factory=S3Options)


class UrlListSource(Strict):
    type: Literal["url_list"]
    path: str = Field(description="A URL list: local path or s3://bucket/key (Parquet, CSV, TSV or JSONL).")
    format: Literal["auto", "parquet", "csv", "tsv", "jsonl"] = Field("auto", description="auto: from the file name ending.")
    url_column: str = Field("URL", description="Column holding the image URL (LAION: URL; DataComp/COYO: url).")
    caption_column: str | None = Field("TEXT", description="Column holding the alt text (LAION: TEXT); null for none.")
    s3: S3Options = Field(default_factory=S3Options)


class WebdatasetSource(Strict):
    type: Literal["webdataset"]
    paths: list[str] = Field(min_length=1, description="Tar shards: local paths or globs, s3://bucket/key.tar, or an s3:// prefix ending in /.")
    s3: S3Options = Field(default_factory=S3Options)


Source = Annotated[FolderSource | S3Source | UrlListSource | WebdatasetSource, Field(discriminator="type")]


class FetchConfig(Strict):
    """HTTP(S) fetching for URL lists: polite, bounded and safe on the open web."""

    concurrency: int = Field(32, ge=1, description="Requests in flight per worker task.")
    per_host: int = Field(4, ge=1, description="Requests in flight per host per worker task.")
    connect_timeout_s: float = Field(5, gt=0)
    read_timeout_s: float = Field(10, gt=0, description="Longest wait for the next bytes of a response.")
    total_timeout_s: float = Field(60, gt=0, description="Longest time for one request, however slowly the bytes trickle.")
    retries: int = Field(3, ge=0, description="Retries after a timeout, 429 or 5xx.")
    backoff_s: float = Field(0.5, ge=0, description="First retry delay; doubles each retry.")
    max_retry_after_s: float = Field(30, ge=0, description="Longest Retry-After honoured; a longer one fails the input (rate_limited).")
    max_redirects: int = Field(5, ge=0)
    header_bytes: int = Field(65536, ge=1024, description="Bytes fetched first (ranged GET) to read the header before the full download.")
    user_agent: str = Field("curate/0.1 (image dataset curation; +https://github.com/curate-data/curate)")
    respect_opt_out: bool = Field(True, description="Honour X-Robots-Tag: noai / noimageai (reason opted_out).")
    allow_private_networks: bool = Field(False, description="Allow loopback and private addresses (link-local and cloud metadata addresses stay refused).")


class UnitsConfig(Strict):
    size: int = Field(256, ge=1, description="Inputs per work unit: the grain of parallelism, commit and resume.")


class FourKRule(Strict):
    min_short: int = Field(2160, ge=1)
    min_long: int = Field(3840, ge=1)


class ResolutionConfig(Strict):
    min_side: int = Field(1024, ge=1, description="Reject when the short side (after EXIF rotation) is smaller.")
    min_pixels: int = Field(0, ge=0, description="Reject when width*height is smaller.")
    max_aspect: float = Field(4.5, ge=1, description="Reject when long/short side exceeds this (PixArt-sigma drops ratio > 4.5).")
    fourk: FourKRule = Field(default_factory=FourKRule, description="An image is tagged 4K when both sides reach these.")
    require_4k: bool = Field(False, description="Keep only images the `fourk` rule tags 4K (reason not_4k): a 4K subset job.")


class IngestConfig(Strict):
    working_side: int = Field(512, ge=64, description="The one decode shared by hashing and quality stages: long side <= this, short side >= half of it (when the image is that large).")
    max_bytes: int = Field(64 * 2**20, ge=1, description="Inputs larger than this are rejected unread.")
    max_pixels: int = Field(256 * 2**20, ge=1, description="Decompression-bomb guard: headers claiming more pixels are rejected undecoded.")


class QualityConfig(Strict):
    """Weight-free signals are always recorded; each gate is off (null) unless set."""

    max_flatness_for_blank: float | None = Field(None, ge=0, description="Reject as blank when the grey std is at most this (e.g. 2).")
    min_sharpness: float | None = Field(None, ge=0, description="Laplacian variance at working size.")
    max_overexposed: float | None = Field(None, ge=0, le=1, description="Fraction of pixels with grey > 245.")
    max_underexposed: float | None = Field(None, ge=0, le=1, description="Fraction of pixels with grey < 10.")
    min_colourfulness: float | None = Field(None, ge=0, description="Hasler-Suesstrunk M (0 for greys).")
    max_letterbox: float | None = Field(None, ge=0, le=1, description="Fraction of the image in uniform edge bands.")
    min_jpeg_quality: int | None = Field(None, ge=1, le=100, description="Estimated IJG quality of JPEG inputs.")


class AestheticsConfig(Strict):
    """CLIP image embedding (open_clip) + a LAION aesthetic predictor head, in a batched actor."""

    enabled: bool = False
    clip_model: str = Field("ViT-L-14", description="open_clip architecture name.")
    clip_pretrained: str | None = Field("openai", description="open_clip pretrained tag, or a checkpoint file path.")
    clip_config: str | None = Field(None, description="A model config JSON (file or folder) for architectures open_clip does not ship.")
    head: str | None = Field(None, description="Aesthetic head weights: the improved predictor's MLP (layers.N.*) or a v1 linear head.")
    min_aesthetic: float | None = Field(None, description="Reject below this score (reason low_aesthetic); common cut-offs 5.0-6.5.")
    keep_embeddings: bool = Field(True, description="Store the L2-normalised image embedding (float16) in the ingest table: "
                                  "semantic dedup and the hallucination CLIP check read it instead of embedding the image again "
                                  "(off: the scorer embeds every image a second time).")
    batch_size: int = Field(64, ge=1)
    concurrency: int = Field(1, ge=1)
    num_gpus: float = Field(0, ge=0)
    num_cpus: float = Field(1, gt=0)

    @model_validator(mode="after")
    def _head_when_enabled(self) -> AestheticsConfig:
        if self.enabled and not self.head:
            raise ValueError("head: required when aesthetics are enabled (path to the aesthetic head weights)")
        return self


class HeadConfig(Strict):
    """A classifier head on the CLIP image embedding; layouts in filters/heads.py."""

    path: str = Field(description="State dict file (.pth/.pt/.safetensors): the LAION NSFW port (norm.*, linear_1..4), "
                      "layers.N.weight/bias, or weight/bias.")
    activation: Literal["relu", "none"] = Field("relu", description="Between the layers.N Linear layers of a generic head.")
    sigmoid: bool | None = Field(None, description="Sigmoid on the output; unset: the layout's own (the LAION NSFW port: yes; "
                                 "generic and linear heads: no).")


class SafetyConfig(Strict):
    """NSFW and watermark scores from heads on the ingest CLIP embedding (filters.aesthetics' model)."""

    nsfw_head: HeadConfig | None = Field(None, description="e.g. LAION's CLIP-based NSFW detector for ViT-L/14, as a torch state dict.")
    watermark_head: HeadConfig | None = Field(None, description="A watermark head on the same embedding (probability of a watermark).")
    max_nsfw: float | None = Field(None, description="Reject above this score (reason nsfw); LAION-5B's punsafe column, "
                                   "0.5 = its 'UNSAFE' tag, Stable Diffusion 2 used 0.1.")
    max_watermark: float | None = Field(None, description="Reject above this score (reason watermark); LAION-5B's pwatermark, "
                                        "Stable Diffusion 1 used 0.5.")

    @model_validator(mode="after")
    def _gate_needs_head(self) -> SafetyConfig:
        for gate, head in (("max_nsfw", "nsfw_head"), ("max_watermark", "watermark_head")):
            if getattr(self, gate) is not None and getattr(self, head) is None:
                raise ValueError(f"{gate} needs {head} (the weights that give the score)")
        return self


class AltTextConfig(Strict):
    """Agreement of the image with its alt text: CLIP cosine of the image embedding and the alt text's
    embedding (text tower of filters.aesthetics' model), stored as `clip_alt`. Samples without alt
    text get no score and are never rejected by it. A run-wide percentile is dedup.clip_alt_top_fraction."""

    enabled: bool = Field(False, description="Compute clip_alt in ingest (needs filters.aesthetics).")
    min_clip_alt: float | None = Field(None, description="Reject below this cosine (reason low_clip_alt); LAION-400M kept >= 0.3 "
                                       "and LAION-5B English >= 0.28, both with ViT-B/32 (ViT-L/14 cosines run lower).")


class FiltersConfig(Strict):
    resolution: ResolutionConfig = Field(default_factory=ResolutionConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    aesthetics: AestheticsConfig = Field(default_factory=AestheticsConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    alt_text: AltTextConfig = Field(default_factory=AltTextConfig)

    @model_validator(mode="after")
    def _embedding_users_need_clip(self) -> FiltersConfig:
        users = [name for name, on in (("safety.nsfw_head", self.safety.nsfw_head), ("safety.watermark_head", self.safety.watermark_head),
                                       ("alt_text.enabled", self.alt_text.enabled)) if on]
        if users and not self.aesthetics.enabled:
            raise ValueError(f"{users[0]} reads the CLIP embedding of filters.aesthetics: set filters.aesthetics.enabled")
        if self.alt_text.min_clip_alt is not None and not self.alt_text.enabled:
            raise ValueError("alt_text.min_clip_alt needs alt_text.enabled")
        return self


class SemanticDedupConfig(Strict):
    enabled: bool = False
    threshold: float = Field(0.95, gt=0, le=1, description="CLIP cosine similarity at or above which two images are duplicates.")
    partitions: int | None = Field(None, ge=1, description="k-means partitions (default sqrt(n)); pairs are compared within them.")


class DedupConfig(Strict):
    exact: bool = Field(True, description="Drop byte-identical inputs (sha256).")
    near: bool = Field(True, description="Drop near-duplicates: pHash within max_distance AND dHash within confirm_distance "
                       "(of the pictures inside their borders, as shown or one mirrored).")
    max_distance: int = Field(10, ge=0, le=32, description="pHash Hamming distance k at or below which two images may be near-duplicates.")
    confirm_distance: int = Field(12, ge=0, le=32, description="dHash Hamming distance at or below which a pHash match is confirmed: "
                                  "the second, independent hash that keeps chance pHash collisions (hundreds of thousands at 10M) apart.")
    long_distance: int = Field(72, ge=0, le=256, description="256-bit pHash distance at or below which a pair confirmed on both "
                               "64-bit hashes is merged: keeps different pictures on one background apart (bench/dedup).")
    windows: bool = Field(True, description="Also search window hashes: finds crops (up to 10 % per side) and turns (up to "
                          "5 degrees), whose whole-picture hashes move as far as a different picture's (filters.windows).")
    window_distance: int = Field(72, ge=0, le=256, description="256-bit pHash distance at or below which a window match "
                                 "(confirmed on both 64-bit hashes of the windows) is merged (bench/dedup).")
    engine: Literal["auto", "local", "ray"] = Field("auto", description="local: vectorised in the driver; ray: band grouping as a Ray Data shuffle; auto: by size.")
    local_max: int = Field(20_000_000, ge=1, description="auto uses the local engine up to this many hashes.")
    against: list[str] = Field(default_factory=list, description="Earlier runs (folders or their hashes.parquet): inputs duplicating them are dropped.")
    semantic: SemanticDedupConfig = Field(default_factory=SemanticDedupConfig)
    clip_alt_top_fraction: float | None = Field(None, gt=0, le=1, description="Keep this top fraction of the run's samples by "
                                                "clip_alt, among those with alt text (DataComp's CLIP-score baseline kept the top 0.3); "
                                                "the rest are rejected (low_clip_alt). Needs the whole run, so dedup applies it, "
                                                "before duplicates are searched. Needs filters.alt_text.enabled.")


class ApiConfig(Strict):
    """For backend openai: an OpenAI-compatible chat-completions endpoint."""

    base_url: str | None = Field(None, description="e.g. http://vllm-server:8000/v1")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="Environment variable holding the API key (never the key itself).")
    concurrency: int = Field(32, ge=1, description="Requests in flight per actor, whatever the batch size (one HTTP client per actor).")
    timeout_s: float = Field(120, gt=0, description="Per request.")
    retries: int = Field(5, ge=0, description="After timeouts, connection errors, 429 and 5xx.")
    backoff_s: float = Field(1.0, ge=0, description="First retry waits about this long (jittered), doubling each time; "
                             "a Retry-After header replaces it.")
    max_backoff_s: float = Field(60, ge=0, description="Longest wait before a retry (also caps Retry-After).")
    image_format: Literal["jpeg", "png"] = Field("jpeg", description="How images travel: jpeg (quality `jpeg_quality`, "
                                                 "~10x smaller) or png (lossless).")
    jpeg_quality: int = Field(95, ge=1, le=100)


class GenerationSettings(Strict):
    """Single decoding settings replacing the preset's (unset: the preset's value)."""

    max_new_tokens: int | None = Field(None, ge=1)
    min_new_tokens: int | None = Field(None, ge=0, description="Forbid the end token before this many new tokens.")
    do_sample: bool | None = Field(None, description="Sample (seeded per sample from `seed` and the key) instead of argmax.")
    temperature: float | None = Field(None, gt=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, description="0: no top-k cut.")
    num_beams: int | None = Field(None, ge=1)
    repetition_penalty: float | None = Field(None, gt=0, description="CTRL-style penalty over the generated tokens only "
                                             "(never the prompt).")
    length_penalty: float | None = Field(None, description="Beam search length penalty.")


class VLLMOptions(Strict):
    """For backend vllm: the engine, run by Ray Data's batch-LLM processor (ray.data.llm)."""

    max_model_len: int = Field(4096, ge=256, description="Context per sequence: prompt + image tokens + new tokens "
                               "(the model's own, often 128k, would size the KV cache for nothing).")
    max_num_seqs: int = Field(256, ge=1, description="Sequences the engine decodes together.")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="Share of each GPU vLLM may take; "
                                                 "default 0.9, times num_gpus when the actor has a fraction of a GPU.")
    max_concurrent_batches: int | None = Field(None, ge=1, description="Ray batches in flight per engine; default: enough "
                                               "to keep max_num_seqs requests queued.")
    enable_prefix_caching: bool = Field(True, description="Reuse the shared prompt prefix's KV cache.")


class CaptionerConfig(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Stored as captions.<name>.")
    backend: Literal["transformers", "vllm", "openai"] = Field("transformers", description="transformers: a Ray actor per "
                                                                "GPU; vllm: Ray Data LLM (needs the vllm extra); openai: calls `api.base_url`.")
    model: str = Field(description="Hugging Face repo id or local folder (transformers, vllm); the served model name (openai).")
    api: ApiConfig = Field(default_factory=ApiConfig)
    vllm: VLLMOptions = Field(default_factory=VLLMOptions)
    prompt: str = SHARE_CAPTIONER_PROMPT
    preset: Literal["share-captioner", "greedy", "sample"] = Field(
        "share-captioner", description="Decoding preset (every parameter stated; see captioners/presets.py); "
        "`generation` replaces single settings. share-captioner: ShareGPT4V's 3-beam sampling (transformers only); "
        "greedy: the throughput preset; sample: seeded temperature-1 sampling.")
    generation: GenerationSettings = Field(default_factory=GenerationSettings, description="Overrides, e.g. {max_new_tokens: 300}.")
    image_side: int = Field(896, ge=32, description="CPU tasks shrink images to this long side before the actor; the processor does the rest.")
    min_pixels: int = Field(256 * 28 * 28, ge=1, description="Processor pixel floor (Qwen-VL: 28x28 px per image token; "
                            "default 256 tokens). Images are scaled up to it.")
    max_pixels: int = Field(1280 * 28 * 28, ge=1, description="Processor pixel ceiling (default 1280 tokens, Qwen's "
                            "suggested maximum): bounds image tokens, memory and time.")
    batch_size: int = Field(4, ge=1, description="Rows per Ray batch (transformers: per generate call; vllm: per engine "
                                                  "request batch; openai: does not bound concurrency).")
    concurrency: int = Field(1, ge=1, description="Maximum actors (vllm: engines) in the pool (autoscales from 1).")
    num_gpus: float = Field(0, ge=0, description="GPUs per actor; 0 runs on CPU. transformers: more than 1 spreads the model "
                            "over them; vllm: whole numbers are the tensor parallel size, a fraction shares a GPU.")
    num_cpus: float = Field(1, gt=0, description="CPUs per actor; keep below the node's CPUs so read tasks can run.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    @model_validator(mode="after")
    def _backend_honours_settings(self) -> CaptionerConfig:
        from captioners.presets import effective, refusal

        problem = refusal(self.backend, self.preset, self.generation.model_dump())
        if problem:
            raise ValueError(problem)
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels={self.min_pixels} is above max_pixels={self.max_pixels}")
        if self.backend == "vllm":
            if self.num_gpus == 0:
                raise ValueError("backend vllm runs on GPUs: set num_gpus (1 or more: the tensor parallel size; or a fraction)")
            if self.num_gpus > 1 and self.num_gpus != int(self.num_gpus):
                raise ValueError(f"num_gpus={self.num_gpus}: backend vllm needs a whole number of GPUs above 1 "
                                 "(the tensor parallel size)")
            need = self.max_pixels // (28 * 28) + 64 + effective(self.preset, self.generation.model_dump())["max_new_tokens"]
            if self.vllm.max_model_len < need:
                raise ValueError(f"vllm.max_model_len={self.vllm.max_model_len} is below the longest request "
                                 f"(~{need} tokens: max_pixels/784 image tokens + prompt + max_new_tokens)")
        return self


class CaptionConfig(Strict):
    captioners: list[CaptionerConfig] = Field(min_length=1)
    use: str | None = Field(None, description="Captioner whose text becomes the training `caption` (default: the first).")
    fallback_to_alt: bool = Field(True, description="Use the alt text when the chosen captioner returned nothing.")
    max_tokens: int = Field(300, ge=1, description="Token budget of the training text encoder, counted in `tokenizer` with its "
                            "special tokens (PixArt-sigma: T5, max_length 300; PixArt-alpha: 120).")
    tokenizer: str = Field(T5_TOKENIZER, description="The tokenizer of the text encoder the budget protects (repo id or folder), "
                           "never the captioner's own: Qwen/LLaMA tokenizers count fewer tokens than T5, so their 300 would "
                           "be cut mid-sentence at training time. Must load where the job runs (validation fails otherwise).")

    @model_validator(mode="after")
    def _use_names_a_captioner(self) -> CaptionConfig:
        names = [c.name for c in self.captioners]
        if len(set(names)) != len(names):
            raise ValueError(f"captioner names must be unique, got {names}")
        if self.use is not None and self.use not in names:
            raise ValueError(f"use: {self.use!r} is not one of the captioners {names}")
        return self

    @property
    def chosen(self) -> str:
        return self.use or self.captioners[0].name


class DetectorConfig(Strict):
    """An open-vocabulary detector (e.g. OWLv2 through transformers) confirming noun phrases."""

    model: str = Field(description="transformers model folder or id, e.g. google/owlv2-base-patch16-ensemble.")
    threshold: float = Field(0.2, ge=0, le=1, description="Box score at which a phrase counts as detected.")


class HallucinationWeights(Strict):
    """Weights of the combined score (each signal is 0..1 before weighting; the sum is normalised)."""

    weak_sentences: float = Field(0.25, ge=0, description="Share of sentences CLIP finds weaker than unrelated text.")
    ungrounded_phrases: float = Field(0.3, ge=0, description="Share of object noun phrases not grounded in the image.")
    text_not_found: float = Field(0.2, ge=0, description="Share of claimed written text OCR does not find or is unsure of, "
                                  "times OCR's confidence in the differing characters (an unsure claim counts 0.3).")
    degeneration: float = Field(0.15, ge=0, description="Loops, near-duplicate sentences, repeated n-grams, truncation, boilerplate, "
                                "wrong or mixed language.")
    alt_disagreement: float = Field(0.1, ge=0, description="1 - agreement with the alt text (skipped without alt text).")


class HallucinationConfig(Strict):
    enabled: bool = Field(True, description="Score every training caption (needs filters.aesthetics' CLIP for the image signals).")
    ocr: bool = Field(True, description="Check text the caption claims is written in the image with OCR (rapidocr).")
    ocr_side: int = Field(1280, ge=256, description="Long side the image is decoded at for OCR.")
    ocr_tiles: bool = Field(True, description="Read the image again on 2x2 overlapping tiles enlarged 2x when the first OCR pass "
                            "does not confirm a claim (small text; about 4x the first pass's cost, only for those images).")
    alt_agreement: bool = Field(True, description="Compare the caption with the source alt text (all-MiniLM-L6-v2).")
    detector: DetectorConfig | None = Field(None, description="Optional open-vocabulary detector for noun phrases.")
    phrase_z: float = Field(0.0, description="A noun phrase is grounded when its CLIP score is this many standard deviations "
                            "above the image's scores for unrelated objects (the per-image calibration).")
    sentence_z: float = Field(0.0, description="A sentence is weak when its CLIP score is below the unrelated-text mean plus this many sd.")
    language: str = Field("en", description="Expected caption language (ISO 639-1, identified by py3langid); a caption in "
                          "another language, or with a part in another one, is flagged.")
    weights: HallucinationWeights = Field(default_factory=HallucinationWeights)
    action: Literal["flag", "drop", "fallback"] = Field("flag", description="flag: keep and mark; drop: reject above threshold "
                                                        "(reason hallucination); fallback: use fallback_captioner's text above threshold.")
    threshold: float = Field(0.5, ge=0, le=1, description="Combined score above which `action` applies.")
    fallback_captioner: str | None = Field(None, description="Captioner whose text replaces a flagged caption (action fallback).")
    batch_size: int = Field(16, ge=1)
    concurrency: int = Field(1, ge=1, description="Scoring actors.")
    num_cpus: float = Field(1, gt=0, description="CPUs per scoring actor.")
    num_gpus: float = Field(0, ge=0)


class OutputConfig(Strict):
    bucket_table: Literal[256, 512, 1024, 2048] = Field(1024, description="PixArt aspect-ratio table.")
    shard_samples: int = Field(1000, ge=1, description="Most samples per tar shard, per bucket.")
    shard_bytes: int | None = Field(None, ge=1, description="Most image bytes per shard (a larger single image gets a shard of its own); "
                                    "with max_side, counted on the source bytes.")
    max_side: int | None = Field(None, ge=64, description="Downscale images whose longer side exceeds this (upright, Lanczos) and "
                                 "re-encode them, for lower-resolution training variants; none keeps the original bytes.")
    format: Literal["jpg", "webp", "png", "keep"] = Field(
        "jpg", description="Format of every stored image, so each sample has one image field (`jpg`) for every reader. JPEG inputs "
        "keep their bytes when already upright (EXIF-rotated ones are turned losslessly with jpegtran when installed, else "
        "re-encoded with their own quantisation tables); PNG/WebP inputs are re-encoded. `keep`: each input's own format "
        "(then samples carry jpg, png or webp fields). The index's `stored_as` says which happened.")
    quality: int = Field(95, ge=1, le=100, description="JPEG/WebP quality of re-encoded images.")
    work_dir: str | None = Field(None, description="Where the run stages: a local folder for staged bytes, commit markers and copies "
                                 "of the index and report when `out` is s3:// (default: .curate/<job name>), or an s3:// prefix "
                                 "(uses `output.s3`) that holds the staged bytes every node reads, for a cluster without a shared "
                                 "file system (the driver then keeps its commit files in .curate/<job name>).")
    keep_staged: bool = Field(False, description="Keep the staged image bytes after the run completes (by default they are deleted; "
                              "a later re-run that needs them fetches them from the sources again and checks size and sha256).")
    verify_staged: bool = Field(False, description="Re-hash each staged image (sha256) before it is written to a shard; by default "
                                "write checks its length only (ingest hashed those very bytes).")
    s3: S3Options = Field(default_factory=S3Options, description="Where the output bucket is, when `out` is s3://.")
    part_size_mb: int = Field(64, ge=5, le=5120, description="Multipart upload part size for s3:// output (S3's minimum is 5).")


class Job(Strict):
    """A curate job: sources in, shards + index + report out."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    out: str = Field(description="Output folder, or s3://bucket/prefix (shards and files are uploaded with multipart uploads).")
    seed: int = Field(0, ge=0, description="The run's seed: a sampling preset draws each caption from a generator seeded "
                      "by it and the sample's key, so a resumed run captions exactly as an uninterrupted one.")
    ray: RayConfig = Field(default_factory=RayConfig)
    sources: list[Source] = Field(min_length=1)
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    units: UnitsConfig = Field(default_factory=UnitsConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    caption: CaptionConfig
    hallucination: HallucinationConfig = Field(default_factory=HallucinationConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _remote_out_is_s3(self) -> Job:
        if "://" in self.out and not self.out.startswith("s3://"):
            raise ValueError(f"out: {self.out!r}: expected a local folder or s3://bucket/prefix")
        if self.out.startswith("s3://") and not self.out[5:].split("/")[0]:
            raise ValueError(f"out: {self.out!r}: no bucket name")
        return self

    @model_validator(mode="after")
    def _fallback_captioner_exists(self) -> Job:
        h, names = self.hallucination, [c.name for c in self.caption.captioners]
        if h.action == "fallback" and h.fallback_captioner not in names:
            raise ValueError(f"hallucination.fallback_captioner: {h.fallback_captioner!r} must name one of the captioners {names} "
                             "when hallucination.action is fallback")
        return self

    @model_validator(mode="after")
    def _percentile_needs_clip_alt(self) -> Job:
        if self.dedup.clip_alt_top_fraction is not None and not self.filters.alt_text.enabled:
            raise ValueError("dedup.clip_alt_top_fraction needs filters.alt_text.enabled (the clip_alt scores it ranks)")
        return self

    @model_validator(mode="after")
    def _semantic_needs_embeddings(self) -> Job:
        aes = self.filters.aesthetics
        if self.dedup.semantic.enabled and not (aes.enabled and aes.keep_embeddings):
            raise ValueError("dedup.semantic.enabled needs filters.aesthetics.enabled and filters.aesthetics.keep_embeddings")
        return self
