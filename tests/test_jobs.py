"""Job files: clear errors (file, field path, expectation; exit 2; no traceback), overrides, schema."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import DEMO_JOB, REPO, cli

GOOD = """
name: t
out: {out}
sources: [{{type: folder, path: {src}}}]
caption:
  captioners: [{{name: dense, model: {model}}}]
"""


def write_job(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "job.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("patch, field, expected", [
    ("dedup: {max_distance: six}", "dedup.max_distance", "integer"),
    ("dedup: {max_distnce: 4}", "dedup.max_distnce", "unknown field"),
    ("units: {size: 0}", "units.size", "greater than or equal to 1"),
    ("output: {bucket_table: 333}", "output.bucket_table", "1024 or 2048"),
    ("filters: {resolution: {min_side: [1]}}", "filters.resolution.min_side", "integer"),
    ("hallucination: {action: fallback}", "hallucination.fallback_captioner", "must name one of the captioners"),
    ("hallucination: {action: rewrite}", "hallucination.action", "'flag', 'drop' or 'fallback'"),
    ("output: {part_size_mb: 1}", "output.part_size_mb", "greater than or equal to 5"),
    ("out: gs://bucket/x", "out", "s3://bucket/prefix"),
])
def test_bad_field_names_file_field_and_expectation(tmp_path, patch, field, expected):
    job = write_job(tmp_path, GOOD.format(out=tmp_path / "o", src=tmp_path, model="m/x") + patch + "\n")
    res = cli("validate", str(job))
    assert res.returncode == 2
    assert str(job) in res.stderr and field in res.stderr and expected in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_missing_required_and_unknown_captioner(tmp_path):
    job = write_job(tmp_path, "name: t\nout: o\nsources: [{type: folder, path: .}]\ncaption: {captioners: [{name: a, model: m/x}], use: b}\n")
    res = cli("validate", str(job))
    assert res.returncode == 2 and "use: 'b' is not one of the captioners" in res.stderr
    job = write_job(tmp_path, "name: t\nsources: [{type: folder, path: .}]\n")
    res = cli("validate", str(job))
    assert res.returncode == 2 and "out: required field is missing" in res.stderr and "caption: required" in res.stderr


def test_run_refuses_missing_paths_before_any_work(tmp_path):
    out = tmp_path / "o"
    job = write_job(tmp_path, GOOD.format(out=out, src=tmp_path / "nope", model=tmp_path / "no-model"))
    res = cli("run", str(job))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"sources.0.path: {tmp_path / 'nope'}" in res.stderr
    assert "caption.captioners.0.model" in res.stderr
    assert not out.exists()
    assert cli("validate", str(job), "--strict").returncode == 2
    assert cli("validate", str(job)).returncode == 0  # warnings only: a cluster job validates anywhere


def test_set_overrides_and_their_errors(tmp_path):
    from curate.jobs import JobError, load_job

    job = write_job(tmp_path, GOOD.format(out="o", src=tmp_path, model="m/x"))
    spec = load_job(job, ["dedup.max_distance=4", "caption.captioners.0.batch_size=2", "sources.0.path=/data"], out="elsewhere")
    assert (spec.dedup.max_distance, spec.caption.captioners[0].batch_size, spec.sources[0].path, spec.out) == (4, 2, "/data", "elsewhere")
    with pytest.raises(JobError, match="sources.5: expected a list index"):
        load_job(job, ["sources.5.path=x"])
    with pytest.raises(JobError, match="dedup.max_distance"):
        load_job(job, ["dedup.max_distance=many"])
    res = cli("validate", str(job), "--set", "nonsense=1")
    assert res.returncode == 2 and "nonsense: unknown field" in res.stderr


def test_shipped_jobs_validate(tmp_path, corpus, tiny_vlm, tiny_clip, models_dir):
    assert cli("validate", str(REPO / "jobs/4k_subset.yaml")).returncode == 0
    assert cli("validate", str(REPO / "jobs/1k_full.yaml")).returncode == 0
    # demo.yaml names paths relative to the working folder, as `make demo` lays them out
    shutil.copytree(corpus, tmp_path / ".demo/sample")
    shutil.copytree(models_dir, tmp_path / ".demo/models")
    res = cli("validate", str(DEMO_JOB), "--strict", cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_schema_prints_json_schema():
    res = cli("schema")
    schema = json.loads(res.stdout)
    assert {"sources", "caption", "dedup", "output"} <= set(schema["properties"])


@pytest.mark.parametrize("name", ["4k_subset", "1k_full"])
def test_shipped_jobs_follow_their_own_rules(name):
    """A job's name and comments are promises: check them against its settings."""
    from curate.jobs import load_job
    from schemas.job import T5_TOKENIZER

    job = load_job(REPO / "jobs" / f"{name}.yaml")
    res = job.filters.resolution
    if name.startswith("4k"):   # the 4K subset holds only 4K images, by the same rule that tags them
        assert res.require_4k and res.min_side == res.fourk.min_short
    else:
        assert not res.require_4k and res.min_side == 1024
    assert res.max_aspect <= 4.5                      # PixArt-sigma drops ratio > 4.5
    assert job.caption.tokenizer == T5_TOKENIZER and job.caption.max_tokens == 300   # the T5 budget it protects
    for c in job.caption.captioners:   # the throughput backend and preset (issue 19), no longer than the budget
        assert (c.backend, c.preset) == ("vllm", "greedy") and c.generation.max_new_tokens <= job.caption.max_tokens
    h, captioners = job.hallucination, job.caption.captioners
    if h.enabled:   # the scorer is sized for the captioners in front of it (README: one actor per 2) ...
        assert 2 * h.concurrency >= sum(c.concurrency for c in captioners)
        assert h.num_gpus == 0 and h.num_cpus >= 4   # ... on CPUs, never in a captioner's GPU slot
