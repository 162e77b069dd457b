"""The transformers captioner on a tiny random VLM saved to disk and loaded with from_pretrained."""

import numpy as np
import pytest
from PIL import Image

from captioners.base import CaptionResult, split_on_failure
from captioners.hf import ModelNotFound, TransformersCaptioner
from schemas.job import CaptionerConfig


def images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray((rng.random((48 + 8 * i, 96 - 4 * i, 3)) * 255).astype(np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def captioner(tiny_vlm):
    cfg = CaptionerConfig(name="dense", model=str(tiny_vlm), preset="greedy", generation={"max_new_tokens": 12}, batch_size=4)
    return TransformersCaptioner(cfg)


def test_batched_equals_one_by_one_in_input_order(captioner):
    imgs = images(5)
    batched = captioner.caption(imgs, [{}] * 5)
    single = [captioner.caption([im], [{}])[0] for im in imgs]
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(r.text and r.error is None for r in batched)
    assert len({r.text for r in batched}) > 1, "different images should give different (noise) captions"


def test_prompt_uses_the_models_chat_template(captioner):
    assert captioner.prompt.startswith("user: <image>Analyze the image in a comprehensive and detailed manner.")
    assert captioner.prompt.rstrip().endswith("assistant:")


def test_failing_batch_is_split_and_keeps_the_others():
    calls = []

    def run(items):
        calls.append(len(items))
        if "poison" in items:
            raise RuntimeError("CUDA out of memory (simulated)")
        return [CaptionResult(f"ok {x}") for x in items]

    results = split_on_failure(run, ["a", "b", "poison", "c", "d"])
    assert [r.text for r in results] == ["ok a", "ok b", None, "ok c", "ok d"]
    assert "out of memory" in results[2].error
    assert calls[0] == 5 and max(calls[1:]) < 5


def test_missing_model_names_itself(tmp_path):
    cfg = CaptionerConfig(name="dense", model=str(tmp_path / "absent"))
    with pytest.raises(ModelNotFound, match=str(tmp_path / "absent")):
        TransformersCaptioner(cfg)


def test_caption_actor_keeps_rows_that_could_not_be_read(tiny_vlm):
    from curate.phases.caption import CaptionActor, prepared_row
    from schemas.record import PREPARED, rows_to_table

    cfg = CaptionerConfig(name="dense", model=str(tiny_vlm), preset="greedy", generation={"max_new_tokens": 6})
    actor = CaptionActor(cfg.model_dump_json(), drop_pixels=True, seed=0)
    a, _, c = images(3)
    batch = rows_to_table([prepared_row("u", "a", None, a), prepared_row("u", "b", None, None, "OSError: gone"),
                           prepared_row("u", "c", None, c)], PREPARED)
    out = actor(batch).to_pydict()
    assert "pixels" not in out and out["alt"] == [None, None, None]
    assert out["err_dense"][1] == "OSError: gone" and out["raw_dense"][1] is None
    assert out["raw_dense"][0] and out["raw_dense"][2]
    assert list(out["finish_dense"]) == ["length", "", "length"]  # 6 random tokens never reach the end token


def test_the_last_caption_actor_finalizes_as_the_finalize_step_would(tiny_vlm, tmp_path):
    """With nothing after it, the captioner's actor finalizes its own batches (no separate task
    whose fresh worker imports transformers): the same rows the finalize step makes."""
    from curate.phases.caption import CaptionActor, finalize_block, prepared_row
    from curate.tinymodels import build_tiny_t5_tokenizer
    from schemas.job import Job
    from schemas.record import PREPARED, rows_to_table

    cfg = CaptionerConfig(name="dense", model=str(tiny_vlm), preset="greedy", generation={"max_new_tokens": 6})
    job = Job.model_validate({"name": "t", "out": str(tmp_path / "out"), "sources": [{"type": "folder", "path": str(tmp_path)}],
                              "caption": {"captioners": [cfg.model_dump()], "tokenizer": str(build_tiny_t5_tokenizer(tmp_path / "t5"))}})
    a, _, c = images(3)
    batch = rows_to_table([prepared_row("u", "a", "alt a", a), prepared_row("u", "b", None, None, "OSError: gone"),
                           prepared_row("u", "c", None, c)], PREPARED)
    plain = CaptionActor(cfg.model_dump_json(), drop_pixels=True, seed=0)(batch)
    finished = CaptionActor(cfg.model_dump_json(), drop_pixels=True, seed=0, finish_json=job.model_dump_json())(batch)
    assert finished.equals(finalize_block(plain, job.model_dump_json()))
    assert finished["status"].to_pylist() == ["captioned", "read_error", "captioned"]


def test_decoding_is_not_fused_into_the_captioners_actor_pool(ray_cluster):
    """Ray Data fuses a task step into the next actor pool when both reserve the same resources
    (a CPU-only captioner): every decode would then run in the pool's one actor. The prepare
    step's compute keeps it a step of its own, on the free CPUs."""
    import ray.data

    from curate.phases.caption import decode_tasks

    class Model:
        def __call__(self, batch):
            return batch

    # both steps reserve 1 CPU: without the compute, the stats name one operator "MapBatches(<lambda>)->MapBatches(Model)"
    stats = ray.data.range(4, override_num_blocks=2).map_batches(lambda b: b, compute=decode_tasks(1, 2)).map_batches(
        Model, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=1)).materialize().stats()
    assert " MapBatches(<lambda>): " in stats and " MapBatches(Model): " in stats and "->MapBatches(Model)" not in stats
    # one task per CPU and per block, never the pool's size (as many blocks as actors: each decodes its own)
    assert [(c.size if c else None) for c in (decode_tasks(1, 4), decode_tasks(2, 4), decode_tasks(2, 2), decode_tasks(3, 1))] == [2, 3, None, 1]


@pytest.fixture(scope="module")
def chat_server(tiny_vlm, tmp_path_factory):
    """An OpenAI-compatible server process on 127.0.0.1 serving the tiny VLM."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    port_file = tmp_path_factory.mktemp("chat") / "port"
    proc = subprocess.Popen([sys.executable, "-m", "tests.servers.chat_server", str(tiny_vlm), str(port_file)],
                            cwd=Path(__file__).parents[1])
    deadline = time.time() + 60
    while not port_file.exists() and time.time() < deadline:
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port_file.read_text()}"
    proc.terminate()
    proc.wait()


def test_openai_backend_matches_the_local_model_through_a_real_server(chat_server, captioner):
    from captioners import build_captioner

    cfg = CaptionerConfig(name="api", backend="openai", model="tiny", preset="greedy", generation={"max_new_tokens": 12},
                          api={"base_url": f"{chat_server}/v1", "concurrency": 3, "timeout_s": 60, "image_format": "png"})
    imgs = images(5)  # png: the server sees the local backend's pixels exactly
    remote = build_captioner(cfg).caption(imgs, [{}] * 5)
    local = captioner.caption(imgs, [{}] * 5)
    assert [r.error for r in remote] == [None] * 5
    assert [(r.text, r.finish) for r in remote] == [(r.text, r.finish) for r in local]


def test_openai_backend_retries_and_reports_failures(chat_server):
    from captioners import build_captioner

    flaky = CaptionerConfig(name="api", backend="openai", model="tiny", preset="greedy", generation={"max_new_tokens": 4},
                            api={"base_url": f"{chat_server}/v1/fail-first", "retries": 2, "backoff_s": 0.05})
    assert all(r.text is not None for r in build_captioner(flaky).caption(images(2), [{}] * 2))
    dead = CaptionerConfig(name="api", backend="openai", model="tiny", preset="greedy", api={"base_url": f"{chat_server}/nope", "retries": 0})
    (res,) = build_captioner(dead).caption(images(1), [{}])
    assert res.text is None and "HTTP 404" in res.error


def test_out_of_memory_is_retried_in_halves_after_the_failed_attempt_is_freed(captioner, monkeypatch):
    import weakref

    import torch

    imgs = images(6)
    expected = [r.text for r in captioner.caption(imgs, [{}] * 6)]
    poison = imgs[3].size
    real, attempts = captioner.model.generate, []

    def generate(**inputs):
        # the previous failed attempt's inputs must be gone before the next attempt runs
        assert all(ref() is None for ref in attempts), "a failed attempt's tensors are still alive"
        if len(inputs["input_ids"]) > 1 or sizes[0] == [poison]:
            attempts.append(weakref.ref(inputs["pixel_values"]))
            raise torch.OutOfMemoryError("CUDA out of memory (forced by the test)")
        return real(**inputs)

    sizes = [[]]
    real_generate = captioner._generate

    def tracked(items):
        sizes[0] = [im.size for im, _ in items]
        return real_generate(items)

    monkeypatch.setattr(captioner.model, "generate", generate)
    monkeypatch.setattr(captioner, "_generate", tracked)
    results = captioner.caption(imgs, [{}] * 6)
    assert [r.text for i, r in enumerate(results) if i != 3] == [t for i, t in enumerate(expected) if i != 3]
    assert results[3].text is None and "out of memory" in results[3].error
    assert len(attempts) == 6  # the 6, both 3s, both pairs and the poisoned one, each freed before the next


def test_the_budget_is_counted_in_t5_and_an_unloadable_tokenizer_is_one_clear_line(tiny_vlm, tmp_path):
    from captioners.postprocess import token_counter
    from curate.jobs import budget_tokenizer_problem
    from schemas.job import T5_TOKENIZER, CaptionConfig

    # the default is PixArt-sigma's T5, whatever the captioner (no fallback to the captioner's tokenizer)
    assert CaptionConfig(captioners=[{"name": "d", "model": str(tiny_vlm)}]).tokenizer == T5_TOKENIZER
    problem = budget_tokenizer_problem(T5_TOKENIZER)   # no hub here: it cannot load
    assert problem.startswith(f"{T5_TOKENIZER}: cannot load the text encoder's tokenizer") and "\n" not in problem
    assert "expected an existing tokenizer folder" in budget_tokenizer_problem(str(tmp_path / "absent"))
    t5 = tiny_vlm.parent / "tiny-t5-tokenizer"
    assert budget_tokenizer_problem(str(t5)) is None
    # counted as PixArt's T5 call counts: with the closing </s>
    from transformers import AutoTokenizer

    text = "a red car near the house."
    assert token_counter(str(t5))(text) == len(AutoTokenizer.from_pretrained(t5)(text)["input_ids"]) == 8


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    """A tiny Qwen2.5-VL: the shipped jobs' architecture (dynamic resolution, pixel limits)."""
    from curate.tinymodels import build_tiny_qwen25_vl

    return build_tiny_qwen25_vl(tmp_path_factory.mktemp("models") / "tiny-qwen")


def qwen(model, preset: str, seed: int = 0, **kw) -> TransformersCaptioner:
    """A captioner on the tiny Qwen; few image tokens (4-16) keep the tests fast."""
    kw = {"min_pixels": 4 * 784, "max_pixels": 16 * 784, **kw}
    return TransformersCaptioner(CaptionerConfig(name="dense", model=str(model), preset=preset, **kw), seed=seed)


def keyed(n: int) -> list[dict]:
    return [{"key": f"key{i}"} for i in range(n)]


def test_the_models_shipped_decoding_defaults_do_not_leak_in(tiny_qwen, tmp_path):
    """Qwen2.5-VL ships sampling defaults in generation_config.json; a preset replaces them all."""
    import json
    import shutil

    leaky = tmp_path / "leaky"
    shutil.copytree(tiny_qwen, leaky)
    shipped = json.loads((leaky / "generation_config.json").read_text())
    shipped.update(do_sample=True, top_k=1, top_p=0.001, temperature=0.1, repetition_penalty=1.05, no_repeat_ngram_size=1)
    (leaky / "generation_config.json").write_text(json.dumps(shipped))
    imgs, gen = images(3), {"max_new_tokens": 16}
    clean_texts = [r.text for r in qwen(tiny_qwen, "greedy", generation=gen).caption(imgs, keyed(3))]
    leaky_captioner = qwen(leaky, "greedy", generation=gen)
    assert [r.text for r in leaky_captioner.caption(imgs, keyed(3))] == clean_texts
    # the shipped settings would have changed the captions (no_repeat_ngram_size=1 forbids any repeated word)
    assert any(len(set(t.split())) < len(t.split()) for t in clean_texts)


def test_repetition_penalty_counts_generated_tokens_only(tiny_qwen):
    import torch

    c = qwen(tiny_qwen, "greedy", generation={"repetition_penalty": 2.0, "max_new_tokens": 4})
    (penalty,) = c.logits_processors(prompt_len=3, keys=["k"])
    scores = torch.full((1, 10), 4.0)
    out = penalty(torch.tensor([[5, 6, 7, 8]]), scores.clone())  # prompt 5, 6, 7; generated 8
    assert out[0].tolist() == [4.0] * 8 + [2.0, 4.0]


def test_seeded_sampling_does_not_depend_on_the_batch(tiny_qwen):
    imgs, gen = images(3), {"max_new_tokens": 8}
    c = qwen(tiny_qwen, "sample", generation=gen)
    batched = [r.text for r in c.caption(imgs, keyed(3))]
    alone = [c.caption([im], [m])[0].text for im, m in zip(imgs, keyed(3))]
    reordered = [r.text for r in c.caption(imgs[::-1], keyed(3)[::-1])][::-1]
    assert batched == alone == reordered
    assert [r.text for r in qwen(tiny_qwen, "sample", seed=1, generation=gen).caption(imgs, keyed(3))] != batched
    # beam sampling generates row by row from a generator seeded by (seed, key)
    beams = [[r.text for r in qwen(tiny_qwen, "share-captioner", seed=s, generation=gen).caption(imgs[:2], keyed(2))]
             for s in (0, 0, 1)]
    assert beams[0] == beams[1] != beams[2]


def test_finish_reason_says_whether_the_model_ended_the_caption(tiny_qwen):
    imgs = images(6)
    short = qwen(tiny_qwen, "sample", generation={"max_new_tokens": 20}).caption(imgs, keyed(6))
    longer = qwen(tiny_qwen, "sample", generation={"max_new_tokens": 60}).caption(imgs, keyed(6))
    assert {r.finish for r in short} == {"stop", "length"}
    for s, long in zip(short, longer):
        if s.finish == "stop":  # the model ended: more room changes nothing
            assert (long.text, long.finish) == (s.text, "stop")
        else:                   # cut: the same draws continue past the limit
            assert long.text.startswith(s.text) and len(long.text) > len(s.text)


def test_pixel_limits_bound_the_image_tokens(tiny_qwen):
    big, small = Image.new("RGB", (1344, 756), "red"), Image.new("RGB", (40, 30), "blue")
    for lo, hi in ((4 * 784, 16 * 784), (64 * 784, 256 * 784)):
        c = qwen(tiny_qwen, "greedy", min_pixels=lo, max_pixels=hi)
        grid = c.processor(images=[big, small], text=[c.prompt] * 2, return_tensors="pt", padding=True,
                           **c.processor_kwargs)["image_grid_thw"]
        tokens = (grid.prod(dim=1) // 4).tolist()  # 2x2 patches merge into one token
        assert lo // 784 <= tokens[1] and tokens[0] <= hi // 784 and tokens[0] > hi // 784 // 2


def test_several_gpus_per_actor_spread_the_model():
    from captioners.hf import placement

    assert placement(2, visible_gpus=2) == {"device_map": "auto"}
    assert placement(1, visible_gpus=1) == {} and placement(0.5, visible_gpus=1) == {}


def server_stats(chat_server: str, reset: bool = False) -> dict:
    import httpx

    if reset:
        httpx.post(f"{chat_server}/v1/stats/reset")
    return httpx.get(f"{chat_server}/v1/stats").json()


def api_cfg(chat_server: str, route: str = "", **api) -> CaptionerConfig:
    return CaptionerConfig(name="api", backend="openai", model="tiny", preset="greedy", generation={"max_new_tokens": 4},
                           api={"base_url": f"{chat_server}/v1/{route}".rstrip("/"), **api})


def test_openai_backend_waits_as_long_as_retry_after_asks(chat_server):
    from captioners import build_captioner

    server_stats(chat_server, reset=True)
    honoured = build_captioner(api_cfg(chat_server, "retry-after", retries=2, backoff_s=0.01))
    assert [r.error for r in honoured.caption(images(1), keyed(1))] == [None]
    capped = build_captioner(api_cfg(chat_server, "retry-after", retries=2, backoff_s=0.01, max_backoff_s=0.2))
    assert [r.error for r in capped.caption(images(2)[1:], keyed(1))] == [None]  # another body: 429 first again
    honoured_gap, capped_gap = server_stats(chat_server)["retry_gaps"]
    assert honoured_gap >= 1.0 and 0.2 <= capped_gap < 1.0


def test_openai_backend_keeps_one_client_and_one_request_limit_per_actor(chat_server):
    from concurrent.futures import ThreadPoolExecutor

    from captioners import build_captioner

    captioner = build_captioner(api_cfg(chat_server, "slow", concurrency=4))
    server_stats(chat_server, reset=True)
    with ThreadPoolExecutor(3) as pool:  # three batches of 2 at once, as the actor's threads run them
        results = list(pool.map(lambda i: captioner.caption(images(6)[2 * i:2 * i + 2], keyed(2)), range(3)))
    assert all(r.error is None for batch in results for r in batch)
    again = captioner.caption(images(4), keyed(4))
    assert all(r.error is None for r in again)
    stats = server_stats(chat_server)
    assert stats == {"requests": 10, "max_in_flight": 4, "connections": 4, "retry_gaps": []}


def test_openai_sampling_sends_a_seed_per_sample(chat_server):
    from captioners import build_captioner

    cfg = CaptionerConfig(name="api", backend="openai", model="tiny", preset="sample", generation={"max_new_tokens": 8},
                          api={"base_url": f"{chat_server}/v1"})
    imgs = images(3)
    first = [r.text for r in build_captioner(cfg, seed=0).caption(imgs, keyed(3))]
    assert [r.text for r in build_captioner(cfg, seed=0).caption(imgs, keyed(3))] == first
    assert [r.text for r in build_captioner(cfg, seed=9).caption(imgs, keyed(3))] != first


def test_openai_actors_keep_their_request_limit_whatever_the_batch_size(chat_server, ray_cluster):
    """Through Ray Data, one block as a work unit is: batches of 2 rows, yet 6 requests in flight."""
    import ray.data

    from curate.phases.caption import ApiCaptionActor, prepared_row, ray_batch_size
    from schemas.record import PREPARED, rows_to_table

    cfg = api_cfg(chat_server, "slow", concurrency=6).model_copy(update={"batch_size": 2})
    rows = rows_to_table([prepared_row("u", f"k{i}", None, im) for i, im in enumerate(images(12))], PREPARED)
    server_stats(chat_server, reset=True)
    ds = ray.data.from_arrow(rows).map_batches(
        ApiCaptionActor, fn_constructor_kwargs={"cfg_json": cfg.model_dump_json(), "drop_pixels": True, "seed": 0},
        batch_size=ray_batch_size(cfg), batch_format="pyarrow", num_cpus=0.5, compute=ray.data.ActorPoolStrategy(size=1))
    out = ds.take_all()
    assert [r["key"] for r in out] == [f"k{i}" for i in range(12)] and all(r["err_api"] == "" for r in out)
    assert server_stats(chat_server)["max_in_flight"] == 6


def test_a_caption_cut_by_the_token_limit_is_marked_and_trimmed(tiny_vlm):
    import pyarrow as pa

    from curate.phases.caption import finalize_rows
    from schemas.job import Job

    job = Job.model_validate({"name": "t", "out": "o", "sources": [{"type": "folder", "path": "."}],
                              "caption": {"captioners": [{"name": "dense", "model": str(tiny_vlm), "preset": "greedy"}],
                                          "tokenizer": str(tiny_vlm.parent / "tiny-t5-tokenizer")}})
    batch = pa.table({"unit": ["u", "u"], "key": ["a", "b"], "alt": pa.nulls(2, pa.string()), "prep_error": ["", ""],
                      "raw_dense": ["a red car. the dog sits on", "a red car. the dog sits on"], "err_dense": ["", ""],
                      "finish_dense": ["length", "stop"]})
    cut, whole = finalize_rows(batch, job)
    assert (cut["caption"], cut["finish_reasons"]) == ("a red car.", [("dense", "length")])
    assert (whole["caption"], whole["finish_reasons"]) == ("a red car. the dog sits on", [("dense", "stop")])
