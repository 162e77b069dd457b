"""transformers backend: AutoModelForImageTextToText + AutoProcessor + the model's chat template."""

from __future__ import annotations

from PIL import Image

from captioners.base import CaptionResult, split_on_failure
from captioners.presets import generation_kwargs
from curate.devices import pick_device
from schemas.job import CaptionerConfig


class ModelNotFound(Exception):
    pass


def load_model(cfg: CaptionerConfig, device: str):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    dtype = {"auto": torch.bfloat16 if device == "cuda" else torch.float32, "float32": torch.float32,
             "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.dtype]
    try:
        processor = AutoProcessor.from_pretrained(cfg.model)
        model = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=dtype, attn_implementation=_attention(device))
    except OSError as exc:
        raise ModelNotFound(
            f"captioner {cfg.name!r}: cannot load model {cfg.model!r} ({exc}). Give a local folder with "
            "config.json, weights and processor files, or a Hugging Face repo id reachable from every node "
            "(set HF_HOME to a shared cache for offline clusters)."
        ) from None
    tok = getattr(processor, "tokenizer", None)
    if tok is not None:
        tok.padding_side = "left"  # decoder-only batched generation pads on the left
    return processor, model.to(device).eval()


def _attention(device: str) -> str:
    if device == "cuda":
        try:
            import flash_attn  # noqa: F401

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


class TransformersCaptioner:
    def __init__(self, cfg: CaptionerConfig):
        self.name = cfg.name
        self.cfg = cfg
        self.device = pick_device(cfg.num_gpus, f"captioner {cfg.name!r}")
        self.processor, self.model = load_model(cfg, self.device)
        self.gen = generation_kwargs(cfg.preset, cfg.generation)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": cfg.prompt}]}]
        self.prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def _generate(self, images: list[Image.Image]) -> list[CaptionResult]:
        import torch

        inputs = self.processor(images=images, text=[self.prompt] * len(images), return_tensors="pt", padding=True)
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs and self.model.dtype != torch.float32:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        try:
            with torch.inference_mode():
                out = self.model.generate(**inputs, **self.gen)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [CaptionResult(t) for t in texts]

    def caption(self, images: list[Image.Image], metas: list[dict]) -> list[CaptionResult]:
        return split_on_failure(self._generate, images)
