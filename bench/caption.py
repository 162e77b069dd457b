"""Captioning throughput in the shipped configuration's shape, against a same-run baseline.

Shape: a Qwen2.5-VL (random weights) on 1344x756 images (1,296 px tokens before the processor's
max_pixels bound), 300 new tokens forced per image (min_new_tokens = max_new_tokens).
- baseline: a plain transformers loop, `model.generate(**inputs, **settings)` with ShareGPT4V's
  3-beam settings (num_beams 3, do_sample, temperature 1, repetition_penalty 1.5), batch 16;
- transformers: curate's caption actor in Ray Data, the throughput preset (greedy), bigger batches;
- vllm: curate's vLLM path (Ray Data LLM stages), when vllm and a GPU are present.

Without a GPU: a tiny Qwen2.5-VL on CPU through the same code paths (batch 8 for all).
With a GPU: the Qwen2.5-VL-7B shapes in bf16. Record GPU numbers, with the device name, in
bench/RESULTS.md. Actor and vLLM figures are steady state: the difference of an N- and a
3N-image run, so start-up and model loading cancel.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

NEW_TOKENS = 300
SIDE = (1344, 756)
FORCED = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS}
BASELINE = {"num_beams": 3, "do_sample": True, "temperature": 1.0, "repetition_penalty": 1.5, "length_penalty": 1.0}


def images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((SIDE[1], SIDE[0], 3)) * 255).astype(np.uint8)) for _ in range(n)]


def baseline_loop(model_dir: Path, imgs: list[Image.Image], batch: int, device: str) -> float:
    """Images/s of the plain transformers loop with the 3-beam settings (what the shipped job ran)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    processor = AutoProcessor.from_pretrained(model_dir)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Analyze the image in a "
                                                                                         "comprehensive and detailed manner."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)

    def run(chunk: list[Image.Image]) -> None:
        inputs = processor(images=chunk, text=[prompt] * len(chunk), return_tensors="pt", padding=True).to(device)
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        with torch.inference_mode():
            model.generate(**inputs, **BASELINE, **FORCED)

    run(imgs[:1])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(imgs), batch):
        run(imgs[i:i + batch])
    rate = len(imgs) / (time.perf_counter() - t)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()  # the actors that follow run in other processes on the same GPU
    return rate


def steady_rate(build, imgs: list[Image.Image]) -> float:
    """Images/s of a Ray Data pipeline built by `build(ds)`: (3N - N) images / (t(3N) - t(N))."""
    import ray.data

    from curate.phases.caption import prepared_row
    from schemas.record import PREPARED, rows_to_table

    def seconds(count: int) -> float:
        rows = rows_to_table([prepared_row("u", f"k{i}", None, imgs[i % len(imgs)]) for i in range(count)], PREPARED)
        ds = build(ray.data.from_arrow(rows))
        t = time.perf_counter()
        ds.materialize()
        return time.perf_counter() - t

    n = len(imgs)
    small, large = seconds(n), seconds(3 * n)
    return 2 * n / (large - small)


def curate_rate(model_dir: Path, imgs: list[Image.Image], backend: str, batch: int, num_gpus: float) -> float:
    from curate.phases.caption import add_captioner
    from schemas.job import CaptionerConfig, Job

    cfg = CaptionerConfig(name="bench", backend=backend, model=str(model_dir), preset="greedy", generation=FORCED,
                          batch_size=batch, num_gpus=num_gpus, num_cpus=1)
    job = Job.model_validate({"name": "bench", "out": "unused", "sources": [{"type": "folder", "path": "unused"}],
                              "caption": {"captioners": [cfg.model_dump()], "tokenizer": str(model_dir)}})
    return steady_rate(lambda ds: add_captioner(ds, cfg, job, drop_pixels=True, pools=1), imgs)


def main() -> None:
    import torch

    from bench.common import table
    from captioners.vllm_batch import available as vllm_available
    from curate.engine import init_ray
    from curate.tinymodels import QWEN25_VL_7B, build_tiny_qwen25_vl

    gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        if gpu:
            device, what = "cuda", f"Qwen2.5-VL-7B-shaped (random weights, bf16) on {torch.cuda.get_device_name(0)}"
            model = build_tiny_qwen25_vl(Path(tmp) / "qwen7b", shape=QWEN25_VL_7B, device="cuda", dtype="bfloat16")
            n, base_batch = int(os.environ.get("BENCH_CAPTION_N", "128")), 16
            batch = int(os.environ.get("BENCH_CAPTION_BATCH", "128"))
        else:
            device, what = "cpu", "tiny Qwen2.5-VL (random weights) on CPU"
            model = build_tiny_qwen25_vl(Path(tmp) / "tiny")
            n, base_batch, batch = int(os.environ.get("BENCH_CAPTION_N", "8")), 8, 8
            torch.set_num_threads(1)  # the CPU actor gets one CPU: the same for the loop
        imgs = images(n)
        import transformers

        print(f"device: {what}; torch {torch.__version__}, transformers {transformers.__version__}", flush=True)
        base = baseline_loop(model, imgs[:base_batch], base_batch, device)  # one full batch (52 s on an H100)
        print(f"baseline: {base:.3f} images/s", flush=True)
        init_ray(None, None, 1800)
        rows = [(f"images/s: transformers (greedy, batch {batch}) vs baseline",
                 curate_rate(model, imgs, "transformers", batch, 1 if gpu else 0), base)]
        if gpu and vllm_available():
            rows.append(("images/s: vLLM (greedy, Ray Data LLM) vs baseline", curate_rate(model, imgs, "vllm", 64, 1), base))
        print(f"{what}, {SIDE[0]}x{SIDE[1]} images, {NEW_TOKENS} new tokens forced; "
              f"baseline: plain generate loop, 3-beam sampling, batch {base_batch}")
        table(rows + [(r[0].replace("images/s", "tokens/s"), r[1] * NEW_TOKENS, r[2] * NEW_TOKENS) for r in rows], "/s")
        if not gpu:
            print("(no GPU visible: the 7B-shaped transformers and vLLM variants are skipped; see bench/RESULTS.md)")
        elif not vllm_available():
            print("(vllm is not installed: the vLLM variant is skipped; pip install 'curate[vllm]')")
        import ray

        ray.shutdown()


if __name__ == "__main__":
    main()
