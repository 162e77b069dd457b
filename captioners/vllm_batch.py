"""vLLM backend through Ray Data's batch-LLM engine (`ray.data.llm`; needs curate's `vllm` extra).

Ray runs vLLM's async engine in an actor pool and keeps `max_num_seqs` requests in flight per
engine (continuous batching), where one `LLM.chat` call per Ray batch would cap them at the batch
size. This module holds the pure parts, tested without vllm: the engine and processor settings
taken from the job, and the two row functions around the engine (request in, caption columns
out). `apply` wires them into a dataset with `build_processor`.

Settings: tensor parallel size = num_gpus (whole numbers; a fraction shares one GPU through a
placement bundle and scales gpu_memory_utilization), max_model_len and max_num_seqs from
`vllm:`, one image and no video per prompt, the processor's pixel limits, and
`generation_config: vllm` so the model's shipped decoding defaults never apply.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
from PIL import Image

from captioners.base import FINISH_LENGTH, FINISH_STOP
from captioners.openai_api import data_url
from captioners.presets import effective, row_seed
from schemas.job import CaptionerConfig

ERROR_COLUMN = "__inference_error__"  # Ray's per-row error with should_continue_on_error
KEEP = ("unit", "key", "alt", "pixels", "pixels_shape", "prep_error", "embedding")  # caption-phase columns carried past the engine


def available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def missing_line(index: int, cfg: CaptionerConfig) -> str:
    return (f"caption.captioners.{index}.backend: vllm is not installed here (captioner {cfg.name!r}): install "
            "curate's vllm extra on every node (vllm and Ray Data LLM), or use backend transformers")


def engine_kwargs(cfg: CaptionerConfig) -> dict:
    """vLLM engine arguments from the job."""
    v = cfg.vllm
    share = min(cfg.num_gpus, 1.0)
    return {
        "tensor_parallel_size": max(int(cfg.num_gpus), 1),
        "pipeline_parallel_size": 1,
        "max_model_len": v.max_model_len,
        "max_num_seqs": v.max_num_seqs,
        "gpu_memory_utilization": v.gpu_memory_utilization or round(0.9 * share, 4),
        "limit_mm_per_prompt": {"image": 1, "video": 0},
        "mm_processor_kwargs": {"min_pixels": cfg.min_pixels, "max_pixels": cfg.max_pixels},
        "dtype": cfg.dtype,
        "enable_prefix_caching": v.enable_prefix_caching,
        "generation_config": "vllm",  # ignore the model's generation_config.json
        "trust_remote_code": False,
    }


def processor_config(cfg: CaptionerConfig) -> dict:
    """Keyword arguments of `ray.data.llm.vLLMEngineProcessorConfig`."""
    v = cfg.vllm
    batches = v.max_concurrent_batches or math.ceil(1.1 * v.max_num_seqs / cfg.batch_size) + 1
    out = {
        "model_source": cfg.model,
        "engine_kwargs": engine_kwargs(cfg),
        "batch_size": cfg.batch_size,
        "concurrency": cfg.concurrency,
        "max_concurrent_batches": batches,
        "prepare_multimodal_stage": {"enabled": True},
        "chat_template_stage": {"enabled": True},
        "tokenize_stage": {"enabled": False},    # vLLM tokenizes the prompt with its image placeholders
        "detokenize_stage": {"enabled": False},  # and detokenizes the output itself
        "should_continue_on_error": True,        # a bad image fails its row, not the run
        "log_engine_metrics": False,
    }
    if cfg.num_gpus < 1:  # a fraction of one GPU: Ray's default bundle would take a whole one
        out["placement_group_config"] = {"bundles": [{"GPU": cfg.num_gpus, "CPU": cfg.num_cpus}]}
    return out


def sampling_params(cfg: CaptionerConfig, seed: int, key: str) -> dict:
    """vLLM SamplingParams for one sample: the preset mapped whole (settings vLLM cannot honour
    were refused at validation); a sampling preset gets the sample's own seed."""
    gen = effective(cfg.preset, cfg.generation.model_dump())
    params = {"max_tokens": int(gen["max_new_tokens"]), "min_tokens": int(gen["min_new_tokens"]),
              "repetition_penalty": 1.0, "skip_special_tokens": True, "detokenize": True}
    if gen["do_sample"]:
        params.update(temperature=float(gen["temperature"]), top_p=float(gen["top_p"]), seed=row_seed(seed, key))
        if gen["top_k"]:
            params["top_k"] = int(gen["top_k"])
    else:
        params["temperature"] = 0.0  # greedy
    return params


def request_row(row: dict, cfg: CaptionerConfig, seed: int) -> dict:
    """Preprocess: a caption-phase row -> the same row plus the chat request for the engine
    (one image as a JPEG data URL, then the prompt); unreadable rows get a blank image and keep
    their prep_error."""
    shape = row.get("pixels_shape")
    image = (Image.frombytes("RGB", (int(shape[1]), int(shape[0])), row["pixels"]) if row.get("pixels") and shape is not None
             else Image.fromarray(np.zeros((28, 28, 3), np.uint8)))
    return {**row,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": data_url(image, "jpeg", cfg.api.jpeg_quality)}},
                {"type": "text", "text": cfg.prompt}]}],
            "sampling_params": sampling_params(cfg, seed, str(row["key"]))}


def result_row(row: dict, cfg: CaptionerConfig) -> dict:
    """Postprocess: the engine's output -> raw_/err_/finish_<name> columns, the request columns
    dropped. Ray's output has no finish reason: a caption that used all max_tokens was cut."""
    name, max_tokens = cfg.name, effective(cfg.preset, cfg.generation.model_dump())["max_new_tokens"]
    out = {k: v for k, v in row.items() if k in KEEP or k.startswith(("raw_", "err_", "finish_"))}
    error, prep = str(row.get(ERROR_COLUMN) or ""), str(row.get("prep_error") or "")
    if row.get(f"raw_{name}") is not None and not row.get(f"err_{name}"):
        pass   # reused from the previous caption run (its settings did not change)
    elif prep or error:
        out.update({f"raw_{name}": "", f"err_{name}": prep or f"caption: {error[:500]}", f"finish_{name}": ""})
    else:
        cut = int(row.get("num_generated_tokens") or 0) >= max_tokens
        out.update({f"raw_{name}": str(row.get("generated_text") or ""), f"err_{name}": "",
                    f"finish_{name}": FINISH_LENGTH if cut else FINISH_STOP})
    return out


def apply(ds, cfg: CaptionerConfig, seed: int, drop_pixels: bool):
    """The dataset with this captioner's columns added, through Ray Data's vLLM processor."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    def post(row: dict) -> dict:
        out = result_row(row, cfg)
        if drop_pixels:
            out.pop("pixels", None)
        return out

    processor = build_processor(vLLMEngineProcessorConfig(**processor_config(cfg)),
                                preprocess=lambda row: request_row(row, cfg, seed), postprocess=post)
    return processor(ds)
