"""Heads on the CLIP embedding (NSFW, watermark, generic), loaded from the published layouts at
their real sizes with random values; the embedding actor's scores, alt-text agreement and gates;
the run-wide alt-text percentile. No Ray: the actor class is called directly."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest
import torch
from pydantic import ValidationError

from curate.tinymodels import laion_nsfw_state, mlp_head_state, save_state
from filters.gates import apply, below_top_fraction, embedding_gates
from filters.heads import (
    HeadLoadError,
    head_from_state,
    laion_nsfw_state_from_keras,
    load_embedding_head,
)
from schemas.job import FiltersConfig, HeadConfig
from schemas.reasons import Reason


def unit_embeddings(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def laion_nsfw_reference(state: dict, x: np.ndarray) -> np.ndarray:
    """The published torch port's forward (CLIP-based-NSFW-Detector issue #7), written out."""
    s = {k: v.double().numpy() for k, v in state.items()}
    h = (x - s["norm.mean"]) / np.sqrt(s["norm.variance"])
    for n in (1, 2, 3):
        h = np.maximum(h @ s[f"linear_{n}.weight"].T + s[f"linear_{n}.bias"], 0)
    return 1 / (1 + np.exp(-(h @ s["linear_4.weight"].T + s["linear_4.bias"])[:, 0]))


def test_laion_nsfw_port_at_vit_l14_size(tmp_path):
    state = laion_nsfw_state(768, seed=3)
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "norm.mean": (768,), "norm.variance": (768,), "linear_1.weight": (64, 768), "linear_1.bias": (64,),
        "linear_2.weight": (512, 64), "linear_2.bias": (512,), "linear_3.weight": (256, 512), "linear_3.bias": (256,),
        "linear_4.weight": (1, 256), "linear_4.bias": (1,)}
    head = load_embedding_head(HeadConfig(path=str(save_state(state, tmp_path / "nsfw.pth"))))
    x = unit_embeddings(5, 768)
    got = head(x)
    assert head.dim == 768 and got.shape == (5,) and ((got > 0) & (got < 1)).all()
    assert np.allclose(got, laion_nsfw_reference(state, x), atol=1e-5)


def test_keras_conversion_maps_the_saved_model_variables():
    """Variable names and shapes of clip_autokeras_binary_nsfw's checkpoint (Normalization =
    layer_with_weights-1; Dense 768->64->512->256->1 = layer_with_weights-2..5, kernels (in, out))."""
    rng = np.random.default_rng(1)
    sizes = [768, 64, 512, 256, 1]
    keras = {"layer_with_weights-1/mean/.ATTRIBUTES/VARIABLE_VALUE": rng.normal(0, 0.02, (1, 768)),
             "layer_with_weights-1/variance/.ATTRIBUTES/VARIABLE_VALUE": rng.uniform(1e-4, 1e-3, (1, 768))}
    for n, (i, o) in enumerate(itertools.pairwise(sizes), start=2):
        keras[f"layer_with_weights-{n}/kernel/.ATTRIBUTES/VARIABLE_VALUE"] = rng.normal(0, i ** -0.5, (i, o))
        keras[f"layer_with_weights-{n}/bias/.ATTRIBUTES/VARIABLE_VALUE"] = rng.normal(0, 0.1, o)
    state = laion_nsfw_state_from_keras(keras)
    x = unit_embeddings(4, 768, seed=2)
    h = (x - keras["layer_with_weights-1/mean/.ATTRIBUTES/VARIABLE_VALUE"]) / np.sqrt(keras["layer_with_weights-1/variance/.ATTRIBUTES/VARIABLE_VALUE"])
    for n in (2, 3, 4, 5):   # Keras Dense: x @ kernel + bias
        h = h @ keras[f"layer_with_weights-{n}/kernel/.ATTRIBUTES/VARIABLE_VALUE"] + keras[f"layer_with_weights-{n}/bias/.ATTRIBUTES/VARIABLE_VALUE"]
        h = np.maximum(h, 0) if n < 5 else 1 / (1 + np.exp(-h[:, 0]))
    assert np.allclose(head_from_state(state, HeadConfig(path="x"))(x), h, atol=1e-5)


def test_generic_linear_and_affine_layouts():
    x = unit_embeddings(3, 768)
    mlp = mlp_head_state([768, 128, 1], seed=4)
    w0, b0, w1, b1 = (mlp[k].double().numpy() for k in ("layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"))
    relu = np.maximum(x @ w0.T + b0, 0) @ w1.T + b1
    assert np.allclose(head_from_state(mlp, HeadConfig(path="x"))(x), relu[:, 0], atol=1e-5)
    affine = (x @ w0.T + b0) @ w1.T + b1
    assert np.allclose(head_from_state(mlp, HeadConfig(path="x", activation="none"))(x), affine[:, 0], atol=1e-5)
    sig = head_from_state(mlp, HeadConfig(path="x", sigmoid=True))(x)
    assert np.allclose(sig, 1 / (1 + np.exp(-relu[:, 0])), atol=1e-5)
    linear = {"weight": torch.randn(1, 768), "bias": torch.randn(1)}
    assert np.allclose(head_from_state(linear, HeadConfig(path="x"))(x),
                       x @ linear["weight"].double().numpy()[0] + linear["bias"].item(), atol=1e-5)
    # the improved aesthetic predictor's published layout through the generic loader, affine
    improved = {f"layers.{i}.{p}": torch.randn(*shape) * 0.05 for i, (o, n) in
                zip([0, 2, 4, 6, 7], [(1024, 768), (128, 1024), (64, 128), (16, 64), (1, 16)])
                for p, shape in (("weight", (o, n)), ("bias", (o,)))}
    ref = x.astype(np.float64)
    for i in (0, 2, 4, 6, 7):
        ref = ref @ improved[f"layers.{i}.weight"].double().numpy().T + improved[f"layers.{i}.bias"].double().numpy()
    assert np.allclose(head_from_state(improved, HeadConfig(path="x", activation="none"))(x), ref[:, 0], atol=1e-4)


def test_bad_heads_name_the_problem(tmp_path):
    cases = {
        "two outputs": (mlp_head_state([8, 2]), "gives 2 outputs, expected 1"),
        "shapes do not chain": ({**mlp_head_state([8, 4, 1]), "layers.2.weight": torch.randn(1, 5)}, "takes 5 inputs but the layer before gives 4"),
        "unknown keys": ({"fc.weight": torch.randn(1, 8)}, "not a known head layout"),
        "norm of another size": ({**laion_nsfw_state(8), "norm.mean": torch.zeros(7)}, "norm.mean/norm.variance must have the embedding's size 8"),
    }
    for name, (state, message) in cases.items():
        with pytest.raises(HeadLoadError, match=message):
            head_from_state(state, HeadConfig(path=name), name)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(HeadLoadError, match="not a torch state dict"):
        load_embedding_head(HeadConfig(path=str(garbage)))
    with pytest.raises(HeadLoadError, match="head weights not found"):
        load_embedding_head(HeadConfig(path=str(tmp_path / "missing.pth")))


def test_gates_and_job_validation():
    f = FiltersConfig.model_validate({
        "aesthetics": {"enabled": True, "head": "h.pth", "min_aesthetic": 5.0},
        "safety": {"nsfw_head": {"path": "n.pth"}, "watermark_head": {"path": "w.pth"}, "max_nsfw": 0.5, "max_watermark": 0.8},
        "alt_text": {"enabled": True, "min_clip_alt": 0.2}})
    ok = {"aesthetic": 6.0, "nsfw": 0.1, "watermark": 0.2, "clip_alt": 0.3}
    assert apply(embedding_gates(f), ok) is None
    assert apply(embedding_gates(f), {**ok, "clip_alt": None}) is None, "no alt text is never a rejection"
    assert apply(embedding_gates(f), {**ok, "aesthetic": 4.0}) == (Reason.LOW_AESTHETIC, "aesthetic 4.00 < min_aesthetic 5.0")
    assert apply(embedding_gates(f), {**ok, "nsfw": 0.6}) == (Reason.NSFW, "nsfw 0.600 > max_nsfw 0.5")
    assert apply(embedding_gates(f), {**ok, "watermark": 0.81}) == (Reason.WATERMARK, "watermark 0.810 > max_watermark 0.8")
    assert apply(embedding_gates(f), {**ok, "clip_alt": 0.1}) == (Reason.LOW_CLIP_ALT, "clip_alt 0.100 < min_clip_alt 0.2")
    for bad, message in [({"safety": {"max_nsfw": 0.5}}, "max_nsfw needs nsfw_head"),
                         ({"safety": {"nsfw_head": {"path": "n.pth"}}}, "safety.nsfw_head reads the CLIP embedding"),
                         ({"alt_text": {"min_clip_alt": 0.2}}, "alt_text.min_clip_alt needs alt_text.enabled")]:
        with pytest.raises(ValidationError, match=message):
            FiltersConfig.model_validate(bad)


def test_top_fraction_keeps_the_best_scored_and_every_unscored_sample():
    keys = ["a", "b", "c", "d", "e", "f", "g"]
    scores = [0.30, None, 0.10, 0.25, 0.25, float("nan"), 0.05]
    dropped = below_top_fraction(keys, scores, 0.5)   # 5 scored: ceil(2.5) = 3 kept (a, d, e)
    assert sorted(dropped) == ["c", "g"]
    assert dropped["c"] == "clip_alt 0.100 outside the run's top 0.5 (kept >= 0.250, 3 of 5)"
    assert below_top_fraction(keys, scores, 1.0) == {}
    assert sorted(below_top_fraction(keys, scores, 0.2)) == ["c", "d", "e", "g"]   # tie at 0.25: by key
    assert below_top_fraction(["a", "b"], [None, None], 0.1) == {}


def test_embed_actor_scores_every_head_from_one_embedding(tiny_clip):
    from curate.phases.embed import EmbedActor
    from curate.phases.ingest import WITH_PIXELS
    from filters.aesthetics import AestheticScorer
    from tests.test_filters import aes_cfg, pictures

    imgs = pictures(4)
    alts = ["A synthetic picture of noise", None, "   ", "a cat"]
    rows = [{"unit": "u", "key": f"k{i}", "status": "staged", "alt": alt, "pixels": im.tobytes(), "pixels_shape": [im.height, im.width]}
            for i, (im, alt) in enumerate(zip(imgs, alts))]
    table = pa.Table.from_pylist([{f: r.get(f) for f in WITH_PIXELS.names} for r in rows], schema=WITH_PIXELS)
    scorer = AestheticScorer(aes_cfg(tiny_clip))
    emb = scorer.embed(imgs)
    nsfw = load_embedding_head(HeadConfig(path=str(tiny_clip["nsfw"])))(emb)
    watermark = load_embedding_head(HeadConfig(path=str(tiny_clip["watermark"]), sigmoid=True))(emb)
    clip_alt = np.sum(scorer.embed_texts([alts[0], alts[3]]) * emb[[0, 3]], axis=1)
    cut = float(np.sort(nsfw)[1])   # the two highest NSFW scores are over the gate
    filters = FiltersConfig(aesthetics=aes_cfg(tiny_clip), safety={
        "nsfw_head": {"path": str(tiny_clip["nsfw"])}, "watermark_head": {"path": str(tiny_clip["watermark"]), "sigmoid": True},
        "max_nsfw": cut}, alt_text={"enabled": True})
    out = EmbedActor(filters.model_dump_json(), embedding_gates(filters))(table).to_pylist()
    for n, row in enumerate(out):
        assert row["nsfw"] == pytest.approx(nsfw[n], abs=1e-4) and row["watermark"] == pytest.approx(watermark[n], abs=1e-4)
        assert row["status"] == ("nsfw" if nsfw[n] > cut else "staged")
        assert np.allclose(np.asarray(row["embedding"], np.float32), emb[n], atol=2e-3)
    assert [r["clip_alt"] for r in out] == [pytest.approx(clip_alt[0], abs=1e-4), None, None, pytest.approx(clip_alt[1], abs=1e-4)]
    with pytest.raises(ValueError, match="filters.safety.nsfw_head: the head takes 768-d embeddings but tiny-clip gives 32-d"):
        EmbedActor(FiltersConfig(aesthetics=aes_cfg(tiny_clip), safety={"nsfw_head": {"path": str(
            save_state(laion_nsfw_state(768), tiny_clip["nsfw"].with_name("nsfw-768.pth")))}}).model_dump_json())


def test_dedup_applies_the_run_wide_clip_alt_percentile(tmp_path):
    """dedup.clip_alt_top_fraction: the run's samples with alt text ranked by clip_alt; those
    outside the top fraction are rejected (low_clip_alt) in dedup, before duplicates are searched,
    so a duplicate with better alt text is kept in their place; samples without alt text stay."""
    import hashlib

    import pyarrow.parquet as pq

    from curate.jobs import load_job
    from curate.phases.dedup import run_dedup
    from curate.storage import RunDir, write_parquet_atomic
    from schemas.record import INGESTED, rows_to_table
    from tests.conftest import DEMO_JOB

    run = RunDir(tmp_path / "run")
    h = {c: 0x0F0F0F0F0F0F0F0F for c in ("phash", "dhash", "phash_core", "dhash_core", "phash_mirror", "dhash_mirror")}
    def row(key, clip_alt, width, hashes=None):
        return {"unit": "u0", "key": key, "source": "folder:0", "uri": f"/{key}.jpg", "status": "staged", "width": width,
                "height": 1024, "sha256": key, "clip_alt": clip_alt,
                **(hashes or {c: int.from_bytes(hashlib.sha256(f"{c}{key}".encode()).digest()[:8]) for c in h})}
    rows = [row("a", 0.31, 1024), row("b", 0.12, 1024), row("c", None, 1024), row("d", 0.25, 1024),
            row("big", 0.05, 2048, h), row("copy", 0.40, 1024, h)]   # big and copy are duplicates
    write_parquet_atomic(run.ingest / "u0.parquet", rows_to_table(rows, INGESTED))
    job = load_job(DEMO_JOB, [f"out={tmp_path / 'o'}", "filters.alt_text.enabled=true", "dedup.clip_alt_top_fraction=0.5"])
    stats = run_dedup(job, run)
    decisions = {r["key"]: r for r in pq.read_table(run.dedup).to_pylist()}
    # 5 ranked (c has no alt text): the top ceil(2.5) = 3 are copy 0.40, a 0.31, d 0.25; big (0.05) goes
    # before dedup, so its smaller duplicate `copy` is kept
    assert {k for k, r in decisions.items() if r["keep"]} == {"a", "c", "copy", "d"}
    rejects = {r["key"]: r for r in pq.read_table(run.rejects / "dedup.parquet").to_pylist()}
    assert {k: r["reason"] for k, r in rejects.items()} == {"b": "low_clip_alt", "big": "low_clip_alt"}
    assert rejects["b"]["detail"] == "clip_alt 0.120 outside the run's top 0.5 (kept >= 0.250, 3 of 5)"
    assert rejects["b"]["outcome"] == "rejected" and rejects["b"]["phase"] == "dedup"
    assert stats["low_clip_alt"] == 2 and stats["staged"] == 6
