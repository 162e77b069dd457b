"""Captioning throughput: the batched Ray actor pipeline vs a one-image-at-a-time generate loop,
both generating a fixed 300 new tokens per image, in one run.

Always: the tiny random VLM on CPU. With a GPU: a realistic-size LLaVA-style architecture
(CLIP ViT-L/14-336 + a 7B Llama decoder) built from its config with random weights, in bf16.
Record GPU numbers, with the device name, in bench/RESULTS.md.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

NEW_TOKENS = 300


def images(n: int, side: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)) for _ in range(n)]


def build_realistic_vlm(out: Path) -> Path:
    """LLaVA-1.5-7B shapes from configs (random weights); the tiny tokenizer padded to 32000 ids."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    from curate.tinymodels import build_tiny_vlm

    build_tiny_vlm(out, image_size=336)  # tokenizer, processor, chat template at 336 px
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                       image_size=336, patch_size=14, projection_dim=768),
        text_config=LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                                bos_token_id=1, eos_token_id=2, pad_token_id=3),
        image_token_index=4, vision_feature_layer=-2, vision_feature_select_strategy="default",
    )
    with torch.device("cuda"):
        model = LlavaForConditionalGeneration(cfg).to(torch.bfloat16)
    model.save_pretrained(out)
    return out


def measure(model_dir: Path, n: int, batch: int, side: int, num_gpus: float) -> tuple[float, float]:
    """(one-by-one images/s, batched-actor images/s)."""
    import ray
    import torch

    from captioners.hf import TransformersCaptioner
    from curate.engine import init_ray
    from curate.phases.caption import CaptionActor
    from schemas.job import CaptionerConfig

    cfg = CaptionerConfig(name="bench", model=str(model_dir), preset="greedy", num_gpus=num_gpus, batch_size=batch,
                          generation={"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS})
    imgs = images(n, side)
    if not num_gpus:
        torch.set_num_threads(1)  # the CPU actor gets one CPU (Ray sets its thread count): same for the loop
    captioner = TransformersCaptioner(cfg)
    captioner.caption(imgs[:1], [{}])  # warm-up
    t = time.perf_counter()
    for im in imgs:
        captioner.caption([im], [{}])
    one_by_one = n / (time.perf_counter() - t)
    del captioner

    init_ray(None, None, 600)
    import ray.data

    def pipeline_seconds(count: int) -> float:
        rows = [{"unit": "u", "key": str(i), "alt": None, "prep_error": "", "pixels": np.asarray(imgs[i % n])} for i in range(count)]
        ds = ray.data.from_items(rows).map_batches(
            CaptionActor, fn_constructor_kwargs={"cfg_json": cfg.model_dump_json(), "drop_pixels": True},
            batch_size=batch, batch_format="numpy", num_gpus=num_gpus, num_cpus=1, compute=ray.data.ActorPoolStrategy(size=1))
        t = time.perf_counter()
        ds.materialize()
        return time.perf_counter() - t

    # each run starts its actor (process + model load): the difference of two runs is steady-state throughput
    small, large = pipeline_seconds(n), pipeline_seconds(3 * n)
    batched = 2 * n / (large - small)
    ray.shutdown()
    return one_by_one, batched


def main() -> None:
    import torch

    from bench.common import table

    with tempfile.TemporaryDirectory() as tmp:
        from curate.tinymodels import build_tiny_vlm

        tiny = build_tiny_vlm(Path(tmp) / "tiny")
        n = int(os.environ.get("BENCH_CAPTION_N", "16"))
        one, batched = measure(tiny, n, batch=8, side=64, num_gpus=0)
        print(f"tiny VLM on CPU, {n} images, batch 8, {NEW_TOKENS} new tokens each")
        table([("images/s: batched actor vs one-by-one", batched, one),
               ("tokens/s: batched actor vs one-by-one", batched * NEW_TOKENS, one * NEW_TOKENS)], "/s")
        if torch.cuda.is_available():
            device = torch.cuda.get_device_name(0)
            big = build_realistic_vlm(Path(tmp) / "llava7b")
            one, batched = measure(big, 64, batch=16, side=336, num_gpus=1)
            print(f"\nLLaVA-1.5-7B-shaped VLM (random weights, bf16) on {device}, 64 images, batch 16, {NEW_TOKENS} new tokens")
            table([("images/s: batched actor vs one-by-one", batched, one),
                   ("tokens/s: batched actor vs one-by-one", batched * NEW_TOKENS, one * NEW_TOKENS)], "/s")
        else:
            print("\n(no GPU visible: the realistic-size GPU variant is skipped; see bench/RESULTS.md)")


if __name__ == "__main__":
    main()
