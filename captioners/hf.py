"""transformers backend: AutoModelForImageTextToText + AutoProcessor + the model's chat template.

Decoding is the preset's, whole: the loaded model's `generation_config` keeps only its special
token ids, so no shipped default (Qwen2.5-VL ships top_k=1, top_p=0.001, temperature 0.1,
repetition_penalty 1.05) leaks in. The repetition penalty counts generated tokens only.
Sampling is reproducible per sample, whatever the batch:
- one beam: greedy decoding over scores plus Gumbel noise from (seed, key, step) (`seeded.py`),
  an exact sample from the preset's distribution, batched;
- beam sampling (share-captioner): transformers draws the beams from torch's global generator,
  which a batch would share, so each row generates alone after seeding it from (seed, key).
  Exact ShareGPT4V decoding at batch size 1: the reproduction preset, not the throughput one.
"""

from __future__ import annotations

import gc

from PIL import Image

from captioners.base import FINISH_LENGTH, FINISH_STOP, CaptionResult, split_on_failure
from captioners.presets import effective, row_seed
from curate.devices import pick_device
from schemas.job import CaptionerConfig


class ModelNotFound(Exception):
    pass


def placement(num_gpus: float, visible_gpus: int) -> dict:
    """Where the model goes: more than one GPU per actor spreads its layers over all of them
    (Ray makes exactly the actor's GPUs visible); otherwise the one device."""
    if num_gpus > 1 and visible_gpus > 1:
        return {"device_map": "auto"}
    return {}


def load_model(cfg: CaptionerConfig, device: str):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

    dtype = {"auto": torch.bfloat16 if device == "cuda" else torch.float32, "float32": torch.float32,
             "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.dtype]
    where = placement(cfg.num_gpus, torch.cuda.device_count() if device == "cuda" else 0)
    if where and importlib_missing("accelerate"):
        raise ModelNotFound(f"captioner {cfg.name!r}: num_gpus={cfg.num_gpus} spreads the model over several GPUs, "
                            "which needs the accelerate package (pip install accelerate)")
    try:
        processor = AutoProcessor.from_pretrained(cfg.model)
        model = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=dtype, attn_implementation=_attention(device),
                                                            **where)
    except OSError as exc:
        raise ModelNotFound(
            f"captioner {cfg.name!r}: cannot load model {cfg.model!r} ({exc}). Give a local folder with "
            "config.json, weights and processor files, or a Hugging Face repo id reachable from every node "
            "(set HF_HOME to a shared cache for offline clusters)."
        ) from None
    tok = getattr(processor, "tokenizer", None)
    if tok is not None:
        tok.padding_side = "left"  # decoder-only batched generation pads on the left
    own = model.generation_config
    model.generation_config = GenerationConfig(  # token ids only: decoding comes from the preset
        bos_token_id=own.bos_token_id, eos_token_id=own.eos_token_id,
        pad_token_id=own.pad_token_id if own.pad_token_id is not None else getattr(tok, "pad_token_id", None))
    if not where:
        model = model.to(device)
    return processor, model.eval()


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


def _attention(device: str) -> str:
    if device == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def pixel_limits(processor, min_pixels: int, max_pixels: int) -> dict:
    """Processor call kwargs bounding the image tokens of dynamic-resolution processors (the
    Qwen2-VL family sizes images by pixel count); fixed-size processors resize on their own."""
    if type(processor.image_processor).__name__.startswith("Qwen2VLImageProcessor"):
        return {"size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}}
    return {}


class TransformersCaptioner:
    def __init__(self, cfg: CaptionerConfig, seed: int = 0):
        from transformers import GenerationConfig

        self.name, self.cfg, self.seed = cfg.name, cfg, seed
        self.device = pick_device(cfg.num_gpus, f"captioner {cfg.name!r}")
        self.processor, self.model = load_model(cfg, self.device)
        self.gen = effective(cfg.preset, cfg.generation.model_dump())
        g = self.gen
        self.beam_sampling = g["do_sample"] and g["num_beams"] > 1
        self.generation_config = GenerationConfig(
            max_new_tokens=g["max_new_tokens"], min_new_tokens=g["min_new_tokens"] or None, num_beams=g["num_beams"],
            length_penalty=g["length_penalty"], do_sample=self.beam_sampling,
            **({"temperature": g["temperature"], "top_p": g["top_p"], "top_k": g["top_k"]} if self.beam_sampling else {}),
            **{k: getattr(self.model.generation_config, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")})
        eos = self.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos])
        self.processor_kwargs = pixel_limits(self.processor, cfg.min_pixels, cfg.max_pixels)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": cfg.prompt}]}]
        self.prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def logits_processors(self, prompt_len: int, keys: list[str]):
        """The preset's penalty and (for single-beam sampling) its warpers and seeded draw, in
        transformers' own order: penalty, temperature, top-k, top-p."""
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        from captioners.seeded import SeededGumbel

        g, out = self.gen, LogitsProcessorList()
        if g["repetition_penalty"] != 1.0:
            out.append(RepetitionPenaltyLogitsProcessor(float(g["repetition_penalty"]), prompt_ignore_length=prompt_len))
        if g["do_sample"] and not self.beam_sampling:
            if g["temperature"] != 1.0:
                out.append(TemperatureLogitsWarper(float(g["temperature"])))
            if g["top_k"]:
                out.append(TopKLogitsWarper(int(g["top_k"])))
            if g["top_p"] < 1.0:
                out.append(TopPLogitsWarper(float(g["top_p"])))
            out.append(SeededGumbel([row_seed(self.seed, k) for k in keys], prompt_len))
        return out

    def _generate(self, items: list[tuple[Image.Image, dict]]) -> list[CaptionResult]:
        import torch

        images, keys = [im for im, _ in items], [str(m.get("key", "")) for _, m in items]
        inputs = self.processor(images=images, text=[self.prompt] * len(images), return_tensors="pt", padding=True,
                                **self.processor_kwargs).to(self.model.device)
        if "pixel_values" in inputs and self.model.dtype != torch.float32:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        prompt_len = inputs["input_ids"].shape[1]
        if self.beam_sampling:  # one row at a time (see the module docstring)
            torch.manual_seed(row_seed(self.seed, keys[0]))
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=self.generation_config,
                                      logits_processor=self.logits_processors(prompt_len, keys))
        new_tokens = out[:, prompt_len:]
        texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        finished = [bool(self.eos & set(row)) for row in new_tokens.tolist()]
        return [CaptionResult(t, finish=FINISH_STOP if f else FINISH_LENGTH) for t, f in zip(texts, finished)]

    def _free(self) -> None:
        """Return a failed attempt's memory before the retry (its tensors died with the exception)."""
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def caption(self, images: list[Image.Image], metas: list[dict]) -> list[CaptionResult]:
        items = list(zip(images, metas))
        if self.beam_sampling:
            return [r for item in items for r in split_on_failure(self._generate, [item], self._free)]
        return split_on_failure(self._generate, items, self._free)
