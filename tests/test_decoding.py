"""Decoding settings that mean one thing on every backend: presets, refusals, the requests each
backend is sent (vLLM's without vllm installed), seeds, finish reasons and retry waits. No model."""

from __future__ import annotations

import base64
import email.utils
import io
import math
import time

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from captioners import vllm_batch
from captioners.openai_api import backoff, request_body, retry_after
from captioners.postprocess import clean, trim_to_last_sentence
from captioners.presets import PARAMS, PRESETS, effective, refusal, row_seed
from captioners.seeded import SeededGumbel, uniforms
from schemas.job import CaptionerConfig

QWEN = "Qwen/Qwen2.5-VL-7B-Instruct"


def cfg(**kw) -> CaptionerConfig:
    return CaptionerConfig(name="dense", model=QWEN, **kw)


def test_every_preset_states_every_parameter():
    assert {name: set(p) for name, p in PRESETS.items()} == {name: set(PARAMS) for name in PRESETS}
    assert PRESETS["share-captioner"] == {"max_new_tokens": 500, "min_new_tokens": 1, "do_sample": True, "temperature": 1.0,
                                          "top_p": 1.0, "top_k": 50, "num_beams": 3, "repetition_penalty": 1.5,
                                          "length_penalty": 1.0}
    assert effective("greedy", {"max_new_tokens": 64, "top_k": None})["max_new_tokens"] == 64


@pytest.mark.parametrize(("backend", "preset", "overrides", "refused"), [
    ("transformers", "share-captioner", {}, []),
    ("vllm", "share-captioner", {}, ["num_beams=3", "repetition_penalty=1.5"]),
    ("openai", "share-captioner", {}, ["num_beams=3", "repetition_penalty=1.5", "top_k=50", "min_new_tokens=1"]),
    ("vllm", "greedy", {}, []),
    ("openai", "sample", {}, []),
    ("openai", "sample", {"top_k": 40}, ["top_k=40"]),
    ("vllm", "share-captioner", {"num_beams": 1, "repetition_penalty": 1.0}, []),
    ("transformers", "greedy", {"temperature": 0.7}, ["temperature=0.7"]),
    ("vllm", "greedy", {"min_new_tokens": 400}, ["min_new_tokens=400"]),
])
def test_each_backend_honours_a_preset_whole_or_refuses_it(backend, preset, overrides, refused):
    line = refusal(backend, preset, overrides)
    if not refused:
        assert line is None
        return
    assert "\n" not in line and line.startswith(f"backend {backend} cannot honour preset {preset!r} with ")
    named = [part.split(" (")[0] for part in line.split(" with ", 1)[1].split(": change")[0].split("; ")]
    assert named == refused


def test_a_refused_setting_fails_the_job_file_with_one_line_naming_the_field(tmp_path):
    from curate.jobs import JobError, load_job

    job = tmp_path / "job.yaml"
    job.write_text(f"name: t\nout: {tmp_path / 'out'}\nsources: [{{type: folder, path: {tmp_path}}}]\n"
                   f"caption: {{captioners: [{{name: dense, backend: vllm, model: {QWEN}, num_gpus: 1}}], tokenizer: t5}}\n")
    with pytest.raises(JobError) as err:
        load_job(job)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{job}: 1 problem(s) in the job file:"
    assert len(lines) == 2 and lines[1].startswith("  caption.captioners.0: Value error, backend vllm cannot honour preset "
                                                   "'share-captioner' with num_beams=3")


@pytest.mark.parametrize(("kw", "message"), [
    ({"num_gpus": 0}, "backend vllm runs on GPUs"),
    ({"num_gpus": 1.5}, "num_gpus=1.5: backend vllm needs a whole number"),
    ({"num_gpus": 1, "vllm": {"max_model_len": 1024}}, "vllm.max_model_len=1024 is below the longest request"),
])
def test_vllm_settings_it_cannot_run_are_refused(kw, message):
    with pytest.raises(ValidationError, match=message):
        cfg(backend="vllm", preset="greedy", **kw)


def test_unknown_generation_settings_are_refused():
    with pytest.raises(ValidationError, match="generation.no_repeat_ngram_size"):
        cfg(generation={"no_repeat_ngram_size": 3})


def test_row_seed_depends_on_the_run_seed_and_the_key_only():
    seeds = {row_seed(s, k) for s in (0, 1) for k in ("a", "b")}
    assert len(seeds) == 4 and all(0 <= s < 2**63 for s in seeds)
    assert row_seed(0, "a") == row_seed(0, "a")


def image() -> Image.Image:
    return Image.fromarray((np.random.default_rng(1).random((40, 60, 3)) * 255).astype(np.uint8))


def test_openai_requests_carry_only_standard_parameters_and_a_jpeg():
    greedy = request_body(cfg(backend="openai", preset="greedy"), image(), "k1", seed=3)
    assert set(greedy) == {"model", "messages", "max_tokens", "temperature"}
    assert (greedy["max_tokens"], greedy["temperature"]) == (300, 0.0)
    url = greedy["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).format == "JPEG"
    sampled = request_body(cfg(backend="openai", preset="sample", generation={"top_p": 0.9}), image(), "k1", seed=3)
    assert {k: sampled[k] for k in ("temperature", "top_p", "seed")} == {"temperature": 1.0, "top_p": 0.9, "seed": row_seed(3, "k1")}
    assert set(sampled) == {"model", "messages", "max_tokens", "temperature", "top_p", "seed"}


def test_vllm_sampling_params_map_the_preset_whole():
    greedy = vllm_batch.sampling_params(cfg(backend="vllm", preset="greedy", num_gpus=1), 0, "k")
    assert greedy == {"max_tokens": 300, "min_tokens": 0, "repetition_penalty": 1.0, "skip_special_tokens": True,
                      "detokenize": True, "temperature": 0.0}
    sampled = vllm_batch.sampling_params(cfg(backend="vllm", preset="sample", num_gpus=1, generation={"top_k": 20}), 5, "k")
    assert sampled == {"max_tokens": 300, "min_tokens": 0, "repetition_penalty": 1.0, "skip_special_tokens": True,
                       "detokenize": True, "temperature": 1.0, "top_p": 1.0, "seed": row_seed(5, "k"), "top_k": 20}


def test_vllm_engine_settings_come_from_the_job():
    one = vllm_batch.engine_kwargs(cfg(backend="vllm", preset="greedy", num_gpus=1, vllm={"max_num_seqs": 512}))
    assert one == {"tensor_parallel_size": 1, "pipeline_parallel_size": 1, "max_model_len": 4096, "max_num_seqs": 512,
                   "gpu_memory_utilization": 0.9, "limit_mm_per_prompt": {"image": 1, "video": 0},
                   "mm_processor_kwargs": {"min_pixels": 256 * 784, "max_pixels": 1280 * 784}, "dtype": "auto",
                   "enable_prefix_caching": True, "generation_config": "vllm", "trust_remote_code": False}
    assert vllm_batch.engine_kwargs(cfg(backend="vllm", preset="greedy", num_gpus=4))["tensor_parallel_size"] == 4
    half = vllm_batch.engine_kwargs(cfg(backend="vllm", preset="greedy", num_gpus=0.5))
    assert half["gpu_memory_utilization"] == 0.45 and half["tensor_parallel_size"] == 1


def test_ray_data_llm_accepts_the_processor_settings(ray_cluster, tmp_path):
    """Ray's own config model validates them, and the processor it builds places the engine
    as the job asked (built without vllm: nothing runs)."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from curate.tinymodels import build_tiny_qwen25_vl

    model = str(build_tiny_qwen25_vl(tmp_path / "qwen"))
    engines = {}
    for gpus in (1, 0.5, 2):
        c = CaptionerConfig(name="dense", model=model, backend="vllm", preset="greedy", num_gpus=gpus, batch_size=32)
        config = vLLMEngineProcessorConfig(**vllm_batch.processor_config(c))
        assert config.max_concurrent_batches == math.ceil(1.1 * 256 / 32) + 1  # 256 requests queued per engine
        stages = build_processor(config).stages
        assert list(stages) == ["PrepareMultimodalStage", "ChatTemplateStage", "vLLMEngineStage"]
        engine = stages["vLLMEngineStage"].map_batches_kwargs
        engines[gpus] = (engine["num_gpus"], engine.get("ray_remote_args_fn") is not None,
                         stages["vLLMEngineStage"].fn_constructor_kwargs["engine_kwargs"]["tensor_parallel_size"])
    # one GPU; half a GPU through a placement bundle; two GPUs as vLLM's own tensor-parallel workers
    assert engines == {1: (1, False, 1), 0.5: (0.5, False, 1), 2: (0, True, 2)}
    import ray.data

    planned = vllm_batch.apply(ray.data.from_items([{"key": "k"}]), c, seed=0, drop_pixels=True)  # lazy: nothing runs
    plan = str(planned)
    stages = ["_postprocess", "vLLMEngineStageUDF", "ChatTemplateUDF", "PrepareMultimodalUDF", "_preprocess"]
    assert all(stage in plan for stage in stages) and sorted(stages, key=plan.index) == stages


def test_vllm_rows_in_and_out():
    c = cfg(backend="vllm", preset="greedy", num_gpus=1, generation={"max_new_tokens": 8})
    row = {"unit": "u", "key": "k", "alt": None, "prep_error": "", "pixels": bytes(30 * 40 * 3), "pixels_shape": [30, 40],
           "raw_short": "x"}
    req = vllm_batch.request_row(row, c, seed=0)
    content = req["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image_url", "text"] and content[1]["text"] == c.prompt
    assert content[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert req["sampling_params"]["max_tokens"] == 8
    engine_out = {**req, "generated_text": "A red car. It", "num_generated_tokens": 8, "num_input_tokens": 300}
    out = vllm_batch.result_row(engine_out, c)
    assert set(out) == {"unit", "key", "alt", "pixels", "pixels_shape", "prep_error", "raw_short", "raw_dense", "err_dense", "finish_dense"}
    assert (out["raw_dense"], out["err_dense"], out["finish_dense"]) == ("A red car. It", "", "length")
    stopped = vllm_batch.result_row({**engine_out, "num_generated_tokens": 5}, c)
    assert stopped["finish_dense"] == "stop"
    failed = vllm_batch.result_row({**engine_out, vllm_batch.ERROR_COLUMN: "ValueError: bad image"}, c)
    assert (failed["raw_dense"], failed["err_dense"], failed["finish_dense"]) == ("", "caption: ValueError: bad image", "")
    unread = vllm_batch.result_row({**engine_out, "prep_error": "OSError: gone"}, c)
    assert unread["err_dense"] == "OSError: gone"


def test_a_vllm_job_without_vllm_fails_preflight_with_one_line(tmp_path, tiny_vlm):
    from tests.conftest import cli

    if vllm_batch.available():
        pytest.skip("vllm is installed here")
    job = tmp_path / "job.yaml"
    job.write_text(f"name: t\nout: {tmp_path / 'out'}\nsources: [{{type: folder, path: {tmp_path}}}]\n"
                   f"caption: {{captioners: [{{name: dense, backend: vllm, model: {QWEN}, preset: greedy, num_gpus: 1}}], "
                   f"tokenizer: {tiny_vlm.parent / 'tiny-t5-tokenizer'}}}\n")
    res = cli("run", str(job))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: {job}: caption.captioners.0.backend: vllm is not installed here "
                                               "(captioner 'dense'): install curate's vllm extra on every node (vllm and "
                                               "Ray Data LLM), or use backend transformers"]
    assert not (tmp_path / "out").exists()


def test_retry_waits_for_retry_after_else_a_jittered_doubling_backoff():
    assert retry_after(httpx.Headers({"Retry-After": "7"})) == 7.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after(httpx.Headers({"Retry-After": when})) <= 30
    assert retry_after(httpx.Headers({"Retry-After": "soon"})) is None and retry_after(httpx.Headers()) is None
    assert backoff(3, 1.0, 60, asked=7.0) == 7.0 and backoff(0, 1.0, 5, asked=90.0) == 5
    waits = [backoff(2, 1.0, 60, None) for _ in range(200)]
    assert 2.0 <= min(waits) < 2.5 and 5.5 < max(waits) <= 6.0  # 4 s +-50%
    assert backoff(10, 1.0, 60, None) == 60


def test_a_caption_cut_by_the_token_limit_ends_at_its_last_full_sentence():
    words = len
    assert trim_to_last_sentence('A red car. It has "chrome." The wheel') == 'A red car. It has "chrome."'
    assert trim_to_last_sentence("Pi is 3.14 and the") == ""
    cut = clean("A red car. It has a", lambda s: words(s.split()), 300, cut_by_limit=True)
    assert (cut.text, cut.changes) == ("A red car.", ["length_trim"])
    assert clean("A red car. It has a", lambda s: words(s.split()), 300).text == "A red car. It has a"
    unended = clean("A red car with a", lambda s: words(s.split()), 300, cut_by_limit=True)
    assert (unended.text, unended.changes) == ("A red car with a", [])  # nothing ended: kept, still marked length


def test_seeded_gumbel_draws_exact_samples_independent_of_the_batch():
    scores = torch.log(torch.tensor([0.5, 0.25, 0.15, 0.1])).repeat(20000, 1)
    noisy = SeededGumbel([row_seed(0, str(i)) for i in range(20000)], prompt_len=0)(torch.zeros((20000, 1), dtype=torch.long), scores)
    freq = np.bincount(noisy.argmax(dim=1).numpy(), minlength=4) / 20000
    assert np.abs(freq - [0.5, 0.25, 0.15, 0.1]).max() < 0.012
    alone = uniforms(torch.tensor([row_seed(0, "b")]), 3, 50)
    batched = uniforms(torch.tensor([row_seed(0, "a"), row_seed(0, "b")]), 3, 50)
    assert torch.equal(alone[0], batched[1]) and not torch.equal(batched[0], batched[1])
    assert float(batched.min()) > 0 and float(batched.max()) < 1
