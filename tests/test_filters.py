"""Filters: every gate's reason, the one-decode rule, and the aesthetic scorer on a tiny
open_clip model + a random head with the published key names, loaded like real weights."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from curate.jobs import load_job
from curate.phases.ingest import ingest_unit
from curate.sources import plan_units
from filters.aesthetics import AestheticScorer, ModelLoadError, load_head
from filters.gates import EMBEDDING, gates_for
from filters.quality import jpeg_quality
from schemas.job import AestheticsConfig, FiltersConfig
from tests.conftest import REPO, cli, demo_overrides, set_args


def aes_cfg(tiny_clip, **kw) -> AestheticsConfig:
    return AestheticsConfig(enabled=True, clip_model="tiny-clip", clip_config=str(tiny_clip["config"]),
                            clip_pretrained=str(tiny_clip["ckpt"]), head=str(tiny_clip["head"]), **kw)


def pictures(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(2)
    return [Image.fromarray((rng.random((40 + 7 * i, 60, 3)) * 255).astype(np.uint8)) for i in range(n)]


def test_scores_are_deterministic_and_independent_of_batch_size(tiny_clip):
    imgs = pictures(6)
    a, b = AestheticScorer(aes_cfg(tiny_clip)), AestheticScorer(aes_cfg(tiny_clip))
    whole = a.embed(imgs)
    assert whole.shape == (6, 32)
    assert np.allclose(np.linalg.norm(whole, axis=1), 1, atol=1e-5), "embeddings must be L2-normalised"
    ones = np.concatenate([a.embed([im]) for im in imgs])
    split = np.concatenate([b.embed(imgs[:2]), b.embed(imgs[2:])])
    assert np.allclose(whole, ones, atol=1e-5) and np.allclose(whole, split, atol=1e-5)
    scores = a.score(whole)
    assert np.allclose(scores, b.score(split), atol=1e-4)
    assert np.allclose(scores, [a.score(e[None])[0] for e in ones], atol=1e-4)
    assert scores.std() > 0, "different images should score differently"


def test_head_layouts(tmp_path):
    from torch import nn

    improved = {f"layers.{i}.{p}": torch.randn(*shape) for i, (o, n) in
                zip([0, 2, 4, 6, 7], [(1024, 768), (128, 1024), (64, 128), (16, 64), (1, 16)])
                for p, shape in (("weight", (o, n)), ("bias", (o,)))}
    torch.save(improved, tmp_path / "sac+logos+ava1-l14-linearMSE.pth")
    head = load_head(tmp_path / "sac+logos+ava1-l14-linearMSE.pth")
    x = torch.randn(3, 768)
    ref = x
    for i in (0, 2, 4, 6, 7):  # eval mode: dropout is identity, the MLP is affine
        ref = ref @ improved[f"layers.{i}.weight"].T + improved[f"layers.{i}.bias"]
    assert torch.allclose(head(x), ref, atol=1e-3)
    torch.save(nn.Linear(512, 1).state_dict(), tmp_path / "v1.pth")
    assert load_head(tmp_path / "v1.pth")(torch.randn(2, 512)).shape == (2, 1)
    torch.save({"fc.weight": torch.randn(1, 4)}, tmp_path / "odd.pth")
    with pytest.raises(ModelLoadError, match="fc.weight"):
        load_head(tmp_path / "odd.pth")
    with pytest.raises(ModelLoadError, match="nowhere.pth"):
        load_head(tmp_path / "nowhere.pth")


@pytest.mark.parametrize("q", [30, 75, 95])
def test_jpeg_quality_is_estimated_from_the_tables(q):
    buf = io.BytesIO()
    pictures(1)[0].resize((256, 256)).save(buf, "JPEG", quality=q)
    assert abs(jpeg_quality(Image.open(buf).quantization) - q) <= 2


def save(img: Image.Image, folder, name: str, **kw) -> None:
    img.save(folder / name, **kw)


def gate_corpus(folder) -> dict[str, str]:
    """One image per gate (and one that passes them all) -> the reason it must get."""
    rng = np.random.default_rng(9)
    noise = Image.fromarray((rng.random((150, 150, 3)) * 255).astype(np.uint8)).resize((1200, 1200), Image.BICUBIC)
    expected = {}

    def put(name, img, reason, **kw):
        save(img, folder, name, **kw)
        expected[name] = reason

    put("good.jpg", noise, "staged", quality=90)
    put("blank.png", Image.new("RGB", (1200, 1200), (90, 120, 200)), "blank")
    put("blurry.jpg", noise.filter(ImageFilter.GaussianBlur(25)), "blurry", quality=90)
    put("over.jpg", Image.eval(noise, lambda v: min(255, int(v * 0.25 + 225))), "overexposed", quality=90)
    put("under.jpg", Image.eval(noise, lambda v: max(0, int(v * 0.25 - 30))), "underexposed", quality=90)
    put("grey.jpg", noise.convert("L").convert("RGB"), "low_colourfulness", quality=90)
    boxed = Image.new("RGB", (1200, 1200))
    boxed.paste(noise.resize((1200, 640)), (0, 280))
    put("letterbox.jpg", boxed, "letterboxed", quality=90)
    put("lowq.jpg", noise, "low_jpeg_quality", quality=15)
    put("small.jpg", noise.resize((1000, 1400)), "too_small", quality=90)
    put("extreme.jpg", noise.resize((1100, 5200)), "extreme_aspect", quality=90)
    put("fewpixels.jpg", noise.resize((1024, 1100)), "too_few_pixels", quality=90)
    put("bomb.png", Image.new("RGB", (9000, 9000)), "decompression_bomb")
    return expected


GATES = ["filters.quality.max_flatness_for_blank=2", "filters.quality.min_sharpness=50", "filters.quality.max_overexposed=0.5",
         "filters.quality.max_underexposed=0.5", "filters.quality.min_colourfulness=5", "filters.quality.max_letterbox=0.3",
         "filters.quality.min_jpeg_quality=40", "filters.resolution.min_pixels=1200000", "filters.resolution.max_aspect=4.5",
         "ingest.max_pixels=50000000"]


def test_every_gate_rejects_with_its_reason_and_decodes_once(tmp_path, tiny_vlm):
    folder = tmp_path / "gates"
    folder.mkdir()
    expected = gate_corpus(folder)
    job = load_job(REPO / "jobs/demo.yaml", [f"sources.0.path={folder}", f"out={tmp_path / 'o'}", *GATES])
    (unit,) = plan_units(job, tmp_path / "work").to_pylist()
    rows = asyncio.run(ingest_unit(unit, job, tmp_path))
    got = {r["uri"].rsplit("/", 1)[1]: r for r in rows}
    assert {n: r["status"] for n, r in got.items()} == expected
    for name, row in got.items():
        decoded = expected[name] not in ("too_small", "extreme_aspect", "too_few_pixels", "decompression_bomb")
        assert row["decodes"] == (1 if decoded else 0), f"{name}: {row['decodes']} pixel decodes"
    assert got["good.jpg"]["quality"]["jpeg_quality"] == 90 and got["good.jpg"]["quality"]["sharpness"] > 50


def test_gates_run_by_stage_and_the_first_failure_is_the_reason():
    from filters.gates import HEADER, PIXELS, apply

    job = load_job(REPO / "jobs/demo.yaml", ["filters.resolution.require_4k=true", "ingest.max_pixels=50000000",
                                             "filters.quality.min_sharpness=50", "filters.aesthetics.min_aesthetic=5"])
    assert [[g.name for g in gates_for(job, stage)] for stage in (HEADER, PIXELS, EMBEDDING)] == \
        [["max_pixels", "resolution"], ["quality"], ["min_aesthetic"]]
    header = gates_for(job, HEADER)
    rows = [{"width": 9000, "height": 9000}, {"width": 2000, "height": 1500}, {"width": 3840, "height": 2160, "status": "staged"}]
    assert [apply(header, r) for r in rows] == [("decompression_bomb", "9000x9000 > max_pixels 50000000"),
                                                 ("not_4k", "2000x1500 is not 4K (short side >= 2160, long side >= 3840)"), None]
    assert [(r.get("status"), r.get("detail")) for r in rows] == [
        ("decompression_bomb", "9000x9000 > max_pixels 50000000"),
        ("not_4k", "2000x1500 is not 4K (short side >= 2160, long side >= 3840)"), ("staged", None)]


def test_low_aesthetic_gate_in_the_actor(tiny_clip):
    import pyarrow as pa

    from curate.phases.embed import EmbedActor
    from schemas.record import WITH_PIXELS

    imgs = pictures(3)
    rows = [{"unit": "u", "key": f"k{i}", "status": "staged", "pixels": im.tobytes(), "pixels_shape": [im.height, im.width]}
            for i, im in enumerate(imgs)] + [{"unit": "u", "key": "rejected", "status": "too_small"}]
    table = pa.Table.from_pylist([{f: r.get(f) for f in WITH_PIXELS.names} for r in rows], schema=WITH_PIXELS)
    scores = AestheticScorer(aes_cfg(tiny_clip)).score(AestheticScorer(aes_cfg(tiny_clip)).embed(imgs))
    cut = float(np.median(scores))
    job = load_job(REPO / "jobs/demo.yaml", [f"filters.aesthetics.min_aesthetic={cut}"])
    filters = FiltersConfig(aesthetics=aes_cfg(tiny_clip, min_aesthetic=cut, keep_embeddings=True))
    out = EmbedActor(filters.model_dump_json(), gates_for(job, EMBEDDING))(table).to_pylist()
    assert "pixels" not in out[0]
    for row, score in zip(out, scores):
        assert row["aesthetic"] == pytest.approx(score, abs=1e-4) and len(row["embedding"]) == 32
        assert row["status"] == ("low_aesthetic" if score < cut else "staged")
    assert out[3]["status"] == "too_small" and out[3]["aesthetic"] is None


def test_missing_weights_fail_before_any_work(tmp_path, corpus, tiny_vlm, tiny_clip):
    out = tmp_path / "o"
    res = cli("run", str(REPO / "jobs/demo.yaml"),
              *set_args([*demo_overrides(corpus, tiny_vlm, out), f"filters.aesthetics.head={tmp_path / 'no-head.pth'}"]))
    assert res.returncode == 2, res.stderr
    assert f"filters.aesthetics.head: {tmp_path / 'no-head.pth'}" in res.stderr
    assert not out.exists()
