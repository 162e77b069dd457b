"""Scheduling that cannot deadlock: actor CPUs counted per node, and a real multi-node cluster
(3 nodes x 1 CPU, where actors of 0.67 CPU spread one per node once starved every task) that
loses a worker node mid-caption and still accounts every input once."""

from __future__ import annotations

import io
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
def test_three_one_cpu_nodes_share_nothing_but_s3_and_survive_losing_one(tiny_vlm, ray_cluster, s3_server, tmp_path):
    """Source, staging (`output.work_dir`) and output all on S3, so no node reads another's files:
    the node removed mid-caption leaves its work to the others, and the output equals a
    single-node run's."""
    s3 = s3_server.client()
    s3.create_bucket(Bucket="nodes")
    rng = np.random.default_rng(3)
    for i in range(12):   # enough caption work that the node goes while units are still pending
        img, alt = render(rng, 1024, 1024)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        s3.put_object(Bucket="nodes", Key=f"src/p{i}.jpg", Body=buf.getvalue())
        s3.put_object(Bucket="nodes", Key=f"src/p{i}.txt", Body=alt.encode())
    captioner = {"model": str(tiny_vlm), "preset": "greedy", "image_side": 64, "batch_size": 2,
                 "generation": {"max_new_tokens": 24, "min_new_tokens": 24}}
    opts = {"endpoint_url": s3_server.endpoint}
    job = {
        "name": "nodes", "out": "s3://nodes/out",
        "output": {"work_dir": "s3://nodes/work", "s3": opts, "part_size_mb": 5},
        "sources": [{"type": "s3", "prefix": "s3://nodes/src/", "s3": opts}],
        "units": {"size": 2},
        "ray": {"no_progress_timeout_s": 180},   # a hang fails in minutes, a loaded 2-core machine does not
        "dedup": {"exact": False, "near": False},
        # three actor pools: the shape that hung (0 of 36 captioned) before per-node accounting
        "caption": {"tokenizer": str(tiny_vlm.parent / "tiny-t5-tokenizer"), "captioners": [{"name": f"c{i}", **captioner} for i in range(3)]},
        "hallucination": {"enabled": False},
    }
    job_path = tmp_path / "job.yaml"
    job_path.write_text(yaml.safe_dump(job))
    out = tmp_path / "result.json"
    repo = Path(__file__).parents[1]
    proc = subprocess.run([sys.executable, "-m", "tests.multinode", "1,1,1", "caption", str(job_path), str(out)],
                          check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300,   # .curate/ lands in tmp_path
                          env={**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(repo)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["removed"]
    assert result["counts"] == {"inputs": 12, "written": 12, "rejected": {}, "failed": {}, "is_4k": 0}
    # every image was staged on S3 once and the staged bytes are gone with the run complete
    assert not [k for k in _keys(s3, "work/") if k.startswith("work/staged/")]
    assert not s3.list_multipart_uploads(Bucket="nodes").get("Uploads")
    # the same job on the one-node test cluster, undisturbed, into another prefix: identical output
    from curate.jobs import load_job
    from curate.runner import run_job

    (tmp_path / "ref").mkdir()
    os.chdir(tmp_path / "ref")   # its own .curate/nodes
    try:
        run_job(load_job(job_path, ["out=s3://nodes/reference", "output.work_dir=s3://nodes/work-reference"]), job_path)
    finally:
        os.chdir(repo)
    published = [k.removeprefix("out/") for k in _keys(s3, "out/") if k.endswith((".tar", ".parquet")) and "/report/" not in k]
    assert len(published) >= 3
    for rel in published:
        assert _get(s3, f"out/{rel}") == _get(s3, f"reference/{rel}"), rel


def _keys(s3, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket="nodes", Prefix=prefix).get("Contents", [])]


def _get(s3, key: str) -> bytes:
    return s3.get_object(Bucket="nodes", Key=key)["Body"].read()
