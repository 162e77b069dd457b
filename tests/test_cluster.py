"""Scheduling that cannot deadlock: actor CPUs counted per node, and a real multi-node cluster
(3 nodes x 1 CPU, where actors of 0.67 CPU spread one per node once starved every task) that
loses a worker node mid-caption and still accounts every input once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from curate.engine import actor_cpus
from curate.sample import render


@pytest.mark.parametrize(("nodes", "requested", "actors", "expected"), [
    ([0, 1, 1, 1], 1.0, 3, 0.0),      # 3 x 1 CPU (+ a 0-CPU head): no node can spare any CPU
    ([0, 2, 2], 1.0, 3, 0.666),       # 2 x 2 CPU: one CPU per node may go to actors
    ([2], 1.0, 3, 0.333),             # 1 x 2 CPU
    ([2], 0.25, 3, 0.25),             # asks for less than there is: unchanged
    ([8, 8], 1.0, 4, 1.0),
    ([1], 0.5, 1, 0.0),               # one 1-CPU node: the task needs it whole
])
def test_actor_cpus_leave_a_whole_cpu_on_some_node(nodes, requested, actors, expected):
    got = actor_cpus(requested, actors, nodes)
    assert got == expected
    # wherever the actors land, some node keeps a whole CPU: the worst case piles them so that
    # every node's free CPUs fall below one, which needs more than sum(C_i - 1) CPUs of actors
    assert got * actors <= sum(max(c - 1, 0) for c in nodes) + 1e-9 or got == requested == 0


@pytest.mark.slow
def test_three_one_cpu_nodes_finish_and_survive_losing_one(tiny_vlm, ray_cluster, tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(3)
    for i in range(12):   # enough caption work that the node goes while units are still pending
        img, alt = render(rng, 1024, 1024)
        img.save(src / f"p{i}.jpg", quality=85)
        (src / f"p{i}.txt").write_text(alt)
    captioner = {"model": str(tiny_vlm), "preset": "greedy", "image_side": 64, "batch_size": 2,
                 "generation": {"max_new_tokens": 24, "min_new_tokens": 24}}
    job = {
        "name": "nodes", "out": str(tmp_path / "out"),
        "sources": [{"type": "folder", "path": str(src)}],
        "units": {"size": 2},
        "ray": {"no_progress_timeout_s": 60},
        "dedup": {"exact": False, "near": False},
        # three actor pools: the shape that hung (0 of 36 captioned) before per-node accounting
        "caption": {"tokenizer": str(tiny_vlm.parent / "tiny-t5-tokenizer"), "captioners": [{"name": f"c{i}", **captioner} for i in range(3)]},
        "hallucination": {"enabled": False},
    }
    job_path = tmp_path / "job.yaml"
    job_path.write_text(yaml.safe_dump(job))
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-m", "tests.multinode", "1,1,1", "caption", str(job_path), str(out)],
                          check=False, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["removed"]
    assert result["counts"] == {"inputs": 12, "written": 12, "rejected": {}, "failed": {}, "is_4k": 0}
    # the same job on the one-node test cluster, undisturbed: byte-identical output
    from curate.jobs import load_job
    from curate.runner import run_job

    reference = run_job(load_job(job_path, out=str(tmp_path / "reference")), job_path).run_dir
    published = ["hashes.parquet", *(p.relative_to(reference).as_posix() for p in reference.glob("ar1024/*/*.tar")),
                 *(p.relative_to(reference).as_posix() for p in reference.glob("index/*/*.parquet"))]
    assert len(published) >= 3
    for rel in published:
        assert (tmp_path / "out" / rel).read_bytes() == (reference / rel).read_bytes(), rel
