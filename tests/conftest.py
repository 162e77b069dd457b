"""Shared fixtures: a generated corpus, a tiny VLM saved to disk, one local Ray cluster, and
one full pipeline run on the demo job that many tests inspect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# S3 credentials of the test S3 server, set before Ray starts so its workers inherit them
# (as a user sets AWS_* before `curate run`); the endpoint is named in each job.
from tests.servers.s3_server import ACCESS_KEY, SECRET_KEY, S3Server

os.environ.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1",
                   "AWS_EC2_METADATA_DISABLED": "true"})

REPO = Path(__file__).resolve().parents[1]
DEMO_JOB = REPO / "jobs" / "demo.yaml"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    from curate.sample import make_corpus

    root = tmp_path_factory.mktemp("corpus") / "sample"
    make_corpus(root, n=4, seed=0)
    return root


@pytest.fixture(scope="session")
def truth(corpus) -> dict:
    """The corpus ground truth, by file name."""
    return {e["name"]: e for e in json.loads((corpus / "_corpus.json").read_text())["files"]}


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_vlm(models_dir) -> Path:
    """The tiny VLM, and beside it the tiny T5 tokenizer that counts the caption budget."""
    from curate.tinymodels import build_tiny_t5_tokenizer, build_tiny_vlm

    build_tiny_t5_tokenizer(models_dir / "tiny-t5-tokenizer")
    return build_tiny_vlm(models_dir / "tiny-vlm")


@pytest.fixture(scope="session")
def tiny_clip(models_dir) -> dict[str, Path]:
    """A tiny open_clip model (config + checkpoint), a random aesthetic head with the published keys, and
    random NSFW (LAION port layout) and watermark (layers.N layout) heads."""
    from curate.tinymodels import (
        build_tiny_aesthetic_head,
        build_tiny_clip,
        build_tiny_safety_heads,
    )

    config, ckpt = build_tiny_clip(models_dir / "tiny-clip")
    nsfw, watermark = build_tiny_safety_heads(models_dir)
    return {"config": config, "ckpt": ckpt, "head": build_tiny_aesthetic_head(models_dir / "tiny-aesthetic-head.pth"),
            "nsfw": nsfw, "watermark": watermark}


@pytest.fixture(scope="session")
def ray_cluster():
    from curate.engine import init_ray

    init_ray(None, num_cpus=2, no_progress_timeout_s=120)
    yield
    import ray

    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A SeaweedFS S3 server process on 127.0.0.1 (credentials enforced)."""
    server = S3Server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used the S3 server shows the server's own error lines."""
    report = (yield).get_result()
    server = getattr(item, "funcargs", {}).get("s3_server") if report.failed else None
    if server is not None:
        report.sections.append(("S3 server errors (weed.log)", server.errors() or "none"))


def demo_overrides(corpus: Path, tiny_vlm: Path, out: Path) -> list[str]:
    models = tiny_vlm.parent
    return [f"sources.0.path={corpus}", f"caption.captioners.0.model={tiny_vlm}", f"caption.captioners.1.model={tiny_vlm}", f"out={out}",
            f"caption.tokenizer={models / 'tiny-t5-tokenizer'}",
            f"filters.aesthetics.clip_config={models / 'tiny-clip/tiny-clip.json'}",
            f"filters.aesthetics.clip_pretrained={models / 'tiny-clip/tiny-clip.pt'}",
            f"filters.aesthetics.head={models / 'tiny-aesthetic-head.pth'}",
            f"filters.safety.nsfw_head.path={models / 'tiny-nsfw-head.pth'}",
            f"filters.safety.watermark_head.path={models / 'tiny-watermark-head.pth'}"]


# the demo job without CLIP: aesthetics off, and with it what reads its embedding (safety heads, clip_alt)
NO_EMBEDDING = ["filters.aesthetics.enabled=false", "filters.safety.nsfw_head=null", "filters.safety.watermark_head=null",
                "filters.alt_text.enabled=false"]


def set_args(overrides: list[str]) -> list[str]:
    """The same overrides as `--set` options of the command line."""
    return [arg for item in overrides for arg in ("--set", item)]


@pytest.fixture(scope="session")
def demo_run(corpus, tiny_vlm, tiny_clip, ray_cluster, tmp_path_factory):
    """The demo job run once, in process, on the test corpus."""
    from curate.jobs import load_job
    from curate.runner import run_job

    out = tmp_path_factory.mktemp("runs") / "demo"
    job = load_job(DEMO_JOB, demo_overrides(corpus, tiny_vlm, out))
    result = run_job(job, DEMO_JOB)
    return result


def cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed `curate` command as a user would."""
    exe = Path(sys.executable).with_name("curate")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False,
                          env={**os.environ, "COLUMNS": "200"})


def kill_mid_caption(args: list[str], root: Path, timeout: float = 300) -> None:
    """Run `curate run` (args) as its own process group until its driver kills itself at the
    second caption commit (failpoint `caption.commit`: one unit committed, the second not), then
    SIGKILL what is left of the group. A failpoint, not a clock: captioning can finish every unit
    between two polls."""
    import signal

    env = {**os.environ, "CURATE_FAILPOINT": "caption.commit:2"}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    try:
        assert proc.wait(timeout) == -signal.SIGKILL, "run finished before it could be killed"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


# what a consumer of a run reads, compared byte for byte by the fault and cluster tests
PUBLISHED = ("ar1024/*/*.tar", "index/*/*.parquet", "hashes.parquet", "rejects/**/*.parquet", "report/hallucinations.parquet",
             "README.md")


def published(root: Path) -> dict[str, bytes]:
    files = sorted({p for pattern in PUBLISHED for p in root.glob(pattern)})
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def make_fault_corpus(root: Path) -> int:
    """12 inputs (~1 MP JPEGs with alt-text sidecars): 10 distinct pictures over three buckets, a resized copy of one (dropped by
    dedup), and one too small (rejected in ingest)."""
    import numpy as np
    from PIL import Image

    from curate.sample import render

    root.mkdir(parents=True)
    rng = np.random.default_rng(17)
    sizes = [(1024, 1024)] * 4 + [(1280, 1024)] * 3 + [(1024, 1536)] * 3
    for i, (w, h) in enumerate(sizes):
        img, alt = render(rng, w, h)
        img.save(root / f"p{i:02d}.jpg", quality=85)
        (root / f"p{i:02d}.txt").write_text(alt)
    Image.open(root / "p00.jpg").resize((1100, 1100)).save(root / "p00_copy.jpg", quality=90)
    render(rng, 300, 300)[0].save(root / "small.jpg")
    return 12


@pytest.fixture(scope="session")
def fault_job(tiny_vlm, tmp_path_factory):
    """A function writing the fault suite's job (tests/test_faults.py, test_cluster.py) with an
    output and top-level sections merged over it: `fault_job(name, out, output={...})`."""
    base = tmp_path_factory.mktemp("faults")
    make_fault_corpus(base / "src")
    captioner = {"name": "dense", "model": str(tiny_vlm), "preset": "greedy", "image_side": 64, "batch_size": 2,
                 "generation": {"max_new_tokens": 8, "min_new_tokens": 8}}
    job = {
        "name": "faults", "sources": [{"type": "folder", "path": str(base / "src")}], "units": {"size": 3},
        "ray": {"no_progress_timeout_s": 60}, "filters": {"aesthetics": {"enabled": False}},
        "caption": {"tokenizer": str(tiny_vlm.parent / "tiny-t5-tokenizer"), "captioners": [captioner]},
        "hallucination": {"enabled": False}, "output": {"shard_samples": 2},
    }


    def write(name: str, out: str, **sections) -> Path:
        path = base / f"{name}.yaml"
        merged = {**job, **{k: {**job.get(k, {}), **v} for k, v in sections.items()}, "out": out}
        path.write_text(yaml.safe_dump(merged))
        return path
    return write


@pytest.fixture(scope="session")
def fault_reference(fault_job, ray_cluster, tmp_path_factory) -> Path:
    """The fault suite's job run uninterrupted, in this process."""
    from curate.jobs import load_job
    from curate.runner import run_job

    out = tmp_path_factory.mktemp("faults-ref") / "out"
    path = fault_job("reference", str(out))
    result = run_job(load_job(path), path)
    assert result.manifest["counts"] == {"inputs": 12, "written": 10, "rejected": {"near_duplicate": 1, "too_small": 1},
                                         "failed": {}, "is_4k": 0}
    return out
