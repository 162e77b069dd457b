"""Deterministic captions: with a sampling preset (share-captioner: 3-beam sampling), a run killed
in the caption phase and resumed writes byte-identical shards to an uninterrupted run, because
each sample draws from a generator seeded by the run's seed and its key, not by its batch."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import DEMO_JOB, NO_EMBEDDING, demo_overrides, kill_mid_caption, set_args
from tests.test_resume import outputs


def sampled(corpus: Path, tiny_vlm: Path, out: Path) -> list[str]:
    """The demo job with one captioner doing 3-beam sampling, and a seed; no aesthetics or
    hallucination scoring (not under test here: their model loads would double the time)."""
    captioner = (f"{{name: dense, model: {tiny_vlm}, preset: share-captioner, generation: {{max_new_tokens: 16}}, "
                 "image_side: 256, batch_size: 8}")
    return [*demo_overrides(corpus, tiny_vlm, out), f"caption.captioners=[{captioner}]", "seed=7",
            *NO_EMBEDDING, "hallucination.enabled=false"]


def test_a_sampled_run_killed_in_caption_resumes_to_the_same_shards(corpus, tiny_vlm, tiny_clip, ray_cluster, tmp_path):
    from curate.jobs import load_job
    from curate.runner import run_job

    reference = tmp_path / "reference"
    manifest = run_job(load_job(DEMO_JOB, sampled(corpus, tiny_vlm, reference)), DEMO_JOB).manifest
    assert manifest["captioners"]["dense"]["generation"]["num_beams"] == 3 and manifest["captioners"]["dense"]["seed"] == 7

    root = tmp_path / "killed"
    args = [str(Path(sys.executable).with_name("curate")), "run", str(DEMO_JOB), *set_args(sampled(corpus, tiny_vlm, root))]
    kill_mid_caption(args, root, timeout=300)
    captioned = len(list((root / "_work/caption").glob("*.done")))
    assert not (root / "manifest.json").exists() and captioned < len(list((root / "_work/ingest").glob("*.done")))
    resumed = run_job(load_job(DEMO_JOB, sampled(corpus, tiny_vlm, root)), DEMO_JOB)  # in process: no second Ray start
    assert resumed.resumed and outputs(root) == outputs(reference)
    assert resumed.manifest["captioners"] == manifest["captioners"]
    assert pq.read_table(root / "index").num_rows == manifest["counts"]["written"]
