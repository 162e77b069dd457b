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
    from curate.phases.caption import CaptionActor, object_array

    cfg = CaptionerConfig(name="dense", model=str(tiny_vlm), preset="greedy", generation={"max_new_tokens": 6})
    actor = CaptionActor(cfg.model_dump_json(), drop_pixels=True)
    pixels = object_array([np.asarray(im) for im in images(3)])
    batch = {"unit": np.array(["u"] * 3, dtype=object), "key": np.array(["a", "b", "c"], dtype=object),
             "alt": np.array([None] * 3, dtype=object), "pixels": pixels,
             "prep_error": np.array(["", "OSError: gone", ""], dtype=object)}
    out = actor(batch)
    assert "pixels" not in out
    assert out["err_dense"][1] == "OSError: gone" and out["raw_dense"][1] == ""
    assert out["raw_dense"][0] and out["raw_dense"][2]
