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
    from curate.phases.caption import PREPARED, CaptionActor, prepared_row
    from schemas.record import rows_to_table

    cfg = CaptionerConfig(name="dense", model=str(tiny_vlm), preset="greedy", generation={"max_new_tokens": 6})
    actor = CaptionActor(cfg.model_dump_json(), drop_pixels=True)
    a, _, c = images(3)
    batch = rows_to_table([prepared_row("u", "a", None, a), prepared_row("u", "b", None, None, "OSError: gone"),
                           prepared_row("u", "c", None, c)], PREPARED)
    out = actor(batch).to_pydict()
    assert "pixels" not in out and out["alt"] == [None, None, None]
    assert out["err_dense"][1] == "OSError: gone" and out["raw_dense"][1] is None
    assert out["raw_dense"][0] and out["raw_dense"][2]


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
                          api={"base_url": f"{chat_server}/v1", "concurrency": 3, "timeout_s": 60})
    imgs = images(5)
    remote = build_captioner(cfg).caption(imgs, [{}] * 5)
    local = captioner.caption(imgs, [{}] * 5)
    assert [r.error for r in remote] == [None] * 5
    assert [r.text for r in remote] == [r.text for r in local]


def test_openai_backend_retries_and_reports_failures(chat_server):
    from captioners import build_captioner

    flaky = CaptionerConfig(name="api", backend="openai", model="tiny", preset="greedy", generation={"max_new_tokens": 4},
                            api={"base_url": f"{chat_server}/v1/fail-first", "retries": 2, "backoff_s": 0.05})
    assert all(r.text is not None for r in build_captioner(flaky).caption(images(2), [{}] * 2))
    dead = CaptionerConfig(name="api", backend="openai", model="tiny", api={"base_url": f"{chat_server}/nope", "retries": 0})
    (res,) = build_captioner(dead).caption(images(1), [{}])
    assert res.text is None and "HTTP 404" in res.error


def test_forced_out_of_memory_keeps_the_rest_of_the_batch(captioner, monkeypatch):
    import torch

    imgs = images(6)
    expected = [r.text for r in captioner.caption(imgs, [{}] * 6)]
    poison = imgs[3].size
    real = captioner.model.generate

    def generate(**inputs):
        if len(inputs["input_ids"]) > 1 or captioner_last_sizes[0] == [poison]:
            raise torch.OutOfMemoryError("CUDA out of memory (forced by the test)")
        return real(**inputs)

    captioner_last_sizes = [[]]
    real_generate = captioner._generate

    def tracked(batch):
        captioner_last_sizes[0] = [im.size for im in batch]
        return real_generate(batch)

    monkeypatch.setattr(captioner.model, "generate", generate)
    monkeypatch.setattr(captioner, "_generate", tracked)
    results = captioner.caption(imgs, [{}] * 6)
    assert [r.text for i, r in enumerate(results) if i != 3] == [t for i, t in enumerate(expected) if i != 3]
    assert results[3].text is None and "out of memory" in results[3].error


def test_vllm_backend_names_its_extra_when_vllm_is_missing(tiny_vlm):
    import importlib.util

    from captioners import build_captioner

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(ImportError, match=r"curate\[vllm\]"):
        build_captioner(CaptionerConfig(name="v", backend="vllm", model=str(tiny_vlm)))


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
